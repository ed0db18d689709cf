// SPDX-License-Identifier: GPL-2.0
// The facts model/mode.hpp decides a device's hook from, gathered from the
// kernel: /sys/class/net (namespace-correct under `ip netns exec`), the
// link kind (rtnetlink) and the XDP features (netdev netlink).
#pragma once

#include <string>

#include "model/mode.hpp"

namespace kvmxdp {

// What /sys/class/net/IF (under sysfs_root) shows of ifname.
DeviceFacts device_facts(const std::string &ifname, const std::string &sysfs_root = "/sys");
// Those, with the link kind (IFLA_INFO_KIND) as rtnetlink reported it and
// the XDP features of ifindex.
DeviceFacts probe_device(int ifindex, const std::string &ifname, const std::string &kind);

} // namespace kvmxdp
