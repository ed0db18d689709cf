#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/bind_release.sh: README, "Conntrack: list and flush": the daemon's
# GC releases NAT bindings no flow uses once they have been idle for 30 s.
# With one NAT port (--nat-ports 61000-61000) and short UDP timeouts (3 s):
#  - guest1's UDP flow takes external port 61000 (the server sees it);
#  - the flow expires and leaves `conntrack list`, its binding stays:
#    `status` still counts the pair and guest2's new flow finds no port
#    (DROP_PORTS_EXHAUSTED, no answer);
#  - the binding goes no earlier than 30 s after it was last used and
#    within one GC sweep (5 s) after that;
#  - then guest2's new flow takes the same external port 61000.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   UDP client from :40001
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   UDP client from :40002
#   host ns: bridge kb<id> 192.168.122.1/24 -------+   kvmxdp --nat-ports 61000-61000
#            uplink ku<id> 10.77.0.2/24                       --timeouts udp=3,udp_stream=3
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24: UDP peer :5001 (logs the source it saw)
#
# Usage: bind_release.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_udp_server "$SRV_IP:5001"

GRACE=30 # s, loader/gc.hpp kBindGraceNs
SWEEP=5  # s, the daemon's GC interval
kvx_attach_bg --nat-ports 61000-61000 --timeouts udp=3,udp_stream=3 || kvx_fatal "cannot attach"

bindings() { kvx_json "i['bindings']['entries']"; }
flows() { kvx conntrack list --json --bridge "$BR" 2>>"$KVX_TMP/ct.err" | kvx_json_len; }
kvx_json_len() { "$KVX_PY" -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || true; }
now() { date +%s.%N; }
since() { "$KVX_PY" -c 'import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }

kvx_step "guest1's flow takes the only NAT port"
t0=$(now) # before the binding is created: it was last used at t0 or later
assert_contains "guest1 -> server from uplink:61000" "data=seen=$UP_IP:61000 " \
	"$(kvx_udp_client "$NS_G1" --bind 40001 --count 2 --msg one "$SRV_IP:5001" || true)"
assert_eq "status: one binding pair" 2 "$(bindings)"
assert_eq "conntrack list: guest1's flow" 1 "$(flows)"

kvx_step "the flow expires, the binding stays"
flows_gone() { [[ $(flows) == 0 ]]; }
must kvx_wait_for $((3 + 2 * SWEEP + 2)) "guest1's flow to expire from conntrack list" flows_gone
assert_le "flow gone well within the grace (s since t0)" "$(since "$t0")" $((GRACE - 10))
assert_eq "status: the binding pair is still there" 2 "$(bindings)"
drops=$(kvx_counter DROP_PORTS_EXHAUSTED)
assert_empty "guest2 gets no port while guest1's binding holds it" \
	"$(kvx_udp_client "$NS_G2" --bind 40002 --msg early --wait 0.5 "$SRV_IP:5001" || true)"
assert_ge "DROP_PORTS_EXHAUSTED counted guest2's datagram" "$(kvx_counter DROP_PORTS_EXHAUSTED)" $((drops + 1))
assert_le "checked before the grace ran out (s since t0)" "$(since "$t0")" $((GRACE - 5))
assert_not_contains "the server never saw guest2's early datagram" "data=early" "$(cat "$KVX_TMP/udp.log")"

kvx_step "released after the grace"
bindings_gone() { [[ $(bindings) == 0 ]]; }
must kvx_wait_for $((GRACE + 2 * SWEEP + 5)) "the binding to be released" bindings_gone
held=$(since "$t0")
kvx_log "binding released ${held} s after t0"
assert_ge "held for the grace at least (s since t0)" "$held" "$GRACE"
assert_le "released within a sweep or two after the grace (s since t0)" "$held" $((GRACE + 2 * SWEEP + 2))
assert_contains "guest2's new flow takes the released port 61000" "data=seen=$UP_IP:61000 " \
	"$(kvx_udp_client "$NS_G2" --bind 40002 --msg after2 "$SRV_IP:5001" || true)"
assert_contains "the server saw guest2 from uplink:61000" "port=5001 peer=$UP_IP:61000 data=after2" \
	"$(cat "$KVX_TMP/udp.log")"
assert_eq "status: guest2's binding pair" 2 "$(bindings)"

kvx_finish
