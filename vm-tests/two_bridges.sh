#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/two_bridges.sh: two guest bridges share one uplink (two libvirt
# networks behind one WiFi).  A second `kvmxdp attach` on the same uplink must
# either be refused (one error line naming the uplink, nothing changed, the
# first instance untouched) or work for both bridges; it must never silently
# take the uplink away from the first instance.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#   guest3 ns (kg3<id> 192.168.123.13/24, gw .1) ---- bridge kc<id> (192.168.123.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp x2
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.12x.0/24
#
# Usage: two_bridges.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
NS_G3=kvx-$KVX_ID-g3 BR2=kc$KVX_ID G3_IF=kg3$KVX_ID P3_IF=kp3$KVX_ID
kvx_netns_add "$NS_G3"
ip -n "$NS_HOST" link add "$BR2" type bridge
ip -n "$NS_HOST" link set "$BR2" up
ip -n "$NS_HOST" addr add 192.168.123.1/24 dev "$BR2"
kvx_veth "$NS_G3" "$G3_IF" "$NS_HOST" "$P3_IF"
nsx "$NS_HOST" ethtool -K "$P3_IF" tx off >/dev/null
ip -n "$NS_HOST" link set "$P3_IF" master "$BR2"
ip -n "$NS_G3" addr add 192.168.123.13/24 dev "$G3_IF"
ip -n "$NS_G3" route add default via 192.168.123.1
kvx_wait_for 5 "$P3_IF forwarding" bash -c \
	"ip -n $NS_HOST -d -o link show $P3_IF | grep -q 'state forwarding'"
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer

kvx_step "first instance: $BR on $UP"
kvx_attach_bg || kvx_fatal "cannot attach $BR"
first=$KVX_DAEMON_PID
assert_eq "guest1 ping through $BR" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
before=$(kvx_host_state)

kvx_step "second instance: $BR2 on the same uplink $UP"
log2=$KVX_TMP/second.log
kvx_bg "$log2" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR2" --uplink "$UP"
second=$KVX_LAST_PID
kvx_wait_for 10 "the second attach to answer" bash -c \
	"grep -q '^kvmxdp: ' '$log2' || ! kill -0 $second 2>/dev/null" || true
sleep 0.3
kvx_log "second attach: $(cat "$log2")"
if grep -q '^kvmxdp: attached' "$log2"; then
	kvx_log "accepted: both bridges must work"
	assert_eq "guest3 ping through $BR2" 3 "$(kvx_ping_received "$NS_G3" "$SRV_IP" 3)"
	r=$(kvx_udp_client "$NS_G3" --msg g3 --wait 0.5 "$SRV_IP:5001" || true)
	assert_contains "guest3 UDP through $BR2" "data=g3" "$r"
	assert_eq "guest1 ping through $BR still works" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
	r=$(kvx_udp_client "$NS_G1" --msg g1 --wait 0.5 "$SRV_IP:5001" || true)
	assert_contains "guest1 UDP through $BR still works" "data=g1" "$r"
	assert_eq "bpf filters on the uplink (one per instance or one shared)" 1 \
		"$(($(kvx_tc_bpf_filters "$UP") >= 1))"
else
	rc=0
	wait "$second" || rc=$?
	kvx_log "refused (exit $rc)"
	assert_ne "refused: exit code" 0 "$rc"
	assert_eq "refused: one 'kvmxdp: error:' line" 1 "$(grep -c '^kvmxdp: error: ' "$log2" || true)"
	assert_contains "refused: the error names the uplink" "$UP" "$(cat "$log2")"
	assert_eq "refused: nothing changed" "$before" "$(kvx_host_state)"
	assert_eq "guest1 ping through $BR still works" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
fi
assert_eq "first daemon still running" 0 "$(kill -0 "$first" 2>/dev/null; echo $?)"
assert_not_contains "the server never saw a guest address" "192.168.12" "$(kvx_server_sources)"
kvx_assert_no_netfilter
kvx_finish
