// SPDX-License-Identifier: GPL-2.0
#include "model/libvirt.hpp"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cstring>
#include <cctype>
#include <memory>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "base/text.hpp"

namespace kvmxdp {

namespace {

struct DocFree {
	void operator()(xmlDoc *d) const { xmlFreeDoc(d); }
};
struct CtxtFree {
	void operator()(xmlParserCtxt *c) const { xmlFreeParserCtxt(c); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

struct FirstError {
	bool set = false;
	int line = 0;
	std::string message;
	static void record(void *self, xmlErrorPtr e)
	{
		auto *f = static_cast<FirstError *>(self);
		if (f->set || !e || e->level < XML_ERR_ERROR)
			return;
		f->set = true;
		f->line = e->line;
		f->message = e->message ? e->message : "";
	}
};

// XML_PARSE_NONET: no fetching of anything named in the document; no
// XML_PARSE_NOENT or XML_PARSE_DTDLOAD: entities are not substituted and no
// external DTD is read.  A document with a DTD is refused after the parse
// (libvirt never writes one), so entity declarations never matter.
Doc parse_xml(const std::string &text, const std::string &what)
{
	if (text.size() > kLibvirtXmlMax)
		throw Error(what + ": " + std::to_string(text.size()) +
			    " bytes of XML, more than " + std::to_string(kLibvirtXmlMax));
	std::unique_ptr<xmlParserCtxt, CtxtFree> ctxt(xmlNewParserCtxt());
	if (!ctxt)
		throw Error(what + ": out of memory for the XML parser");
	// The first error says what is wrong (the last one is often only
	// "Premature end of data"); the handler also keeps libxml2 from
	// printing anything itself.  It is per thread.
	FirstError first;
	xmlSetStructuredErrorFunc(&first, &FirstError::record);
	Doc doc(xmlCtxtReadMemory(ctxt.get(), text.data(), static_cast<int>(text.size()), nullptr,
				  nullptr,
				  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
	xmlSetStructuredErrorFunc(nullptr, nullptr);
	if (!doc || !ctxt->wellFormed) {
		std::string msg = first.set ? first.message : "not well-formed";
		while (!msg.empty() && std::isspace(static_cast<unsigned char>(msg.back())))
			msg.pop_back();
		throw Error(what + ": not valid XML" +
			    (first.line > 0 ? " (line " + std::to_string(first.line) + ")" : "") +
			    ": " + printable(msg));
	}
	if (doc->intSubset || doc->extSubset)
		throw Error(what + ": XML with a DTD (<!DOCTYPE>) is not accepted");
	return doc;
}

bool named(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && !n->ns &&
	       xmlStrEqual(n->name, reinterpret_cast<const xmlChar *>(name));
}

bool ours(const xmlNode *n)
{
	return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
	       xmlStrEqual(n->ns->href, reinterpret_cast<const xmlChar *>(kLibvirtXmlns));
}

const xmlNode *child(const xmlNode *n, const char *name)
{
	for (const xmlNode *c = n ? n->children : nullptr; c; c = c->next)
		if (named(c, name))
			return c;
	return nullptr;
}

std::optional<std::string> attr(const xmlNode *n, const char *name)
{
	// Attributes without a namespace only: libvirt's and ours are
	// unqualified.
	xmlChar *v = xmlGetNoNsProp(n, reinterpret_cast<const xmlChar *>(name));
	if (!v)
		return std::nullopt;
	std::string s(reinterpret_cast<const char *>(v));
	xmlFree(v);
	return s;
}

std::string text_of(const xmlNode *n)
{
	xmlChar *v = xmlNodeGetContent(n);
	if (!v)
		return "";
	std::string s(reinterpret_cast<const char *>(v));
	xmlFree(v);
	return s;
}

std::string lower(std::string s)
{
	for (char &c : s)
		c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
	return s;
}

// The document element `name`, or its child of that name (a hook's
// <hookData>, a <domstatus> or <networkstatus> file).
const xmlNode *top(const Doc &doc, const char *name, const std::string &what)
{
	const xmlNode *root = xmlDocGetRootElement(doc.get());
	if (named(root, name))
		return root;
	if (const xmlNode *c = child(root, name))
		return c;
	throw Error(what + ": no <" + name + "> element");
}

std::string quoted(const std::string &s)
{
	return "'" + printable(s) + "'";
}

void only_attrs(const xmlNode *n, std::initializer_list<const char *> allowed,
		const std::string &where)
{
	for (const xmlAttr *a = n->properties; a; a = a->next) {
		bool ok = !a->ns && std::any_of(allowed.begin(), allowed.end(), [&](const char *x) {
			return xmlStrEqual(a->name, reinterpret_cast<const xmlChar *>(x));
		});
		if (!ok)
			throw Error(where + ": unknown attribute " +
				    quoted(reinterpret_cast<const char *>(a->name)));
	}
}

std::string need(const xmlNode *n, const char *name, const std::string &where)
{
	auto v = attr(n, name);
	if (!v || v->empty())
		throw Error(where + ": attribute '" + name + "' is missing");
	return *v;
}

// The kvmxdp element of <metadata> (libvirt keeps one per namespace);
// domain: whether `mac` and `guest` attributes belong to it.
LibvirtNat parse_nat(const xmlNode *owner, bool domain, const std::string &what)
{
	LibvirtNat nat;
	const xmlNode *meta = child(owner, "metadata");
	const xmlNode *el = nullptr;
	for (const xmlNode *c = meta ? meta->children : nullptr; c && !el; c = c->next)
		if (ours(c))
			el = c;
	if (!el)
		return nat;
	const std::string where =
		what + ": <kvmxdp:" + reinterpret_cast<const char *>(el->name) + ">";
	if (!xmlStrEqual(el->name, reinterpret_cast<const xmlChar *>("nat")))
		throw Error(where + ": unknown element (expected kvmxdp:nat)");
	nat.present = true;
	if (domain) {
		only_attrs(el, {"mac"}, where);
		if (auto m = attr(el, "mac")) {
			nat.mac = lower(*m);
			if (!is_mac_str(nat.mac))
				throw Error(where + ": mac " + quoted(*m) +
					    " is not a MAC address");
		}
	} else {
		only_attrs(el, {}, where);
	}
	for (const xmlNode *c = el->children; c; c = c->next) {
		if (c->type == XML_TEXT_NODE || c->type == XML_COMMENT_NODE)
			continue;
		if (c->type != XML_ELEMENT_NODE || !ours(c))
			throw Error(where +
				    ": only kvmxdp:forward and kvmxdp:address may be in it");
		const std::string name = reinterpret_cast<const char *>(c->name);
		if (name == "forward") {
			const std::string w =
				where + " forward " + std::to_string(nat.forwards.size() + 1);
			only_attrs(c, {"proto", "port", "to", "external", "force"}, w);
			LibvirtForward f;
			f.proto = need(c, "proto", w);
			f.port = need(c, "port", w);
			f.to = attr(c, "to").value_or("");
			f.external = attr(c, "external").value_or("");
			const std::string force = attr(c, "force").value_or("no");
			if (force != "yes" && force != "no")
				throw Error(w + ": force " + quoted(force) +
					    " is not 'yes' or 'no'");
			f.force = force == "yes";
			if (!domain && f.to.empty())
				throw Error(w + ": attribute 'to' (GUEST_IP:PORT) is missing");
			nat.forwards.push_back(f);
		} else if (name == "address") {
			const std::string w =
				where + " address " + std::to_string(nat.addresses.size() + 1);
			if (domain)
				only_attrs(c, {"external"}, w);
			else
				only_attrs(c, {"external", "guest"}, w);
			LibvirtAddress a;
			a.external = need(c, "external", w);
			if (!domain)
				a.guest = need(c, "guest", w);
			nat.addresses.push_back(a);
		} else {
			throw Error(where + ": unknown element " + quoted("kvmxdp:" + name));
		}
	}
	return nat;
}

} // namespace

LibvirtDomain parse_libvirt_domain(const std::string &xml, const std::string &what)
{
	Doc doc = parse_xml(xml, what);
	const xmlNode *dom = top(doc, "domain", what);
	LibvirtDomain d;
	d.name = text_of(child(dom, "name"));
	const xmlNode *devices = child(dom, "devices");
	for (const xmlNode *c = devices ? devices->children : nullptr; c; c = c->next) {
		if (!named(c, "interface"))
			continue;
		LibvirtInterface i;
		if (auto m = attr(child(c, "mac"), "address"))
			i.mac = lower(*m);
		if (const xmlNode *src = child(c, "source")) {
			i.network = attr(src, "network").value_or("");
			i.bridge = attr(src, "bridge").value_or("");
		}
		i.link_down = attr(child(c, "link"), "state").value_or("") == "down";
		d.interfaces.push_back(i);
	}
	d.nat = parse_nat(dom, true, what);
	return d;
}

LibvirtNetwork parse_libvirt_network(const std::string &xml, const std::string &what)
{
	Doc doc = parse_xml(xml, what);
	const xmlNode *net = top(doc, "network", what);
	LibvirtNetwork n;
	n.name = text_of(child(net, "name"));
	if (const xmlNode *br = child(net, "bridge"))
		n.bridge = attr(br, "name").value_or("");
	for (const xmlNode *ip = net->children; ip; ip = ip->next) {
		if (!named(ip, "ip"))
			continue;
		const xmlNode *dhcp = child(ip, "dhcp");
		for (const xmlNode *h = dhcp ? dhcp->children : nullptr; h; h = h->next) {
			if (!named(h, "host"))
				continue;
			auto mac = attr(h, "mac");
			auto addr = attr(h, "ip");
			if (!mac || !addr || !is_mac_str(lower(*mac)))
				continue; // IPv6 hosts (id=), hosts by name only
			try {
				n.hosts.push_back({lower(*mac), parse_ipv4(*addr),
						   attr(h, "name").value_or("")});
			} catch (const Error &) {
				// An IPv6 <ip> block's host.
			}
		}
	}
	n.nat = parse_nat(net, false, what);
	return n;
}

const LibvirtInterface &
libvirt_nat_interface(const LibvirtDomain &d,
		      const std::function<bool(const LibvirtInterface &)> &served)
{
	if (!d.nat.mac.empty()) {
		for (const auto &i : d.interfaces)
			if (i.mac == d.nat.mac)
				return i;
		throw Error("domain '" + printable(d.name) + "': no interface with MAC " +
			    d.nat.mac);
	}
	std::vector<const LibvirtInterface *> on_net, ours;
	for (const auto &i : d.interfaces)
		if (!i.mac.empty() && (!i.network.empty() || !i.bridge.empty())) {
			on_net.push_back(&i);
			if (served(i))
				ours.push_back(&i);
		}
	if (ours.size() == 1)
		return *ours[0];
	if (ours.size() > 1) {
		std::string macs;
		for (const auto *i : ours)
			macs += (macs.empty() ? "" : ", ") + i->mac;
		throw Error("domain '" + printable(d.name) + "' has " +
			    std::to_string(ours.size()) +
			    " interfaces on bridges kvmxdp serves (MACs " + macs +
			    "): name the one its mappings are for with <kvmxdp:nat mac='" +
			    ours[0]->mac + "'>");
	}
	if (!on_net.empty())
		return *on_net[0];
	throw Error("domain '" + printable(d.name) +
		    "': no interface on a network or a bridge for its kvmxdp mappings");
}

std::optional<uint32_t> libvirt_guest_addr(const std::string &mac,
					   const std::vector<LibvirtDhcpHost> &hosts,
					   const std::vector<Lease> &leases, int64_t now)
{
	for (const auto &h : hosts)
		if (h.mac == mac)
			return h.addr;
	// DHCP's client MAC is a field of the request, not the frame's source:
	// a guest can lease an address under another guest's MAC.  One MAC
	// with current leases of two addresses is such a case (or a guest
	// that changed its client-id): no guess, the mappings stay put.
	const Lease *best = nullptr;
	for (const auto &l : leases) {
		if (format_mac(l.mac) != mac || (l.expiry != 0 && l.expiry <= now))
			continue;
		if (best && best->addr != l.addr)
			throw Error("MAC " + mac + " has current leases of two addresses, " +
				    format_ipv4(best->addr) + " and " + format_ipv4(l.addr) +
				    " (a guest may have asked under another's MAC): give the VM a "
				    "static <host> entry in its network");
		if (!best || (best->expiry != 0 && (l.expiry == 0 || l.expiry > best->expiry)))
			best = &l;
	}
	return best ? std::optional<uint32_t>(best->addr) : std::nullopt;
}

std::vector<Mapping> libvirt_domain_mappings(const LibvirtNat &nat, uint32_t guest)
{
	std::vector<Mapping> out;
	const std::string g = format_ipv4(guest);
	for (size_t k = 0; k < nat.forwards.size(); k++) {
		const auto &f = nat.forwards[k];
		const std::string ext = (f.external.empty() ? "uplink" : f.external) + ":" + f.port;
		try {
			out.push_back(parse_mapping(ext, g + ":" + (f.to.empty() ? f.port : f.to),
						    f.proto));
		} catch (const Error &e) {
			throw Error("kvmxdp:forward " + std::to_string(k + 1) + ": " + e.what());
		}
	}
	for (size_t k = 0; k < nat.addresses.size(); k++) {
		try {
			out.push_back(parse_mapping(nat.addresses[k].external, g, ""));
		} catch (const Error &e) {
			throw Error("kvmxdp:address " + std::to_string(k + 1) + ": " + e.what());
		}
	}
	return out;
}

std::vector<Mapping> libvirt_network_mappings(const LibvirtNat &nat)
{
	std::vector<Mapping> out;
	for (size_t k = 0; k < nat.forwards.size(); k++) {
		const auto &f = nat.forwards[k];
		const std::string ext = (f.external.empty() ? "uplink" : f.external) + ":" + f.port;
		try {
			out.push_back(parse_mapping(ext, f.to, f.proto));
		} catch (const Error &e) {
			throw Error("kvmxdp:forward " + std::to_string(k + 1) + ": " + e.what());
		}
	}
	for (size_t k = 0; k < nat.addresses.size(); k++) {
		try {
			out.push_back(parse_mapping(nat.addresses[k].external,
						    nat.addresses[k].guest, ""));
		} catch (const Error &e) {
			throw Error("kvmxdp:address " + std::to_string(k + 1) + ": " + e.what());
		}
	}
	return out;
}

std::optional<bool> libvirt_forward_force(const LibvirtNat &nat, const Mapping &m, bool network)
{
	std::vector<Mapping> ms;
	try {
		ms = network ? libvirt_network_mappings(nat) :
			       libvirt_domain_mappings(nat, m.guest_addr);
	} catch (const Error &) {
		return std::nullopt;
	}
	// The k-th mapping is forward k (libvirt_domain_mappings).
	for (size_t k = 0; k < ms.size() && k < nat.forwards.size(); k++)
		if (ms[k] == m)
			return nat.forwards[k].force;
	return std::nullopt;
}

std::vector<std::string> follow_leases(std::vector<StaticMapping> &mappings,
				       const std::vector<Lease> &leases, int64_t now,
				       std::vector<std::string> *held)
{
	std::vector<std::string> moved;
	for (auto &sm : mappings) {
		if (sm.lease_mac.empty())
			continue;
		std::optional<uint32_t> a;
		try {
			a = libvirt_guest_addr(sm.lease_mac, {}, leases, now);
		} catch (const Error &e) {
			if (held)
				held->push_back(
					(sm.vm.empty() ? "mapping " + sm.m.str() : "vm " + sm.vm) +
					" not moved: " + e.what());
			continue;
		}
		// No current lease (the guest is down, or its lease ran out):
		// kept where it is; the address is still its until taken.
		if (!a || *a == sm.m.guest_addr)
			continue;
		moved.push_back((sm.vm.empty() ? "mapping " + sm.m.str() : "vm " + sm.vm) + ": " +
				format_ipv4(sm.m.guest_addr) + " -> " + format_ipv4(*a));
		sm.m.guest_addr = *a;
	}
	return moved;
}

namespace {

std::string owner_of(const StaticMapping &sm)
{
	return sm.vm.empty() ? sm.libvirt_network.empty() ?
			       "mapping " + sm.m.str() :
			       "network " + printable(sm.libvirt_network) :
			       "vm " + printable(sm.vm);
}

// Whether `sm`'s lease gives it `addr` now.  Leases of two addresses
// (libvirt_guest_addr's refusal): it may, no guess.
bool holds_lease(const StaticMapping &sm, uint32_t addr, const std::vector<Lease> &leases,
		 int64_t now)
{
	if (sm.lease_mac.empty())
		return false;
	try {
		const auto a = libvirt_guest_addr(sm.lease_mac, {}, leases, now);
		return a && *a == addr;
	} catch (const Error &) {
		return true;
	}
}

} // namespace

std::vector<std::string> hold_clashing(std::vector<StaticMapping> &mappings,
				       const std::vector<size_t> &moved, const MappingContext &ctx,
				       const std::vector<Lease> &leases, int64_t now)
{
	std::vector<std::string> held;
	auto has = [](const std::vector<size_t> &v, size_t j) {
		return std::find(v.begin(), v.end(), j) != v.end();
	};
	auto others_of = [&](size_t k, const std::vector<size_t> &skip) {
		std::vector<Mapping> others;
		for (size_t j = 0; j < mappings.size(); j++)
			if (j != k && mappings[j].pending.empty() && !has(skip, j))
				others.push_back(mappings[j].m);
		return others;
	};
	for (size_t k : moved) {
		StaticMapping &sm = mappings.at(k);
		if (!sm.pending.empty() || sm.m.v6)
			continue;
		const uint32_t addr = sm.m.guest_addr;
		// Stale on its guest address, clash or not: a mapping that
		// followed a lease its MAC no longer holds (it would forward to
		// this guest).
		std::vector<size_t> stale;
		for (size_t j = 0; j < mappings.size(); j++) {
			const StaticMapping &o = mappings[j];
			if (j != k && o.pending.empty() && !o.m.v6 && o.m.guest_addr == addr &&
			    !has(moved, j) && !o.lease_mac.empty() && o.lease_mac != sm.lease_mac &&
			    !holds_lease(o, addr, leases, now))
				stale.push_back(j);
		}
		std::string why;
		bool stays = true;
		try {
			check_mapping(sm.m, others_of(k, stale), ctx);
		} catch (const Error &e) {
			why = e.what();
			stays = false;
		}
		// A clash with a fixed address (no lease): the lease file gave
		// that address to this guest; that owner's mappings there go.
		if (!stays) {
			std::vector<size_t> fixed;
			bool other_clash = false;
			for (size_t j = 0; j < mappings.size() && !other_clash; j++) {
				const StaticMapping &o = mappings[j];
				if (j == k || !o.pending.empty() || has(stale, j))
					continue;
				try {
					check_mapping_overlap(sm.m, {o.m}, ctx.uplink_addr,
							      ctx.uplink_addr6);
					continue;
				} catch (const Error &) {
				}
				if (o.m.v6 || o.m.guest_addr != addr || has(moved, j) ||
				    !o.lease_mac.empty())
					other_clash = true;
				else
					fixed.push_back(j);
			}
			if (!other_clash && !fixed.empty()) {
				std::vector<size_t> skip = stale;
				skip.insert(skip.end(), fixed.begin(), fixed.end());
				try {
					check_mapping(sm.m, others_of(k, skip), ctx);
					stale = skip;
					stays = true;
				} catch (const Error &e) {
					why = e.what();
				}
			}
		}
		for (size_t j : stale) {
			StaticMapping &o = mappings[j];
			held.push_back(owner_of(o) + ": " + o.m.str() + " waits: guest " +
				       format_ipv4(addr) + " is leased to " + owner_of(sm) +
				       " now");
			o.pending = pending_reason("guest " + format_ipv4(addr) + " is leased to " +
						   owner_of(sm) + " now");
			// A lease's mapping waits for its MAC's next lease
			// (follow_leases), not for this address to be free.
			if (!o.lease_mac.empty()) {
				o.m.guest_addr = 0;
				o.pending = pending_reason("no address for MAC " + o.lease_mac +
							   ": its lease of " + format_ipv4(addr) +
							   " went to " + owner_of(sm));
			}
		}
		if (!stays) {
			sm.pending = pending_reason("its guest moved to " + format_ipv4(addr) +
						    ": " + why);
			held.push_back(owner_of(sm) + ": " + sm.pending);
		}
	}
	return held;
}

bool declares_kvmxdp_namespace(const std::string &xml)
{
	const std::string uri = kLibvirtXmlns;
	auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
	size_t i = 0;
	const size_t n = xml.size();
	auto skip_to = [&](size_t from, const char *end) {
		const size_t e = xml.find(end, from);
		return e == std::string::npos ? n : e + std::strlen(end);
	};
	while ((i = xml.find('<', i)) != std::string::npos) {
		if (xml.compare(i, 4, "<!--") == 0) {
			i = skip_to(i + 4, "-->");
			continue;
		}
		if (xml.compare(i, 9, "<![CDATA[") == 0) {
			i = skip_to(i + 9, "]]>");
			continue;
		}
		if (xml.compare(i, 2, "<?") == 0) {
			i = skip_to(i + 2, "?>");
			continue;
		}
		if (xml.compare(i, 2, "<!") == 0 || xml.compare(i, 2, "</") == 0) {
			i = skip_to(i + 2, ">");
			continue;
		}
		// A start tag: its name, then NAME=QUOTED attributes up to '>'.
		i++;
		while (i < n && !space(xml[i]) && xml[i] != '>' && xml[i] != '/')
			i++;
		for (;;) {
			while (i < n && (space(xml[i]) || xml[i] == '/'))
				i++;
			if (i >= n || xml[i] == '>')
				break;
			const size_t name0 = i;
			while (i < n && !space(xml[i]) && xml[i] != '=' && xml[i] != '>')
				i++;
			const std::string name = xml.substr(name0, i - name0);
			while (i < n && space(xml[i]))
				i++;
			if (i >= n || xml[i] != '=')
				break; // not well-formed: the rest of the tag is not read
			i++;
			while (i < n && space(xml[i]))
				i++;
			if (i >= n || (xml[i] != '"' && xml[i] != '\''))
				break;
			const char q = xml[i];
			const size_t v0 = ++i;
			const size_t v1 = xml.find(q, v0);
			if (v1 == std::string::npos)
				return false;
			if ((name == "xmlns" || name.compare(0, 6, "xmlns:") == 0) &&
			    xml.compare(v0, v1 - v0, uri) == 0)
				return true;
			i = v1 + 1;
		}
	}
	return false;
}

HookAction libvirt_qemu_action(const std::string &op, const std::string &subop)
{
	(void)subop; // "begin" for all of these, "-" from older libvirt
	if (op == "started")
		return HookAction::Apply;
	if (op == "prepare")
		return HookAction::Check;
	if (op == "stopped" || op == "release")
		return HookAction::Remove;
	return HookAction::None;
}

HookAction libvirt_network_action(const std::string &op, const std::string &subop)
{
	(void)subop;
	if (op == "started")
		return HookAction::Apply;
	if (op == "stopped")
		return HookAction::Remove;
	return HookAction::None;
}

void check_libvirt_name(const std::string &name, const std::string &what)
{
	if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
	    !is_printable_text(name) || name.size() > 255)
		throw Error(what + " " + quoted(name) + " is not a libvirt name");
}

std::optional<VmTarget> parse_vm_target(const std::string &guest)
{
	if (guest.compare(0, 3, "vm:") != 0)
		return std::nullopt;
	VmTarget t;
	std::string rest = guest.substr(3);
	// "vm:[NAME]" or "vm:[NAME]:PORTS": any name (libvirt allows ':' in
	// one), up to the last ']' that ends it or comes before ":".
	if (!rest.empty() && rest[0] == '[') {
		size_t close = std::string::npos;
		if (rest.back() == ']')
			close = rest.size() - 1;
		else if (auto c = rest.rfind("]:"); c != std::string::npos)
			close = c;
		if (close == std::string::npos || close == 0)
			throw Error("vm: '" + printable(guest) +
				    "': '[' without ']' (vm:[NAME] or vm:[NAME]:PORT)");
		t.name = rest.substr(1, close - 1);
		rest = rest.substr(close + 1);
		if (!rest.empty())
			t.ports = rest.substr(1);
	} else {
		// "vm:NAME" or "vm:NAME:PORTS": the first ':' ends the name, so
		// "vm:web:22" is port 22 of "web" whatever other domains exist.
		const auto colon = rest.find(':');
		t.name = rest.substr(0, colon);
		if (colon != std::string::npos)
			t.ports = rest.substr(colon + 1);
	}
	check_libvirt_name(t.name, "vm:");
	const bool digits_range = !t.ports.empty() &&
				  t.ports.find_first_not_of("0123456789-") == std::string::npos &&
				  t.ports.front() != '-' && t.ports.back() != '-' &&
				  std::count(t.ports.begin(), t.ports.end(), '-') <= 1;
	if (!t.ports.empty() && !digits_range)
		throw Error("vm: '" + printable(guest) + "': '" + printable(t.ports) +
			    "' is no PORT or PORT-PORT (a domain name with ':' is written "
			    "vm:[NAME], vm:[NAME]:PORT)");
	if (t.ports.empty() && guest.back() == ':')
		throw Error("vm: '" + printable(guest) + "': a port after ':' is missing");
	return t;
}

} // namespace kvmxdp
