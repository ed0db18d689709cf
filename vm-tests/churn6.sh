#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/churn6.sh: short IPv6 TCP connections through NAT66 far beyond
# what the NAT port range holds, with nothing dropped (churn.sh's first step
# for IPv6: RFC 7857 TIME_WAIT reuse, the per-guest port limit).
#  - a deliberately small range (--nat-ports 61000-61511, 512 ports; the
#    per-guest limit its default 7/8: 448): guest1 opens 3000 short
#    connections to the server's IPv6 address (256 bytes each way, the guest
#    closes first) at 100 a second, six times the range.  Without TIME_WAIT
#    reuse each holds its port for TIME_WAIT plus the binding grace and the
#    range is gone after 5 s; with it, guest1 reuses its own ports 2 s into
#    their TIME_WAIT.  Every connection completes with its bytes echoed
#    intact, none needs a retransmitted SYN, no drop counter moves.
#  - while guest1 churns at its port limit, guest2 opens connections of its
#    own over IPv6: every one succeeds (the eighth of the pool the limit
#    leaves), and guest1 never holds more IPv6 ports than its limit.
#
#   guest1 ns  kg1<id> fd42:99::11/64 --+
#   guest2 ns  kg2<id> fd42:99::12/64 --+ bridge kb<id> fd42:99::1/64, host ns  <- kvmxdp
#                (default via the bridge's link-local)
#                                          uplink ku<id> 2001:db8:1::2/64,
#                                          default via 2001:db8:1::1
#   lan ns     router: kl<id> 2001:db8:1::1/64, kr<id> 2001:db8:78::1/64;
#              IPv6 forwarding; no route to fd42:99::/64
#   server ns  ks<id> 2001:db8:78::2/64 (echo :9000), default via 2001:db8:78::1
#
# Usage: churn6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-150} # the ctest TIMEOUT is 180 (vm-tests/CMakeLists.txt)
kvx_init "${1:-}"
kvx_topology_up

PFX=fd42:99::/64 BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
UP6=2001:db8:1::2 RTR_UP6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2

kvx_step "IPv6 addressing"
kvx_ipv6_static_up
ip -n "$NS_SRV" -6 route add default via "$RTR6"
FLOWGEN=("$KVX_PY" -u "$KVX_LIBDIR/flowgen.py")
kvx_bg "$KVX_TMP/echo.log" ip netns exec "$NS_SRV" "${FLOWGEN[@]}" serve "$SRV6" 9000
kvx_wait_tcp_listen 10 "$NS_SRV" 9000

# The dynamic IPv6 TCP bindings (OUT halves) of a guest address right now.
guest_ports_held6() {
	kvx_map_entries kvx_bind6 | "$KVX_PY" -c '
import json, socket, struct, sys
STATIC, ONE_TO_ONE = 1, 2
want = list(struct.unpack("<4I", socket.inet_pton(socket.AF_INET6, sys.argv[1])))
print(sum(1 for e in json.load(sys.stdin)
          if e["formatted"]["key"]["dir"] == 0 and e["formatted"]["key"]["proto"] == 6
          and e["formatted"]["key"]["addr"] == want
          and not e["formatted"]["value"]["bind"]["flags"] & (STATIC | ONE_TO_ONE)))' "$1"
}
# The external ports of the dynamic IPv6 TCP bindings (IN halves).
ext_ports6() {
	kvx_map_entries kvx_bind6 | "$KVX_PY" -c '
import json, sys
for e in json.load(sys.stdin):
    k, v = e["formatted"]["key"], e["formatted"]["value"]
    if k["dir"] == 1 and k["proto"] == 6 and not v["bind"]["flags"] & 1:
        print(int.from_bytes(k["port"].to_bytes(2, "little"), "big"))'
}

kvx_step "small range: 3000 short IPv6 connections from guest1 through 512 ports"
kvx_attach_bg --nat-ports 61000-61511 || kvx_fatal "cannot attach"
assert_eq "kvx_cfg.guest_ports: the default, 7/8 of the 512 ports" 448 "$(kvx_cfg_field guest_ports)"
assert_eq "NAT66 runs" nat66 "$(kvx_json "i['ipv6_mode']")"
# One connection first: the path works before the churn is judged.
one=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$SRV6:9000" 1 | tail -1 || true)
assert_contains "guest1 reaches the server over IPv6" "ok=1 fail=0" "$one"
d0=$(kvx_drops)
kvx_bg "$KVX_TMP/churn1.log" ip netns exec "$NS_G1" "${FLOWGEN[@]}" churn "$SRV6:9000" 3000 --rate 100 --parallel 32
CHURN_PID=$KVX_LAST_PID
# guest2's connections while guest1 churns at its limit (after the first
# 5 s, by when guest1 holds its 448 ports).
sleep 6
g2=$(nsx "$NS_G2" "${FLOWGEN[@]}" churn "$SRV6:9000" 60 --rate 10 --parallel 4 | tail -1 || true)
kvx_log "guest2 during the churn: $g2"
assert_contains "every one of guest2's connections during the churn completed" "ok=60 fail=0" "$g2"
for _ in 1 2 3 4 5 6 7 8; do
	held=$(guest_ports_held6 "$G1_6")
	((held >= 440)) && break
	sleep 1
done
kvx_log "guest1 holds $held IPv6 ports during its churn (limit 448)"
assert_ge "guest1 is at its port limit while guest2 connects" "$held" 440
assert_le "guest1 never holds more than its limit (a few for racing CPUs)" "$held" 452
wait "$CHURN_PID" || kvx_fail "guest1's churn failed: $(head -5 "$KVX_TMP/churn1.log")"
out=$(tail -1 "$KVX_TMP/churn1.log")
kvx_log "guest1: $out"
assert_contains "all 3000 connections completed with their bytes echoed" "ok=3000 fail=0" "$out"
assert_contains "none waited for a retransmitted SYN (nothing dropped)" "slow=0" "$out"
assert_eq "no drop counter moved (DROP_PORTS_EXHAUSTED, DROP_GUEST_PORTS, ...)" "$d0" "$(kvx_drops)"
n=$(ext_ports6 | wc -l)
kvx_log "IPv6 bindings held after the churn: $n"
assert_le "bindings held: at most the range" "$n" 512
assert_ge "connections went through NAT66 (XLATE_OUT counted them)" "$(kvx_counter XLATE_OUT)" 3000
kvx_assert_no_netfilter
kvx_finish
