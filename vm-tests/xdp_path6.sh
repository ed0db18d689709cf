#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/xdp_path6.sh: the XDP fast path for NAT66 (attach --mode xdp,
# IPv6 on with its defaults) with real clients, as xdp_path.sh for IPv4:
#  - the XDP programs tail-call IPv6 frames into kvx_xdp_port6 /
#    kvx_xdp_up6 (kvx_xdp6progs, pinned with the XDP links): status and
#    bpftool list them;
#  - guest2 sends software checksums (tx off): its 8 MB download (curl -6)
#    and upload (socat) are translated by XDP both ways, every byte
#    sha256-checked, the server sees only the uplink's IPv6 address, TC
#    translates only the first packets;
#  - guest1 keeps tx checksum offload: its partial checksums are handed to
#    TC (XDP_TO_TC_CSUM), its bytes intact; ping -6 (ICMPv6: TC) works;
#  - no checksum error anywhere, no guest source reaches the LAN router,
#    the host's Ip6OutForwDatagrams barely moves (it forwards IPv6);
#  - SIGKILL: the pinned program array keeps the IPv6 fast path without a
#    daemon; a resume swaps the programs in; --mode tc removes the XDP
#    programs and the array's pin, TC translates; detach leaves none.
#
# Topology: vm-tests/lib.sh with IPv6 as churn6.sh (static addresses, the
# server's router knowing no route to the guests' prefix).  The server sends
# software checksums (tx off); the LAN router's side of the uplink and
# guest2 have GRO on (NAPI: XDP redirect targets).
#
# Usage: xdp_path6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-150}
kvx_init "${1:-}"
kvx_topology_up

PFX=fd42:99::/64 BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
UP6=2001:db8:1::2 RTR_UP6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2

kvx_step "IPv6 addressing; GRO behind the uplink and in guest2"
kvx_ipv6_static_up
ip -n "$NS_SRV" -6 route add default via "$RTR6"
# The host already forwards IPv6: whatever kvmxdp handed to the kernel
# would be routed out, and counted.
nsx "$NS_HOST" sysctl -qw net.ipv6.conf.all.forwarding=1
nsx "$NS_G2" ethtool -K "$G2_IF" tx off gro on >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
nsx "$NS_LAN" ethtool -K "$LAN_UP_IF" gro on >/dev/null

kvx_step "attach --mode xdp: the IPv6 programs in the XDP programs' array"
kvx_attach_bg --mode xdp || kvx_fatal "cannot attach --mode xdp"
kvx_lan6_count_from "$PFX"
st=$(kvx_status_json)
assert_eq "status: ipv6_mode" nat66 "$(kvx_json 'i["ipv6_mode"]' "$st")"
assert_eq "kvx_xdp_port on guest2's port" kvx_xdp_port "$(kvx_xdp_prog "$NS_HOST" "$P2_IF")"
assert_eq "status: kvx_xdp6progs slots" "kvx_xdp_port6 kvx_xdp_port|kvx_xdp_up6 kvx_xdp_up" \
	"$(kvx_json '"|".join(str(p["prog"]) + " " + p["tail_called_from"] for p in i["xdp_ipv6_programs"])' "$st")"
assert_contains "status text: the XDP IPv6 program" "xdp kvx_xdp_port6" "$(kvx status --bridge "$BR")"
progs=$(nsx "$NS_HOST" bpftool prog show 2>/dev/null | grep -oE 'name kvx_xdp_(port|up)6' | sort -u | paste -sd' ' || true)
assert_eq "bpftool prog show lists them" "name kvx_xdp_port6 name kvx_xdp_up6" "$progs"
assert_eq "kvx_xdp6progs pinned" yes "$([[ -e $(kvx_pin_dir "$BR")/kvx_xdp6progs ]] && echo yes || echo no)"
targets() { kvx_xdev_tx "$UP" && kvx_xdev_tx "$P2_IF"; }
kvx_wait_for 5 "uplink and guest2's port are redirect targets" targets || kvx_fail "targets not flipped"
FWD6_0=$(kvx_fwd6_datagrams)

kvx_step "guest2 (software checksums): 8 MB each way over IPv6, translated by XDP"
mkdir -p "$KVX_TMP/www"
sha=$(kvx_random_file blob 8)
kvx_bg "$KVX_TMP/http.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$SRV6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_SRV" 8080
xo0=$(kvx_counter XDP_XLATE_OUT) xi0=$(kvx_counter XDP_XLATE_IN)
to0=$(kvx_counter XLATE_OUT) ti0=$(kvx_counter XLATE_IN)
assert_eq "guest2 curl -6 download: sha256" "$sha" "$(kvx_curl_sha "$NS_G2" "http://[$SRV6]:8080/blob")"
assert_eq "guest2 socat upload: sha256" "$sha" "$(kvx_upload_sha "$NS_G2" "$KVX_TMP/www/blob" "$SRV6")"
xo=$(($(kvx_counter XDP_XLATE_OUT) - xo0)) xi=$(($(kvx_counter XDP_XLATE_IN) - xi0))
to=$(($(kvx_counter XLATE_OUT) - to0)) ti=$(($(kvx_counter XLATE_IN) - ti0))
kvx_log "XDP out/in: $xo/$xi, TC out/in: $to/$ti"
assert_ge "XDP_XLATE_OUT carried the upload (8 MB: >= 5000 frames)" "$xo" 5000
assert_ge "XDP_XLATE_IN carried the download" "$xi" 5000
assert_le "TC translated only the first packets (SYNs, handshakes)" $((to + ti)) 40
assert_eq "HTTP server saw only the uplink's address" "$UP6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')"
kvx_bg "$KVX_TMP/udp6.log" ip netns exec "$NS_SRV" socat "UDP6-RECVFROM:9001,bind=[$SRV6],fork" EXEC:cat
kvx_wait_udp_listen 10 "$NS_SRV" 9001
xo0=$(kvx_counter XDP_XLATE_OUT)
r=$(echo "hi-xdp6" | nsx "$NS_G2" timeout 5 socat -t 2 - "UDP6:[$SRV6]:9001" 2>&1 || true)
assert_eq "UDP echo to guest2" "hi-xdp6" "$r"
assert_ge "... the datagram out by XDP" $(($(kvx_counter XDP_XLATE_OUT) - xo0)) 1
assert_eq "conntrack list: guest2's UDP flow, on the uplink's address" "$G2_6 $UP6" \
	"$(kvx conntrack list --json --proto udp 2>/dev/null | "$KVX_PY" -c 'import json,sys; print("|".join(sorted(f["int_addr"]+" "+f["ext_addr"] for f in json.load(sys.stdin) if f["family"] == "ipv6" and f["rem_port"] == 9001)))' 2>/dev/null || echo error)"

kvx_step "guest1 (offloaded checksums): XDP hands its frames to TC, every byte right"
cs0=$(kvx_counter XDP_TO_TC_CSUM)
assert_eq "guest1 socat upload: sha256" "$sha" "$(kvx_upload_sha "$NS_G1" "$KVX_TMP/www/blob" "$SRV6")"
assert_eq "guest1 curl -6 download: sha256" "$sha" "$(kvx_curl_sha "$NS_G1" "http://[$SRV6]:8080/blob")"
assert_ge "XDP_TO_TC_CSUM: guest1's partial checksums went to TC" \
	$(($(kvx_counter XDP_TO_TC_CSUM) - cs0)) 1000
assert_eq "ping -6 from guest1 (ICMPv6: TC): 5 of 5" 5 "$(kvx_ping_received "$NS_G1" "$SRV6" 5)"

kvx_step "checksums, leaks and the host's forwarding"
kvx_assert_no_csum_errors6 "$NS_G1" "$NS_G2" "$NS_SRV" "$NS_HOST" "$NS_LAN"
kvx_assert_no_csum_errors
assert_eq "no packet with a guest source reached the LAN router" 0 "$(kvx_lan6_counted "$PFX")"
fwd=$(($(kvx_fwd6_datagrams) - FWD6_0))
assert_le "host Ip6OutForwDatagrams moved by $fwd: kvmxdp forwarded, not the kernel" "$fwd" 10

kvx_step "SIGKILL: the pinned program array keeps the IPv6 fast path"
kvx_daemon_kill
xi0=$(kvx_counter XDP_XLATE_IN)
assert_eq "guest2 download with no daemon: sha256" "$sha" \
	"$(kvx_curl_sha "$NS_G2" "http://[$SRV6]:8080/blob")"
assert_ge "... by XDP" $(($(kvx_counter XDP_XLATE_IN) - xi0)) 5000
kvx_attach_bg --mode xdp || kvx_fatal "cannot resume"
xi0=$(kvx_counter XDP_XLATE_IN)
assert_eq "guest2 download after the resume: sha256" "$sha" \
	"$(kvx_curl_sha "$NS_G2" "http://[$SRV6]:8080/blob")"
assert_ge "... by XDP (the new programs)" $(($(kvx_counter XDP_XLATE_IN) - xi0)) 5000
# The resumed daemon re-pinned its own array: killed again, the fast path
# stays (an array of the old programs, or none, would leave IPv6 to TC).
kvx_daemon_kill
xi0=$(kvx_counter XDP_XLATE_IN)
assert_eq "guest2 download, the resumed daemon killed: sha256" "$sha" \
	"$(kvx_curl_sha "$NS_G2" "http://[$SRV6]:8080/blob")"
assert_ge "... by XDP (the re-pinned array)" $(($(kvx_counter XDP_XLATE_IN) - xi0)) 5000

kvx_step "--mode tc: the XDP programs go, and their IPv6 program array with them"
kvx_attach_bg --mode tc || kvx_fatal "cannot attach --mode tc"
assert_eq "no XDP program on guest2's port" "" "$(kvx_xdp_prog "$NS_HOST" "$P2_IF")"
assert_eq "kvx_xdp6progs unpinned" no "$([[ -e $(kvx_pin_dir "$BR")/kvx_xdp6progs ]] && echo yes || echo no)"
assert_eq "status: no XDP IPv6 programs" "[]" "$(kvx_json 'i["xdp_ipv6_programs"]')"
to0=$(kvx_counter XLATE_IN)
assert_eq "guest2 download by TC: sha256" "$sha" "$(kvx_curl_sha "$NS_G2" "http://[$SRV6]:8080/blob")"
assert_ge "... translated by TC" $(($(kvx_counter XLATE_IN) - to0)) 5000
kvx_daemon_stop

kvx_step "detach: no XDP program, no pin"
kvx detach --bridge "$BR" >/dev/null 2>&1 || kvx_fail "detach"
for d in "$UP" "$P1_IF" "$P2_IF"; do
	assert_eq "no XDP program on $d" "" "$(kvx_xdp_prog "$NS_HOST" "$d")"
done
assert_eq "kvx_xdp6progs unpinned" no "$([[ -e $(kvx_pin_dir "$BR")/kvx_xdp6progs ]] && echo yes || echo no)"
kvx_finish
