// SPDX-License-Identifier: GPL-2.0
// `attach` as named phases over one instance, in this order:
//
//   resolve      the options, with what the config says of the bridge (the
//                config is read once, under its lock, which attach holds
//                until it records the instance)
//   validate     devices, subnet, NAT range, one instance per uplink, the
//                daemon slot (pid lock, and the pin directory's lock if it
//                exists), the bpffs
//   resume maps  the pinned maps reused, replaced or refused (kResumeTable)
//   write cfg    kvx_cfg, kvx_cfg6, the flow quota's counters, the static
//                mappings
//   pin          the maps under <bpffs>/kvmxdp/<bridge>/ (a new pin
//                directory is locked as it is made)
//   hooks        TC on the bridge and the uplink, XDP where it pays, the
//                host's cgroup hooks
//   sysctls      forwarding on the bridge, the NAT ports reserved
//   record       the instance in the config
//
// Each phase registers the undo of what it made; a failure at any point
// (KVMXDP_FAILPOINT=pinned|kvx_br_ingress|kvx_up_ingress|xdp|host_hooks|
// sysctls injects one) leaves nothing behind.  The pure decisions of the
// phases are functions of their own, unit-tested.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fs.hpp"
#include "base/netaddr.hpp"
#include "kernel/netlink.hpp"
#include "model/config.hpp"
#include "model/options.hpp"

namespace kvmxdp {

class SkelObject;
class XdpPath;

// Phase "resolve": the instance attach makes, from the options and the
// config's record of the bridge (attach --bridge BR alone, as the systemd
// unit runs it, takes the rest from there, or from what a detach kept).
struct AttachPlan {
	std::string bridge;
	std::string uplink; // a device, or "auto" (kUplinkAuto)
	std::optional<Ipv4Net> subnet;
	std::optional<Ipv6Net> subnet6;	    // --subnet6, else the config's; none: unset
	Ipv6Choice ipv6 = Ipv6Choice::Auto; // --ipv6, else the config's
	bool ipv6_inbound_open = false;	    // --ipv6-inbound, else the config's
	std::optional<PortRange> nat_ports;
	bool eif = false;
	HookMode mode = HookMode::Auto;
	bool port_guard = true;		   // --port-guard, else the config's
	std::optional<uint32_t> ct_size;   // --ct-size
	std::optional<uint32_t> bind_size; // --bind-size
	uint16_t clamp_mss = 0;
	std::optional<uint32_t> flow_quota;  // unset: a share of the conntrack table
	std::optional<uint32_t> guest_ports; // unset: a share of the NAT pool
	std::string timeouts;		     // "" = netfilter's defaults
	std::string dhcp_leases;	     // "" = the default path (model/leases.hpp)
	std::string metrics;		     // ADDR:PORT of /metrics; "" = off
	std::optional<Instance> prev;	     // the config's record of this bridge
	std::vector<StaticMapping> mappings;
};

// The checks of what was typed, before root or the config is needed: a
// typo is reported as such, with or without root.
void check_attach_syntax(const AttachOptions &a);
// Explicit options win, then the instance's record, then the defaults.
AttachPlan resolve_attach(const AttachOptions &a, const Config &cfg,
			  const std::string &config_path);

// Phase "validate", its pure parts.
// The guest subnet: --subnet if it is a network of the bridge, else the
// network of the bridge's primary address.
Ipv4Net choose_subnet(const std::vector<IfAddr> &bridge_addrs,
		      const std::optional<Ipv4Net> &requested, const std::string &bridge);
// One instance per uplink: the uplink's filter (one kvmxdp handle) and its
// NAT ports on the uplink address would be shared, and a second attach
// would silently take the first bridge's replies.  uplink: the device ("":
// none yet).
void check_uplink_free(const Config &cfg, const std::string &bridge, const std::string &uplink,
		       bool uplink_auto);
// One bridge, one datapath: a second bpffs would mean a second set of maps
// fighting over the same TC hooks.
void check_same_bpffs(const std::optional<Instance> &prev, const std::string &bridge,
		      const std::string &bpffs);

// What a successful attach hands to the daemon.
struct AttachedInstance {
	Instance inst; // as recorded in the config
	int uplink_ifindex = 0;
	std::unique_ptr<SkelObject> tc; // kvmxdp_tc, loaded
	std::unique_ptr<XdpPath> xdp;
	// The daemon slot, held while it runs: the pid file's lock and the
	// pin directory's (which survives a lost /run).
	std::optional<PidLock> pid_lock;
	std::optional<FileLock> pin_lock;
	AttachedInstance();
	AttachedInstance(AttachedInstance &&) noexcept;
	~AttachedInstance();
};

// Every phase, with SIGINT/SIGTERM blocked (a signal during attach stays
// pending for the daemon).  Throws Error after undoing what was made.
AttachedInstance attach_instance(const GlobalOptions &g, const AttachOptions &a);

} // namespace kvmxdp
