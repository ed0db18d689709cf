#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/host_ports.sh: the uplink's ports stay the host's, and a static
# mapping wins over a guest's dynamic binding, with real sockets.  Guests
# hold external ports through kvmxdp's port preservation (a guest port in
# the default pool is kept): what the server sees is checked.
#  A. A host service starts on a port guest1's UDP and TCP bindings hold
#     (a live UDP stream and an open TCP connection through them): the LAN
#     host's datagram and TCP connection to uplink:PORT reach the host's
#     service at once (no sweep needed), the guest sees none of it, its
#     stream goes on from the same port.
#  B. The daemon's next sweep releases that binding's OUT half (the stream
#     keeps its port while its flow lives): a new flow of the guest's from
#     the same guest port leaves from another external port.
#  C. `map add` on a port guest1's live UDP stream holds: accepted; the
#     LAN host's datagram to it reaches guest2 (the mapping's guest); the
#     stream's next datagrams leave from another port and still get their
#     replies.  The same for TCP: a port held by guest1's open TCP
#     connection, then forwarded to guest2's HTTP server.
#
#   guest1 ns (kg1<id> 192.168.122.11/24) --+  UDP streams from :20001, :20003; TCP from :20001, :20004
#   guest2 ns (kg2<id> 192.168.122.12/24) --+  HTTP :80, UDP echo :5301
#                                              bridge kb<id> 192.168.122.1/24, host ns, kvmxdp
#                                              (default pool), uplink ku<id> 10.77.0.2/24;
#                                              host services on :20001 (UDP, TCP) in phase A
#   lan ns:    kl<id> 10.77.0.1/24 = the LAN host (clients), kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24: UDP peers :5001, :5002; TCP :9100 (holds connections)
#
# Usage: host_ports.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_udp_server "$SRV_IP:5001" "$SRV_IP:5002"
kvx_guest_http_servers
kvx_bg "$KVX_TMP/g2udp.log" ip netns exec "$NS_G2" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" serve "$G2_IP:5301"
kvx_wait_file_contains 10 "$KVX_TMP/g2udp.log" serving
kvx_bg "$KVX_TMP/tcphold.log" ip netns exec "$NS_SRV" socat TCP-LISTEN:9100,bind="$SRV_IP",reuseaddr,fork SYSTEM:'cat >/dev/null'
kvx_wait_tcp_listen 10 "$NS_SRV" 9100

kvx_attach_bg || kvx_fatal "cannot attach"

# stream_seen LOG: the external endpoint the server saw in the stream's last reply.
stream_seen() { sed -n 's/^reply=[0-9]* seen=//p' "$KVX_TMP/$1" | tail -1; }
# wait_stream LOG N: the stream got at least N replies.
wait_stream() {
	kvx_wait_for 10 "$2 replies in $1" bash -c "(( \$(grep -c '^reply=' '$KVX_TMP/$1' || true) >= $2 ))"
}

kvx_step "A: a host service on a port a guest's binding holds gets its traffic"
kvx_bg "$KVX_TMP/s1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" stream "$SRV_IP:5001" --bind 20001 --interval 0.2
s1_pid=$KVX_LAST_PID
wait_stream s1.log 2
assert_eq "guest1's stream leaves from uplink:20001 (port kept)" "$UP_IP:20001" "$(stream_seen s1.log)"
# And a TCP connection from the same guest port: uplink:20001/tcp is its too.
kvx_bg "$KVX_TMP/t1.log" ip netns exec "$NS_G1" socat -u "SYSTEM:sleep 60" "TCP:$SRV_IP:9100,sourceport=20001,reuseaddr"
kvx_wait_for 10 "guest1's TCP connection from uplink:20001" bash -c \
	"nsenter --net=/run/netns/$NS_SRV ss -Htn state established '( sport = :9100 )' | grep -q '$UP_IP:20001'"
assert_eq "conntrack lists guest1's two flows on uplink:20001" 2 \
	"$(kvx conntrack list --bridge "$BR" --json | "$KVX_PY" -c 'import json,sys; print(sum(1 for f in json.load(sys.stdin) if f["ext_port"] == 20001))')"
# The host service starts now: the daemon has not swept since.
kvx_bg "$KVX_TMP/hostudp.log" ip netns exec "$NS_HOST" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" serve "$UP_IP:20001"
kvx_wait_file_contains 10 "$KVX_TMP/hostudp.log" serving
kvx_bg "$KVX_TMP/hosttcp.log" ip netns exec "$NS_HOST" socat TCP-LISTEN:20001,bind="$UP_IP",reuseaddr,fork SYSTEM:'echo host-service'
kvx_wait_tcp_listen 10 "$NS_HOST" 20001
r=$(kvx_udp_client "$NS_LAN" --msg to-host --wait 1 "$UP_IP:20001" || true)
kvx_log "LAN -> uplink:20001/udp: $(tr '\n' '|' <<<"$r")"
assert_contains "the host's UDP service answered the LAN host" "data=seen=$LAN_IP:" "$r"
assert_contains "  and logged its datagram" "data=to-host" "$(cat "$KVX_TMP/hostudp.log")"
out=$(nsx "$NS_LAN" timeout 5 socat -T 3 - "TCP:$UP_IP:20001,connect-timeout=3" </dev/null 2>&1 || true)
assert_eq "the host's TCP service answered the LAN host on uplink:20001" host-service "$out"
sleep 0.5
assert_not_contains "guest1's stream got nothing of it" to-host "$(cat "$KVX_TMP/s1.log")"
n=$(grep -c '^reply=' "$KVX_TMP/s1.log" || true)
wait_stream s1.log $((n + 2))
assert_eq "guest1's stream goes on from uplink:20001" "$UP_IP:20001" "$(stream_seen s1.log)"

kvx_step "B: the sweep releases the binding; the guest's new flows leave elsewhere"
kvx_wait_for 15 "the daemon to release the binding on the host's port" \
	grep -q "NAT binding entr(ies) on ports the host now listens on released" "$KVX_DAEMON_LOG" || true
assert_contains "the daemon says so" "on ports the host now listens on released" "$(cat "$KVX_DAEMON_LOG")"
n=$(grep -c '^reply=' "$KVX_TMP/s1.log" || true)
wait_stream s1.log $((n + 2))
assert_eq "the live stream keeps uplink:20001" "$UP_IP:20001" "$(stream_seen s1.log)"
# Its socket closed (its flow lives on), a new one from the same port.
kvx_kill_pid "$s1_pid"
r=$(kvx_udp_client "$NS_G1" --bind 20001 --msg new-flow --wait 1 "$SRV_IP:5002" || true)
kvx_log "guest1:20001 -> server:5002: $(tr '\n' '|' <<<"$r")"
seen=$(sed -n 's/.*data=seen=\([0-9.:]*\) .*/\1/p' <<<"$r" | head -1)
assert_eq "the new flow leaves from the uplink address" "$UP_IP" "${seen%%:*}"
assert_ne "  from another port than the host's 20001" 20001 "${seen##*:}"

kvx_step "C: map add on a port a guest's live UDP stream holds"
kvx_bg "$KVX_TMP/s3.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" stream "$SRV_IP:5001" --bind 20003 --interval 0.2
wait_stream s3.log 2
assert_eq "guest1's stream leaves from uplink:20003" "$UP_IP:20003" "$(stream_seen s3.log)"
before=$(kvx_counter XLATE_IN)
out=$(kvx map add uplink:20003 "$G2_IP:5301" --proto udp 2>&1) || kvx_fail "map add over guest1's binding refused: $out"
kvx_log "map add: $out"
assert_contains "map add names the guest it took the port from" "taken from a NAT binding of guest $G1_IP:20003" "$out"
r=$(kvx_udp_client "$NS_LAN" --msg to-forward --wait 1 "$UP_IP:20003" || true)
kvx_log "LAN -> uplink:20003/udp: $(tr '\n' '|' <<<"$r")"
assert_contains "the LAN host's datagram reached guest2 and came back" "data=seen=$LAN_IP:" "$r"
assert_contains "  guest2 logged it" "data=to-forward" "$(cat "$KVX_TMP/g2udp.log")"
assert_ge "XLATE_IN counted it" "$(($(kvx_counter XLATE_IN) - before))" 1
n=$(grep -c '^reply=' "$KVX_TMP/s3.log" || true)
wait_stream s3.log $((n + 3))
seen=$(stream_seen s3.log)
assert_eq "guest1's stream goes on from the uplink address" "$UP_IP" "${seen%%:*}"
assert_ne "  from another port" 20003 "${seen##*:}"
assert_not_contains "guest1 got nothing meant for the forward" to-forward "$(cat "$KVX_TMP/s3.log")"

kvx_step "C: map add on a port a guest's open TCP connection holds"
kvx_bg "$KVX_TMP/t4.log" ip netns exec "$NS_G1" socat -u "SYSTEM:sleep 60" "TCP:$SRV_IP:9100,sourceport=20004,reuseaddr"
kvx_wait_for 10 "guest1's TCP connection on 20004" bash -c \
	"nsenter --net=/run/netns/$NS_SRV ss -Htn state established '( sport = :9100 )' | grep -q '$UP_IP:20004'"
out=$(kvx map add uplink:20004 "$G2_IP:80" --proto tcp 2>&1) || kvx_fail "map add over guest1's TCP binding refused: $out"
assert_contains "map add names the guest" "taken from a NAT binding of guest $G1_IP:20004" "$out"
assert_eq "LAN -> uplink:20004 reaches guest2's HTTP server" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:20004/who")"
assert_eq "  which sees the LAN host" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g2.http.log")"
assert_eq "mappings in status" 2 "$(kvx_json 'len(i["mappings"])')"

kvx_finish
