// SPDX-License-Identifier: GPL-2.0
#include "control/host_tunnels.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/rtnetlink.h>

#include <cerrno>
#include <iterator>
#include <set>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "kernel/maps.hpp"
#include "kvmxdp/abi.h"

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

std::vector<uint32_t> host_martian_sources(const std::vector<IfAddr> &addrs, int first_ifindex)
{
	std::vector<uint32_t> first, rest;
	for (const IfAddr &a : addrs) {
		std::vector<uint32_t> &out = a.ifindex == first_ifindex ? first : rest;
		out.push_back(a.addr);
		// /31 and /32 have no broadcast (RFC 3021); loopback's
		// 127.255.255.255 is a martian anyway.
		if (a.prefix <= 30 && a.scope != RT_SCOPE_HOST)
			out.push_back(
				Ipv4Net{a.addr & Ipv4Net{0, a.prefix}.mask(), a.prefix}.broadcast());
		// A broadcast address of its own (`brd`), as the kernel's
		// local table has it (255.255.255.255 is refused anyway).
		if (a.broadcast && a.broadcast != 0xffffffff)
			out.push_back(a.broadcast);
	}
	first.insert(first.end(), rest.begin(), rest.end());
	return first;
}

HostAddrSync sync_host_addrs(int hostaddr_fd, const std::vector<uint32_t> &addrs)
{
	HostAddrSync r;
	std::set<uint32_t> want; // host order (the map: network)
	for (const uint32_t a : addrs) {
		if (want.count(a))
			continue;
		if (want.size() < KVX_HOSTADDR_MAX)
			want.insert(a);
		else
			r.left_out++;
	}
	std::set<uint32_t> have;
	for (const __be32 k : map_keys<__be32>(hostaddr_fd))
		have.insert(ntohl(k));
	// Gone ones first (an address the host gave up is no martian, and
	// the map has room for the new ones only then).
	for (const uint32_t a : have) {
		if (want.count(a))
			continue;
		const __be32 k = htonl(a);
		if (bpf_map_delete_elem(hostaddr_fd, &k) == 0)
			r.removed++;
	}
	for (const uint32_t a : want) {
		if (have.count(a))
			continue;
		const __be32 k = htonl(a);
		const __u32 v = 1;
		if (bpf_map_update_elem(hostaddr_fd, &k, &v, BPF_ANY) != 0)
			throw_errno("update", KVX_MAP_HOSTADDR);
		r.added++;
	}
	return r;
}

} // namespace kvmxdp
