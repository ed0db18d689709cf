#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/package/check_deb.sh BUILD_DIR: the Debian package CPack builds
# (what `cmake --build build --target package` writes), made anew into a
# temporary directory and read with dpkg-deb:
#   - its files: the binary, the unit, the libvirt hook (executable, a
#     conffile), the man page, the bash and zsh completions; nothing under
#     /usr/local;
#   - the unit and the hook are byte for byte what the packaged binary's
#     `kvmxdp install --prefix /usr` writes (one source of their texts), and
#     the unit runs /usr/sbin/kvmxdp as Type=notify;
#   - Depends: the shared libraries' packages (dpkg-shlibdeps) and the tools
#     the unit and the scripts run (systemd), not python3 nor procps;
#   - the maintainer scripts parse, the man page renders from the package;
#   - lintian finds no error and no warning: the copyright file, the
#     changelog (whose first entry is the package's version), the
#     maintainer scripts; an override is allowed only in the package's
#     overrides file, and only with a comment that says why.
set -euo pipefail
fail() {
	echo "check_deb: FAIL: $*" >&2
	exit 1
}
[[ $# -eq 1 && -f $1/CPackConfig.cmake ]] || fail "usage: check_deb.sh BUILD_DIR (with CPackConfig.cmake)"
build=$(readlink -f "$1")
for t in cpack dpkg-deb dpkg-shlibdeps lintian; do
	command -v $t >/dev/null || fail "$t not found (cmake, dpkg-dev, lintian: scripts/install-deps.sh)"
done
tmp=$(mktemp -d)
trap 'rm -rf --one-file-system "$tmp"' EXIT

cpack --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 ||
	fail "cpack failed: $(tail -20 "$tmp/cpack.log")"
debs=("$tmp"/out/kvmxdp_*_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "no single kvmxdp_VERSION_ARCH.deb: $(ls "$tmp/out")"
deb=${debs[0]}
version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg-deb -f "$deb" Architecture)
[[ $(basename "$deb") == "kvmxdp_${version}_${arch}.deb" ]] || fail "file name $(basename "$deb")"
echo "check_deb: ok: $(basename "$deb")"

list=$(dpkg-deb -c "$deb")
mode_of() { awk -v p="./$1" '$6 == p { print $1 }' <<<"$list"; }
for f in usr/sbin/kvmxdp usr/lib/systemd/system/kvmxdp@.service etc/libvirt/hooks/network.d/kvmxdp \
	etc/libvirt/hooks/qemu.d/kvmxdp \
	usr/share/man/man8/kvmxdp.8.gz usr/share/bash-completion/completions/kvmxdp \
	usr/share/zsh/vendor-completions/_kvmxdp; do
	[[ -n $(mode_of "$f") ]] || fail "the package lacks /$f"
done
[[ $(mode_of usr/sbin/kvmxdp) == -rwxr-xr-x ]] || fail "/usr/sbin/kvmxdp is $(mode_of usr/sbin/kvmxdp)"
[[ $(mode_of etc/libvirt/hooks/network.d/kvmxdp) == -rwxr-xr-x ]] || fail "the hook is not executable"
[[ $(mode_of etc/libvirt/hooks/qemu.d/kvmxdp) == -rwxr-xr-x ]] || fail "the qemu hook is not executable"
[[ $list != *./usr/local/* ]] || fail "files under /usr/local: $(grep usr/local <<<"$list")"
echo "check_deb: ok: binary, unit, hook, man page and completions, modes"

dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/libvirt/hooks/network.d/kvmxdp "$tmp/control/conffiles" || fail "the hook is not a conffile"
grep -qx /etc/libvirt/hooks/qemu.d/kvmxdp "$tmp/control/conffiles" || fail "the qemu hook is not a conffile"
for s in postinst prerm postrm; do
	[[ -x $tmp/control/$s ]] || fail "no executable $s"
	sh -n "$tmp/control/$s" || fail "$s does not parse"
done
depends=$(dpkg-deb -f "$deb" Depends)
for d in libbpf1 libnl-3-200 libnl-route-3-200 libxml2 libc6 libstdc++6 systemd; do
	[[ ", $depends," == *", $d"[\ ,]* ]] || fail "Depends lacks $d: $depends"
done
# The hooks are kvmxdp's own: nothing needs python3.
[[ ", $depends," != *", python3"[\ ,]* ]] || fail "Depends names python3: $depends"
echo "check_deb: ok: conffiles, maintainer scripts, Depends: $depends"

dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/sbin/kvmxdp" install --root "$tmp/ref" --prefix /usr \
	--unit-dir /usr/lib/systemd/system >/dev/null
cmp "$tmp/root/usr/lib/systemd/system/kvmxdp@.service" "$tmp/ref/usr/lib/systemd/system/kvmxdp@.service" ||
	fail "the packaged unit differs from what the packaged kvmxdp install writes"
cmp "$tmp/root/etc/libvirt/hooks/network.d/kvmxdp" "$tmp/ref/etc/libvirt/hooks/network.d/kvmxdp" ||
	fail "the packaged hook differs from what the packaged kvmxdp install writes"
cmp "$tmp/root/etc/libvirt/hooks/qemu.d/kvmxdp" "$tmp/ref/etc/libvirt/hooks/qemu.d/kvmxdp" ||
	fail "the packaged qemu hook differs from what the packaged kvmxdp install writes"
unit=$tmp/root/usr/lib/systemd/system/kvmxdp@.service
grep -qx 'ExecStart=/usr/sbin/kvmxdp --config /etc/kvmxdp/kvmxdp.json attach --bridge %I' "$unit" ||
	fail "ExecStart: $(grep ExecStart= "$unit")"
grep -qx 'Type=notify' "$unit" || fail "the unit is not Type=notify"
"$tmp/root/usr/sbin/kvmxdp" --version >/dev/null || fail "the packaged binary does not run"
echo "check_deb: ok: unit and hook are kvmxdp install's, ExecStart=/usr/sbin/kvmxdp"

if command -v man >/dev/null; then
	warnings=$(MANWIDTH=80 man --warnings -l "$tmp/root/usr/share/man/man8/kvmxdp.8.gz" 2>&1 >/dev/null)
	[[ -z $warnings ]] || fail "the packaged man page: $warnings"
	MANWIDTH=80 man -l "$tmp/root/usr/share/man/man8/kvmxdp.8.gz" 2>/dev/null | grep -qx "EXIT STATUS" ||
		fail "the packaged man page does not render"
	echo "check_deb: ok: the packaged man page renders"
fi

# lintian: errors and warnings fail (--fail-on), and so does an override
# that no longer matches anything (it would hide a future finding).
changelog=$tmp/root/usr/share/doc/kvmxdp/changelog.gz
[[ -f $tmp/root/usr/share/doc/kvmxdp/copyright && -f $changelog ]] || fail "no copyright or changelog.gz"
top=$(gzip -dc "$changelog" | sed -n '1s/^kvmxdp (\([^)]*\)).*/\1/p')
[[ $top == "$version" ]] || fail "the changelog's first entry is '$top', the package is $version"
overrides=$tmp/root/usr/share/lintian/overrides/kvmxdp
if [[ -f $overrides ]]; then
	# Every override line follows a comment (its reason).
	awk '/^#/ { c = 1; next } /^[[:space:]]*$/ { c = 0; next } !c { print; exit 1 }' "$overrides" >"$tmp/bare" ||
		fail "lintian override without a comment saying why: $(cat "$tmp/bare")"
fi
lintian --fail-on error,warning --display-level '>=info' --show-overrides \
	--tag-display-limit 0 "$deb" >"$tmp/lintian.log" 2>&1 ||
	fail "lintian: $(grep -v '^N:' "$tmp/lintian.log")"
if grep -q 'unused-override' "$tmp/lintian.log"; then
	fail "lintian: $(grep unused-override "$tmp/lintian.log")"
fi
echo "check_deb: ok: lintian: no error or warning ($(grep -c '^O:' "$tmp/lintian.log" || true) overridden)"
echo "check_deb: PASSED"
