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
	if (p.mac != MacAddr{}) {
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

std::optional<RaHeard> parse_ra(const uint8_t *msg, size_t n, const Ipv6Addr &from)
{
	// Type, code, checksum, hop limit, flags, router lifetime, reachable
	// time, retrans timer: 16 bytes, then options.
	if (!msg || n < 16 || msg[0] != 134 || msg[1] != 0)
		return std::nullopt;
	RaHeard ra;
	ra.from = from;
	ra.router_lifetime = static_cast<uint16_t>(msg[6] << 8 | msg[7]);
	size_t off = 16;
	while (off < n) {
		if (off + 2 > n || msg[off + 1] == 0 || off + msg[off + 1] * 8u > n)
			return std::nullopt; // RFC 4861 6.1.2: length 0 is invalid
		const uint8_t *o = msg + off;
		const size_t len = o[1] * 8u;
		if (o[0] == 3 && len == 32) {
			const uint8_t plen = o[2];
			const bool autonomous = o[3] & 0x40;
			const uint32_t valid = static_cast<uint32_t>(o[4]) << 24 |
					       static_cast<uint32_t>(o[5]) << 16 |
					       static_cast<uint32_t>(o[6]) << 8 | o[7];
			if (autonomous && valid && plen == 64) {
				Ipv6Addr a{};
				std::copy(o + 16, o + 32, a.begin());
				ra.slaac.push_back(network_of6(a, plen));
			}
		}
		off += len;
	}
	return ra;
}

RelayFollow follow_relay_prefix(const std::optional<Ipv6Net> &current,
				const std::optional<Ipv6Net> &kernel_choice,
				const std::vector<Ipv6Net> &kernel_slaac,
				const std::vector<Ipv6Addr> &routers,
				const std::vector<RaHeard> &heard, bool current_deprecated)
{
	RelayFollow f;
	f.prefix = kernel_choice;
	if (!current || !kernel_choice || *current == *kernel_choice)
		return f;
	// The current prefix is gone from the uplink (another network, its
	// lifetime over): the kernel's choice is all there is.
	if (std::find(kernel_slaac.begin(), kernel_slaac.end(), *current) == kernel_slaac.end())
		return f;
	auto has = [](const std::vector<Ipv6Net> &v, const Ipv6Net &n) {
		return std::find(v.begin(), v.end(), n) != v.end();
	};
	bool router_heard = false, router_keeps = false, router_moved = false;
	for (const RaHeard &ra : heard) {
		if (std::find(routers.begin(), routers.end(), ra.from) == routers.end())
			continue;
		// The host's router renumbers: it announces both.
		if (has(ra.slaac, *current) && has(ra.slaac, *kernel_choice))
			return f;
		router_moved = router_moved ||
			       (has(ra.latest, *kernel_choice) && !has(ra.latest, *current));
		router_heard = router_heard || !ra.latest.empty();
		router_keeps = router_keeps || has(ra.latest, *current);
	}
	// Or a router's latest RA announces the new prefix alone (a flash
	// renumbering, or a restart that missed the overlap), and no default
	// router's latest RA still announces the current one: a second router
	// on the LAN with a prefix of its own moves nothing while the first
	// keeps announcing the current prefix.
	if (router_moved && !router_keeps)
		return f;
	// The kernel deprecated the current prefix and no default router's
	// latest RA announces it any more.  A forged RA deprecates a prefix as
	// well (the kernel takes a preferred lifetime of 0 from anyone: RFC
	// 4862 5.5.3 e limits only the valid lifetime), so not while a
	// default router still announces it, nor before one was heard.
	if (current_deprecated && router_heard && !router_keeps)
		return f;
	f.prefix = current;
	f.refused = kernel_choice;
	f.solicit = true;
	return f;
}

uint32_t ra_next_interval_s(uint32_t sent, double r)
{
	const uint32_t iv =
		kRaMinIntervalS + static_cast<uint32_t>(r * (kRaMaxIntervalS - kRaMinIntervalS));
	return sent < kRaInitialCount ? std::min(iv, kRaInitialIntervalS) : iv;
}

} // namespace kvmxdp
