// SPDX-License-Identifier: GPL-2.0
#include "control/host_access.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kernel/bpf_objects.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/rollback.hpp"
#include "kvmxdp/abi.h"
#include "kvmxdp_host.skel.h"
#include "kernel/maps.hpp"
#include "kernel/sockets.hpp"

namespace kvmxdp {
namespace {

struct HookSpec {
	const char *prog;
	bpf_attach_type type;
	const char *hook; // as bpftool cgroup show names it
	const char *pin;  // link pin in the instance's pin directory
};

constexpr HookSpec kHooks[] = {
	{"kvx_host_conn4", BPF_CGROUP_INET4_CONNECT, "cgroup/connect4", "link_host_connect4"},
	{"kvx_host_send4", BPF_CGROUP_UDP4_SENDMSG, "cgroup/sendmsg4", "link_host_sendmsg4"},
	{"kvx_host_recv4", BPF_CGROUP_UDP4_RECVMSG, "cgroup/recvmsg4", "link_host_recvmsg4"},
	{"kvx_host_peer4", BPF_CGROUP_INET4_GETPEERNAME, "cgroup/getpeername4",
	 "link_host_peername4"},
};

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

// An fd of the cgroup v2 root.  `ip netns exec` remounts /sys, which hides
// /sys/fs/cgroup: then a cgroup2 is mounted on a private temporary
// directory just long enough to open it (the fd keeps the cgroup).
Fd open_cgroup2_root(const std::string &run_dir, std::string &why)
{
	if (auto mnt = cgroup2_root_mount()) {
		Fd fd(::open(mnt->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!fd)
			why = "cannot open the cgroup v2 root " + *mnt + ": " + std::strerror(errno);
		return fd;
	}
	mkdir_p(run_dir, 0755);
	std::string dir = run_dir + "/cgroup2.XXXXXX";
	if (!::mkdtemp(dir.data())) {
		why = "cannot create a mount point in " + run_dir + ": " + std::strerror(errno);
		return Fd();
	}
	Fd fd;
	if (::mount("cgroup2", dir.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		    nullptr) == 0) {
		fd.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!fd)
			why = "cannot open the cgroup v2 root: " + std::string(std::strerror(errno));
		::umount2(dir.c_str(), MNT_DETACH);
	} else {
		why = "no cgroup v2 hierarchy (mount -t cgroup2: " +
		      std::string(std::strerror(errno)) + ")";
	}
	::rmdir(dir.c_str());
	return fd;
}

struct HostSkel {
	kvmxdp_host *s = kvmxdp_host__open();
	HostSkel()
	{
		if (!s)
			throw_errno("open BPF object", "kvmxdp_host");
	}
	~HostSkel() { kvmxdp_host__destroy(s); }
	HostSkel(const HostSkel &) = delete;
	HostSkel &operator=(const HostSkel &) = delete;
};

} // namespace

std::string host_hooks_attach(const Skeleton &tc, const std::string &pin_dir,
			      const std::string &run_dir, Rollback &rb)
{
	auto cookie = netns_cookie();
	if (!cookie)
		return "the kernel cannot tell network namespaces apart to BPF "
		       "(SO_NETNS_COOKIE needs Linux 5.14)";
	std::string why;
	Fd cg = open_cgroup2_root(run_dir, why);
	if (!cg)
		return why;

	HostSkel hs;
	hs.s->rodata->host_netns_cookie = *cookie;
	const std::string rev_pin = pin_path(pin_dir, KVX_MAP_HOSTREV);
	bool rev_pinned = false;
	bpf_map *m;
	bpf_object__for_each_map(m, hs.s->obj)
	{
		std::string name = bpf_map__name(m);
		if (name.find('.') != std::string::npos)
			continue; // .rodata: ours
		if (name == KVX_MAP_HOSTREV) {
			if (::access(rev_pin.c_str(), F_OK) != 0)
				continue;
			Fd fd = open_pinned(rev_pin);
			MapInfo have = map_info(fd.get(), rev_pin);
			// Another layout (a future kvmxdp's): start a fresh one.
			if (have.key_size != bpf_map__key_size(m) ||
			    have.value_size != bpf_map__value_size(m) ||
			    have.type != bpf_map__type(m)) {
				::unlink(rev_pin.c_str());
				continue;
			}
			check_libbpf(bpf_map__reuse_fd(m, fd.get()), "reuse map", rev_pin);
			rev_pinned = true;
			continue;
		}
		// Every other map is the datapath's, the very same one.
		check_libbpf(bpf_map__reuse_fd(m, tc.map_fd(name.c_str())), "reuse map", name);
	}
	check_libbpf(kvmxdp_host__load(hs.s), "load BPF object", "kvmxdp_host");
	if (!rev_pinned) {
		check_libbpf(bpf_obj_pin(bpf_map__fd(hs.s->maps.kvx_hostrev), rev_pin.c_str()),
			     "pin map", rev_pin);
		rb.add("pin " + rev_pin, [rev_pin] { ::unlink(rev_pin.c_str()); });
	}

	for (const HookSpec &h : kHooks) {
		bpf_program *p = bpf_object__find_program_by_name(hs.s->obj, h.prog);
		int prog_fd = bpf_program__fd(p);
		const std::string pin = pin_path(pin_dir, h.pin);
		if (::access(pin.c_str(), F_OK) == 0) {
			// Resume or upgrade: swap the program under the live link.
			Fd link(bpf_obj_get(pin.c_str()));
			if (!link)
				throw_errno("open pinned link", pin);
			check_libbpf(bpf_link_update(link.get(), prog_fd, nullptr),
				     "replace program of link", pin);
			continue;
		}
		Fd link(bpf_link_create(prog_fd, cg.get(), h.type, nullptr));
		if (!link) {
			int err = errno;
			// Nothing of ours is attached yet at the first hook; a
			// later failure rolls back the earlier ones.
			if (&h == &kHooks[0] && (err == EINVAL || err == EOPNOTSUPP || err == EPERM))
				return std::string("cannot attach ") + h.hook +
				       " programs to the cgroup v2 root: " + std::strerror(err);
			throw_errno(std::string("attach ") + h.hook, "the cgroup v2 root");
		}
		check_libbpf(bpf_obj_pin(link.get(), pin.c_str()), "pin link", pin);
		// Unpinning drops the last reference once our fd is closed:
		// that detaches the program.
		rb.add("link " + pin, [pin] { ::unlink(pin.c_str()); });
	}
	return "";
}

std::vector<HostHook> host_hooks_query(const std::string &pin_dir)
{
	std::vector<HostHook> out;
	for (const HookSpec &h : kHooks) {
		const std::string pin = pin_path(pin_dir, h.pin);
		Fd link(bpf_obj_get(pin.c_str()));
		if (!link)
			continue;
		HostHook hh;
		hh.hook = h.hook;
		bpf_link_info info{};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(link.get(), &info, &len) == 0) {
			hh.prog_id = info.prog_id;
			hh.prog = prog_name_by_id(info.prog_id);
		}
		out.push_back(hh);
	}
	return out;
}

} // namespace kvmxdp
