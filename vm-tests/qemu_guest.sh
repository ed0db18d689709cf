#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/qemu_guest.sh: a REAL guest kernel (Debian 12's stock 6.1, QEMU
# TCG, virtio-net on a tap) behind kvmxdp: ping, an HTTP download, an upload
# and a UDP request/response (TFTP) from inside the guest, every payload
# checked by sha256, zero checksum errors on either side, the server sees only
# the uplink address.  Two boots: the virtio NIC's default offloads (the guest
# sends partial checksums and TSO super-packets, and receives them) and
# csum=off,guest_csum=off (full checksums, no TSO, in both directions).
#
#   guest (QEMU, 192.168.122.21 / .22, gw .1)
#     virtio-net-pci <-> tap kt<id> --+ bridge kb<id> (192.168.122.1/24), host ns
#                                       uplink ku<id> 10.77.0.2/24  <- kvmxdp
#   lan ns: router 10.77.0.1 <-> 10.78.0.1;  server ns: 10.78.0.2
#   (the lib.sh topology; its two veth guests stay idle)
#
# The guest image is built from Debian packages by vm-tests/qemu/build-guest.sh
# and cached in $KVX_VM_CACHE (default ${XDG_CACHE_HOME:-/var/cache}/kvmxdp-vm-tests):
# the first run downloads the kernel package (~70 MB), later runs reuse it.
#
# Usage: qemu_guest.sh KVMXDP_BINARY
# Env: KVX_VM_CACHE (cache dir), KVX_QEMU_MB (upload/download size, default 4),
#      KVX_KEEP_TMP=1 (keep logs, incl. the serial consoles), KVX_TIMEOUT (watchdog, 150 s).
# Partial checksums and GSO only exist with real traffic (docs/pitfalls.md,
# test-run-checksums): here they come from a real virtio-net driver, not
# from veths.
source "$(dirname "$0")/lib.sh"

kvx_require_root
kvx_require_amd64
# The guest image first (before the watchdog starts: a cold cache downloads).
qg_t0=$(date +%s%N)
kvx_qemu_image qemu_guest
qg_build_ms=$((($(date +%s%N) - qg_t0) / 1000000))

# Watchdog (lib.sh): two boots that run into every timeout of init.sh take
# 2 x 60 s; a passing run ~20 s.  The image build above is not counted.
: "${KVX_TIMEOUT:=150}"
kvx_init "${1:-}"
kvx_log "guest: $KVX_GUEST_BOOT boot of $KVX_GUEST_KERNEL ($KVX_GUEST_KVER), initrd $KVX_GUEST_INITRD; image ready in ${qg_build_ms} ms"
kvx_topology_up
MB=${KVX_QEMU_MB:-4}

kvx_step "servers: sniffer, HTTP, upload sinks, TFTP"
kvx_server_sniffer
kvx_http_server
dl_sha=$(kvx_random_file blob "$MB")
mkdir -p "$KVX_TMP/tftp"
head -c $((128 * 1024 + 77)) /dev/urandom >"$KVX_TMP/tftp/tblob"
tftp_sha=$(sha256sum "$KVX_TMP/tftp/tblob" | cut -d' ' -f1)
kvx_bg "$KVX_TMP/tftp.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/qemu/tftp_server.py" \
	"$SRV_IP" 6969 "$KVX_TMP/tftp"
kvx_wait_file_contains 10 "$KVX_TMP/tftp.log" serving

kvx_step "attach"
kvx_attach_bg || kvx_fatal "cannot attach"

# qg_boot N MODE IP MAC: one guest boot on a new tap; MODE offload|nooffload.
# Leaves the console in $KVX_TMP/console.N.log.
qg_boot() {
	local n=$1 mode=$2 ip=$3 mac=$4 tap dev con up_port t0
	tap=kt$n$KVX_ID dev=virtio-net-pci,netdev=n0,mac=$mac,romfile=
	con=$KVX_TMP/console.$n.log up_port=$((5100 + n))
	[[ $mode == nooffload ]] && dev+=,csum=off,guest_csum=off
	kvx_step "boot $n: $mode ($dev)"
	# the tap lives in the host ns (deleted with it); onto the bridge
	ip -n "$NS_HOST" tuntap add dev "$tap" mode tap
	ip -n "$NS_HOST" link set "$tap" master "$BR"
	ip -n "$NS_HOST" link set "$tap" up
	kvx_bg "$KVX_TMP/upload.$n.log" ip netns exec "$NS_SRV" socat -d -d -u \
		"TCP-LISTEN:$up_port,bind=$SRV_IP,reuseaddr" "CREATE:$KVX_TMP/upload.$n"
	kvx_wait_tcp_listen 10 "$NS_SRV" "$up_port"
	qg_out0=$(kvx_counter XLATE_OUT) qg_out0b=$(kvx_counter XLATE_OUT bytes)
	t0=$(date +%s%N)
	# the guest powers off after "KVX end"; every step in it has a timeout
	# (~6 s here; the guest's own timeouts add up to < 60 s)
	kvx_qemu_guest "$con" "$tap" 256M 60 "$dev" \
		"kvx.ip=$ip/24 kvx.gw=$GW_IP kvx.srv=$SRV_IP kvx.http=8080 kvx.file=blob kvx.up=$up_port kvx.mb=$MB kvx.tftp=6969 kvx.tfile=tblob" ||
		kvx_fail "boot $n: QEMU still running after 60 s; console: $(tail -n 30 "$con.txt")"
	qg_ms=$((($(date +%s%N) - t0) / 1000000))
	kvx_log "boot $n: QEMU ran ${qg_ms} ms; guest timeline: $(sed -n 's/^KVX t_\([a-z_]*\)=\(.*\)/\1=\2/p' "$con.txt" | paste -sd' ')"
	if ! grep -qx 'KVX end' "$con.txt"; then
		# every step in the guest has a timeout: it crashed or QEMU died
		echo "---- console of boot $n (last 40 lines) ----" >&2
		tail -n 40 "$con.txt" >&2
		kvx_fatal "boot $n: the guest did not get through its checks (its console is above)"
	fi
	qg_check "$n" "$mode" "$ip" "$mac"
	ip -n "$NS_HOST" link delete "$tap"
}

qg_val() { sed -n "s/^KVX $2=//p" "$KVX_TMP/console.$1.log.txt" | tail -n1; }

qg_check() {
	local n=$1 mode=$2 ip=$3 mac=$4 feat bits srv_sha srv_bytes
	assert_eq "boot $n: guest runs Debian's kernel" "$KVX_GUEST_KVER" "$(qg_val "$n" kver)"
	assert_empty "boot $n: every module loaded" "$(qg_val "$n" insmod_failed)"
	assert_eq "boot $n: eth0 MAC" "$mac" "$(qg_val "$n" mac)"
	feat=$(qg_val "$n" features)
	# virtio-net feature bits: 0 CSUM (guest sends partial checksums),
	# 1 GUEST_CSUM (host may send them), 7 GUEST_TSO4, 11 HOST_TSO4 (guest
	# TSO).  With csum=off,guest_csum=off QEMU still offers the TSO bits, but
	# the guest's driver uses no TSO without CSUM (the packet sizes below
	# prove which way it went).
	if [[ $mode == offload ]]; then
		bits="${feat:0:1}${feat:1:1}${feat:7:1}${feat:11:1}"
		assert_eq "boot $n: negotiated CSUM GUEST_CSUM GUEST_TSO4 HOST_TSO4" 1111 "$bits"
	else
		bits="${feat:0:1}${feat:1:1}"
		assert_eq "boot $n: negotiated CSUM GUEST_CSUM" 00 "$bits"
	fi
	assert_eq "boot $n: ping 10/10 to the server" 10 "$(qg_val "$n" ping_rx)"
	assert_eq "boot $n: ping -s 1400 3/3" 3 "$(qg_val "$n" ping_big_rx)"
	assert_eq "boot $n: wget exit status" 0 "$(qg_val "$n" dl_rc)"
	assert_eq "boot $n: $MB MiB download, bytes" $((MB * 1048576)) "$(qg_val "$n" dl_bytes)"
	assert_eq "boot $n: $MB MiB download intact (sha256)" "$dl_sha" "$(qg_val "$n" dl_sha)"
	assert_eq "boot $n: nc upload exit status" 0 "$(qg_val "$n" up_rc)"
	srv_bytes=$(stat -c %s "$KVX_TMP/upload.$n" 2>/dev/null || echo none)
	srv_sha=$(sha256sum "$KVX_TMP/upload.$n" 2>/dev/null | cut -d' ' -f1 || true)
	assert_eq "boot $n: $MB MiB upload, bytes at the server" $((MB * 1048576)) "$srv_bytes"
	assert_eq "boot $n: upload intact at the server (sha256 = the guest's)" "$(qg_val "$n" up_sha)" "${srv_sha:-none}"
	assert_eq "boot $n: TFTP exit status" 0 "$(qg_val "$n" tftp_rc)"
	assert_eq "boot $n: TFTP (UDP) payload intact (sha256)" "$tftp_sha" "$(qg_val "$n" tftp_sha)"
	assert_eq "boot $n: guest Icmp/Tcp/Udp InCsumErrors" "Icmp=0,Tcp=0,Udp=0" "$(qg_val "$n" csum_errors)"
	assert_eq "boot $n: guest eth0 rx_errors" 0 "$(qg_val "$n" eth0_rx_errors)"
	# What the guest handed its NIC during the upload, and what kvmxdp translated.
	local tp tb avg xo xob rxp
	# What the guest received during the download: GSO super-packets through
	# kvmxdp and the tap with GUEST_CSUM/GUEST_TSO4, MTU-sized ones otherwise.
	rxp=$(qg_val "$n" dl_rx_pkts)
	kvx_log "boot $n: download: guest rx $rxp packets for $((MB * 1048576)) bytes"
	if [[ $mode == offload ]]; then
		assert_le "boot $n: the download reached the guest as GSO super-packets (rx packets)" \
			"$rxp" $((MB * 1048576 / 1448))
	else
		assert_ge "boot $n: the download reached the guest in MTU-sized packets (rx packets)" \
			"$rxp" $((MB * 1048576 / 1500))
	fi
	tp=$(qg_val "$n" up_tx_pkts) tb=$(qg_val "$n" up_tx_bytes)
	avg=$((${tb:-0} / (${tp:-0} > 0 ? tp : 1)))
	xo=$(($(kvx_counter XLATE_OUT) - qg_out0)) xob=$(($(kvx_counter XLATE_OUT bytes) - qg_out0b))
	kvx_log "boot $n: upload: guest tx $tp packets / $tb bytes (avg $avg); kvmxdp XLATE_OUT this boot: $xo packets / $xob bytes (avg $((xob / (xo > 0 ? xo : 1))))"
	if [[ $mode == offload ]]; then
		assert_ge "boot $n: the guest sent TSO super-packets (avg bytes/packet in the upload)" "$avg" 3000
		assert_le "boot $n: kvmxdp translated them as GSO packets (XLATE_OUT packets < upload bytes/1448)" \
			"$xo" $((MB * 1048576 / 1448))
	else
		# (the guest's own tx counters lag behind its tx completions: only
		# kvmxdp's count is exact here)
		assert_ge "boot $n: kvmxdp translated every MTU-sized segment" "$xo" $((MB * 1048576 / 1500))
	fi
	local peer
	peer=$(sed -n 's/.*accepting connection from AF=2 \([0-9.]*\):.*/\1/p' "$KVX_TMP/upload.$n.log")
	assert_eq "boot $n: upload sink saw the uplink address" "$UP_IP" "$peer"
}

qg_boot 1 offload 192.168.122.21 52:54:00:4b:58:21
qg_boot 2 nooffload 192.168.122.22 52:54:00:4b:58:22

kvx_step "server side: addresses seen, checksums"
clients=$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')
assert_eq "HTTP server saw only the uplink address" "$UP_IP" "$clients"
assert_eq "HTTP server served 2 downloads" 2 "$(grep -c '"GET /blob HTTP/1.[01]" 200' "$KVX_TMP/http.log" || true)"
tpeers=$(sed -n 's/^peer=\([0-9.]*\):.* result=ok$/\1/p' "$KVX_TMP/tftp.log" | sort | uniq -c | awk '{print $2 "x" $1}')
assert_eq "TFTP server: 2 transfers, all from the uplink address" "${UP_IP}x2" "$tpeers"
srcs=$(kvx_server_sources)
kvx_log "sources seen by the server: $srcs"
assert_eq "every packet the server received came from the uplink address" "$UP_IP" "$srcs"
kvx_assert_no_csum_errors
st=$(kvx_status_json)
kvx_log "kvmxdp counters: $(kvx_json '" ".join("%s=%d" % (k, v["packets"]) for k, v in i["counters"].items() if v["packets"])' "$st")"
for r in DROP_MALFORMED DROP_SPOOFED DROP_FIB DROP_OTHER_IFACE DROP_BROKEN_PAIR DROP_TABLE_FULL \
	DROP_PORTS_EXHAUSTED DROP_NO_UPLINK_ADDR DROP_FILTERED; do
	assert_eq "counter $r" 0 "$(kvx_json "i['counters']['$r']['packets']" "$st")"
done
assert_eq "daemon still running" 0 "$(kill -0 "$KVX_DAEMON_PID" 2>/dev/null; echo $?)"
kvx_log "total $((($(date +%s%N) - qg_t0) / 1000000)) ms (image ${qg_build_ms} ms)"
kvx_finish
