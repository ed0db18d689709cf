// SPDX-License-Identifier: GPL-2.0
#include "kernel/skel.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>

#include "base/fd.hpp"

namespace kvmxdp {

bpf_map *SkelObject::map(const char *name) const
{
	bpf_map *m = bpf_object__find_map_by_name(obj_, name);
	if (!m)
		throw Error("find map", name, ENOENT);
	return m;
}

std::vector<std::string> SkelObject::map_names() const
{
	std::vector<std::string> out;
	bpf_map *m;
	bpf_object__for_each_map(m, obj_) {
		if (!bpf_map__is_internal(m))
			out.push_back(bpf_map__name(m));
	}
	return out;
}

int SkelObject::map_fd(const char *name) const
{
	return check_libbpf(bpf_map__fd(map(name)), "get fd of map", name);
}

MapInfo SkelObject::map_spec(const char *name) const
{
	bpf_map *m = map(name);
	return {bpf_map__type(m),
		bpf_map__key_size(m),
		bpf_map__value_size(m),
		bpf_map__max_entries(m),
		name,
		bpf_map__map_flags(m)};
}

int SkelObject::prog_fd(const char *name) const
{
	bpf_program *p = bpf_object__find_program_by_name(obj_, name);
	if (!p)
		throw Error("find program", name, ENOENT);
	return check_libbpf(bpf_program__fd(p), "get fd of program", name);
}

void SkelObject::set_max_entries(const char *name, uint32_t n)
{
	check_libbpf(bpf_map__set_max_entries(map(name), n), "set max_entries of map", name);
}

void SkelObject::reuse_map(const char *name, int fd)
{
	check_libbpf(bpf_map__reuse_fd(map(name), fd), "reuse pinned map", name);
}

void SkelObject::reuse_maps_from(const SkelObject &from, const std::vector<std::string> &except)
{
	for (const std::string &name : map_names()) {
		if (std::find(except.begin(), except.end(), name) != except.end())
			continue;
		check_libbpf(bpf_map__reuse_fd(map(name.c_str()), from.map_fd(name.c_str())),
			     "reuse map", name);
	}
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
