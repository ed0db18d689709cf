#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/mapping.sh: static mappings with real traffic.
# 1:1 NAT of guest1 to 10.77.0.101 and a port forward uplink:8080 -> guest2:80,
# reached from the LAN host (which keeps its own address), hairpin between the
# guests, proxy ARP with the uplink MAC, the RFC 5227 probe refusing an
# address another LAN host owns, del stopping access, the mappings coming
# back after detach + attach (config), and two concurrent `map add`.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1, HTTP :80) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1, HTTP :80) --+ bridge kb<id> (192.168.122.1/24)
#                                                               host ns, kvmxdp:
#                                                               uplink ku<id> 10.77.0.2/24
#                                                               1:1     10.77.0.101 -> guest1
#                                                               forward uplink:8080 -> guest2:80
#   lan ns:    kl<id> 10.77.0.1/24 = "the LAN host" (curl, neighbour table; owns
#              10.77.0.50 too, for the probe conflict), kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 HTTP :8080 (sees the 1:1 guest's source address)
#
# Usage: mapping.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server

EXT1=10.77.0.101
# HTTP servers in the guests; their logs carry the client address.
kvx_guest_http_servers
# The "other LAN host" that owns 10.77.0.50 (probe conflict).
ip -n "$NS_LAN" addr add 10.77.0.50/24 dev "$LAN_UP_IF"


kvx_attach_bg || kvx_fatal "cannot attach"

kvx_step "map add: 1:1 and a port forward on 'uplink'"
assert_ok "map add $EXT1 $G1_IP" kvx map add "$EXT1" "$G1_IP"
assert_ok "map add uplink:8080 $G2_IP:80 --proto tcp" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
list=$(kvx map list --json)
assert_contains "map list has the 1:1 mapping" "\"ext\": \"$EXT1\"" "$list"
assert_contains "map list has the forward" "\"ext\": \"uplink:8080\"" "$list"
assert_not_contains "nothing suspended" "suspended" "$list"
assert_not_contains "the mapped address is not host-local" "$EXT1" "$(ip -n "$NS_HOST" -4 addr show)"

kvx_step "LAN host -> guests through the mappings"
assert_eq "LAN -> $EXT1:80 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "guest1 sees the LAN host's own address" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_eq "LAN -> $UP_IP:8080 reaches guest2:80" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_eq "guest2 sees the LAN host's own address" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g2.http.log")"
mac_up=$(ip -n "$NS_HOST" -o link show "$UP" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
mac_n=$(ip -n "$NS_LAN" neigh show "$EXT1" dev "$LAN_UP_IF" | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p')
assert_eq "LAN neighbour entry of $EXT1 is the uplink MAC" "$mac_up" "$mac_n"
assert_ge "ARP_REPLY counted" "$(kvx_counter ARP_REPLY)" 1

kvx_step "not reachable: unforwarded ports, unmapped guest"
assert_eq "LAN -> $UP_IP:80 (not forwarded)" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP/who")"
ip -n "$NS_LAN" route add 192.168.122.0/24 via "$UP_IP"
assert_eq "LAN -> $G2_IP:80 directly (unmapped guest)" "" "$(kvx_http_get "$NS_LAN" "http://$G2_IP/who")"
ip -n "$NS_LAN" route del 192.168.122.0/24 via "$UP_IP"

kvx_step "1:1 guest's outbound traffic leaves from $EXT1"
assert_ne "guest1 -> server" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "server sees guest1 as $EXT1" "$EXT1" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_ne "guest2 -> server" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
assert_eq "server sees guest2 as the uplink address" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"

kvx_step "hairpin"
assert_eq "guest2 -> $EXT1:80 (guest1's 1:1 address)" guest1 "$(kvx_http_get "$NS_G2" "http://$EXT1/who")"
assert_eq "guest1 -> $UP_IP:8080 (forward to guest2)" guest2 "$(kvx_http_get "$NS_G1" "http://$UP_IP:8080/who")"
assert_ge "XLATE_HAIRPIN counted" "$(kvx_counter XLATE_HAIRPIN)" 2

kvx_step "a forward over a host socket: warning"
kvx_bg "$KVX_TMP/hostsock.log" ip netns exec "$NS_HOST" socat TCP-LISTEN:8090,bind="$UP_IP",reuseaddr,fork /dev/null
kvx_wait_tcp_listen 5 "$NS_HOST" 8090
out=$(kvx map add uplink:8090 "$G1_IP:8090" --proto tcp 2>&1) || kvx_fail "forward over a host socket refused: $out"
assert_contains "warning about the host socket" "warning: a host socket listens on tcp port 8090" "$out"
assert_ok "map del uplink:8090" kvx map del uplink:8090 "$G1_IP:8090" --proto tcp
assert_contains "map list (table)" "uplink:8080" "$(kvx map list)"

kvx_step "refused mappings change nothing"
before=$(cat "$KVX_CFG")
out=$(kvx map add 10.77.0.50 "$G2_IP" 2>&1) && kvx_fail "conflicting address accepted: $out"
assert_contains "probe conflict refused" "in use on the uplink's network" "$out"
assert_eq "one error line" 1 "$(printf '%s\n' "$out" | wc -l)"
out=$(kvx map add 10.77.0.102 "$G1_IP" 2>&1) && kvx_fail "second 1:1 of guest1 accepted: $out"
assert_contains "guest with two 1:1 addresses refused" "already has a 1:1 address" "$out"
out=$(kvx map add uplink:8080 "$G1_IP:80" --proto tcp 2>&1) && kvx_fail "overlap accepted: $out"
assert_contains "overlapping forward refused" "overlap" "$out"
out=$(kvx map add 10.99.0.1 "$G2_IP" 2>&1) && kvx_fail "off-network address accepted: $out"
assert_contains "address off the uplink's network refused" "--force" "$out"
assert_eq "config unchanged by refused mappings" "$before" "$(cat "$KVX_CFG")"

kvx_step "concurrent map add from two processes"
kvx map add uplink:8081 "$G1_IP:80" --proto tcp >"$KVX_TMP/c1.log" 2>&1 &
c1=$!
kvx map add 10.77.0.103 "$G2_IP" >"$KVX_TMP/c2.log" 2>&1 &
c2=$!
wait "$c1" || kvx_fail "concurrent add 1 failed: $(cat "$KVX_TMP/c1.log")"
wait "$c2" || kvx_fail "concurrent add 2 failed: $(cat "$KVX_TMP/c2.log")"
list=$(kvx map list --json)
assert_contains "both concurrent adds kept (8081)" "uplink:8081" "$list"
assert_contains "both concurrent adds kept (10.77.0.103)" '"ext": "10.77.0.103"' "$list"
assert_eq "LAN -> :8081 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8081/who")"
assert_eq "LAN -> 10.77.0.103 reaches guest2" guest2 "$(kvx_http_get "$NS_LAN" "http://10.77.0.103/who")"

kvx_step "del stops access"
assert_ok "map del $EXT1 $G1_IP" kvx map del "$EXT1" "$G1_IP"
assert_eq "LAN -> $EXT1 after del" "" "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_ne "guest1 -> server after del" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "guest1 masqueraded again" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_ok "map del 10.77.0.103" kvx map del 10.77.0.103 "$G2_IP"
assert_eq "LAN -> 10.77.0.103 after del" "" "$(kvx_http_get "$NS_LAN" "http://10.77.0.103/who")"
assert_fails "del of a mapping that does not exist" kvx map del 10.77.0.103 "$G2_IP"
assert_ok "map add $EXT1 $G1_IP again" kvx map add "$EXT1" "$G1_IP"

kvx_step "detach + attach: mappings come back from the config"
kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
assert_eq "LAN -> :8080 while detached" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
kvx_attach_bg || kvx_fatal "cannot re-attach"
assert_eq "LAN -> $EXT1 after re-attach" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "LAN -> :8080 after re-attach" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_eq "LAN -> :8081 after re-attach" guest1 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8081/who")"
assert_eq "mappings in status" 3 "$(kvx_json 'len(i["mappings"])')"

kvx_finish
