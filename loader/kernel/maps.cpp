// SPDX-License-Identifier: GPL-2.0
#include "kernel/maps.hpp"

#include <bpf/libbpf.h>

namespace kvmxdp {

MapInfo map_info(int fd, const std::string &what)
{
	bpf_map_info info{};
	__u32 len = sizeof(info);
	check_libbpf(bpf_obj_get_info_by_fd(fd, &info, &len), "get info of map", what);
	MapInfo m;
	m.type = info.type;
	m.key_size = info.key_size;
	m.value_size = info.value_size;
	m.max_entries = info.max_entries;
	m.name = info.name;
	return m;
}

Fd open_pinned(const std::string &path)
{
	int fd = bpf_obj_get(path.c_str());
	check_libbpf(fd, "open pinned map", path);
	return Fd(fd);
}

kvx_cfg read_cfg(int cfg_fd)
{
	__u32 key = 0;
	kvx_cfg cfg{};
	check_libbpf(bpf_map_lookup_elem(cfg_fd, &key, &cfg), "read", KVX_MAP_CFG);
	return cfg;
}

void write_cfg(int cfg_fd, const kvx_cfg &cfg)
{
	__u32 key = 0;
	check_libbpf(bpf_map_update_elem(cfg_fd, &key, &cfg, BPF_ANY), "write", KVX_MAP_CFG);
}

std::vector<kvx_stat> read_stats(int stats_fd)
{
	int ncpu = check_libbpf(libbpf_num_possible_cpus(), "count", "possible CPUs");
	std::vector<kvx_stat> percpu(static_cast<size_t>(ncpu));
	std::vector<kvx_stat> out(KVX_R_MAX);
	for (__u32 r = 0; r < KVX_R_MAX; r++) {
		// Per-CPU values come as an array of 8-byte-rounded slots;
		// sizeof(kvx_stat) is already a multiple of 8.
		check_libbpf(bpf_map_lookup_elem(stats_fd, &r, percpu.data()), "read",
			     KVX_MAP_STATS);
		for (const auto &s : percpu) {
			out[r].packets += s.packets;
			out[r].bytes += s.bytes;
		}
	}
	return out;
}

} // namespace kvmxdp
