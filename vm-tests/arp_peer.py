#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""ARP peer for kvmxdp's vm-tests: a LAN host that watches, probes and
contends for addresses on the uplink's segment (RFC 5227), from a raw
AF_PACKET socket (no arping/tcpdump needed).

sniff IFACE
    Prints "sniffing" once bound, then one line per ARP frame seen on IFACE,
    in both directions:
    "t=<CLOCK_MONOTONIC s> pkt=<in|out> eth_src=.. eth_dst=.. op=<1|2>
     sha=.. spa=.. tha=.. tpa=..".

probe IFACE ADDR [--sha MAC] [--count N] [--interval SEC] [--wait SEC]
    Sends N RFC 5227 probes for ADDR (request, sender address 0.0.0.0, target
    hardware address zero) from MAC (default: IFACE's own), then prints every
    ARP frame that came in with ADDR as its sender address (the owner's
    defence) as "answer op=.. sha=.. spa=.. tha=.. tpa=.. eth_src=.. eth_dst=..",
    until --wait seconds after the last probe.  Exit 1 if none came.

contend IFACE ADDR --sha MAC [--wait SEC]
    Waits (at most --wait seconds) for another host's probe of ADDR, then
    probes for ADDR itself from MAC, as a host that picked the same address
    at the same moment does (RFC 5227 2.1.1: both must give it up).  Prints
    "contending" once bound and "contended with=<the other's MAC>" when it
    has answered; exit 1 if no probe came.

reply IFACE SPA --to MAC TPA [--count N] [--tags T]
    What arpspoof sends: N ARP replies nobody asked for (0.2 s apart), from
    IFACE's MAC (sender hardware address too) claiming SPA, to MAC at TPA;
    with --tags, inside T 802.1Q tags of VLAN 0 (priority tags, which Linux
    takes off one by one).  Prints "sent N".

flood IFACE NET --seconds SEC
    A hostile guest: ARP requests as fast as it can send them for SEC
    seconds, each from another forged sender and for another target in the
    /16 NET (e.g. 10.99.0.0), every one different; prints "sent N".
"""
import argparse
import fcntl
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SIOCGIFHWADDR = 0x8927
BROADCAST = b"\xff" * 6


def mac_str(b):
    return ":".join(f"{x:02x}" for x in b)


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def open_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    return s


def iface_mac(s, iface):
    req = struct.pack("256s", iface.encode()[:15])
    return fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, req)[18:24]


def parse(frame):
    """(eth_dst, eth_src, op, sha, spa, tha, tpa) of an Ethernet/IPv4 ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    a = frame[22:42]
    return (frame[0:6], frame[6:12], op, a[0:6], socket.inet_ntoa(a[6:10]), a[10:16],
            socket.inet_ntoa(a[16:20]))


def arp_packet(op, sha, spa, tha, tpa):
    """An IPv4-over-Ethernet ARP packet (RFC 826); addresses as bytes."""
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa


def send_probe(s, sha, addr):
    arp = arp_packet(1, sha, b"\0" * 4, b"\0" * 6, socket.inet_aton(addr))
    s.send(BROADCAST + sha + b"\x08\x06" + arp)


def recv_until(s, deadline):
    """Yields (pkttype, fields) for every ARP frame until the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if not select.select([s], [], [], left)[0]:
            continue
        frame, meta = s.recvfrom(2048)
        f = parse(frame)
        if f:
            yield meta[2], f


def sniff(args):
    s = open_socket(args.iface)
    print("sniffing", flush=True)
    while True:
        frame, meta = s.recvfrom(2048)
        f = parse(frame)
        if not f:
            continue
        dst, src, op, sha, spa, tha, tpa = f
        print(f"t={time.monotonic():.3f} pkt={'out' if meta[2] == PACKET_OUTGOING else 'in'} "
              f"eth_src={mac_str(src)} eth_dst={mac_str(dst)} op={op} sha={mac_str(sha)} "
              f"spa={spa} tha={mac_str(tha)} tpa={tpa}", flush=True)


def probe(args):
    s = open_socket(args.iface)
    sha = mac_bytes(args.sha) if args.sha else iface_mac(s, args.iface)
    answers = 0
    for i in range(args.count):
        send_probe(s, sha, args.addr)
        wait = args.interval if i + 1 < args.count else args.wait
        for pkttype, (dst, src, op, asha, spa, tha, tpa) in recv_until(s, time.monotonic() + wait):
            if pkttype == PACKET_OUTGOING or spa != args.addr:
                continue
            answers += 1
            print(f"answer op={op} sha={mac_str(asha)} spa={spa} tha={mac_str(tha)} tpa={tpa} "
                  f"eth_src={mac_str(src)} eth_dst={mac_str(dst)}", flush=True)
    return 0 if answers else 1


def contend(args):
    s = open_socket(args.iface)
    sha = mac_bytes(args.sha)
    print("contending", flush=True)
    for pkttype, (dst, src, op, other, spa, tha, tpa) in recv_until(s, time.monotonic() + args.wait):
        if pkttype != PACKET_OUTGOING and op == 1 and spa == "0.0.0.0" and tpa == args.addr \
                and other != sha:
            send_probe(s, sha, args.addr)
            print(f"contended with={mac_str(other)}", flush=True)
            return 0
    return 1


def reply(args):
    s = open_socket(args.iface)
    sha = iface_mac(s, args.iface)
    to = mac_bytes(args.to)
    arp = arp_packet(2, sha, socket.inet_aton(args.spa), to, socket.inet_aton(args.tpa))
    tags = b"\x81\x00\x00\x00" * args.tags
    for i in range(args.count):
        if i:
            time.sleep(0.2)
        s.send(to + sha + tags + b"\x08\x06" + arp)
    print(f"sent {args.count}", flush=True)


def flood(args):
    s = open_socket(args.iface)
    sha = iface_mac(s, args.iface)
    base = struct.unpack("!I", socket.inet_aton(args.net))[0] & 0xffff0000
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(256):
            spa = struct.pack("!I", base | (n & 0xffff))
            tpa = struct.pack("!I", base | ((n * 7 + 1) & 0xffff))
            arp = arp_packet(1, sha, spa, b"\0" * 6, tpa)
            try:
                s.send(BROADCAST + sha + b"\x08\x06" + arp)
            except OSError:
                pass  # the device's queue is full: a flood does not care
            n += 1
    print(f"sent {n}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sniff")
    p.add_argument("iface")
    p = sub.add_parser("probe")
    p.add_argument("iface")
    p.add_argument("addr")
    p.add_argument("--sha")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--wait", type=float, default=1.0)
    p = sub.add_parser("contend")
    p.add_argument("iface")
    p.add_argument("addr")
    p.add_argument("--sha", required=True)
    p.add_argument("--wait", type=float, default=10.0)
    p = sub.add_parser("reply")
    p.add_argument("iface")
    p.add_argument("spa")
    p.add_argument("--to", required=True)
    p.add_argument("tpa")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--tags", type=int, default=0)
    p = sub.add_parser("flood")
    p.add_argument("iface")
    p.add_argument("net")
    p.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    return {"sniff": sniff, "probe": probe, "contend": contend,
            "reply": reply, "flood": flood}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
