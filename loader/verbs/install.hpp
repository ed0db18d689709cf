// SPDX-License-Identifier: GPL-2.0
// `kvmxdp install` (and `cmake --install`, which runs it): the systemd unit
// kvmxdp@.service and the libvirt network hook.
#pragma once

#include <string>
#include <vector>

namespace kvmxdp {

struct InstallOptions {
	std::string root;     // prepended to every path (packaging, tests)
	std::string prefix;   // the unit runs PREFIX/sbin/kvmxdp; empty: this binary
	std::string unit_dir; // default /etc/systemd/system
	std::string hook_dir; // default /etc/libvirt/hooks/network.d
	std::string qemu_hook_dir; // default /etc/libvirt/hooks/qemu.d
	// Non-default global options the daemon must run with ("" = default):
	// an instance's pins and pid file are found by these paths.
	std::string bpffs;
	std::string run_dir;
};

std::string unit_text(const std::string &exe, const std::string &config,
		      const std::string &bpffs = "", const std::string &run_dir = "");
// The network hook: the service of the network's bridge, and the mappings
// in its metadata through `EXE ... libvirt-hook network`.
std::string hook_text(const std::string &config, const std::string &exe = "kvmxdp",
		      const std::string &bpffs = "", const std::string &run_dir = "");
// The qemu hook: `EXE ... libvirt-hook qemu` with libvirt's arguments.
std::string qemu_hook_text(const std::string &exe, const std::string &config,
			   const std::string &bpffs = "", const std::string &run_dir = "");
// Writes the unit and both hooks; returns their paths.
std::vector<std::string> install_files(const InstallOptions &o, const std::string &config);

} // namespace kvmxdp
