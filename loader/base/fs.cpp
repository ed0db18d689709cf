// SPDX-License-Identifier: GPL-2.0
#include "base/fs.hpp"

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

std::string pin_dir_for(const std::string &bpffs, const std::string &bridge)
{
	std::string name = bridge;
	for (char &c : name)
		if (c == '.')
			c = ':';
	std::string base = bpffs;
	while (base.size() > 1 && base.back() == '/')
		base.pop_back();
	return base + "/kvmxdp/" + name;
}

std::string pin_path(const std::string &pin_dir, const std::string &map_name)
{
	return pin_dir + "/" + map_name;
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
