#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/conntrack_cli.sh: `kvmxdp conntrack list|flush` and the memory /
# near-full view of `status`, against real flows:
#  - TCP (an open echo connection: ESTABLISHED; a finished curl download:
#    TIME_WAIT or CLOSE), UDP and ICMP flows of guest1 and a long-running
#    TCP echo stream of guest2 are listed with the guest, remote and external
#    addresses and ports that the server really saw;
#  - the TCP states with their timeouts and per-side windows: a SYN from a
#    raw socket to a forward (SYN_RECV, 60 s; the remote's ISN, window and
#    window scale; the guest's SYN-ACK), a connection guest1 half-closed
#    (FIN_WAIT, 240 s) and one closed both ways (TIME_WAIT, 240 s), in the
#    JSON, in the text lines and through --state;
#  - `flush --guest G1` removes exactly guest1's flows (the count printed is
#    the count listed), guest2's stream carries on through the flush;
#  - a flushed TCP flow's next packet from the remote is not delivered to
#    guest1, nor to the host (the flush marked the binding: DROP_FILTERED)
#    while a new outbound connection from guest1 works at once;
#  - bad filter values: one `kvmxdp: error:` line naming the value, exit != 0,
#    nothing flushed;
#  - list and flush work on the pinned maps with no daemon running;
#  - `status --json` has entries / max_entries / memory_bytes per map; with
#    `attach --ct-size 64 --flow-quota 0` and 70 UDP flows: the >= 80%
#    warning and the DROP_TABLE_FULL warning;
#  - with `--flow-quota 20` and no daemon (nothing else recounts the quota
#    counters): after `flush --guest`, the guest opens 20 new flows at once.
#
#   guest1 ns (kg1<id> 192.168.122.11/24) --+
#   guest2 ns (kg2<id> 192.168.122.12/24) --+ bridge kb<id> 192.168.122.1/24 (host ns)
#                                              uplink ku<id> 10.77.0.2/24   <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24: HTTP :8080, UDP peer :5001,
#              TCP peer :9000 (ECHO streams; WAIT: send one line on a trigger)
#
# Usage: conntrack_cli.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-170} # the ctest TIMEOUT is 200 (vm-tests/CMakeLists.txt)
kvx_init "${1:-}"
kvx_topology_up
kvx_http_server
sha=$(kvx_random_file blob 1)
kvx_udp_server "$SRV_IP:5001"

# The TCP peer: "ECHO" echoes everything back; "WAIT NAME" keeps the
# connection open and sends one line once the file $KVX_TMP/go.NAME exists.
# Every accepted connection is logged with the peer the server saw.
cat >"$KVX_TMP/tcp_peer.py" <<'EOF'
import os, socket, sys, threading, time
tmp = sys.argv[2]
def handle(c, peer):
    line = b""
    while not line.endswith(b"\n"):  # byte by byte: the rest is the stream's
        d = c.recv(1)
        if not d:
            return
        line += d
    line = line.decode().split()
    print("accept peer=%s:%d mode=%s" % (peer[0], peer[1], " ".join(line)), flush=True)
    if line[0] == "ECHO":
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)
    while not os.path.exists(os.path.join(tmp, "go." + line[1])):
        time.sleep(0.05)
    c.sendall(b"after-flush\n")
    print("sent %s" % line[1], flush=True)
    time.sleep(60)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 9000))
s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    threading.Thread(target=handle, args=(c, peer), daemon=True).start()
EOF
# The client: "echo" streams 1000-byte round trips and writes the count to
# its status file; "wait NAME" prints its local port, then what it receives.
cat >"$KVX_TMP/tcp_client.py" <<'EOF'
import socket, sys, time
mode, dst, out = sys.argv[1], sys.argv[2], sys.argv[3]
c = socket.create_connection((dst, 9000), timeout=5)
def note(text):
    with open(out + ".tmp", "w") as f:
        f.write(text + "\n")
    import os; os.replace(out + ".tmp", out)
if mode == "echo":
    c.sendall(b"ECHO\n")
    n, blob = 0, bytes(range(250)) * 4
    while True:
        try:
            c.sendall(blob)
            got = b""
            while len(got) < len(blob):
                d = c.recv(len(blob) - len(got))
                if not d:
                    raise OSError("closed")
                got += d
            if got != blob:
                raise OSError("corrupt echo")
        except OSError as e:
            note("error %s after %d" % (e, n)); sys.exit(1)
        n += 1
        note("count %d local=%d" % (n, c.getsockname()[1]))
        time.sleep(0.05)
else:
    c.sendall(b"WAIT %s\n" % sys.argv[4].encode())
    print("local=%d" % c.getsockname()[1], flush=True)
    c.settimeout(None)
    print("got %s" % c.recv(100).decode().strip(), flush=True)
EOF
kvx_bg "$KVX_TMP/tcp_peer.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_TMP/tcp_peer.py" "$SRV_IP" "$KVX_TMP"
kvx_wait_file_contains 10 "$KVX_TMP/tcp_peer.log" listening

ct() { kvx conntrack "$@"; }
# ctj FILTER... -> the JSON list ('' on error)
ctj() { kvx conntrack list --json --bridge "$BR" "$@" 2>>"$KVX_TMP/ct.err" || true; }
# pyj EXPR JSON: evaluate EXPR on the flow list `f` (prints '' on error)
pyj() {
	"$KVX_PY" -c '
import json, sys
try:
    f = json.loads(sys.stdin.read()); v = eval(sys.argv[1])
except Exception as e:
    print("", end=""); sys.exit(0)
print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)' "$1" <<<"$2"
}
echo_count() { sed -n 's/^count \([0-9]*\).*/\1/p' "$KVX_TMP/echo2.st" 2>/dev/null; }

kvx_step "attach (default filtering), then real flows from both guests"
kvx_attach_bg || kvx_fatal "cannot attach"

# guest2: a long-running TCP echo stream
kvx_bg "$KVX_TMP/echo2.log" ip netns exec "$NS_G2" "$KVX_PY" -u "$KVX_TMP/tcp_client.py" echo "$SRV_IP" "$KVX_TMP/echo2.st"
ECHO2_PID=$KVX_LAST_PID
kvx_wait_for 10 "guest2's echo stream running" bash -c "[[ \$(sed -n 's/^count \([0-9]*\).*/\1/p' '$KVX_TMP/echo2.st' 2>/dev/null) -ge 5 ]]"
# guest1: an open TCP connection (ESTABLISHED), waiting for the server
kvx_bg "$KVX_TMP/wait1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_TMP/tcp_client.py" wait "$SRV_IP" "$KVX_TMP/wait1.st" w1
kvx_wait_file_contains 10 "$KVX_TMP/wait1.log" local=
kvx_wait_file_contains 10 "$KVX_TMP/tcp_peer.log" "mode=WAIT w1"
w1_port=$(sed -n 's/^local=//p' "$KVX_TMP/wait1.log")
w1_seen=$(sed -n 's/^accept peer=\([0-9.:]*\) mode=WAIT w1$/\1/p' "$KVX_TMP/tcp_peer.log")
w1_t0=$(date +%s) # its binding's last use (the GC frees it 30 s later once no flow uses it)
# guest1: a finished download, a UDP exchange, a ping
assert_eq "guest1 downloads the blob" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
udp_out=$(kvx_udp_client "$NS_G1" --bind 41234 --msg ct-udp --wait 1 "$SRV_IP:5001" || true)
assert_contains "guest1's UDP exchange" "data=ct-udp" "$udp_out"
udp_seen=$(sed -n 's/.*seen=\([0-9.:]*\) .*/\1/p' <<<"$udp_out" | head -n1)
assert_ok "guest1 pings the server" kvx_ping "$NS_G1" "$SRV_IP" 3

kvx_step "conntrack list --json: every flow with the addresses the server saw"
L=$(ctj)
kvx_log "flows: $(pyj '[(x["proto"], x["int_addr"], x["int_port"], x["rem_addr"], x["rem_port"], x["ext_port"], x["state"]) for x in f]' "$L")"
# guest1's open connection
w1=$(pyj "[x for x in f if x['proto'] == 'tcp' and x['int_addr'] == '$G1_IP' and x['int_port'] == $w1_port]" "$L")
assert_eq "one flow for guest1's open TCP connection" 1 "$(pyj 'len(f)' "$w1")"
assert_eq "  its remote" "$SRV_IP:9000" "$(pyj 'f[0]["rem_addr"] + ":" + str(f[0]["rem_port"])' "$w1")"
assert_eq "  its external endpoint = the peer the server saw" "$w1_seen" \
	"$(pyj 'f[0]["ext_addr"] + ":" + str(f[0]["ext_port"])' "$w1")"
assert_eq "  its external address is the uplink's" "$UP_IP" "${w1_seen%:*}"
assert_eq "  its state" ESTABLISHED "$(pyj 'f[0]["state"]' "$w1")"
assert_eq "  seen_reply flag, not inbound" '["seen_reply"]' "$(pyj 'f[0]["flags"]' "$w1")"
assert_ge "  packets guest->remote" "$(pyj 'f[0]["pkts_out"]' "$w1")" 3
assert_ge "  packets remote->guest" "$(pyj 'f[0]["pkts_in"]' "$w1")" 2
assert_eq "  expires in the ESTABLISHED timeout (5 days) minus idle" 1 \
	"$(pyj 'int(f[0]["timeout_s"] == 432000 and 431990 <= f[0]["expires_in_s"] <= 432000 and not f[0]["expired"])' "$w1")"
# the finished download
http=$(pyj "[x for x in f if x['proto'] == 'tcp' and x['int_addr'] == '$G1_IP' and x['rem_port'] == 8080]" "$L")
assert_eq "one flow for guest1's finished download" 1 "$(pyj 'len(f)' "$http")"
assert_eq "  closed by FINs both ways (TIME_WAIT) or RST (CLOSE)" 1 \
	"$(pyj 'int(f[0]["state"] in ("TIME_WAIT", "CLOSE"))' "$http")"
# UDP
udp=$(pyj "[x for x in f if x['proto'] == 'udp' and x['int_addr'] == '$G1_IP' and x['int_port'] == 41234]" "$L")
assert_eq "one flow for guest1's UDP exchange" 1 "$(pyj 'len(f)' "$udp")"
assert_eq "  remote and external endpoint (as the server saw it)" "$SRV_IP:5001 $udp_seen" \
	"$(pyj 'f[0]["rem_addr"] + ":" + str(f[0]["rem_port"]) + " " + f[0]["ext_addr"] + ":" + str(f[0]["ext_port"])' "$udp")"
assert_eq "  state and flags" 'STATELESS ["seen_reply"] 120' \
	"$(pyj 'f[0]["state"] + " " + json.dumps(f[0]["flags"]) + " " + str(f[0]["timeout_s"])' "$udp")"
# ICMP
icmp=$(pyj "[x for x in f if x['proto'] == 'icmp' and x['int_addr'] == '$G1_IP']" "$L")
assert_eq "one flow for guest1's ping" 1 "$(pyj 'len(f)' "$icmp")"
# An ICMP query lives 60 s (RFC 5508 REQ-2).
assert_eq "  remote, external address, no remote port, 60 s timeout" "$SRV_IP $UP_IP 0 60" \
	"$(pyj 'f[0]["rem_addr"] + " " + f[0]["ext_addr"] + " " + str(f[0]["rem_port"]) + " " + str(f[0]["timeout_s"])' "$icmp")"
assert_eq "  3 echo requests out, 3 replies in" "3 3" "$(pyj 'str(f[0]["pkts_out"]) + " " + str(f[0]["pkts_in"])' "$icmp")"
# guest2's stream
e2_local=$(sed -n 's/.*local=\([0-9]*\)/\1/p' "$KVX_TMP/echo2.st")
e2_seen=$(sed -n 's/^accept peer=\([0-9.:]*\) mode=ECHO$/\1/p' "$KVX_TMP/tcp_peer.log")
e2=$(pyj "[x for x in f if x['int_addr'] == '$G2_IP']" "$L")
assert_eq "guest2 has exactly its stream's flow" 1 "$(pyj 'len(f)' "$e2")"
assert_eq "  guest and external endpoint" "$G2_IP:$e2_local $e2_seen ESTABLISHED" \
	"$(pyj 'f[0]["int_addr"] + ":" + str(f[0]["int_port"]) + " " + f[0]["ext_addr"] + ":" + str(f[0]["ext_port"]) + " " + f[0]["state"]' "$e2")"
e2_age=$(pyj 'f[0]["age_s"]' "$e2")
# filters on list
assert_eq "list --guest G2 --proto tcp --state established" 1 \
	"$(pyj 'len(f)' "$(ctj --guest "$G2_IP" --proto tcp --state established)")"
assert_eq "list --ext-port (guest1's open connection)" "$w1_port" \
	"$(pyj 'f[0]["int_port"] if len(f) == 1 else "n=%d" % len(f)' "$(ctj --proto tcp --ext-port "${w1_seen##*:}")")"
assert_eq "list --proto icmp --remote SRV" 1 "$(pyj 'len(f)' "$(ctj --proto icmp --remote "$SRV_IP")")"
# the text form: one line per flow
txt=$(ct list --bridge "$BR" 2>"$KVX_TMP/list.err")
assert_eq "text list: one line per flow" "$(pyj 'len(f)' "$L")" "$(grep -c . <<<"$txt")"
assert_contains "text list: guest1's open connection" \
	"ESTABLISHED  guest=$G1_IP:$w1_port remote=$SRV_IP:9000 ext=$w1_seen " "$txt"
assert_contains "text list: the count on stderr" "$(pyj 'len(f)' "$L") flows shown" "$(cat "$KVX_TMP/list.err")"

kvx_step "TCP states: an inbound half-open SYN (SYN_RECV), half-closed (FIN_WAIT), closed (TIME_WAIT)"
assert_ok "forward $UP_IP:2222 -> guest1:2222" kvx map add "$UP_IP:2222" "$G1_IP:2222" --proto tcp
# guest1 listens: its kernel answers the SYN with a SYN-ACK (never accepted).
kvx_bg "$KVX_TMP/listen1.log" ip netns exec "$NS_G1" "$KVX_PY" -u -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 2222)); s.listen(8); print("listening", flush=True); time.sleep(300)'
LISTEN1_PID=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/listen1.log" listening
# One SYN from a raw socket in the server ns, from an address nobody on the
# server's segment has (SPOOF): the guest's SYN-ACK dies at the router, so
# no RST ever closes the handshake.  ISN 1000000, window 5000, wscale 7.
SPOOF=10.78.0.99
nsx "$NS_SRV" "$KVX_PY" - "$SPOOF" "$UP_IP" 2222 <<'PY'
import socket, struct, sys
src, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
opts = struct.pack("!BBH", 2, 4, 1460) + struct.pack("!BBBB", 1, 3, 3, 7)
tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1000000, 0, (5 + len(opts) // 4) << 4, 0x02, 5000, 0, 0) + opts
ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack("!H", csum(ph + tcp)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).sendto(ip + tcp, (dst, 0))
PY
# guest1: a connection it half-closes (its FIN; the server keeps its side
# open), and one closed both ways (FINs from both sides).
kvx_bg "$KVX_TMP/fin1.log" ip netns exec "$NS_G1" "$KVX_PY" -u -c '
import socket, sys, time
c = socket.create_connection((sys.argv[1], 9000), timeout=5)
c.sendall(b"WAIT fw\n"); time.sleep(0.3); c.shutdown(socket.SHUT_WR)
print("local=%d" % c.getsockname()[1], flush=True); time.sleep(300)' "$SRV_IP"
FIN1_PID=$KVX_LAST_PID
tw_port=$(nsx "$NS_G1" "$KVX_PY" -c '
import socket, sys
c = socket.create_connection((sys.argv[1], 8080), timeout=5)
c.sendall(b"GET /blob HTTP/1.0\r\n\r\n")
while c.recv(65536):  # to the server FIN (HTTP/1.0), then ours
    pass
print(c.getsockname()[1]); c.close()' "$SRV_IP")
kvx_wait_file_contains 10 "$KVX_TMP/fin1.log" local=
fw_port=$(sed -n 's/^local=//p' "$KVX_TMP/fin1.log")
sleep 1 # the last ACKs and the guest's SYN-ACK
L=$(ctj)
sr=$(pyj "[x for x in f if x['proto'] == 'tcp' and x['rem_addr'] == '$SPOOF']" "$L")
assert_eq "one flow for the inbound SYN" 1 "$(pyj 'len(f)' "$sr")"
assert_eq "  SYN_RECV, inbound through the forward, 60 s" \
	'SYN_RECV ["halfopen", "inbound", "seen_reply", "static", "synack"] 60 '"$G1_IP:2222 $UP_IP:2222 40000" \
	"$(pyj 'f[0]["state"] + " " + json.dumps(sorted(f[0]["flags"])) + " " + str(f[0]["timeout_s"]) + " " + f[0]["int_addr"] + ":" + str(f[0]["int_port"]) + " " + f[0]["ext_addr"] + ":" + str(f[0]["ext_port"]) + " " + str(f[0]["rem_port"])' "$sr")"
assert_eq "  expires within SYN_RECV's 60 s" 1 "$(pyj 'int(50 <= f[0]["expires_in_s"] <= 60 and not f[0]["expired"])' "$sr")"
assert_eq "  the remote's side: its SYN (end = ISN + 1, window 5000, wscale 7)" "1000001 5000 7" \
	"$(pyj 'str(f[0]["tcp"]["remote"]["end"]) + " " + str(f[0]["tcp"]["remote"]["maxwin"]) + " " + str(f[0]["tcp"]["remote"]["wscale"])' "$sr")"
assert_eq "  the guest's side: its SYN-ACK acknowledges the SYN" 1000001 "$(pyj 'f[0]["tcp"]["guest"]["ack"]' "$sr")"
assert_eq "list --state syn_recv shows just it" "$SPOOF" "$(pyj '" ".join(x["rem_addr"] for x in f)' "$(ctj --state syn_recv)")"
fw=$(pyj "[x for x in f if x['proto'] == 'tcp' and x['int_addr'] == '$G1_IP' and x['int_port'] == $fw_port]" "$L")
assert_eq "guest1's half-closed connection: FIN_WAIT, its FIN only, 240 s" 'FIN_WAIT ["fin_out", "seen_reply"] 240' \
	"$(pyj 'f[0]["state"] + " " + json.dumps(sorted(f[0]["flags"])) + " " + str(f[0]["timeout_s"])' "$fw")"
assert_eq "  expires within FIN_WAIT's 240 s" 1 "$(pyj 'int(230 <= f[0]["expires_in_s"] <= 240)' "$fw")"
tw=$(pyj "[x for x in f if x['proto'] == 'tcp' and x['int_addr'] == '$G1_IP' and x['int_port'] == $tw_port]" "$L")
assert_eq "guest1's closed connection: TIME_WAIT, FINs both ways, 240 s" 'TIME_WAIT ["fin_in", "fin_out", "seen_reply"] 240' \
	"$(pyj 'f[0]["state"] + " " + json.dumps(sorted(f[0]["flags"])) + " " + str(f[0]["timeout_s"])' "$tw")"
assert_eq "  expires within TIME_WAIT's 240 s" 1 "$(pyj 'int(230 <= f[0]["expires_in_s"] <= 240)' "$tw")"
assert_eq "  both sides tracked (window info listed)" '["guest", "remote"]' "$(pyj 'sorted(f[0]["tcp"])' "$tw")"
txt=$(ct list --bridge "$BR" 2>/dev/null)
assert_contains "text list: the SYN_RECV flow" "tcp   SYN_RECV     guest=$G1_IP:2222 remote=$SPOOF:40000 ext=$UP_IP:2222 " "$txt"
assert_contains "text list: the TIME_WAIT flow" "tcp   TIME_WAIT    guest=$G1_IP:$tw_port remote=$SRV_IP:8080" "$txt"
assert_contains "text list: the FIN_WAIT flow" "tcp   FIN_WAIT     guest=$G1_IP:$fw_port remote=$SRV_IP:9000" "$txt"
assert_contains "text list: the windows" "win=guest:" "$(grep SYN_RECV <<<"$txt")"
# Gone before the flush steps below: no more SYN-ACK retransmissions (the
# listener), the forward's flows go with it.
kvx_kill_pid "$LISTEN1_PID"
kvx_kill_pid "$FIN1_PID"
kvx map del "$UP_IP:2222" "$G1_IP:2222" --proto tcp >/dev/null
assert_eq "the forward's SYN_RECV flow went with it" 0 "$(pyj 'len(f)' "$(ctj --remote "$SPOOF")")"

kvx_step "bad filter values: one error line naming the value, nothing flushed"
n_before=$(pyj 'len(f)' "$(ctj)")
for bad in "--guest 10.1" "--remote 300.1.1.1" "--proto sctp" "--ext-port 70000" "--ext-port 0" "--state OPEN"; do
	rc=0
	# shellcheck disable=SC2086 # word splitting wanted
	out=$(ct flush --bridge "$BR" $bad 2>&1) || rc=$?
	assert_ne "flush $bad exits non-zero" 0 "$rc"
	assert_eq "flush $bad: one line" 1 "$(grep -c . <<<"$out")"
	assert_contains "flush $bad: names the value" "kvmxdp: error: invalid ${bad%% *} '${bad#* }'" "$out"
done
rc=0
out=$(ct list --bridge nosuchbr0 2>&1) || rc=$?
assert_ne "list --bridge of a bridge not attached exits non-zero" 0 "$rc"
assert_contains "  and names it" "kvmxdp: error: bridge 'nosuchbr0' is not attached" "$out"
assert_eq "nothing was flushed by the bad calls" "$n_before" "$(pyj 'len(f)' "$(ctj)")"

kvx_step "flush --guest G1: only guest1's flows go; guest2's stream carries on"
g1_n=$(pyj 'len(f)' "$(ctj --guest "$G1_IP")")
assert_ge "guest1 has its 4 flows before the flush" "$g1_n" 4
filtered0=$(kvx_counter DROP_FILTERED) host0=$(kvx_counter PASS_HOST)
c0=$(echo_count)
out=$(ct flush --bridge "$BR" --guest "$G1_IP" 2>&1)
assert_contains "flush prints the count" "kvmxdp: flushed $g1_n flows on $BR;" "$out"
assert_eq "no flow of guest1 left" 0 "$(pyj 'len(f)' "$(ctj --guest "$G1_IP")")"
e2b=$(ctj --guest "$G2_IP")
assert_eq "guest2's flow is still there, same external port, not re-created" \
	"$(pyj 'f[0]["ext_port"]' "$e2") 1" \
	"$(pyj 'str(f[0]["ext_port"]) + " " + str(int(f[0]["age_s"] >= '"$e2_age"'))' "$e2b")"
kvx_wait_for 10 "guest2's stream goes on after the flush" bash -c \
	"[[ \$(sed -n 's/^count \([0-9]*\).*/\1/p' '$KVX_TMP/echo2.st') -ge $((c0 + 20)) ]]"
assert_not_contains "guest2's stream saw no error" error "$(cat "$KVX_TMP/echo2.st")"

kvx_step "the flushed connection: the server's next packet is not delivered (no EIF)"
touch "$KVX_TMP/go.w1"
kvx_wait_file_contains 5 "$KVX_TMP/tcp_peer.log" "sent w1"
# Once kvmxdp counted the segment, it has decided its fate: then guest1 must
# not have it.
if (($(date +%s) - w1_t0 < 28)); then
	kvx_wait_datapath 5 "kvmxdp to drop the server's segment" "c['DROP_FILTERED'] > $filtered0" || true
	assert_ge "DROP_FILTERED counted the server's segment(s)" "$(($(kvx_counter DROP_FILTERED) - filtered0))" 1
else
	# A slow run: the GC may have released the unused binding by now, and
	# then the segment is the host's (PASS_HOST: a host address, no NAT).
	kvx_log "binding older than 28 s: DROP_FILTERED or PASS_HOST"
	kvx_wait_datapath 5 "kvmxdp to count the server's segment" \
		"c['DROP_FILTERED'] - $filtered0 + c['PASS_HOST'] - $host0 > 0" || true
	assert_ge "DROP_FILTERED or PASS_HOST counted the server's segment(s)" \
		"$(($(kvx_counter DROP_FILTERED) - filtered0 + $(kvx_counter PASS_HOST) - host0))" 1
fi
assert_not_contains "guest1 did not receive the server's data" got "$(cat "$KVX_TMP/wait1.log")"
assert_eq "and no flow was created for it" 0 \
	"$(pyj 'len(f)' "$(ctj --guest "$G1_IP" --proto tcp)")"
kvx_step "a new outbound connection from guest1 works at once"
assert_eq "guest1 downloads the blob again" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_eq "its flow is listed" 1 "$(pyj 'len(f)' "$(ctj --guest "$G1_IP" --remote "$SRV_IP" --proto tcp)")"

kvx_step "status --json: entries, max_entries and memory of every map"
S=$(kvx_status_json)
maps="kvx_ct kvx_bind kvx_cfg kvx_stats kvx_extaddr kvx_frag kvx_gflows"
want=""
for m in $maps; do want+="$m:kernel:1 "; done
assert_eq "every map: the kernel's memory figure (fdinfo memlock), >= 64 bytes" "${want% }" \
	"$(kvx_json "' '.join('%s:%s:%d' % (m, i['maps'][m]['memory_source'], i['maps'][m]['memory_bytes'] >= 64) for m in '$maps'.split())" "$S")"
kvx_log "map memory: $(kvx_json "{m: (v['entries'], v['max_entries'], v['memory_bytes']) for m, v in i['maps'].items()}" "$S")"
assert_eq "maps.kvx_ct max_entries (default)" 131072 "$(kvx_json "i['maps']['kvx_ct']['max_entries']" "$S")"
assert_eq "maps.kvx_ct entries = conntrack.entries" "$(kvx_json "i['conntrack']['entries']" "$S")" \
	"$(kvx_json "i['maps']['kvx_ct']['entries']" "$S")"
# preallocated: at least key + value per entry
assert_ge "conntrack.memory_bytes >= 131072 * 56" "$(kvx_json "i['conntrack']['memory_bytes']" "$S")" $((131072 * 56))
assert_ge "bindings.memory_bytes >= 131072 * 40" "$(kvx_json "i['bindings']['memory_bytes']" "$S")" $((131072 * 40))
assert_eq "memory_bytes is the sum of the maps'" "$(kvx_json "sum(m['memory_bytes'] for m in i['maps'].values())" "$S")" \
	"$(kvx_json "i['memory_bytes']" "$S")"
assert_not_contains "no table warning at this size" "% full" "$(kvx_json "i['warnings']" "$S")"
assert_contains "text status shows the memory line" "memory " "$(kvx status --bridge "$BR" 2>&1)"

kvx_step "list and flush with no daemon running"
kvx_daemon_stop
n=$(pyj 'len(f)' "$(ctj --guest "$G2_IP")")
assert_eq "guest2's flow listed from the pins" 1 "$n"
out=$(ct flush --bridge "$BR" --proto udp 2>&1 || true)
assert_contains "flush --proto udp without a daemon" "kvmxdp: flushed 0 flows on $BR" "$out"
# guest2's stream would re-create its flow with its next segment (mid-stream
# pick-up, as netfilter's tcp_loose): end it first.
kvx_kill_pid "$ECHO2_PID"
# ... and let its close finish (guest2's socket in TIME-WAIT or gone): a
# later ACK of the server's FIN would pick the flow up again.
closed() { ! nsx "$NS_G2" ss -Htn dst "$SRV_IP" | grep -v '^TIME-WAIT' | grep -q .; }
kvx_wait_for 5 "guest2's stream to close" closed || true
out=$(ct flush 2>&1 || true)
assert_contains "flush without filter (the only instance, no --bridge)" "kvmxdp: flushed" "$out"
assert_eq "the table is empty" 0 "$(pyj 'len(f)' "$(ctj)")"

kvx_step "attach --ct-size 64: the >= 80% and DROP_TABLE_FULL warnings"
out=$(kvx detach --bridge "$BR" 2>&1) || kvx_fatal "detach failed: $out"
# No per-guest quota (default: a quarter of the table): one guest fills it.
kvx_attach_bg --ct-size 64 --flow-quota 0 || kvx_fatal "cannot attach --ct-size 64"
# 54 UDP flows (84%) from distinct source ports
"$KVX_PY" - "$KVX_TMP/flood.py" <<'EOF'
import sys
open(sys.argv[1], "w").write('''
import socket, sys
socks = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[3]) + i))
    s.sendto(b"fill", (sys.argv[1], 5001))
    socks.append(s)
''')
EOF
nsx "$NS_G1" "$KVX_PY" "$KVX_TMP/flood.py" "$SRV_IP" 54 42000
kvx_wait_for 5 "54 flows" bash -c "[[ \$(ip netns exec '$NS_HOST' '$KVMXDP' ${KVX_OPTS[*]} status --json --bridge '$BR' | '$KVX_PY' -c 'import json,sys; print(json.load(sys.stdin)[\"instances\"][0][\"conntrack\"][\"entries\"])') -ge 54 ]]"
S=$(kvx_status_json)
assert_eq "conntrack max_entries" 64 "$(kvx_json "i['conntrack']['max_entries']" "$S")"
assert_contains "warning: conntrack >= 80% full" "conntrack table 54/64 entries (84% full)" "$(kvx_json "i['warnings']" "$S")"
assert_not_contains "no DROP_TABLE_FULL warning yet" "DROP_TABLE_FULL increased" "$(kvx_json "i['warnings']" "$S")"
# 16 more: 10 fit, 6 are refused.  Counted once the datapath saw all 16
# (entries + refused), then the split is exact.
full0=$(kvx_counter DROP_TABLE_FULL)
nsx "$NS_G1" "$KVX_PY" "$KVX_TMP/flood.py" "$SRV_IP" 16 43000
kvx_wait_datapath 5 "the datapath to see the 16 new flows" "ct + c['DROP_TABLE_FULL'] - $full0 >= 64 + 6" || true
S=$(kvx_status_json)
assert_eq "DROP_TABLE_FULL counted the 6 refused flows" 6 "$(kvx_json "i['counters']['DROP_TABLE_FULL']['packets']" "$S")"
assert_contains "warning: DROP_TABLE_FULL increased" "DROP_TABLE_FULL increased by 6" "$(kvx_json "i['warnings']" "$S")"
assert_contains "warning: conntrack full" "conntrack table 64/64 entries (100% full)" "$(kvx_json "i['warnings']" "$S")"
assert_contains "text status prints the warning" "warning: conntrack table 64/64" "$(kvx status --bridge "$BR" 2>&1)"
out=$(ct flush --bridge "$BR" --guest "$G1_IP" 2>&1)
assert_contains "flush makes room again" "kvmxdp: flushed 64 flows" "$out"
assert_eq "a new flow fits after the flush" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"

kvx_step "flush keeps the per-guest flow quota exact, with no daemon to recount it"
kvx_daemon_stop
out=$(kvx detach --bridge "$BR" 2>&1) || kvx_fatal "detach failed: $out"
kvx_attach_bg --ct-size 64 --flow-quota 20 || kvx_fatal "cannot attach --flow-quota 20"
kvx_daemon_stop # the datapath stays; nobody but flush recounts kvx_gflows now
nsx "$NS_G1" "$KVX_PY" "$KVX_TMP/flood.py" "$SRV_IP" 25 44000
kvx_wait_datapath 5 "the datapath to see the 25 new flows" "ct + c['DROP_GUEST_QUOTA'] >= 25" || true
S=$(kvx_status_json)
assert_eq "guest1 got its 20 flows" 20 "$(kvx_json "i['conntrack']['entries']" "$S")"
assert_eq "the 5 over the quota were refused" 5 "$(kvx_json "i['counters']['DROP_GUEST_QUOTA']['packets']" "$S")"
out=$(ct flush --bridge "$BR" --guest "$G1_IP" 2>&1)
assert_contains "flush --guest G1" "kvmxdp: flushed 20 flows" "$out"
nsx "$NS_G1" "$KVX_PY" "$KVX_TMP/flood.py" "$SRV_IP" 20 45000
kvx_wait_datapath 5 "the datapath to see the 20 new flows" "ct + c['DROP_GUEST_QUOTA'] >= 20 + 5" || true
S=$(kvx_status_json)
assert_eq "right after the flush guest1 opens 20 new flows" 20 "$(kvx_json "i['conntrack']['entries']" "$S")"
assert_eq "none refused by the quota" 5 "$(kvx_json "i['counters']['DROP_GUEST_QUOTA']['packets']" "$S")"

kvx_finish
