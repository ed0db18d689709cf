#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/syn_flood.sh: a LAN host's TCP floods at a port forward and a 1:1
# address cannot lock the guest out, nor take its own outbound capacity.
#  - guest1 has a port forward uplink:8080 -> guest1:80 and the 1:1 address
#    10.77.0.101.  The LAN host sends spoofed SYN floods (a new source per
#    packet) at both, and ACK, FIN+ACK and RST floods (nmap -sA style: plain
#    raw packets, spoofed sources of their own ranges) at both.
#  - meanwhile guest1 keeps downloading from the server (new outbound
#    connections, sha256 of each download) and the LAN host, from its own
#    address, keeps downloading from guest1 through the forward and the 1:1
#    address (sha256).
#  - asserted: no outbound failure, every legitimate inbound download
#    intact, the non-SYN packets created no flow (DROP_TCP_NO_FLOW counts
#    each; none of their sources in conntrack), the half-open (SYN_RECV)
#    flows never exceed guest1's inbound quota (the flood did fill it:
#    early drop recycles the oldest half-open flows), and after the flood
#    the half-open flows expire, the per-guest counters (kvx_gflows, summed
#    over the slots) match conntrack again, and both directions work.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1, HTTP :80) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1)           --+ bridge kb<id> (192.168.122.1/24)
#                                                              host ns, kvmxdp:
#                                                              uplink ku<id> 10.77.0.2/24
#                                                              forward uplink:8080 -> guest1:80
#                                                              1:1     10.77.0.101 -> guest1
#   lan ns:    kl<id> 10.77.0.1/24 = the LAN host: floods (spoofed sources
#              10.90-10.95.x.x) and legitimate downloads (its own address);
#              kr<id> 10.78.0.1/24
#   server ns: ks<id> 10.78.0.2/24 HTTP :8080 (guest1's downloads)
#
# Usage: syn_flood.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
kvx_guest_http_servers
EXT1=10.77.0.101
SRV_SHA=$(kvx_random_file out 1)
head -c $((512 * 1024)) /dev/urandom >"$KVX_TMP/www1/in"
IN_SHA=$(sha256sum "$KVX_TMP/www1/in" | cut -d' ' -f1)
FLOOD=("$KVX_PY" -u "$KVX_LIBDIR/tcp_flood.py")

# A small inbound quota, so that the flood fills it within a fraction of a
# second and the bound is visible; the default (a quarter of kvx_ct) would
# take 16k SYNs.  SYN_RECV's timeout is shortened so that the flood's
# half-open flows expire within the test's time budget (default 60 s,
# netfilter's); everything else is the default.
QUOTA=200
kvx_attach_bg --flow-quota "$QUOTA" --timeouts tcp_syn_recv=6 || kvx_fatal "cannot attach"
must assert_ok "map add uplink:8080 $G1_IP:80 --proto tcp" kvx map add uplink:8080 "$G1_IP:80" --proto tcp
must assert_ok "map add $EXT1 $G1_IP" kvx map add "$EXT1" "$G1_IP"

# One download each way; prints ok or what went wrong.
get_sha() { # NS URL WANT
	local f=$KVX_TMP/dl.$BASHPID got
	if ! nsx "$1" curl -sS --fail --max-time 10 -o "$f" "$2" 2>>"$KVX_TMP/curl.err"; then
		echo "fail $2"
		return
	fi
	got=$(sha256sum "$f" | cut -d' ' -f1)
	rm -f "$f"
	[[ $got == "$3" ]] && echo ok || echo "corrupt $2"
}
out_once() { get_sha "$NS_G1" "http://$SRV_IP:8080/out" "$SRV_SHA"; }
fwd_once() { get_sha "$NS_LAN" "http://$UP_IP:8080/in" "$IN_SHA"; }
one_once() { get_sha "$NS_LAN" "http://$EXT1/in" "$IN_SHA"; }
# Flows of guest1 in a state, from `conntrack list`.
ct_of() { # [--state S]
	kvx conntrack list --json --bridge "$BR" --guest "$G1_IP" "$@" 2>>"$KVX_TMP/ct.err" || echo null
}
# Length of a JSON list; -1 for anything else (a failed list).
count_json() { "$KVX_PY" -c 'import json,sys; v = json.load(sys.stdin); print(len(v) if isinstance(v, list) else -1)'; }

kvx_step "before the flood"
assert_eq "guest1 -> server download" ok "$(out_once)"
assert_eq "LAN -> forward uplink:8080 download" ok "$(fwd_once)"
assert_eq "LAN -> 1:1 $EXT1 download" ok "$(one_once)"

kvx_step "floods from the LAN host while guest1 and the LAN host work"
nf0=$(kvx_counter DROP_TCP_NO_FLOW)
# ~10 s of floods: SYNs at the forward (3000/s) and at the 1:1 address's
# open port (1000/s), a new spoofed source for each; ACK, FIN+ACK and RST
# floods (500/s each) at both, from source ranges of their own.
kvx_bg "$KVX_TMP/f_syn_fwd.log" ip netns exec "$NS_LAN" "${FLOOD[@]}" "$UP_IP" 8080 S 30000 10.90.0.0 --pps 3000
F1=$KVX_LAST_PID
kvx_bg "$KVX_TMP/f_syn_one.log" ip netns exec "$NS_LAN" "${FLOOD[@]}" "$EXT1" 80 S 10000 10.91.0.0 --pps 1000
F2=$KVX_LAST_PID
kvx_bg "$KVX_TMP/f_ack_fwd.log" ip netns exec "$NS_LAN" "${FLOOD[@]}" "$UP_IP" 8080 A 5000 10.93.0.0 --pps 500
F3=$KVX_LAST_PID
kvx_bg "$KVX_TMP/f_fin_one.log" ip netns exec "$NS_LAN" "${FLOOD[@]}" "$EXT1" 1-1024 FA 5000 10.94.0.0 --pps 500
F4=$KVX_LAST_PID
kvx_bg "$KVX_TMP/f_rst_both.log" ip netns exec "$NS_LAN" "${FLOOD[@]}" "$EXT1" 80 R 5000 10.95.0.0 --pps 500
F5=$KVX_LAST_PID
flooding() { local p; for p in "$F1" "$F2" "$F3" "$F4" "$F5"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }

: >"$KVX_TMP/work.log"
max_half=0 samples=0
sleep 1
while flooding; do
	{ out_once; fwd_once; one_once; } >>"$KVX_TMP/work.log"
	half=$(ct_of --state SYN_RECV | count_json)
	samples=$((samples + 1))
	((half > max_half)) && max_half=$half
done
for p in "$F1" "$F2" "$F3" "$F4" "$F5"; do
	wait "$p" || kvx_fail "a flood generator failed: $(cat "$KVX_TMP"/f_*.log)"
done
sent() { sed -n 's/^sent=\([0-9]*\) .*/\1/p' "$KVX_TMP/$1.log"; }
syn_sent=$(($(sent f_syn_fwd) + $(sent f_syn_one)))
nonsyn_sent=$(($(sent f_ack_fwd) + $(sent f_fin_one) + $(sent f_rst_both)))
kvx_log "floods: $syn_sent SYNs, $nonsyn_sent ACK/FIN/RST; $(grep -c . "$KVX_TMP/work.log") downloads, half-open max $max_half over $samples samples"
assert_ge "the floods were sent (SYNs)" "$syn_sent" 40000
assert_ge "the floods were sent (ACK/FIN/RST)" "$nonsyn_sent" 15000
assert_ge "downloads during the flood (3 per round)" "$(grep -c '^ok' "$KVX_TMP/work.log")" 6
# guest1's own connections must all work, and nothing may ever come back
# corrupt.  A LAN client's connection to the flooded forward is half-open
# like the flood's until its ACK comes, and early drop evicts the oldest
# half-open flow of the guest's ring: under 4000 SYNs/s one whose ACK is
# late (a loaded machine) can lose its entry, as with netfilter's early
# drop without SYN cookies.  Most must still get through.
assert_eq "no outbound download failed, none came back corrupt during the flood" "" \
	"$({ grep -v '^ok' "$KVX_TMP/work.log" | grep -v '^fail .*/in$' || true; } | sort | uniq -c | paste -sd' ')"
in_failed=$(grep -c '^fail .*/in$' "$KVX_TMP/work.log" || true)
assert_le "LAN -> forward/1:1 downloads that failed during the flood (of $((samples * 2)))" "$in_failed" $((samples * 2 / 5))
assert_ge "the SYN flood filled guest1's inbound quota (half-open seen)" "$max_half" $((QUOTA / 2))
assert_le "half-open flows never exceeded the inbound quota" "$max_half" "$QUOTA"
nf=$(($(kvx_counter DROP_TCP_NO_FLOW) - nf0))
assert_ge "every ACK/FIN/RST of the flood dropped: DROP_TCP_NO_FLOW" "$nf" "$nonsyn_sent"
assert_eq "no flow from the ACK/FIN/RST floods' sources" 0 \
	"$(ct_of | "$KVX_PY" -c 'import json,sys; print(sum(f["rem_addr"].split(".")[1] in ("93","94","95") for f in json.load(sys.stdin)))')"
assert_eq "guest1's outbound right after the flood" ok "$(out_once)"

kvx_step "after the flood: the half-open flows expire, the counters follow"
# SYN_RECV 6 s, GC every 5 s.
no_half_open() { [[ $(ct_of --state SYN_RECV | count_json) == 0 ]]; }
kvx_wait_for 20 "guest1's half-open flows expired" no_half_open
# kvx_gflows (every slot) against conntrack: the GC's recount placed each
# flow in its guest's slot; the datapath's own counts in between agree.
gflows_sum() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_gflows" | "$KVX_PY" -c '
import json, sys
o = i = 0
for e in json.load(sys.stdin):
    v = e["formatted"]["value"] if "formatted" in e else e["value"]
    o += v["out"]; i += v["in"]
print(o, i)'
}
flows_sum() {
	kvx conntrack list --json --bridge "$BR" | "$KVX_PY" -c '
import json, sys
f = json.load(sys.stdin)
i = sum("inbound" in x["flags"] for x in f)
print(len(f) - i, i)'
}
counts_agree() { [[ $(gflows_sum) == "$(flows_sum)" ]]; }
kvx_wait_for 15 "kvx_gflows sums match conntrack" counts_agree &&
	kvx_pass "kvx_gflows out/in sums $(gflows_sum) = conntrack's"
inbound=$(flows_sum | cut -d' ' -f2)
assert_le "guest1's inbound flows back to the legitimate ones" "$inbound" 60
assert_eq "guest1 -> server download" ok "$(out_once)"
assert_eq "LAN -> forward uplink:8080 download" ok "$(fwd_once)"
assert_eq "LAN -> 1:1 $EXT1 download" ok "$(one_once)"

kvx_finish
