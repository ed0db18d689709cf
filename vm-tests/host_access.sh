#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/host_access.sh: the host itself reaches guests through their
# mapped addresses (hairpin from the host): TCP to a 1:1 address
# and to a forwarded port of the uplink's own address, UDP to a forwarded
# port, with getpeername()/recvfrom() showing the mapped address.  The
# cgroup hooks that do it act only in the instance's network namespace
# (a client in another namespace still goes through the datapath), follow
# `map del`, are replaced in place by a resumed attach, leave nothing after
# a failed attach and go with detach.
#
#   guest1 ns (192.168.122.11, HTTP :80) --+
#   guest2 ns (192.168.122.12, HTTP :80,  +-- bridge (192.168.122.1)   host ns: kvmxdp,
#              UDP echo :5353)            |                            uplink 10.77.0.2
#                                                 1:1     10.77.0.101 -> guest1
#                                                 forward uplink:8080 -> guest2:80 tcp
#                                                 forward uplink:5353 -> guest2:5353 udp
#   lan ns, server ns: as in lib.sh
#
# Usage: host_access.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools bpftool
kvx_topology_up
kvx_guest_http_servers
kvx_bg "$KVX_TMP/g2.udp.log" ip netns exec "$NS_G2" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" \
	serve 0.0.0.0:5353
kvx_wait_file_contains 10 "$KVX_TMP/g2.udp.log" serving

EXT1=10.77.0.101
BR_IP=192.168.122.1

# getpeername() of a TCP connection from NS to ADDR:PORT ("" on failure).
peername() {
	nsx "$1" "$KVX_PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
a, p = s.getpeername()
print(f"{a}:{p}")' "$2" "$3" 2>/dev/null || true
}

kvx_step "before any mapping the host cannot reach $EXT1"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_eq "host -> $EXT1:80 (unmapped)" "" "$(kvx_http_get "$NS_HOST" "http://$EXT1/who")"

hooks=$(kvx_json '" ".join(sorted(h["hook"] + "=" + h["prog"] for h in i["host_access"]))')
assert_eq "status lists the eight host hooks (IPv4 and IPv6)" \
	"cgroup/connect4=kvx_host_conn4 cgroup/connect6=kvx_host_conn6 cgroup/getpeername4=kvx_host_peer4 cgroup/getpeername6=kvx_host_peer6 cgroup/recvmsg4=kvx_host_recv4 cgroup/recvmsg6=kvx_host_recv6 cgroup/sendmsg4=kvx_host_send4 cgroup/sendmsg6=kvx_host_send6" \
	"$hooks"
ids1=$(kvx_json '" ".join(str(h["prog_id"]) for h in i["host_access"])')

assert_ok "map add $EXT1 $G1_IP" kvx map add "$EXT1" "$G1_IP"
assert_ok "map add uplink:8080 $G2_IP:80 --proto tcp" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
assert_ok "map add uplink:5353 $G2_IP:5353 --proto udp" kvx map add uplink:5353 "$G2_IP:5353" --proto udp

kvx_step "host -> guests through the mappings"
hair0=$(kvx_counter XLATE_HAIRPIN)
in0=$(kvx_counter XLATE_IN)
assert_eq "host -> $EXT1:80 reaches guest1" guest1 "$(kvx_http_get "$NS_HOST" "http://$EXT1/who")"
assert_eq "guest1 sees the host's bridge address" "$BR_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_eq "host -> $UP_IP:8080 reaches guest2:80" guest2 "$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"
assert_eq "guest2 sees the host's bridge address" "$BR_IP" "$(kvx_http_last_client "$KVX_TMP/g2.http.log")"
assert_eq "getpeername() shows the 1:1 address" "$EXT1:80" "$(peername "$NS_HOST" "$EXT1" 80)"
assert_eq "getpeername() shows the forwarded port" "$UP_IP:8080" "$(peername "$NS_HOST" "$UP_IP" 8080)"
udp=$(kvx_udp_client "$NS_HOST" --msg hostping --wait 2 "$UP_IP:5353" || true)
assert_contains "UDP reply reported from the forwarded endpoint" "from=$UP_IP:5353 " "$udp"
assert_contains "UDP reply carries the payload, guest saw the bridge address" \
	"data=seen=$BR_IP:" "$udp"
assert_contains "UDP payload intact" "data=hostping" "$udp"
assert_eq "the datapath translated none of it (no hairpin)" "$hair0" "$(kvx_counter XLATE_HAIRPIN)"
assert_eq "the datapath translated none of it (no inbound)" "$in0" "$(kvx_counter XLATE_IN)"

kvx_step "the hooks act only in the instance's namespace"
# The server reaches the forward through the LAN and the datapath: if the
# hooks rewrote its connect() too, it would aim at a guest address it has
# no route to.
assert_eq "server -> $UP_IP:8080 reaches guest2" guest2 "$(kvx_http_get "$NS_SRV" "http://$UP_IP:8080/who")"
assert_eq "guest2 sees the server's own address" "$SRV_IP" "$(kvx_http_last_client "$KVX_TMP/g2.http.log")"
assert_eq "LAN -> $EXT1:80 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_eq "guest1 sees the LAN host's address" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_eq "guest2's own connect() is untouched (1:1 hairpin by the datapath)" guest1 \
	"$(kvx_http_get "$NS_G2" "http://$EXT1/who")"
assert_eq "guest1 sees guest2's 'outside' address on the hairpin" "$UP_IP" \
	"$(kvx_http_last_client "$KVX_TMP/g1.http.log")"

kvx_step "map del stops host access at once"
assert_ok "map del $EXT1 $G1_IP" kvx map del "$EXT1" "$G1_IP"
assert_eq "host -> $EXT1:80 after del" "" "$(kvx_http_get "$NS_HOST" "http://$EXT1/who")"
assert_eq "host -> $UP_IP:8080 still works" guest2 "$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"
assert_ok "map add $EXT1 $G1_IP again" kvx map add "$EXT1" "$G1_IP"

kvx_step "daemon killed, attach resumes: the links get the new programs in place"
kill -KILL "$KVX_DAEMON_PID"
wait "$KVX_DAEMON_PID" 2>/dev/null || true
KVX_DAEMON_PID=""
kvx_attach_bg || kvx_fatal "cannot resume"
ids2=$(kvx_json '" ".join(str(h["prog_id"]) for h in i["host_access"])')
assert_eq "still eight host hooks" 8 "$(wc -w <<<"$ids2")"
assert_ne "new programs on the links" "$ids1" "$ids2"
for id in $ids1; do
	assert_fails "old program $id is gone" bpftool prog show id "$id"
done
assert_eq "host -> $EXT1:80 after resume" guest1 "$(kvx_http_get "$NS_HOST" "http://$EXT1/who")"
assert_eq "host -> $UP_IP:8080 after resume" guest2 "$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"

kvx_step "detach removes the hooks; a failed attach leaves none"
kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
for id in $ids2; do
	assert_fails "program $id is gone after detach" bpftool prog show id "$id"
done
assert_eq "host -> $UP_IP:8080 after detach" "" "$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"
out=$(KVMXDP_FAILPOINT=host_hooks ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" \
	attach --bridge "$BR" --uplink "$UP" 2>&1) && kvx_fail "attach with failpoint succeeded"
assert_contains "failpoint hit" "injected failure at host_hooks" "$out"
assert_eq "no pins after the failed attach" "" "$(kvx_pins)"
# The mappings the detach kept would be live if a hook had leaked.
assert_eq "host -> $UP_IP:8080 after the failed attach" "" \
	"$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"

kvx_step "attach again: mappings and host access come back"
kvx_attach_bg || kvx_fatal "cannot re-attach"
assert_eq "host -> $EXT1:80 after re-attach" guest1 "$(kvx_http_get "$NS_HOST" "http://$EXT1/who")"
assert_eq "host -> $UP_IP:8080 after re-attach" guest2 "$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"

kvx_finish
