// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <map>

#include "base/fd.hpp"
#include "control/gc.hpp"
#include "model/timeouts.hpp"
#include "kernel_maps.hpp"
#include "kernel/maps.hpp"

using namespace kvmxdp;

namespace {

constexpr uint64_t kSec = 1000000000ULL;

} // namespace

// The expiry rule itself (kvmxdp/ct_rules.h): ct_rules_test.cpp.

TEST(Gc, BindingGrace)
{
	EXPECT_FALSE(bind_idle(100 * kSec, 100 * kSec));
	EXPECT_FALSE(bind_idle(100 * kSec, 130 * kSec));
	EXPECT_TRUE(bind_idle(100 * kSec, 130 * kSec + 1));
	EXPECT_FALSE(bind_idle(200 * kSec, 100 * kSec));
	EXPECT_GT(boottime_ns(), 0u);
}

// The sweep itself on real (unpinned) BPF hash maps: needs root/CAP_BPF.
class GcMaps : public test::KernelMapsTest {
protected:
	void add_flow(uint32_t guest, uint16_t gport, uint32_t ext, uint16_t eport, uint8_t proto,
		      uint8_t state, uint64_t seen)
	{
		kvx_ct_key k{};
		k.int_addr = htonl(guest);
		k.rem_addr = htonl(0x08080808);
		k.int_port = htons(gport);
		k.rem_port = htons(53);
		k.proto = proto;
		kvx_ct_val v{};
		v.state = state;
		v.last_seen_ns = seen;
		v.ext_addr = htonl(ext);
		v.ext_port = htons(eport);
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_NOEXIST), 0);
	}

	void add_pair(uint32_t guest, uint16_t gport, uint32_t ext, uint16_t eport, uint8_t proto,
		      uint64_t used, uint16_t flags = 0)
	{
		put_pair(proto, guest, gport, ext, eport, used, flags);
	}

	bool has_bind(uint8_t dir, uint32_t addr, uint16_t port, uint8_t proto)
	{
		kvx_bind_val v{};
		return lookup_bind(dir, proto, addr, port, &v);
	}
};

TEST_F(GcMaps, SweepDeletesExpiredFlowsAndUnreferencedIdleBindings)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0x0a000002, g2 = 0x0a000003, ext = 0xc0a80105;
	// Live UDP flow with its binding: both stay.
	add_flow(g1, 5000, ext, 61000, IPPROTO_UDP, KVX_CT_UDP, now - 10 * kSec);
	add_pair(g1, 5000, ext, 61000, IPPROTO_UDP, now - 100 * kSec);
	// Expired UDP flow; its binding idle for 100 s: both go.
	add_flow(g2, 5001, ext, 61001, IPPROTO_UDP, KVX_CT_UDP, now - 31 * kSec);
	add_pair(g2, 5001, ext, 61001, IPPROTO_UDP, now - 100 * kSec);
	// Expired TCP flow, binding used 5 s ago (a new flow being created):
	// the flow goes, the binding stays (grace).
	add_flow(g2, 6000, ext, 61002, IPPROTO_TCP, KVX_CT_CLOSE, now - 11 * kSec);
	add_pair(g2, 6000, ext, 61002, IPPROTO_TCP, now - 5 * kSec);
	// Static binding without any flow: never collected.
	add_pair(g2, 22, ext, 2222, IPPROTO_TCP, 0, KVX_BIND_F_STATIC);

	auto r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now);
	EXPECT_EQ(r.ct_deleted, 2u);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 1u);
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61001, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g2, 5001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61002, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 2222, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g2, 22, IPPROTO_TCP));
}

// A flow the dump saw expired but a packet refreshed since: the sweep's
// delete re-reads it and keeps it (and so its binding).
TEST_F(GcMaps, AFlowRefreshedSinceTheDumpIsKept)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0x0a000002, ext = 0xc0a80105;
	add_flow(g1, 5000, ext, 61000, IPPROTO_UDP, KVX_CT_UDP, now - 31 * kSec);
	kvx_ct_key k{};
	kvx_ct_val v{};
	ASSERT_EQ(bpf_map_get_next_key(ct_.get(), nullptr, &k), 0);
	ASSERT_EQ(bpf_map_lookup_elem(ct_.get(), &k, &v), 0);
	ASSERT_TRUE(ct_expired(v, k.proto, default_timeouts(), now)); // as the dump saw it
	v.last_seen_ns = now - 1 * kSec;			       // the packet since
	ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_EXIST), 0);
	kvx_ct_val seen{};
	EXPECT_EQ(delete_if_expired(ct_.get(), k, default_timeouts(), now, &seen), FlowFate::Kept);
	EXPECT_EQ(seen.last_seen_ns, now - 1 * kSec);
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 1u);
	// Expired when re-read: deleted; then it is gone.
	EXPECT_EQ(delete_if_expired(ct_.get(), k, default_timeouts(), now + 31 * kSec),
		  FlowFate::Deleted);
	EXPECT_EQ(delete_if_expired(ct_.get(), k, default_timeouts(), now + 31 * kSec),
		  FlowFate::Gone);
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 0u);
}

TEST_F(GcMaps, FlushOldExternalAddress)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0x0a000002, old_ext = 0xc0a80105, new_ext = 0xc0a80106;
	add_flow(g1, 5000, old_ext, 61000, IPPROTO_UDP, KVX_CT_UDP, now);
	add_pair(g1, 5000, old_ext, 61000, IPPROTO_UDP, now);
	add_flow(g1, 5001, new_ext, 61001, IPPROTO_UDP, KVX_CT_UDP, now);
	add_pair(g1, 5001, new_ext, 61001, IPPROTO_UDP, now);
	// A static mapping (port forward) on the old address is configuration:
	// kept.
	add_pair(g1, 22, old_ext, 2222, IPPROTO_TCP, 0, KVX_BIND_F_STATIC);
	auto r = flush_ext_addr(ct_.get(), bind_.get(), htonl(old_ext));
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_FALSE(has_bind(KVX_BIND_IN, old_ext, 61000, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, new_ext, 61001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, old_ext, 2222, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 22, IPPROTO_TCP));
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 1u);
	// Address 0 ("none") flushes nothing.
	EXPECT_EQ(flush_ext_addr(ct_.get(), bind_.get(), 0).ct_deleted, 0u);
}

// A host service started on a port guests' bindings hold: the binding no
// flow uses goes whole, the one with a live connection only loses its OUT
// half (the connection keeps its port; the guest's next new flow leaves
// from another), static mappings and other ports are left alone.
TEST_F(GcMaps, HostListenerReleasesGuestBindingsOnItsPort)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0x0a000002, g2 = 0x0a000003, ext = 0xc0a80105;
	add_pair(g1, 5000, ext, 61000, IPPROTO_UDP, now); // idle, on the port
	add_pair(g2, 6000, ext, 61000, IPPROTO_TCP, now); // live, on the port
	add_flow(g2, 6000, ext, 61000, IPPROTO_TCP, KVX_CT_ESTABLISHED, now);
	add_pair(g1, 5001, ext, 61001, IPPROTO_UDP, now);		 // another port
	add_pair(g2, 22, ext, 61002, IPPROTO_TCP, 0, KVX_BIND_F_STATIC); // a forward
	std::vector<uint64_t> bits(KVX_PORTX_WORDS, 0);
	for (uint16_t p : {61000, 61002})
		bits[p / 64] |= 1ULL << (p % 64);
	// Pairs used just now (a flow the conntrack dump may have missed): not
	// yet; the live one loses its OUT half at once (its flows keep the IN).
	add_pair(g1, 5002, ext, 61002, IPPROTO_UDP, now);
	EXPECT_EQ(release_host_ports(ct_.get(), bind_.get(), bits, now), 1u);
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61002, IPPROTO_UDP));
	EXPECT_EQ(release_host_ports(ct_.get(), bind_.get(), bits, now + 10 * kSec), 4u);
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61002, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_UDP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_TCP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g2, 6000, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 5001, IPPROTO_UDP));
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61002, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g2, 22, IPPROTO_TCP));
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 1u);
	// Nothing more to do on the next sweep; the GC takes the IN half once
	// the connection is over.
	EXPECT_EQ(release_host_ports(ct_.get(), bind_.get(), bits, now + 20 * kSec), 0u);
	EXPECT_EQ(release_host_ports(ct_.get(), bind_.get(), {}, now + 20 * kSec), 0u);
}
