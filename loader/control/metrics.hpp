// SPDX-License-Identifier: GPL-2.0
// The daemon's Prometheus endpoint (attach --metrics ADDR:PORT): the
// prometheus-cpp exposer (civetweb) serves /metrics, and every scrape reads
// the maps afresh (a Collectable): the verdict counters (kvx_stats), table
// usage and capacity, the per-guest counters (control/guest_stats.hpp) and
// what only the daemon knows (uplink address changes, GC time).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "control/guest_stats.hpp"

namespace prometheus {
class Exposer;
}

namespace kvmxdp {

// Written by the daemon's loop, read by scrapes (another thread).
struct DaemonCounters {
	std::atomic<uint64_t> uplink_addr_changes{0};
	std::atomic<uint64_t> gc_runs{0};
	std::atomic<uint64_t> gc_ns_total{0}; // wall time of the sweeps
	std::atomic<uint64_t> gc_last_ns{0};
};

// What a scrape reads: borrowed fds, valid while the server lives.
struct MetricsSource {
	std::string bridge;
	int stats = -1; // kvx_stats
	int ct = -1;	// kvx_ct
	int bind = -1;	// kvx_bind
	int frag = -1;	// kvx_frag
	int ct6 = -1;	// kvx_ct6
	int bind6 = -1; // kvx_bind6
	int frag6 = -1; // kvx_frag6
	GuestStatsFds guests;
	std::string leases_path; // "": no DHCP hostnames
	// The VMs' names (guest_vm_names): the config and libvirt's files.
	std::string config_path;
	std::string libvirt_root;
	const DaemonCounters *daemon = nullptr;
};

// Binds ADDR:PORT (model/options.hpp parse_metrics_listen) the way the
// server will, and lets it go: attach refuses an address it cannot serve
// before anything is attached.  Throws Error naming it and the errno text.
void check_metrics_bind(const std::string &listen);

class MetricsServer {
public:
	// Listens at once; throws Error naming the address when it cannot.
	MetricsServer(const std::string &listen, MetricsSource src);
	~MetricsServer();
	MetricsServer(const MetricsServer &) = delete;
	MetricsServer &operator=(const MetricsServer &) = delete;

private:
	class Collector;
	std::shared_ptr<Collector> collector_;
	std::unique_ptr<prometheus::Exposer> exposer_;
};

} // namespace kvmxdp
