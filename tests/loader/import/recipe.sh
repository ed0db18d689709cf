#!/bin/sh
# The recipe from the blog posts: NAT for the guests, one guest bridged by
# iptables, and an ssh forward.
sysctl -w net.ipv4.ip_forward=1
iptables -A FORWARD -s 192.168.122.0/24 -m conntrack --ctstate NEW -j ACCEPT
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -j REJECT
iptables -t nat -A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -o wlan0 \
         -p tcp -j MASQUERADE --to-ports 1024-65535
iptables -t nat -A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -o wlan0 -p udp -j MASQUERADE --to-ports 1024-65535
iptables -t nat -A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -o wlan0 -j MASQUERADE
iptables -t nat -I POSTROUTING -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN
iptables -t nat -I POSTROUTING -s 192.168.122.0/24 -d 255.255.255.255 -j RETURN
# "bridge by iptables"
ip addr add 192.168.1.101/24 dev wlan0
iptables -t nat -A PREROUTING -d 192.168.1.101 -j DNAT --to-destination 192.168.122.101
iptables -t nat -A POSTROUTING -s 192.168.122.101 -j SNAT --to-source 192.168.1.101
iptables -t nat -A PREROUTING -i wlan0 -p tcp --dport 2222 -j DNAT --to-destination 192.168.122.102:22
iptables -t nat -A PREROUTING -i wlan0 -p tcp -m tcp --dport 8000:8010 -j DNAT --to-destination 192.168.122.102
iptables -t nat -A PREROUTING -i wlan0 -p udp --dport 5000:5001 -j DNAT --to-destination 192.168.122.103:6000-6001
iptables -A FORWARD -o wlan0 -j LOG --log-prefix "nat out: "
