// SPDX-License-Identifier: GPL-2.0
// The control plane on kvx_nd, the guests' IPv6 addresses and their owners
// (bpf/lib/owner6.h; model/relay.hpp plan_nd_sync applied): attach and the
// daemon call it with the guests' prefix (relay: the uplink's; NAT66: the
// bridge's subnet) and the host's addresses in it as rtnetlink shows them;
// relay mode's routes, probes and carried entries.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "kernel/netlink.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

struct NdSyncResult {
	size_t deleted = 0; // entries of another prefix, host addresses gone
	size_t host = 0;    // host addresses written
};

NdSyncResult sync_nd(int nd_fd, const std::optional<Ipv6Net> &prefix,
		     const std::vector<Ipv6Addr> &host_addrs);

// A device's global addresses (any state: a tentative one is the host's
// already), for sync_nd: the uplink's (relay), the bridge's (NAT66).
std::vector<Ipv6Addr> host_addrs6(const std::vector<Ipv6IfAddr> &addrs);

// kvx_nd's guest entries idle for model/relay.hpp kNdExpireNs (or
// defended long ago) forgotten, both modes; the number deleted.  Their
// guests' counts follow at the GC's recount (gc.hpp gaddrs_recount).
size_t expire_nd(int nd_fd, uint64_t now_ns);

struct RelayRoutesResult {
	size_t expired = 0; // idle guest entries forgotten (model/relay.hpp kNdExpireNs)
	size_t added = 0;   // /128 routes to guests added on the bridge
	size_t removed = 0; // and removed
};

// The daemon's tick in relay mode: kvx_nd's idle guest entries forgotten
// (expire_nd), then the bridge's /128 routes to the guests (model/relay.hpp
// plan_relay_routes) made to match kvx_nd, in the caller's network
// namespace.  prefix none: every route goes.
RelayRoutesResult sync_relay_routes(NlSocket &nl, int bridge_ifindex, int nd_fd,
				    const std::optional<Ipv6Net> &prefix, uint64_t now_ns);

// Every route kvmxdp made on the bridge (kRelayRouteProto): detach, and a
// mode other than relay.  The number removed.
size_t remove_relay_routes(NlSocket &nl, int bridge_ifindex);

// The bridge's forwarding database as the port guard reads it: where each
// MAC is (a port, not the bridge itself), which entries are static, and
// which MACs are on two ports at once - a VLAN-filtering bridge has one
// entry per (MAC, VLAN), and two guests in two VLANs may share a MAC
// (clones); kvx_brport is keyed by the MAC alone, so neither port holds it.
struct FdbView {
	std::map<MacAddr, uint32_t> port;
	std::set<MacAddr> fixed, split;
};
FdbView fdb_view(const std::vector<FdbEntry> &fdb, int bridge_ifindex);

// The bridge's forwarding database into kvx_brport (abi.h): the learnt
// MACs with the port they are on (the ports with the most cut when the
// bridge has more than 3/4 of the map's capacity: model/relay.hpp
// plan_brport), the owners of guest addresses (kvx_nd at nd_fd, -1: none
// known; kvx_guest at guest_fd) first; the MACs the bridge forgot removed (the per-guest limits on
// addresses and relay's probes count per port, both modes).  The MACs left
// out count in the slot of unknown ports (with the port guard on, their
// frames get placed again as its budget allows, else dropped).
// Owners the bridge forgot while their port is its own stay placed; the
// addresses of owners whose port went are released (model/relay.hpp
// plan_brport_aging): IPv6 ones (kvx_nd) and the learnt IPv4 ones
// (kvx_guest at guest_fd, -1: none; a lease's stays: the lease file says
// whose it is), so that a VM re-created with another MAC has its
// addresses back at once instead of after KVX_GUEST_IDLE_NS.
struct BrportSyncResult {
	size_t added = 0;
	size_t moved = 0;
	size_t removed = 0;
	size_t unplaced = 0;  // learnt MACs not in kvx_brport (over a port's share)
	size_t released = 0;  // kvx_nd entries of owners whose bridge port went
	size_t released4 = 0; // kvx_guest entries of the same
	size_t unbound4 = 0;  // kvx_bind IN halves that delivered to them, MAC cleared
	size_t unbound6 = 0;  // kvx_bind6 IN halves likewise
	size_t gone4 = 0;     // leased kvx_guest entries marked KVX_GUEST_F_GONE
	size_t back4 = 0;     // ... whose MAC is on a port again
	size_t neigh_forgotten = 0; // the host's neighbour entries of those MACs deleted
	size_t held_changed = 0;    // placed MACs whose KVX_BRPORT_F_HELD changed in place
};
// A MAC whose placement moved to another port within kMoveHoldNs of now_ns
// (CLOCK_BOOTTIME; the time of the move is kept in its kvx_brport entry)
// is not released with its port (plan_brport_aging); a leased owner is
// marked KVX_GUEST_F_GONE instead, and unmarked when its MAC is on a port
// again.  The bindings (bind_fd kvx_bind, bind6_fd kvx_bind6) that
// delivered to a released or gone address and MAC lose the MAC, and so do
// the bridge's neighbour entries of those addresses.
//
// The port guard (guard: its state across calls; none: nothing held): a
// placed MAC is KVX_BRPORT_F_HELD while the bridge has it on that port and
// has had it there without a move for kGuardSettleNs (a static entry at
// once), as abi.h kvx_brport says.
struct PortGuardState {
	bool on = false; // attach --port-guard
	// Each MAC the bridge has: its port, and since when (now_ns's clock).
	std::map<MacAddr, std::pair<uint32_t, uint64_t>> since;
};
constexpr uint64_t kGuardSettleNs = KVX_GUARD_SETTLE_NS;
BrportSyncResult sync_brport(NlSocket &nl, int bridge_ifindex, int brport_fd, int nd_fd = -1,
			     int guest_fd = -1, uint64_t now_ns = 0, int bind_fd = -1,
			     int bind6_fd = -1, PortGuardState *guard = nullptr);

// The IN halves of kvx_bind (kvx_bind6) that deliver to one of the gone
// (guest address, MAC) pairs (address in network order) forget the MAC
// (guest_mac and gw_mac zeroed): the datapath then delivers to the
// address's owner, or through the neighbour table (ct.h
// guest_mac_from_owner, ct6.h guest6_mac_from_owner), instead of to a MAC
// that is gone or no longer the address's.  How many.
size_t forget_guest_macs(int bind_fd, const std::set<std::pair<__be32, MacAddr>> &gone);
size_t forget_guest_macs6(int bind6_fd, const std::set<std::pair<Ipv6Addr, MacAddr>> &gone);

// Where the count of a kvx_nd entry is (owner6.h nd_guest_count):
// kvx_gaddrs at the slot of its MAC's port in kvx_brport.  -1: not known.
struct ProbeCounters {
	int gaddrs_fd = -1;
	int brport_fd = -1;
	uint32_t seed = 0;
};
// The entry v (deleted from kvx_nd) taken off its guest's count.
void nd_uncount(const kvx_nd_val &v, const ProbeCounters &c);

// The daemon's duplicate address detection for the addresses guests sent
// from without probing (model/relay.hpp nd_to_probe): each entry is
// marked probed (dad_probes 1, dad_ns now) and then one probe goes out of
// the uplink; a LAN host's defence makes it KVX_ND_DUP in the datapath.
// An entry whose probe could not be sent (the uplink down) is deleted and
// its guest's count with it (counters); the guest's next frame claims it
// again; the other entries are still probed.
struct ProbeResult {
	size_t probed = 0;
	size_t failed = 0;
	std::string error; // the first failure's
};
ProbeResult probe_relay_claims(int nd_fd, int uplink_ifindex, uint64_t now_ns,
			       const ProbeCounters &counters = {});

// NAT66: kvx_nd's owners from the guests' dynamic bindings in kvx_bind6
// (model/relay.hpp plan_nd_seed), for addresses without an entry
// (BPF_NOEXIST: a claim the datapath made meanwhile stands), owned and
// seen at now_ns.  The number written; the caller recounts kvx_gaddrs.
size_t seed_nd(int nd_fd, int bind6_fd, const Ipv6Net &subnet, uint64_t now_ns);

// A replaced kvx_nd's guest entries copied into the new one (old_fd: this
// layout, or ABI 10..16's 24-byte values, model/relay.hpp nd_from_abi16);
// the host's are written by attach anyway.  Returns the number copied.
size_t carry_nd(int old_fd, int new_fd);

} // namespace kvmxdp
