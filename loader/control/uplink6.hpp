// SPDX-License-Identifier: GPL-2.0
// The uplink's IPv6 as rtnetlink shows it now, decided by model/ipv6.hpp:
// the address NAT66 will translate to, the on-link prefixes, and whether
// relay mode can work there.  The daemon follows it (logging each change);
// `status` reads it afresh, so both always agree with the kernel.  Nothing
// of it reaches the datapath yet: guests' IPv6 is the host stack's.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "model/ipv6.hpp"

namespace kvmxdp {

class NlSocket;

struct Uplink6View {
	Uplink6Choice choice;
	std::vector<Ipv6Prefix> prefixes;
	RelayCheck relay;

	// One line for the daemon's log ("2001:db8::10 (stable), prefixes
	// 2001:db8::/64; relay possible: ..."); equal lines, equal state.
	std::string summary() const;
};

Uplink6View read_uplink6(NlSocket &nl, int ifindex,
			 const std::optional<Ipv6Addr> &keep = std::nullopt);

// status --json's "ipv6" object (docs/status-json.md).
nlohmann::json uplink6_json(const Uplink6View &v);

} // namespace kvmxdp
