// SPDX-License-Identifier: GPL-2.0
// The XDP fast path of one instance: which devices run kvmxdp's
// XDP programs, the maps that tell those programs where a redirect lands
// (kvx_xdev) and where a guest is (kvx_xfdb), and the bridge's forwarding
// database, which stops learning the guests whose frames XDP redirects.
//
// The XDP programs sit in front of the TC ones and hand them everything
// they do not do exactly as TC would (bpf/lib/xdp.h), so a device without
// XDP, or a redirect target the kernel says would not take frames, only
// costs speed, never a packet.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fs.hpp"
#include "model/mode.hpp"

namespace kvmxdp {

class NlSocket;
class SkelObject;

// One device's place in the fast path, as the daemon applies it and
// status shows it.
struct XdpDevice {
	int ifindex = 0;
	std::string ifname;
	DeviceRole role = DeviceRole::Port; // the uplink or a bridge port
	HookChoice choice;		    // XDP or TC, and why
	bool tx = false;		    // KVX_XDEV_F_TX: an XDP redirect into it lands
	std::string tx_why;
	// KVX_XDEV_F_LEARN: a port the bridge learns source MACs on
	// (learning on, not locked), so XDP learns guest MACs there too.
	bool learn = false;
	// A port: kvmxdp's port guard (kvx_port_in, KVX_XDEV_F_GUARD) is on
	// its TC ingress, and whether kvmxdp created the clsact for it;
	// guard_why: why not.
	bool guard = false;
	bool guard_clsact = false;
	std::string guard_why;
	// "IF (ROLE): HOOK, WHY; TX_WHY[; learning off or locked...][; no port
	// guard: WHY]", the line -v logs.
	std::string describe() const;
};

// The XDP object (loaded on first use, sharing every map of the TC
// object but its IPv6 program array, pinned as kvx_xdp6progs) and the XDP
// links of one instance, pinned in its pin directory as
// link_xdp_<ifindex>: they stay attached without a daemon, a restarted
// daemon swaps its programs in atomically (bpf_link_update), and detach
// removes them with the other pins.
class XdpPath {
public:
	// pins: the instance's pin directory (open_pin_dir), held for the
	// daemon's lifetime.
	// port_guard: attach --port-guard (the port guard on every bridge
	// port's TC ingress, kvx_port_in).
	XdpPath(HookMode mode, bool port_guard, const SkelObject &tc, DirFd pins);
	~XdpPath();
	XdpPath(const XdpPath &) = delete;
	XdpPath &operator=(const XdpPath &) = delete;

	// Decides every device, attaches/updates/removes kvmxdp's XDP links
	// and rewrites kvx_xdev.  Errors on one device make it a TC device
	// with the reason (warned once), never a failed sync.
	std::vector<XdpDevice> sync(NlSocket &nl, int bridge_ifindex, int uplink_ifindex);

	// The bridge's forwarding database and kvx_xfdb, both ways
	// (model/xfdb.hpp): guests that XDP saw since the last call on a
	// port the bridge learns on are refreshed in the bridge (as if
	// their frames had passed it); the bridge's entries fill kvx_xfdb
	// for guests XDP has not seen (ports without XDP, static entries),
	// and on ports it does not learn on (learning off, locked) kvx_xfdb
	// holds exactly the bridge's entries; entries of learning ports
	// neither has seen for kStaleNs go.
	void sync_fdb(int bridge_ifindex, uint64_t now_ns);
	static constexpr uint64_t kStaleNs = 300ULL * 1000 * 1000 * 1000;

	// The XDP links pinned in pins: ifindex -> program id.
	static std::vector<std::pair<int, uint32_t>> pinned_links(const DirFd &pins);
	// Removes every XDP link pin of pins (the links go with them) and the
	// XDP object's IPv6 program array.
	static void remove_all(const DirFd &pins);
	// Removes the port guard from every port kvx_xdev (xdev_fd; -1: none)
	// marks with it, and the clsact qdiscs kvmxdp created for it where no
	// other filter is left, and from every port of the bridge that runs it
	// unrecorded; a port that is gone is fine.  Tries every port, then
	// throws one line naming those that failed.
	static void remove_guards(NlSocket &nl, int xdev_fd, int bridge_ifindex);

private:
	int prog_fd(const char *name);
	bool pin_xdp6progs(const SkelObject &xdp); // warns once per cause
	bool attach(int ifindex, const std::string &ifname, const char *prog, std::string &why);
	// The port guard on a port's TC ingress, or off it with --port-guard
	// off (d.guard, d.guard_clsact, d.guard_why, recorded in kvx_xdev at
	// once); prev: the port's kvx_xdev flags before this sync.
	void guard(NlSocket &nl, XdpDevice &d, uint16_t prev);
	void record_guard(const XdpDevice &d);
	// Our guard's filter off ifindex (not another program at our
	// priority), and the clsact if created_clsact and nothing is left.
	static void remove_guard(NlSocket &nl, int ifindex, bool created_clsact);

	HookMode mode_;
	bool port_guard_;
	const SkelObject &tc_;
	DirFd pins_;
	std::unique_ptr<SkelObject> xdp_; // kvmxdp_xdp, loaded on first use
	uint64_t fdb_synced_ns_ = 0;
	std::vector<std::string> warned_;
	// When each bridge port was first seen (the guard waits kNewPortWait).
	std::map<int, std::chrono::steady_clock::time_point> port_seen_;
	static constexpr std::chrono::seconds kNewPortWait{2};
	bool synced_ = false; // a sync has seen the ports there at the start
	bool xdp6_pinned_ = false; // xdp_'s kvx_xdp6progs is the pinned one
};

} // namespace kvmxdp
