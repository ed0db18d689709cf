#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/nspawn_deb.sh: the Debian package on a Debian 12 system with
# systemd as PID 1.  A bookworm tree (mmdebstrap, minbase plus systemd and
# the package's dependencies; cached as a tarball, unpacked anew each run)
# gets the .deb this build makes (cpack) installed with dpkg, an instance
# recorded in its config, `systemctl enable kvmxdp@kvxbr0`, and is booted
# with `systemd-nspawn --boot` in a network namespace of the test's own
# holding the bridge and the uplink.  Then, inside:
#   - kvmxdp@kvxbr0 is active, and systemd logged "Started" only after the
#     daemon's "attached" line (Type=notify: READY=1 once attached; a
#     Type=simple unit is "Started" at fork), with the daemon's STATUS=;
#   - `kvmxdp status --json` shows the datapath on the bridge and the uplink;
#   - `systemctl reload` returns 0, the daemon logs the SIGHUP reload and
#     keeps its pid;
#   - an upgrade (`dpkg -i` of the package again) restarts the daemon (the
#     postinst's deb-systemd-invoke try-restart), the datapath stays;
#   - `systemctl stop` stops the daemon and leaves the datapath (by design:
#     only detach removes it); so does `dpkg -r` (the prerm); `kvmxdp
#     detach` then removes the pins.
#
#   netns kvx-<id>-ct (the container's network): bridge kvxbr0 192.168.122.1/24,
#   uplink kvxup0 10.77.0.2/24 -- kvxlan0 10.77.0.1/24 (its peer, same netns)
#
# Usage: nspawn_deb.sh KVMXDP_BINARY (the build directory's binary: its
# CPackConfig.cmake makes the package).  The first run downloads the tree
# from the Debian archive (a few minutes); later runs use the cache
# ($KVX_NSPAWN_CACHE, default /var/cache/kvmxdp-fresh), renewed weekly.
KVX_TIMEOUT=${KVX_TIMEOUT:-800}
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools systemd-nspawn mmdebstrap cpack dpkg-deb
build=$(dirname "$KVMXDP")
[[ -f $build/CPackConfig.cmake ]] || kvx_fatal "no CPackConfig.cmake beside $KVMXDP"

kvx_step "the package"
cpack --config "$build/CPackConfig.cmake" -B "$KVX_TMP/pkg" >"$KVX_TMP/cpack.log" 2>&1 ||
	kvx_fatal "cpack: $(tail -5 "$KVX_TMP/cpack.log")"
deb=$(ls "$KVX_TMP"/pkg/kvmxdp_*.deb)

kvx_step "the Debian 12 tree"
cache=${KVX_NSPAWN_CACHE:-/var/cache/kvmxdp-fresh}
tarball=$cache/bookworm-nspawn-$(dpkg --print-architecture).tar
mkdir -p "$cache"
if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime +6) ]]; then
	kvx_log "making $tarball with mmdebstrap (minutes)"
	mmdebstrap --quiet --mode=root --variant=minbase --format=tar \
		--include=systemd,systemd-sysv,dbus,procps,python3,iproute2,libbpf1,libnl-3-200,libnl-route-3-200 \
		bookworm "$tarball.tmp" >"$KVX_TMP/mmdebstrap.log" 2>&1 ||
		kvx_fatal "mmdebstrap: $(tail -5 "$KVX_TMP/mmdebstrap.log")"
	mv "$tarball.tmp" "$tarball"
fi
root=$KVX_TMP/root
mkdir "$root"
tar -C "$root" -xf "$tarball"
cp "$deb" "$root/tmp/"
out=$(chroot "$root" dpkg -i "/tmp/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i: $out"
assert_contains "dpkg installed the package" "Setting up kvmxdp" "$out"
# The instance `kvmxdp attach --bridge kvxbr0 --uplink kvxup0` would have
# recorded, as a detached one: the unit's `attach --bridge %I` takes its uplink.
install -d -m 0700 "$root/etc/kvmxdp"
printf '{"version": 1, "instances": [], "detached": {"kvxbr0": {"uplink": "kvxup0", "mappings": []}}}\n' \
	>"$root/etc/kvmxdp/kvmxdp.json"
chmod 0600 "$root/etc/kvmxdp/kvmxdp.json"
assert_ok "systemctl enable kvmxdp@kvxbr0" chroot "$root" systemctl enable kvmxdp@kvxbr0

kvx_step "boot it with systemd-nspawn in netns kvx-$KVX_ID-ct"
ns=kvx-$KVX_ID-ct
kvx_netns_add "$ns"
ip -n "$ns" link add kvxbr0 type bridge
ip -n "$ns" addr add 192.168.122.1/24 dev kvxbr0
ip -n "$ns" link set kvxbr0 up
ip -n "$ns" link add kvxup0 type veth peer name kvxlan0
ip -n "$ns" addr add 10.77.0.2/24 dev kvxup0
ip -n "$ns" link set kvxup0 up
ip -n "$ns" link set kvxlan0 up
# The container's /sys is its own and read-only: the test's bpffs is bound
# to /sys/fs/bpf.  CAP_BPF and CAP_PERFMON are not in nspawn's default set,
# nor bpf(2) in its system call filter; CAP_NET_ADMIN is given only with a
# private network nspawn makes itself, not with --network-namespace-path.
kvx_bg "$KVX_TMP/boot.log" systemd-nspawn -D "$root" --boot --register=no --keep-unit \
	--machine="kvx$KVX_ID" --network-namespace-path="/run/netns/$ns" \
	--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN --system-call-filter=bpf \
	--bind="$BPFFS:/sys/fs/bpf"
nspawn=$KVX_LAST_PID
kvx_on_cleanup "kill -TERM $nspawn; sleep 2; kill -KILL $nspawn"
pid1=""
for ((i = 0; i < 100; i++)); do
	pid1=$(pgrep -P "$(pgrep -P "$nspawn" -x systemd-nspawn || echo "$nspawn")" -x systemd || true)
	[[ -n $pid1 ]] && break
	sleep 0.2
done
[[ -n $pid1 ]] || kvx_fatal "no systemd in the container: $(tail -20 "$KVX_TMP/boot.log")"
in_ct() { nsenter -t "$pid1" -a "$@"; }
kvx_log "container's PID 1: $pid1"
state=""
for ((i = 0; i < 120; i++)); do
	state=$(in_ct systemctl is-active kvmxdp@kvxbr0 2>/dev/null || true)
	[[ $state == active || $state == failed ]] && break
	sleep 0.5
done
journal=$(in_ct journalctl --no-pager -o cat -u kvmxdp@kvxbr0 2>&1 || true)
assert_eq "kvmxdp@kvxbr0 is active (journal: $journal)" active "$state"
started=$(grep -n '^Started kvmxdp@kvxbr0' <<<"$journal" | head -1 | cut -d: -f1 || true)
attached=$(grep -n '^kvmxdp: attached bridge=kvxbr0 uplink=kvxup0' <<<"$journal" | head -1 | cut -d: -f1 || true)
[[ -n $started && -n $attached ]] || kvx_fail "no 'attached' or 'Started' line: $journal"
assert_ge "systemd's 'Started' comes after the daemon's 'attached' (Type=notify)" "${started:-0}" $((${attached:-0} + 1))
assert_eq "STATUS= from the daemon" "StatusText=bridge kvxbr0, uplink kvxup0: attached" \
	"$(in_ct systemctl show -p StatusText kvmxdp@kvxbr0)"

st=$(in_ct kvmxdp status --json)
assert_eq "status --json inside: the instance" kvxbr0 \
	"$(python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"][0]["bridge"])' <<<"$st")"
assert_eq "status --json inside: TC on the bridge and the uplink" "kvxbr0 kvxup0" \
	"$(python3 -c 'import json,sys; print(" ".join(sorted(d["ifname"] for d in json.load(sys.stdin)["instances"][0]["devices"])))' <<<"$st" 2>&1)"
assert_eq "the bridge's filter, seen from the host" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"

kvx_step "systemctl reload"
mainpid=$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)
assert_ok "systemctl reload kvmxdp@kvxbr0" in_ct systemctl reload kvmxdp@kvxbr0
kvx_wait_for 10 "the daemon logs the reload" \
	bash -c "nsenter -t $pid1 -a journalctl --no-pager -o cat -u kvmxdp@kvxbr0 | grep -q 'SIGHUP: re-reading'"
assert_eq "still active after the reload" active "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the same daemon (MainPID)" "$mainpid" "$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)"

kvx_step "upgrade: dpkg -i again restarts the daemon (postinst)"
# The booted container's /tmp is a fresh tmpfs: the package is in /root.
cp "$deb" "$root/root/"
out=$(in_ct dpkg -i "/root/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i inside: $out"
kvx_wait_for 20 "a new daemon after the upgrade" bash -c \
	"[[ \$(nsenter -t $pid1 -a systemctl show -p MainPID --value kvmxdp@kvxbr0) != @(0|$mainpid) ]]"
kvx_wait_for 20 "active after the upgrade" bash -c \
	"[[ \$(nsenter -t $pid1 -a systemctl is-active kvmxdp@kvxbr0) == active ]]"
assert_eq "the datapath stays across the upgrade" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"

kvx_step "systemctl stop, then detach"
in_ct systemctl stop kvmxdp@kvxbr0 || true
assert_eq "inactive after stop" inactive "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the datapath stays after stop" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_ok "systemctl start kvmxdp@kvxbr0 again" in_ct systemctl start kvmxdp@kvxbr0
kvx_wait_for 20 "active again" bash -c \
	"[[ \$(nsenter -t $pid1 -a systemctl is-active kvmxdp@kvxbr0) == active ]]"

kvx_step "dpkg -r stops the daemon (prerm), then detach"
# A copy of the binary for the detach after the package is gone.
assert_ok "keep a copy of kvmxdp" in_ct cp /usr/sbin/kvmxdp /root/kvmxdp
out=$(in_ct dpkg -r kvmxdp 2>&1) || kvx_fatal "dpkg -r inside: $out"
assert_eq "inactive after dpkg -r" inactive "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the datapath stays after dpkg -r" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
# nspawn mounts the container's /proc/sys read-only (it does not count a
# network namespace it was handed as private as its own): detach, which
# puts the sysctls back, runs in a mount namespace of its own where the
# test (root of the host) made /proc/sys/net writable again.
assert_ok "kvmxdp detach inside" in_ct unshare -m sh -c \
	'mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net && exec /root/kvmxdp detach --bridge kvxbr0'
assert_eq "the bridge's forwarding restored" 0 "$(kvx_sysctl_get "$ns" net/ipv4/conf/kvxbr0/forwarding)"
assert_eq "no filter after detach" 0 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_empty "no pins after detach" "$(find "$BPFFS/kvmxdp" -mindepth 1 2>/dev/null || true)"
in_ct systemctl poweroff >/dev/null 2>&1 || true
for ((i = 0; i < 50; i++)); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
kvx_finish
