#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/cafe_network.sh: a 1:1 mapping made at "home" does not resume on a
# "café" network with the same subnet and the same gateway address: the
# gateway's MAC (recorded with the mapping) differs, so kvmxdp neither
# answers ARP for the mapped address there nor exposes the guest.  Back home
# (the home gateway's MAC again) the daemon probes the address first (RFC
# 5227, as `map add` does) and resumes it when nobody answers.  Away again, a
# LAN host takes the address meanwhile (a phone given it by DHCP): back home
# the probe meets the owner, so the mapping stays suspended ("conflict" in
# status, with the reason) and kvmxdp answers no ARP for it; once the owner
# gives it up, the retry resumes it.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+ bridge kb<id> 192.168.122.1/24  (host ns)
#                                                    uplink ku<id> 10.77.0.2/24, default via
#                                                    10.77.0.1                        <- kvmxdp
#   lan ns: kl<id> 10.77.0.1/24 = the gateway.  "Home": its own MAC; "café": the same
#           address with another MAC (the port's address changed, the host's neighbour
#           entry flushed as a WiFi reconnect would).  Later it owns 10.77.0.50 for a
#           while (the LAN host that took the address); arp_peer.py probes from here.
#
# Usage: cafe_network.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-170} # the ctest TIMEOUT is 200 (vm-tests/CMakeLists.txt)
kvx_init "${1:-}"
kvx_require_tools curl
kvx_topology_up
kvx_guest_http_servers
EXT1=10.77.0.50
HOME_MAC=$(kvx_if_mac "$NS_LAN" "$LAN_UP_IF")
CAFE_MAC=02:ca:fe:00:00:01
state_of() { kvx_json "[m['state'] for m in i['mappings'] if m['ext'] == '$1'][0]"; }
network_of() { kvx_json "[m['network'] for m in i['mappings'] if m['ext'] == '$1'][0]"; }
wait_state() { # STATE
	local t
	for ((t = 0; t < 40; t++)); do [[ $(state_of "$EXT1") == "$1" ]] && return 0; sleep 0.25; done
	return 0
}
# The daemon has acted on the network whose gateway has MAC: its last
# "uplink network" line names it (status alone computes the state itself).
daemon_on() { grep "uplink network" "$KVX_DAEMON_LOG" | tail -n1 | grep -q "at $1: "; }
# A WiFi reconnect: the host's neighbour entries of the uplink are gone.
reconnect() {
	ip -n "$NS_HOST" neigh flush dev "$UP"
	ip -n "$NS_LAN" neigh flush dev "$LAN_UP_IF"
}

kvx_step "home: map add $EXT1 $G1_IP records the gateway's MAC"
kvx_attach_bg || kvx_fatal "cannot attach"
reconnect # map add must find the MAC itself (one ARP probe), not from earlier traffic
assert_ok "map add $EXT1 $G1_IP" kvx map add "$EXT1" "$G1_IP"
assert_contains "the mapping's network names the home gateway's MAC" "at $HOME_MAC" "$(network_of "$EXT1")"
assert_contains "the config records it" "\"gateway_mac\": \"$HOME_MAC\"" "$(cat "$KVX_CFG")"
assert_eq "LAN -> $EXT1 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"

kvx_step "café: same subnet, same gateway address, another gateway MAC"
ip -n "$NS_LAN" link set dev "$LAN_UP_IF" address "$CAFE_MAC"
reconnect
wait_state suspended
kvx_wait_for 10 "the daemon on the café network" daemon_on "$CAFE_MAC"
assert_eq "1:1 mapping suspended on the café network" suspended "$(state_of "$EXT1")"
assert_contains "status says so" "suspended" "$(kvx status --bridge "$BR")"
ip -n "$NS_LAN" neigh flush dev "$LAN_UP_IF"
sus0=$(kvx_counter PASS_SUSPENDED) arp0=$(kvx_counter ARP_REPLY)
assert_eq "café LAN -> $EXT1: nobody answers for it" "" "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "no ARP answer for $EXT1 on the café network" "" \
	"$(ip -n "$NS_LAN" -4 neigh show "$EXT1" | grep -v -e FAILED -e INCOMPLETE || true)"
assert_eq "ARP_REPLY did not move" 0 "$(($(kvx_counter ARP_REPLY) - arp0))"
assert_ge "guest1 is masqueraded meanwhile" "$(nsx "$NS_G1" ping -c 2 -i 0.2 -W 2 "$LAN_IP" | grep -c 'bytes from' || true)" 1
kvx_log "PASS_SUSPENDED moved by $(($(kvx_counter PASS_SUSPENDED) - sus0))"

# Who answers http://EXT1/who from the LAN, tried for 5 s: the LAN's
# neighbour entry is flushed between tries, so a stale one (the other owner's
# MAC, or none while the address was held) does not decide it.
who_at_ext1() {
	local who="" t
	for ((t = 0; t < 20; t++)); do
		who=$(kvx_http_get "$NS_LAN" "http://$EXT1/who")
		[[ $who == guest1 ]] && break
		ip -n "$NS_LAN" neigh flush dev "$LAN_UP_IF"
		sleep 0.25
	done
	echo "$who"
}

kvx_step "home again: the gateway's own MAC"
ip -n "$NS_LAN" link set dev "$LAN_UP_IF" address "$HOME_MAC"
reconnect
wait_state active
assert_eq "1:1 mapping resumed at home" active "$(state_of "$EXT1")"
ok=$(who_at_ext1)
assert_eq "LAN -> $EXT1 reaches guest1 again" guest1 "$ok"
assert_contains "the daemon probed $EXT1 before resuming it" \
	"$EXT1 is back on its network: probing it" "$(cat "$KVX_DAEMON_LOG")"
assert_contains "and resumed it when nobody answered" \
	"$EXT1: nobody answered the probe, resumed" "$(cat "$KVX_DAEMON_LOG")"

# The LAN's own probe of EXT1, from the LAN namespace: its kernel never
# answers its own frames, so what answers comes over the wire from the uplink.
lan_probe() { # COUNT
	nsx "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" probe "$LAN_UP_IF" "$EXT1" \
		--count "$1" --interval 0.2 --wait 1 || true
}
UP_MAC=$(ip -n "$NS_HOST" -br link show dev "$UP" | awk '{print $3}')

kvx_step "away again; a LAN host takes $EXT1 meanwhile; home: the probe meets it"
ip -n "$NS_LAN" link set dev "$LAN_UP_IF" address "$CAFE_MAC"
reconnect
wait_state suspended
kvx_wait_for 10 "the daemon on the café network" daemon_on "$CAFE_MAC"
assert_eq "suspended on the café network again" suspended "$(state_of "$EXT1")"
ip -n "$NS_LAN" addr add "$EXT1/24" dev "$LAN_UP_IF"
ip -n "$NS_LAN" link set dev "$LAN_UP_IF" address "$HOME_MAC"
arp0=$(kvx_counter ARP_REPLY)
reconnect
wait_state conflict
assert_eq "home with $EXT1 taken: the mapping stays suspended (conflict)" conflict \
	"$(state_of "$EXT1")"
assert_contains "status --json says why" "another host answers ARP for $EXT1" \
	"$(kvx_json "[m['reason'] for m in i['mappings'] if m['ext'] == '$EXT1'][0]")"
assert_contains "status says so" "conflict" "$(kvx status --bridge "$BR")"
assert_contains "the daemon logged the owner's MAC" "$EXT1 is in use by $HOME_MAC" \
	"$(cat "$KVX_DAEMON_LOG")"
assert_eq "nobody on the wire answers ARP for $EXT1 (kvmxdp keeps off it)" "" "$(lan_probe 3)"
assert_eq "ARP_REPLY did not move" 0 "$(($(kvx_counter ARP_REPLY) - arp0))"

kvx_step "the LAN host gives $EXT1 up: the retry resumes the mapping"
ip -n "$NS_LAN" addr del "$EXT1/24" dev "$LAN_UP_IF"
for ((t = 0; t < 60; t++)); do [[ $(state_of "$EXT1") == active ]] && break; sleep 0.25; done
assert_eq "resumed after the retry" active "$(state_of "$EXT1")"
assert_contains "kvmxdp answers ARP for $EXT1 again (the uplink's MAC)" "sha=$UP_MAC" "$(lan_probe 2)"
ok=$(who_at_ext1)
assert_eq "LAN -> $EXT1 reaches guest1 after the owner left" guest1 "$ok"
kvx_finish
