// Conntrack's TCP states and sequence tracking (bpf/lib/ct.h): inbound
// flows opened only by a SYN and established only by the handshake
// (SYN_RECV), separate inbound quotas with early drop of half-open flows,
// and the receive-window checks of RST and FIN (RFC 5961) with window
// scaling (RFC 7323).  Every segment carries consistent sequence numbers,
// as real endpoints' do.
#include <linux/pkt_cls.h>

#include <cstring>
#include <ctime>

#include "fixture.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

constexpr std::uint64_t kSec = 1000000000ULL;

// The window scale option (kind 3) behind a NOP, as Linux sends it.
Bytes wscale_opt(std::uint8_t shift)
{
	return {0x01, 0x03, 0x03, shift};
}

constexpr std::uint16_t kFwdPort = 2222;
constexpr std::uint16_t kGuestPort = 22;

// One TCP connection through a port forward (uplink:2222 -> guest A:22),
// opened by a LAN remote; g_ and r_ are each side's next sequence number.
class TcpStateTest : public UpIngressTest {
protected:
	void SetUp() override
	{
		UpIngressTest::SetUp();
		if (IsSkipped())
			return;
		add_port_forward(dp(), kProtoTcp, Topology::kUplinkAddr, kFwdPort, kGuestA,
				 kGuestPort);
		// A's address owned from the start (its DHCP lease): the
		// inbound flows count in its MAC's slot, where its SYN-ACKs
		// (which would bind it) look.
		own_address(dp(), kGuestA);
		dp().set_gflows_val(kGuestA, kvx_gflows_val{});
	}
	// A segment from remote (at rport) to the forward.
	static Packet from_remote(std::uint32_t remote, std::uint16_t rport, std::uint8_t flags,
				  std::uint32_t seq, std::uint32_t ack, std::uint16_t win = 502)
	{
		Packet p = from_uplink(
			make_tcp(remote, rport, Topology::kUplinkAddr, kFwdPort, flags));
		p.seq = seq;
		p.ack_seq = ack;
		p.window = win;
		return p;
	}
	static Packet from_guest_to(std::uint32_t remote, std::uint16_t rport, std::uint8_t flags,
				    std::uint32_t seq, std::uint32_t ack, std::uint16_t win = 502)
	{
		Packet p = from_guest(make_tcp(kGuestA, kGuestPort, remote, rport, flags));
		p.seq = seq;
		p.ack_seq = ack;
		p.window = win;
		return p;
	}
	static std::optional<kvx_ct_val> flow(std::uint32_t remote, std::uint16_t rport)
	{
		return dp().ct_lookup(ct_key(kProtoTcp, kGuestA, kGuestPort, remote, rport));
	}
	static int state(std::uint32_t remote, std::uint16_t rport)
	{
		auto f = flow(remote, rport);
		return f ? int(f->state) : -1;
	}
	// Remote's SYN in (translated: the guest's MAC may be unknown yet).
	void syn_in(std::uint32_t remote, std::uint16_t rport, std::uint32_t isn,
		    kvx_reason want = KVX_R_XLATE_IN)
	{
		Packet syn = from_remote(remote, rport, kTcpSyn, isn, 0, 64240);
		syn.tcp_options = wscale_opt(7);
		RunResult r = dp().run(Prog::UpIngress, syn.build(), topo().uplink_ifindex);
		EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(reason_verdict(want))))
			<< "SYN from " << remote << ":" << rport;
	}
	void out(const Packet &p, kvx_reason want = KVX_R_XLATE_OUT)
	{
		if (want == KVX_R_XLATE_OUT)
			run_case(dp(), Prog::BrIngress, p, TC_ACT_REDIRECT, want,
				 snat(p, kFwdPort));
		else
			run_case(dp(), Prog::BrIngress, p, reason_verdict(want), want);
	}
	// mac_known: the guest sent something already (the forward learnt
	// its MAC), else only L3/L4 are rewritten.
	void in(const Packet &p, kvx_reason want = KVX_R_XLATE_IN, bool mac_known = true)
	{
		if (want == KVX_R_XLATE_IN)
			run_up(p, TC_ACT_REDIRECT, want,
			       mac_known ? dnat(p, kGuestA, kGuestPort) :
					   dnat_unknown_mac(p, kGuestA, kGuestPort));
		else
			run_up(p, reason_verdict(want), want);
	}
	// The whole handshake with remote: both SYNs ask for window scale 7.
	void handshake(std::uint32_t remote, std::uint16_t rport)
	{
		syn_in(remote, rport, r_ - 1);
		Packet synack = from_guest_to(remote, rport, kTcpSyn | kTcpAck, g_ - 1, r_, 65160);
		synack.tcp_options = wscale_opt(7);
		out(synack);
		in(from_remote(remote, rport, kTcpAck, r_, g_));
		ASSERT_EQ(state(remote, rport), KVX_CT_ESTABLISHED);
	}
	// A flood-like SYN from remote:rport that the guest answers.
	void syn_answered(std::uint32_t remote, std::uint16_t rport, std::uint32_t isn)
	{
		syn_in(remote, rport, isn);
		out(from_guest_to(remote, rport, kTcpSyn | kTcpAck, 0x20000000, isn + 1));
		auto f = flow(remote, rport);
		ASSERT_TRUE(f && (f->flags & KVX_CT_F_SYNACK)) << remote << ":" << rport;
	}
	// The flow with remote:rport last seen ns earlier than it was.
	static void age_flow(std::uint32_t remote, std::uint16_t rport, std::uint64_t ns)
	{
		const kvx_ct_key k = ct_key(kProtoTcp, kGuestA, kGuestPort, remote, rport);
		auto f = dp().ct_lookup(k);
		ASSERT_TRUE(f);
		f->last_seen_ns -= ns;
		dp().ct_update(k, *f);
	}
	// The opposite: last seen ns later than it was (in the future), so
	// that a test on a slow machine (a loaded VM) does not see it age
	// past KVX_HALFOPEN_ANSWER_NS between two of its packets.
	static void rejuvenate_flow(std::uint32_t remote, std::uint16_t rport, std::uint64_t ns)
	{
		const kvx_ct_key k = ct_key(kProtoTcp, kGuestA, kGuestPort, remote, rport);
		auto f = dp().ct_lookup(k);
		ASSERT_TRUE(f);
		f->last_seen_ns += ns;
		dp().ct_update(k, *f);
	}
	std::uint32_t g_ = 0x10000001; // the guest's next sequence number
	std::uint32_t r_ = 0x7f000001; // the remote's
};

TEST_F(TcpStateTest, OnlyAPureSynOpensAnInboundFlow)
{
	// An ACK, FIN, NULL or Xmas scan of the forward, a stray RST or
	// SYN-ACK: dropped and counted, no flow, nothing counted against the
	// guest (before: each opened an ESTABLISHED flow for five days).
	const std::uint8_t scans[] = {kTcpAck,
				      kTcpFin,
				      0,
				      kTcpFin | kTcpPsh | 0x20,
				      kTcpRst,
				      kTcpRst | kTcpAck,
				      kTcpSyn | kTcpAck,
				      kTcpFin | kTcpAck,
				      kTcpSyn | kTcpFin,
				      kTcpSyn | kTcpRst};
	std::uint16_t rport = 40000;
	for (std::uint8_t f : scans) {
		in(from_remote(kRemote1, rport, f, 1000, 0), KVX_R_DROP_TCP_NO_FLOW);
		EXPECT_EQ(state(kRemote1, rport), -1) << "flags " << int(f);
		rport++;
	}
	EXPECT_EQ(dp().gflows(kGuestA), 0u);
	syn_in(kRemote1, rport, 1000);
	EXPECT_EQ(state(kRemote1, rport), KVX_CT_SYN_RECV);
	const kvx_gflows_val g = dp().gflows_val(kGuestA);
	EXPECT_EQ(g.in, 1u) << "inbound flows count on their own counter";
	EXPECT_EQ(g.out, 0u);
}

TEST_F(TcpStateTest, HandshakeEstablishesAnInboundFlow)
{
	syn_in(kRemote1, 40100, r_ - 1);
	auto f = flow(kRemote1, 40100);
	ASSERT_TRUE(f);
	EXPECT_EQ(f->state, KVX_CT_SYN_RECV);
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_REMOTE].end, r_);
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_REMOTE].wscale, 7);
	// The remote's ACK before the guest answered: still half-open.
	in(from_remote(kRemote1, 40100, kTcpAck, r_, g_), KVX_R_XLATE_IN, false);
	EXPECT_EQ(state(kRemote1, 40100), KVX_CT_SYN_RECV);
	Packet synack = from_guest_to(kRemote1, 40100, kTcpSyn | kTcpAck, g_ - 1, r_, 65160);
	synack.tcp_options = wscale_opt(7);
	out(synack);
	f = flow(kRemote1, 40100);
	ASSERT_TRUE(f);
	EXPECT_EQ(f->state, KVX_CT_SYN_RECV);
	EXPECT_TRUE(f->flags & KVX_CT_F_SYNACK);
	// An ACK that does not acknowledge the SYN-ACK (a blind guess).
	in(from_remote(kRemote1, 40100, kTcpAck, r_, g_ + 5000));
	EXPECT_EQ(state(kRemote1, 40100), KVX_CT_SYN_RECV);
	in(from_remote(kRemote1, 40100, kTcpAck, r_, g_));
	EXPECT_EQ(state(kRemote1, 40100), KVX_CT_ESTABLISHED);
}

TEST_F(TcpStateTest, HalfOpenFlowExpiresAfterSynRecvTimeout)
{
	syn_in(kRemote1, 40200, 1000);
	auto f = flow(kRemote1, 40200);
	ASSERT_TRUE(f);
	const kvx_cfg c = dp().cfg();
	EXPECT_EQ(kvx_ct_timeout_s(&*f, kProtoTcp, &c.timeouts), 60u);
	f->last_seen_ns = boot_ns_ago(59 * kSec);
	EXPECT_FALSE(kvx_ct_expired(&*f, kProtoTcp, &c.timeouts, boot_ns()));
	f->last_seen_ns = boot_ns_ago(61 * kSec);
	EXPECT_TRUE(kvx_ct_expired(&*f, kProtoTcp, &c.timeouts, boot_ns()))
		<< "a SYN alone holds a flow for 60 s, not ESTABLISHED's 5 days";
}

TEST_F(TcpStateTest, EarlyDropEvictsTheOldestHalfOpenFlowAtTheInboundQuota)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 3; });
	handshake(kRemote1, 40300); // established: never evicted
	syn_in(kRemote2, 40301, 5000);
	syn_in(kRemote2 + 1, 40302, 6000);
	ASSERT_EQ(dp().gflows_val(kGuestA).in, 3u);
	// The inbound quota is full: the next SYN takes the oldest half-open
	// flow's place instead of being refused.
	syn_in(kRemote2 + 2, 40303, 7000);
	EXPECT_EQ(state(kRemote2, 40301), -1) << "the oldest half-open flow is evicted";
	EXPECT_EQ(state(kRemote2 + 1, 40302), KVX_CT_SYN_RECV);
	EXPECT_EQ(state(kRemote2 + 2, 40303), KVX_CT_SYN_RECV);
	EXPECT_EQ(state(kRemote1, 40300), KVX_CT_ESTABLISHED);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 3u);
	// A flood keeps recycling its own entries; the established flow stays.
	for (std::uint16_t p = 40304; p < 40340; p++)
		syn_in(kRemote2, p, 8000 + p);
	EXPECT_EQ(state(kRemote1, 40300), KVX_CT_ESTABLISHED);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 3u);
	// The guest's own outbound capacity is untouched by the flood.
	const Packet mine = from_guest(make_tcp(kGuestA, 62000, kRemote1, 443, kTcpSyn));
	run_case(dp(), Prog::BrIngress, mine, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(mine, 62000));
	EXPECT_EQ(dp().gflows_val(kGuestA).out, 1u);
}

// A real connection through the forward, whose SYN the guest answered,
// survives a flood of spoofed SYNs (three rings' worth, from ever new
// sources) at the inbound quota that the guest drops (never answered in
// KVX_HALFOPEN_ANSWER_NS) and completes its handshake: such flows go
// first, although the answered one is the oldest.
TEST_F(TcpStateTest, EarlyDropSparesAHalfOpenFlowTheGuestAnswered)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 4; });
	syn_in(kRemote1, 40700, r_ - 1);
	Packet synack = from_guest_to(kRemote1, 40700, kTcpSyn | kTcpAck, g_ - 1, r_, 65160);
	synack.tcp_options = wscale_opt(7);
	out(synack);
	for (std::uint32_t i = 0; i < 3 * KVX_HALFOPEN_RING; i++) {
		const std::uint16_t rport = static_cast<std::uint16_t>(50000 + i);
		syn_in(kRemote2 + i, rport, 1000 + i);
		age_flow(kRemote2 + i, rport, 2 * KVX_HALFOPEN_ANSWER_NS);
	}
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 4u) << "the flood recycles its own entries";
	EXPECT_EQ(state(kRemote2 + 3 * KVX_HALFOPEN_RING - 1,
			static_cast<std::uint16_t>(50000 + 3 * KVX_HALFOPEN_RING - 1)),
		  KVX_CT_SYN_RECV);
	ASSERT_EQ(state(kRemote1, 40700), KVX_CT_SYN_RECV);
	in(from_remote(kRemote1, 40700, kTcpAck, r_, g_));
	EXPECT_EQ(state(kRemote1, 40700), KVX_CT_ESTABLISHED);
}

// A SYN the guest has not answered yet, younger than
// KVX_HALFOPEN_ANSWER_NS, is not taken for one it dropped (a flood faster
// than the guest answers would else evict every real SYN before its
// SYN-ACK): the oldest goes.  One unanswered for longer goes first, older
// flows or not.
TEST_F(TcpStateTest, EarlyDropTakesAnUnansweredSynOnlyOnceTheGuestHadItsChance)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 3; });
	syn_answered(kRemote1, 40720, 1000);
	syn_in(kRemote1 + 1, 40721, 2000); // in the guest's queue
	// Young for the whole test, however slow the machine (20 ms go fast
	// in a loaded VM).
	rejuvenate_flow(kRemote1 + 1, 40721, 10 * KVX_HALFOPEN_ANSWER_NS);
	syn_answered(kRemote1 + 2, 40722, 3000);
	syn_in(kRemote1 + 3, 40723, 4000);
	EXPECT_EQ(state(kRemote1, 40720), -1) << "the oldest went";
	EXPECT_EQ(state(kRemote1 + 1, 40721), KVX_CT_SYN_RECV) << "not answered yet, young";
	// Unanswered for longer than the guest takes: dropped by it.
	age_flow(kRemote1 + 3, 40723, 2 * KVX_HALFOPEN_ANSWER_NS);
	syn_in(kRemote1 + 4, 40724, 5000);
	EXPECT_EQ(state(kRemote1 + 3, 40723), -1);
	EXPECT_EQ(state(kRemote1 + 1, 40721), KVX_CT_SYN_RECV);
	EXPECT_EQ(state(kRemote1 + 2, 40722), KVX_CT_SYN_RECV);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 3u);
}

// A flood from one source that the guest answers, at the quota before a
// real client's SYN comes: each flood SYN evicts the flooder's own newest
// and takes its slot, so the client's flow keeps its place in the ring
// (pushed over the oldest place instead, the flood had overwritten every
// other remote's entry within a ring's worth of SYNs, and the client's
// flow then went at the next flood SYN) and completes its handshake.
TEST_F(TcpStateTest, EarlyDropKeepsAnotherRemotesHandshakeThroughAOneSourceFlood)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 4; });
	std::uint32_t isn = 9000;
	auto flood = [&](std::uint32_t count, std::uint16_t first) {
		for (std::uint16_t i = 0; i < count; i++, isn += 10)
			syn_answered(kRemote2, static_cast<std::uint16_t>(first + i), isn);
	};
	flood(4, 51000);
	syn_in(kRemote1, 40780, r_ - 1);
	Packet synack = from_guest_to(kRemote1, 40780, kTcpSyn | kTcpAck, g_ - 1, r_, 65160);
	synack.tcp_options = wscale_opt(7);
	out(synack);
	flood(3 * KVX_HALFOPEN_RING, 52000);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 4u);
	ASSERT_EQ(state(kRemote1, 40780), KVX_CT_SYN_RECV);
	in(from_remote(kRemote1, 40780, kTcpAck, r_, g_));
	EXPECT_EQ(state(kRemote1, 40780), KVX_CT_ESTABLISHED);
}

// A flood from ever new (spoofed) sources that the guest answers, each
// SYN-ACK as fast as the SYNs come: the flows are alike until the real
// opener's ACK, so the oldest goes, and a real handshake has
// KVX_HALFOPEN_RING - 1 flood SYNs' time to complete (15 with a ring of 16
// and the ring's order: 15 ms at 1000 SYN/s).
TEST_F(TcpStateTest, EarlyDropGivesARealHandshakeTheRingsTimeInAnAnsweredFlood)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = KVX_HALFOPEN_RING; });
	std::uint32_t n = 0;
	auto flood = [&](std::uint32_t count) {
		for (std::uint32_t i = 0; i < count; i++, n++)
			syn_answered(kRemote2 + n, static_cast<std::uint16_t>(20000 + n),
				     1000 + 10 * n);
	};
	flood(KVX_HALFOPEN_RING + 5); // at the quota, the ring turned over
	syn_in(kRemote1, 40730, r_ - 1);
	Packet synack = from_guest_to(kRemote1, 40730, kTcpSyn | kTcpAck, g_ - 1, r_, 65160);
	synack.tcp_options = wscale_opt(7);
	out(synack);
	flood(KVX_HALFOPEN_RING - 1);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, std::uint32_t{KVX_HALFOPEN_RING});
	ASSERT_EQ(state(kRemote1, 40730), KVX_CT_SYN_RECV);
	in(from_remote(kRemote1, 40730, kTcpAck, r_, g_));
	EXPECT_EQ(state(kRemote1, 40730), KVX_CT_ESTABLISHED);
	// The flood's oldest went in order: only the newest ring's worth is
	// left.
	EXPECT_EQ(state(kRemote2 + n - KVX_HALFOPEN_RING,
			static_cast<std::uint16_t>(20000 + n - KVX_HALFOPEN_RING)),
		  -1);
	EXPECT_EQ(state(kRemote2 + n - KVX_HALFOPEN_RING + 1,
			static_cast<std::uint16_t>(20000 + n - KVX_HALFOPEN_RING + 1)),
		  KVX_CT_SYN_RECV);
}

// One SYN spoofed from a real client's address does not make that
// client's handshake the one to go (a remote's own flows go first only
// when it holds two); a second then evicts the first spoofed one, the
// newest of that remote's.
TEST_F(TcpStateTest, ASpoofedSynFromAClientsAddressDoesNotEvictItsHandshake)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 4; });
	syn_answered(kRemote2, 40740, 1000);
	syn_answered(kRemote2 + 1, 40741, 2000);
	syn_answered(kRemote1, 40742, 3000); // the real client
	syn_answered(kRemote2 + 2, 40743, 4000);
	syn_answered(kRemote1, 40744, 5000); // spoofed from its address
	EXPECT_EQ(state(kRemote2, 40740), -1) << "the oldest went";
	EXPECT_EQ(state(kRemote1, 40742), KVX_CT_SYN_RECV);
	syn_answered(kRemote1, 40745, 6000); // and again
	EXPECT_EQ(state(kRemote1, 40744), -1) << "the remote's newest went";
	EXPECT_EQ(state(kRemote1, 40742), KVX_CT_SYN_RECV);
	EXPECT_EQ(state(kRemote2 + 1, 40741), KVX_CT_SYN_RECV);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 4u);
}

// After an eviction in the middle of the ring (a SYN the guest dropped),
// the next evictions still take the oldest first, in the order the SYNs
// came (the evicted slot was refilled by the next push, and the ring's
// order then made the flows pushed after it the oldest: newer flows went
// before older ones).
TEST_F(TcpStateTest, EarlyDropKeepsAgeOrderAfterAnEvictionInTheMiddle)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 4; });
	syn_answered(kRemote2, 40750, 1000);
	syn_in(kRemote2 + 1, 40751, 2000);
	age_flow(kRemote2 + 1, 40751, 2 * KVX_HALFOPEN_ANSWER_NS); // dropped by the guest
	syn_answered(kRemote2 + 2, 40752, 3000);
	syn_answered(kRemote2 + 3, 40753, 4000);
	syn_answered(kRemote2 + 4, 40754, 5000); // evicts 40751
	ASSERT_EQ(state(kRemote2 + 1, 40751), -1);
	syn_answered(kRemote2 + 5, 40755, 6000);
	EXPECT_EQ(state(kRemote2, 40750), -1);
	syn_answered(kRemote2 + 6, 40756, 7000);
	EXPECT_EQ(state(kRemote2 + 2, 40752), -1);
	EXPECT_EQ(state(kRemote2 + 4, 40754), KVX_CT_SYN_RECV) << "newer than 40753";
	syn_answered(kRemote2 + 7, 40757, 8000);
	EXPECT_EQ(state(kRemote2 + 3, 40753), -1);
	EXPECT_EQ(state(kRemote2 + 4, 40754), KVX_CT_SYN_RECV);
	syn_answered(kRemote2 + 8, 40758, 9000);
	EXPECT_EQ(state(kRemote2 + 4, 40754), -1);
	EXPECT_EQ(state(kRemote2 + 5, 40755), KVX_CT_SYN_RECV);
}

// A remote that cycles SYN, RST, SYN on one tuple pushes it into the ring
// once, not once per reopening (copies would crowd the other flows out).
TEST_F(TcpStateTest, ReopeningOneTupleTakesOneRingEntry)
{
	const std::uint32_t slot = dp().gflows_slot(kGuestA);
	std::uint32_t isn = 1000;
	for (int i = 0; i < 5; i++) {
		syn_in(kRemote1, 40760, isn);
		in(from_remote(kRemote1, 40760, kTcpRst, isn + 1, 0), KVX_R_XLATE_IN, false);
		ASSERT_EQ(state(kRemote1, 40760), KVX_CT_CLOSE);
		isn += 100000;
	}
	const auto ring = dp().halfopen_at(slot);
	ASSERT_TRUE(ring);
	EXPECT_EQ(ring->next, 1u);
	const kvx_ct_key want = ct_key(kProtoTcp, kGuestA, kGuestPort, kRemote1, 40760);
	std::size_t copies = 0;
	for (const kvx_ct_key &k : ring->keys)
		copies += std::memcmp(&k, &want, sizeof(k)) == 0;
	EXPECT_EQ(copies, 1u);
}

// A guest at its inbound quota whose half-open flows have left the
// early-drop ring (here: a ring forgotten, as at an upgrade) still gets a
// new SYN in: a half-open flow quiet for KVX_TW_RECYCLE_NS gives way as
// a closed one does (it held the quota for SYN_RECV's 60 s before).
TEST_F(TcpStateTest, QuotaTakesAQuietHalfOpenFlowOutsideTheRing)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 2; });
	syn_answered(kRemote2, 40770, 1000);
	syn_answered(kRemote2 + 1, 40771, 2000);
	dp().halfopen_forget(dp().gflows_slot(kGuestA));
	syn_in(kRemote1, 40772, 3000, KVX_R_DROP_GUEST_QUOTA);
	const kvx_ct_key k = ct_key(kProtoTcp, kGuestA, kGuestPort, kRemote2, 40770);
	auto f = dp().ct_lookup(k);
	ASSERT_TRUE(f);
	f->last_seen_ns -= 3 * kSec;
	dp().ct_update(k, *f);
	// The refused SYN's pass found nothing: lift its hold-offs.
	dp().set_reclaim_state(dp().reclaim_cursor(), 0);
	kvx_gflows_val g = dp().gflows_val(kGuestA);
	g.reclaim_ns = 0;
	dp().set_gflows_val(kGuestA, g);
	syn_in(kRemote1, 40772, 3000);
	EXPECT_EQ(state(kRemote2, 40770), -1);
	EXPECT_EQ(state(kRemote2 + 1, 40771), KVX_CT_SYN_RECV) << "not quiet yet";
	EXPECT_EQ(state(kRemote1, 40772), KVX_CT_SYN_RECV);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 2u);
}

// A flood from one source that the guest answers as well (every flow has
// its SYN-ACK) evicts that source's own half-open flows, never another
// remote's: the real connection still completes.
TEST_F(TcpStateTest, EarlyDropTakesTheFloodingRemotesOwnFlows)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 4; });
	syn_in(kRemote1, 40710, r_ - 1);
	Packet synack = from_guest_to(kRemote1, 40710, kTcpSyn | kTcpAck, g_ - 1, r_, 65160);
	synack.tcp_options = wscale_opt(7);
	out(synack);
	for (std::uint16_t i = 0; i < 2 * KVX_HALFOPEN_RING; i++) {
		const std::uint16_t rport = static_cast<std::uint16_t>(51000 + i);
		const std::uint32_t isn = 9000 + 10 * i;
		syn_in(kRemote2, rport, isn);
		out(from_guest_to(kRemote2, rport, kTcpSyn | kTcpAck, 0x20000000, isn + 1));
		auto f = flow(kRemote2, rport);
		ASSERT_TRUE(f) << "port " << rport;
		ASSERT_TRUE(f->flags & KVX_CT_F_SYNACK);
	}
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 4u);
	ASSERT_EQ(state(kRemote1, 40710), KVX_CT_SYN_RECV);
	in(from_remote(kRemote1, 40710, kTcpAck, r_, g_));
	EXPECT_EQ(state(kRemote1, 40710), KVX_CT_ESTABLISHED);
}

// Two guests whose quota slots share their low 10 bits (the index of the
// old kvx_halfopen array) keep rings of their own: a flood at A's forward,
// below A's quota (every SYN pushed, none evicted), does not overwrite B's
// ring, and B's next SYN at its quota still evicts B's oldest half-open
// flow (with a shared ring it found only A's entries, which are not B's to
// evict, and was refused).
TEST_F(TcpStateTest, GuestsWithCollidingSlotsKeepTheirOwnHalfOpenRings)
{
	constexpr std::uint16_t kFwdPortB = 2223;
	constexpr std::uint32_t kQuota = 4 * KVX_HALFOPEN_RING;
	own_address(dp(), kGuestB);
	add_port_forward(dp(), kProtoTcp, Topology::kUplinkAddr, kFwdPortB, kGuestB, kGuestPort);
	const Mac ma = guest_mac(kGuestA), mb = guest_mac(kGuestB);
	std::uint32_t seed = 1;
	for (; seed < 1000000; seed++) {
		const std::uint32_t sa = kvx_guest_slot(ma.data(), be32(kGuestA), seed);
		const std::uint32_t sb = kvx_guest_slot(mb.data(), be32(kGuestB), seed);
		if (sa != sb && (sa & 1023) == (sb & 1023))
			break;
	}
	ASSERT_LT(seed, 1000000u);
	set_cfg([seed](kvx_cfg &c) {
		c.guest_seed = seed;
		c.flow_quota = kQuota;
	});
	dp().set_gflows_val(kGuestA, kvx_gflows_val{});
	dp().set_gflows_val(kGuestB, kvx_gflows_val{});
	// Each from a remote of its own (a remote's own flows go first).
	auto syn_b = [&](std::uint16_t rport) {
		Packet syn = from_uplink(make_tcp(kRemote1 + rport, rport, Topology::kUplinkAddr,
						  kFwdPortB, kTcpSyn));
		syn.seq = 4000u + rport;
		return dp().run(Prog::UpIngress, syn.build(), topo().uplink_ifindex).verdict;
	};
	auto state_b = [&](std::uint16_t rport) {
		auto f = dp().ct_lookup(
			ct_key(kProtoTcp, kGuestB, kGuestPort, kRemote1 + rport, rport));
		return f ? int(f->state) : -1;
	};
	ASSERT_EQ(syn_b(41000), TC_ACT_REDIRECT);
	ASSERT_EQ(syn_b(41001), TC_ACT_REDIRECT);
	// B at its inbound quota (its other inbound flows established).
	kvx_gflows_val gb{};
	gb.in = kQuota;
	dp().set_gflows_val(kGuestB, gb);
	for (std::uint16_t i = 0; i < 2 * KVX_HALFOPEN_RING; i++)
		syn_in(kRemote2, static_cast<std::uint16_t>(52000 + i), 7000 + i);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 2u * KVX_HALFOPEN_RING);
	EXPECT_EQ(syn_b(41002), TC_ACT_REDIRECT)
		<< "B's quota: its oldest half-open flow gives way";
	EXPECT_EQ(state_b(41000), -1);
	EXPECT_EQ(state_b(41001), KVX_CT_SYN_RECV);
	EXPECT_EQ(state_b(41002), KVX_CT_SYN_RECV);
	EXPECT_EQ(dp().gflows_val(kGuestB).in, kQuota);
}

// A SYN that reopens a closed inbound flow (the tuple of a connection that
// completed, then was reset) makes it half-open again, and early drop can
// evict it as a new one: it goes into the guest's ring (here one the ring
// had forgotten, as a ring replaced at an upgrade has).
TEST_F(TcpStateTest, ReopenedInboundFlowCanBeEarlyDropped)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 1; });
	handshake(kRemote1, 40800);
	in(from_remote(kRemote1, 40800, kTcpRst, r_, 0));
	ASSERT_EQ(state(kRemote1, 40800), KVX_CT_CLOSE);
	const std::uint32_t slot = dp().gflows_slot(kGuestA);
	dp().halfopen_forget(slot);
	syn_in(kRemote1, 40800, r_ + 100000);
	ASSERT_EQ(state(kRemote1, 40800), KVX_CT_SYN_RECV);
	const auto ring = dp().halfopen_at(slot);
	ASSERT_TRUE(ring) << "the reopened flow made the guest's ring";
	const kvx_ct_key want = ct_key(kProtoTcp, kGuestA, kGuestPort, kRemote1, 40800);
	EXPECT_EQ(std::memcmp(&ring->keys[0], &want, sizeof(want)), 0);
	EXPECT_EQ(ring->next, 1u);
	// At the quota (1, taken by the reopened flow) a new SYN evicts it.
	syn_in(kRemote2, 40801, 5000);
	EXPECT_EQ(state(kRemote1, 40800), -1);
	EXPECT_EQ(state(kRemote2, 40801), KVX_CT_SYN_RECV);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 1u);
}

// RFC 7857 2.1 lets the partially open timeout be shorter than 4 minutes:
// a flow opened from outside keeps SYN_RECV's 60 s until its handshake
// completes, also when the opener's RST or FIN ends it first (a spoofing
// LAN host knows its own sequence numbers); once the handshake completed,
// the closing states' 4 minutes.  The guest's own reset flows get them too.
TEST_F(TcpStateTest, ClosedBeforeItsHandshakeAnInboundFlowKeepsTheHalfOpenTimeout)
{
	const kvx_cfg c = dp().cfg();
	auto timeout = [&](std::uint32_t remote, std::uint16_t rport) {
		auto f = flow(remote, rport);
		return f ? kvx_ct_timeout_s(&*f, kProtoTcp, &c.timeouts) : 0u;
	};
	auto syn_synack = [&](std::uint16_t rport, std::uint32_t isn) {
		syn_in(kRemote2, rport, isn);
		Packet synack = from_guest_to(kRemote2, rport, kTcpSyn | kTcpAck, g_ - 1, isn + 1);
		out(synack);
	};
	// SYN, the guest's SYN-ACK, the opener's exact RST.
	syn_synack(40500, 5000);
	in(from_remote(kRemote2, 40500, kTcpRst, 5001, 0));
	auto f = flow(kRemote2, 40500);
	ASSERT_TRUE(f);
	EXPECT_EQ(f->state, KVX_CT_CLOSE);
	EXPECT_TRUE(f->flags & KVX_CT_F_HALFOPEN);
	EXPECT_EQ(timeout(kRemote2, 40500), 60u) << "not tcp_close's 240 s";
	// SYN, SYN-ACK, the opener's FIN (in the window, no ACK).
	syn_synack(40501, 6000);
	in(from_remote(kRemote2, 40501, kTcpFin, 6001, 0));
	EXPECT_EQ(state(kRemote2, 40501), KVX_CT_FIN_WAIT);
	EXPECT_EQ(timeout(kRemote2, 40501), 60u) << "not tcp_fin_wait's 240 s";
	// The handshake completed, then a RST: 4 minutes.
	handshake(kRemote1, 40502);
	f = flow(kRemote1, 40502);
	ASSERT_TRUE(f);
	EXPECT_FALSE(f->flags & KVX_CT_F_HALFOPEN);
	in(from_remote(kRemote1, 40502, kTcpRst, r_, 0));
	EXPECT_EQ(state(kRemote1, 40502), KVX_CT_CLOSE);
	EXPECT_EQ(timeout(kRemote1, 40502), 240u) << "RFC 7857 2.2";
	// A new SYN on a closed inbound flow's tuple is half-open again.
	syn_in(kRemote1, 40502, r_ + 100000);
	f = flow(kRemote1, 40502);
	ASSERT_TRUE(f);
	EXPECT_EQ(f->state, KVX_CT_SYN_RECV);
	EXPECT_TRUE(f->flags & KVX_CT_F_HALFOPEN);
	// The guest's connection refused by a RST: 4 minutes.
	const Packet syn = from_guest(make_tcp(kGuestA, 62000, kRemote1, 443, kTcpSyn));
	run_case(dp(), Prog::BrIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(syn, 62000));
	Packet rst = reply_to(snat(syn, 62000));
	rst.tcp_flags = kTcpRst | kTcpAck;
	rst.seq = 0;
	rst.ack_seq = syn.seq + 1;
	run_up(rst, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(rst, kGuestA, 62000));
	f = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62000, kRemote1, 443));
	ASSERT_TRUE(f);
	EXPECT_EQ(f->state, KVX_CT_CLOSE);
	EXPECT_EQ(kvx_ct_timeout_s(&*f, kProtoTcp, &c.timeouts), 240u);
}

// A flood of SYN + RST pairs recycles its own entries like a SYN flood: a
// flow closed before its handshake is evicted first.
TEST_F(TcpStateTest, EarlyDropEvictsAFlowResetBeforeItsHandshake)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 2; });
	handshake(kRemote1, 40600);
	syn_in(kRemote2, 40601, 5000);
	in(from_remote(kRemote2, 40601, kTcpRst, 5001, 0));
	ASSERT_EQ(state(kRemote2, 40601), KVX_CT_CLOSE);
	ASSERT_EQ(dp().gflows_val(kGuestA).in, 2u);
	syn_in(kRemote2, 40602, 6000);
	EXPECT_EQ(state(kRemote2, 40601), -1) << "the reset half-open flow is evicted";
	EXPECT_EQ(state(kRemote2, 40602), KVX_CT_SYN_RECV);
	EXPECT_EQ(state(kRemote1, 40600), KVX_CT_ESTABLISHED);
	EXPECT_EQ(dp().gflows_val(kGuestA).in, 2u);
}

TEST_F(TcpStateTest, InboundQuotaOfEstablishedFlowsRefusesNewSyns)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 1; });
	handshake(kRemote1, 40400);
	// Nothing half-open to evict: refused, counted.
	syn_in(kRemote2, 40401, 1000, KVX_R_DROP_GUEST_QUOTA);
	EXPECT_EQ(state(kRemote2, 40401), -1);
	EXPECT_EQ(state(kRemote1, 40400), KVX_CT_ESTABLISHED);
}

TEST_F(TcpStateTest, RstAndFinOutsideTheScaledWindowAreDropped)
{
	handshake(kRemote1, 40500);
	// The guest advertises 2000 << 7 = 256000 bytes (its SYN-ACK's
	// unscaled 65160 is the most it had said); it acked r_.
	out(from_guest_to(kRemote1, 40500, kTcpAck, g_, r_, 2000));
	// Off-path: far outside.
	in(from_remote(kRemote1, 40500, kTcpRst, r_ + 1000000, 0), KVX_R_DROP_TCP_WINDOW);
	in(from_remote(kRemote1, 40500, kTcpRst, r_ - 1000, 0), KVX_R_DROP_TCP_WINDOW);
	in(from_remote(kRemote1, 40500, kTcpFin | kTcpAck, r_ + 1000000, g_),
	   KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(state(kRemote1, 40500), KVX_CT_ESTABLISHED);
	// 100000 bytes ahead: inside the window only with scaling applied;
	// not exact: forwarded for the guest's challenge ACK, the flow stays.
	in(from_remote(kRemote1, 40500, kTcpRst, r_ + 100000, 0));
	EXPECT_EQ(state(kRemote1, 40500), KVX_CT_ESTABLISHED);
	// Data both ways moves the window.
	Packet data = from_guest_to(kRemote1, 40500, kTcpAck | kTcpPsh, g_, r_);
	data.payload = pattern(100, 1);
	out(data);
	g_ += 100;
	Packet rdata = from_remote(kRemote1, 40500, kTcpAck | kTcpPsh, r_, g_);
	rdata.payload = pattern(200, 2);
	in(rdata);
	r_ += 200;
	out(from_guest_to(kRemote1, 40500, kTcpAck, g_, r_));
	// An in-window FIN ends the remote's half.
	in(from_remote(kRemote1, 40500, kTcpFin | kTcpAck, r_, g_));
	EXPECT_EQ(state(kRemote1, 40500), KVX_CT_FIN_WAIT);
	r_ += 1;
	out(from_guest_to(kRemote1, 40500, kTcpAck, g_, r_));
	// The exact RST (RCV.NXT) closes it.
	in(from_remote(kRemote1, 40500, kTcpRst, r_, 0));
	EXPECT_EQ(state(kRemote1, 40500), KVX_CT_CLOSE);
}

TEST_F(TcpStateTest, WithoutWindowScalingTheWindowIsUnscaled)
{
	// Only the remote asks for scaling: neither side scales (RFC 7323
	// 2.2), so 100000 bytes ahead is outside the guest's window (65160
	// in its SYN-ACK, 2000 since).
	syn_in(kRemote1, 40600, r_ - 1);
	out(from_guest_to(kRemote1, 40600, kTcpSyn | kTcpAck, g_ - 1, r_, 65160));
	in(from_remote(kRemote1, 40600, kTcpAck, r_, g_));
	out(from_guest_to(kRemote1, 40600, kTcpAck, g_, r_, 2000));
	ASSERT_EQ(state(kRemote1, 40600), KVX_CT_ESTABLISHED);
	in(from_remote(kRemote1, 40600, kTcpRst, r_ + 100000, 0), KVX_R_DROP_TCP_WINDOW);
	in(from_remote(kRemote1, 40600, kTcpRst, r_ + 300, 0));
	EXPECT_EQ(state(kRemote1, 40600), KVX_CT_ESTABLISHED);
}

TEST_F(TcpStateTest, GuestRstToASynClosesTheHalfOpenFlow)
{
	// A closed port: the guest's RST+ACK acknowledges the SYN (RFC 9293).
	syn_in(kRemote1, 40700, 999);
	out(from_guest_to(kRemote1, 40700, kTcpRst | kTcpAck, 0, 12345), KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(state(kRemote1, 40700), KVX_CT_SYN_RECV);
	out(from_guest_to(kRemote1, 40700, kTcpRst | kTcpAck, 0, 1000));
	EXPECT_EQ(state(kRemote1, 40700), KVX_CT_CLOSE);
}

// Outbound: a remote's RST to the guest's SYN must acknowledge the SYN.
TEST_F(UpIngressTest, RstToAGuestSynMustAcknowledgeIt)
{
	Packet syn = from_guest(make_tcp(kGuestA, 62800, kRemote1, 443, kTcpSyn));
	syn.seq = 5000;
	const Packet sent = establish(syn);
	Packet rst = reply_to(sent);
	rst.tcp_flags = kTcpRst | kTcpAck;
	rst.seq = 0;
	rst.ack_seq = 4242;
	run_up(rst, TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	auto st = [&] {
		return int(dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62800, kRemote1, 443))->state);
	};
	EXPECT_EQ(st(), KVX_CT_SYN_SENT);
	rst.ack_seq = 5001;
	run_up(rst, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(rst, kGuestA, 62800));
	EXPECT_EQ(st(), KVX_CT_CLOSE);
}

// A port given to this guest while the remote still holds the old
// connection on the tuple (LAST_ACK: the old guest's last ACK was lost)
// answers the guest's SYN with a challenge ACK (RFC 5961 4.2): it
// establishes nothing and its FIN is dropped; the guest's RST to it (from
// the ACK's number, RFC 9293 3.10.7.3) ends nothing; the real SYN-ACK then
// establishes the flow with both sides tracked, and the guest's abort from
// its SYN's end would close it.
TEST_F(UpIngressTest, ChallengeAckToAGuestSynEstablishesNothing)
{
	Packet syn = from_guest(make_tcp(kGuestA, 62801, kRemote1, 443, kTcpSyn));
	syn.seq = 5000;
	const Packet sent = establish(syn);
	const kvx_ct_key key = ct_key(kProtoTcp, kGuestA, 62801, kRemote1, 443);
	auto st = [&] { return int(dp().ct_lookup(key)->state); };
	const Packet ack = with(reply_to(sent), [](Packet &q) {
		q.tcp_flags = kTcpAck;
		q.seq = 777000;
		q.ack_seq = 90000000;
	});
	run_up(ack, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(ack, kGuestA, 62801));
	EXPECT_EQ(st(), KVX_CT_SYN_SENT) << "a challenge ACK establishes nothing";
	// Nor does a reply without SYN that acknowledges the SYN.
	const Packet ack1 = with(ack, [](Packet &q) { q.ack_seq = 5001; });
	run_up(ack1, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(ack1, kGuestA, 62801));
	EXPECT_EQ(st(), KVX_CT_SYN_SENT) << "only the SYN-ACK";
	run_up(with(ack, [](Packet &q) { q.tcp_flags = kTcpFin | kTcpAck; }), TC_ACT_SHOT,
	       KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(st(), KVX_CT_SYN_SENT);
	const Packet rst = from_guest(with(make_tcp(kGuestA, 62801, kRemote1, 443, kTcpRst),
					   [](Packet &q) { q.seq = 90000000; }));
	run_case(dp(), Prog::BrIngress, rst, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(rst, sent.sport));
	EXPECT_EQ(st(), KVX_CT_SYN_SENT) << "the guest's RST to it ends nothing";
	const Packet sa = with(reply_to(sent), [](Packet &q) {
		q.tcp_flags = kTcpSyn | kTcpAck;
		q.seq = 123456;
		q.ack_seq = 5001;
	});
	run_up(sa, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(sa, kGuestA, 62801));
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED);
	auto f = dp().ct_lookup(key);
	ASSERT_TRUE(f);
	EXPECT_TRUE(f->tcp[KVX_CT_SIDE_GUEST].flags & f->tcp[KVX_CT_SIDE_REMOTE].flags &
		    KVX_CT_TCP_F_SYN)
		<< "both sides tracked";
	// TCP Fast Open refused: the SYN's 100 bytes of data are not
	// acknowledged, its ISS + 1 is.
	Packet tfo = from_guest(make_tcp(kGuestA, 62803, kRemote1, 443, kTcpSyn));
	tfo.seq = 8000;
	tfo.payload = Bytes(100, 0x42);
	const Packet tfo_sent = establish(tfo);
	const Packet tfo_sa = with(reply_to(tfo_sent), [](Packet &q) {
		q.tcp_flags = kTcpSyn | kTcpAck;
		q.seq = 654321;
		q.ack_seq = 8001;
	});
	run_up(tfo_sa, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(tfo_sa, kGuestA, 62803));
	EXPECT_EQ(int(dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62803, kRemote1, 443))->state),
		  KVX_CT_ESTABLISHED)
		<< "a SYN-ACK of the SYN without its data";
	// A flow still in SYN_SENT closes on the guest's RST from its SYN's end.
	Packet syn2 = from_guest(make_tcp(kGuestA, 62802, kRemote1, 443, kTcpSyn));
	syn2.seq = 7000;
	establish(syn2);
	const kvx_ct_key key2 = ct_key(kProtoTcp, kGuestA, 62802, kRemote1, 443);
	const Packet abort = from_guest(with(make_tcp(kGuestA, 62802, kRemote1, 443, kTcpRst),
					     [](Packet &q) { q.seq = 7001; }));
	dp().run(Prog::BrIngress, abort.build(), topo().bridge_ifindex);
	EXPECT_EQ(int(dp().ct_lookup(key2)->state), KVX_CT_CLOSE);
}

// On a tracked flow a remote's segment outside the window whose ACK the
// guest never asked for either (more than it sent, or behind it by more
// than a retransmission) is another connection's (an old one on the tuple
// whose port went to this guest): dropped, never delivered.  Outside the
// window with a plausible ACK (a retransmission), or in it with an old ACK
// (which netfilter lets pass): passed to the guest, nothing changed.
TEST_F(TcpStateTest, RemoteSegmentOfAnotherConnectionIsDropped)
{
	handshake(kRemote1, 40200);
	auto f = flow(kRemote1, 40200);
	ASSERT_TRUE(f);
	const kvx_ct_tcp remote0 = f->tcp[KVX_CT_SIDE_REMOTE];
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_ + 900000000, g_ + 123456789),
	   KVX_R_DROP_TCP_WINDOW);
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_ - 5000000, g_ - 300000),
	   KVX_R_DROP_TCP_WINDOW);
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_ - 5000000, g_));
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_, g_ - 300000));
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_, g_ + 123456789));
	// In the window the guest opened only at its scale (65535 << 7, about
	// 8 MB; unscaled 64 KB): the sequence number is plausible, a stray
	// passed.
	out(from_guest_to(kRemote1, 40200, kTcpAck, g_, r_, 65535));
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_ + 4000000, g_ + 123456789));
	in(from_remote(kRemote1, 40200, kTcpAck | kTcpPsh, r_ + 9000000, g_ + 123456789),
	   KVX_R_DROP_TCP_WINDOW);
	// The guest's own segments are never dropped by it, however far off:
	// its stack answers for them (a stray, translated).
	out(from_guest_to(kRemote1, 40200, kTcpAck | kTcpPsh, g_ + 900000000, r_ + 123456789));
	EXPECT_EQ(state(kRemote1, 40200), KVX_CT_ESTABLISHED);
	f = flow(kRemote1, 40200);
	ASSERT_TRUE(f);
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_REMOTE].end, remote0.end) << "strays teach nothing";
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_REMOTE].ack, remote0.ack);
}

// A flow picked up mid-stream lives as long as a SYN's until the remote
// answers, then as an established connection: one bare ACK per remote
// must not hold an entry of the guest's quota for days.
TEST_F(UpIngressTest, MidStreamFlowUnansweredIsShortLived)
{
	const kvx_cfg c = dp().cfg();
	const Packet ack = from_guest(make_tcp(kGuestA, 62811, kRemote1, 443, kTcpAck));
	run_case(dp(), Prog::BrIngress, ack, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(ack, 62811));
	auto f = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62811, kRemote1, 443));
	ASSERT_TRUE(f);
	EXPECT_EQ(f->state, KVX_CT_ESTABLISHED);
	EXPECT_EQ(kvx_ct_timeout_s(&*f, kProtoTcp, &c.timeouts), c.timeouts.tcp_syn_sent);
	// The remote's ACK: its sequence number what the guest acknowledged,
	// acknowledging what the guest sent.
	Packet back = reply_to(snat(ack, 62811));
	back.tcp_flags = kTcpAck;
	back.seq = ack.ack_seq;
	back.ack_seq = ack.seq;
	run_up(back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(back, kGuestA, 62811));
	f = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62811, kRemote1, 443));
	ASSERT_TRUE(f);
	EXPECT_EQ(kvx_ct_timeout_s(&*f, kProtoTcp, &c.timeouts), c.timeouts.tcp_established);
}

// A flow picked up mid-stream (no SYNs seen: window scale unknown) is
// checked loosely (ct.h tcp_loose_plausible): RST and FIN against what the
// receiver acknowledged, give or take its largest window at scale 14.
// Before, an off-path RST closed it and any FIN ended it.
TEST_F(UpIngressTest, MidStreamFlowIsCheckedLoosely)
{
	constexpr std::uint32_t g = 0x10000001; // the guest's next sequence number
	constexpr std::uint32_t r = 0x7f000001; // the remote's
	const kvx_ct_key key = ct_key(kProtoTcp, kGuestA, 62810, kRemote1, 443);
	Packet ack = from_guest(make_tcp(kGuestA, 62810, kRemote1, 443, kTcpAck));
	ack.seq = g;
	ack.ack_seq = r;
	ack.window = 502; // at scale 14 at most 8 MiB
	const Packet sent = establish(ack);
	auto seg = [&](std::uint8_t flags, std::uint32_t seq, std::uint32_t ackn) {
		Packet p = reply_to(sent);
		p.tcp_flags = flags;
		p.seq = seq;
		p.ack_seq = ackn;
		p.window = 1000;
		return p;
	};
	auto in_ok = [&](const Packet &p) {
		run_up(p, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(p, kGuestA, 62810));
	};
	auto st = [&] { return int(dp().ct_lookup(key)->state); };
	ASSERT_TRUE(dp().ct_lookup(key));
	EXPECT_TRUE(dp().ct_lookup(key)->tcp[KVX_CT_SIDE_GUEST].flags & KVX_CT_TCP_F_LOOSE);

	// Off-path guesses: RSTs ahead of the guest's largest window or
	// behind what it acknowledged, FINs far ahead or far behind.
	run_up(seg(kTcpRst, r + 100000000, 0), TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	run_up(seg(kTcpRst, r - 1000, 0), TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	run_up(seg(kTcpFin | kTcpAck, r + 100000000, g), TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	run_up(seg(kTcpFin | kTcpAck, r - 100000, g), TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED);
	// A stray segment far out goes to the guest, whose TCP judges it, but
	// teaches nothing: the remote is not taken as seen.
	in_ok(seg(kTcpAck, r + 100000000, g));
	EXPECT_FALSE(dp().ct_lookup(key)->flags & KVX_CT_F_SEEN_REPLY);
	EXPECT_EQ(dp().ct_lookup(key)->tcp[KVX_CT_SIDE_REMOTE].maxwin, 0u);
	// Inside the largest window the guest may have, not exact: forwarded
	// for the guest's challenge ACK (RFC 5961), the flow stays.
	in_ok(seg(kTcpRst, r + 1000000, 0));
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED);

	// The remote's data: plausible, learnt.
	Packet data = seg(kTcpAck | kTcpPsh, r, g);
	data.payload = pattern(200, 2);
	in_ok(data);
	auto f = dp().ct_lookup(key);
	ASSERT_TRUE(f);
	EXPECT_TRUE(f->flags & KVX_CT_F_SEEN_REPLY);
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_REMOTE].flags, KVX_CT_TCP_F_LOOSE)
		<< "nothing learnt from outside";
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_GUEST].maxwin, 502u) << "unscaled";
	// Behind what the guest acknowledged by less than a segment: a
	// retransmission, plausible.
	in_ok(seg(kTcpAck, r + 100, g));
	// A guessed FIN inside the span reaches the guest but ends nothing:
	// the guest never acknowledges its end.
	in_ok(seg(kTcpFin | kTcpAck, r + 1000000, g));
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED);

	// The guest acknowledges it; a guess at the guest's old RCV.NXT is
	// behind now; the exact RST closes the flow.
	Packet gack = from_guest(make_tcp(kGuestA, 62810, kRemote1, 443, kTcpAck));
	gack.seq = g;
	gack.ack_seq = r + 200;
	gack.window = 502;
	run_case(dp(), Prog::BrIngress, gack, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(gack, sent.sport));
	EXPECT_EQ(dp().ct_lookup(key)->tcp[KVX_CT_SIDE_GUEST].ack, r + 200);
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED) << "the guest's ACK is not the guessed FIN's end";
	// One below the guest's ACK (a peer resetting from its FIN's sequence
	// number): forwarded, the flow stays.
	in_ok(seg(kTcpRst, r + 199, 0));
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED);
	run_up(seg(kTcpRst, r, 0), TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	in_ok(seg(kTcpRst, r + 200, 0));
	EXPECT_EQ(st(), KVX_CT_CLOSE);
}

// Flows a guest's bare ACK picks up (seq 5000, ack 9000: its SND.NXT and
// RCV.NXT) from port gport to kRemote1:443.
class PickUpTest : public UpIngressTest {
protected:
	static kvx_ct_key key_of(std::uint16_t gport)
	{
		return ct_key(kProtoTcp, kGuestA, gport, kRemote1, 443);
	}
	static Packet bare_ack(std::uint16_t gport)
	{
		Packet p = from_guest(make_tcp(kGuestA, gport, kRemote1, 443, kTcpAck));
		p.seq = 5000;
		p.ack_seq = 9000;
		return p;
	}
};

// The guest's own segments on a picked-up flow are not judged (its RST and
// FIN end the flow as without kvmxdp), whatever the remote's side says:
// only what comes from outside is.
TEST_F(PickUpTest, MidStreamFlowTakesTheGuestsOwnFinAndRst)
{
	const kvx_ct_key key = key_of(62812);
	const Packet ack = bare_ack(62812);
	const Packet sent = establish(ack);
	Packet back = reply_to(sent);
	back.tcp_flags = kTcpAck;
	back.seq = 9000;
	back.ack_seq = 5000;
	run_up(back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(back, kGuestA, 62812));
	ASSERT_TRUE(dp().ct_lookup(key)->flags & KVX_CT_F_SEEN_REPLY);
	Packet fin = ack;
	fin.tcp_flags = kTcpFin | kTcpAck;
	fin.seq = 5000 + 0x80000000U; // as far from the remote's ACK as can be
	run_case(dp(), Prog::BrIngress, fin, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(fin, sent.sport));
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_FIN_WAIT);
	Packet rst = ack;
	rst.tcp_flags = kTcpRst;
	rst.seq = 0x12345678;
	rst.ack_seq = 0;
	run_case(dp(), Prog::BrIngress, rst, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(rst, sent.sport));
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_CLOSE);
}

// The usual pick-up of an idle connection is the guest's keepalive (seq one
// below its SND.NXT): the remote's answer, acknowledging one more than the
// keepalive's end, is a reply like any (the flow gets an established
// connection's life), and both FINs end it in TIME_WAIT, across the
// sequence numbers' wrap.
TEST_F(UpIngressTest, MidStreamKeepalivePickUpClosesCleanly)
{
	constexpr std::uint32_t g = 0xfffffffe; // the guest's SND.NXT
	constexpr std::uint32_t r = 0xffffffff; // the remote's
	const kvx_ct_key key = ct_key(kProtoTcp, kGuestA, 62813, kRemote1, 443);
	const kvx_cfg c = dp().cfg();
	auto guest = [&](std::uint8_t flags, std::uint32_t seq, std::uint32_t ackn) {
		Packet p = from_guest(make_tcp(kGuestA, 62813, kRemote1, 443, flags));
		p.seq = seq;
		p.ack_seq = ackn;
		p.window = 502;
		return p;
	};
	const Packet sent = establish(guest(kTcpAck, g - 1, r));
	auto remote = [&](std::uint8_t flags, std::uint32_t seq, std::uint32_t ackn) {
		Packet p = reply_to(sent);
		p.tcp_flags = flags;
		p.seq = seq;
		p.ack_seq = ackn;
		p.window = 1000;
		p.payload.clear();
		run_up(p, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(p, kGuestA, 62813));
	};
	auto out = [&](const Packet &p) {
		run_case(dp(), Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(p, sent.sport));
	};
	remote(kTcpAck, r, g);
	auto f = dp().ct_lookup(key);
	ASSERT_TRUE(f);
	EXPECT_TRUE(f->flags & KVX_CT_F_SEEN_REPLY);
	EXPECT_EQ(kvx_ct_timeout_s(&*f, kProtoTcp, &c.timeouts), c.timeouts.tcp_established);
	// The remote's FIN counts once the guest acknowledges it.
	remote(kTcpFin | kTcpAck, r, g);
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_ESTABLISHED);
	out(guest(kTcpAck, g, r + 1));
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_FIN_WAIT);
	out(guest(kTcpFin | kTcpAck, g, r + 1));
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_TIME_WAIT);
	remote(kTcpAck, r + 1, g + 1);
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_TIME_WAIT);
}

// The remote opening a new connection on a picked-up flow's tuple (a client
// reconnecting from its port to a guest's forward): nothing is known of
// it, so nothing is checked on it (its FIN ends it whatever its numbers),
// and the guest's ACK of another connection is taken as it comes.
TEST_F(PickUpTest, RemoteSynOnAPickedUpFlowIsNotJudgedByTheOldOne)
{
	const kvx_ct_key key = key_of(62815);
	const Packet ack = bare_ack(62815);
	const Packet sent = establish(ack);
	// The guest's TCP is on another connection: its ACK far behind.
	Packet jump = ack;
	jump.ack_seq = 9000 - 0x60000000U;
	run_case(dp(), Prog::BrIngress, jump, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(jump, sent.sport));
	EXPECT_EQ(dp().ct_lookup(key)->tcp[KVX_CT_SIDE_GUEST].ack, 9000 - 0x60000000U);
	Packet syn = reply_to(sent);
	syn.tcp_flags = kTcpSyn;
	syn.seq = 0x30000000;
	syn.ack_seq = 0;
	syn.payload.clear();
	run_up(syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(syn, kGuestA, 62815));
	auto f = dp().ct_lookup(key);
	ASSERT_TRUE(f);
	EXPECT_EQ(f->tcp[0].flags | f->tcp[1].flags, 0) << "no longer checked";
	EXPECT_EQ(int(f->state), KVX_CT_ESTABLISHED) << "its state as it was";
	Packet fin = syn;
	fin.tcp_flags = kTcpFin | kTcpAck;
	fin.seq = 0x70000000;
	fin.ack_seq = 1;
	run_up(fin, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(fin, kGuestA, 62815));
	EXPECT_EQ(int(dp().ct_lookup(key)->state), KVX_CT_FIN_WAIT);
}

// A guessed FIN stays pending only until the remote's data passes it (that
// FIN was no real one), and a later FIN does not wipe a real one the guest
// is about to acknowledge.
TEST_F(PickUpTest, AGuessedFinPassedByDataCountsForNothing)
{
	const kvx_ct_key key = key_of(62816);
	const Packet ack = bare_ack(62816);
	const Packet sent = establish(ack);
	auto remote = [&](std::uint8_t flags, std::uint32_t seq, std::size_t len) {
		Packet p = reply_to(sent);
		p.tcp_flags = flags;
		p.seq = seq;
		p.ack_seq = 5000;
		p.payload = pattern(len, 3);
		run_up(p, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(p, kGuestA, 62816));
	};
	auto guest_ack = [&](std::uint32_t ackn) {
		Packet p = ack;
		p.ack_seq = ackn;
		p.payload.clear();
		run_case(dp(), Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(p, sent.sport));
	};
	auto st = [&] { return int(dp().ct_lookup(key)->state); };
	remote(kTcpFin | kTcpAck, 9500, 0);    // guessed: ends at 9501
	remote(kTcpAck | kTcpPsh, 9000, 1000); // real data past it
	EXPECT_FALSE(dp().ct_lookup(key)->tcp[KVX_CT_SIDE_REMOTE].flags & KVX_CT_TCP_F_FIN);
	guest_ack(9501); // as if the guest's ACK stepped on it
	guest_ack(10000);
	EXPECT_EQ(st(), KVX_CT_ESTABLISHED) << "the guessed FIN was forgotten";
	// The real FIN, then a guessed one: the guest's ACK of the real one counts.
	remote(kTcpFin | kTcpAck, 10000, 0); // real: ends at 10001
	remote(kTcpFin | kTcpAck, 10400, 0); // guessed
	guest_ack(10001);
	EXPECT_EQ(st(), KVX_CT_FIN_WAIT);
}

// A guest SYN on the tuple of a picked-up flow (a guest restored from a
// snapshot, a client reconnecting from a fixed port) starts the flow anew,
// as on a closed one: the new connection is tracked from its SYNs, not
// judged by the old one's sequence numbers.
TEST_F(PickUpTest, SynOnAPickedUpFlowStartsANewConnection)
{
	const kvx_ct_key key = key_of(62814);
	const Packet ack = bare_ack(62814);
	const Packet sent = establish(ack);
	Packet syn = ack;
	syn.tcp_flags = kTcpSyn;
	syn.seq = 0x40000000;
	syn.ack_seq = 0;
	syn.payload.clear();
	run_case(dp(), Prog::BrIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(syn, sent.sport));
	auto f = dp().ct_lookup(key);
	ASSERT_TRUE(f);
	EXPECT_EQ(int(f->state), KVX_CT_SYN_SENT);
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_GUEST].flags & (KVX_CT_TCP_F_SYN | KVX_CT_TCP_F_LOOSE),
		  KVX_CT_TCP_F_SYN);
	EXPECT_EQ(f->tcp[KVX_CT_SIDE_REMOTE].flags, 0);
	Packet synack = reply_to(snat(syn, sent.sport));
	synack.seq = 0x70000000;
	synack.ack_seq = 0x40000001;
	run_up(synack, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(synack, kGuestA, 62814));
	f = dp().ct_lookup(key);
	ASSERT_TRUE(f);
	EXPECT_EQ(int(f->state), KVX_CT_ESTABLISHED);
	EXPECT_EQ(f->tcp[0].flags & f->tcp[1].flags & KVX_CT_TCP_F_SYN, KVX_CT_TCP_F_SYN)
		<< "both SYNs seen: window-checked as any connection";
}

} // namespace
} // namespace kvmxdp::test
