// SPDX-License-Identifier: GPL-2.0
#include "control/relay.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "base/error.hpp"
#include "control/dad.hpp"
#include "kernel/maps.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/relay.hpp"

namespace kvmxdp {

namespace {

std::vector<NdEntry> dump_nd(int nd_fd)
{
	std::vector<NdEntry> entries;
	for (const auto &[k, v] : dump_hash<kvx_nd_key, kvx_nd_val>(nd_fd)) {
		NdEntry e;
		std::memcpy(e.addr.data(), k.addr, sizeof(k.addr));
		e.val = v;
		entries.push_back(e);
	}
	return entries;
}

// kvmxdp's /128 routes on the bridge.
std::vector<Ipv6Addr> relay_routes(NlSocket &nl, int bridge_ifindex)
{
	std::vector<Ipv6Addr> out;
	for (const Ipv6Route &r : ipv6_routes(nl, bridge_ifindex))
		if (r.protocol == kRelayRouteProto && r.dst.prefix == 128 && !r.gateway)
			out.push_back(r.dst.addr);
	return out;
}

} // namespace

NdSyncResult sync_nd(int nd_fd, const std::optional<Ipv6Net> &prefix,
		     const std::vector<Ipv6Addr> &host_addrs)
{
	const NdSync plan = plan_nd_sync(dump_nd(nd_fd), prefix, host_addrs);
	NdSyncResult r;
	for (const Ipv6Addr &a : plan.del) {
		kvx_nd_key k{};
		std::memcpy(k.addr, a.data(), sizeof(k.addr));
		if (bpf_map_delete_elem(nd_fd, &k) == 0)
			r.deleted++;
		else if (errno != ENOENT)
			throw_errno("delete a guest address from kvx_nd", format_ipv6(a));
	}
	for (const Ipv6Addr &a : plan.host) {
		kvx_nd_key k{};
		kvx_nd_val v{};
		std::memcpy(k.addr, a.data(), sizeof(k.addr));
		v.state = KVX_ND_HOST;
		if (bpf_map_update_elem(nd_fd, &k, &v, BPF_ANY) != 0)
			throw_errno("write the host's address to kvx_nd", format_ipv6(a));
		r.host++;
	}
	return r;
}

size_t expire_nd(int nd_fd, uint64_t now_ns)
{
	size_t n = 0;
	for (const Ipv6Addr &a : nd_expired(dump_nd(nd_fd), now_ns)) {
		kvx_nd_key k{};
		std::memcpy(k.addr, a.data(), sizeof(k.addr));
		if (bpf_map_delete_elem(nd_fd, &k) == 0)
			n++;
		else if (errno != ENOENT)
			throw_errno("delete an idle guest address from kvx_nd", format_ipv6(a));
	}
	return n;
}

RelayRoutesResult sync_relay_routes(NlSocket &nl, int bridge_ifindex, int nd_fd,
				    const std::optional<Ipv6Net> &prefix, uint64_t now_ns)
{
	RelayRoutesResult r;
	r.expired = expire_nd(nd_fd, now_ns);
	const std::vector<NdEntry> entries = dump_nd(nd_fd);
	const RouteSync plan =
		plan_relay_routes(entries, prefix, relay_routes(nl, bridge_ifindex), now_ns);
	for (const Ipv6Addr &a : plan.del)
		r.removed +=
			remove_ipv6_route(nl, bridge_ifindex, Ipv6Net{a, 128}, kRelayRouteProto);
	for (const Ipv6Addr &a : plan.add) {
		add_ipv6_route(nl, bridge_ifindex, Ipv6Net{a, 128}, kRelayRouteProto);
		r.added++;
	}
	return r;
}

size_t remove_relay_routes(NlSocket &nl, int bridge_ifindex)
{
	size_t n = 0;
	for (const Ipv6Addr &a : relay_routes(nl, bridge_ifindex))
		n += remove_ipv6_route(nl, bridge_ifindex, Ipv6Net{a, 128}, kRelayRouteProto);
	return n;
}

namespace {

// Deletes the entry at key of a table of owners (kvx_nd, kvx_guest) if it
// still names mac and may_go(it) holds: since the dump, the datapath may
// have given the address to another MAC (a new owner's claim stands).
template <typename V, typename K, typename Pred>
bool release_if_still(int fd, const K &key, const MacAddr &mac, Pred may_go)
{
	V now{};
	return bpf_map_lookup_elem(fd, &key, &now) == 0 && !std::memcmp(now.mac, mac.data(), 6) &&
	       may_go(now) && bpf_map_delete_elem(fd, &key) == 0;
}

// Clears the MACs (guest_mac, gw_mac) of the bindings whose kvx_bind_val
// pick(key, value) returns; how many.  Written whole, so only an entry
// unchanged since the dump, and not a closed flow's (KVX_BIND_F_TW), which
// the datapath hands to a new SYN whenever one comes.  What the datapath
// changes in place between the read and the write (a refresh) is lost,
// and made again by the next packet.
template <typename K, typename V, typename Pick>
size_t forget_mac(int fd, Pick pick)
{
	size_t n = 0;
	for (auto [k, v] : dump_hash<K, V>(fd)) {
		const kvx_bind_val *b = pick(k, v);
		if (!b || (b->flags & KVX_BIND_F_TW))
			continue;
		V now{};
		if (bpf_map_lookup_elem(fd, &k, &now) || std::memcmp(&now, &v, sizeof(V)))
			continue; // gone, or changed: its next guest's already
		kvx_bind_val *w = pick(k, now);
		std::memset(w->guest_mac, 0, sizeof(w->guest_mac));
		std::memset(w->gw_mac, 0, sizeof(w->gw_mac));
		if (bpf_map_update_elem(fd, &k, &now, BPF_EXIST) == 0)
			n++;
	}
	return n;
}

} // namespace

size_t forget_guest_macs(int bind_fd, const std::set<std::pair<__be32, MacAddr>> &gone)
{
	return forget_mac<kvx_bind_key, kvx_bind_val>(
		bind_fd, [&](const kvx_bind_key &k, kvx_bind_val &v) -> kvx_bind_val * {
			MacAddr m;
			std::memcpy(m.data(), v.guest_mac, 6);
			return k.dir == KVX_BIND_IN && gone.count({v.addr, m}) ? &v : nullptr;
		});
}

size_t forget_guest_macs6(int bind6_fd, const std::set<std::pair<Ipv6Addr, MacAddr>> &gone)
{
	return forget_mac<kvx_bind6_key, kvx_bind6_val>(
		bind6_fd, [&](const kvx_bind6_key &k, kvx_bind6_val &v) -> kvx_bind_val * {
			Ipv6Addr a;
			MacAddr m;
			std::memcpy(a.data(), v.addr, 16);
			std::memcpy(m.data(), v.bind.guest_mac, 6);
			// A relay mapping's (the address to itself) stays its
			// guest's: another that takes the address while it is
			// away must not get its clients (relay6.h).
			if (std::memcmp(k.addr, v.addr, 16) == 0 &&
			    (v.bind.flags & KVX_BIND_F_STATIC))
				return nullptr;
			return k.dir == KVX_BIND_IN && gone.count({a, m}) ? &v.bind : nullptr;
		});
}

FdbView fdb_view(const std::vector<FdbEntry> &fdb, int bridge_ifindex)
{
	FdbView v;
	for (const FdbEntry &e : fdb) {
		if (e.ifindex <= 0 || e.ifindex == bridge_ifindex)
			continue;
		const auto port = static_cast<uint32_t>(e.ifindex);
		auto [it, fresh] = v.port.try_emplace(e.mac, port);
		if (!fresh && it->second != port)
			v.split.insert(e.mac);
		it->second = port;
		if (!e.dynamic)
			v.fixed.insert(e.mac);
	}
	return v;
}

BrportSyncResult sync_brport(NlSocket &nl, int bridge_ifindex, int brport_fd, int nd_fd,
			     int guest_fd, uint64_t now_ns, int bind_fd, int bind6_fd,
			     PortGuardState *guard)
{
	BrportSyncResult r;
	FdbView view = fdb_view(bridge_fdb(nl, bridge_ifindex), bridge_ifindex);
	std::map<MacAddr, uint32_t> &fdb = view.port, have;
	const std::set<MacAddr> &fixed = view.fixed, &split = view.split;
	// MACs whose placement moved within kMoveHoldNs: the time of the
	// move is in the entry (seen_ns), so that it outlives the daemon.
	std::set<MacAddr> moved;
	// The port guard (abi.h KVX_BRPORT_F_HELD): where the bridge has each
	// MAC now, before owners it forgot are kept placed below, and since
	// when without a move.
	const std::map<MacAddr, uint32_t> live = fdb;
	std::set<MacAddr> contested; // seen on another port since the last look
	auto held_on = [&](const MacAddr &mac, uint32_t port) {
		const auto l = live.find(mac);
		if (!guard || !guard->on || l == live.end() || l->second != port ||
		    moved.count(mac) || contested.count(mac) || split.count(mac))
			return false;
		if (fixed.count(mac))
			return true;
		const uint64_t since = guard->since.at(mac).second;
		return since <= now_ns && now_ns - since >= kGuardSettleNs;
	};
	std::map<MacAddr, kvx_xfdb_val> have_val;
	for (const auto &[k, v] : dump_hash<kvx_xfdb_key, kvx_xfdb_val>(brport_fd)) {
		MacAddr mac;
		std::memcpy(mac.data(), k.mac, 6);
		have[mac] = v.ifindex;
		have_val[mac] = v;
		// A move "after" now_ns cannot be (the pin does not outlive
		// a boot, when CLOCK_BOOTTIME restarts): ignored rather than
		// trusted to hold the MAC.
		if (v.seen_ns && v.seen_ns <= now_ns && now_ns - v.seen_ns < kMoveHoldNs)
			moved.insert(mac);
	}
	if (guard) {
		for (auto it = guard->since.begin(); it != guard->since.end();)
			it = live.count(it->first) ? std::next(it) : guard->since.erase(it);
		for (const auto &[mac, port] : live) {
			auto [it, fresh] = guard->since.try_emplace(mac, port, now_ns);
			const auto h = have_val.find(mac);
			if (!fresh && it->second.first != port) {
				// Moved since the last look (a static entry too).
				it->second = {port, now_ns};
				contested.insert(mac);
			} else if (h == have_val.end()) {
				continue; // new to kvx_brport: settles from now
			} else if ((h->second.flags & KVX_BRPORT_F_CONTESTED) ||
				   (fresh && h->second.ifindex != port)) {
				// Seen on another port since the last look, or
				// moved while no daemon looked.
				it->second = {port, now_ns};
				contested.insert(mac);
			} else if (fresh && (h->second.flags & KVX_BRPORT_F_HELD) &&
				   now_ns >= kGuardSettleNs) {
				// Held by the daemon before this one (a restart):
				// still held, not unguarded for a settle.
				it->second = {port, now_ns - kGuardSettleNs};
			}
		}
	}
	// Each guest entry's owner (none: the host's, or no state).
	std::vector<std::pair<Ipv6Addr, MacAddr>> guest;
	std::set<MacAddr> owners; // both families' (IPv4 ones below)
	if (nd_fd >= 0)
		for (const NdEntry &e : dump_nd(nd_fd))
			if (e.val.state != KVX_ND_NONE && e.val.state != KVX_ND_HOST) {
				MacAddr m;
				std::memcpy(m.data(), e.val.mac, 6);
				guest.emplace_back(e.addr, m);
				owners.insert(m);
			}
	// Learnt IPv4 owners: kept placed and released as the IPv6 ones
	// (aging), and ahead of other MACs for a port's places (plan_brport)
	// as they are: a MAC that owns an address may hold flows, which a
	// placement taken back would move to the shared slot at the next
	// recount (its port's quota free for more).
	// Leased ones too, which are not released (the lease lasts) but
	// marked KVX_GUEST_F_GONE while their MAC has no port.
	std::vector<std::pair<__be32, MacAddr>> guest4, leased4, back4;
	if (guest_fd >= 0)
		for (const auto &[a, v] : dump_hash<__be32, kvx_guest_val>(guest_fd)) {
			MacAddr m;
			std::memcpy(m.data(), v.mac, 6);
			owners.insert(m);
			if (!(v.flags & KVX_GUEST_F_LEASE))
				guest4.emplace_back(a, m);
			else if (!(v.flags & KVX_GUEST_F_GONE))
				leased4.emplace_back(a, m);
			else if (fdb.count(m))
				back4.emplace_back(a, m);
		}
	// The placed MACs' ports that are still links (a bridge re-created,
	// a tap out of it for a moment: still there; its VM destroyed: gone).
	std::set<uint32_t> ports, asked; // one question per port, not per MAC
	char name[IF_NAMESIZE];
	for (const auto &[mac, port] : have)
		if (asked.insert(port).second && ::if_indextoname(port, name))
			ports.insert(port);
	const BrportAging aging = plan_brport_aging(fdb, have, owners, ports, moved);
	fdb.insert(aging.keep.begin(), aging.keep.end());
	std::set<std::pair<Ipv6Addr, MacAddr>> freed6;
	for (const auto &[addr, m] : guest) {
		kvx_nd_key k{};
		std::memcpy(k.addr, addr.data(), sizeof(k.addr));
		if (aging.gone.count(m) &&
		    release_if_still<kvx_nd_val>(nd_fd, k, m,
						 [](const kvx_nd_val &) { return true; })) {
			r.released++;
			freed6.emplace(addr, m);
		}
	}
	std::set<std::pair<__be32, MacAddr>> freed4;
	for (const auto &[addr, m] : guest4)
		if (aging.gone.count(m) &&
		    release_if_still<kvx_guest_val>(guest_fd, addr, m, [](const kvx_guest_val &v) {
			    return !(v.flags & KVX_GUEST_F_LEASE); // learnt, not a lease since
		    })) {
			r.released4++;
			freed4.emplace(addr, m);
		}
	auto lease_gone = [&](__be32 addr, const MacAddr &m, bool gone) {
		kvx_guest_val v{};
		if (bpf_map_lookup_elem(guest_fd, &addr, &v) || std::memcmp(v.mac, m.data(), 6) ||
		    !(v.flags & KVX_GUEST_F_LEASE))
			return false;
		v.flags = static_cast<__u16>(gone ? v.flags | KVX_GUEST_F_GONE :
						    v.flags & ~KVX_GUEST_F_GONE);
		return bpf_map_update_elem(guest_fd, &addr, &v, BPF_EXIST) == 0;
	};
	for (const auto &[addr, m] : leased4)
		if (aging.gone.count(m) && lease_gone(addr, m, true)) {
			r.gone4++;
			freed4.emplace(addr, m);
		}
	for (const auto &[addr, m] : back4)
		if (lease_gone(addr, m, false))
			r.back4++;
	// Their bindings forget the MAC: it is gone, and the bridge would
	// flood what comes in for it to every guest until the address's
	// next owner sends.  A binding without a MAC delivers to the owner,
	// or through the neighbour table (ct.h guest_mac_from_owner, ct6.h
	// guest6_mac_from_owner).
	if (!freed4.empty() && bind_fd >= 0)
		r.unbound4 = forget_guest_macs(bind_fd, freed4);
	if (!freed6.empty() && bind6_fd >= 0)
		r.unbound6 = forget_guest_macs6(bind6_fd, freed6);
	// The host's neighbour entries for them go too, where they still name
	// the gone MAC: the datapath falls back to them, and so does the
	// host's own traffic, and a stale entry is used (and flooded) for
	// seconds before the kernel asks again.
	for (const auto &[addr, m] : freed4)
		if (neighbour_mac(nl, bridge_ifindex, ntohl(addr)) == m &&
		    neighbour_forget(nl, bridge_ifindex, ntohl(addr)))
			r.neigh_forgotten++;
	if (!freed6.empty()) {
		// One dump of the table for a guest's addresses (up to 16).
		std::vector<Ipv6Addr> addrs;
		for (const auto &[addr, m] : freed6)
			addrs.push_back(addr);
		const auto macs = neighbour_macs6(nl, bridge_ifindex, addrs);
		size_t i = 0;
		for (const auto &[addr, m] : freed6)
			if (macs[i++] == m && neighbour_forget6(nl, bridge_ifindex, addr))
				r.neigh_forgotten++;
	}
	const BrportPlan plan =
		plan_brport(fdb, have, owners, map_info(brport_fd, "kvx_brport").max_entries);
	for (const MacAddr &mac : plan.del) {
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac.data(), 6);
		if (bpf_map_delete_elem(brport_fd, &k) == 0)
			r.removed++;
	}
	for (const auto &[mac, ifindex] : plan.put) {
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac.data(), 6);
		kvx_xfdb_val v{};
		v.ifindex = ifindex;
		v.flags = held_on(mac, ifindex) ? KVX_BRPORT_F_HELD : 0;
		// From a port that still exists: a move (a spoof moves a MAC
		// from its owner's port, which stays).  From a deleted one (a
		// VM's tap re-created while the daemon was away): placed anew.
		const auto h = have.find(mac);
		const bool moves = h != have.end() && ports.count(h->second);
		if (moves)
			v.seen_ns = now_ns;
		if (bpf_map_update_elem(brport_fd, &k, &v, BPF_ANY) != 0)
			continue;
		if (h == have.end())
			r.added++;
		else
			r.moved++;
		have_val.erase(mac);
	}
	// The others stay where they are; only whether their port holds
	// them changes (settled, an owner's entry aged out, and back).
	for (const MacAddr &mac : plan.del)
		have_val.erase(mac);
	for (auto &[mac, v] : have_val) {
		const __u32 want = held_on(mac, v.ifindex) ? KVX_BRPORT_F_HELD : 0;
		if ((v.flags & (KVX_BRPORT_F_HELD | KVX_BRPORT_F_CONTESTED)) == want)
			continue;
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac.data(), 6);
		v.flags = (v.flags & ~(KVX_BRPORT_F_HELD | KVX_BRPORT_F_CONTESTED)) | want;
		if (bpf_map_update_elem(brport_fd, &k, &v, BPF_EXIST) == 0)
			r.held_changed++;
	}
	r.unplaced = plan.unplaced;
	return r;
}

size_t seed_nd(int nd_fd, int bind6_fd, const Ipv6Net &subnet, uint64_t now_ns)
{
	std::vector<BindOwner> bindings;
	for (const auto &[k, v] : dump_hash<kvx_bind6_key, kvx_bind6_val>(bind6_fd)) {
		if (k.dir != KVX_BIND_IN ||
		    (v.bind.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)))
			continue;
		BindOwner b;
		std::memcpy(b.addr.data(), v.addr, 16);
		std::memcpy(b.mac.data(), v.bind.guest_mac, 6);
		bindings.push_back(b);
	}
	size_t n = 0;
	for (const auto &[addr, mac] : plan_nd_seed(bindings, subnet)) {
		kvx_nd_key k{};
		std::memcpy(k.addr, addr.data(), sizeof(k.addr));
		kvx_nd_val v{};
		std::memcpy(v.mac, mac.data(), 6);
		v.state = KVX_ND_OWNED;
		v.last_seen_ns = now_ns;
		v.dad_ns = now_ns;
		if (bpf_map_update_elem(nd_fd, &k, &v, BPF_NOEXIST) == 0)
			n++;
		else if (errno != EEXIST)
			throw_errno("write a guest's IPv6 owner to kvx_nd", format_ipv6(addr));
	}
	return n;
}

ProbeResult probe_relay_claims(int nd_fd, int uplink_ifindex, uint64_t now_ns,
			       const ProbeCounters &counters)
{
	ProbeResult res;
	if (uplink_ifindex <= 0)
		return res;
	for (const Ipv6Addr &a : nd_to_probe(dump_nd(nd_fd))) {
		kvx_nd_key k{};
		std::memcpy(k.addr, a.data(), sizeof(k.addr));
		kvx_nd_val v{};
		if (bpf_map_lookup_elem(nd_fd, &k, &v) != 0 || v.state != KVX_ND_PENDING ||
		    v.dad_probes)
			continue;
		// Marked first: a defence that comes back before the mark
		// would be overwritten by it.
		v.dad_probes = 1;
		v.dad_ns = now_ns;
		if (bpf_map_update_elem(nd_fd, &k, &v, BPF_EXIST) != 0)
			continue;
		try {
			send_dad_probe(uplink_ifindex, a);
			res.probed++;
		} catch (const Error &e) {
			// Marked probed with nothing sent, it would be owned
			// in a second without a DAD: forgotten (the guest's
			// next frame claims it again), its count with it, and
			// the other claims still probed.
			if (bpf_map_delete_elem(nd_fd, &k) == 0)
				nd_uncount(v, counters);
			if (!res.failed++)
				res.error = e.what();
		}
	}
	return res;
}

void nd_uncount(const kvx_nd_val &v, const ProbeCounters &c)
{
	if (c.gaddrs_fd < 0)
		return;
	uint32_t port = 0;
	if (c.brport_fd >= 0) {
		kvx_xfdb_key k{};
		std::memcpy(k.mac, v.mac, 6);
		kvx_xfdb_val pv{};
		if (bpf_map_lookup_elem(c.brport_fd, &k, &pv) == 0)
			port = pv.ifindex;
	}
	// As owner6.h nd_guest_count; a racing datapath +1/-1 is the GC
	// recount's to repair, as any drift of kvx_gaddrs.
	const uint32_t slot = kvx_port_slot(port, c.seed);
	uint32_t n = 0;
	if (bpf_map_lookup_elem(c.gaddrs_fd, &slot, &n) == 0 && n > 0) {
		n--;
		bpf_map_update_elem(c.gaddrs_fd, &slot, &n, BPF_EXIST);
	}
}

size_t carry_nd(int old_fd, int new_fd)
{
	const MapInfo info = map_info(old_fd, "the replaced kvx_nd");
	if (info.key_size != sizeof(kvx_nd_key) ||
	    (info.value_size != 24 && info.value_size != sizeof(kvx_nd_val)))
		return 0;
	size_t n = 0;
	kvx_nd_key k{}, next{};
	const kvx_nd_key *prev = nullptr;
	while (bpf_map_get_next_key(old_fd, prev, &next) == 0) {
		k = next;
		prev = &k;
		std::optional<kvx_nd_val> v;
		if (info.value_size == 24) {
			uint8_t old[24];
			if (bpf_map_lookup_elem(old_fd, &k, old) == 0)
				v = nd_from_abi16(old);
		} else {
			kvx_nd_val cur{};
			if (bpf_map_lookup_elem(old_fd, &k, &cur) == 0 && cur.state != KVX_ND_HOST)
				v = cur;
		}
		if (v && bpf_map_update_elem(new_fd, &k, &*v, BPF_NOEXIST) == 0)
			n++;
	}
	return n;
}

std::vector<Ipv6Addr> host_addrs6(const std::vector<Ipv6IfAddr> &addrs)
{
	std::vector<Ipv6Addr> out;
	for (const Ipv6IfAddr &a : addrs)
		if (a.scope == RT_SCOPE_UNIVERSE)
			out.push_back(a.addr);
	return out;
}

} // namespace kvmxdp
