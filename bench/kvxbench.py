#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""kvmxdp benchmark driver (run it through bench/run.sh, which builds the tools).

Topology, all in namespaces this script creates (random names) and deletes:

   guest ns (G)            host ns (H)                          server ns (L)
  +--------------+   +----------------------------------+   +----------------+
  | <S>ge        |   | <S>gp --[br0 192.168.122.1/24]   |   |                |
  | 192.168.122. |===| bridge port    |                 |   |                |
  |   11/24      |   |          route / NAT / kvmxdp    |   |                |
  | gen, clients |   |                |  <S>up 10.77.0.2|===| <S>ln 10.77.0.1|
  +--------------+   +----------------------------------+   | sink, servers  |
       CPU 0                 CPU 1 (napi threads)           +----------------+
                                                                   CPU 0

Every veth end has GRO on (so it has NAPI) and threaded NAPI; the host's two
napi kthreads are pinned to CPU 1, everything else (generator, clients,
servers, the far ends' napi kthreads) to CPU 0, so all host work lands on one
CPU and is measured as the CPU time of those two kthreads (schedstat).

Configurations alternate inside every repetition (the machine under this VM
changes speed by up to 2x), each repetition rotating the order.
"""
import argparse
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

SUBNET = "192.168.122.0/24"
# IPv6 (the *6 workloads): the guests on a ULA of the bridge (what kvmxdp's
# default `--ipv6 auto` translates), the uplink and the server on a global
# /64; iperf3's IPv6 server on its own port.
SUBNET6, GW_IP6, GUEST_IP6 = "fd42:b::/64", "fd42:b::1", "fd42:b::11"
UP_IP6, SERVER_IP6 = "2001:db8:77::2", "2001:db8:77::1"
IPERF6_PORT = 5202
GW_IP, GUEST_IP = "192.168.122.1", "192.168.122.11"
UP_IP, SERVER_IP = "10.77.0.2", "10.77.0.1"
MAC = {"br": "02:6b:76:00:01:01", "gp": "02:6b:76:00:01:02", "ge": "02:6b:76:00:0b:01",
       "up": "02:6b:76:00:02:01", "ln": "02:6b:76:00:03:01"}
# More guests, for churn from several at once (churn_all): guest i (1..) is
# GUEST_IP + i on the same bridge, its own namespace and bridge port.
EXTRA_GUESTS = 3
HOST_CPU, PEER_CPU = 1, 0
NAT_PORTS = "1024-65535"  # the iptables recipe's --to-ports (iptables, nftables)
UDP_DPORT = 9000
RR_PORT, CRR_PORT, CRR6_PORT = 7777, 7778, 7779

# ---------------------------------------------------------------- utilities

LOG = sys.stderr


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=LOG, flush=True)


def run(cmd, check=True, input=None, timeout=120):
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.strip()}")
    return r.stdout


def nsx(ns, cmd):
    """Command inside netns ns, keeping this mount namespace (bpffs pins stay
    visible; ip netns exec would hide them)."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--"] + cmd


def median(xs):
    return statistics.median(xs) if xs else None


def read_schedstat(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def read_proc_schedstat(pid):
    """CPU time of every thread of process pid (0 once it is gone)."""
    n = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                n += read_schedstat(f"{pid}/task/{tid}")
            except OSError:
                pass
    except OSError:
        pass
    return n


def read_cpu(cpu):
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v), v[3] + v[4]  # total, idle+iowait
    raise RuntimeError("no cpu line")


def read_ipis(cpu):
    """Rescheduling + function call interrupts CPU cpu took: in a VM each
    is a wakeup another CPU paid for (a hypercall here); a host thread
    that has gone idle is woken by one."""
    n = 0
    with open("/proc/interrupts") as f:
        cols = f.readline().split()
        i = cols.index(f"CPU{cpu}")
        for line in f:
            p = line.split()
            if p and p[0] in ("RES:", "CAL:"):
                n += int(p[1 + i])
    return n


def read_snmp(pid):
    """/proc/PID/net/{snmp,netstat} show the counters of PID's netns."""
    out = {}
    for name in ("snmp", "netstat"):
        with open(f"/proc/{pid}/net/{name}") as f:
            lines = f.read().splitlines()
        for h, v in zip(lines[::2], lines[1::2]):
            proto = h.split(":")[0]
            for k, x in zip(h.split()[1:], v.split()[1:]):
                out[f"{proto}.{k}"] = int(x)
    return out


# TcpExt.TCPSynRetrans (the client's) and TcpExt.PAWSTimewait (the server's
# refusals of a SYN that met one of its TIME_WAIT sockets with an older
# timestamp) tell a NAT that reuses a 4-tuple too early from one that
# loses packets.
SNMP_KEYS = ["Ip.InHdrErrors", "Tcp.InCsumErrors", "Udp.InCsumErrors", "Tcp.RetransSegs",
             "Tcp.InErrs", "TcpExt.TCPSynRetrans", "TcpExt.PAWSTimewait"]


class Probe:
    """Samples time, host kthread CPU time, CPU busy and snmp counters."""

    def __init__(self, topo):
        self.topo = topo

    def sample(self):
        t = self.topo
        return {"t": time.monotonic_ns(),
                "host_ns": sum(read_schedstat(p) for p in t.host_threads) +
                           sum(read_proc_schedstat(p) for p in t.host_procs),
                "cpu": read_cpu(HOST_CPU), "cpu0": read_cpu(PEER_CPU),
                "ipis": read_ipis(HOST_CPU),
                "snmp_g": read_snmp(t.holder["g"]), "snmp_l": read_snmp(t.holder["l"])}

    @staticmethod
    def delta(a, b):
        wall = (b["t"] - a["t"]) / 1e9
        tot = b["cpu"][0] - a["cpu"][0]
        idle = b["cpu"][1] - a["cpu"][1]
        d = {"wall_s": wall, "host_cpu_s": (b["host_ns"] - a["host_ns"]) / 1e9,
             "cpu1_busy": (1 - idle / tot) if tot else None}
        tot0 = b["cpu0"][0] - a["cpu0"][0]
        d["cpu0_busy"] = (1 - (b["cpu0"][1] - a["cpu0"][1]) / tot0) if tot0 else None
        d["host_ipis"] = b["ipis"] - a["ipis"]
        d["host_share"] = d["host_cpu_s"] / wall if wall else None
        for side in ("g", "l"):
            for k in SNMP_KEYS:
                d[f"{side}.{k}"] = b[f"snmp_{side}"].get(k, 0) - a[f"snmp_{side}"].get(k, 0)
        d["csum_errors"] = sum(d[f"{s}.{k}"] for s in ("g", "l")
                               for k in ("Tcp.InCsumErrors", "Udp.InCsumErrors"))
        return d


# ---------------------------------------------------------------- topology

class Topology:
    def __init__(self, tools):
        self.s = str(random.randint(10000, 99999))
        s = self.s
        self.ns = {"g": f"kvxb{s}-g", "h": f"kvxb{s}-h", "l": f"kvxb{s}-l"}
        self.extra = [f"g{i}" for i in range(1, EXTRA_GUESTS + 1)]
        for g in self.extra:
            self.ns[g] = f"kvxb{s}-{g}"
        self.dev = {"ge": f"k{s}ge", "gp": f"k{s}gp", "up": f"k{s}up", "ln": f"k{s}ln",
                    "br": "br0"}
        self.tools = tools
        self.procs = []  # (name, Popen) started by us, killed by pid at exit
        self.holder = {}
        self.host_threads = []
        # Host processes whose CPU counts as the NAT's too (kvmxdp's
        # daemon: its GC), every thread of each.
        self.host_procs = []
        self.ifindex = {}
        self.work = f"/tmp/kvxbench-{s}"
        # Our own bpffs outside /sys (ip netns exec remounts /sys and hides it).
        self.bpffs = os.path.join(self.work, "bpffs")
        self.mounted = False
        self.created = []

    def sh(self, side, *cmd, check=True):
        return run(nsx(self.ns[side], list(cmd)), check=check)

    def sysfs_write(self, side, path, value):
        # ip netns exec mounts the netns' own /sys: the devices are ours.
        run(["ip", "netns", "exec", self.ns[side], "sh", "-c", f"echo {value} > {path}"])

    def spawn(self, name, cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        self.procs.append((name, p))
        return p

    def up(self):
        os.makedirs(self.bpffs, exist_ok=True)
        run(["mount", "-t", "bpf", "bpf", self.bpffs])
        self.mounted = True
        for side in ["g", "h", "l"] + self.extra:
            run(["ip", "netns", "add", self.ns[side]])
            self.created.append(self.ns[side])
            self.sh(side, "ip", "link", "set", "lo", "up")
        d, ns = self.dev, self.ns
        h = lambda *c: self.sh("h", *c)  # noqa: E731
        h("ip", "link", "add", d["br"], "address", MAC["br"], "type", "bridge")
        h("ip", "addr", "add", f"{GW_IP}/24", "dev", d["br"])
        h("ip", "link", "add", d["gp"], "address", MAC["gp"], "type", "veth", "peer", "name",
          d["ge"], "address", MAC["ge"], "netns", ns["g"])
        h("ip", "link", "set", d["gp"], "master", d["br"])
        h("ip", "link", "add", d["up"], "address", MAC["up"], "type", "veth", "peer", "name",
          d["ln"], "address", MAC["ln"], "netns", ns["l"])
        h("ip", "addr", "add", f"{UP_IP}/24", "dev", d["up"])
        for dev in (d["br"], d["gp"], d["up"]):
            h("ip", "link", "set", dev, "up")
        h("ip", "route", "add", "default", "via", SERVER_IP)
        self.sh("g", "ip", "addr", "add", f"{GUEST_IP}/24", "dev", d["ge"])
        self.sh("g", "ip", "link", "set", d["ge"], "up")
        self.sh("g", "ip", "route", "add", "default", "via", GW_IP)
        self.sh("l", "ip", "addr", "add", f"{SERVER_IP}/24", "dev", d["ln"])
        self.sh("l", "ip", "link", "set", d["ln"], "up")
        # Static neighbours and FDB: no ARP inside the measurements.
        self.sh("g", "ip", "neigh", "replace", GW_IP, "dev", d["ge"], "lladdr", MAC["br"],
                "nud", "permanent")
        h("ip", "neigh", "replace", GUEST_IP, "dev", d["br"], "lladdr", MAC["ge"], "nud",
          "permanent")
        h("ip", "neigh", "replace", SERVER_IP, "dev", d["up"], "lladdr", MAC["ln"], "nud",
          "permanent")
        self.sh("l", "ip", "neigh", "replace", UP_IP, "dev", d["ln"], "lladdr", MAC["up"], "nud",
                "permanent")
        h("bridge", "fdb", "replace", MAC["ge"], "dev", d["gp"], "master", "static")
        self.ipv6()
        self.extra_guests()
        # The host routes in every configuration (kvmxdp needs forwarding on
        # the bridge for bpf_fib_lookup, the kernel configs need ip_forward).
        h("sysctl", "-qw", "net.ipv4.ip_forward=1")
        # br_netfilter (loaded machine-wide by Docker and others) would send
        # every bridged frame through iptables/conntrack before the bridge
        # device's TC hook: off in our host netns, recorded.
        self.br_netfilter = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if self.br_netfilter:
            for k in ("iptables", "ip6tables", "arptables"):
                h("sysctl", "-qw", f"net.bridge.bridge-nf-call-{k}=0")
        # The host netns keeps the kernel's default ephemeral range
        # (32768-60999), as a stock host has it: kvmxdp's default NAT pool
        # is then 1024-32767 + 61000-65535 (~36000 ports), the pool users
        # get, and the guest's own ports (32768-60999) are never preserved.
        # GRO on = NAPI on veth (an XDP redirect or XDP_TX into a veth only
        # lands if the peer has NAPI); threaded NAPI pins the work per CPU.
        # TSO off: veth_xmit bypasses NAPI (netif_rx on the sender's CPU) for
        # skbs sent by a TSO-capable veth (veth_skb_is_eligible_for_gro), so
        # with TSO on the host's forwarding would run on CPU 0.  Without TSO,
        # senders segment in software (GSO), the receiving veth re-merges
        # (GRO), and the NAT sees GSO skbs with CHECKSUM_PARTIAL: the case the
        # checksum/GSO check is about.  (Like a WiFi uplink: no TSO there.)
        for side, dev in (("h", d["gp"]), ("h", d["up"]), ("g", d["ge"]), ("l", d["ln"])):
            self.sh(side, "ethtool", "-K", dev, "gro", "on", "tso", "off")
            self.sysfs_write(side, f"/sys/class/net/{dev}/threaded", 1)
        # A qdisc on every veth: a full NAPI ring then stops the queue
        # (backpressure) instead of dropping (noqueue): tens of thousands of
        # TCP retransmits per second without it whenever a napi thread waits
        # for its CPU.
        for side, dev in (("h", d["gp"]), ("h", d["up"]), ("g", d["ge"]), ("l", d["ln"])):
            self.sh(side, "tc", "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "1000")
        time.sleep(0.2)
        threads = self.napi_threads()
        for dev, pids in threads.items():
            for pid in pids:
                host = dev in (d["gp"], d["up"])
                run(["taskset", "-pc", str(HOST_CPU if host else PEER_CPU), str(pid)])
                # nice -5: the far ends (sink, endpoints) share CPU 0 with the
                # generator, which must not starve the sink; the host threads
                # share CPU 1 with whatever else runs on this machine.
                run(["renice", "-n", "-5", "-p", str(pid)])
        self.host_threads = threads[d["gp"]] + threads[d["up"]]
        if not threads[d["gp"]] or not threads[d["up"]]:
            raise RuntimeError(f"napi threads not found: {threads}")
        for side, dev in (("h", d["br"]), ("h", d["up"]), ("h", d["gp"])):
            self.ifindex[dev] = int(json.loads(self.sh(side, "ip", "-j", "link", "show", dev))[0]
                                    ["ifindex"])
        # Holders: a process per netns for /proc/PID/net/* (no fork per read).
        for side in ("g", "h", "l"):
            self.holder[side] = self.spawn(f"holder-{side}", nsx(ns[side], ["sleep", "1000000"])).pid
        time.sleep(0.1)
        # nsenter execs sleep in place, so the pid is the sleeper's.
        self.servers()

    def ipv6(self):
        """The same topology over IPv6, static (nodad, permanent
        neighbours: no ND inside the measurements).  The host forwards IPv6
        as it forwards IPv4 (the kernel configurations need it; kvmxdp
        translates before the kernel would)."""
        d, h = self.dev, (lambda *c: self.sh("h", *c))
        for side in ("g", "h", "l"):
            self.sh(side, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
            self.sh(side, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0")
        h("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        h("ip", "-6", "addr", "add", f"{GW_IP6}/64", "dev", d["br"], "nodad")
        h("ip", "-6", "addr", "add", f"{UP_IP6}/64", "dev", d["up"], "nodad")
        h("ip", "-6", "route", "add", "default", "via", SERVER_IP6)
        self.sh("g", "ip", "-6", "addr", "add", f"{GUEST_IP6}/64", "dev", d["ge"], "nodad")
        self.sh("g", "ip", "-6", "route", "add", "default", "via", GW_IP6)
        self.sh("l", "ip", "-6", "addr", "add", f"{SERVER_IP6}/64", "dev", d["ln"], "nodad")
        self.sh("g", "ip", "-6", "neigh", "replace", GW_IP6, "dev", d["ge"], "lladdr", MAC["br"],
                "nud", "permanent")
        h("ip", "-6", "neigh", "replace", GUEST_IP6, "dev", d["br"], "lladdr", MAC["ge"], "nud",
          "permanent")
        h("ip", "-6", "neigh", "replace", SERVER_IP6, "dev", d["up"], "lladdr", MAC["ln"], "nud",
          "permanent")
        self.sh("l", "ip", "-6", "neigh", "replace", UP_IP6, "dev", d["ln"], "lladdr", MAC["up"],
                "nud", "permanent")

    def extra_guest_ip(self, i):
        a, b, c, last = GUEST_IP.split(".")
        return f"{a}.{b}.{c}.{int(last) + i}"

    def extra_guests(self):
        """Guests g1.. for churn_all: plain veths on the bridge (no NAPI
        tuning: only the connection rate of several guests at once is
        measured through them), static neighbours and FDB as the first."""
        s, h = self.s, (lambda *c: self.sh("h", *c))
        for i, g in enumerate(self.extra, 1):
            port, dev, mac = f"k{s}p{i}", f"k{s}e{i}", f"02:6b:76:00:0b:{i + 1:02x}"
            ip = self.extra_guest_ip(i)
            h("ip", "link", "add", port, "type", "veth", "peer", "name", dev, "address", mac,
              "netns", self.ns[g])
            h("ip", "link", "set", port, "master", self.dev["br"])
            h("ip", "link", "set", port, "up")
            self.sh(g, "ip", "link", "set", "lo", "up")
            self.sh(g, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            self.sh(g, "ip", "link", "set", dev, "up")
            self.sh(g, "ip", "route", "add", "default", "via", GW_IP)
            self.sh(g, "ip", "neigh", "replace", GW_IP, "dev", dev, "lladdr", MAC["br"], "nud",
                    "permanent")
            h("ip", "neigh", "replace", ip, "dev", self.dev["br"], "lladdr", mac, "nud",
              "permanent")
            h("bridge", "fdb", "replace", mac, "dev", port, "master", "static")

    def forget_connections(self):
        """Destroy the TIME_WAIT sockets the previous configuration left in
        the server's and the guests' namespaces (`ss -K`), so that every
        configuration starts from the same clean state.  Without this, a
        NAT that starts with empty tables (kvmxdp is attached afresh for
        each configuration) picks external ports on which the server still
        holds TIME_WAIT from another guest's connection of the previous
        configuration: that guest's TCP timestamps differ, the server's
        PAWS check drops the new SYN (TcpExt PAWSTimewait) and the client
        retransmits it after 1 s.  MASQUERADE mostly keeps the guest's own
        port and so rarely met it: crr measured 0.55x iptables that way."""
        for side in ["l", "g"] + self.extra:
            run(nsx(self.ns[side], ["ss", "-K", "-tan", "state", "time-wait"]), check=False)

    def napi_threads(self):
        out = {v: [] for v in self.dev.values()}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            m = re.match(r"napi/(k\d+\w\w)-", comm)
            if m and m.group(1) in out:
                out[m.group(1)].append(int(pid))
        return out

    def servers(self):
        ns, tl = self.ns, self.tools
        dn = subprocess.DEVNULL
        self.spawn("iperf3-s", nsx(ns["l"], ["iperf3", "-s", "-B", SERVER_IP, "-A", str(PEER_CPU)]),
                   stdout=dn, stderr=dn)
        self.spawn("iperf3-s6", nsx(ns["l"], ["iperf3", "-s", "-B", SERVER_IP6, "-p",
                                              str(IPERF6_PORT), "-A", str(PEER_CPU)]),
                   stdout=dn, stderr=dn)
        self.spawn("rr-s", nsx(ns["l"], ["chrt", "-f", "10", "taskset", "-c", str(PEER_CPU),
                                         f"{tl}/kvx-net",
                                         "rr-server", "--port", str(RR_PORT)]))
        self.spawn("crr-s", nsx(ns["l"], ["taskset", "-c", str(PEER_CPU), f"{tl}/kvx-net",
                                          "crr-server", "--port", str(CRR_PORT)]))
        self.spawn("crr-s6", nsx(ns["l"], ["taskset", "-c", str(PEER_CPU), f"{tl}/kvx-net",
                                           "crr-server", "--port", str(CRR6_PORT),
                                           "--dst", SERVER_IP6]))
        time.sleep(0.5)

    def down(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.terminate()
                    p.wait(timeout=3)
                except Exception:
                    try:
                        p.kill()
                    except Exception:
                        pass
        for n in self.created:
            run(["ip", "netns", "del", n], check=False)
        if self.mounted:
            run(["umount", self.bpffs], check=False)
        shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------- configurations

def clang_bpf(src, out, defines):
    # cmake/bpf-cc: the project's one set of BPF compiler flags.
    bpf_cc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "cmake", "bpf-cc")
    run([bpf_cc] + [f"-D{k}={v}" for k, v in defines.items()] + ["-c", src, "-o", out])


def ip_hex(ip):
    return "0x%08x" % int.from_bytes(bytes(int(x) for x in ip.split(".")), "big")


def mac_list(mac):
    return ",".join(str(int(x, 16)) for x in mac.split(":"))


def tc_prog_ids(topo, dev, hook="ingress"):
    out = topo.sh("h", "tc", "filter", "show", "dev", dev, hook, check=False)
    return [int(x) for x in re.findall(r"\bid (\d+)", out)]


TOOLS = None  # set in main(): directory of kvx-gen


def prog_info(pid):
    j = json.loads(run(["bpftool", "prog", "show", "id", str(pid), "--json"]))
    out = {k: j.get(k) for k in ("name", "type", "bytes_xlated", "bytes_jited", "bytes_memlock")}
    try:  # bpftool 7.1 has no verified_insns
        out["verified_insns"] = json.loads(run([f"{TOOLS}/kvx-gen", "proginfo", str(pid)]))[
            "verified_insns"]
    except Exception:
        out["verified_insns"] = None
    return out


class Config:
    name = ""
    label = ""
    workloads = None  # None: all
    ipv6 = False  # runs the *6 workloads (IPv6 NAT or forwarding)
    snat_src = UP_IP  # the source the sink sees for the generator's frames

    def __init__(self, topo, opts):
        self.topo, self.opts = topo, opts

    def available(self):
        return True, ""

    def setup(self):
        pass

    def teardown(self):
        pass

    def supports(self, wl):
        if wl.endswith("6"):
            return self.ipv6
        return self.workloads is None or wl in self.workloads

    def info(self):
        return {}


class IptablesConfig(Config):
    name, label = "iptables", "kernel fwd + iptables MASQUERADE"

    def rules(self):
        br, up = self.topo.dev["br"], self.topo.dev["up"]
        f = ["-A", "FORWARD"]
        p = ["-t", "nat", "-A", "POSTROUTING", "-s", SUBNET]
        return [
            f + ["-i", br, "-o", up, "-s", SUBNET, "-m", "conntrack", "--ctstate", "NEW",
                 "-j", "ACCEPT"],
            f + ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            f + ["-j", "REJECT"],
            p + ["-d", "224.0.0.0/24", "-j", "RETURN"],
            p + ["-d", "255.255.255.255/32", "-j", "RETURN"],
            p + ["!", "-d", SUBNET, "-o", up, "-p", "tcp", "-j", "MASQUERADE", "--to-ports",
                 NAT_PORTS],
            p + ["!", "-d", SUBNET, "-o", up, "-p", "udp", "-j", "MASQUERADE", "--to-ports",
                 NAT_PORTS],
            p + ["!", "-d", SUBNET, "-o", up, "-j", "MASQUERADE"],
        ]

    def rules6(self):
        """The same recipe for IPv6 (ip6tables' MASQUERADE, libvirt's
        <nat ipv6='yes'/>): forward the guests' new flows, replies back."""
        br, up = self.topo.dev["br"], self.topo.dev["up"]
        f = ["-A", "FORWARD"]
        return [
            f + ["-i", br, "-o", up, "-s", SUBNET6, "-m", "conntrack", "--ctstate", "NEW",
                 "-j", "ACCEPT"],
            f + ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            f + ["-j", "REJECT"],
            ["-t", "nat", "-A", "POSTROUTING", "-s", SUBNET6, "!", "-d", SUBNET6, "-o", up,
             "-j", "MASQUERADE"],
        ]

    ipv6 = True

    def setup(self):
        self.topo.sh("h", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for r in self.rules():
            self.topo.sh("h", "iptables", *r)
        for r in self.rules6():
            self.topo.sh("h", "ip6tables", *r)

    def teardown(self):
        t = self.topo
        t.sh("h", "iptables", "-F", "FORWARD", check=False)
        t.sh("h", "iptables", "-t", "nat", "-F", "POSTROUTING", check=False)
        t.sh("h", "ip6tables", "-F", "FORWARD", check=False)
        t.sh("h", "ip6tables", "-t", "nat", "-F", "POSTROUTING", check=False)
        if shutil.which("conntrack"):
            t.sh("h", "conntrack", "-F", check=False)


class IptablesPaddedConfig(IptablesConfig):
    """iptables with 150 mangle PREROUTING rules that never match in front
    (sources in 10.99.0.0/24): a costlier NAT doing the same job, for what
    each layout of the churn rows rewards (churn_split vs churn).  A
    diagnostic, not in the default set."""
    name, label = "iptables-padded", "iptables + 150 rules that never match"
    PAD = 150

    def setup(self):
        super().setup()
        rules = "".join(f"-A PREROUTING -s 10.99.0.{i + 1}/32 -j ACCEPT\n"
                        for i in range(self.PAD))
        run(nsx(self.topo.ns["h"], ["iptables-restore", "--noflush"]),
            input=f"*mangle\n{rules}COMMIT\n")

    def teardown(self):
        self.topo.sh("h", "iptables", "-t", "mangle", "-F", "PREROUTING", check=False)
        super().teardown()


class NftConfig(Config):
    name, label = "nftables", "kernel fwd + nftables masquerade"

    def ruleset(self):
        br, up = self.topo.dev["br"], self.topo.dev["up"]
        return f"""table ip kvxbench {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{br}" oifname "{up}" ip saddr {SUBNET} ct state new accept
    ct state established,related accept
    reject
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {SUBNET} ip daddr 224.0.0.0/24 return
    ip saddr {SUBNET} ip daddr 255.255.255.255 return
    ip saddr {SUBNET} ip daddr != {SUBNET} oifname "{up}" meta l4proto {{ tcp, udp }} masquerade to :{NAT_PORTS}
    ip saddr {SUBNET} ip daddr != {SUBNET} oifname "{up}" masquerade
  }}
}}
"""

    def setup(self):
        run(nsx(self.topo.ns["h"], ["nft", "-f", "-"]), input=self.ruleset())

    def teardown(self):
        self.topo.sh("h", "nft", "delete", "table", "ip", "kvxbench", check=False)


class RoutingConfig(Config):
    name, label = "routing", "kernel fwd, no NAT (reference)"
    snat_src = GUEST_IP
    workloads = ("udp", "tcp_up", "tcp_down", "rr")
    ipv6 = True

    def setup(self):
        self.topo.sh("l", "ip", "route", "replace", SUBNET, "via", UP_IP)
        self.topo.sh("l", "ip", "-6", "route", "replace", SUBNET6, "via", UP_IP6)

    def teardown(self):
        self.topo.sh("l", "ip", "route", "del", SUBNET, check=False)
        self.topo.sh("l", "ip", "-6", "route", "del", SUBNET6, check=False)


class MinimalTcConfig(Config):
    name, label = "minimal-tc", "minimal static TC SNAT (no conntrack)"

    def setup(self):
        t = self.topo
        obj = os.path.join(t.work, "snat_tc.bpf.o")
        if not os.path.exists(obj):
            clang_bpf(os.path.join(BENCH_DIR, "minimal", "snat_tc.bpf.c"), obj, {
                "GUEST_ADDR": ip_hex(GUEST_IP), "SUBNET": ip_hex("192.168.122.0"),
                "SUBNET_MASK": "0xffffff00", "UPLINK_ADDR": ip_hex(UP_IP),
                "UP_IFINDEX": t.ifindex[t.dev["up"]], "BR_IFINDEX": t.ifindex[t.dev["br"]],
                "UP_MAC": mac_list(MAC["up"]), "LAN_MAC": mac_list(MAC["ln"]),
                "BR_MAC": mac_list(MAC["br"]), "GUEST_MAC": mac_list(MAC["ge"])})
        for dev, sec in ((t.dev["br"], "snat_br"), (t.dev["up"], "snat_up")):
            t.sh("h", "tc", "qdisc", "add", "dev", dev, "clsact")
            t.sh("h", "tc", "filter", "add", "dev", dev, "ingress", "bpf", "da", "obj", obj,
                 "sec", "tc", "program", sec)
        self._info = {}
        for dev in (t.dev["br"], t.dev["up"]):
            for pid in tc_prog_ids(t, dev):
                i = prog_info(pid)
                self._info[i["name"]] = i

    def teardown(self):
        t = self.topo
        for dev in (t.dev["br"], t.dev["up"]):
            t.sh("h", "tc", "qdisc", "del", "dev", dev, "clsact", check=False)

    def info(self):
        return {"programs": getattr(self, "_info", {})}


class BareXdpConfig(Config):
    name, label = "bare-xdp", "bare XDP redirect, no NAT (ceiling)"
    snat_src = GUEST_IP
    workloads = ("udp",)

    def setup(self):
        t = self.topo
        obj = os.path.join(t.work, "redirect_xdp.bpf.o")
        if not os.path.exists(obj):
            clang_bpf(os.path.join(BENCH_DIR, "minimal", "redirect_xdp.bpf.c"), obj, {
                "UP_IFINDEX": t.ifindex[t.dev["up"]], "UP_MAC": mac_list(MAC["up"]),
                "LAN_MAC": mac_list(MAC["ln"]), "SERVER_ADDR": ip_hex(SERVER_IP)})
        t.sh("h", "ip", "link", "set", "dev", t.dev["gp"], "xdpdrv", "obj", obj, "sec", "xdp")
        out = t.sh("h", "ip", "-j", "-d", "link", "show", t.dev["gp"])
        m = re.search(r'"prog":\{[^}]*"id":(\d+)', out) or re.search(r'"id":(\d+)', out)
        self._info = {"redirect_up": prog_info(int(m.group(1)))} if m else {}

    def teardown(self):
        t = self.topo
        t.sh("h", "ip", "link", "set", "dev", t.dev["gp"], "xdpdrv", "off", check=False)

    def info(self):
        return {"programs": getattr(self, "_info", {})}


class KvmxdpConfig(Config):
    """kvmxdp through its CLI: `attach` runs as the daemon, `status --json`
    gives the verdict counters by reason name and the tables' sizes,
    `detach` takes it down."""
    name, label = "kvmxdp-tc", "kvmxdp TC"
    mode = "tc"
    ipv6 = True  # NAT66 with the defaults (--ipv6 auto: the bridge's ULA)

    def __init__(self, topo, opts):
        super().__init__(topo, opts)
        self.daemon = None
        self.ct_size = None
        self.bind_size = None
        self.flow_quota = None
        self._info = {}
        self.last_stats = {}

    def available(self):
        b = self.opts.kvmxdp
        if b and os.access(b, os.X_OK):
            return True, ""
        return False, f"no kvmxdp binary ({b or 'build/kvmxdp'}): build it, or give --kvmxdp PATH"

    @property
    def pin_dir(self):
        return os.path.join(self.topo.bpffs, "kvmxdp", self.topo.dev["br"].replace(".", ":"))

    def setup(self):
        self._attach()
        t = self.topo
        if not self._info:
            for dev in (t.dev["br"], t.dev["up"]):
                for pid in tc_prog_ids(t, dev):
                    i = prog_info(pid)
                    self._info[i["name"]] = i
            # The XDP programs in front (--mode xdp): the guest's port and
            # the uplink.
            for dev in (t.dev["gp"], t.dev["up"]):
                j = json.loads(t.sh("h", "ip", "-j", "link", "show", "dev", dev) or "[{}]")
                pid = (j[0].get("xdp") or {}).get("prog", {}).get("id")
                if pid:
                    i = prog_info(pid)
                    self._info[i["name"]] = i

    def _cli(self, *args):
        t = self.topo
        return [self.opts.kvmxdp, "--bpffs", t.bpffs, "--config",
                os.path.join(t.work, "kvmxdp.json"), "--run-dir",
                os.path.join(t.work, "run")] + list(args)

    def _attach(self):
        t = self.topo
        # kvmxdp's default NAT pool, as users get it: 1024-65535 without the
        # host's ephemeral ports (the kernel's default, 32768-60999) and its
        # listening ports.
        args = ["attach", "--bridge", t.dev["br"], "--uplink", t.dev["up"], "--subnet", SUBNET]
        args += ["--mode", self.mode]
        if self.ct_size:
            args += ["--ct-size", str(self.ct_size)]
        if self.bind_size:
            args += ["--bind-size", str(self.bind_size)]
        # Everything else is kvmxdp's default, the per-guest flow quota
        # too: the workloads measure what users get (crr's churn included,
        # whose closed flows give way to new ones at the quota).
        if self.flow_quota is not None:
            args += ["--flow-quota", str(self.flow_quota)]
        args += self.extra_attach_args()
        os.makedirs(t.bpffs, exist_ok=True)
        self.daemon = t.spawn("kvmxdp", nsx(t.ns["h"], self._cli(*args)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        line = self.daemon.stdout.readline()
        if "kvmxdp: attached" not in line:
            try:
                self.daemon.wait(timeout=5)
                err = self.daemon.stderr.read()
            except subprocess.TimeoutExpired:
                err = "(no 'attached' line; daemon still running)"
            raise RuntimeError(f"kvmxdp attach failed: {line.strip()} {err.strip()}")
        t.host_procs = [self.daemon.pid]

    def extra_attach_args(self):
        return []

    def status(self):
        """This instance's object of `kvmxdp status --json`, or None."""
        try:
            j = json.loads(run(nsx(self.topo.ns["h"], self._cli("status", "--json")),
                               timeout=60))
        except Exception:
            return None
        for inst in j.get("instances", []):
            if inst.get("bridge") == self.topo.dev["br"]:
                return inst
        return None

    def stats(self):
        """Packets per verdict reason (the names `status` gives), non-zero only."""
        inst = self.status() or {}
        return {name: c["packets"] for name, c in inst.get("counters", {}).items()
                if c.get("packets")}

    def map_info(self):
        inst = self.status() or {}
        out = {}
        for m, mi in inst.get("maps", {}).items():
            if m in ("kvx_ct", "kvx_bind"):
                out[m] = {"max_entries": mi.get("max_entries"),
                          "bytes_memlock": mi.get("memory_bytes")
                          if mi.get("memory_source") == "kernel" else None}
        return out

    def teardown(self):
        t = self.topo
        self.last_stats = self.stats()
        run(nsx(t.ns["h"], self._cli("detach", "--bridge", t.dev["br"])), check=False)
        t.host_procs = []
        if self.daemon:
            try:
                self.daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.daemon.terminate()
                self.daemon.wait(timeout=5)
            self.daemon = None
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    def info(self):
        return {"driver": "cli", "programs": self._info}


class KvmxdpXdpConfig(KvmxdpConfig):
    name, label = "kvmxdp-xdp", "kvmxdp XDP"
    mode = "xdp"


class KvmxdpRelayConfig(KvmxdpConfig):
    """kvmxdp's IPv6 relay mode (`attach --ipv6 relay`): the guest on the
    uplink's own /64, no translation, forwarded by the datapath; against
    plain IPv6 forwarding (routing) and ip6tables MASQUERADE (iptables) in
    the same run.  Relay needs the prefix from a router advertisement, so
    the server's side runs radvd (prefix only: router lifetime 0 keeps the
    host's static default route); the uplink takes a SLAAC address beside
    its static one.  The guest's address in the /64 is static with its
    neighbours permanent, as the rest of the topology: no ND inside the
    measurements (the server's entry for the guest is the uplink's MAC, what
    kvmxdp's ND proxy answers)."""
    name, label = "kvmxdp-relay", "kvmxdp IPv6 relay (no NAT)"
    workloads = ()  # the IPv6 workloads only
    RELAY_GUEST6 = "2001:db8:77::11"
    PREFIX6 = "2001:db8:77::/64"

    def __init__(self, topo, opts):
        super().__init__(topo, opts)
        self.radvd = None

    def available(self):
        ok, why = super().available()
        if ok and not shutil.which("radvd"):
            return False, "no radvd (scripts/install-deps.sh installs it)"
        return ok, why

    def extra_attach_args(self):
        return ["--ipv6", "relay"]

    def _wait_slaac(self, secs=15):
        t = self.topo
        end = time.monotonic() + secs
        while time.monotonic() < end:
            j = json.loads(t.sh("h", "ip", "-j", "-6", "addr", "show", "dev", t.dev["up"],
                                "scope", "global", "dynamic") or "[]")
            if any(a.get("local", "").startswith("2001:db8:77:") for i in j
                   for a in i.get("addr_info", []) if not a.get("tentative")):
                return
            time.sleep(0.2)
        raise RuntimeError("the uplink took no SLAAC address from the bench's radvd")

    def setup(self):
        t = self.topo
        conf = os.path.join(t.work, "radvd.conf")
        with open(conf, "w") as f:
            f.write(f"""interface {t.dev["ln"]} {{
  AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4; AdvDefaultLifetime 0;
  prefix {self.PREFIX6} {{ AdvOnLink on; AdvAutonomous on; }};
}};
""")
        # radvd wants its namespace to forward; the server's side is the
        # LAN's router here, and nothing else of it changes.
        self._saved = {(side, key): t.sh(side, "sysctl", "-n", key).strip() for side, key in (
            ("l", "net.ipv6.conf.all.forwarding"),
            ("h", f"net.ipv6.conf.{t.dev['up']}.accept_ra"),
            ("g", f"net.ipv6.conf.{t.dev['ge']}.accept_ra"))}
        t.sh("l", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        up = t.dev["up"]
        # The host forwards (the kernel configurations need it): a
        # forwarding interface takes RAs only with accept_ra=2.
        t.sh("h", "sysctl", "-qw", f"net.ipv6.conf.{up}.accept_ra=2")
        self.radvd = t.spawn("radvd", nsx(t.ns["l"], [
            "radvd", "-n", "-C", conf, "-p", os.path.join(t.work, "radvd.pid"),
            "-m", "stderr"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_slaac()
        g = self.RELAY_GUEST6
        t.sh("g", "sysctl", "-qw", f"net.ipv6.conf.{t.dev['ge']}.accept_ra=0")
        t.sh("g", "ip", "-6", "addr", "add", f"{g}/64", "dev", t.dev["ge"], "nodad")
        t.sh("g", "ip", "-6", "neigh", "replace", SERVER_IP6, "dev", t.dev["ge"], "lladdr",
             MAC["br"], "nud", "permanent")
        t.sh("l", "ip", "-6", "neigh", "replace", g, "dev", t.dev["ln"], "lladdr", MAC["up"],
             "nud", "permanent")
        super().setup()
        # The guest's address skipped DAD (nodad, as everything here):
        # relay forwards from an address nobody probed only once the
        # daemon's own probe found it free, a second or so after its first
        # packet.  A real guest's DAD at boot does that before any traffic;
        # here pings do, before anything is measured.
        for _ in range(20):
            r = subprocess.run(nsx(t.ns["g"], ["ping", "-6", "-c1", "-W1", SERVER_IP6]),
                               capture_output=True)
            if r.returncode == 0:
                return
        raise RuntimeError(f"relay never forwarded the guest's {g}")

    def teardown(self):
        super().teardown()
        t = self.topo
        if self.radvd:
            self.radvd.terminate()
            try:
                self.radvd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.radvd.kill()
            self.radvd = None
        g = self.RELAY_GUEST6
        t.sh("g", "ip", "-6", "addr", "del", f"{g}/64", "dev", t.dev["ge"], check=False)
        t.sh("l", "ip", "-6", "neigh", "del", g, "dev", t.dev["ln"], check=False)
        for (side, key), v in getattr(self, "_saved", {}).items():
            t.sh(side, "sysctl", "-qw", f"{key}={v}", check=False)
        self._saved = {}
        t.sh("h", "ip", "-6", "addr", "flush", "dev", t.dev["up"], "scope", "global", "dynamic",
             check=False)


class KvmxdpBaseConfig(KvmxdpConfig):
    """Another build of kvmxdp (`--kvmxdp-base`, e.g. the commit before a
    datapath change), TC mode, driven exactly as kvmxdp-tc and measured in
    the same run: the before/after of a change as a ratio of two rows.  IPv4
    workloads only (an older build may have no NAT66); its own config file
    and run directory, so that two builds never read each other's state."""
    name, label = "kvmxdp-tc-base", "kvmxdp TC (base build)"
    ipv6 = False

    def available(self):
        b = self.opts.kvmxdp_base
        if b and os.access(b, os.X_OK):
            return True, ""
        return False, "no --kvmxdp-base binary given"

    def _cli(self, *args):
        t = self.topo
        return [self.opts.kvmxdp_base, "--bpffs", t.bpffs, "--config",
                os.path.join(t.work, "kvmxdp-base.json"), "--run-dir",
                os.path.join(t.work, "run-base")] + list(args)


def snapshot_binary(src, dst, tries=20):
    """Copies src once it is stable (not being re-linked right now: same
    size and mtime for a second, executable, answers --help)."""
    for _ in range(tries):
        try:
            st = os.stat(src)
            time.sleep(1)
            st2 = os.stat(src)
            if (st.st_mtime, st.st_size) == (st2.st_mtime, st2.st_size) and \
                    os.access(src, os.X_OK):
                shutil.copy2(src, dst)
                if subprocess.run([dst, "--help"], capture_output=True).returncode == 0:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{src} does not settle (being rebuilt?)")


CONFIGS = [IptablesConfig, IptablesPaddedConfig, NftConfig, RoutingConfig, KvmxdpConfig,
           KvmxdpXdpConfig, MinimalTcConfig, BareXdpConfig, KvmxdpRelayConfig, KvmxdpBaseConfig]

# ---------------------------------------------------------------- workloads


class Bench:
    def __init__(self, topo, opts):
        self.topo, self.opts = topo, opts
        self.probe = Probe(topo)
        self.profile_next = None  # perf data path for the next udp sample
        q = opts.quick
        self.d = {"udp_warm": 0.7 if q else 1.0, "udp_win": 1.5 if q else 3.0,
                  "tcp": 2 if q else 3, "cpu1g": 2 if q else 3, "crr": 1.5 if q else 3.0,
                  "rr": 1.5 if q else 3.0, "churn": 10 if q else 20}

    def udp(self, cfg, flows=1):
        t, tl = self.topo, self.opts.tools
        dport_hi = UDP_DPORT + max(1, flows // 16 if flows >= 16 else 1) - 1
        sink = t.spawn("sink", nsx(t.ns["l"], [f"{tl}/kvx-gen", "sink", "--dev", t.dev["ln"],
                                                "--dst", SERVER_IP, "--src", cfg.snat_src,
                                                "--dport-lo", str(UDP_DPORT),
                                                "--dport-hi", str(dport_hi)]),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if sink.stdout.readline().strip() != "ready":
                raise RuntimeError("sink did not start")
            warm, win = self.d["udp_warm"], self.d["udp_win"]
            gen = t.spawn("gen", nsx(t.ns["g"], [
                f"{tl}/kvx-gen", "gen", "--dev", t.dev["ge"], "--src-mac", MAC["ge"],
                "--dst-mac", MAC["br"], "--src", GUEST_IP, "--dst", SERVER_IP, "--sport", "10000",
                "--dport", str(UDP_DPORT), "--flows", str(flows), "--len", "60",
                "--seconds", str(warm + win + 0.3), "--cpu", str(PEER_CPU)]),
                stdout=subprocess.PIPE, text=True)

            def count():
                sink.stdin.write("c\n")
                sink.stdin.flush()
                ns, c = sink.stdout.readline().split()
                return int(ns), int(c)

            time.sleep(warm)
            c0, a = count(), self.probe.sample()
            prof = None
            if self.profile_next:
                prof = subprocess.Popen(
                    ["perf", "record", "-q", "-t", ",".join(str(p) for p in t.host_threads),
                     "-o", self.profile_next, "--", "sleep", str(max(0.5, win - 0.3))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(win)
            c1, b = count(), self.probe.sample()
            if prof:
                prof.wait(timeout=30)
            g = json.loads(gen.stdout.read() or "{}")
            gen.wait()
        finally:
            if sink.poll() is None:
                sink.stdin.close()
                sink.wait(timeout=10)
        d = Probe.delta(a, b)
        pps = (c1[1] - c0[1]) / ((c1[0] - c0[0]) / 1e9)
        d.update({"mpps": pps / 1e6, "gen_mpps": g.get("pps", 0) / 1e6,
                  "mpps_per_core": (pps / 1e6 / d["host_share"]) if d["host_share"] else None})
        return d

    def iperf(self, reverse=False, rate=None, secs=3, v6=False):
        t = self.topo
        cmd = ["iperf3", "-c", SERVER_IP6 if v6 else SERVER_IP, "-t", str(secs), "-J", "-A",
               str(PEER_CPU)]
        if v6:
            cmd += ["-p", str(IPERF6_PORT)]
        if reverse:
            cmd.append("-R")
        if rate:
            cmd += ["-b", rate]
        a = self.probe.sample()
        r = run(nsx(t.ns["g"], cmd), check=False, timeout=secs + 30)
        b = self.probe.sample()
        d = Probe.delta(a, b)
        try:
            j = json.loads(r)
        except json.JSONDecodeError:
            j = {"error": "no JSON from iperf3"}
        if "error" in j:
            d["error"] = j["error"]
            return d
        end = j["end"]
        d["gbps"] = end["sum_received"]["bits_per_second"] / 1e9
        d["bytes"] = end["sum_received"]["bytes"]
        d["retransmits"] = end["sum_sent"].get("retransmits")
        d["gbps_per_core"] = d["gbps"] / d["host_share"] if d["host_share"] else None
        d["host_cpu_s_per_gb"] = d["host_cpu_s"] / (d["bytes"] / 1e9) if d["bytes"] else None
        return d

    def tcp_up(self, cfg):
        return self.iperf(False, None, self.d["tcp"])

    def tcp_down(self, cfg):
        return self.iperf(True, None, self.d["tcp"])

    # IPv6: NAT66 against ip6tables MASQUERADE and plain forwarding.
    def tcp_up6(self, cfg):
        return self.iperf(False, None, self.d["tcp"], v6=True)

    def tcp_down6(self, cfg):
        return self.iperf(True, None, self.d["tcp"], v6=True)

    def cpu1g(self, cfg):
        return self.iperf(False, "1G", self.d["cpu1g"])

    def crr(self, cfg):
        t, tl = self.topo, self.opts.tools
        a = self.probe.sample()
        r = run(nsx(t.ns["g"], ["taskset", "-c", str(PEER_CPU), f"{tl}/kvx-net", "crr-client",
                                "--dst", SERVER_IP, "--port", str(CRR_PORT), "--seconds",
                                str(self.d["crr"]), "--parallel", "16"]), timeout=60)
        b = self.probe.sample()
        d = Probe.delta(a, b)
        d.update(json.loads(r))
        d["host_us_per_conn"] = (d["host_cpu_s"] * 1e6 / d["connections"]) if d["connections"] else None
        return d

    @contextlib.contextmanager
    def one_cpu(self, cfg):
        """The churn rows' layout: every thread on one CPU.  The host's NAPI
        threads (and kvmxdp's daemon, whose GC is part of its cost) join
        the far ends on PEER_CPU for the measurement, so that a connection's
        whole cost, NAT included, is paid from one CPU's time: a NAT that
        costs more per connection then gets fewer of them.  In the other
        rows' layout (the host on a CPU of its own) the far ends saturate
        CPU 0 while the host idles about half the time, and the connection
        rate is then CPU 0's: it pays for every wake-up of the idle host's
        threads (an IPI, a hypercall in this VM), and a host that takes
        less per packet sleeps more and costs more wake-ups (kvmxdp: 0.72
        per connection against iptables' 0.44-0.50, bench/RESULTS.md), so
        that rate says more about the wake-ups than about the NAT.
        churn_split keeps that layout's figure."""
        t = self.topo
        daemon = getattr(cfg, "daemon", None)
        tids = list(t.host_threads)
        if daemon:
            tids += [int(x) for x in os.listdir(f"/proc/{daemon.pid}/task")]
        saved = {tid: os.sched_getaffinity(tid) for tid in tids}
        try:
            for tid in tids:
                os.sched_setaffinity(tid, {PEER_CPU})
            yield
        finally:
            # Restored or the run fails: a later row must not measure in
            # the wrong layout unnoticed.
            for tid, cpus in saved.items():
                try:
                    os.sched_setaffinity(tid, cpus)
                except ProcessLookupError:
                    pass  # a daemon thread that ended meanwhile

    def churn6(self, cfg):
        """churn over IPv6: NAT66 (kvmxdp-tc) against ip6tables'
        MASQUERADE, relay against plain forwarding; the same client, closing,
        layout and drop check as churn."""
        return self.churn(cfg, v6=True)

    def churn_split(self, cfg):
        """churn with the host on its own CPU (the other rows' layout): the
        far ends' CPU decides the rate there, not the NAT (one_cpu)."""
        return self.churn(cfg, split=True)

    def churn(self, cfg, v6=False, split=False):
        """Sustained connection churn: crr's connections (no data) for far
        longer, 64 at once, so that the guest goes through its whole
        ephemeral range (28232 source ports, each a new NAT endpoint the
        first time) and well past the 4536 ports of kvmxdp's old default
        range (61000-65535, where such a run ended in DROP_PORTS_EXHAUSTED).
        Closed as real connections are, with FIN from both sides (the
        server first, `--close fin`), not with crr's RST: both NATs then
        track every connection through FIN_WAIT to TIME_WAIT, and the
        server's TIME_WAIT meets the next connection from the same
        external port.  The same client, server and closing for every
        configuration, each with its defaults; for kvmxdp the drop
        counters (`status --json`, DROP_*) over the run are reported too
        and must stay 0.  Every thread on one CPU (one_cpu) unless split."""
        t, tl = self.topo, self.opts.tools
        kvx = isinstance(cfg, KvmxdpConfig)
        before = cfg.stats() if kvx else {}
        with contextlib.nullcontext() if split else self.one_cpu(cfg):
            a = self.probe.sample()
            r = run(nsx(t.ns["g"], ["taskset", "-c", str(PEER_CPU), f"{tl}/kvx-net",
                                    "crr-client", "--dst", SERVER_IP6 if v6 else SERVER_IP,
                                    "--port", str(CRR6_PORT if v6 else CRR_PORT), "--seconds",
                                    str(self.d["churn"]), "--parallel", "64",
                                    "--close", "fin"]),
                    timeout=self.d["churn"] + 60)
            b = self.probe.sample()
        d = Probe.delta(a, b)
        d.update(json.loads(r))
        d["host_us_per_conn"] = (d["host_cpu_s"] * 1e6 / d["connections"]) if d["connections"] else None
        # Split: the far ends (client, server, their NAPI threads) share
        # CPU 0 and saturate it first (CPU 1, the host, stays about half
        # idle): each time CPU 0 has to wake the idle host is its cost.
        d["host_ipis_per_conn"] = (d["host_ipis"] / d["connections"]) if d["connections"] else None
        if kvx:
            nat_drops(d, before, cfg.stats())
        return d

    def churn_all(self, cfg):
        """churn from every guest at once: the first guest and the EXTRA_GUESTS
        others each run crr's client with 16 connects in flight (64 in all,
        as churn), FIN closes, for the same time; their connections are
        summed.  Per-guest limits (kvmxdp's default port limit, 7/8 of the
        pool) must not cost the guests together anything: for kvmxdp the
        drop counters over the run must stay 0 here too.  Every thread on
        one CPU, as churn (one_cpu)."""
        t, tl = self.topo, self.opts.tools
        kvx = isinstance(cfg, KvmxdpConfig)
        before = cfg.stats() if kvx else {}
        secs = self.d["churn"]
        with self.one_cpu(cfg):
            a = self.probe.sample()
            procs = [subprocess.Popen(
                nsx(t.ns[g], ["taskset", "-c", str(PEER_CPU), f"{tl}/kvx-net", "crr-client",
                              "--dst", SERVER_IP, "--port", str(CRR_PORT), "--seconds",
                              str(secs), "--parallel", "16", "--close", "fin"]),
                stdout=subprocess.PIPE, text=True) for g in ["g"] + t.extra]
            outs = []
            for p in procs:
                out, _ = p.communicate(timeout=secs + 60)
                if p.returncode != 0:
                    raise RuntimeError(f"crr-client exited {p.returncode}")
                outs.append(json.loads(out))
            b = self.probe.sample()
        d = Probe.delta(a, b)
        for k in ("connections", "failed", "slow"):
            d[k] = sum(o.get(k) or 0 for o in outs)
        d["cps"] = sum(o.get("cps") or 0 for o in outs)
        d["guests"] = len(outs)
        d["per_guest_cps"] = [o.get("cps") for o in outs]
        d["host_us_per_conn"] = (d["host_cpu_s"] * 1e6 / d["connections"]) if d["connections"] else None
        if kvx:
            nat_drops(d, before, cfg.stats())
        return d

    def rr(self, cfg):
        """One request in flight, so the threads on the path are idle between
        packets: they run SCHED_FIFO for this workload only, so that the
        figure is the datapath's latency, not the wake-up delay behind other
        work on a shared CPU (threaded NAPI: four thread wake-ups per round
        trip)."""
        t, tl = self.topo, self.opts.tools
        threads = [p for ps in t.napi_threads().values() for p in ps]
        try:
            for p in threads:
                run(["chrt", "-f", "-p", "10", str(p)])
            a = self.probe.sample()
            r = run(nsx(t.ns["g"], ["chrt", "-f", "10", "taskset", "-c", str(PEER_CPU),
                                    f"{tl}/kvx-net", "rr-client", "--dst", SERVER_IP, "--port",
                                    str(RR_PORT), "--seconds", str(self.d["rr"])]), timeout=60)
            b = self.probe.sample()
        finally:
            for p in threads:
                run(["chrt", "-o", "-p", "0", str(p)], check=False)
                run(["renice", "-n", "-5", "-p", str(p)], check=False)
        d = Probe.delta(a, b)
        d.update(json.loads(r))
        return d


def nat_drops(d, before, after):
    """kvmxdp's drop counters (status --json, every DROP_*) over a run, into
    sample d: their sum and the reasons that moved."""
    d["nat_drops"] = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("DROP_"))
    d["nat_drop_reasons"] = {k: v - before.get(k, 0) for k, v in after.items()
                             if k.startswith("DROP_") and v != before.get(k, 0)}


WORKLOADS = ["udp", "tcp_up", "tcp_down", "cpu1g", "crr", "rr", "churn", "churn_all",
             "churn_split", "tcp_up6", "tcp_down6", "churn6"]
# The headline metric of each workload: (key, unit, higher is better)
METRIC = {"udp": ("mpps", "Mpps", True), "tcp_up": ("gbps", "Gbit/s", True),
          "tcp_down": ("gbps", "Gbit/s", True),
          "cpu1g": ("host_cpu_s_per_gb", "host CPU s/GB", False),
          "crr": ("cps", "conn/s", True), "rr": ("p99_us", "p99 us", False),
          "churn": ("cps", "conn/s", True), "churn_all": ("cps", "conn/s", True),
          "churn_split": ("cps", "conn/s", True),
          "tcp_up6": ("gbps", "Gbit/s", True), "tcp_down6": ("gbps", "Gbit/s", True),
          "churn6": ("cps", "conn/s", True)}
SECONDARY = {"udp": [("mpps_per_core", "Mpps per host core"), ("host_share", "host kthread CPU share"),
                     ("cpu1_busy", "CPU1 busy"), ("gen_mpps", "generator Mpps")],
             "tcp_up": [("gbps_per_core", "Gbit/s per host core"), ("host_share", "host CPU share"),
                        ("retransmits", "retransmits")],
             "tcp_down": [("gbps_per_core", "Gbit/s per host core"),
                          ("host_share", "host CPU share"), ("retransmits", "retransmits")],
             "cpu1g": [("gbps", "Gbit/s"), ("cpu1_busy", "CPU1 busy")],
             "crr": [("host_us_per_conn", "host CPU us/conn"), ("failed", "failed"),
                     ("slow", ">0.9 s (SYN lost)")],
             "rr": [("p50_us", "p50 us"), ("lost", "lost")],
             "churn": [("connections", "connections"), ("failed", "failed"),
                       ("slow", ">0.9 s (SYN lost)"), ("nat_drops", "kvmxdp drops"),
                       ("cpu0_busy", "CPU0 busy (far ends)"), ("cpu1_busy", "CPU1 busy (host)"),
                       ("host_ipis_per_conn", "host wakeups (IPIs)/conn"),
                       ("host_us_per_conn", "host CPU us/conn")],
             "churn_all": [("connections", "connections"), ("failed", "failed"),
                           ("slow", ">0.9 s (SYN lost)"), ("nat_drops", "kvmxdp drops"),
                           ("cpu0_busy", "CPU0 busy (far ends)"), ("cpu1_busy", "CPU1 busy (host)"),
                           ("host_ipis_per_conn", "host wakeups (IPIs)/conn"),
                           ("host_us_per_conn", "host CPU us/conn")],
             "tcp_up6": [("gbps_per_core", "Gbit/s per host core"), ("host_share", "host CPU share"),
                         ("retransmits", "retransmits")],
             "tcp_down6": [("gbps_per_core", "Gbit/s per host core"),
                           ("host_share", "host CPU share"), ("retransmits", "retransmits")]}
SECONDARY["churn_split"] = list(SECONDARY["churn"])
# One CPU: CPU 1 busy stays as the check that nothing of the row ran there.
for w in ("churn", "churn_all"):
    SECONDARY[w] = [x for x in SECONDARY[w] if x[0] != "host_ipis_per_conn"]
    SECONDARY[w] = [(k, "CPU0 busy (all)" if k == "cpu0_busy" else
                     "CPU1 busy (must stay ~0)" if k == "cpu1_busy" else v)
                    for k, v in SECONDARY[w]]
SECONDARY["churn6"] = SECONDARY["churn"]

# ---------------------------------------------------------------- reporting


def summarize(samples, key):
    xs = [s[key] for s in samples if s.get(key) is not None]
    if not xs:
        return None
    return {"median": median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.{nd}g}"
    return str(v)


def targets(summary):
    """kvmxdp's performance goals, as ratios of medians from this run."""
    def m(cfg, wl, key=None):
        key = key or METRIC[wl][0]
        s = summary.get(cfg, {}).get(wl, {}).get(key)
        return s["median"] if s else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    rows = []

    def add(name, value, ok_fn, goal, note=""):
        ok = None if value is None else bool(ok_fn(value))
        rows.append({"target": name, "goal": goal, "value": value, "met": ok, "note": note})

    k = "kvmxdp-tc"
    add("UDP 60B rate: kvmxdp-tc / iptables", ratio(m(k, "udp"), m("iptables", "udp")),
        lambda r: r >= 1.8, ">= 1.8")
    add("UDP 60B rate: kvmxdp-tc / minimal-tc", ratio(m(k, "udp"), m("minimal-tc", "udp")),
        lambda r: r >= 0.9, ">= 0.9")
    add("UDP per host core: kvmxdp-tc / iptables",
        ratio(m(k, "udp", "mpps_per_core"), m("iptables", "udp", "mpps_per_core")),
        lambda r: r >= 1.8, ">= 1.8", "CPU-normalised (shared machine)")
    add("UDP per host core: kvmxdp-tc / minimal-tc",
        ratio(m(k, "udp", "mpps_per_core"), m("minimal-tc", "udp", "mpps_per_core")),
        lambda r: r >= 0.9, ">= 0.9", "CPU-normalised (shared machine)")
    add("TCP bulk guest->server: kvmxdp-tc / iptables",
        ratio(m(k, "tcp_up"), m("iptables", "tcp_up")), lambda r: r >= 1.2, ">= 1.2")
    add("TCP bulk server->guest: kvmxdp-tc / iptables",
        ratio(m(k, "tcp_down"), m("iptables", "tcp_down")), lambda r: r >= 1.2, ">= 1.2")
    add("TCP bulk guest->server per host core: kvmxdp-tc / iptables",
        ratio(m(k, "tcp_up", "gbps_per_core"), m("iptables", "tcp_up", "gbps_per_core")),
        lambda r: r >= 1.2, ">= 1.2", "CPU-normalised")
    add("TCP bulk server->guest per host core: kvmxdp-tc / iptables",
        ratio(m(k, "tcp_down", "gbps_per_core"), m("iptables", "tcp_down", "gbps_per_core")),
        lambda r: r >= 1.2, ">= 1.2", "CPU-normalised")
    add("host CPU per GB at 1 Gbit/s: kvmxdp-tc / iptables",
        ratio(m(k, "cpu1g"), m("iptables", "cpu1g")), lambda r: r <= 0.7, "<= 0.7")
    add("new TCP connections/s: kvmxdp-tc / iptables", ratio(m(k, "crr"), m("iptables", "crr")),
        lambda r: r >= 1.5, ">= 1.5")
    add("host CPU per new connection: kvmxdp-tc / iptables",
        ratio(m(k, "crr", "host_us_per_conn"), m("iptables", "crr", "host_us_per_conn")),
        lambda r: r <= 1 / 1.5, "<= 0.67", "cost view of the 1.5x target")
    add("latency p99: kvmxdp-tc / iptables", ratio(m(k, "rr"), m("iptables", "rr")),
        lambda r: r <= 1.0, "<= 1.0")
    x = "kvmxdp-xdp"
    add("UDP 60B rate: kvmxdp-xdp / iptables", ratio(m(x, "udp"), m("iptables", "udp")),
        lambda r: r >= 6, ">= 6")
    add("UDP 60B rate: kvmxdp-xdp / bare-xdp", ratio(m(x, "udp"), m("bare-xdp", "udp")),
        lambda r: r >= 0.85, ">= 0.85")
    add("TCP bulk guest->server: kvmxdp-xdp / iptables",
        ratio(m(x, "tcp_up"), m("iptables", "tcp_up")), lambda r: r >= 1.2, ">= 1.2",
        "veth guest: XDP on its port strips the guest's GSO")
    add("TCP bulk server->guest: kvmxdp-xdp / iptables",
        ratio(m(x, "tcp_down"), m("iptables", "tcp_down")), lambda r: r >= 1.2, ">= 1.2")
    # Sustained churn with default options (every thread on one CPU,
    # Bench.one_cpu): at least iptables' rate, from one guest and from all.
    for wl, what in (("churn", "connection churn, one guest"),
                     ("churn_all", "connection churn, four guests")):
        add(f"{what}: kvmxdp-tc / iptables", ratio(m(k, wl), m("iptables", wl)),
            lambda r: r >= 1.0, ">= 1.0", "default options, one CPU")
    # The cost behind it, one guest only: the other guests' ports have no
    # NAPI thread, their egress runs in softirq on the client's time,
    # uncounted as the host's.
    add("host CPU per connection, churn one guest: kvmxdp-tc / iptables",
        ratio(m(k, "churn", "host_us_per_conn"), m("iptables", "churn", "host_us_per_conn")),
        lambda r: r <= 1.0, "<= 1.0", "cost view; kvmxdp's daemon counted")
    # IPv6: NAT66 (kvmxdp-tc) against ip6tables MASQUERADE (the iptables
    # configuration), relay against plain forwarding: not slower than the
    # kernel doing the same job.
    for wl, what in (("tcp_up6", "IPv6 TCP bulk guest->server"),
                     ("tcp_down6", "IPv6 TCP bulk server->guest"),
                     ("churn6", "IPv6 connection churn")):
        add(f"{what}: kvmxdp-tc (NAT66) / ip6tables", ratio(m(k, wl), m("iptables", wl)),
            lambda r: r >= 1.0, ">= 1.0")
        add(f"{what}: kvmxdp-relay / routing", ratio(m("kvmxdp-relay", wl), m("routing", wl)),
            lambda r: r >= 1.0, ">= 1.0")
    b = "kvmxdp-tc-base"
    for wl, what, better in (("udp", "UDP 60B rate", "higher"),
                             ("tcp_up", "TCP bulk guest->server", "higher"),
                             ("tcp_down", "TCP bulk server->guest", "higher"),
                             ("crr", "new TCP connections/s", "higher"),
                             ("rr", "latency p99", "lower")):
        v = ratio(m(k, wl), m(b, wl))
        if v is None:
            continue
        # Not slower than the base build, within the run's noise (5 %).
        if better == "higher":
            add(f"{what}: kvmxdp-tc / kvmxdp-tc-base", v, lambda r: r >= 0.95, ">= 0.95",
                "before/after: this build against --kvmxdp-base")
        else:
            add(f"{what}: kvmxdp-tc / kvmxdp-tc-base", v, lambda r: r <= 1.05, "<= 1.05",
                "before/after: this build against --kvmxdp-base")
    return rows


def xdp_share(stats):
    """Of the packets the XDP programs looked at as NAT candidates, the share
    they handed to TC, and why (kvx_stats XDP_* reasons)."""
    if not stats:
        return None
    done = stats.get("XDP_XLATE_OUT", 0) + stats.get("XDP_XLATE_IN", 0)
    why = {r: stats.get(r, 0) for r in ("XDP_TO_TC_CSUM", "XDP_TO_TC_DEV", "XDP_TO_TC")}
    total = done + sum(why.values())
    if not total:
        return None
    return {"translated": done, "to_tc": sum(why.values()), "share_to_tc": sum(why.values()) / total,
            **why}


def ct_target(ct):
    base = ct.get("1k", {}).get("mpps")
    big = ct.get("1M", {}).get("mpps")
    if not base or not big:
        return None
    r = big["median"] / base["median"]
    return {"target": "UDP rate, 64k flows in a 1M table / 1k flows", "goal": ">= 0.9",
            "value": r, "met": r >= 0.9, "note": ""}


def write_outputs(res, opts):
    stamp = res["stamp"]
    out = opts.out
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, stamp)
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    chart = make_chart(res, base + ".png")
    md = render_md(res, chart and os.path.basename(chart))
    with open(base + ".md", "w") as f:
        f.write(md)
    if not opts.no_results_md and not any("interrupted" in e for e in res["errors"]):
        rel = os.path.relpath(out, BENCH_DIR)
        md2 = render_md(res, chart and os.path.join(rel, os.path.basename(chart)), top=True)
        dst = os.path.join(BENCH_DIR, "RESULTS.md")
        kept = ""
        try:
            with open(dst) as f:
                old = f.read()
            if ANALYSIS_MARK in old:
                kept = old[old.index(ANALYSIS_MARK):]
        except OSError:
            pass
        with open(dst, "w") as f:
            f.write(md2 + "\n" + (kept or ANALYSIS_MARK + "\n"))
    log(f"results: {base}.json {base}.md {chart or '(no chart)'}")


CHART_ROWS = [
    [("udp", "mpps", "Mpps", True), ("tcp_up", "gbps", "Gbit/s", True),
     ("tcp_down", "gbps", "Gbit/s", True), ("cpu1g", "host_cpu_s_per_gb", "host CPU s/GB", False),
     ("crr", "cps", "conn/s", True), ("rr", "p99_us", "p99 us", False)],
    [("udp", "mpps_per_core", "Mpps per host core", True),
     ("tcp_up", "gbps_per_core", "Gbit/s per host core", True),
     ("tcp_down", "gbps_per_core", "Gbit/s per host core", True),
     ("cpu1g", "gbps", "Gbit/s achieved", True),
     ("crr", "host_us_per_conn", "host CPU us/conn", False), ("rr", "p50_us", "p50 us", False)],
]


# Text after this line in bench/RESULTS.md is hand-written and kept across runs.
ANALYSIS_MARK = "<!-- analysis: hand-written, kept when run.sh rewrites this file -->"


def make_chart(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("python3-matplotlib not installed: no chart")
        return None
    except Exception as ex:  # e.g. half-installed package
        log(f"matplotlib unusable ({ex}): no chart")
        return None
    ncol = len(CHART_ROWS[0])
    fig, axes = plt.subplots(len(CHART_ROWS), ncol, figsize=(3.0 * ncol, 7.6))
    drawn = False
    for r, row in enumerate(CHART_ROWS):
        for ax, (w, key, unit, hib) in zip(axes[r], row):
            names, med, lo, hi = [], [], [], []
            for c in res["configs"]:
                s = res["summary"].get(c, {}).get(w, {}).get(key)
                if s:
                    names.append(c)
                    med.append(s["median"])
                    lo.append(s["median"] - s["min"])
                    hi.append(s["max"] - s["median"])
            if not names:
                ax.set_visible(False)
                continue
            drawn = True
            ax.bar(range(len(names)), med, yerr=[lo, hi], capsize=3,
                   color=["#d62728" if n.startswith("kvmxdp") else
                          "#1f77b4" if n in ("minimal-tc", "bare-xdp") else "#7f7f7f"
                          for n in names])
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
            ax.set_title(f"{w}: {unit}\n({'higher' if hib else 'lower'} is better)", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
    if not drawn:
        plt.close(fig)
        return None
    fig.suptitle(f"kvmxdp bench {res['stamp']}: median, bars min-max of {res['reps']} "
                 f"alternating repetitions (top: raw, bottom: per host CPU)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render_md(res, chart, top=False):
    L = []
    if top:
        L += ["# kvmxdp benchmark: latest results", "",
              "Generated by `bench/run.sh` (method: [bench/README.md](README.md)). "
              "Older runs: `bench/results/`.", ""]
    else:
        L += [f"# kvmxdp benchmark run {res['stamp']}", ""]
    e = res["env"]
    nerr = len(res["errors"])
    incomplete = f" (incomplete: {nerr} errors, see below)" if nerr else ""
    L += [f"- command: `{res['command']}`",
          f"- kernel {e['kernel']}, {e['cpus']} CPUs ({e['cpu_model']}), load average at start "
          f"{e['loadavg']}",
          f"- repetitions: {res['reps']} per configuration, alternating (order rotated per rep); "
          f"figures are median [min-max]",
          f"- kvmxdp driver: {res.get('kvmxdp_driver')}",
          *([f"- base build (kvmxdp-tc-base): {res['kvmxdp_base_binary']['path']} (built "
             f"{res['kvmxdp_base_binary']['mtime']})"] if res.get("kvmxdp_base_binary") else []),
          f"- checksum errors (InCsumErrors, guest + server): **{res['csum_errors_total']}** "
          f"-> run {'PASSED' if res['passed'] else 'FAILED'}{incomplete}",
          f"- root namespace untouched (iptables-save/nft ruleset/ip_forward before == after): "
          f"{res['root_ns_unchanged']}", ""]
    if res.get("unavailable"):
        L += ["Configurations not measured:", ""]
        for c, why in res["unavailable"].items():
            L.append(f"- `{c}`: {why}")
        L.append("")
    L += ["## Results", ""]
    hdr = "| configuration | " + " | ".join(f"{w} ({METRIC[w][1]})" for w in WORKLOADS) + " |"
    L += [hdr, "|" + "---|" * (len(WORKLOADS) + 1)]
    for c in res["configs"] + list(res.get("unavailable", {})):
        cells = []
        for w in WORKLOADS:
            s = res["summary"].get(c, {}).get(w, {}).get(METRIC[w][0])
            if c in res.get("unavailable", {}):
                cells.append("n/a")
            elif s:
                cells.append(f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]")
            else:
                cells.append("-")
        L.append(f"| {c} | " + " | ".join(cells) + " |")
    L.append("")
    if chart:
        L += [f"![chart]({chart})", ""]
    L += ["## Targets (ratios of medians, same run)", "", "| target | goal | measured | met |",
          "|---|---|---|---|"]
    for t in res["targets"]:
        met = {True: "yes", False: "**NO**", None: "n/a"}[t["met"]]
        note = f" ({t['note']})" if t.get("note") else ""
        L.append(f"| {t['target']}{note} | {t['goal']} | {fmt(t['value'])} | {met} |")
    L.append("")
    L += ["## Secondary figures (medians)", ""]
    for w in WORKLOADS:
        rows = [(c, res["summary"].get(c, {}).get(w)) for c in res["configs"]]
        rows = [(c, s) for c, s in rows if s]
        if not rows:
            continue
        keys = SECONDARY[w]
        L += [f"**{w}**", "", "| configuration | " + " | ".join(k[1] for k in keys) + " |",
              "|" + "---|" * (len(keys) + 1)]
        for c, s in rows:
            L.append(f"| {c} | " + " | ".join(fmt(s.get(k[0], {}).get("median") if s.get(k[0])
                                                  else None) for k in keys) + " |")
        L.append("")
    if res.get("ct"):
        L += ["## Conntrack table scaling (kvmxdp-tc, UDP 60B, frames spread over the active "
              "flows)", "",
              "| point | ct max_entries | filler entries | active flows | Mpps | Mpps per host core |"
              " kvx_ct memlock | kvx_bind memlock |", "|---|---|---|---|---|---|---|---|"]
        for p, v in res["ct"].items():
            s = v.get("mpps")
            sc = v.get("mpps_per_core")
            mi = v.get("maps", {})
            L.append(f"| {p} | {v['ct_size']} | {v['fill']} | {v['flows']} | "
                     f"{fmt(s['median']) if s else '-'} "
                     f"[{fmt(s['min']) if s else '-'}-{fmt(s['max']) if s else '-'}] | "
                     f"{fmt(sc['median']) if sc else '-'} | "
                     f"{mi.get('kvx_ct', {}).get('bytes_memlock', '-')} | "
                     f"{mi.get('kvx_bind', {}).get('bytes_memlock', '-')} |")
        L.append("")
    L += ["## BPF programs (bpftool prog show)", "",
          "| config | program | verified insns | xlated bytes | jited bytes |", "|---|---|---|---|---|"]
    for c, inf in res.get("config_info", {}).items():
        for name, p in (inf.get("programs") or {}).items():
            L.append(f"| {c} | {name} | {p.get('verified_insns', '-')} | {p.get('bytes_xlated')} |"
                     f" {p.get('bytes_jited')} |")
    L.append("")
    for c, st in (res.get("kvx_stats") or {}).items():
        xs = xdp_share(st) if isinstance(st, dict) else None
        if xs:
            L += [f"XDP hand-off ({c}): {xs['translated']} packets translated by XDP, "
                  f"{xs['to_tc']} handed to TC ({100 * xs['share_to_tc']:.2f}%: checksum offloaded "
                  f"{xs['XDP_TO_TC_CSUM']}, device {xs['XDP_TO_TC_DEV']}, class {xs['XDP_TO_TC']})", ""]
    if res.get("kvx_stats"):
        L += ["## kvmxdp verdict counters at the end of each attach (summed over reps)", "",
              "```", json.dumps(res["kvx_stats"], indent=1, sort_keys=True), "```", ""]
    ch = res.get("checks")
    if ch:
        L += ["## Measurement checks (udp)", "",
              f"- samples: {ch['udp_samples']}; generator >= 3x the sink rate in all but "
              f"{len(ch['generator_not_3x_sink'])} "
              f"{'(' + '; '.join(ch['generator_not_3x_sink']) + ')' if ch['generator_not_3x_sink'] else ''}",
              f"- CPU 1 >= 90% busy in all but {len(ch['cpu1_below_90pct'])} "
              f"{'(' + '; '.join(ch['cpu1_below_90pct']) + ')' if ch['cpu1_below_90pct'] else ''}",
              f"- median share of CPU 1 that the host's napi threads got: "
              f"{fmt(ch['host_share_median'])} (the rest went to other work on this machine; "
              f"'per host core' figures divide by it)", ""]
    if res.get("profiles"):
        L += ["## Profiles of the host napi threads (udp, rep 1, perf, top symbols)", ""]
        for c, txt in res["profiles"].items():
            L += [f"**{c}**", "", "```", txt.rstrip(), "```", ""]
    if res.get("errors"):
        L += ["## Errors during the run", ""] + [f"- {x}" for x in res["errors"]] + [""]
    if res.get("notes"):
        L += ["## Notes", ""] + [f"- {x}" for x in res["notes"]] + [""]
    return "\n".join(L)


def root_ns_state():
    st = {}
    st["iptables"] = run(["iptables-save"], check=False)
    st["nft"] = run(["nft", "list", "ruleset"], check=False)
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        st["ip_forward"] = f.read()
    return st


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", required=True, help="directory with kvx-gen, kvx-net, kvx-ctfill")
    ap.add_argument("--quick", action="store_true", help="3 repetitions, short durations")
    ap.add_argument("--reps", type=int, help="repetitions per configuration (default 5, quick 3)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS + ["ct"]),
                    help="comma list of: " + ",".join(WORKLOADS + ["ct"]))
    ap.add_argument("--configs", default=None,
                    help="comma list of: " + ",".join(c.name for c in CONFIGS) +
                    " (default: all but iptables-padded; kvmxdp-tc-base only with "
                    "--kvmxdp-base)")
    ap.add_argument("--kvmxdp", default=None, help="kvmxdp binary (default: build/kvmxdp, "
                    "the README's build)")
    ap.add_argument("--kvmxdp-base", default=None, metavar="PATH",
                    help="another kvmxdp build measured in the same run as configuration "
                    "kvmxdp-tc-base (TC, IPv4 workloads), for a before/after ratio")
    ap.add_argument("--ct-points", default="1k,100k,1M")
    ap.add_argument("--profile", action="store_true",
                    help="perf profile of the host threads in each configuration's first udp")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"))
    ap.add_argument("--no-results-md", action="store_true", help="do not rewrite bench/RESULTS.md")
    ap.add_argument("--render", metavar="JSON",
                    help="no measurement: rewrite the .md/.png of a results JSON (and RESULTS.md)")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.render:
        with open(opts.render) as f:
            res = json.load(f)
        opts.out = os.path.dirname(os.path.abspath(opts.render))
        write_outputs(res, opts)
        return 0
    if os.geteuid() != 0:
        sys.exit("kvxbench: error: must run as root (namespaces, BPF)")
    if opts.kvmxdp is None and os.access(os.path.join(REPO, "build", "kvmxdp"), os.X_OK):
        opts.kvmxdp = os.path.join(REPO, "build", "kvmxdp")
    reps = opts.reps or (3 if opts.quick else 5)
    wls = [w for w in opts.workloads.split(",") if w]
    for w in wls:
        if w not in WORKLOADS + ["ct"]:
            sys.exit(f"kvxbench: error: unknown workload '{w}'")
    if opts.configs is None:
        # iptables-padded is a diagnostic, asked for by name.
        opts.configs = ",".join(c.name for c in CONFIGS
                                if (c is not KvmxdpBaseConfig or opts.kvmxdp_base) and
                                c is not IptablesPaddedConfig)
    cfg_names = [c for c in opts.configs.split(",") if c]
    for c in cfg_names:
        if c not in [k.name for k in CONFIGS]:
            sys.exit(f"kvxbench: error: unknown configuration '{c}'")

    global TOOLS
    TOOLS = opts.tools
    root_before = root_ns_state()
    topo = Topology(opts.tools)
    stop = {"sig": None}

    def on_sig(sig, frame):
        stop["sig"] = sig
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sig)
    signal.signal(signal.SIGINT, on_sig)
    now = datetime.datetime.now(datetime.timezone.utc)
    res = {"stamp": now.strftime("%Y-%m-%dT%H%MZ"), "reps": reps, "quick": opts.quick,
           "command": opts.command or " ".join(sys.argv), "configs": [], "unavailable": {},
           "samples": {}, "summary": {}, "config_info": {}, "errors": [], "notes": [],
           "kvx_stats": {}, "ct": {}, "profiles": {}}
    with open("/proc/loadavg") as f:
        la = " ".join(f.read().split()[:3])
    cpu_model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    res["env"] = {"kernel": os.uname().release, "cpus": os.cpu_count(), "cpu_model": cpu_model,
                  "loadavg": la}
    t_start = time.monotonic()
    try:
        log(f"topology: netns {', '.join(topo.ns.values())}")
        topo.up()
        if opts.kvmxdp:
            # A private copy: the binary in the build tree may be rebuilt
            # while the benchmark runs; every attach must use the same one.
            snap = os.path.join(topo.work, "kvmxdp")
            snapshot_binary(opts.kvmxdp, snap)
            res["kvmxdp_binary"] = {"path": opts.kvmxdp, "mtime": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(opts.kvmxdp)))}
            opts.kvmxdp = snap
        if opts.kvmxdp_base:
            snap = os.path.join(topo.work, "kvmxdp-base")
            src = opts.kvmxdp_base
            snapshot_binary(src, snap)
            res["kvmxdp_base_binary"] = {"path": src, "mtime": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(src)))}
            opts.kvmxdp_base = snap
        bench = Bench(topo, opts)
        configs = []
        for cls in CONFIGS:
            if cls.name not in cfg_names:
                continue
            c = cls(topo, opts)
            ok, why = c.available()
            if ok:
                configs.append(c)
            else:
                res["unavailable"][c.name] = why
                log(f"{c.name}: {why}")
        res["configs"] = [c.name for c in configs]
        kb = res.get("kvmxdp_binary")
        res["kvmxdp_driver"] = (f"CLI {kb['path']} (built {kb['mtime']})" if kb else
                                "none (no kvmxdp binary)")
        run_wls = [w for w in wls if w in WORKLOADS]
        for rep in range(reps):
            order = configs[rep % len(configs):] + configs[:rep % len(configs)] if configs else []
            for cfg in order:
                todo = [w for w in run_wls if cfg.supports(w)]
                if not todo:
                    continue
                log(f"rep {rep + 1}/{reps} {cfg.name}: {','.join(todo)}")
                topo.forget_connections()
                try:
                    cfg.setup()
                except Exception as ex:
                    res["errors"].append(f"rep {rep + 1} {cfg.name} setup: {ex}")
                    log(f"  setup failed: {ex}")
                    cfg.teardown()
                    continue
                try:
                    for w in todo:
                        perf_out = None
                        if opts.profile and w == "udp" and rep == 0 and shutil.which("perf"):
                            perf_out = os.path.join(topo.work, f"perf-{cfg.name}.data")
                            bench.profile_next = perf_out
                        try:
                            s = getattr(bench, w)(cfg)
                            if perf_out and os.path.exists(perf_out):
                                res["profiles"][cfg.name] = perf_top(perf_out)
                            bench.profile_next = None
                        except (KeyboardInterrupt, SystemExit):
                            raise
                        except Exception as ex:
                            res["errors"].append(f"rep {rep + 1} {cfg.name} {w}: {ex}")
                            log(f"  {w} failed: {ex}")
                            continue
                        s["rep"] = rep + 1
                        res["samples"].setdefault(cfg.name, {}).setdefault(w, []).append(s)
                        k = METRIC[w][0]
                        extra = ""
                        if w == "udp":
                            extra = (f" host share {fmt(s.get('host_share'))} "
                                     f"cpu1 {fmt(s.get('cpu1_busy'))} gen {fmt(s.get('gen_mpps'))}")
                        log(f"  {w}: {k}={fmt(s.get(k))}{extra}"
                            f"{' csum errors ' + str(s['csum_errors']) if s['csum_errors'] else ''}"
                            f"{' ERROR ' + str(s['error']) if s.get('error') else ''}")
                    res["config_info"][cfg.name] = cfg.info()
                finally:
                    cfg.teardown()
                    if isinstance(cfg, KvmxdpConfig):
                        agg = res["kvx_stats"].setdefault(cfg.name, {})
                        for k, v in cfg.last_stats.items():
                            agg[k] = agg.get(k, 0) + v
        if "ct" in wls:
            ct_phase(topo, bench, opts, res, reps, [c for c in configs if c.name == "kvmxdp-tc"])
    except KeyboardInterrupt:
        res["errors"].append(f"interrupted by signal {stop['sig']}")
        log("interrupted")
    finally:
        log("cleaning up")
        topo.down()
    res["root_ns_unchanged"] = root_ns_state() == root_before
    res["duration_s"] = round(time.monotonic() - t_start, 1)
    for c, per in res["samples"].items():
        res["summary"][c] = {}
        for w, ss in per.items():
            keys = {k for s in ss for k, v in s.items() if isinstance(v, (int, float))}
            res["summary"][c][w] = {k: summarize(ss, k) for k in sorted(keys)}
    res["csum_errors_total"] = sum(s.get("csum_errors", 0) for per in res["samples"].values()
                                   for ss in per.values() for s in ss) + \
        sum(s.get("csum_errors", 0) for p in res["ct"].values() for s in p.get("samples", []))
    res["targets"] = targets(res["summary"])
    udp_s = [(c, s) for c, per in res["samples"].items() for s in per.get("udp", [])]
    udp_s += [(f"ct-{p}", s) for p, v in res["ct"].items() for s in v.get("samples", [])]
    weak = [f"{c} rep {s['rep']}: sink {fmt(s['mpps'])} Mpps vs generator {fmt(s['gen_mpps'])}"
            for c, s in udp_s if s.get("gen_mpps") and s["gen_mpps"] < 3 * s["mpps"]]
    idle = [f"{c} rep {s['rep']}: CPU1 busy {fmt(s['cpu1_busy'])}"
            for c, s in udp_s if s.get("cpu1_busy") is not None and s["cpu1_busy"] < 0.9]
    res["checks"] = {
        "udp_samples": len(udp_s),
        "generator_not_3x_sink": weak,
        "cpu1_below_90pct": idle,
        "host_share_median": median([s["host_share"] for _, s in udp_s
                                     if s.get("host_share") is not None]),
    }
    ctt = ct_target(res["ct"])
    if ctt:
        res["targets"].append(ctt)
    res["passed"] = res["csum_errors_total"] == 0 and not any(
        "interrupted" in e for e in res["errors"])
    res["notes"].append(f"run took {res['duration_s']} s")
    res["notes"].append("iptables is Debian's iptables-nft (nf_tables backend with xt matches)")
    if getattr(topo, "br_netfilter", False):
        res["notes"].append("br_netfilter was loaded on this machine: bridge-nf-call-* set to 0 "
                            "in the bench's host netns")
    write_outputs(res, opts)
    if not res["passed"]:
        return 1
    return 3 if res["errors"] else 0  # 3: passed, but some measurements are missing


def perf_top(path, n=14):
    out = run(["perf", "report", "-i", path, "--stdio", "--sort", "sym", "--percent-limit", "1"],
              check=False, timeout=120)
    lines = [x for x in out.splitlines() if x.strip() and not x.startswith("#")]
    return "\n".join(lines[:n])


def ct_entries(cfg):
    return ((cfg.status() or {}).get("conntrack") or {}).get("entries")


def prewarm(topo, bench, cfg, flows, fill):
    """Creates the active flows before the measurement (the first packet of
    a flow is an insert, not the lookup this point measures): unmeasured
    generator passes until `kvmxdp status` counts them, or 4 passes."""
    n = None
    for _ in range(4):
        run(nsx(topo.ns["g"], [f"{bench.opts.tools}/kvx-gen", "gen", "--dev", topo.dev["ge"],
                               "--src-mac", MAC["ge"], "--dst-mac", MAC["br"], "--src", GUEST_IP,
                               "--dst", SERVER_IP, "--sport", "10000", "--dport", str(UDP_DPORT),
                               "--flows", str(flows), "--seconds", "1", "--cpu",
                               str(PEER_CPU)]), timeout=60)
        n = ct_entries(cfg)
        if n is None or n >= fill + flows * 0.99:
            break
    return n


def ct_phase(topo, bench, opts, res, reps, kv):
    if not kv:
        res["notes"].append("conntrack scaling skipped: kvmxdp-tc not available")
        return
    cfg = kv[0]
    points = {"1k": (65536, 1024, 0), "100k": (131072, 65536, 100000 - 65536),
              "1M": (1048576, 65536, 1000000 - 65536)}
    sel = [p for p in opts.ct_points.split(",") if p in points]
    for rep in range(reps):
        for p in sel[rep % len(sel):] + sel[:rep % len(sel)]:
            size, flows, fill = points[p]
            entry = res["ct"].setdefault(p, {"ct_size": size, "flows": flows, "fill": fill,
                                            "samples": []})
            log(f"ct rep {rep + 1}/{reps} point {p}: ct-size {size}, {flows} flows, fill {fill}")
            cfg.ct_size, cfg.bind_size = size, 65536
            # The point measures lookups at a fill level: the generator's
            # 65536 live flows stand for many guests' (at 100k they are
            # half the table, over one guest's default quota of a quarter).
            cfg.flow_quota = 0
            try:
                cfg.setup()
                if fill:
                    got = int(run([f"{opts.tools}/kvx-ctfill", os.path.join(cfg.pin_dir, "kvx_ct"),
                                   str(fill)], timeout=300).strip() or 0)
                    entry["filled"] = got
                entry["maps"] = cfg.map_info()
                if flows > 1024:
                    entry["entries_before"] = prewarm(topo, bench, cfg, flows, fill)
                s = bench.udp(cfg, flows=flows)
                s["rep"] = rep + 1
                entry["samples"].append(s)
                log(f"  udp: mpps={fmt(s['mpps'])} host share {fmt(s['host_share'])}")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as ex:
                res["errors"].append(f"ct rep {rep + 1} {p}: {ex}")
                log(f"  failed: {ex}")
            finally:
                cfg.teardown()
                agg = res["kvx_stats"].setdefault(f"ct-{p}", {})
                for k, v in cfg.last_stats.items():
                    agg[k] = agg.get(k, 0) + v
                cfg.ct_size = cfg.bind_size = cfg.flow_quota = None
    for p, v in res["ct"].items():
        v["mpps"] = summarize(v["samples"], "mpps")
        v["mpps_per_core"] = summarize(v["samples"], "mpps_per_core")


if __name__ == "__main__":
    sys.exit(main())
