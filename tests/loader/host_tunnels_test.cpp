// SPDX-License-Identifier: GPL-2.0
// kvx_hosttun from the host's tunnels: the pairs (protocol, remote), the
// widening to whole protocols past the map's size, and the sync of a real
// map (new pairs in, stale ones out).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

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

} // namespace
} // namespace kvmxdp
