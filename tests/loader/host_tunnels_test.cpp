// SPDX-License-Identifier: GPL-2.0
// kvx_hosttun from the host's tunnels: the pairs (protocol, remote), the
// widening to whole protocols past the map's size, and the sync of a real
// map (new pairs in, stale ones out); the peers of the host's IPsec SAs
// from NETLINK_XFRM messages as the kernel sends them; kvx_hostaddr from
// the host's addresses.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/fd.hpp"
#include "control/host_tunnels.hpp"
#include "kernel/maps.hpp"
#include "privileges.hpp"

namespace kvmxdp {
namespace {

HostTunnel tun(uint8_t proto, uint32_t remote, int ifindex)
{
	HostTunnel t;
	t.proto = proto;
	t.remote = remote;
	t.ifindex = ifindex;
	return t;
}

// An XFRM_MSG_NEWSA message as a GETSA dump carries it (the fixed
// xfrm_usersa_info, no attributes needed).
std::vector<char> newsa(uint8_t proto, const char *src, const char *dst, uint16_t family = AF_INET,
			uint16_t type = XFRM_MSG_NEWSA)
{
	std::vector<char> buf(NLMSG_SPACE(sizeof(xfrm_usersa_info)), 0);
	nlmsghdr h{};
	h.nlmsg_len = NLMSG_LENGTH(sizeof(xfrm_usersa_info));
	h.nlmsg_type = type;
	xfrm_usersa_info sa{};
	sa.family = family;
	sa.id.proto = proto;
	sa.id.spi = htonl(0xc0ffee);
	inet_pton(AF_INET, src, &sa.saddr.a4);
	inet_pton(AF_INET, dst, &sa.id.daddr.a4);
	sa.mode = XFRM_MODE_TRANSPORT;
	std::memcpy(buf.data(), &h, sizeof(h));
	std::memcpy(buf.data() + NLMSG_HDRLEN, &sa, sizeof(sa));
	return buf;
}

TEST(HostTunnels, IpsecSaPeers)
{
	const std::vector<uint32_t> local = {0x0a4d0002};
	// Outbound and inbound SAs of one peer: the peer, never the host.
	for (auto m : {newsa(IPPROTO_ESP, "10.77.0.2", "10.77.0.1"),
		       newsa(IPPROTO_ESP, "10.77.0.1", "10.77.0.2")}) {
		auto p = xfrm_sa_peers(m.data(), m.size(), local);
		ASSERT_EQ(p.size(), 1u);
		EXPECT_EQ(p[0].proto, IPPROTO_ESP);
		EXPECT_EQ(p[0].remote, 0x0a4d0001u);
		EXPECT_EQ(p[0].ifindex, 0) << "no device";
		EXPECT_EQ(p[0].kind, "xfrm");
		EXPECT_EQ(p[0].name, "spi 0x00c0ffee");
	}
	auto m = newsa(IPPROTO_AH, "10.77.0.2", "198.51.100.7");
	auto p = xfrm_sa_peers(m.data(), m.size(), local);
	ASSERT_EQ(p.size(), 1u);
	EXPECT_EQ(p[0].proto, IPPROTO_AH);
	EXPECT_EQ(p[0].remote, 0xc6336407u);
	// Neither side local (a gateway's SA seen from a forwarding host):
	// both are peers.
	m = newsa(IPPROTO_COMP, "10.1.0.1", "10.2.0.1");
	EXPECT_EQ(xfrm_sa_peers(m.data(), m.size(), local).size(), 2u);
	// A larval SA without a source yet: only its destination.
	m = newsa(IPPROTO_ESP, "0.0.0.0", "10.77.0.9");
	p = xfrm_sa_peers(m.data(), m.size(), local);
	ASSERT_EQ(p.size(), 1u);
	EXPECT_EQ(p[0].remote, 0x0a4d0009u);
	// Not ours to protect: IPv6 SAs, other protocols, other messages,
	// truncated ones.
	m = newsa(IPPROTO_ESP, "10.77.0.2", "10.77.0.1", AF_INET6);
	EXPECT_TRUE(xfrm_sa_peers(m.data(), m.size(), local).empty());
	m = newsa(IPPROTO_UDP, "10.77.0.2", "10.77.0.1");
	EXPECT_TRUE(xfrm_sa_peers(m.data(), m.size(), local).empty());
	m = newsa(IPPROTO_ESP, "10.77.0.2", "10.77.0.1", AF_INET, XFRM_MSG_DELSA);
	EXPECT_TRUE(xfrm_sa_peers(m.data(), m.size(), local).empty());
	m = newsa(IPPROTO_ESP, "10.77.0.2", "10.77.0.1");
	EXPECT_TRUE(xfrm_sa_peers(m.data(), NLMSG_HDRLEN + 8, local).empty());
}

TEST(HostTunnels, PairsPerProtocolAndRemote)
{
	auto p = hosttun_pairs({tun(IPPROTO_GRE, 0x0a4d0001, 5), tun(IPPROTO_GRE, 0x0a4d0001, 6),
				tun(IPPROTO_IPV6, 0x0a4d0001, 7), tun(IPPROTO_GRE, 0, 8)});
	ASSERT_EQ(p.size(), 3u);
	EXPECT_EQ(p.at({IPPROTO_GRE, 0x0a4d0001}), 5) << "the first device of a pair";
	EXPECT_EQ(p.at({IPPROTO_IPV6, 0x0a4d0001}), 7);
	EXPECT_EQ(p.at({IPPROTO_GRE, 0}), 8);
}

TEST(HostTunnels, TooManyPeersWidenToTheProtocol)
{
	std::vector<HostTunnel> many;
	for (uint32_t i = 0; i <= KVX_HOSTTUN_MAX; i++)
		many.push_back(tun(IPPROTO_GRE, 0x0a000001 + i, 10));
	many.push_back(tun(IPPROTO_ESP, 0x0a000001, 11));
	auto p = hosttun_pairs(many);
	ASSERT_EQ(p.size(), 2u);
	EXPECT_TRUE(p.count({IPPROTO_GRE, 0}));
	EXPECT_TRUE(p.count({IPPROTO_ESP, 0}));
}

TEST(HostTunnels, SyncAddsAndRemoves)
{
	KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
	Fd m(bpf_map_create(BPF_MAP_TYPE_HASH, "t_hosttun", sizeof(kvx_hosttun_key),
			    sizeof(kvx_hosttun_val), KVX_HOSTTUN_MAX, nullptr));
	ASSERT_GE(m.get(), 0) << std::strerror(errno);
	auto r = sync_host_tunnels(m.get(),
				   {tun(IPPROTO_GRE, 0x0a4d0001, 5), tun(IPPROTO_IPIP, 0, 6)});
	EXPECT_EQ(r.added, 2u);
	EXPECT_EQ(r.removed, 0u);
	kvx_hosttun_key k{};
	k.proto = IPPROTO_GRE;
	k.remote = htonl(0x0a4d0001);
	kvx_hosttun_val v{};
	ASSERT_EQ(bpf_map_lookup_elem(m.get(), &k, &v), 0) << "network-order remote";
	EXPECT_EQ(v.ifindex, 5u);

	r = sync_host_tunnels(m.get(), {tun(IPPROTO_IPIP, 0, 6)});
	EXPECT_EQ(r.added, 0u);
	EXPECT_EQ(r.removed, 1u);
	EXPECT_NE(bpf_map_lookup_elem(m.get(), &k, &v), 0) << "a gone tunnel's peer is released";
	EXPECT_EQ(map_keys<kvx_hosttun_key>(m.get()).size(), 1u);
}

// kvx_hostaddr: the host's IPv4 addresses in network order, a gone one
// out, a duplicate once; past KVX_HOSTADDR_MAX the last given are left out
// (and counted, for the loader's warning), never an error.
TEST(HostAddrs, SyncAddsRemovesAndCapsAtTheMapsSize)
{
	KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
	Fd m(bpf_map_create(BPF_MAP_TYPE_HASH, "t_hostaddr", sizeof(__be32), sizeof(__u32),
			    KVX_HOSTADDR_MAX, nullptr));
	ASSERT_GE(m.get(), 0) << std::strerror(errno);
	auto r = sync_host_addrs(m.get(), {0x0a080002, 0xac110001, 0x0a080002});
	EXPECT_EQ(r.added, 2u);
	EXPECT_EQ(r.removed, 0u);
	const __be32 k = htonl(0xac110001);
	__u32 v = 0;
	ASSERT_EQ(bpf_map_lookup_elem(m.get(), &k, &v), 0) << "network order";
	EXPECT_EQ(v, 1u);
	r = sync_host_addrs(m.get(), {0x0a080002});
	EXPECT_EQ(r.added, 0u);
	EXPECT_EQ(r.removed, 1u);
	EXPECT_NE(bpf_map_lookup_elem(m.get(), &k, &v), 0) << "a gone address is no martian";
	// The uplink's come first (host_martian_sources): kept whatever
	// their value, however many container networks come after.
	std::vector<uint32_t> many{0xc0a80164, 0xc0a801ff};
	for (uint32_t i = 0; i < KVX_HOSTADDR_MAX + 5; i++)
		many.push_back(0x0a000000 + i);
	many.push_back(0xc0a80164); // a duplicate costs nothing
	r = sync_host_addrs(m.get(), many);
	EXPECT_EQ(r.left_out, 7u);
	EXPECT_EQ(map_keys<__be32>(m.get()).size(), size_t(KVX_HOSTADDR_MAX));
	for (uint32_t a : {0xc0a80164u, 0xc0a801ffu, 0x0a000000u}) {
		const __be32 kk = htonl(a);
		EXPECT_EQ(bpf_map_lookup_elem(m.get(), &kk, &v), 0) << std::hex << a << ": kept";
	}
	const __be32 last = htonl(0x0a000000 + KVX_HOSTADDR_MAX - 2);
	EXPECT_NE(bpf_map_lookup_elem(m.get(), &last, &v), 0) << "the last given left out";
}

// kvx_hostaddr's entries from the host's addresses: each address, its
// subnet's directed broadcast where it has one (not /31, /32, loopback's)
// and a broadcast address of its own (`brd`); the uplink's first.
TEST(HostAddrs, MartianSourcesAreTheAddressesAndTheirBroadcasts)
{
	auto a = [](uint32_t addr, uint8_t prefix, int scope = RT_SCOPE_UNIVERSE, int ifindex = 1,
		    uint32_t brd = 0) {
		IfAddr i;
		i.addr = addr;
		i.prefix = prefix;
		i.scope = scope;
		i.ifindex = ifindex;
		i.broadcast = brd;
		return i;
	};
	EXPECT_EQ(host_martian_sources({a(0x0a4d0002, 24), a(0x7f000001, 8, RT_SCOPE_HOST),
					a(0xac110001, 16), a(0xc0a80501, 31), a(0x0a080002, 32),
					a(0xc0a87a01, 30, RT_SCOPE_LINK)}),
		  (std::vector<uint32_t>{0x0a4d0002, 0x0a4d00ff, 0x7f000001, 0xac110001, 0xac11ffff,
					 0xc0a80501, 0x0a080002, 0xc0a87a01, 0xc0a87a03}));
	// `ip addr add 10.9.0.2/24 brd 10.9.0.7`: both broadcasts (the
	// kernel's local table has both); 255.255.255.255 is no entry.
	EXPECT_EQ(host_martian_sources({a(0x0a090002, 24, RT_SCOPE_UNIVERSE, 1, 0x0a090007),
					a(0x0a0a0002, 24, RT_SCOPE_UNIVERSE, 1, 0xffffffff)}),
		  (std::vector<uint32_t>{0x0a090002, 0x0a0900ff, 0x0a090007, 0x0a0a0002,
					 0x0a0a00ff}));
	// The uplink's (ifindex 7) ahead of the others'.
	EXPECT_EQ(host_martian_sources({a(0x0a000001, 24, RT_SCOPE_UNIVERSE, 3),
					a(0xc0a80164, 24, RT_SCOPE_UNIVERSE, 7)},
				       7),
		  (std::vector<uint32_t>{0xc0a80164, 0xc0a801ff, 0x0a000001, 0x0a0000ff}));
}

} // namespace
} // namespace kvmxdp
