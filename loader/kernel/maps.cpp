// SPDX-License-Identifier: GPL-2.0
#include "kernel/maps.hpp"

#include <bpf/libbpf.h>

#include <fstream>
#include <vector>

#include "base/netaddr.hpp"

namespace kvmxdp {

MapInfo map_info(int fd, const std::string &what)
{
	bpf_map_info info{};
	__u32 len = sizeof(info);
	check_libbpf(bpf_obj_get_info_by_fd(fd, &info, &len), "get info of map", what);
	return {info.type,	  info.key_size, info.value_size,
		info.max_entries, info.name,	 info.map_flags};
}

uint32_t count_keys(int fd, uint32_t key_size)
{
	auto walk = [&] {
		uint32_t n = 0;
		for_each_key(fd, key_size, [&](const void *) { n++; });
		return n;
	};
	bpf_map_info info{};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.key_size != key_size ||
	    (info.type != BPF_MAP_TYPE_HASH && info.type != BPF_MAP_TYPE_LRU_HASH))
		return walk();
	std::vector<unsigned char> keys(size_t{kMapReadBatch} * key_size);
	std::vector<unsigned char> vals(size_t{kMapReadBatch} * info.value_size);
	uint64_t in = 0, next = 0;
	uint32_t n = 0;
	for (bool first = true;; first = false) {
		__u32 cnt = kMapReadBatch;
		const int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &next, keys.data(),
						     vals.data(), &cnt, nullptr);
		const int e = errno;
		if (err && e != ENOENT)
			return walk(); // ENOSPC (a bucket larger than the batch), no batch ops
		n += cnt;
		if (err) // ENOENT: the end of the map
			return n;
		in = next;
	}
}

std::string layout_mismatch(const MapInfo &have, const MapLayout &want)
{
	auto differs = [](const char *what, uint32_t h, uint32_t w) {
		return std::string(what) + " " + std::to_string(h) + ", this kvmxdp expects " +
		       std::to_string(w);
	};
	if (have.type != want.type)
		return differs("type", have.type, want.type);
	if (have.key_size != want.key_size)
		return differs("key size", have.key_size, want.key_size);
	if (have.value_size != want.value_size)
		return differs("value size", have.value_size, want.value_size);
	return "";
}

std::string abi_version_mismatch(uint32_t v)
{
	if (v >= KVX_ABI_TABLES_SINCE && v <= KVX_ABI_VERSION)
		return "";
	return "ABI version " + std::to_string(v) + ", this kvmxdp uses " +
	       std::to_string(KVX_ABI_VERSION) + " (tables of " +
	       std::to_string(KVX_ABI_TABLES_SINCE) + ".." + std::to_string(KVX_ABI_VERSION) + ")";
}

std::optional<Fd> get_pinned(const DirFd &dir, const std::string &name)
{
	auto entry = open_pin_entry(dir, name);
	if (!entry)
		return std::nullopt;
	return Fd(check_libbpf(bpf_obj_get(fd_path(entry->get()).c_str()), "open pinned object",
			       dir.show(name)));
}

std::optional<Fd> find_pinned(const DirFd &dir, const std::string &name, const MapLayout &want)
{
	auto fd = get_pinned(dir, name);
	if (!fd)
		return std::nullopt;
	const std::string path = dir.show(name);
	// Pinned by another build (a rollback, a second install): refused
	// before a key or value is read into a buffer of this build's sizes.
	const char *remedy = ": pinned by another kvmxdp; use that one, or run 'kvmxdp detach' "
			     "(drops conntrack state)";
	if (std::string m = layout_mismatch(map_info(fd->get(), path), want); !m.empty())
		throw PinRefused(path + ": " + m + " (ABI " + std::to_string(KVX_ABI_VERSION) +
				 ")" + remedy);
	if (name == KVX_MAP_CFG)
		if (std::string m = abi_version_mismatch(read_cfg(fd->get()).abi_version);
		    !m.empty())
			throw PinRefused(path + ": " + m + remedy);
	return fd;
}

Fd open_pinned(const DirFd &dir, const std::string &name, const MapLayout &want)
{
	auto fd = find_pinned(dir, name, want);
	if (!fd)
		throw Error("open pinned map", dir.show(name), ENOENT);
	return std::move(*fd);
}

void pin_at(int fd, const DirFd &dir, const std::string &name)
{
	check_libbpf(bpf_obj_pin(fd, dir.via_fd(name).c_str()), "pin", dir.show(name));
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

kvx_cfg6 read_cfg6(int cfg6_fd)
{
	__u32 key = 0;
	kvx_cfg6 cfg{};
	check_libbpf(bpf_map_lookup_elem(cfg6_fd, &key, &cfg), "read", KVX_MAP_CFG6);
	return cfg;
}

void write_cfg6(int cfg6_fd, const kvx_cfg6 &cfg)
{
	__u32 key = 0;
	check_libbpf(bpf_map_update_elem(cfg6_fd, &key, &cfg, BPF_ANY), "write", KVX_MAP_CFG6);
}

std::vector<uint64_t> read_portx(int portx_fd)
{
	std::vector<uint64_t> bits(KVX_PORTX_WORDS, 0);
	for (__u32 w = 0; w < KVX_PORTX_WORDS; w++)
		check_libbpf(bpf_map_lookup_elem(portx_fd, &w, &bits[w]), "read", KVX_MAP_PORTX);
	return bits;
}

size_t write_portx(int portx_fd, const std::vector<uint64_t> &bits)
{
	const std::vector<uint64_t> cur = read_portx(portx_fd);
	size_t n = 0;
	for (__u32 w = 0; w < KVX_PORTX_WORDS && w < bits.size(); w++) {
		n += static_cast<size_t>(__builtin_popcountll(bits[w]));
		if (bits[w] != cur[w])
			check_libbpf(bpf_map_update_elem(portx_fd, &w, &bits[w], BPF_ANY), "write",
				     KVX_MAP_PORTX);
	}
	return n;
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

void add_stat(int stats_fd, uint32_t reason, const kvx_stat &add)
{
	int ncpu = check_libbpf(libbpf_num_possible_cpus(), "count", "possible CPUs");
	std::vector<kvx_stat> percpu(static_cast<size_t>(ncpu));
	__u32 r = reason;
	check_libbpf(bpf_map_lookup_elem(stats_fd, &r, percpu.data()), "read", KVX_MAP_STATS);
	percpu[0].packets += add.packets;
	percpu[0].bytes += add.bytes;
	check_libbpf(bpf_map_update_elem(stats_fd, &r, percpu.data(), BPF_ANY), "update",
		     KVX_MAP_STATS);
}

std::optional<uint64_t> map_memlock_bytes(int fd)
{
	std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
	std::string line;
	while (std::getline(in, line)) {
		if (line.rfind("memlock:", 0) != 0)
			continue;
		try {
			size_t b = line.find_first_not_of(" \t", 8);
			return parse_uint(line.substr(b == std::string::npos ? 8 : b), UINT64_MAX,
					  "memlock");
		} catch (const Error &) {
			return std::nullopt;
		}
	}
	return std::nullopt;
}

uint64_t map_memory_estimate(const MapInfo &m, unsigned possible_cpus)
{
	auto r8 = [](uint64_t x) { return (x + 7) & ~uint64_t{7}; };
	const uint64_t key = r8(m.key_size), val = r8(m.value_size), n = m.max_entries;
	const uint64_t cpus = possible_cpus ? possible_cpus : 1;
	// Sizes of the kernel's bookkeeping on x86_64 (kernel/bpf/hashtab.c,
	// arraymap.c): struct htab_elem 48 bytes, struct bucket 16, a
	// preallocated hash map holds max_entries + one spare element per CPU.
	constexpr uint64_t kHtabElem = 48, kBucket = 16, kMapHeader = 512;
	switch (m.type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_LRU_HASH: {
		uint64_t buckets = 1;
		while (buckets < n)
			buckets <<= 1;
		uint64_t elems = n + (m.type == BPF_MAP_TYPE_HASH ? cpus : 0);
		return kMapHeader + buckets * kBucket + elems * (kHtabElem + key + val);
	}
	case BPF_MAP_TYPE_PERCPU_ARRAY:
		return kMapHeader + n * (sizeof(void *) + val * cpus);
	case BPF_MAP_TYPE_ARRAY:
	default:
		return kMapHeader + n * (key + val);
	}
}

} // namespace kvmxdp
