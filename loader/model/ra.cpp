// SPDX-License-Identifier: GPL-2.0
#include "model/ra.hpp"

#include <algorithm>

namespace kvmxdp {

namespace {

void put16(std::vector<uint8_t> &b, uint16_t v)
{
	b.push_back(static_cast<uint8_t>(v >> 8));
	b.push_back(static_cast<uint8_t>(v));
}

void put32(std::vector<uint8_t> &b, uint32_t v)
{
	put16(b, static_cast<uint16_t>(v >> 16));
	put16(b, static_cast<uint16_t>(v));
}

} // namespace

std::vector<uint8_t> build_ra(const RaParams &p)
{
	std::vector<uint8_t> b;
	b.push_back(134); // Router Advertisement
	b.push_back(0);	  // code
	put16(b, 0);	  // checksum: the kernel's
	b.push_back(p.cur_hop_limit);
	b.push_back(0); // M and O clear: addresses by SLAAC, no DHCPv6
	put16(b, p.router_lifetime);
	put32(b, 0); // reachable time: unspecified
	put32(b, 0); // retrans timer: unspecified
	if (p.mac != std::array<uint8_t, 6>{}) {
		b.push_back(1); // source link-layer address (RFC 4861 4.6.1)
		b.push_back(1);
		b.insert(b.end(), p.mac.begin(), p.mac.end());
	}
	if (p.mtu) {
		b.push_back(5); // MTU (4.6.4)
		b.push_back(1);
		put16(b, 0);
		put32(b, p.mtu);
	}
	for (const RaPrefix &x : p.prefixes) {
		b.push_back(3); // prefix information (4.6.2)
		b.push_back(4);
		b.push_back(x.net.prefix);
		b.push_back(0xc0); // L and A
		put32(b, x.valid);
		// RFC 4861 6.2.1: preferred never beyond valid.
		put32(b, std::min(x.preferred, x.valid));
		put32(b, 0);
		b.insert(b.end(), x.net.addr.begin(), x.net.addr.end());
	}
	return b;
}

uint32_t ra_next_interval_s(uint32_t sent, double r)
{
	const uint32_t iv =
		kRaMinIntervalS + static_cast<uint32_t>(r * (kRaMaxIntervalS - kRaMinIntervalS));
	return sent < kRaInitialCount ? std::min(iv, kRaInitialIntervalS) : iv;
}

} // namespace kvmxdp
