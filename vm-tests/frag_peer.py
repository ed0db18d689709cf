#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""IPv4 and IPv6 fragments out of order, for kvmxdp's vm-tests
(frag_order.sh, frag_order6.sh).

A UDP datagram is fragmented here, by hand, and its fragments are sent
from a raw socket (IPv4: IP_HDRINCL, IP_NODEFRAG; IPv6: IPPROTO_RAW, whose
packets carry their own header, here with a Fragment header) in the order
asked for ("last first" by default: every later fragment arrives before
the first).  The receiver is an ordinary UDP socket: the kernel reassembles
what arrives, and only a datagram whose every fragment arrived is
delivered.  Addresses with a colon are IPv6 ("[addr]:port" or
"addr:port").

serve ADDR:PORT [--size N] [--frag N]
    Binds a UDP socket; prints "got from=<ip>:<port> len=<n> sha=<sha256>"
    for every datagram.  A datagram starting with "hello" is answered with a
    datagram of --size bytes (pattern of the peer's port), fragmented into
    --frag byte pieces, sent last fragment first from ADDR:PORT; prints
    "sent to=<ip>:<port> len=<n> sha=<sha256> frags=<n>".

client --bind ADDR:PORT DST:PORT [--size N] [--frag N] [--wait SEC] [--hello]
    From one UDP socket bound to ADDR:PORT: "hello" first with --hello
    (opens the flow: the server answers with its reordered datagram), then
    a --size byte datagram to DST, fragmented and sent last fragment first
    from ADDR:PORT; prints "sent ..." as serve does and every datagram
    received within --wait seconds as "got ...".

orphans SRC DST:PORT --count N [--first-id N] [--pps N]
    N later fragments (offset 1480, 100 bytes of data) of as many
    datagrams whose first fragment never comes, from SRC: a flood of
    orphans.  Prints "orphans sent=<n>".
"""

import argparse
import hashlib
import socket
import struct
import sys
import time

IP_NODEFRAG = 22


def endpoint(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def is6(addr):
    return ":" in addr


def family(addr):
    return socket.AF_INET6 if is6(addr) else socket.AF_INET


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pattern(size, seed):
    return bytes((seed + i * 7) & 0xFF for i in range(size))


def udp_datagram(src, dst, payload):
    sport, dport = src[1], dst[1]
    length = 8 + len(payload)
    if is6(src[0]):  # RFC 8200 8.1
        pseudo = (socket.inet_pton(socket.AF_INET6, src[0]) +
                  socket.inet_pton(socket.AF_INET6, dst[0]) + struct.pack("!IxxxB", length, 17))
    else:
        pseudo = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!BBH", 0, 17, length)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    c = csum(pseudo + hdr + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, c) + payload


def fragments(src, dst, proto, data, frag, ident):
    """IPv4 packets carrying data (the upper-layer datagram) in pieces of
    frag bytes (a multiple of 8 but the last)."""
    frag -= frag % 8
    out = []
    for off in range(0, len(data), frag):
        piece = data[off : off + frag]
        more = off + frag < len(data)
        flags = (0x2000 if more else 0) | (off // 8)
        hdr = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(piece), ident, flags, 64, proto, 0,
            socket.inet_aton(src), socket.inet_aton(dst))
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        out.append(hdr + piece)
    return out


def fragments6(src, dst, proto, data, frag, ident):
    """IPv6 packets with a Fragment header (RFC 8200 4.5) carrying data in
    pieces of frag bytes (a multiple of 8 but the last)."""
    frag -= frag % 8
    out = []
    for off in range(0, len(data), frag):
        piece = data[off : off + frag]
        more = off + frag < len(data)
        fh = struct.pack("!BBHI", proto, 0, off | (1 if more else 0), ident)
        hdr = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(piece), 44, 64,
                          socket.inet_pton(socket.AF_INET6, src),
                          socket.inet_pton(socket.AF_INET6, dst))
        out.append(hdr + fh + piece)
    return out


def raw_socket(v6=False):
    if v6:
        # IPPROTO_RAW: the packets carry their own IPv6 header.
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_NODEFRAG, 1)
    return s


def send_reordered(src, dst, payload, frag, ident):
    make = fragments6 if is6(src[0]) else fragments
    pkts = make(src[0], dst[0], 17, udp_datagram(src, dst, payload), frag, ident)
    raw = raw_socket(is6(src[0]))
    for p in reversed(pkts):
        raw.sendto(p, (dst[0], 0))
    raw.close()
    sha = hashlib.sha256(payload).hexdigest()
    print(f"sent to={dst[0]}:{dst[1]} len={len(payload)} sha={sha} frags={len(pkts)}", flush=True)


def report(data, peer):
    sha = hashlib.sha256(data).hexdigest()
    print(f"got from={peer[0]}:{peer[1]} len={len(data)} sha={sha}", flush=True)


def serve(args):
    me = endpoint(args.addr)
    s = socket.socket(family(me[0]), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(me)
    print("serving", flush=True)
    n = 0
    while True:
        data, peer = s.recvfrom(65535)
        report(data, peer)
        if data.startswith(b"hello"):
            n += 1
            send_reordered(me, peer[:2], pattern(args.size, peer[1]), args.frag, 0x5100 + n)


def client(args):
    me = endpoint(args.bind)
    dst = endpoint(args.dst)
    s = socket.socket(family(me[0]), socket.SOCK_DGRAM)
    s.bind(me)
    if args.hello:
        s.sendto(b"hello", dst)
        time.sleep(0.2)
    if args.size:
        send_reordered(me, dst, pattern(args.size, me[1]), args.frag, args.id)
    end = time.monotonic() + args.wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            break
        report(data, peer)


def orphans(args):
    dst = endpoint(args.dst)
    v6 = is6(args.src)
    raw = raw_socket(v6)
    gap = 1.0 / args.pps if args.pps else 0
    for i in range(args.count):
        if v6:
            pkt = fragments6(args.src, dst[0], 17, bytes(1480 + 100), 1480,
                             args.first_id + i)[-1]
        else:
            ident = (args.first_id + i) & 0xFFFF
            hdr = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 120, ident, 1480 // 8, 64, 17, 0,
                socket.inet_aton(args.src), socket.inet_aton(dst[0]))
            hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
            pkt = hdr + bytes(100)
        raw.sendto(pkt, (dst[0], 0))
        if gap:
            time.sleep(gap)
    print(f"orphans sent={args.count}", flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("serve")
    ps.add_argument("addr")
    ps.add_argument("--size", type=int, default=3000)
    ps.add_argument("--frag", type=int, default=1000)
    pc = sub.add_parser("client")
    pc.add_argument("dst")
    pc.add_argument("--bind", required=True)
    pc.add_argument("--size", type=int, default=3000)
    pc.add_argument("--frag", type=int, default=1000)
    pc.add_argument("--id", type=int, default=0x4242)
    pc.add_argument("--wait", type=float, default=1.0)
    pc.add_argument("--hello", action="store_true")
    po = sub.add_parser("orphans")
    po.add_argument("src")
    po.add_argument("dst")
    po.add_argument("--count", type=int, required=True)
    po.add_argument("--first-id", type=int, default=0x8000)
    po.add_argument("--pps", type=int, default=0)
    args = p.parse_args()
    {"serve": serve, "client": client, "orphans": orphans}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
