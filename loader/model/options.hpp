// SPDX-License-Identifier: GPL-2.0
// What the command line hands to the loader: the global options and those
// of `attach`.  Values that attach validates itself (so that the first bad
// one is reported, in a fixed order) stay as typed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kvmxdp {

struct GlobalOptions {
	std::string bpffs = "/sys/fs/bpf";
	std::string config = "/etc/kvmxdp/kvmxdp.json";
	std::string run_dir = "/run/kvmxdp";
	std::string sysctl_root = "/proc/sys";
	// Prepended to libvirt's /run/libvirt and /etc/libvirt (tests; a
	// libvirt built with another prefix): KVMXDP_LIBVIRT_ROOT, read once
	// by main.
	std::string libvirt_root;
	// How long attach, detach and map add/del wait for a lock that another
	// kvmxdp holds before they give up (seconds).
	unsigned lock_wait = 30;
	bool verbose = false;
};

struct AttachOptions {
	std::string bridge;
	std::string uplink;
	std::optional<std::string> subnet;
	// The guests' IPv6 prefix (base/netaddr6.hpp parse_subnet6), or
	// "none" to forget a recorded one; unset: the config's.
	std::optional<std::string> subnet6;
	// attach --ipv6: "auto", "nat66", "relay" or "off" (model/ipv6.hpp
	// parse_ipv6_choice); unset: the config's, else auto.
	std::optional<std::string> ipv6;
	// attach --ipv6-inbound: "stateful" or "open" (relay only; model/ipv6.hpp
	// parse_ipv6_inbound); unset: the config's, else stateful.
	std::optional<std::string> ipv6_inbound;
	std::optional<std::string> nat_ports;
	bool eif = false;
	std::optional<uint32_t> ct_size;
	std::optional<uint32_t> bind_size;
	// TCP MSS clamp (kvx_cfg.clamp_mss); unset: the config's, else off.
	std::optional<uint16_t> clamp_mss;
	// Per-guest flow quota (kvx_cfg.flow_quota; 0: off); unset: the
	// config's, else kDefaultQuotaShare of the conntrack table.
	std::optional<uint32_t> flow_quota;
	// Per-guest port limit (kvx_cfg.guest_ports; 0: off); unset: the
	// config's, else model/quota.hpp default_guest_ports of the pool.
	std::optional<uint32_t> guest_ports;
	// Flow timeouts "NAME=SECONDS,..." (model/timeouts.hpp); unset: the
	// config's, else netfilter's defaults.  For tests and experts.
	std::optional<std::string> timeouts;
	// Hooks per device: "auto" (each device's best, model/mode.hpp), "tc"
	// or "xdp"; unset: the config's, else auto.
	std::optional<std::string> mode;
	// The port guard on the bridge's ports: "on" or "off" (model/mode.hpp
	// parse_port_guard); unset: the config's, else on.
	std::optional<std::string> port_guard;
	// libvirt's DHCP lease status file, or "none" (model/leases.hpp);
	// unset: the config's, else /var/lib/libvirt/dnsmasq/<bridge>.status.
	std::optional<std::string> dhcp_leases;
	// The daemon's Prometheus endpoint, ADDR:PORT, or "off"; unset: the
	// config's, else off.
	std::optional<std::string> metrics;
};

// attach --metrics: "ADDR:PORT" (an IPv4 address, port 1..65535), the
// address the daemon's /metrics listens on.  Throws ConfigError naming
// `what` and the value otherwise.
struct MetricsListen {
	uint32_t addr = 0; // host order
	uint16_t port = 0;
};
MetricsListen parse_metrics_listen(const std::string &value, const std::string &what);

// One check per value, shared by the command line and the config loader
// (model/config.hpp), so that a hand-edited config can hold nothing the
// CLI refuses.  `what` names the value in the error: the option
// ("--ct-size") or the config key ("instances[0].ct_size").

// attach --clamp-mss: 0 (off) or kMinClampMss..kMaxClampMss.
constexpr uint32_t kMinClampMss = 536;	 // RFC 879's default MSS
constexpr uint32_t kMaxClampMss = 65495; // 65535 - 40
uint16_t check_clamp_mss(uint64_t v, const std::string &what);
uint16_t parse_clamp_mss(const std::string &text);

// attach --ct-size, --bind-size: entries of a preallocated hash map
// (memory is taken at load time, so the cap is what a laptop can spare).
constexpr uint32_t kMaxTableSize = 1u << 24;
uint32_t check_table_size(uint64_t v, const std::string &what);
uint32_t parse_table_size(const std::string &text, const std::string &what);
// attach --flow-quota: 0 (no quota) .. kMaxTableSize flows per guest.
uint32_t check_flow_quota(uint64_t v, const std::string &what);
uint32_t parse_flow_quota(const std::string &text, const std::string &what);
// attach --guest-ports: 0 (no limit) .. 65535 dynamic bindings per guest.
uint32_t check_guest_ports(uint64_t v, const std::string &what);
uint32_t parse_guest_ports(const std::string &text, const std::string &what);

} // namespace kvmxdp
