// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.hpp"
#include "control/devices.hpp"
#include "model/mode.hpp"
#include "temp_dir.hpp"

using namespace kvmxdp;

namespace {

// A fake /sys/class/net/IF as the kernel shows an 802.11 station, a
// bridge, and a NIC bound to a driver.
void mkdirs(const std::string &p)
{
	for (size_t i = 1; i <= p.size(); i++)
		if (i == p.size() || p[i] == '/')
			::mkdir(p.substr(0, i).c_str(), 0755);
}

} // namespace

TEST(HookMode, ParsesTheThreeModesAndNamesABadOne)
{
	EXPECT_EQ(parse_hook_mode("auto"), HookMode::Auto);
	EXPECT_EQ(parse_hook_mode("tc"), HookMode::Tc);
	EXPECT_EQ(parse_hook_mode("xdp"), HookMode::Xdp);
	try {
		parse_hook_mode("fast");
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("'fast'"), std::string::npos) << e.what();
	}
}

TEST(HookMode, DeviceFactsFromSysfs)
{
	test::TempDir t;
	const std::string net = t.path() + "/class/net";
	mkdirs(net + "/wlp0s20f3/wireless");
	mkdirs(net + "/virbr0/bridge");
	mkdirs(net + "/enp0s31f6");
	mkdirs(net + "/enp0s31f6/device");
	// device/driver -> .../bus/pci/drivers/e1000e, as sysfs links it
	ASSERT_EQ(::symlink("../../../../bus/pci/drivers/e1000e",
			    (net + "/enp0s31f6/device/driver").c_str()),
		  0);

	DeviceFacts w = device_facts("wlp0s20f3", t.path());
	EXPECT_TRUE(w.exists);
	EXPECT_TRUE(w.wireless);
	EXPECT_FALSE(w.bridge);
	DeviceFacts b = device_facts("virbr0", t.path());
	EXPECT_TRUE(b.bridge);
	EXPECT_FALSE(b.wireless);
	DeviceFacts n = device_facts("enp0s31f6", t.path());
	EXPECT_EQ(n.driver, "e1000e");
	EXPECT_FALSE(device_facts("nosuch0", t.path()).exists);
}

TEST(HookMode, WifiAndBridgeStayTcWhateverTheMode)
{
	DeviceFacts wifi;
	wifi.exists = wifi.wireless = true;
	wifi.xdp_features = kXdpActBasic | kXdpActRedirect | kXdpActNdoXmit;
	for (HookMode m : {HookMode::Auto, HookMode::Xdp}) {
		HookChoice c = choose_hook(m, DeviceRole::Uplink, wifi);
		EXPECT_EQ(c.hook, Hook::Tc);
		EXPECT_NE(c.why.find("wireless"), std::string::npos) << c.why;
	}
	std::string why;
	EXPECT_FALSE(xdp_tx_allowed(wifi, why));
	EXPECT_NE(why.find("wireless"), std::string::npos) << why;
	DeviceFacts br;
	br.exists = br.bridge = true;
	br.xdp_features = kXdpActBasic | kXdpActRedirect;
	EXPECT_EQ(choose_hook(HookMode::Xdp, DeviceRole::Bridge, br).hook, Hook::Tc);
	EXPECT_NE(choose_hook(HookMode::Auto, DeviceRole::Bridge, br).why.find("bridge"), std::string::npos);
	EXPECT_EQ(choose_hook(HookMode::Tc, DeviceRole::Uplink, wifi).why, "--mode tc");
}

TEST(HookMode, AutoTakesXdpOnAWiredUplinkWithNativeXdpOnly)
{
	DeviceFacts nic;
	nic.exists = true;
	nic.driver = "igc";
	nic.xdp_features = kXdpActBasic | kXdpActRedirect | kXdpActNdoXmit;
	HookChoice c = choose_hook(HookMode::Auto, DeviceRole::Uplink, nic);
	EXPECT_EQ(c.hook, Hook::Xdp);
	EXPECT_NE(c.why.find("igc"), std::string::npos) << c.why;
	EXPECT_EQ(choose_hook(HookMode::Tc, DeviceRole::Uplink, nic).hook, Hook::Tc);
	// With only taps on the bridge, every reply would go to TC anyway.
	c = choose_hook(HookMode::Auto, DeviceRole::Uplink, nic, false);
	EXPECT_EQ(c.hook, Hook::Tc);
	EXPECT_NE(c.why.find("no bridge port takes XDP redirects"), std::string::npos) << c.why;
	EXPECT_EQ(choose_hook(HookMode::Xdp, DeviceRole::Uplink, nic, false).hook, Hook::Xdp) << "asked for";

	DeviceFacts usb = nic; // a driver without native XDP (generic only)
	usb.driver = "r8152";
	usb.xdp_features = 0;
	c = choose_hook(HookMode::Xdp, DeviceRole::Uplink, usb);
	EXPECT_EQ(c.hook, Hook::Tc);
	EXPECT_NE(c.why.find("no native XDP (driver r8152)"), std::string::npos) << c.why;

	DeviceFacts old = nic; // a kernel before 6.3 cannot say
	old.xdp_features.reset();
	c = choose_hook(HookMode::Xdp, DeviceRole::Uplink, old);
	EXPECT_EQ(c.hook, Hook::Tc);
	EXPECT_NE(c.why.find("6.3"), std::string::npos) << c.why;
}

TEST(HookMode, VethsTakeXdpOnlyWhenAskedAndTapsNever)
{
	DeviceFacts veth;
	veth.exists = true;
	veth.kind = "veth";
	veth.xdp_features = kXdpActBasic | kXdpActRedirect;
	for (DeviceRole role : {DeviceRole::Uplink, DeviceRole::Port}) {
		HookChoice c = choose_hook(HookMode::Auto, role, veth);
		EXPECT_EQ(c.hook, Hook::Tc) << role_name(role);
		EXPECT_NE(c.why.find("GSO"), std::string::npos) << c.why;
		EXPECT_EQ(choose_hook(HookMode::Xdp, role, veth).hook, Hook::Xdp) << role_name(role);
	}
	// A veth takes redirects only while its peer has NAPI (NDO_XMIT).
	std::string why;
	EXPECT_FALSE(xdp_tx_allowed(veth, why));
	EXPECT_NE(why.find("NAPI"), std::string::npos) << why;
	veth.xdp_features = *veth.xdp_features | kXdpActNdoXmit;
	EXPECT_TRUE(xdp_tx_allowed(veth, why)) << why;

	DeviceFacts tap;
	tap.exists = true;
	tap.kind = "tun";
	tap.xdp_features = kXdpActBasic | kXdpActRedirect | kXdpActNdoXmit;
	HookChoice c = choose_hook(HookMode::Xdp, DeviceRole::Port, tap);
	EXPECT_EQ(c.hook, Hook::Tc);
	EXPECT_NE(c.why.find("tap"), std::string::npos) << c.why;
	EXPECT_FALSE(xdp_tx_allowed(tap, why));
}

// A locked port (802.1X/MAB) keeps TC whatever the mode and the device: the
// bridge's check of the station comes after the XDP hook.
TEST(HookMode, LockedPortsStayTcWhateverTheMode)
{
	DeviceFacts veth;
	veth.exists = true;
	veth.kind = "veth";
	veth.xdp_features = kXdpActBasic | kXdpActRedirect | kXdpActNdoXmit;
	veth.locked = true;
	for (HookMode m : {HookMode::Auto, HookMode::Xdp}) {
		HookChoice c = choose_hook(m, DeviceRole::Port, veth);
		EXPECT_EQ(c.hook, Hook::Tc) << hook_mode_name(m);
		EXPECT_NE(c.why.find("locked port"), std::string::npos) << c.why;
	}
	// Still a redirect target: replies to its authorised stations may come
	// by XDP (where kvx_xfdb has them from the bridge's entries).
	std::string why;
	EXPECT_TRUE(xdp_tx_allowed(veth, why)) << why;
	veth.locked = false;
	EXPECT_EQ(choose_hook(HookMode::Xdp, DeviceRole::Port, veth).hook, Hook::Xdp);
}
