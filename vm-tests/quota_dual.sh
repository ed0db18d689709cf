#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/quota_dual.sh: one flow quota for both families, and closed
# flows that give way across them.  A dual-stack guest churns short TCP
# connections over one family until its quota (--flow-quota 64) is full of
# closed flows (TIME_WAIT for 4 minutes); the datapath's reclaim makes room
# only in the table of the family it inserts into, so the daemon's GC
# relieves a guest near its quota of its closed flows in both tables
# (control/gc.hpp quota_relief).  Its first connection over the other
# family must then get through within a GC tick (5 s: the SYN's own
# retransmissions at 1 s and 3 s carry it), with its bytes echoed, and not
# 4 minutes later.  Both ways: IPv4 full then IPv6, IPv6 full then IPv4.
#
#   guest1 ns (kg1<id> 192.168.122.11, fd42:96::11) --+
#                                    bridge kb<id> (.1, fd42:96::1), host ns, kvmxdp
#                                    uplink ku<id> 10.77.0.2, SLAAC in 2001:db8:1::/64
#   lan ns:    router kl<id> 10.77.0.1 / 2001:db8:1::1 (radvd), kr<id>
#   server ns: ks<id> 10.78.0.2 / 2001:db8:78::2 (echo :9000 on both)
#
# Usage: quota_dual.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools radvd
kvx_topology_up
FLOWGEN=("$KVX_PY" -u "$KVX_LIBDIR/flowgen.py")

LAN6=2001:db8:1::1 RTR6=2001:db8:78::1 SRV6=2001:db8:78::2
BR6=fd42:96::1 G1_6=fd42:96::11
kvx_step "IPv6: SLAAC on the uplink, the bridge's prefix, guest1's address"
kvx_lan6_up "$LAN6" "$RTR6" "$SRV6"
kvx_guest6_up "$BR6" "$G1_6"
ip -n "$NS_G1" -6 route add default via "$BR6" dev "$G1_IF"
kvx_lan6_radvd 2001:db8:1::/64
kvx_bg "$KVX_TMP/echo4.log" ip netns exec "$NS_SRV" "${FLOWGEN[@]}" serve "$SRV_IP" 9000
kvx_bg "$KVX_TMP/echo6.log" ip netns exec "$NS_SRV" "${FLOWGEN[@]}" serve "$SRV6" 9000
kvx_wait_file_contains 10 "$KVX_TMP/echo4.log" listening || true
kvx_wait_file_contains 10 "$KVX_TMP/echo6.log" listening || true

QUOTA=64
kvx_attach_bg --flow-quota "$QUOTA" || kvx_fatal "cannot attach with --flow-quota $QUOTA"
assert_eq "status: NAT66" nat66 "$(kvx_json 'i["ipv6_mode"]')"
assert_eq "kvx_cfg.flow_quota" "$QUOTA" "$(kvx_cfg_field flow_quota)"
must kvx_wait_for 10 "guest1 reaches the server over IPv6 (NAT66)" \
	bash -c "[[ \$(ip netns exec '$NS_G1' ping -6 -c1 -W1 '$SRV6' 2>/dev/null | grep -c ' 0% packet loss') == 1 ]]"

flows() { kvx_map_entries "$1" | "$KVX_PY" -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
# Is table $1 back under 7/8 of the quota (the daemon's relief)?
relieved() { (($(flows "$1") < QUOTA - QUOTA / 8)); }
# One family full: 200 connections at 15 a second (the guest closes first:
# its TIME_WAIT), each closed flow quiet for 2 s before it gives way to the
# guest's next (64 / 15 a second = 4.3 s: 2 s left for the connections
# themselves, which a loaded machine stretches; at 20 a second a run beside
# a build refused one).  Then the daemon stops (the datapath stays) and a
# burst of twice the quota fills it with closed flows, the newest not quiet
# yet: a connection over the other family is refused (DROP_GUEST_QUOTA: one
# quota for both, and the datapath makes room only in its own family's
# table).  The daemon back, the other family gets through within 2 s (the
# burst's flows quiet) and a GC tick: tried every 0.2 s (or at once, in
# the place of a closed flow of its own family).  Once the relief took the
# full family's closed flows, 6 more at once (it leaves at least an eighth
# of the quota).
dual() { # FULL-FAMILY-DST OTHER-DST LABEL-FULL LABEL-OTHER FULL-TABLE
	local out t0 ms ok=0 d0
	out=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$1" 200 --rate 15 --parallel 8 | tail -1 || true)
	kvx_log "guest1 over $3: $out"
	assert_contains "$3: 200 short connections through a quota of $QUOTA, bytes echoed" \
		"ok=200 fail=0" "$out"
	d0=$(kvx_counter DROP_GUEST_QUOTA)
	# The daemon stopped before the burst: its relief would otherwise
	# take the burst's flows that are quiet by the time the burst is
	# over (a loaded machine makes the burst longer than 2 s).
	kvx_daemon_stop
	nsx "$NS_G1" "${FLOWGEN[@]}" churn "$1" $((2 * QUOTA)) --parallel 32 --timeout 0.3 >/dev/null 2>&1 || true
	assert_ge "$3: the quota is full (connections refused: DROP_GUEST_QUOTA)" \
		"$(kvx_counter DROP_GUEST_QUOTA)" $((d0 + 1))
	kvx_log "flows now: kvx_ct $(flows kvx_ct), kvx_ct6 $(flows kvx_ct6); drops: $(kvx_drops)"
	d0=$(kvx_counter DROP_GUEST_QUOTA)
	out=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$2" 1 --parallel 1 --timeout 1.5 | tail -1 || true)
	assert_contains "$4, no daemon: refused (the one quota is full)" "ok=0 fail=1" "$out"
	assert_ge "... by the quota (DROP_GUEST_QUOTA)" "$(kvx_counter DROP_GUEST_QUOTA)" $((d0 + 1))
	kvx_attach_bg --flow-quota "$QUOTA" || kvx_fatal "cannot resume with --flow-quota $QUOTA"
	t0=$(date +%s%N)
	while (($(date +%s%N) - t0 < 12000000000)); do
		out=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$2" 1 --parallel 1 --timeout 0.5 | tail -1 || true)
		if [[ $out == *"ok=1 fail=0"* ]]; then
			ok=1
			break
		fi
		sleep 0.2
	done
	ms=$((($(date +%s%N) - t0) / 1000000))
	kvx_log "guest1's first $4 connection through $ms ms after the daemon's start; drops: $(kvx_drops)"
	assert_eq "$4: a connection of the guest gets through, its bytes echoed" 1 "$ok"
	assert_le "... within 2 s and a GC tick of the daemon's start (ms)" "$ms" 8500
	# That one may have come in at once, in the place of a closed flow of
	# its own family (the datapath's reclaim); the full family's closed
	# flows go with the relief, at the daemon's next tick.
	must kvx_wait_for 8 "the relief: $3's closed flows gone" relieved "$5"
	out=$(nsx "$NS_G1" "${FLOWGEN[@]}" churn "$2" 6 --parallel 2 | tail -1 || true)
	assert_contains "$4: 6 more connections at once, bytes echoed" "ok=6 fail=0" "$out"
	assert_contains "... none waiting for a retransmitted SYN" "slow=0" "$out"
}

kvx_step "guest1's quota full of IPv4 closed flows: its IPv6 connections still get through"
dual "$SRV_IP:9000" "$SRV6:9000" IPv4 IPv6 kvx_ct

kvx_step "guest1's quota full of IPv6 closed flows: its IPv4 connections still get through"
dual "$SRV6:9000" "$SRV_IP:9000" IPv6 IPv4 kvx_ct6

kvx_finish
