#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/forwards.sh: README promises about TCP options, forwards and
# flushes, with real traffic:
#  1. `attach --clamp-mss 1300`: the SYN and SYN-ACK of real connections
#     (guest1 -> server, and LAN -> a port forwarded to guest2), captured
#     at the receivers, carry MSS 1300 instead of 1460; a smaller MSS (1200,
#     1100) is left alone; an MSS option that is not the first option
#     (raw-socket SYNs: after NOP,NOP,SACK-permitted, after timestamps,
#     after one NOP, after 11 other options) is clamped too, one behind 12
#     NOPs is not (the walk's bound, README "Not supported yet"); every
#     captured TCP segment's checksum verifies, the data segments both ways
#     are at most 1300 bytes and the echoed bytes match (sha256).
#  2. UDP port forward uplink:5300 -> guest2:5301 from the LAN host: the
#     guest sees the LAN host's own address and port, the LAN host gets
#     the payload back from uplink:5300; TCP to that port is not forwarded.
#  3. Port ranges uplink:8000-8009 -> guest1:9000-9009, TCP and UDP: ports
#     8000, 8003, 8009 reach 9000, 9003, 9009; 8010 does not.
#  4. `conntrack flush` of an 8 MiB TCP stream's flow (guest1 -> server, echoed
#     back): the guest's next packet picks the flow up mid-stream with the
#     same external port (ESTABLISHED in `conntrack list`); 200 off-path RSTs
#     (spoofed from the server's endpoint, random sequence numbers) are
#     mostly dropped (the picked-up flow is window-checked loosely); no
#     reset, every byte arrives both ways (sha256).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+  TCP echo :9000,9003,9009, UDP :9000,9003,9009
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+  TCP echo :7100, UDP echo :5301
#                                                  |  (both sniff their interface)
#   host ns: bridge kb<id> 192.168.122.1/24 -------+  kvmxdp --clamp-mss 1300
#            uplink ku<id> 10.77.0.2/24            forwards: uplink:7200/tcp -> guest2:7100,
#                                                  uplink:5300/udp -> guest2:5301,
#                                                  uplink:8000-8009/tcp+udp -> guest1:9000-9009
#   lan ns:    kl<id> 10.77.0.1/24 = the LAN host (clients, sniffer), kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24: TCP echo :7100, :7101 (TCP_MAXSEG 1100), sniffer
#   Tx checksum offload is off on ku, kl and ks too: every receiver, the
#   LAN host included, gets finalized checksums, and what enters kvmxdp
#   from the uplink carries complete ones (the guests' stay partial).
#
# Usage: forwards.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
# The LAN host is a receiver here too: checksums towards it are finalized
# in software (as lib.sh does for the server and the guests).  And what
# enters kvmxdp from the uplink carries complete checksums, as a real NIC
# delivers them (the guests' packets stay CHECKSUM_PARTIAL): the clamp's
# checksum update is then what the receiving guest verifies.
nsx "$NS_HOST" ethtool -K "$UP" tx off >/dev/null
nsx "$NS_LAN" ethtool -K "$LAN_UP_IF" tx off >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null

MSS=1300
PEER=$KVX_LIBDIR/tcp_peer.py

# tcp_peer NS LOG ARGS...: a background tcp_peer.py; waits for its first line.
tcp_peer() {
	local ns=$1 log=$2; shift 2
	kvx_bg "$KVX_TMP/$log" ip netns exec "$ns" "$KVX_PY" -u "$PEER" "$@"
	kvx_wait_for 10 "tcp_peer $* in $ns" grep -qE '^(listening|sniffing)' "$KVX_TMP/$log"
}
# tcp_client NS LOG DST:PORT ARGS...: tcp_peer.py client; its output in LOG.
tcp_client() {
	local ns=$1 log=$2; shift 2
	nsx "$ns" "$KVX_PY" -u "$PEER" client "$@" >"$KVX_TMP/$log" 2>&1
}
# syn_line LOG FLAGS SRC DST: the sniffer's line of that SYN (S) or SYN-ACK (SA).
syn_line() {
	kvx_wait_for 5 "$2 $3 -> $4 in $1" grep -q "^syn flags=$2 src=$3 dst=$4 " "$KVX_TMP/$1" || true
	grep -m1 "^syn flags=$2 src=$3 dst=$4 " "$KVX_TMP/$1" || true
}
# data_max LOG SRC DST: the largest TCP payload the sniffer saw on that way.
data_max() {
	awk -v c="src=$2 dst=$3" '$1 == "data" && $2 " " $3 == c { sub("max=", "", $4); m = $4 } END { print m + 0 }' \
		"$KVX_TMP/$1"
}
# assert_clamped_conn SRV SRV_LOG CLIENT SERVER CLI CLI_LOG SERVER' CLIENT':
# one connection as its two ends received it (SRV's sniffer: CLIENT ->
# SERVER; CLI's: SERVER' -> CLIENT', the other side of the NAT): SYN and
# SYN-ACK carry MSS $MSS (both stacks sent 1460) with valid checksums, and
# the data segments both ways fit it (unclamped they would carry 1448).
assert_clamped_conn() {
	local line n
	line=$(syn_line "$2" S "$3" "$4")
	assert_contains "$1: the SYN from $3 has MSS $MSS (1460 clamped)" "mss=$MSS at=0 " "$line"
	assert_contains "$1: the SYN's checksum verifies" "csum=ok" "$line"
	line=$(syn_line "$6" SA "$7" "$8")
	assert_contains "$5: the SYN-ACK from $7 has MSS $MSS (1460 clamped)" "mss=$MSS at=0 " "$line"
	assert_contains "$5: the SYN-ACK's checksum verifies" "csum=ok" "$line"
	n=$(data_max "$2" "$3" "$4")
	assert_ge "$1: data segments from $3 carry payload" "$n" 1000
	assert_le "$1: data segments from $3 fit MSS $MSS" "$n" "$MSS"
	n=$(data_max "$6" "$7" "$8")
	assert_ge "$5: data segments from $7 carry payload" "$n" 1000
	assert_le "$5: data segments from $7 fit MSS $MSS" "$n" "$MSS"
}
# flow_of PORT: "STATE ext_port" of guest1's TCP flow from PORT to the server's 7100.
flow_of() {
	kvx conntrack list --json --bridge "$BR" --guest "$G1_IP" --proto tcp 2>>"$KVX_TMP/ct.err" |
		"$KVX_PY" -c '
import json, sys
for f in json.load(sys.stdin):
    if f["int_port"] == int(sys.argv[1]) and f["rem_port"] == 7100:
        print(f["state"], f["ext_port"])' "$1" 2>/dev/null || true
}
# client_port LOG: the local port tcp_peer.py client printed.
client_port() { sed -n 's/^local=//p' "$KVX_TMP/$1"; }
# peer_of LOG PORT: the peer the echo server saw in its last connection on
# PORT (the translated client endpoint).
peer_of() { sed -n "s/^accept port=$2 peer=//p" "$KVX_TMP/$1" | tail -n1; }

tcp_peer "$NS_SRV" srv.log echo "$SRV_IP" 7100
tcp_peer "$NS_SRV" srv_small.log echo "$SRV_IP" 7101 --maxseg 1100
tcp_peer "$NS_G2" g2.log echo 0.0.0.0 7100
tcp_peer "$NS_G1" g1.log echo 0.0.0.0 9000 9003 9009
for w in srv:"$NS_SRV":"$SRV_IF" g1:"$NS_G1":"$G1_IF" g2:"$NS_G2":"$G2_IF" lan:"$NS_LAN":"$LAN_UP_IF"; do
	IFS=: read -r name ns dev <<<"$w"
	tcp_peer "$ns" "sniff.$name.log" sniff "$dev"
done

kvx_attach_bg --clamp-mss "$MSS" || kvx_fatal "cannot attach"
assert_ok "map add uplink:7200 $G2_IP:7100 --proto tcp" kvx map add uplink:7200 "$G2_IP:7100" --proto tcp

# ------------------------------------------------------------------ 1. MSS
kvx_step "MSS clamping: guest1 -> server:7100 (1 MiB echoed)"
assert_ok "guest1 -> server: echo matches" tcp_client "$NS_G1" c1.log "$SRV_IP:7100" --bytes $((1 << 20))
g1p=$(client_port c1.log)
ext=$(peer_of srv.log 7100)
assert_contains "server saw the uplink address" "$UP_IP:" "$ext"
assert_clamped_conn server sniff.srv.log "$ext" "$SRV_IP:7100" guest1 sniff.g1.log "$SRV_IP:7100" "$G1_IP:$g1p"

kvx_step "MSS clamping: smaller MSS left alone (guest 1200, server 1100)"
assert_ok "guest1 (MSS 1200) -> server:7101 (MSS 1100)" \
	tcp_client "$NS_G1" c2.log "$SRV_IP:7101" --maxseg 1200 --bytes 65536
g1p=$(client_port c2.log)
ext=$(peer_of srv_small.log 7101)
assert_contains "server: the guest's SYN keeps MSS 1200" "mss=1200 at=0 " \
	"$(syn_line sniff.srv.log S "$ext" "$SRV_IP:7101")"
assert_contains "guest1: the server's SYN-ACK keeps MSS 1100" "mss=1100 at=0 " \
	"$(syn_line sniff.g1.log SA "$SRV_IP:7101" "$G1_IP:$g1p")"

kvx_step "MSS clamping: LAN host -> uplink:7200 (forward to guest2:7100, 1 MiB echoed)"
assert_ok "LAN -> $UP_IP:7200: echo matches" tcp_client "$NS_LAN" c3.log "$UP_IP:7200" --bytes $((1 << 20))
assert_contains "guest2 answered on 7100 and saw the LAN host" "hello port=7100 peer=$LAN_IP:" "$(cat "$KVX_TMP/c3.log")"
lanp=$(client_port c3.log)
assert_clamped_conn guest2 sniff.g2.log "$LAN_IP:$lanp" "$G2_IP:7100" "LAN host" sniff.lan.log "$UP_IP:7200" "$LAN_IP:$lanp"

kvx_step "MSS clamping: the MSS option not in first position (raw-socket SYNs)"
# RFC 9293 puts no order on options; Linux sends MSS first, so these SYNs
# come from a raw socket.  Cases: after NOP,NOP,SACK-permitted and after
# timestamps; a smaller MSS there; at an odd offset (NOP,MSS: the checksum
# update must swap bytes); the walk's bound (README: 12 options at most):
# behind 10 NOPs + SACK-permitted clamped, behind 12 NOPs left as it is.
# The server's sniffer finds each by its external port (conntrack list).
ts=0101080a0000000100000000
nops10=01010101010101010101
for case in "61101 01010402020405b4 4 $MSS" "61102 ${ts}020405b4 12 $MSS" \
	"61103 01010402020403e8 4 1000" "61104 01020405b4000000 1 $MSS" \
	"61105 ${nops10}0402020405b4 12 $MSS" "61106 ${nops10}0101020405b4 12 1460"; do
	read -r sport opts at want <<<"$case"
	out=$(nsx "$NS_G1" "$KVX_PY" -u "$PEER" rawsyn "$SRV_IP:7100" --sport "$sport" --opts "$opts" 2>&1 || true)
	# The server's SYN-ACK (MSS 1460, first) is clamped on its way in.
	assert_contains "guest1 got the SYN-ACK to options $opts (clamped)" "synack mss=$MSS at=0 csum=ok" "$out"
	flow=$(flow_of "$sport")
	line=$(syn_line sniff.srv.log S "$UP_IP:${flow#* }" "$SRV_IP:7100")
	assert_contains "server: MSS at offset $at is $want" "mss=$want at=$at " "$line"
	# Everything around the MSS value is as the guest sent it.
	assert_contains "server: the other options untouched" \
		"opts=${opts:0:$((at * 2 + 4))}$(printf %04x "$want")${opts:$((at * 2 + 8))} " "$line"
	assert_contains "server: that SYN's checksum verifies" "csum=ok" "$line"
done

assert_empty "no TCP segment with a bad checksum at any receiver" \
	"$(cat "$KVX_TMP"/sniff.*.log | grep '^badcsum' || true)"

# ------------------------------------------------------------------ 2. UDP forward
# udp_serve NS LOG ADDR:PORT...: vm-tests/udp_peer.py serve in NS.
udp_serve() {
	local ns=$1 log=$2; shift 2
	kvx_bg "$KVX_TMP/$log" ip netns exec "$ns" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" serve "$@"
	kvx_wait_file_contains 10 "$KVX_TMP/$log" serving
}

kvx_step "UDP port forward: LAN host -> uplink:5300 -> guest2:5301"
udp_serve "$NS_G2" g2udp.log "$G2_IP:5301"
assert_ok "map add uplink:5300 $G2_IP:5301 --proto udp" kvx map add uplink:5300 "$G2_IP:5301" --proto udp
payload=fwd-$(head -c 300 /dev/urandom | od -An -tx1 | tr -d ' \n')
out=$(kvx_udp_client "$NS_LAN" --bind 40500 --count 3 --msg "$payload" "$UP_IP:5300" || true)
assert_eq "LAN host: 3 answers from uplink:5300 (guest2 saw $LAN_IP:40500 on 5301, payload intact)" 3 \
	"$(grep -cxF "from=$UP_IP:5300 data=seen=$LAN_IP:40500 via=$G2_IP:5301 data=$payload" <<<"$out" || true)"
assert_eq "guest2: 3 datagrams from the LAN host's own address, payload intact" 3 \
	"$(grep -cxF "port=5301 peer=$LAN_IP:40500 data=$payload" "$KVX_TMP/g2udp.log" || true)"
assert_fails "TCP to uplink:5300 is not forwarded (the host refuses it)" \
	tcp_client "$NS_LAN" c5300.log "$UP_IP:5300" --bytes 10

# ------------------------------------------------------------------ 3. port ranges
kvx_step "port ranges: uplink:8000-8009 -> guest1:9000-9009, TCP and UDP"
udp_serve "$NS_G1" g1udp.log "$G1_IP:9000" "$G1_IP:9003" "$G1_IP:9009"
for proto in tcp udp; do
	assert_ok "map add uplink:8000-8009 $G1_IP:9000-9009 --proto $proto" \
		kvx map add uplink:8000-8009 "$G1_IP:9000-9009" --proto "$proto"
done
for i in 0 3 9; do
	assert_ok "TCP LAN -> uplink:800$i: echo matches" tcp_client "$NS_LAN" r$i.log "$UP_IP:800$i" --bytes 20000
	assert_contains "TCP uplink:800$i reached guest1:900$i, which saw the LAN host" \
		"hello port=900$i peer=$LAN_IP:" "$(cat "$KVX_TMP/r$i.log")"
	assert_contains "UDP uplink:800$i reached guest1:900$i, which saw $LAN_IP:4060$i" \
		"from=$UP_IP:800$i data=seen=$LAN_IP:4060$i via=$G1_IP:900$i data=range$i" \
		"$(kvx_udp_client "$NS_LAN" --bind "4060$i" --msg "range$i" "$UP_IP:800$i" || true)"
done
assert_fails "TCP uplink:8010 (past the range) is not forwarded" \
	tcp_client "$NS_LAN" r10.log "$UP_IP:8010" --bytes 10
assert_empty "UDP uplink:8010 (past the range) is not forwarded" \
	"$(kvx_udp_client "$NS_LAN" --bind 40610 --msg range10 "$UP_IP:8010" || true)"

# ------------------------------------------------------------------ 4. flush mid-stream
kvx_step "conntrack flush under an 8 MiB TCP stream: picked up mid-stream"
# Tcp counters that a reset moves, "OutRsts EstabResets".
tcp_resets() { echo "$(kvx_snmp "$1" Tcp OutRsts) $(kvx_snmp "$1" Tcp EstabResets)"; }
rst_g=$(tcp_resets "$NS_G1") rst_s=$(tcp_resets "$NS_SRV")
kvx_bg "$KVX_TMP/stream.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$PEER" client "$SRV_IP:7100" \
	--bytes $((8 << 20)) --secs 6
spid=$KVX_LAST_PID
must kvx_wait_file_contains 10 "$KVX_TMP/stream.log" "progress sent=$((2 << 20))"
sport=$(client_port stream.log)
before=$(flow_of "$sport")
assert_contains "the stream's flow before the flush" "ESTABLISHED " "$before"
# Exactly this flow (its external port is unique to it): the flow is gone
# for sure, and what comes back can only be the pick-up.
out=$(kvx conntrack flush --bridge "$BR" --guest "$G1_IP" --proto tcp --ext-port "${before#* }" 2>&1 || true)
assert_contains "conntrack flush: the stream's flow" "kvmxdp: flushed 1 flow on $BR" "$out"
flow_back() { [[ -n $(flow_of "$sport") ]]; }
kvx_wait_for 5 "the stream's flow back in conntrack list" flow_back || true
# Back with the same external port: picked up, not bound anew.  Its state is
# ESTABLISHED, or already closing when a loaded machine let the stream end
# before the list was read (its bytes are checked below).
after=$(flow_of "$sport")
assert_eq "picked up mid-stream: the same external port" "${before#* }" "${after#* }"
case ${after% *} in
ESTABLISHED | FIN_WAIT | TIME_WAIT) state=picked-up ;;
*) state="'${after% *}'" ;;
esac
assert_eq "picked up mid-stream: ESTABLISHED (or closing after it)" picked-up "$state"
# An off-path attacker who knows the connection's addresses and ports
# (the server's, spoofed from the server's side) guesses its sequence
# numbers: 200 RSTs.  The picked-up flow has no window scale, but its RSTs
# are checked against what guest1 acknowledged, give or take guest1's
# largest window at scale 14 (about a tenth of the sequence space for a
# Linux receiver): most are dropped, the few forwarded ones guest1's TCP
# challenges (RFC 5961; no reset below).  Before, every one was taken.
if kill -0 "$spid" 2>/dev/null; then
	w0=$(kvx_counter DROP_TCP_WINDOW)
	out=$(nsx "$NS_SRV" "$KVX_PY" "$(dirname "$0")/tcp_flood.py" "$UP_IP" "${before#* }" R 200 \
		"$SRV_IP" --sport 7100)
	kvx_log "off-path RSTs: $out"
	assert_ge "off-path RSTs at the picked-up flow: most dropped (DROP_TCP_WINDOW)" \
		$(($(kvx_counter DROP_TCP_WINDOW) - w0)) 120
	assert_eq "the picked-up flow lives on (ESTABLISHED)" ESTABLISHED "$(flow_of "$sport" | cut -d' ' -f1)"
else
	kvx_fail "the stream ended before the off-path RSTs (a loaded machine?)"
fi
kvx_wait_for 30 "the stream to finish" bash -c "! kill -0 $spid 2>/dev/null" || true
rc=0
wait "$spid" || rc=$?
kvx_log "stream: $(tr '\n' '|' <"$KVX_TMP/stream.log")"
assert_eq "stream client exit code (echo byte for byte)" 0 "$rc"
# Both FINs went through the picked-up flow (its checks never took the
# endpoints' own segments for off-path ones).
assert_eq "the picked-up flow saw the connection's close (TIME_WAIT)" TIME_WAIT "$(flow_of "$sport" | cut -d' ' -f1)"
sha=$(sed -n 's/^sent=8388608 sha=\([0-9a-f]*\) .*/\1/p' "$KVX_TMP/stream.log")
assert_contains "guest1: all 8 MiB echoed back, sha256 matches" "got=8388608 sha=$sha" "$(cat "$KVX_TMP/stream.log")"
assert_contains "server: all 8 MiB arrived from the same external port, sha256 matches" \
	"done port=7100 peer=$UP_IP:${before#* } bytes=8388608 sha=$sha" "$(cat "$KVX_TMP/srv.log")"
assert_eq "guest1 Tcp OutRsts/EstabResets unchanged" "$rst_g" "$(tcp_resets "$NS_G1")"
assert_eq "server Tcp OutRsts/EstabResets unchanged" "$rst_s" "$(tcp_resets "$NS_SRV")"

kvx_assert_no_netfilter
kvx_finish
