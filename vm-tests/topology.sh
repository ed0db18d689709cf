#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/topology.sh: validates the harness itself, without kvmxdp: the
# topology every other test uses, its offload settings, and that the
# detectors the tests rely on (checksum error counters, leak detection via
# the server's view of the source address) really fire.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: topology.sh [KVMXDP]   (the binary is not used)
source "$(dirname "$0")/lib.sh"
kvx_init ""

kvx_step "build the topology"
kvx_topology_up
kvx_assert_offloads

kvx_step "reachability without kvmxdp"
assert_ok "guest1 -> gateway" kvx_ping "$NS_G1" "$GW_IP" 3
assert_ok "guest2 -> gateway" kvx_ping "$NS_G2" "$GW_IP" 3
assert_ok "guest1 -> guest2 (bridged)" kvx_ping "$NS_G1" "$G2_IP" 3
assert_ok "host -> server (routed by lan)" kvx_ping "$NS_HOST" "$SRV_IP" 3
assert_eq "host ns ip_forward is off" 0 "$(kvx_sysctl_get "$NS_HOST" net/ipv4/ip_forward)"
assert_eq "bridge forwarding is off" 0 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"
assert_fails "guest1 -> server impossible without NAT" kvx_ping "$NS_G1" "$SRV_IP" 2
assert_eq "server has no route to the guests except its default" \
	"default via $ROUTER_IP" "$(ip -n "$NS_SRV" route show match 192.168.122.0/24 | cut -d" " -f1-3)"
assert_empty "lan router has no route to the guests" \
	"$(ip -n "$NS_LAN" route show match 192.168.122.0/24)"

kvx_step "real traffic through the checksum-proving path (host <-> server, guest <-> host)"
kvx_http_server
sha=$(kvx_random_file blob 4)
assert_eq "host downloads 4 MB from server intact" "$sha" \
	"$(kvx_curl_sha "$NS_HOST" "http://$SRV_IP:8080/blob")"
# Guests fetch from an HTTP server on the bridge address (host ns).
mkdir -p "$KVX_TMP/hostwww" && cp "$KVX_TMP/www/blob" "$KVX_TMP/hostwww/"
kvx_bg "$KVX_TMP/hosthttp.log" ip netns exec "$NS_HOST" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$GW_IP" --directory "$KVX_TMP/hostwww" 8081
kvx_wait_tcp_listen 10 "$NS_HOST" 8081
assert_eq "guest1 downloads 4 MB from the host intact" "$sha" \
	"$(kvx_curl_sha "$NS_G1" "http://$GW_IP:8081/blob")"
kvx_assert_no_csum_errors

kvx_step "detector check: a bad UDP checksum is counted as InCsumErrors"
before=$(kvx_snmp "$NS_HOST" Udp InCsumErrors)
nsx "$NS_G1" "$KVX_PY" - "$G1_IP" "$GW_IP" <<'EOF'
import socket, struct, sys
src, dst = sys.argv[1], sys.argv[2]
payload = b"bad checksum"
udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0x1234) + payload  # wrong checksum
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, (dst, 0))
EOF
kvx_wait_for 3 "Udp InCsumErrors to grow in host ns" \
	kvx_snmp_gt "$NS_HOST" Udp InCsumErrors "$before" &&
	kvx_pass "bad checksum counted in host ns Udp InCsumErrors"

kvx_step "detector check: a leaked private source is visible at the server"
# With forwarding on for the bridge and no NAT, guest packets are routed out
# unchanged: the server's log must show the guest address.
kvx_udp_server "$SRV_IP:5001"
nsx "$NS_HOST" sysctl -qw "net.ipv4.conf.$BR.forwarding=1"
out=$(kvx_udp_client "$NS_G1" --msg leak --wait 0.5 "$SRV_IP:5001" || true)
assert_empty "no reply reaches the guest (server has no way back)" "$out"
kvx_wait_file_contains 3 "$KVX_TMP/udp.log" "peer=$G1_IP:" &&
	kvx_pass "server saw the leaked guest address"
nsx "$NS_HOST" sysctl -qw "net.ipv4.conf.$BR.forwarding=0"

kvx_assert_no_netfilter
kvx_finish
