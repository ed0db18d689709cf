#!/usr/bin/env python3
"""A static HTTP server for the tests: `python3 -m http.server` without its
name lookup.  http.server's server_bind() asks for the bound address's fully
qualified name (socket.getfqdn); for 0.0.0.0 that resolves the machine's
hostname, which, where /etc/hosts does not name it (a minimal Debian tree),
is a DNS query from inside a test namespace: seconds of timeouts before the
server listens, and a packet to a resolver outside the test.  The access log
(stderr) keeps http.server's format: the client address comes first.

Usage: http_serve.py --bind ADDR --directory DIR PORT   (ADDR: IPv4 or IPv6)
"""
import argparse
import functools
import http.server
import socket
import socketserver


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # no getfqdn()
        self.server_name, self.server_port = self.server_address[:2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--directory", required=True)
    ap.add_argument("port", type=int)
    a = ap.parse_args()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=a.directory)
    # An IPv6 address binds an IPv6 socket (nat66.sh).
    Server.address_family = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    with Server((a.bind, a.port), handler) as httpd:
        print(f"Serving HTTP on {a.bind} port {a.port}", flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
