#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/map_nodaemon.sh: `map add` / `map del` without a running daemon,
# as README promises (the maps are pinned; with no instance at all it is an
# error), checked with real traffic from the LAN:
#  - no instance at all (nothing attached yet; and again after a detach):
#    one `kvmxdp: error:` line naming the config (and the bridge with
#    --bridge), non-zero exit, no config written, no filter, pin or sysctl,
#    and not one ARP probe on the LAN;
#  - attached, daemon SIGKILLed: `map add` of a 1:1 address and a port
#    forward claims the address (probes + announcements on the wire) and
#    works at once (LAN -> guest with the client's own address, the 1:1
#    guest's own traffic leaves from its address); `map del` stops access at
#    once; `status` says no daemon runs;
#  - the daemon resumes (attach again): the mappings made without it stay,
#    in the datapath and in the config;
#  - after a "reboot" (daemon and every pin and filter gone, the instance
#    still in the config) `map add` records the mapping for the next attach
#    and says so; that attach brings it up.
#
# Topology: vm-tests/lib.sh (masquerade.sh's diagram), guests serve HTTP on
# :80; arp_peer.py sniffs the ARP frames on the LAN side of the uplink.
#
# Usage: map_nodaemon.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_guest_http_servers
kvx_http_server
echo hello >"$KVX_TMP/www/hello"

EXT1=10.77.0.101 EXT2=10.77.0.102 NEVER=10.77.0.111
kvx_bg "$KVX_TMP/arp.log" ip netns exec "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" \
	sniff "$LAN_UP_IF"
kvx_wait_file_contains 10 "$KVX_TMP/arp.log" sniffing
# ARP frames the LAN received from the uplink's side about ADDR.
arp_about() { grep -c " pkt=in .*\(spa\|tpa\)=$1\$" "$KVX_TMP/arp.log" || true; }
announced() { grep -q " pkt=in .* op=1 .* spa=$1 tha=.* tpa=$1\$" "$KVX_TMP/arp.log"; } # ADDR
cfg_sum() { [[ -e $KVX_CFG ]] && sha256sum <"$KVX_CFG" | cut -d' ' -f1 || echo absent; }

# NAME EXPECTED_ERROR ARGS...: map add fails with that one line, changes
# nothing (config, filters, pins, sysctls).
refused() {
	local desc=$1 want=$2 before cfg0 out rc=0; shift 2
	before=$(kvx_host_state) cfg0=$(cfg_sum)
	out=$(kvx map add "$@" 2>&1) || rc=$?
	assert_ne "$desc: exit code" 0 "$rc"
	assert_eq "$desc: one error line" "$want" "$out"
	assert_eq "$desc: config untouched" "$cfg0" "$(cfg_sum)"
	assert_empty "$desc: filters, pins, sysctls untouched" "$(diff <(echo "$before") <(kvx_host_state))"
}

kvx_step "no instance at all: an error, nothing written"
refused "no instance" "kvmxdp: error: no kvmxdp instance in $KVX_CFG: attach a bridge first" \
	"$NEVER" "$G1_IP"
refused "no instance, --bridge" \
	"kvmxdp: error: bridge '$BR' is not attached (no instance in $KVX_CFG)" \
	"$NEVER" "$G1_IP" --bridge "$BR"
assert_eq "no config file was created" absent "$(cfg_sum)"

kvx_step "attached, then the daemon SIGKILLed"
kvx_attach_bg || kvx_fatal "cannot attach"
kvx_daemon_kill
assert_eq "status: no daemon pid" null "$(kvx_json 'i["daemon_pid"]')"
assert_contains "status warns that no daemon runs" "no daemon running" "$(kvx_json 'i["warnings"]')"

kvx_step "map add without a daemon: claimed on the wire, works at once"
out=$(kvx map add "$EXT1" "$G1_IP" 2>&1) || kvx_fail "map add $EXT1 $G1_IP: $out"
assert_eq "map add 1:1 without a daemon" "kvmxdp: mapped $EXT1 $G1_IP bridge=$BR" "$out"
out=$(kvx map add uplink:8080 "$G2_IP:80" --proto tcp 2>&1) || kvx_fail "map add forward: $out"
assert_eq "map add forward without a daemon" "kvmxdp: mapped uplink:8080 $G2_IP:80 tcp bridge=$BR" "$out"
kvx_wait_for 5 "announcement of $EXT1" announced "$EXT1" || true
assert_eq "the LAN saw 3 probes + 2 announcements for $EXT1" 5 "$(arp_about "$EXT1")"
assert_eq "LAN -> $EXT1:80 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "guest1 sees the LAN host's own address" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_eq "LAN -> $UP_IP:8080 reaches guest2:80" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_eq "guest1 -> server" hello "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/hello")"
assert_eq "the server sees guest1 as $EXT1" "$EXT1" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "still no daemon" null "$(kvx_json 'i["daemon_pid"]')"
assert_contains "the config has the 1:1 mapping" "\"ext\": \"$EXT1\"" "$(cat "$KVX_CFG")"

kvx_step "map del without a daemon: access stops at once"
assert_ok "map del uplink:8080" kvx map del uplink:8080 "$G2_IP:80" --proto tcp
assert_eq "LAN -> $UP_IP:8080 after del" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_not_contains "the config lost the forward" "uplink:8080" "$(cat "$KVX_CFG")"

kvx_step "the daemon resumes: the mapping made without it stays"
kvx_attach_bg || kvx_fatal "cannot resume"
assert_eq "status: the daemon's pid" "$KVX_DAEMON_PID" "$(kvx_json 'i["daemon_pid"]')"
assert_eq "mappings in status" "$EXT1" "$(kvx_json '",".join(m["ext"] for m in i["mappings"])')"
assert_eq "LAN -> $EXT1:80 after the resume" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "LAN -> $UP_IP:8080 stays closed" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"

kvx_step "'reboot': daemon, pins and filters gone, the instance still in the config"
kvx_reboot_datapath
assert_eq "LAN -> $EXT1 while 'rebooted'" "" "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
out=$(kvx map add "$EXT2" "$G2_IP" 2>&1) || kvx_fail "map add $EXT2 $G2_IP after the reboot: $out"
assert_eq "map add says when it takes effect" \
	"kvmxdp: mapped $EXT2 $G2_IP bridge=$BR (not running: installed at the next attach)" "$out"
assert_eq "nothing pinned by map add" "" "$(kvx_pins)"
assert_eq "LAN -> $EXT2 before the attach" "" "$(kvx_http_get "$NS_LAN" "http://$EXT2/who")"
kvx_attach_bg || kvx_fatal "cannot attach after the reboot"
assert_eq "LAN -> $EXT2:80 reaches guest2 after the attach" guest2 "$(kvx_http_get "$NS_LAN" "http://$EXT2/who")"
assert_eq "LAN -> $EXT1:80 reaches guest1 after the attach" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"

kvx_step "detached: map add is an error again, nothing written"
kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
refused "detached, --bridge" "kvmxdp: error: bridge '$BR' is not attached (no instance in $KVX_CFG)" \
	"$NEVER" "$G1_IP" --bridge "$BR"
refused "detached" "kvmxdp: error: no kvmxdp instance in $KVX_CFG: attach a bridge first" \
	"$NEVER" "$G1_IP"
assert_eq "no ARP frame about $NEVER ever reached the LAN" 0 "$(arp_about "$NEVER")"

kvx_finish
