// SPDX-License-Identifier: GPL-2.0
// The per-guest flow quota's userspace half (model/quota.hpp, control/gc.hpp):
// the counter array's size (the index is the datapath's: ct_rules_test.cpp),
// the exact recount at every sweep, and the attach --timeouts / --flow-quota
// defaults.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "model/config.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "control/gc.hpp"
#include "control/relay.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/quota.hpp"
#include "model/timeouts.hpp"
#include "kernel/maps.hpp"
#include "kernel_maps.hpp"

using namespace kvmxdp;

namespace {

constexpr uint64_t kSec = 1000000000ULL;

TEST(GcQuota, ParseTimeouts)
{
	kvx_timeouts t = parse_timeouts("udp=2,udp_stream=5,tcp_established=60");
	EXPECT_EQ(t.udp, 2u);
	EXPECT_EQ(t.udp_stream, 5u);
	EXPECT_EQ(t.tcp_established, 60u);
	EXPECT_EQ(t.tcp_syn_sent, default_timeouts().tcp_syn_sent) << "others keep the defaults";
	EXPECT_EQ(t.other, default_timeouts().other);
	for (const char *bad : {"", "udp", "udp=", "udp=0", "udp=-1", "udp=x", "udp=2,", "tcp=5",
				"udp=2,,icmp=3", "udp=315360001", "udp=99999999999999999999"})
		EXPECT_THROW(parse_timeouts(bad), Error) << "'" << bad << "'";
}

TEST(GcQuota, DefaultQuotaIsAQuarterOfTheTable)
{
	EXPECT_EQ(default_flow_quota(65536), 16384u);
	EXPECT_EQ(default_flow_quota(64), 16u);
	EXPECT_EQ(default_flow_quota(3), 1u) << "never 0 (which means off)";
}

TEST(GcQuota, OwnerMapFollowsTheSubnet)
{
	const uint32_t m24 = htonl(0xffffff00), m16 = htonl(0xffff0000), m8 = htonl(0xff000000);
	EXPECT_EQ(guest_map_size(m24), 256u);
	EXPECT_EQ(guest_map_size(m16), 65536u);
	EXPECT_EQ(guest_map_size(m8), 65536u) << "capped at KVX_GFLOWS_MAX";
	EXPECT_EQ(guest_map_size(htonl(0xffffffff)), 1u);
	// The counters' slot: ct_rules_test.cpp (kvx_guest_slot).
}

// attach --flow-quota / --timeouts are kept in the instance's config: absent
// keys (configurations of older versions, or never set) mean "default".
// A new attach's seed never shares its IPv6 slot tag with a record of the
// flows it resumes: such a record would read as a slot of the new seed
// (another guest's, for the flow's life).  Half the tags taken: a draw that
// ignored them would land on one within a few attempts.
TEST(GcQuota, NewSeedAvoidsTheTagsOfResumedFlows)
{
	std::vector<uint32_t> recs;
	for (uint32_t tag = 1; tag < 0x10000; tag += 2)
		recs.push_back(tag << 16 | (tag & 0xff));
	recs.push_back(0); // an entry of before the records: no tag
	const std::vector<bool> taken = ct_slot_tags(recs);
	ASSERT_EQ(taken.size(), 0x10000u);
	EXPECT_FALSE(taken[0]);
	EXPECT_TRUE(taken[1]);
	EXPECT_TRUE(taken[0xffff]);
	EXPECT_FALSE(taken[2]);
	for (int i = 0; i < 200; i++) {
		const uint32_t seed = new_guest_seed(taken);
		const uint32_t tag = kvx_ct_slot_tag(seed);
		ASSERT_EQ(tag % 2, 0u) << "seed " << seed << " has a taken tag " << tag;
		// and so no resumed record reads as one of its slots
		for (uint32_t r : {recs[0], recs[1], recs[tag / 2 % recs.size()]})
			ASSERT_EQ(kvx_ct_slot_read(r, seed), KVX_CT_NO_SLOT);
	}
}

TEST(GcQuota, ConfigKeepsQuotaAndTimeouts)
{
	Instance i;
	i.bridge = "br0";
	i.uplink = "wlan0";
	i.subnet = parse_cidr("192.168.122.0/24");
	i.nat_ports = {61000, 65535};
	i.ct_size = 4096;
	i.bind_size = 4096;
	i.bpffs = "/sys/fs/bpf";
	i.pin_dir = "/sys/fs/bpf/kvmxdp/br0";
	Config c;
	c.instances.push_back(i);
	auto j = to_json(c);
	EXPECT_FALSE(j["instances"][0].contains("flow_quota")) << "unset: the default share";
	EXPECT_FALSE(j["instances"][0].contains("timeouts"));
	Config back = config_from_json(nlohmann::json::parse(j.dump()));
	ASSERT_EQ(back.instances.size(), 1u);
	EXPECT_FALSE(back.instances[0].flow_quota.has_value());
	EXPECT_TRUE(back.instances[0].timeouts.empty());

	c.instances[0].flow_quota = 0; // explicitly off: not the same as unset
	c.instances[0].timeouts = "udp=2,tcp_close=1";
	j = to_json(c);
	EXPECT_EQ(j["instances"][0]["flow_quota"], 0);
	EXPECT_EQ(j["instances"][0]["timeouts"], "udp=2,tcp_close=1");
	back = config_from_json(nlohmann::json::parse(j.dump()));
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_EQ(back.instances[0].flow_quota, std::optional<uint32_t>(0));
}

// On real (unpinned) maps (kvx_ct, kvx_bind of KernelMapsTest, and
// kvx_gflows): needs root/CAP_BPF (skipped without it).
class GcQuotaMaps : public test::KernelMapsTest {
protected:
	static constexpr uint32_t kSeed = 0x5eed5eed;
	void SetUp() override
	{
		KernelMapsTest::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		gf_.reset(bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_gflows", sizeof(__u32),
					 sizeof(kvx_gflows_val), KVX_GFLOWS_MAX, nullptr));
		ASSERT_GE(gf_.get(), 0) << "bpf_map_create(t_gflows): " << std::strerror(errno);
		guest_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_guest", sizeof(__be32),
					    sizeof(kvx_guest_val), 256, nullptr));
		ASSERT_GE(guest_.get(), 0) << "bpf_map_create(t_guest): " << std::strerror(errno);
		brport_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_brport", sizeof(kvx_xfdb_key),
					     sizeof(kvx_xfdb_val), 256, nullptr));
		ASSERT_GE(brport_.get(), 0) << "bpf_map_create(t_brport): " << std::strerror(errno);
	}
	QuotaMaps q() const
	{
		QuotaMaps m{gf_.get(), guest_.get(), kSeed};
		m.brport_fd = brport_.get();
		return m;
	}
	// kvx_guest[addr] = mac, as the datapath binds an address, and the MAC
	// on a bridge port of its own (kvx_brport: port 1000 + mac_last), as
	// the daemon places it.
	void own(uint32_t guest, uint8_t mac_last)
	{
		kvx_guest_val v{};
		const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, mac_last};
		std::memcpy(v.mac, mac, 6);
		const __be32 k = htonl(guest);
		ASSERT_EQ(bpf_map_update_elem(guest_.get(), &k, &v, BPF_ANY), 0);
		place(mac, 1000u + mac_last);
	}
	void place(const uint8_t (&mac)[6], uint32_t port)
	{
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac, 6);
		kvx_xfdb_val v{};
		v.ifindex = port;
		ASSERT_EQ(bpf_map_update_elem(brport_.get(), &k, &v, BPF_ANY), 0);
	}
	// The slot the datapath counts guest's flows in: its owner's port's
	// now (ct.h mac_slot).
	__u32 slot(uint32_t guest)
	{
		const __be32 k = htonl(guest);
		kvx_guest_val v{};
		if (bpf_map_lookup_elem(guest_.get(), &k, &v) != 0)
			return kvx_guest_slot(nullptr, k, kSeed);
		return mac_port_slot(v.mac);
	}
	__u32 mac_port_slot(const uint8_t *mac)
	{
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac, 6);
		kvx_xfdb_val v{};
		const bool placed = bpf_map_lookup_elem(brport_.get(), &k, &v) == 0;
		return kvx_port_slot(placed ? v.ifindex : 0, kSeed);
	}
	void add_flow(uint32_t guest, uint16_t gport, uint8_t state, uint64_t seen,
		      uint8_t flags = 0)
	{
		kvx_ct_key k{};
		k.int_addr = htonl(guest);
		k.rem_addr = htonl(0x08080808);
		k.int_port = htons(gport);
		k.rem_port = htons(53);
		k.proto = state == KVX_CT_UDP ? IPPROTO_UDP : IPPROTO_TCP;
		kvx_ct_val v{};
		v.state = state;
		// An established connection was answered (one that was not
		// lives as long as a SYN's: ct_rules.h kvx_ct_timeout_s).
		v.flags = state == KVX_CT_ESTABLISHED ? flags | KVX_CT_F_SEEN_REPLY : flags;
		v.last_seen_ns = seen;
		v.ext_addr = htonl(0xc0000205);
		v.ext_port = htons(gport);
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_NOEXIST), 0);
	}
	kvx_gflows_val counts(uint32_t guest)
	{
		__u32 i = slot(guest);
		kvx_gflows_val v{};
		EXPECT_EQ(bpf_map_lookup_elem(gf_.get(), &i, &v), 0);
		return v;
	}
	uint32_t count(uint32_t guest) { return counts(guest).out + counts(guest).in; }
	void set_count(uint32_t guest, uint32_t n)
	{
		__u32 i = slot(guest);
		kvx_gflows_val v{};
		v.out = n;
		ASSERT_EQ(bpf_map_update_elem(gf_.get(), &i, &v, BPF_ANY), 0);
	}
	// A u32 per slot, as kvx_gports and kvx_gtenant.
	static Fd slot_counters(const char *name)
	{
		return Fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, name, sizeof(__u32), sizeof(__u32),
					 KVX_GFLOWS_MAX, nullptr));
	}
	Fd gf_, guest_, brport_;
	uint16_t count_flows_ = 0;
};

// Counters that drifted (the GC's own deletions, lost datapath updates, a
// racing decrement below zero) are exact again after one sweep.
TEST_F(GcQuotaMaps, SweepRecountsEveryGuest)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0xc0a87a0a, g2 = 0xc0a87a0b, g3 = 0xc0a87a0c;
	for (uint16_t p = 0; p < 3; p++)
		add_flow(g1, uint16_t(5000 + p), KVX_CT_UDP, now - 10 * kSec); // live
	add_flow(g1, 5100, KVX_CT_UDP, now - 31 * kSec);		       // expired
	add_flow(g1, 5101, KVX_CT_ESTABLISHED, now - 3600 * kSec);	       // live (5 days)
	add_flow(g2, 6000, KVX_CT_CLOSE, now - 241 * kSec);		       // expired
	add_flow(g2, 6001, KVX_CT_SYN_SENT, now - 60 * kSec);		       // live
	set_count(g1, 99);
	set_count(g2, 0);
	set_count(g3, 0xffffffffu); // -1: a decrement raced below zero

	auto r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now, q());
	EXPECT_EQ(r.ct_deleted, 2u);
	EXPECT_EQ(count(g1), 4u);
	EXPECT_EQ(count(g2), 1u);
	EXPECT_EQ(count(g3), 0u);
	EXPECT_EQ(r.gflows_fixed, 3u);
	// Already exact: nothing rewritten.
	r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now, q());
	EXPECT_EQ(r.gflows_fixed, 0u);
	// Without the counters (older callers): the flows alone.
	r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now + 200 * kSec);
	EXPECT_EQ(r.gflows_fixed, 0u);
	EXPECT_EQ(count(g1), 4u) << "untouched without a gflows fd";
}

// attach (and a resume into another subnet) counts every flow, expired or
// not: the datapath counted them when it created them.
TEST_F(GcQuotaMaps, RecountCountsAllFlows)
{
	const uint32_t g1 = 0xc0a87a0a;
	add_flow(g1, 5000, KVX_CT_UDP, 1);
	add_flow(g1, 5001, KVX_CT_UDP, 1);
	EXPECT_EQ(gflows_recount(ct_.get(), q()), 1u);
	EXPECT_EQ(count(g1), 2u);
	EXPECT_EQ(gflows_recount(ct_.get(), q()), 0u);
}

// Inbound-opened flows are counted on their own counter (the datapath's
// separate inbound quota); the datapath's reclaim hold-off survives.
TEST_F(GcQuotaMaps, RecountKeepsDirectionsApartAndTheHoldoff)
{
	const uint32_t g1 = 0xc0a87a0b;
	add_flow(g1, 5000, KVX_CT_UDP, 1);
	add_flow(g1, 5001, KVX_CT_SYN_RECV, 1, KVX_CT_F_INBOUND);
	add_flow(g1, 5002, KVX_CT_ESTABLISHED, 1, KVX_CT_F_INBOUND | KVX_CT_F_STATIC);
	__u32 i = slot(g1);
	kvx_gflows_val v{};
	v.out = 7;
	v.reclaim_ns = 12345;
	ASSERT_EQ(bpf_map_update_elem(gf_.get(), &i, &v, BPF_ANY), 0);
	EXPECT_EQ(gflows_recount(ct_.get(), q()), 1u);
	const kvx_gflows_val got = counts(g1);
	EXPECT_EQ(got.out, 1u);
	EXPECT_EQ(got.in, 2u);
	EXPECT_EQ(got.reclaim_ns, 12345u);
}

// One guest that claims four addresses of the subnet (each bound to its MAC
// in kvx_guest) has one counter for all of them; another guest keeps its
// own, and an address nobody owns yet its own slot.  When an address
// changes owner, its flows go to the new owner's counter.
TEST_F(GcQuotaMaps, RecountCountsPerOwnerNotPerAddress)
{
	const uint32_t a[4] = {0xc0a87a0a, 0xc0a87a14, 0xc0a87a1e, 0xc0a87a28};
	const uint32_t other = 0xc0a87a63, nobody = 0xc0a87a64;
	for (uint32_t addr : a) {
		own(addr, 0x01);
		add_flow(addr, 5000, KVX_CT_UDP, 1);
		add_flow(addr, 5001, KVX_CT_SYN_RECV, 1, KVX_CT_F_INBOUND);
	}
	own(other, 0x02);
	add_flow(other, 5000, KVX_CT_UDP, 1);
	add_flow(nobody, 5000, KVX_CT_UDP, 1);
	ASSERT_NE(slot(a[0]), slot(other)) << "pick another seed: these MACs collide";
	EXPECT_EQ(gflows_recount(ct_.get(), q()), 3u);
	for (uint32_t addr : a) {
		EXPECT_EQ(slot(addr), slot(a[0]));
		EXPECT_EQ(counts(addr).out, 4u) << std::hex << addr;
		EXPECT_EQ(counts(addr).in, 4u) << std::hex << addr;
	}
	EXPECT_EQ(counts(other).out, 1u);
	EXPECT_EQ(counts(other).in, 0u);
	EXPECT_EQ(counts(nobody).out, 1u) << "an owner-less address counts in its own slot";

	// a[3] is taken over by the other guest (its first owner went idle).
	const __u32 first = slot(a[0]);
	own(a[3], 0x02);
	EXPECT_EQ(gflows_recount(ct_.get(), q()), 2u);
	kvx_gflows_val v{};
	ASSERT_EQ(bpf_map_lookup_elem(gf_.get(), &first, &v), 0);
	EXPECT_EQ(v.out, 3u);
	EXPECT_EQ(v.in, 3u);
	EXPECT_EQ(counts(other).out, 2u);
	EXPECT_EQ(counts(other).in, 1u);
}

// A guest is its bridge port (ct.h mac_slot): owners with different MACs
// on one port count in one slot; MACs the daemon has not placed share port
// 0's; when the daemon places one, the recount moves its flows there.
TEST_F(GcQuotaMaps, RecountCountsPerPortNotPerMac)
{
	const uint32_t a = 0xc0a87a0a, a2 = 0xc0a87a3c, u1 = 0xc0a87a3d, u2 = 0xc0a87a3e;
	own(a, 0x01);
	own(a2, 0x05);
	place({0x52, 0x54, 0x00, 0xaa, 0xbb, 0x05}, 1001); // a's port
	own(u1, 0x06);
	own(u2, 0x07);
	// u1's and u2's MACs not placed (yet).
	for (uint8_t m : {0x06, 0x07}) {
		kvx_xfdb_key k{};
		const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, m};
		std::memcpy(k.mac, mac, 6);
		ASSERT_EQ(bpf_map_delete_elem(brport_.get(), &k), 0);
	}
	for (uint32_t g : {a, a2, a2, u1, u2, u2})
		add_flow(g, uint16_t(5000 + (g & 0xff) + count_flows_++), KVX_CT_UDP, 1);
	gflows_recount(ct_.get(), q());
	EXPECT_EQ(slot(a2), slot(a));
	EXPECT_EQ(counts(a).out, 3u) << "two MACs, one port, one counter";
	EXPECT_EQ(slot(u1), slot(u2));
	EXPECT_EQ(slot(u1), kvx_port_slot(0, kSeed));
	EXPECT_EQ(counts(u1).out, 3u) << "MACs of no known port share one counter";
	place({0x52, 0x54, 0x00, 0xaa, 0xbb, 0x07}, 1007);
	gflows_recount(ct_.get(), q());
	EXPECT_EQ(counts(u1).out, 1u);
	EXPECT_EQ(counts(u2).out, 2u) << "placed: its own port's counter";
	EXPECT_EQ(counts(a).out, 3u);
}

// The port limit's counters (kvx_gports) are recounted from kvx_bind: a
// guest's dynamic bindings (OUT halves), not its static ones.
TEST_F(GcQuotaMaps, PortCountersCountDynamicBindings)
{
	const uint32_t g1 = 0xc0a87a0a, g2 = 0xc0a87a0b;
	auto add_pair = [&](uint32_t guest, uint16_t gport, uint16_t ext, uint16_t flags) {
		kvx_bind_key ok{}, ik{};
		ok.dir = KVX_BIND_OUT;
		ok.proto = IPPROTO_TCP;
		ok.addr = htonl(guest);
		ok.port = htons(gport);
		ik.dir = KVX_BIND_IN;
		ik.proto = IPPROTO_TCP;
		ik.addr = htonl(0xc0000205);
		ik.port = htons(ext);
		kvx_bind_val ov{}, iv{};
		ov.addr = ik.addr;
		ov.port = ik.port;
		ov.flags = flags;
		iv.addr = ok.addr;
		iv.port = ok.port;
		iv.flags = flags;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ik, &iv, BPF_NOEXIST), 0);
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ok, &ov, BPF_NOEXIST), 0);
	};
	own(g1, 0x01);
	own(g2, 0x02);
	add_pair(g1, 40000, 1500, 0);
	add_pair(g1, 40001, 1501, 0);
	add_pair(g1, 22, 2222, KVX_BIND_F_STATIC); // a port forward: not counted
	add_pair(g2, 40000, 1502, 0);
	// Indexed and sized like kvx_gflows: the owner's slot.
	Fd gp = slot_counters("t_gports");
	ASSERT_GE(gp.get(), 0) << "bpf_map_create(t_gports): " << std::strerror(errno);
	auto get = [&](uint32_t g) {
		__u32 i = slot(g), v = 0;
		EXPECT_EQ(bpf_map_lookup_elem(gp.get(), &i, &v), 0);
		return v;
	};
	auto put = [&](uint32_t g, __u32 v) {
		__u32 i = slot(g);
		ASSERT_EQ(bpf_map_update_elem(gp.get(), &i, &v, BPF_ANY), 0);
	};
	put(g1, 7);
	put(g2, 0xffffffffu);
	EXPECT_EQ(gports_recount(bind_.get(), gp.get(), q()), 2u);
	EXPECT_EQ(get(g1), 2u);
	EXPECT_EQ(get(g2), 1u);
	EXPECT_EQ(gports_recount(bind_.get(), gp.get(), q()), 0u);
}

// Port overlapping's tenants per guest (kvx_gtenant) are recounted from
// kvx_bind: the OUT halves marked shared that no IN half belongs to, not
// the guest's own bindings; kvx_gports counts the own ones only.
TEST_F(GcQuotaMaps, TenantCountersCountSharedOutHalves)
{
	const uint32_t g1 = 0xc0a87a0a, g2 = 0xc0a87a0b;
	own(g1, 0x01);
	own(g2, 0x02);
	auto put_bind = [&](uint8_t dir, uint32_t addr, uint16_t port, uint32_t to,
			    uint16_t to_port, uint16_t flags) {
		kvx_bind_key k{};
		k.dir = dir;
		k.proto = IPPROTO_UDP;
		k.addr = htonl(addr);
		k.port = htons(port);
		kvx_bind_val v{};
		v.addr = htonl(to);
		v.port = htons(to_port);
		v.flags = flags;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_NOEXIST), 0);
	};
	const uint32_t ext = 0xc0000205;
	// g1 owns 1500 (shared) and has two tenants on it; g2 owns 1501.
	put_bind(KVX_BIND_IN, ext, 1500, g1, 40000, KVX_BIND_F_SHARED);
	put_bind(KVX_BIND_OUT, g1, 40000, ext, 1500, 0);
	put_bind(KVX_BIND_OUT, g1, 40001, ext, 1500, KVX_BIND_F_SHARED);
	put_bind(KVX_BIND_OUT, g1, 40002, ext, 1500, KVX_BIND_F_SHARED);
	put_bind(KVX_BIND_IN, ext, 1501, g2, 40000, 0);
	put_bind(KVX_BIND_OUT, g2, 40000, ext, 1501, 0);
	Fd gt = slot_counters("t_gtenant"), gp = slot_counters("t_gports");
	ASSERT_GE(gt.get(), 0) << std::strerror(errno);
	ASSERT_GE(gp.get(), 0) << std::strerror(errno);
	auto get = [&](const Fd &fd, uint32_t g) {
		__u32 i = slot(g), v = 0;
		EXPECT_EQ(bpf_map_lookup_elem(fd.get(), &i, &v), 0);
		return v;
	};
	{
		// A count the datapath left too high (a tenant's OUT half it
		// deleted as stale).
		__u32 i = slot(g2), v = 5;
		ASSERT_EQ(bpf_map_update_elem(gt.get(), &i, &v, BPF_ANY), 0);
	}
	EXPECT_EQ(tenants_recount(bind_.get(), gt.get(), q()), 2u);
	EXPECT_EQ(get(gt, g1), 2u);
	EXPECT_EQ(get(gt, g2), 0u);
	gports_recount(bind_.get(), gp.get(), q());
	EXPECT_EQ(get(gp, g1), 1u);
	EXPECT_EQ(get(gp, g2), 1u);
}

// Relay's addresses per guest (kvx_gaddrs) are recounted from kvx_nd:
// every entry of a guest MAC (owned, pending, defended), in the slot of
// the bridge port that MAC is on (kvx_brport), so that a guest sending
// from several MACs has one count; MACs of no known port share port 0's;
// the host's entries count for nobody.
TEST_F(GcQuotaMaps, AddressCountersCountRelayAddressesPerBridgePort)
{
	Fd nd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_nd", sizeof(kvx_nd_key), sizeof(kvx_nd_val), 64,
			     nullptr));
	ASSERT_GE(nd.get(), 0) << "bpf_map_create(t_nd): " << std::strerror(errno);
	Fd ga = slot_counters("t_gaddrs");
	ASSERT_GE(ga.get(), 0) << "bpf_map_create(t_gaddrs): " << std::strerror(errno);
	Fd bp(bpf_map_create(BPF_MAP_TYPE_HASH, "t_brport", sizeof(kvx_xfdb_key),
			     sizeof(kvx_xfdb_val), 64, nullptr));
	ASSERT_GE(bp.get(), 0) << "bpf_map_create(t_brport): " << std::strerror(errno);
	const uint8_t a[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01};
	const uint8_t a2[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x11}; // a's port, another MAC
	const uint8_t b[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02};
	const uint8_t c[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x03}; // port not known
	auto port = [&](const uint8_t *mac, uint32_t ifindex) {
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac, 6);
		kvx_xfdb_val v{};
		v.ifindex = ifindex;
		ASSERT_EQ(bpf_map_update_elem(bp.get(), &k, &v, BPF_ANY), 0);
	};
	port(a, 11);
	port(a2, 11);
	port(b, 12);
	auto add = [&](uint8_t last, const uint8_t *mac, uint8_t state) {
		kvx_nd_key k{};
		k.addr[0] = htonl(0x20010db8);
		k.addr[3] = htonl(last);
		kvx_nd_val v{};
		if (mac)
			std::memcpy(v.mac, mac, 6);
		v.state = state;
		ASSERT_EQ(bpf_map_update_elem(nd.get(), &k, &v, BPF_NOEXIST), 0);
	};
	add(1, a, KVX_ND_OWNED);
	add(2, a, KVX_ND_PENDING);
	add(3, a2, KVX_ND_DUP);
	add(4, b, KVX_ND_OWNED);
	add(5, nullptr, KVX_ND_HOST);
	add(6, c, KVX_ND_OWNED);
	QuotaMaps qm = q();
	qm.brport_fd = bp.get();
	auto get = [&](uint32_t ifindex) {
		__u32 i = kvx_port_slot(ifindex, kSeed), v = 0;
		EXPECT_EQ(bpf_map_lookup_elem(ga.get(), &i, &v), 0);
		return v;
	};
	__u32 i = kvx_port_slot(11, kSeed), v = 9;
	ASSERT_EQ(bpf_map_update_elem(ga.get(), &i, &v, BPF_ANY), 0);
	EXPECT_EQ(gaddrs_recount(nd.get(), ga.get(), qm), 3u);
	EXPECT_EQ(get(11), 3u) << "two MACs on one port, one count";
	EXPECT_EQ(get(12), 1u);
	EXPECT_EQ(get(0), 1u) << "a MAC of no known port";
	__u32 mi = kvx_guest_slot6(a, nullptr, kSeed), mv = 0;
	EXPECT_EQ(bpf_map_lookup_elem(ga.get(), &mi, &mv), 0);
	EXPECT_EQ(mv, 0u) << "counted per MAC";
	EXPECT_EQ(gaddrs_recount(nd.get(), ga.get(), qm), 0u);
}

// Relay's flows (the guest's own address outside) count in the slot of the
// address's kvx_nd owner's bridge port, as the datapath counts them (ct6.h
// ct6_slot_in), whether a relay mapping's pair of the address to itself
// (no MAC in it) is there or not: never the address's own slot.  Flows
// without the slot they recorded (older entries) are counted so.
TEST_F(GcQuotaMaps, RelayFlowsCountInTheirOwnersPortSlotThroughRelayMappings)
{
	Fd ct6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct6", sizeof(kvx_ct6_key), sizeof(kvx_ct6_val),
			      64, nullptr));
	Fd bind6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind6", sizeof(kvx_bind6_key),
				sizeof(kvx_bind6_val), 64, nullptr));
	Fd nd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_nd", sizeof(kvx_nd_key), sizeof(kvx_nd_val), 64,
			     nullptr));
	Fd bp(bpf_map_create(BPF_MAP_TYPE_HASH, "t_brport", sizeof(kvx_xfdb_key),
			     sizeof(kvx_xfdb_val), 64, nullptr));
	for (const Fd *f : {&ct6, &bind6, &nd, &bp})
		ASSERT_GE(f->get(), 0) << std::strerror(errno);
	const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x07};
	const __be32 g[4] = {htonl(0x20010db8), htonl(0x770000), 0, htonl(0x7)};
	kvx_xfdb_key bk{};
	std::memcpy(bk.mac, mac, 6);
	kvx_xfdb_val bv{};
	bv.ifindex = 21;
	ASSERT_EQ(bpf_map_update_elem(bp.get(), &bk, &bv, BPF_ANY), 0);
	kvx_nd_key nk{};
	std::memcpy(nk.addr, g, 16);
	kvx_nd_val nv{};
	std::memcpy(nv.mac, mac, 6);
	nv.state = KVX_ND_OWNED;
	ASSERT_EQ(bpf_map_update_elem(nd.get(), &nk, &nv, BPF_ANY), 0);
	// The relay mapping '[g]:22' tcp: its IN half, the address to itself.
	kvx_bind6_key ik{};
	kvx_bind6_val iv{};
	ik.dir = KVX_BIND_IN;
	ik.proto = IPPROTO_TCP;
	ik.port = htons(22);
	std::memcpy(ik.addr, g, 16);
	std::memcpy(iv.addr, g, 16);
	iv.bind.port = htons(22);
	iv.bind.flags = KVX_BIND_F_STATIC;
	ASSERT_EQ(bpf_map_update_elem(bind6.get(), &ik, &iv, BPF_NOEXIST), 0);
	// Two flows opened from outside through it, one the guest opened
	// from another port; none records its slot.
	auto flow = [&](uint16_t port, uint8_t rem, uint8_t flags) {
		kvx_ct6_key k{};
		k.proto = IPPROTO_TCP;
		std::memcpy(k.int_addr, g, 16);
		k.int_port = htons(port);
		k.rem_addr[0] = htonl(0x20010db8);
		k.rem_addr[3] = htonl(rem);
		k.rem_port = htons(40000);
		kvx_ct6_val v{};
		v.ct.state = KVX_CT_ESTABLISHED;
		v.ct.flags = flags;
		v.ct.last_seen_ns = 1;
		v.ct.ext_port = k.int_port;
		std::memcpy(v.ext_addr, g, 16);
		ASSERT_EQ(bpf_map_update_elem(ct6.get(), &k, &v, BPF_NOEXIST), 0);
	};
	flow(22, 1, KVX_CT_F_INBOUND | KVX_CT_F_STATIC);
	flow(22, 2, KVX_CT_F_INBOUND | KVX_CT_F_STATIC);
	flow(41000, 3, 0);
	QuotaMaps qm = q();
	qm.ct6_fd = ct6.get();
	qm.bind6_fd = bind6.get();
	qm.nd_fd = nd.get();
	qm.brport_fd = bp.get();
	gflows_recount(ct_.get(), qm);
	__u32 ps = kvx_port_slot(21, kSeed);
	kvx_gflows_val v{};
	ASSERT_EQ(bpf_map_lookup_elem(gf_.get(), &ps, &v), 0);
	EXPECT_EQ(v.in, 2u) << "the mapping's flows: its owner's port";
	EXPECT_EQ(v.out, 1u);
	__u32 as = kvx_guest_slot6(nullptr, g, kSeed);
	kvx_gflows_val a{};
	if (as != ps && bpf_map_lookup_elem(gf_.get(), &as, &a) == 0) {
		EXPECT_EQ(a.in, 0u) << "never the address's slot";
		EXPECT_EQ(a.out, 0u);
	}
}

// An upgrade over a pinned kvx_nd of ABI 10..16 (24-byte values): attach
// replaces the map and carries the guests' entries into the new layout
// (control/relay.hpp carry_nd); the host's entries are attach's to write.
TEST_F(GcQuotaMaps, RelayOwnersOfTheOlderLayoutAreCarriedOver)
{
	Fd old(bpf_map_create(BPF_MAP_TYPE_HASH, "t_nd16", sizeof(kvx_nd_key), 24, 16, nullptr));
	ASSERT_GE(old.get(), 0) << std::strerror(errno);
	Fd nd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_nd", sizeof(kvx_nd_key), sizeof(kvx_nd_val), 16,
			     nullptr));
	ASSERT_GE(nd.get(), 0) << std::strerror(errno);
	auto put = [&](uint8_t last, uint8_t state, uint64_t seen) {
		kvx_nd_key k{};
		k.addr[0] = htonl(0x20010db8);
		k.addr[3] = htonl(last);
		uint8_t v[24] = {0x52, 0x54, 0, 0, 7, last, state, 0};
		const uint32_t ifindex = 9;
		std::memcpy(v + 8, &ifindex, 4);
		std::memcpy(v + 16, &seen, 8);
		ASSERT_EQ(bpf_map_update_elem(old.get(), &k, v, BPF_NOEXIST), 0);
	};
	put(1, KVX_ND_OWNED, 1000);
	put(2, KVX_ND_PENDING, 2000);
	put(3, KVX_ND_HOST, 0);
	EXPECT_EQ(carry_nd(old.get(), nd.get()), 2u);
	auto get = [&](uint8_t last) -> std::optional<kvx_nd_val> {
		kvx_nd_key k{};
		k.addr[0] = htonl(0x20010db8);
		k.addr[3] = htonl(last);
		kvx_nd_val v{};
		if (bpf_map_lookup_elem(nd.get(), &k, &v) != 0)
			return std::nullopt;
		return v;
	};
	const std::optional<kvx_nd_val> a = get(1), b = get(2);
	ASSERT_TRUE(a.has_value());
	EXPECT_EQ(a->state, KVX_ND_OWNED);
	EXPECT_EQ(a->mac[5], 1);
	EXPECT_EQ(a->ifindex, 9u);
	EXPECT_EQ(a->last_seen_ns, 1000u);
	ASSERT_TRUE(b.has_value());
	EXPECT_EQ(b->state, KVX_ND_PENDING);
	EXPECT_EQ(b->dad_ns, 2000u);
	EXPECT_EQ(b->dad_probes, 1);
	EXPECT_FALSE(get(3).has_value()) << "the host's entry carried";
	// A map of another key is nobody's kvx_nd: nothing carried.
	Fd other(bpf_map_create(BPF_MAP_TYPE_HASH, "t_other", 8, 24, 4, nullptr));
	ASSERT_GE(other.get(), 0) << std::strerror(errno);
	EXPECT_EQ(carry_nd(other.get(), nd.get()), 0u);
}

// The GC's correction of a datapath counter measured by a dump between
// two readings of it: a count between them is what the datapath's own
// activity during the dump explains; only the rest is drift.
TEST(GcQuota, CounterCorrectionOnlyForDrift)
{
	struct Case {
		uint32_t counted, before, after;
		int64_t want;
	} cases[] = {
		{5, 5, 5, 0},		{3, 5, 5, -2},
		{7, 5, 5, 2},		{6, 5, 7, 0},
		{6, 7, 5, 0},		{2, 5, 7, -3},
		{9, 7, 5, 2},		{1, 0xffffffffu, 0xffffffffu, 2}, // below zero: -1
		{0, 3, 0xfffffffeu, 0},					  // -2..3
	};
	for (const auto &c : cases)
		EXPECT_EQ(counter_correction(c.counted, c.before, c.after), c.want)
			<< c.counted << " between " << c.before << " and " << c.after;
}

// The datapath counts a guest's bindings while the GC corrects the
// counters: its +1/-1 are never lost to a correction (the GC adds through a
// mapping of the counters instead of writing them back), and real drift is
// still corrected.  The datapath is played where a write-back would lose
// its update: after the GC's last reading of the counters, before its
// correction, for the very guest being corrected (bind_create's insert
// then +1, bind_recycle's delete then -1).
TEST_F(GcQuotaMaps, PortCorrectionKeepsConcurrentDatapathUpdates)
{
	const uint32_t g1 = 0xc0a87a0a, g2 = 0xc0a87a0b;
	own(g1, 0x01);
	own(g2, 0x02);
	LIBBPF_OPTS(bpf_map_create_opts, mmapable, .map_flags = BPF_F_MMAPABLE);
	Fd gp(bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_gports", sizeof(__u32), sizeof(__u32),
			     KVX_GFLOWS_MAX, &mmapable));
	ASSERT_GE(gp.get(), 0) << "bpf_map_create(t_gports): " << std::strerror(errno);
	const size_t len = size_t{KVX_GFLOWS_MAX} * 8; // values 8-byte aligned
	void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, gp.get(), 0);
	ASSERT_NE(m, MAP_FAILED) << std::strerror(errno);
	auto counter = [&](uint32_t g) {
		return reinterpret_cast<uint32_t *>(static_cast<char *>(m) + size_t{slot(g)} * 8);
	};
	auto out_key = [](uint32_t guest, uint16_t port) {
		return bind_key(KVX_BIND_OUT, IPPROTO_TCP, guest, port);
	};
	const kvx_bind_val ext{};
	// g1: two bindings, counted 7 (drift to correct); g2: two, counted 2.
	for (uint32_t g : {g1, g2})
		for (uint16_t p : {40000, 40001}) {
			const kvx_bind_key k = out_key(g, p);
			ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &ext, BPF_NOEXIST), 0);
		}
	*counter(g1) = 7;
	*counter(g2) = 2;
	const kvx_bind_key g1_new = out_key(g1, 40002), g2_gone = out_key(g2, 40001);
	EXPECT_EQ(gports_recount(bind_.get(), gp.get(), q(),
				 [&] {
					 ASSERT_EQ(bpf_map_update_elem(bind_.get(), &g1_new, &ext,
								       BPF_NOEXIST),
						   0);
					 __atomic_fetch_add(counter(g1), 1, __ATOMIC_SEQ_CST);
					 ASSERT_EQ(bpf_map_delete_elem(bind_.get(), &g2_gone), 0);
					 __atomic_fetch_sub(counter(g2), 1, __ATOMIC_SEQ_CST);
				 }),
		  1u);
	// A write-back of the count made before the datapath's update would
	// leave 2 and 2.
	EXPECT_EQ(*counter(g1), 3u) << "drift corrected, the datapath's +1 kept";
	EXPECT_EQ(*counter(g2), 1u) << "no drift: the datapath's -1 alone";
	// The next sweep finds nothing to correct.
	EXPECT_EQ(gports_recount(bind_.get(), gp.get(), q()), 0u);
	munmap(m, len);
}

// A guest's IPv6 flows and bindings count in the slot of the MAC their IN
// half delivers to, the slot its IPv4 flows count in (the datapath's rule,
// ct6.h ct6_slot): a recount counts both families there; a flow whose IN
// half is gone counts in its address's slot.
TEST_F(GcQuotaMaps, Ipv6FlowsAndBindingsCountInTheOwnersSlot)
{
	const uint32_t g4 = 0xc0a87a0a;
	own(g4, 0x01);
	add_flow(g4, 5000, KVX_CT_UDP, 1);
	Fd ct6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct6", sizeof(kvx_ct6_key), sizeof(kvx_ct6_val),
			      64, nullptr));
	Fd bind6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind6", sizeof(kvx_bind6_key),
				sizeof(kvx_bind6_val), 64, nullptr));
	ASSERT_GE(ct6.get(), 0) << std::strerror(errno);
	ASSERT_GE(bind6.get(), 0) << std::strerror(errno);
	const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01}; // g4's owner
	__be32 guest[4] = {htonl(0xfd420000), 0, 0, htonl(0xa)};
	__be32 orphan[4] = {htonl(0xfd420000), 0, 0, htonl(0xb)};
	__be32 uplink[4] = {htonl(0x20010db8), htonl(0x770000), 0, htonl(2)};
	__be32 remote[4] = {htonl(0x20010db8), htonl(0x1000000), 0, htonl(0x10)};
	// The pair of fd42::a port 7000 at [uplink]:61000, and one of
	// fd42::b whose IN half is gone.
	auto pair = [&](const __be32 *g, uint16_t gport, uint16_t eport, bool with_in) {
		kvx_bind6_key ok{}, ik{};
		kvx_bind6_val ov{}, iv{};
		ok.dir = KVX_BIND_OUT;
		ok.proto = IPPROTO_UDP;
		ok.port = htons(gport);
		std::memcpy(ok.addr, g, 16);
		std::memcpy(ov.addr, uplink, 16);
		ov.bind.port = htons(eport);
		ik.dir = KVX_BIND_IN;
		ik.proto = IPPROTO_UDP;
		ik.port = htons(eport);
		std::memcpy(ik.addr, uplink, 16);
		std::memcpy(iv.addr, g, 16);
		iv.bind.port = htons(gport);
		std::memcpy(iv.bind.guest_mac, mac, 6);
		// The datapath names the MAC in the OUT half (bind6_out_insert);
		// an older one (zero) counts in the address's slot.
		if (with_in) {
			std::memcpy(ov.bind.guest_mac, mac, 6);
			ASSERT_EQ(bpf_map_update_elem(bind6.get(), &ik, &iv, BPF_NOEXIST), 0);
		}
		ASSERT_EQ(bpf_map_update_elem(bind6.get(), &ok, &ov, BPF_NOEXIST), 0);
	};
	pair(guest, 7000, 61000, true);
	pair(orphan, 7000, 61001, false);
	auto flow = [&](const __be32 *g, uint16_t eport, uint32_t rem_last, uint8_t flags) {
		kvx_ct6_key k{};
		k.proto = IPPROTO_UDP;
		std::memcpy(k.int_addr, g, 16);
		k.int_port = htons(7000);
		std::memcpy(k.rem_addr, remote, 16);
		k.rem_addr[3] = htonl(rem_last);
		k.rem_port = htons(53);
		kvx_ct6_val v{};
		v.ct.state = KVX_CT_UDP;
		v.ct.flags = flags;
		v.ct.last_seen_ns = 1;
		v.ct.ext_port = htons(eport);
		std::memcpy(v.ext_addr, uplink, 16);
		ASSERT_EQ(bpf_map_update_elem(ct6.get(), &k, &v, BPF_NOEXIST), 0);
	};
	flow(guest, 61000, 0x10, 0);
	flow(guest, 61000, 0x11, KVX_CT_F_INBOUND);
	flow(orphan, 61001, 0x10, 0);
	QuotaMaps both = q();
	both.ct6_fd = ct6.get();
	both.bind6_fd = bind6.get();
	gflows_recount(ct_.get(), both);
	const kvx_gflows_val g = counts(g4);
	EXPECT_EQ(g.out, 2u) << "g4's IPv4 flow and its MAC's IPv6 flow";
	EXPECT_EQ(g.in, 1u);
	__u32 oslot = kvx_guest_slot6(nullptr, orphan, kSeed);
	kvx_gflows_val o{};
	ASSERT_EQ(bpf_map_lookup_elem(gf_.get(), &oslot, &o), 0);
	EXPECT_EQ(o.out, 1u) << "no IN half: the address's slot";
	// Bindings (kvx_gports, slotted alike): the OUT halves.
	Fd gp = slot_counters("t_gports");
	ASSERT_GE(gp.get(), 0) << std::strerror(errno);
	EXPECT_EQ(gports_recount(bind_.get(), gp.get(), both), 2u);
	__u32 i = slot(g4), n = 0;
	ASSERT_EQ(bpf_map_lookup_elem(gp.get(), &i, &n), 0);
	EXPECT_EQ(n, 1u);
	ASSERT_EQ(bpf_map_lookup_elem(gp.get(), &oslot, &n), 0);
	EXPECT_EQ(n, 1u);
	// The same recount without the IPv6 tables would take them off again.
	gflows_recount(ct_.get(), q());
	EXPECT_EQ(counts(g4).out, 1u);
}

// An IPv6 table pair for the relief tests: TCP flows of fd42::a port
// 7000 + i at [2001:db8:77::2]:62000 + i, each with its IN half naming the
// MAC 52:54:00:aa:bb:01 (the owner of the IPv4 guest own(g, 0x01)), so they
// count in that guest's slot.
struct Ipv6Flows {
	Fd ct6{bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct6", sizeof(kvx_ct6_key), sizeof(kvx_ct6_val),
			      64, nullptr)};
	Fd bind6{bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind6", sizeof(kvx_bind6_key),
				sizeof(kvx_bind6_val), 64, nullptr)};

	void add(uint16_t i, uint8_t state, uint64_t last_seen_ns)
	{
		ASSERT_GE(ct6.get(), 0) << std::strerror(errno);
		ASSERT_GE(bind6.get(), 0) << std::strerror(errno);
		const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01};
		const __be32 guest[4] = {htonl(0xfd420000), 0, 0, htonl(0xa)};
		const __be32 uplink[4] = {htonl(0x20010db8), htonl(0x770000), 0, htonl(2)};
		kvx_bind6_key ik{};
		kvx_bind6_val iv{};
		ik.dir = KVX_BIND_IN;
		ik.proto = IPPROTO_TCP;
		ik.port = htons(uint16_t(62000 + i));
		std::memcpy(ik.addr, uplink, 16);
		std::memcpy(iv.addr, guest, 16);
		iv.bind.port = htons(uint16_t(7000 + i));
		std::memcpy(iv.bind.guest_mac, mac, 6);
		ASSERT_EQ(bpf_map_update_elem(bind6.get(), &ik, &iv, BPF_NOEXIST), 0);
		kvx_ct6_key k{};
		k.proto = IPPROTO_TCP;
		std::memcpy(k.int_addr, guest, 16);
		k.int_port = htons(uint16_t(7000 + i));
		k.rem_addr[0] = htonl(0x20010db8);
		k.rem_addr[3] = htonl(0x10);
		k.rem_port = htons(443);
		kvx_ct6_val v{};
		v.ct.state = state;
		v.ct.last_seen_ns = last_seen_ns;
		v.ct.ext_port = ik.port;
		std::memcpy(v.ext_addr, uplink, 16);
		ASSERT_EQ(bpf_map_update_elem(ct6.get(), &k, &v, BPF_NOEXIST), 0);
	}
	QuotaMaps with(QuotaMaps q) const
	{
		q.ct6_fd = ct6.get();
		q.bind6_fd = bind6.get();
		return q;
	}
};

// A dual-stack guest whose quota is full of one family's closed flows: the
// datapath's reclaim makes room only in the table it inserts into, so the
// GC's relief takes all the guest's quiet closed TCP flows of both tables
// (TIME_WAIT, CLOSE, quiet for 2 s) once it is over 7/8 of its quota, with
// the counter.  Never a live flow, one that just closed, another
// direction's or another guest's under its own quota.
TEST_F(GcQuotaMaps, ClosedFlowsGiveWayAcrossFamilies)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t quota = 16; // relief over 14
	const uint32_t g4 = 0xc0a87a0a, other = 0xc0a87a0b;
	own(g4, 0x01);
	own(other, 0x02);
	for (uint16_t p = 0; p < 10; p++)
		add_flow(g4, uint16_t(5000 + p), KVX_CT_ESTABLISHED, now - 500 * kSec);
	for (uint16_t p = 0; p < 4; p++) // TIME_WAIT, quiet 10..13 s
		add_flow(g4, uint16_t(5100 + p), KVX_CT_TIME_WAIT, now - (10 + p) * kSec);
	add_flow(g4, 5200, KVX_CT_TIME_WAIT, now - kSec); // just closed
	add_flow(g4, 5300, KVX_CT_CLOSE, now - 100 * kSec, KVX_CT_F_INBOUND);
	for (uint16_t p = 0; p < 5; p++)
		add_flow(other, uint16_t(6000 + p), KVX_CT_TIME_WAIT, now - 100 * kSec);

	// Three closed IPv6 flows of g4's MAC (closed 100-102 s ago).
	Ipv6Flows six;
	for (uint16_t i = 0; i < 3; i++)
		six.add(i, KVX_CT_CLOSE, now - (100 + i) * kSec);
	const QuotaMaps both = six.with(q());
	gflows_recount(ct_.get(), both);
	ASSERT_EQ(counts(g4).out, 18u) << "10 live, 5 TIME_WAIT, 3 IPv6 closed";
	ASSERT_EQ(counts(g4).in, 1u);
	ASSERT_EQ(counts(other).out, 5u);

	const ReliefResult r = quota_relief(ct_.get(), both, quota, now);
	EXPECT_EQ(r.deleted, 7u);
	EXPECT_EQ(r.guests, 1u);
	EXPECT_EQ(counts(g4).out, 11u) << "the counter with the flows";
	EXPECT_EQ(counts(g4).in, 1u) << "the inbound count is under its quota";
	EXPECT_EQ(counts(other).out, 5u);
	size_t v6_left = 0;
	for (const auto &kv : dump_hash<kvx_ct6_key, kvx_ct6_val>(six.ct6.get()))
		v6_left += kv.second.ct.state == KVX_CT_CLOSE;
	EXPECT_EQ(v6_left, 0u) << "the other family's closed flows went too";
	size_t live = 0, tw = 0, fresh = 0, others = 0;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_.get())) {
		if (k.int_addr == htonl(other))
			others++;
		else if (v.state == KVX_CT_ESTABLISHED)
			live++;
		else if (ntohs(k.int_port) == 5200)
			fresh++;
		else if (v.state == KVX_CT_TIME_WAIT)
			tw++;
	}
	EXPECT_EQ(live, 10u);
	EXPECT_EQ(fresh, 1u) << "closed 1 s ago: its last ACK may still come";
	EXPECT_EQ(tw, 0u);
	EXPECT_EQ(others, 5u);
	// Nothing over 7/8 any more: nothing to do.
	EXPECT_EQ(quota_relief(ct_.get(), both, quota, now).deleted, 0u);
	EXPECT_EQ(quota_relief(ct_.get(), both, 0, now).deleted, 0u) << "quota off";
}

// A SYN flood at a guest's forward: once its inbound count is over 7/8 of
// its quota, the relief takes its half-open inbound flows quiet for 2 s
// (their handshake would have completed by then), so a flood below about
// quota / (2 s + a tick) SYNs a second never reaches the quota and its
// early drop.  Never a young one, a live one, an outbound SYN_SENT flow,
// or another guest's under its quota.
TEST_F(GcQuotaMaps, QuietHalfOpenFlowsGiveWayAtTheInboundQuota)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t quota = 16; // relief over 14
	const uint32_t g4 = 0xc0a87a0a, other = 0xc0a87a0b;
	const uint8_t half = KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN | KVX_CT_F_SYNACK;
	own(g4, 0x01);
	own(other, 0x02);
	for (uint16_t p = 0; p < 12; p++)
		add_flow(g4, uint16_t(5000 + p), KVX_CT_SYN_RECV, now - (3 + p) * kSec, half);
	for (uint16_t p = 0; p < 2; p++)
		add_flow(g4, uint16_t(5100 + p), KVX_CT_SYN_RECV, now - kSec, half);
	add_flow(g4, 5200, KVX_CT_CLOSE, now - 10 * kSec, KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN);
	add_flow(g4, 5300, KVX_CT_ESTABLISHED, now - 10 * kSec, KVX_CT_F_INBOUND);
	add_flow(g4, 5400, KVX_CT_SYN_SENT, now - 10 * kSec);
	for (uint16_t p = 0; p < 5; p++)
		add_flow(other, uint16_t(6000 + p), KVX_CT_SYN_RECV, now - 100 * kSec, half);
	gflows_recount(ct_.get(), q());
	ASSERT_EQ(counts(g4).in, 16u);
	const ReliefResult r = quota_relief(ct_.get(), q(), quota, now);
	EXPECT_EQ(r.deleted, 13u) << "12 quiet SYN_RECV and the reset one";
	EXPECT_EQ(counts(g4).in, 3u);
	EXPECT_EQ(counts(g4).out, 1u);
	EXPECT_EQ(counts(other).in, 5u);
	std::set<uint16_t> left;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_.get()))
		if (k.int_addr == htonl(g4))
			left.insert(ntohs(k.int_port));
	EXPECT_EQ(left, (std::set<uint16_t>{5100, 5101, 5300, 5400}));
}

// IPv6 TIME_WAIT flows give way as IPv4's: their bindings keep the remotes
// that may still hold the port in TIME_WAIT (tw_remotes), so the flow is
// not what keeps the port from another guest.  Quiet closed flows of a
// guest over 7/8 of its quota all go, the longest closed first.
TEST_F(GcQuotaMaps, Ipv6TimeWaitGivesWayAsIpv4s)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t quota = 16; // relief over 14
	const uint32_t g4 = 0xc0a87a0a;
	own(g4, 0x01);
	for (uint16_t p = 0; p < 10; p++)
		add_flow(g4, uint16_t(5000 + p), KVX_CT_ESTABLISHED, now - 500 * kSec);
	Ipv6Flows six;
	for (uint16_t i = 0; i < 8; i++) // TIME_WAIT, closed 100..107 s ago
		six.add(i, KVX_CT_TIME_WAIT, now - (107 - i) * kSec);
	six.add(8, KVX_CT_TIME_WAIT, now - kSec); // just closed
	const QuotaMaps both = six.with(q());
	gflows_recount(ct_.get(), both);
	ASSERT_EQ(counts(g4).out, 19u);
	EXPECT_EQ(quota_relief(ct_.get(), both, quota, now).deleted, 8u);
	EXPECT_EQ(counts(g4).out, 11u);
	std::set<uint16_t> left;
	for (const auto &[k, v] : dump_hash<kvx_ct6_key, kvx_ct6_val>(six.ct6.get()))
		left.insert(ntohs(k.int_port));
	EXPECT_EQ(left, (std::set<uint16_t>{7008}))
		<< "closed 1 s ago: its last ACK may still come";
}

// An IPv6 flow counts in the slot it recorded when made (abi.h
// kvx_ct_val.slot), if recorded under the current seed; a record of an earlier
// another seed (an attach that drew a new one) reads as none: the flow
// counts in its binding's slot, as before the record.
TEST_F(GcQuotaMaps, Ipv6FlowCountsInItsRecordedSlotOfThisSeed)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g4 = 0xc0a87a0a;
	own(g4, 0x01);
	Ipv6Flows six;
	six.add(0, KVX_CT_ESTABLISHED, now);
	six.add(1, KVX_CT_ESTABLISHED, now);
	const QuotaMaps both = six.with(q());
	const uint32_t other = (slot(g4) + 1) & (KVX_GFLOWS_MAX - 1);
	auto record = [&](uint16_t i, uint32_t rec) {
		for (auto [k, v] : dump_hash<kvx_ct6_key, kvx_ct6_val>(six.ct6.get())) {
			if (ntohs(k.int_port) != 7000 + i)
				continue;
			v.ct.slot = rec;
			ASSERT_EQ(bpf_map_update_elem(six.ct6.get(), &k, &v, BPF_EXIST), 0);
		}
	};
	record(0, kvx_ct_slot_rec(other, both.seed));
	ASSERT_NE(kvx_ct_slot_tag(both.seed + 1), kvx_ct_slot_tag(both.seed));
	record(1, kvx_ct_slot_rec(other, both.seed + 1)); // another seed's
	gflows_recount(ct_.get(), both);
	EXPECT_EQ(counts(g4).out, 1u) << "the stale record: its binding's slot, the guest's";
	kvx_gflows_val at{};
	ASSERT_EQ(bpf_map_lookup_elem(gf_.get(), &other, &at), 0);
	EXPECT_EQ(at.out, 1u) << "the record of this seed";
}

// An IPv4 flow counts where it was counted when made (abi.h kvx_ct_val.slot):
// flows a MAC opened in the shared slot of MACs of no port stay there
// after the MAC is placed on its port (before, the recount moved them to
// the port, and the shared slot was free for the next made-up MAC's
// share); a record of another seed reads as none (the owner's
// slot now), as do entries of an older version (0).
TEST_F(GcQuotaMaps, Ipv4FlowCountsInItsRecordedSlotOfThisSeed)
{
	const uint32_t u = 0xc0a87a3d;
	const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x06};
	own(u, 0x06);
	kvx_xfdb_key bk{};
	std::memcpy(bk.mac, mac, 6);
	ASSERT_EQ(bpf_map_delete_elem(brport_.get(), &bk), 0); // not placed
	const uint32_t shared = kvx_port_slot(0, kSeed);
	ASSERT_EQ(slot(u), shared);
	for (uint16_t p = 0; p < 4; p++)
		add_flow(u, uint16_t(5000 + p), KVX_CT_UDP, 1);
	auto record = [&](uint16_t gport, uint32_t rec) {
		for (auto [k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_.get())) {
			if (ntohs(k.int_port) != gport)
				continue;
			v.slot = rec;
			ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_EXIST), 0);
		}
	};
	// Three made while the MAC was of no port, as the datapath records
	// them; one of another seed.
	for (uint16_t p = 0; p < 3; p++)
		record(uint16_t(5000 + p), kvx_ct_slot_rec(shared, kSeed));
	ASSERT_NE(kvx_ct_slot_tag(kSeed + 1), kvx_ct_slot_tag(kSeed));
	record(5003, kvx_ct_slot_rec(shared, kSeed + 1));
	place(mac, 1006);
	ASSERT_NE(slot(u), shared);
	gflows_recount(ct_.get(), q());
	kvx_gflows_val at{};
	ASSERT_EQ(bpf_map_lookup_elem(gf_.get(), &shared, &at), 0);
	EXPECT_EQ(at.out, 3u) << "the records of this seed: still the shared slot's";
	EXPECT_EQ(counts(u).out, 1u) << "no record of this seed: the owner's port's now";
	// The sweep, which recounts the flows it keeps, alike.
	set_count(u, 0);
	const auto r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), 2, q());
	EXPECT_EQ(r.ct_deleted, 0u);
	ASSERT_EQ(bpf_map_lookup_elem(gf_.get(), &shared, &at), 0);
	EXPECT_EQ(at.out, 3u);
	EXPECT_EQ(counts(u).out, 1u);
}

// A dynamic binding counts where it was counted when made (abi.h
// kvx_bind_val.slot), ports and tenants, both families: the ports a MAC
// bound in the shared slot of MACs of no port stay there after the MAC is
// placed (before, the recount moved them to the port, past its limit, and
// freed the shared slot); no record of this seed: the owner's slot now.
TEST_F(GcQuotaMaps, BindingCountsInItsRecordedSlotOfThisSeed)
{
	const uint32_t u = 0xc0a87a3d;
	const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x06};
	own(u, 0x06);
	const uint32_t shared = kvx_port_slot(0, kSeed);
	const uint32_t rec = kvx_ct_slot_rec(shared, kSeed);
	const uint32_t stale = kvx_ct_slot_rec(shared, kSeed + 1);
	ASSERT_NE(kvx_ct_slot_tag(kSeed + 1), kvx_ct_slot_tag(kSeed));
	auto put_out = [&](uint16_t gport, uint16_t flags, uint32_t slot_rec) {
		kvx_bind_key k{};
		k.dir = KVX_BIND_OUT;
		k.proto = IPPROTO_UDP;
		k.addr = htonl(u);
		k.port = htons(gport);
		kvx_bind_val v{};
		v.addr = htonl(0xc0000205);
		v.port = htons(gport);
		v.flags = flags;
		v.slot = slot_rec;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_NOEXIST), 0);
	};
	put_out(40000, 0, rec);
	put_out(40001, 0, rec);
	put_out(40002, 0, stale); // another seed's
	put_out(40003, KVX_BIND_F_SHARED, rec);
	put_out(40004, KVX_BIND_F_SHARED, 0); // an older version's
	Ipv6Flows six;
	ASSERT_GE(six.bind6.get(), 0) << std::strerror(errno);
	for (uint16_t i = 0; i < 2; i++) {
		kvx_bind6_key k{};
		k.dir = KVX_BIND_OUT;
		k.proto = IPPROTO_UDP;
		k.port = htons(uint16_t(7000 + i));
		k.addr[0] = htonl(0xfd420000);
		k.addr[3] = htonl(0x3d);
		kvx_bind6_val v{};
		v.bind.port = k.port;
		std::memcpy(v.bind.guest_mac, mac, 6);
		v.bind.slot = i == 0 ? rec : 0;
		ASSERT_EQ(bpf_map_update_elem(six.bind6.get(), &k, &v, BPF_NOEXIST), 0);
	}
	place(mac, 1006); // placed since
	const uint32_t port = slot(u);
	ASSERT_NE(port, shared);
	Fd gt = slot_counters("t_gtenant"), gp = slot_counters("t_gports");
	ASSERT_GE(gt.get(), 0) << std::strerror(errno);
	ASSERT_GE(gp.get(), 0) << std::strerror(errno);
	auto at = [](const Fd &fd, uint32_t i) {
		__u32 v = 0;
		EXPECT_EQ(bpf_map_lookup_elem(fd.get(), &i, &v), 0);
		return v;
	};
	gports_recount(bind_.get(), gp.get(), six.with(q()));
	tenants_recount(bind_.get(), gt.get(), q());
	EXPECT_EQ(at(gp, shared), 3u) << "two IPv4 ports and one IPv6 recorded there";
	EXPECT_EQ(at(gp, port), 2u) << "no record of this seed: the MAC's port's now";
	EXPECT_EQ(at(gt, shared), 1u);
	EXPECT_EQ(at(gt, port), 1u);
}

// A table fuller than 7/8 (56 of the test's 64 entries): every guest's
// quiet closed flows go, under its quota or not (the datapath's full-table
// rule, ahead of need); live ones and one that just closed stay.
TEST_F(GcQuotaMaps, AFullTableLosesEveryGuestsClosedFlows)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0xc0a87a0a, g2 = 0xc0a87a0b;
	for (uint16_t p = 0; p < 40; p++)
		add_flow(g1, uint16_t(5000 + p), KVX_CT_ESTABLISHED, now - 10 * kSec);
	for (uint16_t p = 0; p < 15; p++)
		add_flow(g2, uint16_t(6000 + p), KVX_CT_TIME_WAIT, now - 30 * kSec);
	add_flow(g2, 6100, KVX_CT_TIME_WAIT, now - kSec);
	gflows_recount(ct_.get(), q());
	EXPECT_EQ(quota_relief(ct_.get(), q(), 0, now).deleted, 0u) << "56 of 64: not over 7/8";
	add_flow(g2, 6101, KVX_CT_CLOSE, now - 30 * kSec);
	gflows_recount(ct_.get(), q());
	const ReliefResult r = quota_relief(ct_.get(), q(), 0, now);
	EXPECT_EQ(r.deleted, 16u);
	EXPECT_EQ(count(g2), 1u);
	EXPECT_EQ(count(g1), 40u);
}

TEST(GcQuota, DefaultGuestPortsIsSevenEighthsOfThePool)
{
	EXPECT_EQ(default_guest_ports(31744 + 4536), 31745u);
	EXPECT_EQ(default_guest_ports(8), 7u);
	EXPECT_EQ(default_guest_ports(1), 1u) << "never 0 (which means off)";
	EXPECT_EQ(default_guest_ports(2), 2u) << "a tiny --nat-ports range: no eighth to keep";
	EXPECT_EQ(default_guest_ports(512), 448u);
}

TEST(GcQuota, DefaultTenantCapIsAnEighthOfTheBindingTable)
{
	EXPECT_EQ(default_tenant_cap(KVX_BIND_DEFAULT_SIZE), KVX_BIND_DEFAULT_SIZE / 8);
	EXPECT_EQ(default_tenant_cap(64), 8u);
	EXPECT_EQ(default_tenant_cap(4), 1u) << "never 0 (which means none)";
}

} // namespace
