// SPDX-License-Identifier: GPL-2.0
#include "control/relay.hpp"

#include <bpf/bpf.h>
#include <linux/rtnetlink.h>

#include <cerrno>
#include <cstring>

#include "base/error.hpp"
#include "kernel/maps.hpp"
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

NdSyncResult sync_relay_nd(int nd_fd, const std::optional<Ipv6Net> &prefix,
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
			throw_errno("delete a relay address from kvx_nd", format_ipv6(a));
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

RelayRoutesResult sync_relay_routes(NlSocket &nl, int bridge_ifindex, int nd_fd,
				    const std::optional<Ipv6Net> &prefix, uint64_t now_ns)
{
	RelayRoutesResult r;
	std::vector<NdEntry> entries = dump_nd(nd_fd);
	const std::vector<Ipv6Addr> idle = nd_expired(entries, now_ns);
	for (const Ipv6Addr &a : idle) {
		kvx_nd_key k{};
		std::memcpy(k.addr, a.data(), sizeof(k.addr));
		if (bpf_map_delete_elem(nd_fd, &k) == 0)
			r.expired++;
		else if (errno != ENOENT)
			throw_errno("delete an idle relay address from kvx_nd", format_ipv6(a));
	}
	if (!idle.empty())
		entries = dump_nd(nd_fd);
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

std::vector<Ipv6Addr> host_addrs6(const std::vector<Ipv6IfAddr> &uplink_addrs)
{
	std::vector<Ipv6Addr> out;
	for (const Ipv6IfAddr &a : uplink_addrs)
		if (a.scope == RT_SCOPE_UNIVERSE)
			out.push_back(a.addr);
	return out;
}

} // namespace kvmxdp
