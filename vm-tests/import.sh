#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/import.sh: `kvmxdp import` of a real iptables recipe.  The blog
# recipe is applied with real iptables in the test's host namespace (NAT of
# the bridge subnet, guest1 "bridged by iptables" at 10.77.0.101 with a
# DNAT/SNAT pair and the address on the uplink, a port forward of the
# uplink's 8080 to guest2:80), proven with traffic, saved with iptables-save;
# `kvmxdp import` of that output must print the equivalent commands; then the
# recipe is flushed, `kvmxdp import --apply` makes the mappings on an attached
# instance, and the same traffic must do the same thing (who saw which
# address).  Also: --apply without an instance, all-or-nothing when a
# mapping fails, a missing file, a file that is not iptables.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1, HTTP :80) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1, HTTP :80) --+ bridge kb<id> (192.168.122.1/24)
#                                                               host ns: the iptables recipe,
#                                                               then kvmxdp (import --apply):
#                                                               uplink ku<id> 10.77.0.2/24
#                                                               1:1     10.77.0.101 -> guest1
#                                                               forward uplink:8080 -> guest2:80
#   lan ns:    kl<id> 10.77.0.1/24 = "the LAN host" (curl; owns 10.77.0.50 too,
#              for a mapping that must fail), kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 HTTP :8080 (sees the guests' source addresses)
#
# Usage: import.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools iptables iptables-save
kvx_topology_up
kvx_http_server
kvx_guest_http_servers
ip -n "$NS_LAN" addr add 10.77.0.50/24 dev "$LAN_UP_IF"

EXT1=10.77.0.101
ipt() { nsx "$NS_HOST" iptables "$@"; }

# The same traffic against either setup: the LAN host reaches guest1 at its
# 1:1 address and guest2 through the forward, each guest sees the LAN host's
# own address; outbound, guest1 leaves from its 1:1 address and guest2 from
# the uplink's.
check_traffic() { # LABEL
	assert_eq "$1: LAN -> $EXT1:80 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
	assert_eq "$1: guest1 sees the LAN host" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
	assert_eq "$1: LAN -> $UP_IP:8080 reaches guest2:80" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
	assert_eq "$1: guest2 sees the LAN host" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g2.http.log")"
	assert_eq "$1: LAN -> $UP_IP:80 (not forwarded)" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP/who")"
	assert_ne "$1: guest1 -> server" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
	assert_eq "$1: server sees guest1 as $EXT1" "$EXT1" "$(kvx_http_last_client "$KVX_TMP/http.log")"
	assert_ne "$1: guest2 -> server" "" "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/")"
	assert_eq "$1: server sees guest2 as the uplink" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
}

kvx_step "the iptables recipe, applied with iptables in the host namespace"
nsx "$NS_HOST" sysctl -qw net.ipv4.ip_forward=1
ipt -A FORWARD -i "$BR" -s "$SUBNET" -m conntrack --ctstate NEW -j ACCEPT
ipt -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ipt -A FORWARD -j REJECT
ipt -t nat -A POSTROUTING -s "$SUBNET" -d 224.0.0.0/24 -j RETURN
ipt -t nat -A POSTROUTING -s "$SUBNET" -d 255.255.255.255 -j RETURN
ipt -t nat -A POSTROUTING -s "$SUBNET" ! -d "$SUBNET" -o "$UP" -p tcp -j MASQUERADE --to-ports 1024-65535
ipt -t nat -A POSTROUTING -s "$SUBNET" ! -d "$SUBNET" -o "$UP" -p udp -j MASQUERADE --to-ports 1024-65535
ipt -t nat -A POSTROUTING -s "$SUBNET" ! -d "$SUBNET" -o "$UP" -j MASQUERADE
# guest1 "bridged by iptables"
ip -n "$NS_HOST" addr add "$EXT1/24" dev "$UP"
ipt -t nat -A PREROUTING -d "$EXT1" -j DNAT --to-destination "$G1_IP"
ipt -t nat -I POSTROUTING -s "$G1_IP" -j SNAT --to-source "$EXT1"
ipt -I FORWARD -d "$G1_IP" -j ACCEPT
# ssh-style forwards to guest2: one port, one range
ipt -t nat -A PREROUTING -i "$UP" -d "$UP_IP" -p tcp -m tcp --dport 8080 -j DNAT --to-destination "$G2_IP:80"
ipt -t nat -A PREROUTING -i "$UP" -p tcp --dport 9000:9001 -j DNAT --to-destination "$G2_IP"
ipt -I FORWARD -d "$G2_IP" -p tcp --dport 80 -j ACCEPT
ipt -A FORWARD -o "$UP" -j LOG --log-prefix "nat out: "

kvx_step "traffic through the iptables recipe"
check_traffic iptables

kvx_step "kvmxdp import of its iptables-save output"
nsx "$NS_HOST" iptables-save >"$KVX_TMP/saved.rules"
assert_contains "iptables-save has the DNAT" "-j DNAT --to-destination $G1_IP" "$(cat "$KVX_TMP/saved.rules")"
out=$(kvx import "$KVX_TMP/saved.rules" 2>"$KVX_TMP/import.err") || kvx_fail "import failed: $(cat "$KVX_TMP/import.err")"
printf '%s\n' "$out" >"$KVX_TMP/import.out"
cmds=$(printf '%s\n' "$out" | grep '^kvmxdp ' | sed 's/ *#.*//')
assert_eq "the commands, ready to paste" "kvmxdp attach --bridge $BR --uplink $UP --subnet $SUBNET
kvmxdp map add $EXT1 $G1_IP --bridge $BR
kvmxdp map add uplink:8080 $G2_IP:80 --proto tcp --bridge $BR
kvmxdp map add uplink:9000-9001 $G2_IP:9000-9001 --proto tcp --bridge $BR" "$cmds"
assert_contains "LOG listed as not expressible" "-j LOG: kvmxdp does not log packets" "$out"
assert_contains "--to-ports 1024-65535 not carried over" "--to-ports 1024-65535 not carried over" "$out"
assert_contains "FORWARD ESTABLISHED: built in" "replies to the guests' connections" "$out"
assert_contains "multicast RETURN: built in" "kvmxdp never translates them" "$out"
assert_empty "nothing on stderr" "$(cat "$KVX_TMP/import.err")"
# Every line that is not a command is a comment: the output is a script.
assert_eq "every other line is a comment" "" "$(printf '%s\n' "$out" | grep -v '^kvmxdp ' | grep -v '^#' || true)"
json=$(kvx import --json - <"$KVX_TMP/saved.rules")
assert_eq "--json from stdin: 3 mappings" 3 "$(printf '%s' "$json" | "$KVX_PY" -c 'import json,sys; print(len(json.load(sys.stdin)["mappings"]))')"

kvx_step "bad input: one error line, non-zero exit"
out=$(kvx import "$KVX_TMP/nonexistent.rules" 2>&1) && kvx_fail "a missing file was accepted: $out"
assert_eq "missing file: one line" "kvmxdp: error: cannot read '$KVX_TMP/nonexistent.rules': no such file" "$out"
printf 'hello\n{"not": "iptables"}\n' >"$KVX_TMP/junk.txt"
out=$(kvx import "$KVX_TMP/junk.txt" 2>&1) && kvx_fail "junk was accepted: $out"
assert_contains "not iptables: named" "'$KVX_TMP/junk.txt' holds no iptables rules" "$out"
assert_eq "not iptables: one line" 1 "$(printf '%s\n' "$out" | wc -l)"
out=$(kvx import --apply "$KVX_TMP/saved.rules" 2>&1) && kvx_fail "--apply without an instance: $out"
assert_contains "--apply without an instance names the attach command" \
	"run \`kvmxdp attach --bridge $BR --uplink $UP --subnet $SUBNET\` first" "$(printf '%s\n' "$out" | tail -n 1)"
assert_eq "--apply without an instance: no config written" "" "$(ls "$KVX_CFG" 2>/dev/null || true)"

kvx_step "the recipe flushed: nothing reaches the guests"
ipt -F
ipt -t nat -F
ip -n "$NS_HOST" addr del "$EXT1/24" dev "$UP"
nsx "$NS_HOST" sysctl -qw net.ipv4.ip_forward=0
nsx "$NS_HOST" conntrack -F >/dev/null 2>&1 || true
assert_empty "no iptables rule left" "$(nsx "$NS_HOST" iptables-save | grep -E '^-A' || true)"
assert_eq "LAN -> $EXT1 without the recipe" "" "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"

kvx_attach_bg || kvx_fatal "cannot attach"

kvx_step "--apply is all or nothing"
cat >"$KVX_TMP/two.rules" <<EOF
*nat
-A PREROUTING -d 10.77.0.103/32 -j DNAT --to-destination $G2_IP
-A PREROUTING -d 10.77.0.50/32 -j DNAT --to-destination $G1_IP
COMMIT
EOF
out=$(kvx import --apply "$KVX_TMP/two.rules" 2>&1 >/dev/null) && kvx_fail "a failing mapping was applied: $out"
assert_contains "the failing mapping is named, with its line" "line 3: mapping '10.77.0.50 $G1_IP'" "$out"
assert_contains "none stays" "none stays" "$out"
assert_eq "one error line" 1 "$(printf '%s\n' "$out" | grep -c .)"
assert_eq "no mapping left in the config" 0 "$(kvx map list --json | "$KVX_PY" -c 'import json,sys; print(len(json.load(sys.stdin)["mappings"]))')"
assert_eq "LAN -> 10.77.0.103 (undone)" "" "$(kvx_http_get "$NS_LAN" "http://10.77.0.103/who")"

kvx_step "kvmxdp import --apply of the saved recipe"
out=$(kvx import --apply "$KVX_TMP/saved.rules" 2>&1) || kvx_fail "import --apply failed: $out"
assert_contains "1:1 made" "kvmxdp: mapped $EXT1 $G1_IP bridge=$BR" "$out"
assert_contains "forward made on 'uplink'" "kvmxdp: mapped uplink:8080 $G2_IP:80 tcp bridge=$BR" "$out"
assert_not_contains "attached: no attach hint" "is not attached" "$out"
assert_eq "3 mappings in the config" 3 "$(kvx map list --json | "$KVX_PY" -c 'import json,sys; print(len(json.load(sys.stdin)["mappings"]))')"

kvx_step "traffic through kvmxdp: the same as through the recipe"
check_traffic kvmxdp
assert_empty "still no iptables rule" "$(nsx "$NS_HOST" iptables-save | grep -E '^-A' || true)"

kvx_finish
