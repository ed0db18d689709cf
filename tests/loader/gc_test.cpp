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
#include "kvmxdp/ct_rules.h"

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
	// Expired TCP flow (reset over 4 minutes ago), binding used 5 s ago
	// (a new flow being created): the flow goes, the binding stays (grace).
	add_flow(g2, 6000, ext, 61002, IPPROTO_TCP, KVX_CT_CLOSE, now - 241 * kSec);
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

// A TCP binding whose flow is gone (expired, or evicted for a new one while
// closed: ct.h ct_closed_evictable) but whose tw_remotes still remembers a
// remote that closed first: kept, its port out of the pool until the filter
// forgets the remote (that remote may still hold the port in TIME_WAIT).
TEST_F(GcMaps, BindingKeptWhileItRemembersARemoteInTimeWait)
{
	const uint64_t now = 100000 * kSec;
	const uint32_t g1 = 0x0a000002, ext = 0xc0a80105;
	const uint32_t bits = kvx_tw_bits(htonl(0x08080808), htons(443));
	auto remember = [&](uint16_t eport, uint64_t when) {
		kvx_bind_key k{};
		kvx_bind_val v{};
		k.dir = KVX_BIND_IN;
		k.proto = IPPROTO_TCP;
		k.addr = htonl(ext);
		k.port = htons(eport);
		ASSERT_EQ(bpf_map_lookup_elem(bind_.get(), &k, &v), 0);
		v.tw_remotes = kvx_tw_add(0, bits, when);
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_EXIST), 0);
	};
	// Both idle 60 s (past the 30 s grace), no flow.
	add_pair(g1, 5000, ext, 61000, IPPROTO_TCP, now - 60 * kSec, KVX_BIND_F_TW);
	remember(61000, now - 60 * kSec);
	add_pair(g1, 5001, ext, 61001, IPPROTO_TCP, now - 60 * kSec, KVX_BIND_F_TW);
	remember(61001, now - 3 * KVX_TW_EPOCH_NS); // forgotten
	auto r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now);
	EXPECT_EQ(r.bind_deleted, 2u); // the forgotten one's two halves
	EXPECT_TRUE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_TCP));
	EXPECT_TRUE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_TCP));
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61001, IPPROTO_TCP));
	// Once the filter forgets it (two epochs on), the binding goes.
	r = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now + 2 * KVX_TW_EPOCH_NS + kSec);
	EXPECT_FALSE(has_bind(KVX_BIND_IN, ext, 61000, IPPROTO_TCP));
	EXPECT_FALSE(has_bind(KVX_BIND_OUT, g1, 5000, IPPROTO_TCP));
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
	v.last_seen_ns = now - 1 * kSec;			      // the packet since
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

// Port overlapping's sweep (gc.hpp ovl_sweep): a claim goes once its flow
// did (after the grace) or its port's owner changed; a tenant's OUT half
// goes once no claim names it and it is idle; the shared mark of a port
// with no claim left is cleared once the port is quiet; what is in use
// stays.
TEST_F(GcMaps, OvlSweepFollowsTheFlows)
{
	Fd ovl(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ovl", sizeof(kvx_ovl_key), sizeof(kvx_ovl_val),
			      64, nullptr));
	ASSERT_GE(ovl.get(), 0) << std::strerror(errno);
	const uint64_t now = boottime_ns();
	const uint64_t old = now - 100 * kSec;
	const uint32_t g = 0x0a000002, ext = 0xc0a80105;
	// The owner g:5000 holds 61000 (shared) and 61001 (shared, no claim
	// left, quiet); tenants g:6000 (a live flow) and g:6001 (its flow gone).
	add_pair(g, 5000, ext, 61000, IPPROTO_UDP, now, KVX_BIND_F_SHARED);
	add_pair(g, 5001, ext, 61001, IPPROTO_UDP, old, KVX_BIND_F_SHARED);
	auto tenant = [&](uint16_t gport, uint16_t rport, bool flow) {
		kvx_bind_key ok = bind_key(KVX_BIND_OUT, IPPROTO_UDP, g, gport);
		kvx_bind_val ov{};
		ov.addr = htonl(ext);
		ov.port = htons(61000);
		ov.flags = KVX_BIND_F_SHARED;
		ov.last_used_ns = old;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ok, &ov, BPF_NOEXIST), 0);
		kvx_ovl_key k{};
		k.proto = IPPROTO_UDP;
		k.ext_addr = htonl(ext);
		k.ext_port = htons(61000);
		k.rem_addr = htonl(0x08080808);
		k.rem_port = htons(rport);
		kvx_ovl_val v{};
		v.addr = htonl(g);
		v.port = htons(gport);
		v.owner_port = htons(5000);
		v.created_ns = old;
		ASSERT_EQ(bpf_map_update_elem(ovl.get(), &k, &v, BPF_NOEXIST), 0);
		if (!flow)
			return;
		kvx_ct_key ck{};
		ck.proto = IPPROTO_UDP;
		ck.int_addr = htonl(g);
		ck.int_port = htons(gport);
		ck.rem_addr = k.rem_addr;
		ck.rem_port = k.rem_port;
		kvx_ct_val f{};
		f.state = KVX_CT_UDP;
		f.last_seen_ns = now;
		f.ext_addr = htonl(ext);
		f.ext_port = htons(61000);
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &ck, &f, BPF_NOEXIST), 0);
	};
	tenant(6000, 53, true);
	tenant(6001, 54, false);

	OvlSweepResult r = ovl_sweep(ct_.get(), bind_.get(), ovl.get(), now, false);
	EXPECT_EQ(r.claims_deleted, 1u);
	EXPECT_EQ(r.tenants_deleted, 1u);
	EXPECT_EQ(r.unshared, 1u);
	EXPECT_TRUE(r.shared_left);
	kvx_bind_val v{};
	EXPECT_TRUE(lookup_bind(KVX_BIND_OUT, IPPROTO_UDP, g, 6000, &v)) << "in use";
	EXPECT_FALSE(lookup_bind(KVX_BIND_OUT, IPPROTO_UDP, g, 6001, &v)) << "no claim left";
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61000, &v));
	EXPECT_TRUE(v.flags & KVX_BIND_F_SHARED) << "a claim is left";
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61001, &v));
	EXPECT_FALSE(v.flags & KVX_BIND_F_SHARED) << "no claim left, quiet";

	// A tenant joins 61001 while the sweep clears its mark (ovl_enter saw
	// the mark still set, so did not set it, and claimed after the
	// sweep's reading): the sweep marks the port again, so that
	// bind_recycle never gives it away under the tenant's flow.
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61001, &v));
	v.flags |= KVX_BIND_F_SHARED;
	kvx_bind_key ik1 = bind_key(KVX_BIND_IN, IPPROTO_UDP, ext, 61001);
	ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ik1, &v, BPF_EXIST), 0);
	r = ovl_sweep(ct_.get(), bind_.get(), ovl.get(), now, true, [&] {
		kvx_ovl_key k{};
		k.proto = IPPROTO_UDP;
		k.ext_addr = htonl(ext);
		k.ext_port = htons(61001);
		k.rem_addr = htonl(0x08080404);
		k.rem_port = htons(53);
		kvx_ovl_val c{};
		c.addr = htonl(g);
		c.port = htons(6002);
		c.owner_port = htons(5001);
		c.created_ns = now;
		ASSERT_EQ(bpf_map_update_elem(ovl.get(), &k, &c, BPF_NOEXIST), 0);
	});
	EXPECT_EQ(r.unshared, 0u);
	EXPECT_TRUE(r.shared_left);
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61001, &v));
	EXPECT_TRUE(v.flags & KVX_BIND_F_SHARED) << "a claim came: marked again";
	EXPECT_EQ(v.addr, htonl(g));
	EXPECT_EQ(v.port, htons(5001));

	// conntrack flush's whole-value writes likewise (gc.hpp
	// reshare_claimed): a port whose mark a write dropped is marked again
	// when a claim made under its owner names it, not for a claim made
	// under another owner.
	v.flags &= ~KVX_BIND_F_SHARED;
	ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ik1, &v, BPF_EXIST), 0);
	kvx_bind_val other = v;
	other.port = htons(5009);
	EXPECT_EQ(reshare_claimed(bind_.get(), ovl.get(), {{ik1, other}}), 0u);
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61001, &v));
	EXPECT_FALSE(v.flags & KVX_BIND_F_SHARED);
	EXPECT_EQ(reshare_claimed(bind_.get(), ovl.get(), {{ik1, v}}), 1u);
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61001, &v));
	EXPECT_TRUE(v.flags & KVX_BIND_F_SHARED);

	// The owner's binding goes to another endpoint: the live flow's claim
	// is dead too.
	kvx_bind_key ik = bind_key(KVX_BIND_IN, IPPROTO_UDP, ext, 61000);
	ASSERT_TRUE(lookup_bind(KVX_BIND_IN, IPPROTO_UDP, ext, 61000, &v));
	v.port = htons(5002);
	ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ik, &v, BPF_EXIST), 0);
	r = ovl_sweep(ct_.get(), bind_.get(), ovl.get(), now, false);
	EXPECT_EQ(r.claims_deleted, 1u);
	EXPECT_EQ(r.tenants_deleted, 1u);
}
