// SPDX-License-Identifier: GPL-2.0
#include "control/ra_sender.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.hpp"
#include "base/log.hpp"
#include "kernel/sockets.hpp"

namespace kvmxdp {

namespace {

using namespace std::chrono;

// A foreign router counts as present this long after its last RA
// (3 x MaxRtrAdvInterval: dnsmasq and radvd send at least that often).
constexpr auto kForeignHold = seconds(3 * kRaMaxIntervalS);

double random_unit()
{
	uint32_t v = 0;
	if (::getrandom(&v, sizeof(v), 0) != sizeof(v))
		return 0.5;
	return v / 4294967296.0;
}

void setopt(int fd, int level, int name, const void *v, socklen_t len, const char *what)
{
	if (::setsockopt(fd, level, name, v, len) < 0)
		throw_errno(std::string("setsockopt ") + what, "router advertisement socket");
}

} // namespace

void RaSender::open(int ifindex, const Ipv6Addr &ll)
{
	Fd s(::socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMPV6));
	if (s.get() < 0)
		throw_errno("socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)", bridge_);
	setopt(s.get(), SOL_SOCKET, SO_BINDTODEVICE, bridge_.c_str(),
	       static_cast<socklen_t>(bridge_.size()), "SO_BINDTODEVICE");
	const int hops = 255, off = 0, on = 1;
	setopt(s.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops),
	       "IPV6_MULTICAST_HOPS");
	setopt(s.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops), "IPV6_UNICAST_HOPS");
	// Our own RAs are not a foreign router's.
	setopt(s.get(), IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &off, sizeof(off),
	       "IPV6_MULTICAST_LOOP");
	setopt(s.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex),
	       "IPV6_MULTICAST_IF");
	setopt(s.get(), IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof(on), "IPV6_RECVHOPLIMIT");
	icmp6_filter f;
	ICMP6_FILTER_SETBLOCKALL(&f);
	ICMP6_FILTER_SETPASS(ND_ROUTER_SOLICIT, &f);
	ICMP6_FILTER_SETPASS(ND_ROUTER_ADVERT, &f);
	setopt(s.get(), IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f), "ICMP6_FILTER");
	// Solicitations go to all-routers (ff02::2), which the bridge does
	// not join while the host does not route.
	ipv6_mreq m{};
	inet_pton(AF_INET6, "ff02::2", &m.ipv6mr_multiaddr);
	m.ipv6mr_interface = static_cast<unsigned>(ifindex);
	setopt(s.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m), "IPV6_JOIN_GROUP ff02::2");
	sockaddr_in6 a{};
	a.sin6_family = AF_INET6;
	std::memcpy(&a.sin6_addr, ll.data(), 16);
	a.sin6_scope_id = static_cast<uint32_t>(ifindex);
	if (::bind(s.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0)
		throw_errno("bind to " + format_ipv6(ll), bridge_);
	sock_ = std::move(s);
	ifindex_ = ifindex;
	ll_ = ll;
}

void RaSender::update(int ifindex, const std::optional<Ipv6Addr> &link_local, const MacAddr &mac,
		      const std::optional<RaPrefix> &prefix, uint32_t mtu, Clock::time_point now)
{
	if (!link_local || !ifindex) {
		sock_.reset();
		return;
	}
	if (sock_.get() < 0 || ifindex != ifindex_ || *link_local != ll_) {
		open(ifindex, *link_local);
		// A new socket (first, or the bridge re-created): announce at once.
		unsolicited_ = 0;
		next_ = now;
	}
	mac_ = mac;
	mtu_ = mtu;
	const bool changed = (prefix ? std::optional<Ipv6Net>(prefix->net) : std::nullopt) !=
			     (prefix_ ? std::optional<Ipv6Net>(prefix_->net) : std::nullopt);
	if (changed) {
		// RFC 4862 5.5.3 e: the guests keep the old prefix's addresses
		// for their valid lifetime; announced deprecated, they stop
		// using them for new connections at once.
		if (prefix_) {
			const uint32_t valid = std::min(prefix_->valid, kRaDeprecatedValidS);
			old_.erase(
				std::remove_if(old_.begin(), old_.end(),
					       [&](const Old &o) { return o.net == prefix_->net; }),
				old_.end());
			old_.push_back({prefix_->net, now + seconds(valid)});
		}
		if (prefix)
			old_.erase(
				std::remove_if(old_.begin(), old_.end(),
					       [&](const Old &o) { return o.net == prefix->net; }),
				old_.end());
		log_info("router advertisements on " + bridge_ + ": prefix " +
			 (prefix ? prefix->net.str() : std::string("none")));
		unsolicited_ = 0;
		next_ = now;
	}
	prefix_ = prefix;
}

int64_t RaSender::wait_ms(Clock::time_point now) const
{
	if (sock_.get() < 0)
		return INT64_MAX;
	auto due = next_;
	if (answer_)
		due = std::min(due, last_ + milliseconds(kRaMinDelayMs));
	return std::max<int64_t>(0, duration_cast<milliseconds>(due - now).count());
}

void RaSender::receive(Clock::time_point now)
{
	for (;;) {
		uint8_t buf[1500];
		Ipv6Addr src;
		int hops = -1;
		const long n = recv_icmp6(sock_.get(), buf, sizeof(buf), src, hops);
		if (n < 0)
			return; // drained
		// RFC 4861 6.1.1, 6.1.2: hop limit 255 (never from off-link),
		// code 0, the fixed part present.
		if (hops != 255 || n < 8 || buf[1] != 0)
			continue;
		if (buf[0] == ND_ROUTER_SOLICIT) {
			answer_ = true;
		} else if (buf[0] == ND_ROUTER_ADVERT && n >= 16 && src == ll_) {
			// From the bridge's own address, yet not ours (our socket
			// does not loop its multicast back): another sender on
			// this host, libvirt's dnsmasq or radvd.  Two routers would
			// fight over the guests' prefix and default route.
			if (foreign_.empty())
				log_warn("another program on this host advertises on " + bridge_ +
					 " (from " + format_ipv6(src) +
					 "): kvmxdp sends no router advertisements there while it "
					 "does");
			foreign_ = format_ipv6(src);
			foreign_seen_ = now;
		} else if (buf[0] == ND_ROUTER_ADVERT && n >= 16 && !rogue_logged_) {
			// From another address of the link: a guest.  Not obeyed
			// (one guest would silence the others' RAs); guarding the
			// guests against one another's RAs is the bridge port's
			// business (RA guard, RFC 6105).
			log_warn("a guest sends router advertisements on " + bridge_ + " (from " +
				 format_ipv6(src) + "): ignored; kvmxdp keeps advertising");
			rogue_logged_ = true;
		}
	}
}

void RaSender::send(Clock::time_point now)
{
	RaParams p;
	p.mac = mac_;
	p.mtu = mtu_;
	// RFC 4861 6.2.1 AdvDefaultLifetime: 3 x MaxRtrAdvInterval; 0 when
	// there is nothing to route (the network allows no relay now).
	p.router_lifetime = prefix_ ? 3 * kRaMaxIntervalS : 0;
	if (prefix_)
		p.prefixes.push_back(*prefix_);
	old_.erase(std::remove_if(old_.begin(), old_.end(),
				  [&](const Old &o) { return o.until <= now; }),
		   old_.end());
	for (const Old &o : old_)
		p.prefixes.push_back(
			{o.net,
			 static_cast<uint32_t>(duration_cast<seconds>(o.until - now).count()), 0});
	const std::vector<uint8_t> ra = build_ra(p);
	sockaddr_in6 to{};
	to.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
	to.sin6_scope_id = static_cast<uint32_t>(ifindex_);
	if (::sendto(sock_.get(), ra.data(), ra.size(), 0, reinterpret_cast<sockaddr *>(&to),
		     sizeof(to)) < 0)
		throw_errno("send a router advertisement", bridge_);
	sent_++;
	last_ = now;
}

void RaSender::service(bool readable, Clock::time_point now)
{
	if (sock_.get() < 0)
		return;
	if (readable)
		receive(now);
	if (!foreign_.empty() && now - foreign_seen_ >= kForeignHold) {
		log_info("no other router on " + bridge_ + " for " +
			 std::to_string(kForeignHold.count()) +
			 " s: kvmxdp sends router advertisements again");
		foreign_.clear();
		next_ = now;
	}
	// Silent while another router speaks: answered solicitations too.
	if (!foreign_.empty()) {
		answer_ = false;
		if (next_ <= now)
			next_ = now + seconds(kRaMaxIntervalS);
		return;
	}
	const bool unsolicited = next_ <= now;
	const bool solicited = answer_ && now - last_ >= milliseconds(kRaMinDelayMs);
	if (!unsolicited && !solicited)
		return;
	send(now);
	answer_ = false;
	if (unsolicited) {
		next_ = now + seconds(ra_next_interval_s(unsolicited_, random_unit()));
		unsolicited_++;
	}
}

} // namespace kvmxdp
