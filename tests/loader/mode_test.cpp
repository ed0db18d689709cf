// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.hpp"
#include "mode.hpp"
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

TEST(HookMode, AutoPicksTcForWifiAndSaysWhyXdpIsRefused)
{
	DeviceFacts wifi;
	wifi.exists = wifi.wireless = true;
	HookChoice c = choose_hook(HookMode::Auto, wifi);
	EXPECT_EQ(c.mode, "tc");
	EXPECT_NE(c.why.find("wireless"), std::string::npos) << c.why;
	DeviceFacts br;
	br.exists = br.bridge = true;
	EXPECT_NE(choose_hook(HookMode::Auto, br).why.find("bridge"), std::string::npos);
	EXPECT_EQ(choose_hook(HookMode::Tc, wifi).mode, "tc");
	EXPECT_THROW(choose_hook(HookMode::Xdp, DeviceFacts{}), Error);
}
