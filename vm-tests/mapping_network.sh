#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/mapping_network.sh: static mappings while the network around them
# changes, all followed by the running daemon without a reload:
#  - the uplink's address changes on the same network: an `uplink` forward
#    moves to the new address, a 1:1 address stays;
#  - the uplink moves to another network (other subnet and gateway): the
#    mappings are suspended (no proxy ARP, the 1:1 guest is masqueraded,
#    status says so) and resumed when the uplink is back;
#  - the bridge is deleted and re-created (a libvirt network restart): the
#    daemon re-attaches its filter and traffic flows again;
#  - `map add --add-address` puts the address on the uplink, del removes it;
#  - `attach --bridge BR` alone takes the uplink from the config.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1, HTTP :80) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1, HTTP :80) --+ bridge kb<id> (192.168.122.1/24)
#                                                               host ns, kvmxdp:
#                                                               uplink ku<id> 10.77.0.2/24
#                                                               (-> .3, -> 10.88.0.2/24, back)
#                                                               1:1     10.77.0.101 -> guest1
#                                                               forward uplink:8080 -> guest2:80
#   lan ns:    kl<id> 10.77.0.1/24 + 10.88.0.1/24 (both networks' gateway), kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 HTTP :8080
#
# Usage: mapping_network.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
ip -n "$NS_LAN" addr add 10.88.0.1/24 dev "$LAN_UP_IF"

EXT1=10.77.0.101
kvx_guest_http_servers
# get_eventually TIMEOUT_S NS URL WANT: until the body is WANT (the daemon
# follows changes within about a second).
get_eventually() {
	local deadline=$(($(date +%s) + $1)) body
	while :; do
		body=$(nsx "$2" curl -sS --fail --max-time 1 "$3" 2>/dev/null || true)
		[[ $body == "$4" ]] && { echo "$body"; return 0; }
		(($(date +%s) >= deadline)) && { echo "$body"; return 0; }
		sleep 0.2
	done
}
state_of() { kvx_json "[m['state'] for m in i['mappings'] if m['ext'] == '$1'][0]"; }

kvx_attach_bg || kvx_fatal "cannot attach"
assert_ok "map add $EXT1 $G1_IP" kvx map add "$EXT1" "$G1_IP"
assert_ok "map add uplink:8080 $G2_IP:80" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
assert_eq "LAN -> $EXT1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "LAN -> $UP_IP:8080" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"

kvx_step "uplink address $UP_IP -> $UP_IP2 (same network)"
ip -n "$NS_HOST" addr add "$UP_IP2/24" dev "$UP"
ip -n "$NS_HOST" addr del "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
assert_eq "LAN -> $UP_IP2:8080 (forward followed the address)" guest2 \
	"$(get_eventually 5 "$NS_LAN" "http://$UP_IP2:8080/who" guest2)"
assert_eq "LAN -> $EXT1 (1:1 address unchanged)" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "map list shows the new address" "$UP_IP2" \
	"$(kvx_json "[m['ext_addr'] for m in i['mappings'] if m['ext'] == 'uplink:8080'][0]")"

kvx_step "uplink loses its address briefly (WiFi reconnect): mappings stay"
ip -n "$NS_HOST" addr del "$UP_IP2/24" dev "$UP"
no_addr() { [[ $(state_of "$EXT1") == no-uplink-address ]]; }
kvx_wait_for 5 "the mapping state to show the lost address" no_addr || true
assert_eq "state without an address" no-uplink-address "$(state_of "$EXT1")"
ip -n "$NS_HOST" addr add "$UP_IP2/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
assert_eq "LAN -> $EXT1 after the address came back" guest1 \
	"$(get_eventually 5 "$NS_LAN" "http://$EXT1/who" guest1)"
assert_eq "state back" active "$(state_of "$EXT1")"

kvx_step "uplink moves to another network: mappings suspended"
ip -n "$NS_HOST" addr add 10.88.0.2/24 dev "$UP"
ip -n "$NS_HOST" addr del "$UP_IP2/24" dev "$UP"
ip -n "$NS_HOST" route replace default via 10.88.0.1 dev "$UP"
for ((t = 0; t < 25; t++)); do [[ $(state_of "$EXT1") == suspended ]] && break; sleep 0.2; done
assert_eq "1:1 mapping state" suspended "$(state_of "$EXT1")"
assert_eq "forward state" suspended "$(state_of uplink:8080)"
assert_contains "status warns" "suspended" "$(kvx status --bridge "$BR")"
ip -n "$NS_LAN" neigh flush dev "$LAN_UP_IF"
assert_eq "LAN -> $EXT1 while suspended (no proxy ARP)" "" "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "LAN -> 10.88.0.2:8080 while suspended" "" "$(kvx_http_get "$NS_LAN" "http://10.88.0.2:8080/who")"
assert_ne "guest1 -> server while suspended" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "suspended 1:1 guest is masqueraded" 10.88.0.2 "$(kvx_http_last_client "$KVX_TMP/http.log")"

kvx_step "back on the mappings' network: resumed"
ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" addr del 10.88.0.2/24 dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
assert_eq "LAN -> $EXT1 after return" guest1 "$(get_eventually 5 "$NS_LAN" "http://$EXT1/who" guest1)"
assert_eq "LAN -> $UP_IP:8080 after return" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_eq "1:1 mapping state" active "$(state_of "$EXT1")"
assert_ne "guest1 -> server" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "1:1 guest leaves from $EXT1 again" "$EXT1" "$(kvx_http_last_client "$KVX_TMP/http.log")"

kvx_step "bridge deleted and re-created (libvirt network restart)"
old_ifindex=$(kvx_json "i['devices'][0]['ifindex']")
ip -n "$NS_HOST" link del "$BR"
kvx_bridge_recreate
assert_eq "LAN -> $EXT1 through the new bridge" guest1 \
	"$(get_eventually 8 "$NS_LAN" "http://$EXT1/who" guest1)"
assert_eq "LAN -> $UP_IP:8080 through the new bridge" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_ne "guest2 -> server through the new bridge" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
assert_eq "guest2 masqueraded" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_ne "status shows the new bridge ifindex" "$old_ifindex" "$(kvx_json "i['devices'][0]['ifindex']")"
assert_eq "filter on the new bridge" kvx_br_ingress "$(kvx_json "i['devices'][0]['prog']")"
assert_eq "forwarding on the new bridge" 1 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"

kvx_step "--add-address"
assert_ok "map add 10.77.0.120 $G2_IP --add-address" kvx map add 10.77.0.120 "$G2_IP" --add-address
assert_contains "address on the uplink" "10.77.0.120/24" "$(ip -n "$NS_HOST" -4 addr show dev "$UP")"
assert_eq "LAN -> 10.77.0.120" guest2 "$(kvx_http_get "$NS_LAN" "http://10.77.0.120/who")"
assert_contains "labelled as kvmxdp's (never taken for the uplink address)" \
	"10.77.0.120/24 scope global secondary $UP:kvx" "$(ip -n "$NS_HOST" -4 -o addr show dev "$UP")"

kvx_step "--add-address on another network: the address leaves the uplink and comes back"
# As systemd-networkd sets it: a secondary survives its primary's removal
# (so it is the daemon, not the kernel, that takes it away).
ip netns exec "$NS_HOST" sysctl -qw "net.ipv4.conf.$UP.promote_secondaries=1"
ip -n "$NS_HOST" addr add 10.88.0.2/24 dev "$UP"
ip -n "$NS_HOST" addr del "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via 10.88.0.1 dev "$UP"
for ((t = 0; t < 25; t++)); do [[ $(state_of 10.77.0.120) == suspended ]] && break; sleep 0.2; done
assert_eq "--add-address mapping suspended" suspended "$(state_of 10.77.0.120)"
for ((t = 0; t < 25; t++)); do
	ip -n "$NS_HOST" -4 addr show dev "$UP" | grep -q 10.77.0.120 || break
	sleep 0.2
done
assert_not_contains "the suspended mapping's address left the uplink" "10.77.0.120" \
	"$(ip -n "$NS_HOST" -4 addr show dev "$UP")"
assert_eq "the uplink address is the new network's" 10.88.0.2 "$(kvx_json 'i["uplink_addr"]')"
ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" addr del 10.88.0.2/24 dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
assert_eq "LAN -> 10.77.0.120 back on its network" guest2 \
	"$(get_eventually 5 "$NS_LAN" "http://10.77.0.120/who" guest2)"
assert_contains "the address is back on the uplink" "10.77.0.120/24" \
	"$(ip -n "$NS_HOST" -4 addr show dev "$UP")"
assert_eq "the uplink address is $UP_IP again" "$UP_IP" "$(kvx_json 'i["uplink_addr"]')"

kvx_step "detach, then attach --bridge alone (the systemd unit's command)"
kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
assert_not_contains "detach removed the added address" "10.77.0.120" "$(ip -n "$NS_HOST" -4 addr show dev "$UP")"
kvx_bg "$KVX_TMP/attach2.log" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR"
KVX_DAEMON_PID=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/attach2.log" "kvmxdp: attached bridge=$BR uplink=$UP" || true
assert_eq "LAN -> $EXT1 after attach --bridge" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_contains "added address back" "10.77.0.120/24" "$(ip -n "$NS_HOST" -4 addr show dev "$UP")"
assert_eq "LAN -> 10.77.0.120 after attach" guest2 "$(kvx_http_get "$NS_LAN" "http://10.77.0.120/who")"
assert_ok "map del 10.77.0.120 $G2_IP" kvx map del 10.77.0.120 "$G2_IP"
assert_not_contains "address removed from the uplink" "10.77.0.120" "$(ip -n "$NS_HOST" -4 addr show dev "$UP")"

kvx_finish
