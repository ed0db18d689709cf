// SPDX-License-Identifier: GPL-2.0
// The message of the kvmxdp::Error a call throws, "" if it throws none: for
// tests that check what an error says.
#pragma once

#include <functional>
#include <string>

#include "base/error.hpp"

namespace kvmxdp::test {

inline std::string error_of(const std::function<void()> &f)
{
	try {
		f();
	} catch (const Error &e) {
		return e.what();
	}
	return "";
}

} // namespace kvmxdp::test
