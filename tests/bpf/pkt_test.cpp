// The test library checks itself against published values, so a bug in it
// cannot hide a bug in the datapath.  Needs no privileges.
#include <gtest/gtest.h>

#include "pkt.hpp"

namespace kvmxdp::testpkt {
namespace {

TEST(PktLibTest, Rfc1071Example)
{
	// RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
	const std::uint8_t d[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
	EXPECT_EQ(csum_fold(csum_partial(d, sizeof(d))), static_cast<std::uint16_t>(~0xddf2));
	// An odd length pads the last byte with zero on the right.
	const std::uint8_t odd[] = {0x12, 0x34, 0x56};
	EXPECT_EQ(csum_fold(csum_partial(odd, sizeof(odd))),
		  static_cast<std::uint16_t>(~(0x1234 + 0x5600)));
}

TEST(PktLibTest, KnownIpv4HeaderChecksum)
{
	// A textbook header: 192.168.0.1 -> 192.168.0.199, UDP, checksum b861.
	const std::uint8_t h[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
				  0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
	EXPECT_EQ(inet_checksum(h, sizeof(h)), 0xb861);
}

TEST(PktLibTest, BuiltPacketsVerifyAndParse)
{
	for (Packet p : {make_tcp(ip4(10, 0, 0, 1), 1234, ip4(10, 0, 0, 2), 80),
			 make_udp(ip4(10, 0, 0, 1), 1234, ip4(10, 0, 0, 2), 53, 33),
			 make_icmp_echo(ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), 77),
			 make_ip_proto(ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), kProtoGre)}) {
		p.ip_options = {0x94, 0x04, 0x00, 0x00};
		const Bytes f = p.build();
		EXPECT_EQ(check_checksums(f), "");
		const Parsed q = parse(f);
		ASSERT_TRUE(q.ipv4);
		EXPECT_EQ(q.ihl_bytes, 24u);
		EXPECT_EQ(q.tot_len, f.size() - 14);
		EXPECT_EQ(q.src, p.src);
		EXPECT_EQ(q.dst, p.dst);
		EXPECT_EQ(q.proto, p.proto);
		EXPECT_EQ(q.l4_off, 14u + 24u);
	}
}

TEST(PktLibTest, EveryCorruptionIsDetected)
{
	// Flipping any single bit of the IPv4 header or the L4 message must
	// break a checksum (except in the UDP checksum field's own "0").
	for (const Packet &p : {make_tcp(ip4(10, 0, 0, 1), 1234, ip4(10, 0, 0, 2), 80),
				make_udp(ip4(10, 0, 0, 1), 1234, ip4(10, 0, 0, 2), 53, 9),
				make_icmp_echo(ip4(10, 0, 0, 1), ip4(10, 0, 0, 2), 77)}) {
		const Bytes f = p.build();
		for (std::size_t i = 14; i < f.size(); i++) {
			if (i == 14 + 2 || i == 14 + 3 || i == 14)
				continue; // version/ihl/tot_len: parse() refuses, tested below
			Bytes g = f;
			g[i] ^= 0x10;
			EXPECT_NE(check_checksums(g), "")
				<< "proto " << int(p.proto) << " byte " << i;
		}
	}
	Bytes short_frame = make_udp(1, 2, 3, 4).build();
	short_frame.pop_back();
	EXPECT_NE(check_checksums(short_frame), "");
}

TEST(PktLibTest, UdpChecksumRules)
{
	Packet p = make_udp(ip4(10, 0, 0, 1), 1234, ip4(10, 0, 0, 2), 53, 8);
	p.udp_no_csum = true;
	Bytes f = p.build();
	EXPECT_EQ(parse(f).l4_csum, 0);
	EXPECT_EQ(check_checksums(f), "") << "0 = no checksum";
	// Find a payload whose checksum computes to 0: it must be sent as ffff.
	p.udp_no_csum = false;
	p.payload.assign(8, 0);
	const Bytes z = p.build();
	const std::uint16_t c = parse(z).l4_csum; // checksum with filler 0
	p.payload[6] = static_cast<std::uint8_t>(c >> 8);
	p.payload[7] = static_cast<std::uint8_t>(c);
	f = p.build();
	EXPECT_EQ(parse(f).l4_csum, 0xffff);
	EXPECT_EQ(check_checksums(f), "");
}

TEST(PktLibTest, VlanAndPadding)
{
	Packet p = make_udp(ip4(10, 0, 0, 1), 1234, ip4(10, 0, 0, 2), 53, 2);
	p.vlan_tags = {100};
	p.pad_to = 64;
	const Bytes f = p.build();
	EXPECT_EQ(f.size(), 64u);
	const Parsed q = parse(f);
	EXPECT_EQ(q.l3_off, 18u);
	EXPECT_TRUE(q.ipv4);
	EXPECT_EQ(q.tot_len, 30);
	EXPECT_EQ(check_checksums(f), "");
}

} // namespace
} // namespace kvmxdp::testpkt
