// SPDX-License-Identifier: GPL-2.0
// The uplink's IPv6 as rtnetlink shows it now, decided by model/ipv6.hpp:
// the address NAT66 will translate to, the on-link prefixes, and whether
// relay mode can work there.  The daemon follows it (logging each change);
// `status` reads it afresh, so both always agree with the kernel.  Nothing
// of it reaches the datapath yet: guests' IPv6 is the host stack's.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/sysctl.hpp"
#include "model/config.hpp"
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

// The uplink's accept_ra while the bridge forwards IPv6: forwarding on
// purges the router-advertised default routes of every device whose
// accept_ra is not 2, so the uplink's 1 becomes 2 (with its own forwarding
// 0 it takes RAs as before), recorded in saved/dev (Instance
// saved_accept_ra, accept_ra_dev) for detach.  `to`: the uplink the
// instance of `bridge` has now with IPv6 on ("": IPv6 off).  A recorded
// device that is not `to` any more gets its value back (accept_ra_release:
// only if still 2, and by the last instance using it); then `to` goes
// 1 -> 2 unless a value is recorded.  written(key, old, value) after each
// write (attach records its rollback, the daemon logs it).
using AcceptRaWritten = std::function<void(const std::string &key, const std::string &old,
					   const std::string &value)>;
void hand_over_accept_ra(const Sysctl &sys, Config &cfg, const std::string &bridge,
			 std::optional<std::string> &saved, std::string &dev, const std::string &to,
			 const AcceptRaWritten &written);

} // namespace kvmxdp
