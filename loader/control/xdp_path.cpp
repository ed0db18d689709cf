// SPDX-License-Identifier: GPL-2.0
#include "control/xdp_path.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio> // renameat
#include <cstring>
#include <map>
#include <set>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "control/devices.hpp"
#include "kernel/maps.hpp"
#include "kernel/skel.hpp"
#include "kernel/netlink.hpp"
#include "kernel/tc.hpp"
#include "kvmxdp/abi.h"
#include "kvmxdp_xdp.skel.h"
#include "model/xfdb.hpp"

namespace kvmxdp {
namespace {

constexpr const char *kLinkPinPrefix = "link_xdp_";
constexpr const char *kGuardProg = "kvx_port_in";

bool has(const std::vector<std::string> &v, const std::string &s)
{
	return std::find(v.begin(), v.end(), s) != v.end();
}

std::string link_pin(int ifindex)
{
	return kLinkPinPrefix + std::to_string(ifindex);
}

// Where the array is pinned before its rename over the live pin.  No dot:
// bpffs refuses names with one (reserved for its own files).
std::string xdp6progs_tmp_pin()
{
	return std::string(KVX_MAP_XDP6PROGS) + "_new";
}

std::string ifname_of(int ifindex)
{
	char buf[IF_NAMESIZE] = {};
	return ::if_indextoname(static_cast<unsigned>(ifindex), buf) ? buf : "";
}

} // namespace

std::string XdpDevice::describe() const
{
	return ifname + " (" + role_name(role) + "): " + hook_name(choice.hook) + ", " +
	       choice.why + "; " + tx_why +
	       (role == DeviceRole::Port && !learn ?
			"; learning off or locked: guests' ports from the bridge's entries only" :
			"") +
	       (role == DeviceRole::Port && !guard ? "; no port guard: " + guard_why : "");
}

XdpPath::XdpPath(HookMode mode, bool port_guard, const SkelObject &tc, DirFd pins)
	: mode_(mode)
	, port_guard_(port_guard)
	, tc_(tc)
	, pins_(std::move(pins))
{
}

XdpPath::~XdpPath() = default;

int XdpPath::prog_fd(const char *name)
{
	if (!xdp_) {
		auto s = std::make_unique<Skel<kvmxdp_xdp>>("kvmxdp_xdp");
		// Every map but the IPv6 program array: one of XDP programs
		// (libbpf fills it with this load's), which the TC object has
		// none of.
		s->reuse_maps_from(tc_, {KVX_MAP_XDP6PROGS});
		if (int err = s->try_load())
			throw Error("load the XDP programs", "", -err);
		xdp_ = std::move(s);
		xdp6_pinned_ = false;
	}
	return xdp_->prog_fd(name);
}

// The array is emptied when its last user reference goes, and the XDP
// links outlive the daemon: pinned once this load's programs are on the
// links, renamed over the last load's pin (whose array its programs used
// until their links were swapped: unpinned earlier, it would have been
// emptied under them).  Without the pin IPv6 takes the TC path once the
// daemon is gone: a warning, not a failed attach.
bool XdpPath::pin_xdp6progs(const SkelObject &xdp)
{
	const std::string tmp = xdp6progs_tmp_pin();
	pins_.unlink(tmp);
	if (bpf_obj_pin(xdp.map_fd(KVX_MAP_XDP6PROGS), pins_.via_fd(tmp).c_str()) < 0 ||
	    ::renameat(pins_.fd.get(), tmp.c_str(), pins_.fd.get(), KVX_MAP_XDP6PROGS) < 0) {
		const int err = errno;
		pins_.unlink(tmp);
		// Once per cause: the next sync tries again.
		const std::string why = "pin " + pins_.show(KVX_MAP_XDP6PROGS) + ": " +
					std::strerror(err) +
					": IPv6 takes the TC path without the daemon";
		if (!has(warned_, why)) {
			warned_.push_back(why);
			log_warn(why);
		}
		return false;
	}
	return true;
}

bool XdpPath::attach(int ifindex, const std::string &ifname, const char *prog, std::string &why)
{
	const std::string pin = link_pin(ifindex);
	int pfd = prog_fd(prog);
	Fd link;
	try {
		link = get_pinned(pins_, pin).value_or(Fd());
	} catch (const Error &e) {
		why = std::string(e.what()) + "; TC path";
		return false;
	}
	if (link) {
		bpf_link_info li{};
		bpf_prog_info pi{};
		uint32_t ll = sizeof(li), pl = sizeof(pi);
		// A link whose device went away is defunct (ifindex 0): an
		// update would succeed and attach nothing, so it is replaced.
		if (bpf_obj_get_info_by_fd(link.get(), &li, &ll) == 0 &&
		    li.xdp.ifindex == static_cast<uint32_t>(ifindex)) {
			// Already this program (every sync after the first).
			if (bpf_obj_get_info_by_fd(pfd, &pi, &pl) == 0 && li.prog_id == pi.id)
				return true;
			// Ours from before (a restart, an upgrade): swapped in
			// place, no moment without a program.
			if (bpf_link_update(link.get(), pfd, nullptr) == 0)
				return true;
		}
		pins_.unlink(pin);
	}
	bpf_link_create_opts opts{};
	opts.sz = sizeof(opts);
	opts.flags = XDP_FLAGS_DRV_MODE;
	int fd = bpf_link_create(pfd, ifindex, BPF_XDP, &opts);
	if (fd < 0) {
		int err = errno;
		why = "XDP attach failed (" + std::string(std::strerror(err)) + ")" +
		      (err == EBUSY || err == EEXIST ?
			       ": another XDP program is attached ('ip link show dev " + ifname +
				       "'); TC path" :
			       "; TC path");
		return false;
	}
	Fd owned(fd);
	if (bpf_obj_pin(fd, pins_.via_fd(pin).c_str()) < 0) {
		why = "pin " + pins_.show(pin) + ": " + std::strerror(errno) + "; TC path";
		bpf_link_detach(fd);
		return false;
	}
	return true;
}

static bool is_guard_prog(uint32_t id)
{
	const std::string name = prog_name_by_id(id);
	return name.empty() || name == kGuardProg;
}

// Is kvmxdp's port guard the filter at our handle and priority on ifindex?
// Another program there (another tool's, a kvmxdp instance's uplink filter
// on a device that was a port) is never replaced or removed as the guard.
// A name that cannot be read (the unit's sandbox: no CAP_SYS_ADMIN for a
// program by id) counts as ours, as at the bridge and the uplink, where
// kvmxdp's priority is its own.
static bool guard_filter_on(int ifindex)
{
	const std::optional<uint32_t> id = tc_query(ifindex);
	return id && is_guard_prog(*id);
}

void XdpPath::record_guard(const XdpDevice &d)
{
	const int xdev_fd = tc_.map_fd(KVX_MAP_XDEV);
	const uint32_t k = static_cast<uint32_t>(d.ifindex);
	kvx_xdev_val v{};
	bpf_map_lookup_elem(xdev_fd, &k, &v);
	v.flags = static_cast<__u16>((v.flags & ~(KVX_XDEV_F_GUARD | KVX_XDEV_F_GUARD_CLSACT)) |
				     (d.guard ? KVX_XDEV_F_GUARD : 0) |
				     (d.guard_clsact ? KVX_XDEV_F_GUARD_CLSACT : 0));
	check_libbpf(bpf_map_update_elem(xdev_fd, &k, &v, BPF_ANY), "update", KVX_MAP_XDEV);
}

void XdpPath::guard(NlSocket &nl, XdpDevice &d, uint16_t prev)
{
	// One query per port and sync; the program's name only when it is
	// not this daemon's own guard (every sync after the first).
	const int pfd = tc_.prog_fd(kGuardProg);
	bpf_prog_info pi{};
	uint32_t pl = sizeof(pi);
	const bool have_id = bpf_obj_get_info_by_fd(pfd, &pi, &pl) == 0;
	const std::optional<uint32_t> id = tc_query(d.ifindex);
	const bool current = id && have_id && *id == pi.id;
	const bool ours = current || (id && is_guard_prog(*id));
	// Whether kvmxdp made the clsact: the last sync's word (or the last
	// daemon's: kvx_xdev is pinned), while its filter is still there.
	d.guard_clsact = ours && (prev & KVX_XDEV_F_GUARD) && (prev & KVX_XDEV_F_GUARD_CLSACT);
	if (!port_guard_) {
		d.guard_why = "attach --port-guard off";
		try {
			if (ours)
				tc_remove_ingress(nl, d.ifname, d.guard_clsact);
			d.guard_clsact = false;
		} catch (const Error &e) {
			// Kept in kvx_xdev: tried again next time, and by detach.
			d.guard = true;
			log_warn(d.ifname + ": removing the port guard: " + e.what());
		}
		record_guard(d);
		return;
	}
	// A port that appears while this daemon runs gets the guard from a
	// later sync, not at once: libvirt sets a tap's <bandwidth> just after
	// putting it in the bridge (`tc qdisc add dev vnetN ingress`), which
	// fails on a clsact made in between, and the VM's start with it.  The
	// ports there at the first sync are guarded at once.
	const auto now = std::chrono::steady_clock::now();
	const auto seen =
		port_seen_.try_emplace(d.ifindex, synced_ ? now : now - kNewPortWait).first->second;
	if (!ours && now - seen < kNewPortWait) {
		d.guard_why = "a new port: guarded from the next sync";
		record_guard(d);
		return;
	}
	if (current) {
		d.guard = true;
		return;
	}
	try {
		if (!ours && id)
			throw Error("another program is kvmxdp's filter (priority " +
				    std::to_string(kTcPriority) + ") on " + d.ifname + " ingress");
		// Ours from before (a restarted daemon's program) is replaced
		// in place; a clsact that was there stays "not ours".
		d.guard_clsact = tc_attach_ingress(d.ifindex, d.ifname, pfd) || d.guard_clsact;
		d.guard = true;
	} catch (const Error &e) {
		d.guard_why = e.what();
		if (!has(warned_, d.ifname + d.guard_why)) {
			warned_.push_back(d.ifname + d.guard_why);
			log_warn(d.ifname +
				 ": no port guard (a guest there may send with the MAC "
				 "of a guest on another port): " +
				 d.guard_why);
		}
	}
	// At once, not with the sync's kvx_xdev: a sync that fails later (an
	// attach rolled back) must leave where the guard is for its undo.
	record_guard(d);
}

std::vector<XdpDevice> XdpPath::sync(NlSocket &nl, int bridge_ifindex, int uplink_ifindex)
{
	std::vector<XdpDevice> devs;
	if (uplink_ifindex > 0) {
		XdpDevice d;
		d.ifindex = uplink_ifindex;
		d.ifname = ifname_of(uplink_ifindex);
		d.role = DeviceRole::Uplink;
		devs.push_back(d);
	}
	std::map<int, std::string> kinds;
	std::set<int> locked;
	if (bridge_ifindex > 0)
		for (const PortInfo &p : bridge_ports(nl, bridge_ifindex)) {
			XdpDevice d;
			d.ifindex = p.ifindex;
			d.ifname = p.name;
			d.role = DeviceRole::Port;
			// Where the bridge learns source MACs, XDP may learn
			// for it (KVX_XDEV_F_LEARN); a locked port takes no
			// XDP program at all (choose_hook).
			d.learn = p.learning && !p.locked;
			if (p.locked)
				locked.insert(p.ifindex);
			kinds[p.ifindex] = p.kind;
			devs.push_back(d);
		}
	if (uplink_ifindex > 0)
		if (auto l = find_link(nl, devs[0].ifname))
			kinds[uplink_ifindex] = l->kind; // a veth in tests and the bench

	// Facts and redirect targets first: whether the uplink's XDP pays
	// depends on the ports (choose_hook).
	std::map<int, DeviceFacts> facts;
	bool ports_tx = false;
	for (XdpDevice &d : devs) {
		DeviceFacts f = probe_device(d.ifindex, d.ifname, kinds[d.ifindex]);
		f.locked = locked.count(d.ifindex) != 0;
		d.tx = xdp_tx_allowed(f, d.tx_why);
		ports_tx = ports_tx || (d.tx && d.role == DeviceRole::Port);
		facts[d.ifindex] = f;
	}
	std::set<int> want;
	const int xdev_fd = tc_.map_fd(KVX_MAP_XDEV);
	std::map<uint32_t, kvx_xdev_val> xdev;
	// The last sync's flags: where the port guard is, and whose clsact.
	std::map<uint32_t, uint16_t> prev;
	for (const auto &[k, v] : dump_hash<uint32_t, kvx_xdev_val>(xdev_fd))
		prev[k] = v.flags;
	for (XdpDevice &d : devs) {
		if (d.role == DeviceRole::Port)
			guard(nl, d, prev[static_cast<uint32_t>(d.ifindex)]);
		d.choice = choose_hook(mode_, d.role, facts[d.ifindex], ports_tx);
		if (d.choice.hook == Hook::Xdp) {
			std::string why;
			if (attach(d.ifindex, d.ifname,
				   d.role == DeviceRole::Uplink ? "kvx_xdp_up" : "kvx_xdp_port",
				   why)) {
				want.insert(d.ifindex);
			} else {
				d.choice = {Hook::Tc, why};
				if (!has(warned_, d.ifname + why)) {
					warned_.push_back(d.ifname + why);
					log_warn(d.ifname + ": " + why);
				}
			}
		}
		kvx_xdev_val v{};
		v.flags = static_cast<__u16>((d.tx ? KVX_XDEV_F_TX : 0) |
					     (d.role == DeviceRole::Port ? KVX_XDEV_F_PORT : 0) |
					     (d.learn ? KVX_XDEV_F_LEARN : 0) |
					     (d.guard ? KVX_XDEV_F_GUARD : 0) |
					     (d.guard_clsact ? KVX_XDEV_F_GUARD_CLSACT : 0));
		xdev[static_cast<uint32_t>(d.ifindex)] = v;
	}
	if (bridge_ifindex > 0) {
		kvx_xdev_val v{};
		v.flags = KVX_XDEV_F_BRIDGE;
		if (auto l = find_link(nl, ifname_of(bridge_ifindex)))
			std::memcpy(v.mac, l->mac.data(), sizeof(v.mac));
		xdev[static_cast<uint32_t>(bridge_ifindex)] = v;
	}

	// Links of devices that no longer want XDP (mode change, a port that
	// left the bridge, an uplink that moved) go.
	for (const auto &[ifindex, prog_id] : pinned_links(pins_)) {
		(void)prog_id;
		if (!want.count(ifindex))
			pins_.unlink(link_pin(ifindex));
	}
	// The IPv6 programs' array with the links that use it: pinned once
	// they run this load's programs, gone with the last of them.
	if (want.empty()) {
		pins_.unlink(KVX_MAP_XDP6PROGS);
		xdp6_pinned_ = false;
	} else if (xdp_ && !xdp6_pinned_) {
		xdp6_pinned_ = pin_xdp6progs(*xdp_);
	}
	for (auto it = port_seen_.begin(); it != port_seen_.end();)
		it = xdev.count(static_cast<uint32_t>(it->first)) ? std::next(it) :
								    port_seen_.erase(it);
	synced_ = true;
	// The guard leaves devices that are no longer ports (a device out of
	// the bridge, the bridge re-created: its ports are read next time).
	for (const auto &[k, flags] : prev) {
		if (!(flags & KVX_XDEV_F_GUARD) || xdev.count(k))
			continue;
		try {
			remove_guard(nl, static_cast<int>(k), flags & KVX_XDEV_F_GUARD_CLSACT);
		} catch (const Error &e) {
			log_warn(ifname_of(static_cast<int>(k)) +
				 ": removing the port guard: " + e.what());
			// Its record stays (no other flag: neither a port nor
			// a target for XDP), for the next sync and detach.
			kvx_xdev_val keep{};
			keep.flags = static_cast<__u16>(
				flags & (KVX_XDEV_F_GUARD | KVX_XDEV_F_GUARD_CLSACT));
			xdev[k] = keep;
		}
	}
	// kvx_xdev: what is, then what was not.
	for (const auto &[k, v] : xdev)
		check_libbpf(bpf_map_update_elem(xdev_fd, &k, &v, BPF_ANY), "update", KVX_MAP_XDEV);
	for (uint32_t k : map_keys<uint32_t>(xdev_fd))
		if (!xdev.count(k))
			bpf_map_delete_elem(xdev_fd, &k);
	return devs;
}

void XdpPath::sync_fdb(int bridge_ifindex, uint64_t now_ns)
{
	if (bridge_ifindex <= 0)
		return;
	const int xfdb_fd = tc_.map_fd(KVX_MAP_XFDB);
	// A socket of its own: a reply that does not come must not hang the
	// daemon.
	NlSocket nl(NETLINK_ROUTE, 2);
	BridgePorts ports;
	for (const PortInfo &p : bridge_ports(nl, bridge_ifindex)) {
		ports.all.insert(p.ifindex);
		// NTF_USE is br_fdb_update(): it would learn where the bridge
		// itself must not (learning off, or a locked 802.1X port whose
		// entries only the authenticator adds).
		if (p.learning && !p.locked)
			ports.learning.insert(p.ifindex);
	}
	std::map<MacAddr, BridgeFdb> bridge;
	for (const FdbEntry &e : bridge_fdb(nl, bridge_ifindex))
		if (ports.all.count(e.ifindex))
			bridge[e.mac] = BridgeFdb{e.ifindex, e.dynamic};
	std::vector<XfdbRow> rows;
	for (const auto &[k, v] : dump_hash<kvx_xfdb_key, kvx_xfdb_val>(xfdb_fd)) {
		XfdbRow r;
		std::memcpy(r.mac.data(), k.mac, 6);
		r.ifindex = v.ifindex;
		r.seen_ns = v.seen_ns;
		r.fixed = (v.flags & KVX_XFDB_F_STATIC) != 0;
		rows.push_back(r);
	}

	const XfdbPlan plan = plan_xfdb_sync(rows, bridge, ports, fdb_synced_ns_, now_ns, kStaleNs);
	auto key = [](const MacAddr &mac) {
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac.data(), 6);
		return k;
	};
	for (const auto &[mac, port] : plan.refresh)
		bridge_fdb_use(nl, port, mac);
	for (const MacAddr &mac : plan.remove) {
		const kvx_xfdb_key k = key(mac);
		bpf_map_delete_elem(xfdb_fd, &k);
	}
	for (const XfdbWrite &w : plan.correct) {
		const kvx_xfdb_key k = key(w.mac);
		kvx_xfdb_val v{};
		// XDP saw the guest since the dump (it moved, or its tap came
		// back on another port): that sighting is newer than the
		// bridge's entry as read.  Not over a static entry, which no
		// sighting moves.
		if (!w.fixed && bpf_map_lookup_elem(xfdb_fd, &k, &v) == 0 &&
		    v.seen_ns != w.read_seen_ns)
			continue;
		v = {};
		v.ifindex = w.ifindex;
		v.flags = w.fixed ? KVX_XFDB_F_STATIC : 0;
		bpf_map_update_elem(xfdb_fd, &k, &v, BPF_ANY);
	}
	// BPF_NOEXIST: what XDP learnt meanwhile wins.
	for (const XfdbWrite &w : plan.add) {
		const kvx_xfdb_key k = key(w.mac);
		kvx_xfdb_val v{};
		v.ifindex = w.ifindex;
		v.flags = w.fixed ? KVX_XFDB_F_STATIC : 0;
		bpf_map_update_elem(xfdb_fd, &k, &v, BPF_NOEXIST);
	}
	fdb_synced_ns_ = now_ns;
}

std::vector<std::pair<int, uint32_t>> XdpPath::pinned_links(const DirFd &pins)
{
	std::vector<std::pair<int, uint32_t>> out;
	const std::string prefix = kLinkPinPrefix;
	for (const std::string &n : dir_entries(pins)) {
		if (n.compare(0, prefix.size(), prefix) != 0)
			continue;
		int ifindex = std::atoi(n.c_str() + prefix.size());
		uint32_t prog_id = 0;
		if (auto fd = get_pinned(pins, n)) {
			bpf_link_info info{};
			uint32_t len = sizeof(info);
			if (bpf_obj_get_info_by_fd(fd->get(), &info, &len) == 0 &&
			    info.xdp.ifindex != 0)
				prog_id = info.prog_id;
		}
		out.emplace_back(ifindex, prog_id);
	}
	return out;
}

void XdpPath::remove_guard(NlSocket &nl, int ifindex, bool created_clsact)
{
	const std::string name = ifname_of(ifindex);
	if (!name.empty() && guard_filter_on(ifindex))
		tc_remove_ingress(nl, name, created_clsact);
}

void XdpPath::remove_guards(NlSocket &nl, int xdev_fd, int bridge_ifindex)
{
	std::map<int, bool> where; // ifindex -> kvmxdp created its clsact
	if (xdev_fd >= 0)
		for (const auto &[k, v] : dump_hash<uint32_t, kvx_xdev_val>(xdev_fd))
			if (v.flags & KVX_XDEV_F_GUARD)
				where[static_cast<int>(k)] = (v.flags & KVX_XDEV_F_GUARD_CLSACT) !=
							     0;
	// And whatever port runs it unrecorded (a sync that failed midway, a
	// removal that failed before): its filter, never a clsact.
	if (bridge_ifindex > 0)
		for (const PortInfo &p : bridge_ports(nl, bridge_ifindex))
			where.emplace(p.ifindex, false);
	std::string failed;
	for (const auto &[ifindex, created] : where) {
		try {
			remove_guard(nl, ifindex, created);
		} catch (const Error &e) {
			failed += (failed.empty() ? "" : "; ") + std::string(e.what());
		}
	}
	if (!failed.empty())
		throw Error("removing the port guard: " + failed);
}

void XdpPath::remove_all(const DirFd &pins)
{
	for (const auto &[ifindex, prog_id] : pinned_links(pins)) {
		(void)prog_id;
		pins.unlink(link_pin(ifindex));
	}
	pins.unlink(KVX_MAP_XDP6PROGS);
	pins.unlink(xdp6progs_tmp_pin()); // a daemon that died mid-pin
}

} // namespace kvmxdp
