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
# name, from a completions directory), as the package installs it.
set -euo pipefail

fail() {
	echo "check_completion: FAIL: $*" >&2
	exit 1
}
[[ $# -ge 2 && -x $1 && -f $2 ]] || fail "usage: check_completion.sh KVMXDP_BINARY COMPLETION_FILE"
kvmxdp=$(readlink -f "$1")
completion=$(readlink -f "$2")

if [[ ${3:-} != --inside ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "check_completion: skip: needs root (a network namespace with its own sysfs)"
		exit 77
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf --one-file-system "$tmp"' EXIT
	# A private network and mount namespace: the interfaces made here, and
	# the sysfs that shows them, vanish with it.
	unshare --net --mount -- bash "$0" "$kvmxdp" "$completion" --inside "$tmp"
	exit
fi
tmp=$4
mount --make-rprivate /
mount -t sysfs sysfs /sys
ip link add kvxcbr0 type bridge
ip link add kvxcbr1 type bridge
ip link add kvxcup0 type veth peer name kvxcup1
ip tuntap add dev kvxctap0 mode tap # a guest's vnetN
ip link set kvxctap0 master kvxcbr0

cat >"$tmp/k.json" <<'JSON'
{"version": 1, "instances": [{"bridge": "kvxcbr0", "uplink": "kvxcup0", "subnet": "192.168.122.0/24",
 "nat_port_lo": 61000, "nat_port_hi": 65535, "eif": false, "ct_size": 65536, "bind_size": 65536,
 "bpffs": "/sys/fs/bpf", "pin_dir": "/sys/fs/bpf/kvmxdp/kvxcbr0",
 "clsact_created": {"bridge": false, "uplink": false}, "saved_sysctls": {}, "clamp_mss": 0,
 "mappings": [{"ext": "10.0.0.5", "guest": "192.168.122.11", "proto": "any", "add_address": false},
              {"ext": "uplink:2222", "guest": "192.168.122.14:22", "proto": "tcp", "add_address": false}]}]}
JSON
chmod 600 "$tmp/k.json"

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
expect "attach conntrack detach doctor import install libvirt-hook map status top" ""
expect "conntrack" con
expect "--bpffs --config --help --lock-wait --run-dir --verbose --version" --
expect "add del list" map ""
expect "kvxcbr0 kvxcbr1" attach --bridge ""
# Uplinks: not a bridge, not a bridge port (kvxctap0), not lo.
expect "auto kvxcup0 kvxcup1" attach --bridge kvxcbr0 --uplink ""
expect "auto tc xdp" --config "$tmp/k.json" attach --mode ""
expect "none" attach --subnet6 ""
expect "--eif" --lock-wait 5 attach --e
# A global option's value is not taken for the command.
expect "status" --lock-wait 5 st
expect "--state" conntrack list --st
expect "icmp tcp udp" conntrack flush --proto ""
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
