#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/xdp_relink.sh: `attach --mode xdp` and a bridge port whose device
# is deleted and created again under the same name (libvirt re-plugging a
# guest's interface): its pinned XDP link went defunct with the old device
# (ifindex 0).  It still holds kvmxdp's program, so by program id it looks
# current, and it cannot be moved to the new device (an update of it fails,
# ENOLINK on 6.18): kvmxdp must create a new link and pin it in its place.
# Three re-creations of guest2's port:
#   1. same name and same ifindex, within one tick of the running daemon
#      (the defunct pin is found under the same name: link_xdp_<ifindex>);
#   2. same name, new ifindex, daemon running (the old pin must go);
#   3. same name and ifindex while no daemon runs, then attach resumes.
# After each: kvmxdp's XDP program is on the new device (ip link), `status`
# says xdp for it (a live pinned link), the pins name exactly the current
# devices, and guest2's download and upload (sha256) are translated by XDP
# (XDP_XLATE_IN/OUT move, TC translates only a handful).
#
# Topology: vm-tests/lib.sh (masquerade.sh's diagram).  guest2 and the
# server send software checksums (tx off) so that XDP can translate their
# frames; guest2's veth and the LAN router's side of the uplink run GRO
# (NAPI), which makes their peers XDP redirect targets.
#
# Usage: xdp_relink.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
nsx "$NS_G2" ethtool -K "$G2_IF" tx off gro on >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
nsx "$NS_LAN" ethtool -K "$LAN_UP_IF" gro on >/dev/null
# A bridge without an address of its own takes its lowest port MAC, which
# re-created ports would change under guest1's neighbour entry.
ip -n "$NS_HOST" link set dev "$BR" address "$(ip -n "$NS_HOST" -br link show "$BR" | awk '{print $3}')"
kvx_http_server
sha=$(kvx_random_file blob 4)

ifindex() { ip -n "$NS_HOST" -j link show dev "$1" | "$KVX_PY" -c 'import json, sys; print(json.load(sys.stdin)[0]["ifindex"])'; }
# The ifindexes named by the XDP link pins (link_xdp_<ifindex>), and those
# of the devices that should have one.  (Whether a pinned link is live,
# i.e. still has its device, `status` tells: xdp only then.)
link_pins() {
	local p
	for p in "$(kvx_pin_dir "$BR")"/link_xdp_*; do [[ -e $p ]] && echo "${p##*_}"; done | sort -n | paste -sd' '
}
expected_pins() {
	local d
	for d in "$UP" "$P1_IF" "$P2_IF"; do ifindex "$d"; done | sort -n | paste -sd' '
}
port2_on_xdp() { [[ $(kvx_xdp_prog "$NS_HOST" "$P2_IF") == kvx_xdp_port && $(kvx_dev_field "$P2_IF" redirect_target) == true ]]; }

# Deletes guest2's port (its peer in guest2 goes with it) and creates it
# again with the same names, ifindex INDEX if given, on the bridge.  guest2
# keeps its MAC, as a libvirt VM re-plugged keeps the one its domain names
# (another MAC could not use guest2's address for 5 minutes: anti-spoofing).
G2_MAC=$(ip -n "$NS_G2" -br link show "$G2_IF" | awk '{print $3}')
recreate_port2() { # [INDEX]
	ip -n "$NS_HOST" link del "$P2_IF"
	ip -n "$NS_HOST" link add "$P2_IF" ${1:+index "$1"} type veth peer name "$G2_IF" \
		address "$G2_MAC" netns "$NS_G2"
	ip -n "$NS_HOST" link set "$P2_IF" up
	ip -n "$NS_G2" link set "$G2_IF" up
	ip -n "$NS_G2" addr add "$G2_IP/24" dev "$G2_IF"
	ip -n "$NS_G2" route add default via "$GW_IP"
	nsx "$NS_HOST" ethtool -K "$P2_IF" tx off >/dev/null
	nsx "$NS_G2" ethtool -K "$G2_IF" tx off gro on >/dev/null
	ip -n "$NS_HOST" link set "$P2_IF" master "$BR"
	kvx_wait_for 5 "bridge ports forwarding" kvx_bridge_ports_forwarding || true
}

# DESC: XDP on guest2's port, status, pins, and guest2's traffic by XDP.
check_port2_xdp() {
	local desc=$1 xo0 xi0 to0 ti0 st d
	kvx_wait_for 5 "$desc: kvx_xdp_port on $P2_IF, a redirect target" port2_on_xdp || true
	assert_eq "$desc: kvmxdp's XDP program on $P2_IF" kvx_xdp_port "$(kvx_xdp_prog "$NS_HOST" "$P2_IF")"
	st=$(kvx_status_json)
	for d in "$P2_IF" "$UP" "$P1_IF"; do
		assert_eq "$desc: status says xdp for $d (a live pinned link)" xdp "$(kvx_dev_field "$d" mode "$st")"
	done
	assert_eq "$desc: link pins of exactly the current devices" "$(expected_pins)" "$(link_pins)"
	xo0=$(kvx_counter XDP_XLATE_OUT) xi0=$(kvx_counter XDP_XLATE_IN)
	to0=$(kvx_counter XLATE_OUT) ti0=$(kvx_counter XLATE_IN)
	assert_eq "$desc: guest2 download 4 MB intact" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
	assert_eq "$desc: guest2 upload 4 MB intact" "$sha" "$(kvx_upload_sha "$NS_G2" "$KVX_TMP/www/blob")"
	assert_ge "$desc: the upload went through $P2_IF's XDP program (XDP_XLATE_OUT)" \
		$(($(kvx_counter XDP_XLATE_OUT) - xo0)) 2000
	assert_ge "$desc: the download was redirected into $P2_IF by XDP (XDP_XLATE_IN)" \
		$(($(kvx_counter XDP_XLATE_IN) - xi0)) 2000
	assert_le "$desc: TC translated only a handful" \
		$(($(kvx_counter XLATE_OUT) - to0 + $(kvx_counter XLATE_IN) - ti0)) 40
}

kvx_step "attach --mode xdp: the baseline"
kvx_attach_bg --mode xdp || kvx_fatal "cannot attach --mode xdp"
idx=$(ifindex "$P2_IF")
check_port2_xdp "before"

kvx_step "guest2's port re-created: same name, same ifindex $idx, within one daemon tick"
# Held (SIGSTOP) while the device goes and comes back, the daemon sees both
# only afterwards, as when libvirt re-plugs faster than the daemon's tick:
# the pin link_xdp_<ifindex> is still there, its link defunct.
kill -STOP "$KVX_DAEMON_PID"
recreate_port2 "$idx"
kill -CONT "$KVX_DAEMON_PID"
must assert_eq "the new device has the old ifindex" "$idx" "$(ifindex "$P2_IF")"
check_port2_xdp "same ifindex"

kvx_step "guest2's port re-created: same name, a new ifindex (daemon running)"
recreate_port2
assert_ne "the new device has a new ifindex" "$idx" "$(ifindex "$P2_IF")"
check_port2_xdp "new ifindex"

kvx_step "guest2's port re-created with the same ifindex while no daemon runs; attach resumes"
idx=$(ifindex "$P2_IF")
kvx_daemon_kill
recreate_port2 "$idx"
must assert_eq "the new device has the old ifindex" "$idx" "$(ifindex "$P2_IF")"
assert_eq "no XDP program on it without a daemon" "" "$(kvx_xdp_prog "$NS_HOST" "$P2_IF")"
assert_eq "status: $P2_IF on TC" tc "$(kvx_dev_field "$P2_IF" mode)"
assert_contains "... its pinned link defunct: XDP wanted but not attached" "not attached" \
	"$(kvx_dev_field "$P2_IF" why)"
kvx_attach_bg || kvx_fatal "cannot resume"
check_port2_xdp "resumed"

kvx_finish
