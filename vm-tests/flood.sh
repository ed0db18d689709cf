#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/flood.sh: one guest's flood of new flows cannot stop the others
# (the per-guest flow quota).
#  - guest1 sends 120k new UDP flows (4 sockets x 30000 server ports) as
#    fast as it can, while guest2 downloads a 16 MB file over HTTP and keeps
#    opening new connections; guest1 also has a TCP stream running.  It
#    sends from four addresses of the subnet: its own and .21 on its own
#    MAC, .22 and .23 each from a MAC of its own (macvlans on guest1's
#    interface: two fresh MACs on guest1's bridge port).  The quota is the
#    guest's - its bridge port's - not the address's nor the MAC's, so four
#    addresses and three MACs do not get more quotas (four would be the
#    whole table).  The daemon is paused (SIGSTOP) from before the macvlans
#    exist until the flood is over: the datapath alone places the fresh
#    MACs on guest1's port (the port guard, at their first frame) and holds
#    the quota.
#  - guest1 is stopped at its quota (default: a quarter of the table): the
#    rest of its flood is counted DROP_GUEST_QUOTA, the table never fills
#    (no DROP_TABLE_FULL), guest2's download completes intact (sha256) and
#    every one of its new connections during the flood succeeds, guest1's
#    existing stream never misses an echo.
#  - once guest1's flood flows expired, the daemon's GC recounts the quota
#    and guest1 opens new connections again.
#  - contrast: resumed with --flow-quota 0, the same flood fills the table
#    (DROP_TABLE_FULL) and guest2's new connection fails.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   flood + TCP stream
#             (+ .21; macvlans kv2<id> .22, kv3<id> .23: the flood's extra sources)
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   download + new connections
#                                    bridge kb<id> (192.168.122.1/24), host ns
#                                    uplink ku<id> 10.77.0.2/24 <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 (HTTP :8080, TCP echo :9000)
#
# Usage: flood.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
sha=$(kvx_random_file big 16)
echo "small file" >"$KVX_TMP/www/small"
kvx_bg "$KVX_TMP/echo.log" ip netns exec "$NS_SRV" socat TCP-LISTEN:9000,bind="$SRV_IP",reuseaddr,fork PIPE
kvx_wait_tcp_listen 10 "$NS_SRV" 9000
FLOWGEN=("$KVX_PY" -u "$KVX_LIBDIR/flowgen.py")
curl_small() { nsx "$1" curl -sS --fail --max-time "${2:-3}" "http://$SRV_IP:8080/small" 2>/dev/null || true; }

kvx_step "attach: 65536 flows, default quota (16384 per guest), UDP timeout 20 s"
kvx_attach_bg --ct-size 65536 --timeouts udp=20,udp_stream=20,icmp=20 || kvx_fatal "cannot attach"
QUOTA=16384
# What the daemon gave the datapath (kvx_cfg), not what the test asked for:
# the default quota, a quarter of the table it created, and the timeouts.
assert_eq "kvx_ct created with 65536 entries" 65536 "$(kvx_json "i['conntrack']['max_entries']")"
assert_eq "kvx_cfg.flow_quota: the default, a quarter of the table" "$QUOTA" "$(kvx_cfg_field flow_quota)"
assert_eq "kvx_cfg.timeouts udp, udp_stream, icmp" "20 20 20" \
	"$(kvx_cfg_field timeouts.udp) $(kvx_cfg_field timeouts.udp_stream) $(kvx_cfg_field timeouts.icmp)"

kvx_bg "$KVX_TMP/stream.log" ip netns exec "$NS_G1" "${FLOWGEN[@]}" stream "$SRV_IP:9000" 80
STREAM_PID=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/stream.log" "ok 5 " || kvx_fatal "stream did not start: $(cat "$KVX_TMP/stream.log")"

kvx_step "flood from guest1 (four addresses, three MACs, one port) during guest2's download"
G1_EXTRA=(192.168.122.21 192.168.122.22 192.168.122.23)
ip -n "$NS_G1" addr add "${G1_EXTRA[0]}/24" dev "$G1_IF"
# .22 and .23 leave through macvlans of their own (fresh MACs on guest1's
# one bridge port), made just now: source-address rules pick their device.
MV=("kv2$KVX_ID" "kv3$KVX_ID")
# The daemon paused from before the macvlans exist until the flood is over:
# what places their MACs and keeps the quota is the datapath alone (the
# daemon would place them from the bridge's entries at its next look).
kill -STOP "$KVX_DAEMON_PID"
# Each interface answers ARP only for its own addresses (kg1 and the
# macvlans share the subnet): an address keeps its one MAC.
nsx "$NS_G1" sysctl -qw net.ipv4.conf.all.arp_ignore=1
for i in 0 1; do
	a=${G1_EXTRA[$((i + 1))]} t=$((100 + i))
	ip -n "$NS_G1" link add "${MV[$i]}" link "$G1_IF" type macvlan mode bridge
	ip -n "$NS_G1" addr add "$a/32" dev "${MV[$i]}"
	ip -n "$NS_G1" link set "${MV[$i]}" up
	ip -n "$NS_G1" route add 192.168.122.0/24 dev "${MV[$i]}" src "$a" table "$t"
	ip -n "$NS_G1" route add default via 192.168.122.1 dev "${MV[$i]}" src "$a" table "$t"
	ip -n "$NS_G1" rule add from "$a" table "$t"
	# The flood is their first traffic (no wait for the daemon): the
	# port guard places a new MAC on its port at its first frame.
done
q0=$(kvx_counter DROP_GUEST_QUOTA)
full0=$(kvx_counter DROP_TABLE_FULL)
# The download takes a few seconds (rate-limited) so that the flood runs
# inside it.
kvx_bg "$KVX_TMP/dl.log" ip netns exec "$NS_G2" curl -sS --fail --max-time 60 --limit-rate 3M \
	-o "$KVX_TMP/big.dl" "http://$SRV_IP:8080/big"
DL_PID=$KVX_LAST_PID
sleep 1
kvx_bg "$KVX_TMP/flood.log" ip netns exec "$NS_G1" timeout 60 "${FLOWGEN[@]}" burst "$SRV_IP" 1024 31023 --sports 4 \
	--src "$G1_IP,$(IFS=,; echo "${G1_EXTRA[*]}")"
FLOOD_PID=$KVX_LAST_PID
# guest2's new connections while the flood runs.
ok=0 bad=0
while kill -0 "$FLOOD_PID" 2>/dev/null; do
	if [[ $(curl_small "$NS_G2" 3) == "small file" ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
	sleep 0.1
done
wait "$FLOOD_PID" || kvx_fail "flood generator failed: $(cat "$KVX_TMP/flood.log")"
P1_IDX=$(ip -n "$NS_HOST" -o link show "$P1_IF" | cut -d: -f1)
placed="$(kvx_brport_of "$(kvx_if_mac "$NS_G1" "${MV[0]}")") $(kvx_brport_of "$(kvx_if_mac "$NS_G1" "${MV[1]}")")"
q=$(($(kvx_counter DROP_GUEST_QUOTA) - q0))
kill -CONT "$KVX_DAEMON_PID"
assert_eq "kvx_brport: both macvlan MACs on guest1's port $P1_IF, placed by the port guard (the daemon paused)" \
	"$P1_IDX $P1_IDX" "$placed"
kvx_log "flood: $(cat "$KVX_TMP/flood.log"); guest2 connections during it: ok=$ok failed=$bad"
sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' "$KVX_TMP/flood.log")
assert_ge "guest1 sent >= 100k new flows" "${sent:-0}" 100000
assert_ge "guest2 opened new connections during the flood" "$ok" 1
assert_eq "none of guest2's new connections failed" 0 "$bad"
assert_eq "guest2's new connection right after the flood" "small file" "$(curl_small "$NS_G2" 3)"
# Who owns each flood address (kvx_guest): guest1's MAC its own and .21,
# each macvlan's its own.
assert_eq "the flood's addresses are bound to guest1's MAC, guest1's, mv2's, mv3's" \
	"$(kvx_if_mac "$NS_G1" "$G1_IF") $(kvx_if_mac "$NS_G1" "$G1_IF") $(kvx_if_mac "$NS_G1" "${MV[0]}") $(kvx_if_mac "$NS_G1" "${MV[1]}")" \
	"$(bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_guest" | "$KVX_PY" -c '
import json, sys
owner = {}
for e in json.load(sys.stdin):
    v = e["formatted"] if "formatted" in e else e
    k = v["key"] if isinstance(v["key"], int) else int.from_bytes(bytes(int(x, 16) for x in v["key"]), "little")
    a = ".".join(str(k >> s & 255) for s in (0, 8, 16, 24))
    m = v["value"]["mac"]
    owner[a] = ":".join("%02x" % (int(x, 16) if isinstance(x, str) else x) for x in m)
print(" ".join(owner.get(a, "none") for a in sys.argv[1].split(",")))' \
		"$G1_IP,$(IFS=,; echo "${G1_EXTRA[*]}")")"
assert_ge "the flood hit guest1's one quota (four addresses, three MACs; the daemon paused): DROP_GUEST_QUOTA" "$q" $((sent - QUOTA - 200))
assert_le "...and only beyond the quota" "$q" $((sent - QUOTA + 200))
assert_eq "the table never filled (no DROP_TABLE_FULL)" "$full0" "$(kvx_counter DROP_TABLE_FULL)"
entries=$(kvx_json "i['conntrack']['entries']")
assert_le "conntrack entries: about guest1's quota plus guest2's" "$entries" $((QUOTA + 300))
assert_ge "conntrack entries: guest1's quota is used" "$entries" $((QUOTA - 200))
assert_eq "guest1 (at its quota) cannot open a new connection" "" "$(curl_small "$NS_G1" 2)"

if wait "$DL_PID"; then
	assert_eq "guest2's download intact (sha256)" "$sha" "$(sha256sum "$KVX_TMP/big.dl" | cut -d' ' -f1)"
else
	kvx_fail "guest2's download failed: $(cat "$KVX_TMP/dl.log")"
fi
assert_eq "guest1's stream never failed during the flood" 0 "$(grep -c '^fail' "$KVX_TMP/stream.log" || true)"

kvx_step "guest1's quota comes back once its flows expired (GC recount)"
# UDP timeout 20 s, GC every 5 s (and the datapath's own reclaim at the
# quota): the flood's flows are gone within ~25 s of the flood.
kvx_wait_for 50 "guest1 opens a new connection again" \
	bash -c "[[ \$(ip netns exec '$NS_G1' curl -sS --fail --max-time 2 'http://$SRV_IP:8080/small' 2>/dev/null) == 'small file' ]]" ||
	kvx_fail "guest1 still over its quota after its flows expired"
drained() { (($(kvx_json "i['conntrack']['entries']") <= 50)); }
kvx_wait_for 30 "the GC drains the flood's flows" drained &&
	kvx_pass "conntrack drained ($(kvx_json "i['conntrack']['entries']") entries)"
n0=$(awk '$1 == "ok" { n = $2 } END { print n + 0 }' "$KVX_TMP/stream.log")
sleep 1
assert_ge "guest1's stream goes on" "$(awk '$1 == "ok" { n = $2 } END { print n + 0 }' "$KVX_TMP/stream.log")" $((n0 + 3))
kvx_kill_pid "$STREAM_PID"
assert_eq "guest1's stream never failed" 0 "$(grep -c '^fail' "$KVX_TMP/stream.log" || true)"

kvx_step "a flood of made-up MACs from guest1's port leaves room for guest2's new MAC"
# The daemon paused again: the datapath places at most a budget of new MACs
# a second per port (abi.h kvx_brplace) and drops the frames of the others
# (DROP_MAC_NEW: let on unplaced, they would count in the slot all unplaced
# MACs share), so 6000 MACs from one port neither take kvx_brport
# nor the bridge's forwarding database, and guest2's fresh MAC is placed on
# its own port at its first frame.
P2_IDX=$(ip -n "$NS_HOST" -o link show "$P2_IF" | cut -d: -f1)
on1=$(kvx_brport_on "$P1_IDX")
new0=$(kvx_counter DROP_MAC_NEW)
MV4=kv4$KVX_ID G2_MV_IP=192.168.122.24
kill -STOP "$KVX_DAEMON_PID"
out=$(nsx "$NS_G1" "$KVX_PY" "$KVX_LIBDIR/frame_peer.py" macflood "$G1_IF" \
	--dst-mac "$(kvx_if_mac "$NS_HOST" "$BR")" --count 6000)
nsx "$NS_G2" sysctl -qw net.ipv4.conf.all.arp_ignore=1
ip -n "$NS_G2" link add "$MV4" link "$G2_IF" type macvlan mode bridge
ip -n "$NS_G2" addr add "$G2_MV_IP/32" dev "$MV4"
ip -n "$NS_G2" link set "$MV4" up
ip -n "$NS_G2" route add 192.168.122.0/24 dev "$MV4" src "$G2_MV_IP" table 104
ip -n "$NS_G2" route add default via 192.168.122.1 dev "$MV4" src "$G2_MV_IP" table 104
ip -n "$NS_G2" rule add from "$G2_MV_IP" table 104
r=$(nsx "$NS_G2" curl -sS --fail --max-time 3 --interface "$G2_MV_IP" "http://$SRV_IP:8080/small" 2>&1 || true)
mv4mac=$(kvx_if_mac "$NS_G2" "$MV4")
placed=$(kvx_brport_of "$mv4mac")
on1b=$(kvx_brport_on "$P1_IDX")
learnt=$(bridge -n "$NS_HOST" fdb show br "$BR" | grep -c " dev $P1_IF " || true)
kill -CONT "$KVX_DAEMON_PID"
new=$(($(kvx_counter DROP_MAC_NEW) - new0))
kvx_log "macflood: $out; DROP_MAC_NEW +$new; the bridge has $learnt entries on $P1_IF; kvx_brport on it: $on1 -> $on1b"
assert_ge "the datapath placed a budget of the flood's MACs (16 a second)" $((on1b - on1)) 16
assert_le "... and no more (a window or two)" $((on1b - on1)) 48
assert_ge "the others' frames dropped at the port: DROP_MAC_NEW" "$new" $((6000 - 48))
assert_le "the bridge learnt only the placed ones" "$learnt" $((on1b + 8))
assert_eq "guest2's fresh MAC on its port $P2_IF (placed by the port guard, the daemon paused)" "$P2_IDX" "$placed"
assert_eq "guest2's request from its fresh MAC" "small file" "$r"
sleep 2 # the daemon's look
assert_eq "guest2's fresh MAC still on its port" "$P2_IDX" "$(kvx_brport_of "$mv4mac")"
assert_eq "guest1's own MAC still on its port" "$P1_IDX" "$(kvx_brport_of "$(kvx_if_mac "$NS_G1" "$G1_IF")")"

kvx_step "contrast: without a quota (--flow-quota 0) the same flood fills the table"
kvx_daemon_stop
kvx_attach_bg --flow-quota 0 || kvx_fatal "cannot resume with --flow-quota 0"
assert_contains "config records --flow-quota 0" '"flow_quota": 0' "$(cat "$KVX_CFG")"
assert_eq "kvx_cfg.flow_quota 0: no quota in the datapath" 0 "$(kvx_cfg_field flow_quota)"
# An empty table first: a closed TCP flow left from above (guest1's stream,
# killed) gives way to a new flow in a full table (the early drop), which
# would let guest2's one connection below through whatever the quota does.
assert_ok "conntrack flush before the flood" kvx conntrack flush --bridge "$BR"
full0=$(kvx_counter DROP_TABLE_FULL)
q0=$(kvx_counter DROP_GUEST_QUOTA)
out=$(nsx "$NS_G1" timeout 60 "${FLOWGEN[@]}" burst "$SRV_IP" 1024 31023 --sports 4)
kvx_log "flood: $out"
sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' <<<"$out")
assert_ge "the table filled: DROP_TABLE_FULL" $(($(kvx_counter DROP_TABLE_FULL) - full0)) $((sent - 65536 - 500))
assert_eq "no quota drops" "$q0" "$(kvx_counter DROP_GUEST_QUOTA)"
assert_eq "guest2's new connection now fails: the quota was what protected it" "" "$(curl_small "$NS_G2" 2)"

kvx_finish
