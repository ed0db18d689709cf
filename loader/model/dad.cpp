// SPDX-License-Identifier: GPL-2.0
#include "model/dad.hpp"

#include <algorithm>
#include <cstring>

#include "kvmxdp/abi.h"

namespace kvmxdp {

namespace {

constexpr uint8_t kIcmp6 = 58;
constexpr uint8_t kNeighSol = 135;
constexpr uint8_t kNeighAdv = 136;
constexpr uint8_t kOptTlla = 2;	  // RFC 4861 4.6.1
constexpr uint8_t kOptNonce = 14; // RFC 3971 5.3.2
constexpr uint32_t kNaOverride = 0x20000000u;
constexpr size_t kIp6Hdr = 40;
constexpr size_t kNdMin = 24; // type, code, checksum, flags, target

void put16(std::vector<uint8_t> &b, size_t at, uint16_t v)
{
	b[at] = static_cast<uint8_t>(v >> 8);
	b[at + 1] = static_cast<uint8_t>(v);
}

// The Internet checksum's sum over the ICMPv6 pseudo-header (RFC 8200 8.1)
// and the message, unfolded.
uint32_t icmp6_sum(const uint8_t *ip6, const uint8_t *msg, size_t len)
{
	uint32_t s = 0;
	for (size_t i = 8; i < kIp6Hdr; i += 2) // source and destination
		s += static_cast<uint32_t>(ip6[i] << 8 | ip6[i + 1]);
	s += static_cast<uint32_t>(len >> 16) + static_cast<uint32_t>(len & 0xffff) + kIcmp6;
	for (size_t i = 0; i + 1 < len; i += 2)
		s += static_cast<uint32_t>(msg[i] << 8 | msg[i + 1]);
	if (len & 1)
		s += static_cast<uint32_t>(msg[len - 1] << 8);
	return s;
}

uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return static_cast<uint16_t>(s);
}

// An ND message of type for target (24 bytes) plus one 8-byte option,
// from src to dst with hop limit 255, its checksum computed.
std::vector<uint8_t> nd_packet(const Ipv6Addr &src, const Ipv6Addr &dst, uint8_t type,
			       uint32_t flags, const Ipv6Addr &target, uint8_t opt,
			       const MacAddr &opt_data)
{
	const size_t len = kNdMin + 8;
	std::vector<uint8_t> b(kIp6Hdr + len, 0);
	b[0] = 0x60;
	put16(b, 4, static_cast<uint16_t>(len));
	b[6] = kIcmp6;
	b[7] = 255;
	std::copy(src.begin(), src.end(), b.begin() + 8);
	std::copy(dst.begin(), dst.end(), b.begin() + 24);
	uint8_t *m = b.data() + kIp6Hdr;
	m[0] = type;
	m[4] = static_cast<uint8_t>(flags >> 24);
	m[5] = static_cast<uint8_t>(flags >> 16);
	m[6] = static_cast<uint8_t>(flags >> 8);
	m[7] = static_cast<uint8_t>(flags);
	std::copy(target.begin(), target.end(), m + 8);
	m[24] = opt;
	m[25] = 1;
	std::copy(opt_data.begin(), opt_data.end(), m + 26);
	put16(b, kIp6Hdr + 2, static_cast<uint16_t>(~fold(icmp6_sum(b.data(), m, len))));
	return b;
}

} // namespace

int dad_retry_ms(int conflicts)
{
	const int n = std::clamp(conflicts - 1, 0, 4);
	return std::min(kDadRetryMaxMs, kDadRetryMinMs << n);
}

Ipv6Addr solicited_node(const Ipv6Addr &a)
{
	Ipv6Addr g{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, a[13], a[14], a[15]};
	return g;
}

MacAddr ipv6_multicast_mac(const Ipv6Addr &group)
{
	return {0x33, 0x33, group[12], group[13], group[14], group[15]};
}

std::vector<uint8_t> build_dad_ns(const Ipv6Addr &target, const DadNonce &nonce)
{
	return nd_packet(Ipv6Addr{}, solicited_node(target), kNeighSol, 0, target, kOptNonce,
			 nonce);
}

std::vector<uint8_t> build_unsolicited_na(const Ipv6Addr &target, const MacAddr &mac)
{
	const Ipv6Addr all_nodes{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
	return nd_packet(target, all_nodes, kNeighAdv, kNaOverride, target, kOptTlla, mac);
}

DadSeen dad_check(const uint8_t *pkt, size_t len, const Ipv6Addr &target, const DadNonce &ours)
{
	if (!pkt || len < kIp6Hdr + kNdMin || (pkt[0] >> 4) != 6 || pkt[6] != kIcmp6 ||
	    pkt[7] != 255)
		return DadSeen::Nothing;
	const size_t plen = static_cast<size_t>(pkt[4] << 8 | pkt[5]);
	if (plen < kNdMin || kIp6Hdr + plen > len || (plen & 7))
		return DadSeen::Nothing;
	const uint8_t *m = pkt + kIp6Hdr;
	if ((m[0] != kNeighSol && m[0] != kNeighAdv) || m[1] != 0 ||
	    fold(icmp6_sum(pkt, m, plen)) != 0xffff)
		return DadSeen::Nothing;
	if (!std::equal(target.begin(), target.end(), m + 8))
		return DadSeen::Nothing;
	// Options: each at least 8 bytes, within the message (RFC 4861 7.1.1).
	bool our_nonce = false;
	for (size_t o = kNdMin; o < plen;) {
		if (o + 2 > plen)
			return DadSeen::Nothing;
		const size_t olen = static_cast<size_t>(m[o + 1]) * 8;
		if (!olen || o + olen > plen)
			return DadSeen::Nothing;
		if (m[o] == kOptNonce && olen >= 8 &&
		    std::equal(ours.begin(), ours.end(), m + o + 2))
			our_nonce = true;
		o += olen;
	}
	if (m[0] == kNeighAdv)
		return DadSeen::Duplicate;
	// An NS from a node that has an address is address resolution, not a
	// claim; from :: it is a DAD probe, sent to a multicast group (7.1.1).
	const bool from_unspec = std::all_of(pkt + 8, pkt + 24, [](uint8_t c) { return !c; });
	if (!from_unspec || pkt[24] != 0xff)
		return DadSeen::Nothing;
	return our_nonce ? DadSeen::Nothing : DadSeen::Duplicate;
}

int dad_transmits_of(const std::optional<std::string> &sysctl)
{
	if (!sysctl)
		return kDadTransmits;
	std::string t = *sysctl;
	while (!t.empty() && (t.back() == '\n' || t.back() == ' '))
		t.pop_back();
	if (t.empty() || t.size() > 9 ||
	    !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
		return kDadTransmits;
	return std::min(std::stoi(t), kDadTransmitsMax);
}

bool dad_link_update(std::optional<DadLink> &state, DadLink now)
{
	if (!state) {
		state = now;
		return false;
	}
	if (now.network.empty())
		now.network = state->network;
	const bool redo = now.carrier && (!state->carrier || now.ifindex != state->ifindex ||
					  now.network != state->network);
	state = now;
	return redo;
}

Ext6State decide_ext6(std::optional<uint32_t> have, std::optional<DadVerdict> verdict)
{
	const uint32_t held_flags = KVX_EXT_F_PROBING | KVX_EXT_F_CONFLICT;
	if (have && (*have & KVX_EXT_F_ARP) && !(*have & held_flags))
		return {KVX_EXT_F_ARP, false, false};
	if (verdict == DadVerdict::Free)
		return {KVX_EXT_F_ARP, false, true};
	if (verdict == DadVerdict::Duplicate)
		return {KVX_EXT_F_CONFLICT, true, false};
	if (have && (*have & KVX_EXT_F_CONFLICT))
		return {KVX_EXT_F_CONFLICT, true, false};
	return {KVX_EXT_F_PROBING, true, false};
}

} // namespace kvmxdp
