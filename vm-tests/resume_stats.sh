#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/resume_stats.sh: two options of attach that outlive a restart.
#  - `attach --clamp-mss N` writes kvx_cfg.clamp_mss and the config; a later
#    attach without the flag keeps it; bad values are one error line.
#  - Resume over a kvx_stats map of another size (an older kvmxdp with fewer
#    verdict reasons): a fresh counters map is created with a note, the
#    conntrack table is kept, traffic goes on; the quota slots' key
#    (kvx_cfg.guest_seed) is kept, so the slot records of the resumed flows
#    and bindings still name their slots.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     uplink ku<id> 10.77.0.2/24 <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 (HTTP :8080)
#
# Usage: resume_stats.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server

kvx_step "--clamp-mss"
for bad in 100 535 65496 abc; do
	out=$(kvx attach --bridge "$BR" --uplink "$UP" --clamp-mss "$bad" 2>&1) && kvx_fail "--clamp-mss $bad accepted"
	assert_contains "--clamp-mss $bad refused" "invalid --clamp-mss '$bad'" "$out"
done
kvx_attach_bg --clamp-mss 1400 || kvx_fatal "cannot attach"
assert_eq "kvx_cfg.clamp_mss" 1400 "$(kvx_cfg_field clamp_mss)"
assert_contains "config records clamp_mss" '"clamp_mss": 1400' "$(cat "$KVX_CFG")"
assert_ne "guest1 -> server" "" "$(nsx "$NS_G1" curl -sS --fail --max-time 3 "http://$SRV_IP:8080/" 2>/dev/null || true)"

kvx_step "resume over a kvx_stats map of another size"
# A long-lived UDP flow whose conntrack entry must survive the resume.
kvx_udp_server "$SRV_IP:5001"
r=$(kvx_udp_client "$NS_G1" --bind 40111 --msg a --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP flow before" "seen=$UP_IP:" "$r"
port_before=$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")
ct_before=$(kvx_json "i['conntrack']['entries']")
seed_before=$(kvx_cfg_field guest_seed)
kvx_daemon_stop
pin=$(kvx_pin_dir "$BR")/kvx_stats
rm -f "$pin"
bpftool map create "$pin" type percpu_array key 4 value 16 entries 8 name kvx_stats
kvx_attach_bg || kvx_fatal "cannot resume"
assert_contains "note about the counters" "counters restart from zero" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "kvx_cfg.clamp_mss kept without the flag" 1400 "$(kvx_cfg_field clamp_mss)"
assert_ge "conntrack kept" "$(kvx_json "i['conntrack']['entries']")" "$ct_before"
assert_ne "kvx_cfg.guest_seed before the resume" "" "$seed_before"
assert_eq "kvx_cfg.guest_seed kept by the resume" "$seed_before" "$(kvx_cfg_field guest_seed)"
# Every resumed flow's slot record carries the tag of that seed (ct_rules.h
# kvx_ct_slot_tag): it reads as the slot it was counted in, not as none.
tags=$(bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_ct" | "$KVX_PY" -c '
import json, sys
seed = int(sys.argv[1])
tag = ((seed * 0x9e3779b1) & 0xffffffff) >> 16 or 1
recs = [(e["formatted"]["value"] if "formatted" in e else e["value"])["slot"] for e in json.load(sys.stdin)]
print(len(recs), sum(1 for r in recs if r >> 16 == tag))' "$seed_before")
assert_ne "resumed flows" "0" "${tags%% *}"
assert_eq "resumed flows whose record carries the kept seed's tag" "${tags%% *}" "${tags##* }"
r=$(kvx_udp_client "$NS_G1" --bind 40111 --msg b --wait 1 "$SRV_IP:5001" || true)
assert_contains "UDP flow after, from the uplink address" "seen=$UP_IP:" "$r"
# The conntrack entry was kept, so its binding too: the server sees the
# same external port (a fresh binding starts at a random port of the NAT
# range, as 40111 is outside it).
assert_ne "UDP flow: external port before the resume" "" "$port_before"
assert_eq "UDP flow after: the same external port" "$port_before" \
	"$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")"
assert_ge "counters count again" "$(kvx_counter XLATE_OUT)" 1
n=$(bpftool -j map show pinned "$pin" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["max_entries"])')
# One entry per verdict reason of the ABI's X-macro (as masquerade.sh reads
# it), and status names exactly those reasons.
reasons=$(sed -n 's/^[[:space:]]*X(\([A-Z0-9_]*\),.*/\1/p' "$KVX_LIBDIR/../bpf/include/kvmxdp/abi.h")
assert_eq "new kvx_stats: one entry per reason of abi.h" "$(grep -c . <<<"$reasons")" "$n"
assert_eq "status: the counters are exactly abi.h's reasons" "$(sort <<<"$reasons" | paste -sd' ')" \
	"$(kvx_json '" ".join(sorted(i["counters"]))')"

kvx_step "attach --clamp-mss 0 turns it off"
kvx_daemon_stop
kvx_attach_bg --clamp-mss 0 || kvx_fatal "cannot resume"
assert_eq "kvx_cfg.clamp_mss off" 0 "$(kvx_cfg_field clamp_mss)"

kvx_finish
