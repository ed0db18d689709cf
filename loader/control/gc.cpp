// SPDX-License-Identifier: GPL-2.0
#include "control/gc.hpp"

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/error.hpp"
#include "kernel/maps.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/quota.hpp"

namespace kvmxdp {

namespace {

// A flow's guest and whether it was opened from outside (abi.h
// kvx_gflows_val: separate counters).
struct FlowOwner {
	uint32_t guest_be;
	bool inbound;
};

// Guest address (network order) -> the slot of the MAC that owns it now
// (one dump of kvx_guest); addresses without an owner are not in it.
std::unordered_map<uint32_t, uint32_t> owner_slots(const QuotaMaps &q)
{
	std::unordered_map<uint32_t, uint32_t> slot_of;
	if (q.guest_fd >= 0)
		for (const auto &[a, v] : dump_hash<__be32, kvx_guest_val>(q.guest_fd))
			slot_of.emplace(a, guest_slot(&v, a, q.seed));
	return slot_of;
}

size_t gflows_write(const QuotaMaps &q, const std::vector<FlowOwner> &owners)
{
	const int gflows_fd = q.gflows_fd;
	MapInfo mi = map_info(gflows_fd, KVX_MAP_GFLOWS);
	std::vector<kvx_gflows_val> counts(mi.max_entries, kvx_gflows_val{});
	// Each flow counts for the guest that owns its address now, as the
	// datapath's next decrement for it will (one dump of kvx_guest).
	std::unordered_map<uint32_t, uint32_t> slot_of = owner_slots(q);
	for (const FlowOwner &o : owners) {
		auto it = slot_of.find(o.guest_be);
		uint32_t i = it != slot_of.end() ? it->second : guest_slot(nullptr, o.guest_be, q.seed);
		if (i < counts.size())
			(o.inbound ? counts[i].in : counts[i].out)++;
	}
	// The current values in one syscall (arrays support batches since
	// 5.6; 65536 single lookups for a /16 would cost ~20 ms a sweep).
	std::vector<uint32_t> keys(counts.size());
	std::vector<kvx_gflows_val> vals(counts.size()), have(counts.size());
	std::vector<char> known(counts.size(), 0);
	uint32_t out_batch = 0, n = static_cast<uint32_t>(counts.size());
	LIBBPF_OPTS(bpf_map_batch_opts, bopts);
	int err = bpf_map_lookup_batch(gflows_fd, nullptr, &out_batch, keys.data(), vals.data(), &n,
				       &bopts);
	if (err == 0 || errno == ENOENT) {
		for (uint32_t j = 0; j < n && j < keys.size(); j++) {
			if (keys[j] < counts.size()) {
				known[keys[j]] = 1;
				have[keys[j]] = vals[j];
			}
		}
	}
	size_t fixed = 0;
	for (uint32_t i = 0; i < counts.size(); i++) {
		kvx_gflows_val cur{};
		if (known[i])
			cur = have[i];
		else if (bpf_map_lookup_elem(gflows_fd, &i, &cur) != 0)
			cur = kvx_gflows_val{};
		if (cur.out == counts[i].out && cur.in == counts[i].in)
			continue;
		// The datapath's reclaim hold-off is its own: kept.
		counts[i].reclaim_ns = cur.reclaim_ns;
		if (bpf_map_update_elem(gflows_fd, &i, &counts[i], BPF_ANY) == 0)
			fixed++;
	}
	return fixed;
}

} // namespace

size_t gflows_recount(int ct_fd, const QuotaMaps &q)
{
	std::vector<FlowOwner> guests;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd))
		guests.push_back({k.int_addr, (v.flags & KVX_CT_F_INBOUND) != 0});
	return gflows_write(q, guests);
}

size_t gports_recount(int bind_fd, int gports_fd, const QuotaMaps &q)
{
	// A dynamic binding is a port its guest holds: one OUT half each,
	// counted in the slot of the guest that owns the address now, as
	// the datapath's next decrement for it will be (as gflows_write).
	MapInfo mi = map_info(gports_fd, KVX_MAP_GPORTS);
	std::vector<uint32_t> counts(mi.max_entries, 0);
	std::unordered_map<uint32_t, uint32_t> slot_of = owner_slots(q);
	for (const auto &[k, v] : dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd)) {
		if (k.dir != KVX_BIND_OUT || bind_is_static(v))
			continue;
		auto it = slot_of.find(k.addr);
		uint32_t i = it != slot_of.end() ? it->second : guest_slot(nullptr, k.addr, q.seed);
		if (i < counts.size())
			counts[i]++;
	}
	size_t fixed = 0;
	for (uint32_t i = 0; i < counts.size(); i++) {
		uint32_t cur = 0;
		if (bpf_map_lookup_elem(gports_fd, &i, &cur) == 0 && cur == counts[i])
			continue;
		if (bpf_map_update_elem(gports_fd, &i, &counts[i], BPF_ANY) == 0)
			fixed++;
	}
	return fixed;
}

uint32_t ct_timeout_s(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t)
{
	return kvx_ct_timeout_s(&val, proto, &t);
}

bool ct_expired(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t, uint64_t now_ns)
{
	return kvx_ct_expired(&val, proto, &t, now_ns) != 0;
}

bool bind_idle(uint64_t last_used_ns, uint64_t now_ns)
{
	return now_ns > last_used_ns && now_ns - last_used_ns > kBindGraceNs;
}

uint64_t boottime_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return uint64_t(ts.tv_sec) * 1000000000ULL + uint64_t(ts.tv_nsec);
}

bool bind_is_static(const kvx_bind_val &v)
{
	return (v.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) != 0;
}

bool release_out_half(int bind_fd, const kvx_bind_key &in, const kvx_bind_val &in_val)
{
	kvx_bind_key ok{};
	ok.dir = KVX_BIND_OUT;
	ok.proto = in.proto;
	ok.addr = in_val.addr;
	ok.port = in_val.port;
	kvx_bind_val ov{};
	return bpf_map_lookup_elem(bind_fd, &ok, &ov) == 0 && !bind_is_static(ov) &&
	       ov.addr == in.addr && ov.port == in.port && bpf_map_delete_elem(bind_fd, &ok) == 0;
}

namespace {

// The sweep holds every key of a 1M-entry table in hash sets: 64-bit keys,
// not tuples in a tree (the sweep's user time at 1M flows).
uint64_t ext_key(uint8_t proto, uint32_t addr_be, uint16_t port_be)
{
	return uint64_t(proto) << 48 | uint64_t(port_be) << 32 | addr_be;
}

uint64_t bind_key64(const kvx_bind_key &k)
{
	return uint64_t(k.dir) << 56 | ext_key(k.proto, k.addr, k.port);
}

// Deletes pairs selected by pick(in_key, in_val, out_val_or_null) and
// orphaned OUT halves selected by pick_orphan(out_key, out_val).  The pick
// runs on one batched copy of the table; a pair it selects is read again
// from the map and must still be selected (the datapath may have used it
// since the copy), so a steady-state sweep costs no syscall per entry.
template <typename Pick, typename PickOrphan>
size_t delete_bindings(int bind_fd, Pick pick, PickOrphan pick_orphan)
{
	const auto entries = dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd);
	std::unordered_map<uint64_t, const kvx_bind_val *> by_key;
	by_key.reserve(entries.size());
	for (const auto &[k, v] : entries)
		by_key.emplace(bind_key64(k), &v);
	size_t deleted = 0;
	auto del = [&](const kvx_bind_key &k) {
		if (bpf_map_delete_elem(bind_fd, &k) == 0)
			deleted++;
	};
	// Only an OUT half pointing back at this external endpoint belongs to
	// the pair.
	auto pairs = [](const kvx_bind_key &in, const kvx_bind_val &out) {
		return out.addr == in.addr && out.port == in.port;
	};
	for (const auto &[k, v] : entries) {
		if (k.dir == KVX_BIND_IN) {
			kvx_bind_key out{};
			out.dir = KVX_BIND_OUT;
			out.proto = k.proto;
			out.port = v.port;
			out.addr = v.addr;
			auto it = by_key.find(bind_key64(out));
			const kvx_bind_val *out_val =
				it != by_key.end() && pairs(k, *it->second) ? it->second : nullptr;
			if (!pick(k, v, out_val))
				continue;
			kvx_bind_val in_now{}, out_now{};
			if (bpf_map_lookup_elem(bind_fd, &k, &in_now) != 0)
				continue;
			bool paired = bpf_map_lookup_elem(bind_fd, &out, &out_now) == 0 &&
				      pairs(k, out_now);
			if (!pick(k, in_now, paired ? &out_now : nullptr))
				continue;
			if (paired)
				del(out); // OUT first
			del(k);
		} else if (k.dir == KVX_BIND_OUT) {
			kvx_bind_key in{};
			in.dir = KVX_BIND_IN;
			in.proto = k.proto;
			in.port = v.port;
			in.addr = v.addr;
			bool has_in = by_key.count(bind_key64(in)) != 0;
			if (!has_in && pick_orphan(k, v))
				del(k);
		}
	}
	return deleted;
}

} // namespace

FlowFate delete_if_expired(int ct_fd, const kvx_ct_key &k, const kvx_timeouts &t, uint64_t now_ns,
			   kvx_ct_val *now)
{
	kvx_ct_val v{};
	if (bpf_map_lookup_elem(ct_fd, &k, &v) != 0)
		return FlowFate::Gone;
	if (now)
		*now = v;
	if (!ct_expired(v, k.proto, t, now_ns))
		return FlowFate::Kept;
	if (bpf_map_delete_elem(ct_fd, &k) == 0)
		return FlowFate::Deleted;
	return FlowFate::Gone;
}

SweepResult gc_sweep(int ct_fd, int bind_fd, const kvx_timeouts &t, uint64_t now_ns,
		     const QuotaMaps &q)
{
	SweepResult r;
	const auto flows = dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd);
	std::unordered_set<uint64_t> referenced;
	referenced.reserve(flows.size());
	std::vector<FlowOwner> guests; // every flow kept
	guests.reserve(flows.size());
	for (const auto &[k, v] : flows) {
		if (ct_expired(v, k.proto, t, now_ns)) {
			kvx_ct_val now_v{};
			switch (delete_if_expired(ct_fd, k, t, now_ns, &now_v)) {
			case FlowFate::Deleted:
				r.ct_deleted++;
				continue;
			case FlowFate::Gone: // the datapath reclaimed it: not counted
				continue;
			case FlowFate::Kept: // refreshed since the dump
				referenced.insert(ext_key(k.proto, now_v.ext_addr, now_v.ext_port));
				guests.push_back(
					{k.int_addr, (now_v.flags & KVX_CT_F_INBOUND) != 0});
				continue;
			}
		}
		referenced.insert(ext_key(k.proto, v.ext_addr, v.ext_port));
		guests.push_back({k.int_addr, (v.flags & KVX_CT_F_INBOUND) != 0});
	}
	if (q.gflows_fd >= 0)
		r.gflows_fixed = gflows_write(q, guests);
	r.bind_deleted = delete_bindings(
		bind_fd,
		[&](const kvx_bind_key &k, const kvx_bind_val &v, const kvx_bind_val *out) {
			if (bind_is_static(v))
				return false;
			if (referenced.count(ext_key(k.proto, k.addr, k.port)))
				return false;
			uint64_t last = v.last_used_ns;
			if (out && out->last_used_ns > last)
				last = out->last_used_ns;
			return bind_idle(last, now_ns);
		},
		[&](const kvx_bind_key &, const kvx_bind_val &v) {
			return !bind_is_static(v) && bind_idle(v.last_used_ns, now_ns);
		});
	return r;
}

SweepResult flush_ext_addr(int ct_fd, int bind_fd, uint32_t addr_be)
{
	SweepResult r;
	if (addr_be == 0)
		return r;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd)) {
		if (v.ext_addr == addr_be && bpf_map_delete_elem(ct_fd, &k) == 0)
			r.ct_deleted++;
	}
	r.bind_deleted = delete_bindings(
		bind_fd,
		// Static mappings are user configuration, not state: kept for
		// whoever owns them (`map`) to move to the new address.
		[&](const kvx_bind_key &k, const kvx_bind_val &v, const kvx_bind_val *) {
			return k.addr == addr_be && !bind_is_static(v);
		},
		[&](const kvx_bind_key &, const kvx_bind_val &v) {
			return v.addr == addr_be && !bind_is_static(v);
		});
	return r;
}

size_t release_host_ports(int ct_fd, int bind_fd, const std::vector<uint64_t> &portx)
{
	auto listened = [&](const kvx_bind_key &k, const kvx_bind_val &v) {
		const uint16_t port = ntohs(k.port);
		return k.dir == KVX_BIND_IN && !bind_is_static(v) &&
		       (k.proto == IPPROTO_TCP || k.proto == IPPROTO_UDP) &&
		       port / 64 < portx.size() && ((portx[port / 64] >> (port % 64)) & 1);
	};
	// The usual sweep finds none: one dump of the bindings, no more.
	const auto entries = dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd);
	if (std::none_of(entries.begin(), entries.end(),
			 [&](const auto &e) { return listened(e.first, e.second); }))
		return 0;
	std::unordered_set<uint64_t> used;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd))
		used.insert(ext_key(k.proto, v.ext_addr, v.ext_port));
	size_t deleted = delete_bindings(
		bind_fd,
		[&](const kvx_bind_key &k, const kvx_bind_val &v, const kvx_bind_val *) {
			return listened(k, v) && !used.count(ext_key(k.proto, k.addr, k.port));
		},
		[](const kvx_bind_key &, const kvx_bind_val &) { return false; });
	// In use: the OUT half only, if it still points back.
	for (const auto &[k, v] : entries) {
		if (!listened(k, v) || !used.count(ext_key(k.proto, k.addr, k.port)))
			continue;
		if (release_out_half(bind_fd, k, v))
			deleted++;
	}
	return deleted;
}

} // namespace kvmxdp
