#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""UDP test peer for kvmxdp's vm-tests.

serve ADDR:PORT... [--poke ADDR:PORT] [--no-check]
    Binds one socket per endpoint.  Every datagram is logged on stdout as
    "port=<local port> peer=<ip>:<port> data=<payload>" and answered from the
    same socket with "seen=<ip>:<port> via=<local addr:port> data=<payload>",
    so the guest learns which address/port the server saw.  A payload
    starting with "poke" additionally makes the --poke socket (an endpoint
    the client never contacted) send "unsolicited from=<poke endpoint>" to
    the same peer: the probe for address-and-port-dependent filtering.  A
    payload starting with "later" gets a second datagram "later" one second
    after the reply (when the client has closed its socket).

sniff IFACE
    Prints "src=<ip> dst=<ip> proto=<n>" once for every new (src, dst, proto)
    of the IPv4 and IPv6 packets received on IFACE (AF_PACKET; outgoing ones
    are skipped; IPv6's proto is the first next header): what the server
    really saw on the wire, every protocol.

echo DST --id N --payload TEXT [--count N] [--wait SEC]
    ICMP echo requests with a fixed identifier from a raw socket; prints
    "reply from=<ip> id=<id> seq=<seq> payload=<text>" for every echo reply
    received (whoever it was meant for), exit 1 if none.

icmp
    Prints every ICMP error this namespace receives (raw socket), one line
    each: "icmp from=<ip> to=<ip> type=<t> code=<c> mtu=<n> csum=ok|bad
    quote=<src>:<sport>-><dst>:<dport> qproto=<n>": who sent it, and the
    header it quotes, as the receiver sees them (a quoted echo: its
    identifier as both ports).

connect DST_ADDR:PORT [--ttl N] [--timeout SEC]
    One TCP connect(); prints "connect errno=<name or 0> seconds=<elapsed>".

flood DST_ADDR:PORT --count N [--first-port P]
    N UDP datagrams to DST, each from its own source port (P, P+1, ...):
    N new flows.

client [--bind PORT] [--msg TEXT] [--count N] [--wait SEC] [--no-check] DST_ADDR:PORT...
    Sends TEXT (N times, 0.2 s apart) to every destination from one socket
    (fixed source port with --bind), then prints every datagram received
    within --wait seconds after the last send as "from=<ip>:<port> data=...".

probe DST_ADDR:PORT [--interval SEC]
    Opens a new flow every --interval seconds (default 0.02: a fresh socket,
    so a fresh source port) until killed, sending "probe<n>@<send time>".
    Prints "probing" once, then "t_us=<send time> seen=<ip>:<port>" for every
    reply of a `serve` peer (send time: CLOCK_REALTIME in microseconds, as
    `date +%s%6N`): when, to the 20 ms, new flows began to leave with an
    address, measured from the sender, which runs before and after the event.

stream DST_ADDR:PORT --bind PORT [--interval SEC] [--hold FILE]
    One long-lived socket (fixed source port) sends "stream<n>" every
    --interval seconds (default 0.5) until killed, except while FILE exists
    (the application has nothing to say for a while).  Prints "streaming"
    once, "sent=<n>" for every datagram, "reply=<n> seen=<ip>:<port>" for
    every answer of a `serve` peer, and "held" when a hold begins: nothing
    is sent after that line until FILE is gone.

--no-check sends UDP datagrams without checksum (SO_NO_CHECK: checksum 0).
"""
import argparse
import errno
import os
import selectors
import socket
import struct
import sys
import threading
import time

SO_NO_CHECK = 11  # asm-generic/socket.h


def endpoint(text):
    addr, _, port = text.rpartition(":")
    return addr, int(port)


def serve(args):
    sel = selectors.DefaultSelector()
    socks = []
    for ep in args.endpoints:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(endpoint(ep))
        if args.no_check:
            s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    poke = None
    if args.poke:
        poke = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        poke.bind(endpoint(args.poke))
    print("serving " + " ".join(args.endpoints), flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            data, peer = s.recvfrom(65535)
            text = data.decode(errors="replace").strip()
            local = s.getsockname()
            print(f"port={local[1]} peer={peer[0]}:{peer[1]} data={text}", flush=True)
            s.sendto(f"seen={peer[0]}:{peer[1]} via={local[0]}:{local[1]} data={text}".encode(), peer)
            if text.startswith("later"):
                threading.Timer(1.0, s.sendto, args=(b"later", peer)).start()
            if poke is not None and text.startswith("poke"):
                pl = poke.getsockname()
                poke.sendto(f"unsolicited from={pl[0]}:{pl[1]}".encode(), peer)


def sniff(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((args.iface, 0))
    seen = set()
    print("sniffing " + args.iface, flush=True)
    while True:
        frame, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING or len(frame) < 34:
            continue
        ip = frame[14:]
        if frame[12:14] == b"\x86\xdd" and len(ip) >= 40:  # IPv6: the first next header
            key = (socket.inet_ntop(socket.AF_INET6, ip[8:24]),
                   socket.inet_ntop(socket.AF_INET6, ip[24:40]), ip[6])
        elif frame[12:14] == b"\x08\x00":
            key = (socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[9])
        else:
            continue
        if key not in seen:
            seen.add(key)
            print(f"src={key[0]} dst={key[1]} proto={key[2]}", flush=True)


def icmp_csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("listening", flush=True)
    while True:
        pkt = s.recv(65535)
        hl = (pkt[0] & 0xF) * 4
        m = pkt[hl:]
        if len(m) < 8 + 20 or m[0] not in (3, 11, 12):
            continue
        ok = "ok" if icmp_csum(m) == 0 else "bad"
        q = m[8:]
        qhl = (q[0] & 0xF) * 4
        sport = dport = 0
        if q[9] == 1 and len(q) >= qhl + 6:  # echo: the identifier, both sides
            sport = dport = struct.unpack("!H", q[qhl + 4:qhl + 6])[0]
        elif len(q) >= qhl + 4:
            sport, dport = struct.unpack("!HH", q[qhl:qhl + 4])
        mtu = struct.unpack("!H", m[6:8])[0]
        print(f"icmp from={socket.inet_ntoa(pkt[12:16])} to={socket.inet_ntoa(pkt[16:20])} "
              f"type={m[0]} code={m[1]} mtu={mtu} csum={ok} "
              f"quote={socket.inet_ntoa(q[12:16])}:{sport}->{socket.inet_ntoa(q[16:20])}:{dport} "
              f"qproto={q[9]}", flush=True)


def connect(args):
    host, port = endpoint(args.dst)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.ttl:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, args.ttl)
    s.settimeout(args.timeout)
    t0 = time.monotonic()
    err = "0"
    try:
        s.connect((host, port))
    except socket.timeout:
        err = "timeout"
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
    print(f"connect errno={err} seconds={time.monotonic() - t0:.2f}", flush=True)
    return 0


def flood(args):
    host, port = endpoint(args.dst)
    for i in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("", args.first_port + i))
        s.sendto(b"flood", (host, port))
        s.close()
    print(f"sent {args.count}", flush=True)
    return 0


def echo(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(0.05)
    got = 0
    for seq in range(1, args.count + 1):
        hdr = struct.pack("!BBHHH", 8, 0, 0, args.id, seq)
        body = args.payload.encode()
        pkt = struct.pack("!BBHHH", 8, 0, icmp_csum(hdr + body), args.id, seq) + body
        s.sendto(pkt, (args.dst, 0))
        until = time.monotonic() + (0.2 if seq < args.count else args.wait)
        while time.monotonic() < until:
            try:
                data, peer = s.recvfrom(65535)
            except socket.timeout:
                continue
            ihl = (data[0] & 0x0F) * 4
            icmp = data[ihl:]
            if len(icmp) < 8 or icmp[0] != 0:
                continue
            typ, code, csum, ident, rseq = struct.unpack("!BBHHH", icmp[:8])
            ok = "ok" if icmp_csum(icmp) == 0 else "bad"
            print(f"reply from={peer[0]} id={ident} seq={rseq} csum={ok} "
                  f"payload={icmp[8:].decode(errors='replace')}", flush=True)
            got += 1
    return 0 if got else 1


def client(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", args.bind))
    if args.no_check:
        s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    s.settimeout(0.05)
    got = []

    def drain(until):
        while time.monotonic() < until:
            try:
                data, peer = s.recvfrom(65535)
            except socket.timeout:
                continue
            line = f"from={peer[0]}:{peer[1]} data={data.decode(errors='replace').strip()}"
            got.append(line)
            print(line, flush=True)

    for i in range(args.count):
        for dst in args.destinations:
            s.sendto(args.msg.encode(), endpoint(dst))
        if i + 1 < args.count:
            drain(time.monotonic() + 0.2)
    drain(time.monotonic() + args.wait)
    return 0 if got else 1


def probe(args):
    dst = endpoint(args.dst)
    sel = selectors.DefaultSelector()
    open_socks = []
    print("probing", flush=True)
    seq = 0
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                s.sendto(f"probe{seq}@{time.time_ns() // 1000}".encode(), dst)
            except OSError:
                pass  # no route for a moment: the next probe tries again
            sel.register(s, selectors.EVENT_READ)
            open_socks.append(s)
            # a reply comes within milliseconds: keep the last 2 s open
            while len(open_socks) > max(1, int(2 / args.interval)):
                old = open_socks.pop(0)
                sel.unregister(old)
                old.close()
            seq += 1
            next_send += args.interval
            if next_send < now:
                next_send = now + args.interval
        for key, _ in sel.select(max(0.0, next_send - time.monotonic())):
            try:
                data = key.fileobj.recv(65535).decode(errors="replace")
            except OSError:
                continue
            seen = data.split()[0] if data.startswith("seen=") else "seen=?"
            sent = data.rpartition("@")[2]
            if sent.isdigit():
                print(f"t_us={sent} {seen}", flush=True)


def stream(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", args.bind))
    s.settimeout(0.05)
    dst = endpoint(args.dst)
    print("streaming", flush=True)
    seq = 0
    held = False
    next_send = time.monotonic()
    while True:
        if time.monotonic() >= next_send:
            next_send += args.interval
            if args.hold and os.path.exists(args.hold):
                if not held:
                    print("held", flush=True)
                held = True
            else:
                held = False
                try:
                    s.sendto(f"stream{seq}".encode(), dst)
                    print(f"sent={seq}", flush=True)
                except OSError:
                    pass  # no route for a moment: never sent, so not logged
                seq += 1
        try:
            data = s.recv(65535).decode(errors="replace")
        except socket.timeout:
            continue
        # "seen=<ip>:<port> via=... data=stream<n>"
        words = dict(w.split("=", 1) for w in data.split() if "=" in w)
        if words.get("data", "").startswith("stream"):
            print(f"reply={words['data'][6:]} seen={words.get('seen', '?')}", flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("serve")
    ps.add_argument("endpoints", nargs="+")
    ps.add_argument("--poke")
    ps.add_argument("--no-check", action="store_true")
    pn = sub.add_parser("sniff")
    pn.add_argument("iface")
    pe = sub.add_parser("echo")
    pe.add_argument("dst")
    pe.add_argument("--id", type=int, required=True)
    pe.add_argument("--payload", default="echo")
    pe.add_argument("--count", type=int, default=3)
    pe.add_argument("--wait", type=float, default=1.0)
    pc = sub.add_parser("client")
    pc.add_argument("--bind", type=int, default=0)
    pc.add_argument("--msg", default="hello")
    pc.add_argument("--count", type=int, default=1)
    pc.add_argument("--wait", type=float, default=1.0)
    pc.add_argument("--no-check", action="store_true")
    pc.add_argument("destinations", nargs="+")
    pi = sub.add_parser("icmp")
    pk = sub.add_parser("connect")
    pk.add_argument("dst")
    pk.add_argument("--ttl", type=int, default=0)
    pk.add_argument("--timeout", type=float, default=10.0)
    pf = sub.add_parser("flood")
    pf.add_argument("dst")
    pf.add_argument("--count", type=int, required=True)
    pf.add_argument("--first-port", type=int, default=20000)
    pp = sub.add_parser("probe")
    pp.add_argument("dst")
    pp.add_argument("--interval", type=float, default=0.02)
    pt = sub.add_parser("stream")
    pt.add_argument("dst")
    pt.add_argument("--bind", type=int, required=True)
    pt.add_argument("--interval", type=float, default=0.5)
    pt.add_argument("--hold")
    args = p.parse_args()
    if args.cmd == "serve":
        serve(args)
        return 0
    if args.cmd == "sniff":
        sniff(args)
        return 0
    if args.cmd == "echo":
        return echo(args)
    if args.cmd == "probe":
        probe(args)
        return 0
    if args.cmd == "icmp":
        icmp(args)
        return 0
    if args.cmd == "connect":
        return connect(args)
    if args.cmd == "flood":
        return flood(args)
    if args.cmd == "stream":
        stream(args)
        return 0
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
