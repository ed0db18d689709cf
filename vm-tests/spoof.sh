#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/spoof.sh: one guest cannot impersonate another.
# guest2 ("B") has a 1:1 address and a port forward and has spoken; guest1
# ("A") adds B's address as a secondary address and sends with it (curl,
# ping): kvmxdp drops A's frames (DROP_SPOOF_MAC), B's 1:1 address and its
# forward keep reaching B, B's own connections keep working; A's ARP in
# B's name (the requests A's stack sends from B's address, arpspoof's
# replies, bare or in two priority tags) never reaches the host: its
# neighbour cache keeps B's MAC, its own curl to B reaches B.  A that takes
# B's MAC as well as its address is stopped at its own bridge port (the
# port guard, DROP_MAC_ELSEWHERE, once B's MAC settled on B's port): the
# bridge keeps B's MAC on B's port, B's mappings keep reaching B; only a
# MAC quiet for the bridge's ageing time may move.  A's VM
# re-created with another MAC (its port deleted and made again) has its
# address back at once.  A DHCP lease (attach --dhcp-leases, libvirt's
# status file format) owns an address no guest has used yet, and takes one
# an active guest used (a static address inside the DHCP range), which the
# daemon says.  With --mode
# xdp, a bridge port whose learning is off gets no forwarding-database entry from kvmxdp (NTF_USE)
# for the guest frames XDP redirects past the bridge, and XDP learns
# nothing there either (kvx_xfdb): replies to B go through TC and the
# bridge.
#
#   guest1 ns "A" (kg1<id> 192.168.122.11/24 + .12 spoofed, HTTP :80) --+
#   guest2 ns "B" (kg2<id> 192.168.122.12/24, HTTP :80) ----------------+ bridge kb<id>
#                                                                          host ns, kvmxdp:
#                                                                          uplink ku<id> 10.77.0.2/24
#                                                                          1:1     10.77.0.101 -> B
#                                                                          forward uplink:8080 -> B:80
#   lan ns:    kl<id> 10.77.0.1/24 = the LAN host (curl), kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 HTTP :8080
#
# Usage: spoof.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-240}
kvx_init "${1:-}"
kvx_require_tools bridge
kvx_topology_up
kvx_http_server
kvx_guest_http_servers
EXT_B=10.77.0.101
mac_of() { ip -n "$1" -br link show "$2" | awk '{print $3}'; }
g1mac=$(mac_of "$NS_G1" "$G1_IF")
g2mac=$(mac_of "$NS_G2" "$G2_IF")
# kvx_guest's owner of ADDR from the pin: "MAC FLAGS" (MAC in lower case,
# FLAGS 1 = leased), '' if none.
owner_entry() { # ADDR
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_guest" 2>/dev/null | "$KVX_PY" -c '
import ipaddress, json, sys
want = int(ipaddress.IPv4Address(sys.argv[1])).to_bytes(4, "big")
for e in json.load(sys.stdin):
    if bytes(int(x, 16) for x in e["key"]) == want:
        v = bytes(int(x, 16) for x in e["value"])
        print(":".join("%02x" % b for b in v[:6]), int.from_bytes(v[6:8], "little"))' "$1" || true
}
owner() { owner_entry "$1" | cut -d' ' -f1; }
owned_by() { [[ $(owner "$1") == "$2" ]]; } # ADDR MAC
# Has kvx_xfdb (the XDP port program's learnt MACs) an entry for MAC?
xfdb_has() { # MAC
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_xfdb" 2>/dev/null | "$KVX_PY" -c '
import json, sys
want = bytes(int(x, 16) for x in sys.argv[1].split(":"))
sys.exit(0 if any(bytes(int(x, 16) for x in e["key"])[:6] == want
                  for e in json.load(sys.stdin)) else 1)' "$1"
}
p2_target() { [[ $(kvx_dev_field "$P2_IF" redirect_target) == true ]]; }

# A filter of a tap's own after the port guard's priority (libvirt's
# <bandwidth> puts a policer there): here a BPF program that counts frames
# (this kernel has neither cls_matchall nor act_gact), put on A's port below.
cat >"$KVX_TMP/count.bpf.c" <<EOF
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");
SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *n = bpf_map_lookup_elem(&seen, &k);

	if (n)
		__sync_fetch_and_add(n, 1);
	return TC_ACT_UNSPEC;
}
char _license[] SEC("license") = "GPL";
EOF
"$KVX_LIBDIR/../cmake/bpf-cc" -c "$KVX_TMP/count.bpf.c" -o "$KVX_TMP/count.o" ||
	kvx_fatal "cannot build the counting BPF program"
bpftool prog loadall "$KVX_TMP/count.o" "$BPFFS/count$KVX_ID" pinmaps "$BPFFS/count$KVX_ID.maps" ||
	kvx_fatal "bpftool prog loadall"
# Its map by id, through the program (the map's pin is refused: EPERM).
seen_id=$(bpftool -j prog show pinned "$BPFFS/count$KVX_ID/count_tc" | "$KVX_PY" -c '
import json, sys
print(json.load(sys.stdin)["map_ids"][0])')
foreign_pkts() { # frames A's port's own filter saw
	bpftool -j map lookup id "$seen_id" key 0 0 0 0 | "$KVX_PY" -c '
import json, sys
e = json.load(sys.stdin)
if "value" not in e:
    sys.exit("bpftool: %s" % e)
v = e["value"]
print(v if isinstance(v, int) else int.from_bytes(bytes(int(x, 16) for x in v), "little"))'
}
kvx_attach_bg || kvx_fatal "cannot attach"
assert_ok "map add $EXT_B $G2_IP" kvx map add "$EXT_B" "$G2_IP"
assert_ok "map add uplink:8080 $G2_IP:80" kvx map add uplink:8080 "$G2_IP:80" --proto tcp

kvx_step "B speaks first: its address is its MAC's"
assert_ne "B -> server" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
assert_eq "server sees B as $EXT_B" "$EXT_B" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "LAN -> $EXT_B reaches B" guest2 "$(kvx_http_get "$NS_LAN" "http://$EXT_B/who")"
assert_eq "kvx_guest: $G2_IP owned by B's MAC" "$g2mac" "$(owner "$G2_IP")"

kvx_step "A sends with B's address: dropped, counted, nothing moves"
ip -n "$NS_G1" addr add "$G2_IP/32" dev "$G1_IF"
spoof0=$(kvx_counter DROP_SPOOF_MAC)
assert_eq "A's curl from $G2_IP gets nothing" "" \
	"$(nsx "$NS_G1" curl -sS --fail --max-time 3 --interface "$G2_IP" "http://$SRV_IP:8080/" 2>/dev/null || true)"
assert_eq "A's ping from $G2_IP gets no reply" 0 \
	"$(nsx "$NS_G1" ping -n -q -c 3 -i 0.2 -W 1 -I "$G2_IP" "$SRV_IP" 2>/dev/null |
		sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true)"
assert_ge "DROP_SPOOF_MAC counted A's frames" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 4
assert_eq "kvx_guest: $G2_IP still B's" "$g2mac" "$(owner "$G2_IP")"
assert_contains "status names the drop" DROP_SPOOF_MAC "$(kvx status --bridge "$BR")"
# A asked for its gateway from B's address (below).
assert_not_contains "the host's neighbour cache has no A's MAC for $G2_IP" "$g1mac" \
	"$(ip -n "$NS_HOST" neigh show "$G2_IP" dev "$BR")"

kvx_step "B's mappings and connections keep going to B"
assert_eq "LAN -> $EXT_B still reaches B" guest2 "$(kvx_http_get "$NS_LAN" "http://$EXT_B/who")"
assert_eq "B saw the LAN host" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g2.http.log")"
assert_eq "LAN -> $UP_IP:8080 still reaches B" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_ne "B -> server still works" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
assert_eq "server sees B as $EXT_B" "$EXT_B" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "A saw none of it" "" "$(grep -c GET "$KVX_TMP/g1.http.log" | grep -v '^0$' || true)"
assert_ne "A's own address still works" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "server sees A as the uplink address" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "kvx_guest: $G1_IP owned by A's MAC" "$g1mac" "$(owner "$G1_IP")"

kvx_step "A's ARP in B's name cannot teach the host A's MAC for B's address"
# The host's neighbour cache takes the sender of an ARP request to it, and
# of a reply for an entry it has (arp_process): the host's own traffic to B
# would go to A.  Linux asks from the source of the packet that needs the
# neighbour: with its cache flushed, A's ping from B's address makes A ask
# for its gateway from B's address with A's MAC.  Then what arpspoof sends.
assert_eq "the host's own curl to $G2_IP reaches B (control)" guest2 "$(kvx_http_get "$NS_HOST" "http://$G2_IP/who")"
brmac=$(mac_of "$NS_HOST" "$BR")
host_neigh() { ip -n "$NS_HOST" neigh show "$G2_IP" dev "$BR"; }
arp_reply() { nsx "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" reply "$G1_IF" "$G2_IP" --to "$brmac" "$GW_IP" "$@"; }
ip -n "$NS_G1" neigh flush dev "$G1_IF"
spoof0=$(kvx_counter DROP_SPOOF_MAC)
nsx "$NS_G1" ping -n -q -c 2 -i 0.2 -W 1 -I "$G2_IP" "$SRV_IP" >/dev/null 2>&1 || true
assert_ge "DROP_SPOOF_MAC counted A's frames" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 1
assert_not_contains "the host's neighbour cache has no A's MAC for $G2_IP" "$g1mac" "$(host_neigh)"
# A reply within a second of the entry's last update is ignored
# (arp_process, locktime): one that could work.
sleep 1.1
spoof0=$(kvx_counter DROP_SPOOF_MAC)
assert_eq "A sends the host ARP replies: $G2_IP is at A" "sent 3" \
	"$(arp_reply)"
assert_ge "DROP_SPOOF_MAC counted them" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 3
assert_not_contains "the host's neighbour cache still has no A's MAC for $G2_IP" "$g1mac" "$(host_neigh)"
# The same in a VLAN tag inside a priority tag: the kernel takes both off
# (the second after kvmxdp's hook) and the host would learn it.
sleep 1.1
bad0=$(kvx_counter DROP_MALFORMED)
assert_eq "A sends them in two priority tags" "sent 3" "$(arp_reply --tags 2)"
assert_ge "DROP_MALFORMED counted them" $(($(kvx_counter DROP_MALFORMED) - bad0)) 3
assert_not_contains "the host's neighbour cache still has no A's MAC for $G2_IP" "$g1mac" "$(host_neigh)"
assert_eq "the host's own curl to $G2_IP reaches B" guest2 "$(kvx_http_get "$NS_HOST" "http://$G2_IP/who")"
assert_contains "the host's neighbour cache: $G2_IP at B's MAC" "$g2mac" "$(host_neigh)"
ip -n "$NS_G1" addr del "$G2_IP/32" dev "$G1_IF"
ip -n "$NS_G1" neigh flush dev "$G1_IF"
assert_eq "A's own ARP and address still work" guest1 "$(kvx_http_get "$NS_HOST" "http://$G1_IP/who")"

# A's VM made again (a new port, a new MAC or MAC), with its address.
a_recreated_as() { # [MAC]
	kvx_guest1_port_remake
	[[ -z ${1:-} ]] || ip -n "$NS_G1" link set dev "$G1_IF" address "$1"
	ip -n "$NS_G1" addr add "$G1_IP/24" dev "$G1_IF"
	ip -n "$NS_G1" route add default via "$GW_IP"
	kvx_wait_for 5 "bridge $BR forwarding" kvx_bridge_ports_forwarding || true
}
a_recreated() { a_recreated_as ""; }
brport_of() { kvx_brport_of "$1"; } # MAC
placed_on() { [[ $(brport_of "$1") == "$2" ]]; } # MAC IFINDEX
# kvx_brport's flags of MAC (2: KVX_BRPORT_F_HELD, the port guard's), ''
# if not placed.
brport_flags() { # MAC
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_brport" 2>/dev/null | "$KVX_PY" -c '
import json, sys
want = bytes(int(x, 16) for x in sys.argv[1].split(":"))
for e in json.load(sys.stdin):
    if bytes(int(x, 16) for x in e["key"][:6]) == want:
        print(int.from_bytes(bytes(int(x, 16) for x in e["value"][4:8]), "little"))' "$1" || true
}
held_on() { placed_on "$1" "$2" && (($(brport_flags "$1") & 2)); } # MAC IFINDEX
not_held() { [[ -n $(brport_flags "$1") ]] && ! (($(brport_flags "$1") & 2)); } # MAC
# The bridge's own entry for MAC: the port's name, '' if none.
fdb_port() { # MAC
	bridge -n "$NS_HOST" fdb show br "$BR" | awk -v m="$1" 'tolower($1) == m && $2 == "dev" {print $3; exit}'
}
# The MACs kvx_bind's IN halves of PROTO for guest ADDR deliver to.
bind_macs() { kvx_bind_macs "$BR" "$@"; } # ADDR PROTO

kvx_step "A's VM re-created with another MAC: its old self's address is free at once"
# The port goes with the VM (libvirt deletes the tap): the daemon releases
# the addresses the MAC on it had learnt, instead of holding them from
# the new VM for KVX_GUEST_IDLE_NS (5 minutes without network).
assert_eq "kvx_guest: $G1_IP owned by A's MAC" "$g1mac" "$(owner "$G1_IP")"
# The bridge keeps its MAC, as libvirt's do: one without a MAC of its own
# takes its lowest port's, and a new port could change the gateway's MAC
# under B (which learns it again only when its neighbour entry expires).
ip -n "$NS_HOST" link set dev "$BR" address "$(mac_of "$NS_HOST" "$BR")"
# A UDP datagram: a binding that delivers to A's MAC (a closed TCP
# connection's binding goes to the next SYN that takes it over anyway).
echo x | nsx "$NS_G1" socat -u - "UDP4-SENDTO:$SRV_IP:9,bind=$G1_IP"
assert_contains "kvx_bind: $G1_IP's UDP binding delivers to A's MAC" "$g1mac" "$(bind_macs "$G1_IP" 17)"
ip -n "$NS_HOST" link del "$P1_IF" # the pair: A's $G1_IF goes too
released() { [[ -z $(owner "$G1_IP") && $(bind_macs "$G1_IP" 17) != *"$g1mac"* ]]; }
kvx_wait_for 5 "the daemon to release A's address" released || true
assert_eq "kvx_guest: $G1_IP released with A's port" "" "$(owner "$G1_IP")"
assert_contains "the daemon says so" "released the addresses of guest MACs whose bridge port went: 1 IPv4" \
	"$(cat "$KVX_DAEMON_LOG")"
# What comes in for A's bindings is not flooded to every guest for a MAC
# that is gone: they deliver to the address's next owner.
assert_not_contains "kvx_bind: the UDP binding no longer delivers to A's old MAC" "$g1mac" "$(bind_macs "$G1_IP" 17)"
assert_contains "kvx_bind: $G1_IP's UDP binding kept, without a MAC" 00:00:00:00:00:00 "$(bind_macs "$G1_IP" 17)"
a_recreated
g1new=$(mac_of "$NS_G1" "$G1_IF")
assert_ne "the new A has another MAC" "$g1mac" "$g1new"
assert_ne "the new A: curl from $G1_IP" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "kvx_guest: $G1_IP owned by the new A's MAC" "$g1new" "$(owner "$G1_IP")"
assert_eq "the host's own curl to $G1_IP reaches the new A" guest1 "$(kvx_http_get "$NS_HOST" "http://$G1_IP/who")"
g1mac=$g1new

kvx_step "A takes B's MAC and address while B is there: the port guard drops A's frames, B keeps both"
p1=$(ip -n "$NS_HOST" -o link show "$P1_IF" | cut -d: -f1)
p2=$(ip -n "$NS_HOST" -o link show "$P2_IF" | cut -d: -f1)
assert_ne "B -> server (B is there)" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
# B's MAC has been on its port, without a move, for the settle time (30 s
# from the daemon's first look) by now or soon.
kvx_wait_for 40 "B's port to hold B's MAC" held_on "$g2mac" "$p2" || true
assert_eq "kvx_brport: B's MAC on B's port $P2_IF, held" "$p2 2" "$(brport_of "$g2mac") $(brport_flags "$g2mac")"
# A's port was re-made above: a new port gets the guard a sync later.
guarded_p1() { [[ $(kvx_dev_field "$P1_IF" prog) == kvx_port_in ]]; }
kvx_wait_for 5 "the guard on A's re-made port" guarded_p1 || true
assert_eq "status: the port guard on A's port" kvx_port_in "$(kvx_dev_field "$P1_IF" prog)"
assert_eq "status: the port guard on B's port" kvx_port_in "$(kvx_dev_field "$P2_IF" prog)"
# What the guard lets through goes on to the port's own filters (on the
# clsact the daemon made for the guard on A's re-made port).
tc -n "$NS_HOST" filter add dev "$P1_IF" ingress pref 49152 handle 1 bpf \
	object-pinned "$BPFFS/count$KVX_ID/count_tc" da
f0=$(foreign_pkts)
assert_ne "A -> server (as itself)" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_ge "A's own policer still saw A's frames past the guard" $(($(foreign_pkts) - f0)) 5
ip -n "$NS_G1" link set dev "$G1_IF" address "$g2mac"
ip -n "$NS_G1" addr add "$G2_IP/32" dev "$G1_IF"
guard0=$(kvx_counter DROP_MAC_ELSEWHERE)
a_gets0=$(grep -c GET "$KVX_TMP/g1.http.log" || true)
assert_eq "A's curl as B (B's MAC and $G2_IP) gets nothing" "" \
	"$(nsx "$NS_G1" curl -sS --fail --max-time 3 --interface "$G2_IP" "http://$SRV_IP:8080/" 2>/dev/null || true)"
assert_ge "DROP_MAC_ELSEWHERE counted A's frames" $(($(kvx_counter DROP_MAC_ELSEWHERE) - guard0)) 3
assert_eq "the bridge still has B's MAC on B's port" "$P2_IF" "$(fdb_port "$g2mac")"
assert_eq "kvx_guest: $G2_IP still B's" "$g2mac" "$(owner "$G2_IP")"
assert_eq "LAN -> $EXT_B still reaches B" guest2 "$(kvx_http_get "$NS_LAN" "http://$EXT_B/who")"
assert_eq "LAN -> $UP_IP:8080 still reaches B" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_ne "B -> server still works" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
assert_eq "A saw none of it" "$a_gets0" "$(grep -c GET "$KVX_TMP/g1.http.log" || true)"
assert_contains "status names the drop" DROP_MAC_ELSEWHERE "$(kvx status --bridge "$BR")"
ip -n "$NS_G1" addr del "$G2_IP/32" dev "$G1_IF"
ip -n "$NS_G1" link set dev "$G1_IF" address "$g1mac"
ip -n "$NS_G1" neigh flush dev "$G1_IF"
assert_ne "A as itself again" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"

kvx_step "B quiet for the bridge's ageing time, A sent with B's MAC (the bridge moved it to A's port), the daemon restarted, A's VM went: B's address is not freed"
assert_eq "kvx_guest: $G2_IP owned by B's MAC" "$g2mac" "$(owner "$G2_IP")"
# B stays silent from here until A's port is deleted: any frame of B's
# takes its MAC back to B's port.  Its router solicitations (on a back-off
# that can fall into this window) and its gateway's ARP are what it sends
# unasked; B has no IPv6 role in this test.
ip -n "$NS_G2" neigh replace "$GW_IP" lladdr "$(mac_of "$NS_HOST" "$BR")" dev "$G2_IF" nud permanent
nsx "$NS_G2" sysctl -qw "net.ipv6.conf.$G2_IF.disable_ipv6=1"
# The bridge forgets a quiet MAC after its ageing time (300 s): 2 s here.
# B's MAC stays placed on B's port for its address, no longer held.
ip -n "$NS_HOST" link set dev "$BR" type bridge ageing_time 200
kvx_wait_for 15 "B's MAC to age out of the bridge (not held)" not_held "$g2mac" || true
assert_eq "kvx_brport: B's MAC kept on B's port, not held" "$p2 0" "$(brport_of "$g2mac") $(brport_flags "$g2mac")"
ip -n "$NS_HOST" link set dev "$BR" type bridge ageing_time 30000
# A probe (sender 0.0.0.0: it claims nothing) from B's MAC on A's port:
# the guard lets the quiet MAC move, as the bridge does.
nsx "$NS_G1" "$KVX_PY" "$KVX_LIBDIR/arp_peer.py" probe "$G1_IF" 192.168.122.99 \
	--sha "$g2mac" --count 1 --wait 0.3 >/dev/null || true
kvx_wait_for 5 "the daemon to place B's MAC on A's port" placed_on "$g2mac" "$p1" || true
assert_eq "kvx_brport: B's MAC on A's port $P1_IF, not held (not settled)" "$p1 0" \
	"$(brport_of "$g2mac") $(brport_flags "$g2mac")"
# The time of that move outlives the daemon (it is in kvx_brport).
kvx_daemon_stop
kvx_attach_bg || kvx_fatal "cannot attach again"
# Still there when the port goes (B sent nothing since).
assert_eq "kvx_brport: B's MAC still on A's port" "$p1" "$(brport_of "$g2mac")"
ip -n "$NS_HOST" link del "$P1_IF"
a_released() { grep -q "released the addresses of guest MACs whose bridge port went" "$KVX_DAEMON_LOG"; }
kvx_wait_for 5 "the daemon to release A's address" a_released || true
assert_contains "the daemon released A's address only" \
	"released the addresses of guest MACs whose bridge port went: 1 IPv4" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "kvx_guest: $G2_IP still B's" "$g2mac" "$(owner "$G2_IP")"
assert_eq "kvx_guest: A's own $G1_IP released" "" "$(owner "$G1_IP")"
a_recreated
assert_eq "LAN -> $EXT_B reaches B" guest2 "$(kvx_http_get "$NS_LAN" "http://$EXT_B/who")"
assert_ne "A: curl from $G1_IP" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
g1mac=$(mac_of "$NS_G1" "$G1_IF")

kvx_step "a DHCP lease owns an address before anyone used it"
G3_IP=192.168.122.13
LEASES=$KVX_TMP/leases.status
cat >"$LEASES" <<EOF
[
  {
    "ip-address": "$G3_IP",
    "mac-address": "52:54:00:12:34:56",
    "hostname": "g3",
    "expiry-time": $(($(date +%s) + 3600))
  }
]
EOF
kvx_daemon_stop
kvx_attach_bg --dhcp-leases "$LEASES" || kvx_fatal "cannot attach --dhcp-leases"
kvx_wait_for 5 "the daemon read the lease" owned_by "$G3_IP" 52:54:00:12:34:56 || true
assert_eq "kvx_guest: $G3_IP leased" "52:54:00:12:34:56 1" "$(owner_entry "$G3_IP")"
ip -n "$NS_G1" addr add "$G3_IP/32" dev "$G1_IF"
spoof0=$(kvx_counter DROP_SPOOF_MAC)
assert_eq "A's curl from the leased $G3_IP gets nothing" "" \
	"$(nsx "$NS_G1" curl -sS --fail --max-time 3 --interface "$G3_IP" "http://$SRV_IP:8080/" 2>/dev/null || true)"
assert_ge "DROP_SPOOF_MAC counted" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 1
assert_eq "kvx_guest: $G3_IP still the lease's" 52:54:00:12:34:56 "$(owner "$G3_IP")"
# The lease ends (the file loses it): the owner becomes a learnt one,
# idle from now on, so A still cannot have it for KVX_GUEST_IDLE_NS.
echo '[]' >"$LEASES"
lease_ended() { [[ $(owner_entry "$G3_IP") == "52:54:00:12:34:56 0" ]]; }
kvx_wait_for 5 "the daemon saw the lease end" lease_ended || true
assert_eq "after the lease, still not A's" "" \
	"$(nsx "$NS_G1" curl -sS --fail --max-time 2 --interface "$G3_IP" "http://$SRV_IP:8080/" 2>/dev/null || true)"
ip -n "$NS_G1" addr del "$G3_IP/32" dev "$G1_IF"

kvx_step "a lease of an address an active guest uses (static, inside the DHCP range): the lease takes it, and the daemon says so"
G4_IP=192.168.122.14
ip -n "$NS_G2" addr add "$G4_IP/32" dev "$G2_IF"
assert_ne "B's curl from $G4_IP (B uses it)" "" \
	"$(nsx "$NS_G2" curl -sS --fail --max-time 3 --interface "$G4_IP" "http://$SRV_IP:8080/" 2>/dev/null || true)"
assert_eq "kvx_guest: $G4_IP learnt by B" "$g2mac 0" "$(owner_entry "$G4_IP")"
cat >"$LEASES" <<EOF
[
  {
    "ip-address": "$G4_IP",
    "mac-address": "52:54:00:65:43:21",
    "hostname": "late",
    "expiry-time": $(($(date +%s) + 3600))
  }
]
EOF
taken_said() { grep -q "dhcp lease: $G4_IP is leased to 52:54:00:65:43:21, and taken from $g2mac" "$KVX_DAEMON_LOG"; }
kvx_wait_for 5 "the daemon to say the lease took $G4_IP" taken_said || true
assert_contains "the daemon says whose address the lease took" \
	"dhcp lease: $G4_IP is leased to 52:54:00:65:43:21, and taken from $g2mac" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "kvx_guest: $G4_IP the lease's" "52:54:00:65:43:21 1" "$(owner_entry "$G4_IP")"
spoof0=$(kvx_counter DROP_SPOOF_MAC)
assert_eq "B's curl from $G4_IP gets nothing now" "" \
	"$(nsx "$NS_G2" curl -sS --fail --max-time 2 --interface "$G4_IP" "http://$SRV_IP:8080/" 2>/dev/null || true)"
assert_ge "... dropped as spoofed" $(($(kvx_counter DROP_SPOOF_MAC) - spoof0)) 1
assert_ne "B's own $G2_IP still works" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
ip -n "$NS_G2" addr del "$G4_IP/32" dev "$G2_IF"

kvx_step "a leased guest's VM shut down (its port deleted): it keeps its address, and what comes in for it is not flooded to B"
EXT_A=10.77.0.103
cat >"$LEASES" <<EOF
[
  {
    "ip-address": "$G1_IP",
    "mac-address": "$g1mac",
    "hostname": "a",
    "expiry-time": $(($(date +%s) + 3600))
  }
]
EOF
a_leased() { [[ $(owner_entry "$G1_IP") == "$g1mac 1" ]]; }
kvx_wait_for 5 "the daemon to read A's lease" a_leased || true
assert_eq "kvx_guest: $G1_IP leased to A" "$g1mac 1" "$(owner_entry "$G1_IP")"
assert_ok "map add $EXT_A $G1_IP" kvx map add "$EXT_A" "$G1_IP"
assert_ne "A -> server from $EXT_A" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "LAN -> $EXT_A reaches A" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT_A/who")"
assert_contains "kvx_bind: A's 1:1 binding delivers to A's MAC" "$g1mac" "$(bind_macs "$G1_IP" 0)"
assert_eq "the host's own curl to $G1_IP (its neighbour entry)" guest1 "$(kvx_http_get "$NS_HOST" "http://$G1_IP/who")"
ip -n "$NS_HOST" link del "$P1_IF"
a_gone() { [[ $(owner_entry "$G1_IP") == "$g1mac 3" && $(bind_macs "$G1_IP" 0) != *"$g1mac"* ]]; }
kvx_wait_for 5 "the daemon to mark A's lease gone" a_gone || true
assert_eq "kvx_guest: A keeps $G1_IP by its lease, marked gone (3)" "$g1mac 3" "$(owner_entry "$G1_IP")"
assert_not_contains "kvx_bind: the 1:1 binding no longer delivers to A's MAC" "$g1mac" "$(bind_macs "$G1_IP" 0)"
assert_not_contains "the host's neighbour entry for $G1_IP no longer names A's MAC" "$g1mac" \
	"$(ip -n "$NS_HOST" neigh show "$G1_IP" dev "$BR")"
# 40 datagrams from the LAN to A's 1:1 address: flooded to every port,
# B would see each (its port counts frames for other MACs too).
rx_b() { nsx "$NS_G2" cat "/sys/class/net/$G2_IF/statistics/rx_packets"; }
rx0=$(rx_b)
nsx "$NS_LAN" bash -c "for i in \$(seq 40); do echo x >/dev/udp/$EXT_A/9999; done" || true
sleep 1
assert_le "B's port got almost none of them (ARP only)" $(($(rx_b) - rx0)) 10
# A's VM back, with its MAC (libvirt keeps a domain's MAC).
a_recreated_as "$g1mac"
assert_eq "LAN -> $EXT_A reaches A again" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT_A/who")"
a_back() { [[ $(owner_entry "$G1_IP") == "$g1mac 1" ]]; }
kvx_wait_for 5 "the daemon to see A's MAC back" a_back || true
assert_eq "kvx_guest: A's lease no longer marked gone" "$g1mac 1" "$(owner_entry "$G1_IP")"
assert_ok "map del $EXT_A $G1_IP" kvx map del "$EXT_A" "$G1_IP"
echo '[]' >"$LEASES"

assert_fails "--dhcp-leases with a relative path refused" \
	kvx attach --bridge "$BR" --uplink "$UP" --dhcp-leases leases.status

kvx_step "--mode xdp: a port with learning off gets no FDB entry from kvmxdp"
kvx_daemon_stop
nsx "$NS_G2" ethtool -K "$G2_IF" tx off >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
nsx "$NS_LAN" ethtool -K "$LAN_UP_IF" gro on >/dev/null
nsx "$NS_G2" ethtool -K "$G2_IF" gro on >/dev/null
# Only XDP-redirected frames from B from now on: no ARP, no IPv6 chatter.
brmac=$(mac_of "$NS_HOST" "$BR")
ip -n "$NS_HOST" link set dev "$BR" address "$brmac"
ip -n "$NS_G2" neigh replace "$GW_IP" lladdr "$brmac" dev "$G2_IF" nud permanent
nsx "$NS_G2" sysctl -qw "net.ipv6.conf.$G2_IF.disable_ipv6=1"
bridge -n "$NS_HOST" link set dev "$P2_IF" learning off
bridge -n "$NS_HOST" fdb del "$g2mac" dev "$P2_IF" master 2>/dev/null || true
kvx_attach_bg --mode xdp || kvx_fatal "cannot attach --mode xdp"
kvx_wait_for 10 "B's port is an XDP redirect target" p2_target || true
sleep 1.5 # the daemon writes kvx_xdev on its next tick
sha=$(kvx_random_file blob 4)
xo0=$(kvx_counter XDP_XLATE_OUT)
kvx_bg "$KVX_TMP/iperf3.log" ip netns exec "$NS_SRV" iperf3 -s -1 -B "$SRV_IP" -p 5201
kvx_wait_tcp_listen 10 "$NS_SRV" 5201
nsx "$NS_G2" iperf3 -c "$SRV_IP" -p 5201 -t 7 >/dev/null 2>&1 || kvx_fail "iperf3 from B"
assert_ge "B's iperf3 went through XDP" $(($(kvx_counter XDP_XLATE_OUT) - xo0)) 1000
assert_fails "kvx_xdp_port learnt nothing on B's learning-off port (kvx_xfdb)" xfdb_has "$g2mac"
# The daemon's FDB upkeep runs with each GC sweep (5 s): give it two.
sleep 11
assert_eq "no FDB entry for B on its learning-off port" "" \
	"$(bridge -n "$NS_HOST" fdb show br "$BR" | grep -i "^$g2mac dev $P2_IF" || true)"
assert_eq "B's download still intact (flooded to its port)" "$sha" \
	"$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"

kvx_finish
