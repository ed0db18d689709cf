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

private:
	struct Entry {
		bool wildcard;
		uint32_t addr; // host order; IPv4 entries only
		uint16_t port;
	};
	std::vector<Entry> entries_;
};

// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE,
// Linux 5.14), or nullopt on an older kernel.
std::optional<uint64_t> netns_cookie();

} // namespace kvmxdp
