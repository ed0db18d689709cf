// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "temp_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/rollback.hpp"
#include "error_of.hpp"
#include "privileges.hpp"

using namespace kvmxdp;
using namespace std::chrono_literals;
using test::error_of;

namespace {

mode_t mode_of(const std::string &path)
{
	struct stat st = {};
	return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

ino_t inode_of(const std::string &path)
{
	struct stat st = {};
	return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

ino_t inode_of_fd(int fd)
{
	struct stat st = {};
	return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// The directory at path, held open as the pin walk holds its levels.
DirFd dir_fd(const std::string &path)
{
	return DirFd{Fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)),
		     path};
}

// How many of our descriptors have path open.
int fds_open_on(const std::string &path)
{
	int n = 0;
	DIR *d = ::opendir("/proc/self/fd");
	while (dirent *de = d ? ::readdir(d) : nullptr) {
		char buf[4096];
		ssize_t len = ::readlink(("/proc/self/fd/" + std::string(de->d_name)).c_str(), buf,
					 sizeof(buf));
		n += len > 0 && std::string(buf, static_cast<size_t>(len)) == path;
	}
	if (d)
		::closedir(d);
	return n;
}

// A child process holding LOCK_EX on path (opened before it drops to uid,
// when uid is set), until the pipe to it closes.  Returns its pid.
struct Holder {
	pid_t pid = -1;
	int release_fd = -1;
	Holder(const std::string &path, std::optional<uid_t> uid = std::nullopt)
	{
		int ready[2], release[2];
		if (::pipe(ready) < 0 || ::pipe(release) < 0)
			return;
		pid = ::fork();
		if (pid == 0) {
			::close(ready[0]);
			::close(release[1]);
			int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
			if (uid && (::setresgid(*uid, *uid, *uid) < 0 ||
				    ::setresuid(*uid, *uid, *uid) < 0))
				::_exit(2);
			if (fd < 0 || ::flock(fd, LOCK_EX) < 0)
				::_exit(3);
			char c = 'r';
			(void)!::write(ready[1], &c, 1);
			(void)!::read(release[0], &c, 1);
			::_exit(0);
		}
		::close(ready[1]);
		::close(release[0]);
		char c = 0;
		if (::read(ready[0], &c, 1) != 1)
			pid = -1;
		::close(ready[0]);
		release_fd = release[1];
	}
	~Holder()
	{
		::close(release_fd);
		if (pid > 0)
			::waitpid(pid, nullptr, 0);
	}
};

} // namespace

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

// Lock files are 0600 in a 0700 directory whatever the umask: flock
// needs only an open fd, and other users cannot open these.
TEST(FileLock, PrivateFileInPrivateDirectory)
{
	test::TempDir tmp;
	const mode_t old = ::umask(0);
	{
		auto a = FileLock::try_acquire(tmp.path() + "/run/a.lock");
		ASSERT_TRUE(a);
		auto b = FileLock::acquire(tmp.path() + "/etc/b.lock", 1s, 0755);
	}
	::umask(old);
	EXPECT_EQ(mode_of(tmp.path() + "/run"), 0700u);
	EXPECT_EQ(mode_of(tmp.path() + "/run/a.lock"), 0600u);
	// The config's directory stays readable (the config is), its lock not.
	EXPECT_EQ(mode_of(tmp.path() + "/etc"), 0755u);
	EXPECT_EQ(mode_of(tmp.path() + "/etc/b.lock"), 0600u);
	auto pl = PidLock::try_acquire(tmp.path() + "/run2/x.pid");
	EXPECT_EQ(mode_of(tmp.path() + "/run2"), 0700u);
	EXPECT_EQ(mode_of(tmp.path() + "/run2/x.pid"), 0600u);
}

TEST(FileLock, RefusesASymlink)
{
	test::TempDir tmp;
	const std::string target = tmp.path() + "/target", link = tmp.path() + "/x.lock";
	std::ofstream(target) << "keep";
	ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
	EXPECT_NE(error_of([&] { FileLock::try_acquire(link); }).find(link + " is a symbolic link"),
		  std::string::npos);
	EXPECT_NE(error_of([&] { FileLock::acquire(link, 1s); }).find("symbolic link"),
		  std::string::npos);
	// Neither followed nor locked.
	std::ifstream in(target);
	std::string text;
	in >> text;
	EXPECT_EQ(text, "keep");
	EXPECT_EQ(mode_of(target) & 0600, 0600u);
	Fd fd(::open(target.c_str(), O_RDONLY));
	EXPECT_EQ(::flock(fd.get(), LOCK_EX | LOCK_NB), 0);
	// The pin directory's lock is taken on the directory held open (its
	// path, checked level by level, is never resolved again).
	const std::string dir = tmp.path() + "/d";
	ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
	DirFd d = dir_fd(dir);
	ASSERT_EQ(::rename(dir.c_str(), (tmp.path() + "/moved").c_str()), 0);
	ASSERT_EQ(::symlink(target.c_str(), dir.c_str()), 0);
	auto l = FileLock::try_acquire_dir(d);
	ASSERT_TRUE(l);
	EXPECT_EQ(inode_of(tmp.path() + "/moved"), inode_of_fd(l->fd()));
}

TEST(FileLock, RefusesFilesAndDirectoriesOthersControl)
{
	test::TempDir tmp;
	const std::string f = tmp.path() + "/w.lock";
	Fd(::open(f.c_str(), O_CREAT | O_WRONLY, 0600));
	ASSERT_EQ(::chmod(f.c_str(), 0666), 0);
	EXPECT_NE(error_of([&] { FileLock::try_acquire(f); }).find("writable by group or others"),
		  std::string::npos);
	EXPECT_EQ(mode_of(f), 0666u); // left as it is
	// A directory others may write: they could swap the lock file.
	const std::string open_dir = tmp.path() + "/open";
	ASSERT_EQ(::mkdir(open_dir.c_str(), 0700), 0);
	ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
	EXPECT_NE(error_of([&] {
			  FileLock::try_acquire(open_dir + "/x.lock");
		  }).find("writable by group or others"),
		  std::string::npos);
	EXPECT_EQ(inode_of(open_dir + "/x.lock"), 0u); // nothing created
	// Sticky (/tmp): others could make the lock file first.
	ASSERT_EQ(::chmod(open_dir.c_str(), 01777), 0);
	EXPECT_NE(error_of([&] {
			  FileLock::try_acquire(open_dir + "/x.lock");
		  }).find("writable by group or others (mode 1777)"),
		  std::string::npos);
	EXPECT_EQ(inode_of(open_dir + "/x.lock"), 0u); // nothing created
	// A pin directory other users may open could be locked by them.
	const std::string pd = tmp.path() + "/pins";
	ASSERT_EQ(::mkdir(pd.c_str(), 0700), 0);
	ASSERT_EQ(::chmod(pd.c_str(), 0755), 0);
	EXPECT_NE(error_of([&] {
			  FileLock::try_acquire_dir(dir_fd(pd));
		  }).find("open to other users"),
		  std::string::npos);
	if (::geteuid() != 0)
		return; // the rest makes a file of another user
	const std::string foreign = tmp.path() + "/foreign.lock";
	Fd(::open(foreign.c_str(), O_CREAT | O_WRONLY, 0600));
	ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
	EXPECT_NE(error_of([&] { FileLock::try_acquire(foreign); }).find("owned by uid 65534"),
		  std::string::npos);
}

// A second name of a lock file (ln, with fs.protected_hardlinks=0) gives
// nobody a way in to a 0600 file: used, not refused (a refusal would let
// any user stall kvmxdp with one ln) and not replaced (another kvmxdp may
// hold it).  One others could open is replaced whatever its names.
TEST(FileLock, AFileWithHardLinksIsUsedOrReplacedNeverRefused)
{
	test::TempDir tmp;
	const std::string f = tmp.path() + "/x.lock", other = tmp.path() + "/other";
	Fd(::open(f.c_str(), O_CREAT | O_WRONLY, 0600));
	ASSERT_EQ(::link(f.c_str(), other.c_str()), 0);
	const ino_t ino = inode_of(f);
	{
		auto l = FileLock::try_acquire(f);
		ASSERT_TRUE(l);
		EXPECT_EQ(inode_of_fd(l->fd()), ino);
	}
	EXPECT_TRUE(PidLock::try_acquire(f));
	EXPECT_EQ(inode_of(f), ino);
	ASSERT_EQ(::chmod(f.c_str(), 0644), 0);
	auto l = FileLock::try_acquire(f);
	ASSERT_TRUE(l);
	EXPECT_NE(inode_of(f), ino);
	EXPECT_EQ(inode_of_fd(l->fd()), inode_of(f));
	EXPECT_EQ(mode_of(f), 0600u);
	EXPECT_EQ(inode_of(other), ino) << "the other name is left alone";
}

// A lock on a pid file other users could open (a leftover 0644 one, one
// of theirs, one with another name) is not believed unless its holder is
// verified: detach would otherwise stop at "still held" for ever.
TEST(PidLock, HolderOfAFileOthersCouldOpenIsNotBelieved)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root (a holder of another uid)";
	test::TempDir tmp;
	ASSERT_EQ(::chmod(tmp.path().c_str(), 0711), 0); // uid 65534 reaches the files
	struct Case {
		const char *what;
		mode_t mode;
		uid_t owner;
		bool second_name;
	};
	const Case cases[] = {
		{"a leftover 0644 pid file", 0644, 0, false},
		{"a 0600 pid file of the user's", 0600, 65534, false},
		{"a 0644 pid file with a second name", 0644, 0, true},
	};
	for (const Case &c : cases) {
		const std::string path = tmp.path() + "/x.pid";
		::unlink(path.c_str());
		::unlink((tmp.path() + "/alias").c_str());
		Fd(::open(path.c_str(), O_CREAT | O_WRONLY, 0600));
		ASSERT_EQ(::chmod(path.c_str(), c.mode), 0);
		ASSERT_EQ(::chown(path.c_str(), c.owner, c.owner), 0);
		if (c.second_name) {
			ASSERT_EQ(::link(path.c_str(), (tmp.path() + "/alias").c_str()), 0);
		}
		Holder user(path, 65534);
		ASSERT_GT(user.pid, 0) << c.what;
		EXPECT_TRUE(LockHolder::of(path).empty()) << c.what;
		EXPECT_FALSE(PidLock::holder(path)) << c.what;
	}
	// A private file (0600, root's, in a directory of root's): its holder.
	const std::string path = tmp.path() + "/y.pid";
	Fd(::open(path.c_str(), O_CREAT | O_WRONLY, 0600));
	Holder hidden(path);
	ASSERT_GT(hidden.pid, 0);
	EXPECT_EQ(PidLock::holder(path), hidden.pid);
}

// A 0644 lock file (what kvmxdp made before) may be held open by any user,
// who could then hold its lock for ever, or pass it to a setuid-root
// program (su) to look like root: it is replaced by a fresh 0600 one
// whoever holds it, root included.
TEST(FileLock, ReplacesAReadableFileWhoeverHoldsIt)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root (a holder of another uid)";
	test::TempDir tmp;
	ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
	const std::string path = tmp.path() + "/old.lock";
	for (std::optional<uid_t> uid : {std::optional<uid_t>(0), std::optional<uid_t>(65534)}) {
		::unlink(path.c_str());
		Fd(::open(path.c_str(), O_CREAT | O_WRONLY, 0644));
		ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
		const ino_t old_ino = inode_of(path);
		Holder holder(path, uid);
		ASSERT_GT(holder.pid, 0);
		auto l = FileLock::try_acquire(path);
		ASSERT_TRUE(l) << "held by uid " << *uid;
		EXPECT_NE(inode_of(path), old_ino);
		EXPECT_EQ(inode_of_fd(l->fd()), inode_of(path));
		EXPECT_EQ(mode_of(path), 0600u);
		// The fresh file is never replaced again: it is the lock now.
		EXPECT_FALSE(FileLock::try_acquire(path));
		EXPECT_EQ(inode_of_fd(l->fd()), inode_of(path));
	}
}

// Processes replacing the same old file at once: one lock at a time, on
// the file at the path (without the .migrate lock, one could rename its
// fresh file over the one another had just locked).
TEST(FileLock, ConcurrentReplacementsLeaveOneHolder)
{
	test::TempDir tmp;
	const std::string path = tmp.path() + "/old.lock";
	constexpr int kProcs = 4;
	for (int round = 0; round < 100; round++) {
		::unlink(path.c_str());
		Fd(::open(path.c_str(), O_CREAT | O_WRONLY, 0644));
		ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
		int go[2], res[2], hold[2];
		ASSERT_EQ(::pipe(go), 0);
		ASSERT_EQ(::pipe(res), 0);
		ASSERT_EQ(::pipe(hold), 0);
		std::vector<pid_t> kids;
		for (int i = 0; i < kProcs; i++) {
			pid_t pid = ::fork();
			if (pid == 0) {
				::close(go[1]);
				::close(hold[1]);
				char c;
				(void)!::read(go[0], &c, 1); // EOF: all start at once
				std::optional<FileLock> l;
				try {
					l = FileLock::try_acquire(path);
				} catch (...) {
				}
				c = l ? '1' : '0';
				(void)!::write(res[1], &c, 1);
				(void)!::read(hold[0], &c, 1); // held until all tried
				::_exit(0);
			}
			kids.push_back(pid);
		}
		::close(go[0]);
		::close(res[1]);
		::close(hold[0]);
		::close(go[1]);
		std::string got;
		char c;
		while (got.size() < kProcs && ::read(res[0], &c, 1) == 1)
			got += c;
		::close(hold[1]);
		::close(res[0]);
		for (pid_t k : kids)
			::waitpid(k, nullptr, 0);
		EXPECT_LE(std::count(got.begin(), got.end(), '1'), 1) << "round " << round;
		if (std::count(got.begin(), got.end(), '1') > 1)
			break;
	}
}

// A waiter that gets the lock of a file which meanwhile left the path
// holds nothing anybody else would look at: it takes the new file's.
TEST(FileLock, RetakenWhenTheFileLeftThePath)
{
	test::TempDir tmp;
	const std::string path = tmp.path() + "/x.lock";
	auto first = FileLock::try_acquire(path);
	ASSERT_TRUE(first);
	std::optional<FileLock> second;
	std::string err;
	std::thread waiter([&] {
		try {
			second = FileLock::acquire(path, 20s);
		} catch (const Error &e) {
			err = e.what();
		}
	});
	// The waiter has the old file open (and waits for its lock) ...
	for (int i = 0; i < 2000 && fds_open_on(path) < 2; i++)
		std::this_thread::sleep_for(5ms);
	EXPECT_EQ(fds_open_on(path), 2);
	// ... when its holder removes it and lets go.
	ASSERT_EQ(::unlink(path.c_str()), 0);
	first.reset();
	waiter.join();
	ASSERT_TRUE(second) << err;
	ASSERT_NE(inode_of(path), 0u) << "no lock file at the path";
	EXPECT_EQ(inode_of_fd(second->fd()), inode_of(path));
}

TEST(FileLock, WaitIsBoundedAndNamesTheHolder)
{
	test::TempDir tmp;
	const std::string path = tmp.path() + "/x.lock";
	auto held = FileLock::try_acquire(path);
	ASSERT_TRUE(held);
	const auto t0 = std::chrono::steady_clock::now();
	const std::string err = error_of([&] { FileLock::acquire(path, 300ms); });
	const auto took = std::chrono::steady_clock::now() - t0;
	EXPECT_NE(err.find("lock " + path + " still held by pid " + std::to_string(::getpid())),
		  std::string::npos)
		<< err;
	EXPECT_NE(err.find("after 0.3 s"), std::string::npos) << err;
	EXPECT_GE(took, 300ms);
	EXPECT_LT(took, 10s);
}

TEST(FileLock, SigtermEndsTheWait)
{
	test::TempDir tmp;
	const std::string path = tmp.path() + "/x.lock";
	auto held = FileLock::try_acquire(path);
	ASSERT_TRUE(held);
	// Pending for this thread before the wait starts, or arriving during
	// it: either way the wait takes it.
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
	ASSERT_EQ(pthread_kill(pthread_self(), SIGTERM), 0);
	const std::string err = error_of([&] { FileLock::acquire(path, 20s); });
	sigset_t pending;
	sigpending(&pending);
	const bool still_pending = sigismember(&pending, SIGTERM);
	pthread_sigmask(SIG_SETMASK, &old, nullptr);
	EXPECT_NE(err.find("interrupted by SIGTERM while waiting for the lock " + path),
		  std::string::npos)
		<< err;
	EXPECT_FALSE(still_pending);
}

// The daemon is the process holding the lock, whatever pid its file says.
TEST(LockHolder, IsWhoHoldsTheLockNotThePidInTheFile)
{
	test::TempDir tmp;
	const std::string path = tmp.path() + "/x.pid";
	std::ofstream(path) << ::getppid() << "\n"; // a live process that holds nothing
	EXPECT_TRUE(LockHolder::of(path).empty());
	EXPECT_FALSE(PidLock::holder(path));
	Holder daemon(path);
	ASSERT_GT(daemon.pid, 0);
	auto holders = LockHolder::of(path);
	ASSERT_EQ(holders.size(), 1u);
	EXPECT_EQ(holders[0].pid(), daemon.pid);
	EXPECT_EQ(PidLock::holder(path), daemon.pid);
	EXPECT_NE(describe_lock_holders(path).find("pid " + std::to_string(daemon.pid)),
		  std::string::npos);
	// Signalled through its pidfd; once it is gone, nothing is.
	EXPECT_TRUE(holders[0].signal(SIGTERM));
	EXPECT_TRUE(holders[0].wait_exit(5s));
	::waitpid(daemon.pid, nullptr, 0); // our child: reaped here
	daemon.pid = -1;
	EXPECT_FALSE(holders[0].signal(0));
	EXPECT_TRUE(LockHolder::of(path).empty());
	EXPECT_EQ(describe_lock_holders(path), "another process");
}

// A root process holding the lock is not the daemon unless it runs
// kvmxdp: a user's fd kept across the exec of a setuid-root program makes
// that program a root holder, never to be signalled.
TEST(LockHolder, IsOnlyAProcessRunningKvmxdp)
{
	test::TempDir tmp;
	const std::string path = tmp.path() + "/x.pid";
	Fd(::open(path.c_str(), O_CREAT | O_WRONLY, 0600));
	int ready[2];
	ASSERT_EQ(::pipe(ready), 0);
	pid_t pid = ::fork();
	if (pid == 0) {
		int fd = ::open(path.c_str(), O_RDONLY); // no O_CLOEXEC: kept
		if (fd < 0 || ::flock(fd, LOCK_EX) < 0)
			::_exit(3);
		::dup2(ready[1], 1);
		// Another program, with the lock: says so once exec'd.
		::execl("/bin/sh", "sh", "-c", "echo r; exec sleep 30", (char *)nullptr);
		::_exit(4);
	}
	::close(ready[1]);
	char c = 0;
	ASSERT_EQ(::read(ready[0], &c, 1), 1);
	::close(ready[0]);
	std::string comm;
	for (int i = 0; i < 100 && comm != "sleep"; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
		std::ifstream("/proc/" + std::to_string(pid) + "/comm") >> comm;
	}
	EXPECT_EQ(comm, "sleep");
	EXPECT_NE(describe_lock_holders(path).find("pid " + std::to_string(pid)), std::string::npos)
		<< "it does hold the lock";
	EXPECT_TRUE(LockHolder::of(path).empty()) << "a sleep is no kvmxdp to signal";
	EXPECT_NE(PidLock::holder(path), std::optional<pid_t>(pid));
	::kill(pid, SIGKILL);
	::waitpid(pid, nullptr, 0);
}

TEST(LockHolder, OfADirectory)
{
	test::TempDir tmp;
	const std::string dir = tmp.path() + "/pins";
	ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
	DirFd d = dir_fd(dir);
	auto l = FileLock::try_acquire_dir(d);
	ASSERT_TRUE(l);
	// Each lock has an open file description of its own: a second one
	// conflicts like another process would.
	EXPECT_FALSE(FileLock::try_acquire_dir(d));
	auto holders = LockHolder::of(d);
	ASSERT_EQ(holders.size(), 1u);
	EXPECT_EQ(holders[0].pid(), ::getpid());
	EXPECT_EQ(LockHolder::of(dir).size(), 1u);
	l.reset();
	EXPECT_TRUE(LockHolder::of(d).empty());
	EXPECT_TRUE(FileLock::try_acquire_dir(d));
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
	Trust level;
	const char *problem; // "" = accepted
};

TEST(Trust, RootAloneMayChangeEveryLevel)
{
	const char *link = "a symbolic link (kvmxdp does not follow links here)";
	const LevelCase cases[] = {
		{"root 0700", S_IFDIR, 0700, 0, Trust::Dir, ""},
		{"root 0755", S_IFDIR, 0755, 0, Trust::Dir, ""},
		{"root 0755 bpffs", S_IFDIR, 0755, 0, Trust::Bpffs, ""},
		{"another owner", S_IFDIR, 0700, 1000, Trust::Dir, "owned by uid 1000, not root"},
		{"another owner's bpffs", S_IFDIR, 01777, 1000, Trust::Bpffs,
		 "owned by uid 1000, not root"},
		{"a link", S_IFLNK, 0777, 0, Trust::Dir, link},
		{"a link as the bpffs", S_IFLNK, 0777, 0, Trust::Bpffs, link},
		{"a file", S_IFREG, 0600, 0, Trust::Dir, "not a directory"},
		// A bpffs mounted without mode= is 1777: others may add entries
		// at the top but not remove or rename root's.  Below it, never.
		{"1777 bpffs", S_IFDIR, 01777, 0, Trust::Bpffs, ""},
		{"1777 below", S_IFDIR, 01777, 0, Trust::Dir,
		 "writable by group or others (mode 1777)"},
		{"0777 bpffs", S_IFDIR, 0777, 0, Trust::Bpffs,
		 "writable by group or others (mode 0777, no sticky bit)"},
		{"group-writable", S_IFDIR, 0770, 0, Trust::Dir,
		 "writable by group or others (mode 0770)"},
		{"other-writable", S_IFDIR, 0702, 0, Trust::Dir,
		 "writable by group or others (mode 0702)"},
		// Pins: bpffs objects are regular inodes, 0600 as bpf_obj_pin
		// makes them.
		{"a pin", S_IFREG, 0600, 0, Trust::Pin, ""},
		{"a readable pin", S_IFREG, 0644, 0, Trust::Pin, ""},
		{"a writable pin", S_IFREG, 0666, 0, Trust::Pin,
		 "writable by group or others (mode 0666)"},
		{"another's pin", S_IFREG, 0600, 65534, Trust::Pin, "owned by uid 65534, not root"},
		{"a link as a pin", S_IFLNK, 0777, 0, Trust::Pin, link},
		{"a directory as a pin", S_IFDIR, 0700, 0, Trust::Pin, "not a pinned BPF object"},
		// The same judgement for the locks.
		{"a lock directory", S_IFDIR, 0755, 0, Trust::LockDir, ""},
		// In /tmp a user could make the lock file, or the names
		// written beside it, first.
		{"/tmp", S_IFDIR, 01777, 0, Trust::LockDir,
		 "writable by group or others (mode 1777)"},
		{"an open lock directory", S_IFDIR, 0777, 0, Trust::LockDir,
		 "writable by group or others (mode 0777)"},
		{"another's lock directory", S_IFDIR, 0700, 1000, Trust::LockDir,
		 "owned by uid 1000, not root"},
		{"a lock file", S_IFREG, 0600, 0, Trust::LockFile, ""},
		{"a leftover 0644 lock file", S_IFREG, 0644, 0, Trust::LockFile, ""},
		{"a writable lock file", S_IFREG, 0660, 0, Trust::LockFile,
		 "writable by group or others (mode 0660)"},
		{"another's lock file", S_IFREG, 0600, 65534, Trust::LockFile,
		 "owned by uid 65534, not root"},
		{"a link as a lock file", S_IFLNK, 0777, 0, Trust::LockFile, link},
		{"a fifo as a lock file", S_IFIFO, 0600, 0, Trust::LockFile, "not a regular file"},
		{"a locked directory", S_IFDIR, 0700, 0, Trust::LockedDir, ""},
		{"a readable locked directory", S_IFDIR, 0755, 0, Trust::LockedDir,
		 "open to other users (mode 0755), who could hold its lock"},
	};
	for (const LevelCase &c : cases) {
		struct stat st = {};
		st.st_nlink = 1;
		st.st_mode = c.type | c.perm;
		st.st_uid = c.uid;
		EXPECT_EQ(trust_problem(st, c.level), c.problem) << c.what;
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

TEST_F(PinWalk, RemovingKeepsTheTopDirOfABpffsOpenToEveryUser)
{
	// A user could make the kvmxdp/ of a 1777 bpffs theirs once it is
	// gone: root's, kept empty, keeps the name.
	ASSERT_EQ(::chmod(tmp_.path().c_str(), 01777), 0);
	auto top = open_pin_subdir(top_, "kvmxdp", true);
	ASSERT_TRUE(top);
	auto dir = open_pin_subdir(*top, "br0", true);
	ASSERT_TRUE(dir);
	PinDir pd{top_.dup(), std::move(*top), std::move(*dir), "br0"};
	remove_pin_dir(pd, true);
	EXPECT_EQ(mode_owner(at("kvmxdp/br0")), "missing");
	EXPECT_EQ(mode_owner(at("kvmxdp")), "700 0") << "kept";
	ASSERT_EQ(::chmod(tmp_.path().c_str(), 0700), 0);
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
