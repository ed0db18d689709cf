// SPDX-License-Identifier: GPL-2.0
// require_caps(): what a process holds decides, not its uid.  Each case runs
// in a child that becomes uid 65534 (nobody) keeping exactly the effective
// capabilities the case names, as systemd's AmbientCapabilities= or
// `setpriv --ambient-caps` would leave a non-root daemon.
#include <gtest/gtest.h>

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/caps.hpp"
#include "base/error.hpp"

using namespace kvmxdp;

namespace {

// What require_caps(verb, needed) says in a process of uid 65534 whose
// effective set is exactly `held`: "ok", the ConfigError's text, or a
// "setup: ..." line when the child could not become that process.
std::string as_nobody_with(const std::vector<int> &held, const std::string &verb,
			   std::initializer_list<int> needed)
{
	int p[2];
	if (::pipe(p) != 0)
		return "setup: pipe";
	pid_t pid = ::fork();
	if (pid < 0)
		return "setup: fork";
	if (pid == 0) {
		::close(p[0]);
		std::string out;
		__user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
		__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
		// Keep the permitted set across the uid change, then raise
		// only the held capabilities into the effective set.
		if (::prctl(PR_SET_KEEPCAPS, 1) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
		    ::setresuid(65534, 65534, 65534) != 0 ||
		    ::syscall(SYS_capget, &hdr, data) != 0) {
			out = std::string("setup: ") + std::strerror(errno);
		} else {
			data[0].effective = data[1].effective = 0;
			for (int c : held)
				data[c / 32].effective |= 1U << (c % 32);
			if (::syscall(SYS_capset, &hdr, data) != 0)
				out = std::string("setup: capset: ") + std::strerror(errno);
		}
		if (out.empty() && ::geteuid() == 0)
			out = "setup: still uid 0";
		if (out.empty()) {
			try {
				require_caps(verb, needed);
				out = "ok";
			} catch (const ConfigError &e) {
				out = e.what();
			} catch (const std::exception &e) {
				out = std::string("not a ConfigError: ") + e.what();
			}
		}
		ssize_t n = ::write(p[1], out.data(), out.size());
		::_exit(n == static_cast<ssize_t>(out.size()) ? 0 : 1);
	}
	::close(p[1]);
	std::string got;
	char buf[512];
	ssize_t n;
	while ((n = ::read(p[0], buf, sizeof(buf))) > 0)
		got.append(buf, static_cast<size_t>(n));
	::close(p[0]);
	int st = 0;
	::waitpid(pid, &st, 0);
	return got;
}

} // namespace

TEST(Caps, NamesEachCapability)
{
	EXPECT_EQ(capability_name(CAP_BPF), "CAP_BPF");
	EXPECT_EQ(capability_name(CAP_PERFMON), "CAP_PERFMON");
	EXPECT_EQ(capability_name(CAP_NET_ADMIN), "CAP_NET_ADMIN");
	EXPECT_EQ(capability_name(CAP_NET_RAW), "CAP_NET_RAW");
	EXPECT_EQ(capability_name(CAP_SYS_ADMIN), "CAP_SYS_ADMIN");
}

TEST(Caps, WithoutCapabilitiesOneLineNamesAllThatIsMissing)
{
	if (::geteuid() != 0) {
		// This process is already such a process.
		if (!missing_capabilities({CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN}).empty()) {
			try {
				require_caps("detach", {CAP_BPF, CAP_NET_ADMIN});
				FAIL() << "accepted without capabilities";
			} catch (const ConfigError &e) {
				EXPECT_STREQ(e.what(), "detach needs CAP_BPF and CAP_NET_ADMIN: "
						       "missing CAP_BPF and CAP_NET_ADMIN");
			}
			return;
		}
		GTEST_SKIP() << "not root, yet holds CAP_BPF or CAP_SYS_ADMIN and CAP_NET_ADMIN";
	}
	EXPECT_EQ(as_nobody_with({}, "attach", {CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON}),
		  "attach needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: missing CAP_BPF, "
		  "CAP_NET_ADMIN and CAP_PERFMON");
	EXPECT_EQ(as_nobody_with({CAP_BPF, CAP_NET_ADMIN}, "attach",
				 {CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON}),
		  "attach needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: missing CAP_PERFMON");
	// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, never for
	// CAP_NET_RAW or CAP_NET_ADMIN.
	EXPECT_EQ(as_nobody_with({CAP_SYS_ADMIN, CAP_NET_ADMIN}, "map add",
				 {CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW}),
		  "map add needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW: missing CAP_NET_RAW");
}

TEST(Caps, ANonRootProcessWithTheCapabilitiesIsAccepted)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root to make a uid-65534 process with capabilities";
	EXPECT_EQ(as_nobody_with({CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON}, "attach",
				 {CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON}),
		  "ok");
	EXPECT_EQ(as_nobody_with({CAP_SYS_ADMIN, CAP_NET_ADMIN}, "attach",
				 {CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON}),
		  "ok");
	EXPECT_EQ(as_nobody_with({CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW}, "map add",
				 {CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW}),
		  "ok");
}
