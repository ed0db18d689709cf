// SPDX-License-Identifier: GPL-2.0
// Port overlapping (RFC 7857 section 3; ct.h ovl_share, abi.h kvx_ovl),
// only among one guest's own endpoints: a guest at its port limit (or with
// the pool exhausted) opens flows from new endpoints through the external
// ports it already holds, to remotes those ports have no flow with; every
// (port, remote endpoint, protocol) stays unique, inbound packets reach
// exactly the endpoint whose flow they answer, and no other guest's
// packets, claims or refusals ever touch those ports.
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include "fixture.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

constexpr std::uint32_t kRemote3 = ip4(198, 18, 0, 30);

class OverlapTest : public BrIngressTest {
protected:
	// Each guest may hold `ports` dynamic bindings; refusals unanswered
	// (compared as drops).
	void limit(std::uint32_t ports)
	{
		set_cfg([ports](kvx_cfg &c) {
			c.guest_ports = ports;
			c.gw_addr = 0;
		});
	}
	// The remote's answer to g, which left through ext_port, reaches the
	// endpoint that sent g.
	void reply_reaches(const Packet &g, std::uint16_t ext_port)
	{
		const Packet r = reply_to(snat(g, ext_port));
		run_case(dp(), Prog::UpIngress, r, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
			 dnat(r, g.src, g.sport));
	}
	static kvx_bind_key in_key(std::uint8_t proto, std::uint16_t ext)
	{
		return bind_key(KVX_BIND_IN, proto, Topology::kUplinkAddr, ext);
	}
	std::size_t claims() const { return dp().ovl_entries().size(); }
	// Writes a UDP claim of ext_port on the uplink address towards
	// remote:53 for the tenant endpoint addr:port of owner_port's owner,
	// as the datapath would (created_ns: when it was made).
	void put_claim(std::uint16_t ext_port, std::uint32_t remote, std::uint32_t addr,
		       std::uint16_t port, std::uint16_t owner_port, std::uint64_t created_ns = 0)
	{
		kvx_ovl_key k{};
		k.proto = kProtoUdp;
		k.ext_addr = be32(Topology::kUplinkAddr);
		k.ext_port = be16(ext_port);
		k.rem_addr = be32(remote);
		k.rem_port = be16(53);
		kvx_ovl_val v{};
		v.addr = be32(addr);
		v.port = be16(port);
		v.owner_port = be16(owner_port);
		v.created_ns = created_ns;
		dp().ovl_update(k, v);
	}
};

// A guest at its port limit goes on opening UDP flows from new endpoints
// (a resolver's random source ports) to other remotes: they share its two
// ports, their replies come back to the endpoint that sent each query, and
// a remote endpoint both ports already talk to is refused.  Another guest
// gets a port of its own.
TEST_F(OverlapTest, GuestAtItsPortLimitSharesItsOwnPorts)
{
	limit(2);
	const Packet a0 = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const Packet a1 = from_guest(make_udp(kGuestA, 40001, kRemote1, 53));
	const std::uint16_t p0 = translate_out(a0);
	const std::uint16_t p1 = translate_out(a1);
	ASSERT_NE(p0, p1);
	EXPECT_EQ(claims(), 0u) << "free ports are taken the usual way";

	// Ten new endpoints to ten remote endpoints: all through A's ports.
	std::vector<std::pair<Packet, std::uint16_t>> tenants;
	for (std::uint16_t i = 0; i < 10; i++) {
		const Packet t = from_guest(make_udp(kGuestA, static_cast<std::uint16_t>(41000 + i),
						     i % 2 ? kRemote2 : kRemote3,
						     static_cast<std::uint16_t>(53 + i)));
		const std::uint16_t pt = translate_out(t);
		ASSERT_TRUE(pt == p0 || pt == p1) << pt;
		tenants.emplace_back(t, pt);
	}
	EXPECT_EQ(dp().gports(kGuestA), 2u) << "tenants hold no port of their own";
	EXPECT_EQ(dp().gtenant(kGuestA), 10u);
	EXPECT_EQ(claims(), 10u);
	const Packet &t0 = tenants[0].first;
	auto out = dp().bind_lookup(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, t0.sport));
	ASSERT_TRUE(out);
	EXPECT_EQ(out->flags, KVX_BIND_F_SHARED) << "a tenant's OUT half";
	EXPECT_EQ(out->port, be16(tenants[0].second));
	auto in = dp().bind_lookup(in_key(kProtoUdp, tenants[0].second));
	ASSERT_TRUE(in);
	EXPECT_EQ(in->addr, be32(kGuestA));
	EXPECT_TRUE(in->flags & KVX_BIND_F_SHARED);

	// Every reply reaches its own endpoint, the owners' too.
	for (const auto &[t, pt] : tenants)
		reply_reaches(t, pt);
	reply_reaches(a0, p0);
	reply_reaches(a1, p1);
	// The tenants' next packets leave through their ports again.
	for (const auto &[t, pt] : tenants)
		EXPECT_EQ(translate_out(t, pt), pt);

	// R1:53 has a flow through both ports: a new endpoint cannot reach it.
	run_br(from_guest(make_udp(kGuestA, 42000, kRemote1, 53)), TC_ACT_SHOT,
	       KVX_R_DROP_GUEST_PORTS);
	// A tenant keeps its one port (endpoint-independent mapping): towards
	// the owner's remote endpoint on that port it is refused, not moved.
	run_br(with(t0,
		    [](Packet &q) {
			    q.dst = kRemote1;
			    q.dport = 53;
		    }),
	       TC_ACT_SHOT, KVX_R_DROP_PORTS_EXHAUSTED);
	// The owner towards a tenant's remote endpoint on its port: refused
	// too (its one port serves the tenant there).
	const Packet &owner_of_t0 = tenants[0].second == p0 ? a0 : a1;
	run_br(with(owner_of_t0,
		    [&](Packet &q) {
			    q.dst = t0.dst;
			    q.dport = t0.dport;
		    }),
	       TC_ACT_SHOT, KVX_R_DROP_PORTS_EXHAUSTED);

	// Guest B: a port of its own, none of A's, nothing shared.
	const Packet b = from_guest(make_udp(kGuestB, 41000, kRemote2, 54));
	const std::uint16_t pb = translate_out(b);
	EXPECT_NE(pb, p0);
	EXPECT_NE(pb, p1);
	EXPECT_EQ(dp().gports(kGuestB), 1u);
	reply_reaches(b, pb);
	EXPECT_EQ(claims(), 10u);
}

// Another guest at its limit shares only its own ports: never a port of A,
// even towards a remote A's port is free for.  A claim that names another
// guest's endpoint on A's port (a hand-made one: the datapath never makes
// it) delivers nothing.
TEST_F(OverlapTest, AnotherGuestNeverUsesAGuestsPorts)
{
	limit(1);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t pa = translate_out(a);
	const Packet b = from_guest(make_udp(kGuestB, 40000, kRemote1, 53));
	const std::uint16_t pb = translate_out(b);
	// B at its limit towards R2: its own port.
	const Packet b2 = from_guest(make_udp(kGuestB, 40001, kRemote2, 53));
	EXPECT_EQ(translate_out(b2, pb), pb);
	// B towards R1:53, which its port serves already and A's does not:
	// refused, A's port untouched.
	run_br(from_guest(make_udp(kGuestB, 40002, kRemote1, 53)), TC_ACT_SHOT,
	       KVX_R_DROP_GUEST_PORTS);
	auto ia = dp().bind_lookup(in_key(kProtoUdp, pa));
	ASSERT_TRUE(ia);
	EXPECT_FALSE(ia->flags & KVX_BIND_F_SHARED) << "A's port is not shared";
	for (const auto &[k, v] : dp().ovl_entries())
		EXPECT_EQ(v.addr, be32(kGuestB));

	// A forged claim of B's endpoint on A's port: R2's packet to pa is not
	// B's (the host's, as any packet no flow wants).
	put_claim(pa, kRemote2, kGuestB, 40001, 40000);
	run_case(dp(), Prog::UpIngress, reply_to(snat(b2, pa)), TC_ACT_OK, KVX_R_PASS_HOST);
	// B's own reply still reaches B.
	reply_reaches(b2, pb);
}

// TCP: a new SYN from a guest at its limit shares its port; the SYN-ACKs
// reach the right endpoints; a shared port is never recycled for TIME_WAIT
// reuse while its tenants' flows live; a bare ACK (a pick-up) gets no
// shared port.
TEST_F(OverlapTest, TcpSynSharesAndRepliesReachTheirEndpoints)
{
	limit(1);
	const Packet a = from_guest(make_tcp(kGuestA, 40000, kRemote1, 80));
	const std::uint16_t p = translate_out(a);
	run_br(from_guest(make_tcp(kGuestA, 40001, kRemote2, 80, kTcpAck)), TC_ACT_SHOT,
	       KVX_R_DROP_GUEST_PORTS);
	const Packet t = from_guest(make_tcp(kGuestA, 40001, kRemote2, 80));
	EXPECT_EQ(translate_out(t, p), p);
	for (const Packet *g : {&t, &a}) {
		Packet sa = reply_to(snat(*g, p));
		sa.tcp_flags = kTcpSyn | kTcpAck;
		sa.ack_seq = g->seq + 1;
		run_case(dp(), Prog::UpIngress, sa, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
			 dnat(sa, g->src, g->sport));
	}
	auto ft = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 40001, kRemote2, 80));
	ASSERT_TRUE(ft);
	EXPECT_EQ(ft->state, KVX_CT_ESTABLISHED);
	EXPECT_EQ(ft->ext_port, be16(p));
	auto fa = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 40000, kRemote1, 80));
	ASSERT_TRUE(fa);
	EXPECT_EQ(fa->state, KVX_CT_ESTABLISHED);
	auto in = dp().bind_lookup(in_key(kProtoTcp, p));
	ASSERT_TRUE(in);
	EXPECT_TRUE(in->flags & KVX_BIND_F_SHARED);
	// The tenant towards the owner's remote: refused.
	run_br(from_guest(make_tcp(kGuestA, 40002, kRemote1, 80)), TC_ACT_SHOT,
	       KVX_R_DROP_GUEST_PORTS);
}

// A port whose one connection is closed (KVX_BIND_F_TW), not quiet enough
// to be reused for the new SYN yet: shared rather than refused (a guest
// whose every port's first connection is over would else wait for them);
// once shared, it is not reused.
TEST_F(OverlapTest, ClosedPortNotYetReusableIsShared)
{
	limit(1);
	const Packet a = from_guest(make_tcp(kGuestA, 40000, kRemote1, 80));
	const std::uint16_t p = translate_out(a);
	auto in = dp().bind_lookup(in_key(kProtoTcp, p));
	ASSERT_TRUE(in);
	kvx_bind_val iv = *in;
	iv.flags |= KVX_BIND_F_TW;
	dp().bind_update(in_key(kProtoTcp, p), iv);
	const Packet t = from_guest(make_tcp(kGuestA, 40001, kRemote2, 80));
	EXPECT_EQ(translate_out(t, p), p);
	reply_reaches(t, p);
	in = dp().bind_lookup(in_key(kProtoTcp, p));
	ASSERT_TRUE(in);
	EXPECT_EQ(in->flags & (KVX_BIND_F_TW | KVX_BIND_F_SHARED),
		  KVX_BIND_F_TW | KVX_BIND_F_SHARED);
	EXPECT_EQ(in->addr, be32(kGuestA));
	EXPECT_EQ(in->port, be16(40000)) << "the owner's binding stays";
}

// A port whose flows `conntrack flush` deleted (KVX_BIND_F_FLUSHED) is not
// shared: its owner's flushed connection's remote would otherwise find a
// tenant's claim before the owner picks the flow up.
TEST_F(OverlapTest, FlushedPortIsNotShared)
{
	limit(1);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = translate_out(a);
	auto in = dp().bind_lookup(in_key(kProtoUdp, p));
	ASSERT_TRUE(in);
	kvx_bind_val iv = *in;
	iv.flags |= KVX_BIND_F_FLUSHED;
	dp().bind_update(in_key(kProtoUdp, p), iv);
	dp().ct_delete(ct_key(kProtoUdp, kGuestA, 40000, kRemote1, 53));
	run_br(from_guest(make_udp(kGuestA, 40001, kRemote1, 53)), TC_ACT_SHOT,
	       KVX_R_DROP_GUEST_PORTS);
	EXPECT_EQ(claims(), 0u);
	// The owner picks its flow up.
	EXPECT_EQ(translate_out(a, p), p);
}

// A claim made under an owner whose binding went (the port is another
// endpoint's now, even one of the same guest) delivers nothing, and the
// tenant's next packet does not leave through the port on its strength.
// Another guest's endpoint is never reached through it either.
TEST_F(OverlapTest, ClaimOfAGoneOwnerIsDead)
{
	limit(1);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = translate_out(a);
	const Packet t = from_guest(make_udp(kGuestA, 40001, kRemote2, 53));
	EXPECT_EQ(translate_out(t, p), p);
	reply_reaches(t, p);
	// The owner's pair goes; another endpoint of A takes the port.
	dp().bind_delete(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 40000));
	auto in = dp().bind_lookup(in_key(kProtoUdp, p));
	ASSERT_TRUE(in);
	kvx_bind_val iv = *in;
	dp().bind_delete(in_key(kProtoUdp, p));
	iv.port = be16(40005);
	iv.flags = 0;
	dp().bind_update(in_key(kProtoUdp, p), iv);
	// R2's answer to the port is not the old tenant's any more.
	run_case(dp(), Prog::UpIngress, reply_to(snat(t, p)), TC_ACT_OK, KVX_R_PASS_HOST);
	// Nor guest B's, whose endpoint the port goes to next.
	iv.addr = be32(kGuestB);
	iv.port = be16(40001);
	dp().bind_update(in_key(kProtoUdp, p), iv);
	run_case(dp(), Prog::UpIngress, reply_to(snat(t, p)), TC_ACT_OK, KVX_R_PASS_HOST);
	// The tenant's next packet: its claim is dead, it binds anew and
	// leaves through another port (the limit off: A's count still has the
	// pair deleted by hand).
	set_cfg([](kvx_cfg &c) { c.guest_ports = 0; });
	const std::uint16_t p2 = translate_out(t);
	EXPECT_NE(p2, p);
}

// What ovl_owner_ok promises, clause by clause: a claim counts only while
// the port's IN half names the endpoint that owned the port when the claim
// was made (the same guest address and guest port) through a dynamic
// binding.  Here the owner's flow and then its binding go (as the GC
// would), the tenant's claim and flow are left, and the port is bound
// again: to another guest's endpoint of the same guest port number, to a
// port forward of the old owner endpoint itself.  Neither way does the
// remote's answer reach the tenant, nor does the tenant leave through the
// port on the strength of its old claim.
TEST_F(OverlapTest, ClaimOutlivingItsOwnerReachesNobody)
{
	limit(1);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = translate_out(a);
	const Packet t = from_guest(make_udp(kGuestA, 40001, kRemote2, 53));
	EXPECT_EQ(translate_out(t, p), p);
	reply_reaches(t, p);
	ASSERT_EQ(claims(), 1u);
	// The owner's flow expires and its pair is released; the claim and the
	// tenant's flow stay (until the GC sweeps them).
	dp().ct_delete(ct_key(kProtoUdp, kGuestA, 40000, kRemote1, 53));
	dp().bind_delete(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 40000));
	auto in = dp().bind_lookup(in_key(kProtoUdp, p));
	ASSERT_TRUE(in);
	const kvx_bind_val old = *in;
	dp().bind_delete(in_key(kProtoUdp, p));
	ASSERT_EQ(claims(), 1u);
	ASSERT_TRUE(dp().ct_lookup(ct_key(kProtoUdp, kGuestA, 40001, kRemote2, 53)));

	// 1. Guest B's endpoint with the owner's guest port takes the port
	// (only the address tells the owners apart).
	kvx_bind_val iv = old;
	iv.addr = be32(kGuestB);
	iv.port = be16(40000);
	iv.flags = 0;
	dp().bind_update(in_key(kProtoUdp, p), iv);
	kvx_bind_val ov{};
	ov.addr = be32(Topology::kUplinkAddr);
	ov.port = be16(p);
	ov.last_used_ns = old.last_used_ns;
	dp().bind_update(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestB, 40000), ov);
	run_case(dp(), Prog::UpIngress, reply_to(snat(t, p)), TC_ACT_OK, KVX_R_PASS_HOST);
	// The tenant's next packet binds anew, never through B's port.
	set_cfg([](kvx_cfg &c) { c.guest_ports = 0; });
	EXPECT_NE(translate_out(t), p) << "A's tenant left through guest B's port";
	auto tout = dp().bind_lookup(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 40001));
	ASSERT_TRUE(tout);
	EXPECT_FALSE(tout->flags & KVX_BIND_F_SHARED);
	EXPECT_EQ(dp().bind_lookup(in_key(kProtoUdp, p))->addr, be32(kGuestB))
		<< "B keeps its port";

	// 2. The port becomes a forward to the old owner endpoint itself: the
	// claim of the tenant (same address, same owner port) is still dead.
	const Packet t2 = from_guest(make_udp(kGuestA, 40002, kRemote3, 53));
	put_claim(p, kRemote3, kGuestA, 40002, 40000, old.last_used_ns);
	auto tf = dp().ct_lookup(ct_key(kProtoUdp, kGuestA, 40001, kRemote2, 53));
	ASSERT_TRUE(tf);
	kvx_ct_val f2 = *tf;
	f2.ext_port = be16(p);
	dp().ct_update(ct_key(kProtoUdp, kGuestA, 40002, kRemote3, 53), f2);
	dp().bind_delete(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestB, 40000));
	dp().bind_delete(in_key(kProtoUdp, p));
	add_port_forward(dp(), kProtoUdp, Topology::kUplinkAddr, p, kGuestA, 40000);
	// R3's packet to the forward is the forward's (its target endpoint),
	// not the claim's tenant's.
	const Packet r3 = reply_to(snat(t2, p));
	run_case(dp(), Prog::UpIngress, r3, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		 dnat_unknown_mac(r3, kGuestA, 40000));
	// The tenant's own flow through the port does not go on through the
	// forward's port: it binds anew.
	EXPECT_NE(translate_out(t2), p) << "a tenant's flow left through a port forward";
}

// A tenant whose port went (its owner's binding released) binds anew on its
// next new flow: the datapath deletes its stale OUT half and takes it off
// the guest's tenant count (kvx_gtenant) at once, not at the GC's next
// recount; a guest at its bound of tenants gets that place back.
TEST_F(OverlapTest, StaleTenantReleasedByTheDatapathLeavesTheTenantCount)
{
	limit(1);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = translate_out(a);
	const Packet t = from_guest(make_udp(kGuestA, 40001, kRemote2, 53));
	EXPECT_EQ(translate_out(t, p), p);
	ASSERT_EQ(dp().gtenant(kGuestA), 1u);
	// The owner's pair goes (idle, released); the limit off (A's port
	// count still has the pair deleted by hand).
	dp().bind_delete(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 40000));
	dp().bind_delete(in_key(kProtoUdp, p));
	set_cfg([](kvx_cfg &c) { c.guest_ports = 0; });
	// The tenant's new flow to another remote: its stale OUT half goes,
	// it gets a port of its own.
	const Packet t3 = with(t, [](Packet &q) { q.dst = kRemote3; });
	const std::uint16_t pt = translate_out(t3);
	auto out = dp().bind_lookup(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 40001));
	ASSERT_TRUE(out);
	EXPECT_FALSE(out->flags & KVX_BIND_F_SHARED);
	EXPECT_EQ(out->port, be16(pt));
	EXPECT_EQ(dp().gtenant(kGuestA), 0u) << "the stale tenant is no longer counted";
	EXPECT_EQ(dp().gports(kGuestA), 2u) << "its own port counted (and the hand-deleted one)";
}

// Two guests whose quota slots share their low 10 bits (the index of the
// old kvx_gown array) keep rings of their own: B binding port after port
// does not push A's one port out of A's ring, and A, out of ports, still
// finds it to share.
TEST_F(OverlapTest, GuestsWithCollidingSlotsKeepTheirOwnPortRings)
{
	own_address(dp(), kGuestA);
	own_address(dp(), kGuestB);
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
		c.nat_port_lo = 61000;
		c.nat_port_hi = 61016; // 17 ports: A's one, B's 16
		c.guest_ports = 0;
		c.gw_addr = 0;
	});
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t pa = translate_out(a);
	// B binds 16 endpoints: as many as a ring holds.
	for (std::uint16_t i = 0; i < KVX_GTW_RING; i++)
		translate_out(from_guest(
			make_udp(kGuestB, static_cast<std::uint16_t>(42000 + i), kRemote1, 53)));
	EXPECT_EQ(dp().gports(kGuestB), std::uint32_t{KVX_GTW_RING});
	// The pool is exhausted: A's new endpoint shares A's port.
	const Packet t = from_guest(make_udp(kGuestA, 40001, kRemote2, 53));
	EXPECT_EQ(translate_out(t, pa), pa);
	reply_reaches(t, pa);
	EXPECT_EQ(dp().gtenant(kGuestA), 1u);
}

// kvx_ovl full of live claims: a new tenant is refused (DROP_TABLE_FULL),
// the owners' flows go on; claims whose flow is gone make room.
TEST_F(OverlapTest, FullClaimTableRefusesNewTenantsAndReclaimsDeadOnes)
{
	Datapath small(TableSizes{0, 0, 4096, 4096, 256, 2});
	ASSERT_EQ(small.ovl_max_entries(), 2u);
	kvx_cfg c = Datapath::default_cfg(topo());
	c.guest_ports = 1;
	c.gw_addr = 0;
	small.set_cfg(c);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const RunResult ra = small.run(Prog::BrIngress, a.build(), topo().bridge_ifindex);
	ASSERT_EQ(ra.verdict, TC_ACT_REDIRECT);
	const std::uint16_t p = parse(ra.out).sport;
	// Translated through A's one port.
	auto out = [&](const Packet &q) {
		run_case(small, Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(q, p));
	};
	const Packet t1 = from_guest(make_udp(kGuestA, 40001, kRemote2, 53));
	const Packet t2 = from_guest(make_udp(kGuestA, 40002, kRemote2, 54));
	out(t1);
	out(t2);
	EXPECT_EQ(small.ovl_entries().size(), 2u);
	const Packet t3 = from_guest(make_udp(kGuestA, 40003, kRemote2, 55));
	run_case(small, Prog::BrIngress, t3, TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL);
	out(a);
	// t1's flow goes (as the GC or the datapath's reclaim would expire
	// it), its claim older than the datapath's reclaim age.
	small.ct_delete(ct_key(kProtoUdp, kGuestA, 40001, kRemote2, 53));
	for (auto [k, v] : small.ovl_entries()) {
		v.created_ns = boot_ns_ago(5ULL * 1000 * 1000 * 1000);
		small.ovl_update(k, v);
	}
	// The pass that found nothing to free held further passes off.
	small.set_ovl_reclaim_state(0, 0);
	out(t3);
	EXPECT_EQ(small.ovl_entries().size(), 2u);
	bool t1_claim = false;
	for (const auto &[k, v] : small.ovl_entries())
		t1_claim |= v.port == be16(40001);
	EXPECT_FALSE(t1_claim) << "the dead claim made room";
}

// A guest at its limit sending from ever new source ports gets at most
// KVX_TENANTS_PER_PORT tenants per port of its limit (each takes a
// kvx_bind entry every guest shares); the next new endpoint is refused as
// without sharing, and another guest still binds.
TEST_F(OverlapTest, TenantsAreBoundedByThePortLimit)
{
	limit(1);
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = translate_out(a);
	for (std::uint16_t i = 0; i < KVX_TENANTS_PER_PORT; i++)
		EXPECT_EQ(translate_out(from_guest(make_udp(
						kGuestA, static_cast<std::uint16_t>(41000 + i),
						kRemote2, static_cast<std::uint16_t>(1000 + i))),
					p),
			  p);
	EXPECT_EQ(dp().gtenant(kGuestA), std::uint32_t{KVX_TENANTS_PER_PORT});
	for (std::uint16_t i = 0; i < 4; i++)
		run_br(from_guest(make_udp(kGuestA, static_cast<std::uint16_t>(42000 + i), kRemote3,
					   static_cast<std::uint16_t>(2000 + i))),
		       TC_ACT_SHOT, KVX_R_DROP_GUEST_PORTS);
	EXPECT_EQ(dp().gtenant(kGuestA), std::uint32_t{KVX_TENANTS_PER_PORT});
	EXPECT_FALSE(dp().bind_lookup(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 42000)))
		<< "no binding entry for a refused endpoint";
	EXPECT_EQ(claims(), std::size_t{KVX_TENANTS_PER_PORT});
	const Packet b = from_guest(make_udp(kGuestB, 40000, kRemote1, 53));
	EXPECT_NE(translate_out(b), p);
}

// The tenants are bounded by kvx_cfg.tenant_cap too (an eighth of the
// binding table by default), below the port limit's: with the default limit
// (most of the pool) eight tenants per port would be more entries than
// kvx_bind holds.
TEST_F(OverlapTest, TenantsAreBoundedByTheBindingTable)
{
	set_cfg([](kvx_cfg &c) {
		c.guest_ports = 1;
		c.tenant_cap = 3;
		c.gw_addr = 0;
	});
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = translate_out(a);
	for (std::uint16_t i = 0; i < 3; i++)
		EXPECT_EQ(translate_out(from_guest(make_udp(
						kGuestA, static_cast<std::uint16_t>(41000 + i),
						kRemote2, static_cast<std::uint16_t>(1000 + i))),
					p),
			  p);
	EXPECT_EQ(dp().gtenant(kGuestA), 3u);
	run_br(from_guest(make_udp(kGuestA, 42000, kRemote3, 2000)), TC_ACT_SHOT,
	       KVX_R_DROP_GUEST_PORTS);
	EXPECT_EQ(dp().gtenant(kGuestA), 3u);
	EXPECT_FALSE(dp().bind_lookup(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 42000)));
}

// kvx_bind full when a tenant's OUT half is inserted: the packet is
// dropped and the claim made for it goes too (a guest refused again and
// again would else fill kvx_ovl with claims no flow follows).
TEST_F(OverlapTest, TenantRefusedForAFullBindingTableLeavesNoClaim)
{
	Datapath small(TableSizes{0, 4, 4096, 4096, 256, 0});
	kvx_cfg c = Datapath::default_cfg(topo());
	c.guest_ports = 1;
	c.gw_addr = 0;
	small.set_cfg(c);
	place_guests(small);
	for (const std::uint32_t g : {kGuestA, kGuestB}) {
		const Packet q = from_guest(make_udp(g, 40000, kRemote1, 53));
		ASSERT_EQ(small.run(Prog::BrIngress, q.build(), topo().bridge_ifindex).verdict,
			  TC_ACT_REDIRECT);
	}
	run_case(small, Prog::BrIngress, from_guest(make_udp(kGuestA, 40001, kRemote2, 53)),
		 TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL);
	EXPECT_EQ(small.ovl_entries().size(), 0u);
	EXPECT_EQ(small.gtenant(kGuestA), 0u);
}

// kvx_bind full: a new binding takes the place of the tenant OUT half idle
// longest beyond the binding grace (30 s) rather than being refused; the
// tenant's flow goes on through its claim.  None idle long enough: refused.
TEST_F(OverlapTest, FullBindingTableReclaimsAnIdleTenant)
{
	Datapath small(TableSizes{0, 4, 4096, 4096, 256, 0});
	kvx_cfg c = Datapath::default_cfg(topo());
	c.guest_ports = 1;
	c.gw_addr = 0;
	small.set_cfg(c);
	place_guests(small);
	auto out = [&](const Packet &q) {
		const RunResult r = small.run(Prog::BrIngress, q.build(), topo().bridge_ifindex);
		EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
		return r.verdict == TC_ACT_REDIRECT ? parse(r.out).sport : std::uint16_t{0};
	};
	const Packet a = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	const std::uint16_t p = out(a);
	const Packet t = from_guest(make_udp(kGuestA, 40001, kRemote2, 53));
	ASSERT_EQ(out(t), p) << "a tenant of A's port";
	ASSERT_EQ(small.gtenant(kGuestA), 1u);
	ASSERT_EQ(small.bind_entries().size(), 3u);
	// The tenant idle for 31 s.
	const kvx_bind_key tk = bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 40001);
	auto tv = small.bind_lookup(tk);
	ASSERT_TRUE(tv);
	tv->last_used_ns -= 31ULL * 1000 * 1000 * 1000;
	small.bind_update(tk, *tv);
	// B's first endpoint: its IN half fills the table, its OUT half takes
	// the idle tenant's place.
	const Packet b = from_guest(make_udp(kGuestB, 40000, kRemote1, 53));
	const std::uint16_t pb = out(b);
	EXPECT_NE(pb, 0u);
	EXPECT_FALSE(small.bind_lookup(tk)) << "the idle tenant's OUT half went";
	EXPECT_EQ(small.gtenant(kGuestA), 0u);
	EXPECT_EQ(small.bind_entries().size(), 4u);
	// The tenant's flow goes on through its claim, both ways.
	EXPECT_EQ(out(t), p);
	const Packet r = reply_to(snat(t, p));
	run_case(small, Prog::UpIngress, r, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		 dnat(r, kGuestA, 40001));
	// No idle tenant left: refused, nothing half-made.
	run_case(small, Prog::BrIngress, from_guest(make_udp(kGuestB, 40002, kRemote3, 53)),
		 TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL);
	EXPECT_EQ(small.bind_entries().size(), 4u);
}

} // namespace
} // namespace kvmxdp::test
