#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/uplink_auto.sh: `attach --uplink auto` follows the host's IPv4
# default route between two uplinks, as a laptop moves from WiFi to a dock
# and back (NetworkManager: WiFi metric 600, ethernet metric 100).
#  - flows leave via the WiFi uplink A with A's address;
#  - the dock's default route appears (metric 100): the filter moves to B,
#    new flows leave from B's address at once, A's flows and bindings are
#    flushed, a long-lived UDP flow continues from B;
#  - the dock goes away: back to A the same way;
#  - with IPv6 on (NAT66), accept_ra 2 follows the uplink: the device the
#    default route moved to goes 1 -> 2, the one it left back to 1;
#  - a second bridge can neither follow the default route too nor take
#    the followed device (one bridge per uplink): one error line;
#  - the route moves while no daemon runs: `attach --bridge BR` alone
#    (the systemd unit) resumes in auto mode on the new device;
#  - every default route disappears for a while (suspend, reconnect): the
#    uplink stays on A and nothing is flushed;
#  - attach with no default route at all: attach works and waits ("device
#    none"), guests get nothing out, the first default route is taken.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: A = ku<id> 10.77.0.2/24 "WiFi"
#                                                                default via 10.77.0.1 metric 600
#                                                              B = kd<id> 10.79.0.2/24 "dock"
#                                                                default via 10.79.0.1 metric 100
#                                                                (added/removed by the test)
#   lan ns:    router, kl<id> 10.77.0.1/24 (A side), kk<id> 10.79.0.1/24 (B side),
#              kr<id> 10.78.0.1/24 (towards server), ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#
# Usage: uplink_auto.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads

# The second uplink ("dock") and NetworkManager-like metrics.
UPB=kd$KVX_ID LAN_B_IF=kk$KVX_ID UPB_IP=10.79.0.2 LAN_B_IP=10.79.0.1
kvx_veth "$NS_HOST" "$UPB" "$NS_LAN" "$LAN_B_IF"
ip -n "$NS_HOST" addr add "$UPB_IP/24" dev "$UPB"
ip -n "$NS_LAN" addr add "$LAN_B_IP/24" dev "$LAN_B_IF"
ip -n "$NS_HOST" route del default
ip -n "$NS_HOST" route add default via "$LAN_IP" dev "$UP" metric 600

kvx_http_server
sha=$(kvx_random_file blob 1)
kvx_udp_server "$SRV_IP:5001"
kvx_server_sniffer

# "ct=N bind=M": kvx_ct flows and kvx_bind entries bound to external ADDR
# (raw bytes from bpftool: kvx_ct_val.ext_addr at offset 16; kvx_bind key
# addr at 4 (IN halves), value addr at 0 (OUT halves); abi.h).
entries_of() { # ADDR
	"$KVX_PY" - "$1" "$(kvx_pin_dir "$BR")" <<'EOF' 2>&1
import json, socket, subprocess, sys
a = list(socket.inet_aton(sys.argv[1]))
def dump(m):
    out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", sys.argv[2] + "/" + m],
                         capture_output=True, text=True, check=True).stdout
    return [([int(x, 16) for x in e["key"]], [int(x, 16) for x in e["value"]])
            for e in json.loads(out)]
ct = sum(1 for k, v in dump("kvx_ct") if v[16:20] == a)
bind = sum(1 for k, v in dump("kvx_bind") if k[4:8] == a or v[0:4] == a)
print(f"ct={ct} bind={bind}")
EOF
}

# Every move is timed from the route change (T0, taken before the `ip
# route` command) to the first new flow of guest1's prober (a new flow every
# 20 ms, started before the change) that left from the new address: "new
# flows leave from the new address at once" (README), asserted as within a
# second.
expect_uplink() { # DEV ADDR TAG T0_US: status, filters and a new flow name DEV/ADDR
	local dev=$1 addr=$2 other=$UP
	[[ $dev == "$UP" ]] && other=$UPB
	kvx_assert_probe_latency "$3: followed within a second" "$4" "$addr" 1000
	kvx_probe_stop
	local st; st=$(kvx_status_json)
	assert_eq "$3: status uplink" auto "$(kvx_json 'i["uplink"]' "$st")"
	assert_eq "$3: status uplink_device" "$dev" "$(kvx_json 'i["uplink_device"]' "$st")"
	assert_eq "$3: status uplink_addr" "$addr" "$(kvx_json 'i["uplink_addr"]' "$st")"
	assert_eq "$3: status devices" "$BR $dev" "$(kvx_json '" ".join(d["ifname"] for d in i["devices"] if d.get("role") != "port")' "$st")"
	assert_eq "$3: one bpf filter on $dev" 1 "$(kvx_tc_bpf_filters "$dev")"
	assert_eq "$3: no bpf filter on $other" 0 "$(kvx_tc_bpf_filters "$other")"
	assert_contains "$3: the config records auto" '"uplink": "auto"' "$(cat "$KVX_CFG")"
	assert_contains "$3: the config records the device" "\"uplink_device\": \"$dev\"" "$(cat "$KVX_CFG")"
}

kvx_step "attach --uplink auto: the default route is via A ($UP)"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
# IPv6 on (NAT66): the uplink's accept_ra goes 1 -> 2 while it is the
# uplink, and follows the default route to the other device.
nsx "$NS_HOST" sysctl -qw "net.ipv6.conf.$UP.accept_ra=1" "net.ipv6.conf.$UPB.accept_ra=1"
ip -n "$NS_HOST" -6 addr add fd42:77::1/64 dev "$BR" nodad
accept_ra() { nsx "$NS_HOST" sysctl -n "net.ipv6.conf.$1.accept_ra"; }
UP=auto kvx_attach_bg --ipv6 nat66 --subnet6 fd42:77::/64 || kvx_fatal "cannot attach --uplink auto"
assert_eq "accept_ra of A ($UP) while its uplink" 2 "$(accept_ra "$UP")"
t0=$(kvx_now_us) # the event: attached (the line is seen within 0.1 s)
assert_contains "attach line names the device" "uplink=auto device=$UP" "$(grep -m1 '^kvmxdp: attached' "$KVX_DAEMON_LOG")"
expect_uplink "$UP" "$UP_IP" "on A" "$t0"
r=$(kvx_udp_client "$NS_G2" --bind 40100 --msg old-flow --wait 1 "$SRV_IP:5001" || true)
assert_contains "long-lived UDP flow from A" "seen=$UP_IP:" "$r"
assert_eq "curl via A" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"
assert_eq "http client address via A" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
ea=$(entries_of "$UP_IP")
kvx_log "entries of $UP_IP: $ea"
[[ $ea =~ ct=([0-9]+)\ bind=([0-9]+) ]] || kvx_fatal "cannot read the maps: $ea"
n_ct=${BASH_REMATCH[1]} n_bind=${BASH_REMATCH[2]}
assert_ge "flows bound to A" "$n_ct" 2
assert_ge "bindings bound to A" "$n_bind" 2

kvx_step "the dock comes up: default via B ($UPB) metric 100"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
t0=$(kvx_now_us)
ip -n "$NS_HOST" route add default via "$LAN_B_IP" dev "$UPB" metric 100
expect_uplink "$UPB" "$UPB_IP" "dock" "$t0"
assert_eq "A's flows and bindings flushed" "ct=0 bind=0" "$(entries_of "$UP_IP")"
assert_contains "daemon log: the move" "default route moved to $UPB" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "accept_ra of B ($UPB), the uplink now" 2 "$(accept_ra "$UPB")"
assert_eq "accept_ra of A ($UP) back" 1 "$(accept_ra "$UP")"
r=$(kvx_udp_client "$NS_G2" --bind 40100 --msg old-flow-b --wait 1 "$SRV_IP:5001" || true)
assert_contains "the long-lived UDP flow continues from B" "seen=$UPB_IP:" "$r"
assert_eq "curl via B" "$sha" "$(kvx_curl_sha "$NS_G2" "http://$SRV_IP:8080/blob")"
assert_eq "http client address via B" "$UPB_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "guest2 ping via B" 5 "$(kvx_ping_received "$NS_G2" "$SRV_IP" 5)"

kvx_step "the dock goes away: back to A"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
t0=$(kvx_now_us)
ip -n "$NS_HOST" route del default via "$LAN_B_IP" dev "$UPB"
expect_uplink "$UP" "$UP_IP" "undock" "$t0"
assert_eq "accept_ra of A ($UP) after the undock" 2 "$(accept_ra "$UP")"
assert_eq "accept_ra of B ($UPB) back" 1 "$(accept_ra "$UPB")"
assert_eq "B's flows and bindings flushed" "ct=0 bind=0" "$(entries_of "$UPB_IP")"
assert_eq "curl via A again" "$sha" "$(kvx_curl_sha "$NS_G1" "http://$SRV_IP:8080/blob")"

kvx_step "the dock comes back while no daemon runs; 'attach --bridge BR' alone resumes in auto mode"
kvx_daemon_stop
r=$(kvx_udp_client "$NS_G1" --msg nodaemon --wait 1 "$SRV_IP:5001" || true)
assert_contains "no daemon: flows still leave via A" "seen=$UP_IP:" "$r"
ip -n "$NS_HOST" route add default via "$LAN_B_IP" dev "$UPB" metric 100
KVX_ATTACH_N=$((KVX_ATTACH_N + 1))
KVX_DAEMON_LOG=$KVX_TMP/daemon.$KVX_ATTACH_N.log
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
kvx_bg "$KVX_DAEMON_LOG" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR"
# shellcheck disable=SC2034 # lib.sh: kvx_daemon_stop / teardown
KVX_DAEMON_PID=$KVX_LAST_PID
kvx_wait_file_contains 15 "$KVX_DAEMON_LOG" "kvmxdp: attached" || kvx_fatal "attach --bridge alone: $(cat "$KVX_DAEMON_LOG")"
t0=$(kvx_now_us) # the event: attached (the line is seen within 0.1 s)
assert_contains "attach line: auto, the dock" "uplink=auto device=$UPB" "$(grep -m1 '^kvmxdp: attached' "$KVX_DAEMON_LOG")"
expect_uplink "$UPB" "$UPB_IP" "resume onto the dock" "$t0"
assert_eq "resume: A's flows and bindings flushed" "ct=0 bind=0" "$(entries_of "$UP_IP")"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
t0=$(kvx_now_us)
ip -n "$NS_HOST" route del default via "$LAN_B_IP" dev "$UPB"
expect_uplink "$UP" "$UP_IP" "undock again" "$t0"

kvx_step "a second bridge cannot follow the default route too, nor take the followed device"
BR2=kc$KVX_ID
kvx_bridge_add "$BR2" 192.168.200.1/24
before=$(kvx_host_state) cfg_before=$(cat "$KVX_CFG")
for up2 in auto "$UP"; do
	rc=0
	out=$(kvx attach --bridge "$BR2" --uplink "$up2" 2>&1) || rc=$?
	assert_ne "second bridge --uplink $up2: refused" 0 "$rc"
	assert_eq "second bridge --uplink $up2: one error line" 1 "$(grep -c '^kvmxdp: error: ' <<<"$out" || true)"
	assert_contains "second bridge --uplink $up2: names the first bridge" "'$BR'" "$out"
	assert_eq "second bridge --uplink $up2: nothing changed" "$before" "$(kvx_host_state)"
	assert_eq "second bridge --uplink $up2: config unchanged" "$cfg_before" "$(cat "$KVX_CFG")"
	kvx_assert_bridge_untouched "second bridge --uplink $up2" "$BR2"
done
ip -n "$NS_HOST" link del "$BR2"

kvx_step "no default route for a while (suspend, reconnect): the uplink stays on A"
r=$(kvx_udp_client "$NS_G2" --bind 40200 --msg sticky --wait 1 "$SRV_IP:5001" || true)
assert_contains "a UDP flow before the gap" "seen=$UP_IP:" "$r"
port_before=$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")
ea=$(entries_of "$UP_IP")
ip -n "$NS_HOST" route del default
sleep 1.5
st=$(kvx_status_json)
assert_eq "gap: status uplink_device" "$UP" "$(kvx_json 'i["uplink_device"]' "$st")"
assert_eq "gap: one bpf filter on A" 1 "$(kvx_tc_bpf_filters "$UP")"
assert_eq "gap: nothing flushed" "$ea" "$(entries_of "$UP_IP")"
r=$(kvx_udp_client "$NS_G1" --msg gap --wait 0.5 "$SRV_IP:5001" || true)
assert_empty "gap: no UDP reply without a default route" "$r"
ip -n "$NS_HOST" route add default via "$LAN_IP" dev "$UP" metric 600
r=$(kvx_udp_client "$NS_G2" --bind 40200 --msg sticky2 --wait 1 "$SRV_IP:5001" || true)
assert_eq "after the gap: the same external port" "$port_before" "$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")"
assert_contains "after the gap: from A" "seen=$UP_IP:" "$r"

kvx_step "attach --uplink auto without any default route: waits"
kvx_daemon_stop
out=$(kvx detach --bridge "$BR" 2>&1) || kvx_fatal "detach failed: $out"
assert_eq "detach: no filter on A" 0 "$(kvx_tc_bpf_filters "$UP")"
ip -n "$NS_HOST" route del default
UP=auto kvx_attach_bg || kvx_fatal "cannot attach --uplink auto without a default route"
assert_contains "attach line: waiting" "device=none (waiting for a default route)" "$(grep -m1 '^kvmxdp: attached' "$KVX_DAEMON_LOG")"
st=$(kvx_status_json)
assert_eq "waiting: status uplink" auto "$(kvx_json 'i["uplink"]' "$st")"
assert_eq "waiting: status uplink_device" null "$(kvx_json 'i["uplink_device"]' "$st")"
assert_eq "waiting: status uplink_addr" null "$(kvx_json 'i["uplink_addr"]' "$st")"
assert_contains "waiting: status warning" "uplink: none (waiting for a default route)" "$(kvx_json 'i["warnings"]' "$st")"
assert_contains "waiting: the table output says so" "waiting for a default route" "$(kvx status --bridge "$BR" 2>&1)"
assert_eq "waiting: no filter on A" 0 "$(kvx_tc_bpf_filters "$UP")"
assert_eq "waiting: no filter on B" 0 "$(kvx_tc_bpf_filters "$UPB")"
r=$(kvx_udp_client "$NS_G1" --msg waiting --wait 0.5 "$SRV_IP:5001" || true)
assert_empty "waiting: no UDP reply" "$r"
kvx_probe_start "$NS_G1" "$SRV_IP:5001"
t0=$(kvx_now_us)
ip -n "$NS_HOST" route add default via "$LAN_B_IP" dev "$UPB" metric 100
expect_uplink "$UPB" "$UPB_IP" "first route" "$t0"

kvx_step "detach removes the filter from the device it followed"
kvx_daemon_stop
out=$(kvx detach --bridge "$BR" 2>&1) || kvx_fatal "detach failed: $out"
assert_eq "no filter on B after detach" 0 "$(kvx_tc_bpf_filters "$UPB")"
assert_eq "no filter on A after detach" 0 "$(kvx_tc_bpf_filters "$UP")"
assert_empty "no pins after detach" "$(kvx_pins)"

srcs=$(kvx_server_sources)
kvx_log "sources seen by the server: $srcs"
assert_eq "the server saw only the two uplink addresses" "$UP_IP $UPB_IP" "$srcs"
kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
