// SPDX-License-Identifier: GPL-2.0
#include "control/mapping_sync.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "control/gc.hpp"

#include "base/error.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "kernel/maps.hpp"
#include "kernel/arp.hpp"
#include "kernel/netlink.hpp"
#include "kernel/routes.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

bool key_less(const kvx_bind_key &a, const kvx_bind_key &b)
{
	return std::memcmp(&a, &b, sizeof(a)) < 0;
}
using KeySet = std::set<kvx_bind_key, decltype(&key_less)>;

bool same_target(const kvx_bind_val &a, const kvx_bind_val &b)
{
	return a.addr == b.addr && a.port == b.port && a.flags == b.flags;
}

std::string bind_str(const kvx_bind_key &k)
{
	std::string p = k.proto == IPPROTO_TCP ? "tcp" : k.proto == IPPROTO_UDP ? "udp" : "any";
	return format_ipv4(ntohl(k.addr)) + (k.proto ? ":" + std::to_string(ntohs(k.port)) : "") +
	       "/" + p;
}

std::string guest_str(const kvx_bind_key &k, const kvx_bind_val &v)
{
	return format_ipv4(ntohl(v.addr)) + (k.proto ? ":" + std::to_string(ntohs(v.port)) : "");
}


} // namespace

ApplyResult apply_mappings(const MapFds &fds, const std::vector<StaticMapping> &mappings,
			   uint32_t uplink_addr, const std::optional<NetId> &cur, bool strict_last,
			   const ProbeVerdicts &probed)
{
	ApplyResult r;
	// Desired state.
	std::vector<std::vector<BindEntry>> per_mapping(mappings.size());
	std::map<kvx_bind_key, kvx_bind_val, decltype(&key_less)> want(&key_less);
	std::map<uint32_t, uint32_t> ext_flags; // be32 -> flags
	std::map<uint32_t, bool> ext_any_active;
	const auto own_addr = [&](const StaticMapping &sm) {
		return !sm.m.ext_uplink && sm.m.ext_addr != uplink_addr;
	};
	for (const StaticMapping &sm : mappings) {
		if (!own_addr(sm))
			continue;
		uint32_t be = htonl(sm.m.ext_addr);
		ext_flags[be] |= sm.add_address ? 0 : KVX_EXT_F_ARP;
		ext_any_active[be] = ext_any_active[be] || mapping_active(sm, cur);
	}
	// Addresses coming back from suspension wait for their probe.
	const auto have_flags = dump_hash<uint32_t, kvx_extaddr_val>(fds.extaddr);
	for (auto &[be, f] : ext_flags) {
		if (!ext_any_active[be]) {
			f |= KVX_EXT_F_SUSPENDED;
			continue;
		}
		auto prev = std::find_if(have_flags.begin(), have_flags.end(),
					 [be = be](const auto &kv) { return kv.first == be; });
		if (prev == have_flags.end() || !(prev->second.flags & KVX_EXT_F_SUSPENDED))
			continue;
		auto v = probed.find(ntohl(be));
		if (v != probed.end() && v->second == ProbeVerdict::Free) {
			r.resumed.push_back(ntohl(be));
			continue;
		}
		const uint32_t why =
			(v != probed.end() || (prev->second.flags & KVX_EXT_F_CONFLICT)) ?
				KVX_EXT_F_CONFLICT :
				KVX_EXT_F_PROBING;
		f |= KVX_EXT_F_SUSPENDED | why;
		r.held[ntohl(be)] = why;
	}
	for (size_t i = 0; i < mappings.size(); i++) {
		const StaticMapping &sm = mappings[i];
		if (!mapping_active(sm, cur) || (own_addr(sm) && r.held.count(sm.m.ext_addr)))
			continue;
		per_mapping[i] = mapping_entries(sm.m, uplink_addr);
		for (const auto &e : per_mapping[i])
			want[e.key] = e.val;
	}

	// Stale static entries: OUT halves first, then IN halves.
	auto entries = dump_hash<kvx_bind_key, kvx_bind_val>(fds.bind);
	std::set<std::tuple<uint8_t, uint32_t, uint16_t>> gone_in; // proto, addr, port
	std::set<uint32_t> gone_1to1;
	for (int dir : {KVX_BIND_OUT, KVX_BIND_IN}) {
		for (const auto &[k, v] : entries) {
			if (k.dir != dir || !(v.flags & KVX_BIND_F_STATIC))
				continue;
			auto it = want.find(k);
			if (it != want.end() && same_target(it->second, v))
				continue;
			if (bpf_map_delete_elem(fds.bind, &k) == 0)
				r.bind_deleted++;
			if (dir == KVX_BIND_IN) {
				if (v.flags & KVX_BIND_F_ONE_TO_ONE)
					gone_1to1.insert(k.addr);
				else
					gone_in.insert({k.proto, k.addr, k.port});
			}
		}
	}
	// Flows bound through a deleted IN half: their packets could only
	// go to the host now (and a stale flow would pin the old binding).
	if ((!gone_in.empty() || !gone_1to1.empty()) && fds.ct >= 0) {
		for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(fds.ct)) {
			if (!(v.flags & KVX_CT_F_STATIC))
				continue;
			bool hit = (v.flags & KVX_CT_F_ONE_TO_ONE) ?
					   gone_1to1.count(v.ext_addr) != 0 :
					   gone_in.count({k.proto, v.ext_addr, v.ext_port}) != 0;
			if (hit && bpf_map_delete_elem(fds.ct, &k) == 0)
				r.ct_deleted++;
		}
	}

	// Address flags before the pairs: an address being suspended stops
	// answering ARP first; a new one is answered once its pairs exist.
	auto write_flags = [&](bool suspended) {
		for (const auto &[be, f] : ext_flags) {
			if (!(f & KVX_EXT_F_SUSPENDED) != !suspended)
				continue;
			kvx_extaddr_val have{}, v{};
			v.flags = f;
			if (bpf_map_lookup_elem(fds.extaddr, &be, &have) == 0 && have.flags == f)
				continue;
			if (bpf_map_update_elem(fds.extaddr, &be, &v, BPF_ANY) != 0)
				r.errors.push_back("kvx_extaddr " + format_ipv4(ntohl(be)) + ": " +
						   std::strerror(errno));
		}
	};
	for (const auto &[k, v] : dump_hash<uint32_t, kvx_extaddr_val>(fds.extaddr))
		if (!ext_flags.count(k))
			bpf_map_delete_elem(fds.extaddr, &k);
	write_flags(true);

	// Install, mapping by mapping: its IN halves, then its OUT halves.
	std::set<std::tuple<uint8_t, uint32_t, uint16_t>> evicted; // proto, addr, port
	for (size_t i = 0; i < mappings.size(); i++) {
		const auto &ents = per_mapping[i];
		const bool strict = strict_last && i + 1 == mappings.size();
		std::vector<kvx_bind_key> added;
		std::string conflict;
		for (const auto &e : ents) {
			if (e.key.dir != KVX_BIND_IN)
				continue;
			// A datapath claim between the lookup and the insert
			// is evicted on the next round.
			bool ours = false, done = false;
			for (int round = 0; round < 3 && !done && conflict.empty(); round++) {
				kvx_bind_val have{};
				int flag = BPF_NOEXIST;
				if (bpf_map_lookup_elem(fds.bind, &e.key, &have) == 0) {
					if ((have.flags & KVX_BIND_F_STATIC) &&
					    same_target(have, e.val)) {
						ours = true; // MACs learnt by the datapath
						break;
					}
					if (have.flags &
					    (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) {
						conflict =
							"external " + bind_str(e.key) +
							" is in use by another mapping, to guest " +
							guest_str(e.key, have);
						break;
					}
					// A guest's dynamic binding holds the port
					// (the pool and the mappings share the
					// uplink's ports): the admin's mapping wins,
					// or any guest could keep a forward from
					// being made or restored by holding its
					// port.  The guest's OUT half goes first
					// (pair order, abi.h); the IN half is then
					// replaced in one update.  Its port count
					// (kvx_gports) is recounted by the daemon's
					// next sweep.
					release_out_half(fds.bind, e.key, have);
					evicted.insert({e.key.proto, e.key.addr, e.key.port});
					log_note("mapping '" + mappings[i].m.str() +
						 "': external " + bind_str(e.key) +
						 " taken from a NAT binding of guest " +
						 guest_str(e.key, have) +
						 " (its flows through it flushed; its next "
						 "packet gets another port)");
					flag = BPF_ANY;
				}
				if (bpf_map_update_elem(fds.bind, &e.key, &e.val, flag) == 0)
					done = true;
				else if (errno != EEXIST)
					conflict = "external " + bind_str(e.key) + ": " +
						   std::strerror(errno);
			}
			if (ours)
				continue;
			if (!done && conflict.empty())
				conflict = "external " + bind_str(e.key) +
					   ": taken by new NAT bindings again and again";
			if (!conflict.empty())
				break;
			added.push_back(e.key);
			r.bind_added++;
		}
		if (!conflict.empty()) {
			for (const auto &k : added)
				bpf_map_delete_elem(fds.bind, &k);
			r.bind_added -= added.size();
			std::string msg = "mapping '" + mappings[i].m.str() + "': " + conflict;
			if (strict)
				throw Error(msg);
			r.errors.push_back(msg);
			continue;
		}
		for (const auto &e : ents) {
			if (e.key.dir != KVX_BIND_OUT)
				continue;
			kvx_bind_val have{};
			if (bpf_map_lookup_elem(fds.bind, &e.key, &have) == 0 &&
			    (have.flags & KVX_BIND_F_STATIC) && same_target(have, e.val))
				continue;
			// A dynamic OUT binding of this guest port may exist:
			// the mapping replaces it (its IN half expires in GC).
			if (bpf_map_update_elem(fds.bind, &e.key, &e.val, BPF_ANY) != 0) {
				r.errors.push_back("mapping '" + mappings[i].m.str() +
						   "': insert " + bind_str(e.key) + ": " +
						   std::strerror(errno));
				continue;
			}
			r.bind_added++;
		}
	}

	// The evicted bindings' flows: a packet of one could only find the
	// mapping's guest (inbound) or a pair that is no longer its own
	// (outbound, which the datapath re-binds to a new port anyway).
	// Flushed rather than left to expire: they would hold the guest's flow
	// quota and keep looking bound to a port that is now the mapping's.
	if (!evicted.empty() && fds.ct >= 0) {
		for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(fds.ct)) {
			if (v.flags & KVX_CT_F_STATIC)
				continue;
			if (evicted.count({k.proto, v.ext_addr, v.ext_port}) &&
			    bpf_map_delete_elem(fds.ct, &k) == 0)
				r.ct_deleted++;
		}
	}

	write_flags(false);
	return r;
}

std::optional<NetId> network_of_link(NlSocket &nl, int ifindex, bool resolve)
{
	auto a = primary_ipv4(ipv4_addrs(nl, ifindex));
	if (!a)
		return std::nullopt;
	NetId id;
	id.net = network_of(a->addr, a->prefix);
	if (auto gw = default_gateway(ipv4_routes(nl), ifindex)) {
		id.gateway = *gw;
		if (auto mac = neighbour_mac(nl, ifindex, *gw)) {
			id.gateway_mac = format_mac(*mac);
		} else if (resolve) {
			try {
				auto link = find_link_by_index(nl, ifindex);
				auto mac = link ? arp_probe(ifindex, link->mac, *gw, 1, 300) :
						  std::nullopt;
				if (mac)
					id.gateway_mac = format_mac(*mac);
			} catch (const Error &) {
				// No raw socket here: the MAC stays unknown.
			}
		}
	}
	return id;
}

json mappings_json(const Instance &inst, NlSocket &nl, int extaddr_fd)
{
	std::map<uint32_t, uint32_t> ext_flags; // host order -> KVX_EXT_F_*
	if (extaddr_fd >= 0) {
		try {
			for (const auto &[be, v] : dump_hash<uint32_t, kvx_extaddr_val>(extaddr_fd))
				ext_flags[ntohl(be)] = v.flags;
		} catch (const Error &) {
		}
	}
	std::optional<NetId> cur;
	uint32_t ua = 0;
	try {
		if (auto up = find_link(nl, inst.uplink)) {
			// As the daemon sees it (it resolves an unknown gateway).
			cur = network_of_link(nl, up->ifindex, true);
			if (auto a = primary_ipv4(ipv4_addrs(nl, up->ifindex)))
				ua = a->addr;
		}
	} catch (const Error &) {
	}
	json arr = json::array();
	for (const auto &sm : inst.mappings) {
		bool active = mapping_active(sm, cur);
		uint32_t ext = sm.m.ext(ua);
		// Held back on its own network by the daemon's probe (the
		// datapath sees it as suspended).  Still flagged suspended
		// without a finding: the daemon has not seen the network come
		// back yet, and will probe first (apply_mappings).
		uint32_t held = 0;
		if (active && !sm.m.ext_uplink) {
			auto f = ext_flags.find(sm.m.ext_addr);
			if (f != ext_flags.end() && (f->second & KVX_EXT_F_SUSPENDED))
				held = f->second & KVX_EXT_F_CONFLICT ? KVX_EXT_F_CONFLICT :
									KVX_EXT_F_PROBING;
		}
		std::string state = !cur && sm.network	      ? "no-uplink-address" :
				    !active		      ? "suspended" :
				    held & KVX_EXT_F_CONFLICT ? "conflict" :
				    held		      ? "probing" :
								"active";
		json reason = nullptr;
		if (state == "suspended")
			reason = "made on another network";
		else if (state == "conflict")
			reason = "another host answers ARP for " + format_ipv4(sm.m.ext_addr) +
				 " on this network (RFC 5227 probe): kept suspended, probed "
				 "again later";
		else if (state == "probing")
			reason = "back on its network: probing " + format_ipv4(sm.m.ext_addr) +
				 " (RFC 5227) before resuming";
		arr.push_back({
			{"ext", sm.m.ext_str()},
			{"guest", sm.m.guest_str()},
			{"proto", sm.m.one_to_one() ? "any" : sm.m.proto_str()},
			{"type", sm.m.one_to_one() ? "1:1" : "port-forward"},
			{"ext_addr", ext ? json(format_ipv4(ext)) : json(nullptr)},
			{"add_address", sm.add_address},
			{"network", sm.network ? json(sm.network->str()) : json(nullptr)},
			{"state", state},
			{"reason", reason},
			{"vm", sm.vm.empty() ? json(nullptr) : json(sm.vm)},
			{"libvirt_network",
			 sm.libvirt_network.empty() ? json(nullptr) : json(sm.libvirt_network)},
		});
	}
	return arr;
}

void remove_added_addresses(const Instance &inst)
{
	try {
		NlSocket nl;
		auto up = find_link(nl, inst.uplink);
		if (!up)
			return;
		std::set<uint32_t> done;
		for (const auto &sm : inst.mappings) {
			if (!sm.add_address || done.count(sm.m.ext_addr))
				continue;
			done.insert(sm.m.ext_addr);
			remove_ipv4_address(nl, up->ifindex, sm.m.ext_addr);
		}
	} catch (const Error &e) {
		log_warn(std::string("removing mapped addresses: ") + e.what());
	}
}

void remove_uplink_address(const std::string &uplink, const AddedAddress &a)
{
	NlSocket nl;
	if (auto up = find_link(nl, uplink))
		remove_ipv4_address(nl, up->ifindex, a.addr);
}

std::vector<AddedAddress> sync_added_addresses(const std::vector<StaticMapping> &mappings,
					       const std::string &uplink,
					       const std::optional<NetId> &cur,
					       const std::map<uint32_t, uint32_t> &held)
{
	std::vector<AddedAddress> added;
	try {
		NlSocket nl;
		auto up = find_link(nl, uplink);
		if (!up)
			return added;
		// One address may serve several mappings (1:1 plus forwards):
		// it stays while any of them is active.
		std::map<uint32_t, const StaticMapping *> want, all;
		for (const auto &sm : mappings) {
			if (!sm.add_address)
				continue;
			all.emplace(sm.m.ext_addr, &sm);
			// A held address stays off: the kernel would answer
			// ARP for it as the host's own.
			if (mapping_active(sm, cur) && !held.count(sm.m.ext_addr))
				want.emplace(sm.m.ext_addr, &sm);
		}
		for (const auto &[addr, sm] : all) {
			bool on = has_ipv4_address(nl, up->ifindex, addr);
			if (want.count(addr) && !on) {
				const uint8_t prefix = added_address_prefix(*sm, cur);
				add_ipv4_address(nl, up->ifindex, addr, prefix,
						 added_address_label(up->ifindex));
				added.push_back({addr, prefix});
			} else if (!want.count(addr) && on) {
				remove_ipv4_address(nl, up->ifindex, addr);
			}
		}
	} catch (const Error &e) {
		log_warn(std::string("mapped addresses on the uplink: ") + e.what());
	}
	return added;
}

} // namespace kvmxdp
