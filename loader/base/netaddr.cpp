// SPDX-License-Identifier: GPL-2.0
#include "base/netaddr.hpp"

#include <cstdio>

#include <arpa/inet.h>
#include <net/if.h>

#include <cctype>

#include "base/error.hpp"
#include "base/text.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp {

std::string Ipv4Net::str() const
{
	return format_ipv4(addr) + "/" + std::to_string(prefix);
}

std::string PortRange::str() const
{
	return std::to_string(lo) + "-" + std::to_string(hi);
}

void check_ifname(const std::string &name)
{
	// The kernel's dev_valid_name(), plus: UTF-8 only, no control
	// characters.  Names go into the JSON config, JSON output and log
	// lines, none of which carries arbitrary bytes.
	bool ok = !name.empty() && name.size() < IFNAMSIZ && name != "." && name != ".." &&
		  is_printable_text(name);
	for (char c : name)
		if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)))
			ok = false;
	if (!ok)
		throw Error("invalid interface name '" + printable(name) + "'");
}

uint64_t parse_uint(const std::string &text, uint64_t max, const std::string &what)
{
	if (text.empty())
		throw Error("invalid " + what + " '" + text + "': not a number");
	uint64_t v = 0;
	for (char c : text) {
		if (!std::isdigit(static_cast<unsigned char>(c)))
			throw Error("invalid " + what + " '" + text + "': not a number");
		uint64_t d = static_cast<uint64_t>(c - '0');
		// v * 10 + d <= max, written so that it cannot overflow.
		if (d > max || v > (max - d) / 10)
			throw Error("invalid " + what + " '" + text + "': larger than " +
				    std::to_string(max));
		v = v * 10 + d;
	}
	return v;
}

uint32_t parse_ipv4(const std::string &text)
{
	in_addr a{};
	if (inet_pton(AF_INET, text.c_str(), &a) != 1)
		throw Error("invalid IPv4 address '" + text + "'");
	return ntohl(a.s_addr);
}

std::string format_ipv4(uint32_t host_order)
{
	in_addr a{};
	a.s_addr = htonl(host_order);
	char buf[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a, buf, sizeof(buf));
	return buf;
}

Ipv4Net network_of(uint32_t addr, uint8_t prefix)
{
	Ipv4Net n;
	n.prefix = prefix;
	n.addr = addr & n.mask();
	return n;
}

Ipv4Net parse_cidr(const std::string &text)
{
	auto slash = text.find('/');
	if (slash == std::string::npos)
		throw Error("invalid subnet '" + text + "': expected a.b.c.d/n");
	uint32_t addr;
	try {
		addr = parse_ipv4(text.substr(0, slash));
	} catch (const Error &) {
		throw Error("invalid subnet '" + text + "': bad address");
	}
	uint64_t prefix;
	try {
		prefix = parse_uint(text.substr(slash + 1), 32, "prefix length");
	} catch (const Error &) {
		throw Error("invalid subnet '" + text + "': bad prefix length");
	}
	// /31 and /32 leave no room for guests besides the gateway.
	if (prefix < 1 || prefix > 30)
		throw Error("invalid subnet '" + text + "': prefix length must be 1..30");
	Ipv4Net n = network_of(addr, static_cast<uint8_t>(prefix));
	if (n.addr != addr)
		throw Error("invalid subnet '" + text + "': host bits set (network is " + n.str() +
			    ")");
	return n;
}

PortRange parse_port_range(const std::string &text)
{
	auto dash = text.find('-');
	if (dash == std::string::npos)
		throw Error("invalid port range '" + text + "': expected LO-HI");
	uint64_t lo, hi;
	try {
		lo = parse_uint(text.substr(0, dash), 65535, "port");
		hi = parse_uint(text.substr(dash + 1), 65535, "port");
	} catch (const Error &) {
		throw Error("invalid port range '" + text + "': ports must be numbers 1..65535");
	}
	if (!KVX_PORT_RANGE_OK(lo, hi))
		throw Error("invalid port range '" + text + "': need 1 <= LO <= HI <= 65535");
	return {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
}

PortRange parse_local_port_range(const std::string &text)
{
	// The kernel separates the two numbers with a tab.
	std::string t = text;
	for (char &c : t)
		if (std::isspace(static_cast<unsigned char>(c)))
			c = ' ';
	auto b = t.find_first_not_of(' ');
	auto sep = t.find(' ', b);
	auto c = sep == std::string::npos ? sep : t.find_first_not_of(' ', sep);
	if (b == std::string::npos || c == std::string::npos)
		throw Error("cannot parse net.ipv4.ip_local_port_range '" + text + "'");
	auto e = t.find(' ', c);
	try {
		auto lo = parse_uint(t.substr(b, sep - b), 65535, "port");
		auto hi =
			parse_uint(t.substr(c, e == std::string::npos ? e : e - c), 65535, "port");
		if (lo > hi)
			throw Error("");
		return {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
	} catch (const Error &) {
		throw Error("cannot parse net.ipv4.ip_local_port_range '" + text + "'");
	}
}

uint32_t NatPool::size() const
{
	uint32_t n = 0;
	for (const PortRange &r : parts())
		n += r.size();
	return n;
}

std::vector<PortRange> NatPool::parts() const
{
	if (!KVX_PORT_RANGE_OK(range.lo, range.hi))
		return {};
	if (!kvx_nat_hole(range.lo, range.hi, skip.lo, skip.hi))
		return {range};
	return {{range.lo, static_cast<uint16_t>(skip.lo - 1)},
		{static_cast<uint16_t>(skip.hi + 1), range.hi}};
}

NatPool default_nat_pool(const PortRange &ephemeral)
{
	NatPool p;
	p.range = {static_cast<uint16_t>(kMinDefaultNatPorts), 65535};
	if (ephemeral.hi < p.range.lo || ephemeral.lo > p.range.hi) {
		// Disjoint already: the whole range.
	} else if (ephemeral.lo <= p.range.lo && ephemeral.hi >= p.range.hi) {
		p.range = {};
	} else if (ephemeral.lo <= p.range.lo) {
		p.range.lo = static_cast<uint16_t>(ephemeral.hi + 1);
	} else if (ephemeral.hi >= p.range.hi) {
		p.range.hi = static_cast<uint16_t>(ephemeral.lo - 1);
	} else {
		p.skip = ephemeral;
	}
	if (p.size() < kMinDefaultNatPorts)
		throw Error("no default NAT port range: net.ipv4.ip_local_port_range is " +
			    ephemeral.str() + ", which leaves fewer than " +
			    std::to_string(kMinDefaultNatPorts) + " ports of " +
			    std::to_string(kMinDefaultNatPorts) +
			    "-65535 outside it; give --nat-ports LO-HI outside it");
	return p;
}

void check_nat_range(const PortRange &nat, const PortRange &ephemeral)
{
	if (nat.overlaps(ephemeral))
		throw Error("NAT port range " + nat.str() +
			    " overlaps net.ipv4.ip_local_port_range " + ephemeral.str() +
			    " (host sockets would collide with translated flows)");
}

std::string format_mac(const MacAddr &mac)
{
	char buf[18];
	std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
		      mac[3], mac[4], mac[5]);
	return buf;
}

bool is_mac_str(const std::string &text)
{
	if (text.size() != 17)
		return false;
	for (size_t i = 0; i < text.size(); i++) {
		const char c = text[i];
		if (i % 3 == 2 ? c != ':' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

} // namespace kvmxdp
