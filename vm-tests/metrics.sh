#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/metrics.sh: seeing inside.  Traffic of known size from guest1
# (ping -c N -s S, a download of a file of known size), then:
#  - the daemon's Prometheus endpoint (attach --metrics) scraped with curl
#    inside the host namespace: guest1's packets and bytes each way equal
#    what was sent (ping: exactly; the download: its size plus headers),
#    guest1's info series carries its libvirt VM's name (a running domain's
#    status file with its MAC), its DHCP lease's hostname and its address
#    (the counters only its MAC), guest2 (silent) has no series, every verdict counter lies between two `status --json` taken
#    around the scrape, table capacity is status's, GC runs grow between
#    two scrapes, an uplink address change is counted; a second running
#    domain with guest1's MAC leaves its vm label empty.  The exposition is
#    parsed by Prometheus' own client library (python3-prometheus-client);
#  - `kvmxdp top --json`: guest1's rates over one interval while it pings;
#  - `kvmxdp top` in tmux: the screen shows guest1's row with nonzero rates,
#    q ends it; guest2's lease written while it runs shows up (leases read
#    anew); in a 5-line terminal under an interactive bash the header stays
#    and one line counts the guests that do not fit; Ctrl-Z gives the shell
#    its terminal back canonical with echo, fg resumes, q quits;
#  - a --metrics that cannot listen (bad value, port taken): one error line,
#    nothing attached.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     uplink ku<id> 10.77.0.2/24 <- kvmxdp
#                                                     /metrics on 127.0.0.1:9810 (host ns)
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 (HTTP :8080)
#
# Usage: metrics.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools tmux
kvx_topology_up
kvx_http_server
size=$((1024 * 1024))
sha=$(kvx_random_file one "$((size / 1024 / 1024))")
LISTEN=127.0.0.1:9810
G1_MAC=$(kvx_if_mac "$NS_G1" "$G1_IF")
# libvirt's lease status file: guest1's lease names it.
cat >"$KVX_TMP/leases.status" <<JSON
[{"ip-address": "$G1_IP", "mac-address": "$G1_MAC", "hostname": "vm-one", "expiry-time": 0}]
JSON
# libvirt's status of the running domain "web-one", guest1's MAC on its
# interface: the VM's name (the lease's hostname is the guest's choice;
# a second domain claiming the MAC names none).
export KVMXDP_LIBVIRT_ROOT=$KVX_TMP/libvirt
mkdir -p "$KVMXDP_LIBVIRT_ROOT/run/libvirt/qemu"
cat >"$KVMXDP_LIBVIRT_ROOT/run/libvirt/qemu/web-one.xml" <<XML
<domstatus state='running'>
<domain type='kvm' id='3'><name>web-one</name><devices>
<interface type='bridge'><mac address='$G1_MAC'/><source bridge='$BR'/></interface>
</devices></domain>
</domstatus>
XML

scrape() { nsx "$NS_HOST" curl -sS --fail --max-time 5 "http://$LISTEN/metrics" 2>>"$KVX_TMP/curl.err" || true; }
# metric TEXT NAME LABEL=VALUE...: the sum of NAME's samples whose labels
# include every LABEL=VALUE ('' when none), from the exposition text as
# Prometheus' own client library parses it (a malformed exposition fails
# the parse, and the test).
metric() {
	local text=$1
	shift
	"$KVX_PY" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
name, want = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
total, seen = 0.0, False
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in want.items()):
            total += s.value; seen = True
print(int(total) if seen and total == int(total) else (total if seen else ""))
' "$@" <<<"$text"
}
# labels_of TEXT NAME...: the label names the samples of NAME... carry.
labels_of() {
	local text=$1
	shift
	"$KVX_PY" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
names = set(sys.argv[1:])
print(" ".join(sorted({l for fam in text_string_to_metric_families(sys.stdin.read())
                       for s in fam.samples if s.name in names for l in s.labels})))
' "$@" <<<"$text"
}
g1() { metric "$1" "$2" mac="$G1_MAC" "${@:3}"; }
# ping_sized NS DST COUNT SIZE: the number of replies.
ping_sized() {
	nsx "$1" ping -n -q -c "$3" -s "$4" -i 0.05 -W 1 -w 5 "$2" 2>/dev/null |
		sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true
}

kvx_step "a --metrics that cannot listen: one line, nothing attached"
for bad in nope 127.0.0.1 127.0.0.1:0 127.0.0.1:65536 ::1:9810 300.1.1.1:80; do
	rc=0
	out=$(kvx attach --bridge "$BR" --uplink "$UP" --metrics "$bad" 2>&1) || rc=$?
	assert_ne "--metrics $bad refused" 0 "$rc"
	assert_contains "--metrics $bad: the error names it" "invalid --metrics '$bad'" "$out"
	assert_eq "--metrics $bad: one line" 1 "$(grep -c . <<<"$out")"
done
kvx_bg "$KVX_TMP/squat.log" ip netns exec "$NS_HOST" socat TCP-LISTEN:9810,bind=127.0.0.1,reuseaddr -
kvx_wait_tcp_listen 10 "$NS_HOST" 9810
squat=$KVX_LAST_PID
rc=0
out=$(kvx attach --bridge "$BR" --uplink "$UP" --metrics "$LISTEN" 2>&1) || rc=$?
assert_ne "--metrics on a taken port refused" 0 "$rc"
assert_contains "the error names the address and why" "--metrics $LISTEN" "$out"
assert_contains "the error says why" "Address already in use" "$out"
assert_eq "one line" 1 "$(grep -c . <<<"$out")"
assert_eq "nothing pinned" "" "$(kvx_pins)"
assert_eq "no clsact on the bridge" 0 "$(tc -n "$NS_HOST" qdisc show dev "$BR" | grep -c clsact || true)"
kvx_kill_pid "$squat"

kvx_step "attach --metrics $LISTEN"
must kvx_attach_bg --metrics "$LISTEN" --dhcp-leases "$KVX_TMP/leases.status"
assert_contains "config records metrics" "\"metrics\": \"$LISTEN\"" "$(cat "$KVX_CFG")"
assert_not_contains "loopback: no exposure warning" "reachable from other hosts" "$(cat "$KVX_DAEMON_LOG")"
kvx_wait_for 10 "/metrics answers" bash -c "[[ -n \$(ip netns exec $NS_HOST curl -sS --fail --max-time 2 http://$LISTEN/metrics) ]]"
m0=$(scrape)
assert_contains "help and type lines" "# TYPE kvmxdp_packets_total counter" "$m0"

kvx_step "ping -c 10 -s 100: exactly 10 frames of 142 bytes each way"
kvx_ping "$NS_G1" "$SRV_IP" 1 # guest1's address gets its owner and lease slot
before=$(scrape)
assert_eq "ping: 10 of 10 answered" 10 "$(ping_sized "$NS_G1" "$SRV_IP" 10 100)"
after=$(scrape)
for d in out in; do
	assert_eq "guest1 packets $d" 10 "$(($(g1 "$after" kvmxdp_guest_packets_total direction=$d) - $(g1 "$before" kvmxdp_guest_packets_total direction=$d)))"
	# Ethernet 14 + IP 20 + ICMP 8 + 100
	assert_eq "guest1 bytes $d" 1420 "$(($(g1 "$after" kvmxdp_guest_bytes_total direction=$d) - $(g1 "$before" kvmxdp_guest_bytes_total direction=$d)))"
done
# The counters are labelled by what owns them (the MAC) only: a new
# address or lease name must not start new series.  Those are on the
# guest's one info series.
assert_eq "guest1's info: its VM, its lease's hostname and address" 1 "$(g1 "$after" kvmxdp_guest_info vm=web-one dhcp_hostname=vm-one addresses="$G1_IP")"
assert_eq "guest counters carry bridge, mac, direction/class only" "bridge class direction mac" \
	"$(labels_of "$after" kvmxdp_guest_packets_total kvmxdp_guest_bytes_total kvmxdp_guest_drops_total kvmxdp_guest_flows)"
assert_ge "guest1 has a flow (the ping's)" "$(g1 "$after" kvmxdp_guest_flows direction=out)" 1

kvx_step "download of ${size} bytes"
before=$(scrape)
rtx0=$(kvx_snmp "$NS_SRV" Tcp RetransSegs)
assert_eq "download intact" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/one")"
rtx=$(($(kvx_snmp "$NS_SRV" Tcp RetransSegs) - rtx0))
after=$(scrape)
bin=$(($(g1 "$after" kvmxdp_guest_bytes_total direction=in) - $(g1 "$before" kvmxdp_guest_bytes_total direction=in)))
assert_ge "guest1 bytes in >= the file" "$bin" "$size"
# A busy 2-core machine makes the server retransmit now and then (its
# timers fire while the receiver waits for a CPU): every segment it sent
# again crossed the guest's counters again, up to a full frame each.
assert_le "guest1 bytes in <= the file + 10% headers + $rtx segment(s) sent again" "$bin" $((size * 11 / 10 + rtx * 1514))
assert_ge "guest1 packets out (requests, ACKs)" "$(($(g1 "$after" kvmxdp_guest_packets_total direction=out) - $(g1 "$before" kvmxdp_guest_packets_total direction=out)))" 3
assert_eq "guest1 drops" 0 "$(g1 "$after" kvmxdp_guest_drops_total)"
assert_eq "guest2 (silent) has no row" "" "$(metric "$after" kvmxdp_guest_info addresses="$G2_IP")"
# Only guest1 sent: its counters are the translation counters (TC's and,
# where --mode auto put XDP on a port, XDP's).
xlate() { echo $(($(metric "$1" kvmxdp_bytes_total reason="$2") + $(metric "$1" kvmxdp_bytes_total reason="XDP_$2"))); }
assert_eq "guest1 bytes out = XLATE_OUT bytes" "$(xlate "$after" XLATE_OUT)" "$(g1 "$after" kvmxdp_guest_bytes_total direction=out)"
assert_eq "guest1 bytes in = XLATE_IN bytes" "$(xlate "$after" XLATE_IN)" "$(g1 "$after" kvmxdp_guest_bytes_total direction=in)"

kvx_step "every verdict counter between two status --json around a scrape"
s1=$(kvx_status_json)
m=$(scrape)
s2=$(kvx_status_json)
printf '%s\n' "$m" >"$KVX_TMP/scrape.txt"
bad=$("$KVX_PY" - "$s1" "$s2" "$BR" "$KVX_TMP/scrape.txt" <<'PY'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
s1, s2, br, scrape = sys.argv[1:5]
def counters(s):
    return next(i for i in json.loads(s)["instances"] if i["bridge"] == br)["counters"]
c1, c2 = counters(s1), counters(s2)
m = {}
for fam in text_string_to_metric_families(open(scrape).read()):
    for s in fam.samples:
        if s.name in ("kvmxdp_packets_total", "kvmxdp_bytes_total") and "reason" in s.labels:
            m[(s.labels["reason"], s.name.split("_")[1])] = s.value
bad = [f"{k}: {c1[k[0]][k[1]]} <= {v} <= {c2[k[0]][k[1]]}?" for k, v in m.items()
       if not c1[k[0]][k[1]] <= v <= c2[k[0]][k[1]]]
missing = sorted(set(c1) - {k[0] for k in m})
print("; ".join(bad + [f"no metric for {x}" for x in missing]))
PY
)
assert_eq "metrics = status counters" "" "$bad"
assert_ge "XLATE_OUT counted" "$(metric "$m" kvmxdp_packets_total reason=XLATE_OUT)" 20
assert_eq "conntrack capacity = status's" "$(kvx_json "i['conntrack']['max_entries']" "$s2")" "$(metric "$m" kvmxdp_table_capacity table=conntrack)"
assert_ge "conntrack entries" "$(metric "$m" kvmxdp_table_entries table=conntrack)" 1
for t in conntrack6:kvx_ct6 bindings6:kvx_bind6; do
	assert_eq "${t%%:*} capacity = status's ${t#*:}" "$(kvx_json "i['maps']['${t#*:}']['max_entries']" "$s2")" \
		"$(metric "$m" kvmxdp_table_capacity "table=${t%%:*}")"
done

kvx_step "top --json: rates over one interval while guest1 pings"
kvx_bg "$KVX_TMP/ping.log" ip netns exec "$NS_G1" ping -n -i 0.05 -s 200 "$SRV_IP"
pinger=$KVX_LAST_PID
j=$(kvx top --bridge "$BR" --json --interval 1 2>&1 || true)
row() { kvx_top_guest "$j" "$G1_MAC" "$1"; }
assert_eq "top --json: guest1's VM" "web-one" "$(row 'r["vm"]')"
assert_eq "top --json: guest1's DHCP hostname" "vm-one" "$(row 'r["dhcp_hostname"]')"
assert_eq "top --json: guest1's address" "$G1_IP" "$(row 'r["addrs"][0]')"
assert_ge "top --json: guest1 pps out (20/s sent)" "$(row 'int(r["pps_out"])')" 10
assert_ge "top --json: guest1 pps in" "$(row 'int(r["pps_in"])')" 10
# 20 frames of 242 bytes a second: ~38 kbit/s each way.
assert_ge "top --json: guest1 bps in" "$(row 'int(r["bps_in"])')" 20000
assert_le "top --json: guest1 bps in" "$(row 'int(r["bps_in"])')" 80000
assert_ge "top --json: interval" "$(row 'int(d["interval_s"] * 10)')" 10

kvx_step "top in tmux: guest1's row, q quits"
TMUX_SOCK=kvx$KVX_ID
kvx_on_cleanup "tmux -L $TMUX_SOCK kill-server"
tmux -L "$TMUX_SOCK" new-session -d -x 160 -y 30 -s top \
	"ip netns exec $NS_HOST $KVMXDP ${KVX_OPTS[*]} top --bridge $BR --interval 0.5; echo TOP-EXITED \$?; sleep 30"
screen_has_rates() {
	local s
	s=$(tmux -L "$TMUX_SOCK" capture-pane -p -t top)
	grep "^$G1_IP " <<<"$s" | awk '{exit !($4 != "0" && $5 != "0" && $6 != "0b" && $7 != "0b")}'
}
kvx_wait_for 10 "top shows guest1 with nonzero rates" screen_has_rates
screen=$(tmux -L "$TMUX_SOCK" capture-pane -p -t top)
kvx_log "top's screen:"$'\n'"$screen"
assert_contains "top: header" "PPS_OUT" "$screen"
assert_contains "top: guest1's row" "$G1_IP" "$screen"
assert_contains "top: guest1's VM" "web-one" "$screen"
# guest2 starts talking and takes a lease while top runs: top reads the
# leases anew (its DHCP hostname, in parentheses: no VM names it).
G2_MAC=$(kvx_if_mac "$NS_G2" "$G2_IF")
kvx_bg "$KVX_TMP/ping2.log" ip netns exec "$NS_G2" ping -n -i 0.1 "$SRV_IP"
pinger2=$KVX_LAST_PID
cat >"$KVX_TMP/leases.new" <<JSON
[{"ip-address": "$G1_IP", "mac-address": "$G1_MAC", "hostname": "vm-one", "expiry-time": 0},
 {"ip-address": "$G2_IP", "mac-address": "$G2_MAC", "hostname": "vm-two", "expiry-time": 0}]
JSON
mv "$KVX_TMP/leases.new" "$KVX_TMP/leases.status"
kvx_wait_for 10 "top shows guest2's new lease" bash -c "tmux -L $TMUX_SOCK capture-pane -p -t top | grep -q '^$G2_IP .*(vm-two)'" ||
	kvx_log "top's screen: $(tmux -L "$TMUX_SOCK" capture-pane -p -t top)"
tmux -L "$TMUX_SOCK" send-keys -t top q
kvx_wait_for 5 "top exits on q" bash -c "tmux -L $TMUX_SOCK capture-pane -p -t top | grep -q 'TOP-EXITED 0'"

kvx_step "top in a 5-line terminal under an interactive shell: clipped; Ctrl-Z gives the shell its terminal back"
tmux -L "$TMUX_SOCK" new-session -d -x 160 -y 5 -s small "bash --norc --noprofile -i"
tmux -L "$TMUX_SOCK" send-keys -t small "ip netns exec $NS_HOST $KVMXDP ${KVX_OPTS[*]} top --bridge $BR --interval 0.5" Enter
kvx_wait_for 10 "top counts the guests that do not fit" bash -c "tmux -L $TMUX_SOCK capture-pane -p -t small | grep -q 'more guest(s)'" ||
	kvx_log "top's screen: $(tmux -L "$TMUX_SOCK" capture-pane -p -t small)"
screen=$(tmux -L "$TMUX_SOCK" capture-pane -p -t small)
kvx_log "top's 5-line screen:"$'\n'"$screen"
assert_contains "the title stays on the first line" "kvmxdp top - bridge $BR" "$(head -1 <<<"$screen")"
assert_contains "the column header stays" "PPS_OUT" "$screen"
assert_contains "one line for the guests that do not fit" "... and 2 more guest(s)" "$screen"
tmux -L "$TMUX_SOCK" send-keys -t small C-z
sleep 1
tmux -L "$TMUX_SOCK" send-keys -t small clear Enter "stty -a | tr ' ' '\\n' | grep -x -e -icanon -e icanon -e echo -e -echo | tr '\\n' ' '; echo STTY" Enter
kvx_wait_for 5 "stty ran" bash -c "tmux -L $TMUX_SOCK capture-pane -p -t small | grep -q '^-*icanon -*echo STTY$'"
screen=$(tmux -L "$TMUX_SOCK" capture-pane -p -t small)
kvx_log "after Ctrl-Z:"$'\n'"$screen"
assert_contains "after Ctrl-Z the terminal is canonical with echo" "icanon echo STTY" "$screen"
tmux -L "$TMUX_SOCK" send-keys -t small clear Enter fg Enter
# (bash gives a stopped job's terminal back in its own mode: the job must
# make it raw again, else a bare q waits for Enter.)
fg_cmd() { tmux -L "$TMUX_SOCK" display -p -t small '#{pane_current_command}'; }
kvx_wait_for 5 "top in the foreground" bash -c "[[ \$(tmux -L $TMUX_SOCK display -p -t small '#{pane_current_command}') == kvmxdp ]]"
tmux -L "$TMUX_SOCK" send-keys -t small q
kvx_wait_for 5 "top exits on a bare q after fg (raw again)" bash -c "[[ \$(tmux -L $TMUX_SOCK display -p -t small '#{pane_current_command}') == bash ]]" ||
	kvx_log "foreground: $(fg_cmd); screen: $(tmux -L "$TMUX_SOCK" capture-pane -p -t small)"
tmux -L "$TMUX_SOCK" send-keys -t small "echo TOP2-EXITED \$?" Enter
kvx_wait_for 5 "top exited 0" bash -c "tmux -L $TMUX_SOCK capture-pane -p -t small | grep -q 'TOP2-EXITED 0'"
tmux -L "$TMUX_SOCK" send-keys -t small "stty -a | tr ' ' '\\n' | grep -x -e -icanon -e icanon -e echo -e -echo | tr '\\n' ' '; echo STTY2" Enter
kvx_wait_for 5 "stty ran" bash -c "tmux -L $TMUX_SOCK capture-pane -p -t small | grep -q '^-*icanon -*echo STTY2$'"
assert_contains "after q the terminal is canonical with echo" "icanon echo STTY2" "$(tmux -L "$TMUX_SOCK" capture-pane -p -t small)"
kvx_kill_pid "$pinger2"
kvx_kill_pid "$pinger"

kvx_step "a second running domain with guest1's MAC: guest1's vm label names neither"
sed 's|web-one|web-two|' "$KVMXDP_LIBVIRT_ROOT/run/libvirt/qemu/web-one.xml" >"$KVMXDP_LIBVIRT_ROOT/run/libvirt/qemu/web-two.xml"
kvx_ping "$NS_G1" "$SRV_IP" 1 # still here (seen)
m=$(scrape)
assert_eq "guest1's info: vm=\"\" (unknown)" 1 "$(g1 "$m" kvmxdp_guest_info vm= addresses="$G1_IP")"
assert_eq "no series names web-two" "" "$(g1 "$m" kvmxdp_guest_info vm=web-two)"
rm "$KVMXDP_LIBVIRT_ROOT/run/libvirt/qemu/web-two.xml"
assert_eq "web-two gone: web-one again" 1 "$(g1 "$(scrape)" kvmxdp_guest_info vm=web-one)"

kvx_step "the daemon's own: GC runs, uplink address changes"
# GC runs counted: the counter grows between two scrapes (the sweeps run
# every few seconds).
gc_runs() { metric "$(scrape)" kvmxdp_gc_runs_total; }
gc_above() { local n; n=$(gc_runs); [[ -n $n ]] && ((n > $1)); }
kvx_wait_for 15 "a GC sweep" gc_above 0
gc1=$(gc_runs)
kvx_wait_for 15 "another GC sweep" gc_above "$gc1"
m=$(scrape)
assert_ge "gc runs grew between two scrapes ($gc1 first)" "$(metric "$m" kvmxdp_gc_runs_total)" $((gc1 + 1))
assert_eq "no uplink address change yet" 0 "$(metric "$m" kvmxdp_uplink_address_changes_total)"
ip -n "$NS_HOST" addr add 10.77.0.5/24 dev "$UP"
ip -n "$NS_HOST" addr del "$UP_IP/24" dev "$UP"
changes_are() { [[ $(metric "$(scrape)" kvmxdp_uplink_address_changes_total) == "$1" ]]; }
kvx_wait_for 10 "the change counted" changes_are 1

kvx_step "the daemon stopped: the endpoint is gone"
kvx_daemon_stop
assert_eq "nothing listens after the daemon stopped" "" "$(scrape)"

kvx_step "a restart finds the port taken: the daemon runs and retries until it is free"
# A local user's socket on the port (SO_REUSEADDR: the scrapes' TIME_WAIT
# is no obstacle to it); the restart is the unit's (the config's
# --metrics, no pre-check on the command line).
kvx_bg "$KVX_TMP/holder.log" ip netns exec "$NS_HOST" "$KVX_PY" -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9810)); s.listen(1); time.sleep(600)'
holder=$KVX_LAST_PID
kvx_wait_tcp_listen 10 "$NS_HOST" 9810
must kvx_attach_bg --dhcp-leases "$KVX_TMP/leases.status"
sleep 2
assert_ok "the daemon still runs" kill -0 "$KVX_DAEMON_PID"
assert_contains "it said why" "metrics: metrics endpoint: cannot listen on $LISTEN" "$(cat "$KVX_DAEMON_LOG")"
assert_ok "the uplink is still followed" kvx status
kvx_kill_pid "$holder"
kvx_wait_for 15 "/metrics answers once the port is free" bash -c "[[ -n \$(ip netns exec $NS_HOST curl -sS --fail --max-time 2 http://$LISTEN/metrics) ]]"
assert_contains "and said so" "metrics: http://$LISTEN/metrics (after" "$(cat "$KVX_DAEMON_LOG")"
gc1=$(gc_runs)
assert_ok "counters served" test -n "$gc1"
kvx_wait_for 15 "and GC counted again" gc_above "$gc1"
kvx_daemon_stop

kvx_finish
