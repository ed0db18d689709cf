// SPDX-License-Identifier: GPL-2.0
// The router advertisements the uplink hears, for relay mode's choice of
// prefix (model/ra.hpp follow_relay_prefix): which router announced which
// SLAAC prefix.  A raw ICMPv6 socket on the uplink that passes only RAs
// (the kernel gives raw sockets a copy of every ICMPv6 message, whatever
// its accept_ra), hop limit 255 (RFC 4861 6.1.2), in the daemon's poll
// loop.  What a router announced is remembered for kRaHeardKeep after its
// last RA that announced it.
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

	// On the uplink (ifindex, name for SO_BINDTODEVICE); a new device
	// starts afresh.
	void open(int ifindex, const std::string &ifname);
	int fd() const { return sock_.get(); }
	int ifindex() const { return ifindex_; }
	// Reads every RA queued.
	void receive(Clock::time_point now);
	// What each router announced, as one RaHeard per router.
	std::vector<RaHeard> heard(Clock::time_point now) const;

private:
	Fd sock_;
	int ifindex_ = 0;
	std::map<Ipv6Addr, std::map<Ipv6Net, Clock::time_point>> heard_;
};

} // namespace kvmxdp
