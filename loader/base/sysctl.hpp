// SPDX-License-Identifier: GPL-2.0
// Narrow access to /proc/sys (and other /proc-like trees): everything goes
// through a root directory so unit tests can run on a temporary directory.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"

namespace kvmxdp {

class Sysctl {
public:
	explicit Sysctl(std::string root = "/proc/sys")
		: root_(std::move(root))
	{
	}

	// key is a path below the root, e.g. "net/ipv4/conf/br0.10/forwarding"
	// (slashes, not dots: interface names may contain dots).
	std::string read(const std::string &key) const;
	std::optional<std::string> try_read(const std::string &key) const;
	void write(const std::string &key, const std::string &value) const;
	bool exists(const std::string &key) const;
	const std::string &root() const { return root_; }

private:
	std::string path(const std::string &key) const { return root_ + "/" + key; }
	std::string root_;
};

// Forwarding on the bridge alone: bpf_fib_lookup returns FWD_DISABLED
// without it; the global ip_forward is never touched.
std::string forwarding_key(const std::string &ifname);
// The same for IPv6 (NAT66: bpf_fib_lookup(AF_INET6) checks the ingress
// device's own flag); never net.ipv6.conf.all.forwarding, which would make
// the uplink ignore router advertisements and lose its SLAAC address.
std::string forwarding6_key(const std::string &ifname);
// net.ipv6.conf.IF.accept_ra: 2 keeps a device's router-advertised default
// routes when forwarding comes on for another device (the kernel purges
// those of every device whose accept_ra is not 2); with the device's own
// forwarding 0 it takes RAs exactly as 1 does.
std::string accept_ra_key(const std::string &ifname);
inline const char *const kReservedPortsKey = "net/ipv4/ip_local_reserved_ports";
inline const char *const kLocalPortRangeKey = "net/ipv4/ip_local_port_range";
inline const char *const kBrNfCallIptablesKey = "net/bridge/bridge-nf-call-iptables";

// ip_local_reserved_ports is a port bitmap shown as "a-b,c,..."; these
// treat it as a set so that adding our range and later removing it leaves
// every port that was reserved before us (or by others since) reserved.
std::vector<PortRange> parse_port_list(const std::string &text);
std::string format_port_list(const std::vector<PortRange> &ranges);
// current ∪ range
std::string reserved_ports_add(const std::string &current, const PortRange &range);
// (current \ range) ∪ (saved ∩ range): ports of our range that were
// reserved before attach stay reserved.
std::string reserved_ports_remove(const std::string &current, const std::string &saved,
				  const PortRange &range);

} // namespace kvmxdp
