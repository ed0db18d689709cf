// SPDX-License-Identifier: GPL-2.0
// `attach --mode auto|tc|xdp`: which hook each device gets, and why.
//
// XDP cannot see an skb's checksum or GSO state, a WiFi device has no native
// XDP and cannot be an XDP redirect target, a bridge device has generic XDP
// only, a tap carries a VM's offloaded frames, and XDP on a veth strips its
// peer's GSO: the decision is per device, from facts the kernel shows in
// /sys/class/net (namespace-correct under `ip netns exec`), rtnetlink (the
// link kind) and netdev netlink (XDP features, Linux 6.3), gathered by
// control/devices.hpp.  The TC programs stay attached everywhere: they take
// what XDP hands them (bpf/lib/xdp.h).  Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kvmxdp {

// What `attach --mode` asks for.
enum class HookMode { Auto, Tc, Xdp };

// "auto", "tc", "xdp"; throws Error naming the value otherwise.
HookMode parse_hook_mode(const std::string &text);
// nullopt for anything else.
std::optional<HookMode> find_hook_mode(const std::string &text);
const char *hook_mode_name(HookMode m);

// `attach --port-guard on|off` (abi.h kvx_brport, KVX_BRPORT_F_HELD): true
// for "on"; throws Error naming `what` and the value otherwise.
bool parse_port_guard(const std::string &text, const std::string &what);

// What a device gets: the TC programs alone, or XDP in front of them.
enum class Hook { Tc, Xdp };
const char *hook_name(Hook h); // "tc", "xdp"

// A device's place in an instance.
enum class DeviceRole { Bridge, Uplink, Port };
const char *role_name(DeviceRole r); // "bridge", "uplink", "port"

struct DeviceFacts {
	bool exists = false;
	bool wireless = false; // an 802.11 device (cfg80211: /sys/class/net/IF/wireless)
	bool bridge = false;   // a bridge device
	std::string driver;    // the bound driver's name, "" for virtual devices
	// From rtnetlink and netdev netlink rather than sysfs:
	std::string kind; // IFLA_INFO_KIND: "veth", "tun", "" for hardware
	// NETDEV_XDP_ACT_* bits; nullopt where the kernel cannot say (< 6.3)
	std::optional<uint64_t> xdp_features;
	// A bridge port the bridge admits only authorised stations on
	// (IFLA_BRPORT_LOCKED, 802.1X/MAB, Linux 5.18).
	bool locked = false;
};

// NETDEV_XDP_ACT_* (uapi linux/netdev.h, Linux 6.3; not in Debian 12's
// headers).
constexpr uint64_t kXdpActBasic = 1U << 0;
constexpr uint64_t kXdpActRedirect = 1U << 1;
constexpr uint64_t kXdpActNdoXmit = 1U << 2;

struct HookChoice {
	Hook hook = Hook::Tc;
	std::string why;
};

// The hook of one device.  `auto` takes
// XDP where it costs nothing else and pays: a wired uplink with native XDP,
// while some bridge port takes XDP redirects (ports_take_redirects: with
// taps only, the uplink's XDP program would hand every reply to TC and only
// add work); `xdp` also on veths; everything else is TC, with the reason.
// A locked port is TC whatever the mode: XDP would translate a station's
// frames before the bridge checks that the station is authorised.
HookChoice choose_hook(HookMode requested, DeviceRole role, const DeviceFacts &f,
		       bool ports_take_redirects = true);

// Whether kvmxdp lets the XDP programs redirect into the device
// (KVX_XDEV_F_TX), and why: the kernel must say a redirect lands
// (NDO_XMIT: a veth only while its peer has NAPI), never a tap or WiFi.
bool xdp_tx_allowed(const DeviceFacts &f, std::string &why);

} // namespace kvmxdp
