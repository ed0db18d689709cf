#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Hand-made IPv6 frames for the vm-tests, sent with AF_PACKET (any source
address, no help from the sender's stack):

  udp6 IF SRC DST DPORT DST_MAC COUNT
      COUNT UDP datagrams from SRC to DST:DPORT, to DST_MAC.
  ns IF SRC TARGET WAIT
      a Neighbour Solicitation from SRC (the device's MAC in its source
      link-layer option) for TARGET, to TARGET's solicited-node group;
      prints the target link-layer address of every Neighbour
      Advertisement for TARGET heard within WAIT seconds ("none": none).
  ra IF SRC PREFIX:VALID:PREFERRED...
      a Router Advertisement from the link-local SRC, router lifetime 0 (no
      default router), to all nodes, one prefix information option
      (on-link, autonomous) per PREFIX/len with its lifetimes.
"""
import ipaddress
import select
import socket
import struct
import sys
import time

ETH_P_IPV6 = 0x86DD


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def a6(text):
    return ipaddress.IPv6Address(text).packed


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def ip6(src, dst, nh, payload, hops):
    hdr = struct.pack("!IHBB", 0x60000000, len(payload), nh, hops) + src + dst
    return hdr + payload


def l4_sum(src, dst, nh, l4):
    pseudo = src + dst + struct.pack("!IxxxB", len(l4), nh)
    return csum(pseudo + l4)


def icmp6(src, dst, body):
    msg = bytearray(body)
    msg[2:4] = b"\0\0"
    msg[2:4] = struct.pack("!H", l4_sum(src, dst, 58, bytes(msg)))
    return ip6(src, dst, 58, bytes(msg), 255)


def mcast_mac(group):
    return b"\x33\x33" + group[12:16]


def solicited(target):
    return a6("ff02::1:ff00:0")[:13] + target[13:16]


def open_if(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
    s.bind((ifname, 0))
    return s, s.getsockname()[4]


def cmd_udp6(ifname, src, dst, dport, dst_mac, count):
    s, me = open_if(ifname)
    src, dst = a6(src), a6(dst)
    for i in range(int(count)):
        data = b"kvx-udp6-%d" % i
        udp = struct.pack("!HHHH", 40000, int(dport), 8 + len(data), 0) + data
        c = l4_sum(src, dst, 17, udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", c) + udp[8:]
        s.send(mac_bytes(dst_mac) + me + struct.pack("!H", ETH_P_IPV6) + ip6(src, dst, 17, udp, 64))
        time.sleep(0.1)


def cmd_ns(ifname, src, target, wait):
    s, me = open_if(ifname)
    src, target = a6(src), a6(target)
    group = solicited(target)
    body = struct.pack("!BBHI", 135, 0, 0, 0) + target + b"\x01\x01" + me
    s.send(mcast_mac(group) + me + struct.pack("!H", ETH_P_IPV6) + icmp6(src, group, body))
    seen = []
    end = time.time() + float(wait)
    while time.time() < end:
        r, _, _ = select.select([s], [], [], max(0.0, end - time.time()))
        if not r:
            break
        f, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        ip = f[14:]
        if len(ip) < 40 + 24 or ip[6] != 58 or ip[40] != 136 or ip[48:64] != target:
            continue
        m, off = ip[40:], 24
        lladdr = "none-option"
        while off + 8 <= len(m) and m[off + 1]:
            if m[off] == 2:
                lladdr = ":".join("%02x" % b for b in m[off + 2:off + 8])
            off += m[off + 1] * 8
        seen.append(lladdr)
    print("\n".join(seen) if seen else "none", flush=True)


def cmd_ra(ifname, src, *prefixes):
    s, me = open_if(ifname)
    src, dst = a6(src), a6("ff02::1")
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
    body += b"\x01\x01" + me
    for p in prefixes:
        net, valid, pref = p.split(":")[:-2], int(p.split(":")[-2]), int(p.split(":")[-1])
        n = ipaddress.IPv6Network(":".join(net))
        body += struct.pack("!BBBBIII", 3, 4, n.prefixlen, 0xC0, valid, pref, 0)
        body += n.network_address.packed
    s.send(mcast_mac(dst) + me + struct.pack("!H", ETH_P_IPV6) + icmp6(src, dst, body))


if __name__ == "__main__":
    cmds = {"udp6": cmd_udp6, "ns": cmd_ns, "ra": cmd_ra}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
