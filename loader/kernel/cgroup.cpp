// SPDX-License-Identifier: GPL-2.0
#include "kernel/cgroup.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "base/fs.hpp"

namespace kvmxdp {

namespace {

// mountinfo escapes blanks and backslashes in paths as \ooo.
std::string unescape_mountinfo(const std::string &s)
{
	std::string out;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] == '\\' && i + 3 < s.size()) {
			out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
			i += 3;
		} else {
			out += s[i];
		}
	}
	return out;
}

// Where the root of the cgroup v2 hierarchy is mounted, if it is.
std::optional<std::string> cgroup2_root_mount()
{
	std::ifstream in("/proc/self/mountinfo");
	std::string line;
	while (std::getline(in, line)) {
		auto sep = line.find(" - ");
		if (sep == std::string::npos)
			continue;
		std::istringstream pre(line.substr(0, sep)), post(line.substr(sep + 3));
		std::string id, parent, dev, root, mnt, fstype;
		pre >> id >> parent >> dev >> root >> mnt;
		post >> fstype;
		if (fstype == "cgroup2" && root == "/")
			return unescape_mountinfo(mnt);
	}
	return std::nullopt;
}

} // namespace

// An fd of the cgroup v2 root.  `ip netns exec` remounts /sys, which hides
// /sys/fs/cgroup: then a cgroup2 is mounted on a private temporary
// directory just long enough to open it (the fd keeps the cgroup).
Fd open_cgroup2_root(const std::string &run_dir, std::string &why)
{
	if (auto mnt = cgroup2_root_mount()) {
		Fd fd(::open(mnt->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!fd)
			why = "cannot open the cgroup v2 root " + *mnt + ": " +
			      std::strerror(errno);
		return fd;
	}
	mkdir_p(run_dir, 0700);
	std::string dir = run_dir + "/cgroup2.XXXXXX";
	if (!::mkdtemp(dir.data())) {
		why = "cannot create a mount point in " + run_dir + ": " + std::strerror(errno);
		return Fd();
	}
	Fd fd;
	if (::mount("cgroup2", dir.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) ==
	    0) {
		fd.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!fd)
			why = "cannot open the cgroup v2 root: " +
			      std::string(std::strerror(errno));
		::umount2(dir.c_str(), MNT_DETACH);
	} else {
		why = "no cgroup v2 hierarchy (mount -t cgroup2: " +
		      std::string(std::strerror(errno)) + ")";
	}
	::rmdir(dir.c_str());
	return fd;
}

} // namespace kvmxdp
