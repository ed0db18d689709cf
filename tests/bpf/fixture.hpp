// Shared pieces of the two program fixtures: the process-wide topology and
// datapath, the endpoints the cases use, the NAT expectations built from
// scratch, and run_case(), which runs one frame and checks verdict, the
// reason counter, the whole output frame and its checksums.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>

#include "datapath.hpp"
#include "netns.hpp"
#include "pkt.hpp"

namespace kvmxdp::test {

using testpkt::Bytes;
using testpkt::ip4;
using testpkt::Mac;
using testpkt::Packet;

// Set by main() before RUN_ALL_TESTS.
const Topology &topo();
const std::string &skip_reason();
void init_environment(); // enters the private netns (or records why not)
// The device each program is attached to (test_run's ctx->ifindex).
int ingress_ifindex(Prog prog);

// Guests on the bridge and remotes behind the uplink's default route.
constexpr std::uint32_t kGuestA = ip4(192, 168, 122, 10);
constexpr std::uint32_t kGuestB = ip4(192, 168, 122, 11);
constexpr std::uint32_t kGuestC = ip4(192, 168, 122, 12);
constexpr Mac kGuestAMac{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a};
constexpr Mac kGuestBMac{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b};
constexpr Mac kGuestCMac{0x52, 0x54, 0x00, 0x00, 0x00, 0x0c};
constexpr std::uint32_t kRemote1 = ip4(198, 18, 0, 10);
constexpr std::uint32_t kRemote2 = ip4(198, 18, 0, 20);
// BPF_PROG_TEST_RUN (kernel 6.18) refuses with EINVAL an ethertype-IPv4
// frame shorter than Ethernet + a 20-byte IPv4 header (it pulls the IP
// header to fill in the test socket), so truncations of IPv4 frames can be
// run from 34 bytes on; shorter ones never reach a program that way.
constexpr std::size_t kMinTestRunFrame = 14 + 20;
constexpr std::uint16_t kNatLo = 61000;
constexpr std::uint16_t kNatHi = 65535;

Mac guest_mac(std::uint32_t guest);
// Guests A, B and C on bridge ports of their own (kvx_brport: ports
// kGuestPortA, +1, +2), as the daemon places them: each has its own quota
// slot.  DatapathTest::SetUp does it; a test that clears the tables again
// calls it if it needs it.
constexpr std::uint32_t kGuestPortA = 1001;
void place_guests(Datapath &d);
// Makes guest's address an idle, learnt owner's (KVX_GUEST_IDLE_NS and a
// second ago): the next MAC to use it takes it over.
void make_owner_idle(Datapath &dp, std::uint32_t guest);
// Binds guest's address to guest_mac(guest), as its first frame would:
// its flows count in that MAC's quota slot from the start.
void own_address(Datapath &dp, std::uint32_t guest);
// The MAC kvx_guest binds guest's address to; nullopt: none.
std::optional<Mac> owner_of(const Datapath &dp, std::uint32_t guest);
// The MAC of addr's kvx_nd entry (an owner, a claim, a relay neighbour);
// nullopt: none.
std::optional<Mac> owner_of(const Datapath &dp, const testpkt::Ip6 &addr);

// A static pair in kvx_bind6 as `map add` writes it (model/mapping.cpp
// mapping_entries6): IN half first, no MAC.  proto 0 with ports 0: a 1:1
// mapping; ext == guest: a relay mapping.  del_static6 deletes it, OUT
// half first.
void add_static6(Datapath &dp, std::uint8_t proto, const testpkt::Ip6 &ext, std::uint16_t ext_port,
		 const testpkt::Ip6 &guest, std::uint16_t guest_port);
void del_static6(Datapath &dp, std::uint8_t proto, const testpkt::Ip6 &ext, std::uint16_t ext_port,
		 const testpkt::Ip6 &guest, std::uint16_t guest_port);

// An ARP packet for IPv4 over Ethernet (RFC 826) from sha: a request
// (op 1) is broadcast, a reply (op 2) goes to tha.
Packet make_arp(std::uint16_t op, const Mac &sha, std::uint32_t spa, const Mac &tha,
		std::uint32_t tpa);
// A frame as the guest sends it: to the bridge's MAC (its gateway).
Packet from_guest(Packet p);
// A frame as it arrives on the uplink: from the gateway to the uplink MAC.
Packet from_uplink(Packet p);
// The expected result of SNAT: src -> ext_addr:ext_port (echo id for
// ICMP), TTL-1, MACs from the fib lookup (uplink MAC -> gateway MAC).
Packet snat(Packet p, std::uint16_t ext_port, std::uint32_t ext_addr = Topology::kUplinkAddr);
// The expected result of DNAT: dst -> guest:port, TTL-1, MACs from the
// binding (bridge MAC, the guest's gateway, -> guest MAC).
Packet dnat(Packet p, std::uint32_t guest, std::uint16_t guest_port);
// The DNAT result delivered while the guest's MAC is still unknown: only
// L3/L4 rewritten, the MACs left to bpf_redirect_neigh.
Packet dnat_unknown_mac(const Packet &in, std::uint32_t guest, std::uint16_t port);
// The port/echo id a packet carries in the direction of the lookup.
std::uint16_t src_port_of(const Packet &p);
std::uint16_t dst_port_of(const Packet &p);
// p after edit(p): a variation of a factory's packet in one expression.
inline Packet with(Packet p, const std::function<void(Packet &)> &edit)
{
	edit(p);
	return p;
}
// The reply a remote sends to an (already translated) outbound packet.
Packet reply_to(const Packet &translated_out);

// The ICMP error kvmxdp answers a dropped frame with (icmp.h icmp_reply),
// built here from scratch: from src to in's sender, MACs swapped, quoting
// in's IPv4 header and its next 8 bytes (20 of a TCP segment), the quoted
// TCP/UDP checksum replaced by the value a later checksum completion
// (csum_start at the quoted L4 header) leaves as it is.
Bytes icmp_answer(const Bytes &in, std::uint8_t type, std::uint8_t code, std::uint32_t src,
		  std::uint16_t mtu = 0);
// The answer kvmxdp owes in when prog drops it for reason (a guest's
// packet no mapping can be made for; TTL expiring or too big with DF on
// the way in), unless RFC 1812's exceptions apply; nullopt: none.
std::optional<Bytes> expected_answer(const Datapath &dp, Prog prog, const Bytes &in,
				     kvx_reason reason);
// The MTU of a device of the private netns.
int device_mtu(const char *dev);

// Runs one frame and checks everything; returns what came out.  A drop
// that kvmxdp answers (expected_answer) must come out as that answer
// (redirected, ICMP_SENT counted too) or, past the rate limit, dropped
// with ICMP_RATELIMITED counted.
// want == nullopt: the frame must come out unchanged.
RunResult run_case(Datapath &dp, Prog prog, const Packet &in, int verdict, kvx_reason reason,
		   const std::optional<Packet> &want = std::nullopt);
RunResult run_case_bytes(Datapath &dp, Prog prog, const Bytes &in, int verdict, kvx_reason reason,
			 const std::optional<Bytes> &want);
// A later fragment the park refuses because its direction's budget is
// spent (nat.h frag_budget_take): the verdict, its reason and
// FRAG_PARK_RATELIMITED beside it, each counted once, nothing in the ring.
void expect_park_refused(Datapath &dp, Prog prog, const Bytes &frame, int verdict,
			 kvx_reason reason);
// Sends every truncation of full shorter than kMinTestRunFrame through the
// real device the program is attached to (test_run cannot run them) and
// expects each counted once under reason.
void expect_short_frames_on_device(Datapath &dp, Prog prog, const Bytes &full, kvx_reason reason);
// Runs a frame of unknown validity and checks what holds for every frame:
// one counter moves by one packet, the verdict matches the reason, a frame
// that is not redirected comes out unchanged, and a redirected one keeps its
// length, valid checksums stay valid and the translated fields are right.
void expect_invariants(Datapath &dp, Prog prog, const Bytes &in);
// Seeded mutations of valid frames (byte flips in the headers, truncation
// to >= kMinTestRunFrame, lengths and ihl overwritten, padding).
class Mutator {
public:
	explicit Mutator(std::uint32_t seed)
		: state_(seed ? seed : 1)
	{
	}
	Bytes mutate(const Bytes &valid);
	std::uint32_t next(std::uint32_t bound); // [0, bound)

private:
	std::uint32_t state_; // xorshift32: same sequence on every platform
};
// "REASON +pkts/+bytes ..." for every counter that changed.
std::string stats_delta(const Stats &before, const Stats &after);

// Checks that the binding pair and the flow entry of a translated flow
// exist and agree with each other and with the packets.
void expect_flow_state(const Datapath &dp, const Packet &guest_pkt, std::uint16_t ext_port,
		       std::uint32_t ext_addr = Topology::kUplinkAddr);

// Static mappings, installed as abi.h describes them (both halves flagged;
// the guest's MAC is learnt from its first packet).
constexpr std::uint32_t kMappedAddr = ip4(10, 77, 0, 50);
void add_port_forward(Datapath &dp, std::uint8_t proto, std::uint32_t ext_addr,
		      std::uint16_t ext_port, std::uint32_t guest, std::uint16_t guest_port);
void add_one_to_one(Datapath &dp, std::uint32_t ext_addr, std::uint32_t guest,
		    std::uint32_t extaddr_flags);

// boot_ns() - ago_ns, a time in the past.  In a freshly booted VM the clock
// may be younger than ago_ns, and a time "before boot" would wrap around to
// the far future (the datapath's expiry tests are `seen + timeout < now`,
// safe against a timestamp a racing CPU wrote just after `now` was read):
// then this waits until the machine is old enough.
std::uint64_t boot_ns_ago(std::uint64_t ago_ns);

// Linux version of the running kernel as major * 100 + minor (6.10: 610).
int kernel_version();

// A device's MTU lowered for one test (private netns), 1500 restored.
class DeviceMtu {
public:
	DeviceMtu(const char *dev, int mtu);
	~DeviceMtu();
	DeviceMtu(const DeviceMtu &) = delete;
	DeviceMtu &operator=(const DeviceMtu &) = delete;

private:
	const char *dev_;
};

struct UplinkMtu : DeviceMtu {
	explicit UplinkMtu(int mtu)
		: DeviceMtu(Topology::kUplink, mtu)
	{
	}
};

struct BridgeMtu : DeviceMtu {
	explicit BridgeMtu(int mtu)
		: DeviceMtu(Topology::kBridge, mtu)
	{
	}
};

// Base fixture: skips without the private netns, shares one loaded
// datapath, and starts every test from empty tables and the default cfg.
class DatapathTest : public ::testing::Test {
protected:
	void SetUp() override;
	static Datapath &dp();
	void set_cfg(const std::function<void(kvx_cfg &)> &edit);
};

class BrIngressTest : public DatapathTest {
protected:
	RunResult run_br(const Packet &in, int verdict, kvx_reason reason,
			 const std::optional<Packet> &want = std::nullopt)
	{
		return run_case(dp(), Prog::BrIngress, in, verdict, reason, want);
	}
	// Sends p from its guest and expects it translated with ext_port
	// (0: any port inside the NAT range); returns the external port used.
	std::uint16_t translate_out(const Packet &p, std::uint16_t ext_port = 0,
				    std::uint32_t ext_addr = Topology::kUplinkAddr);
};

class UpIngressTest : public DatapathTest {
protected:
	RunResult run_up(const Packet &in, int verdict, kvx_reason reason,
			 const std::optional<Packet> &want = std::nullopt)
	{
		return run_case(dp(), Prog::UpIngress, in, verdict, reason, want);
	}
	// Establishes a flow by sending p out through kvx_br_ingress; returns
	// the translated packet as it left.
	Packet establish(const Packet &p);
};

} // namespace kvmxdp::test
