# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# vm-tests/qemu/host61.sh: host side of the 6.1 test VM, sourced by
# vm-tests/kernel61.sh and vm-tests/wifi61.sh after lib.sh.
#
#   vm61_image KVMXDP BPF_TEST   builds the image (build-vm61.sh) into $KVX_TMP
#   vm61_boot TEST [APPEND...]    boots it with kvx.test=TEST, waits for the
#                                 power-off (until 15 s before the watchdog), leaves
#                                 the console in $VM61_CON (CR stripped);
#                                 fatal if the VM never printed "KVX end"
#   vm61_val KEY                  the last "KVX KEY=value" of the console
#   vm61_json EXPR                a python expression on `d`, the JSON of the
#                                 console's "KVX status_json=" line
#
# QEMU has no network device (nothing reaches the host's network): every
# result comes back over the serial console.  TCG only (no KVM here).

vm61_require() {
	VM61_START=$(date +%s)
	local missing=()
	command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
	[[ -e /usr/share/qemu/pvh.bin ]] || missing+=(qemu-system-data)
	((${#missing[@]} == 0)) || {
		echo "[$KVX_TEST] FAIL: missing Debian packages: ${missing[*]} (scripts/install-deps.sh installs them)" >&2
		exit 1
	}
}

vm61_image() { # KVMXDP BPF_TEST
	local t0 env
	kvx_step "image: Debian's 6.1 kernel + an initramfs with this build"
	t0=$(date +%s%N)
	env=$(bash "$KVX_LIBDIR/qemu/build-vm61.sh" "$1" "$2" "$KVX_TMP/initrd.gz") ||
		kvx_fatal "cannot build the VM image (see above)"
	eval "$env"
	kvx_log "kernel $KVX_GUEST_KERNEL ($KVX_GUEST_BOOT, $KVX_GUEST_KVER); image in $((($(date +%s%N) - t0) / 1000000)) ms"
}

vm61_boot() { # TEST [EXTRA KERNEL ARGS...]
	local test=$1 con qpid limit i t0
	shift
	kvx_step "boot the 6.1 VM: $test"
	con=$KVX_TMP/console.$test.log
	VM61_CON=$con.txt
	t0=$(date +%s%N)
	kvx_bg "$con" qemu-system-x86_64 -nodefaults -display none -serial stdio -no-reboot \
		-machine pc -m 1024M -smp "${VM61_SMP:-1}" \
		-kernel "$KVX_GUEST_KERNEL" -initrd "$KVX_GUEST_INITRD" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 kvx.test=$test $*"
	qpid=$KVX_LAST_PID
	# what lib.sh's watchdog (started by kvx_init) leaves, minus 15 s for
	# the assertions and the teardown
	limit=$((${KVX_TIMEOUT:-100} - ($(date +%s) - ${VM61_START:-$(date +%s)}) - 15))
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$qpid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$qpid" 2>/dev/null; then
		kvx_fail "the VM still runs after ${limit} s"
		kvx_kill_pid "$qpid"
	fi
	wait "$qpid" 2>/dev/null || true
	tr -d '\r' <"$con" >"$VM61_CON"
	kvx_log "QEMU ran $((($(date +%s%N) - t0) / 1000000)) ms; VM timeline: $(sed -n 's/^KVX t_\([a-z_0-9]*\)=\(.*\)/\1=\2/p' "$VM61_CON" | paste -sd' ')"
	if ! grep -qx 'KVX end' "$VM61_CON"; then
		echo "---- VM console (last 60 lines) ----" >&2
		tail -n 60 "$VM61_CON" >&2
		kvx_fatal "the VM did not get through its checks"
	fi
	assert_eq "VM runs Debian's kernel" "$KVX_GUEST_KVER" "$(vm61_val kver)"
	assert_eq "VM kernel is a 6.1" 6.1 "$(vm61_val kver | cut -d. -f1-2)"
	assert_empty "every module loaded" "$(vm61_val insmod_failed)"
}

vm61_val() { sed -n "s/^KVX $1=//p" "$VM61_CON" | tail -n1; }
val() { vm61_val "$@"; }

# vm61_test NAME KVMXDP_BINARY [BPF_TEST_BINARY]: the common start of the
# 6.1 VM tests: root and tools, the test's temp dir and watchdog (300 s
# unless KVX_TIMEOUT says otherwise; the image build is not counted), the
# image with this build, the boot running the in-VM script NAME.  The BPF
# test binary defaults to tests/bpf/kvmxdp_bpf_test next to kvmxdp.
vm61_test() {
	local name=$1 kvmxdp=${2:-} bpftest=${3:-}
	kvx_require_root
	kvx_require_amd64
	vm61_require
	: "${bpftest:=$(dirname "${kvmxdp:-.}")/tests/bpf/kvmxdp_bpf_test}"
	: "${KVX_TIMEOUT:=300}"
	kvx_init "$kvmxdp"
	[[ -n $KVMXDP ]] || kvx_fatal "usage: $name.sh KVMXDP_BINARY [BPF_TEST_BINARY]"
	vm61_image "$KVMXDP" "$bpftest"
	vm61_boot "$name"
}

vm61_json() { # EXPR [KEY]: on the last "KVX KEY=" line (default status_json)
	vm61_val "${2:-status_json}" | "$KVX_PY" -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
    v = eval(sys.argv[1])
except Exception:
    sys.exit(0)
print("null" if v is None else ("true" if v is True else ("false" if v is False else (json.dumps(v) if isinstance(v, (dict, list)) else v))))
' "$1"
}
