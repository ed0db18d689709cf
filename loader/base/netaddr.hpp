// SPDX-License-Identifier: GPL-2.0
// Parsing and checking of the user-facing network values (addresses, CIDR
// subnets, port ranges).  Pure functions, unit-tested; every error names the
// bad value.  Addresses are host order here and become network order only
// where kvx_cfg is written.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace kvmxdp {

struct Ipv4Net {
	uint32_t addr = 0; // network address, host order
	uint8_t prefix = 0;

	uint32_t mask() const { return prefix ? ~uint32_t{0} << (32 - prefix) : 0; }
	uint32_t broadcast() const { return addr | ~mask(); }
	bool contains(uint32_t a) const { return (a & mask()) == addr; }
	// One holds the other (two networks either nest or are disjoint).
	bool overlaps(const Ipv4Net &o) const { return contains(o.addr) || o.contains(addr); }
	std::string str() const;
	bool operator==(const Ipv4Net &o) const { return addr == o.addr && prefix == o.prefix; }
};

struct PortRange {
	uint16_t lo = 0;
	uint16_t hi = 0;

	uint32_t size() const { return uint32_t{hi} - lo + 1; }
	bool overlaps(const PortRange &o) const { return lo <= o.hi && o.lo <= hi; }
	std::string str() const;
	bool operator==(const PortRange &o) const { return lo == o.lo && hi == o.hi; }
};

// An Ethernet address, as the kernel and the datapath's maps hold it.
using MacAddr = std::array<uint8_t, 6>;

// "aa:bb:cc:dd:ee:ff", lower case, as the config stores MACs.
std::string format_mac(const MacAddr &mac);
bool is_mac_str(const std::string &text);

// Dotted quad only (inet_pton): "10.1" or "1.2.3.4 " are rejected.
uint32_t parse_ipv4(const std::string &text);
std::string format_ipv4(uint32_t host_order);

// "a.b.c.d/n" with 1 <= n <= 30 and no host bits set.
Ipv4Net parse_cidr(const std::string &text);
// The network an interface address belongs to (host bits cleared).
Ipv4Net network_of(uint32_t addr, uint8_t prefix);

// "LO-HI", 1 <= LO <= HI <= 65535.
PortRange parse_port_range(const std::string &text);
// The content of net.ipv4.ip_local_port_range ("32768\t60999").
PortRange parse_local_port_range(const std::string &text);

// NAT ports must be disjoint from the host's ephemeral range, else a
// translated flow and a host socket can share a 5-tuple
// (docs/pitfalls.md, host-ephemeral-ports).
constexpr uint32_t kMinDefaultNatPorts = 1024;
// The NAT pool: a range and the hole in it that is never allocated
// (kvx_cfg.nat_skip_*; {0, 0}: none).
struct NatPool {
	PortRange range;
	PortRange skip;

	uint32_t size() const;
	// The pool as disjoint ranges (one, or two around the hole).
	std::vector<PortRange> parts() const;
	bool operator==(const NatPool &o) const { return range == o.range && skip == o.skip; }
};
// Without --nat-ports: 1024-65535 minus the host's ephemeral range.  With
// endpoint-independent mapping every guest endpoint holds its own port for
// its flows' lifetime plus TIME_WAIT, so capacity is the pool's size over
// that time: the ~4500 ports above Linux's ephemeral range sustain ~30 new
// connections a second, the ~36000 of this pool eight times more.  Throws
// when fewer than kMinDefaultNatPorts ports remain.
NatPool default_nat_pool(const PortRange &ephemeral);
// An explicit --nat-ports range has no hole: it must be disjoint from the
// ephemeral range.
void check_nat_range(const PortRange &nat, const PortRange &ephemeral);

// Interface names: throws on an invalid one (empty, >= IFNAMSIZ, '/', ':',
// whitespace, control characters, not UTF-8), before any kernel call sees
// it.  The kernel takes any other byte; kvmxdp refuses such a device
// rather than write a name it cannot represent into its config.
void check_ifname(const std::string &name);

// Strict unsigned decimal (no sign, no spaces, no trailing garbage).
uint64_t parse_uint(const std::string &text, uint64_t max, const std::string &what);

} // namespace kvmxdp
