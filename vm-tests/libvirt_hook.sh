#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/libvirt_hook.sh: mappings declared in libvirt's XML, made and
# removed by the installed libvirt hooks run exactly as libvirt runs them
# (argv NAME OPERATION SUBOP EXTRA, the XML on stdin), checked with real
# traffic from the LAN host.  libvirt's files (the network definition with
# its static DHCP hosts, a domain's status) live under a temporary
# KVMXDP_LIBVIRT_ROOT; the DHCP leases in the status file attach reads.
#
#   guest1 ns (kg1<id> 192.168.122.11/24, HTTP :80) = domain "web1" (static DHCP host) --+
#   guest2 ns (kg2<id> 192.168.122.12/24, then .13, HTTP :80) = domain "db1" (a lease only) --+ bridge kb<id>
#                                                               host ns, kvmxdp, hooks:
#                                                               web1: uplink:2222 -> :80/tcp, 1:1 10.77.0.101
#                                                               db1:  uplink:8081 -> :80/tcp, moved with its lease
#                                                               app1 (no guest): uplink:8085 -> its lease's :80
#                                                               network "default": uplink:8082 -> guest2:80
#                                                               the host's own service on :2299 (map allow)
#                                                               uplink ku<id> 10.77.0.2/24
#   lan ns:    kl<id> 10.77.0.1/24 = "the LAN host" (curl, ping)
#
# Usage: libvirt_hook.sh KVMXDP_BINARY
KVX_TIMEOUT=${KVX_TIMEOUT:-270} # the ctest TIMEOUT is 300 (vm-tests/CMakeLists.txt)
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools gdb
# install writes hooks that run kvmxdp with this test's options; it gives
# the unit only directories named for kvmxdp.
KVX_CFG=$KVX_TMP/kvmxdp/kvmxdp.json
KVX_OPTS=(--bpffs "$BPFFS" --config "$KVX_CFG" --run-dir "$KVX_TMP/kvmxdp-run")
kvx_topology_up
kvx_guest_http_servers

EXT1=10.77.0.101
LV=$KVX_TMP/libvirt
LEASES=$KVX_TMP/leases.status
ROOT=$KVX_TMP/root
QHOOK=$ROOT/etc/libvirt/hooks/qemu.d/kvmxdp
NHOOK=$ROOT/etc/libvirt/hooks/network.d/kvmxdp
FAKEBIN=$KVX_TMP/fakebin
mac_of() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
G1_MAC=$(mac_of "$NS_G1" "$G1_IF")
G2_MAC=$(mac_of "$NS_G2" "$G2_IF")

# libvirt's network definition: the bridge, guest1's static DHCP host.
mkdir -p "$LV/etc/libvirt/qemu/networks"
cat >"$LV/etc/libvirt/qemu/networks/default.xml" <<XML
<network>
  <name>default</name>
  <forward mode='open'/>
  <bridge name='$BR' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.100' end='192.168.122.254'/>
      <host mac='${G1_MAC^^}' name='web1' ip='$G1_IP'/>
    </dhcp>
  </ip>
</network>
XML
# guest2's address is a lease only (libvirt's leaseshelper status file),
# which it does not have yet when its domain starts (first boot).
echo '[]' >"$LEASES"

domain_xml() { # NAME MAC METADATA: a running domain's XML as the qemu hook gets it
	cat <<XML
<domain type='kvm' id='7'>
  <name>$1</name>
  <metadata>$3</metadata>
  <devices>
    <interface type='network'>
      <mac address='$2'/>
      <source network='default' bridge='$BR'/>
      <target dev='vnet7'/>
    </interface>
  </devices>
</domain>
XML
}
NS='xmlns:kvmxdp="http://kvmxdp.org/xmlns/libvirt/1"'
WEB1_META="<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2222' to='80'/><kvmxdp:address external='$EXT1'/></kvmxdp:nat>"
DB1_META="<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='8081' to='80'/></kvmxdp:nat>"
domain_xml web1 "$G1_MAC" "$WEB1_META" >"$KVX_TMP/web1.xml"
domain_xml db1 "$G2_MAC" "$DB1_META" >"$KVX_TMP/db1.xml"

# The hook as libvirt runs it: in the host (here: its netns), NAME OP SUBOP
# EXTRA, the XML on stdin; stdout+stderr to $KVX_TMP/hook.out.  As libvirt
# does, the domain's status file is written before "started" (gone again
# when the hook fails it) and removed once it stopped: the daemon takes a
# domain without one, while libvirt's run directory exists, for one that is
# off (a host crash).  NO_STATUS=1: none written.
STATUS_DIR=$LV/run/libvirt/qemu
qhook() { # XMLFILE NAME OP SUBOP
	local st=$STATUS_DIR/$2.xml rc=0
	if [[ $3 == started && -z ${NO_STATUS:-} ]]; then
		mkdir -p "$STATUS_DIR"
		{ echo "<domstatus state='running'>"; cat "$1"; echo "</domstatus>"; } >"$st"
	fi
	nsx "$NS_HOST" env KVMXDP_LIBVIRT_ROOT="$LV" "$QHOOK" "$2" "$3" "$4" - <"$1" >"$KVX_TMP/hook.out" 2>&1 || rc=$?
	if [[ $3 == stopped || $3 == release ]] || [[ $3 == started && $rc != 0 ]]; then
		rm -f "$st"
	fi
	return $rc
}
web() { kvx_http_get "$NS_LAN" "http://$1/who"; }
vm_of() { # EXT: the "vm" of that mapping in map list --json
	kvx map list --json | python3 -c '
import json, sys
for m in json.load(sys.stdin)["mappings"]:
    if m["ext"] == sys.argv[1]:
        print(m["vm"] or m["libvirt_network"] or "-")' "$1"
}

# The daemon reads libvirt's files under $LV too (a running domain's
# status: its metadata's force='yes').
KVMXDP_LIBVIRT_ROOT="$LV" kvx_attach_bg --dhcp-leases "$LEASES" || kvx_fatal "cannot attach"
assert_ok "kvmxdp install --root" kvx install --root "$ROOT"
[[ -x $QHOOK && -x $NHOOK ]] || kvx_fatal "install wrote no hooks: $(find "$ROOT" -type f)"
assert_not_contains "the hooks never call virsh" virsh "$(cat "$QHOOK" "$NHOOK")"

kvx_step "nothing mapped before the domain starts"
assert_eq "LAN -> $UP_IP:2222" "" "$(web "$UP_IP:2222")"
assert_eq "ping $EXT1" 0 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
assert_ok "hook: web1 prepare (nothing to do)" qhook "$KVX_TMP/web1.xml" web1 prepare begin
assert_ok "hook: web1 start (nothing to do yet)" qhook "$KVX_TMP/web1.xml" web1 start begin
assert_eq "no mapping after prepare/start" "no mappings" "$(kvx map list)"

kvx_step "web1 started: its forward and 1:1 address (static DHCP host)"
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2222 reaches guest1:80" guest1 "$(web "$UP_IP:2222")"
assert_eq "guest1 sees the LAN host's own address" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_eq "LAN -> $EXT1:80 (1:1) reaches guest1" guest1 "$(web "$EXT1")"
assert_eq "ping $EXT1 answered" 3 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
assert_eq "map list: the forward is web1's" web1 "$(vm_of uplink:2222)"
assert_eq "map list: the 1:1 address is web1's" web1 "$(vm_of "$EXT1")"
assert_contains "map list (text) shows the VM" "web1" "$(kvx map list)"
assert_ok "hook: web1 started again (libvirtd restart): kept" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_contains "said so" "in place already" "$(cat "$KVX_TMP/hook.out")"
assert_eq "still 2 mappings" 2 "$(kvx map list --json | grep -c '"vm": "web1"')"

state_of() { # EXT: "STATE REASON" of that mapping in map list --json
	kvx map list --json | python3 -c '
import json, sys
for m in json.load(sys.stdin)["mappings"]:
    if m["ext"] == sys.argv[1]:
        print(m["state"], m["reason"] or "")' "$1"
}
kvx_step "db1 started before its first lease: libvirt starts it, the forward waits"
assert_ok "hook: db1 started (no lease yet) succeeds" qhook "$KVX_TMP/db1.xml" db1 started begin
assert_contains "the hook says it waits" "waits" "$(cat "$KVX_TMP/hook.out")"
assert_contains "map list: pending" "pending " "$(state_of uplink:8081)"
assert_contains "... and why" "no address for MAC $G2_MAC" "$(state_of uplink:8081)"
assert_eq "LAN -> $UP_IP:8081 before the lease" "" "$(web "$UP_IP:8081")"
kvx_step "db1's lease comes: the daemon makes its forward"
printf '[{"ip-address": "%s", "mac-address": "%s", "expiry-time": %d}]\n' \
	"$G2_IP" "$G2_MAC" $(($(date +%s) + 3600)) >"$LEASES.new"
mv "$LEASES.new" "$LEASES"
is_active() { [[ $(state_of "$1") == "active "* ]]; }
kvx_wait_for 10 "db1's forward made" is_active uplink:8081 ||
	kvx_log "map list: $(kvx map list --json); daemon: $(cat "$KVX_DAEMON_LOG")"
assert_eq "LAN -> $UP_IP:8081 reaches guest2:80" guest2 "$(web "$UP_IP:8081")"
assert_eq "map list: the forward is db1's" db1 "$(vm_of uplink:8081)"
assert_contains "the daemon said so" "pending mapping made: uplink:8081 $G2_IP:80 tcp vm=db1" "$(cat "$KVX_DAEMON_LOG")"

kvx_step "db1's lease moves to another address: the daemon moves its forward"
G2_NEW=192.168.122.13
ip -n "$NS_G2" addr del "$G2_IP/24" dev "$G2_IF"
ip -n "$NS_G2" addr add "$G2_NEW/24" dev "$G2_IF"
ip -n "$NS_G2" route replace default via "$GW_IP"
printf '[{"ip-address": "%s", "mac-address": "%s", "expiry-time": %d}]\n' \
	"$G2_NEW" "$G2_MAC" $(($(date +%s) + 3600)) >"$LEASES.new"
mv "$LEASES.new" "$LEASES"
forward_to() { kvx map list --json | grep -q "\"guest\": \"$1\""; }
kvx_wait_for 10 "db1's forward on $G2_NEW:80" forward_to "$G2_NEW:80" ||
	kvx_log "map list: $(kvx map list --json); daemon: $(cat "$KVX_DAEMON_LOG"); config: $(cat "$KVX_CFG")"
assert_eq "LAN -> $UP_IP:8081 reaches guest2 at $G2_NEW" guest2 "$(web "$UP_IP:8081")"
assert_contains "the daemon said so" "db1: $G2_IP -> $G2_NEW" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "map list: still db1's" db1 "$(vm_of uplink:8081)"

kvx_step "web1 stopped: its mappings are gone, db1's stay"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1.xml" web1 stopped end
assert_ok "hook: web1 release" qhook "$KVX_TMP/web1.xml" web1 release end
assert_eq "LAN -> $UP_IP:2222 after stop" "" "$(web "$UP_IP:2222")"
assert_eq "LAN -> $EXT1 after stop" "" "$(web "$EXT1")"
assert_eq "ping $EXT1 after stop" 0 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
assert_not_contains "map list has no web1" web1 "$(kvx map list --json)"
assert_eq "db1's forward stays" guest2 "$(web "$UP_IP:8081")"
assert_ok "hook: db1 stopped" qhook "$KVX_TMP/db1.xml" db1 stopped end
assert_eq "LAN -> $UP_IP:8081 after db1 stopped" "" "$(web "$UP_IP:8081")"

kvx_step "malformed metadata: one error line, libvirt's start fails, nothing applied"
domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2222' to='80'>" >"$KVX_TMP/bad1.xml"
domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2222' to='80'/><kvmxdp:forward proto='tcp' port='99999' to='80'/></kvmxdp:nat>" >"$KVX_TMP/bad2.xml"
for bad in bad1 bad2; do
	assert_fails "hook: web1 started with $bad.xml" qhook "$KVX_TMP/$bad.xml" web1 started begin
	assert_eq "$bad: one line of output" 1 "$(wc -l <"$KVX_TMP/hook.out")"
	assert_contains "$bad: an error line" "kvmxdp: error: " "$(cat "$KVX_TMP/hook.out")"
	assert_eq "$bad: nothing mapped" "no mappings" "$(kvx map list)"
	kvx_log "$bad: $(cat "$KVX_TMP/hook.out")"
done
assert_eq "LAN -> $UP_IP:2222 after the bad starts" "" "$(web "$UP_IP:2222")"

kvx_step "what may pass never fails libvirt's start: recorded as pending"
# A MAC with neither a host entry nor a lease.
domain_xml web1 "02:00:00:00:00:99" "$WEB1_META" >"$KVX_TMP/noaddr.xml"
assert_ok "hook: web1 started without an address" qhook "$KVX_TMP/noaddr.xml" web1 started begin
assert_contains "map list: its forward is pending" "pending " "$(state_of uplink:2222)"
assert_contains "... for want of an address" "no address for MAC 02:00:00:00:00:99" "$(state_of uplink:2222)"
assert_contains "... and its 1:1 address" "no address for MAC" "$(state_of "$EXT1")"
assert_eq "ping $EXT1: not answered" 0 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/noaddr.xml" web1 stopped end
assert_eq "the pending ones went" "no mappings" "$(kvx map list)"
# A 1:1 address of the home network while roaming (not on $UP_IP's).
ROAM_META="<kvmxdp:nat $NS><kvmxdp:address external='10.99.0.5'/></kvmxdp:nat>"
domain_xml web1 "$G1_MAC" "$ROAM_META" >"$KVX_TMP/roam.xml"
assert_ok "hook: web1 started with an address of another network" qhook "$KVX_TMP/roam.xml" web1 started begin
assert_contains "map list: pending" "pending " "$(state_of 10.99.0.5)"
assert_contains "... and why" "is not on the uplink's network" "$(state_of 10.99.0.5)"
# The administrator maps the same (routed to this host: --force) beside
# the hook's pending one: map del takes exactly what it names, the plain
# one, not the pending twin recorded first.
assert_ok "map add the same mapping (--force)" kvx map add 10.99.0.5 "$G1_IP" --force
assert_eq "map list: the twins" "active pending" "$(state_of 10.99.0.5 | cut -d' ' -f1 | sort | xargs)"
assert_ok "map del 10.99.0.5 $G1_IP" kvx map del 10.99.0.5 "$G1_IP"
assert_contains "the hook's pending one is left" "pending " "$(state_of 10.99.0.5)"
assert_eq "... alone" 1 "$(state_of 10.99.0.5 | wc -l)"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/roam.xml" web1 stopped end
assert_eq "the pending one went" "no mappings" "$(kvx map list)"

kvx_step "the host's own addresses and the uplink network's ends are no metadata's (nor map add's, --force or not)"
# A secondary address of the uplink (the RFC 5227 probe cannot see the
# host's own), another link's address, the network's first and last.
HOST2=10.77.0.50
ip -n "$NS_HOST" addr add "$HOST2/24" dev "$UP"
ip -n "$NS_HOST" addr add 10.77.0.60/32 dev lo
for ext in "$HOST2" 10.77.0.60 10.77.0.0 10.77.0.255; do
	domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:address external='$ext'/></kvmxdp:nat>" >"$KVX_TMP/host-addr.xml"
	assert_ok "hook: web1 started with external='$ext' (libvirt starts it)" qhook "$KVX_TMP/host-addr.xml" web1 started begin
	case $ext in
	10.77.0.0) why="external $ext is the network address of the uplink's network 10.77.0.0/24" ;;
	10.77.0.255) why="external $ext is the broadcast address of the uplink's network 10.77.0.0/24" ;;
	*) why="$ext is an address of this host" ;;
	esac
	assert_contains "map list: $ext pending, saying why" "pending mapping '$ext $G1_IP': $why" "$(state_of "$ext")"
	assert_ok "hook: web1 stopped" qhook "$KVX_TMP/host-addr.xml" web1 stopped end
	assert_fails "map add $ext $G1_IP --force" kvx map add "$ext" "$G1_IP" --force
	assert_contains "... saying why" "$why" "$(kvx map add "$ext" "$G1_IP" --force 2>&1 || true)"
done
assert_eq "LAN -> $HOST2:80 reaches no guest" "" "$(web "$HOST2")"
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
# A forward takes its ports only: one on a secondary address is allowed.
assert_ok "map add $HOST2:8090 -> guest1:80" kvx map add "$HOST2:8090" "$G1_IP:80" --proto tcp
assert_eq "LAN -> $HOST2:8090 reaches guest1" guest1 "$(web "$HOST2:8090")"
assert_ok "map del $HOST2:8090" kvx map del "$HOST2:8090" "$G1_IP:80" --proto tcp
ip -n "$NS_HOST" addr del 10.77.0.60/32 dev lo
ip -n "$NS_HOST" addr del "$HOST2/24" dev "$UP"

kvx_step "a 1:1 address the host holds waits; made once the host drops it; pending again when the host takes it"
# The laptop's DHCP address on this network only: not a failed VM start.
HOST3=10.77.0.70
ip -n "$NS_HOST" addr add "$HOST3/24" dev "$UP"
domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:address external='$HOST3'/></kvmxdp:nat>" >"$KVX_TMP/host3.xml"
assert_ok "hook: web1 started with external='$HOST3', the host's (libvirt starts it)" \
	qhook "$KVX_TMP/host3.xml" web1 started begin
out=$(cat "$KVX_TMP/hook.out")
kvx_log "hook: $out"
assert_eq "the hook warns in one line" 1 "$(grep -c 'warning' <<<"$out")"
assert_contains "... naming the address and why" "$HOST3 is an address of this host" "$(grep warning <<<"$out")"
HOST3_WHY="pending mapping '$HOST3 $G1_IP': $HOST3 is an address of this host"
assert_contains "map list --json: pending, why" "$HOST3_WHY" "$(state_of "$HOST3")"
assert_contains "map list: pending, why" "$HOST3 is an address of this host" "$(kvx map list | grep "$HOST3")"
st_of() { # EXT: "STATE REASON" in status --json
	kvx status --json | python3 -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    for m in i.get("mappings", []):
        if m["ext"] == sys.argv[1]:
            print(m["state"], m["reason"] or "")' "$1"
}
assert_contains "status --json: pending, why" "$HOST3_WHY" "$(st_of "$HOST3")"
assert_ne "LAN -> $HOST3:80 is the host's (no server), not guest1's" guest1 "$(web "$HOST3")"
# doctor: one finding for it, with the command that frees the address
# (a secondary address of the uplink), run here as printed.
doc=$(kvx doctor --bridge "$BR" --arp-wait 0 --json 2>&1 || true)
doc_of() { # FIELD of the one "mappings" finding
	python3 -c '
import json, sys
fs = [f for r in json.load(sys.stdin)["reports"] for f in r["findings"] if f["check"] == "mappings"]
print(len(fs) == 1 and (fs[0][sys.argv[1]] or "") or "%d findings" % len(fs))' "$1" <<<"$doc" 2>&1
}
assert_contains "doctor: the pending mapping, why" \
	"mapping $HOST3 -> $G1_IP (vm web1) is pending, not in the datapath: mapping '$HOST3 $G1_IP': $HOST3 is an address of this host" \
	"$(doc_of what)"
assert_eq "doctor: the command that frees the address" "ip address del $HOST3/24 dev $UP" "$(doc_of command)"
assert_ok "doctor's command, run as printed" nsx "$NS_HOST" sh -c "$(doc_of command)"
assert_eq "the host holds $HOST3 no more" "" "$(ip -n "$NS_HOST" -4 -o addr show to "$HOST3/32")"
kvx_wait_for 20 "the daemon makes it once the host dropped $HOST3" is_active "$HOST3" ||
	kvx_log "map list: $(kvx map list); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
web1_on_host3() { [[ $(web "$HOST3") == guest1 ]]; }
kvx_wait_for 15 "LAN -> $HOST3:80" web1_on_host3 || true
assert_eq "LAN -> $HOST3:80 (1:1) reaches guest1" guest1 "$(web "$HOST3")"
assert_eq "guest1 sees the LAN host's own address" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_contains "the daemon said so" "pending mapping made: $HOST3 $G1_IP vm=web1" "$(cat "$KVX_DAEMON_LOG")"
# The host takes the address (its DHCP lease here, say): the datapath
# lets it go at once, its traffic is the host's.
ip -n "$NS_HOST" addr add "$HOST3/24" dev "$UP"
is_pending() { [[ $(state_of "$1") == "pending "* ]]; }
kvx_wait_for 10 "pending again once the host holds $HOST3" is_pending "$HOST3" || true
assert_contains "map list --json: pending again, why" "$HOST3_WHY" "$(state_of "$HOST3")"
assert_contains "the daemon said so" "mapping $HOST3 $G1_IP taken out of the datapath" "$(cat "$KVX_DAEMON_LOG")"
assert_ne "LAN -> $HOST3:80 is the host's again" guest1 "$(web "$HOST3")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/host3.xml" web1 stopped end
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
ip -n "$NS_HOST" addr del "$HOST3/24" dev "$UP"

kvx_step "what no waiting fixes fails the start (one line naming it), never a silent pending mapping"
# A forward on a port an administrator's own mapping holds.
assert_ok "map add uplink:2240 -> guest2:80" kvx map add uplink:2240 "$G2_IP:80" --proto tcp
domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2240' to='80'/></kvmxdp:nat>" >"$KVX_TMP/taken.xml"
assert_fails "hook: web1 with a forward on a map add's port" qhook "$KVX_TMP/taken.xml" web1 started begin
out=$(cat "$KVX_TMP/hook.out")
assert_eq "one line" 1 "$(grep -c . <<<"$out")"
assert_contains "naming the domain and the mapping" "domain 'web1': mapping 'uplink:2240 $G1_IP:80 tcp' conflicts with 'uplink:2240 $G2_IP:80 tcp'" "$out"
assert_eq "nothing of web1 recorded" "" "$(vm_of uplink:2240 | grep web1 || true)"
assert_ok "map del uplink:2240" kvx map del uplink:2240 "$G2_IP:80" --proto tcp
# A network's forward to a guest outside the bridge's subnet.
cat >"$KVX_TMP/net-out.xml" <<XML
<hookData><network><name>default</name><metadata>
<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='8090' to='10.5.5.5:80'/></kvmxdp:nat>
</metadata><bridge name='$BR'/></network></hookData>
XML
nhook_xml() { # XMLFILE OP
	nsx "$NS_HOST" env PATH="$FAKEBIN:$PATH" "$NHOOK" default "$2" begin - <"$1" >"$KVX_TMP/hook.out" 2>&1
}
assert_fails "network hook: a forward to 10.5.5.5" nhook_xml "$KVX_TMP/net-out.xml" started
out=$(cat "$KVX_TMP/hook.out")
kvx_log "network hook said: $out"
# (the hook script's own lines follow: it (re)starts the bridge's unit)
assert_eq "one error line" 1 "$(grep -c 'kvmxdp: error: ' <<<"$out")"
assert_contains "naming the network and the guest" "network 'default': mapping 'uplink:8090 10.5.5.5:80 tcp': guest 10.5.5.5 is not a host address in 192.168.122.0/24" "$out"
assert_eq "nothing recorded" "no mappings" "$(kvx map list)"
kvx_step "XML without kvmxdp's namespace never fails a start: large, or with a DTD"
# 1.2 MB of description (more than kvmxdp reads), and a <!DOCTYPE> libxml2
# would be refused: neither is kvmxdp's to judge.
domain_xml big "02:00:00:00:00:97" "<description>$(head -c 1200000 /dev/zero | tr '\0' x)</description>" >"$KVX_TMP/big.xml"
{ echo '<!DOCTYPE domain>'; domain_xml dtd "02:00:00:00:00:96" ""; } >"$KVX_TMP/dtd.xml"
# ... nor is one whose description quotes kvmxdp's namespace (no element
# declares it): not kvmxdp's to refuse as too large.
domain_xml bigq "02:00:00:00:00:95" "<description>$NS $(head -c 1200000 /dev/zero | tr '\0' x)</description>" >"$KVX_TMP/bigq.xml"
for op in prepare started stopped release; do
	assert_ok "hook: a 1.2 MB domain XML, $op" qhook "$KVX_TMP/big.xml" big "$op" begin
	assert_ok "hook: a 1.2 MB domain XML quoting kvmxdp's namespace, $op" qhook "$KVX_TMP/bigq.xml" bigq "$op" begin
done
assert_ok "hook: a domain XML with a DTD, started" qhook "$KVX_TMP/dtd.xml" dtd started begin
domain_xml plain "02:00:00:00:00:98" "" >"$KVX_TMP/plain.xml"
assert_ok "hook: a domain without kvmxdp metadata started" qhook "$KVX_TMP/plain.xml" plain started begin
assert_eq "... says nothing" "" "$(cat "$KVX_TMP/hook.out")"
assert_ok "hook: dtd stopped" qhook "$KVX_TMP/dtd.xml" dtd stopped end
assert_ok "hook: plain stopped" qhook "$KVX_TMP/plain.xml" plain stopped end
# ... and never hands it to libxml2 (no kvmxdp mapping names that domain):
# a breakpoint on libxml2's parser context, which every parse makes.
parses() { # XMLFILE NAME: "parsed" when the hook's started reaches libxml2's parser
	nsx "$NS_HOST" env KVMXDP_LIBVIRT_ROOT="$LV" gdb -q -batch -ex 'set breakpoint pending on' \
		-ex 'break xmlNewParserCtxt' -ex "run libvirt-hook qemu $2 started begin - <$1" \
		--args "$KVMXDP" "${KVX_OPTS[@]}" 2>&1 | grep -q '^Breakpoint 1, ' && echo parsed || true
}
assert_eq "a domain without kvmxdp metadata: its XML is not parsed" "" "$(parses "$KVX_TMP/plain.xml" plain)"
assert_eq "web1's XML (kvmxdp's namespace) is" parsed "$(parses "$KVX_TMP/web1.xml" web1)"

kvx_step "a domain XML declaring another domain's MAC: refused at prepare and started, naming both"
# evil1 declares web1's MAC: the host entry of that MAC (name='web1',
# a domain libvirt knows) would give it guest1's address.
mkdir -p "$LV/etc/libvirt/qemu" "$LV/run/libvirt/qemu"
domain_xml web1 "$G1_MAC" "" >"$LV/etc/libvirt/qemu/web1.xml"
EVIL_META="<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2250' to='80'/></kvmxdp:nat>"
domain_xml evil1 "$G1_MAC" "$EVIL_META" >"$KVX_TMP/evil1.xml"
# evil2 declares db1's MAC (a lease only, no host entry) while db1 runs.
{ echo "<domstatus state='running'>"; domain_xml db1 "$G2_MAC" ""; echo "</domstatus>"; } >"$LV/run/libvirt/qemu/db1.xml"
domain_xml evil2 "$G2_MAC" "$EVIL_META" >"$KVX_TMP/evil2.xml"
refused_mac() { # DOMAIN WHAT NAMES EXPECTED: refused at prepare and started, one line
	local op
	for op in prepare started; do
		assert_fails "hook: $1 $op $2" qhook "$KVX_TMP/$1.xml" "$1" "$op" begin
		assert_eq "$1 $op: one line" 1 "$(wc -l <"$KVX_TMP/hook.out")"
		assert_contains "$1 $op: names $3" "$4" "$(cat "$KVX_TMP/hook.out")"
	done
}
refused_mac evil1 "with web1's MAC" "the MAC and web1" "MAC $G1_MAC belongs to domain 'web1' (its DHCP host entry names it)"
refused_mac evil2 "with running db1's MAC" "the MAC and db1" "MAC $G2_MAC belongs to running domain 'db1'"
kvx_log "refusal: $(cat "$KVX_TMP/hook.out")"
# evil3: an <interface type='bridge'> on the network's bridge with web1's
# MAC while web1 is stopped: dnsmasq serves that bridge all the same (its
# host entry, the lease it keeps), so the network of that bridge is read.
sed -e "s|<interface type='network'>|<interface type='bridge'>|" \
	-e "s|<source network='default' bridge='$BR'/>|<source bridge='$BR'/>|" \
	<(domain_xml evil3 "$G1_MAC" "$EVIL_META") >"$KVX_TMP/evil3.xml"
grep -q "<interface type='bridge'>" "$KVX_TMP/evil3.xml" || kvx_fatal "evil3.xml is no bridge interface"
# evil4 declares the MAC of a defined, stopped domain that has no host
# entry (its address a lease only, which dnsmasq keeps): spare's.
SPARE_MAC=02:00:00:00:00:77
domain_xml spare "$SPARE_MAC" "" >"$LV/etc/libvirt/qemu/spare.xml"
domain_xml evil4 "$SPARE_MAC" "$EVIL_META" >"$KVX_TMP/evil4.xml"
refused_mac evil3 "(bridge interface) with web1's MAC" "the MAC and web1" "MAC $G1_MAC belongs to domain 'web1' (its DHCP host entry names it)"
refused_mac evil4 "with defined spare's MAC" "the MAC and spare" "MAC $SPARE_MAC belongs to defined domain 'spare'"
# evil5 declares a running libvirt container's MAC (the lxc driver's
# status file: its leases come from the same networks).
LXC_MAC=02:00:00:00:00:78
mkdir -p "$LV/run/libvirt/lxc"
{ echo "<domstatus state='running'>"; domain_xml ct1 "$LXC_MAC" ""; echo "</domstatus>"; } >"$LV/run/libvirt/lxc/ct1.xml"
domain_xml evil5 "$LXC_MAC" "$EVIL_META" >"$KVX_TMP/evil5.xml"
refused_mac evil5 "with running container ct1's MAC" "the MAC and ct1" "MAC $LXC_MAC belongs to running container 'ct1'"
# evil6: its interface's link down and its address a lease's: a copied
# MAC would take that MAC's owner's lease while this guest sends nothing.
sed "s|<target dev='vnet7'/>|<target dev='vnet7'/><link state='down'/>|" \
	<(domain_xml evil6 02:00:00:00:00:79 "$EVIL_META") >"$KVX_TMP/evil6.xml"
grep -q "<link state='down'/>" "$KVX_TMP/evil6.xml" || kvx_fatal "evil6.xml has no link down"
refused_mac evil6 "with its link down, a lease only" "why" "has <link state='down'/> and no static DHCP host entry"
kvx_log "refusal: $(cat "$KVX_TMP/hook.out")"
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
assert_eq "LAN -> $UP_IP:2250: nobody" "" "$(web "$UP_IP:2250")"
# web1 itself, its own status file there as at a real "started": made.
{ echo "<domstatus state='running'>"; cat "$KVX_TMP/web1.xml"; echo "</domstatus>"; } >"$LV/run/libvirt/qemu/web1.xml"
assert_ok "hook: web1 prepare (its own MAC)" qhook "$KVX_TMP/web1.xml" web1 prepare begin
assert_ok "hook: web1 started (its own MAC)" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2222 reaches guest1:80" guest1 "$(web "$UP_IP:2222")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1.xml" web1 stopped end
rm -f "$LV/etc/libvirt/qemu/web1.xml" "$LV/etc/libvirt/qemu/spare.xml" "$LV/run/libvirt/qemu/db1.xml" \
	"$LV/run/libvirt/qemu/web1.xml" "$LV/run/libvirt/lxc/ct1.xml"

kvx_step "map add uplink:2223 vm:web1:80 (the domain's status file)"
mkdir -p "$LV/run/libvirt/qemu"
{ echo "<domstatus state='running'>"; cat "$KVX_TMP/web1.xml"; echo "</domstatus>"; } >"$LV/run/libvirt/qemu/web1.xml"
kvx_lv() { nsx "$NS_HOST" env KVMXDP_LIBVIRT_ROOT="$LV" "$KVMXDP" "${KVX_OPTS[@]}" "$@"; }
assert_ok "map add uplink:2223 vm:web1:80" kvx_lv map add uplink:2223 vm:web1:80 --proto tcp
assert_eq "LAN -> $UP_IP:2223 reaches guest1:80" guest1 "$(web "$UP_IP:2223")"
assert_ok "map del uplink:2223 vm:web1:80" kvx_lv map del uplink:2223 vm:web1:80 --proto tcp
assert_eq "LAN -> $UP_IP:2223 after map del" "" "$(web "$UP_IP:2223")"
assert_ok "map add uplink:2223 vm:web1:80 again" kvx_lv map add uplink:2223 vm:web1:80 --proto tcp
assert_eq "map list: vm:web1's forward is web1's" web1 "$(vm_of uplink:2223)"
assert_fails "map add vm:../../etc/passwd" nsx "$NS_HOST" env KVMXDP_LIBVIRT_ROOT="$LV" "$KVMXDP" "${KVX_OPTS[@]}" map add uplink:2224 vm:../x:80 --proto tcp
assert_fails "map add vm:nosuch" nsx "$NS_HOST" env KVMXDP_LIBVIRT_ROOT="$LV" "$KVMXDP" "${KVX_OPTS[@]}" map add uplink:2224 vm:nosuch:80 --proto tcp
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1.xml" web1 stopped end
# Kept, but not in the datapath while web1 is off: its address (or its
# MAC's lease: any DHCP client can ask for it) may go to another guest.
assert_contains "a map add vm:web1 outlives web1's stop, waiting" \
	"pending domain 'web1' is not running" "$(state_of uplink:2223)"
assert_eq "LAN -> $UP_IP:2223 while web1 is off: nothing" "" "$(web "$UP_IP:2223")"
# (started without metadata: web1.xml's own forward to :80 would take the
# guest port first while this one waits, and this one would stay pending)
domain_xml web1 "$G1_MAC" "" >"$KVX_TMP/web1-plain.xml"
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1-plain.xml" web1 started begin
assert_eq "web1 started: map add vm:web1 made again" guest1 "$(web "$UP_IP:2223")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1-plain.xml" web1 stopped end
# Its metadata's 1:1 address beside it (a forward to :80 too would map
# the guest's :80 twice: that one would wait, pending).
ADDR_META="<kvmxdp:nat $NS><kvmxdp:address external='$EXT1'/></kvmxdp:nat>"
domain_xml web1 "$G1_MAC" "$ADDR_META" >"$KVX_TMP/web1-addr.xml"
assert_ok "hook: web1 started (its metadata)" qhook "$KVX_TMP/web1-addr.xml" web1 started begin
assert_eq "... and its start" guest1 "$(web "$UP_IP:2223")"
assert_eq "beside the metadata's 1:1 address" guest1 "$(web "$EXT1")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1-addr.xml" web1 stopped end
assert_eq "the metadata's address went" "" "$(web "$EXT1")"
assert_contains "map add vm:web1 stays, waiting" "pending " "$(state_of uplink:2223)"
assert_ok "hook: web1 started without metadata" qhook "$KVX_TMP/web1-plain.xml" web1 started begin
assert_eq "map add vm:web1 made again" guest1 "$(web "$UP_IP:2223")"
kvx_step "web1's host entry changed while it was off: its start moves map add vm:web1"
G1_ALT=192.168.122.14
sed -i "s|ip='$G1_IP'|ip='$G1_ALT'|" "$LV/etc/libvirt/qemu/networks/default.xml"
ip -n "$NS_G1" addr del "$G1_IP/24" dev "$G1_IF"
ip -n "$NS_G1" addr add "$G1_ALT/24" dev "$G1_IF"
ip -n "$NS_G1" route replace default via "$GW_IP"
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1-plain.xml" web1 started begin
assert_contains "said so" "-> guest $G1_ALT" "$(cat "$KVX_TMP/hook.out")"
assert_eq "LAN -> $UP_IP:2223 reaches guest1 at $G1_ALT" guest1 "$(web "$UP_IP:2223")"
sed -i "s|ip='$G1_ALT'|ip='$G1_IP'|" "$LV/etc/libvirt/qemu/networks/default.xml"
ip -n "$NS_G1" addr del "$G1_ALT/24" dev "$G1_IF"
ip -n "$NS_G1" addr add "$G1_IP/24" dev "$G1_IF"
ip -n "$NS_G1" route replace default via "$GW_IP"
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1-plain.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2223 reaches guest1 at $G1_IP again" guest1 "$(web "$UP_IP:2223")"
kvx_step "web1's host entry moved onto db1's leased address: its start holds map add vm:web1, never leaves it on the old guest"
assert_ok "hook: db1 started" qhook "$KVX_TMP/db1.xml" db1 started begin
assert_eq "db1's forward reaches guest2 at $G2_NEW" guest2 "$(web "$UP_IP:8081")"
sed -i "s|ip='$G1_IP'|ip='$G2_NEW'|" "$LV/etc/libvirt/qemu/networks/default.xml"
assert_ok "hook: web1 started (a libvirtd restart)" qhook "$KVX_TMP/web1-plain.xml" web1 started begin
kvx_log "hook said: $(cat "$KVX_TMP/hook.out")"
assert_contains "map list: web1's forward waits, saying why" "pending its guest moved to $G2_NEW" "$(state_of uplink:2223)"
assert_eq "LAN -> $UP_IP:2223 reaches nobody (not guest1 at $G1_IP)" "" "$(web "$UP_IP:2223")"
assert_eq "db1 (its lease) keeps $G2_NEW" guest2 "$(web "$UP_IP:8081")"
sed -i "s|ip='$G2_NEW'|ip='$G1_IP'|" "$LV/etc/libvirt/qemu/networks/default.xml"
assert_ok "hook: web1 started at $G1_IP" qhook "$KVX_TMP/web1-plain.xml" web1 started begin
assert_eq "map add vm:web1 made again at $G1_IP" guest1 "$(web "$UP_IP:2223")"
assert_ok "hook: db1 stopped" qhook "$KVX_TMP/db1.xml" db1 stopped end
assert_ok "map del uplink:2223 vm:web1:80" kvx_lv map del uplink:2223 vm:web1:80 --proto tcp

kvx_step "network hook: network-wide forward from the network's metadata"
mkdir -p "$FAKEBIN"
printf '#!/bin/sh\necho "$*" >>"%s"\n' "$KVX_TMP/systemctl.calls" >"$FAKEBIN/systemctl"
chmod +x "$FAKEBIN/systemctl"
cat >"$KVX_TMP/net.xml" <<XML
<hookData>
  <network>
    <name>default</name>
    <metadata>
      <kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='8082' to='$G2_NEW:80'/></kvmxdp:nat>
    </metadata>
    <bridge name='$BR'/>
  </network>
</hookData>
XML
nhook() { # OP
	nsx "$NS_HOST" env PATH="$FAKEBIN:$PATH" "$NHOOK" default "$1" begin - <"$KVX_TMP/net.xml" >"$KVX_TMP/hook.out" 2>&1
}
assert_ok "network hook: default started" nhook started
assert_eq "LAN -> $UP_IP:8082 reaches guest2:80" guest2 "$(web "$UP_IP:8082")"
assert_eq "map list: the network's" default "$(vm_of uplink:8082)"
assert_contains "the unit was (re)started too" "start kvmxdp@$BR.service" "$(cat "$KVX_TMP/systemctl.calls")"
assert_ok "network hook: default stopped" nhook stopped
assert_eq "LAN -> $UP_IP:8082 after the network stopped" "" "$(web "$UP_IP:8082")"
assert_eq "no mappings left" "no mappings" "$(kvx map list)"
# A network whose bridge kvmxdp has not attached yet (its unit starts
# after it): started all the same, its mappings kept for that attach.
sed "s|<bridge name='$BR'/>|<bridge name='kvl$$'/>|" "$KVX_TMP/net.xml" >"$KVX_TMP/net-later.xml"
assert_ok "network hook: a network on a bridge not attached started" \
	nsx "$NS_HOST" env PATH="$FAKEBIN:$PATH" "$NHOOK" default started begin - <"$KVX_TMP/net-later.xml"
detached_of() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])).get("detached",{}); print(" ".join(m["ext"]+"/"+m.get("pending","-")[:30] for m in d.get(sys.argv[2],{}).get("mappings",[])))' "$KVX_CFG" "$1"; }
assert_contains "recorded for its attach, pending" "uplink:8082/bridge 'kvl$$' is not" "$(detached_of "kvl$$")"
assert_ok "network hook: it stopped" \
	nsx "$NS_HOST" env PATH="$FAKEBIN:$PATH" "$NHOOK" default stopped begin - <"$KVX_TMP/net-later.xml"
assert_eq "and the record went" "" "$(detached_of "kvl$$")"

kvx_step "a domain with two NICs: the one on the LAN bridge comes first, the one on $BR is meant"
# web1 again, its first interface on a LAN bridge kvmxdp does not serve
# (the XML's order): the mappings go to its interface on $BR.
two_nics() { # NAME MAC1 BRIDGE1 MAC2 METADATA
	cat <<XML
<domain type='kvm' id='8'>
  <name>$1</name>
  <metadata>$5</metadata>
  <devices>
    <interface type='bridge'>
      <mac address='$2'/>
      <source bridge='$3'/>
      <target dev='vnet8'/>
    </interface>
    <interface type='network'>
      <mac address='$4'/>
      <source network='default' bridge='$BR'/>
      <target dev='vnet9'/>
    </interface>
  </devices>
</domain>
XML
}
MULTI_META="<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2230' to='80'/></kvmxdp:nat>"
two_nics web1 52:54:00:77:00:01 br-lan "$G1_MAC" "$MULTI_META" >"$KVX_TMP/web1-2nics.xml"
assert_ok "hook: web1 (two NICs) started" qhook "$KVX_TMP/web1-2nics.xml" web1 started begin
kvx_log "hook said: $(cat "$KVX_TMP/hook.out")"
assert_eq "LAN -> $UP_IP:2230 reaches guest1:80" guest1 "$(web "$UP_IP:2230")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1-2nics.xml" web1 stopped end
# Both NICs on $BR and no mac=: which address the forward is for is the
# author's to say. Refused, naming both MACs; nothing made.
two_nics web1 "$G2_MAC" "$BR" "$G1_MAC" "$MULTI_META" >"$KVX_TMP/web1-ambiguous.xml"
assert_fails "hook: web1 with two NICs on $BR and no mac=" qhook "$KVX_TMP/web1-ambiguous.xml" web1 started begin
out=$(cat "$KVX_TMP/hook.out")
assert_contains "the error names both MACs" "$G2_MAC, $G1_MAC" "$out"
assert_contains "and how to choose" "<kvmxdp:nat mac=" "$out"
assert_eq "one line" 1 "$(grep -c . <<<"$out")"
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
sed -i "s|<kvmxdp:nat $NS>|<kvmxdp:nat $NS mac='$G1_MAC'>|" "$KVX_TMP/web1-ambiguous.xml"
assert_ok "hook: with mac= it is made" qhook "$KVX_TMP/web1-ambiguous.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2230 reaches guest1:80" guest1 "$(web "$UP_IP:2230")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1-ambiguous.xml" web1 stopped end

kvx_step "a port a host service listens on: refused unless map allow names it and force='yes'"
# The host's own service on $UP_IP:2299 (root's, as sshd's would be).
mkdir -p "$KVX_TMP/wwwh"
echo host >"$KVX_TMP/wwwh/who"
kvx_bg "$KVX_TMP/host.http.log" ip netns exec "$NS_HOST" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind 0.0.0.0 --directory "$KVX_TMP/wwwh" 2299
kvx_wait_tcp_listen 10 "$NS_HOST" 2299
assert_eq "LAN -> $UP_IP:2299 reaches the host's service" host "$(web "$UP_IP:2299")"
take_meta() { # FORCE-ATTRIBUTE
	domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2299' to='80'$1/></kvmxdp:nat>"
}
take_meta "" >"$KVX_TMP/take.xml"
take_meta " force='yes'" >"$KVX_TMP/take-force.xml"
assert_contains "map allow: the default" "except ports host services listen on (default)" "$(kvx map allow)"
for x in take take-force; do
	assert_fails "hook: web1 started with $x.xml (default allow-list)" qhook "$KVX_TMP/$x.xml" web1 started begin
	assert_eq "$x: one line" 1 "$(wc -l <"$KVX_TMP/hook.out")"
	assert_contains "$x: names the port" "a host service listens on tcp port 2299" "$(cat "$KVX_TMP/hook.out")"
	assert_eq "$x: nothing mapped" "no mappings" "$(kvx map list)"
	assert_eq "$x: LAN -> $UP_IP:2299 still the host's" host "$(web "$UP_IP:2299")"
done
kvx_log "refusal: $(cat "$KVX_TMP/hook.out")"
assert_fails "map allow with a bad entry" kvx map allow uplink:2000-2999 uplink:99999
assert_contains "map allow: nothing changed" "(default)" "$(kvx map allow)"
assert_ok "map allow uplink:2299 uplink:2230-2239" kvx map allow uplink:2299 uplink:2230-2239
assert_eq "map allow --json" '["uplink:2299", "uplink:2230-2239"]' \
	"$(kvx map allow --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["metadata_allow"]))')"
assert_fails "hook: allowed, but no force='yes'" qhook "$KVX_TMP/take.xml" web1 started begin
assert_contains "says force='yes' is missing" "no force='yes'" "$(cat "$KVX_TMP/hook.out")"
assert_eq "LAN -> $UP_IP:2299 still the host's" host "$(web "$UP_IP:2299")"
assert_ok "hook: allowed and force='yes'" qhook "$KVX_TMP/take-force.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2299 now reaches guest1" guest1 "$(web "$UP_IP:2299")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/take-force.xml" web1 stopped end
assert_eq "LAN -> $UP_IP:2299 the host's again" host "$(web "$UP_IP:2299")"

kvx_step "a pending force='yes' forward in a config of an older kvmxdp (no \"force\"): made with the running domain's force"
# web3 (guest2's MAC, its lease to come): uplink:2299 -> :80 force='yes',
# which the hook records pending; the config then as a kvmxdp that kept
# no "force" wrote it.  The daemon takes force from libvirt's status file
# of the running domain; without one, from the config (none): refused.
G2_NOW=$(ip -n "$NS_G2" -4 -o addr show dev "$G2_IF" | awk '{ sub("/.*", "", $4); print $4 }')
echo '[]' >"$LEASES"
domain_xml web3 "$G2_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2299' to='80' force='yes'/></kvmxdp:nat>" >"$KVX_TMP/web3.xml"
# No libvirt run directory yet (libvirtd not started, say): whether web3
# runs is not known, the config's force is all there is.
mv "$STATUS_DIR" "$STATUS_DIR.away"
NO_STATUS=1
assert_ok "hook: web3 started before its lease" qhook "$KVX_TMP/web3.xml" web3 started begin
NO_STATUS=
assert_contains "pending for its lease" "no address for MAC $G2_MAC" "$(state_of uplink:2299)"
"$KVX_PY" - "$KVX_CFG" <<'PY'
import json, os, sys
p = sys.argv[1]
c = json.load(open(p))
for i in c["instances"]:
    for m in i["mappings"]:
        m.pop("force", None)
with open(p + ".old", "w") as f:
    json.dump(c, f)
os.chmod(p + ".old", 0o600)
os.replace(p + ".old", p)
PY
assert_not_contains "the config has no force" '"force"' "$(cat "$KVX_CFG")"
printf '[{"ip-address": "%s", "mac-address": "%s", "expiry-time": %d}]\n' \
	"$G2_NOW" "$G2_MAC" $(($(date +%s) + 3600)) >"$LEASES.new"
mv "$LEASES.new" "$LEASES"
refused_force() { [[ $(state_of uplink:2299) == *"no force='yes'"* ]]; }
kvx_wait_for 10 "no status file of web3: the config's force (none) refuses it" refused_force || true
assert_contains "no status file: pending, the config has no force" "no force='yes'" "$(state_of uplink:2299)"
assert_eq "LAN -> $UP_IP:2299 still the host's" host "$(web "$UP_IP:2299")"
# libvirt's status file of the running domain (what the hook was given).
mv "$STATUS_DIR.away" "$STATUS_DIR"
{
	echo "<domstatus state='running' reason='booted' pid='4242'>"
	cat "$KVX_TMP/web3.xml"
	echo "</domstatus>"
} >"$LV/run/libvirt/qemu/web3.xml"
assert_ok "kvmxdp reload" kvx reload
kvx_wait_for 15 "web3's forward made" is_active uplink:2299 ||
	kvx_log "map list: $(kvx map list); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
web3_on_2299() { [[ $(web "$UP_IP:2299") == guest2 ]]; }
kvx_wait_for 10 "LAN -> $UP_IP:2299" web3_on_2299 || true
assert_eq "LAN -> $UP_IP:2299 reaches guest2 (web3's force='yes', its running XML's)" guest2 "$(web "$UP_IP:2299")"
assert_contains "the daemon said so" "pending mapping made: uplink:2299 $G2_NOW:80 tcp vm=web3" "$(cat "$KVX_DAEMON_LOG")"
assert_ok "hook: web3 stopped" qhook "$KVX_TMP/web3.xml" web3 stopped end
rm -f "$LV/run/libvirt/qemu/web3.xml"
assert_eq "LAN -> $UP_IP:2299 the host's again" host "$(web "$UP_IP:2299")"
# A list set: what it does not name is refused, listened or not.
assert_fails "hook: uplink:2222 is not on the list" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_contains "names the list" "(uplink:2299 uplink:2230-2239)" "$(cat "$KVX_TMP/hook.out")"
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
assert_ok "hook: uplink:2230 is" qhook "$KVX_TMP/web1-2nics.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2230 reaches guest1:80" guest1 "$(web "$UP_IP:2230")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1-2nics.xml" web1 stopped end
# The network hook: the same rule.
sed "s|port='8082'|port='2299'|" "$KVX_TMP/net.xml" >"$KVX_TMP/net-take.xml"
assert_ok "map allow none" kvx map allow none
assert_contains "map allow: nothing" "may claim: nothing" "$(kvx map allow)"
assert_fails "network hook: nothing allowed" \
	nsx "$NS_HOST" env PATH="$FAKEBIN:$PATH" "$NHOOK" default started begin - <"$KVX_TMP/net-take.xml"
assert_ok "map allow default" kvx map allow default
assert_fails "network hook: a listened port, default list" \
	nsx "$NS_HOST" env PATH="$FAKEBIN:$PATH" "$NHOOK" default started begin - <"$KVX_TMP/net-take.xml"
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
# An IPv6 forward against the host's IPv6 listeners: [::]:2297 (v6only:
# no IPv4 listener to find), root's.
kvx_bg "$KVX_TMP/v6listen.log" ip netns exec "$NS_HOST" "$KVX_PY" -u -c '
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(("::", 2297))
s.listen()
time.sleep(3600)'
kvx_wait_tcp_listen 10 "$NS_HOST" 2297
cat >"$KVX_TMP/net-take6.xml" <<XML
<hookData><network><name>default</name><metadata>
<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2297' external='[uplink]' to='[fd42::14]:80'/></kvmxdp:nat>
</metadata><bridge name='$BR'/></network></hookData>
XML
assert_fails "network hook: an IPv6 forward on a port [::] listens on" nhook_xml "$KVX_TMP/net-take6.xml" started
assert_contains "names the port" "a host service listens on tcp port 2297" "$(cat "$KVX_TMP/hook.out")"
assert_eq "nothing mapped" "no mappings" "$(kvx map list)"
assert_ok "hook: web1 started (a port nobody listens on, default list)" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2222 reaches guest1:80" guest1 "$(web "$UP_IP:2222")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1.xml" web1 stopped end

kvx_step "db1's lease moves onto the address app1's forward followed, whose lease ran out: db1 keeps it"
APP_MAC=52:54:00:aa:00:01
leases() { # "IP MAC EXPIRY"...: libvirt's status file, replaced at once
	python3 -c 'import json, sys; print(json.dumps([dict(zip(("ip-address", "mac-address", "expiry-time"), (a, m, int(e)))) for a, m, e in (x.split() for x in sys.argv[1:])]))' "$@" >"$LEASES.new"
	mv "$LEASES.new" "$LEASES"
}
now=$(date +%s)
leases "$G2_NEW $G2_MAC $((now + 3600))" "$G2_IP $APP_MAC $((now + 3600))"
domain_xml app1 "$APP_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='8085' to='80'/></kvmxdp:nat>" >"$KVX_TMP/app1.xml"
assert_ok "hook: app1 started (its lease: $G2_IP)" qhook "$KVX_TMP/app1.xml" app1 started begin
assert_ok "hook: db1 started (its lease: $G2_NEW)" qhook "$KVX_TMP/db1.xml" db1 started begin
assert_eq "db1's forward reaches guest2 at $G2_NEW" guest2 "$(web "$UP_IP:8081")"
# app1 went without its hook's "stopped" (a host crash) and its lease ran
# out; guest2 (db1) asks again and gets $G2_IP.
ip -n "$NS_G2" addr del "$G2_NEW/24" dev "$G2_IF"
ip -n "$NS_G2" addr add "$G2_IP/24" dev "$G2_IF"
ip -n "$NS_G2" route replace default via "$GW_IP"
leases "$G2_IP $G2_MAC $((now + 3600))" "$G2_IP $APP_MAC $((now - 10))"
db1_active_on() { [[ $(kvx map list --json | python3 -c '
import json, sys
print(" ".join(m["guest"] + "/" + m["state"] for m in json.load(sys.stdin)["mappings"] if m["ext"] == "uplink:8081"))') == "$1:80/active" ]]; }
kvx_wait_for 10 "db1's forward active on $G2_IP" db1_active_on "$G2_IP" ||
	kvx_log "map list: $(kvx map list --json); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
assert_eq "LAN -> $UP_IP:8081 reaches guest2 (db1) at $G2_IP" guest2 "$(web "$UP_IP:8081")"
assert_eq "LAN -> $UP_IP:8085 (app1's) reaches nobody, not db1's guest" "" "$(web "$UP_IP:8085")"
assert_contains "map list: app1's forward waits for its MAC's next lease" "pending no address for MAC $APP_MAC" "$(state_of uplink:8085)"
assert_contains "the daemon said whose the address is" "is leased to vm db1 now" "$(cat "$KVX_DAEMON_LOG")"
assert_ok "hook: app1 stopped" qhook "$KVX_TMP/app1.xml" app1 stopped end
assert_ok "hook: db1 stopped" qhook "$KVX_TMP/db1.xml" db1 stopped end

kvx_step "a pending metadata forward is checked again when the daemon makes it: a host service came meanwhile"
APP2_MAC=52:54:00:aa:00:02
domain_xml app2 "$APP2_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='tcp' port='2296' to='80'/></kvmxdp:nat>" >"$KVX_TMP/app2.xml"
assert_ok "hook: app2 started before its lease (nothing listens on 2296)" qhook "$KVX_TMP/app2.xml" app2 started begin
assert_contains "pending for want of a lease" "no address for MAC $APP2_MAC" "$(state_of uplink:2296)"
kvx_bg "$KVX_TMP/host2296.log" ip netns exec "$NS_HOST" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind 0.0.0.0 --directory "$KVX_TMP/wwwh" 2296
kvx_wait_tcp_listen 10 "$NS_HOST" 2296
leases "$G2_IP $G2_MAC $((now + 3600))" "192.168.122.15 $APP2_MAC $((now + 3600))"
claim_refused() { [[ $(state_of uplink:2296) == *"a host service listens on tcp port 2296"* ]]; }
kvx_wait_for 10 "app2's forward waits, the host's service named" claim_refused ||
	kvx_log "map list: $(kvx map list --json); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
assert_eq "LAN -> $UP_IP:2296 still the host's" host "$(web "$UP_IP:2296")"
assert_ok "hook: app2 stopped" qhook "$KVX_TMP/app2.xml" app2 stopped end

kvx_step "a system user's UDP socket on an ephemeral port of a metadata forward range (dnsmasq forwarding DNS): libvirt starts the domain, the forward waits until it is gone"
# libvirt's dnsmasq (a system user) forwards guests' DNS queries from
# unconnected wildcard sockets on ephemeral ports, which /proc/net/udp
# lists like a bound service's: here one of uid 120, bound where sendto()
# would have bound it.
read -r EPH_LO EPH_HI <<<"$(kvx_sysctl_get "$NS_HOST" net.ipv4.ip_local_port_range)"
((EPH_LO <= 40500 && 40500 <= EPH_HI)) || kvx_fatal "40500 is outside ip_local_port_range $EPH_LO-$EPH_HI"
kvx_bg "$KVX_TMP/dnsq.log" ip netns exec "$NS_HOST" setpriv --reuid 120 --regid 120 --clear-groups "$KVX_PY" -u -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40500))
while True:
    s.sendto(b"q", ("'"$LAN_IP"'", 53))
    time.sleep(0.2)'
DNSQ_PID=$KVX_LAST_PID
kvx_wait_udp_listen 10 "$NS_HOST" 40500
assert_eq "the socket is uid 120's" 120 "$(nsx "$NS_HOST" awk '$2 ~ /:9E34$/ { print $8 }' /proc/net/udp)"
domain_xml web1 "$G1_MAC" "<kvmxdp:nat $NS><kvmxdp:forward proto='udp' port='40000-40999'/></kvmxdp:nat>" >"$KVX_TMP/web1-udp.xml"
assert_ok "hook: web1 started (a UDP range over the socket's port)" qhook "$KVX_TMP/web1-udp.xml" web1 started begin
kvx_log "hook: $(cat "$KVX_TMP/hook.out")"
assert_contains "map list: pending, naming the socket" "a host socket is bound to udp port 40500" "$(state_of uplink:40000-40999)"
kvx_kill_pid "$DNSQ_PID"
no_socket() { [[ -z $(nsx "$NS_HOST" ss -Hlun 'sport = :40500') ]]; }
kvx_wait_for 5 "the socket on 40500 gone" no_socket || true
assert_ok "kvmxdp reload" kvx reload
kvx_wait_for 15 "the daemon makes it once the socket is gone" is_active uplink:40000-40999 ||
	kvx_log "map list: $(kvx map list); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
# A datagram from the LAN host to $UP_IP:40500 reaches guest1's :40500.
kvx_bg "$KVX_TMP/g1.udp.log" ip netns exec "$NS_G1" "$KVX_PY" -u -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40500))
d, a = s.recvfrom(100)
print(d.decode(), a[0], flush=True)'
kvx_wait_udp_listen 10 "$NS_G1" 40500
udp_seen() {
	nsx "$NS_LAN" "$KVX_PY" -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"hello", (sys.argv[1], 40500))' "$UP_IP"
	grep -q hello "$KVX_TMP/g1.udp.log"
}
kvx_wait_for 5 "a datagram to $UP_IP:40500 reaches guest1" udp_seen || true
assert_eq "guest1 got it from the LAN host" "hello $LAN_IP" "$(cat "$KVX_TMP/g1.udp.log")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1-udp.xml" web1 stopped end

kvx_step "a host crash: a VM that is off keeps no metadata mappings once kvmxdp and libvirtd are back; its start makes them"
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2222 reaches guest1" guest1 "$(web "$UP_IP:2222")"
# Power lost while web1 ran: libvirt never said "stopped"; at boot /run
# is empty and kvmxdp starts before libvirtd: nothing known, kept.
kvx_daemon_stop
rm -rf "$STATUS_DIR"
KVMXDP_LIBVIRT_ROOT="$LV" kvx_attach_bg --dhcp-leases "$LEASES" || kvx_fatal "cannot attach again"
assert_contains "no libvirt run directory: web1's forward kept" "active" "$(state_of uplink:2222)"
# libvirtd starts (its run directory, no status file of web1).
mkdir -p "$STATUS_DIR"
assert_ok "kvmxdp reload" kvx reload
stopped_wait() { [[ $(state_of "$1") == "pending domain 'web1' is not running"* ]]; }
kvx_wait_for 15 "web1's forward waits for its start" stopped_wait uplink:2222 ||
	kvx_log "map list: $(kvx map list); daemon: $(tail -5 "$KVX_DAEMON_LOG")"
assert_contains "map list: its 1:1 address too" "pending domain 'web1' is not running" "$(state_of "$EXT1")"
assert_contains "the daemon said so" "mapping uplink:2222 $G1_IP:80 tcp vm=web1 taken out of the datapath" "$(cat "$KVX_DAEMON_LOG")"
assert_eq "LAN -> $UP_IP:2222: nobody" "" "$(web "$UP_IP:2222")"
assert_eq "ping $EXT1: not answered" 0 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
# kvmxdp restarts with libvirt's run directory there: never restored.
kvx_daemon_stop
KVMXDP_LIBVIRT_ROOT="$LV" kvx_attach_bg --dhcp-leases "$LEASES" || kvx_fatal "cannot attach again"
assert_contains "after a restart: still pending" "pending domain 'web1' is not running" "$(state_of uplink:2222)"
assert_eq "LAN -> $UP_IP:2222: nobody" "" "$(web "$UP_IP:2222")"
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_eq "LAN -> $UP_IP:2222 reaches guest1 again" guest1 "$(web "$UP_IP:2222")"
assert_eq "ping $EXT1 answered again" 3 "$(kvx_ping_received "$NS_LAN" "$EXT1" 3)"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1.xml" web1 stopped end

kvx_step "$BR detached: web1's starts replace its recorded mappings, never append"
detached_n() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("detached",{}).get(sys.argv[2],{}).get("mappings",[])))' "$KVX_CFG" "$1"; }
assert_ok "hook: web1 started" qhook "$KVX_TMP/web1.xml" web1 started begin
assert_eq "web1's two mappings" 2 "$(kvx map list --json | grep -c '"vm": "web1"')"
kvx_daemon_stop
assert_ok "detach" kvx detach --bridge "$BR"
assert_eq "kept for the next attach" 2 "$(detached_n "$BR")"
for n in 1 2 3; do
	assert_ok "hook: web1 started ($n) while $BR is detached" qhook "$KVX_TMP/web1.xml" web1 started begin
	assert_eq "still two recorded ($n)" 2 "$(detached_n "$BR")"
done
assert_contains "pending until $BR is attached" "bridge '$BR' is not" "$(detached_of "$BR")"
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/web1.xml" web1 stopped end
assert_eq "and they went" 0 "$(detached_n "$BR")"

kvx_finish
