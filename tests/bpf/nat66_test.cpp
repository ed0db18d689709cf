// NAT66 (kvx_br6 / kvx_up6, tail-called from kvx_br_ingress / kvx_up_ingress
// for IPv6 frames): round trips with every checksum recomputed from
// scratch (pkt.cpp's Packet6, never the datapath's arithmetic), mapping and
// filtering behaviour, the frames that stay the host's, the ones that are
// dropped, and the extension header walk (each kind, too many, truncated at
// every byte).  The programs run through their entry points, as the kernel
// runs them.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "fixture.hpp"
#include "kvmxdp/ct_rules.h"
#include "nat66_pkt.hpp"
#include "nd6_pkt.hpp"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

// The ICMPv6 error kvmxdp answers a guest's dropped frame with, from
// scratch: from the bridge's link-local address (nat66_cfg) to the sender,
// MACs swapped, hop limit 64, quoting the first 168 bytes (even) of the
// packet, the quoted TCP/UDP checksum replaced as fixture.cpp's
// icmp_answer explains (the value a later checksum completion leaves).
Bytes icmp6_answer(const Bytes &in, std::uint8_t type, std::uint32_t word,
		   const Ip6 &from = ip6("fe80::1"))
{
	const Parsed6 p = parse6(in);
	const std::size_t quote = std::min<std::size_t>(p.ip_end - 14, 168) & ~std::size_t{1};
	Bytes q(in.begin() + 14, in.begin() + static_cast<long>(14 + quote));
	const std::size_t l4 = p.l4_off - 14;
	const std::size_t f = l4 + (p.proto == kProtoTcp ? 16 : 6);
	if (!p.fragment && (p.proto == kProtoTcp || p.proto == kProtoUdp) && f + 2 <= quote) {
		q[f] = q[f + 1] = 0;
		const std::uint32_t sum = 0xffffu ^
					  csum_fold(csum_partial(q.data() + l4, quote - l4));
		const std::uint32_t n = (0xffffu - sum) % 0xffffu;
		const std::uint32_t v = n % 2 ? (n + 0xffffu) / 2 : n / 2;
		q[f] = static_cast<std::uint8_t>(v >> 8);
		q[f + 1] = static_cast<std::uint8_t>(v);
	}
	Packet6 e;
	e.dst_mac = Mac{in[6], in[7], in[8], in[9], in[10], in[11]};
	e.src_mac = Mac{in[0], in[1], in[2], in[3], in[4], in[5]};
	e.src = from;
	e.dst = p.src;
	e.proto = kProtoIcmp6;
	e.icmp_type = type;
	e.icmp_id = static_cast<std::uint16_t>(word >> 16);
	e.icmp_seq = static_cast<std::uint16_t>(word);
	e.payload = q;
	return e.build();
}

Packet6 icmp6_error(const Ip6 &from, const Ip6 &to, std::uint8_t type, std::uint32_t word,
		    const Bytes &frame, std::size_t quote_len = 0);
Bytes quote_of_guest(const Packet6 &guest, const Bytes &translated, std::size_t quote_len);
Packet6 error_to_guest6(const Packet6 &err, const Ip6 &from, const Packet6 &guest_pkt,
			const Bytes &translated, std::size_t quote_len = 0);

class Nat66Test : public DatapathTest {
protected:
	void SetUp() override
	{
		DatapathTest::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		dp().set_cfg6(nat66_cfg());
		place_guests6(dp());
	}

	// The IPv6 guests on bridge ports of their own (as place_guests).
	static void place_guests6(Datapath &d)
	{
		std::uint32_t port = kGuestPortA + 100;
		for (const Ip6 *g : {&kGuest6A, &kGuest6B, &kGuest6C, &kGuest6F})
			d.brport_set(mac_of(*g), port++);
	}

	RunResult run6(Prog prog, const Packet6 &in, int verdict, kvx_reason reason,
		       const std::optional<Packet6> &want = std::nullopt)
	{
		return run_case_bytes(dp(), prog, in.build(), verdict, reason,
				      want ? std::optional<Bytes>(want->build()) : std::nullopt);
	}

	// Guest f's "destination unreachable" (word: its second word) to `to`
	// about `delivered`, guest A's packet a as f got it: turned around to
	// A from f's external address from_ext, quoting a as A sent it, one
	// hop later.
	void expect_hairpinned_error6(const Ip6 &f, const Ip6 &to, std::uint32_t word,
				      const Bytes &delivered, const Packet6 &a, const Ip6 &from_ext)
	{
		const Packet6 err = from_guest6(icmp6_error(f, to, 1, word, delivered));
		const Packet6 want = error_to_guest6(err, from_ext, a, delivered);
		const RunResult r =
			run6(Prog::BrIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_HAIRPIN, want);
		EXPECT_EQ(check_checksums(r.out), "");
	}

	// A guest's error err about got (the remote's packet back as the
	// guest got it) leaves from ext (the uplink's address, or the guest's
	// mapped one) to the remote, quoting back as the remote sent it (cut
	// as err's quote: quote_len).
	void expect_error_out6(const Packet6 &err, const Packet6 &back, const Bytes &got,
			       std::size_t quote_len = 0, const Ip6 &ext = kUplink6)
	{
		Packet6 want = icmp6_error(ext, back.src, err.icmp_type,
					   std::uint32_t{err.icmp_id} << 16 | err.icmp_seq,
					   quote_of_guest(back, got, quote_len), quote_len);
		want.hop_limit = err.hop_limit - 1;
		want.src_mac = Topology::kUplinkMac;
		want.dst_mac = Topology::kGatewayMac;
		const RunResult r =
			run6(Prog::BrIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_OUT, want);
		EXPECT_EQ(check_checksums(r.out), "");
	}

	// Sends p (from its guest) out and expects it translated; returns the
	// external port (or identifier) it left with.
	std::uint16_t out6(const Packet6 &p, std::uint16_t want_port = 0)
	{
		const Bytes in = p.build();
		const Stats before = dp().stats();
		RunResult r = dp().run(Prog::BrIngress, in, ingress_ifindex(Prog::BrIngress));
		EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)))
			<< "counters: " << stats_delta(before, dp().stats());
		const Parsed6 o = parse6(r.out);
		EXPECT_TRUE(o.ipv6);
		const std::uint16_t port = o.sport;
		if (want_port) {
			EXPECT_EQ(port, want_port);
		}
		EXPECT_EQ(diff(r.out, snat6(p, port).build()), "");
		EXPECT_EQ(check_checksums(r.out), "");
		return port;
	}

	// The remote's ACK of synack (the guest's answer to syn, delivered to
	// [guest]:port) completes the handshake; returns the state of the flow
	// from syn's remote port then (-1: none).
	int ack_in6(const Packet6 &syn, const Packet6 &synack, const Ip6 &guest, std::uint16_t port)
	{
		Packet6 ack = syn;
		ack.tcp_flags = kTcpAck;
		ack.seq = syn.seq + 1;
		ack.ack_seq = synack.seq + 1;
		run6(Prog::UpIngress, ack, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		     dnat6(ack, guest, port));
		int state = -1;
		for (const auto &[k, v] : dp().ct6_entries())
			if (ntohs(k.rem_port) == syn.sport)
				state = v.ct.state;
		return state;
	}

	// A guest's frame dropped for reason and answered with want.
	void answered6(const Packet6 &in, kvx_reason reason, const Bytes &want,
		       Prog prog = Prog::BrIngress)
	{
		answered6(in.build(), reason, want, prog);
	}
	// The same for a frame as built (a fragment).
	void answered6(const Bytes &f, kvx_reason reason, const Bytes &want, Prog prog)
	{
		const Stats before = dp().stats();
		const RunResult r = dp().run(prog, f, ingress_ifindex(prog));
		// stats_delta lists the counters in the order of their reasons.
		const std::string drop =
			std::string(reason_name(reason)) + " +1/+" + std::to_string(f.size()) + "B";
		const std::string sent = "ICMP_SENT +1/+" + std::to_string(want.size()) + "B";
		EXPECT_EQ(stats_delta(before, dp().stats()),
			  reason < KVX_R_ICMP_SENT ? drop + " " + sent : sent + " " + drop);
		EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
		EXPECT_EQ(diff(r.out, want), "");
		EXPECT_EQ(check_checksums(r.out), "");
	}

	void set_eif()
	{
		set_cfg([](kvx_cfg &c) { c.flags |= KVX_CFG_F_EIF; });
	}
};

// --- round trips: TCP, UDP, echo; checksums recomputed independently ---

TEST_F(Nat66Test, TcpRoundTrip)
{
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	const std::uint16_t port = out6(syn);
	EXPECT_GE(port, kNatLo);
	const Packet6 back = reply6(snat6(syn, port));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 40000));

	// Binding pair and flow, as abi.h lays them out.
	const auto binds = dp().bind6_entries();
	ASSERT_EQ(binds.size(), 2u);
	for (const auto &[k, v] : binds) {
		if (k.dir == KVX_BIND_IN) {
			EXPECT_EQ(ntohs(k.port), port);
			EXPECT_EQ(std::memcmp(k.addr, kUplink6.data(), 16), 0);
			EXPECT_EQ(std::memcmp(v.addr, kGuest6A.data(), 16), 0);
			EXPECT_EQ(ntohs(v.bind.port), 40000);
			EXPECT_EQ(std::memcmp(v.bind.guest_mac, mac_of(kGuest6A).data(), 6), 0);
		} else {
			EXPECT_EQ(ntohs(k.port), 40000);
			EXPECT_EQ(std::memcmp(v.addr, kUplink6.data(), 16), 0);
			EXPECT_EQ(ntohs(v.bind.port), port);
		}
	}
	const auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_ESTABLISHED);
	EXPECT_EQ(flows[0].second.ct.pkts_out, 1u);
	EXPECT_EQ(flows[0].second.ct.pkts_in, 1u);
	EXPECT_EQ(ntohs(flows[0].second.ct.ext_port), port);
	EXPECT_EQ(kvx_ct_slot_read(flows[0].second.ct.slot, dp().cfg().guest_seed),
		  dp().mac_slot(mac_of(kGuest6A)))
		<< "the slot it is counted in (kvx_gflows)";

	// The guest's ACK goes out on the same port.
	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = back.seq + 1;
	out6(ack, port);
}

TEST_F(Nat66Test, UdpRoundTrip)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 5353, kRemote6A, 53, 33));
	const std::uint16_t port = out6(q);
	const Packet6 back = reply6(snat6(q, port));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 5353));
}

TEST_F(Nat66Test, UdpPortInPoolIsPreserved)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 62000, kRemote6A, 53));
	out6(q, 62000);
}

TEST_F(Nat66Test, EchoRoundTrip)
{
	const Packet6 ping = from_guest6(make_echo6(kGuest6A, kRemote6A, 0x77));
	const std::uint16_t id = out6(ping);
	const Packet6 back = reply6(snat6(ping, id));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 0x77));
	// The echo request of a remote to the uplink address is the host's.
	Packet6 req = back;
	req.icmp_type = kIcmp6EchoRequest;
	run6(Prog::UpIngress, req, TC_ACT_OK, KVX_R_PASS_HOST);
}

// RFC 4787 REQ-1: one external endpoint for the guest endpoint, whatever
// the remote; two guests get two.
TEST_F(Nat66Test, EndpointIndependentMapping)
{
	const Packet6 a1 = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const Packet6 a2 = from_guest6(make_udp6(kGuest6A, 7000, kRemote6B, 53));
	const Packet6 b1 = from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53));
	const std::uint16_t p1 = out6(a1);
	EXPECT_EQ(out6(a2), p1);
	EXPECT_NE(out6(b1), p1);
	EXPECT_EQ(dp().ct6_entries().size(), 3u);
}

// Address-and-port-dependent filtering by default: another remote to the
// binding is the host's; --eif lets it in (and makes a flow).
TEST_F(Nat66Test, FilteringApdfAndEif)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	Packet6 other = reply6(snat6(q, port));
	other.src = kRemote6B;
	run6(Prog::UpIngress, other, TC_ACT_OK, KVX_R_PASS_HOST);
	set_eif();
	run6(Prog::UpIngress, other, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(other, kGuest6A, 7000));
	EXPECT_EQ(dp().ct6_entries().size(), 2u);
	// EIF opens no TCP flow with anything but a SYN.
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 7001, kRemote6A, 80));
	const std::uint16_t tport = out6(syn);
	Packet6 ack = reply6(snat6(syn, tport));
	ack.src = kRemote6B;
	ack.tcp_flags = kTcpAck;
	run6(Prog::UpIngress, ack, TC_ACT_OK, KVX_R_PASS_HOST);
}

// --- ownership: a binding is its guest MAC's ---

// Guest B sending with guest A's address and port (a UDP packet, a TCP bare
// ACK), on A's flow or a new one, never moves A's binding: dropped, and A's
// inbound traffic still goes to A's MAC.  Only a binding idle for
// KVX_GUEST_IDLE_NS goes to a new MAC (a re-created VM), and only from an
// owner the daemon never placed on a port (owner6.h nd_owner_nat66: a
// placed owner's port keeps its addresses): A and B are not placed here.
TEST_F(Nat66Test, BindingOwnedByItsMac)
{
	dp().brport_delete(mac_of(kGuest6A));
	dp().brport_delete(mac_of(kGuest6B));
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	const std::uint16_t tport = out6(syn);
	const Packet6 synack = reply6(snat6(syn, tport));
	run6(Prog::UpIngress, synack, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
	     dnat6(synack, kGuest6A, 40000));

	Packet6 spoof = q;
	spoof.src_mac = mac_of(kGuest6B);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC); // A's flow
	spoof.dst = kRemote6B;
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC); // A's binding
	Packet6 ack = syn;
	ack.src_mac = mac_of(kGuest6B);
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	run6(Prog::BrIngress, ack, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);

	const Packet6 back = reply6(snat6(q, port));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 7000));
	Packet6 tback = synack;
	tback.tcp_flags = kTcpAck;
	tback.seq = synack.seq + 1;
	run6(Prog::UpIngress, tback, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
	     dnat6(tback, kGuest6A, 40000));
	EXPECT_EQ(dp().ct6_entries().size(), 2u);

	// The UDP binding and A's address idle for KVX_GUEST_IDLE_NS (a VM
	// re-created with another MAC): B's MAC takes it over by a new flow
	// (never by a packet on A's flow), same external port, and its inbound
	// traffic goes to B's MAC.
	kvx_nd_val owner = *dp().nd_lookup(kGuest6A);
	owner.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS + 1000000000ULL);
	dp().nd_update(kGuest6A, owner);
	kvx_bind6_key ik{};
	ik.dir = KVX_BIND_IN;
	ik.proto = kProtoUdp;
	copy_addr(ik.addr, kUplink6);
	ik.port = htons(port);
	auto iv = dp().bind6_lookup(ik);
	ASSERT_TRUE(iv.has_value());
	iv->bind.last_used_ns = boot_ns_ago(KVX_GUEST_IDLE_NS + 1000000000ULL);
	dp().bind6_update(ik, *iv);
	spoof.dst = kRemote6A;
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	spoof.dst = kRemote6B;
	EXPECT_EQ(out6(spoof), port);
	Packet6 to_b = dnat6(back, kGuest6A, 7000);
	to_b.dst_mac = mac_of(kGuest6B);
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, to_b);
	// And A, now the other MAC, is refused until B goes quiet.
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
}

// The OUT half lost (the GC deletes it first), the IN half left: another
// MAC's frame from the guest endpoint does not re-make the pair on it.
TEST_F(Nat66Test, LostOutHalfNotTakenByAnotherMac)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 62000, kRemote6A, 53));
	out6(q, 62000);
	kvx_bind6_key ok{};
	ok.dir = KVX_BIND_OUT;
	ok.proto = kProtoUdp;
	copy_addr(ok.addr, kGuest6A);
	ok.port = htons(62000);
	dp().bind6_delete(ok);
	Packet6 spoof = q;
	spoof.src_mac = mac_of(kGuest6B);
	spoof.dst = kRemote6B;
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(dp().bind6_entries().size(), 1u);
	// The owner re-makes it, on the same port.
	Packet6 again = q;
	again.dst = kRemote6B;
	out6(again, 62000);
	EXPECT_EQ(dp().bind6_entries().size(), 2u);
}

// --- TCP flows open with a SYN, or pick a lost connection up ---

// A connection whose flow the datapath lost (`conntrack flush`, a reclaim,
// tables not kept over an upgrade) is picked up by the guest's next
// segment, as IPv4's: a bare ACK (with data or not) makes an ESTABLISHED
// flow on the endpoint's binding, so the remote sees the same external
// port, and the remote's answer comes back.  A FIN, a RST or no flags open
// nothing (the remote's answer to them would find a way in).
TEST_F(Nat66Test, BareAckPicksUpALostFlow)
{
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	const std::uint16_t port = out6(syn);
	for (const auto &[k, v] : dp().ct6_entries())
		dp().ct6_delete(k);
	ASSERT_TRUE(dp().ct6_entries().empty());
	ASSERT_EQ(dp().bind6_entries().size(), 2u);

	Packet6 lone = syn;
	for (int f : {kTcpFin | kTcpAck, kTcpRst | 0, kTcpRst | kTcpAck, 0}) {
		lone.tcp_flags = static_cast<std::uint8_t>(f);
		run6(Prog::BrIngress, lone, TC_ACT_SHOT, KVX_R_DROP_TCP_NO_FLOW);
	}
	EXPECT_TRUE(dp().ct6_entries().empty());

	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck | kTcpPsh;
	ack.seq = syn.seq + 1000;
	ack.ack_seq = 77777;
	ack.payload = pattern(100, 0x44);
	out6(ack, port);
	const kvx_cfg c = dp().cfg();
	auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_ESTABLISHED);
	EXPECT_EQ(ntohs(flows[0].second.ct.ext_port), port);
	// Unanswered, as short-lived as a SYN's flow; answered, established.
	EXPECT_EQ(kvx_ct_timeout_s(&flows[0].second.ct, kProtoTcp, &c.timeouts),
		  c.timeouts.tcp_syn_sent);
	const Packet6 back = reply6(snat6(ack, port));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 40000));
	flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(kvx_ct_timeout_s(&flows[0].second.ct, kProtoTcp, &c.timeouts),
		  c.timeouts.tcp_established);

	// Without a binding left either, a bare ACK makes both (the remote
	// then sees a new port: the connection is gone for it, as for IPv4).
	const Packet6 other = from_guest6(make_tcp6(kGuest6A, 40001, kRemote6A, 443, kTcpAck));
	out6(other);
	EXPECT_EQ(dp().ct6_entries().size(), 2u);
}

// A picked-up flow counts in the guest's flow quota like any other: at
// the quota a bare ACK to another remote is refused before a binding is
// made for it.
TEST_F(Nat66Test, BareAckPickUpCountsInTheQuota)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 2; });
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6A));
	out6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443)));
	out6(from_guest6(make_tcp6(kGuest6A, 40001, kRemote6A, 443, kTcpAck)));
	EXPECT_EQ(dp().gflows_at(slot).out, 2u);
	const std::size_t binds = dp().bind6_entries().size();
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40002, kRemote6B, 443, kTcpAck)),
	     TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	EXPECT_EQ(dp().bind6_entries().size(), binds);
	EXPECT_EQ(dp().gflows_at(slot).out, 2u);
}

// A picked-up flow is checked loosely, as IPv4's (ct.h tcp_loose_plausible):
// an off-path RST far from what the guest acknowledged is dropped, the
// exact one closes the flow.
TEST_F(Nat66Test, PickedUpFlowDropsAnOffPathRst)
{
	Packet6 ack = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443, kTcpAck));
	ack.seq = 5000;
	ack.ack_seq = 90000;
	ack.window = 502;
	const std::uint16_t port = out6(ack);
	auto state = [&] {
		const auto flows = dp().ct6_entries();
		return flows.size() == 1 ? int(flows[0].second.ct.state) : -1;
	};
	ASSERT_EQ(state(), KVX_CT_ESTABLISHED);
	Packet6 rst = reply6(snat6(ack, port));
	rst.tcp_flags = kTcpRst;
	rst.seq = 90000 + 100000000;
	rst.ack_seq = 0;
	rst.payload.clear();
	run6(Prog::UpIngress, rst, TC_ACT_SHOT, KVX_R_DROP_TCP_WINDOW);
	EXPECT_EQ(state(), KVX_CT_ESTABLISHED);
	rst.seq = 90000;
	run6(Prog::UpIngress, rst, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(rst, kGuest6A, 40000));
	EXPECT_EQ(state(), KVX_CT_CLOSE);
}

// A SYN's flow stays SYN_SENT until the remote answers.
TEST_F(Nat66Test, SynFlowIsSynSentUntilAnswered)
{
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	out6(syn);
	const auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_SYN_SENT);
}

// --- the host's: neighbour discovery, link-local, multicast, DAD ---

TEST_F(Nat66Test, NeighbourDiscoveryAndLinkLocalStayTheHosts)
{
	Packet6 ns = from_guest6(make_echo6(kGuest6A, ip6("ff02::1:ff00:1"), 0));
	ns.icmp_type = kIcmp6NeighSol;
	ns.hop_limit = 255;
	run6(Prog::BrIngress, ns, TC_ACT_OK, KVX_R_PASS_ND);
	// NS for the gateway's global address, unicast (NUD): a local
	// destination.
	ns.dst = ip6(Topology::kBridgeAddr6);
	run6(Prog::BrIngress, ns, TC_ACT_OK, KVX_R_PASS_LOCAL);
	// ND and MLD types to anywhere else are no ND: passed up, the host
	// (forwarding IPv6) would route them out with the guest's source, or
	// any source the guest likes.
	for (std::uint8_t type :
	     {kIcmp6NeighSol, std::uint8_t(137), std::uint8_t(130), std::uint8_t(143)}) {
		Packet6 out = from_guest6(make_echo6(kGuest6A, kRemote6A, 0));
		out.icmp_type = type;
		out.hop_limit = 255;
		run6(Prog::BrIngress, out, TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
		out.src = ip6("2001:db8:bad::5");
		run6(Prog::BrIngress, out, TC_ACT_SHOT, KVX_R_DROP_SPOOFED);
	}
	// DAD: from ::.
	ns.src = ip6("::");
	run6(Prog::BrIngress, ns, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 rs = from_guest6(make_echo6(ip6("fe80::5054:ff:fe00:60a"), ip6("ff02::2"), 0));
	rs.icmp_type = kIcmp6RouterSol;
	run6(Prog::BrIngress, rs, TC_ACT_OK, KVX_R_PASS_ND);
	// Link-local unicast, multicast UDP (mDNS).
	run6(Prog::BrIngress,
	     from_guest6(make_tcp6(ip6("fe80::5054:ff:fe00:60a"), 40000, ip6("fe80::1"), 22)),
	     TC_ACT_OK, KVX_R_PASS_ND);
	run6(Prog::BrIngress, from_guest6(make_udp6(kGuest6A, 5353, ip6("ff02::fb"), 5353)),
	     TC_ACT_OK, KVX_R_PASS_ND);
	// From the uplink: an RA, an NS for the uplink address.
	Packet6 ra = from_uplink6(make_echo6(ip6("fe80::1"), ip6("ff02::1"), 0));
	ra.icmp_type = 134;
	run6(Prog::UpIngress, ra, TC_ACT_OK, KVX_R_PASS_ND);
	// (Every NS is looked at for the announced mapped addresses:
	// MappedAddressAnsweredOnceAnnounced; the others count as ND.)
	Packet6 uns = from_uplink6(make_echo6(ip6(Topology::kGatewayAddr6), kUplink6, 0));
	uns.icmp_type = kIcmp6NeighSol;
	run6(Prog::UpIngress, uns, TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_TRUE(dp().bind6_entries().empty());
}

TEST_F(Nat66Test, LocalDestinationsStayTheHosts)
{
	// In the guest prefix, the uplink address, another address of the host.
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40000, kGuest6B, 22)), TC_ACT_OK,
	     KVX_R_PASS_LOCAL);
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40000, kUplink6, 22)), TC_ACT_OK,
	     KVX_R_PASS_LOCAL);
}

// --- dropped, counted, never out with the guest's source ---

TEST_F(Nat66Test, SpoofedSourceDropped)
{
	run6(Prog::BrIngress, from_guest6(make_tcp6(ip6("2001:db8:5::1"), 40000, kRemote6A, 443)),
	     TC_ACT_SHOT, KVX_R_DROP_SPOOFED);
	run6(Prog::BrIngress, from_guest6(make_tcp6(ip6("fd43::a"), 40000, kRemote6A, 443)),
	     TC_ACT_SHOT, KVX_R_DROP_SPOOFED);
}

TEST_F(Nat66Test, ZeroUdpChecksumDropped)
{
	Packet6 q = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 53));
	q.udp_no_csum = true;
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_UDP_NO_CSUM);
	// Inbound, for a guest's binding: dropped too.
	q.udp_no_csum = false;
	const std::uint16_t port = out6(q);
	Packet6 back = reply6(snat6(q, port));
	back.udp_no_csum = true;
	run6(Prog::UpIngress, back, TC_ACT_SHOT, KVX_R_DROP_UDP_NO_CSUM);
}

TEST_F(Nat66Test, NoUplinkAddressDropped)
{
	kvx_cfg6 c = nat66_cfg();
	std::memset(c.uplink_addr, 0, sizeof(c.uplink_addr));
	dp().set_cfg6(c);
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443)), TC_ACT_SHOT,
	     KVX_R_DROP_NO_UPLINK_ADDR);
	EXPECT_TRUE(dp().bind6_entries().empty());
}

TEST_F(Nat66Test, HopLimitAndRoutesNeverPassed)
{
	Packet6 p = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	p.hop_limit = 1;
	answered6(p, KVX_R_DROP_HOP_LIMIT, icmp6_answer(p.build(), 3, 0));
	// Without the bridge's address: dropped unanswered.
	kvx_cfg6 c = nat66_cfg();
	std::memset(c.gw_addr, 0, sizeof(c.gw_addr));
	dp().set_cfg6(c);
	run6(Prog::BrIngress, p, TC_ACT_SHOT, KVX_R_DROP_HOP_LIMIT);
	dp().set_cfg6(nat66_cfg());
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40000, ip6("2001:db8:31::7"), 443)),
	     TC_ACT_SHOT, KVX_R_DROP_OTHER_IFACE);
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40000, ip6("2001:db8:dead::1"), 443)),
	     TC_ACT_OK, KVX_R_PASS_NO_ROUTE);
	Packet6 gre = from_guest6(make_tcp6(kGuest6A, 0, kRemote6A, 0));
	gre.proto = kProtoGre;
	gre.payload = pattern(24);
	run6(Prog::BrIngress, gre, TC_ACT_SHOT, KVX_R_DROP_PROTO_UNTRANSLATED);
	Packet6 err = from_guest6(make_echo6(kGuest6A, kRemote6A, 0));
	err.icmp_type = kIcmp6PacketTooBig;
	run6(Prog::BrIngress, err, TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
	Packet6 reply = from_guest6(make_echo6(kGuest6A, kRemote6A, 9, kIcmp6EchoReply));
	run6(Prog::BrIngress, reply, TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
	EXPECT_TRUE(dp().bind6_entries().empty());
}

TEST_F(Nat66Test, TooBigForTheUplinkDropped)
{
	UplinkMtu mtu(1280);
	Packet6 p = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 53, 1400));
	answered6(p, KVX_R_DROP_TOO_BIG, icmp6_answer(p.build(), 2, 1280));
	Packet6 t = from_guest6(make_tcp6(kGuest6A, 5000, kRemote6A, 80, kTcpAck));
	t.payload = pattern(1300);
	answered6(t, KVX_R_DROP_TOO_BIG, icmp6_answer(t.build(), 2, 1280));
}

// Time exceeded: 6 a second per destination (the kernel's burst), then
// counted and dropped; Packet Too Big only against its own budget.
TEST_F(Nat66Test, IcmpErrorsRateLimited)
{
	Packet6 p = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 53));
	p.hop_limit = 1;
	for (int i = 0; i < KVX_ICMPRL_BURST; i++)
		answered6(p, KVX_R_DROP_HOP_LIMIT, icmp6_answer(p.build(), 3, 0));
	const Stats before = dp().stats();
	const RunResult r = dp().run(Prog::BrIngress, p.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(stats_delta(before, dp().stats()), "ICMP_RATELIMITED +1/+0B DROP_HOP_LIMIT +1/+" +
							     std::to_string(p.build().size()) +
							     "B");
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_SHOT)));
	UplinkMtu mtu(1280);
	Packet6 big = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 53, 1400));
	answered6(big, KVX_R_DROP_TOO_BIG, icmp6_answer(big.build(), 2, 1280));
}

// Never an error about an error, or from an unspecified source.
TEST_F(Nat66Test, NoIcmpErrorAboutAnError)
{
	Packet6 err = from_guest6(make_echo6(kGuest6A, kRemote6A, 0));
	err.icmp_type = kIcmp6PacketTooBig;
	err.hop_limit = 1;
	run6(Prog::BrIngress, err, TC_ACT_SHOT, KVX_R_DROP_HOP_LIMIT);
}

TEST_F(Nat66Test, InboundChecks)
{
	// Into the guest prefix from the LAN; to another address; hop limit.
	run6(Prog::UpIngress, from_uplink6(make_tcp6(kRemote6A, 443, kGuest6A, 40000)), TC_ACT_SHOT,
	     KVX_R_DROP_TO_SUBNET);
	run6(Prog::UpIngress, from_uplink6(make_tcp6(kRemote6A, 443, ip6("2001:db8:77::9"), 22)),
	     TC_ACT_OK, KVX_R_PASS_HOST);
	run6(Prog::UpIngress, from_uplink6(make_tcp6(kRemote6A, 443, kUplink6, 22)), TC_ACT_OK,
	     KVX_R_PASS_HOST);
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	// Its hop limit spent here: Time Exceeded from the uplink's address,
	// back out of the uplink (a router on the LAN's path, as IPv4's).
	Packet6 back = reply6(snat6(q, port));
	back.hop_limit = 1;
	answered6(back, KVX_R_DROP_TTL_IN, icmp6_answer(back.build(), 3, 0, kUplink6),
		  Prog::UpIngress);
	// Not sent to the uplink's MAC (another host's unicast a promiscuous
	// uplink sees): dropped unanswered, or we would answer in its name.
	Packet6 other = back;
	other.dst_mac = Mac{0x02, 0x00, 0x00, 0x00, 0x00, 0x77};
	run6(Prog::UpIngress, other, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	Packet6 martian = reply6(snat6(q, port));
	martian.src = kGuest6B;
	run6(Prog::UpIngress, martian, TC_ACT_SHOT, KVX_R_DROP_MARTIAN_IN);
}

TEST_F(Nat66Test, ModeOffIsTheHosts)
{
	dp().set_cfg6(kvx_cfg6{});
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443)), TC_ACT_OK,
	     KVX_R_PASS_NOT_IP);
	run6(Prog::UpIngress, from_uplink6(make_tcp6(kRemote6A, 443, kUplink6, 61000)), TC_ACT_OK,
	     KVX_R_PASS_NOT_IP);
}

TEST_F(Nat66Test, Ipv4UnchangedWithNat66On)
{
	const Packet p = from_guest(make_tcp(kGuestA, 40000, kRemote1, 443));
	const RunResult r = dp().run(Prog::BrIngress, p.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const Parsed o = parse(r.out);
	EXPECT_EQ(diff(r.out, snat(p, o.sport).build()), "");
	EXPECT_TRUE(dp().bind6_entries().empty());
}

// --- per-guest limits: one quota per guest, both families ---

// The IPv6 quota is the guest's bridge port's, as IPv4's (ct.h mac_slot):
// guest A's second MAC, on A's port, sending from another address of the
// prefix, counts with A; the port limit the same.
TEST_F(Nat66Test, QuotaAndPortLimitPerPortNotPerMac)
{
	set_cfg([](kvx_cfg &c) {
		c.flow_quota = 3;
		c.guest_ports = 2;
	});
	const Ip6 a2 = ip6("fd42::60");
	const Mac m2{0x52, 0x54, 0x00, 0x00, 0x07, 0x06};
	dp().brport_set(m2, kGuestPortA + 100); // mac_of(kGuest6A)'s port
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6A));
	ASSERT_EQ(dp().mac_slot(m2), slot);
	auto from = [&](const Ip6 &src, const Mac &mac, std::uint16_t sport) {
		Packet6 p = from_guest6(make_udp6(src, sport, kRemote6A, 53));
		p.src_mac = mac;
		return p;
	};
	out6(from(kGuest6A, mac_of(kGuest6A), 7000));
	out6(from(a2, m2, 7000));
	EXPECT_EQ(dp().gports_at(slot), 2u);
	run6(Prog::BrIngress, from(a2, m2, 7001), TC_ACT_SHOT, KVX_R_DROP_GUEST_PORTS);
	// A bound endpoint's new flow needs no port; the third flow is the
	// quota's last.
	Packet6 q = from(a2, m2, 7000);
	q.dst = kRemote6B;
	out6(q);
	EXPECT_EQ(dp().gflows_at(slot).out, 3u);
	q.dst = ip6("2001:db8:100::30");
	run6(Prog::BrIngress, q, TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	// B's own port: its own quota.
	out6(from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53)));
	EXPECT_EQ(dp().gflows_at(dp().mac_slot(mac_of(kGuest6B))).out, 1u);
}

// A guest's IPv6 flows count in its MAC's kvx_gflows slot, the one its IPv4
// flows count in: at the quota a new flow of either family is dropped
// before any binding is made for it, its flows that exist go on, and
// another guest is not affected.
TEST_F(Nat66Test, FlowQuotaSharedWithIpv4)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 3; });
	const Mac mac = mac_of(kGuest6A);
	const std::uint32_t slot = dp().mac_slot(mac);
	Packet v4 = from_guest(make_udp(kGuestA, 5000, kRemote1, 53));
	v4.src_mac = mac;
	const RunResult r4 =
		dp().run(Prog::BrIngress, v4.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(diff(r4.out, snat(v4, parse(r4.out).sport).build()), "");
	const Packet6 u1 = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	out6(u1);
	out6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443)));
	EXPECT_EQ(dp().gflows_at(slot).out, 3u);
	const std::size_t binds = dp().bind6_entries().size();
	run6(Prog::BrIngress, from_guest6(make_udp6(kGuest6A, 7001, kRemote6A, 53)), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_QUOTA);
	EXPECT_EQ(dp().bind6_entries().size(), binds) << "no binding for a refused flow";
	Packet v4b = from_guest(make_udp(kGuestA, 5001, kRemote1, 53));
	v4b.src_mac = mac;
	run_case(dp(), Prog::BrIngress, v4b, TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	EXPECT_EQ(dp().gflows_at(slot).out, 3u);
	out6(u1); // its flows go on
	out6(from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53)));
	EXPECT_EQ(dp().gflows_at(dp().mac_slot(mac_of(kGuest6B))).out, 1u);
}

// A guest at its quota whose IPv6 connection closed (TIME_WAIT, quiet for
// a while) gets a new connection in its place, as for IPv4: never in place
// of one closed just now or of a live one.
TEST_F(Nat66Test, ClosedFlowGivesWayAtTheQuota)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 3; });
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6A));
	for (std::uint16_t port = 40000; port < 40003; port++)
		out6(from_guest6(make_tcp6(kGuest6A, port, kRemote6A, 443)));
	auto set_state = [&](std::uint16_t port, std::uint8_t state, std::uint64_t ago_s) {
		for (auto [k, v] : dp().ct6_entries()) {
			if (be16(port) != k.int_port)
				continue;
			v.ct.state = state;
			v.ct.last_seen_ns = boot_ns_ago(ago_s * 1000000000ULL);
			dp().ct6_update(k, v);
		}
	};
	auto has_flow = [&](std::uint16_t port) {
		for (const auto &[k, v] : dp().ct6_entries())
			if (be16(port) == k.int_port)
				return true;
		return false;
	};
	set_state(40000, KVX_CT_TIME_WAIT, 10);
	set_state(40001, KVX_CT_TIME_WAIT, 0); // closed just now
	set_state(40002, KVX_CT_ESTABLISHED, 10);
	dp().set_reclaim6_state(0, 0); // an earlier test's pass may hold passes off
	out6(from_guest6(make_tcp6(kGuest6A, 40010, kRemote6A, 443)));
	EXPECT_FALSE(has_flow(40000));
	EXPECT_TRUE(has_flow(40001));
	EXPECT_TRUE(has_flow(40002));
	EXPECT_EQ(dp().gflows_at(slot).out, 3u);
	// Past the hold-offs that pass left (ct.h KVX_RECLAIM_*_NS_PER_ENTRY):
	// refused because nothing else may give way.
	dp().set_reclaim6_state(0, 0);
	kvx_gflows_val g = dp().gflows_at(slot);
	g.reclaim_ns = 0;
	dp().set_gflows_at(slot, g);
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40011, kRemote6A, 443)), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_QUOTA);
	EXPECT_TRUE(has_flow(40001));
	EXPECT_TRUE(has_flow(40002));
}

// Flows opened from outside (--eif) count apart: a LAN host cannot take
// the guest's own outbound capacity, nor get past the quota.
TEST_F(Nat66Test, InboundFlowsHaveTheirOwnQuota)
{
	set_cfg([](kvx_cfg &c) {
		c.flow_quota = 1;
		c.flags |= KVX_CFG_F_EIF;
	});
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6A));
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	Packet6 in = reply6(snat6(q, port));
	in.src = kRemote6B;
	run6(Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(in, kGuest6A, 7000));
	in.src = ip6("2001:db8:100::30");
	run6(Prog::UpIngress, in, TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	const kvx_gflows_val g = dp().gflows_at(slot);
	EXPECT_EQ(g.out, 1u);
	EXPECT_EQ(g.in, 1u);
}

// RFC 6888 REQ-4: a guest at its port limit gets no new binding (its
// bindings keep working, also towards new remotes); the count follows the
// bindings it holds.
TEST_F(Nat66Test, PortLimitPerGuest)
{
	set_cfg([](kvx_cfg &c) { c.guest_ports = 2; });
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6A));
	const std::uint16_t p = out6(from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53)));
	out6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443)));
	EXPECT_EQ(dp().gports_at(slot), 2u);
	run6(Prog::BrIngress, from_guest6(make_udp6(kGuest6A, 7001, kRemote6A, 53)), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_PORTS);
	EXPECT_EQ(out6(from_guest6(make_udp6(kGuest6A, 7000, kRemote6B, 53))), p);
	EXPECT_EQ(dp().gports_at(slot), 2u);
	out6(from_guest6(make_udp6(kGuest6B, 7001, kRemote6A, 53)));
	// A binding released by the datapath (a stale pair after the uplink
	// address changed) gives its port back.
	kvx_cfg6 c6 = nat66_cfg();
	copy_addr(c6.uplink_addr, ip6("2001:db8:77::99"));
	dp().set_cfg6(c6);
	const Packet6 moved = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const RunResult r =
		dp().run(Prog::BrIngress, moved.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(parse6(r.out).src, ip6("2001:db8:77::99"));
	EXPECT_EQ(dp().gports_at(slot), 2u) << "the old pair's port released, the new one counted";
}

// A binding is released from the slot it was counted in (abi.h
// kvx_bind_val.slot), as IPv4's: made while its MAC was of no port (the
// shared slot), released after the MAC was placed on a port, it gives the
// shared slot its port back; the new binding counts on the port.
TEST_F(Nat66Test, BindingIsReleasedFromTheSlotItWasCountedIn)
{
	dp().brport_delete(mac_of(kGuest6A));
	const std::uint32_t shared = dp().mac_slot(mac_of(kGuest6A));
	ASSERT_EQ(shared, kvx_port_slot(0, dp().cfg().guest_seed));
	const std::uint32_t shared0 = dp().gports_at(shared);
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	out6(q);
	EXPECT_EQ(dp().gports_at(shared), shared0 + 1);
	dp().brport_set(mac_of(kGuest6A), 1234);
	const std::uint32_t port = dp().mac_slot(mac_of(kGuest6A));
	ASSERT_NE(port, shared);
	const std::uint32_t port0 = dp().gports_at(port);
	kvx_cfg6 c6 = nat66_cfg();
	copy_addr(c6.uplink_addr, ip6("2001:db8:77::99"));
	dp().set_cfg6(c6);
	const RunResult r = dp().run(Prog::BrIngress, q.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(parse6(r.out).src, ip6("2001:db8:77::99"));
	EXPECT_EQ(dp().gports_at(shared), shared0) << "its port back to the shared slot";
	EXPECT_EQ(dp().gports_at(port), port0 + 1) << "the new binding, on the MAC's port";
}

// --- TIME_WAIT reuse (RFC 7857 section 3), IPv4's rules for IPv6 ---

// A TCP connection of a guest endpoint through NAT66 with the sequence
// numbers real endpoints use (conntrack checks FINs against the window):
// g and r are the guest's and the remote's next sequence numbers.
struct TcpConn6 {
	Packet6 syn;	       // the guest's SYN, untranslated
	std::uint16_t ext = 0; // its external port
	std::uint32_t g = 0, r = 0;

	Packet6 out(std::uint8_t flags) const
	{
		Packet6 q = syn;
		q.tcp_flags = flags;
		q.seq = g;
		q.ack_seq = r;
		return q;
	}
	Packet6 in(std::uint8_t flags) const
	{
		Packet6 q = reply6(snat6(syn, ext));
		q.tcp_flags = flags;
		q.seq = r;
		q.ack_seq = g;
		q.payload.clear();
		return q;
	}
};

class TimeWaitReuse6Test : public Nat66Test {
protected:
	// The handshake; ext 0: any port.
	TcpConn6 open(const Ip6 &guest, std::uint16_t sport, const Ip6 &remote, std::uint16_t rport,
		      std::uint16_t ext = 0)
	{
		TcpConn6 c;
		c.syn = from_guest6(make_tcp6(guest, sport, remote, rport));
		c.ext = out6(c.syn, ext);
		Packet6 sa = reply6(snat6(c.syn, c.ext));
		sa.payload.clear();
		run6(Prog::UpIngress, sa, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(sa, guest, sport));
		c.g = c.syn.seq + 1;
		c.r = sa.seq + 1;
		send(c, kTcpAck);
		return c;
	}
	void send(TcpConn6 &c, std::uint8_t flags)
	{
		out6(c.out(flags), c.ext);
		c.g += (flags & kTcpFin) ? 1 : 0;
	}
	void recv(TcpConn6 &c, std::uint8_t flags)
	{
		const Packet6 p = c.in(flags);
		run6(Prog::UpIngress, p, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		     dnat6(p, c.syn.src, c.syn.sport));
		c.r += (flags & kTcpFin) ? 1 : 0;
	}
	// The guest closes first: the remote ends in CLOSED.
	void close_guest_first(TcpConn6 &c)
	{
		send(c, kTcpFin | kTcpAck);
		recv(c, kTcpFin | kTcpAck);
		send(c, kTcpAck);
	}
	// The remote closes first: it holds the connection in TIME_WAIT.
	void close_remote_first(TcpConn6 &c)
	{
		recv(c, kTcpFin | kTcpAck);
		send(c, kTcpFin | kTcpAck);
		recv(c, kTcpAck);
	}
	static kvx_bind6_key key(std::uint8_t dir, const Ip6 &addr, std::uint16_t port)
	{
		kvx_bind6_key k{};
		k.dir = dir;
		k.proto = kProtoTcp;
		k.port = htons(port);
		copy_addr(k.addr, addr);
		return k;
	}
	static std::optional<kvx_bind6_val> in_half(std::uint16_t ext)
	{
		return dp().bind6_lookup(key(KVX_BIND_IN, kUplink6, ext));
	}
	// 3 s ago: past the 0.5 s a closed port stays quiet (moved
	// back by hand: the test cannot wait on the datapath's clock).
	static void age(std::uint16_t ext)
	{
		auto in = in_half(ext);
		ASSERT_TRUE(in);
		ASSERT_TRUE(in->bind.flags & KVX_BIND_F_TW) << "flags " << in->bind.flags;
		in->bind.last_used_ns -= 3'000'000'000ULL;
		dp().bind6_update(key(KVX_BIND_IN, kUplink6, ext), *in);
	}
	void refused(const Packet6 &p, kvx_reason reason)
	{
		run6(Prog::BrIngress, from_guest6(p), TC_ACT_SHOT, reason);
	}
	static kvx_ct6_key flow_key(const Ip6 &guest, std::uint16_t gport, const Ip6 &remote,
				    std::uint16_t rport)
	{
		kvx_ct6_key k{};
		copy_addr(k.int_addr, guest);
		copy_addr(k.rem_addr, remote);
		k.int_port = htons(gport);
		k.rem_port = htons(rport);
		k.proto = kProtoTcp;
		return k;
	}
	// The state of that flow (-1: none).
	static int flow_state(const kvx_ct6_key &want)
	{
		for (const auto &[k, v] : dp().ct6_entries())
			if (std::memcmp(&k, &want, sizeof(k)) == 0)
				return v.ct.state;
		return -1;
	}
	static std::uint32_t gports(const Ip6 &guest)
	{
		return dp().gports_at(dp().mac_slot(mac_of(guest)));
	}
	void SetUp() override
	{
		Nat66Test::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		set_cfg([](kvx_cfg &c) {
			c.nat_port_lo = c.nat_port_hi = 61000;
			c.gw_addr = 0; // refusals unanswered: compared as drops
		});
	}
};

// A port whose one TCP flow is over (TIME_WAIT) and quiet for 0.5 s goes to a
// new SYN of any guest; the old guest's late packets never go out through
// it, nor do the remote's reach the new one.
TEST_F(TimeWaitReuse6Test, ClosedPortGoesToANewSyn)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	const Packet6 syn_b = make_tcp6(kGuest6B, 40001, kRemote6B, 443);
	refused(syn_b, KVX_R_DROP_PORTS_EXHAUSTED); // established: the port is taken
	close_guest_first(a);
	auto in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_EQ(in->bind.flags, KVX_BIND_F_TW);
	EXPECT_EQ(in->bind.tw_remotes, 0u) << "the remote closed second: it holds no TIME_WAIT";
	// Fresh: the guest's last ACK or a retransmitted FIN may still come.
	refused(syn_b, KVX_R_DROP_PORTS_EXHAUSTED);
	age(61000);
	// Only a SYN takes it over.
	refused(make_tcp6(kGuest6B, 40003, kRemote6B, 443, kTcpAck), KVX_R_DROP_PORTS_EXHAUSTED);
	out6(from_guest6(syn_b), 61000);
	EXPECT_FALSE(dp().bind6_lookup(key(KVX_BIND_OUT, kGuest6A, 40000)))
		<< "the old pair released";
	in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_EQ(std::memcmp(in->addr, kGuest6B.data(), 16), 0);
	EXPECT_EQ(in->bind.flags, 0u);
	EXPECT_EQ(dp().bind6_entries().size(), 2u);
	EXPECT_EQ(gports(kGuest6A), 0u);
	EXPECT_EQ(gports(kGuest6B), 1u);
	// The old guest's late ACK is not translated through B's port: it
	// needs a new binding, and there is none.
	run6(Prog::BrIngress, a.out(kTcpAck), TC_ACT_SHOT, KVX_R_DROP_PORTS_EXHAUSTED);
	// The remote's late FIN for A's connection does not reach B: no flow
	// of B's wants it, it is the host's.
	run6(Prog::UpIngress, a.in(kTcpFin | kTcpAck), TC_ACT_OK, KVX_R_PASS_HOST);
}

// The old flow of a recycled port stays counted where it was made: in its
// guest's slot (abi.h kvx_ct_val.slot), not where its port's binding now points.
// At its flow quota that guest's next connection finds the closed flow to
// give way, and the counters follow the flows.
TEST_F(TimeWaitReuse6Test, OldFlowOfARecycledPortCountsForItsGuest)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 1; });
	const std::uint32_t slot_a = dp().mac_slot(mac_of(kGuest6A));
	const std::uint32_t slot_b = dp().mac_slot(mac_of(kGuest6B));
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	close_guest_first(a);
	age(61000);
	open(kGuest6B, 40001, kRemote6B, 80, 61000);
	EXPECT_EQ(dp().gflows_at(slot_a).out, 1u) << "A's closed flow, still there";
	EXPECT_EQ(dp().gflows_at(slot_b).out, 1u);
	// A's closed flow quiet for 3 s: it may give way to A's next one.
	const kvx_ct6_key old = flow_key(kGuest6A, 40000, kRemote6A, 80);
	for (auto [k, v] : dp().ct6_entries()) {
		if (std::memcmp(&k, &old, sizeof(k)) != 0)
			continue;
		EXPECT_EQ(kvx_ct_slot_read(v.ct.slot, dp().cfg().guest_seed), slot_a)
			<< "the slot it was counted in";
		v.ct.last_seen_ns -= 3'000'000'000ULL;
		dp().ct6_update(k, v);
	}
	dp().set_reclaim6_state(0, 0);
	set_cfg([](kvx_cfg &c) {
		c.nat_port_lo = 61000;
		c.nat_port_hi = 61001;
	});
	open(kGuest6A, 40002, kRemote6B, 80, 61001);
	EXPECT_EQ(flow_state(old), -1) << "A's closed flow gave way to A's new one";
	EXPECT_EQ(dp().gflows_at(slot_a).out, 1u);
	EXPECT_EQ(dp().gflows_at(slot_b).out, 1u);
}

// Towards the same remote endpoint only when the remote cannot hold the old
// connection in TIME_WAIT (it closed second), or when the new SYN's
// sequence number is past what the old connection sent (RFC 1122
// 4.2.2.13, as netfilter's NAT reuses such a tuple); the remote that closed
// first stays remembered with the port.
TEST_F(TimeWaitReuse6Test, SameRemoteOnlyIfItClosedSecondOrTheSynIsLater)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	close_guest_first(a);
	age(61000);
	// The churn case: one server, the clients close first.
	TcpConn6 b = open(kGuest6B, 40001, kRemote6A, 80, 61000);
	close_remote_first(b);
	auto in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_EQ(in->bind.flags, KVX_BIND_F_TW | KVX_BIND_F_RFIN);
	EXPECT_NE(in->bind.tw_remotes, 0u);
	age(61000);
	auto syn = [&](std::uint32_t seq) {
		Packet6 q = make_tcp6(kGuest6C, 40002, kRemote6A, 80);
		q.seq = seq;
		return q;
	};
	// Not past the old connection's end: the remote would take it for an
	// old duplicate.
	refused(syn(b.g - 100), KVX_R_DROP_PORTS_EXHAUSTED);
	refused(syn(b.g - 1), KVX_R_DROP_PORTS_EXHAUSTED);
	out6(from_guest6(syn(b.g + 100000)), 61000);
	in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_NE(in->bind.tw_remotes, 0u) << "the remote stays remembered with the port";
	EXPECT_EQ(std::memcmp(in->addr, kGuest6C.data(), 16), 0);
}

// With timestamps, as for IPv4: another guest's SYN gets the port only with
// a sequence number past the old connection's and a timestamp not older than
// the guest's FIN's (PAWS, RFC 6191).
TEST_F(TimeWaitReuse6Test, SameRemoteInTimeWaitNeverTakesAnOlderTimestamp)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	recv(a, kTcpFin | kTcpAck);
	Packet6 fin = a.out(kTcpFin | kTcpAck);
	fin.tcp_options = tcp_ts_options(90000, 7, false);
	out6(fin, 61000);
	a.g++;
	recv(a, kTcpAck);
	bool found = false;
	const kvx_ct6_key want = flow_key(kGuest6A, 40000, kRemote6A, 80);
	for (const auto &[k, v] : dp().ct6_entries()) {
		if (std::memcmp(&k, &want, sizeof(k)) != 0)
			continue;
		found = true;
		EXPECT_TRUE(v.ct.tcp[KVX_CT_SIDE_GUEST].flags & KVX_CT_TCP_F_TS);
		EXPECT_EQ(kvx_ct_fin_ts(&v.ct), 90000u);
	}
	ASSERT_TRUE(found);
	age(61000);
	auto syn = [&](std::uint32_t seq, std::uint32_t ts) {
		Packet6 q = make_tcp6(kGuest6C, 40002, kRemote6A, 80);
		q.seq = seq;
		q.tcp_options = tcp_ts_options(ts, 0, true);
		return q;
	};
	refused(syn(a.g + 100000, 89999), KVX_R_DROP_PORTS_EXHAUSTED);
	refused(syn(a.g - 100, 90001), KVX_R_DROP_PORTS_EXHAUSTED);
	out6(from_guest6(syn(a.g + 100, 90001)), 61000);
	auto in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_EQ(std::memcmp(in->addr, kGuest6C.data(), 16), 0);
}

// Simultaneous close: the remote's FIN crosses the guest's (it does not
// acknowledge it), so the remote is in TIME_WAIT too: remembered with the
// port, which goes to another remote's SYN only.
TEST_F(TimeWaitReuse6Test, CrossedFinsCountAsTheRemoteClosingFirst)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	send(a, kTcpFin | kTcpAck);
	a.g--; // the remote's FIN was sent before it saw the guest's
	recv(a, kTcpFin | kTcpAck);
	a.g++;
	send(a, kTcpAck);
	recv(a, kTcpAck);
	auto in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_EQ(in->bind.flags, KVX_BIND_F_TW | KVX_BIND_F_RFIN);
	EXPECT_NE(in->bind.tw_remotes, 0u);
	age(61000);
	refused(make_tcp6(kGuest6B, 40001, kRemote6A, 80), KVX_R_DROP_PORTS_EXHAUSTED);
	open(kGuest6B, 40001, kRemote6B, 80, 61000);
}

// The old flow gone (expired, flushed): nothing to check a later sequence
// number against, the remembered remote keeps the port; another port of the
// same remote host is another endpoint.
TEST_F(TimeWaitReuse6Test, RememberedRemoteWithoutItsFlowKeepsThePort)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	close_remote_first(a);
	EXPECT_EQ(flow_state(flow_key(kGuest6A, 40000, kRemote6A, 80)), KVX_CT_TIME_WAIT);
	age(61000);
	dp().ct6_delete(flow_key(kGuest6A, 40000, kRemote6A, 80));
	Packet6 later = make_tcp6(kGuest6B, 40001, kRemote6A, 80);
	later.seq = a.g + 100000;
	refused(later, KVX_R_DROP_PORTS_EXHAUSTED);
	open(kGuest6B, 40001, kRemote6A, 8080, 61000);
}

// A flow closed by an accepted RST (CLOSE) leaves no TIME_WAIT anywhere: its
// port goes to a new SYN once quiet, towards the same remote too.
TEST_F(TimeWaitReuse6Test, PortOfAResetFlowGoesToANewSyn)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	recv(a, kTcpRst | kTcpAck);
	EXPECT_EQ(flow_state(flow_key(kGuest6A, 40000, kRemote6A, 80)), KVX_CT_CLOSE);
	refused(make_tcp6(kGuest6B, 40001, kRemote6A, 80), KVX_R_DROP_PORTS_EXHAUSTED);
	age(61000);
	open(kGuest6B, 40001, kRemote6A, 80, 61000);
	EXPECT_EQ(flow_state(flow_key(kGuest6A, 40000, kRemote6A, 80)), KVX_CT_CLOSE)
		<< "the reset flow is kept (tcp_close), its port no longer its own";
}

// The guest's own new SYN on the tuple of its closed connection reopens
// that flow on its port, and the port is no longer marked closed.
TEST_F(TimeWaitReuse6Test, SameTupleReopenedKeepsItsPort)
{
	TcpConn6 a = open(kGuest6A, 40000, kRemote6A, 80, 61000);
	close_guest_first(a);
	age(61000);
	Packet6 syn = a.syn;
	syn.seq = a.g + 100000;
	out6(syn, 61000);
	EXPECT_EQ(flow_state(flow_key(kGuest6A, 40000, kRemote6A, 80)), KVX_CT_SYN_SENT);
	auto in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_FALSE(in->bind.flags & KVX_BIND_F_TW);
	refused(make_tcp6(kGuest6B, 40001, kRemote6B, 80), KVX_R_DROP_PORTS_EXHAUSTED);
}

// A binding with more than one flow is never recycled: its other flows are
// not known one by one.
TEST_F(TimeWaitReuse6Test, PortWithTwoFlowsNotRecycled)
{
	out6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 80)), 61000);
	out6(from_guest6(make_tcp6(kGuest6A, 40000, kRemote6B, 80)), 61000);
	auto in = in_half(61000);
	ASSERT_TRUE(in);
	EXPECT_TRUE(in->bind.flags & KVX_BIND_F_MULTI);
	// Even marked closed long ago.
	in->bind.flags |= KVX_BIND_F_TW;
	in->bind.last_used_ns = 1;
	dp().bind6_update(key(KVX_BIND_IN, kUplink6, 61000), *in);
	refused(make_tcp6(kGuest6B, 40001, kRemote6B, 443), KVX_R_DROP_PORTS_EXHAUSTED);
}

// A guest at its port limit goes on with short connections: a new SYN takes
// the place of one of its own closed bindings, never another guest's (which
// would move the other's port to it), and nothing else at the limit.
TEST_F(TimeWaitReuse6Test, GuestAtPortLimitRecyclesOnlyItsOwn)
{
	set_cfg([](kvx_cfg &c) {
		c.nat_port_lo = 61000;
		c.nat_port_hi = 61001;
		c.guest_ports = 1;
	});
	TcpConn6 a = open(kGuest6A, 61000, kRemote6A, 80, 61000);
	close_guest_first(a);
	age(61000);
	TcpConn6 b = open(kGuest6B, 61001, kRemote6A, 80, 61001);
	close_guest_first(b);
	age(61001);
	// A at its limit: its own port, whichever the probe order.
	for (std::uint16_t sport : {61001, 40000, 40001}) {
		TcpConn6 c = open(kGuest6A, sport, kRemote6A, 80, 61000);
		close_guest_first(c);
		age(61000);
	}
	EXPECT_EQ(gports(kGuest6A), 1u);
	EXPECT_EQ(gports(kGuest6B), 1u);
	auto bb = in_half(61001);
	ASSERT_TRUE(bb);
	EXPECT_EQ(std::memcmp(bb->addr, kGuest6B.data(), 16), 0) << "B's port stays B's";
	// Not a UDP binding at the limit (nothing to recycle for it).
	refused(make_udp6(kGuest6A, 5353, kRemote6B, 53), KVX_R_DROP_GUEST_PORTS);
	// Nor a TCP one while its port is in use.
	open(kGuest6A, 40005, kRemote6B, 80, 61000);
	refused(make_tcp6(kGuest6A, 40006, kRemote6B, 80), KVX_R_DROP_GUEST_PORTS);
}

// At its limit in a large pool the guest finds its closed port through its
// ring (abi.h kvx_gtw, IPv6's half): 64 random probes into 64512 ports hit
// its one closed port 0.1% of the time.
TEST_F(TimeWaitReuse6Test, GuestAtPortLimitFindsItsClosedPortInALargePool)
{
	set_cfg([](kvx_cfg &c) {
		c.nat_port_lo = 1024;
		c.nat_port_hi = 65535;
		c.nat_skip_lo = c.nat_skip_hi = 0;
		c.guest_ports = 4;
	});
	std::vector<TcpConn6> held;
	for (std::uint16_t i = 0; i < 4; i++)
		held.push_back(open(kGuest6A, 50000 + i, kRemote6A, 80));
	close_guest_first(held[1]);
	const std::uint16_t closed = held[1].ext;
	// Not quiet yet: nothing to reuse.
	refused(make_tcp6(kGuest6A, 39999, kRemote6A, 80), KVX_R_DROP_GUEST_PORTS);
	age(closed);
	// Round after round, each new connection takes the port the last one
	// left.
	for (std::uint16_t round = 0; round < 20; round++) {
		TcpConn6 c = open(kGuest6A, 40000 + round, kRemote6A, 80, closed);
		close_guest_first(c);
		age(closed);
	}
	EXPECT_EQ(gports(kGuest6A), 4u);
	for (std::size_t i : {0, 2, 3}) {
		auto in = in_half(held[i].ext);
		ASSERT_TRUE(in);
		EXPECT_EQ(in->bind.port, htons(static_cast<std::uint16_t>(50000 + i)))
			<< "the ports in use stay with their connections";
	}
}

// No daemon, kvx_ct6 full of expired flows: a new flow gets in (a reclaim
// pass, as for IPv4), the expired flows are gone and uncounted, the live
// ones kept.
TEST_F(Nat66Test, FullTableOfExpiredFlowsAcceptsNewFlow)
{
	boot_ns_ago(60ULL * 1000000000ULL); // room to age flows by 40 s
	TableSizes sizes;
	sizes.ct6 = 4;
	Datapath d(sizes);
	d.set_cfg(Datapath::default_cfg(topo()));
	d.set_cfg6(nat66_cfg());
	place_guests6(d);
	std::vector<Packet6> flows;
	for (int i = 0; i < 4; i++)
		flows.push_back(from_guest6(
			make_udp6(kGuest6A, 7000,
				  ip6(("2001:db8:100::" + std::to_string(i + 1)).c_str()), 53)));
	const auto send = [&](const Packet6 &p) {
		return verdict_name(
			d.run(Prog::BrIngress, p.build(), topo().bridge_ifindex).verdict);
	};
	const std::string redirect = verdict_name(TC_ACT_REDIRECT);
	for (const Packet6 &p : flows)
		EXPECT_EQ(send(p), redirect);
	const std::uint32_t slot = d.mac_slot(mac_of(kGuest6A));
	EXPECT_EQ(d.gflows_at(slot).out, 4u);
	const Packet6 fresh = from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53));
	run_case_bytes(d, Prog::BrIngress, fresh.build(), TC_ACT_SHOT, KVX_R_DROP_TABLE_FULL,
		       std::nullopt);
	// That pass found nothing to free and held further passes off for
	// 100 ms (ct.h KVX_RECLAIM_HOLDOFF_NS): what a new pass sees next.
	d.set_reclaim6_state(0, 0);
	// Unreplied UDP: 30 s.  Three expired, one live.
	auto entries = d.ct6_entries();
	ASSERT_EQ(entries.size(), 4u);
	int aged = 0;
	for (auto &[k, v] : entries) {
		if (k.rem_addr[3] == htonl(4))
			continue;
		v.ct.last_seen_ns = boot_ns_ago(40ULL * 1000000000ULL);
		d.ct6_update(k, v);
		aged++;
	}
	ASSERT_EQ(aged, 3);
	EXPECT_EQ(send(fresh), redirect);
	entries = d.ct6_entries();
	EXPECT_EQ(entries.size(), 2u);
	EXPECT_EQ(d.gflows_at(slot).out, 1u) << "reclaim uncounts the guest's flows";
	EXPECT_EQ(d.gflows_at(d.mac_slot(mac_of(kGuest6B))).out, 1u);
}

// --- ICMPv6 errors about translated flows (RFC 5508's rules) ---

const Ip6 kRouter6 = ip6("2001:db8:77::1");

// An ICMPv6 error from `from` to `to` quoting the IP packet of frame
// (from its IPv6 header on), cut to quote_len bytes (0: all of it); the
// checksums from scratch (Packet6::build).
Packet6 icmp6_error(const Ip6 &from, const Ip6 &to, std::uint8_t type, std::uint32_t word,
		    const Bytes &frame, std::size_t quote_len)
{
	Packet6 e;
	e.src = from;
	e.dst = to;
	e.proto = kProtoIcmp6;
	e.icmp_type = type;
	e.icmp_code = 0;
	e.icmp_id = static_cast<std::uint16_t>(word >> 16);
	e.icmp_seq = static_cast<std::uint16_t>(word);
	const std::size_t n = quote_len ? quote_len : frame.size() - 14;
	e.payload.assign(frame.begin() + 14, frame.begin() + static_cast<long>(14 + n));
	e.hop_limit = 62;
	return e;
}

// The quote of `translated` as its guest sent it: `guest` (the packet
// before translation) with the hop limit the quote carries, every byte the
// quote holds; a checksum field the quote holds only in part is left as
// the translated packet had it.
Bytes quote_of_guest(const Packet6 &guest, const Bytes &translated, std::size_t quote_len)
{
	Packet6 g = guest;
	g.hop_limit = translated[14 + 7];
	Bytes b = g.build();
	const Parsed6 t = parse6(translated);
	const std::size_t f = t.l4_off + (t.proto == kProtoTcp ? 16 : t.proto == kProtoUdp ? 6 : 2);
	if (quote_len && 14 + quote_len == f + 1)
		b[f] = translated[f];
	return b;
}

// The error err as the guest that sent guest_pkt gets it: from `from`, of
// err's type and second word, quoting guest_pkt as the guest sent it
// (translated: what err quotes, cut as err's quote: quote_len), one hop
// later, from the bridge to the guest's MAC.
Packet6 error_to_guest6(const Packet6 &err, const Ip6 &from, const Packet6 &guest_pkt,
			const Bytes &translated, std::size_t quote_len)
{
	Packet6 want = icmp6_error(from, guest_pkt.src, err.icmp_type,
				   std::uint32_t{err.icmp_id} << 16 | err.icmp_seq,
				   quote_of_guest(guest_pkt, translated, quote_len), quote_len);
	want.hop_limit = err.hop_limit - 1;
	want.src_mac = Topology::kBridgeMac;
	want.dst_mac = mac_of(guest_pkt.src);
	return want;
}

TEST_F(Nat66Test, IcmpErrorInToGuestFullAndTruncated)
{
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	const std::uint16_t port = out6(syn);
	const Bytes sent = snat6(syn, port).build();
	// Full; the whole TCP header; up to the checksum, half of it; the
	// ports only.
	for (std::size_t n : {std::size_t{0}, std::size_t{40 + 20}, std::size_t{40 + 17},
			      std::size_t{40 + 16}, std::size_t{40 + 8}, std::size_t{40 + 4}}) {
		SCOPED_TRACE("quote " + std::to_string(n));
		const Packet6 err = from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, sent, n));
		const Packet6 want = error_to_guest6(err, kRouter6, syn, sent, n);
		const RunResult r =
			run6(Prog::UpIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
		EXPECT_EQ(check_checksums(r.out), "");
	}
	// Too short to hold the ports: not matched, the host's.
	run6(Prog::UpIngress, from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, sent, 40 + 3)),
	     TC_ACT_OK, KVX_R_PASS_HOST);
}

// Packet Too Big (path-MTU discovery) about a UDP datagram: the MTU passes
// as is; Destination Unreachable and Parameter Problem likewise.
TEST_F(Nat66Test, IcmpErrorInUdpEveryType)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 5353, kRemote6A, 53, 100));
	const std::uint16_t port = out6(q);
	const Bytes sent = snat6(q, port).build();
	for (const auto &[type, word] : std::vector<std::pair<std::uint8_t, std::uint32_t>>{
		     {2, 1280}, {1, 0}, {3, 0}, {4, 40}}) {
		SCOPED_TRACE("type " + std::to_string(type));
		const Packet6 err =
			from_uplink6(icmp6_error(kRemote6A, kUplink6, type, word, sent));
		const Packet6 want = error_to_guest6(err, kRemote6A, q, sent);
		run6(Prog::UpIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
	}
}

TEST_F(Nat66Test, IcmpErrorInAboutEcho)
{
	const Packet6 ping = from_guest6(make_echo6(kGuest6A, kRemote6A, 0x77));
	const std::uint16_t id = out6(ping);
	const Bytes sent = snat6(ping, id).build();
	for (std::size_t n : {std::size_t{0}, std::size_t{40 + 8}}) {
		const Packet6 err = from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, sent, n));
		const Packet6 want = error_to_guest6(err, kRouter6, ping, sent, n);
		run6(Prog::UpIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
	}
}

// Errors that quote no flow of ours are the host's (its own flows get
// errors too); a quote whose remote differs from the flow's (address or
// port: a LAN host guessing NAT ports) is not forwarded to the guest.
TEST_F(Nat66Test, IcmpErrorInNotOursOrSpoofed)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 5353, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	// The host's own flow: no binding at that port.
	const Bytes host = make_udp6(kUplink6, 33000, kRemote6A, 53).build();
	run6(Prog::UpIngress, from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, host)), TC_ACT_OK,
	     KVX_R_PASS_HOST);
	Packet6 other = snat6(q, port);
	other.dst = kRemote6B;
	run6(Prog::UpIngress, from_uplink6(icmp6_error(kRouter6, kUplink6, 1, 0, other.build())),
	     TC_ACT_OK, KVX_R_PASS_HOST);
	other = snat6(q, port);
	other.dport = 54;
	run6(Prog::UpIngress, from_uplink6(icmp6_error(kRouter6, kUplink6, 2, 1280, other.build())),
	     TC_ACT_OK, KVX_R_PASS_HOST);
	// About an error, or a quoted source other than the uplink address.
	Packet6 e = snat6(q, port);
	e.src = ip6("2001:db8:77::9");
	run6(Prog::UpIngress, from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, e.build())),
	     TC_ACT_OK, KVX_R_PASS_HOST);
	const Bytes inner =
		from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, snat6(q, port).build())).build();
	run6(Prog::UpIngress, from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, inner)), TC_ACT_OK,
	     KVX_R_PASS_HOST);
	// Ours, but the hop limit expires on the way.
	Packet6 last = from_uplink6(icmp6_error(kRouter6, kUplink6, 3, 0, snat6(q, port).build()));
	last.hop_limit = 1;
	run6(Prog::UpIngress, last, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
}

// A guest's own error about a packet it got (a closed UDP port, a remote
// that reached it through its binding) leaves from the flow's external
// endpoint, the quote translated back to what the remote sent.
TEST_F(Nat66Test, IcmpErrorOutFromGuest)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	const Packet6 back = reply6(snat6(q, port));
	const Packet6 got = dnat6(back, kGuest6A, 7000);
	for (std::size_t n : {std::size_t{0}, std::size_t{40 + 8}, std::size_t{40 + 4}}) {
		SCOPED_TRACE("quote " + std::to_string(n));
		const Packet6 err =
			from_guest6(icmp6_error(kGuest6A, kRemote6A, 1, 0, got.build(), n));
		expect_error_out6(err, back, got.build(), n);
	}
	// No flow (another remote port), a quote not to the sender, another
	// guest's MAC: dropped, never out untranslated.
	Packet6 stray = got;
	stray.sport = 54;
	run6(Prog::BrIngress, from_guest6(icmp6_error(kGuest6A, kRemote6A, 1, 0, stray.build())),
	     TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
	run6(Prog::BrIngress, from_guest6(icmp6_error(kGuest6B, kRemote6A, 1, 0, got.build())),
	     TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
	Packet6 spoof = from_guest6(icmp6_error(kGuest6A, kRemote6A, 1, 0, got.build()));
	spoof.src_mac = mac_of(kGuest6B);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	Packet6 err_ptb = from_guest6(icmp6_error(kGuest6A, kRemote6A, 2, 1280, got.build()));
	err_ptb.hop_limit = 1; // never an answer about an error
	run6(Prog::BrIngress, err_ptb, TC_ACT_SHOT, KVX_R_DROP_HOP_LIMIT);
	// About its own flow, but to a third host: the uplink address would
	// send errors wherever the guest likes.
	run6(Prog::BrIngress, from_guest6(icmp6_error(kGuest6A, kRemote6B, 1, 0, got.build())),
	     TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
}

// Errors behind an outer extension chain (a router's hop-by-hop options, a
// destination options header: RFC 8200 4): the ICMPv6 header where the
// chain ends, the quote after it, translated both ways as errors without
// one; the chain passes as it came.
TEST_F(Nat66Test, IcmpErrorsBehindAnOuterChain)
{
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	const std::uint16_t port = out6(syn);
	const Bytes sent = snat6(syn, port).build();
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t qport = out6(q);
	const Packet6 back = reply6(snat6(q, qport));
	const Bytes got = dnat6(back, kGuest6A, 7000).build();
	for (const std::vector<ExtHdr> &chain :
	     {std::vector<ExtHdr>{ext_options(kExtHopByHop)},
	      std::vector<ExtHdr>{ext_options(kExtDstOpts, 24)},
	      std::vector<ExtHdr>{ext_options(kExtHopByHop, 16), ext_options(kExtDstOpts)},
	      std::vector<ExtHdr>{ext_options(kExtHopByHop), ext_routing(0)}}) {
		SCOPED_TRACE(std::to_string(chain.size()) + " header(s), first " +
			     std::to_string(chain[0].type));
		// In: a router's Destination Unreachable about the guest's SYN.
		Packet6 err = from_uplink6(icmp6_error(kRouter6, kUplink6, 1, 0, sent));
		err.ext = chain;
		Packet6 want = error_to_guest6(err, kRouter6, syn, sent);
		want.ext = chain;
		RunResult r =
			run6(Prog::UpIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
		EXPECT_EQ(check_checksums(r.out), "");
		// Out: the guest's Port Unreachable about the remote's datagram.
		Packet6 mine = from_guest6(icmp6_error(kGuest6A, kRemote6A, 1, 3, got));
		mine.ext = chain;
		Packet6 out = icmp6_error(kUplink6, back.src, 1, 3, quote_of_guest(back, got, 0));
		out.ext = chain;
		out.hop_limit = mine.hop_limit - 1;
		out.src_mac = Topology::kUplinkMac;
		out.dst_mac = Topology::kGatewayMac;
		r = run6(Prog::BrIngress, mine, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_OUT, out);
		EXPECT_EQ(check_checksums(r.out), "");
	}
}

// A guest's error about the echo reply to its own request (its firewall
// refused it): the remote is quoted the reply it sent, to the identifier
// the guest's request left with, not the guest's own.
TEST_F(Nat66Test, IcmpErrorOutAboutAnEchoReplyQuotesTheExternalIdentifier)
{
	set_cfg([](kvx_cfg &c) {
		c.nat_port_lo = 20000;
		c.nat_port_hi = 30000;
	});
	const Packet6 q = from_guest6(make_echo6(kGuest6A, kRemote6A, 40000));
	const std::uint16_t id = out6(q);
	ASSERT_NE(id, 40000);
	const Packet6 back = reply6(snat6(q, id));
	const Packet6 got = dnat6(back, kGuest6A, 40000);
	expect_error_out6(from_guest6(icmp6_error(kGuest6A, kRemote6A, 1, 4, got.build())), back,
			  got.build());
}

// A binding idle for KVX_GUEST_IDLE_NS may go to another MAC by a new flow,
// never by a packet on the owner's flow: another guest's bare ACK there
// (which any window check lets through) is dropped and leaves the binding
// (and the owner's inbound traffic) where it was.
TEST_F(Nat66Test, RejectedPacketTakesNoIdleBinding)
{
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	const std::uint16_t port = out6(syn);
	const Packet6 synack = reply6(snat6(syn, port));
	run6(Prog::UpIngress, synack, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
	     dnat6(synack, kGuest6A, 40000));
	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	out6(ack, port);
	kvx_bind6_key ik{};
	ik.dir = KVX_BIND_IN;
	ik.proto = kProtoTcp;
	copy_addr(ik.addr, kUplink6);
	ik.port = htons(port);
	auto in = dp().bind6_lookup(ik);
	ASSERT_TRUE(in);
	in->bind.last_used_ns = 1; // idle for ages
	dp().bind6_update(ik, *in);
	Packet6 forged = ack;
	forged.src_mac = mac_of(kGuest6B);
	run6(Prog::BrIngress, forged, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	in = dp().bind6_lookup(ik);
	ASSERT_TRUE(in);
	EXPECT_EQ(std::memcmp(in->bind.guest_mac, mac_of(kGuest6A).data(), 6), 0)
		<< "the binding still delivers to its owner";
}

// --- fragments (RFC 8200 4.5): the first translated and remembered, the
// later ones by it ---

// Fragment [from, to) of whole's upper-layer data (whose checksum covers
// the whole datagram, computed by Packet6::build), as its own frame with a
// Fragment header (identification id).
Bytes frag6_of(const Packet6 &whole, std::size_t from, std::size_t to, bool more,
	       std::uint32_t id)
{
	const Bytes w = whole.build();
	const Parsed6 p = parse6(w);
	Packet6 f = whole;
	f.proto = kProtoGre; // raw payload; the next header is set below
	f.ext = {ext_fragment(static_cast<std::uint16_t>(from / 8), more, id)};
	f.payload.assign(w.begin() + static_cast<long>(p.l4_off + from),
			 w.begin() + static_cast<long>(p.l4_off + to));
	Bytes b = f.build();
	b[14 + 40] = whole.proto; // the Fragment header's next header
	return b;
}

// The upper-layer checksum of a datagram put together from its fragments
// (frames of one datagram, in order), from scratch.
std::uint16_t reassembled_sum6(const std::vector<Bytes> &frags)
{
	Bytes data;
	for (const Bytes &f : frags)
		data.insert(data.end(), f.begin() + 14 + 40 + 8, f.end());
	const Parsed6 p = parse6(frags.front());
	return l4_checksum6(p.src, p.dst, frags.front()[14 + 40], data.data(), data.size());
}

TEST_F(Nat66Test, FragmentsOutInOrder)
{
	const Packet6 whole = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 9999, 100));
	const std::uint32_t id = 0xabcd0001;
	const Bytes f1 = frag6_of(whole, 0, 56, true, id), f2 = frag6_of(whole, 56, 108, false, id);
	const RunResult r1 = dp().run(Prog::BrIngress, f1, ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r1.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const std::uint16_t port = static_cast<std::uint16_t>(r1.out.at(62) << 8 | r1.out.at(63));
	const Packet6 sent = snat6(whole, port);
	EXPECT_EQ(diff(r1.out, frag6_of(sent, 0, 56, true, id)), "");
	const RunResult r2 = run_case_bytes(dp(), Prog::BrIngress, f2, TC_ACT_REDIRECT,
					    KVX_R_XLATE_OUT, frag6_of(sent, 56, 108, false, id));
	EXPECT_EQ(reassembled_sum6({r1.out, r2.out}), 0) << "the datagram's UDP checksum";

	// Another guest's MAC with A's address and the datagram's id: refused.
	Bytes spoof = f2;
	const Mac mac_b = mac_of(kGuest6B);
	std::copy(mac_b.begin(), mac_b.end(), spoof.begin() + 6);
	run_case_bytes(dp(), Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC,
		       std::nullopt);

	// The reply, fragmented by the remote: both to the guest, checksum
	// valid as the guest puts it together.
	Packet6 back = reply6(sent);
	back.payload = pattern(200, 0x5a);
	const std::uint32_t rid = 0x01020304;
	const Packet6 got = dnat6(back, kGuest6A, 5000);
	const RunResult b1 = run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 0, 104, true, rid),
					    TC_ACT_REDIRECT, KVX_R_XLATE_IN,
					    frag6_of(got, 0, 104, true, rid));
	const RunResult b2 =
		run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 104, 208, false, rid),
			       TC_ACT_REDIRECT, KVX_R_XLATE_IN, frag6_of(got, 104, 208, false, rid));
	EXPECT_EQ(reassembled_sum6({b1.out, b2.out}), 0);
	// A later fragment whose hop limit runs out here: Time Exceeded from
	// the uplink's address, as for a whole packet.
	Packet6 last = back;
	last.hop_limit = 1;
	const Bytes lf = frag6_of(last, 104, 208, false, rid);
	answered6(lf, KVX_R_DROP_TTL_IN, icmp6_answer(lf, 3, 0, kUplink6), Prog::UpIngress);
}

// A later fragment from the LAN too big for the bridge: Packet Too Big with
// the bridge's MTU from the uplink's address, as for a whole packet (the
// fragment path, nat6_frag_in).
TEST_F(Nat66Test, LaterFragmentTooBigForTheBridgeAnswered)
{
	BridgeMtu mtu(1280);
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 5000, kRemote6A, 9999, 100));
	const std::uint16_t port = out6(q);
	Packet6 back = reply6(snat6(q, port));
	back.payload = pattern(3000, 0x5b);
	const std::uint32_t rid = 0x01020399;
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 0, 1232, true, rid), TC_ACT_REDIRECT,
		       KVX_R_XLATE_IN, frag6_of(dnat6(back, kGuest6A, 5000), 0, 1232, true, rid));
	const Bytes later = frag6_of(back, 1232, 2632, true, rid);
	answered6(later, KVX_R_DROP_TOO_BIG_IN, icmp6_answer(later, 2, 1280, kUplink6),
		  Prog::UpIngress);
}

// The one record the park's ring holds: frame's IPv6 packet as it came,
// in direction dir, counted against mac (OUT: the sending guest's).
void expect_parked6(Datapath &dp, const Bytes &frame, std::uint8_t dir, const Mac &mac = Mac{})
{
	auto recs = dp.fragq_drain();
	ASSERT_EQ(recs.size(), 1u);
	kvx_fragq_hdr h;
	ASSERT_GE(recs[0].size(), sizeof(h));
	std::memcpy(&h, recs[0].data(), sizeof(h));
	const Bytes ip(frame.begin() + 14, frame.end());
	EXPECT_EQ(h.len, ip.size());
	EXPECT_EQ(h.dir, dir);
	Mac got;
	std::memcpy(got.data(), h.mac, 6);
	EXPECT_EQ(got, mac) << "the share it counts against";
	ASSERT_GE(recs[0].size(), sizeof(h) + h.len);
	EXPECT_EQ(Bytes(recs[0].begin() + sizeof(h), recs[0].begin() + sizeof(h) + h.len), ip)
		<< "the record holds the packet's bytes as they came";
}

// A later fragment before its first (RFC 4787 REQ-14, as IPv4's): a
// guest's is copied to the park and dropped (never out with the guest's
// source), the uplink's to a guest's flow is copied and handed to the host
// too (it may be the host's own); once the first has passed, later ones
// follow.  An entry older than KVX_FRAG_TIMEOUT_S is not followed.
TEST_F(Nat66Test, FragmentsOutOfOrder)
{
	const Packet6 whole = from_guest6(make_udp6(kGuest6A, 62010, kRemote6A, 9999, 100));
	const std::uint32_t id = 0x77;
	const Bytes f1 = frag6_of(whole, 0, 56, true, id), f2 = frag6_of(whole, 56, 108, false, id);
	run_case_bytes(dp(), Prog::BrIngress, f2, TC_ACT_SHOT, KVX_R_FRAG_PARKED, std::nullopt);
	expect_parked6(dp(), f2, KVX_BIND_OUT, mac_of(kGuest6A));
	const Packet6 sent = snat6(whole, 62010);
	const RunResult r1 = run_case_bytes(dp(), Prog::BrIngress, f1, TC_ACT_REDIRECT,
					    KVX_R_XLATE_OUT, frag6_of(sent, 0, 56, true, id));
	run_case_bytes(dp(), Prog::BrIngress, f2, TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		       frag6_of(sent, 56, 108, false, id));
	EXPECT_TRUE(dp().fragq_drain().empty()) << "it followed its first: nothing parked";
	// The datagram's entry names the sending guest and the next hop the
	// first fragment went to (the daemon sends a parked one there).
	bool out_entry = false;
	for (const auto &[k, v] : dp().frag6_entries()) {
		if (k.dir != KVX_BIND_OUT)
			continue;
		out_entry = true;
		Mac guest, next;
		std::memcpy(guest.data(), v.guest_mac, 6);
		std::memcpy(next.data(), v.gw_mac, 6);
		EXPECT_EQ(guest, mac_of(kGuest6A));
		EXPECT_EQ(Bytes(next.begin(), next.end()), Bytes(r1.out.begin(), r1.out.begin() + 6))
			<< "the first fragment's destination MAC";
		EXPECT_EQ(std::memcmp(v.addr, kUplink6.data(), 16), 0);
	}
	EXPECT_TRUE(out_entry);
	// Another datagram (another id) of the same flow: its own first.
	const Bytes other = frag6_of(whole, 56, 108, false, id + 1);
	run_case_bytes(dp(), Prog::BrIngress, other, TC_ACT_SHOT, KVX_R_FRAG_PARKED, std::nullopt);
	expect_parked6(dp(), other, KVX_BIND_OUT, mac_of(kGuest6A));

	Packet6 back = reply6(sent);
	back.payload = pattern(200, 0x5a);
	const Bytes back2 = frag6_of(back, 104, 208, false, 9);
	run_case_bytes(dp(), Prog::UpIngress, back2, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST,
		       std::nullopt);
	expect_parked6(dp(), back2, KVX_BIND_IN);
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 0, 104, true, 9), TC_ACT_REDIRECT,
		       KVX_R_XLATE_IN, frag6_of(dnat6(back, kGuest6A, 62010), 0, 104, true, 9));
	run_case_bytes(dp(), Prog::UpIngress, back2, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		       frag6_of(dnat6(back, kGuest6A, 62010), 104, 208, false, 9));

	// Aged past KVX_FRAG_TIMEOUT_S: the entry is an earlier datagram's.
	for (auto &[k, v] : dp().frag6_entries()) {
		v.created_ns = boot_ns_ago((KVX_FRAG_TIMEOUT_S + 1) * 1000000000ULL);
		dp().frag6_update(k, v);
	}
	run_case_bytes(dp(), Prog::BrIngress, f2, TC_ACT_SHOT, KVX_R_FRAG_PARKED, std::nullopt);
	expect_parked6(dp(), f2, KVX_BIND_OUT, mac_of(kGuest6A));
	run_case_bytes(dp(), Prog::UpIngress, back2, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST,
		       std::nullopt);
	expect_parked6(dp(), back2, KVX_BIND_IN);
}

// The host's own fragmented datagrams never go through the park: a first
// fragment no guest takes marks its datagram the host's (an entry with a
// zero address) and its later fragments follow it there uncopied; a later
// fragment to an address no guest is reached at is the host's without a
// copy; a hop limit that expires here is not parked.
TEST_F(Nat66Test, HostsFragmentsSkipThePark)
{
	Packet6 to_host = from_uplink6(make_udp6(kRemote6A, 5353, kUplink6, 9999, 200));
	to_host.payload = pattern(200, 0x33);
	const Bytes first = frag6_of(to_host, 0, 104, true, 0x5151);
	const Bytes later = frag6_of(to_host, 104, 208, false, 0x5151);
	run_case_bytes(dp(), Prog::UpIngress, first, TC_ACT_OK, KVX_R_PASS_HOST, std::nullopt);
	// The host's mark, in its own table (kvx_fraghost6), none among the
	// guests' entries.
	EXPECT_TRUE(dp().frag6_entries().empty());
	const auto marks = dp().fraghost6_keys();
	ASSERT_EQ(marks.size(), 1u);
	EXPECT_EQ(marks[0].dir, KVX_BIND_IN);
	EXPECT_EQ(marks[0].id, htonl(0x5151));
	run_case_bytes(dp(), Prog::UpIngress, later, TC_ACT_OK, KVX_R_PASS_HOST, std::nullopt);
	run_case_bytes(dp(), Prog::UpIngress, later, TC_ACT_OK, KVX_R_PASS_HOST, std::nullopt);
	EXPECT_TRUE(dp().fragq_drain().empty()) << "nothing parked";
	// Another datagram (another id) ahead of its first: perhaps a guest's.
	const Bytes ahead = frag6_of(to_host, 104, 208, false, 0x5152);
	run_case_bytes(dp(), Prog::UpIngress, ahead, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST,
		       std::nullopt);
	expect_parked6(dp(), ahead, KVX_BIND_IN);

	// To another of the host's addresses: no guest is reached there.
	Packet6 elsewhere = to_host;
	elsewhere.dst = ip6("2001:db8:1::77");
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(elsewhere, 104, 208, false, 0x5153),
		       TC_ACT_OK, KVX_R_PASS_HOST, std::nullopt);
	EXPECT_TRUE(dp().fragq_drain().empty()) << "not an address a guest is reached at";

	// A hop limit that would expire here: the host's, not parked.
	Packet6 last_hop = to_host;
	last_hop.hop_limit = 1;
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(last_hop, 104, 208, false, 0x5154),
		       TC_ACT_OK, KVX_R_PASS_HOST, std::nullopt);
	EXPECT_TRUE(dp().fragq_drain().empty());

	// A fragmented ICMPv6 error to the host: the host's, and so are its
	// later fragments.
	const Packet6 err = from_uplink6(icmp6_error(
		kRemote6A, kUplink6, 1, 0, make_udp6(kUplink6, 4000, kRemote6A, 53, 200).build()));
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(err, 0, 104, true, 0x5155), TC_ACT_OK,
		       KVX_R_PASS_HOST, std::nullopt);
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(err, 104, 208, false, 0x5155), TC_ACT_OK,
		       KVX_R_PASS_HOST, std::nullopt);
	EXPECT_TRUE(dp().fragq_drain().empty());
}

// --- the extension header walk ---

struct ChainCase {
	std::string name;
	std::vector<ExtHdr> chain;
	int verdict;
	kvx_reason reason;
};

void PrintTo(const ChainCase &c, std::ostream *os)
{
	*os << c.name;
}

class Nat66Chains : public Nat66Test, public ::testing::WithParamInterface<ChainCase> {};

TEST_P(Nat66Chains, Walked)
{
	const ChainCase &tc = GetParam();
	Packet6 p = from_guest6(make_tcp6(kGuest6A, 62001, kRemote6A, 443));
	p.ext = tc.chain;
	if (tc.reason == KVX_R_XLATE_OUT)
		run6(Prog::BrIngress, p, tc.verdict, tc.reason, snat6(p, 62001));
	else
		run6(Prog::BrIngress, p, tc.verdict, tc.reason);
}

std::vector<ExtHdr> dstopts(std::size_t n)
{
	return std::vector<ExtHdr>(n, ext_options(kExtDstOpts, 8));
}

std::vector<ChainCase> chain_cases()
{
	std::vector<ExtHdr> eight = dstopts(7);
	eight.insert(eight.begin(), ext_options(kExtHopByHop, 8));
	std::vector<ExtHdr> nine = dstopts(8);
	nine.insert(nine.begin(), ext_options(kExtHopByHop, 8));
	ExtHdr esp;
	esp.type = kExtEsp;
	esp.rest.assign(6, 0);
	ExtHdr ah;
	ah.type = kExtAh;
	ah.rest.assign(14, 0);
	return {
		{"none", {}, TC_ACT_REDIRECT, KVX_R_XLATE_OUT},
		{"hop_by_hop", {ext_options(kExtHopByHop, 8)}, TC_ACT_REDIRECT, KVX_R_XLATE_OUT},
		{"dest_options_24",
		 {ext_options(kExtDstOpts, 24)},
		 TC_ACT_REDIRECT,
		 KVX_R_XLATE_OUT},
		{"routing_segments_left_0", {ext_routing(0)}, TC_ACT_REDIRECT, KVX_R_XLATE_OUT},
		{"atomic_fragment", {ext_fragment(0, false)}, TC_ACT_REDIRECT, KVX_R_XLATE_OUT},
		{"all_kinds",
		 {ext_options(kExtHopByHop, 16), ext_options(kExtDstOpts, 8), ext_routing(0),
		  ext_fragment(0, false), ext_options(kExtDstOpts, 8)},
		 TC_ACT_REDIRECT,
		 KVX_R_XLATE_OUT},
		{"dest_options_twice",
		 {ext_options(kExtDstOpts, 8), ext_options(kExtDstOpts, 16)},
		 TC_ACT_REDIRECT,
		 KVX_R_XLATE_OUT},
		// RFC 8200 4.1: each header once, destination options twice.
		{"dest_options_thrice", dstopts(3), TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"eight_headers", eight, TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"nine_headers", nine, TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"two_routing", {ext_routing(0), ext_routing(0)}, TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"two_atomic_fragments",
		 {ext_fragment(0, false), ext_fragment(0, false)},
		 TC_ACT_SHOT,
		 KVX_R_DROP_EXTHDR},
		// The last fragment header would say "not a fragment": the data
		// of a later fragment read as a TCP header and translated.
		{"fragment_then_atomic",
		 {ext_fragment(8, false), ext_fragment(0, false)},
		 TC_ACT_SHOT,
		 KVX_R_DROP_EXTHDR},
		{"routing_segments_left_2", {ext_routing(2)}, TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"hop_by_hop_not_first",
		 {ext_options(kExtDstOpts, 8), ext_options(kExtHopByHop, 8)},
		 TC_ACT_SHOT,
		 KVX_R_DROP_EXTHDR},
		{"esp", {esp}, TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"ah", {ah}, TC_ACT_SHOT, KVX_R_DROP_EXTHDR},
		{"first_fragment", {ext_fragment(0, true)}, TC_ACT_REDIRECT, KVX_R_XLATE_OUT},
		{"later_fragment", {ext_fragment(8, false)}, TC_ACT_SHOT, KVX_R_FRAG_PARKED},
	};
}

INSTANTIATE_TEST_SUITE_P(All, Nat66Chains, ::testing::ValuesIn(chain_cases()),
			 [](const ::testing::TestParamInfo<ChainCase> &i) { return i.param.name; });

// Cut at every byte of a chain and of the TCP header: with the payload
// length saying so (a short chain: DROP_EXTHDR; a short TCP header:
// DROP_MALFORMED), and with the payload length of the whole packet
// (longer than the frame: DROP_MALFORMED).  Never translated.
TEST_F(Nat66Test, TruncatedAtEveryByte)
{
	Packet6 p = from_guest6(make_tcp6(kGuest6A, 62001, kRemote6A, 443));
	p.ext = {ext_options(kExtHopByHop, 8), ext_options(kExtDstOpts, 16), ext_routing(0, 8)};
	const Bytes full = p.build();
	const std::size_t chain_end = 14 + 40 + 32;
	for (std::size_t cut = 14 + 40; cut < chain_end + 20; cut++) {
		SCOPED_TRACE("cut at " + std::to_string(cut));
		Bytes f(full.begin(), full.begin() + static_cast<long>(cut));
		f[18] = static_cast<std::uint8_t>((cut - 54) >> 8);
		f[19] = static_cast<std::uint8_t>(cut - 54);
		run_case_bytes(dp(), Prog::BrIngress, f, TC_ACT_SHOT,
			       cut < chain_end ? KVX_R_DROP_EXTHDR : KVX_R_DROP_MALFORMED,
			       std::nullopt);
		run_case_bytes(dp(), Prog::BrIngress,
			       Bytes(full.begin(), full.begin() + static_cast<long>(cut)),
			       TC_ACT_SHOT, KVX_R_DROP_MALFORMED, std::nullopt);
	}
	EXPECT_TRUE(dp().bind6_entries().empty());
}

// --- static mappings (`map add` with IPv6): port forwards and 1:1 ---

const Ip6 kMapped6 = ip6("2001:db8:77::101"); // on the uplink's /64, not the host's

// The SNAT of a mapped guest endpoint: from ext:port.
Packet6 snat6_to(Packet6 p, const Ip6 &ext, std::uint16_t port)
{
	p = snat6(p, port);
	p.src = ext;
	return p;
}

// A guest's packet p out through its 1:1 address ext (port: the external
// port, the guest's own for a 1:1 address): translated, or the counters
// that moved instead named.
void out_one6(Datapath &dp, const Packet6 &p, const Ip6 &ext, std::uint16_t port)
{
	const Stats before = dp.stats();
	const RunResult r = dp.run(Prog::BrIngress, p.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)))
		<< "counters: " << stats_delta(before, dp.stats());
	EXPECT_EQ(diff(r.out, snat6_to(p, ext, port).build()), "");
	EXPECT_EQ(check_checksums(r.out), "");
}

// A remote's first packet to ext:port (a SYN for TCP).
Packet6 inbound6(std::uint8_t proto, const Ip6 &ext, std::uint16_t port,
		 const Ip6 &remote = kRemote6A, std::uint16_t rport = 51000)
{
	Packet6 p = proto == kProtoTcp ? make_tcp6(remote, rport, ext, port) :
		    proto == kProtoUdp ? make_udp6(remote, rport, ext, port, 40) :
					 make_echo6(remote, ext, port);
	if (proto == kProtoIcmp6)
		p.icmp_type = kIcmp6EchoRequest;
	p.hop_limit = 60;
	return from_uplink6(p);
}

// Delivered with the binding's MACs unknown (nothing learnt yet): the
// kernel's neighbour table fills them (bpf_redirect_neigh), the frame's
// own are left.
Packet6 dnat6_neigh(Packet6 p, const Ip6 &guest, std::uint16_t port)
{
	const Packet6 in = p;
	p = dnat6(p, guest, port);
	p.src_mac = in.src_mac;
	p.dst_mac = in.dst_mac;
	return p;
}

// The guest's answer to a delivered packet (a SYN-ACK to a SYN).
Packet6 answer6(const Packet6 &delivered)
{
	Packet6 a = from_guest6(delivered);
	std::swap(a.src, a.dst);
	std::swap(a.sport, a.dport);
	a.src_mac = mac_of(a.src);
	a.dst_mac = Topology::kBridgeMac;
	a.hop_limit = 64;
	if (a.proto == kProtoTcp) {
		a.tcp_flags = kTcpSyn | kTcpAck;
		a.ack_seq = delivered.seq + 1;
		a.seq = 0x60000000;
	}
	if (a.proto == kProtoIcmp6)
		a.icmp_type = kIcmp6EchoReply;
	a.payload = a.proto == kProtoTcp ? Bytes{} : pattern(30, 0x5a);
	return a;
}

// [uplink]:2222 -> [fd42::14]:22: a remote's SYN reaches the guest from
// the remote's own address, the guest's SYN-ACK leaves from [uplink]:2222,
// the handshake completes the flow (SYN_RECV until then), and the guest
// learns its MAC into the IN half.  Anything but a SYN opens nothing.
TEST_F(Nat66Test, PortForwardOnUplinkAddress)
{
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	Packet6 stray = inbound6(kProtoTcp, kUplink6, 2222);
	stray.tcp_flags = kTcpAck;
	run6(Prog::UpIngress, stray, TC_ACT_SHOT, KVX_R_DROP_TCP_NO_FLOW);
	EXPECT_TRUE(dp().ct6_entries().empty());

	const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6_neigh(syn, kGuest6F, 22));
	auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_SYN_RECV);
	EXPECT_EQ(flows[0].second.ct.flags & (KVX_CT_F_STATIC | KVX_CT_F_INBOUND),
		  KVX_CT_F_STATIC | KVX_CT_F_INBOUND);
	EXPECT_EQ(ntohs(flows[0].second.ct.ext_port), 2222);
	EXPECT_EQ(std::memcmp(flows[0].second.ext_addr, kUplink6.data(), 16), 0);

	const Packet6 synack = answer6(dnat6(syn, kGuest6F, 22));
	out6(synack, 2222);
	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	// The MACs learnt from the guest's SYN-ACK deliver from now on.
	run6(Prog::UpIngress, ack, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(ack, kGuest6F, 22));
	flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].second.ct.state, KVX_CT_ESTABLISHED);

	// No dynamic binding was made for any of it: only the static pair.
	EXPECT_EQ(dp().bind6_entries().size(), 2u);
	// The guest's own new connection from the forwarded port leaves from
	// its external endpoint too.
	const Packet6 own = from_guest6(make_tcp6(kGuest6F, 22, kRemote6B, 443));
	out6(own, 2222);
	// Another port of the uplink address is still the host's.
	run6(Prog::UpIngress, inbound6(kProtoTcp, kUplink6, 2223), TC_ACT_OK, KVX_R_PASS_HOST);
	// UDP to the TCP forward's port: the host's.
	run6(Prog::UpIngress, inbound6(kProtoUdp, kUplink6, 2222), TC_ACT_OK, KVX_R_PASS_HOST);
}

// A SYN flood at a port forward takes the guest's inbound quota only, and
// there recycles its own half-open flows (early drop, as IPv4's: the third
// SYN at a quota of two evicts the flooding remote's newest, where it was
// dropped before);
// the guest's own outbound flows still open.
TEST_F(Nat66Test, ForwardedSynFloodStaysWithinTheInboundQuota)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 2; });
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	out6(from_guest6(make_udp6(kGuest6F, 7000, kRemote6A, 53)));
	// (To F's MAC: F owns its address, guest6_mac_from_owner.)
	for (std::uint16_t rport : {51000, 51001, 51002}) {
		const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222, kRemote6A, rport);
		run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		     dnat6(syn, kGuest6F, 22));
	}
	std::vector<std::uint16_t> inbound;
	for (const auto &[k, v] : dp().ct6_entries())
		if (v.ct.flags & KVX_CT_F_INBOUND)
			inbound.push_back(ntohs(k.rem_port));
	std::sort(inbound.begin(), inbound.end());
	EXPECT_EQ(inbound, (std::vector<std::uint16_t>{51000, 51002}))
		<< "the flooding remote's newest gave way";
	out6(from_guest6(make_udp6(kGuest6F, 7001, kRemote6A, 53)));
}

// A real connection through an IPv6 forward, whose SYN the guest answered,
// survives a flood of SYNs (three rings' worth, never answered, from one
// source: a host of the client's own /64) at the inbound quota and
// completes its handshake; the flood's flows sit in the guest's IPv6 ring
// (kvx_halfopen6).
TEST_F(Nat66Test, ForwardedSynFloodSparesAFlowTheGuestAnswered)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 3; });
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	// The guest's own connection from the forwarded port: the forward
	// learns its MAC, and every inbound flow below counts in its slot.
	out6(from_guest6(make_tcp6(kGuest6F, 22, kRemote6B, 443)), 2222);
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6F));
	const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222, kRemote6B, 52000);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn, kGuest6F, 22));
	const Packet6 synack = answer6(dnat6(syn, kGuest6F, 22));
	out6(synack, 2222);
	for (std::uint16_t i = 0; i < 3 * KVX_HALFOPEN_RING; i++) {
		const Packet6 f = inbound6(kProtoTcp, kUplink6, 2222, kRemote6A,
					   static_cast<std::uint16_t>(51000 + i));
		run6(Prog::UpIngress, f, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(f, kGuest6F, 22));
	}
	EXPECT_EQ(dp().gflows_at(slot).in, 3u) << "the flood recycles its own entries";
	const auto ring = dp().halfopen6_at(slot);
	ASSERT_TRUE(ring);
	// The flood's first flow, its newest (each new one evicted the one
	// before: the remote's own newest) and the answered one are left; the
	// newest's key is in the ring.
	std::vector<std::uint16_t> inbound;
	for (const auto &[k, v] : dp().ct6_entries())
		if (v.ct.flags & KVX_CT_F_INBOUND)
			inbound.push_back(ntohs(k.rem_port));
	std::sort(inbound.begin(), inbound.end());
	const std::uint16_t newest = static_cast<std::uint16_t>(51000 + 3 * KVX_HALFOPEN_RING - 1);
	EXPECT_EQ(inbound, (std::vector<std::uint16_t>{51000, newest, 52000}));
	std::size_t in_ring = 0;
	for (const kvx_ct6_key &k : ring->keys)
		in_ring += k.proto == kProtoTcp && ntohs(k.rem_port) == newest;
	EXPECT_EQ(in_ring, 1u);
	EXPECT_EQ(ack_in6(syn, synack, kGuest6F, 22), KVX_CT_ESTABLISHED);
}

// An IPv6 flood from one address that the guest answers, at the quota
// before a real client's SYN comes, recycles that address's own flows and
// leaves the client's place in the ring alone: its handshake completes.
TEST_F(Nat66Test, EarlyDropKeepsAnotherRemotesHandshakeThroughAOneSourceFlood)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 3; });
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	out6(from_guest6(make_tcp6(kGuest6F, 22, kRemote6B, 443)), 2222);
	const std::uint32_t slot = dp().mac_slot(mac_of(kGuest6F));
	std::uint16_t fport = 51000;
	auto flood = [&](std::uint32_t count) {
		for (std::uint32_t i = 0; i < count; i++, fport++) {
			const Packet6 f = inbound6(kProtoTcp, kUplink6, 2222, kRemote6A, fport);
			run6(Prog::UpIngress, f, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
			     dnat6(f, kGuest6F, 22));
			out6(answer6(dnat6(f, kGuest6F, 22)), 2222);
		}
	};
	flood(3);
	const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222, kRemote6B, 52000);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn, kGuest6F, 22));
	const Packet6 synack = answer6(dnat6(syn, kGuest6F, 22));
	out6(synack, 2222);
	flood(2 * KVX_HALFOPEN_RING);
	EXPECT_EQ(dp().gflows_at(slot).in, 3u);
	EXPECT_EQ(ack_in6(syn, synack, kGuest6F, 22), KVX_CT_ESTABLISHED);
}

// [2001:db8:77::101]:8080 -> [fd42::14]:80, on an address the host does not
// have: inbound reaches the guest, its answer leaves from that address;
// another port of it, and the address when unmapped (`map del`), are the
// host's again.
TEST_F(Nat66Test, PortForwardOnLiteralAddress)
{
	add_static6(dp(), kProtoTcp, kMapped6, 8080, kGuest6F, 80);
	const Packet6 syn = inbound6(kProtoTcp, kMapped6, 8080);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6_neigh(syn, kGuest6F, 80));
	const Packet6 synack = answer6(dnat6(syn, kGuest6F, 80));
	const Bytes in = synack.build();
	const RunResult r = dp().run(Prog::BrIngress, in, ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(diff(r.out, snat6_to(synack, kMapped6, 8080).build()), "");
	EXPECT_EQ(check_checksums(r.out), "");

	run6(Prog::UpIngress, inbound6(kProtoTcp, kMapped6, 8081), TC_ACT_OK, KVX_R_PASS_HOST);
	run6(Prog::UpIngress, inbound6(kProtoUdp, kMapped6, 8080), TC_ACT_OK, KVX_R_PASS_HOST);

	del_static6(dp(), kProtoTcp, kMapped6, 8080, kGuest6F, 80);
	run6(Prog::UpIngress, inbound6(kProtoTcp, kMapped6, 8080, kRemote6B), TC_ACT_OK,
	     KVX_R_PASS_HOST);
}

// The forward's IN half belongs to the MAC that uses it, as a dynamic
// binding does: guest B with guest A's address and forwarded port cannot
// take A's inbound connections.
TEST_F(Nat66Test, PortForwardOwnedByItsMac)
{
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6_neigh(syn, kGuest6F, 22));
	const Packet6 synack = answer6(dnat6(syn, kGuest6F, 22));
	out6(synack, 2222);
	Packet6 spoof = from_guest6(make_tcp6(kGuest6F, 22, kRemote6B, 443));
	spoof.src_mac = mac_of(kGuest6B);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	Packet6 again = synack;
	again.src_mac = mac_of(kGuest6B);
	run6(Prog::BrIngress, again, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	// A's next connection is still delivered to A's MAC.
	const Packet6 syn2 = inbound6(kProtoTcp, kUplink6, 2222, kRemote6B, 52000);
	run6(Prog::UpIngress, syn2, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn2, kGuest6F, 22));
}

// 2001:db8:77::101 <-> fd42::14, 1:1: every port and echo requests reach
// the guest, ports kept; the guest's own flows leave from the mapped
// address, ports kept, not from the uplink's.
TEST_F(Nat66Test, OneToOneTcpUdpEcho)
{
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	const Packet6 syn = inbound6(kProtoTcp, kMapped6, 5555);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
	     dnat6_neigh(syn, kGuest6F, 5555));
	const Packet6 synack = answer6(dnat6(syn, kGuest6F, 5555));
	{
		const RunResult r =
			dp().run(Prog::BrIngress, synack.build(), ingress_ifindex(Prog::BrIngress));
		EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
		EXPECT_EQ(diff(r.out, snat6_to(synack, kMapped6, 5555).build()), "");
		EXPECT_EQ(check_checksums(r.out), "");
	}
	const Packet6 ping = inbound6(kProtoIcmp6, kMapped6, 0x99);
	run6(Prog::UpIngress, ping, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(ping, kGuest6F, 0x99));
	const Packet6 pong = answer6(dnat6(ping, kGuest6F, 0x99));
	out_one6(dp(), pong, kMapped6, 0x99);
	out_one6(dp(), from_guest6(make_udp6(kGuest6F, 5353, kRemote6B, 53, 20)), kMapped6, 5353);
	// Only the static pair: no binding of the pool was made.
	EXPECT_EQ(dp().bind6_entries().size(), 2u);
	// Another guest's echo reply without a request is not let out.
	Packet6 lone = from_guest6(make_echo6(kGuest6A, kRemote6A, 0x42));
	lone.icmp_type = kIcmp6EchoReply;
	run6(Prog::BrIngress, lone, TC_ACT_SHOT, KVX_R_DROP_ICMP_TYPE);
	// Unmapped: the host's.
	del_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	run6(Prog::UpIngress, inbound6(kProtoTcp, kMapped6, 5556), TC_ACT_OK, KVX_R_PASS_HOST);
}

// Path-MTU discovery and traceroute for mapped guests: a router's Packet
// Too Big about the guest's answer through a forward ([uplink]:2222) or a
// 1:1 address goes to the guest, its quote translated back, as errors
// about the guest's own flows do; a quote naming another remote is not.
TEST_F(Nat66Test, IcmpErrorInAboutMappedFlows)
{
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	add_static6(dp(), 0, kMapped6, 0, kGuest6A, 0);
	struct Case {
		Ip6 ext, guest;
		std::uint16_t ext_port, guest_port;
	};
	for (const Case &c :
	     {Case{kUplink6, kGuest6F, 2222, 22}, Case{kMapped6, kGuest6A, 5555, 5555}}) {
		SCOPED_TRACE("via " + std::to_string(c.ext_port));
		const Packet6 syn = inbound6(kProtoTcp, c.ext, c.ext_port);
		const RunResult in =
			dp().run(Prog::UpIngress, syn.build(), ingress_ifindex(Prog::UpIngress));
		ASSERT_EQ(verdict_name(in.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
		// The handshake's answer (the binding learns the guest's MAC),
		// then a segment too big for a link beyond the router.
		Packet6 synack = answer6(dnat6(syn, c.guest, c.guest_port));
		const RunResult out =
			dp().run(Prog::BrIngress, synack.build(), ingress_ifindex(Prog::BrIngress));
		EXPECT_EQ(diff(out.out, snat6_to(synack, c.ext, c.ext_port).build()), "");
		synack.tcp_flags = kTcpAck;
		synack.seq += 1;
		synack.payload = pattern(1200, 0x33);
		const Bytes sent = snat6_to(synack, c.ext, c.ext_port).build();
		const Packet6 err = from_uplink6(icmp6_error(kRouter6, c.ext, 2, 1280, sent));
		const Packet6 want = error_to_guest6(err, kRouter6, synack, sent);
		const RunResult r =
			run6(Prog::UpIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_RELATED_IN, want);
		EXPECT_EQ(check_checksums(r.out), "");
		Packet6 other = snat6_to(synack, c.ext, c.ext_port);
		other.dst = kRemote6B;
		run6(Prog::UpIngress,
		     from_uplink6(icmp6_error(kRouter6, c.ext, 2, 1280, other.build())), TC_ACT_OK,
		     KVX_R_PASS_HOST);
	}
}

// A mapped guest's own error about a packet it got (a closed UDP port at a
// 1:1 address or a literal forward) leaves from the mapped address, also
// as the first packet through the mapping (no MAC learnt yet); one about a
// flow of another guest's mapping is dropped.
TEST_F(Nat66Test, IcmpErrorOutFromMappedGuest)
{
	add_static6(dp(), kProtoUdp, kMapped6, 5353, kGuest6F, 53);
	add_static6(dp(), 0, ip6("2001:db8:77::102"), 0, kGuest6A, 0);
	struct Case {
		Ip6 ext, guest;
		std::uint16_t ext_port, guest_port;
	};
	for (const Case &c : {Case{kMapped6, kGuest6F, 5353, 53},
			      Case{ip6("2001:db8:77::102"), kGuest6A, 4000, 4000}}) {
		SCOPED_TRACE("via " + std::to_string(c.ext_port));
		const Packet6 in = inbound6(kProtoUdp, c.ext, c.ext_port);
		const RunResult r1 =
			dp().run(Prog::UpIngress, in.build(), ingress_ifindex(Prog::UpIngress));
		ASSERT_EQ(verdict_name(r1.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
		const Packet6 got = dnat6(in, c.guest, c.guest_port);
		expect_error_out6(from_guest6(icmp6_error(c.guest, kRemote6A, 1, 4, got.build())),
				  in, got.build(), 0, c.ext);
	}
	// Guest A about the flow of guest F's forward, once F has answered
	// through it (its MAC learnt): not its binding.
	const Packet6 in = inbound6(kProtoUdp, kMapped6, 5353, kRemote6A, 51001);
	dp().run(Prog::UpIngress, in.build(), ingress_ifindex(Prog::UpIngress));
	const Packet6 got = dnat6(in, kGuest6F, 53);
	const Packet6 answer = answer6(got);
	const RunResult a =
		dp().run(Prog::BrIngress, answer.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(diff(a.out, snat6_to(answer, kMapped6, 5353).build()), "");
	Packet6 spoof = from_guest6(icmp6_error(kGuest6F, kRemote6A, 1, 4, got.build()));
	spoof.src_mac = mac_of(kGuest6A);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
}

// 1:1 for the protocols translated by address alone (GRE, SCTP, IPv4- and
// IPv6-in-IPv6): both ways, payload untouched; one with a pseudo-header
// checksum kvmxdp does not know (DCCP) is not translated, and without a
// 1:1 mapping none is.  To the uplink address they stay the host's.
TEST_F(Nat66Test, OneToOneAddressOnlyProtocols)
{
	Packet6 gre = from_guest6(make_tcp6(kGuest6F, 0, kRemote6A, 0));
	gre.proto = kProtoGre;
	gre.payload = pattern(24, 0x47);
	run6(Prog::BrIngress, gre, TC_ACT_SHOT, KVX_R_DROP_PROTO_UNTRANSLATED);
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	out_one6(dp(), gre, kMapped6, 0);
	Packet6 back = from_uplink6(gre);
	back.src = kRemote6A;
	back.dst = kMapped6;
	back.hop_limit = 60;
	back.payload = pattern(40, 0x74);
	// Delivered to the MAC the 1:1 mapping learnt from the guest's packet.
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6F, 0));
	auto flows = dp().ct6_entries();
	ASSERT_EQ(flows.size(), 1u);
	EXPECT_EQ(flows[0].first.proto, kProtoGre);
	EXPECT_EQ(flows[0].second.ct.flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE),
		  KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);

	Packet6 dccp = gre;
	dccp.proto = 33;
	run6(Prog::BrIngress, dccp, TC_ACT_SHOT, KVX_R_DROP_PROTO_UNTRANSLATED);
	Packet6 dccp_in = back;
	dccp_in.proto = 33;
	run6(Prog::UpIngress, dccp_in, TC_ACT_OK, KVX_R_PASS_HOST);
	Packet6 to_host = back;
	to_host.dst = kUplink6;
	run6(Prog::UpIngress, to_host, TC_ACT_OK, KVX_R_PASS_HOST);
}


// A mapped address other than the uplink's (2001:db8:77::101, 1:1 or a
// forward's) is announced: once the daemon's duplicate address detection
// found it free (kvx_extaddr6 KVX_EXT_F_ARP), a LAN host's Neighbour
// Solicitation for it is answered with the uplink's MAC (Override set: it
// is ours, not proxied), unicast NUD too, and a LAN host's DAD probe for it
// is defended to all nodes.  While DAD runs or after a conflict, and for an
// address that is no mapping's, the NS is the host's (no answer: the node
// that owns it answers).
TEST_F(Nat66Test, MappedAddressAnsweredOnceAnnounced)
{
	using namespace nd6;
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	const Ip6 lan = ip6(Topology::kGatewayAddr6);
	const Packet6 ns = neigh_sol(lan, Topology::kGatewayMac, kMapped6);
	// Not in kvx_extaddr6 (an older attach, `map add` without a daemon's
	// DAD yet), probing, in conflict: the host's.
	run6(Prog::UpIngress, ns, TC_ACT_OK, KVX_R_PASS_ND);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_PROBING);
	run6(Prog::UpIngress, ns, TC_ACT_OK, KVX_R_PASS_ND);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP | KVX_EXT_F_CONFLICT);
	run6(Prog::UpIngress, ns, TC_ACT_OK, KVX_R_PASS_ND);

	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP);
	run6(Prog::UpIngress, ns, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     answer_na(ns, Topology::kUplinkMac, kOverride));
	Packet6 nud = ns;
	nud.dst = kMapped6;
	nud.dst_mac = Topology::kUplinkMac;
	run6(Prog::UpIngress, nud, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     answer_na(nud, Topology::kUplinkMac, kOverride));
	const Packet6 dad = neigh_sol(Ip6{}, Topology::kGatewayMac, kMapped6);
	run6(Prog::UpIngress, dad, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     answer_na(dad, Topology::kUplinkMac, kOverride));

	// The uplink's own address and unmapped ones stay the host's; so do
	// invalid solicitations (RFC 4861 7.1.1: hop limit, checksum).
	run6(Prog::UpIngress, neigh_sol(lan, Topology::kGatewayMac, kUplink6), TC_ACT_OK,
	     KVX_R_PASS_ND);
	run6(Prog::UpIngress, neigh_sol(lan, Topology::kGatewayMac, ip6("2001:db8:77::102")),
	     TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 bad = ns;
	bad.hop_limit = 254;
	run6(Prog::UpIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
	bad = ns;
	bad.l4_csum = 0x1234;
	run6(Prog::UpIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
	// Relay's programs never see NAT66's table, nor NAT66 with IPv6 off.
	kvx_cfg6 off{};
	dp().set_cfg6(off);
	run6(Prog::UpIngress, ns, TC_ACT_OK, KVX_R_PASS_NOT_IP);
}


// --- per-guest counters (kvx_gstats): IPv6 charged to the guest's MAC ---

std::uint64_t gdrops(const kvx_gstat &g)
{
	std::uint64_t n = 0;
	for (int i = 0; i < KVX_GD_MAX; i++)
		n += g.drops[i];
	return n;
}

// A guest's translated IPv6, out and its reply in, counts in the slot of
// its MAC, the one its IPv4 counts in: frame bytes as they came in, each
// way; another guest's slot does not move.
TEST_F(Nat66Test, GuestCountersChargeIpv6ToTheGuestsMac)
{
	const Mac mac = mac_of(kGuest6A);
	const std::uint32_t slot = dp().gstats_mac_slot(mac);
	const std::uint32_t slot_b = dp().gstats_mac_slot(mac_of(kGuest6B));
	ASSERT_NE(slot & (KVX_GSTATS_SLOTS - 1), slot_b & (KVX_GSTATS_SLOTS - 1))
		<< "the two guests share a counter slot with this seed";
	Packet v4 = from_guest(make_udp(kGuestA, 5000, kRemote1, 53));
	v4.src_mac = mac;
	const Bytes v4f = v4.build();
	const RunResult r4 = dp().run(Prog::BrIngress, v4f, ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(diff(r4.out, snat(v4, parse(r4.out).sport).build()), "");
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 5353, kRemote6A, 53, 100));
	const std::uint16_t port = out6(q);
	const Packet6 back = reply6(snat6(q, port));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 5353));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 5353));
	// Neighbour discovery is the host's: nobody's traffic.
	Packet6 ns = from_guest6(make_echo6(kGuest6A, ip6("ff02::1:ff00:1"), 0));
	ns.icmp_type = kIcmp6NeighSol;
	ns.hop_limit = 255;
	run6(Prog::BrIngress, ns, TC_ACT_OK, KVX_R_PASS_ND);

	const kvx_gstat a = dp().gstats_at(slot);
	EXPECT_EQ(a.pkts_out, 2u);
	EXPECT_EQ(a.bytes_out, v4f.size() + q.build().size());
	EXPECT_EQ(a.pkts_in, 2u);
	EXPECT_EQ(a.bytes_in, 2 * back.build().size());
	EXPECT_EQ(gdrops(a), 0u);
	const kvx_gstat b = dp().gstats_at(slot_b);
	EXPECT_EQ(b.pkts_out + b.pkts_in + gdrops(b), 0u) << "another guest's slot moved";
}

// Its IPv6 drops count under their class: a flow over its quota, a frame
// with another guest's address (charged to the MAC that sent it).
TEST_F(Nat66Test, GuestCountersChargeIpv6DropsToTheGuest)
{
	set_cfg([](kvx_cfg &c) { c.flow_quota = 1; });
	const std::uint32_t slot = dp().gstats_mac_slot(mac_of(kGuest6A));
	const std::uint32_t slot_b = dp().gstats_mac_slot(mac_of(kGuest6B));
	out6(from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53)));
	run6(Prog::BrIngress, from_guest6(make_udp6(kGuest6A, 7001, kRemote6A, 53)), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_QUOTA);
	Packet6 spoof = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	spoof.src_mac = mac_of(kGuest6B);
	run6(Prog::BrIngress, spoof, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	const kvx_gstat a = dp().gstats_at(slot);
	EXPECT_EQ(a.pkts_out, 1u);
	EXPECT_EQ(a.drops[KVX_GD_QUOTA], 1u);
	EXPECT_EQ(gdrops(a), 1u);
	const kvx_gstat b = dp().gstats_at(slot_b);
	EXPECT_EQ(b.drops[KVX_GD_SPOOF], 1u);
	EXPECT_EQ(b.pkts_out + b.pkts_in, 0u);
}

// A hairpin is out of the sender and into the target, as IPv4's.
TEST_F(Nat66Test, GuestCountersChargeAHairpinToBothGuests)
{
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kUplink6, 2222));
	RunResult r = dp().run(Prog::BrIngress, syn.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	Packet6 at_f = syn;
	at_f.src = kUplink6;
	at_f.sport = parse6(r.out).sport;
	at_f.dst = kGuest6F;
	at_f.dport = 22;
	const Packet6 synack = answer6(at_f);
	r = dp().run(Prog::BrIngress, synack.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const kvx_gstat a = dp().gstats_at(dp().gstats_mac_slot(mac_of(kGuest6A)));
	EXPECT_EQ(a.pkts_out, 1u);
	EXPECT_EQ(a.bytes_out, syn.build().size());
	EXPECT_EQ(a.pkts_in, 1u);
	EXPECT_EQ(a.bytes_in, synack.build().size());
	const kvx_gstat f = dp().gstats_at(dp().gstats_mac_slot(mac_of(kGuest6F)));
	EXPECT_EQ(f.pkts_out, 1u);
	EXPECT_EQ(f.bytes_out, synack.build().size());
}

// Hairpin (RFC 4787 REQ-9), as IPv4's: guest A's packets to guest F's
// forward on the uplink's address, on a literal address, and to F's 1:1
// address turn around on the bridge (kvx_br6 tail-calls kvx_br6_hairpin),
// translated both ways: F sees A's external endpoint (the uplink's address
// and A's NAT port), A sees F's answers come from the mapped endpoint; one
// hop (hop limit - 1 once), every checksum recomputed from scratch.
TEST_F(Nat66Test, HairpinToMappedAddresses)
{
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6F, 22);
	const Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kUplink6, 2222));
	const Stats before = dp().stats();
	RunResult r = dp().run(Prog::BrIngress, syn.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(stats_delta(before, dp().stats()),
		  "XLATE_HAIRPIN +1/+" + std::to_string(syn.build().size()) + "B");
	const std::uint16_t port = parse6(r.out).sport;
	// F's MAC not learnt yet: the frame's MACs stay (bpf_redirect_neigh).
	Packet6 want = syn;
	want.src = kUplink6;
	want.sport = port;
	want.dst = kGuest6F;
	want.dport = 22;
	want.hop_limit--;
	EXPECT_EQ(diff(r.out, want.build()), "");
	EXPECT_EQ(check_checksums(r.out), "");

	// F answers A's external endpoint: back to A, from [uplink]:2222, to
	// A's MAC (its binding's).
	Packet6 synack = answer6(want);
	r = dp().run(Prog::BrIngress, synack.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	Packet6 back = synack;
	back.src = kUplink6;
	back.sport = 2222;
	back.dst = kGuest6A;
	back.dport = 40000;
	back.hop_limit--;
	back.src_mac = Topology::kBridgeMac;
	back.dst_mac = mac_of(kGuest6A);
	EXPECT_EQ(diff(r.out, back.build()), "");
	EXPECT_EQ(check_checksums(r.out), "");
	// A's ACK reaches F at the MAC F's answer taught its forward.
	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = synack.seq + 1;
	r = dp().run(Prog::BrIngress, ack.build(), ingress_ifindex(Prog::BrIngress));
	Packet6 want_ack = ack;
	want_ack.src = kUplink6;
	want_ack.sport = port;
	want_ack.dst = kGuest6F;
	want_ack.dport = 22;
	want_ack.hop_limit--;
	want_ack.src_mac = Topology::kBridgeMac;
	want_ack.dst_mac = mac_of(kGuest6F);
	EXPECT_EQ(diff(r.out, want_ack.build()), "");
	// Two flows: A's out to [uplink]:2222, F's in from A's endpoint.
	EXPECT_EQ(dp().ct6_entries().size(), 2u);

	// A forward on a literal address, a 1:1 address (UDP, ports kept):
	// once announced (kvx_extaddr6); before, the address may be another
	// node's, and the packet is routed out to it.
	add_static6(dp(), kProtoUdp, kMapped6, 8080, kGuest6F, 80);
	const Packet6 u = from_guest6(make_udp6(kGuest6A, 41000, kMapped6, 8080, 20));
	dp().extaddr6_set(kMapped6, KVX_EXT_F_CONFLICT);
	{
		const Stats b = dp().stats();
		dp().run(Prog::BrIngress, u.build(), ingress_ifindex(Prog::BrIngress));
		EXPECT_EQ(stats_delta(b, dp().stats()),
			  "XLATE_OUT +1/+" + std::to_string(u.build().size()) + "B");
	}
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP);
	r = dp().run(Prog::BrIngress, u.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	Packet6 want_u = u;
	want_u.src = kUplink6;
	want_u.sport = parse6(r.out).sport;
	want_u.dst = kGuest6F;
	want_u.dport = 80;
	want_u.hop_limit--;
	// This forward learnt no MAC, but F owns its address by now.
	want_u.src_mac = Topology::kBridgeMac;
	want_u.dst_mac = mac_of(kGuest6F);
	EXPECT_EQ(diff(r.out, want_u.build()), "");
	EXPECT_EQ(check_checksums(r.out), "");
	const Ip6 one = ip6("2001:db8:77::102");
	add_static6(dp(), 0, one, 0, kGuest6B, 0);
	dp().extaddr6_set(one, KVX_EXT_F_ARP);
	const Packet6 t = from_guest6(make_udp6(kGuest6A, 41001, one, 5353, 20));
	r = dp().run(Prog::BrIngress, t.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	Packet6 want_t = t;
	want_t.src = kUplink6;
	want_t.sport = parse6(r.out).sport;
	want_t.dst = kGuest6B;
	want_t.hop_limit--;
	EXPECT_EQ(diff(r.out, want_t.build()), "");
	EXPECT_EQ(check_checksums(r.out), "");

	// Another port of the uplink's address is still the host's; an
	// unmapped literal address is routed out as any destination.
	run6(Prog::BrIngress, from_guest6(make_tcp6(kGuest6A, 40001, kUplink6, 2223)), TC_ACT_OK,
	     KVX_R_PASS_LOCAL);
	del_static6(dp(), 0, one, 0, kGuest6B, 0);
	dp().extaddr6_set(one, std::nullopt);
	const Packet6 gone = from_guest6(make_udp6(kGuest6A, 41002, one, 5353, 20));
	const Stats b2 = dp().stats();
	r = dp().run(Prog::BrIngress, gone.build(), ingress_ifindex(Prog::BrIngress));
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(stats_delta(b2, dp().stats()),
		  "XLATE_OUT +1/+" + std::to_string(gone.build().size()) + "B");
	EXPECT_EQ(parse6(r.out).src, kUplink6);
	EXPECT_EQ(parse6(r.out).dst, one);
}

// Hairpin of ICMPv6 errors (RFC 5508 REQ-7), as IPv4's: guest F's error
// about a packet guest A sent it through F's forward on the uplink's
// address (quoted: A's external endpoint -> F) reaches A from the forward's
// endpoint, quoting A's packet as A sent it (one hop later), whole or cut
// short; one hop in all, the expected frame's checksums computed from
// scratch.  (It went to the host before: A never heard of it.)  An error
// to the uplink's address about no hairpinned flow is still the host's.
TEST_F(Nat66Test, HairpinnedErrorToPortForwardReachesSender)
{
	add_static6(dp(), kProtoUdp, kUplink6, 5353, kGuest6F, 53);
	const Packet6 a = from_guest6(make_udp6(kGuest6A, 41000, kUplink6, 5353, 30));
	RunResult r = dp().run(Prog::BrIngress, a.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const Bytes delivered = r.out; // at F: from A's external endpoint to F:53
	ASSERT_EQ(parse6(delivered).src, kUplink6);
	ASSERT_EQ(parse6(delivered).dst, kGuest6F);
	for (std::size_t n : {std::size_t{0}, std::size_t{40 + 8}, std::size_t{40 + 4}}) {
		SCOPED_TRACE("quote " + std::to_string(n));
		const Packet6 err =
			from_guest6(icmp6_error(kGuest6F, kUplink6, 1, 0, delivered, n));
		const Packet6 want = error_to_guest6(err, kUplink6, a, delivered, n);
		const Stats before = dp().stats();
		r = run6(Prog::BrIngress, err, TC_ACT_REDIRECT, KVX_R_XLATE_HAIRPIN, want);
		EXPECT_EQ(check_checksums(r.out), "");
		EXPECT_EQ(stats_delta(before, dp().stats()),
			  "XLATE_HAIRPIN +1/+" + std::to_string(err.build().size()) + "B");
	}
	// Its hop limit runs out on the way, as an error's from the uplink.
	Packet6 last = from_guest6(icmp6_error(kGuest6F, kUplink6, 1, 0, delivered));
	last.hop_limit = 1;
	run6(Prog::BrIngress, last, TC_ACT_SHOT, KVX_R_DROP_TTL_IN);
	// About the host's own packet to F (no flow), or quoting another port
	// of F's: the host's, as before.
	const Bytes host = make_udp6(kUplink6, 33000, kGuest6F, 53).build();
	run6(Prog::BrIngress, from_guest6(icmp6_error(kGuest6F, kUplink6, 1, 0, host)), TC_ACT_OK,
	     KVX_R_PASS_LOCAL);
	Bytes other = delivered;
	other[14 + 40 + 2] ^= 0x01; // F's port: no flow of F's there
	run6(Prog::BrIngress, from_guest6(icmp6_error(kGuest6F, kUplink6, 1, 0, other)), TC_ACT_OK,
	     KVX_R_PASS_LOCAL);
}

// The same through 1:1 addresses on both sides (bind6_in_find's fallback):
// A's TCP segment to F's address reaches F from A's address; F's error
// about it goes back to A from F's address.  To an announced mapped
// address, an error about no hairpinned flow is dropped: only a hairpin
// brings a guest anything from there, and routed out it would go to our
// own address.
TEST_F(Nat66Test, HairpinnedErrorThroughOneToOneReachesSender)
{
	const Ip6 mapped_f = ip6("2001:db8:77::102");
	add_static6(dp(), 0, kMapped6, 0, kGuest6A, 0);
	add_static6(dp(), 0, mapped_f, 0, kGuest6F, 0);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP);
	dp().extaddr6_set(mapped_f, KVX_EXT_F_ARP);
	const Packet6 a = from_guest6(make_tcp6(kGuest6A, 41000, mapped_f, 22));
	RunResult r = dp().run(Prog::BrIngress, a.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const Bytes delivered = r.out;
	ASSERT_EQ(parse6(delivered).src, kMapped6);
	ASSERT_EQ(parse6(delivered).dst, kGuest6F);

	expect_hairpinned_error6(kGuest6F, kMapped6, 0, delivered, a, mapped_f);

	const Bytes none = make_udp6(kMapped6, 9, kGuest6F, 53).build();
	run6(Prog::BrIngress, from_guest6(icmp6_error(kGuest6F, kMapped6, 1, 0, none)), TC_ACT_SHOT,
	     KVX_R_DROP_ICMP_TYPE);
}

// The same about an echo request from a masqueraded guest, whose external
// identifier is not its own (one outside the pool is never kept): the
// quote's one identifier is the requester's, and reaches it as its own;
// the rewrite out of the target's side, of the quote's destination, leaves
// it.
TEST_F(Nat66Test, HairpinnedErrorQuotingAnEchoGivesTheSenderItsIdentifier)
{
	const Ip6 mapped_f = ip6("2001:db8:77::102");
	add_static6(dp(), 0, mapped_f, 0, kGuest6F, 0);
	dp().extaddr6_set(mapped_f, KVX_EXT_F_ARP);
	set_cfg([](kvx_cfg &c) {
		c.nat_port_lo = 20000;
		c.nat_port_hi = 30000;
	});
	const Packet6 a = from_guest6(make_echo6(kGuest6A, mapped_f, 40000));
	RunResult r = dp().run(Prog::BrIngress, a.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const Bytes delivered = r.out;
	ASSERT_EQ(parse6(delivered).src, kUplink6);
	ASSERT_EQ(parse6(delivered).dst, kGuest6F);
	ASSERT_NE(parse6(delivered).sport, 40000);

	expect_hairpinned_error6(kGuest6F, kUplink6, 4, delivered, a, mapped_f);
}

// --- MSS clamping (attach --clamp-mss, kvx_cfg.clamp_mss) ---

// IPv6 SYNs are clamped where IPv4's are, out and in, to the value less 20
// (the same path MTU: the IPv6 header is 20 bytes longer), the option
// found after others and at an odd offset, whose checksum update is
// byte-swapped; the expected frames' checksums are computed from scratch.
TEST_F(Nat66Test, MssClampedOnSynsBothWays)
{
	set_cfg([](kvx_cfg &c) { c.clamp_mss = 1400; });
	Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	syn.tcp_options = {0x02, 0x04, 0x05, 0xa0}; // MSS 1440
	RunResult r = dp().run(Prog::BrIngress, syn.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	const std::uint16_t port = parse6(r.out).sport;
	Packet6 want = snat6(syn, port);
	want.tcp_options = {0x02, 0x04, 0x05, 0x64}; // 1380
	EXPECT_EQ(diff(r.out, want.build()), "");
	EXPECT_EQ(check_checksums(r.out), "");

	Packet6 back = reply6(snat6(syn, port));
	back.tcp_options = {0x01, 0x02, 0x04, 0x05, 0xa0, 0x01, 0x01, 0x00};
	Packet6 want_in = dnat6(back, kGuest6A, 40000);
	want_in.tcp_options = {0x01, 0x02, 0x04, 0x05, 0x64, 0x01, 0x01, 0x00};
	r = run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, want_in);
	EXPECT_EQ(check_checksums(r.out), "");

	// Not a SYN, or an MSS already as small: untouched.
	Packet6 ack = syn;
	ack.tcp_flags = kTcpAck;
	ack.seq = syn.seq + 1;
	ack.ack_seq = back.seq + 1;
	out6(ack, port);
	Packet6 small = from_guest6(make_tcp6(kGuest6A, 40001, kRemote6A, 443));
	small.tcp_options = {0x01, 0x01, 0x04, 0x02, 0x02, 0x04, 0x05, 0x64};
	out6(small);
}

// A SYN whose TCP header sits behind more extension headers than an IPv4
// header's options could hold (here 32 bytes: hop-by-hop and destination
// options) is clamped as any other.
TEST_F(Nat66Test, MssClampedBehindExtensionHeaders)
{
	set_cfg([](kvx_cfg &c) { c.clamp_mss = 1400; });
	Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40002, kRemote6A, 443));
	syn.ext = {ext_options(kExtHopByHop, 8), ext_options(kExtDstOpts, 24)};
	syn.tcp_options = {0x01, 0x01, 0x04, 0x02, 0x02, 0x04, 0x05, 0xa0}; // MSS 1440
	const RunResult r =
		dp().run(Prog::BrIngress, syn.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	Packet6 want = snat6(syn, parse6(r.out).sport);
	want.tcp_options = {0x01, 0x01, 0x04, 0x02, 0x02, 0x04, 0x05, 0x64}; // 1380
	EXPECT_EQ(diff(r.out, want.build()), "");
	EXPECT_EQ(check_checksums(r.out), "");
}

// A value below 1240 would take IPv6 under what its minimum MTU carries
// (1280 - 60), which every IPv6 path takes: IPv6 SYNs get 1220.
TEST_F(Nat66Test, MssClampNeverBelowTheIpv6MinimumMtu)
{
	set_cfg([](kvx_cfg &c) { c.clamp_mss = 1200; });
	Packet6 syn = from_guest6(make_tcp6(kGuest6A, 40000, kRemote6A, 443));
	syn.tcp_options = {0x02, 0x04, 0x05, 0xa0};
	const RunResult r =
		dp().run(Prog::BrIngress, syn.build(), ingress_ifindex(Prog::BrIngress));
	ASSERT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	Packet6 want = snat6(syn, parse6(r.out).sport);
	want.tcp_options = {0x02, 0x04, 0x04, 0xc4}; // 1220
	EXPECT_EQ(diff(r.out, want.build()), "");
	Packet6 low = from_guest6(make_tcp6(kGuest6A, 40001, kRemote6A, 443));
	low.tcp_options = {0x02, 0x04, 0x04, 0xb0}; // 1200
	out6(low);
}

// An announced mapped address is ours on the uplink's link: nobody on the
// LAN can send from it.  A LAN host that does (to guest A's forward, to a
// reply port of A's flow) is a martian (as IPv4's inbound_martian drops
// the mapped addresses as sources): else A's answer to it would hairpin
// into guest F, the address's guest, from A's external endpoint.  While
// the address is held (DAD running, a conflict: another node may really
// have it), that node's packets are translated as any remote's.
TEST_F(Nat66Test, AnnouncedMappedAddressIsNoInboundSource)
{
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6A, 22);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP);
	const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222, kMapped6, 51000);
	run6(Prog::UpIngress, syn, TC_ACT_SHOT, KVX_R_DROP_MARTIAN_IN);
	EXPECT_TRUE(dp().ct6_entries().empty());
	// To the mapped address itself, and as a reply to A's own flow.
	run6(Prog::UpIngress, inbound6(kProtoUdp, kMapped6, 5353, kMapped6, 53), TC_ACT_SHOT,
	     KVX_R_DROP_MARTIAN_IN);
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	Packet6 back = reply6(snat6(q, port));
	back.src = kMapped6;
	run6(Prog::UpIngress, back, TC_ACT_SHOT, KVX_R_DROP_MARTIAN_IN);
	// Suspended (another network): not ours here.
	// (To A's MAC: A owns its address by now, guest6_mac_from_owner.)
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn, kGuest6A, 22));
	// Held: the node that has it reaches A's forward.
	const Packet6 syn2 = inbound6(kProtoTcp, kUplink6, 2222, kMapped6, 51001);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_CONFLICT);
	run6(Prog::UpIngress, syn2, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn2, kGuest6A, 22));
}

// The NS answer validates as RFC 4861 7.1.1 says before it answers (else
// the host's ndisc, which discards it): an option of length 0 (a parser
// would spin on it) or one past the message's end, a source link-layer
// address option in a DAD probe (from ::), a multicast NS to anything but
// the target's solicited-node group, a hop limit other than 255.  A valid
// one with an extra option (a nonce) is answered.
TEST_F(Nat66Test, MappedAddressNsValidated)
{
	using namespace nd6;
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP);
	const Ip6 lan = ip6(Topology::kGatewayAddr6);
	const Packet6 ns = neigh_sol(lan, Topology::kGatewayMac, kMapped6);
	const Packet6 dad = dad_probe(Topology::kGatewayMac, kMapped6);
	run6(Prog::UpIngress, ns, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     answer_na(ns, Topology::kUplinkMac, kOverride));
	run6(Prog::UpIngress, dad, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     answer_na(dad, Topology::kUplinkMac, kOverride));
	Packet6 nonce = ns;
	nonce.payload.insert(nonce.payload.end(), {14, 1, 1, 2, 3, 4, 5, 6});
	run6(Prog::UpIngress, nonce, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     answer_na(ns, Topology::kUplinkMac, kOverride));

	Packet6 zero = ns;
	zero.payload[17] = 0; // the source link-layer option's length
	run6(Prog::UpIngress, zero, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 zero2 = nonce;
	zero2.payload[25] = 0; // a second option of length 0
	run6(Prog::UpIngress, zero2, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 past = ns;
	past.payload[17] = 2; // 16 bytes, 8 there
	run6(Prog::UpIngress, past, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 slla = dad;
	slla.payload.insert(slla.payload.end(), {1, 1, 0x02, 0x6b, 0x76, 0, 0, 1});
	run6(Prog::UpIngress, slla, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 all = ns;
	all.dst = ip6("ff02::1");
	all.dst_mac = mcast_mac(all.dst);
	run6(Prog::UpIngress, all, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 other = dad;
	other.dst = solicited_node(ip6("2001:db8:77::202"));
	other.dst_mac = mcast_mac(other.dst);
	run6(Prog::UpIngress, other, TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 hop = ns;
	hop.hop_limit = 64;
	run6(Prog::UpIngress, hop, TC_ACT_OK, KVX_R_PASS_ND);
}

// A stray first fragment with a guest datagram's key (addresses, protocol,
// identification; ports no flow has) goes to the host but leaves the
// guest's entry: the datagram's later fragments still reach the guest.
TEST_F(Nat66Test, HostEntryNeverReplacesAGuestsDatagram)
{
	const Packet6 whole = from_guest6(make_udp6(kGuest6A, 62020, kRemote6A, 9999, 100));
	const Packet6 sent = snat6(whole, 62020);
	run_case_bytes(dp(), Prog::BrIngress, whole.build(), TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		       sent.build());
	Packet6 back = reply6(sent);
	back.payload = pattern(200, 0x5a);
	const Packet6 got = dnat6(back, kGuest6A, 62020);
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 0, 104, true, 0x88), TC_ACT_REDIRECT,
		       KVX_R_XLATE_IN, frag6_of(got, 0, 104, true, 0x88));
	Packet6 stray = back;
	stray.sport = 5353; // no flow's
	stray.dport = 9998;
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(stray, 0, 104, true, 0x88), TC_ACT_OK,
		       KVX_R_PASS_HOST, std::nullopt);
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 104, 208, false, 0x88),
		       TC_ACT_REDIRECT, KVX_R_XLATE_IN, frag6_of(got, 104, 208, false, 0x88));
}

// First fragments to the uplink address from a LAN host, three times the
// guests' table: each marks a datagram the host's, in the marks' own table;
// the guest's datagram keeps its entry and its later fragment is delivered
// (with the marks in kvx_frag6's LRU it was evicted: parked instead).
TEST_F(Nat66Test, HostMarksFloodEvictsNoGuestsDatagram)
{
	const Packet6 whole = from_guest6(make_udp6(kGuest6A, 62030, kRemote6A, 9999, 100));
	const Packet6 sent = snat6(whole, 62030);
	run_case_bytes(dp(), Prog::BrIngress, whole.build(), TC_ACT_REDIRECT, KVX_R_XLATE_OUT,
		       sent.build());
	Packet6 back = reply6(sent);
	back.payload = pattern(200, 0x5b);
	const Packet6 got = dnat6(back, kGuest6A, 62030);
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 0, 104, true, 0x99), TC_ACT_REDIRECT,
		       KVX_R_XLATE_IN, frag6_of(got, 0, 104, true, 0x99));
	Packet6 mark = from_uplink6(make_udp6(kRemote6A, 7, kUplink6, 9, 100));
	mark.payload = pattern(100, 0x11);
	for (std::uint32_t i = 0; i < 3 * KVX_FRAG_DEFAULT_SIZE; i++) {
		const RunResult r = dp().run(Prog::UpIngress,
					     frag6_of(mark, 0, 56, true, 0x10000 + i),
					     ingress_ifindex(Prog::UpIngress));
		ASSERT_EQ(r.verdict, TC_ACT_OK) << "mark " << i;
	}
	// Full (an LRU evicts ahead of its size, a batch at a time).
	const std::size_t marks = dp().fraghost6_keys().size();
	EXPECT_GT(marks, std::size_t{KVX_FRAG_DEFAULT_SIZE} * 3 / 4);
	EXPECT_LE(marks, std::size_t{KVX_FRAG_DEFAULT_SIZE});
	ASSERT_EQ(dp().frag6_entries().size(), 1u) << "the guest's datagram is still steered";
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(back, 104, 208, false, 0x99),
		       TC_ACT_REDIRECT, KVX_R_XLATE_IN, frag6_of(got, 104, 208, false, 0x99));
	EXPECT_TRUE(dp().fragq_drain().empty()) << "nothing parked";
}

// To an announced mapped address (1:1) a later fragment ahead of its first
// is parked (a guest is reached there); while the address is not
// announced (DAD running, in conflict), it is the host's, uncopied.
TEST_F(Nat66Test, FragmentToAMappedAddressIsParkedOnceAnnounced)
{
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	Packet6 in = from_uplink6(make_udp6(kRemote6A, 5000, kMapped6, 6000, 200));
	in.payload = pattern(200, 0x66);
	const Bytes later = frag6_of(in, 104, 208, false, 0x99);
	dp().extaddr6_set(kMapped6, KVX_EXT_F_PROBING);
	run_case_bytes(dp(), Prog::UpIngress, later, TC_ACT_OK, KVX_R_PASS_HOST, std::nullopt);
	EXPECT_TRUE(dp().fragq_drain().empty());
	dp().extaddr6_set(kMapped6, KVX_EXT_F_ARP);
	// Parked, and not passed: the host never owns a mapped IPv6 address.
	run_case_bytes(dp(), Prog::UpIngress, later, TC_ACT_SHOT, KVX_R_FRAG_PARKED, std::nullopt);
	expect_parked6(dp(), later, KVX_BIND_IN);
	// Its first then passes and names the 1:1 guest; the next later one
	// follows it.
	const Packet6 got = dnat6_neigh(in, kGuest6F, 6000);
	run_case_bytes(dp(), Prog::UpIngress, frag6_of(in, 0, 104, true, 0x99), TC_ACT_REDIRECT,
		       KVX_R_XLATE_IN, frag6_of(got, 0, 104, true, 0x99));
	run_case_bytes(dp(), Prog::UpIngress, later, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
		       frag6_of(got, 104, 208, false, 0x99));
}

// The park's limits are the IPv4 park's (nat.h frag_park): a direction
// whose budget is spent parks nothing (a guest's orphan DROP_FRAGMENT, the
// uplink's PASS_HOST, each with FRAG_PARK_RATELIMITED) and leaves the other
// direction its own; a record is sized to its fragment (a tiny orphan takes
// a small one).
TEST_F(Nat66Test, ParkFallsBackWhenADirectionsBudgetIsSpent)
{
	const Packet6 whole = from_guest6(make_udp6(kGuest6A, 62030, kRemote6A, 9999, 100));
	const Bytes out = frag6_of(whole, 56, 108, false, 0xa1);
	Packet6 back = from_uplink6(make_udp6(kRemote6A, 9999, kUplink6, 62030, 200));
	back.payload = pattern(200, 0x5a);
	const Bytes in = frag6_of(back, 104, 208, false, 0xa2);
	dp().set_fragq_budget(KVX_BIND_OUT, boot_ns() + 3600 * 1000000000ULL);
	expect_park_refused(dp(), Prog::BrIngress, out, TC_ACT_SHOT, KVX_R_DROP_FRAGMENT);
	run_case_bytes(dp(), Prog::UpIngress, in, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST, std::nullopt);
	expect_parked6(dp(), in, KVX_BIND_IN);

	dp().set_fragq_budget(KVX_BIND_OUT, 0);
	dp().set_fragq_budget(KVX_BIND_IN, boot_ns() + 3600 * 1000000000ULL);
	expect_park_refused(dp(), Prog::UpIngress, in, TC_ACT_OK, KVX_R_PASS_HOST);
	run_case_bytes(dp(), Prog::BrIngress, out, TC_ACT_SHOT, KVX_R_FRAG_PARKED, std::nullopt);
	auto recs = dp().fragq_drain();
	ASSERT_EQ(recs.size(), 1u);
	EXPECT_EQ(recs[0].size(), sizeof(kvx_fragq_hdr) + KVX_FRAGQ_DATA_S)
		<< "a 100-byte IPv6 fragment takes a small record";
}

// --- a guest's address is its MAC's (owner6.h nd_owner, kvx_nd) ---

// The bridge ports the daemon found the guests on (kvx_brport): each
// guest's address limit is its port's.
constexpr std::uint32_t kPort6A = 31, kPort6B = 32;

class Nat66OwnerTest : public Nat66Test {
protected:
	void SetUp() override
	{
		Nat66Test::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		dp().brport_set(mac_of(kGuest6A), kPort6A);
		dp().brport_set(mac_of(kGuest6B), kPort6B);
	}

	// The MAC kvx_nd records for addr (zero: none) and its state.
	int state(const Ip6 &addr)
	{
		auto v = dp().nd_lookup(addr);
		return v ? v->state : -1;
	}
	std::uint32_t count(std::uint32_t port) { return dp().gaddrs_at(dp().port_slot(port)); }
};

// p sent by the guest whose MAC is mac.
Packet6 sent_by(Packet6 p, const Mac &mac)
{
	p = from_guest6(p);
	p.src_mac = mac;
	return p;
}

// Before: a frame from B's MAC with A's address made flows and bindings
// of its own from A's address (anti-spoofing was by prefix only).
TEST_F(Nat66OwnerTest, AnotherGuestCannotSendFromAnOwnedAddress)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	EXPECT_EQ(owner_of(dp(), kGuest6A), mac_of(kGuest6A));
	EXPECT_EQ(state(kGuest6A), KVX_ND_OWNED);
	EXPECT_EQ(count(kPort6A), 1u);
	const std::size_t bindings = dp().bind6_entries().size();
	const Mac b = mac_of(kGuest6B);
	run6(Prog::BrIngress, sent_by(make_udp6(kGuest6A, 7001, kRemote6B, 53), b), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	run6(Prog::BrIngress, sent_by(make_tcp6(kGuest6A, 40000, kRemote6B, 443), b), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	Packet6 ping = make_echo6(kGuest6A, kRemote6B, 0x77);
	ping.icmp_type = kIcmp6EchoRequest;
	run6(Prog::BrIngress, sent_by(ping, b), TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(dp().bind6_entries().size(), bindings) << "nothing bound for the spoofer";
	EXPECT_EQ(owner_of(dp(), kGuest6A), mac_of(kGuest6A));
	EXPECT_EQ(count(kPort6B), 0u) << "a refused frame claims nothing";
	// A keeps its flow both ways; B its own address.
	const Packet6 back = reply6(snat6(q, port));
	run6(Prog::UpIngress, back, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(back, kGuest6A, 7000));
	out6(q, port);
	out6(from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53)));
	EXPECT_EQ(owner_of(dp(), kGuest6B), b);
	EXPECT_EQ(count(kPort6B), 1u);
}

// A 1:1 address is its guest's public identity: before, another guest
// sending with the guest's private address left from it (and made flows
// whose replies came back to the sender's MAC).  Hairpin too.
TEST_F(Nat66OwnerTest, AOneToOneAddressStaysItsGuests)
{
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	out_one6(dp(), from_guest6(make_udp6(kGuest6F, 5353, kRemote6B, 53, 20)), kMapped6, 5353);
	EXPECT_EQ(owner_of(dp(), kGuest6F), mac_of(kGuest6F));
	const Mac a = mac_of(kGuest6A);
	run6(Prog::BrIngress, sent_by(make_udp6(kGuest6F, 5354, kRemote6A, 53, 20), a), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	run6(Prog::BrIngress, sent_by(make_tcp6(kGuest6F, 22, kRemote6A, 51000), a), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	// To another mapped address (a hairpin) from it: refused the same.
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6B, 22);
	run6(Prog::BrIngress, sent_by(make_tcp6(kGuest6F, 41000, kUplink6, 2222), a), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	// The mapped address still reaches F, at F's MAC.
	const Packet6 in = inbound6(kProtoUdp, kMapped6, 5353, kRemote6B, 53);
	run6(Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(in, kGuest6F, 5353));
	EXPECT_EQ(owner_of(dp(), kGuest6F), mac_of(kGuest6F));
}

// A LAN packet to a guest too big for the bridge: Packet Too Big with the
// bridge's MTU from the uplink's address (an IPv6 router never fragments;
// without it the sender's path MTU discovery stalls on a black hole), for
// a guest's flow and for a 1:1 address alike.
TEST_F(Nat66Test, InboundTooBigForTheBridgeAnswered)
{
	BridgeMtu mtu(1280);
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	Packet6 big = reply6(snat6(q, port));
	big.payload = pattern(1400, 0x21);
	answered6(big, KVX_R_DROP_TOO_BIG_IN, icmp6_answer(big.build(), 2, 1280, kUplink6),
		  Prog::UpIngress);
	Packet6 fits = reply6(snat6(q, port));
	fits.payload = pattern(1280 - 48, 0x22);
	run6(Prog::UpIngress, fits, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(fits, kGuest6A, 7000));
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	const Packet6 one = from_uplink6(make_udp6(kRemote6B, 443, kMapped6, 5353, 1300));
	answered6(one, KVX_R_DROP_TOO_BIG_IN, icmp6_answer(one.build(), 2, 1280, kUplink6),
		  Prog::UpIngress);
}

// A static mapping's pairs as the daemon writes them: no MAC, time 0.
// Within KVX_GUEST_IDLE_NS of the host's boot, 0 is not long ago: the idle
// rule that hands a binding to another MAC held them for nobody, and a
// guest that autostarted with the host had every new outbound flow through
// its 1:1 address or from its forwarded port refused (DROP_SPOOF_MAC) for
// minutes.  Here the pairs' time is now, as 0 is on a host just booted: the
// first frame of the guest that owns the address takes them.
TEST_F(Nat66OwnerTest, AMappingIsItsGuestsFromItsFirstFrameJustAfterBoot)
{
	add_static6(dp(), 0, kMapped6, 0, kGuest6F, 0);
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6B, 22);
	const std::uint64_t now = boot_ns();
	for (auto [k, v] : dp().bind6_entries()) {
		ASSERT_TRUE(v.bind.flags & KVX_BIND_F_STATIC);
		v.bind.last_used_ns = now;
		dp().bind6_update(k, v);
	}
	out_one6(dp(), from_guest6(make_udp6(kGuest6F, 5353, kRemote6B, 53, 20)), kMapped6, 5353);
	out6(from_guest6(make_tcp6(kGuest6B, 22, kRemote6A, 443)), 2222);
	// Each pair learnt its guest's MAC: from now on another MAC is refused
	// by the binding too, not only by the address's owner.
	kvx_bind6_key ik{};
	ik.dir = KVX_BIND_IN;
	ik.proto = KVX_PROTO_ANY;
	copy_addr(ik.addr, kMapped6);
	auto one = dp().bind6_lookup(ik);
	ASSERT_TRUE(one);
	const auto learnt = [](const kvx_bind6_val &v) {
		Mac m{};
		std::copy(std::begin(v.bind.guest_mac), std::end(v.bind.guest_mac), m.begin());
		return mac_str(m);
	};
	EXPECT_EQ(learnt(*one), mac_str(mac_of(kGuest6F)));
	ik.proto = kProtoTcp;
	copy_addr(ik.addr, kUplink6);
	ik.port = htons(2222);
	auto fwd = dp().bind6_lookup(ik);
	ASSERT_TRUE(fwd);
	EXPECT_EQ(learnt(*fwd), mac_str(mac_of(kGuest6B)));
	// Another guest's MAC with F's address is refused as before.
	run6(Prog::BrIngress,
	     sent_by(make_udp6(kGuest6F, 5354, kRemote6A, 53, 20), mac_of(kGuest6A)), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	// Replies reach them at those MACs.
	const Packet6 in = inbound6(kProtoUdp, kMapped6, 5353, kRemote6B, 53);
	run6(Prog::UpIngress, in, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(in, kGuest6F, 5353));
}

// A mapping whose binding has not learnt its guest's MAC (the guest never
// sent through it) delivers to the owner of the guest's address, from the
// bridge's MAC, as IPv4 does: the host's neighbour cache may hold what a
// guest taught it before the owner was known.  No owner yet, or only a
// pending claim (a DAD probe): the neighbour cache.
TEST_F(Nat66OwnerTest, AMappingWithoutALearntMacDeliversToTheOwner)
{
	add_static6(dp(), kProtoTcp, kUplink6, 2222, kGuest6B, 22);
	const Packet6 syn = inbound6(kProtoTcp, kUplink6, 2222);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6_neigh(syn, kGuest6B, 22));
	// B's DAD probe: a claim, no owner yet.
	run6(Prog::BrIngress, nd6::dad_probe(mac_of(kGuest6B), kGuest6B), TC_ACT_OK, KVX_R_PASS_ND);
	ASSERT_EQ(state(kGuest6B), KVX_ND_PENDING);
	const Packet6 syn2 = inbound6(kProtoTcp, kUplink6, 2222, kRemote6B, 51001);
	run6(Prog::UpIngress, syn2, TC_ACT_REDIRECT, KVX_R_XLATE_IN,
	     dnat6_neigh(syn2, kGuest6B, 22));
	// B's traffic elsewhere makes it the owner; the forward's binding
	// still knows no MAC.
	out6(from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53)));
	ASSERT_EQ(state(kGuest6B), KVX_ND_OWNED);
	const Packet6 syn3 = inbound6(kProtoTcp, kUplink6, 2222, kRemote6B, 51002);
	run6(Prog::UpIngress, syn3, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn3, kGuest6B, 22));
	// And so does the flow opened before (the remote's SYN again).
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6(syn, kGuest6B, 22));
	// An owner quiet for longer than the bridge remembers its port may be
	// another MAC by now: the neighbour cache asks.
	kvx_nd_val quiet = *dp().nd_lookup(kGuest6B);
	// (Wraps on a machine up for less than that: the datapath's
	// `seen + idle <= now` wraps back, as make_owner_idle relies on.)
	quiet.last_seen_ns = boot_ns() - KVX_GUEST_IDLE_NS - 1000000000ull;
	dp().nd_update(kGuest6B, quiet);
	run6(Prog::UpIngress, syn, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat6_neigh(syn, kGuest6B, 22));
}

// A guest's DAD probe claims its address (pending until its first frame);
// another MAC's probe for it is answered from the bridge, whether the
// owner has it configured or took it by a frame and would stay silent
// (a predictable address taken before its guest booted): the prober's
// DAD fails and it takes another, instead of succeeding on an address all
// of whose frames are dropped.
TEST_F(Nat66OwnerTest, ADadProbeClaimsAndAnotherMacsProbeIsAnswered)
{
	const Ip6 x = ip6("fd42::1:a");
	const Mac a = mac_of(kGuest6A), b = mac_of(kGuest6B);
	run6(Prog::BrIngress, nd6::dad_probe(a, x), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_EQ(owner_of(dp(), x), a);
	EXPECT_EQ(state(x), KVX_ND_PENDING);
	EXPECT_EQ(count(kPort6A), 1u);
	const Packet6 other = nd6::dad_probe(b, x);
	run6(Prog::BrIngress, other, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     nd6::answer_na(other, Topology::kBridgeMac, 0));
	EXPECT_EQ(owner_of(dp(), x), a);
	run6(Prog::BrIngress, sent_by(make_udp6(x, 7000, kRemote6A, 53), b), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	// The owner's first frame: translated at once (no LAN to ask), owned.
	out6(sent_by(make_udp6(x, 7000, kRemote6A, 53), a));
	EXPECT_EQ(state(x), KVX_ND_OWNED);
	// Its own probes (a DAD started over) are passed on, nothing answered.
	run6(Prog::BrIngress, nd6::dad_probe(a, x), TC_ACT_OK, KVX_R_PASS_ND);
	// Address resolution (not DAD) for it is the owner's to answer.
	run6(Prog::BrIngress, nd6::neigh_sol(kGuest6B, b, x), TC_ACT_OK, KVX_R_PASS_ND);
	// Taken by a frame only: answered the same.
	const Ip6 y = ip6("fd42::1:b");
	out6(sent_by(make_udp6(y, 7000, kRemote6A, 53), a));
	const Packet6 late = nd6::dad_probe(b, y);
	run6(Prog::BrIngress, late, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     nd6::answer_na(late, Topology::kBridgeMac, 0));
	// Outside the subnet or invalid: the host's, nothing claimed.
	run6(Prog::BrIngress, nd6::dad_probe(b, kRemote6A), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_FALSE(dp().nd_lookup(kRemote6A).has_value());
	Packet6 bad = nd6::dad_probe(b, ip6("fd42::1:c"));
	bad.hop_limit = 64; // RFC 4861 7.1.1: not 255, not ND
	run6(Prog::BrIngress, bad, TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_FALSE(dp().nd_lookup(ip6("fd42::1:c")).has_value());
	EXPECT_EQ(count(kPort6B), 0u);
}

// A guest is its bridge port.  An owner whose port is there keeps its
// address from every other port's guest, idle or not (a quiet guest is
// still a guest; the daemon frees the address when the port goes, or
// after an hour idle): frames are refused, probes pass unanswered and
// claim nothing, and the owner's own answer to one keeps it alive.  A new
// MAC on the owner's port is the same guest (it changed its MAC) and takes
// the address at once; an owner of no known port gives it up after
// KVX_GUEST_IDLE_NS, as IPv4's learnt owners do.
TEST_F(Nat66OwnerTest, AGuestIsItsPortAndKeepsItsAddressesFromOthers)
{
	const Mac a = mac_of(kGuest6A), b = mac_of(kGuest6B);
	out6(from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53)));
	kvx_nd_val v = *dp().nd_lookup(kGuest6A);
	v.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS + 1000000000ULL);
	dp().nd_update(kGuest6A, v);
	run6(Prog::BrIngress, sent_by(make_udp6(kGuest6A, 7001, kRemote6B, 53), b), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	run6(Prog::BrIngress, nd6::dad_probe(b, kGuest6A), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_EQ(owner_of(dp(), kGuest6A), a);
	EXPECT_EQ(count(kPort6B), 0u);
	// The owner's defence (its NA for the address) keeps it alive.
	const Packet6 defence = nd6::answer_na(nd6::dad_probe(b, kGuest6A), a, nd6::kOverride);
	run6(Prog::BrIngress, defence, TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_GT(dp().nd_lookup(kGuest6A)->last_seen_ns, v.last_seen_ns);

	// A changed its MAC (same port): the new one takes the address at
	// once, by frame or by its DAD probe; the count stays A's port's.
	const Mac a2{0x52, 0x54, 0x00, 0x00, 0x06, 0xa2};
	dp().brport_set(a2, kPort6A);
	out6(sent_by(make_udp6(kGuest6A, 7002, kRemote6B, 53), a2));
	EXPECT_EQ(owner_of(dp(), kGuest6A), a2);
	EXPECT_EQ(count(kPort6A), 1u);
	run6(Prog::BrIngress, nd6::dad_probe(a, kGuest6A), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_EQ(owner_of(dp(), kGuest6A), a);
	EXPECT_EQ(state(kGuest6A), KVX_ND_PENDING);
	EXPECT_EQ(count(kPort6A), 1u);
	// A MAC of no known port yet (just changed, not placed): its probe
	// passes unanswered and claims nothing; its frames wait.
	const Mac fresh{0x52, 0x54, 0x00, 0x00, 0x06, 0xf0};
	run6(Prog::BrIngress, nd6::dad_probe(fresh, kGuest6A), TC_ACT_OK, KVX_R_PASS_ND);
	run6(Prog::BrIngress, sent_by(make_udp6(kGuest6A, 7003, kRemote6B, 53), fresh), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(owner_of(dp(), kGuest6A), a);

	// An owner of no known port (it sent before the daemon placed it):
	// after KVX_GUEST_IDLE_NS its address goes to the next MAC's frame.
	const Ip6 x = ip6("fd42::3:1");
	out6(sent_by(make_udp6(x, 7000, kRemote6A, 53), fresh));
	EXPECT_EQ(count(0), 1u);
	run6(Prog::BrIngress, sent_by(make_udp6(x, 7001, kRemote6A, 53), b), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	v = *dp().nd_lookup(x);
	v.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS + 1000000000ULL);
	dp().nd_update(x, v);
	out6(sent_by(make_udp6(x, 7001, kRemote6A, 53), b));
	EXPECT_EQ(owner_of(dp(), x), b);
	EXPECT_EQ(count(0), 0u);
	EXPECT_EQ(count(kPort6B), 1u);
	run6(Prog::BrIngress, sent_by(make_udp6(x, 7002, kRemote6A, 53), fresh), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
}

// A guest that sent one frame with B's MAC moved it to its own port (the
// bridge learns first; the daemon places the MAC there): that does not
// make it "B on another MAC", which would take B's address at once.
TEST_F(Nat66OwnerTest, AMacMovedToAnotherGuestsPortLatelyKeepsItsAddresses)
{
	const Mac a = mac_of(kGuest6A), b = mac_of(kGuest6B);
	out6(from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53)));
	ASSERT_EQ(owner_of(dp(), kGuest6B), b);
	dp().brport_set(b, kPort6A, boot_ns());
	const Packet6 probe = nd6::dad_probe(a, kGuest6B);
	run6(Prog::BrIngress, probe, TC_ACT_REDIRECT, KVX_R_ND_PROXY_NA,
	     nd6::answer_na(probe, Topology::kBridgeMac, 0));
	run6(Prog::BrIngress, sent_by(make_udp6(kGuest6B, 7001, kRemote6A, 53), a), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(owner_of(dp(), kGuest6B), b);
	// Placed there long ago (or never moved: 0), the port is the guest:
	// the same frame takes the address (a guest that changed its MAC).
	dp().brport_set(b, kPort6A, 0);
	out6(sent_by(make_udp6(kGuest6B, 7001, kRemote6A, 53), a));
	EXPECT_EQ(owner_of(dp(), kGuest6B), a);
}

// What a guest sends the host (to its address on the bridge, neighbour
// discovery) keeps its address alive as translated frames do: a guest
// that only talks to the host is not idle.
TEST_F(Nat66OwnerTest, FramesToTheHostKeepTheOwnerAlive)
{
	out6(from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53)));
	kvx_nd_val v = *dp().nd_lookup(kGuest6A);
	v.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS - 5000000000ULL);
	dp().nd_update(kGuest6A, v);
	run6(Prog::BrIngress, from_guest6(make_udp6(kGuest6A, 7000, ip6("fd42::1"), 53)), TC_ACT_OK,
	     KVX_R_PASS_LOCAL);
	const std::uint64_t after_dns = dp().nd_lookup(kGuest6A)->last_seen_ns;
	EXPECT_GT(after_dns, v.last_seen_ns + 4000000000ULL);
	// Its address resolution of the gateway, from its address.
	v.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS - 5000000000ULL);
	dp().nd_update(kGuest6A, v);
	run6(Prog::BrIngress, nd6::neigh_sol(kGuest6A, mac_of(kGuest6A), ip6("fd42::1")), TC_ACT_OK,
	     KVX_R_PASS_ND);
	EXPECT_GT(dp().nd_lookup(kGuest6A)->last_seen_ns, v.last_seen_ns + 4000000000ULL);
	// Another MAC's frames to the host from the address: refused (the
	// host's services would answer the owner), and refresh nothing.
	v.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS - 5000000000ULL);
	dp().nd_update(kGuest6A, v);
	run6(Prog::BrIngress,
	     sent_by(make_udp6(kGuest6A, 7000, ip6("fd42::1"), 53), mac_of(kGuest6B)), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(dp().nd_lookup(kGuest6A)->last_seen_ns, v.last_seen_ns);
}

// Neighbour discovery that names another guest's address at the sender's
// MAC would teach the host's neighbour cache that MAC: the host's own
// traffic to the guest, and a mapping's that has not seen its guest yet
// (delivered through the cache), would go to the sender.  Dropped; the
// owner's own, and anyone's about addresses nobody owns, pass.
TEST_F(Nat66OwnerTest, NeighbourDiscoveryCannotPoisonTheHostsCache)
{
	out6(from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53)));
	const Mac a = mac_of(kGuest6A), b = mac_of(kGuest6B);
	const Ip6 gw = ip6("fd42::1");
	// B resolving the gateway from A's address (its SLLA: B's MAC).
	run6(Prog::BrIngress, nd6::neigh_sol(kGuest6A, b, gw), TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	// B advertising A's address (unsolicited, Override), from A's
	// address or from its own.
	Packet6 na = nd6::nd_msg(nd6::kNeighAdv, kGuest6A, ip6("ff02::1"), nd6::kOverride, kGuest6A,
				 2, b);
	na.src_mac = b;
	na.dst_mac = Mac{0x33, 0x33, 0, 0, 0, 1};
	run6(Prog::BrIngress, na, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	na.src = kGuest6B;
	run6(Prog::BrIngress, na, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(owner_of(dp(), kGuest6A), a);
	// The owner's own, B's for its own address, anyone's for an address
	// nobody owns: the host's.
	run6(Prog::BrIngress, nd6::neigh_sol(kGuest6A, a, gw), TC_ACT_OK, KVX_R_PASS_ND);
	run6(Prog::BrIngress, nd6::neigh_sol(kGuest6B, b, gw), TC_ACT_OK, KVX_R_PASS_ND);
	Packet6 own = nd6::nd_msg(nd6::kNeighAdv, kGuest6B, ip6("ff02::1"), nd6::kOverride,
				  kGuest6B, 2, b);
	own.src_mac = b;
	own.dst_mac = na.dst_mac;
	run6(Prog::BrIngress, own, TC_ACT_OK, KVX_R_PASS_ND);
	// From B's link-local address, an NA for A's: the same.
	Packet6 ll = nd6::nd_msg(nd6::kNeighAdv, ip6("fe80::b"), ip6("ff02::1"), nd6::kOverride,
				 kGuest6A, 2, b);
	ll.src_mac = b;
	ll.dst_mac = own.dst_mac;
	run6(Prog::BrIngress, ll, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	// Its checksum wrong: still refused (the target is read as it is).
	Bytes bad = ll.build();
	bad[14 + 40 + 2] ^= 0xff;
	run_case_bytes(dp(), Prog::BrIngress, bad, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC, std::nullopt);
	// Idle, A is still the guest of its port: still refused.
	kvx_nd_val v = *dp().nd_lookup(kGuest6A);
	v.last_seen_ns = boot_ns_ago(KVX_GUEST_IDLE_NS + 1000000000ULL);
	dp().nd_update(kGuest6A, v);
	run6(Prog::BrIngress, nd6::neigh_sol(kGuest6A, b, gw), TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
}

// Every path that uses the source's state refuses another MAC's frame:
// an ICMPv6 error about a flow, a later fragment, and the frames kvmxdp
// answers itself (hop limit 1: its Time Exceeded would spend the per-source
// budget of the owner's own answers).
TEST_F(Nat66OwnerTest, ErrorsFragmentsAndAnsweredFramesAreRefusedToo)
{
	const Packet6 q = from_guest6(make_udp6(kGuest6A, 7000, kRemote6A, 53));
	const std::uint16_t port = out6(q);
	const Mac b = mac_of(kGuest6B);
	// A's destination unreachable about the remote's reply, sent by B.
	const Packet6 back = reply6(snat6(q, port));
	const Bytes got = dnat6(back, kGuest6A, 7000).build();
	run6(Prog::BrIngress, sent_by(icmp6_error(kGuest6A, kRemote6A, 1, 4, got), b), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOF_MAC);
	Packet6 frag = sent_by(make_udp6(kGuest6A, 7000, kRemote6A, 53), b);
	frag.ext = {ext_fragment(8, false)};
	run6(Prog::BrIngress, frag, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	Packet6 hop = sent_by(make_udp6(kGuest6A, 7000, kRemote6A, 53), b);
	hop.hop_limit = 1;
	run6(Prog::BrIngress, hop, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(owner_of(dp(), kGuest6A), mac_of(kGuest6A));
}

// A /64 holds any number of addresses: a guest claims at most
// KVX_ND_PER_GUEST (kvx_gaddrs, its port's), so that it cannot fill
// kvx_nd (a plain hash: nothing is evicted) and lock the others out.
TEST_F(Nat66OwnerTest, AGuestClaimsAtMostItsAddressLimit)
{
	const Mac a = mac_of(kGuest6A);
	auto addr = [](unsigned i) {
		Ip6 x = ip6("fd42::2:0");
		x[14] = static_cast<std::uint8_t>(i >> 8);
		x[15] = static_cast<std::uint8_t>(i);
		return x;
	};
	for (unsigned i = 0; i < KVX_ND_PER_GUEST; i++)
		out6(sent_by(make_udp6(addr(i), 7000, kRemote6A, 53), a));
	const Ip6 extra = addr(KVX_ND_PER_GUEST);
	run6(Prog::BrIngress, sent_by(make_udp6(extra, 7000, kRemote6A, 53), a), TC_ACT_SHOT,
	     KVX_R_DROP_GUEST_ADDRS);
	run6(Prog::BrIngress, nd6::dad_probe(a, extra), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_FALSE(dp().nd_lookup(extra).has_value());
	EXPECT_EQ(count(kPort6A), static_cast<std::uint32_t>(KVX_ND_PER_GUEST));
	// Its addresses keep working; another guest has its own limit.
	out6(sent_by(make_udp6(addr(0), 7001, kRemote6A, 53), a));
	out6(from_guest6(make_udp6(kGuest6B, 7000, kRemote6A, 53)));
}

// The host's own addresses in the subnet (the bridge's, written by attach
// and the daemon as KVX_ND_HOST) are no guest's: a guest's frame from one
// is spoofed, its probe for one is the host's to answer.
TEST_F(Nat66OwnerTest, TheHostsAddressesAreNoGuests)
{
	const Ip6 gw = ip6("fd42::1");
	kvx_nd_val host{};
	host.state = KVX_ND_HOST;
	dp().nd_update(gw, host);
	const Mac a = mac_of(kGuest6A);
	run6(Prog::BrIngress, sent_by(make_udp6(gw, 7000, kRemote6A, 53), a), TC_ACT_SHOT,
	     KVX_R_DROP_SPOOFED);
	run6(Prog::BrIngress, nd6::dad_probe(a, gw), TC_ACT_OK, KVX_R_PASS_ND);
	EXPECT_EQ(state(gw), KVX_ND_HOST);
	EXPECT_EQ(count(kPort6A), 0u);
}

} // namespace
} // namespace kvmxdp::test
