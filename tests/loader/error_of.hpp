// SPDX-License-Identifier: GPL-2.0
// What a call throws, as text, for tests that check the one error line.
#pragma once

#include <string>

#include "base/error.hpp"

namespace kvmxdp::test {

// The message of the E (kvmxdp::Error by default) that f throws, "" if it
// throws none; any other exception escapes and fails the test.
template <typename E = Error, typename F>
std::string error_of(F f)
{
	try {
		f();
	} catch (const E &e) {
		return e.what();
	}
	return "";
}

} // namespace kvmxdp::test
