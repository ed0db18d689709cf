// SPDX-License-Identifier: GPL-2.0
#include "model/mode.hpp"

#include "base/error.hpp"
#include "base/text.hpp"

namespace kvmxdp {

std::optional<HookMode> find_hook_mode(const std::string &text)
{
	for (HookMode m : {HookMode::Auto, HookMode::Tc, HookMode::Xdp})
		if (text == hook_mode_name(m))
			return m;
	return std::nullopt;
}

HookMode parse_hook_mode(const std::string &text)
{
	if (auto m = find_hook_mode(text))
		return *m;
	throw Error("invalid --mode '" + text + "': expected auto, tc or xdp");
}

bool parse_port_guard(const std::string &text, const std::string &what)
{
	if (text == "on")
		return true;
	if (text == "off")
		return false;
	throw Error("invalid " + what + " '" + printable(text) + "': expected on or off");
}

// The spellings of the CLI, the config and status, in enum order.
const char *hook_mode_name(HookMode m)
{
	static const char *const kNames[] = {"auto", "tc", "xdp"};
	return kNames[static_cast<int>(m)];
}

const char *hook_name(Hook h)
{
	static const char *const kNames[] = {"tc", "xdp"};
	return kNames[static_cast<int>(h)];
}

const char *role_name(DeviceRole r)
{
	static const char *const kNames[] = {"bridge", "uplink", "port"};
	return kNames[static_cast<int>(r)];
}

HookChoice choose_hook(HookMode requested, DeviceRole role, const DeviceFacts &f,
		       bool ports_take_redirects)
{
	const std::string &kind = f.kind;
	const std::optional<uint64_t> &features = f.xdp_features;
	if (requested == HookMode::Tc)
		return {Hook::Tc, "--mode tc"};
	if (f.wireless)
		return {Hook::Tc, "wireless (802.11): no native XDP, not an XDP redirect target"};
	if (f.bridge || role == DeviceRole::Bridge)
		return {Hook::Tc, "bridge device: generic XDP only (TC; XDP runs on its ports)"};
	// The bridge drops a locked port's frames from stations without an
	// entry of their own on it (br_handle_frame_finish), after the XDP hook
	// and before the TC hook of the bridge device: only TC keeps that.
	if (role == DeviceRole::Port && f.locked)
		return {Hook::Tc, "locked port (802.1X): the bridge admits its stations, which XDP "
				  "would translate before it checks (TC path)"};
	if (kind == "tun")
		return {Hook::Tc, "tap (a VM's NIC): XDP stays off, its frames carry offloaded "
				  "checksums and GSO (TC path)"};
	if (!features)
		return {Hook::Tc,
			"the kernel does not report XDP features (netdev netlink, Linux 6.3)"};
	const std::string what = f.driver.empty() ? (kind.empty() ? "device" : kind) :
						    "driver " + f.driver;
	if ((*features & (kXdpActBasic | kXdpActRedirect)) != (kXdpActBasic | kXdpActRedirect))
		return {Hook::Tc, "no native XDP (" + what + ")"};
	if (requested == HookMode::Xdp)
		return {Hook::Xdp, "--mode xdp: native XDP (" + what + ")"};
	// auto: XDP where it costs nothing else.  On a veth, an XDP program
	// strips GSO from the peer (the guest's or the LAN side's TCP then
	// sends MTU-sized segments), so veths take XDP only when asked.
	if (kind == "veth")
		return {Hook::Tc, "veth: XDP would strip the peer's GSO (--mode xdp uses it)"};
	if (role == DeviceRole::Port)
		return {Hook::Tc, "bridge port: the fast path serves veth ports with --mode xdp"};
	if (!ports_take_redirects)
		return {Hook::Tc,
			"no bridge port takes XDP redirects (taps, veths without NAPI): XDP on "
			"the uplink would only add work (" +
				what + ")"};
	return {Hook::Xdp, "wired uplink with native XDP (" + what + ")"};
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
				       "an XDP redirect would not land" :
				       "the driver takes no XDP redirects (ndo_xdp_xmit)";
		return false;
	}
	why = "XDP redirect target";
	return true;
}

} // namespace kvmxdp
