// SPDX-License-Identifier: GPL-2.0
// `kvmxdp install`: the files it writes, and the libvirt hook run for real
// (sh, with a stand-in systemctl on PATH that records its arguments).
#include <gtest/gtest.h>

#include "temp_dir.hpp"
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "verbs/install.hpp"

using namespace kvmxdp;

namespace {

std::string slurp(const std::string &p)
{
	std::ifstream f(p);
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

using TempRoot = test::TempDir;

} // namespace

TEST(Install, WritesUnitAndHook)
{
	TempRoot t;
	InstallOptions o;
	o.root = t.path();
	o.prefix = "/usr";
	auto files = install_files(o, "/etc/kvmxdp/kvmxdp.json");
	ASSERT_EQ(files.size(), 2u);
	std::string unit = slurp(t.path() + "/etc/systemd/system/kvmxdp@.service");
	EXPECT_NE(unit.find("ExecStart=/usr/sbin/kvmxdp --config /etc/kvmxdp/kvmxdp.json attach "
			    "--bridge %i\n"),
		  std::string::npos)
		<< unit;
	EXPECT_NE(unit.find("WantedBy=multi-user.target"), std::string::npos);
	struct stat st {};
	std::string hook = t.path() + "/etc/libvirt/hooks/network.d/kvmxdp";
	ASSERT_EQ(::stat(hook.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0755u);
	EXPECT_EQ(slurp(hook).find("virsh"), std::string::npos); // never calls back into libvirt
}

TEST(Install, HookStartsTheInstanceOfAStartedNetworkOnly)
{
	TempRoot t;
	std::string cfg = t.path() + "/kvmxdp.json";
	std::ofstream(cfg) << "{\n  \"instances\": [\n    {\n      \"bridge\": \"virbr0\",\n"
			      "      \"uplink\": \"wlan0\"\n    }\n  ],\n  \"version\": 1\n}\n";
	InstallOptions o;
	o.root = t.path();
	install_files(o, cfg);
	std::string bin = t.path() + "/bin";
	::mkdir(bin.c_str(), 0755);
	std::ofstream(bin + "/systemctl") << "#!/bin/sh\necho \"$*\" >> " + t.path() + "/calls\n";
	::chmod((bin + "/systemctl").c_str(), 0755);
	std::string hook = t.path() + "/etc/libvirt/hooks/network.d/kvmxdp";
	auto run = [&](const std::string &xml, const std::string &op) {
		std::string cmd = "printf '%s' \"" + xml + "\" | PATH='" + bin +
				  "':/usr/bin:/bin '" + hook + "' net " + op + " begin -";
		return std::system(cmd.c_str());
	};
	const std::string xml0 = "<network><name>default</name><bridge name='virbr0' "
				 "stp='on' delay='0'/></network>";
	EXPECT_EQ(run(xml0, "start"), 0);
	EXPECT_EQ(run("<network><bridge name='virbr1'/></network>", "started"), 0);
	EXPECT_EQ(slurp(t.path() + "/calls"), ""); // not started / no instance
	EXPECT_EQ(run(xml0, "started"), 0);
	EXPECT_EQ(slurp(t.path() + "/calls"), "--no-block start kvmxdp@virbr0.service\n");
}

TEST(Install, UnitCarriesNonDefaultPathsQuotedForSystemd)
{
	// A daemon started by the unit must find the instance's pins and pid
	// file where `kvmxdp --bpffs X --run-dir Y attach` put them; systemd
	// splits ExecStart on blanks and expands '%' and '$'.
	std::string unit = unit_text("/opt/kv mx/kvmxdp", "/etc/kvmxdp/a%b.json", "/run/my bpf",
				     "/run/kv$x");
	EXPECT_NE(unit.find("ExecStart=\"/opt/kv mx/kvmxdp\" --config /etc/kvmxdp/a%%b.json "
			    "--bpffs \"/run/my bpf\" --run-dir /run/kv$$x attach --bridge %i\n"),
		  std::string::npos)
		<< unit;
	EXPECT_EQ(unit_text("/usr/sbin/kvmxdp", "/etc/kvmxdp/kvmxdp.json").find("--bpffs"),
		  std::string::npos);
}

// Every path install writes into the unit or the hook is checked first: a
// newline would start a directive of its own ("--config $'/x\nExecStartPre=...'"),
// '%' is a systemd specifier.  One line naming the value; nothing written.
TEST(Install, RefusesPathsThatWouldBreakTheUnit)
{
	struct Case {
		std::string config, bpffs, run_dir, error;
	};
	const std::vector<Case> cases = {
		{"/etc/kvmxdp/x.json\nExecStartPre=/bin/touch /tmp/owned", "", "",
		 "install: --config '/etc/kvmxdp/x.json\\x0aExecStartPre=/bin/touch /tmp/owned' "
		 "cannot go into the unit: a control character (newline, tab, ...)"},
		{"/etc/kvmxdp/%i.json", "", "",
		 "install: --config '/etc/kvmxdp/%i.json' cannot go into the unit: '%' (a systemd "
		 "specifier)"},
		{"kvmxdp.json", "", "",
		 "install: --config 'kvmxdp.json' cannot go into the unit: not an absolute path"},
		{"/etc/kvmxdp/\xff.json", "", "",
		 "install: --config '/etc/kvmxdp/\\xff.json' cannot go into the unit: not UTF-8"},
		{"/etc/kvmxdp/kvmxdp.json", "/run/bpf\r", "",
		 "install: --bpffs '/run/bpf\\x0d' cannot go into the unit: a control character "
		 "(newline, tab, ...)"},
		{"/etc/kvmxdp/kvmxdp.json", "", "/run/kv%%x",
		 "install: --run-dir '/run/kv%%x' cannot go into the unit: '%' (a systemd "
		 "specifier)"},
	};
	for (const Case &c : cases) {
		TempRoot t;
		InstallOptions o;
		o.root = t.path();
		o.prefix = "/usr";
		o.bpffs = c.bpffs;
		o.run_dir = c.run_dir;
		std::string err = "(installed)";
		try {
			install_files(o, c.config);
		} catch (const std::exception &e) {
			err = e.what();
		}
		EXPECT_EQ(err, c.error);
		struct stat st {};
		EXPECT_NE(::stat((t.path() + "/etc").c_str(), &st), 0) << "something was written";
	}
	TempRoot t;
	InstallOptions o;
	o.root = t.path();
	o.prefix = "/opt/kv\tmx";
	try {
		install_files(o, "/etc/kvmxdp/kvmxdp.json");
		ADD_FAILURE() << "a tab in --prefix accepted";
	} catch (const std::exception &e) {
		EXPECT_EQ(std::string(e.what()),
			  "install: --prefix '/opt/kv\\x09mx/sbin/kvmxdp' cannot "
			  "go into the unit: a control character (newline, "
			  "tab, ...)");
	}
	// Blanks, quotes, '$' and '\' are allowed and quoted.
	o.prefix = "/opt/kv mx";
	ASSERT_NO_THROW(install_files(o, "/etc/kv \"$x\\y/kvmxdp.json"));
	std::string unit = slurp(t.path() + "/etc/systemd/system/kvmxdp@.service");
	EXPECT_NE(unit.find("ExecStart=\"/opt/kv mx/sbin/kvmxdp\" --config \"/etc/kv \\\"$$x\\\\y/"
			    "kvmxdp.json\" attach"),
		  std::string::npos)
		<< unit;
}
