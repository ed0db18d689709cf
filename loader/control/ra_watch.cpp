// SPDX-License-Identifier: GPL-2.0
#include "control/ra_watch.hpp"

#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
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

void RaWatch::receive(Clock::time_point now, const std::vector<Ipv6Addr> &routers)
{
	for (;;) {
		uint8_t buf[1500];
		Ipv6Addr src;
		int hops = -1;
		const long n = recv_icmp6(sock_.get(), buf, sizeof(buf), src, hops);
		if (n < 0)
			break; // drained
		// RFC 4861 6.1.2: from a link-local address, hop limit 255.
		if (hops != 255 || src[0] != 0xfe || (src[1] & 0xc0) != 0x80)
			continue;
		const std::optional<RaHeard> ra = parse_ra(buf, static_cast<size_t>(n), src);
		if (ra)
			record(*ra, now, routers);
	}
	prune(now, routers);
}

void RaWatch::prune(Clock::time_point now, const std::vector<Ipv6Addr> &routers)
{
	for (auto it = heard_.begin(); it != heard_.end();) {
		Router &r = it->second;
		for (auto p = r.slaac.begin(); p != r.slaac.end();)
			p = now - p->second >= kRaHeardKeep ? r.slaac.erase(p) : std::next(p);
		if (now - r.at >= kRaHeardKeep)
			r.latest.clear();
		const bool router = std::find(routers.begin(), routers.end(), it->first) !=
				    routers.end();
		it = !router || (r.slaac.empty() && r.latest.empty()) ? heard_.erase(it) :
									std::next(it);
	}
}

void RaWatch::record(const RaHeard &ra, Clock::time_point now, const std::vector<Ipv6Addr> &routers)
{
	prune(now, routers);
	if (std::find(routers.begin(), routers.end(), ra.from) == routers.end())
		return;
	auto it = heard_.find(ra.from);
	if (it == heard_.end()) {
		// Full: the routers heard within kRaHeardKeep stay.
		if (heard_.size() >= kRaMaxRouters)
			return;
		it = heard_.emplace(ra.from, Router{}).first;
	}
	Router &r = it->second;
	r.at = now;
	r.latest.assign(ra.slaac.begin(),
			ra.slaac.begin() +
				static_cast<long>(std::min(ra.slaac.size(), kRaMaxPrefixes)));
	for (const Ipv6Net &p : r.latest)
		r.slaac[p] = now;
	// Over the cap: the prefixes heard longest ago go (never the latest
	// RA's: they were stamped now).
	while (r.slaac.size() > kRaMaxPrefixes) {
		auto oldest = std::min_element(r.slaac.begin(), r.slaac.end(),
					       [](const auto &a, const auto &b) {
						       return a.second < b.second;
					       });
		r.slaac.erase(oldest);
	}
}

size_t RaWatch::stored() const
{
	size_t n = 0;
	for (const auto &[from, r] : heard_)
		n += std::max(r.slaac.size(), r.latest.size());
	return n;
}

std::vector<RaHeard> RaWatch::heard(Clock::time_point now) const
{
	std::vector<RaHeard> out;
	for (const auto &[from, r] : heard_) {
		RaHeard h;
		h.from = from;
		for (const auto &[p, when] : r.slaac)
			if (now - when < kRaHeardKeep)
				h.slaac.push_back(p);
		if (now - r.at < kRaHeardKeep)
			h.latest = r.latest;
		if (!h.slaac.empty() || !h.latest.empty())
			out.push_back(std::move(h));
	}
	return out;
}

} // namespace kvmxdp
