// NAT66 test packets and state (nat66_test.cpp, xdp6_test.cpp): guests on
// fd42::/64 behind the uplink's 2001:db8:77::2, the config the daemon would
// write for them, and the translations expected, built from scratch
// (pkt.cpp's Packet6 computes every checksum itself).
#pragma once

#include <cstring>
#include <utility>

#include "fixture.hpp"

namespace kvmxdp::test {

using namespace testpkt;

inline const Ip6 kGuest6A = ip6("fd42::a");
inline const Ip6 kGuest6B = ip6("fd42::b");
inline const Ip6 kGuest6C = ip6("fd42::c");
inline const Ip6 kGuest6F = ip6("fd42::14");
inline const Ip6 kRemote6A = ip6("2001:db8:100::10");
inline const Ip6 kRemote6B = ip6("2001:db8:100::20");
inline const Ip6 kUplink6 = ip6(Topology::kUplinkAddr6);

inline void copy_addr(__be32 *to, const Ip6 &a)
{
	std::memcpy(to, a.data(), 16);
}

// What the daemon would write for fd42::/64 behind 2001:db8:77::2.
inline kvx_cfg6 nat66_cfg()
{
	kvx_cfg6 c{};
	c.mode = KVX_V6_NAT66;
	copy_addr(c.uplink_addr, kUplink6);
	copy_addr(c.subnet, ip6(Topology::kSubnet6));
	c.subnet_len = 64;
	copy_addr(c.gw_addr, ip6("fe80::1"));
	std::memcpy(c.bridge_mac, Topology::kBridgeMac.data(), 6);
	return c;
}

inline Mac mac_of(const Ip6 &guest)
{
	return Mac{0x52, 0x54, 0x00, 0x00, 0x06, guest[15]};
}

inline Packet6 from_guest6(Packet6 p)
{
	p.src_mac = mac_of(p.src);
	p.dst_mac = Topology::kBridgeMac;
	return p;
}

inline Packet6 from_uplink6(Packet6 p)
{
	p.src_mac = Topology::kGatewayMac;
	p.dst_mac = Topology::kUplinkMac;
	return p;
}

// The expected SNAT: source -> uplink address and ext_port (the echo
// identifier for ICMPv6), hop limit - 1, MACs from the route (uplink ->
// gateway).  build() recomputes the checksums from scratch.
inline Packet6 snat6(Packet6 p, std::uint16_t ext_port)
{
	p.src = kUplink6;
	if (p.proto == kProtoIcmp6)
		p.icmp_id = ext_port;
	else
		p.sport = ext_port;
	p.hop_limit--;
	p.src_mac = Topology::kUplinkMac;
	p.dst_mac = Topology::kGatewayMac;
	return p;
}

// The expected DNAT to guest:port, MACs from the binding.
inline Packet6 dnat6(Packet6 p, const Ip6 &guest, std::uint16_t port)
{
	p.dst = guest;
	if (p.proto == kProtoIcmp6)
		p.icmp_id = port;
	else
		p.dport = port;
	p.hop_limit--;
	p.src_mac = Topology::kBridgeMac;
	p.dst_mac = mac_of(guest);
	return p;
}

// The remote's answer to a translated packet, as it arrives on the uplink.
inline Packet6 reply6(const Packet6 &out)
{
	Packet6 r = from_uplink6(out);
	std::swap(r.src, r.dst);
	std::swap(r.sport, r.dport);
	r.hop_limit = 60;
	if (r.proto == kProtoTcp) {
		r.tcp_flags = kTcpSyn | kTcpAck;
		r.ack_seq = out.seq + 1;
		r.seq = 0x50000000;
	}
	if (r.proto == kProtoIcmp6)
		r.icmp_type = kIcmp6EchoReply;
	r.payload = pattern(20, 0x33);
	return r;
}

} // namespace kvmxdp::test
