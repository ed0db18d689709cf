// SPDX-License-Identifier: GPL-2.0
// ListeningSockets: the host's listeners as one snapshot of
// /proc/net/{tcp,udp}{,6}, for `map add`'s port range check.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <fstream>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "kernel/sockets.hpp"
#include "temp_dir.hpp"

using namespace kvmxdp;

namespace {

const char *kHeader4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
		       "retrnsmt   uid  timeout inode\n";
const char *kHeader6 = "  sl  local_address                         remote_address               "
		       "         st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

// /proc/net/tcp shows the address as the kernel's __be32 printed as a host
// (little-endian here) integer: 192.168.1.50 is 3201A8C0.
std::string tcp4()
{
	return std::string(kHeader4) +
	       "   0: 3201A8C0:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
	       "       0 1001 1 0000000000000000 100 0 0 10 0\n"
	       // 8081 on another address
	       "   1: 0101A8C0:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
	       "       0 1002 1 0000000000000000 100 0 0 10 0\n"
	       // 8085 established, not listening
	       "   2: 3201A8C0:1F95 0A01A8C0:C350 01 00000000:00000000 00:00000000 00000000     0 "
	       "       0 1003 1 0000000000000000 100 0 0 10 0\n"
	       "garbage line\n"
	       "   3: ZZZZZZZZ:1F96 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
	       "       0 1004 1 0000000000000000 100 0 0 10 0\n";
}

std::string tcp6()
{
	// [::]:8083 listens on every address, IPv4 ones too.
	return std::string(kHeader6) +
	       "   0: 00000000000000000000000000000000:1F93 00000000000000000000000000000000:0000 "
	       "0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 "
	       "100 0 0 10 0\n";
}

} // namespace

TEST(ListeningSockets, ParsesListenersOfOneProtocol)
{
	const uint32_t addr = parse_ipv4("192.168.1.50");
	auto s = ListeningSockets::parse(IPPROTO_TCP, tcp4(), tcp6());
	EXPECT_TRUE(s.listens(addr, 8080));
	EXPECT_FALSE(s.listens(addr, 8081)) << "another address";
	EXPECT_TRUE(s.listens(parse_ipv4("192.168.1.1"), 8081));
	EXPECT_TRUE(s.listens(addr, 8083)) << "IPv6 wildcard";
	EXPECT_FALSE(s.listens(addr, 8085)) << "not a listener";
	EXPECT_FALSE(s.listens(addr, 8086)) << "unparseable address";
	EXPECT_EQ(s.first_listening(addr, {8081, 8090}), std::optional<uint16_t>(8083));
	EXPECT_EQ(s.first_listening(addr, {8000, 8090}), std::optional<uint16_t>(8080));
	EXPECT_EQ(s.first_listening(addr, {8084, 65535}), std::nullopt);
	// UDP's "listening" state is TCP_CLOSE (07): a TCP table says nothing.
	EXPECT_FALSE(ListeningSockets::parse(IPPROTO_UDP, tcp4(), tcp6()).listens(addr, 8080));
}

// IPv6 forwards: [::] and the forward's own address, never an IPv4
// listener (0.0.0.0 takes no IPv6), nor another IPv6 address's.
TEST(ListeningSockets, Ipv6ListenersOfAnAddress)
{
	// [2001:db8::10]:8084 (the kernel's words printed as little-endian
	// integers) and [2001:db8::11]:8087.
	const std::string v6 =
		tcp6() +
		"   1: B80D0120000000000000000010000000:1F94 00000000000000000000000000000000:0000 "
		"0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 "
		"100 0 0 10 0\n"
		"   2: B80D0120000000000000000011000000:1F97 00000000000000000000000000000000:0000 "
		"0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 "
		"100 0 0 10 0\n";
	auto s = ListeningSockets::parse(IPPROTO_TCP, tcp4(), v6);
	const Ipv6Addr a = parse_ipv6("2001:db8::10");
	EXPECT_EQ(s.first_listening6(a, {8080, 8082}), std::nullopt) << "IPv4 listeners";
	EXPECT_EQ(s.first_listening6(a, {8083, 8083}), std::optional<uint16_t>(8083)) << "[::]";
	EXPECT_EQ(s.first_listening6(a, {8084, 8090}), std::optional<uint16_t>(8084));
	EXPECT_EQ(s.first_listening6(a, {8085, 8090}), std::nullopt) << "another address's";
	EXPECT_EQ(s.first_listening6(parse_ipv6("2001:db8::11"), {8085, 8090}),
		  std::optional<uint16_t>(8087));
	EXPECT_EQ(s.first_listening6(a, {8084, 8084}, 0), std::nullopt) << "uid below 0";
	// An IPv4 check is not answered by an IPv6 address's listener.
	EXPECT_EQ(s.first_listening(parse_ipv4("192.168.1.50"), {8084, 8084}), std::nullopt);
}

// The tables are read once, when the snapshot is taken: a check of a whole
// port range does not re-read them per port (which also held the config
// lock for as long as that took).
TEST(ListeningSockets, OneReadPerSnapshot)
{
	test::TempDir t;
	::mkdir((t.path() + "/net").c_str(), 0755);
	std::ofstream(t.path() + "/net/tcp") << tcp4();
	std::ofstream(t.path() + "/net/tcp6") << tcp6();
	auto s = ListeningSockets::read(IPPROTO_TCP, t.path());
	// Gone after the read: every answer comes from the snapshot.
	std::remove((t.path() + "/net/tcp").c_str());
	std::remove((t.path() + "/net/tcp6").c_str());
	const uint32_t addr = parse_ipv4("192.168.1.50");
	EXPECT_EQ(s.first_listening(addr, {1, 65535}), std::optional<uint16_t>(8080));
	EXPECT_TRUE(s.listens(addr, 8083));
	// No tables at all (another proc root): nothing listens.
	EXPECT_FALSE(ListeningSockets::read(IPPROTO_TCP, t.path()).listens(addr, 8080));
}

// The NAT pool skips the ports of host services that packets from the
// uplink can reach (kvx_portx): not those on loopback only, nor a login
// user's sockets.
TEST(ListeningSockets, HostPortBitmapTakesReachableListenersOfBothProtocols)
{
	test::TempDir t;
	::mkdir((t.path() + "/net").c_str(), 0755);
	std::ofstream(t.path() + "/net/tcp")
		<< tcp4()
		// 127.0.0.1:631 (0100007F:0277): loopback only
		<< "   4: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     "
		   "0        0 1005 1 0000000000000000 100 0 0 10 0\n";
	std::ofstream(t.path() + "/net/tcp6") << tcp6();
	// 0.0.0.0:5353 (14E9), unconnected UDP
	std::ofstream(t.path() + "/net/udp")
		<< kHeader4
		<< "   0: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     "
		   "0        0 3001 2 0000000000000000 0\n";
	// [::]:7000 (1B58) of uid 1000, a login user's: not the host's service
	std::ofstream(t.path() + "/net/udp6")
		<< kHeader6
		<< "   0: 00000000000000000000000000000000:1B58 00000000000000000000000000000000:0000 "
		   "07 00000000:00000000 00:00000000 00000000  1000        0 4001 2 0000000000000000 "
		   "0\n";
	const std::vector<uint64_t> bits = host_port_bitmap(t.path());
	ASSERT_EQ(bits.size(), 1024u);
	auto set = [&](uint16_t p) { return (bits[p / 64] >> (p % 64)) & 1; };
	std::vector<uint16_t> got;
	for (uint32_t p = 0; p < 65536; p++)
		if (set(static_cast<uint16_t>(p)))
			got.push_back(static_cast<uint16_t>(p));
	EXPECT_EQ(got, (std::vector<uint16_t>{5353, 8080, 8081, 8083}));
}
