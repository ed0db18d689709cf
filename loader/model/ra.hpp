// SPDX-License-Identifier: GPL-2.0
// Router advertisements kvmxdp sends on the bridge in relay mode (RFC 4861
// 4.2, 6.2): the host is the guests' router, and the prefix they
// autoconfigure from is the uplink's own /64.  The message as bytes (pure:
// unit-tested), and the schedule of RFC 4861 6.2.4: a few fast ones at the
// start, then one every MinRtrAdvInterval..MaxRtrAdvInterval (200..600 s),
// and an answer to a Router Solicitation at most every MIN_DELAY_BETWEEN_RAS.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"

namespace kvmxdp {

struct RaPrefix {
	Ipv6Net net;
	uint32_t valid = 0;	// seconds; 0xffffffff: infinity
	uint32_t preferred = 0; // 0: deprecated (a prefix being renumbered away)
};

struct RaParams {
	uint8_t cur_hop_limit = 64;
	uint16_t router_lifetime =
		1800;	  // s; 0: not a default router (RFC 4861 6.2.1: 3 x MaxRtrAdvInterval)
	uint32_t mtu = 0; // the MTU option; 0: none
	MacAddr mac{};	  // the source link-layer address option; zero: none
	std::vector<RaPrefix> prefixes; // each with L (on-link) and A (autonomous)
};

// The ICMPv6 message, type 134, checksum 0: a raw ICMPv6 socket's kernel
// fills it (RFC 3542 3.1).
std::vector<uint8_t> build_ra(const RaParams &p);

constexpr uint32_t kRaMinIntervalS = 200;    // RFC 4861 6.2.1 MinRtrAdvInterval (0.33 x Max)
constexpr uint32_t kRaMaxIntervalS = 600;    // MaxRtrAdvInterval's default
constexpr uint32_t kRaInitialIntervalS = 16; // MAX_INITIAL_RTR_ADVERT_INTERVAL
constexpr uint32_t kRaInitialCount = 3;	     // MAX_INITIAL_RTR_ADVERTISEMENTS
constexpr uint32_t kRaMinDelayMs = 3000;     // MIN_DELAY_BETWEEN_RAS
// An old prefix is announced deprecated for this long at most (RFC 4862
// 5.5.3 e: a host keeps at least 2 h of a valid lifetime it had).
constexpr uint32_t kRaDeprecatedValidS = 7200;

// Seconds to the next unsolicited RA after `sent` of them, given a random
// value r in [0, 1) (RFC 4861 6.2.4: uniformly between Min and Max, the
// first kRaInitialCount at most kRaInitialIntervalS apart).
uint32_t ra_next_interval_s(uint32_t sent, double r);

// A router advertisement the uplink heard (RFC 4861 4.2): its source (a
// router's link-local address) and the /64 prefixes it announces for
// SLAAC (prefix information with A set, a valid lifetime; RFC 4862 5.5.3).
struct RaHeard {
	Ipv6Addr from{};
	uint16_t router_lifetime = 0;
	std::vector<Ipv6Net> slaac;
	// RaWatch::heard's: what the router's latest RA announced (slaac
	// being all it announced within RaWatch::kRaHeardKeep).
	std::vector<Ipv6Net> latest;
};

// The ICMPv6 message of n bytes (type 134 first) from `from`; none when it
// is no valid RA (too short, an option of length 0 or past the end).
std::optional<RaHeard> parse_ra(const uint8_t *msg, size_t n, const Ipv6Addr &from);

// Which prefix relay follows.  The kernel accepts a prefix from any RA on
// the link (a LAN host can send one: RFC 6104 rogue RAs), and relay_check
// picks the prefix of the uplink's freshest SLAAC address: a forged RA
// would move the guests onto a prefix nobody routes, or that the forger
// routes.  So relay keeps its current prefix while the kernel still has it
// on-link, and moves to another only when a router of the host's own
// default route (`routers`: its gateways) that announced the current
// prefix announced the new one too (`heard`: what the uplink heard from
// each router, both remembered), or when the current one is gone (then
// the kernel's choice: what the host itself uses).  A forger that is no
// default router, or one that never announced the current prefix, moves
// nothing.  A router that renumbers without announcing the old prefix any
// more (RFC 8978: a CPE that came back with a new ISP prefix), or did so
// before the daemon started listening, is followed too: when its latest RA
// announces the new prefix and not the current one while no default
// router's latest RA still announces the current one, or when the kernel has
// deprecated the current one (current_deprecated: none of the uplink's
// addresses in it is preferred any more) and the default routers heard no
// longer announce it (a forged RA can deprecate it too).
struct RelayFollow {
	std::optional<Ipv6Net> prefix;
	// Kept against the kernel's choice: what was refused and why (for
	// the log); and whether to solicit the routers (their answer tells a
	// real renumbering from a forged one).
	std::optional<Ipv6Net> refused;
	bool solicit = false;
};
RelayFollow follow_relay_prefix(const std::optional<Ipv6Net> &current,
				const std::optional<Ipv6Net> &kernel_choice,
				const std::vector<Ipv6Net> &kernel_slaac,
				const std::vector<Ipv6Addr> &routers,
				const std::vector<RaHeard> &heard, bool current_deprecated = false);

} // namespace kvmxdp
