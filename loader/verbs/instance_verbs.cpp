// SPDX-License-Identifier: GPL-2.0
#include "verbs/instance_verbs.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <vector>

#include "base/caps.hpp"
#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/sysctl.hpp"
#include "control/attach.hpp"
#include "control/daemon.hpp"
#include "control/mapping_sync.hpp"
#include "control/relay.hpp"
#include "control/resume.hpp"
#include "control/xdp_path.hpp"
#include "kernel/maps.hpp"
#include "kernel/netlink.hpp"
#include "kernel/routes.hpp"
#include "kernel/skel.hpp"
#include "kernel/tc.hpp"
#include "model/config.hpp"

namespace kvmxdp {

namespace {

// Stops the daemon of an instance: SIGTERM, then SIGKILL after 10 s,
// through pidfds of the processes that hold its locks (never by a pid
// read from a file: that process may be long gone and the number reused).
void stop_daemon(const std::string &pid_file, const DirFd *pin_dir, const std::string &bridge)
{
	using namespace std::chrono;
	for (const LockHolder &d : instance_daemons(pid_file, pin_dir)) {
		if (!d.signal(SIGTERM) || d.wait_exit(seconds(10)))
			continue;
		log_warn("daemon of bridge '" + bridge + "' (pid " + std::to_string(d.pid()) +
			 ") did not stop within 10 s: SIGKILL");
		if (d.signal(SIGKILL) && !d.wait_exit(seconds(5)))
			throw Error("daemon of bridge '" + bridge + "' (pid " +
				    std::to_string(d.pid()) + ") does not stop");
	}
	// Held by a process we cannot see (another pid namespace).
	if (PidLock::holder(pid_file))
		throw Error("daemon of bridge '" + bridge + "' still holds " + pid_file +
			    " (held by " + describe_lock_holders(pid_file) + ")");
}

} // namespace

int attach_and_run(const GlobalOptions &g, const AttachOptions &a, std::ostream &out)
{
	// An endpoint that cannot listen fails the attach before anything is
	// attached (the daemon listens for real once it runs).
	if (a.metrics && *a.metrics != "off")
		check_metrics_bind(*a.metrics);
	AttachedInstance at = attach_instance(g, a);
	const Instance &inst = at.inst;
	if (inst.uplink_auto)
		out << "kvmxdp: attached bridge=" << inst.bridge << " uplink=auto device="
		    << (inst.uplink.empty() ? "none (waiting for a default route)" : inst.uplink)
		    << std::endl;
	else
		out << "kvmxdp: attached bridge=" << inst.bridge << " uplink=" << inst.uplink
		    << std::endl;

	Daemon daemon(inst, *at.tc, at.uplink_ifindex, g.config);
	daemon.set_sysctl_root(g.sysctl_root);
	daemon.set_libvirt_root(g.libvirt_root);
	{
		const std::string pid = pid_file_for(g.run_dir, inst.bpffs, inst.bridge);
		daemon.set_state_prefix(pid.substr(0, pid.size() - 4));
	}
	daemon.set_xdp(at.xdp.get());
	return daemon.run();
}

void reload(const GlobalOptions &g, const std::string &bridge, std::ostream &out)
{
	using namespace std::chrono;
	if (!bridge.empty())
		check_ifname(bridge);
	Config cfg = ConfigStore(g.config).load();
	const Instance &inst = select_instance(cfg, bridge, g.config);
	const std::string pid_file = pid_file_for(g.run_dir, inst.bpffs, inst.bridge);
	const std::optional<PinDir> pins = open_pin_dir(inst.bpffs, inst.bridge, false);
	const auto daemons = instance_daemons(pid_file, pins ? &pins->dir : nullptr);
	if (daemons.empty())
		throw Error("no daemon runs for bridge '" + inst.bridge + "' (nothing holds " +
			    pid_file + "): start it (kvmxdp attach)");
	// The daemon's reload mark (control/daemon.hpp ReloadMark): done
	// past what was started when it was read, by the daemon signalled.
	// An older daemon's bare count: any change of it.
	const std::string done = pid_file.substr(0, pid_file.size() - 4) + ".reloads";
	const std::string before = read_file(done).value_or("");
	const LockHolder &d = daemons.front();
	const std::optional<ReloadMark> seen = parse_reload_mark(before);
	const uint64_t need =
		(seen && seen->pid == static_cast<long>(d.pid()) ? seen->started : 0) + 1;
	auto finished = [&] {
		const std::string now = read_file(done).value_or("");
		const auto m = parse_reload_mark(now);
		if (!m)
			return !now.empty() && now != before;
		return m->pid == static_cast<long>(d.pid()) && m->done >= need;
	};
	if (!d.signal(SIGHUP))
		throw Error("daemon of bridge '" + inst.bridge + "' (pid " +
			    std::to_string(d.pid()) + ") is gone");
	const auto deadline = steady_clock::now() + seconds(g.lock_wait) + seconds(30);
	while (!finished()) {
		if (d.wait_exit(milliseconds(50)))
			throw Error("daemon of bridge '" + inst.bridge + "' (pid " +
				    std::to_string(d.pid()) + ") exited during the reload");
		if (steady_clock::now() > deadline)
			throw Error("daemon of bridge '" + inst.bridge + "' (pid " +
				    std::to_string(d.pid()) + ") did not finish its reload");
	}
	out << "kvmxdp: reloaded bridge=" << inst.bridge << std::endl;
}

void detach(const GlobalOptions &g, const std::string &bridge, std::ostream &out, bool keep)
{
	check_ifname(bridge);
	require_caps("detach", {CAP_BPF, CAP_NET_ADMIN});
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	const Instance *found = cfg->find(bridge);
	if (!found)
		throw not_attached(bridge, g.config);
	Instance inst = *found;

	// The pin directory first, every level checked and held: one another
	// user could change is refused before anyone is signalled, and the
	// daemon is found by its lock, and its pins removed, through the
	// same fds.
	const std::optional<PinDir> pins = open_pin_dir(inst.bpffs, bridge, false);
	std::string pid_file = pid_file_for(g.run_dir, inst.bpffs, bridge);
	stop_daemon(pid_file, pins ? &pins->dir : nullptr, bridge);
	// Keep the daemon slot taken while we take things down.  A pid file
	// kvmxdp cannot use (another user's, a link: only where the run
	// directory lets others create files) must not keep the datapath on.
	std::optional<PidLock> pid_lock;
	try {
		pid_lock = PidLock::try_acquire(pid_file);
	} catch (const Error &e) {
		log_warn(std::string(e.what()) + " (detaching without it)");
	}

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
	step([&] { tc_remove_ingress(nl, inst.bridge, inst.clsact_created_bridge); });
	step([&] { tc_remove_ingress(nl, inst.uplink, inst.clsact_created_uplink); });
	step([&] {
		// The port guards, where kvx_xdev says they are (the pins go
		// next).
		std::optional<Fd> xdev;
		if (pins)
			xdev = find_pinned(pins->dir, KVX_MAP_XDEV, pinned_layout(KVX_MAP_XDEV));
		// The bridge's ports too, where it still is.
		std::optional<LinkInfo> br;
		try {
			br = find_link(nl, bridge);
		} catch (const Error &) {
		}
		XdpPath::remove_guards(nl, xdev ? xdev->get() : -1, br ? br->ifindex : 0);
	});
	step([&] {
		// Every pin in the directory: maps of older or newer versions
		// too.  Unlinked through the checked directory's fd: a pin path
		// another user could change is refused, never walked.
		if (pins)
			remove_pin_dir(*pins, true);
	});
	step([&] { remove_added_addresses(inst); });
	step([&] {
		// Relay's routes to the guests (the daemon's, stopped above).
		if (const std::optional<LinkInfo> br = find_link(nl, bridge))
			remove_relay_routes(nl, br->ifindex);
	});
	Sysctl sys(g.sysctl_root);
	step([&] {
		std::string fwd = forwarding_key(bridge);
		if (inst.saved_forwarding && sys.exists(fwd))
			sys.write(fwd, *inst.saved_forwarding);
	});
	step([&] {
		std::string fwd = forwarding6_key(bridge);
		if (inst.saved_forwarding6 && sys.exists(fwd))
			sys.write(fwd, *inst.saved_forwarding6);
	});
	step([&] {
		if (!inst.saved_accept_ra || inst.accept_ra_dev.empty())
			return;
		const std::string key = accept_ra_key(inst.accept_ra_dev);
		if (auto v = accept_ra_release(*cfg, bridge, inst.accept_ra_dev,
					       *inst.saved_accept_ra, sys.try_read(key)))
			sys.write(key, *v);
	});
	step([&] {
		if (!inst.saved_reserved_ports)
			return;
		auto cur = sys.try_read(kReservedPortsKey);
		if (!cur)
			return;
		std::string next = *cur;
		for (const PortRange &r : inst.nat_pool().parts())
			next = reserved_ports_remove(next, *inst.saved_reserved_ports, r);
		if (next != *cur)
			sys.write(kReservedPortsKey, next);
	});
	if (!errors.empty()) {
		std::string msg = "detach of bridge '" + bridge + "' incomplete:";
		for (const auto &e : errors)
			msg += " " + e + ";";
		throw Error(msg + " fix and run detach again");
	}
	cfg->remove(bridge);
	if (!inst.mappings.empty() || keep)
		cfg->detached[bridge] =
			Detached{inst.uplink_auto ? kUplinkAuto : inst.uplink, inst.mappings};
	cfg.save();
	// Still holding its lock, so no daemon can be between open and flock.
	if (pid_lock)
		::unlink(pid_file.c_str());
	out << "kvmxdp: detached bridge=" << bridge << std::endl;
}

} // namespace kvmxdp
