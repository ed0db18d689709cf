// SPDX-License-Identifier: GPL-2.0
#include "model/leases.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace kvmxdp {

using json = nlohmann::json;

namespace {

bool parse_mac(const std::string &s, MacAddr &mac)
{
	unsigned b[6];
	char tail;
	if (s.size() != 17 || std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1],
					  &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		return false;
	for (int i = 0; i < 6; i++)
		mac[static_cast<size_t>(i)] = static_cast<uint8_t>(b[i]);
	return true;
}

} // namespace

std::string default_leases_path(const std::string &bridge)
{
	return "/var/lib/libvirt/dnsmasq/" + bridge + ".status";
}

std::string leases_path(const std::string &option, const std::string &bridge)
{
	if (option == kLeasesNone)
		return "";
	return option.empty() ? default_leases_path(bridge) : option;
}

void check_leases_option(const std::string &value, const std::string &what)
{
	if (value != kLeasesNone && (value.empty() || value[0] != '/'))
		throw ConfigError(what + ": '" + value + "' is not an absolute path or 'none'");
}

std::vector<Lease> parse_libvirt_leases(const std::string &text, const std::string &what)
{
	// libvirt writes an empty file before the first lease.
	if (text.find_first_not_of(" \t\r\n") == std::string::npos)
		return {};
	json doc = json::parse(text, nullptr, false);
	if (doc.is_discarded() || !doc.is_array())
		throw Error(what + ": not a JSON array of leases");
	std::vector<Lease> out;
	for (const json &e : doc) {
		if (!e.is_object())
			throw Error(what + ": a lease is not a JSON object");
		auto ip = e.find("ip-address");
		auto mac = e.find("mac-address");
		if (ip == e.end() || mac == e.end() || !ip->is_string() || !mac->is_string())
			continue;
		Lease l;
		in_addr a{};
		if (inet_pton(AF_INET, ip->get<std::string>().c_str(), &a) != 1 ||
		    !parse_mac(mac->get<std::string>(), l.mac))
			continue;
		l.addr = ntohl(a.s_addr);
		if (auto exp = e.find("expiry-time"); exp != e.end() && exp->is_number_integer())
			l.expiry = exp->get<int64_t>();
		// The name the guest asked for (DHCP option 12): what `top` and the
		// metrics call it.  Guest-chosen text: only printable ASCII is kept.
		if (auto h = e.find("hostname"); h != e.end() && h->is_string())
			for (char c : h->get<std::string>())
				if (c > ' ' && c < 0x7f && l.hostname.size() < 64)
					l.hostname += c;
		out.push_back(l);
	}
	return out;
}

} // namespace kvmxdp
