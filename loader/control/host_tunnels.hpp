// SPDX-License-Identifier: GPL-2.0
// The host's own tunnel peers in kvx_hosttun (abi.h): address-only NAT of
// a guest's GRE/IPIP/6in4/ESP never binds a (protocol, remote) pair the host
// itself speaks, and the tunnel's inbound packets stay the host's.  And the
// host's own IPv4 addresses in kvx_hostaddr: no flow from outside opens
// from one (a martian source).  Written by attach and kept current by the
// daemon (link and address events and the periodic refresh re-read them).
#pragma once

#include <cstddef>
#include <map>
#include <utility>
#include <vector>

#include "kernel/netlink.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

// The map's contents for these tunnels: (proto, remote) -> the first
// tunnel device with that pair.  At most KVX_HOSTTUN_MAX pairs; beyond them
// a pair's remote is widened to "any" for its protocol (never fewer pairs
// protected: one wildcard covers them all).
std::map<std::pair<uint8_t, uint32_t>, int> hosttun_pairs(const std::vector<HostTunnel> &tunnels);

struct HostTunSync {
	size_t added = 0;
	size_t removed = 0;
};

// Makes kvx_hosttun hold exactly hosttun_pairs(tunnels): new pairs first,
// stale ones after (a pair is never unprotected in between).
HostTunSync sync_host_tunnels(int hosttun_fd, const std::vector<HostTunnel> &tunnels);

struct HostAddrSync {
	size_t added = 0;
	size_t removed = 0;
	size_t left_out = 0; // past KVX_HOSTADDR_MAX: not checked
};

// What kvx_hostaddr holds (host order): the host's own addresses (addrs:
// host_ipv4_ifaddrs), the directed broadcast of each one's subnet (a
// prefix of 30 or shorter; not of loopback's) and any broadcast address
// set on it (`brd`): the sources the kernel's input route finds local or
// broadcast and drops as martians (fib_validate_source), which nothing on
// the uplink may open a flow from (a guest's answers to a broadcast source
// would go to the whole LAN).  Those of link first_ifindex (the uplink)
// come first: they are what the map's cap keeps.
std::vector<uint32_t> host_martian_sources(const std::vector<IfAddr> &addrs, int first_ifindex = 0);

// Makes kvx_hostaddr hold exactly addrs (host order; the first
// KVX_HOSTADDR_MAX distinct ones, in addrs' order), gone ones out first.
HostAddrSync sync_host_addrs(int hostaddr_fd, const std::vector<uint32_t> &addrs);

} // namespace kvmxdp
