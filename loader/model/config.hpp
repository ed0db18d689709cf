// SPDX-License-Identifier: GPL-2.0
// The persistent configuration: one record per attached bridge, with what
// detach needs to undo attach (which clsact qdiscs we created, the sysctl
// values we replaced).  JSON on disk, read-modify-written under an flock.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "model/ipv6.hpp"
#include "model/mapping.hpp"
#include "model/mode.hpp"
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"

namespace kvmxdp {

struct Instance {
	std::string bridge;
	// The uplink device.  With uplink_auto (`attach --uplink auto`) the
	// device of the default route right now, as the daemon last moved
	// to it ("" while there is none yet); the JSON then says
	// "uplink": "auto" and keeps the device in "uplink_device".
	std::string uplink;
	bool uplink_auto = false;
	Ipv4Net subnet;
	// attach --subnet6: the guests' IPv6 prefix for NAT66 (unset: the
	// bridge's, model/ipv6.hpp decide_ipv6).
	std::optional<Ipv6Net> subnet6;
	// attach --ipv6 (auto: absent from the JSON, as in older configs).
	Ipv6Choice ipv6 = Ipv6Choice::Auto;
	// attach --ipv6-inbound open (relay: everything to a guest's address
	// comes in); absent from the JSON when stateful, the default.
	bool ipv6_inbound_open = false;
	PortRange nat_ports;
	// No --nat-ports: the default pool, recomputed by every attach
	// (netaddr.hpp default_nat_pool); nat_skip is its hole ({0, 0}: none).
	bool nat_ports_auto = false;
	PortRange nat_skip;
	bool eif = false;
	uint32_t ct_size = 0;
	uint32_t bind_size = 0;
	std::string bpffs;
	std::string pin_dir;
	// clsact qdiscs that attach created (not another tool's): only these
	// may be deleted by detach.
	bool clsact_created_bridge = false;
	bool clsact_created_uplink = false;
	// Values before the first attach; restored by detach.  Absent when
	// the key did not exist (e.g. the sysctl is missing in a test tree).
	std::optional<std::string> saved_forwarding;
	// The bridge's IPv6 forwarding before an attach with IPv6 on set it.
	std::optional<std::string> saved_forwarding6;
	// The uplink's accept_ra before an attach with IPv6 on made it 2
	// (only from 1), and that uplink's name.
	std::optional<std::string> saved_accept_ra;
	std::string accept_ra_dev;
	std::optional<std::string> saved_reserved_ports;
	// Static mappings (`map add`), restored by every attach.
	std::vector<StaticMapping> mappings;
	// attach --clamp-mss (0: off).
	uint16_t clamp_mss = 0;
	HookMode mode = HookMode::Auto; // attach --mode
	bool port_guard = true;		// attach --port-guard
	// attach --flow-quota (unset: a share of ct_size, model/quota.hpp) and
	// --timeouts (empty: netfilter's defaults).
	std::optional<uint32_t> flow_quota;
	// attach --guest-ports (unset: a share of the NAT pool, model/quota.hpp).
	std::optional<uint32_t> guest_ports;
	std::string timeouts;
	// attach --dhcp-leases: libvirt's lease status file (model/leases.hpp);
	// empty: the default path, "none": no leases.
	std::string dhcp_leases;
	// attach --metrics ADDR:PORT: the daemon's Prometheus endpoint; "": off.
	std::string metrics;

	NatPool nat_pool() const { return {nat_ports, nat_skip}; }
	// The range `map add` keeps port forwards out of: an explicit
	// --nat-ports; none for the default pool, where a forward's static
	// binding takes its ports out of the pool instead (the datapath never
	// claims a port that has an IN half).
	PortRange nat_guard() const { return nat_ports_auto ? PortRange{} : nat_ports; }

	bool operator==(const Instance &o) const;
};

// What a detach leaves of an instance: its static mappings are
// configuration, not state, and come back with the next attach.
struct Detached {
	std::string uplink;
	std::vector<StaticMapping> mappings;
	bool operator==(const Detached &o) const
	{
		return uplink == o.uplink && mappings == o.mappings;
	}
};

struct Config {
	// Written to every saved config; older ones are read.  2: mappings'
	// "pending" and "origin", a detached record's "uplink": "", which a
	// kvmxdp reading version 1 would misread (it refuses version 2).
	static constexpr int kVersion = 2;
	std::vector<Instance> instances;
	// bridge -> what its detach kept ("detached" in the JSON; optional).
	std::map<std::string, Detached> detached;
	// `map allow`: what libvirt metadata may claim (model/metadata_allow.hpp);
	// unset: the default ("metadata_allow" absent from the JSON).
	std::optional<std::vector<std::string>> metadata_allow;

	Instance *find(const std::string &bridge);
	const Instance *find(const std::string &bridge) const;
	void upsert(const Instance &inst);
	bool remove(const std::string &bridge);
};

// A device's accept_ra that an attach with IPv6 on made 2 (Instance
// saved_accept_ra, accept_ra_dev) and that the instance of `bridge` lets
// go (detach, IPv6 off, another uplink): the value to write back (cur: the
// device's value now; none: leave it).  Only while the device still has
// 2: a value the admin set since (0: no RAs there) stays.  Not while
// another instance with IPv6 not off has that device as its uplink (its
// forwarding on would purge the device's RA default route): that instance
// takes the saved value over (the config is changed), and the last one to
// let go writes it back.
std::optional<std::string> accept_ra_release(Config &cfg, const std::string &bridge,
					     const std::string &dev, const std::string &saved,
					     const std::optional<std::string> &cur);

// The instance a verb acts on: the one of `bridge`, or with bridge "" the
// only one.  Throws Error naming what is missing (config_path: the file, for
// the message).
Instance &select_instance(Config &cfg, const std::string &bridge, const std::string &config_path);
// "bridge 'B' is not attached (no instance in PATH[, also])", the one
// spelling of that refusal.
Error not_attached(const std::string &bridge, const std::string &config_path,
		   const std::string &also = "");

nlohmann::json to_json(const Config &cfg);
// Validates every field; errors name the field ("instances[0].nat_port_lo").
Config config_from_json(const nlohmann::json &j);

class ConfigStore {
public:
	explicit ConfigStore(std::string path)
		: path_(std::move(path))
	{
	}

	// Serialises read-modify-write cycles of concurrent kvmxdp processes;
	// waits at most `wait` (base/fs.hpp: FileLock).  The lock file sits
	// beside the config, 0600.  The config is root's alone, as the unit
	// makes it (ConfigurationDirectoryMode=0700, UMask=0077): saved 0600,
	// its directory made 0700 if missing; `map list` and `status` are
	// root's commands.
	FileLock lock(std::chrono::milliseconds wait) const
	{
		return FileLock::acquire(lock_path(), wait, 0700);
	}
	// nullopt while another process holds it (the daemon retries later).
	std::optional<FileLock> try_lock() const
	{
		return FileLock::try_acquire(lock_path(), 0700);
	}
	// A missing file is an empty configuration.
	Config load() const;
	void save(const Config &cfg) const;
	const std::string &path() const { return path_; }
	std::string lock_path() const { return path_ + ".lock"; }

private:
	std::string path_;
};

// The config read under its lock, for one read-modify-write: what every
// command and the daemon change goes through here.
class LockedConfig {
public:
	// Waits at most `wait` for the lock (the CLI's verbs: --lock-wait).
	LockedConfig(const std::string &path, std::chrono::milliseconds wait);
	// nullopt while another process holds the lock (the daemon retries at
	// its next tick rather than wait).
	static std::optional<LockedConfig> try_lock(const std::string &path);

	Config &operator*() { return cfg_; }
	Config *operator->() { return &cfg_; }
	void save() const { store_.save(cfg_); }
	// Lets other kvmxdp processes in (the daemon runs for days).
	void unlock() { lock_.reset(); }

private:
	LockedConfig(ConfigStore store, FileLock lock);
	ConfigStore store_;
	std::optional<FileLock> lock_;
	Config cfg_;
};

} // namespace kvmxdp
