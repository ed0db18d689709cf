// SPDX-License-Identifier: GPL-2.0
#include "kernel/features.hpp"

#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/error.hpp"
#include "base/log.hpp"

namespace kvmxdp {

std::string KernelVersion::str() const
{
	return std::to_string(major) + "." + std::to_string(minor) +
	       (patch ? "." + std::to_string(patch) : std::string());
}

std::optional<KernelVersion> parse_kernel_release(const std::string &release)
{
	KernelVersion v;
	int n = 0;
	// "6.1.0-56-amd64", "6.18.1", "5.15.0-91-generic", "6.8.0-rc3"
	if (std::sscanf(release.c_str(), "%d.%d%n", &v.major, &v.minor, &n) != 2 || v.major <= 0 ||
	    v.minor < 0)
		return std::nullopt;
	if (release[static_cast<std::size_t>(n)] == '.')
		std::sscanf(release.c_str() + n + 1, "%d", &v.patch);
	if (v.patch < 0)
		v.patch = 0;
	return v;
}

std::vector<Feature> datapath_features()
{
	// Every program type, map type and helper bpf/kvmxdp_tc.bpf.c uses: a
	// kernel without one of them cannot load the datapath at all.  "since"
	// is the mainline release that added it (Documentation/bpf, git tags).
	auto prog = [](const char *n, int id, KernelVersion v, bool req) {
		return Feature{n, ProbeKind::ProgType, id, v, req, std::nullopt, {}};
	};
	auto map = [](const char *n, int id, KernelVersion v) {
		return Feature{n, ProbeKind::MapType, id, v, true, std::nullopt, {}};
	};
	auto helper = [](const char *n, int id, KernelVersion v) {
		return Feature{n, ProbeKind::Helper, id, v, true, std::nullopt, {}};
	};
	return {
		prog("BPF_PROG_TYPE_SCHED_CLS", BPF_PROG_TYPE_SCHED_CLS, {4, 1, 0}, true),
		map("BPF_MAP_TYPE_HASH", BPF_MAP_TYPE_HASH, {3, 19, 0}),
		map("BPF_MAP_TYPE_ARRAY", BPF_MAP_TYPE_ARRAY, {3, 19, 0}),
		map("BPF_MAP_TYPE_PERCPU_ARRAY", BPF_MAP_TYPE_PERCPU_ARRAY, {4, 6, 0}),
		map("BPF_MAP_TYPE_LRU_HASH", BPF_MAP_TYPE_LRU_HASH, {4, 10, 0}),
		helper("bpf_skb_pull_data", BPF_FUNC_skb_pull_data, {4, 9, 0}),
		helper("bpf_l3_csum_replace", BPF_FUNC_l3_csum_replace, {4, 1, 0}),
		helper("bpf_l4_csum_replace", BPF_FUNC_l4_csum_replace, {4, 1, 0}),
		helper("bpf_redirect", BPF_FUNC_redirect, {4, 4, 0}),
		helper("bpf_get_prandom_u32", BPF_FUNC_get_prandom_u32, {4, 1, 0}),
		helper("bpf_fib_lookup", BPF_FUNC_fib_lookup, {4, 18, 0}),
		helper("bpf_ktime_get_boot_ns", BPF_FUNC_ktime_get_boot_ns, {5, 8, 0}),
		helper("bpf_redirect_neigh", BPF_FUNC_redirect_neigh, {5, 10, 0}),
		helper("bpf_check_mtu", BPF_FUNC_check_mtu, {5, 12, 0}),
		// Reclaim of expired flows when the table is full (lib/ct.h).
		helper("bpf_for_each_map_elem", BPF_FUNC_for_each_map_elem, {5, 13, 0}),
		// Not used by the datapath today: a fact for status and --mode.
		prog("BPF_PROG_TYPE_XDP", BPF_PROG_TYPE_XDP, {4, 8, 0}, false),
	};
}

KernelFeatures evaluate_kernel_features(const std::string &release, const ProbeFn &probe)
{
	KernelFeatures k;
	k.release = release;
	k.version = parse_kernel_release(release);
	k.features = datapath_features();
	for (auto &f : k.features) {
		int r = probe(f.kind, f.id);
		if (r > 0)
			f.available = true;
		else if (r == 0)
			f.available = false;
		else
			f.probe_error = std::strerror(-r);
		if (f.kind == ProbeKind::ProgType && f.id == BPF_PROG_TYPE_XDP)
			k.xdp = f.available.value_or(false);
	}
	// tcx is a link type, not something a tiny program load can show
	// (before 6.6 the SCHED_CLS attach type is ignored): the version says.
	k.tcx = k.version && !(*k.version < kTcxKernel);
	return k;
}

std::vector<std::string> KernelFeatures::missing() const
{
	std::vector<std::string> out;
	for (const auto &f : features)
		if (f.required && f.available == false)
			out.push_back(f.name + " (Linux >= " + f.since.str() + ")");
	return out;
}

std::vector<std::string> KernelFeatures::degraded() const
{
	std::vector<std::string> out;
	if (version && *version < kMinSupportedKernel)
		out.push_back("kernel " + release + " is older than " + kMinSupportedKernel.str() +
			      ", the oldest kvmxdp supports: it loads, but is untested there");
	if (!xdp)
		out.push_back("XDP (Linux >= 4.8) is not available: TC hooks only");
	// Unprivileged probes all fail alike (EPERM): one line, not fifteen.
	std::string unprobed, why;
	for (const auto &f : features)
		if (!f.available && !f.probe_error.empty()) {
			unprobed += (unprobed.empty() ? "" : ", ") + f.name;
			why = f.probe_error;
		}
	if (!unprobed.empty())
		out.push_back("cannot probe " + unprobed + " (" + why +
			      "): assuming the kernel has them");
	return out;
}

namespace {

int libbpf_probe(ProbeKind kind, int id)
{
	switch (kind) {
	case ProbeKind::ProgType:
		return libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(id), nullptr);
	case ProbeKind::MapType:
		return libbpf_probe_bpf_map_type(static_cast<bpf_map_type>(id), nullptr);
	case ProbeKind::Helper:
		return libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS,
					       static_cast<bpf_func_id>(id), nullptr);
	}
	return -EINVAL;
}

std::string uname_release()
{
	struct utsname u;
	if (::uname(&u) != 0)
		return "unknown";
	return u.release;
}

} // namespace

ProbeFn probe_by_version(KernelVersion v)
{
	auto table = datapath_features();
	return [v, table](ProbeKind kind, int id) {
		for (const auto &f : table)
			if (f.kind == kind && f.id == id)
				return v < f.since ? 0 : 1;
		return -EINVAL;
	};
}

const KernelFeatures &probe_kernel_features()
{
	static const KernelFeatures k = [] {
		const char *fake = std::getenv("KVMXDP_FAKE_KERNEL");
		if (fake && *fake)
			if (auto v = parse_kernel_release(fake))
				return evaluate_kernel_features(fake, probe_by_version(*v));
		return evaluate_kernel_features(uname_release(), libbpf_probe);
	}();
	return k;
}

void require_kernel_features(const KernelFeatures &k)
{
	auto miss = k.missing();
	if (!miss.empty()) {
		std::string list;
		for (const auto &m : miss)
			list += (list.empty() ? "" : ", ") + m;
		throw Error("kernel " + k.release + " lacks what the datapath needs: " + list +
			    "; kvmxdp needs Linux >= " + kMinSupportedKernel.str());
	}
	for (const auto &d : k.degraded())
		log_warn(d);
	log_verbose("kernel " + k.release + ": hooks via " + k.tc_hook + " (tcx " +
		    (k.tcx ? "available, not used" : "not available: Linux >= 6.6") + "), XDP " +
		    (k.xdp ? "available" : "not available"));
}

nlohmann::json kernel_features_json(const KernelFeatures &k)
{
	nlohmann::json helpers = nlohmann::json::object();
	nlohmann::json types = nlohmann::json::object();
	for (const auto &f : k.features) {
		nlohmann::json v = f.available ? nlohmann::json(*f.available) :
						 nlohmann::json(nullptr);
		(f.kind == ProbeKind::Helper ? helpers : types)[f.name] = v;
	}
	return {{"release", k.release},
		{"version", k.version ? nlohmann::json(k.version->str()) : nlohmann::json(nullptr)},
		{"tc_hook", k.tc_hook},
		{"tcx", k.tcx},
		{"xdp", k.xdp},
		{"helpers", helpers},
		{"types", types},
		{"missing", k.missing()},
		{"degraded", k.degraded()}};
}

} // namespace kvmxdp
