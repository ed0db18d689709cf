#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/qemu_relay.sh: relay mode with a REAL guest kernel (Debian 12's
# stock 6.1, QEMU TCG, virtio-net on a tap with its default offloads): the
# guest takes an IPv6 address by SLAAC from kvmxdp's router advertisements
# on the bridge, in the uplink's own /64 (which the LAN router announces),
# pings a server beyond the router and downloads a file over IPv6, checked by
# sha256; the server sees the guest's own address (no NAT), the host's kernel
# forwards nothing (Ip6OutForwDatagrams flat: kvmxdp forwarded), checksum
# errors 0 in the guest, the LAN and the server.
#
#   guest (QEMU) virtio-net <-> tap kt<id> --+ bridge kb<id> (fe80:: only), host ns
#                                             | uplink ku<id>: SLAAC in 2001:db8:1::/64
#   lan ns: router kl<id> 2001:db8:1::1/64 + radvd, kr<id> 2001:db8:78::1/64
#   server ns: ks<id> 2001:db8:78::2/64, default via the router
#   (the lib.sh topology, as vm-tests/relay.sh; its veth guests stay idle)
#
# Usage: qemu_relay.sh KVMXDP_BINARY
# Env: as qemu_guest.sh (KVX_VM_CACHE, KVX_QEMU_MB, KVX_KEEP_TMP, KVX_TIMEOUT).
source "$(dirname "$0")/lib.sh"

kvx_require_root
kvx_require_amd64
qr_t0=$(date +%s%N)
kvx_qemu_image qemu_relay
qr_build_ms=$((($(date +%s%N) - qr_t0) / 1000000))

: "${KVX_TIMEOUT:=150}"
kvx_init "${1:-}"
kvx_require_tools radvd
kvx_log "guest: $KVX_GUEST_BOOT boot of $KVX_GUEST_KERNEL ($KVX_GUEST_KVER); image ready in ${qr_build_ms} ms"
kvx_topology_up
MB=${KVX_QEMU_MB:-4}
N1=2001:db8:1::/64 LAN6=2001:db8:1::1
SRV6=2001:db8:78::2 RTR6=2001:db8:78::1

kvx_step "IPv6 addressing: the LAN router announces $N1, the uplink takes an address by SLAAC"
kvx_lan6_up "$LAN6" "$RTR6" "$SRV6"
kvx_lan6_radvd "$N1"
must kvx_wait_for 10 "the bridge's link-local address" bash -c "[[ -n \$(ip -n '$NS_HOST' -6 -o addr show dev '$BR' scope link -tentative) ]]"
BR_LL=$(ip -n "$NS_HOST" -6 -o addr show dev "$BR" scope link -tentative | awk '{print $4}' | cut -d/ -f1)

kvx_step "server: HTTP on [$SRV6]:8080"
mkdir -p "$KVX_TMP/www"
dl_sha=$(kvx_random_file blob "$MB")
kvx_bg "$KVX_TMP/http.log" ip netns exec "$NS_SRV" "$KVX_PY" -u "$KVX_LIBDIR/http_serve.py" \
	--bind "$SRV6" --directory "$KVX_TMP/www" 8080
kvx_wait_tcp_listen 10 "$NS_SRV" 8080

kvx_step "attach --ipv6 relay"
kvx_attach_bg --ipv6 relay || kvx_fatal "cannot attach"
fwd0=$(kvx_fwd6_datagrams)
csum6() { nsx "$1" awk '$1 ~ /^(Icmp6InCsumErrors|Udp6InCsumErrors)$/ {s += $2} END {print s + 0}' /proc/net/snmp6; }

tap=kt1$KVX_ID con=$KVX_TMP/console.1.log mac=52:54:00:4b:58:31
kvx_step "boot: the guest takes its address by SLAAC and downloads over IPv6"
ip -n "$NS_HOST" tuntap add dev "$tap" mode tap
ip -n "$NS_HOST" link set "$tap" master "$BR"
ip -n "$NS_HOST" link set "$tap" up
t0=$(date +%s%N)
kvx_qemu_guest "$con" "$tap" 256M 60 "virtio-net-pci,netdev=n0,mac=$mac,romfile=" \
	"kvx.srv6=$SRV6 kvx.http6=8080 kvx.file=blob" ||
	kvx_fail "QEMU still running after 60 s; console: $(tail -n 30 "$con.txt")"
kvx_log "QEMU ran $((($(date +%s%N) - t0) / 1000000)) ms; guest timeline: $(sed -n 's/^KVX t_\([a-z0-9_]*\)=\(.*\)/\1=\2/p' "$con.txt" | paste -sd' ')"
if ! grep -qx 'KVX end' "$con.txt"; then
	echo "---- console (last 40 lines) ----" >&2
	tail -n 40 "$con.txt" >&2
	kvx_fatal "the guest did not get through its checks (its console is above)"
fi
qv() { sed -n "s/^KVX $1=//p" "$con.txt" | tail -n1; }
# (the guest prints /proc/net/if_inet6's full form: compressed here, as the
# server's log has it)
g6=$("$KVX_PY" -c 'import ipaddress,sys; print(ipaddress.ip_address(sys.argv[1]))' "$(qv ip6)" 2>/dev/null || true)
kvx_log "guest address $g6; default route: $(qv route6)"
assert_eq "guest runs Debian's kernel" "$KVX_GUEST_KVER" "$(qv kver)"
assert_empty "every module loaded" "$(qv insmod_failed)"
assert_eq "the guest's SLAAC address is in the uplink's /64 $N1" yes \
	"$("$KVX_PY" -c 'import ipaddress,sys; print("yes" if sys.argv[1] and ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else "no")' "$g6" "$N1" 2>/dev/null || echo no)"
assert_contains "the guest's default route is the bridge's link-local, from kvmxdp's RA" "via $BR_LL" "$(qv route6)"
assert_eq "ping -6 5/5 to the server" 5 "$(qv ping6_rx)"
assert_eq "wget -6 exit status" 0 "$(qv dl6_rc)"
assert_eq "$MB MiB download over IPv6, bytes" $((MB * 1048576)) "$(qv dl6_bytes)"
assert_eq "$MB MiB download over IPv6 intact (sha256)" "$dl_sha" "$(qv dl6_sha)"
assert_eq "guest Icmp6/Udp6 InCsumErrors" "Icmp6InCsumErrors=0,Udp6InCsumErrors=0" "$(qv csum6_errors)"
assert_eq "guest Tcp InCsumErrors" 0 "$(qv tcp_csum_errors)"
# With the offloads on (the default), the download reaches the guest as GSO
# super-packets through kvmxdp and the tap.
assert_le "the download reached the guest as GSO super-packets (rx packets)" \
	"$(qv dl6_rx_pkts)" $((MB * 1048576 / 1428))
ip -n "$NS_HOST" link delete "$tap"

kvx_step "server side: the guest's own address, no NAT; the host forwarded nothing"
assert_eq "HTTP server saw the guest's own address" "$g6" \
	"$(awk '/"GET /{print $1}' "$KVX_TMP/http.log" | sort -u | paste -sd' ')"
assert_le "host Ip6OutForwDatagrams barely moved (kvmxdp forwarded)" $(($(kvx_fwd6_datagrams) - fwd0)) 20
assert_ge "RELAY_OUT counted the guest's packets" "$(kvx_counter RELAY_OUT)" 10
assert_ge "RELAY_IN counted the server's packets" "$(kvx_counter RELAY_IN)" 10
for ns in "$NS_LAN" "$NS_SRV"; do
	assert_eq "${ns##*-}: Icmp6/Udp6 InCsumErrors" 0 "$(csum6 "$ns")"
done
kvx_assert_no_csum_errors
assert_eq "daemon still running" 0 "$(kill -0 "$KVX_DAEMON_PID" 2>/dev/null; echo $?)"
kvx_log "total $((($(date +%s%N) - qr_t0) / 1000000)) ms (image ${qr_build_ms} ms)"
kvx_finish
