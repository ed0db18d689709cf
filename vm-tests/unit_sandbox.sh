#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/unit_sandbox.sh: the installed unit's ExecStart line, run under
# the unit's own restrictions, attaches and carries real traffic (NAT and a
# port forward, a libvirt network restart), and its capability set is
# minimal: with any one of them fewer it stops with one error line, and
# the kernel itself refuses the datapath without it.
#
# No systemd runs in the test machines (and a test must not start
# services), so the sandbox is reproduced from the unit's text, as far as
# that can be done without systemd:
#
#   CapabilityBoundingSet=    setpriv --bounding-set: a root daemon's permitted
#                             and effective sets become exactly that set
#   NoNewPrivileges=, UMask=  setpriv --no-new-privs, umask
#   ProtectSystem=strict,     a private mount namespace where every mount is
#   ReadWritePaths=           read-only but /dev, /proc, /sys and the unit's
#                             writable paths (checked before the daemon runs)
#   ProtectHome=yes           empty, inaccessible tmpfs on /home, /root, /run/user
#   PrivateDevices=           a /dev of null, zero, full, random, urandom
#   ProtectControlGroups=     the cgroup v2 hierarchy mounted read-only
#   ProtectProc=invisible     a /proc with hidepid=invisible
#   SystemCallFilter=,        strace makes every system call outside the filter
#   SystemCallErrorNumber=    (expanded by `systemd-analyze syscall-filter`)
#                             fail with EPERM, and the test fails if one was tried
#   RestrictAddressFamilies=, checked on strace's record: socket() families,
#   IPAddressDeny=any,        no IP connect/send, no writable+executable
#   MemoryDenyWriteExecute=,  mapping, no namespace or personality change
#   RestrictNamespaces=, LockPersonality=
#   %I                        the bridge is kx-<id>.9: the hook names the unit
#                             kvmxdp@kx\x2d<id>.9.service, unescaped as systemd does
# Not reproduced: PrivateTmp= (the unit written for this test's /tmp paths
# turns it off), ProtectKernel*/ProtectClock/ProtectHostname/RestrictRealtime
# (capabilities the bounding set removes anyway, and seccomp rules the
# system call check covers), IPAddressDeny's cgroup filter itself.
#
# Also: a non-root process without capabilities gets the one error line
# (exit 78) and changes nothing; a non-root process with them passes the
# capability check.
#
#   guest1/guest2 -- bridge kx-<id>.9 [host ns: the sandboxed daemon] -- uplink -- lan -- server
#
# Usage: unit_sandbox.sh KVMXDP_BINARY
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
kvx_init "${1:-}"
kvx_require_tools setpriv strace systemd-analyze systemd-escape unshare
kvx_topology_up "kx-$KVX_ID.9"
kvx_http_server
kvx_guest_http_servers
echo server >"$KVX_TMP/www/who"

# The unit's paths: config, pid files and bpffs in three directories of
# their own, so that each must be writable in the sandbox on its own.
mkdir -p "$KVX_TMP/kvmxdp-etc"
KVX_CFG=$KVX_TMP/kvmxdp-etc/kvmxdp.json
KVX_OPTS=(--bpffs "$BPFFS" --config "$KVX_CFG" --run-dir "$KVX_TMP/kvmxdp-run")
ROOT=$KVX_TMP/root
UNIT=$ROOT/etc/systemd/system/kvmxdp@.service
HOOK=$ROOT/etc/libvirt/hooks/network.d/kvmxdp
CALLS=$KVX_TMP/systemctl.calls

unit_values() { sed -n "s/^$1=//p" "$UNIT"; } # KEY: every value of KEY=, one a line

kvx_step "kvmxdp install: the unit for this test's paths"
assert_ok "kvmxdp install --root" kvx install --root "$ROOT"
[[ -f $UNIT && -x $HOOK ]] || kvx_fatal "install wrote no unit/hook: $(find "$ROOT" -type f)"
exec_start=$(unit_values ExecStart)
read -ra caps <<<"$(unit_values CapabilityBoundingSet)"
((${#caps[@]} > 0)) || kvx_fatal "the unit has no CapabilityBoundingSet="
read -ra rw_paths <<<"$(unit_values ReadWritePaths)"
rw_paths=("${rw_paths[@]#-}") # "-": may be missing
assert_eq "the unit's writable paths: the config's, the pid files', net/ipv4's and net/ipv6/conf's sysctls and the bpffs" \
	"$KVX_TMP/kvmxdp-etc $KVX_TMP/kvmxdp-run /proc/sys/net/ipv4 /proc/sys/net/ipv6/conf $BPFFS" "${rw_paths[*]}"
read -ra ro_paths <<<"$(unit_values ReadOnlyPaths)"
assert_eq "the unit's read-only paths: /proc/sys, /proc/sysrq-trigger, /sys" \
	"/proc/sys -/proc/sysrq-trigger /sys" "${ro_paths[*]}"
assert_contains "ExecStart attaches the unescaped instance" " attach --bridge %I" "${exec_start: -19}"
assert_eq "no private /tmp (the unit's paths are in /tmp)" no "$(unit_values PrivateTmp)"
kvx_log "capabilities: ${caps[*]}"
setpriv_caps() { # CAP_X...: "+x,+y" for setpriv
	local c out=""
	for c in "$@"; do
		c=${c#CAP_}
		out+=",+${c,,}"
	done
	echo "${out#,}"
}

# The allowed system calls: the unit's SystemCallFilter= lines applied in
# order (the first an allow list, then "~" removes and a plain line adds).
expand() { # @GROUP|NAME...: system call names
	local w members
	for w in "$@"; do
		if [[ $w == @* ]]; then
			read -ra members <<<"$(systemd-analyze syscall-filter "$w" |
				awk 'NR > 1 && NF && $1 !~ /^#/ {printf "%s ", $1}')"
			expand "${members[@]}"
		else
			echo "$w"
		fi
	done
}
declare -A allowed=()
first=1
while read -r line; do
	read -ra words <<<"${line#\~}"
	if [[ $line == '~'* ]]; then
		((first == 0)) || kvx_fatal "SystemCallFilter= starts with a deny list: '$line'"
		for s in $(expand "${words[@]}"); do unset "allowed[$s]"; done
	else
		for s in $(expand "${words[@]}"); do allowed[$s]=1; done
	fi
	first=0
done < <(unit_values SystemCallFilter)
((${#allowed[@]} > 100)) || kvx_fatal "SystemCallFilter= allows only ${#allowed[@]} system calls: $(unit_values SystemCallFilter)"
assert_eq "the filter allows bpf(2)" 1 "${allowed[bpf]:-0}"
assert_eq "the filter denies @privileged (chown)" 0 "${allowed[chown]:-0}"
assert_eq "SystemCallErrorNumber" EPERM "$(unit_values SystemCallErrorNumber)"
inject='!'
for s in "${!allowed[@]}"; do inject+="?$s,"; done
inject=${inject%,}:error=EPERM
# The emulation can fail: a call outside the filter (chown, in @privileged)
# gets EPERM and is marked in strace's record.
: >"$KVX_TMP/chown-probe"
rc=0
strace -f -qq -o "$KVX_TMP/strace.probe" -e trace=all -e "inject=$inject" -- \
	chown 0:0 "$KVX_TMP/chown-probe" 2>/dev/null || rc=$?
assert_ne "under the filter, chown(1) fails" 0 "$rc"
assert_contains "strace marks its call" "(INJECTED)" "$(grep chown "$KVX_TMP/strace.probe" || true)"
families=" $(unit_values RestrictAddressFamilies) "

# The sandbox: a private mount namespace in the host's network namespace,
# arranged as the unit's settings arrange the daemon's, then exec "$@".
SANDBOX_SH=$KVX_TMP/sandbox.sh
cat >"$SANDBOX_SH" <<'EOF'
set -euo pipefail
read -ra rw <<<"$SANDBOX_RW"
read -ra ro <<<"$SANDBOX_RO"
# /sys of this network namespace, as the host namespace's daemon sees
# its own; the cgroup v2 hierarchy read-only (ProtectControlGroups=).
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t cgroup2 -o ro,nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
# ProtectProc=invisible
mount -t proc -o nosuid,nodev,noexec,hidepid=invisible proc /proc
# PrivateDevices=: a /dev with the pseudo devices only (and the links to
# /proc/self/fd that systemd makes too).
dev=$(mktemp -d "$SANDBOX_TMP/dev.XXXXXX")
mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs "$dev"
for n in null zero full random urandom tty; do
	: >"$dev/$n"
	mount --bind "/dev/$n" "$dev/$n"
done
mkdir "$dev/shm"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dev/shm"
ln -s /proc/self/fd "$dev/fd"
for n in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${n%%:*}" "$dev/${n#*:}"; done
mount --move "$dev" /dev
# ProtectHome=yes
if [[ $SANDBOX_HOME == yes ]]; then
	for h in /home /root /run/user; do
		[[ -d $h ]] && mount -t tmpfs -o ro,mode=000 tmpfs "$h"
	done
fi
# ProtectSystem=strict: every mount read-only but the API file systems
# and the ReadWritePaths= (bound onto themselves first: mounts of their own).
for p in "${rw[@]}"; do mount --bind "$p" "$p"; done
mps=$(awk '{print $5}' /proc/self/mountinfo)
while read -r mp; do
	mp=$(printf '%b' "${mp//\\/\\0}") # mountinfo's \040 escapes
	case $mp in /dev | /dev/* | /proc | /proc/* | /sys | /sys/*) continue ;; esac
	for p in "${rw[@]}"; do [[ $mp == "$p" ]] && continue 2; done
	mount -o remount,bind,ro "$mp" 2>/dev/null || true
done <<<"$mps"
# ReadOnlyPaths= ("-": may be missing): each bound onto itself with what
# is mounted below it, then every mount there read-only but those of the
# ReadWritePaths= (the deeper path wins, as in systemd's namespace).
for p in "${ro[@]}"; do
	p=${p#-}
	[[ -e $p ]] && mount --rbind "$p" "$p"
done
mps=$(awk '{print $5}' /proc/self/mountinfo)
while read -r mp; do
	mp=$(printf '%b' "${mp//\\/\\0}")
	under=0
	for p in "${ro[@]}"; do
		p=${p#-}
		[[ $mp == "$p" || $mp == "$p"/* ]] && under=1
	done
	((under)) || continue
	for p in "${rw[@]}"; do [[ $mp == "$p" || $mp == "$p"/* ]] && continue 2; done
	mount -o remount,bind,ro "$mp"
done <<<"$mps"
# The sandbox is real: the test's directory is read-only, the writable
# paths are writable (mkdir: a bpffs takes no plain files, and no dots).
if mkdir "$SANDBOX_TMP/kvx-rw-probe" 2>/dev/null; then
	echo "sandbox: $SANDBOX_TMP is writable" >&2
	exit 125
fi
for p in "${rw[@]}"; do
	[[ $p == /proc/* ]] && continue
	mkdir "$p/kvx-rw-probe" && rmdir "$p/kvx-rw-probe" || { echo "sandbox: $p is read-only" >&2; exit 125; }
done
# Opened for writing, nothing written: root may not reach the sysctls that
# run a program of its choice outside the sandbox, and reaches those
# kvmxdp writes.
for f in /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe /proc/sysrq-trigger; do
	[[ -e $f ]] || continue
	if (: >>"$f") 2>/dev/null; then
		echo "sandbox: $f is writable" >&2
		exit 125
	fi
done
(: >>/proc/sys/net/ipv4/ip_local_reserved_ports) || { echo "sandbox: net/ipv4 sysctls are read-only" >&2; exit 125; }
umask "$SANDBOX_UMASK"
exec "$@"
EOF
# sandbox CAPS_CSV trace|"" -- CMD...: SB=(the command line that runs CMD
# as the unit runs ExecStart); every process of it execs the next, so its
# pid is strace's (or the daemon's).  strace writes its record ("PID
# call(...) = ...") to the file open on fd 9: by its name it would be
# read-only there.
sandbox() {
	local capset=$1 trace=$2
	shift 3
	SB=(nsenter --net="/run/netns/$NS_HOST" -- unshare --mount --propagation private --
		env SANDBOX_RW="${rw_paths[*]}" SANDBOX_RO="${ro_paths[*]}" SANDBOX_TMP="$KVX_TMP"
		SANDBOX_HOME="$(unit_values ProtectHome)" SANDBOX_UMASK="$(unit_values UMask)"
		bash "$SANDBOX_SH"
		setpriv "--bounding-set=-all,$capset" --inh-caps=-all --no-new-privs --)
	[[ -z $trace ]] || SB+=(strace -f -qq -o /proc/self/fd/9 -e trace=all -e "inject=$inject" --)
	SB+=("$@")
}

kvx_step "non-root: without capabilities one error line; with them accepted"
kvx_netns_snapshot() { tc -n "$NS_HOST" filter show dev "$BR" ingress; ls -A "$BPFFS"; ls -A "$KVX_TMP/kvmxdp-etc"; }
before=$(kvx_netns_snapshot)
rc=0
err=$(nsx "$NS_HOST" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- \
	"$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP" 2>&1 >/dev/null) || rc=$?
assert_eq "uid 65534, no capabilities: exit 78 (configuration error)" 78 "$rc"
assert_eq "uid 65534, no capabilities: the one error line" \
	"kvmxdp: error: attach needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: missing CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON" \
	"$err"
assert_eq "nothing changed: filters, bpffs, config directory" "$before" "$(kvx_netns_snapshot)"
ambient=$(setpriv_caps "${caps[@]}")
rc=0
err=$(nsx "$NS_HOST" setpriv --reuid=65534 --regid=65534 --clear-groups \
	--inh-caps="-all,$ambient" --ambient-caps="-all,$ambient" -- \
	"$KVMXDP" "${KVX_OPTS[@]}" attach --bridge "$BR" --uplink "$UP" 2>&1 >/dev/null) || rc=$?
kvx_log "uid 65534 with ${caps[*]}: exit $rc: $err"
assert_not_contains "uid 65534 with the unit's capabilities passes the capability check" "needs CAP_" "$err"
# ... and goes on to the kernel (probes need CAP_BPF) and then to the
# config, root's: refused by the file system, not by kvmxdp.
assert_contains "it stops at the config directory, root's" "$KVX_TMP/kvmxdp-etc" "$err"
assert_eq "nothing changed" "$before" "$(kvx_netns_snapshot)"

kvx_step "the instance, recorded by hand: attach, a port forward"
kvx_attach_bg || kvx_fatal "cannot attach"
assert_ok "map add uplink:8080 $G2_IP:80" kvx map add uplink:8080 "$G2_IP:80" --proto tcp

kvx_step "reboot: daemon, pins, filters, cgroup links, pid files and the bridge gone"
kvx_daemon_stop
umount "$BPFFS"
mount -t bpf bpf "$BPFFS"
rm -f "$KVX_TMP"/kvmxdp-run/*
for dev in "$BR" "$UP"; do tc -n "$NS_HOST" qdisc del dev "$dev" clsact 2>/dev/null || true; done
ip -n "$NS_HOST" link del "$BR"
assert_eq "LAN -> :8080 while 'rebooting'" "" "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"

kvx_step "libvirt starts the network: the hook names the escaped instance"
kvx_bridge_recreate
mkdir -p "$KVX_TMP/fakebin"
printf '#!/bin/sh\necho "$*" >>"%s"\n' "$CALLS" >"$KVX_TMP/fakebin/systemctl"
chmod +x "$KVX_TMP/fakebin/systemctl"
: >"$CALLS"
printf "<network>\n  <name>default</name>\n  <bridge name='%s' stp='on' delay='0'/>\n</network>\n" "$BR" |
	PATH=$KVX_TMP/fakebin:$PATH sh "$HOOK" default started begin - ||
	kvx_fail "the hook failed"
unit_name="kvmxdp@kx\\x2d$KVX_ID.9.service"
assert_eq "the hook resets and starts kvmxdp@<systemd-escape of the bridge>" \
	"reset-failed $unit_name|--no-block start $unit_name" "$(paste -sd'|' "$CALLS")"
instance=$(systemd-escape --unescape --instance "$(awk '$2 == "start" {print $3}' "$CALLS")")
assert_eq "%I of that unit is the bridge" "$BR" "$instance"
read -ra cmd <<<"${exec_start//%I/$instance}"

# wait_attached: the sandboxed daemon's "attached" line (gives up early if
# it exits).
wait_attached() {
	local i
	for ((i = 0; i < 300; i++)); do
		grep -q '^kvmxdp: attached' "$KVX_DAEMON_LOG" && return 0
		kill -0 "$KVX_DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	kvx_fatal "the sandboxed daemon did not attach: $(cat "$KVX_DAEMON_LOG")"
}
# start_sandboxed N: ExecStart in the sandbox, traced into strace.N, its
# output in unit.N.log; returns once it attached.
start_sandboxed() {
	KVX_DAEMON_LOG=$KVX_TMP/unit.$1.log
	sandbox "$(setpriv_caps "${caps[@]}")" trace -- "${cmd[@]}"
	exec 9>"$KVX_TMP/strace.$1"
	kvx_bg "$KVX_DAEMON_LOG" "${SB[@]}"
	exec 9>&-
	KVX_DAEMON_PID=$KVX_LAST_PID
	wait_attached
}
# The daemon's pid (strace's child), from its pid file.
daemon_pid() { awk 'NR == 1 {print $1}' "$KVX_TMP"/kvmxdp-run/*.pid 2>/dev/null; }
# The capability mask of CAP_X names, as /proc/PID/status prints it.
cap_mask() {
	local -A bit=([CAP_NET_ADMIN]=12 [CAP_NET_RAW]=13 [CAP_SYS_ADMIN]=21 [CAP_PERFMON]=38 [CAP_BPF]=39)
	local c m=0
	for c in "$@"; do m=$((m | 1 << ${bit[$c]:?unknown capability $c})); done
	printf '%016x' "$m"
}
# Stop the daemon as `systemctl stop` does (SIGTERM); its exit code in STOP_RC.
stop_sandboxed() {
	local pid
	pid=$(daemon_pid)
	[[ -n $pid ]] && kill -TERM "$pid"
	STOP_RC=0
	wait "$KVX_DAEMON_PID" || STOP_RC=$?
	KVX_DAEMON_PID=""
}
# check_trace LOG: what systemd's seccomp rules would have refused.
check_trace() {
	local log=$1
	assert_ge "strace saw the datapath loaded" "$(grep -c 'bpf(BPF_PROG_LOAD' "$log" || true)" 1
	assert_empty "no system call outside SystemCallFilter= (each got EPERM)" \
		"$(grep -F '(INJECTED)' "$log" | head -n 5 || true)"
	local fam bad=""
	for fam in $(grep -oE '^[0-9]+ +socket\(AF_[A-Z0-9]+' "$log" | sed 's/.*(//' | sort -u || true); do
		[[ $families == *" $fam "* ]] || bad+=" $fam"
	done
	assert_empty "socket() families within RestrictAddressFamilies=$families" "$bad"
	assert_empty "no IP packet of its own (IPAddressDeny=any)" \
		"$(grep -E '^[0-9]+ +(connect|sendto|sendmsg|sendmmsg)\(.*sa_family=AF_INET6?[,}]' "$log" | head -n 3 || true)"
	assert_empty "no writable and executable memory (MemoryDenyWriteExecute=)" \
		"$(grep -E '^[0-9]+ +(mmap\(.*PROT_WRITE\|PROT_EXEC|(pkey_)?mprotect\(.*PROT_EXEC)' "$log" | head -n 3 || true)"
	assert_empty "no namespace or personality change (RestrictNamespaces=, LockPersonality=)" \
		"$(grep -E '^[0-9]+ +(unshare|setns|personality)\(|^[0-9]+ +clone3?\(.*CLONE_NEW' "$log" | head -n 3 || true)"
}

kvx_step "'systemd' runs ExecStart for $unit_name in the sandbox (${caps[*]})"
[[ -n ${KVX_FWD0:-} ]] || KVX_FWD0=$(kvx_fwd_datagrams)
start_sandboxed 1
status=$(cat "/proc/$(daemon_pid)/status")
assert_eq "the daemon's bounding, permitted and effective sets: ${caps[*]}" \
	"$(cap_mask "${caps[@]}") $(cap_mask "${caps[@]}") $(cap_mask "${caps[@]}")" \
	"$(awk '$1 == "CapBnd:" {b=$2} $1 == "CapPrm:" {p=$2} $1 == "CapEff:" {e=$2} END {print b, p, e}' <<<"$status")"
assert_eq "the daemon runs with no_new_privs" 1 "$(awk '$1 == "NoNewPrivs:" {print $2}' <<<"$status")"
assert_eq "guest1 -> server through the NAT" server "$(kvx_http_get "$NS_G1" "http://$SRV_IP:8080/who")"
assert_eq "the server saw the uplink's address" "$UP_IP" "$(kvx_http_last_client "$KVX_TMP/http.log")"
assert_eq "LAN -> $UP_IP:8080 reaches guest2 (the forward, restored)" guest2 \
	"$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_eq "the host reaches the forward too (cgroup hooks through the read-only cgroupfs)" guest2 \
	"$(kvx_http_get "$NS_HOST" "http://$UP_IP:8080/who")"
assert_empty "no warning from the sandboxed attach" "$(grep '^kvmxdp: warning' "$KVX_DAEMON_LOG" || true)"

kvx_step "a libvirt network restart under the sandboxed daemon"
ip -n "$NS_HOST" link del "$BR"
kvx_bridge_recreate
kvx_wait_file_contains 15 "$KVX_DAEMON_LOG" "is back as ifindex" || true
kvx_wait_for 10 "guest1 -> server again" bash -c \
	"[[ -n \$(ip netns exec '$NS_G1' curl -sS --fail --max-time 2 'http://$SRV_IP:8080/' 2>/dev/null) ]]" || true
assert_eq "LAN -> :8080 reaches guest2 on the new bridge" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
stop_sandboxed
assert_eq "SIGTERM: the daemon exits 0 (no restart)" 0 "$STOP_RC"
check_trace "$KVX_TMP/strace.1"

kvx_step "a restart of the unit: resume over the pins, in the sandbox"
start_sandboxed 2
assert_eq "LAN -> :8080 reaches guest2" guest2 "$(kvx_http_get "$NS_LAN" "http://$UP_IP:8080/who")"
assert_eq "guest2 -> server" server "$(kvx_http_get "$NS_G2" "http://$SRV_IP:8080/who")"
stop_sandboxed
assert_eq "SIGTERM: exit 0" 0 "$STOP_RC"
check_trace "$KVX_TMP/strace.2"

kvx_step "one capability fewer: one error line; and the kernel needs each"
obj=$(dirname "$KVMXDP")/bpf/kvmxdp_tc/kvmxdp_tc.bpf.o
[[ -f $obj ]] || kvx_fatal "no datapath object at $obj (run from a build tree)"
bpftool_load() { # CAPS_CSV: load the datapath object with these capabilities only
	rm -rf "$BPFFS/probe"
	setpriv "--bounding-set=-all,$1" --inh-caps=-all --no-new-privs -- \
		bpftool prog loadall "$obj" "$BPFFS/probe" type classifier 2>&1
}
out=$(bpftool_load "$(setpriv_caps "${caps[@]}")") && rc=0 || rc=$?
assert_eq "bpftool loads the datapath with ${caps[*]}" 0 "$rc"
rm -rf "$BPFFS/probe"
# CAP_NET_RAW is the daemon's (RFC 5227 probes, relay's router
# advertisements), not attach's: without it attach runs, those degrade.
assert_contains "the unit keeps CAP_NET_RAW" CAP_NET_RAW "${caps[*]}"
for drop in "${caps[@]}"; do
	[[ $drop == CAP_NET_RAW ]] && continue
	fewer=()
	for c in "${caps[@]}"; do [[ $c == "$drop" ]] || fewer+=("$c"); done
	rc=0
	sandbox "$(setpriv_caps "${fewer[@]}")" "" -- "${cmd[@]}"
	err=$(timeout 30 "${SB[@]}" 2>&1 >/dev/null) || rc=$?
	assert_eq "without $drop: exit 78" 78 "$rc"
	assert_eq "without $drop: the one error line" \
		"kvmxdp: error: attach needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: missing $drop" "$err"
	out=$(bpftool_load "$(setpriv_caps "${fewer[@]}")") && rc=0 || rc=$?
	why=$(grep -m1 'prohibited' <<<"$out" || grep -m1 -iE 'not permitted|denied' <<<"$out" || true)
	assert_ne "without $drop the kernel refuses the datapath (bpftool: $why)" 0 "$rc"
	rm -rf "$BPFFS/probe"
done

kvx_step "detach"
assert_ok "detach" kvx detach --bridge "$BR"
kvx_finish
