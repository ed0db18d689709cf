// SPDX-License-Identifier: GPL-2.0
// Typed access to BPF maps through their fds: facts, the one key walk and
// the batched dump, kvx_cfg and the counters, memory figures.
#pragma once

#include <bpf/bpf.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

struct MapInfo {
	uint32_t type = 0;
	uint32_t key_size = 0;
	uint32_t value_size = 0;
	uint32_t max_entries = 0;
	std::string name;
	uint32_t map_flags = 0; // BPF_F_*: BPF_F_MMAPABLE for the GC's counters
};

// What a reader needs of a map before it reads: keys and values are read
// into buffers of the ABI's sizes (a per-CPU map's value once per CPU).
struct MapLayout {
	uint32_t type = 0;
	uint32_t key_size = 0;
	uint32_t value_size = 0;
};

MapInfo map_info(int fd, const std::string &what);
// Same type, key and value size: one map's entries read right as the
// other's.
inline bool same_layout(const MapInfo &a, const MapInfo &b)
{
	return a.type == b.type && a.key_size == b.key_size && a.value_size == b.value_size;
}
// The first difference of have from want ("value size 64, this kvmxdp
// expects 72"), "" when the layouts are the same.
std::string layout_mismatch(const MapInfo &have, const MapLayout &want);
// "ABI version 3, this kvmxdp uses 2 (tables of 1..2)" when the tables of
// a kvx_cfg of that version are not this build's, else "".
std::string abi_version_mismatch(uint32_t version);

// A pinned object of dir (map or link) through an fd of the checked pin
// (open_pin_entry: root's, not a link), never through its name again;
// nullopt when name is not pinned there.
std::optional<Fd> get_pinned(const DirFd &dir, const std::string &name);
// The one way kvmxdp reads a pinned map: get_pinned, then the map's type,
// key and value size are checked against want before anything is read,
// and kvx_cfg's ABI version too.  Throws one line naming the pin and the
// mismatch; nullopt when name is not pinned.
std::optional<Fd> find_pinned(const DirFd &dir, const std::string &name, const MapLayout &want);
// Same; a missing pin is an error naming it.
Fd open_pinned(const DirFd &dir, const std::string &name, const MapLayout &want);
// bpf_obj_pin of fd as dir/name (through dir's fd).
void pin_at(int fd, const DirFd &dir, const std::string &name);

// The one walk over a map's keys (bpf_map_get_next_key, key_size bytes
// each): f(key) for every key.  Callers that delete collect the keys first
// (map_keys): deleting while walking restarts the walk on some kernels.
template <typename F>
void for_each_key(int fd, uint32_t key_size, F f)
{
	std::vector<unsigned char> key(key_size), next(key_size);
	const void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
		f(static_cast<const void *>(next.data()));
		key.swap(next);
		prev = key.data();
	}
}

template <typename K>
std::vector<K> map_keys(int fd)
{
	std::vector<K> out;
	for_each_key(fd, sizeof(K), [&](const void *k) {
		K key;
		std::memcpy(&key, k, sizeof(K));
		out.push_back(key);
	});
	return out;
}

// A hash map's entries (an array's are always max_entries), counted with
// BPF_MAP_LOOKUP_BATCH, bucket by bucket: a flow deleted meanwhile never
// restarts the count, as the key walk restarts when its current key goes
// (under churn, a walk of a busy table counted entries twice, past its
// capacity, and took as long as the churn lasted), and a scrape or a
// status costs one syscall per kMapReadBatch entries.  The walk where the
// kernel refuses batches (or for a per-CPU map).
uint32_t count_keys(int fd, uint32_t key_size);
template <typename K>
uint32_t count_entries(int fd)
{
	return count_keys(fd, sizeof(K));
}

// Every (key, value) of a hash map, two syscalls per entry (get_next_key,
// lookup).
template <typename K, typename V>
std::vector<std::pair<K, V>> dump_hash_walk(int fd)
{
	std::vector<std::pair<K, V>> out;
	for (const K &k : map_keys<K>(fd)) {
		V val{};
		if (bpf_map_lookup_elem(fd, &k, &val) == 0)
			out.emplace_back(k, val);
	}
	return out;
}

// Entries per BPF_MAP_LOOKUP_BATCH call of dump_hash.
constexpr uint32_t kMapReadBatch = 4096;

// Every (key, value) of a hash map with BPF_MAP_LOOKUP_BATCH: one syscall
// per kMapReadBatch entries.  The GC sweeps kvx_ct and kvx_bind every 5 s;
// entry by entry a sweep of 1M flows costs more than its interval, batched
// 13x less (bench/RESULTS.md, GC cost).  Falls back to the walk where the
// kernel refuses (ENOSPC: a bucket larger than the batch; EINVAL/ENOTSUPP).
template <typename K, typename V>
std::vector<std::pair<K, V>> dump_hash(int fd)
{
	std::vector<K> keys(kMapReadBatch);
	std::vector<V> vals(kMapReadBatch);
	std::vector<std::pair<K, V>> out;
	// The batch position: a bucket index for hash maps.
	uint64_t in = 0, next = 0;
	bool first = true;
	for (;;) {
		__u32 cnt = kMapReadBatch;
		int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &next, keys.data(),
					       vals.data(), &cnt, nullptr);
		int e = errno;
		first = false;
		if (err && e != ENOENT)
			return dump_hash_walk<K, V>(fd);
		for (__u32 i = 0; i < cnt; i++)
			out.emplace_back(keys[i], vals[i]);
		if (err) // ENOENT: the end of the map
			return out;
		in = next;
	}
}

// Memory the kernel charges for a map: fdinfo's "memlock:" (the kernel's
// map_mem_usage since 6.4), else nullopt.
std::optional<uint64_t> map_memlock_bytes(int fd);
// An estimate from the map's type, key/value sizes and max_entries, for
// kernels whose fdinfo has no memlock line (preallocated hash maps: the
// element array plus the bucket array).
uint64_t map_memory_estimate(const MapInfo &m, unsigned possible_cpus);

kvx_cfg read_cfg(int cfg_fd);
void write_cfg(int cfg_fd, const kvx_cfg &cfg);
kvx_cfg6 read_cfg6(int cfg6_fd);
void write_cfg6(int cfg6_fd, const kvx_cfg6 &cfg);
// kvx_portx (abi.h): KVX_PORTX_WORDS words, only those that differ are
// written; returns how many ports are set.
size_t write_portx(int portx_fd, const std::vector<uint64_t> &bits);
std::vector<uint64_t> read_portx(int portx_fd);
// Sums the per-CPU counters: index = enum kvx_reason.
std::vector<kvx_stat> read_stats(int stats_fd);
// Adds to the counter of a reason only userspace counts (the daemon's
// FRAG_* fates of parked fragments): the datapath never bumps it, so this
// read-modify-write of its first CPU's slot races with no packet.
void add_stat(int stats_fd, uint32_t reason, const kvx_stat &add);

} // namespace kvmxdp
