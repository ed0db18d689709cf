// SPDX-License-Identifier: GPL-2.0
// The router advertisements the uplink hears, for relay mode's choice of
// prefix (model/ra.hpp follow_relay_prefix): which router announced which
// SLAAC prefix.  A raw ICMPv6 socket on the uplink that passes only RAs
// (the kernel gives raw sockets a copy of every ICMPv6 message, whatever
// its accept_ra), hop limit 255 (RFC 4861 6.1.2), in the daemon's poll
// loop.  What a router announced is remembered for kRaHeardKeep after its
// last RA that announced it, and what its latest RA announced apart.
// Only the host's default routers are remembered (the only RAs
// follow_relay_prefix weighs), at most kRaMaxRouters of them with
// kRaMaxPrefixes each: any LAN host can send RAs from ever new link-local
// addresses, each with dozens of prefixes.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "model/ra.hpp"

namespace kvmxdp {

class RaWatch {
public:
	using Clock = std::chrono::steady_clock;
	// Longer than a router's MaxRtrAdvInterval (600 s by default, 1800
	// at most: RFC 4861 6.2.1) times a few lost RAs.
	static constexpr std::chrono::seconds kRaHeardKeep{2 * 3600};
	// A home network has one or two routers with a prefix or two each.
	static constexpr size_t kRaMaxRouters = 8;
	static constexpr size_t kRaMaxPrefixes = 8;

	// On the uplink (ifindex, name for SO_BINDTODEVICE); a new device
	// starts afresh.
	void open(int ifindex, const std::string &ifname);
	int fd() const { return sock_.get(); }
	int ifindex() const { return ifindex_; }
	// Reads every RA queued; remembers those of `routers` (the gateways
	// of the host's default routes), forgets the rest.
	void receive(Clock::time_point now, const std::vector<Ipv6Addr> &routers);
	// One RA heard (receive's, after the RFC 4861 checks).
	void record(const RaHeard &ra, Clock::time_point now, const std::vector<Ipv6Addr> &routers);
	// What each router announced, as one RaHeard per router: slaac over
	// kRaHeardKeep, latest its last RA's.
	std::vector<RaHeard> heard(Clock::time_point now) const;
	// Prefixes remembered over all routers (bounded: kRaMaxRouters x
	// kRaMaxPrefixes).
	size_t stored() const;

private:
	struct Router {
		std::map<Ipv6Net, Clock::time_point> slaac;
		std::vector<Ipv6Net> latest;
		Clock::time_point at{};
	};
	void prune(Clock::time_point now, const std::vector<Ipv6Addr> &routers);

	Fd sock_;
	int ifindex_ = 0;
	std::map<Ipv6Addr, Router> heard_;
};

} // namespace kvmxdp
