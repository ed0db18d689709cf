#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the tiny QEMU guest of vm-tests/qemu_guest.sh (busybox-static
# only).  Loads the virtio-net modules, configures eth0 from the kernel
# command line, runs the checks against the server through kvmxdp and prints
# one "KVX key=value" line per result on the serial console, then powers off.
#
# Kernel command line: kvx.ip=A.B.C.D/N kvx.gw=GW kvx.srv=SERVER (no kvx.ip:
#   no IPv4 checks)
#   kvx.srv6=ADDR kvx.http6=PORT  (IPv6 by SLAAC from the bridge's RAs: the
#     address, ping -6 and an HTTP download of kvx.file from [ADDR]:PORT)
#   kvx.http=PORT kvx.file=NAME   (HTTP download of NAME, busybox wget)
#   kvx.up=PORT kvx.mb=N          (upload N MiB of random bytes, busybox nc -e)
#   kvx.tftp=PORT kvx.tfile=NAME  (UDP request/response: TFTP read of NAME)
# Every network command runs under `timeout` (57 s in all at worst): the
# guest always gets to "KVX end" and powers off.
export PATH=/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox --install -s /bin

say() { echo "KVX $*"; }
arg() {
	for a in $(cat /proc/cmdline); do
		case $a in kvx.$1=*) echo "${a#*=}" ;; esac
	done
}
stamp() { say "t_$1=$(cut -d' ' -f1 /proc/uptime)"; }
stat_of() { cat "/sys/class/net/eth0/statistics/$1"; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# eth0's global address from /proc/net/if_inet6, once neither tentative
# (0x40) nor failed DAD (0x08); '' until then.
global6() {
	while read -r a idx plen scope flags name; do
		[ "$name" = eth0 ] && [ "$scope" = 00 ] && [ $((0x$flags & 0x48)) = 0 ] &&
			echo "$a" | sed 's/..../&:/g; s/:$//' && return
	done </proc/net/if_inet6
}

# The IPv6 checks (relay mode): SLAAC from the RAs on the bridge, ping -6,
# a download; then the checksum verdicts and power off.
v6_checks() {
	i=0 A6=
	while [ -z "$A6" ] && [ $i -lt 200 ]; do sleep 0.1; A6=$(global6); i=$((i + 1)); done
	say "ip6=$A6"
	say "route6=$(ip -6 route show default 2>/dev/null | head -n1)"
	stamp slaac
	out=$(timeout 7 ping -6 -c 5 -A -w 5 "$SRV6" 2>&1)
	say "ping6_rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
	rx0=$(stat_of rx_packets)
	timeout 15 wget -q -O /tmp/dl6 "http://[$SRV6]:$(arg http6)/$(arg file)"
	say "dl6_rc=$?"
	say "dl6_bytes=$(wc -c </tmp/dl6 2>/dev/null)"
	say "dl6_sha=$(sha_of /tmp/dl6 2>/dev/null)"
	say "dl6_rx_pkts=$(($(stat_of rx_packets) - rx0))"
	rm -f /tmp/dl6
	stamp dl6
	say "csum6_errors=$(awk '$1 ~ /^(Icmp6InCsumErrors|Udp6InCsumErrors)$/ {printf "%s%s=%s", sep, $1, $2; sep = ","}' /proc/net/snmp6)"
	say "tcp_csum_errors=$(awk '$1 == "Tcp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") c = i; h = 1; next } print $c }' /proc/net/snmp)"
	stamp end
	say end
	poweroff -f
}

say begin
say "kver=$(uname -r)"
stamp init
IP=$(arg ip) GW=$(arg gw) SRV=$(arg srv)
for m in $(cat /lib/modules/modules.order); do
	insmod "/lib/modules/$m.ko" || say "insmod_failed=$m"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -e /sys/class/net/eth0 ] || say "error=no eth0 after loading virtio_net"
# virtio feature bits as negotiated (bit 0 CSUM, 1 GUEST_CSUM, 7 GUEST_TSO4, 11 HOST_TSO4)
say "features=$(cat /sys/class/net/eth0/device/features 2>/dev/null)"
say "mac=$(cat /sys/class/net/eth0/address 2>/dev/null)"
ip link set lo up
SRV6=$(arg srv6)
if [ -n "$SRV6" ]; then
	# SLAAC with the stable address only: one source address to check.
	echo 0 >/proc/sys/net/ipv6/conf/eth0/use_tempaddr
	echo 1 >/proc/sys/net/ipv6/conf/eth0/accept_ra
	echo 1 >/proc/sys/net/ipv6/conf/eth0/autoconf
fi
ip link set eth0 up
if [ -z "$IP" ]; then
	stamp net
	v6_checks
fi
ip addr add "$IP" dev eth0
ip route add default via "$GW"
stamp net

# ICMP echo (small and near-MTU)
out=$(timeout 7 ping -c 10 -A -w 5 "$SRV" 2>&1)
say "ping_rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
out=$(timeout 5 ping -c 3 -A -s 1400 -w 3 "$SRV" 2>&1)
say "ping_big_rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
stamp ping

# HTTP download (TCP server->guest: TSO/GRO and partial checksums towards the guest)
rx0=$(stat_of rx_packets)
timeout 15 wget -q -O /tmp/dl "http://$SRV:$(arg http)/$(arg file)"
say "dl_rc=$?"
say "dl_bytes=$(wc -c </tmp/dl 2>/dev/null)"
say "dl_sha=$(sha_of /tmp/dl 2>/dev/null)"
say "dl_rx_pkts=$(($(stat_of rx_packets) - rx0))"
rm -f /tmp/dl
stamp dl

# Upload (TCP guest->server: TSO super-packets with partial checksums)
head -c $(($(arg mb) * 1048576)) /dev/urandom >/tmp/up
say "up_sha=$(sha_of /tmp/up)"
say "up_bytes=$(wc -c </tmp/up)"
tp0=$(stat_of tx_packets) tb0=$(stat_of tx_bytes)
stamp up_start
timeout 15 nc "$SRV" "$(arg up)" -e cat /tmp/up
say "up_rc=$?"
say "up_tx_pkts=$(($(stat_of tx_packets) - tp0))"
say "up_tx_bytes=$(($(stat_of tx_bytes) - tb0))"
rm -f /tmp/up
stamp up

# UDP request/response: a TFTP read (lock-step DATA/ACK datagrams)
cd /tmp && timeout 10 tftp -g -r "$(arg tfile)" -l /tmp/tf "$SRV" "$(arg tftp)"
say "tftp_rc=$?"
say "tftp_bytes=$(wc -c </tmp/tf 2>/dev/null)"
say "tftp_sha=$(sha_of /tmp/tf 2>/dev/null)"
stamp tftp

# The guest's own checksum verdicts
while read -r line; do say "snmp $line"; done </proc/net/snmp
say "csum_errors=$(awk '
	$1 ~ /^(Tcp|Udp|Icmp):$/ {
		if (!($1 in hdr)) { hdr[$1] = 1; for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") col[$1] = i; next }
		printf "%s%s=%s", sep, substr($1, 1, length($1) - 1), (($1 in col) ? $(col[$1]) : "missing"); sep = ","
	}' /proc/net/snmp)"
for s in rx_packets rx_bytes rx_dropped rx_errors tx_packets tx_bytes tx_dropped tx_errors; do
	say "eth0_$s=$(stat_of $s)"
done
stamp end
say end
poweroff -f
