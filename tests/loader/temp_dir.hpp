// SPDX-License-Identifier: GPL-2.0
// A private temporary directory for a test, removed with its contents, and
// a bpffs mounted in one.
#pragma once

#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kvmxdp::test {

class TempDir {
public:
	TempDir()
	{
		char tmpl[] = "/tmp/kvx-unit-XXXXXX";
		path_ = ::mkdtemp(tmpl);
	}
	~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

// A bpffs mounted on a fresh temporary directory, as by hand (no mode=:
// 1777), unmounted before the directory goes.  Needs CAP_SYS_ADMIN: the
// caller skips without it and fails when mounted() is false with it.
class TempBpffs {
public:
	TempBpffs()
		: path_(dir_.path() + "/bpffs")
	{
		mounted_ = ::mkdir(path_.c_str(), 0700) == 0 &&
			   ::mount("bpf", path_.c_str(), "bpf", 0, nullptr) == 0;
		err_ = mounted_ ? 0 : errno;
	}
	~TempBpffs()
	{
		if (mounted_)
			::umount(path_.c_str());
	}
	TempBpffs(const TempBpffs &) = delete;
	TempBpffs &operator=(const TempBpffs &) = delete;
	// The temporary directory the bpffs is mounted in (for other files).
	const std::string &dir() const { return dir_.path(); }
	const std::string &path() const { return path_; }
	bool mounted() const { return mounted_; }
	// Why it is not mounted.
	std::string error() const { return "mount bpffs on " + path_ + ": " + std::strerror(err_); }

private:
	TempDir dir_;
	std::string path_;
	bool mounted_ = false;
	int err_ = 0;
};

} // namespace kvmxdp::test
