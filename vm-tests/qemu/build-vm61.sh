#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/qemu/build-vm61.sh: the boot files of the 6.1 "test VM" used by
# vm-tests/kernel61.sh and vm-tests/wifi61.sh: Debian 12's stock kernel (from
# build-guest.sh's cache, which it fills on first use) and an initramfs that
# carries the BUILT kvmxdp binary and BPF test binary (stripped), their shared
# libraries, iproute2, hostapd/wpa_supplicant/iw, busybox-static, the kernel
# modules the tests need (dependencies resolved through modules.dep, written
# in load order) and vm-tests/qemu/vm61-init.sh as /init with the in-VM test
# scripts vm-tests/qemu/vm61-*.sh under /kvx.
#
# Usage: build-vm61.sh KVMXDP_BINARY BPF_TEST_BINARY OUT_INITRD
# Env: KVX_VM_CACHE (cache dir, as for build-guest.sh).
# Prints on stdout (and nothing else):
#   KVX_GUEST_KERNEL=... KVX_GUEST_BOOT=pvh|bzimage KVX_GUEST_KVER=...
#   KVX_GUEST_INITRD=OUT_INITRD
#
# The modules (those of the lists below and their dependencies) are kept in
# <cache>/modtree/<uname -r>-<hash of the lists>/ (build-guest.sh keeps only
# virtio's); the initramfs itself is rebuilt every run (it carries this build's
# binaries; ~3 s) and never cached.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${KVX_VM_CACHE:-${XDG_CACHE_HOME:-/var/cache}/kvmxdp-vm-tests}
say() { printf '[build-vm61] %s\n' "$*" >&2; }
die() { printf '[build-vm61] ERROR: %s\n' "$*" >&2; exit 1; }
# Debian's amd64 kernel and x86_64 libraries (the tests skip elsewhere).
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
[[ $arch == amd64 ]] || die "amd64 only: this machine is $arch"

(($# == 3)) || die "usage: build-vm61.sh KVMXDP_BINARY BPF_TEST_BINARY OUT_INITRD"
kvmxdp=$1 bpftest=$2 out=$3
[[ -x $kvmxdp ]] || die "kvmxdp binary '$kvmxdp' not found (build it first)"
[[ -x $bpftest ]] || die "BPF test binary '$bpftest' not found (build target kvmxdp_bpf_test)"

# Modules the tests need (their dependencies are added from modules.dep).
# mac80211_hwsim is carried but loaded by the wifi script (radios=2); ctr and
# ccm must be loaded before hostapd installs CCMP keys: the kernel cannot load
# crypto modules on demand here (docs/pitfalls.md, wifi-in-a-vm).
MODULES=(veth bridge sch_ingress cls_bpf rfkill cfg80211 libarc4 mac80211 ctr ccm cmac)
LATE_MODULES=(mac80211_hwsim)
# Userland beyond busybox (absolute paths on the build host).
TOOLS=(/usr/sbin/ip /usr/sbin/tc /usr/sbin/bridge /usr/bin/ss
	/usr/sbin/hostapd /usr/sbin/hostapd_cli /usr/sbin/wpa_supplicant /usr/sbin/wpa_cli /usr/sbin/iw
	/usr/sbin/radvd)

need=(ldd:libc-bin strip:binutils cpio:cpio gzip:gzip depmod:kmod dpkg:dpkg apt-get:apt)
missing=()
for cp in "${need[@]}"; do
	command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp#*:}")
done
for t in "${TOOLS[@]}"; do
	[[ -x $t ]] && continue
	case $t in
	*/ip | */tc | */bridge | */ss) missing+=(iproute2) ;;
	*/hostapd*) missing+=(hostapd) ;;
	*/wpa_*) missing+=(wpasupplicant) ;;
	*/iw) missing+=(iw) ;;
	*/radvd) missing+=(radvd) ;;
	esac
done
((${#missing[@]} == 0)) ||
	die "missing Debian packages: $(printf '%s\n' "${missing[@]}" | sort -u | paste -sd' ') (scripts/install-deps.sh installs them)"

# The kernel (and busybox checks) from the shared guest builder.
genv=$(bash "$here/build-guest.sh") || die "build-guest.sh failed"
eval "$genv"
kdir=$(dirname "$KVX_GUEST_KERNEL")
kver=$KVX_GUEST_KVER

stage=""
cleanup() { if [[ -n "$stage" && -d "$stage" ]]; then rm -rf --one-file-system "$stage"; fi; }
trap cleanup EXIT

# ------------------------------------------------------------------ modules
# Load order: every module after its dependencies (depth-first over
# modules.dep).  resolve_modules DIR fills order[] and path_of[].
declare -A path_of=() deps_of=() seen=()
order=()
visit() {
	local m=$1 d
	[[ -n ${seen[$m]:-} ]] && return 0
	seen[$m]=1
	[[ -n ${path_of[$m]:-} ]] || die "module $m not in modules.dep of $kver (built in? then drop it from the list)"
	for d in ${deps_of[$m]}; do
		d=${d##*/} d=${d%%.ko*}
		visit "$d"
	done
	order+=("$m")
}
resolve_modules() { # DIR (holding modules.dep)
	local line p m
	path_of=() deps_of=() seen=() order=()
	while IFS= read -r line; do
		p=${line%%:*} m=${p##*/} m=${m%%.ko*}
		path_of[$m]=$p
		deps_of[$m]=${line#*:}
	done <"$1/modules.dep"
	for m in "${MODULES[@]}" "${LATE_MODULES[@]}"; do visit "$m"; done
}

# The cache keeps only the modules of the lists above and their
# dependencies (a few MB, not the package's ~400 MB), keyed by the lists.
mhash=$(printf '%s\n' "${MODULES[@]}" "${LATE_MODULES[@]}" | sha256sum | cut -c1-12)
mtree=$cache/modtree/$kver-$mhash
if [[ ! -f $mtree/done ]]; then
	exec 9>"$cache/lock"
	flock -w 300 9 || die "cannot lock $cache/lock within 300 s"
fi
if [[ ! -f $mtree/done ]]; then
	# The package behind this kernel: build-guest.sh names its directory
	# <package>_<version> and records "<package> <version>" in resolved.
	kpkg=$(basename "$kdir") kpkg=${kpkg%%_*}
	kv=""
	[[ -s $cache/resolved ]] && read -r rp rv <"$cache/resolved" && [[ $rp == "$kpkg" ]] && kv=$rv
	say "fetching the modules of $kpkg${kv:+ $kv} (first run only; cached in $mtree)"
	mkdir -p "$cache/modtree"
	stage=$(mktemp -d "$cache/modtree/stage.XXXXXX")
	id _apt >/dev/null 2>&1 && chown _apt "$stage" 2>/dev/null || true
	(cd "$stage" && apt-get download -q -o Acquire::http::Timeout=30 -o Acquire::Retries=2 \
		"$kpkg${kv:+=$kv}" >&2) || die "apt-get download $kpkg failed (apt-get update?)"
	deb=$(find "$stage" -maxdepth 1 -name '*.deb' -print -quit)
	[[ -n $deb ]] || die "apt-get download left no .deb"
	dpkg -x "$deb" "$stage/root"
	rm -f "$deb"
	sdir=$stage/root/lib/modules/$kver
	[[ -d $sdir ]] || die "$kpkg has no lib/modules/$kver"
	depmod -b "$stage/root" "$kver" || die "depmod -b failed"
	resolve_modules "$sdir"
	mkdir -p "$stage/out"
	cp "$sdir/modules.dep" "$stage/out/"
	for m in "${order[@]}"; do
		mkdir -p "$stage/out/$(dirname "${path_of[$m]}")"
		cp "$sdir/${path_of[$m]}" "$stage/out/${path_of[$m]}"
	done
	rm -rf --one-file-system "$mtree"
	mv "$stage/out" "$mtree"
	touch "$mtree/done"
	rm -rf --one-file-system "$stage"
	stage=""
fi
# drop trees of other module lists / kernels and stale stages
find "$cache/modtree" -mindepth 1 -maxdepth 1 \( -name 'stage.*' -mmin +30 -o -name '*-*' ! -name "$kver-$mhash" \) \
	-exec rm -rf --one-file-system {} + 2>/dev/null || true
resolve_modules "$mtree"

# ------------------------------------------------------------------ initramfs
stage=$(mktemp -d "${TMPDIR:-/tmp}/kvx-vm61-initrd-XXXXXX")
r=$stage/root
mkdir -p "$r"/{bin,sbin,dev,proc,sys,tmp,run,etc,kvx,lib/modules,lib64,lib/x86_64-linux-gnu,usr/bin,usr/sbin,var/run}
cp /bin/busybox "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
late=" ${LATE_MODULES[*]} "
: >"$r/lib/modules/modules.order"
for m in "${order[@]}"; do
	case ${path_of[$m]} in
	*.ko) cp "$mtree/${path_of[$m]}" "$r/lib/modules/$m.ko" ;;
	*.ko.xz) xz -dc "$mtree/${path_of[$m]}" >"$r/lib/modules/$m.ko" ;;
	*) die "module $m: unsupported file ${path_of[$m]}" ;;
	esac
	[[ $late == *" $m "* ]] || echo "$m" >>"$r/lib/modules/modules.order"
done

# Binaries (stripped copies of ours) and every library ldd lists, at the
# same absolute paths, plus the dynamic loader.
bins=("${TOOLS[@]}")
strip -o "$r/usr/bin/kvmxdp" "$kvmxdp"
strip -o "$r/usr/bin/kvmxdp_bpf_test" "$bpftest"
for t in "${TOOLS[@]}"; do cp -L "$t" "$r$t"; done
declare -A libs=()
for b in "${bins[@]}" "$kvmxdp" "$bpftest"; do
	while read -r lib; do libs[$lib]=1; done < <(ldd "$b" | awk '
		$2 == "=>" && $3 ~ /^\// { print $3 }
		$1 ~ /^\// { print $1 }')
	ldd "$b" | grep -q 'not found' && die "ldd $b: a library is not found"
done
for lib in "${!libs[@]}"; do
	mkdir -p "$r$(dirname "$lib")"
	cp -L "$lib" "$r$lib"
done
[[ -e $r/lib64/ld-linux-x86-64.so.2 ]] || die "the dynamic loader is missing (ldd output changed?)"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
install -m 0755 "$here/vm61-init.sh" "$r/init"
for s in "$here"/vm61-*.sh; do
	[[ $(basename "$s") == vm61-init.sh ]] && continue
	install -m 0755 "$s" "$r/kvx/$(basename "$s")"
done
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) |
	gzip -1 >"$out"
say "initramfs $out: $(($(stat -c %s "$out") / 1048576)) MB, modules: ${order[*]}"

echo "KVX_GUEST_KERNEL=$KVX_GUEST_KERNEL"
echo "KVX_GUEST_BOOT=$KVX_GUEST_BOOT"
echo "KVX_GUEST_KVER=$kver"
echo "KVX_GUEST_INITRD=$out"
