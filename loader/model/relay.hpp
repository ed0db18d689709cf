// SPDX-License-Identifier: GPL-2.0
// Relay mode's table of address owners (kvx_nd, abi.h) as the control plane
// keeps it: the datapath learns the guests' entries; attach and the daemon
// make it follow the uplink's prefix and list the host's own addresses in
// it, so that no guest takes one (a guest that sent from the host's
// temporary address would receive the host's traffic).
#pragma once

#include <array>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

struct NdEntry {
	Ipv6Addr addr{};
	kvx_nd_val val{};
};

struct NdSync {
	std::vector<Ipv6Addr> del;  // entries to delete
	std::vector<Ipv6Addr> host; // KVX_ND_HOST entries to write
};

// What makes kvx_nd right for prefix (none: relay has no prefix now) and
// the host's addresses: every entry outside the prefix goes (renumbered,
// another network: those guests must take new addresses), and so does a
// host entry the host no longer has; each host address in the prefix gets
// a host entry, over a guest's (the host's address is the host's).
NdSync plan_nd_sync(const std::vector<NdEntry> &entries, const std::optional<Ipv6Net> &prefix,
		    const std::vector<Ipv6Addr> &host_addrs);

// A guest's entry (owned, pending, defended) whose guest sent nothing from
// the address for this long is forgotten by the daemon: its temporary
// addresses (RFC 8981: a new one a day) would otherwise hold kvx_nd, and
// the guest's share of it, for ever.  Long against the datapath's
// KVX_GUEST_IDLE_NS: a guest that answers only when asked (a server with
// --ipv6-inbound open) sends from its address at least that often or
// nobody asked it anything; its next frame takes the address again.
inline constexpr uint64_t kNdExpireNs = 3600ULL * 1000 * 1000 * 1000;

// A defended entry (KVX_ND_DUP) is forgotten this long after the LAN
// host's last defence (dad_ns): it owns nothing, but counts against its
// guest's address limit, and a guest whose DAD failed for several
// addresses must be able to take others.  Longer than the datapath's
// KVX_ND_DUP_HOLD_NS, within which the guest's probes are answered.
inline constexpr uint64_t kNdDupExpireNs = 600ULL * 1000 * 1000 * 1000;

// The guests' entries to forget at now (CLOCK_BOOTTIME ns): idle for
// kNdExpireNs (no frame since last_seen_ns; an entry whose DAD ran its
// course counts from that DAD), or defended kNdDupExpireNs ago.
std::vector<Ipv6Addr> nd_expired(const std::vector<NdEntry> &entries, uint64_t now_ns);

// An address is a guest's through a duplicate address detection that no
// LAN host answered (owner6.h nd_owner): one a guest sent from without
// probing (its DAD off, kvmxdp attached after it, its entry forgotten) is
// pending with dad_probes 0, and the daemon probes the LAN for it on the
// uplink (control/relay.hpp probe_relay_claims).  Those entries.
std::vector<Ipv6Addr> nd_to_probe(const std::vector<NdEntry> &entries);

// The datapath's nd_val_owned (owner6.h): owned, or pending with its DAD
// (at least one probe) run for KVX_ND_DAD_NS without a defence.
bool nd_owned(const kvx_nd_val &v, uint64_t now_ns);

// An entry of the 24-byte kvx_nd_val of ABI 10..16 (mac, state, pad,
// ifindex, pad, last_seen_ns), for the replaced table: the same owner,
// state and times; a pending or defended one's DAD counted from its
// last_seen_ns, the time its probe or defence set there.  None: the
// host's (attach writes those again) or no state.
std::optional<kvx_nd_val> nd_from_abi16(const uint8_t (&old)[24]);

// The host's own packets to a relay guest: the host's route to the prefix
// is the uplink's (on the LAN: it would solicit the guest there, where
// only kvmxdp answers for it and forwards nothing the host sends), so the
// daemon routes each guest address to the bridge, as odhcpd's relay mode
// adds a /128 per neighbour it learns downstream.  The routes carry this
// routing protocol number (rtm_protocol; iproute2 prints it as a number,
// no well-known daemon uses it), so that the daemon and detach find and
// remove exactly theirs.
inline constexpr uint8_t kRelayRouteProto = 107;

struct RouteSync {
	std::vector<Ipv6Addr> add; // /128 routes to add
	std::vector<Ipv6Addr> del; // and to remove
};

// The routes that make `have` (kvmxdp's /128 routes on the bridge) what
// entries say at now: one per address of the prefix a guest owns (or whose
// DAD ran its course without a defence: as the datapath's nd_val_owned),
// none for the host's addresses, pending or defended ones, nor outside
// the prefix (none: relay has no prefix now: every route goes).
RouteSync plan_relay_routes(const std::vector<NdEntry> &entries,
			    const std::optional<Ipv6Net> &prefix, const std::vector<Ipv6Addr> &have,
			    uint64_t now_ns);

// kvx_brport (abi.h) made from the bridge's forwarding database: every
// MAC on its port while the bridge has no more than 3/4 of capacity of
// them (the port guard places a new MAC at its first frame, and taking a
// placement back would free its port's quota for more).  A guest that
// sends from ever new MACs (the port guard lets 16 a second through) makes
// the bridge learn them all (no fdb_max_learned on most kernels):
// kvx_brport would fill with that one port's MACs, and no guest booted
// after that would be placed.  So beyond that, the ports with the most MACs
// are cut to the level at which all fit in 3/4 of capacity (never below
// kBrportPerPort: another port's hundred containers keep their places
// beside a flooding guest), and, when the map cannot hold every port's
// kBrportPerPort, each port's first ones before any port's next ones.  A
// port's MACs in this order: those that own guest addresses (kvx_nd,
// kvx_guest: what they hold counts in its port's slot, and would move to
// the shared one with a placement taken back), those already in the map (no
// slot changes under a guest), then the rest.
inline constexpr size_t kBrportPerPort = 64;

struct BrportPlan {
	std::vector<std::pair<MacAddr, uint32_t>> put; // added or moved (mac, port ifindex)
	std::vector<MacAddr> del;		       // removed, before any put
	size_t unplaced = 0; // fdb's MACs left out (in the unknown ports' slot)
};

// fdb: each learnt MAC's port; have: kvx_brport now; owners: MACs of guest
// entries in kvx_nd and kvx_guest; capacity: kvx_brport's max_entries.
BrportPlan plan_brport(const std::map<MacAddr, uint32_t> &fdb,
		       const std::map<MacAddr, uint32_t> &have, const std::set<MacAddr> &owners,
		       size_t capacity, size_t per_port = kBrportPerPort);

// Before plan_brport: what the bridge's forwarding database forgot of
// kvx_brport's address owners (have; owners as plan_brport's; ports: those
// of have's ports that still exist as links).  An owner that went quiet
// for the bridge's ageing time (300 s), or whose bridge was re-created, stays
// placed on its port while the port exists (keep, added to fdb): otherwise
// its addresses would count in the slot every unplaced MAC shares, and the
// datapath would let another port's guest take them.  An owner placed on a
// port that no longer exists (its VM's tap went: destroyed, re-created
// with another MAC) is gone: its addresses are free at once (gone), so
// that a re-created guest's DAD for them is not answered in its old
// self's name.
// Not gone, though: an owner whose placement moved from one port to
// another within kMoveHoldNs (moved) - a guest that sent with another's
// MAC moved that MAC to its own port (the bridge learns before kvmxdp
// sees the frame), and its VM going must not free the real owner's
// addresses; after that long the owner, if it is there, has sent again
// (and is back on its port) or is idle anyway.  Left to plan_brport.
struct BrportAging {
	std::map<MacAddr, uint32_t> keep;
	std::set<MacAddr> gone;
};
constexpr uint64_t kMoveHoldNs = KVX_BRPORT_MOVE_HOLD_NS;
BrportAging plan_brport_aging(const std::map<MacAddr, uint32_t> &fdb,
			      const std::map<MacAddr, uint32_t> &have,
			      const std::set<MacAddr> &owners, const std::set<uint32_t> &ports,
			      const std::set<MacAddr> &moved = {});

// NAT66's owners for a table that has none yet (an attach that turns it
// on, an upgrade from a version without them): the guest MAC of the
// guests' dynamic bindings in kvx_bind6 (IN halves: address, MAC; the
// caller leaves static ones out, whose learnt MAC may be a deleted VM's),
// within the subnet; none for an address two MACs bound (one of them
// spoofed it before owners existed: which one is not known).  Without it
// every live guest's address would go to whichever MAC sends from it
// first after the attach.
struct BindOwner {
	Ipv6Addr addr{};
	MacAddr mac{};
};
std::map<Ipv6Addr, MacAddr> plan_nd_seed(const std::vector<BindOwner> &bindings,
					 const Ipv6Net &subnet);

} // namespace kvmxdp
