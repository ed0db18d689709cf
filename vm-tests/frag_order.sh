#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/frag_order.sh: IPv4 fragments that arrive before their first
# fragment (RFC 4787 REQ-14, REQ-14a).  UDP datagrams of 3000 bytes are
# fragmented by hand (vm-tests/frag_peer.py, raw sockets) and sent last
# fragment first, so every later fragment reaches kvmxdp before the first:
#  - guest1 -> server: the server gets the whole datagram, from the uplink
#    address, its bytes intact; no fragment ever leaves with the guest's
#    private source (the server's sniffer);
#  - server -> guest2 (the reply to guest2's flow): guest2 gets the whole
#    datagram from the server, its bytes intact;
#  - server -> the host's own socket: the host gets its datagram whole (the
#    later fragments that may be the host's still reach the host), and the
#    park gives their copies up once the first fragment went to the host;
#  - server -> the host, in order (ping -s 8000): nothing is parked (the
#    first fragment marks its datagram the host's);
#  - a flood of orphans (later fragments never followed by a first) from
#    guest1 and from the server: counted (FRAG_PARK_FULL), while guest2's
#    pings and a well-ordered fragmented exchange go on, and a reordered
#    datagram of guest1 right after the flood still arrives (the flood's
#    own fragments make room first);
#  - parked fragments whose first never comes expire (FRAG_PARK_EXPIRED,
#    after the fragment lifetime, 30 s).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24, ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: frag_order.sh KVMXDP_BINARY
KVX_TIMEOUT=${KVX_TIMEOUT:-150} # the ctest TIMEOUT is 180 (vm-tests/CMakeLists.txt)
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_server_sniffer
kvx_udp_server "$SRV_IP:5001"
kvx_bg "$KVX_TMP/frag_srv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/frag_peer.py" \
	serve "$SRV_IP:6000"
kvx_wait_file_contains 10 "$KVX_TMP/frag_srv.log" serving
kvx_attach_bg || kvx_fatal "cannot attach"

frag() { local ns=$1; shift; nsx "$ns" "$KVX_PY" -u "$KVX_LIBDIR/frag_peer.py" "$@"; }
# The sha256 of a "sent"/"got" line whose other fields match PATTERN.
sha_of() { sed -n "s/^$1.* sha=\([0-9a-f]*\).*/\1/p" | head -n1; }

kvx_step "guest1 -> server: a datagram whose fragments come last first"
p0=$(kvx_counter FRAG_PARKED)
out=$(frag "$NS_G1" client --bind "$G1_IP:41000" "$SRV_IP:6000" --size 3000 --wait 0.5)
kvx_log "client: $out"
sent=$(sha_of "sent to=$SRV_IP:6000 len=3000" <<<"$out")
kvx_wait_file_contains 5 "$KVX_TMP/frag_srv.log" "len=3000 sha=$sent" || true
assert_ne "guest1 sent a datagram" "" "$sent"
assert_eq "the server got it whole, from the uplink address, bytes intact" "$sent" \
	"$(sha_of "got from=$UP_IP:[0-9]* len=3000" <"$KVX_TMP/frag_srv.log")"
later=$(($(sed -n 's/^sent .* frags=\([0-9]*\)$/\1/p' <<<"$out") - 1))
assert_eq "its later fragments were parked" "$later" $(($(kvx_counter FRAG_PARKED) - p0))
assert_eq "and re-injected once the first one passed" "$later" "$(kvx_counter FRAG_REINJECTED)"

kvx_step "server -> guest2: the reply to guest2's flow, last fragment first"
r0=$(kvx_counter FRAG_REINJECTED)
out=$(frag "$NS_G2" client --bind "$G2_IP:41001" "$SRV_IP:6000" --size 0 --hello --wait 2)
kvx_log "client: $out"
sent=$(grep "^sent to=$UP_IP:" "$KVX_TMP/frag_srv.log" | tail -n1 | sed -n 's/.* sha=\([0-9a-f]*\).*/\1/p')
assert_ne "the server sent its reply" "" "$sent"
assert_eq "guest2 got it whole, from the server, bytes intact" "$sent" \
	"$(sha_of "got from=$SRV_IP:6000 len=3000" <<<"$out")"
assert_ge "the reply's later fragments were re-injected" $(($(kvx_counter FRAG_REINJECTED) - r0)) 2
assert_ge "... after going to the host too (they might have been its own)" \
	"$(kvx_counter FRAG_PARKED_HOST)" 2

kvx_step "server -> the host's own socket, last fragment first"
out=$(frag "$NS_HOST" client --bind "$UP_IP:41002" "$SRV_IP:6000" --size 0 --hello --wait 2)
kvx_log "client: $out"
sent=$(grep "^sent to=$UP_IP:41002 " "$KVX_TMP/frag_srv.log" | tail -n1 | sed -n 's/.* sha=\([0-9a-f]*\).*/\1/p')
assert_ne "the server sent its reply" "" "$sent"
assert_eq "the host got its datagram whole" "$sent" \
	"$(sha_of "got from=$SRV_IP:6000 len=3000" <<<"$out")"
kvx_wait_datapath 5 "the parked copies to be given up" "c['FRAG_PARK_HOST'] >= 2" || true
assert_ge "the parked copies were given up, not sent (its first went to the host)" \
	"$(kvx_counter FRAG_PARK_HOST)" 2

kvx_step "server -> the host, fragmented in order: nothing parked"
h0=$(kvx_counter FRAG_PARKED_HOST)
q0=$(kvx_counter PASS_HOST)
got=$(nsx "$NS_SRV" ping -n -q -c 5 -i 0.2 -W 2 -s 8000 "$UP_IP" 2>/dev/null |
	sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true)
assert_eq "the host answered 8000-byte pings (6 fragments each)" 5 "${got:-0}"
assert_eq "none of their later fragments was parked" 0 $(($(kvx_counter FRAG_PARKED_HOST) - h0))
assert_ge "all their fragments went to the host" $(($(kvx_counter PASS_HOST) - q0)) 30

kvx_step "a flood of orphan fragments both ways; other traffic goes on"
f0=$(kvx_counter FRAG_PARK_FULL)
big="big-$(head -c 3000 /dev/zero | tr '\0' x)"
kvx_bg "$KVX_TMP/orph_g1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/frag_peer.py" \
	orphans "$G1_IP" "$SRV_IP:6000" --count 20000 --pps 8000
g1_flood=$KVX_LAST_PID
kvx_bg "$KVX_TMP/orph_srv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/frag_peer.py" \
	orphans "$SRV_IP" "$UP_IP:41003" --count 20000 --pps 8000
srv_flood=$KVX_LAST_PID
got=$(kvx_ping_received "$NS_G2" "$SRV_IP" 40)
assert_ge "guest2's pings during the flood (of 40)" "${got:-0}" 38
r=$(kvx_udp_client "$NS_G2" --msg "$big" --wait 1 "$SRV_IP:5001" || true)
back=$(sed -n 's/.* data=\(big-x*\)$/\1/p' <<<"$r")
assert_eq "a well-ordered 3000-byte datagram both ways during the flood" "${#big}" "${#back}"
kvx_wait_for 60 "the floods to end" bash -c "! kill -0 $g1_flood 2>/dev/null && ! kill -0 $srv_flood 2>/dev/null" || true
assert_contains "guest1's flood was sent" "orphans sent=20000" "$(cat "$KVX_TMP/orph_g1.log")"
assert_contains "the server's flood was sent" "orphans sent=20000" "$(cat "$KVX_TMP/orph_srv.log")"
kvx_wait_datapath 5 "the floods to be counted" "c['FRAG_PARK_FULL'] > $f0" || true
full=$(($(kvx_counter FRAG_PARK_FULL) - f0))
kvx_log "parked $(kvx_counter FRAG_PARKED) + $(kvx_counter FRAG_PARKED_HOST), full $full," \
	"rate-limited $(kvx_counter FRAG_PARK_RATELIMITED)," \
	"not parked $(kvx_counter DROP_FRAGMENT), re-injected $(kvx_counter FRAG_REINJECTED)"
assert_ge "orphans beyond the park's limits counted FRAG_PARK_FULL" "$full" 1000
out=$(frag "$NS_G1" client --bind "$G1_IP:41004" "$SRV_IP:6000" --size 3000 --wait 0.5)
sent=$(sha_of "sent to=$SRV_IP:6000 len=3000" <<<"$out")
kvx_wait_file_contains 5 "$KVX_TMP/frag_srv.log" "len=3000 sha=$sent" || true
assert_eq "after the flood a reordered datagram of the flooding guest still arrives whole" "$sent" \
	"$(grep "^got from=$UP_IP:" "$KVX_TMP/frag_srv.log" | tail -n1 | sed -n 's/.* sha=\([0-9a-f]*\).*/\1/p')"
rss=$(awk '/^VmRSS/{print $2}' "/proc/$KVX_DAEMON_PID/status")
kvx_log "daemon VmRSS ${rss} kB"
assert_le "the daemon's memory stays bounded (VmRSS kB)" "${rss:-999999}" 200000

kvx_step "parked fragments whose first never comes expire"
# The flood's last orphans stay parked for the fragment lifetime (30 s).
kvx_wait_datapath 40 "parked fragments to expire" \
	"c['FRAG_PARK_EXPIRED'] > 0" || true
assert_ge "FRAG_PARK_EXPIRED counted" "$(kvx_counter FRAG_PARK_EXPIRED)" 1
st=$(kvx status --bridge "$BR" 2>&1 || true)
assert_contains "status names the parked fragments' fates" "FRAG_PARK_EXPIRED" "$st"

kvx_step "what the server received"
srcs=$(kvx_server_sources)
kvx_log "sources seen by the server: $srcs"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$srcs"
kvx_assert_no_netfilter
kvx_finish
