// SPDX-License-Identifier: GPL-2.0
// The rules the datapath and the loader share (bpf/include/kvmxdp/
// ct_rules.h), called as C++ sees them, table-driven; the BPF tests
// (tests/bpf/ct_reclaim_test.cpp) check the datapath's side against
// expected outcomes of their own.  Also checks that the loader's C++ entry
// points (control/gc.hpp, model/timeouts.hpp, model/quota.hpp) are these
// rules and nothing else.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <set>

#include "control/gc.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/quota.hpp"
#include "model/timeouts.hpp"

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

kvx_timeouts defaults()
{
	kvx_timeouts t;
	std::memset(&t, 0xff, sizeof(t)); // every field must be written
	kvx_timeouts_default(&t);
	return t;
}

} // namespace

// netfilter's defaults, but every transitory TCP state the guest's flows go
// through at 4 minutes (RFC 5382 REQ-5; RFC 7857 2.2 after a RST) and the
// inbound half-open one at netfilter's 60 s (RFC 7857 2.1 allows less).
TEST(CtRules, DefaultTimeoutsAreNetfiltersWithTransitoryAtFourMinutes)
{
	const kvx_timeouts t = defaults();
	EXPECT_EQ(t.tcp_syn_sent, 240u) << "RFC 5382 REQ-5: transitory 4 minutes";
	EXPECT_EQ(t.tcp_established, 432000u) << "RFC 5382 REQ-5: >= 2 h 4 min";
	EXPECT_EQ(t.tcp_fin_wait, 240u) << "RFC 5382 REQ-5";
	EXPECT_EQ(t.tcp_time_wait, 240u) << "RFC 5382 REQ-5";
	EXPECT_EQ(t.tcp_close, 240u) << "RFC 7857 2.2: 4 minutes after a RST";
	EXPECT_EQ(t.udp, 30u);
	EXPECT_EQ(t.udp_stream, 120u);
	EXPECT_EQ(t.icmp, 60u) << "RFC 5508 REQ-2";
	EXPECT_EQ(t.other, 600u);
	EXPECT_EQ(t.tcp_syn_recv, 60u) << "inbound half-open: the SYN-flood defence";
	const kvx_timeouts loader = default_timeouts();
	EXPECT_EQ(std::memcmp(&loader, &t, sizeof(t)), 0) << "model/timeouts.hpp default_timeouts";
}

TEST(CtRules, TimeoutByStateFlagsProto)
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
	t.tcp_syn_recv = 10;
	struct Case {
		uint8_t state, flags, proto;
		uint32_t want;
	} cases[] = {
		{KVX_CT_SYN_SENT, 0, IPPROTO_TCP, 1},
		{KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, IPPROTO_TCP, 2},
		{KVX_CT_FIN_WAIT, KVX_CT_F_FIN_OUT, IPPROTO_TCP, 3},
		{KVX_CT_TIME_WAIT, 0, IPPROTO_TCP, 4},
		{KVX_CT_CLOSE, 0, IPPROTO_TCP, 5},
		{KVX_CT_SYN_RECV, KVX_CT_F_INBOUND, IPPROTO_TCP, 10},
		{KVX_CT_SYN_RECV, KVX_CT_F_INBOUND | KVX_CT_F_SYNACK, IPPROTO_TCP, 10},
		{KVX_CT_SYN_RECV, KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN, IPPROTO_TCP, 10},
		// Half-open, closed before its handshake: the state's timeout when
		// shorter than SYN_RECV's (HalfOpenFlowsNeverOutliveSynRecv: longer).
		{KVX_CT_CLOSE, KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN, IPPROTO_TCP, 5},
		{KVX_CT_UDP, 0, IPPROTO_UDP, 6},
		{KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, IPPROTO_UDP, 7},
		{KVX_CT_UDP, KVX_CT_F_INBOUND, IPPROTO_UDP, 6},
		{KVX_CT_UDP, 0, IPPROTO_ICMP, 8},
		{KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, IPPROTO_ICMP, 8},
		// ICMPv6 echo: the ICMP query timeout too (RFC 5508 REQ-2).
		{KVX_CT_UDP, 0, IPPROTO_ICMPV6, 8},
		{KVX_CT_UDP, 0, IPPROTO_GRE, 9},
		{KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, IPPROTO_SCTP, 9},
		{KVX_CT_NONE, 0, IPPROTO_TCP, 1},
		{KVX_CT_NONE, 0, IPPROTO_UDP, 9},
		{200, 0, IPPROTO_UDP, 9},
		{200, 0, IPPROTO_TCP, 1},
	};
	for (const auto &c : cases) {
		const kvx_ct_val f = flow(c.state, c.flags, 0);
		EXPECT_EQ(kvx_ct_timeout_s(&f, c.proto, &t), c.want)
			<< "state " << int(c.state) << " flags " << int(c.flags) << " proto "
			<< int(c.proto);
		EXPECT_EQ(ct_timeout_s(f, c.proto, t), c.want) << "gc.hpp ct_timeout_s";
	}
}

// A TCP flow opened from outside whose handshake never completed
// (KVX_CT_F_HALFOPEN) lives at most tcp_syn_recv in any state a RST or FIN
// moved it to: with the defaults 60 s, not the closing states' 240 s.  A
// flag without a TCP flow (none is ever set so) changes nothing.
TEST(CtRules, HalfOpenFlowsNeverOutliveSynRecv)
{
	const kvx_timeouts t = defaults();
	const uint8_t half = KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN;
	for (uint8_t state : {KVX_CT_SYN_RECV, KVX_CT_CLOSE, KVX_CT_FIN_WAIT, KVX_CT_TIME_WAIT}) {
		const kvx_ct_val f = flow(state, half, 0);
		EXPECT_EQ(kvx_ct_timeout_s(&f, IPPROTO_TCP, &t), 60u) << "state " << int(state);
		EXPECT_EQ(ct_timeout_s(f, IPPROTO_TCP, t), 60u) << "gc.hpp, state " << int(state);
		const kvx_ct_val done = flow(state, KVX_CT_F_INBOUND | KVX_CT_F_SYNACK, 0);
		EXPECT_EQ(kvx_ct_timeout_s(&done, IPPROTO_TCP, &t),
			  state == KVX_CT_SYN_RECV ? 60u : 240u)
			<< "handshake completed, state " << int(state);
	}
	const kvx_ct_val udp = flow(KVX_CT_UDP, KVX_CT_F_HALFOPEN | KVX_CT_F_SEEN_REPLY, 0);
	EXPECT_EQ(kvx_ct_timeout_s(&udp, IPPROTO_UDP, &t), 120u);
}

TEST(CtRules, ExpiryIsStrictlyAfterTheDeadline)
{
	const kvx_timeouts t = defaults();
	const uint64_t seen = 1000 * kSec;
	struct Case {
		const char *what;
		kvx_ct_val f;
		uint8_t proto;
		uint64_t now;
		bool expired;
	} cases[] = {
		{"udp, no time passed", flow(KVX_CT_UDP, 0, seen), IPPROTO_UDP, seen, false},
		{"udp at its deadline", flow(KVX_CT_UDP, 0, seen), IPPROTO_UDP, seen + 30 * kSec,
		 false},
		{"udp 1 ns past it", flow(KVX_CT_UDP, 0, seen), IPPROTO_UDP, seen + 30 * kSec + 1,
		 true},
		{"udp stream past the unreplied timeout", flow(KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, seen),
		 IPPROTO_UDP, seen + 31 * kSec, false},
		{"udp stream past its own", flow(KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, seen), IPPROTO_UDP,
		 seen + 121 * kSec, true},
		{"tcp established after a day", flow(KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, seen),
		 IPPROTO_TCP, seen + 86400 * kSec, false},
		{"tcp established after 5 days", flow(KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, seen),
		 IPPROTO_TCP, seen + 432001 * kSec, true},
		{"tcp reset, 4 minutes on", flow(KVX_CT_CLOSE, 0, seen), IPPROTO_TCP,
		 seen + 240 * kSec, false},
		{"tcp reset, past 4 minutes", flow(KVX_CT_CLOSE, 0, seen), IPPROTO_TCP,
		 seen + 240 * kSec + 1, true},
		{"tcp opening, 4 minutes on", flow(KVX_CT_SYN_SENT, 0, seen), IPPROTO_TCP,
		 seen + 240 * kSec, false},
		{"tcp time_wait past 4 minutes", flow(KVX_CT_TIME_WAIT, 0, seen), IPPROTO_TCP,
		 seen + 241 * kSec, true},
		{"inbound half-open reset past 60 s",
		 flow(KVX_CT_CLOSE, KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN, seen), IPPROTO_TCP,
		 seen + 61 * kSec, true},
		// A packet after our clock read: the flow is live.
		{"touched in the future", flow(KVX_CT_CLOSE, 0, seen + 5 * kSec), IPPROTO_TCP, seen,
		 false},
		{"icmp inside 60 s", flow(KVX_CT_UDP, 0, seen), IPPROTO_ICMP, seen + 59 * kSec, false},
		{"icmp past 60 s", flow(KVX_CT_UDP, 0, seen), IPPROTO_ICMP, seen + 61 * kSec, true},
		{"other protocol inside 600 s", flow(KVX_CT_UDP, 0, seen), IPPROTO_GRE,
		 seen + 599 * kSec, false},
	};
	for (const auto &c : cases) {
		EXPECT_EQ(kvx_ct_expired(&c.f, c.proto, &t, c.now) != 0, c.expired) << c.what;
		EXPECT_EQ(ct_expired(c.f, c.proto, t, c.now), c.expired) << "gc.hpp: " << c.what;
	}
}

TEST(CtRules, ExpiryDoesNotOverflowTheLongestTimeout)
{
	// attach --timeouts allows 10 years; last_seen is CLOCK_BOOTTIME.
	kvx_timeouts t = defaults();
	t.tcp_established = 315360000;
	const kvx_ct_val f = flow(KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, 1000 * kSec);
	EXPECT_FALSE(kvx_ct_expired(&f, IPPROTO_TCP, &t, 1000 * kSec + 315360000 * kSec));
	EXPECT_TRUE(kvx_ct_expired(&f, IPPROTO_TCP, &t, 1000 * kSec + 315360000 * kSec + 1));
}

// An ESTABLISHED TCP flow nothing came back on (a guest's bare ACK picked
// it up mid-stream, the remote never answered) lives as long as a SYN's,
// whatever the established timeout; answered, the established timeout.
// The GC (gc.hpp ct_expired) judges alike.
TEST(CtRules, UnansweredPickUpAsShortLivedAsASyn)
{
	kvx_timeouts t = defaults();
	const kvx_ct_val lone = flow(KVX_CT_ESTABLISHED, 0, 1000 * kSec);
	EXPECT_EQ(kvx_ct_timeout_s(&lone, IPPROTO_TCP, &t), t.tcp_syn_sent);
	EXPECT_TRUE(ct_expired(lone, IPPROTO_TCP, t, 1000 * kSec + (t.tcp_syn_sent + 1) * kSec));
	const kvx_ct_val answered = flow(KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, 1000 * kSec);
	EXPECT_EQ(kvx_ct_timeout_s(&answered, IPPROTO_TCP, &t), t.tcp_established);
	EXPECT_FALSE(
		ct_expired(answered, IPPROTO_TCP, t, 1000 * kSec + (t.tcp_syn_sent + 1) * kSec));
	// A shorter established timeout is not lengthened.
	t.tcp_established = 100;
	EXPECT_EQ(kvx_ct_timeout_s(&lone, IPPROTO_TCP, &t), 100u);
}

// The quota slot is the owner's (its MAC's port), whatever address the flow
// has; owner-less addresses get their own; the key moves every slot.
TEST(CtRules, GuestSlotIsTheOwnersPort)
{
	const __u8 m1[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
	const __u8 m2[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57};
	const uint32_t a1 = htonl(0xc0a87a0a), a2 = htonl(0xc0a87a0b);
	const uint32_t seed = 0x1234abcd;
	const uint32_t s1 = kvx_guest_slot(m1, a1, seed);
	EXPECT_LT(s1, uint32_t{KVX_GFLOWS_MAX});
	EXPECT_EQ(kvx_guest_slot(m1, a2, seed), s1) << "one slot for all of a MAC's addresses";
	EXPECT_NE(kvx_guest_slot(m2, a1, seed), s1) << "a neighbouring MAC has another";
	EXPECT_NE(kvx_guest_slot(m1, a1, seed + 1), s1) << "the key moves it";
	EXPECT_NE(kvx_guest_slot(nullptr, a1, seed), kvx_guest_slot(nullptr, a2, seed))
		<< "owner-less addresses count apart";
	// model/quota.hpp: a guest is its MAC's bridge port (ct.h mac_slot):
	// two MACs on one port share its slot, MACs not placed share port 0's.
	kvx_guest_val owner{}, other{};
	std::memcpy(owner.mac, m1, 6);
	std::memcpy(other.mac, m2, 6);
	GuestPorts ports;
	EXPECT_EQ(guest_slot(&owner, a2, seed, ports), kvx_port_slot(0, seed));
	EXPECT_EQ(guest_slot(&other, a1, seed, ports), kvx_port_slot(0, seed));
	ports[MacAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}] = 7;
	ports[MacAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}] = 7;
	EXPECT_EQ(guest_slot(&owner, a2, seed, ports), kvx_port_slot(7, seed));
	EXPECT_EQ(guest_slot(&other, a1, seed, ports), kvx_port_slot(7, seed));
	ports[MacAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x57}] = 8;
	EXPECT_NE(guest_slot(&other, a1, seed, ports), kvx_port_slot(7, seed));
	EXPECT_NE(kvx_port_slot(7, seed), kvx_port_slot(0, seed));
	EXPECT_EQ(guest_slot(nullptr, a1, seed, ports), kvx_guest_slot(nullptr, a1, seed));
	// Spread: 4096 MACs of one OUI land on (nearly) 4096 slots; with
	// KVX_GFLOWS_MAX slots a few collisions are expected (abi.h).
	std::set<uint32_t> slots;
	for (uint32_t i = 0; i < 4096; i++) {
		const __u8 m[6] = {0x52, 0x54, 0x00, 0x00, uint8_t(i >> 8), uint8_t(i)};
		slots.insert(kvx_guest_slot(m, a1, seed));
	}
	EXPECT_GT(slots.size(), 3900u);
	for (uint32_t x : {0u, 1u, 0x01020304u, 0xffffffffu, 0x80000000u})
		EXPECT_EQ(kvx_ntohl(htonl(x)), x);
}

TEST(CtRules, PortRangeHoldsAPort)
{
	struct Case {
		uint32_t lo, hi;
		bool ok;
	} cases[] = {
		{1, 1, true},	  {1, 65535, true},  {61000, 65535, true}, {0, 0, false},
		{0, 65535, false}, {2, 1, false},    {65535, 65535, true}, {65535, 1024, false},
	};
	for (const auto &c : cases)
		EXPECT_EQ(KVX_PORT_RANGE_OK(c.lo, c.hi), c.ok) << c.lo << "-" << c.hi;
}

TEST(CtRules, PoolMembershipMatchesThePoolsPorts)
{
	// 1024-65535 minus the hole 32768-60999: index -> port -> member.
	const uint32_t lo = 1024, hi = 65535, slo = 32768, shi = 60999;
	const uint32_t n = kvx_nat_pool_size(lo, hi, slo, shi);
	std::set<uint32_t> ports;
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t p = kvx_nat_pool_port(lo, hi, slo, shi, i);
		EXPECT_TRUE(kvx_nat_pool_has(lo, hi, slo, shi, p)) << p;
		ports.insert(p);
	}
	for (uint32_t p = 0; p <= 65535; p++) {
		if (!ports.count(p)) {
			EXPECT_FALSE(kvx_nat_pool_has(lo, hi, slo, shi, p)) << p;
		}
	}
	EXPECT_FALSE(kvx_nat_pool_has(0, 0, 0, 0, 0)) << "no range";
}

// tw_remotes (abi.h KVX_TW_EPOCH_NS): a remote counts in the epoch it was
// added and the next, never after; generations move down as remotes come.
TEST(CtRules, TimeWaitRemotesAge)
{
	const uint64_t E = KVX_TW_EPOCH_NS;
	const uint32_t r1 = kvx_tw_bits(htonl(0xc6336401), htons(80));
	const uint32_t r2 = kvx_tw_bits(htonl(0xc6336402), htons(443));
	ASSERT_NE(r1, 0u);
	EXPECT_EQ(r1 & ~KVX_TW_GEN_MASK, 0u);
	const uint64_t t0 = 1000 * E + 5; // any epoch, early in it
	uint32_t w = kvx_tw_add(0, r1, t0);
	EXPECT_EQ(w & 1, 0u) << "bit 0 is bind_recycle's mark";
	EXPECT_TRUE(kvx_tw_has(w, r1, t0));
	EXPECT_TRUE(kvx_tw_has(w, r1, t0 + E - 10)) << "same epoch";
	EXPECT_TRUE(kvx_tw_has(w, r1, t0 + E)) << "the next epoch: at least one epoch";
	EXPECT_FALSE(kvx_tw_has(w, r1, t0 + 2 * E)) << "two epochs on: forgotten";
	EXPECT_FALSE(kvx_tw_has(w, r1, t0 + 5 * E));
	EXPECT_FALSE(kvx_tw_has(0, r1, t0)) << "an empty filter holds nobody";
	// r2 one epoch after r1: r1 moves to the older generation, and goes
	// one epoch later while r2 stays.
	uint32_t w2 = kvx_tw_add(w, r2, t0 + E);
	EXPECT_TRUE(kvx_tw_has(w2, r1, t0 + E));
	EXPECT_TRUE(kvx_tw_has(w2, r2, t0 + E));
	if ((r1 & r2) != r1) {
		EXPECT_FALSE(kvx_tw_has(w2, r1, t0 + 2 * E));
	}
	EXPECT_TRUE(kvx_tw_has(w2, r2, t0 + 2 * E));
	EXPECT_FALSE(kvx_tw_has(w2, r2, t0 + 3 * E));
	// Added long after: the old generations are dropped, not carried.
	uint32_t w3 = kvx_tw_add(w2, r2, t0 + 4 * E);
	EXPECT_EQ(kvx_tw_live(w3, t0 + 4 * E), r2);
	// Adding what is there changes nothing (no write on every packet).
	EXPECT_EQ(kvx_tw_add(w3, r2, t0 + 4 * E + 1), w3);
	// A port reused through many remotes no longer fills up for good.
	uint32_t f = 0;
	for (uint32_t i = 0; i < 200; i++)
		f = kvx_tw_add(f, kvx_tw_bits(htonl(0x0a000000 + i), htons(80)), t0);
	EXPECT_EQ(kvx_tw_live(f, t0), KVX_TW_GEN_MASK) << "full within its epochs";
	EXPECT_EQ(kvx_tw_live(f, t0 + 2 * E), 0u) << "and empty after them";
}

// A SYN on a tuple whose remote may hold it in TIME_WAIT, taken only if
// every common stack takes it: a sequence number past the old connection's
// (BSD), and no timestamp older than the guest's FIN's (Linux's PAWS, RFC
// 6191); a FIN timestamp of 0, or none on either side, leaves the sequence.
TEST(CtRules, TimeWaitSynBySequenceWithTimestampVeto)
{
	kvx_ct_val f{};
	f.tcp[KVX_CT_SIDE_GUEST].end = 1000;
	f.tcp[KVX_CT_SIDE_REMOTE].fin_ts = 0x1234; // not a half of anything yet
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 1, 5)) << "no FIN timestamp: the sequence";
	EXPECT_FALSE(kvx_tw_syn_ok(&f, 1000, 1, 0xffffffffu));
	kvx_ct_fin_ts_set(&f, 0xfffffff0u);
	EXPECT_TRUE(f.tcp[KVX_CT_SIDE_GUEST].flags & KVX_CT_TCP_F_TS);
	EXPECT_EQ(kvx_ct_fin_ts(&f), 0xfffffff0u);
	EXPECT_EQ(f.tcp[KVX_CT_SIDE_GUEST].fin_ts, 0xfff0u);
	EXPECT_EQ(f.tcp[KVX_CT_SIDE_REMOTE].fin_ts, 0xffffu);
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 1, 0x10u)) << "newer across the wrap, sequence past";
	EXPECT_FALSE(kvx_tw_syn_ok(&f, 999, 1, 0x10u)) << "newer, sequence behind: BSD drops it";
	EXPECT_FALSE(kvx_tw_syn_ok(&f, 900000, 1, 0xffffffe0u)) << "older, sequence past";
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 1, 0xfffffff0u)) << "equal: not older";
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 0, 0)) << "a SYN without one: the sequence";
	EXPECT_FALSE(kvx_tw_syn_ok(&f, 1000, 0, 0));
	kvx_ct_fin_ts_set(&f, 0);
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 1, 0x80000001u)) << "a FIN timestamp of 0: none";
	// The guest's FINs disagreed (one retransmitted with a newer
	// timestamp): the remote's is not known.
	kvx_ct_fin_ts_set(&f, 500);
	f.tcp[KVX_CT_SIDE_GUEST].flags = KVX_CT_TCP_F_FIN_TAKEN;
	EXPECT_FALSE(kvx_tw_syn_ok(&f, 1001, 1, 0x7fffffffu)) << "FINs disagreed: unknown";
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 0, 0)) << "a SYN without one: the sequence";
	kvx_ct_fin_ts_set(&f, 0);
	f.tcp[KVX_CT_SIDE_GUEST].flags = KVX_CT_TCP_F_FIN_TAKEN;
	EXPECT_TRUE(kvx_tw_syn_ok(&f, 1001, 1, 5)) << "its first FIN had none: the sequence";
}

// The filter's epoch is a number mod 8: a remote added in any of the eight
// epochs (the first one into an empty filter, whose epoch bits read 0) is
// held for that epoch and the next, and forgotten after.
TEST(CtRules, TimeWaitRemotesAgeInEveryEpoch)
{
	const uint64_t E = KVX_TW_EPOCH_NS;
	const uint32_t r1 = kvx_tw_bits(htonl(0xc6336401), htons(80));
	for (uint64_t k = 0; k < 8; k++) {
		const uint64_t t0 = (1000 + k) * E + 5;
		const uint32_t w = kvx_tw_add(0, r1, t0);
		EXPECT_EQ((w >> 1) & 7, kvx_tw_epoch(t0)) << "epoch " << k;
		EXPECT_TRUE(kvx_tw_has(w, r1, t0 + E)) << "epoch " << k;
		EXPECT_FALSE(kvx_tw_has(w, r1, t0 + 2 * E)) << "epoch " << k;
	}
}

// The datapath's clock is cached per CPU: at an epoch's start, a CPU a tick
// behind sees the filter another CPU just wrote one epoch ahead of it.  Its
// remotes still count, and adding keeps them and the filter's epoch.
TEST(CtRules, TimeWaitRemotesSeenFromABehindClock)
{
	const uint64_t E = KVX_TW_EPOCH_NS;
	const uint32_t r1 = kvx_tw_bits(htonl(0xc6336401), htons(80));
	const uint32_t r2 = kvx_tw_bits(htonl(0xc6336402), htons(443));
	const uint64_t start = 1000 * E; // an epoch's first nanosecond
	const uint32_t w = kvx_tw_add(0, r1, start);
	EXPECT_TRUE(kvx_tw_has(w, r1, start - 1)) << "seen a tick early: still held";
	const uint32_t w2 = kvx_tw_add(w, r2, start - 1);
	EXPECT_TRUE(kvx_tw_has(w2, r1, start)) << "adding from behind kept the first remote";
	EXPECT_TRUE(kvx_tw_has(w2, r2, start));
	EXPECT_EQ(kvx_tw_live(w2, start), r1 | r2);
	EXPECT_TRUE(kvx_tw_has(w2, r2, start + E)) << "and the filter's epoch: one more epoch";
	EXPECT_FALSE(kvx_tw_has(w2, r2, start + 2 * E));
}
