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
#                                                               network "default": uplink:8082 -> guest2:80
#                                                               uplink ku<id> 10.77.0.2/24
#   lan ns:    kl<id> 10.77.0.1/24 = "the LAN host" (curl, ping)
#
# Usage: libvirt_hook.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
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
# EXTRA, the XML on stdin; stdout+stderr to $KVX_TMP/hook.out.
qhook() { # XMLFILE NAME OP SUBOP
	nsx "$NS_HOST" env KVMXDP_LIBVIRT_ROOT="$LV" "$QHOOK" "$2" "$3" "$4" - <"$1" >"$KVX_TMP/hook.out" 2>&1
}
web() { kvx_http_get "$NS_LAN" "http://$1/who"; }
vm_of() { # EXT: the "vm" of that mapping in map list --json
	kvx map list --json | python3 -c '
import json, sys
for m in json.load(sys.stdin)["mappings"]:
    if m["ext"] == sys.argv[1]:
        print(m["vm"] or m["libvirt_network"] or "-")' "$1"
}

kvx_attach_bg --dhcp-leases "$LEASES" || kvx_fatal "cannot attach"
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
assert_ok "hook: web1 stopped" qhook "$KVX_TMP/roam.xml" web1 stopped end
assert_eq "the pending one went" "no mappings" "$(kvx map list)"
kvx_step "XML without kvmxdp's namespace never fails a start: large, or with a DTD"
# 1.2 MB of description (more than kvmxdp reads), and a <!DOCTYPE> libxml2
# would be refused: neither is kvmxdp's to judge.
domain_xml big "02:00:00:00:00:97" "<description>$(head -c 1200000 /dev/zero | tr '\0' x)</description>" >"$KVX_TMP/big.xml"
{ echo '<!DOCTYPE domain>'; domain_xml dtd "02:00:00:00:00:96" ""; } >"$KVX_TMP/dtd.xml"
for op in prepare started stopped release; do
	assert_ok "hook: a 1.2 MB domain XML, $op" qhook "$KVX_TMP/big.xml" big "$op" begin
done
assert_ok "hook: a domain XML with a DTD, started" qhook "$KVX_TMP/dtd.xml" dtd started begin
domain_xml plain "02:00:00:00:00:98" "" >"$KVX_TMP/plain.xml"
assert_ok "hook: a domain without kvmxdp metadata started" qhook "$KVX_TMP/plain.xml" plain started begin
assert_eq "... says nothing" "" "$(cat "$KVX_TMP/hook.out")"

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

kvx_finish
