// SPDX-License-Identifier: GPL-2.0
#include "base/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.hpp"
#include "base/log.hpp"

namespace kvmxdp {

std::string normalize_dir(const std::string &dir)
{
	std::string d = dir;
	while (d.size() > 1 && d.back() == '/')
		d.pop_back();
	return d;
}

void mkdir_p(const std::string &path, mode_t mode)
{
	std::string cur;
	size_t pos = 0;
	while (pos <= path.size()) {
		auto slash = path.find('/', pos);
		if (slash == std::string::npos)
			slash = path.size();
		cur = path.substr(0, slash);
		pos = slash + 1;
		if (cur.empty())
			continue;
		if (::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST)
			throw_errno("mkdir", cur);
	}
	struct stat st = {};
	if (::stat(path.c_str(), &st) < 0)
		throw_errno("stat", path);
	if (!S_ISDIR(st.st_mode))
		throw Error("mkdir", path, ENOTDIR);
}

bool is_bpffs(const std::string &path)
{
	struct statfs st = {};
	if (::statfs(path.c_str(), &st) < 0)
		return false;
	return static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

bool ensure_bpffs(const std::string &path)
{
	if (is_bpffs(path))
		return false;
	mkdir_p(path, 0700);
	if (::mount("bpf", path.c_str(), "bpf", 0, "mode=0700") < 0)
		throw_errno("mount -t bpf on", path);
	return true;
}

bool in_private_mount_ns()
{
	struct stat self = {};
	if (::stat("/proc/self/ns/mnt", &self) < 0)
		return false;
	// init's namespace may be unreadable (containers): the parent's tells
	// too, as `ip netns exec` unshares right before exec'ing us.
	for (std::string other :
	     {std::string("/proc/1/ns/mnt"), "/proc/" + std::to_string(::getppid()) + "/ns/mnt"}) {
		struct stat st = {};
		if (::stat(other.c_str(), &st) == 0 &&
		    (st.st_ino != self.st_ino || st.st_dev != self.st_dev))
			return true;
	}
	return false;
}

std::string pin_dir_name(const std::string &bridge)
{
	std::string name = bridge;
	for (char &c : name)
		if (c == '.')
			c = ':';
	return name;
}

std::string pin_dir_for(const std::string &bpffs, const std::string &bridge)
{
	return normalize_dir(bpffs) + "/kvmxdp/" + pin_dir_name(bridge);
}

std::string pin_path(const std::string &pin_dir, const std::string &map_name)
{
	return pin_dir + "/" + map_name;
}

namespace {

constexpr const char *kTopDir = "kvmxdp";

std::string mode_str(mode_t m)
{
	char buf[8];
	std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(m & 07777));
	return buf;
}

[[noreturn]] void refuse_level(const std::string &path, const std::string &problem, Trust level)
{
	const char *remedy =
		level == Trust::Bpffs ?
			"mount it with mode=0700, or give kvmxdp a bpffs of its own (--bpffs)" :
		level == Trust::Dir ?
			"kvmxdp uses only pin directories that root alone can change; remove it "
			"or fix its owner and mode" :
			"kvmxdp reads only pins that root alone can change";
	throw PinRefused(path + ": " + problem + ": " + remedy);
}

// What a name that openat(O_NOFOLLOW) refused is, for the message.
std::string what_is(int dirfd, const std::string &name, const std::string &path, int err)
{
	struct stat st = {};
	if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
		if (std::string p = trust_problem(st, Trust::Dir); !p.empty())
			return p;
	return Error("open", path, err).what();
}

// fstat on fd, then the policy of its level: refused naming path.
void check_level(int fd, const std::string &path, Trust level)
{
	struct stat st = {};
	if (::fstat(fd, &st) < 0)
		throw_errno("stat", path);
	if (std::string problem = trust_problem(st, level); !problem.empty())
		refuse_level(path, problem, level);
}

} // namespace

std::string trust_problem(const struct stat &st, Trust what)
{
	const bool file = what == Trust::Pin || what == Trust::LockFile || what == Trust::File;
	if (S_ISLNK(st.st_mode))
		return "a symbolic link (kvmxdp does not follow links here)";
	if (file ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
		return what == Trust::Pin ? "not a pinned BPF object" :
		       file		  ? "not a regular file" :
					    "not a directory";
	if (st.st_uid != 0 && st.st_uid != ::geteuid())
		return "owned by uid " + std::to_string(st.st_uid) + ", not root";
	if (what == Trust::LockedDir && (st.st_mode & (S_IRWXG | S_IRWXO)))
		return "open to other users (mode " + mode_str(st.st_mode) +
		       "), who could hold its lock";
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		// A sticky directory lets others add entries but not remove or
		// rename root's (the VFS's may_delete): kvmxdp/ below a 1777
		// bpffs stays root's once made, and is checked itself.  Not so
		// for locks: in /tmp a user could make the lock file (or the
		// temporary names beside it) first, and stall or steer kvmxdp.
		const bool sticky_ok = what == Trust::Bpffs;
		if (sticky_ok && (st.st_mode & S_ISVTX))
			return "";
		return "writable by group or others (mode " + mode_str(st.st_mode) +
		       (sticky_ok ? ", no sticky bit)" : ")");
	}
	return "";
}

std::string fd_path(int fd)
{
	return "/proc/self/fd/" + std::to_string(fd);
}

std::string DirFd::via_fd(const std::string &name) const
{
	return fd_path(fd.get()) + "/" + name;
}

bool DirFd::unlink(const std::string &name) const
{
	return ::unlinkat(fd.get(), name.c_str(), 0) == 0;
}

DirFd DirFd::dup() const
{
	Fd d(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
	if (!d)
		throw_errno("dup fd of", path);
	return DirFd{std::move(d), path};
}

std::optional<DirFd> open_bpffs(const std::string &path)
{
	const std::string p = normalize_dir(path);
	Fd fd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return std::nullopt;
		if (errno == ENOTDIR || errno == ELOOP)
			refuse_level(p, what_is(AT_FDCWD, p, p, errno), Trust::Bpffs);
		throw_errno("open", p);
	}
	struct statfs sfs = {};
	if (::fstatfs(fd.get(), &sfs) < 0)
		throw_errno("statfs", p);
	if (static_cast<unsigned long>(sfs.f_type) != BPF_FS_MAGIC)
		return std::nullopt;
	check_level(fd.get(), p, Trust::Bpffs);
	return DirFd{std::move(fd), p};
}

std::optional<DirFd> open_pin_subdir(const DirFd &parent, const std::string &name, bool create)
{
	const std::string path = parent.show(name);
	auto open_it = [&] {
		return Fd(::openat(parent.fd.get(), name.c_str(),
				   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	};
	Fd fd = open_it();
	if (!fd && errno == ENOENT && create) {
		// EEXIST: made by someone else in between, checked like any other.
		if (::mkdirat(parent.fd.get(), name.c_str(), 0700) < 0 && errno != EEXIST)
			throw_errno("mkdir", path);
		fd = open_it();
	}
	if (!fd) {
		if (errno == ENOENT)
			return std::nullopt;
		if (errno == ENOTDIR || errno == ELOOP)
			refuse_level(path, what_is(parent.fd.get(), name, path, errno), Trust::Dir);
		throw_errno("open", path);
	}
	struct stat st = {};
	if (::fstat(fd.get(), &st) < 0)
		throw_errno("stat", path);
	if (std::string problem = trust_problem(st, Trust::Dir); !problem.empty()) {
		// Another user's entry where every user may create one (a 1777
		// bpffs): what they made is neither used nor deleted through
		// (nor renamed aside: without CAP_FOWNER, as under the unit,
		// root may not), so only root can clear the way, and only a
		// bpffs of root's keeps it clear.
		struct stat pst = {};
		if (st.st_uid != 0 && st.st_uid != ::geteuid() &&
		    ::fstat(parent.fd.get(), &pst) == 0 && (pst.st_mode & S_IWOTH))
			throw PinRefused(path + ": " + problem + ": another user made it in " +
					 parent.path + " (mode " + mode_str(pst.st_mode) +
					 ", open to every user); kvmxdp neither uses it nor "
					 "deletes through it: as root, remove it (rm -r " +
					 path +
					 ") and mount the bpffs with mode=0700, or give kvmxdp "
					 "a bpffs of its own (--bpffs)");
		refuse_level(path, problem, Trust::Dir);
	}
	return DirFd{std::move(fd), path};
}

std::optional<PinDir> open_pin_dir(const std::string &bpffs, const std::string &bridge, bool create)
{
	auto root = open_bpffs(bpffs);
	if (!root) {
		if (create)
			throw Error(normalize_dir(bpffs) + " is not a bpffs");
		return std::nullopt;
	}
	auto top = open_pin_subdir(*root, kTopDir, create);
	if (!top)
		return std::nullopt;
	const std::string name = pin_dir_name(bridge);
	auto dir = open_pin_subdir(*top, name, create);
	if (!dir)
		return std::nullopt;
	return PinDir{std::move(*root), std::move(*top), std::move(*dir), name};
}

std::optional<Fd> open_pin_entry(const DirFd &dir, const std::string &name)
{
	const std::string path = dir.show(name);
	Fd fd(::openat(dir.fd.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return std::nullopt;
		throw_errno("open", path);
	}
	check_level(fd.get(), path, Trust::Pin);
	return fd;
}

std::vector<std::string> dir_entries(const DirFd &dir)
{
	// fdopendir takes the fd over: a duplicate keeps ours open.
	Fd dup = dir.dup().fd;
	DIR *d = ::fdopendir(dup.get());
	if (!d)
		throw_errno("read", dir.path);
	dup.release();
	// The duplicate shares the file offset: start from the beginning.
	::rewinddir(d);
	std::vector<std::string> out;
	while (dirent *de = ::readdir(d)) {
		std::string n = de->d_name;
		if (n != "." && n != "..")
			out.push_back(n);
	}
	::closedir(d);
	return out;
}

void remove_pin_dir(const PinDir &pd, bool pins)
{
	if (pins)
		for (const auto &name : dir_entries(pd.dir))
			if (!pd.dir.unlink(name) && errno != ENOENT)
				throw_errno("unpin", pd.dir.show(name));
	if (::unlinkat(pd.top.fd.get(), pd.name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT &&
	    (pins || errno != ENOTEMPTY))
		throw_errno("remove", pd.dir.path);
	// Other instances' directories keep it.  On a bpffs every user may
	// add to (1777) it stays: once removed, a user could make a kvmxdp/
	// of their own there, which every later attach refuses.
	struct stat st = {};
	if (::fstat(pd.bpffs.fd.get(), &st) == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH)))
		::unlinkat(pd.bpffs.fd.get(), kTopDir, AT_REMOVEDIR);
}

std::string pid_file_for(const std::string &run_dir, const std::string &bpffs,
			 const std::string &bridge)
{
	// FNV-1a 64 of the bpffs path: short, stable, file-name safe.
	std::string base = bpffs;
	while (base.size() > 1 && base.back() == '/')
		base.pop_back();
	uint64_t h = 1469598103934665603ULL;
	for (unsigned char c : base) {
		h ^= c;
		h *= 1099511628211ULL;
	}
	char hex[17];
	std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
	return run_dir + "/" + bridge + "-" + hex + ".pid";
}

void atomic_write_file(const std::string &path, const std::string &content, mode_t mode)
{
	auto slash = path.rfind('/');
	if (slash != std::string::npos && slash > 0)
		mkdir_p(path.substr(0, slash));
	std::string tmp = path + ".tmp." + std::to_string(::getpid());
	// A fresh file, never one already there under that name (a link to
	// elsewhere, a file another user holds open): a leftover of ours, from
	// a run that died with our pid, is removed and made anew.
	auto create = [&] {
		return Fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				 mode));
	};
	Fd fd = create();
	if (!fd && errno == EEXIST && ::unlink(tmp.c_str()) == 0)
		fd = create();
	if (!fd)
		throw_errno("create", tmp);
	size_t off = 0;
	while (off < content.size()) {
		ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
		if (n < 0) {
			int e = errno;
			::unlink(tmp.c_str());
			throw Error("write", tmp, e);
		}
		off += static_cast<size_t>(n);
	}
	if (::fsync(fd.get()) < 0) {
		int e = errno;
		::unlink(tmp.c_str());
		throw Error("fsync", tmp, e);
	}
	fd.reset();
	if (::rename(tmp.c_str(), path.c_str()) < 0) {
		int e = errno;
		::unlink(tmp.c_str());
		throw Error("rename " + tmp + " to", path, e);
	}
}

std::optional<std::string> read_file(const std::string &path, bool trusted)
{
	Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return std::nullopt;
		throw_errno("open", path);
	}
	if (trusted) {
		struct stat st = {};
		if (::fstat(fd.get(), &st) < 0)
			throw_errno("stat", path);
		if (std::string problem = trust_problem(st, Trust::File); !problem.empty())
			throw ConfigError(path + ": " + problem +
					  ": kvmxdp reads only files that root alone can change");
	}
	std::string out;
	char buf[8192];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0)
			throw_errno("read", path);
		if (n == 0)
			break;
		// Every file kvmxdp reads (config, leases, an import's rules) is
		// small: an endless one (/dev/zero as an import) must not take
		// the host's memory.
		if (out.size() + static_cast<size_t>(n) > kReadFileMax)
			throw Error(path + ": larger than " + std::to_string(kReadFileMax >> 20) +
				    " MiB, not read");
		out.append(buf, static_cast<size_t>(n));
	}
	return out;
}

namespace {

// Only root (or we) may create, rename or remove entries where a lock file
// lives: another user could otherwise swap it for one of theirs.  In a
// sticky directory (/tmp) they cannot touch ours, and one they made first
// is refused by open_lock_file.
std::string lock_dir_problem(const std::string &dir)
{
	struct stat st = {};
	if (::stat(dir.c_str(), &st) < 0)
		return Error("stat", dir, errno).what();
	return trust_problem(st, Trust::LockDir);
}

void check_lock_dir(const std::string &dir)
{
	if (std::string problem = lock_dir_problem(dir); !problem.empty())
		throw Error("directory " + dir + " of a kvmxdp lock: " + problem +
			    ": another user could replace the lock; use a directory of root's");
}

// One line of /proc/locks, or the part after "lock:\t" of a line of
// /proc/PID/fdinfo/FD: "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF".
// A waiter's line ("1: -> FLOCK ...") holds nothing.
struct LockLine {
	pid_t pid = 0;
	bool matches = false; // an exclusive flock held on the file
};

LockLine parse_lock_line(const std::string &line, const struct stat &st)
{
	std::istringstream in(line);
	std::string num, type, adv, access, pid, id;
	in >> num >> type >> adv >> access >> pid >> id;
	LockLine l;
	if (type != "FLOCK" || access != "WRITE")
		return l;
	unsigned maj = 0, min = 0;
	unsigned long ino = 0;
	if (std::sscanf(id.c_str(), "%x:%x:%lu", &maj, &min, &ino) != 3)
		return l;
	l.pid = static_cast<pid_t>(std::strtol(pid.c_str(), nullptr, 10));
	l.matches = maj == major(st.st_dev) && min == minor(st.st_dev) && ino == st.st_ino;
	return l;
}

// The pids /proc/locks names as holding an exclusive flock on the file
// (in our pid namespace; others' are left out by the kernel).
std::vector<pid_t> flock_pids(const struct stat &st)
{
	std::vector<pid_t> pids;
	std::ifstream in("/proc/locks");
	std::string line;
	while (std::getline(in, line)) {
		LockLine l = parse_lock_line(line, st);
		if (l.matches && l.pid > 0 &&
		    std::find(pids.begin(), pids.end(), l.pid) == pids.end())
			pids.push_back(l.pid);
	}
	return pids;
}

// A line of /proc/PID/status ("Uid:\t0\t0\t0\t0": real, effective, ...).
std::optional<uid_t> process_euid(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/status");
	std::string line;
	while (std::getline(in, line)) {
		if (line.rfind("Uid:", 0) != 0)
			continue;
		std::istringstream f(line.substr(4));
		unsigned long real = 0, eff = 0;
		if (f >> real >> eff)
			return static_cast<uid_t>(eff);
	}
	return std::nullopt;
}

// The program pid runs is a kvmxdp: this one's file, the same path (an
// older daemon whose binary a package upgrade replaced shows as
// "PATH (deleted)"), or a file named kvmxdp* elsewhere (a build in
// /usr/local beside the package, a copy an upgrade test runs).  A root
// process holding a lock is not proof enough:
// a user's fd, kept across the exec of a setuid-root program (su, passwd),
// makes that program a root holder of the user's choosing.
bool runs_kvmxdp(pid_t pid)
{
	const std::string exe = "/proc/" + std::to_string(pid) + "/exe";
	struct stat a = {}, b = {};
	if (::stat(exe.c_str(), &a) == 0 && ::stat("/proc/self/exe", &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return true;
	auto target = [](const std::string &link) {
		char buf[PATH_MAX];
		ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
		std::string t = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
		const std::string deleted = " (deleted)";
		if (t.size() > deleted.size() &&
		    t.compare(t.size() - deleted.size(), deleted.size(), deleted) == 0)
			t.resize(t.size() - deleted.size());
		return t;
	};
	const std::string theirs = target(exe);
	if (theirs.empty())
		return false;
	if (theirs == target("/proc/self/exe"))
		return true;
	const std::string base = theirs.substr(theirs.rfind('/') + 1);
	return base.rfind("kvmxdp", 0) == 0;
}

std::string process_name(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
	std::string name;
	std::getline(in, name);
	return name;
}

// Whether the process now at pid holds an exclusive flock on the file
// through one of its own descriptors.
bool process_holds_flock(pid_t pid, const struct stat &st)
{
	const std::string dir = "/proc/" + std::to_string(pid) + "/fdinfo";
	DIR *d = ::opendir(dir.c_str());
	if (!d)
		return false;
	bool found = false;
	while (dirent *de = ::readdir(d)) {
		if (de->d_name[0] == '.')
			continue;
		std::ifstream in(dir + "/" + de->d_name);
		std::string line;
		while (!found && std::getline(in, line))
			if (line.rfind("lock:", 0) == 0 &&
			    parse_lock_line(line.substr(5), st).matches)
				found = true;
		if (found)
			break;
	}
	::closedir(d);
	return found;
}

// A file other users could open (mode & 077: a 0644 lock or pid file of
// an older kvmxdp) may be held open, and locked, by any of them for ever:
// its name gets a fresh 0600 file, whoever holds the old one (never
// asked: a user's fd passed to a setuid-root program looks like root's).
// Under a second lock, path + ".migrate", which only root can open: two
// kvmxdp replacing the same old file at once would otherwise each rename
// a file of their own over the other's, and both hold "the" lock.  The
// file is looked at again under it: only an old file is ever replaced,
// never a 0600 one another kvmxdp may be holding.
void replace_open_lock_file(const std::string &path)
{
	const std::string mpath = path + ".migrate";
	Fd m(::open(mpath.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
	if (!m)
		throw_errno("open lock file", mpath);
	struct stat mst = {};
	if (::fstat(m.get(), &mst) < 0)
		throw_errno("stat", mpath);
	if (std::string problem = trust_problem(mst, Trust::LockFile); !problem.empty())
		throw Error("lock file " + mpath + ": " + problem + ": refused (remove it)");
	if (mst.st_mode & (S_IRWXG | S_IRWXO))
		throw Error("lock file " + mpath + ": open to other users (mode " +
			    mode_str(mst.st_mode) + "): refused (remove it)");
	// Held by another kvmxdp for a rename at most: bounded all the same.
	for (int i = 0; ::flock(m.get(), LOCK_EX | LOCK_NB) < 0; i++) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			throw_errno("flock", mpath);
		if (i == 200)
			throw Error("lock " + mpath + " held by " + describe_lock_holders(mpath) +
				    " for 2 s: refused");
		::usleep(10000);
	}
	struct stat st = {};
	if (::lstat(path.c_str(), &st) < 0) {
		if (errno == ENOENT)
			return; // gone: the next open makes a 0600 one
		throw_errno("stat", path);
	}
	if (!S_ISREG(st.st_mode) || !(st.st_mode & (S_IRWXG | S_IRWXO)))
		return; // already replaced, or refused by the caller next
	const std::string tmp = path + ".new." + std::to_string(::getpid());
	::unlink(tmp.c_str());
	Fd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
	if (!fd)
		throw_errno("create lock file", tmp);
	if (::rename(tmp.c_str(), path.c_str()) < 0) {
		int e = errno;
		::unlink(tmp.c_str());
		throw Error("rename " + tmp + " to", path, e);
	}
}

Fd open_lock_file(const std::string &path, mode_t dir_mode)
{
	auto slash = path.rfind('/');
	if (slash != std::string::npos && slash > 0) {
		const std::string dir = path.substr(0, slash);
		mkdir_p(dir, dir_mode);
		check_lock_dir(dir);
	}
	for (int round = 0; round < 10; round++) {
		// O_CREAT without O_EXCL: an existing file is used, a symbolic
		// link (O_NOFOLLOW) is not.
		Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
		if (!fd) {
			if (errno == ELOOP)
				throw Error("lock file " + path +
					    " is a symbolic link: refused (remove it)");
			throw_errno("open lock file", path);
		}
		struct stat st = {};
		if (::fstat(fd.get(), &st) < 0)
			throw_errno("stat", path);
		if (std::string problem = trust_problem(st, Trust::LockFile); !problem.empty())
			throw Error("lock file " + path + ": " + problem +
				    ": another user may hold it; refused (remove it)");
		// A 0600 file of root's no other user can open, by this name or
		// another (a hard link made with fs.protected_hardlinks=0):
		// used whatever its link count, and never replaced.
		if (!(st.st_mode & (S_IRWXG | S_IRWXO)))
			return fd;
		replace_open_lock_file(path);
	}
	throw Error("lock file " + path + " keeps changing: refused");
}

// The file at path is still the one fd has open.
bool still_at_path(int fd, const std::string &path)
{
	struct stat a = {}, b = {};
	if (::fstat(fd, &a) < 0 || ::lstat(path.c_str(), &b) < 0)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// SIGINT and SIGTERM, blocked for as long as a lock is waited for and
// taken by the wait itself: a command waiting for a lock has done nothing
// yet, and ends with an error rather than hang on.
class InterruptibleWait {
public:
	InterruptibleWait()
	{
		sigemptyset(&set_);
		sigaddset(&set_, SIGINT);
		sigaddset(&set_, SIGTERM);
		pthread_sigmask(SIG_BLOCK, &set_, &old_);
	}
	~InterruptibleWait() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
	InterruptibleWait(const InterruptibleWait &) = delete;
	InterruptibleWait &operator=(const InterruptibleWait &) = delete;

	// Sleeps for ms; the signal that cut it short, or 0.
	int sleep(std::chrono::milliseconds ms)
	{
		timespec ts = {static_cast<time_t>(ms.count() / 1000),
			       static_cast<long>(ms.count() % 1000) * 1000000};
		int sig = ::sigtimedwait(&set_, nullptr, &ts);
		return sig > 0 ? sig : 0;
	}

private:
	sigset_t set_, old_;
};

constexpr std::chrono::milliseconds kLockPoll{50};

std::string seconds_str(std::chrono::milliseconds ms)
{
	char buf[32];
	std::snprintf(buf, sizeof(buf), ms.count() % 1000 ? "%.1f" : "%.0f", ms.count() / 1000.0);
	return buf;
}

} // namespace

std::optional<FileLock> FileLock::lock(const std::string &path, mode_t dir_mode,
				       std::optional<std::chrono::milliseconds> wait)
{
	using clock = std::chrono::steady_clock;
	const auto deadline = clock::now() + wait.value_or(std::chrono::milliseconds(0));
	std::optional<InterruptibleWait> sigs;
	if (wait)
		sigs.emplace();
	bool told = false;
	for (int round = 0; round < 100; round++) {
		Fd fd = open_lock_file(path, dir_mode);
		for (;;) {
			if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
				break;
			if (errno == EINTR)
				continue;
			if (errno != EWOULDBLOCK)
				throw_errno("flock", path);
			if (!wait)
				return std::nullopt;
			if (!told) {
				log_verbose("waiting for the lock " + path + ", held by " +
					    describe_lock_holders(path));
				told = true;
			}
			if (clock::now() >= deadline)
				throw Error("lock " + path + " still held by " +
					    describe_lock_holders(path) + " after " +
					    seconds_str(*wait) + " s (--lock-wait)");
			if (int sig = sigs->sleep(kLockPoll))
				throw Error(std::string("interrupted by ") +
					    (sig == SIGINT ? "SIGINT" : "SIGTERM") +
					    " while waiting for the lock " + path + " (held by " +
					    describe_lock_holders(path) + ")");
			// Replaced while we waited (an older kvmxdp's file): wait
			// on the new one.
			if (!still_at_path(fd.get(), path))
				break;
		}
		if (still_at_path(fd.get(), path))
			return FileLock(path, std::move(fd));
		// Locked a file that has been replaced or removed meanwhile: the
		// lock protects nothing; the file at path now is the lock.
	}
	throw Error("lock " + path + " keeps being replaced: refused");
}

FileLock FileLock::acquire(const std::string &path, std::chrono::milliseconds wait, mode_t dir_mode)
{
	return std::move(*lock(path, dir_mode, wait));
}

std::optional<FileLock> FileLock::try_acquire(const std::string &path, mode_t dir_mode)
{
	return lock(path, dir_mode, std::nullopt);
}

std::optional<FileLock> FileLock::try_acquire_dir(const DirFd &dir)
{
	// An open file description of its own: a lock taken on a dup of
	// dir.fd would be released with whatever else shares it.
	Fd fd(::openat(dir.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!fd)
		throw_errno("open directory", dir.path);
	struct stat st = {};
	if (::fstat(fd.get(), &st) < 0)
		throw_errno("stat", dir.path);
	if (std::string problem = trust_problem(st, Trust::LockedDir); !problem.empty())
		throw Error("directory " + dir.path + ": " + problem +
			    ": refused (it must be root's, mode 0700)");
	for (;;) {
		if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
			return FileLock(dir.path, std::move(fd));
		if (errno == EWOULDBLOCK)
			return std::nullopt;
		if (errno != EINTR)
			throw_errno("flock", dir.path);
	}
}

std::vector<LockHolder> LockHolder::of(const std::string &path)
{
	struct stat st = {};
	if (::lstat(path.c_str(), &st) < 0)
		return {};
	return of_file(st);
}

std::vector<LockHolder> LockHolder::of(const DirFd &dir)
{
	struct stat st = {};
	if (::fstat(dir.fd.get(), &st) < 0)
		return {};
	return of_file(st);
}

std::vector<LockHolder> LockHolder::of_file(const struct stat &st)
{
	std::vector<LockHolder> out;
	for (pid_t pid : flock_pids(st)) {
		// The pidfd first: what is checked next is then either the
		// process it refers to or, if that one exited, one it does
		// not refer to (and whose signals fail with ESRCH).
		Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
		if (!pidfd)
			continue;
		auto uid = process_euid(pid);
		if (!uid || (*uid != 0 && *uid != ::geteuid()))
			continue;
		if (!process_holds_flock(pid, st) || !runs_kvmxdp(pid))
			continue;
		out.push_back(LockHolder(pid, std::move(pidfd)));
	}
	return out;
}

bool LockHolder::signal(int sig) const
{
	return ::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) == 0;
}

bool LockHolder::wait_exit(std::chrono::milliseconds timeout) const
{
	// A pidfd polls readable once its process has exited (Linux 5.3).
	pollfd p = {pidfd_.get(), POLLIN, 0};
	int n;
	do
		n = ::poll(&p, 1, static_cast<int>(timeout.count()));
	while (n < 0 && errno == EINTR);
	return n > 0;
}

std::string describe_lock_holders(const std::string &path)
{
	struct stat st = {};
	std::string out;
	if (::lstat(path.c_str(), &st) == 0)
		for (pid_t pid : flock_pids(st)) {
			std::string name = process_name(pid);
			out += (out.empty() ? "pid " : ", pid ") + std::to_string(pid) +
			       (name.empty() ? "" : " (" + name + ")");
		}
	return out.empty() ? "another process" : out;
}

std::optional<PidLock> PidLock::try_acquire(const std::string &path)
{
	auto lock = FileLock::try_acquire(path, 0700);
	if (!lock)
		return std::nullopt;
	std::string pid = std::to_string(::getpid()) + "\n";
	if (::ftruncate(lock->fd(), 0) < 0 || ::pwrite(lock->fd(), pid.data(), pid.size(), 0) < 0)
		throw_errno("write pid to", path);
	return PidLock(std::move(*lock));
}

std::optional<pid_t> PidLock::holder(const std::string &path)
{
	auto holders = LockHolder::of(path);
	if (!holders.empty())
		return holders.front().pid();
	// Nobody we can verify: a holder we cannot see (another pid
	// namespace) is believed only on a file no other user could have
	// opened, under a name no other user could have replaced.
	Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
	if (!fd)
		return std::nullopt;
	struct stat st = {};
	if (::fstat(fd.get(), &st) < 0 || !trust_problem(st, Trust::LockFile).empty() ||
	    (st.st_mode & (S_IRWXG | S_IRWXO)))
		return std::nullopt;
	auto slash = path.rfind('/');
	if (slash != std::string::npos &&
	    !lock_dir_problem(slash ? path.substr(0, slash) : "/").empty())
		return std::nullopt;
	// A shared lock succeeds only when no daemon holds the exclusive one.
	if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0)
		return std::nullopt;
	return pid_t{0}; // held by a process we cannot see
}

} // namespace kvmxdp
