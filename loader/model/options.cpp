// SPDX-License-Identifier: GPL-2.0
#include "model/options.hpp"

#include "base/error.hpp"
#include "base/netaddr.hpp"

namespace kvmxdp {

uint16_t parse_clamp_mss(const std::string &text)
{
	uint64_t v = parse_uint(text, 65535, "--clamp-mss");
	if (v != 0 && (v < kMinClampMss || v > kMaxClampMss))
		throw Error("invalid --clamp-mss '" + text + "': need 0 (off) or " +
			    std::to_string(kMinClampMss) + ".." + std::to_string(kMaxClampMss));
	return static_cast<uint16_t>(v);
}

} // namespace kvmxdp
