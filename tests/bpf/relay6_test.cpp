// IPv6 relay mode (kvx_br6_relay / kvx_up6_relay, tail-called from kvx_br6 /
// kvx_up6 when kvx_cfg6.mode is relay): guests on the uplink's own /64,
// forwarded both ways without translation (hop limit - 1, MACs), the
// address <-> MAC ownership that keeps one guest off another's address, and
// the ND proxy's answers (an NS turned into an NA in place), every expected
// frame built from scratch by pkt.cpp (its checksums computed there, never
// by the datapath's arithmetic).  The programs run through their entry
// points, as the kernel runs them.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <algorithm>
#include <cstring>

#include "fixture.hpp"
#include "nd6_pkt.hpp"

namespace kvmxdp::test {
namespace {

using namespace testpkt;
using namespace nd6;

// The uplink's /64 (netns.cpp gives the uplink 2001:db8:77::2/64, its
// router ::1): the guests take addresses in it.
const Ip6 kPrefix = ip6("2001:db8:77::");
const Ip6 kGuestA = ip6("2001:db8:77::a0");
const Ip6 kGuestB = ip6("2001:db8:77::b0");
const Ip6 kLanHost = ip6(Topology::kGatewayAddr6);
const Ip6 kRemote = ip6("2001:db8:100::10");
const Ip6 kUplink6 = ip6(Topology::kUplinkAddr6);
const Ip6 kBridgeLl = ip6("fe80::1");
const Mac kMacA{0x52, 0x54, 0x00, 0x00, 0x07, 0xa0};
const Mac kMacB{0x52, 0x54, 0x00, 0x00, 0x07, 0xb0};
// Guest A's other MAC (a guest that changes its MAC), on A's bridge port.
const Mac kMacA2{0x52, 0x54, 0x00, 0x00, 0x07, 0xa2};
// The bridge ports the daemon found A and B on (kvx_brport).
constexpr std::uint32_t kPortA = 21, kPortB = 22;

void copy_addr(__be32 *to, const Ip6 &a)
{
	std::memcpy(to, a.data(), 16);
}

// What attach writes for relay on 2001:db8:77::/64.
kvx_cfg6 relay_cfg()
{
	kvx_cfg6 c{};
	c.mode = KVX_V6_RELAY;
	copy_addr(c.uplink_addr, kUplink6);
	copy_addr(c.relay_prefix, kPrefix);
	c.relay_len = 64;
	copy_addr(c.gw_addr, kBridgeLl);
	std::memcpy(c.bridge_mac, Topology::kBridgeMac.data(), 6);
	return c;
}

Packet6 from_guest(Packet6 p, const Mac &mac)
{
	p.src_mac = mac;
	p.dst_mac = Topology::kBridgeMac;
	return p;
}

Packet6 from_lan(Packet6 p)
{
	p.src_mac = Topology::kGatewayMac;
	p.dst_mac = Topology::kUplinkMac;
	return p;
}

// Forwarded to the LAN: only the hop limit and the MACs change (the
// uplink's as source: a WiFi station sends no other).
Packet6 routed_out(Packet6 p)
{
	p.hop_limit--;
	p.src_mac = Topology::kUplinkMac;
	p.dst_mac = Topology::kGatewayMac;
	return p;
}

Packet6 routed_in(Packet6 p, const Mac &guest)
{
	p.hop_limit--;
	p.src_mac = Topology::kBridgeMac;
	p.dst_mac = guest;
	return p;
}

// The NA an ND proxy answers ns with for its target at mac (nd6_pkt.hpp
// answer_na): Router and Override 0 (RFC 4861 7.2.8).
Packet6 proxy_na(const Packet6 &ns, const Mac &mac)
{
	return answer_na(ns, mac, 0);
}

const Mac kUplinkMacT = Topology::kUplinkMac;
// relay6.h KVX_RELAY_ECHO_BURST (the datapath's, not the ABI's).
constexpr int KVX_RELAY_ECHO_BURST_T = 50;

// p relayed by the ND proxy: only the source MAC changes.
Packet6 relayed(Packet6 p, const Mac &smac)
{
	p.src_mac = smac;
	return p;
}

class Relay6Test : public DatapathTest {
protected:
	void SetUp() override
	{
		DatapathTest::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		dp().set_cfg6(relay_cfg());
		dp().brport_set(kMacA, kPortA);
		dp().brport_set(kMacA2, kPortA);
		dp().brport_set(kMacB, kPortB);
	}

	RunResult run6(Prog prog, const Packet6 &in, int verdict, kvx_reason reason,
		       const std::optional<Packet6> &want = std::nullopt)
	{
		return run_case_bytes(dp(), prog, in.build(), verdict, reason,
				      want ? std::optional<Bytes>(want->build()) : std::nullopt);
	}

	// The owner kvx_nd records for addr (zero MAC: none).

	// attach --ipv6-inbound open.
	void set_inbound_open()
	{
		kvx_cfg6 c = relay_cfg();
		c.flags |= KVX_CFG6_F_INBOUND_OPEN;
		dp().set_cfg6(c);
	}

	// kvx_nd[addr] = mac in state, its last frame (and a pending or
	// defended one's DAD run or defence) at seen_ns; a pending one was
	// probed.
	void own(const Ip6 &addr, const Mac &mac, std::uint64_t seen_ns, std::uint8_t state)
	{
		kvx_nd_val v{};
		std::memcpy(v.mac, mac.data(), 6);
		v.state = state;
		v.last_seen_ns = seen_ns;
		v.dad_ns = seen_ns;
		v.dad_probes = state == KVX_ND_PENDING ? 1 : 0;
		dp().nd_update(addr, v);
	}

	// The guest's address, as a duplicate address detection no LAN host
	// answered left it.
	void claim(const Ip6 &addr, const Mac &mac) { own(addr, mac, boot_ns(), KVX_ND_OWNED); }
};

// --- forwarding, both ways ---

TEST_F(Relay6Test, GuestToInternetAndBack)
{
	own(kGuestA, kMacA, boot_ns_ago(KVX_ND_DAD_NS + 100000000ull), KVX_ND_PENDING);
	const Packet6 syn = from_guest(make_tcp6(kGuestA, 40000, kRemote, 443), kMacA);
	run6(Prog::BrIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(syn));
	// The first frame after its DAD made the address the guest's.
	const auto nd = dp().nd_lookup(kGuestA);
	ASSERT_TRUE(nd.has_value());
	EXPECT_EQ(nd->state, KVX_ND_OWNED);
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacA);
	EXPECT_GT(nd->last_seen_ns, boot_ns_ago(100000000ull));

	// The answer keeps the guest's own address: no translation.
	Packet6 back = from_lan(make_tcp6(kRemote, 443, kGuestA, 40000, kTcpSyn | kTcpAck));
	back.hop_limit = 57;
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(back, kMacA));

	// UDP and echo likewise: one flow each (the stateful inbound
	// policy's), no NAT binding.
	const Packet6 udp = from_guest(make_udp6(kGuestA, 5353, kRemote, 53, 40), kMacA);
	run6(Prog::BrIngress, udp, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(udp));
	const Packet6 ping = from_guest(make_echo6(kGuestA, kRemote, 0x77), kMacA);
	run6(Prog::BrIngress, ping, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(ping));
	EXPECT_EQ(dp().ct6_entries().size(), 3u);
	EXPECT_TRUE(dp().bind6_entries().empty());
}

TEST_F(Relay6Test, GuestToLanHostOnTheLink)
{
	// The LAN's router is a neighbour on the uplink (netns.cpp): same
	// /64, reached through the host's on-link route.
	claim(kGuestA, kMacA);
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kLanHost, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
	Packet6 back = from_lan(make_udp6(kLanHost, 53, kGuestA, 7000));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(back, kMacA));
}

TEST_F(Relay6Test, ExtensionHeadersAndOtherProtocolsAreForwarded)
{
	// A router, not a NAT: what it cannot parse it still forwards.
	claim(kGuestA, kMacA);
	Packet6 gre = from_guest(make_udp6(kGuestA, 1, kRemote, 2), kMacA);
	gre.proto = 47;
	gre.payload = pattern(24, 0x47);
	run6(Prog::BrIngress, gre, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(gre));
	Packet6 opts = from_guest(make_udp6(kGuestA, 5000, kRemote, 53), kMacA);
	opts.ext = {ext_options(kExtDstOpts, 8)};
	run6(Prog::BrIngress, opts, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(opts));
}

TEST_F(Relay6Test, InboundOnlyToOwnedAddresses)
{
	// An address of the prefix no guest owns, the uplink's own: the host's.
	const Packet6 stray = from_lan(make_udp6(kRemote, 53, kGuestB, 7000));
	run6(Prog::UpIngress, stray, TC_ACT_OK, KVX_R_PASS_HOST);
	const Packet6 mine = from_lan(make_udp6(kRemote, 53, kUplink6, 7000));
	run6(Prog::UpIngress, mine, TC_ACT_OK, KVX_R_PASS_HOST);
	// Outside the prefix: the host's.
	const Packet6 other = from_lan(make_udp6(kRemote, 53, ip6("2001:db8:99::1"), 7000));
	run6(Prog::UpIngress, other, TC_ACT_OK, KVX_R_PASS_HOST);
	// Being renumbered: a pending entry is not delivered to.
	own(kGuestB, kMacB, boot_ns(), KVX_ND_PENDING);
	run6(Prog::UpIngress, stray, TC_ACT_OK, KVX_R_PASS_HOST);
}

TEST_F(Relay6Test, HopLimit)
{
	// Ours to answer from the bridge's link-local, never passed up.
	claim(kGuestA, kMacA);
	Packet6 last = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	last.hop_limit = 1;
	const RunResult r =
		dp().run(Prog::BrIngress, last.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const Parsed6 e = parse6(r.out);
	EXPECT_EQ(e.proto, kProtoIcmp6);
	EXPECT_EQ(e.icmp_type, 3); // Time Exceeded
	EXPECT_EQ(e.src, kBridgeLl);
	EXPECT_EQ(e.dst, kGuestA);
	EXPECT_EQ(check_checksums(r.out), "");

	// From the LAN: Time Exceeded from the uplink's address, back out of
	// the uplink, as NAT66 answers.
	Packet6 in = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	in.hop_limit = 1;
	const Stats before = dp().stats();
	const RunResult u = dp().run(Prog::UpIngress, in.build(), ingress_ifindex(Prog::UpIngress));
	EXPECT_EQ(verdict_name(u.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(stats_delta(before, dp().stats()),
		  "DROP_TTL_IN +1/+" + std::to_string(in.build().size()) + "B ICMP_SENT +1/+" +
			  std::to_string(u.out.size()) + "B");
	const Parsed6 t = parse6(u.out);
	EXPECT_EQ(t.proto, kProtoIcmp6);
	EXPECT_EQ(t.icmp_type, 3);
	EXPECT_EQ(t.src, kUplink6);
	EXPECT_EQ(t.dst, kRemote);
	EXPECT_EQ(mac_str(Mac{u.out[0], u.out[1], u.out[2], u.out[3], u.out[4], u.out[5]}),
		  mac_str(Topology::kGatewayMac));
	EXPECT_EQ(check_checksums(u.out), "");
	// Never: to another MAC (a promiscuous uplink's), from a group MAC
	// (the answer would go to every LAN host), about an ICMPv6 error.
	Packet6 other = in;
	other.dst_mac = Mac{0x02, 0x00, 0x00, 0x00, 0x00, 0x77};
	run6(Prog::UpIngress, other, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	Packet6 group = in;
	group.src_mac = Mac{0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
	run6(Prog::UpIngress, group, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	Packet6 err = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	err.proto = kProtoIcmp6;
	err.icmp_type = 1; // Destination Unreachable
	err.payload = pattern(48, 0x31);
	err.hop_limit = 1;
	run6(Prog::UpIngress, err, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	// Too big for the bridge: Packet Too Big with its MTU, from the
	// uplink's address, quoting the packet.
	BridgeMtu mtu(1280);
	const Packet6 big = from_lan(make_udp6(kRemote, 53, kGuestA, 7000, 1400));
	const RunResult b =
		dp().run(Prog::UpIngress, big.build(), ingress_ifindex(Prog::UpIngress));
	EXPECT_EQ(verdict_name(b.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const Bytes f = big.build();
	ASSERT_GE(b.out.size(), 14u + 40 + 8 + 168);
	const Parsed6 ptb = parse6(b.out);
	EXPECT_EQ(ptb.icmp_type, 2);
	EXPECT_EQ(ptb.src, kUplink6);
	EXPECT_EQ(ptb.dst, kRemote);
	EXPECT_EQ(b.out[14 + 40 + 4] << 24 | b.out[14 + 40 + 5] << 16 | b.out[14 + 40 + 6] << 8 |
			  b.out[14 + 40 + 7],
		  1280)
		<< "the bridge's MTU";
	EXPECT_EQ(Bytes(b.out.begin() + 14 + 40 + 8, b.out.begin() + 14 + 40 + 8 + 40),
		  Bytes(f.begin() + 14, f.begin() + 14 + 40))
		<< "the quote starts with the packet's IPv6 header";
	EXPECT_EQ(check_checksums(b.out), "");
}

// --- anti-spoofing: the address belongs to the MAC whose DAD claimed it ---

TEST_F(Relay6Test, AnotherMacCannotTakeAnOwnedAddress)
{
	claim(kGuestA, kMacA);
	const Packet6 a = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, a, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(a));
	// Guest B sends with A's address: dropped, and A keeps it (and its
	// inbound traffic).
	const Packet6 spoof = from_guest(make_udp6(kGuestA, 7001, kRemote, 53), kMacB);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacA);
	const Packet6 back = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(back, kMacA));
	// Nor with a DAD probe for it: the bridge answers it (B's DAD fails).
	const Packet6 b_dad = neigh_sol(Ip6{}, kMacB, kGuestA);
	run6(Prog::BrIngress, b_dad, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(b_dad, Topology::kBridgeMac));
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacA);

	// An owner idle for KVX_GUEST_IDLE_NS gives it up (a VM re-created
	// with another MAC), to the DAD of the new one, never to a frame.
	own(kGuestA, kMacA, boot_ns() - KVX_GUEST_IDLE_NS - 1000000000ull, KVX_ND_OWNED);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacA);
	const Packet6 probe = dad_probe(kMacB, kGuestA);
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(probe, kUplinkMacT));
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacB);
	own(kGuestA, kMacB, boot_ns_ago(KVX_ND_DAD_NS + 100000000ull), KVX_ND_PENDING);
	run6(Prog::BrIngress, spoof, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(spoof));
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacB);
	run6(Prog::BrIngress, a, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
}

// A guest that took a sibling's predictable address first (a frame's
// claim, pending for the daemon's probe, or owned since): the sibling's
// DAD probe for it, from another MAC, is answered from the bridge, so that
// the sibling's DAD fails instead of succeeding on an address whose frames
// are all dropped and whose traffic goes to the taker.
TEST_F(Relay6Test, ADadProbeForAnotherGuestsAddressIsAnswered)
{
	// Pending by A's frame (dad_probes 0), the daemon's probe to come.
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestB, 7000, kRemote, 53), kMacA), TC_ACT_SHOT,
	     KVX_R_DROP_ND_UNCLAIMED);
	ASSERT_EQ(owner_of(dp(), kGuestB), kMacA);
	const Packet6 sibling = dad_probe(kMacB, kGuestB);
	run6(Prog::BrIngress, sibling, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(sibling, Topology::kBridgeMac));
	EXPECT_EQ(owner_of(dp(), kGuestB), kMacA);
	// Owned by A: the same.
	own(kGuestB, kMacA, boot_ns(), KVX_ND_OWNED);
	run6(Prog::BrIngress, sibling, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(sibling, Topology::kBridgeMac));
	// Address resolution (not DAD) for it stays the owner's to answer.
	run6(Prog::BrIngress, neigh_sol(kGuestA, kMacB, kGuestB), TC_ACT_OK, KVX_R_PASS_ND);
	// A's own probe for it is relayed, as ever.
	own(kGuestB, kMacA, boot_ns_ago(KVX_ND_DUP_HOLD_NS), KVX_ND_OWNED);
	const Packet6 mine = dad_probe(kMacA, kGuestB);
	run6(Prog::BrIngress, mine, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(mine, kUplinkMacT));
}

TEST_F(Relay6Test, SourcesOutsideThePrefixOrTheHostsAreSpoofed)
{
	run6(Prog::BrIngress, from_guest(make_udp6(ip6("fd42::a"), 7000, kRemote, 53), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_SPOOFED);
	run6(Prog::BrIngress,
	     from_guest(make_udp6(ip6("2001:db8:78::a"), 7000, kRemote, 53), kMacA), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOFED);
	// The host's own addresses: the uplink's, and those attach lists.
	run6(Prog::BrIngress, from_guest(make_udp6(kUplink6, 7000, kRemote, 53), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_SPOOFED);
	own(kGuestB, Mac{}, boot_ns() - KVX_GUEST_IDLE_NS * 2, KVX_ND_HOST);
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestB, 7000, kRemote, 53), kMacA), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOFED);
	EXPECT_EQ(dp().nd_lookup(kGuestB)->state, KVX_ND_HOST);
	// A group or zero source MAC owns nothing.
	run6(Prog::BrIngress,
	     from_guest(make_udp6(kGuestA, 7000, kRemote, 53), Mac{0x01, 0, 0x5e, 0, 0, 1}),
	     TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(dp().nd_size(), 1u);
}

TEST_F(Relay6Test, LanHostPosingAsAGuestIsDropped)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	run6(Prog::UpIngress, from_lan(make_udp6(kGuestA, 53, kGuestB, 7000)), TC_ACT_SHOT,
	     KVX_R_DROP_MARTIAN_IN);
	run6(Prog::UpIngress, from_lan(make_udp6(kUplink6, 53, kGuestB, 7000)), TC_ACT_SHOT,
	     KVX_R_DROP_MARTIAN_IN);
}

TEST_F(Relay6Test, LinkLocalAndMulticastStayTheHosts)
{
	run6(Prog::BrIngress,
	     from_guest(make_udp6(ip6("fe80::5054:ff:fe00:7a0"), 546, ip6("ff02::1:2"), 547),
			kMacA),
	     TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 rs =
		from_guest(make_echo6(ip6("fe80::5054:ff:fe00:7a0"), ip6("ff02::2"), 0), kMacA);
	rs.icmp_type = kIcmp6RouterSol;
	rs.hop_limit = 255;
	run6(Prog::BrIngress, rs, TC_ACT_OK, KVX_R_PASS_ND);
	run6(Prog::UpIngress, from_lan(make_udp6(kLanHost, 5353, ip6("ff02::fb"), 5353)), TC_ACT_OK,
	     KVX_R_PASS_ND);
	// Nothing was learnt from them.
	EXPECT_EQ(dp().nd_size(), 0u);
}

TEST_F(Relay6Test, OtherModesNeverRunTheRelay)
{
	// Off: the frame is the host's, as before IPv6 existed here.
	kvx_cfg6 off = relay_cfg();
	off.mode = KVX_V6_OFF;
	dp().set_cfg6(off);
	const Packet6 syn = from_guest(make_tcp6(kGuestA, 40000, kRemote, 443), kMacA);
	run6(Prog::BrIngress, syn, TC_ACT_OK, KVX_R_PASS_NOT_IP);
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA), TC_ACT_OK,
	     KVX_R_PASS_NOT_IP);
}

// --- the ND proxy ---

TEST_F(Relay6Test, UplinkNeighbourSolicitationForAGuestIsAnswered)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	const Packet6 ns = neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA);
	run6(Prog::UpIngress, ns, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(ns, Topology::kUplinkMac));
	// Neighbour unreachability detection: unicast, to the address.
	Packet6 nud = ns;
	nud.dst = kGuestA;
	nud.dst_mac = Topology::kUplinkMac;
	run6(Prog::UpIngress, nud, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(nud, Topology::kUplinkMac));
	// A LAN host's DAD for the guest's address is defended, to all nodes.
	const Packet6 dad = neigh_sol(Ip6{}, Topology::kGatewayMac, kGuestA);
	run6(Prog::UpIngress, dad, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(dad, Topology::kUplinkMac));
}

TEST_F(Relay6Test, UplinkNeighbourSolicitationsNotOursAreTheHosts)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	// For the uplink's own address, an unowned one, a pending one.
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, kUplink6), TC_ACT_OK,
	     KVX_R_PASS_ND);
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, kGuestB), TC_ACT_OK,
	     KVX_R_PASS_ND);
	own(kGuestB, kMacB, boot_ns(), KVX_ND_PENDING);
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, kGuestB), TC_ACT_OK,
	     KVX_R_PASS_ND);
	// Invalid ones (RFC 4861 7.1.1): a wrong checksum, a hop limit that
	// is not 255 (it crossed a router), a DAD probe sent unicast.
	Packet6 bad = neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA);
	const Packet6 good = bad;
	bad.l4_csum = 0x1234;
	run6(Prog::UpIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
	bad = good;
	bad.hop_limit = 254;
	run6(Prog::UpIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
	bad = neigh_sol(Ip6{}, Topology::kGatewayMac, kGuestA);
	bad.dst = kGuestA;
	run6(Prog::UpIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
}

TEST_F(Relay6Test, GuestNeighbourSolicitationForTheLanIsAnsweredByTheBridge)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	const Packet6 ns = neigh_sol(kGuestA, kMacA, kLanHost);
	run6(Prog::BrIngress, ns, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(ns, Topology::kBridgeMac));
	// The host's uplink address is reached the same way.
	const Packet6 up = neigh_sol(kGuestA, kMacA, kUplink6);
	run6(Prog::BrIngress, up, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(up, Topology::kBridgeMac));
	// Another guest answers for itself (the bridge floods the NS to it).
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	run6(Prog::BrIngress, neigh_sol(kGuestA, kMacA, kGuestB), TC_ACT_OK, KVX_R_PASS_ND);
	// Outside the prefix (a link-local target): the host's.
	run6(Prog::BrIngress, neigh_sol(kGuestA, kMacA, ip6("fe80::1")), TC_ACT_OK, KVX_R_PASS_ND);
}

TEST_F(Relay6Test, GuestDadClaimsTheAddressOrIsDefendedForTheHost)
{
	set_inbound_open();
	// A guest's DAD probe binds the address to it, pending, before any
	// traffic; once its DAD has run its course it is the guest's, even
	// if the guest sends nothing from it (a server).
	const Packet6 probe = dad_probe(kMacA, kGuestA);
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(probe, kUplinkMacT));
	EXPECT_EQ(owner_of(dp(), kGuestA), kMacA);
	own(kGuestA, kMacA, boot_ns_ago(KVX_ND_DAD_NS + 100000000ull), KVX_ND_PENDING);
	const Packet6 in = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	run6(Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(in, kMacA));
	const Packet6 ns = neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA);
	run6(Prog::UpIngress, ns, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(ns, Topology::kUplinkMac));
	// For the host's address it is answered: the guest picks another.
	const Packet6 dad = neigh_sol(Ip6{}, kMacB, kUplink6);
	run6(Prog::BrIngress, dad, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(dad, Topology::kBridgeMac));
	EXPECT_FALSE(dp().nd_lookup(kUplink6).has_value());
}

TEST_F(Relay6Test, GuestToGuestThroughTheBridgeMac)
{
	claim(kGuestA, kMacA);
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	const Packet6 p = from_guest(make_udp6(kGuestA, 7000, kGuestB, 53), kMacA);
	Packet6 want = p;
	want.hop_limit--;
	want.src_mac = Topology::kBridgeMac;
	want.dst_mac = kMacB;
	run6(Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_RELAY_IN, want);
}

// attach --clamp-mss: SYNs to and from the LAN get the value less 20 (the
// IPv6 header is 20 bytes longer than IPv4's on the same path), the
// checksum updated (the expected frames' computed from scratch); between
// guests, as IPv4's hairpin, nothing is clamped.
TEST_F(Relay6Test, MssClampedOnSynsToAndFromTheLan)
{
	set_cfg([](kvx_cfg &c) { c.clamp_mss = 1400; });
	claim(kGuestA, kMacA);
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	Packet6 syn = from_guest(make_tcp6(kGuestA, 40000, kRemote, 443), kMacA);
	syn.tcp_options = {0x02, 0x04, 0x05, 0xa0}; // MSS 1440
	Packet6 want = routed_out(syn);
	want.tcp_options = {0x02, 0x04, 0x05, 0x64}; // 1380
	RunResult r = run6(Prog::BrIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, want);
	EXPECT_EQ(check_checksums(r.out), "");

	Packet6 back = from_lan(make_tcp6(kRemote, 443, kGuestA, 40000, kTcpSyn | kTcpAck));
	back.hop_limit = 57;
	back.tcp_options = {0x01, 0x02, 0x04, 0x05, 0xa0, 0x01, 0x01, 0x00};
	Packet6 want_in = routed_in(back, kMacA);
	want_in.tcp_options = {0x01, 0x02, 0x04, 0x05, 0x64, 0x01, 0x01, 0x00};
	r = run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_RELAY_IN, want_in);
	EXPECT_EQ(check_checksums(r.out), "");

	Packet6 g = from_guest(make_tcp6(kGuestA, 40001, kGuestB, 22), kMacA);
	g.tcp_options = {0x02, 0x04, 0x05, 0xa0};
	Packet6 want_g = g;
	want_g.hop_limit--;
	want_g.src_mac = Topology::kBridgeMac;
	want_g.dst_mac = kMacB;
	run6(Prog::BrIngress, g, TC_ACT_REDIRECT, KVX_R_RELAY_IN, want_g);
}

// --- DAD relay (RFC 4389 4.1.3.3): a duplicate on the LAN is detected ---

TEST_F(Relay6Test, GuestDadIsRelayedToTheLanAndTheAddressIsPendingMeanwhile)
{
	set_inbound_open();
	// Out of the uplink as it came (its nonce too), from the uplink's MAC.
	const Packet6 probe = dad_probe(kMacA, kGuestA);
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(probe, kUplinkMacT));
	ASSERT_TRUE(dp().nd_lookup(kGuestA).has_value());
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_PENDING);
	// While it runs: nothing forwarded to the address, no NS answered
	// for it (a LAN host's own address resolution for it is the host's).
	const Packet6 in = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	run6(Prog::UpIngress, in, TC_ACT_OK, KVX_R_PASS_HOST);
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA), TC_ACT_OK,
	     KVX_R_PASS_ND);
	// Another guest's frame to it neither.
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	const Packet6 b2a = from_guest(make_udp6(kGuestB, 7000, kGuestA, 53), kMacB);
	const RunResult r =
		dp().run(Prog::BrIngress, b2a.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_GE(r.out.size(), 6u);
	EXPECT_FALSE(std::equal(kMacA.begin(), kMacA.end(), r.out.begin()));
	// The guest's frames from it while its DAD runs (optimistic DAD)
	// are dropped: a defence may still come.
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_PENDING);
	// Its first frame from it after its DAD: the guest's.
	own(kGuestA, kMacA, boot_ns_ago(KVX_ND_DAD_NS - 100000000ull), KVX_ND_PENDING);
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_OWNED);
	run6(Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(in, kMacA));
}

TEST_F(Relay6Test, LanHostsDefenceFailsTheGuestsDad)
{
	set_inbound_open();
	const Packet6 probe = dad_probe(kMacA, kGuestA);
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(probe, kUplinkMacT));
	// The LAN host that has the address answers the probe (RFC 4862
	// 5.4.3: an NA to all nodes, Router and Override set, its MAC): it
	// goes to the guests from the bridge's MAC, Override cleared.
	Packet6 na = nd_msg(kNeighAdv, kGuestA, ip6("ff02::1"), 0xa0000000u, kGuestA, 2,
			    Topology::kGatewayMac);
	na.src_mac = Topology::kGatewayMac;
	na.dst_mac = Mac{0x33, 0x33, 0, 0, 0, 1};
	Packet6 want = nd_msg(kNeighAdv, kGuestA, ip6("ff02::1"), 0x80000000u, kGuestA, 2,
			      Topology::kBridgeMac);
	want.src_mac = Topology::kBridgeMac;
	want.dst_mac = na.dst_mac;
	run6(Prog::UpIngress, na, TC_ACT_REDIRECT, KVX_R_ND_RELAY, want);
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_DUP);
	// The address stays the LAN host's: never forwarded to the guest,
	// never answered for, not even after a DAD's time; the guest's frames
	// from it are dropped.
	own(kGuestA, kMacA, boot_ns_ago(KVX_ND_DAD_NS * 3), KVX_ND_DUP);
	const Packet6 in = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	run6(Prog::UpIngress, in, TC_ACT_OK, KVX_R_PASS_HOST);
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA), TC_ACT_OK,
	     KVX_R_PASS_ND);
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_DUPLICATE);
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_DUP);
	// Nor does another guest get it while the first holds it.
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacB), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	// The guest's next DAD soon after the defence is answered by the
	// bridge (its DAD fails at once, as for the host's addresses): not
	// relayed, so one lost defence cannot give it the LAN host's address.
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(probe, Topology::kBridgeMac));
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_DUP);
	// Once the hold is over (the LAN host gone) it starts over.
	own(kGuestA, kMacA, boot_ns_ago(KVX_ND_DUP_HOLD_NS + 1000000000ull), KVX_ND_DUP);
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(probe, kUplinkMacT));
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_PENDING);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	own(kGuestA, kMacA, boot_ns_ago(KVX_ND_DAD_NS), KVX_ND_PENDING);
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
}

TEST_F(Relay6Test, LanHostsOwnDadForAPendingAddressReachesTheGuest)
{
	run6(Prog::BrIngress, dad_probe(kMacA, kGuestA), TC_ACT_REDIRECT, KVX_R_ND_RELAY,
	     relayed(dad_probe(kMacA, kGuestA), kUplinkMacT));
	// Both probe at once (RFC 4862 5.4.3): the LAN host's comes to the
	// guests from the bridge's MAC, and neither gets it from us.
	const Packet6 lan = dad_probe(Topology::kGatewayMac, kGuestA);
	run6(Prog::UpIngress, lan, TC_ACT_REDIRECT, KVX_R_ND_RELAY,
	     relayed(lan, Topology::kBridgeMac));
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_DUP);
	// For an owned address a LAN host's probe is defended (as before).
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	const Packet6 lanb = dad_probe(Topology::kGatewayMac, kGuestB);
	run6(Prog::UpIngress, lanb, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(lanb, Topology::kUplinkMac));
	EXPECT_EQ(dp().nd_lookup(kGuestB)->state, KVX_ND_OWNED);
}

TEST_F(Relay6Test, NoDefenceButALanHostsOne)
{
	run6(Prog::BrIngress, dad_probe(kMacA, kGuestA), TC_ACT_REDIRECT, KVX_R_ND_RELAY,
	     relayed(dad_probe(kMacA, kGuestA), kUplinkMacT));
	// Our own probe sent back by an access point (the uplink's MAC).
	run6(Prog::UpIngress, dad_probe(Topology::kUplinkMac, kGuestA), TC_ACT_OK, KVX_R_PASS_ND);
	// A solicited NA (unicast: to someone's question), an invalid one
	// (hop limit 254), one for an address no guest probes.
	Packet6 na = nd_msg(kNeighAdv, kGuestA, kLanHost, 0x40000000u, kGuestA, 2,
			    Topology::kGatewayMac);
	na.src_mac = Topology::kGatewayMac;
	na.dst_mac = Topology::kGatewayMac;
	run6(Prog::UpIngress, na, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 mna = nd_msg(kNeighAdv, kGuestA, ip6("ff02::1"), 0x20000000u, kGuestA, 2,
			     Topology::kGatewayMac);
	mna.src_mac = Topology::kGatewayMac;
	mna.dst_mac = Mac{0x33, 0x33, 0, 0, 0, 1};
	mna.hop_limit = 254;
	run6(Prog::UpIngress, mna, TC_ACT_OK, KVX_R_PASS_ND);
	// Solicited to a group: invalid (RFC 4861 7.1.2).
	mna.hop_limit = 255;
	mna.icmp_id = 0x4000;
	run6(Prog::UpIngress, mna, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 other = nd_msg(kNeighAdv, kGuestB, ip6("ff02::1"), 0x20000000u, kGuestB, 2,
			       Topology::kGatewayMac);
	other.src_mac = Topology::kGatewayMac;
	other.dst_mac = mna.dst_mac;
	run6(Prog::UpIngress, other, TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_PENDING);
	// A probe that carries a source link-layer address is invalid (RFC
	// 4861 7.1.1): the host's, not relayed.
	Packet6 bad = neigh_sol(Ip6{}, kMacB, kGuestB);
	bad.payload.insert(bad.payload.end(), {1, 1, 0x52, 0x54, 0, 0, 7, 0xb0});
	run6(Prog::BrIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
}

// The ND proxy's validation is nd6.h's (Nat66Test.MappedAddressNsValidated):
// on the uplink, an NS for an owned guest with an option of length 0 is not
// answered; nor a guest's DAD probe carrying its MAC relayed, nor one to
// another address's solicited-node group.
TEST_F(Relay6Test, InvalidNeighbourSolicitationsNeitherAnsweredNorRelayed)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	const Packet6 ns = neigh_sol(kLanHost, Topology::kGatewayMac, kGuestA);
	run6(Prog::UpIngress, ns, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     proxy_na(ns, Topology::kUplinkMac));
	Packet6 zero = ns;
	zero.payload[17] = 0;
	run6(Prog::UpIngress, zero, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 slla = dad_probe(kMacB, kGuestB);
	slla.payload.insert(slla.payload.end(), {1, 1, 0x52, 0x54, 0, 0, 7, 0xb0});
	run6(Prog::BrIngress, slla, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 astray = dad_probe(kMacB, kGuestB);
	astray.dst = solicited_node(kGuestA);
	astray.dst_mac = mcast_mac(astray.dst);
	run6(Prog::BrIngress, astray, TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_FALSE(dp().nd_lookup(kGuestB).has_value());
}

// --- per-guest limits: addresses (kvx_gaddrs) and the flow quota ---

// kPrefix::N.
Ip6 prefix_addr(unsigned n)
{
	Ip6 a = kPrefix;
	a[14] = static_cast<std::uint8_t>(n >> 8);
	a[15] = static_cast<std::uint8_t>(n);
	return a;
}

TEST_F(Relay6Test, AGuestClaimsAtMostItsAddressLimit)
{
	// Each frame from an address nobody claimed makes it the guest's
	// pending claim (dropped: the daemon probes the LAN for it).
	for (unsigned i = 0; i < KVX_ND_PER_GUEST; i++)
		run6(Prog::BrIngress,
		     from_guest(make_udp6(prefix_addr(0x100 + i), 7000, kRemote, 53), kMacA),
		     TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	// One more: refused, by frame or by DAD probe (not relayed, not
	// recorded).
	const Ip6 extra = prefix_addr(0x100 + KVX_ND_PER_GUEST);
	run6(Prog::BrIngress, from_guest(make_udp6(extra, 7000, kRemote, 53), kMacA), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_ADDRS);
	run6(Prog::BrIngress, dad_probe(kMacA, extra), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_FALSE(dp().nd_lookup(extra).has_value());
	EXPECT_EQ(dp().nd_size(), static_cast<std::size_t>(KVX_ND_PER_GUEST));
	EXPECT_EQ(dp().gaddrs_at(dp().port_slot(kPortA)),
		  static_cast<std::uint32_t>(KVX_ND_PER_GUEST));
	// Its addresses keep working; another guest has its own limit.
	own(prefix_addr(0x100), kMacA, boot_ns(), KVX_ND_OWNED);
	const Packet6 again = from_guest(make_udp6(prefix_addr(0x100), 7001, kRemote, 53), kMacA);
	run6(Prog::BrIngress, again, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(again));
	run6(Prog::BrIngress, from_guest(make_udp6(extra, 7000, kRemote, 53), kMacB), TC_ACT_SHOT,
	     KVX_R_DROP_ND_UNCLAIMED);
	EXPECT_EQ(owner_of(dp(), extra), kMacB);
	// An address another guest takes over by its DAD (its owner idle)
	// leaves the owner's count: A may claim one more.
	own(prefix_addr(0x100), kMacA, boot_ns_ago(KVX_GUEST_IDLE_NS + 1000000000ull),
	    KVX_ND_OWNED);
	const Packet6 take = dad_probe(kMacB, prefix_addr(0x100));
	run6(Prog::BrIngress, take, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(take, kUplinkMacT));
	run6(Prog::BrIngress, from_guest(make_udp6(prefix_addr(0x200), 7000, kRemote, 53), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	run6(Prog::BrIngress, from_guest(make_udp6(prefix_addr(0x201), 7000, kRemote, 53), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_ADDRS);
}

// A guest that sends from ever new MACs has the limit of its bridge port
// (kvx_brport), not one per MAC; MACs the daemon has not placed yet share
// one limit between them.
TEST_F(Relay6Test, AGuestsAddressLimitHoldsWhateverMacItSendsFrom)
{
	for (unsigned i = 0; i < KVX_ND_PER_GUEST; i++)
		run6(Prog::BrIngress,
		     from_guest(make_udp6(prefix_addr(0x100 + i), 7000, kRemote, 53),
				i % 2 ? kMacA2 : kMacA),
		     TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	run6(Prog::BrIngress, from_guest(make_udp6(prefix_addr(0x1ff), 7000, kRemote, 53), kMacA2),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_ADDRS);
	run6(Prog::BrIngress, dad_probe(kMacA2, prefix_addr(0x1ff)), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_FALSE(dp().nd_lookup(prefix_addr(0x1ff)).has_value());
	// New MACs of no known port: one limit for all of them.
	for (unsigned i = 0; i < KVX_ND_PER_GUEST; i++) {
		const Mac m{0x52, 0x54, 0x00, 0x01, 0x00, static_cast<std::uint8_t>(i)};
		run6(Prog::BrIngress,
		     from_guest(make_udp6(prefix_addr(0x300 + i), 7000, kRemote, 53), m),
		     TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	}
	const Mac next{0x52, 0x54, 0x00, 0x01, 0x00, 0xff};
	run6(Prog::BrIngress, from_guest(make_udp6(prefix_addr(0x3ff), 7000, kRemote, 53), next),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_ADDRS);
	EXPECT_EQ(dp().gaddrs_at(dp().port_slot(0)), static_cast<std::uint32_t>(KVX_ND_PER_GUEST));
	// Guest B's port is untouched.
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestB, 7000, kRemote, 53), kMacB), TC_ACT_SHOT,
	     KVX_R_DROP_ND_UNCLAIMED);
	EXPECT_EQ(owner_of(dp(), kGuestB), kMacB);
}

TEST_F(Relay6Test, RelayFlowsCountAgainstTheGuestsFlowQuota)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 2; });
	dp().set_cfg6(relay_cfg());
	claim(kGuestA, kMacA);
	claim(prefix_addr(0xa1), kMacA);
	claim(prefix_addr(0xa2), kMacA2);
	claim(kGuestB, kMacB);
	for (std::uint16_t port : {7000, 7001}) {
		const Packet6 p = from_guest(make_udp6(kGuestA, port, kRemote, 53), kMacA);
		run6(Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(p));
	}
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestA, 7002, kRemote, 53), kMacA), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_QUOTA);
	// One quota per guest, not per address: its second address shares it.
	run6(Prog::BrIngress, from_guest(make_udp6(prefix_addr(0xa1), 7000, kRemote, 53), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	// Nor per MAC: an address of its other MAC (same bridge port) too.
	run6(Prog::BrIngress, from_guest(make_udp6(prefix_addr(0xa2), 7000, kRemote, 53), kMacA2),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	// Its flows go on; another guest has its own quota.
	const Packet6 again = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, again, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(again));
	const Packet6 b = from_guest(make_udp6(kGuestB, 7000, kRemote, 53), kMacB);
	run6(Prog::BrIngress, b, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(b));
	EXPECT_EQ(dp().ct6_entries().size(), 3u);
}

// --- a guest's address is one its DAD claimed, never one it sent from ---

// A LAN host's address a guest sends from: nothing of the LAN host's
// traffic comes to the guest (no answer for it on the uplink, nothing
// delivered), the guest's frames are dropped; the daemon's probe for it
// is defended by the LAN host, which keeps it.
TEST_F(Relay6Test, AFrameNeverClaimsALanHostsAddress)
{
	set_inbound_open();
	const Ip6 lan = prefix_addr(0x99);
	const Packet6 q = from_guest(make_udp6(lan, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	ASSERT_TRUE(dp().nd_lookup(lan).has_value());
	EXPECT_EQ(dp().nd_lookup(lan)->state, KVX_ND_PENDING);
	EXPECT_EQ(dp().nd_lookup(lan)->dad_probes, 0) << "the daemon's probe is to come";
	// However long it waits without a probe: nobody's.
	kvx_nd_val v = *dp().nd_lookup(lan);
	v.dad_ns = boot_ns_ago(10 * KVX_ND_DAD_NS);
	v.last_seen_ns = v.dad_ns;
	dp().nd_update(lan, v);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	const Packet6 in = from_lan(make_udp6(kRemote, 53, lan, 7000));
	run6(Prog::UpIngress, in, TC_ACT_OK, KVX_R_PASS_HOST);
	run6(Prog::UpIngress, neigh_sol(kLanHost, Topology::kGatewayMac, lan), TC_ACT_OK,
	     KVX_R_PASS_ND);
	// The daemon probes (control/relay.cpp probe_relay_claims), the LAN
	// host defends: the guests hear it, the address is the LAN host's.
	v.dad_probes = 1;
	v.dad_ns = boot_ns();
	dp().nd_update(lan, v);
	Packet6 na =
		nd_msg(kNeighAdv, lan, ip6("ff02::1"), 0xa0000000u, lan, 2, Topology::kGatewayMac);
	na.src_mac = Topology::kGatewayMac;
	na.dst_mac = Mac{0x33, 0x33, 0, 0, 0, 1};
	const RunResult r = dp().run(Prog::UpIngress, na.build(), ingress_ifindex(Prog::UpIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(dp().nd_lookup(lan)->state, KVX_ND_DUP);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_DUPLICATE);
	own(lan, kMacA, boot_ns_ago(KVX_ND_DAD_NS * 5), KVX_ND_DUP);
	run6(Prog::UpIngress, in, TC_ACT_OK, KVX_R_PASS_HOST);
}

// An address nobody defends (the guest's, with DAD off or claimed before
// kvmxdp came): the guest's once the daemon's probe ran its course.
TEST_F(Relay6Test, AFrameClaimIsTheGuestsAfterTheDaemonsProbe)
{
	set_inbound_open();
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	kvx_nd_val v = *dp().nd_lookup(kGuestA);
	v.dad_probes = 1;
	v.dad_ns = boot_ns();
	dp().nd_update(kGuestA, v);
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_ND_UNCLAIMED);
	v.dad_ns = boot_ns_ago(KVX_ND_DAD_NS + 100000000ull);
	dp().nd_update(kGuestA, v);
	const Packet6 in = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	run6(Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(in, kMacA));
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
	EXPECT_EQ(dp().nd_lookup(kGuestA)->state, KVX_ND_OWNED);
}

// A DAD run relays at most KVX_ND_DAD_PROBES probes, and a guest at most
// KVX_ND_RELAY_BURST at once (then one per KVX_ND_RELAY_INTERVAL_NS):
// DROP_ND_RELAY_LIMIT, nothing claimed by a probe that did not go out.
TEST_F(Relay6Test, RelayedProbesAreCountedAndRateLimited)
{
	const std::uint64_t t0 = boot_ns();
	const Packet6 probe = dad_probe(kMacA, kGuestA);
	for (int i = 0; i < KVX_ND_DAD_PROBES; i++)
		run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_RELAY,
		     relayed(probe, kUplinkMacT));
	EXPECT_EQ(dp().nd_lookup(kGuestA)->dad_probes, KVX_ND_DAD_PROBES);
	run6(Prog::BrIngress, probe, TC_ACT_SHOT, KVX_R_DROP_ND_RELAY_LIMIT);
	int relayed_n = KVX_ND_DAD_PROBES, limited = 0;
	for (unsigned i = 0; i < 2 * KVX_ND_RELAY_BURST; i++) {
		const Packet6 p = dad_probe(kMacA, prefix_addr(0x400 + i));
		const RunResult r =
			dp().run(Prog::BrIngress, p.build(), ingress_ifindex(Prog::BrIngress));
		if (r.verdict == TC_ACT_REDIRECT) {
			relayed_n++;
			EXPECT_TRUE(dp().nd_lookup(prefix_addr(0x400 + i)).has_value());
		} else {
			limited++;
			EXPECT_FALSE(dp().nd_lookup(prefix_addr(0x400 + i)).has_value());
		}
	}
	const std::uint64_t took = boot_ns() - t0;
	// The in-run refusal took a token too.
	EXPECT_GE(relayed_n + 1, KVX_ND_RELAY_BURST);
	EXPECT_LE(relayed_n + 1,
		  KVX_ND_RELAY_BURST + 1 + static_cast<int>(took / KVX_ND_RELAY_INTERVAL_NS));
	EXPECT_GT(limited, 0);
	EXPECT_GE(dp().stats().by_reason[KVX_R_DROP_ND_RELAY_LIMIT].packets, 2u);
	// Another guest's rate is its own.
	const Packet6 b = dad_probe(kMacB, kGuestB);
	run6(Prog::BrIngress, b, TC_ACT_REDIRECT, KVX_R_ND_RELAY, relayed(b, kUplinkMacT));
}

// --- per-guest counters (kvx_gstats): relayed IPv6 charged to the guest's MAC ---

std::uint64_t gdrops(const kvx_gstat &g)
{
	std::uint64_t n = 0;
	for (int i = 0; i < KVX_GD_MAX; i++)
		n += g.drops[i];
	return n;
}

// Forwarded each way, frame bytes as they came in; guest to guest out of
// the sender and into the target.
TEST_F(Relay6Test, GuestCountersChargeRelayedTrafficToTheGuestsMac)
{
	const std::uint32_t sa = dp().gstats_mac_slot(kMacA), sb = dp().gstats_mac_slot(kMacB);
	ASSERT_NE(sa & (KVX_GSTATS_SLOTS - 1), sb & (KVX_GSTATS_SLOTS - 1))
		<< "the two guests share a counter slot with this seed";
	claim(kGuestA, kMacA);
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kRemote, 53, 60), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
	const Packet6 back = from_lan(make_udp6(kRemote, 53, kGuestA, 7000, 300));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(back, kMacA));
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	const Packet6 g = from_guest(make_udp6(kGuestA, 7001, kGuestB, 53, 10), kMacA);
	Packet6 to_b = g;
	to_b.hop_limit--;
	to_b.src_mac = Topology::kBridgeMac;
	to_b.dst_mac = kMacB;
	run6(Prog::BrIngress, g, TC_ACT_REDIRECT, KVX_R_RELAY_IN, to_b);

	const kvx_gstat a = dp().gstats_at(sa);
	EXPECT_EQ(a.pkts_out, 2u);
	EXPECT_EQ(a.bytes_out, q.build().size() + g.build().size());
	EXPECT_EQ(a.pkts_in, 1u);
	EXPECT_EQ(a.bytes_in, back.build().size());
	EXPECT_EQ(gdrops(a), 0u);
	const kvx_gstat b = dp().gstats_at(sb);
	EXPECT_EQ(b.pkts_in, 1u);
	EXPECT_EQ(b.bytes_in, g.build().size());
	EXPECT_EQ(b.pkts_out + gdrops(b), 0u);
}

// Drops under their class: over the flow quota, over the address limit,
// another guest's address (charged to the MAC that sent it).
TEST_F(Relay6Test, GuestCountersChargeRelayDropsToTheGuest)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 1; });
	dp().set_cfg6(relay_cfg());
	claim(kGuestA, kMacA);
	const Packet6 p = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(p));
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestA, 7001, kRemote, 53), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	run6(Prog::BrIngress, from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacB),
	     TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	const kvx_gstat a = dp().gstats_at(dp().gstats_mac_slot(kMacA));
	EXPECT_EQ(a.pkts_out, 1u);
	EXPECT_EQ(a.drops[KVX_GD_QUOTA], 1u);
	EXPECT_EQ(gdrops(a), 1u);
	const kvx_gstat b = dp().gstats_at(dp().gstats_mac_slot(kMacB));
	EXPECT_EQ(b.drops[KVX_GD_SPOOF], 1u);
	EXPECT_EQ(b.pkts_out + b.pkts_in, 0u);
}

// --- the stateful inbound policy (default) and --ipv6-inbound open ---

TEST_F(Relay6Test, StatefulInboundLetsInOnlyReplies)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	// Unsolicited: a UDP datagram, a TCP SYN, an echo request.
	const Packet6 udp_in = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	run6(Prog::UpIngress, udp_in, TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40000, kGuestA, 22)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	// The guest's flow opens the way for its replies, and only those.
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
	run6(Prog::UpIngress, udp_in, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(udp_in, kMacA));
	run6(Prog::UpIngress, from_lan(make_udp6(kRemote, 54, kGuestA, 7000)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	const auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	// The guest's own address and port as the external side.
	EXPECT_EQ(std::memcmp(flows[0].first.int_addr, kGuestA.data(), 16), 0);
	EXPECT_EQ(std::memcmp(flows[0].second.ext_addr, kGuestA.data(), 16), 0);
	EXPECT_EQ(ntohs(flows[0].second.ct.ext_port), 7000);
	EXPECT_EQ(flows[0].second.ct.pkts_out, 1u);
	EXPECT_EQ(flows[0].second.ct.pkts_in, 1u);
	EXPECT_TRUE(flows[0].second.ct.flags & KVX_CT_F_SEEN_REPLY);
	// Echo: the reply to the guest's request.
	const Packet6 ping = from_guest(make_echo6(kGuestA, kRemote, 0x77), kMacA);
	run6(Prog::BrIngress, ping, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(ping));
	const Packet6 pong = from_lan(make_echo6(kRemote, kGuestA, 0x77, kIcmp6EchoReply));
	run6(Prog::UpIngress, pong, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(pong, kMacA));
	// TCP: a SYN opens, the SYN-ACK comes in; a bare ACK picks a lost
	// connection up (as NAT66 and IPv4), a FIN alone opens nothing.
	const Packet6 syn = from_guest(make_tcp6(kGuestA, 41000, kRemote, 443), kMacA);
	run6(Prog::BrIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(syn));
	Packet6 synack = from_lan(make_tcp6(kRemote, 443, kGuestA, 41000, kTcpSyn | kTcpAck));
	synack.ack_seq = syn.seq + 1;
	run6(Prog::UpIngress, synack, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(synack, kMacA));
	run6(Prog::BrIngress,
	     from_guest(make_tcp6(kGuestA, 41001, kRemote, 443, kTcpFin | kTcpAck), kMacA),
	     TC_ACT_SHOT, KVX_R_DROP_TCP_NO_FLOW);
	const Packet6 lost = from_guest(make_tcp6(kGuestA, 41001, kRemote, 443, kTcpAck), kMacA);
	run6(Prog::BrIngress, lost, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(lost));
	const Packet6 answer = from_lan(make_tcp6(kRemote, 443, kGuestA, 41001, kTcpAck));
	run6(Prog::UpIngress, answer, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(answer, kMacA));
}

// The flow's TCP tracking knows the SYNs' window scale (RFC 7323): the
// remote's FIN 10000 bytes on is inside the guest's window of 502 << 7.
TEST_F(Relay6Test, StatefulTcpTrackingKnowsTheWindowScale)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	Packet6 syn = from_guest(make_tcp6(kGuestA, 42000, kRemote, 443), kMacA);
	syn.tcp_options = {1, 3, 3, 7};
	run6(Prog::BrIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(syn));
	Packet6 synack = from_lan(make_tcp6(kRemote, 443, kGuestA, 42000, kTcpSyn | kTcpAck));
	synack.seq = 0x50000000;
	synack.ack_seq = syn.seq + 1;
	synack.tcp_options = {1, 3, 3, 7};
	run6(Prog::UpIngress, synack, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(synack, kMacA));
	Packet6 ack = from_guest(make_tcp6(kGuestA, 42000, kRemote, 443, kTcpAck), kMacA);
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	ack.window = 502;
	run6(Prog::BrIngress, ack, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(ack));
	Packet6 fin = from_lan(make_tcp6(kRemote, 443, kGuestA, 42000, kTcpFin | kTcpAck));
	fin.seq = synack.seq + 1 + 10000;
	fin.ack_seq = ack.seq;
	run6(Prog::UpIngress, fin, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(fin, kMacA));
}

TEST_F(Relay6Test, StatefulInboundLetsInErrorsAboutTheGuestsPackets)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	// A Packet Too Big quoting the guest's packet (PMTU discovery).
	const Bytes sent = make_udp6(kGuestA, 7000, kRemote, 53, 1400).build();
	Packet6 ptb = from_lan(make_echo6(kLanHost, kGuestA, 0));
	ptb.icmp_type = kIcmp6PacketTooBig;
	ptb.icmp_id = 0;
	ptb.icmp_seq = 1280;
	ptb.payload.assign(sent.begin() + 14, sent.begin() + 14 + 200);
	run6(Prog::UpIngress, ptb, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(ptb, kMacA));
	// One quoting another source is nobody's business of the guest's.
	const Bytes other = make_udp6(kGuestB, 7000, kRemote, 53, 100).build();
	ptb.payload.assign(other.begin() + 14, other.end());
	run6(Prog::UpIngress, ptb, TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	// A later fragment: nothing without its first.
	Packet6 frag = from_lan(make_udp6(kRemote, 53, kGuestA, 7000));
	frag.ext = {ext_fragment(100, false)};
	run6(Prog::UpIngress, frag, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(frag, kMacA));
}

// RFC 4890 4.3.1: echo requests reach the guests under the stateful
// policy too, rate limited per guest address, and make no flow.
TEST_F(Relay6Test, StatefulInboundLetsEchoRequestsIn)
{
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	own(kGuestB, kMacB, boot_ns(), KVX_ND_OWNED);
	const Packet6 ping = from_lan(make_echo6(kRemote, kGuestA, 9));
	run6(Prog::UpIngress, ping, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(ping, kMacA));
	EXPECT_TRUE(dp().ct6_entries().empty());
	// The guest's reply goes out (untracked).
	const Packet6 pong = from_guest(make_echo6(kGuestA, kRemote, 9, kIcmp6EchoReply), kMacA);
	run6(Prog::BrIngress, pong, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(pong));
	// A flood: the burst passes, then one per interval (10 ms) of the
	// time the runs took; the rest is filtered.
	int passed = 1, filtered = 0;
	const std::uint64_t t0 = boot_ns();
	for (int i = 0; i < 3 * KVX_RELAY_ECHO_BURST_T; i++) {
		const RunResult r =
			dp().run(Prog::UpIngress, ping.build(), ingress_ifindex(Prog::UpIngress));
		passed += r.verdict == TC_ACT_REDIRECT;
		filtered += r.verdict == TC_ACT_SHOT;
	}
	const std::uint64_t took_ms = (boot_ns() - t0) / 1000000;
	EXPECT_GE(passed, KVX_RELAY_ECHO_BURST_T);
	EXPECT_LE(passed, KVX_RELAY_ECHO_BURST_T + 2 + static_cast<int>(took_ms / 10));
	EXPECT_EQ(passed + filtered, 3 * KVX_RELAY_ECHO_BURST_T + 1);
	// Another guest's budget is its own.
	const Packet6 pingb = from_lan(make_echo6(kRemote, kGuestB, 9));
	run6(Prog::UpIngress, pingb, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(pingb, kMacB));
	EXPECT_TRUE(dp().ct6_entries().empty());
}

TEST_F(Relay6Test, OpenInboundLetsEverythingIn)
{
	set_inbound_open();
	own(kGuestA, kMacA, boot_ns(), KVX_ND_OWNED);
	const Packet6 syn = from_lan(make_tcp6(kRemote, 40000, kGuestA, 22));
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(syn, kMacA));
	const Packet6 ping = from_lan(make_echo6(kRemote, kGuestA, 9));
	run6(Prog::UpIngress, ping, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(ping, kMacA));
	// And nothing is tracked.
	const Packet6 q = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, q, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(q));
	EXPECT_TRUE(dp().ct6_entries().empty());
}

// --- relay mappings: what `map add '[ADDR6]:PORT' --proto P` and `map
// add ADDR6` let in under the stateful policy ---

// A relay mapping's pair in kvx_bind6 as apply_mappings6 writes it
// (mapping_entries6 of a guest's address to itself): proto 0 with port 0
// is the whole address.
void add_relay_mapping(Datapath &dp, std::uint8_t proto, const Ip6 &addr, std::uint16_t port)
{
	add_static6(dp, proto, addr, port, addr, port);
}

// A forwarded port: a SYN from outside opens a half-open flow (the guest's
// own address and port outside, counted as inbound in the guest's slot,
// in its early-drop ring), the handshake completes it; nothing else of
// the guest's, nor a segment that is no SYN, nor another guest's port.
TEST_F(Relay6Test, RelayMappingOpensItsPortToNewConnections)
{
	claim(kGuestA, kMacA);
	claim(kGuestB, kMacB);
	add_relay_mapping(dp(), kProtoTcp, kGuestA, 22);
	const std::uint32_t slot = dp().port_slot(kPortA);
	// Not a SYN: opens nothing (the guest would answer a RST).
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40000, kGuestA, 22, kTcpAck)),
	     TC_ACT_SHOT, KVX_R_DROP_TCP_NO_FLOW);
	const Packet6 syn = from_lan(make_tcp6(kRemote, 40000, kGuestA, 22));
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(syn, kMacA));
	auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(std::memcmp(flows[0].first.int_addr, kGuestA.data(), 16), 0);
	EXPECT_EQ(ntohs(flows[0].first.int_port), 22);
	EXPECT_EQ(std::memcmp(flows[0].first.rem_addr, kRemote.data(), 16), 0);
	EXPECT_EQ(std::memcmp(flows[0].second.ext_addr, kGuestA.data(), 16), 0);
	EXPECT_EQ(ntohs(flows[0].second.ct.ext_port), 22);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_SYN_RECV);
	EXPECT_EQ(flows[0].second.ct.flags & (KVX_CT_F_STATIC | KVX_CT_F_INBOUND |
					      KVX_CT_F_ONE_TO_ONE | KVX_CT_F_HALFOPEN),
		  KVX_CT_F_STATIC | KVX_CT_F_INBOUND | KVX_CT_F_HALFOPEN);
	EXPECT_EQ(dp().gflows_at(slot).in, 1u);
	EXPECT_EQ(dp().gflows_at(slot).out, 0u);
	const auto ring = dp().halfopen6_at(slot);
	ASSERT_TRUE(ring.has_value());
	EXPECT_EQ(std::memcmp(&ring->keys[0], &flows[0].first, sizeof(flows[0].first)), 0);
	// The guest's SYN-ACK and the remote's ACK complete it.
	Packet6 synack =
		from_guest(make_tcp6(kGuestA, 22, kRemote, 40000, kTcpSyn | kTcpAck), kMacA);
	synack.seq = 0x70000000;
	synack.ack_seq = syn.seq + 1;
	run6(Prog::BrIngress, synack, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(synack));
	Packet6 ack = from_lan(make_tcp6(kRemote, 40000, kGuestA, 22, kTcpAck));
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	run6(Prog::UpIngress, ack, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(ack, kMacA));
	flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_ESTABLISHED);
	// Only that port, protocol and address.
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40001, kGuestA, 23)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	run6(Prog::UpIngress, from_lan(make_udp6(kRemote, 40001, kGuestA, 22)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40001, kGuestB, 22)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	Packet6 gre = from_lan(make_udp6(kRemote, 1, kGuestA, 2));
	gre.proto = 47;
	gre.payload = pattern(24, 0x47);
	run6(Prog::UpIngress, gre, TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	// Gone (map del): new connections are filtered again.
	del_static6(dp(), kProtoTcp, kGuestA, 22, kGuestA, 22);
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40002, kGuestA, 22)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
}

// The whole address: TCP and UDP open flows (ONE_TO_ONE, any port), other
// protocols and ICMPv6 informational messages come in untracked, as
// through a bridge; TCP still only by a SYN.
TEST_F(Relay6Test, RelayMappingOfAnAddressLetsEveryProtocolIn)
{
	claim(kGuestA, kMacA);
	claim(kGuestB, kMacB);
	add_relay_mapping(dp(), 0, kGuestA, 0);
	const Packet6 udp = from_lan(make_udp6(kRemote, 5353, kGuestA, 6000));
	run6(Prog::UpIngress, udp, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(udp, kMacA));
	const Packet6 syn = from_lan(make_tcp6(kRemote, 40000, kGuestA, 8443));
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(syn, kMacA));
	const auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 2u);
	for (const auto &[k, v] : flows) {
		EXPECT_EQ(v.ct.flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE | KVX_CT_F_INBOUND),
			  KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE | KVX_CT_F_INBOUND);
		EXPECT_EQ(k.int_port, v.ct.ext_port);
	}
	EXPECT_EQ(dp().gflows_at(dp().port_slot(kPortA)).in, 2u);
	Packet6 gre = from_lan(make_udp6(kRemote, 1, kGuestA, 2));
	gre.proto = 47;
	gre.payload = pattern(24, 0x47);
	run6(Prog::UpIngress, gre, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(gre, kMacA));
	Packet6 info = from_lan(make_echo6(kRemote, kGuestA, 5));
	info.icmp_type = 139; // a node information query (RFC 4620)
	run6(Prog::UpIngress, info, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(info, kMacA));
	EXPECT_EQ(dp().ct6_entries().size(), 2u);
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40001, kGuestA, 8443, kTcpAck)),
	     TC_ACT_SHOT, KVX_R_DROP_TCP_NO_FLOW);
	// An unsolicited echo reply is nobody's.
	run6(Prog::UpIngress, from_lan(make_echo6(kRemote, kGuestA, 6, kIcmp6EchoReply)),
	     TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	// Guest B's address is not opened by A's mapping.
	gre.dst = kGuestB;
	run6(Prog::UpIngress, gre, TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	run6(Prog::UpIngress, from_lan(make_udp6(kRemote, 5353, kGuestB, 6000)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
}

// A SYN flood at a forwarded port stays in the guest's quota of inbound
// flows, recycling its own half-open entries (early drop): the guest's
// own new flows and a real client's connection still get through.
TEST_F(Relay6Test, RelayMappingFloodStaysInTheGuestsInboundQuota)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 4; });
	dp().set_cfg6(relay_cfg());
	claim(kGuestA, kMacA);
	add_relay_mapping(dp(), kProtoTcp, kGuestA, 22);
	const std::uint32_t slot = dp().port_slot(kPortA);
	int passed = 0;
	for (std::uint16_t i = 0; i < 40; i++) {
		Ip6 src = kRemote;
		src[15] = static_cast<std::uint8_t>(0x20 + i);
		const RunResult r = dp().run(
			Prog::UpIngress, from_lan(make_tcp6(src, 1000 + i, kGuestA, 22)).build(),
			ingress_ifindex(Prog::UpIngress));
		passed += r.verdict == TC_ACT_REDIRECT;
	}
	EXPECT_EQ(passed, 40); // each SYN takes the place of an unanswered one
	EXPECT_LE(dp().gflows_at(slot).in, 4u);
	EXPECT_LE(dp().ct6_entries().size(), 4u);
	const Packet6 out = from_guest(make_udp6(kGuestA, 7000, kRemote, 53), kMacA);
	run6(Prog::BrIngress, out, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(out));
	EXPECT_EQ(dp().gflows_at(slot).out, 1u);
	const Packet6 client = from_lan(make_tcp6(kLanHost, 50000, kGuestA, 22));
	run6(Prog::UpIngress, client, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(client, kMacA));
}

// A mapping is the guest's it first let traffic in to: another guest
// that takes the address later (after the first was gone long enough)
// gets nothing through it, and what a mapping of a port cannot parse (an
// unwalked extension header chain) is filtered, while a mapping of the
// whole address takes it untracked.
TEST_F(Relay6Test, RelayMappingStaysItsFirstOwnersAndParsesWhatItOpens)
{
	claim(kGuestA, kMacA);
	add_relay_mapping(dp(), kProtoTcp, kGuestA, 22);
	const Packet6 syn = from_lan(make_tcp6(kRemote, 40000, kGuestA, 22));
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(syn, kMacA));
	kvx_bind6_key ik{};
	ik.dir = KVX_BIND_IN;
	ik.proto = kProtoTcp;
	copy_addr(ik.addr, kGuestA);
	ik.port = htons(22);
	const auto ib = dp().bind6_lookup(ik);
	ASSERT_TRUE(ib.has_value());
	EXPECT_EQ(std::memcmp(ib->bind.guest_mac, kMacA.data(), 6), 0) << "its first owner";
	// Guest B owns the address now (A idle, B's DAD): nothing comes in.
	claim(kGuestA, kMacB);
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40001, kGuestA, 22)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	// A's again: open again.
	claim(kGuestA, kMacA);
	const Packet6 syn2 = from_lan(make_tcp6(kRemote, 40002, kGuestA, 22));
	run6(Prog::UpIngress, syn2, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(syn2, kMacA));
	// A SYN hidden behind a chain the parser does not walk (a second
	// hop-by-hop header): a port's mapping opens nothing for it.
	Packet6 hidden = from_lan(make_tcp6(kRemote, 40003, kGuestA, 22));
	hidden.ext = {ext_options(kExtDstOpts, 8), ext_options(kExtHopByHop, 8)};
	run6(Prog::UpIngress, hidden, TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	add_relay_mapping(dp(), 0, kGuestB, 0);
	claim(kGuestB, kMacB);
	hidden.dst = kGuestB;
	run6(Prog::UpIngress, hidden, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(hidden, kMacB));
	// Echo requests to a mapped address stay rate limited (the policy's
	// own rule, which comes first): the burst, then filtered.
	int passed = 0;
	const Packet6 ping = from_lan(make_echo6(kRemote, kGuestB, 9));
	for (int i = 0; i < 2 * KVX_RELAY_ECHO_BURST_T; i++)
		passed += dp().run(Prog::UpIngress, ping.build(), ingress_ifindex(Prog::UpIngress))
				  .verdict == TC_ACT_REDIRECT;
	EXPECT_LT(passed, 2 * KVX_RELAY_ECHO_BURST_T);
}

// A SYN that reopens a closed connection through a port's mapping is
// half-open again, in the guest's early-drop ring.
TEST_F(Relay6Test, RelayMappingReopenedConnectionIsHalfOpenAgain)
{
	claim(kGuestA, kMacA);
	add_relay_mapping(dp(), kProtoTcp, kGuestA, 22);
	const std::uint32_t slot = dp().port_slot(kPortA);
	const Packet6 syn = from_lan(make_tcp6(kRemote, 40000, kGuestA, 22));
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(syn, kMacA));
	// The guest refuses it (RST): the flow closes, out of the ring.
	Packet6 rst = from_guest(make_tcp6(kGuestA, 22, kRemote, 40000, kTcpRst | kTcpAck), kMacA);
	rst.seq = 0;
	rst.ack_seq = syn.seq + 1;
	run6(Prog::BrIngress, rst, TC_ACT_REDIRECT, KVX_R_RELAY_OUT, routed_out(rst));
	auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_CLOSE);
	// Its ring gone (replaced, or the flow evicted from it): the
	// reopening SYN puts it back.
	dp().halfopen6_forget(slot);
	Packet6 again = from_lan(make_tcp6(kRemote, 40000, kGuestA, 22));
	again.seq = syn.seq + 100000;
	run6(Prog::UpIngress, again, TC_ACT_REDIRECT, KVX_R_RELAY_IN, routed_in(again, kMacA));
	flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_SYN_RECV);
	const auto ring = dp().halfopen6_at(slot);
	ASSERT_TRUE(ring.has_value());
	EXPECT_EQ(ring->next, 1u) << "pushed again";
	EXPECT_EQ(std::memcmp(&ring->keys[0], &flows[0].first, sizeof(flows[0].first)), 0);
}

// NAT66's pairs (an external address of the prefix to a ULA guest) open
// nothing in relay mode, even where a guest owns that address: only a
// pair of an address to itself is a relay mapping.
TEST_F(Relay6Test, NatMappingsOpenNothingInRelayMode)
{
	claim(kGuestA, kMacA);
	kvx_bind6_key k{};
	kvx_bind6_val v{};
	k.dir = KVX_BIND_IN;
	k.proto = kProtoTcp;
	copy_addr(k.addr, kGuestA);
	k.port = htons(22);
	copy_addr(v.addr, ip6("fd42::14"));
	v.bind.port = htons(22);
	v.bind.flags = KVX_BIND_F_STATIC;
	dp().bind6_update(k, v);
	k.proto = 0;
	k.port = 0;
	v.bind.port = 0;
	v.bind.flags = KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE;
	dp().bind6_update(k, v);
	run6(Prog::UpIngress, from_lan(make_tcp6(kRemote, 40000, kGuestA, 22)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	run6(Prog::UpIngress, from_lan(make_udp6(kRemote, 40000, kGuestA, 53)), TC_ACT_SHOT,
	     KVX_R_DROP_FILTERED);
	EXPECT_TRUE(dp().ct6_entries().empty());
}

} // namespace
} // namespace kvmxdp::test
