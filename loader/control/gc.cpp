// SPDX-License-Identifier: GPL-2.0
#include "control/gc.hpp"

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <arpa/inet.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <ctime>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/clock.hpp"
#include "base/error.hpp"
#include "control/family.hpp"
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
	uint32_t slot_rec; // kvx_ct_val.slot: where it was counted
};

// The slot and direction of every IPv6 flow (q.ct6_fd) or dynamic binding
// (OUT halves of q.bind6_fd): the slot of the MAC its IN half delivers to,
// else of its address, the datapath's rule (ct6.h ct6_slot).
struct SlotCount {
	uint32_t slot;
	bool inbound;
};

// The quota slot of an IPv6 guest endpoint, the datapath's rule (ct6.h
// ct6_slot): the MAC its IN half delivers to, else its address's; relay's
// by its owner's bridge port.  From one dump of kvx_bind6 (and kvx_nd).
class Ipv6Slots {
public:
	Ipv6Slots(const QuotaMaps &q, bool nd)
		: seed_(q.seed)
		, binds_(dump_hash<kvx_bind6_key, kvx_bind6_val>(q.bind6_fd))
		, port_(brport_ports(q.brport_fd))
	{
		for (const auto &[k, v] : binds_)
			if (k.dir == KVX_BIND_IN)
				in_half_.emplace(Family6::bind_key(k), &v);
		if (q.nd_fd >= 0 && nd)
			for (const auto &[k, v] : dump_hash<kvx_nd_key, kvx_nd_val>(q.nd_fd)) {
				if (v.state == KVX_ND_NONE || v.state == KVX_ND_HOST ||
				    std::memcmp(v.mac, kZero, 6) == 0)
					continue;
				MacAddr m;
				std::memcpy(m.data(), v.mac, 6);
				nd_owner_.emplace(Family6::to_addr(k.addr), m);
			}
	}

	const std::vector<std::pair<kvx_bind6_key, kvx_bind6_val>> &bindings() const
	{
		return binds_;
	}

	// The slot of guest endpoint (addr, port) bound at ext (IN half key).
	uint32_t of(const Ext6 &ext, const __be32 (&addr)[4], uint16_t port_be) const
	{
		Ipv6Addr ea;
		std::memcpy(ea.data(), &ext.hi, 8);
		std::memcpy(ea.data() + 8, &ext.lo, 8);
		// Relay's own address outside (as its relay mappings' IN
		// halves say, whose MAC is their recorded owner): its kvx_nd
		// owner's.
		if (ea == Family6::to_addr(addr))
			return nd_slot(addr);
		auto it = in_half_.find(ext);
		if (it != in_half_.end() && std::memcmp(it->second->addr, addr, 16) == 0 &&
		    it->second->bind.port == port_be) {
			return mac_or_addr(it->second->bind.guest_mac, addr);
		}
		// A 1:1 address: its one IN half, any port.
		it = in_half_.find(Family6::ext(KVX_PROTO_ANY, ea, 0, KVX_BIND_IN));
		if (it != in_half_.end() && (it->second->bind.flags & KVX_BIND_F_ONE_TO_ONE) &&
		    std::memcmp(it->second->addr, addr, 16) == 0) {
			const uint8_t *mac = it->second->bind.guest_mac;
			if (std::memcmp(mac, kZero, 6) != 0)
				return mac_slot(mac, port_, seed_);
		}
		return nd_slot(addr);
	}

	// The slot of the guest whose MAC is mac (ct6.h guest6_slot); a
	// zero MAC: none known, the address's.
	uint32_t mac_or_addr(const uint8_t *mac, const __be32 (&addr)[4]) const
	{
		return std::memcmp(mac, kZero, 6) ? mac_slot(mac, port_, seed_) :
						    kvx_guest_slot6(nullptr, addr, seed_);
	}

	// The owner of addr in kvx_nd, by its bridge port (ct6.h
	// ct6_nd_slot: port 0's while not placed), else the address's own
	// slot.
	uint32_t nd_slot(const __be32 (&addr)[4]) const
	{
		if (auto o = nd_owner_.find(Family6::to_addr(addr)); o != nd_owner_.end())
			return mac_slot(o->second.data(), port_, seed_);
		return kvx_guest_slot6(nullptr, addr, seed_);
	}

	// A flow's slot: the one it recorded when made under this seed
	// (abi.h kvx_ct_val.slot), else its binding's.
	uint32_t of(const kvx_ct6_key &k, const kvx_ct6_val &v) const
	{
		if (uint32_t s = kvx_ct_slot_read(v.ct.slot, seed_); s != KVX_CT_NO_SLOT)
			return s;
		return of(Family6::ext(k.proto, Family6::to_addr(v.ext_addr), v.ct.ext_port,
				       KVX_BIND_IN),
			  k.int_addr, k.int_port);
	}

private:
	static constexpr uint8_t kZero[6] = {};
	uint32_t seed_;
	std::vector<std::pair<kvx_bind6_key, kvx_bind6_val>> binds_;
	GuestPorts port_;
	std::unordered_map<Ext6, const kvx_bind6_val *, Ext6Hash> in_half_;
	std::map<Ipv6Addr, MacAddr> nd_owner_;
};

std::vector<SlotCount> ipv6_owners(const QuotaMaps &q, bool bindings)
{
	std::vector<SlotCount> out;
	if (q.bind6_fd < 0 || (!bindings && q.ct6_fd < 0))
		return out;
	const Ipv6Slots slots(q, !bindings);
	if (bindings) {
		// A dynamic OUT half records the slot it was counted in, else
		// (older entries) names the MAC it counts for (ct6.h
		// bind6_out_insert): no IN half needed.
		for (const auto &[k, v] : slots.bindings()) {
			if (k.dir != KVX_BIND_OUT || bind_is_static(v.bind))
				continue;
			uint32_t i = kvx_ct_slot_read(v.bind.slot, q.seed);
			if (i == KVX_CT_NO_SLOT)
				i = slots.mac_or_addr(v.bind.guest_mac, k.addr);
			out.push_back({i, false});
		}
		return out;
	}
	for (const auto &[k, v] : dump_hash<kvx_ct6_key, kvx_ct6_val>(q.ct6_fd))
		out.push_back({slots.of(k, v), (v.ct.flags & KVX_CT_F_INBOUND) != 0});
	return out;
}

// Guest address (network order) -> the slot of the guest that owns it now
// (one dump of kvx_guest and of kvx_brport: its MAC's port); addresses
// without an owner are not in it.
std::unordered_map<uint32_t, uint32_t> owner_slots(const QuotaMaps &q)
{
	std::unordered_map<uint32_t, uint32_t> slot_of;
	if (q.guest_fd < 0)
		return slot_of;
	const GuestPorts ports = brport_ports(q.brport_fd);
	for (const auto &[a, v] : dump_hash<__be32, kvx_guest_val>(q.guest_fd))
		slot_of.emplace(a, guest_slot(&v, a, q.seed, ports));
	return slot_of;
}

// The slot an IPv4 flow or dynamic OUT half of guest address addr_be counts
// in, as the datapath takes it off (ct.h ct_flow_slot, bind_release): its
// record rec if of this seed, else that of the address's owner now
// (slot_of: owner_slots), else the address's own.
uint32_t recorded_slot(uint32_t rec, uint32_t addr_be,
		       const std::unordered_map<uint32_t, uint32_t> &slot_of, uint32_t seed)
{
	if (uint32_t s = kvx_ct_slot_read(rec, seed); s != KVX_CT_NO_SLOT)
		return s;
	auto it = slot_of.find(addr_be);
	return it != slot_of.end() ? it->second : kvx_guest_slot(nullptr, addr_be, seed);
}

// A counter array the datapath keeps with atomic adds (kvx_gflows,
// kvx_gports), mapped into this process so that the GC corrects it with
// atomic adds too: a map update would overwrite every +1/-1 the datapath
// made since the sweep read the counter (lost updates).  Not mapped when
// the map is not BPF_F_MMAPABLE (pinned by a version before the flag):
// then corrected with map updates, as before.
class CounterArray {
public:
	// fields: the byte offsets of the value's 32-bit counters.
	CounterArray(int fd, const char *what, std::vector<size_t> fields)
		: fd_(fd)
		, fields_(std::move(fields))
	{
		MapInfo mi = map_info(fd, what);
		n_ = mi.max_entries;
		value_size_ = mi.value_size;
		// The kernel lays an array's values out 8-byte aligned.
		stride_ = (size_t{mi.value_size} + 7) & ~size_t{7};
		if (!(mi.map_flags & BPF_F_MMAPABLE))
			return;
		const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
		len_ = (stride_ * n_ + page - 1) & ~(page - 1);
		void *p = mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED)
			base_ = static_cast<char *>(p);
	}
	~CounterArray()
	{
		if (base_)
			munmap(base_, len_);
	}
	CounterArray(const CounterArray &) = delete;
	CounterArray &operator=(const CounterArray &) = delete;

	uint32_t slots() const { return n_; }
	size_t fields() const { return fields_.size(); }

	// Every counter, slot by slot (fields() per slot): one read of the
	// mapping, or one batch lookup (arrays support batches since 5.6;
	// 65536 single lookups for a /16 would cost ~20 ms a sweep).
	std::vector<uint32_t> read() const
	{
		std::vector<uint32_t> out(size_t{n_} * fields_.size(), 0);
		if (base_) {
			for (uint32_t i = 0; i < n_; i++)
				for (size_t f = 0; f < fields_.size(); f++)
					out[i * fields_.size() + f] =
						__atomic_load_n(at(i, f), __ATOMIC_RELAXED);
			return out;
		}
		std::vector<uint32_t> keys(n_);
		std::vector<unsigned char> vals(size_t{n_} * value_size_);
		uint32_t out_batch = 0, n = n_;
		LIBBPF_OPTS(bpf_map_batch_opts, bopts);
		int err = bpf_map_lookup_batch(fd_, nullptr, &out_batch, keys.data(), vals.data(),
					       &n, &bopts);
		if (err != 0 && errno != ENOENT)
			n = 0;
		std::vector<char> known(n_, 0);
		for (uint32_t j = 0; j < n && j < n_; j++) {
			if (keys[j] >= n_)
				continue;
			known[keys[j]] = 1;
			for (size_t f = 0; f < fields_.size(); f++)
				std::memcpy(&out[keys[j] * fields_.size() + f],
					    &vals[size_t{j} * value_size_ + fields_[f]], 4);
		}
		std::vector<unsigned char> v(value_size_);
		for (uint32_t i = 0; i < n_; i++) {
			if (known[i] || bpf_map_lookup_elem(fd_, &i, v.data()) != 0)
				continue;
			for (size_t f = 0; f < fields_.size(); f++)
				std::memcpy(&out[i * fields_.size() + f], &v[fields_[f]], 4);
		}
		return out;
	}

	// Slot i's counters moved by d (fields() of them): atomically when
	// mapped; else the slot is read and written back (racing the
	// datapath, as every correction did before the mapping).
	bool add(uint32_t i, const int64_t *d)
	{
		if (base_) {
			for (size_t f = 0; f < fields_.size(); f++)
				if (d[f])
					__atomic_fetch_add(at(i, f), static_cast<uint32_t>(d[f]),
							   __ATOMIC_SEQ_CST);
			return true;
		}
		std::vector<unsigned char> v(value_size_);
		if (bpf_map_lookup_elem(fd_, &i, v.data()) != 0)
			return false;
		for (size_t f = 0; f < fields_.size(); f++) {
			uint32_t c;
			std::memcpy(&c, &v[fields_[f]], 4);
			c += static_cast<uint32_t>(d[f]);
			std::memcpy(&v[fields_[f]], &c, 4);
		}
		return bpf_map_update_elem(fd_, &i, v.data(), BPF_EXIST) == 0;
	}

private:
	uint32_t *at(uint32_t i, size_t f) const
	{
		return reinterpret_cast<uint32_t *>(base_ + size_t{i} * stride_ + fields_[f]);
	}

	int fd_;
	std::vector<size_t> fields_;
	uint32_t n_ = 0, value_size_ = 0;
	size_t stride_ = 0, len_ = 0;
	char *base_ = nullptr;
};

// Corrects the counters of arr to counted (fields() per slot), measured by
// a dump made between the readings before and after (taken right around
// it: the shorter that window, the less activity it has to explain): only
// what activity during the dump cannot explain (counter_correction), with
// atomic adds.  Returns the number of slots corrected.
size_t counters_correct(CounterArray &arr, const std::vector<uint32_t> &before,
			const std::vector<uint32_t> &after, const std::vector<uint32_t> &counted)
{
	const size_t k = arr.fields();
	std::vector<int64_t> d(k);
	size_t fixed = 0;
	for (uint32_t i = 0; i < arr.slots(); i++) {
		bool any = false;
		for (size_t f = 0; f < k; f++) {
			const size_t j = size_t{i} * k + f;
			d[f] = counter_correction(counted[j], before[j], after[j]);
			any = any || d[f];
		}
		if (any && arr.add(i, d.data()))
			fixed++;
	}
	return fixed;
}

std::vector<uint32_t> gflows_counted(const QuotaMaps &q, const std::vector<FlowOwner> &owners,
				     const std::vector<SlotCount> &owners6, uint32_t slots)
{
	std::vector<uint32_t> counts(size_t{slots} * 2, 0);
	for (const SlotCount &o : owners6)
		if (o.slot < slots)
			counts[size_t{o.slot} * 2 + (o.inbound ? 1 : 0)]++;
	// Each flow counts where the datapath's decrement for it will take it
	// off (ct.h ct_flow_slot): the slot it was counted in, else (no record
	// of this seed) for the guest that owns its address now (one dump of
	// kvx_guest).
	std::unordered_map<uint32_t, uint32_t> slot_of = owner_slots(q);
	for (const FlowOwner &o : owners) {
		const uint32_t i = recorded_slot(o.slot_rec, o.guest_be, slot_of, q.seed);
		if (i < slots)
			counts[size_t{i} * 2 + (o.inbound ? 1 : 0)]++;
	}
	return counts;
}

// kvx_gflows_val's two counters (its reclaim hold-off is the datapath's own).
CounterArray gflows_array(int fd)
{
	return CounterArray(fd, KVX_MAP_GFLOWS,
			    {offsetof(kvx_gflows_val, out), offsetof(kvx_gflows_val, in)});
}

} // namespace

int64_t counter_correction(uint32_t counted, uint32_t before, uint32_t after)
{
	// Counters are compared as the datapath does ((__s32)): one that went
	// below zero is a small negative number, not 4 billion.
	const int64_t c = static_cast<int32_t>(counted);
	const int64_t b = static_cast<int32_t>(before), a = static_cast<int32_t>(after);
	const int64_t lo = b < a ? b : a, hi = b < a ? a : b;
	if (c < lo)
		return c - lo;
	if (c > hi)
		return c - hi;
	return 0;
}

size_t gflows_recount(int ct_fd, const QuotaMaps &q)
{
	CounterArray gf = gflows_array(q.gflows_fd);
	const std::vector<uint32_t> before = gf.read();
	const auto flows = dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd);
	const std::vector<SlotCount> flows6 = ipv6_owners(q, false);
	const std::vector<uint32_t> after = gf.read();
	std::vector<FlowOwner> guests;
	for (const auto &[k, v] : flows)
		guests.push_back({k.int_addr, (v.flags & KVX_CT_F_INBOUND) != 0, v.slot});
	return counters_correct(gf, before, after, gflows_counted(q, guests, flows6, gf.slots()));
}

namespace {

// A flow quota_relief may delete: the datapath's rule (kvmxdp/ct_rules.h
// kvx_ct_quiet): quiet closed TCP flows, and half-open ones from outside (a
// SYN flood's: they count on the guest's inbound counter, the only one they
// are relieved for, so a flood below about quota / (KVX_TW_RECYCLE_NS + a
// tick) SYNs a second never reaches the quota and its early drop).
bool closed_quiet(uint8_t proto, const kvx_ct_val &v, uint64_t now_ns)
{
	return kvx_ct_quiet(&v, proto, now_ns) != 0;
}

// One candidate: its table, its key (either family's), its counter.
struct Closed {
	uint64_t last_seen_ns;
	bool v6;
	kvx_ct_key k4;
	kvx_ct6_key k6;
	size_t counter; // slot * 2 + inbound
};

} // namespace

ReliefResult quota_relief(int ct_fd, const QuotaMaps &q, uint32_t quota, uint64_t now_ns)
{
	ReliefResult r;
	if (q.gflows_fd < 0)
		return r;
	CounterArray gf = gflows_array(q.gflows_fd);
	// The counters (slot, direction) near their quota: only they, or a
	// table near full, pay for the dumps below.
	std::set<size_t> near;
	uint64_t total = 0;
	const std::vector<uint32_t> counts = gf.read();
	// At least one below the quota: a tiny quota is relieved too.
	const int64_t share = int64_t{quota} - std::max<int64_t>(quota / kReliefShare, 1);
	for (size_t j = 0; j < counts.size(); j++) {
		const int64_t c = static_cast<int32_t>(counts[j]);
		total += c > 0 ? static_cast<uint64_t>(c) : 0;
		if (quota && c > share)
			near.insert(j);
	}
	const uint32_t ct_max = map_info(ct_fd, KVX_MAP_CT).max_entries;
	const bool has6 = q.ct6_fd >= 0 && q.bind6_fd >= 0;
	const uint32_t ct6_max = has6 ? map_info(q.ct6_fd, KVX_MAP_CT6).max_entries : 0;
	auto full = [](size_t n, uint32_t max) { return n > max - max / kReliefShare; };
	// Every flow is counted (both families): the sum bounds either table.
	if (near.empty() && !full(total, ct_max) && !(has6 && full(total, ct6_max)))
		return r;
	std::vector<Closed> cand;
	const auto flows = dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd);
	const bool all4 = full(flows.size(), ct_max);
	const std::unordered_map<uint32_t, uint32_t> slot_of = owner_slots(q);
	for (const auto &[k, v] : flows) {
		if (!closed_quiet(k.proto, v, now_ns))
			continue;
		const uint32_t slot = recorded_slot(v.slot, k.int_addr, slot_of, q.seed);
		const size_t j = size_t{slot} * 2 + ((v.flags & KVX_CT_F_INBOUND) ? 1 : 0);
		if (all4 || near.count(j))
			cand.push_back({v.last_seen_ns, false, k, {}, j});
	}
	if (has6) {
		const auto flows6 = dump_hash<kvx_ct6_key, kvx_ct6_val>(q.ct6_fd);
		const bool all6 = full(flows6.size(), ct6_max);
		const Ipv6Slots slots(q, true);
		for (const auto &[k, v] : flows6) {
			if (!closed_quiet(k.proto, v.ct, now_ns))
				continue;
			const size_t j = size_t{slots.of(k, v)} * 2 +
					 ((v.ct.flags & KVX_CT_F_INBOUND) ? 1 : 0);
			if (all6 || near.count(j))
				cand.push_back({v.ct.last_seen_ns, true, {}, k, j});
		}
	}
	// The longest closed first, from both families alike, up to the
	// tick's budget.  (A TIME_WAIT flow's port stays out of the pool
	// while its remote may hold it: the binding's tw_remotes, which the
	// sweep's binding pass respects.)
	std::sort(cand.begin(), cand.end(),
		  [](const Closed &a, const Closed &b) { return a.last_seen_ns < b.last_seen_ns; });
	if (cand.size() > kReliefMax)
		cand.resize(kReliefMax);
	std::set<size_t> relieved;
	for (const Closed &c : cand) {
		// Read again: a SYN may have reopened it since the dump (the
		// kernel has no compare-and-delete: the window left is the
		// microseconds between these two calls).
		bool gone;
		if (c.v6) {
			kvx_ct6_val v{};
			if (bpf_map_lookup_elem(q.ct6_fd, &c.k6, &v) != 0 ||
			    !closed_quiet(c.k6.proto, v.ct, now_ns))
				continue;
			gone = bpf_map_delete_elem(q.ct6_fd, &c.k6) == 0;
		} else {
			kvx_ct_val v{};
			if (bpf_map_lookup_elem(ct_fd, &c.k4, &v) != 0 ||
			    !closed_quiet(c.k4.proto, v, now_ns))
				continue;
			gone = bpf_map_delete_elem(ct_fd, &c.k4) == 0;
		}
		if (!gone)
			continue;
		// The datapath's own -1 for a flow it deletes (ct.h ct_reclaim_cb).
		int64_t d[2] = {0, 0};
		d[c.counter & 1] = -1;
		gf.add(static_cast<uint32_t>(c.counter / 2), d);
		r.deleted++;
		relieved.insert(c.counter / 2);
	}
	r.guests = relieved.size();
	return r;
}

namespace {

// gports_recount (tenants false) and tenants_recount (true): the OUT halves
// of one kind per guest.
size_t bind_recount(int bind_fd, int fd, const char *name, const QuotaMaps &q,
		    const std::function<void()> &after_reading, bool tenants)
{
	CounterArray gp(fd, name, {0});
	// A dynamic binding is a port its guest holds: one OUT half each,
	// counted where the datapath's decrement for it will take it off (as
	// gflows_counted): the slot it records, else (older entries) that of
	// the guest that owns the address now.
	std::vector<uint32_t> counts(gp.slots(), 0);
	std::unordered_map<uint32_t, uint32_t> slot_of = owner_slots(q);
	const std::vector<uint32_t> before = gp.read();
	const auto binds = dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd);
	const std::vector<SlotCount> binds6 = tenants ? std::vector<SlotCount>{} :
							ipv6_owners(q, true);
	const std::vector<uint32_t> after = gp.read();
	for (const SlotCount &o : binds6)
		if (o.slot < counts.size())
			counts[o.slot]++;
	for (const auto &[k, v] : binds) {
		// A tenant of a shared port holds none of its own (ct.h
		// ovl_share): it counts in kvx_gtenant only.
		if (k.dir != KVX_BIND_OUT || bind_is_static(v) ||
		    ((v.flags & KVX_BIND_F_SHARED) != 0) != tenants)
			continue;
		const uint32_t i = recorded_slot(v.slot, k.addr, slot_of, q.seed);
		if (i < counts.size())
			counts[i]++;
	}
	if (after_reading)
		after_reading();
	return counters_correct(gp, before, after, counts);
}

} // namespace

size_t gports_recount(int bind_fd, int gports_fd, const QuotaMaps &q,
		      const std::function<void()> &after_reading)
{
	return bind_recount(bind_fd, gports_fd, KVX_MAP_GPORTS, q, after_reading, false);
}

size_t tenants_recount(int bind_fd, int gtenant_fd, const QuotaMaps &q,
		       const std::function<void()> &after_reading)
{
	return bind_recount(bind_fd, gtenant_fd, KVX_MAP_GTENANT, q, after_reading, true);
}

size_t gaddrs_recount(int nd_fd, int gaddrs_fd, const QuotaMaps &q,
		      const std::function<void()> &after_reading)
{
	CounterArray ga(gaddrs_fd, KVX_MAP_GADDRS, {0});
	std::vector<uint32_t> counts(ga.slots(), 0);
	const std::vector<uint32_t> before = ga.read();
	const auto nd = dump_hash<kvx_nd_key, kvx_nd_val>(nd_fd);
	const std::vector<uint32_t> after = ga.read();
	const GuestPorts port = brport_ports(q.brport_fd);
	// As owner6.h nd_owner counts them: every entry of a guest MAC,
	// in its bridge port's slot (port 0: not known).
	for (const auto &[k, v] : nd) {
		if (v.state == KVX_ND_NONE || v.state == KVX_ND_HOST)
			continue;
		const uint32_t i = mac_slot(v.mac, port, q.seed);
		if (i < counts.size())
			counts[i]++;
	}
	if (after_reading)
		after_reading();
	return counters_correct(ga, before, after, counts);
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

bool bind_is_static(const kvx_bind_val &v)
{
	return (v.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) != 0;
}

bool ovl_owner_holds(int bind_fd, const kvx_ovl_key &k, const kvx_ovl_val &v, kvx_bind_val *in)
{
	kvx_bind_key ik{};
	ik.dir = KVX_BIND_IN;
	ik.proto = k.proto;
	ik.addr = k.ext_addr;
	ik.port = k.ext_port;
	kvx_bind_val iv{};
	if (bpf_map_lookup_elem(bind_fd, &ik, &iv) != 0 || bind_is_static(iv) ||
	    iv.addr != v.addr || iv.port != v.owner_port)
		return false;
	if (in)
		*in = iv;
	return true;
}

namespace {

template <typename F>
bool release_out_half_of(int bind_fd, const typename F::BindKey &in,
			 const typename F::BindVal &in_val)
{
	const typename F::BindKey ok = other_half<F>(in, in_val);
	typename F::BindVal ov{};
	return bpf_map_lookup_elem(bind_fd, &ok, &ov) == 0 && !bind_is_static(F::bind(ov)) &&
	       points_to<F>(ov, in) && bpf_map_delete_elem(bind_fd, &ok) == 0;
}

// Deletes pairs selected by pick(in_key, in_val, out_val_or_null) and
// orphaned OUT halves selected by pick_orphan(out_key, out_val).  The pick
// runs on one batched copy of the table; a pair it selects is read again
// from the map and must still be selected (the datapath may have used it
// since the copy), so a steady-state sweep costs no syscall per entry.
template <typename F, typename Pick, typename PickOrphan>
size_t delete_bindings(int bind_fd, Pick pick, PickOrphan pick_orphan)
{
	using BindKey = typename F::BindKey;
	using BindVal = typename F::BindVal;
	const auto entries = dump_hash<BindKey, BindVal>(bind_fd);
	std::unordered_map<typename F::Ext, const BindVal *, typename F::ExtHash> by_key;
	by_key.reserve(entries.size());
	for (const auto &[k, v] : entries)
		by_key.emplace(F::bind_key(k), &v);
	size_t deleted = 0;
	auto del = [&](const BindKey &k) {
		if (bpf_map_delete_elem(bind_fd, &k) == 0)
			deleted++;
	};
	for (const auto &[k, v] : entries) {
		if (k.dir == KVX_BIND_IN) {
			// Only an OUT half pointing back at this external
			// endpoint belongs to the pair.
			const BindKey out = other_half<F>(k, v);
			auto it = by_key.find(F::bind_key(out));
			const BindVal *out_val =
				it != by_key.end() && points_to<F>(*it->second, k) ? it->second :
										     nullptr;
			if (!pick(k, v, out_val))
				continue;
			BindVal in_now{}, out_now{};
			if (bpf_map_lookup_elem(bind_fd, &k, &in_now) != 0)
				continue;
			bool paired = bpf_map_lookup_elem(bind_fd, &out, &out_now) == 0 &&
				      points_to<F>(out_now, k);
			if (!pick(k, in_now, paired ? &out_now : nullptr))
				continue;
			if (paired)
				del(out); // OUT first
			del(k);
		} else if (k.dir == KVX_BIND_OUT) {
			bool has_in = by_key.count(F::bind_key(other_half<F>(k, v))) != 0;
			if (!has_in && pick_orphan(k, v))
				del(k);
		}
	}
	return deleted;
}

template <typename F>
FlowFate delete_if_expired_of(int ct_fd, const typename F::CtKey &k, const kvx_timeouts &t,
			      uint64_t now_ns, typename F::CtVal *now)
{
	typename F::CtVal v{};
	if (bpf_map_lookup_elem(ct_fd, &k, &v) != 0)
		return FlowFate::Gone;
	if (now)
		*now = v;
	if (!ct_expired(F::ct(v), k.proto, t, now_ns))
		return FlowFate::Kept;
	if (bpf_map_delete_elem(ct_fd, &k) == 0)
		return FlowFate::Deleted;
	return FlowFate::Gone;
}

template <typename F>
SweepResult sweep(int ct_fd, int bind_fd, const kvx_timeouts &t, uint64_t now_ns,
		  const QuotaMaps &q)
{
	SweepResult r;
	std::optional<CounterArray> gf;
	std::vector<uint32_t> before, after;
	if (F::kQuota && q.gflows_fd >= 0) {
		gf.emplace(q.gflows_fd, KVX_MAP_GFLOWS,
			   std::vector<size_t>{offsetof(kvx_gflows_val, out),
					       offsetof(kvx_gflows_val, in)});
		before = gf->read();
	}
	const auto flows = dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd);
	std::vector<SlotCount> flows6;
	if (gf)
		flows6 = ipv6_owners(q, false);
	// Right after the dump: the flows this sweep deletes below are not
	// counted, nor decremented by the datapath, and leave the count under
	// the readings (drift, corrected); the datapath's updates after this
	// reading are kept by the atomic add.
	if (gf)
		after = gf->read();
	std::unordered_set<typename F::Ext, typename F::ExtHash> referenced;
	referenced.reserve(flows.size());
	std::vector<FlowOwner> guests; // every flow kept
	// The flow counts for its guest's quota slot (IPv4's counters only).
	auto owner = [&](const typename F::CtKey &k, const typename F::CtVal &v) {
		if constexpr (F::kQuota)
			if (gf)
				guests.push_back({k.int_addr,
						  (F::ct(v).flags & KVX_CT_F_INBOUND) != 0,
						  F::ct(v).slot});
	};
	auto keep = [&](const typename F::CtKey &k, const typename F::CtVal &v) {
		referenced.insert(F::ext(k.proto, F::ext_addr(v), F::ct(v).ext_port));
		owner(k, v);
	};
	if (gf)
		guests.reserve(flows.size());
	for (const auto &[k, v] : flows) {
		if (ct_expired(F::ct(v), k.proto, t, now_ns)) {
			typename F::CtVal now_v{};
			switch (delete_if_expired_of<F>(ct_fd, k, t, now_ns, &now_v)) {
			case FlowFate::Deleted:
				r.ct_deleted++;
				continue;
			case FlowFate::Gone:
				// The datapath reclaimed it after the readings
				// (its decrement is kept by the atomic add):
				// counted as the readings saw it, or the
				// correction would take it off a second time.
				owner(k, v);
				continue;
			case FlowFate::Kept: // refreshed since the dump
				keep(k, now_v);
				continue;
			}
		}
		keep(k, v);
	}
	if (gf)
		r.gflows_fixed = counters_correct(*gf, before, after,
						  gflows_counted(q, guests, flows6, gf->slots()));
	r.bind_deleted = delete_bindings<F>(
		bind_fd,
		[&](const typename F::BindKey &k, const typename F::BindVal &v,
		    const typename F::BindVal *out) {
			if (bind_is_static(F::bind(v)))
				return false;
			if (referenced.count(F::ext(k.proto, key_addr<F>(k), k.port)))
				return false;
			// A remote that may hold the port in TIME_WAIT keeps it
			// out of the pool, as the flow did before it gave way to
			// a new one (ct.h ct_closed_evictable); bind_recycle may
			// still give it to a connection to another remote.
			if (kvx_tw_live(F::bind(v).tw_remotes, now_ns))
				return false;
			uint64_t last = F::bind(v).last_used_ns;
			if (out && F::bind(*out).last_used_ns > last)
				last = F::bind(*out).last_used_ns;
			return bind_idle(last, now_ns);
		},
		[&](const typename F::BindKey &, const typename F::BindVal &v) {
			return !bind_is_static(F::bind(v)) &&
			       bind_idle(F::bind(v).last_used_ns, now_ns);
		});
	return r;
}

template <typename F>
SweepResult flush_addr(int ct_fd, int bind_fd, const typename F::Addr &addr)
{
	SweepResult r;
	if (addr == typename F::Addr{})
		return r;
	for (const auto &[k, v] : dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd)) {
		if (F::ext_addr(v) == addr && bpf_map_delete_elem(ct_fd, &k) == 0)
			r.ct_deleted++;
	}
	r.bind_deleted = delete_bindings<F>(
		bind_fd,
		// Static mappings are user configuration, not state: kept for
		// whoever owns them (`map`) to move to the new address.
		[&](const typename F::BindKey &k, const typename F::BindVal &v,
		    const typename F::BindVal *) {
			return key_addr<F>(k) == addr && !bind_is_static(F::bind(v));
		},
		[&](const typename F::BindKey &, const typename F::BindVal &v) {
			return F::val_addr(v) == addr && !bind_is_static(F::bind(v));
		});
	return r;
}

template <typename F>
size_t release_listened(int ct_fd, int bind_fd, const std::vector<uint64_t> &portx, uint64_t now_ns)
{
	using BindKey = typename F::BindKey;
	using BindVal = typename F::BindVal;
	// A binding used since shortly before now (the datapath's clock is
	// cached per CPU, a tick behind at worst) may have a flow the
	// conntrack dump below missed: left for the next sweep.
	auto quiet = [&](const BindVal &v, const BindVal *out) {
		uint64_t last = F::bind(v).last_used_ns;
		if (out && F::bind(*out).last_used_ns > last)
			last = F::bind(*out).last_used_ns;
		return last + 1000ULL * 1000 * 1000 < now_ns;
	};
	auto listened = [&](const BindKey &k, const BindVal &v) {
		const uint16_t port = ntohs(k.port);
		return k.dir == KVX_BIND_IN && !bind_is_static(F::bind(v)) &&
		       (k.proto == IPPROTO_TCP || k.proto == IPPROTO_UDP) &&
		       port / 64 < portx.size() && ((portx[port / 64] >> (port % 64)) & 1);
	};
	// The usual sweep finds none: one dump of the bindings, no more.
	const auto entries = dump_hash<BindKey, BindVal>(bind_fd);
	if (std::none_of(entries.begin(), entries.end(),
			 [&](const auto &e) { return listened(e.first, e.second); }))
		return 0;
	std::unordered_set<typename F::Ext, typename F::ExtHash> used;
	for (const auto &[k, v] : dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd))
		used.insert(F::ext(k.proto, F::ext_addr(v), F::ct(v).ext_port));
	auto in_use = [&](const BindKey &k) {
		return used.count(F::ext(k.proto, key_addr<F>(k), k.port)) != 0;
	};
	size_t deleted = delete_bindings<F>(
		bind_fd,
		[&](const BindKey &k, const BindVal &v, const BindVal *out) {
			return listened(k, v) && !in_use(k) && quiet(v, out);
		},
		[](const BindKey &, const BindVal &) { return false; });
	// In use: the OUT half only, if it still points back.
	for (const auto &[k, v] : entries) {
		if (!listened(k, v) || !in_use(k))
			continue;
		if (release_out_half_of<F>(bind_fd, k, v))
			deleted++;
	}
	return deleted;
}

} // namespace

bool release_out_half(int bind_fd, const kvx_bind_key &in, const kvx_bind_val &in_val)
{
	return release_out_half_of<Family4>(bind_fd, in, in_val);
}

bool release_out_half(int bind6_fd, const kvx_bind6_key &in, const kvx_bind6_val &in_val)
{
	return release_out_half_of<Family6>(bind6_fd, in, in_val);
}

FlowFate delete_if_expired(int ct_fd, const kvx_ct_key &k, const kvx_timeouts &t, uint64_t now_ns,
			   kvx_ct_val *now)
{
	return delete_if_expired_of<Family4>(ct_fd, k, t, now_ns, now);
}

SweepResult gc_sweep(int ct_fd, int bind_fd, const kvx_timeouts &t, uint64_t now_ns,
		     const QuotaMaps &q)
{
	return sweep<Family4>(ct_fd, bind_fd, t, now_ns, q);
}

SweepResult gc_sweep6(int ct6_fd, int bind6_fd, const kvx_timeouts &t, uint64_t now_ns)
{
	return sweep<Family6>(ct6_fd, bind6_fd, t, now_ns, {});
}

SweepResult flush_ext_addr(int ct_fd, int bind_fd, uint32_t addr_be)
{
	return flush_addr<Family4>(ct_fd, bind_fd, addr_be);
}

SweepResult flush_ext_addr6(int ct6_fd, int bind6_fd, const Ipv6Addr &addr)
{
	return flush_addr<Family6>(ct6_fd, bind6_fd, addr);
}

size_t reshare_claimed(int bind_fd, int ovl_fd,
		       const std::vector<std::pair<kvx_bind_key, kvx_bind_val>> &written)
{
	if (written.empty() || ovl_fd < 0)
		return 0;
	// (proto, port, owner) of every claim: one made under another owner
	// (dead) marks nothing.
	using Claimed = std::tuple<uint8_t, uint32_t, uint16_t, uint32_t, uint16_t>;
	std::set<Claimed> claimed;
	for (const auto &[k, v] : dump_hash<kvx_ovl_key, kvx_ovl_val>(ovl_fd))
		claimed.insert(Claimed{k.proto, k.ext_addr, k.ext_port, v.addr, v.owner_port});
	size_t n = 0;
	for (const auto &[k, was] : written) {
		if (!claimed.count(Claimed{k.proto, k.addr, k.port, was.addr, was.port}))
			continue;
		kvx_bind_val now{};
		if (bpf_map_lookup_elem(bind_fd, &k, &now) != 0 || now.addr != was.addr ||
		    now.port != was.port || bind_is_static(now) || (now.flags & KVX_BIND_F_SHARED))
			continue;
		now.flags |= KVX_BIND_F_SHARED;
		if (bpf_map_update_elem(bind_fd, &k, &now, BPF_EXIST) == 0)
			n++;
	}
	return n;
}

OvlSweepResult ovl_sweep(int ct_fd, int bind_fd, int ovl_fd, uint64_t now_ns, bool scan_bindings,
			 const std::function<void()> &after_unshare)
{
	OvlSweepResult r;
	if (ovl_fd < 0)
		return r;
	const auto claims = dump_hash<kvx_ovl_key, kvx_ovl_val>(ovl_fd);
	if (claims.empty() && !scan_bindings)
		return r;
	// The datapath refreshes an owner's last use when a tenant joins
	// (ct.h ovl_enter), at most once a second, by a per-CPU clock that may
	// be a tick ahead: an IN half used since this instant may have got a
	// claim after the copy above.
	const uint64_t copied_ns = boottime_ns();
	constexpr uint64_t kJoinSlackNs = 2ULL * 1000 * 1000 * 1000;
	// A claim is dead when its owner's binding went (or another endpoint
	// holds the port now) or its flow did; one younger than the binding
	// grace may be waiting for its flow (the datapath claims first).
	auto dead = [&](const kvx_ovl_key &k, const kvx_ovl_val &v) {
		if (!bind_idle(v.created_ns, now_ns))
			return false;
		if (!ovl_owner_holds(bind_fd, k, v))
			return true;
		kvx_ct_key ck{};
		ck.proto = k.proto;
		ck.int_addr = v.addr;
		ck.int_port = v.port;
		ck.rem_addr = k.rem_addr;
		ck.rem_port = k.rem_port;
		kvx_ct_val f{};
		return bpf_map_lookup_elem(ct_fd, &ck, &f) != 0 || f.ext_addr != k.ext_addr ||
		       f.ext_port != k.ext_port;
	};
	// (proto, external address, port) of every shared port with a claim
	// left, and (that, guest address, guest port) of every endpoint with one.
	using Port = std::tuple<uint8_t, uint32_t, uint16_t>;
	using Tenant = std::tuple<uint8_t, uint32_t, uint16_t, uint32_t, uint16_t>;
	std::set<Port> ports;
	std::set<Tenant> tenants;
	for (const auto &[k, v] : claims) {
		kvx_ovl_val now{};
		if (dead(k, v) && bpf_map_lookup_elem(ovl_fd, &k, &now) == 0 && dead(k, now) &&
		    bpf_map_delete_elem(ovl_fd, &k) == 0) {
			r.claims_deleted++;
			continue;
		}
		ports.insert(Port{k.proto, k.ext_addr, k.ext_port});
		tenants.insert(Tenant{k.proto, k.ext_addr, k.ext_port, v.addr, v.port});
	}
	r.shared_left = !ports.empty();
	std::vector<std::pair<kvx_bind_key, kvx_bind_val>> cleared;
	const auto binds = dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd);
	// An OUT half its IN half points back to is an owner's, whatever its
	// flags: never a tenant's to delete.
	std::set<Tenant> owners;
	for (const auto &[k, v] : binds)
		if (k.dir == KVX_BIND_IN)
			owners.insert(Tenant{k.proto, k.addr, k.port, v.addr, v.port});
	for (const auto &[k, v] : binds) {
		if (!(v.flags & KVX_BIND_F_SHARED) || bind_is_static(v))
			continue;
		if (k.dir == KVX_BIND_IN) {
			if (ports.count(Port{k.proto, k.addr, k.port}))
				continue;
			kvx_bind_val now{};
			if (bpf_map_lookup_elem(bind_fd, &k, &now) != 0 ||
			    !(now.flags & KVX_BIND_F_SHARED) || bind_is_static(now))
				continue;
			if (now.last_used_ns + kJoinSlackNs >= copied_ns) {
				r.shared_left = true; // next sweep
				continue;
			}
			// A full-value write, as conntrack flush's: it may drop
			// the mark (and a refresh of last_used_ns) a tenant
			// joining meanwhile relied on.  Claims are looked up
			// again below, after every such write; a claim made
			// after that finds the mark cleared and sets it (ct.h
			// ovl_enter).
			now.flags &= ~KVX_BIND_F_SHARED;
			if (bpf_map_update_elem(bind_fd, &k, &now, BPF_EXIST) == 0) {
				r.unshared++;
				cleared.push_back({k, now});
			}
			continue;
		}
		if (tenants.count(Tenant{k.proto, v.addr, v.port, k.addr, k.port}) ||
		    owners.count(Tenant{k.proto, v.addr, v.port, k.addr, k.port}))
			continue;
		kvx_bind_val now{};
		if (bpf_map_lookup_elem(bind_fd, &k, &now) == 0 &&
		    (now.flags & KVX_BIND_F_SHARED) && now.addr == v.addr && now.port == v.port &&
		    bind_idle(now.last_used_ns, now_ns) && bpf_map_delete_elem(bind_fd, &k) == 0) {
			r.tenants_deleted++;
			continue;
		}
		r.shared_left = true;
	}
	if (after_unshare)
		after_unshare();
	if (const size_t again = reshare_claimed(bind_fd, ovl_fd, cleared)) {
		r.unshared -= again;
		r.shared_left = true;
	}
	return r;
}

size_t release_host_ports(int ct_fd, int bind_fd, const std::vector<uint64_t> &portx,
			  uint64_t now_ns)
{
	return release_listened<Family4>(ct_fd, bind_fd, portx, now_ns);
}

size_t release_host_ports6(int ct6_fd, int bind6_fd, const std::vector<uint64_t> &portx,
			   uint64_t now_ns)
{
	return release_listened<Family6>(ct6_fd, bind6_fd, portx, now_ns);
}

GuestPorts brport_ports(int brport_fd)
{
	GuestPorts out;
	if (brport_fd >= 0)
		for (const auto &[k, v] : dump_hash<kvx_xfdb_key, kvx_xfdb_val>(brport_fd)) {
			MacAddr m;
			std::memcpy(m.data(), k.mac, 6);
			out.emplace(m, v.ifindex);
		}
	return out;
}

} // namespace kvmxdp
