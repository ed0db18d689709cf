#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/notify.sh: the daemon speaks systemd's notification protocol as
# the Type=notify unit expects, to a real AF_UNIX datagram socket standing in
# for systemd's (NOTIFY_SOCKET, WATCHDOG_USEC as systemd sets them):
#   - READY=1 (with STATUS=) is the first message, and when it arrives the
#     datapath is attached (the bridge's TC filter is there);
#   - WATCHDOG=1 comes at half of WATCHDOG_USEC, again and again;
#   - `kvmxdp reload` (systemctl reload's ExecReload=: SIGHUP) gives
#     RELOADING=1 then READY=1, the daemon lives on, and a mapping changed in
#     the config by hand is applied when it returns: a port forward re-pointed from guest1 to guest2 in place, with
#     the file's size, inode and mtime unchanged, so that only the reload
#     (not the daemon's per-tick look at the file) can have picked it up;
#   - SIGTERM gives STOPPING=1; the datapath stays.
#
#   guest1 ns (kg1<id> 192.168.122.11, HTTP :80 "guest1") --+
#   guest2 ns (kg2<id> 192.168.122.12, HTTP :80 "guest2") --+ bridge kb<id>, host ns   <- kvmxdp
#                                                             uplink ku<id> 10.77.0.2/24
#   lan ns:    kl<id> 10.77.0.1/24: the client of the forward uplink:8080
#   server ns: 10.78.0.2 (unused here)
#
# Usage: notify.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_guest_http_servers

# The stand-in for systemd's notification socket: every datagram as one
# line ('\n' inside a message shown as '|').
sock=$KVX_TMP/notify.sock
nlog=$KVX_TMP/notify.log
: >"$nlog"
kvx_bg "$KVX_TMP/notify-listener.log" "$KVX_PY" -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as log:
    while True:
        log.write(s.recv(4096).decode().replace("\n", "|") + "\n")
        log.flush()
' "$sock" "$nlog"
for ((i = 0; i < 50; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
[[ -S $sock ]] || kvx_fatal "the notification socket $sock did not appear"

kvx_step "attach with NOTIFY_SOCKET and WATCHDOG_USEC=1000000"
export NOTIFY_SOCKET=$sock WATCHDOG_USEC=1000000
kvx_attach_bg || kvx_fatal "cannot attach"
unset NOTIFY_SOCKET WATCHDOG_USEC
kvx_wait_file_contains 10 "$nlog" "READY=1" || kvx_fatal "no READY=1: $(cat "$nlog")"
assert_eq "the first message is READY=1 with STATUS=" \
	"READY=1|STATUS=bridge $BR, uplink $UP: attached" "$(head -1 "$nlog")"
assert_eq "the bridge's filter is attached when READY=1 has come" 1 "$(kvx_tc_bpf_filters "$BR")"

kvx_step "SIGHUP: a mapping changed in the config by hand is applied"
assert_ok "map add uplink:8080 $G1_IP:80" kvx map add uplink:8080 "$G1_IP:80" --proto tcp
assert_eq "LAN -> $UP_IP:8080 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
# The daemon must first have seen map add's own write (its per-tick look
# compares the file's identity with the last one it read): edited before its
# next tick, the file would look changed to it and the edit be read there.
sleep 2
# In place, same length, then the old mtime back: the file looks unchanged.
mtime=$(stat -c %.9Y "$KVX_CFG")
ino=$(stat -c %i "$KVX_CFG")
size=$(stat -c %s "$KVX_CFG")
"$KVX_PY" - "$KVX_CFG" "$G1_IP:80" "$G2_IP:80" <<'PY'
import sys
path, old, new = sys.argv[1:]
with open(path, "r+") as f:
    text = f.read()
    assert text.count(old) == 1 and len(old) == len(new)
    f.seek(0)
    f.write(text.replace(old, new))
PY
touch -d "@$mtime" "$KVX_CFG"
assert_eq "config edited in place (inode, size, mtime)" "$ino $size $mtime" \
	"$(stat -c '%i %s %.9Y' "$KVX_CFG")"
sleep 2 # two ticks: an unchanged-looking file is not re-read by them
assert_eq "before the reload, the forward still goes to guest1" guest1 \
	"$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
before=$(wc -l <"$nlog")
# The unit's ExecReload=: returns once the daemon is done, so the forward
# is guest2's the moment it returns (systemctl reload returns with it).
assert_ok "kvmxdp reload (ExecReload=)" kvx reload --bridge "$BR"
assert_eq "when kvmxdp reload returns, LAN -> $UP_IP:8080 reaches guest2" guest2 \
	"$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
kvx_wait_for 10 "RELOADING=1 then READY=1 after SIGHUP" \
	bash -c "tail -n +$((before + 1)) '$nlog' | grep -v '^WATCHDOG=1$' | tr '\n' ' ' | grep -q '^RELOADING=1|MONOTONIC_USEC=[0-9]*|STATUS=reloading [^ ]* READY=1|STATUS=bridge '"
assert_ok "the daemon lives on after SIGHUP" kill -0 "$KVX_DAEMON_PID"
assert_eq "after the reload, LAN -> $UP_IP:8080 reaches guest2" guest2 \
	"$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_contains "the reload is logged" "SIGHUP: re-reading" "$(cat "$KVX_DAEMON_LOG")"

kvx_step "the watchdog"
assert_ge "WATCHDOG=1 since READY=1" "$(grep -cx "WATCHDOG=1" "$nlog" || true)" 3
w0=$(grep -cx "WATCHDOG=1" "$nlog" || true)
sleep 3
n=$(($(grep -cx "WATCHDOG=1" "$nlog" || true) - w0))
# Every 0.5 s: about 6 in 3 s; at least 2 on a loaded machine, where a
# step of the loop (a netlink dump, a sweep) may hold a ping back.
assert_ge "WATCHDOG=1 at half of WATCHDOG_USEC (got $n in 3 s; log: $(tr '\n' ' ' <"$nlog" | tail -c 300))" "$n" 2

kvx_step "a restarted daemon: kvmxdp reload still waits for its reload (its run files outlive it)"
edit_cfg() { # OLD NEW: the forward's guest, in place
	"$KVX_PY" - "$KVX_CFG" "$1" "$2" <<'PY'
import sys
path, old, new = sys.argv[1:]
with open(path, "r+") as f:
    text = f.read()
    assert text.count(old) == 1 and len(old) == len(new)
    f.seek(0)
    f.write(text.replace(old, new))
PY
}
kvx_daemon_stop
export NOTIFY_SOCKET=$sock
kvx_attach_bg || kvx_fatal "cannot attach again"
unset NOTIFY_SOCKET
sleep 2 # the daemon has read the config as it is
edit_cfg "$G2_IP:80" "$G1_IP:80"
# Not re-read before the reload: the same mtime as the file it read.
touch -d "@$(stat -c %.9Y "$KVX_CFG")" "$KVX_CFG"
t0=$(date +%s)
assert_ok "kvmxdp reload after the restart" kvx --lock-wait 5 reload --bridge "$BR"
assert_le "... returned within the reload, not at its time-out" $(($(date +%s) - t0)) 10
assert_eq "when it returns, LAN -> $UP_IP:8080 reaches guest1" guest1 \
	"$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
# Two reloads close together: each returns once a reload begun after it
# read the daemon's mark is done, and sees the config as it left it.
edit_cfg "$G1_IP:80" "$G2_IP:80"
kvx reload --bridge "$BR" >"$KVX_TMP/reload1.out" 2>&1 &
r1=$!
kvx reload --bridge "$BR" >"$KVX_TMP/reload2.out" 2>&1 &
r2=$!
wait "$r1" && rc1=0 || rc1=$?
wait "$r2" && rc2=0 || rc2=$?
assert_eq "both reloads succeed ($(cat "$KVX_TMP/reload1.out" "$KVX_TMP/reload2.out"))" "0 0" "$rc1 $rc2"
assert_eq "after both, LAN -> $UP_IP:8080 reaches guest2" guest2 \
	"$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"

kvx_step "SIGTERM: STOPPING=1, the datapath stays"
kvx_daemon_stop
assert_eq "the last message is STOPPING=1" "STOPPING=1|STATUS=stopping: the datapath stays attached" \
	"$(grep -v '^WATCHDOG=1$' "$nlog" | tail -1)"
assert_eq "the bridge's filter stays" 1 "$(kvx_tc_bpf_filters "$BR")"
out=$(kvx reload --bridge "$BR" 2>&1) && rc=0 || rc=$?
assert_eq "kvmxdp reload without a daemon fails" 1 "$rc"
assert_contains "... saying so in one line" "no daemon runs for bridge '$BR'" "$out"
assert_ok "detach" kvx detach --bridge "$BR"
kvx_finish
