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
# How: the untouched tree (variant minbase: essential packages and apt) is
# cached as a tarball in $KVX_FRESH_CACHE (default /var/cache/kvmxdp-fresh)
# and re-made when it is a week old; every run unpacks it anew into a
# scratch directory, so no tree that something was installed into is ever
# used twice.  The checkout (tracked and untracked files, not .git and not
# what .gitignore ignores, e.g. build trees) is copied to /src/kvmxdp in it.
# The run happens in a private mount namespace: proc, sysfs, a bpffs on
# /sys/fs/bpf, /dev, and tmpfs on /run and /tmp are mounted for it and vanish
# with it; the tree shares the machine's kernel and network namespace (apt
# reaches the archive the way this machine does), nothing else of the
# machine.  The scratch directory is removed on every exit path.
#
# Needs root and mmdebstrap (both from scripts/install-deps.sh).  Apt sources
# and apt settings are the machine's own (its Debian entries), so the check
# works behind whatever mirror or proxy the machine uses.
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
arch=$(dpkg --print-architecture)
tarball=$cache/bookworm-minbase-$arch.tar
t0=$SECONDS
say() { printf 'check-fresh: [%4ds] %s\n' $((SECONDS - t0)) "$*"; }

# The machine's Debian sources (deb822 or one-line files that name
# bookworm); anything else it has (third-party repositories) stays out.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[[ -s $f ]] && grep -q '^[^#]*bookworm' "$f" && sources+=("$f")
done
((${#sources[@]})) || sources=(http://deb.debian.org/debian)
# The machine's apt settings (proxy, validity checks of a snapshot mirror).
aptopts=()
for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
	[[ -f $f ]] && aptopts+=("--aptopt=$f")
done

mkdir -p "$cache"
if [[ ! -s $tarball ]] || [[ -n $(find "$tarball" -mtime +7) ]]; then
	say "making a pristine Debian 12 tree with mmdebstrap (${sources[*]})"
	mmdebstrap --quiet --mode=root --variant=minbase --format=tar "${aptopts[@]}" \
		bookworm "$tarball.tmp" "${sources[@]}"
	mv "$tarball.tmp" "$tarball"
fi

scratch=$(mktemp -d /var/tmp/kvmxdp-fresh.XXXXXX)
root=$scratch/root
cleanup() {
	local rc=$?
	# The mounts live in the private namespace and went with it; a lazy
	# unmount covers a namespace that could not be entered at all.
	umount -R -l "$root" 2>/dev/null || true
	rm -rf --one-file-system "$scratch"
	exit "$rc"
}
trap cleanup EXIT INT TERM
mkdir -p "$root"
tar -C "$root" -xf "$tarball"
say "unpacked the cached pristine tree ($(du -sh "$tarball" | cut -f1))"

mkdir -p "$root/src/kvmxdp"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
	(cd "$repo" && xargs -0 tar --no-recursion -cf - --ignore-failed-read 2>/dev/null) |
	tar -C "$root/src/kvmxdp" -xf -
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

# What runs in the tree, typed as a fresh machine's users would: the
# README's test command (by default only its unit tests: -L unit) and its
# demo command, in a root shell; the user cases around them.
case $mode in
unit) readme_cmds='bash scripts/test.sh -L unit && bash scripts/run.sh' ;;
full) readme_cmds='bash scripts/test.sh && bash scripts/run.sh' ;;
shell) readme_cmds='' ;;
esac
cat >"$root/run-fresh-check.sh" <<RUN
set -euo pipefail
cd /src/kvmxdp
# A user without sudo (a fresh Debian 12 has none): one clear line, exit 1.
useradd -m kvx-nosudo
set +e
out=\$(su kvx-nosudo -c 'bash scripts/test.sh' 2>&1)
rc=\$?
set -e
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
su kvx-sudo -c 'bash scripts/test.sh -R cli_version'
RUN
inner='bash /run-fresh-check.sh'
[[ $mode == shell ]] && inner='exec bash -i'

say "running in the fresh tree: $readme_cmds"
# A hostname of its own is not needed; a mount namespace is: the kernel
# file systems mounted here are invisible to the machine and go with it.
unshare --mount --propagation private -- bash -euc '
	root=$1 inner=$2
	# The tree'"'"'s root must be a mount point of its own: `ip netns` makes
	# "/" a slave mount (mount --make-rslave /), which fails on a plain
	# directory.
	mount --bind "$root" "$root"
	mount -t proc proc "$root/proc"
	mount -t sysfs sysfs "$root/sys"
	mount -t bpf bpf "$root/sys/fs/bpf"
	mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup" 2>/dev/null || true
	mount --rbind /dev "$root/dev"
	mount -t tmpfs -o mode=0755 tmpfs "$root/run"
	mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
	exec chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 CI="${CI:-}" /bin/bash -c "cd /src/kvmxdp && $inner"
' check-fresh "$root" "$inner"
say "passed: in a fresh Debian 12 tree: $readme_cmds (a root shell), a user with sudo and one without"
