#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Flow generators for kvmxdp's capacity vm-tests (full_table.sh, flood.sh).

burst DST_ADDR[,DST_ADDR...] PORT_LO PORT_HI [--sports N] [--rounds N]
      [--src ADDR[,ADDR...]]
    Opens N UDP sockets (kernel-chosen source ports) and sends one small
    datagram from each to every DST_ADDR:PORT in the range: N * addresses *
    ports new flows, as fast as sendto() goes.  Prints "sent=<datagrams>
    errors=<send errors> secs=<elapsed>" at the end.  --rounds repeats it.
    --src binds the sockets to these source addresses in turn (a guest
    rotating over several addresses of its own).

stream ADDR:PORT SECONDS [--interval SEC]
    One TCP connection to an echo server: every interval, sends a numbered
    line and waits (2 s at most) for its echo.  Prints "ok <n> <time>" per
    echo, "fail <n> <reason>" and exits 1 on the first error (timeout, reset,
    wrong bytes), "done ok=<n>" after SECONDS.
"""
import argparse
import socket
import sys
import time


def burst(args):
    addrs = args.dst.split(",")
    socks = []
    srcs = args.src.split(",") if args.src else ["0.0.0.0"]
    for i in range(args.sports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((srcs[i % len(srcs)], 0))
        socks.append(s)
    payload = b"f"
    sent = errors = 0
    t0 = time.monotonic()
    for _ in range(args.rounds):
        for s in socks:
            for a in addrs:
                for p in range(args.port_lo, args.port_hi + 1):
                    try:
                        s.sendto(payload, (a, p))
                        sent += 1
                    except BlockingIOError:
                        # The qdisc/veth is full: give it a moment, once.
                        time.sleep(0.0005)
                        try:
                            s.sendto(payload, (a, p))
                            sent += 1
                        except OSError:
                            errors += 1
                    except OSError:
                        errors += 1  # ENOBUFS and the like: counted, not fatal
    print(f"sent={sent} errors={errors} secs={time.monotonic() - t0:.2f}", flush=True)


def stream(args):
    host, port = args.dst.rsplit(":", 1)
    try:
        c = socket.create_connection((host, int(port)), timeout=3)
    except OSError as e:
        print(f"fail 0 connect: {e}", flush=True)
        sys.exit(1)
    c.settimeout(2)
    end = time.monotonic() + args.seconds
    n = 0
    buf = b""
    while time.monotonic() < end:
        n += 1
        line = f"line {n} {'x' * 100}\n".encode()
        try:
            c.sendall(line)
            while b"\n" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    raise OSError("connection closed")
                buf += chunk
        except OSError as e:
            print(f"fail {n} {e}", flush=True)
            sys.exit(1)
        got, buf = buf.split(b"\n", 1)
        if got + b"\n" != line:
            print(f"fail {n} wrong echo {got[:40]!r}", flush=True)
            sys.exit(1)
        print(f"ok {n} {time.time():.2f}", flush=True)
        time.sleep(args.interval)
    print(f"done ok={n}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("burst")
    b.add_argument("dst")
    b.add_argument("port_lo", type=int)
    b.add_argument("port_hi", type=int)
    b.add_argument("--sports", type=int, default=1)
    b.add_argument("--rounds", type=int, default=1)
    b.add_argument("--src", default="")
    s = sub.add_parser("stream")
    s.add_argument("dst")
    s.add_argument("seconds", type=float)
    s.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args()
    burst(args) if args.cmd == "burst" else stream(args)


if __name__ == "__main__":
    main()
