#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/relay.sh: IPv6 relay mode (attach --ipv6 relay, default options
# otherwise).  The uplink takes a SLAAC address in the LAN's /64 from a
# router running radvd; the guests take addresses in that same /64 and are
# reached at them, with no translation: the LAN router reaches them
# through kvmxdp's ND proxy (a WiFi station can send only its own MAC), and
# the server beyond the router, which knows nothing but its default route,
# sees the guests' own addresses.  The host does not forward IPv6
# (all.forwarding stays 0, as relay needs: a forwarding uplink ignores
# RAs): Ip6OutForwDatagrams must stay flat, kvmxdp forwarded.
# Before the router announces a prefix, attach --ipv6 relay is refused in
# one line saying why; so is --subnet6 with relay.  A guest that configures
# an address the LAN router has fails its duplicate address detection
# (kvmxdp relays the probe and the router's defence), and everyone still
# reaches the router there.  Inbound is stateful by default (only the
# replies of the guests' flows and echo requests come in: the server's
# connection to a guest gets nothing), until a relay mapping (`map add
# '[GUEST2_ADDR]:8082' --proto tcp`) opens that one port of that guest:
# the server's download from it completes, the guest sees the server's
# address, the flow is an inbound one; other ports and guests stay
# filtered, map del closes it again, and the host's own address or one
# off the prefix is refused in one line; attach --ipv6-inbound open then
# lets the server reach a guest's own server.  The host's own sockets
# reach the guests (ping, curl) through the daemon's /128 routes on the
# bridge, which detach removes.  A second guest that takes the first
# one's address gets nothing, and the first keeps working.  Another program
# advertising on the bridge (radvd, as libvirt's dnsmasq) silences
# kvmxdp's RAs, and status says so.
# A guest's address is one a duplicate address detection no LAN host
# answered: a guest that sends from a LAN router's address without DAD
# (nodad) gets none of its traffic (kvmxdp probes the LAN for it, the
# router defends), while its own nodad address nobody has is its own after
# that probe, and another guest's DAD for it then fails.  A LAN host's
# forged router advertisement (another prefix, the real one deprecated)
# moves nothing: relay keeps the prefix of the host's router.  The host's IPv6 default route survives the attach (the
# uplink's accept_ra goes to 2 while attached, back to 1 at detach).
# attach --clamp-mss 1300: a TCP connection from guest2 to the server (both
# stacks offer MSS 1440) has its SYN and SYN-ACK arrive with MSS 1280 (IPv6
# gets the value less 20) and valid checksums, seen by sniffers at both
# ends; the 1 MiB echo matches.
#
#   guest1 ns  kg1<id> SLAAC in 2001:db8:1::/64 --+
#   guest2 ns  kg2<id> SLAAC in 2001:db8:1::/64 --+ bridge kb<id> (fe80:: only)
#      (from kvmxdp's RAs: default via the      | host ns, all.forwarding=0
#       bridge's link-local)                     | <- kvmxdp
#                                            | uplink ku<id>: SLAAC 2001:db8:1::/64,
#                                            | default via the router
#   lan ns     router: kl<id> 2001:db8:1::1/64 + radvd (the LAN's own server:
#              an HTTP server on 2001:db8:1::1), kr<id> 2001:db8:78::1/64;
#              IPv6 forwarding; the /64 on-link on kl<id>
#   server ns  ks<id> 2001:db8:78::2/64, default via 2001:db8:78::1 (no
#              other route: it reaches the guests through the router)
#
# The guests take their addresses by SLAAC from kvmxdp's router
# advertisements on the bridge (the uplink's prefix with its lifetimes, the
# uplink's MTU, the bridge's link-local as their router); before attach
# they have none.
#
# Usage: relay.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools radvd
kvx_topology_up

N1=2001:db8:1::/64 LAN6=2001:db8:1::1
SRV6=2001:db8:78::2 RTR6=2001:db8:78::1

kvx_step "IPv6 addressing"
kvx_lan6_up "$LAN6" "$RTR6" "$SRV6"
for ns in "$NS_G1" "$NS_G2"; do
	nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
done
# SLAAC from whatever RA comes (stable addresses: no privacy ones).
for g in "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"; do
	nsx "${g%%:*}" sysctl -qw "net.ipv6.conf.${g#*:}.accept_ra=2" \
		"net.ipv6.conf.${g#*:}.autoconf=1" "net.ipv6.conf.${g#*:}.use_tempaddr=0"
done
brll() { ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1; }
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(brll)

bad_attach() { # NEEDLE ARGS...: refused in one line, nothing changed
	local needle=$1 rc=0 state
	shift
	state=$(kvx_host_state)
	timeout 10 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" \
		--uplink "$UP" "$@" >"$KVX_TMP/bad.out" 2>"$KVX_TMP/bad.err" </dev/null || rc=$?
	if ((rc == 124)); then
		kvx_fail "attach $* was accepted"
		kvx detach --bridge "$BR" >/dev/null 2>&1 || true
		return 0
	fi
	assert_ne "attach $*: exit code" 0 "$rc"
	assert_eq "attach $*: one line on stderr" 1 "$(grep -c . "$KVX_TMP/bad.err" || true)"
	assert_contains "attach $*: the error says why" "$needle" "$(cat "$KVX_TMP/bad.err")"
	if [[ $(kvx_host_state) == "$state" ]]; then
		kvx_pass "attach $*: nothing changed in the host ns"
	else
		kvx_fail "attach $*: the host ns changed"
	fi
}

kvx_step "a network without a router advertisement refuses relay"
bad_attach "kvmxdp: error: --ipv6 relay: the uplink's network refuses it: no global IPv6 address on the uplink" \
	--ipv6 relay

kvx_step "the LAN router announces $N1; the uplink takes an address by SLAAC"
kvx_lan6_radvd "$N1" "AdvValidLifetime 600; AdvPreferredLifetime 300;"
UP6=$(ip -n "$NS_HOST" -6 -o addr show dev "$UP" scope global -tentative | awk '{print $4}' | cut -d/ -f1 | head -1)
kvx_log "uplink IPv6 address $UP6"

kvx_step "before kvmxdp: no router advertisement on the bridge, no address in $N1 for the guests"
sleep 2
assert_eq "guest1 has no address in $N1" "" "$(kvx_addr6_in "$NS_G1" "$G1_IF" "$N1")"

kvx_step "bad input: relay with NAT66's --subnet6"
bad_attach "kvmxdp: error: --ipv6 relay: --subnet6 fd42:7::/64 is NAT66's" --ipv6 relay --subnet6 fd42:7::/64

kvx_step "attach --ipv6 relay: the guests take addresses in $N1 from kvmxdp's RAs"
# The bridge's forwarding coming on makes the kernel purge the RA default
# routes of every device whose accept_ra is not 2: watched across attach.
kvx_bg "$KVX_TMP/route6.log" ip -n "$NS_HOST" -6 monitor route
ROUTE_MON_PID=$KVX_LAST_PID
sleep 0.5
kvx_attach_bg --ipv6 relay || kvx_fatal "cannot attach"
FWD6_0=$(kvx_fwd6_datagrams)
kvx_relay_guest_addrs "$N1"
assert_ne "guest1 got an address in $N1" "" "$G1_6"
assert_ne "guest2 got an address in $N1" "" "$G2_6"
must kvx_wait_for 10 "guest1's default route from the RA" \
	bash -c "ip -n '$NS_G1' -6 route show default | grep -q 'via $BR_LL'"
assert_contains "guest1: default route via the bridge's link-local, from the RA" "via $BR_LL dev $G1_IF proto ra" \
	"$(ip -n "$NS_G1" -6 route show default)"
assert_contains "the daemon logged its RAs' prefix" "router advertisements on $BR: prefix $N1" \
	"$(cat "$KVX_DAEMON_LOG")"
# A solicitation is answered within MIN_DELAY_BETWEEN_RAS: a guest whose
# interface comes back (its RS) has its route again at once.
ip -n "$NS_G2" link set "$G2_IF" down
ip -n "$NS_G2" link set "$G2_IF" up
must kvx_wait_for 8 "guest2's default route again after its router solicitation" \
	bash -c "ip -n '$NS_G2' -6 route show default | grep -q 'via $BR_LL'"
must kvx_wait_for 10 "guest2's address usable again" bash -c "[[ -n \$(ip -n '$NS_G2' -6 -o addr show dev '$G2_IF' scope global -tentative) ]]"
st=$(kvx_status_json)
assert_eq "status: ipv6_mode" relay "$(kvx_json 'i["ipv6_mode"]' "$st")"
assert_eq "status: ipv6_choice" relay "$(kvx_json 'i["ipv6_choice"]' "$st")"
assert_eq "status: the relay prefix is the uplink's" "$N1" "$(kvx_json 'i["ipv6_relay_prefix"]' "$st")"
assert_eq "status: no NAT66 subnet" null "$(kvx_json 'i["ipv6_subnet"]' "$st")"
assert_contains "status: why" "--ipv6 relay, the router announces $N1 for SLAAC" \
	"$(kvx_json 'i["ipv6_mode_why"]' "$st")"
assert_eq "bridge IPv6 forwarding on (bpf_fib_lookup)" 1 "$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$BR/forwarding")"
assert_eq "all.forwarding untouched (0: the uplink keeps its RAs)" 0 \
	"$(kvx_sysctl_get "$NS_HOST" net/ipv6/conf/all/forwarding)"
assert_eq "the uplink's accept_ra 2 while attached (its RA default route survives)" 2 \
	"$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$UP/accept_ra")"
kvx_kill_pid "$ROUTE_MON_PID"
assert_eq "the host's IPv6 default route was never deleted by the attach" 0 \
	"$(grep -c '^Deleted default' "$KVX_TMP/route6.log" || true)"
assert_contains "the host's IPv6 default route via the LAN router" "default via fe80::" \
	"$(ip -n "$NS_HOST" -6 route show default dev "$UP")"
assert_contains "status text: relay and its prefix" "ipv6 relay $N1, " "$(kvx status --bridge "$BR")"

kvx_step "ping -6: guests -> LAN router and server beyond it"
for ns in "$NS_G1" "$NS_G2"; do
	assert_eq "ping -6 ${ns##*-} -> LAN router: 5 of 5" 5 "$(kvx_ping_received "$ns" "$LAN6" 5)"
	assert_eq "ping -6 ${ns##*-} -> server: 5 of 5" 5 "$(kvx_ping_received "$ns" "$SRV6" 5)"
done
kvx_step "DAD relay: a guest that takes a LAN host's address fails its DAD; the LAN host keeps it"
# The LAN router has DUP6 already; guest1 configures it with DAD on (as a
# VM whose SLAAC picked it would): its probe must reach the LAN through
# kvmxdp (the uplink's MAC), the router's defence must come back to it.
DUP6=2001:db8:1::99
ip -n "$NS_LAN" -6 addr add "$DUP6/64" dev "$LAN_UP_IF" nodad
relay0=$(kvx_counter ND_RELAY)
dup0=$(kvx_counter DROP_ND_DUPLICATE)
ip -n "$NS_G1" -6 addr add "$DUP6/64" dev "$G1_IF"
dadfailed() { ip -n "$NS_G1" -6 -o addr show dev "$G1_IF" | grep -F " $DUP6/64 " | grep -q dadfailed; }
must kvx_wait_for 10 "guest1's $DUP6 dadfailed (the LAN router defended it)" dadfailed
assert_ge "ND_RELAY counted the probe out and the defence in" "$(($(kvx_counter ND_RELAY) - relay0))" 2
# The LAN host's traffic is untouched: the host, the server and the other
# guest reach the router at DUP6, and nothing of it goes to guest1.
assert_eq "ping -6 host -> LAN router at $DUP6: 3 of 3" 3 "$(kvx_ping_received "$NS_HOST" "$DUP6" 3)"
assert_eq "ping -6 server -> LAN router at $DUP6: 3 of 3" 3 "$(kvx_ping_received "$NS_SRV" "$DUP6" 3)"
assert_eq "ping -6 guest2 -> LAN router at $DUP6: 3 of 3" 3 "$(kvx_ping_received "$NS_G2" "$DUP6" 3)"
lan_mac=$(kvx_if_mac "$NS_LAN" "$LAN_UP_IF")
assert_eq "the host's neighbour entry for $DUP6 is the LAN router's MAC" "$lan_mac" \
	"$(ip -n "$NS_HOST" -6 -j neigh show dev "$UP" "$DUP6" | "$KVX_PY" -c 'import json,sys; n=json.load(sys.stdin); print(n[0].get("lladdr","none") if n else "none")')"
# guest1 cannot use it: its kernel refuses a dadfailed source, so its
# frames from it are made by hand (a guest that ignores its DAD); the
# datapath drops them, the server hears none, and does hear the same
# frames from guest1's own address (they are sound).
kvx_bg "$KVX_TMP/udp_srv.log" ip netns exec "$NS_SRV" "$KVX_PY" -u -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9977))
print("listening", flush=True)
while True:
    d, a = s.recvfrom(2048)
    print(a[0], d.decode(errors="replace"), flush=True)' "$SRV6"
kvx_wait_file_contains 10 "$KVX_TMP/udp_srv.log" listening
br_mac=$(kvx_if_mac "$NS_HOST" "$BR")
dup1=$(kvx_counter DROP_ND_DUPLICATE)
nsx "$NS_G1" "$KVX_PY" "$KVX_LIBDIR/nd6_tool.py" udp6 "$G1_IF" "$DUP6" "$SRV6" 9977 "$br_mac" 5
nsx "$NS_G1" "$KVX_PY" "$KVX_LIBDIR/nd6_tool.py" udp6 "$G1_IF" "$G1_6" "$SRV6" 9977 "$br_mac" 2
must kvx_wait_for 5 "the server heard guest1's hand-made datagrams from $G1_6" \
	bash -c "[[ \$(grep -c '^$G1_6 kvx-udp6' '$KVX_TMP/udp_srv.log') -ge 2 ]]"
assert_eq "the server heard nothing from $DUP6" 0 "$(grep -c "^$DUP6 " "$KVX_TMP/udp_srv.log" || true)"
assert_ge "DROP_ND_DUPLICATE counted guest1's 5 frames from $DUP6" \
	"$(($(kvx_counter DROP_ND_DUPLICATE) - dup1))" 5
ip -n "$NS_G1" -6 addr del "$DUP6/64" dev "$G1_IF"

kvx_step "stateful inbound (the default): the server's own connection to a guest gets nothing, its ping comes in"
filtered0=$(kvx_counter DROP_FILTERED)
# curl -6's exit code from NS to URL within 2 s: 28 timed out, 7 refused.
curl_rc() { local rc=0; nsx "$1" curl -6 -s -o /dev/null -m 2 "$2" || rc=$?; echo "$rc"; }
# Nothing listens there: a SYN that came in would be refused at once;
# dropped, curl times out.
assert_eq "curl -6 server -> guest1: times out (28), not refused (7)" 28 "$(curl_rc "$NS_SRV" "http://[$G1_6]:8083/")"
assert_ge "DROP_FILTERED counted its SYNs" "$(($(kvx_counter DROP_FILTERED) - filtered0))" 1
# RFC 4890 4.3.1: echo requests reach the guests (rate limited).
assert_eq "ping -6 server -> guest1 at $G1_6: 5 of 5" 5 "$(kvx_ping_received "$NS_SRV" "$G1_6" 5)"
assert_eq "ping -6 LAN router -> guest2 at $G2_6: 5 of 5" 5 "$(kvx_ping_received "$NS_LAN" "$G2_6" 5)"
# The router learnt the guests at the uplink's MAC (our proxied NA).
up_mac=$(kvx_if_mac "$NS_HOST" "$UP")
assert_eq "the LAN router's neighbour entry for guest1 is the uplink's MAC" "$up_mac" \
	"$(ip -n "$NS_LAN" -6 -j neigh show "$G1_6" | "$KVX_PY" -c 'import json,sys; n=json.load(sys.stdin); print(n[0].get("lladdr","none") if n else "none")')"
assert_ge "ND_PROXY_NA counted" "$(kvx_counter ND_PROXY_NA)" 2

kvx_step "curl -6: a 4 MiB file, sha256 compared; the server sees the guests' own addresses"
mkdir -p "$KVX_TMP/www"
sum=$(kvx_random_file big.bin 4)
kvx_bg "$KVX_TMP/http.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$SRV6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_SRV" 8080
for ns in "$NS_G1" "$NS_G2"; do
	assert_eq "curl -6 ${ns##*-}: sha256" "$sum" "$(kvx_curl_sha "$ns" "http://[$SRV6]:8080/big.bin")"
done
assert_eq "HTTP server saw the guests' own addresses" "$(printf '%s\n' "$G1_6" "$G2_6" | sort -u | paste -sd' ')" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')"
# The guests' flows in conntrack, with their own addresses as ext.
ct=$(kvx conntrack list --json --proto tcp 2>/dev/null || true)
assert_contains "conntrack list: guest1's flow to the server, ext = its own address" "$G1_6 $G1_6" \
	"$("$KVX_PY" -c 'import json,sys; print("|".join(sorted(f["int_addr"]+" "+f["ext_addr"] for f in json.load(sys.stdin) if f["family"] == "ipv6")))' <<<"$ct" 2>/dev/null || echo error)"

kvx_step "top --json: each guest's relayed IPv6 counted under its MAC, named by its IPv6 address"
# The guests sent no IPv4: kvx_nd names them.  Each downloaded 4 MiB in
# frames (headers on top).
j=$(kvx top --bridge "$BR" --json --interval 0.2 2>&1 || true)
for g in "$NS_G1 $G1_IF $G1_6" "$NS_G2 $G2_IF $G2_6"; do
	read -r ns ifc a6 <<<"$g"
	mac=$(kvx_if_mac "$ns" "$ifc")
	row() { kvx_top_guest "$j" "$mac" "$1"; }
	assert_eq "top --json ${ns##*-}: its IPv6 address listed" True "$(row "'$a6' in r['addrs']")"
	assert_ge "top --json ${ns##*-}: bytes in >= the 4 MiB it downloaded" "$(row 'r["bytes_in"]')" 4194304
	assert_ge "top --json ${ns##*-}: packets out (its requests and ACKs)" "$(row 'r["pkts_out"]')" 10
done

kvx_step "the host's own sockets reach the relay guests: a /128 route per guest on the bridge"
# The host's route to the /64 is the uplink's (it would solicit the guests
# on the LAN): the daemon routes each guest address to the bridge, with
# its own routing protocol number (odhcpd's relay mode does the same).
relay_routes() { ip -n "$NS_HOST" -6 route show dev "$BR" proto 107 | awk '{print $1}' | sort | paste -sd' '; }
must kvx_wait_for 10 "routes to both guests on $BR (proto 107)" \
	bash -c "[[ \$(ip -n '$NS_HOST' -6 route show dev '$BR' proto 107 | grep -c -e '^$G1_6 ' -e '^$G2_6 ') == 2 ]]"
assert_eq "no route for the host's own address nor the LAN's" "$(printf '%s\n' "$G1_6" "$G2_6" | sort | paste -sd' ')" "$(relay_routes)"
assert_eq "ping -6 host -> guest1: 5 of 5" 5 "$(kvx_ping_received "$NS_HOST" "$G1_6" 5)"
assert_eq "ping -6 host -> guest2: 5 of 5" 5 "$(kvx_ping_received "$NS_HOST" "$G2_6" 5)"
kvx_bg "$KVX_TMP/http_g2.log" ip netns exec "$NS_G2" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$G2_6" --directory "$KVX_TMP/www" 8082
kvx_wait_tcp_listen 10 "$NS_G2" 8082
assert_eq "curl -6 host -> guest2: sha256" "$sum" "$(kvx_curl_sha "$NS_HOST" "http://[$G2_6]:8082/big.bin")"
assert_eq "guest2's server saw the host's uplink address" "$UP6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http_g2.log" | sort -u | paste -sd' ')"

kvx_step "relay mappings: map add '[guest2]:8082' --proto tcp lets the server in under the stateful policy, nothing else"
# guest2's server on 8082 (above): beyond the router, filtered until the
# mapping opens the port; then only that port of that guest.
assert_eq "before: curl -6 server -> guest2:8082 times out (28)" 28 "$(curl_rc "$NS_SRV" "http://[$G2_6]:8082/big.bin")"
out=$(kvx map add "[$UP6]:8082" --proto tcp 2>&1) && kvx_fail "map add of the uplink's address succeeded: $out"
assert_contains "map add of the host's own address: refused, naming it" "$UP6 is an address of this host" "$out"
assert_eq "... in one line" 1 "$(printf '%s
' "$out" | wc -l)"
out=$(kvx map add "[2001:db8:9::5]:22" --proto tcp 2>&1) && kvx_fail "map add off the prefix succeeded: $out"
assert_contains "map add off the relay prefix: refused" "2001:db8:9::5 is not in the relay prefix 2001:db8:1::/64" "$out"
must kvx map add "[$G2_6]:8082" --proto tcp
relay_map() { kvx_json "[m['type'] + ' ' + m['state'] for m in d['mappings'] if m['ext'] == '[$G2_6]:8082'][0]" "$(kvx map list --json 2>/dev/null)"; }
assert_eq "map list --json: a relay mapping, active" "relay active" "$(relay_map)"
seen=$(wc -l <"$KVX_TMP/http_g2.log")
assert_eq "curl -6 server -> guest2:8082 through the relay mapping: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_SRV" "http://[$G2_6]:8082/big.bin")"
assert_eq "guest2's server saw the server's own address" "$SRV6" \
	"$(tail -n +$((seen + 1)) "$KVX_TMP/http_g2.log" | awk '/"GET /{print $1}' | sort -u | paste -sd' ')"
relay_owner() { kvx_json "[m['owner'] for m in d['mappings'] if m['ext'] == '[$G2_6]:8082'][0]" "$(kvx map list --json 2>/dev/null)"; }
assert_eq "map list --json: the mapping is guest2's (its MAC recorded by the first packet)" \
	"$(kvx_if_mac "$NS_G2" "$G2_IF")" "$(relay_owner)"
ct=$(kvx conntrack list --json --proto tcp 2>/dev/null || true)
assert_contains "conntrack list: the server's connection in, to guest2's own address and port" \
	"$G2_6:8082<-$SRV6 inbound" \
	"$("$KVX_PY" -c 'import json,sys; print("|".join(f["int_addr"]+":"+str(f["int_port"])+"<-"+f["rem_addr"]+(" inbound" if "inbound" in f["flags"] else "") for f in json.load(sys.stdin) if f["family"] == "ipv6"))' <<<"$ct" 2>/dev/null || echo error)"
assert_eq "another port of guest2 stays filtered (curl times out)" 28 "$(curl_rc "$NS_SRV" "http://[$G2_6]:8083/")"
assert_eq "guest1's port 8082 stays filtered" 28 "$(curl_rc "$NS_SRV" "http://[$G1_6]:8082/")"
out=$(kvx map del "[$G2_6]:8082" --proto tcp 2>&1) || kvx_fail "map del: $out"
assert_contains "map del drops the mapping's flow (the server's connection)" "(1 flow(s) dropped)" "$out"
assert_eq "after map del: curl -6 server -> guest2:8082 times out again" 28 "$(curl_rc "$NS_SRV" "http://[$G2_6]:8082/big.bin")"

kvx_step "attach --ipv6 relay --ipv6-inbound open: the server reaches the guests"
kvx_daemon_stop
kvx_attach_bg --ipv6 relay --ipv6-inbound open || kvx_fatal "cannot attach"
assert_eq "config: ipv6_inbound recorded" open \
	"$("$KVX_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["instances"][0].get("ipv6_inbound"))' "$KVX_CFG" 2>/dev/null || echo error)"
# Inbound to a guest's own address, from beyond the router: no NAT.
assert_eq "ping -6 server -> guest1 at $G1_6: 5 of 5" 5 "$(kvx_ping_received "$NS_SRV" "$G1_6" 5)"
assert_eq "ping -6 LAN router -> guest2 at $G2_6: 5 of 5" 5 "$(kvx_ping_received "$NS_LAN" "$G2_6" 5)"
# And a server on a guest, reached from beyond the router.
kvx_bg "$KVX_TMP/http_g1.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$G1_6" --directory "$KVX_TMP/www" 8081
kvx_wait_tcp_listen 10 "$NS_G1" 8081
assert_eq "curl -6 server -> guest1: sha256" "$sum" "$(kvx_curl_sha "$NS_SRV" "http://[$G1_6]:8081/big.bin")"
assert_eq "guest1's server saw the server's own address" "$SRV6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http_g1.log" | sort -u | paste -sd' ')"

kvx_step "attach --clamp-mss 1300: relayed IPv6 SYNs arrive with MSS 1280 both ways"
# The receivers' sniffers verify checksums: what leaves the uplink and the
# server is finalized in software (the guests' stay partial).
nsx "$NS_HOST" ethtool -K "$UP" tx off >/dev/null
nsx "$NS_SRV" ethtool -K "$SRV_IF" tx off >/dev/null
kvx_daemon_stop
kvx_attach_bg --ipv6 relay --ipv6-inbound open --clamp-mss 1300 || kvx_fatal "cannot attach with --clamp-mss"
kvx_mss6_step 1280 "$G2_6"

kvx_step "a guest that takes another guest's address gets nothing"
spoof0=$(kvx_counter DROP_SPOOF_MAC)
ip -n "$NS_G2" -6 addr add "$G1_6/128" dev "$G2_IF" nodad noprefixroute
got=$( (nsx "$NS_G2" ping -n -q -c 3 -i 0.2 -W 1 -I "$G1_6" "$SRV6" 2>/dev/null || true) | awk '/received/{print $4}')
assert_eq "guest2 from $G1_6 -> server: 0 of 3" 0 "${got:-0}"
assert_ge "DROP_SPOOF_MAC counted them" "$(($(kvx_counter DROP_SPOOF_MAC) - spoof0))" 3
ip -n "$NS_G2" -6 addr del "$G1_6/128" dev "$G2_IF"
assert_eq "guest1 still reached at its address: 3 of 3" 3 "$(kvx_ping_received "$NS_SRV" "$G1_6" 3)"
assert_eq "curl -6 guest1 after the attempt: sha256" "$sum" "$(kvx_curl_sha "$NS_G1" "http://[$SRV6]:8080/big.bin")"

kvx_step "a guest that sends from a LAN host's address without DAD gets none of its traffic"
# The LAN router has FRAME6; guest1 takes it with nodad (no probe for
# kvmxdp to relay) and sends from it.  Its frames claim nothing: kvmxdp
# probes the LAN for the address, the router defends it, and the host and
# the server keep reaching the router there.
FRAME6=2001:db8:1::98
ip -n "$NS_LAN" -6 addr add "$FRAME6/64" dev "$LAN_UP_IF" nodad
lost0=$(($(kvx_counter DROP_ND_UNCLAIMED) + $(kvx_counter DROP_ND_DUPLICATE)))
ip -n "$NS_G1" -6 addr add "$FRAME6/128" dev "$G1_IF" nodad noprefixroute
got=$( (nsx "$NS_G1" ping -n -q -c 6 -i 0.5 -W 1 -I "$FRAME6" "$SRV6" 2>/dev/null || true) | awk '/received/{print $4}')
assert_eq "guest1 from $FRAME6 -> server: 0 of 6" 0 "${got:-0}"
assert_ge "DROP_ND_UNCLAIMED/DROP_ND_DUPLICATE counted them" \
	"$(($(kvx_counter DROP_ND_UNCLAIMED) + $(kvx_counter DROP_ND_DUPLICATE) - lost0))" 6
assert_eq "no route for $FRAME6 to the bridge (proto 107)" "" \
	"$(ip -n "$NS_HOST" -6 route show dev "$BR" proto 107 | grep -F "$FRAME6 " || true)"
ip -n "$NS_HOST" -6 neigh flush dev "$UP" "$FRAME6" 2>/dev/null || true
assert_eq "ping -6 host -> LAN router at $FRAME6: 3 of 3" 3 "$(kvx_ping_received "$NS_HOST" "$FRAME6" 3)"
assert_eq "the host's neighbour entry for $FRAME6 is the LAN router's MAC, on the uplink" "$lan_mac" \
	"$(ip -n "$NS_HOST" -6 -j neigh show dev "$UP" "$FRAME6" | "$KVX_PY" -c 'import json,sys; n=json.load(sys.stdin); print(n[0].get("lladdr","none") if n else "none")')"
assert_eq "ping -6 server -> LAN router at $FRAME6: 3 of 3" 3 "$(kvx_ping_received "$NS_SRV" "$FRAME6" 3)"
ip -n "$NS_G1" -6 addr del "$FRAME6/128" dev "$G1_IF"
ip -n "$NS_LAN" -6 addr del "$FRAME6/64" dev "$LAN_UP_IF"

kvx_step "a guest's own address without DAD is its own once kvmxdp's probe found it free"
OWN6=2001:db8:1::77
ip -n "$NS_G1" -6 addr add "$OWN6/128" dev "$G1_IF" nodad noprefixroute
must kvx_wait_for 10 "guest1 reaches the server from $OWN6" \
	ip netns exec "$NS_G1" ping -n -q -c 1 -W 1 -I "$OWN6" "$SRV6"
assert_eq "ping -6 guest1 from $OWN6 -> server: 3 of 3" 3 \
	"$( (nsx "$NS_G1" ping -n -q -c 3 -i 0.2 -W 1 -I "$OWN6" "$SRV6" 2>/dev/null || true) | awk '/received/{print $4}')"
must kvx_wait_for 5 "a route for $OWN6 to the bridge (proto 107)" \
	bash -c "ip -n '$NS_HOST' -6 route show dev '$BR' proto 107 | grep -qF '$OWN6 '"
ip -n "$NS_G1" -6 addr del "$OWN6/128" dev "$G1_IF"

kvx_step "a guest's DAD for an address another guest holds fails"
# guest1 holds OWN6 (kvx_nd) but no longer answers for it, as a guest that
# took a sibling's predictable address before the sibling booted: guest2's
# DAD for it must fail (kvmxdp answers the probe from the bridge), not
# succeed on an address whose packets would all be dropped.
ip -n "$NS_G2" -6 addr add "$OWN6/128" dev "$G2_IF" noprefixroute
g2_dadfailed() { ip -n "$NS_G2" -6 -o addr show dev "$G2_IF" | grep -F " $OWN6/128 " | grep -q dadfailed; }
must kvx_wait_for 10 "guest2's $OWN6 dadfailed (guest1's address)" g2_dadfailed
ip -n "$NS_G2" -6 addr del "$OWN6/128" dev "$G2_IF"

kvx_step "a LAN host's forged router advertisement moves nothing"
# A LAN host (not the host's router) announces 2001:db8:66::/64 and
# deprecates $N1: the host's kernel takes both (it accepts any RA on the
# link), and may prefer the forged one; relay keeps $N1, which the host's
# router announces, and says so.
FORGED=2001:db8:66::/64
for _ in 1 2 3 4 5 6; do
	nsx "$NS_LAN" "$KVX_PY" "$KVX_LIBDIR/nd6_tool.py" ra "$LAN_UP_IF" fe80::6666 \
		"$FORGED:7200:3600" "$N1:7200:0"
	sleep 1
done
must kvx_wait_for 10 "the host's kernel took the forged prefix" \
	bash -c "ip -n '$NS_HOST' -6 addr show dev '$UP' | grep -q 'inet6 2001:db8:66:'"
must kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" "relay: the uplink also has prefix $FORGED"
assert_eq "status: the relay prefix is still $N1" "$N1" \
	"$(kvx_json 'i["ipv6_relay_prefix"]' "$(kvx_status_json)")"
assert_eq "the daemon never switched to $FORGED" 0 "$(grep -c -- "-> $FORGED" "$KVX_DAEMON_LOG" || true)"
assert_eq "ping -6 guest1 -> server: 3 of 3" 3 "$(kvx_ping_received "$NS_G1" "$SRV6" 3)"
ip -n "$NS_HOST" -6 addr flush dev "$UP" to "$FORGED" 2>/dev/null || true
ip -n "$NS_HOST" -6 route del "$FORGED" dev "$UP" 2>/dev/null || true

kvx_step "another router advertising on the bridge (radvd as libvirt's dnsmasq): kvmxdp stays silent, status warns"
printf 'interface %s {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 4;\n\tprefix fd42:5::/64 { AdvOnLink on; AdvAutonomous on; };\n};\n' \
	"$BR" >"$KVX_TMP/radvd-br.conf"
kvx_bg "$KVX_TMP/radvd-br.log" ip netns exec "$NS_HOST" radvd -n -m stderr -C "$KVX_TMP/radvd-br.conf" \
	-p "$KVX_TMP/radvd-br.pid"
RADVD_BR_PID=$KVX_LAST_PID
must kvx_wait_file_contains 15 "$KVX_DAEMON_LOG" "another program on this host advertises on $BR"
foreign_warned() { kvx_json 'i["warnings"]' | grep -q "another router advertises on $BR"; }
must kvx_wait_for 10 "status warns of the other router" foreign_warned
assert_contains "status text: the warning" "another router advertises on $BR (" "$(kvx status --bridge "$BR")"
kvx_kill_pid "$RADVD_BR_PID"

kvx_step "counters, checksums and the host's forwarding"
st=$(kvx_status_json)
assert_ge "RELAY_OUT counted" "$(kvx_counter RELAY_OUT)" 20
assert_ge "RELAY_IN counted" "$(kvx_counter RELAY_IN)" 20
assert_eq "no TCP FIN/RST of the guests' flows dropped as outside the window" 0 "$(kvx_counter DROP_TCP_WINDOW)"
assert_ge "status: the guests' addresses in kvx_nd" "$(kvx_json 'i["relay_addresses"]["entries"]' "$st")" 2
for ns in "$NS_G1" "$NS_G2" "$NS_SRV" "$NS_HOST" "$NS_LAN"; do
	assert_eq "Icmp6InCsumErrors/Tcp in ${ns##*-}" "0" "$(kvx_snmp6 "$ns" Icmp6InCsumErrors)"
done
fwd=$(($(kvx_fwd6_datagrams) - FWD6_0))
assert_le "host Ip6OutForwDatagrams moved by $fwd: kvmxdp forwarded, not the kernel" "$fwd" 10
kvx_step "detach removes the routes to the guests"
kvx_daemon_stop
kvx detach --bridge "$BR" >/dev/null || kvx_fatal "detach"
assert_eq "no kvmxdp route left on $BR" "" "$(relay_routes)"
assert_eq "detach put the uplink's accept_ra back (1)" 1 \
	"$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$UP/accept_ra")"
kvx_finish
