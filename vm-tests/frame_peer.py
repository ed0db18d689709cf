#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Ethernet-level UDP peer for kvmxdp's vm-tests: a guest that forges the
source MAC and address of its frames, and a receiver that sees every frame
reaching an interface, whoever it was addressed to (AF_PACKET, no tcpdump
or scapy needed).

send IFACE --src-mac MAC --dst-mac MAC --src ADDR:PORT --dst ADDR:PORT
     [--payload TEXT]
    One UDP datagram in one Ethernet frame exactly as given, with complete
    IPv4 and UDP checksums (so that it is no offloaded frame: kvmxdp's XDP
    path takes it).  Prints "sent".

macflood IFACE --dst-mac MAC --count N
    N frames of the local experimental EtherType 0x88b5, each from a source
    MAC of its own (random, unicast, locally administered): a guest that
    floods the bridge with made-up MACs.  Prints "sent=N".

catch IFACE --port PORT
    Prints "catching" once bound, then one line per IPv4 UDP frame that
    comes in on IFACE (outgoing ones are skipped) with PORT as its source or
    destination port: "eth_src=.. eth_dst=.. src=ADDR:PORT dst=ADDR:PORT
    data=<payload>".
"""
import argparse
import os
import socket
import struct

ETH_P_ALL = 0x0003


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def mac_text(b):
    return ":".join("%02x" % x for x in b)


def endpoint(text):
    addr, _, port = text.rpartition(":")
    return socket.inet_aton(addr), int(port)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def send(args):
    (saddr, sport), (daddr, dport) = endpoint(args.src), endpoint(args.dst)
    payload = args.payload.encode()
    ulen = 8 + len(payload)
    ph = saddr + daddr + struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen)
    uc = csum(ph + struct.pack("!HHHH", sport, dport, ulen, 0) + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, uc) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0x1234, 0x4000, 64,
                     socket.IPPROTO_UDP, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frame = mac_bytes(args.dst_mac) + mac_bytes(args.src_mac) + b"\x08\x00" + ip + udp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    s.send(frame)
    print("sent", flush=True)


def macflood(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    dst, seen = mac_bytes(args.dst_mac), set()
    while len(seen) < args.count:
        src = bytes([0x02]) + os.urandom(5)
        if src in seen:
            continue
        seen.add(src)
        s.send(dst + src + b"\x88\xb5" + b"kvmxdp-macflood".ljust(46, b"\0"))
    print(f"sent={len(seen)}", flush=True)


def catch(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((args.iface, 0))
    print("catching " + args.iface, flush=True)
    while True:
        frame, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0xF) * 4
        if ip[9] != socket.IPPROTO_UDP or len(ip) < ihl + 8:
            continue
        sport, dport, ulen = struct.unpack("!HHH", ip[ihl:ihl + 6])
        if args.port not in (sport, dport):
            continue
        data = ip[ihl + 8:ihl + ulen].decode(errors="replace").strip()
        print(f"eth_src={mac_text(frame[6:12])} eth_dst={mac_text(frame[0:6])} "
              f"src={socket.inet_ntoa(ip[12:16])}:{sport} dst={socket.inet_ntoa(ip[16:20])}:{dport} "
              f"data={data}", flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("send")
    ps.add_argument("iface")
    ps.add_argument("--src-mac", required=True)
    ps.add_argument("--dst-mac", required=True)
    ps.add_argument("--src", required=True)
    ps.add_argument("--dst", required=True)
    ps.add_argument("--payload", default="frame")
    pf = sub.add_parser("macflood")
    pf.add_argument("iface")
    pf.add_argument("--dst-mac", required=True)
    pf.add_argument("--count", type=int, required=True)
    pc = sub.add_parser("catch")
    pc.add_argument("iface")
    pc.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    {"send": send, "macflood": macflood, "catch": catch}[args.cmd](args)


if __name__ == "__main__":
    main()
