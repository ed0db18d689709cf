#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/churn.sh: short TCP connections far beyond what the NAT port
# range holds, with nothing dropped.
#  - a deliberately small range (--nat-ports 61000-61511, 512 ports; the
#    per-guest limit its default 7/8: 448): guest1 opens 3000 short
#    connections (256 bytes each way, the guest closes first) at 100 a
#    second, six times the range.  Without TIME_WAIT reuse every one holds
#    its port 150 s and the range is gone after 5 s; with it (RFC 7857)
#    guest1 reuses its own ports 0.5 s into their TIME_WAIT.  At its limit a
#    port must come round every 448 / rate seconds: 4.5 s at 100/s leaves
#    room for connections slowed by a loaded machine (at 150/s, 3 s, a
#    loaded run once found no closed port quiet for the 2 s it waited
#    then: 6 refused).  Every connection completes with its bytes echoed
#    intact, none needs a retransmitted SYN, DROP_PORTS_EXHAUSTED and
#    DROP_GUEST_PORTS stay 0.
#  - while guest1 churns at its port limit, guest2 opens connections of its
#    own: every one succeeds (the eighth of the pool the limit leaves).
#  - the default pool (no --nat-ports: 1024-65535 without the host's
#    ephemeral range and its listeners): status shows it, and 6000
#    connections as fast as they go (more than the 4536 ports of the old
#    default 61000-65535) complete without a drop; no binding lands in the
#    ephemeral range or on the port the host listens on.  That the listener
#    is skipped is shown, not left to chance: a guest connection from the
#    listener's own port (which port preservation would keep) reaches the
#    server from another port, while one from the next port keeps it.
#  - --flow-quota 300: 1500 short connections at 75 a second complete
#    without a drop (DROP_GUEST_QUOTA and DROP_TABLE_FULL stay 0): closed
#    flows (TIME_WAIT, kept 4 minutes) give way to new ones once quiet for
#    2 s, and guest1 never holds more flows than its quota.  The quota
#    holds 4 s of connections at that rate: 2 s for the connections
#    themselves, which a loaded machine stretches (at 100 a second, 3 s,
#    a run beside a build refused a few).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   churn
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   connections during it
#                                    bridge kb<id> (192.168.122.1/24), host ns
#                                    uplink ku<id> 10.77.0.2/24 <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 (echo :9000; :9001 answers the peer's port)
#
# Usage: churn.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-200} # the ctest TIMEOUT is 230 (vm-tests/CMakeLists.txt)
kvx_init "${1:-}"
kvx_topology_up
FLOWGEN=("$KVX_PY" -u "$KVX_LIBDIR/flowgen.py")
kvx_bg "$KVX_TMP/echo.log" ip netns exec "$NS_SRV" "${FLOWGEN[@]}" serve "$SRV_IP" 9000
kvx_wait_tcp_listen 10 "$NS_SRV" 9000
# A host service on the uplink side, inside the default pool: never allocated.
HOST_PORT=20022
kvx_bg "$KVX_TMP/hostsvc.log" ip netns exec "$NS_HOST" "$KVX_PY" -c "
import socket, time
s = socket.socket(); s.bind(('0.0.0.0', $HOST_PORT)); s.listen(); time.sleep(3600)"
kvx_wait_tcp_listen 10 "$NS_HOST" "$HOST_PORT"
# The server's view of a connection: it answers each with the source port
# it sees (the external port the NAT gave it).
kvx_bg "$KVX_TMP/peerport.log" ip netns exec "$NS_SRV" "$KVX_PY" -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$SRV_IP', 9001)); s.listen()
while True:
    c, peer = s.accept(); c.sendall(b'%d\\n' % peer[1]); c.close()"
kvx_wait_tcp_listen 10 "$NS_SRV" 9001
# The source port the server sees for a guest1 connection from port $1.
seen_port() {
	nsx "$NS_G1" "$KVX_PY" -c "
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(5); s.bind(('$G1_IP', int(sys.argv[1]))); s.connect(('$SRV_IP', 9001))
print(s.recv(64).decode().strip())" "$1"
}

# The external ports of the dynamic TCP bindings (IN halves) right now.
ext_ports() {
	kvx_map_entries kvx_bind | "$KVX_PY" -c '
import json, sys
for e in json.load(sys.stdin):
    k, v = e["formatted"]["key"], e["formatted"]["value"]
    if k["dir"] == 1 and k["proto"] == 6 and not v["flags"] & 1:
        print(int.from_bytes(k["port"].to_bytes(2, "little"), "big"))'
}
# The dynamic TCP bindings (OUT halves) a guest address holds right now,
# as "PORTS TENANTS": the ports of its own, counted against its
# --guest-ports limit, and its endpoints that share one of them (port
# overlapping, KVX_BIND_F_SHARED: bounded by KVX_TENANTS_PER_PORT times
# the limit instead, and taken when no port of its own has been closed
# long enough to be reused, as on a loaded machine).
guest_ports_held() {
	kvx_map_entries kvx_bind | "$KVX_PY" -c '
import json, socket, struct, sys
STATIC, ONE_TO_ONE, SHARED = 1, 2, 64
want = struct.unpack("<I", socket.inet_aton(sys.argv[1]))[0]
outs = [e["formatted"]["value"]["flags"] for e in json.load(sys.stdin)
        if e["formatted"]["key"]["dir"] == 0 and e["formatted"]["key"]["proto"] == 6
        and e["formatted"]["key"]["addr"] == want]
dyn = [f for f in outs if not f & (STATIC | ONE_TO_ONE)]
print(sum(1 for f in dyn if not f & SHARED), sum(1 for f in dyn if f & SHARED))' "$1"
}

kvx_step "small range: 3000 short connections from guest1 through 512 ports"
kvx_attach_bg --nat-ports 61000-61511 || kvx_fatal "cannot attach"
assert_eq "kvx_cfg.guest_ports: the default, 7/8 of the 512 ports" 448 "$(kvx_cfg_field guest_ports)"
d0=$(kvx_drops)
kvx_bg "$KVX_TMP/churn1.log" ip netns exec "$NS_G1" "${FLOWGEN[@]}" churn "$SRV_IP:9000" 3000 --rate 100 --parallel 32
CHURN_PID=$KVX_LAST_PID
# guest2's connections while guest1 churns at its limit (after the first
# 5 s, by when guest1 holds its 448 ports).
sleep 6
# (a failed connection makes flowgen exit 1: its summary line is the check)
g2=$(nsx "$NS_G2" "${FLOWGEN[@]}" churn "$SRV_IP:9000" 60 --rate 10 --parallel 4 | tail -1 || true)
kvx_log "guest2 during the churn: $g2"
assert_contains "every one of guest2's connections during the churn completed" "ok=60 fail=0" "$g2"
# Sampled until it is there (a loaded machine slows the climb), while
# guest1's churn goes on.
for _ in 1 2 3 4 5 6 7 8; do
	read -r held tenants < <(guest_ports_held "$G1_IP")
	((held >= 440)) && break
	sleep 1
done
# What the datapath counts against the limits: every guest's kvx_gports
# counter, summed (its slots are keyed by the guest's MAC), against the
# ports both guests hold.
counted=$(bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_gports" |
	"$KVX_PY" -c '
import json, sys
print(sum(e["formatted"]["value"] for e in json.load(sys.stdin)))')
read -r held2 _ < <(guest_ports_held "$G2_IP")
kvx_log "guest1 holds $held ports during its churn (limit 448), and $tenants endpoints on shared ones; guest2 $held2; both guests' port counters: $counted"
assert_ge "guest1 is at its port limit while guest2 connects" "$held" 440
assert_le "guest1 never holds more than its limit (a few for racing CPUs)" "$held" 452
# One remote for every connection: a port shares with no other endpoint
# (a tenant needs a remote the port has no flow with), so guest1 goes on
# by reusing its own closed ports, never by sharing.
assert_eq "guest1 shares no port (it reuses its own)" 0 "$tenants"
assert_le "the port counters are the ports held (within a few for racing CPUs)" \
	"$(( counted > held + held2 ? counted - held - held2 : held + held2 - counted ))" 8
wait "$CHURN_PID" || kvx_fail "guest1's churn failed: $(head -5 "$KVX_TMP/churn1.log")"
out=$(tail -1 "$KVX_TMP/churn1.log")
kvx_log "guest1: $out"
assert_contains "all 3000 connections completed with their bytes echoed" "ok=3000 fail=0" "$out"
assert_contains "none waited for a retransmitted SYN (nothing dropped)" "slow=0" "$out"
assert_eq "no drop counter moved (DROP_PORTS_EXHAUSTED, DROP_GUEST_PORTS, ...)" "$d0" "$(kvx_drops)"
n=$(ext_ports | wc -l)
assert_le "bindings held: at most the range" "$n" 512
kvx_log "bindings held after the churn: $n"

kvx_step "default pool: status and 6000 connections as fast as they go"
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null || kvx_fatal "detach"
kvx_attach_bg || kvx_fatal "cannot attach with defaults"
eph=$(kvx_sysctl_get "$NS_HOST" net.ipv4.ip_local_port_range)
read -r eph_lo eph_hi <<<"$eph"
assert_eq "pool range 1024-65535" "1024 65535" "$(kvx_json "i['nat_pool']['nat_port_lo']") $(kvx_json "i['nat_pool']['nat_port_hi']")"
assert_eq "its hole: the host's ephemeral range" "$eph_lo $eph_hi" "$(kvx_json "i['nat_pool']['nat_skip_lo']") $(kvx_json "i['nat_pool']['nat_skip_hi']")"
assert_ge "status counts the host's listening port out" "$(kvx_json "i['nat_pool']['host_listening']")" 1
assert_eq "status: available = pool - listening" \
	$(($(kvx_json "i['nat_pool']['ports']") - $(kvx_json "i['nat_pool']['host_listening']"))) \
	"$(kvx_json "i['nat_pool']['available']")"
assert_contains "status text shows the pool" "NAT pool" "$(kvx status --bridge "$BR")"
assert_eq "a guest port in the pool is kept (port preservation)" $((HOST_PORT + 1)) "$(seen_port $((HOST_PORT + 1)))"
p=$(seen_port "$HOST_PORT")
kvx_log "guest1's connection from port $HOST_PORT reached the server from port $p"
assert_ne "the host's listening port is never a NAT port, not even the guest's own" "$HOST_PORT" "$p"
assert_ge "that connection went through (another port)" "${p:-0}" 1024
d0=$(kvx_drops)
out=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$SRV_IP:9000" 6000 --parallel 32 | tail -1 || true)
kvx_log "guest1: $out"
assert_contains "all 6000 connections completed with their bytes echoed" "ok=6000 fail=0" "$out"
assert_contains "none waited for a retransmitted SYN" "slow=0" "$out"
assert_eq "no drop counter moved" "$d0" "$(kvx_drops)"
ports=$(ext_ports)
# More ports than the old default (61000-65535) holds were in use: the
# pool's width, not reuse, carried these.
assert_ge "bindings held: more than the old default's 4536 ports" "$(wc -l <<<"$ports")" 4537
assert_eq "no binding in the ephemeral range" 0 "$(awk -v lo="$eph_lo" -v hi="$eph_hi" '$1 >= lo && $1 <= hi' <<<"$ports" | wc -l)"
assert_eq "no binding below 1024 or on the host's listening port" 0 \
	"$(awk -v p="$HOST_PORT" '$1 < 1024 || $1 == p' <<<"$ports" | wc -l)"

kvx_step "flow quota 300: 1500 short connections at 75/s, five times the quota within 4 minutes"
# A closed flow stays 4 minutes (RFC 5382/7857); counted against the quota
# all that time, they would refuse every connection past the 300th (a
# guest churning more than quota / 240 s a second).  A closed flow quiet
# for 2 s gives way to the guest's next connection instead.
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null || kvx_fatal "detach"
kvx_attach_bg --flow-quota 300 || kvx_fatal "cannot attach with --flow-quota 300"
assert_eq "kvx_cfg.flow_quota" 300 "$(kvx_cfg_field flow_quota)"
d0=$(kvx_drops)
out=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$SRV_IP:9000" 1500 --rate 75 --parallel 32 | tail -1 || true)
kvx_log "guest1: $out"
assert_contains "all 1500 connections completed with their bytes echoed" "ok=1500 fail=0" "$out"
assert_contains "none waited for a retransmitted SYN" "slow=0" "$out"
assert_eq "no drop counter moved (DROP_GUEST_QUOTA, DROP_TABLE_FULL, ...)" "$d0" "$(kvx_drops)"
flows=$(kvx_map_entries kvx_ct | "$KVX_PY" -c '
import json, socket, struct, sys
want = struct.unpack("<I", socket.inet_aton(sys.argv[1]))[0]
print(sum(1 for e in json.load(sys.stdin) if e["formatted"]["key"]["int_addr"] == want))' "$G1_IP")
kvx_log "guest1's flows in kvx_ct after the churn: $flows"
assert_le "guest1 holds at most its quota of flows (a few for racing CPUs)" "$flows" 304

kvx_finish
