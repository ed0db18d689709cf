// SPDX-License-Identifier: GPL-2.0
// Mappings declared in libvirt's XML (model/libvirt.hpp): the parser on
// fixture documents as libvirt writes them (tests/loader/libvirt: a live
// domain, an inactive one, a <domstatus>, networks, a network hook's
// <hookData>) and hostile ones (malformed, a typo in our namespace, DTD
// entities, external entities, too large), the guest address of a MAC,
// the hook's operations and `vm:NAME[:PORT]`.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "error_of.hpp"
#include "model/libvirt.hpp"

using namespace kvmxdp;
using test::error_of;

namespace {

std::string fixture(const std::string &name)
{
	std::ifstream f(std::string(KVX_LIBVIRT_FIXTURES) + "/" + name);
	EXPECT_TRUE(f.good()) << name;
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

std::vector<std::string> strs(const std::vector<Mapping> &ms)
{
	std::vector<std::string> out;
	for (const auto &m : ms)
		out.push_back(m.str());
	return out;
}

uint32_t ip(const char *s)
{
	return parse_ipv4(s);
}

bool every(const LibvirtInterface &)
{
	return true;
}

} // namespace

TEST(Libvirt, LiveDomainXml)
{
	LibvirtDomain d = parse_libvirt_domain(fixture("domain.xml"), "domain.xml");
	EXPECT_EQ(d.name, "web1");
	ASSERT_EQ(d.interfaces.size(), 2u);
	EXPECT_EQ(d.interfaces[0].mac, "52:54:00:ab:cd:01"); // lower-cased
	EXPECT_EQ(d.interfaces[0].network, "default");
	EXPECT_EQ(d.interfaces[0].bridge, "virbr0");
	EXPECT_EQ(d.interfaces[1].bridge, "br-lan");
	ASSERT_TRUE(d.nat.present);
	EXPECT_EQ(d.nat.forwards.size(), 2u);
	EXPECT_EQ(d.nat.addresses.size(), 1u);
	// Its second NIC is on the LAN bridge br-lan, which kvmxdp does not serve.
	EXPECT_EQ(libvirt_nat_interface(
			  d, [](const LibvirtInterface &i) { return i.bridge == "virbr0"; })
			  .mac,
		  "52:54:00:ab:cd:01");
	EXPECT_EQ(strs(libvirt_domain_mappings(d.nat, ip("192.168.122.10"))),
		  (std::vector<std::string>{
			  "uplink:2222 192.168.122.10:22 tcp",
			  "192.168.1.101:5000-5009 192.168.122.10:5000-5009 udp",
			  "192.168.1.101 192.168.122.10",
		  }));
}

// <link state='down'/>: the hooks refuse such a kvmxdp interface whose
// address would come from a lease (another machine's, with a copied MAC).
TEST(Libvirt, InterfaceLinkState)
{
	const LibvirtDomain d =
		parse_libvirt_domain("<domain><name>v</name><devices>"
				     "<interface type='network'><mac address='52:54:00:00:00:01'/>"
				     "<source network='default'/><link state='down'/></interface>"
				     "<interface type='network'><mac address='52:54:00:00:00:02'/>"
				     "<source network='default'/><link state='up'/></interface>"
				     "<interface type='network'><mac address='52:54:00:00:00:03'/>"
				     "<source network='default'/></interface>"
				     "</devices></domain>",
				     "x");
	ASSERT_EQ(d.interfaces.size(), 3u);
	EXPECT_TRUE(d.interfaces[0].link_down);
	EXPECT_FALSE(d.interfaces[1].link_down);
	EXPECT_FALSE(d.interfaces[2].link_down);
}

TEST(Libvirt, InactiveDomainPicksTheInterfaceOfMac)
{
	LibvirtDomain d = parse_libvirt_domain(fixture("domain_inactive.xml"), "x");
	EXPECT_EQ(d.nat.mac, "52:54:00:00:00:22");
	const auto &i = libvirt_nat_interface(d, every);
	EXPECT_EQ(i.network, "isolated");
	EXPECT_EQ(i.bridge, ""); // inactive XML: no bridge yet
	EXPECT_EQ(strs(libvirt_domain_mappings(d.nat, ip("10.0.0.5"))),
		  (std::vector<std::string>{"uplink:5432 10.0.0.5:5432 tcp"}));
	d.nat.mac = "52:54:00:00:00:99";
	EXPECT_EQ(error_of([&] { libvirt_nat_interface(d, every); }),
		  "domain 'db1': no interface with MAC 52:54:00:00:00:99");
}

// Two NICs on networks, no mac= in the metadata: the one on a bridge
// kvmxdp serves; two served is ambiguous (a forward reaches one address)
// and refused naming the MACs; mac= decides.
TEST(Libvirt, SeveralInterfacesPickTheServedOneOrRefuse)
{
	LibvirtDomain d = parse_libvirt_domain(fixture("domain_inactive.xml"), "x");
	d.nat.mac.clear();
	auto on = [](const char *net) {
		return [net](const LibvirtInterface &i) { return i.network == net; };
	};
	EXPECT_EQ(libvirt_nat_interface(d, on("isolated")).mac, "52:54:00:00:00:22");
	EXPECT_EQ(libvirt_nat_interface(d, on("default")).mac, "52:54:00:00:00:11");
	EXPECT_EQ(error_of([&] { libvirt_nat_interface(d, every); }),
		  "domain 'db1' has 2 interfaces on bridges kvmxdp serves (MACs "
		  "52:54:00:00:00:11, 52:54:00:00:00:22): name the one its mappings are for "
		  "with <kvmxdp:nat mac='52:54:00:00:00:11'>");
	// None served: the first, whose bridge the caller names as not attached.
	EXPECT_EQ(libvirt_nat_interface(d, [](const LibvirtInterface &) { return false; }).mac,
		  "52:54:00:00:00:11");
	d.nat.mac = "52:54:00:00:00:22";
	EXPECT_EQ(libvirt_nat_interface(d, every).network, "isolated");
}

TEST(Libvirt, DomainStatusFileAndOtherPrefix)
{
	// /run/libvirt/qemu/NAME.xml wraps the domain; the prefix is the
	// author's choice, the namespace URI decides.
	LibvirtDomain d = parse_libvirt_domain(fixture("domain_status.xml"), "x");
	EXPECT_EQ(d.name, "web1");
	EXPECT_EQ(strs(libvirt_domain_mappings(d.nat, ip("192.168.122.10"))),
		  (std::vector<std::string>{"uplink:8080 192.168.122.10:80 tcp"}));
}

TEST(Libvirt, NoMetadataOrAnotherNamespaceIsNothing)
{
	EXPECT_FALSE(parse_libvirt_domain(fixture("domain_nometa.xml"), "x").nat.present);
	// Another version's URI and an element without a namespace.
	LibvirtDomain d = parse_libvirt_domain(fixture("domain_wrong_ns.xml"), "x");
	EXPECT_FALSE(d.nat.present);
	EXPECT_TRUE(d.nat.forwards.empty());
}

TEST(Libvirt, BadDocumentsAreOneErrorNamingThem)
{
	struct Case {
		const char *file;
		const char *error;
	} cases[] = {
		{"domain_malformed.xml",
		 "domain_malformed.xml: not valid XML (line 6): Opening and ending tag mismatch: "
		 "forward line 5 and nat"},
		{"domain_unknown.xml",
		 "domain_unknown.xml: <kvmxdp:nat>: unknown element 'kvmxdp:fowrard'"},
		// No entity is ever expanded: a DTD is refused (the parser's
		// own amplification guard may speak first).
		{"billion_laughs.xml", "billion_laughs.xml: "},
		{"external_entity.xml",
		 "external_entity.xml: XML with a DTD (<!DOCTYPE>) is not accepted"},
		{"network.xml", "network.xml: no <domain> element"},
	};
	for (const auto &c : cases) {
		SCOPED_TRACE(c.file);
		const std::string text = fixture(c.file);
		auto t0 = std::chrono::steady_clock::now();
		std::string err = error_of([&] { parse_libvirt_domain(text, c.file); });
		EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
		EXPECT_EQ(err.rfind(c.error, 0), 0u) << err;
		EXPECT_EQ(err.find('\n'), std::string::npos) << err;
		// Nothing of /etc/hostname made it anywhere.
		EXPECT_EQ(err.find("localhost"), std::string::npos) << err;
	}
	EXPECT_EQ(error_of([&] {
			  parse_libvirt_domain("", "stdin");
		  }).rfind("stdin: not valid XML", 0),
		  0u);
}

TEST(Libvirt, HugeDocumentIsRefusedBeforeParsing)
{
	std::string big =
		"<domain><name>x</name><!--" + std::string(kLibvirtXmlMax, 'a') + "--></domain>";
	EXPECT_EQ(error_of([&] { parse_libvirt_domain(big, "stdin"); }),
		  "stdin: " + std::to_string(big.size()) + " bytes of XML, more than 1048576");
}

TEST(Libvirt, InvalidMetadataNamesTheElement)
{
	LibvirtDomain d = parse_libvirt_domain(fixture("domain_bad_port.xml"), "x");
	std::string err = error_of([&] { libvirt_domain_mappings(d.nat, ip("10.0.0.5")); });
	EXPECT_EQ(err.rfind("kvmxdp:forward 2: ", 0), 0u) << err;
	EXPECT_NE(err.find("70000"), std::string::npos) << err;

	auto nat = [](const std::string &inner) {
		return "<domain><name>v</name><metadata><n:nat "
		       "xmlns:n='http://kvmxdp.org/xmlns/libvirt/1'>" +
		       inner + "</n:nat></metadata></domain>";
	};
	EXPECT_EQ(error_of([&] { parse_libvirt_domain(nat("<n:forward port='1'/>"), "s"); }),
		  "s: <kvmxdp:nat> forward 1: attribute 'proto' is missing");
	EXPECT_EQ(error_of([&] {
			  parse_libvirt_domain(nat("<n:forward proto='tcp' port='1' too='2'/>"),
					       "s");
		  }),
		  "s: <kvmxdp:nat> forward 1: unknown attribute 'too'");
	EXPECT_EQ(error_of([&] { parse_libvirt_domain(nat("<n:address guest='1.2.3.4'/>"), "s"); }),
		  "s: <kvmxdp:nat> address 1: unknown attribute 'guest'");
	EXPECT_EQ(error_of([&] { parse_libvirt_domain(nat("<other/>"), "s"); }),
		  "s: <kvmxdp:nat>: only kvmxdp:forward and kvmxdp:address may be in it");
	EXPECT_EQ(error_of([&] {
			  parse_libvirt_domain("<domain><metadata><n:natt "
					       "xmlns:n='http://kvmxdp.org/xmlns/libvirt/1'/>"
					       "</metadata></domain>",
					       "s");
		  }),
		  "s: <kvmxdp:natt>: unknown element (expected kvmxdp:nat)");
	LibvirtDomain nm = parse_libvirt_domain(nat("<n:forward proto='sctp' port='1'/>"), "s");
	EXPECT_NE(error_of([&] { libvirt_domain_mappings(nm.nat, ip("10.0.0.5")); }).find("sctp"),
		  std::string::npos);
}

TEST(Libvirt, NetworkDefinitionStatusAndHookData)
{
	LibvirtNetwork n = parse_libvirt_network(fixture("network.xml"), "x");
	EXPECT_EQ(n.name, "default");
	EXPECT_EQ(n.bridge, "virbr0");
	// The host without a MAC and the IPv6 one (id=) are no MAC's.
	ASSERT_EQ(n.hosts.size(), 2u);
	EXPECT_EQ(n.hosts[0].mac, "52:54:00:ab:cd:01");
	EXPECT_EQ(format_ipv4(n.hosts[0].addr), "192.168.122.10");
	EXPECT_EQ(n.hosts[0].name, "web1"); // the domain a MAC's entry is for
	EXPECT_EQ(n.hosts[1].name, "");
	EXPECT_EQ(strs(libvirt_network_mappings(n.nat)),
		  (std::vector<std::string>{"uplink:8080 192.168.122.10:80 tcp",
					    "192.168.1.120 192.168.122.20"}));

	LibvirtNetwork s = parse_libvirt_network(fixture("network_status.xml"), "x");
	EXPECT_EQ(s.bridge, "virbr0");
	EXPECT_FALSE(s.nat.present);
	ASSERT_EQ(s.hosts.size(), 1u);

	LibvirtNetwork h = parse_libvirt_network(fixture("network_hookdata.xml"), "x");
	EXPECT_EQ(h.name, "lan");
	EXPECT_EQ(h.bridge, "virbr1");
	EXPECT_EQ(strs(libvirt_network_mappings(h.nat)),
		  (std::vector<std::string>{"uplink:5353 192.168.122.30:53 udp"}));

	EXPECT_EQ(error_of([&] {
			  parse_libvirt_network(fixture("network_forward_no_to.xml"), "n.xml");
		  }),
		  "n.xml: <kvmxdp:nat> forward 1: attribute 'to' (GUEST_IP:PORT) is missing");
	EXPECT_EQ(error_of([&] { parse_libvirt_network(fixture("domain.xml"), "d.xml"); }),
		  "d.xml: no <network> element");
}

TEST(Libvirt, GuestAddressStaticHostFirstThenNewestLease)
{
	const std::vector<LibvirtDhcpHost> hosts = {{"52:54:00:00:00:01", ip("10.0.0.10"), ""}};
	auto lease = [](const char *addr, uint8_t last, int64_t expiry) {
		Lease l;
		l.addr = parse_ipv4(addr);
		l.mac = {0x52, 0x54, 0, 0, 0, last};
		l.expiry = expiry;
		return l;
	};
	const std::vector<Lease> leases = {
		lease("10.0.0.50", 1, 2000), lease("10.0.0.51", 2, 1500),
		lease("10.0.0.52", 2, 1800), lease("10.0.0.53", 3, 900),
		lease("10.0.0.54", 4, 900),  lease("10.0.0.55", 4, 0),
	};
	const int64_t now = 1000;
	auto addr = [&](const char *mac) {
		auto a = libvirt_guest_addr(mac, hosts, leases, now);
		return a ? format_ipv4(*a) : std::string("none");
	};
	EXPECT_EQ(addr("52:54:00:00:00:01"), "10.0.0.10"); // static entry beats its lease
	// Two current leases of two addresses for one MAC: a guest may have
	// asked under another's MAC; no guess.
	EXPECT_NE(error_of([&] { addr("52:54:00:00:00:02"); })
			  .find("MAC 52:54:00:00:00:02 has current leases of two addresses, "
				"10.0.0.51 and 10.0.0.52"),
		  std::string::npos);
	EXPECT_EQ(addr("52:54:00:00:00:03"), "none");	   // expired
	EXPECT_EQ(addr("52:54:00:00:00:04"), "10.0.0.55"); // infinite lease, the other expired
	EXPECT_EQ(addr("52:54:00:00:00:05"), "none");
}

TEST(Libvirt, FollowLeasesMovesLeasedGuestsOnly)
{
	auto sm = [](const char *ext, const char *guest, const char *proto, const char *mac) {
		StaticMapping s;
		s.m = parse_mapping(ext, guest, proto);
		s.vm = "web1";
		s.lease_mac = mac;
		return s;
	};
	std::vector<StaticMapping> ms = {
		sm("uplink:2222", "10.0.0.12:22", "tcp", "52:54:00:00:00:01"),
		sm("10.1.0.5", "10.0.0.12", "", "52:54:00:00:00:01"),
		sm("uplink:80", "10.0.0.20:80", "tcp", ""), // a static host entry's: never moved
		sm("uplink:81", "10.0.0.30:80", "tcp", "52:54:00:00:00:03"), // no current lease
	};
	Lease l;
	l.addr = ip("10.0.0.13");
	l.mac = {0x52, 0x54, 0, 0, 0, 1};
	Lease old = l;
	old.addr = ip("10.0.0.31");
	old.mac[5] = 3;
	old.expiry = 500;
	const std::vector<Lease> leases = {l, old};
	auto moved = follow_leases(ms, leases, 1000);
	EXPECT_EQ(moved, (std::vector<std::string>{"vm web1: 10.0.0.12 -> 10.0.0.13",
						   "vm web1: 10.0.0.12 -> 10.0.0.13"}));
	EXPECT_EQ(ms[0].m.str(), "uplink:2222 10.0.0.13:22 tcp");
	EXPECT_EQ(ms[1].m.str(), "10.1.0.5 10.0.0.13");
	EXPECT_EQ(ms[2].m.str(), "uplink:80 10.0.0.20:80 tcp");
	EXPECT_EQ(ms[3].m.str(), "uplink:81 10.0.0.30:80 tcp");
	EXPECT_TRUE(follow_leases(ms, leases, 1000).empty()); // in place now

	// Another guest leases 10.0.0.14 under web1's MAC: nothing moves, and
	// the caller is told.
	Lease forged = l;
	forged.addr = ip("10.0.0.14");
	std::vector<std::string> held;
	EXPECT_TRUE(follow_leases(ms, {l, forged, old}, 1000, &held).empty());
	EXPECT_EQ(ms[0].m.str(), "uplink:2222 10.0.0.13:22 tcp");
	ASSERT_EQ(held.size(), 2u);
	EXPECT_NE(held[0].find("vm web1 not moved: MAC 52:54:00:00:00:01 has current leases of two "
			       "addresses, 10.0.0.13 and 10.0.0.14"),
		  std::string::npos)
		<< held[0];
}

TEST(Libvirt, HookOperations)
{
	struct Case {
		const char *op, *subop;
		HookAction qemu, network;
	} cases[] = {
		{"prepare", "begin", HookAction::Check, HookAction::None},
		{"start", "begin", HookAction::None, HookAction::None},
		{"started", "begin", HookAction::Apply, HookAction::Apply},
		{"stopped", "end", HookAction::Remove, HookAction::Remove},
		{"release", "end", HookAction::Remove, HookAction::None},
		{"migrate", "begin", HookAction::None, HookAction::None},
		{"restore", "begin", HookAction::None, HookAction::None},
		{"reconnect", "begin", HookAction::None, HookAction::None},
		{"port-created", "begin", HookAction::None, HookAction::None},
		{"updated", "begin", HookAction::None, HookAction::None},
		{"STARTED", "begin", HookAction::None, HookAction::None},
	};
	for (const auto &c : cases) {
		SCOPED_TRACE(c.op);
		EXPECT_EQ(libvirt_qemu_action(c.op, c.subop), c.qemu);
		EXPECT_EQ(libvirt_network_action(c.op, c.subop), c.network);
	}
}

TEST(Libvirt, VmTarget)
{
	EXPECT_FALSE(parse_vm_target("192.168.122.10:22"));
	auto t = parse_vm_target("vm:web1:22");
	ASSERT_TRUE(t);
	EXPECT_EQ(t->name, "web1");
	EXPECT_EQ(t->ports, "22");
	t = parse_vm_target("vm:web1");
	EXPECT_EQ(t->name, "web1");
	EXPECT_EQ(t->ports, "");
	t = parse_vm_target("vm:web1:8000-8010");
	EXPECT_EQ(t->ports, "8000-8010");
	// A VM named "web:22": bracketed; unbracketed, :22 is always the port.
	t = parse_vm_target("vm:[web:22]");
	EXPECT_EQ(t->name, "web:22");
	EXPECT_EQ(t->ports, "");
	t = parse_vm_target("vm:[web:22]:80");
	EXPECT_EQ(t->name, "web:22");
	EXPECT_EQ(t->ports, "80");
	t = parse_vm_target("vm:web:22");
	EXPECT_EQ(t->name, "web");
	EXPECT_EQ(t->ports, "22");
	t = parse_vm_target("vm:[a]b]:443");
	EXPECT_EQ(t->name, "a]b");
	EXPECT_NE(error_of([] { parse_vm_target("vm:a:b:8000-8010"); }).find("vm:[NAME]"),
		  std::string::npos);
	for (const char *bad :
	     {"vm:", "vm:..", "vm:../../etc/passwd", "vm:a/b", "vm:.:22", "vm:web:", "vm:web:22-",
	      "vm:web:1-2-3", "vm:[web", "vm:[]", "vm:[web]x", "vm:[web]:"})
		EXPECT_EQ(error_of([&] { parse_vm_target(bad); }).rfind("vm: '", 0), 0u) << bad;
}

// Only an element declaring kvmxdp's namespace makes a hook's XML kvmxdp's:
// the URI quoted in text, a comment or another attribute does not (a
// foreign domain must not be parsed, nor refused as too large, for it).
TEST(Libvirt, DeclaresKvmxdpNamespaceOnlyOnAnElement)
{
	const std::string uri = kLibvirtXmlns;
	EXPECT_TRUE(declares_kvmxdp_namespace("<domain><metadata><k:nat xmlns:k='" + uri +
					      "'/></metadata></domain>"));
	EXPECT_TRUE(declares_kvmxdp_namespace("<domain><metadata>\n<nat\n xmlns = \"" + uri +
					      "\" mac='52:54:00:00:00:01'>"));
	EXPECT_TRUE(declares_kvmxdp_namespace("<hookData><network a='x>y' xmlns:kvmxdp=\"" + uri +
					      "\">"));
	EXPECT_FALSE(declares_kvmxdp_namespace("<domain><description>see xmlns:k=\"" + uri +
					       "\"</description></domain>"));
	EXPECT_FALSE(declares_kvmxdp_namespace("<domain><!-- <k:nat xmlns:k='" + uri +
					       "'/> --></domain>"));
	EXPECT_FALSE(declares_kvmxdp_namespace("<domain><description><![CDATA[<k:nat xmlns:k='" +
					       uri + "'/>]]></description></domain>"));
	EXPECT_FALSE(declares_kvmxdp_namespace("<domain><x:y href='" + uri + "'/></domain>"));
	EXPECT_FALSE(declares_kvmxdp_namespace("<domain><k:nat xmlns:k='" + uri + "/2'/>"));
	EXPECT_FALSE(declares_kvmxdp_namespace("<domain><k:nat xmlns:k='" + uri));
	EXPECT_FALSE(declares_kvmxdp_namespace(""));
}
