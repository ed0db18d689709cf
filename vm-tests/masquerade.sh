#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/masquerade.sh: kvmxdp masquerades two guests behind the uplink
# address with real clients (ping, curl, iperf3, UDP), checksums proven end
# to end, the host stack bypassed, no netfilter involved; status reads the
# firewall rule sets with /usr/sbin's tools, not those first in PATH.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
#   Guest veths: tx checksum offload + TSO on.  Bridge ports (kp1/kp2<id>) and
#   the router's kr<id>: tx checksum offload off, so every checksum a guest or
#   the server receives was finalized in software and is verified.
#
# Usage: masquerade.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads

kvx_server_sniffer
fwd0=$(kvx_fwd_datagrams)
kvx_step "attach"
kvx_attach_bg || kvx_fatal "cannot attach"
st=$(kvx_status_json)
assert_eq "status: daemon_pid" "$KVX_DAEMON_PID" "$(kvx_json 'i["daemon_pid"]' "$st")"
assert_eq "status: uplink" "$UP" "$(kvx_json 'i["uplink"]' "$st")"
assert_eq "status: uplink_addr" "$UP_IP" "$(kvx_json 'i["uplink_addr"]' "$st")"
assert_eq "status: subnet" "$SUBNET" "$(kvx_json 'i["subnet"]' "$st")"
assert_eq "status: eif" false "$(kvx_json 'i["eif"]' "$st")"
assert_eq "status: devices (bridge, uplink, the bridge's ports)" \
	"$(printf '%s\n' "$BR" "$UP" "$P1_IF" "$P2_IF" | sort | paste -sd,)" \
	"$(kvx_json '",".join(sorted(x["ifname"] for x in i["devices"]))' "$st" | tr ',' '\n' | sort | paste -sd,)"
# --mode auto on veths: TC everywhere, each with its reason (XDP would strip
# the peer's GSO); xdp_path.sh covers --mode xdp.
assert_eq "status: every device on TC under --mode auto" "tc tc tc tc" \
	"$(kvx_json '" ".join(d["mode"] for d in i["devices"])' "$st")"
assert_contains "status: the uplink says why it is not XDP" "GSO" \
	"$(kvx_json '[d["why"] for d in i["devices"] if d["ifname"] == "'"$UP"'"][0]' "$st")"
# The JSON shape docs/status-json.md documents, every reason of the ABI's
# X-macro included.
reasons=$(sed -n 's/^[[:space:]]*X(\([A-Z_]*\),.*/\1/p' "$KVX_LIBDIR/../bpf/include/kvmxdp/abi.h" | paste -sd,)
shape=$(KVX_REASONS=$reasons kvx_json '";".join(
	["missing " + k for k in ("bridge", "uplink", "subnet", "uplink_addr", "nat_port_lo", "nat_port_hi",
	  "eif", "daemon_pid", "devices", "conntrack", "bindings", "counters", "coexistence", "warnings")
	 if k not in i]
	+ ["device lacks " + k for dv in i["devices"] for k in ("ifname", "ifindex", "hook", "mode", "prog") if k not in dv]
	+ ["table lacks " + t + "." + k for t in ("conntrack", "bindings") for k in ("entries", "max_entries") if k not in i[t]]
	+ ["no counter " + r for r in os.environ["KVX_REASONS"].split(",") if r not in i["counters"]]
	+ ["coexistence lacks " + k for k in ("br_netfilter", "foreign_rules") if k not in i["coexistence"]]
	) or "complete"' "$st")
assert_eq "status --json has every documented key (reasons: ${reasons:0:40}...)" complete "$shape"
brnf=$(kvx_sysctl_get "$NS_HOST" net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)
assert_eq "status: coexistence.br_netfilter matches bridge-nf-call-iptables=$brnf" \
	"$([[ $brnf == 1 ]] && echo true || echo false)" "$(kvx_json 'i["coexistence"]["br_netfilter"]' "$st")"
# The firewall tools come from /usr/sbin or /sbin, never from the caller's
# PATH (status runs as root): stand-ins first in PATH must not run.
mkdir -p "$KVX_TMP/fakebin"
for tool in nft iptables-save; do
	printf '#!/bin/sh\necho "$0" >>%q\n' "$KVX_TMP/fakebin.ran" >"$KVX_TMP/fakebin/$tool"
	chmod +x "$KVX_TMP/fakebin/$tool"
done
st2=$(PATH="$KVX_TMP/fakebin:$PATH" nsx "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" status --json \
	--bridge "$BR" 2>>"$KVX_TMP/status.err" || true)
assert_eq "status ran no firewall tool found through PATH" "" "$(cat "$KVX_TMP/fakebin.ran" 2>/dev/null || true)"
assert_eq "status read both rule sets (coexistence.rules_unread empty)" "[]" \
	"$(kvx_json 'i["coexistence"]["rules_unread"]' "$st2")"
assert_eq "one bpf filter on the bridge ingress" 1 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "one bpf filter on the uplink ingress" 1 "$(kvx_tc_bpf_filters "$UP")"
assert_eq "bridge forwarding on while attached" 1 \
	"$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"

kvx_step "ping: both guests -> server, every echo translated both ways"
N=20
out0=$(kvx_counter XLATE_OUT) in0=$(kvx_counter XLATE_IN)
assert_eq "guest1 ping $N/$N" $N "$(kvx_ping_received "$NS_G1" "$SRV_IP" $N)"
assert_eq "guest2 ping $N/$N" $N "$(kvx_ping_received "$NS_G2" "$SRV_IP" $N)"
out1=$(kvx_counter XLATE_OUT) in1=$(kvx_counter XLATE_IN)
assert_ge "XLATE_OUT grew by the echo requests" $((out1 - out0)) $((2 * N))
assert_ge "XLATE_IN grew by the echo replies" $((in1 - in0)) $((2 * N))

kvx_step "local traffic is left to the bridge and the host"
assert_eq "guest1 -> gateway (host address)" 3 "$(kvx_ping_received "$NS_G1" "$GW_IP" 3)"
assert_eq "guest1 -> guest2 (bridged)" 3 "$(kvx_ping_received "$NS_G1" "$G2_IP" 3)"
assert_eq "host's own ping to the server" 3 "$(kvx_ping_received "$NS_HOST" "$SRV_IP" 3)"

kvx_step "HTTP download (TCP, GSO, partial checksums) from both guests"
kvx_http_server
sha=$(kvx_random_file blob 8)
for ns in "$NS_G1" "$NS_G2"; do
	assert_eq "8 MB via curl in ${ns##*-} intact (sha256)" "$sha" \
		"$(kvx_curl_sha "$ns" "http://$SRV_IP:8080/blob")"
done
assert_eq "the host's own download still works (PASS_HOST)" "$sha" \
	"$(kvx_curl_sha "$NS_HOST" "http://$SRV_IP:8080/blob")"
clients=$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')
assert_eq "http server saw only the uplink address" "$UP_IP" "$clients"

t0=$(date +%s%N) rc=0
nsx "$NS_G1" curl -sS --max-time 5 -o /dev/null "http://$SRV_IP:8089/" 2>/dev/null || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "closed server port: the RST reaches the guest (curl 'connection refused' after ${ms} ms)" 7 "$rc"

kvx_step "UDP: the server sees the uplink address"
kvx_udp_server "$SRV_IP:5001"
for ns in "$NS_G1" "$NS_G2"; do
	r=$(kvx_udp_client "$ns" --msg "hi-${ns##*-}" --wait 1 "$SRV_IP:5001" || true)
	assert_contains "UDP reply to ${ns##*-}" "data=hi-${ns##*-}" "$r"
	assert_contains "server saw ${ns##*-} as the uplink address" "seen=$UP_IP:" "$r"
done
peers=$(sed -n 's/.* peer=\([0-9.]*\):.*/\1/p' "$KVX_TMP/udp.log" | sort -u | paste -sd' ')
assert_eq "UDP server saw only the uplink address" "$UP_IP" "$peers"

kvx_step "iperf3 TCP, both directions"
kvx_bg "$KVX_TMP/iperf3.log" ip netns exec "$NS_SRV" iperf3 -s -B "$SRV_IP" -p 5201
kvx_wait_tcp_listen 10 "$NS_SRV" 5201
for dir in "" -R; do
	j=$(nsx "$NS_G1" iperf3 -c "$SRV_IP" -p 5201 -t 2 -J $dir 2>&1 || true)
	bps=$("$KVX_PY" -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))' <<<"$j" 2>/dev/null || echo "error")
	kvx_log "iperf3 ${dir:-(guest->server)}: ${bps} bit/s"
	assert_ge "iperf3 ${dir:-forward} throughput > 1 Mbit/s" "$bps" 1000000
done
srv_peers=$(grep -o 'Accepted connection from [0-9.]*' "$KVX_TMP/iperf3.log" | awk '{print $4}' | sort -u | paste -sd' ')
assert_eq "iperf3 server saw only the uplink address" "$UP_IP" "$srv_peers"

kvx_step "the host stack was bypassed"
st=$(kvx_status_json)
xl=$(kvx_json 'i["counters"]["XLATE_OUT"]["packets"] + i["counters"]["XLATE_IN"]["packets"]' "$st")
fwd=$(($(kvx_fwd_datagrams) - fwd0))
kvx_log "translated packets: $xl, host IpForwDatagrams delta: $fwd"
assert_ge "packets translated by kvmxdp" "$xl" 1000
# Every guest packet is translated or dropped by kvmxdp, or handed up for the
# host itself (PASS_LOCAL, PASS_TTL, PASS_NOT_IP: never forwarded); the
# kernel forwards only PASS_MTU packets (for its 'frag needed' answer: none
# here, the MTUs are equal).  So nothing at all, whatever the traffic.
assert_eq "host IpForwDatagrams did not move (PASS_MTU: none)" "0 0" "$fwd $(kvx_counter PASS_MTU)"
for r in DROP_MALFORMED DROP_SPOOFED DROP_FIB DROP_OTHER_IFACE DROP_BROKEN_PAIR DROP_TABLE_FULL \
	DROP_PORTS_EXHAUSTED DROP_NO_UPLINK_ADDR PASS_NO_ROUTE; do
	assert_eq "counter $r" 0 "$(kvx_json "i['counters']['$r']['packets']" "$st")"
done
kvx_log "all counters: $(kvx_json '" ".join("%s=%d" % (k, v["packets"]) for k, v in i["counters"].items() if v["packets"])' "$st")"
assert_ge "conntrack entries counted" "$(kvx_json 'i["conntrack"]["entries"]' "$st")" 1
assert_ge "binding entries counted" "$(kvx_json 'i["bindings"]["entries"]' "$st")" 1

kvx_step "a guest spoofing a source outside the subnet is dropped"
sp0=$(kvx_counter DROP_SPOOFED)
nsx "$NS_G1" "$KVX_PY" - 10.1.2.3 "$SRV_IP" <<'EOF2'
import socket, struct, sys
src, dst = sys.argv[1], sys.argv[2]
payload = b"spoofed"
udp = struct.pack("!HHHH", 40000, 5001, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(3):
    s.sendto(ip + udp, (dst, 0))
EOF2
kvx_wait_datapath 5 "DROP_SPOOFED to count 3 more" "c['DROP_SPOOFED'] >= $sp0 + 3" || true
assert_eq "DROP_SPOOFED counted the 3 spoofed datagrams" 3 $(($(kvx_counter DROP_SPOOFED) - sp0))

kvx_step "UDP without checksum: 0 stays 0 both ways"
kvx_bg "$KVX_TMP/udp0.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" \
	serve "$SRV_IP:5009" --no-check
kvx_wait_file_contains 10 "$KVX_TMP/udp0.log" serving
r=$(kvx_udp_client "$NS_G1" --no-check --msg nocsum --wait 1 "$SRV_IP:5009" || true)
assert_contains "checksum-less UDP there and back" "data=nocsum" "$r"
assert_contains "checksum-less UDP seen from the uplink address" "seen=$UP_IP:" "$r"

kvx_step "TTL 1: the gateway answers time exceeded (PASS_TTL)"
t0=$(kvx_counter PASS_TTL)
out=$(nsx "$NS_G2" ping -n -c 1 -W 1 -t 1 "$SRV_IP" 2>&1 || true)
assert_contains "guest2 gets time exceeded from the gateway" "From $GW_IP icmp_seq=1 Time to live exceeded" "$out"
assert_ge "PASS_TTL counted" $(($(kvx_counter PASS_TTL) - t0)) 1

kvx_step "what the server received on the wire"
srcs=$(kvx_server_sources)
kvx_log "sources seen by the server: $srcs"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$srcs"

kvx_step "checksums and netfilter"
kvx_assert_no_csum_errors
kvx_assert_no_netfilter
assert_eq "daemon still running" 0 "$(kill -0 "$KVX_DAEMON_PID" 2>/dev/null; echo $?)"
kvx_finish
