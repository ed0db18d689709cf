#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/dot_bridge.sh: a bridge named like a VLAN device (kb<id>.10) works:
# bpffs refuses '.' in pin names and libbpf rewrites it, so the
# pins live under <bpffs>/kvmxdp/kb<id>:10/; traffic is translated; status
# and detach find the instance by its real name (text status exits 0: under
# the ASan build, no leak report).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id>.10 (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: dot_bridge.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up "kb$KVX_ID.10"
kvx_assert_offloads
kvx_udp_server "$SRV_IP:5001"

kvx_attach_bg || kvx_fatal "cannot attach to $BR"
pd=$(kvx_pin_dir "$BR")
assert_eq "pin dir uses ':' for '.'" "$BPFFS/kvmxdp/kb$KVX_ID:10" "$pd"
for m in kvx_cfg kvx_bind kvx_ct kvx_stats; do
	assert_ok "pinned map $m under $pd" bpftool map show pinned "$pd/$m"
done
assert_empty "no '_'-mangled pin dir" "$(kvx_bpffs_all | grep "kb${KVX_ID}_10" || true)"
assert_eq "status names the bridge" "$BR" "$(kvx_json 'i["bridge"]')"
# Text status probes every device's XDP features (netdev genl): under the
# ASan build a leaked libnl object fails it with a LeakSanitizer report.
assert_ok "status (text) exits 0" kvx status --bridge "$BR"
assert_eq "one bpf filter on $BR" 1 "$(kvx_tc_bpf_filters "$BR")"

assert_eq "guest1 ping" 10 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 10)"
assert_eq "guest2 ping" 10 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 10)"
r=$(kvx_udp_client "$NS_G1" --msg dot --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP via $BR seen from the uplink address" "seen=$UP_IP:" "$r"
assert_ge "XLATE_OUT counted" "$(kvx_counter XLATE_OUT)" 21

kvx_step "detach $BR"
kvx_daemon_stop
out=$(kvx detach --bridge "$BR" 2>&1) && rc=0 || rc=$?
assert_eq "detach exit code (output: $out)" 0 "$rc"
assert_empty "no pins left" "$(kvx_pins)"
assert_eq "no bpf filter on $BR" 0 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "forwarding of $BR restored" 0 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"
assert_eq "ping fails after detach" 0 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 2)"

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
