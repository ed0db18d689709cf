// SPDX-License-Identifier: GPL-2.0
// The one privilege check.  kvmxdp asks for the capabilities the kernel
// checks, not for euid 0: the systemd unit runs it as root with a bounding
// set of CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON only, and a process of
// another user that holds them (ambient capabilities) is just as able.
#pragma once

#include <linux/capability.h>

#include <initializer_list>
#include <string>
#include <vector>

// linux/capability.h of kernels before 5.8 lacks them.
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

namespace kvmxdp {

// Whether the capability (CAP_*) is in this process's effective set.
bool has_capability(int cap);

// "CAP_NET_ADMIN".
std::string capability_name(int cap);

// Those of caps the process lacks, as the kernel counts them: CAP_SYS_ADMIN
// stands in for CAP_BPF and CAP_PERFMON (bpf_capable(), perfmon_capable();
// kernels before 5.8 know only CAP_SYS_ADMIN).
std::vector<int> missing_capabilities(std::initializer_list<int> caps);

// Commands that change kernel objects: a process without the capabilities
// gets one line naming the verb and what it lacks,
// "attach needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: missing CAP_PERFMON"
// (a ConfigError: no retry can help).
void require_caps(const std::string &verb, std::initializer_list<int> caps);

} // namespace kvmxdp
