#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/spoof6.sh: spoof.sh over NAT66.  A guest's IPv6 address belongs
# to one MAC (kvx_nd, bpf/lib/owner6.h): its first translated frame or its
# duplicate address detection claims it.
#  1. guest2 ("B") has a 1:1 address and has spoken: kvx_nd names B's MAC
#     as the owner of B's address, the bridge's own address is the host's;
#  2. guest1 ("A") adds B's address (nodad) and sends with it (curl -6,
#     ping -6, to the server and to the LAN host): nothing gets through,
#     DROP_SPOOF_MAC counts it, no flow is made, B keeps its address, its
#     connections and its 1:1 address; A's neighbour solicitations from
#     B's address are dropped too, so the host's own traffic to B stays
#     B's;
#  3. A takes an unused address X by one ping and drops it again: B's
#     duplicate address detection for X fails (kvmxdp answers B's probe
#     from the bridge's MAC, ND_PROXY_NA), X stays A's; B's DAD for another
#     unused address Y succeeds and B leaves from Y; A sending from Y (B's,
#     no mapping, no binding of A's port: only kvx_nd refuses it) is
#     dropped as DROP_SPOOF_MAC;
#  4. A sends from 20 fresh addresses: only as many as bring it to 16
#     (KVX_ND_PER_GUEST) are answered, the rest DROP_GUEST_ADDRS, A never
#     owns more than 16; B keeps working and still claims a new address;
#  5. A sends from the bridge's own address fd42:99::1 (the host's in the
#     guests' prefix, KVX_ND_HOST in kvx_nd): DROP_SPOOFED;
#  6. A's VM is re-created with another MAC (its bridge port deleted and
#     made again): the daemon releases the old MAC's addresses at once, the
#     new A's DAD for its address succeeds and it sends from it;
#  7. the bridge is given another MAC: the daemon follows it, and B's DAD
#     for A's address is answered from the bridge's new MAC.
#
#   guest1 ns "A" (kg1<id> fd42:99::11/64, HTTP [::]:80 "guest1") --+
#   guest2 ns "B" (kg2<id> fd42:99::12/64, HTTP [::]:80 "guest2") --+ bridge kb<id> fd42:99::1/64
#     (default via the bridge's link-local)                            host ns, kvmxdp (NAT66):
#                                                                      uplink ku<id> 2001:db8:1::2/64
#                                                                      1:1 2001:db8:1::101 -> B
#   lan ns     kl<id> 2001:db8:1::1/64 = the LAN host (curl, HTTP :8090), router:
#              kr<id> 2001:db8:78::1/64; no route to fd42:99::/64
#   server ns  ks<id> 2001:db8:78::2/64 HTTP :8080, default via 2001:db8:78::1
#
# Usage: spoof6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-170}
kvx_init "${1:-}"
kvx_topology_up

# Addresses as Python's ipaddress writes them (kvx_nd is read with it).
PFX=fd42:99::/64 BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
UP6=2001:db8:1::2 RTR_UP6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2
LAN6=$RTR_UP6 ONE6=2001:db8:1::101
X6=fd42:99::a1 Y6=fd42:99::b2 B_NEW6=fd42:99::d1
PER_GUEST=16 # abi.h KVX_ND_PER_GUEST

kvx_step "IPv6 addressing and servers"
kvx_ipv6_static_up
ip -n "$NS_SRV" -6 route add default via "$RTR6"
# B runs duplicate address detection for the addresses it adds (step 3).
nsx "$NS_G2" sysctl -qw "net.ipv6.conf.$G2_IF.accept_dad=1" "net.ipv6.conf.$G2_IF.dad_transmits=1"
mkdir -p "$KVX_TMP/www"
echo hello >"$KVX_TMP/www/hello"
http_in() { # NS ADDR PORT DIR LOG (started; kvx_wait_tcp_listen below)
	kvx_bg "$KVX_TMP/$5.http.log" ip netns exec "$1" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
		--bind "$2" --directory "$4" "$3"
}
http_in "$NS_SRV" "$SRV6" 8080 "$KVX_TMP/www" srv
http_in "$NS_LAN" "$LAN6" 8090 "$KVX_TMP/www" lan
for g in 1 2; do
	ns=NS_G$g
	mkdir -p "$KVX_TMP/www$g"
	echo "guest$g" >"$KVX_TMP/www$g/who"
	http_in "${!ns}" "::" 80 "$KVX_TMP/www$g" "g$g"
done
kvx_wait_tcp_listen 10 "$NS_SRV" 8080
kvx_wait_tcp_listen 10 "$NS_LAN" 8090
kvx_wait_tcp_listen 10 "$NS_G1" 80
kvx_wait_tcp_listen 10 "$NS_G2" 80
g1mac=$(kvx_if_mac "$NS_G1" "$G1_IF")
g2mac=$(kvx_if_mac "$NS_G2" "$G2_IF")
brmac=$(kvx_if_mac "$NS_HOST" "$BR")
kvx_log "A's MAC $g1mac, B's MAC $g2mac, the bridge's $brmac"

# curl -6 from NS ('' on failure); the rest are curl's arguments.
curl6() { local ns=$1; shift; nsx "$ns" curl -6 -sS --fail --max-time 3 "$@" 2>/dev/null || true; }
# Echo replies NS got for COUNT requests from SRC to DST ('' when ping failed to run).
ping_from() { # NS SRC DST COUNT
	nsx "$1" ping -6 -n -q -c "$4" -i 0.2 -W 2 -I "$2" "$3" 2>/dev/null |
		sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true
}
last_client() { kvx_http_last_client "$KVX_TMP/$1.http.log"; } # LOG
gets() { grep -c '"GET ' "$KVX_TMP/$1.http.log" || true; }   # LOG
# kvx_nd from the pin, one "ADDRESS MAC STATE" line per entry (abi.h
# kvx_nd_val: mac[6], state; STATE 1 pending, 2 owned, 3 host, 4 dup).
nd_dump() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_nd" 2>/dev/null | "$KVX_PY" -c '
import ipaddress, json, sys
seen = {}
for e in json.load(sys.stdin):
    k = bytes(int(x, 16) for x in e["key"])
    v = bytes(int(x, 16) for x in e["value"])
    seen[k] = "%s %s %d" % (ipaddress.IPv6Address(k), ":".join("%02x" % b for b in v[:6]), v[6])
print("\n".join(seen.values()))' || true
}
nd_entry() { nd_dump | awk -v a="$1" '$1 == a {print $2, $3}'; } # ADDR -> "MAC STATE"
# The MACs kvx_bind6's IN halves of PROTO for guest ADDR deliver to.
bind6_macs() { kvx_bind_macs "$BR" "$@"; } # ADDR PROTO
nd_owner() { nd_entry "$1" | cut -d' ' -f1; }                      # ADDR -> MAC
# Entries counting against MAC's address limit (pending, owned, defended).
nd_count() { nd_dump | awk -v m="$1" '$2 == m && ($3 == 1 || $3 == 2 || $3 == 4) {n++} END {print n + 0}'; }
# The bridge port kvx_brport places MAC on ('' if none).
brport_of() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_brport" 2>/dev/null | "$KVX_PY" -c '
import json, sys
want = bytes(int(x, 16) for x in sys.argv[1].split(":"))
for e in json.load(sys.stdin):
    if bytes(int(x, 16) for x in e["key"])[:6] == want:
        print(int.from_bytes(bytes(int(x, 16) for x in e["value"][:4]), "little"))' "$1" || true
}
placed() { [[ $(brport_of "$1") == "$2" ]]; } # MAC IFINDEX
# How many of guest ADDR's flows in kvmxdp's conntrack EXPR (Python, over
# a flow f of `conntrack list --json`) holds for.
flows() { # ADDR EXPR
	kvx conntrack list --json --guest "$1" 2>/dev/null | "$KVX_PY" -c '
import json, sys
print(sum(1 for f in json.load(sys.stdin) if eval(sys.argv[1])))' "$2" 2>/dev/null || echo error
}
# Flows ADDR opened to the LAN host: to its HTTP server or echo requests
# (not the LAN host's own connections to B through the 1:1 address).
flows_to_lan() { flows "$1" "f['rem_addr'] == '$LAN6' and (f['rem_port'] == 8090 or 'icmp' in f['proto'])"; }
# Every Neighbour Advertisement B's interface receives, one line each:
# "na src_mac=MAC dst=ADDRESS target=ADDRESS" (AF_PACKET, B's stack aside).
na_sniffer() {
	kvx_bg "$KVX_TMP/na.log" ip netns exec "$NS_G2" "$KVX_PY" -u -c '
import ipaddress, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
s.bind((sys.argv[1], 0))
print("listening", flush=True)
while True:
    f, a = s.recvfrom(65535)
    ip = f[14:]
    if a[2] == socket.PACKET_OUTGOING or len(ip) < 64 or ip[6] != 58 or ip[40] != 136:
        continue
    print("na src_mac=%s dst=%s target=%s" % (":".join("%02x" % b for b in f[6:12]),
          ipaddress.IPv6Address(ip[24:40]), ipaddress.IPv6Address(ip[48:64])), flush=True)' "$G2_IF"
	NA_PID=$KVX_LAST_PID
	kvx_wait_file_contains 10 "$KVX_TMP/na.log" listening
}
nas_for() { grep -c " target=$1\$" "$KVX_TMP/na.log" || true; } # ADDR

kvx_attach_bg || kvx_fatal "cannot attach"
st=$(kvx_status_json)
must assert_eq "status: ipv6_mode" nat66 "$(kvx_json 'i["ipv6_mode"]' "$st")"
assert_eq "status: the guests' prefix" "$PFX" "$(kvx_json 'i["ipv6_subnet"]' "$st")"
assert_eq "status: guest_addresses6 sized for the guests (kvx_nd)" 4096 \
	"$(kvx_json 'i["guest_addresses6"]["max_entries"]' "$st")"
assert_eq "kvx_nd: the bridge's $BR6 is the host's (state 3)" 3 "$(nd_entry "$BR6" | cut -d' ' -f2)"
# The per-guest limit counts per bridge port once the daemon placed the
# MAC (from the bridge's FDB, which learnt both from their link-local
# chatter): wait for it, so that step 4 counts in A's own slot.
# (A ping to the bridge's link-local each: the host's, nothing claimed.)
nsx "$NS_G1" ping -6 -n -q -c 1 -W 1 "$BR_LL%$G1_IF" >/dev/null 2>&1 || true
nsx "$NS_G2" ping -6 -n -q -c 1 -W 1 "$BR_LL%$G2_IF" >/dev/null 2>&1 || true
p1=$(nsx "$NS_HOST" cat "/sys/class/net/$P1_IF/ifindex")
p2=$(nsx "$NS_HOST" cat "/sys/class/net/$P2_IF/ifindex")
kvx_wait_for 10 "A's MAC placed on its port in kvx_brport" placed "$g1mac" "$p1" || true
kvx_wait_for 10 "B's MAC placed on its port in kvx_brport" placed "$g2mac" "$p2" || true
assert_eq "kvx_brport: A on its port $P1_IF" "$p1" "$(brport_of "$g1mac")"
assert_eq "kvx_brport: B on its port $P2_IF" "$p2" "$(brport_of "$g2mac")"
out=$(kvx map add "$ONE6" "$G2_6" 2>&1) || kvx_fatal "map add $ONE6 $G2_6: $out"
assert_contains "map add $ONE6 $G2_6" "mapped $ONE6 $G2_6" "$out"

kvx_step "1. B speaks first: its address is its MAC's"
assert_eq "B: curl -6 the server" hello "$(curl6 "$NS_G2" "http://[$SRV6]:8080/hello")"
assert_eq "the server sees B as its 1:1 address $ONE6" "$ONE6" "$(last_client srv)"
assert_eq "A: curl -6 the server" hello "$(curl6 "$NS_G1" "http://[$SRV6]:8080/hello")"
assert_eq "the server sees A as the uplink's address" "$UP6" "$(last_client srv)"
assert_eq "kvx_nd: $G2_6 owned (2) by B's MAC" "$g2mac 2" "$(nd_entry "$G2_6")"
assert_eq "kvx_nd: $G1_6 owned (2) by A's MAC" "$g1mac 2" "$(nd_entry "$G1_6")"
assert_eq "LAN host -> [$ONE6]:80 reaches B" guest2 "$(curl6 "$NS_LAN" "http://[$ONE6]/who")"
assert_eq "B saw the LAN host's own address" "$LAN6" "$(last_client g2)"
n=$(nd_dump | grep -c . || true)
assert_eq "status: guest_addresses6 entries = kvx_nd's ($n)" "$n" \
	"$(kvx_json 'i["guest_addresses6"]["entries"]')"
assert_ge "kvx_nd holds the bridge's and both guests' addresses" "$n" 3

kvx_step "2. A sends with B's address: dropped, counted, nothing moves"
ip -n "$NS_G1" -6 addr add "$G2_6/128" dev "$G1_IF" nodad
spoof0=$(kvx_counter DROP_SPOOF_MAC)
lan0=$(gets lan)
assert_eq "A's curl -6 from $G2_6 to the server gets nothing" "" \
	"$(curl6 "$NS_G1" --interface "$G2_6" "http://[$SRV6]:8080/hello")"
assert_eq "A's curl -6 from $G2_6 to the LAN host gets nothing" "" \
	"$(curl6 "$NS_G1" --interface "$G2_6" "http://[$LAN6]:8090/hello")"
assert_eq "A's ping -6 from $G2_6 to the server: no reply" 0 "$(ping_from "$NS_G1" "$G2_6" "$SRV6" 3)"
assert_eq "A's ping -6 from $G2_6 to the LAN host: no reply" 0 "$(ping_from "$NS_G1" "$G2_6" "$LAN6" 3)"
# Two curls (a SYN and its retransmissions each) and six echo requests.
assert_ge "DROP_SPOOF_MAC counted A's frames" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 8
assert_eq "kvx_nd: $G2_6 still B's" "$g2mac 2" "$(nd_entry "$G2_6")"
assert_eq "the LAN host's server got nothing" "$lan0" "$(gets lan)"
assert_eq "no flow of $G2_6 to the LAN host was made" 0 "$(flows_to_lan "$G2_6")"
assert_contains "status names the drop" DROP_SPOOF_MAC "$(kvx status --bridge "$BR")"

kvx_step "2. B's 1:1 address and connections keep going to B"
assert_eq "LAN host -> [$ONE6]:80 still reaches B" guest2 "$(curl6 "$NS_LAN" "http://[$ONE6]/who")"
assert_eq "B saw the LAN host" "$LAN6" "$(last_client g2)"
assert_eq "A saw none of it" 0 "$(gets g1)"
assert_eq "B: curl -6 the server still works" hello "$(curl6 "$NS_G2" --interface "$G2_6" "http://[$SRV6]:8080/hello")"
assert_eq "the server sees B as $ONE6" "$ONE6" "$(last_client srv)"
assert_eq "B: curl -6 the LAN host (control: it would have seen A's)" hello \
	"$(curl6 "$NS_G2" --interface "$G2_6" "http://[$LAN6]:8090/hello")"
assert_eq "the LAN host sees B as $ONE6" "$ONE6" "$(last_client lan)"
assert_eq "conntrack lists B's flow to the LAN host (control)" 1 "$(flows_to_lan "$G2_6")"
assert_eq "A's own address still works" hello "$(curl6 "$NS_G1" --interface "$G1_6" "http://[$SRV6]:8080/hello")"
assert_eq "the server sees A as the uplink's address" "$UP6" "$(last_client srv)"

kvx_step "2. A's neighbour discovery from B's address cannot teach the host A's MAC for it"
# Linux solicits from the source of the packet that needs the neighbour:
# with its cache flushed, A's ping from B's address makes A send an NS
# from B's address with A's MAC in it, which the host's neighbour cache
# would take (RFC 4861 7.2.3): the host's own traffic to B would go to A.
ip -n "$NS_G1" -6 neigh flush dev "$G1_IF"
ip -n "$NS_HOST" -6 neigh flush dev "$BR"
spoof0=$(kvx_counter DROP_SPOOF_MAC)
ping_from "$NS_G1" "$G2_6" "$SRV6" 2 >/dev/null
assert_ge "DROP_SPOOF_MAC counted A's neighbour discovery too" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 1
assert_not_contains "the host's neighbour cache has no A's MAC for $G2_6" "$g1mac" \
	"$(ip -n "$NS_HOST" -6 neigh show "$G2_6" dev "$BR")"
assert_eq "the host's own curl -6 to [$G2_6] reaches B" guest2 "$(curl6 "$NS_HOST" "http://[$G2_6]/who")"
assert_contains "the host's neighbour cache: $G2_6 at B's MAC" "$g2mac" \
	"$(ip -n "$NS_HOST" -6 neigh show "$G2_6" dev "$BR")"
ip -n "$NS_G1" -6 addr del "$G2_6/128" dev "$G1_IF"
# A's resolution of its router failed (its solicitations were dropped):
# start A afresh, as its next packet from its own address would.
kvx_log "A's neighbours after: $(ip -n "$NS_G1" -6 neigh show dev "$G1_IF" | tr '\n' ';')"
ip -n "$NS_G1" -6 neigh flush dev "$G1_IF"
assert_eq "A's own address still works after it" hello "$(curl6 "$NS_G1" --interface "$G1_6" "http://[$SRV6]:8080/hello")"

kvx_step "3. an address A took by a frame is defended against B's DAD, though A dropped it"
ip -n "$NS_G1" -6 addr add "$X6/128" dev "$G1_IF" nodad
assert_eq "A: one ping -6 from $X6 to the server answered" 1 "$(ping_from "$NS_G1" "$X6" "$SRV6" 1)"
assert_eq "kvx_nd: $X6 owned (2) by A's MAC" "$g1mac 2" "$(nd_entry "$X6")"
assert_eq "conntrack lists A's echo flow from $X6 (control)" 1 "$(flows "$X6" "'icmp' in f['proto']")"
ip -n "$NS_G1" -6 addr del "$X6/128" dev "$G1_IF"
na_sniffer
na0=$(kvx_counter ND_PROXY_NA)
ip -n "$NS_G2" -6 addr add "$X6/128" dev "$G2_IF"
dadfailed() { [[ $(ip -n "$NS_G2" -6 addr show dev "$G2_IF" to "$X6/128") == *dadfailed* ]]; }
kvx_wait_for 8 "B's DAD for $X6 to fail" dadfailed || true
assert_contains "B's ip -6 addr: $X6 dadfailed" dadfailed "$(ip -n "$NS_G2" -6 addr show dev "$G2_IF" to "$X6/128")"
assert_ge "ND_PROXY_NA: kvmxdp answered B's probe" $(($(kvx_counter ND_PROXY_NA) - na0)) 1
assert_eq "B got the answer: an NA for $X6 from the bridge's MAC to ff02::1, and no other" \
	"na src_mac=$brmac dst=ff02::1 target=$X6" "$(grep " target=$X6\$" "$KVX_TMP/na.log" | sort -u)"
assert_eq "kvx_nd: $X6 still A's (B's probe took nothing)" "$g1mac 2" "$(nd_entry "$X6")"
ip -n "$NS_G2" -6 addr del "$X6/128" dev "$G2_IF"

kvx_step "3. control: B's DAD for an unused address succeeds, B leaves from it"
ip -n "$NS_G2" -6 addr add "$Y6/128" dev "$G2_IF"
kvx_wait_for 8 "B's DAD for $Y6 to end" bash -c "! ip -n '$NS_G2' -6 addr show dev '$G2_IF' to '$Y6/128' | grep -q tentative" || true
y=$(ip -n "$NS_G2" -6 addr show dev "$G2_IF" to "$Y6/128")
assert_contains "B has $Y6" "$Y6" "$y"
assert_not_contains "B's $Y6 passed DAD" tentative "$y"
assert_eq "nobody answered B's probe for $Y6" 0 "$(nas_for "$Y6")"
kvx_kill_pid "$NA_PID"
assert_eq "kvx_nd: B's probe claimed $Y6 for B's MAC" "$g2mac" "$(nd_owner "$Y6")"
assert_eq "B: curl -6 from $Y6" hello "$(curl6 "$NS_G2" --interface "$Y6" "http://[$SRV6]:8080/hello")"
assert_eq "the server sees it from the uplink's address ($Y6 has no 1:1)" "$UP6" "$(last_client srv)"
assert_eq "kvx_nd: $Y6 owned (2) by B's MAC" "$g2mac 2" "$(nd_entry "$Y6")"
# Y6 has no mapping and A's curl would bind a port of its own: no
# binding's owner stands in the way, only kvx_nd's.
ip -n "$NS_G1" -6 addr add "$Y6/128" dev "$G1_IF" nodad
spoof0=$(kvx_counter DROP_SPOOF_MAC)
assert_eq "A's curl -6 from B's $Y6 to the LAN host gets nothing" "" \
	"$(curl6 "$NS_G1" --interface "$Y6" "http://[$LAN6]:8090/hello")"
assert_eq "A's ping -6 from B's $Y6 to the server: no reply" 0 "$(ping_from "$NS_G1" "$Y6" "$SRV6" 2)"
assert_ge "DROP_SPOOF_MAC counted them" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 3
assert_eq "conntrack: no flow of $Y6 to the LAN host or echo flow (B made neither)" 0 \
	"$(flows "$Y6" "f['rem_port'] == 8090 or 'icmp' in f['proto']")"
assert_eq "kvx_nd: $Y6 still B's" "$g2mac 2" "$(nd_entry "$Y6")"
ip -n "$NS_G1" -6 addr del "$Y6/128" dev "$G1_IF"
ip -n "$NS_G2" -6 addr del "$Y6/128" dev "$G2_IF"

kvx_step "4. A's address limit: $PER_GUEST per guest"
before=$(nd_count "$g1mac")
kvx_log "A owns $before address(es) before: $(nd_dump | awk -v m="$g1mac" '$2 == m {printf "%s ", $1}')"
assert_eq "A owns its own address and $X6" 2 "$before"
room=$((PER_GUEST - before))
# kvx_gaddrs' slots are a keyed hash of the port: A's and B's may share
# one (then B's addresses count against A's room too).
slots=$(bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_gaddrs" 2>/dev/null | "$KVX_PY" -c '
import json, sys
print(" ".join(str(int.from_bytes(bytes(int(x, 16) for x in e["value"]), "little"))
               for e in json.load(sys.stdin) if any(int(x, 16) for x in e["value"])))' || true)
kvx_log "kvx_gaddrs' counting slots: ${slots:-none}"
if [[ $slots =~ ^[0-9]+$ ]] && ((slots > before)); then
	kvx_log "A's and B's ports share a slot: $slots address(es) count there"
	room=$((PER_GUEST - slots))
fi
zs=()
for i in $(seq 1 20); do zs+=("fd42:99::c:$i"); done
for z in "${zs[@]}"; do echo "addr add $z/128 dev $G1_IF nodad"; done | ip -n "$NS_G1" -batch -
ga0=$(kvx_counter DROP_GUEST_ADDRS)
answered=0 most=0 got=() want=()
for z in "${zs[@]}"; do
	r=$(ping_from "$NS_G1" "$z" "$SRV6" 1)
	got+=("${r:-?}")
	if [[ $r == 1 ]]; then answered=$((answered + 1)); fi
	# A's entries after each claim: never past the limit.
	c=$(nd_count "$g1mac")
	if ((c > most)); then most=$c; fi
	if ((${#want[@]} < room)); then want+=(1); else want+=(0); fi
done
kvx_log "replies per address, in order: ${got[*]}"
assert_eq "answered: the first $room fresh addresses, up to the limit" "$room" "$answered"
assert_eq "in order: those first, then none" "${want[*]}" "${got[*]}"
assert_le "A never owned more than $PER_GUEST (most seen)" "$most" "$PER_GUEST"
assert_eq "A owns all its room now" $((before + room)) "$(nd_count "$g1mac")"
assert_ge "DROP_GUEST_ADDRS counted the rest" $(($(kvx_counter DROP_GUEST_ADDRS) - ga0)) $((20 - room))
assert_eq "kvx_nd: no entry for the refused ones" $room \
	"$(nd_dump | grep -c '^fd42:99::c:' || true)"
for z in "${zs[@]}"; do echo "addr del $z/128 dev $G1_IF"; done | ip -n "$NS_G1" -batch -
assert_eq "A's own address still works" hello "$(curl6 "$NS_G1" --interface "$G1_6" "http://[$SRV6]:8080/hello")"
assert_eq "B still works: curl -6 from $G2_6" hello "$(curl6 "$NS_G2" --interface "$G2_6" "http://[$SRV6]:8080/hello")"
assert_eq "the server sees B as $ONE6" "$ONE6" "$(last_client srv)"
ip -n "$NS_G2" -6 addr add "$B_NEW6/128" dev "$G2_IF" nodad
assert_eq "B still claims a new address: ping -6 from $B_NEW6 answered" 1 "$(ping_from "$NS_G2" "$B_NEW6" "$SRV6" 1)"
assert_eq "kvx_nd: $B_NEW6 owned (2) by B's MAC" "$g2mac 2" "$(nd_entry "$B_NEW6")"
ip -n "$NS_G2" -6 addr del "$B_NEW6/128" dev "$G2_IF"

kvx_step "5. A sends from the bridge's own address $BR6: the host's"
# The topology gives the bridge $BR6 in the guests' prefix (libvirt's
# <ip family='ipv6' address=...>): the daemon marks it KVX_ND_HOST.
assert_eq "kvx_nd: $BR6 is the host's (state 3)" 3 "$(nd_entry "$BR6" | cut -d' ' -f2)"
ip -n "$NS_G1" -6 addr add "$BR6/128" dev "$G1_IF" nodad
sp0=$(kvx_counter DROP_SPOOFED)
assert_eq "A's ping -6 from $BR6 to the server: no reply" 0 "$(ping_from "$NS_G1" "$BR6" "$SRV6" 3)"
assert_eq "A's curl -6 from $BR6 gets nothing" "" "$(curl6 "$NS_G1" --interface "$BR6" "http://[$SRV6]:8080/hello")"
assert_ge "DROP_SPOOFED counted A's frames" $(($(kvx_counter DROP_SPOOFED) - sp0)) 4
assert_eq "kvx_nd: $BR6 still the host's" 3 "$(nd_entry "$BR6" | cut -d' ' -f2)"
ip -n "$NS_G1" -6 addr del "$BR6/128" dev "$G1_IF"
assert_eq "A's own address still works" hello "$(curl6 "$NS_G1" --interface "$G1_6" "http://[$SRV6]:8080/hello")"

kvx_step "6. A's VM re-created with another MAC: its old self's addresses are free at once"
# The port goes with the VM (libvirt deletes the tap): the daemon releases
# the addresses the MACs placed on it owned, so the new VM's DAD for its
# old address is not answered in its old self's name (it would fail for
# good: a static or EUI-64 address is not retried).
assert_eq "kvx_nd: $G1_6 owned (2) by A's MAC" "$g1mac 2" "$(nd_entry "$G1_6")"
echo x | nsx "$NS_G1" socat -u - "UDP6-SENDTO:[$SRV6]:9,bind=[$G1_6]"
assert_contains "kvx_bind6: $G1_6's UDP binding delivers to A's MAC" "$g1mac" "$(bind6_macs "$G1_6" 17)"
ip -n "$NS_HOST" link del "$P1_IF" # the pair: A's $G1_IF goes too
released() { [[ -z $(nd_entry "$G1_6") && $(bind6_macs "$G1_6" 17) != *"$g1mac"* ]]; }
kvx_wait_for 5 "the daemon to release A's addresses" released || true
assert_eq "kvx_nd: $G1_6 released with A's port" "" "$(nd_entry "$G1_6")"
# What comes in for A's bindings is not flooded to every guest for a MAC
# that is gone: they deliver to the address's next owner.
assert_not_contains "kvx_bind6: the UDP binding no longer delivers to A's old MAC" "$g1mac" "$(bind6_macs "$G1_6" 17)"
assert_contains "kvx_bind6: $G1_6's UDP binding kept, without a MAC" 00:00:00:00:00:00 "$(bind6_macs "$G1_6" 17)"
kvx_guest1_port_remake
nsx "$NS_G1" sysctl -qw "net.ipv6.conf.$G1_IF.accept_ra=0" "net.ipv6.conf.$G1_IF.accept_dad=1" \
	"net.ipv6.conf.$G1_IF.dad_transmits=1"
kvx_wait_for 5 "bridge $BR forwarding" kvx_bridge_ports_forwarding || true
g1new=$(kvx_if_mac "$NS_G1" "$G1_IF")
assert_ne "the new A has another MAC" "$g1mac" "$g1new"
ip -n "$NS_G1" -6 addr add "$G1_6/64" dev "$G1_IF"
kvx_wait_for 8 "A's DAD for $G1_6 to end" bash -c "! ip -n '$NS_G1' -6 addr show dev '$G1_IF' to '$G1_6/128' | grep -q tentative" || true
a6=$(ip -n "$NS_G1" -6 addr show dev "$G1_IF" to "$G1_6/128")
assert_contains "the new A has $G1_6" "$G1_6" "$a6"
assert_not_contains "the new A's DAD for $G1_6 succeeded" dadfailed "$a6"
ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
assert_eq "the new A: curl -6 from $G1_6" hello "$(curl6 "$NS_G1" --interface "$G1_6" "http://[$SRV6]:8080/hello")"
assert_eq "kvx_nd: $G1_6 owned (2) by the new A's MAC" "$g1new 2" "$(nd_entry "$G1_6")"

kvx_step "7. the bridge's MAC changes: DAD answers come from the new one"
newbrmac=02:6b:76:99:00:07
ip -n "$NS_HOST" link set "$BR" address "$newbrmac"
# (A bridge whose MAC was never set takes its ports' lowest: step 6's
# new port may have changed it already; the daemon follows that too.)
kvx_wait_file_contains 5 "$KVX_DAEMON_LOG" " -> $newbrmac (answers to guests' IPv6 duplicate address probes)" || true
assert_contains "the daemon says so" "bridge $BR MAC " "$(grep -- "-> $newbrmac" "$KVX_DAEMON_LOG")"
na_sniffer
ip -n "$NS_G2" -6 addr add "$G1_6/128" dev "$G2_IF"
dadfailed() { [[ $(ip -n "$NS_G2" -6 addr show dev "$G2_IF" to "$G1_6/128") == *dadfailed* ]]; }
kvx_wait_for 8 "B's DAD for A's $G1_6 to fail" dadfailed || true
nas=$(grep " target=$G1_6\$" "$KVX_TMP/na.log" | sort -u)
# A has the address and defends it itself too (from its own MAC).
assert_contains "B got the answer for $G1_6 from the bridge's new MAC" \
	"na src_mac=$newbrmac dst=ff02::1 target=$G1_6" "$nas"
assert_eq "and none from another MAC than the bridge's new one or A's" "" \
	"$(grep -v -e "src_mac=$newbrmac " -e "src_mac=$g1new " <<<"$nas" || true)"
kvx_kill_pid "$NA_PID"
ip -n "$NS_G2" -6 addr del "$G1_6/128" dev "$G2_IF"

kvx_step "checksums"
kvx_assert_no_csum_errors6 "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN" "$NS_SRV"
kvx_finish
