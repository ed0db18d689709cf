# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# vm-tests/lib.sh: harness for kvmxdp's integration tests.  Sourced by every
# vm-tests/*.sh script (and by scripts/demo.sh for the topology).
#
# Everything a test creates is named with one random id (KVX_ID) and recorded
# as it is created; the EXIT/INT/TERM trap tears down exactly those objects:
# the processes it started (by pid), the network namespaces it created (by
# name, never `ip -all netns delete`), the bpffs it mounted, its temp dir.
# No traffic, interface, route, sysctl or firewall change ever happens in the
# root network namespace: every command that touches the network runs inside
# one of the test's namespaces.
#
# The standard topology (kvx_topology_up):
#
#   guest1 ns  kg1<id> 192.168.122.11/24 gw .1 --+
#   guest2 ns  kg2<id> 192.168.122.12/24 gw .1 --+  (peers kp1<id>, kp2<id>: bridge ports,
#                                                |   tx checksum offload OFF)
#   host ns    bridge $BR 192.168.122.1/24 ------+
#              uplink ku<id> 10.77.0.2/24, default via 10.77.0.1      (kvmxdp runs here)
#                 |
#   lan ns     kl<id> 10.77.0.1/24   router, ip_forward=1 (only here)
#              kr<id> 10.78.0.1/24   (tx checksum offload OFF)
#                 |
#   server ns  ks<id> 10.78.0.2/24, default via 10.78.0.1; no route to 192.168.122.0/24
#              beyond that default: the lan router has none, so nothing with a
#              guest source address can ever get a reply.
#
# Checksums: the guests' veths keep tx checksum offload and TSO on, so guest
# packets enter kvmxdp CHECKSUM_PARTIAL / GSO, which BPF_PROG_TEST_RUN cannot
# make (docs/pitfalls.md, test-run-checksums).  Offload is off on the bridge
# ports and on the router's port towards the server, so the kernel finalizes
# every checksum in software before the receiver verifies it: a wrong NAT
# checksum shows up as InCsumErrors in a guest or the server.
#
# Bash 4.4+.  Tests use `set -Eeuo pipefail`; an unexpected command failure
# is reported with its line and fails the test.

set -Eeuo pipefail

# The system python: a pyenv/venv shim on PATH can cost a second per call.
if [[ -x /usr/bin/python3 ]]; then KVX_PY=/usr/bin/python3; else KVX_PY=python3; fi
KVX_TEST=${KVX_TEST:-$(basename "${0%.sh}")}
KVX_FAILS=0
KVX_NETNS=()       # namespaces created, in creation order
KVX_PIDS=()        # background processes started
KVX_MOUNTS=()      # mount points mounted (bpffs)
KVX_CLEANUP_CMDS=() # extra cleanup commands (run first, in reverse order)
KVX_TMP=""
KVX_TORN_DOWN=0

# ---------------------------------------------------------------- output

kvx_log() { printf '[%s %s] %s\n' "$KVX_TEST" "$(date +%T)" "$*" >&2; }
kvx_step() { printf '\n[%s %s] === %s\n' "$KVX_TEST" "$(date +%T)" "$*" >&2; }

# An IPv6 TCP connection guest2 -> [SRV6]:7100 (tcp_peer.py's echo, 1 MiB)
# with sniffers at the server's and guest2's devices: the server gets the
# SYN from SRC (an address) with MSS MSS, guest2 the SYN-ACK with MSS MSS,
# every checksum verifies (the senders' offloads off: the sniffers see the
# finished sums).  Uses NS_SRV, SRV_IF, NS_G2, G2_IF, SRV6, G2_6.
kvx_mss6_step() { # MSS SRC
	local mss=$1 src=$2 peer=$KVX_LIBDIR/tcp_peer.py w name ns dev rc=0 g2p line
	kvx_bg "$KVX_TMP/echo6.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$peer" echo "$SRV6" 7100
	kvx_wait_for 10 "the TCP echo server" grep -q '^listening' "$KVX_TMP/echo6.log"
	for w in srv:"$NS_SRV":"$SRV_IF" g2:"$NS_G2":"$G2_IF"; do
		IFS=: read -r name ns dev <<<"$w"
		kvx_bg "$KVX_TMP/sniff.$name.log" ip netns exec "$ns" "$KVX_PY" -u "$peer" sniff "$dev"
		kvx_wait_for 10 "the sniffer on $dev" grep -q '^sniffing' "$KVX_TMP/sniff.$name.log"
	done
	nsx "$NS_G2" "$KVX_PY" -u "$peer" client "[$SRV6]:7100" --bytes $((1 << 20)) \
		>"$KVX_TMP/client6.log" 2>&1 || rc=$?
	assert_eq "guest2 -> [$SRV6]:7100: 1 MiB echoed intact" 0 "$rc"
	g2p=$(sed -n 's/^local=//p' "$KVX_TMP/client6.log")
	kvx_wait_for 5 "the SYN at the server" grep -q '^syn flags=S ' "$KVX_TMP/sniff.srv.log" || true
	line=$(grep -m1 "^syn flags=S src=\[$src\]:[0-9]* dst=\[$SRV6\]:7100 " \
		"$KVX_TMP/sniff.srv.log" || true)
	assert_contains "the server got guest2's SYN (MSS 1440) with MSS $mss" "mss=$mss at=0 " "$line"
	assert_contains "the SYN's checksum verifies" "csum=ok" "$line"
	line=$(grep -m1 "^syn flags=SA src=\[$SRV6\]:7100 dst=\[$G2_6\]:$g2p " \
		"$KVX_TMP/sniff.g2.log" || true)
	assert_contains "guest2 got the server's SYN-ACK (MSS 1440) with MSS $mss" "mss=$mss at=0 " \
		"$line"
	assert_contains "the SYN-ACK's checksum verifies" "csum=ok" "$line"
	assert_eq "no segment with a bad checksum at either end" "" \
		"$(cat "$KVX_TMP/sniff.srv.log" "$KVX_TMP/sniff.g2.log" | grep '^badcsum' || true)"
}

# Hard failure: print why, tear down (trap), exit 1.
kvx_fatal() {
	printf '[%s] FAIL: %s\n' "$KVX_TEST" "$*" >&2
	KVX_FAILS=$((KVX_FAILS + 1))
	exit 1
}

# Soft failure: print why, remember it, go on (the test fails at the end).
kvx_fail() {
	printf '[%s] FAIL: %s\n' "$KVX_TEST" "$*" >&2
	KVX_FAILS=$((KVX_FAILS + 1))
}

kvx_pass() { printf '[%s] ok: %s\n' "$KVX_TEST" "$*" >&2; }

# must ASSERTION ARGS...: run an assertion; if it failed, stop the test.
must() {
	local before=$KVX_FAILS
	"$@" || true
	((KVX_FAILS == before)) || kvx_fatal "the previous check is required to go on"
}

kvx_on_err() {
	local rc=$1 line=$2 cmd=$3
	printf '[%s] FAIL: unexpected error (exit %s) at %s line %s: %s\n' \
		"$KVX_TEST" "$rc" "${BASH_SOURCE[1]:-?}" "$line" "$cmd" >&2
	KVX_FAILS=$((KVX_FAILS + 1))
	exit 1
}
trap 'kvx_on_err $? $LINENO "$BASH_COMMAND"' ERR

# End of a test: exit 0 only if no assertion failed.
kvx_finish() {
	# Every test that attached kvmxdp ends with the same proof: no checksum
	# error anywhere, and the host kernel forwarded (almost) nothing:
	# kvmxdp did (KVX_FWD_BUDGET: datagrams a test may let the kernel
	# forward on purpose, default 10).
	if [[ -n ${KVX_FWD0:-} ]] && ip netns list | grep -qw "$NS_HOST"; then
		kvx_step "common checks: checksums, host forwarding"
		kvx_assert_no_csum_errors
		local fwd=$(($(kvx_fwd_datagrams) - KVX_FWD0))
		if ((fwd <= ${KVX_FWD_BUDGET:-10})); then
			kvx_pass "host IpForwDatagrams moved by $fwd (<= ${KVX_FWD_BUDGET:-10})"
		else
			kvx_fail "host IpForwDatagrams moved by $fwd: the kernel forwarded guest traffic"
		fi
	fi
	if ((KVX_FAILS > 0)); then
		printf '[%s] RESULT: FAILED (%d failed checks)\n' "$KVX_TEST" "$KVX_FAILS" >&2
		exit 1
	fi
	printf '[%s] RESULT: PASSED\n' "$KVX_TEST" >&2
	exit 0
}

# ---------------------------------------------------------------- assertions
# Each prints what it checked.  Failures are soft (kvx_fail: the test goes
# on and fails at the end) and the assertion returns 0 either way, so that
# `set -e` does not turn it into an "unexpected error"; `must assert_x ...`
# makes one fatal.

assert_eq() { # DESC EXPECTED ACTUAL
	if [[ "$2" == "$3" ]]; then kvx_pass "$1 (= $3)"; return 0; fi
	kvx_fail "$1: expected '$2', got '$3'"; return 0
}
assert_ne() { # DESC UNEXPECTED ACTUAL
	if [[ "$2" != "$3" ]]; then kvx_pass "$1 ('$3' != '$2')"; return 0; fi
	kvx_fail "$1: got '$3', which it must not be"; return 0
}
assert_ge() { # DESC ACTUAL MIN
	if [[ "$2" =~ ^-?[0-9]+$ ]] && (($2 >= $3)); then kvx_pass "$1 ($2 >= $3)"; return 0; fi
	kvx_fail "$1: expected >= $3, got '$2'"; return 0
}
assert_le() { # DESC ACTUAL MAX
	if [[ "$2" =~ ^-?[0-9]+$ ]] && (($2 <= $3)); then kvx_pass "$1 ($2 <= $3)"; return 0; fi
	kvx_fail "$1: expected <= $3, got '$2'"; return 0
}
assert_contains() { # DESC NEEDLE HAYSTACK
	if [[ "$3" == *"$2"* ]]; then kvx_pass "$1 (contains '$2')"; return 0; fi
	kvx_fail "$1: '$2' not found in: $(printf '%s' "$3" | head -c 2000)"; return 0
}
assert_not_contains() { # DESC NEEDLE HAYSTACK
	if [[ "$3" != *"$2"* ]]; then kvx_pass "$1 (no '$2')"; return 0; fi
	kvx_fail "$1: '$2' found in: $(printf '%s' "$3" | head -c 2000)"; return 0
}
assert_empty() { # DESC VALUE
	if [[ -z "$2" ]]; then kvx_pass "$1 (empty)"; return 0; fi
	kvx_fail "$1: expected nothing, got: $(printf '%s' "$2" | head -c 2000)"; return 0
}
assert_ok() { # DESC CMD...  (command must succeed)
	local desc=$1 out rc=0; shift
	out=$("$@" 2>&1) || rc=$?
	if ((rc == 0)); then kvx_pass "$desc"; return 0; fi
	kvx_fail "$desc: '$*' exited $rc: $(printf '%s' "$out" | tail -n 15)"; return 0
}
assert_fails() { # DESC CMD...  (command must fail)
	local desc=$1 out rc=0; shift
	out=$("$@" 2>&1) || rc=$?
	if ((rc != 0)); then kvx_pass "$desc (exit $rc)"; return 0; fi
	kvx_fail "$desc: '$*' succeeded but must fail: $(printf '%s' "$out" | tail -n 15)"; return 0
}

# ---------------------------------------------------------------- setup

kvx_require_root() {
	if [[ $(id -u) -ne 0 ]]; then
		echo "SKIP: $KVX_TEST needs root (network namespaces, bpffs, tc)" >&2
		exit 77
	fi
}

# The QEMU tests boot Debian's amd64 kernel (linux-image-amd64) with
# qemu-system-x86_64 and copy x86_64 libraries into their image: on any
# other architecture they skip (CI is amd64, where they run).
kvx_require_amd64() {
	local arch
	arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
	if [[ $arch != amd64 ]]; then
		echo "SKIP: $KVX_TEST boots an amd64 Debian kernel and image, this machine is $arch" >&2
		exit 77
	fi
}

kvx_require_tools() {
	local t missing=()
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
	((${#missing[@]} == 0)) || kvx_fatal "missing tools: ${missing[*]} (scripts/install-deps.sh installs them)"
}

# kvx_init [KVMXDP]: root check, unique id, temp dir, traps, own bpffs.
kvx_init() {
	kvx_require_root
	kvx_require_tools ip tc ethtool ping curl iperf3 socat python3 nsenter mount umount sysctl nft iptables-save bpftool
	KVMXDP=${1:-${KVMXDP:-}}
	if [[ -n "$KVMXDP" ]]; then
		[[ -x "$KVMXDP" ]] || kvx_fatal "kvmxdp binary '$KVMXDP' not found or not executable"
		KVMXDP=$(readlink -f "$KVMXDP")
	fi
	KVX_LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	# A 5-hex-digit id; regenerate while any namespace of that id exists.
	local tries=0
	while :; do
		KVX_ID=$(printf '%05x' $(((RANDOM << 15 ^ RANDOM ^ $$ << 3) & 0xfffff)))
		compgen -G "/run/netns/kvx-${KVX_ID}-*" >/dev/null || break
		((++tries < 50)) || kvx_fatal "cannot find a free namespace id"
	done
	# No dot in the path: libbpf turns every "." of a pin path into "_".
	KVX_TMP=$(mktemp -d "/tmp/kvx-${KVX_TEST//./_}-${KVX_ID}-XXXXXX")
	trap 'kvx_teardown' EXIT
	trap 'kvx_log "interrupted"; exit 130' INT
	trap 'kvx_log "terminated"; exit 143' TERM
	# Watchdog: TERM ourselves before ctest's TIMEOUT (120 s) would SIGKILL
	# us, so the teardown still runs.  The trap runs once the current
	# foreground command returns; every traffic command has its own timeout.
	local me=$$
	(
		trap 'kill "$sp" 2>/dev/null; exit 0' TERM
		sleep "${KVX_TIMEOUT:-100}" &
		sp=$!
		wait "$sp"
		echo "[$KVX_TEST] FAIL: watchdog: still running after ${KVX_TIMEOUT:-100} s" >&2
		kill -TERM "$me"
	) &
	KVX_PIDS+=("$!")
	# Our own bpffs, mounted in the ROOT mount namespace before any
	# `ip netns exec` (which runs in a private mount namespace and hides
	# /sys/fs/bpf): every process of the test sees it.
	BPFFS=$KVX_TMP/bpffs
	mkdir -p "$BPFFS"
	mount -t bpf bpf "$BPFFS" || kvx_fatal "cannot mount a bpffs on $BPFFS"
	KVX_MOUNTS+=("$BPFFS")
	KVX_CFG=$KVX_TMP/kvmxdp.json
	# Global options of every kvmxdp call: our bpffs and config; our own
	# lock/pid dir when the binary has --run-dir (checked: a binary without it
	# still runs under this harness).
	KVX_OPTS=(--bpffs "$BPFFS" --config "$KVX_CFG")
	if [[ -n "$KVMXDP" ]] && "$KVMXDP" --help 2>&1 | grep -q -- --run-dir; then
		mkdir -p "$KVX_TMP/run"
		KVX_OPTS+=(--run-dir "$KVX_TMP/run")
	fi
	kvx_log "id=$KVX_ID tmp=$KVX_TMP kvmxdp=${KVMXDP:-none}"
}

kvx_on_cleanup() { KVX_CLEANUP_CMDS+=("$*"); }

kvx_kill_pid() { # PID: TERM, wait up to 2 s, then KILL
	local pid=$1 i
	# Only a job of this shell that has not been reaped yet: a pid already
	# waited for may belong to somebody else by now.
	[[ " $(jobs -p | tr '\n' ' ') " == *" $pid "* ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	# A daemon a test paused (SIGSTOP) and failed before it went on.
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

kvx_teardown() {
	local rc=$? i ns pid m
	((KVX_TORN_DOWN)) && return
	KVX_TORN_DOWN=1
	trap - ERR
	set +e
	for ((i = ${#KVX_CLEANUP_CMDS[@]} - 1; i >= 0; i--)); do
		eval "${KVX_CLEANUP_CMDS[i]}" >/dev/null 2>&1
	done
	for pid in "${KVX_PIDS[@]}"; do kvx_kill_pid "$pid"; done
	# Anything still running inside OUR namespaces was started by this test
	# (the names are ours and random): end it by pid so the namespace can go.
	for ns in "${KVX_NETNS[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
	done
	for ((i = ${#KVX_NETNS[@]} - 1; i >= 0; i--)); do
		ip netns delete "${KVX_NETNS[i]}" 2>/dev/null
	done
	for m in "${KVX_MOUNTS[@]}"; do
		mountpoint -q "$m" && umount "$m"
	done
	if [[ -n "$KVX_TMP" && -d "$KVX_TMP" ]]; then
		if [[ -n "${KVX_KEEP_TMP:-}" ]]; then
			kvx_log "kept $KVX_TMP"
		else
			rm -rf --one-file-system "$KVX_TMP"
		fi
	fi
	return $rc
}

# Start a background process; its pid is recorded for teardown and stored
# in KVX_LAST_PID.  Usage: kvx_bg LOGFILE CMD...
kvx_bg() {
	local log=$1; shift
	"$@" >"$log" 2>&1 </dev/null &
	KVX_LAST_PID=$!
	KVX_PIDS+=("$KVX_LAST_PID")
}

# ---------------------------------------------------------------- netns

kvx_netns_add() { # NAME
	ip netns add "$1" || kvx_fatal "ip netns add $1"
	KVX_NETNS+=("$1")
	ip -n "$1" link set lo up
}

# Run in a namespace.  `ip netns exec` gives the command a /sys of that
# namespace; the bpffs under $KVX_TMP stays visible (mounted before).
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Same, but keeping the caller's mount namespace entirely.
nsenter_net() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

kvx_sysctl_get() { # NS KEY  (KEY with dots or slashes; interface names may hold dots)
	local key=${2//./\/}
	[[ $2 == */* ]] && key=$2
	nsx "$1" cat "/proc/sys/$key"
}

# ---------------------------------------------------------------- waiting

# kvx_brport_of MAC: the bridge port (ifindex) the daemon placed MAC on in
# $BR's kvx_brport; '' if none.
kvx_brport_of() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_brport" 2>/dev/null | "$KVX_PY" -c '
import json, sys
want = bytes(int(x, 16) for x in sys.argv[1].split(":"))
for e in json.load(sys.stdin):
    if bytes(int(x, 16) for x in e["key"][:6]) == want:
        print(int.from_bytes(bytes(int(x, 16) for x in e["value"][:4]), "little"))' "$1" || true
}

# kvx_brport_on IFINDEX: how many MACs $BR's kvx_brport places on that port.
kvx_brport_on() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_brport" 2>/dev/null | "$KVX_PY" -c '
import json, sys
want = int(sys.argv[1])
print(sum(int.from_bytes(bytes(int(x, 16) for x in e["value"][:4]), "little") == want
          for e in json.load(sys.stdin)))' "$1" || true
}

# kvx_if_mac NS IFACE: the interface's MAC address.
kvx_if_mac() {
	ip -n "$1" -j link show "$2" | "$KVX_PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])'
}

# kvx_top_guest JSON MAC EXPR: EXPR (Python, over r) for the row of the
# guest whose MAC is MAC in `kvmxdp top --json` output JSON; empty when
# there is no such row.
kvx_top_guest() {
	KVX_MAC=$2 "$KVX_PY" -c '
import json, os, sys
d = json.loads(sys.stdin.read())
r = [g for g in d["guests"] if g["mac"] == os.environ["KVX_MAC"]][0]
print(eval(sys.argv[1]))' "$3" <<<"$1" 2>/dev/null || true
}

# kvx_wait_for TIMEOUT_S DESC CMD...: poll every 0.1 s until CMD succeeds.
kvx_wait_for() {
	local timeout=$1 desc=$2 deadline; shift 2
	deadline=$(($(date +%s%N) + ${timeout%.*} * 1000000000))
	while :; do
		if "$@" >/dev/null 2>&1; then return 0; fi
		if (($(date +%s%N) > deadline)); then
			kvx_fail "timed out after ${timeout}s waiting for: $desc"
			return 1
		fi
		sleep 0.1
	done
}

# ---------------------------------------------------------------- timing
# How soon an event (an address change, a new default route) shows in new
# flows, measured at the sender: a prober (udp_peer.py probe) in a guest
# opens a new flow every 20 ms before, during and after the event, and the
# time is that of the first probe sent after the event that the server saw
# from the expected address.  Process start-up and the load of the machine
# stay out of the figure; polling granularity too.

kvx_now_us() { date +%s%6N; }

kvx_probe_start() { # NS DST:PORT: the prober, in the background
	KVX_PROBE_N=$((${KVX_PROBE_N:-0} + 1))
	KVX_PROBE_LOG=$KVX_TMP/probe.$KVX_PROBE_N.log
	kvx_bg "$KVX_PROBE_LOG" ip netns exec "$1" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" probe "$2"
	KVX_PROBE_PID=$KVX_LAST_PID
	kvx_wait_file_contains 10 "$KVX_PROBE_LOG" probing
}

kvx_probe_stop() { kvx_kill_pid "$KVX_PROBE_PID"; }

# Send time (us) of the first probe sent at or after T0_US that the server
# saw from ADDR; fails if there is none yet.
kvx_probe_first() { # T0_US ADDR
	awk -v t0="$1" -v a="seen=$2:" '
		index($1, "t_us=") == 1 && substr($1, 6) + 0 >= t0 + 0 && index($2, a) == 1 {
			print substr($1, 6); found = 1; exit
		}
		END { exit !found }' "$KVX_PROBE_LOG"
}

# kvx_assert_probe_latency DESC T0_US ADDR MAX_MS: the first new flow after
# T0_US (taken right after the event) left from ADDR within MAX_MS.
kvx_assert_probe_latency() {
	local desc=$1 t0=$2 addr=$3 max=$4 t
	if ! kvx_wait_for 10 "$desc: a new flow from $addr" kvx_probe_first "$t0" "$addr"; then
		kvx_log "prober log (end): $(tail -n 5 "$KVX_PROBE_LOG" | tr '\n' '|')"
		return 0
	fi
	t=$(kvx_probe_first "$t0" "$addr")
	assert_le "$desc: first new flow from $addr, ms after the event" $(((t - t0) / 1000)) "$max"
}

kvx_wait_file_contains() { # TIMEOUT FILE STRING
	kvx_wait_for "$1" "'$3' in $2" grep -qF -- "$3" "$2"
}

kvx_wait_tcp_listen() { # TIMEOUT NS PORT
	kvx_wait_for "$1" "TCP listener on port $3 in $2" \
		bash -c "ip netns exec '$2' ss -Hltn 'sport = :$3' | grep -q ."
}

kvx_wait_udp_listen() { # TIMEOUT NS PORT
	kvx_wait_for "$1" "UDP socket on port $3 in $2" \
		bash -c "ip netns exec '$2' ss -Hlun 'sport = :$3' | grep -q ."
}

# ---------------------------------------------------------------- topology

# Two-way veth between namespaces, created directly in them (never in the
# root namespace, even transiently).
kvx_veth() { # NS1 IF1 NS2 IF2
	ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
	ip -n "$1" link set "$2" up
	ip -n "$3" link set "$4" up
}

# kvx_bind_macs BRIDGE ADDR PROTO: the guest MACs the IN halves of kvx_bind
# (IPv4 ADDR) or kvx_bind6 (IPv6) of protocol PROTO for guest ADDR deliver
# to, one a line, sorted.
kvx_bind_macs() {
	local map=kvx_bind
	[[ $2 == *:* ]] && map=kvx_bind6
	bpftool -j map dump pinned "$(kvx_pin_dir "$1")/$map" 2>/dev/null | "$KVX_PY" -c '
import ipaddress, json, sys
addr = ipaddress.ip_address(sys.argv[1])
proto = int(sys.argv[2])
for e in json.load(sys.stdin):
    k = bytes(int(x, 16) for x in e["key"])
    v = bytes(int(x, 16) for x in e["value"])
    # kvx_bind_val: addr 4, port 2, flags 2, guest_mac 6; kvx_bind6_val:
    # that (32 bytes), then the IPv6 address.
    got = v[:4] if addr.version == 4 else v[32:48]
    if k[0] == 1 and k[1] == proto and got == addr.packed:  # KVX_BIND_IN
        print(":".join("%02x" % b for b in v[8:14]))' "$2" "$3" | sort -u || true
}

# kvx_guest1_port_remake: guest1's VM re-created, as libvirt does it: its
# tap (the port, here the veth pair) made anew on the bridge, with another
# MAC; software checksums as kvx_topology_up sets them.  Addresses and
# routes inside the guest are the caller's.
kvx_guest1_port_remake() {
	kvx_veth "$NS_G1" "$G1_IF" "$NS_HOST" "$P1_IF"
	ip -n "$NS_HOST" link set "$P1_IF" master "$BR"
	nsx "$NS_HOST" ethtool -K "$P1_IF" tx off >/dev/null
}

# kvx_topology_up [BRIDGE_NAME]: builds the diagram above.  Sets NS_G1, NS_G2,
# NS_HOST, NS_LAN, NS_SRV, BR, UP, G1_IF, G2_IF, P1_IF, P2_IF, LAN_UP_IF,
# LAN_SRV_IF, SRV_IF and the addresses.
# The bridge $BR with the two guest ports (again, after a test deleted it as
# a libvirt network restart does): waits for the ports to forward.
kvx_bridge_recreate() {
	ip -n "$NS_HOST" link add "$BR" type bridge
	ip -n "$NS_HOST" link set "$BR" up
	ip -n "$NS_HOST" addr add "$GW_IP/24" dev "$BR"
	ip -n "$NS_HOST" link set "$P1_IF" master "$BR"
	ip -n "$NS_HOST" link set "$P2_IF" master "$BR"
	kvx_wait_for 5 "bridge $BR forwarding" kvx_bridge_ports_forwarding || true
}

# kvx_bridge_add NAME ADDR/PREFIX: another bridge in the host ns (a second
# libvirt network), up, with the address.
kvx_bridge_add() {
	ip -n "$NS_HOST" link add "$1" type bridge
	ip -n "$NS_HOST" link set "$1" up
	ip -n "$NS_HOST" addr add "$2" dev "$1"
}

# kvx_assert_bridge_untouched DESC BRIDGE: kvmxdp left nothing on BRIDGE:
# no clsact qdisc, no ingress filter, no pin directory.
kvx_assert_bridge_untouched() {
	assert_empty "$1: no qdisc or filter on $2" \
		"$(tc -n "$NS_HOST" qdisc show dev "$2" | grep clsact || true)$(tc -n "$NS_HOST" filter show dev "$2" ingress 2>/dev/null)"
	assert_eq "$1: no pin directory for $2" "" "$(ls "$(kvx_pin_dir "$2")" 2>/dev/null || true)"
}

kvx_topology_up() {
	BR=${1:-kb$KVX_ID}
	((${#BR} <= 15)) || kvx_fatal "bridge name '$BR' longer than 15 characters"
	NS_G1=kvx-$KVX_ID-g1 NS_G2=kvx-$KVX_ID-g2 NS_HOST=kvx-$KVX_ID-host
	NS_LAN=kvx-$KVX_ID-lan NS_SRV=kvx-$KVX_ID-srv
	G1_IF=kg1$KVX_ID G2_IF=kg2$KVX_ID P1_IF=kp1$KVX_ID P2_IF=kp2$KVX_ID
	UP=ku$KVX_ID LAN_UP_IF=kl$KVX_ID LAN_SRV_IF=kr$KVX_ID SRV_IF=ks$KVX_ID
	# shellcheck disable=SC2034 # used by the tests
	G1_IP=192.168.122.11 G2_IP=192.168.122.12 GW_IP=192.168.122.1 SUBNET=192.168.122.0/24
	# shellcheck disable=SC2034 # used by the tests
	UP_IP=10.77.0.2 UP_IP2=10.77.0.3 LAN_IP=10.77.0.1 ROUTER_IP=10.78.0.1 SRV_IP=10.78.0.2
	local ns
	for ns in "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN" "$NS_SRV"; do kvx_netns_add "$ns"; done

	# host: the bridge and its two guest ports
	ip -n "$NS_HOST" link add "$BR" type bridge
	ip -n "$NS_HOST" link set "$BR" up
	ip -n "$NS_HOST" addr add "$GW_IP/24" dev "$BR"
	kvx_veth "$NS_G1" "$G1_IF" "$NS_HOST" "$P1_IF"
	kvx_veth "$NS_G2" "$G2_IF" "$NS_HOST" "$P2_IF"
	ip -n "$NS_HOST" link set "$P1_IF" master "$BR"
	ip -n "$NS_HOST" link set "$P2_IF" master "$BR"

	ip -n "$NS_G1" addr add "$G1_IP/24" dev "$G1_IF"
	ip -n "$NS_G1" route add default via "$GW_IP"
	ip -n "$NS_G2" addr add "$G2_IP/24" dev "$G2_IF"
	ip -n "$NS_G2" route add default via "$GW_IP"

	# host <-> lan router <-> server
	kvx_veth "$NS_HOST" "$UP" "$NS_LAN" "$LAN_UP_IF"
	kvx_veth "$NS_LAN" "$LAN_SRV_IF" "$NS_SRV" "$SRV_IF"
	ip -n "$NS_HOST" addr add "$UP_IP/24" dev "$UP"
	# keep the uplink's routes when its primary address is replaced
	nsx "$NS_HOST" sysctl -qw "net.ipv4.conf.$UP.promote_secondaries=1"
	ip -n "$NS_HOST" route add default via "$LAN_IP" dev "$UP"
	ip -n "$NS_LAN" addr add "$LAN_IP/24" dev "$LAN_UP_IF"
	ip -n "$NS_LAN" addr add "$ROUTER_IP/24" dev "$LAN_SRV_IF"
	nsx "$NS_LAN" sysctl -qw net.ipv4.ip_forward=1
	ip -n "$NS_SRV" addr add "$SRV_IP/24" dev "$SRV_IF"
	ip -n "$NS_SRV" route add default via "$ROUTER_IP"

	# Checksum proof: software checksums towards receivers, which count what
	# a wrong NAT checksum does (InCsumErrors).
	nsx "$NS_HOST" ethtool -K "$P1_IF" tx off >/dev/null
	nsx "$NS_HOST" ethtool -K "$P2_IF" tx off >/dev/null
	nsx "$NS_LAN" ethtool -K "$LAN_SRV_IF" tx off >/dev/null

	kvx_wait_for 5 "bridge $BR forwarding" kvx_bridge_ports_forwarding
	kvx_log "topology up: bridge=$BR uplink=$UP guests=$NS_G1,$NS_G2 server=$NS_SRV"
}

# kvx_ipv6_static_up: IPv6 on the standard topology with static addresses
# (no router advertisements): the bridge BR6/64, the guests G1_6 and G2_6
# (/64, default via the bridge's link-local: BR_LL is set), the uplink
# UP6/64 with its default route via the LAN router RTR_UP6, the router
# (forwarding) also RTR6/64 towards the server SRV6/64.  The server's
# default route is the caller's (its options differ).
kvx_ipv6_static_up() {
	local ns ifc a g
	for ns in "$NS_G1" "$NS_G2" "$NS_HOST" "$NS_LAN" "$NS_SRV"; do
		nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
	done
	ip -n "$NS_HOST" -6 addr add "$BR6/64" dev "$BR" nodad
	for g in "$NS_G1 $G1_IF $G1_6" "$NS_G2 $G2_IF $G2_6"; do
		read -r ns ifc a <<<"$g"
		nsx "$ns" sysctl -qw "net.ipv6.conf.$ifc.accept_ra=0"
		ip -n "$ns" -6 addr add "$a/64" dev "$ifc" nodad
	done
	nsx "$NS_HOST" sysctl -qw "net.ipv6.conf.$UP.accept_ra=0"
	ip -n "$NS_HOST" -6 addr add "$UP6/64" dev "$UP" nodad
	ip -n "$NS_HOST" -6 route add default via "$RTR_UP6" dev "$UP"
	nsx "$NS_LAN" sysctl -qw net.ipv6.conf.all.forwarding=1
	ip -n "$NS_LAN" -6 addr add "$RTR_UP6/64" dev "$LAN_UP_IF" nodad
	ip -n "$NS_LAN" -6 addr add "$RTR6/64" dev "$LAN_SRV_IF" nodad
	ip -n "$NS_SRV" -6 addr add "$SRV6/64" dev "$SRV_IF" nodad
	must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
	BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)
	ip -n "$NS_G1" -6 route add default via "$BR_LL" dev "$G1_IF"
	ip -n "$NS_G2" -6 route add default via "$BR_LL" dev "$G2_IF"
}

kvx_bridge_ports_forwarding() {
	local st
	for p in "$P1_IF" "$P2_IF"; do
		st=$(ip -n "$NS_HOST" -o link show "$p")
		[[ $st == *"state UP"* || $st == *"state LOWERLAYERDOWN"* ]] || return 1
		[[ $(ip -n "$NS_HOST" -d -o link show "$p") == *"state forwarding"* ]] || return 1
	done
}

kvx_ethtool_feature() { # NS IF FEATURE -> on|off
	nsx "$1" ethtool -k "$2" | awk -v f="$3:" '$1 == f { print $2; exit }'
}

# Offload state every test asserts: guests' veths keep tx checksum offload
# and TSO (partial checksums enter kvmxdp), receivers' peers have tx
# checksumming off (checksums are finalized in software and verified).
kvx_assert_offloads() {
	local ns_if
	for ns_if in "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"; do
		assert_eq "tx checksum offload on ${ns_if#*:} (guest)" on \
			"$(kvx_ethtool_feature "${ns_if%%:*}" "${ns_if#*:}" tx-checksumming)"
		assert_eq "TSO on ${ns_if#*:} (guest)" on \
			"$(kvx_ethtool_feature "${ns_if%%:*}" "${ns_if#*:}" tcp-segmentation-offload)"
	done
	for ns_if in "$NS_HOST:$P1_IF" "$NS_HOST:$P2_IF" "$NS_LAN:$LAN_SRV_IF"; do
		assert_eq "tx checksum offload off on ${ns_if#*:}" off \
			"$(kvx_ethtool_feature "${ns_if%%:*}" "${ns_if#*:}" tx-checksumming)"
	done
}

# ---------------------------------------------------------------- counters

# kvx_snmp NS PROTO FIELD: one /proc/net/snmp counter inside NS.
kvx_snmp() {
	nsx "$1" cat /proc/net/snmp | awk -v p="$2:" -v f="$3" '
		$1 == p && !hdr { for (i = 2; i <= NF; i++) col[$i] = i; hdr = 1; next }
		$1 == p && hdr { if (f in col) print $(col[f]); else print "missing"; exit }'
}

kvx_snmp_gt() { # NS PROTO FIELD VALUE: counter > VALUE?
	local v; v=$(kvx_snmp "$1" "$2" "$3"); [[ $v =~ ^[0-9]+$ ]] && ((v > $4))
}

# Sum of Ip/Tcp/Udp/Icmp InCsumErrors in NS (Ip has none in /proc/net/snmp
# on most kernels; a missing field counts 0).
kvx_csum_errors() {
	local ns=$1 total=0 v p
	for p in Ip Tcp Udp UdpLite Icmp; do
		v=$(kvx_snmp "$ns" "$p" InCsumErrors)
		[[ $v =~ ^[0-9]+$ ]] && total=$((total + v))
	done
	echo "$total"
}

kvx_assert_no_csum_errors() {
	local ns line
	for ns in "$NS_G1" "$NS_G2" "$NS_SRV" "$NS_HOST" "$NS_LAN"; do
		# one read per namespace: "Icmp=0 Tcp=0 Udp=0" (the file's order)
		line=$(nsx "$ns" cat /proc/net/snmp | awk '
			$1 ~ /^(Tcp|Udp|Icmp):$/ {
				if (!($1 in hdr)) { hdr[$1] = 1; for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") col[$1] = i; next }
				printf "%s%s=%s", sep, substr($1, 1, length($1) - 1), (($1 in col) ? $(col[$1]) : "missing"); sep = " "
			}')
		assert_eq "Icmp/Tcp/Udp InCsumErrors in ${ns#kvx-"$KVX_ID"-}" "Icmp=0 Tcp=0 Udp=0" "$line"
	done
}

kvx_fwd_datagrams() { kvx_snmp "$NS_HOST" Ip ForwDatagrams; }

# kvx_snmp6 NS FIELD: one /proc/net/snmp6 counter inside NS.
kvx_snmp6() {
	nsx "$1" awk -v f="$2" '$1 == f {print $2}' /proc/net/snmp6
}

# What the host's kernel forwarded over IPv6 (kvmxdp's forwarding does not
# count here).
kvx_fwd6_datagrams() { kvx_snmp6 "$NS_HOST" Ip6OutForwDatagrams; }

# kvx_assert_no_csum_errors6 NS...: no ICMPv6 or UDP checksum error in any
# of them (TCP's, both families, are kvx_assert_no_csum_errors').
kvx_assert_no_csum_errors6() {
	local ns
	for ns in "$@"; do
		assert_eq "Icmp6InCsumErrors/Udp6InCsumErrors in ${ns##*-}" "0 0" \
			"$(kvx_snmp6 "$ns" Icmp6InCsumErrors) $(kvx_snmp6 "$ns" Udp6InCsumErrors)"
	done
}

# kvmxdp status --json of our bridge, as JSON text ('' on error); with
# --all, of every instance.
kvx_status_json() { # [BRIDGE|--all]
	local sel=(--bridge "${1:-$BR}")
	[[ ${1:-} == --all ]] && sel=()
	nsx "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" status --json \
		"${sel[@]}" 2>>"$KVX_TMP/status.err" || true
}

# Number of instances `status --json` lists for our bridge ('' on error).
kvx_instances_of_br() {
	kvx_json 'len([x for x in d["instances"] if x["bridge"] == os.environ["KVX_BR"]])' \
		"$(kvx_status_json --all)"
}

# kvx_json EXPR [JSON]: evaluate a python expression on the instance of our
# bridge (`i`) or the whole document (`d`); prints '' on any error, 'null'
# for None, true/false for booleans.
kvx_json() {
	local expr=$1 json=${2-$(kvx_status_json)}
	KVX_BR=$BR "$KVX_PY" -c '
import json, os, sys
try:
    d = json.loads(sys.stdin.read())
    i = next((x for x in d.get("instances", []) if x.get("bridge") == os.environ["KVX_BR"]), None)
    v = eval(sys.argv[1])
except Exception as e:
    print("", end=""); sys.exit(0)
if v is None: print("null")
elif isinstance(v, bool): print("true" if v else "false")
elif isinstance(v, (dict, list)): print(json.dumps(v))
else: print(v)
' "$expr" <<<"$json"
}

# kvx_wait_datapath TIMEOUT DESC EXPR: wait until EXPR (python) is true of
# the datapath's own numbers: c["REASON"] (a verdict counter's packets,
# summed over the CPUs) and ct (kvx_ct entries).  Packets a test just sent
# are counted once the datapath saw them, not after a guessed sleep.  Read
# from the pins with bpftool: not `status`, which records what it reported
# (the "DROP_TABLE_FULL increased by" warning counts from there).
kvx_wait_datapath() {
	kvx_wait_for "$1" "$2" kvx_datapath_true "$3"
}
kvx_datapath_true() { # EXPR
	"$KVX_PY" - "$1" "$(kvx_pin_dir "$BR")" "$KVX_LIBDIR/../bpf/include/kvmxdp/abi.h" <<'EOF'
import json, re, subprocess, sys
expr, pins, abi = sys.argv[1:4]
names = re.findall(r"^\s*X\(([A-Z_]+),", open(abi).read(), re.M)
def dump(m):
    return json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pins + "/" + m],
                                     capture_output=True, text=True, check=True).stdout)
c = {}
for e in dump("kvx_stats"):
    idx = int.from_bytes(bytes(int(x, 16) for x in e["key"]), "little")
    if idx < len(names):
        c[names[idx]] = sum(int.from_bytes(bytes(int(x, 16) for x in v["value"][:8]), "little")
                            for v in e["values"])
ct = len(dump("kvx_ct"))
sys.exit(0 if eval(expr) else 1)
EOF
}

# kvx_drops: every nonzero drop counter of the instance (status --json), as
# "NAME=packets ..." (a step that must drop nothing compares two of them).
kvx_drops() {
	kvx_json "' '.join(f'{n}={c[\"packets\"]}' for n, c in sorted(i['counters'].items()) if n.startswith('DROP_') and c['packets'])"
}

# kvx_counter NAME [packets|bytes]: a kvmxdp reason counter of our bridge.
kvx_counter() {
	local v
	v=$(kvx_json "i['counters']['$1']['${2:-packets}']")
	echo "${v:-error}"
}

# kvx_dev_field DEV FIELD [JSON]: a field (mode, why, redirect_target, ...)
# of one device of our bridge's instance in `status --json`.
kvx_dev_field() {
	kvx_json "[d['$2'] for d in i['devices'] if d['ifname'] == '$1'][0]" "${3-$(kvx_status_json)}"
}

# kvx_lan6_count_from PREFIX: the LAN router counts every IPv6 packet that
# reaches it from the uplink with a source in PREFIX (with NAT66 on, a
# guest's packet that left untranslated); kvx_lan6_counted PREFIX: how many.
kvx_lan6_count_from() {
	nsx "$NS_LAN" ip6tables -w -t raw -I PREROUTING -i "$LAN_UP_IF" -s "$1" -j ACCEPT
}
kvx_lan6_counted() {
	nsx "$NS_LAN" ip6tables -w -t raw -L PREROUTING -n -v -x | awk -v p="$1" '$0 ~ p {print $1; exit}'
}

# kvx_xdev_tx IFNAME: the datapath's KVX_XDEV_F_TX for IFNAME (an XDP
# redirect into it lands), as the daemon wrote it into our kvx_xdev.
kvx_xdev_tx() {
	local idx
	idx=$(ip -n "$NS_HOST" -o link show dev "$1" | cut -d: -f1)
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_xdev" | "$KVX_PY" -c '
import json, sys
idx = int(sys.argv[1])
for e in json.load(sys.stdin):
    if int.from_bytes(bytes(int(x, 16) for x in e["key"]), "little") == idx:
        v = bytes(int(x, 16) for x in e["value"])
        sys.exit(0 if int.from_bytes(v[6:8], "little") & 1 else 1)
sys.exit(1)' "$idx"
}

# kvx_xdp_prog NS DEV: the name of the XDP program attached to DEV, '' if none.
kvx_xdp_prog() {
	ip -n "$1" -d -j link show dev "$2" | "$KVX_PY" -c '
import json, sys
x = json.load(sys.stdin)[0].get("xdp", {})
print(x.get("prog", {}).get("name", "") if x else "")'
}

# kvx_map_entries MAP: our bridge's pinned map MAP as bpftool's JSON
# entries, each key once.  bpftool walks a hash map key by key, and when
# the key it stands on is deleted meanwhile (a busy table: a flow closed,
# a port recycled) the kernel's next-key walk starts over from the first
# bucket: the same entries come again.  A count taken while traffic runs
# counts them once here.
kvx_map_entries() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/$1" | "$KVX_PY" -c '
import json, sys
print(json.dumps(list({tuple(e["key"]): e for e in json.load(sys.stdin)}.values())))'
}

# kvx_cfg_field FIELD[.SUB]: a field of the datapath's kvx_cfg[0] of our
# bridge as the daemon wrote it (bpftool's BTF-formatted dump), e.g.
# clamp_mss, flow_quota, timeouts.udp; '' on error.
kvx_cfg_field() {
	bpftool -j map dump pinned "$(kvx_pin_dir "$BR")/kvx_cfg" 2>/dev/null |
		"$KVX_PY" -c '
import json, sys
d = json.load(sys.stdin)[0]
v = d["formatted"]["value"] if "formatted" in d else d["value"]
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1" 2>/dev/null || true
}

kvx_dump_status() {
	kvx_log "kvmxdp status:"
	nsx "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" status --bridge "$BR" >&2 2>&1 || true
}

# ---------------------------------------------------------------- kvmxdp

kvx() { nsx "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" "$@"; }

# kvx_attach_bg [attach options...]: starts `kvmxdp attach` in the host ns as
# a background daemon, waits for its "kvmxdp: attached" line.  Sets
# KVX_DAEMON_PID and KVX_DAEMON_LOG.  Returns 1 (after kvx_fail) on failure.
KVX_ATTACH_N=0
kvx_attach_bg() {
	# The first attach starts the common end-of-test checks (kvx_finish).
	[[ -n ${KVX_FWD0:-} ]] || KVX_FWD0=$(kvx_fwd_datagrams)
	KVX_ATTACH_N=$((KVX_ATTACH_N + 1))
	KVX_DAEMON_LOG=$KVX_TMP/daemon.$KVX_ATTACH_N.log
	kvx_bg "$KVX_DAEMON_LOG" ip netns exec "$NS_HOST" "$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP" "$@"
	KVX_DAEMON_PID=$KVX_LAST_PID
	local i
	for ((i = 0; i < 150; i++)); do
		if grep -q '^kvmxdp: attached' "$KVX_DAEMON_LOG"; then
			kvx_log "attached (pid $KVX_DAEMON_PID): $(grep -m1 '^kvmxdp: attached' "$KVX_DAEMON_LOG")"
			return 0
		fi
		if ! kill -0 "$KVX_DAEMON_PID" 2>/dev/null; then
			wait "$KVX_DAEMON_PID" 2>/dev/null && i=0 || i=$?
			kvx_fail "kvmxdp attach exited ($i) before 'kvmxdp: attached': $(cat "$KVX_DAEMON_LOG")"
			return 1
		fi
		sleep 0.1
	done
	kvx_fail "no 'kvmxdp: attached' line after 15 s; log: $(cat "$KVX_DAEMON_LOG")"
	return 1
}

# Stop the daemon politely (SIGTERM) and wait for it.
kvx_daemon_stop() {
	[[ -n "${KVX_DAEMON_PID:-}" ]] && kvx_kill_pid "$KVX_DAEMON_PID"
	KVX_DAEMON_PID=""
}

# SIGKILL the daemon (a crash: nothing of its own cleanup runs) and reap it.
kvx_daemon_kill() {
	kill -KILL "$KVX_DAEMON_PID"
	wait "$KVX_DAEMON_PID" 2>/dev/null || true
	KVX_DAEMON_PID=""
}

# A reboot as far as the datapath goes: the daemon killed, every pin (a
# fresh bpffs), the lock/pid dir and the clsact qdiscs with kvmxdp's
# filters gone; the config stays.
kvx_reboot_datapath() {
	kvx_daemon_kill
	umount "$BPFFS"
	mount -t bpf bpf "$BPFFS"
	rm -rf "$KVX_TMP/run"
	local dev
	for dev in "$BR" "$UP"; do
		ip netns exec "$NS_HOST" tc qdisc del dev "$dev" clsact 2>/dev/null || true
	done
}

# Snapshot of everything kvmxdp may touch in the host ns (for "nothing
# changed" / "all restored" checks).
kvx_host_state() {
	# one shell in the host ns (cheap: this runs around every bad input)
	ip netns exec "$NS_HOST" bash -c '
		br=$1 up=$2 bpffs=$3
		for dev in "$br" "$up"; do
			echo "## qdisc $dev"; tc qdisc show dev "$dev" 2>&1 | grep -v "^qdisc noqueue" || true
			echo "## filter $dev ingress"; tc filter show dev "$dev" ingress 2>&1
			echo "## filter $dev egress"; tc filter show dev "$dev" egress 2>&1
			echo "## xdp $dev"; ip -d link show dev "$dev" 2>&1 | grep -o "prog/xdp.*" || true
		done
		echo "## forwarding"; cat "/proc/sys/net/ipv4/conf/$br/forwarding"
		echo "## forwarding6"; cat "/proc/sys/net/ipv6/conf/$br/forwarding" 2>&1 || true
		echo "## ip_forward"; cat /proc/sys/net/ipv4/ip_forward
		echo "## reserved"; cat /proc/sys/net/ipv4/ip_local_reserved_ports
		echo "## bpffs"; cd "$bpffs" && find . -mindepth 1 -not -path ./kvmxdp | sort
	' _ "$BR" "$UP" "$BPFFS"
}

# Everything pinned under <bpffs>/kvmxdp (the directory itself may stay).
kvx_pins() { [[ -d $BPFFS/kvmxdp ]] && (cd "$BPFFS/kvmxdp" && find . -mindepth 1 | sort) || true; }
# Everything on our bpffs but the kvmxdp directory itself (a fresh bpffs
# already holds the kernel's maps.debug/progs.debug when bpf_preload is on).
kvx_bpffs_all() { (cd "$BPFFS" && find . -mindepth 1 -not -path ./kvmxdp | sort); }

# Names of the BPF pin directory of a bridge ('.' -> ':').
kvx_pin_dir() { echo "$BPFFS/kvmxdp/${1//./:}"; }

kvx_tc_bpf_filters() { # DEV: number of bpf filters on its ingress
	tc -n "$NS_HOST" filter show dev "$1" ingress 2>/dev/null | grep -c ' bpf .*handle ' || true
}

# Netfilter must be untouched: no iptables/nft rules in any namespace.
kvx_assert_no_netfilter() {
	local ns out
	for ns in "${KVX_NETNS[@]}"; do
		out=$(nsx "$ns" nft list ruleset 2>&1 || true)
		assert_empty "nft ruleset in ${ns#kvx-"$KVX_ID"-}" "$out"
	done
	# iptables-legacy tables are not in the nft ruleset: ask iptables-save too
	out=$(nsx "$NS_HOST" iptables-save 2>/dev/null | grep -E '^-A' || true)
	assert_empty "iptables rules in the host ns" "$out"
}

# ---------------------------------------------------------------- traffic

# kvx_ping NS DST COUNT: quiet flood-free ping; returns ping's status.
kvx_ping() { nsx "$1" ping -n -q -c "$3" -i 0.05 -W 1 -w $(($3 / 5 + 3)) "$2" >/dev/null 2>&1; }

# Received count of a ping run.
kvx_ping_received() {
	nsx "$1" ping -n -q -c "$3" -i 0.05 -W 1 -w $(($3 / 5 + 3)) "$2" 2>/dev/null |
		sed -n 's/.* \([0-9]\+\) received.*/\1/p' || true
}

# HTTP server in the server ns serving $KVX_TMP/www on port 8080; its
# access log (client addresses) in $KVX_TMP/http.log.
kvx_http_server() {
	mkdir -p "$KVX_TMP/www"
	kvx_bg "$KVX_TMP/http.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
		--bind "$SRV_IP" --directory "$KVX_TMP/www" 8080
	kvx_wait_tcp_listen 10 "$NS_SRV" 8080
}

kvx_random_file() { # NAME SIZE_MB -> sha256
	head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$KVX_TMP/www/$1"
	sha256sum "$KVX_TMP/www/$1" | cut -d' ' -f1
}

# kvx_upload_sha NS FILE [SERVER_ADDR]: send FILE from NS to a one-shot TCP
# sink on the server (port 9000; SERVER_ADDR: another of its addresses, an
# IPv6 one too), print the sha256 of what arrived ('' if nothing).
kvx_upload_sha() {
	local f=$KVX_TMP/up.$RANDOM sink addr=${3:-$SRV_IP} listen=TCP-LISTEN connect=TCP
	if [[ $addr == *:* ]]; then
		addr="[$addr]" listen=TCP6-LISTEN connect=TCP6
	fi
	kvx_bg "$KVX_TMP/sink.log" ip netns exec "$NS_SRV" timeout 30 socat -u \
		"$listen:9000,bind=$addr,reuseaddr" "CREATE:$f"
	sink=$KVX_LAST_PID
	kvx_wait_tcp_listen 10 "$NS_SRV" 9000
	nsx "$1" timeout 30 socat -u "OPEN:$2" "$connect:$addr:9000" || true
	wait "$sink" 2>/dev/null || true
	[[ -f $f ]] && sha256sum "$f" | cut -d' ' -f1
	rm -f "$f"
}

# kvx_curl_sha NS URL: download, print sha256 ('' on failure).
kvx_curl_sha() {
	local out=$KVX_TMP/dl.$RANDOM
	if nsx "$1" curl -sS --fail --max-time 20 -o "$out" "$2" 2>>"$KVX_TMP/curl.err"; then
		sha256sum "$out" | cut -d' ' -f1
	fi
	rm -f "$out"
}

# UDP echo/peer server (vm-tests/udp_peer.py) in the server ns; arguments as
# for `udp_peer.py serve` (ADDR:PORT... [--poke ADDR:PORT]); log of
# "port= peer= data=" lines in $KVX_TMP/udp.log.
kvx_udp_server() {
	kvx_bg "$KVX_TMP/udp.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" \
		serve "$@"
	kvx_wait_file_contains 10 "$KVX_TMP/udp.log" serving
}

# Sniffer on the server's interface: every (src, dst, proto) the server
# receives, in $KVX_TMP/sniff.log (see udp_peer.py sniff).
kvx_server_sniffer() {
	kvx_bg "$KVX_TMP/sniff.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" \
		sniff "$SRV_IF"
	kvx_wait_file_contains 10 "$KVX_TMP/sniff.log" sniffing
}

# Sources of the IPv4 packets the server received (sorted, space separated),
# leaving out the router's own (ARP aside, it only talks ICMP errors).
kvx_server_sources() {
	sed -n 's/^src=\([0-9.]*\) .*/\1/p' "$KVX_TMP/sniff.log" | grep -vxF "$ROUTER_IP" | sort -u | paste -sd' '
}

# kvx_icmp_sniffer NS NAME: every ICMP error NS receives, one line each in
# $KVX_TMP/icmp.NAME.log (udp_peer.py icmp: sender, quoted header, checksum
# verified), from a raw socket in the receiver's namespace.
kvx_icmp_sniffer() {
	kvx_bg "$KVX_TMP/icmp.$2.log" ip netns exec "$1" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" icmp
	kvx_wait_file_contains 10 "$KVX_TMP/icmp.$2.log" listening
}

# kvx_icmp_seen NAME PATTERN: how many of NAME's ICMP errors match PATTERN,
# after waiting up to 2 s for a first one: the sniffer may print its line
# after the receiving application (ping) has returned.
kvx_icmp_seen() {
	local i
	for ((i = 0; i < 20; i++)); do
		grep -q "$2" "$KVX_TMP/icmp.$1.log" && break
		sleep 0.1
	done
	grep -c "$2" "$KVX_TMP/icmp.$1.log" || true
}

# kvx_assert_icmp_csums: no receiver found an ICMP error's checksum broken.
kvx_assert_icmp_csums() {
	assert_eq "no ICMP the receivers found broken" 0 \
		"$(cat "$KVX_TMP"/icmp.*.log | grep -c csum=bad || true)"
}

# kvx_udp_client NS ARGS...: runs udp_peer.py client; prints its lines.
kvx_udp_client() { local ns=$1; shift; nsx "$ns" "$KVX_PY" -u "$KVX_LIBDIR/udp_peer.py" client "$@"; }

# ---------------------------------------------------------------- IPv6 LAN
# kvx_lan6_up LAN6 RTR6 SRV6: the topology over IPv6 as relay mode meets it:
# the host a laptop on WiFi (SLAAC on the uplink, stable addresses, no IPv6
# forwarding: a forwarding uplink ignores RAs), the LAN router LAN6/64 on
# its uplink side and RTR6/64 towards the server, the server SRV6/64
# routed through it.  No router advertisement yet (kvx_lan6_radvd).
kvx_lan6_up() {
	local ns
	for ns in "$NS_HOST" "$NS_LAN" "$NS_SRV"; do
		nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
	done
	nsx "$NS_HOST" sysctl -qw net.ipv6.conf.all.forwarding=0 "net.ipv6.conf.$UP.accept_ra=1" \
		"net.ipv6.conf.$UP.autoconf=1" "net.ipv6.conf.$UP.use_tempaddr=0"
	nsx "$NS_LAN" sysctl -qw net.ipv6.conf.all.forwarding=1
	ip -n "$NS_LAN" -6 addr add "$1/64" dev "$LAN_UP_IF" nodad
	ip -n "$NS_LAN" -6 addr add "$2/64" dev "$LAN_SRV_IF" nodad
	ip -n "$NS_SRV" -6 addr add "$3/64" dev "$SRV_IF" nodad
	ip -n "$NS_SRV" -6 route add default via "$2"
}

# kvx_guest6_up BRIDGE-ADDR GUEST1-ADDR: the bridge's IPv6 address and
# guest1's on the same /64 (guest1 takes no router advertisements).
kvx_guest6_up() {
	nsx "$NS_G1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
		"net.ipv6.conf.$G1_IF.accept_ra=0"
	ip -n "$NS_HOST" -6 addr add "$1/64" dev "$BR" nodad
	ip -n "$NS_G1" -6 addr add "$2/64" dev "$G1_IF" nodad
}

# kvx_lan6_radvd PREFIX [PREFIX-OPTIONS [PREFIX PREFIX-OPTIONS]...]: the
# LAN router announces each PREFIX for SLAAC (radvd, every 3-4 s;
# PREFIX-OPTIONS added inside its prefix block); waits until the uplink has
# an address and a default route from it.
kvx_lan6_radvd() {
	local p=("$@") i blocks=""
	for ((i = 0; i < ${#p[@]}; i += 2)); do
		blocks+=$(printf '\tprefix %s { AdvOnLink on; AdvAutonomous on;%s };\n' "${p[i]}" "${p[i + 1]:+ ${p[i + 1]}}")
		blocks+=$'\n'
	done
	umask 022
	printf 'interface %s {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 4;\n%s};\n' \
		"$LAN_UP_IF" "$blocks" >"$KVX_TMP/radvd.conf"
	kvx_bg "$KVX_TMP/radvd.log" ip netns exec "$NS_LAN" radvd -n -m stderr -C "$KVX_TMP/radvd.conf" \
		-p "$KVX_TMP/radvd.pid"
	must kvx_wait_for 20 "a SLAAC address in $1 on the uplink" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$UP' scope global -tentative) ]]"
	must kvx_wait_for 10 "the uplink's IPv6 default route from the RA" \
		bash -c "ip -n '$NS_HOST' -6 route show default | grep -q '$UP'"
}

# kvx_addr6_in NS IF NET [deprecated]: IF's global address in NET that is
# not tentative, and deprecated or not as asked ('' if none).
kvx_addr6_in() {
	ip -n "$1" -6 -j addr show dev "$2" scope global | "$KVX_PY" -c '
import ipaddress, json, sys
net = ipaddress.ip_network(sys.argv[1])
dep = len(sys.argv) > 2
for l in json.load(sys.stdin):
    for a in l.get("addr_info", []):
        if ipaddress.ip_address(a["local"]) in net and not a.get("tentative") and \
           bool(a.get("deprecated")) == dep:
            print(a["local"]); sys.exit(0)' "${@:3}"
}

# kvx_wait_slaac NET NS:IF...: each interface has a usable address in NET
# within 20 s (the test stops otherwise).
kvx_wait_slaac() {
	local net=$1 g
	shift
	for g in "$@"; do
		must kvx_wait_for 20 "${g%%:*}: a SLAAC address in $net" \
			bash -c "[[ -n \$(ip -n '${g%%:*}' -6 -o addr show dev '${g#*:}' scope global -tentative to '$net') ]]"
	done
}

# kvx_relay_guest_addrs NET: both guests' SLAAC addresses in NET (waited
# for) into G1_6 and G2_6.
kvx_relay_guest_addrs() {
	kvx_wait_slaac "$1" "$NS_G1:$G1_IF" "$NS_G2:$G2_IF"
	G1_6=$(kvx_addr6_in "$NS_G1" "$G1_IF" "$1")
	G2_6=$(kvx_addr6_in "$NS_G2" "$G2_IF" "$1")
	kvx_log "guest addresses $G1_6 $G2_6"
}

# kvx_iperf3_both_ways NS SERVER PORT SEEN: iperf3 -6 from NS to the
# iperf3 server at [SERVER]:PORT (its log in $KVX_TMP/iperf3.log), each
# direction over 1 Mbit/s, the server having seen only SEEN as the client.
kvx_iperf3_both_ways() {
	local dir bps
	for dir in "" -R; do
		bps=$(kvx_iperf3_bps "$1" -6 -c "$2" -p "$3" -t 2 $dir)
		kvx_log "iperf3 -6 ${dir:-(client->server)}: ${bps} bit/s"
		assert_ge "iperf3 -6 ${dir:-forward} throughput > 1 Mbit/s" "$bps" 1000000
	done
	assert_eq "the iperf3 server saw only $4" "$4" \
		"$(grep -ao 'Accepted connection from [0-9a-f:]*' "$KVX_TMP/iperf3.log" | awk '{print $4}' | sort -u | paste -sd' ' || true)"
}

# kvx_iperf3_bps NS IPERF3-ARGS...: an iperf3 client in NS (-J); prints
# the receiver's bits per second, or "error".
kvx_iperf3_bps() {
	local ns=$1 j
	shift
	j=$(nsx "$ns" timeout 15 iperf3 "$@" --connect-timeout 3000 -J 2>&1 || true)
	"$KVX_PY" -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))' \
		<<<"$j" 2>/dev/null || echo error
}

# ---------------------------------------------------------------- QEMU guest
# kvx_qemu_image TEST: the Debian packages a QEMU guest test needs beyond
# this file's (command -> package), then the cached guest image
# (vm-tests/qemu/build-guest.sh): sets KVX_GUEST_KERNEL, KVX_GUEST_INITRD,
# KVX_GUEST_KVER, KVX_GUEST_BOOT.  Exits the test naming what is missing.
# Call it before kvx_init: a cold cache downloads the kernel package, which
# the watchdog must not count.
kvx_qemu_image() {
	local t=$1 missing=() cp f env
	for cp in qemu-system-x86_64:qemu-system-x86 cpio:cpio xz:xz-utils depmod:kmod \
		apt-get:apt dpkg:dpkg flock:util-linux readelf:binutils gzip:gzip; do
		command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp#*:}")
	done
	if [[ ! -x /bin/busybox ]] || [[ $(readelf -d /bin/busybox 2>/dev/null | grep -c NEEDED || true) != 0 ]]; then
		missing+=(busybox-static)
	fi
	if ((${#missing[@]})); then
		echo "[$t] FAIL: missing Debian packages: ${missing[*]} (scripts/install-deps.sh installs them)" >&2
		exit 1
	fi
	for f in pvh.bin linuxboot_dma.bin; do
		[[ -e /usr/share/qemu/$f ]] || {
			echo "[$t] FAIL: /usr/share/qemu/$f missing (Debian package qemu-system-data)" >&2
			exit 1
		}
	done
	env=$(bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/qemu/build-guest.sh") || {
		echo "[$t] FAIL: cannot build the guest image (see above)" >&2
		exit 1
	}
	eval "$env"
}

# kvx_qemu_guest CONSOLE TAP MEM LIMIT_S DEVICE APPEND: boots the cached
# Debian guest (vm-tests/qemu/build-guest.sh: KVX_GUEST_KERNEL/INITRD) in the
# host ns with DEVICE on TAP (vhost off: QEMU's own virtio backend), kernel
# arguments APPEND after the console ones; waits until it powers off, at
# most LIMIT_S seconds (then kills it and returns 1), and leaves the console
# without carriage returns in CONSOLE.txt.
kvx_qemu_guest() {
	local con=$1 tap=$2 mem=$3 limit=$4 dev=$5 append=$6 pid i rc=0
	kvx_bg "$con" ip netns exec "$NS_HOST" qemu-system-x86_64 \
		-nodefaults -display none -serial stdio -no-reboot -machine pc -m "$mem" -smp 1 \
		-kernel "$KVX_GUEST_KERNEL" -initrd "$KVX_GUEST_INITRD" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 $append" \
		-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=off" \
		-device "$dev"
	pid=$KVX_LAST_PID
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		rc=1
		kvx_kill_pid "$pid"
	fi
	wait "$pid" 2>/dev/null || true
	tr -d '\r' <"$con" >"$con.txt"
	return "$rc"
}

# ---------------------------------------------------------------- guest HTTP
# An HTTP server on port 80 in each guest, serving a file "who" that names
# the guest; its access log ($KVX_TMP/g<N>.http.log) carries the client
# address the guest saw.
kvx_guest_http_servers() {
	local g ns
	for g in 1 2; do
		ns=NS_G$g
		mkdir -p "$KVX_TMP/www$g"
		echo "guest$g" >"$KVX_TMP/www$g/who"
		kvx_bg "$KVX_TMP/g$g.http.log" ip netns exec "${!ns}" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
			--bind 0.0.0.0 --directory "$KVX_TMP/www$g" 80
		kvx_wait_tcp_listen 10 "${!ns}" 80
	done
}
kvx_http_get() { # NS URL -> body ('' on failure)
	nsx "$1" curl -sS --fail --max-time 3 "$2" 2>/dev/null || true
}
kvx_http_last_client() { awk '/"GET /{a=$1} END{print a}' "$1"; } # LOG
