#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/detach.sh: `kvmxdp detach` after real traffic puts the host back
# exactly as it was: no tc filter, no clsact qdisc kvmxdp created (another
# tool's clsact and filter on the uplink stay: docs/pitfalls.md,
# foreign-hooks), no pins, the
# bridge's forwarding and ip_local_reserved_ports restored, the daemon gone,
# the instance gone from the config; and forwarding stops.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                     (uplink: a foreign clsact + u32 filter)
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: detach.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file blob 2)

# Another tool's clsact qdisc and filter on the uplink (u32, match-all, no action: runs after ours).
tc -n "$NS_HOST" qdisc add dev "$UP" clsact
tc -n "$NS_HOST" filter add dev "$UP" ingress pref 65000 u32 match u32 0 0
# A non-default reserved-ports value that must come back verbatim (inside
# the ephemeral range: the default NAT pool is every other port, and the
# kernel would merge a port inside it into the pool's range).
nsx "$NS_HOST" sysctl -qw net.ipv4.ip_local_reserved_ports=40000
before=$(kvx_host_state)

kvx_step "attach and traffic"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "bridge forwarding on while attached" 1 \
	"$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"
lo=$(kvx_json 'i["nat_port_lo"]') hi=$(kvx_json 'i["nat_port_hi"]')
slo=$(kvx_json 'i["nat_pool"]["nat_skip_lo"]') shi=$(kvx_json 'i["nat_pool"]["nat_skip_hi"]')
res=$(kvx_sysctl_get "$NS_HOST" net/ipv4/ip_local_reserved_ports)
# The pool: the range without the host's ephemeral range, each part reserved.
assert_eq "NAT pool reserved while attached" "$lo-$((slo - 1)),40000,$((shi + 1))-$hi" "$res"
assert_ne "pins exist while attached" "" "$(kvx_pins)"
assert_eq "guest1 ping" 5 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 5)"
assert_eq "guest2 curl" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"

kvx_step "detach (while guest1 pings every 10 ms)"
kvx_bg "$KVX_TMP/busy.log" ip netns exec "$NS_G1" ping -n -q -i 0.01 -c 300 "$SRV_IP"
sleep 0.5
daemon=$KVX_DAEMON_PID
out=$(kvx detach --bridge "$BR" 2>&1) && rc=0 || rc=$?
assert_eq "kvmxdp detach exit code (output: $out)" 0 "$rc"
kvx_wait_for 5 "daemon $daemon to exit after detach" bash -c "! kill -0 $daemon 2>/dev/null" &&
	kvx_pass "daemon exited after detach"
wait "$daemon" 2>/dev/null || true
after=$(kvx_host_state)
if [[ "$after" == "$before" ]]; then
	kvx_pass "host state after detach equals the state before attach"
else
	kvx_fail "host state differs after detach:"$'\n'"$(diff <(echo "$before") <(echo "$after") || true)"
fi
assert_eq "no bpf filter on the bridge" 0 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "no bpf filter on the uplink" 0 "$(kvx_tc_bpf_filters "$UP")"
assert_not_contains "no clsact left on the bridge" clsact "$(tc -n "$NS_HOST" qdisc show dev "$BR")"
assert_contains "the foreign clsact on the uplink stays" clsact "$(tc -n "$NS_HOST" qdisc show dev "$UP")"
assert_contains "the foreign filter on the uplink stays" u32 "$(tc -n "$NS_HOST" filter show dev "$UP" ingress)"
assert_empty "no pins under $BPFFS/kvmxdp" "$(kvx_pins)"
assert_eq "bridge forwarding restored" 0 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"
assert_eq "reserved ports restored" 40000 "$(kvx_sysctl_get "$NS_HOST" net/ipv4/ip_local_reserved_ports)"
assert_eq "status lists no instance for the bridge" 0 "$(kvx_instances_of_br)"
if [[ -f "$KVX_CFG" ]]; then
	assert_not_contains "config no longer names the bridge" "\"$BR\"" "$(cat "$KVX_CFG")"
fi

kvx_step "forwarding stopped"
assert_eq "guest1 ping fails after detach" 0 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
assert_fails "guest2 curl fails after detach" \
	nsx "$NS_G2" curl -sS --fail --max-time 3 -o /dev/null "http://$SRV_IP:8080/blob"
clients=$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')
assert_eq "http server saw only the uplink address" "$UP_IP" "$clients"
kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
