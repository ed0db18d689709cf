#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/dad6.sh: duplicate address detection (RFC 4862 5.4) of NAT66's
# mapped IPv6 addresses as the LAN sees it, from a sniffer on the LAN
# host's side of the uplink:
#  1. the uplink's net.ipv6.conf.IF.dad_transmits (3 here) is DAD's count:
#     `map add` of a 1:1 address sends 3 probes (NS from ::) for it, then
#     the LAN host reaches guest1 through it;
#  2. the solicited-node group of the announced address is joined with an
#     MLD report on the uplink (what an MLD-snooping switch or access point
#     needs to deliver the LAN's NSs for it), not only in the NIC's filter;
#  3. the uplink's carrier goes (the LAN side of the link down) and the LAN
#     host takes the address meanwhile: when the carrier is back the daemon
#     runs DAD again, finds it, and holds it (conflict): the LAN host's NS
#     for it is not answered and its own server on it is reached, not
#     translated;
#  4. without carrier, DAD never passes: a `map add` then leaves the new
#     address probing, and it is announced only once the carrier is back;
#  5. the LAN host drops the address: the conflict's retry announces it.
#
#   guest1 ns  kg1<id> fd42:99::11/64 --+  (1:1 2001:db8:1::101)
#   guest2 ns  kg2<id> fd42:99::12/64 --+  (1:1 2001:db8:1::102, step 4)
#   host ns    bridge kb<id> fd42:99::1/64   <- kvmxdp (NAT66)
#              uplink ku<id> 2001:db8:1::2/64, dad_transmits 3
#   lan ns     kl<id> 2001:db8:1::1/64: the LAN host (ping, curl; the
#              sniffer), later 2001:db8:1::101 too (HTTP :8091)
#
# Usage: dad6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up

BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
UP6=2001:db8:1::2 LAN6=2001:db8:1::1 ONE6=2001:db8:1::101 TWO6=2001:db8:1::102

kvx_step "IPv6 addressing; the uplink's dad_transmits 3"
for ns in "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN"; do
	nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
done
ip -n "$NS_HOST" -6 addr add "$BR6/64" dev "$BR" nodad
for g in "$NS_G1:$G1_IF:$G1_6" "$NS_G2:$G2_IF:$G2_6"; do
	IFS=: read -r ns dev _ <<<"$g"
	nsx "$ns" sysctl -qw "net.ipv6.conf.$dev.accept_ra=0"
	ip -n "$ns" -6 addr add "${g#*:*:}/64" dev "$dev" nodad
done
nsx "$NS_HOST" sysctl -qw "net.ipv6.conf.$UP.accept_ra=0" "net.ipv6.conf.$UP.dad_transmits=3"
ip -n "$NS_HOST" -6 addr add "$UP6/64" dev "$UP" nodad
ip -n "$NS_HOST" -6 route add default via "$LAN6" dev "$UP"
# The LAN host's addresses survive its link going down (the carrier
# losses below are the host's uplink's, not the LAN host's forgetting).
nsx "$NS_LAN" sysctl -qw "net.ipv6.conf.$LAN_UP_IF.keep_addr_on_down=1"
ip -n "$NS_LAN" -6 addr add "$LAN6/64" dev "$LAN_UP_IF" nodad
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)
ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
ip -n "$NS_G2" -6 route add default via "$BR_LL" dev "$G2_IF"
must kvx_wait_for 10 "the uplink's link-local address (MLD reports come from it)" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$UP' scope link -tentative) ]]"

kvx_step "the LAN host's sniffer: DAD probes (NS from ::) and MLD reports on its side of the uplink"
# One line per message: "dad TARGET" for an NS from ::, "mld GROUP" for
# each group an MLDv1/MLDv2 report names (behind its hop-by-hop header).
kvx_bg "$KVX_TMP/nd.log" ip netns exec "$NS_LAN" "$KVX_PY" -u -c '
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((sys.argv[1], 0))
print("sniffing", flush=True)
a6 = lambda b: socket.inet_ntop(socket.AF_INET6, bytes(b))
while True:
    try:
        f, addr = s.recvfrom(65535)
    except OSError:  # ENETDOWN once when the device goes down: still bound
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    ip = f[14:]
    nh, off = ip[6], 40
    if nh == 0 and len(ip) > off + 1:  # hop-by-hop (MLD: Router Alert)
        nh, off = ip[off], off + (ip[off + 1] + 1) * 8
    if nh != 58 or len(ip) < off + 24:
        continue
    m = ip[off:]
    if m[0] == 135 and ip[8:24] == bytes(16):
        print("dad", a6(m[8:24]), flush=True)
    elif m[0] in (131, 132):
        print("mld", a6(m[8:24]), flush=True)
    elif m[0] == 143:
        n, o = int.from_bytes(m[6:8], "big"), 8
        for _ in range(n):
            if len(m) < o + 20:
                break
            print("mld", a6(m[o + 4:o + 20]), m[o], flush=True)
            o += 20 + 16 * int.from_bytes(m[o + 2:o + 4], "big") + 4 * m[o + 1]' "$LAN_UP_IF"
kvx_wait_file_contains 10 "$KVX_TMP/nd.log" sniffing
probes() { grep -cx "dad $1" "$KVX_TMP/nd.log" || true; }
# ff02::1:ffXX:XXXX of an address whose last 24 bits are 00:01:XX.
SN1=ff02::1:ff00:101 SN2=ff02::1:ff00:102

kvx_step "attach (NAT66), map add $ONE6 $G1_6: 3 probes, then announced"
kvx_attach_bg --nat-ports 61000-65535 || kvx_fatal "cannot attach"
mkdir -p "$KVX_TMP/www"
sum=$(kvx_random_file big.bin 1)
kvx_bg "$KVX_TMP/http.g1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$G1_6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_G1" 8080
t0=$(date +%s%N)
out=$(kvx map add "$ONE6" "$G1_6" 2>&1) || kvx_fatal "map add $ONE6: $out"
ms=$((($(date +%s%N) - t0) / 1000000))
assert_contains "map add: made" "mapped $ONE6 $G1_6" "$out"
assert_eq "map add's DAD: 3 probes for $ONE6 (dad_transmits)" 3 "$(probes "$ONE6")"
assert_ge "map add waited the 3 RetransTimers (ms)" "$ms" 2900
state() { kvx map list --json | "$KVX_PY" -c 'import json,sys; print([m["state"] for m in json.load(sys.stdin)["mappings"] if m["ext"] == sys.argv[1]][0])' "$1"; }
assert_eq "map list: $ONE6 active" active "$(state "$ONE6")"
assert_eq "ping -6 from the LAN to $ONE6: 3 of 3" 3 "$(kvx_ping_received "$NS_LAN" "$ONE6" 3)"

kvx_step "MLD: the solicited-node group of $ONE6 joined on the uplink by the daemon"
# map add's own DAD joined the group (and reported it) while it probed;
# that process is gone: the membership now is the daemon's (NdGroups), the
# one an MLD-snooping switch's queries get answered for.
must kvx_wait_for 10 "an MLD report for $SN1 from the host" grep -q "^mld $SN1" "$KVX_TMP/nd.log"
in_group() { ip -n "$NS_HOST" -6 maddr show dev "$UP" | grep -qw "$1"; }
must kvx_wait_for 10 "the uplink is a member of $SN1 after map add exited" in_group "$SN1"
sleep 2
assert_eq "still a member 2 s later (held, not map add's leftover)" 0 "$(in_group "$SN1"; echo $?)"

kvx_step "carrier lost, the LAN host takes $ONE6 meanwhile: DAD again when it is back, conflict"
ip -n "$NS_LAN" link set "$LAN_UP_IF" down
must kvx_wait_for 5 "no carrier on $UP" bash -c "ip -n '$NS_HOST' link show dev '$UP' | grep -q NO-CARRIER"
ip -n "$NS_LAN" -6 addr add "$ONE6/64" dev "$LAN_UP_IF" nodad
before=$(probes "$ONE6")
ip -n "$NS_LAN" link set "$LAN_UP_IF" up
# the LAN host's own server on it, to tell its traffic from guest1's
kvx_bg "$KVX_TMP/http.lan.log" ip netns exec "$NS_LAN" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$ONE6" --directory "$KVX_TMP/www" 8091
kvx_wait_tcp_listen 10 "$NS_LAN" 8091
conflict() { [[ $(state "$ONE6") == conflict ]]; }
must kvx_wait_for 15 "$ONE6 in conflict after the daemon's new DAD" conflict
assert_ge "the daemon probed $ONE6 again after the carrier came back" "$(($(probes "$ONE6") - before))" 1
assert_contains "the daemon said why" "duplicate address detection again for 1 announced" "$(cat "$KVX_DAEMON_LOG")"
na0=$(kvx_counter ND_PROXY_NA)
ip -n "$NS_HOST" -6 neigh flush dev "$UP" 2>/dev/null || true
assert_eq "the host reaches the LAN host's own server on $ONE6: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_HOST" "http://[$ONE6]:8091/big.bin")"
# A LAN node's Neighbour Solicitation for $ONE6 (the host's own above goes
# out of the uplink, where the datapath never sees it) gets no answer of
# ours: only the LAN host's, which holds it.
up_mac=$(kvx_if_mac "$NS_HOST" "$UP")
lan_mac=$(kvx_if_mac "$NS_LAN" "$LAN_UP_IF")
nas=$(nsx "$NS_LAN" "$KVX_PY" "$KVX_LIBDIR/nd6_tool.py" ns "$LAN_UP_IF" "$LAN6" "$ONE6" 1.5)
assert_eq "no Neighbour Advertisement from the uplink's MAC for $ONE6" 0 \
	"$(grep -ci -- "$up_mac" <<<"$nas" || true)"
assert_eq "no Neighbour Advertisement of ours for $ONE6 since (ND_PROXY_NA)" "$na0" "$(kvx_counter ND_PROXY_NA)"

kvx_step "no carrier: a new mapping's DAD does not pass; announced once the carrier is back"
ip -n "$NS_LAN" link set "$LAN_UP_IF" down
must kvx_wait_for 5 "no carrier on $UP" bash -c "ip -n '$NS_HOST' link show dev '$UP' | grep -q NO-CARRIER"
out=$(kvx map add "$TWO6" "$G2_6" 2>&1) || kvx_fatal "map add $TWO6: $out"
assert_eq "map list: $TWO6 probing (no carrier: no verdict)" probing "$(state "$TWO6")"
sleep 3
assert_eq "still probing 3 s later (the daemon waits for the carrier)" probing "$(state "$TWO6")"
ip -n "$NS_LAN" link set "$LAN_UP_IF" up
active2() { [[ $(state "$TWO6") == active ]]; }
must kvx_wait_for 15 "$TWO6 announced after a DAD on the live link" active2
assert_ge "its probes went out on the live link" "$(probes "$TWO6")" 3
must kvx_wait_for 10 "an MLD report for $SN2" grep -q "^mld $SN2" "$KVX_TMP/nd.log"
# The same solicitation for an announced address is answered, with the
# uplink's MAC (the check above can see an answer).
nas=$(nsx "$NS_LAN" "$KVX_PY" "$KVX_LIBDIR/nd6_tool.py" ns "$LAN_UP_IF" "$LAN6" "$TWO6" 1.5)
assert_contains "a Neighbour Advertisement for $TWO6 from the uplink's MAC" "$up_mac" "$nas"

kvx_step "the LAN host drops $ONE6: the conflict's retry announces it again"
ip -n "$NS_LAN" -6 addr del "$ONE6/64" dev "$LAN_UP_IF"
active1() { [[ $(state "$ONE6") == active ]]; }
must kvx_wait_for 45 "$ONE6 announced once free" active1
assert_eq "curl -6 from the LAN to [$ONE6]:8080 reaches guest1: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_LAN" "http://[$ONE6]:8080/big.bin")"
kvx map del "$ONE6" "$G1_6" >/dev/null
kvx map del "$TWO6" "$G2_6" >/dev/null
assert_eq "map list: none left" "no mappings" "$(kvx map list)"
kvx_finish
