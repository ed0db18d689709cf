// Conntrack capacity faults: opportunistic reclaim of
// expired flows by the datapath when kvx_ct is full (no daemon, no GC), the
// per-guest flow quota (DROP_GUEST_QUOTA), a table full of live flows
// (DROP_TABLE_FULL, established flows unaffected) and the cost of one
// reclaim pass on a full 64k table.
#include <linux/pkt_cls.h>

#include <bpf/bpf.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>

#include "fixture.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

constexpr std::uint64_t kSec = 1000000000ULL;
constexpr std::uint64_t kMaxAge = 120 * kSec; // the oldest age below, with room

// A datapath of its own (small tables, fresh .bss and counters).
class CtReclaimTest : public BrIngressTest {
protected:
	std::unique_ptr<Datapath> make(std::uint32_t ct, std::uint32_t quota = 0)
	{
		// The tests age flows by up to 100 s: on a younger machine (a
		// freshly booted VM) boot_ns_ago() would wait between two agings
		// and age the first ones further.  Wait here, once, instead.
		boot_ns_ago(kMaxAge);
		auto d = std::make_unique<Datapath>(TableSizes{ct, 0});
		kvx_cfg c = Datapath::default_cfg(topo());
		c.flow_quota = quota;
		d->set_cfg(c);
		place_guests(*d);
		return d;
	}
	static Packet udp(std::uint32_t guest, std::uint16_t sport, std::uint32_t dst,
			  std::uint16_t dport = 53)
	{
		return from_guest(make_udp(guest, sport, dst, dport));
	}
	// Sends p out and expects it translated; returns the external port.
	static std::uint16_t out(Datapath &d, const Packet &p)
	{
		RunResult r = d.run(Prog::BrIngress, p.build(), topo().bridge_ifindex);
		EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)))
			<< "sending " << p.src << ":" << p.sport << " -> " << p.dst;
		return parse(r.out).sport;
	}
	// Ages a flow: last seen `ago_s` seconds before now.
	static void age(Datapath &d, const Packet &p, std::uint64_t ago_s)
	{
		kvx_ct_key k = ct_key(p.proto, p.src, p.sport, p.dst, p.dport);
		auto v = d.ct_lookup(k);
		ASSERT_TRUE(v) << "flow to age";
		v->last_seen_ns = boot_ns_ago(ago_s * kSec);
		d.ct_update(k, *v);
	}
	static bool has_flow(const Datapath &d, const Packet &p)
	{
		return d.ct_lookup(ct_key(p.proto, p.src, p.sport, p.dst, p.dport)).has_value();
	}
	// Lifts the hold-offs a pass that freed room leaves (in proportion to
	// the entries it visited: microseconds here), for tests that make
	// several passes in a row.
	static void no_holdoff(Datapath &d, std::uint32_t guest)
	{
		d.set_reclaim_state(d.reclaim_cursor(), 0);
		kvx_gflows_val g = d.gflows_val(guest);
		g.reclaim_ns = 0;
		d.set_gflows_val(guest, g);
	}
};

// A full table whose flows expired (daemon stopped): a new flow gets in, the
// expired ones are gone, every live one is still there, and the guest's
// flow counter follows.
TEST_F(CtReclaimTest, FullTableOfExpiredFlowsAcceptsNewFlow)
{
	auto d = make(8);
	std::vector<Packet> flows;
	for (std::uint32_t i = 0; i < 8; i++)
		flows.push_back(udp(kGuestA, 62100, kRemote1 + i));
	flows[7] = from_guest(make_tcp(kGuestA, 62101, kRemote2, 443, kTcpAck)); // ESTABLISHED
	for (const Packet &p : flows)
		out(*d, p);
	ASSERT_EQ(d->ct_entries().size(), 8u);
	EXPECT_EQ(d->gflows(kGuestA), 8u);
	// UDP unreplied: 30 s.  0-4 expired, 5 ten seconds short of it (a slow
	// emulated machine takes seconds from here to the run), 6 fresh; 7 is
	// an established TCP flow idle for a minute (5 days allowed).
	for (int i = 0; i < 5; i++)
		age(*d, flows[i], 40);
	age(*d, flows[5], 20);
	age(*d, flows[7], 60);

	const Packet fresh = udp(kGuestB, 62102, kRemote2, 123);
	run_case(*d, Prog::BrIngress, fresh, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(fresh, 62102));
	for (int i = 0; i < 5; i++)
		EXPECT_FALSE(has_flow(*d, flows[i])) << "expired flow " << i << " reclaimed";
	for (int i = 5; i < 8; i++)
		EXPECT_TRUE(has_flow(*d, flows[i])) << "live flow " << i << " kept";
	EXPECT_TRUE(has_flow(*d, fresh));
	EXPECT_EQ(d->ct_entries().size(), 4u);
	EXPECT_EQ(d->gflows(kGuestA), 3u) << "reclaim decrements the guest's count";
	EXPECT_EQ(d->gflows(kGuestB), 1u);
	// The live ones still translate through their (kept) bindings.
	run_case(*d, Prog::BrIngress, flows[5], TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(flows[5], 62100));
	run_case(*d, Prog::BrIngress, flows[7], TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(flows[7], 62101));
	// Room for four more new flows now, then full again.
	for (std::uint32_t i = 0; i < 4; i++)
		out(*d, udp(kGuestC, 62103, kRemote1 + 100 + i));
	run_case(*d, Prog::BrIngress, udp(kGuestC, 62103, kRemote1 + 200), TC_ACT_SHOT,
		 KVX_R_DROP_TABLE_FULL);
}

// The datapath expires flows by the GC's rule (kvmxdp/ct_rules.h, shared):
// one timeout per TCP state, UDP unreplied/replied, ICMP, other protocols,
// taken from kvx_cfg.  Each kind once just past its timeout (reclaimed) and
// once just inside it (kept); the timeouts are 10 s apart, so taking any
// other kind's timeout shows.
TEST_F(CtReclaimTest, ExpiryFollowsStateAndConfiguredTimeouts)
{
	struct Kind {
		const char *name;
		std::uint8_t proto, state, flags;
		std::uint32_t timeout;
	};
	const std::vector<Kind> kinds = {
		{"tcp syn_sent", kProtoTcp, KVX_CT_SYN_SENT, 0, 10},
		{"tcp established", kProtoTcp, KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, 20},
		{"tcp fin_wait", kProtoTcp, KVX_CT_FIN_WAIT, KVX_CT_F_FIN_OUT, 30},
		{"tcp time_wait", kProtoTcp, KVX_CT_TIME_WAIT, 0, 40},
		{"tcp close", kProtoTcp, KVX_CT_CLOSE, 0, 50},
		{"udp unreplied", kProtoUdp, KVX_CT_UDP, 0, 60},
		{"udp replied", kProtoUdp, KVX_CT_UDP, KVX_CT_F_SEEN_REPLY, 70},
		{"icmp", kProtoIcmp, KVX_CT_UDP, 0, 80},
		{"other protocol", 47, KVX_CT_UDP, 0, 90},
		{"tcp without state", kProtoTcp, KVX_CT_NONE, 0, 10},
		{"udp without state", kProtoUdp, KVX_CT_NONE, 0, 90},
	};
	// The pass runs for guest B at its quota (one expired flow of its own
	// counted): a full table would also let another guest's closed flows
	// (those kept below) give way to B's.
	auto d = make(std::uint32_t(kinds.size() * 2 + 2), 1);
	kvx_cfg c = d->cfg();
	c.timeouts.tcp_syn_sent = 10;
	c.timeouts.tcp_established = 20;
	c.timeouts.tcp_fin_wait = 30;
	c.timeouts.tcp_time_wait = 40;
	c.timeouts.tcp_close = 50;
	c.timeouts.udp = 60;
	c.timeouts.udp_stream = 70;
	c.timeouts.icmp = 80;
	c.timeouts.other = 90;
	d->set_cfg(c);
	const std::uint64_t now = boot_ns();
	std::vector<kvx_ct_key> expired, live;
	std::uint16_t port = 1000;
	for (const Kind &k : kinds) {
		for (int past = 0; past < 2; past++) {
			kvx_ct_key key = ct_key(k.proto, kGuestA, port, kRemote1, 53);
			port++;
			kvx_ct_val v{};
			v.state = k.state;
			v.flags = k.flags;
			v.ext_addr = be32(Topology::kUplinkAddr);
			v.last_seen_ns = now - (std::uint64_t(k.timeout) + (past ? 10 : 0)) * kSec +
					 (past ? 0 : 10 * kSec);
			d->ct_update(key, v);
			(past ? expired : live).push_back(key);
		}
	}
	const Packet old_b = udp(kGuestB, 62161, kRemote2);
	out(*d, old_b);
	age(*d, old_b, 100);
	ASSERT_EQ(d->gflows(kGuestB), 1u);
	const Packet fresh = udp(kGuestB, 62160, kRemote2);
	run_case(*d, Prog::BrIngress, fresh, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(fresh, 62160));
	EXPECT_EQ(d->gflows(kGuestB), 1u) << "its expired flow went, the new one came";
	for (std::size_t i = 0; i < kinds.size(); i++) {
		EXPECT_FALSE(d->ct_lookup(expired[i])) << kinds[i].name << ": 10 s past its timeout";
		EXPECT_TRUE(d->ct_lookup(live[i])) << kinds[i].name << ": 10 s inside its timeout";
	}
}

// The shared window start beyond the end of the table (it shrank since):
// the pass wraps around at once instead of failing the insert.
TEST_F(CtReclaimTest, CursorPastTheEndWrapsAround)
{
	auto d = make(4);
	std::vector<Packet> flows;
	for (std::uint32_t i = 0; i < 4; i++) {
		flows.push_back(udp(kGuestA, 62150, kRemote1 + i));
		out(*d, flows.back());
	}
	age(*d, flows[2], 40);
	d->set_reclaim_state(1000, 0);
	const Packet fresh = udp(kGuestB, 62151, kRemote2);
	run_case(*d, Prog::BrIngress, fresh, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(fresh, 62151));
	EXPECT_FALSE(has_flow(*d, flows[2]));
	EXPECT_EQ(d->reclaim_cursor(), 0u) << "a pass that reached the end starts over";
}

// A table full of live flows: new flows are counted drops, nothing live is
// reclaimed, established flows keep translating both ways.
TEST_F(CtReclaimTest, FullTableOfLiveFlowsDropsNewFlowsOnly)
{
	auto d = make(4);
	const Packet tcp = from_guest(make_tcp(kGuestA, 62200, kRemote1, 443));
	std::uint16_t ext = out(*d, tcp);
	ASSERT_EQ(ext, 62200);
	// The SYN-ACK: the flow is ESTABLISHED (and replied).
	const Packet synack = from_uplink(reply_to(snat(tcp, ext)));
	run_case(*d, Prog::UpIngress, synack, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		 dnat(synack, kGuestA, 62200));
	std::vector<Packet> others;
	for (std::uint32_t i = 0; i < 3; i++) {
		others.push_back(udp(kGuestB, 62201, kRemote2 + i));
		out(*d, others.back());
	}
	// Idle, but within every timeout.
	age(*d, others[0], 20);
	const Stats before = d->stats();
	for (std::uint32_t i = 0; i < 20; i++) {
		run_case(*d, Prog::BrIngress, udp(kGuestC, std::uint16_t(62300 + i), kRemote1),
			 TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL);
		// A bound guest endpoint to a new destination: the same.
		run_case(*d, Prog::BrIngress, udp(kGuestB, 62201, kRemote1 + 50 + i), TC_ACT_SHOT,
			 KVX_R_DROP_TABLE_FULL);
	}
	EXPECT_EQ(d->stats().by_reason[KVX_R_DROP_TABLE_FULL].packets -
			  before.by_reason[KVX_R_DROP_TABLE_FULL].packets,
		  40u);
	EXPECT_EQ(d->ct_entries().size(), 4u);
	EXPECT_TRUE(has_flow(*d, tcp));
	for (const Packet &p : others)
		EXPECT_TRUE(has_flow(*d, p));
	// Established flow: both directions still translate, byte for byte.
	const Packet data = from_guest(make_tcp(kGuestA, 62200, kRemote1, 443, kTcpAck | kTcpPsh));
	run_case(*d, Prog::BrIngress, data, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(data, 62200));
	const Packet ack = from_uplink(reply_to(snat(data, 62200)));
	run_case(*d, Prog::UpIngress, ack, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		 dnat(ack, kGuestA, 62200));
	run_case(*d, Prog::BrIngress, others[0], TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(others[0], 62201));
}

// Guest A at its quota: its new flows are dropped (no binding made for
// them), guest B's new flow is translated, A's existing flows carry on.
TEST_F(CtReclaimTest, GuestQuotaStopsOnlyThatGuest)
{
	auto d = make(64, 3);
	std::vector<Packet> a;
	for (std::uint32_t i = 0; i < 3; i++) {
		a.push_back(udp(kGuestA, std::uint16_t(62400 + i), kRemote1 + i));
		out(*d, a.back());
	}
	EXPECT_EQ(d->gflows(kGuestA), 3u);
	const std::size_t binds = d->bind_entries().size();
	// A new destination from a bound port, and a new port: both over quota.
	run_case(*d, Prog::BrIngress, udp(kGuestA, 62400, kRemote2), TC_ACT_SHOT,
		 KVX_R_DROP_GUEST_QUOTA);
	run_case(*d, Prog::BrIngress, from_guest(make_tcp(kGuestA, 62450, kRemote2, 80)),
		 TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	EXPECT_EQ(d->bind_entries().size(), binds) << "no binding for a flow over quota";
	EXPECT_EQ(d->ct_entries().size(), 3u);
	// Guest B is not affected.
	const Packet b = udp(kGuestB, 62400, kRemote2, 443);
	const std::uint16_t b_ext = out(*d, b);
	EXPECT_NE(b_ext, 62400) << "62400 is A's: B gets another port of the range";
	EXPECT_EQ(d->gflows(kGuestB), 1u);
	// A's existing flows, both ways.
	for (const Packet &p : a) {
		run_case(*d, Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(p, p.sport));
		const Packet r = from_uplink(reply_to(snat(p, p.sport)));
		run_case(*d, Prog::UpIngress, r, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
			 dnat(r, kGuestA, p.sport));
	}
	EXPECT_EQ(d->gflows(kGuestA), 3u) << "packets of existing flows do not count";
}

// With no daemon, the quota frees itself: A's expired flows are reclaimed
// when A is at its quota (the table itself is far from full).
TEST_F(CtReclaimTest, GuestAtQuotaWithExpiredFlowsGetsNewFlow)
{
	auto d = make(64, 2);
	const Packet a0 = udp(kGuestA, 62500, kRemote1), a1 = udp(kGuestA, 62501, kRemote1);
	out(*d, a0);
	out(*d, a1);
	run_case(*d, Prog::BrIngress, udp(kGuestA, 62502, kRemote1), TC_ACT_SHOT,
		 KVX_R_DROP_GUEST_QUOTA);
	age(*d, a0, 40);
	// The failed pass above holds further passes off for 100 ms, machine-
	// wide and for this guest.
	d->set_reclaim_state(0, 0);
	{
		kvx_gflows_val g = d->gflows_val(kGuestA);
		EXPECT_GT(g.reclaim_ns, 0u) << "the guest's hold-off";
		g.reclaim_ns = 0;
		d->set_gflows_val(kGuestA, g);
	}
	const Packet a2 = udp(kGuestA, 62502, kRemote1);
	run_case(*d, Prog::BrIngress, a2, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(a2, 62502));
	EXPECT_FALSE(has_flow(*d, a0));
	EXPECT_TRUE(has_flow(*d, a1));
	EXPECT_EQ(d->gflows(kGuestA), 2u);
}

// A flow is uncounted in the slot it was counted in when made (abi.h
// kvx_ct_val.slot), not in its guest's slot now: a MAC of no port fills
// the shared slot's quota, is then placed on a port, and its expired flows
// free the shared slot (another MAC of no port gets in) and leave the
// port's counter alone.  Before, the reclaim took them off the port's
// counter (below zero) and the shared slot stayed full.
TEST_F(CtReclaimTest, FlowGoesFromTheSlotItWasCountedIn)
{
	auto d = make(64, 2);
	const std::uint32_t a3 = ip4(192, 168, 122, 61), a4 = ip4(192, 168, 122, 62);
	const Mac m3{0x52, 0x54, 0x00, 0x00, 0x07, 0x02}, m4{0x52, 0x54, 0x00, 0x00, 0x07, 0x03};
	auto from = [](std::uint32_t src, const Mac &mac, std::uint16_t sport) {
		Packet p = udp(src, sport, kRemote1);
		p.src_mac = mac;
		return p;
	};
	const std::uint32_t shared = d->mac_slot(m3);
	ASSERT_EQ(shared, kvx_port_slot(0, d->cfg().guest_seed));
	const Packet f0 = from(a3, m3, 62900), f1 = from(a3, m3, 62901);
	out(*d, f0);
	out(*d, f1);
	for (const Packet &f : {f0, f1}) {
		auto v = d->ct_lookup(ct_key(f.proto, f.src, f.sport, f.dst, f.dport));
		ASSERT_TRUE(v);
		EXPECT_EQ(kvx_ct_slot_read(v->slot, d->cfg().guest_seed), shared)
			<< "the slot it was counted in, recorded";
	}
	EXPECT_EQ(d->gflows_at(shared).out, 2u);
	d->brport_set(m3, kGuestPortA);
	const std::uint32_t port_a = d->mac_slot(m3);
	ASSERT_NE(port_a, shared);
	ASSERT_EQ(d->gflows_at(port_a).out, 0u);
	run_case(*d, Prog::BrIngress, from(a4, m4, 62900), TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	age(*d, f0, 40);
	age(*d, f1, 40);
	d->set_reclaim_state(0, 0);
	kvx_gflows_val g = d->gflows_at(shared);
	g.reclaim_ns = 0;
	d->set_gflows_at(shared, g);
	// (Not 62900: a3's binding of it outlives its flow.)
	const Packet n = from(a4, m4, 62910);
	run_case(*d, Prog::BrIngress, n, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(n, 62910));
	EXPECT_FALSE(has_flow(*d, f0));
	EXPECT_FALSE(has_flow(*d, f1));
	EXPECT_EQ(d->gflows_at(shared).out, 1u) << "two gone, the new one counted";
	EXPECT_EQ(d->gflows_at(port_a).out, 0u) << "the port's counter untouched";
}

// Inbound flows (EIF) count against the guest they deliver to, on their
// own counter: a flood from outside cannot take the guest's own capacity.
TEST_F(CtReclaimTest, QuotaCountsInboundFlowsSeparately)
{
	auto d = make(64, 2);
	kvx_cfg c = d->cfg();
	c.flags |= KVX_CFG_F_EIF;
	d->set_cfg(c);
	const Packet p = udp(kGuestA, 62600, kRemote1);
	const Packet sent = snat(p, out(*d, p));
	// Other remotes reach the guest's mapping (EIF): inbound flows.
	Packet in = from_uplink(reply_to(sent));
	for (std::uint32_t i = 0; i < 2; i++) {
		in.src = kRemote2 + i;
		run_case(*d, Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
			 dnat(in, kGuestA, 62600));
	}
	EXPECT_EQ(d->gflows_val(kGuestA).in, 2u);
	EXPECT_EQ(d->gflows_val(kGuestA).out, 1u);
	in.src = kRemote2 + 2;
	run_case(*d, Prog::UpIngress, in, TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	// The guest still opens its own second flow.
	const Packet p2 = udp(kGuestA, 62601, kRemote1);
	out(*d, p2);
	EXPECT_EQ(d->gflows_val(kGuestA).out, 2u);
}

// The quota is the guest's (its MAC's), not the address's: guest A sends
// from four addresses of the subnet (each bound to A's MAC on first use)
// and has one quota for all of them, a fifth address included; guest B,
// another MAC, is not affected.  Counted per address, A had four quotas.
TEST_F(CtReclaimTest, GuestQuotaIsPerMacNotPerAddress)
{
	auto d = make(64, 4);
	const Mac mac_a = guest_mac(kGuestA);
	const std::uint32_t addrs[] = {kGuestA, ip4(192, 168, 122, 20), ip4(192, 168, 122, 30),
				       ip4(192, 168, 122, 40)};
	auto from_a = [&](std::uint32_t src, std::uint16_t sport) {
		Packet p = udp(src, sport, kRemote1);
		p.src_mac = mac_a;
		return p;
	};
	for (std::uint32_t addr : addrs)
		out(*d, from_a(addr, 62700));
	for (std::uint32_t addr : addrs) {
		ASSERT_EQ(owner_of(*d, addr), mac_a) << "bound to A's MAC on first use";
		EXPECT_EQ(d->gflows_slot(addr), d->gflows_slot(kGuestA));
	}
	EXPECT_EQ(d->gflows(kGuestA), 4u) << "four addresses, one counter";
	run_case(*d, Prog::BrIngress, from_a(addrs[3], 62701), TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	run_case(*d, Prog::BrIngress, from_a(ip4(192, 168, 122, 50), 62700), TC_ACT_SHOT,
		 KVX_R_DROP_GUEST_QUOTA);
	EXPECT_EQ(d->ct_entries().size(), 4u);
	// Guest B's own MAC, its own quota.
	ASSERT_NE(d->gflows_slot(kGuestB), d->gflows_slot(kGuestA));
	for (std::uint16_t i = 0; i < 4; i++)
		out(*d, udp(kGuestB, std::uint16_t(62700 + i), kRemote1));
	EXPECT_EQ(d->gflows(kGuestB), 4u);
	EXPECT_EQ(d->gflows(kGuestA), 4u);
}

// The quota is the guest's bridge port's, not its MAC's (ct.h mac_slot): A
// sending from a second MAC with a free address of the subnet, both on A's
// port, has one quota; two MACs of no known port share one; B, on its own
// port, keeps its own.  Per MAC, every fresh MAC was a fresh quota.
TEST_F(CtReclaimTest, GuestQuotaIsPerPortNotPerMac)
{
	auto d = make(64, 4);
	const std::uint32_t a2 = ip4(192, 168, 122, 60);
	const Mac m2{0x52, 0x54, 0x00, 0x00, 0x07, 0x01};
	d->brport_set(m2, kGuestPortA);
	auto from = [](std::uint32_t src, const Mac &mac, std::uint16_t sport) {
		Packet p = udp(src, sport, kRemote1);
		p.src_mac = mac;
		return p;
	};
	out(*d, from(kGuestA, kGuestAMac, 62800));
	out(*d, from(kGuestA, kGuestAMac, 62801));
	out(*d, from(a2, m2, 62800));
	out(*d, from(a2, m2, 62801));
	ASSERT_EQ(owner_of(*d, a2), m2);
	EXPECT_EQ(d->gflows(kGuestA), 4u) << "two MACs, one port, one counter";
	run_case(*d, Prog::BrIngress, from(a2, m2, 62802), TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	run_case(*d, Prog::BrIngress, from(kGuestA, kGuestAMac, 62802), TC_ACT_SHOT,
		 KVX_R_DROP_GUEST_QUOTA);
	// MACs of no known port: one quota between them.
	const std::uint32_t a3 = ip4(192, 168, 122, 61), a4 = ip4(192, 168, 122, 62);
	const Mac m3{0x52, 0x54, 0x00, 0x00, 0x07, 0x02}, m4{0x52, 0x54, 0x00, 0x00, 0x07, 0x03};
	for (std::uint16_t i = 0; i < 2; i++) {
		out(*d, from(a3, m3, std::uint16_t(62800 + i)));
		out(*d, from(a4, m4, std::uint16_t(62800 + i)));
	}
	EXPECT_EQ(d->gflows(a3), 4u);
	run_case(*d, Prog::BrIngress, from(a4, m4, 62802), TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	// B's own port, its own quota.
	for (std::uint16_t i = 0; i < 4; i++)
		out(*d, udp(kGuestB, std::uint16_t(62800 + i), kRemote1));
	EXPECT_EQ(d->gflows(kGuestB), 4u);
	EXPECT_EQ(d->gflows(kGuestA), 4u);
	EXPECT_EQ(d->ct_entries().size(), 12u);
}

// A guest that stays over its quota pays at most one reclaim pass per
// hold-off, even when passes free other guests' expired flows (which
// keeps the machine-wide hold-off from starting): before, every packet of
// it walked the table.
TEST_F(CtReclaimTest, GuestOverQuotaPaysOneReclaimPassPerHoldoff)
{
	auto d = make(64, 1);
	out(*d, udp(kGuestA, 62900, kRemote1));
	std::vector<Packet> b;
	for (std::uint32_t i = 0; i < 3; i++)
		b.push_back(udp(kGuestB, std::uint16_t(62900 + i), kRemote1 + i));
	// B's expired flows, made directly (B's own quota is 1).
	for (const Packet &p : b) {
		kvx_ct_val v{};
		v.state = KVX_CT_UDP;
		v.last_seen_ns = boot_ns_ago(100 * kSec); // expired
		d->ct_update(ct_key(p.proto, p.src, p.sport, p.dst, p.dport), v);
	}
	d->set_reclaim_state(0, 0);
	// A over its quota: one pass frees B's expired flows...
	run_case(*d, Prog::BrIngress, udp(kGuestA, 62901, kRemote1), TC_ACT_SHOT,
		 KVX_R_DROP_GUEST_QUOTA);
	EXPECT_FALSE(has_flow(*d, b[0]));
	// ...and A's next packets, inside the hold-off, walk nothing.
	for (std::uint32_t i = 0; i < 2; i++) {
		const Packet p = udp(kGuestB, std::uint16_t(62950 + i), kRemote1 + i);
		kvx_ct_val v{};
		v.state = KVX_CT_UDP;
		v.last_seen_ns = boot_ns_ago(100 * kSec);
		d->ct_update(ct_key(p.proto, p.src, p.sport, p.dst, p.dport), v);
		d->set_reclaim_state(0, 0);
		run_case(*d, Prog::BrIngress, udp(kGuestA, 62902, kRemote1), TC_ACT_SHOT,
			 KVX_R_DROP_GUEST_QUOTA);
		EXPECT_TRUE(has_flow(*d, p)) << "no pass for a guest in its hold-off";
	}
}

// Closing states, made directly: a TCP flow's state and its last packet
// ago_s seconds before now.
static void set_state(Datapath &d, const Packet &p, std::uint8_t state, std::uint64_t ago_s)
{
	kvx_ct_key k = ct_key(p.proto, p.src, p.sport, p.dst, p.dport);
	auto v = d.ct_lookup(k);
	ASSERT_TRUE(v) << "flow to close";
	v->state = state;
	v->last_seen_ns = boot_ns_ago(ago_s * kSec);
	d.ct_update(k, *v);
}

// A guest churning through short connections: at its quota with its flows
// closed (TIME_WAIT, CLOSE after a RST) but not expired (4 minutes), a new
// connection takes the place of one closed flow, and only a closed one:
// never an established flow, one closed just now (its last ACK may still be
// on the way), nor another guest's.
TEST_F(CtReclaimTest, GuestAtQuotaWithClosedFlowsGetsNewConnection)
{
	auto d = make(64, 4);
	std::vector<Packet> a;
	for (std::uint32_t i = 0; i < 4; i++) {
		a.push_back(from_guest(make_tcp(kGuestA, std::uint16_t(63000 + i), kRemote1, 80)));
		out(*d, a.back());
	}
	set_state(*d, a[0], KVX_CT_TIME_WAIT, 10);
	set_state(*d, a[1], KVX_CT_CLOSE, 10);
	set_state(*d, a[2], KVX_CT_ESTABLISHED, 10);
	set_state(*d, a[3], KVX_CT_TIME_WAIT, 0); // closed just now
	// B's closed flow: not A's to take.
	const Packet b = from_guest(make_tcp(kGuestB, 63010, kRemote1, 80));
	out(*d, b);
	set_state(*d, b, KVX_CT_TIME_WAIT, 10);
	ASSERT_EQ(d->gflows(kGuestA), 4u);

	std::vector<Packet> fresh;
	for (std::uint32_t i = 0; i < 2; i++) {
		no_holdoff(*d, kGuestA);
		fresh.push_back(
			from_guest(make_tcp(kGuestA, std::uint16_t(63020 + i), kRemote2, 443)));
		run_case(*d, Prog::BrIngress, fresh.back(), TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(fresh.back(), fresh.back().sport));
		EXPECT_EQ(d->gflows(kGuestA), 4u) << "one closed flow gave way to new one " << i;
	}
	EXPECT_FALSE(has_flow(*d, a[0]));
	EXPECT_FALSE(has_flow(*d, a[1]));
	EXPECT_TRUE(has_flow(*d, a[2])) << "established";
	EXPECT_TRUE(has_flow(*d, a[3])) << "closed just now";
	EXPECT_TRUE(has_flow(*d, b)) << "another guest's";
	EXPECT_EQ(d->gflows(kGuestB), 1u);
	// Nothing closed of A's left that may go: the quota holds.
	no_holdoff(*d, kGuestA);
	run_case(*d, Prog::BrIngress, from_guest(make_tcp(kGuestA, 63030, kRemote2, 443)),
		 TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	EXPECT_TRUE(has_flow(*d, a[2]));
	EXPECT_TRUE(has_flow(*d, a[3]));
	for (const Packet &p : fresh)
		EXPECT_TRUE(has_flow(*d, p));
}

// A closed inbound flow counts against the inbound quota: it does not give
// way to a flow the guest opens (whose own quota is full).
TEST_F(CtReclaimTest, ClosedFlowGivesWayOnlyWithinItsQuota)
{
	auto d = make(64, 1);
	const Packet a = from_guest(make_tcp(kGuestA, 63100, kRemote1, 80));
	out(*d, a);
	// An inbound closed flow of A's, made directly.
	const Packet in = from_guest(make_tcp(kGuestA, 22, kRemote2, 40000));
	{
		kvx_ct_val v{};
		v.state = KVX_CT_TIME_WAIT;
		v.flags = KVX_CT_F_INBOUND;
		v.last_seen_ns = boot_ns_ago(10 * kSec);
		d->ct_update(ct_key(in.proto, in.src, in.sport, in.dst, in.dport), v);
		kvx_gflows_val g = d->gflows_val(kGuestA);
		g.in = 1;
		d->set_gflows_val(kGuestA, g);
	}
	run_case(*d, Prog::BrIngress, from_guest(make_tcp(kGuestA, 63101, kRemote1, 80)),
		 TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	EXPECT_TRUE(has_flow(*d, in));
	// Once its outbound flow closed, that one gives way.
	set_state(*d, a, KVX_CT_CLOSE, 10);
	d->set_reclaim_state(0, 0);
	kvx_gflows_val g = d->gflows_val(kGuestA);
	g.reclaim_ns = 0;
	d->set_gflows_val(kGuestA, g);
	const Packet n = from_guest(make_tcp(kGuestA, 63101, kRemote1, 80));
	run_case(*d, Prog::BrIngress, n, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(n, n.sport));
	EXPECT_FALSE(has_flow(*d, a));
	EXPECT_TRUE(has_flow(*d, in));
}

// kvx_ct full of closed flows: a new connection, whoever's guest opens it,
// takes the place of one closed flow (netfilter's early_drop asks not
// whose), never that of a flow closed just now or of a live one, and each
// guest's flow count follows; a table full of live flows still refuses a
// new one.
TEST_F(CtReclaimTest, FullTableOfClosedFlowsTakesNewConnection)
{
	auto d = make(8);
	std::vector<Packet> a;
	for (std::uint32_t i = 0; i < 8; i++) {
		a.push_back(from_guest(make_tcp(kGuestA, std::uint16_t(63200 + i), kRemote1, 80)));
		out(*d, a.back());
		set_state(*d, a.back(), i % 2 ? KVX_CT_CLOSE : KVX_CT_TIME_WAIT, 10);
	}
	set_state(*d, a[6], KVX_CT_TIME_WAIT, 0); // closed just now
	set_state(*d, a[7], KVX_CT_ESTABLISHED, 10);
	auto closed_left = [&] {
		return std::count_if(a.begin(), a.begin() + 6,
				     [&](const Packet &p) { return has_flow(*d, p); });
	};
	// Another guest's connection: one of A's closed flows gives way.
	const Packet b = from_guest(make_tcp(kGuestB, 63400, kRemote2, 443));
	run_case(*d, Prog::BrIngress, b, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(b, b.sport));
	EXPECT_EQ(closed_left(), 5);
	EXPECT_EQ(d->gflows(kGuestA), 7u);
	EXPECT_EQ(d->gflows(kGuestB), 1u);
	set_state(*d, b, KVX_CT_ESTABLISHED, 10);
	// Five more, A's and C's, take the rest.
	for (std::uint32_t i = 0; i < 5; i++) {
		no_holdoff(*d, kGuestA);
		const Packet p = from_guest(make_tcp(i % 2 ? kGuestA : kGuestC,
						     std::uint16_t(63300 + i), kRemote2, 443));
		run_case(*d, Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(p, p.sport));
		set_state(*d, p, KVX_CT_ESTABLISHED, 10);
	}
	EXPECT_EQ(closed_left(), 0);
	EXPECT_TRUE(has_flow(*d, a[6])) << "closed just now";
	EXPECT_TRUE(has_flow(*d, a[7])) << "established";
	EXPECT_EQ(d->ct_entries().size(), 8u);
	EXPECT_EQ(d->gflows(kGuestA), 4u); // a[6], a[7] and two new
	EXPECT_EQ(d->gflows(kGuestC), 3u);
	no_holdoff(*d, kGuestB);
	run_case(*d, Prog::BrIngress, from_guest(make_tcp(kGuestB, 63399, kRemote2, 443)),
		 TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL);
	EXPECT_TRUE(has_flow(*d, a[6]));
	EXPECT_TRUE(has_flow(*d, a[7]));
}

// A full table and a LAN SYN to a guest's forward, with nothing expired or
// closed to reclaim: the SYN takes the place of that guest's half-open flow
// the guest left unanswered (ct_create's early drop, as netfilter's
// early_drop when its table is full), not another guest's live flows.
// Before, it was DROP_TABLE_FULL for as long as the flood's flows lived.
TEST_F(CtReclaimTest, FullTableGivesAnInboundSynTheGuestsUnansweredHalfOpenFlow)
{
	auto d = make(4);
	add_port_forward(*d, kProtoTcp, Topology::kUplinkAddr, 2222, kGuestA, 22);
	own_address(*d, kGuestA);
	const Packet live[] = {udp(kGuestB, 62001, kRemote2), udp(kGuestB, 62002, kRemote2),
			       udp(kGuestC, 62003, kRemote2)};
	for (const Packet &p : live)
		run_case(*d, Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(p, p.sport));
	auto syn = [&](std::uint32_t remote) {
		Packet p =
			from_uplink(make_tcp(remote, 40000, Topology::kUplinkAddr, 2222, kTcpSyn));
		const Stats before = d->stats();
		const RunResult r = d->run(Prog::UpIngress, p.build(), topo().uplink_ifindex);
		EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)))
			<< stats_delta(before, d->stats());
	};
	syn(kRemote1);
	const kvx_ct_key first = ct_key(kProtoTcp, kGuestA, 22, kRemote1, 40000);
	auto f = d->ct_lookup(first);
	ASSERT_TRUE(f);
	ASSERT_EQ(f->state, KVX_CT_SYN_RECV);
	ASSERT_EQ(d->ct_entries().size(), 4u) << "the table is full";
	// Unanswered for longer than a guest takes to answer.
	f->last_seen_ns -= 2 * KVX_HALFOPEN_ANSWER_NS;
	d->ct_update(first, *f);
	syn(kRemote1 + 1);
	EXPECT_FALSE(d->ct_lookup(first)) << "the unanswered half-open flow gave its place";
	auto second = d->ct_lookup(ct_key(kProtoTcp, kGuestA, 22, kRemote1 + 1, 40000));
	ASSERT_TRUE(second);
	EXPECT_EQ(second->state, KVX_CT_SYN_RECV);
	for (const Packet &p : live)
		EXPECT_TRUE(has_flow(*d, p)) << "the other guests' live flows kept";
	EXPECT_EQ(d->gflows_val(kGuestA).in, 1u);
}

// A SYN flood from the LAN at several guests' forwards, each within its
// inbound quota, fills the table: a new flow of any guest (here an outbound
// one of a guest with no forward) takes the place of a half-open flow from
// outside that has been quiet, and its guest's inbound count follows; never
// one that is still young, nor a live flow.
TEST_F(CtReclaimTest, FullTableTakesAQuietHalfOpenFlowFromOutside)
{
	auto d = make(8);
	const std::uint32_t guests[] = {kGuestA, kGuestB, kGuestC, kGuestA + 3};
	std::vector<kvx_ct_key> half;
	for (std::uint32_t g : guests) {
		for (std::uint16_t i = 0; i < 2; i++) {
			kvx_ct_val v{};
			v.state = KVX_CT_SYN_RECV;
			v.flags = KVX_CT_F_INBOUND | KVX_CT_F_STATIC | KVX_CT_F_HALFOPEN;
			v.ext_addr = be32(Topology::kUplinkAddr);
			v.ext_port = be16(2222);
			// The first of each guest young, the second quiet.
			v.last_seen_ns = i ? boot_ns_ago(10 * kSec) : boot_ns() + 3600 * kSec;
			half.push_back(ct_key(kProtoTcp, g, 22, kRemote1 + i, 40000));
			d->ct_update(half.back(), v);
		}
		kvx_gflows_val gv = d->gflows_val(g);
		gv.in = 2;
		d->set_gflows_val(g, gv);
	}
	ASSERT_EQ(d->ct_entries().size(), 8u);
	const std::uint32_t guest = kGuestA + 4; // no forward, no flow
	for (std::uint32_t i = 0; i < 4; i++) {
		no_holdoff(*d, guest);
		const Packet p =
			from_guest(make_tcp(guest, std::uint16_t(63500 + i), kRemote2, 443));
		run_case(*d, Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
			 snat(p, p.sport));
	}
	std::uint32_t in_left = 0;
	for (std::size_t i = 0; i < half.size(); i++)
		EXPECT_EQ(d->ct_lookup(half[i]).has_value(), i % 2 == 0)
			<< "half-open flow " << i << (i % 2 ? " (quiet) evicted" : " (young) kept");
	for (std::uint32_t g : guests)
		in_left += d->gflows_val(g).in;
	EXPECT_EQ(in_left, 4u) << "each eviction gave its guest's inbound count back";
	EXPECT_EQ(d->gflows(guest), 4u);
	// Only young half-open flows and live ones left: the table holds.
	no_holdoff(*d, guest);
	run_case(*d, Prog::BrIngress, from_guest(make_tcp(guest, 63599, kRemote2, 443)),
		 TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL);
}

// A pass is not free (skipping to the cursor costs per entry), so one that
// freed room holds further passes off in proportion to the entries it
// visited: the guest whose quota asked 400 ns an entry, everyone 100 ns.  A
// guest that closes its own flows to have each new one pay a pass deep in a
// large table gets refused instead, until its hold-off is over.
TEST_F(CtReclaimTest, PassHoldsFurtherPassesOffByItsCost)
{
	constexpr std::uint32_t kLive = 40000, kClosed = 16;
	auto d = make(kLive + 64, kClosed);
	kvx_ct_val v{};
	v.state = KVX_CT_UDP;
	v.ext_addr = be32(Topology::kUplinkAddr);
	v.last_seen_ns = boot_ns() + 3600 * kSec; // live for the whole test
	for (std::uint32_t i = 0; i < kLive; i++) {
		v.ext_port = be16(std::uint16_t(1024 + (i & 0x7fff)));
		d->ct_update(ct_key(kProtoUdp, kGuestB + (i >> 15),
				    std::uint16_t(1024 + (i & 0x7fff)), kRemote1, 53),
			     v);
	}
	for (std::uint32_t i = 0; i < kClosed; i++) {
		const Packet p =
			from_guest(make_tcp(kGuestA, std::uint16_t(63600 + i), kRemote1, 80));
		out(*d, p);
		set_state(*d, p, KVX_CT_TIME_WAIT, 10);
	}
	// Where A's closed flows sit in the walk (the pass walks in the order
	// the keys are listed: bucket by bucket).
	auto positions = [&] {
		std::vector<std::uint32_t> at;
		const auto all = d->ct_entries();
		for (std::uint32_t i = 0; i < all.size(); i++)
			if (all[i].first.int_addr == be32(kGuestA) &&
			    all[i].second.state == KVX_CT_TIME_WAIT)
				at.push_back(i);
		return at;
	};
	std::vector<std::uint32_t> at = positions();
	ASSERT_EQ(at.size(), kClosed);
	// The window just before the last: the pass skips that many entries.
	d->set_reclaim_state(at.back() > 8 ? at.back() - 8 : 0, 0);
	const std::uint64_t t0 = boot_ns();
	const Packet n1 = from_guest(make_tcp(kGuestA, 63700, kRemote2, 443));
	run_case(*d, Prog::BrIngress, n1, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(n1, n1.sport));
	const std::uint64_t visited = d->reclaim_visited();
	EXPECT_GE(visited, at.back());
	EXPECT_EQ(positions().size(), kClosed - 1) << "one closed flow gave way";
	EXPECT_EQ(d->gflows(kGuestA), kClosed);
	EXPECT_GE(d->gflows_val(kGuestA).reclaim_ns, t0 + visited * 400);
	EXPECT_GE(d->reclaim_holdoff(), t0 + visited * 100);
	EXPECT_LT(d->gflows_val(kGuestA).reclaim_ns, boot_ns() + visited * 400);
	// Within the guest's hold-off its next new flow is refused, though
	// closed flows of its own could give way (with the last one 10000
	// entries in or more, the hold-off is 4 ms or more).
	ASSERT_GE(at.back(), 10000u) << "16 flows among 40000: the last is rarely this early";
	const Packet n2 = from_guest(make_tcp(kGuestA, 63701, kRemote2, 443));
	// Only while the hold-off still runs when n2 goes: a machine slow
	// enough to spend milliseconds between two test runs (the 6.1 VM
	// under load) cannot tell, and says so.
	if (boot_ns() + 1000000 < d->gflows_val(kGuestA).reclaim_ns)
		run_case(*d, Prog::BrIngress, n2, TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	else
		std::cerr << "[ note     ] the hold-off was over before the next run: its "
			     "refusal not checked on this machine\n";
	// Once it is over, it gets one.
	no_holdoff(*d, kGuestA);
	at = positions();
	d->set_reclaim_state(at.back() > 8 ? at.back() - 8 : 0, 0);
	run_case(*d, Prog::BrIngress, n2, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(n2, n2.sport));
}

// A counter that went below zero (a racing decrement) reads as no flows.
TEST_F(CtReclaimTest, NegativeCounterIsUnderQuota)
{
	auto d = make(64, 1);
	own_address(*d, kGuestA);
	d->set_gflows(kGuestA, 0xffffffffu);
	const Packet p = udp(kGuestA, 62700, kRemote1);
	run_case(*d, Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(p, 62700));
	EXPECT_EQ(d->gflows(kGuestA), 0u);
}

// The cost of one reclaim pass on a full 64k table of live flows (the worst
// case: nothing to free), with the window at the start and near the end.
// Printed for bpf/README.md; the bound only catches a pathological change.
TEST_F(CtReclaimTest, PassCostOnFullTable)
{
	constexpr std::uint32_t kN = 65536;
	auto d = make(kN);
	kvx_ct_val v{};
	v.state = KVX_CT_UDP;
	v.ext_addr = be32(Topology::kUplinkAddr);
	v.last_seen_ns = boot_ns() + 3600 * kSec; // live for the whole test
	for (std::uint32_t i = 0; i < kN; i++) {
		v.ext_port = be16(std::uint16_t(1024 + (i & 0x7fff)));
		d->ct_update(ct_key(kProtoUdp, kGuestA + (i >> 15),
				    std::uint16_t(1024 + (i & 0x7fff)), kRemote1, 53),
			     v);
	}
	const Bytes frame = udp(kGuestB, 62800, kRemote2).build();
	// Wall time of one test run of the frame (syscall included).
	auto timed_run = [&]() -> long {
		auto t0 = std::chrono::steady_clock::now();
		RunResult r = d->run(Prog::BrIngress, frame, topo().bridge_ifindex);
		auto t1 = std::chrono::steady_clock::now();
		// Refused for a full table: dropped, answered with an ICMP error
		// until the rate limit holds the answers back.
		EXPECT_TRUE(r.verdict == TC_ACT_SHOT || r.verdict == TC_ACT_REDIRECT) << r.verdict;
		return std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
	};
	auto run_ns = [&](std::uint32_t cursor) {
		d->set_reclaim_state(cursor, 0);
		return timed_run();
	};
	// Warm up, then the best of a few (a shared CI machine).
	run_ns(0);
	long best_start = 1L << 62, best_end = 1L << 62, best_held = 1L << 62;
	for (int i = 0; i < 5; i++) {
		best_start = std::min<long>(best_start, run_ns(0));
		best_end = std::min<long>(best_end, run_ns(kN - 2048));
	}
	EXPECT_EQ(d->reclaim_cursor(), kN - 1024) << "the window moves on by one budget";
	// Held off (a pass just freed nothing): no pass at all.
	for (int i = 0; i < 5; i++) {
		d->set_reclaim_state(0, boot_ns() + 3600 * kSec);
		best_held = std::min<long>(best_held, timed_run());
	}
	std::cout << "[ reclaim ] full 64k table of live flows, one new flow: pass at window 0: "
		  << best_start / 1000 << " us, at window 63k (skips 63k): " << best_end / 1000
		  << " us, held off: " << best_held / 1000 << " us (syscall included)" << std::endl;
	RecordProperty("reclaim_pass_start_us", int(best_start / 1000));
	RecordProperty("reclaim_pass_end_us", int(best_end / 1000));
	// The bound is for a real CPU: under an emulated one (the 6.1 VM's
	// TCG, which says so: KVX_EMULATED_CPU=1) each instruction costs tens
	// of times more, and a loaded host more again (71 ms seen there).
	const long bound_ns = std::getenv("KVX_EMULATED_CPU") ? 500L * 1000 * 1000 :
								50L * 1000 * 1000;
	EXPECT_LT(best_end, bound_ns) << "one pass must stay far below 50 ms (real CPU)";
	EXPECT_EQ(d->ct_entries().size(), kN) << "nothing live reclaimed";
}

} // namespace
} // namespace kvmxdp::test
