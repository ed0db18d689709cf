#!/usr/bin/env bash
# Installs everything kvmxdp needs to build, test and benchmark, from Debian 12
# packages only (no downloads of anything else).  Idempotent; run as root.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps.sh: must run as root (apt-get)" >&2
	exit 1
fi

pkgs=(
	# build
	build-essential cmake pkg-config clang-14 llvm-14 bpftool
	libbpf-dev libxdp-dev libnl-3-dev libnl-route-3-dev
	libcli11-dev nlohmann-json3-dev libgtest-dev googletest
	linux-libc-dev clang-format-14
	# integration tests and demo: real clients and servers in netns
	iproute2 ethtool iputils-ping iputils-tracepath curl iperf3 socat python3 procps util-linux
	kmod
	# vm-tests/qemu_guest.sh: a real guest under QEMU (TCG), image from Debian packages
	qemu-system-x86 busybox-static cpio xz-utils
	# vm-tests/wifi61.sh: a WPA2 access point and station on mac80211_hwsim in the 6.1 VM
	hostapd wpasupplicant iw
	# benchmark baselines
	iptables nftables python3-matplotlib
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-deps.sh: ${#pkgs[@]} packages present"
