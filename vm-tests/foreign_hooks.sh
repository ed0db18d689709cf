#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/foreign_hooks.sh: another tool's hooks are already on the bridge
# and the uplink: a clsact qdisc with the tool's own counting
# TC filters (BPF, direct action, returning TC_ACT_UNSPEC so that the next
# filter runs, at priority 10, ahead of kvmxdp's 0x6b76) on the bridge's
# ingress and the uplink's ingress and egress, and a counting XDP program
# (generic mode) on the bridge and on the uplink.
#  - A foreign filter of another kind at kvmxdp's own priority: attach
#    refuses with one clear error line and changes nothing.
#  - attach coexists: guests' traffic is translated, every foreign counter
#    keeps counting (the XDP programs and the filters still run).
#  - detach removes only kvmxdp's filters: the foreign filters, the clsact
#    qdiscs (not ours) and the XDP programs stay, and keep counting.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                      [foreign: XDP generic; clsact + counting BPF filter, ingress pref 10]
#                                                     host ns: uplink ku<id> 10.77.0.2/24   <- kvmxdp
#                      [foreign: XDP generic; clsact + counting BPF filters, ingress and egress pref 10]
#   lan ns:    router, kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24, ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1
#
# Usage: foreign_hooks.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file blob 1)
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer

kvx_step "another tool's hooks"
# This kernel has neither cls_matchall nor act_gact: the tool is BPF.
cat >"$KVX_TMP/fx.bpf.c" <<'EOF'
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
struct cnt {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};
struct cnt fx_xdp_cnt SEC(".maps"), fx_tc_cnt SEC(".maps");
static __always_inline void count(void *map)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(map, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}
SEC("xdp")
int fx_xdp(struct xdp_md *ctx)
{
	count(&fx_xdp_cnt);
	return XDP_PASS;
}
SEC("tc")
int fx_tc(struct __sk_buff *skb)
{
	count(&fx_tc_cnt);
	return TC_ACT_UNSPEC; /* not a verdict: the next filter runs */
}
char _license[] SEC("license") = "GPL";
EOF
"$KVX_LIBDIR/../cmake/bpf-cc" -c "$KVX_TMP/fx.bpf.c" -o "$KVX_TMP/fx.o" ||
	kvx_fatal "cannot build the foreign BPF programs"
# One load per hook point (own counters): fx_br (XDP + TC ingress on the
# bridge), fx_upi (XDP + TC ingress on the uplink), fx_upe (TC egress there).
for n in br upi upe; do
	bpftool prog loadall "$KVX_TMP/fx.o" "$BPFFS/fx_$n" || kvx_fatal "bpftool prog loadall"
done
nsenter_net "$NS_HOST" bpftool net attach xdpgeneric pinned "$BPFFS/fx_br/fx_xdp" dev "$BR" ||
	kvx_fatal "cannot attach the foreign XDP program to $BR"
nsenter_net "$NS_HOST" bpftool net attach xdpgeneric pinned "$BPFFS/fx_upi/fx_xdp" dev "$UP" ||
	kvx_fatal "cannot attach the foreign XDP program to $UP"
tc -n "$NS_HOST" qdisc add dev "$BR" clsact
tc -n "$NS_HOST" qdisc add dev "$UP" clsact
tc -n "$NS_HOST" filter add dev "$BR" ingress pref 10 bpf object-pinned "$BPFFS/fx_br/fx_tc" da
tc -n "$NS_HOST" filter add dev "$UP" ingress pref 10 bpf object-pinned "$BPFFS/fx_upi/fx_tc" da
tc -n "$NS_HOST" filter add dev "$UP" egress pref 10 bpf object-pinned "$BPFFS/fx_upe/fx_tc" da

fx_count() { # PIN (fx_br/fx_xdp, ...): the counter of that foreign program
	local mid
	mid=$(bpftool -j prog show pinned "$BPFFS/$1" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["map_ids"][0])')
	bpftool -j map dump id "$mid" | "$KVX_PY" -c '
import json, sys
e = json.load(sys.stdin)[0]
if "formatted" in e: print(e["formatted"]["value"])
else: print(int.from_bytes(bytes(int(b, 16) for b in e["value"]), "little"))'
}
# kvmxdp's own filters (priority and handle 0x6b76 = 27510), not the tool's.
kvx_filters() { # DEV
	tc -n "$NS_HOST" filter show dev "$1" ingress 2>/dev/null | grep -c 'pref 27510 bpf .*handle 0x6b76' || true
}
xdp_id() { # DEV: id of the XDP program on it
	ip -n "$NS_HOST" -d -j link show dev "$1" | "$KVX_PY" -c '
import json, sys
x = json.load(sys.stdin)[0].get("xdp", {})
print(x.get("prog", {}).get("id", "") or next((p["prog"]["id"] for p in x.get("attached", []) if "prog" in p), ""))'
}
foreign_state() { # what belongs to the other tool
	local dev
	for dev in "$BR" "$UP"; do
		echo "## $dev qdisc: $(tc -n "$NS_HOST" qdisc show dev "$dev" | grep -o 'clsact' || true)"
		echo "## $dev ingress: $(tc -n "$NS_HOST" filter show dev "$dev" ingress pref 10 | grep -o 'fx_tc.*' | head -n1 || true)"
		echo "## $dev xdp: $(xdp_id "$dev")"
	done
	echo "## $UP egress: $(tc -n "$NS_HOST" filter show dev "$UP" egress pref 10 | grep -o 'fx_tc.*' | head -n1 || true)"
}
foreign0=$(foreign_state)
kvx_log "foreign state: $(tr '\n' '|' <<<"$foreign0")"
assert_eq "foreign XDP programs on the bridge and the uplink" 2 "$(grep -c 'xdp: [0-9]' <<<"$foreign0" || true)"
assert_eq "foreign TC filters (bridge ingress, uplink ingress and egress)" 3 "$(grep -c 'fx_tc.*direct-action' <<<"$foreign0" || true)"

kvx_step "a foreign filter of another kind at kvmxdp's priority: attach refuses, changes nothing"
tc -n "$NS_HOST" filter add dev "$UP" ingress pref $((0x6b76)) protocol all u32 match u32 0 0
# shellcheck disable=SC2034 # lib.sh: the common end checks count from here
KVX_FWD0=$(kvx_fwd_datagrams)
before=$(kvx_host_state)
rc=0
out=$(nsx "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP" 2>&1) || rc=$?
kvx_log "attach over a foreign filter at priority 0x6b76: exit $rc: $out"
assert_ne "refused: exit code" 0 "$rc"
assert_eq "refused: one 'kvmxdp: error:' line" 1 "$(grep -c '^kvmxdp: error: ' <<<"$out" || true)"
assert_contains "refused: the error names the uplink" "$UP" "$(grep '^kvmxdp: error: ' <<<"$out" || true)"
assert_contains "refused: the error names the priority" "priority 27510 on $UP" "$out"
assert_not_contains "refused: no attached line" "kvmxdp: attached" "$out"
assert_eq "refused: nothing changed" "$before" "$(kvx_host_state)"
assert_empty "refused: no pins" "$(kvx_pins)"
assert_eq "refused: no instance in the config" "" "$(grep -o "\"$BR\"" "$KVX_CFG" 2>/dev/null || true)"
tc -n "$NS_HOST" filter del dev "$UP" ingress pref $((0x6b76))

kvx_step "attach next to the foreign hooks"
c_br0=$(fx_count fx_br/fx_tc) c_upi0=$(fx_count fx_upi/fx_tc) c_upe0=$(fx_count fx_upe/fx_tc)
x_br0=$(fx_count fx_br/fx_xdp) x_up0=$(fx_count fx_upi/fx_xdp)
kvx_attach_bg || kvx_fatal "cannot attach next to foreign hooks"
assert_eq "kvmxdp filter on the bridge" 1 "$(kvx_filters "$BR")"
assert_eq "kvmxdp filter on the uplink" 1 "$(kvx_filters "$UP")"
assert_eq "status: no warning about the filters" "" \
	"$(kvx_json '"|".join(w for w in i["warnings"] if "kvmxdp filter" in w)')"
assert_eq "guest1 ping" 10 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 10)"
assert_eq "guest2 curl" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
r=$(kvx_udp_client "$NS_G1" --msg foreign --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP translated" "seen=$UP_IP:" "$r"
assert_ge "kvmxdp translated (XLATE_OUT)" "$(kvx_counter XLATE_OUT)" 10
assert_ge "kvmxdp translated (XLATE_IN)" "$(kvx_counter XLATE_IN)" 10
assert_ge "foreign TC filter on the bridge ingress counts" "$(fx_count fx_br/fx_tc)" $((c_br0 + 10))
assert_ge "foreign TC filter on the uplink ingress counts" "$(fx_count fx_upi/fx_tc)" $((c_upi0 + 10))
assert_ge "foreign TC filter on the uplink egress counts (NATed packets)" "$(fx_count fx_upe/fx_tc)" $((c_upe0 + 10))
assert_ge "foreign XDP on the bridge counts" "$(fx_count fx_br/fx_xdp)" $((x_br0 + 10))
assert_ge "foreign XDP on the uplink counts" "$(fx_count fx_upi/fx_xdp)" $((x_up0 + 10))
assert_eq "foreign hooks untouched by attach" "$foreign0" "$(foreign_state)"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$(kvx_server_sources)"

kvx_step "detach leaves the foreign hooks"
kvx_daemon_stop
out=$(kvx detach --bridge "$BR" 2>&1) || kvx_fatal "detach failed: $out"
assert_eq "no kvmxdp filter on the bridge" 0 "$(kvx_filters "$BR")"
assert_eq "no kvmxdp filter on the uplink" 0 "$(kvx_filters "$UP")"
assert_eq "foreign filters, clsact qdiscs and XDP programs still there" "$foreign0" "$(foreign_state)"
c_upi1=$(fx_count fx_upi/fx_tc) x_up1=$(fx_count fx_upi/fx_xdp)
assert_eq "the host itself still reaches the LAN" 3 "$(kvx_ping_received "$NS_HOST" "$LAN_IP" 3)"
assert_ge "foreign TC filter still counts after detach" "$(fx_count fx_upi/fx_tc)" $((c_upi1 + 3))
assert_ge "foreign XDP still counts after detach" "$(fx_count fx_upi/fx_xdp)" $((x_up1 + 3))
assert_empty "no kvmxdp pins" "$(kvx_pins)"

kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
