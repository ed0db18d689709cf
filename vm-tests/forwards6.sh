#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/forwards6.sh: IPv6 static mappings with NAT66 on, with real
# clients on the LAN:
#  1. bad `map add` arguments (an unbracketed address with a port, '[' without
#     ']', IPv4 and IPv6 mixed, a guest outside the prefix, a forward in the
#     NAT port range, 1:1 on an address of the uplink, one endpoint: a relay
#     mapping where NAT66 runs): one line naming the
#     value, non-zero exit, config and maps unchanged;
#  2. `map add '[uplink]:2222' '[G1]:8080' --proto tcp`: the LAN host's curl -6
#     to [uplink6]:2222 gets guest1's file (sha256), guest1's server logs the
#     LAN host's own address; `map list` (text and --json) and `conntrack
#     list` show it bracketed;
#  3. a forward on a literal address '[2001:db8:1::5]:8081' -> guest2: `map
#     add` runs duplicate address detection for it (RFC 4862), then the
#     datapath answers the LAN host's Neighbour Solicitations for it with the
#     uplink's MAC (no static neighbour entry anywhere: the LAN host resolves
#     it); and a UDP forward '[uplink]:5300' -> guest2:5301 (socat echo);
#     Hairpin: guest2 curls guest1's [uplink]:2222 and guest1 guest2's literal
#     forward (sha256), each seen by the other as the uplink's address; the
#     host's own curl -6 to both (and to the 1:1 address below) reaches the
#     guest (cgroup connect6 hooks), which sees the bridge's address;
#  4. 1:1 2001:db8:1::101 <-> guest1, announced the same way: ping -6 and
#     curl -6 from the LAN reach guest1, guest1's own connection to the LAN
#     host leaves from 2001:db8:1::101; GRE (raw sockets) both ways;
#  5. a 1:1 address the LAN host already has (2001:db8:1::77 <-> guest2): `map add`
#     warns, `map list`/`status` show it in conflict with the reason, the
#     datapath answers no Neighbour Solicitation for it and the LAN host's
#     own traffic on it (its HTTP server, reached from the host) is
#     untouched; once the LAN host drops it, the daemon's next duplicate
#     address detection finds it free: announced, the LAN reaches guest2
#     through it;
#  6. the uplink's IPv6 address replaced (::2 -> ::3): the daemon moves
#     `[uplink]` forwards to the new address, curl through it again;
#  7. `map del` of each: the LAN host's connections get nowhere any more;
#  8. a pending IPv6 forward (as a libvirt hook records it) is made by the
#     daemon, curl -6 through it.
# Checksums: no Icmp6InCsumErrors/Tcp/Udp6 errors in any namespace.
#
#   guest1 ns  kg1<id> fd42:98::11/64 --+  HTTP :8080 (the file), 1:1 2001:db8:1::101
#   guest2 ns  kg2<id> fd42:98::12/64 --+  HTTP :8080, UDP echo :5301
#     (default via the bridge's link-local)
#   host ns    bridge kb<id> fd42:98::1/64            <- kvmxdp (NAT66 from the bridge's ULA)
#              uplink ku<id> 2001:db8:1::2/64 (later ::3), default via 2001:db8:1::1
#   lan ns     kl<id> 2001:db8:1::1/64: the LAN host (curl, ping, socat; HTTP :8090),
#              later also 2001:db8:1::77 (HTTP :8091) until it drops it
#
# Usage: forwards6.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_topology_up

PFX=fd42:98::/64 BR6=fd42:98::1 G1_6=fd42:98::11 G2_6=fd42:98::12
UP6=2001:db8:1::2 UP6B=2001:db8:1::3 LAN6=2001:db8:1::1
LIT6=2001:db8:1::5 ONE6=2001:db8:1::101 DUP6=2001:db8:1::77

kvx_step "IPv6 addressing"
v6on() { nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0; }
for ns in "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN"; do v6on "$ns"; done
ip -n "$NS_HOST" -6 addr add "$BR6/64" dev "$BR" nodad
guest6() { # NS IF ADDR
	nsx "$1" sysctl -qw "net.ipv6.conf.$2.accept_ra=0"
	ip -n "$1" -6 addr add "$3/64" dev "$2" nodad
}
guest6 "$NS_G1" "$G1_IF" "$G1_6"
guest6 "$NS_G2" "$G2_IF" "$G2_6"
nsx "$NS_HOST" sysctl -qw "net.ipv6.conf.$UP.accept_ra=0"
ip -n "$NS_HOST" -6 addr add "$UP6/64" dev "$UP" nodad
ip -n "$NS_HOST" -6 route add default via "$LAN6" dev "$UP"
ip -n "$NS_LAN" -6 addr add "$LAN6/64" dev "$LAN_UP_IF" nodad
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)
ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
ip -n "$NS_G2" -6 route add default via "$BR_LL" dev "$G2_IF"
UPMAC=$(kvx_if_mac "$NS_HOST" "$UP")
# The MAC the LAN host's neighbour table holds for an address ('' if none).
lan_neigh() { ip -n "$NS_LAN" -6 -j neigh show "$1" dev "$LAN_UP_IF" | "$KVX_PY" -c 'import json,sys; n=json.load(sys.stdin); print(n[0].get("lladdr", "") if n else "")'; }
# lan_ns_answers ADDR: a Neighbour Solicitation for ADDR from the LAN host
# (nd6_tool.py), and how many Neighbour Advertisements for ADDR carrying the
# uplink's MAC come back within 1.5 s (kvmxdp's, not the LAN host's own
# kernel's): a count of this address only (the datapath's ND_PROXY_NA also
# moves for the LAN host's neighbour checks of the other mapped addresses).
lan_ns_answers() {
	nsx "$NS_LAN" "$KVX_PY" "$KVX_LIBDIR/nd6_tool.py" ns "$LAN_UP_IF" "$LAN6" "$1" 1.5 |
		grep -ci -- "$UPMAC" || true
}

kvx_step "servers: guests' HTTP on :8080, guest2's UDP echo, the LAN host's HTTP on :8090"
mkdir -p "$KVX_TMP/www"
sum=$(kvx_random_file big.bin 2)
http_in() { # NS ADDR PORT NAME
	kvx_bg "$KVX_TMP/http.$4.log" ip netns exec "$1" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
		--bind "$2" --directory "$KVX_TMP/www" "$3"
	kvx_wait_tcp_listen 10 "$1" "$3"
}
http_in "$NS_G1" "$G1_6" 8080 g1
http_in "$NS_G2" "$G2_6" 8080 g2
http_in "$NS_LAN" "$LAN6" 8090 lan
kvx_bg "$KVX_TMP/udp.g2.log" ip netns exec "$NS_G2" socat "UDP6-RECVFROM:5301,bind=[$G2_6],fork" EXEC:cat
kvx_wait_udp_listen 10 "$NS_G2" 5301
# Clients seen by a server: the address column of its access log.
clients() { awk '/"GET /{print $1}' "$KVX_TMP/http.$1.log" | sort -u | paste -sd' '; }
lan_curl() { kvx_curl_sha "$NS_LAN" "$1"; }

kvx_step "attach: NAT66 on the bridge's prefix (a fixed NAT port range: forwards must stay out of it)"
kvx_attach_bg --nat-ports 61000-65535 || kvx_fatal "cannot attach"
st=$(kvx_status_json)
assert_eq "status: ipv6_mode" nat66 "$(kvx_json 'i["ipv6_mode"]' "$st")"
assert_eq "status: NAT66 address" "$UP6" "$(kvx_json 'i["ipv6_uplink_addr"]' "$st")"
assert_eq "before any mapping: [uplink]:2222 is the host's (refused)" "" "$(lan_curl "http://[$UP6]:2222/big.bin")"

kvx_step "bad map add arguments: one line naming the value, nothing changed"
CFG_BEFORE=$(cat "$KVX_CFG")
bad_map() { # NEEDLE ARGS...
	local needle=$1 rc=0
	shift
	kvx map add "$@" >"$KVX_TMP/bad.out" 2>"$KVX_TMP/bad.err" || rc=$?
	assert_ne "map add $*: exit code" 0 "$rc"
	assert_eq "map add $*: one line on stderr" 1 "$(grep -c . "$KVX_TMP/bad.err" || true)"
	assert_contains "map add $*: the error" "$needle" "$(cat "$KVX_TMP/bad.err")"
}
bad_map "'fd42:98::11:22' is ambiguous" "[uplink]:2222" "fd42:98::11:22" --proto tcp
bad_map "'[fd42:98::11]:22'" "[uplink]:2222" "fd42:98::11:22" --proto tcp
bad_map "'[fd42:98::11:22': '[' without ']'" "[uplink]:2222" "[fd42:98::11:22" --proto tcp
bad_map "mixes IPv4 and IPv6" "uplink:2222" "[$G1_6]:22" --proto tcp
bad_map "mixes IPv4 and IPv6" "$ONE6" 192.168.122.11
bad_map "is not a host address in $PFX" "[uplink]:2222" "[fd42:97::11]:22" --proto tcp
bad_map "overlap the NAT port range" "[uplink]:62000" "[$G1_6]:22" --proto tcp
bad_map "'$UP6 $G1_6': $UP6 is the uplink's own address, which belongs to the host" "$UP6" "$G1_6"
bad_map "is not on the uplink's prefix 2001:db8:1::/64 (use --force" "2001:db8:9::1" "$G1_6"
# One endpoint (a relay mapping) where NAT66 runs: most likely a NAT66
# mapping without its GUEST.
bad_map "runs no IPv6 relay mode (attach --ipv6 relay); a NAT66 mapping is EXT GUEST" "$ONE6"
bad_map "needs a GUEST" "[uplink]:2222" --proto tcp
assert_eq "config unchanged by the refused commands" "$CFG_BEFORE" "$(cat "$KVX_CFG")"
assert_eq "no static pair in kvx_bind6" 0 "$(kvx_json 'i["bindings6"]["entries"]')"

kvx_step "port forward on the uplink's IPv6 address: [uplink]:2222 -> [$G1_6]:8080"
out=$(kvx map add "[uplink]:2222" "[$G1_6]:8080" --proto tcp 2>&1)
assert_contains "map add: what was mapped" "mapped [uplink]:2222 [$G1_6]:8080 tcp" "$out"
assert_eq "curl -6 from the LAN to [$UP6]:2222: sha256" "$sum" "$(lan_curl "http://[$UP6]:2222/big.bin")"
assert_eq "guest1's server saw the LAN host's own address" "$LAN6" "$(clients g1)"
ml=$(kvx map list --json)
assert_eq "map list --json: the forward" "ipv6 [uplink]:2222 [$G1_6]:8080 tcp port-forward $UP6 active" \
	"$("$KVX_PY" -c 'import json,sys; m=json.load(sys.stdin)["mappings"][0]; print(m["family"], m["ext"], m["guest"], m["proto"], m["type"], m["ext_addr"], m["state"])' <<<"$ml")"
assert_contains "map list text: bracketed" "[uplink]:2222" "$(kvx map list)"
assert_contains "status text: the mapping" "[$G1_6]:8080" "$(kvx status --bridge "$BR")"
ct=$(kvx conntrack list --json --guest "$G1_6" 2>/dev/null || true)
assert_eq "conntrack list: the LAN host's flow, static, on [uplink]:2222" "$LAN6 $UP6 2222 8080" \
	"$("$KVX_PY" -c 'import json,sys; f=[f for f in json.load(sys.stdin) if f["ext_port"] == 2222][0]; print(f["rem_addr"], f["ext_addr"], f["ext_port"], f["int_port"])' <<<"$ct" 2>/dev/null || echo error)"
assert_contains "conntrack list text: bracketed" "ext=[$UP6]:2222" "$(kvx conntrack list --guest "$G1_6" 2>/dev/null || true)"
assert_eq "the config records it in the CLI's spelling" "[uplink]:2222 [$G1_6]:8080 tcp" \
	"$("$KVX_PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))["instances"][0]["mappings"][0]; print(m["ext"], m["guest"], m["proto"])' "$KVX_CFG")"
bad_map "external ports overlap" "[$UP6]:2222" "[$G2_6]:8080" --proto tcp

kvx_step "port forward on a literal address [$LIT6]:8081 -> [$G2_6]:8080, UDP [uplink]:5300 -> [$G2_6]:5301"
kvx map add "[$LIT6]:8081" "[$G2_6]:8080" --proto tcp >/dev/null
kvx map add "[uplink]:5300" "[$G2_6]:5301" --proto udp >/dev/null
assert_eq "curl -6 from the LAN to [$LIT6]:8081: sha256" "$sum" "$(lan_curl "http://[$LIT6]:8081/big.bin")"
assert_eq "guest2's server saw the LAN host's own address" "$LAN6" "$(clients g2)"
r=$(echo "hello over [uplink]:5300" | nsx "$NS_LAN" timeout 5 socat -t 2 - "UDP6:[$UP6]:5300" 2>&1 || true)
assert_eq "UDP echo through [uplink]:5300" "hello over [uplink]:5300" "$r"
assert_eq "another port of $LIT6 is not forwarded" "" "$(lan_curl "http://[$LIT6]:8082/big.bin")"
assert_eq "the LAN host resolved $LIT6 by Neighbour Solicitation: the uplink's MAC" "$UPMAC" "$(lan_neigh "$LIT6")"
# Hairpin: one guest to the other's forwards, turned around on the bridge.
hp0=$(kvx_counter XLATE_HAIRPIN)
assert_eq "hairpin: guest2 curls guest1's [uplink]:2222: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_G2" "http://[$UP6]:2222/big.bin")"
assert_contains "hairpin: guest1's server saw guest2 as the uplink's address" "$UP6" "$(clients g1)"
assert_eq "hairpin: guest1 curls guest2's [$LIT6]:8081: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_G1" "http://[$LIT6]:8081/big.bin")"
assert_contains "hairpin: guest2's server saw guest1 as the uplink's address" "$UP6" "$(clients g2)"
assert_eq "hairpin: counted XLATE_HAIRPIN" 1 "$(($(kvx_counter XLATE_HAIRPIN) > hp0 ? 1 : 0))"
# The host's own sockets (cgroup connect6 hooks): straight to the guest.
assert_eq "host: curl -6 [$UP6]:2222: sha256" "$sum" "$(kvx_curl_sha "$NS_HOST" "http://[$UP6]:2222/big.bin")"
assert_eq "host: curl -6 [$LIT6]:8081: sha256" "$sum" "$(kvx_curl_sha "$NS_HOST" "http://[$LIT6]:8081/big.bin")"
assert_contains "host: guest1 saw the bridge's address" "$BR6" "$(clients g1)"
assert_eq "map list: $LIT6 active (announced after DAD)" active \
	"$(kvx map list --json | "$KVX_PY" -c 'import json,sys; print([m["state"] for m in json.load(sys.stdin)["mappings"] if m["ext"] == "['"$LIT6"']:8081"][0])')"

kvx_step "1:1 $ONE6 <-> $G1_6"
kvx map add "$ONE6" "$G1_6" >/dev/null
assert_eq "ping -6 from the LAN to $ONE6: 5 of 5" 5 "$(kvx_ping_received "$NS_LAN" "$ONE6" 5)"
assert_eq "curl -6 from the LAN to [$ONE6]:8080 (port kept): sha256" "$sum" "$(lan_curl "http://[$ONE6]:8080/big.bin")"
assert_eq "guest1's own connection to the LAN host: sha256" "$sum" "$(kvx_curl_sha "$NS_G1" "http://[$LAN6]:8090/big.bin")"
assert_eq "the LAN host's server saw guest1 as $ONE6" "$ONE6" "$(clients lan)"
assert_eq "host: curl -6 [$ONE6]:8080 (1:1): sha256" "$sum" "$(kvx_curl_sha "$NS_HOST" "http://[$ONE6]:8080/big.bin")"
# A protocol without ports, translated by address alone: GRE (47) by raw
# sockets (no GRE driver needed): guest1 answers what it gets, prefixed.
kvx_bg "$KVX_TMP/gre.g1.log" ip netns exec "$NS_G1" "$KVX_PY" -u -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 47)
s.bind((sys.argv[1], 0))
print("listening", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    print("from", addr[0], data.hex(), flush=True)
    s.sendto(b"echo:" + data, (addr[0], 0))' "$G1_6"
kvx_wait_file_contains 10 "$KVX_TMP/gre.g1.log" listening
gre=$(nsx "$NS_LAN" timeout 10 "$KVX_PY" -c '
import os, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 47)
s.settimeout(3)
data = os.urandom(64)
s.sendto(data, (sys.argv[1], 0))
while True:
    got, addr = s.recvfrom(65535)
    if got == b"echo:" + data:
        print(addr[0], "ok"); break' "$ONE6" 2>&1 || true)
assert_eq "GRE from the LAN to $ONE6: guest1's answer comes back from $ONE6" "$ONE6 ok" "$gre"
assert_contains "guest1 got the GRE packet from the LAN host's own address" "from $LAN6 " \
	"$(cat "$KVX_TMP/gre.g1.log")"

kvx_step "a mapped address the LAN host has ($DUP6): conflict, untouched; free again: announced"
ip -n "$NS_LAN" -6 addr add "$DUP6/64" dev "$LAN_UP_IF" nodad
http_in "$NS_LAN" "$DUP6" 8091 dup
out=$(kvx map add "$DUP6" "$G2_6" 2>&1) || kvx_fatal "map add $DUP6: $out"
assert_contains "map add: made" "mapped $DUP6 $G2_6" "$out"
assert_contains "map add: warns that the address is in use" "$DUP6 is in use on the uplink's network" "$out"
dup_state() { kvx map list --json | "$KVX_PY" -c 'import json,sys; m=[m for m in json.load(sys.stdin)["mappings"] if m["ext"] == "'"$DUP6"'"][0]; print(m["state"], "|", m["reason"])'; }
st=$(dup_state)
assert_contains "map list --json: conflict" "conflict | another node on the uplink's network has $DUP6" "$st"
assert_contains "status: warns of the conflict" "is suspended (conflict)" "$(kvx status --bridge "$BR")"
assert_eq "no Neighbour Advertisement of ours for $DUP6" 0 "$(lan_ns_answers "$DUP6")"
assert_eq "the LAN host's own server on $DUP6, from the host: sha256" "$sum" \
	"$(kvx_curl_sha "$NS_HOST" "http://[$DUP6]:8091/big.bin")"
assert_eq "the LAN host's neighbour entry for its own address is not ours" "" "$(lan_neigh "$DUP6")"
sleep 3
assert_contains "still in conflict after the daemon's own DAD" "conflict" "$(dup_state)"
ip -n "$NS_LAN" -6 addr del "$DUP6/64" dev "$LAN_UP_IF"
dup_active() { [[ $(dup_state) == "active | None" ]]; }
must kvx_wait_for 45 "$DUP6 announced once the LAN host dropped it" dup_active
assert_ge "the same solicitation now gets our Neighbour Advertisement" "$(lan_ns_answers "$DUP6")" 1
assert_eq "curl -6 from the LAN to [$DUP6]:8080 reaches guest2: sha256" "$sum" "$(lan_curl "http://[$DUP6]:8080/big.bin")"
assert_eq "the LAN host resolves $DUP6 to the uplink's MAC now" "$UPMAC" "$(lan_neigh "$DUP6")"
kvx map del "$DUP6" "$G2_6" >/dev/null

kvx_step "the uplink's IPv6 address replaced: $UP6 -> $UP6B, [uplink] forwards follow"
ip -n "$NS_HOST" -6 addr add "$UP6B/64" dev "$UP" nodad
ip -n "$NS_HOST" -6 addr del "$UP6/64" dev "$UP"
now_ext() { [[ $(kvx map list --json | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)["mappings"][0]["ext_addr"])') == "$1" ]]; }
must kvx_wait_for 15 "the forward on $UP6B" now_ext "$UP6B"
assert_eq "curl -6 to [$UP6B]:2222: sha256" "$sum" "$(lan_curl "http://[$UP6B]:2222/big.bin")"
r=$(echo "again" | nsx "$NS_LAN" timeout 5 socat -t 2 - "UDP6:[$UP6B]:5300" 2>&1 || true)
assert_eq "UDP echo through [$UP6B]:5300" "again" "$r"
assert_eq "the literal forward stays: curl -6 to [$LIT6]:8081" "$sum" "$(lan_curl "http://[$LIT6]:8081/big.bin")"

kvx_step "map del: the LAN host's connections get nowhere any more"
kvx map del "[uplink]:2222" "[$G1_6]:8080" --proto tcp >/dev/null
kvx map del "[$LIT6]:8081" "[$G2_6]:8080" --proto tcp >/dev/null
kvx map del "$ONE6" "$G1_6" >/dev/null
assert_eq "curl -6 to [$UP6B]:2222 after map del" "" "$(lan_curl "http://[$UP6B]:2222/big.bin")"
assert_eq "curl -6 to [$LIT6]:8081 after map del" "" "$(lan_curl "http://[$LIT6]:8081/big.bin")"
assert_eq "ping -6 $ONE6 after map del: 0 of 3" 0 "$(kvx_ping_received "$NS_LAN" "$ONE6" 3 || echo 0)"
kvx map del "[uplink]:5300" "[$G2_6]:5301" --proto udp >/dev/null
assert_eq "map list: none left" "no mappings" "$(kvx map list)"
assert_eq "no static pair left in kvx_bind6" 0 "$(kvx_json 'i["bindings6"]["entries"]')"

kvx_step "a pending IPv6 forward (a libvirt network hook's, recorded before the bridge was attached): the daemon makes it"
# As record_pending writes it (the lock held: no kvmxdp command runs
# now), then the daemon's next sync, prompted by SIGHUP, makes it.
"$KVX_PY" - "$KVX_CFG" "$G1_6" <<'PY'
import json, os, sys
path, g1 = sys.argv[1:3]
cfg = json.load(open(path))
cfg["instances"][0].setdefault("mappings", []).append({
    "ext": "[uplink]:2230", "guest": "[%s]:8080" % g1, "proto": "tcp",
    "add_address": False, "libvirt_network": "default", "origin": "metadata",
    "pending": "bridge is not attached (test)"})
with open(path + ".new", "w") as f:
    json.dump(cfg, f)
os.chmod(path + ".new", 0o600)
os.rename(path + ".new", path)
PY
kill -HUP "$KVX_DAEMON_PID"
state6() { kvx map list --json | "$KVX_PY" -c 'import json,sys; print(" ".join(m["state"] for m in json.load(sys.stdin)["mappings"] if m["ext"] == "[uplink]:2230"))'; }
is_active6() { [[ $(state6) == active ]]; }
kvx_wait_for 15 "the pending IPv6 forward made" is_active6 ||
	kvx_log "map list: $(kvx map list --json); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
assert_eq "map list: active" active "$(state6)"
assert_contains "the daemon said so" "pending mapping made: [uplink]:2230 [$G1_6]:8080 tcp network=default" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "curl -6 to [$UP6B]:2230: sha256" "$sum" "$(lan_curl "http://[$UP6B]:2230/big.bin")"
assert_ok "map del [uplink]:2230 (its one record)" kvx map del "[uplink]:2230" "[$G1_6]:8080" --proto tcp
assert_eq "map list: none left" "no mappings" "$(kvx map list)"

kvx_step "checksums"
kvx_assert_no_csum_errors6 "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN"
kvx_finish
