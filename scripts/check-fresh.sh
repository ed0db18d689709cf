#!/usr/bin/env bash
# scripts/check-fresh.sh: proves that a Debian 12 machine that never saw this
# project builds and tests kvmxdp from the README alone.  A machine that was
# set up by hand cannot fool it: the check runs in a pristine Debian 12 tree
# made by mmdebstrap from Debian's archive, where nothing is installed but
# what scripts/install-deps.sh installs.
#
#   scripts/check-fresh.sh            install-deps, the README's build, the unit tests and the demo
#   scripts/check-fresh.sh --full     ... and the README's whole test command instead (every test)
#   scripts/check-fresh.sh --shell    a root shell in a fresh tree with the checkout (no install)
#
# How: the untouched tree (variant minbase: the essential packages and apt)
# is cached as a tarball in $KVX_FRESH_CACHE (default /var/cache/kvmxdp-fresh),
# made anew when it is a week old or its inputs (archive, settings) changed,
# and checked against the sha256 recorded when it was made.  Every run
# unpacks it anew into a scratch directory ($KVX_FRESH_SCRATCH, default /var/tmp), so no
# tree that something was installed into is ever used twice.  The checkout's
# tracked files (as they are in the work tree; untracked files are left out
# and named, since a fresh clone would not have them) are copied to
# /src/kvmxdp in it.  The run happens in private mount and PID namespaces:
# proc, sysfs, a bpffs on /sys/fs/bpf, /dev (with a /dev/shm of its own) and
# tmpfs on /run and /tmp are mounted for it, and everything it started ends
# with it.  The tree shares the machine's kernel and network namespace (apt
# reaches the archive the way this machine does), nothing else of the
# machine.  The scratch directory is removed on every exit path; one left by
# a killed run is removed by the next.
#
# Which archive: the Debian (origin "Debian") bookworm entries apt on this
# machine uses (apt-cache policy), so the check works behind a local mirror;
# third-party repositories stay out.  Which apt settings: only a proxy and
# the release-file date checks (a snapshot mirror needs them off), nothing
# else of this machine's apt configuration.  $KVX_FRESH_MIRROR (a URL)
# overrides the archive.
#
# Needs root and mmdebstrap (both from scripts/install-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
mode=unit
case ${1:-} in
"") ;;
--full) mode=full ;;
--shell) mode=shell ;;
-h | --help)
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "check-fresh.sh: error: unknown option '$1' (--full, --shell)" >&2
	exit 2
	;;
esac

if [[ $(id -u) -ne 0 ]]; then
	echo "check-fresh.sh: error: must run as root (mmdebstrap, chroot, mounts)" >&2
	exit 1
fi
command -v mmdebstrap >/dev/null || {
	echo "check-fresh.sh: error: mmdebstrap not installed (scripts/install-deps.sh installs it)" >&2
	exit 1
}

cache=${KVX_FRESH_CACHE:-/var/cache/kvmxdp-fresh}
scratch_base=${KVX_FRESH_SCRATCH:-/var/tmp}
arch=$(dpkg --print-architecture)
tarball=$cache/bookworm-minbase-$arch.tar
t0=$SECONDS
say() { printf 'check-fresh: [%4ds] %s\n' $((SECONDS - t0)) "$*"; }

# One run at a time: the cache and the scratch trees are shared.
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9

# A scratch tree left by a run that was killed (no run holds the lock now).
for old in "$scratch_base"/kvmxdp-fresh.*; do
	[[ -d $old ]] || continue
	umount -R -l "$old/root" 2>/dev/null || true
	rm -rf --one-file-system "$old"
done

# The archive: one-line entries for Debian's own bookworm suites as apt here
# reaches them.
sources=()
if [[ -n ${KVX_FRESH_MIRROR:-} ]]; then
	sources=("deb $KVX_FRESH_MIRROR bookworm main" "deb $KVX_FRESH_MIRROR bookworm-updates main")
else
	mapfile -t sources < <(apt-cache policy | awk '
		$2 ~ /:\/\// && $3 ~ /\// && $NF == "Packages" { url = $2; split($3, sc, "/"); next }
		url != "" && /release / && /o=Debian,/ && sc[1] ~ /^bookworm(-updates|-security)?$/ {
			print "deb " url " " sc[1] " " sc[2]
		}
		{ url = "" }' | sort -u)
fi
if ((${#sources[@]} == 0)); then
	sources=("deb http://deb.debian.org/debian bookworm main"
		"deb http://deb.debian.org/debian bookworm-updates main"
		"deb http://deb.debian.org/debian-security bookworm-security main")
fi
# The apt settings the tree needs to reach that archive, and no others.
aptopts=()
while IFS= read -r line; do
	aptopts+=("--aptopt=$line")
done < <(apt-config dump | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) ' || true)

inputs=$(printf '%s\n' "$arch" "${sources[@]}" "${aptopts[@]}")
if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime +6) ]] ||
	[[ $(cat "$tarball.inputs" 2>/dev/null) != "$inputs" ]]; then
	say "making a pristine Debian 12 tree with mmdebstrap (${sources[*]})"
	tmp=$(mktemp "$cache/tree.XXXXXX")
	mmdebstrap --quiet --mode=root --variant=minbase --format=tar "${aptopts[@]}" \
		bookworm "$tmp" "${sources[@]}"
	mv "$tmp" "$tarball"
	printf '%s\n' "$inputs" >"$tarball.inputs"
	sha256sum "$tarball" | cut -d' ' -f1 >"$tarball.sha256"
fi
# The tarball is the one mmdebstrap wrote (a tree that something was
# installed into, repacked, fails here).
if [[ $(sha256sum "$tarball" | cut -d' ' -f1) != "$(cat "$tarball.sha256" 2>/dev/null)" ]]; then
	echo "check-fresh.sh: error: $tarball is not the tree mmdebstrap made (sha256); remove it" >&2
	exit 1
fi

scratch=$(mktemp -d "$scratch_base/kvmxdp-fresh.XXXXXX")
root=$scratch/root
child=
cleanup() {
	local rc=$?
	# unshare ignores SIGINT/SIGTERM while it waits for its child; SIGKILL
	# ends it, --kill-child then ends the namespace's first process, and
	# with it every process of the PID namespace.
	if [[ -n $child ]]; then
		kill -KILL "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	# The mounts live in the private namespace and went with it; a lazy
	# unmount covers a namespace that could not be entered at all.
	umount -R -l "$root" 2>/dev/null || true
	rm -rf --one-file-system "$scratch"
	exit "$rc"
}
trap cleanup EXIT INT TERM
mkdir -p "$root"
tar -C "$root" -xf "$tarball"

say "unpacked the pristine tree ($(du -sh "$tarball" | cut -f1), $(chroot "$root" dpkg-query -W | wc -l) packages)"

untracked=$(git -C "$repo" ls-files --others --exclude-standard)
if [[ -n $untracked ]]; then
	say "left out (untracked, a fresh clone would not have them): $(echo $untracked)"
fi
mkdir -p "$root/src/kvmxdp"
(cd "$repo" && git ls-files -z --cached | tar --null --no-recursion -T - -cf -) |
	tar -C "$root/src/kvmxdp" -xf -
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# mmdebstrap writes no /etc/hosts; Debian's installer writes this one (the
# hostname on 127.0.1.1), and sudo and getfqdn() expect it.
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' \
	"$(hostname)" >"$root/etc/hosts"

# What runs in the tree, typed as a fresh machine's users would: the
# README's test command (by default only its unit tests: -L unit) and its
# demo command, in a root shell; the user cases around them.
case $mode in
# One command a line: under set -e a failure inside `a && b` does not stop
# the script (only the last command of such a list counts), which let a
# failing test suite pass here.
unit) readme_cmds=$'scripts/test.sh -L unit\nscripts/run.sh' ;;
full) readme_cmds=$'scripts/test.sh\nscripts/run.sh' ;;
shell) readme_cmds='' ;;
esac
cat >"$root/run-fresh-check.sh" <<RUN
set -euo pipefail
trap 'echo "check-fresh: failed (exit \$?) at: \$BASH_COMMAND" >&2' ERR
cd /src/kvmxdp
# A user without sudo (a fresh Debian 12 has none): one clear line, exit 1.
useradd -m kvx-nosudo
rc=0
out=\$(su kvx-nosudo -c 'scripts/test.sh' 2>&1) || rc=\$?
if [[ \$rc -ne 1 || \$out != "test.sh: error: must run as root (a root shell, or a user with sudo)" ]]; then
	echo "check-fresh: a user without sudo got rc \$rc: \$out" >&2
	exit 1
fi
echo "check-fresh: a user without sudo gets: \$out"
# The README's commands in a root shell ...
$readme_cmds
# ... and for a user with sudo (the scripts re-run themselves through it).
apt-get install -y -qq --no-install-recommends sudo >/dev/null
useradd -m kvx-sudo
echo 'kvx-sudo ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/kvx-sudo
su kvx-sudo -c 'scripts/test.sh -R cli_version'
RUN
inner='bash /run-fresh-check.sh'
[[ $mode == shell ]] && inner='exec bash -i'

say "running in the fresh tree: ${readme_cmds:+${readme_cmds//$'\n'/; }}"
run_tree() { # [exec]
"$@" unshare --mount --pid --fork --kill-child --propagation private -- bash -euc '
	root=$1 inner=$2
	# The tree'"'"'s root must be a mount point of its own: `ip netns` makes
	# "/" a slave mount (mount --make-rslave /), which fails on a plain
	# directory.  Executables, setuid (sudo) and devices must work even
	# where the scratch directory'"'"'s file system is mounted without them.
	mount --bind "$root" "$root"
	mount -o remount,bind,exec,suid,dev "$root"
	mount -t proc proc "$root/proc"
	mount -t sysfs sysfs "$root/sys"
	mount -t bpf bpf "$root/sys/fs/bpf"
	mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup" 2>/dev/null || true
	mount --rbind /dev "$root/dev"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
	mount -t tmpfs -o mode=0755 tmpfs "$root/run"
	mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
	exec chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 CI="${CI:-}" /bin/bash -c "cd /src/kvmxdp && $inner"
' check-fresh "$root" "$inner"
}
if [[ $mode == shell ]]; then
	run_tree # the terminal's
else
	# In the background and waited for, so that a signal runs cleanup at once.
	run_tree exec & # the job is unshare itself, which cleanup can kill
	child=$!
	wait "$child"
	child=
fi
say "passed: in a fresh Debian 12 tree: ${readme_cmds//$'\n'/; } (a root shell), a user with sudo and one without"
