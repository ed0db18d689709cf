// SPDX-License-Identifier: GPL-2.0
#include "model/relay.hpp"

#include <algorithm>
#include <cstring>

namespace kvmxdp {

NdSync plan_nd_sync(const std::vector<NdEntry> &entries, const std::optional<Ipv6Net> &prefix,
		    const std::vector<Ipv6Addr> &host_addrs)
{
	NdSync s;
	auto in_prefix = [&](const Ipv6Addr &a) { return prefix && prefix->contains(a); };
	auto is_host = [&](const Ipv6Addr &a) {
		return std::find(host_addrs.begin(), host_addrs.end(), a) != host_addrs.end();
	};
	for (const NdEntry &e : entries)
		if (!in_prefix(e.addr) || (e.val.state == KVX_ND_HOST && !is_host(e.addr)))
			s.del.push_back(e.addr);
	for (const Ipv6Addr &a : host_addrs) {
		if (!in_prefix(a) || std::find(s.host.begin(), s.host.end(), a) != s.host.end())
			continue;
		auto it = std::find_if(entries.begin(), entries.end(),
				       [&](const NdEntry &e) { return e.addr == a; });
		if (it == entries.end() || it->val.state != KVX_ND_HOST)
			s.host.push_back(a);
	}
	return s;
}

std::vector<Ipv6Addr> nd_expired(const std::vector<NdEntry> &entries, uint64_t now_ns)
{
	std::vector<Ipv6Addr> out;
	for (const NdEntry &e : entries) {
		const kvx_nd_val &v = e.val;
		if (v.state == KVX_ND_HOST)
			continue;
		const bool gone = v.state == KVX_ND_DUP ?
					  v.dad_ns + kNdDupExpireNs < now_ns :
					  std::max(v.last_seen_ns, v.dad_ns) + kNdExpireNs < now_ns;
		if (gone)
			out.push_back(e.addr);
	}
	return out;
}

std::vector<Ipv6Addr> nd_to_probe(const std::vector<NdEntry> &entries)
{
	std::vector<Ipv6Addr> out;
	for (const NdEntry &e : entries)
		if (e.val.state == KVX_ND_PENDING && e.val.dad_probes == 0)
			out.push_back(e.addr);
	return out;
}

bool nd_owned(const kvx_nd_val &v, uint64_t now_ns)
{
	return v.state == KVX_ND_OWNED ||
	       (v.state == KVX_ND_PENDING && v.dad_probes && v.dad_ns + KVX_ND_DAD_NS <= now_ns);
}

std::optional<kvx_nd_val> nd_from_abi16(const uint8_t (&old)[24])
{
	kvx_nd_val v{};
	std::memcpy(v.mac, old, 6);
	v.state = old[6];
	std::memcpy(&v.ifindex, old + 8, 4);
	std::memcpy(&v.last_seen_ns, old + 16, 8);
	if (v.state != KVX_ND_PENDING && v.state != KVX_ND_OWNED && v.state != KVX_ND_DUP)
		return std::nullopt;
	if (v.state != KVX_ND_OWNED) {
		v.dad_ns = v.last_seen_ns;
		v.dad_probes = 1;
	}
	return v;
}

RouteSync plan_relay_routes(const std::vector<NdEntry> &entries,
			    const std::optional<Ipv6Net> &prefix, const std::vector<Ipv6Addr> &have,
			    uint64_t now_ns)
{
	std::vector<Ipv6Addr> want;
	for (const NdEntry &e : entries)
		if (nd_owned(e.val, now_ns) && prefix && prefix->contains(e.addr))
			want.push_back(e.addr);
	RouteSync s;
	auto in = [](const std::vector<Ipv6Addr> &v, const Ipv6Addr &a) {
		return std::find(v.begin(), v.end(), a) != v.end();
	};
	for (const Ipv6Addr &a : want)
		if (!in(have, a) && !in(s.add, a))
			s.add.push_back(a);
	for (const Ipv6Addr &a : have)
		if (!in(want, a) && !in(s.del, a))
			s.del.push_back(a);
	return s;
}

BrportPlan plan_brport(const std::map<MacAddr, uint32_t> &fdb,
		       const std::map<MacAddr, uint32_t> &have, const std::set<MacAddr> &owners,
		       size_t capacity, size_t per_port)
{
	// Room for every MAC the bridge has, a quarter to spare: each stays
	// on its port, however many one port has.  The port guard places a
	// new MAC at its first frame (its flows, ports and addresses count in
	// its port's slot from then on); a placement taken back here would
	// move what the MAC holds to the shared slot at the next recount and
	// make room in its port's for more, and the guard would place it
	// again: a guest cycling through MACs past a cap would get share
	// after share.  Only a map running short caps each port.
	const size_t room = capacity - capacity / 4;
	// Each port's MACs, best first.
	std::map<uint32_t, std::vector<MacAddr>> ports;
	for (const auto &[mac, port] : fdb)
		ports[port].push_back(mac);
	if (fdb.size() <= room) {
		per_port = capacity;
	} else {
		// Only the ports with the most MACs are cut, to the level at
		// which all fit in room (never below per_port): a guest that
		// floods the bridge with made-up MACs must not cut another
		// port's hundred containers to per_port.
		std::vector<size_t> sizes;
		for (const auto &[port, macs] : ports)
			sizes.push_back(macs.size());
		std::sort(sizes.begin(), sizes.end());
		size_t left = room, level = 0;
		for (size_t i = 0; i < sizes.size(); i++) {
			const size_t rest = sizes.size() - i;
			if (sizes[i] > left / rest) {
				level = left / rest;
				break;
			}
			left -= sizes[i];
		}
		per_port = std::max(per_port, level);
	}
	// Address owners first, those already placed on the port before new
	// ones; then the MACs already placed; then the rest.
	auto rank = [&](const MacAddr &m, uint32_t port) {
		auto h = have.find(m);
		const bool placed = h != have.end() && h->second == port;
		if (owners.count(m))
			return placed ? 0 : 1;
		return placed ? 2 : 3;
	};
	size_t longest = 0;
	for (auto &[port, macs] : ports) {
		const uint32_t p = port;
		std::stable_sort(macs.begin(), macs.end(), [&](const MacAddr &a, const MacAddr &b) {
			return rank(a, p) < rank(b, p);
		});
		// per_port, owners included: a guest that moves its addresses
		// to ever new MACs must not get each new one placed (its
		// addresses then counted in the port's slot, the shared one
		// free again for more); past the cap they count in the shared
		// slot, whose limit holds them.
		macs.resize(std::min(per_port, macs.size()));
		longest = std::max(longest, macs.size());
	}
	// Round by round: every port's i-th MAC before any port's i+1-th.
	std::map<MacAddr, uint32_t> want;
	for (size_t i = 0; i < longest && want.size() < capacity; i++)
		for (const auto &[port, macs] : ports)
			if (i < macs.size() && want.size() < capacity)
				want.emplace(macs[i], port);
	BrportPlan plan;
	plan.unplaced = fdb.size() - want.size();
	for (const auto &[mac, port] : have)
		if (!want.count(mac))
			plan.del.push_back(mac);
	for (const auto &[mac, port] : want) {
		auto h = have.find(mac);
		if (h == have.end() || h->second != port)
			plan.put.emplace_back(mac, port);
	}
	return plan;
}

BrportAging plan_brport_aging(const std::map<MacAddr, uint32_t> &fdb,
			      const std::map<MacAddr, uint32_t> &have,
			      const std::set<MacAddr> &owners, const std::set<uint32_t> &ports,
			      const std::set<MacAddr> &moved)
{
	BrportAging a;
	for (const auto &[mac, port] : have) {
		if (fdb.count(mac) || !owners.count(mac))
			continue;
		if (ports.count(port))
			a.keep.emplace(mac, port);
		else if (!moved.count(mac))
			a.gone.insert(mac);
	}
	return a;
}

std::map<Ipv6Addr, MacAddr> plan_nd_seed(const std::vector<BindOwner> &bindings,
					 const Ipv6Net &subnet)
{
	std::map<Ipv6Addr, MacAddr> out;
	std::set<Ipv6Addr> shared;
	for (const BindOwner &b : bindings) {
		if (b.mac == MacAddr{} || !subnet.contains(b.addr))
			continue;
		auto [it, fresh] = out.emplace(b.addr, b.mac);
		if (!fresh && it->second != b.mac)
			shared.insert(b.addr);
	}
	for (const Ipv6Addr &a : shared)
		out.erase(a);
	return out;
}

} // namespace kvmxdp
