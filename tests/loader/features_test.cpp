// SPDX-License-Identifier: GPL-2.0
// Kernel feature detection: the table evaluated against fake kernels (what
// attach says on an old kernel), and the real probes on this machine.
#include <gtest/gtest.h>

#include <linux/bpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <sstream>

#include "base/error.hpp"
#include "base/log.hpp"
#include "kernel/features.hpp"
#include "privileges.hpp"

namespace kvmxdp {
namespace {

ProbeFn kernel_of(KernelVersion v)
{
	return probe_by_version(v);
}

TEST(KernelRelease, Parses)
{
	struct {
		const char *release;
		int major, minor, patch;
	} cases[] = {
		{"6.1.0-56-amd64", 6, 1, 0}, {"6.18.1", 6, 18, 1}, {"5.15.0-91-generic", 5, 15, 0},
		{"6.8.0-rc3", 6, 8, 0},	     {"6.6", 6, 6, 0},	   {"4.19.282+", 4, 19, 282},
	};
	for (const auto &c : cases) {
		auto v = parse_kernel_release(c.release);
		ASSERT_TRUE(v) << c.release;
		EXPECT_EQ(v->major, c.major) << c.release;
		EXPECT_EQ(v->minor, c.minor) << c.release;
		EXPECT_EQ(v->patch, c.patch) << c.release;
	}
	for (const char *bad : {"", "linux", "6", "x.1", "-1.2"})
		EXPECT_FALSE(parse_kernel_release(bad)) << bad;
	EXPECT_TRUE((KernelVersion{5, 15, 0} < KernelVersion{6, 1, 0}));
	EXPECT_FALSE((KernelVersion{6, 6, 0} < KernelVersion{6, 6, 0}));
	EXPECT_EQ((KernelVersion{5, 12, 0}.str()), "5.12");
	EXPECT_EQ((KernelVersion{4, 19, 282}.str()), "4.19.282");
}

TEST(KernelFeatures, Debian12KernelHasEverythingButTcx)
{
	auto k = evaluate_kernel_features("6.1.0-56-amd64", kernel_of({6, 1, 0}));
	EXPECT_TRUE(k.missing().empty());
	EXPECT_TRUE(k.degraded().empty());
	EXPECT_FALSE(k.tcx);
	EXPECT_TRUE(k.xdp);
	EXPECT_EQ(k.tc_hook, "netlink-clsact");
	LogCapture warn;
	EXPECT_NO_THROW(require_kernel_features(k));
	EXPECT_EQ(warn.text(), "");
}

TEST(KernelFeatures, NewKernelHasTcx)
{
	auto k = evaluate_kernel_features("6.18.0", kernel_of({6, 18, 0}));
	EXPECT_TRUE(k.tcx);
	EXPECT_EQ(k.tc_hook, "netlink-clsact"); // used everywhere, even with tcx
	LogCapture warn;
	set_verbose(true);
	require_kernel_features(k);
	set_verbose(false);
	EXPECT_NE(warn.text().find("tcx available, not used"), std::string::npos) << warn.text();
}

TEST(KernelFeatures, MissingHelperIsOneErrorNamingItAndTheKernel)
{
	// 5.12 has bpf_check_mtu but not bpf_for_each_map_elem (5.13).
	auto k = evaluate_kernel_features("5.12.0-30-amd64", kernel_of({5, 12, 0}));
	ASSERT_EQ(k.missing().size(), 1u);
	EXPECT_EQ(k.missing()[0], "bpf_for_each_map_elem (Linux >= 5.13)");
	LogCapture warn;
	try {
		require_kernel_features(k);
		FAIL() << "no error for a kernel without bpf_for_each_map_elem";
	} catch (const Error &e) {
		std::string m = e.what();
		EXPECT_NE(m.find("5.12.0-30-amd64"), std::string::npos) << m;
		EXPECT_NE(m.find("bpf_for_each_map_elem (Linux >= 5.13)"), std::string::npos) << m;
		EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
	}
	// Nothing is printed before the refusal (attach creates nothing either:
	// the gate runs before any kernel object exists).
	EXPECT_EQ(warn.text(), "");
}

TEST(KernelFeatures, OldKernelListsEveryMissingFeature)
{
	auto k = evaluate_kernel_features("4.19.0", kernel_of({4, 19, 0}));
	auto miss = k.missing();
	ASSERT_EQ(miss.size(), 4u);
	EXPECT_EQ(miss[0], "bpf_ktime_get_boot_ns (Linux >= 5.8)");
	EXPECT_EQ(miss[1], "bpf_redirect_neigh (Linux >= 5.10)");
	EXPECT_EQ(miss[2], "bpf_check_mtu (Linux >= 5.12)");
	EXPECT_EQ(miss[3], "bpf_for_each_map_elem (Linux >= 5.13)");
}

TEST(KernelFeatures, OptionalFeaturesDegradeWithAMessage)
{
	// A kernel without XDP (CONFIG_XDP_SOCKETS aside, XDP cannot be
	// configured out, but a probe can fail) and older than 5.15.
	auto base = kernel_of({5, 13, 0});
	auto k = evaluate_kernel_features("5.13.0", [&](ProbeKind kind, int id) {
		if (kind == ProbeKind::ProgType && id == BPF_PROG_TYPE_XDP)
			return 0;
		return base(kind, id);
	});
	EXPECT_TRUE(k.missing().empty());
	EXPECT_FALSE(k.xdp);
	LogCapture warn;
	EXPECT_NO_THROW(require_kernel_features(k));
	EXPECT_NE(warn.text().find("kvmxdp: warning: kernel 5.13.0 is older than 5.15"),
		  std::string::npos)
		<< warn.text();
	EXPECT_NE(warn.text().find("kvmxdp: warning: XDP (Linux >= 4.8) is not available"),
		  std::string::npos)
		<< warn.text();
}

TEST(KernelFeatures, ProbeFailureIsNotAMissingFeature)
{
	// Without privileges the probes fail with EPERM: unknown, not missing.
	auto k = evaluate_kernel_features("6.1.0", [](ProbeKind, int) { return -EPERM; });
	EXPECT_TRUE(k.missing().empty());
	for (const auto &f : k.features)
		EXPECT_FALSE(f.available.has_value()) << f.name;
	auto j = kernel_features_json(k);
	EXPECT_TRUE(j["helpers"]["bpf_fib_lookup"].is_null());
	// one degradation line for all of them, naming the reason
	auto d = k.degraded();
	ASSERT_EQ(d.size(), 2u); // + "XDP not available" (not known either)
	EXPECT_NE(d[1].find("cannot probe BPF_PROG_TYPE_SCHED_CLS, "), std::string::npos) << d[1];
	EXPECT_NE(d[1].find("(Operation not permitted)"), std::string::npos) << d[1];
}

TEST(KernelFeatures, Json)
{
	auto k = evaluate_kernel_features("6.1.0-56-amd64", kernel_of({6, 1, 0}));
	auto j = kernel_features_json(k);
	EXPECT_EQ(j["release"], "6.1.0-56-amd64");
	EXPECT_EQ(j["version"], "6.1");
	EXPECT_EQ(j["tc_hook"], "netlink-clsact");
	EXPECT_EQ(j["tcx"], false);
	EXPECT_EQ(j["xdp"], true);
	for (const char *h :
	     {"bpf_fib_lookup", "bpf_redirect_neigh", "bpf_check_mtu", "bpf_ktime_get_boot_ns"})
		EXPECT_EQ(j["helpers"][h], true) << h;
	EXPECT_EQ(j["types"]["BPF_PROG_TYPE_SCHED_CLS"], true);
	EXPECT_TRUE(j["missing"].is_array() && j["missing"].empty());
	EXPECT_TRUE(j["degraded"].is_array() && j["degraded"].empty());
}

TEST(KernelFeatures, RealKernelHasWhatTheDatapathNeeds)
{
	const std::string missing = test::missing_capabilities({CAP_BPF, CAP_NET_ADMIN});
	if (!missing.empty())
		GTEST_SKIP() << "the probes load BPF programs: needs root (lacks " << missing << ")";
	const auto &k = probe_kernel_features();
	struct utsname u;
	ASSERT_EQ(uname(&u), 0);
	EXPECT_EQ(k.release, u.release);
	ASSERT_TRUE(k.version);
	EXPECT_TRUE(k.missing().empty());
	for (const auto &f : k.features)
		EXPECT_EQ(f.available, std::optional<bool>(true))
			<< f.name << ": " << f.probe_error;
	EXPECT_EQ(k.tcx, !(*k.version < kTcxKernel));
	// probed once per process
	EXPECT_EQ(&k, &probe_kernel_features());
}

} // namespace
} // namespace kvmxdp
