#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/frag_order6.sh: IPv6 fragments that arrive before their first
# fragment, through NAT66 with the default attach options (RFC 4787 REQ-14,
# as frag_order.sh for IPv4).  UDP datagrams of 3000 bytes are fragmented by
# hand (vm-tests/frag_peer.py: raw IPv6 packets with a Fragment header) and
# sent last fragment first, so every later fragment reaches kvmxdp before
# the first:
#  - guest1 -> server: the server gets the whole datagram, from the uplink
#    address, its bytes intact; no packet from the guests' prefix ever
#    reaches the server (its sniffer);
#  - server -> guest2 (the reply to guest2's flow): guest2 gets it whole;
#  - server -> guest1 at its 1:1 address (a mapped address, announced on the
#    uplink): guest1 gets the reply to its flow whole; its later fragments
#    are parked and dropped, never passed to the host, which never owns it;
#  - server -> the host's own socket at the uplink address: the host gets
#    its datagram whole, and the park gives the copies up once the first
#    fragment went to the host;
#  - server -> the host, in order (ping -6 -s 8000): nothing is parked;
#  - a flood of orphans (later fragments whose first never comes) from the
#    server's /64, from many addresses: counted (FRAG_PARK_FULL) while a
#    reordered datagram for guest2 still arrives.
#
#   guest1 ns  kg1<id> fd42:99::11/64 --+
#   guest2 ns  kg2<id> fd42:99::12/64 --+ bridge kb<id> fd42:99::1/64, host ns  <- kvmxdp
#                (default via the bridge's link-local)
#                                          uplink ku<id> 2001:db8:1::2/64,
#                                          default via 2001:db8:1::1
#   lan ns     router: kl<id> 2001:db8:1::1/64, kr<id> 2001:db8:78::1/64;
#              IPv6 forwarding; no route to fd42:99::/64
#   server ns  ks<id> 2001:db8:78::2/64, default via 2001:db8:78::1
#
# Usage: frag_order6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up

PFX=fd42:99::/64 BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
UP6=2001:db8:1::2 RTR_UP6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2
ONE6=2001:db8:1::101

kvx_step "IPv6 addressing"
kvx_ipv6_static_up
ip -n "$NS_SRV" -6 route add default via "$RTR6"

kvx_server_sniffer
kvx_bg "$KVX_TMP/frag_srv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/frag_peer.py" \
	serve "[$SRV6]:6000"
kvx_wait_file_contains 10 "$KVX_TMP/frag_srv.log" serving
kvx_attach_bg || kvx_fatal "cannot attach"

frag() { local ns=$1; shift; nsx "$ns" "$KVX_PY" -u "$KVX_LIBDIR/frag_peer.py" "$@"; }
# The sha256 of a "sent"/"got" line whose other fields match PATTERN.
sha_of() { sed -n "s/^$1.* sha=\([0-9a-f]*\).*/\1/p" | head -n1; }
# The sha256 of the server's last reply to ADDR:PORT.
reply_sha() { grep "^sent to=$1 " "$KVX_TMP/frag_srv.log" | tail -n1 | sed -n 's/.* sha=\([0-9a-f]*\).*/\1/p'; }

kvx_step "guest1 -> server: a datagram whose fragments come last first"
p0=$(kvx_counter FRAG_PARKED)
r0=$(kvx_counter FRAG_REINJECTED)
out=$(frag "$NS_G1" client --bind "[$G1_6]:41000" "[$SRV6]:6000" --size 3000 --wait 0.5)
kvx_log "client: $out"
sent=$(sha_of "sent to=$SRV6:6000 len=3000" <<<"$out")
assert_ne "guest1 sent a datagram" "" "$sent"
kvx_wait_file_contains 5 "$KVX_TMP/frag_srv.log" "len=3000 sha=$sent" || true
assert_eq "the server got it whole, from the uplink address, bytes intact" "$sent" \
	"$(sha_of "got from=$UP6:[0-9]* len=3000" <"$KVX_TMP/frag_srv.log")"
later=$(($(sed -n 's/^sent .* frags=\([0-9]*\)$/\1/p' <<<"$out") - 1))
assert_ge "the datagram had later fragments" "$later" 2
assert_eq "its later fragments were parked" "$later" $(($(kvx_counter FRAG_PARKED) - p0))
assert_eq "and re-injected once the first one passed" "$later" \
	$(($(kvx_counter FRAG_REINJECTED) - r0))

kvx_step "server -> guest2: the reply to guest2's flow, last fragment first"
r0=$(kvx_counter FRAG_REINJECTED)
h0=$(kvx_counter FRAG_PARKED_HOST)
out=$(frag "$NS_G2" client --bind "[$G2_6]:41001" "[$SRV6]:6000" --size 0 --hello --wait 2)
kvx_log "client: $out"
sent=$(reply_sha "$UP6:[0-9]*")
assert_ne "the server sent its reply" "" "$sent"
assert_eq "guest2 got it whole, from the server, bytes intact" "$sent" \
	"$(sha_of "got from=$SRV6:6000 len=3000" <<<"$out")"
assert_ge "the reply's later fragments were re-injected" $(($(kvx_counter FRAG_REINJECTED) - r0)) 2
assert_ge "... after going to the host too (they might have been its own)" \
	$(($(kvx_counter FRAG_PARKED_HOST) - h0)) 2

kvx_step "server -> guest1 at its 1:1 address, last fragment first"
kvx map add "$ONE6" "$G1_6" >/dev/null
must kvx_wait_for 10 "$ONE6 announced (the server's ping)" \
	bash -c "ip netns exec '$NS_SRV' ping -6 -c1 -W1 '$ONE6' >/dev/null"
r0=$(kvx_counter FRAG_REINJECTED)
p0=$(kvx_counter FRAG_PARKED)
h0=$(kvx_counter FRAG_PARKED_HOST)
out=$(frag "$NS_G1" client --bind "[$G1_6]:41002" "[$SRV6]:6000" --size 0 --hello --wait 2)
kvx_log "client: $out"
sent=$(reply_sha "$ONE6:41002")
assert_ne "the server answered the 1:1 address (the hello left from it)" "" "$sent"
assert_eq "guest1 got it whole, bytes intact" "$sent" \
	"$(sha_of "got from=$SRV6:6000 len=3000" <<<"$out")"
assert_ge "its later fragments were re-injected" $(($(kvx_counter FRAG_REINJECTED) - r0)) 2
assert_ge "and parked only (dropped: the host never owns a mapped address)" \
	$(($(kvx_counter FRAG_PARKED) - p0)) 2
assert_eq "none went to the host" 0 $(($(kvx_counter FRAG_PARKED_HOST) - h0))

kvx_step "server -> the host's own socket, last fragment first"
k0=$(kvx_counter FRAG_PARK_HOST)
out=$(frag "$NS_HOST" client --bind "[$UP6]:41003" "[$SRV6]:6000" --size 0 --hello --wait 2)
kvx_log "client: $out"
sent=$(reply_sha "$UP6:41003")
assert_ne "the server sent its reply" "" "$sent"
assert_eq "the host got its datagram whole" "$sent" \
	"$(sha_of "got from=$SRV6:6000 len=3000" <<<"$out")"
kvx_wait_datapath 5 "the parked copies to be given up" "c['FRAG_PARK_HOST'] >= $k0 + 2" || true
assert_ge "the parked copies were given up, not sent (its first went to the host)" \
	$(($(kvx_counter FRAG_PARK_HOST) - k0)) 2

kvx_step "server -> the host, fragmented in order: nothing parked"
h0=$(kvx_counter FRAG_PARKED_HOST)
got=$(nsx "$NS_SRV" ping -6 -n -q -c 5 -i 0.2 -W 2 -s 8000 "$UP6" 2>/dev/null |
	sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true)
assert_eq "the host answered 8000-byte pings (6 fragments each)" 5 "${got:-0}"
assert_eq "none of their later fragments was parked" 0 $(($(kvx_counter FRAG_PARKED_HOST) - h0))

kvx_step "a flood of orphans from the server's /64; a reordered datagram still arrives"
f0=$(kvx_counter FRAG_PARK_FULL)
h0=$(kvx_counter FRAG_PARKED_HOST)
for i in 1 2 3 4; do ip -n "$NS_SRV" -6 addr add "2001:db8:78::f$i/64" dev "$SRV_IF" nodad; done
pids=()
for i in 1 2 3 4; do
	kvx_bg "$KVX_TMP/orph$i.log" ip netns exec "$NS_SRV" "$KVX_PY" -u \
		"$KVX_LIBDIR/frag_peer.py" orphans "2001:db8:78::f$i" "[$UP6]:41004" --count 1000 \
		--first-id $((i * 100000))
	pids+=("$KVX_LAST_PID")
done
kvx_wait_for 60 "the floods to end" bash -c "! kill -0 ${pids[*]} 2>/dev/null" || true
for i in 1 2 3 4; do
	assert_contains "flood $i was sent" "orphans sent=1000" "$(cat "$KVX_TMP/orph$i.log")"
done
kvx_wait_datapath 5 "the flood to be counted" "c['FRAG_PARK_FULL'] > $f0" || true
parked=$(($(kvx_counter FRAG_PARKED_HOST) - h0))
full=$(($(kvx_counter FRAG_PARK_FULL) - f0))
kvx_log "flood: parked $parked, full $full, rate-limited $(kvx_counter FRAG_PARK_RATELIMITED)"
assert_ge "the flood's copies beyond its share were given up (FRAG_PARK_FULL)" "$full" 100
# Four sources of one /64 share one share of the park (64 fragments).
assert_le "the park kept no more of the flood than one share" $((parked - full)) 64
out=$(frag "$NS_G2" client --bind "[$G2_6]:41005" "[$SRV6]:6000" --size 0 --hello --wait 2)
sent=$(reply_sha "$UP6:[0-9]*")
assert_eq "after the flood guest2 still gets a reordered reply whole" "$sent" \
	"$(sha_of "got from=$SRV6:6000 len=3000" <<<"$out")"

kvx_step "what the server received"
srcs=$(sed -n 's/^src=\([0-9a-f:]*:[0-9a-f:]*\) .*/\1/p' "$KVX_TMP/sniff.log" | sort -u | paste -sd' ')
kvx_log "IPv6 sources seen by the server: $srcs"
assert_not_contains "no packet from the guests' prefix reached the server" "fd42:" "$srcs"
assert_contains "the uplink's address did" "$UP6" "$srcs"
assert_contains "the 1:1 address did" "$ONE6" "$srcs"
kvx_assert_no_netfilter
kvx_finish
