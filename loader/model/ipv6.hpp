// SPDX-License-Identifier: GPL-2.0
// What the uplink offers for IPv6, decided from its addresses and routes
// (pure functions; the daemon and `status` feed them rtnetlink's view):
//
// - the address NAT66 translates guests to: the one the kernel would pick
//   as source for a new connection to the internet (RFC 6724 section 5,
//   the rules that apply to one interface and a global destination), with
//   one deliberate difference: a stable address is preferred over
//   temporary ones (rule 7 reversed, as a socket with
//   IPV6_PREFER_SRC_PUBLIC asks).  Temporary addresses (RFC 8981) rotate
//   daily; every rotation would flush the guests' flows and move their
//   port forwards, and privacy per guest is not what one shared NAT
//   address gives anyway;
// - the uplink's on-link prefixes, and whether relay mode (guests on the
//   uplink's own /64, ND proxy) can work on this network, and why not.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

struct Uplink6Choice {
	std::optional<Ipv6IfAddr> addr;
	bool temporary = false;	 // IFA_F_TEMPORARY: only temporary addresses were usable
	bool deprecated = false; // only deprecated addresses were usable (RFC 6724 rule 3)
	bool ula = false;	 // a unique local address (fc00::/7): no internet behind it
	// Why this one, or why none: a line for `status` and the daemon's log.
	std::string why;
};

// Candidates: global scope (RT_SCOPE_UNIVERSE; link-local and loopback can
// never carry a guest's flow off the link), not tentative, optimistic or
// dadfailed (DAD has not said the address is ours).  Among them, the first
// rule that tells two apart decides:
//   rule 3: not deprecated (preferred lifetime 0: being renumbered away;
//           used only when nothing else is left, as the kernel does);
//   rule 6: not a ULA (fc00::/7 has another label than a global
//           destination in RFC 6724's policy table);
//   rule 7: stable over temporary (see above);
//   rule 8: the longest prefix shared with `toward` (a global gateway; a
//           link-local one, the usual case, tells nothing);
//   then the first in rtnetlink's order, as the kernel keeps the first of
//   equals (its list has the newest address of a scope first).
// keep: the address in use (kvx_cfg6's).  It stays the choice while it is
// a candidate and the best is no better by rules 3, 6 and 7 (another
// prefix's address, or a longer-matching one, appearing does not move it):
// every change of the NAT address flushes the guests' flows, and any host
// on the LAN can advertise a new prefix.
Uplink6Choice choose_uplink_ipv6(const std::vector<Ipv6IfAddr> &addrs,
				 const std::optional<Ipv6Addr> &toward = std::nullopt,
				 const std::optional<Ipv6Addr> &keep = std::nullopt);

// An on-link prefix of the uplink and where it was learnt.
struct Ipv6Prefix {
	Ipv6Net net;
	bool from_ra =
		false; // a prefix route the kernel made from a router advertisement (RTPROT_RA)
	bool autoconf = false; // the uplink has a SLAAC address in it (not IFA_F_PERMANENT)
	bool has_addr = false; // the uplink has an address in it
};

// The global on-link prefixes of the uplink: its on-link routes (no
// gateway) and its addresses' networks, each /1../64 (a /128 is no link
// prefix), not link-local or multicast.  Sorted by: from a router
// advertisement first, then as listed.
std::vector<Ipv6Prefix> onlink_prefixes(const std::vector<Ipv6IfAddr> &addrs,
					const std::vector<Ipv6Route> &routes);

// The routers of the IPv6 default routes among routes (a device's), the
// one the kernel routes through first: the lowest metric, then RFC 4191's
// preference (high, medium, low; 2 is reserved, taken as medium as the
// kernel does), then the lower address; never the order the routes are
// listed in (the order their RAs came, which changes with each
// reconnect).  Each router once; next hops that are down skipped; at most
// max (a LAN host can send RAs for as many routers as it likes).
std::vector<Ipv6Addr> default_routers6(const std::vector<Ipv6Route> &routes, size_t max);

// The neighbour a packet to daddr goes to through a device whose routes
// (main table) these are: the route with the longest prefix holding daddr
// decides, its router (the default route's as default_routers6 ranks
// them), or daddr itself on the link; nullopt: no route.  Never daddr's
// own neighbour entry just because there is one: a LAN host plants one
// for any address with a Neighbour Solicitation from it.
std::optional<Ipv6Addr> next_hop6(const std::vector<Ipv6Route> &routes, const Ipv6Addr &daddr);

struct RelayCheck {
	bool possible = false;
	std::optional<Ipv6Net> prefix; // the /64 relay would share
	std::string why;	       // why it is possible, or why the network refuses it
};

// Relay needs a /64 the LAN's router announces for SLAAC: the guests take
// addresses in it as the host did, and the router reaches them through
// the host's ND proxy.  Refused when the uplink has no global IPv6; when
// the router announces no prefix (no on-link /64 from an RA: an address
// made by hand, or a /128 from DHCPv6 alone); when the only prefix is not
// a /64 (SLAAC needs one); when the RA's prefix is on-link but not for
// autoconfiguration (DHCPv6-only: `managed` is the RA's M flag, the
// kernel's IF_RA_MANAGED; the host's address in it is a /128).
RelayCheck relay_check(const std::vector<Ipv6IfAddr> &addrs, const std::vector<Ipv6Route> &routes,
		       bool managed);

// attach --ipv6: what the instance does with the guests' IPv6.  Auto (no
// --ipv6, the default) is what users expect of a NAT: IPv6 translated when
// the guests have an IPv6 prefix, as IPv4 is when they have a subnet, and
// left to the host otherwise (a bridge without IPv6 gains nothing and
// loses nothing).
// Relay only when asked: it puts the guests on the LAN as hosts of their
// own (reachable from it, inbound traffic let in), which a NAT user did not
// ask for, and it works only on networks that allow it (relay_check).
enum class Ipv6Choice { Auto, Off, Nat66, Relay };

// "auto", "off", "nat66", "relay" (case-sensitive, as the other modes).
// Throws Error naming `what` and the value ("--ipv6", "instances[0].ipv6").
Ipv6Choice parse_ipv6_choice(const std::string &text, const std::string &what);

// attach --ipv6-inbound: "stateful" (false: only the replies of the guests'
// flows come in, as through a home router's firewall, RFC 6092) or "open"
// (true: everything to a guest's address, as through a real bridge).
// Throws Error naming `what` and the value.
bool parse_ipv6_inbound(const std::string &text, const std::string &what);
const char *ipv6_choice_name(Ipv6Choice c);

// What attach makes of the choice: the kvx_cfg6 mode, the guests' prefix
// and why, in a line for the log and `status`.
struct Ipv6Decision {
	kvx_v6_mode mode = KVX_V6_OFF;
	std::optional<Ipv6Net> subnet;	     // NAT66: the guests' prefix
	std::optional<Ipv6Net> relay_prefix; // relay: the uplink's /64 the guests share
	std::string why;
};

// The guests' prefix is --subnet6, else the network of the bridge's first
// global or ULA address whose prefix a guest can autoconfigure from (/1../64;
// libvirt's <ip family='ipv6' address='fd42::1' prefix='64'/> puts
// fd42::1/64 on the bridge), tentative or not (a bridge without ports has
// not run DAD yet; the prefix is what matters).  Off: --ipv6 off, or auto
// without a prefix.  --ipv6 nat66 without a prefix throws Error
// naming the bridge and how to give it one.
//
// --ipv6 relay: relay on relay_check's prefix (the uplink's, read by the
// caller; none: no uplink), else Error with relay_check's reason; with
// --subnet6 (NAT66's prefix) an Error too.
Ipv6Decision decide_ipv6(Ipv6Choice choice, const std::optional<Ipv6Net> &subnet6,
			 const std::vector<Ipv6IfAddr> &bridge_addrs, const std::string &bridge,
			 const std::optional<RelayCheck> &relay = std::nullopt);

// The bridge's link-local address (fe80::/10, not dadfailed): what the
// guests' default route points at (the RAs come from it), hence the source
// of the ICMPv6 errors kvmxdp sends them (kvx_cfg6.gw_addr).
std::optional<Ipv6Addr> link_local_of(const std::vector<Ipv6IfAddr> &addrs);

} // namespace kvmxdp
