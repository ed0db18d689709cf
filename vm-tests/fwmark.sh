#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/fwmark.sh: guest traffic follows the host's policy routing by
# mark (ip rule fwmark), as a VPN's policy routing would have it.  A tc rule
# on guest1's bridge port marks its frames; the route lookup of kvmxdp must
# carry the mark, or it routes them by the main table past the rules.
#  1. fwmark 7 -> table 107, which prohibits the server: guest1 (marked) is
#     told "packet filtered" by the host stack and reaches nothing, guest2
#     (unmarked) reaches the server.
#  2. the main table prohibits the server, fwmark 8 -> table 108 routes to
#     it through the uplink: guest1 (now marked 8) downloads a file intact,
#     translated, guest2 is filtered.
# On a kernel before 6.10 the lookup cannot take the mark: marked packets
# are dropped and counted (DROP_FWMARK), never routed past the rules.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+  kp1<id>: tc ingress skbedit mark
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24)
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                              ip rule fwmark 7/8 -> table 107/108
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24
#              (towards server), ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: fwmark.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_http_server
sha=$(kvx_random_file blob 1)
kvx_server_sniffer
# Everything below lives in the test's host namespace and goes with it.
ip -n "$NS_HOST" rule add fwmark 7 table 107 pref 107
ip -n "$NS_HOST" route add prohibit "$SRV_IP/32" table 107
ip -n "$NS_HOST" rule add fwmark 8 table 108 pref 108
ip -n "$NS_HOST" route add default via "$LAN_IP" dev "$UP" table 108
# The mark: a tc filter on guest1's port (this kernel has neither
# cls_matchall nor act_skbedit: the filter is BPF, one object per mark).
for m in 7 8; do
	cat >"$KVX_TMP/mark$m.bpf.c" <<EOF
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
SEC("tc")
int mark_tc(struct __sk_buff *skb)
{
	skb->mark = $m;
	return TC_ACT_UNSPEC; /* not a verdict: the bridge takes it on */
}
char _license[] SEC("license") = "GPL";
EOF
	"$KVX_LIBDIR/../cmake/bpf-cc" -c "$KVX_TMP/mark$m.bpf.c" -o "$KVX_TMP/mark$m.o" ||
		kvx_fatal "cannot build the marking BPF program"
	bpftool prog loadall "$KVX_TMP/mark$m.o" "$BPFFS/mark$m" || kvx_fatal "bpftool prog loadall"
done
tc -n "$NS_HOST" qdisc add dev "$P1_IF" clsact
mark_guest1() { # MARK
	tc -n "$NS_HOST" filter replace dev "$P1_IF" ingress pref 1 handle 1 bpf \
		object-pinned "$BPFFS/mark$1/mark_tc" da
}
mark_guest1 7

kvx_attach_bg || kvx_fatal "cannot attach"
kmaj=$(uname -r | cut -d. -f1) kmin=$(uname -r | cut -d. -f2)
if ((kmaj * 100 + kmin < 610)); then
	kvx_step "kernel $(uname -r): no marks in bpf_fib_lookup: marked packets dropped, counted"
	d0=$(kvx_counter DROP_FWMARK)
	assert_eq "marked guest1 reaches nothing" 0 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
	assert_ge "DROP_FWMARK counted" $(($(kvx_counter DROP_FWMARK) - d0)) 3
	assert_eq "unmarked guest2 reaches the server" 3 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 3)"
	kvx_assert_no_netfilter
	kvx_finish
fi

kvx_step "fwmark 7 -> table 107 prohibits the server: guest1 (marked) filtered, guest2 not"
n0=$(kvx_counter PASS_NO_ROUTE)
out=$(nsx "$NS_G1" ping -n -c 1 -W 2 "$SRV_IP" 2>&1 || true)
kvx_log "guest1 ping: $(tr '\n' '|' <<<"$out")"
assert_contains "guest1 told by the host stack: packet filtered" "Packet filtered" "$out"
assert_eq "guest1's TCP gets nowhere" "" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_ge "PASS_NO_ROUTE counted guest1's packets" $(($(kvx_counter PASS_NO_ROUTE) - n0)) 2
assert_eq "guest2 (unmarked) reaches the server" 3 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 3)"
assert_eq "guest2 downloads intact" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"

kvx_step "main table prohibits the server, fwmark 8 -> table 108 reaches it: only guest1 gets through"
ip -n "$NS_HOST" route add prohibit "$SRV_IP/32"
mark_guest1 8
out=$(nsx "$NS_G2" ping -n -c 1 -W 2 "$SRV_IP" 2>&1 || true)
kvx_log "guest2 ping: $(tr '\n' '|' <<<"$out")"
assert_contains "guest2 (unmarked) now filtered by the main table" "Packet filtered" "$out"
x0=$(kvx_counter XLATE_OUT)
assert_eq "guest1 (marked 8) reaches the server" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"
assert_eq "guest1 downloads intact" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_ge "guest1's packets translated by kvmxdp" $(($(kvx_counter XLATE_OUT) - x0)) 5
assert_eq "every packet the server received came from the uplink address" "$UP_IP" \
	"$(kvx_server_sources)"
kvx_assert_no_netfilter
kvx_finish
