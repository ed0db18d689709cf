// SPDX-License-Identifier: GPL-2.0
// `kvmxdp import`: the iptables recipes people run for their guests today
// (iptables-save output, `iptables -t nat -S` output, or a shell/libvirt
// hook script of `iptables ...` lines) read and turned into kvmxdp's own
// model: attach options, 1:1 mappings and port forwards.  Pure functions,
// unit-tested; addresses, ports and mappings go through the same parsers
// and checks as the command line (base/netaddr.hpp, model/mapping.hpp).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"
#include "model/mapping.hpp"

namespace kvmxdp {

// ---------------------------------------------------------------- reading

// The words of one shell command line: quotes ('…', "…") and backslashes
// as the shell reads them, $VAR and ${VAR} replaced from vars (not inside
// single quotes), `#` outside quotes starting a comment.  The control
// operators `;`, `&&`, `||` and `|` are words of their own.  A variable
// vars does not hold stays as written and is named in *unset (the first
// one), so that a rule built from it is reported rather than misread.
// Expansion is bounded (`A=$B$B$B…` doubles with every line; --apply runs
// as root): a word longer than kShellWordMax or a line's words together
// longer than kShellExpansionMax throw Error; read_iptables names the line
// and caps the variables' values together the same way.
constexpr size_t kShellWordMax = size_t{64} << 10;
constexpr size_t kShellExpansionMax = size_t{1} << 20;
std::vector<std::string> shell_words(const std::string &line,
				     const std::map<std::string, std::string> &vars,
				     std::string *unset = nullptr);

// One iptables rule (or command) as read, before it means anything.
struct IptRule {
	int line = 0;	   // 1-based line of the input
	std::string text;  // the line as written (trimmed)
	std::string table; // "nat", "filter", "mangle", ...
	char op = 'A';	   // 'A' append, 'I' insert, 'D' delete, 'N' new chain, 'P' policy
	std::string chain;
	std::vector<std::string> args; // after the chain (for 'P': the policy)
	std::string guest;	       // libvirt qemu hook: the `"${1}" = "NAME"` block it sits in
	std::string unset;	       // a variable the script does not set ("" if none)
	bool ipv6 = false;	       // an ip6tables line
};

// Lines of a script that are not iptables rules but still say something
// about the recipe (ip_forward, `ip addr add`).
struct ScriptLine {
	int line = 0;
	std::string text;
	std::string why;
};

struct IptInput {
	std::vector<IptRule> rules;
	std::vector<ScriptLine> other;
	// Anything iptables-like was seen (a table header, a chain, a rule):
	// an input without it is not iptables syntax at all.
	bool recognized = false;
};

// iptables-save (`*nat`, `:CHAIN`, `-A CHAIN ...`, `COMMIT`), `iptables [-t
// T] -S` (`-P`, `-N`, `-A`; the table guessed from its built-in chains, as
// `-S` does not print it) and shell scripts (`[sudo] [/sbin/]iptables ...`
// commands, `VAR=value` assignments, backslash continuations).  Throws
// Error naming the line whose expansion passes the caps above.
IptInput read_iptables(const std::string &text);

// ---------------------------------------------------------------- translating

struct ImportContext {
	// net.ipv4.ip_local_port_range: a MASQUERADE --to-ports range that
	// overlaps it is not carried over (attach would refuse it).
	PortRange ephemeral{32768, 60999};
	// The uplink's current address (host order, 0: unknown): a DNAT of
	// it becomes a forward on `uplink`, which follows DHCP changes.
	uint32_t uplink_addr = 0;
	// The bridge, when the rules name none (`import --bridge`).
	std::string bridge;
};

// Where a command or a finding comes from.
struct RuleRef {
	int line = 0;
	std::string text;
};

struct ImportedAttach {
	std::string bridge; // "" when the rules name none
	std::string uplink; // "" : --uplink auto
	Ipv4Net subnet;
	std::optional<PortRange> nat_ports;
	std::optional<uint16_t> clamp_mss;
	std::vector<RuleRef> from;
	std::string command() const;
};

struct ImportedMapping {
	Mapping m;
	std::string bridge; // for --bridge, "" when unknown
	std::string guest;  // the libvirt guest's name, if the hook says it
	std::vector<RuleRef> from;
	std::string command() const;
};

struct Finding {
	std::vector<RuleRef> rules;
	std::string why;
};

struct ImportResult {
	size_t rules = 0; // rules read (not counting chain declarations)
	std::vector<ImportedAttach> attach;
	std::vector<ImportedMapping> mappings;
	std::vector<Finding> builtin; // needs no command: kvmxdp does it, or it is not its business
	std::vector<Finding> unsupported; // cannot be expressed, and why
	std::vector<Finding> conflicts;	  // rules that contradict each other: none of them imported
	std::vector<Finding> notes;	  // what differs in what was imported
};

ImportResult translate_iptables(const IptInput &in, const ImportContext &ctx);

// The commands, one per line, then the findings as `#` comments: the
// whole text can be pasted into a shell.  source names the input.
std::string format_import(const ImportResult &r, const std::string &source);
nlohmann::json import_json(const ImportResult &r);

} // namespace kvmxdp
