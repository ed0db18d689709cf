#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/overlap.sh: a guest subnet that overlaps the uplink's network.
# attach refuses it (one line naming both, nothing attached); a DHCP-like
# renumbering of the uplink into an overlapping network later makes the
# daemon stop translating: the host's own traffic to its LAN keeps working
# (inbound packets "to the guest subnet" are the host's now), status warns;
# renumbered back, guests are translated again.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+ bridge kb<id> 192.168.122.1/24  (host ns)
#                                                    uplink ku<id> 10.77.0.2/24 -> later
#                                                    192.168.122.77/23, default via
#                                                    192.168.123.1                <- kvmxdp
#   lan ns: kl<id> 10.77.0.1/24 and 192.168.123.1/23 (the "new DHCP network")
#   server ns: ks<id> 10.78.0.2/24 behind the lan router
#
# Usage: overlap.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools ping
kvx_topology_up

kvx_step "attach refuses a guest subnet inside the uplink's network"
ip -n "$NS_HOST" addr add 192.168.0.2/16 dev "$UP"
out=$(timeout 10 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP" 2>&1) && rc=0 || rc=$?
assert_ne "attach fails" 0 "$rc"
assert_eq "one error line" 1 "$(printf '%s\n' "$out" | grep -c .)"
assert_contains "it names the guest subnet" "192.168.122.0/24" "$out"
assert_contains "it names the uplink's network" "192.168.0.0/16" "$out"
assert_contains "it names the uplink" "'$UP'" "$out"
assert_eq "no filter on the bridge" 0 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "no filter on the uplink" 0 "$(kvx_tc_bpf_filters "$UP")"
ip -n "$NS_HOST" addr del 192.168.0.2/16 dev "$UP"

kvx_step "attach on a disjoint network; guests translated"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_ok "guest1 -> server" nsx "$NS_G1" ping -c 2 -i 0.2 -W 2 "$SRV_IP"

kvx_step "DHCP renumbers the uplink into 192.168.122.0/23 (overlaps the guests)"
ip -n "$NS_LAN" addr add 192.168.123.1/23 dev "$LAN_UP_IF"
ip -n "$NS_HOST" addr add 192.168.122.77/23 dev "$UP"
ip -n "$NS_HOST" addr del "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via 192.168.123.1 dev "$UP"
overlapping() { [[ $(kvx_json 'i.get("overlap")') == True || $(kvx_json 'i.get("overlap")') == true ]]; }
kvx_wait_for 5 "status to report the overlap" overlapping || true
assert_eq "status: overlap" true "$(kvx_json 'i["overlap"]')"
assert_contains "status warns" "overlaps the guest subnet 192.168.122.0/24: not translating" \
	"$(kvx_json '"|".join(i["warnings"])')"
p0=$(kvx_counter PASS_OVERLAP)
assert_ok "the host reaches its new LAN (replies to 192.168.122.77 are the host's)" \
	nsx "$NS_HOST" ping -c 3 -i 0.2 -W 2 192.168.123.1
assert_ge "PASS_OVERLAP counted them" "$(($(kvx_counter PASS_OVERLAP) - p0))" 3
assert_eq "DROP_TO_SUBNET never hit the host's traffic" 0 "$(kvx_counter DROP_TO_SUBNET)"

kvx_step "renumbered back: translation resumes"
ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" addr del 192.168.122.77/23 dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
not_overlapping() { ! overlapping; }
kvx_wait_for 5 "status to clear the overlap" not_overlapping || true
assert_eq "status: overlap cleared" false "$(kvx_json 'i["overlap"]')"
assert_not_contains "no warning" "overlaps the guest subnet" "$(kvx_json '"|".join(i["warnings"])')"
x0=$(kvx_counter XLATE_OUT)
assert_ok "guest1 -> server" nsx "$NS_G1" ping -c 2 -i 0.2 -W 2 "$SRV_IP"
assert_ge "translated again" "$(($(kvx_counter XLATE_OUT) - x0))" 2
kvx_finish
