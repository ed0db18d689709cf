#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/kernel61.sh: kernel portability.  Boots Debian 12's stock 6.1
# kernel under QEMU (TCG, no network device: results come back over the
# serial console) with an initramfs carrying THIS build's kvmxdp and BPF test
# binaries (vm-tests/qemu/build-vm61.sh), and inside it:
#   1. runs the BPF program tests: the 6.1 verifier must accept the datapath;
#   2. a netns smoke test through kvmxdp (vm-tests/qemu/vm61-kernel61.sh):
#
#   ns g    192.168.122.11 --+ br0 192.168.122.1/24     (the VM's root ns = host)
#                              up0 10.77.0.2/24  <- kvmxdp attach --bridge br0 --uplink up0
#   ns lan  10.77.0.1 (LAN client) / 10.78.0.1 (router)
#   ns srv  10.78.0.2 (HTTP + upload sink; no route back to the guests)
#
#   masquerade (ping, 3 MiB download, 2 MiB upload, both by sha256; the
#   server sees the uplink address), `map add 10.77.0.50 192.168.122.11`
#   reached from the LAN (the guest sees the client's real address), then
#   `detach` leaves no filter, clsact or pin and the daemon is gone.  Before
#   that, attach with the probes answering as a 5.10 kernel would
#   (KVMXDP_FAKE_KERNEL) must fail with one line naming bpf_check_mtu and
#   create nothing.
#
# Nothing of this touches the host's network: QEMU has no network device.
# Usage: kernel61.sh KVMXDP_BINARY [BPF_TEST_BINARY]
#   (default: tests/bpf/kvmxdp_bpf_test next to the kvmxdp binary)
# Env: KVX_VM_CACHE, KVX_KEEP_TMP=1 (keeps the console log), KVX_TIMEOUT.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/qemu/host61.sh"

# Under TCG the boot takes ~4 s, the BPF tests ~760 s on one vCPU (a
# test's syscalls are emulated kernel work), the smoke test ~40 s: the VM
# gets a vCPU per host core (at most 4) and runs one test shard on each.
cores=$(nproc)
export VM61_SMP=${VM61_SMP:-$((cores > 4 ? 4 : cores))}
vm61_test kernel61 "$@"
con=${VM61_CON%.txt}

kvx_step "the VM's results"
assert_eq "in-VM script ran to its end" 0 "$(val script_rc)"

# BPF tests
if [[ $(val gtest_rc) != 0 ]]; then
	echo "---- BPF tests in the VM (failures, verifier log) ----" >&2
	sed -n 's/^KVXG //p' "$con.txt" | tail -n 200 >&2
fi
assert_eq "BPF tests: one shard per vCPU" "$VM61_SMP" "$(val gtest_shards)"
assert_eq "BPF tests: exit status on 6.1" 0 "$(val gtest_rc)"
assert_eq "BPF tests: none failed" 0 "$(val gtest_failed)"
assert_eq "BPF tests: not skipped" 0 "$(val gtest_skipped)"
# Every test of the binary the VM ran (the same one, listed here) passes on
# 6.1 but the known exclusions, which must be the tests that skip there
# (none: 6.1 has every helper and program type the datapath uses).
K61_EXCLUDED=()
k61_bin=${2:-$(dirname "$KVMXDP")/tests/bpf/kvmxdp_bpf_test}
k61_total=$("$k61_bin" --gtest_list_tests | grep -c '^  ' || true)
kvx_log "BPF tests in $k61_bin: $k61_total, excluded on 6.1: ${K61_EXCLUDED[*]:-none}"
assert_ge "BPF tests: the binary lists its tests" "$k61_total" 1
assert_eq "BPF tests: passed on 6.1, all but the exclusions" $((k61_total - ${#K61_EXCLUDED[@]})) "$(val gtest_passed)"
assert_eq "BPF tests: skipped on 6.1, exactly the exclusions" \
	"$(printf '%s\n' "${K61_EXCLUDED[@]}" | sed '/^$/d' | sort | paste -sd, -)" "$(val gtest_skipped_tests)"

# smoke test
sed -n 's/^KVXA //p' "$con.txt" | sed 's/^/  vm: /' >&2
if grep -q '^KVXV ' "$con.txt"; then
	echo "---- kvmxdp -v attach in the VM: the 6.1 verifier's log (end) ----" >&2
	sed -n 's/^KVXV //p' "$con.txt" >&2
fi
assert_ne "attach on a 5.10 kernel (KVMXDP_FAKE_KERNEL): exit status" 0 "$(val old_rc)"
assert_eq "attach on a 5.10 kernel: one line on stderr" 1 "$(val old_err_lines)"
assert_contains "attach on a 5.10 kernel: names the feature and the kernel that has it" \
	"kvmxdp: error: kernel 5.10.0-30-amd64 lacks what the datapath needs: bpf_check_mtu (Linux >= 5.12)" "$(val old_err)"
assert_eq "attach on a 5.10 kernel: nothing created (clsact br0, up0, pins, config, forwarding)" \
	"0,0,0,no-config,0" "$(val old_left)"
assert_eq "kvmxdp attach on 6.1" 1 "$(val attached)"
assert_eq "TC filter on br0 ingress runs kvx_br_ingress" 1 "$(val tc_br0)"
assert_eq "TC filter on up0 ingress runs kvx_up_ingress" 1 "$(val tc_up0)"
assert_eq "guest -> server ping 5/5" 5 "$(val ping_rx)"
assert_eq "3 MiB download exit status" 0 "$(val dl_rc)"
assert_eq "3 MiB download bytes" 3145728 "$(val dl_bytes)"
k61_sha=$(val blob_sha)
assert_eq "the VM hashed the served file (sha256 length)" 64 "${#k61_sha}"
assert_eq "download intact (sha256)" "$(val blob_sha)" "$(val dl_sha)"
assert_eq "server sees the guest as the uplink address" 10.77.0.2 "$(val srv_sees)"
assert_eq "2 MiB upload exit status" 0 "$(val up_rc)"
assert_eq "upload bytes at the server" 2097152 "$(val up_srv_bytes)"
k61_sha=$(val up_sha)
assert_eq "the VM hashed the upload (sha256 length)" 64 "${#k61_sha}"
assert_eq "upload intact at the server (sha256)" "$(val up_sha)" "$(val up_srv_sha)"
assert_eq "map add 10.77.0.50 192.168.122.11" 0 "$(val map_rc)"
assert_eq "LAN -> 10.77.0.50 reaches the guest" guest-g "$(val lan_who)"
assert_eq "the guest sees the LAN client's real address" 10.77.0.1 "$(val guest_sees)"
assert_eq "the 1:1 guest's outbound traffic leaves from 10.77.0.50" 10.77.0.50 "$(val mapped_out)"
k61_json() { vm61_json "$1"; }
kvx_log "status kernel: $(k61_json 'json.dumps(d.get("kernel"))')"
assert_ge "XLATE_OUT counted" "$(k61_json 'd["instances"][0]["counters"]["XLATE_OUT"]["packets"]')" 100
assert_ge "XLATE_IN counted" "$(k61_json 'd["instances"][0]["counters"]["XLATE_IN"]["packets"]')" 100
assert_eq "no DROP_FIB" 0 "$(k61_json 'd["instances"][0]["counters"]["DROP_FIB"]["packets"]')"
assert_eq "no DROP_MALFORMED" 0 "$(k61_json 'd["instances"][0]["counters"]["DROP_MALFORMED"]["packets"]')"
if [[ $(k61_json '"kernel" in d') == true ]]; then
	assert_eq "status: kernel release" "$KVX_GUEST_KVER" "$(k61_json 'd["kernel"]["release"]')"
	assert_eq "status: tc hook used" netlink-clsact "$(k61_json 'd["kernel"]["tc_hook"]')"
	assert_eq "status: tcx not available on 6.1" false "$(k61_json 'd["kernel"]["tcx"]')"
	assert_eq "status: no required feature missing" "[]" "$(k61_json 'd["kernel"]["missing"]')"
	assert_eq "status: nothing degraded on 6.1" "[]" "$(k61_json 'd["kernel"]["degraded"]')"
	assert_eq "status: bpf_check_mtu, bpf_redirect_neigh, bpf_fib_lookup probed present" "true true true" \
		"$(k61_json 'd["kernel"]["helpers"]["bpf_check_mtu"]') $(k61_json 'd["kernel"]["helpers"]["bpf_redirect_neigh"]') $(k61_json 'd["kernel"]["helpers"]["bpf_fib_lookup"]')"
else
	kvx_fail "status --json has no \"kernel\" object"
fi
assert_eq "detach exit status" 0 "$(val detach_rc)"
assert_eq "daemon gone after detach" yes "$(val daemon_gone)"
assert_empty "no TC filter left on br0/up0" "$(val filters_after)"
assert_eq "no clsact left on br0,up0" 0,0 "$(val clsact_after)"
assert_empty "no pin left under /bpf/kvmxdp" "$(val pins_after)"
assert_eq "br0 forwarding restored" 0 "$(val br0_forwarding_after)"
assert_eq "no answer for the guest once detached" 0 "$(val ping_after_detach)"
kvx_finish
