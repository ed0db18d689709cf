// The port guard (abi.h kvx_brport, KVX_BRPORT_F_HELD, kvx_guard): a frame
// that comes in on a bridge port with a source MAC another port holds is
// dropped there (kvx_port_in on the port's TC ingress; the XDP port program
// for what it would redirect past the bridge), before the bridge learns
// from it or any table is touched, while the daemon's lease runs.
// Everything else goes on uncounted, to the port's next filter
// (TC_ACT_UNSPEC).
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <string>

#include "fixture.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

constexpr std::uint64_t kSecond = 1000000000ULL;

class PortGuardTest : public DatapathTest {
protected:
	void SetUp() override
	{
		DatapathTest::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		dp().clear_tables();
		dp().set_cfg(Datapath::default_cfg(topo()));
		// The daemon's lease, as it pushes it at each refresh.
		dp().guard_until_set(boot_ns() + KVX_GUARD_LEASE_NS);
	}

	// p sent by a guest on the first port (kvxbrp0) with src_mac as its
	// source: the verdict and what was counted.
	std::pair<int, std::string> on_port(Prog prog, Packet p, const Mac &src_mac)
	{
		p.src_mac = src_mac;
		const Stats before = dp().stats();
		const RunResult r = dp().run(prog, p.build(), topo().bridge_port_ifindex);
		return {r.verdict, stats_delta(before, dp().stats())};
	}
};

std::string dropped(const Packet &p)
{
	return "DROP_MAC_ELSEWHERE +1/+" + std::to_string(p.build().size()) + "B";
}

const std::pair<int, std::string> kGoesOn{TC_ACT_UNSPEC, ""};

TEST_F(PortGuardTest, DropsAMacAnotherPortHolds)
{
	// Guest B's MAC is held by the second port; a guest on the first
	// sends with it: IPv4 in B's name, an ARP reply in B's name.
	dp().brport_set(kGuestBMac, topo().bridge_port2_ifindex, 0, KVX_BRPORT_F_HELD);
	const Packet ip = from_guest(make_udp(kGuestB, 40000, kRemote1, 53));
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestBMac),
		  std::make_pair(int(TC_ACT_SHOT), dropped(ip)));
	const Packet arp = make_arp(2, kGuestBMac, kGuestB, Topology::kBridgeMac,
				    Topology::kBridgeAddr);
	EXPECT_EQ(on_port(Prog::PortIngress, arp, kGuestBMac),
		  std::make_pair(int(TC_ACT_SHOT), dropped(arp)));
	// The guard asks nothing of the frame but its source MAC: another
	// guest's address with the sender's own MAC is the bridge program's
	// business (DROP_SPOOF_MAC there), not the port's.
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestAMac), kGoesOn);
	EXPECT_FALSE(dp().guest_lookup(kGuestB)) << "nothing claimed";
}

// A MAC placed on no port is placed on the one it came in on (not held:
// that is the daemon's), so that its first flow counts in its port's quota
// slot, not in the one all unplaced MACs share; a placed MAC never moves
// here, group or zero MACs are never placed, nor any on a port the bridge
// does not learn on (learning off, locked).
TEST_F(PortGuardTest, PlacesAMacOfNoPortOnItsPort)
{
	const Mac fresh{0x52, 0x54, 0x00, 0x00, 0x07, 0x20};
	const std::uint32_t addr = ip4(192, 168, 122, 60);
	const Packet ip = from_guest(make_udp(addr, 40000, kRemote1, 53));
	// The daemon's record of the port: learning off first.
	dp().xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac, KVX_XDEV_F_PORT);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, fresh), kGoesOn);
	EXPECT_FALSE(dp().brport_lookup(fresh)) << "placed on a port that does not learn";
	dp().xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_LEARN);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, fresh), kGoesOn);
	auto v = dp().brport_lookup(fresh);
	ASSERT_TRUE(v);
	EXPECT_EQ(v->ifindex, topo().bridge_port_ifindex);
	EXPECT_EQ(v->flags, 0u) << "placed, not held";
	EXPECT_EQ(v->seen_ns, 0u) << "not a move";
	// Its first flow, on the bridge: counted in its port's slot.
	Packet q = ip;
	q.src_mac = fresh;
	EXPECT_EQ(dp().run(Prog::BrIngress, q.build(), topo().bridge_ifindex).verdict,
		  TC_ACT_REDIRECT);
	EXPECT_EQ(dp().gflows_slot(addr),
		  kvx_port_slot(topo().bridge_port_ifindex, dp().cfg().guest_seed));
	EXPECT_EQ(dp().gflows(addr), 1u);
	// From the other port: not moved (the daemon follows the bridge).
	q.src_mac = fresh;
	const RunResult r = dp().run(Prog::PortIngress, q.build(), topo().bridge_port2_ifindex);
	EXPECT_EQ(r.verdict, TC_ACT_UNSPEC);
	v = dp().brport_lookup(fresh);
	ASSERT_TRUE(v);
	EXPECT_EQ(v->ifindex, topo().bridge_port_ifindex);
	EXPECT_EQ(v->flags, std::uint32_t{KVX_BRPORT_F_CONTESTED});
	// Group and zero source MACs: never placed.
	const Mac group{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}, zero{};
	EXPECT_EQ(on_port(Prog::PortIngress, ip, group), kGoesOn);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, zero), kGoesOn);
	EXPECT_FALSE(dp().brport_lookup(group));
	EXPECT_FALSE(dp().brport_lookup(zero));
}

// A port places at most KVX_BRPLACE_PER_WINDOW new MACs a window (abi.h
// kvx_brplace): a guest sending from ever new MACs must not fill kvx_brport
// before the daemon's next look and leave another port's new guest
// unplaced.  A frame of a MAC past the budget is dropped, not let on
// unplaced: its flows would count in the slot all unplaced MACs share and
// move to its port's count once the daemon placed it (a share more per
// fresh MAC).  Each port has its own budget; a new window a new one; a
// window that started a moment "ahead" (another CPU's clock) is the same.
TEST_F(PortGuardTest, PlacesAtMostABudgetOfMacsAWindowPerPort)
{
	const std::uint32_t p1 = topo().bridge_port_ifindex, p2 = topo().bridge_port2_ifindex;
	for (std::uint32_t port : {p1, p2})
		dp().xdev_update(port, Topology::kBridgePortMac,
				 KVX_XDEV_F_PORT | KVX_XDEV_F_LEARN);
	const Packet ip = from_guest(make_udp(ip4(192, 168, 122, 60), 40000, kRemote1, 53));
	auto mac = [](unsigned i) {
		return Mac{0x52, 0x54, 0x00, 0x00, 0x08, static_cast<std::uint8_t>(i)};
	};
	const std::pair<int, std::string> refused{
		TC_ACT_SHOT, "DROP_MAC_NEW +1/+" + std::to_string(ip.build().size()) + "B"};
	constexpr unsigned kTries = KVX_BRPLACE_PER_WINDOW + 8;
	for (unsigned i = 0; i < kTries; i++) {
		EXPECT_EQ(on_port(Prog::PortIngress, ip, mac(i)),
			  i < KVX_BRPLACE_PER_WINDOW ? kGoesOn : refused)
			<< i;
		EXPECT_EQ(dp().brport_lookup(mac(i)).has_value(), i < KVX_BRPLACE_PER_WINDOW) << i;
	}
	// Frames of placed MACs spend nothing.
	EXPECT_EQ(on_port(Prog::PortIngress, ip, mac(0)), kGoesOn);
	// Nor do group MACs, which are never placed.
	EXPECT_EQ(on_port(Prog::PortIngress, ip, Mac{0x33, 0x33, 0, 0, 0, 1}), kGoesOn);
	// Another port's new guest is placed: its own budget.
	const Mac other{0x52, 0x54, 0x00, 0x00, 0x09, 0x01};
	Packet q = ip;
	q.src_mac = other;
	EXPECT_EQ(dp().run(Prog::PortIngress, q.build(), p2).verdict, TC_ACT_UNSPEC);
	const auto v = dp().brport_lookup(other);
	ASSERT_TRUE(v);
	EXPECT_EQ(v->ifindex, p2);
	// A window that started "after now" (another CPU's reading a jiffy
	// ahead): still this window, still spent.
	dp().brplace_set(p1, boot_ns() + kSecond / 100, KVX_BRPLACE_PER_WINDOW);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, mac(kTries - 1)), refused);
	// The window over: the first port places again, counting from one.
	dp().brplace_set(p1, boot_ns_ago(KVX_BRPLACE_WINDOW_NS + kSecond / 10),
			 KVX_BRPLACE_PER_WINDOW + 8);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, mac(kTries - 1)), kGoesOn);
	EXPECT_TRUE(dp().brport_lookup(mac(kTries - 1)));
	const auto budget = dp().brplace_lookup(p1);
	ASSERT_TRUE(budget);
	EXPECT_EQ(budget->placed, 1u);
}

// The daemon's lease lapsed (it stopped: kvx_guard's time passed, not 0):
// a new MAC is still placed while the budget lasts, but nothing is refused
// - the guard fails open, as it does for the MACs it holds.
TEST_F(PortGuardTest, LapsedLeasePlacesButRefusesNothing)
{
	const std::uint32_t port = topo().bridge_port_ifindex;
	dp().xdev_update(port, Topology::kBridgePortMac, KVX_XDEV_F_PORT | KVX_XDEV_F_LEARN);
	dp().guard_until_set(boot_ns_ago(kSecond));
	const Packet ip = from_guest(make_udp(ip4(192, 168, 122, 60), 40000, kRemote1, 53));
	const Mac m1{0x52, 0x54, 0x00, 0x00, 0x07, 0x22}, m2{0x52, 0x54, 0x00, 0x00, 0x07, 0x23};
	EXPECT_EQ(on_port(Prog::PortIngress, ip, m1), kGoesOn);
	const auto v = dp().brport_lookup(m1);
	ASSERT_TRUE(v) << "not placed";
	EXPECT_EQ(v->ifindex, port);
	// Spent, in a window that lasts beyond this test's next frame
	// however slow the machine (a start ahead of now is the same window).
	dp().brplace_set(port, boot_ns() + kSecond / 2, KVX_BRPLACE_PER_WINDOW);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, m2), kGoesOn) << "refused with the lease lapsed";
	EXPECT_FALSE(dp().brport_lookup(m2));
}

// attach --port-guard off (kvx_guard 0) leaves the ports alone: nothing
// placed, nothing refused.
TEST_F(PortGuardTest, GuardOffPlacesNothing)
{
	dp().xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac,
			 KVX_XDEV_F_PORT | KVX_XDEV_F_LEARN);
	dp().guard_until_set(0);
	dp().brplace_set(topo().bridge_port_ifindex, boot_ns(), KVX_BRPLACE_PER_WINDOW);
	const Mac fresh{0x52, 0x54, 0x00, 0x00, 0x07, 0x21};
	const Packet ip = from_guest(make_udp(ip4(192, 168, 122, 60), 40000, kRemote1, 53));
	EXPECT_EQ(on_port(Prog::PortIngress, ip, fresh), kGoesOn);
	EXPECT_FALSE(dp().brport_lookup(fresh));
}

TEST_F(PortGuardTest, LetsOnWhatNoOtherPortHolds)
{
	const Packet ip = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	// Unknown MAC (the daemon has not placed it yet, or it is over the
	// port's share of kvx_brport): the bridge learns it.
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestAMac), kGoesOn);
	// Held by this very port.
	dp().brport_set(kGuestAMac, topo().bridge_port_ifindex, 0, KVX_BRPORT_F_HELD);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestAMac), kGoesOn);
	// Placed on the other port but not held there (not settled, or kept
	// for the addresses it owns after the bridge's entry aged out): the
	// MAC may move, as the bridge lets it, and is marked contested for
	// the daemon (its settle starts over): in TC and in XDP.
	dp().brport_set(kGuestAMac, topo().bridge_port2_ifindex, 0, 0);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestAMac), kGoesOn);
	auto v = dp().brport_lookup(kGuestAMac);
	ASSERT_TRUE(v);
	EXPECT_EQ(v->flags, KVX_BRPORT_F_CONTESTED);
	EXPECT_EQ(v->ifindex, static_cast<__u32>(topo().bridge_port2_ifindex)) << "not moved";
	// Held, but the lease ran out: passes, and marks it too.
	dp().brport_set(kGuestAMac, topo().bridge_port2_ifindex, 0, KVX_BRPORT_F_HELD);
	dp().guard_until_set(0);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestAMac), kGoesOn);
	v = dp().brport_lookup(kGuestAMac);
	ASSERT_TRUE(v);
	EXPECT_EQ(v->flags, KVX_BRPORT_F_HELD | KVX_BRPORT_F_CONTESTED);
	// On its own port: never marked.
	dp().brport_set(kGuestAMac, topo().bridge_port_ifindex, 0, 0);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestAMac), kGoesOn);
	EXPECT_EQ(dp().brport_lookup(kGuestAMac)->flags, 0u);
}

// The guard holds MACs only while the daemon's lease runs: a stopped
// daemon's flags go stale (a VM re-created on a new tap with its MAC), and
// the guard fails open rather than cut that VM off.  0: --port-guard off.
TEST_F(PortGuardTest, OnlyWhileTheDaemonsLeaseRuns)
{
	dp().brport_set(kGuestBMac, topo().bridge_port2_ifindex, 0, KVX_BRPORT_F_HELD);
	const Packet ip = from_guest(make_udp(kGuestB, 40000, kRemote1, 53));
	ASSERT_EQ(on_port(Prog::PortIngress, ip, kGuestBMac),
		  std::make_pair(int(TC_ACT_SHOT), dropped(ip)));
	dp().guard_until_set(0);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestBMac), kGoesOn) << "guard off";
	// A lease that ran out (the datapath's clock lags a fresh reading by
	// up to a tick: a second back is out).
	dp().guard_until_set(boot_ns() - kSecond);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestBMac), kGoesOn) << "lease over";
	dp().guard_until_set(boot_ns() + KVX_GUARD_LEASE_NS);
	EXPECT_EQ(on_port(Prog::PortIngress, ip, kGuestBMac),
		  std::make_pair(int(TC_ACT_SHOT), dropped(ip)))
		<< "lease renewed";
}

// The XDP port program redirects a guest's frame past the bridge and its
// ports' TC hooks: it applies the guard itself, before the anti-spoofing
// check claims the address or a binding is made.
TEST_F(PortGuardTest, XdpDropsWhatItWouldHaveRedirected)
{
	try {
		dp().load_xdp();
	} catch (const std::exception &e) {
		FAIL() << "loading kvmxdp_xdp: " << e.what();
	}
	dp().xdev_update(topo().bridge_ifindex, Topology::kBridgeMac, KVX_XDEV_F_BRIDGE);
	dp().xdev_update(topo().uplink_ifindex, Topology::kUplinkMac, KVX_XDEV_F_TX);
	for (int port : {topo().bridge_port_ifindex, topo().bridge_port2_ifindex})
		dp().xdev_update(port, Topology::kBridgePortMac,
				 KVX_XDEV_F_PORT | KVX_XDEV_F_TX | KVX_XDEV_F_LEARN);
	dp().brport_set(kGuestBMac, topo().bridge_port2_ifindex, 0, KVX_BRPORT_F_HELD);
	const Packet p = from_guest(make_udp(kGuestB, 40000, kRemote1, 53));
	EXPECT_EQ(on_port(Prog::XdpPort, p, kGuestBMac), std::make_pair(int(XDP_DROP), dropped(p)));
	EXPECT_EQ(dp().brport_lookup(kGuestBMac)->flags, KVX_BRPORT_F_HELD)
		<< "a drop marks nothing";
	EXPECT_FALSE(dp().guest_lookup(kGuestB)) << "the address was not claimed";
	EXPECT_TRUE(dp().bind_entries().empty()) << "no binding made";
	EXPECT_FALSE(dp().xfdb_lookup(kGuestBMac)) << "not learnt on the sender's port";

	// From its own port: translated and redirected as ever.
	const Stats before = dp().stats();
	const RunResult r = dp().run(Prog::XdpPort, p.build(), topo().bridge_port2_ifindex);
	EXPECT_EQ(r.verdict, XDP_REDIRECT);
	EXPECT_EQ(stats_delta(before, dp().stats()),
		  "XDP_XLATE_OUT +1/+" + std::to_string(p.build().size()) + "B");
}

} // namespace
} // namespace kvmxdp::test
