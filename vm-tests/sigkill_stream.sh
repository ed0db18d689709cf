#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/sigkill_stream.sh: a TCP stream from a guest to the server runs
# for several seconds while the daemon is SIGKILLed and resumed twice: once
# by the same binary, once by a copy of it at another path (standing in for
# an upgrade).  The stream must complete with every byte right (a known
# pattern, verified by the receiver) and without a reset: Tcp OutRsts and
# EstabResets do not move in the guest or the server, nstat shows no abort,
# and the flow keeps its external port (the server sees one connection).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   TCP sender (pattern, ~1 MB/s, 7 s)
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                              (SIGKILL, attach, SIGKILL,
#                                                               attach by a copied binary)
#   lan ns:    router, kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24, ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24: TCP receiver on :7000 (checks every byte)
#
# Usage: sigkill_stream.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads

CHUNKS=112 # of 64 KiB: 7 MiB
SECS=7
cat >"$KVX_TMP/stream.py" <<'EOF'
# stream.py recv ADDR PORT | send ADDR PORT CHUNKS SECS
# The byte pattern: chunk k (64 KiB) = sha256(k) repeated; the receiver
# recomputes it, so any lost, duplicated or altered byte is found.
import hashlib, socket, sys, time
CH = 65536
def chunk(k):
    return hashlib.sha256(k.to_bytes(8, "big")).digest() * (CH // 32)
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "recv":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(4)
    print("listening", flush=True)
    c, peer = ls.accept()
    print(f"peer={peer[0]}:{peer[1]}", flush=True)
    c.settimeout(30)
    got, k, pending, bad = 0, 0, b"", None
    while True:
        try:
            d = c.recv(1 << 20)
        except OSError as e:
            print(f"error {e}", flush=True); break
        if not d:
            break
        pending += d; got += len(d)
        while len(pending) >= CH:
            if bad is None and pending[:CH] != chunk(k):
                bad = k
            pending = pending[CH:]; k += 1
    if pending and bad is None:
        if pending != chunk(k)[:len(pending)]:
            bad = k
    verdict = f"bytes={got} chunks={k} bad={bad}"
    print(verdict, flush=True)
    c.sendall(("verdict " + verdict + "\n").encode())
    c.close()
else:
    n, secs = int(sys.argv[4]), float(sys.argv[5])
    s = socket.create_connection((addr, port), timeout=20)
    print(f"connected local={s.getsockname()[1]}", flush=True)
    t0 = time.time()
    for k in range(n):
        s.sendall(chunk(k))
        d = t0 + secs * (k + 1) / n - time.time()
        if d > 0:
            time.sleep(d)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        reply += d
    print(reply.decode().strip(), flush=True)
    print(f"sent={n * CH} in {time.time() - t0:.1f}s", flush=True)
EOF

# Tcp counters that a reset moves, "OutRsts EstabResets".
tcp_rst_counters() { echo "$(kvx_snmp "$1" Tcp OutRsts) $(kvx_snmp "$1" Tcp EstabResets)"; }
# nstat's abort counters (absolute, history untouched).
nstat_aborts() {
	nsx "$1" nstat -asz 2>/dev/null | awk '$1 ~ /^TcpExtTCPAbortOn|^TcpAttemptFails/ { printf "%s=%s ", $1, $2 }'
}

kvx_attach_bg || kvx_fatal "cannot attach"
pd=$(kvx_pin_dir "$BR")
ct_id() { bpftool -j map show pinned "$pd/kvx_ct" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
ct0=$(ct_id)

kvx_bg "$KVX_TMP/recv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_TMP/stream.py" recv "$SRV_IP" 7000
kvx_wait_file_contains 10 "$KVX_TMP/recv.log" listening
g_before=$(tcp_rst_counters "$NS_G1") s_before=$(tcp_rst_counters "$NS_SRV")
g_nstat0=$(nstat_aborts "$NS_G1")
kvx_log "guest Tcp OutRsts/EstabResets before: $g_before; nstat: $g_nstat0"

kvx_step "a ${SECS} s TCP stream; SIGKILL + attach (same binary), SIGKILL + attach (a copy)"
kvx_bg "$KVX_TMP/send.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_TMP/stream.py" send "$SRV_IP" 7000 "$CHUNKS" "$SECS"
send_pid=$KVX_LAST_PID
kvx_wait_file_contains 5 "$KVX_TMP/send.log" connected
sleep 1

kill_daemon() {
	local pid=$KVX_DAEMON_PID
	assert_eq "daemon pid $pid is kvmxdp" kvmxdp "$(cat "/proc/$pid/comm" 2>/dev/null)"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	KVX_DAEMON_PID=""
}
kill_daemon
kvx_log "SIGKILLed; stream so far: $(kvx_json 'i["counters"]["XLATE_OUT"]["packets"]') packets out"
sleep 0.7
kvx_attach_bg || kvx_fatal "cannot resume with the same binary"
assert_eq "resume 1: same kvx_ct map" "$ct0" "$(ct_id)"
sleep 1
kill_daemon
cp "$KVMXDP" "$KVX_TMP/kvmxdp-next"
chmod +x "$KVX_TMP/kvmxdp-next"
sleep 0.7
KVMXDP_ORIG=$KVMXDP
KVMXDP=$KVX_TMP/kvmxdp-next kvx_attach_bg || kvx_fatal "cannot resume with the copied binary"
# Same file, not same path: the daemon runs in `ip netns exec`'s mount
# namespace, and from another mount namespace the link reads as a path from
# that namespace's root (a chroot's full path), while it still resolves.
same=no
[[ "/proc/$KVX_DAEMON_PID/exe" -ef "$KVX_TMP/kvmxdp-next" ]] && same=yes
assert_eq "resume 2 runs the copy ($(readlink "/proc/$KVX_DAEMON_PID/exe" 2>/dev/null))" yes "$same"
assert_eq "resume 2: same kvx_ct map" "$ct0" "$(ct_id)"
assert_eq "one bpf filter on the bridge" 1 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "one bpf filter on the uplink" 1 "$(kvx_tc_bpf_filters "$UP")"
[[ $KVMXDP == "$KVMXDP_ORIG" ]] || kvx_fatal "KVMXDP changed"

kvx_step "the stream completes"
rc=0
kvx_wait_for 25 "the sender to finish" bash -c "! kill -0 $send_pid 2>/dev/null" || true
wait "$send_pid" || rc=$?
kvx_log "sender: $(tr '\n' '|' <"$KVX_TMP/send.log")"
kvx_log "receiver: $(tr '\n' '|' <"$KVX_TMP/recv.log")"
assert_eq "sender exit code" 0 "$rc"
total=$((CHUNKS * 65536))
assert_contains "receiver: every byte, none altered" "bytes=$total chunks=$CHUNKS bad=None" "$(cat "$KVX_TMP/recv.log")"
assert_contains "sender got the verdict back through the NAT" "verdict bytes=$total chunks=$CHUNKS bad=None" "$(cat "$KVX_TMP/send.log")"
assert_not_contains "receiver: no socket error" "error" "$(cat "$KVX_TMP/recv.log")"
assert_contains "receiver saw the uplink address" "peer=$UP_IP:" "$(cat "$KVX_TMP/recv.log")"
assert_eq "guest Tcp OutRsts/EstabResets unchanged" "$g_before" "$(tcp_rst_counters "$NS_G1")"
assert_eq "server Tcp OutRsts/EstabResets unchanged" "$s_before" "$(tcp_rst_counters "$NS_SRV")"
assert_eq "guest nstat TCPAbortOn*/AttemptFails unchanged" "$g_nstat0" "$(nstat_aborts "$NS_G1")"

kvx_step "after the upgrade: new flows work"
assert_eq "ping after the upgrade" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"
st=$(kvx_status_json)
assert_eq "status: daemon_pid is the copy's" "$KVX_DAEMON_PID" "$(kvx_json 'i["daemon_pid"]' "$st")"
assert_ge "XLATE_OUT counted across the restarts" "$(kvx_json 'i["counters"]["XLATE_OUT"]["packets"]' "$st")" 100

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
