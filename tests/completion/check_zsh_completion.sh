#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/completion/check_zsh_completion.sh KVMXDP COMPLETION: the zsh
# completion (completion/_kvmxdp) driven by a real interactive zsh: the file
# sits in a directory of $fpath as the package installs it, compinit loads
# it by its #compdef line, and a line is typed with <Tab> on a pseudo
# terminal (zsh/zpty).  compadd is wrapped to print what the completion
# offers, so the check reads the candidates, not the screen.  Bridges,
# uplinks and the mappings `map del` completes: lib.sh.  Also: zsh parses
# the file, and every command and option of this build's --help is offered
# somewhere.
set -euo pipefail

CHECK=check_zsh_completion
precheck() {
	command -v zsh >/dev/null || fail "zsh not found (Debian package zsh: scripts/install-deps.sh)"
	zsh -n "$completion" || fail "zsh does not parse $completion"
}
# shellcheck source=tests/completion/lib.sh
source "$(dirname "$0")/lib.sh"

# The package's layout: the file is _kvmxdp in a directory of $fpath, and
# the command is found as "kvmxdp" on $PATH.
mkdir -p "$tmp/functions" "$tmp/bin"
cp "$completion" "$tmp/functions/_kvmxdp"
ln -s "$kvmxdp" "$tmp/bin/kvmxdp"

# complete LINE...: one zsh per call (no state carried between cases); the
# candidates of LINE<Tab>, sorted, on one line.  compadd's own -O/-A/-D
# calls only fill arrays for the completion system; the others are what is
# offered.
cat >"$tmp/drive.zsh" <<'ZSH'
zmodload zsh/zpty
zpty z env -i HOME="$TMP" TERM=dumb PATH="$TMP/bin:/usr/sbin:/usr/bin:/sbin:/bin" zsh -f -i
zpty -w z "PROMPT= ; fpath=($TMP/functions \$fpath); autoload -Uz compinit; compinit -u -d $TMP/zcompdump"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a __h; builtin compadd -A __h "$@"; print -rl -- "" ${__h/#/<HI${:-T}>}; builtin compadd "$@" }'
zpty -w z '_kvx_end() { print -r -- "<EN${:-D}>"; exit }; comppostfuncs=(_kvx_end)'
zpty -w z 'zstyle ":completion:*" list-prompt ""; zstyle ":completion:*" select-prompt ""; unsetopt BEEP'
zpty -n -w z "$1"$'\t'
out=
while zpty -r z line; do
	out+=$line
	[[ $line == *'<END>'* ]] && break
done
# KVX_DEBUG=1: the raw terminal output, for a failing case.
zpty -d z; [[ -n $KVX_DEBUG ]] && print -r -- "$out" | cat -v >&2
print -rl -- ${(f)out} | sed -n 's/^\(.*\)<HIT>\(.*\)\r*$/\2/p' | tr -d '\r' | sort -u | xargs
ZSH

n=0
# expect "EXPECTED WORDS" LINE: LINE is typed, then <Tab>.
expect() {
	local want=$1 got
	got=$(TMP=$tmp timeout 20 zsh -f "$tmp/drive.zsh" "$2") || fail "kvmxdp: zsh did not finish '$2<Tab>'"
	[[ $got == "$want" ]] || fail "'$2<Tab>': got '$got', want '$want'"
	n=$((n + 1))
}
expect "kvxcbr0 kvxcbr1" "kvmxdp attach --bridge "
expect "kvxcbr0 kvxcbr1" "kvmxdp status --bridge=kv"
# Uplinks: not a bridge, not a bridge port (kvxctap0), not lo.
expect "auto kvxcup0 kvxcup1" "kvmxdp attach --bridge kvxcbr0 --uplink "
expect "auto tc xdp" "kvmxdp --config $tmp/k.json attach --mode "
expect "auto nat66 off relay" "kvmxdp attach --ipv6 "
expect "conntrack" "kvmxdp con"
expect "add allow del list" "kvmxdp map "
expect "default none uplink:" "kvmxdp map allow "
expect "--eif" "kvmxdp --lock-wait 5 attach --e"
# A global option's value is not taken for the command.
expect "status" "kvmxdp --lock-wait 5 st"
expect "icmp icmpv6 tcp udp" "kvmxdp conntrack flush --proto "
expect "tcp udp" "kvmxdp map add --proto "
expect "ESTABLISHED" "kvmxdp conntrack list --state EST"
# map del: the recorded mappings (with the global --config), then the
# guest side of the chosen one.
expect "10.0.0.5 uplink:2222" "kvmxdp --config $tmp/k.json map del "
expect "192.168.122.14:22" "kvmxdp --config $tmp/k.json map del uplink:2222 "

# Every command and option of --help (at every level) is offered.
check_level() {
	local words=("$@") line name help cmds=() opts=()
	help=$("$kvmxdp" "${words[@]}" --help)
	local section=
	while IFS= read -r line; do
		case $line in
		Options:) section=o ;;
		Subcommands:) section=s ;;
		Positionals:) section=p ;;
		"  "[!\ ]*)
			name=${line#  }
			name=${name%% *}
			case $section in
			o) for name in ${name//,/ }; do [[ $name == --* ]] && opts+=("$name"); done ;;
			s) cmds+=("$name") ;;
			esac
			;;
		esac
	done <<<"$help"
	local prefix="kvmxdp ${words[*]}${words[*]:+ }" got
	got=" $(TMP=$tmp timeout 20 zsh -f "$tmp/drive.zsh" "$prefix--") "
	for name in "${opts[@]}"; do
		[[ $got == *" $name "* ]] || fail "'$prefix--<Tab>' does not offer $name (offers:$got)"
	done
	n=$((n + 1))
	((${#cmds[@]})) || return 0
	got=" $(TMP=$tmp timeout 20 zsh -f "$tmp/drive.zsh" "$prefix") "
	for name in "${cmds[@]}"; do
		[[ $got == *" $name "* ]] || fail "'$prefix<Tab>' does not offer $name (offers:$got)"
	done
	n=$((n + 1))
	for name in "${cmds[@]}"; do
		check_level "${words[@]}" "$name"
	done
}
check_level
echo "check_zsh_completion: ok: $n cases"
