// SPDX-License-Identifier: GPL-2.0
#include "control/metrics.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <cerrno>
#include <ctime>
#include <map>
#include <mutex>

#include "base/clock.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "kernel/maps.hpp"
#include "model/config.hpp"
#include "model/options.hpp"

namespace kvmxdp {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(const char *name, const char *help, MetricType type)
{
	MetricFamily f;
	f.name = name;
	f.help = help;
	f.type = type;
	return f;
}

void add(MetricFamily &f, Labels labels, double v)
{
	ClientMetric m;
	m.label = std::move(labels);
	if (f.type == MetricType::Counter)
		m.counter.value = v;
	else
		m.gauge.value = v;
	f.metric.push_back(std::move(m));
}

double secs(uint64_t ns)
{
	return static_cast<double>(ns) / 1e9;
}

} // namespace

class MetricsServer::Collector : public prometheus::Collectable {
public:
	explicit Collector(MetricsSource src)
		: src_(std::move(src))
	{
	}

	std::vector<MetricFamily> Collect() const override
	{
		// Scrapes may overlap (civetweb threads); the maps do not mind,
		// the lease cache does.
		std::lock_guard<std::mutex> lock(mu_);
		std::vector<MetricFamily> out;
		const Labels br{{"bridge", src_.bridge}};
		auto with = [&](Labels l) {
			Labels all = br;
			all.insert(all.end(), l.begin(), l.end());
			return all;
		};

		// Every verdict counter, as `status` shows them.
		auto pk = family("kvmxdp_packets_total",
				 "Packets the datapath counted, by verdict reason (kvx_stats)",
				 MetricType::Counter);
		auto by = family("kvmxdp_bytes_total",
				 "Frame bytes the datapath counted, by verdict reason",
				 MetricType::Counter);
		const std::vector<kvx_stat> stats = read_stats(src_.stats);
		static const struct {
			const char *name;
			bool drop;
		} reasons[] = {
#define KVX_X_R(name, drop, desc) {#name, drop != 0},
			KVX_REASONS(KVX_X_R)
#undef KVX_X_R
		};
		for (size_t r = 0; r < stats.size() && r < static_cast<size_t>(KVX_R_MAX); r++) {
			Labels l = with({{"reason", reasons[r].name},
					 {"drop", reasons[r].drop ? "true" : "false"}});
			add(pk, l, static_cast<double>(stats[r].packets));
			add(by, l, static_cast<double>(stats[r].bytes));
		}
		out.push_back(std::move(pk));
		out.push_back(std::move(by));

		// Table usage and capacity.
		auto used = family("kvmxdp_table_entries", "Entries in a datapath table",
				   MetricType::Gauge);
		auto cap = family("kvmxdp_table_capacity", "Capacity of a datapath table (entries)",
				  MetricType::Gauge);
		const struct {
			const char *table;
			int fd;
			uint32_t key_size;
		} tables[] = {
			{"conntrack", src_.ct, sizeof(kvx_ct_key)},
			{"bindings", src_.bind, sizeof(kvx_bind_key)},
			{"guests", src_.guests.guest, sizeof(__be32)},
			{"fragments", src_.frag, sizeof(kvx_frag_key)},
			{"conntrack6", src_.ct6, sizeof(kvx_ct6_key)},
			{"bindings6", src_.bind6, sizeof(kvx_bind6_key)},
			{"fragments6", src_.frag6, sizeof(kvx_frag6_key)},
		};
		for (const auto &t : tables) {
			if (t.fd < 0)
				continue;
			const MapInfo mi = map_info(t.fd, t.table);
			add(used, with({{"table", t.table}}), count_keys(t.fd, t.key_size));
			add(cap, with({{"table", t.table}}), mi.max_entries);
		}
		out.push_back(std::move(used));
		out.push_back(std::move(cap));

		// Per guest.
		auto gp =
			family("kvmxdp_guest_packets_total",
			       "Packets translated for a guest, by direction (out: from the guest)",
			       MetricType::Counter);
		auto gb = family("kvmxdp_guest_bytes_total",
				 "Frame bytes translated for a guest, by direction",
				 MetricType::Counter);
		auto gd = family("kvmxdp_guest_drops_total",
				 "A guest's packets dropped, by class of reason",
				 MetricType::Counter);
		auto gf = family("kvmxdp_guest_flows",
				 "A guest's conntrack flows now, by direction", MetricType::Gauge);
		// The counters belong to the owning MAC (abi.h kvx_gstats): it is
		// their only label beside the bridge, so that a guest whose
		// address, VM name or slot sharing changes keeps its series.
		// What changes goes on one kvmxdp_guest_info series (the
		// Prometheus "info" pattern: join on mac with group_left).
		auto gi = family("kvmxdp_guest_info",
				 "A guest now: its current addresses, libvirt VM name, DHCP "
				 "hostname (the guest's choice) and whether "
				 "another guest shares its counters (value 1)",
				 MetricType::Gauge);
		for (const GuestRow &r :
		     active_guests(read_guest_rows(src_.guests, leases(), vms()), boottime_ns(),
				   KVX_GUEST_IDLE_NS)) {
			const Labels id = with({{"mac", mac_text(r.mac)}});
			std::string addrs;
			for (uint32_t a : r.addrs)
				addrs += (addrs.empty() ? "" : ",") + format_ipv4(a);
			for (const auto &a6 : r.addrs6)
				addrs += (addrs.empty() ? "" : ",") + format_ipv6(a6);
			add(gi,
			    with({{"mac", mac_text(r.mac)},
				  {"addresses", addrs},
				  {"vm", r.vm},
				  {"dhcp_hostname", r.dhcp_hostname},
				  {"shared_slot", r.shared ? "true" : "false"}}),
			    1);
			auto dir = [&](const char *d) {
				Labels l = id;
				l.push_back({"direction", d});
				return l;
			};
			add(gp, dir("out"), static_cast<double>(r.pkts_out));
			add(gp, dir("in"), static_cast<double>(r.pkts_in));
			add(gb, dir("out"), static_cast<double>(r.bytes_out));
			add(gb, dir("in"), static_cast<double>(r.bytes_in));
			add(gf, dir("out"), r.flows_out);
			add(gf, dir("in"), r.flows_in);
			for (int i = 0; i < KVX_GD_MAX; i++) {
				Labels l = id;
				l.push_back({"class", gdrop_name(i)});
				add(gd, l, static_cast<double>(r.drops[static_cast<size_t>(i)]));
			}
		}
		out.push_back(std::move(gi));
		out.push_back(std::move(gp));
		out.push_back(std::move(gb));
		out.push_back(std::move(gd));
		out.push_back(std::move(gf));

		// The daemon's own.
		if (const DaemonCounters *d = src_.daemon) {
			auto ch = family("kvmxdp_uplink_address_changes_total",
					 "Times the daemon saw the uplink's IPv4 address change",
					 MetricType::Counter);
			add(ch, br, static_cast<double>(d->uplink_addr_changes.load()));
			auto runs = family("kvmxdp_gc_runs_total", "Garbage collection sweeps",
					   MetricType::Counter);
			add(runs, br, static_cast<double>(d->gc_runs.load()));
			auto total = family("kvmxdp_gc_duration_seconds_total",
					    "Time spent in garbage collection sweeps",
					    MetricType::Counter);
			add(total, br, secs(d->gc_ns_total.load()));
			auto last = family("kvmxdp_gc_last_duration_seconds",
					   "Duration of the last garbage collection sweep",
					   MetricType::Gauge);
			add(last, br, secs(d->gc_last_ns.load()));
			out.push_back(std::move(ch));
			out.push_back(std::move(runs));
			out.push_back(std::move(total));
			out.push_back(std::move(last));
		}
		return out;
	}

private:
	// The lease file is re-read when it changes (names for the labels).
	// The VMs' names (control/guest_stats.hpp): the instance's mappings
	// from the config as it is now, and the running domains' files (a MAC
	// two domains claim names none).
	GuestVmNames vms() const
	{
		std::vector<StaticMapping> ms;
		try {
			const Config cfg = ConfigStore(src_.config_path).load();
			if (const Instance *i = cfg.find(src_.bridge))
				ms = i->mappings;
		} catch (const std::exception &) {
			// Names only: the daemon reports a broken config.
		}
		return guest_vm_names(ms, src_.libvirt_root, &domains_);
	}
	const std::vector<Lease> &leases() const
	{
		if (src_.leases_path.empty())
			return leases_;
		try {
			if (auto text = read_file(src_.leases_path)) {
				if (*text != leases_text_) {
					leases_ = parse_libvirt_leases(*text, src_.leases_path);
					leases_text_ = *text;
				}
			}
		} catch (const std::exception &) {
			// Names only: the daemon reports a broken lease file.
		}
		return leases_;
	}

	MetricsSource src_;
	mutable std::mutex mu_;
	mutable std::vector<Lease> leases_;
	// libvirt's domain status files, parsed again only when changed.
	mutable DomainFiles domains_;
	mutable std::string leases_text_;
};

void check_metrics_bind(const std::string &listen)
{
	const MetricsListen l = parse_metrics_listen(listen, "--metrics");
	Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!s)
		throw_errno("create", "socket for --metrics " + listen);
	int one = 1;
	// As civetweb binds it: a port in TIME_WAIT is free.
	::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_in sa{};
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(l.addr);
	sa.sin_port = htons(l.port);
	if (::bind(s.get(), reinterpret_cast<const sockaddr *>(&sa), sizeof(sa)) != 0)
		throw Error("listen on", "--metrics " + listen, errno);
}

MetricsServer::MetricsServer(const std::string &listen, MetricsSource src)
	: collector_(std::make_shared<Collector>(std::move(src)))
{
	const MetricsListen l = parse_metrics_listen(listen, "--metrics");
	// The page names guests (MACs, addresses, lease host names) and has no
	// authentication: on a laptop's WiFi, anything but loopback shows them
	// to the café.  Allowed (a monitoring host may need it), said aloud.
	if ((l.addr >> 24) != 127)
		log_warn("--metrics " + listen +
			 ": reachable from other hosts on every network the host joins (the page "
			 "lists guests' MACs, addresses and names, without authentication); "
			 "127.0.0.1 keeps it local");
	try {
		// One thread: a scrape is a few map reads.
		exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
	} catch (const std::exception &e) {
		throw Error("metrics endpoint: cannot listen on " + listen + ": " + e.what());
	}
	exposer_->RegisterCollectable(collector_);
}

MetricsServer::~MetricsServer() = default;

} // namespace kvmxdp
