#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/wifi61.sh: kvmxdp over a REAL 802.11 station uplink, inside
# Debian 12's stock 6.1 kernel under QEMU (TCG; no network device, results
# over the serial console).  mac80211_hwsim gives two simulated radios
# driven by the real mac80211/cfg80211 stack:
#
#   ns g1 192.168.122.11 (1:1 -> 10.77.0.50) --+
#   ns g2 192.168.122.12 (masquerade)          --+ br0 192.168.122.1/24   (VM root ns = host)
#                                                 STA wlanN: wpa_supplicant (WPA2-PSK, CCMP),
#                                                 busybox udhcpc; kvmxdp attach --uplink wlanN
#                        ~ ~ ~ 802.11 (mac80211_hwsim) ~ ~ ~
#   ns lan  AP wlanM 10.77.0.1/24: hostapd + busybox udhcpd; the LAN client
#   ns srv  10.78.0.2 behind the lan router: HTTP (+ a CGI echoing the
#           client address) and an upload sink
#
# Checks (vm-tests/qemu/vm61-wifi61.sh runs them, this script asserts):
#   1. masquerade over the station: ping, 2 MiB download and 1 MiB upload by
#      sha256; the server sees the DHCP address;
#   2. `map add 10.77.0.50 192.168.122.11` reached from the LAN over the air
#      (proxy ARP through the AP), the guest sees the client's own address,
#      the 1:1 guest's own traffic leaves from 10.77.0.50;
#   3. DHCP hands out a NEW address (udhcpd's static lease changed, client
#      renews): kvmxdp follows it, new flows leave from it;
#   4. disassociate / reassociate (wpa_cli disconnect / reconnect): traffic
#      and the mapping work again;
#   5. IPv6: the station's SLAAC address from the LAN's RAs over the air;
#      NAT66 (the guests on the bridge's ULA) by ping -6, a download by
#      sha256, the server sees the station's address; then attach --ipv6
#      relay: the guest takes an address in the LAN's /64 from kvmxdp's
#      RAs, ping -6 and a download, the server sees the guest's own address,
#      and the LAN router's neighbour entry for it is the station's MAC
#      (kvmxdp's ND proxy answered over the air);
#   and `status --json` shows the wireless uplink on the TC hook (mode "tc";
#   with `attach --mode` available, --mode auto must pick tc for it).
#
# Usage: wifi61.sh KVMXDP_BINARY [BPF_TEST_BINARY]
# Env: KVX_VM_CACHE, KVX_KEEP_TMP=1 (keeps the console log), KVX_TIMEOUT.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/qemu/host61.sh"

vm61_test wifi61 "$@"

kvx_step "the VM's results"
sed -n 's/^KVX\([AWD]\) /  vm\1: /p' "$VM61_CON" >&2
w=$(val wifi)
assert_eq "in-VM script ran to its end${w:+ ($w)}" 0 "$(val script_rc)"
sta=$(val sta | cut -d/ -f1)
assert_ne "a station interface" "" "$sta"
assert_eq "the uplink is a wireless device" yes "$(val sta_wireless)"
assert_eq "its driver is mac80211_hwsim" mac80211_hwsim "$(val sta_driver)"
assert_ne "the AP radio moved into the lan ns" "" "$(val ap_moved)"
assert_eq "hostapd: AP-ENABLED" 1 "$(val ap_enabled)"
assert_eq "wpa_supplicant associated (WPA2-PSK)" COMPLETED "$(val assoc1)"
assert_eq "DHCP address of the station" 10.77.0.10 "$(val sta_addr1)"
assert_contains "DHCP default route via the AP" "default via 10.77.0.1 dev $sta" "$(val sta_route1)"

kvx_step "attach on the station"
assert_eq "kvmxdp attach --uplink $sta" 1 "$(val attached)"
assert_eq "TC filter on the station's ingress runs kvx_up_ingress" 1 "$(val tc_sta)"
dev_mode=$(vm61_json "[x['mode'] for x in d['instances'][0]['devices'] if x['ifname'] == '$sta'][0]")
dev_hook=$(vm61_json "[x['hook'] for x in d['instances'][0]['devices'] if x['ifname'] == '$sta'][0]")
kvx_log "attach mode flag: $(val mode_flag)"
assert_eq "status: the wireless uplink is handled by the TC hooks (mode)" tc "$dev_mode"
assert_eq "status: the wireless uplink's hook" tc-ingress "$dev_hook"
assert_eq "attach ran with --mode auto" "--mode auto" "$(val mode_flag)"
assert_contains "--mode auto chose TC because the device is 802.11" "wireless (802.11)" \
	"$(vm61_json "[x['why'] for x in d['instances'][0]['devices'] if x['ifname'] == '$sta'][0]")"
assert_eq "status: uplink_addr is the DHCP address" 10.77.0.10 "$(vm61_json "d['instances'][0]['uplink_addr']")"
assert_eq "status: kernel hooks (6.1: netlink clsact, no tcx)" "netlink-clsact false" \
	"$(vm61_json "d['kernel']['tc_hook']") $(vm61_json "d['kernel']['tcx']")"

kvx_step "1. masquerade over 802.11"
blob=$(val blob_sha)
assert_eq "the VM hashed the served file" 64 "${#blob}"
assert_eq "guest2 -> server ping 5/5" 5 "$(val p1_ping)"
assert_eq "2 MiB download exit status" 0 "$(val p1_dl_rc)"
assert_eq "2 MiB download intact (sha256)" "$blob" "$(val p1_dl_sha)"
assert_eq "the server sees the station's DHCP address" 10.77.0.10 "$(val p1_srv_sees)"
up=$(val p1_up_sha)
assert_eq "the VM hashed the upload" 64 "${#up}"
assert_eq "1 MiB upload exit status" 0 "$(val p1_up_rc)"
assert_eq "1 MiB upload intact at the server (sha256)" "$up" "$(val p1_up_srv_sha)"

kvx_step "1b. NAT66 over 802.11"
sta6=$(val sta6)
kvx_log "station's SLAAC address: $sta6"
assert_contains "the station took a SLAAC address from the LAN's RAs over the air" 2001:db8:77: "$sta6"
assert_eq "guest2 -> server ping -6 5/5" 5 "$(val p6_ping)"
assert_eq "2 MiB download over IPv6: exit status" 0 "$(val p6_dl_rc)"
assert_eq "2 MiB download over IPv6 intact (sha256)" "$blob" "$(val p6_dl_sha)"
assert_eq "the server sees the station's IPv6 address (NAT66)" "[$sta6]" "$(val p6_srv_sees)"

kvx_step "2. 1:1 mapping from the LAN, over the air"
assert_eq "map add 10.77.0.50 192.168.122.11" 0 "$(val p2_map_rc)"
assert_eq "LAN -> 10.77.0.50 reaches guest1" guest1 "$(val p2_lan_who)"
assert_eq "guest1 sees the LAN client's real address" 10.77.0.1 "$(val p2_guest_sees)"
assert_eq "guest1's own traffic leaves from 10.77.0.50" 10.77.0.50 "$(val p2_mapped_out)"

kvx_step "3. DHCP renewal to a new address"
assert_eq "the first DHCP server is gone" yes "$(val p3_old_server_gone)"
assert_eq "station's new DHCP address" 10.77.0.11 "$(val p3_sta_addr)"
assert_eq "kvmxdp follows: uplink_addr" 10.77.0.11 "$(val p3_status_uplink_addr)"
assert_eq "new flows leave from the new address" 10.77.0.11 "$(val p3_srv_sees)"
assert_eq "ping 5/5 after the renewal" 5 "$(val p3_ping)"
assert_eq "download after the renewal: exit status" 0 "$(val p3_dl_rc)"
assert_eq "download after the renewal intact (sha256)" "$blob" "$(val p3_dl_sha)"
assert_eq "the 1:1 mapping still reached from the LAN" guest1 "$(val p3_lan_who)"

kvx_step "4. disassociate / reassociate"
assert_eq "wpa_cli disconnect: station disconnected" DISCONNECTED "$(val p4_state_off)"
assert_eq "no traffic while disassociated" 0 "$(val p4_ping_off)"
assert_eq "wpa_cli reconnect: associated again" COMPLETED "$(val p4_state_on)"
assert_eq "station keeps its address" 10.77.0.11 "$(val p4_sta_addr)"
assert_eq "ping 5/5 after the reassociation" 5 "$(val p4_ping)"
assert_eq "download after the reassociation: exit status" 0 "$(val p4_dl_rc)"
assert_eq "download after the reassociation intact (sha256)" "$blob" "$(val p4_dl_sha)"
assert_eq "the server still sees the new address" 10.77.0.11 "$(val p4_srv_sees)"
assert_eq "LAN -> 10.77.0.50 reaches guest1 again" guest1 "$(val p4_lan_who)"
assert_eq "guest1 sees the LAN client's real address again" 10.77.0.1 "$(val p4_guest_sees)"

kvx_step "5. relay over 802.11"
assert_eq "attach --ipv6 relay on the station" 1 "$(val p5_attached)"
g2=$(val p5_g2_addr)
kvx_log "guest2's relay address: $g2"
assert_contains "guest2 took an address in the LAN's /64 from kvmxdp's RAs" 2001:db8:77: "$g2"
assert_ne "guest2's address is its own, not the station's" "$sta6" "$g2"
kvx_log "relay warm-up pings (neighbour resolution over the air): $(val p5_warm)/3"
assert_eq "guest2 -> server ping -6 5/5 (relay)" 5 "$(val p5_ping)"
assert_eq "2 MiB download over relay: exit status" 0 "$(val p5_dl_rc)"
assert_eq "2 MiB download over relay intact (sha256)" "$blob" "$(val p5_dl_sha)"
assert_eq "the server sees guest2's own address (no NAT)" "[$g2]" "$(val p5_srv_sees)"
assert_eq "the LAN router reaches guest2 through the station's MAC (ND proxy over the air)" \
	"$(val p5_sta_mac)" "$(val p5_lan_neigh)"
assert_eq "detach after relay" 0 "$(val p5_detach_rc)"

kvx_step "counters, detach"
c() { vm61_json "d['instances'][0]['counters']['$1']['packets']" status_json_end; }
kvx_log "counters: $(vm61_json '" ".join("%s=%d" % (k, v["packets"]) for k, v in d["instances"][0]["counters"].items() if v["packets"])' status_json_end)"
assert_ge "XLATE_OUT counted" "$(c XLATE_OUT)" 1000
assert_ge "XLATE_IN counted" "$(c XLATE_IN)" 1000
assert_ge "ARP_REPLY counted (proxy ARP for 10.77.0.50 over the air)" "$(c ARP_REPLY)" 1
for r in DROP_MALFORMED DROP_SPOOFED DROP_FIB DROP_BROKEN_PAIR DROP_TABLE_FULL DROP_PORTS_EXHAUSTED; do
	assert_eq "counter $r" 0 "$(c $r)"
done
assert_eq "detach exit status" 0 "$(val detach_rc)"
assert_eq "daemon gone after detach" yes "$(val daemon_gone)"
assert_empty "no TC filter left on the station/br0" "$(val filters_after)"
assert_empty "no pin left" "$(val pins_after)"
kvx_finish
