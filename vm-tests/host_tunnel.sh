#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/host_tunnel.sh: the host's own GRE tunnel to a LAN peer survives a
# guest that sends GRE to the same peer.  Address-only NAT of GRE would bind
# (GRE, uplink address) to the guest and hand it the tunnel's inbound
# packets; kvmxdp reads the host's tunnels (netlink) into kvx_hosttun and
# never binds those (protocol, remote) pairs: the guest's packets are
# dropped and counted (DROP_HOST_TUNNEL), the host's tunnel keeps working.
# Also: martian sources from the LAN to a port forward are dropped and
# counted (DROP_MARTIAN_IN), while the LAN's real address gets through.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1)        GRE kt1<id> 172.31.9.1/30 -> 10.77.0.1
#        |
#   host ns: bridge kb<id> 192.168.122.1/24; uplink ku<id> 10.77.0.2/24   <- kvmxdp
#            GRE kth<id> 172.30.9.1/30, local 10.77.0.2 remote 10.77.0.1 (made after attach)
#        |
#   lan ns:  kl<id> 10.77.0.1/24; GRE ktl<id> 172.30.9.2/30, local 10.77.0.1 remote 10.77.0.2
#   server ns (unused here)
#
# Usage: host_tunnel.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools ping
kvx_topology_up

TH=kth$KVX_ID TL=ktl$KVX_ID TG=kt1$KVX_ID

kvx_step "attach; martian sources to a port forward"
kvx_attach_bg || kvx_fatal "cannot attach"
kvx map add "$UP_IP:2222" "$G1_IP:22" --proto tcp >/dev/null
m0=$(kvx_counter DROP_MARTIAN_IN)
# The LAN router sends SYNs to the forward from sources no LAN host can
# have: the guest subnet (posing as guests to the guests).
# syn_from SRC: one TCP connection attempt from SRC (a LAN address) to the
# forward uplink:2222; whether it connects is what the counters say.
syn_from() {
	nsx "$NS_LAN" "$KVX_PY" - "$1" "$UP_IP" <<'PY' || true
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.settimeout(1)
try:
    s.connect((sys.argv[2], 2222))
except OSError:
    pass
PY
}
for src in 192.168.122.12 192.168.122.200; do
	ip -n "$NS_LAN" addr add "$src/32" dev "$LAN_UP_IF"
	syn_from "$src"
	ip -n "$NS_LAN" addr del "$src/32" dev "$LAN_UP_IF"
done
assert_ge "martian SYNs dropped and counted" "$(($(kvx_counter DROP_MARTIAN_IN) - m0))" 2
ok0=$(kvx_counter XLATE_IN)
syn_from "$LAN_IP"
assert_ge "the LAN router's own address reaches the forward" "$(($(kvx_counter XLATE_IN) - ok0))" 1
kvx map del "$UP_IP:2222" "$G1_IP:22" --proto tcp >/dev/null

kvx_step "the host makes a GRE tunnel to the LAN router"
if ! ip -n "$NS_HOST" tunnel add "$TH" mode gre local "$UP_IP" remote "$LAN_IP" ttl 64 2>"$KVX_TMP/gre.err"; then
	# The martian checks above ran; the tunnel part needs ip_gre.
	kvx_log "SKIP the tunnel part: no GRE in this kernel: $(cat "$KVX_TMP/gre.err")"
	kvx_finish
fi
ip -n "$NS_HOST" addr add 172.30.9.1/30 dev "$TH"
ip -n "$NS_HOST" link set "$TH" up
ip -n "$NS_LAN" tunnel add "$TL" mode gre local "$LAN_IP" remote "$UP_IP" ttl 64
ip -n "$NS_LAN" addr add 172.30.9.2/30 dev "$TL"
ip -n "$NS_LAN" link set "$TL" up
assert_ok "the host's tunnel works" nsx "$NS_HOST" ping -c 2 -i 0.2 -W 2 172.30.9.2
kvx_wait_for 10 "the daemon logs the host's tunnel peer" \
	grep -q "host tunnels: 1 peer(s) added" "$KVX_DAEMON_LOG"

kvx_step "guest1 sends GRE to the host's tunnel peer"
ip -n "$NS_G1" tunnel add "$TG" mode gre local "$G1_IP" remote "$LAN_IP" ttl 64
ip -n "$NS_G1" addr add 172.31.9.1/30 dev "$TG"
ip -n "$NS_G1" link set "$TG" up
drops0=$(kvx_counter DROP_HOST_TUNNEL)
nsx "$NS_G1" ping -c 5 -i 0.2 -W 1 172.31.9.2 >/dev/null 2>&1 || true
assert_ge "guest1's GRE to the peer dropped and counted" "$(($(kvx_counter DROP_HOST_TUNNEL) - drops0))" 5
assert_eq "no binding was made for GRE" 0 "$(bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_bind" |
	"$KVX_PY" -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if int(e["key"][1],16) == 47))')"

kvx_step "the host's tunnel still works, both ways"
assert_ok "host -> LAN over the tunnel" nsx "$NS_HOST" ping -c 3 -i 0.2 -W 2 172.30.9.2
assert_ok "LAN -> host over the tunnel" nsx "$NS_LAN" ping -c 3 -i 0.2 -W 2 172.30.9.1

kvx_step "the tunnel goes: its peer is released"
ip -n "$NS_HOST" link del "$TH"
kvx_wait_for 10 "the daemon drops the peer" grep -q "host tunnels: 0 peer(s) added, 1 removed" "$KVX_DAEMON_LOG"

kvx_finish
