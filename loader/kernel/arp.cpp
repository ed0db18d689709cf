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

#include "base/error.hpp"
#include "base/fd.hpp"

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
	Fd s(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
	if (!s)
		throw_errno("open", "AF_PACKET socket");
	sockaddr_ll sll{};
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ARP);
	sll.sll_ifindex = ifindex;
	if (::bind(s.get(), reinterpret_cast<sockaddr *>(&sll), sizeof(sll)) < 0)
		throw_errno("bind", "AF_PACKET socket");
	return s;
}

void arp_send(int fd, int ifindex, const std::array<uint8_t, 6> &mac, uint32_t sip, uint32_t tip)
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
	sockaddr_ll to{};
	to.sll_family = AF_PACKET;
	to.sll_protocol = htons(ETH_P_ARP);
	to.sll_ifindex = ifindex;
	to.sll_halen = 6;
	std::memset(to.sll_addr, 0xff, 6);
	if (::sendto(fd, &p, sizeof(p), 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
		throw_errno("send ARP on", "ifindex " + std::to_string(ifindex));
}

} // namespace

std::optional<std::array<uint8_t, 6>> arp_probe(int ifindex, const std::array<uint8_t, 6> &mac,
						uint32_t addr, int count, int total_ms)
{
	Fd s = arp_socket(ifindex);
	using clock = std::chrono::steady_clock;
	auto start = clock::now();
	auto end = start + std::chrono::milliseconds(total_ms);
	int sent = 0;
	const uint32_t want = htonl(addr);
	for (;;) {
		auto now = clock::now();
		if (now >= end)
			return std::nullopt;
		auto next_send = start + std::chrono::milliseconds(total_ms * sent / (count + 1));
		if (sent < count && now >= next_send) {
			arp_send(s.get(), ifindex, mac, 0, addr);
			sent++;
			continue;
		}
		auto until = sent < count ? std::min(next_send, end) : end;
		int ms = static_cast<int>(
			std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
		pollfd pfd{s.get(), POLLIN, 0};
		if (::poll(&pfd, 1, std::max(ms, 1)) <= 0)
			continue;
		ArpPkt p{};
		sockaddr_ll from{};
		socklen_t fl = sizeof(from);
		ssize_t n = ::recvfrom(s.get(), &p, sizeof(p), 0,
				       reinterpret_cast<sockaddr *>(&from), &fl);
		if (n < static_cast<ssize_t>(sizeof(p)) || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (std::memcmp(p.sha, mac.data(), 6) == 0)
			continue;
		uint32_t spa, tpa;
		std::memcpy(&spa, p.spa, 4);
		std::memcpy(&tpa, p.tpa, 4);
		// RFC 5227 2.1.1: any ARP with the address as sender, or another
		// host's probe for it.
		bool conflict = spa == want ||
				(spa == 0 && tpa == want && ntohs(p.oper) == ARPOP_REQUEST);
		if (conflict) {
			std::array<uint8_t, 6> other;
			std::memcpy(other.data(), p.sha, 6);
			return other;
		}
	}
}

void arp_announce(int ifindex, const std::array<uint8_t, 6> &mac, uint32_t addr, int count)
{
	Fd s = arp_socket(ifindex);
	for (int i = 0; i < count; i++) {
		if (i)
			::usleep(100 * 1000);
		arp_send(s.get(), ifindex, mac, addr, addr);
	}
}

} // namespace kvmxdp
