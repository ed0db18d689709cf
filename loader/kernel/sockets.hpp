// SPDX-License-Identifier: GPL-2.0
// The host's own sockets, as the kernel shows them to this network
// namespace.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"

namespace kvmxdp {

// The host's listening sockets of one protocol (TCP listeners or bound UDP
// sockets), read once from /proc/net/{tcp,udp}{,6}: a whole port range is
// checked against one snapshot, not by re-reading the tables per port.
class ListeningSockets {
public:
	// proc_root: "/proc", or a directory with net/tcp... for tests.
	static ListeningSockets read(uint8_t proto, const std::string &proc_root = "/proc");
	// The tables' text (header line first), as the kernel prints them.
	static ListeningSockets parse(uint8_t proto, const std::string &v4, const std::string &v6);

	// On addr (host order) or the wildcard.
	bool listens(uint32_t addr, uint16_t port) const;
	// The lowest port of the range with a listener on addr, if any.
	std::optional<uint16_t> first_listening(uint32_t addr, const PortRange &ports) const;
	// Ports with a listener that packets from the uplink can reach: on the
	// wildcard or on an address outside 127.0.0.0/8 (IPv6 listeners only
	// on the wildcard, which takes IPv4 too unless v6only).
	std::vector<uint16_t> reachable_ports() const;

private:
	struct Entry {
		bool wildcard;
		uint32_t addr; // host order; IPv4 entries only
		uint16_t port;
	};
	std::vector<Entry> entries_;
};

// The host's TCP listeners and bound UDP sockets reachable from outside
// (reachable_ports), as the bitmap of kvx_portx (abi.h): the NAT pool's
// ports the datapath must never allocate.
std::vector<uint64_t> host_port_bitmap(const std::string &proc_root = "/proc");

// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE,
// Linux 5.14), or nullopt on an older kernel.
std::optional<uint64_t> netns_cookie();

} // namespace kvmxdp
