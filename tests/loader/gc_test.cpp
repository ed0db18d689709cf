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

kvx_ct_val flow(uint8_t state, uint8_t flags, uint64_t last_seen)
{
	kvx_ct_val v{};
	v.state = state;
	v.flags = flags;
	v.last_seen_ns = last_seen;
	return v;
}

} // namespace

TEST(Gc, DefaultTimeoutsAreNetfilters)
{
	kvx_timeouts t = default_timeouts();
	EXPECT_EQ(t.tcp_syn_sent, 120u);
	EXPECT_EQ(t.tcp_established, 432000u);
	EXPECT_EQ(t.tcp_fin_wait, 120u);
	EXPECT_EQ(t.tcp_time_wait, 120u);
	EXPECT_EQ(t.tcp_close, 10u);
	EXPECT_EQ(t.udp, 30u);
	EXPECT_EQ(t.udp_stream, 120u);
	EXPECT_EQ(t.icmp, 30u);
	EXPECT_EQ(t.other, 600u);
	EXPECT_EQ(t._pad, 0u);
}

TEST(Gc, TimeoutByStateFlagsProto)
{
	kvx_timeouts t{};
	// Distinct values so that a wrong branch cannot pass by accident.
	t.tcp_syn_sent = 1;
	t.tcp_established = 2;
	t.tcp_fin_wait = 3;
	t.tcp_time_wait = 4;
	t.tcp_close = 5;
	t.udp = 6;
	t.udp_stream = 7;
	t.icmp = 8;
	t.other = 9;
	struct Case {
		uint8_t state, flags, proto;
		uint32_t want;
	} cases[] = {
		{KVX_CT_SYN_SENT, 0, IPPROTO_TCP, 1},
		{KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, IPPROTO_TCP, 2},
		{KVX_CT_FIN_WAIT, KVX_CT_F_FIN_OUT, IPPROTO_TCP, 3},
		{KVX_CT_TIME_WAIT, 0, IPPROTO_TCP, 4},
		{KVX_CT_CLOSE, 0, IPPROTO_TCP, 5},
		{KVX_CT_UDP, 0, IPPROTO_UDP, 6},
		{KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, IPPROTO_UDP, 7},
		{KVX_CT_UDP, KVX_CT_F_INBOUND, IPPROTO_UDP, 6},
		{KVX_CT_UDP, 0, IPPROTO_ICMP, 8},
		{KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, IPPROTO_ICMP, 8},
		{KVX_CT_UDP, 0, IPPROTO_GRE, 9},
		{KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, IPPROTO_SCTP, 9},
		{KVX_CT_NONE, 0, IPPROTO_TCP, 1},
		{KVX_CT_NONE, 0, IPPROTO_UDP, 9},
		{200, 0, IPPROTO_UDP, 9},
	};
	for (const auto &c : cases)
		EXPECT_EQ(ct_timeout_s(flow(c.state, c.flags, 0), c.proto, t), c.want)
			<< "state " << int(c.state) << " flags " << int(c.flags) << " proto "
			<< int(c.proto);
}

TEST(Gc, ExpiryIsStrictlyAfterTheDeadline)
{
	kvx_timeouts t = default_timeouts();
	uint64_t seen = 1000 * kSec;
	auto udp = flow(KVX_CT_UDP, 0, seen);
	EXPECT_FALSE(ct_expired(udp, IPPROTO_UDP, t, seen));
	EXPECT_FALSE(ct_expired(udp, IPPROTO_UDP, t, seen + 30 * kSec));
	EXPECT_TRUE(ct_expired(udp, IPPROTO_UDP, t, seen + 30 * kSec + 1));
	auto stream = flow(KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, seen);
	EXPECT_FALSE(ct_expired(stream, IPPROTO_UDP, t, seen + 31 * kSec));
	EXPECT_TRUE(ct_expired(stream, IPPROTO_UDP, t, seen + 121 * kSec));
	auto est = flow(KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, seen);
	EXPECT_FALSE(ct_expired(est, IPPROTO_TCP, t, seen + 86400 * kSec));
	EXPECT_TRUE(ct_expired(est, IPPROTO_TCP, t, seen + 432001 * kSec));
	auto closed = flow(KVX_CT_CLOSE, 0, seen);
	EXPECT_TRUE(ct_expired(closed, IPPROTO_TCP, t, seen + 11 * kSec));
	// A flow touched "in the future" (a packet after our clock read) is live.
	EXPECT_FALSE(ct_expired(flow(KVX_CT_CLOSE, 0, seen + 5 * kSec), IPPROTO_TCP, t, seen));
}

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
		kvx_ct_val v = flow(state, 0, seen);
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
		kvx_bind_key k{};
		k.dir = dir;
		k.proto = proto;
		k.addr = htonl(addr);
		k.port = htons(port);
		kvx_bind_val v{};
		return bpf_map_lookup_elem(bind_.get(), &k, &v) == 0;
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
