// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "temp_dir.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fs.hpp"
#include "base/rollback.hpp"

using namespace kvmxdp;

TEST(PinDir, DotsBecomeColons)
{
	EXPECT_EQ(pin_dir_for("/sys/fs/bpf", "br0"), "/sys/fs/bpf/kvmxdp/br0");
	EXPECT_EQ(pin_dir_for("/sys/fs/bpf", "br0.10"), "/sys/fs/bpf/kvmxdp/br0:10");
	EXPECT_EQ(pin_dir_for("/sys/fs/bpf/", "a.b.c"), "/sys/fs/bpf/kvmxdp/a:b:c");
	// Dots in the bpffs path itself are left alone (unlike libbpf's
	// pin_root_path handling).
	EXPECT_EQ(pin_dir_for("/tmp/x.y/bpf", "kb1.10"), "/tmp/x.y/bpf/kvmxdp/kb1:10");
	// Injective: names that differ stay different.
	EXPECT_NE(pin_dir_for("/b", "br0.1"), pin_dir_for("/b", "br0_1"));
	EXPECT_EQ(pin_path("/b/kvmxdp/br0", "kvx_ct"), "/b/kvmxdp/br0/kvx_ct");
}

TEST(PidFile, KeyCoversBpffsAndBridge)
{
	auto a = pid_file_for("/run/kvmxdp", "/tmp/t1/bpf", "br0");
	auto b = pid_file_for("/run/kvmxdp", "/tmp/t2/bpf", "br0");
	auto c = pid_file_for("/run/kvmxdp", "/tmp/t1/bpf", "br1");
	EXPECT_NE(a, b);
	EXPECT_NE(a, c);
	EXPECT_EQ(a, pid_file_for("/run/kvmxdp", "/tmp/t1/bpf/", "br0"));
	EXPECT_EQ(a.rfind("/run/kvmxdp/br0-", 0), 0u) << a;
	EXPECT_EQ(normalize_dir("/x//"), "/x");
	EXPECT_EQ(normalize_dir("/"), "/");
}

TEST(PidLock, HolderIsSeenAndReleased)
{
	test::TempDir tmp;
	const std::string &dir = tmp.path();
	std::string path = dir + "/run/x.pid";
	EXPECT_FALSE(PidLock::holder(path)); // no file
	{
		auto lock = PidLock::try_acquire(path);
		ASSERT_TRUE(lock);
		// flock locks belong to the open file description: a second
		// open in this process conflicts like another process would.
		EXPECT_FALSE(PidLock::try_acquire(path));
		auto pid = PidLock::holder(path);
		ASSERT_TRUE(pid);
		EXPECT_EQ(*pid, ::getpid());
	}
	EXPECT_FALSE(PidLock::holder(path));
	EXPECT_TRUE(PidLock::try_acquire(path));
}

TEST(AtomicWrite, ReplacesContent)
{
	test::TempDir tmp;
	const std::string &dir = tmp.path();
	std::string path = dir + "/a/b/f";
	atomic_write_file(path, "one");
	EXPECT_EQ(*read_file(path), "one");
	atomic_write_file(path, "two");
	EXPECT_EQ(*read_file(path), "two");
	EXPECT_FALSE(read_file(dir + "/missing"));
}

TEST(Bpffs, TmpIsNotABpffs)
{
	EXPECT_FALSE(is_bpffs("/tmp"));
	EXPECT_FALSE(is_bpffs("/nonexistent/dir"));
}

TEST(Rollback, RunsInReverseUnlessCommitted)
{
	std::vector<int> order;
	{
		Rollback rb;
		rb.add("one", [&] { order.push_back(1); });
		rb.add("two", [&] { order.push_back(2); });
		// A failing undo step must not stop the others.
		rb.add("throws", [] { throw std::runtime_error("boom"); });
		rb.add("three", [&] { order.push_back(3); });
	}
	EXPECT_EQ(order, (std::vector<int>{3, 2, 1}));
	order.clear();
	{
		Rollback rb;
		rb.add("one", [&] { order.push_back(1); });
		rb.commit();
	}
	EXPECT_TRUE(order.empty());
}
