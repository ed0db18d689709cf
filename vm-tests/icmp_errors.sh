#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/icmp_errors.sh: ICMP errors and fragments across the NAT
# (RFC 5508).  The router's link to the server has MTU 1300, so
# the path MTU is found beyond the uplink, by the router:
#  - ping with TTL 2: the router's "time exceeded" reaches the guest;
#  - UDP to a closed server port: "port unreachable" reaches the guest's
#    connected socket (ECONNREFUSED);
#  - "frag needed (mtu 1300)" from the router reaches the guest, and a TCP
#    upload from a TSO guest completes (the PMTU blackhole of cilium#33844);
#  - a UDP datagram of 3000 bytes goes out and comes back fragmented;
#  - the guest's own "port unreachable" for a closed socket leaves translated.
# In all of it the server sees only the uplink address, checksums verify;
# the guests' raw sockets see each error quote their own packet.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 MTU 1300
#              (towards server), ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24 MTU 1300, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: icmp_errors.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
ip -n "$NS_LAN" link set "$LAN_SRV_IF" mtu 1300
ip -n "$NS_SRV" link set "$SRV_IF" mtu 1300
kvx_http_server
sha=$(kvx_random_file blob 4)
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer
kvx_icmp_sniffer "$NS_G1" g1
kvx_icmp_sniffer "$NS_G2" g2
kvx_attach_bg || kvx_fatal "cannot attach"
rel0=$(kvx_counter XLATE_RELATED_IN)

kvx_step "TTL 2: the router's time exceeded reaches the guest"
out=$(nsx "$NS_G1" ping -n -c 1 -W 2 -t 2 "$SRV_IP" 2>&1 || true)
assert_contains "guest1 gets time exceeded from the router" "From $LAN_IP icmp_seq=1 Time to live exceeded" "$out"
assert_eq "... quoting its own echo request (inner source translated back), checksum valid" 1 \
	"$(kvx_icmp_seen g1 "from=$LAN_IP to=$G1_IP type=11 code=0 mtu=0 csum=ok quote=$G1_IP:[0-9]*->$SRV_IP:[0-9]* qproto=1")"

kvx_step "UDP to a closed port: port unreachable reaches the guest"
out=$(echo probe | nsx "$NS_G2" timeout 5 socat -t 1 -T 2 STDIO "UDP4:$SRV_IP:5999" 2>&1 || true)
assert_contains "guest2's connected UDP socket gets ECONNREFUSED" "refused" "$out"
assert_eq "... from the server, quoting guest2's datagram as guest2 sent it" 1 \
	"$(kvx_icmp_seen g2 "from=$SRV_IP to=$G2_IP type=3 code=3 mtu=0 csum=ok quote=$G2_IP:[0-9]*->$SRV_IP:5999 qproto=17")"

kvx_step "path MTU beyond the uplink: the router's frag needed reaches the guest"
out=$(nsx "$NS_G2" ping -n -c 1 -W 2 -M "do" -s 1350 "$SRV_IP" 2>&1 || true)
kvx_log "ping: $(tr '\n' '|' <<<"$out")"
assert_contains "guest2 told the path MTU by the router" "mtu = 1300" "$out"
assert_ge "... in a frag needed (mtu 1300) quoting its echo request, checksum valid" \
	"$(kvx_icmp_seen g2 "from=$LAN_IP to=$G2_IP type=3 code=4 mtu=1300 csum=ok quote=$G2_IP:[0-9]*->$SRV_IP:[0-9]* qproto=1")" 1
kvx_bg "$KVX_TMP/sink.log" ip netns exec "$NS_SRV" socat -u TCP-LISTEN:9000,bind="$SRV_IP",reuseaddr \
	OPEN:"$KVX_TMP/upload",creat,trunc
sink=$KVX_LAST_PID
kvx_wait_tcp_listen 10 "$NS_SRV" 9000
rc=0
nsx "$NS_G1" timeout 30 socat -u FILE:"$KVX_TMP/www/blob" TCP:"$SRV_IP":9000 || rc=$?
assert_eq "4 MB TCP upload from guest1 (TSO) exit code" 0 "$rc"
kvx_wait_for 5 "the sink to finish" bash -c "! kill -0 $sink 2>/dev/null" || true
assert_eq "upload arrived intact" "$sha" "$(sha256sum <"$KVX_TMP/upload" | cut -d' ' -f1)"
assert_eq "download intact" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
assert_ge "XLATE_RELATED_IN counted the translated ICMP errors" \
	$(($(kvx_counter XLATE_RELATED_IN) - rel0)) 3

kvx_step "fragments: 3000-byte UDP datagrams both ways"
big="big-$(head -c 3000 /dev/zero | tr '\0' x)"
f0=$(kvx_counter DROP_FRAGMENT)
r=$(kvx_udp_client "$NS_G1" --msg "$big" --wait 1 "$SRV_IP:5001" || true)
back=$(sed -n 's/.* data=\(big-x*\)$/\1/p' <<<"$r")
assert_eq "the server got the whole datagram and its reply came back whole (length)" "${#big}" "${#back}"
assert_contains "seen from the uplink address" "seen=$UP_IP:" "$r"
assert_eq "no DROP_FRAGMENT" 0 $(($(kvx_counter DROP_FRAGMENT) - f0))

kvx_step "the guest's own port unreachable leaves translated"
out0=$(kvx_counter XLATE_RELATED_OUT)
kvx_udp_client "$NS_G2" --bind 42000 --msg later --wait 0.2 "$SRV_IP:5001" >/dev/null || true
# The server's second datagram, a second after its reply, hits the closed
# socket: guest2 answers with one ICMP port unreachable.
kvx_wait_datapath 5 "guest2's port unreachable to be translated" \
	"c['XLATE_RELATED_OUT'] > $out0" || true
assert_eq "XLATE_RELATED_OUT counted guest2's one port unreachable" \
	1 $(($(kvx_counter XLATE_RELATED_OUT) - out0))

kvx_step "what the server received"
srcs=$(kvx_server_sources)
kvx_log "sources seen by the server: $srcs"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$srcs"
kvx_assert_no_csum_errors
kvx_assert_icmp_csums
kvx_assert_no_netfilter
kvx_finish
