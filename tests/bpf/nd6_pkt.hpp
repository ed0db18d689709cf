// Neighbour Discovery frames for the BPF tests (RFC 4861 4.3, 4.4), built
// from scratch by pkt.cpp's Packet6 (its checksum computed there, never by
// the datapath's arithmetic): a Neighbour Solicitation as a LAN host or a
// guest sends it, and the Neighbour Advertisement the datapath answers it
// with (relay's ND proxy, NAT66's announced mapped addresses).
#pragma once

#include <algorithm>
#include <cstdint>

#include "pkt.hpp"

namespace kvmxdp::test::nd6 {

using namespace testpkt;

constexpr std::uint8_t kNeighSol = 135;
constexpr std::uint8_t kNeighAdv = 136;
constexpr std::uint32_t kSolicited = 0x40000000u;
constexpr std::uint32_t kOverride = 0x20000000u;

// An ND message with Packet6's echo layout: the 4 bytes after the
// checksum are id and seq, the target and the option the payload.
inline Packet6 nd_msg(std::uint8_t type, const Ip6 &src, const Ip6 &dst, std::uint32_t word,
		      const Ip6 &target, std::uint8_t opt, const Mac &lladdr)
{
	Packet6 p;
	p.proto = kProtoIcmp6;
	p.hop_limit = 255;
	p.src = src;
	p.dst = dst;
	p.icmp_type = type;
	p.icmp_code = 0;
	p.icmp_id = static_cast<std::uint16_t>(word >> 16);
	p.icmp_seq = static_cast<std::uint16_t>(word);
	p.payload.assign(target.begin(), target.end());
	if (opt) {
		p.payload.push_back(opt);
		p.payload.push_back(1);
		p.payload.insert(p.payload.end(), lladdr.begin(), lladdr.end());
	}
	return p;
}

// ff02::1:ffXX:XXXX, the solicited-node group of a (RFC 4291 2.7.1).
inline Ip6 solicited_node(const Ip6 &a)
{
	Ip6 g = ip6("ff02::1:ff00:0");
	g[13] = a[13];
	g[14] = a[14];
	g[15] = a[15];
	return g;
}

// A multicast group's MAC (RFC 2464 7).
inline Mac mcast_mac(const Ip6 &g)
{
	return Mac{0x33, 0x33, g[12], g[13], g[14], g[15]};
}

// An NS for target from src (its MAC in the source link-layer option;
// none from ::, RFC 4861 7.1.1), to the solicited-node group.
inline Packet6 neigh_sol(const Ip6 &src, const Mac &smac, const Ip6 &target)
{
	const bool dad = src == Ip6{};
	Packet6 p = nd_msg(kNeighSol, src, solicited_node(target), 0, target, dad ? 0 : 1, smac);
	p.src_mac = smac;
	p.dst_mac = mcast_mac(p.dst);
	return p;
}

// A DAD probe as Linux sends it (RFC 4862 5.4.2): from ::, to the
// solicited-node group, with a nonce option (RFC 7527; enhanced_dad).
inline Packet6 dad_probe(const Mac &smac, const Ip6 &target)
{
	Packet6 p = neigh_sol(Ip6{}, smac, target);
	p.payload.insert(p.payload.end(), {14, 1, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66});
	return p;
}

// The NA that answers ns for its target at mac: to the sender, Solicited
// (to all nodes for a DAD probe, not Solicited); Router 0, Override as
// flags says.
inline Packet6 answer_na(const Packet6 &ns, const Mac &mac, std::uint32_t flags)
{
	const bool dad = ns.src == Ip6{};
	Ip6 target;
	std::copy(ns.payload.begin(), ns.payload.begin() + 16, target.begin());
	const Ip6 dst = dad ? ip6("ff02::1") : ns.src;
	Packet6 na = nd_msg(kNeighAdv, target, dst, flags | (dad ? 0 : kSolicited), target, 2, mac);
	na.src_mac = mac;
	na.dst_mac = dad ? Mac{0x33, 0x33, 0, 0, 0, 1} : ns.src_mac;
	return na;
}

} // namespace kvmxdp::test::nd6
