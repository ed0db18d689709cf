#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/hostile.sh: the LAN is not trusted, and neither is a guest's
# idea of its own address.  Crafted packets (python raw sockets) from a
# hostile LAN neighbour and from a guest; every phase checks that nothing
# reached a guest without a flow (AF_PACKET sniffers on the guests'
# interfaces), that no flow was created, and that the drops are counted.
#  A. Unsolicited inbound from the LAN: to the guests' addresses (the LAN
#     routes the guest subnet to the host), UDP/TCP/ICMP -> DROP_TO_SUBNET;
#     to the uplink address on random ports -> the host's business
#     (PASS_HOST), nothing to a guest; to a guest's bound external port
#     from another remote -> the host's too (PASS_HOST: no flow asked for
#     it; no --eif), nothing to the guest.
#  B. Spoofed guest sources (foreign addresses) -> DROP_SPOOFED, nothing
#     arrives at the server.
#  C. Odd TCP flags from a guest (SYN+FIN, SYN+RST, none, all, FIN or RST
#     without a flow; netfilter's tcp_valid_flags): no flow is created,
#     nothing reaches the server, the drops are counted.
#  D. Odd TCP flags from the LAN to a guest address, to random uplink
#     ports and to the external port of an established guest connection
#     (from another remote): nothing reaches the guest, no flow.
#  E. Normal traffic still works, the established connection too.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+  sniffer, HTTP :80, UDP :40400 talking
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+  sniffer, HTTP :80
#                                                  bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24   <- kvmxdp
#   lan ns:    router + attacker, kl<id> 10.77.0.1/24 (route 192.168.122.0/24 via 10.77.0.2),
#              kr<id> 10.78.0.1/24, ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24: sniffer, HTTP :8080, UDP :5001, TCP hold :7400
#
# Usage: hostile.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file blob 1)
kvx_udp_server "$SRV_IP:5001"
kvx_guest_http_servers

cat >"$KVX_TMP/hostile.py" <<'EOF'
# hostile.py send SRC,DST,tcp|udp|icmp,SPORT,DPORT[,FLAGS]...  (raw IPv4, IP_HDRINCL)
# hostile.py sniff IFACE  -> "src=A sport=P dst=B dport=Q proto=N flags=F" per IPv4 packet in
# hostile.py hold-serve ADDR PORT | hold-client ADDR PORT DIR  (one TCP connection, echo)
import os, random, socket, struct, sys, time
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def send(src, dst, proto, sport, dport, flags):
    a, b = socket.inet_aton(src), socket.inet_aton(dst)
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), random.getrandbits(32) if flags & 0x10 else 0, 5 << 4, flags, 64240, 0, 0)
        pn = 6
    elif proto == "udp":
        data = b"hostile"
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
        pn = 17
    else:
        data = b"hostile"
        l4 = struct.pack("!BBHHH", 8, 0, 0, sport, 1) + data
        pn = 1
    if pn == 1:
        c = csum(l4)
        l4 = l4[:2] + struct.pack("!H", c) + l4[4:]
    else:
        c = csum(a + b + struct.pack("!BBH", 0, pn, len(l4)) + l4)
        off = 16 if pn == 6 else 6
        l4 = l4[:off] + struct.pack("!H", c or 0xffff) + l4[off + 2:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), random.getrandbits(16), 0, 64, pn, 0, a, b)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip + l4, (dst, 0))
def sniff(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    print("sniffing", flush=True)
    while True:
        f, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING or len(f) < 34 or f[12:14] != b"\x08\x00":
            continue
        ip = f[14:]
        ihl = (ip[0] & 15) * 4
        proto, src, dst = ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        sport = dport = flags = 0
        if proto in (6, 17) and len(ip) >= ihl + 4:
            sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if proto == 6 and len(ip) >= ihl + 14:
            flags = ip[ihl + 13]
        print(f"src={src} sport={sport} dst={dst} dport={dport} proto={proto} flags={flags}", flush=True)
def hold_serve(addr, port):
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(1); print("listening", flush=True)
    c, peer = ls.accept(); print(f"peer={peer[0]}:{peer[1]}", flush=True)
    while True:
        d = c.recv(4096)
        if not d:
            print("eof", flush=True); return
        print(f"got {d.decode().strip()}", flush=True)
        c.sendall(b"echo " + d)
def hold_client(addr, port, d):
    s = socket.create_connection((addr, port), timeout=30)
    s.sendall(b"one\n"); assert s.recv(4096) == b"echo one\n"; print("ready", flush=True)
    while not os.path.exists(os.path.join(d, "go")):
        time.sleep(0.1)
    s.sendall(b"two\n"); assert s.recv(4096) == b"echo two\n"; print("done", flush=True)
    s.close()
m = sys.argv[1]
if m == "send":
    for spec in sys.argv[2:]:
        f = spec.split(",")
        send(f[0], f[1], f[2], int(f[3]), int(f[4]), int(f[5], 0) if len(f) > 5 else 0)
elif m == "sniff":
    sniff(sys.argv[2])
elif m == "hold-serve":
    hold_serve(sys.argv[2], int(sys.argv[3]))
else:
    hold_client(sys.argv[2], int(sys.argv[3]), sys.argv[4])
EOF
hx() { local ns=$1; shift; nsx "$ns" "$KVX_PY" "$KVX_TMP/hostile.py" "$@"; }
# Packets are collected in PKTS (one spec each) and sent by one python run.
PKTS=()
pk() { PKTS+=("$(IFS=,; echo "$*")"); } # SRC DST PROTO SPORT DPORT [FLAGS]
send_pkts() { # NS
	hx "$1" send "${PKTS[@]}"
	PKTS=()
}
for g in 1 2; do
	ns=NS_G$g ifv=G${g}_IF
	kvx_bg "$KVX_TMP/g$g.sniff" ip netns exec "${!ns}" "$KVX_PY" -u "$KVX_TMP/hostile.py" sniff "${!ifv}"
	kvx_wait_file_contains 10 "$KVX_TMP/g$g.sniff" sniffing
done
kvx_bg "$KVX_TMP/srv.sniff" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_TMP/hostile.py" sniff "$SRV_IF"
kvx_wait_file_contains 10 "$KVX_TMP/srv.sniff" sniffing
# The hostile neighbour routes the guest subnet to the host.
ip -n "$NS_LAN" route add "$SUBNET" via "$UP_IP"

kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "eif off (address-and-port-dependent filtering)" false "$(kvx_json 'i["eif"]')"

# Guest packets seen since line N of a sniffer log, from SRC (regex).
lines() { wc -l <"$1"; }
seen_since() { # LOG N REGEX
	tail -n +"$(($2 + 1))" "$1" | grep -E -- "$3" || true
}
ct_entries() { kvx_json "i['conntrack']['entries']"; }
# kvx_ct flows of guest G_IP with guest port PORT ("" = none).
ct_of_port() { # G_IP PORT
	"$KVX_PY" - "$1" "$2" "$(kvx_pin_dir "$BR")" <<'EOF'
import json, socket, struct, subprocess, sys
a, port = socket.inet_aton(sys.argv[1]), struct.pack("!H", int(sys.argv[2]))
out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", sys.argv[3] + "/kvx_ct"],
                     capture_output=True, text=True, check=True).stdout
n = 0
for e in json.loads(out):
    k = bytes(int(x, 16) for x in e["key"])
    if k[0:4] == a and k[8:10] == port:
        n += 1
print(n)
EOF
}

kvx_step "setup: a guest UDP flow and an established guest TCP connection"
r=$(kvx_udp_client "$NS_G1" --bind 40400 --msg hi --wait 1 "$SRV_IP:5001" || true)
assert_contains "guest1 UDP flow" "seen=$UP_IP:" "$r"
P_UDP=$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")
kvx_bg "$KVX_TMP/hold_srv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_TMP/hostile.py" hold-serve "$SRV_IP" 7400
kvx_wait_file_contains 10 "$KVX_TMP/hold_srv.log" listening
kvx_bg "$KVX_TMP/hold_cli.log" ip netns exec "$NS_G2" "$KVX_PY" -u "$KVX_TMP/hostile.py" hold-client "$SRV_IP" 7400 "$KVX_TMP"
hold_pid=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/hold_cli.log" ready || kvx_fatal "no TCP connection: $(cat "$KVX_TMP/hold_cli.log")"
P_TCP=$(sed -n "s/^peer=$UP_IP:\([0-9]*\)$/\1/p" "$KVX_TMP/hold_srv.log")
[[ -n $P_UDP && -n $P_TCP ]] || kvx_fatal "external ports unknown (udp '$P_UDP' tcp '$P_TCP')"
kvx_log "external ports: UDP $P_UDP (guest1:40400), TCP $P_TCP (guest2 -> $SRV_IP:7400)"
g1_0=$(lines "$KVX_TMP/g1.sniff") g2_0=$(lines "$KVX_TMP/g2.sniff")

kvx_step "A: unsolicited inbound from the LAN"
ct0=$(ct_entries)
sub0=$(kvx_counter DROP_TO_SUBNET) host0=$(kvx_counter PASS_HOST)
n_sub=0
for dst in "$G1_IP" "$G2_IP"; do
	for port in 22 80 40400 $((RANDOM % 60000 + 1024)); do
		pk "$LAN_IP" "$dst" udp 5555 "$port"
		pk "$LAN_IP" "$dst" tcp 5555 "$port" 0x02
		n_sub=$((n_sub + 2))
	done
	pk "$LAN_IP" "$dst" icmp 4242 0
	n_sub=$((n_sub + 1))
done
n_host=0
for ((i = 0; i < 6; i++)); do
	port=$((RANDOM % 20000 + 1024)) # below the NAT range: never a binding
	pk "$LAN_IP" "$UP_IP" udp 5555 "$port"
	pk "$LAN_IP" "$UP_IP" tcp 5555 "$port" 0x02
	n_host=$((n_host + 2))
done
# The guests' own external ports, from a remote they never talked to.
pk "$LAN_IP" "$UP_IP" udp 5001 "$P_UDP"
pk "$LAN_IP" "$UP_IP" udp 5555 "$P_UDP"
pk "$LAN_IP" "$UP_IP" tcp 7400 "$P_TCP" 0x02
pk "$LAN_IP" "$UP_IP" tcp 5555 "$P_TCP" 0x10
send_pkts "$NS_LAN"
sleep 0.5
assert_ge "DROP_TO_SUBNET counted every packet to a guest address" "$(($(kvx_counter DROP_TO_SUBNET) - sub0))" "$n_sub"
assert_ge "PASS_HOST: unbound uplink ports, and bound ones from another remote, are the host's" \
	"$(($(kvx_counter PASS_HOST) - host0))" $((n_host + 4))
assert_le "no flow created by inbound packets" "$(ct_entries)" "$ct0"
assert_empty "guest1 saw nothing from the LAN" "$(seen_since "$KVX_TMP/g1.sniff" "$g1_0" .)"
assert_empty "guest2 saw nothing from the LAN" "$(seen_since "$KVX_TMP/g2.sniff" "$g2_0" .)"
assert_empty "guest HTTP servers got no request" "$(cat "$KVX_TMP/g1.http.log" "$KVX_TMP/g2.http.log" | grep '"GET' || true)"

kvx_step "B: spoofed guest sources"
sp0=$(kvx_counter DROP_SPOOFED) ct0=$(ct_entries) s0=$(lines "$KVX_TMP/srv.sniff")
for src in 10.99.0.5 10.77.0.9 "$SRV_IP" 192.168.123.11 172.16.0.1; do
	pk "$src" "$SRV_IP" udp 40500 5001
	pk "$src" "$SRV_IP" tcp 40500 7400 0x02
done
send_pkts "$NS_G1"
sleep 0.5
assert_ge "DROP_SPOOFED counted every spoofed packet" "$(($(kvx_counter DROP_SPOOFED) - sp0))" 10
assert_le "no flow created by spoofed packets" "$(ct_entries)" "$ct0"
assert_empty "the server got none of them" "$(seen_since "$KVX_TMP/srv.sniff" "$s0" 'sport=40500|src=(10\.99|10\.77\.0\.9|192\.168|172\.16)')"

kvx_step "C: odd TCP flags from a guest"
# name:flags; each from its own guest port towards the server's port 7300.
odd="synfin:0x03 synrst:0x06 null:0x00 all:0xff xmas:0x29 finonly:0x01 rstonly:0x04 finpsh:0x09"
s0=$(lines "$KVX_TMP/srv.sniff") g1_0=$(lines "$KVX_TMP/g1.sniff")
drop_sum() { kvx_json 'sum(v["packets"] for k, v in i["counters"].items() if k.startswith("DROP_"))'; }
drops0=$(drop_sum)
port=41000 n_odd=0
for nf in $odd; do
	port=$((port + 1))
	pk "$G1_IP" "$SRV_IP" tcp "$port" 7300 "${nf#*:}"
	n_odd=$((n_odd + 1))
done
# RST to a random external port (no flow towards it)
pk "$G1_IP" "$SRV_IP" tcp 41100 $((RANDOM % 20000 + 30000)) 0x04
n_odd=$((n_odd + 1))
send_pkts "$NS_G1"
sleep 0.5
port=41000
for nf in $odd; do
	port=$((port + 1))
	assert_eq "guest ${nf%%:*} (flags ${nf#*:}) created no flow" 0 "$(ct_of_port "$G1_IP" "$port")"
done
assert_eq "a guest RST to a random port created no flow" 0 "$(ct_of_port "$G1_IP" 41100)"
assert_empty "the server received none of the odd packets" "$(seen_since "$KVX_TMP/srv.sniff" "$s0" 'proto=6 ')"
assert_ge "drop counters moved by every odd packet" "$(($(drop_sum) - drops0))" "$n_odd"
assert_empty "nothing came back to guest1" "$(seen_since "$KVX_TMP/g1.sniff" "$g1_0" 'proto=6 ')"

kvx_step "D: odd TCP flags from the LAN"
ct0=$(ct_entries) g1_0=$(lines "$KVX_TMP/g1.sniff") g2_0=$(lines "$KVX_TMP/g2.sniff")
sub0=$(kvx_counter DROP_TO_SUBNET) host0=$(kvx_counter PASS_HOST)
for nf in $odd; do
	f=${nf#*:}
	pk "$LAN_IP" "$G2_IP" tcp 5555 80 "$f"
	pk "$LAN_IP" "$UP_IP" tcp 5555 $((RANDOM % 20000 + 1024)) "$f"
	pk "$LAN_IP" "$UP_IP" tcp 5555 "$P_TCP" "$f"
	pk "$LAN_IP" "$UP_IP" tcp 7400 "$P_TCP" "$f" # right port, wrong remote address
done
send_pkts "$NS_LAN"
sleep 0.5
n=$(wc -w <<<"$odd")
assert_ge "DROP_TO_SUBNET: odd flags to a guest address" "$(($(kvx_counter DROP_TO_SUBNET) - sub0))" "$n"
assert_ge "PASS_HOST: odd flags to uplink ports, the connection's external one included" \
	"$(($(kvx_counter PASS_HOST) - host0))" $((3 * n))
assert_le "no flow created from the LAN" "$(ct_entries)" "$ct0"
assert_empty "guest1 saw nothing from the LAN" "$(seen_since "$KVX_TMP/g1.sniff" "$g1_0" .)"
assert_empty "guest2 saw nothing from the LAN" "$(seen_since "$KVX_TMP/g2.sniff" "$g2_0" .)"

kvx_step "E: normal traffic still works"
touch "$KVX_TMP/go"
kvx_wait_file_contains 10 "$KVX_TMP/hold_cli.log" "done" || true
rc=0
kvx_wait_for 5 "the held connection's client to exit" bash -c "! kill -0 $hold_pid 2>/dev/null" || true
wait "$hold_pid" || rc=$?
assert_eq "the held connection's client exit code" 0 "$rc"
assert_contains "the established connection carries data both ways" "got two" "$(cat "$KVX_TMP/hold_srv.log")"
assert_eq "guest1 curl" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_eq "guest2 ping" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"
r=$(kvx_udp_client "$NS_G1" --bind 40400 --msg again --wait 1 "$SRV_IP:5001" || true)
assert_contains "guest1's UDP flow keeps its external port" "seen=$UP_IP:$P_UDP " "$r"
srcs=$(cat "$KVX_TMP/g1.sniff" "$KVX_TMP/g2.sniff" | sed -n 's/^src=\([0-9.]*\) .*/\1/p' | sort -u | paste -sd' ')
kvx_log "sources the guests ever received from: $srcs"
assert_not_contains "guests never received from the LAN attacker" "$LAN_IP" "$srcs"
srv_srcs=$(sed -n 's/^src=\([0-9.]*\) .*/\1/p' "$KVX_TMP/srv.sniff" | grep -vxF "$ROUTER_IP" | sort -u | paste -sd' ')
assert_eq "the server received only from the uplink address" "$UP_IP" "$srv_srcs"

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
