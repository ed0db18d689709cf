// SPDX-License-Identifier: GPL-2.0
#include "kernel/packet.hpp"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/error.hpp"

namespace kvmxdp {

Fd packet_socket(int ifindex, uint16_t proto)
{
	Fd s(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!s)
		throw_errno("open", "AF_PACKET socket");
	if (!ifindex && !proto)
		return s;
	sockaddr_ll sll{};
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(proto);
	sll.sll_ifindex = ifindex;
	if (::bind(s.get(), reinterpret_cast<sockaddr *>(&sll), sizeof(sll)) < 0)
		throw_errno("bind", "AF_PACKET socket");
	return s;
}

int packet_send(int fd, int ifindex, uint16_t proto, const MacAddr &dst, const void *payload,
		size_t len)
{
	sockaddr_ll to{};
	to.sll_family = AF_PACKET;
	to.sll_protocol = htons(proto);
	to.sll_ifindex = ifindex;
	to.sll_halen = 6;
	std::memcpy(to.sll_addr, dst.data(), 6);
	if (::sendto(fd, payload, len, 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
		return errno;
	return 0;
}

} // namespace kvmxdp
