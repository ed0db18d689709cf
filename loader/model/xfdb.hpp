// SPDX-License-Identifier: GPL-2.0
// kvx_xfdb (guest MAC -> bridge port: where the uplink's XDP program
// delivers a translated reply) and the bridge's forwarding database, made
// to agree: what the daemon does to each from both tables as read
// (control/xdp_path.cpp applies it).  Pure.
//
// The bridge is the reference: XDP only stands in for it where its frames
// bypass it.  On a port the bridge learns on (learning on, not locked),
// XDP learns too, and what it saw since the last sync is refreshed in the
// bridge (NTF_USE) as if the frames had passed.  On any other port only
// the bridge's entries say where a MAC is (libvirt's per-guest entries with
// learning off, an 802.1X authenticator's on a locked port): kvx_xfdb
// follows them there and keeps nothing they do not hold.  A static entry
// (libvirt's, an administrator's) is the bridge's decision wherever it is:
// no XDP sighting elsewhere is refreshed over it (NTF_USE, like any frame
// the bridge learns from, moves a static entry that is not sticky), and
// kvx_xfdb holds it marked static, which XDP never moves.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "base/netaddr.hpp"

namespace kvmxdp {

// One kvx_xfdb entry.
struct XfdbRow {
	MacAddr mac{};
	uint32_t ifindex = 0;
	uint64_t seen_ns = 0; // XDP's last sight (CLOCK_BOOTTIME); 0: the daemon's copy
	bool fixed = false;   // KVX_XFDB_F_STATIC: a static bridge entry's copy
};

// One entry of the bridge's forwarding database.
struct BridgeFdb {
	int port = 0;
	bool dynamic = true; // learnt (or ages like it); false: static, permanent
};

// A kvx_xfdb entry to write (seen_ns 0).
struct XfdbWrite {
	MacAddr mac{};
	uint32_t ifindex = 0;
	// The bridge's static entry: written whatever XDP saw since the dump,
	// marked KVX_XFDB_F_STATIC (XDP never moves it).
	bool fixed = false;
	// seen_ns as read: for a correction of a learnt entry, an XDP
	// sighting since the dump (seen_ns moved: the guest moved meanwhile)
	// wins over what the dump said.
	uint64_t read_seen_ns = 0;
	bool operator==(const XfdbWrite &o) const
	{
		return mac == o.mac && ifindex == o.ifindex && fixed == o.fixed &&
		       read_seen_ns == o.read_seen_ns;
	}
};

// The bridge's ports, and those it learns on (IFLA_BRPORT_LEARNING on,
// IFLA_BRPORT_LOCKED off).
struct BridgePorts {
	std::set<int> all;
	std::set<int> learning;
};

// What to do, each list in the order given.
struct XfdbPlan {
	// NTF_USE in the bridge: MAC on that port.
	std::vector<std::pair<MacAddr, int>> refresh;
	// kvx_xfdb entries to delete.
	std::vector<MacAddr> remove;
	// kvx_xfdb entries to point at the bridge's port (and mark or unmark
	// static).
	std::vector<XfdbWrite> correct;
	// kvx_xfdb entries to create unless XDP made one meanwhile
	// (BPF_NOEXIST).
	std::vector<XfdbWrite> add;
};

// xfdb: kvx_xfdb as read; bridge: the bridge's entries on its ports
// (control passes only ports of the bridge).  synced_ns: the time of
// the previous sync (entries XDP saw after it are fresh sightings);
// stale_ns: how long an entry of a learning port that neither side holds
// any more is kept.
XfdbPlan plan_xfdb_sync(const std::vector<XfdbRow> &xfdb,
			const std::map<MacAddr, BridgeFdb> &bridge, const BridgePorts &ports,
			uint64_t synced_ns, uint64_t now_ns, uint64_t stale_ns);

} // namespace kvmxdp
