#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/bad_input.sh: every bad invocation exits non-zero with exactly one
# `kvmxdp: error:` line on stderr that names the offending value, and leaves
# nothing behind (no qdisc/filter/pin/sysctl/config change): bad options,
# an interface name that is no UTF-8, a config holding a value the CLI
# refuses.  A second attach while a daemon runs is refused the same way and
# the running datapath is untouched; `conntrack --bridge` takes names only.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                              kx\xff<id> (a veth to ky<id>, lan ns)
#                                                     ip_local_port_range 32768-60999 (default)
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: bad_input.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
nsx "$NS_HOST" sysctl -qw net.ipv4.ip_local_port_range="32768 60999"

# bad_case DESC VALUE kvmxdp-args...: must fail cleanly, naming VALUE.
# STATE holds the host state before the case (refreshed when one failed).
bad_case() {
	local desc=$1 value=$2 rc=0 before=$STATE after errlines lines; shift 2
	timeout 5 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" "$@" \
		>"$KVX_TMP/bad.out" 2>"$KVX_TMP/bad.err" </dev/null || rc=$?
	kvx_log "case '$desc': kvmxdp $* -> exit $rc, stderr: $(head -c 600 "$KVX_TMP/bad.err")"
	if ((rc == 124)); then
		kvx_fail "$desc: kvmxdp $* was accepted (still running after 5 s); stdout: $(head -c 300 "$KVX_TMP/bad.out")"
		kvx detach --bridge "$BR" >/dev/null 2>&1 || true
		STATE=$(kvx_host_state)
		return 0
	fi
	assert_ne "$desc: exit code" 0 "$rc"
	errlines=$(grep -c '^kvmxdp: error: ' "$KVX_TMP/bad.err" || true)
	lines=$(grep -c . "$KVX_TMP/bad.err" || true)
	assert_eq "$desc: one 'kvmxdp: error:' line" 1 "$errlines"
	assert_eq "$desc: nothing else on stderr" 1 "$lines"
	assert_contains "$desc: the error names '$value'" "$value" "$(grep '^kvmxdp: error: ' "$KVX_TMP/bad.err" || true)"
	after=$(kvx_host_state)
	if [[ "$after" == "$before" ]]; then
		kvx_pass "$desc: nothing changed in the host ns"
	else
		kvx_fail "$desc: host state changed:"$'\n'"$(diff <(echo "$before") <(echo "$after") || true)"
		STATE=$after
	fi
}

ATTACH=(attach --bridge "$BR" --uplink "$UP")
STATE=$(kvx_host_state)

kvx_step "bad input, nothing attached"
bad_case "unknown uplink" "nosuch$KVX_ID" attach --bridge "$BR" --uplink "nosuch$KVX_ID"
bad_case "unknown bridge" "nobr$KVX_ID" attach --bridge "nobr$KVX_ID" --uplink "$UP"
bad_case "--bridge is not a bridge" "$P1_IF" attach --bridge "$P1_IF" --uplink "$UP"
bad_case "--subnet prefix /33" "192.168.122.0/33" "${ATTACH[@]}" --subnet 192.168.122.0/33
bad_case "--subnet octet 300" "192.168.300.0/24" "${ATTACH[@]}" --subnet 192.168.300.0/24
bad_case "--subnet garbage" "not-a-subnet" "${ATTACH[@]}" --subnet not-a-subnet
bad_case "--nat-ports reversed" "20000-10000" "${ATTACH[@]}" --nat-ports 20000-10000
bad_case "--nat-ports beyond 65535" "10000-70000" "${ATTACH[@]}" --nat-ports 10000-70000
bad_case "--nat-ports garbage" "abc" "${ATTACH[@]}" --nat-ports abc
bad_case "--nat-ports overlapping the ephemeral range" "30000-40000" "${ATTACH[@]}" --nat-ports 30000-40000
bad_case "detach of a bridge never attached" "nobr$KVX_ID" detach --bridge "nobr$KVX_ID"
bad_case "--ct-size 0" "--ct-size" "${ATTACH[@]}" --ct-size 0
bad_case "--bind-size garbage" "--bind-size" "${ATTACH[@]}" --bind-size lots
bad_case "missing --uplink" "--uplink" attach --bridge "$BR"
bad_case "unknown option" "--frobnicate" "${ATTACH[@]}" --frobnicate
bad_case "unknown subcommand" "frobnicate" frobnicate --bridge "$BR"
bad_case "--uplink is the bridge itself" "$BR" attach --bridge "$BR" --uplink "$BR"
bad_case "--mode garbage" "fast" "${ATTACH[@]}" --mode fast
# A device the kernel accepts but whose name is no UTF-8 (any byte but '/',
# ':' and blanks is allowed): refused by name, shown escaped.
BADNAME=$'kx\xff'$KVX_ID
kvx_veth "$NS_HOST" "$BADNAME" "$NS_LAN" "ky$KVX_ID"
STATE=$(kvx_host_state)
bad_case "uplink name not UTF-8" "'kx\\xff$KVX_ID'" attach --bridge "$BR" --uplink "$BADNAME"
# A config hand-edited with a value the CLI refuses (--ct-size caps at
# 2^24): attach refuses it, naming the file, the key and the value.
cat >"$KVX_CFG" <<EOF
{"version": 1, "instances": [{"bridge": "kz$KVX_ID", "uplink": "kw$KVX_ID",
  "subnet": "192.168.124.0/24", "nat_port_lo": 61000, "nat_port_hi": 65535, "eif": false,
  "ct_size": 4294967295, "bind_size": 1024, "bpffs": "$BPFFS",
  "pin_dir": "$BPFFS/kvmxdp/kz$KVX_ID", "clsact_created": {"bridge": true, "uplink": true},
  "saved_sysctls": {}, "mappings": []}]}
EOF
cfg_before=$(cat "$KVX_CFG")
bad_case "config with ct_size 2^32-1" "config $KVX_CFG: invalid instances[0].ct_size '4294967295'" "${ATTACH[@]}"
assert_eq "config with ct_size 2^32-1: file unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
# A forward a detach kept, on ports this attach's explicit NAT range
# would take: the config it wrote could not be read back.  (The default
# pool makes room for forwards: their static binding holds the port.)
cat >"$KVX_CFG" <<EOF
{"version": 1, "instances": [], "detached": {"$BR": {"uplink": "$UP", "mappings": [
  {"ext": "uplink:62000", "guest": "192.168.122.11:80", "proto": "tcp", "add_address": false,
   "network": null, "gateway": null}]}}}
EOF
cfg_before=$(cat "$KVX_CFG")
bad_case "a kept forward inside the NAT ports" "mapping 'uplink:62000 192.168.122.11:80 tcp': external ports 62000 overlap the NAT port range 61000-65535" "${ATTACH[@]}" --nat-ports 61000-65535
assert_eq "a kept forward inside the NAT ports: config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
rm -f "$KVX_CFG"
# No --subnet and no address on the bridge: there is no guest subnet to use.
ip -n "$NS_HOST" addr del "$GW_IP/24" dev "$BR"
STATE=$(kvx_host_state)
bad_case "bridge without an address and no --subnet" "$BR" "${ATTACH[@]}"
ip -n "$NS_HOST" addr add "$GW_IP/24" dev "$BR"
assert_eq "config lists no instance" 0 "$(kvx_instances_of_br)"

kvx_step "second attach while the daemon runs"
kvx_attach_bg || kvx_fatal "cannot attach"
first=$KVX_DAEMON_PID
STATE=$(kvx_host_state)
bad_case "second attach" "$BR" "${ATTACH[@]}"
# Not an interface name, though the pins it would name are there.
bad_case "conntrack --bridge $BR/" "'$BR/'" conntrack list --bridge "$BR/"
assert_eq "first daemon still running" 0 "$(kill -0 "$first" 2>/dev/null; echo $?)"
assert_eq "status still names the first daemon" "$first" "$(kvx_json 'i["daemon_pid"]')"
assert_eq "one bpf filter on the bridge" 1 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "guest1 ping through the running datapath" 5 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 5)"
# Another bridge (a second libvirt network), so that only the uplink is bad.
BR2=kc$KVX_ID
kvx_bridge_add "$BR2" 192.168.123.1/24
cfg_before=$(cat "$KVX_CFG")
bad_case "attach of another bridge on a bad uplink while running" "nosuch$KVX_ID" \
	attach --bridge "$BR2" --uplink "nosuch$KVX_ID"
kvx_assert_bridge_untouched "another bridge" "$BR2"
assert_eq "another bridge: config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
assert_eq "guest2 ping through the running datapath" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
