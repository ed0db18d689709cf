// The kernel objects the datapath tests need, built inside a private network
// namespace that the test process enters (unshare(CLONE_NEWNET)): nothing
// outside it is touched, and it disappears with the process.
//
//   guest side                              uplink side
//   kvxbrp0p <veth> kvxbrp0 --[kvxbr0]      kvxup0 10.77.0.2/24 <veth> kvxup0p
//   kvxbrp1p <veth> kvxbrp1 --/  192.168.122.1/24, forwarding=1
//                                  default via 10.77.0.1 (permanent
//                                  neighbour kGatewayMac)
// (kvxbrp0/kvxbrp1: the bridge ports the XDP port program runs on.)
//   kvxoth0 172.31.0.1/24 <veth> kvxoth0p (a route that is not the uplink)
//   blackhole 198.51.100.0/24, unreachable 203.0.113.0/24, prohibit 192.0.2.0/24
//
// IPv6 (but on kvxbr0, kvxup0, kvxoth0, quietly: no DAD, RS or RAs) and
// br_netfilter's bridge-nf-call-* are off in the namespace, so that frames
// sent into kvxbrp0p/kvxup0p (the real-device tests) are the only traffic
// and reach the programs unfiltered.
#pragma once

#include <bpf/libbpf.h>

#include <optional>
#include <string>
#include <vector>

#include "pkt.hpp"

namespace kvmxdp::test {

// Runs argv (no shell), throws std::runtime_error naming the command, its
// exit status and its stderr if it does not exit 0.
void must_run(const std::vector<std::string> &argv);
// Writes a /proc/sys file of the current network namespace.
void write_sysctl(const std::string &path, const std::string &value);
std::string read_sysctl(const std::string &path);

struct Topology {
	static constexpr const char *kBridge = "kvxbr0";
	static constexpr const char *kBridgePort = "kvxbrp0";
	static constexpr const char *kBridgePortPeer = "kvxbrp0p";
	static constexpr const char *kBridgePort2 = "kvxbrp1";
	static constexpr const char *kBridgePort2Peer = "kvxbrp1p";
	static constexpr const char *kUplink = "kvxup0";
	static constexpr const char *kUplinkPeer = "kvxup0p";
	static constexpr const char *kOther = "kvxoth0";
	static constexpr const char *kOtherPeer = "kvxoth0p";

	static constexpr testpkt::Mac kBridgeMac{0x02, 0x6b, 0x76, 0x00, 0x01, 0x01};
	static constexpr testpkt::Mac kUplinkMac{0x02, 0x6b, 0x76, 0x00, 0x02, 0x02};
	static constexpr testpkt::Mac kGatewayMac{0x02, 0x6b, 0x76, 0x00, 0x03, 0x01};
	static constexpr testpkt::Mac kOtherNeighMac{0x02, 0x6b, 0x76, 0x00, 0x04, 0x07};
	// Set explicitly: the bridge keeps kBridgeMac whatever its ports' MACs.
	static constexpr testpkt::Mac kBridgePortMac{0x02, 0x6b, 0x76, 0x00, 0x05, 0x00};
	static constexpr testpkt::Mac kBridgePort2Mac{0x02, 0x6b, 0x76, 0x00, 0x05, 0x01};

	static constexpr std::uint32_t kBridgeAddr = testpkt::ip4(192, 168, 122, 1);
	static constexpr std::uint32_t kSubnet = testpkt::ip4(192, 168, 122, 0);
	static constexpr std::uint32_t kSubnetMask = testpkt::ip4(255, 255, 255, 0);
	static constexpr std::uint32_t kUplinkAddr = testpkt::ip4(10, 77, 0, 2);
	static constexpr std::uint32_t kGatewayAddr = testpkt::ip4(10, 77, 0, 1);
	static constexpr std::uint32_t kOtherAddr = testpkt::ip4(172, 31, 0, 1);
	static constexpr std::uint32_t kOtherNeigh = testpkt::ip4(172, 31, 0, 7);

	// IPv6 (the NAT66 tests): on the bridge, the uplink and kvxoth0 only,
	// without DAD, router solicitations or RAs; IPv6 forwarding on the
	// bridge.  Default route via kGatewayAddr6 (permanent neighbour
	// kGatewayMac); kOtherNet6 routed to kvxoth0; kUnreachNet6 unreachable.
	static constexpr const char *kBridgeAddr6 = "fd42::1";
	static constexpr const char *kSubnet6 = "fd42::";
	static constexpr const char *kUplinkAddr6 = "2001:db8:77::2";
	static constexpr const char *kGatewayAddr6 = "2001:db8:77::1";
	static constexpr const char *kOtherNet6 = "2001:db8:31::";
	static constexpr const char *kOtherNeigh6 = "2001:db8:31::7";
	static constexpr const char *kUnreachNet6 = "2001:db8:dead::";

	int bridge_ifindex = 0;
	int uplink_ifindex = 0;
	int other_ifindex = 0;
	int bridge_port_ifindex = 0;	  // kvxbrp0, a port of the bridge
	int bridge_port2_ifindex = 0;	  // kvxbrp1, another port
	int bridge_port_peer_ifindex = 0; // frames sent here reach the bridge
	int uplink_peer_ifindex = 0;	  // frames sent here reach the uplink
};

// A program attached at a real device's TC ingress (clsact), for the few
// cases BPF_PROG_TEST_RUN cannot run; detached (clsact removed) on
// destruction.  Only used on devices of the private namespace.
class TcIngress {
public:
	TcIngress(int ifindex, int prog_fd);
	~TcIngress();
	TcIngress(const TcIngress &) = delete;
	TcIngress &operator=(const TcIngress &) = delete;

private:
	bpf_tc_hook hook_;
};

// An XDP program attached to a device of the private namespace in generic
// (skb) mode, which every device supports and whose redirects land on any
// device; detached on destruction.
class XdpAttached {
public:
	XdpAttached(int ifindex, int prog_fd);
	~XdpAttached();
	XdpAttached(const XdpAttached &) = delete;
	XdpAttached &operator=(const XdpAttached &) = delete;

private:
	int ifindex_;
};

// Sends one raw Ethernet frame out of a device (AF_PACKET).
void send_frame(int ifindex, const testpkt::Bytes &frame);

// Frames arriving at a device (AF_PACKET, ETH_P_ALL), opened before the
// traffic that is to be seen.
class Capture {
public:
	explicit Capture(int ifindex);
	~Capture();
	Capture(const Capture &) = delete;
	Capture &operator=(const Capture &) = delete;
	// The next incoming IPv4 frame, or nullopt after timeout_ms.
	std::optional<testpkt::Bytes> next_ipv4(int timeout_ms);

private:
	int fd_ = -1;
};

// Enters a new network namespace and builds the topology above in it.
// Returns why the tests cannot run at all (no privilege: a skip), else ""
// with error set if unshare or building the topology failed (a failure).
std::string enter_private_netns(Topology &topo, std::string &error);

} // namespace kvmxdp::test
