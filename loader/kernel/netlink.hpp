// SPDX-License-Identifier: GPL-2.0
// Netlink through libnl-3, the one netlink layer of the loader: links,
// IPv4 addresses, tc filters and routes (kernel/routes.hpp) as libnl-route
// objects; the bridge's ports and forwarding database and the netdev
// generic netlink family as messages built with libnl's nl_msg API over
// the same socket type.  Netlink rather than /sys or /proc/net: it is the
// kernel's authoritative, namespace-correct view and carries
// IFLA_INFO_KIND ("bridge").
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"

struct nl_sock;
struct nl_msg;
struct nlmsghdr;

namespace kvmxdp {

class NlSocket {
public:
	NlSocket(); // NETLINK_ROUTE
	// protocol: NETLINK_ROUTE or NETLINK_GENERIC.  timeout_s > 0: a reply
	// that does not come within it is an error (the daemon must never
	// hang on one).
	explicit NlSocket(int protocol, int timeout_s = 0);
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
	MacAddr mac{};		      // all zero if the link has no Ethernet address
	uint32_t mtu = 0;
	unsigned flags = 0; // IFF_UP, IFF_LOWER_UP, ...
};

struct IfAddr {
	uint32_t addr = 0; // host order
	uint8_t prefix = 0;
	bool secondary = false;
	int scope = 0; // RT_SCOPE_*
	std::string label;
	int ifindex = 0;
	// IFA_BROADCAST (`ip addr add ... brd B`), host order; 0: none.  The
	// kernel makes it a broadcast route beside the prefix's own.
	uint32_t broadcast = 0;
};

// The label of the addresses `map add --add-address` puts on an uplink:
// "<ifname>:kvx" (cut to the kernel's 15 characters).  primary_ipv4() never
// takes them for the uplink's own address: after a DHCP change (or, with
// promote_secondaries, the loss of the primary) they could come first.
std::string added_address_label(int ifindex);

std::optional<LinkInfo> find_link(NlSocket &nl, const std::string &name);
// A link's addresses; kEveryLink: every link's.  0 (no link: an uplink still
// waiting for a default route) has none, never every link's.
constexpr int kEveryLink = -1;
std::vector<IfAddr> ipv4_addrs(NlSocket &nl, int ifindex);
// Every IPv4 address of the host (every link's, host order) but those
// `map add --add-address` put there (added_address_label): what a mapping
// must not take from the host.
std::vector<uint32_t> host_ipv4_addrs(NlSocket &nl);
// The same with their prefixes and scopes.
std::vector<IfAddr> host_ipv4_ifaddrs(NlSocket &nl);
// The first global-scope, non-secondary address (the kernel lists the
// primary first), i.e. what the host uses as source on that link.
std::optional<IfAddr> primary_ipv4(const std::vector<IfAddr> &addrs);
bool has_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr);
// The IPv6 addresses of a device, in the kernel's order (newest of a
// scope first), with IFA_FLAGS and the lifetimes left.
std::vector<Ipv6IfAddr> ipv6_addrs(NlSocket &nl, int ifindex); // as ipv4_addrs
// Every IPv6 address of the host (every link's): what a 1:1 mapping must
// not take from the host.
std::vector<Ipv6Addr> host_ipv6_addrs(NlSocket &nl);
// The main table's IPv6 unicast routes through a device (kEveryLink: all).
std::vector<Ipv6Route> ipv6_routes(NlSocket &nl, int ifindex);
// A main-table route to dst through a device (no gateway: on the link),
// with the routing protocol number `protocol` (rtm_protocol) that tells
// its maker; an existing route to dst is an error (add) or absent (remove:
// false).
void add_ipv6_route(NlSocket &nl, int ifindex, const Ipv6Net &dst, uint8_t protocol);
bool remove_ipv6_route(NlSocket &nl, int ifindex, const Ipv6Net &dst, uint8_t protocol);
// The M flag of the last router advertisement the device took (the
// kernel's IF_RA_MANAGED in IFLA_INET6_FLAGS): addresses by DHCPv6.
bool ipv6_ra_managed(NlSocket &nl, int ifindex);
// The MAC the neighbour table holds for addr (host order) on ifindex, if
// it holds a usable one (not INCOMPLETE/FAILED).
std::optional<MacAddr> neighbour_mac(NlSocket &nl, int ifindex, uint32_t addr);
// The same for an IPv6 neighbour (the default router: its RAs' source
// link-layer option makes the entry).
std::optional<MacAddr> neighbour_mac6(NlSocket &nl, int ifindex, const Ipv6Addr &addr);
// The MACs of several IPv6 neighbours of ifindex (nullopt: not usable),
// from one dump of the table.
std::vector<std::optional<MacAddr>> neighbour_macs6(NlSocket &nl, int ifindex,
						    const std::vector<Ipv6Addr> &addrs);
// Deletes the neighbour entry of addr (IPv4, host order) on ifindex, as
// `ip neigh del ADDR dev DEV`: the kernel resolves it again when it next
// sends there.  False when there was none (or the kernel refused).
bool neighbour_forget(NlSocket &nl, int ifindex, uint32_t addr);
bool neighbour_forget6(NlSocket &nl, int ifindex, const Ipv6Addr &addr);
// Asks the kernel to resolve an IPv6 neighbour on ifindex (RTM_NEWNEIGH with
// NTF_USE: an INCOMPLETE entry and the kernel's own Neighbour
// Solicitations), as `ip -6 neigh replace ADDR dev DEV use nud none`.
void neighbour_solicit6(NlSocket &nl, int ifindex, const Ipv6Addr &addr);
// The first network of the uplink's own addresses (global scope; not the
// ones `map add --add-address` put there) that overlaps subnet.
std::optional<Ipv4Net> uplink_overlap(const std::vector<IfAddr> &uplink_addrs, int uplink_ifindex,
				      const Ipv4Net &subnet);
// The guests' gateway: the first of the bridge's addresses inside the guest
// subnet (host order), source of the ICMP errors the datapath sends guests
// (kvx_cfg.gw_addr); 0: none.
uint32_t subnet_gateway(const std::vector<IfAddr> &bridge_addrs, const Ipv4Net &subnet);
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

// The bridge's ports (IFLA_MASTER), in the current network namespace.
struct PortInfo {
	int ifindex = 0;
	std::string name;
	std::string kind; // IFLA_INFO_KIND: "veth", "tun", "" for hardware
	// The port's IFLA_BRPORT_LEARNING and IFLA_BRPORT_LOCKED (802.1X,
	// Linux 5.18+): where the bridge must not learn from frames, nobody
	// learns on its behalf.
	bool learning = true;
	bool locked = false;
};
std::vector<PortInfo> bridge_ports(NlSocket &nl, int bridge_ifindex);

// The bridge's forwarding database: the unicast entries of bridge_ifindex
// (NDA_MASTER), MAC -> the device they name (a port, or the bridge itself
// for its own addresses).  Every kind: learnt (dynamic), static (NOARP),
// permanent (local: a frame from a port to it goes up to the host, but the
// host's own frames to it, a NAT reply among them, go to the port, as
// br_dev_xmit forwards by any entry), added by an external learner; not
// the locked ones a MAB port made for a station still unauthorised
// (NTF_EXT_LOCKED), which the bridge forwards nothing to.
struct FdbEntry {
	MacAddr mac{};
	int ifindex = 0;
	bool dynamic = true; // neither static nor permanent: learnt, or ages like it
};
std::vector<FdbEntry> bridge_fdb(NlSocket &nl, int bridge_ifindex);
// As if a frame from mac had passed the bridge on port_ifindex: learnt or
// refreshed there (NTF_USE is br_fdb_update()).  Kernel errors are ignored
// (the port may have left meanwhile).
void bridge_fdb_use(NlSocket &nl, int port_ifindex, const MacAddr &mac);

// The host's own IPv4 tunnels: devices whose packets are an IP protocol
// without ports to a remote (gre/gretap: 47, ipip: 4, sit: 41, vti: ESP 50).
// Only devices that are up; remote 0: the tunnel has no fixed peer (it
// speaks to any remote).  Then the host's IPsec peers (host_ipsec_peers).
struct HostTunnel {
	uint8_t proto = 0;
	uint32_t remote = 0; // host order
	int ifindex = 0;     // 0: an xfrm state, no device
	std::string name;
	std::string kind; // "xfrm" for an IPsec SA
};
std::vector<HostTunnel> host_tunnels(NlSocket &nl);
// The peers of the host's IPsec security associations (NETLINK_XFRM,
// XFRM_MSG_GETSA dump): ESP, AH and IPComp to the peer without a tunnel
// device (transport or tunnel mode, strongSwan's default), each SA's
// addresses that are not the host's own (`local`, host order).  Larval
// SAs (an SPI allocated while IKE negotiates) count: their traffic is
// about to start.  UDP-encapsulated ESP (NAT-T, port 4500) needs nothing
// here: its UDP flows are NATed by port, and the datapath's NAT ports
// never include the host's 4500.  None without NETLINK_XFRM
// (CONFIG_XFRM_USER off).
std::vector<HostTunnel> host_ipsec_peers(const std::vector<uint32_t> &local);
// One XFRM_MSG_NEWSA message's peers (the parser of the above).
std::vector<HostTunnel> xfrm_sa_peers(const void *nlmsg, size_t len,
				      const std::vector<uint32_t> &local);

// What the kernel reports of a device's XDP abilities (NETDEV_XDP_ACT_*)
// through the netdev generic netlink family (Linux 6.3+); nullopt where it
// cannot say.  A veth reports NDO_XMIT only while its peer has NAPI (an XDP
// program or GRO), which is exactly when a redirect into it lands.
std::optional<uint64_t> xdp_features(int ifindex);

// A socket subscribed to rtnetlink multicast groups.  The daemon polls its
// fd and re-reads the state on any event (events only say "look").
class NlMonitor {
public:
	// Link and address changes (IPv4 and IPv6, and the IPv6 RA flags).
	static NlMonitor links_and_addresses();
	// Route changes: `--uplink auto` follows the IPv4 default route, the
	// uplink's IPv6 on-link prefixes come and go with RAs.
	static NlMonitor routes();
	// IPsec SA changes (NETLINK_XFRM, XFRMNLGRP_SA): the host's IPsec
	// peers.  Throws where the kernel has no NETLINK_XFRM.
	static NlMonitor xfrm_sas();
	// The bridge forwarding database's changes that no frame causes: a
	// static (or externally learnt) entry deleted or added (an 802.1X
	// authenticator's logoff, `bridge fdb del`, libvirt's entry for a new
	// guest).  Not what the bridge learns or ages (an event for every
	// MAC a guest sends from), nor another bridge's (only_bridge).
	static NlMonitor bridge_fdb_changes();
	~NlMonitor();
	NlMonitor(NlMonitor &&o) noexcept;
	NlMonitor(const NlMonitor &) = delete;
	NlMonitor &operator=(const NlMonitor &) = delete;
	int fd() const;
	// bridge_fdb_changes: the bridge whose entries count (0: any).
	void only_bridge(int ifindex);
	// Drains pending messages; true if anything arrived (or was lost to
	// an overrun, which means "re-read everything" too).
	bool drain();

private:
	// Receive calls per drain() (each reads a buffer of messages).
	static constexpr int kDrainMax = 64;
	NlMonitor(int protocol, std::initializer_list<unsigned> groups, const char *what,
		  int (*valid)(nl_msg *, void *) = nullptr);
	nl_sock *sk_ = nullptr;

public:
	// What the socket's callback sees: set during drain(); on the heap so
	// that the callback's pointer survives a move.
	struct State {
		bool seen = false;
		int bridge = 0;
	};

private:
	std::unique_ptr<State> state_ = std::make_unique<State>();
};

// The FDB event filter of bridge_fdb_changes (a static, permanent or
// externally learnt AF_BRIDGE entry of bridge_ifindex added or deleted).
bool fdb_event_matters(const nlmsghdr *h, int bridge_ifindex);

} // namespace kvmxdp
