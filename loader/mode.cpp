// SPDX-License-Identifier: GPL-2.0
#include "mode.hpp"

#include <unistd.h>

#include <climits>

#include "error.hpp"

namespace kvmxdp {

HookMode parse_hook_mode(const std::string &text)
{
	if (text == "auto")
		return HookMode::Auto;
	if (text == "tc")
		return HookMode::Tc;
	if (text == "xdp")
		return HookMode::Xdp;
	throw Error("invalid --mode '" + text + "': expected auto, tc or xdp");
}

const char *hook_mode_name(HookMode m)
{
	switch (m) {
	case HookMode::Tc:
		return "tc";
	case HookMode::Xdp:
		return "xdp";
	case HookMode::Auto:
		break;
	}
	return "auto";
}

DeviceFacts device_facts(const std::string &ifname, const std::string &sysfs_root)
{
	DeviceFacts f;
	const std::string dir = sysfs_root + "/class/net/" + ifname;
	auto has = [&](const char *sub) { return ::access((dir + "/" + sub).c_str(), F_OK) == 0; };
	f.exists = has(".");
	if (!f.exists)
		return f;
	// cfg80211 adds "wireless" (and "phy80211") to every 802.11 netdev.
	f.wireless = has("wireless") || has("phy80211");
	f.bridge = has("bridge");
	char buf[PATH_MAX];
	ssize_t n = ::readlink((dir + "/device/driver").c_str(), buf, sizeof(buf) - 1);
	if (n > 0) {
		std::string target(buf, static_cast<size_t>(n));
		f.driver = target.substr(target.rfind('/') + 1);
	}
	return f;
}

HookChoice choose_hook(HookMode requested, const DeviceFacts &f)
{
	if (requested == HookMode::Xdp)
		throw Error("--mode xdp: this kvmxdp has no XDP datapath yet (TC only): use "
			    "--mode auto or --mode tc");
	if (requested == HookMode::Tc)
		return {"tc", "--mode tc"};
	if (f.wireless)
		return {"tc", "wireless (802.11): no native XDP, not an XDP redirect target"};
	if (f.bridge)
		return {"tc", "bridge device: generic XDP only"};
	return {"tc", "no XDP datapath in this version"};
}

} // namespace kvmxdp
