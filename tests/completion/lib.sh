# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# tests/completion/lib.sh: the fixture the bash and the zsh completion
# checks share, sourced with the check's own arguments (KVMXDP_BINARY
# COMPLETION_FILE) after the check set CHECK (its name for messages) and,
# if it wants, defined precheck() (run once, outside the namespace).
#
# The check runs again inside a private network and mount namespace with a
# sysfs of its own, so the interfaces made here vanish with it: two bridges
# kvxcbr0 and kvxcbr1, a veth pair kvxcup0/kvxcup1 and a tap kvxctap0 (a
# guest's vnetN) on kvxcbr0, a bridge port that is no uplink.  $tmp/k.json
# is a config with a 1:1 mapping and a port forward on kvxcbr0, for
# `map del`.  Sets kvmxdp, completion and tmp.

fail() {
	echo "$CHECK: FAIL: $*" >&2
	exit 1
}
[[ $# -ge 2 && -x $1 && -f $2 ]] || fail "usage: $CHECK.sh KVMXDP_BINARY COMPLETION_FILE"
kvmxdp=$(readlink -f "$1")
completion=$(readlink -f "$2")

if [[ ${3:-} != --inside ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "$CHECK: skip: needs root (a network namespace with its own sysfs)"
		exit 77
	fi
	if declare -F precheck >/dev/null; then
		precheck
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf --one-file-system "$tmp"' EXIT
	unshare --net --mount -- bash "$0" "$kvmxdp" "$completion" --inside "$tmp"
	exit
fi
tmp=$4
mount --make-rprivate /
mount -t sysfs sysfs /sys
ip link add kvxcbr0 type bridge
ip link add kvxcbr1 type bridge
ip link add kvxcup0 type veth peer name kvxcup1
ip tuntap add dev kvxctap0 mode tap
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
