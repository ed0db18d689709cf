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

serve ADDR PORT
    TCP echo server for churn: echoes each connection until its end of
    stream, then closes (the client closes first: its side, the guest's, is
    the one in TIME_WAIT).  Prints "listening" once it accepts.

churn ADDR:PORT COUNT [--parallel N] [--rate R] [--bytes N]
    COUNT short TCP connections, at most N open at once and at most R new
    ones a second (0: no limit): each sends BYTES bytes unique to it,
    half-closes, reads the echo to its end and compares it byte for byte.
    Prints "ok=<n> fail=<n> secs=<elapsed> rate=<connections/s>
    slow=<connections that took over 1 s (a lost SYN)>", preceded by up to
    5 "fail <i> <reason>" lines; exits 1 if any failed.
"""
import asyncio
import hashlib
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
    host = host.strip("[]")
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


def serve(args):
    async def echo(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def run():
        srv = await asyncio.start_server(echo, args.addr, args.port, backlog=4096,
                                         reuse_address=True)
        print("listening", flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(run())


def churn(args):
    host, port = args.dst.rsplit(":", 1)
    host = host.strip("[]")
    port = int(port)
    ok = fail = slow = 0
    fails = []

    async def one(i):
        nonlocal ok, fail, slow
        payload = hashlib.sha256(str(i).encode()).digest() * (args.bytes // 32 + 1)
        payload = payload[: args.bytes]
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                    args.timeout)
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            got = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if got != payload:
                raise ValueError(f"echo of {len(got)} bytes differs from the {len(payload)} sent")
            ok += 1
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            fail += 1
            if len(fails) < 5:
                fails.append(f"fail {i} {e!r}")
        if time.monotonic() - t0 > 1:
            slow += 1

    async def run():
        sem = asyncio.Semaphore(args.parallel)
        tasks = []

        async def guarded(i):
            async with sem:
                await one(i)

        t0 = time.monotonic()
        for i in range(args.count):
            if args.rate:
                delay = t0 + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            sem.release()
            tasks.append(asyncio.ensure_future(guarded(i)))
        await asyncio.gather(*tasks)
        return time.monotonic() - t0

    secs = asyncio.run(run())
    for f in fails:
        print(f, flush=True)
    print(f"ok={ok} fail={fail} secs={secs:.2f} rate={args.count / secs:.0f} slow={slow}",
          flush=True)
    sys.exit(1 if fail else 0)


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
    v = sub.add_parser("serve")
    v.add_argument("addr")
    v.add_argument("port", type=int)
    c = sub.add_parser("churn")
    c.add_argument("dst")
    c.add_argument("count", type=int)
    c.add_argument("--parallel", type=int, default=16)
    c.add_argument("--rate", type=float, default=0)
    c.add_argument("--bytes", type=int, default=256)
    c.add_argument("--timeout", type=float, default=10, help="connect timeout, seconds")
    args = ap.parse_args()
    {"burst": burst, "stream": stream, "serve": serve, "churn": churn}[args.cmd](args)


if __name__ == "__main__":
    main()
