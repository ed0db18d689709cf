#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/completion/check_completion.sh KVMXDP COMPLETION: the bash completion
# (completion/kvmxdp.bash) driven as bash drives it: COMP_WORDS and
# COMP_CWORD in, COMPREPLY out, against this build's binary.  Bridges and
# uplinks come from a network namespace of the test's own with its own
# sysfs (two bridges, a veth pair, a bridge port that is no uplink); `map
# del` completes the mappings of a config the test writes.  The file is
# loaded the way bash-completion loads it (its loader, by the command's
# name, from a completions directory), as the package installs it.  The
# interfaces and the config: lib.sh.
set -euo pipefail

CHECK=check_completion
# shellcheck source=tests/completion/lib.sh
source "$(dirname "$0")/lib.sh"

# bash-completion's loader finds completions/<command> under XDG_DATA_DIRS.
mkdir -p "$tmp/share/bash-completion/completions"
cp "$completion" "$tmp/share/bash-completion/completions/kvmxdp"
loader=/usr/share/bash-completion/bash_completion
[[ -r $loader ]] || fail "$loader missing (Debian package bash-completion: scripts/install-deps.sh)"
export XDG_DATA_DIRS=$tmp/share
set +eu # bash-completion is not written for -e/-u
# shellcheck disable=SC1090
source "$loader"
__load_completion kvmxdp || fail "bash-completion did not load completions/kvmxdp"
set -eu
[[ $(complete -p kvmxdp) == "complete -F _kvmxdp kvmxdp" ]] || fail "complete -p kvmxdp: $(complete -p kvmxdp)"

n=0
# expect "EXPECTED WORDS" WORD...: the last WORD is the one being completed.
expect() {
	local want=$1
	shift
	COMP_WORDS=("$kvmxdp" "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="${COMP_WORDS[*]}"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_kvmxdp kvmxdp "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	local got
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | xargs)
	[[ $got == "$want" ]] || fail "kvmxdp $*<Tab>: got '$got', want '$want'"
	n=$((n + 1))
}
expect "attach conntrack detach doctor import install libvirt-hook map reload status top" ""
expect "conntrack" con
expect "--bpffs --config --help --lock-wait --run-dir --verbose --version" --
expect "add allow del list" map ""
expect "default none uplink:" map allow ""
expect "kvxcbr0 kvxcbr1" attach --bridge ""
# Uplinks: not a bridge, not a bridge port (kvxctap0), not lo.
expect "auto kvxcup0 kvxcup1" attach --bridge kvxcbr0 --uplink ""
expect "auto tc xdp" --config "$tmp/k.json" attach --mode ""
expect "none" attach --subnet6 ""
expect "auto nat66 off relay" attach --ipv6 ""
expect "--eif" --lock-wait 5 attach --e
# A global option's value is not taken for the command.
expect "status" --lock-wait 5 st
expect "--state" conntrack list --st
expect "icmp icmpv6 tcp udp" conntrack flush --proto ""
expect "tcp udp" map add --proto ""
expect "ESTABLISHED" conntrack list --state EST
expect "kvxcbr0 kvxcbr1" status --bridge kv
expect "--interval" top --int
expect "kvxcbr0 kvxcbr1" top --bridge kv
expect "off" attach --bridge kvxcbr0 --metrics o
expect "--arp-wait" doctor --ar
expect "kvxcbr0 kvxcbr1" doctor --json --bridge ""
# map del: the recorded mappings (with the global --config), then the
# guest side of the chosen one.
expect "10.0.0.5 uplink:2222" --config "$tmp/k.json" map del ""
expect "192.168.122.14:22" --config "$tmp/k.json" map del uplink:2222 ""
expect "192.168.122.11" --config "$tmp/k.json" map del --bridge kvxcbr0 10.0.0.5 ""
expect "network qemu" libvirt-hook ""
expect "--qemu-hook-dir" install --q
# Nothing for a value nobody can guess.
expect "" attach --ct-size ""
expect "" doctor --arp-wait ""
echo "check_completion: ok: $n cases"
