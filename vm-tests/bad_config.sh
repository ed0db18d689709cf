#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/bad_config.sh: the daemon outlives whatever its config and the
# network contain.  While it runs, with traffic through the datapath:
#  - the config is hand-edited into invalid JSON, then into valid JSON with
#    a value the CLI refuses (a forward to a guest outside the subnet): the
#    daemon logs one line per distinct error (not one per tick), keeps its
#    last good state (ping, curl, the LAN reaching the forward), keeps
#    collecting garbage (every flow expires) and keeps following the
#    bridge's ports (a port added meanwhile enters kvx_xdev);
#  - a good config written back is picked up (its changed forward works);
#  - `--uplink auto` meets a default route via a device whose name is no
#    UTF-8 (the kernel takes any byte but '/', ':' and blanks): one line,
#    the uplink stays, the config stays valid JSON, GC goes on, and the
#    guests are back out once that route is gone.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, gw .1) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, gw .1) --+ bridge kb<id> (192.168.122.1/24), host ns
#                      (HTTP :80 in each guest)      + ports kn<id>, ko<id> added by the test
#                                                     host ns: uplink ku<id> 10.77.0.2/24,
#                                                              default via 10.77.0.1   <- kvmxdp
#                                                              kx\xff<id> 10.79.0.2/24 (last step)
#   lan ns:    router, kl<id> 10.77.0.1/24 (towards host), ky<id> 10.79.0.1/24,
#              kr<id> 10.78.0.1/24 (towards server), ip_forward=1 (here only)
#   server ns: ks<id> 10.78.0.2/24, default via 10.78.0.1 (HTTP :8080); no route to
#              192.168.122.0/24
#
# Usage: bad_config.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
# Four rounds of GC expiry (a 5 s sweep each) and two attaches.
KVX_TIMEOUT=${KVX_TIMEOUT:-170}
kvx_init "${1:-}"
kvx_topology_up
kvx_assert_offloads
kvx_http_server
echo hello >"$KVX_TMP/www/hello"
kvx_guest_http_servers
# The bridge's MAC fixed, as libvirt does: a bridge whose address was never
# set takes the lowest of its ports', and the ports this test adds would
# change it under the guests' ARP caches.
ip -n "$NS_HOST" link set "$BR" address "$(ip -n "$NS_HOST" -o link show "$BR" |
	sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"

# Short timeouts: GC empties the table within a sweep or two of the last packet.
TIMEOUTS=tcp_syn_sent=2,tcp_established=2,tcp_fin_wait=2,tcp_time_wait=2,tcp_close=2,udp=2,udp_stream=2,icmp=2
kvx_attach_bg --timeouts "$TIMEOUTS" || kvx_fatal "cannot attach"
must assert_ok "map add uplink:8080 $G2_IP:80 --proto tcp" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
GOOD=$(cat "$KVX_CFG")

# The datapath serves guests and the LAN: guest1 pings and fetches from the
# server, the LAN reaches guest2 through the forward on uplink PORT.
traffic_works() { # TAG PORT
	assert_eq "$1: guest1 ping to the server" 5 "$(kvx_ping_received "$NS_G1" "$SRV_IP" 5)"
	assert_eq "$1: guest1 curl from the server" hello "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/hello")"
	assert_eq "$1: LAN -> $UP_IP:$2 reaches guest2" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:$2/who")"
}

# GC runs: with no traffic left, every flow of the table expires.  The
# datapath deletes nothing itself (below a full table): only the daemon's
# sweeps empty it.
gc_runs() { # TAG
	if kvx_wait_datapath 20 "$1: GC expired every flow (kvx_ct empty)" 'ct == 0'; then
		kvx_pass "$1: GC expired every flow"
	fi
}

# The daemon's bridge-port sync runs: a port added now enters the
# datapath's device table (kvx_xdev, written by the daemon) within seconds.
in_xdev() { # IFNAME
	local idx
	idx=$(ip -n "$NS_HOST" -o link show dev "$1" | cut -d: -f1)
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_xdev" | "$KVX_PY" -c '
import json, sys
idx = int(sys.argv[1])
sys.exit(0 if any(int.from_bytes(bytes(int(x, 16) for x in e["key"]), "little") == idx
                  for e in json.load(sys.stdin)) else 1)' "$idx"
}
port_sync_runs() { # TAG PORT_NAME
	ip -n "$NS_HOST" link add "$2" type veth peer name "${2}p"
	ip -n "$NS_HOST" link set "$2" master "$BR"
	ip -n "$NS_HOST" link set "$2" up
	ip -n "$NS_HOST" link set "${2}p" up
	if kvx_wait_for 10 "$1: the new bridge port $2 in kvx_xdev" in_xdev "$2"; then
		kvx_pass "$1: the new bridge port $2 in kvx_xdev"
	fi
}

# The edits replace the file (as an editor saving to a new file does), so
# that the daemon never reads half of one.
write_cfg() { cat >"$KVX_CFG.new" && mv "$KVX_CFG.new" "$KVX_CFG"; }

daemon_alive() { # TAG
	if kill -0 "$KVX_DAEMON_PID" 2>/dev/null; then
		kvx_pass "$1: daemon (pid $KVX_DAEMON_PID) still running"
	else
		kvx_fail "$1: the daemon ended: $(tail -n 5 "$KVX_DAEMON_LOG")"
	fi
}

# Lines of the daemon's log containing TEXT (fixed string).
log_count() { grep -cF -- "$1" "$KVX_DAEMON_LOG" || true; }

kvx_step "good config: traffic, GC, port sync"
traffic_works "good config" 8080
gc_runs "good config"
port_sync_runs "good config" "kn$KVX_ID"

kvx_step "config hand-edited into invalid JSON"
printf '{ "version": 1, "instances": [ { "bridge": ' | write_cfg
LINE="kvmxdp: warning: mappings: config $KVX_CFG: invalid JSON"
kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" "$LINE" || kvx_fail "no '$LINE' in the daemon's log"
traffic_works "invalid JSON" 8080
gc_runs "invalid JSON"
port_sync_runs "invalid JSON" "ko$KVX_ID"
daemon_alive "invalid JSON"
# The waits above took several of the daemon's 1 s ticks, each of which
# re-read the file.
assert_eq "invalid JSON: logged once, not at every tick" 1 "$(log_count "invalid JSON")"
out=$(kvx status 2>&1) && kvx_fail "status accepted the invalid config"
assert_contains "invalid JSON: status refuses it naming the file" "kvmxdp: error: config $KVX_CFG: invalid JSON" "$out"

kvx_step "config hand-edited into valid JSON with a value the CLI refuses"
# The forward's guest moved out of the guest subnet (`map add` refuses it);
# applying it would cut the LAN off guest2.
"$KVX_PY" -c '
import json, sys
c = json.loads(sys.argv[1])
c["instances"][0]["mappings"][0]["guest"] = "192.168.200.12:80"
print(json.dumps(c, indent=2))' "$GOOD" | write_cfg
LINE="kvmxdp: warning: mappings: config $KVX_CFG: instances[0].mappings[0]: mapping 'uplink:8080 192.168.200.12:80 tcp': guest 192.168.200.12 is not a host address in $SUBNET"
kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" "$LINE" || kvx_fail "no '$LINE' in the daemon's log"
traffic_works "bad value" 8080
gc_runs "bad value"
port_sync_runs "bad value" "kq$KVX_ID"
daemon_alive "bad value"
assert_eq "bad value: logged once, not at every tick" 1 "$(log_count "192.168.200.12")"

kvx_step "a good config written back is picked up"
# As `map del` + `map add` would leave it: the forward on 8081 now.
"$KVX_PY" -c '
import json, sys
c = json.loads(sys.argv[1])
c["instances"][0]["mappings"][0]["ext"] = "uplink:8081"
print(json.dumps(c, indent=2))' "$GOOD" | write_cfg
kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" "kvmxdp: mappings: recovered" ||
	kvx_fail "no 'mappings: recovered' in the daemon's log"
fwd_on() { [[ $(kvx_http_get "$NS_LAN" "http://$UP_IP:$1/who") == guest2 ]]; }
if kvx_wait_for 10 "the restored config's forward on 8081" fwd_on 8081; then
	kvx_pass "restored: LAN -> $UP_IP:8081 reaches guest2"
fi
assert_eq "restored: 8080 is no forward any more" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
traffic_works "restored" 8081
daemon_alive "restored"
assert_eq "one warning line per distinct error in all" 2 "$(grep -c '^kvmxdp: warning: mappings:' "$KVX_DAEMON_LOG" || true)"

kvx_step "--uplink auto meets a default route via a device named kx\\xff$KVX_ID"
kvx_daemon_stop
ip -n "$NS_HOST" route del default
ip -n "$NS_HOST" route add default via "$LAN_IP" dev "$UP" metric 600
UP=auto kvx_attach_bg --timeouts "$TIMEOUTS" || kvx_fatal "cannot attach --uplink auto"
traffic_works "auto, via $UP" 8081
BAD=$'kx\xff'$KVX_ID BAD_SHOWN="kx\\xff$KVX_ID"
kvx_veth "$NS_HOST" "$BAD" "$NS_LAN" "ky$KVX_ID"
ip -n "$NS_HOST" addr add 10.79.0.2/24 dev "$BAD"
ip -n "$NS_LAN" addr add 10.79.0.1/24 dev "ky$KVX_ID"
ip -n "$NS_HOST" route add default via 10.79.0.1 dev "$BAD" metric 100
LINE="invalid interface name '$BAD_SHOWN'; staying on $UP"
kvx_wait_file_contains 10 "$KVX_DAEMON_LOG" "$LINE" || kvx_fail "no '$LINE' in the daemon's log"
gc_runs "bad device name"
daemon_alive "bad device name"
assert_eq "bad device name: logged once" 1 "$(log_count "kx")"
assert_ok "the config is still valid JSON" "$KVX_PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$KVX_CFG"
assert_eq "status: the uplink stays $UP" "$UP" "$(kvx_json 'i["uplink_device"]')"
ip -n "$NS_HOST" route del default via 10.79.0.1 dev "$BAD"
traffic_works "the bad route gone" 8081
daemon_alive "the bad route gone"

kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
kvx_assert_no_netfilter
kvx_finish
