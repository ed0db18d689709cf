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
			    "--bridge %I\n"),
		  std::string::npos)
		<< unit;
	EXPECT_NE(unit.find("WantedBy=multi-user.target"), std::string::npos);
	struct stat st {};
	std::string hook = t.path() + "/etc/libvirt/hooks/network.d/kvmxdp";
	ASSERT_EQ(::stat(hook.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0755u);
	EXPECT_EQ(slurp(hook).find("virsh"), std::string::npos); // never calls back into libvirt
}

// The installed hook, with an instance of `bridge` in the config and a
// stand-in systemctl on its PATH that records its arguments.
class HookRun {
public:
	explicit HookRun(const std::string &bridge)
	{
		std::string cfg = t_.path() + "/kvmxdp.json";
		std::ofstream(cfg) << "{\n  \"instances\": [\n    {\n      \"bridge\": \"" +
					      bridge +
					      "\",\n      \"uplink\": \"wlan0\"\n    }\n  ],\n"
					      "  \"version\": 1\n}\n";
		InstallOptions o;
		o.root = t_.path();
		install_files(o, cfg);
		::mkdir(bin().c_str(), 0755);
		std::ofstream(bin() + "/systemctl")
			<< "#!/bin/sh\necho \"$*\" >> " + t_.path() + "/calls\n";
		::chmod((bin() + "/systemctl").c_str(), 0755);
	}
	// As libvirt runs it: `NETWORK OPERATION begin -`, the XML on stdin.
	int run(const std::string &xml, const std::string &op) const
	{
		std::string cmd = "printf '%s' \"" + xml + "\" | PATH='" + bin() +
				  "':/usr/bin:/bin '" + t_.path() +
				  "/etc/libvirt/hooks/network.d/kvmxdp' net " + op + " begin -";
		return std::system(cmd.c_str());
	}
	std::string calls() const { return slurp(t_.path() + "/calls"); }

private:
	std::string bin() const { return t_.path() + "/bin"; }
	TempRoot t_;
};

TEST(Install, HookStartsTheInstanceOfAStartedNetworkOnly)
{
	HookRun h("virbr0");
	const std::string xml0 = "<network><name>default</name><bridge name='virbr0' "
				 "stp='on' delay='0'/></network>";
	EXPECT_EQ(h.run(xml0, "start"), 0);
	EXPECT_EQ(h.run("<network><bridge name='virbr1'/></network>", "started"), 0);
	EXPECT_EQ(h.calls(), ""); // not started / no instance
	EXPECT_EQ(h.run(xml0, "started"), 0);
	EXPECT_EQ(h.calls(),
		  "reset-failed kvmxdp@virbr0.service\n--no-block start kvmxdp@virbr0.service\n");
}

TEST(Install, HookEscapesTheBridgeAsTheUnitsPercentIUnescapesIt)
{
	// The unit runs `attach --bridge %I`: systemd unescapes the instance,
	// so "\x2d" is the bridge's '-' and a bare '-' would be a '/'.
	HookRun h("br-lan.10");
	ASSERT_EQ(h.run("<network><bridge name='br-lan.10'/></network>", "started"), 0);
	EXPECT_EQ(h.calls(), "reset-failed kvmxdp@br\\x2dlan.10.service\n"
			     "--no-block start kvmxdp@br\\x2dlan.10.service\n");
}

TEST(Install, UnitStopsOnConfigErrorsAndIsSandboxed)
{
	const std::string unit = unit_text("/usr/sbin/kvmxdp", "/etc/kvmxdp/kvmxdp.json");
	auto has = [&](const std::string &line) {
		return unit.find("\n" + line + "\n") != std::string::npos;
	};
	EXPECT_EQ(unit.find("%i"), std::string::npos) << "the escaped instance: use %I";
	// Restarts end: after a start limit, and at once for the exit codes a
	// restart cannot help (usage 2, configuration 78).
	EXPECT_TRUE(has("Restart=on-failure"));
	EXPECT_TRUE(has("StartLimitIntervalSec=120"));
	EXPECT_TRUE(has("StartLimitBurst=10"));
	EXPECT_TRUE(has("RestartPreventExitStatus=2 78"));
	EXPECT_LT(unit.find("StartLimitBurst="), unit.find("[Service]")) << "a [Unit] setting";
	// The capabilities attach needs (require_caps in control/attach.cpp),
	// and nothing else.
	EXPECT_TRUE(has("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"));
	for (const char *d :
	     {"NoNewPrivileges=yes", "UMask=0077", "ProtectSystem=strict",
	      "ConfigurationDirectory=kvmxdp", "RuntimeDirectory=kvmxdp",
	      "RuntimeDirectoryPreserve=yes", "PrivateTmp=yes", "ProtectHome=yes",
	      "PrivateDevices=yes", "ProtectControlGroups=yes",
	      "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET",
	      "SystemCallFilter=@system-service bpf", "SystemCallErrorNumber=EPERM"})
		EXPECT_TRUE(has(d)) << d << " missing from:\n" << unit;
	// Default paths are systemd's own directories: nothing else writable.
	EXPECT_EQ(unit.find("\nReadWritePaths="), std::string::npos);
}

TEST(Install, UnitKeepsPathsOutsideTheSandboxWritableAndVisible)
{
	// Paths in /tmp (tests) and a binary in a home directory (a build
	// tree) must stay reachable, or the unit cannot start.
	const std::string unit = unit_text("/home/u/kvmxdp/build/kvmxdp", "/tmp/t/etc/kvmxdp.json",
					   "/tmp/t/bpffs", "/tmp/t/run");
	EXPECT_NE(unit.find("\nReadWritePaths=-/tmp/t/etc -/tmp/t/run -/tmp/t/bpffs\n"),
		  std::string::npos)
		<< unit;
	EXPECT_NE(unit.find("\nRequiresMountsFor=/tmp/t/bpffs\n"), std::string::npos);
	EXPECT_NE(unit.find("\nPrivateTmp=no\n"), std::string::npos);
	EXPECT_NE(unit.find("\nProtectHome=read-only\n"), std::string::npos);
	EXPECT_EQ(unit.find("ConfigurationDirectory="), std::string::npos);
	EXPECT_EQ(unit.find("RuntimeDirectory="), std::string::npos);
}

TEST(Install, UnitCarriesNonDefaultPathsQuotedForSystemd)
{
	// A daemon started by the unit must find the instance's pins and pid
	// file where `kvmxdp --bpffs X --run-dir Y attach` put them; systemd
	// splits ExecStart on blanks and expands '%' and '$'.
	std::string unit = unit_text("/opt/kv mx/kvmxdp", "/etc/kvmxdp/a%b.json", "/run/my bpf",
				     "/run/kv$x");
	EXPECT_NE(unit.find("ExecStart=\"/opt/kv mx/kvmxdp\" --config /etc/kvmxdp/a%%b.json "
			    "--bpffs \"/run/my bpf\" --run-dir /run/kv$$x attach --bridge %I\n"),
		  std::string::npos)
		<< unit;
	// Path directives expand '%' but not '$'.
	EXPECT_NE(unit.find("\nReadWritePaths=\"-/run/my bpf\"\n"), std::string::npos) << unit;
	EXPECT_NE(unit.find("\nRuntimeDirectory=kv$x\n"), std::string::npos) << unit;
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
