#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Minimal read-only TFTP server (RFC 1350, 512-byte blocks) for qemu_guest.sh.

Unlike a standard TFTP server it answers from the port the request came to
(not from a new transfer port): the whole transfer is one UDP flow, so it
passes an address-and-port-dependent-filtering NAT such as kvmxdp without
--eif.  Busybox's tftp client accepts that.  One transfer at a time.

Usage: tftp_server.py ADDR PORT DIR
Log (stdout): "serving ADDR:PORT", then per request
"peer=IP:PORT file=NAME blocks=N bytes=N result=ok|error:WHY".
"""
import os
import socket
import struct
import sys

BLOCK = 512
RETRIES = 8
TIMEOUT = 0.5


def send_file(sock, peer, path):
    with open(path, "rb") as f:
        data = f.read()
    nblocks = len(data) // BLOCK + 1  # a short (maybe empty) block ends it
    for n in range(1, nblocks + 1):
        pkt = struct.pack("!HH", 3, n & 0xFFFF) + data[(n - 1) * BLOCK:n * BLOCK]
        for _ in range(RETRIES):
            sock.sendto(pkt, peer)
            try:
                while True:
                    msg, src = sock.recvfrom(2048)
                    if src != peer or len(msg) < 4:
                        continue  # another client: one transfer at a time
                    op, blk = struct.unpack("!HH", msg[:4])
                    if op == 4 and blk == n & 0xFFFF:
                        break
                    if op == 5:
                        return nblocks, len(data), "error:client sent ERROR"
                break
            except socket.timeout:
                continue
        else:
            return n, len(data), "error:no ACK for block %d" % n
    return nblocks, len(data), "ok"


def main():
    addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    print("serving %s:%d" % (addr, port), flush=True)
    while True:
        sock.settimeout(None)
        msg, peer = sock.recvfrom(2048)
        if len(msg) < 4 or struct.unpack("!H", msg[:2])[0] != 1:
            continue
        name = msg[2:].split(b"\0")[0].decode(errors="replace")
        path = os.path.join(root, os.path.basename(name))
        if not os.path.isfile(path):
            sock.sendto(struct.pack("!HH", 5, 1) + b"not found\0", peer)
            print("peer=%s:%d file=%s blocks=0 bytes=0 result=error:not found" % (peer + (name,)), flush=True)
            continue
        sock.settimeout(TIMEOUT)
        blocks, size, result = send_file(sock, peer, path)
        print("peer=%s:%d file=%s blocks=%d bytes=%d result=%s" % (peer + (name, blocks, size, result)), flush=True)


if __name__ == "__main__":
    main()
