// SPDX-License-Identifier: GPL-2.0
#include "base/caps.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include "base/error.hpp"

namespace kvmxdp {

namespace {

// "A", "A and B", "A, B and C".
std::string and_list(const std::vector<int> &caps)
{
	std::string s;
	for (size_t i = 0; i < caps.size(); i++)
		s += (i == 0		   ? "" :
		      i + 1 == caps.size() ? " and " :
					     ", ") +
		     capability_name(caps[i]);
	return s;
}

} // namespace

bool has_capability(int cap)
{
	// capget(2) itself: libcap would be a dependency for one syscall.
	__user_cap_header_struct hdr{};
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	hdr.pid = 0;
	if (::syscall(SYS_capget, &hdr, data) != 0 || cap < 0 || cap >= 64)
		return false;
	return (data[cap / 32].effective >> (cap % 32)) & 1U;
}

std::string capability_name(int cap)
{
	switch (cap) {
	case CAP_NET_ADMIN:
		return "CAP_NET_ADMIN";
	case CAP_NET_RAW:
		return "CAP_NET_RAW";
	case CAP_SYS_ADMIN:
		return "CAP_SYS_ADMIN";
	case CAP_PERFMON:
		return "CAP_PERFMON";
	case CAP_BPF:
		return "CAP_BPF";
	default:
		return "capability " + std::to_string(cap);
	}
}

std::vector<int> missing_capabilities(std::initializer_list<int> caps)
{
	std::vector<int> missing;
	for (int cap : caps) {
		const bool via_sys_admin = cap == CAP_BPF || cap == CAP_PERFMON;
		if (!has_capability(cap) && !(via_sys_admin && has_capability(CAP_SYS_ADMIN)))
			missing.push_back(cap);
	}
	return missing;
}

void require_caps(const std::string &verb, std::initializer_list<int> caps)
{
	const std::vector<int> missing = missing_capabilities(caps);
	if (!missing.empty())
		throw ConfigError(verb + " needs " + and_list(std::vector<int>(caps)) +
				  ": missing " + and_list(missing));
}

} // namespace kvmxdp
