// SPDX-License-Identifier: GPL-2.0
// Mappings declared in libvirt's own XML: a kvmxdp element in the
// <metadata> of a domain (the VM's forwards and 1:1 address) or of a
// network (network-wide ones), applied by the libvirt hooks
// (verbs/libvirt_verbs.hpp).  libvirt keeps one element per namespace in
// <metadata> and leaves its content alone (virsh edit, virt-manager's XML
// tab, `virsh metadata --uri`):
//
//   <metadata>
//     <kvmxdp:nat xmlns:kvmxdp="http://kvmxdp.org/xmlns/libvirt/1">
//       <kvmxdp:forward proto="tcp" port="2222" to="22"/>
//       <kvmxdp:address external="192.168.1.101"/>
//     </kvmxdp:nat>
//   </metadata>
//
// In a domain the guest is the VM (its interface's MAC: the network's
// static DHCP host entry, else its lease); in a network a forward's `to`
// and an address's `guest` name the guest address.  Parsed with libxml2,
// without network access, DTDs or entity substitution: the XML comes from
// libvirt, but a domain's metadata is whatever its author wrote.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/leases.hpp"
#include "model/mapping.hpp"

namespace kvmxdp {

// The namespace URI of kvmxdp's metadata element; stable: a new layout
// gets a new URI.
constexpr const char *kLibvirtXmlns = "http://kvmxdp.org/xmlns/libvirt/1";
// The most XML a hook or `map add vm:` reads (a domain's XML is a few kB).
constexpr size_t kLibvirtXmlMax = size_t{1} << 20;

// Whether an XML text (a hook's standard input, maybe cut short) declares
// kvmxdp's namespace on an element: an xmlns or xmlns:PREFIX attribute of
// a start tag whose value is kLibvirtXmlns.  Not the URI anywhere (a
// domain's <description> may quote it: that XML is not kvmxdp's, and must
// not be parsed or refused as too large).  Comments, CDATA, processing
// instructions and declarations are skipped.  No parse: a hook looks
// before it hands anything to libxml2.
bool declares_kvmxdp_namespace(const std::string &xml);

// One <kvmxdp:forward>: port (P or P-P) on `external` (default: the
// uplink's address) to the guest's `to` port(s) (default: the same).
struct LibvirtForward {
	std::string proto;
	std::string port;
	std::string to;
	std::string external;
	// force='yes': the port may be one a host service listens on, if the
	// administrator's allow-list names it (model/metadata_allow.hpp).
	bool force = false;
};

// One <kvmxdp:address>: the guest's 1:1 external address.
struct LibvirtAddress {
	std::string external;
	std::string guest; // networks only
};

struct LibvirtNat {
	bool present = false; // a kvmxdp:nat element was there
	std::string mac;      // domains: the interface it applies to ("": the first)
	std::vector<LibvirtForward> forwards;
	std::vector<LibvirtAddress> addresses;
};

struct LibvirtInterface {
	std::string mac;	// "aa:bb:cc:dd:ee:ff", lower case
	std::string network;	// <source network=...>, "" for a bridge interface
	std::string bridge;	// <source bridge=...> ("" in a network interface's inactive XML)
	bool link_down = false; // <link state='down'/>: no frame of the guest reaches the bridge
};

struct LibvirtDomain {
	std::string name;
	std::vector<LibvirtInterface> interfaces;
	LibvirtNat nat;
};

struct LibvirtDhcpHost {
	std::string mac;
	uint32_t addr = 0; // host order
	std::string name;  // its name= ("" : none): often the domain it is for
};

struct LibvirtNetwork {
	std::string name;
	std::string bridge;
	std::vector<LibvirtDhcpHost> hosts;
	LibvirtNat nat;
};

// The text of a <domain> (a hook's stdin, /etc/libvirt/qemu/NAME.xml, the
// <domstatus> of /run/libvirt/qemu/NAME.xml) or of a <network> (a network
// hook's <hookData>, /etc/libvirt/qemu/networks/NAME.xml, the
// <networkstatus> of /run/libvirt/network/NAME.xml).  Text that is not
// well-formed, has a DTD, is larger than kLibvirtXmlMax, is not that
// document, or whose kvmxdp element is invalid (an unknown kvmxdp element
// or attribute, a missing attribute) throws Error naming `what`.  Elements
// of other namespaces are ignored.
LibvirtDomain parse_libvirt_domain(const std::string &xml, const std::string &what);
LibvirtNetwork parse_libvirt_network(const std::string &xml, const std::string &what);

// The interface the domain's mappings apply to: the one of nat.mac, else
// the one interface on a network or a bridge that `served` says kvmxdp
// serves (its bridge is an instance's), else the first on a network or a
// bridge (its bridge is then named as not attached).  A domain with two or
// more served interfaces and no nat.mac is ambiguous: a forward reaches one
// guest address, and which one is for its author to say, not for the order
// of the XML.  Throws Error (for that case naming the MACs to choose from).
const LibvirtInterface &
libvirt_nat_interface(const LibvirtDomain &d,
		      const std::function<bool(const LibvirtInterface &)> &served);

// The guest address of a MAC: the network's static DHCP host entry, else
// its lease that expires last (expired ones skipped; 0: never expires).
// Throws Error when the MAC has current leases of two addresses (a guest
// can ask for a lease under another's MAC: no guess).
std::optional<uint32_t> libvirt_guest_addr(const std::string &mac,
					   const std::vector<LibvirtDhcpHost> &hosts,
					   const std::vector<Lease> &leases, int64_t now);

// The mappings of a domain's metadata for guest address `guest`, or of a
// network's (its guests named in the XML), each parsed by parse_mapping.
// The forwards come first, in the XML's order, then the addresses: the
// k-th mapping is nat.forwards[k] for k < nat.forwards.size().  Throws
// Error naming the element ("forward 2: ...").
std::vector<Mapping> libvirt_domain_mappings(const LibvirtNat &nat, uint32_t guest);
std::vector<Mapping> libvirt_network_mappings(const LibvirtNat &nat);

// The force='yes' of the forward whose mapping is `m`: the one of nat's
// mappings (a domain's for m's guest address, else a network's) equal to
// m.  nullopt when none is (the metadata no longer declares m, or m is a
// 1:1 address, which has no force), or the metadata is invalid.
std::optional<bool> libvirt_forward_force(const LibvirtNat &nat, const Mapping &m, bool network);

// Follows the leases: every mapping with a lease_mac whose MAC has a current
// lease (libvirt_guest_addr) of another address gets that address (a 1:1
// mapping's or a forward's guest; ports kept).  Returns one line per
// mapping moved ("vm web1: 192.168.122.12 -> 192.168.122.13").  A MAC
// with leases of two addresses moves nothing; `held` gets a line each.
std::vector<std::string> follow_leases(std::vector<StaticMapping> &mappings,
				       const std::vector<Lease> &leases, int64_t now,
				       std::vector<std::string> *held = nullptr);

// The mappings of `moved` (indices: their guest address just followed
// a DHCP lease, or their domain's start) against the others on their new
// guest address.  The lease file decides who keeps an address: a moved
// mapping's guest holds it (its MAC's current lease, or its static host
// entry).  Another mapping there that followed a lease its MAC holds no
// more (`leases` at `now`) is stale, clash or not (it would reach this
// guest): pending, out of the datapath, its guest address 0 until its MAC
// has a lease again (follow_leases).  A fixed one (no lease_mac) that
// clashes is pending until the clash is gone (promote_pending).  Any
// other clash (the other holds a current lease of the address too, moved
// too, a clash not about the guest address) makes the moved one pending,
// never leaves it on its old address, which the DHCP server may give to
// yet another guest.  ctx as for check_recorded_mappings (no network
// checks).  Returns one line per mapping held.
std::vector<std::string> hold_clashing(std::vector<StaticMapping> &mappings,
				       const std::vector<size_t> &moved, const MappingContext &ctx,
				       const std::vector<Lease> &leases, int64_t now);

// What a hook call does: libvirt's qemu hook runs with OBJECT OP SUBOP
// EXTRA; the mappings are made once the domain runs ("started": its
// interface and address are set) and go when it is gone ("stopped", and
// "release", which also follows a start that failed); a network's on
// "started" and "stopped".  A domain's "prepare" checks (Check) that its
// kvmxdp interface's MAC is its own, before libvirt makes anything.
// Everything else does nothing.
enum class HookAction { None, Apply, Remove, Check };
HookAction libvirt_qemu_action(const std::string &op, const std::string &subop);
HookAction libvirt_network_action(const std::string &op, const std::string &subop);

// A libvirt object name as a file name: not empty, no '/', not "." or
// "..", no control characters.  Throws Error naming `what`.
void check_libvirt_name(const std::string &name, const std::string &what);

// `map add EXT vm:NAME[:PORT[-PORT]]`: the VM's name and the port part
// ("" for none); nullopt when guest does not start with "vm:".  The first
// ':' after NAME starts the port, so "vm:web:22" is always port 22 of
// "web"; a name holding ':' (libvirt allows it) is bracketed:
// "vm:[web:22]", "vm:[web:22]:80".  Anything after the name that is not
// PORT or PORT-PORT throws Error naming the value.
struct VmTarget {
	std::string name;
	std::string ports;
};
std::optional<VmTarget> parse_vm_target(const std::string &guest);

} // namespace kvmxdp
