// SPDX-License-Identifier: GPL-2.0
#include "base/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "base/error.hpp"

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

[[noreturn]] void refuse_level(const std::string &path, const std::string &problem, PinLevel level)
{
	const char *remedy =
		level == PinLevel::Bpffs ?
			"mount it with mode=0700, or give kvmxdp a bpffs of its own (--bpffs)" :
		level == PinLevel::Dir ?
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
		if (std::string p = pin_level_problem(st, PinLevel::Dir); !p.empty())
			return p;
	return Error("open", path, err).what();
}

// fstat on fd, then the policy of its level: refused naming path.
void check_level(int fd, const std::string &path, PinLevel level)
{
	struct stat st = {};
	if (::fstat(fd, &st) < 0)
		throw_errno("stat", path);
	if (std::string problem = pin_level_problem(st, level); !problem.empty())
		refuse_level(path, problem, level);
}

} // namespace

std::string pin_level_problem(const struct stat &st, PinLevel level)
{
	if (S_ISLNK(st.st_mode))
		return "a symbolic link (kvmxdp does not follow links here)";
	if (level == PinLevel::Pin ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
		return level == PinLevel::Pin ? "not a pinned BPF object" : "not a directory";
	if (st.st_uid != 0)
		return "owned by uid " + std::to_string(st.st_uid) + ", not root";
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		// A sticky directory lets others add entries but not remove or
		// rename root's (the VFS's may_delete): kvmxdp/ below it stays
		// root's once made, and is checked itself.
		if (level == PinLevel::Bpffs && (st.st_mode & S_ISVTX))
			return "";
		return "writable by group or others (mode " + mode_str(st.st_mode) +
		       (level == PinLevel::Bpffs ? ", no sticky bit)" : ")");
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
			refuse_level(p, what_is(AT_FDCWD, p, p, errno), PinLevel::Bpffs);
		throw_errno("open", p);
	}
	struct statfs sfs = {};
	if (::fstatfs(fd.get(), &sfs) < 0)
		throw_errno("statfs", p);
	if (static_cast<unsigned long>(sfs.f_type) != BPF_FS_MAGIC)
		return std::nullopt;
	check_level(fd.get(), p, PinLevel::Bpffs);
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
			refuse_level(path, what_is(parent.fd.get(), name, path, errno),
				     PinLevel::Dir);
		throw_errno("open", path);
	}
	check_level(fd.get(), path, PinLevel::Dir);
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
	check_level(fd.get(), path, PinLevel::Pin);
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
	// Other instances' directories keep it.
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
	Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
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

std::optional<std::string> read_file(const std::string &path)
{
	Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd) {
		if (errno == ENOENT)
			return std::nullopt;
		throw_errno("open", path);
	}
	std::string out;
	char buf[8192];
	for (;;) {
		ssize_t n = ::read(fd.get(), buf, sizeof(buf));
		if (n < 0)
			throw_errno("read", path);
		if (n == 0)
			break;
		out.append(buf, static_cast<size_t>(n));
	}
	return out;
}

namespace {

Fd open_lock_file(const std::string &path)
{
	auto slash = path.rfind('/');
	if (slash != std::string::npos && slash > 0)
		mkdir_p(path.substr(0, slash));
	Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
	if (!fd)
		throw_errno("open lock file", path);
	return fd;
}

} // namespace

FileLock FileLock::acquire(const std::string &path)
{
	Fd fd = open_lock_file(path);
	while (::flock(fd.get(), LOCK_EX) < 0) {
		if (errno != EINTR)
			throw_errno("flock", path);
	}
	return FileLock(path, std::move(fd));
}

std::optional<FileLock> FileLock::try_acquire(const std::string &path)
{
	Fd fd = open_lock_file(path);
	if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return std::nullopt;
		throw_errno("flock", path);
	}
	return FileLock(path, std::move(fd));
}

std::optional<PidLock> PidLock::try_acquire(const std::string &path)
{
	auto lock = FileLock::try_acquire(path);
	if (!lock)
		return std::nullopt;
	std::string pid = std::to_string(::getpid()) + "\n";
	if (::ftruncate(lock->fd(), 0) < 0 || ::pwrite(lock->fd(), pid.data(), pid.size(), 0) < 0)
		throw_errno("write pid to", path);
	return PidLock(std::move(*lock));
}

std::optional<pid_t> PidLock::holder(const std::string &path)
{
	Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return std::nullopt;
	// A shared lock succeeds only when no daemon holds the exclusive one.
	if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0)
		return std::nullopt;
	char buf[32] = {};
	ssize_t n = ::pread(fd.get(), buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return pid_t{0}; // locked, pid not written yet
	return static_cast<pid_t>(std::strtol(buf, nullptr, 10));
}

} // namespace kvmxdp
