// SPDX-License-Identifier: GPL-2.0
// The control plane of one instance.  The datapath never depends on it:
// when it is not running, translation goes on; only the uplink address is
// not followed and expired flows are not collected.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "control/dad.hpp"
#include "control/frag_park.hpp"
#include "control/mapping_sync.hpp"
#include "control/metrics.hpp"
#include "control/ra_sender.hpp"
#include "control/ra_watch.hpp"
#include "control/relay.hpp"
#include "kvmxdp/abi.h"
#include "model/config.hpp"
#include "model/leases.hpp"
#include "model/mapping.hpp"

namespace kvmxdp {

class ArpProber;
class SkelObject;
class NlSocket;
struct LinkInfo;
class XdpPath;

// The running daemon of an instance: whoever holds the lock of its pid
// file (<run-dir>/<bridge>-<hash>.pid) or of its pin directory, verified
// (base/fs.hpp: LockHolder).  The pin directory lives with the instance's
// maps: when /run was cleaned or the pid file deleted under a running
// daemon, a second attach still sees it and detach still stops it.  The
// pin directory as held open by open_pin_dir (checked; null: there is
// none).
std::vector<LockHolder> instance_daemons(const std::string &pid_file, const DirFd *pin_dir);

// PREFIX.reloads, the daemon's reloads: "PID STARTED DONE".  STARTED
// counts the reloads begun (written before the config is read), DONE
// those finished; a new daemon writes "PID 0 0" before READY=1.  `kvmxdp
// reload` reads it, signals, and waits for DONE past the STARTED it read,
// of the same PID: a reload begun after its read reads the config as the
// caller left it, one begun before does not count, a restart (another
// PID) is never mistaken for an old count (RuntimeDirectoryPreserve keeps
// the file).  Two callers close together may share one reload.
struct ReloadMark {
	long pid = 0;
	uint64_t started = 0, done = 0;
	std::string str() const;
};
// nullopt: not that form (an older daemon's "COUNT", no file).
std::optional<ReloadMark> parse_reload_mark(const std::string &text);

class Daemon {
public:
	// skel must be loaded and outlive the daemon: it owns the program
	// that is re-attached when the uplink reappears.
	// config_path: where the instance is recorded (a clsact the daemon
	// creates on a re-created uplink is recorded there as ours).
	Daemon(const Instance &inst, SkelObject &skel, int uplink_ifindex, std::string config_path);
	~Daemon();
	// Until SIGINT/SIGTERM (blocked by the caller or here); returns 0.
	// Under systemd (sd_notify(3)): READY=1 when it starts, WATCHDOG=1 at
	// half of $WATCHDOG_USEC, STOPPING=1 at the end; SIGHUP reloads.
	int run();

	static constexpr int kGcIntervalMs = 5000;
	// The uplink is re-read at least this often even without events.
	static constexpr int kPollMs = 1000;
	// A bridge FDB change that no frame made is followed into kvx_xfdb
	// within this (a burst of them makes one sync).
	static constexpr int kFdbSyncMs = 200;
	// Static mappings are re-checked against the maps at least this often.
	static constexpr int kMappingHealMs = 30000;
	// The DHCP lease file is re-read when it changes and at least this
	// often (leases end without a write).
	static constexpr int kLeasesRereadMs = 30000;
	// A mapped address coming back with its network is probed first
	// (RFC 5227): nobody answers, it resumes; another host answers, it
	// stays suspended and is probed again after kProbeRetryMinMs,
	// doubling up to kProbeRetryMaxMs.  A phone that took the address
	// while we were away usually leaves within seconds (a DHCP lease
	// released, a roam); one that keeps it costs three broadcasts a
	// minute, RFC 5227's RATE_LIMIT_INTERVAL.  Leaving the network and
	// coming back probes afresh.
	static constexpr int kProbeRetryMinMs = 5000;
	static constexpr int kProbeRetryMaxMs = 60000;
	// Where the bridge's forwarding sysctl is set again after the bridge
	// was re-created (a libvirt network restart).
	void set_sysctl_root(std::string root) { sysctl_root_ = std::move(root); }
	// Where the daemon leaves state for `status` (the pid file's path
	// without ".pid"): PREFIX.ra_foreign names another router on the
	// bridge while relay's RAs are silent for it.
	void set_state_prefix(std::string prefix) { state_prefix_ = std::move(prefix); }
	// The XDP fast path: its devices follow the bridge's ports (libvirt
	// adds vnetN later) and the uplink; the bridge's forwarding database
	// is refreshed for the guests XDP redirects.  Outlives the daemon.
	void set_xdp(XdpPath *xdp) { xdp_ = xdp; }
	// Where libvirt's files are (GlobalOptions::libvirt_root): the metrics
	// name guests by their VM; a pending metadata forward's force='yes'
	// is its running domain's or network's.  Before run().
	void set_libvirt_root(std::string root)
	{
		libvirt_root_ = root;
		if (metrics_src_)
			metrics_src_->libvirt_root = std::move(root);
	}

private:
	// Runs f; a failure of any kind is logged through steps_ and retried
	// at the next tick, the other steps run regardless.
	template <typename F>
	void step(const char *name, F &&f);
	// The steps that follow the network and the config (each tick and
	// on netlink events).
	void refresh(NlSocket &nl, bool heal);
	void refresh_uplink(NlSocket &nl);
	// The uplink's IPv6 (control/uplink6.hpp): logged when it changes;
	// with NAT66 on, its address written to kvx_cfg6 and the flows of
	// the old one flushed.
	void refresh_uplink6(NlSocket &nl);
	// Relay: the prefix relay_check gives now written to kvx_cfg6 when it
	// changed (cfg updated), kvx_nd kept to it and the host's addresses.
	void refresh_relay(kvx_cfg6 &cfg, const std::optional<Ipv6Net> &prefix,
			   const std::vector<Ipv6Addr> &host_addrs);
	// Relay: the prefix to follow (model/ra.hpp follow_relay_prefix): the
	// kernel's choice, unless only a router the host does not route
	// through announced it (a LAN host's forged RA).
	std::optional<Ipv6Net> follow_relay(const LinkInfo &uplink, const kvx_cfg6 &cfg,
					    const std::vector<Ipv6IfAddr> &up,
					    const std::vector<Ipv6Route> &routes,
					    const std::optional<Ipv6Net> &kernel_choice);
	// IPv6 on: the uplink's router-advertised default route, once seen,
	// asked for again when it is gone (a Router Solicitation, RFC 4861
	// 6.3.7: 3 of them 4 s apart, then one a minute while it stays
	// gone): forwarding on for any device purges it on a host whose
	// accept_ra is not 2, and a solicitation or an RA may be lost.
	void keep_default_route6(const LinkInfo &uplink, const std::vector<Ipv6Route> &routes);
	// Relay: kvx_nd's idle guest entries forgotten and the bridge's /128
	// routes to the guests kept to kvx_nd (control/relay.hpp), for the
	// host's own packets to them; another mode: kvmxdp's routes removed
	// (once: an attach that switched mode).
	void sync_relay_routes(NlSocket &nl);
	void sync_nat66_owners(NlSocket &nl);
	void sync_owner_ports(NlSocket &nl);
	// Relay: what the router advertisements on the bridge announce (the
	// prefix with the uplink's lifetimes left, its MTU).
	// PREFIX.ra_foreign written or removed when RaSender::foreign changed.
	void note_foreign_router();
	void update_ra(NlSocket &nl, const LinkInfo &uplink, const std::vector<Ipv6IfAddr> &up,
		       const std::optional<Ipv6Net> &prefix);
	// `--uplink auto`: moves the uplink hook to the default route's
	// device when that route moved to another device.
	void follow_default_route(NlSocket &nl);
	void collect_garbage();
	// SIGHUP (systemctl reload): the config's mappings and the DHCP
	// leases re-read and applied at once, between RELOADING=1 and
	// READY=1.  The instance's other settings (uplink, mode, sizes) are
	// the attach's: they take a restart.
	void reload(NlSocket &nl);
	// STATUS= of systemctl status.
	std::string status_text() const;

	// The config under its lock, or nullopt while another process holds
	// it: the daemon never waits for a lock (it would stop collecting
	// and following the uplink); what needed it is retried next tick.
	// A lock held long is a failing step of StepLog (steps_), named by what.
	std::optional<LockedConfig> try_config(const char *what);
	void record_uplink_clsact();
	void refresh_bridge(NlSocket &nl);
	void reattach_bridge(const LinkInfo &link);
	void follow_gateway(NlSocket &nl, int bridge_ifindex);
	void follow_gateway6(NlSocket &nl, const LinkInfo &bridge);
	// Re-installs the configured static mappings when the config, the
	// uplink address or the uplink's network changed (or to heal).
	void sync_mappings(NlSocket &nl, bool force);
	void sync_xdp(NlSocket &nl);
	// kvx_guest from libvirt's lease status file (control/guests.hpp).
	void sync_dhcp_leases();
	// Moves the mappings of guests addressed by their lease (libvirt
	// hooks, model/libvirt.hpp follow_leases) to their current lease;
	// false while the config lock is busy (retried at the next tick).
	bool follow_guest_leases(const std::vector<Lease> &leases);
	void sync_tunnels(NlSocket &nl);
	// Starts the probes held addresses wait for (ApplyResult::held);
	// forgets those no longer held.
	void start_probes(const ApplyResult &r);
	// Steps the running probes (after poll); records finished ones.
	void step_probes();
	bool probe_retry_due() const;
	// IPv6 mapped addresses: DAD for the held ones (ApplyResult::held6),
	// the unsolicited NA for those announced now, the solicited-node
	// groups of the announced ones joined on the uplink.
	void start_dads(const ApplyResult &r);
	void step_dads();
	bool dad_retry_due() const;
	struct Dad6;
	// A DAD that could not start or run: retried with backoff (logged once).
	void dad_failed(const Ipv6Addr &a, Dad6 &p, const std::string &why);

	Instance inst_;
	SkelObject &skel_;
	std::string config_path_;
	int uplink_ifindex_;
	Fd cfg_fd_;
	Fd ct_fd_;
	Fd bind_fd_;
	Fd extaddr_fd_;
	Fd hosttun_fd_;
	Fd hostaddr_fd_;
	Fd cfg6_fd_;
	Fd ct6_fd_;
	Fd bind6_fd_;
	Fd nd_fd_;			       // the guests' IPv6 address owners (both modes)
	Fd extaddr6_fd_;		       // IPv6 mapped addresses and their announcement
	std::unique_ptr<RaSender> ra_;	       // relay only
	RaWatch ra_watch_;		       // relay: the RAs the uplink hears
	PortGuardState guard_;		       // the port guard's memory (control/relay.hpp)
	size_t brport_unplaced_ = 0;	       // MACs left out of kvx_brport (warned once)
	std::optional<Ipv6Net> relay_refused_; // logged once per refused prefix
	std::chrono::steady_clock::time_point relay_rs_at_{};
	bool had_default6_ = false; // the uplink had an IPv6 default route
	int rs_sent_ = 0;	    // solicitations since it went
	std::chrono::steady_clock::time_point rs_at_{};
	// Later fragments (both families) ahead of their first, parked until
	// it passes (null: the ring could not be read; such fragments are
	// lost as before).
	std::unique_ptr<FragRelay> frag_;
	std::string ra_foreign_ = "?"; // what PREFIX.ra_foreign says now ("?": not yet synced)
	std::string state_prefix_;
	ReloadMark reload_mark_; // state_prefix_.reloads
	void write_reload_mark() const;
	int bridge_ifindex_ = 0;
	std::string sysctl_root_ = "/proc/sys";
	std::string libvirt_root_; // set_libvirt_root ("": /)
	// What the mappings were last synced against.
	std::string cfg_sig_;
	uint32_t synced_addr_ = 0;	  // host order
	Ipv6Addr synced_addr6_{};	  // kvx_cfg6.uplink_addr
	std::string uplink6_sig_;	  // Uplink6View::summary() last logged
	bool relay_routes_clear_ = false; // another mode: kvmxdp's routes removed
	std::optional<NetId> synced_net_;
	// The network the uplink showed then (synced_net_ is the judged one):
	// a router that comes back to a network judged unchanged is still
	// learnt by the mappings made while it was away.
	std::optional<NetId> synced_shown_;
	bool synced_ = false;
	// The host's IPv4 addresses (sorted) the mappings were synced
	// against, read each sync while an IPv4 1:1 mapping is recorded
	// (watch_host_addrs_): one the host takes is no mapping's, one it
	// drops may be.
	std::vector<uint32_t> synced_host4_;
	bool watch_host_addrs_ = false;
	// The last sweep left shared ports or their tenants (gc.hpp ovl_sweep):
	// the next one reads the bindings even without claims.
	bool ovl_scan_ = true;
	// --uplink auto: a device refused as another instance's uplink (logged once).
	std::string refused_uplink_;
	// A clsact the daemon created on a re-created uplink, not yet
	// recorded in the config (its lock was busy).
	bool clsact_unrecorded_ = false;
	// Since when the config lock was found busy (try_config).
	std::optional<std::chrono::steady_clock::time_point> config_busy_since_;
	XdpPath *xdp_ = nullptr;
	std::string xdp_sig_;	  // the decisions last logged
	std::string leases_path_; // "" with --dhcp-leases none
	std::string leases_sig_;  // the file's inode, size and mtime when last read
	std::string leases_held_; // the lease-following warnings last logged
	std::chrono::steady_clock::time_point leases_read_{};
	StepLog steps_;
	// Addresses (host order) held back on their network, see
	// kProbeRetryMinMs.
	struct ResumeProbe {
		std::unique_ptr<ArpProber> probe; // running
		std::optional<ProbeVerdict> verdict;
		int conflicts = 0; // in a row: the backoff
		std::chrono::steady_clock::time_point retry_at{};
	};
	std::map<uint32_t, ResumeProbe> probes_;
	bool probes_changed_ = false; // a verdict the maps do not show yet
	// IPv6 mapped addresses held back by DAD (model/dad.hpp): a DAD
	// runs, or waits kDadRetryMinMs..kDadRetryMaxMs after a duplicate.
	struct Dad6 {
		std::unique_ptr<DadProber> probe; // running
		std::optional<DadVerdict> verdict;
		int conflicts = 0; // in a row: the backoff
		int failures = 0;  // DADs that could not start or run, in a row: the backoff
		std::chrono::steady_clock::time_point retry_at{};
	};
	std::map<Ipv6Addr, Dad6> dads_;
	NdGroups nd_groups_;
	// The uplink as DAD last saw it (model/dad.hpp dad_link_update): its
	// carrier coming back, another device or network, sends the announced
	// addresses through DAD again.
	std::optional<DadLink> dad_link_;
	bool dad_no_carrier_logged_ = false;
	// attach --metrics: what the scrapes read of the daemon, and the
	// endpoint (last: it stops serving before anything it reads goes).
	DaemonCounters counters_;
	std::unique_ptr<MetricsServer> metrics_;
	// An endpoint that cannot listen (its port taken at a restart, the
	// address not up yet) is retried with backoff, never fatal: the
	// datapath is attached and GC and the uplink following must go on.
	static constexpr int kMetricsRetryMinMs = 1000;
	static constexpr int kMetricsRetryMaxMs = 60000;
	std::optional<MetricsSource> metrics_src_;
	int metrics_failures_ = 0;
	std::chrono::steady_clock::time_point metrics_retry_at_{};
	void start_metrics();
};

} // namespace kvmxdp
