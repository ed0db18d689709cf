#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-tests/qemu/build-guest.sh: builds (or finds in its cache) the boot files
# of the tiny QEMU guest used by vm-tests/qemu_guest.sh, from Debian packages
# only:
#   - Debian's stock kernel, resolved from linux-image-amd64 (apt-get download,
#     dpkg -x, depmod -b); the ELF vmlinux is unpacked from the bzImage's xz
#     payload so QEMU boots it through the PVH entry (no firmware, no in-guest
#     decompression); if that fails the bzImage itself is used (slower).
#   - an initramfs (newc cpio, gzip): busybox-static, the virtio-net modules in
#     load order (checked against modules.dep) and vm-tests/qemu/init.sh as /init.
#
# Usage: build-guest.sh [CACHE_DIR]
#   CACHE_DIR default: $KVX_VM_CACHE, else ${XDG_CACHE_HOME:-/var/cache}/kvmxdp-vm-tests.
# Prints on stdout (and nothing else):
#   KVX_GUEST_KERNEL=<vmlinux or bzImage>  KVX_GUEST_BOOT=pvh|bzimage
#   KVX_GUEST_INITRD=<initramfs.cpio.gz>   KVX_GUEST_KVER=<uname -r of the guest>
# Progress and errors on stderr; exit 1 with a clear message on failure.
#
# Cache layout (never committed; safe to delete at any time):
#   kernel/<package>_<version>/{vmlinux,vmlinuz,modules/*.ko,modules.order}
#   initramfs-<hash>.cpio.gz   (hash of init.sh, busybox and the kernel dir name)
# A flock on <cache>/lock serializes concurrent builds.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-${KVX_VM_CACHE:-${XDG_CACHE_HOME:-/var/cache}/kvmxdp-vm-tests}}
say() { printf '[build-guest] %s\n' "$*" >&2; }
die() { printf '[build-guest] ERROR: %s\n' "$*" >&2; exit 1; }
# Debian's amd64 kernel and x86_64 libraries (the tests skip elsewhere).
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
[[ $arch == amd64 ]] || die "amd64 only: this machine is $arch"

# The modules virtio-net needs, in load order (each one's dependencies first;
# verified against modules.dep below).
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
	failover net_failover virtio_net)

# Debian packages this script needs (command -> package).
need=(apt-get:apt apt-cache:apt dpkg:dpkg dpkg-deb:dpkg depmod:kmod cpio:cpio xz:xz-utils
	gzip:gzip flock:util-linux od:coreutils sha256sum:coreutils readelf:binutils)
missing=()
for cp in "${need[@]}"; do
	command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp#*:}")
done
# /bin/busybox must be the static one (busybox-static), not a dynamic busybox
if [[ ! -x /bin/busybox ]] || [[ $(readelf -d /bin/busybox 2>/dev/null | grep -c NEEDED || true) != 0 ]]; then
	missing+=(busybox-static)
fi
((${#missing[@]} == 0)) ||
	die "missing Debian packages: $(printf '%s\n' "${missing[@]}" | sort -u | paste -sd' ') (scripts/install-deps.sh installs them)"

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 300 9 || die "cannot lock $cache/lock within 300 s"

stage=""
cleanup() { if [[ -n "$stage" && -d "$stage" ]]; then rm -rf --one-file-system "$stage"; fi; }
trap cleanup EXIT

# ------------------------------------------------------------------ kernel
# Which kernel package linux-image-amd64 points at, and its version: one
# `apt-cache show` (~2 s without apt's pkgcache), remembered in
# <cache>/resolved until apt's package lists change.
resolved=$cache/resolved
kpkg="" kver=""
if [[ -s "$resolved" ]] && [[ -z $(find /var/lib/apt/lists -maxdepth 1 -newer "$resolved" -name '*Packages*' -print -quit 2>/dev/null) ]]; then
	read -r kpkg kver <"$resolved" || true
else
	# "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
	read -r kpkg kver < <(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) { v = $(i + 2); sub(/[),]+$/, "", v); print $i, v; exit } }') || true
	[[ -n "$kpkg" && -n "$kver" ]] && echo "$kpkg $kver" >"$resolved"
fi
if [[ -z "$kpkg" || -z "$kver" ]]; then
	# No package lists (apt-get update never ran): use the newest kernel cached.
	kdir=$(find "$cache/kernel" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' 2>/dev/null |
		sort -V | tail -n1 || true)
	[[ -n "$kdir" ]] ||
		die "apt cannot resolve linux-image-amd64 and nothing is cached in $cache: run 'apt-get update' first"
	say "apt cannot resolve linux-image-amd64; using the cached $(basename "$kdir")"
else
	kdir=$cache/kernel/${kpkg}_${kver//[:~]/_}
fi

if [[ ! -f "$kdir/done" ]]; then
	say "fetching $kpkg $kver (first run only; cached in $kdir)"
	mkdir -p "$cache/kernel"
	stage=$(mktemp -d "$cache/kernel/stage.XXXXXX")
	# apt's download sandbox user must be able to write there (else a warning)
	id _apt >/dev/null 2>&1 && chown _apt "$stage" 2>/dev/null || true
	(cd "$stage" && apt-get download -q -o Acquire::http::Timeout=30 -o Acquire::Retries=2 \
		"$kpkg=$kver" >&2) || die "apt-get download $kpkg=$kver failed (Debian archive reachable? apt-get update?)"
	deb=$(find "$stage" -maxdepth 1 -name '*.deb' -print -quit)
	[[ -n "$deb" ]] || die "apt-get download left no .deb in $stage"
	dpkg -x "$deb" "$stage/root" || die "dpkg -x $deb failed"
	rm -f "$deb"
	uname_r=$(find "$stage/root/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' -quit)
	[[ -n "$uname_r" ]] || die "$kpkg has no lib/modules/<version>"
	# The .deb ships no modules.dep: build it.
	depmod -b "$stage/root" "$uname_r" || die "depmod -b failed"
	mdir=$stage/root/lib/modules/$uname_r
	out=$stage/out
	mkdir -p "$out/modules"
	# Check the load order against modules.dep: every dependency of a module
	# must come earlier in MODULES.
	declare -A path_of=() loaded=()
	while IFS= read -r line; do
		m=${line%%:*} m=${m##*/} m=${m%.ko*}
		path_of[$m]=${line%%:*}
	done <"$mdir/modules.dep"
	for m in "${MODULES[@]}"; do
		[[ -n "${path_of[$m]:-}" ]] || die "module $m not in $kpkg's modules.dep"
		deps=$(awk -F: -v p="${path_of[$m]}" '$1 == p { print $2 }' "$mdir/modules.dep")
		for d in $deps; do
			d=${d##*/} d=${d%.ko*}
			[[ -n "${loaded[$d]:-}" ]] || die "module $m needs $d, which is not loaded before it"
		done
		loaded[$m]=1
		case ${path_of[$m]} in
		*.ko) cp "$mdir/${path_of[$m]}" "$out/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$mdir/${path_of[$m]}" >"$out/modules/$m.ko" ;;
		*) die "module $m: unsupported file ${path_of[$m]}" ;;
		esac
	done
	printf '%s\n' "${MODULES[@]}" >"$out/modules.order"
	echo "$uname_r" >"$out/uname_r"
	cp "$stage/root/boot/vmlinuz-$uname_r" "$out/vmlinuz"
	# vmlinux: the bzImage's payload (setup header: setup_sects at 0x1f1,
	# payload_offset at 0x248 and payload_length at 0x24c, relative to the
	# protected-mode code at (setup_sects + 1) * 512).
	bz=$out/vmlinuz
	u8() { od -An -tu1 -j"$2" -N1 "$1" | tr -d ' \n'; }
	u32() { od -An -tu4 -j"$2" -N4 "$1" | tr -d ' \n'; }
	ss=$(u8 "$bz" $((0x1f1))) po=$(u32 "$bz" $((0x248))) pl=$(u32 "$bz" $((0x24c)))
	((ss == 0)) && ss=4
	off=$(((ss + 1) * 512 + po))
	dd if="$bz" of="$stage/payload" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$pl" status=none
	magic=$(od -An -tx1 -N6 "$stage/payload" | tr -d ' \n')
	# PVH needs the XEN_ELFNOTE_PHYS32_ENTRY note (type 0x12)
	if [[ $magic == fd377a585a00 ]] &&
		xz -dc --single-stream "$stage/payload" >"$out/vmlinux" 2>/dev/null &&
		readelf -n "$out/vmlinux" 2>/dev/null | grep -c 'Unknown note type: (0x00000012)' >/dev/null; then
		say "vmlinux unpacked ($(($(stat -c %s "$out/vmlinux") / 1048576)) MB, PVH entry note present)"
	else
		rm -f "$out/vmlinux"
		say "could not unpack a PVH-bootable vmlinux (payload magic $magic): the bzImage will be booted"
	fi
	rm -rf --one-file-system "$kdir"
	mv "$out" "$kdir"
	touch "$kdir/done"
	rm -rf --one-file-system "$stage"
	stage=""
fi
uname_r=$(cat "$kdir/uname_r")
# Older kernels of ours are left in place (a few MB each); drop stale stages.
find "$cache/kernel" -mindepth 1 -maxdepth 1 -name 'stage.*' -mmin +30 -exec rm -rf --one-file-system {} + 2>/dev/null || true

# ------------------------------------------------------------------ initramfs
hash=$( {
	sha256sum "$here/init.sh" /bin/busybox | cut -d' ' -f1
	basename "$kdir"
} | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$hash.cpio.gz
if [[ ! -s "$initrd" ]]; then
	say "building $initrd"
	stage=$(mktemp -d "$cache/initramfs.XXXXXX")
	r=$stage/root
	mkdir -p "$r"/{bin,dev,proc,sys,tmp,lib/modules}
	cp /bin/busybox "$r/bin/busybox"
	ln -s busybox "$r/bin/sh"
	cp "$kdir"/modules/*.ko "$kdir/modules.order" "$r/lib/modules/"
	install -m 0755 "$here/init.sh" "$r/init"
	(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) |
		gzip -1 >"$stage/initramfs.cpio.gz"
	mv "$stage/initramfs.cpio.gz" "$initrd"
	rm -rf --one-file-system "$stage"
	stage=""
	# keep only the newest few initramfs images
	find "$cache" -maxdepth 1 -name 'initramfs-*.cpio.gz' -printf '%T@ %p\n' | sort -rn |
		tail -n +5 | cut -d' ' -f2- | xargs -r rm -f
fi

if [[ -s "$kdir/vmlinux" ]]; then
	echo "KVX_GUEST_KERNEL=$kdir/vmlinux"
	echo "KVX_GUEST_BOOT=pvh"
else
	echo "KVX_GUEST_KERNEL=$kdir/vmlinuz"
	echo "KVX_GUEST_BOOT=bzimage"
fi
echo "KVX_GUEST_INITRD=$initrd"
echo "KVX_GUEST_KVER=$uname_r"
