// SPDX-License-Identifier: GPL-2.0
#include "model/options.hpp"

#include <arpa/inet.h>

#include <cstdint>

#include "base/error.hpp"
#include "base/netaddr.hpp"

namespace kvmxdp {

namespace {

std::string value_error(const std::string &what, uint64_t v, const std::string &need)
{
	return "invalid " + what + " '" + std::to_string(v) + "': need " + need;
}

} // namespace

uint16_t check_clamp_mss(uint64_t v, const std::string &what)
{
	if (v != 0 && (v < kMinClampMss || v > kMaxClampMss))
		throw Error(value_error(what, v,
					"0 (off) or " + std::to_string(kMinClampMss) + ".." +
						std::to_string(kMaxClampMss)));
	return static_cast<uint16_t>(v);
}

uint16_t parse_clamp_mss(const std::string &text)
{
	return check_clamp_mss(parse_uint(text, 65535, "--clamp-mss"), "--clamp-mss");
}

uint32_t check_table_size(uint64_t v, const std::string &what)
{
	if (v < 1 || v > kMaxTableSize)
		throw Error(value_error(what, v, "1.." + std::to_string(kMaxTableSize)));
	return static_cast<uint32_t>(v);
}

uint32_t parse_table_size(const std::string &text, const std::string &what)
{
	return check_table_size(parse_uint(text, UINT64_MAX, what), what);
}

uint32_t check_flow_quota(uint64_t v, const std::string &what)
{
	if (v > kMaxTableSize)
		throw Error(value_error(what, v, "0 (no quota).." + std::to_string(kMaxTableSize)));
	return static_cast<uint32_t>(v);
}

uint32_t parse_flow_quota(const std::string &text, const std::string &what)
{
	return check_flow_quota(parse_uint(text, UINT64_MAX, what), what);
}

uint32_t check_guest_ports(uint64_t v, const std::string &what)
{
	if (v > 65535)
		throw Error(value_error(what, v, "0 (no limit)..65535"));
	return static_cast<uint32_t>(v);
}

uint32_t parse_guest_ports(const std::string &text, const std::string &what)
{
	return check_guest_ports(parse_uint(text, UINT64_MAX, what), what);
}

} // namespace kvmxdp

namespace kvmxdp {

MetricsListen parse_metrics_listen(const std::string &value, const std::string &what)
{
	auto bad = [&]() -> MetricsListen {
		throw ConfigError("invalid " + what + " '" + value +
				  "': need ADDR:PORT (an IPv4 address, port 1..65535), e.g. "
				  "127.0.0.1:9810");
	};
	const auto colon = value.rfind(':');
	if (colon == std::string::npos || colon == 0 || colon + 1 == value.size())
		return bad();
	const std::string host = value.substr(0, colon), port = value.substr(colon + 1);
	in_addr a{};
	if (inet_pton(AF_INET, host.c_str(), &a) != 1 ||
	    port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5)
		return bad();
	const unsigned long p = std::stoul(port);
	if (p < 1 || p > 65535)
		return bad();
	return {ntohl(a.s_addr), static_cast<uint16_t>(p)};
}

} // namespace kvmxdp
