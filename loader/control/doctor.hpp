// SPDX-License-Identifier: GPL-2.0
// `doctor`'s facts (model/doctor.hpp) gathered in the caller's network
// namespace: `status` for the datapath, netlink for the devices, /proc/sys,
// iptables-save and `nft -j list ruleset`, and the guests' ARP requests on
// the bridge.
#pragma once

#include <string>
#include <vector>

#include "model/doctor.hpp"
#include "model/options.hpp"

namespace kvmxdp {

// The bridges doctor looks at: `bridge` if given, else every instance of
// the config (an error when there is none).
std::vector<std::string> doctor_bridges(const GlobalOptions &g, const std::string &bridge);

// arp_wait_ms: how long to listen for the guests' ARP requests (0: not).
DoctorFacts gather_doctor_facts(const GlobalOptions &g, const std::string &bridge, int arp_wait_ms);

} // namespace kvmxdp
