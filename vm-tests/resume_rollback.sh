#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/resume_rollback.sh: an attach that resumes over a running datapath
# (the daemon was killed; the pinned maps and the filters keep translating)
# and then fails at a later step must leave a consistent, serving datapath:
#  - the pinned runtime configuration keeps its old values (attach had
#    written the new ones into the very map the datapath reads);
#  - a pinned map that attach replaces (here kvx_stats of another size, as an
#    older kvmxdp leaves it) is pinned back, not lost, when the failure comes
#    before the programs were swapped; after that, the pin is the map the
#    live programs use (filters, XDP and cgroup links of a resume are
#    replaced in place and not undone);
#  - asked to move to another uplink, the filter on the old uplink stays
#    until the new attachment is complete, and none is left on the new one.
# Each failure is injected (KVMXDP_FAILPOINT) at one step after the maps are
# pinned; after each, a guest's download through the daemon-less datapath
# still works.  Then a plain attach resumes: the old flows are still there.
#
# Usage: resume_rollback.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_http_server
kvx_guest_http_servers
sha=$(kvx_random_file blob 1)

UP2=kv$KVX_ID
kvx_veth "$NS_HOST" "$UP2" "$NS_LAN" "kw$KVX_ID"
PIN=$(kvx_pin_dir "$BR")

map_id() { bpftool -j map show pinned "$PIN/$1" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
cfg_dump() { bpftool -j map dump pinned "$PIN/kvx_cfg"; }
bridge_prog_maps() {
	local id
	id=$(tc -n "$NS_HOST" -j filter show dev "$BR" ingress | "$KVX_PY" -c 'import json,sys; print([f["options"]["prog"]["id"] for f in json.load(sys.stdin) if "options" in f][0])')
	bpftool -j prog show id "$id" | "$KVX_PY" -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["map_ids"])))'
}
ct_count() { bpftool -j map dump pinned "$PIN/kvx_ct" | "$KVX_PY" -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

kvx_step "attach, traffic, then the daemon dies (the datapath stays)"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "download through kvmxdp" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_ok "map add uplink:8080 $G2_IP:80" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
kvx_daemon_kill
flows=$(ct_count)
assert_ge "flows in conntrack" "$flows" 1

# An older kvmxdp's counters (fewer reasons): attach replaces this map.
stats_info=$(bpftool -j map show pinned "$PIN/kvx_stats")
vsize=$("$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["bytes_value"])' <<<"$stats_info")
rm "$PIN/kvx_stats"
bpftool map create "$PIN/kvx_stats" type percpu_array key 4 value "$vsize" entries 3 name kvx_stats
planted=$(map_id kvx_stats)
cfg0=$(cfg_dump)

for fp in pinned kvx_up_ingress xdp host_hooks sysctls; do
	kvx_step "resume onto $UP2 with --clamp-mss 1200, failing at '$fp'"
	out=$(KVMXDP_FAILPOINT=$fp ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" \
		attach --bridge "$BR" --uplink "$UP2" --clamp-mss 1200 2>&1) &&
		kvx_fail "attach with failpoint $fp succeeded"
	assert_contains "$fp: failure injected" "injected failure at $fp" "$out"
	assert_eq "$fp: runtime configuration as before" "$cfg0" "$(cfg_dump)"
	if [[ $fp == pinned ]]; then
		assert_eq "$fp: the replaced kvx_stats is pinned back" "$planted" "$(map_id kvx_stats)"
	else
		# The programs were swapped in place: the pin is the map they use.
		assert_contains "$fp: kvx_stats pinned is the bridge program's" \
			"$(map_id kvx_stats)" "$(bridge_prog_maps)"
	fi
	assert_eq "$fp: the old uplink keeps its filter" 1 "$(kvx_tc_bpf_filters "$UP")"
	assert_eq "$fp: no filter left on $UP2" 0 "$(kvx_tc_bpf_filters "$UP2")"
	assert_eq "$fp: download through the daemon-less datapath" "$sha" \
		"$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
done

kvx_step "a plain attach resumes over the same maps"
kvx_attach_bg || kvx_fatal "cannot attach after the failed ones"
assert_ge "flows kept" "$(ct_count)" "$flows"
assert_ne "kvx_stats replaced now (an older kvmxdp's size)" "$planted" "$(map_id kvx_stats)"
assert_eq "LAN -> uplink:8080" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
kvx_finish
