// SPDX-License-Identifier: GPL-2.0
#include "kernel/bpf_objects.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "kvmxdp_tc.skel.h"

namespace kvmxdp {

Skeleton::Skeleton()
{
	skel_ = kvmxdp_tc__open();
	if (!skel_)
		throw_errno("open", "BPF skeleton kvmxdp_tc");
}

Skeleton::~Skeleton()
{
	kvmxdp_tc__destroy(skel_);
}

bpf_map *Skeleton::map(const char *name) const
{
	bpf_map *m = bpf_object__find_map_by_name(skel_->obj, name);
	if (!m)
		throw Error("find map", name, ENOENT);
	return m;
}

std::vector<std::string> Skeleton::map_names() const
{
	std::vector<std::string> out;
	bpf_map *m;
	bpf_object__for_each_map(m, skel_->obj) {
		std::string name = bpf_map__name(m);
		if (name.find('.') == std::string::npos)
			out.push_back(name);
	}
	return out;
}

int Skeleton::map_fd(const char *name) const
{
	return check_libbpf(bpf_map__fd(map(name)), "get fd of map", name);
}

int Skeleton::prog_fd(const char *name) const
{
	bpf_program *p = bpf_object__find_program_by_name(skel_->obj, name);
	if (!p)
		throw Error("find program", name, ENOENT);
	return check_libbpf(bpf_program__fd(p), "get fd of program", name);
}

void Skeleton::set_max_entries(const char *name, uint32_t n)
{
	check_libbpf(bpf_map__set_max_entries(map(name), n), "set max_entries of map", name);
}

void Skeleton::reuse_map(const char *name, int fd)
{
	check_libbpf(bpf_map__reuse_fd(map(name), fd), "reuse pinned map", name);
}

void Skeleton::load()
{
	int err = kvmxdp_tc__load(skel_);
	if (err == -EACCES || err == -EINVAL || err == -E2BIG)
		throw Error("load BPF programs: the kernel's verifier rejected them (-v shows "
			    "its log)",
			    "", -err);
	if (err < 0)
		throw Error("load BPF programs (is BPF available? kernel >= 5.15 with "
			    "CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF, run as root; -v shows "
			    "the libbpf/verifier log)",
			    "", -err);
}

namespace {

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point)
{
	bpf_tc_hook h{};
	h.sz = sizeof(h);
	h.ifindex = ifindex;
	h.attach_point = point;
	return h;
}

bpf_tc_opts make_opts()
{
	bpf_tc_opts o{};
	o.sz = sizeof(o);
	o.handle = kTcHandle;
	o.priority = kTcPriority;
	return o;
}

} // namespace

bool tc_hook_create(int ifindex, const std::string &ifname)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	int err = bpf_tc_hook_create(&h);
	if (err == -EEXIST)
		return false;
	check_libbpf(err, "create clsact qdisc on", ifname);
	return true;
}

void tc_hook_destroy(int ifindex, const std::string &ifname)
{
	// INGRESS|EGRESS deletes the qdisc itself; one of them alone would
	// only flush that hook's filters.
	auto h = make_hook(ifindex,
			   static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
	int err = bpf_tc_hook_destroy(&h);
	if (err == -ENOENT || err == -EINVAL || err == -ENODEV)
		return;
	check_libbpf(err, "delete clsact qdisc on", ifname);
}

void tc_attach(int ifindex, const std::string &ifname, int prog_fd)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	auto o = make_opts();
	o.prog_fd = prog_fd;
	o.flags = BPF_TC_F_REPLACE;
	check_libbpf(bpf_tc_attach(&h, &o), "attach TC ingress filter on", ifname);
}

bool tc_detach(int ifindex, const std::string &ifname)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	auto o = make_opts();
	int err = bpf_tc_detach(&h, &o);
	if (err == -ENOENT || err == -ENODEV || err == -EINVAL)
		return false;
	check_libbpf(err, "detach TC ingress filter from", ifname);
	return true;
}

std::optional<uint32_t> tc_query(int ifindex)
{
	auto h = make_hook(ifindex, BPF_TC_INGRESS);
	auto o = make_opts();
	if (bpf_tc_query(&h, &o) < 0)
		return std::nullopt;
	return o.prog_id;
}

std::string prog_name_by_id(uint32_t id)
{
	Fd fd(bpf_prog_get_fd_by_id(id));
	if (!fd)
		return "";
	bpf_prog_info info{};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) < 0)
		return "";
	return info.name;
}

} // namespace kvmxdp
