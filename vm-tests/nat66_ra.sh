#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/nat66_ra.sh: attaching NAT66 keeps the host's IPv6 default route.
# The host is a laptop on WiFi (SLAAC, accept_ra=1, no forwarding) behind a
# router that advertises rarely (every 30-60 s, as many home routers do,
# some every 10 minutes).  NAT66 turns on IPv6 forwarding on the bridge;
# the kernel then drops the RA default routes of every interface that does
# not take RAs while forwarding (rt6_purge_dflt_routers), and the host and
# its guests had no IPv6 route until the next periodic RA.  kvmxdp makes
# the uplink's accept_ra 2 while attached (the kernel keeps the RA default
# routes of such a device; with its own forwarding 0 it takes RAs as with
# 1): the route is never deleted, the host and guest1 (NAT66) reach the
# server; detach puts accept_ra back.  A default route lost anyway (here:
# deleted by hand) is asked for again: the daemon's Router Solicitations
# bring it back within seconds, not at the next periodic RA.
#
#   guest1 ns  kg1<id> fd42:97::11/64 -- bridge kb<id> fd42:97::1/64 (host ns)
#   host ns    uplink ku<id>: SLAAC in 2001:db8:1::/64, default via the router
#   lan ns     kl<id> 2001:db8:1::1/64 (radvd, 30-60 s), kr<id> 2001:db8:78::1
#   srv ns     ks<id> 2001:db8:78::2/64
#
# Usage: nat66_ra.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up

N1=2001:db8:1::/64 LAN6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2
BR6=fd42:97::1 G1_6=fd42:97::11

kvx_step "IPv6: the LAN router advertises $N1 every 30-60 s; the uplink takes it by SLAAC"
kvx_lan6_up "$LAN6" "$RTR6" "$SRV6"
kvx_guest6_up "$BR6" "$G1_6"
umask 022
printf 'interface %s {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 30;\n\tMaxRtrAdvInterval 60;\n\tprefix %s { AdvOnLink on; AdvAutonomous on; };\n};\n' \
	"$LAN_UP_IF" "$N1" >"$KVX_TMP/radvd.conf"
kvx_bg "$KVX_TMP/radvd.log" ip netns exec "$NS_LAN" radvd -n -m stderr -C "$KVX_TMP/radvd.conf" \
	-p "$KVX_TMP/radvd.pid"
route6() { ip -n "$NS_HOST" -6 route show default | grep -F "dev $UP" || true; }
has_route6() { [[ -n $(route6) ]]; }
# radvd answers the uplink's own solicitation (sent when it came up or now).
must kvx_wait_for 20 "a SLAAC address in $N1 on the uplink" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$UP' scope global -tentative) ]]"
must kvx_wait_for 20 "the uplink's IPv6 default route from the RA" has_route6
kvx_log "before attach: $(route6)"
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)
ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
assert_eq "ping -6 host -> server before attach: 3 of 3" 3 "$(kvx_ping_received "$NS_HOST" "$SRV6" 3)"
# The next periodic RA is 30-60 s away from now.
sleep 1

kvx_step "attach (NAT66: forwarding on the bridge): the host's IPv6 default route stays"
# Another device that takes RAs (accept_ra 1) with a router-advertised
# default route (a wired NIC beside the WiFi): forwarding on purges such
# routes, and kvmxdp changes only the uplink's accept_ra, so it says so.
OTHER=kd$KVX_ID
ip -n "$NS_HOST" link add "$OTHER" type veth peer name "ke$KVX_ID"
nsx "$NS_HOST" sysctl -qw "net.ipv6.conf.$OTHER.accept_ra=1"
ip -n "$NS_HOST" link set "ke$KVX_ID" up
ip -n "$NS_HOST" link set "$OTHER" up
ip -n "$NS_HOST" -6 route add default via fe80::99 dev "$OTHER" proto ra metric 4096
kvx_bg "$KVX_TMP/route6.log" ip -n "$NS_HOST" -6 monitor route
MON_PID=$KVX_LAST_PID
sleep 0.5
kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "status: NAT66" nat66 "$(kvx_json 'i["ipv6_mode"]')"
assert_contains "attach warned of $OTHER's router-advertised default route" \
	"drops $OTHER's router-advertised default route (its accept_ra is 1)" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "... and said nothing of the uplink's (its accept_ra went to 2)" 0 \
	"$(grep -c "drops $UP's router-advertised" "$KVX_DAEMON_LOG" || true)"
assert_eq "the bridge forwards IPv6 (NAT66 needs it)" 1 "$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$BR/forwarding")"
must kvx_wait_for 2 "the uplink's IPv6 default route within 2 s of attach" has_route6
kvx_log "after attach: $(route6)"
sleep 1
kvx_kill_pid "$MON_PID"
assert_eq "the default route was never deleted" 0 "$(grep -c '^Deleted default' "$KVX_TMP/route6.log" || true)"
assert_eq "the uplink's accept_ra is 2 while attached" 2 \
	"$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$UP/accept_ra")"
assert_eq "ping -6 host -> server after attach: 3 of 3" 3 "$(kvx_ping_received "$NS_HOST" "$SRV6" 3)"
assert_eq "ping -6 guest1 -> server (NAT66): 3 of 3" 3 "$(kvx_ping_received "$NS_G1" "$SRV6" 3)"
assert_eq "no IPv6 echo handed to the host untranslated (PASS_LOCAL)" 0 "$(kvx_counter PASS_LOCAL)"

kvx_step "a default route lost while attached is solicited again"
ip -n "$NS_HOST" -6 route del default dev "$UP"
must kvx_wait_for 10 "the uplink's IPv6 default route back (the daemon's solicitation)" has_route6
assert_contains "the daemon said so" "IPv6 default route gone: soliciting the routers" \
	"$(cat "$KVX_DAEMON_LOG")"
assert_eq "ping -6 host -> server: 3 of 3" 3 "$(kvx_ping_received "$NS_HOST" "$SRV6" 3)"

kvx_step "detach puts the uplink's accept_ra back"
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null || kvx_fatal "detach"
assert_eq "accept_ra 1 again" 1 "$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$UP/accept_ra")"
kvx_finish
