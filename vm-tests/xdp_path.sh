#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/xdp_path.sh: the XDP fast path (attach --mode xdp) with real
# clients, in front of the TC path, never at the cost of a packet:
#  - --mode auto on veths keeps TC everywhere and says why;
#  - --mode xdp: kvx_xdp_up on the uplink, kvx_xdp_port on each veth port;
#    guest2 sends software checksums (tx off) and is translated by XDP both
#    ways once the redirect targets have NAPI (status flips them live);
#    guest1 keeps tx checksum offload: its partial checksums are handed to
#    TC (XDP_TO_TC_CSUM), and replies to it go through TC too (its port's
#    peer has no NAPI: XDP_TO_TC_DEV); every byte sha256-checked;
#  - the bridge's forwarding database is refreshed for guests whose frames
#    XDP redirects past it (entry deleted, comes back from XDP traffic only);
#  - a port added later (libvirt's vnetN) gets XDP within the daemon's tick;
#    a port with another tool's XDP program stays TC with the reason, and
#    keeps that program through detach;
#  - SIGKILL: the XDP links stay and translate; attach resumes in place;
#    --mode tc removes them; detach leaves no XDP program of ours, and
#    neither does an attach that fails at or after the XDP step.
#
# Topology: vm-tests/lib.sh (masquerade.sh's diagram).  The server sends
# software checksums (tx off) so that its frames arrive complete at the
# uplink; the LAN router's side of the uplink and guest2 turn GRO on (NAPI)
# at a chosen moment.
#
# Usage: xdp_path.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-170}
kvx_init "${1:-}"
kvx_require_tools bridge
kvx_topology_up
nsx "$NS_G2" ethtool -K "$G2_IF" tx off >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
kvx_http_server
sha=$(kvx_random_file blob 8)
upload() { # NS -> sha256 of what the server received
	local f=$KVX_TMP/up.$RANDOM
	kvx_bg "$KVX_TMP/sink.log" ip netns exec "$NS_SRV" timeout 30 socat -u \
		TCP-LISTEN:9000,bind="$SRV_IP",reuseaddr "CREATE:$f"
	local sink=$KVX_LAST_PID
	kvx_wait_tcp_listen 10 "$NS_SRV" 9000
	nsx "$1" timeout 30 socat -u "OPEN:$KVX_TMP/www/blob" "TCP:$SRV_IP:9000" || true
	wait "$sink" 2>/dev/null || true
	[[ -f $f ]] && sha256sum "$f" | cut -d' ' -f1
	rm -f "$f"
}
dev_field() { # DEV FIELD [JSON]
	kvx_json "[d['$2'] for d in i['devices'] if d['ifname'] == '$1'][0]" "${3-$(kvx_status_json)}"
}
xdp_prog_on() { # NS DEV: the name of the XDP program attached, '' if none
	ip -n "$1" -d -j link show dev "$2" | "$KVX_PY" -c '
import json, sys
x = json.load(sys.stdin)[0].get("xdp", {})
print(x.get("prog", {}).get("name", "") if x else "")'
}

kvx_step "--mode auto on veths: TC everywhere, with the reason"
kvx_attach_bg --mode auto || kvx_fatal "cannot attach"
st=$(kvx_status_json)
for d in "$UP" "$P1_IF" "$P2_IF"; do
	assert_eq "auto: $d on TC" tc "$(dev_field "$d" mode "$st")"
	assert_contains "auto: $d says why" "GSO" "$(dev_field "$d" why "$st")"
	assert_eq "auto: no XDP program on $d" "" "$(xdp_prog_on "$NS_HOST" "$d")"
done
assert_eq "auto: guest2 download (TC)" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
kvx_daemon_stop

kvx_step "--mode xdp: XDP programs on the uplink and the ports (resume of the same maps)"
kvx_attach_bg --mode xdp || kvx_fatal "cannot attach --mode xdp"
st=$(kvx_status_json)
assert_eq "kvx_xdp_up on the uplink" kvx_xdp_up "$(xdp_prog_on "$NS_HOST" "$UP")"
for d in "$P1_IF" "$P2_IF"; do
	assert_eq "kvx_xdp_port on $d" kvx_xdp_port "$(xdp_prog_on "$NS_HOST" "$d")"
	assert_eq "status: $d mode" xdp "$(dev_field "$d" mode "$st")"
done
assert_eq "status: the bridge keeps TC" tc "$(dev_field "$BR" mode "$st")"
assert_eq "status: uplink mode" xdp "$(dev_field "$UP" mode "$st")"
assert_eq "status: uplink no redirect target yet (LAN side has no NAPI)" false \
	"$(dev_field "$UP" redirect_target "$st")"
assert_contains "status: ... and why" "NAPI" "$(dev_field "$UP" redirect_why "$st")"

kvx_step "no NAPI behind the targets yet: XDP hands everything to TC, nothing is lost"
dev0=$(kvx_counter XDP_TO_TC_DEV) xo0=$(kvx_counter XDP_XLATE_OUT)
assert_eq "guest2 download" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
assert_eq "guest2 upload" "$sha" "$(upload "$NS_G2")"
assert_ge "XDP_TO_TC_DEV counted the hand-offs" $(($(kvx_counter XDP_TO_TC_DEV) - dev0)) 1000
assert_eq "XDP_XLATE_OUT: nothing redirected into a target without NAPI" "$xo0" \
	"$(kvx_counter XDP_XLATE_OUT)"

kvx_step "GRO on behind the uplink and in guest2: the daemon makes them redirect targets"
nsx "$NS_LAN" ethtool -K "$LAN_UP_IF" gro on >/dev/null
nsx "$NS_G2" ethtool -K "$G2_IF" gro on >/dev/null
# status computes redirect_target from the devices' facts as they are now;
# the datapath goes by kvx_xdev, which the daemon writes on its next tick:
# wait for both.
targets() {
	[[ $(dev_field "$UP" redirect_target) == true && $(dev_field "$P2_IF" redirect_target) == true ]] &&
		kvx_xdev_tx "$UP" && kvx_xdev_tx "$P2_IF"
}
kvx_wait_for 5 "uplink and guest2's port redirect targets (status and datapath)" targets ||
	kvx_fail "targets not flipped"
assert_eq "guest1's port stays no target (its peer has no NAPI)" false "$(dev_field "$P1_IF" redirect_target)"

kvx_step "guest2 (software checksums): translated by XDP both ways"
xo0=$(kvx_counter XDP_XLATE_OUT) xi0=$(kvx_counter XDP_XLATE_IN)
to0=$(kvx_counter XLATE_OUT) ti0=$(kvx_counter XLATE_IN)
assert_eq "guest2 download 8 MB intact" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
assert_eq "guest2 upload 8 MB intact" "$sha" "$(upload "$NS_G2")"
xo=$(($(kvx_counter XDP_XLATE_OUT) - xo0)) xi=$(($(kvx_counter XDP_XLATE_IN) - xi0))
to=$(($(kvx_counter XLATE_OUT) - to0)) ti=$(($(kvx_counter XLATE_IN) - ti0))
kvx_log "XDP out/in: $xo/$xi, TC out/in: $to/$ti"
assert_ge "XDP_XLATE_OUT carried the upload (8 MB: >= 5000 frames)" "$xo" 5000
assert_ge "XDP_XLATE_IN carried the download" "$xi" 5000
assert_le "TC translated only the first packets (SYNs, handshakes)" $((to + ti)) 40
kvx_udp_server "$SRV_IP:5001"
r=$(kvx_udp_client "$NS_G2" --msg hi-xdp --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP reply to guest2" "data=hi-xdp" "$r"
assert_contains "the server saw the uplink address" "seen=$UP_IP:" "$r"
clients=$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')
assert_eq "http server saw only the uplink address" "$UP_IP" "$clients"

kvx_step "guest1 (offloaded checksums): XDP hands its frames to TC, every byte right"
cs0=$(kvx_counter XDP_TO_TC_CSUM) dev0=$(kvx_counter XDP_TO_TC_DEV)
assert_eq "guest1 upload 8 MB intact" "$sha" "$(upload "$NS_G1")"
assert_eq "guest1 download 8 MB intact" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_ge "XDP_TO_TC_CSUM: guest1's partial checksums went to TC" \
	$(($(kvx_counter XDP_TO_TC_CSUM) - cs0)) 1000
assert_ge "XDP_TO_TC_DEV: replies to guest1 went to TC (no NAPI behind its port)" \
	$(($(kvx_counter XDP_TO_TC_DEV) - dev0)) 1000
assert_eq "ping from guest1 (ICMP: TC)" 5 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 5)"

kvx_step "the bridge's forwarding database follows a guest that only XDP sees"
g2mac=$(ip -n "$NS_G2" -br link show "$G2_IF" | awk '{print $3}')
brmac=$(ip -n "$NS_HOST" -br link show "$BR" | awk '{print $3}')
# Nothing but XDP-redirected frames from guest2 from now on: no ARP (a
# permanent neighbour), no IPv6 chatter.  The bridge's MAC is pinned first:
# a bridge without an assigned address takes its lowest port MAC, and the
# ports added below could change it under the permanent entry.
ip -n "$NS_HOST" link set dev "$BR" address "$brmac"
ip -n "$NS_G2" neigh replace "$GW_IP" lladdr "$brmac" dev "$G2_IF" nud permanent
nsx "$NS_G2" sysctl -qw "net.ipv6.conf.$G2_IF.disable_ipv6=1"
bridge -n "$NS_HOST" fdb del "$g2mac" dev "$P2_IF" master 2>/dev/null || true
assert_eq "guest2's entry deleted" "" "$(bridge -n "$NS_HOST" fdb show br "$BR" | grep -i "^$g2mac dev $P2_IF" || true)"
kvx_bg "$KVX_TMP/iperf3.log" ip netns exec "$NS_SRV" iperf3 -s -1 -B "$SRV_IP" -p 5201
kvx_wait_tcp_listen 10 "$NS_SRV" 5201
xo0=$(kvx_counter XDP_XLATE_OUT)
nsx "$NS_G2" iperf3 -c "$SRV_IP" -p 5201 -t 7 >/dev/null 2>&1 || kvx_fail "iperf3 from guest2"
assert_ge "guest2's iperf3 went through XDP" $(($(kvx_counter XDP_XLATE_OUT) - xo0)) 10000
fdb=$(bridge -n "$NS_HOST" fdb show br "$BR" | grep -i "^$g2mac dev $P2_IF" || true)
assert_contains "guest2's MAC is back on its port (refreshed by the daemon)" "$P2_IF" "$fdb"
assert_not_contains "... as a learnt (dynamic) entry" permanent "$fdb"

kvx_step "a MAC placed on no port is placed by XDP itself, at its first frame"
# guest2's frames reach XDP alone (above), and P2 is without its port guard
# for the step (as a new port is for a moment): a placement can only be
# XDP's.  The daemon paused (it would place the MAC from the bridge's entry
# at its next look, and put the guard back).
P2_IDX=$(ip -n "$NS_HOST" -o link show "$P2_IF" | cut -d: -f1)
xo0=$(kvx_counter XDP_XLATE_OUT) to0=$(kvx_counter XLATE_OUT)
kill -STOP "$KVX_DAEMON_PID"
# The guard's clsact with it: the daemon makes both again (and removes them
# at detach, as its own).
tc -n "$NS_HOST" qdisc del dev "$P2_IF" clsact
assert_eq "P2 without the port guard" 0 "$(kvx_tc_bpf_filters "$P2_IF")"
# shellcheck disable=SC2046 # one word per key byte
bpftool map delete pinned "$(kvx_pin_dir "$BR")/kvx_brport" key hex $(tr ':' ' ' <<<"$g2mac") 00 00
assert_eq "guest2's MAC placed on no port" "" "$(kvx_brport_of "$g2mac")"
r=$(kvx_udp_client "$NS_G2" --msg placed --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP reply to guest2 (the daemon paused)" "data=placed" "$r"
placed=$(kvx_brport_of "$g2mac")
kill -CONT "$KVX_DAEMON_PID"
assert_eq "kvx_brport: guest2's MAC on its port $P2_IF, placed by XDP" "$P2_IDX" "$placed"
assert_ge "... translated by XDP" $(($(kvx_counter XDP_XLATE_OUT) - xo0)) 1
assert_eq "... and not by TC" "$to0" "$(kvx_counter XLATE_OUT)"
guarded2() { [[ $(kvx_tc_bpf_filters "$P2_IF") == 1 ]]; }
kvx_wait_for 5 "the daemon puts P2's port guard back" guarded2 || kvx_fail "P2's port guard not back"

kvx_step "a port added later (vnetN) gets XDP"
NS_G3=kvx-$KVX_ID-g3 G3_IF=kg3$KVX_ID P3_IF=kp3$KVX_ID
kvx_netns_add "$NS_G3"
kvx_veth "$NS_G3" "$G3_IF" "$NS_HOST" "$P3_IF"
ip -n "$NS_G3" addr add 192.168.122.13/24 dev "$G3_IF"
ip -n "$NS_G3" route add default via "$GW_IP"
nsx "$NS_G3" ethtool -K "$G3_IF" tx off gro on >/dev/null
# README: ports added later (libvirt's vnetN) get the XDP program as soon as
# the daemon hears of them, timed from before the port joins the bridge to
# the first poll (every 20 ms, with `ip` alone: cheap) that shows an XDP
# program on it.  Tens of milliseconds on an idle machine; the bound allows
# for a CI machine whose two cores are busy (1.1 s seen with a load of 8),
# and still fails a daemon that only finds new ports on a periodic scan.
t0=$(kvx_now_us) t1=""
ip -n "$NS_HOST" link set "$P3_IF" master "$BR"
for ((i = 0; i < 250; i++)); do
	if ip -n "$NS_HOST" -o link show dev "$P3_IF" | grep -q 'prog/xdp'; then t1=$(kvx_now_us); break; fi
	sleep 0.02
done
if [[ -n $t1 ]]; then
	assert_le "the new port got an XDP program within 3 s (ms after it joined)" $(((t1 - t0) / 1000)) 3000
else
	kvx_fail "no XDP program on $P3_IF 5 s after it joined the bridge"
fi
assert_eq "... kvmxdp's: kvx_xdp_port" kvx_xdp_port "$(xdp_prog_on "$NS_HOST" "$P3_IF")"
fwd3() { [[ $(ip -n "$NS_HOST" -d -o link show "$P3_IF") == *"state forwarding"* ]]; }
kvx_wait_for 5 "new port forwarding" fwd3 || true
xi0=$(kvx_counter XDP_XLATE_IN)
assert_eq "guest3 download intact" "$sha" "$(kvx_curl_sha "$NS_G3" "http://$SRV_IP:8080/blob")"
assert_ge "guest3's download came by XDP" $(($(kvx_counter XDP_XLATE_IN) - xi0)) 5000
assert_eq "status lists the new port as xdp" xdp "$(dev_field "$P3_IF" mode)"

kvx_step "a port with another tool's XDP program stays TC, the program is kept"
cat >"$KVX_TMP/fx.bpf.c" <<'EOF'
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp")
int fx_other(struct xdp_md *ctx)
{
	return XDP_PASS;
}
char LICENSE[] SEC("license") = "GPL";
EOF
"$KVX_LIBDIR/../cmake/bpf-cc" -c "$KVX_TMP/fx.bpf.c" -o "$KVX_TMP/fx.bpf.o" ||
	kvx_fatal "cannot build the foreign program"
NS_G4=kvx-$KVX_ID-g4 G4_IF=kg4$KVX_ID P4_IF=kp4$KVX_ID
kvx_netns_add "$NS_G4"
kvx_veth "$NS_G4" "$G4_IF" "$NS_HOST" "$P4_IF"
ip -n "$NS_G4" addr add 192.168.122.14/24 dev "$G4_IF"
ip -n "$NS_G4" route add default via "$GW_IP"
ip -n "$NS_HOST" link set dev "$P4_IF" xdpdrv obj "$KVX_TMP/fx.bpf.o" sec xdp
ip -n "$NS_HOST" link set "$P4_IF" master "$BR"
why4() { [[ $(dev_field "$P4_IF" why) == *"another XDP program"* ]]; }
kvx_wait_for 5 "status explains the port with a foreign program" why4 ||
	kvx_fail "status: $(dev_field "$P4_IF" why)"
assert_eq "the foreign program stays on its port" fx_other "$(xdp_prog_on "$NS_HOST" "$P4_IF")"
assert_eq "status: that port is TC" tc "$(dev_field "$P4_IF" mode)"
fwd4() { [[ $(ip -n "$NS_HOST" -d -o link show "$P4_IF") == *"state forwarding"* ]]; }
kvx_wait_for 5 "port 4 forwarding" fwd4 || true
assert_eq "guest4 download through TC" "$sha" "$(kvx_curl_sha "$NS_G4" "http://$SRV_IP:8080/blob")"

kvx_step "SIGKILL: the XDP links stay and translate; attach resumes them in place"
kill -9 "$KVX_DAEMON_PID"
wait "$KVX_DAEMON_PID" 2>/dev/null || true
KVX_DAEMON_PID=""
assert_eq "XDP still on guest2's port without a daemon" kvx_xdp_port "$(xdp_prog_on "$NS_HOST" "$P2_IF")"
xi0=$(kvx_counter XDP_XLATE_IN)
assert_eq "guest2 download with no daemon" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
assert_ge "... by XDP" $(($(kvx_counter XDP_XLATE_IN) - xi0)) 5000
links0=$(nsenter_net "$NS_HOST" bpftool link show | grep -cE '^[0-9]+: xdp ' || true)
kvx_attach_bg || kvx_fatal "cannot resume"
assert_eq "resume kept the mode (xdp, from the config)" kvx_xdp_port "$(xdp_prog_on "$NS_HOST" "$P2_IF")"
assert_eq "resume: as many XDP links as before (updated in place)" "$links0" \
	"$(nsenter_net "$NS_HOST" bpftool link show | grep -cE '^[0-9]+: xdp ' || true)"
assert_eq "guest2 download after the resume" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
kvx_daemon_stop

kvx_step "--mode tc removes the XDP programs"
kvx_attach_bg --mode tc || kvx_fatal "cannot attach --mode tc"
for d in "$UP" "$P1_IF" "$P2_IF" "$P3_IF"; do
	assert_eq "--mode tc: no XDP on $d" "" "$(xdp_prog_on "$NS_HOST" "$d")"
done
assert_eq "guest2 download on TC" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
kvx_daemon_stop
kvx_attach_bg --mode xdp || kvx_fatal "cannot attach --mode xdp again"
assert_eq "back to xdp" kvx_xdp_port "$(xdp_prog_on "$NS_HOST" "$P2_IF")"

kvx_step "detach: no XDP program of ours anywhere, the foreign one kept"
for d in "$P1_IF" "$P2_IF" "$P3_IF" "$P4_IF"; do
	assert_eq "attached: the port guard on $d" 1 "$(kvx_tc_bpf_filters "$d")"
done
assert_ok "detach" kvx detach --bridge "$BR"
KVX_DAEMON_PID=""
for d in "$UP" "$P1_IF" "$P2_IF" "$P3_IF"; do
	assert_eq "detached: no XDP on $d" "" "$(xdp_prog_on "$NS_HOST" "$d")"
done
assert_eq "detached: the foreign program kept" fx_other "$(xdp_prog_on "$NS_HOST" "$P4_IF")"
assert_eq "detached: no pins left" "" "$(kvx_pins)"
for d in "$P1_IF" "$P2_IF" "$P3_IF" "$P4_IF"; do
	assert_eq "detached: no port guard on $d" 0 "$(kvx_tc_bpf_filters "$d")"
	assert_eq "detached: no clsact left on $d" "" "$(tc -n "$NS_HOST" qdisc show dev "$d" | grep clsact || true)"
done

kvx_step "a failed attach --mode xdp leaves no XDP program, filter or pin behind"
for fp in xdp sysctls; do
	out=$(KVMXDP_FAILPOINT=$fp ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" \
		attach --bridge "$BR" --uplink "$UP" --mode xdp 2>&1) &&
		kvx_fail "attach with failpoint $fp succeeded"
	assert_contains "failpoint $fp hit" "injected failure at $fp" "$out"
	for d in "$UP" "$P1_IF" "$P2_IF" "$P3_IF"; do
		assert_eq "failpoint $fp: no XDP on $d" "" "$(xdp_prog_on "$NS_HOST" "$d")"
	done
	assert_eq "failpoint $fp: the foreign program kept" fx_other "$(xdp_prog_on "$NS_HOST" "$P4_IF")"
	assert_eq "failpoint $fp: no pins" "" "$(kvx_pins)"
	assert_eq "failpoint $fp: no filter on the bridge" 0 "$(kvx_tc_bpf_filters "$BR")"
	for d in "$P1_IF" "$P2_IF" "$P3_IF" "$P4_IF"; do
		assert_eq "failpoint $fp: no port guard on $d" 0 "$(kvx_tc_bpf_filters "$d")"
	done
done
ip -n "$NS_HOST" link set dev "$P4_IF" xdpdrv off
kvx_finish
