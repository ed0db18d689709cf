// SPDX-License-Identifier: GPL-2.0
// The daemon's router advertisements on the bridge in relay mode
// (model/ra.hpp): the guests take their addresses in the uplink's /64 by
// SLAAC from them.  A raw ICMPv6 socket bound to the bridge's link-local
// address, hop limit 255 (RFC 4861 6.1.2: receivers drop anything else),
// in the daemon's poll loop: unsolicited RAs on RFC 4861 6.2.4's schedule,
// an answer to Router Solicitations at most every 3 s, the old prefix
// announced deprecated after a change.  Another sender's RA from the
// bridge's own address (libvirt's dnsmasq on a network with an IPv6
// address) makes it stay silent rather than fight over the guests' default
// route, and say so; a guest's RA is logged, not obeyed.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/netaddr.hpp"
#include "model/ra.hpp"

namespace kvmxdp {

class RaSender {
public:
	using Clock = std::chrono::steady_clock;

	explicit RaSender(std::string bridge)
		: bridge_(std::move(bridge))
	{
	}

	// What to announce now (the daemon's refresh): the bridge (ifindex,
	// link-local: the RAs' source and the guests' router, MAC), the
	// prefix with its lifetimes left (none: the network allows no relay
	// now: router lifetime 0) and the uplink's MTU.  A bridge without a
	// link-local address yet sends nothing.  A new prefix is announced at
	// once, the old one deprecated.
	void update(int ifindex, const std::optional<Ipv6Addr> &link_local, const MacAddr &mac,
		    const std::optional<RaPrefix> &prefix, uint32_t mtu, Clock::time_point now);
	// The socket to poll (-1: none), and how long until service() is due.
	int fd() const { return sock_.get(); }
	int64_t wait_ms(Clock::time_point now) const;
	// Reads what came in (readable), then sends what is due.
	void service(bool readable, Clock::time_point now);
	// Another router seen on the bridge recently ("" if none): its address.
	const std::string &foreign() const { return foreign_; }
	uint64_t sent() const { return sent_; }

private:
	void open(int ifindex, const Ipv6Addr &ll);
	void receive(Clock::time_point now);
	void send(Clock::time_point now);

	std::string bridge_;
	Fd sock_;
	int ifindex_ = 0;
	Ipv6Addr ll_{};
	MacAddr mac_{};
	uint32_t mtu_ = 0;
	std::optional<RaPrefix> prefix_;
	struct Old {
		Ipv6Net net;
		Clock::time_point until;
	};
	std::vector<Old> old_;
	uint64_t sent_ = 0;
	uint32_t unsolicited_ = 0;
	Clock::time_point next_{};
	Clock::time_point last_{};
	bool answer_ = false; // a solicitation waits for its answer
	std::string foreign_;
	Clock::time_point foreign_seen_{};
	bool rogue_logged_ = false; // a guest's RA was logged (once)
};

} // namespace kvmxdp
