// The XDP fast path for NAT66 (kvx_xdp_port6 / kvx_xdp_up6, tail-called by
// kvx_xdp_port / kvx_xdp_up for IPv6 frames; bpf/lib/xdp6.h) against the TC
// programs it stands in front of, every map shared as the loader shares
// them:
// - byte identity: a TCP connection and UDP datagrams of every length class
//   of the checksum walk come out of XDP byte for byte as TC translates them
//   from the same state, with checksums valid by pkt.cpp's independent
//   code, and leave the same tables;
// - hand-off: what XDP leaves to TC passes unchanged, counted by why (or
//   uncounted when kvmxdp does not translate it at all), with no table
//   touched, and TC then does with it what it always does;
// - the drops XDP decides itself, with TC's reasons; an empty program slot.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <algorithm>
#include <sstream>

#include "fixture.hpp"
#include "kvmxdp/ct_rules.h"
#include "nat66_pkt.hpp"
#include "xdp_fixture.hpp"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

std::string addr6_str(const __be32 *a)
{
	char buf[INET6_ADDRSTRLEN] = {};
	::inet_ntop(AF_INET6, a, buf, sizeof(buf));
	return buf;
}

// kvx_ct6, kvx_bind6 and the address owners (kvx_nd) as text, one sorted
// line per entry; with_times as xdp_test.cpp's tables().
std::string tables6(const Datapath &d, bool with_times)
{
	std::vector<std::string> lines;
	for (const auto &[k, v] : d.bind6_entries()) {
		std::ostringstream o;
		o << "bind " << (k.dir == KVX_BIND_IN ? "IN " : "OUT ") << int(k.proto) << " ["
		  << addr6_str(k.addr) << "]:" << ntohs(k.port) << " -> [" << addr6_str(v.addr)
		  << "]:" << ntohs(v.bind.port) << " flags " << v.bind.flags << " mac "
		  << mac_str(Mac{v.bind.guest_mac[0], v.bind.guest_mac[1], v.bind.guest_mac[2],
				 v.bind.guest_mac[3], v.bind.guest_mac[4], v.bind.guest_mac[5]});
		if (with_times)
			o << " used " << v.bind.last_used_ns;
		lines.push_back(o.str());
	}
	for (const auto &[k, v] : d.ct6_entries()) {
		std::ostringstream o;
		o << "ct " << int(k.proto) << " [" << addr6_str(k.int_addr)
		  << "]:" << ntohs(k.int_port) << " [" << addr6_str(k.rem_addr)
		  << "]:" << ntohs(k.rem_port) << " ext [" << addr6_str(v.ext_addr)
		  << "]:" << ntohs(v.ct.ext_port) << " state " << int(v.ct.state) << " flags "
		  << int(v.ct.flags) << " out " << v.ct.pkts_out << " in " << v.ct.pkts_in
		  << " slot " << v.ct.slot;
		if (with_times)
			o << " seen " << v.ct.last_seen_ns;
		lines.push_back(o.str());
	}
	for (const Ip6 *g : {&kGuest6A, &kGuest6B}) {
		if (const auto v = d.nd_lookup(*g)) {
			std::ostringstream o;
			o << "owner " << ip6_str(*g) << " "
			  << mac_str(Mac{v->mac[0], v->mac[1], v->mac[2], v->mac[3], v->mac[4],
					 v->mac[5]})
			  << " state " << int(v->state);
			if (with_times)
				o << " seen " << v->last_seen_ns;
			lines.push_back(o.str());
		}
	}
	std::sort(lines.begin(), lines.end());
	std::string s;
	for (const auto &l : lines)
		s += l + "\n";
	return s;
}

// What a sender that leaves the checksum to offload puts in the field:
// the pseudo-header sum, folded and not complemented.
Packet6 offloaded6(Packet6 p)
{
	const Bytes f = p.build();
	const Parsed6 q = parse6(f);
	Bytes ph(40, 0);
	std::copy(q.src.begin(), q.src.end(), ph.begin());
	std::copy(q.dst.begin(), q.dst.end(), ph.begin() + 16);
	const std::size_t len = q.ip_end - q.l4_off;
	ph[34] = static_cast<std::uint8_t>(len >> 8);
	ph[35] = static_cast<std::uint8_t>(len);
	ph[39] = q.proto;
	p.l4_csum = static_cast<std::uint16_t>(~csum_fold(csum_partial(ph.data(), ph.size())));
	return p;
}

class Xdp6Test : public XdpTest {
protected:
	void SetUp() override
	{
		XdpTest::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		fresh6(nullptr, nullptr);
	}

	// fresh() with NAT66 on (cfg6 edited) and the IPv6 guests' MACs on
	// the port XDP runs on (kvxbrp0), as the port guard places them.
	void fresh6(const std::function<void(kvx_cfg6 &)> &edit,
		    const std::function<void(Datapath &)> &setup,
		    const std::function<void(kvx_cfg &)> &edit_cfg = nullptr)
	{
		fresh(edit_cfg, nullptr);
		kvx_cfg6 c = nat66_cfg();
		if (edit)
			edit(c);
		dp().set_cfg6(c);
		for (const Ip6 *g : {&kGuest6A, &kGuest6B})
			dp().brport_set(mac_of(*g),
					static_cast<std::uint32_t>(topo().bridge_port_ifindex));
		if (setup)
			setup(dp());
	}

	// Sends p (from its guest) out through TC: a flow as TC makes it.
	static void tc_out6(Datapath &d, const Packet6 &p)
	{
		const RunResult r = d.run(Prog::BrIngress, p.build(), topo().bridge_ifindex);
		ASSERT_EQ(r.verdict, TC_ACT_REDIRECT) << "setting up a flow through kvx_br6";
	}

	// A guest's MAC learnt on kvxbrp0, as kvx_xdp_port6 would.
	static void learn6(Datapath &d, const Ip6 &guest)
	{
		kvx_xfdb_val v{};
		v.ifindex = static_cast<__u32>(topo().bridge_port_ifindex);
		v.seen_ns = boot_ns();
		d.xfdb_update(mac_of(guest), v);
	}

	struct Step6 {
		bool inbound;
		Packet6 pkt;
	};

	// The steps through TC on a fresh state, then through XDP on the same
	// fresh state: every output, verdict class, counter and the final
	// tables alike, every output's checksums valid.
	void expect_identical6(const std::vector<Step6> &steps,
			       const std::function<void(Datapath &)> &setup = nullptr,
			       const std::function<void(kvx_cfg &)> &edit_cfg = nullptr)
	{
		std::vector<Shot> tc, xdp;
		fresh6(nullptr, setup, edit_cfg);
		for (const Step6 &s : steps)
			tc.push_back(shoot(s.inbound ? Prog::UpIngress : Prog::BrIngress,
					   s.pkt.build()));
		const std::string tc_tables = tables6(dp(), false);
		fresh6(nullptr, setup, edit_cfg);
		for (const Step6 &s : steps)
			xdp.push_back(
				shoot(s.inbound ? Prog::XdpUp : Prog::XdpPort, s.pkt.build()));
		const std::string xdp_tables = tables6(dp(), false);
		for (std::size_t i = 0; i < steps.size(); i++) {
			const Step6 &s = steps[i];
			const Bytes in = s.pkt.build();
			SCOPED_TRACE("step " + std::to_string(i) +
				     (s.inbound ? " (inbound, " : " (outbound, ") +
				     std::to_string(in.size()) + "-byte frame)");
			EXPECT_EQ(verdict_name(tc[i].verdict), std::string("TC_ACT_REDIRECT"));
			EXPECT_EQ(tc[i].counted,
				  counted(s.inbound ? KVX_R_XLATE_IN : KVX_R_XLATE_OUT, in.size()));
			EXPECT_EQ(xdp_verdict_name(xdp[i].verdict), std::string("XDP_REDIRECT"));
			EXPECT_EQ(xdp[i].counted,
				  counted(s.inbound ? KVX_R_XDP_XLATE_IN : KVX_R_XDP_XLATE_OUT,
					  in.size()));
			EXPECT_EQ(diff(xdp[i].out, tc[i].out), "") << "XDP (got) vs TC (want)";
			EXPECT_EQ(check_checksums(xdp[i].out), "") << "XDP output";
		}
		EXPECT_EQ(xdp_tables, tc_tables) << "tables after XDP (got) and after TC (want)";
		EXPECT_FALSE(tc_tables.empty());
	}

	// XDP hands in to TC: unchanged, counted under reason (nullopt:
	// uncounted), no table touched.
	void expect_handed(Prog prog, const Bytes &in, std::optional<kvx_reason> reason)
	{
		const std::string before = tables6(dp(), true);
		const std::size_t xfdb_before = dp().xfdb_size();
		const Shot x = shoot(prog, in);
		EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_PASS"));
		EXPECT_EQ(x.counted, reason ? counted(*reason, in.size()) : "");
		EXPECT_EQ(diff(x.out, in), "") << "XDP must hand the frame over unchanged";
		EXPECT_EQ(tables6(dp(), true), before) << "XDP must hand over before any table";
		EXPECT_EQ(dp().xfdb_size(), xfdb_before);
	}
};

// A connection's packets, consistent sequence numbers both ways.
std::vector<Packet6> tcp_connection6(std::uint16_t gp, std::uint16_t ext)
{
	std::vector<Packet6> v;
	std::uint32_t g = 0x01020304, r = 0x50000000;
	auto out = [&](std::uint8_t f, std::size_t len) {
		Packet6 p = from_guest6(make_tcp6(kGuest6A, gp, kRemote6A, 443, f));
		p.seq = g;
		p.ack_seq = f & kTcpAck ? r : 0;
		p.payload = pattern(len, static_cast<std::uint8_t>(len));
		g += static_cast<std::uint32_t>(len) + !!(f & (kTcpSyn | kTcpFin));
		v.push_back(p);
	};
	auto in = [&](std::uint8_t f, std::size_t len) {
		Packet6 p = from_uplink6(make_tcp6(kRemote6A, 443, kUplink6, ext, f));
		p.hop_limit = 60;
		p.seq = r;
		p.ack_seq = g;
		p.payload = pattern(len, static_cast<std::uint8_t>(len + 1));
		r += static_cast<std::uint32_t>(len) + !!(f & (kTcpSyn | kTcpFin));
		v.push_back(p);
	};
	out(kTcpSyn, 0);
	in(kTcpSyn | kTcpAck, 0);
	out(kTcpAck, 0);
	out(kTcpAck | kTcpPsh, 517);
	in(kTcpAck | kTcpPsh, 1440);
	in(kTcpAck | kTcpPsh, 1);
	out(kTcpFin | kTcpAck, 0);
	in(kTcpFin | kTcpAck, 0);
	out(kTcpAck, 0);
	return v;
}

// A whole TCP connection, the guest's own port kept (free in the
// pool): every packet through XDP as TC translates it; the flow ends
// closed in both runs alike.
TEST_F(Xdp6Test, TcpConnectionSameBytesAsTc)
{
	std::vector<Step6> steps;
	for (const Packet6 &p : tcp_connection6(62000, 62000))
		steps.push_back({p.dst == kUplink6, p});
	expect_identical6(steps);
	// And as expected from scratch: the SYN from the uplink's address.
	fresh6(nullptr, nullptr);
	const Shot x = shoot(Prog::XdpPort, steps[0].pkt.build());
	EXPECT_EQ(diff(x.out, snat6(steps[0].pkt, 62000).build()), "");
	const Shot y = shoot(Prog::XdpUp, steps[1].pkt.build());
	EXPECT_EQ(diff(y.out, dnat6(steps[1].pkt, kGuest6A, 62000).build()), "");
	const auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_ESTABLISHED);
	EXPECT_EQ(kvx_ct_slot_read(flows[0].second.ct.slot, dp().cfg().guest_seed),
		  dp().mac_slot(mac_of(kGuest6A)))
		<< "the flow is counted in its guest's slot, as TC counts it";
}

// UDP datagrams of every length class of the checksum walk (256-byte
// blocks, then 128..4-byte pieces and a 0-3 byte tail), both ways: the
// IPv6 pseudo-header summed where it sits in the frame.
TEST_F(Xdp6Test, EveryUdpLengthSameBytesAsTc)
{
	for (std::size_t len : {0,  1,	 2,   3,   4,	5,   7,	  8,   15,   16,   31,	 32,  63,
				64, 127, 128, 255, 256, 257, 511, 777, 1023, 1024, 1400, 1452}) {
		SCOPED_TRACE("payload " + std::to_string(len));
		Packet6 q = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, len));
		Packet6 r = from_uplink6(make_udp6(kRemote6A, 53, kUplink6, 62001, len));
		r.payload = pattern(len, 0x77);
		expect_identical6({{false, q}, {true, r}, {false, q}});
		if (HasFailure())
			return;
	}
}

// A checksum the translation computes to zero, sent as 0xffff (UDP's zero
// means "no checksum", invalid in IPv6, and is never made; RFC 768): a
// payload word found by search makes the translated sum all ones.
TEST_F(Xdp6Test, ChecksumComputedZeroSameBytesAsTc)
{
	bool found = false;
	for (std::uint32_t w = 0; w < 0x10000 && !found; w++) {
		Packet6 q = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 16));
		q.payload[0] = static_cast<std::uint8_t>(w >> 8);
		q.payload[1] = static_cast<std::uint8_t>(w);
		const Bytes want = snat6(q, 62001).build();
		const Parsed6 o = parse6(want);
		if (want[o.l4_off + 6] != 0xff || want[o.l4_off + 7] != 0xff)
			continue;
		found = true;
		expect_identical6({{false, q}});
		fresh6(nullptr, nullptr);
		EXPECT_EQ(diff(shoot(Prog::XdpPort, q.build()).out, want), "");
	}
	EXPECT_TRUE(found) << "no payload word gave a zero sum: the search proves nothing";
}

// Hand-offs from a guest: TC's classes, before any table.
TEST_F(Xdp6Test, GuestFramesXdpLeavesToTc)
{
	const Packet6 udp = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 40));
	struct Case {
		const char *name;
		Packet6 p;
		std::optional<kvx_reason> reason;
	};
	std::vector<Case> cases;
	cases.push_back({"checksum left to offload",
			 offloaded6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443))),
			 KVX_R_XDP_TO_TC_CSUM});
	{
		Packet6 p = udp;
		p.l4_csum = 0x1234;
		cases.push_back({"wrong checksum", p, KVX_R_XDP_TO_TC_CSUM});
	}
	cases.push_back(
		{"echo request", from_guest6(make_echo6(kGuest6A, kRemote6A, 7)), KVX_R_XDP_TO_TC});
	{
		Packet6 p = udp;
		p.ext = {ext_options(60)};
		cases.push_back({"destination options", p, KVX_R_XDP_TO_TC});
	}
	{
		Packet6 p = udp;
		p.ext = {ext_fragment(0, true)};
		cases.push_back({"first fragment", p, KVX_R_XDP_TO_TC});
	}
	{
		Packet6 p = udp;
		p.hop_limit = 1;
		cases.push_back({"hop limit 1", p, KVX_R_XDP_TO_TC});
	}
	{
		Packet6 p = udp;
		p.udp_no_csum = true;
		cases.push_back({"zero UDP checksum", p, KVX_R_XDP_TO_TC});
	}
	// Not translated at all: the host's, or TC's to drop and count.
	{
		Packet6 p = udp;
		p.src = ip6("fe80::5054:ff:fe00:60a");
		cases.push_back({"link-local source", p, std::nullopt});
	}
	{
		Packet6 p = udp;
		p.dst = ip6("ff02::1:3");
		cases.push_back({"multicast", p, std::nullopt});
	}
	{
		Packet6 p = udp;
		p.src = ip6("fd43::a");
		cases.push_back({"source outside the prefix", p, std::nullopt});
	}
	{
		Packet6 p = udp;
		p.dst = kGuest6B;
		cases.push_back({"to another guest", p, std::nullopt});
	}
	{
		Packet6 p = udp;
		p.dst = kUplink6;
		cases.push_back({"to the uplink's address", p, std::nullopt});
	}
	{
		Packet6 p = udp;
		p.dst_mac = Mac{0x52, 0x54, 0x00, 0x00, 0x06, 0x0b};
		cases.push_back({"not to the host's MAC", p, std::nullopt});
	}
	for (const Case &c : cases) {
		SCOPED_TRACE(c.name);
		fresh6(nullptr, nullptr);
		expect_handed(Prog::XdpPort, c.p.build(), c.reason);
	}

	// Relay mode is TC's alone.
	fresh6([](kvx_cfg6 &c) { c.mode = KVX_V6_RELAY; }, nullptr);
	expect_handed(Prog::XdpPort, udp.build(), std::nullopt);
	// An empty program slot: the IPv4 program hands the frame to TC.
	fresh6(nullptr, nullptr);
	dp().set_xdp6prog(KVX_XDP6_PORT, false);
	expect_handed(Prog::XdpPort, udp.build(), std::nullopt);
	dp().set_xdp6prog(KVX_XDP6_PORT, true);
	const Shot x = shoot(Prog::XdpPort, udp.build());
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_REDIRECT"));
}

// TC takes what XDP left it, from the state XDP left: the offloaded SYN is
// translated (the skb knows its checksum state), a guest's packet too big
// for the uplink's route is answered with a Packet Too Big.
TEST_F(Xdp6Test, TcTakesWhatXdpLeft)
{
	const Packet6 syn = offloaded6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443)));
	expect_handed(Prog::XdpPort, syn.build(), KVX_R_XDP_TO_TC_CSUM);
	const Shot t = shoot(Prog::BrIngress, syn.build());
	EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_REDIRECT"));
	EXPECT_EQ(t.counted, counted(KVX_R_XLATE_OUT, syn.build().size()));
	EXPECT_EQ(dp().ct6_entries().size(), 1u);

	UplinkMtu mtu(1280);
	fresh6(nullptr, nullptr);
	const Packet6 big = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 53, 1400));
	expect_handed(Prog::XdpPort, big.build(), KVX_R_XDP_TO_TC);
	const Shot b = shoot(Prog::BrIngress, big.build());
	EXPECT_EQ(verdict_name(b.verdict), std::string("TC_ACT_REDIRECT"));
	EXPECT_NE(b.counted.find(reason_name(KVX_R_DROP_TOO_BIG)), std::string::npos) << b.counted;
	EXPECT_TRUE(dp().ct6_entries().empty());
}

// A MAC the port guard has not placed yet: TC's (the guard places it in
// front of the owner check, which counts a guest's addresses by its port),
// before anything is touched; once placed, its frames are XDP's.
TEST_F(Xdp6Test, UnplacedMacIsLeftToTcUntilTheGuardPlacesIt)
{
	fresh6(nullptr, [](Datapath &d) {
		d.guard_until_set(boot_ns() + KVX_GUARD_LEASE_NS);
		d.brport_delete(mac_of(kGuest6A));
	});
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 40));
	expect_handed(Prog::XdpPort, q.build(), KVX_R_XDP_TO_TC);
	EXPECT_FALSE(dp().brport_lookup(mac_of(kGuest6A))) << "XDP placed nothing";
	EXPECT_FALSE(dp().nd_lookup(kGuest6A)) << "XDP claimed no address";
	// The port's TC ingress (the guard) places it, TC translates.
	const RunResult g = dp().run(Prog::PortIngress, q.build(), topo().bridge_port_ifindex);
	EXPECT_EQ(g.verdict, TC_ACT_UNSPEC) << "on to the bridge";
	const auto placed = dp().brport_lookup(mac_of(kGuest6A));
	ASSERT_TRUE(placed);
	EXPECT_EQ(placed->ifindex, static_cast<__u32>(topo().bridge_port_ifindex));
	EXPECT_EQ(shoot(Prog::BrIngress, q.build()).counted,
		  counted(KVX_R_XLATE_OUT, q.build().size()));
	const Shot x = shoot(Prog::XdpPort, q.build());
	EXPECT_EQ(x.counted, counted(KVX_R_XDP_XLATE_OUT, q.build().size()));

	// With the guard off nothing places it in front of TC, whose owner
	// check sees it unplaced too: translated by XDP from the first frame,
	// the same tables as TC's.
	const auto guard_off = [](Datapath &d) { d.brport_delete(mac_of(kGuest6A)); };
	expect_identical6({{false, q}}, guard_off);
	EXPECT_FALSE(dp().brport_lookup(mac_of(kGuest6A))) << "nothing placed it";
}

// Traffic to a guest's binding that no flow of it wants (APDF, the
// default): the host's, passed by XDP uncounted and untouched.
TEST_F(Xdp6Test, UnsolicitedInboundIsTheHosts)
{
	fresh6(nullptr, [](Datapath &d) {
		tc_out6(d, from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 40)));
		learn6(d, kGuest6A);
	});
	const Packet6 other = from_uplink6(make_udp6(kRemote6A, 54, kUplink6, 62001, 40));
	expect_handed(Prog::XdpUp, other.build(), std::nullopt);
	EXPECT_EQ(shoot(Prog::UpIngress, other.build()).counted,
		  counted(KVX_R_PASS_HOST, other.build().size()));
}

// A guest at its flow quota: XDP drops its new flow as TC does.
TEST_F(Xdp6Test, QuotaDropAsTc)
{
	const auto quota1 = [](kvx_cfg &c) { c.flow_quota = 1; };
	const Packet6 first = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 40));
	const Packet6 second = from_guest6(make_udp6(kGuest6A, 62002, kRemote6A, 54, 40));
	std::string tc_tables;
	Shot t;
	for (bool xdp : {false, true}) {
		fresh6(nullptr, nullptr, quota1);
		const Prog prog = xdp ? Prog::XdpPort : Prog::BrIngress;
		shoot(prog, first.build());
		const Shot x = shoot(prog, second.build());
		if (!xdp) {
			t = x;
			tc_tables = tables6(dp(), false);
			continue;
		}
		EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_DROP"));
		EXPECT_EQ(x.counted, t.counted);
		EXPECT_EQ(x.counted, counted(KVX_R_DROP_GUEST_QUOTA, second.build().size()));
		EXPECT_EQ(tables6(dp(), false), tc_tables);
	}
}

// A port forward on the uplink's address: a remote's SYN is TC's until
// the guest's answer teaches the binding its MAC (XDP delivers by it);
// the rest of the connection both ways is XDP's, as TC translates it.  A
// guest's packet to the forward (hairpin) is TC's.
TEST_F(Xdp6Test, PortForwardSameBytesAsTc)
{
	const Packet6 syn = from_uplink6(make_tcp6(kRemote6A, 51000, kUplink6, 2222));
	const auto setup = [&](Datapath &d) {
		add_static6(d, kProtoTcp, kUplink6, 2222, kGuest6A, 22);
		learn6(d, kGuest6A);
	};
	fresh6(nullptr, setup);
	expect_handed(Prog::XdpUp, syn.build(), KVX_R_XDP_TO_TC_DEV);
	// The handshake through TC, then data both ways.
	Packet6 synack = from_guest6(make_tcp6(kGuest6A, 22, kRemote6A, 51000, kTcpSyn | kTcpAck));
	synack.seq = 0x60000000;
	synack.ack_seq = syn.seq + 1;
	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	Packet6 data_in = ack;
	data_in.tcp_flags = kTcpAck | kTcpPsh;
	data_in.payload = pattern(700, 3);
	Packet6 data_out = synack;
	data_out.tcp_flags = kTcpAck | kTcpPsh;
	data_out.seq = synack.seq + 1;
	data_out.ack_seq = ack.seq + 700;
	data_out.payload = pattern(300, 4);
	expect_identical6({{true, ack}, {true, data_in}, {false, data_out}}, [&](Datapath &d) {
		setup(d);
		ASSERT_EQ(d.run(Prog::UpIngress, syn.build(), topo().uplink_ifindex).verdict,
			  TC_ACT_REDIRECT);
		ASSERT_EQ(d.run(Prog::BrIngress, synack.build(), topo().bridge_ifindex).verdict,
			  TC_ACT_REDIRECT);
	});
	Packet6 hairpin = from_guest6(make_tcp6(kGuest6B, 40000, kUplink6, 2222));
	expect_handed(Prog::XdpPort, hairpin.build(), KVX_R_XDP_TO_TC);
}

// --clamp-mss: a SYN's MSS clamped by XDP as by TC (N - 20 for IPv6).
TEST_F(Xdp6Test, MssClampSameBytesAsTc)
{
	Packet6 syn = from_guest6(make_tcp6(kGuest6A, 62000, kRemote6A, 443));
	syn.tcp_options = {0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07};
	Packet6 synack =
		from_uplink6(make_tcp6(kRemote6A, 443, kUplink6, 62000, kTcpSyn | kTcpAck));
	synack.hop_limit = 60;
	synack.ack_seq = syn.seq + 1;
	synack.tcp_options = {0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x01, 0x00};
	expect_identical6({{false, syn}, {true, synack}}, nullptr,
			  [](kvx_cfg &c) { c.clamp_mss = 1400; });
	fresh6(nullptr, nullptr, [](kvx_cfg &c) { c.clamp_mss = 1400; });
	const Bytes out = shoot(Prog::XdpPort, syn.build()).out;
	const Parsed6 o = parse6(out);
	ASSERT_GE(out.size(), o.l4_off + 24);
	EXPECT_EQ(out[o.l4_off + 22] << 8 | out[o.l4_off + 23], 1380) << "MSS 1400 - 20";
}

// Hand-offs from the uplink.
TEST_F(Xdp6Test, UplinkFramesXdpLeavesToTc)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 40));
	const Packet6 back = from_uplink6(make_udp6(kRemote6A, 53, kUplink6, 62001, 40));
	const auto setup = [&](bool learnt) {
		return [=](Datapath &d) {
			tc_out6(d, q);
			if (learnt)
				learn6(d, kGuest6A);
		};
	};
	struct Case {
		const char *name;
		Packet6 p;
		std::optional<kvx_reason> reason;
		bool learnt = true;
	};
	std::vector<Case> cases;
	cases.push_back({"guest's port unknown", back, KVX_R_XDP_TO_TC_DEV, false});
	cases.push_back({"checksum left to offload", offloaded6(back), KVX_R_XDP_TO_TC_CSUM});
	{
		Packet6 p = back;
		p.hop_limit = 1;
		cases.push_back({"hop limit 1", p, KVX_R_XDP_TO_TC});
	}
	cases.push_back({"echo reply",
			 from_uplink6(make_echo6(kRemote6A, kUplink6, 62001, kIcmp6EchoReply)),
			 std::nullopt});
	{
		Packet6 p = back;
		p.dport = 62002;
		cases.push_back({"no binding: the host's", p, std::nullopt});
	}
	{
		Packet6 p = back;
		p.src = ip6("fd42::99");
		cases.push_back({"martian source (the guests' prefix)", p, std::nullopt});
	}
	{
		Packet6 p = back;
		p.ext = {ext_options(60)};
		cases.push_back({"destination options", p, std::nullopt});
	}
	for (const Case &c : cases) {
		SCOPED_TRACE(c.name);
		fresh6(nullptr, setup(c.learnt));
		expect_handed(Prog::XdpUp, c.p.build(), c.reason);
	}
	// Too big for the bridge: TC answers it (Packet Too Big).
	fresh6(nullptr, setup(true));
	DeviceMtu mtu(Topology::kBridge, 1280);
	Packet6 big = back;
	big.payload = pattern(1400);
	expect_handed(Prog::XdpUp, big.build(), KVX_R_XDP_TO_TC);
	const Shot t = shoot(Prog::UpIngress, big.build());
	EXPECT_NE(t.counted.find(reason_name(KVX_R_DROP_TOO_BIG_IN)), std::string::npos)
		<< t.counted;
}

// The drops XDP decides itself, as TC (its port guard, the owner check)
// decides them: the same reason, the frame dropped, nothing made.
TEST_F(Xdp6Test, DropsAsTc)
{
	// Guest A's MAC held on the other port while the guard's lease runs:
	// a frame with it here is a spoofer's (kvx_port_in's DROP_MAC_ELSEWHERE).
	const Packet6 udp = from_guest6(make_udp6(kGuest6A, 62001, kRemote6A, 53, 40));
	fresh6(nullptr, [](Datapath &d) {
		d.guard_until_set(boot_ns() + KVX_GUARD_LEASE_NS);
		d.brport_set(mac_of(kGuest6A),
			     static_cast<std::uint32_t>(topo().bridge_port2_ifindex), 0,
			     KVX_BRPORT_F_HELD);
	});
	Shot x = shoot(Prog::XdpPort, udp.build());
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_DROP"));
	EXPECT_EQ(x.counted, counted(KVX_R_DROP_MAC_ELSEWHERE, udp.build().size()));
	EXPECT_EQ(tables6(dp(), false), "");
	const RunResult g = dp().run(Prog::PortIngress, udp.build(), topo().bridge_port_ifindex);
	EXPECT_EQ(verdict_name(g.verdict), std::string("TC_ACT_SHOT")) << "the TC guard agrees";

	// Guest B (on the other port) sending from A's address while A uses
	// it: the owner check's DROP_SPOOF_MAC, as TC's.
	fresh6(nullptr, [&](Datapath &d) {
		d.brport_set(mac_of(kGuest6B),
			     static_cast<std::uint32_t>(topo().bridge_port2_ifindex));
		tc_out6(d, udp);
	});
	Packet6 spoof = udp;
	spoof.src_mac = mac_of(kGuest6B);
	spoof.sport = 62003;
	const std::string before = tables6(dp(), false);
	const Shot t = shoot(Prog::BrIngress, spoof.build());
	x = shoot(Prog::XdpPort, spoof.build());
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_DROP"));
	EXPECT_EQ(x.counted, t.counted);
	EXPECT_EQ(x.counted, counted(KVX_R_DROP_SPOOF_MAC, spoof.build().size()));
	EXPECT_EQ(tables6(dp(), false), before);
	EXPECT_FALSE(dp().xfdb_lookup(mac_of(kGuest6B))) << "the spoofer's MAC was learnt";
}

} // namespace
} // namespace kvmxdp::test
