// SPDX-License-Identifier: GPL-2.0
// Duplicate address detection and announcements of mapped IPv6 addresses on
// the uplink (AF_PACKET sockets, as kernel/arp.hpp does ARP): the address is never
// the host's, so the host's own stack neither probes nor announces it.  The
// messages and what a received one means are model/dad.hpp's.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>

#include "base/fd.hpp"
#include "base/netaddr6.hpp"
#include "model/dad.hpp"

namespace kvmxdp {

// One DAD (RFC 4862 5.4) in progress, driven by the caller's poll loop as
// ArpProber is: kDadTransmits Neighbour Solicitations from ::, RetransTimer
// apart, then RetransTimer for an answer.  The socket joins the target's
// solicited-node group (5.4.2: a NIC that filters multicast would hide
// another node's probe) and sees only ND messages (a socket filter: the
// uplink's data traffic is not copied to it).
class DadProber {
public:
	// Opens the socket; the first probe goes out at the first step().
	DadProber(int ifindex, const Ipv6Addr &target, int transmits = kDadTransmits,
		  int retrans_ms = kDadRetransMs);
	int fd() const { return sock_.get(); }
	// Sends the probes that are due and reads what arrived, without
	// waiting; true once finished (a duplicate, or the time is up).
	bool step();
	bool done() const { return done_; }
	// The MAC of the node that has or claims the address (once done).
	const std::optional<DadMac> &duplicate() const { return duplicate_; }
	// Milliseconds until step() has something to do without a frame.
	int wait_ms() const;
	const Ipv6Addr &target() const { return target_; }

private:
	using Clock = std::chrono::steady_clock;
	Fd sock_;
	int ifindex_;
	Ipv6Addr target_;
	int transmits_;
	int retrans_ms_;
	DadNonce nonce_{};
	int sent_ = 0;
	Clock::time_point last_sent_{};
	bool done_ = false;
	std::optional<DadMac> duplicate_;
};

// The blocking loop over DadProber (`map add`): the other node's MAC, or
// nothing when the address is free.
std::optional<DadMac> dad_probe(int ifindex, const Ipv6Addr &target);

// The unsolicited Neighbour Advertisement for target at the device's own
// MAC (model/dad.hpp build_unsolicited_na), `count` of them 100 ms apart.
void nd_announce(int ifindex, const Ipv6Addr &target, int count = 1);

// The solicited-node groups of the announced addresses, joined on the
// uplink (PACKET_ADD_MEMBERSHIP on a socket that receives nothing): a NIC
// that filters multicast (many WiFi drivers do) passes the LAN's
// Neighbour Solicitations for them to the datapath only while the group is
// joined.  Held by the daemon: its memberships end with it.
class NdGroups {
public:
	// Joins the groups of addrs on ifindex, leaves the others (all of them
	// when the device changed).
	void set(int ifindex, const std::set<Ipv6Addr> &addrs);

private:
	Fd sock_;
	int ifindex_ = 0;
	std::set<DadMac> joined_;
};

} // namespace kvmxdp
