// SPDX-License-Identifier: GPL-2.0
// For unit tests that need the kernel's network objects (a bridge, routes,
// neighbours): a forked child (EXPECT_EXIT) in a network namespace of its
// own, so that nothing the test makes is seen outside it or outlives it.
#pragma once

#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iostream>
#include <string>

namespace kvmxdp::test {

// Ends the forked child with why (EXPECT_EXIT shows it).
[[noreturn]] inline void child_fail(const std::string &why)
{
	std::cerr << why << std::endl;
	std::_Exit(1);
}

// A network namespace of the child's own, set up by cmds (ip, sysctl,
// bridge); any failure ends the child.
inline void netns_child_setup(std::initializer_list<const char *> cmds)
{
	if (::unshare(CLONE_NEWNET) != 0)
		child_fail("unshare(CLONE_NEWNET): " + std::string(std::strerror(errno)));
	for (const char *cmd : cmds)
		if (std::system((std::string(cmd) + " >/dev/null 2>&1").c_str()) != 0)
			child_fail(std::string("failed: ") + cmd);
}

} // namespace kvmxdp::test
