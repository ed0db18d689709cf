#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# In-VM part of vm-tests/kernel61.sh (busybox sh, run by /init on Debian
# 12's 6.1 kernel).  Prints "KVX key=value" results; the host asserts them.
#
# 1. the BPF program tests (kvmxdp_bpf_test: the 6.1 verifier loads the
#    datapath, BPF_PROG_TEST_RUN on crafted frames);
# 2. a netns smoke test, the VM's root namespace playing the KVM host:
#
#   ns g    eth0 192.168.122.11/24 gw .1 --- vg --+ br0 192.168.122.1/24   (root ns)
#           httpd :80 (cgi-bin/addr)              up0 10.77.0.2/24 <- kvmxdp attach
#                                                   |
#   ns lan  lan0 10.77.0.1/24 (the LAN client), lan1 10.78.0.1/24, ip_forward=1
#                                                   |
#   ns srv  eth0 10.78.0.2/24 gw 10.78.0.1; httpd :8080 (blob, cgi-bin/addr),
#           nc upload sink :9000.  No route back to 192.168.122.0/24: without
#           the NAT nothing from a guest address gets an answer.
#
# iproute2 by absolute path: busybox's shell runs its own ip/tc applets.
IP=/usr/sbin/ip TC=/usr/sbin/tc
K="/usr/bin/kvmxdp --bpffs /bpf --config /etc/kvmxdp/kvmxdp.json"
say() { echo "KVX $*"; }
in_ns() { ns=$1; shift; $IP netns exec "$ns" "$@"; }
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
received() { sed -n 's/.* \([0-9]*\) packets received.*/\1/p'; }

# ------------------------------------------------------------- BPF tests
say "t_gtest_start=$(cut -d' ' -f1 /proc/uptime)"
# Under TCG a test's syscalls are emulated kernel work (one vCPU: 12+
# minutes for the suite): one gtest shard per vCPU (each process runs in a
# private netns of its own, so shards never meet).  KVX_EMULATED_CPU:
# the tests that bound a cost in time scale it for an emulated CPU.
cpus=$(grep -c '^processor' /proc/cpuinfo)
i=0 pids=""
while [ "$i" -lt "$cpus" ]; do
	KVX_EMULATED_CPU=1 GTEST_TOTAL_SHARDS=$cpus GTEST_SHARD_INDEX=$i \
		/usr/bin/kvmxdp_bpf_test --gtest_brief=1 >/tmp/gtest.$i.log 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
rc=0
for p in $pids; do wait "$p" || rc=$?; done
say "gtest_shards=$cpus"
say "gtest_rc=$rc"
say "t_gtest_end=$(cut -d' ' -f1 /proc/uptime)"
cat /tmp/gtest.*.log >/tmp/gtest.log
# the summary and every failure (with libbpf's verifier log if the load
# failed), prefixed so the host can cut them out
sed 's/^/KVXG /' /tmp/gtest.log | tail -n 400
say "gtest_passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' /tmp/gtest.log | awk '{ n += $1 } END { print n + 0 }')"
say "gtest_failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' /tmp/gtest.log)"
say "gtest_skipped=$(grep -c 'kvmxdp bpf tests: skipping' /tmp/gtest.log)"
# the names gtest's summary lists as skipped (GTEST_SKIP), comma separated
say "gtest_skipped_tests=$(sed -n 's/^\[  SKIPPED \] \([A-Za-z0-9_./]*\)$/\1/p' /tmp/gtest.log | sort | paste -sd, -)"

# ------------------------------------------------------------- topology
say "t_smoke_start=$(cut -d' ' -f1 /proc/uptime)"
for ns in g lan srv; do $IP netns add $ns && in_ns $ns $IP link set lo up; done
$IP link add br0 type bridge stp_state 0 forward_delay 0
$IP addr add 192.168.122.1/24 dev br0
$IP link set br0 up
$IP link add vg type veth peer name eth0 netns g
$IP link set vg master br0
$IP link set vg up
in_ns g $IP addr add 192.168.122.11/24 dev eth0
in_ns g $IP link set eth0 up
in_ns g $IP route add default via 192.168.122.1
$IP link add up0 type veth peer name lan0 netns lan
$IP addr add 10.77.0.2/24 dev up0
$IP link set up0 up
$IP route add default via 10.77.0.1 dev up0
in_ns lan $IP addr add 10.77.0.1/24 dev lan0
in_ns lan $IP link set lan0 up
in_ns lan $IP link add lan1 type veth peer name eth0 netns srv
in_ns lan $IP addr add 10.78.0.1/24 dev lan1
in_ns lan $IP link set lan1 up
in_ns lan sysctl -qw net.ipv4.ip_forward=1
in_ns srv $IP addr add 10.78.0.2/24 dev eth0
in_ns srv $IP link set eth0 up
in_ns srv $IP route add default via 10.78.0.1

# servers: HTTP with a CGI that answers the client address it sees
mkdir -p /tmp/www/cgi-bin /tmp/gwww/cgi-bin
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$REMOTE_ADDR"\n' >/tmp/www/cgi-bin/addr
chmod 755 /tmp/www/cgi-bin/addr
cp /tmp/www/cgi-bin/addr /tmp/gwww/cgi-bin/addr
echo guest-g >/tmp/gwww/who
head -c 3145728 /dev/urandom >/tmp/www/blob
in_ns srv httpd -p 10.78.0.2:8080 -h /tmp/www
in_ns g httpd -p 0.0.0.0:80 -h /tmp/gwww
in_ns srv nc -l -p 9000 -e /bin/sh -c 'cat >/tmp/up.srv' &
sinkpid=$!

# ------------------------------------------------------------- an older kernel
# What attach does on a kernel without bpf_check_mtu (5.10): the probes
# answer as that kernel would (test hook); one error line, nothing created.
KVMXDP_FAKE_KERNEL=5.10.0-30-amd64 $K attach --bridge br0 --uplink up0 >/tmp/old.out 2>/tmp/old.err
say "old_rc=$?"
say "old_err_lines=$(wc -l </tmp/old.err)"
say "old_err=$(head -n1 /tmp/old.err)"
say "old_left=$($TC qdisc show dev br0 | grep -c clsact),$($TC qdisc show dev up0 | grep -c clsact),$(find /bpf/kvmxdp -mindepth 1 2>/dev/null | wc -l),$([ -e /etc/kvmxdp/kvmxdp.json ] && echo config || echo no-config),$(cat /proc/sys/net/ipv4/conf/br0/forwarding)"

# ------------------------------------------------------------- attach
# up to 120 s: loading the BPF programs under TCG on one CPU takes 15-30 s
$K attach --bridge br0 --uplink up0 >/tmp/attach.log 2>&1 &
dpid=$!
i=0
while ! grep -q '^kvmxdp: attached' /tmp/attach.log && [ $i -lt 1200 ]; do
	kill -0 $dpid 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
say "attached=$(grep -c '^kvmxdp: attached' /tmp/attach.log)"
sed 's/^/KVXA /' /tmp/attach.log
if ! grep -q '^kvmxdp: attached' /tmp/attach.log; then
	# the verifier's verdict on the console: libbpf's log with -v (its end
	# names the rejected instruction)
	$K -v attach --bridge br0 --uplink up0 >/tmp/attach-v.log 2>&1
	sed -n '/BEGIN PROG LOAD LOG/,/END PROG LOAD LOG/p' /tmp/attach-v.log | tail -n 150 | sed 's/^/KVXV /'
	grep -v 'PROG LOAD LOG' /tmp/attach-v.log | tail -n 10 | sed 's/^/KVXV /'
	say "smoke=skipped: attach failed"
	exit 1
fi
say "tc_br0=$($TC filter show dev br0 ingress | grep -c ' bpf .*kvx_br_ingress')"
say "tc_up0=$($TC filter show dev up0 ingress | grep -c ' bpf .*kvx_up_ingress')"

# ------------------------------------------------------------- masquerade
say "ping_rx=$(in_ns g ping -c 5 -i 0.2 -W 2 10.78.0.2 2>&1 | received)"
say "blob_sha=$(sha /tmp/www/blob)"
in_ns g timeout 30 wget -q -O /tmp/dl http://10.78.0.2:8080/blob
say "dl_rc=$?"
say "dl_bytes=$(wc -c </tmp/dl)"
say "dl_sha=$(sha /tmp/dl)"
say "srv_sees=$(in_ns g timeout 10 wget -q -O - http://10.78.0.2:8080/cgi-bin/addr 2>&1)"
head -c 2097152 /dev/urandom >/tmp/up
say "up_sha=$(sha /tmp/up)"
in_ns g timeout 30 nc 10.78.0.2 9000 -e cat /tmp/up
say "up_rc=$?"
i=0
while kill -0 $sinkpid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
say "up_srv_bytes=$(wc -c </tmp/up.srv)"
say "up_srv_sha=$(sha /tmp/up.srv)"

# ------------------------------------------------------------- 1:1 mapping
$K map add 10.77.0.50 192.168.122.11 >/tmp/map.log 2>&1
say "map_rc=$?"
sed 's/^/KVXA /' /tmp/map.log
say "lan_who=$(in_ns lan timeout 10 wget -q -O - http://10.77.0.50/who 2>&1)"
say "guest_sees=$(in_ns lan timeout 10 wget -q -O - http://10.77.0.50/cgi-bin/addr 2>&1)"
say "mapped_out=$(in_ns g timeout 10 wget -q -O - http://10.78.0.2:8080/cgi-bin/addr 2>&1)"

# ------------------------------------------------------------- status, detach
say "status_json=$($K status --json 2>/tmp/status.err | tr -d '\n')"
sed 's/^/KVXA /' /tmp/status.err
$K detach --bridge br0 >/tmp/detach.log 2>&1
say "detach_rc=$?"
sed 's/^/KVXA /' /tmp/detach.log
i=0
while kill -0 $dpid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
say "daemon_gone=$(kill -0 $dpid 2>/dev/null && echo no || echo yes)"
say "filters_after=$($TC filter show dev br0 ingress; $TC filter show dev up0 ingress)"
say "clsact_after=$($TC qdisc show dev br0 | grep -c clsact),$($TC qdisc show dev up0 | grep -c clsact)"
say "pins_after=$(find /bpf/kvmxdp -mindepth 1 2>/dev/null | tr '\n' ' ')"
say "br0_forwarding_after=$(cat /proc/sys/net/ipv4/conf/br0/forwarding)"
# with kvmxdp gone the guest's traffic gets no answer (no route back)
say "ping_after_detach=$(in_ns g ping -c 2 -i 0.2 -W 1 10.78.0.2 2>&1 | received)"
say "t_smoke_end=$(cut -d' ' -f1 /proc/uptime)"
