// SPDX-License-Identifier: GPL-2.0
#include "verbs/instance_verbs.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/rollback.hpp"
#include "base/sysctl.hpp"
#include "control/daemon.hpp"
#include "control/devices.hpp"
#include "control/gc.hpp"
#include "control/host_access.hpp"
#include "control/mapping_sync.hpp"
#include "control/xdp_path.hpp"
#include "kernel/abi_check.hpp"
#include "kernel/bpf_objects.hpp"
#include "kernel/features.hpp"
#include "kernel/maps.hpp"
#include "kernel/netlink.hpp"
#include "kernel/routes.hpp"
#include "model/config.hpp"
#include "model/mode.hpp"
#include "model/quota.hpp"
#include "model/timeouts.hpp"

namespace kvmxdp {

namespace {

// Test hook: KVMXDP_FAILPOINT=<name> makes attach fail at that step, so
// tests can prove the rollback leaves nothing behind.
void failpoint(const char *name)
{
	const char *fp = std::getenv("KVMXDP_FAILPOINT");
	if (fp && std::string(fp) == name)
		throw Error(std::string("injected failure at ") + name + " (KVMXDP_FAILPOINT)");
}

// A kernel object we create must match what the loaded program expects;
// pinned maps from another build are refused rather than misread.
void check_pinned_map(Skeleton &skel, const char *name, int fd, const std::string &path,
		      std::optional<uint32_t> want_max)
{
	MapInfo have = map_info(fd, path);
	bpf_map *m = skel.map(name);
	auto mismatch = [&](const std::string &what, uint64_t pinned, uint64_t want) {
		throw Error("pinned map " + path + " has " + what + " " + std::to_string(pinned) +
			    ", this kvmxdp expects " + std::to_string(want) +
			    ": run 'kvmxdp detach' first (drops conntrack state)");
	};
	if (have.type != bpf_map__type(m))
		mismatch("type", have.type, bpf_map__type(m));
	if (have.key_size != bpf_map__key_size(m))
		mismatch("key size", have.key_size, bpf_map__key_size(m));
	if (have.value_size != bpf_map__value_size(m))
		mismatch("value size", have.value_size, bpf_map__value_size(m));
	uint32_t want = want_max ? *want_max : bpf_map__max_entries(m);
	if (have.max_entries != want)
		throw Error("pinned map " + path + " has " + std::to_string(have.max_entries) +
			    " entries, requested " + std::to_string(want) +
			    ": resize needs 'kvmxdp detach' first (drops conntrack state)");
}

struct Validated {
	LinkInfo bridge;
	LinkInfo uplink;
	Ipv4Net subnet;
	PortRange nat;
};

Validated validate(NlSocket &nl, const Sysctl &sys, const AttachOptions &a,
		   const std::optional<Ipv4Net> &subnet, const std::optional<PortRange> &nat)
{
	Validated v;
	auto br = find_link(nl, a.bridge);
	if (!br)
		throw Error("bridge '" + a.bridge + "' does not exist");
	if (br->kind != "bridge")
		throw Error("'" + a.bridge + "' is not a bridge (kind '" +
			    (br->kind.empty() ? "none" : br->kind) + "')");
	v.bridge = *br;
	// Empty: --uplink auto without a default route yet (v.uplink.ifindex 0).
	if (!a.uplink.empty()) {
		auto up = find_link(nl, a.uplink);
		if (!up)
			throw Error("uplink '" + a.uplink + "' does not exist");
		if (up->ifindex == br->ifindex)
			throw Error("uplink '" + a.uplink + "' is the bridge itself");
		v.uplink = *up;
	}

	auto addrs = ipv4_addrs(nl, br->ifindex);
	if (subnet) {
		bool found = false;
		for (const auto &ad : addrs)
			if (network_of(ad.addr, ad.prefix) == *subnet)
				found = true;
		if (!found) {
			std::string list;
			for (const auto &ad : addrs)
				list += (list.empty() ? "" : ", ") + format_ipv4(ad.addr) + "/" +
					std::to_string(ad.prefix);
			throw Error("subnet " + subnet->str() + " is not a network of bridge '" +
				    a.bridge + "' (its IPv4 addresses: " +
				    (list.empty() ? "none" : list) + ")");
		}
		v.subnet = *subnet;
	} else {
		auto p = primary_ipv4(addrs);
		if (!p)
			throw Error("bridge '" + a.bridge +
				    "' has no IPv4 address: give it the guests' gateway address "
				    "first (or pass --subnet for one of its networks)");
		v.subnet = network_of(p->addr, p->prefix);
	}

	PortRange eph = parse_local_port_range(sys.read(kLocalPortRangeKey));
	v.nat = nat ? *nat : default_nat_range(eph);
	check_nat_range(v.nat, eph);
	return v;
}

// Removes our filter from a device and, if we created its clsact and no
// other filter is left on it, the clsact too.  A vanished device is fine.
void remove_tc(NlSocket &nl, const std::string &ifname, bool created)
{
	std::optional<LinkInfo> link;
	try {
		link = find_link(nl, ifname);
	} catch (const Error &) {
	}
	if (!link) {
		log_verbose("device " + ifname + " is gone: nothing to detach there");
		return;
	}
	tc_detach(link->ifindex, ifname);
	if (!created)
		return;
	int left = count_clsact_filters(nl, link->ifindex);
	if (left > 0) {
		log_warn("leaving the clsact qdisc on " + ifname + ": " + std::to_string(left) +
		     " filter(s) of other tools remain");
		return;
	}
	tc_hook_destroy(link->ifindex, ifname);
}

// Stops the daemon of a pid file, waiting until its lock is released.
void stop_daemon(const std::string &pid_file, const std::string &bridge)
{
	auto pid = PidLock::holder(pid_file);
	if (!pid)
		return;
	if (*pid > 0)
		::kill(*pid, SIGTERM);
	using namespace std::chrono;
	auto deadline = steady_clock::now() + seconds(10);
	while (PidLock::holder(pid_file)) {
		if (steady_clock::now() > deadline) {
			if (*pid > 0 && ::kill(*pid, SIGKILL) == 0)
				std::this_thread::sleep_for(milliseconds(200));
			if (PidLock::holder(pid_file))
				throw Error("daemon of bridge '" + bridge + "' (pid " +
					    std::to_string(*pid) + ") does not stop");
			break;
		}
		std::this_thread::sleep_for(milliseconds(50));
	}
}

} // namespace

int attach_and_run(const GlobalOptions &g, const AttachOptions &a_in, std::ostream &out)
{
	AttachOptions a = a_in;
	// `attach --bridge BR` alone (the systemd unit): the rest of the
	// instance comes from the config.
	check_ifname(a.bridge);
	if (a.uplink.empty()) {
		Config c = ConfigStore(g.config).load();
		const Instance *p = c.find(a.bridge);
		if (!p && c.detached.count(a.bridge))
			a.uplink = c.detached[a.bridge].uplink;
		else if (!p)
			throw Error("attach --bridge " + a.bridge +
				    " without --uplink: no instance of '" + a.bridge + "' in " +
				    g.config + " to take it from");
		if (p)
			a.uplink = p->uplink_auto ? kUplinkAuto : p->uplink;
		if (p && !a.subnet)
			a.subnet = p->subnet.str();
		if (p && !a.nat_ports)
			a.nat_ports = p->nat_ports.str();
		a.eif = a.eif || (p && p->eif);
	}
	// Syntax first: a typo is reported as such, with or without root.
	check_ifname(a.uplink);
	std::optional<Ipv4Net> subnet;
	if (a.subnet)
		subnet = parse_cidr(*a.subnet);
	std::optional<PortRange> nat;
	if (a.nat_ports)
		nat = parse_port_range(*a.nat_ports);
	if (a.timeouts)
		parse_timeouts(*a.timeouts);
	if (a.mode)
		parse_hook_mode(*a.mode);
	require_root("attach");
	// Before anything is created: a kernel without a helper the datapath
	// needs gets one line naming it, not a verifier log (features.hpp).
	require_kernel_features(probe_kernel_features());

	// A signal during attach must not leave half an attachment: it stays
	// pending and the daemon loop sees it right after the attach.
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

	Sysctl sys(g.sysctl_root);
	NlSocket nl;
	// --uplink auto: the default route's device now, else the device the
	// instance followed last, else none yet (the daemon waits for a
	// default route; guests' outside traffic is dropped meanwhile).
	const bool uplink_auto = a.uplink == kUplinkAuto;
	if (uplink_auto) {
		std::string previous;
		const Config saved = ConfigStore(g.config).load();
		if (const Instance *p = saved.find(a.bridge))
			previous = p->uplink;
		auto br = find_link(nl, a.bridge);
		a.uplink = auto_uplink_device(nl, br ? br->ifindex : 0, previous);
	}
	Validated v = validate(nl, sys, a, subnet, nat);
	// The datapath mode: explicit, else the instance's, else auto.
	HookMode mode = a.mode ? parse_hook_mode(*a.mode) : HookMode::Auto;
	if (!a.mode) {
		const Config saved = ConfigStore(g.config).load();
		if (const Instance *p = saved.find(a.bridge))
			mode = p->mode;
	}
	if (mode == HookMode::Xdp && !a.uplink.empty()) {
		// Asked for XDP where there can be none: one line, nothing made.
		DeviceFacts f = device_facts(a.uplink);
		if (f.wireless)
			throw Error("--mode xdp: uplink '" + a.uplink +
				    "' is wireless (802.11): no native XDP and not an XDP "
				    "redirect target; use --mode auto (TC on WiFi)");
	}

	// Absolute: the path keys the daemon's pid file and goes into the config.
	std::string bpffs = normalize_dir(g.bpffs);
	if (bpffs.empty() || bpffs[0] != '/') {
		char cwd[4096];
		if (!::getcwd(cwd, sizeof(cwd)))
			throw_errno("getcwd", "");
		bpffs = normalize_dir(std::string(cwd) + "/" + bpffs);
	}
	std::string pid_file = pid_file_for(g.run_dir, bpffs, a.bridge);
	auto pid_lock = PidLock::try_acquire(pid_file);
	if (!pid_lock) {
		auto pid = PidLock::holder(pid_file);
		throw Error("bridge '" + a.bridge + "' is already served by a kvmxdp daemon (pid " +
			    (pid ? std::to_string(*pid) : std::string("?")) +
			    "): stop it or run 'kvmxdp detach' first");
	}
	// A failed attach leaves no pid file behind (we hold its lock).
	Rollback pid_rb;
	pid_rb.add("pid file", [pid_file] { ::unlink(pid_file.c_str()); });

	if (ensure_bpffs(bpffs) && in_private_mount_ns())
		log_warn("mounted a bpffs at " + bpffs +
		     " inside a private mount namespace (ip netns exec?): the pins vanish "
		     "when this process exits; mount it outside or use nsenter --net");
	std::string pin_dir = pin_dir_for(bpffs, a.bridge);

	ConfigStore store(g.config);
	std::optional<FileLock> cfg_lock = store.lock();
	Config cfg = store.load();
	std::optional<Instance> prev;
	if (const Instance *p = cfg.find(a.bridge))
		prev = *p;
	// One instance per uplink: the uplink's filter (one kvmxdp handle) and
	// its NAT ports on the uplink address would be shared, and a second
	// attach would silently take the first bridge's replies.
	for (const Instance &o : cfg.instances) {
		if (uplink_auto && o.uplink_auto && o.bridge != a.bridge)
			throw Error("the kvmxdp instance of bridge '" + o.bridge +
				    "' already follows the default route (--uplink auto): one "
				    "bridge per uplink (detach '" + o.bridge + "' first)");
		if (o.bridge != a.bridge && !a.uplink.empty() && o.uplink == a.uplink)
			throw Error("uplink '" + a.uplink + "' is already used by the kvmxdp instance of bridge '" +
				    o.bridge + "': one bridge per uplink (detach '" + o.bridge + "' first)");
	}
	// Mappings a detach kept come back (the uplink is the new one's).
	std::vector<StaticMapping> mappings = prev ? prev->mappings : std::vector<StaticMapping>{};
	if (!prev && cfg.detached.count(a.bridge))
		mappings = cfg.detached[a.bridge].mappings;
	// One bridge, one datapath: a second bpffs would mean a second set of
	// maps fighting over the same TC hooks.
	if (prev && prev->bpffs != bpffs)
		throw Error("bridge '" + a.bridge + "' is attached with --bpffs " + prev->bpffs +
			    " (this is " + bpffs + "): use that, or detach first");

	Rollback rb;
	Skeleton skel;

	// Resume: reuse pinned maps (conntrack and bindings survive a restart
	// or an upgrade) after checking they are of this ABI.
	// A map of a newer kvmxdp that is not pinned yet is created and pinned
	// like on a first attach; the core tables must all be there.
	const std::vector<std::string> names = skel.map_names();
	std::vector<std::string> pinned, to_pin;
	for (const auto &name : names)
		(::access(pin_path(pin_dir, name).c_str(), F_OK) == 0 ? pinned : to_pin)
			.push_back(name);
	bool resume = !pinned.empty();
	if (resume) {
		for (const char *core : {KVX_MAP_CFG, KVX_MAP_CT, KVX_MAP_BIND})
			if (std::find(pinned.begin(), pinned.end(), core) == pinned.end())
				throw Error("pin directory " + pin_dir + " lacks " + core +
					    ": run 'kvmxdp detach --bridge " + a.bridge +
					    "' first");
	}
	uint32_t ct_size = a.ct_size.value_or(prev ? prev->ct_size : KVX_CT_DEFAULT_SIZE);
	uint32_t bind_size = a.bind_size.value_or(prev ? prev->bind_size : KVX_BIND_DEFAULT_SIZE);
	const uint32_t gflows_want = gflows_size(htonl(v.subnet.mask()));
	uint32_t resumed_uplink_addr = 0;      // network order
	std::vector<std::string> replace_pins; // pinned maps replaced by new ones
	if (resume) {
		for (const auto &name : pinned) {
			std::string path = pin_path(pin_dir, name);
			Fd fd = open_pinned(path);
			std::optional<uint32_t> want;
			if (name == KVX_MAP_CT) {
				// Without --ct-size, adopt the pinned size.
				if (!a.ct_size)
					ct_size = map_info(fd.get(), path).max_entries;
				want = ct_size;
			} else if (name == KVX_MAP_BIND) {
				if (!a.bind_size)
					bind_size = map_info(fd.get(), path).max_entries;
				want = bind_size;
			}
			if (name == KVX_MAP_STATS) {
				// A newer kvmxdp with more verdict reasons: the counters
				// restart in a fresh map, the tables are kept.
				MapInfo have = map_info(fd.get(), path);
				bpf_map *sm = skel.map(KVX_MAP_STATS);
				if (have.type == bpf_map__type(sm) &&
				    have.key_size == bpf_map__key_size(sm) &&
				    have.value_size == bpf_map__value_size(sm) &&
				    have.max_entries != bpf_map__max_entries(sm)) {
					log_note(path + " has " + std::to_string(have.max_entries) +
						 " counters, this kvmxdp " +
						 std::to_string(bpf_map__max_entries(sm)) +
						 ": counters restart from zero (conntrack kept)");
					to_pin.push_back(name);
					replace_pins.push_back(path);
					continue;
				}
			}
			if (name == KVX_MAP_CFG) {
				// The tables of every ABI version since
				// KVX_ABI_TABLES_SINCE have this version's layout
				// (abi.h): reused; older or newer pins are refused.
				// kvx_cfg is rewritten below anyway: one of another
				// size (an older kvmxdp's) is replaced.
				MapInfo have = map_info(fd.get(), path);
				bpf_map *cm = skel.map(KVX_MAP_CFG);
				std::vector<unsigned char> raw(
					std::max<size_t>(have.value_size, sizeof(kvx_cfg)));
				__u32 zero = 0;
				check_libbpf(bpf_map_lookup_elem(fd.get(), &zero, raw.data()), "read",
					     path);
				kvx_cfg old{};
				std::memcpy(&old, raw.data(),
					    std::min<size_t>(have.value_size, sizeof(old)));
				if (old.abi_version < KVX_ABI_TABLES_SINCE ||
				    old.abi_version > KVX_ABI_VERSION)
					throw Error("pinned " + path + " is of ABI version " +
						    std::to_string(old.abi_version) +
						    ", this kvmxdp uses " +
						    std::to_string(KVX_ABI_VERSION) + " (tables of " +
						    std::to_string(KVX_ABI_TABLES_SINCE) + ".." +
						    std::to_string(KVX_ABI_VERSION) +
						    "): run 'kvmxdp detach' first (drops conntrack state)");
				resumed_uplink_addr = old.uplink_addr;
				if (have.type == bpf_map__type(cm) &&
				    have.key_size == bpf_map__key_size(cm) &&
				    have.max_entries == bpf_map__max_entries(cm) &&
				    have.value_size != bpf_map__value_size(cm)) {
					log_note(path + " is of ABI version " +
						 std::to_string(old.abi_version) + " (" +
						 std::to_string(have.value_size) +
						 " bytes): replaced, conntrack kept");
					to_pin.push_back(name);
					replace_pins.push_back(path);
					continue;
				}
			}
			if (name == KVX_MAP_GFLOWS) {
				// Counters sized to the subnet: another size starts a
				// fresh map (recounted below).
				if (map_info(fd.get(), path).max_entries != gflows_want) {
					to_pin.push_back(name);
					replace_pins.push_back(path);
					continue;
				}
				want = gflows_want;
			}
			check_pinned_map(skel, name.c_str(), fd.get(), path, want);
			// libbpf dups the fd: ours may close.
			skel.reuse_map(name.c_str(), fd.get());
		}
		log_verbose("resuming with the maps pinned in " + pin_dir);
	}
	for (const auto &name : to_pin) {
		if (name == KVX_MAP_CT)
			skel.set_max_entries(KVX_MAP_CT, ct_size);
		else if (name == KVX_MAP_BIND)
			skel.set_max_entries(KVX_MAP_BIND, bind_size);
		else if (name == KVX_MAP_GFLOWS)
			skel.set_max_entries(KVX_MAP_GFLOWS, gflows_want);
	}
	skel.load();

	// Runtime configuration, read by every packet.  The uplink address may
	// be missing (WiFi not associated yet): 0 until the daemon sees one.
	kvx_cfg kc{};
	kc.abi_version = KVX_ABI_VERSION;
	kc.flags = a.eif ? KVX_CFG_F_EIF : 0;
	auto up_addr = primary_ipv4(ipv4_addrs(nl, v.uplink.ifindex));
	kc.uplink_addr = up_addr ? htonl(up_addr->addr) : 0;
	kc.uplink_ifindex = static_cast<__u32>(v.uplink.ifindex);
	kc.bridge_ifindex = static_cast<__u32>(v.bridge.ifindex);
	kc.subnet_addr = htonl(v.subnet.addr);
	kc.subnet_mask = htonl(v.subnet.mask());
	kc.nat_port_lo = v.nat.lo;
	kc.nat_port_hi = v.nat.hi;
	kc.timeouts = default_timeouts();
	kc.clamp_mss = a.clamp_mss ? *a.clamp_mss : (prev ? prev->clamp_mss : 0);
	// Flow quota: explicit, else the instance's, else a share of the table
	// (which follows --ct-size).  Timeouts likewise (attach --timeouts).
	std::optional<uint32_t> flow_quota = a.flow_quota ? a.flow_quota
						: prev ? prev->flow_quota : std::nullopt;
	kc.flow_quota = flow_quota ? *flow_quota : default_flow_quota(ct_size);
	std::string timeouts = a.timeouts ? *a.timeouts : prev ? prev->timeouts : "";
	kc.timeouts = timeouts.empty() ? default_timeouts() : parse_timeouts(timeouts);
	std::memcpy(kc.uplink_mac, v.uplink.mac.data(), sizeof(kc.uplink_mac));
	write_cfg(skel.map_fd(KVX_MAP_CFG), kc);
	// Resumed flows (or another subnet): the quota counts them from now on.
	gflows_recount(skel.map_fd(KVX_MAP_CT), skel.map_fd(KVX_MAP_GFLOWS), kc.subnet_mask);
	// The address changed while no daemon was watching: what the daemon
	// would have flushed then goes now.
	if (resumed_uplink_addr && resumed_uplink_addr != kc.uplink_addr)
		flush_ext_addr(skel.map_fd(KVX_MAP_CT), skel.map_fd(KVX_MAP_BIND),
			       resumed_uplink_addr);

	// Static mappings of the config, as `map add` made them (a first
	// attach after a reboot, a resume, a re-created bridge).
	if (!mappings.empty()) {
		std::optional<NetId> cur = network_of_link(nl, v.uplink.ifindex);
		MapFds fds{skel.map_fd(KVX_MAP_BIND), skel.map_fd(KVX_MAP_EXTADDR),
			   skel.map_fd(KVX_MAP_CT)};
		if (!a.uplink.empty())
			for (const AddedAddress &ad : sync_added_addresses(mappings, a.uplink, cur))
				rb.add("address " + format_ipv4(ad.addr) + " on " + a.uplink,
				       [ad, uplink = a.uplink] { remove_uplink_address(uplink, ad); });
		auto r = apply_mappings(fds, mappings, ntohl(kc.uplink_addr), cur);
		for (const auto &e : r.errors)
			log_warn(e);
		size_t suspended = 0;
		for (const auto &sm : mappings)
			suspended += !mapping_active(sm, cur);
		log_verbose("restored " + std::to_string(mappings.size()) + " mapping(s), " +
			    std::to_string(suspended) + " suspended (another network)");
	}

	// Pins: bpf_obj_pin on our own paths, not libbpf's pin_root_path,
	// which rewrites every '.' of the whole path (PITFALLS 11).
	if (!resume) {
		mkdir_p(pin_dir, 0700);
		rb.add("pin directory", [pin_dir, bpffs] {
			::rmdir(pin_dir.c_str());
			::rmdir((bpffs + "/kvmxdp").c_str()); // only if empty
		});
	}
	for (const auto &name : to_pin) {
		std::string path = pin_path(pin_dir, name);
		if (std::find(replace_pins.begin(), replace_pins.end(), path) != replace_pins.end())
			::unlink(path.c_str());
		check_libbpf(bpf_obj_pin(skel.map_fd(name.c_str()), path.c_str()), "pin map", path);
		rb.add("pin " + path, [path] { ::unlink(path.c_str()); });
	}

	failpoint("pinned");

	// An uplink changed on resume: our filter on the old one goes.
	if (prev && prev->uplink != a.uplink)
		remove_tc(nl, prev->uplink, prev->clsact_created_uplink);

	bool created_br = false, created_up = false;
	struct Dev {
		const LinkInfo &link;
		const char *prog;
		bool &created;
	};
	for (Dev d : {Dev{v.bridge, "kvx_br_ingress", created_br},
		      Dev{v.uplink, "kvx_up_ingress", created_up}}) {
		int ifindex = d.link.ifindex;
		std::string ifname = d.link.name;
		if (ifindex == 0)
			continue; // --uplink auto, no default route yet
		d.created = tc_hook_create(ifindex, ifname);
		if (d.created)
			rb.add("clsact on " + ifname,
			       [ifindex, ifname] { tc_hook_destroy(ifindex, ifname); });
		bool had_filter = tc_query(ifindex).has_value();
		try {
			tc_attach(ifindex, ifname, skel.prog_fd(d.prog));
		} catch (const Error &e) {
			// One kind of classifier per priority in a clsact chain: the
			// usual EINVAL is another tool's filter at ours.
			if (e.err() != EINVAL || had_filter)
				throw;
			throw Error(std::string(e.what()) + " (is another tool's filter at priority " +
				    std::to_string(kTcPriority) + " on " + ifname +
				    " ingress? kvmxdp's filter needs that priority: 'tc filter show dev " +
				    ifname + " ingress')");
		}
		// A filter that was there before (resume) is replaced in place;
		// removing it on rollback would cut a working datapath.
		if (!had_filter && !d.created)
			rb.add("filter on " + ifname,
			       [ifindex, ifname] { tc_detach(ifindex, ifname); });
		failpoint(d.prog);
	}

	// The XDP fast path in front of the TC programs, where the mode and
	// the devices allow it (xdp_path.hpp); a device it cannot take stays
	// TC with the reason, which status shows.
	XdpPath xdp(mode, skel, pin_dir);
	if (!resume)
		rb.add("XDP links", [pin_dir] { XdpPath::remove_all(pin_dir); });
	for (const XdpDevice &d : xdp.sync(nl, v.bridge.ifindex, v.uplink.ifindex))
		log_verbose(d.describe());
	failpoint("xdp");

	// The host's own sockets reaching mapped addresses; without them the
	// datapath still serves the guests and the LAN.
	std::string host_off = host_hooks_attach(skel, pin_dir, g.run_dir, rb);
	if (!host_off.empty())
		log_warn("the host itself cannot reach mapped addresses: " + host_off);
	failpoint("host_hooks");

	Instance inst;
	inst.bridge = a.bridge;
	inst.uplink = a.uplink;
	inst.uplink_auto = uplink_auto;
	inst.subnet = v.subnet;
	inst.nat_ports = v.nat;
	inst.eif = a.eif;
	inst.ct_size = ct_size;
	inst.bind_size = bind_size;
	inst.bpffs = bpffs;
	inst.pin_dir = pin_dir;
	inst.clsact_created_bridge = created_br || (prev && prev->clsact_created_bridge);
	inst.mappings = mappings;
	inst.clamp_mss = kc.clamp_mss;
	inst.mode = mode;
	inst.flow_quota = flow_quota;
	inst.timeouts = timeouts;
	inst.clsact_created_uplink =
		created_up || (prev && prev->uplink == a.uplink && prev->clsact_created_uplink);

	// Sysctls.  On resume the values saved by the first attach are kept:
	// the current ones are our own.
	std::string fwd = forwarding_key(a.bridge);
	if (auto cur = sys.try_read(fwd)) {
		inst.saved_forwarding = prev ? prev->saved_forwarding : cur;
		if (*cur != "1") {
			sys.write(fwd, "1");
			rb.add(fwd, [sys, fwd, old = *cur] { sys.write(fwd, old); });
		}
	} else {
		log_warn("cannot read " + sys.root() + "/" + fwd +
		     ": forwarding on the bridge is needed for the route lookup");
	}
	if (auto cur = sys.try_read(kReservedPortsKey)) {
		inst.saved_reserved_ports = prev ? prev->saved_reserved_ports : cur;
		std::string base = *cur;
		if (prev && prev->saved_reserved_ports && !(prev->nat_ports == v.nat))
			base = reserved_ports_remove(base, *prev->saved_reserved_ports,
						     prev->nat_ports);
		std::string next = reserved_ports_add(base, v.nat);
		if (next != *cur) {
			sys.write(kReservedPortsKey, next);
			rb.add(kReservedPortsKey,
			       [sys, old = *cur] { sys.write(kReservedPortsKey, old); });
		}
	}

	failpoint("sysctls");
	cfg.upsert(inst);
	cfg.detached.erase(a.bridge);
	store.save(cfg);
	rb.commit();
	pid_rb.commit();
	// The daemon runs for days: other kvmxdp commands must get the lock.
	cfg_lock.reset();

	if (uplink_auto)
		out << "kvmxdp: attached bridge=" << a.bridge << " uplink=auto device="
		    << (a.uplink.empty() ? "none (waiting for a default route)" : a.uplink)
		    << std::endl;
	else
		out << "kvmxdp: attached bridge=" << a.bridge << " uplink=" << a.uplink
		    << std::endl;

	Daemon daemon(inst, skel, v.uplink.ifindex, g.config);
	daemon.set_sysctl_root(g.sysctl_root);
	daemon.set_xdp(&xdp);
	return daemon.run();
}

void detach(const GlobalOptions &g, const std::string &bridge, std::ostream &out)
{
	check_ifname(bridge);
	require_root("detach");
	ConfigStore store(g.config);
	FileLock cfg_lock = store.lock();
	Config cfg = store.load();
	const Instance *found = cfg.find(bridge);
	if (!found)
		throw not_attached(bridge, g.config);
	Instance inst = *found;

	std::string pid_file = pid_file_for(g.run_dir, inst.bpffs, bridge);
	stop_daemon(pid_file, bridge);
	// Keep the daemon slot taken while we take things down.
	auto pid_lock = PidLock::try_acquire(pid_file);

	// Every step runs even if an earlier one failed; the instance stays in
	// the config until all succeeded, so detach can simply be repeated.
	std::vector<std::string> errors;
	auto step = [&](const std::function<void()> &f) {
		try {
			f();
		} catch (const std::exception &e) {
			errors.push_back(e.what());
		}
	};
	NlSocket nl;
	step([&] { remove_tc(nl, inst.bridge, inst.clsact_created_bridge); });
	step([&] { remove_tc(nl, inst.uplink, inst.clsact_created_uplink); });
	step([&] {
		// Every pin in the directory: maps of older or newer versions too.
		if (DIR *dir = ::opendir(inst.pin_dir.c_str())) {
			std::vector<std::string> pins;
			while (dirent *de = ::readdir(dir))
				if (std::string(de->d_name) != "." &&
				    std::string(de->d_name) != "..")
					pins.push_back(pin_path(inst.pin_dir, de->d_name));
			::closedir(dir);
			for (const auto &path : pins)
				if (::unlink(path.c_str()) < 0 && errno != ENOENT)
					throw_errno("unpin", path);
		}
		if (::rmdir(inst.pin_dir.c_str()) < 0 && errno != ENOENT)
			throw_errno("remove", inst.pin_dir);
		// <bpffs>/kvmxdp is shared by instances: only if empty.
		::rmdir((inst.bpffs + "/kvmxdp").c_str());
	});
	step([&] { remove_added_addresses(inst); });
	Sysctl sys(g.sysctl_root);
	step([&] {
		std::string fwd = forwarding_key(bridge);
		if (inst.saved_forwarding && sys.exists(fwd))
			sys.write(fwd, *inst.saved_forwarding);
	});
	step([&] {
		if (!inst.saved_reserved_ports)
			return;
		auto cur = sys.try_read(kReservedPortsKey);
		if (!cur)
			return;
		std::string next =
			reserved_ports_remove(*cur, *inst.saved_reserved_ports, inst.nat_ports);
		if (next != *cur)
			sys.write(kReservedPortsKey, next);
	});
	if (!errors.empty()) {
		std::string msg = "detach of bridge '" + bridge + "' incomplete:";
		for (const auto &e : errors)
			msg += " " + e + ";";
		throw Error(msg + " fix and run detach again");
	}
	cfg.remove(bridge);
	if (!inst.mappings.empty())
		cfg.detached[bridge] =
			Detached{inst.uplink_auto ? kUplinkAuto : inst.uplink, inst.mappings};
	store.save(cfg);
	// Still holding its lock, so no daemon can be between open and flock.
	if (pid_lock)
		::unlink(pid_file.c_str());
	out << "kvmxdp: detached bridge=" << bridge << std::endl;
}

} // namespace kvmxdp
