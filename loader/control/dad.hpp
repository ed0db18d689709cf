// SPDX-License-Identifier: GPL-2.0
// Duplicate address detection and announcements of mapped IPv6 addresses on
// the uplink (AF_PACKET sockets, as kernel/arp.hpp does ARP): the address is never
// the host's, so the host's own stack neither probes nor announces it.  The
// messages and what a received one means are model/dad.hpp's.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "base/fd.hpp"
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "model/dad.hpp"

namespace kvmxdp {

// A multicast group joined on a device as the host's own addresses join
// theirs: IPV6_JOIN_GROUP on an IPv6 socket, so that the kernel sends MLD
// reports for it (RFC 3810; and answers the queries) and an MLD-snooping
// switch or access point forwards the group's frames to this port, and the
// NIC's multicast filter passes them.  A device without IPv6 (disable_ipv6)
// gets the link-layer membership alone (PACKET_ADD_MEMBERSHIP).  Left when
// destroyed.
class GroupJoin {
public:
	GroupJoin(int ifindex, const Ipv6Addr &group);
	~GroupJoin();
	GroupJoin(const GroupJoin &) = delete;
	GroupJoin &operator=(const GroupJoin &) = delete;
	// false: the link-layer membership only (no MLD report goes out).
	bool mld() const { return mld_; }

private:
	Fd sock_;
	int ifindex_;
	Ipv6Addr group_;
	bool mld_ = false;
};

// Whether a device is up with carrier (IFF_UP and IFF_RUNNING: a cable, an
// associated WiFi station): DAD heard nothing on a link without it.
bool link_has_carrier(int ifindex);

// The DupAddrDetectTransmits of a device (model/dad.hpp dad_transmits_of
// of its net.ipv6.conf.IF.dad_transmits under sysctl_root).
int uplink_dad_transmits(int ifindex, const std::string &sysctl_root = "/proc/sys");

// One DAD (RFC 4862 5.4) in progress, driven by the caller's poll loop as
// ArpProber is: `transmits` Neighbour Solicitations from ::, RetransTimer
// apart, then RetransTimer for an answer.  The target's solicited-node
// group is joined first (5.4.2: GroupJoin, so that another node's probe
// reaches us through a NIC's filter and an MLD-snooping switch) and the
// socket sees only ND messages (a socket filter: the uplink's data
// traffic is not copied to it).  Without carrier, at the start or at the
// end, it finds nothing (no_carrier): never "free" on a dead link.
class DadProber {
public:
	// Opens the socket; the first probe goes out at the first step().
	DadProber(int ifindex, const Ipv6Addr &target, int transmits = kDadTransmits,
		  int retrans_ms = kDadRetransMs);
	int fd() const { return sock_.get(); }
	// Sends the probes that are due and reads what arrived, without
	// waiting; true once finished (a duplicate, the time is up, or no
	// carrier).
	bool step();
	bool done() const { return done_; }
	// The MAC of the node that has or claims the address (once done).
	const std::optional<MacAddr> &duplicate() const { return duplicate_; }
	// Finished without carrier: no verdict (run it again once it is back).
	bool no_carrier() const { return no_carrier_; }
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
	GroupJoin group_;
	DadNonce nonce_{};
	int sent_ = 0;
	Clock::time_point last_sent_{};
	bool done_ = false;
	bool no_carrier_ = false;
	std::optional<MacAddr> duplicate_;
};

// The blocking loop over DadProber (`map add`), with the device's
// dad_transmits: Free, or Duplicate with the other node's MAC in *other;
// none without carrier (the daemon runs it once the link is back).
std::optional<DadVerdict> dad_probe(int ifindex, const Ipv6Addr &target, MacAddr *other);

// The unsolicited Neighbour Advertisement for target at the device's own
// MAC (model/dad.hpp build_unsolicited_na), `count` of them 100 ms apart.
void nd_announce(int ifindex, const Ipv6Addr &target, int count = 1);

// One DAD probe for target out of a device (RFC 4862 5.4.2: an NS from ::
// to its solicited-node group, a random nonce, RFC 7527), the device's
// MAC as the frame's source; no waiting for an answer: relay's datapath
// sees the LAN's defence (relay6.h relay6_uplink_nd).
void send_dad_probe(int ifindex, const Ipv6Addr &target);

// A Router Solicitation (RFC 4861 6.3.7) out of a device to all routers.
// Whenever IPv6 forwarding comes on for any device, the kernel drops the
// router-advertised default routes of every interface that does not take
// RAs while forwarding (accept_ra != 2: a laptop's WiFi; rt6_purge_dflt_
// routers): setting the bridge's forwarding for NAT66 left the host, and
// the guests, without an IPv6 default route until the router's next
// periodic RA, minutes on many networks.  A router answers a solicitation
// at once (6.2.6), which puts the route back.
void solicit_routers(int ifindex);

// The solicited-node groups of the announced addresses, joined on the
// uplink (GroupJoin): a NIC that filters multicast (many WiFi drivers do)
// and an MLD-snooping switch or access point pass the LAN's Neighbour
// Solicitations for them to the datapath only while the group is joined
// and reported.  Held by the daemon: its memberships end with it.
class NdGroups {
public:
	// Joins the groups of addrs on ifindex, leaves the others (all of them
	// when the device changed).
	void set(int ifindex, const std::set<Ipv6Addr> &addrs);

private:
	int ifindex_ = 0;
	std::map<Ipv6Addr, std::unique_ptr<GroupJoin>> joined_;
};

} // namespace kvmxdp
