// SPDX-License-Identifier: GPL-2.0
#include "control/host_access.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/rollback.hpp"
#include "kvmxdp/abi.h"
#include "kvmxdp_host.skel.h"
#include "kernel/cgroup.hpp"
#include "kernel/maps.hpp"
#include "kernel/skel.hpp"
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
	// IPv6 (NAT66's mappings).
	{"kvx_host_conn6", BPF_CGROUP_INET6_CONNECT, "cgroup/connect6", "link_host_connect6"},
	{"kvx_host_send6", BPF_CGROUP_UDP6_SENDMSG, "cgroup/sendmsg6", "link_host_sendmsg6"},
	{"kvx_host_recv6", BPF_CGROUP_UDP6_RECVMSG, "cgroup/recvmsg6", "link_host_recvmsg6"},
	{"kvx_host_peer6", BPF_CGROUP_INET6_GETPEERNAME, "cgroup/getpeername6",
	 "link_host_peername6"},
};

// The object's own maps (the reverse views), kept across restarts in their
// pins; every other map is the datapath's.
constexpr const char *kOwnMaps[] = {KVX_MAP_HOSTREV, KVX_MAP_HOSTREV6};

} // namespace

std::string host_hooks_attach(const SkelObject &tc, const DirFd &pins, const std::string &run_dir,
			      Rollback &rb)
{
	auto cookie = netns_cookie();
	if (!cookie)
		return "the kernel cannot tell network namespaces apart to BPF "
		       "(SO_NETNS_COOKIE needs Linux 5.14)";
	std::string why;
	Fd cg = open_cgroup2_root(run_dir, why);
	if (!cg)
		return why;

	Skel<kvmxdp_host> hs("kvmxdp_host");
	hs->rodata->host_netns_cookie = *cookie;
	// Undo steps run after our caller's fd of the directory may be gone.
	auto dir = std::make_shared<DirFd>(pins.dup());
	auto unpin = [dir](const std::string &name) { return [dir, name] { dir->unlink(name); }; };
	// kvx_hostrev and kvx_hostrev6 are this object's own, kept across
	// restarts in their pins; every other map is the datapath's, the very
	// same one.
	std::vector<std::string> fresh;
	for (const char *m : kOwnMaps) {
		bool reused = false;
		if (auto fd = get_pinned(pins, m)) {
			// Another layout (a future kvmxdp's): start a fresh one.
			if (same_layout(map_info(fd->get(), pins.show(m)), hs.map_spec(m))) {
				hs.reuse_map(m, fd->get());
				reused = true;
			} else {
				pins.unlink(m);
			}
		}
		if (!reused)
			fresh.push_back(m);
	}
	hs.reuse_maps_from(tc, {std::begin(kOwnMaps), std::end(kOwnMaps)});
	hs.load();
	for (const std::string &m : fresh) {
		pin_at(hs.map_fd(m.c_str()), pins, m);
		rb.add("pin " + pins.show(m), unpin(m));
	}

	for (const HookSpec &h : kHooks) {
		int prog_fd = hs.prog_fd(h.prog);
		if (auto link = get_pinned(pins, h.pin)) {
			// Resume or upgrade: swap the program under the live link.
			check_libbpf(bpf_link_update(link->get(), prog_fd, nullptr),
				     "replace program of link", pins.show(h.pin));
			continue;
		}
		Fd link(bpf_link_create(prog_fd, cg.get(), h.type, nullptr));
		if (!link) {
			int err = errno;
			// Nothing of ours is attached yet at the first hook; a
			// later failure rolls back the earlier ones.
			if (&h == &kHooks[0] &&
			    (err == EINVAL || err == EOPNOTSUPP || err == EPERM))
				return std::string("cannot attach ") + h.hook +
				       " programs to the cgroup v2 root: " + std::strerror(err);
			throw_errno(std::string("attach ") + h.hook, "the cgroup v2 root");
		}
		pin_at(link.get(), pins, h.pin);
		// Unpinning drops the last reference once our fd is closed:
		// that detaches the program.
		rb.add("link " + pins.show(h.pin), unpin(h.pin));
	}
	return "";
}

std::vector<HostHook> host_hooks_query(const DirFd &pins)
{
	std::vector<HostHook> out;
	for (const HookSpec &h : kHooks) {
		auto link = get_pinned(pins, h.pin);
		if (!link)
			continue;
		HostHook hh;
		hh.hook = h.hook;
		bpf_link_info info{};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(link->get(), &info, &len) == 0) {
			hh.prog_id = info.prog_id;
			hh.prog = prog_name_by_id(info.prog_id);
		}
		out.push_back(hh);
	}
	return out;
}

} // namespace kvmxdp
