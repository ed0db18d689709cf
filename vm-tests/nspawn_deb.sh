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
#   - `systemctl reload` returns 0 with a forward added to the config by
#     hand already in the datapath (ExecReload=kvmxdp reload waits for the
#     daemon), the daemon logs the SIGHUP reload and keeps its pid;
#   - an upgrade (`dpkg -i` of the package again) restarts the daemon (the
#     postinst's deb-systemd-invoke try-restart), the datapath stays, and
#     leaves the running libvirtd alone (its hooks are those it found when
#     it started); after an edit of a hook file, an upgrade reloads it
#     (libvirt finds its hooks only when it starts or reloads);
#   - --metrics 127.0.0.1:9810 in the config: the unit's daemon serves it
#     and a scrape from the container's loopback gets the counters (the
#     sandbox's IPAddressDeny=any with IPAddressAllow=localhost);
#   - `systemctl stop` stops the daemon and leaves the datapath (by design:
#     only detach removes it); `kvmxdp detach` then removes the pins.
#
# Then libvirt (libvirt-daemon-system in the tree, libvirtd under the
# container's systemd):
#   - a network defined and started with virsh, <forward mode='open'/> on
#     bridge kvxbr0 (the test's bridge removed first): libvirt makes the
#     bridge and runs its dnsmasq, and adds no firewall rule;
#   - kvmxdp@kvxbr0 started on it: a guest takes a lease from libvirt's
#     dnsmasq (DHCP through kvmxdp's bridge program, the lease in libvirt's
#     status file kvmxdp reads); the guest's TCP connection and pings
#     reach the LAN peer from the uplink's address (the peer has no route
#     back to the guests);
#   - `systemctl restart libvirtd` while a guest's TCP stream runs: the
#     stream goes on intact, the daemon (same MainPID) and the bridge's
#     filter stay, new connections still translated;
#   - the unit stopped, the network destroyed and started again: the
#     package's network hook starts kvmxdp@kvxbr0 on the new bridge, and the
#     guest's traffic is translated there;
#   - a domain "web1" with the guest's MAC (a static DHCP host of the
#     running network, `virsh net-update`) and kvmxdp <metadata>: uplink:2222
#     -> the guest's :22 and a 1:1 address 10.77.0.101, defined and started
#     by libvirtd with qemu (TCG, no disk: it sits in its firmware; its tap
#     on kvxbr0).  libvirtd runs the package's qemu hook itself: `virsh
#     start` makes both, the LAN peer reaches the guest's server, which
#     sees the peer's own address; they stay through `systemctl restart
#     libvirtd` (libvirtd reconnects to the running qemu); `virsh destroy`
#     removes them.  With the package's hook moved away (and libvirtd
#     reloaded), `virsh start` maps nothing.  On a host whose cgroup
#     controllers are cgroup v1 (read-only in the container), libvirt's
#     qemu driver runs without cgroups (qemu.conf cgroup_controllers).
#   - `map add uplink:2223 vm:app1:22` for a domain app1 (started by
#     libvirtd, no static host) whose MAC is guest g2's: the forward goes to
#     g2's lease from libvirt's dnsmasq; g2 releases it (DHCPRELEASE) and
#     takes another address: the status file changes, the daemon moves the
#     forward ("dhcp lease moved: vm app1: A -> B"), the LAN peer reaches
#     g2 at its new address.
#   - web1 again, its 1:1 address one the host holds (a second address of
#     the uplink): libvirtd starts it, the hook says in one journal line
#     (kvmxdp-hook) that the mapping waits as the host's address; the
#     address removed, the daemon maps it and the LAN peer reaches it;
#   - `dpkg -r` with the unit running and the datapath attached: the prerm
#     stops the daemon and detaches its bridge (no filter, no pins left);
#     the enabled instance's symlink stays (configuration); `dpkg -i` of
#     the same package then starts the instance the prerm stopped: attached
#     again, the config's forward back and reached from the LAN; and again
#     with no mapping (the prerm's `detach --keep` kept its uplink, which a
#     plain detach drops with the instance: the unit's start would fail);
#     `dpkg --purge` removes the symlink, the hooks and their record;
#   - a first install whose libvirtd reload policy-rc.d refuses (101), then
#     a `dpkg-reconfigure` whose reload fails (ExecReload=/bin/false in a
#     drop-in): the postinst warns and records no hooks, and libvirtd does
#     not run them (web1's start maps nothing); `dpkg-reconfigure` with the
#     reload working reloads the same libvirtd, records the hooks, and
#     web1's start makes its mappings (the hook ran).
#
#   netns kvx-<id>-ct (the container's network): bridge kvxbr0 192.168.122.1/24
#     (the test's, later libvirt's), uplink kvxup0 10.77.0.2/24
#   netns kvx-<id>-lan: kvxlan0 10.77.0.1/24, kvxup0's peer; no other route
#   netns kvx-<id>-g1: kvxg1 (address and gateway by DHCP from libvirt's
#     dnsmasq), its peer kvxgp1 a port of kvxbr0 (the libvirt part)
#   netns kvx-<id>-g2: kvxg2 likewise (app1's leases), its peer kvxgp2
#   the domains' taps (vnetN, libvirt's) ports of kvxbr0 too
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
mkdir -p "$cache"
# The package's own Depends (as dpkg-shlibdeps found them for this build:
# a library the build links anew is in the tree, and dpkg -i can configure
# the package), and libvirt's daemon with dnsmasq (libvirt's DHCP and DNS on
# a network it manages, also in mode='open').  Of alternatives the first.
depends=$(dpkg-deb -f "$deb" Depends | sed -e 's/([^)]*)//g' -e 's/|[^,]*//g' -e 's/[[:space:]]//g')
[[ -n $depends ]] || kvx_fatal "no Depends in $deb"
# python3: this test's own (the scrape, config edits inside), not the
# package's; procps: ps here, and libvirtd's ExecReload=/bin/kill (a
# minbase tree lacks it, every installed system has it); qemu-system-x86:
# the emulator of the domain libvirtd starts (TCG: no /dev/kvm needed).
include=systemd,systemd-sysv,dbus,iproute2,$depends,libvirt-daemon-system,dnsmasq-base,python3,procps,qemu-system-x86
# One tree per list (named by its hash): runs of branches whose packages
# depend on different libraries do not make each other's tree anew.
tarball=$cache/bookworm-nspawn-$(dpkg --print-architecture)-$(sha256sum <<<"$include" | cut -c1-12).tar
if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime +6) ]]; then
	kvx_log "making $tarball with mmdebstrap (minutes)"
	kvx_on_cleanup "rm -f '$tarball.$$.tmp'"
	mmdebstrap --quiet --mode=root --variant=minbase --format=tar --include="$include" \
		bookworm "$tarball.$$.tmp" >"$KVX_TMP/mmdebstrap.log" 2>&1 ||
		kvx_fatal "mmdebstrap: $(tail -5 "$KVX_TMP/mmdebstrap.log")"
	mv "$tarball.$$.tmp" "$tarball"
	printf '%s\n' "$include" >"$tarball.inputs"
fi
root=$KVX_TMP/root
mkdir "$root"
tar -C "$root" -xf "$tarball"
cp "$deb" "$root/tmp/"
out=$(chroot "$root" dpkg -i "/tmp/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i: $out"
assert_contains "dpkg installed the package" "Setting up kvmxdp" "$out"
# The instance `kvmxdp attach --bridge kvxbr0 --uplink kvxup0` would have
# recorded, as a detached one: the unit's `attach --bridge %I` takes its uplink.
record_instance() {
	install -d -m 0700 "$root/etc/kvmxdp"
	printf '{"version": 1, "instances": [], "detached": {"kvxbr0": {"uplink": "kvxup0", "mappings": []}}}\n' \
		>"$root/etc/kvmxdp/kvmxdp.json"
	chmod 0600 "$root/etc/kvmxdp/kvmxdp.json"
}
record_instance
assert_ok "systemctl enable kvmxdp@kvxbr0" chroot "$root" systemctl enable kvmxdp@kvxbr0
# On a host that binds the cgroup controllers to cgroup v1 (a hybrid or
# legacy layout), nspawn mounts them read-only in the container: libvirt's
# qemu driver then fails to start a domain ("Failed to create v1 controller
# cpu for group: Read-only file system").  Without cgroups it starts it (no
# resource limits, which this test does not need).  On a cgroup v2 host the
# container's hierarchy is its own and libvirt keeps its default.
if [[ $(stat -fc %T /sys/fs/cgroup) != cgroup2fs ]]; then
	kvx_log "cgroup v1 controllers on the host: libvirt's qemu driver without cgroups in the container"
	printf '\n# vm-tests/nspawn_deb.sh: cgroup v1 controllers are read-only in the container\ncgroup_controllers = [ ]\n' \
		>>"$root/etc/libvirt/qemu.conf"
fi

kvx_step "boot it with systemd-nspawn in netns kvx-$KVX_ID-ct"
ns=kvx-$KVX_ID-ct
kvx_netns_add "$ns"
ip -n "$ns" link add kvxbr0 type bridge
ip -n "$ns" addr add 192.168.122.1/24 dev kvxbr0
ip -n "$ns" link set kvxbr0 up
# The LAN peer in a namespace of its own (an address of the container's
# own namespace would be delivered locally, never through the datapath).
# It has no route to the guests: only translated traffic gets an answer.
lan=kvx-$KVX_ID-lan
kvx_netns_add "$lan"
ip -n "$ns" link add kvxup0 type veth peer name kvxlan0 netns "$lan"
ip -n "$ns" addr add 10.77.0.2/24 dev kvxup0
ip -n "$ns" link set kvxup0 up
ip -n "$lan" addr add 10.77.0.1/24 dev kvxlan0
ip -n "$lan" link set kvxlan0 up
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
# Into every namespace of the container's PID 1 and its root directory
# (-r) and working directory (-w).  nspawn enters the tree by moving it onto
# its parent's root and chroot(".") (mount_move_root): when nspawn itself runs
# chrooted (scripts/check-fresh.sh runs the suite in a chroot), that is not
# the mount namespace's root, which setns(2) alone gives: a bare `nsenter -a`
# then lands in check-fresh's tree, where no systemd runs ("System has not
# been booted with systemd as init system").
in_ct() { nsenter -t "$pid1" -a -r -w "$@"; }
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

kvx_step "systemctl reload: a forward added to the config is in the datapath when it returns"
mainpid=$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)
bindings() { in_ct kvmxdp status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"][0]["bindings"]["entries"])'; }
b0=$(bindings)
in_ct python3 -c '
import json
p = "/etc/kvmxdp/kvmxdp.json"
c = json.load(open(p))
c["instances"][0]["mappings"].append({"ext": "uplink:2299", "guest": "192.168.122.50:22",
                                      "proto": "tcp", "add_address": False})
json.dump(c, open(p, "w"))'
assert_ok "systemctl reload kvmxdp@kvxbr0" in_ct systemctl reload kvmxdp@kvxbr0
# ExecReload=kvmxdp reload returns once the daemon is done: no wait here.
assert_eq "the forward's two halves in kvx_bind when systemctl reload returns" $((b0 + 2)) "$(bindings)"
assert_ok "map del uplink:2299" in_ct kvmxdp map del uplink:2299 192.168.122.50:22 --proto tcp
kvx_wait_for 10 "the daemon logs the reload" \
	bash -c "nsenter -t $pid1 -a -r -w journalctl --no-pager -o cat -u kvmxdp@kvxbr0 | grep -q 'SIGHUP: re-reading'"
assert_eq "still active after the reload" active "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the same daemon (MainPID)" "$mainpid" "$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)"

# nspawn mounts the container's /proc/sys read-only: it does not count a
# network namespace it was handed (--network-namespace-path) as the
# container's own, as it does one it made (--private-network), where it
# makes /proc/sys/net writable again.  This one is the container's alone,
# so the test does the same in the container's mount namespace (propagated
# to its services): detach puts the bridge's forwarding back, and libvirtd
# writes ip_forward and the bridge's disable_ipv6 when it starts a network
# (and fails to start it otherwise).
must assert_ok "/proc/sys/net writable in the container" in_ct sh -c \
	'mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net'

kvx_step "upgrade: dpkg -i again restarts the daemon; libvirtd reloaded only when the hooks changed (postinst)"
# The booted container's /tmp is a fresh tmpfs: the package is in /root.
cp "$deb" "$root/root/"
must assert_eq "libvirtd runs before the upgrade" active "$(in_ct systemctl is-active libvirtd || true)"
lv_reloads() { in_ct journalctl --no-pager -o cat -u libvirtd | grep -c '^Reloaded' || true; }
reloads=$(lv_reloads)
out=$(in_ct dpkg -i "/root/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i inside: $out"
kvx_wait_for 20 "a new daemon after the upgrade" bash -c \
	"[[ \$(nsenter -t $pid1 -a -r -w systemctl show -p MainPID --value kvmxdp@kvxbr0) != @(0|$mainpid) ]]"
kvx_wait_for 20 "active after the upgrade" bash -c \
	"[[ \$(nsenter -t $pid1 -a -r -w systemctl is-active kvmxdp@kvxbr0) == active ]]"
assert_eq "the datapath stays across the upgrade" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
# The hooks as the chroot install left them, which libvirtd found when it
# started at boot: nothing for it to learn.
assert_eq "libvirtd not reloaded: the same hooks" "$reloads" "$(lv_reloads)"
# An administrator's edit of a hook (a conffile: dpkg keeps it): the next
# upgrade reloads libvirtd.
in_ct sh -c 'echo "# edited" >>/etc/libvirt/hooks/qemu.d/kvmxdp'
out=$(in_ct dpkg -i "/root/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i inside: $out"
kvx_wait_for 10 "libvirtd reloaded by the postinst: a hook changed" bash -c "(( \$(nsenter -t $pid1 -a -r -w journalctl --no-pager -o cat -u libvirtd | grep -c '^Reloaded' || true) > $reloads ))" ||
	kvx_log "libvirtd's journal: $(in_ct journalctl --no-pager -o cat -u libvirtd | tail -5)"
kvx_wait_for 20 "active after the second upgrade" bash -c \
	"[[ \$(nsenter -t $pid1 -a -r -w systemctl is-active kvmxdp@kvxbr0) == active ]]"

kvx_step "metrics under the unit: a loopback scrape"
# attach --metrics as the unit's `attach --bridge %I` takes it: recorded.
in_ct python3 -c '
import json
p = "/etc/kvmxdp/kvmxdp.json"
c = json.load(open(p))
c["instances"][0]["metrics"] = "127.0.0.1:9810"
json.dump(c, open(p, "w"))'
must assert_ok "systemctl restart kvmxdp@kvxbr0" in_ct systemctl restart kvmxdp@kvxbr0
scrape_ct() {
	in_ct python3 -c '
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9810/metrics", timeout=3).read().decode())' 2>&1
}
kvx_wait_for 15 "/metrics answers on loopback" bash -c "nsenter -t $pid1 -a -r -w python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:9810/metrics\", timeout=3)' 2>/dev/null" ||
	kvx_log "journal: $(in_ct journalctl --no-pager -o cat -n 10 -u kvmxdp@kvxbr0 2>&1)"
page=$(scrape_ct)
assert_contains "the scrape has the verdict counters" 'kvmxdp_packets_total{' "$page"
assert_contains "and the daemon's own" 'kvmxdp_gc_runs_total{bridge="kvxbr0"}' "$page"

kvx_step "the watchdog: systemd kills a stalled daemon and starts a new one; the datapath stays"
# The unit's WatchdogSec=60 shortened by a drop-in (a runtime one, removed
# after): systemd sends the watchdog signal (SIGABRT, then SIGCONT) to a
# daemon that has not pinged for 3 s, then SIGKILL after TimeoutAbortSec;
# Restart=on-failure starts a new one RestartSec=5 later.  LimitCORE=0: no
# core file of the aborted daemon.
dropin=/run/systemd/system/kvmxdp@kvxbr0.service.d
in_ct mkdir -p "$dropin"
in_ct sh -c "printf '[Service]\nWatchdogSec=3\nTimeoutAbortSec=5\nLimitCORE=0\n' >$dropin/kvx-test-watchdog.conf"
must assert_ok "systemctl daemon-reload (the watchdog drop-in)" in_ct systemctl daemon-reload
must assert_ok "systemctl restart kvmxdp@kvxbr0 (WatchdogSec=3)" in_ct systemctl restart kvmxdp@kvxbr0
assert_eq "WatchdogUSec from the drop-in" 3s "$(in_ct systemctl show -p WatchdogUSec --value kvmxdp@kvxbr0)"
wdpid=$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)
# A running daemon pings: it outlives two watchdog intervals.
sleep 7
assert_eq "the daemon pings the watchdog: the same MainPID after 7 s (WatchdogSec=3)" "$wdpid" \
	"$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)"
assert_eq "no watchdog timeout while it pings" 0 \
	"$(in_ct journalctl --no-pager -o cat -u kvmxdp@kvxbr0 | grep -ci 'watchdog timeout' || true)"
kvx_log "stalling the daemon (pid $wdpid in the container): SIGSTOP"
in_ct kill -STOP "$wdpid"
new_daemon() {
	local p
	p=$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)
	[[ $p != 0 && $p != "$wdpid" && $(in_ct systemctl is-active kvmxdp@kvxbr0) == active ]]
}
kvx_wait_for 30 "systemd restarts the stalled daemon" new_daemon || true
journal=$(in_ct journalctl --no-pager -o cat -u kvmxdp@kvxbr0 2>&1 || true)
assert_contains "systemd logged the watchdog timeout" "Watchdog timeout" "$journal"
assert_ok "a new daemon (MainPID), active" new_daemon
assert_fails "the stalled daemon is gone" in_ct kill -0 "$wdpid"
assert_eq "the datapath stayed: the bridge's filter" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_eq "status --json: TC on the bridge and the uplink" "kvxbr0 kvxup0" \
	"$(in_ct kvmxdp status --json | python3 -c 'import json,sys; print(" ".join(sorted(d["ifname"] for d in json.load(sys.stdin)["instances"][0]["devices"])))' 2>&1)"
in_ct rm -r "$dropin"
must assert_ok "systemctl daemon-reload (the drop-in removed)" in_ct systemctl daemon-reload
must assert_ok "systemctl restart kvmxdp@kvxbr0 (the unit's own WatchdogSec)" in_ct systemctl restart kvmxdp@kvxbr0
assert_eq "the unit's own WatchdogSec again" 1min "$(in_ct systemctl show -p WatchdogUSec --value kvmxdp@kvxbr0)"

kvx_step "systemctl stop, then detach"
in_ct systemctl stop kvmxdp@kvxbr0 || true
assert_eq "inactive after stop" inactive "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the datapath stays after stop" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_ok "kvmxdp detach inside" in_ct kvmxdp detach --bridge kvxbr0
assert_eq "the bridge's forwarding restored" 0 "$(kvx_sysctl_get "$ns" net/ipv4/conf/kvxbr0/forwarding)"
assert_eq "no filter after detach" 0 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_empty "no pins after detach" "$(find "$BPFFS/kvmxdp" -mindepth 1 2>/dev/null || true)"

kvx_step "libvirt: a network in mode='open' on kvxbr0"
must assert_eq "libvirtd runs under the container's systemd" active \
	"$(in_ct systemctl is-active libvirtd || true)"
ip -n "$ns" link del kvxbr0
# libvirt keeps its DHCP and DNS (dnsmasq) in mode='open' and adds no
# firewall rule: the translating is kvmxdp's.
cat >"$root/root/kvxnet.xml" <<'XML'
<network>
  <name>kvxnet</name>
  <forward mode='open'/>
  <bridge name='kvxbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.100' end='192.168.122.200'/>
    </dhcp>
  </ip>
</network>
XML
must assert_ok "virsh net-define" in_ct virsh net-define /root/kvxnet.xml
must assert_ok "virsh net-start kvxnet" in_ct virsh net-start kvxnet
assert_contains "libvirt made the bridge" "192.168.122.1/24" "$(ip -n "$ns" -4 -br addr show dev kvxbr0 2>&1)"
assert_contains "libvirt's dnsmasq serves it" "kvxnet.conf" "$(in_ct ps -eo args)"
assert_empty "no firewall rule from libvirt (nft)" "$(ip netns exec "$ns" nft list ruleset 2>&1)"
assert_empty "no firewall rule from libvirt (iptables)" \
	"$(ip netns exec "$ns" iptables-save 2>&1 | grep -e '^-A' || true)"

# kvmxdp on libvirt's bridge: detach forgot the instance (it keeps one
# only with mappings), so it is recorded again as at the start, and the
# unit attaches it.  From then on it is in the config's instances, which
# the network hook reads.
record_instance
in_ct systemctl start kvmxdp@kvxbr0 >/dev/null 2>&1 ||
	kvx_fatal "systemctl start kvmxdp@kvxbr0: $(in_ct journalctl --no-pager -o cat -n 15 -u kvmxdp@kvxbr0 2>&1)"
kvx_pass "systemctl start kvmxdp@kvxbr0 on libvirt's bridge"
assert_eq "the bridge's filter" 1 "$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"

g1=kvx-$KVX_ID-g1
kvx_netns_add "$g1"
kvx_veth "$g1" kvxg1 "$ns" kvxgp1
ip -n "$ns" link set kvxgp1 master kvxbr0
# The guest's address from libvirt's dnsmasq: DHCP through the bridge with
# kvmxdp's program on it (the bridge's own traffic, handed up untranslated).
cat >"$KVX_TMP/udhcpc.sh" <<'SH'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/$mask" dev "$interface"
ip route add default via "$router"
SH
chmod 0755 "$KVX_TMP/udhcpc.sh"
out=$(ip netns exec "$g1" timeout 30 busybox udhcpc -i kvxg1 -n -q -t 5 -T 2 -s "$KVX_TMP/udhcpc.sh" 2>&1) ||
	kvx_fatal "no DHCP lease from libvirt's dnsmasq: $out"
gaddr=$(ip -n "$g1" -4 -o addr show dev kvxg1 | awk '{ sub("/.*", "", $4); print $4 }')
gmac=$(ip -n "$g1" -o link show dev kvxg1 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)
assert_contains "the guest's lease from libvirt's range" 192.168.122. "$gaddr"
assert_eq "the guest's default route from the lease" "default via 192.168.122.1 dev kvxg1" \
	"$(ip -n "$g1" -4 route show default | cut -d' ' -f1-5)"
# libvirt's lease status file, which kvmxdp reads (--dhcp-leases' default),
# written by libvirt's lease helper, which dnsmasq runs after its ACK.
lease_mac() {
	in_ct cat /var/lib/libvirt/dnsmasq/kvxbr0.status 2>&1 | "$KVX_PY" -c '
import json, sys
print(" ".join(l["mac-address"] for l in json.load(sys.stdin) if l["ip-address"] == sys.argv[1]))' "$gaddr" 2>&1
}
lease_is_guests() { [[ $(lease_mac) == "$gmac" ]]; }
kvx_wait_for 10 "the guest's lease in libvirt's status file" lease_is_guests || true
assert_eq "libvirt's lease file holds the guest's address for its MAC" "$gmac" "$(lease_mac)"
# The LAN peer answers a TCP connection with the address it came from.
kvx_bg "$KVX_TMP/lan-tcp.log" ip netns exec "$lan" socat TCP-LISTEN:8080,reuseaddr,fork \
	'SYSTEM:echo seen=$SOCAT_PEERADDR'
kvx_wait_tcp_listen 10 "$lan" 8080
seen_from_guest() {
	ip netns exec "$g1" timeout 10 socat -T 5 - TCP:10.77.0.1:8080,connect-timeout=3 </dev/null 2>&1
}
guest_traffic() { # WHEN
	kvx_wait_for 15 "$1: a TCP connection from the guest to the LAN peer" seen_from_guest || true
	assert_eq "$1: the LAN peer saw the guest's TCP connection from the uplink's address" \
		seen=10.77.0.2 "$(seen_from_guest || true)"
	assert_ok "$1: the guest's pings to the LAN peer answered" \
		ip netns exec "$g1" ping -c 3 -i 0.2 -W 2 10.77.0.1
}
# libvirt turned ip_forward on: a guest packet kvmxdp handed up would be
# routed out untranslated by the kernel (and get no answer).  The kernel
# forwards none of the guest's traffic: kvmxdp does.
fwd0=$(kvx_snmp "$ns" Ip ForwDatagrams)
assert_eq "libvirt turned the namespace's ip_forward on" 1 "$(kvx_sysctl_get "$ns" net/ipv4/ip_forward)"
guest_traffic "libvirt's bridge"

kvx_step "systemctl restart libvirtd"
ifindex=$(ip -n "$ns" -o link show dev kvxbr0 | cut -d: -f1)
mainpid=$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)
lvpid=$(in_ct systemctl show -p MainPID --value libvirtd)
# A guest's TCP stream runs through the restart: 4 MB echoed byte for byte
# (sha256 both ways) by the LAN peer, which saw it from the uplink's address.
kvx_bg "$KVX_TMP/lan-echo.log" ip netns exec "$lan" "$KVX_PY" -u "$KVX_LIBDIR/tcp_peer.py" echo 10.77.0.1 7100
kvx_wait_for 10 "the LAN peer's echo server" grep -q '^listening' "$KVX_TMP/lan-echo.log"
kvx_bg "$KVX_TMP/stream.log" ip netns exec "$g1" "$KVX_PY" -u "$KVX_LIBDIR/tcp_peer.py" \
	client 10.77.0.1:7100 --bytes 4000000 --secs 8
stream=$KVX_LAST_PID
kvx_wait_for 10 "the guest's stream under way" grep -q '^progress sent=' "$KVX_TMP/stream.log" || true
must assert_ok "systemctl restart libvirtd" in_ct systemctl restart libvirtd
rc=0
wait "$stream" || rc=$?
assert_eq "the guest's stream through libvirtd's restart: echoed intact (exit 0; $(tail -n 1 "$KVX_TMP/stream.log"))" 0 "$rc"
assert_contains "the stream reached the LAN peer from the uplink's address" "peer=10.77.0.2:" \
	"$(grep -m1 '^hello' "$KVX_TMP/stream.log" || true)"
assert_ne "a new libvirtd" "$lvpid" "$(in_ct systemctl show -p MainPID --value libvirtd)"
assert_contains "the network is still active" "Active:         yes" "$(in_ct virsh net-info kvxnet 2>&1)"
assert_eq "the same bridge (ifindex)" "$ifindex" "$(ip -n "$ns" -o link show dev kvxbr0 | cut -d: -f1)"
assert_eq "kvmxdp@kvxbr0 still active" active "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the same daemon (MainPID)" "$mainpid" "$(in_ct systemctl show -p MainPID --value kvmxdp@kvxbr0)"
assert_eq "the bridge's filter stays" 1 "$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_empty "still no firewall rule from libvirt (nft)" "$(ip netns exec "$ns" nft list ruleset 2>&1)"
guest_traffic "after libvirtd's restart"

kvx_step "the network re-created: the package's network hook starts kvmxdp@kvxbr0"
in_ct systemctl stop kvmxdp@kvxbr0 || true
must assert_eq "inactive after stop" inactive "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
must assert_ok "virsh net-destroy kvxnet" in_ct virsh net-destroy kvxnet
must assert_ok "virsh net-start kvxnet" in_ct virsh net-start kvxnet
assert_ne "a new bridge (ifindex)" "$ifindex" "$(ip -n "$ns" -o link show dev kvxbr0 | cut -d: -f1)"
kvx_wait_for 30 "kvmxdp@kvxbr0 started by the network hook" in_ct systemctl is-active -q kvmxdp@kvxbr0 || true
assert_eq "kvmxdp@kvxbr0 active again, started by nobody but the hook" active \
	"$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the new bridge's filter" 1 "$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
# A domain's port is libvirt's to plug again; this one is the test's.
ip -n "$ns" link set kvxgp1 master kvxbr0
guest_traffic "the re-created bridge"

# A domain with kvmxdp <metadata> (a forward, a 1:1 address) that libvirtd
# itself starts, with qemu (TCG) from the tree: libvirtd runs the package's
# qemu hook (prepare, start, started; stopped, release; reconnect when it
# restarts) with the domain's XML, inside the container (its root, its
# libvirt's files: the network's static DHCP host, the lease status file).
# The test calls no hook.  The domain has no disk and its NIC no option ROM:
# it sits in SeaBIOS and sends nothing; the guest's address is g1's (the
# same MAC), which serves the forward's port.
libvirt_domain_metadata() {
	kvx_step "a domain's kvmxdp <metadata>: libvirtd starts it and runs the package's qemu hook"
	local hook=/etc/libvirt/hooks/qemu.d/kvmxdp ext=10.77.0.101 out
	must assert_ok "the package installed the qemu hook" in_ct test -x "$hook"
	# The guest's address a static DHCP host of the running network too,
	# as a domain with a fixed address has it (live and in the definition).
	assert_ok "virsh net-update kvxnet add ip-dhcp-host" in_ct virsh net-update kvxnet add ip-dhcp-host \
		"<host mac='$gmac' name='web1' ip='$gaddr'/>" --live --config
	assert_contains "the definition holds the host" "$gmac" "$(in_ct virsh net-dumpxml kvxnet 2>&1)"
	cat >"$root/root/web1.xml" <<XML
<domain type='qemu'>
  <name>web1</name>
  <metadata>
    <kvmxdp:nat xmlns:kvmxdp="http://kvmxdp.org/xmlns/libvirt/1">
      <kvmxdp:forward proto='tcp' port='2222' to='22'/>
      <kvmxdp:address external='$ext'/>
    </kvmxdp:nat>
  </metadata>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'>
      <mac address='$gmac'/>
      <source network='kvxnet'/>
      <model type='e1000'/>
      <rom enabled='no'/>
    </interface>
    <memballoon model='none'/>
  </devices>
</domain>
XML
	out=$(in_ct virsh define /root/web1.xml 2>&1) || kvx_fatal "virsh define web1: $out"
	# libvirt writes the metadata's attributes again in its own quotes.
	assert_contains "virsh dumpxml web1 keeps the kvmxdp metadata" 'port="2222"' \
		"$(in_ct virsh dumpxml web1 2>&1)"
	# The guest serves :22, answering with the address the connection came from.
	kvx_bg "$KVX_TMP/g1-ssh.log" ip netns exec "$g1" socat TCP-LISTEN:22,reuseaddr,fork \
		'SYSTEM:echo guest-saw=$SOCAT_PEERADDR'
	kvx_wait_tcp_listen 10 "$g1" 22
	from_lan() { # ADDR:PORT
		ip netns exec "$lan" timeout 8 socat -T 3 - "TCP:$1,connect-timeout=3" </dev/null 2>&1 || true
	}
	reached() { [[ $(from_lan "$1") == guest-saw=10.77.0.1 ]]; }
	mapped() { # WHEN
		kvx_wait_for 10 "$1: LAN -> 10.77.0.2:2222" reached 10.77.0.2:2222 || true
		assert_eq "$1: LAN -> uplink:2222 reaches the guest's :22, which sees the LAN peer's address" \
			guest-saw=10.77.0.1 "$(from_lan 10.77.0.2:2222)"
		assert_eq "$1: LAN -> $ext:22 (1:1) reaches the guest, which sees the LAN peer's address" \
			guest-saw=10.77.0.1 "$(from_lan "$ext:22")"
	}
	unmapped() { # WHEN
		assert_not_contains "$1: LAN -> uplink:2222 reaches nothing" guest-saw "$(from_lan 10.77.0.2:2222)"
		assert_not_contains "$1: LAN -> $ext:22 reaches nothing" guest-saw "$(from_lan "$ext:22")"
	}
	no_web1_in_config() { ! in_ct grep -q web1 /etc/kvmxdp/kvmxdp.json; }
	running() { [[ $(in_ct virsh domstate web1 2>&1) == running ]]; }
	# libvirt plugs the domain's tap (vnetN, libvirt's name) into the bridge.
	web1_port() {
		ip -n "$ns" -o link show master kvxbr0 | grep -o ' vnet[0-9]*' | tr -d ' ' || true
	}
	unmapped "before the domain starts"

	# Without the package's hook libvirtd's start maps nothing: the checks
	# below fail for want of the hook, not of something else.  libvirtd
	# finds its hooks when it starts or reloads.
	mv "$root$hook" "$root/root/kvmxdp.hook"
	must assert_ok "systemctl reload libvirtd (the hook moved away)" in_ct systemctl reload libvirtd
	# libvirtd's ExecReload= only sends SIGHUP; libvirtd looks for its hooks
	# again in a thread of its own after it, and logs nothing of it.
	sleep 2
	out=$(in_ct virsh start web1 2>&1) || kvx_fatal "virsh start web1 (no kvmxdp hook): $out"
	assert_ok "web1 running (no kvmxdp hook)" running
	assert_ne "web1's tap a port of kvxbr0" "" "$(web1_port)"
	sleep 2
	unmapped "web1 started, the hook moved away"
	assert_not_contains "map list has nothing of web1" web1 "$(in_ct kvmxdp map list 2>&1)"
	must assert_ok "virsh destroy web1 (no kvmxdp hook)" in_ct virsh destroy web1
	mv "$root/root/kvmxdp.hook" "$root$hook"
	must assert_ok "systemctl reload libvirtd (the hook back)" in_ct systemctl reload libvirtd
	sleep 2

	out=$(in_ct virsh start web1 2>&1) || kvx_fatal "virsh start web1: $out"
	assert_ok "web1 running" running
	kvx_log "web1's qemu: $(in_ct pgrep -a qemu-system 2>&1 | cut -c1-100)"
	assert_contains "libvirtd ran qemu for web1" "guest=web1" "$(in_ct ps -eo args 2>&1)"
	assert_ne "web1's tap a port of kvxbr0" "" "$(web1_port)"
	mapped "web1 started by libvirtd"
	assert_contains "kvmxdp's config holds web1's mappings" web1 "$(in_ct cat /etc/kvmxdp/kvmxdp.json 2>&1)"
	assert_contains "map list shows web1's forward" web1 "$(in_ct kvmxdp map list 2>&1)"
	assert_contains "the forward goes to the guest's address (its static DHCP host)" "\"guest\": \"$gaddr:22\"" \
		"$(in_ct kvmxdp map list --json 2>&1)"

	# libvirtd's restart with web1 running: the new libvirtd reconnects to
	# the domain's qemu (and runs the hook's "reconnect"); the mappings are
	# kvmxdp's (its config, its daemon) and stay.
	lvpid=$(in_ct systemctl show -p MainPID --value libvirtd)
	qpid=$(in_ct pgrep -f 'guest=web1' | head -1)
	must assert_ok "systemctl restart libvirtd (web1 running)" in_ct systemctl restart libvirtd
	assert_ne "a new libvirtd" "$lvpid" "$(in_ct systemctl show -p MainPID --value libvirtd)"
	assert_ok "web1 still running" running
	assert_eq "the same qemu (reconnected, not restarted)" "$qpid" "$(in_ct pgrep -f 'guest=web1' | head -1)"
	mapped "after libvirtd's restart (reconnect)"

	must assert_ok "virsh destroy web1" in_ct virsh destroy web1
	kvx_wait_for 10 "web1's mappings gone from kvmxdp's config" no_web1_in_config || true
	assert_not_contains "kvmxdp's config has no web1" web1 "$(in_ct cat /etc/kvmxdp/kvmxdp.json 2>&1)"
	assert_not_contains "map list has nothing of web1" web1 "$(in_ct kvmxdp map list 2>&1)"
	assert_eq "web1's tap gone from kvxbr0" "" "$(web1_port)"
	unmapped "web1 destroyed (stopped, release)"
	assert_ok "virsh undefine web1" in_ct virsh undefine web1
}
libvirt_domain_metadata

# A `map add ... vm:` mapping of a domain whose address is a lease of
# libvirt's dnsmasq (no static host): the daemon follows the lease when it
# moves.  app1 (started by libvirtd, no metadata) has guest g2's MAC; g2
# takes its leases with udhcpc through kvxbr0 like a booting guest.
libvirt_lease_follow() {
	kvx_step "a vm: mapping follows the domain's lease from libvirt's dnsmasq"
	local g2=kvx-$KVX_ID-g2 mac2 a1 a2 out
	kvx_netns_add "$g2"
	kvx_veth "$g2" kvxg2 "$ns" kvxgp2
	ip -n "$ns" link set kvxgp2 master kvxbr0
	mac2=$(ip -n "$g2" -o link show dev kvxg2 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)
	cat >"$KVX_TMP/udhcpc2.sh" <<'SH'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr flush dev "$interface"
ip addr add "$ip/$mask" dev "$interface"
ip route replace default via "$router"
SH
	chmod 0755 "$KVX_TMP/udhcpc2.sh"
	out=$(ip netns exec "$g2" timeout 30 busybox udhcpc -i kvxg2 -n -q -t 5 -T 2 -s "$KVX_TMP/udhcpc2.sh" 2>&1) ||
		kvx_fatal "no DHCP lease for g2 from libvirt's dnsmasq: $out"
	a1=$(ip -n "$g2" -4 -o addr show dev kvxg2 | awk '{ sub("/.*", "", $4); print $4 }')
	lease_of() { # MAC -> the status file's address of it
		in_ct cat /var/lib/libvirt/dnsmasq/kvxbr0.status 2>&1 | "$KVX_PY" -c '
import json, sys
print(" ".join(l["ip-address"] for l in json.load(sys.stdin) if l["mac-address"] == sys.argv[1]))' "$1" 2>&1
	}
	kvx_wait_for 10 "g2's lease in libvirt's status file" bash -c "[[ \$(nsenter -t $pid1 -a -r -w cat /var/lib/libvirt/dnsmasq/kvxbr0.status) == *$a1* ]]" || true
	assert_eq "libvirt's status file: g2's lease" "$a1" "$(lease_of "$mac2")"
	sed -e 's/web1/app1/' -e "s/$gmac/$mac2/" -e '/<metadata>/,/<\/metadata>/d' "$root/root/web1.xml" >"$root/root/app1.xml"
	out=$(in_ct virsh define /root/app1.xml 2>&1) || kvx_fatal "virsh define app1: $out"
	out=$(in_ct virsh start app1 2>&1) || kvx_fatal "virsh start app1: $out"
	assert_ok "map add uplink:2223 vm:app1:22" in_ct kvmxdp map add uplink:2223 vm:app1:22 --proto tcp
	assert_contains "the forward goes to app1's lease" "\"guest\": \"$a1:22\"" "$(in_ct kvmxdp map list --json 2>&1)"
	kvx_bg "$KVX_TMP/g2-ssh.log" ip netns exec "$g2" socat TCP-LISTEN:22,reuseaddr,fork \
		'SYSTEM:echo app1-saw=$SOCAT_PEERADDR'
	kvx_wait_tcp_listen 10 "$g2" 22
	app1_reached() { [[ $(from_lan 10.77.0.2:2223) == app1-saw=10.77.0.1 ]]; }
	kvx_wait_for 10 "LAN -> uplink:2223" app1_reached || true
	assert_eq "LAN -> uplink:2223 reaches app1 at its lease" app1-saw=10.77.0.1 "$(from_lan 10.77.0.2:2223)"
	# The lease moves: g2 gives it back (DHCPRELEASE) and asks for another
	# address of the range, as a guest does after a lease expired.
	a2=192.168.122.199
	[[ $a1 != "$a2" ]] || a2=192.168.122.198
	# udhcpc -q -R quits before it is bound and sends no release: a
	# client that stays, told to release (SIGUSR2) once bound.
	kvx_bg "$KVX_TMP/udhcpc-rel.log" ip netns exec "$g2" busybox udhcpc -i kvxg2 -f -r "$a1" -t 5 -T 2 \
		-s "$KVX_TMP/udhcpc2.sh"
	kvx_wait_for 15 "g2's client bound again" grep -q '^udhcpc: lease of' "$KVX_TMP/udhcpc-rel.log" || true
	kill -USR2 "$KVX_LAST_PID"
	kvx_wait_for 10 "g2's client released its lease" grep -q 'unicasting a release' "$KVX_TMP/udhcpc-rel.log" || true
	kvx_kill_pid "$KVX_LAST_PID"
	no_a1() { [[ $(lease_of "$mac2") != *"$a1"* ]]; }
	kvx_wait_for 10 "the released lease gone from libvirt's status file" no_a1 || true
	out=$(ip netns exec "$g2" timeout 30 busybox udhcpc -i kvxg2 -n -q -r "$a2" -t 5 -T 2 -s "$KVX_TMP/udhcpc2.sh" 2>&1) ||
		kvx_fatal "g2's new lease: $out"
	assert_eq "g2 holds the new address" "$a2" \
		"$(ip -n "$g2" -4 -o addr show dev kvxg2 | awk '{ sub("/.*", "", $4); print $4 }')"
	kvx_wait_for 10 "g2's new lease in libvirt's status file" bash -c "[[ \$(nsenter -t $pid1 -a -r -w cat /var/lib/libvirt/dnsmasq/kvxbr0.status) == *$a2* ]]" || true
	assert_eq "libvirt's status file: g2's new lease" "$a2" "$(lease_of "$mac2")"
	moved() { [[ $(in_ct kvmxdp map list --json 2>&1) == *"\"guest\": \"$a2:22\""* ]]; }
	kvx_wait_for 20 "the daemon moves app1's forward to its new lease" moved || true
	assert_contains "the forward follows app1's lease" "\"guest\": \"$a2:22\"" "$(in_ct kvmxdp map list --json 2>&1)"
	assert_contains "the daemon logged the move" "dhcp lease moved: vm app1: $a1 -> $a2" \
		"$(in_ct journalctl --no-pager -o cat -u kvmxdp@kvxbr0 2>&1)"
	kvx_wait_for 10 "LAN -> uplink:2223 after the move" app1_reached || true
	assert_eq "LAN -> uplink:2223 reaches app1 at its new lease" app1-saw=10.77.0.1 "$(from_lan 10.77.0.2:2223)"
	assert_ok "map del uplink:2223" in_ct kvmxdp map del uplink:2223 vm:app1:22 --proto tcp
	must assert_ok "virsh destroy app1" in_ct virsh destroy app1
	assert_ok "virsh undefine app1" in_ct virsh undefine app1
}
libvirt_lease_follow

# A domain whose 1:1 address is the host's own when libvirtd starts it
# (the laptop's DHCP address on this network, say): libvirtd starts it,
# the hook says in one journal line that the mapping waits and why, and
# the daemon makes it once the host no longer holds the address.
libvirt_host_address() {
	kvx_step "a domain's 1:1 address the host holds: started, one journal line, mapped once the host drops it"
	local a=10.77.0.102 out
	ip -n "$ns" addr add "$a/24" dev kvxup0
	sed -e "s/external='10.77.0.101'/external='$a'/" "$root/root/web1.xml" >"$root/root/web1-host.xml"
	out=$(in_ct virsh define /root/web1-host.xml 2>&1) || kvx_fatal "virsh define web1: $out"
	out=$(in_ct virsh start web1 2>&1) || kvx_fatal "virsh start web1 (its 1:1 address the host's): $out"
	assert_ok "web1 running: not a failed start" running
	state_a() {
		in_ct kvmxdp map list --json 2>&1 | "$KVX_PY" -c '
import json, sys
for m in json.load(sys.stdin)["mappings"]:
    if m["ext"] == sys.argv[1]:
        print(m["state"], m["reason"] or "")' "$1" 2>&1
	}
	assert_contains "map list --json: $a pending, why" "pending mapping '$a $gaddr': $a is an address of this host" \
		"$(state_a "$a")"
	local lines
	lines=$(in_ct journalctl --no-pager -o cat -t kvmxdp-hook 2>&1 | grep -F "$a" || true)
	kvx_log "the hook's journal lines of $a: $lines"
	assert_eq "the hook's journal: one line of $a" 1 "$(grep -c . <<<"$lines")"
	assert_contains "... saying it waits: an address of this host" "$a is an address of this host" "$lines"
	assert_not_contains "LAN -> $a:22 reaches no guest" guest-saw "$(from_lan "$a:22")"
	ip -n "$ns" addr del "$a/24" dev kvxup0
	a_active() { [[ $(state_a "$a") == "active "* ]]; }
	kvx_wait_for 20 "the daemon maps $a once the host dropped it" a_active || true
	a_reached() { [[ $(from_lan "$a:22") == guest-saw=10.77.0.1 ]]; }
	kvx_wait_for 15 "LAN -> $a:22" a_reached || true
	assert_eq "LAN -> $a:22 (1:1) reaches the guest, which sees the LAN peer's address" \
		guest-saw=10.77.0.1 "$(from_lan "$a:22")"
	must assert_ok "virsh destroy web1" in_ct virsh destroy web1
	assert_ok "virsh undefine web1" in_ct virsh undefine web1
}
libvirt_host_address
assert_le "the kernel forwarded none of the guest's traffic (IpForwDatagrams moved)" \
	$(($(kvx_snmp "$ns" Ip ForwDatagrams) - fwd0)) 10

kvx_step "dpkg -r with the datapath attached: prerm stops the daemon and detaches it"
in_ct systemctl start kvmxdp@kvxbr0 || true
kvx_wait_for 20 "kvmxdp@kvxbr0 active before dpkg -r" bash -c \
	"[[ \$(nsenter -t $pid1 -a -r -w systemctl is-active kvmxdp@kvxbr0) == active ]]"
must assert_eq "attached before dpkg -r" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
# A mapping in the config, which detach keeps for the next attach.
must assert_ok "map add uplink:2230 -> g1's :22" in_ct kvmxdp map add uplink:2230 "$gaddr:22" --proto tcp
g1_2230() { [[ $(from_lan 10.77.0.2:2230) == guest-saw=10.77.0.1 ]]; }
kvx_wait_for 10 "LAN -> uplink:2230 before dpkg -r" g1_2230 || true
out=$(in_ct dpkg -r kvmxdp 2>&1) || kvx_fatal "dpkg -r inside: $out"
kvx_log "dpkg -r: $out"
assert_not_contains "no warning: it detached" "stays attached" "$out"
assert_eq "inactive after dpkg -r" inactive "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "no filter after dpkg -r: detached" 0 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_empty "no pins after dpkg -r" "$(find "$BPFFS/kvmxdp" -mindepth 1 2>/dev/null || true)"
assert_not_contains "LAN -> uplink:2230 reaches nothing after dpkg -r" guest-saw "$(from_lan 10.77.0.2:2230)"
wants=/etc/systemd/system/multi-user.target.wants/kvmxdp@kvxbr0.service
assert_ok "remove keeps the enabled instance (configuration)" in_ct test -L "$wants"

kvx_step "dpkg -i after dpkg -r: the enabled instance the prerm stopped runs again, attached, with its mappings"
out=$(in_ct dpkg -i "/root/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i after dpkg -r: $out"
kvx_log "dpkg -i after dpkg -r: $out"
ct_active() { [[ $(in_ct systemctl is-active kvmxdp@kvxbr0) == active ]]; }
kvx_wait_for 30 "kvmxdp@kvxbr0 active after the reinstall" ct_active || true
assert_eq "kvmxdp@kvxbr0 active again (journal: $(in_ct journalctl --no-pager -o cat -n 5 -u kvmxdp@kvxbr0 2>&1))" \
	active "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the bridge's filter again, seen from the host" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
assert_eq "status --json: TC on the bridge and the uplink" "kvxbr0 kvxup0" \
	"$(in_ct kvmxdp status --json | python3 -c 'import json,sys; print(" ".join(sorted(d["ifname"] for d in json.load(sys.stdin)["instances"][0]["devices"] if d["role"] in ("bridge", "uplink"))))' 2>&1)"
assert_contains "map list: the config's mapping back" "\"ext\": \"uplink:2230\"" "$(in_ct kvmxdp map list --json 2>&1)"
kvx_wait_for 10 "LAN -> uplink:2230 after the reinstall" g1_2230 || true
assert_eq "LAN -> uplink:2230 reaches g1's :22 again, which sees the LAN peer's address" \
	guest-saw=10.77.0.1 "$(from_lan 10.77.0.2:2230)"
assert_fails "the prerm's list is done with" in_ct test -e /var/lib/kvmxdp/stopped-by-remove
assert_ok "map del uplink:2230" in_ct kvmxdp map del uplink:2230 "$gaddr:22" --proto tcp
# Again with no mapping, whose detach would forget the instance (its
# uplink) but for the prerm's --keep: the reinstall's start needs it.
out=$(in_ct dpkg -r kvmxdp 2>&1) || kvx_fatal "dpkg -r (no mappings): $out"
assert_eq "no filter after dpkg -r (no mappings)" 0 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
out=$(in_ct dpkg -i "/root/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i after dpkg -r (no mappings): $out"
assert_not_contains "no warning from the postinst (no mappings)" "did not start" "$out"
kvx_wait_for 30 "kvmxdp@kvxbr0 active after the reinstall (no mappings)" ct_active || true
assert_eq "kvmxdp@kvxbr0 active again, no mappings (journal: $(in_ct journalctl --no-pager -o cat -n 3 -u kvmxdp@kvxbr0 2>&1))" \
	active "$(in_ct systemctl is-active kvmxdp@kvxbr0 || true)"
assert_eq "the bridge's filter again (no mappings)" 1 \
	"$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
guest_traffic "after dpkg -r and dpkg -i"

kvx_step "dpkg --purge removes the enabled instance's symlink and the record of the hooks"
out=$(in_ct dpkg --purge kvmxdp 2>&1) || kvx_fatal "dpkg --purge inside: $out"
assert_fails "purge removed $wants" in_ct test -L "$wants"
assert_fails "and the postinst's record of the hooks" in_ct test -e /var/lib/kvmxdp
assert_fails "and the hooks (conffiles)" in_ct test -e /etc/libvirt/hooks/qemu.d/kvmxdp
# libvirtd looks for hooks again: from now on it knows none of kvmxdp's.
must assert_ok "systemctl reload libvirtd (no kvmxdp hooks)" in_ct systemctl reload libvirtd
sleep 2

# A first install whose libvirtd reload does not happen: refused by
# policy-rc.d (an image build's), then failing (a reload that exits 1).
# The postinst warns and records nothing: libvirtd does not run the hooks
# (a domain's start maps nothing), and the next configure reloads it.
kvx_step "a libvirtd reload refused by policy-rc.d: no record of the hooks, libvirtd does not run them"
stamp=/var/lib/kvmxdp/libvirt-hooks.sha256
in_ct systemctl is-active -q libvirtd || in_ct systemctl start libvirtd || true
must assert_eq "libvirtd runs before the install" active "$(in_ct systemctl is-active libvirtd || true)"
lvpid=$(in_ct systemctl show -p MainPID --value libvirtd)
reloads=$(lv_reloads)
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
out=$(in_ct dpkg -i "/root/$(basename "$deb")" 2>&1) || kvx_fatal "dpkg -i (policy-rc.d 101): $out"
kvx_log "dpkg -i (policy-rc.d 101): $out"
assert_contains "the postinst warns: libvirtd not reloaded" "libvirtd.service was not reloaded" "$out"
assert_fails "no record of the hooks" in_ct test -e "$stamp"
sleep 2
assert_eq "libvirtd not reloaded" "$reloads" "$(lv_reloads)"
rm -f "$root/usr/sbin/policy-rc.d"
# The instance, started by hand (not enabled since the purge).
in_ct systemctl start kvmxdp@kvxbr0 >/dev/null 2>&1 ||
	kvx_fatal "systemctl start kvmxdp@kvxbr0: $(in_ct journalctl --no-pager -o cat -n 15 -u kvmxdp@kvxbr0 2>&1)"
must assert_eq "attached" 1 "$(tc -n "$ns" filter show dev kvxbr0 ingress | grep -c ' bpf .*handle ' || true)"
out=$(in_ct virsh define /root/web1.xml 2>&1) || kvx_fatal "virsh define web1: $out"
ext=10.77.0.101 # web1's 1:1 address (libvirt_domain_metadata's mapped/unmapped)
hook_ran() { # WHEN: web1 started; did libvirtd run kvmxdp's hook?
	local out
	out=$(in_ct virsh start web1 2>&1) || kvx_fatal "virsh start web1 ($1): $out"
	must assert_ok "web1 running ($1)" running
	sleep 1
	in_ct grep -q web1 /etc/kvmxdp/kvmxdp.json
}
assert_fails "libvirtd ran no kvmxdp hook at web1's start (policy-rc.d refused the reload)" hook_ran "refused"
unmapped "web1 started, libvirtd not reloaded"
assert_eq "the same libvirtd throughout (no restart found the hooks)" "$lvpid" \
	"$(in_ct systemctl show -p MainPID --value libvirtd)"
must assert_ok "virsh destroy web1" in_ct virsh destroy web1

kvx_step "a libvirtd reload that fails: no record; dpkg-reconfigure once it works reloads libvirtd"
dropin=/run/systemd/system/libvirtd.service.d
in_ct mkdir -p "$dropin"
in_ct sh -c "printf '[Service]\nExecReload=\nExecReload=/bin/false\n' >$dropin/kvx-test-reload.conf"
must assert_ok "systemctl daemon-reload (libvirtd's reload fails)" in_ct systemctl daemon-reload
out=$(in_ct env DEBIAN_FRONTEND=noninteractive dpkg-reconfigure kvmxdp 2>&1) ||
	kvx_fatal "dpkg-reconfigure (failing reload): $out"
kvx_log "dpkg-reconfigure (failing reload): $out"
assert_contains "the postinst warns: libvirtd not reloaded" "libvirtd.service was not reloaded" "$out"
assert_fails "no record of the hooks" in_ct test -e "$stamp"
assert_fails "libvirtd ran no kvmxdp hook at web1's start (its reload failed)" hook_ran "reload failed"
must assert_ok "virsh destroy web1" in_ct virsh destroy web1
in_ct rm -r "$dropin"
must assert_ok "systemctl daemon-reload (libvirtd's own reload)" in_ct systemctl daemon-reload
reloads=$(lv_reloads)
out=$(in_ct env DEBIAN_FRONTEND=noninteractive dpkg-reconfigure kvmxdp 2>&1) ||
	kvx_fatal "dpkg-reconfigure: $out"
assert_not_contains "no warning" "not reloaded" "$out"
lv_reloaded() { (($(lv_reloads) > reloads)); }
kvx_wait_for 10 "libvirtd reloaded by dpkg-reconfigure" lv_reloaded ||
	kvx_log "libvirtd's journal: $(in_ct journalctl --no-pager -o cat -u libvirtd | tail -5)"
assert_ok "the hooks recorded" in_ct test -s "$stamp"
sleep 2
assert_ok "libvirtd runs kvmxdp's hook at web1's start: its mappings made" hook_ran "reloaded"
mapped "web1 started after dpkg-reconfigure's reload"
assert_eq "the same libvirtd, reloaded" "$lvpid" "$(in_ct systemctl show -p MainPID --value libvirtd)"
must assert_ok "virsh destroy web1" in_ct virsh destroy web1
assert_ok "virsh undefine web1" in_ct virsh undefine web1
assert_ok "virsh net-destroy kvxnet" in_ct virsh net-destroy kvxnet
in_ct systemctl poweroff >/dev/null 2>&1 || true
for ((i = 0; i < 50; i++)); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
kvx_finish
