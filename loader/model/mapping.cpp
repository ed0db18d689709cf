// SPDX-License-Identifier: GPL-2.0
#include "model/mapping.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "base/error.hpp"
#include "base/text.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

namespace {

std::string proto_name(MappingProto p)
{
	switch (p) {
	case MappingProto::Tcp:
		return "tcp";
	case MappingProto::Udp:
		return "udp";
	default:
		return "any";
	}
}

std::string ports_str(const PortRange &r)
{
	return r.lo == r.hi ? std::to_string(r.lo) : r.str();
}

// "PORT" or "LO-HI", 1..65535.
PortRange parse_ports(const std::string &text, const std::string &arg)
{
	if (text.find('-') != std::string::npos) {
		try {
			return parse_port_range(text);
		} catch (const Error &) {
			throw Error("invalid port range in '" + arg +
				    "': need PORT or LO-HI within 1-65535");
		}
	}
	uint64_t p;
	try {
		p = parse_uint(text, 65535, "port");
	} catch (const Error &) {
		throw Error("invalid port in '" + arg + "': need a number 1-65535");
	}
	if (p < 1)
		throw Error("invalid port in '" + arg + "': need a number 1-65535");
	return {static_cast<uint16_t>(p), static_cast<uint16_t>(p)};
}

struct Endpoint {
	bool uplink = false;
	bool v6 = false;
	bool bare6 = false; // an IPv6 address without brackets (1:1 only)
	uint32_t addr = 0;
	Ipv6Addr addr6{};
	std::optional<PortRange> ports;
};

// "[IPV6]:PORT[-PORT]", "[IPV6]", "[uplink]:PORT" (allow_uplink).
Endpoint parse_bracketed(const std::string &text, bool allow_uplink)
{
	Endpoint ep;
	ep.v6 = true;
	const auto close = text.find(']');
	if (close == std::string::npos)
		throw Error("invalid address '" + printable(text) +
			    "': '[' without ']' (an IPv6 address with a port is [IPV6]:PORT)");
	const std::string host = text.substr(1, close - 1);
	const std::string rest = text.substr(close + 1);
	if (allow_uplink && host == "uplink") {
		ep.uplink = true;
	} else {
		try {
			ep.addr6 = parse_ipv6(host);
		} catch (const Error &) {
			throw Error("invalid IPv6 address '" + printable(host) + "' in '" +
				    printable(text) + "'" +
				    (allow_uplink ? ": need [IPV6]:PORT or [uplink]:PORT" :
						    ": need [IPV6]:PORT"));
		}
	}
	if (rest.empty())
		return ep;
	if (rest[0] != ':')
		throw Error("invalid address '" + printable(text) + "': need ':PORT' after ']'");
	ep.ports = parse_ports(rest.substr(1), text);
	return ep;
}

Endpoint parse_endpoint(const std::string &text, bool allow_uplink)
{
	if (!text.empty() && text[0] == '[')
		return parse_bracketed(text, allow_uplink);
	if (text.find(']') != std::string::npos)
		throw Error("invalid address '" + printable(text) + "': ']' without '['");
	Endpoint ep;
	// Two colons or more: a bare IPv6 address, never with a port
	// ("fd42::1:22" is an address too).
	if (std::count(text.begin(), text.end(), ':') >= 2) {
		try {
			ep.addr6 = parse_ipv6(text);
		} catch (const Error &) {
			throw Error("invalid address '" + printable(text) +
				    "': an IPv6 address with a port is written [IPV6]:PORT");
		}
		ep.v6 = true;
		ep.bare6 = true;
		return ep;
	}
	auto colon = text.find(':');
	std::string host = text.substr(0, colon);
	if (allow_uplink && host == "uplink") {
		ep.uplink = true;
	} else {
		try {
			ep.addr = parse_ipv4(host);
		} catch (const Error &) {
			throw Error("invalid address '" + host + "' in '" + text + "'" +
				    (allow_uplink ? ": need a dotted IPv4 address or 'uplink'" :
						    ": need a dotted IPv4 address"));
		}
	}
	if (colon != std::string::npos)
		ep.ports = parse_ports(text.substr(colon + 1), text);
	return ep;
}

// A bare IPv6 address where a port was wanted: say how to write one,
// with the reading that splits off the last group as the port if that
// reads as one ("fd42::1:22" -> "[fd42::1]:22").
Error bracket_error(const std::string &text)
{
	std::string hint = "[IPV6]:PORT";
	const auto colon = text.rfind(':');
	const std::string host = text.substr(0, colon), port = text.substr(colon + 1);
	if (colon != std::string::npos && !port.empty() &&
	    port.find_first_not_of("0123456789") == std::string::npos && port.size() <= 5) {
		try {
			parse_ipv6(host);
			hint = "'[" + host + "]:" + port + "'";
		} catch (const Error &) {
		}
	}
	return Error("'" + printable(text) +
		     "' is ambiguous: a bare IPv6 address maps 1:1 (no ports); write it with a "
		     "port as " +
		     hint);
}

// Addresses no mapping may use: ::/8 (unspecified, loopback,
// IPv4-mapped), link-local fe80::/10, multicast ff00::/8.
bool unusable6(const Ipv6Addr &a)
{
	return a[0] == 0 || a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

bool ranges_overlap(const PortRange &a, const PortRange &b)
{
	return a.lo <= b.hi && b.lo <= a.hi;
}

kvx_bind_key bind_key(uint8_t dir, MappingProto proto, uint32_t addr, uint16_t port)
{
	kvx_bind_key k;
	std::memset(&k, 0, sizeof(k)); // padding is hashed: zero every key
	k.dir = dir;
	k.proto = static_cast<uint8_t>(proto);
	k.addr = htonl(addr);
	k.port = htons(port);
	return k;
}

kvx_bind_val bind_val(uint32_t addr, uint16_t port, uint16_t flags)
{
	kvx_bind_val v;
	std::memset(&v, 0, sizeof(v));
	v.addr = htonl(addr);
	v.port = htons(port);
	v.flags = flags;
	return v;
}

kvx_bind6_key bind6_key(uint8_t dir, MappingProto proto, const Ipv6Addr &addr, uint16_t port)
{
	kvx_bind6_key k;
	std::memset(&k, 0, sizeof(k)); // padding is hashed: zero every key
	k.dir = dir;
	k.proto = static_cast<uint8_t>(proto);
	std::memcpy(k.addr, addr.data(), sizeof(k.addr));
	k.port = htons(port);
	return k;
}

kvx_bind6_val bind6_val(const Ipv6Addr &addr, uint16_t port, uint16_t flags)
{
	kvx_bind6_val v;
	std::memset(&v, 0, sizeof(v));
	std::memcpy(v.addr, addr.data(), sizeof(v.addr));
	v.bind.port = htons(port);
	v.bind.flags = flags;
	return v;
}

// One side: "ADDR" (1:1), "ADDR:PORTS", IPv6 "[ADDR]:PORTS".
std::string endpoint_str(bool v6, bool uplink, uint32_t a4, const Ipv6Addr &a6,
			 const PortRange *ports)
{
	const std::string a = uplink ? "uplink" : v6 ? format_ipv6(a6) : format_ipv4(a4);
	if (!ports)
		return a;
	return (v6 ? "[" + a + "]" : a) + ":" + ports_str(*ports);
}

} // namespace

std::string Mapping::ext_str() const
{
	return endpoint_str(v6, ext_uplink, ext_addr, ext_addr6,
			    one_to_one() ? nullptr : &ext_ports);
}

std::string Mapping::guest_str() const
{
	return endpoint_str(v6, false, guest_addr, guest_addr6,
			    one_to_one() ? nullptr : &guest_ports);
}

std::string Mapping::proto_str() const
{
	return one_to_one() ? "" : proto_name(proto);
}

std::string NetId::str() const
{
	if (!net)
		return "no IPv4 address";
	return net->str() +
	       (gateway ? " via " + format_ipv4(gateway) : std::string(" (no gateway)")) +
	       (gateway_mac.empty() ? std::string() : " at " + gateway_mac);
}

std::string Uplink6Net::str() const
{
	std::string s;
	for (const Ipv6Net &p : prefixes)
		s += (s.empty() ? "" : ",") + p.str();
	s += router != Ipv6Addr{} ? " via " + format_ipv6(router) : " (no default router)";
	if (!router_mac.empty())
		s += " at " + router_mac;
	if (!other_routers.empty())
		s += " and " + std::to_string(other_routers.size()) + " more router(s)";
	return s;
}

std::string NetId6::str() const
{
	return prefix.str() +
	       (router != Ipv6Addr{} ? " via " + format_ipv6(router) :
				       std::string(" (no default router)")) +
	       (router_mac.empty() ? std::string() : " at " + router_mac);
}

std::optional<std::string> Uplink6Net::router_mac_of(const Ipv6Addr &r) const
{
	if (r == router)
		return router_mac;
	for (const Router6 &o : other_routers)
		if (o.addr == r)
			return o.mac;
	return std::nullopt;
}

std::optional<NetId6> Uplink6Net::id_for(const Ipv6Addr &ext, const Ipv6Addr &uplink6) const
{
	NetId6 id;
	id.router = router;
	id.router_mac = router_mac;
	for (const Ipv6Net &p : prefixes)
		if (p.contains(ext)) {
			id.prefix = p;
			return id;
		}
	if (uplink6 == Ipv6Addr{})
		return std::nullopt;
	id.prefix = network_of6(uplink6, 64);
	return id;
}

void tie_to_network(StaticMapping &sm, const std::optional<NetId> &cur, const Ipv6Addr &uplink6)
{
	if (!sm.m.v6) {
		sm.network = cur && cur->net ? std::optional<NetId>(cur->recorded()) : std::nullopt;
		return;
	}
	sm.network6.reset();
	if (cur && cur->v6)
		sm.network6 = cur->v6->id_for(sm.m.ext6(uplink6), uplink6);
}

bool mapping_active(const StaticMapping &sm, const std::optional<NetId> &cur)
{
	if (!sm.pending.empty())
		return false;
	if (sm.m.v6) {
		if (!sm.network6)
			return true;
		const NetId6 &rec = *sm.network6;
		if (!cur || !cur->v6)
			return false;
		const std::vector<Ipv6Net> &prefixes = cur->v6->prefixes;
		const bool on_prefix = std::find(prefixes.begin(), prefixes.end(), rec.prefix) !=
				       prefixes.end();
		// Made while the network had no default router: its prefix is all
		// that names it (a global prefix is that network's own; a router
		// that appears since is recorded on use, learn_router6).
		if (rec.router == Ipv6Addr{})
			return on_prefix;
		// Its router among the network's routers (a mapping made while
		// another router was preferred is on the same network).
		const std::optional<std::string> mac = cur->v6->router_mac_of(rec.router);
		if (!mac)
			return false;
		// `[uplink]` forwards follow NAT66's address wherever the
		// network numbers it (an ISP's new prefix): the router is the
		// network.  A literal address is valid only on its prefix.
		if (!sm.m.ext_uplink && !on_prefix)
			return false;
		return rec.router_mac.empty() || *mac == rec.router_mac;
	}
	if (!sm.network)
		return true;
	const NetId &rec = *sm.network;
	if (!cur || !cur->net || !(cur->net == rec.net) || cur->gateway != rec.gateway)
		return false;
	return rec.gateway_mac.empty() || cur->gateway_mac == rec.gateway_mac;
}

bool learn_router6(StaticMapping &sm, const std::optional<NetId> &cur)
{
	if (!sm.network6 || !cur || !cur->v6 || !mapping_active(sm, cur))
		return false;
	NetId6 &rec = *sm.network6;
	if (rec.router == Ipv6Addr{}) {
		if (cur->v6->router == Ipv6Addr{})
			return false;
		rec.router = cur->v6->router;
		rec.router_mac = cur->v6->router_mac;
		return true;
	}
	if (!rec.router_mac.empty())
		return false;
	const std::string mac = cur->v6->router_mac_of(rec.router).value_or("");
	if (mac.empty())
		return false;
	rec.router_mac = mac;
	return true;
}

std::optional<NetId> judged_network(const std::optional<NetId> &now,
				    const std::optional<NetId> &last)
{
	// The IPv4 part from now, else from last (its IPv6 part set below).
	NetId j;
	const bool v4_now = now && now->net;
	if (v4_now)
		j = *now;
	else if (last && last->net)
		j = *last;
	const std::optional<Uplink6Net> v6_now = now ? now->v6 : std::nullopt;
	const bool v6_whole = v6_now && v6_now->router != Ipv6Addr{};
	// A gateway MAC not resolved now (carrier lost, the entry failed) is
	// no other network.
	const bool same_v4 = !v4_now ||
			     (last && last->net == now->net && last->gateway == now->gateway &&
			      (now->gateway_mac.empty() || last->gateway_mac.empty() ||
			       now->gateway_mac == last->gateway_mac));
	j.v6 = v6_whole || !same_v4 || !last ? v6_now : last->v6;
	if (!j.net && !j.v6)
		return std::nullopt;
	return j;
}

std::string Mapping::str() const
{
	// A relay mapping as `map add` takes it: one endpoint.
	if (opens())
		return one_to_one() ? ext_str() : ext_str() + " " + proto_name(proto);
	if (one_to_one())
		return ext_str() + " " + guest_str();
	return ext_str() + " " + guest_str() + " " + proto_name(proto);
}

bool Mapping::operator==(const Mapping &o) const
{
	return v6 == o.v6 && ext_uplink == o.ext_uplink && ext_addr == o.ext_addr &&
	       guest_addr == o.guest_addr && ext_addr6 == o.ext_addr6 &&
	       guest_addr6 == o.guest_addr6 && proto == o.proto && ext_ports == o.ext_ports &&
	       guest_ports == o.guest_ports;
}

MappingEndpoint parse_mapping_endpoint(const std::string &text)
{
	const Endpoint ep = parse_endpoint(text, true);
	MappingEndpoint out;
	out.v6 = ep.v6;
	out.uplink = ep.uplink;
	out.addr = ep.addr;
	out.addr6 = ep.addr6;
	out.ports = ep.ports;
	return out;
}

Mapping parse_mapping(const std::string &ext, const std::string &guest_in, const std::string &proto)
{
	Endpoint e = parse_endpoint(ext, true);
	// One endpoint: a relay mapping, its address and ports as they are.
	if (guest_in.empty() && (!e.v6 || e.uplink))
		throw Error("mapping '" + printable(ext) +
			    "' needs a GUEST: one endpoint alone is a relay mapping, a guest's "
			    "own IPv6 address ('[ADDR6]:PORT' or ADDR6)");
	const std::string &guest = guest_in.empty() ? ext : guest_in;
	Endpoint g = parse_endpoint(guest, false);
	if (e.v6 && g.v6 && !e.uplink && e.addr6 == g.addr6 && !(e.ports == g.ports))
		throw Error("mapping '" + printable(ext) + "' -> '" + printable(guest) +
			    "': a relay mapping (a guest's own address on both sides) lets its "
			    "ports in as they are: give the same ports on both sides, or GUEST "
			    "not at all");
	if (e.v6 != g.v6)
		throw Error("mapping '" + printable(ext) + "' -> '" + printable(guest) +
			    "' mixes IPv4 and IPv6: both sides must be one family (IPv6 as "
			    "[IPV6]:PORT, the uplink's IPv6 address as [uplink]:PORT)");
	// A bare IPv6 address where a port is wanted: the other side has
	// one, or a protocol was given.
	for (const auto *ep : {&e, &g}) {
		const Endpoint &other = ep == &e ? g : e;
		if (ep->bare6 && (other.ports || !proto.empty()))
			throw bracket_error(ep == &e ? ext : guest);
	}
	Mapping m;
	m.v6 = e.v6;
	m.ext_uplink = e.uplink;
	m.ext_addr = e.addr;
	m.guest_addr = g.addr;
	m.ext_addr6 = e.addr6;
	m.guest_addr6 = g.addr6;

	if (!e.ports && !g.ports) {
		if (!proto.empty())
			throw Error(
				"--proto " + proto +
				" needs ports: EXT_IP:PORT GUEST_IP:PORT (a 1:1 mapping covers every protocol)");
		if (e.uplink)
			throw Error(
				"'" + ext + "' cannot be mapped 1:1 to '" + guest +
				"': the uplink's own address belongs to the host (forward ports instead)");
		return m;
	}
	if (!e.ports || !g.ports)
		throw Error("mapping '" + ext + "' -> '" + guest +
			    "': give ports on both sides, or on neither for 1:1");
	if (proto == "tcp")
		m.proto = MappingProto::Tcp;
	else if (proto == "udp")
		m.proto = MappingProto::Udp;
	else
		throw Error(proto.empty() ? "port forward '" + ext + "' -> '" + guest +
						    "' needs --proto tcp|udp" :
					    "invalid --proto '" + proto + "': need tcp or udp");
	m.ext_ports = *e.ports;
	m.guest_ports = *g.ports;
	if (m.ext_ports.size() != m.guest_ports.size())
		throw Error("port ranges '" + ext + "' and '" + guest + "' differ in length (" +
			    std::to_string(m.ext_ports.size()) + " vs " +
			    std::to_string(m.guest_ports.size()) + " ports)");
	return m;
}

namespace {

// check_mapping of a relay mapping: a guest's address on the uplink's
// prefix, where relay mode's guests take theirs (not NAT66's prefix, not
// the host's), and no other mapping of it.
void check_relay_mapping(const Mapping &m, const std::vector<Mapping> &existing,
			 const MappingContext &ctx)
{
	const std::string what = "relay mapping '" + m.str() + "'";
	const std::string a = format_ipv6(m.ext_addr6);
	if (unusable6(m.ext_addr6))
		throw Error(what + ": " + a +
			    " is not a unicast address a guest has (not ::/8, link-local or "
			    "multicast)");
	if (ctx.subnet6 && ctx.subnet6->contains(m.ext_addr6))
		throw Error(what + ": " + a + " lies inside the guests' NAT66 prefix " +
			    ctx.subnet6->str() +
			    ": a relay mapping opens a guest's address on the uplink's prefix (map "
			    "NAT66 guests with EXT GUEST)");
	if (m.ext_addr6 == ctx.uplink_addr6 ||
	    std::find(ctx.host_addrs6.begin(), ctx.host_addrs6.end(), m.ext_addr6) !=
		    ctx.host_addrs6.end())
		throw Error(what + ": " + a +
			    " is an address of this host: a relay mapping opens a guest's address");
	// No --force: relay forwards only its own prefix, never a routed one.
	if (ctx.relay_prefix6 && !ctx.relay_prefix6->contains(m.ext_addr6))
		throw Error(what + ": " + a + " is not in the relay prefix " +
			    ctx.relay_prefix6->str() + ", where the guests take their addresses");
	const bool on_link = std::any_of(ctx.uplink_nets6.begin(), ctx.uplink_nets6.end(),
					 [&](const Ipv6Net &n) { return n.contains(m.ext_addr6); });
	if (!ctx.relay_prefix6 && !ctx.uplink_nets6.empty() && !on_link) {
		std::string nets;
		for (const auto &n : ctx.uplink_nets6)
			nets += (nets.empty() ? "" : ", ") + n.str();
		throw Error(what + ": " + a + " is not on the uplink's prefix " + nets +
			    ", where relay mode's guests take their addresses");
	}
	check_mapping_overlap(m, existing, ctx.uplink_addr, ctx.uplink_addr6);
}

// check_mapping of an IPv6 mapping: the same rules on NAT66's values.
void check_mapping6(const Mapping &m, const std::vector<Mapping> &existing,
		    const MappingContext &ctx)
{
	if (m.opens()) {
		check_relay_mapping(m, existing, ctx);
		return;
	}
	const std::string what = "mapping '" + m.str() + "'";
	if (!ctx.subnet6) {
		if (!ctx.subnet6_unknown_ok)
			throw Error(
				what +
				": NAT66 is off on this bridge (its guests have no IPv6 prefix: "
				"attach with --subnet6, or give the bridge a ULA prefix)");
	} else if (!ctx.subnet6->contains(m.guest_addr6) || m.guest_addr6 == ctx.subnet6->addr) {
		// The prefix's first address is the Subnet-Router anycast
		// address (RFC 4291 2.6.1), no guest's.
		throw Error(what + ": guest " + format_ipv6(m.guest_addr6) +
			    " is not a host address in " + ctx.subnet6->str());
	}
	if (!m.ext_uplink) {
		const std::string ext = format_ipv6(m.ext_addr6);
		if (unusable6(m.ext_addr6))
			throw Error(what + ": external " + ext +
				    " is not a unicast address a mapping can use (not ::/8, "
				    "link-local or multicast)");
		if (ctx.subnet6 && ctx.subnet6->contains(m.ext_addr6))
			throw Error(what + ": external " + ext +
				    " lies inside the guests' prefix " + ctx.subnet6->str());
		if (m.one_to_one() && m.ext_addr6 == ctx.uplink_addr6)
			throw Error(
				what + ": " + ext +
				" is the uplink's own address, which belongs to the host (forward ports instead)");
		// As for IPv4: a 1:1 address would take every port of another
		// address of the host (a temporary one, another link's).
		if (m.one_to_one() && std::find(ctx.host_addrs6.begin(), ctx.host_addrs6.end(),
						m.ext_addr6) != ctx.host_addrs6.end())
			throw Error(
				what + ": " + ext +
				" is an address of this host, whose traffic is the host's (remove it "
				"with 'ip address del' and let kvmxdp announce it, or forward ports "
				"instead)");
		const bool on_link =
			std::any_of(ctx.uplink_nets6.begin(), ctx.uplink_nets6.end(),
				    [&](const Ipv6Net &n) { return n.contains(m.ext_addr6); });
		if (!ctx.force && !ctx.uplink_nets6.empty() && !on_link &&
		    m.ext_addr6 != ctx.uplink_addr6) {
			std::string nets;
			for (const auto &n : ctx.uplink_nets6)
				nets += (nets.empty() ? "" : ", ") + n.str();
			throw Error(what + ": external " + ext + " is not on the uplink's prefix " +
				    nets + " (use --force if it is routed to this host)");
		}
	}
	if (unusable6(m.guest_addr6) && !ctx.subnet6)
		throw Error(what + ": guest " + format_ipv6(m.guest_addr6) +
			    " is not a unicast address a mapping can use");
	const bool on_uplink = m.ext_uplink ||
			       (ctx.uplink_addr6 != Ipv6Addr{} && m.ext_addr6 == ctx.uplink_addr6);
	if (!m.one_to_one() && on_uplink && ranges_overlap(m.ext_ports, ctx.nat_ports))
		throw Error(what + ": external ports " + ports_str(m.ext_ports) +
			    " overlap the NAT port range " + ctx.nat_ports.str());
	check_mapping_overlap(m, existing, ctx.uplink_addr, ctx.uplink_addr6);
	// Each literal address takes a kvx_extaddr6 entry (the uplink's own
	// takes none): past KVX_EXTADDR6_MAX the map refuses it and the
	// mapping would stay held, never announced nor translated.
	if (!on_uplink) {
		std::set<Ipv6Addr> lit;
		for (const Mapping &o : existing)
			if (o.v6 && !o.ext_uplink && !o.opens() && o.ext_addr6 != ctx.uplink_addr6)
				lit.insert(o.ext_addr6);
		if (!lit.count(m.ext_addr6) && lit.size() >= KVX_EXTADDR6_MAX)
			throw Error(what + ": " + std::to_string(KVX_EXTADDR6_MAX) +
				    " IPv6 external addresses are mapped already, the most the "
				    "datapath announces (kvx_extaddr6): map del one of them, or "
				    "forward ports of [uplink] or of a mapped address");
	}
}

} // namespace

void check_mapping(const Mapping &m, const std::vector<Mapping> &existing,
		   const MappingContext &ctx)
{
	const std::string what = "mapping '" + m.str() + "'";
	if (m.v6) {
		check_mapping6(m, existing, ctx);
		return;
	}
	if (!ctx.subnet.contains(m.guest_addr) || m.guest_addr == ctx.subnet.addr ||
	    m.guest_addr == ctx.subnet.broadcast())
		throw Error(what + ": guest " + format_ipv4(m.guest_addr) +
			    " is not a host address in " + ctx.subnet.str());
	if (!m.ext_uplink) {
		if (ctx.subnet.contains(m.ext_addr))
			throw Error(what + ": external " + format_ipv4(m.ext_addr) +
				    " lies inside the guest subnet " + ctx.subnet.str());
		if (m.one_to_one() && m.ext_addr == ctx.uplink_addr)
			throw Error(
				what + ": " + format_ipv4(m.ext_addr) +
				" is the uplink's own address, which belongs to the host (forward ports instead)");
		// A 1:1 address takes every port: on another address of the
		// host it would take the host's services there. A forward takes
		// its own ports only (host listeners are checked apart), as on
		// the uplink's address, so it may use a secondary address.
		if (m.one_to_one() && std::find(ctx.host_addrs.begin(), ctx.host_addrs.end(),
						m.ext_addr) != ctx.host_addrs.end())
			throw Error(
				what + ": " + format_ipv4(m.ext_addr) +
				" is an address of this host, whose traffic is the host's (remove it "
				"with 'ip address del' and let kvmxdp announce it, or forward ports "
				"instead)");
		// /31 and /32 have neither (RFC 3021).
		if (ctx.uplink_net && ctx.uplink_net->prefix < 31 &&
		    (m.ext_addr == ctx.uplink_net->addr ||
		     m.ext_addr == ctx.uplink_net->broadcast()))
			throw Error(what + ": external " + format_ipv4(m.ext_addr) + " is the " +
				    (m.ext_addr == ctx.uplink_net->addr ? "network" : "broadcast") +
				    " address of the uplink's network " + ctx.uplink_net->str());
		if (!ctx.force && ctx.uplink_net && !ctx.uplink_net->contains(m.ext_addr) &&
		    m.ext_addr != ctx.uplink_addr)
			throw Error(what + ": external " + format_ipv4(m.ext_addr) +
				    " is not on the uplink's network " + ctx.uplink_net->str() +
				    " (use --force if it is routed to this host)");
	}
	const bool on_uplink = m.ext_uplink || (ctx.uplink_addr && m.ext_addr == ctx.uplink_addr);
	if (!m.one_to_one() && on_uplink && ranges_overlap(m.ext_ports, ctx.nat_ports))
		throw Error(what + ": external ports " + ports_str(m.ext_ports) +
			    " overlap the NAT port range " + ctx.nat_ports.str());

	check_mapping_overlap(m, existing, ctx.uplink_addr);
}

void check_mapping_overlap(const Mapping &m, const std::vector<Mapping> &existing,
			   uint32_t uplink_addr, const Ipv6Addr &uplink_addr6)
{
	const std::string what = "mapping '" + m.str() + "'";
	for (const Mapping &o : existing) {
		// The families' addresses and ports are apart (kvx_bind,
		// kvx_bind6): '[uplink]:2222' and 'uplink:2222' coexist.
		if (o.v6 != m.v6)
			continue;
		const std::string clash = what + " conflicts with '" + o.str() + "': ";
		const bool same_ext = (m.ext_uplink && o.ext_uplink) ||
				      (m.v6 ? m.ext6(uplink_addr6) == o.ext6(uplink_addr6) &&
						       m.ext6(uplink_addr6) != Ipv6Addr{} :
					      m.ext(uplink_addr) == o.ext(uplink_addr));
		if (same_ext && (m.one_to_one() || o.one_to_one()))
			throw Error(clash + "one external address, two mappings");
		if (same_ext && m.proto == o.proto && ranges_overlap(m.ext_ports, o.ext_ports))
			throw Error(clash + "external ports overlap");
		if (m.v6 ? m.guest_addr6 != o.guest_addr6 : m.guest_addr != o.guest_addr)
			continue;
		if (m.one_to_one() && o.one_to_one())
			throw Error(clash + "the guest already has a 1:1 address");
		if (m.proto == o.proto && ranges_overlap(m.guest_ports, o.guest_ports))
			throw Error(clash + "guest ports overlap");
	}
}

void check_recorded_mappings(const std::vector<StaticMapping> &mappings, const Ipv4Net &subnet,
			     const PortRange &nat_ports, const std::optional<Ipv6Net> &subnet6)
{
	// No uplink address and no network: the checks that need them ran
	// when `map add` made the mapping (its --force is not recorded).
	MappingContext ctx;
	ctx.subnet = subnet;
	ctx.nat_ports = nat_ports;
	ctx.force = true;
	ctx.subnet6 = subnet6;
	ctx.subnet6_unknown_ok = true;
	std::vector<Mapping> before;
	for (size_t k = 0; k < mappings.size(); k++) {
		// Checked when the daemon makes it (promote_pending).
		if (!mappings[k].pending.empty())
			continue;
		try {
			check_mapping(mappings[k].m, before, ctx);
		} catch (const Error &e) {
			throw Error("mappings[" + std::to_string(k) + "]: " + e.what());
		}
		before.push_back(mappings[k].m);
	}
}

std::vector<BindEntry> mapping_entries(const Mapping &m, uint32_t uplink_addr)
{
	std::vector<BindEntry> in, out;
	const uint32_t ext = m.ext(uplink_addr);
	if (m.v6 || !ext)
		return {};
	if (m.one_to_one()) {
		const uint16_t f = KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE;
		in.push_back({bind_key(KVX_BIND_IN, MappingProto::Any, ext, 0),
			      bind_val(m.guest_addr, 0, f)});
		out.push_back({bind_key(KVX_BIND_OUT, MappingProto::Any, m.guest_addr, 0),
			       bind_val(ext, 0, f)});
	} else {
		for (uint32_t i = 0; i < m.ext_ports.size(); i++) {
			const uint16_t ep = static_cast<uint16_t>(m.ext_ports.lo + i);
			const uint16_t gp = static_cast<uint16_t>(m.guest_ports.lo + i);
			in.push_back({bind_key(KVX_BIND_IN, m.proto, ext, ep),
				      bind_val(m.guest_addr, gp, KVX_BIND_F_STATIC)});
			out.push_back({bind_key(KVX_BIND_OUT, m.proto, m.guest_addr, gp),
				       bind_val(ext, ep, KVX_BIND_F_STATIC)});
		}
	}
	in.insert(in.end(), out.begin(), out.end());
	return in;
}

std::vector<BindEntry6> mapping_entries6(const Mapping &m, const Ipv6Addr &uplink_addr6)
{
	std::vector<BindEntry6> in, out;
	const Ipv6Addr ext = m.ext6(uplink_addr6);
	if (!m.v6 || ext == Ipv6Addr{})
		return {};
	if (m.one_to_one()) {
		const uint16_t f = KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE;
		in.push_back({bind6_key(KVX_BIND_IN, MappingProto::Any, ext, 0),
			      bind6_val(m.guest_addr6, 0, f)});
		out.push_back({bind6_key(KVX_BIND_OUT, MappingProto::Any, m.guest_addr6, 0),
			       bind6_val(ext, 0, f)});
	} else {
		for (uint32_t i = 0; i < m.ext_ports.size(); i++) {
			const uint16_t ep = static_cast<uint16_t>(m.ext_ports.lo + i);
			const uint16_t gp = static_cast<uint16_t>(m.guest_ports.lo + i);
			in.push_back({bind6_key(KVX_BIND_IN, m.proto, ext, ep),
				      bind6_val(m.guest_addr6, gp, KVX_BIND_F_STATIC)});
			out.push_back({bind6_key(KVX_BIND_OUT, m.proto, m.guest_addr6, gp),
				       bind6_val(ext, ep, KVX_BIND_F_STATIC)});
		}
	}
	in.insert(in.end(), out.begin(), out.end());
	return in;
}

uint8_t added_address_prefix(const StaticMapping &sm, const std::optional<NetId> &cur)
{
	if (cur && cur->net && cur->net->contains(sm.m.ext_addr))
		return cur->net->prefix;
	return 32;
}

void check_permanent(const std::vector<Mapping> &ms, const std::vector<StaticMapping> &recorded,
		     const std::optional<Ipv4Net> &subnet, const PortRange &nat_ports,
		     const std::optional<Ipv6Net> &subnet6)
{
	std::vector<Mapping> plain;
	for (const auto &sm : recorded)
		if (sm.pending.empty() && sm.vm.empty() && sm.libvirt_network.empty())
			plain.push_back(sm.m);
	for (size_t k = 0; k < ms.size(); k++) {
		const Mapping &m = ms[k];
		const std::string what = "mapping '" + m.str() + "'";
		if (m.opens())
			throw Error(what + ": a relay mapping (one endpoint, a guest's own IPv6 "
					   "address) is made with `kvmxdp map add`, not by a hook");
		if (!m.v6 && m.guest_addr && subnet &&
		    (!subnet->contains(m.guest_addr) || m.guest_addr == subnet->addr ||
		     m.guest_addr == subnet->broadcast()))
			throw Error(what + ": guest " + format_ipv4(m.guest_addr) +
				    " is not a host address in " + subnet->str());
		if (m.v6 && subnet6 &&
		    (!subnet6->contains(m.guest_addr6) || m.guest_addr6 == subnet6->addr))
			throw Error(what + ": guest " + format_ipv6(m.guest_addr6) +
				    " is not a host address in " + subnet6->str());
		if (!m.ext_uplink && (m.v6 ? subnet6 && subnet6->contains(m.ext_addr6) :
					     subnet && subnet->contains(m.ext_addr)))
			throw Error(what + ": external " +
				    (m.v6 ? format_ipv6(m.ext_addr6) : format_ipv4(m.ext_addr)) +
				    " lies inside the guests' " +
				    (m.v6 ? subnet6->str() : subnet->str()));
		if (!m.one_to_one() && m.ext_uplink && ranges_overlap(m.ext_ports, nat_ports))
			throw Error(what + ": external ports " + ports_str(m.ext_ports) +
				    " overlap the NAT port range " + nat_ports.str());
		try {
			check_mapping_overlap(m, plain, 0);
		} catch (const Error &e) {
			throw Error(std::string(e.what()) +
				    " (a `map add` mapping: delete it, or change the metadata)");
		}
		const std::vector<Mapping> before(ms.begin(), ms.begin() + static_cast<long>(k));
		check_mapping_overlap(m, before, 0);
	}
}

size_t mapping_to_delete(const std::vector<StaticMapping> &mappings, const Mapping &m,
			 const MappingOwner &owner, bool exact, const std::string &bridge)
{
	std::vector<size_t> spec, owned;
	for (size_t k = 0; k < mappings.size(); k++) {
		if (!(mappings[k].m == m))
			continue;
		spec.push_back(k);
		if (owner.owns(mappings[k]) && (!exact || mappings[k].pending.empty()))
			owned.push_back(k);
	}
	const std::string what = "mapping '" + m.str() + "' on bridge '" + bridge + "'";
	if (spec.empty())
		throw Error("no " + what + " (see 'kvmxdp map list')");
	if (!owned.empty()) {
		for (size_t k : owned)
			if (mappings[k].pending.empty())
				return k;
		return owned.front();
	}
	auto who = [](const StaticMapping &sm) {
		std::string w = !sm.vm.empty() ? "vm " + printable(sm.vm) :
				!sm.libvirt_network.empty() ?
						 "network " + printable(sm.libvirt_network) :
						 std::string("map add");
		if (!sm.vm.empty() && !sm.from_metadata)
			w += " (map add vm:)";
		return sm.pending.empty() ? w : w + " (pending)";
	};
	std::string whose;
	for (size_t k : spec)
		whose += (whose.empty() ? "" : ", ") + who(mappings[k]);
	if (exact)
		throw Error("no " + what + " of " +
			    (owner.vm.empty() ? "network " + printable(owner.libvirt_network) :
						"vm " + printable(owner.vm)) +
			    " in the datapath (recorded for: " + whose + ")");
	std::vector<size_t> named;
	for (size_t k : spec)
		if (owner.vm.empty() || mappings[k].vm == owner.vm)
			named.push_back(k);
	if (named.size() == 1)
		return named.front();
	if (named.empty())
		throw Error("no " + what + " of vm " + printable(owner.vm) +
			    " (recorded for: " + whose + ")");
	throw Error(what + " is recorded " + std::to_string(named.size()) + " times (" + whose +
		    ") and none is a plain `map add`: name a domain's with vm:NAME, or stop the "
		    "domain or network whose metadata made it");
}

std::string pending_reason(const std::string &why)
{
	std::string s = printable(why);
	if (s.size() <= kPendingReasonMax)
		return s;
	size_t n = kPendingReasonMax - 3;
	// Not inside a UTF-8 sequence (printable() keeps only well-formed
	// ones) nor a "\xNN" escape.
	while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
		n--;
	const size_t esc = s.rfind("\\x", n);
	if (esc != std::string::npos && esc + 4 > n)
		n = esc;
	return s.substr(0, n) + "...";
}

std::string vm_stopped_reason(const std::string &vm)
{
	return "domain '" + printable(vm) + "' is not running (made again when it starts)";
}

bool waits_for_vm_start(const StaticMapping &sm)
{
	return !sm.vm.empty() && sm.pending == vm_stopped_reason(sm.vm);
}

std::vector<size_t>
demote_stopped_domains(std::vector<StaticMapping> &mappings,
		       const std::function<bool(const std::string &vm)> &running, bool *changed)
{
	std::vector<size_t> out;
	if (changed)
		*changed = false;
	std::map<std::string, bool> runs; // each domain's files read once
	for (size_t k = 0; k < mappings.size(); k++) {
		StaticMapping &sm = mappings[k];
		if (!sm.from_metadata || sm.vm.empty() || waits_for_vm_start(sm))
			continue;
		auto it = runs.find(sm.vm);
		if (it == runs.end())
			it = runs.emplace(sm.vm, running(sm.vm)).first;
		if (it->second)
			continue;
		if (sm.pending.empty())
			out.push_back(k);
		sm.pending = vm_stopped_reason(sm.vm);
		if (changed)
			*changed = true;
	}
	return out;
}

MappingContext promotion_context(const Ipv4Net &subnet, const PortRange &nat_ports,
				 uint32_t uplink_addr, const std::optional<NetId> &net,
				 const kvx_cfg6 &cfg6, std::vector<Ipv6Net> uplink_nets6)
{
	MappingContext ctx;
	ctx.subnet = subnet;
	ctx.nat_ports = nat_ports;
	ctx.uplink_addr = uplink_addr;
	if (net && uplink_addr)
		ctx.uplink_net = net->net;
	if (cfg6.mode == KVX_V6_NAT66) {
		Ipv6Addr a;
		std::memcpy(a.data(), cfg6.subnet, a.size());
		ctx.subnet6 = network_of6(a, cfg6.subnet_len);
		std::memcpy(ctx.uplink_addr6.data(), cfg6.uplink_addr, ctx.uplink_addr6.size());
		ctx.uplink_nets6 = std::move(uplink_nets6);
	}
	return ctx;
}

std::vector<size_t>
promote_pending(std::vector<StaticMapping> &mappings, const MappingContext &ctx,
		const std::optional<NetId> &cur, bool *changed,
		const std::function<std::string(const StaticMapping &)> &claim_refusal)
{
	std::vector<size_t> made;
	if (changed)
		*changed = false;
	for (size_t k = 0; k < mappings.size(); k++) {
		StaticMapping &sm = mappings[k];
		if (sm.pending.empty() || waits_for_vm_start(sm))
			continue;
		std::string why;
		if (!sm.m.v6 && !sm.m.guest_addr) {
			why = "no address for MAC " + sm.lease_mac + " yet (no DHCP lease)";
		} else if (!sm.m.v6 && (!cur || !ctx.uplink_addr)) {
			why = "the uplink has no IPv4 address yet";
		} else if (sm.m.v6 && !ctx.subnet6) {
			why = "NAT66 is not running on this bridge (its guests have no IPv6 "
			      "prefix)";
		} else if (sm.m.v6 && sm.m.ext_uplink && ctx.uplink_addr6 == Ipv6Addr{}) {
			why = "the uplink has no IPv6 address yet";
		} else if (sm.m.v6 && !sm.m.ext_uplink && (!cur || !cur->v6)) {
			// Made now it would be tied to no network: announced on
			// any network the uplink joins later.
			why = "the uplink has no global IPv6 prefix yet";
		} else {
			std::vector<Mapping> others;
			for (const auto &o : mappings)
				if (o.pending.empty())
					others.push_back(o.m);
			try {
				check_mapping(sm.m, others, ctx);
			} catch (const Error &e) {
				why = e.what();
			}
			if (why.empty() && sm.from_metadata && claim_refusal)
				why = claim_refusal(sm);
		}
		const std::string was = sm.pending;
		const std::string now = pending_reason(why);
		// A reason that still holds keeps the context it was given
		// ("its guest moved to ADDR: <why>" from the hook), so that
		// `map list` goes on saying why the guest address changed.
		const bool same = !why.empty() && was.size() >= now.size() + 2 &&
				  was.compare(was.size() - now.size() - 2, 2, ": ") == 0 &&
				  was.compare(was.size() - now.size(), now.size(), now) == 0;
		if (!same)
			sm.pending = now;
		if (why.empty()) {
			tie_to_network(sm, cur, ctx.uplink_addr6);
			made.push_back(k);
		}
		if (changed && sm.pending != was)
			*changed = true;
	}
	return made;
}

} // namespace kvmxdp
