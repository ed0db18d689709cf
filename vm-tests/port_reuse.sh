#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/port_reuse.sh: README, "NAT behaviour" (RFC 4787 REQ-8): a closed
# TCP connection's external port goes to another guest's SYN once it has
# been quiet for 0.5 s, and what the old connection still sends after that
# never reaches the new one.  One NAT port (--nat-ports 61000-61000), so the
# second connection can only have the first one's port:
#  - guest1 echoes 1000 bytes through the server from uplink:61000 and
#    closes first (it keeps TIME_WAIT; the server's end is closed once the
#    last ACK is in, so the server takes any new SYN on that 4-tuple);
#  - 0.7 s later guest2 connects and streams 96 KiB over 4 s from the same
#    uplink:61000: the server sees that port, the echo is intact;
#  - meanwhile the server side sends the old connection's FIN again (as a
#    late retransmission would: same sequence and ACK numbers), then its
#    last data segment: the datapath drops each (DROP_TCP_WINDOW: a FIN
#    outside the window; data outside it, with an ACK guest2's side never
#    sent either: another connection's), guest2's
#    interface sees neither sequence number, no reset either way;
#  - guest1's own late ACK from its old source port (its binding was taken
#    over) finds no port (DROP_PORTS_EXHAUSTED): never from uplink:61000
#    into guest2's connection.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   tcp_peer.py client
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   tcp_peer.py client, keep
#   host ns: bridge kb<id> 192.168.122.1/24 -------+   kvmxdp --nat-ports 61000-61000
#            uplink ku<id> 10.77.0.2/24
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24: tcp_peer.py echo :7, keep (replays)
#
# Usage: port_reuse.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up

PEER=$KVX_LIBDIR/tcp_peer.py
kvx_bg "$KVX_TMP/echo.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$PEER" echo "$SRV_IP" 7
kvx_wait_tcp_listen 10 "$NS_SRV" 7 || kvx_fatal "no echo server"
kvx_attach_bg --nat-ports 61000-61000 || kvx_fatal "cannot attach"

# Every segment of uplink:61000 as the server's interface sees it.
SRV_SEGS=$KVX_TMP/srv.segs
kvx_bg "$SRV_SEGS" ip netns exec "$NS_SRV" "$KVX_PY" -u "$PEER" keep "$SRV_IF" --port 61000
must kvx_wait_file_contains 5 "$SRV_SEGS" catching
# The hex packet of the last segment from the server to uplink:61000 whose
# flags include MASK and none of NOT ('' if none), among the first N lines
# of the capture.
srv_last() { # MASK NOT N
	head -n "$3" "$SRV_SEGS" | "$KVX_PY" -c '
import sys
mask, nmask, want = int(sys.argv[1], 0), int(sys.argv[2], 0), "src=" + sys.argv[3] + " "
# One packet that fits the MTU (a TSO send is captured before it is cut).
hexes = [l.split(" ip=")[1].strip() for l in sys.stdin
         if l.startswith("seg dir=out ") and want in l
         and int(l.split("flags=")[1].split()[0], 16) & mask
         and not int(l.split("flags=")[1].split()[0], 16) & nmask
         and (mask & 1 or " len=0 " not in l)  # data: a payload
         and len(l.split(" ip=")[1].strip()) <= 2 * 1400]
print(hexes[-1] if hexes else "")' "$1" "$2" "$SRV_IP:7"
}
# tcp_peer.py client's OUTPUT says N bytes went and came back alike.
echo_ok() { # N OUTPUT
	local l
	l=$(grep '^sent=' <<<"$2")
	[[ $l =~ ^sent=([0-9]+)\ sha=([0-9a-f]+)\ got=([0-9]+)\ sha=([0-9a-f]+)$ ]] &&
		[[ ${BASH_REMATCH[1]} == "$1" && ${BASH_REMATCH[3]} == "$1" && ${BASH_REMATCH[2]} == "${BASH_REMATCH[4]}" ]]
}
# The sequence number of a packet srv_last printed.
seq_of() { "$KVX_PY" -c 'import sys; p = bytes.fromhex(sys.argv[1]); h = (p[0] & 15) * 4; print(int.from_bytes(p[h + 4:h + 8], "big"))' "$1"; }

kvx_step "guest1's connection from uplink:61000, closed by guest1 first"
out1=$(nsx "$NS_G1" "$KVX_PY" -u "$PEER" client "$SRV_IP:7" --bytes 1000 2>&1 || true)
assert_contains "the server saw guest1 from uplink:61000" "peer=$UP_IP:61000" "$out1"
assert_ok "guest1's echo intact: 1000 bytes, sha256" echo_ok 1000 "$out1"
gport1=$(sed -n 's/^local=//p' <<<"$out1")
# The old connection's last packets as the server sent them.
kvx_wait_for 3 "the server's FIN in the capture" \
	grep -qE "^seg dir=out flags=0x[0-9a-f][13579bdf] src=$SRV_IP:7 " "$SRV_SEGS" || true
sleep 0.3 # guest1's last ACK in
nold=$(wc -l <"$SRV_SEGS")
old_fin=$(srv_last 0x01 0 "$nold")
old_data=$(srv_last 0x10 0x01 "$nold") # data, no FIN
assert_ne "the capture has the server's FIN of the old connection" "" "$old_fin"
assert_ne "the capture has the server's last data segment of the old connection" "" "$old_data"
assert_ne "two segments: the FIN and data without it" "$(seq_of "$old_fin")" "$(seq_of "$old_data")"

kvx_step "0.7 s later guest2's connection takes the same external port"
sleep 0.7
G2_SEGS=$KVX_TMP/g2.segs
kvx_bg "$G2_SEGS" ip netns exec "$NS_G2" "$KVX_PY" -u "$PEER" keep "$G2_IF" --port 7
must kvx_wait_file_contains 5 "$G2_SEGS" catching
kvx_bg "$KVX_TMP/client2.log" ip netns exec "$NS_G2" "$KVX_PY" -u "$PEER" client "$SRV_IP:7" \
	--bytes 98304 --secs 4
C2=$KVX_LAST_PID
must kvx_wait_file_contains 5 "$KVX_TMP/client2.log" "peer=$UP_IP:61000"

kvx_step "the old connection's late FIN and data from the server: dropped, never guest2's"
sleep 0.5
drop0=$(kvx_counter DROP_TCP_WINDOW)
assert_eq "the old FIN sent again" sent "$(nsx "$NS_SRV" "$KVX_PY" "$PEER" replay "$old_fin")"
sleep 0.2
assert_eq "DROP_TCP_WINDOW counted the late FIN" 1 $(($(kvx_counter DROP_TCP_WINDOW) - drop0))
drop0=$(kvx_counter DROP_TCP_WINDOW)
assert_eq "the old data segment sent again" sent "$(nsx "$NS_SRV" "$KVX_PY" "$PEER" replay "$old_data")"
sleep 0.2
assert_eq "DROP_TCP_WINDOW counted the late data segment" 1 $(($(kvx_counter DROP_TCP_WINDOW) - drop0))

kvx_step "guest1's late ACK from its old port: not into guest2's connection"
full0=$(kvx_counter DROP_PORTS_EXHAUSTED)
# guest1's TIME_WAIT answers a segment of the old connection with an ACK;
# a raw one of the same 4-tuple stands in for it here.
nsx "$NS_G1" "$KVX_PY" -c '
import socket, struct, sys
sys.path.insert(0, sys.argv[4])
from udp_peer import icmp_csum
src, dst = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[2])
hdr = struct.pack("!HHIIBBHHH", int(sys.argv[3]), 7, 1, 1, 5 << 4, 0x10, 1000, 0, 0)
c = icmp_csum(src + dst + struct.pack("!BBH", 0, 6, len(hdr)) + hdr)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.sendto(hdr[:16] + struct.pack("!H", c) + hdr[18:], (sys.argv[2], 0))' \
	"$G1_IP" "$SRV_IP" "$gport1" "$KVX_LIBDIR" || kvx_fail "guest1's raw ACK not sent"
sleep 0.2
assert_eq "guest1's late ACK found its binding gone and no free port" 1 \
	$(($(kvx_counter DROP_PORTS_EXHAUSTED) - full0))

kvx_step "guest2's connection carries on"
wait "$C2" || true
out2=$(cat "$KVX_TMP/client2.log")
assert_ok "guest2's echo intact: 96 KiB, sha256" echo_ok 98304 "$out2"
assert_not_contains "guest2 saw no segment with the old FIN's sequence number" \
	" seq=$(seq_of "$old_fin") " "$(grep '^seg dir=in ' "$G2_SEGS")"
assert_not_contains "guest2 saw no segment with the old data's sequence number" \
	" seq=$(seq_of "$old_data") " "$(grep '^seg dir=in ' "$G2_SEGS")"
assert_eq "no reset either way on guest2's connection" "" \
	"$(grep -E '^seg dir=(in|out) flags=0x[0-9a-f][4567cdef] ' "$G2_SEGS" || true)"
# On the server's side: uplink:61000's segments after the reuse are guest2's
# connection's only (guest1's late ACK did not leave from it with ack 1).
assert_not_contains "the server saw no segment of guest1's late ACK from uplink:61000" \
	"src=$UP_IP:61000 dst=$SRV_IP:7 seq=1 ack=1 " "$(tail -n +"$((nold + 1))" "$SRV_SEGS")"

kvx_finish
