// SPDX-License-Identifier: GPL-2.0
// libvirt's DHCP leases of a bridge, the owners of guest addresses that no
// traffic can take over (abi.h kvx_guest, KVX_GUEST_F_LEASE).  libvirt's
// leaseshelper keeps them for dnsmasq in a status file,
// /var/lib/libvirt/dnsmasq/<bridge>.status: a JSON array of objects with
// "ip-address", "mac-address" and "expiry-time" (Unix seconds; 0 for an
// infinite lease), among others.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/netaddr.hpp"

namespace kvmxdp {

// attach --dhcp-leases: "none" reads no leases; empty: the default path.
constexpr const char *kLeasesNone = "none";
std::string default_leases_path(const std::string &bridge);
// The file an instance reads ("" for none).
std::string leases_path(const std::string &option, const std::string &bridge);
// "none" or an absolute path; throws ConfigError naming `what` otherwise.
void check_leases_option(const std::string &value, const std::string &what);

struct Lease {
	uint32_t addr = 0; // host order
	MacAddr mac{};
	int64_t expiry = 0; // Unix seconds; 0: never
	std::string hostname; // the lease's "hostname", printable ASCII only; "" if none
};

// The IPv4 leases of a status file's text.  Entries without an IPv4
// address or a MAC (IPv6 leases carry a DUID) are skipped; text that is
// not a JSON array of objects throws Error naming `what`.
std::vector<Lease> parse_libvirt_leases(const std::string &text, const std::string &what);

} // namespace kvmxdp
