// SPDX-License-Identifier: GPL-2.0
// File-system helpers: bpffs, pin directory naming, locks and their
// holders, atomic writes.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

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
// The last component of pin_dir_for.
std::string pin_dir_name(const std::string &bridge);

// Trust: what kvmxdp may rely on, judged on an fstat by one policy for
// the pin path and for the locks (loader/base/README.md, "Pin
// directories").  What kvmxdp finds under <bpffs>/kvmxdp/ steers a root
// process and the datapath, and detach unlinks every entry of a pin
// directory, so a name is resolved once: each level is opened from the fd
// of the one above (openat O_DIRECTORY|O_NOFOLLOW), checked on its fd, and
// used through that fd from then on (the *at() calls), so a symbolic link
// put in place after the check is never followed.  Never a symbolic link;
// owned by root (or by us, a process with the capabilities but another
// uid); and:
//   Bpffs      a bpffs directory writable by group or others only with the
//              sticky bit (1777, the mode of a bpffs mounted without mode=)
//   Dir        kvmxdp/, <bridge>/: directories writable by nobody else;
//              attach makes them 0700
//   Pin        pins: bpffs objects writable by nobody else
//   LockDir    the directory of a lock file: writable by nobody else, not
//              even with the sticky bit (in /tmp a user could make the
//              lock file, or the names kvmxdp writes beside it, first)
//   LockFile   a lock file: a regular file writable by nobody else (one
//              others could open is replaced: see FileLock)
//   LockedDir  a directory locked as itself (the daemon's pin directory):
//              no access for anybody else at all (flock needs only an fd)
//   File       a file whose content steers root (the config): a regular
//              file writable by nobody else
enum class Trust {
	Bpffs,
	Dir,
	Pin,
	LockDir,
	LockFile,
	LockedDir,
	File,
};
// What disqualifies st as that, "" when nothing does.
std::string trust_problem(const struct stat &st, Trust what);

// A directory held open; path names it in messages only.
struct DirFd {
	Fd fd;
	std::string path;

	std::string show(const std::string &name) const { return path + "/" + name; }
	// "/proc/self/fd/<fd>/<name>": an entry of this very directory, for
	// interfaces that take only a path (bpf_obj_pin).
	std::string via_fd(const std::string &name) const;
	// unlinkat of an entry; false (errno set) if it failed.
	bool unlink(const std::string &name) const;
	// The same directory on a new fd, for an owner that outlives this one.
	DirFd dup() const;
};
// "/proc/self/fd/<fd>": the object fd holds (an O_PATH fd of a pin, for
// bpf_obj_get).
std::string fd_path(int fd);

// The bpffs at path, checked; nullopt when path is not a bpffs.
std::optional<DirFd> open_bpffs(const std::string &path);
// parent/name, checked as Trust::Dir; made 0700 first if missing and
// create.  nullopt when missing and not create.
std::optional<DirFd> open_pin_subdir(const DirFd &parent, const std::string &name, bool create);

// <bpffs>/kvmxdp/<bridge>, every level held.
struct PinDir {
	DirFd bpffs, top, dir;
	std::string name; // dir's entry in top (pin_dir_name)
};
// nullopt when a level is missing and not create (nothing is pinned).
// Throws naming the path and what is wrong with it when a level fails the
// policy: nothing below it is looked at.
std::optional<PinDir> open_pin_dir(const std::string &bpffs, const std::string &bridge,
				   bool create);
// An entry of dir as an O_PATH|O_NOFOLLOW fd, checked as Trust::Pin;
// nullopt when there is none.
std::optional<Fd> open_pin_entry(const DirFd &dir, const std::string &name);
// The names in dir (without "." and "..").
std::vector<std::string> dir_entries(const DirFd &dir);
// Removes the pin directory, with its pins when pins is set, else only if
// it is empty; then <bpffs>/kvmxdp if empty (instances share it).  Throws
// naming the first entry that cannot go.
void remove_pin_dir(const PinDir &pd, bool pins);

// Lock/pid file of the daemon of one instance.  Test runs put many
// instances with the same bridge name in different netns, each with its
// own bpffs, so the key covers both.
std::string pid_file_for(const std::string &run_dir, const std::string &bpffs,
			 const std::string &bridge);

// Writes to a temporary file in the same directory, fsyncs it and renames
// it over path: readers see the old or the new content, never a mix.
void atomic_write_file(const std::string &path, const std::string &content, mode_t mode = 0644);
// trusted: the file must pass Trust::File (checked on the open fd), else
// a ConfigError naming it and what is wrong.
// The most read_file takes before it gives up with an Error.
inline constexpr size_t kReadFileMax = size_t{64} << 20;
std::optional<std::string> read_file(const std::string &path, bool trusted = false);

// Locks.  flock(2) needs nothing but an open file descriptor, so a lock is
// exactly as private as its file: a lock file is 0600 and owned by root
// (or by us), in a directory no other user can write (sticky or not),
// opened with O_NOFOLLOW.  An existing lock file that is not ours is
// refused, one writable by other users too; one of ours that other users
// may read (0644: what kvmxdp made before) is replaced by a fresh 0600 one
// whoever holds it, since anybody may hold an fd of it, and with it the
// lock, for ever (an older kvmxdp still running loses its exclusion: stop
// it before the upgrade).  A 0600 file is used whatever its link count:
// no other user can open it by any name.
// After locking, the file must still be the one at the path: a lock on a
// file that was replaced or removed meanwhile protects nothing, and is
// taken again on the new one.
//
// A missing directory of a lock file is created with dir_mode.
class FileLock {
public:
	// Waits at most `wait` for the lock, then throws an Error naming the
	// file and its holder.  SIGINT and SIGTERM end the wait with an Error
	// (they are blocked and taken while waiting, whatever the caller's
	// mask), so that a command stuck behind a lock can be stopped before
	// it changed anything.
	static FileLock acquire(const std::string &path, std::chrono::milliseconds wait,
				mode_t dir_mode = 0700);
	// Returns nullopt if another process holds it.
	static std::optional<FileLock> try_acquire(const std::string &path, mode_t dir_mode = 0700);
	// The lock of a directory held open (Trust::LockedDir), on an open
	// file description of its own (openat "."): no path is resolved
	// again.  The daemon holds its pin directory's.  nullopt if another
	// process holds it.
	static std::optional<FileLock> try_acquire_dir(const DirFd &dir);

	const std::string &path() const { return path_; }
	int fd() const { return fd_.get(); }

private:
	FileLock(std::string path, Fd fd)
		: path_(std::move(path))
		, fd_(std::move(fd))
	{
	}
	static std::optional<FileLock> lock(const std::string &path, mode_t dir_mode,
					    std::optional<std::chrono::milliseconds> wait);
	std::string path_;
	Fd fd_;
};

// A process holding an exclusive flock on a file or directory, as a pidfd.
// /proc/locks names the pid that took each lock; the pid alone is not the
// process (it may have exited and the number gone to another one), so the
// pidfd is opened first and the process behind the number is then checked
// to hold the lock itself (a "lock:" line for the file in its
// /proc/PID/fdinfo), to run as our user and to run this kvmxdp (its
// /proc/PID/exe: a setuid-root program run with a user's fd is no holder
// to signal).  A check that reads another
// process (the pidfd's exited meanwhile) leaves a pidfd whose signals fail:
// nothing but the verified holder is ever signalled.
class LockHolder {
public:
	// The verified holders of path's lock (none: nobody holds it, or only
	// processes we cannot see: other users, other pid namespaces).
	static std::vector<LockHolder> of(const std::string &path);
	// The same for a directory held open (no path resolved again).
	static std::vector<LockHolder> of(const DirFd &dir);

	pid_t pid() const { return pid_; }
	// pidfd_send_signal; false once the process is gone (reaped).
	bool signal(int sig) const;
	// Until the process exits (true) or the timeout passes (false).
	bool wait_exit(std::chrono::milliseconds timeout) const;

private:
	static std::vector<LockHolder> of_file(const struct stat &st);
	LockHolder(pid_t pid, Fd pidfd)
		: pid_(pid)
		, pidfd_(std::move(pidfd))
	{
	}
	pid_t pid_;
	Fd pidfd_;
};

// "pid 1234 (kvmxdp)[, ...]" for the processes /proc/locks says hold an
// flock on path's file, "another process" when none is visible; for
// messages only (never signal by it: LockHolder).
std::string describe_lock_holders(const std::string &path);

// Daemon liveness: the daemon holds an flock on its pid file for its
// lifetime and writes its pid into it, so a crashed daemon never looks
// alive (unlike a bare pid file).  The run directory is made 0700.
class PidLock {
public:
	static std::optional<PidLock> try_acquire(const std::string &path);
	// The pid of the process holding path's lock (0: held, by a process
	// we cannot see), if any.  From the lock, never from the file's text.
	// A lock on a file other users could open or replace (a leftover
	// 0644 pid file, one not ours, a link, one in a directory others may
	// write) is believed only of a verified holder (LockHolder): anybody
	// may hold an fd of it, and so its lock.
	static std::optional<pid_t> holder(const std::string &path);

private:
	explicit PidLock(FileLock lock)
		: lock_(std::move(lock))
	{
	}
	FileLock lock_;
};

} // namespace kvmxdp
