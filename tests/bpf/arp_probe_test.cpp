// RFC 5227 probing (loader/kernel/arp.cpp ArpProber) in the private netns:
// only ARP received on the probed device (the uplink) is a conflict.  A
// packet socket made with a protocol takes that protocol from every device
// until bind() narrows it, so frames another network delivered in that
// window (here: a flood of claims for the probed address on kvxoth0) were
// read as a conflict on the uplink, and `map add` refused, or a mapping
// stayed suspended, because of some other network.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "fixture.hpp"
#include "kernel/arp.hpp"

namespace kvmxdp::test {
namespace {

constexpr std::uint32_t kProbed = ip4(10, 77, 0, 50);
constexpr Mac kClaimer{0x02, 0x6b, 0x76, 0x00, 0x06, 0x50};

// An ARP request from kClaimer with the probed address as its sender
// address (RFC 5227 2.1.1: a conflict when seen on the probed network).
Bytes claim_frame()
{
	Bytes f(14 + 28, 0);
	std::memset(f.data(), 0xff, 6);
	std::memcpy(f.data() + 6, kClaimer.data(), 6);
	f[12] = 0x08, f[13] = 0x06;
	const std::uint8_t arp[8] = {0, 1, 8, 0, 6, 4, 0, 1};
	std::memcpy(f.data() + 14, arp, 8);
	std::memcpy(f.data() + 22, kClaimer.data(), 6);
	const std::uint32_t spa = htonl(kProbed), tpa = htonl(ip4(10, 77, 0, 99));
	std::memcpy(f.data() + 28, &spa, 4);
	std::memcpy(f.data() + 38, &tpa, 4);
	return f;
}

// Sends frame out of ifindex until stopped, as fast as it goes.
class Flood {
public:
	Flood(int ifindex, Bytes frame)
		: fd_(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0))
		, frame_(std::move(frame))
	{
		if (fd_ < 0)
			throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
		sll_.sll_family = AF_PACKET;
		sll_.sll_ifindex = ifindex;
		sll_.sll_halen = ETH_ALEN;
		std::memset(sll_.sll_addr, 0xff, ETH_ALEN);
		thread_ = std::thread([this] {
			while (!stop_) {
				if (sendto(fd_, frame_.data(), frame_.size(), 0,
					   reinterpret_cast<sockaddr *>(&sll_), sizeof(sll_)) > 0)
					sent_++;
				// One CPU (the 6.1 VM): leave the prober its turns.
				std::this_thread::yield();
			}
		});
	}
	~Flood()
	{
		stop_ = true;
		thread_.join();
		close(fd_);
	}
	Flood(const Flood &) = delete;
	Flood &operator=(const Flood &) = delete;
	std::uint64_t sent() const { return sent_; }

private:
	int fd_;
	Bytes frame_;
	sockaddr_ll sll_{};
	std::atomic<bool> stop_{false};
	std::atomic<std::uint64_t> sent_{0};
	std::thread thread_;
};

// One probe to its end; the claimer's MAC if it saw a conflict.
std::optional<MacAddr> probe_uplink(int count, int total_ms,
				    const std::optional<Bytes> &claim_on_uplink = {})
{
	ArpProber p(topo().uplink_ifindex, Topology::kUplinkMac, kProbed, count, total_ms);
	if (claim_on_uplink)
		send_frame(topo().uplink_peer_ifindex, *claim_on_uplink);
	while (!p.step()) {
		pollfd pfd{p.fd(), POLLIN, 0};
		poll(&pfd, 1, std::max(p.wait_ms(), 1));
	}
	return p.conflict();
}

class ArpProbeTest : public DatapathTest {};

TEST_F(ArpProbeTest, ClaimsOnAnotherDeviceAreNoConflict)
{
	const int other_peer = static_cast<int>(if_nametoindex(Topology::kOtherPeer));
	ASSERT_GT(other_peer, 0);
	int conflicts = 0, probes = 0;
	{
		Flood flood(other_peer, claim_frame());
		// Short probes, many sockets: each one's socket()..bind() window
		// falls into the flood.  At most 3 s of them (an emulated VM
		// gets through far fewer than 200).
		const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
		for (; probes < 200 && std::chrono::steady_clock::now() < end; probes++)
			conflicts += probe_uplink(1, 2).has_value();
		ASSERT_GT(flood.sent(), 0u);
	}
	EXPECT_EQ(conflicts, 0) << "of " << probes << " probes on " << Topology::kUplink;
	// The same claim on the probed network is one.
	const auto seen = probe_uplink(1, 200, claim_frame());
	ASSERT_TRUE(seen) << "a claim on the uplink must be a conflict";
	EXPECT_EQ(testpkt::mac_str(*seen), testpkt::mac_str(kClaimer));
}

} // namespace
} // namespace kvmxdp::test
