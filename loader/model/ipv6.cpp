// SPDX-License-Identifier: GPL-2.0
#include "model/ipv6.hpp"

#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#include <algorithm>
#include <tuple>

#include "base/error.hpp"
#include "base/text.hpp"

namespace kvmxdp {

namespace {

bool is_ula(const Ipv6Addr &a)
{
	return (a[0] & 0xfe) == 0xfc; // fc00::/7, RFC 4193
}

bool is_deprecated(const Ipv6IfAddr &a)
{
	// The kernel sets IFA_F_DEPRECATED when the preferred lifetime runs
	// out; an RA with preferred lifetime 0 shows 0 at once.
	return (a.flags & IFA_F_DEPRECATED) || a.preferred == 0;
}

bool is_candidate(const Ipv6IfAddr &a)
{
	// Optimistic addresses (RFC 4429) may be used by the kernel before
	// DAD ends; a NAT address for many guests' flows waits for DAD.
	return a.scope == RT_SCOPE_UNIVERSE &&
	       !(a.flags & (IFA_F_TENTATIVE | IFA_F_OPTIMISTIC | IFA_F_DADFAILED)) &&
	       a.addr[0] != 0xff && a.addr != Ipv6Addr{};
}

// A prefix that can be a link's: global unicast, /1../64.
bool is_link_prefix(const Ipv6Net &n)
{
	return n.prefix >= 1 && n.prefix <= 64 && n.addr[0] != 0xff &&
	       !(n.addr[0] == 0xfe && (n.addr[1] & 0xc0) == 0x80);
}

// SLAAC's addresses are the kernel's (or NetworkManager's), with
// lifetimes from the RA; addresses made by hand are permanent.  A DHCPv6
// client adds a /128 (RFC 8415 gives no prefix length).
bool is_autoconf(const Ipv6IfAddr &a)
{
	return !(a.flags & IFA_F_PERMANENT) && a.prefix == 64;
}

} // namespace

Uplink6Choice choose_uplink_ipv6(const std::vector<Ipv6IfAddr> &addrs,
				 const std::optional<Ipv6Addr> &toward,
				 const std::optional<Ipv6Addr> &keep)
{
	Uplink6Choice c;
	const bool global_toward = toward && (*toward)[0] >= 0x20 && (*toward)[0] <= 0x3f;
	const Ipv6IfAddr *best = nullptr;
	// Returns <0 if a is better, >0 if b is, 0 if the rules cannot tell.
	auto compare = [&](const Ipv6IfAddr &a, const Ipv6IfAddr &b) -> int {
		if (is_deprecated(a) != is_deprecated(b))
			return is_deprecated(a) ? 1 : -1;
		if (is_ula(a.addr) != is_ula(b.addr))
			return is_ula(a.addr) ? 1 : -1;
		const bool ta = a.flags & IFA_F_TEMPORARY, tb = b.flags & IFA_F_TEMPORARY;
		if (ta != tb)
			return ta ? 1 : -1;
		if (global_toward) {
			const unsigned la =
				std::min<unsigned>(common_prefix_len(a.addr, *toward), a.prefix);
			const unsigned lb =
				std::min<unsigned>(common_prefix_len(b.addr, *toward), b.prefix);
			if (la != lb)
				return la > lb ? -1 : 1;
		}
		return 0;
	};
	size_t skipped = 0, link_local = 0;
	for (const Ipv6IfAddr &a : addrs) {
		if (!is_candidate(a)) {
			if (a.scope == RT_SCOPE_UNIVERSE)
				skipped++;
			else if (a.scope == RT_SCOPE_LINK)
				link_local++;
			continue;
		}
		if (!best || compare(a, *best) < 0)
			best = &a;
	}
	if (best && keep && best->addr != *keep)
		for (const Ipv6IfAddr &a : addrs)
			if (a.addr == *keep && is_candidate(a) && !is_deprecated(a) &&
			    is_ula(a.addr) <= is_ula(best->addr) &&
			    (a.flags & IFA_F_TEMPORARY) <= (best->flags & IFA_F_TEMPORARY)) {
				best = &a;
				break;
			}
	if (!best) {
		if (skipped)
			c.why = std::to_string(skipped) +
				" global address(es), none usable yet (tentative or failed "
				"duplicate address detection)";
		else if (link_local)
			c.why = "link-local address(es) only: no router advertisement or "
				"global address yet";
		else
			c.why = "no IPv6 address";
		return c;
	}
	c.addr = *best;
	c.temporary = best->flags & IFA_F_TEMPORARY;
	c.deprecated = is_deprecated(*best);
	c.ula = is_ula(best->addr);
	std::string kind = c.temporary ? "temporary" : "stable";
	if (c.temporary)
		kind += " (no stable address usable)";
	if (c.deprecated)
		kind += ", deprecated (nothing else left: being renumbered away)";
	if (c.ula)
		kind += ", unique local (fc00::/7: no global address)";
	c.why = kind;
	return c;
}

std::vector<Ipv6Addr> default_routers6(const std::vector<Ipv6Route> &routes, size_t max)
{
	std::vector<const Ipv6Route *> defaults;
	for (const Ipv6Route &r : routes)
		if (r.dst.prefix == 0 && r.gateway && !r.dead)
			defaults.push_back(&r);
	auto rank = [](uint8_t pref) { return pref == 1 ? 0 : pref == 3 ? 2 : 1; };
	std::sort(defaults.begin(), defaults.end(), [&](const Ipv6Route *a, const Ipv6Route *b) {
		return std::make_tuple(a->metric, rank(a->pref), a->via) <
		       std::make_tuple(b->metric, rank(b->pref), b->via);
	});
	std::vector<Ipv6Addr> routers;
	for (const Ipv6Route *r : defaults)
		if (routers.size() < max &&
		    std::find(routers.begin(), routers.end(), r->via) == routers.end())
			routers.push_back(r->via); // one router's two routes count once
	return routers;
}

std::optional<Ipv6Addr> next_hop6(const std::vector<Ipv6Route> &routes, const Ipv6Addr &daddr)
{
	const Ipv6Route *best = nullptr;
	for (const Ipv6Route &r : routes)
		if (!r.dead && r.dst.contains(daddr) && (!best || r.dst.prefix > best->dst.prefix))
			best = &r;
	if (!best)
		return std::nullopt;
	if (!best->gateway)
		return daddr;
	if (best->dst.prefix == 0) {
		const auto routers = default_routers6(routes, 1);
		if (!routers.empty())
			return routers.front();
	}
	return best->via;
}

std::vector<Ipv6Prefix> onlink_prefixes(const std::vector<Ipv6IfAddr> &addrs,
					const std::vector<Ipv6Route> &routes)
{
	std::vector<Ipv6Prefix> out;
	auto find = [&](const Ipv6Net &n) -> Ipv6Prefix & {
		for (Ipv6Prefix &p : out)
			if (p.net == n)
				return p;
		out.push_back({n, false, false, false});
		return out.back();
	};
	for (const Ipv6Route &r : routes) {
		if (r.gateway || !is_link_prefix(r.dst))
			continue;
		Ipv6Prefix &p = find(r.dst);
		// The kernel's own prefix routes from an RA's prefix
		// information are RTPROT_KERNEL with the RA's valid lifetime
		// (an address's prefix route has none); NetworkManager, doing
		// SLAAC itself, adds them as RTPROT_RA.
		p.from_ra = p.from_ra || r.protocol == RTPROT_RA ||
			    (r.protocol == RTPROT_KERNEL && r.expires);
	}
	for (const Ipv6IfAddr &a : addrs) {
		if (a.scope != RT_SCOPE_UNIVERSE)
			continue;
		const Ipv6Net n = network_of6(a.addr, a.prefix);
		if (!is_link_prefix(n))
			continue;
		Ipv6Prefix &p = find(n);
		p.has_addr = true;
		if (is_autoconf(a)) {
			// An address SLAAC made: the prefix came in an RA.
			p.autoconf = true;
			p.from_ra = true;
		}
	}
	std::stable_sort(out.begin(), out.end(), [](const Ipv6Prefix &a, const Ipv6Prefix &b) {
		return a.from_ra > b.from_ra;
	});
	return out;
}

RelayCheck relay_check(const std::vector<Ipv6IfAddr> &addrs, const std::vector<Ipv6Route> &routes,
		       bool managed)
{
	RelayCheck r;
	std::vector<Ipv6IfAddr> usable;
	for (const Ipv6IfAddr &a : addrs)
		if (is_candidate(a))
			usable.push_back(a);
	if (usable.empty()) {
		r.why = "no global IPv6 address on the uplink";
		return r;
	}
	const std::vector<Ipv6Prefix> prefixes = onlink_prefixes(addrs, routes);
	// The prefix of a non-deprecated SLAAC address first: after
	// renumbering the old prefix is still listed until it expires.
	const Ipv6Prefix *slaac = nullptr;
	for (const Ipv6Prefix &p : prefixes) {
		if (!p.autoconf || p.net.prefix != 64)
			continue;
		bool fresh = false;
		for (const Ipv6IfAddr &a : usable)
			fresh = fresh || (p.net.contains(a.addr) && !is_deprecated(a));
		if (!slaac || fresh)
			slaac = &p;
		if (fresh)
			break;
	}
	if (slaac) {
		r.possible = true;
		r.prefix = slaac->net;
		r.why = "the router announces " + slaac->net.str() +
			" for SLAAC: guests can take addresses in it";
		return r;
	}
	const std::string dhcp = managed ? " (the router's RA says DHCPv6 (M flag): "
					   "a DHCPv6-only network)" :
					   "";
	for (const Ipv6Prefix &p : prefixes)
		if (p.from_ra && p.net.prefix == 64)
			return {false, std::nullopt,
				"the router announces " + p.net.str() +
					" on-link but not for autoconfiguration" + dhcp +
					": guests' addresses would need the network's DHCPv6"};
	for (const Ipv6Prefix &p : prefixes)
		if (p.from_ra)
			return {false, std::nullopt,
				"the router's prefix " + p.net.str() +
					" is not a /64: SLAAC needs one"};
	const bool only_128 = std::all_of(usable.begin(), usable.end(),
					  [](const Ipv6IfAddr &a) { return a.prefix == 128; });
	if (only_128)
		r.why = "a /128 only (" + format_ipv6(usable.front().addr) +
			", from DHCPv6 or by hand) and no prefix from a router advertisement: "
			"no /64 to share" +
			dhcp;
	else
		r.why = "no prefix from a router advertisement (" +
			(prefixes.empty() ?
				 std::string("no on-link prefix") :
				 prefixes.front().net.str() + " was configured by hand") +
			"): the LAN's router would not reach guests in it" + dhcp;
	return r;
}

Ipv6Choice parse_ipv6_choice(const std::string &text, const std::string &what)
{
	if (text == "auto")
		return Ipv6Choice::Auto;
	if (text == "off")
		return Ipv6Choice::Off;
	if (text == "nat66")
		return Ipv6Choice::Nat66;
	if (text == "relay")
		return Ipv6Choice::Relay;
	throw Error("invalid " + what + " '" + printable(text) +
		    "': use auto, nat66, relay or off");
}

bool parse_ipv6_inbound(const std::string &text, const std::string &what)
{
	if (text == "stateful")
		return false;
	if (text == "open")
		return true;
	throw Error("invalid " + what + " '" + printable(text) + "': use stateful or open");
}

const char *ipv6_choice_name(Ipv6Choice c)
{
	switch (c) {
	case Ipv6Choice::Off:
		return "off";
	case Ipv6Choice::Nat66:
		return "nat66";
	case Ipv6Choice::Relay:
		return "relay";
	case Ipv6Choice::Auto:
		break;
	}
	return "auto";
}

Ipv6Decision decide_ipv6(Ipv6Choice choice, const std::optional<Ipv6Net> &subnet6,
			 const std::vector<Ipv6IfAddr> &bridge_addrs, const std::string &bridge,
			 const std::optional<RelayCheck> &relay)
{
	Ipv6Decision d;
	if (choice == Ipv6Choice::Off) {
		d.why = "--ipv6 off: the guests' IPv6 is the host's";
		return d;
	}
	if (choice == Ipv6Choice::Relay) {
		if (subnet6)
			throw Error("--ipv6 relay: --subnet6 " + subnet6->str() +
				    " is NAT66's; relay gives the guests the uplink's own prefix");
		if (!relay)
			throw Error("--ipv6 relay: no uplink to share a prefix with");
		if (!relay->possible || !relay->prefix)
			throw Error("--ipv6 relay: the uplink's network refuses it: " + relay->why);
		d.mode = KVX_V6_RELAY;
		d.relay_prefix = relay->prefix;
		d.why = "--ipv6 relay, " + relay->why;
		return d;
	}
	const std::string asked = choice == Ipv6Choice::Nat66 ? "--ipv6 nat66, " : "";
	if (subnet6) {
		// The guests' prefix must be on the bridge's link: the datapath
		// hands a guest's packet to any address of it to the host, which
		// routes it back onto the bridge only if the bridge has the
		// prefix (an address whose network holds it); else by its
		// default route, out of the uplink with the guest's source.
		bool onlink = false;
		for (const Ipv6IfAddr &a : bridge_addrs)
			if (a.scope == RT_SCOPE_UNIVERSE && !(a.flags & IFA_F_DADFAILED) &&
			    a.prefix <= subnet6->prefix &&
			    network_of6(a.addr, a.prefix).contains(subnet6->addr))
				onlink = true;
		if (!onlink)
			throw Error("--subnet6 " + subnet6->str() + ": bridge '" + bridge +
				    "' has no address in it, so the host would not route it to "
				    "the guests (give the bridge one, e.g. ip -6 addr add " +
				    format_ipv6(subnet6->addr) + "1/" +
				    std::to_string(subnet6->prefix) + " dev " + bridge + ")");
		d.mode = KVX_V6_NAT66;
		d.subnet = subnet6;
		d.why = asked + "guests' prefix " + subnet6->str() + " (--subnet6)";
		return d;
	}
	const Ipv6IfAddr *pick = nullptr, *routed = nullptr;
	size_t n = 0;
	for (const Ipv6IfAddr &a : bridge_addrs) {
		if (a.scope != RT_SCOPE_UNIVERSE || (a.flags & IFA_F_DADFAILED))
			continue;
		// The same networks --subnet6 accepts (no ::/8, link-local,
		// multicast; /1../64).
		try {
			const Ipv6Net net = network_of6(a.addr, a.prefix);
			parse_subnet6(net.str(), "the bridge's prefix");
		} catch (const Error &) {
			continue;
		}
		// Unasked, only a ULA (fc00::/7): a global prefix on the bridge
		// is most likely routed to the guests (libvirt routes a NAT
		// network's IPv6, it NATs it only with <nat ipv6='yes'/>), and
		// translating it would take the guests' own addresses from them.
		if (choice == Ipv6Choice::Auto && (a.addr[0] & 0xfe) != 0xfc) {
			if (!routed)
				routed = &a;
			continue;
		}
		if (!pick)
			pick = &a;
		n++;
	}
	if (pick) {
		d.mode = KVX_V6_NAT66;
		d.subnet = network_of6(pick->addr, pick->prefix);
		d.why = asked + "guests' prefix " + d.subnet->str() + " from bridge '" + bridge +
			"' address " + format_ipv6(pick->addr) + "/" +
			std::to_string(pick->prefix) +
			(n > 1 ? " (the first of " + std::to_string(n) + " prefixes)" : "");
		return d;
	}
	if (routed) {
		d.why = "bridge '" + bridge + "' has the global prefix " +
			network_of6(routed->addr, routed->prefix).str() +
			": routed to the guests, not translated (--ipv6 nat66 translates it)";
		return d;
	}
	const std::string none = "bridge '" + bridge +
				 "' has no global or ULA IPv6 address to take the guests' prefix "
				 "from and no --subnet6 was given";
	if (choice == Ipv6Choice::Nat66)
		throw Error("--ipv6 nat66: " + none +
			    " (give the bridge one, e.g. libvirt's <ip family='ipv6' "
			    "address='fd42::1' prefix='64'/>, or pass --subnet6)");
	d.why = none;
	return d;
}

std::optional<Ipv6Addr> link_local_of(const std::vector<Ipv6IfAddr> &addrs)
{
	for (const Ipv6IfAddr &a : addrs)
		if (a.addr[0] == 0xfe && (a.addr[1] & 0xc0) == 0x80 && !(a.flags & IFA_F_DADFAILED))
			return a.addr;
	return std::nullopt;
}

} // namespace kvmxdp
