// SPDX-License-Identifier: GPL-2.0
#include "kernel/sockets.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "base/fd.hpp"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace kvmxdp {

bool host_listens(uint8_t proto, uint32_t addr, uint16_t port)
{
	const bool tcp = proto == IPPROTO_TCP;
	for (const char *file :
	     {tcp ? "/proc/net/tcp" : "/proc/net/udp", tcp ? "/proc/net/tcp6" : "/proc/net/udp6"}) {
		const bool v6 = std::strchr(file, '6') != nullptr;
		std::ifstream f(file);
		std::string line;
		std::getline(f, line);
		while (std::getline(f, line)) {
			std::istringstream is(line);
			std::string sl, local, remote, st;
			if (!(is >> sl >> local >> remote >> st))
				continue;
			if (st != (tcp ? "0A" : "07"))
				continue;
			auto colon = local.find(':');
			if (colon == std::string::npos)
				continue;
			if (std::stoul(local.substr(colon + 1), nullptr, 16) != port)
				continue;
			std::string a = local.substr(0, colon);
			if (a.find_first_not_of('0') == std::string::npos)
				return true; // wildcard
			if (!v6 && ntohl(static_cast<uint32_t>(std::stoul(a, nullptr, 16))) == addr)
				return true;
		}
	}
	return false;
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
