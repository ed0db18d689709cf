// SPDX-License-Identifier: GPL-2.0
#include "kernel/sockets.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/fd.hpp"
#include "kvmxdp/abi.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace kvmxdp {

long recv_icmp6(int fd, uint8_t *buf, size_t cap, Ipv6Addr &src, int &hops)
{
	for (;;) {
		alignas(cmsghdr) uint8_t ctrl[CMSG_SPACE(sizeof(int))];
		sockaddr_in6 from{};
		iovec iov{buf, cap};
		msghdr mh{};
		mh.msg_name = &from;
		mh.msg_namelen = sizeof(from);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = ctrl;
		mh.msg_controllen = sizeof(ctrl);
		const ssize_t n = ::recvmsg(fd, &mh, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1; // EAGAIN: drained
		}
		hops = -1;
		for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)
				std::memcpy(&hops, CMSG_DATA(c), sizeof(hops));
		std::memcpy(src.data(), &from.sin6_addr, 16);
		return static_cast<long>(n);
	}
}

namespace {

// One line of /proc/net/{tcp,udp}{,6}: "sl local_address rem_address st ...",
// the local address as hex of the kernel's in-memory words and the port as
// hex.  nullopt for a line that is not a listener (or not parseable).
struct Listener {
	bool wildcard;
	uint32_t addr;
	Ipv6Addr addr6;
	uint16_t port;
	uint32_t uid;
};

std::optional<Listener> parse_line(const std::string &line, bool tcp, bool v6)
{
	std::istringstream is(line);
	std::string sl, local, remote, st, queues, timer, retransmits;
	uint32_t uid = 0;
	if (!(is >> sl >> local >> remote >> st >> queues >> timer >> retransmits >> uid))
		return std::nullopt;
	// TCP_LISTEN (0A); an unconnected UDP socket shows TCP_CLOSE (07).
	if (st != (tcp ? "0A" : "07"))
		return std::nullopt;
	auto colon = local.find(':');
	if (colon == std::string::npos)
		return std::nullopt;
	const std::string a = local.substr(0, colon), p = local.substr(colon + 1);
	auto hex = [](const std::string &h, size_t digits) {
		return h.size() == digits &&
		       h.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
	};
	if (!hex(p, 4) || !hex(a, v6 ? 32 : 8))
		return std::nullopt;
	Listener l{};
	l.uid = uid;
	l.port = static_cast<uint16_t>(std::stoul(p, nullptr, 16));
	l.wildcard = a.find_first_not_of('0') == std::string::npos;
	if (!v6 && !l.wildcard)
		l.addr = ntohl(static_cast<uint32_t>(std::stoul(a, nullptr, 16)));
	// IPv6: four of the kernel's in-memory 32-bit words, each printed as
	// a host integer.
	for (size_t w = 0; v6 && !l.wildcard && w < 4; w++) {
		const auto word =
			static_cast<uint32_t>(std::stoul(a.substr(w * 8, 8), nullptr, 16));
		std::memcpy(l.addr6.data() + w * 4, &word, 4);
	}
	return l;
}

std::string read_text(const std::string &path)
{
	std::ifstream f(path);
	std::ostringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

} // namespace

ListeningSockets ListeningSockets::read(uint8_t proto, const std::string &proc_root)
{
	const std::string base = proc_root + "/net/" + (proto == IPPROTO_TCP ? "tcp" : "udp");
	return parse(proto, read_text(base), read_text(base + "6"));
}

ListeningSockets ListeningSockets::parse(uint8_t proto, const std::string &v4,
					 const std::string &v6)
{
	ListeningSockets out;
	const bool tcp = proto == IPPROTO_TCP;
	for (const auto &[text, is6] : {std::make_pair(&v4, false), std::make_pair(&v6, true)}) {
		std::istringstream in(*text);
		std::string line;
		std::getline(in, line); // the header
		while (std::getline(in, line))
			if (auto l = parse_line(line, tcp, is6))
				out.entries_.push_back(
					{l->wildcard, is6, l->addr, l->addr6, l->port, l->uid});
	}
	return out;
}

bool ListeningSockets::listens(uint32_t addr, uint16_t port) const
{
	for (const Entry &e : entries_)
		if (e.port == port && (e.wildcard || (!e.v6 && e.addr == addr)))
			return true;
	return false;
}

std::optional<uint16_t> ListeningSockets::first_listening(uint32_t addr, const PortRange &ports,
							  uint32_t uid_below) const
{
	std::optional<uint16_t> first;
	for (const Entry &e : entries_)
		if (e.port >= ports.lo && e.port <= ports.hi &&
		    (e.wildcard || (!e.v6 && e.addr == addr)) && e.uid < uid_below &&
		    (!first || e.port < *first))
			first = e.port;
	return first;
}

std::optional<uint16_t> ListeningSockets::first_listening6(const Ipv6Addr &addr,
							   const PortRange &ports,
							   uint32_t uid_below) const
{
	std::optional<uint16_t> first;
	for (const Entry &e : entries_)
		if (e.v6 && e.port >= ports.lo && e.port <= ports.hi &&
		    (e.wildcard || e.addr6 == addr) && e.uid < uid_below &&
		    (!first || e.port < *first))
			first = e.port;
	return first;
}

std::vector<uint16_t> ListeningSockets::reachable_ports(uint32_t uid_below) const
{
	std::vector<uint16_t> out;
	for (const Entry &e : entries_)
		// IPv4's NAT pool: an IPv6 address's listener is not on it.
		if (e.uid < uid_below &&
		    (e.wildcard || (!e.v6 && e.addr != 0 && (e.addr >> 24) != 127)))
			out.push_back(e.port);
	return out;
}

std::vector<uint64_t> host_port_bitmap(const std::string &proc_root)
{
	std::vector<uint64_t> bits(KVX_PORTX_WORDS, 0);
	for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}})
		for (uint16_t port :
		     ListeningSockets::read(proto, proc_root).reachable_ports(kFirstLoginUid))
			bits[port / 64] |= uint64_t{1} << (port % 64);
	return bits;
}

std::optional<uint64_t> netns_cookie()
{
	Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!sock)
		return std::nullopt;
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	if (::getsockopt(sock.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0)
		return std::nullopt;
	return cookie;
}

} // namespace kvmxdp
