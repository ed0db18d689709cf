// SPDX-License-Identifier: GPL-2.0
#include "gc.hpp"

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <cerrno>
#include <ctime>
#include <cstring>
#include <set>
#include <tuple>
#include <vector>

#include "error.hpp"
#include "maps.hpp"

namespace kvmxdp {

kvx_timeouts default_timeouts()
{
	kvx_timeouts t{};
	t.tcp_syn_sent = 120;
	t.tcp_established = 432000;
	t.tcp_fin_wait = 120;
	t.tcp_time_wait = 120;
	t.tcp_close = 10;
	t.udp = 30;
	t.udp_stream = 120;
	t.icmp = 30;
	t.other = 600;
	return t;
}

uint32_t ct_timeout_s(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t)
{
	switch (val.state) {
	case KVX_CT_SYN_SENT:
		return t.tcp_syn_sent;
	case KVX_CT_ESTABLISHED:
		return t.tcp_established;
	case KVX_CT_FIN_WAIT:
		return t.tcp_fin_wait;
	case KVX_CT_TIME_WAIT:
		return t.tcp_time_wait;
	case KVX_CT_CLOSE:
		return t.tcp_close;
	case KVX_CT_UDP:
		if (proto == IPPROTO_UDP)
			return (val.flags & KVX_CT_F_SEEN_REPLY) ? t.udp_stream : t.udp;
		if (proto == IPPROTO_ICMP)
			return t.icmp;
		return t.other;
	default:
		// NONE or an unknown state (a newer datapath?): the shortest TCP
		// timeout would kill live flows, "other" is the cautious choice
		// for non-TCP; a TCP flow without a state is a half-created one.
		return proto == IPPROTO_TCP ? t.tcp_syn_sent : t.other;
	}
}

bool ct_expired(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t, uint64_t now_ns)
{
	uint64_t deadline =
		val.last_seen_ns + uint64_t{ct_timeout_s(val, proto, t)} * 1000000000ULL;
	return deadline < now_ns;
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

namespace {

bool is_static(const kvx_bind_val &v)
{
	return (v.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) != 0;
}

using ExtKey = std::tuple<uint8_t, uint32_t, uint16_t>; // proto, addr_be, port_be

// Deletes pairs selected by pick(in_key, in_val, out_val_or_null) and
// orphaned OUT halves selected by pick_orphan(out_key, out_val).
template <typename Pick, typename PickOrphan>
size_t delete_bindings(int bind_fd, Pick pick, PickOrphan pick_orphan)
{
	auto entries = dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd);
	std::set<std::tuple<uint8_t, uint8_t, uint16_t, uint32_t>> present;
	for (const auto &[k, v] : entries)
		present.insert({k.dir, k.proto, k.port, k.addr});
	size_t deleted = 0;
	auto del = [&](const kvx_bind_key &k) {
		if (bpf_map_delete_elem(bind_fd, &k) == 0)
			deleted++;
	};
	for (const auto &[k, v] : entries) {
		if (k.dir == KVX_BIND_IN) {
			kvx_bind_key out{};
			out.dir = KVX_BIND_OUT;
			out.proto = k.proto;
			out.port = v.port;
			out.addr = v.addr;
			kvx_bind_val out_val{};
			bool has_out = bpf_map_lookup_elem(bind_fd, &out, &out_val) == 0;
			// Only an OUT half pointing back at this external endpoint
			// belongs to the pair.
			bool paired = has_out && out_val.addr == k.addr && out_val.port == k.port;
			if (!pick(k, v, paired ? &out_val : nullptr))
				continue;
			if (paired)
				del(out); // OUT first
			del(k);
		} else if (k.dir == KVX_BIND_OUT) {
			bool has_in = present.count({KVX_BIND_IN, k.proto, v.port, v.addr}) != 0;
			if (!has_in && pick_orphan(k, v))
				del(k);
		}
	}
	return deleted;
}

} // namespace

SweepResult gc_sweep(int ct_fd, int bind_fd, const kvx_timeouts &t, uint64_t now_ns)
{
	SweepResult r;
	std::set<ExtKey> referenced;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd)) {
		if (ct_expired(v, k.proto, t, now_ns)) {
			if (bpf_map_delete_elem(ct_fd, &k) == 0)
				r.ct_deleted++;
			continue;
		}
		referenced.insert({k.proto, v.ext_addr, v.ext_port});
	}
	r.bind_deleted = delete_bindings(
		bind_fd,
		[&](const kvx_bind_key &k, const kvx_bind_val &v, const kvx_bind_val *out) {
			if (is_static(v))
				return false;
			if (referenced.count({k.proto, k.addr, k.port}))
				return false;
			uint64_t last = v.last_used_ns;
			if (out && out->last_used_ns > last)
				last = out->last_used_ns;
			return bind_idle(last, now_ns);
		},
		[&](const kvx_bind_key &, const kvx_bind_val &v) {
			return !is_static(v) && bind_idle(v.last_used_ns, now_ns);
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
			return k.addr == addr_be && !is_static(v);
		},
		[&](const kvx_bind_key &, const kvx_bind_val &v) {
			return v.addr == addr_be && !is_static(v);
		});
	return r;
}

} // namespace kvmxdp
