#!/usr/bin/env bash
# Installs everything kvmxdp needs to build, test, fuzz, demo and benchmark,
# from Debian 12 packages only (no downloads of anything else).  Nothing is
# assumed present beyond a minimal Debian 12 (essential packages and apt):
# scripts/check-fresh.sh proves that in a pristine tree.  Idempotent.  As
# root, or as a user with sudo.
set -euo pipefail
source "$(dirname "$0")/as-root.sh" "$0" "$@"

pkgs=(
	# build (BPF objects: clang + the kernel's uapi headers, never libc's)
	build-essential cmake pkg-config clang-14 llvm-14 bpftool
	libbpf-dev libxdp-dev libnl-3-dev libnl-route-3-dev
	libcli11-dev nlohmann-json3-dev libgtest-dev googletest
	# libvirt's domain and network XML (the hooks): libvirt's own parser
	libxml2-dev
	# the daemon's Prometheus endpoint (attach --metrics)
	prometheus-cpp-dev
	linux-libc-dev clang-format-14
	# tests/fuzz: libFuzzer's runtime (clang -fsanitize=fuzzer)
	libclang-rt-14-dev
	# scripts/check-fresh.sh: a pristine Debian 12 tree
	mmdebstrap
	# integration tests and demo: real clients and servers in netns
	iproute2 ethtool iputils-ping iputils-tracepath curl iperf3 socat python3 procps util-linux
	# vm-tests/metrics.sh: `kvmxdp top` driven in a terminal
	tmux
	kmod
	# vm-tests/ipv6_uplink.sh: a LAN router announcing IPv6 prefixes (SLAAC)
	radvd
	# vm-tests/qemu_guest.sh: a real guest under QEMU (TCG), image from Debian packages
	qemu-system-x86 busybox-static cpio xz-utils
	# vm-tests/wifi61.sh: a WPA2 access point and station on mac80211_hwsim in the 6.1 VM
	hostapd wpasupplicant iw
	# the systemd unit: systemd-analyze checks it (tests/systemd/check_unit.sh), and
	# systemd-escape names its instances (the libvirt hook); strace reproduces its
	# system call filter (vm-tests/unit_sandbox.sh)
	systemd strace
	# the man page (scdoc renders docs/kvmxdp.8.scd; man checks it) and the
	# bash completion's tests (bash-completion's loader); dpkg-dev: the
	# Debian package's Depends (CPack runs dpkg-shlibdeps, and `file` to find
	# the ELF files to run it on)
	scdoc man-db bash-completion dpkg-dev file
	# the zsh completion's test (a real zsh); lintian checks the Debian package
	zsh lintian
	# vm-tests/nspawn_deb.sh: the package on a Debian 12 tree booted with systemd-nspawn
	systemd-container
	# vm-tests/metrics.sh parses the exposition with the Prometheus client's own parser
	python3-prometheus-client
	# vm-tests/libvirt_hook.sh: a breakpoint shows which XML a hook parses
	gdb
	# benchmark baselines
	iptables nftables python3-matplotlib
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-deps.sh: ${#pkgs[@]} packages present"
