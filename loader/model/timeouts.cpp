// SPDX-License-Identifier: GPL-2.0
#include "model/timeouts.hpp"

#include <cerrno>
#include <cstdlib>
#include <map>
#include <sstream>

#include "base/error.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp {

kvx_timeouts default_timeouts()
{
	kvx_timeouts t{};
	kvx_timeouts_default(&t);
	return t;
}

kvx_timeouts parse_timeouts(const std::string &spec)
{
	kvx_timeouts t = default_timeouts();
	const std::map<std::string, __u32 kvx_timeouts::*> fields = {
		{"tcp_syn_sent", &kvx_timeouts::tcp_syn_sent},
		{"tcp_syn_recv", &kvx_timeouts::tcp_syn_recv},
		{"tcp_established", &kvx_timeouts::tcp_established},
		{"tcp_fin_wait", &kvx_timeouts::tcp_fin_wait},
		{"tcp_time_wait", &kvx_timeouts::tcp_time_wait},
		{"tcp_close", &kvx_timeouts::tcp_close},
		{"udp", &kvx_timeouts::udp},
		{"udp_stream", &kvx_timeouts::udp_stream},
		{"icmp", &kvx_timeouts::icmp},
		{"other", &kvx_timeouts::other},
	};
	std::stringstream ss(spec);
	std::string item;
	bool any = false;
	while (std::getline(ss, item, ',')) {
		auto eq = item.find('=');
		auto it = eq == std::string::npos ? fields.end() : fields.find(item.substr(0, eq));
		if (it == fields.end())
			throw Error(
				"invalid timeout '" + item +
				"': need NAME=SECONDS, NAME one of tcp_syn_sent, tcp_syn_recv, "
				"tcp_established, "
				"tcp_fin_wait, tcp_time_wait, tcp_close, udp, udp_stream, icmp, other");
		std::string num = item.substr(eq + 1);
		char *end = nullptr;
		errno = 0;
		unsigned long v =
			num.empty() || num[0] == '-' ? 0 : std::strtoul(num.c_str(), &end, 10);
		if (num.empty() || errno || !end || *end || v < 1 || v > 315360000UL)
			throw Error("invalid timeout '" + item +
				    "': SECONDS must be a number 1-315360000");
		t.*(it->second) = static_cast<__u32>(v);
		any = true;
	}
	if (!any || spec.back() == ',')
		throw Error("invalid timeouts '" + spec + "': need NAME=SECONDS[,NAME=SECONDS...]");
	return t;
}

} // namespace kvmxdp
