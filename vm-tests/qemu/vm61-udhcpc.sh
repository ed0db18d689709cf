#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# busybox udhcpc's event script for the station uplink of vm61-wifi61.sh
# (not a test: /init only runs vm61-<kvx.test>.sh).  Applies the lease with
# iproute2 and logs every event to /tmp/udhcpc.events.  A lease of a NEW
# address replaces the old one (what NetworkManager/ifupdown do), so kvmxdp
# sees the uplink address change.
# shellcheck disable=SC2154 # interface, ip, mask, router: set by udhcpc
IP=/usr/sbin/ip
echo "$1 ip=${ip:-} mask=${mask:-} router=${router:-}" >>/tmp/udhcpc.events
case $1 in
deconfig)
	$IP -4 addr flush dev "$interface"
	$IP link set "$interface" up
	;;
bound | renew)
	new="$ip/${mask:-24}"
	old=$($IP -4 -o addr show dev "$interface" | awk '{ print $4; exit }')
	if [ "$old" != "$new" ]; then
		$IP -4 addr flush dev "$interface"
		$IP addr add "$new" dev "$interface"
	fi
	for r in $router; do
		$IP route replace default via "$r" dev "$interface"
		break
	done
	;;
esac
exit 0
