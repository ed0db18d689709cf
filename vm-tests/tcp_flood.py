#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Spoofed TCP floods for vm-tests/syn_flood.sh, plain raw IPv4 packets
(what hping3 --flood or nmap -sA send), no scapy.

  tcp_flood.py DST PORTS FLAGS COUNT SRC_BASE [--pps N]

DST: the target address; PORTS: "80" or "1000-2000" (cycled); FLAGS: any of
S A F R P (SYN, ACK, FIN, RST, PSH); COUNT packets, each from its own
spoofed source SRC_BASE + i (i = 0..COUNT-1, so a /16 base holds 65536)
and a random source port and sequence number.  --pps paces the flood
(0: as fast as the socket takes them).  --sport N: every packet from
SRC_BASE itself and port N (an off-path attacker guessing one connection's
sequence numbers), still a random sequence number each.  Prints "sent=N" at
the end.
"""
import argparse
import ipaddress
import os
import random
import socket
import struct
import sys
import time

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int) -> bytes:
    ack = random.getrandbits(32) if flags & FLAG_BITS["A"] else 0
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dst")
    ap.add_argument("ports")
    ap.add_argument("flags")
    ap.add_argument("count", type=int)
    ap.add_argument("src_base")
    ap.add_argument("--pps", type=int, default=0)
    ap.add_argument("--sport", type=int, default=0)
    a = ap.parse_args()
    flags = 0
    for c in a.flags.upper():
        if c not in FLAG_BITS:
            print(f"tcp_flood: unknown flag '{c}' in '{a.flags}'", file=sys.stderr)
            return 2
        flags |= FLAG_BITS[c]
    lo, _, hi = a.ports.partition("-")
    ports = list(range(int(lo), int(hi or lo) + 1))
    dst = socket.inet_aton(a.dst)
    base = int(ipaddress.IPv4Address(a.src_base))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    random.seed(os.getpid())
    t0 = time.monotonic()
    sent = 0
    for i in range(a.count):
        src = struct.pack("!I", base if a.sport else base + i)
        p = packet(src, dst, a.sport or random.randint(1024, 65535), ports[i % len(ports)],
                   flags, random.getrandbits(32))
        while True:
            try:
                s.sendto(p, (a.dst, 0))
                break
            except BlockingIOError:
                time.sleep(0.001)
            except OSError as e:  # ENOBUFS under the flood: retry
                if e.errno != 105:
                    raise
                time.sleep(0.001)
        sent += 1
        if a.pps and sent % 100 == 0:
            ahead = t0 + sent / a.pps - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(f"sent={sent} secs={time.monotonic() - t0:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
