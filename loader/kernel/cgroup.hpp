// SPDX-License-Identifier: GPL-2.0
// The root of the cgroup v2 hierarchy, where the host access hooks attach.
#pragma once

#include <string>

#include "base/fd.hpp"

namespace kvmxdp {

// An fd of the cgroup v2 root; an invalid Fd and why when there is none.
// `ip netns exec` remounts /sys, which hides /sys/fs/cgroup: then a cgroup2
// is mounted on a private temporary directory under run_dir just long
// enough to open it (the fd keeps the cgroup).
Fd open_cgroup2_root(const std::string &run_dir, std::string &why);

} // namespace kvmxdp
