// SPDX-License-Identifier: GPL-2.0
#include "control/ra_watch.hpp"

#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/error.hpp"
#include "kernel/sockets.hpp"

namespace kvmxdp {

void RaWatch::open(int ifindex, const std::string &ifname)
{
	Fd s(::socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMPV6));
	if (s.get() < 0)
		throw_errno("socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)", ifname);
	auto opt = [&](int level, int name, const void *v, socklen_t len, const char *what) {
		if (::setsockopt(s.get(), level, name, v, len) < 0)
			throw_errno(std::string("setsockopt ") + what, "RA watch on " + ifname);
	};
	opt(SOL_SOCKET, SO_BINDTODEVICE, ifname.c_str(), static_cast<socklen_t>(ifname.size()),
	    "SO_BINDTODEVICE");
	const int on = 1;
	opt(IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on), "IPV6_RECVHOPLIMIT");
	icmp6_filter f;
	ICMP6_FILTER_SETBLOCKALL(&f);
	ICMP6_FILTER_SETPASS(ND_ROUTER_ADVERT, &f);
	opt(IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f), "ICMP6_FILTER");
	sock_ = std::move(s);
	ifindex_ = ifindex;
	heard_.clear();
}

void RaWatch::receive(Clock::time_point now)
{
	for (;;) {
		uint8_t buf[1500];
		Ipv6Addr src;
		int hops = -1;
		const long n = recv_icmp6(sock_.get(), buf, sizeof(buf), src, hops);
		if (n < 0)
			return; // drained
		// RFC 4861 6.1.2: from a link-local address, hop limit 255.
		if (hops != 255 || src[0] != 0xfe || (src[1] & 0xc0) != 0x80)
			continue;
		const std::optional<RaHeard> ra = parse_ra(buf, static_cast<size_t>(n), src);
		if (!ra)
			continue;
		auto &mine = heard_[src];
		for (const Ipv6Net &p : ra->slaac)
			mine[p] = now;
	}
}

std::vector<RaHeard> RaWatch::heard(Clock::time_point now) const
{
	std::vector<RaHeard> out;
	for (const auto &[from, prefixes] : heard_) {
		RaHeard h;
		h.from = from;
		for (const auto &[p, when] : prefixes)
			if (now - when < kRaHeardKeep)
				h.slaac.push_back(p);
		if (!h.slaac.empty())
			out.push_back(std::move(h));
	}
	return out;
}

} // namespace kvmxdp
