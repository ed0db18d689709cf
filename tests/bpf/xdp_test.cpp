// The XDP fast path (kvmxdp_xdp: kvx_xdp_port on a bridge port, kvx_xdp_up
// on the uplink; bpf/lib/xdp.h) against the TC programs it stands in front
// of, every map shared as the loader shares them:
// - byte identity: each packet XDP translates comes out byte for byte as
//   TC translates it from the same map state (a table of cases, and sweeps
//   of segment lengths over every piece of the checksum walk), with
//   checksums valid by the independent code of pkt.cpp, the same verdict
//   class (REDIRECT) and the same tables afterwards;
// - hand-off: what XDP leaves to TC passes unchanged, counted by why (or
//   uncounted when kvmxdp does not translate it at all), with no table
//   touched, and TC then does with it what it always did;
// - learning of guest MACs (kvx_xfdb) and the drops XDP decides itself
//   (the same reasons as TC's).
// The devices are in kvx_xdev as the daemon writes them: the bridge (its
// MAC), the uplink (TX), the ports kvxbrp0/kvxbrp1 (PORT|TX|LEARN).
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <ostream>
#include <sstream>

#include "fixture.hpp"
#include "xdp_fixture.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

constexpr std::uint32_t kUplink = Topology::kUplinkAddr;
// Longer than one jiffy at any HZ (>= 100): fib.h's route cache entries
// live for the jiffy they were made in.
constexpr useconds_t kJiffyUs = 25000;

Mac mac_of(const __u8 *m)
{
	Mac r;
	std::memcpy(r.data(), m, r.size());
	return r;
}

// kvx_bind and kvx_ct as text, one sorted line per entry.  Without times
// (the paths run at different instants) two states compare as "the same
// translation"; with them, as "nothing touched".
std::string tables(const Datapath &d, bool with_times)
{
	std::vector<std::string> lines;
	for (const auto &[k, v] : d.bind_entries()) {
		std::ostringstream o;
		o << "bind " << (k.dir == KVX_BIND_IN ? "IN " : "OUT ") << int(k.proto) << " "
		  << ip4_str(ntohl(k.addr)) << ":" << ntohs(k.port) << " -> "
		  << ip4_str(ntohl(v.addr)) << ":" << ntohs(v.port) << " flags " << v.flags
		  << " mac " << mac_str(mac_of(v.guest_mac)) << " gw " << mac_str(mac_of(v.gw_mac));
		if (with_times)
			o << " used " << v.last_used_ns;
		lines.push_back(o.str());
	}
	for (const auto &[k, v] : d.ct_entries()) {
		std::ostringstream o;
		o << "ct " << int(k.proto) << " " << ip4_str(ntohl(k.int_addr)) << ":"
		  << ntohs(k.int_port) << " " << ip4_str(ntohl(k.rem_addr)) << ":"
		  << ntohs(k.rem_port) << " ext " << ip4_str(ntohl(v.ext_addr)) << ":"
		  << ntohs(v.ext_port) << " state " << int(v.state) << " flags " << int(v.flags)
		  << " out " << v.pkts_out << " in " << v.pkts_in;
		if (with_times)
			o << " seen " << v.last_seen_ns << " created " << v.created_ns;
		lines.push_back(o.str());
	}
	std::sort(lines.begin(), lines.end());
	std::string s;
	for (const auto &l : lines)
		s += l + "\n";
	return s;
}

// The L4 checksum field's offset in a TCP/UDP frame (0: none).
std::size_t l4_csum_off(const Bytes &f)
{
	const Parsed p = parse(f);
	if (!p.ipv4 || !p.l4_complete)
		return 0;
	if (p.proto == kProtoTcp)
		return p.l4_off + 16;
	if (p.proto == kProtoUdp)
		return p.l4_off + 6;
	return 0;
}

Bytes without_l4_csum(Bytes f)
{
	if (const std::size_t off = l4_csum_off(f))
		f[off] = f[off + 1] = 0;
	return f;
}

// What a sender that leaves the checksum to offload (CHECKSUM_PARTIAL:
// virtio-net, veth, tap) puts in the field: the pseudo-header sum, folded
// and not complemented (the kernel's ~csum_tcpudp_magic(..., 0)).
Packet offloaded(Packet p)
{
	const Bytes f = p.build();
	const Parsed q = parse(f);
	std::uint8_t ph[12];
	const std::uint32_t src = htonl(q.src), dst = htonl(q.dst);
	std::memcpy(ph, &src, 4);
	std::memcpy(ph + 4, &dst, 4);
	ph[8] = 0;
	ph[9] = q.proto;
	const std::uint16_t len = static_cast<std::uint16_t>(q.tot_len - q.ihl_bytes);
	ph[10] = static_cast<std::uint8_t>(len >> 8);
	ph[11] = static_cast<std::uint8_t>(len);
	p.l4_csum = static_cast<std::uint16_t>(~csum_fold(csum_partial(ph, sizeof(ph))));
	return p;
}

// p with its (valid) L4 checksum off by a few bits.
Packet corrupted(Packet p)
{
	const Bytes f = p.build();
	p.l4_csum = static_cast<std::uint16_t>(parse(f).l4_csum ^ 0x0101);
	return p;
}

// A UDP packet whose checksum, once the packet is translated by to(),
// computes to 0 (sent as 0xffff, RFC 768): two payload bytes at an even
// segment offset are chosen to make the translated sum all ones.
Packet udp_csum_zero_after(Packet p, const std::function<Packet(const Packet &)> &to)
{
	p.payload[18] = p.payload[19] = 0;
	Bytes w = to(p).build();
	const Parsed q = parse(w);
	Bytes seg(w.begin() + static_cast<long>(q.l4_off), w.end());
	seg[6] = seg[7] = 0;
	const std::uint16_t c = l4_checksum(q.src, q.dst, kProtoUdp, seg.data(), seg.size());
	p.payload[18] = static_cast<std::uint8_t>(c >> 8);
	p.payload[19] = static_cast<std::uint8_t>(c);
	return p;
}

// IPv4 options filling an ihl of n words: a router alert, NOPs, an EOL.
Bytes ip_options_for_ihl(unsigned ihl)
{
	Bytes o;
	if (ihl <= 5)
		return o;
	o = {0x94, 0x04, 0x00, 0x00};
	o.resize((ihl - 5) * 4, 0x01);
	o.back() = 0x00;
	return o;
}

// A guest's MAC learnt on a port (default kvxbrp0), as kvx_xdp_port would.
void learn(Datapath &d, std::uint32_t guest, int port = 0)
{
	kvx_xfdb_val v{};
	v.ifindex = static_cast<__u32>(port ? port : topo().bridge_port_ifindex);
	v.seen_ns = boot_ns();
	d.xfdb_update(guest_mac(guest), v);
}

// Sends p out through the TC program (a flow as TC makes it).
void tc_out(Datapath &d, const Packet &p)
{
	const RunResult r = d.run(Prog::BrIngress, p.build(), topo().bridge_ifindex);
	ASSERT_EQ(r.verdict, TC_ACT_REDIRECT) << "setting up a flow through kvx_br_ingress";
}

// ---------------------------------------------------------------------------
// Byte identity
// ---------------------------------------------------------------------------

struct Step {
	bool inbound;
	Packet pkt;		    // as sent (from_guest/from_uplink applied)
	std::optional<Packet> want; // the translation expected besides TC == XDP
};

Step out_step(const Packet &p, std::optional<Packet> want = std::nullopt)
{
	return {false, from_guest(p), std::move(want)};
}

Step in_step(const Packet &p, std::optional<Packet> want = std::nullopt)
{
	return {true, from_uplink(p), std::move(want)};
}

struct IdentCase {
	std::string name;
	std::function<void(kvx_cfg &)> cfg;
	std::function<void(Datapath &)> setup;
	std::function<std::vector<Step>()> steps;
};

void PrintTo(const IdentCase &c, std::ostream *os)
{
	*os << c.name;
}

class XdpIdentity : public XdpTest {
protected:
	// Runs the steps through TC on a fresh state, then through XDP on the
	// same fresh state, and compares every output and the final tables.
	void expect_identical(const IdentCase &c)
	{
		const std::vector<Step> steps = c.steps();
		std::vector<Shot> tc, xdp;
		fresh(c.cfg, c.setup);
		for (const Step &s : steps)
			tc.push_back(shoot(s.inbound ? Prog::UpIngress : Prog::BrIngress, s.pkt.build()));
		const std::string tc_tables = tables(dp(), false);
		fresh(c.cfg, c.setup);
		for (const Step &s : steps)
			xdp.push_back(shoot(s.inbound ? Prog::XdpUp : Prog::XdpPort, s.pkt.build()));
		const std::string xdp_tables = tables(dp(), false);

		for (std::size_t i = 0; i < steps.size(); i++) {
			const Step &s = steps[i];
			const Bytes in = s.pkt.build();
			SCOPED_TRACE("step " + std::to_string(i) + (s.inbound ? " (inbound, " : " (outbound, ") +
				     std::to_string(in.size()) + "-byte frame)");
			const Shot &t = tc[i], &x = xdp[i];
			EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_REDIRECT"));
			EXPECT_EQ(t.counted, counted(s.inbound ? KVX_R_XLATE_IN : KVX_R_XLATE_OUT, in.size()));
			EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_REDIRECT"));
			EXPECT_EQ(x.counted,
				  counted(s.inbound ? KVX_R_XDP_XLATE_IN : KVX_R_XDP_XLATE_OUT, in.size()));
			EXPECT_EQ(diff(x.out, t.out), "") << "XDP's translation (got) differs from TC's (want)";
			EXPECT_EQ(check_checksums(x.out), "") << "XDP output";
			EXPECT_EQ(check_checksums(t.out), "") << "TC output";
			if (s.want) {
				EXPECT_EQ(diff(t.out, s.want->build()), "") << "TC output vs expected";
			}
		}
		EXPECT_EQ(xdp_tables, tc_tables) << "tables after XDP (got) and after TC (want)";
		if (steps.size() && !steps.front().inbound) {
			auto l = dp().xfdb_lookup(steps.front().pkt.src_mac);
			ASSERT_TRUE(l) << "kvx_xfdb learnt the guest's MAC";
			EXPECT_EQ(l->ifindex, static_cast<__u32>(topo().bridge_port_ifindex));
		}
	}
};

class XdpIdentityTable : public XdpIdentity, public ::testing::WithParamInterface<IdentCase> {};

TEST_P(XdpIdentityTable, SameBytesAsTc)
{
	expect_identical(GetParam());
}

std::vector<IdentCase> ident_cases()
{
	const std::uint32_t A = kGuestA, B = kGuestB, R = kRemote1, R2 = kRemote2, U = kUplink;
	std::vector<IdentCase> c;
	auto tcp = [](std::uint32_t s, std::uint16_t sp, std::uint32_t d, std::uint16_t dp,
		      std::uint8_t flags, std::size_t len = 0) {
		Packet p = make_tcp(s, sp, d, dp, flags);
		p.payload = pattern(len, static_cast<std::uint8_t>(len + sp));
		return p;
	};
	// A connection's first packets: SYN out, SYN-ACK in (both kept ports).
	auto syn_out = [=](std::uint16_t gp) { return tcp(A, gp, R, 443, kTcpSyn); };
	auto syn_steps = [=](std::uint16_t gp) {
		const Packet syn = syn_out(gp);
		const Packet synack = reply_to(snat(syn, gp));
		return std::vector<Step>{out_step(syn, snat(from_guest(syn), gp)),
					 {true, synack, dnat(synack, A, gp)}};
	};

	c.push_back({"TcpSyn", nullptr, nullptr, [=] { return syn_steps(62000); }});
	c.push_back({"TcpSynManyOptions", nullptr, nullptr, [=] {
			     Packet p = syn_out(62000);
			     p.tcp_options = {0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
					      0x00, 0x11, 0x22, 0x33, 0x00, 0x00, 0x00, 0x00,
					      0x01, 0x03, 0x03, 0x07};
			     return std::vector<Step>{out_step(p, snat(from_guest(p), 62000))};
		     }});
	for (std::uint8_t flags : {kTcpAck, std::uint8_t(kTcpAck | kTcpPsh)}) {
		c.push_back({flags == kTcpAck ? "TcpBareAckPicksUpFlow" : "TcpPshAckPicksUpFlow",
			     nullptr, nullptr, [=] {
				     const Packet p = tcp(A, 62000, R, 443, flags, 100);
				     return std::vector<Step>{out_step(p, snat(from_guest(p), 62000))};
			     }});
	}
	// A whole connection: data both ways, FIN both ways, the last ACK.
	c.push_back({"TcpConnection", nullptr, nullptr, [=] {
			     std::vector<Step> s = syn_steps(62000);
			     const std::uint8_t PA = kTcpAck | kTcpPsh, FA = kTcpFin | kTcpAck;
			     // Consistent sequence numbers (conntrack checks FINs
			     // against the window), after syn_steps' SYNs.
			     std::uint32_t g = 0x01020305, r = 0x55667789;
			     auto o = [&](std::uint8_t f, std::size_t len = 0) {
				     Packet p = tcp(A, 62000, R, 443, f, len);
				     p.seq = g;
				     p.ack_seq = r;
				     g += std::uint32_t(len) + !!(f & kTcpFin);
				     return out_step(p);
			     };
			     auto i = [&](std::uint8_t f, std::size_t len = 0) {
				     Packet p = tcp(R, 443, U, 62000, f, len);
				     p.seq = r;
				     p.ack_seq = g;
				     r += std::uint32_t(len) + !!(f & kTcpFin);
				     return in_step(p);
			     };
			     s.push_back(o(kTcpAck));
			     s.push_back(o(PA, 517));
			     s.push_back(i(PA, 1460));
			     s.push_back(i(PA, 1));
			     s.push_back(o(FA));
			     s.push_back(i(FA));
			     s.push_back(o(kTcpAck));
			     return s;
		     }});
	for (std::size_t len : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(333),
				std::size_t(1459), std::size_t(1460)}) {
		c.push_back({"TcpData" + std::to_string(len), nullptr, nullptr, [=] {
				     std::vector<Step> s = syn_steps(62000);
				     const Packet o = tcp(A, 62000, R, 443, kTcpAck | kTcpPsh, len);
				     // Acknowledging what the guest sent: an ACK
				     // beyond it is another connection's.
				     const Packet i = from_uplink(
					     with(tcp(R, 443, U, 62000, kTcpAck, len),
						  [&](Packet &q) { q.ack_seq = o.seq + 1; }));
				     s.push_back(out_step(o, snat(from_guest(o), 62000)));
				     s.push_back({true, i, dnat(i, A, 62000)});
				     return s;
			     }});
	}
	// MSS clamping (cfg.clamp_mss) in both directions.
	auto clamp = [](kvx_cfg &cf) { cf.clamp_mss = 1400; };
	c.push_back({"ClampMssSynAndSynAck", clamp, nullptr, [=] {
			     const Packet syn = syn_out(62000);
			     Packet w = snat(from_guest(syn), 62000);
			     w.tcp_options = {0x02, 0x04, 0x05, 0x78};
			     const Packet synack = reply_to(snat(syn, 62000));
			     Packet wi = dnat(synack, A, 62000);
			     wi.tcp_options = {0x02, 0x04, 0x05, 0x78};
			     return std::vector<Step>{out_step(syn, w), {true, synack, wi}};
		     }});
	c.push_back({"ClampMssAfterOtherOptions", clamp, nullptr, [=] {
			     Packet syn = syn_out(62000);
			     syn.tcp_options = {0x01, 0x01, 0x01, 0x01, 0x04, 0x02, 0x08, 0x0a,
						0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
						0x02, 0x04, 0x23, 0x28};
			     Packet w = snat(from_guest(syn), 62000);
			     w.tcp_options[18] = 0x05;
			     w.tcp_options[19] = 0x78;
			     return std::vector<Step>{out_step(syn, w)};
		     }});
	// After one NOP the MSS value sits at an odd offset of the TCP header
	// and straddles two of the checksum's 16-bit words: the checksum update
	// must be byte-swapped, on the way out and on the way in.
	c.push_back({"ClampMssAtOddOffset", clamp, nullptr, [=] {
			     const Bytes odd = {0x01, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x00};
			     const Bytes clamped = {0x01, 0x02, 0x04, 0x05, 0x78, 0x01, 0x01, 0x00};
			     Packet syn = syn_out(62000);
			     syn.tcp_options = odd;
			     Packet w = snat(from_guest(syn), 62000);
			     w.tcp_options = clamped;
			     Packet synack = reply_to(snat(syn, 62000));
			     synack.tcp_options = odd;
			     Packet wi = dnat(synack, A, 62000);
			     wi.tcp_options = clamped;
			     return std::vector<Step>{out_step(syn, w), {true, synack, wi}};
		     }});
	c.push_back({"ClampMssAlreadySmaller", clamp, nullptr, [=] {
			     Packet syn = syn_out(62000);
			     syn.tcp_options = {0x02, 0x04, 0x04, 0xb0};
			     return std::vector<Step>{out_step(syn, snat(from_guest(syn), 62000))};
		     }});
	// UDP: lengths, no checksum, a checksum that becomes 0, padding.
	for (std::size_t len : {std::size_t(0), std::size_t(1), std::size_t(16), std::size_t(45),
				std::size_t(1472)}) {
		c.push_back({"Udp" + std::to_string(len), nullptr, nullptr, [=] {
				     const Packet o = make_udp(A, 62001, R, 53, len);
				     const Packet i = reply_to(snat(o, 62001));
				     return std::vector<Step>{out_step(o, snat(from_guest(o), 62001)),
							      {true, i, dnat(i, A, 62001)}};
			     }});
	}
	c.push_back({"UdpNoChecksum", nullptr, nullptr, [=] {
			     Packet o = make_udp(A, 62001, R, 53, 33);
			     o.udp_no_csum = true;
			     Packet i = reply_to(snat(o, 62001));
			     i.udp_no_csum = true;
			     return std::vector<Step>{out_step(o, snat(from_guest(o), 62001)),
						      {true, i, dnat(i, A, 62001)}};
		     }});
	c.push_back({"UdpChecksumBecomesZeroOut", nullptr, nullptr, [=] {
			     const Packet o = udp_csum_zero_after(
				     from_guest(make_udp(A, 62001, R, 53, 20)),
				     [](const Packet &p) { return snat(p, 62001); });
			     const Packet w = snat(o, 62001);
			     EXPECT_EQ(parse(w.build()).l4_csum, 0xffff) << "test setup";
			     return std::vector<Step>{{false, o, w}};
		     }});
	c.push_back({"UdpChecksumBecomesZeroIn", nullptr, nullptr, [=] {
			     const Packet o = make_udp(A, 62001, R, 53, 20);
			     const Packet i = udp_csum_zero_after(reply_to(snat(o, 62001)),
								  [=](const Packet &p) {
									  return dnat(p, A, 62001);
								  });
			     const Packet w = dnat(i, A, 62001);
			     EXPECT_EQ(parse(w.build()).l4_csum, 0xffff) << "test setup";
			     return std::vector<Step>{out_step(o), {true, i, w}};
		     }});
	c.push_back({"UdpChecksumWasAllOnes", nullptr, nullptr, [=] {
			     // The sender computed 0 and sent 0xffff (RFC 768).
			     const Packet o = udp_csum_zero_after(from_guest(make_udp(A, 62001, R, 53, 20)),
								  [](const Packet &p) { return p; });
			     EXPECT_EQ(parse(o.build()).l4_csum, 0xffff) << "test setup";
			     return std::vector<Step>{{false, o, snat(o, 62001)}};
		     }});
	c.push_back({"UdpPaddedFrame", nullptr, nullptr, [=] {
			     Packet o = make_udp(A, 62001, R, 53, 2);
			     o.pad_to = 60;
			     Packet i = reply_to(snat(o, 62001));
			     i.pad_to = 60;
			     return std::vector<Step>{out_step(o, snat(from_guest(o), 62001)),
						      {true, i, dnat(i, A, 62001)}};
		     }});
	c.push_back({"TtlTwoNoDfTos", nullptr, nullptr, [=] {
			     Packet o = make_udp(A, 62001, R, 53, 64);
			     o.ttl = 2;
			     o.df = false;
			     o.tos = 0xb8;
			     Packet i = reply_to(snat(o, 62001));
			     i.ttl = 2;
			     return std::vector<Step>{out_step(o, snat(from_guest(o), 62001)),
						      {true, i, dnat(i, A, 62001)}};
		     }});
	// IPv4 options: every ihl from 6 to 15, both protocols, both ways.
	for (unsigned ihl = 6; ihl <= 15; ihl++) {
		c.push_back({"IpOptionsIhl" + std::to_string(ihl), nullptr, nullptr, [=] {
				     std::vector<Step> s;
				     Packet t = tcp(A, 62000, R, 443, kTcpSyn, ihl * 3);
				     t.ip_options = ip_options_for_ihl(ihl);
				     Packet ti = reply_to(snat(t, 62000));
				     Packet u = make_udp(A, 62001, R, 53, 100 + ihl);
				     u.ip_options = ip_options_for_ihl(ihl);
				     Packet ui = reply_to(snat(u, 62001));
				     s.push_back(out_step(t, snat(from_guest(t), 62000)));
				     s.push_back({true, ti, dnat(ti, A, 62000)});
				     s.push_back(out_step(u, snat(from_guest(u), 62001)));
				     s.push_back({true, ui, dnat(ui, A, 62001)});
				     return s;
			     }});
	}
	// Port-changing bindings: a guest port outside the range (a one-port
	// range, so that both paths pick the same port), and one inside the
	// range but taken (a range of <= 64 ports is scanned from the guest's
	// port on; a larger one is probed at random points).
	const auto small_range = [](kvx_cfg &cf) {
		cf.nat_port_lo = 62000;
		cf.nat_port_hi = 62063;
	};
	c.push_back({"PortOutsideRange", [](kvx_cfg &cf) { cf.nat_port_lo = cf.nat_port_hi = 61000; },
		     nullptr, [=] {
			     const Packet o = tcp(A, 40000, R, 443, kTcpSyn);
			     const Packet i = reply_to(snat(o, 61000));
			     return std::vector<Step>{
				     out_step(o, snat(from_guest(o), 61000)),
				     {true, i, dnat(i, A, 40000)},
			     };
		     }});
	c.push_back({"PortTakenInsideRange", small_range,
		     [=](Datapath &d) { add_port_forward(d, kProtoUdp, U, 62001, B, 62001); },
		     [=] {
			     const Packet o = make_udp(A, 62001, R, 53, 31);
			     const Packet i = reply_to(snat(o, 62002));
			     return std::vector<Step>{out_step(o, snat(from_guest(o), 62002)),
						      {true, i, dnat(i, A, 62001)}};
		     }});
	// Static mappings (abi.h): 1:1 and a port forward (inbound first).
	c.push_back({"OneToOne", nullptr,
		     [=](Datapath &d) { add_one_to_one(d, kMappedAddr, A, KVX_EXT_F_ARP); },
		     [=] {
			     const Packet o = tcp(A, 40000, R, 443, kTcpSyn);
			     const Packet i = reply_to(snat(o, 40000, kMappedAddr));
			     const Packet i2 = from_uplink(tcp(R2, 999, kMappedAddr, 22, kTcpSyn));
			     return std::vector<Step>{
				     out_step(o, snat(from_guest(o), 40000, kMappedAddr)),
				     {true, i, dnat(i, A, 40000)},
				     {true, i2, dnat(i2, A, 22)},
			     };
		     }});
	c.push_back({"PortForward", nullptr,
		     [=](Datapath &d) { add_port_forward(d, kProtoTcp, U, 8080, A, 80); },
		     [=] {
			     // The guest's first packet teaches its MAC; then the
			     // forward opens inbound connections.
			     const Packet o = tcp(A, 80, R2, 5555, kTcpSyn);
			     const Packet i = from_uplink(tcp(R, 6000, U, 8080, kTcpSyn));
			     const Packet sa = tcp(A, 80, R, 6000, kTcpSyn | kTcpAck);
			     const Packet d = from_uplink(tcp(R, 6000, U, 8080, kTcpAck | kTcpPsh, 700));
			     return std::vector<Step>{out_step(o, snat(from_guest(o), 8080)),
						      {true, i, dnat(i, A, 80)},
						      out_step(sa, snat(from_guest(sa), 8080)),
						      {true, d, dnat(d, A, 80)}};
		     }});
	c.push_back({"EndpointIndependentFiltering",
		     [](kvx_cfg &cf) { cf.flags |= KVX_CFG_F_EIF; }, nullptr, [=] {
			     const Packet o = make_udp(A, 62001, R, 53, 12);
			     const Packet i = from_uplink(make_udp(R2, 999, U, 62001, 77));
			     return std::vector<Step>{out_step(o), {true, i, dnat(i, A, 62001)}};
		     }});
	c.push_back({"TwoGuestsOnePort", small_range, nullptr, [=] {
			     const Packet a = make_udp(A, 62001, R, 53, 12);
			     const Packet b = make_udp(B, 62001, R, 53, 13);
			     const Packet ib = reply_to(snat(b, 62002));
			     const Packet ia = reply_to(snat(a, 62001));
			     return std::vector<Step>{out_step(a), out_step(b, snat(from_guest(b), 62002)),
						      {true, ib, dnat(ib, B, 62001)},
						      {true, ia, dnat(ia, A, 62001)}};
		     }});
	return c;
}

INSTANTIATE_TEST_SUITE_P(Table, XdpIdentityTable, ::testing::ValuesIn(ident_cases()),
			 [](const ::testing::TestParamInfo<IdentCase> &i) { return i.param.name; });

// Every TCP/UDP segment length from a bare header to 300 bytes, then the
// sizes around the 256-byte blocks and the MTU: each exercises another mix
// of the checksum walk's pieces (256-byte blocks, 128..4 bytes, 0-3 tail).
std::vector<std::size_t> sweep_lengths(std::size_t max)
{
	std::vector<std::size_t> l;
	for (std::size_t i = 0; i <= 300; i++)
		l.push_back(i);
	for (std::size_t i : {383, 511, 512, 513, 514, 515, 767, 1023, 1024, 1279, 1400, 1459,
			      1460, 1471, 1472})
		if (i <= max)
			l.push_back(i);
	return l;
}

TEST_F(XdpIdentity, EveryTcpSegmentLength)
{
	const std::uint32_t A = kGuestA, R = kRemote1, U = kUplink;
	for (std::size_t len : sweep_lengths(1460)) {
		SCOPED_TRACE("TCP payload " + std::to_string(len));
		IdentCase c{"", nullptr, nullptr, [=] {
				    Packet syn = make_tcp(A, 62000, R, 443);
				    Packet o = make_tcp(A, 62000, R, 443, kTcpAck | kTcpPsh);
				    o.payload = pattern(len, static_cast<std::uint8_t>(len));
				    Packet i = make_tcp(R, 443, U, 62000, kTcpAck);
				    i.payload = pattern(len, static_cast<std::uint8_t>(len * 7));
				    i.ack_seq = syn.seq + 1;
				    return std::vector<Step>{out_step(syn),
							     in_step(reply_to(snat(syn, 62000))),
							     out_step(o), in_step(i)};
			    }};
		expect_identical(c);
		if (HasFailure())
			return;
	}
}

TEST_F(XdpIdentity, EveryUdpSegmentLength)
{
	const std::uint32_t A = kGuestA, R = kRemote1;
	for (std::size_t len : sweep_lengths(1472)) {
		SCOPED_TRACE("UDP payload " + std::to_string(len));
		IdentCase c{"", nullptr, nullptr, [=] {
				    const Packet o = make_udp(A, 62001, R, 53, len);
				    Packet i = reply_to(snat(o, 62001));
				    i.payload = pattern(len, static_cast<std::uint8_t>(len * 3));
				    return std::vector<Step>{out_step(o), {true, i, std::nullopt}};
			    }};
		expect_identical(c);
		if (HasFailure())
			return;
	}
}

// Every starting value of both checksum fields, for each protocol and
// direction: ip_id and the first two payload bytes both take all 65536
// values, so the IP header checksum and the L4 checksum do too, and every
// carry of the RFC 1624 updates (csum_math.h) happens somewhere (a fold
// that leaves a carry shows up only for a few starting values).  The flow
// exists already, so both paths translate from the same state.
TEST_F(XdpIdentity, EveryChecksumValue)
{
	for (std::uint8_t proto : {kProtoUdp, kProtoTcp}) {
		for (bool inbound : {false, true}) {
			SCOPED_TRACE(std::string(proto == kProtoUdp ? "UDP" : "TCP") +
				     (inbound ? " inbound" : " outbound"));
			fresh(nullptr, nullptr);
			Packet out = proto == kProtoUdp ? make_udp(kGuestA, 62001, kRemote1, 53, 10)
							: make_tcp(kGuestA, 62001, kRemote1, 443);
			tc_out(dp(), from_guest(out));
			learn(dp(), kGuestA);
			if (HasFatalFailure())
				return;
			if (proto == kProtoTcp) {
				out.tcp_flags = kTcpAck;
				out.tcp_options.clear();
				out.payload = pattern(10);
			}
			Packet p = inbound ? from_uplink(reply_to(snat(out, 62001))) : from_guest(out);
			const Prog tc = inbound ? Prog::UpIngress : Prog::BrIngress;
			const Prog xdp = inbound ? Prog::XdpUp : Prog::XdpPort;
			int failures = 0;
			for (std::uint32_t v = 0; v <= 0xffff && failures < 3; v++) {
				p.ip_id = static_cast<std::uint16_t>(v);
				p.payload[0] = static_cast<std::uint8_t>(v >> 8);
				p.payload[1] = static_cast<std::uint8_t>(v);
				const Bytes in = p.build();
				const RunResult t = dp().run(tc, in, ingress_ifindex(tc));
				const RunResult x = dp().run(xdp, in, ingress_ifindex(xdp));
				std::string err;
				if (t.verdict != TC_ACT_REDIRECT || x.verdict != XDP_REDIRECT)
					err = std::string("verdicts ") + verdict_name(t.verdict) + " / " +
					      xdp_verdict_name(x.verdict);
				else if (!(err = diff(x.out, t.out)).empty())
					err = "XDP (got) vs TC (want): " + err;
				else if (!(err = check_checksums(x.out)).empty())
					err = "XDP output: " + err;
				if (!err.empty()) {
					ADD_FAILURE() << "ip_id/payload 0x" << std::hex << v << ": " << err;
					failures++;
				}
			}
		}
	}
}

// A frame of exactly the uplink's MTU fits (XDP asks the fib lookup with
// the IP length, TC with the skb): the same translation.
TEST_F(XdpIdentity, ExactlyMtuFits)
{
	UplinkMtu mtu(1280);
	expect_identical({"", nullptr, nullptr, [] {
				  const Packet o = make_udp(kGuestA, 62001, kRemote1, 53, 1280 - 28);
				  return std::vector<Step>{out_step(o, snat(from_guest(o), 62001))};
			  }});
}

// ---------------------------------------------------------------------------
// Hand-off to TC
// ---------------------------------------------------------------------------

struct HandoffCase {
	std::string name;
	bool inbound;
	std::function<void(kvx_cfg &)> cfg;
	std::function<void(Datapath &)> setup; // after the common flows (inbound)
	std::function<Packet()> pkt;		 // from_guest/from_uplink applied by the case
	std::optional<kvx_reason> xdp_reason;	 // nullopt: passed uncounted
	int tc_verdict;
	kvx_reason tc_reason;
	// TC's translation of the frame (nullptr: unchanged).
	std::function<Packet(const Packet &)> tc_want = nullptr;
	// An offloaded frame: TC's test_run (CHECKSUM_NONE) cannot finish a
	// partial checksum (docs/pitfalls.md, test-run-checksums), so its L4
	// checksum is not compared.
	bool tc_l4_csum_unchecked = false;
};

void PrintTo(const HandoffCase &c, std::ostream *os)
{
	*os << c.name;
}

class XdpHandoff : public XdpTest, public ::testing::WithParamInterface<HandoffCase> {};

TEST_P(XdpHandoff, PassedUntouchedAndTcTakesIt)
{
	const HandoffCase &c = GetParam();
	fresh(c.cfg, [&](Datapath &d) {
		if (c.inbound) {
			// Guest A's flows, made by TC, its MAC learnt on kvxbrp0.
			tc_out(d, from_guest(make_tcp(kGuestA, 62000, kRemote1, 443)));
			tc_out(d, from_guest(make_udp(kGuestA, 62001, kRemote1, 53)));
			tc_out(d, from_guest(make_icmp_echo(kGuestA, kRemote1, 62002)));
			learn(d, kGuestA);
		}
		if (c.setup)
			c.setup(d);
	});
	const Packet p = c.pkt();
	const Bytes in = p.build();
	const std::string before = tables(dp(), true);
	const std::size_t xfdb_before = dp().xfdb_size();

	const Shot x = shoot(c.inbound ? Prog::XdpUp : Prog::XdpPort, in);
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_PASS"));
	EXPECT_EQ(x.counted, c.xdp_reason ? counted(*c.xdp_reason, in.size()) : "");
	EXPECT_EQ(diff(x.out, in), "") << "XDP must hand the frame over unchanged";
	EXPECT_EQ(tables(dp(), true), before) << "XDP must hand over before touching a table";
	if (c.inbound) {
		EXPECT_EQ(dp().xfdb_size(), xfdb_before);
	}

	// TC takes the frame XDP passed, from the state XDP left.
	const Prog tc_prog = c.inbound ? Prog::UpIngress : Prog::BrIngress;
	const std::optional<Bytes> answer =
		c.tc_verdict == TC_ACT_SHOT ? expected_answer(dp(), tc_prog, in, c.tc_reason) :
					      std::nullopt;
	const Shot t = shoot(tc_prog, x.out);
	if (answer) {
		// A drop TC answers with an ICMP error (icmp.h icmp_reply).
		EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_REDIRECT"));
		EXPECT_EQ(t.counted, counted(c.tc_reason, in.size()) + " ICMP_SENT +1/+" +
					     std::to_string(answer->size()) + "B");
		EXPECT_EQ(diff(t.out, *answer), "");
		return;
	}
	EXPECT_EQ(verdict_name(t.verdict), std::string(verdict_name(c.tc_verdict)));
	EXPECT_EQ(t.counted, counted(c.tc_reason, in.size()));
	if (!c.tc_want) {
		EXPECT_EQ(diff(t.out, in), "") << "TC leaves it unchanged";
	} else if (c.tc_l4_csum_unchecked) {
		EXPECT_EQ(diff(without_l4_csum(t.out), without_l4_csum(c.tc_want(p).build())), "")
			<< "TC's translation, L4 checksum aside";
	} else {
		EXPECT_EQ(diff(t.out, c.tc_want(p).build()), "") << "TC's translation";
		EXPECT_EQ(check_checksums(t.out), "");
	}
}

std::vector<HandoffCase> handoff_cases()
{
	const std::uint32_t A = kGuestA, B = kGuestB, R = kRemote1, U = kUplink;
	const auto keep = [](std::uint16_t port) {
		return [=](const Packet &in) { return snat(in, port); };
	};
	const auto back = [=](std::uint16_t port) {
		return [=](const Packet &in) { return dnat(in, A, port); };
	};
	auto g = [](Packet p) { return from_guest(std::move(p)); };
	auto u = [](Packet p) { return from_uplink(std::move(p)); };
	Packet data = make_tcp(A, 62000, R, 443, kTcpAck | kTcpPsh);
	data.payload = pattern(1460);
	std::vector<HandoffCase> c;

	// --- guest -> outside (kvx_xdp_port) ---
	c.push_back({"OffloadedTcpSyn", false, nullptr, nullptr,
		     [=] { return offloaded(g(make_tcp(A, 62000, R, 443))); }, KVX_R_XDP_TO_TC_CSUM,
		     TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62000), true});
	c.push_back({"OffloadedTcpData", false, nullptr, nullptr, [=] { return offloaded(g(data)); },
		     KVX_R_XDP_TO_TC_CSUM, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62000), true});
	c.push_back({"OffloadedUdp", false, nullptr, nullptr,
		     [=] { return offloaded(g(make_udp(A, 62001, R, 53, 200))); },
		     KVX_R_XDP_TO_TC_CSUM, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62001), true});
	c.push_back({"CorruptedTcpChecksum", false, nullptr, nullptr,
		     [=] { return corrupted(g(make_tcp(A, 62000, R, 443))); }, KVX_R_XDP_TO_TC_CSUM,
		     TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62000), true});
	c.push_back({"CorruptedUdpChecksum", false, nullptr, nullptr,
		     [=] { return corrupted(g(make_udp(A, 62001, R, 53, 9))); },
		     KVX_R_XDP_TO_TC_CSUM, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62001), true});
	c.push_back({"IcmpEcho", false, nullptr, nullptr,
		     [=] { return g(make_icmp_echo(A, R, 62010)); }, KVX_R_XDP_TO_TC,
		     TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62010)});
	c.push_back({"GreAddressOnly", false, nullptr, nullptr,
		     [=] { return g(make_ip_proto(A, R, kProtoGre)); }, KVX_R_XDP_TO_TC,
		     TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(0)});
	c.push_back({"FirstFragment", false, nullptr, nullptr,
		     [=] {
			     return g(with(make_udp(A, 62001, R, 53, 64), [](Packet &p) {
				     p.df = false;
				     p.mf = true;
			     }));
		     },
		     KVX_R_XDP_TO_TC, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62001)});
	c.push_back({"LaterFragment", false, nullptr, nullptr,
		     [=] {
			     Packet p = make_ip_proto(A, R, kProtoUdp, 64);
			     p.df = false;
			     p.frag_offset = 100;
			     p.raw_l4 = true;
			     return g(p);
		     },
		     KVX_R_XDP_TO_TC, TC_ACT_SHOT, KVX_R_FRAG_PARKED});
	c.push_back({"TtlOne", false, nullptr, nullptr,
		     [=] { return g(with(make_udp(A, 62001, R, 53), [](Packet &p) { p.ttl = 1; })); },
		     KVX_R_XDP_TO_TC, TC_ACT_OK, KVX_R_PASS_TTL});
	c.push_back({"HairpinToForwardedPort", false, nullptr,
		     [=](Datapath &d) { add_port_forward(d, kProtoTcp, U, 8080, B, 80); },
		     [=] { return g(make_tcp(A, 62000, U, 8080)); }, KVX_R_XDP_TO_TC,
		     TC_ACT_REDIRECT, KVX_R_XLATE_HAIRPIN, [=](const Packet &in) {
			     // B's MAC is unknown yet: L3/L4 only.
			     Packet p = in;
			     p.src = U;
			     p.dst = B;
			     p.dport = 80;
			     p.ttl--;
			     return p;
		     }});
	c.push_back({"HairpinToMappedAddress", false, nullptr,
		     [=](Datapath &d) { add_one_to_one(d, kMappedAddr, B, KVX_EXT_F_ARP); },
		     [=] { return g(make_udp(A, 62001, kMappedAddr, 53)); }, KVX_R_XDP_TO_TC,
		     TC_ACT_REDIRECT, KVX_R_XLATE_HAIRPIN, [=](const Packet &in) {
			     Packet p = in;
			     p.src = U;
			     p.dst = B;
			     p.ttl--;
			     return p;
		     }});
	c.push_back({"ToUplinkAddressUnbound", false, nullptr, nullptr,
		     [=] { return g(make_tcp(A, 62000, U, 22)); }, KVX_R_XDP_TO_TC, TC_ACT_OK,
		     KVX_R_PASS_LOCAL});
	c.push_back({"TruncatedTcpHeader", false, nullptr, nullptr,
		     [=] {
			     Packet p = make_ip_proto(A, R, kProtoTcp, 16);
			     p.raw_l4 = true;
			     return g(p);
		     },
		     KVX_R_XDP_TO_TC, TC_ACT_SHOT, KVX_R_DROP_MALFORMED});
	c.push_back({"MartianSource", false, nullptr, nullptr,
		     [=] { return g(make_udp(Topology::kSubnet, 62001, R, 53)); }, KVX_R_XDP_TO_TC,
		     TC_ACT_SHOT, KVX_R_DROP_MARTIAN});
	c.push_back({"NoUplinkAddress", false, [](kvx_cfg &cf) { cf.uplink_addr = 0; }, nullptr,
		     [=] { return g(make_udp(A, 62001, R, 53)); }, KVX_R_XDP_TO_TC, TC_ACT_SHOT,
		     KVX_R_DROP_NO_UPLINK_ADDR});
	c.push_back({"NoRoute", false, nullptr, nullptr,
		     [=] { return g(make_udp(A, 62001, ip4(198, 51, 100, 1), 53)); },
		     KVX_R_XDP_TO_TC, TC_ACT_OK, KVX_R_PASS_NO_ROUTE});
	c.push_back({"RoutedToOtherDevice", false, nullptr, nullptr,
		     [=] { return g(make_udp(A, 62001, Topology::kOtherNeigh, 53)); },
		     KVX_R_XDP_TO_TC, TC_ACT_SHOT, KVX_R_DROP_OTHER_IFACE});
	c.push_back({"NextHopWithoutNeighbour", false, nullptr, nullptr,
		     [=] { return g(make_udp(A, 62001, ip4(10, 77, 0, 9), 53)); },
		     KVX_R_XDP_TO_TC_DEV, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, [](const Packet &in) {
			     Packet p = snat(in, 62001);
			     p.src_mac = in.src_mac;
			     p.dst_mac = in.dst_mac;
			     return p;
		     }});
	c.push_back({"UplinkWithoutTx", false, nullptr,
		     [](Datapath &d) { d.xdev_update(topo().uplink_ifindex, Topology::kUplinkMac, 0); },
		     [=] { return g(make_udp(A, 62001, R, 53)); }, KVX_R_XDP_TO_TC_DEV,
		     TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62001)});
	c.push_back({"UplinkNotInXdev", false, nullptr,
		     [](Datapath &d) { d.xdev_delete(topo().uplink_ifindex); },
		     [=] { return g(make_tcp(A, 62000, R, 443)); }, KVX_R_XDP_TO_TC_DEV,
		     TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62000)});
	// Not kvmxdp's to translate (or not to the host): uncounted.
	c.push_back({"NotToTheBridgeMac", false, nullptr, nullptr,
		     [=] {
			     return with(g(make_udp(A, 62001, R, 53)),
					 [](Packet &p) { p.dst_mac = kGuestBMac; });
		     },
		     std::nullopt, TC_ACT_OK, KVX_R_PASS_OTHERHOST});
	c.push_back({"BroadcastMacToRemote", false, nullptr, nullptr,
		     [=] {
			     return with(g(make_udp(A, 62001, R, 53)), [](Packet &p) {
				     p.dst_mac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
			     });
		     },
		     std::nullopt, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, keep(62001)});
	c.push_back({"BridgeNotInXdev", false, nullptr,
		     [](Datapath &d) { d.xdev_delete(topo().bridge_ifindex); },
		     [=] { return g(make_udp(A, 62001, R, 53)); }, std::nullopt, TC_ACT_REDIRECT,
		     KVX_R_XLATE_OUT, keep(62001)});
	c.push_back({"Arp", false, nullptr, nullptr, [=] { return g(make_ethertype(kEthArp, 28)); },
		     std::nullopt, TC_ACT_OK, KVX_R_PASS_NOT_IP});
	c.push_back({"Ipv6", false, nullptr, nullptr, [=] { return g(make_ethertype(kEthIpv6, 60)); },
		     std::nullopt, TC_ACT_OK, KVX_R_PASS_NOT_IP});
	c.push_back({"VlanTagged", false, nullptr, nullptr,
		     [=] {
			     return with(g(make_udp(A, 62001, R, 53)),
					 [](Packet &p) { p.vlan_tags = {7}; });
		     },
		     std::nullopt, TC_ACT_OK, KVX_R_PASS_NOT_IP});
	c.push_back({"MalformedIhl", false, nullptr, nullptr,
		     [=] { return g(with(make_udp(A, 62001, R, 53), [](Packet &p) { p.ihl = 3; })); },
		     std::nullopt, TC_ACT_SHOT, KVX_R_DROP_MALFORMED});
	c.push_back({"DhcpDiscover", false, nullptr, nullptr,
		     [=] {
			     return with(g(make_udp(0, 68, 0xffffffff, 67, 240)), [](Packet &p) {
				     p.src_mac = kGuestAMac;
				     p.dst_mac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
			     });
		     },
		     std::nullopt, TC_ACT_OK, KVX_R_PASS_LOCAL});
	c.push_back({"GuestToGuest", false, nullptr, nullptr,
		     [=] { return g(make_tcp(A, 62000, B, 22)); }, std::nullopt, TC_ACT_OK,
		     KVX_R_PASS_LOCAL});
	c.push_back({"ToBridgeAddress", false, nullptr, nullptr,
		     [=] { return g(make_tcp(A, 62000, Topology::kBridgeAddr, 22)); }, std::nullopt,
		     TC_ACT_OK, KVX_R_PASS_LOCAL});
	c.push_back({"Multicast", false, nullptr, nullptr,
		     [=] { return g(make_udp(A, 5353, ip4(224, 0, 0, 251), 5353)); }, std::nullopt,
		     TC_ACT_OK, KVX_R_PASS_MCAST});
	c.push_back({"SpoofedSource", false, nullptr, nullptr,
		     [=] {
			     return with(g(make_udp(A, 62001, R, 53)),
					 [](Packet &p) { p.src = ip4(10, 1, 2, 3); });
		     },
		     std::nullopt, TC_ACT_SHOT, KVX_R_DROP_SPOOFED});

	// --- outside -> guest (kvx_xdp_up); guest A's flows exist ---
	const Packet tcp_reply = reply_to(snat(make_tcp(A, 62000, R, 443), 62000));
	const Packet udp_reply = reply_to(snat(make_udp(A, 62001, R, 53), 62001));
	c.push_back({"OffloadedTcpReply", true, nullptr, nullptr,
		     [=] { return offloaded(tcp_reply); }, KVX_R_XDP_TO_TC_CSUM, TC_ACT_REDIRECT,
		     KVX_R_XLATE_IN, back(62000), true});
	c.push_back({"OffloadedUdpReply", true, nullptr, nullptr,
		     [=] { return offloaded(udp_reply); }, KVX_R_XDP_TO_TC_CSUM, TC_ACT_REDIRECT,
		     KVX_R_XLATE_IN, back(62001), true});
	c.push_back({"CorruptedReply", true, nullptr, nullptr, [=] { return corrupted(tcp_reply); },
		     KVX_R_XDP_TO_TC_CSUM, TC_ACT_REDIRECT, KVX_R_XLATE_IN, back(62000), true});
	c.push_back({"GuestMacNotLearnt", true, nullptr,
		     [](Datapath &d) { d.xfdb_delete(kGuestAMac); }, [=] { return udp_reply; },
		     KVX_R_XDP_TO_TC_DEV, TC_ACT_REDIRECT, KVX_R_XLATE_IN, back(62001)});
	c.push_back({"GuestPortWithoutTx", true, nullptr,
		     [](Datapath &d) {
			     d.xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac,
					   KVX_XDEV_F_PORT);
		     },
		     [=] { return udp_reply; }, KVX_R_XDP_TO_TC_DEV, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		     back(62001)});
	c.push_back({"GuestPortNotInXdev", true, nullptr,
		     [](Datapath &d) { d.xdev_delete(topo().bridge_port_ifindex); },
		     [=] { return tcp_reply; }, KVX_R_XDP_TO_TC_DEV, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		     back(62000)});
	c.push_back({"GuestLearntOnANonPort", true, nullptr,
		     [](Datapath &d) { learn(d, kGuestA, topo().uplink_ifindex); },
		     [=] { return tcp_reply; }, KVX_R_XDP_TO_TC_DEV, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		     back(62000)});
	// The forward has not learnt A's MAC: XDP leaves it to TC, which
	// delivers to the owner of A's address (kvx_guest), from the bridge.
	c.push_back({"PortForwardGuestMacUnknown", true, nullptr,
		     [=](Datapath &d) { add_port_forward(d, kProtoTcp, U, 8080, A, 80); },
		     [=] { return u(make_tcp(R, 6000, U, 8080)); }, KVX_R_XDP_TO_TC_DEV,
		     TC_ACT_REDIRECT, KVX_R_XLATE_IN, back(80)});
	c.push_back({"TtlOneToBinding", true, nullptr, nullptr,
		     [=] { return with(udp_reply, [](Packet &p) { p.ttl = 1; }); }, KVX_R_XDP_TO_TC,
		     TC_ACT_SHOT, KVX_R_DROP_TTL_IN});
	// ICMP and fragments on the uplink are left to TC without a lookup
	// (uncounted, like the host's own ICMP).
	c.push_back({"IcmpEchoReply", true, nullptr, nullptr,
		     [=] { return reply_to(snat(make_icmp_echo(A, R, 62002), 62002)); }, std::nullopt,
		     TC_ACT_REDIRECT, KVX_R_XLATE_IN, back(62002)});
	c.push_back({"LaterFragmentToBinding", true, nullptr, nullptr,
		     [=] {
			     Packet p = make_ip_proto(R, U, kProtoUdp, 64);
			     p.df = false;
			     p.frag_offset = 100;
			     p.raw_l4 = true;
			     return u(p);
		     },
		     std::nullopt, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST});
	c.push_back({"HostsOwnTraffic", true, nullptr, nullptr,
		     [=] { return u(make_tcp(Topology::kGatewayAddr, 50000, U, 22)); }, std::nullopt,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	// Not asked for by a flow of the binding: the host's, counted once (by TC).
	c.push_back({"UnsolicitedToBinding", true, nullptr, nullptr,
		     [=] { return u(make_udp(kRemote2, 53, U, 62001)); }, std::nullopt, TC_ACT_OK,
		     KVX_R_PASS_HOST});
	c.push_back({"ToUnboundPort", true, nullptr, nullptr,
		     [=] { return u(make_udp(R, 53, U, 62999)); }, std::nullopt, TC_ACT_OK,
		     KVX_R_PASS_HOST});
	c.push_back({"ToOtherAddress", true, nullptr, nullptr,
		     [=] { return u(make_udp(R, 53, ip4(10, 77, 0, 5), 62001)); }, std::nullopt,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	c.push_back({"ToGuestSubnet", true, nullptr, nullptr,
		     [=] { return u(make_udp(R, 53, A, 62001)); }, std::nullopt, TC_ACT_SHOT,
		     KVX_R_DROP_TO_SUBNET});
	c.push_back({"SuspendedMappedAddress", true, nullptr,
		     [=](Datapath &d) {
			     add_one_to_one(d, kMappedAddr, A, KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED);
		     },
		     [=] { return u(make_tcp(R, 5555, kMappedAddr, 22)); }, std::nullopt, TC_ACT_OK,
		     KVX_R_PASS_SUSPENDED});
	c.push_back({"ArpOnUplink", true, nullptr, nullptr,
		     [=] { return u(make_ethertype(kEthArp, 28)); }, std::nullopt, TC_ACT_OK,
		     KVX_R_PASS_NOT_IP});
	c.push_back({"MalformedVersion", true, nullptr, nullptr,
		     [=] { return with(udp_reply, [](Packet &p) { p.version = 5; }); }, std::nullopt,
		     TC_ACT_OK, KVX_R_PASS_HOST});
	return c;
}

INSTANTIATE_TEST_SUITE_P(Table, XdpHandoff, ::testing::ValuesIn(handoff_cases()),
			 [](const ::testing::TestParamInfo<HandoffCase> &i) { return i.param.name; });

// A MAC placed on no port (a new port's guest: XDP is there a moment
// before the port guard, and the guest's ARP went before it) is placed on
// its port by the XDP port program, as the guard would have: its first flow
// counts in its port's quota slot, not in the one all unplaced MACs share.
// Only once its source passed the owner check (a frame with another's
// address places nothing); past the port's budget, shared with the guard
// (abi.h kvx_brplace), the frame is dropped, as the guard drops it.
TEST_F(XdpTest, PlacesAMacOfNoPortOnItsPort)
{
	fresh(nullptr, nullptr);
	dp().guard_until_set(boot_ns() + KVX_GUARD_LEASE_NS);
	const std::uint32_t port = topo().bridge_port_ifindex;
	const std::uint32_t a = ip4(192, 168, 122, 60), b = ip4(192, 168, 122, 61);
	const Mac ma{0x52, 0x54, 0x00, 0x00, 0x07, 0x30}, mb{0x52, 0x54, 0x00, 0x00, 0x07, 0x31};
	Packet p = from_guest(make_udp(a, 62001, kRemote1, 53));
	p.src_mac = ma;
	const Shot x = shoot(Prog::XdpPort, p.build());
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_REDIRECT"));
	const auto v = dp().brport_lookup(ma);
	ASSERT_TRUE(v) << "not placed";
	EXPECT_EQ(v->ifindex, port);
	EXPECT_EQ(v->flags, 0u) << "placed, not held";
	EXPECT_EQ(dp().gflows_slot(a), kvx_port_slot(port, dp().cfg().guest_seed));
	EXPECT_EQ(dp().gflows(a), 1u);
	const auto budget = dp().brplace_lookup(port);
	ASSERT_TRUE(budget);
	EXPECT_EQ(budget->placed, 1u);
	// mb with a's address (owned by ma): refused by the owner check,
	// nothing placed.
	Packet s = from_guest(make_udp(a, 62003, kRemote1, 53));
	s.src_mac = mb;
	const Bytes sb = s.build();
	EXPECT_EQ(shoot(Prog::XdpPort, sb).counted, counted(KVX_R_DROP_SPOOF_MAC, sb.size()));
	EXPECT_FALSE(dp().brport_lookup(mb)) << "placed by a spoofed frame";
	// The port's budget spent (by the guard, say): the next new MAC's
	// frame is dropped, nothing translated.
	dp().brplace_set(port, budget->window_ns, KVX_BRPLACE_PER_WINDOW);
	Packet q = from_guest(make_udp(b, 62002, kRemote1, 53));
	q.src_mac = mb;
	const Bytes qb = q.build();
	const Shot y = shoot(Prog::XdpPort, qb);
	EXPECT_EQ(xdp_verdict_name(y.verdict), std::string("XDP_DROP"));
	EXPECT_EQ(y.counted, counted(KVX_R_DROP_MAC_NEW, qb.size()));
	EXPECT_FALSE(dp().brport_lookup(mb)) << "placed beyond the port's budget";
	EXPECT_EQ(dp().gflows(b), 0u) << "counted in the shared slot";
}

// Too big for the uplink: XDP asks the fib lookup with the IP length and
// leaves it to TC, which answers as always (frag needed / drop).
TEST_F(XdpTest, TooBigIsLeftToTc)
{
	UplinkMtu mtu(1280);
	for (bool df : {true, false}) {
		SCOPED_TRACE(df ? "DF" : "no DF");
		Packet p = from_guest(make_udp(kGuestA, 62001, kRemote1, 53, 1400 - 28));
		p.df = df;
		const Bytes in = p.build();
		const Shot x = shoot(Prog::XdpPort, in);
		EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_PASS"));
		EXPECT_EQ(x.counted, counted(KVX_R_XDP_TO_TC, in.size()));
		EXPECT_EQ(diff(x.out, in), "");
		const Shot t = shoot(Prog::BrIngress, x.out);
		EXPECT_EQ(t.counted, counted(df ? KVX_R_PASS_MTU : KVX_R_DROP_TOO_BIG, in.size()));
		EXPECT_TRUE(dp().bind_entries().empty());
	}
}

// Too big for the bridge (or the guest's port) on the way in: the redirect
// to the port would skip the bridge's MTU, so XDP leaves the frame to TC
// before any table is touched, and TC answers a DF one with fragmentation
// needed (the bridge's MTU) and drops the rest, as it always did.
TEST_F(XdpTest, TooBigForTheBridgeIsLeftToTc)
{
	for (const char *dev : {Topology::kBridge, Topology::kBridgePort}) {
		for (bool df : {true, false}) {
			SCOPED_TRACE(std::string(dev) + (df ? " DF" : " no DF"));
			fresh(nullptr, [](Datapath &d) {
				tc_out(d, from_guest(make_udp(kGuestA, 62001, kRemote1, 53)));
				learn(d, kGuestA);
			});
			DeviceMtu mtu(dev, 1280);
			Packet p = reply_to(
				snat(from_guest(make_udp(kGuestA, 62001, kRemote1, 53)), 62001));
			p.payload = pattern(1400 - 28);
			p.df = df;
			const Bytes in = p.build();
			const std::string before = tables(dp(), true);
			const Shot x = shoot(Prog::XdpUp, in);
			EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_PASS"));
			EXPECT_EQ(x.counted, counted(KVX_R_XDP_TO_TC, in.size()));
			EXPECT_EQ(diff(x.out, in), "");
			EXPECT_EQ(tables(dp(), true), before) << "handed over before any table";
			if (dev != std::string(Topology::kBridge))
				continue; // the bridge's own MTU is TC's test
			const Shot t = shoot(Prog::UpIngress, x.out);
			if (df) {
				const Bytes want = icmp_answer(in, kIcmpDestUnreach, 4,
							       Topology::kUplinkAddr, 1280);
				EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_REDIRECT"));
				EXPECT_EQ(t.counted, counted(KVX_R_DROP_TOO_BIG_IN, in.size()) +
							     " ICMP_SENT +1/+" +
							     std::to_string(want.size()) + "B");
				EXPECT_EQ(diff(t.out, want), "");
			} else {
				EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_SHOT"));
				EXPECT_EQ(t.counted, counted(KVX_R_DROP_TOO_BIG_IN, in.size()));
			}
		}
	}
}

// XDP runs on a port, which has no forwarding of its own: the fib lookup
// names the bridge (cfg.bridge_ifindex), whose forwarding is what counts.
TEST_F(XdpTest, FibLookupIsTheBridges)
{
	const std::string port_fwd =
		std::string("/proc/sys/net/ipv4/conf/") + Topology::kBridgePort + "/forwarding";
	const std::string br_fwd =
		std::string("/proc/sys/net/ipv4/conf/") + Topology::kBridge + "/forwarding";
	ASSERT_EQ(read_sysctl(port_fwd), "0") << "test setup: the port does not forward";
	const Packet p = from_guest(make_udp(kGuestA, 62001, kRemote1, 53));
	const Bytes in = p.build();
	Shot x = shoot(Prog::XdpPort, in);
	EXPECT_EQ(x.counted, counted(KVX_R_XDP_XLATE_OUT, in.size()));
	EXPECT_EQ(diff(x.out, snat(p, 62001).build()), "");

	// Forwarding off on the bridge: FWD_DISABLED, left to TC (DROP_FIB),
	// once the route cache (fib.h: answers for one jiffy) forgot the route.
	fresh(nullptr, nullptr);
	write_sysctl(br_fwd, "0");
	usleep(kJiffyUs);
	x = shoot(Prog::XdpPort, in);
	const Shot t = shoot(Prog::BrIngress, x.out);
	write_sysctl(br_fwd, "1");
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_PASS"));
	EXPECT_EQ(x.counted, counted(KVX_R_XDP_TO_TC, in.size()));
	EXPECT_EQ(t.counted, counted(KVX_R_DROP_FIB, in.size()));
	EXPECT_TRUE(dp().bind_entries().empty());
}

// For real (generic XDP on the devices of the private netns): the guest's
// frame entering kvxbrp0 leaves through the uplink translated without TC,
// the reply entering the uplink reaches the guest's wire through its port.
TEST_F(XdpTest, RedirectsLandOnTheDevices)
{
	XdpAttached port(topo().bridge_port_ifindex, dp().prog_fd(Prog::XdpPort));
	XdpAttached up(topo().uplink_ifindex, dp().prog_fd(Prog::XdpUp));
	Capture uplink_wire(topo().uplink_peer_ifindex);
	Capture guest_wire(topo().bridge_port_peer_ifindex);
	for (const Packet &g : {from_guest(make_tcp(kGuestA, 62220, kRemote1, 443)),
				from_guest(make_udp(kGuestA, 62221, kRemote1, 53, 300))}) {
		SCOPED_TRACE(g.proto == kProtoTcp ? "TCP" : "UDP");
		const Bytes gb = g.build();
		Stats before = dp().stats();
		send_frame(topo().bridge_port_peer_ifindex, gb);
		auto out = uplink_wire.next_ipv4(2000);
		ASSERT_TRUE(out) << "nothing left through the uplink";
		EXPECT_EQ(diff(*out, snat(g, g.sport).build()), "");
		EXPECT_EQ(stats_delta(before, dp().stats()), counted(KVX_R_XDP_XLATE_OUT, gb.size()));

		const Packet reply = reply_to(snat(g, g.sport));
		const Bytes rb = reply.build();
		before = dp().stats();
		send_frame(topo().uplink_peer_ifindex, rb);
		auto in = guest_wire.next_ipv4(2000);
		ASSERT_TRUE(in) << "nothing reached the guest";
		EXPECT_EQ(diff(*in, dnat(reply, kGuestA, g.sport).build()), "");
		EXPECT_EQ(stats_delta(before, dp().stats()), counted(KVX_R_XDP_XLATE_IN, rb.size()));
	}
}

// ---------------------------------------------------------------------------
// Learning (kvx_xfdb)
// ---------------------------------------------------------------------------

TEST_F(XdpTest, LearnsTheGuestsPort)
{
	const Packet p = from_guest(make_udp(kGuestA, 62001, kRemote1, 53));
	EXPECT_FALSE(dp().xfdb_lookup(kGuestAMac));
	const std::uint64_t t0 = boot_ns();
	ASSERT_EQ(shoot(Prog::XdpPort, p.build()).verdict, XDP_REDIRECT);
	auto l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, static_cast<__u32>(topo().bridge_port_ifindex));
	// The datapath's clock is read at most once per jiffy (lib/clock.h):
	// up to one tick (<= 10 ms) behind a fresh reading, never ahead.
	EXPECT_GE(l->seen_ns + 10000000ULL, t0);
	EXPECT_LE(l->seen_ns, boot_ns());
	EXPECT_EQ(dp().xfdb_size(), 1u);

	// Within a second, on the same port: not rewritten.
	ASSERT_EQ(shoot(Prog::XdpPort, p.build()).verdict, XDP_REDIRECT);
	auto l2 = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l2);
	EXPECT_EQ(l2->seen_ns, l->seen_ns) << "refreshed within 1 s";
	EXPECT_EQ(l2->ifindex, l->ifindex);

	// A frame the hand-off takes (ICMP) teaches nothing: it passes the
	// bridge, which learns it itself if the port learns at all.
	const Packet ping = from_guest(make_icmp_echo(kGuestB, kRemote1, 62010));
	EXPECT_EQ(shoot(Prog::XdpPort, ping.build()).counted,
		  counted(KVX_R_XDP_TO_TC, ping.build().size()));
	EXPECT_FALSE(dp().xfdb_lookup(kGuestBMac));

	// The guest moved to another port: rewritten at once.
	const Stats before = dp().stats();
	RunResult r = dp().run(Prog::XdpPort, p.build(), topo().bridge_port2_ifindex);
	EXPECT_EQ(xdp_verdict_name(r.verdict), std::string("XDP_REDIRECT"));
	EXPECT_EQ(stats_delta(before, dp().stats()), counted(KVX_R_XDP_XLATE_OUT, p.build().size()));
	auto l3 = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l3);
	EXPECT_EQ(l3->ifindex, static_cast<__u32>(topo().bridge_port2_ifindex));
	EXPECT_GE(l3->seen_ns, l->seen_ns);

	// Replies now go to that port.
	const Packet reply = reply_to(snat(p, 62001));
	const Shot in = shoot(Prog::XdpUp, reply.build());
	EXPECT_EQ(xdp_verdict_name(in.verdict), std::string("XDP_REDIRECT"));
	EXPECT_EQ(diff(in.out, dnat(reply, kGuestA, 62001).build()), "");
}

// Port overlapping on the fast path (ct.h ovl_share): a guest at its port
// limit sends from a new endpoint through XDP on the port it holds, and the
// reply to that endpoint comes back through XDP to the guest's port,
// translated to the endpoint the claim names, not to the port's owner.
TEST_F(XdpTest, SharedPortBothWays)
{
	set_cfg([](kvx_cfg &c) {
		c.guest_ports = 1;
		c.gw_addr = 0;
	});
	const Packet owner = from_guest(make_udp(kGuestA, 62001, kRemote1, 53));
	ASSERT_EQ(shoot(Prog::XdpPort, owner.build()).verdict, XDP_REDIRECT);
	const Packet tenant = from_guest(make_udp(kGuestA, 62002, kRemote2, 53));
	const Shot out = shoot(Prog::XdpPort, tenant.build());
	EXPECT_EQ(xdp_verdict_name(out.verdict), std::string("XDP_REDIRECT"));
	EXPECT_EQ(diff(out.out, snat(tenant, 62001).build()), "");
	for (const Packet *g : {&tenant, &owner}) {
		const Packet reply = reply_to(snat(*g, 62001));
		const Shot in = shoot(Prog::XdpUp, reply.build());
		EXPECT_EQ(xdp_verdict_name(in.verdict), std::string("XDP_REDIRECT"));
		EXPECT_EQ(diff(in.out, dnat(reply, kGuestA, g->sport).build()), "");
	}
}

// Per-guest counters (kvx_gstats) on the fast path: each way once, and a
// frame XDP hands to TC is charged once, by TC.
TEST_F(XdpTest, GuestCountersEachWayOnce)
{
	fresh(nullptr, nullptr);
	const Packet p = from_guest(make_udp(kGuestA, 62001, kRemote1, 53));
	ASSERT_EQ(shoot(Prog::XdpPort, p.build()).verdict, XDP_REDIRECT);
	const Packet reply = reply_to(snat(p, 62001));
	ASSERT_EQ(shoot(Prog::XdpUp, reply.build()).verdict, XDP_REDIRECT);
	kvx_gstat g = dp().gstats(kGuestA);
	EXPECT_EQ(g.pkts_out, 1u);
	EXPECT_EQ(g.bytes_out, p.build().size());
	EXPECT_EQ(g.pkts_in, 1u);
	EXPECT_EQ(g.bytes_in, reply.build().size());

	const Packet ping = from_guest(make_icmp_echo(kGuestA, kRemote1, 62010));
	EXPECT_EQ(shoot(Prog::XdpPort, ping.build()).counted,
		  counted(KVX_R_XDP_TO_TC, ping.build().size()));
	EXPECT_EQ(dp().gstats(kGuestA).pkts_out, 1u) << "handed to TC: not charged by XDP";
	RunResult r = dp().run(Prog::BrIngress, ping.build(), topo().bridge_ifindex);
	EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
	g = dp().gstats(kGuestA);
	EXPECT_EQ(g.pkts_out, 2u);
	EXPECT_EQ(g.bytes_out, p.build().size() + ping.build().size());
}

TEST_F(XdpTest, LearntPortRefreshedAfterASecond)
{
	const Packet p = from_guest(make_udp(kGuestA, 62001, kRemote1, 53));
	kvx_xfdb_val old{};
	old.ifindex = static_cast<__u32>(topo().bridge_port_ifindex);
	old.seen_ns = boot_ns() - 1500000000ull;
	dp().xfdb_update(kGuestAMac, old);
	ASSERT_EQ(shoot(Prog::XdpPort, p.build()).verdict, XDP_REDIRECT);
	auto l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_GT(l->seen_ns, old.seen_ns + 1000000000ull) << "refreshed after more than 1 s";
	EXPECT_EQ(l->ifindex, old.ifindex);
}

// A port the bridge does not learn on (learning off: libvirt's
// macTableManager='libvirt'; locked): no KVX_XDEV_F_LEARN.  Its frames are
// translated all the same but teach kvx_xfdb nothing, so a guest there
// that sends with another guest's MAC and address takes none of that
// guest's replies: the entry the daemon copied from the bridge (guest A's
// static entry on kvxbrp1) stays as it was, and the uplink program
// delivers by it.  With the flag, the same frame moves the MAC at once, as
// the bridge's own learning would.
TEST_F(XdpTest, NoLearningWhereTheBridgeDoesNotLearn)
{
	const auto port1 = static_cast<__u32>(topo().bridge_port_ifindex);
	const auto port2 = static_cast<__u32>(topo().bridge_port2_ifindex);
	dp().xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_TX);
	const Packet p = from_guest(make_udp(kGuestA, 62001, kRemote1, 53));
	Shot s = shoot(Prog::XdpPort, p.build());
	EXPECT_EQ(xdp_verdict_name(s.verdict), std::string("XDP_REDIRECT"));
	EXPECT_EQ(s.counted, counted(KVX_R_XDP_XLATE_OUT, p.build().size()));
	EXPECT_EQ(diff(s.out, snat(p, 62001).build()), "");
	EXPECT_FALSE(dp().xfdb_lookup(kGuestAMac)) << "learnt on a port without KVX_XDEV_F_LEARN";
	EXPECT_EQ(dp().xfdb_size(), 0u);

	kvx_xfdb_val bridge_entry{};
	bridge_entry.ifindex = port2;
	dp().xfdb_update(kGuestAMac, bridge_entry);
	const Packet spoof = from_guest(make_udp(kGuestA, 62002, kRemote1, 53));
	s = shoot(Prog::XdpPort, spoof.build());
	EXPECT_EQ(s.counted, counted(KVX_R_XDP_XLATE_OUT, spoof.build().size()));
	auto l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, port2) << "the bridge's entry moved by a frame on kvxbrp0";
	EXPECT_EQ(l->seen_ns, 0u);
	EXPECT_EQ(dp().xfdb_size(), 1u);
	// The reply to that frame goes where the bridge's entry says: with
	// kvxbrp1 no redirect target, XDP hands it to TC (the bridge decides)
	// instead of redirecting it into kvxbrp0.
	dp().xdev_update(topo().bridge_port2_ifindex, Topology::kBridgePort2Mac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_LEARN);
	const Packet reply = reply_to(snat(spoof, 62002));
	EXPECT_EQ(shoot(Prog::XdpUp, reply.build()).counted,
		  counted(KVX_R_XDP_TO_TC_DEV, reply.build().size()));

	dp().xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_TX | KVX_XDEV_F_LEARN);
	s = shoot(Prog::XdpPort, spoof.build());
	EXPECT_EQ(s.counted, counted(KVX_R_XDP_XLATE_OUT, spoof.build().size()));
	l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, port1) << "learnt where the bridge learns";
	EXPECT_GT(l->seen_ns, 0u);
	const Shot in = shoot(Prog::XdpUp, reply.build());
	EXPECT_EQ(xdp_verdict_name(in.verdict), std::string("XDP_REDIRECT"));
	EXPECT_EQ(in.counted, counted(KVX_R_XDP_XLATE_IN, reply.build().size()));
}

// The other way round: a guest on a port the bridge learns on sends with
// the MAC the bridge holds (statically) on a port that does not learn
// (libvirt's entry for its owner).  XDP learns nothing over the daemon's
// copy of that entry: the owner's replies keep going to the owner's port.
// Only the bridge moves it (the daemon follows the bridge at its sync).
TEST_F(XdpTest, NoLearningOverAnEntryOfAPortThatDoesNotLearn)
{
	const auto port2 = static_cast<__u32>(topo().bridge_port2_ifindex);
	dp().xdev_update(topo().bridge_port2_ifindex, Topology::kBridgePort2Mac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_TX);
	kvx_xfdb_val bridge_entry{};
	bridge_entry.ifindex = port2;
	dp().xfdb_update(kGuestAMac, bridge_entry);
	const Packet spoof = from_guest(make_udp(kGuestA, 62003, kRemote1, 53));
	Shot s = shoot(Prog::XdpPort, spoof.build());
	EXPECT_EQ(s.counted, counted(KVX_R_XDP_XLATE_OUT, spoof.build().size()));
	auto l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, port2) << "a frame on a learning port moved a MAC of a port "
					"that does not learn";
	EXPECT_EQ(l->seen_ns, 0u);

	// An XDP sighting (seen_ns set) on that port, or the port learning
	// again: a frame elsewhere moves it, as the bridge would.
	bridge_entry.seen_ns = boot_ns() - 2000000000ull;
	dp().xfdb_update(kGuestAMac, bridge_entry);
	shoot(Prog::XdpPort, spoof.build());
	l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, static_cast<__u32>(topo().bridge_port_ifindex));
}

// A static entry on a port that learns (an administrator's `static
// sticky`, which the README recommends): the daemon's copy carries
// KVX_XFDB_F_STATIC, and a frame with that MAC on another learning port
// moves nothing; without the mark, it moves at once.
TEST_F(XdpTest, NoLearningOverAStaticEntry)
{
	const auto port2 = static_cast<__u32>(topo().bridge_port2_ifindex);
	dp().xdev_update(topo().bridge_port2_ifindex, Topology::kBridgePort2Mac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_TX | KVX_XDEV_F_LEARN);
	kvx_xfdb_val bridge_entry{};
	bridge_entry.ifindex = port2;
	bridge_entry.flags = KVX_XFDB_F_STATIC;
	dp().xfdb_update(kGuestAMac, bridge_entry);
	const Packet spoof = from_guest(make_udp(kGuestA, 62004, kRemote1, 53));
	EXPECT_EQ(shoot(Prog::XdpPort, spoof.build()).counted,
		  counted(KVX_R_XDP_XLATE_OUT, spoof.build().size()));
	auto l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, port2) << "a frame on another port moved a static entry";
	EXPECT_EQ(l->flags, KVX_XFDB_F_STATIC);
	EXPECT_EQ(l->seen_ns, 0u);

	bridge_entry.flags = 0;
	dp().xfdb_update(kGuestAMac, bridge_entry);
	shoot(Prog::XdpPort, spoof.build());
	l = dp().xfdb_lookup(kGuestAMac);
	ASSERT_TRUE(l);
	EXPECT_EQ(l->ifindex, static_cast<__u32>(topo().bridge_port_ifindex))
		<< "a learnt entry of a learning port follows the frame";
}

TEST_F(XdpTest, FramesNotForTheHostTeachNothing)
{
	// Another guest's unicast, a broadcast: the bridge's business.
	Packet p = from_guest(make_udp(kGuestA, 62001, kGuestB, 53));
	p.dst_mac = kGuestBMac;
	EXPECT_EQ(shoot(Prog::XdpPort, p.build()).counted, "");
	p.dst_mac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	EXPECT_EQ(shoot(Prog::XdpPort, p.build()).counted, "");
	EXPECT_EQ(dp().xfdb_size(), 0u);
}

TEST_F(XdpTest, GroupAndZeroSourceMacsAreNotLearnt)
{
	// Addressed to the host, but from a source no station sends (a group
	// address, all zeros; the bridge drops them): dropped as spoofed,
	// never learnt, and they own no address.
	for (auto src : {std::array<uint8_t, 6>{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01},
			 std::array<uint8_t, 6>{0, 0, 0, 0, 0, 0}}) {
		Packet p = from_guest(make_udp(kGuestA, 62002, kRemote1, 53));
		p.src_mac = src;
		const Shot s = shoot(Prog::XdpPort, p.build());
		EXPECT_EQ(s.verdict, XDP_DROP);
		EXPECT_EQ(s.counted, counted(KVX_R_DROP_SPOOF_MAC, p.build().size()));
	}
	EXPECT_EQ(dp().xfdb_size(), 0u);
	EXPECT_FALSE(dp().guest_lookup(kGuestA));
	Packet p = from_guest(make_udp(kGuestA, 62003, kRemote1, 53));
	shoot(Prog::XdpPort, p.build());
	EXPECT_EQ(dp().xfdb_size(), 1u) << "the guest's own MAC is learnt";
}

TEST_F(XdpTest, SpoofedSourceIsDroppedAndNotLearnt)
{
	// B owns its address; A's frame with B's address is dropped exactly as
	// TC drops it, and its MAC is not learnt on the port (the daemon would
	// push it into the bridge's FDB).
	const Packet b = from_guest(make_udp(kGuestB, 62001, kRemote1, 53));
	ASSERT_EQ(shoot(Prog::XdpPort, b.build()).verdict, XDP_REDIRECT);
	Packet spoof = from_guest(make_udp(kGuestB, 62002, kRemote1, 53));
	spoof.src_mac = kGuestAMac;
	const std::size_t binds = dp().bind_entries().size();
	const Shot s = shoot(Prog::XdpPort, spoof.build());
	EXPECT_EQ(s.verdict, XDP_DROP);
	EXPECT_EQ(s.counted, counted(KVX_R_DROP_SPOOF_MAC, spoof.build().size()));
	EXPECT_FALSE(dp().xfdb_lookup(kGuestAMac)) << "the spoofer's MAC was learnt";
	EXPECT_EQ(dp().bind_entries().size(), binds);
	EXPECT_EQ(owner_of(dp(), kGuestB), kGuestBMac);
	run_case(dp(), Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
}

// ---------------------------------------------------------------------------
// Mutated frames: whatever XDP does, TC agrees
// ---------------------------------------------------------------------------

// Seeded mutations (header bit flips, truncations, lengths, ihl, padding)
// of valid frames both ways, each from the same state (guest A's flows, its
// MAC learnt): XDP either passes the frame untouched with no table changed
// (then it is TC's), or decides exactly as TC does from the same state:
// redirect with the same bytes, or drop with the same reason.
TEST_F(XdpIdentity, MutatedFramesAgreeWithTc)
{
	const auto setup = [](Datapath &d) {
		tc_out(d, from_guest(make_tcp(kGuestA, 62000, kRemote1, 443)));
		tc_out(d, from_guest(make_udp(kGuestA, 62001, kRemote1, 53, 40)));
		learn(d, kGuestA);
	};
	std::vector<std::pair<bool, Bytes>> valid;
	for (const Packet &p : {make_tcp(kGuestA, 62000, kRemote1, 443, kTcpAck),
				make_udp(kGuestA, 62001, kRemote1, 53, 40),
				make_tcp(kGuestA, 62005, kRemote2, 80)}) {
		valid.emplace_back(false, from_guest(p).build());
		valid.emplace_back(true, reply_to(snat(p, p.sport)).build());
	}
	Mutator m(0x5eed);
	int translated = 0, handed = 0, dropped = 0;
	for (int i = 0; i < 1000; i++) {
		const auto &[inbound, base] = valid[m.next(static_cast<std::uint32_t>(valid.size()))];
		const Bytes in = m.mutate(base);
		SCOPED_TRACE("mutation " + std::to_string(i) + (inbound ? " inbound: " : " outbound: ") +
			     hex(in));
		const Prog tcp = inbound ? Prog::UpIngress : Prog::BrIngress;
		const Prog xdp = inbound ? Prog::XdpUp : Prog::XdpPort;
		fresh(nullptr, setup);
		const std::string before = tables(dp(), true);
		const Shot x = shoot(xdp, in);
		if (x.verdict == XDP_PASS) {
			handed++;
			EXPECT_EQ(diff(x.out, in), "");
			EXPECT_EQ(tables(dp(), true), before);
			EXPECT_TRUE(x.counted.empty() || x.counted.rfind("XDP_TO_TC", 0) == 0)
				<< x.counted;
		} else {
			const std::string xdp_tables = tables(dp(), false);
			fresh(nullptr, setup);
			const Shot t = shoot(tcp, in);
			if (x.verdict == XDP_REDIRECT) {
				translated++;
				EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_REDIRECT"));
				EXPECT_EQ("XDP_" + t.counted, x.counted);
				EXPECT_EQ(diff(x.out, t.out), "") << "XDP (got) vs TC (want)";
			} else {
				dropped++;
				EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_DROP"));
				EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_SHOT"));
				EXPECT_EQ(x.counted, t.counted);
				EXPECT_EQ(diff(x.out, in), "");
			}
			EXPECT_EQ(xdp_tables, tables(dp(), false));
		}
		if (HasFailure())
			return;
	}
	// The mutations must reach every outcome, or the test proves little.
	EXPECT_GT(translated, 50);
	EXPECT_GT(handed, 50);
	std::cout << "[ mutations ] " << translated << " translated alike, " << handed
		  << " handed to TC, " << dropped << " dropped alike\n";
}

// ---------------------------------------------------------------------------
// Drops XDP decides itself: the same reason, frame and tables as TC's
// ---------------------------------------------------------------------------

struct DropCase {
	std::string name;
	bool inbound;
	std::function<void(kvx_cfg &)> cfg;
	std::function<void(Datapath &)> setup;
	std::function<Packet()> pkt;
	kvx_reason reason;
	bool refused = false; // no mapping: TC answers, XDP hands over
};

void PrintTo(const DropCase &c, std::ostream *os)
{
	*os << c.name;
}

class XdpDrops : public XdpTest, public ::testing::WithParamInterface<DropCase> {};

TEST_P(XdpDrops, SameAsTc)
{
	const DropCase &c = GetParam();
	const Bytes in = c.pkt().build();
	fresh(c.cfg, c.setup);
	const std::string tc_before = tables(dp(), true);
	const Shot t = shoot(c.inbound ? Prog::UpIngress : Prog::BrIngress, in);
	const std::string tc_after = tables(dp(), true);
	fresh(c.cfg, c.setup);
	const std::string xdp_before = tables(dp(), true);
	const Shot x = shoot(c.inbound ? Prog::XdpUp : Prog::XdpPort, in);
	const std::string xdp_after = tables(dp(), true);

	EXPECT_EQ(diff(x.out, in), "");
	if (c.refused) {
		// TC answers a refused guest (nat.h refusal_code), which XDP
		// cannot: it hands the frame over unchanged, before any change.
		const Bytes answer =
			icmp_answer(in, kIcmpDestUnreach, 13, ntohl(dp().cfg().gw_addr));
		EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_REDIRECT"));
		EXPECT_EQ(t.counted, counted(c.reason, in.size()) + " ICMP_SENT +1/+" +
					     std::to_string(answer.size()) + "B");
		EXPECT_EQ(diff(t.out, answer), "");
		EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_PASS"));
		EXPECT_EQ(x.counted, counted(KVX_R_XDP_TO_TC, in.size()));
		EXPECT_EQ(tc_after, tc_before) << "TC's drop changed a table";
		EXPECT_EQ(xdp_after, xdp_before) << "XDP's refusal changed a table";
		return;
	}
	EXPECT_EQ(verdict_name(t.verdict), std::string("TC_ACT_SHOT"));
	EXPECT_EQ(t.counted, counted(c.reason, in.size()));
	EXPECT_EQ(xdp_verdict_name(x.verdict), std::string("XDP_DROP"));
	EXPECT_EQ(x.counted, counted(c.reason, in.size()));
	EXPECT_EQ(tc_after, tc_before) << "TC's drop changed a table";
	EXPECT_EQ(xdp_after, xdp_before) << "XDP's drop changed a table";
}

std::vector<DropCase> drop_cases()
{
	const std::uint32_t A = kGuestA, B = kGuestB, R = kRemote1, R2 = kRemote2, U = kUplink;
	std::vector<DropCase> c;
	for (std::uint8_t flags : {kTcpFin, kTcpRst, std::uint8_t(kTcpFin | kTcpAck),
				   std::uint8_t(kTcpSyn | kTcpAck), std::uint8_t(0)}) {
		c.push_back({"TcpNoFlowFlags" + std::to_string(flags), false, nullptr, nullptr,
			     [=] { return from_guest(make_tcp(A, 62000, R, 443, flags)); },
			     KVX_R_DROP_TCP_NO_FLOW});
	}
	c.push_back({"GuestQuota", false, [](kvx_cfg &cf) { cf.flow_quota = 1; },
		     [=](Datapath &d) { tc_out(d, from_guest(make_udp(A, 62001, R, 53))); },
		     [=] { return from_guest(make_udp(A, 62001, R2, 53)); }, KVX_R_DROP_GUEST_QUOTA,
		     true});
	c.push_back({"PortsExhausted", false,
		     [](kvx_cfg &cf) { cf.nat_port_lo = cf.nat_port_hi = 61000; },
		     [=](Datapath &d) { tc_out(d, from_guest(make_udp(B, 40000, R, 53))); },
		     [=] { return from_guest(make_udp(A, 40001, R, 53)); },
		     KVX_R_DROP_PORTS_EXHAUSTED, true});
	auto a_flow = [=](Datapath &d) {
		tc_out(d, from_guest(make_udp(A, 62001, R, 53)));
		learn(d, A);
	};
	// A remote's segment far outside an established connection's window,
	// with an ACK the guest never asked for (an old connection's on a
	// reused port): XDP drops it as TC does (ct.h ct_tcp_update).
	c.push_back(
		{"TcpSegmentOfAnotherConnection", true, nullptr,
		 [=](Datapath &d) {
			 const Packet syn = make_tcp(A, 62010, R, 443, kTcpSyn);
			 tc_out(d, from_guest(syn));
			 const Packet sa = reply_to(snat(syn, 62010));
			 ASSERT_EQ(
				 d.run(Prog::UpIngress, sa.build(), topo().uplink_ifindex).verdict,
				 TC_ACT_REDIRECT);
			 Packet ack = make_tcp(A, 62010, R, 443, kTcpAck);
			 ack.seq = syn.seq + 1;
			 ack.ack_seq = sa.seq + 1;
			 tc_out(d, from_guest(ack));
			 learn(d, A);
		 },
		 [=] {
			 Packet p = make_tcp(R, 443, U, 62010, kTcpAck | kTcpPsh);
			 p.seq = 0x55667789u + 900000000u;
			 p.ack_seq = 0x01020305u + 123456789u;
			 return from_uplink(p);
		 },
		 KVX_R_DROP_TCP_WINDOW});
	c.push_back({"BrokenPairInbound", true, nullptr,
		     [=](Datapath &d) {
			     a_flow(d);
			     const kvx_ct_key k = ct_key(kProtoUdp, A, 62001, R, 53);
			     auto ct = d.ct_lookup(k);
			     ASSERT_TRUE(ct);
			     ct->ext_port = be16(62999);
			     d.ct_update(k, *ct);
		     },
		     [=] { return from_uplink(make_udp(R, 53, U, 62001)); }, KVX_R_DROP_BROKEN_PAIR});
	return c;
}

INSTANTIATE_TEST_SUITE_P(Table, XdpDrops, ::testing::ValuesIn(drop_cases()),
			 [](const ::testing::TestParamInfo<DropCase> &i) { return i.param.name; });

} // namespace
} // namespace kvmxdp::test
