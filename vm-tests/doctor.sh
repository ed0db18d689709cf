#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/doctor.sh: `kvmxdp doctor` on a healthy attached host says
# nothing is wrong (exit 0); each fault injected inside the test's
# namespaces produces its finding, in the text and in --json, with a fix and
# a non-zero exit (3: warnings, 4: an error); fixing it (with the printed
# command where it is one) clears it and the exit is 0 again.  Faults: not
# attached, the daemon gone, detached; strict rp_filter; MTU of the uplink
# and of one port; a generic XDP program on the uplink (built with clang
# here: XDP_PASS); uplink down, without an address, without a default
# route; libvirt's LIBVIRT_PRT masquerade and a FORWARD DROP policy (real
# iptables rules in the host namespace), the same masquerade made with
# iptables-legacy (x_tables: only iptables-legacy-save shows it); a bridge
# family nft chain dropping what crosses the bridge (its printed fix must let
# the guests talk again); a guest whose default gateway is not the bridge (a
# warning: a stopped guest looks the same), and the same while another guest
# floods forged ARP requests (a partial check is not "ok"); a conntrack table
# near full (--ct-size 64);
# bridge-nf-call-iptables=1 in the host namespace, only where br_netfilter
# is already loaded (it is global: no module is loaded here).
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1, --+ later gw .254: nobody)
#                                    bridge kb<id> 192.168.122.1/24, host ns  <- kvmxdp, doctor
#                                    uplink ku<id> 10.77.0.2/24, default via 10.77.0.1
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24
#
# Usage: doctor.sh KVMXDP_BINARY
KVX_TIMEOUT=${KVX_TIMEOUT:-230}
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools iptables python3
kvx_topology_up

# The host namespace's own settings, not whatever it inherited: a loose
# rp_filter, and (where br_netfilter is loaded) no bridged iptables.
hsys() { nsx "$NS_HOST" sysctl -qw "$@"; }
hsys net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.$UP.rp_filter=0" "net.ipv4.conf.$BR.rp_filter=0"
BRNF=0
if nsx "$NS_HOST" test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
	BRNF=1
	hsys net.bridge.bridge-nf-call-iptables=0
fi

# doctor ARGS...: text run; sets OUT and RC.  doctor_json: the same as
# JSON in J, its exit code in JRC.
ARPW=0
doctor() {
	OUT=$(kvx doctor --bridge "$BR" --arp-wait "$ARPW" "$@" 2>&1) && RC=0 || RC=$?
	J=$(kvx doctor --bridge "$BR" --arp-wait "$ARPW" --json "$@" 2>/dev/null) && JRC=0 || JRC=$?
}
# The JSON report's findings of CHECK: "severity|what|fix" lines.
findings_of() { # CHECK
	"$KVX_PY" -c '
import json, sys
d = json.loads(sys.stdin.read())
for f in d["reports"][0]["findings"]:
    if f["check"] == sys.argv[1]:
        print("%s|%s|%s" % (f["severity"], f["what"], f["fix"]))' "$1" <<<"$J"
}
json_field() { "$KVX_PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$J"; }
# The fix of CHECK's first finding whose text holds NEEDLE.
fix_of() { findings_of "$1" | { grep -F -- "$2" || true; } | head -1 | cut -d'|' -f3; }

# finds DESC CHECK SEVERITY NEEDLE: doctor reports it in both forms, with
# a fix, and exits 3 (warning) or 4 (error).
finds() {
	local desc=$1 check=$2 sev=$3 needle=$4 code=3
	[[ $sev == error ]] && code=4
	doctor
	assert_contains "$desc: text" "$check: " "$(grep -F -- "$needle" <<<"$OUT" | grep "^$sev " || true)"
	assert_contains "$desc: text has a fix" "fix: " "$OUT"
	assert_contains "$desc: --json" "$sev|" "$(findings_of "$check" | grep -F -- "$needle" || true)"
	local fix
	fix=$(fix_of "$check" "$needle")
	if [[ -n $fix && $fix != None ]]; then kvx_pass "$desc: --json has a fix: $fix"; else kvx_fail "$desc: --json has no fix"; fi
	assert_eq "$desc: --json check state" "$sev" "$(json_field "d['reports'][0]['checks']['$check']")"
	assert_eq "$desc: exit code" "$code" "$RC"
	assert_eq "$desc: --json exit code" "$code" "$JRC"
	assert_eq "$desc: --json says the exit code" "$code" "$(json_field "d['exit_code']")"
}
# cleared DESC CHECK: no finding of CHECK, nothing else wrong either.
cleared() {
	doctor
	assert_eq "$1: $2 ok" ok "$(json_field "d['reports'][0]['checks']['$2']")"
	assert_eq "$1: exit 0" 0 "$RC"
	assert_eq "$1: --json exit 0" 0 "$JRC"
	assert_contains "$1: text" "nothing wrong found" "$OUT"
	((RC == 0)) || kvx_log "doctor said: $OUT"
}
# Runs CHECK's printed fix (for NEEDLE) in the host namespace: its commands
# ("A; B"), without the remark in parentheses after them.
apply_fix() { # CHECK NEEDLE
	local fix
	fix=$(fix_of "$1" "$2")
	fix=${fix%% (*}
	kvx_log "applying the fix: $fix"
	nsx "$NS_HOST" bash -c "$fix"
}
# The uplink's carrier back after `ip link set up` (a veth: at once, or nearly).
uplink_lower_up() { ip -n "$NS_HOST" link show dev "$UP" | grep -q LOWER_UP; }

kvx_step "not attached: an error naming the attach command"
finds "not attached" datapath error "$BR is not attached"
assert_contains "the fix attaches" "kvmxdp attach --bridge $BR --uplink $UP" "$(fix_of datapath "not attached")"

kvx_step "attached: a healthy host (also listening for ARP)"
kvx_attach_bg || kvx_fatal "cannot attach"
ARPW=1 cleared "healthy" datapath
assert_eq "healthy: no check warns or errs" "" \
	"$(json_field "' '.join(c for c, s in d['reports'][0]['checks'].items() if s not in ('ok', 'note'))")"

kvx_step "rp_filter=1 on the uplink (in the host namespace)"
hsys "net.ipv4.conf.$UP.rp_filter=1"
finds "strict rp_filter" rp_filter warning "strict reverse-path filtering on $UP"
apply_fix rp_filter "$UP"
assert_eq "the fix made it loose" 2 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$UP/rp_filter")"
cleared "rp_filter fixed" rp_filter

kvx_step "MTU: uplink 1400 under a 1500 bridge; one port at 1400"
ip -n "$NS_HOST" link set dev "$UP" mtu 1400
finds "uplink MTU" mtu warning "has MTU 1500, the uplink $UP 1400"
ip -n "$NS_HOST" link set dev "$UP" mtu 1500
cleared "uplink MTU back" mtu
ip -n "$NS_HOST" link set dev "$P1_IF" mtu 1400
finds "port MTU" mtu warning "differ in MTU"
apply_fix mtu "differ in MTU"
cleared "port MTU fixed" mtu

kvx_step "another tool's XDP program in generic mode on the uplink (a veth: native XDP where the kernel says so)"
if command -v clang >/dev/null 2>&1; then
	# XDP_PASS and nothing else; no header at all (a BPF target has no libc).
	cat >"$KVX_TMP/xdp_pass.c" <<'EOF'
__attribute__((section("xdp"), used)) int xdp_pass(void *ctx) { return 2; }
char _license[] __attribute__((section("license"), used)) = "GPL";
EOF
	clang -O2 --target=bpf -c "$KVX_TMP/xdp_pass.c" -o "$KVX_TMP/xdp_pass.o"
	ip -n "$NS_HOST" link set dev "$UP" xdpgeneric obj "$KVX_TMP/xdp_pass.o" sec xdp
	finds "generic XDP" xdp warning "generic XDP program 'xdp_pass' on $UP"
	apply_fix xdp "$UP"
	assert_eq "the fix removed it" "" "$(kvx_xdp_prog "$NS_HOST" "$UP")"
	cleared "generic XDP removed" xdp
else
	kvx_log "no clang: the generic XDP check is covered by the unit tests only"
fi

kvx_step "uplink down, then without its address, then without a default route"
ip -n "$NS_HOST" link set dev "$UP" down
finds "uplink down" uplink error "the uplink $UP is down"
apply_fix uplink "is down"
kvx_wait_for 5 "carrier on $UP" uplink_lower_up
# A link going down takes its routes with it; DHCP would put it back.
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
cleared "uplink up" uplink
ip -n "$NS_HOST" addr del "$UP_IP/24" dev "$UP"
finds "no address" uplink error "the uplink $UP has no IPv4 address"
ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
cleared "address back" uplink
ip -n "$NS_HOST" route del default
finds "no default route" uplink error "no IPv4 default route through the uplink $UP"
ip -n "$NS_HOST" route add default via "$LAN_IP" dev "$UP"
cleared "default route back" uplink
assert_ok "guest1 -> server after the uplink faults" kvx_ping "$NS_G1" "$SRV_IP" 3

kvx_step "libvirt's NAT rules (LIBVIRT_PRT MASQUERADE) in the host namespace"
nsx "$NS_HOST" iptables -t nat -N LIBVIRT_PRT
nsx "$NS_HOST" iptables -t nat -A POSTROUTING -j LIBVIRT_PRT
nsx "$NS_HOST" iptables -t nat -A LIBVIRT_PRT -s "$SUBNET" ! -d "$SUBNET" -j MASQUERADE
finds "libvirt masquerade" firewall warning "iptables NATs the guest subnet"
assert_contains "the fix deletes that rule" "iptables -t nat -D LIBVIRT_PRT -s $SUBNET ! -d $SUBNET -j MASQUERADE" \
	"$(fix_of firewall "NATs the guest subnet")"
assert_contains "and says how libvirt stops re-adding it" "<forward mode='open'/>" "$(fix_of firewall "NATs")"
apply_fix firewall "NATs the guest subnet"
cleared "masquerade removed" firewall
nsx "$NS_HOST" iptables -t nat -D POSTROUTING -j LIBVIRT_PRT
nsx "$NS_HOST" iptables -t nat -X LIBVIRT_PRT

kvx_step "the masquerade made with iptables-legacy (x_tables, invisible to iptables-nft and nft)"
if command -v iptables-legacy >/dev/null 2>&1 &&
	nsx "$NS_HOST" iptables-legacy -t nat -A POSTROUTING -s "$SUBNET" ! -d "$SUBNET" -j MASQUERADE; then
	finds "legacy masquerade" firewall warning "iptables-legacy NATs the guest subnet"
	assert_contains "the fix deletes it with iptables-legacy" \
		"iptables-legacy -t nat -D POSTROUTING -s $SUBNET ! -d $SUBNET -j MASQUERADE" \
		"$(fix_of firewall "iptables-legacy NATs")"
	apply_fix firewall "iptables-legacy NATs"
	assert_eq "the fix removed it" "" "$(nsx "$NS_HOST" iptables-legacy-save -t nat | grep -e '^-A' || true)"
	cleared "legacy masquerade removed" firewall
else
	kvx_log "iptables-legacy missing or the kernel has no x_tables NAT: covered by the unit tests only"
fi

kvx_step "a bridge-family nft chain drops what crosses $BR"
if command -v nft >/dev/null 2>&1; then
	nsx "$NS_HOST" nft add table bridge kvxdoc
	nsx "$NS_HOST" nft add chain bridge kvxdoc kvxfw '{ type filter hook forward priority 0; policy drop; }'
	assert_fails "guest1 -> guest2 dropped by the chain" kvx_ping "$NS_G1" "$G2_IP" 2
	finds "bridge chain drop" firewall error "traffic between guests is dropped"
	# In the bridge family iifname names a port, never the bridge: a rule on
	# it (what doctor used to print) lets nothing through.
	nsx "$NS_HOST" nft insert rule bridge kvxdoc kvxfw iifname "$BR" accept
	assert_fails "an iifname $BR rule does not help" kvx_ping "$NS_G1" "$G2_IP" 2
	finds "iifname rule is no accept" firewall error "traffic between guests is dropped"
	nsx "$NS_HOST" nft flush chain bridge kvxdoc kvxfw
	assert_contains "the fix matches the bridge crossed" "meta ibrname" "$(fix_of firewall "between guests")"
	if nsx "$NS_HOST" bash -c "$(fix_of firewall "between guests")" 2>"$KVX_TMP/nft.err"; then
		assert_ok "guest1 -> guest2 after the printed fix" kvx_ping "$NS_G1" "$G2_IP" 3
		cleared "bridge chain accepts $BR" firewall
	else
		# nft_meta_bridge (CONFIG_NFT_BRIDGE_META; Debian builds it) is
		# missing from this kernel.
		kvx_log "the kernel refused meta ibrname ($(head -1 "$KVX_TMP/nft.err")): the printed fix is not run here"
	fi
	nsx "$NS_HOST" nft delete table bridge kvxdoc
	cleared "bridge chain removed" firewall
else
	kvx_log "no nft: the bridge-family check is covered by the unit tests only"
fi

kvx_step "FORWARD policy DROP in the host namespace"
nsx "$NS_HOST" iptables -P FORWARD DROP
finds "FORWARD DROP" firewall warning "FORWARD policy is DROP"
apply_fix firewall "FORWARD policy is DROP"
cleared "bridge accepted before the policy" firewall
nsx "$NS_HOST" iptables -F FORWARD
nsx "$NS_HOST" iptables -P FORWARD ACCEPT

if ((BRNF)); then
	kvx_step "br_netfilter (loaded on this host): bridge-nf-call-iptables=1 in the host namespace"
	hsys net.bridge.bridge-nf-call-iptables=1
	finds "bridged iptables" br_netfilter warning "bridge-nf-call-iptables=1"
	hsys net.bridge.bridge-nf-call-iptables=0
	cleared "bridged iptables off" br_netfilter
else
	kvx_log "br_netfilter is not loaded on this host: its check is covered by the unit tests only"
fi

kvx_step "guest2 uses 192.168.122.254 as its gateway: nobody answers"
ip -n "$NS_G2" route replace default via 192.168.122.254
kvx_bg "$KVX_TMP/ping254.log" ip netns exec "$NS_G2" ping -n -i 0.5 -c 60 "$SRV_IP"
PING_PID=$KVX_LAST_PID
ARPW=3 finds "wrong gateway" gateway warning "guest $G2_IP"
assert_contains "it names the gateway asked for" "for 192.168.122.254" "$(findings_of gateway)"
assert_contains "the fix names the bridge's address" "ip route replace default via $GW_IP" "$(fix_of gateway "$G2_IP")"
# A flood of forged, all different requests from guest1 during the window:
# more than doctor keeps.  What it did not look at must not read as "ok".
kvx_bg "$KVX_TMP/flood.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" \
	flood "$G1_IF" 10.99.0.0 --seconds 10
FLOOD_PID=$KVX_LAST_PID
sleep 0.5
ARPW=3 finds "wrong gateway under an ARP flood" gateway warning "checked only in part"
kvx_kill_pid "$FLOOD_PID"
kvx_log "flood: $(cat "$KVX_TMP/flood.log" 2>/dev/null)"
kvx_kill_pid "$PING_PID"
ip -n "$NS_G2" route replace default via "$GW_IP"
sleep 3 # the kernel's last retries for .254 (mcast_solicit, 1 s apart)
kvx_bg "$KVX_TMP/ping1.log" ip netns exec "$NS_G2" ping -n -i 0.5 -c 60 "$SRV_IP"
PING_PID=$KVX_LAST_PID
ARPW=3 cleared "gateway fixed (guest2 pinging the server)" gateway
kvx_kill_pid "$PING_PID"

kvx_step "the daemon gone, then the datapath detached"
kvx_daemon_kill
finds "no daemon" datapath warning "no daemon running for $BR"
kvx_attach_bg || kvx_fatal "cannot attach again"
cleared "daemon back" datapath
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null
finds "detached" datapath error "$BR is not attached"
kvx_attach_bg || kvx_fatal "cannot attach again"
cleared "attached again" datapath

kvx_step "conntrack table near full: --ct-size 64, 60 UDP flows"
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null # a table of another size needs a new map
kvx_attach_bg --ct-size 64 --flow-quota 0 --timeouts udp=60 || kvx_fatal "cannot attach with --ct-size 64"
nsx "$NS_G2" timeout 20 "$KVX_PY" -u "$KVX_LIBDIR/flowgen.py" burst "$SRV_IP" 20000 20059 >/dev/null
kvx_wait_datapath 5 "60 flows in the table" "ct >= 52"
finds "table near full" tables warning "the conntrack table holds"
assert_contains "the fix names a larger table" "kvmxdp detach --bridge $BR; kvmxdp attach --bridge $BR --ct-size 128" \
	"$(fix_of tables conntrack)"
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null
kvx_attach_bg --ct-size 128 --flow-quota 0 || kvx_fatal "cannot attach with --ct-size 128"
cleared "larger table" tables

kvx_step "bad input: one error line naming the value"
out=$(kvx doctor --bridge "$BR" --arp-wait 99 2>&1) && rc=0 || rc=$?
assert_eq "--arp-wait 99: usage error" 2 "$rc"
assert_eq "one line" 1 "$(grep -c . <<<"$out")"
assert_contains "it names the value" "99" "$out"
out=$(kvx doctor --bridge "bad/name" 2>&1) && rc=0 || rc=$?
assert_eq "a bad bridge name: usage error" 2 "$rc"
assert_eq "one line" 1 "$(grep -c . <<<"$out")"
assert_contains "it names the value" "bad/name" "$out"
out=$(nsx "$NS_HOST" setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$KVMXDP" "${KVX_OPTS[@]}" doctor --bridge "$BR" 2>&1) && rc=0 || rc=$?
assert_eq "without privileges: a configuration error (no half-blind report)" 78 "$rc"
assert_eq "one line" 1 "$(grep -c . <<<"$out")"
assert_contains "it names what is missing" "doctor needs CAP_BPF" "$out"
kvx_finish
