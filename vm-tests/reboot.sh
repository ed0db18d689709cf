#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/reboot.sh: the seed recipe (three 1:1 guests on .101-.103 and a
# port forward) made with `kvmxdp map add` alone survives a reboot through
# what `kvmxdp install` wrote: after the daemon dies and every kernel object
# is gone (pins, filters, cgroup links, the bridge itself), libvirt
# re-creating the network runs the installed hook, the hook asks systemd to
# start kvmxdp@BRIDGE, and the unit's own ExecStart line brings the
# datapath and all mappings back.
#
# No systemd runs here (and the test must not start services in the root
# namespace): a stand-in `systemctl` on the hook's PATH records the call;
# the test then runs the ExecStart= line of the installed unit, with %I
# replaced by the unescaped instance, in the host namespace, as systemd
# would.
#
# Usage: reboot.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
# The config and the pid files in directories the unit may hand to the
# daemon: install gives it only directories named for kvmxdp (or not there
# yet), not the test's whole temporary directory.
KVX_CFG=$KVX_TMP/kvmxdp/kvmxdp.json
KVX_OPTS=(--bpffs "$BPFFS" --config "$KVX_CFG" --run-dir "$KVX_TMP/kvmxdp-run")
kvx_topology_up
kvx_guest_http_servers
kvx_http_server

ROOT=$KVX_TMP/root
UNIT=$ROOT/etc/systemd/system/kvmxdp@.service
HOOK=$ROOT/etc/libvirt/hooks/network.d/kvmxdp
FAKEBIN=$KVX_TMP/fakebin
CALLS=$KVX_TMP/systemctl.calls

kvx_step "the recipe, with kvmxdp alone"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_ok "map add 10.77.0.101 $G1_IP" kvx map add 10.77.0.101 "$G1_IP"
assert_ok "map add 10.77.0.102 $G2_IP" kvx map add 10.77.0.102 "$G2_IP"
assert_ok "map add 10.77.0.103 192.168.122.13" kvx map add 10.77.0.103 192.168.122.13
assert_ok "map add uplink:8080 $G2_IP:80" kvx map add uplink:8080 "$G2_IP:80" --proto tcp
assert_eq "LAN -> 10.77.0.101" guest1 "$(kvx_http_get "$NS_LAN" "http://10.77.0.101/who")"
assert_eq "LAN -> :8080" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"

kvx_step "kvmxdp install (into $ROOT)"
assert_ok "kvmxdp install --root" kvx install --root "$ROOT"
[[ -f $UNIT && -x $HOOK ]] || kvx_fatal "install wrote no unit/hook: $(find "$ROOT" -type f)"
exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
assert_contains "the unit runs the daemon with this test's bpffs" "--bpffs $BPFFS" "$exec_start"
assert_contains "the unit runs the daemon with this test's config" "--config $KVX_CFG" "$exec_start"

kvx_step "reboot: daemon gone, pins, filters, cgroup links and the bridge gone"
kill -KILL "$KVX_DAEMON_PID"
wait "$KVX_DAEMON_PID" 2>/dev/null || true
KVX_DAEMON_PID=""
umount "$BPFFS"
mount -t bpf bpf "$BPFFS"
rm -rf "$KVX_TMP/kvmxdp-run"
for dev in "$BR" "$UP"; do
	ip netns exec "$NS_HOST" tc qdisc del dev "$dev" clsact 2>/dev/null || true
done
ip -n "$NS_HOST" link del "$BR"
assert_eq "LAN -> 10.77.0.101 while 'rebooting'" "" "$(kvx_http_get "$NS_LAN" "http://10.77.0.101/who")"

kvx_step "libvirt starts the network: the bridge comes back, the hook runs"
kvx_bridge_recreate
mkdir -p "$FAKEBIN"
cat >"$FAKEBIN/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$CALLS"
EOF
chmod +x "$FAKEBIN/systemctl"
run_hook() { # NETWORK BRIDGE OPERATION
	printf "<network>\n  <name>%s</name>\n  <bridge name='%s' stp='on' delay='0'/>\n</network>\n" "$1" "$2" |
		PATH=$FAKEBIN:$PATH sh "$HOOK" "$1" "$3" begin -
}
: >"$CALLS"
assert_ok "hook: another network's bridge" run_hook other virbr9 started
assert_ok "hook: our network stopped" run_hook default "$BR" stopped
assert_eq "no service started for those" "" "$(cat "$CALLS")"
assert_ok "hook: our network started" run_hook default "$BR" started
assert_eq "the hook resets the unit's start limit and starts it without blocking libvirt" \
	"reset-failed kvmxdp@$BR.service|--no-block start kvmxdp@$BR.service" \
	"$(paste -sd'|' "$CALLS")"

kvx_step "'systemd' runs the unit's ExecStart for instance $BR"
unit_name=$(awk '$2 == "start" {print $3}' "$CALLS")
instance=$(systemd-escape --unescape --instance "$unit_name")
read -ra cmd <<<"${exec_start//%I/$instance}"
KVX_DAEMON_LOG=$KVX_TMP/unit.log
kvx_bg "$KVX_DAEMON_LOG" ip netns exec "$NS_HOST" "${cmd[@]}"
KVX_DAEMON_PID=$KVX_LAST_PID
kvx_wait_file_contains 15 "$KVX_DAEMON_LOG" "kvmxdp: attached" ||
	kvx_fatal "the unit's daemon did not attach: $(cat "$KVX_DAEMON_LOG")"

kvx_step "everything is back"
assert_eq "LAN -> 10.77.0.101 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://10.77.0.101/who")"
assert_eq "guest1 sees the LAN host" "$LAN_IP" "$(kvx_http_last_client "$KVX_TMP/g1.http.log")"
assert_eq "LAN -> 10.77.0.102 reaches guest2" guest2 "$(kvx_http_get "$NS_LAN" "http://10.77.0.102/who")"
assert_eq "LAN -> $UP_IP:8080 reaches guest2:80" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_ne "guest1 -> server" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/")"
assert_eq "guest1 leaves from 10.77.0.101" 10.77.0.101 "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "four mappings in status" 4 "$(kvx_json 'len(i["mappings"])')"
assert_eq "the host reaches 10.77.0.102 too" guest2 "$(kvx_http_get "$NS_HOST" "http://10.77.0.102/who")"
assert_eq "filters on the new bridge and the uplink" "1 1" \
	"$(kvx_tc_bpf_filters "$BR") $(kvx_tc_bpf_filters "$UP")"

kvx_finish
