// SPDX-License-Identifier: GPL-2.0
#include "kernel/arp.hpp"

#include <arpa/inet.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <tuple>

#include "base/error.hpp"
#include "kernel/packet.hpp"

namespace kvmxdp {

namespace {

struct ArpPkt {
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t oper;
	uint8_t sha[6];
	uint8_t spa[4];
	uint8_t tha[6];
	uint8_t tpa[4];
} __attribute__((packed));
static_assert(sizeof(ArpPkt) == 28, "ARP over Ethernet/IPv4 is 28 bytes");

Fd arp_socket(int ifindex)
{
	return packet_socket(ifindex, ETH_P_ARP);
}

void arp_send(int fd, int ifindex, const MacAddr &mac, uint32_t sip, uint32_t tip)
{
	ArpPkt p{};
	p.htype = htons(ARPHRD_ETHER);
	p.ptype = htons(ETH_P_IP);
	p.hlen = 6;
	p.plen = 4;
	p.oper = htons(ARPOP_REQUEST);
	std::memcpy(p.sha, mac.data(), 6);
	uint32_t s = htonl(sip), t = htonl(tip);
	std::memcpy(p.spa, &s, 4);
	std::memcpy(p.tpa, &t, 4);
	const MacAddr bcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	if (int e = packet_send(fd, ifindex, ETH_P_ARP, bcast, &p, sizeof(p)); e != 0)
		throw Error("send ARP on", "ifindex " + std::to_string(ifindex), e);
}

} // namespace

ArpProber::ArpProber(int ifindex, const MacAddr &mac, uint32_t addr, int count, int total_ms)
	: sock_(arp_socket(ifindex))
	, ifindex_(ifindex)
	, mac_(mac)
	, addr_(addr)
	, count_(count)
	, total_ms_(total_ms)
	, start_(Clock::now())
{
}

ArpProber::Clock::time_point ArpProber::next_send() const
{
	// Spread over the window, the last one leaving time for an answer.
	return start_ + std::chrono::milliseconds(total_ms_ * sent_ / (count_ + 1));
}

int ArpProber::wait_ms() const
{
	if (done_)
		return 0;
	const auto end = start_ + std::chrono::milliseconds(total_ms_);
	const auto until = sent_ < count_ ? std::min(next_send(), end) : end;
	const auto ms =
		std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
	return static_cast<int>(std::max<int64_t>(ms, 0));
}

bool ArpProber::step()
{
	if (done_)
		return true;
	const uint32_t want = htonl(addr_);
	for (;;) {
		ArpPkt p{};
		sockaddr_ll from{};
		socklen_t fl = sizeof(from);
		ssize_t n = ::recvfrom(sock_.get(), &p, sizeof(p), MSG_DONTWAIT,
				       reinterpret_cast<sockaddr *>(&from), &fl);
		if (n < 0)
			break; // EAGAIN: nothing more now
		// Only ARP received on the probed device counts (bind() makes
		// that so; checked as well, it costs nothing).
		if (n < static_cast<ssize_t>(sizeof(p)) || from.sll_pkttype == PACKET_OUTGOING ||
		    from.sll_ifindex != ifindex_ || from.sll_protocol != htons(ETH_P_ARP))
			continue;
		if (std::memcmp(p.sha, mac_.data(), 6) == 0)
			continue;
		uint32_t spa, tpa;
		std::memcpy(&spa, p.spa, 4);
		std::memcpy(&tpa, p.tpa, 4);
		// RFC 5227 2.1.1: any ARP with the address as sender, or another
		// host's probe for it.
		bool conflict = spa == want ||
				(spa == 0 && tpa == want && ntohs(p.oper) == ARPOP_REQUEST);
		if (conflict) {
			MacAddr other;
			std::memcpy(other.data(), p.sha, 6);
			conflict_ = other;
			done_ = true;
			return true;
		}
	}
	const auto now = Clock::now();
	if (now >= start_ + std::chrono::milliseconds(total_ms_)) {
		done_ = true;
		return true;
	}
	while (sent_ < count_ && now >= next_send()) {
		arp_send(sock_.get(), ifindex_, mac_, 0, addr_);
		sent_++;
	}
	return false;
}

std::optional<MacAddr> arp_probe(int ifindex, const MacAddr &mac, uint32_t addr, int count,
				 int total_ms)
{
	ArpProber probe(ifindex, mac, addr, count, total_ms);
	while (!probe.step()) {
		pollfd pfd{probe.fd(), POLLIN, 0};
		::poll(&pfd, 1, std::max(probe.wait_ms(), 1));
	}
	return probe.conflict();
}

void arp_announce(int ifindex, const MacAddr &mac, uint32_t addr, int count)
{
	Fd s = arp_socket(ifindex);
	for (int i = 0; i < count; i++) {
		if (i)
			::usleep(100 * 1000);
		arp_send(s.get(), ifindex, mac, addr, addr);
	}
}

ArpCapture arp_listen(int ifindex, int ms)
{
	Fd s = arp_socket(ifindex);
	ArpCapture out;
	std::map<std::tuple<MacAddr, uint32_t, uint32_t>, size_t> row;
	const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	// The whole window, flood or not: a listener that stops early reports
	// "nothing unanswered" for what it did not wait for.
	for (;;) {
		const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
					  end - std::chrono::steady_clock::now())
					  .count();
		if (left <= 0)
			break;
		pollfd pfd{s.get(), POLLIN, 0};
		if (::poll(&pfd, 1, static_cast<int>(left)) <= 0)
			continue;
		ArpPkt p{};
		sockaddr_ll from{};
		socklen_t fl = sizeof(from);
		ssize_t n = ::recvfrom(s.get(), &p, sizeof(p), MSG_DONTWAIT,
				       reinterpret_cast<sockaddr *>(&from), &fl);
		if (n < static_cast<ssize_t>(sizeof(p)) || from.sll_pkttype == PACKET_OUTGOING ||
		    ntohs(p.oper) != ARPOP_REQUEST || ntohs(p.ptype) != ETH_P_IP || p.plen != 4 ||
		    p.hlen != 6)
			continue;
		ArpRequest r;
		std::memcpy(r.mac.data(), p.sha, 6);
		uint32_t spa, tpa;
		std::memcpy(&spa, p.spa, 4);
		std::memcpy(&tpa, p.tpa, 4);
		r.sender = ntohl(spa);
		r.target = ntohl(tpa);
		auto [it, fresh] =
			row.try_emplace({r.mac, r.sender, r.target}, out.requests.size());
		if (!fresh) {
			out.requests[it->second].count++;
		} else if (out.requests.size() >= kArpListenMaxRows) {
			row.erase(it);
			out.missed++;
		} else {
			r.count = 1;
			out.requests.push_back(r);
		}
	}
	// What the kernel dropped for a full receive buffer since the socket
	// was opened (the counters reset on read: read once).
	tpacket_stats st{};
	socklen_t sl = sizeof(st);
	if (::getsockopt(s.get(), SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0)
		out.missed += st.tp_drops;
	return out;
}

} // namespace kvmxdp
