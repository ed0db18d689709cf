#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/mapping_network6.sh: an IPv6 1:1 mapping (NAT66) is tied to the
# network it was made on, as an IPv4 one: the uplink's prefix, its IPv6
# default router's link-local address and the router's MAC (from the
# router advertisements).
#  1. home: the LAN router announces 2001:db8:1::/64 (radvd); `map add
#     2001:db8:1::101 guest1` records that network (map list, the config's
#     network6/router6/router6_mac; the router's MAC resolved when the
#     neighbour table does not hold it); the LAN host reaches guest1 at it
#     (curl -6, ping -6), resolving it by Neighbour Solicitation to the
#     uplink's MAC;
#  2. café: the same prefix from a router with the same link-local address
#     but another MAC (a WiFi reconnect: neighbour entries flushed): the
#     mapping is suspended (map list, status), its pairs are gone from
#     kvx_bind6, and the LAN host's Neighbour Solicitations for the address
#     get no answer (ND_PROXY_NA does not move, no neighbour entry);
#  3. home again: the daemon runs duplicate address detection for the
#     address again (RFC 4862: it may have been taken meanwhile) before it
#     announces it; then the LAN host reaches guest1 through it again.
#  4. an IPv6-only network from the daemon's start (the uplink's IPv4
#     address gone, the daemon stopped and attached again): the IPv6 network
#     alone is the network, the mapping active on it and reachable; a port
#     forward added there is tied to it (not left untied); an IPv4 mapping
#     made at home says no-uplink-address; the café's router on
#     that IPv6-only network still suspends both;
#  5. no default router (radvd gone: its last RA withdraws the route): a
#     mapping made with the router stays active in the datapath and says
#     so (map list: kept on the network last seen whole; reachable); a
#     forward added then is tied to the prefix alone and active, and stays
#     so through the daemon's syncs (the router that left is not recorded
#     from the network the daemon keeps judging on); when the
#     router's RAs come back it records that router (map list), stays
#     active and reachable, and the café's router suspends it.
#
#   guest1 ns  kg1<id> fd42:98::11/64 (default via the bridge's link-local)
#                 HTTP [fd42:98::11]:8080 (/who: guest1), 1:1 2001:db8:1::101
#   host ns    bridge kb<id> fd42:98::1/64                    <- kvmxdp (NAT66)
#              uplink ku<id>: SLAAC in 2001:db8:1::/64, default via the router's
#              link-local (from its RAs)
#   lan ns     kl<id> 2001:db8:1::1/64: the LAN router (radvd) and the LAN host
#              (curl, ping); "café": the same port with another MAC
#
# Usage: mapping_network6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
KVX_TIMEOUT=${KVX_TIMEOUT:-170} # the ctest TIMEOUT is 200 (vm-tests/CMakeLists.txt)
kvx_init "${1:-}"
kvx_require_tools curl radvd
kvx_topology_up

BR6=fd42:98::1 G1_6=fd42:98::11 ONE6=2001:db8:1::101
HOME_MAC=$(kvx_if_mac "$NS_LAN" "$LAN_UP_IF")
CAFE_MAC=02:ca:fe:00:00:01

kvx_step "IPv6: the LAN router's RAs on the uplink, guest1 on the bridge's ULA"
kvx_lan6_up 2001:db8:1::1 2001:db8:2::1 2001:db8:2::2
kvx_guest6_up "$BR6" "$G1_6"
kvx_lan6_radvd 2001:db8:1::/64
RADVD_PID=$KVX_LAST_PID
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)
ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
RTR_LL=$(ip -n "$NS_HOST" -6 route show default dev "$UP" | awk '{print $3; exit}')
UPMAC=$(kvx_if_mac "$NS_HOST" "$UP")
mkdir -p "$KVX_TMP/www"
echo guest1 >"$KVX_TMP/www/who"
kvx_bg "$KVX_TMP/http.g1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$G1_6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_G1" 8080

state_of() { kvx_json "[m['state'] for m in i['mappings'] if m['ext'] == '$ONE6'][0]"; }
# map_field EXT FIELD: that field of the mapping on EXT in `map list --json`.
map_field() { kvx map list --json | "$KVX_PY" -c 'import json,sys; print([m[sys.argv[2]] for m in json.load(sys.stdin)["mappings"] if m["ext"] == sys.argv[1]][0])' "$1" "$2"; }
wait_state() { # STATE
	local t
	for ((t = 0; t < 60; t++)); do [[ $(state_of) == "$1" ]] && return 0; sleep 0.25; done
	return 0
}
# The MAC the LAN host's neighbour table holds for ONE6 ('' if none).
lan_neigh() { ip -n "$NS_LAN" -6 -j neigh show "$ONE6" dev "$LAN_UP_IF" | "$KVX_PY" -c 'import json,sys; n=json.load(sys.stdin); print(n[0].get("lladdr", "") if n else "")'; }
# Who answers http://[ONE6]:8080/who from the LAN, tried for 5 s (the LAN's
# neighbour entry flushed between tries: a stale one does not decide it).
who_at_one6() {
	local who="" t
	for ((t = 0; t < 20; t++)); do
		who=$(kvx_http_get "$NS_LAN" "http://[$ONE6]:8080/who")
		[[ $who == guest1 ]] && break
		ip -n "$NS_LAN" -6 neigh flush dev "$LAN_UP_IF"
		sleep 0.25
	done
	echo "$who"
}
# The uplink meets the router with MAC: radvd restarted with the port's new
# address (it reads it at start for its RAs' source link-layer option), the
# neighbour entries of both ends gone as after a WiFi reconnect; the host
# learns the router's MAC from its RAs.
router_as() { # MAC
	kill "$RADVD_PID" 2>/dev/null || true
	wait "$RADVD_PID" 2>/dev/null || true
	ip -n "$NS_LAN" link set dev "$LAN_UP_IF" address "$1"
	ip -n "$NS_HOST" -6 neigh flush dev "$UP"
	ip -n "$NS_LAN" -6 neigh flush dev "$LAN_UP_IF"
	kvx_lan6_radvd 2001:db8:1::/64
	RADVD_PID=$KVX_LAST_PID
}
dads() { grep -c "mapped address $ONE6: duplicate address detection (RFC 4862)" "$KVX_DAEMON_LOG" || true; }

kvx_step "home: map add $ONE6 $G1_6 records the IPv6 network"
kvx_attach_bg --nat-ports 61000-65535 || kvx_fatal "cannot attach"
assert_eq "status: ipv6_mode" nat66 "$(kvx_json 'i["ipv6_mode"]')"
# map add must find the router's MAC itself (the kernel resolves it), not
# from an earlier RA.
ip -n "$NS_HOST" -6 neigh flush dev "$UP"
assert_ok "map add $ONE6 $G1_6" kvx map add "$ONE6" "$G1_6"
net=$(map_field "$ONE6" network)
assert_eq "map list --json: the mapping's network" "2001:db8:1::/64 via $RTR_LL at $HOME_MAC" "$net"
cfg=$(cat "$KVX_CFG")
assert_contains "the config records its prefix" '"network6": "2001:db8:1::/64"' "$cfg"
assert_contains "the config records the router" "\"router6\": \"$RTR_LL\"" "$cfg"
assert_contains "the config records the router's MAC" "\"router6_mac\": \"$HOME_MAC\"" "$cfg"
wait_state active
assert_eq "active at home" active "$(state_of)"
assert_eq "LAN -> [$ONE6]:8080 reaches guest1" guest1 "$(who_at_one6)"
assert_ge "LAN ping -6 $ONE6" "$(nsx "$NS_LAN" ping -6 -c 3 -i 0.2 -W 2 "$ONE6" | grep -c 'bytes from' || true)" 2
assert_eq "the LAN host resolved $ONE6 to the uplink's MAC" "$UPMAC" "$(lan_neigh)"
pairs_home=$(kvx_json 'i["bindings6"]["entries"]')
assert_ge "its pairs in kvx_bind6" "$pairs_home" 2

kvx_step "café: the same prefix and router address, another router MAC"
router_as "$CAFE_MAC"
wait_state suspended
assert_eq "suspended on the café network" suspended "$(state_of)"
assert_contains "map list says so" "suspended" "$(kvx map list)"
assert_contains "status says so, naming the home network" "made on another network (2001:db8:1::/64 via $RTR_LL at $HOME_MAC)" \
	"$(kvx status --bridge "$BR")"
assert_eq "its pairs are out of kvx_bind6" "$((pairs_home - 2))" "$(kvx_json 'i["bindings6"]["entries"]')"
na0=$(kvx_counter ND_PROXY_NA)
assert_eq "café LAN -> [$ONE6]:8080: nobody answers" "" "$(kvx_http_get "$NS_LAN" "http://[$ONE6]:8080/who")"
assert_eq "café LAN ping -6 $ONE6: no reply" 0 "$(nsx "$NS_LAN" ping -6 -c 2 -i 0.3 -W 1 "$ONE6" | grep -c 'bytes from' || true)"
assert_eq "no Neighbour Advertisement for $ONE6 (ND_PROXY_NA did not move)" "$na0" "$(kvx_counter ND_PROXY_NA)"
assert_eq "the LAN host has no neighbour entry for $ONE6" "" "$(lan_neigh)"
dads0=$(dads)

kvx_step "home again: duplicate address detection first, then reachable"
router_as "$HOME_MAC"
wait_state active
assert_eq "active at home again" active "$(state_of)"
assert_eq "the daemon ran DAD for $ONE6 again before announcing it" $((dads0 + 1)) "$(dads)"
assert_contains "and announced it when nobody had it" \
	"mapped address $ONE6: duplicate address detection done, nobody has it: announced" \
	"$(cat "$KVX_DAEMON_LOG")"
assert_eq "LAN -> [$ONE6]:8080 reaches guest1 again" guest1 "$(who_at_one6)"
assert_eq "the LAN host resolves $ONE6 to the uplink's MAC again" "$UPMAC" "$(lan_neigh)"

kvx_step "IPv6-only: no IPv4 on the uplink from the daemon's start"
# An IPv4 1:1 mapping made at home (tied to its IPv4 network) beside it.
ONE4=10.77.0.101
assert_ok "map add $ONE4 $G1_IP" kvx map add "$ONE4" "$G1_IP"
kvx_daemon_stop
ip -n "$NS_HOST" -4 addr flush dev "$UP"
kvx_attach_bg --nat-ports 61000-65535 || kvx_fatal "cannot attach again"
wait_state active
assert_eq "active on its IPv6-only network" active "$(state_of)"
assert_eq "the IPv4 mapping: no IPv4 network to judge it on" no-uplink-address "$(map_field "$ONE4" state)"
assert_eq "and says so" "the uplink has no IPv4 address: its IPv4 network is not known" \
	"$(map_field "$ONE4" reason)"
assert_eq "LAN -> [$ONE6]:8080 reaches guest1 (IPv6-only uplink)" guest1 "$(who_at_one6)"
ONE6B="[2001:db8:1::102]:8081"
assert_ok "map add $ONE6B [$G1_6]:8080 on the IPv6-only uplink" kvx map add "$ONE6B" "[$G1_6]:8080" --proto tcp
assert_eq "map list --json: tied to the IPv6 network" "2001:db8:1::/64 via $RTR_LL at $HOME_MAC" \
	"$(map_field "$ONE6B" network)"
router_as "$CAFE_MAC"
wait_state suspended
assert_eq "the café's router suspends it on IPv6 alone" suspended "$(state_of)"
assert_eq "and the one made on the IPv6-only uplink" suspended "$(map_field "$ONE6B" state)"

kvx_step "no default router: a mapping tied to its prefix alone records the router that comes"
router_as "$HOME_MAC"
wait_state active
# radvd's last RA on exit has router lifetime 0: the default route goes,
# the prefix and the uplink's address stay.
kill "$RADVD_PID" 2>/dev/null || true
wait "$RADVD_PID" 2>/dev/null || true
no_default() { [[ -z $(ip -n "$NS_HOST" -6 route show default dev "$UP") ]]; }
must kvx_wait_for 10 "the uplink's IPv6 default route gone" no_default
# The mapping made with the router: the daemon judges it on the network last
# seen whole (a router restarting is no other network), and map list says
# what the datapath does, not what the uplink shows this moment.
sleep 1.5 # a daemon sync or two
assert_eq "the mapping tied to the router that left: still active" active "$(state_of)"
assert_contains "map list says why" "kept on 2001:db8:1::/64 via $RTR_LL at $HOME_MAC: the uplink shows no default router" \
	"$(map_field "$ONE6" reason)"
assert_eq "and it is: LAN -> [$ONE6]:8080 reaches guest1 (no default router)" guest1 "$(who_at_one6)"
assert_not_contains "status warns of no suspended mapping" "is suspended" "$(kvx status --bridge "$BR")"
ONE6C="[2001:db8:1::103]:8082"
# The same guest port as step 4's forward: that one goes first.
assert_ok "map del $ONE6B" kvx map del "$ONE6B" "[$G1_6]:8080" --proto tcp
assert_ok "map add $ONE6C [$G1_6]:8080 without a default router" kvx map add "$ONE6C" "[$G1_6]:8080" --proto tcp
assert_eq "map list --json: its prefix alone" "2001:db8:1::/64 (no default router)" "$(map_field "$ONE6C" network)"
wait_map_state() { # EXT STATE
	local t
	for ((t = 0; t < 60; t++)); do [[ $(map_field "$1" state) == "$2" ]] && return 0; sleep 0.25; done
	return 0
}
wait_map_state "$ONE6C" active
assert_eq "active on its prefix" active "$(map_field "$ONE6C" state)"
# The daemon judges a network without a default router on the one it last
# saw whole (a router rebooting is no other network), but records a router
# only when the uplink shows one: not the one that just left.
changed=""
for ((t = 0; t < 12; t++)); do
	sleep 0.25
	net=$(map_field "$ONE6C" network) state=$(map_field "$ONE6C" state)
	[[ $net == "2001:db8:1::/64 (no default router)" && $state == active ]] || {
		changed="$net: $state"
		break
	}
done
assert_eq "the daemon's syncs (3 s) record no router that left, and keep it active" "" "$changed"
kvx_lan6_radvd 2001:db8:1::/64
RADVD_PID=$KVX_LAST_PID
for ((t = 0; t < 40; t++)); do no_default || break; sleep 0.25; done
for ((t = 0; t < 60; t++)); do
	[[ $(map_field "$ONE6C" network) == "2001:db8:1::/64 via $RTR_LL at $HOME_MAC" ]] && break
	sleep 0.25
done
assert_eq "the router that came is recorded" "2001:db8:1::/64 via $RTR_LL at $HOME_MAC" "$(map_field "$ONE6C" network)"
assert_eq "still active behind it" active "$(map_field "$ONE6C" state)"
who=""
for ((t = 0; t < 20; t++)); do
	who=$(kvx_http_get "$NS_LAN" "http://[2001:db8:1::103]:8082/who")
	[[ $who == guest1 ]] && break
	sleep 0.25
done
assert_eq "LAN -> $ONE6C reaches guest1" guest1 "$who"
router_as "$CAFE_MAC"
wait_map_state "$ONE6C" suspended
assert_eq "the café's router suspends it as any tied mapping" suspended "$(map_field "$ONE6C" state)"
kvx_finish
