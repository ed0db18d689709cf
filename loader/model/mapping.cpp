// SPDX-License-Identifier: GPL-2.0
#include "model/mapping.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "base/error.hpp"

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
	uint32_t addr = 0;
	std::optional<PortRange> ports;
};

Endpoint parse_endpoint(const std::string &text, bool allow_uplink)
{
	Endpoint ep;
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

} // namespace

std::string Mapping::ext_str() const
{
	std::string ext = ext_uplink ? "uplink" : format_ipv4(ext_addr);
	return one_to_one() ? ext : ext + ":" + ports_str(ext_ports);
}

std::string Mapping::guest_str() const
{
	std::string g = format_ipv4(guest_addr);
	return one_to_one() ? g : g + ":" + ports_str(guest_ports);
}

std::string Mapping::proto_str() const
{
	return one_to_one() ? "" : proto_name(proto);
}

std::string NetId::str() const
{
	return net.str() +
	       (gateway ? " via " + format_ipv4(gateway) : std::string(" (no gateway)")) +
	       (gateway_mac.empty() ? std::string() : " at " + gateway_mac);
}

bool mapping_active(const StaticMapping &sm, const std::optional<NetId> &cur)
{
	if (!sm.network)
		return true;
	const NetId &rec = *sm.network;
	if (!cur || !(cur->net == rec.net) || cur->gateway != rec.gateway)
		return false;
	return rec.gateway_mac.empty() || cur->gateway_mac == rec.gateway_mac;
}

std::string Mapping::str() const
{
	std::string ext = ext_uplink ? "uplink" : format_ipv4(ext_addr);
	std::string guest = format_ipv4(guest_addr);
	if (one_to_one())
		return ext + " " + guest;
	return ext + ":" + ports_str(ext_ports) + " " + guest + ":" + ports_str(guest_ports) + " " +
	       proto_name(proto);
}

bool Mapping::operator==(const Mapping &o) const
{
	return ext_uplink == o.ext_uplink && ext_addr == o.ext_addr && guest_addr == o.guest_addr &&
	       proto == o.proto && ext_ports == o.ext_ports && guest_ports == o.guest_ports;
}

Mapping parse_mapping(const std::string &ext, const std::string &guest, const std::string &proto)
{
	Endpoint e = parse_endpoint(ext, true);
	Endpoint g = parse_endpoint(guest, false);
	Mapping m;
	m.ext_uplink = e.uplink;
	m.ext_addr = e.addr;
	m.guest_addr = g.addr;

	if (!e.ports && !g.ports) {
		if (!proto.empty())
			throw Error(
				"--proto " + proto +
				" needs ports: EXT_IP:PORT GUEST_IP:PORT (a 1:1 mapping covers every protocol)");
		if (e.uplink)
			throw Error(
				"'uplink' cannot be mapped 1:1 to '" + guest +
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

void check_mapping(const Mapping &m, const std::vector<Mapping> &existing,
		   const MappingContext &ctx)
{
	const std::string what = "mapping '" + m.str() + "'";
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
			   uint32_t uplink_addr)
{
	const std::string what = "mapping '" + m.str() + "'";
	for (const Mapping &o : existing) {
		const std::string clash = what + " conflicts with '" + o.str() + "': ";
		const bool same_ext = (m.ext_uplink && o.ext_uplink) ||
				      m.ext(uplink_addr) == o.ext(uplink_addr);
		if (same_ext && (m.one_to_one() || o.one_to_one()))
			throw Error(clash + "one external address, two mappings");
		if (same_ext && m.proto == o.proto && ranges_overlap(m.ext_ports, o.ext_ports))
			throw Error(clash + "external ports overlap");
		if (m.guest_addr != o.guest_addr)
			continue;
		if (m.one_to_one() && o.one_to_one())
			throw Error(clash + "the guest already has a 1:1 address");
		if (m.proto == o.proto && ranges_overlap(m.guest_ports, o.guest_ports))
			throw Error(clash + "guest ports overlap");
	}
}

void check_recorded_mappings(const std::vector<StaticMapping> &mappings, const Ipv4Net &subnet,
			     const PortRange &nat_ports)
{
	// No uplink address and no network: the checks that need them ran
	// when `map add` made the mapping (its --force is not recorded).
	MappingContext ctx;
	ctx.subnet = subnet;
	ctx.nat_ports = nat_ports;
	ctx.force = true;
	std::vector<Mapping> before;
	for (size_t k = 0; k < mappings.size(); k++) {
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
	if (!ext)
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

uint8_t added_address_prefix(const StaticMapping &sm, const std::optional<NetId> &cur)
{
	if (cur && cur->net.contains(sm.m.ext_addr))
		return cur->net.prefix;
	return 32;
}

} // namespace kvmxdp
