#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/systemd/check_unit.sh KVMXDP: the unit `kvmxdp install` writes, as
# systemd's own tools read it, offline (no systemd needs to run, nothing is
# installed on this machine):
#   - `systemd-analyze verify` of the template and of an escaped instance
#     (kvmxdp@br\x2dlan.10.service) says nothing: every directive parses;
#   - `systemd-analyze security --offline` rates its exposure at most
#     MAX_EXPOSURE (a change that weakens the sandbox fails here);
#   - the instance is used unescaped (%I), restarts end (start limit) and
#     stop at once on the exit codes kvmxdp really returns for a bad config,
#     a config without the bridge's instance and a usage error, but not on
#     the one of a bridge that does not exist yet (root only: without the
#     capabilities attach stops before it looks).
# The unit is the packaged one (`install --prefix /usr`, default paths);
# verify needs its binary, so it checks a copy that runs this build's.
set -euo pipefail

# systemd-analyze's exposure on its 0-100 scale (22: "2.2 OK"; 1.9 before
# the daemon got AF_PACKET and CAP_NET_RAW for its RFC 5227 probes and
# relay's router advertisements, and loopback for --metrics scrapes).
MAX_EXPOSURE=22

fail() {
	echo "check_unit: FAIL: $*" >&2
	exit 1
}
[[ $# -eq 1 && -x $1 ]] || fail "usage: check_unit.sh KVMXDP_BINARY"
kvmxdp=$(readlink -f "$1")
command -v systemd-analyze >/dev/null ||
	fail "systemd-analyze not found (Debian package systemd: scripts/install-deps.sh installs it)"
[[ $kvmxdp != *[[:space:]%\$\\\"\']* ]] || fail "the binary's path '$kvmxdp' needs quoting; use a plain one"

tmp=$(mktemp -d)
trap 'rm -rf --one-file-system "$tmp"' EXIT
"$kvmxdp" install --root "$tmp/root" --prefix /usr >/dev/null
unit=$tmp/root/etc/systemd/system/kvmxdp@.service
[[ -f $unit ]] || fail "install wrote no $unit"

# verify: the template and an instance whose name systemd escapes.
mkdir "$tmp/v"
sed "s|^ExecStart=/usr/sbin/kvmxdp |ExecStart=$kvmxdp |" "$unit" >"$tmp/v/kvmxdp@.service"
grep -q "^ExecStart=$kvmxdp " "$tmp/v/kvmxdp@.service" || fail "no ExecStart=/usr/sbin/kvmxdp line"
instance='kvmxdp@br\x2dlan.10.service'
ln -s kvmxdp@.service "$tmp/v/$instance"
for u in "$tmp/v/kvmxdp@.service" "$tmp/v/$instance"; do
	out=$(systemd-analyze verify --man=no --generators=no "$u" 2>&1) ||
		fail "systemd-analyze verify $(basename "$u") failed: $out"
	[[ -z $out ]] || fail "systemd-analyze verify $(basename "$u") warns: $out"
done
echo "check_unit: ok: systemd-analyze verify: no warning (template and $instance)"

# security: the exposure, with the table for the log.
report=$(systemd-analyze security --offline=true "$unit" 2>&1) || true
echo "$report" | grep -v '^✓' || true
systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE" "$unit" >/dev/null 2>&1 ||
	fail "exposure above $MAX_EXPOSURE/100: ${report##*→ }"
echo "check_unit: ok: exposure at most $MAX_EXPOSURE/100: ${report##*→ }"

# The directives the unit must have.
has() { grep -qxF -- "$1" "$unit" || fail "the unit lacks '$1'"; }
grep -q '%i' "$unit" && fail "the unit uses %i (the escaped instance): $(grep -n '%i' "$unit")"
grep -q '^ExecStart=.* attach --bridge %I$' "$unit" || fail "ExecStart does not attach --bridge %I"
has 'Restart=on-failure'
# Started means attached: the daemon sends READY=1 (Type=notify), pings the
# watchdog, and reloads on SIGHUP.
has 'Type=notify'
grep -q '^WatchdogSec=[1-9][0-9]*$' "$unit" || fail "no WatchdogSec="
has 'ExecReload=kill -HUP $MAINPID'
grep -q '^StartLimitIntervalSec=[1-9]' "$unit" || fail "no StartLimitIntervalSec="
grep -q '^StartLimitBurst=[1-9]' "$unit" || fail "no StartLimitBurst="
[[ $(sed -n '/^\[Unit\]/,/^\[/p' "$unit") == *StartLimitBurst=* ]] || fail "StartLimitBurst= is not in [Unit]"
prevent=$(sed -n 's/^RestartPreventExitStatus=//p' "$unit")
[[ -n $prevent ]] || fail "no RestartPreventExitStatus="
# Root may not write the kernel's tunables that run programs outside the
# sandbox (kernel/core_pattern, kernel/modprobe, sysrq, uevent_helper);
# only net/ipv4's sysctls and the bpffs are reopened.
has 'ReadOnlyPaths=/proc/sys -/proc/sysrq-trigger /sys'
rw=" $(sed -n 's/^ReadWritePaths=//p' "$unit") "
[[ $rw == *" /proc/sys/net/ipv4 "* && $rw == *" -/sys/fs/bpf "* ]] ||
	fail "ReadWritePaths=$rw does not reopen /proc/sys/net/ipv4 and /sys/fs/bpf"
for p in $rw; do
	case ${p#-} in /proc/sys | /proc/sys/kernel* | /sys | /sys/kernel*) fail "ReadWritePaths= reopens $p" ;; esac
done
echo "check_unit: ok: /proc/sys and /sys read-only but$rw"
echo "check_unit: ok: %I, Type=notify with $(grep '^WatchdogSec=' "$unit"), ExecReload=, Restart=on-failure with a start limit, RestartPreventExitStatus=$prevent"

# Exit codes kvmxdp returns, against RestartPreventExitStatus=.
run() { # CMD...: its exit code in $rc, its stderr in $err
	rc=0
	err=$("$@" 2>&1 >/dev/null) || rc=$?
}
prevents() { [[ " $prevent " == *" $1 "* ]]; }
g=(--bpffs "$tmp/bpffs" --run-dir "$tmp/run")
printf '{"version": 1, "instances": [' >"$tmp/bad.json"
run "$kvmxdp" "${g[@]}" --config "$tmp/bad.json" attach --bridge br-lan.10
prevents "$rc" || fail "a config with invalid JSON exits $rc ($err), not in RestartPreventExitStatus=$prevent"
echo "check_unit: ok: invalid config: exit $rc ($err): no restart"
printf '{"version": 1, "instances": []}\n' >"$tmp/empty.json"
run "$kvmxdp" "${g[@]}" --config "$tmp/empty.json" attach --bridge br-lan.10
prevents "$rc" || fail "a config without the bridge exits $rc ($err), not in RestartPreventExitStatus=$prevent"
echo "check_unit: ok: no instance of the bridge: exit $rc ($err): no restart"
run "$kvmxdp" "${g[@]}" --config "$tmp/empty.json" attach
prevents "$rc" || fail "a usage error exits $rc ($err), not in RestartPreventExitStatus=$prevent"
echo "check_unit: ok: usage error: exit $rc: no restart"
if [[ $(id -u) -eq 0 ]]; then
	# In a network namespace of its own: nothing of this machine's is looked at.
	run unshare --net -- "$kvmxdp" "${g[@]}" --config "$tmp/empty.json" attach --bridge kvxnone0 --uplink lo
	[[ $rc -ne 0 && $err == *"'kvxnone0' does not exist"* ]] || fail "attach to a missing bridge: exit $rc: $err"
	prevents "$rc" && fail "a bridge that does not exist yet exits $rc, which RestartPreventExitStatus=$prevent never retries"
	echo "check_unit: ok: bridge not there yet: exit $rc: restarted"
else
	echo "check_unit: note: not root: the missing-bridge exit code is not checked (attach stops at the capability check)"
fi
echo "check_unit: PASSED"
