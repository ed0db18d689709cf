// SPDX-License-Identifier: GPL-2.0
#include "base/netaddr6.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "base/text.hpp"

namespace kvmxdp {

bool Ipv6Net::contains(const Ipv6Addr &a) const
{
	return network_of6(a, prefix).addr == addr;
}

std::string Ipv6Net::str() const
{
	return format_ipv6(addr) + "/" + std::to_string(prefix);
}

Ipv6Addr parse_ipv6(const std::string &text)
{
	Ipv6Addr a{};
	if (inet_pton(AF_INET6, text.c_str(), a.data()) != 1)
		throw Error("invalid IPv6 address '" + printable(text) + "'");
	return a;
}

std::string format_ipv6(const Ipv6Addr &a)
{
	char buf[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, a.data(), buf, sizeof(buf));
	return buf;
}

Ipv6Net network_of6(const Ipv6Addr &a, uint8_t prefix)
{
	Ipv6Net n;
	n.prefix = prefix > 128 ? 128 : prefix;
	for (unsigned i = 0; i < 16; i++) {
		const unsigned bits = n.prefix > i * 8 ? n.prefix - i * 8 : 0;
		const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff00 >> bits);
		n.addr[i] = a[i] & mask;
	}
	return n;
}

unsigned common_prefix_len(const Ipv6Addr &a, const Ipv6Addr &b)
{
	unsigned n = 0;
	for (unsigned i = 0; i < 16; i++) {
		const uint8_t x = a[i] ^ b[i];
		if (!x) {
			n += 8;
			continue;
		}
		for (uint8_t m = 0x80; !(x & m); m >>= 1)
			n++;
		break;
	}
	return n;
}

Ipv6Net parse_subnet6(const std::string &text, const std::string &what)
{
	const std::string bad = "invalid " + what + " '" + printable(text) + "': ";
	const auto slash = text.find('/');
	if (slash == std::string::npos)
		throw Error(bad + "expected PREFIX/n (e.g. fd42::/64)");
	Ipv6Addr a;
	try {
		a = parse_ipv6(text.substr(0, slash));
	} catch (const Error &) {
		throw Error(bad + "bad IPv6 address");
	}
	uint64_t prefix;
	try {
		prefix = parse_uint(text.substr(slash + 1), 128, "prefix length");
	} catch (const Error &) {
		throw Error(bad + "bad prefix length");
	}
	if (prefix < 1 || prefix > 64)
		throw Error(bad + "prefix length must be 1..64 (guests autoconfigure from a /64)");
	const Ipv6Net n = network_of6(a, static_cast<uint8_t>(prefix));
	if (n.addr != a)
		throw Error(bad + "host bits set (network is " + n.str() + ")");
	static const struct {
		const char *net;
		const char *why;
	} kReserved[] = {
		{"::/8", "reserved (unspecified, loopback, IPv4-mapped)"},
		{"fe80::/10", "link-local"},
		{"ff00::/8", "multicast"},
	};
	for (const auto &r : kReserved) {
		const auto s = std::string(r.net);
		const Ipv6Net rn =
			network_of6(parse_ipv6(s.substr(0, s.find('/'))),
				    static_cast<uint8_t>(std::stoi(s.substr(s.find('/') + 1))));
		if (rn.overlaps(n))
			throw Error(bad + "overlaps " + rn.str() + ", " + r.why);
	}
	return n;
}

} // namespace kvmxdp
