#!/bin/bash
# /etc/libvirt/hooks/qemu: forward ports to guests (the libvirt wiki's recipe)
if [ "${1}" = "webserver" ]; then
   GUEST_IP=192.168.122.50
   GUEST_PORT=80
   HOST_PORT=8080

   if [ "${2}" = "stopped" ] || [ "${2}" = "reconnect" ]; then
	/sbin/iptables -D FORWARD -o virbr0 -p tcp -d $GUEST_IP --dport $GUEST_PORT -j ACCEPT
	/sbin/iptables -t nat -D PREROUTING -p tcp --dport $HOST_PORT -j DNAT --to $GUEST_IP:$GUEST_PORT
   fi
   if [ "${2}" = "start" ] || [ "${2}" = "reconnect" ]; then
	/sbin/iptables -I FORWARD -o virbr0 -p tcp -d $GUEST_IP --dport $GUEST_PORT -j ACCEPT
	/sbin/iptables -t nat -I PREROUTING -p tcp --dport $HOST_PORT -j DNAT --to "$GUEST_IP:$GUEST_PORT"
   fi
fi
if [ "${1}" = "mail" ]; then
   for p in 25 587; do
	iptables -t nat -I PREROUTING -p tcp --dport $p -j DNAT --to 192.168.122.60:$p
   done
   iptables -t nat -I PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 192.168.122.60:80 || true
fi
if [ "${1}" = "db" ]; then
   EXT=192.168.1.105
   iptables -t nat -A PREROUTING -d $EXT -j DNAT --to-destination 192.168.122.70
   iptables -t nat -A POSTROUTING -s 192.168.122.70 -j SNAT --to-source $EXT
   iptables -t nat -A OUTPUT -d $EXT -j DNAT --to-destination 192.168.122.70
   iptables -t nat -A PREROUTING -d $EXT -j DNAT --to-destination 192.168.122.70
   ip6tables -t nat -A PREROUTING -d 2001:db8::5 -j DNAT --to-destination fd00::70
fi
