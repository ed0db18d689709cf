#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""check_manpage.py KVMXDP SCD MAIN_CPP: the man page's source and the CLI
describe the same command line.

The help texts live in the CLI11 table (maps-cli/), the man page in
docs/kvmxdp.8.scd; this check is what keeps them one description:
  - every command and subcommand `kvmxdp ... --help` lists has a "## CMD"
    heading in the scd, and every heading is a command the CLI knows;
  - every option and positional argument of every command is a definition
    line under its command's heading (global ones under GLOBAL OPTIONS),
    and the scd defines none the CLI lacks;
  - the EXIT STATUS section lists exactly the kExit* codes of main.cpp
    (and 0);
  - every default path `--help` shows (TEXT=/etc/kvmxdp/kvmxdp.json) is named
    in the scd's FILES section.
Prints every difference, exits 1 if there is one."""
import re
import subprocess
import sys


def help_of(kvmxdp, path):
    r = subprocess.run([kvmxdp, *path, "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check_manpage: kvmxdp {' '.join(path)} --help failed: {r.stderr}")
    return r.stdout


def parse_help(text):
    """(options, positionals, subcommands, defaults) of one --help text."""
    options, positionals, subs, defaults = set(), set(), [], set()
    section = None
    for line in text.splitlines():
        m = re.match(r"^(\w+):$", line)
        if m:
            section = m.group(1)
            continue
        if not line.startswith("  ") or line.startswith("   "):
            continue
        words = line.split()
        if not words:
            continue
        if section == "Options" and words[0].startswith("-"):
            names = words[0].split(",")
            options.update(n for n in names if n not in ("-h", "--help"))
            # CLI11 shows a default as TYPE=VALUE.
            defaults.update(re.findall(r"^\S+ \S+?=(/\S*)", line.strip()))
        elif section == "Positionals":
            positionals.add(words[0])
        elif section == "Subcommands":
            subs.append(words[0])
    return options, positionals, subs, defaults


def cli_table(kvmxdp):
    """{command path: set of option/positional names}, and the defaults."""
    table, defaults = {}, set()
    todo = [()]
    while todo:
        path = todo.pop()
        opts, pos, subs, d = parse_help(help_of(kvmxdp, path))
        defaults |= d
        table[" ".join(path)] = opts | {f"_{p}_" for p in pos}
        todo.extend(path + (s,) for s in subs)
    return table, defaults


DEF = re.compile(r"^(\*-[^*]+\*(?:, \*-[^*]+\*)*|_[A-Z][A-Z_]*_|\*[0-9]+\*)")


def scd_table(text):
    """{command path: names defined under it}, the exit codes, FILES text."""
    table, codes, files = {}, set(), ""
    section = sub = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# "):
            section, sub = line[2:].strip(), None
            if section == "GLOBAL OPTIONS":
                table.setdefault("", set())
            continue
        if line.startswith("## "):
            sub = line[3:].strip()
            if section == "COMMANDS":
                table.setdefault(sub, set())
            continue
        if section == "FILES":
            files += line + "\n"
        # A definition: a term at the start of a line, its text indented
        # on the next one.
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        m = DEF.match(line)
        if not m or not nxt.startswith("\t"):
            continue
        if section == "EXIT STATUS":
            codes.add(int(line.strip("*")))
            continue
        key = "" if section == "GLOBAL OPTIONS" else sub if section == "COMMANDS" else None
        if key is None:
            continue
        for term in m.group(1).split(", "):
            table[key].add(term.strip("*") if term.startswith("*") else term)
    return table, codes, files


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: check_manpage.py KVMXDP SCD MAIN_CPP")
    kvmxdp, scd, main_cpp = sys.argv[1:]
    cli, defaults = cli_table(kvmxdp)
    with open(scd, encoding="utf-8") as f:
        doc, codes, files = scd_table(f.read())
    with open(main_cpp, encoding="utf-8") as f:
        exits = {0} | {int(c) for c in re.findall(r"constexpr int kExit\w+ = (\d+);", f.read())}

    errors = []
    # A command that only groups others (map, conntrack) needs no heading.
    for cmd, names in sorted(cli.items()):
        if cmd not in doc:
            if names:
                errors.append(f"command '{cmd}' has no '## {cmd}' heading in the man page")
            continue
        for n in sorted(names - doc[cmd]):
            errors.append(f"'{cmd or 'kvmxdp'}' {n}: in --help, not in the man page")
        # -h/--help is every command's; the man page names it once.
        for n in sorted(doc[cmd] - names - {"-h", "--help"}):
            errors.append(f"'{cmd or 'kvmxdp'}' {n}: in the man page, not in --help")
    for cmd in sorted(set(doc) - set(cli)):
        errors.append(f"the man page describes a command '{cmd}' the CLI does not have")
    if codes != exits:
        errors.append(f"EXIT STATUS lists {sorted(codes)}, main.cpp returns {sorted(exits)}")
    for d in sorted(defaults):
        if d not in files:
            errors.append(f"default path {d} (--help) is not in the man page's FILES")
    for e in errors:
        print(f"check_manpage: FAIL: {e}")
    if errors:
        return 1
    n = sum(len(v) for v in cli.values())
    print(f"check_manpage: ok: {len(cli)} commands, {n} options and arguments, "
          f"exit codes {sorted(exits)}, {len(defaults)} default paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
