#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/uplink_change.sh: the uplink's address changes while attached (a
# WiFi reconnect with a new DHCP lease): the daemon follows it and
# new flows leave with the new address within a second (README), measured
# from the change to the first new flow a prober in guest1 (a new flow every
# 20 ms) got out with it.  Then the uplink loses every address (link lost):
# nothing leaks, status shows no address; an address comes back and new
# flows leave with it within a second.  Last, attach to an uplink that has no
# address yet: new flows leave within a second of one appearing.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24
#                                                              -> replaced by 10.77.0.3/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host, reaches .2 and .3),
#              kr<id> 10.78.0.1/24 (towards server), ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: uplink_change.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file blob 2)
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer

kvx_attach_bg || kvx_fatal "cannot attach"

kvx_step "before: flows leave with $UP_IP"
r=$(kvx_udp_client "$NS_G1" --msg before --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP seen from the old address" "seen=$UP_IP:" "$r"
# A long-lived UDP flow (fixed 5-tuple, e.g. a VPN): keeps talking across the change.
r=$(kvx_udp_client "$NS_G2" --bind 40100 --msg old-flow --wait 1 "$SRV_IP:5001" || true)
assert_contains "long-lived flow seen from the old address" "seen=$UP_IP:" "$r"
assert_eq "curl before the change" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_eq "http client address before" "$UP_IP" "$(awk '/"GET /{a=$1} END{print a}' "$KVX_TMP/http.log")"

kvx_step "replace the uplink address $UP_IP -> $UP_IP2"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
kvx_wait_for 5 "the prober's flows leave with $UP_IP" kvx_probe_first 0 "$UP_IP" || true
ip -n "$NS_HOST" addr add "$UP_IP2/24" dev "$UP"
# The event: the old address goes and the new one becomes the primary,
# timed from before the command (so its own run time counts against the
# budget, as do the 20 ms between probes: the figure is an upper bound).
t0=$(kvx_now_us)
ip -n "$NS_HOST" addr del "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
kvx_assert_probe_latency "address change followed within a second" "$t0" "$UP_IP2" 1000
kvx_probe_stop
assert_eq "status: uplink_addr" "$UP_IP2" "$(kvx_json 'i["uplink_addr"]')"
# The same 5-tuple as before the change: its binding still names the old
# address, which the host no longer has; replies could never come back.
old_ok=0
for ((try = 0; try < 10; try++)); do
	r=$(kvx_udp_client "$NS_G2" --bind 40100 --msg "old-flow$try" --wait 0.3 "$SRV_IP:5001" || true)
	if [[ $r == *"seen=$UP_IP2:"* ]]; then old_ok=1; break; fi
done
if ((old_ok)); then
	kvx_pass "an existing UDP flow moved to $UP_IP2"
else
	kvx_fail "an existing UDP flow (guest2:40100 -> $SRV_IP:5001) never moved to $UP_IP2 in 10 tries; last reply: '$r'"
fi
assert_eq "curl after the change" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
assert_eq "http client address after" "$UP_IP2" "$(awk '/"GET /{a=$1} END{print a}' "$KVX_TMP/http.log")"
assert_eq "guest2 ping after the change" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"

kvx_step "the uplink loses its address"
ip -n "$NS_HOST" addr flush dev "$UP"
ok=0
for ((try = 0; try < 30; try++)); do
	[[ $(kvx_json 'i["uplink_addr"]') == null ]] && { ok=1; break; }
	sleep 0.1
done
assert_eq "status: uplink_addr null without an address" 1 "$ok"
r=$(kvx_udp_client "$NS_G1" --msg outage --wait 0.5 "$SRV_IP:5001" || true)
assert_empty "no UDP reply without an uplink address" "$r"
assert_eq "no ping reply without an uplink address" 0 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 3)"

kvx_step "an address comes back: $UP_IP"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
t0=$(kvx_now_us)
ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
kvx_assert_probe_latency "new flows leave with $UP_IP again within a second" "$t0" "$UP_IP" 1000
kvx_probe_stop
assert_eq "curl after the address came back" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_eq "status: uplink_addr" "$UP_IP" "$(kvx_json 'i["uplink_addr"]')"

kvx_step "attach while the uplink has no address, then it gets one"
kvx_daemon_stop
out=$(kvx detach --bridge "$BR" 2>&1) || kvx_fatal "detach failed: $out"
ip -n "$NS_HOST" addr flush dev "$UP"
kvx_attach_bg || kvx_fatal "cannot attach to an uplink without address"
assert_eq "status: uplink_addr null at attach" null "$(kvx_json 'i["uplink_addr"]')"
r=$(kvx_udp_client "$NS_G1" --msg noaddr --wait 0.5 "$SRV_IP:5001" || true)
assert_empty "no UDP reply while the uplink has no address" "$r"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
t0=$(kvx_now_us)
ip -n "$NS_HOST" addr add "$UP_IP2/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
kvx_assert_probe_latency "new flows leave within a second of the first address" "$t0" "$UP_IP2" 1000
kvx_probe_stop
assert_eq "status: uplink_addr appeared" "$UP_IP2" "$(kvx_json 'i["uplink_addr"]')"

srcs=$(kvx_server_sources)
kvx_log "sources seen by the server: $srcs"
assert_not_contains "the server never saw a guest address" "192.168.122." "$srcs"
assert_eq "the server saw only the uplink addresses" "$UP_IP $UP_IP2" "$srcs"

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
