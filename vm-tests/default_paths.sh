#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/default_paths.sh: kvmxdp with no --bpffs/--config/--run-dir, as a
# user runs it: attach, status, map add, map list and detach work with the
# defaults, and their files appear where README says: the config in
# /etc/kvmxdp/kvmxdp.json, the daemon's pid file in /run/kvmxdp, the pins
# under /sys/fs/bpf/kvmxdp/<bridge>/ on a bpffs that attach mounts itself
# when /sys/fs/bpf is not one.
#
# Every other test passes its own paths; this one must not touch the host's
# /etc, /run or /sys/fs/bpf, so kvmxdp runs in a private mount namespace
# (held by a `sleep`; every command enters it with nsenter) in which:
#   /sys  a fresh sysfs of the host netns, the old one and its submounts
#         detached (as `ip netns exec` does): /sys/fs/bpf is an empty
#         directory there, not a bpffs, and no cgroup2 is mounted;
#   /run  a tmpfs;
#   /etc  an overlay: the host's /etc read-only below, writes go to a tmpfs
#         (and a host /etc/kvmxdp, if there is one, is hidden by a tmpfs).
# The host's /etc/kvmxdp, /run/kvmxdp, /sys/fs/bpf/kvmxdp and the mounts on
# /etc, /run and /sys/fs/bpf must be the same before, during and after.
#
# Topology: vm-tests/lib.sh (masquerade.sh's diagram), guests serve HTTP.
#
# Usage: default_paths.sh KVMXDP_BINARY
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools unshare findmnt
kvx_topology_up
kvx_guest_http_servers
kvx_http_server
echo hello >"$KVX_TMP/www/hello"
EXT1=10.77.0.101

# What this test must leave alone on the host.
host_paths() {
	local p
	for p in /etc/kvmxdp /run/kvmxdp /sys/fs/bpf/kvmxdp; do
		if [[ -e $p ]]; then find "$p" -printf '%p %y %m %s %T@\n' | sort; else echo "$p: absent"; fi
	done
	for p in /etc /run /sys/fs/bpf; do
		echo "$p: mount $(findmnt -n -o FSTYPE,SOURCE --mountpoint "$p" || echo none)"
	done
}
HOST0=$(host_paths)

kvx_step "a private mount namespace with a fresh sysfs, /run and an overlay on /etc"
mkdir -p "$KVX_TMP/etc-rw"
kvx_bg "$KVX_TMP/holder.log" nsenter --net="/run/netns/$NS_HOST" \
	unshare --mount --propagation private bash -c '
		set -e
		umount -l /sys
		mount -t sysfs sysfs /sys
		mount -t tmpfs -o mode=0755 tmpfs /run
		mount -t tmpfs tmpfs "$1"
		mkdir "$1/upper" "$1/work"
		mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
		if [[ -e /etc/kvmxdp ]]; then mount -t tmpfs -o mode=0700 tmpfs /etc/kvmxdp; fi
		echo ready
		exec sleep 1000' _ "$KVX_TMP/etc-rw"
HOLDER=$KVX_LAST_PID
kvx_wait_file_contains 10 "$KVX_TMP/holder.log" ready || kvx_fatal "no private mount namespace: $(cat "$KVX_TMP/holder.log")"
ROOT=/proc/$HOLDER/root # the private namespace's tree, seen from here
# --root/--wd: entering a mount namespace resets the root to the namespace's
# own, which in a chroot (the fresh-machine check) is not the tree we run in.
kvd() { nsenter --target "$HOLDER" --mount --net --root --wd "$KVMXDP" "$@"; }
ns_mount() { findmnt --task "$HOLDER" -n -o FSTYPE --mountpoint "$1" || true; }
assert_eq "inside: /sys/fs/bpf is not a bpffs yet" "" "$(ns_mount /sys/fs/bpf)"
assert_eq "inside: /etc is the overlay" overlay "$(ns_mount /etc)"
assert_eq "inside: no /etc/kvmxdp/kvmxdp.json yet" "" "$(ls "$ROOT/etc/kvmxdp" 2>/dev/null || true)"

kvx_step "attach with the defaults"
KVX_FWD0=$(kvx_fwd_datagrams)
kvx_bg "$KVX_TMP/daemon.log" nsenter --target "$HOLDER" --mount --net --root --wd \
	"$KVMXDP" attach --bridge "$BR" --uplink "$UP"
DAEMON=$KVX_LAST_PID
kvx_wait_file_contains 15 "$KVX_TMP/daemon.log" "kvmxdp: attached bridge=$BR uplink=$UP" ||
	kvx_fatal "attach with the defaults: $(cat "$KVX_TMP/daemon.log")"
assert_eq "attach mounted a bpffs on /sys/fs/bpf" bpf "$(ns_mount /sys/fs/bpf)"
pins=$(find "$ROOT/sys/fs/bpf/kvmxdp/$BR" -mindepth 1 -printf '%f ' 2>/dev/null || true)
for m in kvx_bind kvx_cfg kvx_ct kvx_extaddr kvx_stats; do
	assert_contains "pinned at /sys/fs/bpf/kvmxdp/$BR/$m" "$m" "$pins"
done
cfg=$(cat "$ROOT/etc/kvmxdp/kvmxdp.json" 2>/dev/null || true)
assert_contains "/etc/kvmxdp/kvmxdp.json records the instance" "\"bridge\": \"$BR\"" "$cfg"
assert_contains "... with its pins under /sys/fs/bpf" "\"pin_dir\": \"/sys/fs/bpf/kvmxdp/$BR\"" "$cfg"
pidfile=$(cat "$ROOT/run/kvmxdp/$BR"-*.pid 2>/dev/null || true)
assert_eq "/run/kvmxdp holds the daemon's pid file" "$DAEMON" "$(tr -d '[:space:]' <<<"$pidfile")"
assert_eq "the host's paths unchanged while attached" "$HOST0" "$(host_paths)"

kvx_step "status, map add, map list with the defaults; real traffic"
st=$(kvd status --json 2>>"$KVX_TMP/status.err" || true)
assert_eq "status lists the instance" "$BR" "$(kvx_json 'i["bridge"]' "$st")"
# The version the binary reports is the one status --json carries.
want_version=$("$KVMXDP" --version)
assert_eq "status --json: version and git describe as --version prints them" "$want_version" \
	"$(kvx_json '"kvmxdp " + d["version"] + (" (git %s)" % d["git_describe"] if d["git_describe"] else "")' "$st")"
assert_eq "status: the daemon's pid (from /run/kvmxdp)" "$DAEMON" "$(kvx_json 'i["daemon_pid"]' "$st")"
assert_eq "status: the host-access hooks (cgroup2 found with no /sys/fs/cgroup)" 8 \
	"$(kvx_json 'len(i["host_access"])' "$st")"
assert_eq "guest1 -> server (masquerade)" hello "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/hello")"
assert_eq "the server sees the uplink address" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_ok "map add $EXT1 $G1_IP" kvd map add "$EXT1" "$G1_IP"
assert_contains "map list" "$EXT1" "$(kvd map list 2>&1)"
assert_contains "the mapping is in /etc/kvmxdp/kvmxdp.json" "\"ext\": \"$EXT1\"" \
	"$(cat "$ROOT/etc/kvmxdp/kvmxdp.json" 2>/dev/null || true)"
assert_eq "LAN -> $EXT1:80 reaches guest1" guest1 "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"
assert_ge "the datapath counted it (XLATE_IN)" \
	"$(kvx_json 'i["counters"]["XLATE_IN"]["packets"]' "$(kvd status --json 2>/dev/null)")" 1

kvx_step "detach with the defaults"
out=$(kvd detach --bridge "$BR" 2>&1) || kvx_fail "detach: $out"
assert_contains "detach" "kvmxdp: detached bridge=$BR" "$out"
kvx_wait_for 5 "the daemon exits" bash -c "! kill -0 $DAEMON 2>/dev/null" || true
assert_eq "no pins left under /sys/fs/bpf/kvmxdp" "" \
	"$(cd "$ROOT/sys/fs/bpf" && find . -path './kvmxdp/*' 2>/dev/null || true)"
assert_eq "no pid file left in /run/kvmxdp" "" "$(find "$ROOT/run/kvmxdp" -name '*.pid' 2>/dev/null || true)"
assert_contains "the config keeps the mapping as detached" "\"detached\"" \
	"$(cat "$ROOT/etc/kvmxdp/kvmxdp.json" 2>/dev/null || true)"
assert_eq "guest1 -> server no more" "" "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/hello")"
assert_eq "LAN -> $EXT1 no more" "" "$(kvx_http_get "$NS_LAN" "http://$EXT1/who")"

kvx_step "the host's own paths"
assert_eq "host /etc/kvmxdp, /run/kvmxdp, /sys/fs/bpf/kvmxdp and their mounts unchanged" \
	"$HOST0" "$(host_paths)"
assert_eq "the overlay's writes stayed in its tmpfs (host side of $KVX_TMP/etc-rw empty)" "" \
	"$(ls -A "$KVX_TMP/etc-rw")"

kvx_finish
