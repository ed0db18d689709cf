#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/arp_claim.sh: how `map add` claims an address on the uplink's
# network, watched on the wire from the LAN (RFC 5227):
#  - claim: three probes (ARP requests from 0.0.0.0 for the address, target
#    MAC zero) over one second, then two gratuitous ARPs (sender = target =
#    the address, sender MAC = the uplink's), broadcast, in that order; a LAN
#    host whose cache held the address with another MAC has the uplink's MAC
#    without sending a packet (the announcements taught it);
#  - defence: a LAN host that probes for the address once kvmxdp owns it gets
#    one ARP reply per probe from the uplink's MAC (the datapath, ARP_REPLY),
#    so its RFC 5227 probe sees the address is taken;
#  - conflicts refuse the mapping with one error line naming the other
#    host's MAC, change nothing and announce nothing: a LAN host that owns
#    the address (answers the probe), a LAN host probing for it at the same
#    moment (RFC 5227 2.1.1); once the owner gives the address up, it can be
#    mapped.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, HTTP :80) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, HTTP :80) --+ bridge kb<id> 192.168.122.1/24
#                                                      host ns, kvmxdp: uplink ku<id> 10.77.0.2/24
#                                                      1:1 10.77.0.101 -> guest1
#                                                          |  (the uplink's segment)
#   lan ns: kl<id> 10.77.0.1/24 "the LAN host": arp_peer.py sniffs every ARP frame
#           here, probes and contends; owns 10.77.0.60 for a while;
#           kr<id> 10.78.0.1/24 -- server ns ks<id> 10.78.0.2/24
#
# Usage: arp_claim.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up
kvx_guest_http_servers

EXT=10.77.0.101 OWNED=10.77.0.60 CONTESTED=10.77.0.70
BCAST=ff:ff:ff:ff:ff:ff ZERO=00:00:00:00:00:00
mac_of() { ip -n "$1" -br link show dev "$2" | awk '{print $3}'; } # NS DEV
MAC_UP=$(mac_of "$NS_HOST" "$UP") MAC_LAN=$(mac_of "$NS_LAN" "$LAN_UP_IF")
arp_peer() { nsx "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" "$@"; }

kvx_bg "$KVX_TMP/arp.log" ip netns exec "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" \
	sniff "$LAN_UP_IF"
kvx_wait_file_contains 10 "$KVX_TMP/arp.log" sniffing
kvx_attach_bg || kvx_fatal "cannot attach"

# The ARP frames the LAN saw from the uplink about ADDR, one word each, in
# order: P (an RFC 5227 probe: request, sender 0.0.0.0, target MAC zero),
# A (an announcement: request, sender = target = ADDR), anything else as
# "?op/spa/tpa"; only well-formed ones from the uplink's MAC, broadcast,
# count as P or A.
arp_seq() { # ADDR
	awk -v a="$1" -v m="$MAC_UP" -v b="$BCAST" -v z="$ZERO" '
		{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
		f["pkt"] == "in" && (f["tpa"] == a || f["spa"] == a) {
			ok = f["eth_src"] == m && f["sha"] == m && f["eth_dst"] == b && f["op"] == 1
			if (ok && f["spa"] == "0.0.0.0" && f["tpa"] == a && f["tha"] == z) k = "P"
			else if (ok && f["spa"] == a && f["tpa"] == a) k = "A"
			else k = "?" f["op"] "/" f["spa"] "/" f["tpa"]
			printf "%s%s", sep, k; sep = " "
		}' "$KVX_TMP/arp.log"
}
arp_times() { # ADDR KIND(P|A): CLOCK_MONOTONIC times of those frames
	local spa=0.0.0.0
	[[ $2 == A ]] && spa=$1
	sed -n "s/^t=\([0-9.]*\) pkt=in .* spa=$spa tha=.* tpa=$1\$/\1/p" "$KVX_TMP/arp.log"
}
arp_seq_is() { [[ $(arp_seq "$1") == "$2" ]]; } # ADDR SEQUENCE
arp_announced() { [[ $(arp_seq "$1") == *"A A" ]]; } # ADDR
secs_between() { "$KVX_PY" -c 'import sys; print(int((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$1" "$2"; }

kvx_step "claim: probes, then gratuitous ARPs; a LAN cache learns the uplink's MAC"
# A LAN host that knew the address under another MAC (the machine that had
# it before): only an announcement can correct the entry, since nothing
# here sends it a packet.  (A new entry from a gratuitous ARP is up to the
# host, arp_accept; an existing one is updated.)
ip -n "$NS_LAN" neigh replace "$EXT" lladdr 02:00:00:00:00:99 dev "$LAN_UP_IF" nud stale
out=$(kvx map add "$EXT" "$G1_IP" 2>&1) || kvx_fail "map add $EXT $G1_IP: $out"
assert_contains "map add says mapped" "kvmxdp: mapped $EXT" "$out"
kvx_wait_for 5 "3 probes and 2 announcements for $EXT on the LAN" arp_seq_is "$EXT" "P P P A A" || true
assert_eq "ARP frames about $EXT from the uplink, in order" "P P P A A" "$(arp_seq "$EXT")"
mapfile -t tp < <(arp_times "$EXT" P)
mapfile -t ta < <(arp_times "$EXT" A)
if ((${#tp[@]} == 3 && ${#ta[@]} == 2)); then
	assert_ge "the probes spread over the probe second (first to last, ms)" \
		"$(secs_between "${tp[0]}" "${tp[2]}")" 400
	assert_ge "the first announcement waits out the probe second (ms after the first probe)" \
		"$(secs_between "${tp[0]}" "${ta[0]}")" 900
fi
assert_eq "the LAN host's cache maps $EXT to the uplink's MAC" "$MAC_UP" \
	"$(ip -n "$NS_LAN" neigh show "$EXT" dev "$LAN_UP_IF" | awk '{print $3}')"
assert_not_contains "the address is not host-local" "$EXT" "$(ip -n "$NS_HOST" -4 addr show)"
assert_eq "LAN -> $EXT:80 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT/who")"

kvx_step "defence: a LAN host probing for $EXT is told it is taken"
r0=$(kvx_counter ARP_REPLY)
ans=$(arp_peer probe "$LAN_UP_IF" "$EXT" --count 3 --interval 0.3 --wait 1) ||
	kvx_fail "the LAN host's probes for $EXT got no answer: $ans"
# (Counted exactly: the LAN host's own neighbour probes for $EXT would be
# answered too, with its address as the target.)
want="answer op=2 sha=$MAC_UP spa=$EXT tha=$MAC_LAN tpa=0.0.0.0 eth_src=$MAC_UP eth_dst=$MAC_LAN"
assert_eq "one answer per probe, from the uplink's MAC to the prober: $want" 3 \
	"$(grep -cxF "$want" <<<"$ans" || true)"
assert_ge "answered by the datapath (ARP_REPLY)" $(($(kvx_counter ARP_REPLY) - r0)) 3

# ADDR MAC: `map add ADDR guest2` is refused with one line naming MAC as
# the other host; it probed, announced nothing, changed no mapping.
refused() {
	local addr=$1 mac=$2 cfg0 list0 out rc=0
	cfg0=$(cfg_sum) list0=$(kvx map list)
	out=$(kvx map add "$addr" "$G2_IP" 2>&1) || rc=$?
	assert_ne "map add $addr exits non-zero" 0 "$rc"
	assert_eq "one error line naming $mac" \
		"kvmxdp: error: mapping '$addr $G2_IP': $addr is in use on the uplink's network (ARP answered by $mac): pick a free address" \
		"$out"
	assert_contains "it did probe for $addr" "P" "$(arp_seq "$addr")"
	assert_not_contains "no announcement for $addr" "A" "$(arp_seq "$addr")"
	assert_eq "config unchanged (sha256)" "$cfg0" "$(cfg_sum)"
	assert_eq "map list unchanged" "$list0" "$(kvx map list)"
}
cfg_sum() { sha256sum <"$KVX_CFG" | cut -d' ' -f1; }

kvx_step "a LAN host owns $OWNED: refused, nothing changed, nothing announced"
ip -n "$NS_LAN" addr add "$OWNED/24" dev "$LAN_UP_IF"
refused "$OWNED" "$MAC_LAN"

kvx_step "a LAN host probing for $CONTESTED at the same moment: refused"
kvx_bg "$KVX_TMP/contend.log" ip netns exec "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/arp_peer.py" \
	contend "$LAN_UP_IF" "$CONTESTED" --sha 02:00:00:00:00:77 --wait 20
kvx_wait_file_contains 10 "$KVX_TMP/contend.log" contending
refused "$CONTESTED" 02:00:00:00:00:77
assert_contains "the other host saw kvmxdp's probe" "contended with=$MAC_UP" "$(cat "$KVX_TMP/contend.log")"

kvx_step "the owner gives $OWNED up: now it can be mapped"
ip -n "$NS_LAN" addr del "$OWNED/24" dev "$LAN_UP_IF"
assert_ok "map add $OWNED $G2_IP" kvx map add "$OWNED" "$G2_IP"
kvx_wait_for 5 "announcements for $OWNED" arp_announced "$OWNED" || true
seq=$(arp_seq "$OWNED")
assert_eq "ARP frames about $OWNED end with a whole claim" "P P P A A" "${seq: -9}"
assert_not_contains "... after the refused claim's probes alone" "A" "${seq:0:${#seq}-9}"
assert_eq "LAN -> $OWNED:80 reaches guest2" guest2 "$(kvx_http_get "$NS_LAN" "http://$OWNED/who")"

kvx_finish
