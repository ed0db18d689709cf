// SPDX-License-Identifier: GPL-2.0
#include "control/devices.hpp"

#include <unistd.h>

#include <climits>

#include "kernel/netlink.hpp"

namespace kvmxdp {

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

DeviceFacts probe_device(int ifindex, const std::string &ifname, const std::string &kind)
{
	DeviceFacts f = device_facts(ifname);
	f.kind = kind;
	f.xdp_features = xdp_features(ifindex);
	return f;
}

} // namespace kvmxdp
