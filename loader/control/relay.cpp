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

NdSyncResult sync_relay_nd(int nd_fd, const std::optional<Ipv6Net> &prefix,
			   const std::vector<Ipv6Addr> &host_addrs)
{
	std::vector<NdEntry> entries;
	for (const auto &[k, v] : dump_hash<kvx_nd_key, kvx_nd_val>(nd_fd)) {
		NdEntry e;
		std::memcpy(e.addr.data(), k.addr, sizeof(k.addr));
		e.val = v;
		entries.push_back(e);
	}
	const NdSync plan = plan_nd_sync(entries, prefix, host_addrs);
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

std::vector<Ipv6Addr> host_addrs6(const std::vector<Ipv6IfAddr> &uplink_addrs)
{
	std::vector<Ipv6Addr> out;
	for (const Ipv6IfAddr &a : uplink_addrs)
		if (a.scope == RT_SCOPE_UNIVERSE)
			out.push_back(a.addr);
	return out;
}

} // namespace kvmxdp
