#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/ipv6_uplink.sh: the uplink's IPv6 as NAT66 and relay mode will use
# it, followed by the daemon and shown by `status`.  A LAN router (radvd)
# announces a prefix; the uplink autoconfigures a stable and a temporary
# address (use_tempaddr=2, the kernel then prefers the temporary one as
# source): status shows the stable one, says so, and shows the /64 with relay
# possible.  Renumbering (the old prefix deprecated, a new one announced):
# status and the daemon's log follow to the new prefix.  The addresses go:
# status says none.  A network with only a /128 given by hand: relay refused
# and why; one whose RA says DHCPv6 (M flag, prefix on-link without
# autoconfiguration): refused as DHCPv6-only.  `--subnet6` is recorded and
# shown; bad values and a prefix inside the uplink's /64 are refused with one
# line, nothing changed.
#
#   guest1 ns (kg1<id> 192.168.122.11/24) --+
#   guest2 ns (kg2<id> 192.168.122.12/24) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                              host ns: uplink ku<id> 10.77.0.2/24     <- kvmxdp
#                                                       IPv6 by SLAAC from the lan router:
#                                                       2001:db8:1::/64, then 2001:db8:2::/64;
#                                                       then 2001:db8:5::7/128 by hand
#   lan ns:    router, kl<id> 10.77.0.1/24 + radvd (MaxRtrAdvInterval 4 s), IPv6 forwarding on
#              kr<id> 10.78.0.1/24 (towards server)
#   server ns: ks<id> 10.78.0.2/24 (unused here)
#
# Usage: ipv6_uplink.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools radvd
kvx_topology_up

N1=2001:db8:1::/64 N2=2001:db8:2::/64
nsx "$NS_HOST" sysctl -qw "net.ipv6.conf.$UP.accept_ra=1" "net.ipv6.conf.$UP.autoconf=1" \
	"net.ipv6.conf.$UP.use_tempaddr=2" "net.ipv6.conf.$UP.disable_ipv6=0"
nsx "$NS_LAN" sysctl -qw net.ipv6.conf.all.forwarding=1 "net.ipv6.conf.$LAN_UP_IF.disable_ipv6=0"

RADVD_CONF=$KVX_TMP/radvd.conf
# radvd_conf PREFIX-BLOCKS [INTERFACE-OPTIONS]
radvd_conf() {
	umask 022
	cat >"$RADVD_CONF" <<EOF
interface $LAN_UP_IF {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	${2:-}
	$1
};
EOF
}
prefix_block() { # PREFIX PREFERRED [AUTONOMOUS]
	echo "prefix $1 { AdvOnLink on; AdvAutonomous ${3:-on}; AdvValidLifetime 600; AdvPreferredLifetime $2; };"
}
RADVD_PID=""
radvd_start() {
	kvx_bg "$KVX_TMP/radvd.$((++RADVD_N)).log" ip netns exec "$NS_LAN" radvd -n -m stderr \
		-C "$RADVD_CONF" -p "$KVX_TMP/radvd.pid"
	RADVD_PID=$KVX_LAST_PID
}
radvd_stop() {
	[[ -n $RADVD_PID ]] && kvx_kill_pid "$RADVD_PID"
	RADVD_PID=""
	rm -f "$KVX_TMP/radvd.pid"
}
RADVD_N=0

# The uplink's global addresses as `ip` shows them: "ADDR/LEN flags..." lines.
v6_addrs() { ip -n "$NS_HOST" -6 -o addr show dev "$UP" scope global | awk '{$1=$2=$3=""; print}'; }
# v6_addr_in NET temporary|stable: the first such address of the uplink in NET
# (not tentative or deprecated), '' if none.
v6_addr_in() {
	ip -n "$NS_HOST" -6 -j addr show dev "$UP" scope global | "$KVX_PY" -c '
import ipaddress, json, sys
net, kind = ipaddress.ip_network(sys.argv[1]), sys.argv[2]
for l in json.load(sys.stdin):
    for a in l.get("addr_info", []):
        if ipaddress.ip_address(a["local"]) in net and a.get("temporary", False) == (kind == "temporary") \
           and not a.get("tentative") and not a.get("deprecated"):
            print(a["local"]); sys.exit(0)' "$1" "$2"
}
have_addrs_in() { [[ -n $(v6_addr_in "$1" stable) && -n $(v6_addr_in "$1" temporary) ]]; }
v6() { kvx_json "i['ipv6']$1"; }
status_v6_is() { [[ $(v6 "['uplink_addr']") == "$1" ]]; }

kvx_step "radvd announces $N1: SLAAC gives the uplink a stable and a temporary address"
radvd_conf "$(prefix_block "$N1" 300)"
radvd_start
must kvx_wait_for 15 "stable and temporary addresses in $N1" have_addrs_in "$N1"
STABLE1=$(v6_addr_in "$N1" stable) TEMP1=$(v6_addr_in "$N1" temporary)
kvx_log "uplink addresses: $(v6_addrs | tr '\n' ';')"
# The kernel's own choice for a new connection (use_tempaddr=2): the
# temporary one; kvmxdp deliberately takes the stable one.
kvx_wait_for 15 "a default route from the RA" \
	bash -c "ip -n '$NS_HOST' -6 route show default | grep -q 'proto ra'" || true
kernel_src=$(ip -n "$NS_HOST" -6 route get 2001:db8:ffff::1 2>/dev/null | grep -o 'src [^ ]*' | cut -d' ' -f2 || true)
assert_eq "the kernel itself prefers the temporary address" "$TEMP1" "$kernel_src"

kvx_step "bad --subnet6: one line naming the value, nothing changed"
STATE=$(kvx_host_state)
bad_subnet6() { # DESC VALUE NEEDLE
	local rc=0 after
	timeout 5 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" \
		--uplink "$UP" --subnet6 "$2" >"$KVX_TMP/bad.out" 2>"$KVX_TMP/bad.err" </dev/null || rc=$?
	kvx_log "case '$1': --subnet6 $2 -> exit $rc, stderr: $(head -c 400 "$KVX_TMP/bad.err")"
	if ((rc == 124)); then
		kvx_fail "$1: --subnet6 $2 was accepted"
		kvx detach --bridge "$BR" >/dev/null 2>&1 || true
		return 0
	fi
	assert_ne "$1: exit code" 0 "$rc"
	assert_eq "$1: one line on stderr" 1 "$(grep -c . "$KVX_TMP/bad.err" || true)"
	assert_contains "$1: the error names it" "kvmxdp: error: " "$(cat "$KVX_TMP/bad.err")"
	assert_contains "$1: the error names it" "$3" "$(cat "$KVX_TMP/bad.err")"
	after=$(kvx_host_state)
	if [[ $after == "$STATE" ]]; then
		kvx_pass "$1: nothing changed in the host ns"
	else
		kvx_fail "$1: host state changed:"$'\n'"$(diff <(echo "$STATE") <(echo "$after") || true)"
		STATE=$after
	fi
}
bad_subnet6 "link-local" fe80::/64 "'fe80::/64'"
bad_subnet6 "host bits" fd42::1/64 "'fd42::1/64'"
bad_subnet6 "longer than /64" fd42::/80 "'fd42::/80'"
bad_subnet6 "not IPv6" 192.168.5.0/24 "'192.168.5.0/24'"
bad_subnet6 "inside the uplink's /64" "$N1" "overlaps network $N1 of uplink '$UP'"
assert_eq "no instance after the refused attaches" 0 "$(kvx_instances_of_br)"

kvx_step "attach --subnet6 fd42::/64 without it on the bridge: refused (the host would route it out)"
bad_subnet6 "not on the bridge" fd42::/64 "bridge '$BR' has no address in it"

kvx_step "attach --subnet6 fd42::/64: status shows the stable address and the /64"
ip -n "$NS_HOST" -6 addr add fd42::1/64 dev "$BR" nodad
kvx_attach_bg --subnet6 fd42::/64 || kvx_fatal "cannot attach"
assert_eq "status: subnet6 recorded" "fd42::/64" "$(kvx_json 'i["subnet6"]')"
kvx_wait_for 5 "status shows $STABLE1" status_v6_is "$STABLE1" || true
assert_eq "status: uplink IPv6 is the stable address" "$STABLE1" "$(v6 "['uplink_addr']")"
assert_eq "status: ...and says it is stable" stable "$(v6 "['uplink_addr_kind']")"
assert_eq "status: the on-link /64 from the RA, autoconfigured" "[[\"$N1\", true, true]]" \
	"$(v6 "['prefixes'] and [[p['prefix'], p['from_ra'], p['autoconf']] for p in i['ipv6']['prefixes']]")"
assert_eq "status: relay possible" true "$(v6 "['relay']['possible']")"
assert_eq "status: relay prefix" "$N1" "$(v6 "['relay']['prefix']")"
text=$(kvx status --bridge "$BR")
assert_contains "status text: the address and its kind" "ipv6 uplink address $STABLE1 (stable)" "$text"
assert_contains "status text: the prefix" "on-link $N1 (ra)" "$text"
assert_contains "status text: relay" "ipv6 relay possible: the router announces $N1" "$text"
assert_contains "status text: NAT66 on the given prefix" "ipv6 nat66 fd42::/64 -> $STABLE1, " "$text"
assert_contains "status text: why" " address(es) known (guests' prefix fd42::/64 (--subnet6))" "$text"
kvx_wait_file_contains 5 "$KVX_DAEMON_LOG" "IPv6: $STABLE1 (stable)" || true

kvx_step "renumbering: $N1 deprecated (preferred 0), $N2 announced"
radvd_conf "$(prefix_block "$N1" 0)
	$(prefix_block "$N2" 300)"
kill -HUP "$RADVD_PID"
must kvx_wait_for 15 "stable and temporary addresses in $N2" have_addrs_in "$N2"
STABLE2=$(v6_addr_in "$N2" stable)
kvx_log "uplink addresses: $(v6_addrs | tr '\n' ';')"
kvx_wait_for 10 "status follows to $STABLE2" status_v6_is "$STABLE2" || true
assert_eq "status: uplink IPv6 is the new prefix's stable address" "$STABLE2" "$(v6 "['uplink_addr']")"
assert_eq "status: stable" stable "$(v6 "['uplink_addr_kind']")"
assert_contains "the old address is still there, deprecated" "$STABLE1/64" "$(v6_addrs | grep deprecated || true)"
assert_eq "status: relay on the new prefix" "$N2" "$(v6 "['relay']['prefix']")"
kvx_wait_file_contains 5 "$KVX_DAEMON_LOG" "IPv6: $STABLE2 (stable)" || true

kvx_step "the addresses go (router gone, addresses flushed): status says none"
radvd_stop
ip -n "$NS_HOST" -6 addr flush dev "$UP" scope global
kvx_wait_for 5 "status shows no IPv6 address" status_v6_is null || true
assert_eq "status: no uplink IPv6" null "$(v6 "['uplink_addr']")"
assert_contains "status: why" "link-local address(es) only" "$(v6 "['uplink_addr_why']")"
assert_eq "status: relay refused" false "$(v6 "['relay']['possible']")"
assert_eq "status: relay refused, why" "no global IPv6 address on the uplink" "$(v6 "['relay']['why']")"
assert_contains "status text: none" "ipv6 uplink address none (link-local address(es) only" "$(kvx status --bridge "$BR")"
kvx_wait_file_contains 5 "$KVX_DAEMON_LOG" "IPv6: none (link-local" || true

kvx_step "a network with a /128 only, no prefix from an RA: relay refused and why"
# Another network: the old RA's prefix routes go with it.
for r in $(ip -n "$NS_HOST" -6 route show dev "$UP" | awk '$1 ~ /^2001:/ {print $1}'); do
	ip -n "$NS_HOST" -6 route del "$r" dev "$UP"
done
ip -n "$NS_HOST" -6 addr add 2001:db8:5::7/128 dev "$UP"
kvx_wait_for 10 "status shows 2001:db8:5::7" status_v6_is 2001:db8:5::7 || true
assert_eq "status: the /128 is the uplink IPv6" 2001:db8:5::7 "$(v6 "['uplink_addr']")"
assert_eq "status: no on-link prefix" "[]" "$(v6 "['prefixes']")"
assert_eq "status: relay refused" false "$(v6 "['relay']['possible']")"
assert_eq "status: relay refused, why" \
	"a /128 only (2001:db8:5::7, from DHCPv6 or by hand) and no prefix from a router advertisement: no /64 to share" \
	"$(v6 "['relay']['why']")"
assert_contains "status text: relay refused" "ipv6 relay refused: a /128 only" "$(kvx status --bridge "$BR")"

kvx_step "a DHCPv6-only network: the RA has M set and the prefix on-link without autoconfiguration"
radvd_conf "$(prefix_block 2001:db8:5::/64 300 off)" "AdvManagedFlag on;"
radvd_start
refused_dhcp() { [[ $(v6 "['relay']['why']") == *DHCPv6-only* ]]; }
kvx_wait_for 15 "status: relay refused as DHCPv6-only" refused_dhcp || true
assert_eq "status: relay refused" false "$(v6 "['relay']['possible']")"
assert_contains "status: relay refused, why" \
	"the router announces 2001:db8:5::/64 on-link but not for autoconfiguration (the router's RA says DHCPv6 (M flag): a DHCPv6-only network)" \
	"$(v6 "['relay']['why']")"
assert_eq "status: the /128 stays the uplink IPv6" 2001:db8:5::7 "$(v6 "['uplink_addr']")"
radvd_stop
# Its prefix route would outlive it (valid lifetime 600 s): gone with the network.
ip -n "$NS_HOST" -6 route del 2001:db8:5::/64 dev "$UP"

kvx_step "a LAN host floods router advertisements with 40 prefixes: status lists 32, counts the rest"
# On-link only (no SLAAC: the kernel caps addresses, not prefix routes).
blocks=""
for n in $(seq 16 55); do blocks+="$(prefix_block "2001:db8:$(printf %x "$n")::/64" 300 off) "; done
radvd_conf "$blocks"
radvd_start
many_prefixes() { [[ $(v6 "['prefixes_omitted']") == 8 ]]; }
kvx_wait_for 15 "status: 32 prefixes listed and 8 omitted" many_prefixes || true
assert_eq "status: 32 prefixes listed" 32 "$(v6 "['prefixes'] and len(i['ipv6']['prefixes'])")"
assert_eq "status: 8 omitted" 8 "$(v6 "['prefixes_omitted']")"
assert_contains "status text: counted" " and 8 more" "$(kvx status --bridge "$BR")"
radvd_stop
line=$(grep 'IPv6: ' "$KVX_DAEMON_LOG" | tail -n 1)
assert_contains "the daemon's line counts the rest" "and 36 more" "$line"
assert_le "the daemon's line stays short" "${#line}" 600

kvx_step "attach again without --subnet6 keeps it; --subnet6 none forgets it"
kvx_daemon_stop
kvx_attach_bg || kvx_fatal "cannot attach again"
assert_eq "status: subnet6 kept from the config" "fd42::/64" "$(kvx_json 'i["subnet6"]')"
kvx_daemon_stop
kvx_attach_bg --subnet6 none || kvx_fatal "cannot attach with --subnet6 none"
assert_eq "status: subnet6 forgotten" null "$(kvx_json 'i["subnet6"]')"

kvx_finish
