// The XDP tests' fixture (xdp_test.cpp: IPv4, xdp6_test.cpp: NAT66): the
// XDP object loaded with the TC object's maps, as the loader loads it, and
// the devices in kvx_xdev as the daemon writes them: the bridge (its MAC),
// the uplink (TX), the ports kvxbrp0/kvxbrp1 (PORT|TX|LEARN).
#pragma once

#include <linux/bpf.h>

#include <functional>
#include <string>

#include "fixture.hpp"

namespace kvmxdp::test {

inline const char *xdp_verdict_name(int v)
{
	switch (v) {
	case XDP_ABORTED:
		return "XDP_ABORTED";
	case XDP_DROP:
		return "XDP_DROP";
	case XDP_PASS:
		return "XDP_PASS";
	case XDP_TX:
		return "XDP_TX";
	case XDP_REDIRECT:
		return "XDP_REDIRECT";
	default:
		return "XDP_?";
	}
}

inline std::string counted(kvx_reason r, std::size_t len)
{
	return std::string(reason_name(r)) + " +1/+" + std::to_string(len) + "B";
}

// One frame through one program: verdict, output, counters moved.
struct Shot {
	int verdict = -1;
	testpkt::Bytes out;
	std::string counted;
};

class XdpTest : public DatapathTest {
protected:
	void SetUp() override
	{
		DatapathTest::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		try {
			dp().load_xdp();
		} catch (const std::exception &e) {
			FAIL() << "loading kvmxdp_xdp with kvmxdp_tc's maps: " << e.what();
		}
		fill_xdev(dp());
	}

	// kvx_xdev as the daemon writes it (ports the bridge learns on).
	static void fill_xdev(Datapath &d)
	{
		d.xdev_update(topo().bridge_ifindex, Topology::kBridgeMac, KVX_XDEV_F_BRIDGE);
		d.xdev_update(topo().uplink_ifindex, Topology::kUplinkMac, KVX_XDEV_F_TX);
		d.xdev_update(topo().bridge_port_ifindex, Topology::kBridgePortMac,
			      KVX_XDEV_F_PORT | KVX_XDEV_F_TX | KVX_XDEV_F_LEARN);
		d.xdev_update(topo().bridge_port2_ifindex, Topology::kBridgePort2Mac,
			      KVX_XDEV_F_PORT | KVX_XDEV_F_TX | KVX_XDEV_F_LEARN);
	}

	// The state every path of a comparison starts from: empty tables, the
	// default cfg (edited), the devices, no flows counted for the guests,
	// then setup (static mappings, earlier packets...).
	void fresh(const std::function<void(kvx_cfg &)> &edit,
		   const std::function<void(Datapath &)> &setup)
	{
		dp().clear_tables();
		kvx_cfg c = Datapath::default_cfg(topo());
		if (edit)
			edit(c);
		dp().set_cfg(c);
		dp().set_reclaim_state(0, 0);
		fill_xdev(dp());
		// Placed, as the port guard places a MAC at its first frame.
		place_guests(dp());
		for (std::uint32_t g : {kGuestA, kGuestB, kGuestC})
			dp().set_gflows(g, 0);
		if (setup)
			setup(dp());
	}

	static Shot shoot(Prog prog, const testpkt::Bytes &in)
	{
		const Stats before = dp().stats();
		RunResult r = dp().run(prog, in, ingress_ifindex(prog));
		Shot s;
		s.verdict = r.verdict;
		s.out = std::move(r.out);
		s.counted = stats_delta(before, dp().stats());
		return s;
	}
};

} // namespace kvmxdp::test
