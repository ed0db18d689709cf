#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/port_overlap.sh: NAT port overlapping (RFC 7857 section 3) within
# one guest, default options but --guest-ports 2: guest1 opens 8 downloads
# at once (2 from each of 4 servers), 8 guest endpoints for its 2 external
# ports.  Every download completes with its bytes intact (sha256),
# DROP_GUEST_PORTS stays 0, `conntrack list` shows guest1's flows on 2
# external ports that each carry flows of several of its endpoints (never
# two towards one server endpoint), and every server saw only the uplink's
# address.  A 9th endpoint towards a server both ports already carry a flow
# to is refused (DROP_GUEST_PORTS) while the downloads go on; guest2,
# downloading at the same time, gets ports of its own, none of guest1's.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+   2 downloads from each server
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+   2 downloads from one server
#                                    bridge kb<id> (192.168.122.1/24), host ns
#                                    uplink ku<id> 10.77.0.2/24 <- kvmxdp
#   lan ns:    router kl<id> 10.77.0.1/24, kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2-5/24: HTTP :8080 on each address
#
# Usage: port_overlap.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools curl sha256sum
kvx_topology_up

SERVERS=("$SRV_IP" 10.78.0.3 10.78.0.4 10.78.0.5)
mkdir -p "$KVX_TMP/www"
# 16 MiB at 1 MiB/s: the socket buffers (a few MiB) let the server finish
# (and close) some 10 s in, well after the check of the running flows.
SHA=$(kvx_random_file big 16)
for s in "${SERVERS[@]}"; do
	[[ $s == "$SRV_IP" ]] || ip -n "$NS_SRV" addr add "$s/24" dev "$SRV_IF"
	kvx_bg "$KVX_TMP/http.$s.log" ip netns exec "$NS_SRV" "$KVX_PY" -u \
		"$KVX_LIBDIR/http_serve.py" --bind "$s" --directory "$KVX_TMP/www" 8080
done
kvx_wait_tcp_listen 10 "$NS_SRV" 8080

ctj() { kvx conntrack list --json --bridge "$BR" 2>>"$KVX_TMP/ct.err" || true; }
pyj() { "$KVX_PY" -c "import json, sys; f = json.loads(sys.argv[2]); print($1)" "$1" "$2"; }

kvx_step "guest1 limited to 2 ports: 8 endpoints downloading at once; guest2 beside it"
kvx_attach_bg --guest-ports 2 || kvx_fatal "cannot attach"
gp0=$(kvx_counter DROP_GUEST_PORTS)
ex0=$(kvx_counter DROP_PORTS_EXHAUSTED)
n=0
pids=()
dl() {
	n=$((n + 1))
	kvx_bg "$KVX_TMP/dl.$n.log" ip netns exec "$1" sh -c \
		"curl -sS --fail --max-time 60 --limit-rate 1m -o '$KVX_TMP/dl.$n' \
		 'http://$2:8080/big' && sha256sum '$KVX_TMP/dl.$n'"
	pids+=("$KVX_LAST_PID")
	# One SYN at a time: the guest's two ports are bound first.
	sleep 0.2
}
for s in "${SERVERS[@]}"; do
	dl "$NS_G1" "$s"
	dl "$NS_G1" "$s"
done
dl "$NS_G2" "$SRV_IP"
dl "$NS_G2" "$SRV_IP"
# While they run (established, far from their end): the flows share ports.
sleep 2
L=$(ctj)
kvx_log "flows: $(pyj '[(x["int_addr"], x["int_port"], x["rem_addr"], x["ext_port"], x["state"]) for x in f if x["proto"] == "tcp"]' "$L")"
g1='[x for x in f if x["proto"] == "tcp" and x["int_addr"] == "'$G1_IP'"]'
g2='[x for x in f if x["proto"] == "tcp" and x["int_addr"] == "'$G2_IP'"]'
assert_eq "guest1: 8 TCP flows at once" 8 "$(pyj "len($g1)" "$L")"
# FIN_WAIT: a server that wrote its last bytes into the socket buffers.
assert_eq "guest1: all running (none closed yet)" 1 \
	"$(pyj "int(all(x['state'] in ('ESTABLISHED', 'FIN_WAIT') for x in $g1))" "$L")"
assert_eq "guest1: its 8 flows on 2 external ports" 2 "$(pyj "len({x['ext_port'] for x in $g1})" "$L")"
assert_eq "guest1: both ports serve several of its endpoints" 2 \
	"$(pyj "len([p for p in {x['ext_port'] for x in $g1} if len({x['int_port'] for x in $g1 if x['ext_port'] == p}) > 1])" "$L")"
assert_eq "never two flows of one port towards one server endpoint" 8 \
	"$(pyj "len({(x['ext_port'], x['rem_addr'], x['rem_port']) for x in $g1})" "$L")"
assert_eq "guest2: 2 TCP flows" 2 "$(pyj "len($g2)" "$L")"
assert_eq "guest2: none on guest1's ports" 0 \
	"$(pyj "len({x['ext_port'] for x in $g2} & {x['ext_port'] for x in $g1})" "$L")"
assert_eq "no DROP_GUEST_PORTS" "$gp0" "$(kvx_counter DROP_GUEST_PORTS)"

kvx_step "a 9th endpoint towards a server both ports serve is refused"
out=$(nsx "$NS_G1" curl -sS --max-time 3 -o /dev/null -w 'code=%{http_code}' "http://$SRV_IP:8080/big" 2>&1 || true)
kvx_log "9th: $out"
assert_contains "no connection for it" "code=000" "$out"
assert_ge "counted DROP_GUEST_PORTS" "$(kvx_counter DROP_GUEST_PORTS)" $((gp0 + 1))
gp1=$(kvx_counter DROP_GUEST_PORTS)

kvx_step "every download completes intact"
ok=0
for i in $(seq 1 "$n"); do
	wait "${pids[$((i - 1))]}" || kvx_log "download $i: $(tail -2 "$KVX_TMP/dl.$i.log")"
	grep -q "^$SHA " "$KVX_TMP/dl.$i.log" && ok=$((ok + 1))
done
assert_eq "10 downloads with the right sha256" 10 "$ok"
assert_eq "no other DROP_GUEST_PORTS than the 9th endpoint's" "$gp1" "$(kvx_counter DROP_GUEST_PORTS)"
assert_eq "no DROP_PORTS_EXHAUSTED" "$ex0" "$(kvx_counter DROP_PORTS_EXHAUSTED)"
for s in "${SERVERS[@]}"; do
	# The access log's lines start with the client's address.
	srcs=$(awk '$1 ~ /^[0-9.]+$/ {print $1}' "$KVX_TMP/http.$s.log" | sort -u | paste -sd' ')
	assert_eq "server $s saw only the uplink's address" "$UP_IP" "$srcs"
done

kvx_finish
