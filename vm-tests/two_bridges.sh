#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/two_bridges.sh: two guest bridges share one uplink (two libvirt
# networks behind one WiFi).  README: "One bridge per uplink: a second
# `attach` on an uplink that already serves a bridge is refused."  So the
# second `kvmxdp attach` exits non-zero at once with exactly one line, the
# error naming the uplink and the bridge that has it; nothing changes (no
# qdisc, filter or pin for the second bridge, the config and the first
# instance untouched) and the second bridge's guest gets nothing out.
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
kvx_bridge_add "$BR2" 192.168.123.1/24
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

kvx_step "second instance: $BR2 on the same uplink $UP is refused"
cfg_before=$(cat "$KVX_CFG")
# A refusal is immediate; an attach that was accepted would stay in the
# foreground as a daemon until the timeout (exit 124).
rc=0
timeout 10 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR2" --uplink "$UP" \
	>"$KVX_TMP/second.out" 2>"$KVX_TMP/second.err" </dev/null || rc=$?
kvx_log "second attach: exit $rc, stderr: $(cat "$KVX_TMP/second.err")"
assert_eq "refused: exit code 1" 1 "$rc"
assert_empty "refused: nothing on stdout" "$(cat "$KVX_TMP/second.out")"
assert_eq "refused: exactly one line, the error" \
	"kvmxdp: error: uplink '$UP' is already used by the kvmxdp instance of bridge '$BR': one bridge per uplink (detach '$BR' first)" \
	"$(cat "$KVX_TMP/second.err")"
assert_eq "refused: nothing changed on $BR and $UP" "$before" "$(kvx_host_state)"
assert_eq "refused: config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
kvx_assert_bridge_untouched refused "$BR2"
assert_eq "refused: guest3 gets nothing out through $BR2" 0 "$(kvx_ping_received "$NS_G3" "$SRV_IP" 3)"
assert_eq "guest1 ping through $BR still works" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
r=$(kvx_udp_client "$NS_G1" --msg g1 --wait 0.5 "$SRV_IP:5001" || true)
assert_contains "guest1 UDP through $BR still works" "data=g1" "$r"
assert_eq "status still names the first daemon" "$first" "$(kvx_json 'i["daemon_pid"]')"
assert_eq "first daemon still running" 0 "$(kill -0 "$first" 2>/dev/null; echo $?)"
assert_not_contains "the server never saw a guest address" "192.168.12" "$(kvx_server_sources)"
kvx_assert_no_netfilter
kvx_finish
