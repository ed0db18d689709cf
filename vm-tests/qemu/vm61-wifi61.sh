#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# In-VM part of vm-tests/wifi61.sh (busybox sh, run by /init on Debian 12's
# 6.1 kernel): kvmxdp with a REAL 802.11 station as its uplink
# (mac80211_hwsim: simulated radios driven by the real mac80211 stack).
# Prints "KVX key=value" results; the host asserts them.
#
#   ns g1  192.168.122.11 (gets the 1:1 address 10.77.0.50) --+
#   ns g2  192.168.122.12 (masquerade)                        --+ br0 192.168.122.1/24
#   root ns (the KVM host): station STA (wpa_supplicant WPA2-PSK, busybox
#          udhcpc), kvmxdp attach --bridge br0 --uplink STA
#              ~ ~ ~ 802.11 (hwsim, CCMP) ~ ~ ~
#   ns lan AP (hostapd) 10.77.0.1/24 + udhcpd (static lease: STA -> .10,
#          later -> .11); the LAN client of the 1:1 checks; router to
#   ns srv 10.78.0.2 (httpd :8080 with cgi-bin/addr, nc upload sink :9000)
#
# IPv6: the AP's side announces 2001:db8:77::/64 (radvd), the station takes
# a SLAAC address in it, the server is 2001:db8:78::2 beyond the router;
# the guests first sit on the bridge's ULA fd42:b::/64 (NAT66, attach's
# default), at the end kvmxdp is attached again with --ipv6 relay and the
# guests take addresses in the LAN's own /64 from kvmxdp's RAs.
#
# Phases: masquerade (and NAT66); 1:1 from the LAN; DHCP renewal to a new
# address; disassociate/reassociate; relay.  Every wait is bounded.
IP=/usr/sbin/ip TC=/usr/sbin/tc
K="/usr/bin/kvmxdp --bpffs /bpf --config /etc/kvmxdp/kvmxdp.json"
SSID=kvx-wifi61 PSK=kvmxdp-test-psk
say() { echo "KVX $*"; }
stamp() { say "t_$1=$(cut -d' ' -f1 /proc/uptime)"; }
in_ns() { # NS CMD...: CMD in netns NS ('' = the root ns, the host)
	ns=$1
	shift
	if [ -n "$ns" ]; then $IP netns exec "$ns" "$@"; else "$@"; fi
}
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
received() { sed -n 's/.* \([0-9]*\) packets received.*/\1/p'; }
# wait_for TENTHS CMD...: poll every 0.1 s for at most TENTHS/10 s of
# wall time (under TCG a poll can itself take a while)
now10() { awk '{ printf "%d", $1 * 10 }' /proc/uptime; }
wait_for() {
	end=$(($(now10) + $1))
	shift
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(now10)" -lt "$end" ] || return 1
		sleep 0.1
	done
}
wpa_state() { wpa_cli -p /run/wpa_supplicant -i "$STA" status 2>/dev/null | sed -n 's/^wpa_state=//p'; }
sta_state_is() { [ "$(wpa_state)" = "$1" ]; }
sta_addr() { $IP -4 -o addr show dev "$STA" | awk '{ split($4, a, "/"); print a[1]; exit }'; }
sta_addr_is() { [ "$(sta_addr)" = "$1" ]; }
status_has() { $K status --json 2>/dev/null | tr -d ' \n' | grep -q "$1"; }
# fetch NS URL: body ('' on failure)
fetch() { in_ns "$1" timeout 15 wget -q -O - "$2" 2>/dev/null; }
download() { # PREFIX NS: 2 MiB from the server, checked by sha256
	rm -f /tmp/dl
	in_ns "$2" timeout 30 wget -q -O /tmp/dl http://10.78.0.2:8080/blob
	say "${1}_dl_rc=$?"
	say "${1}_dl_sha=$(sha /tmp/dl)"
}
ping_srv() { in_ns "$1" ping -c 5 -i 0.2 -W 2 -w 8 10.78.0.2 2>&1 | received; }

# ------------------------------------------------------------- radios
stamp wifi_start
insmod /lib/modules/mac80211_hwsim.ko radios=2 || say "insmod_failed=mac80211_hwsim"
wait_for 50 test -e /sys/class/ieee80211/phy1
# the AP radio is the first phy, the station the second
AP_PHY="" STA_PHY="" AP="" STA=""
for d in /sys/class/net/*; do
	[ -e "$d/phy80211/name" ] || continue
	p=$(cat "$d/phy80211/name")
	if [ -z "$AP" ]; then AP=${d##*/} AP_PHY=$p; else STA=${d##*/} STA_PHY=$p; fi
done
say "ap=$AP/$AP_PHY"
say "sta=$STA/$STA_PHY"
STA_MAC=$(cat "/sys/class/net/$STA/address")
say "sta_wireless=$([ -d "/sys/class/net/$STA/wireless" ] && echo yes || echo no)"
say "sta_driver=$(basename "$(readlink "/sys/class/net/$STA/device/driver" 2>/dev/null)")"

for ns in lan srv g1 g2; do $IP netns add $ns && in_ns $ns $IP link set lo up; done
iw phy "$AP_PHY" set netns name lan
say "ap_moved=$(in_ns lan cat "/sys/class/net/$AP/phy80211/name" 2>/dev/null)"
in_ns lan $IP addr add 10.77.0.1/24 dev "$AP"
in_ns lan $IP link set "$AP" up
in_ns lan $IP link add lan1 type veth peer name eth0 netns srv
in_ns lan $IP addr add 10.78.0.1/24 dev lan1
in_ns lan $IP link set lan1 up
in_ns lan sysctl -qw net.ipv4.ip_forward=1
in_ns srv $IP addr add 10.78.0.2/24 dev eth0
in_ns srv $IP link set eth0 up
in_ns srv $IP route add default via 10.78.0.1
in_ns lan sysctl -qw net.ipv6.conf.all.forwarding=1
in_ns lan $IP -6 addr add 2001:db8:77::1/64 dev "$AP" nodad
in_ns lan $IP -6 addr add 2001:db8:78::1/64 dev lan1 nodad
in_ns srv $IP -6 addr add 2001:db8:78::2/64 dev eth0 nodad
in_ns srv $IP -6 route add default via 2001:db8:78::1

# ------------------------------------------------------------- AP + DHCP
mkdir -p /run/hostapd /run/wpa_supplicant
cat >/tmp/hostapd.conf <<EOF
interface=$AP
driver=nl80211
ctrl_interface=/run/hostapd
ssid=$SSID
hw_mode=g
channel=6
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=$PSK
EOF
in_ns lan hostapd /tmp/hostapd.conf >/tmp/hostapd.log 2>&1 &
wait_for 100 grep -q AP-ENABLED /tmp/hostapd.log
say "ap_enabled=$(grep -c AP-ENABLED /tmp/hostapd.log)"
stamp ap
# The LAN's router advertisements, over the air once the station associates.
cat >/tmp/radvd.conf <<EOF
interface $AP {
	AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4;
	prefix 2001:db8:77::/64 { AdvOnLink on; AdvAutonomous on; };
};
EOF
in_ns lan radvd -n -m stderr -C /tmp/radvd.conf -p /tmp/radvd.pid >/tmp/radvd.log 2>&1 &
udhcpd_conf() { # STATIC_IP
	cat >/tmp/udhcpd.conf <<EOF
start 10.77.0.100
end 10.77.0.120
interface $AP
lease_file /tmp/udhcpd.leases
option subnet 255.255.255.0
option router 10.77.0.1
option lease 600
static_lease $STA_MAC $1
EOF
}
udhcpd_conf 10.77.0.10
: >/tmp/udhcpd.leases
$IP netns exec lan udhcpd -f /tmp/udhcpd.conf >/tmp/udhcpd.log 2>&1 &
udhcpd_pid=$!

# ------------------------------------------------------------- station
cat >/tmp/wpa.conf <<EOF
ctrl_interface=/run/wpa_supplicant
network={
	ssid="$SSID"
	psk="$PSK"
	key_mgmt=WPA-PSK
	proto=RSN
	pairwise=CCMP
	scan_freq=2437
	freq_list=2437
}
EOF
wpa_supplicant -D nl80211 -i "$STA" -c /tmp/wpa.conf >/tmp/wpa.log 2>&1 &
wait_for 200 sta_state_is COMPLETED
say "assoc1=$(wpa_state)"
stamp assoc
# A laptop: SLAAC on the station, stable address only, no IPv6 forwarding.
sysctl -qw "net.ipv6.conf.$STA.accept_ra=1" "net.ipv6.conf.$STA.autoconf=1" \
	"net.ipv6.conf.$STA.use_tempaddr=0"
$IP link set "$STA" up
: >/tmp/udhcpc.events
udhcpc -f -i "$STA" -s /kvx/vm61-udhcpc.sh -t 20 -T 1 -A 1 >/tmp/udhcpc.log 2>&1 &
udhcpc_pid=$!
wait_for 150 sta_addr_is 10.77.0.10
say "sta_addr1=$(sta_addr)"
say "sta_route1=$($IP -4 route show default | head -n1)"
stamp dhcp
# addr6 NS DEV: the device's global IPv6 address once DAD is done ('' if none)
addr6() { in_ns "$1" $IP -6 -o addr show dev "$2" scope global -tentative -dadfailed 2>/dev/null |
	awk '{ split($4, a, "/"); print a[1]; exit }'; }
has_addr6() { [ -n "$(addr6 "$1" "$2")" ]; }
wait_for 200 has_addr6 "" "$STA"
say "sta6=$(addr6 "" "$STA")"
stamp slaac

# ------------------------------------------------------------- host side
$IP link add br0 type bridge stp_state 0 forward_delay 0
$IP addr add 192.168.122.1/24 dev br0
# The guests' ULA, as libvirt's <ip family='ipv6'>: attach's --ipv6 auto
# then runs NAT66 on it.
$IP -6 addr add fd42:b::1/64 dev br0 nodad
$IP link set br0 up
mkdir -p /tmp/www/cgi-bin
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$REMOTE_ADDR"\n' >/tmp/www/cgi-bin/addr
chmod 755 /tmp/www/cgi-bin/addr
head -c 2097152 /dev/urandom >/tmp/www/blob
say "blob_sha=$(sha /tmp/www/blob)"
for g in 1 2; do
	$IP link add vg$g type veth peer name eth0 netns g$g
	$IP link set vg$g master br0
	$IP link set vg$g up
	in_ns g$g $IP addr add 192.168.122.1$g/24 dev eth0
	in_ns g$g $IP link set eth0 up
	in_ns g$g $IP route add default via 192.168.122.1
	in_ns g$g sysctl -qw net.ipv6.conf.eth0.accept_ra=0
	in_ns g$g $IP -6 addr add fd42:b::1$g/64 dev eth0 nodad
	in_ns g$g $IP -6 route add default via fd42:b::1
	mkdir -p /tmp/g$g/cgi-bin
	cp /tmp/www/cgi-bin/addr /tmp/g$g/cgi-bin/addr
	echo "guest$g" >/tmp/g$g/who
	in_ns g$g httpd -p 0.0.0.0:80 -h /tmp/g$g
done
in_ns srv httpd -p 10.78.0.2:8080 -h /tmp/www
in_ns srv httpd -p "[2001:db8:78::2]:8080" -h /tmp/www

# ------------------------------------------------------------- attach
mode=""
if /usr/bin/kvmxdp attach --help 2>&1 | grep -q -- '--mode'; then mode="--mode auto"; fi
say "mode_flag=${mode:-none}"
# Loading and verifying the BPF programs takes 15-30 s under TCG on one
# CPU (a second or two on real hardware): the waits allow 120 s.
stamp attach_start
$K attach --bridge br0 --uplink "$STA" $mode >/tmp/attach.log 2>&1 &
dpid=$!
wait_for 1200 grep -q '^kvmxdp: attached' /tmp/attach.log
say "attached=$(grep -c '^kvmxdp: attached' /tmp/attach.log)"
sed 's/^/KVXA /' /tmp/attach.log
if ! grep -q '^kvmxdp: attached' /tmp/attach.log; then
	say "wifi=skipped: attach failed ($(kill -0 $dpid 2>/dev/null && echo 'still loading after 120 s' || echo 'it exited'))"
	exit 1
fi
say "tc_sta=$($TC filter show dev "$STA" ingress | grep -c ' bpf .*kvx_up_ingress')"
stamp attach
say "status_json=$($K status --json 2>/dev/null | tr -d '\n')"
stamp attached

# ------------------------------------------------------------- 1. masquerade
say "p1_ping=$(ping_srv g2)"
download p1 g2
stamp p1_dl
say "p1_srv_sees=$(fetch g2 http://10.78.0.2:8080/cgi-bin/addr)"
head -c 1048576 /dev/urandom >/tmp/up
say "p1_up_sha=$(sha /tmp/up)"
rm -f /tmp/up.srv
in_ns srv nc -l -p 9000 -e /bin/sh -c 'cat >/tmp/up.srv' &
sink=$!
sleep 0.3
in_ns g2 timeout 30 nc 10.78.0.2 9000 -e cat /tmp/up
say "p1_up_rc=$?"
wait_for 50 sh -c "! kill -0 $sink"
say "p1_up_srv_sha=$(sha /tmp/up.srv)"
stamp masquerade
# NAT66 over the station: the guest's ULA leaves from the station's address
say "p6_ping=$(in_ns g2 ping -6 -c 5 -i 0.2 -W 2 -w 8 2001:db8:78::2 2>&1 | received)"
rm -f /tmp/dl
in_ns g2 timeout 30 wget -q -O /tmp/dl "http://[2001:db8:78::2]:8080/blob"
say "p6_dl_rc=$?"
say "p6_dl_sha=$(sha /tmp/dl)"
say "p6_srv_sees=$(fetch g2 'http://[2001:db8:78::2]:8080/cgi-bin/addr')"
stamp nat66

# ------------------------------------------------------------- 2. 1:1 from the LAN
$K map add 10.77.0.50 192.168.122.11 >/tmp/map.log 2>&1
say "p2_map_rc=$?"
sed 's/^/KVXA /' /tmp/map.log
say "p2_lan_who=$(fetch lan http://10.77.0.50/who)"
say "p2_guest_sees=$(fetch lan http://10.77.0.50/cgi-bin/addr)"
say "p2_mapped_out=$(fetch g1 http://10.78.0.2:8080/cgi-bin/addr)"
stamp mapping

# ------------------------------------------------------------- 3. DHCP: a new address
# The server now leases .11 to the station.  busybox udhcpd does not answer
# a RENEWING client whose address it no longer leases (RFC 2131 lets it stay
# silent), so the client releases its lease and asks again (udhcpc SIGUSR2,
# SIGUSR1), as a client does after a NAK: DISCOVER, OFFER of .11, bound.
# ($! of `ip netns exec` is the server itself: ip execs it)
kill "$udhcpd_pid"
wait "$udhcpd_pid" 2>/dev/null
say "p3_old_server_gone=$(kill -0 "$udhcpd_pid" 2>/dev/null && echo no || echo yes)"
udhcpd_conf 10.77.0.11
: >/tmp/udhcpd.leases
$IP netns exec lan udhcpd -f /tmp/udhcpd.conf >/tmp/udhcpd2.log 2>&1 &
udhcpd_pid=$!
wait_for 30 sh -c "grep -q started /tmp/udhcpd2.log"
kill -USR2 "$udhcpc_pid"
wait_for 30 sh -c "tail -n1 /tmp/udhcpc.events | grep -q deconfig"
kill -USR1 "$udhcpc_pid"
wait_for 150 sta_addr_is 10.77.0.11
stamp p3_dhcp
say "p3_sta_addr=$(sta_addr)"
$IP route replace default via 10.77.0.1 dev "$STA" 2>/dev/null
wait_for 100 status_has '"uplink_addr":"10.77.0.11"'
stamp p3_status
say "p3_status_uplink_addr=$($K status --json 2>/dev/null | tr -d ' \n' | sed -n 's/.*"uplink_addr":"\([0-9.]*\)".*/\1/p')"
say "p3_srv_sees=$(fetch g2 http://10.78.0.2:8080/cgi-bin/addr)"
stamp p3_fetch
say "p3_ping=$(ping_srv g2)"
download p3 g2
say "p3_lan_who=$(fetch lan http://10.77.0.50/who)"
sed 's/^/KVXD /' /tmp/udhcpc.events
stamp renew

# ------------------------------------------------------------- 4. disassociate, reassociate
wpa_cli -p /run/wpa_supplicant -i "$STA" disconnect >/dev/null
wait_for 50 sta_state_is DISCONNECTED
say "p4_state_off=$(wpa_state)"
say "p4_ping_off=$(in_ns g2 ping -c 2 -i 0.2 -W 1 -w 2 10.78.0.2 2>&1 | received)"
wpa_cli -p /run/wpa_supplicant -i "$STA" reconnect >/dev/null
wait_for 200 sta_state_is COMPLETED
say "p4_state_on=$(wpa_state)"
say "p4_sta_addr=$(sta_addr)"
stamp p4_assoc
say "p4_ping=$(ping_srv g2)"
download p4 g2
say "p4_srv_sees=$(fetch g2 http://10.78.0.2:8080/cgi-bin/addr)"
say "p4_lan_who=$(fetch lan http://10.77.0.50/who)"
say "p4_guest_sees=$(fetch lan http://10.77.0.50/cgi-bin/addr)"
stamp roam

# ------------------------------------------------------------- end
say "status_json_end=$($K status --json 2>/dev/null | tr -d '\n')"
$K detach --bridge br0 >/tmp/detach.log 2>&1
say "detach_rc=$?"
wait_for 50 sh -c "! kill -0 $dpid"
say "daemon_gone=$(kill -0 "$dpid" 2>/dev/null && echo no || echo yes)"
sed 's/^/KVXA /' /tmp/detach.log
say "filters_after=$($TC filter show dev "$STA" ingress; $TC filter show dev br0 ingress)"
say "pins_after=$(find /bpf/kvmxdp -mindepth 1 2>/dev/null | tr '\n' ' ')"

# ------------------------------------------------------------- 5. relay
# The guests leave the ULA; kvmxdp again, in relay mode: the guests take
# addresses in the LAN's own /64 from kvmxdp's RAs and are reached over the
# air through its ND proxy (the station answers for them with its own MAC).
for g in 1 2; do
	in_ns g$g $IP -6 addr flush dev eth0 scope global
	in_ns g$g $IP -6 route flush default 2>/dev/null
	in_ns g$g sysctl -qw net.ipv6.conf.eth0.use_tempaddr=0 net.ipv6.conf.eth0.autoconf=1 \
		net.ipv6.conf.eth0.accept_ra=1
done
$IP -6 addr del fd42:b::1/64 dev br0
$K attach --bridge br0 --uplink "$STA" --ipv6 relay >/tmp/attach2.log 2>&1 &
dpid=$!
wait_for 1200 grep -q '^kvmxdp: attached' /tmp/attach2.log
say "p5_attached=$(grep -c '^kvmxdp: attached' /tmp/attach2.log)"
sed 's/^/KVXA /' /tmp/attach2.log
wait_for 300 has_addr6 g2 eth0
G2_6=$(addr6 g2 eth0)
say "p5_g2_addr=$G2_6"
stamp p5_slaac
# The first packets from a new address wait on neighbour resolution over
# the air (the LAN router's NS for the guest, answered by kvmxdp's ND
# proxy; the host's for the router): a warm-up, counted but not asserted,
# then the checked pings.
say "p5_warm=$(in_ns g2 ping -6 -c 3 -i 0.5 -W 2 -w 4 2001:db8:78::2 2>&1 | received)"
say "p5_ping=$(in_ns g2 ping -6 -c 5 -i 0.2 -W 2 -w 8 2001:db8:78::2 2>&1 | received)"
rm -f /tmp/dl
in_ns g2 timeout 30 wget -q -O /tmp/dl "http://[2001:db8:78::2]:8080/blob"
say "p5_dl_rc=$?"
say "p5_dl_sha=$(sha /tmp/dl)"
say "p5_srv_sees=$(fetch g2 'http://[2001:db8:78::2]:8080/cgi-bin/addr')"
say "p5_lan_neigh=$(in_ns lan $IP -6 neigh show "$G2_6" dev "$AP" | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')"
say "p5_sta_mac=$STA_MAC"
stamp relay
$K detach --bridge br0 >/tmp/detach2.log 2>&1
say "p5_detach_rc=$?"
wait_for 50 sh -c "! kill -0 $dpid"

grep -E 'AP-STA|CTRL-EVENT|key addition' /tmp/hostapd.log /tmp/wpa.log | tail -n 20 | sed 's/^/KVXW /'
stamp wifi_end
