// SPDX-License-Identifier: GPL-2.0
// The host's own sockets, as the kernel shows them to this network
// namespace.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"

namespace kvmxdp {

// One message from a raw ICMPv6 socket with IPV6_RECVHOPLIMIT on (the
// neighbour-discovery sockets: RFC 4861 wants hop limit 255): its length,
// with its sender in src and the hop limit it came with in hops (-1: not
// reported); -1 once nothing is left to read (EAGAIN) or on an error.
long recv_icmp6(int fd, uint8_t *buf, size_t cap, Ipv6Addr &src, int &hops);

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
	// The lowest port of the range with a listener on addr, if any (of a
	// socket whose owner's uid is below uid_below).
	std::optional<uint16_t> first_listening(uint32_t addr, const PortRange &ports,
						uint32_t uid_below = UINT32_MAX) const;
	// The same for an IPv6 address: listeners on [::] or on addr (an
	// IPv4 socket never takes IPv6 traffic).
	std::optional<uint16_t> first_listening6(const Ipv6Addr &addr, const PortRange &ports,
						 uint32_t uid_below = UINT32_MAX) const;
	// Ports with a listener that packets from the uplink can reach: on the
	// wildcard or on an address outside 127.0.0.0/8 (IPv6 listeners only
	// on the wildcard, which takes IPv4 too unless v6only), of a socket
	// whose owner's uid is below uid_below.
	std::vector<uint16_t> reachable_ports(uint32_t uid_below = UINT32_MAX) const;

private:
	struct Entry {
		bool wildcard;
		bool v6;	// of the tcp6/udp6 table
		uint32_t addr;	// host order; IPv4 entries only
		Ipv6Addr addr6; // IPv6 entries only
		uint16_t port;
		uint32_t uid; // the socket's owner
	};
	std::vector<Entry> entries_;
};

// The first uid of a login user (login.defs UID_MIN, 1000 on Debian):
// root's and system users' sockets are the host's services.
inline constexpr uint32_t kFirstLoginUid = 1000;

// The host services' TCP listeners and bound UDP sockets reachable from
// outside (reachable_ports of sockets below kFirstLoginUid), as the bitmap
// of kvx_portx (abi.h): the NAT pool's ports the datapath never allocates,
// whose unsolicited inbound packets go to the host, and on which the
// daemon takes a guest's binding back.  Not a login user's: an
// unprivileged user could otherwise bind a guest's port and have that
// guest's inbound traffic (with --eif) delivered to its own socket.
std::vector<uint64_t> host_port_bitmap(const std::string &proc_root = "/proc");

// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE,
// Linux 5.14), or nullopt on an older kernel.
std::optional<uint64_t> netns_cookie();

} // namespace kvmxdp
