// SPDX-License-Identifier: GPL-2.0
// IPv6 values: addresses and networks as the user types them (attach
// --subnet6) and as rtnetlink reports an interface's addresses and on-link
// routes.  Plain data and pure functions, shared by the kernel layer (which
// fills them) and the model (which decides on them, model/ipv6.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace kvmxdp {

// Network byte order, as in struct in6_addr.
using Ipv6Addr = std::array<uint8_t, 16>;

struct Ipv6Net {
	Ipv6Addr addr{}; // network address (host bits clear)
	uint8_t prefix = 0;

	bool contains(const Ipv6Addr &a) const;
	// One holds the other (two networks either nest or are disjoint).
	bool overlaps(const Ipv6Net &o) const { return contains(o.addr) || o.contains(addr); }
	std::string str() const;
	bool operator==(const Ipv6Net &o) const { return addr == o.addr && prefix == o.prefix; }
	bool operator!=(const Ipv6Net &o) const { return !(*this == o); }
	// Any strict order (map keys).
	bool operator<(const Ipv6Net &o) const
	{
		return addr != o.addr ? addr < o.addr : prefix < o.prefix;
	}
};

// inet_pton's IPv6 text ("2001:db8::1"; no brackets, no zone).
Ipv6Addr parse_ipv6(const std::string &text);
std::string format_ipv6(const Ipv6Addr &a);
// The network an interface address belongs to (host bits cleared).
Ipv6Net network_of6(const Ipv6Addr &a, uint8_t prefix);
// Leading bits two addresses share (0..128): RFC 6724's CommonPrefixLen.
unsigned common_prefix_len(const Ipv6Addr &a, const Ipv6Addr &b);

// attach --subnet6: "PREFIX/n", 1 <= n <= 64 (guests autoconfigure from a
// /64; a longer prefix leaves SLAAC nothing), no host bits set, and a
// unicast network that the guests may use: not within ::/8 (unspecified,
// loopback, IPv4-mapped), link-local fe80::/10 or multicast ff00::/8.
// `what` names the value in the error ("--subnet6", "instances[0].subnet6").
Ipv6Net parse_subnet6(const std::string &text, const std::string &what);

// One IPv6 address of an interface as rtnetlink reports it.
struct Ipv6IfAddr {
	Ipv6Addr addr{};
	uint8_t prefix = 0;
	int scope = 0;	    // RT_SCOPE_*: 0 universe (global and ULA), 253 link, 254 host
	uint32_t flags = 0; // IFA_F_* (IFA_FLAGS: 32 bits)
	uint32_t preferred = 0xffffffff; // seconds left (IFA_CACHEINFO); ~0: forever
	uint32_t valid = 0xffffffff;
};

// One IPv6 route of an interface, main table.
struct Ipv6Route {
	Ipv6Net dst;
	uint8_t protocol = 0; // RTPROT_*: 2 kernel, 9 ra (router advertisement), 4 static...
	bool expires =
		false; // has a lifetime (RTA_CACHEINFO): the kernel's routes from an RA's prefix
	bool gateway = false; // via a router (not an on-link route)
	Ipv6Addr via{};	      // the gateway, if any
	int oif = 0;	      // the device
	// RA router preference (RFC 4191, RTA_PREF): 1 high, 0 medium, 3 low.
	uint8_t pref = 0;
	uint32_t metric = 0; // RTA_PRIORITY
	bool dead = false;   // RTNH_F_DEAD: its next hop is down (not a router now)
};

} // namespace kvmxdp
