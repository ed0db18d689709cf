// SPDX-License-Identifier: GPL-2.0
#include "model/mode.hpp"

#include <unistd.h>

#include <climits>

#include "base/error.hpp"

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

HookChoice choose_hook(HookMode requested, const std::string &role, const DeviceFacts &f,
		       bool ports_take_redirects)
{
	const std::string &kind = f.kind;
	const std::optional<uint64_t> &features = f.xdp_features;
	if (requested == HookMode::Tc)
		return {"tc", "--mode tc"};
	if (f.wireless)
		return {"tc", "wireless (802.11): no native XDP, not an XDP redirect target"};
	if (f.bridge || role == "bridge")
		return {"tc", "bridge device: generic XDP only (TC; XDP runs on its ports)"};
	if (kind == "tun")
		return {"tc", "tap (a VM's NIC): XDP stays off, its frames carry offloaded "
			      "checksums and GSO (TC path)"};
	if (!features)
		return {"tc", "the kernel does not report XDP features (netdev netlink, Linux 6.3)"};
	const std::string what = f.driver.empty() ? (kind.empty() ? "device" : kind)
						  : "driver " + f.driver;
	if ((*features & (kXdpActBasic | kXdpActRedirect)) != (kXdpActBasic | kXdpActRedirect))
		return {"tc", "no native XDP (" + what + ")"};
	if (requested == HookMode::Xdp)
		return {"xdp", "--mode xdp: native XDP (" + what + ")"};
	// auto: XDP where it costs nothing else.  On a veth, an XDP program
	// strips GSO from the peer (the guest's or the LAN side's TCP then
	// sends MTU-sized segments), so veths take XDP only when asked.
	if (kind == "veth")
		return {"tc", "veth: XDP would strip the peer's GSO (--mode xdp uses it)"};
	if (role == "port")
		return {"tc", "bridge port: the fast path serves veth ports with --mode xdp"};
	if (!ports_take_redirects)
		return {"tc", "no bridge port takes XDP redirects (taps, veths without NAPI): XDP on "
			      "the uplink would only add work (" + what + ")"};
	return {"xdp", "wired uplink with native XDP (" + what + ")"};
}

bool xdp_tx_allowed(const DeviceFacts &f, std::string &why)
{
	const std::string &kind = f.kind;
	const std::optional<uint64_t> &features = f.xdp_features;
	if (f.wireless) {
		why = "wireless: not an XDP redirect target";
		return false;
	}
	if (kind == "tun") {
		why = "tap: replies go through TC (vhost-net guests)";
		return false;
	}
	if (!features) {
		why = "the kernel does not report XDP features";
		return false;
	}
	if (!(*features & kXdpActNdoXmit)) {
		why = kind == "veth" ? "veth whose peer has no NAPI (no XDP program, GRO off): "
				       "an XDP redirect would not land"
				     : "the driver takes no XDP redirects (ndo_xdp_xmit)";
		return false;
	}
	why = "XDP redirect target";
	return true;
}

} // namespace kvmxdp
