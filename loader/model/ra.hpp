// SPDX-License-Identifier: GPL-2.0
// Router advertisements kvmxdp sends on the bridge in relay mode (RFC 4861
// 4.2, 6.2): the host is the guests' router, and the prefix they
// autoconfigure from is the uplink's own /64.  The message as bytes (pure:
// unit-tested), and the schedule of RFC 4861 6.2.4: a few fast ones at the
// start, then one every MinRtrAdvInterval..MaxRtrAdvInterval (200..600 s),
// and an answer to a Router Solicitation at most every MIN_DELAY_BETWEEN_RAS.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

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
	std::array<uint8_t, 6> mac{};	// the source link-layer address option; zero: none
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

} // namespace kvmxdp
