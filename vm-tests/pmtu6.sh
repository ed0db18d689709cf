#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/pmtu6.sh: ICMPv6 errors and fragments across NAT66, with the
# default attach options.  The LAN router's link to the server has the IPv6
# minimum MTU (1280), the guests' and the uplink's are 1500, so the path MTU
# is found beyond the uplink, by the router, whose errors quote the
# translated packets:
#  - tracepath -6 from a guest: kvmxdp's own Time Exceeded (hop 1), the
#    router's (hop 2, translated back to the guest), the server reached, and
#    the router's Packet Too Big: pmtu 1280;
#  - a TCP upload from a TSO guest that knows no path MTU yet completes
#    (PMTU discovery from the translated Packet Too Big), and a curl -6
#    download; both sha256-checked;
#  - a 3000-byte UDP datagram from a guest (MTU 1500) goes out in fragments
#    and arrives whole at the server, whose fragmented echo arrives whole at
#    the guest;
#  - UDP to a closed server port: the server's Port Unreachable reaches the
#    guest's connected socket (ECONNREFUSED);
#  - a 1:1 address (2001:db8:1::101 <-> guest1): the server's curl -6 from
#    guest1's HTTP server completes once the router's Packet Too Big about
#    guest1's answers (quoting the 1:1 address) is translated to guest1,
#    and guest1's Port Unreachable leaves from the 1:1 address;
#  - hairpin: guest2's UDP to a closed port of guest1 through a forward
#    ([uplink]:5998) and through guest1's 1:1 address: guest1's Port
#    Unreachable, about a packet from guest2's external endpoint, is turned
#    around to guest2's connected socket (ECONNREFUSED);
#  - the LAN router (on the uplink's link) to guest1's 1:1 address with
#    the bridge at 1400: tracepath -6 shows kvmxdp's own Time Exceeded
#    (from the uplink's address) and pmtu 1400 from its Packet Too Big, and
#    a 4 MiB TCP upload completes (PMTU discovery; sha256);
#  - attach again with --clamp-mss 1240 (an IPv4 path MTU of 1280): a TCP
#    connection from guest2 (its path MTU forgotten) to the server, whose
#    route advertises MSS 1440: both SYNs arrive with MSS 1220 (IPv6's 20
#    less) and valid checksums, seen by sniffers at the server and at
#    guest2, the 1 MiB echo matches and no Packet Too Big was needed.
# No checksum error anywhere (Icmp6InCsumErrors, Udp6InCsumErrors), the
# server sees only the uplink's address.
#
#   guest1 ns  kg1<id> fd42:99::11/64 --+
#   guest2 ns  kg2<id> fd42:99::12/64 --+ bridge kb<id> fd42:99::1/64, host ns  <- kvmxdp
#                (default via the bridge's link-local)
#                                          uplink ku<id> 2001:db8:1::2/64,
#                                          default via 2001:db8:1::1
#   lan ns     router: kl<id> 2001:db8:1::1/64, kr<id> 2001:db8:78::1/64 MTU 1280;
#              IPv6 forwarding; no route to fd42:99::/64
#   server ns  ks<id> 2001:db8:78::2/64 MTU 1280, default via 2001:db8:78::1
#
# Usage: pmtu6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools tracepath
kvx_topology_up
kvx_assert_offloads

PFX=fd42:99::/64 BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
UP6=2001:db8:1::2 RTR_UP6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2

kvx_step "IPv6 addressing; the router's link to the server at 1280"
kvx_ipv6_static_up
ip -n "$NS_LAN" link set "$LAN_SRV_IF" mtu 1280
ip -n "$NS_SRV" link set "$SRV_IF" mtu 1280
# advmss: the server offers the MSS of its own 1500-byte path guess, so a
# guest's segments are larger than the 1280 link until the router's Packet
# Too Big (translated) teaches the guest the path MTU.
ip -n "$NS_SRV" -6 route add default via "$RTR6" advmss 1440

mkdir -p "$KVX_TMP/www"
sum=$(kvx_random_file blob 4)
kvx_bg "$KVX_TMP/http.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$SRV6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_SRV" 8080
kvx_bg "$KVX_TMP/udp6.log" ip netns exec "$NS_SRV" socat -d -d "UDP6-RECVFROM:9002,bind=[$SRV6],fork" EXEC:cat
kvx_wait_udp_listen 10 "$NS_SRV" 9002

kvx_step "attach with the default options: NAT66 on the bridge's prefix"
kvx_attach_bg || kvx_fatal "cannot attach"
st=$(kvx_status_json)
assert_eq "status: ipv6_mode" nat66 "$(kvx_json 'i["ipv6_mode"]' "$st")"
assert_eq "status: the guests' prefix is the bridge's" "$PFX" "$(kvx_json 'i["ipv6_subnet"]' "$st")"
assert_eq "status: the uplink's IPv6 address in kvx_cfg6" "$UP6" "$(kvx_json 'i["ipv6_uplink_addr"]' "$st")"
assert_eq "ping -6 guest1 -> server: 3 of 3" 3 "$(kvx_ping_received "$NS_G1" "$SRV6" 3)"
rel0=$(kvx_counter XLATE_RELATED_IN)

kvx_step "tracepath -6: the hops and the path MTU, from translated errors"
out=$(nsx "$NS_G1" timeout 30 tracepath -6 -n -m 5 "$SRV6" 2>&1 || true)
kvx_log "tracepath -6: $(tr '\n' '|' <<<"$out")"
assert_contains "hop 1: kvmxdp's own Time Exceeded, from the bridge's link-local" "$BR_LL" "$out"
assert_ge "hop 2: the router's Time Exceeded, translated back to the guest" \
	"$(grep -cE "^ *2\??: +$RTR_UP6 " <<<"$out" || true)" 1
assert_contains "the server reached" "reached" "$out"
assert_contains "the router's Packet Too Big, translated: pmtu 1280" "pmtu 1280" "$out"
assert_contains "guest1 keeps the path MTU" "mtu 1280" "$(ip -n "$NS_G1" -6 route get "$SRV6")"

kvx_step "TCP upload from a TSO guest without a path MTU yet, curl -6 download"
assert_not_contains "guest2 starts without a learnt path MTU" "mtu 1280" \
	"$(ip -n "$NS_G2" -6 route get "$SRV6")"
kvx_bg "$KVX_TMP/sink.log" ip netns exec "$NS_SRV" socat -u "TCP6-LISTEN:9000,bind=[$SRV6],reuseaddr" \
	OPEN:"$KVX_TMP/upload",creat,trunc
sink=$KVX_LAST_PID
kvx_wait_tcp_listen 10 "$NS_SRV" 9000
rc=0
nsx "$NS_G2" timeout 30 socat -u FILE:"$KVX_TMP/www/blob" "TCP6:[$SRV6]:9000" || rc=$?
assert_eq "4 MiB TCP upload from guest2 exit code" 0 "$rc"
kvx_wait_for 5 "the sink to finish" bash -c "! kill -0 $sink 2>/dev/null" || true
assert_eq "upload arrived intact" "$sum" "$(sha256sum <"$KVX_TMP/upload" | cut -d' ' -f1)"
assert_contains "guest2 learnt the path MTU from the router's Packet Too Big" "mtu 1280" \
	"$(ip -n "$NS_G2" -6 route get "$SRV6")"
assert_eq "curl -6 download: sha256" "$sum" "$(kvx_curl_sha "$NS_G1" "http://[$SRV6]:8080/blob")"
assert_ge "XLATE_RELATED_IN counted the router's errors" $(($(kvx_counter XLATE_RELATED_IN) - rel0)) 3

kvx_step "fragments: a 3000-byte UDP datagram out, its echo back"
head -c 3000 /dev/urandom >"$KVX_TMP/d3000"
dsum=$(sha256sum <"$KVX_TMP/d3000" | cut -d' ' -f1)
f0=$(kvx_counter DROP_FRAGMENT)
for ns in "$NS_G1" "$NS_G2"; do
	rx0=$(kvx_snmp6 "$ns" Ip6ReasmOKs)
	nsx "$ns" timeout 5 socat -b 8192 -t 2 STDIO "UDP6:[$SRV6]:9002" <"$KVX_TMP/d3000" \
		>"$KVX_TMP/echo" 2>>"$KVX_TMP/socat.err" || true
	got=$(sha256sum <"$KVX_TMP/echo" | cut -d' ' -f1)
	assert_eq "${ns##*-}: the echo of the 3000-byte datagram, whole" "$dsum" "$got"
	assert_ge "${ns##*-}: the echo came in fragments" $(($(kvx_snmp6 "$ns" Ip6ReasmOKs) - rx0)) 1
	assert_ge "${ns##*-}: its datagram went out in fragments" "$(kvx_snmp6 "$ns" Ip6FragOKs)" 1
done
assert_eq "the server got both datagrams whole, from the uplink's address" 2 \
	"$(grep -c 'received packet with 3000 bytes from AF=10 \[2001:0db8:0001:0000:0000:0000:0000:0002\]' \
		"$KVX_TMP/udp6.log" || true)"
assert_eq "no DROP_FRAGMENT" 0 $(($(kvx_counter DROP_FRAGMENT) - f0))
kvx_log "counters: $(kvx_json '{k: v["packets"] for k, v in i["counters"].items() if v["packets"]}')"

kvx_step "UDP to a closed port: the server's Port Unreachable reaches the guest"
out=$(echo probe | nsx "$NS_G2" timeout 5 socat -t 1 -T 2 STDIO "UDP6:[$SRV6]:5999" 2>&1 || true)
assert_contains "guest2's connected UDP socket gets ECONNREFUSED" "refused" "$out"

kvx_step "a 1:1 guest's server behind the same path: Packet Too Big and its own errors"
ONE6=2001:db8:1::101
kvx map add "$ONE6" "$G1_6" >/dev/null
kvx_bg "$KVX_TMP/http1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$G1_6" --directory "$KVX_TMP/www" 8081
kvx_wait_tcp_listen 10 "$NS_G1" 8081
# guest1 forgets the path MTU tracepath taught it: only the router's
# Packet Too Big about its answers, quoting the 1:1 address, can teach it
# again.
ip -n "$NS_G1" -6 route flush cache
assert_not_contains "guest1 starts without a learnt path MTU" "mtu 1280" \
	"$(ip -n "$NS_G1" -6 route get "$SRV6")"
must kvx_wait_for 10 "$ONE6 announced (the server's ping)" \
	bash -c "ip netns exec '$NS_SRV' ping -6 -c1 -W1 '$ONE6' >/dev/null"
rel0=$(kvx_counter XLATE_RELATED_IN)
assert_eq "the server's curl -6 from [$ONE6]:8081: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_SRV" "http://[$ONE6]:8081/blob")"
assert_contains "guest1 learnt the path MTU from the Packet Too Big about its answers" "mtu 1280" \
	"$(ip -n "$NS_G1" -6 route get "$SRV6")"
assert_ge "XLATE_RELATED_IN counted it" $(($(kvx_counter XLATE_RELATED_IN) - rel0)) 1
assert_eq "guest1's server saw the server's own address" "$SRV6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http1.log" | sort -u | paste -sd' ')"
rel0=$(kvx_counter XLATE_RELATED_OUT)
out=$(echo probe | nsx "$NS_SRV" timeout 5 socat -t 1 -T 2 STDIO "UDP6:[$ONE6]:5999" 2>&1 || true)
assert_contains "the server's UDP to a closed port of guest1: ECONNREFUSED, from $ONE6" "refused" "$out"
assert_ge "XLATE_RELATED_OUT counted guest1's Port Unreachable" \
	$(($(kvx_counter XLATE_RELATED_OUT) - rel0)) 1

kvx_step "hairpin: guest1's Port Unreachable about guest2's datagram reaches guest2"
kvx map add "[uplink]:5998" "[$G1_6]:5998" --proto udp >/dev/null
hp0=$(kvx_counter XLATE_HAIRPIN)
# Who answered: guest1's own errors, not the host's (an error from the host
# would refuse guest2's socket as well).
g1u0=$(kvx_snmp6 "$NS_G1" Icmp6OutDestUnreachs) hu0=$(kvx_snmp6 "$NS_HOST" Icmp6OutDestUnreachs)
out=$(echo probe | nsx "$NS_G2" timeout 5 socat -t 1 -T 2 STDIO "UDP6:[$UP6]:5998" 2>&1 || true)
assert_contains "guest2's UDP to guest1's closed forwarded port [$UP6]:5998: ECONNREFUSED" "refused" "$out"
out=$(echo probe | nsx "$NS_G2" timeout 5 socat -t 1 -T 2 STDIO "UDP6:[$ONE6]:5999" 2>&1 || true)
assert_contains "guest2's UDP to a closed port of guest1's 1:1 [$ONE6]:5999: ECONNREFUSED" "refused" "$out"
assert_ge "XLATE_HAIRPIN counted both datagrams and both errors" \
	$(($(kvx_counter XLATE_HAIRPIN) - hp0)) 4
assert_ge "guest1 sent the Port Unreachables" $(($(kvx_snmp6 "$NS_G1" Icmp6OutDestUnreachs) - g1u0)) 2
assert_eq "the host sent none" 0 $(($(kvx_snmp6 "$NS_HOST" Icmp6OutDestUnreachs) - hu0))

kvx_step "the LAN router to guest1's 1:1 address through a bridge at 1400: kvmxdp's own errors"
# The bridge (where the datapath redirects) narrower than the LAN: an IPv6
# router never fragments, so the LAN host learns the path MTU only from
# kvmxdp's Packet Too Big, and its hop from kvmxdp's Time Exceeded.
ip -n "$NS_HOST" link set dev "$BR" mtu 1400
tb0=$(kvx_counter DROP_TOO_BIG_IN) te0=$(kvx_counter DROP_TTL_IN) sent0=$(kvx_counter ICMP_SENT)
out=$(nsx "$NS_LAN" timeout 30 tracepath -6 -n -m 5 "$ONE6" 2>&1 || true)
kvx_log "tracepath -6 from the LAN: $(tr '\n' '|' <<<"$out")"
assert_ge "hop 1: kvmxdp's Time Exceeded, from the uplink's address" \
	"$(grep -cE "^ *1\??: +$UP6 " <<<"$out" || true)" 1
assert_contains "guest1 reached" "reached" "$out"
assert_contains "kvmxdp's Packet Too Big: pmtu 1400" "pmtu 1400" "$out"
ip -n "$NS_LAN" -6 route flush cache
kvx_bg "$KVX_TMP/sink1.log" ip netns exec "$NS_G1" socat -u "TCP6-LISTEN:9001,bind=[$G1_6],reuseaddr" \
	OPEN:"$KVX_TMP/upload1",creat,trunc
kvx_wait_tcp_listen 10 "$NS_G1" 9001
rc=0
nsx "$NS_LAN" timeout 30 socat -u FILE:"$KVX_TMP/www/blob" "TCP6:[$ONE6]:9001" || rc=$?
assert_eq "the LAN router's 4 MiB upload to [$ONE6]:9001 (a full-size segment first)" 0 "$rc"
must kvx_wait_for 10 "the upload at guest1" bash -c "[[ \$(sha256sum <'$KVX_TMP/upload1' | cut -d' ' -f1) == '$sum' ]]"
assert_contains "the LAN router learnt the path MTU" "mtu 1400" "$(ip -n "$NS_LAN" -6 route get "$ONE6")"
assert_ge "DROP_TOO_BIG_IN counted" $(($(kvx_counter DROP_TOO_BIG_IN) - tb0)) 1
assert_ge "DROP_TTL_IN counted" $(($(kvx_counter DROP_TTL_IN) - te0)) 1
assert_ge "each answered (ICMP_SENT)" $(($(kvx_counter ICMP_SENT) - sent0)) 2
ip -n "$NS_HOST" link set dev "$BR" mtu 1500

kvx_step "attach again with --clamp-mss 1240: IPv6 SYNs carry 1220, no Packet Too Big needed"
# The receivers' sniffers verify checksums: what leaves the uplink and the
# server is finalized in software (the guests' stay partial).
nsx "$NS_HOST" ethtool -K "$UP" tx off >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
kvx_daemon_stop
kvx_attach_bg --clamp-mss 1240 || kvx_fatal "cannot attach with --clamp-mss 1240"
ip -n "$NS_G2" -6 route flush cache
assert_not_contains "guest2 starts without a learnt path MTU" "mtu 1280" \
	"$(ip -n "$NS_G2" -6 route get "$SRV6")"
rel0=$(kvx_counter XLATE_RELATED_IN)
kvx_mss6_step 1220 "$UP6"
assert_eq "no Packet Too Big: guest2's segments fit the path" 0 \
	$(($(kvx_counter XLATE_RELATED_IN) - rel0))

kvx_step "checksums, what the server saw"
kvx_assert_no_csum_errors6 "$NS_G1" "$NS_G2" "$NS_SRV" "$NS_HOST" "$NS_LAN"
assert_eq "HTTP server saw only the uplink's address" "$UP6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')"
kvx_finish
