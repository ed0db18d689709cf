// SPDX-License-Identifier: GPL-2.0
// `kvmxdp install`: the files it writes, and the libvirt hook run for real
// (sh, with a stand-in systemctl on PATH that records its arguments).
#include <gtest/gtest.h>

#include "error_of.hpp"
#include "temp_dir.hpp"
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "verbs/install.hpp"

using namespace kvmxdp;
using test::error_of;

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
	ASSERT_EQ(files.size(), 3u);
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
	// libvirt >= 6.5 runs every executable of hooks/qemu.d beside a
	// user's own hooks/qemu.
	std::string qemu = t.path() + "/etc/libvirt/hooks/qemu.d/kvmxdp";
	ASSERT_EQ(::stat(qemu.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0755u);
	EXPECT_NE(slurp(qemu).find("exec \"$exe\" --config '/etc/kvmxdp/kvmxdp.json' libvirt-hook "
				   "qemu \"$@\"\n"),
		  std::string::npos)
		<< slurp(qemu);
	EXPECT_EQ(slurp(qemu).find("virsh"), std::string::npos);
}

// The installed hook, with an instance of `bridge` in the config and a
// stand-in systemctl on its PATH that records its arguments.
class HookRun {
public:
	explicit HookRun(const std::string &bridge)
		: HookRun(bridge, "{\n  \"instances\": [\n    {\n      \"bridge\": \"" + bridge +
					  "\",\n      \"uplink\": \"wlan0\"\n    }\n  ],\n"
					  "  \"version\": 1\n}\n")
	{
	}
	// With this text as the config.
	HookRun(const std::string &, const std::string &config)
	{
		::mkdir((t_.path() + "/kvmxdp").c_str(), 0700);
		std::string cfg = t_.path() + "/kvmxdp/kvmxdp.json";
		std::ofstream(cfg) << config;
		InstallOptions o;
		o.root = t_.path();
		// The hooks run PREFIX/sbin/kvmxdp: a stand-in that records its
		// arguments and input, or none (prefix without a binary).
		o.prefix = t_.path() + "/prefix";
		install_files(o, cfg);
		::mkdir(bin().c_str(), 0755);
		std::ofstream(bin() + "/systemctl")
			<< "#!/bin/sh\necho \"$*\" >> " + t_.path() + "/calls\n";
		::chmod((bin() + "/systemctl").c_str(), 0755);
	}
	// As libvirt runs it: `NETWORK OPERATION begin -`, the XML on stdin.
	// In directory cwd, with the variable assignments env ("A='x'").
	int run(const std::string &xml, const std::string &op, const std::string &cwd = "",
		const std::string &env = "") const
	{
		std::ofstream(t_.path() + "/net.xml") << xml;
		std::string cmd = (cwd.empty() ? "" : "cd '" + cwd + "' && ") + "cat '" +
				  t_.path() + "/net.xml' | " + env + " PATH='" + bin() +
				  "':/usr/bin:/bin '" + t_.path() +
				  "/etc/libvirt/hooks/network.d/kvmxdp' net " + op + " begin -";
		return std::system(cmd.c_str());
	}
	// A stand-in kvmxdp that exits with `rc` after recording its
	// arguments and input in kvmxdp.calls.
	void fake_kvmxdp(int rc) const
	{
		const std::string sbin = t_.path() + "/prefix/sbin";
		::mkdir((t_.path() + "/prefix").c_str(), 0755);
		::mkdir(sbin.c_str(), 0755);
		std::ofstream(sbin + "/kvmxdp")
			<< "#!/bin/sh\necho \"$*\" >> " + t_.path() + "/kvmxdp.calls\ncat >> " +
				   t_.path() + "/kvmxdp.calls\nexit " + std::to_string(rc) + "\n";
		::chmod((sbin + "/kvmxdp").c_str(), 0755);
	}
	std::string kvmxdp_calls() const { return slurp(t_.path() + "/kvmxdp.calls"); }
	std::string calls() const { return slurp(t_.path() + "/calls"); }
	std::string bin() const { return t_.path() + "/bin"; }
	const std::string &dir() const { return t_.path(); }

private:
	TempRoot t_;
};

TEST(Install, NetworkHookHandsTheXmlToLibvirtHook)
{
	HookRun h("virbr0");
	const std::string xml = "<network><name>net</name><bridge name='virbr0'/></network>";
	// Without the binary (package removed, conffile kept): only the unit.
	EXPECT_EQ(h.run(xml, "started"), 0);
	EXPECT_EQ(h.kvmxdp_calls(), "");
	h.fake_kvmxdp(0);
	EXPECT_EQ(h.run(xml, "stopped"), 0);
	EXPECT_EQ(h.kvmxdp_calls(), "--config " + h.dir() +
					    "/kvmxdp/kvmxdp.json libvirt-hook network net stopped "
					    "begin -\n" +
					    xml + "\n");
	// Its error is the hook's status (libvirt then refuses the network),
	// the unit is started all the same.
	h.fake_kvmxdp(3);
	EXPECT_EQ(WEXITSTATUS(h.run(xml, "started")), 3);
	EXPECT_NE(h.calls().find("--no-block start kvmxdp@virbr0.service"), std::string::npos);
}

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

// libvirt runs the hook as root with whatever environment libvirtd has:
// the python3 it runs imports only its own modules (-I), not a json.py
// from PYTHONPATH or from the working directory.
TEST(Install, HookImportsNoModuleFromTheEnvironment)
{
	HookRun h("virbr0");
	const std::string planted = h.dir() + "/planted";
	::mkdir(planted.c_str(), 0755);
	for (const char *mod : {"/json.py", "/xml.py"})
		std::ofstream(planted + mod)
			<< "open('" + h.dir() + "/imported', 'a').write('" + mod + "')\n";
	ASSERT_EQ(h.run("<network><bridge name='virbr0'/></network>", "started", planted,
			"PYTHONPATH='" + planted + "'"),
		  0);
	EXPECT_EQ(slurp(h.dir() + "/imported"), "") << "the hook imported a planted module";
	EXPECT_EQ(h.calls(),
		  "reset-failed kvmxdp@virbr0.service\n--no-block start kvmxdp@virbr0.service\n");
}

// The hook parses the network XML and the config instead of matching
// text: a config written compactly or by hand, names that JSON escapes or
// with regex metacharacters ("br.0"), the XML's other quoting and entities.
TEST(Install, HookParsesTheConfigAndTheXml)
{
	const std::string started = "reset-failed kvmxdp@br.0.service\n"
				    "--no-block start kvmxdp@br.0.service\n";
	{
		HookRun h("br.0",
			  R"({"version":1,"instances":[{"uplink":"wlan0","bridge":"br.0"}]})");
		ASSERT_EQ(h.run("<network><bridge name=\"br.0\" stp='on'/></network>", "started"),
			  0);
		EXPECT_EQ(h.calls(), started);
	}
	{
		// Another bridge whose name the dot would match as a pattern.
		HookRun h("brx0", R"({"instances": [{"bridge": "brx0"}]})");
		ASSERT_EQ(h.run("<network><bridge name='br.0'/></network>", "started"), 0);
		EXPECT_EQ(h.calls(), "");
	}
	{
		// The name only as another instance's uplink: not an instance.
		HookRun h("br.0", R"({"instances": [{"bridge": "virbr1", "uplink": "br.0"}]})");
		ASSERT_EQ(h.run("<network><bridge name='br.0'/></network>", "started"), 0);
		EXPECT_EQ(h.calls(), "");
	}
	{
		// A quote and an ampersand: escaped in JSON and in the XML.
		HookRun h("b\"r&", R"({"instances": [{"bridge": "b\"r&"}]})");
		ASSERT_EQ(h.run("<network><bridge name='b&quot;r&amp;'/></network>", "started"), 0);
		EXPECT_EQ(h.calls(), "reset-failed kvmxdp@b\\x22r\\x26.service\n"
				     "--no-block start kvmxdp@b\\x22r\\x26.service\n");
	}
	{
		// An unreadable config starts nothing, and the hook still exits 0
		// (libvirt would fail the network's start otherwise).
		HookRun h("br.0", "{\"instances\": [");
		EXPECT_EQ(h.run("<network><bridge name='br.0'/></network>", "started"), 0);
		EXPECT_EQ(h.calls(), "");
	}
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
	EXPECT_TRUE(has("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_NET_RAW"));
	for (const char *d :
	     {"NoNewPrivileges=yes", "UMask=0077", "ProtectSystem=strict",
	      "ConfigurationDirectory=kvmxdp", "RuntimeDirectory=kvmxdp",
	      "RuntimeDirectoryPreserve=yes", "PrivateTmp=yes", "ProtectHome=yes",
	      "PrivateDevices=yes", "ProtectControlGroups=yes",
	      "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET",
	      "IPAddressAllow=localhost", "SystemCallFilter=@system-service bpf",
	      "SystemCallErrorNumber=EPERM"})
		EXPECT_TRUE(has(d)) << d << " missing from:\n" << unit;
	// Default paths are systemd's own directories: nothing else writable
	// but net/ipv4's sysctls and the bpffs, below a read-only /proc/sys
	// and /sys (kernel/core_pattern run by root escapes any sandbox).
	EXPECT_TRUE(has("ReadOnlyPaths=/proc/sys -/proc/sysrq-trigger /sys")) << unit;
	EXPECT_TRUE(has("ReadWritePaths=/proc/sys/net/ipv4 -/proc/sys/net/ipv6/conf -/sys/fs/bpf"))
		<< unit;
}

TEST(Install, UnitKeepsPathsOutsideTheSandboxWritableAndVisible)
{
	// Paths in /tmp (tests) and a binary in a home directory (a build
	// tree) must stay reachable, or the unit cannot start.
	const std::string unit = unit_text("/home/u/kvmxdp/build/kvmxdp", "/tmp/t/etc/kvmxdp.json",
					   "/tmp/t/bpffs", "/tmp/t/run");
	EXPECT_NE(
		unit.find(
			"\nReadWritePaths=-/tmp/t/etc -/tmp/t/run /proc/sys/net/ipv4 -/proc/sys/net/ipv6/conf -/tmp/t/bpffs\n"),
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
	std::string unit =
		unit_text("/opt/kv mx/kvmxdp", "/etc/kvmxdp/a%b.json", "/run/my bpf", "/run/kv$x");
	EXPECT_NE(unit.find("ExecStart=\"/opt/kv mx/kvmxdp\" --config /etc/kvmxdp/a%%b.json "
			    "--bpffs \"/run/my bpf\" --run-dir /run/kv$$x attach --bridge %I\n"),
		  std::string::npos)
		<< unit;
	// Path directives expand '%' but not '$'.
	EXPECT_NE(
		unit.find(
			"\nReadWritePaths=/proc/sys/net/ipv4 -/proc/sys/net/ipv6/conf \"-/run/my bpf\"\n"),
		std::string::npos)
		<< unit;
	EXPECT_NE(unit.find("\nRuntimeDirectory=kv$x\n"), std::string::npos) << unit;
	EXPECT_EQ(unit_text("/usr/sbin/kvmxdp", "/etc/kvmxdp/kvmxdp.json").find("--bpffs"),
		  std::string::npos);
}

// The unit hands the config's directory, the run directory and the bpffs
// to the daemon (ConfigurationDirectory=, RuntimeDirectory=,
// ReadWritePaths=): a system directory itself, however spelt, is refused
// with one line naming the value; nothing is written.
TEST(Install, RefusesSystemDirectoriesAsTheDaemonsOwn)
{
	struct Case {
		std::string config, bpffs, run_dir, error;
	};
	const std::string own = "use a directory of its own (";
	const std::vector<Case> cases = {
		{"/etc/kvmxdp.json", "", "",
		 "install: --config '/etc/kvmxdp.json' gives the unit /etc itself: the daemon "
		 "would get a system directory to write; " +
			 own + "/etc/kvmxdp/kvmxdp.json)"},
		{"/etc/kvmxdp/../kvmxdp.json", "", "",
		 "install: --config '/etc/kvmxdp/../kvmxdp.json' gives the unit /etc itself: the "
		 "daemon would get a system directory to write; " +
			 own + "/etc/kvmxdp/kvmxdp.json)"},
		{"/kvmxdp.json", "", "",
		 "install: --config '/kvmxdp.json' gives the unit / itself: the daemon would get a "
		 "system directory to write; " +
			 own + "/etc/kvmxdp/kvmxdp.json)"},
		{"/etc/kvmxdp/kvmxdp.json", "", "/run/",
		 "install: --run-dir '/run/' gives the unit /run itself: the daemon would get a "
		 "system directory to write; " +
			 own + "/run/kvmxdp)"},
		{"/etc/kvmxdp/kvmxdp.json", "", "/run/kvmxdp/..//.",
		 "install: --run-dir '/run/kvmxdp/..//.' gives the unit /run itself: the daemon "
		 "would get a system directory to write; " +
			 own + "/run/kvmxdp)"},
		{"/etc/kvmxdp/kvmxdp.json", "", "/",
		 "install: --run-dir '/' gives the unit / itself: the daemon would get a system "
		 "directory to write; " +
			 own + "/run/kvmxdp)"},
		{"/etc/kvmxdp/kvmxdp.json", "/sys", "",
		 "install: --bpffs '/sys' gives the unit /sys itself: the daemon would get a "
		 "system directory to write; " +
			 own + "the default /sys/fs/bpf)"},
	};
	for (const char *d :
	     {"/usr", "/var", "/proc", "/dev", "/boot", "/home", "/etc", "/var/lib"})
		for (const std::string &run : {std::string(d), std::string(d) + "/"}) {
			TempRoot t;
			InstallOptions o;
			o.root = t.path();
			o.prefix = "/usr";
			o.run_dir = run;
			EXPECT_NE(error_of([&] {
					  install_files(o, "/etc/kvmxdp/kvmxdp.json");
				  }).find("gives the unit " + std::string(d) + " itself"),
				  std::string::npos)
				<< run;
		}
	for (const Case &c : cases) {
		TempRoot t;
		InstallOptions o;
		o.root = t.path();
		o.prefix = "/usr";
		o.bpffs = c.bpffs;
		o.run_dir = c.run_dir;
		EXPECT_EQ(error_of([&] { install_files(o, c.config); }), c.error);
		struct stat st {};
		EXPECT_NE(::stat((t.path() + "/etc").c_str(), &st), 0) << "something was written";
	}
	// Directories of its own are fine, below a system directory or not.
	TempRoot t;
	InstallOptions o;
	o.root = t.path();
	o.prefix = "/usr";
	o.run_dir = "/run/kvmxdp-test";
	o.bpffs = "/run/kvmxdp-bpf";
	EXPECT_NO_THROW(install_files(o, "/var/lib/kvmxdp/kvmxdp.json"));
}

// Beyond the system directories, an existing directory is the daemon's
// only if its name says kvmxdp: --config /etc/cron.d/k.json would get
// cron.d writable by the daemon.  One that does not exist yet is made for
// it.  The unit gets the directory as resolved, not as spelt.
TEST(Install, GivesTheDaemonOnlyDirectoriesOfItsOwn)
{
	TempRoot t;
	const std::string d = t.path();
	ASSERT_EQ(::mkdir((d + "/cron.d").c_str(), 0755), 0);
	ASSERT_EQ(::mkdir((d + "/kvmxdp").c_str(), 0700), 0);
	ASSERT_EQ(::symlink("cron.d", (d + "/kvmxdp-link").c_str()), 0);
	ASSERT_EQ(::symlink("kvmxdp", (d + "/link").c_str()), 0);
	auto install = [&](const std::string &config, const std::string &run_dir = "") {
		TempRoot r;
		InstallOptions o;
		o.root = r.path();
		o.prefix = "/usr";
		o.run_dir = run_dir;
		install_files(o, config);
		return slurp(r.path() + "/etc/systemd/system/kvmxdp@.service");
	};
	EXPECT_EQ(error_of([&] { install(d + "/cron.d/k.json"); }),
		  "install: --config '" + d + "/cron.d/k.json' gives the unit " + d +
			  "/cron.d, an existing directory that is not kvmxdp's (its name lacks "
			  "'kvmxdp'): the daemon would get another program's directory to write; "
			  "use a directory of its own (/etc/kvmxdp/kvmxdp.json)");
	EXPECT_NE(error_of([&] {
			  install(d + "/kvmxdp-link/k.json");
		  }).find("gives the unit " + d + "/cron.d, an existing directory"),
		  std::string::npos)
		<< "judged where the link leads";
	EXPECT_NE(error_of([&] {
			  install(d + "/kvmxdp/k.json", d + "/cron.d");
		  }).find("--run-dir '" + d + "/cron.d' gives the unit"),
		  std::string::npos);
	std::string unit = install(d + "/link/../kvmxdp/./k.json", d + "/new/run");
	EXPECT_NE(unit.find("ExecStart=/usr/sbin/kvmxdp --config " + d +
			    "/kvmxdp/k.json --run-dir " + d + "/new/run attach"),
		  std::string::npos)
		<< unit;
	unit = install(d + "/link/k.json");
	EXPECT_NE(unit.find("--config " + d + "/kvmxdp/k.json attach"), std::string::npos) << unit;
	EXPECT_EQ(unit.find(d + "/link"), std::string::npos) << "the link's name stays out";
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
