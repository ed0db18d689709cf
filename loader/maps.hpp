// SPDX-License-Identifier: GPL-2.0
// Typed access to the pinned maps through their fds.
#pragma once

#include <bpf/bpf.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"
#include "fd.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

struct MapInfo {
	uint32_t type = 0;
	uint32_t key_size = 0;
	uint32_t value_size = 0;
	uint32_t max_entries = 0;
	std::string name;
};

MapInfo map_info(int fd, const std::string &what);
// bpf_obj_get; throws naming the path.
Fd open_pinned(const std::string &path);

// Every (key, value) of a hash map.  Keys are collected first: deleting
// while walking with get_next_key restarts the walk on some kernels.
template <typename K, typename V>
std::vector<std::pair<K, V>> dump_hash(int fd)
{
	std::vector<std::pair<K, V>> out;
	K key{}, next{};
	K *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		V val{};
		if (bpf_map_lookup_elem(fd, &next, &val) == 0)
			out.emplace_back(next, val);
		key = next;
		prev = &key;
	}
	return out;
}

template <typename K>
uint32_t count_entries(int fd)
{
	uint32_t n = 0;
	K key{}, next{};
	K *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		n++;
		key = next;
		prev = &key;
	}
	return n;
}

kvx_cfg read_cfg(int cfg_fd);
void write_cfg(int cfg_fd, const kvx_cfg &cfg);
// Sums the per-CPU counters: index = enum kvx_reason.
std::vector<kvx_stat> read_stats(int stats_fd);

} // namespace kvmxdp
