#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/lock_hostile.sh: a local user who locks everything kvmxdp keeps
# on disk stalls nothing.  flock(2) needs no more than an open fd, so an
# unprivileged process ("nobody", via setpriv) walks the config and run
# directories (made 0755 here, as /etc and /run are) every 50 ms and holds
# LOCK_EX on every file and directory it can open, for the whole test.
# Meanwhile: attach, `map add`, an uplink deleted and re-created under the
# daemon (which must re-attach and record the clsact it made in the config,
# with the config lock, without ever waiting for it), the daemon's GC,
# detach.  Then: a stale pid file naming an unrelated live process (a
# `sleep`) is not signalled by detach; a pid file deleted under a running
# daemon: a second attach is refused and detach still stops the first one.
# Then, a lock really held (by root, with flock(1)): `map add --lock-wait 2`
# gives up with one error line naming the lock and its holder, `map add`
# and `attach` waiting for it end cleanly on SIGTERM/SIGINT, nothing done.
# Then the same lock held by root while the uplink is re-created: the
# daemon re-attaches and sweeps without it, and records the clsact it made
# once the lock is free.
# Last, a pid file the user could open (left 0644 by an older kvmxdp, or
# the user's own) and locks: detach is not blocked by it.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                     (another tool's clsact on ku<id> first)
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
#   $KVX_TMP (0755): kvmxdp.json(.lock), run/ (pid files), bpffs/kvmxdp/<bridge>/ (pins)
#   "nobody": LOCK_EX on whatever of it it can open, re-walked every 50 ms
#
# Usage: lock_hostile.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools setpriv flock
kvx_topology_up
kvx_udp_server "$SRV_IP:5001"

EXT1=10.77.0.50
EXT2=10.77.0.51
LOCK=$KVX_CFG.lock
TIMEOUTS=udp=2,udp_stream=2,icmp=2
# /etc and /run are 0755: other users reach what kvmxdp keeps there.
chmod 0755 "$KVX_TMP" "$KVX_TMP/run"

# ---------------------------------------------------------------- the hostile user
cat >"$KVX_TMP/hostile.py" <<'EOF'
import fcntl, os, sys, time
# Locks are per file (inode): one held through a temporary name stays held
# under the name it is renamed to.
root, fds, held, named, n = sys.argv[1], {}, set(), set(), 0
while True:
    n += 1
    for d, dirs, files in os.walk(root):
        # kvmxdp mounts a cgroup2 for a moment in the run directory: a walk
        # through every cgroup would only slow this one down.
        dirs[:] = [x for x in dirs if not x.startswith("cgroup2.")]
        for p in [d] + [os.path.join(d, f) for f in files]:
            try:
                st = os.lstat(p)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in held:
                try:
                    if key not in fds:
                        fds[key] = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    fcntl.flock(fds[key], fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                held.add(key)
            if (p, key) not in named:
                named.add((p, key))
                print("held", p, flush=True)
    print("round", n, flush=True)
    time.sleep(0.05)
EOF
kvx_bg "$KVX_TMP/hostile.log" setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$KVX_PY" -u "$KVX_TMP/hostile.py" "$KVX_TMP"
HOSTILE=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/hostile.log" round || kvx_fatal "the hostile user does not run"

hostile_round() { awk '$1 == "round" { n = $2 } END { print n + 0 }' "$KVX_TMP/hostile.log"; }
hostile_past() { (($(hostile_round) >= $1)); }
# Two whole walks of the hostile user after now: it has tried everything there is.
hostile_sync() {
	kvx_wait_for 10 "two more walks of the hostile user" hostile_past $(($(hostile_round) + 2))
}
gone() { ! kill -0 "$1" 2>/dev/null; }
alive() { if kill -0 "$1" 2>/dev/null; then echo yes; else echo no; fi; }
# What it holds of kvmxdp's: nothing, ever.  (It does hold what it can open.)
assert_hostile_holds_nothing() { # WHEN
	hostile_sync
	assert_eq "$1: the hostile user still runs" yes "$(alive "$HOSTILE")"
	assert_eq "$1: it holds none of kvmxdp's locks (config lock, pid files, pin directories)" "" \
		"$(grep -E "^held ($LOCK|$KVX_TMP/run/.*\.pid|$BPFFS/kvmxdp)" "$KVX_TMP/hostile.log" | sort -u | paste -sd' ' || true)"
}

cfg_clsact_uplink() {
	"$KVX_PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print([i["clsact_created"]["uplink"] for i in d["instances"] if i["bridge"] == sys.argv[2]][0])' \
		"$KVX_CFG" "$BR" 2>/dev/null || true
}

# cli_ok DESC TIMEOUT kvmxdp-args...: must succeed within TIMEOUT seconds.
cli_ok() {
	local desc=$1 t=$2 rc=0 out; shift 2
	out=$(timeout "$t" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" "$@" 2>&1) || rc=$?
	assert_eq "$desc: exit 0 (124: it hung on a lock): $out" 0 "$rc"
}
# detach_ok DESC [DAEMON]: detach works, the daemon exits, no pins are left.
detach_ok() {
	local desc=$1 pid=${2:-}
	cli_ok "$desc: detach" 30 detach --bridge "$BR"
	if [[ -n $pid ]]; then
		if kvx_wait_for 5 "$desc: detach stops the daemon" gone "$pid"; then
			kvx_pass "$desc: the daemon stopped"
		else
			kill -KILL "$pid"
		fi
		wait "$pid" 2>/dev/null || true
	fi
	KVX_DAEMON_PID=""
	assert_eq "$desc: no pins left" "" "$(kvx_pins)"
}

udp_from() { # NS MSG: one new UDP flow to the server; prints what the server saw
	kvx_udp_client "$1" --msg "$2" --wait 0.5 "$SRV_IP:5001" 2>/dev/null || true
}

# ---------------------------------------------------------------- under the hostile user
kvx_step "attach, map add, uplink re-created, GC, detach: the hostile user holds what it can"
# Another tool's clsact on the uplink: attach leaves it unrecorded, so a
# re-created uplink gets a clsact of the daemon's, which it must record
# in the config (under the config lock).
tc -n "$NS_HOST" qdisc add dev "$UP" clsact
kvx_attach_bg --timeouts "$TIMEOUTS" || kvx_fatal "cannot attach"
DAEMON=$KVX_DAEMON_PID
assert_eq "config: the uplink's clsact is not kvmxdp's" False "$(cfg_clsact_uplink)"
hostile_sync
assert_contains "the hostile user locks what it can open (the 0755 directory of the config)" \
	"held $KVX_TMP" "$(grep "^held $KVX_TMP\$" "$KVX_TMP/hostile.log" || true)"
assert_eq "config: 0600, root's (the hostile user cannot open it)" "600 0" "$(stat -c '%a %u' "$KVX_CFG")"
assert_eq "config lock file: 0600, root's" "600 0" "$(stat -c '%a %u' "$LOCK")"
assert_eq "pid file: 0600 (in $KVX_TMP/run)" 600 "$(stat -c '%a' "$KVX_TMP/run/$BR"-*.pid)"
assert_hostile_holds_nothing "after attach"

cli_ok "map add $EXT1 $G1_IP" 20 map add "$EXT1" "$G1_IP"
assert_eq "LAN pings $EXT1: guest1 answers" 3 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"

# The uplink deleted and made again (a WiFi driver reload): same name,
# address and default route, new ifindex, no clsact.  The router keeps its
# MAC (a mapping resumes only behind the gateway MAC it was made behind).
recreate_uplink() {
	local gw_mac
	gw_mac=$(kvx_if_mac "$NS_LAN" "$LAN_UP_IF")
	ip -n "$NS_HOST" link del "$UP"
	kvx_veth "$NS_HOST" "$UP" "$NS_LAN" "$LAN_UP_IF"
	ip -n "$NS_LAN" link set "$LAN_UP_IF" address "$gw_mac"
	ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
	ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
	ip -n "$NS_LAN" addr add "$LAN_IP/24" dev "$LAN_UP_IF"
}
recreate_uplink
uplink_filter_back() { [[ $(kvx_tc_bpf_filters "$UP") == 1 ]]; }
clsact_recorded() { [[ $(cfg_clsact_uplink) == True ]]; }
kvx_wait_for 10 "the daemon re-attached to the new uplink" uplink_filter_back || true
kvx_wait_for 10 "the daemon recorded the new uplink's clsact in the config" clsact_recorded ||
	kvx_log "daemon log: $(tail -n 5 "$KVX_DAEMON_LOG" | tr '\n' '|')"
assert_eq "config: the new uplink's clsact is the daemon's" True "$(cfg_clsact_uplink)"
assert_contains "guest2 -> server through the new uplink" "seen=$UP_IP:" "$(udp_from "$NS_G2" after-replug)"
# The mapping comes back on the new uplink once the daemon has followed it
# (and probed the address): until then the LAN's pings wait in its ARP queue
# and are answered all at once, more replies than the count.
ext1_answers() { [[ $(kvx_ping_received "$NS_LAN" "$EXT1" 1) -ge 1 ]]; }
kvx_wait_for 10 "$EXT1 answers again" ext1_answers || true
assert_eq "LAN pings $EXT1 through the new uplink" 3 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
# Every flow expires 2 s after its last packet (--timeouts): a GC sweep
# (every 5 s) empties the table only while the daemon loop runs.
kvx_bg "$KVX_TMP/ping.log" ip netns exec "$NS_G1" ping -n -i 0.2 "$SRV_IP"
PING=$KVX_LAST_PID
kvx_wait_datapath 10 "a flow in the table" "ct >= 1" || true
kvx_kill_pid "$PING"
kvx_wait_datapath 20 "the daemon's GC empties the conntrack table" "ct == 0" || true
assert_eq "daemon still running" yes "$(alive "$DAEMON")"
assert_hostile_holds_nothing "after map add and the uplink's re-creation"

cli_ok "map del $EXT1 $G1_IP" 20 map del "$EXT1" "$G1_IP"
detach_ok "under the hostile user" "$DAEMON"
assert_hostile_holds_nothing "after detach"

# ---------------------------------------------------------------- stale pid file
kvx_step "a stale pid file naming an unrelated live process: detach signals nobody"
kvx_attach_bg || kvx_fatal "cannot attach"
PIDFILE=$(ls "$KVX_TMP/run/$BR"-*.pid)
kvx_daemon_kill # a crash: the pid file stays, nobody holds its lock
kvx_bg "$KVX_TMP/victim.log" sleep 1000
VICTIM=$KVX_LAST_PID
# The crashed daemon's pid now belongs to the victim, as after a pid wrap.
echo "$VICTIM" >"$PIDFILE"
assert_hostile_holds_nothing "stale pid file"
detach_ok "stale pid file"
assert_eq "the process named by the stale pid file was not signalled" yes "$(alive "$VICTIM")"
kvx_kill_pid "$VICTIM"

# ---------------------------------------------------------------- lost pid file
kvx_step "the pid file deleted under a running daemon: a second attach refused, detach stops the first"
kvx_attach_bg || kvx_fatal "cannot attach"
FIRST=$KVX_DAEMON_PID
rm -f "$KVX_TMP/run/$BR"-*.pid
STATE=$(kvx_host_state)
kvx_bg "$KVX_TMP/second.log" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP"
SECOND=$KVX_LAST_PID
if kvx_wait_for 15 "the second attach ends" gone "$SECOND"; then
	rc=0
	wait "$SECOND" || rc=$?
	assert_eq "second attach: exit 1" 1 "$rc"
	assert_eq "second attach: one line, the error naming the first daemon" \
		"kvmxdp: error: bridge '$BR' is already served by a kvmxdp daemon (pid $FIRST): stop it or run 'kvmxdp detach' first" \
		"$(cat "$KVX_TMP/second.log")"
else
	kvx_fail "the second attach runs (a second daemon): $(head -c 300 "$KVX_TMP/second.log")"
	kvx_kill_pid "$SECOND"
fi
assert_eq "host state unchanged by the second attach" "$STATE" "$(kvx_host_state)"
assert_eq "the first daemon still runs" yes "$(alive "$FIRST")"
assert_eq "status names the first daemon" "$FIRST" "$(kvx_json 'i["daemon_pid"]')"
detach_ok "lost pid file, the first daemon" "$FIRST"
assert_hostile_holds_nothing "after the lost pid file"

# ---------------------------------------------------------------- a lock really held
kvx_step "the config lock held by root: bounded wait, one error line; SIGTERM/SIGINT end a wait"
kvx_attach_bg || kvx_fatal "cannot attach"
DAEMON=$KVX_DAEMON_PID
# --no-fork: the lock's holder is the process we end (a forked child would
# keep the lock when flock(1) is gone).
kvx_bg "$KVX_TMP/holder.log" flock --no-fork "$LOCK" bash -c 'echo locked; exec sleep 1000'
HOLDER=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/holder.log" locked || kvx_fatal "flock(1) did not take $LOCK"
kvx_wait_for 5 "the holder runs sleep" grep -qx sleep "/proc/$HOLDER/comm" || true
cfg_before=$(cat "$KVX_CFG")
rc=0
t0=$(date +%s%N)
timeout 20 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" --lock-wait 2 map add "$EXT2" "$G2_IP" \
	>"$KVX_TMP/wait.out" 2>"$KVX_TMP/wait.err" || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "map add --lock-wait 2: exit 1" 1 "$rc"
assert_eq "... one line naming the lock and its holder" \
	"kvmxdp: error: lock $LOCK still held by pid $HOLDER (sleep) after 2 s (--lock-wait)" \
	"$(cat "$KVX_TMP/wait.err")"
assert_ge "... after waiting 2 s (ms)" "$ms" 2000
assert_le "... and no more than a few (ms)" "$ms" 8000
assert_eq "... config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"

# interrupted: SIGTERM to a waiting map add, SIGINT to a waiting attach
interrupt_case() { # SIGNAL DESC kvmxdp-args...
	local sig=$1 desc=$2 pid rc=0 log; shift 2
	log=$KVX_TMP/int.$sig.log
	kvx_bg "$log" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" -v "$@"
	pid=$KVX_LAST_PID
	kvx_wait_file_contains 15 "$log" "waiting for the lock $LOCK, held by pid $HOLDER" || return 0
	kill "-$sig" "$pid"
	if kvx_wait_for 5 "$desc ends on SIG$sig" gone "$pid"; then
		wait "$pid" || rc=$?
		assert_eq "$desc, SIG$sig: exit 1" 1 "$rc"
		assert_eq "$desc, SIG$sig: one error line" \
			"kvmxdp: error: interrupted by SIG$sig while waiting for the lock $LOCK (held by pid $HOLDER (sleep))" \
			"$(grep '^kvmxdp: error' "$log" || true)"
		assert_eq "$desc, SIG$sig: no warning (-v adds only debug lines)" "" \
			"$(grep '^kvmxdp: warning' "$log" || true)"
	else
		kvx_kill_pid "$pid"
	fi
}
interrupt_case TERM "map add" map add "$EXT2" "$G2_IP"
assert_eq "map add interrupted: config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
kvx_daemon_stop
BR_STATE=$(kvx_host_state)
interrupt_case INT "attach" attach --bridge "$BR" --uplink "$UP"
assert_eq "attach interrupted: host state unchanged" "$BR_STATE" "$(kvx_host_state)"
assert_eq "attach interrupted: config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
kvx_kill_pid "$HOLDER"
detach_ok "once the lock is free"
assert_hostile_holds_nothing "at the end"

# The daemon must never wait for the config lock: while root holds it the
# network goes on changing, and what needs no config goes on too.
kvx_step "the config lock held by root: an uplink re-creation is followed, GC runs; recorded once free"
tc -n "$NS_HOST" qdisc add dev "$UP" clsact 2>/dev/null || true # another tool's
kvx_attach_bg --timeouts "$TIMEOUTS" || kvx_fatal "cannot attach"
DAEMON=$KVX_DAEMON_PID
assert_eq "config: the uplink's clsact is not kvmxdp's" False "$(cfg_clsact_uplink)"
kvx_bg "$KVX_TMP/holder2.log" flock --no-fork "$LOCK" bash -c 'echo locked; exec sleep 1000'
HOLDER=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/holder2.log" locked || kvx_fatal "flock(1) did not take $LOCK"
recreate_uplink
kvx_wait_for 10 "the daemon re-attached to the new uplink, lock held" uplink_filter_back || true
assert_eq "lock held: the new uplink carries kvmxdp's filters" 1 "$(kvx_tc_bpf_filters "$UP")"
assert_contains "lock held: guest1 -> server through the new uplink" "seen=$UP_IP:" \
	"$(udp_from "$NS_G1" held-replug)"
kvx_bg "$KVX_TMP/ping2.log" ip netns exec "$NS_G1" ping -n -i 0.2 "$SRV_IP"
PING=$KVX_LAST_PID
kvx_wait_datapath 10 "lock held: a flow in the table" "ct >= 1" || true
kvx_kill_pid "$PING"
kvx_wait_datapath 20 "lock held: the daemon's GC empties the conntrack table" "ct == 0" || true
assert_eq "lock held: the daemon runs" yes "$(alive "$DAEMON")"
assert_eq "lock held: the config is not written" False "$(cfg_clsact_uplink)"
kvx_kill_pid "$HOLDER"
kvx_wait_for 15 "the lock free: the daemon records the new uplink's clsact" clsact_recorded || true
assert_eq "config: the new uplink's clsact is the daemon's" True "$(cfg_clsact_uplink)"
detach_ok "after the held lock" "$DAEMON"

# ---------------------------------------------------------------- pid files the user could open
# Last: the hostile user keeps what it locks here, which the checks above
# would count.
kvx_step "a pid file left 0644 (an older kvmxdp's), one of the user's: their lock blocks no detach"
held_count() { grep -cxF "held $1" "$KVX_TMP/hostile.log" || true; }
held_more() { (($(held_count "$1") > $2)); }
for how in 0644 user; do
	kvx_attach_bg || kvx_fatal "cannot attach"
	PIDFILE=$(ls "$KVX_TMP/run/$BR"-*.pid)
	kvx_daemon_kill # gone, its pid file left
	n=$(held_count "$PIDFILE")
	case $how in
	0644) chmod 0644 "$PIDFILE" ;;
	user) chown 65534:65534 "$PIDFILE" ;;
	esac
	kvx_wait_for 10 "the hostile user locks $PIDFILE ($how)" held_more "$PIDFILE" "$n" ||
		kvx_fatal "the hostile user did not lock $PIDFILE"
	detach_ok "pid file $how, locked by the user"
	assert_eq "pid file $how: the hostile user still runs" yes "$(alive "$HOSTILE")"
done

kvx_assert_no_csum_errors
kvx_finish
