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
# counted (DROP_MARTIAN_IN), while the LAN's real address gets through; so
# is a source that is another address of the host (a link's added after
# attach) or a broadcast address set on one (`brd`) until the host drops it.
# Then IPsec without a device: the host's ESP SAs with the LAN router
# (NETLINK_XFRM) put (ESP, router) into kvx_hosttun; guest1's ESP to the
# router is dropped, nothing bound, no flow listed; with ESP in the kernel,
# the host's own ping over the SA is decrypted (the inbound SA counts it);
# without it (CONFIG_INET_ESP off), larval SAs as an IKE daemon allocates
# them are the SAs.  Once the SAs go, guest1's ESP is NATed again.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1)        GRE kt1<id> 172.31.9.1/30 -> 10.77.0.1
#        |
#   host ns: bridge kb<id> 192.168.122.1/24; uplink ku<id> 10.77.0.2/24   <- kvmxdp
#            GRE kth<id> 172.30.9.1/30, local 10.77.0.2 remote 10.77.0.1 (made after attach)
#        |
#            ESP SAs (transport mode) 10.77.0.2 <-> 10.77.0.1 (no device)
#   lan ns:  kl<id> 10.77.0.1/24; GRE ktl<id> 172.30.9.2/30, local 10.77.0.1 remote 10.77.0.2
#   server ns (unused here)
#
# Usage: host_tunnel.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools ping
kvx_topology_up

TH=kth$KVX_ID TL=ktl$KVX_ID TG=kt1$KVX_ID

# The IPsec part, with or without GRE in the kernel.
ipsec_checks() {
	# IPsec without a tunnel device (strongSwan's default): the host's SAs with
	# the LAN router, read from NETLINK_XFRM.  A guest's ESP to the same peer
	# must not bind (ESP, uplink address) and take the host's inbound ESP.
	# esp_from_guest N: N ESP packets (raw socket, protocol 50) guest1 -> the router.
	esp_from_guest() {
		nsx "$NS_G1" "$KVX_PY" - "$LAN_IP" "$1" <<-'PY'
	import socket, struct, sys
	s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
	for seq in range(1, int(sys.argv[2]) + 1):
	    s.sendto(struct.pack("!II", 0x4b560001, seq) + b"guest-esp" * 4, (sys.argv[1], 0))
	PY
	}
	# The kvx_bind entries of IP protocol P (the key's second byte).
	binds_of_proto() {
		bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_bind" |
			"$KVX_PY" -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if int(e["key"][1],16) == int(sys.argv[1])))' "$1"
	}
	# Lines of the daemon's log saying "host tunnels: TEXT"; more of them than N?
	tun_lines() { grep -c "host tunnels: $1" "$KVX_DAEMON_LOG" || true; }
	tun_lines_gt() { (($(tun_lines "$1") > $2)); }
	XFRM_KEY=0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
	kvx_step "the host has an IPsec (ESP, transport mode) SA pair with the LAN router"
	nsx "$NS_HOST" sysctl -qw net.core.xfrm_acq_expires=600 # larval SAs below live that long
	added0=$(tun_lines "1 peer(s) added, 0 removed") removed0=$(tun_lines "0 peer(s) added, 1 removed")
	esp_sa() { # NS SRC DST SPI
		ip -n "$1" xfrm state add src "$2" dst "$3" proto esp spi "$4" mode transport \
			enc cipher_null "" auth-trunc "hmac(sha256)" "$XFRM_KEY" 128
	}
	FULL_ESP=1
	if esp_sa "$NS_HOST" "$UP_IP" "$LAN_IP" 0x1001 2>"$KVX_TMP/xfrm.err"; then
		esp_sa "$NS_HOST" "$LAN_IP" "$UP_IP" 0x1002
		esp_sa "$NS_LAN" "$UP_IP" "$LAN_IP" 0x1001
		esp_sa "$NS_LAN" "$LAN_IP" "$UP_IP" 0x1002
		for d in "$NS_HOST $UP_IP $LAN_IP" "$NS_LAN $LAN_IP $UP_IP"; do
			read -r ns a b <<<"$d"
			ip -n "$ns" xfrm policy add src "$a/32" dst "$b/32" proto icmp dir out \
				tmpl src "$a" dst "$b" proto esp mode transport
			ip -n "$ns" xfrm policy add src "$b/32" dst "$a/32" proto icmp dir in \
				tmpl src "$b" dst "$a" proto esp mode transport
		done
	else
		# This kernel has no ESP (CONFIG_INET_ESP off: "Requested type not
		# found").  What an IKE daemon makes first still works: the larval
		# SAs of the SPIs it allocates (XFRM_MSG_ALLOCSPI) while it negotiates,
		# which NETLINK_XFRM lists like any SA.  The host's own ESP traffic
		# needs esp4 and is not checked here.
		FULL_ESP=0
		kvx_log "no ESP in this kernel ($(cat "$KVX_TMP/xfrm.err")): larval SAs (allocspi) only"
		ip -n "$NS_HOST" xfrm state allocspi src "$LAN_IP" dst "$UP_IP" proto esp mode transport >/dev/null
		ip -n "$NS_HOST" xfrm state allocspi src "$UP_IP" dst "$LAN_IP" proto esp mode transport >/dev/null
	fi
	kvx_wait_for 10 "the daemon adds the IPsec peer" tun_lines_gt "1 peer(s) added, 0 removed" "$added0"
	hosttun=$(bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_hosttun")
	assert_eq "kvx_hosttun holds (ESP, the router) and only that" "[[50, '$LAN_IP']]" \
		"$("$KVX_PY" -c 'import json,sys,socket; print(sorted([int(e["key"][4],16), socket.inet_ntoa(bytes(int(x,16) for x in e["key"][0:4]))] for e in json.load(sys.stdin)))' <<<"$hosttun" | tr '"' "'")"

	kvx_step "guest1 sends ESP to the host's IPsec peer"
	drops0=$(kvx_counter DROP_HOST_TUNNEL)
	esp_from_guest 5
	kvx_wait_datapath 5 "the guest's ESP dropped" "c['DROP_HOST_TUNNEL'] >= $((drops0 + 5))" || true
	assert_ge "guest1's ESP to the peer dropped and counted" "$(($(kvx_counter DROP_HOST_TUNNEL) - drops0))" 5
	assert_eq "no binding was made for ESP" 0 "$(binds_of_proto 50)"
	flows_to_peer() {
		kvx conntrack list --json --bridge "$BR" --guest "$G1_IP" --remote "$LAN_IP" |
			"$KVX_PY" -c 'import json,sys; print(len(json.load(sys.stdin)))'
	}
	assert_eq "conntrack lists no flow of guest1 to the peer" 0 "$(flows_to_peer)"
	if ((FULL_ESP)); then
		in0=$(ip -n "$NS_HOST" -s xfrm state get src "$LAN_IP" dst "$UP_IP" proto esp spi 0x1002 |
			sed -n 's/.* \([0-9]*\)(packets).*/\1/p' | head -n1)
		assert_ok "the host's own ping over the SA works" nsx "$NS_HOST" ping -c 3 -i 0.2 -W 2 "$LAN_IP"
		in1=$(ip -n "$NS_HOST" -s xfrm state get src "$LAN_IP" dst "$UP_IP" proto esp spi 0x1002 |
			sed -n 's/.* \([0-9]*\)(packets).*/\1/p' | head -n1)
		assert_ge "the host decrypted the replies (its inbound SA counted them)" "$((in1 - in0))" 3
	fi

	kvx_step "the SAs go: the peer is released and ESP is NATed again"
	ip -n "$NS_HOST" xfrm policy flush
	ip -n "$NS_HOST" xfrm state flush
	kvx_wait_for 10 "the daemon drops the IPsec peer" tun_lines_gt "0 peer(s) added, 1 removed" "$removed0"
	esp_from_guest 2
	esp_bound() { (($(binds_of_proto 50) >= 1)); }
	kvx_wait_for 5 "guest1's ESP is bound now" esp_bound || true
	assert_ge "without the SA, guest1's ESP gets an address-only binding (the check above can fail)" \
		"$(binds_of_proto 50)" 1
	assert_ge "and conntrack lists its flow" "$(flows_to_peer)" 1
}

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
# The host's other addresses (here a veth pair's in the host, as a VPN's
# or a container bridge's; no dummy module in every kernel), made after
# attach: the daemon follows them (kvx_hostaddr); a SYN from one is a
# martian while the host has it, and reaches the forward once it is gone.
HD=kvd$KVX_ID VPN=10.99.7.1
ip -n "$NS_HOST" link add "$HD" type veth peer name "kve$KVX_ID"
ip -n "$NS_HOST" link set "$HD" up
ip -n "$NS_HOST" addr add "$VPN/32" dev "$HD"
ip -n "$NS_LAN" addr add "$VPN/32" dev "$LAN_UP_IF"
m1=$(kvx_counter DROP_MARTIAN_IN)
vpn_martian() { syn_from "$VPN"; (($(kvx_counter DROP_MARTIAN_IN) > m1)); }
must kvx_wait_for 8 "a SYN from the host's address $VPN dropped as a martian" vpn_martian
assert_eq "no flow from $VPN" 0 "$(kvx conntrack list --json 2>/dev/null | "$KVX_PY" -c "import json,sys; print(sum(f['rem_addr'] == '$VPN' for f in json.load(sys.stdin)))" 2>/dev/null || echo error)"
# A broadcast address set with `brd` (not the prefix's .255): the kernel's
# local table has it as a broadcast route, so it is a martian too.
BRD=10.99.8.7
ip -n "$NS_HOST" addr add 10.99.8.1/24 brd "$BRD" dev "$HD"
ip -n "$NS_LAN" addr add "$BRD/32" dev "$LAN_UP_IF"
m2=$(kvx_counter DROP_MARTIAN_IN)
brd_martian() { syn_from "$BRD"; (($(kvx_counter DROP_MARTIAN_IN) > m2)); }
must kvx_wait_for 8 "a SYN from the host's own broadcast address $BRD (brd) dropped as a martian" brd_martian
ip -n "$NS_LAN" addr del "$BRD/32" dev "$LAN_UP_IF"
ip -n "$NS_HOST" link del "$HD"
ok1=$(kvx_counter XLATE_IN)
vpn_in() { syn_from "$VPN"; (($(kvx_counter XLATE_IN) > ok1)); }
must kvx_wait_for 8 "$VPN no longer the host's: its SYN reaches the forward" vpn_in
ip -n "$NS_LAN" addr del "$VPN/32" dev "$LAN_UP_IF"
kvx map del "$UP_IP:2222" "$G1_IP:22" --proto tcp >/dev/null

kvx_step "the host makes a GRE tunnel to the LAN router"
if ! ip -n "$NS_HOST" tunnel add "$TH" mode gre local "$UP_IP" remote "$LAN_IP" ttl 64 2>"$KVX_TMP/gre.err"; then
	# The martian checks above ran; the tunnel part needs ip_gre.
	kvx_log "SKIP the GRE tunnel part: no GRE in this kernel: $(cat "$KVX_TMP/gre.err")"
	ipsec_checks
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

ipsec_checks
kvx_finish
