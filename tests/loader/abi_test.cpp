// SPDX-License-Identifier: GPL-2.0
// The static_asserts of abi_check.hpp are the test: this file only has to
// compile.  The runtime checks cover what static_assert cannot express.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>

#include "kernel/abi_check.hpp"

TEST(Abi, ReasonNamesAreUniqueAndIndexed)
{
	std::set<std::string> names;
	int n = 0;
#define KVX_X_CHECK(name, drop, desc)                     \
	EXPECT_EQ(KVX_R_##name, n);                       \
	EXPECT_TRUE(names.insert(#name).second) << #name; \
	EXPECT_TRUE((drop) == 0 || (drop) == 1);          \
	EXPECT_GT(std::strlen(desc), 0u);                 \
	n++;
	KVX_REASONS(KVX_X_CHECK)
#undef KVX_X_CHECK
	EXPECT_EQ(n, KVX_R_MAX);
}

TEST(Abi, MapNamesFitTheKernelLimit)
{
	// The kernel keeps 15 characters of a map name (BPF_OBJ_NAME_LEN - 1).
	for (const char *n : {KVX_MAP_CFG,     KVX_MAP_BIND,	 KVX_MAP_CT,	   KVX_MAP_STATS,
			      KVX_MAP_EXTADDR, KVX_MAP_FRAG,	 KVX_MAP_GFLOWS,   KVX_MAP_XDEV,
			      KVX_MAP_XFDB,    KVX_MAP_GUEST,	 KVX_MAP_HOSTREV,  KVX_MAP_HALFOPEN,
			      KVX_MAP_SCRATCH, KVX_MAP_PORTX,	 KVX_MAP_GPORTS,   KVX_MAP_GTW,
			      KVX_MAP_ND,      KVX_MAP_GADDRS,	 KVX_MAP_EXTADDR6, KVX_MAP_HOSTREV6,
			      KVX_MAP_OVL,     KVX_MAP_GOWN,	 KVX_MAP_GTENANT,  KVX_MAP_FRAGQ,
			      KVX_MAP_BRPORT,  KVX_MAP_HALFOPEN6})
		EXPECT_LE(std::strlen(n), 15u) << n;
}
