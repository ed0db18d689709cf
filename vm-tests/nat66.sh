#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/nat66.sh: NAT66 with kvmxdp's default options.  The bridge has a
# ULA /64 (as libvirt's <ip family='ipv6' address='fd42::1' prefix='64'/>
# gives it), the uplink a global address by SLAAC from a LAN router running
# radvd, and the server knows no route to the guests' prefix: only
# translated traffic can get an answer.  attach without --ipv6/--subnet6 must
# pick NAT66 on the bridge's prefix and say why; then real clients from the
# guests (ping -6, curl -6 of a file with its sha256, iperf3 -6 both ways,
# socat UDP): the server sees only the uplink's address, no checksum error
# anywhere (the guests' veths keep tx checksum offload: partial checksums),
# and the host's Ip6OutForwDatagrams barely moves although the host ns
# forwards IPv6 (all.forwarding=1, accept_ra=2 on the uplink): kvmxdp
# forwarded, not the kernel.  status and conntrack list show the IPv6 flows.
# SLAAC renumbering (the old prefix deprecated, a new one announced, the old
# address gone): the old address's flows are flushed, new flows leave from
# the new address.  `conntrack flush --guest` midway through a TCP stream:
# the guest's next segment picks the connection up, the echo comes back
# byte for byte on the one connection.
#
#   guest1 ns  kg1<id> fd42:99::11/64 --+
#   guest2 ns  kg2<id> fd42:99::12/64 --+ bridge kb<id> fd42:99::1/64 (+ its fe80::),
#                (default via the bridge's link-local)    host ns      <- kvmxdp
#                                          uplink ku<id>: SLAAC 2001:db8:1::/64, then
#                                          2001:db8:2::/64; default via the router
#   lan ns     router: kl<id> 2001:db8:1::1/64 (+ 2001:db8:2::1/64) + radvd,
#              kr<id> 2001:db8:78::1/64; IPv6 forwarding; no route to fd42:99::/64
#   server ns  ks<id> 2001:db8:78::2/64, default via 2001:db8:78::1
#
# (The IPv4 side of the standard topology is there too, untouched.)
#
# Usage: nat66.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools radvd
kvx_topology_up

PFX=fd42:99::/64 BR6=fd42:99::1 G1_6=fd42:99::11 G2_6=fd42:99::12
N1=2001:db8:1::/64 N2=2001:db8:2::/64
SRV6=2001:db8:78::2 RTR6=2001:db8:78::1

kvx_step "IPv6 addressing"
v6on() { nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0; }
for ns in "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN" "$NS_SRV"; do v6on "$ns"; done
ip -n "$NS_HOST" -6 addr add "$BR6/64" dev "$BR" nodad
guest6() { # NS IF ADDR
	nsx "$1" sysctl -qw "net.ipv6.conf.$2.accept_ra=0"
	ip -n "$1" -6 addr add "$3/64" dev "$2" nodad
}
guest6 "$NS_G1" "$G1_IF" "$G1_6"
guest6 "$NS_G2" "$G2_IF" "$G2_6"
# The host already forwards IPv6 (a Docker or libvirt host often does):
# whatever kvmxdp handed to the kernel would be routed out, and counted.
nsx "$NS_HOST" sysctl -qw net.ipv6.conf.all.forwarding=1 "net.ipv6.conf.$UP.accept_ra=2" \
	"net.ipv6.conf.$UP.autoconf=1" "net.ipv6.conf.$UP.use_tempaddr=0"
nsx "$NS_LAN" sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n "$NS_LAN" -6 addr add 2001:db8:1::1/64 dev "$LAN_UP_IF" nodad
ip -n "$NS_LAN" -6 addr add 2001:db8:2::1/64 dev "$LAN_UP_IF" nodad
ip -n "$NS_LAN" -6 addr add "$RTR6/64" dev "$LAN_SRV_IF" nodad
ip -n "$NS_SRV" -6 addr add "$SRV6/64" dev "$SRV_IF" nodad
ip -n "$NS_SRV" -6 route add default via "$RTR6"

RADVD_CONF=$KVX_TMP/radvd.conf RADVD_PID="" RADVD_N=0
radvd_conf() { # PREFIX-BLOCKS
	umask 022
	printf 'interface %s {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 4;\n\t%s\n};\n' \
		"$LAN_UP_IF" "$1" >"$RADVD_CONF"
}
prefix_block() { # PREFIX PREFERRED
	echo "prefix $1 { AdvOnLink on; AdvAutonomous on; AdvValidLifetime 600; AdvPreferredLifetime $2; };"
}
radvd_start() {
	kvx_bg "$KVX_TMP/radvd.$((++RADVD_N)).log" ip netns exec "$NS_LAN" radvd -n -m stderr \
		-C "$RADVD_CONF" -p "$KVX_TMP/radvd.pid"
	RADVD_PID=$KVX_LAST_PID
}
# The uplink's SLAAC address in NET, not tentative or deprecated ('' if none).
slaac_in() {
	ip -n "$NS_HOST" -6 -j addr show dev "$UP" scope global | "$KVX_PY" -c '
import ipaddress, json, sys
net = ipaddress.ip_network(sys.argv[1])
for l in json.load(sys.stdin):
    for a in l.get("addr_info", []):
        if ipaddress.ip_address(a["local"]) in net and not a.get("tentative") and not a.get("deprecated"):
            print(a["local"]); sys.exit(0)' "$1"
}
radvd_conf "$(prefix_block "$N1" 300)"
radvd_start
must kvx_wait_for 20 "a SLAAC address in $N1 on the uplink" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$UP' scope global -tentative) ]]"
UP6=$(slaac_in "$N1")
must kvx_wait_for 10 "the uplink's IPv6 default route from the RA" \
	bash -c "ip -n '$NS_HOST' -6 route show default | grep -q '$UP'"
kvx_log "uplink IPv6 address $UP6"
# The guests' router is the bridge's link-local, as after libvirt's RAs.
brll() { ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1; }
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(brll)
ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
ip -n "$NS_G2" -6 route add default via "$BR_LL" dev "$G2_IF"

kvx_step "before kvmxdp: the guests' IPv6 leaves with its private source and gets no answer"
FWD6_0=$(kvx_fwd6_datagrams)
assert_eq "ping -6 without kvmxdp: no reply (the router knows no fd42:99::/64)" 0 \
	"$(kvx_ping_received "$NS_G1" "$SRV6" 3 || echo 0)"

kvx_step "bad --ipv6: one line naming the value, nothing changed"
STATE=$(kvx_host_state)
bad_ipv6() { # VALUE NEEDLE
	local rc=0
	timeout 5 ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" \
		--uplink "$UP" --ipv6 "$1" >"$KVX_TMP/bad.out" 2>"$KVX_TMP/bad.err" </dev/null || rc=$?
	if ((rc == 124)); then
		kvx_fail "--ipv6 $1 was accepted"
		kvx detach --bridge "$BR" >/dev/null 2>&1 || true
		return 0
	fi
	assert_ne "--ipv6 $1: exit code" 0 "$rc"
	assert_eq "--ipv6 $1: one line on stderr" 1 "$(grep -c . "$KVX_TMP/bad.err" || true)"
	assert_contains "--ipv6 $1: the error names it" "$2" "$(cat "$KVX_TMP/bad.err")"
	if [[ $(kvx_host_state) == "$STATE" ]]; then
		kvx_pass "--ipv6 $1: nothing changed in the host ns"
	else
		kvx_fail "--ipv6 $1: the host ns changed"
	fi
}
bad_ipv6 nat64 "kvmxdp: error: invalid --ipv6 'nat64': use auto, nat66, relay or off"

kvx_step "attach with the default options: NAT66 on the bridge's prefix, and why"
kvx_attach_bg || kvx_fatal "cannot attach"
FWD6_0=$(kvx_fwd6_datagrams)
# The LAN router counts every packet that reaches it from the uplink with a
# source in the guests' prefix: none may, from here on (a leak would be
# the host or kvmxdp passing a guest's packet on untranslated).
kvx_lan6_count_from "$PFX"
st=$(kvx_status_json)
assert_eq "status: ipv6_mode" nat66 "$(kvx_json 'i["ipv6_mode"]' "$st")"
assert_eq "status: ipv6_choice" auto "$(kvx_json 'i["ipv6_choice"]' "$st")"
assert_eq "status: the guests' prefix is the bridge's" "$PFX" "$(kvx_json 'i["ipv6_subnet"]' "$st")"
assert_eq "status: why" "guests' prefix $PFX from bridge '$BR' address $BR6/64" \
	"$(kvx_json 'i["ipv6_mode_why"]' "$st")"
assert_eq "status: the uplink's IPv6 address in kvx_cfg6" "$UP6" "$(kvx_json 'i["ipv6_uplink_addr"]' "$st")"
assert_eq "status: the bridge's link-local is the guests' gateway" "$BR_LL" "$(kvx_json 'i["ipv6_gw_addr"]' "$st")"
assert_eq "status: the IPv6 programs, tail-called by the TC programs" \
	'["kvx_br6", "kvx_up6", "kvx_br6_relay", "kvx_up6_relay", "kvx_br6_hairpin"]' \
	"$(kvx_json '[p["prog"] for p in i["ipv6_programs"]]' "$st")"
assert_eq "status: kvx_ct6 sized as kvx_ct" "$(kvx_json 'i["conntrack"]["max_entries"]' "$st")" \
	"$(kvx_json 'i["conntrack6"]["max_entries"]' "$st")"
assert_eq "bridge IPv6 forwarding on (bpf_fib_lookup)" 1 "$(kvx_sysctl_get "$NS_HOST" "net/ipv6/conf/$BR/forwarding")"
text=$(kvx status --bridge "$BR")
assert_contains "status text: mode, prefix, address" "ipv6 nat66 $PFX -> $UP6, " "$text"
assert_contains "status text: the guests' addresses known, why" " address(es) known (guests' prefix $PFX from bridge '$BR'" "$text"
assert_contains "status text: the IPv6 programs" "kvx_br6" "$text"
progs=$(nsx "$NS_HOST" bpftool prog show 2>/dev/null | grep -oE 'name kvx_(br|up)6' | sort -u | paste -sd' ' || true)
assert_eq "bpftool prog show lists them" "name kvx_br6 name kvx_up6" "$progs"

kvx_step "ping -6 from both guests"
for ns in "$NS_G1" "$NS_G2"; do
	assert_eq "ping -6 ${ns##*-} -> server: 5 of 5" 5 "$(kvx_ping_received "$ns" "$SRV6" 5)"
done

kvx_step "curl -6: a 4 MiB file, sha256 compared"
mkdir -p "$KVX_TMP/www"
sum=$(kvx_random_file big.bin 4)
kvx_bg "$KVX_TMP/http.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$SRV6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_SRV" 8080
for ns in "$NS_G1" "$NS_G2"; do
	assert_eq "curl -6 ${ns##*-}: sha256" "$sum" "$(kvx_curl_sha "$ns" "http://[$SRV6]:8080/big.bin")"
done
assert_eq "HTTP server saw only the uplink's address" "$UP6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')"

kvx_step "top --json: each guest's IPv6 counted under its MAC, named by its IPv6 address"
# The guests sent no IPv4: kvx_guest does not know them, the NAT66
# bindings do.  Each downloaded 4 MiB in frames (headers on top).
j=$(kvx top --bridge "$BR" --json --interval 0.2 2>&1 || true)
for g in "$NS_G1 $G1_IF $G1_6" "$NS_G2 $G2_IF $G2_6"; do
	read -r ns ifc a6 <<<"$g"
	mac=$(kvx_if_mac "$ns" "$ifc")
	row() { kvx_top_guest "$j" "$mac" "$1"; }
	assert_eq "top --json ${ns##*-}: its IPv6 address" "$a6" "$(row '" ".join(r["addrs"])')"
	assert_ge "top --json ${ns##*-}: bytes in >= the 4 MiB it downloaded" "$(row 'r["bytes_in"]')" 4194304
	assert_ge "top --json ${ns##*-}: packets out (its requests and ACKs)" "$(row 'r["pkts_out"]')" 10
done

kvx_step "iperf3 -6, both directions"
kvx_bg "$KVX_TMP/iperf3.log" ip netns exec "$NS_SRV" iperf3 -s -B "$SRV6" -p 5201
kvx_wait_tcp_listen 10 "$NS_SRV" 5201
kvx_iperf3_both_ways "$NS_G1" "$SRV6" 5201 "$UP6"

kvx_step "socat UDP: an echo from the server"
kvx_bg "$KVX_TMP/udp6.log" ip netns exec "$NS_SRV" socat -v "UDP6-RECVFROM:9001,bind=[$SRV6],fork" EXEC:cat
kvx_wait_udp_listen 10 "$NS_SRV" 9001
for ns in "$NS_G1" "$NS_G2"; do
	r=$(echo "hello from ${ns##*-}" | nsx "$ns" timeout 5 socat -t 2 - "UDP6:[$SRV6]:9001" 2>&1 || true)
	assert_eq "UDP echo to ${ns##*-}" "hello from ${ns##*-}" "$r"
done
# The UDP flows are the guests' in conntrack, on the uplink's address.
ct=$(kvx conntrack list --json --proto udp 2>/dev/null || true)
assert_eq "conntrack list: the guests' UDP flows, translated to the uplink's address" \
	"$G1_6 $UP6|$G2_6 $UP6" \
	"$("$KVX_PY" -c 'import json,sys; print("|".join(sorted(f["int_addr"]+" "+f["ext_addr"] for f in json.load(sys.stdin) if f["family"] == "ipv6" and f["rem_port"] == 9001)))' <<<"$ct" 2>/dev/null || echo error)"
assert_contains "conntrack list text: bracketed" "guest=[$G1_6]:" "$(kvx conntrack list --proto udp 2>/dev/null || true)"
assert_contains "conntrack list text: the remote" "remote=[$SRV6]:9001" "$(kvx conntrack list --guest "$G1_6" 2>/dev/null || true)"
st=$(kvx_status_json)
assert_ge "status: IPv6 flows in kvx_ct6" "$(kvx_json 'i["conntrack6"]["entries"]' "$st")" 4
assert_ge "status: IPv6 bindings in kvx_bind6" "$(kvx_json 'i["bindings6"]["entries"]' "$st")" 4

kvx_step "checksums and the host's forwarding"
kvx_assert_no_csum_errors6 "$NS_G1" "$NS_G2" "$NS_SRV" "$NS_HOST" "$NS_LAN"
fwd=$(($(kvx_fwd6_datagrams) - FWD6_0))
assert_le "host Ip6OutForwDatagrams moved by $fwd: kvmxdp forwarded, not the kernel" "$fwd" 10

kvx_step "SLAAC renumbering: $N1 deprecated, $N2 announced, the old address goes"
old_flows() { kvx conntrack list --json 2>/dev/null | "$KVX_PY" -c 'import json,sys; print(sum(1 for f in json.load(sys.stdin) if f["ext_addr"] == sys.argv[1]))' "$1"; }
assert_ge "flows on $UP6 before" "$(old_flows "$UP6")" 1
radvd_conf "$(prefix_block "$N1" 0)
	$(prefix_block "$N2" 300)"
kill -HUP "$RADVD_PID"
must kvx_wait_for 20 "a SLAAC address in $N2" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$UP' scope global -tentative -deprecated to $N2) ]]"
UP6B=$(slaac_in "$N2")
kvx_log "new uplink address $UP6B"
# The address vanishes (its valid lifetime ending, sped up).
ip -n "$NS_HOST" -6 addr del "$UP6/64" dev "$UP"
now_addr() { [[ $(kvx_json 'i["ipv6_uplink_addr"]') == "$1" ]]; }
kvx_wait_for 10 "kvx_cfg6 follows to $UP6B" now_addr "$UP6B" || true
kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" "IPv6 address $UP6 -> $UP6B" || true
assert_contains "the daemon flushed the old address's flows" "IPv6 flow(s) and" \
	"$(grep "of $UP6\$" "$KVX_DAEMON_LOG" || true)"
assert_eq "no flow left on $UP6" 0 "$(old_flows "$UP6")"
assert_eq "curl -6 after renumbering: sha256" "$sum" "$(kvx_curl_sha "$NS_G1" "http://[$SRV6]:8080/big.bin")"
assert_eq "the new flow left from the new address" "$UP6B" "$(awk '/"GET /{a=$1} END{print a}' "$KVX_TMP/http.log")"
assert_eq "ping -6 after renumbering: 3 of 3" 3 "$(kvx_ping_received "$NS_G2" "$SRV6" 3)"
assert_ge "flows on $UP6B" "$(old_flows "$UP6B")" 1

kvx_step "conntrack flush covers the IPv6 flows; a live connection is picked up mid-stream"
# guest1 streams 600 kB over 8 s to an echo on the server (tcp_peer.py);
# its flows are flushed midway: the guest's next segment picks the flow up
# and the echo comes back byte for byte, on the one connection.
PEER=$KVX_LIBDIR/tcp_peer.py
kvx_bg "$KVX_TMP/echo6.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$PEER" echo "$SRV6" 9006
kvx_wait_for 10 "the echo on [$SRV6]:9006" grep -q '^listening' "$KVX_TMP/echo6.log"
kvx_bg "$KVX_TMP/stream6.log" ip netns exec "$NS_G1" "$KVX_PY" -u "$PEER" client "[$SRV6]:9006" \
	--bytes 600000 --secs 8
must kvx_wait_for 10 "the IPv6 stream connected" grep -q '^local=' "$KVX_TMP/stream6.log"
sleep 2 # midway
out=$(kvx conntrack flush --guest "$G1_6" 2>&1 || true)
assert_ge "flush --guest $G1_6 flushed the stream's flow ($out)" \
	"$(sed -n 's/^kvmxdp: flushed \([0-9]*\) flow.*/\1/p' <<<"$out" | head -n1)" 1
kvx_wait_for 40 "the stream's end" grep -qE '^(sent=|error)' "$KVX_TMP/stream6.log" || true
# "sent=N sha=S got=N sha=S": the echo byte for byte what was sent.
assert_eq "the stream's echo came back byte for byte across the flush" "600000 600000 same" \
	"$(awk '/^sent=/ { split($1, a, "="); split($3, b, "="); print a[2], b[2], ($2 == $4 ? "same" : "differs") }' \
		"$KVX_TMP/stream6.log")"
assert_eq "the server saw one connection (the same external port throughout)" 1 \
	"$(grep -c '^accept' "$KVX_TMP/echo6.log" || true)"

fwd=$(($(kvx_fwd6_datagrams) - FWD6_0))
assert_le "host Ip6OutForwDatagrams moved by $fwd in all" "$fwd" 10
assert_eq "packets from the guests' prefix $PFX on the LAN since attach" 0 "$(kvx_lan6_counted "$PFX")"
kvx_finish
