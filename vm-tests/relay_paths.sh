#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/relay_paths.sh: IPv6 relay mode (attach --ipv6 relay, default
# options otherwise) with the tools and paths NAT66's tests use, and a
# renumbered network:
#  - iperf3 -6 both ways between a guest and the server beyond the LAN
#    router, which sees the guest's own address; socat UDP echo;
#  - tracepath -6 from a guest across the router's 1280 link to the
#    server: kvmxdp's own Time Exceeded (hop 1, from the bridge's
#    link-local), the router's (hop 2), the router's Packet Too Big relayed
#    to the guest: pmtu 1280;
#  - the bridge at 1400, narrower than the LAN: a guest's 4 MiB download
#    from the LAN router's HTTP server completes (kvmxdp's Packet Too Big
#    from the uplink's address teaches the router the path MTU), sha256
#    compared;
#  - renumbering: the LAN router announces 2001:db8:2::/64 and deprecates
#    2001:db8:1::/64 (preferred lifetime 0): kvmxdp's RAs on the bridge
#    follow (status, the guests' new addresses, the old ones deprecated),
#    the guests' new connections leave from the new prefix (the server
#    sees it) and the LAN router reaches them there.
# No checksum error anywhere; the host forwards nothing itself.
#
#   guest1 ns  kg1<id> SLAAC --+
#   guest2 ns  kg2<id> SLAAC --+ bridge kb<id> (fe80:: only), host ns <- kvmxdp
#                                uplink ku<id>: SLAAC, default via the router
#   lan ns     router: kl<id> 2001:db8:1::1/64 (later 2001:db8:2::1/64 too)
#              + radvd + an HTTP server; kr<id> 2001:db8:78::1/64 MTU 1280
#   server ns  ks<id> 2001:db8:78::2/64 MTU 1280, default via the router
#
# Usage: relay_paths.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools radvd tracepath iperf3 socat
kvx_topology_up

N1=2001:db8:1::/64 N2=2001:db8:2::/64 LAN6=2001:db8:1::1 LAN6B=2001:db8:2::1
SRV6=2001:db8:78::2 RTR6=2001:db8:78::1

kvx_step "IPv6 addressing; the router's link to the server at 1280"
kvx_lan6_up "$LAN6" "$RTR6" "$SRV6"
ip -n "$NS_LAN" link set "$LAN_SRV_IF" mtu 1280
ip -n "$NS_SRV" link set "$SRV_IF" mtu 1280
for g in "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"; do
	nsx "${g%%:*}" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
	nsx "${g%%:*}" sysctl -qw "net.ipv6.conf.${g#*:}.accept_ra=2" \
		"net.ipv6.conf.${g#*:}.autoconf=1" "net.ipv6.conf.${g#*:}.use_tempaddr=0"
done
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)
kvx_lan6_radvd "$N1" "AdvValidLifetime 600; AdvPreferredLifetime 300;"
RADVD_PID=$KVX_LAST_PID

mkdir -p "$KVX_TMP/www"
sum=$(kvx_random_file blob 4)
kvx_bg "$KVX_TMP/http.lan.log" ip netns exec "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "::" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_LAN" 8080
kvx_bg "$KVX_TMP/iperf3.log" ip netns exec "$NS_SRV" iperf3 -s -B "$SRV6" -p 5201
kvx_wait_tcp_listen 10 "$NS_SRV" 5201
kvx_bg "$KVX_TMP/udp6.log" ip netns exec "$NS_SRV" socat "UDP6-RECVFROM:9001,bind=[$SRV6],fork" EXEC:cat
kvx_wait_udp_listen 10 "$NS_SRV" 9001

kvx_step "attach --ipv6 relay: the guests take addresses in $N1"
kvx_attach_bg --ipv6 relay || kvx_fatal "cannot attach"
FWD6_0=$(kvx_fwd6_datagrams)
kvx_relay_guest_addrs "$N1"
assert_eq "status: ipv6_mode" relay "$(kvx_json 'i["ipv6_mode"]')"
must kvx_wait_for 10 "guest1's default route from kvmxdp's RA" \
	bash -c "ip -n '$NS_G1' -6 route show default | grep -q 'via $BR_LL'"

kvx_step "iperf3 -6 both ways, socat UDP: the server sees the guests' own addresses"
kvx_iperf3_both_ways "$NS_G1" "$SRV6" 5201 "$G1_6"
for ns in "$NS_G1" "$NS_G2"; do
	r=$(echo "hello from ${ns##*-}" | nsx "$ns" timeout 5 socat -t 2 - "UDP6:[$SRV6]:9001" 2>&1 || true)
	assert_eq "UDP echo to ${ns##*-}" "hello from ${ns##*-}" "$r"
done

kvx_step "tracepath -6 from guest2 across the 1280 link: the hops and the path MTU"
out=$(nsx "$NS_G2" timeout 30 tracepath -6 -n -m 5 "$SRV6" 2>&1 || true)
kvx_log "tracepath -6: $(tr '\n' '|' <<<"$out")"
assert_ge "hop 1: kvmxdp's own Time Exceeded, from the bridge's link-local" \
	"$(grep -cE "^ *1\??: +$BR_LL(%[^ ]*)? " <<<"$out" || true)" 1
assert_ge "hop 2: the LAN router's Time Exceeded" "$(grep -cE "^ *2\??: +$LAN6 " <<<"$out" || true)" 1
assert_contains "the server reached" "reached" "$out"
assert_contains "the router's Packet Too Big, relayed: pmtu 1280" "pmtu 1280" "$out"

kvx_step "the bridge at 1400: guest1's 4 MiB download from the LAN router completes"
# The router's segments (MSS from guest1's 1500) are too big for the
# bridge: only kvmxdp's Packet Too Big, from the uplink's address, teaches
# the router the path MTU to guest1.
ip -n "$NS_HOST" link set dev "$BR" mtu 1400
tb0=$(kvx_counter DROP_TOO_BIG_IN) sent0=$(kvx_counter ICMP_SENT)
assert_eq "guest1's curl -6 from [$LAN6]:8080: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_G1" "http://[$LAN6]:8080/blob")"
assert_contains "the LAN router learnt the path MTU to guest1" "mtu 1400" \
	"$(ip -n "$NS_LAN" -6 route get "$G1_6")"
assert_ge "DROP_TOO_BIG_IN counted" $(($(kvx_counter DROP_TOO_BIG_IN) - tb0)) 1
assert_ge "answered (ICMP_SENT)" $(($(kvx_counter ICMP_SENT) - sent0)) 1
ip -n "$NS_HOST" link set dev "$BR" mtu 1500

kvx_step "renumbering: the router announces $N2 and deprecates $N1"
ip -n "$NS_LAN" -6 addr add "$LAN6B/64" dev "$LAN_UP_IF" nodad
kvx_kill_pid "$RADVD_PID"
kvx_lan6_radvd "$N1" "AdvValidLifetime 600; AdvPreferredLifetime 0;" \
	"$N2" "AdvValidLifetime 600; AdvPreferredLifetime 300;"
must kvx_wait_for 20 "the uplink's address in $N2" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$UP' scope global -tentative to '$N2') ]]"
relay_prefix() { kvx_json 'i["ipv6_relay_prefix"]'; }
relay_on_n2() { [[ $(relay_prefix) == "$N2" ]]; }
must kvx_wait_for 20 "status: the relay prefix $N2" relay_on_n2
assert_eq "status: the relay prefix follows the uplink" "$N2" "$(relay_prefix)"
kvx_wait_slaac "$N2" "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"
must kvx_wait_for 20 "guest1's address in $N1 deprecated" bash -c "[[ -n \$(ip -n '$NS_G1' -6 -o addr show dev '$G1_IF' to '$N1' deprecated) ]]"
G1_6B=$(kvx_addr6_in "$NS_G1" "$G1_IF" "$N2")
kvx_log "guest1's new address $G1_6B"
assert_ne "guest1 has a usable address in $N2" "" "$G1_6B"
assert_eq "guest1's address in $N1 is deprecated (kvmxdp's RA: preferred 0)" "$G1_6" \
	"$(kvx_addr6_in "$NS_G1" "$G1_IF" "$N1" deprecated)"
bps=$(kvx_iperf3_bps "$NS_G1" -6 -c "$SRV6" -p 5201 -t 1)
assert_ge "iperf3 -6 from guest1 after the renumbering > 1 Mbit/s" "$bps" 1000000
assert_eq "the server saw guest1's new address" "$G1_6B" \
	"$(grep -o 'Accepted connection from [0-9a-f:]*' "$KVX_TMP/iperf3.log" | awk '{print $4}' | tail -1 || true)"
assert_eq "the LAN router reaches guest1 at its new address (ping -6 3 of 3)" 3 \
	"$(kvx_ping_received "$NS_LAN" "$G1_6B" 3)"

kvx_step "checksums, the host's forwarding"
kvx_assert_no_csum_errors6 "$NS_G1" "$NS_G2" "$NS_SRV" "$NS_HOST" "$NS_LAN"
assert_le "host Ip6OutForwDatagrams moved by at most 10 (kvmxdp forwarded)" $(($(kvx_fwd6_datagrams) - FWD6_0)) 10
kvx_finish
