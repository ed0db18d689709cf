// SPDX-License-Identifier: GPL-2.0
#include "model/xfdb.hpp"

namespace kvmxdp {

XfdbPlan plan_xfdb_sync(const std::vector<XfdbRow> &xfdb,
			const std::map<MacAddr, BridgeFdb> &bridge, const BridgePorts &ports,
			uint64_t synced_ns, uint64_t now_ns, uint64_t stale_ns)
{
	XfdbPlan plan;
	std::set<MacAddr> known;
	for (const XfdbRow &r : xfdb) {
		known.insert(r.mac);
		const int port = static_cast<int>(r.ifindex);
		const bool learns = ports.learning.count(port) != 0;
		auto it = bridge.find(r.mac);
		// The bridge's static entry: XDP's sighting of that MAC on
		// another port (a guest spoofing a MAC libvirt gave another
		// port) is not refreshed over it, and kvx_xfdb goes back to it.
		if (it != bridge.end() && !it->second.dynamic) {
			const auto to = static_cast<uint32_t>(it->second.port);
			if (to != r.ifindex || !r.fixed)
				plan.correct.push_back({r.mac, to, true, r.seen_ns});
			continue;
		}
		// Seen by XDP since the last sync, on a port the bridge learns
		// on: the bridge learns it there too (or refreshes it), as if
		// the frame had passed it.
		if (learns && r.seen_ns > synced_ns) {
			plan.refresh.emplace_back(r.mac, port);
			continue;
		}
		if (it != bridge.end()) {
			const auto to = static_cast<uint32_t>(it->second.port);
			if (to != r.ifindex || r.fixed)
				plan.correct.push_back({r.mac, to, false, r.seen_ns});
			continue;
		}
		// The bridge holds the MAC nowhere.  On a port it does not learn
		// on (or no port of it any more) nothing else may say where the
		// MAC is: XDP delivering there would be a decision the bridge
		// never made (it floods, or drops with unicast flooding off).
		// On a learning port, XDP's sighting stands until it is stale.
		if (!learns || !r.seen_ns || now_ns - r.seen_ns > stale_ns)
			plan.remove.push_back(r.mac);
	}
	// What the bridge holds and kvx_xfdb does not: its learnt entries of
	// ports without XDP, static ones (libvirt's with learning off), an
	// authenticator's.  seen_ns 0: never refreshed on the bridge's behalf.
	for (const auto &[mac, e] : bridge)
		if (!known.count(mac))
			plan.add.push_back({mac, static_cast<uint32_t>(e.port), !e.dynamic, 0});
	return plan;
}

} // namespace kvmxdp
