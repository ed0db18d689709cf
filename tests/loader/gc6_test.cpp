// SPDX-License-Identifier: GPL-2.0
// The IPv6 tables (kvx_ct6, kvx_bind6) through the one GC, flush and
// conntrack code both families share (control/family.hpp), on real
// (unpinned) BPF hash maps: needs root/CAP_BPF.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "base/fd.hpp"
#include "base/netaddr6.hpp"
#include "control/conntrack.hpp"
#include "control/gc.hpp"
#include "kernel/maps.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/timeouts.hpp"
#include "privileges.hpp"

using namespace kvmxdp;
using nlohmann::json;

namespace {

constexpr uint64_t kSec = 1000000000ULL;

void put(__be32 (&w)[4], const std::string &a)
{
	const Ipv6Addr x = parse_ipv6(a);
	std::memcpy(w, x.data(), sizeof(w));
}

class Gc6Maps : public ::testing::Test {
protected:
	void SetUp() override
	{
		KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
		ct_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct6", sizeof(kvx_ct6_key),
					 sizeof(kvx_ct6_val), 64, nullptr));
		ASSERT_GE(ct_.get(), 0) << std::strerror(errno);
		bind_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind6", sizeof(kvx_bind6_key),
					   sizeof(kvx_bind6_val), 64, nullptr));
		ASSERT_GE(bind_.get(), 0) << std::strerror(errno);
		// An IPv4 table beside them: list and flush walk both.
		ct4_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct", sizeof(kvx_ct_key),
					  sizeof(kvx_ct_val), 64, nullptr));
		bind4_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind", sizeof(kvx_bind_key),
					    sizeof(kvx_bind_val), 64, nullptr));
		ASSERT_GE(ct4_.get(), 0);
		ASSERT_GE(bind4_.get(), 0);
	}

	kvx_ct6_key flow_key(const std::string &guest, uint16_t gport, uint8_t proto)
	{
		kvx_ct6_key k{};
		put(k.int_addr, guest);
		put(k.rem_addr, "2001:db8:99::53");
		k.int_port = htons(gport);
		k.rem_port = htons(proto == IPPROTO_ICMPV6 ? 0 : 443);
		k.proto = proto;
		return k;
	}

	void add_flow(const std::string &guest, uint16_t gport, const std::string &ext,
		      uint16_t eport, uint8_t proto, uint8_t state, uint64_t seen)
	{
		const kvx_ct6_key k = flow_key(guest, gport, proto);
		kvx_ct6_val v{};
		v.ct.state = state;
		v.ct.last_seen_ns = seen;
		v.ct.created_ns = seen;
		v.ct.ext_port = htons(eport);
		put(v.ext_addr, ext);
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_NOEXIST), 0);
	}

	kvx_bind6_key bkey(uint8_t dir, uint8_t proto, const std::string &addr, uint16_t port)
	{
		kvx_bind6_key k{};
		k.dir = dir;
		k.proto = proto;
		k.port = htons(port);
		put(k.addr, addr);
		return k;
	}

	// IN ext:eport -> guest:gport, OUT guest:gport -> ext:eport.
	void add_pair(const std::string &guest, uint16_t gport, const std::string &ext,
		      uint16_t eport, uint8_t proto, uint64_t used, uint16_t flags = 0)
	{
		const kvx_bind6_key in = bkey(KVX_BIND_IN, proto, ext, eport);
		const kvx_bind6_key out = bkey(KVX_BIND_OUT, proto, guest, gport);
		kvx_bind6_val inv{}, outv{};
		inv.bind.port = htons(gport);
		put(inv.addr, guest);
		outv.bind.port = htons(eport);
		put(outv.addr, ext);
		inv.bind.last_used_ns = outv.bind.last_used_ns = used;
		inv.bind.flags = outv.bind.flags = flags;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &in, &inv, BPF_NOEXIST), 0);
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &out, &outv, BPF_NOEXIST), 0);
	}

	bool has_bind(uint8_t dir, const std::string &addr, uint16_t port, uint8_t proto,
		      kvx_bind6_val *v = nullptr)
	{
		const kvx_bind6_key k = bkey(dir, proto, addr, port);
		kvx_bind6_val tmp{};
		return bpf_map_lookup_elem(bind_.get(), &k, v ? v : &tmp) == 0;
	}

	Fd ct_, bind_, ct4_, bind4_;
};

} // namespace

// The IPv4 sweep's rules, read through the embedded IPv4 values: expired
// flows go, a binding no flow references goes once idle past the grace, one
// used a moment ago and a static one stay.
TEST_F(Gc6Maps, SweepDeletesExpiredFlowsAndUnreferencedIdleBindings)
{
	const uint64_t now = 100000 * kSec;
	const std::string g1 = "fd42::11", g2 = "fd42::12", ext = "2001:db8:1::10";
	add_flow(g1, 5000, ext, 61000, IPPROTO_UDP, KVX_CT_UDP, now - 10 * kSec);
	add_pair(g1, 5000, ext, 61000, IPPROTO_UDP, now - 100 * kSec);
	add_flow(g2, 5001, ext, 61001, IPPROTO_UDP, KVX_CT_UDP, now - 31 * kSec);
	add_pair(g2, 5001, ext, 61001, IPPROTO_UDP, now - 100 * kSec);
	add_flow(g2, 6000, ext, 61002, IPPROTO_TCP, KVX_CT_CLOSE, now - 241 * kSec);
	add_pair(g2, 6000, ext, 61002, IPPROTO_TCP, now - 5 * kSec);
	add_pair(g2, 22, ext, 2222, IPPROTO_TCP, 0, KVX_BIND_F_STATIC);
	// Same ports on another guest /64 address: a 128-bit key, not its low
	// word, decides (fd42::11 and fd43::11 share the last 64 bits).
	add_flow("fd43::11", 5000, "2001:db8:2::10", 61000, IPPROTO_UDP, KVX_CT_UDP,
		 now - 10 * kSec);
	add_pair("fd43::11", 5000, "2001:db8:2::10", 61000, IPPROTO_UDP, now - 100 * kSec);

	auto r = gc_sweep6(ct_.get(), bind_.get(), default_timeouts(), now);
	EXPECT_EQ(r.ct_deleted, 2u);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_EQ(count_entries<kvx_ct6_key>(ct_.get()), 2u);
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61001, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g2, 5001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61002, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 2222, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g2, 22, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, "2001:db8:2::10", 61000, IPPROTO_UDP));
}

// An IPv6 TCP binding whose flow is gone but whose tw_remotes still
// remembers a remote that closed first (the datapath's bind6_tw_mark): kept
// as IPv4's, its port out of the pool until the filter forgets the remote.
TEST_F(Gc6Maps, BindingKeptWhileItRemembersARemoteInTimeWait)
{
	const uint64_t now = 100000 * kSec;
	const std::string g1 = "fd42::11", ext = "2001:db8:1::10";
	__be32 rem[4];
	put(rem, "2001:db8:99::53");
	const uint32_t bits = kvx_tw_bits6(rem, htons(443));
	auto remember = [&](uint16_t eport, uint64_t when) {
		const kvx_bind6_key k = bkey(KVX_BIND_IN, IPPROTO_TCP, ext, eport);
		kvx_bind6_val v{};
		ASSERT_EQ(bpf_map_lookup_elem(bind_.get(), &k, &v), 0);
		v.bind.tw_remotes = kvx_tw_add(0, bits, when);
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_EXIST), 0);
	};
	// Both idle 60 s (past the 30 s grace), no flow.
	add_pair(g1, 5000, ext, 61000, IPPROTO_TCP, now - 60 * kSec, KVX_BIND_F_TW);
	remember(61000, now - 60 * kSec);
	add_pair(g1, 5001, ext, 61001, IPPROTO_TCP, now - 60 * kSec, KVX_BIND_F_TW);
	remember(61001, now - 3 * KVX_TW_EPOCH_NS); // forgotten
	auto r = gc_sweep6(ct_.get(), bind_.get(), default_timeouts(), now);
	EXPECT_EQ(r.bind_deleted, 2u); // the forgotten one's two halves
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_TCP));
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61001, IPPROTO_TCP));
	r = gc_sweep6(ct_.get(), bind_.get(), default_timeouts(), now + 2 * KVX_TW_EPOCH_NS + kSec);
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_TCP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_TCP));
}

// SLAAC renumbering: the flows and dynamic bindings of the address the
// uplink lost go; those of the new address and static ones stay.
TEST_F(Gc6Maps, FlushOldExternalAddress)
{
	const uint64_t now = 100000 * kSec;
	const std::string g1 = "fd42::11", old_ext = "2001:db8:1::10", new_ext = "2001:db8:2::10";
	add_flow(g1, 5000, old_ext, 61000, IPPROTO_UDP, KVX_CT_UDP, now);
	add_pair(g1, 5000, old_ext, 61000, IPPROTO_UDP, now);
	add_flow(g1, 5001, new_ext, 61001, IPPROTO_UDP, KVX_CT_UDP, now);
	add_pair(g1, 5001, new_ext, 61001, IPPROTO_UDP, now);
	add_pair(g1, 22, old_ext, 2222, IPPROTO_TCP, 0, KVX_BIND_F_STATIC);
	auto r = flush_ext_addr6(ct_.get(), bind_.get(), parse_ipv6(old_ext));
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_FALSE(has_bind(KVX_BIND_IN, old_ext, 61000, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, new_ext, 61001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 5001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, old_ext, 2222, IPPROTO_TCP));
	EXPECT_EQ(count_entries<kvx_ct6_key>(ct_.get()), 1u);
	// "None" flushes nothing.
	EXPECT_EQ(flush_ext_addr6(ct_.get(), bind_.get(), Ipv6Addr{}).ct_deleted, 0u);
	EXPECT_EQ(count_entries<kvx_ct6_key>(ct_.get()), 1u);
}

// A host service listening on a port an IPv6 binding holds: released as
// for IPv4.
TEST_F(Gc6Maps, HostListenersReleaseIpv6Bindings)
{
	const uint64_t now = 100000 * kSec;
	add_pair("fd42::11", 5000, "2001:db8:1::10", 8080, IPPROTO_TCP, now - 100 * kSec);
	std::vector<uint64_t> bits(KVX_PORTX_WORDS, 0);
	EXPECT_EQ(release_host_ports6(ct_.get(), bind_.get(), bits, now), 0u);
	bits[8080 / 64] |= 1ULL << (8080 % 64);
	// Used within the last second: left for the next sweep.
	add_pair("fd42::12", 5001, "2001:db8:1::10", 8081, IPPROTO_TCP, now - kSec / 2);
	bits[8081 / 64] |= 1ULL << (8081 % 64);
	EXPECT_EQ(release_host_ports6(ct_.get(), bind_.get(), bits, now), 2u);
	EXPECT_EQ(count_entries<kvx_bind6_key>(bind_.get()), 2u);
	EXPECT_EQ(release_host_ports6(ct_.get(), bind_.get(), bits, now + 2 * kSec), 2u);
	EXPECT_EQ(count_entries<kvx_bind6_key>(bind_.get()), 0u);
}

// conntrack list: IPv6 flows after the IPv4 ones, bracketed next to a port,
// filters of either family; flush covers both tables.
TEST_F(Gc6Maps, ConntrackListAndFlush)
{
	const uint64_t now = boottime_ns();
	add_flow("fd42::14", 51234, "2001:db8:1::10", 61000, IPPROTO_TCP, KVX_CT_ESTABLISHED, now);
	add_pair("fd42::14", 51234, "2001:db8:1::10", 61000, IPPROTO_TCP, now);
	add_flow("fd42::15", 7, "2001:db8:1::10", 7, IPPROTO_ICMPV6, KVX_CT_UDP, now);
	kvx_ct_key k4{};
	k4.int_addr = htonl(0x0a000002);
	k4.rem_addr = htonl(0x08080808);
	k4.int_port = htons(5000);
	k4.rem_port = htons(53);
	k4.proto = IPPROTO_UDP;
	kvx_ct_val v4{};
	v4.state = KVX_CT_UDP;
	v4.last_seen_ns = now;
	v4.ext_addr = htonl(0xc0a80105);
	v4.ext_port = htons(61001);
	ASSERT_EQ(bpf_map_update_elem(ct4_.get(), &k4, &v4, BPF_NOEXIST), 0);

	const kvx_timeouts t = default_timeouts();
	const Ct6Fds v6{ct_.get(), bind_.get()};
	json all = ct_list_fd(ct4_.get(), t, {}, now, v6);
	ASSERT_EQ(all.size(), 3u);
	EXPECT_EQ(all[0]["family"], "ipv4");
	EXPECT_EQ(all[1]["family"], "ipv6");
	EXPECT_EQ(all[1]["proto"], "tcp");
	EXPECT_EQ(all[1]["int_addr"], "fd42::14");
	EXPECT_EQ(all[1]["ext_addr"], "2001:db8:1::10");
	EXPECT_EQ(all[1]["state"], "ESTABLISHED");
	const std::string line = ct_flow_line(all[1]);
	EXPECT_NE(line.find("guest=[fd42::14]:51234 remote=[2001:db8:99::53]:443 "
			    "ext=[2001:db8:1::10]:61000"),
		  std::string::npos)
		<< line;
	EXPECT_EQ(all[2]["proto"], "icmpv6");
	EXPECT_NE(ct_flow_line(all[2]).find("guest=fd42::15 id=7"), std::string::npos)
		<< ct_flow_line(all[2]);
	// The IPv4 line as before.
	EXPECT_NE(ct_flow_line(all[0]).find("guest=10.0.0.2:5000"), std::string::npos);

	CtFilterArgs a;
	a.guest = "fd42::14";
	json one = ct_list_fd(ct4_.get(), t, parse_ct_filter(a), now, v6);
	ASSERT_EQ(one.size(), 1u);
	EXPECT_EQ(one[0]["int_port"], 51234);
	a.guest = "10.0.0.2";
	EXPECT_EQ(ct_list_fd(ct4_.get(), t, parse_ct_filter(a), now, v6).size(), 1u);
	a = {};
	a.proto = "icmpv6";
	EXPECT_EQ(ct_list_fd(ct4_.get(), t, parse_ct_filter(a), now, v6).size(), 1u);
	a = {};
	a.guest = "fd42::zz";
	try {
		parse_ct_filter(a);
		ADD_FAILURE() << "accepted";
	} catch (const Error &e) {
		EXPECT_STREQ(e.what(), "invalid --guest 'fd42::zz': not an IPv4 or IPv6 address");
	}

	// Flush of one IPv6 guest; then of everything, both families.  The
	// binding of the flushed TCP flow is kept (touched, flagged) for the GC.
	a = {};
	a.guest = "fd42::14";
	CtFlushResult r =
		ct_flush_fd(ct4_.get(), bind4_.get(), parse_ct_filter(a), now + kSec, {}, v6);
	EXPECT_EQ(r.flows, 1u);
	EXPECT_EQ(r.unused_bindings, 1u);
	kvx_bind6_val in{};
	ASSERT_TRUE(has_bind(KVX_BIND_IN, "2001:db8:1::10", 61000, IPPROTO_TCP, &in));
	EXPECT_EQ(in.bind.last_used_ns, now + kSec);
	EXPECT_TRUE(in.bind.flags & KVX_BIND_F_FLUSHED);
	r = ct_flush_fd(ct4_.get(), bind4_.get(), {}, now, {}, v6);
	EXPECT_EQ(r.flows, 2u);
	EXPECT_EQ(count_entries<kvx_ct6_key>(ct_.get()), 0u);
	EXPECT_EQ(count_entries<kvx_ct_key>(ct4_.get()), 0u);
}
