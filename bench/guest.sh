#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/guest.sh: the real-guest row of the benchmark.  A Debian 12 guest
# (stock 6.1 kernel, QEMU TCG, virtio-net on a tap in the bridge, default
# offloads: partial checksums and TSO) downloads and uploads MB MiB through
# the host, alternating, in the same run, between the recipe's iptables
# MASQUERADE (kernel forwarding) and kvmxdp; ROUNDS boots per configuration.
# The guest times its own transfers (busybox wget / nc, /proc/uptime), every
# transfer is checked by sha256 and the checksum error counters of guest and
# server must stay 0.  Under TCG the guest's CPU is the bottleneck, so this row
# shows what a real virtio guest gets end to end, not the NAT's ceiling (the
# netns rows of bench/run.sh measure that).
#
# Topology and guest image: vm-tests/lib.sh and vm-tests/qemu/build-guest.sh
# (network namespaces only; nothing in the root namespace changes).
#
# Usage: sudo bench/guest.sh KVMXDP_BINARY [ROUNDS (default 3)] [MB (default 48)]
# Writes bench/results/<UTC stamp>-guest.{json,md}.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVX_TEST=guest_bench
guest_env=$(bash "$here/../vm-tests/qemu/build-guest.sh") || {
	echo "bench/guest.sh: error: cannot build the guest image" >&2
	exit 1
}
eval "$guest_env"
ROUNDS=${2:-3}
MB=${3:-48}
: "${KVX_TIMEOUT:=$((ROUNDS * 2 * 120 + 60))}"
# shellcheck source=../vm-tests/lib.sh
source "$here/../vm-tests/lib.sh"
kvx_init "${1:-}"
[[ -n $KVMXDP ]] || kvx_fatal "usage: bench/guest.sh KVMXDP_BINARY [ROUNDS] [MB]"
kvx_topology_up
kvx_http_server
dl_sha=$(kvx_random_file blob "$MB")
mkdir -p "$KVX_TMP/tftp"
head -c 4096 /dev/urandom >"$KVX_TMP/tftp/tblob"
kvx_bg "$KVX_TMP/tftp.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/qemu/tftp_server.py" \
	"$SRV_IP" 6969 "$KVX_TMP/tftp"
kvx_wait_file_contains 10 "$KVX_TMP/tftp.log" serving

# The recipe's rules, as bench/kvxbench.py's iptables configuration has them.
ipt_setup() {
	local r
	nsx "$NS_HOST" sysctl -qw net.ipv4.ip_forward=1
	while read -r r; do
		# shellcheck disable=SC2086 # one rule per line, words split on purpose
		nsx "$NS_HOST" iptables $r
	done <<EOF
-A FORWARD -i $BR -o $UP -s $SUBNET -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -j REJECT
-t nat -A POSTROUTING -s $SUBNET -d 224.0.0.0/24 -j RETURN
-t nat -A POSTROUTING -s $SUBNET -d 255.255.255.255/32 -j RETURN
-t nat -A POSTROUTING -s $SUBNET ! -d $SUBNET -o $UP -p tcp -j MASQUERADE --to-ports 1024-65535
-t nat -A POSTROUTING -s $SUBNET ! -d $SUBNET -o $UP -p udp -j MASQUERADE --to-ports 1024-65535
-t nat -A POSTROUTING -s $SUBNET ! -d $SUBNET -o $UP -j MASQUERADE
EOF
}
ipt_teardown() {
	nsx "$NS_HOST" iptables -F FORWARD
	nsx "$NS_HOST" iptables -t nat -F POSTROUTING
	nsx "$NS_HOST" sysctl -qw net.ipv4.ip_forward=0
}
kvx_setup() { kvx_attach_bg || kvx_fatal "cannot attach"; }
kvx_teardown_cfg() {
	kvx_daemon_stop
	kvx detach --bridge "$BR" >/dev/null
}

# boot N: one guest run on a new tap; prints "dl_mbit up_mbit".
boot() {
	local n=$1 tap=kt$1$KVX_ID con=$KVX_TMP/console.$1.log port=$((5200 + $1))
	ip -n "$NS_HOST" tuntap add dev "$tap" mode tap
	ip -n "$NS_HOST" link set "$tap" master "$BR"
	ip -n "$NS_HOST" link set "$tap" up
	kvx_bg "$KVX_TMP/upload.$n.log" ip netns exec "$NS_SRV" socat -u \
		"TCP-LISTEN:$port,bind=$SRV_IP,reuseaddr" "CREATE:$KVX_TMP/upload.$n"
	kvx_wait_tcp_listen 10 "$NS_SRV" "$port"
	kvx_qemu_guest "$con" "$tap" 512M 120 "virtio-net-pci,netdev=n0,mac=52:54:00:6b:76:30,romfile=" \
		"kvx.ip=192.168.122.30/24 kvx.gw=$GW_IP kvx.srv=$SRV_IP kvx.http=8080 kvx.file=blob kvx.up=$port kvx.mb=$MB kvx.tftp=6969 kvx.tfile=tblob" || true
	ip -n "$NS_HOST" link delete "$tap"
	v() { sed -n "s/^KVX $1=//p" "$con.txt" | tail -n1; }
	grep -qx 'KVX end' "$con.txt" || kvx_fatal "boot $n: the guest did not finish: $(tail -n 20 "$con.txt")"
	[[ $(v dl_sha) == "$dl_sha" ]] || kvx_fatal "boot $n: download corrupted or incomplete"
	[[ $(sha256sum "$KVX_TMP/upload.$n" | cut -d' ' -f1) == "$(v up_sha)" ]] ||
		kvx_fatal "boot $n: upload corrupted or incomplete"
	[[ $(v csum_errors) == "Tcp=0,Udp=0,Icmp=0" || $(v csum_errors) == "Icmp=0,Tcp=0,Udp=0" ]] ||
		kvx_fatal "boot $n: checksum errors in the guest: $(v csum_errors)"
	rm -f "$KVX_TMP/upload.$n"
	# Mbit/s from the guest's own clock (10 ms resolution)
	"$KVX_PY" -c 'import sys
mb, p, d, us, u = map(float, sys.argv[1:])
bits = mb * 1048576 * 8
print(f"{bits / (d - p) / 1e6:.0f} {bits / (u - us) / 1e6:.0f}")' \
		"$MB" "$(v t_ping)" "$(v t_dl)" "$(v t_up_start)" "$(v t_up)"
}

declare -A DL UP
n=0
for ((r = 1; r <= ROUNDS; r++)); do
	for cfg in iptables kvmxdp; do
		n=$((n + 1))
		kvx_step "round $r: $cfg"
		if [[ $cfg == iptables ]]; then ipt_setup; else kvx_setup; fi
		fwd0=$(kvx_fwd_datagrams)
		read -r d u < <(boot "$n")
		[[ -n ${u:-} ]] || kvx_fatal "round $r $cfg: no result"
		fwd=$(($(kvx_fwd_datagrams) - fwd0))
		# kvmxdp forwards, not the kernel (the iptables rounds are the kernel's)
		[[ $cfg == iptables ]] || assert_le "round $r: host IpForwDatagrams under kvmxdp" "$fwd" 10
		kvx_log "$cfg: download $d Mbit/s, upload $u Mbit/s"
		DL[$cfg]+="$d " UP[$cfg]+="$u "
		if [[ $cfg == iptables ]]; then ipt_teardown; else kvx_teardown_cfg; fi
	done
done
# kvx_finish's "the kernel forwarded (almost) nothing" spans the iptables
# rounds too: each kvmxdp round was checked on its own above.
KVX_FWD_BUDGET=1000000000

stamp=$(date -u +%Y-%m-%dT%H%MZ)
mkdir -p "$here/results"
"$KVX_PY" - "$here/results/$stamp-guest" "$MB" "$ROUNDS" "$KVX_GUEST_KVER" \
	"${DL[iptables]}" "${UP[iptables]}" "${DL[kvmxdp]}" "${UP[kvmxdp]}" <<'EOF'
import json, statistics, sys
out, mb, rounds, kver = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
vals = [list(map(float, a.split())) for a in sys.argv[5:9]]
rows = {"iptables": {"download": vals[0], "upload": vals[1]},
        "kvmxdp": {"download": vals[2], "upload": vals[3]}}
res = {"workload": "real guest (QEMU TCG, virtio-net, default offloads) TCP through the host",
       "guest_kernel": kver, "mib": mb, "rounds": rounds, "unit": "Mbit/s", "configs": {}}
md = [f"Real guest ({kver}, QEMU TCG, virtio-net with partial checksums + TSO), {mb} MiB each way,",
      f"{rounds} boots per configuration, alternating; median (min-max) Mbit/s, sha256-checked:", "",
      "| configuration | guest download | guest upload |", "|---|---|---|"]
for name, r in rows.items():
    c = {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
         for k, v in r.items()}
    res["configs"][name] = c
    md.append(f"| {name} | " + " | ".join(
        f"{c[k]['median']:.0f} ({c[k]['min']:.0f}-{c[k]['max']:.0f})" for k in ("download", "upload")) + " |")
ratio = {k: res["configs"]["kvmxdp"][k]["median"] / res["configs"]["iptables"][k]["median"]
         for k in ("download", "upload")}
res["ratio_kvmxdp_over_iptables"] = ratio
md += ["", f"kvmxdp / iptables: download {ratio['download']:.2f}x, upload {ratio['upload']:.2f}x"]
json.dump(res, open(out + ".json", "w"), indent=2)
open(out + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
kvx_finish
