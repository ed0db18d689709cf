// SPDX-License-Identifier: GPL-2.0
// The one decision every kernel-facing unit test makes: may it skip?
// A test skips only when the process lacks the privilege the kernel asks
// for (not root, or root without the capability); a privileged process
// that cannot create a BPF map, load a program or enter a network
// namespace has found a failure, and the test must say so.  (The kernel
// answers EPERM both for "no privilege" and for other refusals, e.g. a
// memlock limit or a LSM, so the errno cannot make this decision.)
#pragma once

#include <initializer_list>
#include <string>

#include "base/caps.hpp"

namespace kvmxdp::test {

// Names of the capabilities the process lacks, "" when it has them all
// (kvmxdp's own check: CAP_SYS_ADMIN stands in for CAP_BPF).
inline std::string missing_capabilities(std::initializer_list<int> caps)
{
	std::string missing;
	for (int cap : ::kvmxdp::missing_capabilities(caps))
		missing += (missing.empty() ? "" : ", ") + capability_name(cap);
	return missing;
}

// Why a test that creates BPF maps must skip, "" when it must run (and
// fail if the kernel refuses).
inline std::string bpf_skip_reason()
{
	const std::string missing = missing_capabilities({CAP_BPF});
	return missing.empty() ? "" : "needs root (lacks " + missing + ")";
}

} // namespace kvmxdp::test

// In a GoogleTest SetUp or test body: skip without the privilege to make
// BPF maps (ctest shows the test as skipped); a privileged run goes on, and
// a map it then cannot create fails the test (ASSERT on the fd).
#define KVX_SKIP_WITHOUT_BPF_PRIVILEGE()                                                           \
	do {                                                                                       \
		const std::string kvx_skip_ = ::kvmxdp::test::bpf_skip_reason();                   \
		if (!kvx_skip_.empty())                                                            \
			GTEST_SKIP() << kvx_skip_;                                                 \
	} while (0)

// Skip without the privilege to mount a bpffs (test::TempBpffs).
#define KVX_SKIP_WITHOUT_MOUNT_PRIVILEGE()                                                         \
	do {                                                                                       \
		const std::string kvx_skip_ =                                                      \
			::kvmxdp::test::missing_capabilities({CAP_SYS_ADMIN});                     \
		if (!kvx_skip_.empty())                                                            \
			GTEST_SKIP() << "mounting a bpffs needs " << kvx_skip_;                    \
	} while (0)
