// SPDX-License-Identifier: GPL-2.0
#include "control/host_tunnels.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <cerrno>
#include <set>

#include "base/error.hpp"
#include "kernel/maps.hpp"

namespace kvmxdp {

std::map<std::pair<uint8_t, uint32_t>, int> hosttun_pairs(const std::vector<HostTunnel> &tunnels)
{
	std::map<std::pair<uint8_t, uint32_t>, int> out;
	for (const HostTunnel &t : tunnels)
		out.emplace(std::make_pair(t.proto, t.remote), t.ifindex);
	if (out.size() <= KVX_HOSTTUN_MAX)
		return out;
	// Too many peers for the map: protect whole protocols instead.
	std::map<std::pair<uint8_t, uint32_t>, int> wide;
	for (const auto &[k, ifindex] : out)
		wide.emplace(std::make_pair(k.first, 0u), ifindex);
	return wide;
}

HostTunSync sync_host_tunnels(int hosttun_fd, const std::vector<HostTunnel> &tunnels)
{
	const auto want = hosttun_pairs(tunnels);
	auto key_of = [](uint8_t proto, uint32_t remote) {
		kvx_hosttun_key k{};
		k.proto = proto;
		k.remote = htonl(remote);
		return k;
	};
	HostTunSync r;
	std::set<std::pair<uint8_t, uint32_t>> have;
	for (const kvx_hosttun_key &k : map_keys<kvx_hosttun_key>(hosttun_fd))
		have.emplace(k.proto, ntohl(k.remote));
	for (const auto &[pair, ifindex] : want) {
		kvx_hosttun_key k = key_of(pair.first, pair.second);
		kvx_hosttun_val v{};
		v.ifindex = static_cast<__u32>(ifindex);
		if (bpf_map_update_elem(hosttun_fd, &k, &v, BPF_ANY) != 0)
			throw_errno("update", KVX_MAP_HOSTTUN);
		r.added += !have.count(pair);
	}
	for (const auto &pair : have) {
		if (want.count(pair))
			continue;
		kvx_hosttun_key k = key_of(pair.first, pair.second);
		if (bpf_map_delete_elem(hosttun_fd, &k) == 0)
			r.removed++;
	}
	return r;
}

} // namespace kvmxdp
