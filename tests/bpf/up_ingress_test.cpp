// kvx_up_ingress (uplink ingress, outside -> guest).  Flows are set up by
// sending the guest's packet through kvx_br_ingress first, so the two
// programs are checked against each other's state, not against hand-made
// map entries (except static mappings, installed as abi.h describes them).
// Replies (table), not-translated cases (table), filtering, truncations,
// mutation invariants, TCP state, fragments, static mappings and proxy ARP,
// RELATED ICMP errors (table), MSS clamping and a real redirect to a guest.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <ostream>

#include "fixture.hpp"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

// --- replies translated back: ct_ingress finds the guest's flow ---

struct ReplyCase {
	std::string name;
	std::function<Packet()> guest_pkt;	  // from_guest() applied by the runner
	std::function<void(Packet &)> edit_reply; // optional
};

void PrintTo(const ReplyCase &c, std::ostream *os)
{
	*os << c.name;
}

class UpIngressReplies : public UpIngressTest, public ::testing::WithParamInterface<ReplyCase> {};

TEST_P(UpIngressReplies, TranslatedBackToGuest)
{
	const ReplyCase &tc = GetParam();
	const Packet g = from_guest(tc.guest_pkt());
	const Packet out = establish(g);
	Packet reply = reply_to(out);
	if (tc.edit_reply)
		tc.edit_reply(reply);
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply, g.src, src_port_of(g)));

	const std::uint16_t rport = g.proto == kProtoIcmp ? 0 : dst_port_of(g);
	auto ct = dp().ct_lookup(ct_key(g.proto, g.src, src_port_of(g), g.dst, rport));
	ASSERT_TRUE(ct) << "flow entry";
	EXPECT_TRUE(ct->flags & KVX_CT_F_SEEN_REPLY) << "flags " << int(ct->flags);
	EXPECT_FALSE(ct->flags & KVX_CT_F_INBOUND);
	EXPECT_EQ(ct->pkts_in, 1u);
	EXPECT_EQ(ct->pkts_out, 1u);
	// A second reply still goes through.
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply, g.src, src_port_of(g)));
}

std::vector<ReplyCase> reply_cases()
{
	const std::uint32_t A = kGuestA, R = kRemote1;
	return {
		{"TcpSynAck", [=] { return make_tcp(A, 62000, R, 443); }, nullptr},
		{"TcpSynAckRemappedPort", [=] { return make_tcp(A, 40000, R, 443); }, nullptr},
		{"UdpReply", [=] { return make_udp(A, 62001, R, 53, 40); }, nullptr},
		{"UdpReplyChecksumZero",
		 [=] {
			 return with(make_udp(A, 62002, R, 53),
				     [](Packet &p) { p.udp_no_csum = true; });
		 },
		 [](Packet &r) { r.udp_no_csum = true; }},
		{"UdpReplyGuestSentZeroRemoteDidNot",
		 [=] {
			 return with(make_udp(A, 62003, R, 53),
				     [](Packet &p) { p.udp_no_csum = true; });
		 },
		 [](Packet &r) { r.udp_no_csum = false; }},
		{"IcmpEchoReply", [=] { return make_icmp_echo(A, R, 62004); }, nullptr},
		{"IcmpEchoReplyRemappedId", [=] { return make_icmp_echo(A, R, 1); }, nullptr},
		{"TcpReplyWithIpOptions", [=] { return make_tcp(A, 62005, R, 443); },
		 [](Packet &r) {
			 r.ip_options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};
		 }},
		{"UdpReplyPaddedFrame", [=] { return make_udp(A, 62006, R, 53, 2); },
		 [](Packet &r) { r.pad_to = 60; }},
		{"TtlTwoReply", [=] { return make_udp(A, 62007, R, 53); },
		 [](Packet &r) { r.ttl = 2; }},
		{"GreReply", [=] { return make_ip_proto(A, R, kProtoGre); }, nullptr},
	};
}

INSTANTIATE_TEST_SUITE_P(Table, UpIngressReplies, ::testing::ValuesIn(reply_cases()),
			 [](const ::testing::TestParamInfo<ReplyCase> &i) { return i.param.name; });

// --- not translated: the host's, dropped or filtered ---

struct UpCase {
	std::string name;
	// Builds the inbound packet given the flow that exists: guest A
	// 192.168.122.10:62000 -> remote1:443 (TCP) and A:62001 -> remote1:53
	// (UDP) and echo id 62002, all with their ports kept.
	std::function<Packet()> input; // from_uplink() applied by the runner
	std::function<void(kvx_cfg &)> cfg;
	int verdict;
	kvx_reason reason;
};

void PrintTo(const UpCase &c, std::ostream *os)
{
	*os << c.name;
}

class UpIngressCases : public UpIngressTest, public ::testing::WithParamInterface<UpCase> {};

TEST_P(UpIngressCases, Verdict)
{
	const UpCase &tc = GetParam();
	establish(from_guest(make_tcp(kGuestA, 62000, kRemote1, 443)));
	establish(from_guest(make_udp(kGuestA, 62001, kRemote1, 53)));
	establish(from_guest(make_icmp_echo(kGuestA, kRemote1, 62002)));
	if (tc.cfg)
		set_cfg(tc.cfg);
	run_up(from_uplink(tc.input()), tc.verdict, tc.reason);
}

std::vector<UpCase> up_cases()
{
	const std::uint32_t U = Topology::kUplinkAddr, R = kRemote1, R2 = kRemote2;
	std::vector<UpCase> c;
	c.push_back({"ArpNotIp", [] { return make_ethertype(kEthArp, 28); }, nullptr, TC_ACT_OK,
		     KVX_R_PASS_NOT_IP});
	c.push_back({"Ipv6NotIp", [] { return make_ethertype(kEthIpv6, 60); }, nullptr, TC_ACT_OK,
		     KVX_R_PASS_NOT_IP});
	c.push_back({"VlanTaggedNotIp",
		     [=] {
			     return with(make_udp(R, 53, U, 62001),
					 [](Packet &p) { p.vlan_tags = {7}; });
		     },
		     nullptr, TC_ACT_OK, KVX_R_PASS_NOT_IP});
	c.push_back(
		{"MalformedVersion",
		 [=] { return with(make_udp(R, 53, U, 62001), [](Packet &p) { p.version = 5; }); },
		 nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"MalformedIhl",
		     [=] { return with(make_udp(R, 53, U, 62001), [](Packet &p) { p.ihl = 3; }); },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"MalformedTotLenBeyondFrame",
		     [=] {
			     return with(make_udp(R, 53, U, 62001),
					 [](Packet &p) { p.tot_len = 200; });
		     },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"ToGuestSubnet", [=] { return make_udp(R, 53, kGuestA, 62001); }, nullptr,
		     TC_ACT_SHOT, KVX_R_DROP_TO_SUBNET});
	c.push_back({"ToBridgeAddress", [=] { return make_tcp(R, 443, Topology::kBridgeAddr, 22); },
		     nullptr, TC_ACT_SHOT, KVX_R_DROP_TO_SUBNET});
	c.push_back({"ToSubnetBroadcast",
		     [=] { return make_udp(R, 53, ip4(192, 168, 122, 255), 9); }, nullptr,
		     TC_ACT_SHOT, KVX_R_DROP_TO_SUBNET});
	c.push_back({"ToOtherAddress", [=] { return make_udp(R, 53, ip4(10, 77, 0, 5), 62001); },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"ToUnboundPort", [=] { return make_udp(R, 53, U, 62999); }, nullptr, TC_ACT_OK,
		     KVX_R_PASS_HOST});
	c.push_back({"ProtocolMismatch", [=] { return make_udp(R, 443, U, 62000); }, nullptr,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"HostSshFromGateway",
		     [=] { return make_tcp(Topology::kGatewayAddr, 50000, U, 22); }, nullptr,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"IcmpEchoRequestToHost",
		     [=] { return make_icmp_echo(R, U, 62002, kIcmpEchoRequest); }, nullptr,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"IcmpDestUnreachToHost",
		     [=] { return make_icmp_echo(R, U, 0, kIcmpDestUnreach); }, nullptr, TC_ACT_OK,
		     KVX_R_PASS_HOST});
	c.push_back({"LaterFragmentToBinding",
		     [=] {
			     Packet p = make_ip_proto(R, U, kProtoUdp, 64);
			     p.df = false;
			     p.frag_offset = 100;
			     p.raw_l4 = true; // later fragment: no L4 header
			     return p;
		     },
		     nullptr, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST});
	c.push_back({"TruncatedUdpHeaderToBinding",
		     [=] {
			     Packet p = make_ip_proto(R, U, kProtoUdp, 4);
			     p.raw_l4 = true;
			     p.payload = {0x00, 0x35, 0xf2, 0x51}; // 53 -> 62001
			     return p;
		     },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"TruncatedTcpHeaderToBinding",
		     [=] {
			     Packet p = make_ip_proto(R, U, kProtoTcp, 16);
			     p.raw_l4 = true;
			     p.payload[0] = 0x01;
			     p.payload[1] = 0xbb; // 443
			     p.payload[2] = 0xf2;
			     p.payload[3] = 0x30; // 62000
			     return p;
		     },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	// A guest's binding takes only what its flows asked for (address-and-
	// port-dependent filtering): the rest to the uplink address is the
	// host's, untouched, as under iptables MASQUERADE (the port may be a
	// host service's that started after the binding, or one it publishes
	// through a DNAT rule).
	c.push_back({"OtherRemoteToBindingIsTheHosts", [=] { return make_udp(R2, 53, U, 62001); },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"SameRemoteOtherPortToBindingIsTheHosts",
		     [=] { return make_udp(R, 54, U, 62001); }, nullptr, TC_ACT_OK,
		     KVX_R_PASS_HOST});
	c.push_back({"OtherRemoteTcpToBindingIsTheHosts",
		     [=] { return make_tcp(R2, 443, U, 62000, kTcpSyn | kTcpAck); }, nullptr,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"OtherRemoteSynToBindingIsTheHosts",
		     [=] { return make_tcp(R2, 443, U, 62000, kTcpSyn); }, nullptr, TC_ACT_OK,
		     KVX_R_PASS_HOST});
	c.push_back({"OtherRemoteEchoReplyIsTheHosts",
		     [=] { return make_icmp_echo(R2, U, 62002, kIcmpEchoReply); }, nullptr,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"OtherRemoteTtlOneToBindingIsTheHosts",
		     [=] { return with(make_udp(R2, 53, U, 62001), [](Packet &p) { p.ttl = 1; }); },
		     nullptr, TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"TtlOneToFlow",
		     [=] { return with(make_udp(R, 53, U, 62001), [](Packet &p) { p.ttl = 1; }); },
		     nullptr, TC_ACT_SHOT, KVX_R_DROP_TTL_IN});
	c.push_back({"TtlZeroToFlow",
		     [=] { return with(make_udp(R, 53, U, 62001), [](Packet &p) { p.ttl = 0; }); },
		     nullptr, TC_ACT_SHOT, KVX_R_DROP_TTL_IN});
	c.push_back({"UplinkAddressGone", [=] { return make_udp(R, 53, U, 62001); },
		     [](kvx_cfg &cfg) { cfg.uplink_addr = 0; }, TC_ACT_OK, KVX_R_PASS_HOST});
	return c;
}

INSTANTIATE_TEST_SUITE_P(Table, UpIngressCases, ::testing::ValuesIn(up_cases()),
			 [](const ::testing::TestParamInfo<UpCase> &i) { return i.param.name; });

// --- filtering modes (RFC 4787 REQ-8) ---

TEST_F(UpIngressTest, FragmentedReplyTranslated)
{
	const Packet out = establish(from_guest(make_udp(kGuestA, 40030, kRemote1, 53)));
	Packet first = reply_to(out);
	first.payload = pattern(64, 0x77);
	first.mf = true;
	first.df = false;
	first.ip_id = 0x3333;
	run_up(first, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(first, kGuestA, 40030));

	Packet later = from_uplink(make_ip_proto(kRemote1, Topology::kUplinkAddr, kProtoUdp, 40));
	later.df = false;
	later.ip_id = 0x3333;
	later.frag_offset = 9;
	later.raw_l4 = true; // later fragment: no L4 header
	later.ttl = first.ttl;
	run_up(later, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(later, kGuestA, 0));
	// Another datagram's later fragment is the host's (and parked, in
	// case its first fragment is a guest's and still to come).
	later.ip_id = 0x4444;
	run_up(later, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST);
}

TEST_F(UpIngressTest, FragmentEntryExpires)
{
	// After KVX_FRAG_TIMEOUT_S the id may name a new datagram of the host's
	// own: the stale entry no longer sends it to the guest.
	const Packet out = establish(from_guest(make_udp(kGuestA, 40031, kRemote1, 53)));
	Packet first = reply_to(out);
	first.payload = pattern(64, 0x77);
	first.mf = true;
	first.df = false;
	first.ip_id = 0x3434;
	run_up(first, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(first, kGuestA, 40031));
	auto frags = dp().frag_entries();
	ASSERT_EQ(frags.size(), 1u);
	EXPECT_EQ(frags[0].first.dir, KVX_BIND_IN);
	EXPECT_EQ(frags[0].second.addr, be32(kGuestA));

	Packet later = from_uplink(make_ip_proto(kRemote1, Topology::kUplinkAddr, kProtoUdp, 40));
	later.df = false;
	later.ip_id = 0x3434;
	later.frag_offset = 9;
	later.raw_l4 = true; // later fragment: no L4 header
	later.ttl = first.ttl;
	kvx_frag_val val = frags[0].second;
	val.created_ns = boot_ns_ago((KVX_FRAG_TIMEOUT_S - 1) * 1000000000ULL);
	dp().frag_update(frags[0].first, val);
	run_up(later, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(later, kGuestA, 0));
	val.created_ns = boot_ns_ago((KVX_FRAG_TIMEOUT_S + 1) * 1000000000ULL);
	dp().frag_update(frags[0].first, val);
	run_up(later, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST);
	EXPECT_TRUE(dp().frag_entries().empty());
}

// --- MTU toward the bridge: a redirect skips ip_forward's check ---

TEST_F(UpIngressTest, LargerThanBridgeMtuDropped)
{
	BridgeMtu mtu(1280);
	const Packet out = establish(from_guest(make_udp(kGuestA, 40040, kRemote1, 443)));
	Packet fits = reply_to(out);
	fits.payload = pattern(1280 - 28);
	run_up(fits, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(fits, kGuestA, 40040));
	Packet big = reply_to(out);
	big.payload = pattern(1281 - 28);
	run_up(big, TC_ACT_SHOT, KVX_R_DROP_TOO_BIG_IN);
}

TEST_F(UpIngressTest, GroSegmentsLargerThanBridgeMtuDropped)
{
	// A GRO aggregate from the uplink (UDP GRO: 20 + 8 + gso_size per
	// segment): each of its segments must fit.
	BridgeMtu mtu(1280);
	const Packet out = establish(from_guest(make_udp(kGuestA, 40041, kRemote1, 443)));
	Packet p = reply_to(out);
	p.payload = pattern(2 * 1252);
	dp().set_skb_meta({0, 1252});
	run_up(p, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(p, kGuestA, 40041));
	p.payload = pattern(2 * 1253);
	dp().set_skb_meta({0, 1253});
	run_up(p, TC_ACT_SHOT, KVX_R_DROP_TOO_BIG_IN);
}

TEST_F(UpIngressTest, EndpointIndependentFilteringTranslates)
{
	const Packet g = from_guest(make_udp(kGuestA, 62100, kRemote1, 3478));
	establish(g);
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	Packet in = from_uplink(make_udp(kRemote2, 5000, Topology::kUplinkAddr, 62100));
	run_up(in, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(in, kGuestA, 62100));
	auto ct = dp().ct_lookup(ct_key(kProtoUdp, kGuestA, 62100, kRemote2, 5000));
	ASSERT_TRUE(ct) << "EIF creates the flow";
	EXPECT_TRUE(ct->flags & KVX_CT_F_INBOUND);
	EXPECT_EQ(ct->ext_addr, be32(Topology::kUplinkAddr));
	EXPECT_EQ(ct->ext_port, be16(62100));
	EXPECT_EQ(ct->pkts_in, 1u);
	// The guest answers on the new flow: same external port.
	Packet back = from_guest(make_udp(kGuestA, 62100, kRemote2, 5000));
	run_case(dp(), Prog::BrIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(back, 62100));
}

TEST_F(UpIngressTest, EifDoesNotOpenUnboundPorts)
{
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	run_up(from_uplink(make_udp(kRemote2, 5000, Topology::kUplinkAddr, 62101)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	EXPECT_TRUE(dp().ct_entries().empty());
}

TEST_F(UpIngressTest, ExpiringReplyLeavesFlowAlone)
{
	const Packet out = establish(from_guest(make_udp(kGuestA, 62105, kRemote1, 53)));
	Packet reply = reply_to(out);
	reply.ttl = 1;
	run_up(reply, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	auto ct = dp().ct_lookup(ct_key(kProtoUdp, kGuestA, 62105, kRemote1, 53));
	ASSERT_TRUE(ct);
	EXPECT_EQ(ct->pkts_in, 0u);
	EXPECT_FALSE(ct->flags & KVX_CT_F_SEEN_REPLY);
	// With EIF, an expiring packet from a new remote opens no flow.
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	Packet other = from_uplink(make_udp(kRemote2, 53, Topology::kUplinkAddr, 62105));
	other.ttl = 1;
	run_up(other, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	EXPECT_FALSE(dp().ct_lookup(ct_key(kProtoUdp, kGuestA, 62105, kRemote2, 53)));
}

TEST_F(UpIngressTest, UnsolicitedToBindingCreatesNoFlow)
{
	const Packet out = establish(from_guest(make_udp(kGuestA, 62102, kRemote1, 53)));
	run_up(from_uplink(make_udp(kRemote2, 53, Topology::kUplinkAddr, 62102)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	EXPECT_EQ(dp().ct_entries().size(), 1u);
	// The guest's own flow is untouched: its replies still reach it.
	const Packet reply = reply_to(out);
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply, kGuestA, 62102));
}

// A host service that starts listening on a port a guest's binding holds
// (kvx_portx, refreshed by the daemon's sweep): with --eif the binding no
// longer takes new flows there; new remotes reach the host.  Flows the
// guest has stay its own.
TEST_F(UpIngressTest, EifNeverTakesAPortTheHostListensOn)
{
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	const Packet out = establish(from_guest(make_udp(kGuestA, 62110, kRemote1, 53)));
	establish(from_guest(make_tcp(kGuestA, 62111, kRemote1, 443, kTcpSyn)));
	dp().set_host_ports({62110, 62111});
	const std::uint32_t U = Topology::kUplinkAddr;
	run_up(from_uplink(make_udp(kRemote2, 5000, U, 62110)), TC_ACT_OK, KVX_R_PASS_HOST);
	run_up(from_uplink(make_tcp(kRemote2, 5000, U, 62111, kTcpSyn)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	EXPECT_FALSE(dp().ct_lookup(ct_key(kProtoUdp, kGuestA, 62110, kRemote2, 5000)));
	EXPECT_FALSE(dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62111, kRemote2, 5000)));
	const Packet reply = reply_to(out);
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply, kGuestA, 62110));
	// Not the host's port any more: EIF as before.
	dp().set_host_ports({});
	const Packet other = from_uplink(make_udp(kRemote2, 5000, U, 62110));
	run_up(other, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(other, kGuestA, 62110));
}

// `conntrack flush` marks a TCP binding whose flows it deleted
// (KVX_BIND_F_FLUSHED, set by the loader): the remote's next segment of the
// flushed connection, if it comes before the guest's, is dropped (the
// guest's next packet picks the flow up) rather than handed to the host,
// whose stack would reset the connection.  A SYN is still the host's, and
// so is the port once a host service listens on it.
TEST_F(UpIngressTest, FlushedTcpFlowWaitsForTheGuest)
{
	const Packet g = from_guest(make_tcp(kGuestA, 62130, kRemote1, 443, kTcpAck));
	const Packet out = establish(g);
	const kvx_bind_key ik = bind_key(KVX_BIND_IN, kProtoTcp, Topology::kUplinkAddr, 62130);
	// What the flush does to the maps: the flow goes, the IN half is marked.
	dp().ct_delete(ct_key(kProtoTcp, kGuestA, 62130, kRemote1, 443));
	auto in = dp().bind_lookup(ik);
	ASSERT_TRUE(in);
	in->flags |= KVX_BIND_F_FLUSHED;
	dp().bind_update(ik, *in);

	Packet seg = reply_to(out);
	run_up(seg, TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	EXPECT_TRUE(dp().ct_entries().empty());
	const std::uint32_t U = Topology::kUplinkAddr;
	run_up(from_uplink(make_tcp(kRemote2, 5000, U, 62130, kTcpSyn)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	run_up(from_uplink(make_udp(kRemote1, 443, U, 62130)), TC_ACT_OK, KVX_R_PASS_HOST);
	// A SYN-ACK may be a flushed handshake's: the host would reset it.
	run_up(from_uplink(make_tcp(kRemote2, 5000, U, 62130, std::uint8_t(kTcpSyn | kTcpAck))),
	       TC_ACT_SHOT, KVX_R_DROP_FILTERED);
	// A host service that listens on the port now gets its handshakes.
	dp().set_host_ports({62130});
	run_up(from_uplink(make_tcp(kRemote2, 5001, U, 62130, kTcpAck)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	dp().set_host_ports({});
	// The guest's next segment picks the flow up; the remote's follow.
	establish(g);
	run_up(seg, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(seg, kGuestA, 62130));
}

// With --eif, a TCP segment other than a SYN that matches no flow of the
// binding opens nothing and is not the guest's: the host's (its own
// connection on that port, if it has one).
TEST_F(UpIngressTest, EifNonSynWithoutFlowIsTheHosts)
{
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	establish(from_guest(make_tcp(kGuestA, 62112, kRemote1, 443, kTcpSyn)));
	const std::uint32_t U = Topology::kUplinkAddr;
	for (std::uint8_t f : {kTcpAck, std::uint8_t(kTcpFin | kTcpAck), kTcpRst, std::uint8_t(0)})
		run_up(from_uplink(make_tcp(kRemote2, 5000, U, 62112, f)), TC_ACT_OK,
		       KVX_R_PASS_HOST);
	EXPECT_FALSE(dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 62112, kRemote2, 5000)));
}

TEST_F(UpIngressTest, TwoGuestsSamePortRepliesReachTheirOwner)
{
	const Packet a = from_guest(make_udp(kGuestA, 62103, kRemote1, 53));
	const Packet b = from_guest(make_udp(kGuestB, 62103, kRemote1, 53));
	const Packet out_a = establish(a);
	const Packet out_b = establish(b);
	ASSERT_NE(out_a.sport, out_b.sport);
	Packet ra = reply_to(out_a), rb = reply_to(out_b);
	run_up(rb, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(rb, kGuestB, 62103));
	run_up(ra, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(ra, kGuestA, 62103));
	// The same for two pings with the same echo id.
	const Packet pa = establish(from_guest(make_icmp_echo(kGuestA, kRemote1, 62104)));
	const Packet pb = establish(from_guest(make_icmp_echo(kGuestB, kRemote1, 62104)));
	ASSERT_NE(pa.icmp_id, pb.icmp_id);
	Packet qa = reply_to(pa), qb = reply_to(pb);
	run_up(qb, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(qb, kGuestB, 62104));
	run_up(qa, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(qa, kGuestA, 62104));
}

TEST_F(UpIngressTest, MissingOutHalfNotMistranslated)
{
	// IN half present, OUT half gone (a pair being torn down): a reply
	// may be translated to the IN half's guest or dropped/passed, but
	// never to anyone else.
	const Packet g = from_guest(make_udp(kGuestA, 62104, kRemote1, 53));
	const Packet out = establish(g);
	dp().bind_delete(bind_key(KVX_BIND_OUT, kProtoUdp, kGuestA, 62104));
	const Packet reply = reply_to(out);
	RunResult r = dp().run(Prog::UpIngress, reply.build(), topo().uplink_ifindex);
	if (r.verdict == TC_ACT_REDIRECT)
		EXPECT_EQ(diff(r.out, dnat(reply, kGuestA, 62104).build()), "");
	else
		EXPECT_EQ(diff(r.out, reply.build()), "");
}

TEST_F(UpIngressTest, EveryTruncationPassesUnchanged)
{
	const std::vector<Packet> guest = {
		from_guest(make_tcp(kGuestA, 62200, kRemote1, 443)),
		from_guest(make_udp(kGuestA, 62201, kRemote1, 53, 20)),
		from_guest(make_icmp_echo(kGuestA, kRemote1, 62202)),
	};
	for (const Packet &g : guest) {
		const Packet reply = reply_to(establish(g));
		// The full reply is translated...
		run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply, g.src, src_port_of(g)));
		// ...every truncation of it is left to the host, unchanged.
		const Bytes full = reply.build();
		for (std::size_t len = kMinTestRunFrame; len < full.size(); len++) {
			SCOPED_TRACE("proto " + std::to_string(g.proto) + " truncated to " +
				     std::to_string(len) + " of " + std::to_string(full.size()));
			run_case_bytes(dp(), Prog::UpIngress,
				       Bytes(full.begin(), full.begin() + len), TC_ACT_OK,
				       KVX_R_PASS_HOST, std::nullopt);
			if (HasFailure())
				return;
		}
	}
}

TEST_F(UpIngressTest, ShortFramesOnTheRealUplinkPassToHost)
{
	const Packet reply =
		reply_to(establish(from_guest(make_udp(kGuestA, 62203, kRemote1, 53))));
	expect_short_frames_on_device(dp(), Prog::UpIngress, reply.build(), KVX_R_PASS_HOST);
}

TEST_F(UpIngressTest, MutatedFramesKeepInvariants)
{
	std::vector<Bytes> seeds;
	for (const Packet &g : {from_guest(make_tcp(kGuestA, 62210, kRemote1, 443)),
				from_guest(make_udp(kGuestB, 40211, kRemote2, 53, 30)),
				from_guest(make_icmp_echo(kGuestC, kRemote1, 62212)),
				from_guest(make_ip_proto(kGuestA, kRemote1, kProtoGre))})
		seeds.push_back(reply_to(establish(g)).build());
	Mutator m(0x757075u);
	for (int i = 0; i < 3000; i++) {
		const Bytes in = m.mutate(seeds[m.next(static_cast<std::uint32_t>(seeds.size()))]);
		SCOPED_TRACE("mutation " + std::to_string(i) + ":\n" + hex(in));
		expect_invariants(dp(), Prog::UpIngress, in);
		if (HasFailure())
			return;
	}
}

TEST_F(UpIngressTest, RedirectReachesTheGuestThroughTheBridge)
{
	// For real: both programs attached; the guest's frame goes out (and
	// the bridge learns its MAC on kvxbrp0), the reply comes in on the
	// uplink and must arrive, translated, where the guest's wire ends.
	TcIngress br(topo().bridge_ifindex, dp().prog_fd(Prog::BrIngress));
	TcIngress up(topo().uplink_ifindex, dp().prog_fd(Prog::UpIngress));
	Capture uplink_wire(topo().uplink_peer_ifindex);
	Capture guest_wire(topo().bridge_port_peer_ifindex);
	for (const Packet &g : {from_guest(make_tcp(kGuestA, 62220, kRemote1, 443)),
				from_guest(make_udp(kGuestA, 62221, kRemote1, 53)),
				from_guest(make_icmp_echo(kGuestA, kRemote1, 62222))}) {
		send_frame(topo().bridge_port_peer_ifindex, g.build());
		auto out = uplink_wire.next_ipv4(2000);
		ASSERT_TRUE(out) << "nothing left through the uplink";
		const Packet reply = reply_to(snat(g, src_port_of(g)));
		send_frame(topo().uplink_peer_ifindex, reply.build());
		auto in = guest_wire.next_ipv4(2000);
		ASSERT_TRUE(in) << "nothing reached the guest (proto " << int(g.proto) << ")";
		EXPECT_EQ(diff(*in, dnat(reply, kGuestA, src_port_of(g)).build()), "");
	}
}

// One TCP connection of guest A (port gp_) with kRemote1:443, packet by
// packet through both programs, every one translated.
class UpIngressTcp : public UpIngressTest {
protected:
	int state()
	{
		auto ct = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, gp_, kRemote1, 443));
		return ct ? int(ct->state) : -1;
	}
	// Segments carry each side's next sequence number and acknowledge the
	// other's (conntrack checks RSTs and FINs against them).
	void out(std::uint8_t flags)
	{
		Packet p = from_guest(make_tcp(kGuestA, gp_, kRemote1, 443, flags));
		p.seq = g_;
		p.ack_seq = (flags & kTcpAck) ? r_ : 0;
		g_ += !!(flags & kTcpSyn) + !!(flags & kTcpFin);
		run_case(dp(), Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(p, gp_));
	}
	void in(std::uint8_t flags)
	{
		in_at(flags, r_, KVX_R_XLATE_IN);
		r_ += !!(flags & kTcpSyn) + !!(flags & kTcpFin);
	}
	void in_at(std::uint8_t flags, std::uint32_t seq, kvx_reason want)
	{
		Packet p = from_uplink(make_tcp(kRemote1, 443, Topology::kUplinkAddr, gp_, flags));
		p.seq = seq;
		p.ack_seq = (flags & kTcpAck) ? g_ : 0;
		if (want == KVX_R_XLATE_IN)
			run_up(p, TC_ACT_REDIRECT, want, dnat(p, kGuestA, gp_));
		else
			run_up(p, reason_verdict(want), want);
	}
	std::uint16_t gp_ = 62400;
	std::uint32_t g_ = 0x01020304, r_ = 0x55667788;
};

TEST_F(UpIngressTcp, TcpStateFollowsTheConnection)
{
	// netfilter-like subset (abi.h enum kvx_ct_state): every packet is
	// translated, and the flow's state follows the handshake and teardown.
	out(kTcpSyn);
	EXPECT_EQ(state(), KVX_CT_SYN_SENT);
	in(kTcpSyn | kTcpAck);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	out(kTcpAck);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	out(kTcpFin | kTcpAck);
	EXPECT_EQ(state(), KVX_CT_FIN_WAIT);
	in(kTcpFin | kTcpAck);
	EXPECT_EQ(state(), KVX_CT_TIME_WAIT);
	out(kTcpAck);
	EXPECT_EQ(state(), KVX_CT_TIME_WAIT);
	out(kTcpSyn); // the tuple reused for a new connection
	EXPECT_EQ(state(), KVX_CT_SYN_SENT);
	in(kTcpRst | kTcpAck);
	EXPECT_EQ(state(), KVX_CT_CLOSE);
	auto ct = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, gp_, kRemote1, 443));
	ASSERT_TRUE(ct);
	EXPECT_EQ(ct->pkts_out, 5u);
	EXPECT_EQ(ct->pkts_in, 3u);
}

TEST_F(UpIngressTcp, OffPathRstDoesNotCloseTheConnection)
{
	// An off-path RST (from the LAN, spoofing the remote and guessing the
	// external port) is checked against the guest's receive window
	// (RFC 5961): outside it is dropped; inside but not exact it reaches
	// the guest, whose challenge ACK brings the exact one if it was real,
	// and the flow stays; only the exact one (RCV.NXT) closes the flow.
	// Before, any RST moved an idle SSH flow to CLOSE (10 s).
	gp_ = 62410;
	out(kTcpSyn);
	in(kTcpSyn | kTcpAck);
	out(kTcpAck);
	ASSERT_EQ(state(), KVX_CT_ESTABLISHED);
	in_at(kTcpRst, r_ + 0x40000000, KVX_R_DROP_TCP_WINDOW);
	in_at(kTcpRst, r_ - 2, KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	// One below RCV.NXT (a peer resetting from the sequence number of a
	// FIN the guest acknowledged; Linux's tcp_reset_check takes it then):
	// forwarded, the flow stays.
	in_at(kTcpRst, r_ - 1, KVX_R_XLATE_IN);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	in_at(kTcpFin | kTcpAck, r_ + 0x40000000, KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	in_at(kTcpRst, r_ + 10, KVX_R_XLATE_IN);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	in_at(kTcpRst, r_, KVX_R_XLATE_IN);
	EXPECT_EQ(state(), KVX_CT_CLOSE);
	out(kTcpRst); // the guest answers a stray segment with RST: still closed
	EXPECT_EQ(state(), KVX_CT_CLOSE);
}

TEST_F(UpIngressTest, TcpFlagsThatCannotOpenAFlowAreDropped)
{
	// netfilter opens a TCP entry on a SYN (or a bare ACK: mid-stream
	// pick-up) only; anything else from a guest without a flow is a drop
	// that creates neither a binding nor a flow (else the remote's RST
	// would come back in through it).
	const std::uint16_t gp = 62420;
	const std::uint8_t bad[] = {
		kTcpFin, kTcpRst,	    kTcpRst | kTcpAck, kTcpFin | kTcpAck,
		0,	 kTcpSyn | kTcpFin, kTcpSyn | kTcpRst, kTcpSyn | kTcpAck,
		0xff,
	};
	for (std::uint8_t flags : bad) {
		Packet p = from_guest(make_tcp(kGuestA, gp, kRemote1, 443, flags));
		run_case(dp(), Prog::BrIngress, p, TC_ACT_SHOT, KVX_R_DROP_TCP_NO_FLOW);
		EXPECT_FALSE(dp().ct_lookup(ct_key(kProtoTcp, kGuestA, gp, kRemote1, 443)))
			<< "flags " << int(flags);
	}
	for (std::uint8_t flags : {kTcpSyn, kTcpAck}) {
		const std::uint16_t port = flags == kTcpSyn ? gp + 1 : gp + 2;
		Packet p = from_guest(make_tcp(kGuestA, port, kRemote1, 443, flags));
		run_case(dp(), Prog::BrIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(p, port));
	}
}

TEST_F(UpIngressTest, RepliesFollowTheGuestsCurrentMac)
{
	// A VM re-created with the same address and another MAC, once the old
	// owner has been idle long enough to give the address up: replies go
	// to the MAC its latest packet came from.
	Packet g = from_guest(make_udp(kGuestA, 62401, kRemote1, 53));
	const Packet out = establish(g);
	const Mac new_mac{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
	g.src_mac = new_mac;
	make_owner_idle(dp(), kGuestA);
	run_case(dp(), Prog::BrIngress, g, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(g, 62401));
	Packet reply = reply_to(out);
	Packet want = dnat(reply, kGuestA, 62401);
	want.dst_mac = new_mac;
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, want);
}

TEST_F(UpIngressTest, FlowDisagreeingWithBindingIsBrokenPair)
{
	// The flow says external port 62999, the binding at 62402 says this
	// guest: the pair is inconsistent, so nothing is translated.
	const Packet out = establish(from_guest(make_udp(kGuestA, 62402, kRemote1, 53)));
	const kvx_ct_key k = ct_key(kProtoUdp, kGuestA, 62402, kRemote1, 53);
	auto ct = dp().ct_lookup(k);
	ASSERT_TRUE(ct);
	ct->ext_port = be16(62999);
	dp().ct_update(k, *ct);
	run_up(reply_to(out), TC_ACT_SHOT, KVX_R_DROP_BROKEN_PAIR);
}

TEST_F(UpIngressTest, UdpReplyChecksumComputingToZeroIsSentAsOnes)
{
	const Packet out = establish(from_guest(make_udp(kGuestA, 40010, kRemote1, 53, 20)));
	Packet reply = reply_to(out);
	reply.payload[18] = reply.payload[19] = 0;
	Packet want = dnat(reply, kGuestA, 40010);
	Bytes w = want.build();
	Bytes seg(w.begin() + static_cast<long>(parse(w).l4_off), w.end());
	seg[6] = seg[7] = 0;
	const std::uint16_t c = l4_checksum(want.src, want.dst, kProtoUdp, seg.data(), seg.size());
	reply.payload[18] = static_cast<std::uint8_t>(c >> 8);
	reply.payload[19] = static_cast<std::uint8_t>(c);
	want = dnat(reply, kGuestA, 40010);
	ASSERT_EQ(parse(want.build()).l4_csum, 0xffff) << "test setup";
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, want);
}

TEST_F(UpIngressTest, StaleBindingOnOldAddressNotUsed)
{
	// After the uplink address changed, a packet to the old address is
	// not for us any more (it is the host's business).
	const Packet out = establish(from_guest(make_udp(kGuestA, 62300, kRemote1, 53)));
	set_cfg([](kvx_cfg &c) { c.uplink_addr = be32(ip4(10, 77, 0, 3)); });
	run_up(reply_to(out), TC_ACT_OK, KVX_R_PASS_HOST);
}

// --- the wildcard protocol: only 1:1 mappings, never a guest's binding ---

// The host's own traffic to the uplink address, of every protocol it speaks:
// each must stay the host's.
void expect_uplink_traffic_is_hosts(Datapath &dp)
{
	const std::uint32_t U = Topology::kUplinkAddr;
	for (const Packet &p :
	     {make_tcp(kRemote2, 40000, U, 22), make_udp(kRemote2, 40001, U, 5353),
	      make_icmp_echo(kRemote2, U, 4242), make_ip_proto(kRemote1, U, kProtoGre)}) {
		SCOPED_TRACE("proto " + std::to_string(p.proto));
		run_case(dp, Prog::UpIngress, from_uplink(p), TC_ACT_OK, KVX_R_PASS_HOST);
	}
}

TEST_F(UpIngressTest, GuestProtocolZeroNeverTakesTheHostsTraffic)
{
	// Protocol 0 is the 1:1 mappings' wildcard: an address-only binding
	// of it on the uplink address would look like a 1:1 mapping of the
	// uplink and send the host's SSH to the guest.
	run_case(dp(), Prog::BrIngress, from_guest(make_ip_proto(kGuestA, kRemote1, 0)),
		 TC_ACT_SHOT, KVX_R_DROP_PROTO_ZERO);
	EXPECT_TRUE(dp().bind_entries().empty());
	expect_uplink_traffic_is_hosts(dp());
	// The guest's own traffic is still masqueraded, its port not kept as
	// a 1:1 mapping would keep it.
	const Packet out = establish(from_guest(make_tcp(kGuestA, 40000, kRemote1, 443)));
	EXPECT_GE(out.sport, kNatLo);
}

TEST_F(UpIngressTest, WildcardEntryWithoutOneToOneFlagIsNoMapping)
{
	// A pair under the wildcard protocol that `map add` did not make (an
	// older datapath's protocol-0 binding, left in the pinned table): it
	// neither takes inbound traffic nor turns the guest into a 1:1 guest.
	kvx_bind_val in{}, out{};
	in.addr = be32(kGuestA);
	out.addr = be32(Topology::kUplinkAddr);
	dp().bind_update(bind_key(KVX_BIND_IN, KVX_PROTO_ANY, Topology::kUplinkAddr, 0), in);
	dp().bind_update(bind_key(KVX_BIND_OUT, KVX_PROTO_ANY, kGuestA, 0), out);
	expect_uplink_traffic_is_hosts(dp());
	const Packet o = establish(from_guest(make_tcp(kGuestA, 40000, kRemote1, 443)));
	EXPECT_GE(o.sport, kNatLo);
	// Still nothing for the host's SSH after the guest's flow exists.
	run_up(from_uplink(make_tcp(kRemote1, 443, Topology::kUplinkAddr, 22)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
}

// --- the host's own tunnels (abi.h kvx_hosttun) ---

constexpr std::uint8_t kProtoIpip = 4;
constexpr std::uint32_t kRemote3 = ip4(198, 18, 0, 30);

TEST_F(UpIngressTest, HostTunnelPeerIsNeverBound)
{
	const std::uint32_t U = Topology::kUplinkAddr;
	dp().hosttun_update(kProtoGre, kRemote1, 7);
	// The guest's GRE to the host's tunnel peer: never bound.
	run_case(dp(), Prog::BrIngress, from_guest(make_ip_proto(kGuestA, kRemote1, kProtoGre)),
		 TC_ACT_SHOT, KVX_R_DROP_HOST_TUNNEL);
	EXPECT_TRUE(dp().bind_entries().empty());
	EXPECT_TRUE(dp().ct_entries().empty());
	// Its GRE to another remote is address-only NAT as before ...
	const Packet out = establish(from_guest(make_ip_proto(kGuestA, kRemote2, kProtoGre)));
	const Packet back = reply_to(out);
	run_up(back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(back, kGuestA, 0));
	// ... and the tunnel's packets stay the host's under that binding.
	run_up(from_uplink(make_ip_proto(kRemote1, U, kProtoGre)), TC_ACT_OK, KVX_R_PASS_HOST);
	// GRE from a remote no one asked for (a tunnel kvmxdp does not know,
	// say): the host's, as before the guest's binding, not filtered away.
	run_up(from_uplink(make_ip_proto(kRemote3, U, kProtoGre)), TC_ACT_OK, KVX_R_PASS_HOST);
}

TEST_F(UpIngressTest, TunnelMadeAfterTheGuestsFlowWins)
{
	const std::uint32_t U = Topology::kUplinkAddr;
	const Packet g = from_guest(make_ip_proto(kGuestA, kRemote2, kProtoGre));
	establish(g);
	dp().hosttun_update(kProtoGre, kRemote2, 8);
	run_up(from_uplink(make_ip_proto(kRemote2, U, kProtoGre)), TC_ACT_OK, KVX_R_PASS_HOST);
	run_case(dp(), Prog::BrIngress, g, TC_ACT_SHOT, KVX_R_DROP_HOST_TUNNEL);
}

TEST_F(UpIngressTest, TunnelWithoutPeerCoversEveryRemote)
{
	dp().hosttun_update(kProtoIpip, 0, 9);
	for (std::uint32_t r : {kRemote1, kRemote2})
		run_case(dp(), Prog::BrIngress, from_guest(make_ip_proto(kGuestA, r, kProtoIpip)),
			 TC_ACT_SHOT, KVX_R_DROP_HOST_TUNNEL);
	// Other protocols and the guest's TCP are not affected.
	establish(from_guest(make_ip_proto(kGuestA, kRemote1, kProtoGre)));
	establish(from_guest(make_tcp(kGuestA, 62000, kRemote1, 443)));
}

// --- martian sources (what rp_filter drops before an iptables DNAT) ---

TEST_F(UpIngressTest, MartianSourcesDroppedAndCounted)
{
	add_port_forward(dp(), kProtoTcp, Topology::kUplinkAddr, 2222, kGuestA, 22);
	add_one_to_one(dp(), kMappedAddr, kGuestB, KVX_EXT_F_ARP);
	const std::uint32_t U = Topology::kUplinkAddr;
	for (std::uint32_t src :
	     {kGuestC, ip4(192, 168, 122, 0), ip4(127, 0, 0, 1), U, kMappedAddr, ip4(0, 0, 0, 0),
	      ip4(0, 1, 2, 3), ip4(224, 0, 0, 1), ip4(239, 1, 1, 1), ip4(255, 255, 255, 255)}) {
		SCOPED_TRACE(ip4_str(src));
		for (std::uint32_t dst : {U, kMappedAddr}) {
			const std::uint16_t dport = dst == U ? 2222 : 22;
			run_up(from_uplink(make_tcp(src, 5555, dst, dport)), TC_ACT_SHOT,
			       KVX_R_DROP_MARTIAN_IN);
			const Bytes in = from_uplink(make_tcp(src, 5555, dst, dport)).build();
			const RunResult x = dp().run(Prog::XdpUp, in, ingress_ifindex(Prog::XdpUp));
			EXPECT_EQ(x.verdict, XDP_PASS) << "XDP leaves martians to TC";
		}
	}
	EXPECT_TRUE(dp().ct_entries().empty()) << "no flow from a martian";
	// A real LAN host still gets through both mappings.
	const Packet ok = from_uplink(make_tcp(kRemote1, 5555, U, 2222));
	run_up(ok, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat_unknown_mac(ok, kGuestA, 22));
	// Martian sources to an address kvmxdp does not translate are the
	// host's to judge (its rp_filter): untouched.
	run_up(from_uplink(make_tcp(ip4(127, 0, 0, 1), 5555, Topology::kOtherAddr, 22)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
}

// The host's other addresses (a VPN's, a container bridge's: kvx_hostaddr)
// as sources from the uplink open no flow to a forward, a 1:1 address or
// an EIF binding (the kernel's input route drops a local source before an
// iptables DNAT); the guest's own flows and other LAN hosts are not
// affected.
TEST_F(UpIngressTest, HostsOwnAddressesOpenNoFlowFromOutside)
{
	const std::uint32_t vpn = ip4(10, 8, 0, 2), docker = ip4(172, 17, 0, 1);
	dp().hostaddr_update(vpn);
	dp().hostaddr_update(docker);
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	add_port_forward(dp(), kProtoTcp, Topology::kUplinkAddr, 2222, kGuestA, 22);
	add_one_to_one(dp(), kMappedAddr, kGuestB, KVX_EXT_F_ARP);
	const Packet out = establish(from_guest(make_udp(kGuestC, 62001, kRemote1, 53)));
	const std::uint32_t U = Topology::kUplinkAddr;
	for (std::uint32_t src : {vpn, docker}) {
		SCOPED_TRACE(ip4_str(src));
		run_up(from_uplink(make_tcp(src, 5555, U, 2222)), TC_ACT_SHOT,
		       KVX_R_DROP_MARTIAN_IN);
		run_up(from_uplink(make_udp(src, 5555, kMappedAddr, 53)), TC_ACT_SHOT,
		       KVX_R_DROP_MARTIAN_IN);
		// EIF: guest C's binding takes any remote, but not the host.
		run_up(from_uplink(make_udp(src, 53, U, src_port_of(out))), TC_ACT_SHOT,
		       KVX_R_DROP_MARTIAN_IN);
		const Bytes in = from_uplink(make_tcp(src, 5555, U, 2222)).build();
		EXPECT_NE(dp().run(Prog::XdpUp, in, ingress_ifindex(Prog::XdpUp)).verdict,
			  XDP_REDIRECT)
			<< "XDP never delivers one either";
	}
	EXPECT_EQ(dp().ct_entries().size(), 1u) << "only guest C's own flow";
	// A LAN host, and the guest's flow's replies, still come in.
	const Packet ok = from_uplink(make_tcp(kRemote1, 5555, U, 2222));
	run_up(ok, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat_unknown_mac(ok, kGuestA, 22));
	const Packet reply = reply_to(out);
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply, kGuestC, 62001));
}

// An ICMP error about a guest's flow from one of the host's own addresses
// or subnet broadcasts (kvx_hostaddr) is a martian too: no router on the
// uplink has it, and a forged one would tear the guest's connection down.
TEST_F(UpIngressTest, HostsOwnAddressesSendNoIcmpErrorToAGuest)
{
	const std::uint32_t docker = ip4(172, 17, 0, 1), bcast = ip4(10, 77, 0, 255);
	dp().hostaddr_update(docker);
	dp().hostaddr_update(bcast);
	const Packet g = from_guest(make_udp(kGuestA, 40060, kRemote1, 53));
	const Packet out = establish(g);
	const std::uint32_t U = Topology::kUplinkAddr;
	for (std::uint32_t src : {docker, bcast}) {
		SCOPED_TRACE(ip4_str(src));
		run_up(from_uplink(make_icmp_error(src, U, kIcmpDestUnreach, 3, out.build())),
		       TC_ACT_SHOT, KVX_R_DROP_MARTIAN_IN);
	}
	// A router's still reaches the guest, its own packet quoted.
	Packet err = from_uplink(
		make_icmp_error(Topology::kGatewayAddr, U, kIcmpDestUnreach, 3, out.build()));
	Packet quoted = g;
	quoted.ttl = out.ttl;
	Packet want = from_uplink(make_icmp_error(Topology::kGatewayAddr, kGuestA, kIcmpDestUnreach,
						  3, quoted.build()));
	want.ttl = err.ttl - 1;
	want.src_mac = Topology::kBridgeMac;
	want.dst_mac = kGuestAMac;
	run_up(err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
}

// --- the uplink's network overlaps the guest subnet (KVX_CFG_F_OVERLAP) ---

TEST_F(UpIngressTest, OverlapPassesEverythingToTheKernel)
{
	const Packet out = establish(from_guest(make_udp(kGuestA, 62001, kRemote1, 53)));
	set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_OVERLAP; });
	// The host's own LAN traffic now "to the guest subnet": the kernel's.
	run_up(from_uplink(make_tcp(kRemote1, 40000, kGuestB, 22)), TC_ACT_OK, KVX_R_PASS_OVERLAP);
	// Nothing translated either way, even a known flow.
	run_up(reply_to(out), TC_ACT_OK, KVX_R_PASS_OVERLAP);
	run_case(dp(), Prog::BrIngress, from_guest(make_udp(kGuestA, 62001, kRemote1, 53)),
		 TC_ACT_OK, KVX_R_PASS_OVERLAP);
	set_cfg([](kvx_cfg &c) { c.flags &= ~KVX_CFG_F_OVERLAP; });
	run_up(reply_to(out), TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(reply_to(out), kGuestA, 62001));
}

// --- static mappings (abi.h: KVX_BIND_F_STATIC, KVX_BIND_F_ONE_TO_ONE, kvx_extaddr) ---

TEST_F(UpIngressTest, PortForwardOpensInboundFlows)
{
	add_port_forward(dp(), kProtoTcp, Topology::kUplinkAddr, 8080, kGuestA, 80);
	// No EIF needed: a static mapping accepts new inbound connections.
	const Packet syn = from_uplink(make_tcp(kRemote2, 5555, Topology::kUplinkAddr, 8080));
	run_up(syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat_unknown_mac(syn, kGuestA, 80));
	auto ct = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 80, kRemote2, 5555));
	ASSERT_TRUE(ct);
	EXPECT_EQ(ct->flags & (KVX_CT_F_INBOUND | KVX_CT_F_STATIC),
		  KVX_CT_F_INBOUND | KVX_CT_F_STATIC);
	EXPECT_EQ(ct->ext_addr, be32(Topology::kUplinkAddr));
	EXPECT_EQ(ct->ext_port, be16(8080));

	// The guest answers from its forwarded port: it leaves as 8080.
	const Packet synack = from_guest(make_tcp(kGuestA, 80, kRemote2, 5555, kTcpSyn | kTcpAck));
	run_case(dp(), Prog::BrIngress, synack, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		 snat(synack, 8080));
	// Now its MAC is known: full L2 rewrite.
	const Packet ack =
		from_uplink(make_tcp(kRemote2, 5555, Topology::kUplinkAddr, 8080, kTcpAck));
	run_up(ack, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(ack, kGuestA, 80));
	// Another remote is welcome too; other ports are still the host's.
	const Packet syn3 = from_uplink(make_tcp(kRemote1, 6000, Topology::kUplinkAddr, 8080));
	run_up(syn3, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(syn3, kGuestA, 80));
	run_up(from_uplink(make_tcp(kRemote1, 6000, Topology::kUplinkAddr, 8081)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	run_up(from_uplink(make_udp(kRemote1, 6000, Topology::kUplinkAddr, 8080)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
	EXPECT_TRUE(dp().bind_lookup(bind_key(KVX_BIND_IN, kProtoTcp, Topology::kUplinkAddr, 8080)))
		<< "static pairs are never released by the datapath";
}

TEST_F(UpIngressTest, OneToOneMapsTheWholeAddress)
{
	add_one_to_one(dp(), kMappedAddr, kGuestA, KVX_EXT_F_ARP);
	const Packet syn = from_uplink(make_tcp(kRemote1, 5555, kMappedAddr, 22));
	run_up(syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat_unknown_mac(syn, kGuestA, 22));
	const Packet ping = from_uplink(make_icmp_echo(kRemote1, kMappedAddr, 77));
	run_up(ping, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat_unknown_mac(ping, kGuestA, 77));
	const Packet gre = from_uplink(make_ip_proto(kRemote2, kMappedAddr, kProtoGre));
	run_up(gre, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat_unknown_mac(gre, kGuestA, 0));
	auto ct = dp().ct_lookup(ct_key(kProtoTcp, kGuestA, 22, kRemote1, 5555));
	ASSERT_TRUE(ct);
	EXPECT_EQ(ct->flags & (KVX_CT_F_INBOUND | KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE),
		  KVX_CT_F_INBOUND | KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);
	EXPECT_EQ(ct->ext_addr, be32(kMappedAddr));
	EXPECT_EQ(ct->ext_port, be16(22));
	// The uplink's own address is unaffected.
	run_up(from_uplink(make_tcp(kRemote1, 5555, Topology::kUplinkAddr, 22)), TC_ACT_OK,
	       KVX_R_PASS_HOST);
}

TEST_F(UpIngressTest, SuspendedMappedAddressIsLeftAlone)
{
	add_one_to_one(dp(), kMappedAddr, kGuestA, KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED);
	run_up(from_uplink(make_tcp(kRemote1, 5555, kMappedAddr, 22)), TC_ACT_OK,
	       KVX_R_PASS_SUSPENDED);
}

// An ARP request from the gateway for target.
Packet arp_request(std::uint32_t target)
{
	return make_arp(1, Topology::kGatewayMac, Topology::kGatewayAddr, Mac{}, target);
}

TEST_F(UpIngressTest, ProxyArpForMappedAddress)
{
	add_one_to_one(dp(), kMappedAddr, kGuestA, KVX_EXT_F_ARP);
	const Packet req = arp_request(kMappedAddr);
	// The reply: to the asker, from the uplink MAC.
	const Packet rep = make_arp(2, Topology::kUplinkMac, kMappedAddr, Topology::kGatewayMac,
				    Topology::kGatewayAddr);
	run_up(req, TC_ACT_REDIRECT, KVX_R_ARP_REPLY, rep);

	// Not for a mapped address, or without the ARP flag, or suspended:
	// the host's business.
	run_up(arp_request(Topology::kUplinkAddr), TC_ACT_OK, KVX_R_PASS_NOT_IP);
	run_up(arp_request(ip4(10, 77, 0, 51)), TC_ACT_OK, KVX_R_PASS_NOT_IP);
	dp().extaddr_update(kMappedAddr, 0);
	run_up(req, TC_ACT_OK, KVX_R_PASS_NOT_IP);
	dp().extaddr_update(kMappedAddr, KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED);
	run_up(req, TC_ACT_OK, KVX_R_PASS_NOT_IP);
	// An ARP reply is never answered.
	Packet reply_in = req;
	reply_in.payload[7] = 2;
	dp().extaddr_update(kMappedAddr, KVX_EXT_F_ARP);
	run_up(reply_in, TC_ACT_OK, KVX_R_PASS_NOT_IP);
}

// --- RELATED ICMP errors (RFC 5508), matched by the header they quote ---

// The error a router (src) sends about the translated packet `out`, and
// what the guest must get: outer destination, quoted source (address and
// port/echo id) back to the guest's, every checksum right (from scratch).
struct ErrorCase {
	std::string name;
	std::function<Packet()> guest_pkt;
	std::uint8_t type, code;
	std::size_t quote_len; // bytes of the quoted datagram
	std::uint16_t mtu;
};

void PrintTo(const ErrorCase &c, std::ostream *os)
{
	*os << c.name;
}

class UpIngressErrors : public UpIngressTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(UpIngressErrors, TranslatedToGuest)
{
	const ErrorCase &tc = GetParam();
	const Packet g = from_guest(tc.guest_pkt());
	const Packet out = establish(g); // as it left the uplink (TTL-1)
	Packet err =
		from_uplink(make_icmp_error(Topology::kGatewayAddr, Topology::kUplinkAddr, tc.type,
					    tc.code, out.build(), tc.quote_len, tc.mtu));
	err.ttl = 61;
	// The guest sees its own packet quoted, as it was when it left.
	Packet quoted = g;
	quoted.ttl = out.ttl;
	Packet want = from_uplink(make_icmp_error(Topology::kGatewayAddr, kGuestA, tc.type, tc.code,
						  quoted.build(), tc.quote_len, tc.mtu));
	want.ttl = 60;
	want.src_mac = Topology::kBridgeMac;
	want.dst_mac = kGuestAMac;
	run_up(err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
}

std::vector<ErrorCase> error_cases()
{
	const std::uint32_t A = kGuestA, R = kRemote1;
	return {
		{"FragNeededForTcp",
		 [=] {
			 Packet p = make_tcp(A, 40040, R, 443, kTcpAck);
			 p.payload = pattern(1300);
			 return p;
		 },
		 kIcmpDestUnreach, 4, 576 - 28, 1280},
		{"PortUnreachableForUdp", [=] { return make_udp(A, 40041, R, 53, 30); },
		 kIcmpDestUnreach, 3, 576 - 28, 0},
		{"PortUnreachableForUdpWithoutChecksum",
		 [=] {
			 return with(make_udp(A, 40042, R, 53, 30),
				     [](Packet &p) { p.udp_no_csum = true; });
		 },
		 kIcmpDestUnreach, 3, 576 - 28, 0},
		{"TimeExceededForEcho", [=] { return make_icmp_echo(A, R, 4043); },
		 kIcmpTimeExceeded, 0, 576 - 28, 0},
		{"TimeExceededForTcpQuoting8Bytes", [=] { return make_tcp(A, 40044, R, 443); },
		 kIcmpTimeExceeded, 0, 20 + 8, 0},
		{"HostUnreachableForUdpQuoting8Bytes",
		 [=] { return make_udp(A, 40045, R, 53, 30); }, kIcmpDestUnreach, 1, 20 + 8, 0},
		{"ParameterProblemForTcpWithOptions",
		 [=] {
			 return with(make_tcp(A, 40046, R, 443), [](Packet &p) {
				 p.ip_options = {0x94, 0x04, 0x00, 0x00};
			 });
		 },
		 12, 0, 576 - 28, 0},
	};
}

INSTANTIATE_TEST_SUITE_P(Table, UpIngressErrors, ::testing::ValuesIn(error_cases()),
			 [](const ::testing::TestParamInfo<ErrorCase> &i) { return i.param.name; });

TEST_F(UpIngressTest, ErrorsNotAboutAGuestFlowAreTheHosts)
{
	const Packet out = establish(from_guest(make_udp(kGuestA, 40050, kRemote1, 53)));
	// About the host's own packet (no binding).
	Packet host_pkt = from_uplink(make_udp(Topology::kUplinkAddr, 50000, kRemote1, 53));
	run_up(from_uplink(make_icmp_error(kRemote1, Topology::kUplinkAddr, kIcmpDestUnreach, 3,
					   host_pkt.build())),
	       TC_ACT_OK, KVX_R_PASS_HOST);
	// About the bound port but another remote: no flow for it.
	Packet other = out;
	other.dst = kRemote2;
	run_up(from_uplink(make_icmp_error(kRemote2, Topology::kUplinkAddr, kIcmpDestUnreach, 3,
					   other.build())),
	       TC_ACT_OK, KVX_R_PASS_HOST);
	// Quoting less than 8 bytes of the UDP header.
	run_up(from_uplink(make_icmp_error(kRemote1, Topology::kUplinkAddr, kIcmpDestUnreach, 3,
					   out.build(), 20 + 4)),
	       TC_ACT_OK, KVX_R_PASS_HOST);
	// An error about an error is never translated.
	Packet inner_err = from_uplink(
		make_icmp_error(Topology::kUplinkAddr, kRemote1, kIcmpDestUnreach, 3, out.build()));
	run_up(from_uplink(make_icmp_error(kRemote1, Topology::kUplinkAddr, kIcmpDestUnreach, 3,
					   inner_err.build())),
	       TC_ACT_OK, KVX_R_PASS_HOST);
}

TEST_F(UpIngressTest, MssClampedOnInboundSynAck)
{
	const Packet out = establish(from_guest(make_tcp(kGuestA, 62900, kRemote1, 443)));
	set_cfg([](kvx_cfg &c) { c.clamp_mss = 1400; });
	Packet synack = reply_to(out);
	synack.tcp_options = {0x02, 0x04, 0x05, 0xb4};
	Packet want = dnat(synack, kGuestA, 62900);
	want.tcp_options = {0x02, 0x04, 0x05, 0x78};
	run_up(synack, TC_ACT_REDIRECT, KVX_R_XLATE_IN, want);
}

TEST_F(UpIngressTest, MssClampedOnInboundSynAckAtOddOffset)
{
	// After one NOP the value sits at an odd offset and straddles two of
	// the checksum's 16-bit words: its checksum update is byte-swapped.
	const Packet out = establish(from_guest(make_tcp(kGuestA, 62901, kRemote1, 443)));
	set_cfg([](kvx_cfg &c) { c.clamp_mss = 1400; });
	Packet synack = reply_to(out);
	synack.tcp_options = {0x01, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x00};
	Packet want = dnat(synack, kGuestA, 62901);
	want.tcp_options = {0x01, 0x02, 0x04, 0x05, 0x78, 0x01, 0x01, 0x00};
	run_up(synack, TC_ACT_REDIRECT, KVX_R_XLATE_IN, want);
}

} // namespace
} // namespace kvmxdp::test
