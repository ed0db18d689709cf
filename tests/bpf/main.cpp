// The whole test process lives in a private network namespace (entered
// before any test runs, so every kernel object the tests make dies with it).
#include <gtest/gtest.h>

#include <cstdio>

#include "fixture.hpp"

int main(int argc, char **argv)
{
	::testing::InitGoogleTest(&argc, argv);
	bool listing = ::testing::GTEST_FLAG(list_tests);
	if (!listing)
		kvmxdp::test::init_environment();
	if (!kvmxdp::test::skip_reason().empty())
		std::fprintf(stderr, "kvmxdp bpf tests: skipping: %s\n",
			     kvmxdp::test::skip_reason().c_str());
	return RUN_ALL_TESTS();
}
