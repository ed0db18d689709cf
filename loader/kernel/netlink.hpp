// SPDX-License-Identifier: GPL-2.0
// rtnetlink queries through libnl-3: links, IPv4 addresses, tc filters.
// Netlink rather than /sys or /proc/net: it is the kernel's authoritative,
// namespace-correct view and carries IFLA_INFO_KIND ("bridge").
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct nl_sock;

namespace kvmxdp {

class NlSocket {
public:
	NlSocket();
	~NlSocket();
	NlSocket(const NlSocket &) = delete;
	NlSocket &operator=(const NlSocket &) = delete;
	nl_sock *get() const { return sk_; }

private:
	nl_sock *sk_ = nullptr;
};

struct LinkInfo {
	int ifindex = 0;
	std::string name;
	std::string kind;	      // IFLA_INFO_KIND: "bridge", "veth", "" for hardware
	std::array<uint8_t, 6> mac{}; // all zero if the link has no Ethernet address
};

struct IfAddr {
	uint32_t addr = 0; // host order
	uint8_t prefix = 0;
	bool secondary = false;
	int scope = 0; // RT_SCOPE_*
	std::string label;
};

// The label of the addresses `map add --add-address` puts on an uplink:
// "<ifname>:kvx" (cut to the kernel's 15 characters).  primary_ipv4() never
// takes them for the uplink's own address: after a DHCP change (or, with
// promote_secondaries, the loss of the primary) they could come first.
std::string added_address_label(int ifindex);

std::optional<LinkInfo> find_link(NlSocket &nl, const std::string &name);
std::vector<IfAddr> ipv4_addrs(NlSocket &nl, int ifindex);
// The first global-scope, non-secondary address (the kernel lists the
// primary first), i.e. what the host uses as source on that link.
std::optional<IfAddr> primary_ipv4(const std::vector<IfAddr> &addrs);
bool has_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr);
// Adds addr/prefix (host order) with a label to a device; an address that
// is there already is an error (NLM_F_EXCL).
void add_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr, uint8_t prefix,
		      const std::string &label);
// Removes addr as it is there: the kernel matches a deletion's prefix
// length and label, so both are taken from the address itself (the network
// may have changed since it was added, and older versions added no label).
// False if the device does not have it.
bool remove_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr);
// Filters on the clsact ingress and egress hooks; -1 if unknown.
int count_clsact_filters(NlSocket &nl, int ifindex);

// A socket subscribed to link and IPv4 address changes.  The daemon polls
// its fd and re-reads the state on any event (events only say "look").
class NlMonitor {
public:
	NlMonitor();
	~NlMonitor();
	NlMonitor(const NlMonitor &) = delete;
	NlMonitor &operator=(const NlMonitor &) = delete;
	int fd() const;
	// Drains pending messages; true if anything arrived (or was lost to
	// an overrun, which means "re-read everything" too).
	bool drain();

private:
	nl_sock *sk_ = nullptr;
};

} // namespace kvmxdp
