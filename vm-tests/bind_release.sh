#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/bind_release.sh: README, "Conntrack: list and flush": the daemon's
# GC releases NAT bindings no flow uses once they have been idle for 30 s;
# `conntrack flush` counts the bindings of the flows it deletes as used.
# With two NAT ports (--nat-ports 61000-61001) and short UDP timeouts (3 s):
#  - guest2's UDP stream (one socket, a datagram every 0.5 s) keeps its own
#    port 61001 (port preservation) and holds it throughout;
#  - guest1's UDP flow takes the other external port, 61000 (the server sees it);
#  - the flow expires and leaves `conntrack list`, its binding stays:
#    `status` still counts the pair and guest2's new flow finds no port
#    (DROP_PORTS_EXHAUSTED, no answer);
#  - the binding goes no earlier than 30 s after it was last used and
#    within one GC sweep (5 s) after that;
#  - then guest2's new flow takes the same external port 61000;
#  - `conntrack flush` under the stream, by then one flow older than the
#    grace (its datagrams keep refreshing its binding): the GC sweep after
#    the flush keeps the stream's binding, guest1's new socket finds no free
#    port, and the stream goes on from 61001 with every datagram answered.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   UDP client from :40001, :40005
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   UDP client from :40002, stream from :61001
#   host ns: bridge kb<id> 192.168.122.1/24 -------+   kvmxdp --nat-ports 61000-61001
#            uplink ku<id> 10.77.0.2/24                       --timeouts udp=3,udp_stream=3
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24: UDP peer :5001 (logs the source it saw)
#
# Usage: bind_release.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_udp_server "$SRV_IP:5001"

GRACE=30 # s, loader/control/gc.hpp kBindGraceNs
SWEEP=5  # s, the daemon's GC interval
kvx_attach_bg --nat-ports 61000-61001 --timeouts udp=3,udp_stream=3 || kvx_fatal "cannot attach"

bindings() { kvx_json "i['bindings']['entries']"; }
# flows_of GUEST: the flows `conntrack list --guest GUEST` shows, as JSON.
flows_of() { kvx conntrack list --json --bridge "$BR" --guest "$1" 2>>"$KVX_TMP/ct.err"; }
flows() { flows_of "$G1_IP" | kvx_json_len; }
kvx_json_len() { "$KVX_PY" -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || true; }
# The seconds since guest2's flow from :PORT began ('' if there is none).
flow_age() {
	flows_of "$G2_IP" | "$KVX_PY" -c '
import json, sys
print(*[f["age_s"] for f in json.load(sys.stdin) if f["int_port"] == int(sys.argv[1])])' "$1" 2>/dev/null || true
}
now() { date +%s.%N; }
since() { "$KVX_PY" -c 'import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }

kvx_step "guest2's stream keeps its own port 61001"
STREAM=$KVX_TMP/stream.log HOLD=$KVX_TMP/stream.hold
kvx_bg "$STREAM" ip netns exec "$NS_G2" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" stream \
	--bind 61001 --interval 0.5 --hold "$HOLD" "$SRV_IP:5001"
STREAM_PID=$KVX_LAST_PID
must kvx_wait_file_contains 10 "$STREAM" "seen=$UP_IP:61001"
# The stream's datagrams from FIRST on that got no answer.
stream_unanswered() {
	awk -v first="$1" -F'[= ]' '
		/^sent=/ && $2 >= first { sent[$2] = 1; if ($2 > last) last = $2 }
		/^reply=/ { got[$2] = 1 }
		END { for (n = first; n <= last; n++) if (sent[n] && !got[n]) printf "%d ", n }' "$STREAM"
}
stream_last_sent() { sed -n 's/^sent=//p' "$STREAM" | tail -n 1; }
# The stream quiet: HOLD exists, its Nth "held" line is out (nothing is sent
# after it) and its last datagram was answered (nothing in flight).
stream_held() { # N
	[[ $(grep -c '^held$' "$STREAM") -ge $1 ]] && [[ -z $(stream_unanswered "$(stream_last_sent)") ]]
}

kvx_step "guest1's flow takes the other NAT port"
t0=$(now) # before the binding is created: it was last used at t0 or later
assert_contains "guest1 -> server from uplink:61000" "data=seen=$UP_IP:61000 " \
	"$(kvx_udp_client "$NS_G1" --bind 40001 --count 2 --msg one "$SRV_IP:5001" || true)"
assert_eq "status: guest1's and the stream's binding pairs" 4 "$(bindings)"
assert_eq "conntrack list: guest1's flow" 1 "$(flows)"

kvx_step "the flow expires, the binding stays"
flows_gone() { [[ $(flows) == 0 ]]; }
must kvx_wait_for $((3 + 2 * SWEEP + 2)) "guest1's flow to expire from conntrack list" flows_gone
assert_le "flow gone well within the grace (s since t0)" "$(since "$t0")" $((GRACE - 10))
assert_eq "status: the binding pair is still there" 4 "$(bindings)"
drops=$(kvx_counter DROP_PORTS_EXHAUSTED)
assert_empty "guest2 gets no port while guest1's binding holds it" \
	"$(kvx_udp_client "$NS_G2" --bind 40002 --msg early --wait 0.5 "$SRV_IP:5001" || true)"
assert_ge "DROP_PORTS_EXHAUSTED counted guest2's datagram" "$(kvx_counter DROP_PORTS_EXHAUSTED)" $((drops + 1))
assert_le "checked before the grace ran out (s since t0)" "$(since "$t0")" $((GRACE - 5))
assert_not_contains "the server never saw guest2's early datagram" "data=early" "$(cat "$KVX_TMP/udp.log")"

kvx_step "released after the grace"
bindings_gone() { [[ $(bindings) == 2 ]]; } # the stream's pair stays
must kvx_wait_for $((GRACE + 2 * SWEEP + 5)) "the binding to be released" bindings_gone
held=$(since "$t0")
kvx_log "binding released ${held} s after t0"
assert_ge "held for the grace at least (s since t0)" "$held" "$GRACE"
assert_le "released within a sweep or two after the grace (s since t0)" "$held" $((GRACE + 2 * SWEEP + 2))
assert_contains "guest2's new flow takes the released port 61000" "data=seen=$UP_IP:61000 " \
	"$(kvx_udp_client "$NS_G2" --bind 40002 --msg after2 "$SRV_IP:5001" || true)"
assert_contains "the server saw guest2 from uplink:61000" "port=5001 peer=$UP_IP:61000 data=after2" \
	"$(cat "$KVX_TMP/udp.log")"
assert_eq "status: guest2's binding pair and the stream's" 4 "$(bindings)"

kvx_step "conntrack flush under the stream: its binding outlives the next GC sweep"
# A stream that keeps sending re-creates its flow within 0.5 s, and a new
# flow through a binding counts it as used (bpf/lib/ct.h, bind_get): the
# flush's own touch is what carries the binding over a sweep that comes
# before the stream's next datagram.  So the stream is quiet over that
# sweep (an application with nothing to say for a few seconds).
assert_ge "the stream is one flow older than the grace (s)" "$(flow_age 61001)" "$GRACE"
: >"$HOLD"
must kvx_wait_for 10 "the stream to be quiet" stream_held 1
first=$(($(stream_last_sent) + 1))
assert_ok "conntrack flush" kvx conntrack flush --bridge "$BR"
assert_eq "no flow left" 0 "$(flows_of "$G2_IP" | kvx_json_len)"
# A GC sweep certainly ran after the flush once a flow made after it has
# expired (3 s) and is gone: only the GC deletes it.
assert_contains "guest2 :40002 again, from uplink:61000 (a new flow)" "data=seen=$UP_IP:61000 " \
	"$(kvx_udp_client "$NS_G2" --bind 40002 --msg marker --wait 0.5 "$SRV_IP:5001" || true)"
marker_gone() { [[ -z $(flow_age 40002) ]]; }
must kvx_wait_for $((3 + 2 * SWEEP + 2)) "a GC sweep to delete the marker flow" marker_gone
assert_eq "status: the stream's binding pair survived the sweep (and guest2's)" 4 "$(bindings)"
drops=$(kvx_counter DROP_PORTS_EXHAUSTED)
assert_empty "guest1's new socket finds no free port: the stream still holds 61001" \
	"$(kvx_udp_client "$NS_G1" --bind 40005 --msg steal --wait 0.5 "$SRV_IP:5001" || true)"
assert_ge "DROP_PORTS_EXHAUSTED counted it" "$(kvx_counter DROP_PORTS_EXHAUSTED)" $((drops + 1))
rm -f "$HOLD"
answered() { [[ $(grep -c "^reply=" "$STREAM") -ge $(($1 + 4)) ]]; }
must kvx_wait_for 10 "four more answers to the stream" answered "$(grep -c "^reply=" "$STREAM")"
: >"$HOLD"
kvx_wait_for 10 "the stream to be quiet again" stream_held 2 || true
assert_ge "datagrams the stream sent since the flush" $(($(stream_last_sent) - first + 1)) 4
assert_empty "every one of them answered" "$(stream_unanswered "$first")"
assert_eq "every answer told the stream 61001" "$UP_IP:61001" \
	"$(sed -n 's/^reply=[0-9]* seen=//p' "$STREAM" | sort -u | paste -sd' ')"
assert_eq "the server saw the stream from uplink:61001 only" "$UP_IP:61001" \
	"$(sed -n 's/^port=5001 peer=\([0-9.:]*\) data=stream[0-9]*$/\1/p' "$KVX_TMP/udp.log" | sort -u | paste -sd' ')"
assert_not_contains "the server never saw guest1's datagram" "data=steal" "$(cat "$KVX_TMP/udp.log")"
kvx_kill_pid "$STREAM_PID"

kvx_finish
