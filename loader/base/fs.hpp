// SPDX-License-Identifier: GPL-2.0
// File-system helpers: bpffs, pin directory naming, locks, atomic writes.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "base/fd.hpp"

namespace kvmxdp {

// Trims trailing slashes so that "/x/" and "/x" name one directory.
std::string normalize_dir(const std::string &dir);

void mkdir_p(const std::string &path, mode_t mode = 0755);

// statfs f_type == BPF_FS_MAGIC.
bool is_bpffs(const std::string &path);
// Mounts a bpffs at path (mkdir -p first) unless one is there already.
// Returns true if it mounted one.
bool ensure_bpffs(const std::string &path);
// True when this process runs in a mount namespace other than init's
// (`ip netns exec` makes one): a bpffs mounted there vanishes with us.
bool in_private_mount_ns();

// <bpffs>/kvmxdp/<bridge with '.' written as ':'>: bpffs refuses names with
// dots, and ':' cannot occur in an interface name, so the mapping is
// injective (docs/pitfalls.md, dots-in-pin-paths).
std::string pin_dir_for(const std::string &bpffs, const std::string &bridge);
std::string pin_path(const std::string &pin_dir, const std::string &map_name);

// Lock/pid file of the daemon of one instance.  Test runs put many
// instances with the same bridge name in different netns, each with its
// own bpffs, so the key covers both.
std::string pid_file_for(const std::string &run_dir, const std::string &bpffs,
			 const std::string &bridge);

// Writes to a temporary file in the same directory, fsyncs it and renames
// it over path: readers see the old or the new content, never a mix.
void atomic_write_file(const std::string &path, const std::string &content, mode_t mode = 0644);
std::optional<std::string> read_file(const std::string &path);

// An exclusive flock(2) held for the lifetime of the object.
class FileLock {
public:
	// Blocks until the lock is ours.
	static FileLock acquire(const std::string &path);
	// Returns nullopt if another process holds it.
	static std::optional<FileLock> try_acquire(const std::string &path);

	const std::string &path() const { return path_; }
	int fd() const { return fd_.get(); }

private:
	FileLock(std::string path, Fd fd)
		: path_(std::move(path))
		, fd_(std::move(fd))
	{
	}
	std::string path_;
	Fd fd_;
};

// Daemon liveness: the daemon holds an flock on its pid file for its
// lifetime and writes its pid into it, so a crashed daemon never looks
// alive (unlike a bare pid file).
class PidLock {
public:
	static std::optional<PidLock> try_acquire(const std::string &path);
	// The pid of the process holding path's lock, if any.
	static std::optional<pid_t> holder(const std::string &path);

private:
	explicit PidLock(FileLock lock)
		: lock_(std::move(lock))
	{
	}
	FileLock lock_;
};

} // namespace kvmxdp
