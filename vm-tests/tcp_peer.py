#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""TCP test peer for kvmxdp's vm-tests.

Addresses are IPv4 or IPv6 (DST:PORT as [ADDR]:PORT for IPv6).

echo ADDR PORT... [--maxseg N]
    Listens on every PORT (TCP_MAXSEG N on the listeners: the MSS their
    SYN-ACKs advertise).  Each connection first gets the line
    "hello port=<local port> peer=<ip>:<port>" (what this end saw), then
    everything it sends is echoed.  At the client's end of stream it logs
    "done port=<local port> peer=<ip>:<port> bytes=<n> sha=<sha256>".

client DST:PORT [--bytes N] [--secs S] [--maxseg N]
    Connects (TCP_MAXSEG N before connect: the MSS its SYN advertises),
    prints the server's hello line and "local=<port>", sends N random
    bytes paced over S seconds ("progress sent=<n>" after every MiB) while
    reading the echo, half-closes, and prints
    "sent=<n> sha=<sha256> got=<n> sha=<sha256>"; exit 0 only if the echo
    is byte for byte what was sent.

sniff IFACE
    Every TCP segment received on IFACE (AF_PACKET; outgoing ones are
    skipped; IPv4, or IPv6 without extension headers) is checked against an independent TCP checksum.  Prints
    "syn flags=S|SA src=<ip:port> dst=<ip:port> mss=<n|none> at=<offset in
    the options> opts=<hex> csum=ok|bad" for every SYN,
    "data src=.. dst=.. max=<payload bytes>" whenever a connection's
    largest segment grows, and "badcsum src=.. dst=.. flags=0x.. len=<n>"
    for every segment whose checksum does not verify.

keep IFACE --port P
    Every IPv4 TCP segment on IFACE, in or out (AF_PACKET), with P as its
    source or destination port: prints "catching", then per segment
    "seg dir=in|out flags=0x<n> src=<ip:port> dst=<ip:port> seq=<n>
    ack=<n> len=<payload> ip=<the IPv4 packet, hex>".

replay HEX
    Sends the IPv4 packet HEX (a "keep" line's ip=) again from a raw
    socket, with its checksums completed (a segment captured on its way out
    may carry only the offload's seed): what a late retransmission of it
    looks like.  Prints "sent".

rawsyn DST:PORT --sport P --opts HEX [--wait S]
    Sends a SYN with exactly the TCP options HEX from a raw socket (the
    kernel's own SYNs always put MSS first), up to three times, and waits
    for the SYN-ACK: prints "synack mss=<n|none> at=<offset> csum=ok|bad";
    exit 1 if none came.  The local stack answers the SYN-ACK with a reset
    (no socket owns the port).
"""
import argparse
import hashlib
import os
import socket
import struct
import sys
import threading
import time

from udp_peer import endpoint, icmp_csum as inet_csum  # RFC 1071, any protocol

TCP_MAXSEG = 2  # netinet/tcp.h
SO_RCVBUFFORCE = 33  # asm-generic/socket.h
MIB = 1 << 20


def tcp_pseudo(src, dst, length):
    if len(src) == 16:  # RFC 8200 8.1
        return src + dst + struct.pack("!I3xB", length, socket.IPPROTO_TCP)
    return src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, length)


def tcp_csum_ok(src, dst, seg):
    return inet_csum(tcp_pseudo(src, dst, len(seg)) + seg) == 0


def find_mss(opts):
    """(mss, offset) of the MSS option, walking kind/length (RFC 9293)."""
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        if kind == 2 and opts[i + 1] == 4 and i + 4 <= len(opts):
            return struct.unpack("!H", opts[i + 2:i + 4])[0], i
        i += opts[i + 1]
    return None, None


def parse_tcp(ip):
    """(src, dst, tcp segment) of an IPv4/TCP or IPv6/TCP packet, else None."""
    if len(ip) >= 40 and ip[0] >> 4 == 6 and ip[6] == socket.IPPROTO_TCP:
        seg = ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
        return (ip[8:24], ip[24:40], seg) if len(seg) >= 20 else None
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    if (ip[6] & 0x1F) | ip[7]:  # a later fragment
        return None
    ihl = (ip[0] & 0x0F) * 4
    tot = struct.unpack("!H", ip[2:4])[0]
    seg = ip[ihl:tot]
    if len(seg) < 20:
        return None
    return ip[12:16], ip[16:20], seg


def ep(addr, port):
    if len(addr) == 16:
        return f"[{socket.inet_ntop(socket.AF_INET6, addr)}]:{port}"
    return f"{socket.inet_ntoa(addr)}:{port}"


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def dst_endpoint(text):
    """(addr, port) of ADDR:PORT or [ADDR]:PORT."""
    addr, port = endpoint(text)
    return addr.strip("[]"), port


def serve_conn(c, peer):
    local = c.getsockname()[1]
    c.sendall(f"hello port={local} peer={peer[0]}:{peer[1]}\n".encode())
    h, n = hashlib.sha256(), 0
    while True:
        try:
            d = c.recv(1 << 16)
        except OSError as e:
            print(f"error port={local} peer={peer[0]}:{peer[1]} {e}", flush=True)
            return
        if not d:
            break
        h.update(d)
        n += len(d)
        c.sendall(d)
    print(f"done port={local} peer={peer[0]}:{peer[1]} bytes={n} sha={h.hexdigest()}",
          flush=True)
    c.shutdown(socket.SHUT_WR)
    c.close()


def echo(args):
    listeners = []
    for port in args.ports:
        s = socket.socket(family(args.addr))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if args.maxseg:
            s.setsockopt(socket.IPPROTO_TCP, TCP_MAXSEG, args.maxseg)
        s.bind((args.addr, port))
        s.listen(16)
        listeners.append(s)

    def accept(s):
        while True:
            c, peer = s.accept()
            print(f"accept port={s.getsockname()[1]} peer={peer[0]}:{peer[1]}", flush=True)
            threading.Thread(target=serve_conn, args=(c, peer), daemon=True).start()

    for s in listeners:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("listening " + " ".join(map(str, args.ports)), flush=True)
    while True:
        time.sleep(3600)


def client(args):
    dst = dst_endpoint(args.dst)
    s = socket.socket(family(dst[0]))
    if args.maxseg:
        s.setsockopt(socket.IPPROTO_TCP, TCP_MAXSEG, args.maxseg)
    s.settimeout(10)
    s.connect(dst)
    f = s.makefile("rb")
    print(f.readline().decode().strip(), flush=True)
    print(f"local={s.getsockname()[1]}", flush=True)
    got = {"h": hashlib.sha256(), "n": 0, "err": None}
    s.settimeout(30)

    def reader():
        try:
            while True:
                d = f.read1(1 << 16)
                if not d:
                    return
                got["h"].update(d)
                got["n"] += len(d)
        except OSError as e:
            got["err"] = e

    t = threading.Thread(target=reader)
    t.start()
    sent, h, t0, chunk = 0, hashlib.sha256(), time.monotonic(), 1 << 16
    try:
        while sent < args.bytes:
            d = os.urandom(min(chunk, args.bytes - sent))
            s.sendall(d)
            h.update(d)
            if (sent + len(d)) // MIB != sent // MIB:
                print(f"progress sent={sent + len(d)}", flush=True)
            sent += len(d)
            ahead = t0 + args.secs * sent / args.bytes - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        print(f"error sending after {sent}: {e}", flush=True)
        return 1
    t.join(40)
    if got["err"] is not None or t.is_alive():
        print(f"error receiving after {got['n']}: {got['err'] or 'timeout'}", flush=True)
        return 1
    print(f"sent={sent} sha={h.hexdigest()} got={got['n']} sha={got['h'].hexdigest()}",
          flush=True)
    return 0 if got["n"] == sent and got["h"].digest() == h.digest() else 1


def sniff(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 * MIB)
    s.bind((args.iface, 0))
    largest = {}
    print("sniffing " + args.iface, flush=True)
    while True:
        frame, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
            continue
        t = parse_tcp(frame[14:])
        if t is None:
            continue
        src, dst, seg = t
        sport, dport = struct.unpack("!HH", seg[:4])
        doff, flags = (seg[12] >> 4) * 4, seg[13]
        conn = f"src={ep(src, sport)} dst={ep(dst, dport)}"
        ok = tcp_csum_ok(src, dst, seg)
        if not ok:
            print(f"badcsum {conn} flags=0x{flags:02x} len={len(seg)}", flush=True)
        if flags & 0x02:
            opts = seg[20:doff]
            mss, at = find_mss(opts)
            kind = "SA" if flags & 0x10 else "S"
            print(f"syn flags={kind} {conn} mss={mss if mss is not None else 'none'} "
                  f"at={at if at is not None else 'none'} opts={opts.hex()} "
                  f"csum={'ok' if ok else 'bad'}", flush=True)
            continue
        payload = len(seg) - doff
        if payload > largest.get(conn, 0):
            largest[conn] = payload
            print(f"data {conn} max={payload}", flush=True)


def keep(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 * MIB)
    s.bind((args.iface, 0))
    print("catching", flush=True)
    while True:
        frame, addr = s.recvfrom(65535)
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        t = parse_tcp(ip)
        if t is None or len(t[0]) != 4:
            continue
        src, dst, seg = t
        sport, dport, seq, ack = struct.unpack("!HHII", seg[:12])
        if args.port not in (sport, dport):
            continue
        way = "out" if addr[2] == socket.PACKET_OUTGOING else "in"
        tot = struct.unpack("!H", ip[2:4])[0]
        print(f"seg dir={way} flags=0x{seg[13]:02x} src={ep(src, sport)} dst={ep(dst, dport)} "
              f"seq={seq} ack={ack} len={len(seg) - (seg[12] >> 4) * 4} ip={ip[:tot].hex()}",
              flush=True)


def replay(args):
    pkt = bytearray(bytes.fromhex(args.hex))
    # Captured on its way out, the TCP checksum may be only the offload's
    # pseudo-header seed: completed here (the kernel fills the IP header's).
    ihl = (pkt[0] & 0x0F) * 4
    pkt[ihl + 16:ihl + 18] = b"\0\0"
    seg = bytes(pkt[ihl:])
    pkt[ihl + 16:ihl + 18] = struct.pack(
        "!H", inet_csum(tcp_pseudo(bytes(pkt[12:16]), bytes(pkt[16:20]), len(seg)) + seg))
    pkt = bytes(pkt)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))
    print("sent", flush=True)


def rawsyn(args):
    dst, dport = endpoint(args.dst)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((dst, dport))
    src = socket.inet_aton(probe.getsockname()[0])
    probe.close()
    dst_b = socket.inet_aton(dst)
    opts = bytes.fromhex(args.opts)
    if len(opts) % 4:
        sys.exit("--opts must be a multiple of 4 bytes")
    seq = int.from_bytes(os.urandom(4), "big")
    hdr = struct.pack("!HHIIBBHHH", args.sport, dport, seq, 0, (5 + len(opts) // 4) << 4,
                      0x02, 64240, 0, 0) + opts
    csum = inet_csum(tcp_pseudo(src, dst_b, len(hdr)) + hdr)
    syn = hdr[:16] + struct.pack("!H", csum) + hdr[18:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.settimeout(0.05)
    for _ in range(3):
        s.sendto(syn, (dst, 0))
        until = time.monotonic() + args.wait / 3
        while time.monotonic() < until:
            try:
                pkt = s.recv(65535)
            except socket.timeout:
                continue
            t = parse_tcp(pkt)
            if t is None or t[0] != dst_b:
                continue
            seg = t[2]
            sport, rport = struct.unpack("!HH", seg[:4])
            if sport != dport or rport != args.sport or seg[13] & 0x12 != 0x12:
                continue
            mss, at = find_mss(seg[20:(seg[12] >> 4) * 4])
            ok = "ok" if tcp_csum_ok(t[0], t[1], seg) else "bad"
            print(f"synack mss={mss if mss is not None else 'none'} "
                  f"at={at if at is not None else 'none'} csum={ok}", flush=True)
            return 0
    print("no synack", flush=True)
    return 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pe = sub.add_parser("echo")
    pe.add_argument("addr")
    pe.add_argument("ports", nargs="+", type=int)
    pe.add_argument("--maxseg", type=int, default=0)
    pc = sub.add_parser("client")
    pc.add_argument("dst")
    pc.add_argument("--bytes", type=int, default=65536)
    pc.add_argument("--secs", type=float, default=0)
    pc.add_argument("--maxseg", type=int, default=0)
    pn = sub.add_parser("sniff")
    pn.add_argument("iface")
    pk = sub.add_parser("keep")
    pk.add_argument("iface")
    pk.add_argument("--port", type=int, required=True)
    pp = sub.add_parser("replay")
    pp.add_argument("hex")
    pr = sub.add_parser("rawsyn")
    pr.add_argument("dst")
    pr.add_argument("--sport", type=int, required=True)
    pr.add_argument("--opts", required=True)
    pr.add_argument("--wait", type=float, default=3.0)
    args = p.parse_args()
    return {"echo": echo, "client": client, "sniff": sniff, "keep": keep, "replay": replay,
            "rawsyn": rawsyn}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
