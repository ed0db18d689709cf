#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/replug.sh: the devices kvmxdp is attached to disappear and come
# back under the same name while the daemon runs: the uplink (WiFi driver
# reload, USB dongle replugged) and the bridge (`virsh net-destroy` +
# `net-start`).  The daemon must re-attach to the new device (new ifindex),
# restore the bridge's forwarding sysctl, and traffic must flow again within
# a few seconds, with nothing leaked meanwhile.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: replug.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer
kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "ping before" 3 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 3)"

# Retry a new UDP flow for up to 5 s; prints the elapsed ms, returns 1 if none.
flow_back() { # NS
	local t0 try r
	t0=$(date +%s%N)
	for ((try = 0; try < 20; try++)); do
		r=$(kvx_udp_client "$1" --msg "back$try" --wait 0.2 "$SRV_IP:5001" || true)
		if [[ $r == *"seen=$UP_IP:"* ]]; then
			echo $((($(date +%s%N) - t0) / 1000000))
			return 0
		fi
		(($(date +%s%N) - t0 < 5000000000)) || break
	done
	return 1
}

kvx_step "the uplink device is deleted and re-created"
ip -n "$NS_HOST" link del "$UP"
sleep 0.5
kvx_veth "$NS_HOST" "$UP" "$NS_LAN" "$LAN_UP_IF"
ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
ip -n "$NS_HOST" route replace default via "$LAN_IP" dev "$UP"
ip -n "$NS_LAN" addr add "$LAN_IP/24" dev "$LAN_UP_IF"
if ms=$(flow_back "$NS_G1"); then
	kvx_pass "traffic back ${ms} ms after the uplink came back"
else
	kvx_fail "no traffic within 5 s after the uplink came back; daemon log: $(cat "$KVX_DAEMON_LOG")"
fi
assert_eq "one bpf filter on the new uplink" 1 "$(kvx_tc_bpf_filters "$UP")"
assert_eq "daemon still running" 0 "$(kill -0 "$KVX_DAEMON_PID" 2>/dev/null; echo $?)"

kvx_step "the bridge is deleted and re-created (virsh net-destroy/net-start)"
ip -n "$NS_HOST" link del "$BR"
sleep 0.5
kvx_bridge_recreate
if ms=$(flow_back "$NS_G2"); then
	kvx_pass "traffic back ${ms} ms after the bridge came back"
else
	kvx_fail "no traffic within 5 s after the bridge came back; daemon log: $(tr '\n' '|' <"$KVX_DAEMON_LOG"); status warnings: $(kvx_json 'i["warnings"]')"
fi
assert_eq "one bpf filter on the new bridge" 1 "$(kvx_tc_bpf_filters "$BR")"
assert_eq "forwarding on the new bridge" 1 "$(kvx_sysctl_get "$NS_HOST" "net/ipv4/conf/$BR/forwarding")"
assert_eq "status: no warning about a missing filter" "" \
	"$(kvx_json '"|".join(w for w in i["warnings"] if "kvmxdp filter" in w)')"
assert_eq "daemon still running" 0 "$(kill -0 "$KVX_DAEMON_PID" 2>/dev/null; echo $?)"

assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$(kvx_server_sources)"
kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
