#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/daemon_kill.sh: the datapath outlives its daemon.  SIGKILL the
# daemon in the middle of a ping run: no echo is lost, new flows (curl, UDP)
# still work; then `kvmxdp attach` again resumes over the pinned maps (same
# map ids, counters kept, no duplicate filters).  SIGTERM also leaves the
# datapath running; `kvmxdp detach` without a daemon still removes it all.
# Resuming over a pinned stats map of another layout (an older build) is
# either refused cleanly or repaired without losing the flow state.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: daemon_kill.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file blob 2)
kvx_udp_server "$SRV_IP:5001"

map_ids() { # the ids of the pinned maps, one line
	local m
	for m in kvx_cfg kvx_bind kvx_ct kvx_stats; do
		bpftool -j map show pinned "$(kvx_pin_dir "$BR")/$m" 2>/dev/null |
			"$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null || echo "?"
	done | paste -sd' '
}

kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "curl while the daemon runs" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
ids0=$(map_ids)
kvx_log "pinned map ids: $ids0"
assert_not_contains "all four maps pinned" "?" "$ids0"

kvx_step "SIGKILL the daemon during a ping run"
# 60 echoes 50 ms apart; the daemon dies once the first replies are in,
# with most echoes still to be sent.  -w: ping waits for every reply (up to
# 20 s) instead of giving up on a late one two round trips after its last
# send, so an echo missing is one the datapath lost, and none may be.
kvx_bg "$KVX_TMP/ping.log" ip netns exec "$NS_G1" ping -n -c 60 -i 0.05 -w 20 "$SRV_IP"
ping_pid=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/ping.log" "icmp_seq=5 " || true
old_pid=$KVX_DAEMON_PID
assert_eq "daemon pid is kvmxdp" kvmxdp "$(cat "/proc/$old_pid/comm" 2>/dev/null)"
kill -KILL "$old_pid"
wait "$old_pid" 2>/dev/null || true
KVX_DAEMON_PID=""
before_kill=$(grep -c 'bytes from' "$KVX_TMP/ping.log" || true)
wait "$ping_pid" || true
rx=$(sed -n 's/.* \([0-9]\+\) received.*/\1/p' "$KVX_TMP/ping.log")
assert_le "the kill came mid-run: replies before it" "$before_kill" 40
assert_eq "no echo lost across the kill: replies to 60 echoes" 60 "${rx:-0}"

kvx_step "no daemon: traffic keeps flowing, new flows too"
assert_eq "guest2 ping without daemon" 10 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 10)"
assert_eq "new curl without daemon" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
r=$(kvx_udp_client "$NS_G1" --msg nodaemon --wait 1 "$SRV_IP:5001" || true)
assert_contains "new UDP flow without daemon" "seen=$UP_IP:" "$r"
st=$(kvx_status_json)
assert_eq "status: daemon_pid after SIGKILL" null "$(kvx_json 'i["daemon_pid"]' "$st")"
assert_eq "bpf filter on the bridge still there" 1 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "bpf filter on the uplink still there" 1 "$(kvx_tc_bpf_filters "$UP")"
xo=$(kvx_json 'i["counters"]["XLATE_OUT"]["packets"]' "$st")
assert_ge "counters readable without daemon" "${xo:-0}" 50

kvx_step "attach again: resume over the existing datapath"
kvx_attach_bg || kvx_fatal "cannot resume"
ids1=$(map_ids)
assert_eq "same pinned maps after resume" "$ids0" "$ids1"
assert_eq "one bpf filter on the bridge after resume" 1 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "one bpf filter on the uplink after resume" 1 "$(kvx_tc_bpf_filters "$UP")"
st=$(kvx_status_json)
assert_eq "status: daemon_pid after resume" "$KVX_DAEMON_PID" "$(kvx_json 'i["daemon_pid"]' "$st")"
assert_ge "counters kept across resume" "$(kvx_json 'i["counters"]["XLATE_OUT"]["packets"]' "$st")" "${xo:-1}"
assert_eq "ping after resume" 10 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 10)"
assert_eq "curl after resume" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
clients=$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')
assert_eq "http server saw only the uplink address" "$UP_IP" "$clients"

kvx_step "SIGTERM: the daemon exits cleanly, the datapath stays"
pid=$KVX_DAEMON_PID
kill -TERM "$pid"
rc=0
kvx_wait_for 5 "daemon to exit on SIGTERM" bash -c "! kill -0 $pid 2>/dev/null" || true
wait "$pid" 2>/dev/null || rc=$?
KVX_DAEMON_PID=""
assert_eq "daemon exit code on SIGTERM" 0 "$rc"
assert_eq "ping after SIGTERM" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"
assert_eq "status: daemon_pid after SIGTERM" null "$(kvx_json 'i["daemon_pid"]')"
assert_eq "bpf filter on the bridge after SIGTERM" 1 "$(kvx_tc_bpf_filters "$BR")"

kvx_step "detach with no daemon running"
out=$(kvx detach --bridge "$BR" 2>&1) && rc=0 || rc=$?
assert_eq "detach exit code (output: $out)" 0 "$rc"
assert_eq "no bpf filter on the bridge" 0 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "no bpf filter on the uplink" 0 "$(kvx_tc_bpf_filters "$UP")"
assert_empty "no pins" "$(kvx_pins)"
assert_eq "forwarding restored" 0 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"
assert_eq "ping fails after detach" 0 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 2)"

kvx_step "resume over a pinned stats map of another layout"
# An older build's kvx_stats (fewer reasons).  Acceptable: refused with one
# error naming the map and nothing changed, or resumed with a stats map of
# the right size while the flow state (kvx_ct, kvx_bind) is kept.
kvx_attach_bg || kvx_fatal "cannot attach"
kill -KILL "$KVX_DAEMON_PID"
wait "$KVX_DAEMON_PID" 2>/dev/null || true
KVX_DAEMON_PID=""
pd=$(kvx_pin_dir "$BR")
nreasons=$(grep -c '^[[:space:]]*X([A-Z0-9_]*,' "$KVX_LIBDIR/../bpf/include/kvmxdp/abi.h")
rm "$pd/kvx_stats"
bpftool map create "$pd/kvx_stats" type percpu_array key 4 value 8 entries 7 name kvx_stats
ids_before=$(map_ids)
before=$(kvx_host_state)
log=$KVX_TMP/old.log
kvx_bg "$log" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP"
pid=$KVX_LAST_PID
kvx_wait_for 10 "the attach over an old stats map to answer" bash -c \
	"grep -q '^kvmxdp: ' '$log' || ! kill -0 $pid 2>/dev/null" || true
sleep 0.2
kvx_log "attach over an old stats map: $(tr '\n' '|' <"$log")"
if grep -q '^kvmxdp: attached' "$log"; then
	KVX_DAEMON_PID=$pid
	entries=$(bpftool -j map show pinned "$pd/kvx_stats" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["max_entries"])')
	assert_eq "resumed: kvx_stats re-created with one entry per reason" "$nreasons" "$entries"
	ids_after=$(map_ids)
	assert_eq "resumed: kvx_cfg, kvx_bind, kvx_ct kept" "$(cut -d' ' -f1-3 <<<"$ids_before")" \
		"$(cut -d' ' -f1-3 <<<"$ids_after")"
	assert_eq "resumed: one bpf filter on the bridge" 1 "$(kvx_tc_bpf_filters "$BR")"
	assert_eq "resumed: guest2 ping" 3 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 3)"
	assert_ge "resumed: XLATE_OUT" "$(kvx_counter XLATE_OUT)" 3
else
	rc=0
	wait "$pid" || rc=$?
	assert_ne "refused: exit code" 0 "$rc"
	assert_eq "refused: one 'kvmxdp: error:' line" 1 "$(grep -c '^kvmxdp: error: ' "$log" || true)"
	assert_contains "refused: the error names the map" kvx_stats "$(cat "$log")"
	assert_eq "refused: nothing changed" "$before" "$(kvx_host_state)"
	assert_eq "refused: the datapath still forwards" 3 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 3)"
fi

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
