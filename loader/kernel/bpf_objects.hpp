// SPDX-License-Identifier: GPL-2.0
// Owning wrappers of the kernel objects the loader creates: the libbpf
// skeleton (open/load/destroy) and the TC hooks and filters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct kvmxdp_tc; // the generated skeleton; only bpf_objects.cpp includes it
struct bpf_map;
struct bpf_object;

namespace kvmxdp {

class Skeleton {
public:
	Skeleton(); // kvmxdp_tc__open
	~Skeleton();
	Skeleton(const Skeleton &) = delete;
	Skeleton &operator=(const Skeleton &) = delete;

	bpf_map *map(const char *name) const;
	// The maps to pin: every map of the object except libbpf's internal
	// ones (.rodata, .bss: their names contain a dot).
	std::vector<std::string> map_names() const;
	int map_fd(const char *name) const;
	int prog_fd(const char *name) const;
	// Before load(): the kernel fixes the map size at creation.
	void set_max_entries(const char *map, uint32_t n);
	// Before load(): use an existing (pinned) map instead of creating one.
	void reuse_map(const char *map, int fd);
	void load();

private:
	kvmxdp_tc *skel_ = nullptr;
};

// Our filters carry a fixed handle and priority ("kv") so that they can be
// found, replaced atomically (BPF_TC_F_REPLACE) on restart or upgrade and
// removed without touching other tools' filters on the same hook.
constexpr uint32_t kTcHandle = 0x6b76;
constexpr uint32_t kTcPriority = 0x6b76;

// Creates the clsact qdisc.  Returns false if one existed already
// (-EEXIST: another tool's, or ours from an earlier attach).
bool tc_hook_create(int ifindex, const std::string &ifname);
// Deletes the whole clsact qdisc.
void tc_hook_destroy(int ifindex, const std::string &ifname);
void tc_attach(int ifindex, const std::string &ifname, int prog_fd);
// Removes our filter from the ingress hook; false if it was not there.
bool tc_detach(int ifindex, const std::string &ifname);
// The program id of our ingress filter, if present.
std::optional<uint32_t> tc_query(int ifindex);
std::string prog_name_by_id(uint32_t id);

} // namespace kvmxdp
