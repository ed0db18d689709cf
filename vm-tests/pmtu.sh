#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/pmtu.sh: an uplink with a smaller MTU (1400) than the guests'
# (1500), as behind a WiFi/VPN/PPPoE link.  A redirect bypasses ip_forward's
# MTU check, so kvmxdp must hand too-big DF packets to the host
# stack (PASS_MTU), which answers the guest with ICMP "frag needed"; then
# TCP uploads from a TSO guest (GSO packets!) still get through intact, the
# guest learning the path MTU from its first super-packet: the route lookup
# passes any GSO skb whole, so kvmxdp checks the segment size (veth would
# carry the oversized segments on, hiding the stall a real uplink shows).
# Too big without DF: dropped (DROP_TOO_BIG: BPF cannot fragment, and the
# host stack would forward it with the guest's source).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1, mtu 1500) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1, mtu 1500) --+ bridge kb<id> (192.168.122.1/24)
#                                                     host ns: uplink ku<id> 10.77.0.2/24 MTU 1400,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 MTU 1400 (towards host), kr<id> 10.78.0.1/24
#              (towards server), ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: pmtu.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
ip -n "$NS_HOST" link set "$UP" mtu 1400
ip -n "$NS_LAN" link set "$LAN_UP_IF" mtu 1400
kvx_http_server
sha=$(kvx_random_file blob 4)
kvx_server_sniffer

kvx_attach_bg || kvx_fatal "cannot attach"
fwd0=$(kvx_fwd_datagrams)

kvx_step "ping with DF, 1450 bytes: the host answers 'frag needed, mtu 1400'"
# Twice: once with the uplink gateway's neighbour entry unresolved (the
# kernel's bpf_fib_lookup returns NO_NEIGH before its MTU check when tot_len
# is 0, so the program must check the MTU itself), once resolved.
m0=$(kvx_counter PASS_MTU)
ip -n "$NS_HOST" neigh flush dev "$UP"
out=$(nsx "$NS_G1" ping -n -c 1 -W 1 -M "do" -s 1450 "$SRV_IP" 2>&1 || true)
kvx_log "ping (gateway neighbour unresolved): $(tr '\n' '|' <<<"$out")"
assert_contains "first oversize DF packet, gateway neighbour unresolved: guest told the path MTU" \
	"mtu = 1400" "$out"
assert_eq "host ping resolves the gateway" 1 "$(kvx_ping_received "$NS_HOST" "$LAN_IP" 1)"
out=$(nsx "$NS_G2" ping -n -c 1 -W 1 -M "do" -s 1450 "$SRV_IP" 2>&1 || true)
kvx_log "ping (gateway neighbour resolved): $(tr '\n' '|' <<<"$out")"
assert_contains "first oversize DF packet, gateway neighbour resolved: guest told the path MTU" \
	"mtu = 1400" "$out"
assert_ge "PASS_MTU counted both" $(($(kvx_counter PASS_MTU) - m0)) 2
assert_eq "small pings still pass" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"

kvx_step "ping without DF, 1450 bytes: dropped (DROP_TOO_BIG)"
b0=$(kvx_counter DROP_TOO_BIG)
ip -n "$NS_G2" route flush cache # forget the learned PMTU: no local fragmentation
rx=$(nsx "$NS_G2" ping -n -q -c 2 -i 0.2 -W 1 -M dont -s 1450 "$SRV_IP" 2>/dev/null |
	sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true)
assert_eq "no reply to a too-big packet without DF" 0 "${rx:-0}"
assert_ge "DROP_TOO_BIG counted" $(($(kvx_counter DROP_TOO_BIG) - b0)) 2

kvx_step "tracepath from a guest: the host's 'frag needed' gives pmtu 1400"
ip -n "$NS_G1" route flush cache
out=$(nsx "$NS_G1" timeout 20 tracepath -n -m 4 "$SRV_IP" 2>&1 || true)
kvx_log "tracepath: $(tr '\n' '|' <<<"$out")"
assert_contains "tracepath finds the uplink's MTU" "pmtu 1400" "$out"

kvx_step "TCP upload from a TSO guest (GSO packets larger than the uplink MTU)"
# G2 has not learnt the path MTU (its cache was flushed and its pings went
# without DF): its first TSO super-packets carry 1448-byte segments.
ip -n "$NS_G2" route flush cache
assert_not_contains "G2 starts without a learnt path MTU" "mtu 1400" \
	"$(ip -n "$NS_G2" route get "$SRV_IP")"
m0=$(kvx_counter PASS_MTU)
# What reaches the server, segment by segment (the router's link to it
# segments in software): nothing larger than the uplink's MTU allows.
kvx_bg "$KVX_TMP/tcpsniff.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/tcp_peer.py" \
	sniff "$SRV_IF"
kvx_wait_file_contains 10 "$KVX_TMP/tcpsniff.log" sniffing
kvx_bg "$KVX_TMP/sink.log" ip netns exec "$NS_SRV" socat -u TCP-LISTEN:9000,bind="$SRV_IP",reuseaddr \
	OPEN:"$KVX_TMP/upload",creat,trunc
kvx_wait_tcp_listen 10 "$NS_SRV" 9000
sink=$KVX_LAST_PID
rc=0
nsx "$NS_G2" timeout 20 socat -u FILE:"$KVX_TMP/www/blob" TCP:"$SRV_IP":9000 || rc=$?
assert_eq "upload exit code" 0 "$rc"
assert_ge "a GSO super-packet with too-big segments went up for 'frag needed'" \
	$(($(kvx_counter PASS_MTU) - m0)) 1
assert_contains "G2 learnt the path MTU from the host's ICMP" "mtu 1400" \
	"$(ip -n "$NS_G2" route get "$SRV_IP")"
# 1400 - 20 (IP) - 20 (TCP) - 12 (timestamps): 1348 bytes of data at most.
big=$(awk -v s="src=$UP_IP:" -v d="dst=$SRV_IP:9000" \
	'$1 == "data" && index($2, s) == 1 && $3 == d { sub("max=", "", $4); if ($4 + 0 > m) m = $4 + 0 } END { print m + 0 }' \
	"$KVX_TMP/tcpsniff.log")
assert_le "largest upload segment at the server fits the uplink MTU" "$big" 1348
assert_ge "the sniffer saw the upload" "$big" 1000
kvx_wait_for 5 "the sink to finish" bash -c "! kill -0 $sink 2>/dev/null" || true
assert_eq "4 MB upload arrived intact" "$sha" "$(sha256sum <"$KVX_TMP/upload" | cut -d' ' -f1)"
assert_eq "4 MB download intact" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"

kvx_step "nothing leaked"
fwd=$(($(kvx_fwd_datagrams) - fwd0))
# Too-big DF packets go to the stack on purpose (PASS_MTU: it answers with
# 'frag needed'), and the kernel counts each in IpForwDatagrams before its
# MTU check drops it: the 2 pings, plus any TSO upload segment sent before
# the guest learnt the path MTU (none on a quiet machine, a dozen under
# load).  Every other guest packet is translated or dropped by kvmxdp, or
# handed up for the host itself (TTL, no route), which the kernel never
# forwards: the budget is the PASS_MTU count, exactly.
mtu_n=$(kvx_counter PASS_MTU)
kvx_log "host IpForwDatagrams moved by $fwd; PASS_MTU: $mtu_n"
assert_le "host IpForwDatagrams: only the PASS_MTU packets handed up on purpose" "$fwd" "$mtu_n"
# The common end check (kvx_finish) with the same budget (the counters
# started at the attach, before which nothing was sent).
KVX_FWD_BUDGET=$mtu_n
srcs=$(kvx_server_sources)
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$srcs"
kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
