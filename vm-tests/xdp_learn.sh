#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/xdp_learn.sh: `attach --mode xdp` on bridge ports the bridge does
# not learn on.  XDP translates a guest's frames before the bridge sees them,
# so it must not learn where the bridge would not:
#  - learning off with a static FDB entry per guest (libvirt's
#    macTableManager='libvirt'): kvx_xdev has no KVX_XDEV_F_LEARN for the
#    ports, kvx_xfdb gets the bridge's static entries from the daemon; guest2
#    sends one frame with guest1's MAC and address on guest1's flow (no
#    no-mac-spoofing filter): the port guard drops it in XDP (guest1's MAC
#    is the bridge's on guest1's port), nothing is translated, and kvx_xfdb
#    still names guest1's port;
#  - learning switched on and off again at runtime: kvx_xdev follows; while
#    both ports learn and guest1's entry is `static sticky`, guest2's frame
#    with guest1's MAC moves neither kvx_xfdb's entry nor the bridge's;
#  - a static entry deleted and added back: kvx_xfdb follows at once (FDB
#    events), not at the next GC tick;
#  - a locked port (802.1X): no XDP program on it (status says why); frames
#    of a station without an FDB entry are not translated at all (the
#    bridge drops them before TC); once the station has an entry, its
#    traffic works through TC.
#
#   guest1 ns (kg1<id> .11, MAC M1) --- kp1<id> learning off, static M1 --+
#   guest2 ns (kg2<id> .12, MAC M2) --- kp2<id> learning off, static M2 --+ bridge kb<id>
#                                        (later: locked, M2's entry gone)    host ns, kvmxdp --mode xdp
#                                                                             uplink ku<id> 10.77.0.2
#   lan ns:    kl<id> 10.77.0.1 (GRO on: the uplink is a redirect target), kr<id> 10.78.0.1
#   server ns: ks<id> 10.78.0.2, UDP echo :5001
#
# The guests and the server send software checksums (tx off: XDP takes
# their frames) and the guests run GRO (NAPI: their ports are XDP redirect
# targets).  The guests know the gateway's MAC from a permanent neighbour
# entry: a locked port's unauthorised station gets no ARP answer either.
#
# Usage: xdp_learn.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools bridge
kvx_topology_up
for g in "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"; do
	nsx "${g%%:*}" ethtool -K "${g#*:}" tx off gro on >/dev/null
done
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
nsx "$NS_LAN" ethtool -K "$LAN_UP_IF" gro on >/dev/null
mac_of() { ip -n "$1" -br link show "$2" | awk '{print $3}'; }
g1mac=$(mac_of "$NS_G1" "$G1_IF") g2mac=$(mac_of "$NS_G2" "$G2_IF")
brmac=$(mac_of "$NS_HOST" "$BR")
ip -n "$NS_HOST" link set dev "$BR" address "$brmac"
for g in "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"; do
	ip -n "${g%%:*}" neigh replace "$GW_IP" lladdr "$brmac" dev "${g#*:}" nud permanent
done
# libvirt's macTableManager='libvirt': no learning, one entry per guest.
for p in "$P1_IF:$g1mac" "$P2_IF:$g2mac"; do
	bridge -n "$NS_HOST" link set dev "${p%%:*}" learning off
	bridge -n "$NS_HOST" fdb replace "${p#*:}" dev "${p%%:*}" master static
done
kvx_udp_server "$SRV_IP:5001"

ifindex() { ip -n "$NS_HOST" -j link show dev "$1" | "$KVX_PY" -c 'import json, sys; print(json.load(sys.stdin)[0]["ifindex"])'; }
IDX1=$(ifindex "$P1_IF") IDX2=$(ifindex "$P2_IF")
# kvx_xdev's flags of a device ('' if it has no entry).
xdev_flags() { # IFNAME
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_xdev" | "$KVX_PY" -c '
import json, sys
idx = int(sys.argv[1])
for e in json.load(sys.stdin):
    if int.from_bytes(bytes(int(x, 16) for x in e["key"]), "little") == idx:
        print(int.from_bytes(bytes(int(x, 16) for x in e["value"])[6:8], "little"))' "$(ifindex "$1")"
}
KVX_XDEV_F_TX=1 KVX_XDEV_F_LEARN=8
xdev_has() { local f; f=$(xdev_flags "$1"); [[ -n $f ]] && (((f & $2) == $2)); } # IFNAME FLAG
xdev_lacks() { local f; f=$(xdev_flags "$1"); [[ -n $f ]] && (((f & $2) == 0)); }
# The port kvx_xfdb names for a MAC ('' if none).
xfdb_port() { # MAC
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_xfdb" | "$KVX_PY" -c '
import json, sys
want = bytes(int(x, 16) for x in sys.argv[1].split(":"))
for e in json.load(sys.stdin):
    if bytes(int(x, 16) for x in e["key"])[:6] == want:
        print(int.from_bytes(bytes(int(x, 16) for x in e["value"])[:4], "little"))' "$1"
}
xfdb_is() { [[ $(xfdb_port "$1") == "$2" ]]; } # MAC IFINDEX
# A frame catcher on a guest's interface (frame_peer.py catch): NAME's lines
# in $KVX_TMP/catch.NAME.log.
catch_start() { # NAME NS IFACE PORT
	kvx_bg "$KVX_TMP/catch.$1.log" ip netns exec "$2" "$KVX_PY" -u "$KVX_LIBDIR/frame_peer.py" \
		catch "$3" --port "$4"
	kvx_wait_file_contains 10 "$KVX_TMP/catch.$1.log" catching
}
caught() { grep -c -- "$2" "$KVX_TMP/catch.$1.log" || true; } # NAME PATTERN

kvx_step "learning off, a static entry per guest: XDP on the ports, learning for none"
kvx_attach_bg --mode xdp || kvx_fatal "cannot attach --mode xdp"
targets() { xdev_has "$P1_IF" $KVX_XDEV_F_TX && xdev_has "$P2_IF" $KVX_XDEV_F_TX && xdev_has "$UP" $KVX_XDEV_F_TX; }
kvx_wait_for 10 "the guests' ports and the uplink are XDP redirect targets" targets || true
st=$(kvx_status_json)
for d in "$P1_IF" "$P2_IF"; do
	assert_eq "kvx_xdp_port on $d" kvx_xdp_port "$(kvx_xdp_prog "$NS_HOST" "$d")"
	assert_eq "status: $d learning" false "$(kvx_dev_field "$d" learning "$st")"
	assert_eq "status: $d locked" false "$(kvx_dev_field "$d" locked "$st")"
	assert_ok "kvx_xdev: no KVX_XDEV_F_LEARN for $d" xdev_lacks "$d" $KVX_XDEV_F_LEARN
done
# The daemon copies the bridge's entries (every GC tick, 5 s).
kvx_wait_for 12 "kvx_xfdb: guest1's static entry ($P1_IF)" xfdb_is "$g1mac" "$IDX1" || true
kvx_wait_for 2 "kvx_xfdb: guest2's static entry ($P2_IF)" xfdb_is "$g2mac" "$IDX2" || true

kvx_step "guest2 sends one frame with guest1's MAC and address: the port guard drops it, guest1's flow stays guest1's"
r=$(kvx_udp_client "$NS_G1" --bind 40001 --msg g1-hello --wait 1 "$SRV_IP:5001" || true)
assert_contains "guest1's flow: the reply reached guest1" "data=g1-hello" "$r"
assert_contains "... translated to the uplink address" "seen=$UP_IP:" "$r"
catch_start g2 "$NS_G2" "$G2_IF" 40001
xo0=$(kvx_counter XDP_XLATE_OUT) guard0=$(kvx_counter DROP_MAC_ELSEWHERE)
nsx "$NS_G2" "$KVX_PY" "$KVX_LIBDIR/frame_peer.py" send "$G2_IF" --src-mac "$g1mac" \
	--dst-mac "$brmac" --src "$G1_IP:40001" --dst "$SRV_IP:5001" --payload spoof-by-g2 >/dev/null
guarded() { (($(kvx_counter DROP_MAC_ELSEWHERE) > guard0)); }
kvx_wait_for 5 "the port guard to drop guest2's frame" guarded || true
sleep 1 # anything late would be there by now
assert_eq "XDP dropped it on guest2's port (DROP_MAC_ELSEWHERE)" 1 $(($(kvx_counter DROP_MAC_ELSEWHERE) - guard0))
assert_eq "... and translated nothing (XDP_XLATE_OUT)" 0 $(($(kvx_counter XDP_XLATE_OUT) - xo0))
assert_eq "the server never saw it" 0 "$(grep -c "data=spoof-by-g2" "$KVX_TMP/udp.log" || true)"
assert_eq "nothing of it reached guest2's interface" 0 "$(caught g2 spoof-by-g2)"
assert_eq "kvx_xfdb still names guest1's port for guest1's MAC" "$IDX1" "$(xfdb_port "$g1mac")"
assert_contains "guest1's FDB entry is still the static one on its port" "$P1_IF master $BR static" \
	"$(bridge -n "$NS_HOST" fdb show br "$BR" | grep -i "^$g1mac " || true)"

kvx_step "learning on and off again at runtime: kvx_xdev follows"
bridge -n "$NS_HOST" link set dev "$P2_IF" learning on
kvx_wait_for 5 "KVX_XDEV_F_LEARN on $P2_IF" xdev_has "$P2_IF" $KVX_XDEV_F_LEARN || true
assert_eq "status: $P2_IF learning" true "$(kvx_dev_field "$P2_IF" learning)"
assert_ok "... not on $P1_IF" xdev_lacks "$P1_IF" $KVX_XDEV_F_LEARN
# Now a guest on a learning port sends with the MAC the bridge holds
# statically on another port, which learns too (an administrator's `static
# sticky` entry): the port guard drops the frame in XDP (the bridge never
# sees it), and nothing learns over guest1's entry, at once and after the
# daemon's next sync (a GC tick, 5 s), which does not move the bridge's
# entry with NTF_USE either.
bridge -n "$NS_HOST" link set dev "$P1_IF" learning on
bridge -n "$NS_HOST" fdb replace "$g1mac" dev "$P1_IF" master static sticky
kvx_wait_for 5 "KVX_XDEV_F_LEARN on $P1_IF" xdev_has "$P1_IF" $KVX_XDEV_F_LEARN || true
guard0=$(kvx_counter DROP_MAC_ELSEWHERE)
nsx "$NS_G2" "$KVX_PY" "$KVX_LIBDIR/frame_peer.py" send "$G2_IF" --src-mac "$g1mac" \
	--dst-mac "$brmac" --src "$G1_IP:40001" --dst "$SRV_IP:5001" --payload spoof-learning >/dev/null
kvx_wait_for 5 "the port guard to drop guest2's frame" guarded || true
assert_eq "the port guard dropped guest2's frame on the learning port" 1 $(($(kvx_counter DROP_MAC_ELSEWHERE) - guard0))
assert_eq "kvx_xfdb names guest1's port for guest1's MAC right after it" "$IDX1" "$(xfdb_port "$g1mac")"
sleep 6
assert_eq "kvx_xfdb still names guest1's port after a sync" "$IDX1" "$(xfdb_port "$g1mac")"
assert_contains "guest1's static FDB entry was not moved to $P2_IF" "$P1_IF sticky master $BR static" \
	"$(bridge -n "$NS_HOST" fdb show br "$BR" | grep -i "^$g1mac " || true)"
bridge -n "$NS_HOST" link set dev "$P1_IF" learning off
bridge -n "$NS_HOST" fdb replace "$g1mac" dev "$P1_IF" master static
bridge -n "$NS_HOST" link set dev "$P2_IF" learning off
kvx_wait_for 5 "KVX_XDEV_F_LEARN off $P2_IF again" xdev_lacks "$P2_IF" $KVX_XDEV_F_LEARN || true

kvx_step "a static entry deleted and added back: kvx_xfdb follows within about a second"
# Not at the GC tick (every 5 s): the daemon follows the bridge's FDB
# events.  Twice, so that a tick that happens to fall in the window does
# not pass for them.
for round in 1 2; do
	bridge -n "$NS_HOST" fdb del "$g1mac" dev "$P1_IF" master
	kvx_wait_for 1 "kvx_xfdb: guest1's entry gone with the bridge's (round $round)" \
		xfdb_is "$g1mac" "" || true
	bridge -n "$NS_HOST" fdb add "$g1mac" dev "$P1_IF" master static
	kvx_wait_for 1 "kvx_xfdb: guest1's entry back (round $round)" xfdb_is "$g1mac" "$IDX1" || true
done

kvx_step "a locked port: no XDP program, an unauthorised station is not translated"
bridge -n "$NS_HOST" fdb del "$g2mac" dev "$P2_IF" master
bridge -n "$NS_HOST" link set dev "$P2_IF" locked on
no_xdp_on_p2() { [[ -z $(kvx_xdp_prog "$NS_HOST" "$P2_IF") ]]; }
kvx_wait_for 5 "no XDP program on the locked $P2_IF" no_xdp_on_p2 || true
st=$(kvx_status_json)
assert_eq "status: $P2_IF on TC" tc "$(kvx_dev_field "$P2_IF" mode "$st")"
assert_contains "status: ... because it is locked" "locked port" "$(kvx_dev_field "$P2_IF" why "$st")"
assert_eq "status: $P2_IF locked" true "$(kvx_dev_field "$P2_IF" locked "$st")"
assert_eq "guest1's port keeps XDP" kvx_xdp_port "$(kvx_xdp_prog "$NS_HOST" "$P1_IF")"
kvx_wait_for 7 "kvx_xfdb: guest2's entry gone with the bridge's" xfdb_is "$g2mac" "" || true
xo0=$(kvx_counter XDP_XLATE_OUT) to0=$(kvx_counter XLATE_OUT)
r=$(kvx_udp_client "$NS_G2" --msg g2-unauthorised --count 3 --wait 1 "$SRV_IP:5001" || true)
assert_eq "guest2 (no FDB entry) gets no reply" "" "$r"
assert_eq "the server got nothing of it" 0 "$(grep -c "data=g2-unauthorised" "$KVX_TMP/udp.log" || true)"
assert_eq "XDP translated none of it" "$xo0" "$(kvx_counter XDP_XLATE_OUT)"
assert_eq "TC translated none of it" "$to0" "$(kvx_counter XLATE_OUT)"

kvx_step "the station authorised (its FDB entry): its traffic goes through TC"
bridge -n "$NS_HOST" fdb add "$g2mac" dev "$P2_IF" master static
xo0=$(kvx_counter XDP_XLATE_OUT) to0=$(kvx_counter XLATE_OUT)
r=$(kvx_udp_client "$NS_G2" --msg g2-authorised --wait 1 "$SRV_IP:5001" || true)
assert_contains "guest2 gets its reply" "data=g2-authorised" "$r"
assert_contains "... translated to the uplink address" "seen=$UP_IP:" "$r"
assert_ge "TC translated it (XLATE_OUT)" $(($(kvx_counter XLATE_OUT) - to0)) 1
assert_eq "XDP did not" "$xo0" "$(kvx_counter XDP_XLATE_OUT)"

kvx_finish
