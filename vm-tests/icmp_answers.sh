#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/icmp_answers.sh: the ICMP errors kvmxdp sends itself (RFC 5508).
#  - REQ-8: with a pool of two NAT ports, both taken towards the server's
#    port, guest2's next connect() there fails at once with EHOSTUNREACH
#    ("administratively prohibited" from the gateway) instead of timing out
#    (towards another port it would share one: port overlapping);
#  - the rate limit: a flood of 50 refused flows gets a handful of answers;
#  - the bridge renumbered while attached: the answers come from its new
#    address (the daemon follows it into kvx_cfg.gw_addr);
#  - REQ-10b: TTL 1 from the LAN to a 1:1 address and to a forwarded port
#    gets "time exceeded" from the uplink address (tracepath shows the
#    host's hop), and a TCP connect() with TTL 1 fails at once;
#  - REQ-7: guest1's UDP to a forwarded port of guest2 where nothing
#    listens: guest2's "port unreachable" reaches guest1, translated
#    (from the uplink address, quoting guest1's own packet);
#  - PMTU towards a guest: with the bridge's MTU at 1280, a 2 MB TCP upload
#    from the LAN (TSO, partial checksums) through a forward completes on
#    "frag needed (mtu 1280)", and a DF ping to a 1:1 address gets one.
# Who saw which ICMP (addresses, quoted header, checksum) is read by raw
# sockets in the receivers' namespaces (udp_peer.py icmp).  The uplink's
# veth has tx checksumming off here, so the LAN host verifies every
# checksum too (kvx_finish: InCsumErrors stay 0 everywhere).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   1:1 10.77.0.101
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                              (attach --nat-ports 61000-61001)
#   lan ns:    kl<id> 10.77.0.1/24 (the LAN host), kr<id> 10.78.0.1/24, ip_forward=1
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1
#
# Usage: icmp_answers.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
nsx "$NS_HOST" ethtool -K "$UP" tx off >/dev/null
kvx_http_server
kvx_udp_server "$SRV_IP:5001"
EXT1=10.77.0.101

peer() { local ns=$1; shift; nsx "$ns" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" "$@"; }

kvx_icmp_sniffer "$NS_G1" g1
kvx_icmp_sniffer "$NS_G2" g2
kvx_icmp_sniffer "$NS_LAN" lan
# No per-guest port limit: guest2 alone fills both ports of the UDP and of
# the TCP pool (the limit counts a guest's ports of every protocol together).
kvx_attach_bg --nat-ports 61000-61001 --guest-ports 0 || kvx_fatal "cannot attach"
assert_ok "map add $EXT1 $G1_IP" kvx map add "$EXT1" "$G1_IP"
assert_ok "map add uplink:5353 $G2_IP:5353 --proto udp" kvx map add uplink:5353 "$G2_IP:5353" --proto udp
assert_ok "map add uplink:2222 $G2_IP:22 --proto tcp" kvx map add uplink:2222 "$G2_IP:22" --proto tcp

kvx_step "REQ-8: no NAT port left, guest2's connect() fails at once"
# Each protocol has its pool: two UDP flows and two open TCP connections
# of guest2 take both ports of each.  A third connection to the same
# server port finds no port: both already have a flow to that endpoint
# (to any other endpoint it would share one: port overlapping).
for p in 5101 5102; do
	r=$(kvx_udp_client "$NS_G2" --bind "$p" --msg fill --wait 0.5 "$SRV_IP:5001" || true)
	assert_contains "guest2's UDP flow from $p takes a NAT port" "seen=$UP_IP:6100" "$r"
done
kvx_bg "$KVX_TMP/hold.srv.log" ip netns exec "$NS_SRV" socat TCP-LISTEN:9100,bind="$SRV_IP",fork,reuseaddr \
	SYSTEM:"sleep 90"
kvx_wait_tcp_listen 10 "$NS_SRV" 9100
for p in 5201 5202; do
	kvx_bg "$KVX_TMP/hold.$p.log" ip netns exec "$NS_G2" socat TCP:"$SRV_IP":9100,bind="$G2_IP":$p \
		SYSTEM:"sleep 90"
done
kvx_wait_datapath 5 "guest2's two TCP connections" "c['XLATE_OUT'] >= 6" || true
ex0=$(kvx_counter DROP_PORTS_EXHAUSTED)
sent0=$(kvx_counter ICMP_SENT)
out=$(peer "$NS_G2" connect "$SRV_IP:9100" --timeout 10)
kvx_log "$out"
assert_contains "connect() fails with EHOSTUNREACH" "errno=EHOSTUNREACH" "$out"
secs=$(sed -n 's/.*seconds=\([0-9]*\)\..*/\1/p' <<<"$out")
assert_le "... within a second, not after SYN retries" "${secs:-99}" 0
assert_ge "DROP_PORTS_EXHAUSTED counted" $(($(kvx_counter DROP_PORTS_EXHAUSTED) - ex0)) 1
assert_eq "ICMP_SENT counted one answer" 1 $(($(kvx_counter ICMP_SENT) - sent0))
assert_eq "guest2 got 'administratively prohibited' from its gateway, quoting its SYN" 1 \
	"$(kvx_icmp_seen g2 "from=$GW_IP to=$G2_IP type=3 code=13 mtu=0 csum=ok quote=$G2_IP:[0-9]*->$SRV_IP:9100 qproto=6")"
out=$(peer "$NS_G2" connect "$SRV_IP:8080" --timeout 10)
assert_contains "... while a connect() to another server port shares a NAT port (overlapping)" "errno=0" "$out"

kvx_step "rate limit: 50 refused flows, a handful of answers"
sleep 1 # one more token
sent0=$(kvx_counter ICMP_SENT)
rl0=$(kvx_counter ICMP_RATELIMITED)
seen0=$(kvx_icmp_seen g2 "code=13")
peer "$NS_G2" flood "$SRV_IP:5001" --count 50 --first-port 20000 >/dev/null
sleep 0.5
sent=$(($(kvx_counter ICMP_SENT) - sent0))
kvx_log "answers sent: $sent, rate-limited: $(($(kvx_counter ICMP_RATELIMITED) - rl0))"
assert_ge "some answers" "$sent" 1
assert_le "at most the burst (6) and a token or two" "$sent" 7
assert_eq "every other refusal counted ICMP_RATELIMITED" $((50 - sent)) \
	$(($(kvx_counter ICMP_RATELIMITED) - rl0))
assert_eq "guest2 received exactly the answers sent" "$sent" $(($(kvx_icmp_seen g2 "code=13") - seen0))

kvx_step "the gateway address changes: answers follow it"
# libvirt (a redefined network) or an administrator renumbers the bridge
# while attached: the daemon follows the address, the next answer comes
# from the gateway guest2 now routes through.
NEW_GW=192.168.122.254
ip -n "$NS_HOST" addr del "$GW_IP/24" dev "$BR"
ip -n "$NS_HOST" addr add "$NEW_GW/24" dev "$BR"
ip -n "$NS_G2" route replace default via "$NEW_GW"
kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" " -> $NEW_GW" || true
sleep 1.1 # a token of guest2's bucket, spent by the flood
out=$(peer "$NS_G2" connect "$SRV_IP:9100" --timeout 10)
kvx_log "$out"
assert_contains "connect() fails with EHOSTUNREACH" "errno=EHOSTUNREACH" "$out"
assert_eq "guest2 got 'administratively prohibited' from the new gateway address" 1 \
	"$(kvx_icmp_seen g2 "from=$NEW_GW to=$G2_IP type=3 code=13 mtu=0 csum=ok quote=$G2_IP:[0-9]*->$SRV_IP:9100 qproto=6")"
ip -n "$NS_HOST" addr del "$NEW_GW/24" dev "$BR"
ip -n "$NS_HOST" addr add "$GW_IP/24" dev "$BR"
ip -n "$NS_G2" route replace default via "$GW_IP"

kvx_step "REQ-10b: TTL 1 from the LAN gets time exceeded from the uplink address"
out=$(nsx "$NS_LAN" ping -n -c 1 -W 2 -t 1 "$EXT1" 2>&1 || true)
assert_contains "ping -t 1 $EXT1 (1:1)" "From $UP_IP icmp_seq=1 Time to live exceeded" "$out"
assert_ge "the LAN host got it quoting its echo request to $EXT1" \
	"$(kvx_icmp_seen lan "from=$UP_IP to=$LAN_IP type=11 code=0 mtu=0 csum=ok quote=$LAN_IP:[0-9]*->$EXT1:[0-9]* qproto=1")" 1
out=$(nsx "$NS_LAN" timeout 20 tracepath -n -m 3 "$EXT1" 2>&1 || true)
kvx_log "tracepath: $(tr '\n' '|' <<<"$out")"
assert_contains "tracepath shows the host as the first hop" " 1:  $UP_IP" "$out"
assert_contains "... and reaches the guest's 1:1 address behind it" "$EXT1" "$(grep ' 2:' <<<"$out")"
out=$(peer "$NS_LAN" connect "$UP_IP:2222" --ttl 1 --timeout 10)
kvx_log "$out"
assert_contains "TCP connect() with TTL 1 to a forwarded port: EHOSTUNREACH" "errno=EHOSTUNREACH" "$out"
assert_ge "the LAN host got time exceeded quoting its SYN to the forward" \
	"$(kvx_icmp_seen lan "from=$UP_IP to=$LAN_IP type=11 code=0 mtu=0 csum=ok quote=$LAN_IP:[0-9]*->$UP_IP:2222 qproto=6")" 1

kvx_step "REQ-7: guest2's port unreachable reaches guest1 through the hairpin"
hp0=$(kvx_counter XLATE_HAIRPIN)
out=$(echo probe | nsx "$NS_G1" timeout 5 socat -t 1 -T 2 STDIO "UDP4:$UP_IP:5353,bind=$G1_IP:47000" 2>&1 || true)
assert_contains "guest1's connected UDP socket gets ECONNREFUSED" "refused" "$out"
assert_eq "guest1 got it from the forwarded endpoint, quoting its own datagram" 1 \
	"$(kvx_icmp_seen g1 "from=$UP_IP to=$G1_IP type=3 code=3 mtu=0 csum=ok quote=$G1_IP:47000->$UP_IP:5353 qproto=17")"
assert_ge "XLATE_HAIRPIN counted the datagram and the error" $(($(kvx_counter XLATE_HAIRPIN) - hp0)) 2

kvx_step "PMTU towards a guest: bridge MTU 1280"
ip -n "$NS_HOST" link set "$BR" mtu 1280
# First TCP, through a forward of the uplink address (the ping below
# caches the path MTU of the 1:1 address on the LAN host).
assert_ok "map add uplink:9000 $G1_IP:9000 --proto tcp" kvx map add uplink:9000 "$G1_IP:9000" --proto tcp
sha=$(kvx_random_file blob 2)
kvx_bg "$KVX_TMP/sink.log" ip netns exec "$NS_G1" socat -u TCP-LISTEN:9000,bind="$G1_IP",reuseaddr \
	OPEN:"$KVX_TMP/upload",creat,trunc
sink=$KVX_LAST_PID
kvx_wait_tcp_listen 10 "$NS_G1" 9000
rc=0
nsx "$NS_LAN" timeout 30 socat -u FILE:"$KVX_TMP/www/blob" TCP:"$UP_IP":9000 || rc=$?
assert_eq "2 MB TCP upload from the LAN (TSO) through a forward to guest1, exit code" 0 "$rc"
kvx_wait_for 5 "the sink to finish" bash -c "! kill -0 $sink 2>/dev/null" || true
assert_eq "upload arrived intact" "$sha" "$(sha256sum <"$KVX_TMP/upload" | cut -d' ' -f1)"
assert_ge "the LAN host got frag needed (mtu 1280) for its TCP segments" \
	"$(kvx_icmp_seen lan "from=$UP_IP to=$LAN_IP type=3 code=4 mtu=1280 csum=ok quote=$LAN_IP:[0-9]*->$UP_IP:9000 qproto=6")" 1
out=$(nsx "$NS_LAN" ping -n -c 1 -W 2 -M do -s 1400 "$EXT1" 2>&1 || true)
kvx_log "ping: $(tr '\n' '|' <<<"$out")"
assert_contains "a DF ping to the 1:1 address: the LAN host is told the bridge's MTU" "mtu = 1280" "$out"
assert_ge "... from the uplink address, checksum valid" \
	"$(kvx_icmp_seen lan "from=$UP_IP to=$LAN_IP type=3 code=4 mtu=1280 csum=ok quote=$LAN_IP:[0-9]*->$EXT1:[0-9]* qproto=1")" 1
kvx_assert_icmp_csums

kvx_finish
