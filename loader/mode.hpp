// SPDX-License-Identifier: GPL-2.0
// `attach --mode auto|tc|xdp`: which hook each device gets, and why.
//
// XDP cannot see an skb's checksum or GSO state, a WiFi device has no native
// XDP and cannot be an XDP redirect target, and a bridge device has generic
// XDP only: the decision is per device, from facts the kernel shows in
// /sys/class/net (namespace-correct under `ip netns exec`).  This version's
// datapath is TC only, so `auto` picks TC everywhere and says why, and
// `xdp` is refused; the facts and the reasons are what an XDP path will
// extend (issue 4).
#pragma once

#include <string>

namespace kvmxdp {

enum class HookMode { Auto, Tc, Xdp };

// "auto", "tc", "xdp"; throws Error naming the value otherwise.
HookMode parse_hook_mode(const std::string &text);
const char *hook_mode_name(HookMode m);

struct DeviceFacts {
	bool exists = false;
	bool wireless = false; // an 802.11 device (cfg80211: /sys/class/net/IF/wireless)
	bool bridge = false;   // a bridge device
	std::string driver;    // the bound driver's name, "" for virtual devices
};

// What /sys/class/net/IF (under sysfs_root) shows of ifname.
DeviceFacts device_facts(const std::string &ifname, const std::string &sysfs_root = "/sys");

struct HookChoice {
	std::string mode; // "tc" (the only datapath of this version)
	std::string why;
};

// The hook of one device.  Throws for HookMode::Xdp: this version has no
// XDP datapath (one clear line, before anything is created).
HookChoice choose_hook(HookMode requested, const DeviceFacts &f);

} // namespace kvmxdp
