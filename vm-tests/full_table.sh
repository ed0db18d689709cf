#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/full_table.sh: a full conntrack table.
#  1. attach --ct-size 64 --flow-quota 0 (short --timeouts): an established
#     TCP stream (socat echo) from guest1 runs throughout; guest2 bursts 300
#     new UDP flows: 63 fit, the rest are counted DROP_TABLE_FULL, a new TCP
#     connection of guest2 fails, the stream never misses an echo.
#  2. The daemon stopped (no GC): once the UDP flows expired, new flows get
#     in again because the datapath reclaims expired entries itself; the
#     live stream is never reclaimed.
#  3. NAT port exhaustion: --nat-ports with 4 ports: a fifth guest endpoint
#     towards the server the four talk to is counted DROP_PORTS_EXHAUSTED; the bound ones still reach every
#     destination (endpoint-independent mapping); another guest is refused
#     too (the range is the host's, not per guest).
#  4. Pins of ABI version 1 (kvx_cfg of 80 bytes; its state tables have
#     another layout): attach refuses with one line and the way on, touches
#     no pin; after detach it attaches and traffic flows.  5. A newer,
#     unknown version is refused the same way.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   TCP stream -> server:9000 (echo)
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   UDP bursts, curl
#                                    bridge kb<id> (192.168.122.1/24), host ns
#                                    uplink ku<id> 10.77.0.2/24 <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 (HTTP :8080, TCP echo :9000, UDP :5001 :5002)
#
# Usage: full_table.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
echo "small file" >"$KVX_TMP/www/small"
kvx_bg "$KVX_TMP/echo.log" ip netns exec "$NS_SRV" socat TCP-LISTEN:9000,bind="$SRV_IP",reuseaddr,fork PIPE
kvx_wait_tcp_listen 10 "$NS_SRV" 9000

FLOWGEN=("$KVX_PY" -u "$KVX_LIBDIR/flowgen.py")
stream_n() { awk '$1 == "ok" { n = $2 } END { print n + 0 }' "$KVX_TMP/stream.log"; }
stream_fails() { grep -c '^fail' "$KVX_TMP/stream.log" || true; }
# The stream made progress over the last SECONDS (and never failed).
stream_alive() { # DESC SECONDS
	local n0 n1
	n0=$(stream_n)
	sleep "$2"
	n1=$(stream_n)
	assert_ge "$1: stream echoes go on ($n0 -> $n1)" "$n1" $((n0 + 3))
	assert_eq "$1: stream never failed" 0 "$(stream_fails)"
}
entries() { kvx_json "i['conntrack']['entries']"; }
curl_small() { nsx "$1" curl -sS --fail --max-time "${2:-3}" "http://$SRV_IP:8080/small" 2>/dev/null || true; }

kvx_step "1. attach with a 64-entry conntrack table, no quota"
kvx_attach_bg --ct-size 64 --flow-quota 0 \
	--timeouts udp=8,udp_stream=8,tcp_syn_sent=5,tcp_fin_wait=2,tcp_time_wait=2,tcp_close=2,icmp=5 ||
	kvx_fatal "cannot attach"
assert_eq "conntrack max_entries" 64 "$(kvx_json "i['conntrack']['max_entries']")"
assert_contains "config keeps the timeouts" '"timeouts": "udp=8' "$(cat "$KVX_CFG")"

kvx_bg "$KVX_TMP/stream.log" ip netns exec "$NS_G1" "${FLOWGEN[@]}" stream "$SRV_IP:9000" 90
STREAM_PID=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/stream.log" "ok 5 " || kvx_fatal "stream did not start: $(cat "$KVX_TMP/stream.log")"

full0=$(kvx_counter DROP_TABLE_FULL)
out=$(nsx "$NS_G2" timeout 30 "${FLOWGEN[@]}" burst "$SRV_IP" 20000 20299)
kvx_log "burst: $out"
full1=$(kvx_counter DROP_TABLE_FULL)
assert_ge "burst of 300 new flows: DROP_TABLE_FULL beyond capacity" $((full1 - full0)) 230
assert_le "...but not more than the flows that did not fit" $((full1 - full0)) $((300 - 60))
assert_eq "table full" 64 "$(entries)"
out=$(curl_small "$NS_G2" 2)
assert_eq "guest2's new TCP connection fails while the table is full" "" "$out"
assert_ge "its SYNs are counted drops" "$(kvx_counter DROP_TABLE_FULL)" $((full1 + 1))
stream_alive "table full" 1

kvx_step "2. daemon stopped: expired entries reclaimed by the datapath"
kvx_daemon_stop
# UDP flows expire 8 s after the burst; nothing sweeps them now.
assert_eq "still full right after the stop" 64 "$(entries)"
sleep 8
stream_alive "daemon stopped" 1
assert_eq "no GC ran: the expired flows are still there" 64 "$(entries)"
assert_eq "guest2's new connection works again (reclaimed)" "small file" "$(curl_small "$NS_G2" 5)"
assert_eq "guest1's new connection too" "small file" "$(curl_small "$NS_G1" 5)"
full2=$(kvx_counter DROP_TABLE_FULL)
out=$(nsx "$NS_G2" timeout 30 "${FLOWGEN[@]}" burst "$SRV_IP" 21000 21029)
kvx_log "second burst: $out"
assert_eq "30 more new flows fit in the reclaimed room" "$full2" "$(kvx_counter DROP_TABLE_FULL)"
assert_le "table never above its size" "$(entries)" 64
stream_alive "after reclaim" 1
kvx_kill_pid "$STREAM_PID"
assert_eq "the live stream was never reclaimed (no failed echo)" 0 "$(stream_fails)"
assert_ge "stream echoes in all" "$(stream_n)" 100

kvx_step "3. NAT port exhaustion: --nat-ports with 4 ports"
# --guest-ports 0: guest1 alone exhausts the pool (its limit would refuse
# its fifth endpoint first, as DROP_GUEST_PORTS).
kvx detach --bridge "$BR" >/dev/null 2>&1 || kvx_fatal "detach"
# Default UDP timeouts: the four flows to server:5001 must outlive the
# fifth endpoint's try (an expired one would leave its port free towards
# server:5001, and port overlapping would rightly share it).
kvx_attach_bg --nat-ports 61000-61003 --flow-quota 0 --guest-ports 0 ||
	kvx_fatal "cannot attach with 4 NAT ports"
kvx_udp_server "$SRV_IP:5001" "$SRV_IP:5002"
ports=""
for sp in 40001 40002 40003 40004; do
	out=$(kvx_udp_client "$NS_G1" --bind "$sp" --msg a --wait 1 "$SRV_IP:5001" || true)
	p=$(sed -n "s/.*seen=$UP_IP:\([0-9]*\).*/\1/p" <<<"$out" | head -1)
	ports+="$p "
done
assert_eq "four guest endpoints get the four ports" "61000 61001 61002 61003" "$(tr ' ' '\n' <<<"$ports" | grep . | sort -n | paste -sd' ')"
ex0=$(kvx_counter DROP_PORTS_EXHAUSTED)
out=$(kvx_udp_client "$NS_G1" --bind 40005 --msg a --wait 1 "$SRV_IP:5001" || true)
assert_not_contains "a fifth endpoint gets no port" "seen=" "$out"
assert_ge "counted DROP_PORTS_EXHAUSTED" "$(kvx_counter DROP_PORTS_EXHAUSTED)" $((ex0 + 1))
out=$(kvx_udp_client "$NS_G1" --bind 40001 --msg b --wait 1 "$SRV_IP:5002" || true)
assert_contains "a bound endpoint reaches another destination (same port, EIM)" "seen=$UP_IP:" "$out"
out=$(kvx_udp_client "$NS_G2" --bind 40006 --msg a --wait 1 "$SRV_IP:5001" || true)
assert_not_contains "another guest gets no port either" "seen=" "$out"

ABI=$(sed -n 's/^#define KVX_ABI_VERSION \([0-9]*\)$/\1/p' "$(dirname "$0")/../bpf/include/kvmxdp/abi.h")
SINCE=$(sed -n 's/^#define KVX_ABI_TABLES_SINCE \([0-9]*\)$/\1/p' "$(dirname "$0")/../bpf/include/kvmxdp/abi.h")
[[ -n $ABI && -n $SINCE ]] || kvx_fatal "cannot read the ABI version from abi.h"
pd=$(kvx_pin_dir "$BR")
# refused_over_cfg VERSION SIZE WHY: a kvx_cfg of that version and size in
# place of the real one: attach refuses with one line, touches no pin.
refused_over_cfg() {
	local ver=$1 size=$2 why=$3 pins_before
	out=""
	kvx_daemon_stop
	rm -f "$pd/kvx_cfg"
	bpftool map create "$pd/kvx_cfg" type array key 4 value "$size" entries 1 name kvx_cfg
	# shellcheck disable=SC2046
	bpftool map update pinned "$pd/kvx_cfg" key 0 0 0 0 value "$ver" 0 0 0 $(printf '0 %.0s' $(seq $((size - 4))))
	pins_before=$(kvx_pins)
	out=$(timeout 20 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP" 2>&1) &&
		kvx_fail "$why: attach over ABI version $ver pins succeeded"
	assert_eq "$why: one line" 1 "$(wc -l <<<"$out")"
	assert_contains "$why: the error names both versions" \
		"kvmxdp: error: pinned $pd/kvx_cfg is of ABI version $ver, this kvmxdp uses $ABI" "$out"
	assert_eq "$why: pins unchanged" "$pins_before" "$(kvx_pins)"
}

kvx_step "4. pins of ABI version 1 (an older kvmxdp: tables of another layout) are refused until detach"
# Version 1's kvx_cfg: 80 bytes.  Its tables differ from this version's
# (KVX_ABI_TABLES_SINCE), so nothing of them may be read.
((SINCE > 1)) || kvx_fatal "this test expects version 1's tables to be incompatible (KVX_ABI_TABLES_SINCE=$SINCE)"
refused_over_cfg 1 80 "ABI 1"
assert_contains "ABI 1: the error says how to go on" "run 'kvmxdp detach' first" "$out"
cli_detach() { timeout 20 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" detach --bridge "$BR"; }
assert_ok "detach removes the old pins" cli_detach
kvx_attach_bg --nat-ports 61000-61003 --flow-quota 0 --guest-ports 0 --timeouts udp=3,udp_stream=3 ||
	kvx_fatal "cannot attach after detaching the old pins"
out=$(kvx_udp_client "$NS_G1" --bind 40002 --msg d --wait 1 "$SRV_IP:5002" || true)
assert_contains "a flow after the upgrade" "seen=$UP_IP:" "$out"

kvx_step "5. pins of an unknown (newer) ABI version are refused, nothing changed"
refused_over_cfg $((ABI + 1)) "$(bpftool -j map show pinned "$pd/kvx_cfg" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["bytes_value"])')" "ABI $((ABI + 1))"

kvx_finish
