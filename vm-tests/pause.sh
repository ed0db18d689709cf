#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/pause.sh: a suspend-like pause.  An established TCP connection
# from a guest sits idle while the uplink and both bridge ports go down for
# 6 s (the host's routes through the uplink vanish with it, as on a real
# suspend; the default route is added back after resume the way DHCP or
# NetworkManager does).  After resume, the same connection carries data in
# both directions (server first: the inbound half of the flow survived,
# then the guest), nothing was reset, the flow kept its external port and
# no flow was flushed; new flows (TCP, UDP, ping) work from both guests.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   idle TCP client
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#             (ports kp1<id>, kp2<id>: set down and up)  uplink ku<id> 10.77.0.2/24 (down and up),
#                                                         default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24, ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24: TCP peer on :7100, HTTP :8080, UDP :5001
#
# Usage: pause.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file blob 1)
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer

cat >"$KVX_TMP/idle.py" <<'EOF'
# idle.py serve|client ADDR PORT DIR: one TCP connection, driven by files in DIR.
# serve: accepts one connection, echoes every line as "echo <line>"; when
#   DIR/push appears, sends "push-from-server" on its own.
# client: connects, sends "hello", checks the echo ("ready"), then waits for
#   DIR/push's line, answers "after-pause", checks the echo, prints "done".
import os, socket, sys, time
mode, addr, port, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def lines(sock):
    buf = b""
    while True:
        data = sock.recv(4096)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            l, buf = buf.split(b"\n", 1)
            yield l.decode()
if mode == "serve":
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(1); print("listening", flush=True)
    c, peer = ls.accept(); print(f"peer={peer[0]}:{peer[1]}", flush=True)
    c.settimeout(0.2)
    pushed, buf = False, b""
    while True:
        if not pushed and os.path.exists(os.path.join(d, "push")):
            c.sendall(b"push-from-server\n"); pushed = True; print("pushed", flush=True)
        try:
            data = c.recv(4096)
        except socket.timeout:
            continue
        except OSError as e:
            print(f"error {e}", flush=True); break
        if not data:
            print("eof", flush=True); break
        buf += data
        while b"\n" in buf:
            l, buf = buf.split(b"\n", 1)
            print(f"got {l.decode()}", flush=True)
            c.sendall(b"echo " + l + b"\n")
else:
    s = socket.create_connection((addr, port), timeout=5)
    s.settimeout(60)
    print(f"local={s.getsockname()[1]}", flush=True)
    it = lines(s)
    s.sendall(b"hello\n")
    assert next(it) == "echo hello"
    print("ready", flush=True)
    l = next(it)
    print(f"recv {l}", flush=True)
    s.sendall(b"after-pause\n")
    assert next(it) == "echo after-pause"
    print("done", flush=True)
    s.close()
EOF

kvx_attach_bg || kvx_fatal "cannot attach"
kvx_bg "$KVX_TMP/idle_srv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_TMP/idle.py" serve "$SRV_IP" 7100 "$KVX_TMP"
kvx_wait_file_contains 10 "$KVX_TMP/idle_srv.log" listening
kvx_bg "$KVX_TMP/idle_cli.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_TMP/idle.py" client "$SRV_IP" 7100 "$KVX_TMP"
cli_pid=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/idle_cli.log" ready || kvx_fatal "no TCP connection: $(cat "$KVX_TMP/idle_cli.log")"
peer0=$(sed -n 's/^peer=//p' "$KVX_TMP/idle_srv.log")
assert_contains "the server sees the uplink address" "$UP_IP:" "$peer0"
r=$(kvx_udp_client "$NS_G2" --bind 40300 --msg before --wait 1 "$SRV_IP:5001" || true)
assert_contains "a UDP flow before the pause" "seen=$UP_IP:" "$r"
udp_port0=$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")
ct0=$(kvx_json "i['conntrack']['entries']")
g_rst0="$(kvx_snmp "$NS_G1" Tcp OutRsts) $(kvx_snmp "$NS_G1" Tcp EstabResets)"
s_rst0="$(kvx_snmp "$NS_SRV" Tcp OutRsts) $(kvx_snmp "$NS_SRV" Tcp EstabResets)"

kvx_step "pause: uplink and bridge ports down for 6 s"
ip -n "$NS_HOST" link set "$UP" down
ip -n "$NS_HOST" link set "$P1_IF" down
ip -n "$NS_HOST" link set "$P2_IF" down
sleep 2
assert_eq "during the pause: the default route is gone with the link" "" \
	"$(ip -n "$NS_HOST" route show default)"
assert_eq "during the pause: the daemon runs" 0 "$(kill -0 "$KVX_DAEMON_PID" 2>/dev/null; echo $?)"
assert_eq "during the pause: the uplink keeps its address (status)" "$UP_IP" "$(kvx_json 'i["uplink_addr"]')"
sleep 4

kvx_step "resume: links up, the default route comes back"
ip -n "$NS_HOST" link set "$UP" up
ip -n "$NS_HOST" link set "$P1_IF" up
ip -n "$NS_HOST" link set "$P2_IF" up
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
kvx_wait_for 5 "bridge $BR forwarding" kvx_bridge_ports_forwarding || true
assert_eq "flows kept across the pause" "$ct0" "$(kvx_json "i['conntrack']['entries']")"
assert_not_contains "daemon log: nothing flushed" "flushed" "$(cat "$KVX_DAEMON_LOG")"

kvx_step "the idle connection works both ways"
touch "$KVX_TMP/push"
kvx_wait_file_contains 20 "$KVX_TMP/idle_cli.log" "done" || true
rc=0
kvx_wait_for 5 "the client to exit" bash -c "! kill -0 $cli_pid 2>/dev/null" || true
wait "$cli_pid" || rc=$?
kvx_log "client: $(tr '\n' '|' <"$KVX_TMP/idle_cli.log") server: $(tr '\n' '|' <"$KVX_TMP/idle_srv.log")"
assert_eq "client exit code" 0 "$rc"
assert_contains "server -> guest after the pause" "recv push-from-server" "$(cat "$KVX_TMP/idle_cli.log")"
assert_contains "guest -> server after the pause" "got after-pause" "$(cat "$KVX_TMP/idle_srv.log")"
assert_eq "one TCP connection (the server accepted once)" 1 "$(grep -c '^peer=' "$KVX_TMP/idle_srv.log")"
assert_eq "guest Tcp OutRsts/EstabResets unchanged" "$g_rst0" "$(kvx_snmp "$NS_G1" Tcp OutRsts) $(kvx_snmp "$NS_G1" Tcp EstabResets)"
assert_eq "server Tcp OutRsts/EstabResets unchanged" "$s_rst0" "$(kvx_snmp "$NS_SRV" Tcp OutRsts) $(kvx_snmp "$NS_SRV" Tcp EstabResets)"
r=$(kvx_udp_client "$NS_G2" --bind 40300 --msg after --wait 1 "$SRV_IP:5001" || true)
assert_eq "the UDP flow keeps its external port" "$udp_port0" "$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")"

kvx_step "new flows after the pause"
assert_eq "guest1 ping" 5 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 5)"
assert_eq "guest2 ping" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"
assert_eq "guest1 curl" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_eq "guest2 curl" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
r=$(kvx_udp_client "$NS_G1" --msg new --wait 1 "$SRV_IP:5001" || true)
assert_contains "a new UDP flow" "seen=$UP_IP:" "$r"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$(kvx_server_sources)"

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
