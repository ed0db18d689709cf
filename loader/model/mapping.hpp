// SPDX-License-Identifier: GPL-2.0
// Static mappings (`kvmxdp map add|del|list`): 1:1 NAT ("bridge by
// iptables") and port forwards, IPv4 or (NAT66) IPv6.  Parsing and
// validation are pure functions, unit-tested; mapping_entries() and
// mapping_entries6() turn a mapping into the kvx_bind / kvx_bind6 pairs and
// kvx_extaddr entries the datapath reads (bpf/include/kvmxdp/abi.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kvmxdp/abi.h"
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"

namespace kvmxdp {

enum class MappingProto : uint8_t { Any = KVX_PROTO_ANY, Tcp = 6, Udp = 17 };

struct Mapping {
	// The family: IPv6 mappings (NAT66) use ext_addr6/guest_addr6, IPv4
	// ones ext_addr/guest_addr; a mapping is one family, both sides.
	bool v6 = false;
	// The external address: a literal one, or (ext_uplink) "whatever
	// address the uplink has now", which follows DHCP changes (IPv6: the
	// address NAT66 translates to, kvx_cfg6.uplink_addr, which follows
	// SLAAC).
	bool ext_uplink = false;
	uint32_t ext_addr = 0; // host order; 0 with ext_uplink or v6
	uint32_t guest_addr = 0;
	Ipv6Addr ext_addr6{}; // v6 only; all 0 with ext_uplink
	Ipv6Addr guest_addr6{};
	MappingProto proto = MappingProto::Any; // Any: 1:1, whole address, ports kept
	PortRange ext_ports{};			// port forwards only
	PortRange guest_ports{};

	bool one_to_one() const { return proto == MappingProto::Any; }
	// An IPv6 relay mapping: a guest's own address (and ports) on both
	// sides, let in untranslated by relay mode's stateful inbound policy
	// (`map add '[ADDR6]:PORT' --proto P`, `map add ADDR6`).  Never a
	// NAT66 mapping, whose external address is outside the guests' prefix.
	bool opens() const { return v6 && !ext_uplink && ext_addr6 == guest_addr6; }
	// The external address in effect, given the uplink's current one.
	uint32_t ext(uint32_t uplink_addr) const { return ext_uplink ? uplink_addr : ext_addr; }
	Ipv6Addr ext6(const Ipv6Addr &uplink6) const { return ext_uplink ? uplink6 : ext_addr6; }
	// "EXT[:P[-P]] GUEST[:P[-P]] [tcp|udp]", the CLI's own spelling;
	// IPv6 bracketed where a port follows ("[fd42::14]:22").
	std::string str() const;
	// The two endpoint arguments and --proto as `map add` takes them
	// ("" for 1:1); the config stores these spellings.
	std::string ext_str() const;
	std::string guest_str() const;
	std::string proto_str() const;
	bool operator==(const Mapping &o) const;
};

// `map add EXT GUEST [--proto tcp|udp]`: "EXT_IP GUEST_IP" is a 1:1
// mapping (no --proto), "EXT_IP:PORT[-PORT] GUEST_IP:PORT[-PORT]" a port
// forward (--proto required); EXT_IP may be the word "uplink".  IPv6:
// "[EXT_IP6]:PORT" ("[uplink]:PORT": the uplink's IPv6 address), a bare
// address only for 1:1 ("fd42::1:22" could be an address or one with a
// port: the error says to bracket it).  Both sides one family.  An empty
// GUEST (or one equal to EXT) is a relay mapping (Mapping::opens): an IPv6
// address and ports as they are.  Throws Error naming the bad value.
Mapping parse_mapping(const std::string &ext, const std::string &guest, const std::string &proto);

// One endpoint spelt as `map add`'s EXT: "EXT_IP[:PORT[-PORT]]",
// "uplink[:PORT[-PORT]]", "[EXT_IP6][:PORT[-PORT]]", "[uplink][:...]" or a
// bare IPv6 address (no port); the allow-list of `map allow` is written so.
// Throws Error naming the bad value.
struct MappingEndpoint {
	bool v6 = false;
	bool uplink = false;
	uint32_t addr = 0; // host order; IPv4 only
	Ipv6Addr addr6{};
	std::optional<PortRange> ports; // none: the whole address
};
MappingEndpoint parse_mapping_endpoint(const std::string &text);

struct MappingContext {
	Ipv4Net subnet;			   // the instance's guest subnet
	PortRange nat_ports;		   // the dynamic NAT range
	uint32_t uplink_addr = 0;	   // host order, 0 if none yet
	std::optional<Ipv4Net> uplink_net; // the uplink's network, if known
	bool force = false;		   // allow an EXT_IP outside the uplink's network
	// Every IPv4 address of the host, any link's (netlink host_ipv4_addrs;
	// empty: not known, not checked): an external address must not be
	// one (a secondary address of the uplink is the host's too, and the
	// RFC 5227 probe cannot see the host's own).
	std::vector<uint32_t> host_addrs;
	// IPv6 mappings: the guests' prefix (unset: NAT66 is off, no IPv6
	// mapping can be made), the uplink's NAT66 address (all 0: none yet)
	// and its on-link prefixes (empty: not known, not checked).
	std::optional<Ipv6Net> subnet6;
	Ipv6Addr uplink_addr6{};
	std::vector<Ipv6Net> uplink_nets6;
	// Every IPv6 address of the host, any link's (netlink
	// host_ipv6_addrs; empty: not known, not checked): a 1:1 address
	// must not be one, as host_addrs for IPv4.
	std::vector<Ipv6Addr> host_addrs6;
	// Relay mode's prefix now (kvx_cfg6.relay_prefix; unset: not known,
	// not checked): a relay mapping's address must be in it.
	std::optional<Ipv6Net> relay_prefix6;
	// Recorded mappings: the prefix may be decided at attach (the
	// bridge's), so an unset subnet6 skips the guest check.
	bool subnet6_unknown_ok = false;
};

// A new mapping against the instance and the existing mappings: the guest
// inside the subnet, the external address not the uplink's own for 1:1,
// no other address of the host (ctx.host_addrs), not the uplink network's
// network or broadcast address, on the uplink's network (unless force:
// which escapes only that), no overlap with another mapping
// (one external address to two guests, a guest endpoint mapped twice,
// overlapping port ranges) or with the NAT port range.  Throws Error.
void check_mapping(const Mapping &m, const std::vector<Mapping> &existing,
		   const MappingContext &ctx);

// The part of check_mapping that needs only the other mappings: one
// external address to two guests, a guest with two 1:1 addresses,
// overlapping external or guest port ranges (`kvmxdp import` reports these
// as conflicts between rules).  Throws Error.
void check_mapping_overlap(const Mapping &m, const std::vector<Mapping> &existing,
			   uint32_t uplink_addr, const Ipv6Addr &uplink_addr6 = {});

struct StaticMapping;

// The mappings of an instance as recorded (config, attach), each against
// the ones before it, with what is known without the network: the guest
// in the subnet, no overlaps, a forward on the uplink's address outside
// the NAT ports.  Throws Error naming the index ("mappings[2]: ...").
void check_recorded_mappings(const std::vector<StaticMapping> &mappings, const Ipv4Net &subnet,
			     const PortRange &nat_ports,
			     const std::optional<Ipv6Net> &subnet6 = std::nullopt);

struct BindEntry {
	kvx_bind_key key;
	kvx_bind_val val;
};

// The kvx_bind entries of a mapping: every IN half first, then the OUT
// halves (the datapath's pair-ordering invariant: insert IN first, delete
// OUT first).  Empty when the external address is unknown (ext_uplink
// with no uplink address yet).
std::vector<BindEntry> mapping_entries(const Mapping &m, uint32_t uplink_addr);

struct BindEntry6 {
	kvx_bind6_key key;
	kvx_bind6_val val;
};

// The same for an IPv6 mapping (kvx_bind6, 128-bit addresses in the
// embedded value's place; no kvx_extaddr: the uplink program looks the
// address up in kvx_bind6 itself).  Empty when the external address is
// unknown ([uplink] with no NAT66 address yet).
std::vector<BindEntry6> mapping_entries6(const Mapping &m, const Ipv6Addr &uplink_addr6);

// The IPv6 network an IPv6 mapping was made on: the uplink's on-link
// prefix that holds its external address (else the prefix of the uplink's
// NAT66 address), the IPv6 default router's link-local address and that
// router's MAC.  As for IPv4, another network means the address is not
// ours: the same prefix behind another router (a renumbered or cloned
// network, a ULA two sites chose alike) is told apart by the router.
struct NetId6 {
	Ipv6Net prefix;
	Ipv6Addr router{}; // all 0: no default route via the uplink
	// From the neighbour table (an RA's source link-layer option puts it
	// there); "": not known when recorded (learnt on use, as NetId's).
	std::string router_mac;
	std::string str() const;
	bool operator==(const NetId6 &o) const
	{
		return prefix == o.prefix && router == o.router && router_mac == o.router_mac;
	}
};

// One more IPv6 default router of the uplink: its link-local address and
// its MAC ("": not in the neighbour table).
struct Router6 {
	Ipv6Addr addr{};
	std::string mac;
	bool operator==(const Router6 &o) const { return addr == o.addr && mac == o.mac; }
};

// The uplink's IPv6 network now: its global on-link prefixes (routes and
// its addresses' networks), its preferred IPv6 default router and the
// router's MAC, and its other default routers.  A LAN may have several
// (an ISP's box and a second router, a campus's first-hop pair): the
// kernel keeps a route per router's RA in the order the RAs came, and
// NetworkManager merges them into one ECMP route.  Preferred: as the
// kernel routes, the lowest metric, then the highest RA preference, then
// the lowest address (never the order routes are listed in, which changes
// with each reconnect).
struct Uplink6Net {
	std::vector<Ipv6Net> prefixes;
	Ipv6Addr router{};
	std::string router_mac;
	std::vector<Router6> other_routers{};
	// "P1,P2 via R at MAC [and N more router(s)]", for logs.
	std::string str() const;
	// r's MAC if r is one of the default routers ("": not known), or
	// nullopt.  All-zero r: the network has no default router either.
	std::optional<std::string> router_mac_of(const Ipv6Addr &r) const;
	bool operator==(const Uplink6Net &o) const
	{
		return prefixes == o.prefixes && router == o.router && router_mac == o.router_mac &&
		       other_routers == o.other_routers;
	}
	// The identity an IPv6 mapping on ext made now records: the on-link
	// prefix holding ext, else uplink6's /64 (ext routed to the host, or
	// `[uplink]`); unset when neither is known.
	std::optional<NetId6> id_for(const Ipv6Addr &ext, const Ipv6Addr &uplink6) const;
};

// The network a mapping was made on: the uplink's network, its default
// gateway and the gateway's MAC.  On another network the mapping is
// suspended (its address is not ours there), and resumed when the uplink is
// back on this one.  Café networks share subnets and gateway addresses
// (192.168.1.0/24 via .1): the gateway's MAC tells them apart.
struct NetId {
	// Unset: the uplink has no IPv4 address (an IPv6-only network, or
	// DHCPv4 not done yet); the network is then its IPv6 part alone.  A
	// recorded one (an IPv4 mapping's) always has it.
	std::optional<Ipv4Net> net;
	uint32_t gateway = 0; // host order; 0: no default route via the uplink
	// "aa:bb:cc:dd:ee:ff" from the neighbour table; "": not known (not
	// resolved yet, or recorded by an older kvmxdp: learnt on use).
	std::string gateway_mac;
	// The uplink's IPv6 network as network_of_link read it with the IPv4
	// one (unset: no global IPv6 prefix).  Only in the current network,
	// never in a record: an IPv6 mapping records its own (network6), an
	// IPv4 one only the fields above (recorded()).
	std::optional<Uplink6Net> v6{};
	std::string str() const;
	NetId recorded() const { return {net, gateway, gateway_mac, std::nullopt}; }
	bool operator==(const NetId &o) const
	{
		return net == o.net && gateway == o.gateway && gateway_mac == o.gateway_mac &&
		       v6 == o.v6;
	}
};

// A mapping as recorded in the configuration.
struct StaticMapping {
	Mapping m;
	// `--add-address`: the external address is added to the uplink
	// (host-local, no proxy ARP) and removed on del/detach.
	bool add_address = false;
	// Unset: not tied (made while the uplink had no address).  IPv4
	// mappings only; an IPv6 one's is network6.
	std::optional<NetId> network;
	// Declared in libvirt's XML (model/libvirt.hpp): the domain whose
	// guest it maps (`map add ... vm:NAME` too), or the network whose
	// metadata holds it; the libvirt hooks remove what they made by
	// these names.  "" for a plain `map add`.  (Default member
	// initializers: aggregate initializations without them stay valid.)
	std::string vm{};
	std::string libvirt_network{};
	// The MAC whose DHCP lease gave the guest address (no static DHCP
	// host entry): the daemon moves the mapping when that lease moves.
	std::string lease_mac{};
	// Who made a mapping with a vm or libvirt_network: that object's
	// kvmxdp metadata (the hooks replace it at "started" and remove it
	// at "stopped"), or `map add ... vm:NAME` (an administrator's: it
	// outlives the VM's stops; "started" re-resolves its guest address).
	bool from_metadata = false;
	// The metadata's force='yes' on its forward: the daemon checks a
	// pending metadata mapping's claim again when it makes it
	// (promote_pending's claim_refusal) as the hook did.
	bool metadata_force = false;
	// Why a mapping a libvirt hook recorded is not in the datapath yet
	// ("": it is).  A hook must not make libvirt refuse to start a VM
	// for what may pass (no lease yet, no uplink address, a 1:1 address
	// of another network, an ARP conflict): the mapping waits here and
	// the daemon makes it once it can (promote_pending).  Its guest
	// address is 0 while its lease_mac has no lease.
	std::string pending{};
	// An IPv6 mapping's network (unset: not tied: made while the uplink
	// had no IPv4 address or no IPv6 network, or by an older kvmxdp).
	std::optional<NetId6> network6{};
	bool operator==(const StaticMapping &o) const
	{
		return m == o.m && add_address == o.add_address && network == o.network &&
		       network6 == o.network6 && vm == o.vm &&
		       libvirt_network == o.libvirt_network && lease_mac == o.lease_mac &&
		       from_metadata == o.from_metadata && pending == o.pending;
	}
};

// Active on the current network (cur unset: the uplink has no address;
// a pending mapping never is):
// same subnet and gateway, and the gateway's MAC as recorded.  A recorded
// MAC that the current network does not know yet keeps the mapping
// suspended (same subnet and gateway IP are no proof); none recorded: the
// subnet and gateway decide (the daemon records the MAC on first use).
// An IPv6 mapping the same way against cur's IPv6 network (cur->v6): its
// prefix among the uplink's, the same router, the router's MAC as recorded.
bool mapping_active(const StaticMapping &sm, const std::optional<NetId> &cur);
// What an active IPv6 mapping's record lacks, learnt from cur: the router's
// MAC (not resolved when it was made, or an older kvmxdp), or the router
// itself (made while the network had none, on its prefix alone).  True
// when sm changed.
bool learn_router6(StaticMapping &sm, const std::optional<NetId> &cur);
// The network the daemon judges the mappings on, from what the uplink shows
// now (network_of_link) and what the previous sync judged on (unset: no
// sync yet, or no network then).  Each family on its own:
// - IPv4 missing now (DHCP renewing, WiFi reconnecting, an IPv6-only
//   network) keeps the IPv4 network last judged on: a short drop must not
//   suspend and flush the IPv4 mappings, and nothing flows meanwhile;
// - an IPv6 network with a default router is taken as it is (an
//   IPv6-only café is not the home network last seen because IPv4 is
//   missing); one not whole yet (no global prefix or no default router:
//   IPv4 back before the router's next RA, a router rebooting) keeps the
//   IPv6 network last seen, but only while IPv4 shows the same network
//   (or nothing).
// Unset when neither family has a network.
std::optional<NetId> judged_network(const std::optional<NetId> &now,
				    const std::optional<NetId> &last);
// The network `map add` (and the daemon making a pending mapping) ties sm
// to on cur: IPv4's, or for an IPv6 mapping network6 from cur->v6
// (uplink6: NAT66's address, where `[uplink]` points); unset: untied.
void tie_to_network(StaticMapping &sm, const std::optional<NetId> &cur, const Ipv6Addr &uplink6);
// The prefix length an `--add-address` address gets on the uplink: the
// network's when the address is on it, else a host route's (32).
uint8_t added_address_prefix(const StaticMapping &sm, const std::optional<NetId> &cur);

// The problems of a libvirt hook's mappings `ms` that no waiting fixes
// (the hook refuses them, as malformed metadata, rather than record them
// pending): a guest outside the subnet (unset: the bridge is not
// attached; IPv6: the prefix, when known; a
// guest address 0, its lease to come, is not judged), an external address
// inside it, a forward on `uplink` in the NAT port range, two of `ms` that
// clash, a clash with a mapping of `recorded` the administrator made
// (plain `map add`: no vm, no network).  A clash with another domain's or
// network's mapping may pass (that one stops): not judged here.  Throws
// Error naming the mapping.
void check_permanent(const std::vector<Mapping> &ms, const std::vector<StaticMapping> &recorded,
		     const std::optional<Ipv4Net> &subnet, const PortRange &nat_ports,
		     const std::optional<Ipv6Net> &subnet6);

// Who a mapping is recorded for (StaticMapping's vm, libvirt_network,
// from_metadata): the hooks name what they made, `vm:NAME` a domain.
struct MappingOwner {
	std::string vm;
	std::string libvirt_network;
	bool from_metadata = false;
	bool owns(const StaticMapping &sm) const
	{
		return sm.vm == vm && sm.libvirt_network == libvirt_network &&
		       sm.from_metadata == from_metadata;
	}
};

// The index of the record `map del` deletes: one whose spec is `m` and
// that `owner` owns (an active one before a pending twin: the one in the
// datapath).  `exact` (the hooks, deleting what they made): only that, and
// only an active one.  Else (the command line: `vm:NAME`, or no owner
// for a plain spec) with none of that owner, the one record of the spec
// (of that domain, when named); two or more of other owners are refused
// (a plain spec does not say which).  Throws Error naming the mapping.
size_t mapping_to_delete(const std::vector<StaticMapping> &mappings, const Mapping &m,
			 const MappingOwner &owner, bool exact, const std::string &bridge);

// A pending reason as recorded and shown (`map list`, `status`, the
// config): an error may quote a libvirt XML's text, so control characters
// and invalid UTF-8 are escaped (printable) and the text is cut at
// kPendingReasonMax bytes, on a character boundary, marked with "...".
constexpr size_t kPendingReasonMax = 300;
std::string pending_reason(const std::string &why);

// The reason a `map add ... vm:NAME` mapping waits while its domain is not
// running (its hook's "stopped"), and a metadata one of a domain libvirt
// does not run (demote_stopped_domains): its guest address, or its MAC's
// lease, may be given to another guest meanwhile (a DHCP client can ask
// for any MAC's lease), which must not receive the VM's forwards.  Only
// the domain's "started" makes it again (mapping_retarget_vm, the hook's
// metadata), never promote_pending.
std::string vm_stopped_reason(const std::string &vm);
bool waits_for_vm_start(const StaticMapping &sm);

// A domain's metadata mappings while libvirt does not run it (`running`
// false: no status file), made pending with vm_stopped_reason: after a
// crash or power loss libvirt never calls "stopped", and a VM that is off
// must not keep its forwards and 1:1 address (its lease may go to another
// guest).  Its "started" hook makes them again.  Returns the ones taken
// out of the datapath (active before); *changed: any mapping changed.
std::vector<size_t>
demote_stopped_domains(std::vector<StaticMapping> &mappings,
		       const std::function<bool(const std::string &vm)> &running,
		       bool *changed = nullptr);

// The context the daemon makes pending mappings in (promote_pending):
// the instance's subnet and NAT ports, the uplink's IPv4 address and
// network (none: 0, unset), and NAT66 as the datapath runs it, kvx_cfg6
// (its prefix and the uplink's address; another mode: no IPv6 mapping can
// be made), with the uplink's on-link IPv6 prefixes (empty: not checked).
MappingContext promotion_context(const Ipv4Net &subnet, const PortRange &nat_ports,
				 uint32_t uplink_addr, const std::optional<NetId> &net,
				 const kvx_cfg6 &cfg6, std::vector<Ipv6Net> uplink_nets6);

// Makes the pending mappings (StaticMapping::pending) that can be made now:
// a guest address known, the uplink on a network (IPv4: cur,
// ctx.uplink_addr and ctx.uplink_net; IPv6: NAT66 on, ctx.subnet6, and
// for `[uplink]` ctx.uplink_addr6), and check_mapping passed against the mappings
// that are not pending.  A made one is tied to cur as `map add` ties it;
// the others get the reason they wait for.  A metadata mapping
// (from_metadata) is also checked by claim_refusal (if given: the
// allow-list and the host's listeners as they are now, model/
// metadata_allow.hpp), whose non-empty answer is its reason to wait.
// Returns the indices of the mappings made; `changed` says whether
// anything (a reason too) changed.
std::vector<size_t>
promote_pending(std::vector<StaticMapping> &mappings, const MappingContext &ctx,
		const std::optional<NetId> &cur, bool *changed = nullptr,
		const std::function<std::string(const StaticMapping &)> &claim_refusal = {});

} // namespace kvmxdp
