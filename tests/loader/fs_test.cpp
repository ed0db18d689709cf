// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "temp_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/rollback.hpp"
#include "error_of.hpp"
#include "privileges.hpp"

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

// ---- The pin path (base/fs.hpp): what each level may be, and the walk.

struct LevelCase {
	const char *what;
	mode_t type, perm;
	uid_t uid;
	PinLevel level;
	const char *problem; // "" = accepted
};

TEST(PinLevel, RootAloneMayChangeEveryLevel)
{
	const char *link = "a symbolic link (kvmxdp does not follow links here)";
	const LevelCase cases[] = {
		{"root 0700", S_IFDIR, 0700, 0, PinLevel::Dir, ""},
		{"root 0755", S_IFDIR, 0755, 0, PinLevel::Dir, ""},
		{"root 0755 bpffs", S_IFDIR, 0755, 0, PinLevel::Bpffs, ""},
		{"another owner", S_IFDIR, 0700, 1000, PinLevel::Dir,
		 "owned by uid 1000, not root"},
		{"another owner's bpffs", S_IFDIR, 01777, 1000, PinLevel::Bpffs,
		 "owned by uid 1000, not root"},
		{"a link", S_IFLNK, 0777, 0, PinLevel::Dir, link},
		{"a link as the bpffs", S_IFLNK, 0777, 0, PinLevel::Bpffs, link},
		{"a file", S_IFREG, 0600, 0, PinLevel::Dir, "not a directory"},
		// A bpffs mounted without mode= is 1777: others may add entries
		// at the top but not remove or rename root's.  Below it, never.
		{"1777 bpffs", S_IFDIR, 01777, 0, PinLevel::Bpffs, ""},
		{"1777 below", S_IFDIR, 01777, 0, PinLevel::Dir,
		 "writable by group or others (mode 1777)"},
		{"0777 bpffs", S_IFDIR, 0777, 0, PinLevel::Bpffs,
		 "writable by group or others (mode 0777, no sticky bit)"},
		{"group-writable", S_IFDIR, 0770, 0, PinLevel::Dir,
		 "writable by group or others (mode 0770)"},
		{"other-writable", S_IFDIR, 0702, 0, PinLevel::Dir,
		 "writable by group or others (mode 0702)"},
		// Pins: bpffs objects are regular inodes, 0600 as bpf_obj_pin
		// makes them.
		{"a pin", S_IFREG, 0600, 0, PinLevel::Pin, ""},
		{"a readable pin", S_IFREG, 0644, 0, PinLevel::Pin, ""},
		{"a writable pin", S_IFREG, 0666, 0, PinLevel::Pin,
		 "writable by group or others (mode 0666)"},
		{"another's pin", S_IFREG, 0600, 65534, PinLevel::Pin,
		 "owned by uid 65534, not root"},
		{"a link as a pin", S_IFLNK, 0777, 0, PinLevel::Pin, link},
		{"a directory as a pin", S_IFDIR, 0700, 0, PinLevel::Pin,
		 "not a pinned BPF object"},
	};
	for (const LevelCase &c : cases) {
		struct stat st = {};
		st.st_mode = c.type | c.perm;
		st.st_uid = c.uid;
		EXPECT_EQ(pin_level_problem(st, c.level), c.problem) << c.what;
	}
}

template <typename F>
std::string refusal(F f)
{
	return test::error_of<PinRefused>(f);
}

// The levels below the bpffs are walked alike on any file system: a
// temporary directory stands for the bpffs here.  Owners need root.
class PinWalk : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (::geteuid() != 0)
			GTEST_SKIP() << "the walk accepts root's directories only: needs root";
		top_ = DirFd{Fd(::open(tmp_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
			     tmp_.path()};
		ASSERT_TRUE(top_.fd);
	}
	std::string at(const std::string &name) const { return tmp_.path() + "/" + name; }
	static std::string mode_owner(const std::string &path)
	{
		struct stat st = {};
		if (::lstat(path.c_str(), &st) < 0)
			return "missing";
		char buf[32];
		std::snprintf(buf, sizeof(buf), "%o %u", unsigned(st.st_mode & 07777),
			      unsigned(st.st_uid));
		return buf;
	}

	test::TempDir tmp_;
	DirFd top_;
};

TEST_F(PinWalk, MakesAMissingLevel0700AndTakesRootsOwn)
{
	EXPECT_FALSE(open_pin_subdir(top_, "kvmxdp", false)) << "missing, not made";
	EXPECT_EQ(mode_owner(at("kvmxdp")), "missing");
	::umask(022);
	auto d = open_pin_subdir(top_, "kvmxdp", true);
	ASSERT_TRUE(d);
	EXPECT_EQ(d->path, at("kvmxdp"));
	EXPECT_EQ(mode_owner(at("kvmxdp")), "700 0");
	ASSERT_EQ(::mkdir(at("br0").c_str(), 0755), 0);
	EXPECT_TRUE(open_pin_subdir(top_, "br0", false)) << "root's 0755 is fine";
}

TEST_F(PinWalk, ALinkIsRefusedNeverFollowed)
{
	ASSERT_EQ(::mkdir(at("decoy").c_str(), 0700), 0);
	ASSERT_EQ(::symlink("decoy", at("kvmxdp").c_str()), 0);
	EXPECT_EQ(refusal([&] { open_pin_subdir(top_, "kvmxdp", true); }),
		  at("kvmxdp") +
			  ": a symbolic link (kvmxdp does not follow links here): kvmxdp uses only "
			  "pin directories that root alone can change; remove it or fix its owner "
			  "and mode");
	// A dangling link: not made through it either.
	ASSERT_EQ(::symlink("elsewhere", at("br0").c_str()), 0);
	EXPECT_NE(refusal([&] { open_pin_subdir(top_, "br0", true); }).find("a symbolic link"),
		  std::string::npos);
	EXPECT_EQ(mode_owner(at("elsewhere")), "missing");
	// Not a directory.
	Fd f(::open(at("file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	EXPECT_NE(refusal([&] { open_pin_subdir(top_, "file", false); }).find(": not a directory"),
		  std::string::npos);
}

TEST_F(PinWalk, AnotherOwnerOrAWritableModeIsRefused)
{
	ASSERT_EQ(::mkdir(at("kvmxdp").c_str(), 0700), 0);
	ASSERT_EQ(::chown(at("kvmxdp").c_str(), 65534, 65534), 0);
	EXPECT_NE(refusal([&] {
			  open_pin_subdir(top_, "kvmxdp", true);
		  }).find(at("kvmxdp") + ": owned by uid 65534, not root"),
		  std::string::npos);
	ASSERT_EQ(::chown(at("kvmxdp").c_str(), 0, 0), 0);
	ASSERT_EQ(::chmod(at("kvmxdp").c_str(), 0775), 0);
	EXPECT_NE(refusal([&] {
			  open_pin_subdir(top_, "kvmxdp", true);
		  }).find(": writable by group or others (mode 0775)"),
		  std::string::npos);
	ASSERT_EQ(::chmod(at("kvmxdp").c_str(), 01777), 0);
	EXPECT_NE(refusal([&] {
			  open_pin_subdir(top_, "kvmxdp", true);
		  }).find(": writable by group or others (mode 1777)"),
		  std::string::npos)
		<< "sticky is for the bpffs itself";
}

TEST_F(PinWalk, RemovingUnlinksEntriesNotWhatALinkPointsAt)
{
	ASSERT_EQ(::mkdir(at("decoy").c_str(), 0700), 0);
	Fd precious(::open(at("decoy/precious").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	auto top = open_pin_subdir(top_, "kvmxdp", true);
	ASSERT_TRUE(top);
	auto dir = open_pin_subdir(*top, "br0", true);
	ASSERT_TRUE(dir);
	Fd pin(::open(at("kvmxdp/br0/pin").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	ASSERT_EQ(::symlink("../../decoy", at("kvmxdp/br0/link").c_str()), 0);
	PinDir pd{top_.dup(), std::move(*top), std::move(*dir), "br0"};
	EXPECT_EQ(dir_entries(pd.dir).size(), 2u);

	remove_pin_dir(pd, false); // only if empty: it is not
	EXPECT_EQ(mode_owner(at("kvmxdp/br0")), "700 0");
	remove_pin_dir(pd, true);
	EXPECT_EQ(mode_owner(at("kvmxdp/br0")), "missing");
	EXPECT_EQ(mode_owner(at("kvmxdp")), "missing") << "empty: removed with it";
	EXPECT_EQ(mode_owner(at("decoy/precious")), "600 0");
}

TEST(Bpffs, OnlyARootBpffsWritableByRootOrSticky)
{
	KVX_SKIP_WITHOUT_MOUNT_PRIVILEGE();
	test::TempBpffs fs;
	ASSERT_TRUE(fs.mounted()) << fs.error();
	EXPECT_FALSE(open_bpffs(fs.dir())) << "a tmpfs is no bpffs";
	EXPECT_FALSE(open_pin_dir(fs.dir(), "br0", false));
	EXPECT_THROW(open_pin_dir(fs.dir(), "br0", true), Error);

	// Mounted without mode=: 1777, accepted; kvmxdp/ and br0:10/ made
	// 0700 below it ('.' written as ':').
	ASSERT_TRUE(open_bpffs(fs.path()));
	auto pd = open_pin_dir(fs.path(), "br0.10", true);
	ASSERT_TRUE(pd);
	EXPECT_EQ(pd->dir.path, fs.path() + "/kvmxdp/br0:10");
	struct stat st = {};
	ASSERT_EQ(::stat((fs.path() + "/kvmxdp").c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 07777, 0700u);
	EXPECT_TRUE(open_pin_dir(fs.path(), "br0.10", false));
	EXPECT_FALSE(open_pin_dir(fs.path(), "br1", false)) << "nothing pinned for br1";

	// A kvmxdp/ another user made first (the top is 1777): refused,
	// never used.
	ASSERT_EQ(::chown((fs.path() + "/kvmxdp").c_str(), 65534, 65534), 0);
	EXPECT_NE(refusal([&] {
			  open_pin_dir(fs.path(), "br0.10", false);
		  }).find(fs.path() + "/kvmxdp: owned by uid 65534, not root"),
		  std::string::npos);
	ASSERT_EQ(::chown((fs.path() + "/kvmxdp").c_str(), 0, 0), 0);

	// The bpffs itself: world-writable without the sticky bit, or
	// another owner's, is refused.
	ASSERT_EQ(::chmod(fs.path().c_str(), 0777), 0);
	EXPECT_NE(refusal([&] { open_bpffs(fs.path()); })
			  .find(fs.path() + ": writable by group or others (mode 0777, no sticky "
					    "bit): mount it with mode=0700"),
		  std::string::npos);
	ASSERT_EQ(::chmod(fs.path().c_str(), 0700), 0);
	EXPECT_TRUE(open_bpffs(fs.path()));
	ASSERT_EQ(::chown(fs.path().c_str(), 65534, 65534), 0);
	EXPECT_NE(refusal([&] { open_bpffs(fs.path()); }).find("owned by uid 65534, not root"),
		  std::string::npos);
	ASSERT_EQ(::chown(fs.path().c_str(), 0, 0), 0);
	// A link to the bpffs is not followed either.
	const std::string link = fs.dir() + "/link";
	ASSERT_EQ(::symlink(fs.path().c_str(), link.c_str()), 0);
	EXPECT_NE(refusal([&] { open_bpffs(link); }).find("a symbolic link"), std::string::npos);
}
