#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/nat.sh: NAT behaviour (RFC 4787) with real UDP sockets:
#  - two guests using the SAME source port towards the same server port each
#    get their own reply (port collision resolved by the binding table);
#  - the same for TCP (curl --local-port) and ICMP echo (same identifier);
#  - a guest port inside the NAT range is kept (port preservation);
#  - endpoint-independent mapping: one guest socket seen with one external
#    address:port by every server address/port (REQ-1);
#  - address-and-port-dependent filtering by default: a datagram from a server
#    port the guest never contacted does not reach it: it is the host's
#    (PASS_HOST), as under iptables MASQUERADE;
#  - `attach --eif` (endpoint-independent filtering, "full cone"): it arrives;
#  - `--nat-ports` with 2 ports: a third guest socket is refused
#    (DROP_PORTS_EXHAUSTED), the first two keep working;
#  - `--ct-size 8 --bind-size 16`: flows beyond the tables' room are refused
#    (DROP_TABLE_FULL), the ones inside keep working.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), kr<id> 10.78.0.1/24 (towards server),
#              ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24 + 10.78.0.3/24, default via 10.78.0.1;
#              no route to 192.168.122.0/24
#              UDP peers: 10.78.0.2:5001, 10.78.0.2:5002, 10.78.0.3:5001;
#              "poke" socket 10.78.0.2:5003 (never contacted by a guest)
#
# Usage: nat.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
SRV_IP_B=10.78.0.3
ip -n "$NS_SRV" addr add "$SRV_IP_B/24" dev "$SRV_IF"
kvx_udp_server "$SRV_IP:5001" "$SRV_IP:5002" "$SRV_IP_B:5001" --poke "$SRV_IP:5003"
kvx_http_server
sha=$(kvx_random_file blob 2)
kvx_server_sniffer

# Stop the daemon and remove the datapath, to attach again with other options.
reattach() {
	kvx_daemon_stop
	local out rc=0
	out=$(kvx detach --bridge "$BR" 2>&1) || rc=$?
	((rc == 0)) || kvx_fatal "kvmxdp detach failed ($rc): $out"
	kvx_attach_bg "$@" || kvx_fatal "cannot attach with: $*"
}

kvx_step "attach (default filtering)"
kvx_attach_bg || kvx_fatal "cannot attach"

kvx_step "two guests, same source port, same server port: each gets its own reply"
# socat: connected UDP socket with a fixed source port; waits 2 s for the reply.
pids=()
for g in 1 2; do
	ns_var=NS_G$g
	kvx_bg "$KVX_TMP/socat.$g" bash -c "echo from-guest$g | ip netns exec ${!ns_var} \
		socat -t 2 -T 2 STDIO UDP4:$SRV_IP:5001,sourceport=40000,reuseaddr"
	pids+=("$KVX_LAST_PID")
done
wait "${pids[@]}" || true
r1=$(cat "$KVX_TMP/socat.1") r2=$(cat "$KVX_TMP/socat.2")
kvx_log "guest1 got: $r1"
kvx_log "guest2 got: $r2"
assert_contains "guest1's reply carries guest1's payload" "data=from-guest1" "$r1"
assert_contains "guest2's reply carries guest2's payload" "data=from-guest2" "$r2"
assert_not_contains "guest1 did not get guest2's reply" "from-guest2" "$r1"
assert_not_contains "guest2 did not get guest1's reply" "from-guest1" "$r2"
e1=$(sed -n 's/.*seen=\([0-9.:]*\) .*/\1/p' <<<"$r1")
e2=$(sed -n 's/.*seen=\([0-9.:]*\) .*/\1/p' <<<"$r2")
assert_eq "guest1's external address" "$UP_IP" "${e1%:*}"
assert_eq "guest2's external address" "$UP_IP" "${e2%:*}"
assert_ne "the two guests got different external ports" "$e1" "$e2"

kvx_step "TCP: two guests, same source port, same server port"
pids=()
for g in 1 2; do
	ns_var=NS_G$g
	kvx_bg "$KVX_TMP/tcp.$g" ip netns exec "${!ns_var}" curl -sS --fail --max-time 15 \
		--local-port 45000 -o "$KVX_TMP/tcp.$g.blob" "http://$SRV_IP:8080/blob"
	pids+=("$KVX_LAST_PID")
done
rc1=0 rc2=0
wait "${pids[0]}" || rc1=$?
wait "${pids[1]}" || rc2=$?
assert_eq "guest1 curl from port 45000 (exit code; $(cat "$KVX_TMP/tcp.1"))" 0 "$rc1"
assert_eq "guest2 curl from port 45000 (exit code; $(cat "$KVX_TMP/tcp.2"))" 0 "$rc2"
assert_eq "guest1's download intact" "$sha" "$(sha256sum <"$KVX_TMP/tcp.1.blob" 2>/dev/null | cut -d' ' -f1)"
assert_eq "guest2's download intact" "$sha" "$(sha256sum <"$KVX_TMP/tcp.2.blob" 2>/dev/null | cut -d' ' -f1)"

kvx_step "ICMP echo: two guests, same identifier"
pids=()
for g in 1 2; do
	ns_var=NS_G$g
	kvx_bg "$KVX_TMP/echo.$g" ip netns exec "${!ns_var}" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" \
		echo "$SRV_IP" --id 4242 --payload "from-guest$g" --count 3
	pids+=("$KVX_LAST_PID")
done
wait "${pids[@]}" || true
for g in 1 2; do
	o=$(cat "$KVX_TMP/echo.$g")
	kvx_log "guest$g echo replies: $(tr '\n' '|' <<<"$o")"
	assert_eq "guest$g: 3 replies with its own payload" 3 "$(grep -c "payload=from-guest$g" <<<"$o" || true)"
	assert_not_contains "guest$g: no reply meant for the other guest" "from-guest$((3 - g))" "$o"
	assert_not_contains "guest$g: identifier restored to 4242" "id=" "$(grep -v 'id=4242 ' <<<"$o" || true)"
	assert_not_contains "guest$g: ICMP checksums valid" "csum=bad" "$o"
done

kvx_step "port preservation inside the NAT range"
lo=$(kvx_json 'i["nat_port_lo"]') hi=$(kvx_json 'i["nat_port_hi"]')
# The default pool has a hole, the host's ephemeral range: a port below it.
slo=$(kvx_json 'i["nat_pool"]["nat_skip_lo"]') shi=$(kvx_json 'i["nat_pool"]["nat_skip_hi"]')
kvx_log "NAT port range: $lo-$hi without $slo-$shi"
if ((slo > lo)); then keep=$((lo + (slo - lo) / 2)); else keep=$((lo + (hi - lo) / 2)); fi
r=$(kvx_udp_client "$NS_G2" --bind "$keep" --msg keep --wait 1 "$SRV_IP:5001" || true)
assert_contains "guest port $keep (inside $lo-$hi) kept" "seen=$UP_IP:$keep " "$r"
r=$(kvx_udp_client "$NS_G1" --bind "$keep" --msg keep2 --wait 1 "$SRV_IP:5001" || true)
p=$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")
assert_ne "the same port from the other guest gets another external port" "$keep" "${p:-none}"
if [[ $p =~ ^[0-9]+$ ]] && ((p >= lo && p <= hi)) && ! ((slo && p >= slo && p <= shi)); then
	kvx_pass "external port $p inside $lo-$hi, not in $slo-$shi"
else
	kvx_fail "external port '$p' outside the NAT pool $lo-$hi without $slo-$shi"
fi

kvx_step "endpoint-independent mapping: one socket, three server endpoints"
r=$(kvx_udp_client "$NS_G1" --bind 40001 --msg eim --wait 1 \
	"$SRV_IP:5001" "$SRV_IP:5002" "$SRV_IP_B:5001" || true)
kvx_log "replies: $(tr '\n' '|' <<<"$r")"
assert_eq "replies from all three server endpoints" 3 "$(grep -c 'data=seen=' <<<"$r" || true)"
seen=$(sed -n 's/.*seen=\([0-9.:]*\) .*/\1/p' <<<"$r" | sort -u)
assert_eq "one external address:port for every destination" 1 "$(grep -c . <<<"$seen" || true)"
assert_eq "external address is the uplink's" "$UP_IP" "${seen%%:*}"

kvx_step "address-and-port-dependent filtering (default)"
f0=$(kvx_counter PASS_HOST)
r=$(kvx_udp_client "$NS_G1" --bind 40002 --msg poke --wait 1 "$SRV_IP:5001" || true)
kvx_log "replies: $(tr '\n' '|' <<<"$r")"
assert_contains "reply from the contacted endpoint arrives" "from=$SRV_IP:5001 data=seen=" "$r"
assert_not_contains "datagram from the uncontacted port 5003 is filtered" "unsolicited" "$r"
kvx_wait_for 2 "poke to reach the server" grep -q "data=poke" "$KVX_TMP/udp.log" || true
assert_ge "PASS_HOST counted the unsolicited datagram (the host's)" $(($(kvx_counter PASS_HOST) - f0)) 1

kvx_step "re-attach with --eif (endpoint-independent filtering)"
reattach --eif
assert_eq "status: eif" true "$(kvx_json 'i["eif"]')"
r=$(kvx_udp_client "$NS_G1" --bind 40003 --msg poke --wait 1 "$SRV_IP:5001" || true)
kvx_log "replies: $(tr '\n' '|' <<<"$r")"
assert_contains "reply from the contacted endpoint arrives" "from=$SRV_IP:5001 data=seen=" "$r"
assert_contains "with --eif the uncontacted port 5003 gets through" "from=$SRV_IP:5003 data=unsolicited" "$r"
# and only to the guest that owns the binding
r2=$(kvx_udp_client "$NS_G2" --bind 40003 --msg eim2 --wait 0.5 "$SRV_IP:5002" || true)
assert_contains "guest2 on the same port still gets its own reply" "data=eim2" "$r2"
assert_not_contains "guest2 gets nothing meant for guest1" "unsolicited" "$r2"

kvx_step "NAT port range of 2 ports: the third socket is refused"
reattach --nat-ports 20000-20001
x0=$(kvx_counter DROP_PORTS_EXHAUSTED)
ports=()
for b in 40010 40011; do
	r=$(kvx_udp_client "$NS_G1" --bind $b --msg "range$b" --wait 0.5 "$SRV_IP:5001" || true)
	p=$(sed -n 's/.*seen=[0-9.]*:\([0-9]*\) .*/\1/p' <<<"$r")
	ports+=("${p:-none}")
done
assert_eq "the two sockets got the two NAT ports" "20000 20001" "$(printf '%s\n' "${ports[@]}" | sort | paste -sd' ')"
r=$(kvx_udp_client "$NS_G2" --bind 40012 --msg range3 --wait 0.5 "$SRV_IP:5001" || true)
assert_empty "no reply for a third socket" "$r"
assert_ge "DROP_PORTS_EXHAUSTED counted" $(($(kvx_counter DROP_PORTS_EXHAUSTED) - x0)) 1
r=$(kvx_udp_client "$NS_G1" --bind 40010 --msg again --wait 0.5 "$SRV_IP:5002" || true)
assert_contains "an existing binding still works towards a new destination" "data=again" "$r"

kvx_step "small tables: --ct-size 8 --bind-size 16"
# No per-guest quota (default: a quarter of the table): the table itself fills.
reattach --ct-size 8 --bind-size 16 --flow-quota 0
assert_eq "status: conntrack max_entries" 8 "$(kvx_json 'i["conntrack"]["max_entries"]')"
assert_eq "status: bindings max_entries" 16 "$(kvx_json 'i["bindings"]["max_entries"]')"
full0=$(kvx_counter DROP_TABLE_FULL)
pids=()
for b in $(seq 41000 41011); do
	kvx_bg "$KVX_TMP/full.$b" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" \
		client --bind "$b" --msg "full$b" --count 2 --wait 1 "$SRV_IP:5001"
	pids+=("$KVX_LAST_PID")
done
wait "${pids[@]}" || true
answered=$( (grep -l 'data=seen=' "$KVX_TMP"/full.* || true) | wc -l)
kvx_log "12 sockets, $answered answered; conntrack $(kvx_json 'i["conntrack"]["entries"]'), bindings $(kvx_json 'i["bindings"]["entries"]')"
assert_le "no more flows than the conntrack table holds" "$answered" 8
assert_ge "the table was filled" "$answered" 8
assert_ge "DROP_TABLE_FULL counted" $(($(kvx_counter DROP_TABLE_FULL) - full0)) 1
assert_le "status: conntrack entries within max" "$(kvx_json 'i["conntrack"]["entries"]')" 8
first=$(grep -l 'data=seen=' "$KVX_TMP"/full.* | head -1)
b=${first##*.}
r=$(kvx_udp_client "$NS_G1" --bind "$b" --msg "full-again" --wait 0.5 "$SRV_IP:5001" || true)
assert_contains "an existing flow ($b) still works with full tables" "data=full-again" "$r"

peers=$(sed -n 's/.* peer=\([0-9.]*\):.*/\1/p' "$KVX_TMP/udp.log" | sort -u | paste -sd' ')
assert_eq "the UDP server saw only the uplink address" "$UP_IP" "$peers"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$(kvx_server_sources)"
kvx_assert_no_csum_errors
kvx_assert_no_netfilter
kvx_finish
