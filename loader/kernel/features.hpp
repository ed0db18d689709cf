// SPDX-License-Identifier: GPL-2.0
// Runtime kernel feature detection: what the datapath needs (program and map
// types, helpers) is probed on the running kernel before anything is
// created, so an old kernel gets one line naming the missing feature and the
// kernel version that has it instead of a verifier log (docs/pitfalls.md,
// kernel-portability).  What
// is only nice to have (tcx, XDP) is reported, never assumed: kvmxdp attaches
// with netlink clsact on every kernel.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kvmxdp {

struct KernelVersion {
	int major = 0;
	int minor = 0;
	int patch = 0;
	bool operator<(const KernelVersion &o) const
	{
		if (major != o.major)
			return major < o.major;
		if (minor != o.minor)
			return minor < o.minor;
		return patch < o.patch;
	}
	std::string str() const;
};

// "6.1.0-56-amd64" -> 6.1.0; nullopt if it does not start with N.N.
std::optional<KernelVersion> parse_kernel_release(const std::string &release);

// The oldest kernel the README supports (tested: 6.1, 6.18).
constexpr KernelVersion kMinSupportedKernel{5, 15, 0};
// tcx (BPF_TCX_INGRESS links) appeared in Linux 6.6.
constexpr KernelVersion kTcxKernel{6, 6, 0};

enum class ProbeKind { ProgType, MapType, Helper };

struct Feature {
	std::string name; // "bpf_fib_lookup", "BPF_PROG_TYPE_SCHED_CLS", ...
	ProbeKind kind;
	int id;			       // enum bpf_prog_type / bpf_map_type / bpf_func_id
	KernelVersion since;	       // first mainline kernel that has it
	bool required;		       // attach refuses to run without it
	std::optional<bool> available; // nullopt: the probe itself failed (no privileges?)
	std::string probe_error;       // why, when available is nullopt
};

struct KernelFeatures {
	std::string release; // uname -r
	std::optional<KernelVersion> version;
	std::vector<Feature> features;
	bool tcx = false; // by version (kvmxdp does not use it)
	bool xdp = false; // BPF_PROG_TYPE_XDP loads (native support is per driver)
	std::string tc_hook = "netlink-clsact"; // what kvmxdp attaches with

	// Required features the kernel definitely lacks ("name (Linux >= X.Y)").
	std::vector<std::string> missing() const;
	// One-line notes on what is absent but optional.
	std::vector<std::string> degraded() const;
};

// Returns 1 (supported), 0 (not), < 0 (-errno: the probe could not run).
using ProbeFn = std::function<int(ProbeKind, int id)>;

// The feature table the datapath (bpf/kvmxdp_tc.bpf.c) needs, unprobed.
std::vector<Feature> datapath_features();

// Evaluates the table with `probe` on a kernel named `release`.
KernelFeatures evaluate_kernel_features(const std::string &release, const ProbeFn &probe);

// A kernel of version v as the feature table sees it: a feature is there
// iff v is not older than its "since".
ProbeFn probe_by_version(KernelVersion v);

// The running kernel, through libbpf's probes (loads tiny programs and
// maps; needs CAP_BPF).  Probed once per process.  Test hook (like
// KVMXDP_FAILPOINT): KVMXDP_FAKE_KERNEL=<release> answers every probe with
// probe_by_version(<release>) instead, so tests can show what attach does
// on a kernel this machine does not run.
const KernelFeatures &probe_kernel_features();

// attach's gate: throws Error naming every missing required feature and the
// kernel that has it; logs a warning per degradation (and, with -v, what
// was detected).
void require_kernel_features(const KernelFeatures &k);

// status --json's "kernel" object.
nlohmann::json kernel_features_json(const KernelFeatures &k);

} // namespace kvmxdp
