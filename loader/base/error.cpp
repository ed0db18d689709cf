// SPDX-License-Identifier: GPL-2.0
#include "base/error.hpp"

#include <cerrno>
#include <cstring>

namespace kvmxdp {

Error::Error(const std::string &op, const std::string &object, int err)
	: std::runtime_error(op + (object.empty() ? "" : " " + object) + ": " + std::strerror(err))
	, err_(err)
{
}

int check_libbpf(int ret, const std::string &op, const std::string &object)
{
	if (ret < 0)
		throw Error(op, object, -ret);
	return ret;
}

void throw_errno(const std::string &op, const std::string &object)
{
	throw Error(op, object, errno);
}

} // namespace kvmxdp
