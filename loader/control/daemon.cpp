// SPDX-License-Identifier: GPL-2.0
#include "control/daemon.hpp"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sstream>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/notify.hpp"
#include "base/sysctl.hpp"
#include "base/text.hpp"
#include "control/gc.hpp"
#include "control/guests.hpp"
#include "control/host_tunnels.hpp"
#include "control/mapping_sync.hpp"
#include "control/ra_sender.hpp"
#include "control/relay.hpp"
#include "control/uplink6.hpp"
#include "control/xdp_path.hpp"
#include "model/ipv6.hpp"
#include "model/ra.hpp"
#include "model/libvirt.hpp"
#include "model/relay.hpp"
#include "kernel/arp.hpp"
#include "kernel/maps.hpp"
#include "kernel/sockets.hpp"
#include "kernel/netlink.hpp"
#include "kernel/routes.hpp"
#include "kernel/skel.hpp"
#include "kernel/tc.hpp"

namespace kvmxdp {

namespace {

// An IPv4 1:1 mapping, whose address must be no address of the host's
// (model check_mapping), except one kvmxdp adds to the uplink itself
// (--add-address: host-local by design, labelled and not counted).
bool watches_host_addrs(const StaticMapping &sm)
{
	return !sm.m.v6 && sm.m.one_to_one() && !sm.add_address;
}

Fd dup_fd(int fd, const char *what)
{
	int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (d < 0)
		throw_errno("dup fd of", what);
	return Fd(d);
}

std::string addr_str(uint32_t be)
{
	return be ? format_ipv4(ntohl(be)) : "none";
}

Ipv6Addr addr6_of(const __be32 (&w)[4])
{
	Ipv6Addr a;
	std::memcpy(a.data(), w, a.size());
	return a;
}

// A prefix kvx_cfg6 holds as address and length (length 0: none).
std::optional<Ipv6Net> net6_of(const __be32 (&w)[4], uint8_t len)
{
	return len ? std::optional<Ipv6Net>(Ipv6Net{addr6_of(w), len}) : std::nullopt;
}

std::string addr6_str(const Ipv6Addr &a)
{
	return a == Ipv6Addr{} ? "none" : format_ipv6(a);
}

// The MAC of the uplink's next hop towards daddr (network order): the
// destination's own on the uplink's network, else the default gateway's.
std::optional<MacAddr> uplink_next_hop(NlSocket &nl, int ifindex, uint32_t daddr)
{
	if (auto m = neighbour_mac(nl, ifindex, ntohl(daddr)))
		return m;
	if (auto gw = default_gateway(ipv4_routes(nl), ifindex); gw && *gw)
		return neighbour_mac(nl, ifindex, *gw);
	return std::nullopt;
}

// The same for IPv6, by the uplink's routes (next_hop6).
std::optional<MacAddr> uplink_next_hop6(NlSocket &nl, int ifindex, const Ipv6Addr &daddr)
{
	if (auto via = next_hop6(ipv6_routes(nl, ifindex), daddr))
		return neighbour_mac6(nl, ifindex, *via);
	return std::nullopt;
}

} // namespace

Daemon::Daemon(const Instance &inst, SkelObject &skel, int uplink_ifindex, std::string config_path)
	: inst_(inst)
	, skel_(skel)
	, config_path_(std::move(config_path))
	, uplink_ifindex_(uplink_ifindex)
	, cfg_fd_(dup_fd(skel.map_fd(KVX_MAP_CFG), KVX_MAP_CFG))
	, ct_fd_(dup_fd(skel.map_fd(KVX_MAP_CT), KVX_MAP_CT))
	, bind_fd_(dup_fd(skel.map_fd(KVX_MAP_BIND), KVX_MAP_BIND))
	, extaddr_fd_(dup_fd(skel.map_fd(KVX_MAP_EXTADDR), KVX_MAP_EXTADDR))
	, hosttun_fd_(dup_fd(skel.map_fd(KVX_MAP_HOSTTUN), KVX_MAP_HOSTTUN))
	, hostaddr_fd_(dup_fd(skel.map_fd(KVX_MAP_HOSTADDR), KVX_MAP_HOSTADDR))
	, cfg6_fd_(dup_fd(skel.map_fd(KVX_MAP_CFG6), KVX_MAP_CFG6))
	, ct6_fd_(dup_fd(skel.map_fd(KVX_MAP_CT6), KVX_MAP_CT6))
	, bind6_fd_(dup_fd(skel.map_fd(KVX_MAP_BIND6), KVX_MAP_BIND6))
	, nd_fd_(dup_fd(skel.map_fd(KVX_MAP_ND), KVX_MAP_ND))
	, extaddr6_fd_(dup_fd(skel.map_fd(KVX_MAP_EXTADDR6), KVX_MAP_EXTADDR6))
	, bridge_ifindex_(static_cast<int>(read_cfg(cfg_fd_.get()).bridge_ifindex))
	, leases_path_(leases_path(inst.dhcp_leases, inst.bridge))
{
	try {
		frag_ = std::make_unique<FragRelay>(skel.map_fd(KVX_MAP_FRAGQ),
						    FragRelay::Maps{skel.map_fd(KVX_MAP_FRAG),
								    skel.map_fd(KVX_MAP_FRAG6),
								    skel.map_fd(KVX_MAP_FRAGHOST),
								    skel.map_fd(KVX_MAP_FRAGHOST6)},
						    skel.map_fd(KVX_MAP_STATS), cfg_fd_.get());
	} catch (const Error &e) {
		log_warn(std::string("fragments ahead of their first are not parked: ") + e.what());
	}
	// Relay: the guests' addresses come from our router advertisements.
	if (read_cfg6(cfg6_fd_.get()).mode == KVX_V6_RELAY)
		ra_ = std::make_unique<RaSender>(inst.bridge);
	if (!inst.metrics.empty()) {
		MetricsSource src;
		src.bridge = inst.bridge;
		src.stats = skel.map_fd(KVX_MAP_STATS);
		src.ct = ct_fd_.get();
		src.bind = bind_fd_.get();
		src.frag = skel.map_fd(KVX_MAP_FRAG);
		src.ct6 = ct6_fd_.get();
		src.bind6 = bind6_fd_.get();
		src.frag6 = skel.map_fd(KVX_MAP_FRAG6);
		src.guests = {cfg_fd_.get(),
			      skel.map_fd(KVX_MAP_GUEST),
			      skel.map_fd(KVX_MAP_GSTATS),
			      skel.map_fd(KVX_MAP_GFLOWS),
			      skel.map_fd(KVX_MAP_BRPORT),
			      nd_fd_.get(),
			      bind6_fd_.get(),
			      ct6_fd_.get()};
		src.leases_path = leases_path_;
		src.config_path = config_path_;
		src.daemon = &counters_;
		// Started by run()'s loop, retried there (start_metrics).
		metrics_src_ = std::move(src);
	}
}

void Daemon::start_metrics()
{
	try {
		metrics_ = std::make_unique<MetricsServer>(inst_.metrics, *metrics_src_);
	} catch (const Error &) {
		metrics_failures_++;
		const int ms = std::min(kMetricsRetryMaxMs,
					kMetricsRetryMinMs << std::min(metrics_failures_ - 1, 6));
		metrics_retry_at_ =
			std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
		throw; // StepLog: logged once, and again while it lasts
	}
	log_info("metrics: http://" + inst_.metrics + "/metrics" +
		 (metrics_failures_ ?
			  " (after " + std::to_string(metrics_failures_) + " failed attempt(s))" :
			  ""));
	metrics_failures_ = 0;
}

template <typename F>
void Daemon::step(const char *name, F &&f)
{
	// Anything: a kvmxdp::Error, a nlohmann exception, std::bad_alloc of
	// a huge hand-edited config.  The datapath does not depend on this
	// step and the next tick retries it; ending the daemon instead would
	// end GC and the uplink following for good.
	try {
		f();
		steps_.ok(name);
	} catch (const std::exception &e) {
		steps_.failed(name, e.what());
	}
}

void Daemon::refresh_bridge(NlSocket &nl)
{
	auto link = find_link(nl, inst_.bridge);
	if (!link || link->kind != "bridge")
		return;
	if (link->ifindex != bridge_ifindex_)
		reattach_bridge(*link);
	follow_gateway(nl, link->ifindex);
	follow_gateway6(nl, *link);
}

// The same for IPv6: the guests' router is the bridge's link-local address
// (the source of the RAs they got), which a re-created bridge changes; and
// the bridge's MAC, which the datapath answers guests' duplicate address
// probes from (owner6.h): a re-created bridge, or one given another address
// (`ip link set BR address`), would answer from a MAC that is not there.
void Daemon::follow_gateway6(NlSocket &nl, const LinkInfo &bridge)
{
	kvx_cfg6 cfg = read_cfg6(cfg6_fd_.get());
	if (cfg.mode == KVX_V6_OFF)
		return;
	bool changed = false;
	MacAddr old_mac{};
	std::memcpy(old_mac.data(), cfg.bridge_mac, old_mac.size());
	if (old_mac != bridge.mac) {
		log_info("bridge " + inst_.bridge + " MAC " + format_mac(old_mac) + " -> " +
			 format_mac(bridge.mac) +
			 " (answers to guests' IPv6 duplicate address probes)");
		std::memcpy(cfg.bridge_mac, bridge.mac.data(), sizeof(cfg.bridge_mac));
		changed = true;
	}
	const Ipv6Addr gw = link_local_of(ipv6_addrs(nl, bridge.ifindex)).value_or(Ipv6Addr{});
	const Ipv6Addr old = addr6_of(cfg.gw_addr);
	if (gw != old) {
		log_info(
			"bridge " + inst_.bridge + " IPv6 gateway address " + addr6_str(old) +
			" -> " + addr6_str(gw) +
			(gw == Ipv6Addr{} ? " (no ICMPv6 errors to guests until it has one)" : ""));
		std::memcpy(cfg.gw_addr, gw.data(), sizeof(cfg.gw_addr));
		changed = true;
	}
	if (changed)
		write_cfg6(cfg6_fd_.get(), cfg);
}

// The source of the ICMP errors the datapath sends guests (kvx_cfg.gw_addr)
// is the bridge's address in the subnet: libvirt (a network restart, a
// redefined network) or an administrator may change it while attached,
// and errors from an address the guests do not know as their gateway are
// dropped by their rp_filter or ignored.
void Daemon::follow_gateway(NlSocket &nl, int bridge_ifindex)
{
	const uint32_t gw = subnet_gateway(ipv4_addrs(nl, bridge_ifindex), inst_.subnet);
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	if (cfg.gw_addr == htonl(gw))
		return;
	log_info("bridge " + inst_.bridge + " gateway address " + addr_str(cfg.gw_addr) + " -> " +
		 addr_str(htonl(gw)) + (gw ? "" : " (no ICMP errors to guests until it has one)"));
	cfg.gw_addr = htonl(gw);
	write_cfg(cfg_fd_.get(), cfg);
}

void Daemon::reattach_bridge(const LinkInfo &link)
{
	// A libvirt network restart deletes and re-creates the bridge: the
	// filter went with the old device, and the new one starts with
	// forwarding at its default.  Guests re-join it as their taps come.
	// A failure is retried on the next event or tick (step()); logged
	// after the attach, so that a failing one is not a line per tick.
	tc_attach_ingress(link.ifindex, inst_.bridge, skel_.prog_fd("kvx_br_ingress"));
	log_info("bridge " + inst_.bridge + " is back as ifindex " + std::to_string(link.ifindex) +
		 ": re-attached");
	try {
		Sysctl sys(sysctl_root_);
		std::string fwd = forwarding_key(inst_.bridge);
		if (sys.exists(fwd) && sys.read(fwd) != "1")
			sys.write(fwd, "1");
		std::string fwd6 = forwarding6_key(inst_.bridge);
		if (read_cfg6(cfg6_fd_.get()).mode != KVX_V6_OFF && sys.exists(fwd6) &&
		    sys.read(fwd6) != "1") {
			sys.write(fwd6, "1");
			// The uplink's RA default route went with it (dad.hpp).
			if (uplink_ifindex_ > 0)
				solicit_routers(uplink_ifindex_);
		}
	} catch (const Error &e) {
		// Once per re-creation: not retried.
		log_warn(std::string("forwarding on the re-created bridge: ") + e.what());
	}
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	cfg.bridge_ifindex = static_cast<__u32>(link.ifindex);
	write_cfg(cfg_fd_.get(), cfg);
	bridge_ifindex_ = link.ifindex;
}

void Daemon::sync_mappings(NlSocket &nl, bool force)
{
	struct stat st {};
	std::string sig;
	if (::stat(config_path_.c_str(), &st) == 0)
		sig = std::to_string(st.st_ino) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
		      std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_size);
	uint32_t addr = ntohl(read_cfg(cfg_fd_.get()).uplink_addr);
	// `[uplink]` forwards follow NAT66's address (refresh_uplink6 writes
	// it; its flush keeps static pairs, which are moved here).
	const Ipv6Addr addr6 = addr6_of(read_cfg6(cfg6_fd_.get()).uplink_addr);
	std::optional<NetId> net;
	DadLink dl;
	if (!inst_.uplink.empty()) { // empty: --uplink auto, no default route yet
		if (auto link = find_link(nl, inst_.uplink)) {
			net = network_of_link(nl, link->ifindex, true);
			dl.ifindex = link->ifindex;
			dl.carrier = (link->flags & IFF_UP) && (link->flags & IFF_RUNNING);
		}
	}
	if (net && net->net)
		dl.network = net->net->str() + " via " + format_ipv4(net->gateway);
	if (addr6 != Ipv6Addr{})
		dl.network += " " + network_of6(addr6, 64).str();
	// The uplink back with carrier, another one, another network: the
	// announced IPv6 addresses may be another node's by now (RFC 4862
	// 5.4, as the kernel's own addresses): held and probed again.
	const bool dad_carrier_was = dad_link_ && dad_link_->carrier;
	if (dad_link_update(dad_link_, dl)) {
		const size_t n = reprobe_mapped6(extaddr6_fd_.get());
		dads_.clear();
		if (n)
			log_info("uplink " + inst_.uplink +
				 " back with carrier or on another network: duplicate address "
				 "detection again for " +
				 std::to_string(n) + " announced IPv6 address(es)");
		force = true;
	} else if (dad_carrier_was != dl.carrier) {
		force = true; // DADs wait for carrier, or may start now
	}
	// Each family judged on its own (judged_network): IPv4 missing keeps
	// its last network, so a short drop does not suspend and flush the
	// mappings; IPv6 as the uplink shows it once whole.
	const std::optional<NetId> shown = net;
	net = judged_network(net, synced_ ? synced_net_ : std::nullopt);
	std::vector<uint32_t> host4;
	bool host4_read = false;
	auto read_host4 = [&] {
		if (!host4_read) {
			host4 = host_ipv4_addrs(nl);
			std::sort(host4.begin(), host4.end());
			host4_read = true;
		}
	};
	if (watch_host_addrs_)
		read_host4();
	if (synced_ && !force && !probes_changed_ && !probe_retry_due() && !dad_retry_due() &&
	    sig == cfg_sig_ && addr == synced_addr_ && addr6 == synced_addr6_ &&
	    net == synced_net_ && shown == synced_shown_ && host4 == synced_host4_)
		return;
	// `map add/del` change the maps and the config under this lock; a
	// sync from an older config would undo their change.  Busy: next tick.
	auto cfg = try_config("static mappings not synced");
	if (!cfg)
		return;
	const Instance *i = (*cfg)->find(inst_.bridge);
	if (!i)
		return; // being detached
	// Mappings recorded without the gateway's MAC (not resolved when they
	// were made, or an older kvmxdp) learn it on their network now.
	// IPv6 ones the same way, the router's, or the router itself when
	// they were made while the network had none.  Learnt from what the
	// uplink shows, not from the judged network: that one may keep a
	// router that has just left (its last RA said so), and a mapping made
	// since, on its prefix alone, would record it and be suspended until
	// it came back.
	if (shown) {
		bool learnt = false, learnt6 = false;
		for (StaticMapping &sm : (*cfg)->find(inst_.bridge)->mappings) {
			if (!shown->gateway_mac.empty() && sm.network &&
			    sm.network->gateway_mac.empty() && mapping_active(sm, shown)) {
				sm.network->gateway_mac = shown->gateway_mac;
				learnt = true;
			}
			if (learn_router6(sm, shown))
				learnt6 = true;
		}
		if (learnt || learnt6)
			cfg->save();
		if (learnt)
			log_info("mappings of " + shown->str() + ": gateway MAC recorded");
		if (learnt6)
			log_info("IPv6 mappings: their router (or its MAC) recorded");
	}
	// Mappings a libvirt hook could not make (model/mapping.hpp
	// pending) are made once the uplink's network allows them.
	if (Instance *rec = (*cfg)->find(inst_.bridge)) {
		// The network a mapping made now is tied to and judged on: the
		// judged one, less an IPv4 part kept from before while the
		// uplink has no IPv4 address (IPv4 pending mappings wait for
		// one; IPv6 ones are tied to the IPv6 network alone).
		std::optional<NetId> now_net = net;
		if (now_net && !addr) {
			now_net->net.reset();
			now_net->gateway = 0;
			now_net->gateway_mac.clear();
			if (!now_net->v6)
				now_net.reset();
		}
		// IPv6 ones against NAT66 as the datapath runs it (kvx_cfg6)
		// and the uplink's prefixes, read only when one waits.
		std::vector<Ipv6Net> nets6;
		const bool v6_waits = std::any_of(rec->mappings.begin(), rec->mappings.end(),
						  [](const StaticMapping &sm) {
							  return sm.m.v6 && !sm.pending.empty();
						  });
		if (v6_waits && !inst_.uplink.empty())
			if (auto link = find_link(nl, inst_.uplink))
				for (const auto &p : read_uplink6(nl, link->ifindex).prefixes)
					nets6.push_back(p.net);
		MappingContext ctx = promotion_context(rec->subnet, rec->nat_guard(), addr, net,
						       read_cfg6(cfg6_fd_.get()), nets6);
		// The host's addresses, read only when an IPv4 one waits or
		// an IPv4 1:1 mapping is recorded (watched from now on).
		watch_host_addrs_ = std::any_of(rec->mappings.begin(), rec->mappings.end(),
						watches_host_addrs);
		if (watch_host_addrs_ ||
		    std::any_of(rec->mappings.begin(), rec->mappings.end(),
				[](const StaticMapping &sm) {
					return !sm.m.v6 && !sm.pending.empty();
				})) {
			read_host4();
			ctx.host_addrs = host4;
		}
		if (v6_waits)
			ctx.host_addrs6 = host_ipv6_addrs(nl);
		// A 1:1 address the host has taken since it was mapped (the
		// laptop's DHCP lease on this network, an `ip address add`) is
		// the host's: the datapath must neither answer ARP for it nor
		// take its packets.  The mapping waits, with why, until the host
		// no longer holds it (promote_pending, ctx.host_addrs); only one
		// active on this network (a suspended one takes nothing, and
		// keeps the network it is tied to).
		bool demoted = false;
		for (StaticMapping &sm : rec->mappings) {
			if (!sm.pending.empty() || !watches_host_addrs(sm) ||
			    !mapping_active(sm, now_net) ||
			    !std::binary_search(host4.begin(), host4.end(), sm.m.ext_addr))
				continue;
			std::string why = "mapping '" + sm.m.str() + "': " +
					  format_ipv4(sm.m.ext_addr) + " is an address of this host";
			try {
				check_mapping(sm.m, {}, ctx);
			} catch (const Error &e) {
				why = e.what(); // as promote_pending words it
			}
			sm.pending = pending_reason(why);
			demoted = true;
			log_warn("mapping " + sm.m.str() + " taken out of the datapath: " + sm.pending);
		}
		// A domain's metadata mappings while libvirt does not run it
		// (after a crash no "stopped" hook came): out of the datapath
		// until its "started" hook makes them again.
		bool stopped = false;
		for (size_t k : demote_stopped_domains(
			     rec->mappings,
			     [&](const std::string &vm) {
				     return libvirt_domain_running(libvirt_root_, vm);
			     },
			     &stopped))
			log_warn("mapping " + rec->mappings[k].m.str() +
				 " vm=" + printable(rec->mappings[k].vm) +
				 " taken out of the datapath: " + rec->mappings[k].pending);
		demoted = demoted || stopped;
		bool changed = false;
		// A metadata mapping's claim as the hook checks it, against
		// the allow-list and the listeners as they are now, with the
		// force='yes' its domain or network declares.
		std::optional<MetadataClaims> claims;
		const auto claim_refusal = [&](const StaticMapping &sm) -> std::string {
			try {
				if (!claims)
					claims.emplace((*cfg)->metadata_allow, addr,
						       ctx.uplink_addr6);
				return claims->refusal(sm.m,
						       declared_metadata_force(libvirt_root_, sm));
			} catch (const Error &e) {
				return e.what();
			}
		};
		const auto made =
			promote_pending(rec->mappings, ctx, now_net, &changed, claim_refusal);
		if (changed || demoted) {
			for (size_t k : made) {
				const StaticMapping &sm = rec->mappings[k];
				// Taken without map add's probe: held until the daemon's.
				if (!sm.m.v6 && !sm.m.ext_uplink && sm.m.ext_addr != addr)
					hold_for_probe(extaddr_fd_.get(), sm.m.ext_addr);
				log_info("pending mapping made: " + sm.m.str() +
					 (sm.vm.empty() ? "" : " vm=" + printable(sm.vm)) +
					 (sm.libvirt_network.empty() ?
						  "" :
						  " network=" + printable(sm.libvirt_network)));
			}
			cfg->save();
		}
		i = rec;
	}
	ProbeVerdicts verdicts;
	for (const auto &[a, p] : probes_)
		if (p.verdict)
			verdicts[a] = *p.verdict;
	DadVerdicts dad;
	for (const auto &[a, p] : dads_)
		if (p.verdict)
			dad[a] = *p.verdict;
	auto r = apply_mappings({bind_fd_.get(), extaddr_fd_.get(), ct_fd_.get(), bind6_fd_.get(),
				 ct6_fd_.get(), cfg6_fd_.get(), extaddr6_fd_.get()},
				i->mappings, addr, net, false, verdicts, dad);
	probes_changed_ = false;
	for (const auto &e : r.errors)
		log_info("mapping: " + e);
	// --add-address: on the uplink while active, off while suspended.
	sync_added_addresses(i->mappings, inst_.uplink, net, r.held);
	start_probes(r);
	start_dads(r);
	if (synced_ && !(net == synced_net_)) {
		size_t active = 0;
		for (const auto &sm : i->mappings)
			active += mapping_active(sm, net) &&
				  (sm.m.ext_uplink || !r.held.count(sm.m.ext_addr));
		log_info("uplink network " + (net ? net->str() : std::string("none")) + ": " +
			 std::to_string(active) + " of " + std::to_string(i->mappings.size()) +
			 " mapping(s) active, the others suspended" +
			 (net && net->v6 ? "; IPv6 network " + net->v6->str() : std::string()));
	}
	if (r.bind_added || r.bind_deleted)
		log_verbose("mappings: " + std::to_string(r.bind_added) + " entr(ies) installed, " +
			    std::to_string(r.bind_deleted) + " removed, " +
			    std::to_string(r.ct_deleted) + " flow(s) dropped");
	cfg_sig_ = sig;
	synced_addr_ = addr;
	synced_addr6_ = addr6;
	synced_net_ = net;
	synced_shown_ = shown;
	synced_host4_ = host4;
	synced_ = true;
}

Daemon::~Daemon() = default;

bool Daemon::dad_retry_due() const
{
	const auto now = std::chrono::steady_clock::now();
	for (const auto &[a, p] : dads_)
		if (!p.probe && (p.verdict == DadVerdict::Duplicate || p.failures) &&
		    now >= p.retry_at)
			return true;
	return false;
}

void Daemon::dad_failed(const Ipv6Addr &a, Dad6 &p, const std::string &why)
{
	p.probe.reset();
	p.failures++;
	const int ms = dad_retry_ms(p.failures);
	p.retry_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	if (p.failures <= 1)
		log_info("duplicate address detection of " + format_ipv6(a) + ": " + why +
			 " (retried in " + std::to_string(ms / 1000) + " s)");
}

void Daemon::start_dads(const ApplyResult &r)
{
	std::optional<LinkInfo> up;
	auto uplink = [&]() -> const std::optional<LinkInfo> & {
		if (!up && !inst_.uplink.empty()) {
			NlSocket nl;
			up = find_link(nl, inst_.uplink);
		}
		return up;
	};
	for (const Ipv6Addr &a : r.announced6) {
		log_info("mapped address " + format_ipv6(a) +
			 ": duplicate address detection done, nobody has it: announced");
		dads_.erase(a);
		// RFC 4861 7.2.6: neighbours that hold another node's MAC for
		// it (the one that had it before) learn ours now.
		try {
			if (uplink())
				nd_announce(up->ifindex, a);
		} catch (const Error &e) {
			log_info("announcing " + format_ipv6(a) + ": " + e.what());
		}
	}
	// The LAN's solicitations for the announced addresses reach the
	// datapath through a NIC's multicast filter.
	try {
		nd_groups_.set(uplink() ? up->ifindex : 0, r.announced_all6);
	} catch (const Error &e) {
		log_info("joining the solicited-node groups of the mapped addresses: " +
			 std::string(e.what()));
	}
	for (auto it = dads_.begin(); it != dads_.end();)
		it = r.held6.count(it->first) ? std::next(it) : dads_.erase(it);
	const auto now = std::chrono::steady_clock::now();
	for (const auto &[a, flags] : r.held6) {
		Dad6 &p = dads_[a];
		if (p.probe ||
		    ((p.verdict == DadVerdict::Duplicate || p.failures) && now < p.retry_at))
			continue;
		if (!uplink())
			return; // the uplink is gone: the next event retries
		// A DAD on a dead link hears nothing and would pass: it waits
		// for carrier (its return syncs the mappings again).
		if (!((up->flags & IFF_UP) && (up->flags & IFF_RUNNING))) {
			if (!dad_no_carrier_logged_)
				log_info("uplink " + up->name +
					 " has no carrier: duplicate address detection of the "
					 "mapped IPv6 addresses waits for it");
			dad_no_carrier_logged_ = true;
			return;
		}
		dad_no_carrier_logged_ = false;
		if (!p.verdict && !p.failures)
			log_info("mapped address " + format_ipv6(a) +
				 ": duplicate address detection (RFC 4862) before it is announced");
		try {
			p.probe = std::make_unique<DadProber>(
				up->ifindex, a, uplink_dad_transmits(up->ifindex, sysctl_root_));
			p.probe->step();
		} catch (const Error &e) {
			dad_failed(a, p, e.what());
		}
	}
}

void Daemon::step_dads()
{
	using namespace std::chrono;
	for (auto &[a, p] : dads_) {
		if (!p.probe)
			continue;
		bool done;
		try {
			done = p.probe->step();
		} catch (const Error &e) {
			dad_failed(a, p, e.what()); // retried by the sync at retry_at
			continue;
		}
		if (!done)
			continue;
		if (p.probe->no_carrier()) {
			// No verdict: again once carrier is back (its return
			// restarts every DAD at once: dad_link_update).
			dad_failed(a, p, "the uplink lost its carrier");
			continue;
		}
		p.failures = 0;
		if (auto mac = p.probe->duplicate()) {
			p.conflicts++;
			const int ms = dad_retry_ms(p.conflicts);
			p.retry_at = steady_clock::now() + milliseconds(ms);
			if (p.verdict != DadVerdict::Duplicate || p.conflicts <= 1)
				log_info("mapped address " + format_ipv6(a) + " is in use by " +
					 format_mac(*mac) +
					 " on the uplink's network: not announced (conflict), "
					 "checked again in " +
					 std::to_string(ms / 1000) + " s");
			p.verdict = DadVerdict::Duplicate;
		} else {
			p.verdict = DadVerdict::Free;
		}
		p.probe.reset();
		probes_changed_ = true;
	}
}

bool Daemon::probe_retry_due() const
{
	const auto now = std::chrono::steady_clock::now();
	for (const auto &[a, p] : probes_)
		if (!p.probe && p.verdict == ProbeVerdict::Conflict && now >= p.retry_at)
			return true;
	return false;
}

void Daemon::start_probes(const ApplyResult &r)
{
	for (uint32_t a : r.resumed) {
		log_info("mapped address " + format_ipv4(a) +
			 ": nobody answered the probe, resumed on its network");
		probes_.erase(a);
		// RFC 5227 2.3: announce, so that neighbours holding another
		// host's MAC for it (from while we were away) update now.
		try {
			NlSocket nl;
			if (auto up = find_link(nl, inst_.uplink))
				arp_announce(up->ifindex, up->mac, a);
		} catch (const Error &e) {
			log_info("announcing " + format_ipv4(a) + ": " + e.what());
		}
	}
	for (auto it = probes_.begin(); it != probes_.end();)
		it = r.held.count(it->first) ? std::next(it) : probes_.erase(it);
	const auto now = std::chrono::steady_clock::now();
	std::optional<LinkInfo> up;
	for (const auto &[a, why] : r.held) {
		ResumeProbe &p = probes_[a];
		if (p.probe || (p.verdict == ProbeVerdict::Conflict && now < p.retry_at))
			continue;
		if (!up) {
			NlSocket nl;
			up = find_link(nl, inst_.uplink);
			if (!up)
				return; // the uplink is gone: the next event retries
		}
		if (!p.verdict)
			log_info("mapped address " + format_ipv4(a) +
				 " is back on its network: probing it (RFC 5227) before resuming");
		p.probe = std::make_unique<ArpProber>(up->ifindex, up->mac, a);
		p.probe->step();
	}
}

void Daemon::step_probes()
{
	using namespace std::chrono;
	for (auto &[a, p] : probes_) {
		if (!p.probe)
			continue;
		bool done;
		try {
			done = p.probe->step();
		} catch (const Error &e) {
			// The uplink went away under the socket: try again later.
			log_info("probing " + format_ipv4(a) + ": " + e.what());
			p.probe.reset();
			continue;
		}
		if (!done)
			continue;
		if (auto mac = p.probe->conflict()) {
			p.conflicts++;
			const int ms = std::min(kProbeRetryMaxMs,
						kProbeRetryMinMs << std::min(p.conflicts - 1, 4));
			p.retry_at = steady_clock::now() + milliseconds(ms);
			if (p.verdict != ProbeVerdict::Conflict || p.conflicts <= 1)
				log_info("mapped address " + format_ipv4(a) + " is in use by " +
					 format_mac(*mac) +
					 " on its network: its mappings stay suspended (conflict), "
					 "probed again in " +
					 std::to_string(ms / 1000) + " s");
			p.verdict = ProbeVerdict::Conflict;
		} else {
			p.verdict = ProbeVerdict::Free;
		}
		p.probe.reset();
		probes_changed_ = true;
	}
}

void Daemon::follow_default_route(NlSocket &nl)
{
	auto route = choose_uplink_route(ipv4_routes(nl), {bridge_ifindex_});
	// No default route (suspended, WiFi reconnecting, cable pulled with
	// nothing else up): the uplink stays where it is, so that a short
	// outage neither moves the hook nor flushes a flow.
	if (!route)
		return;
	std::optional<LinkInfo> link;
	try {
		link = find_link_by_index(nl, route->ifindex);
	} catch (const Error &e) {
		// A device kvmxdp cannot name (check_ifname) is never recorded
		// as the uplink.
		throw Error("default route via ifindex " + std::to_string(route->ifindex) + ": " +
			    e.what() + "; staying on " +
			    (inst_.uplink.empty() ? "none" : inst_.uplink));
	}
	// The same name with a new ifindex is a re-created device: the
	// re-attach in refresh_uplink handles it.
	if (!link || link->name == inst_.uplink)
		return;
	// Under the config lock from the first change to the record, so a
	// concurrent detach sees either the old device or the new one with
	// our filter on it.  Busy: the next event or tick retries.
	auto conf = try_config("the default route not followed");
	if (!conf)
		return;
	Instance *rec = (*conf)->find(inst_.bridge);
	if (!rec)
		return; // being detached
	for (const Instance &o : (*conf)->instances)
		if (o.bridge != inst_.bridge && o.uplink == link->name) {
			if (refused_uplink_ != link->name)
				log_info("default route via " + link->name +
					 ", the uplink of the kvmxdp instance of bridge '" +
					 o.bridge + "': staying on " +
					 (inst_.uplink.empty() ? "none" : inst_.uplink));
			refused_uplink_ = link->name;
			return;
		}
	refused_uplink_.clear();
	const std::string old_name = inst_.uplink;
	log_info("default route moved to " + link->name + ": uplink " +
		 (old_name.empty() ? "none" : old_name) + " -> " + link->name);

	// New hook first: the bridge program drops what the route lookup
	// sends elsewhere than cfg.uplink_ifindex (DROP_OTHER_IFACE) until
	// the cfg below names the new device.
	bool created =
		tc_attach_ingress(link->ifindex, link->name, skel_.prog_fd("kvx_up_ingress"));
	uint32_t addr_be = 0;
	if (auto a = primary_ipv4(ipv4_addrs(nl, link->ifindex)))
		addr_be = htonl(a->addr);
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	uint32_t old_addr = cfg.uplink_addr;
	cfg.uplink_ifindex = static_cast<__u32>(link->ifindex);
	cfg.uplink_addr = addr_be;
	std::memcpy(cfg.uplink_mac, link->mac.data(), sizeof(cfg.uplink_mac));
	write_cfg(cfg_fd_.get(), cfg);

	// Our filter leaves the old device (and the clsact, if it was ours
	// and nobody else's filter is on it); the device may be gone.
	if (!old_name.empty()) {
		try {
			tc_remove_ingress(nl, old_name, inst_.clsact_created_uplink);
		} catch (const Error &e) {
			log_info("removing the filter from " + old_name + ": " + e.what());
		}
	}
	// --add-address addresses leave with the old device; the mapping
	// sync puts them on the new one if their network is there.
	if (!old_name.empty()) {
		Instance old = *rec;
		old.uplink = old_name;
		remove_added_addresses(old);
	}
	// The new uplink's accept_ra to 2 and the old one's back, as attach
	// does (control/attach.cpp uplink_accept_ra): the bridge's forwarding
	// would purge the new uplink's RA default route.
	if (read_cfg6(cfg6_fd_.get()).mode != KVX_V6_OFF) {
		try {
			hand_over_accept_ra(
				Sysctl(sysctl_root_), **conf, rec->bridge, rec->saved_accept_ra,
				rec->accept_ra_dev, link->name,
				[](const std::string &key, const std::string &old,
				   const std::string &value) {
					log_info(key + " " + old + " -> " + value +
						 (value == "2" ? " (the bridge's IPv6 forwarding "
								 "keeps its default route)" :
								 ""));
				});
		} catch (const Error &e) {
			log_warn("accept_ra on " + link->name + ": " + e.what());
		}
	}
	rec->uplink = link->name;
	rec->clsact_created_uplink = created;
	conf->save();
	inst_.uplink = link->name;
	inst_.clsact_created_uplink = created;
	uplink_ifindex_ = link->ifindex;
	if (old_addr != addr_be)
		counters_.uplink_addr_changes++;

	log_info("uplink " + link->name + " address " + addr_str(old_addr) + " -> " +
		 addr_str(addr_be));
	// As on an address change: flows bound to the old address can never
	// get a reply through the new device.
	if (old_addr && old_addr != addr_be) {
		auto r = flush_ext_addr(ct_fd_.get(), bind_fd_.get(), old_addr);
		log_info("flushed " + std::to_string(r.ct_deleted) + " flow(s) and " +
			 std::to_string(r.bind_deleted) + " binding entr(ies) of " +
			 addr_str(old_addr));
	}
}

void Daemon::refresh_uplink(NlSocket &nl)
{
	if (clsact_unrecorded_)
		step("record the uplink's clsact", [&] { record_uplink_clsact(); });
	if (inst_.uplink_auto)
		step("following the default route", [&] { follow_default_route(nl); });
	// --uplink auto before any default route: kvx_cfg has no uplink
	// (ifindex 0, address 0): guest traffic to the outside is dropped.
	if (inst_.uplink.empty())
		return;
	auto link = find_link(nl, inst_.uplink);
	uint32_t addr_be = 0;
	std::optional<Ipv4Net> overlap;
	if (link) {
		const std::vector<IfAddr> addrs = ipv4_addrs(nl, link->ifindex);
		if (auto a = primary_ipv4(addrs))
			addr_be = htonl(a->addr);
		overlap = uplink_overlap(addrs, link->ifindex, inst_.subnet);
	}
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	bool dirty = false;
	// A lease into the guest subnet's range: translating would take the
	// host's own LAN traffic (attach refuses this; DHCP does not ask).
	const bool was_overlap = cfg.flags & KVX_CFG_F_OVERLAP;
	if (overlap.has_value() != was_overlap) {
		cfg.flags ^= KVX_CFG_F_OVERLAP;
		dirty = true;
		if (overlap)
			log_warn("uplink " + inst_.uplink + " network " + overlap->str() +
				 " overlaps the guest subnet " + inst_.subnet.str() +
				 ": translation stopped (every packet to the kernel) until it "
				 "leaves that network");
		else
			log_info("uplink " + inst_.uplink +
				 " no longer overlaps the guest subnet: translation resumed");
	}
	if (link && link->ifindex != uplink_ifindex_) {
		// The uplink was re-created (a new ifindex): its TC filter went
		// with the old device, so attach ours to the new one.
		step("re-attach to the uplink", [&] {
			bool created = tc_attach_ingress(link->ifindex, inst_.uplink,
							 skel_.prog_fd("kvx_up_ingress"));
			log_info("uplink " + inst_.uplink + " is back as ifindex " +
				 std::to_string(link->ifindex) + ": re-attached");
			if (created && !inst_.clsact_created_uplink) {
				inst_.clsact_created_uplink = true;
				clsact_unrecorded_ = true;
				record_uplink_clsact();
			}
			uplink_ifindex_ = link->ifindex;
			cfg.uplink_ifindex = static_cast<__u32>(link->ifindex);
			dirty = true;
		});
	}
	// A re-created uplink (or a changed MAC) changes the source MAC of
	// the ARP replies the datapath sends for mapped addresses.
	if (link && std::memcmp(cfg.uplink_mac, link->mac.data(), sizeof(cfg.uplink_mac)) != 0) {
		std::memcpy(cfg.uplink_mac, link->mac.data(), sizeof(cfg.uplink_mac));
		dirty = true;
	}
	uint32_t old = cfg.uplink_addr;
	if (addr_be != old) {
		cfg.uplink_addr = addr_be;
		dirty = true;
	}
	if (dirty)
		write_cfg(cfg_fd_.get(), cfg);
	if (addr_be != old) {
		counters_.uplink_addr_changes++;
		log_info("uplink " + inst_.uplink + " address " + addr_str(old) + " -> " +
			 addr_str(addr_be));
		// Written first, flushed second: new flows already use the new
		// address while the old ones go (einat#34: never stay at 0).
		auto r = flush_ext_addr(ct_fd_.get(), bind_fd_.get(), old);
		if (r.ct_deleted || r.bind_deleted)
			log_info("flushed " + std::to_string(r.ct_deleted) + " flow(s) and " +
				 std::to_string(r.bind_deleted) + " binding entr(ies) of " +
				 addr_str(old));
	}
}

void Daemon::refresh_uplink6(NlSocket &nl)
{
	std::string sig = "none (no uplink device)";
	std::optional<LinkInfo> link;
	if (!inst_.uplink.empty())
		link = find_link(nl, inst_.uplink);
	Ipv6Addr addr{};
	kvx_cfg6 cfg = read_cfg6(cfg6_fd_.get());
	const Ipv6Addr old = addr6_of(cfg.uplink_addr);
	std::optional<Ipv6Net> relay_prefix;
	if (link) {
		// The address in use stays while it is still good (choose_uplink_ipv6
		// keep): a change flushes every IPv6 flow.
		const Uplink6View v = read_uplink6(
			nl, link->ifindex,
			old != Ipv6Addr{} ? std::optional<Ipv6Addr>(old) : std::nullopt);
		sig = v.summary();
		if (v.choice.addr)
			addr = v.choice.addr->addr;
		const std::vector<Ipv6Route> routes = ipv6_routes(nl, link->ifindex);
		if (cfg.mode != KVX_V6_OFF)
			keep_default_route6(*link, routes);
		if (cfg.mode == KVX_V6_RELAY) {
			const std::vector<Ipv6IfAddr> up = ipv6_addrs(nl, link->ifindex);
			relay_prefix =
				follow_relay(*link, cfg, up, routes,
					     v.relay.possible ? v.relay.prefix : std::nullopt);
			refresh_relay(cfg, relay_prefix, host_addrs6(up));
			if (ra_)
				update_ra(nl, *link, up, relay_prefix);
		}
	}
	if (sig != uplink6_sig_) {
		// SLAAC renumbering, an address that goes or turns deprecated, a
		// new network: one line each.
		log_info("uplink " + (inst_.uplink.empty() ? std::string("none") : inst_.uplink) +
			 " IPv6: " + sig);
		uplink6_sig_ = sig;
	}
	// --uplink auto before any default route: kept, as for IPv4.
	if (inst_.uplink.empty())
		return;
	if (cfg.mode == KVX_V6_OFF || addr == old)
		return;
	std::memcpy(cfg.uplink_addr, addr.data(), sizeof(cfg.uplink_addr));
	write_cfg6(cfg6_fd_.get(), cfg);
	counters_.uplink_addr_changes++;
	log_info("uplink " + inst_.uplink + " IPv6 address " + addr6_str(old) + " -> " +
		 addr6_str(addr));
	// Written first, flushed second, as for IPv4: a flow bound to an
	// address the host no longer has can never get a reply, and its
	// port would be reused on the new address by nothing.
	auto r = flush_ext_addr6(ct6_fd_.get(), bind6_fd_.get(), old);
	if (r.ct_deleted || r.bind_deleted)
		log_info("flushed " + std::to_string(r.ct_deleted) + " IPv6 flow(s) and " +
			 std::to_string(r.bind_deleted) + " binding entr(ies) of " +
			 addr6_str(old));
}

std::optional<Ipv6Net> Daemon::follow_relay(const LinkInfo &uplink, const kvx_cfg6 &cfg,
					    const std::vector<Ipv6IfAddr> &up,
					    const std::vector<Ipv6Route> &routes,
					    const std::optional<Ipv6Net> &kernel_choice)
{
	const auto now = std::chrono::steady_clock::now();
	// Hearing nothing (no socket) only keeps the current prefix longer.
	try {
		if (ra_watch_.fd() < 0 || ra_watch_.ifindex() != uplink.ifindex)
			ra_watch_.open(uplink.ifindex, uplink.name);
	} catch (const Error &e) {
		log_verbose(std::string("relay: router advertisements on the uplink: ") + e.what());
	}
	std::vector<Ipv6Addr> routers;
	for (const Ipv6Route &r : routes)
		if (r.gateway && r.dst.prefix == 0)
			routers.push_back(r.via);
	// Before deciding: an RA that renumbers reaches this socket before
	// the kernel's address event that brought us here.
	if (ra_watch_.fd() >= 0)
		ra_watch_.receive(now, routers);
	const std::optional<Ipv6Net> current = net6_of(cfg.relay_prefix, cfg.relay_len);
	std::vector<Ipv6Net> slaac;
	for (const Ipv6Prefix &p : onlink_prefixes(up, routes))
		if (p.autoconf && p.net.prefix == 64)
			slaac.push_back(p.net);
	// Deprecated: the uplink has SLAAC addresses in it, none preferred.
	bool current_deprecated = false;
	if (current) {
		size_t in = 0, gone = 0;
		for (const Ipv6IfAddr &a : up)
			if (a.scope == RT_SCOPE_UNIVERSE && !(a.flags & IFA_F_PERMANENT) &&
			    current->contains(a.addr)) {
				in++;
				gone += (a.flags & IFA_F_DEPRECATED) || a.preferred == 0 ? 1 : 0;
			}
		current_deprecated = in && gone == in;
	}
	const RelayFollow f = follow_relay_prefix(current, kernel_choice, slaac, routers,
						  ra_watch_.heard(now), current_deprecated);
	if (f.refused && f.refused != relay_refused_)
		log_warn("relay: the uplink also has prefix " + f.refused->str() +
			 " from a router advertisement that no router of the host's default "
			 "route sent along with " +
			 current->str() + " (a LAN host's?): relay keeps " + current->str());
	relay_refused_ = f.refused;
	// A real renumbering shows in the default router's answer.
	if (f.solicit && now - relay_rs_at_ >= std::chrono::seconds(60)) {
		relay_rs_at_ = now;
		try {
			solicit_routers(uplink.ifindex);
		} catch (const Error &e) {
			log_verbose(std::string("relay: ") + e.what());
		}
	}
	return f.prefix;
}

void Daemon::keep_default_route6(const LinkInfo &uplink, const std::vector<Ipv6Route> &routes)
{
	const bool has = std::any_of(routes.begin(), routes.end(), [](const Ipv6Route &r) {
		return r.gateway && r.dst.prefix == 0;
	});
	const auto now = std::chrono::steady_clock::now();
	if (has) {
		if (rs_sent_)
			log_info("uplink " + uplink.name + ": IPv6 default route back after " +
				 std::to_string(rs_sent_) + " router solicitation(s)");
		had_default6_ = true;
		rs_sent_ = 0;
		return;
	}
	// A network without an IPv6 router has nothing to ask.
	if (!had_default6_)
		return;
	const auto gap = rs_sent_ < 3 ? std::chrono::seconds(4) : std::chrono::seconds(60);
	if (rs_sent_ && now - rs_at_ < gap)
		return;
	if (!rs_sent_)
		log_info("uplink " + uplink.name +
			 ": IPv6 default route gone: soliciting the routers");
	rs_at_ = now;
	rs_sent_++;
	try {
		solicit_routers(uplink.ifindex);
	} catch (const Error &e) {
		log_verbose(std::string("IPv6 default route: ") + e.what());
	}
}

void Daemon::refresh_relay(kvx_cfg6 &cfg, const std::optional<Ipv6Net> &prefix,
			   const std::vector<Ipv6Addr> &host_addrs)
{
	const std::optional<Ipv6Net> was = net6_of(cfg.relay_prefix, cfg.relay_len);
	if (prefix != was) {
		// Renumbered or another network: the datapath forwards the new
		// prefix at once (length 0: nothing, the network allows no
		// relay now); the guests' addresses in the old one are forgotten
		// below, so that nothing is delivered to or answered for them.
		std::memset(cfg.relay_prefix, 0, sizeof(cfg.relay_prefix));
		cfg.relay_len = 0;
		if (prefix) {
			std::memcpy(cfg.relay_prefix, prefix->addr.data(),
				    sizeof(cfg.relay_prefix));
			cfg.relay_len = prefix->prefix;
		}
		write_cfg6(cfg6_fd_.get(), cfg);
		log_info("relay prefix " + (was ? was->str() : std::string("none")) + " -> " +
			 (prefix ? prefix->str() :
				   std::string("none (the network allows no relay)")));
	}
	const NdSyncResult r = sync_nd(nd_fd_.get(), prefix, host_addrs);
	if (r.deleted)
		log_info("relay: forgot " + std::to_string(r.deleted) + " address(es) outside " +
			 (prefix ? prefix->str() : std::string("any prefix")));
}

// Where each guest MAC is (kvx_brport): the limit on a guest's IPv6
// addresses (both modes) and relay's probes count per bridge port; the
// addresses of a guest whose port went (its VM destroyed) are free at once.
// Every mode, IPv6 off too (IPv4's owners).
void Daemon::sync_owner_ports(NlSocket &nl)
{
	char name[IF_NAMESIZE];
	// A bridge re-created since the last refresh (the "bridge" step
	// follows it): its ports are read next time.
	if (!bridge_ifindex_ || !::if_indextoname(static_cast<unsigned>(bridge_ifindex_), name))
		return;
	const bool v6 = read_cfg6(cfg6_fd_.get()).mode != KVX_V6_OFF;
	const uint64_t now = boottime_ns();
	guard_.on = inst_.port_guard;
	const BrportSyncResult b = sync_brport(nl, bridge_ifindex_, skel_.map_fd(KVX_MAP_BRPORT),
					       v6 ? nd_fd_.get() : -1, skel_.map_fd(KVX_MAP_GUEST),
					       now, skel_.map_fd(KVX_MAP_BIND),
					       v6 ? skel_.map_fd(KVX_MAP_BIND6) : -1, &guard_);
	// The guard's lease (abi.h kvx_guard): the flags just written hold
	// for KVX_GUARD_LEASE_NS, and lapse if this daemon stops.
	const __u32 zero = 0;
	const __u64 until = guard_.on ? now + KVX_GUARD_LEASE_NS : 0;
	check_libbpf(bpf_map_update_elem(skel_.map_fd(KVX_MAP_GUARD), &zero, &until, BPF_ANY),
		     "update", KVX_MAP_GUARD);
	if (b.held_changed)
		log_verbose("port guard: " + std::to_string(b.held_changed) +
			    " guest MAC(s) held or let go by their ports");
	if (b.released || b.released4)
		log_info(
			"released the addresses of guest MACs whose bridge port went: " +
			std::to_string(b.released4) + " IPv4, " + std::to_string(b.released) +
			" IPv6; bindings that no longer deliver to the MAC: " +
			std::to_string(b.unbound4) + " IPv4, " + std::to_string(b.unbound6) +
			" IPv6; neighbour entries forgotten: " + std::to_string(b.neigh_forgotten));
	if (b.gone4)
		log_info("guest MACs with a DHCP lease whose bridge port went (VM off): " +
			 std::to_string(b.gone4) +
			 " address(es) kept for the lease, delivered through the neighbour table "
			 "until the MAC is back");
	if (b.back4)
		log_verbose("guest MACs with a DHCP lease back on a bridge port: " +
			    std::to_string(b.back4) + " address(es)");
	if (b.added || b.moved || b.removed)
		log_verbose("ipv6: guest MACs on bridge ports: " + std::to_string(b.added) +
			    " added, " + std::to_string(b.moved) + " moved, " +
			    std::to_string(b.removed) + " removed");
	if (b.unplaced && !brport_unplaced_)
		log_warn(std::to_string(b.unplaced) + " MAC(s) on " + inst_.bridge +
			 " over their port's share of kvx_brport (the bridge has more than 3/4 of "
			 "its size in MACs: the ports with the most are cut): placed on no port "
			 "(a guest sending from made-up MACs?)");
	brport_unplaced_ = b.unplaced;
}

// NAT66's guest addresses (owner6.h): the host's own in the subnet (the
// bridge's) are no guest's, idle owners are forgotten (their ports: the
// "guest ports" step, sync_owner_ports).
void Daemon::sync_nat66_owners(NlSocket &nl)
{
	const kvx_cfg6 cfg = read_cfg6(cfg6_fd_.get());
	char name[IF_NAMESIZE];
	// A bridge re-created since the last refresh (the "bridge" step
	// follows it): its addresses and ports are read next time.
	if (cfg.mode != KVX_V6_NAT66 || !bridge_ifindex_ ||
	    !::if_indextoname(static_cast<unsigned>(bridge_ifindex_), name))
		return;
	const std::optional<Ipv6Net> subnet = net6_of(cfg.subnet, cfg.subnet_len);
	const NdSyncResult r =
		sync_nd(nd_fd_.get(), subnet, host_addrs6(ipv6_addrs(nl, bridge_ifindex_)));
	if (r.deleted)
		log_info("nat66: forgot " + std::to_string(r.deleted) + " address(es) outside " +
			 (subnet ? subnet->str() : std::string("any prefix")) +
			 " or no longer the host's");
	if (size_t n = expire_nd(nd_fd_.get(), boottime_ns()))
		log_info("nat66: forgot " + std::to_string(n) + " guest address(es) idle for " +
			 std::to_string(kNdExpireNs / 1000000000ULL) + " s");
}

void Daemon::sync_relay_routes(NlSocket &nl)
{
	const kvx_cfg6 cfg = read_cfg6(cfg6_fd_.get());
	if (cfg.mode != KVX_V6_RELAY) {
		if (relay_routes_clear_ || !bridge_ifindex_)
			return;
		if (size_t n = remove_relay_routes(nl, bridge_ifindex_))
			log_info("relay: removed " + std::to_string(n) + " route(s) to guests on " +
				 inst_.bridge);
		relay_routes_clear_ = true;
		return;
	}
	relay_routes_clear_ = false;
	if (!bridge_ifindex_)
		return;
	const std::optional<Ipv6Net> prefix = net6_of(cfg.relay_prefix, cfg.relay_len);
	const RelayRoutesResult r =
		kvmxdp::sync_relay_routes(nl, bridge_ifindex_, nd_fd_.get(), prefix, boottime_ns());
	if (r.expired)
		log_info("relay: forgot " + std::to_string(r.expired) +
			 " guest address(es) idle for " +
			 std::to_string(kNdExpireNs / 1000000000ULL) + " s");
	if (r.added || r.removed)
		log_verbose("relay: routes to guests on " + inst_.bridge + ": " +
			    std::to_string(r.added) + " added, " + std::to_string(r.removed) +
			    " removed");
	// Addresses guests sent from without their own DAD: ours.
	ProbeCounters pc;
	pc.gaddrs_fd = skel_.map_fd(KVX_MAP_GADDRS);
	pc.brport_fd = skel_.map_fd(KVX_MAP_BRPORT);
	pc.seed = read_cfg(cfg_fd_.get()).guest_seed;
	const ProbeResult pr = probe_relay_claims(nd_fd_.get(), uplink_ifindex_, boottime_ns(), pc);
	if (pr.probed)
		log_verbose("relay: duplicate address detection on the uplink for " +
			    std::to_string(pr.probed) + " address(es) a guest sent from unclaimed");
	if (pr.failed)
		log_verbose("relay: " + std::to_string(pr.failed) +
			    " probe(s) not sent, their claims forgotten: " + pr.error);
}

void Daemon::update_ra(NlSocket &nl, const LinkInfo &uplink, const std::vector<Ipv6IfAddr> &up,
		       const std::optional<Ipv6Net> &prefix)
{
	std::optional<RaPrefix> p;
	if (prefix) {
		// The lifetimes left of the uplink's own addresses in it (what
		// the LAN's router gave the host): the guests' end with them.
		p = RaPrefix{*prefix, 0, 0};
		for (const Ipv6IfAddr &a : up)
			if (prefix->contains(a.addr) && !(a.flags & IFA_F_TEMPORARY)) {
				p->valid = std::max(p->valid, a.valid);
				p->preferred = std::max(p->preferred, a.preferred);
			}
	}
	const std::optional<LinkInfo> br = find_link(nl, inst_.bridge);
	if (!br) {
		ra_->update(0, std::nullopt, {}, p, 0, std::chrono::steady_clock::now());
		return;
	}
	ra_->update(br->ifindex, link_local_of(ipv6_addrs(nl, br->ifindex)), br->mac, p, uplink.mtu,
		    std::chrono::steady_clock::now());
}

void Daemon::note_foreign_router()
{
	if (ra_->foreign() == ra_foreign_ || state_prefix_.empty())
		return;
	const std::string path = state_prefix_ + ".ra_foreign";
	if (ra_->foreign().empty()) {
		if (::unlink(path.c_str()) < 0 && errno != ENOENT)
			throw_errno("remove", path);
	} else {
		atomic_write_file(path, ra_->foreign() + "\n", 0644);
	}
	ra_foreign_ = ra_->foreign();
}

std::optional<LockedConfig> Daemon::try_config(const char *what)
{
	using namespace std::chrono;
	auto cfg = LockedConfig::try_lock(config_path_);
	const auto now = steady_clock::now();
	if (cfg) {
		config_busy_since_.reset();
		steps_.ok(what);
		return cfg;
	}
	// Commands hold it for a moment (attach of another bridge: seconds):
	// only a longer hold is worth a line, then logged as a failing step.
	if (!config_busy_since_)
		config_busy_since_ = now;
	if (now - *config_busy_since_ >= seconds(10)) {
		const std::string lock = ConfigStore(config_path_).lock_path();
		steps_.failed(what, "config lock " + lock + " held by " +
					    describe_lock_holders(lock) + ", retrying every tick");
	}
	return std::nullopt;
}

void Daemon::record_uplink_clsact()
{
	try {
		auto cfg = try_config("the uplink's new clsact not recorded");
		if (!cfg)
			return;
		if (Instance *i = (*cfg)->find(inst_.bridge)) {
			i->clsact_created_uplink = true;
			cfg->save();
		}
		clsact_unrecorded_ = false;
	} catch (const Error &e) {
		// Only cost: detach leaves an empty clsact qdisc behind.
		clsact_unrecorded_ = false;
		log_info(std::string("recording the uplink's clsact in the config: ") + e.what());
	}
}

void Daemon::sync_xdp(NlSocket &nl)
{
	if (!xdp_)
		return;
	std::string sig;
	std::vector<std::string> lines;
	for (const XdpDevice &d : xdp_->sync(nl, bridge_ifindex_, uplink_ifindex_)) {
		lines.push_back(d.describe());
		sig += lines.back() + "\n";
	}
	if (sig == xdp_sig_)
		return;
	xdp_sig_ = sig;
	for (const auto &l : lines)
		log_verbose("xdp: " + l);
	// A port whose learning went off or that got locked must not keep
	// what XDP learnt on it until the next GC tick: kvx_xfdb follows the
	// bridge's entries there from now on.
	xdp_->sync_fdb(bridge_ifindex_, boottime_ns());
}

void Daemon::sync_tunnels(NlSocket &nl)
{
	auto r = sync_host_tunnels(hosttun_fd_.get(), host_tunnels(nl));
	if (r.added || r.removed)
		log_info("host tunnels: " + std::to_string(r.added) + " peer(s) added, " +
			 std::to_string(r.removed) + " removed (guests' packets to them dropped)");
	// The host's addresses change with its links (a VPN up, a container
	// network): each address event brings a refresh.
	const HostAddrSync a = sync_host_addrs(
		hostaddr_fd_.get(), host_martian_sources(host_ipv4_ifaddrs(nl), uplink_ifindex_));
	if (a.added || a.removed)
		log_verbose("host addresses: " + std::to_string(a.added) + " added, " +
			    std::to_string(a.removed) +
			    " removed (martian sources from the uplink)" +
			    (a.left_out ? ", " + std::to_string(a.left_out) +
						  " past the map's size not checked" :
					  std::string()));
}

void Daemon::refresh(NlSocket &nl, bool heal)
{
	// Each step on its own: an invalid config stops only the mapping
	// sync, a failed netlink dump only its step.
	step("uplink", [&] { refresh_uplink(nl); });
	step("uplink ipv6", [&] { refresh_uplink6(nl); });
	step("ipv6 owners", [&] { sync_nat66_owners(nl); });
	step("relay routes", [&] { sync_relay_routes(nl); });
	step("guest ports", [&] { sync_owner_ports(nl); });
	step("bridge", [&] { refresh_bridge(nl); });
	step("mappings", [&] { sync_mappings(nl, heal); });
	step("xdp", [&] { sync_xdp(nl); });
	step("host tunnels", [&] { sync_tunnels(nl); });
	step("dhcp leases", [&] { sync_dhcp_leases(); });
}

void Daemon::sync_dhcp_leases()
{
	if (leases_path_.empty())
		return;
	struct stat st {};
	// A missing file (no libvirt, no lease yet) is no lease at all.
	const bool exists = ::stat(leases_path_.c_str(), &st) == 0;
	const std::string sig = exists ? std::to_string(st.st_ino) + "/" +
						 std::to_string(st.st_size) + "/" +
						 std::to_string(st.st_mtim.tv_sec) + "." +
						 std::to_string(st.st_mtim.tv_nsec) :
					 "";
	const auto now = std::chrono::steady_clock::now();
	if (sig == leases_sig_ && now - leases_read_ < std::chrono::milliseconds(kLeasesRereadMs))
		return;
	std::vector<Lease> leases;
	if (exists)
		if (auto text = read_file(leases_path_))
			leases = parse_libvirt_leases(*text, leases_path_);
	const kvx_cfg cfg = read_cfg(cfg_fd_.get());
	LeaseSync r = sync_leases(skel_.map_fd(KVX_MAP_GUEST), leases, cfg.subnet_addr,
				  cfg.subnet_mask, static_cast<int64_t>(::time(nullptr)),
				  boottime_ns());
	// The bindings that delivered to the old owner forget its MAC: a port
	// forward to the address would go on delivering to it, and the
	// lease's guest, which never gets those packets, never re-teaches it.
	std::set<std::pair<__be32, MacAddr>> taken;
	for (const LeaseTakeover &t : r.taken)
		taken.emplace(htonl(t.addr), t.owner_mac);
	if (!taken.empty())
		forget_guest_macs(skel_.map_fd(KVX_MAP_BIND), taken);
	// Once: the address is the lease's from now on, which no frame changes.
	for (const LeaseTakeover &t : r.taken)
		log_warn("dhcp lease: " + format_ipv4(t.addr) + " is leased to " +
			 format_mac(t.lease_mac) + ", and taken from " + format_mac(t.owner_mac) +
			 ", which sent from it " + std::to_string(t.idle_ns / 1000000000) +
			 " s ago (a static address in the DHCP range? its frames from it are "
			 "dropped now, DROP_SPOOF_MAC)");
	if (sig != leases_sig_)
		log_verbose("dhcp leases " + leases_path_ + ": " + std::to_string(r.leased) +
			    " address(es) owned by their lease, " + std::to_string(r.released) +
			    " released");
	if (!follow_guest_leases(leases))
		return;
	leases_sig_ = sig;
	leases_read_ = now;
}

bool Daemon::follow_guest_leases(const std::vector<Lease> &leases)
{
	const int64_t now = static_cast<int64_t>(::time(nullptr));
	// Without the lock first: most instances have no such mapping.
	{
		const Config c = ConfigStore(config_path_).load();
		const Instance *i = c.find(inst_.bridge);
		if (!i)
			return true;
		std::vector<StaticMapping> ms = i->mappings;
		std::vector<std::string> held;
		const bool none = follow_leases(ms, leases, now, &held).empty();
		// Said once per change, not at every re-read of the file.
		std::string said;
		for (const auto &h : held)
			said += h + "\n";
		if (said != leases_held_ && !held.empty())
			for (const auto &h : held)
				log_warn("dhcp lease: " + h);
		leases_held_ = said;
		if (none)
			return true;
	}
	auto cfg = try_config("mappings not moved to their guests' new leases");
	if (!cfg)
		return false;
	Instance *i = (*cfg)->find(inst_.bridge);
	if (!i)
		return true;
	std::vector<StaticMapping> ms = i->mappings;
	auto moved = follow_leases(ms, leases, now);
	// The new address may be another mapping's guest by now: the lease
	// file says whose it is (model hold_clashing), the other waits
	// (pending) until the clash is gone.
	std::vector<size_t> idx;
	for (size_t k = 0; k < ms.size(); k++)
		if (ms[k].m.guest_addr != i->mappings[k].m.guest_addr)
			idx.push_back(k);
	MappingContext ctx;
	ctx.subnet = i->subnet;
	ctx.nat_ports = i->nat_guard();
	ctx.force = true;
	ctx.subnet6 = i->subnet6;
	ctx.subnet6_unknown_ok = true;
	const auto held = hold_clashing(ms, idx, ctx, leases, now);
	try {
		check_recorded_mappings(ms, i->subnet, i->nat_guard(), i->subnet6);
	} catch (const Error &e) {
		log_warn(std::string("a guest's new lease: mappings not moved: ") + e.what());
		return true;
	}
	i->mappings = ms;
	cfg->save();
	for (const auto &m : moved)
		log_info("dhcp lease moved: " + m);
	for (const auto &h : held)
		log_warn("mapping suspended: " + h);
	// Applied by the mapping sync (the config changed).
	return true;
}

void Daemon::collect_garbage()
{
	kvx_cfg cfg = read_cfg(cfg_fd_.get());
	const auto t0 = std::chrono::steady_clock::now();
	// IPv6 first: the IPv4 sweep's recount counts the flows it leaves.
	step("gc ipv6", [&] {
		auto r6 = gc_sweep6(ct6_fd_.get(), bind6_fd_.get(), cfg.timeouts, boottime_ns());
		if (r6.ct_deleted || r6.bind_deleted)
			log_verbose("gc: " + std::to_string(r6.ct_deleted) + " IPv6 flow(s), " +
				    std::to_string(r6.bind_deleted) + " binding entr(ies) expired");
	});
	// The per-guest flow counters are recounted at every sweep (control/gc.hpp),
	// from both families' flows.
	const QuotaMaps quota{skel_.map_fd(KVX_MAP_GFLOWS),
			      skel_.map_fd(KVX_MAP_GUEST),
			      cfg.guest_seed,
			      ct6_fd_.get(),
			      bind6_fd_.get(),
			      nd_fd_.get(),
			      skel_.map_fd(KVX_MAP_BRPORT)};
	auto r = gc_sweep(ct_fd_.get(), bind_fd_.get(), cfg.timeouts, boottime_ns(), quota);
	// A guest near its quota: its closed flows give way in both tables
	// (the datapath's reclaim sees only the family it inserts into).
	step("gc closed flows", [&] {
		auto rr = quota_relief(ct_fd_.get(), quota, cfg.flow_quota, boottime_ns());
		if (rr.deleted)
			log_verbose("gc: " + std::to_string(rr.deleted) + " closed flow(s) of " +
				    std::to_string(rr.guests) + " guest(s) near their quota released");
	});
	// Port overlapping's claims go with their flows, tenants with their
	// claims, before the port counters are recounted.
	step("gc shared ports", [&] {
		auto o = ovl_sweep(ct_fd_.get(), bind_fd_.get(), skel_.map_fd(KVX_MAP_OVL),
				   boottime_ns(), ovl_scan_);
		ovl_scan_ = o.shared_left;
		if (o.claims_deleted || o.tenants_deleted || o.unshared)
			log_verbose("gc: " + std::to_string(o.claims_deleted) +
				    " shared-port claim(s), " + std::to_string(o.tenants_deleted) +
				    " tenant binding(s) expired, " + std::to_string(o.unshared) +
				    " port(s) no longer shared");
	});
	const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
						      std::chrono::steady_clock::now() - t0)
						      .count());
	counters_.gc_runs++;
	counters_.gc_ns_total += ns;
	counters_.gc_last_ns = ns;
	// The port limit's counters, after the sweep's binding deletions.
	step("guest port counters",
	     [&] { gports_recount(bind_fd_.get(), skel_.map_fd(KVX_MAP_GPORTS), quota); });
	// Port overlapping's tenants per guest, after the sweep deleted some.
	step("guest tenant counters",
	     [&] { tenants_recount(bind_fd_.get(), skel_.map_fd(KVX_MAP_GTENANT), quota); });
	// Relay's addresses per guest, after the ticks' expiry and prefix
	// changes deleted some (control/relay.hpp).
	step("guest address counters",
	     [&] { gaddrs_recount(nd_fd_.get(), skel_.map_fd(KVX_MAP_GADDRS), quota); });
	// Host services that started or stopped since: their ports leave or
	// rejoin the NAT pool, and a guest's binding made there before the
	// service started is released (its live connections keep the port
	// until they end: release_host_ports).
	step("host listeners", [&] {
		const std::vector<uint64_t> bits = host_port_bitmap();
		write_portx(skel_.map_fd(KVX_MAP_PORTX), bits);
		const uint64_t now = boottime_ns();
		if (size_t n = release_host_ports(ct_fd_.get(), bind_fd_.get(), bits, now) +
			       release_host_ports6(ct6_fd_.get(), bind6_fd_.get(), bits, now))
			log_info(
				"host listeners: " + std::to_string(n) +
				" NAT binding entr(ies) on ports the host now listens on released");
	});
	if (xdp_)
		step("bridge forwarding database",
		     [&] { xdp_->sync_fdb(bridge_ifindex_, boottime_ns()); });
	if (r.ct_deleted || r.bind_deleted)
		log_verbose("gc: " + std::to_string(r.ct_deleted) + " flow(s), " +
			    std::to_string(r.bind_deleted) + " binding entr(ies) expired");
}

std::string Daemon::status_text() const
{
	return "bridge " + inst_.bridge + ", uplink " +
	       (inst_.uplink_auto ?
			"auto (" + (inst_.uplink.empty() ? "none" : inst_.uplink) + ")" :
			inst_.uplink) +
	       ": attached";
}

void Daemon::reload(NlSocket &nl)
{
	// RELOADING=1 ... READY=1 brackets the work, so that systemd shows the
	// unit as reloading meanwhile (MONOTONIC_USEC: what systemd 253's
	// Type=notify-reload wants with it; older ones ignore it).
	timespec ts{};
	::clock_gettime(CLOCK_MONOTONIC, &ts);
	reload_mark_.started++;
	write_reload_mark();
	sd_notify_state("RELOADING=1\nMONOTONIC_USEC=" +
			std::to_string(static_cast<uint64_t>(ts.tv_sec) * 1000000u +
				       static_cast<uint64_t>(ts.tv_nsec) / 1000u) +
			"\nSTATUS=reloading " + config_path_);
	log_info("SIGHUP: re-reading " + config_path_ + " (mappings) and the DHCP leases");
	// Re-read even when the files look unchanged (same mtime: an edit
	// within the timestamp's granularity, or a copy with preserved times).
	leases_sig_.clear();
	leases_read_ = {};
	refresh(nl, true);
	sd_notify_state("READY=1\nSTATUS=" + status_text());
	// Done: `kvmxdp reload` (the unit's ExecReload=) waits for this
	// (ReloadMark), so that `systemctl reload` returns once the config is
	// applied (systemd 252 ends a reload when ExecReload= exits; its
	// Type=notify-reload, which would wait for READY=1, is 253's).
	reload_mark_.done = reload_mark_.started;
	write_reload_mark();
}

std::string ReloadMark::str() const
{
	return std::to_string(pid) + " " + std::to_string(started) + " " + std::to_string(done) +
	       "\n";
}

std::optional<ReloadMark> parse_reload_mark(const std::string &text)
{
	std::istringstream in(text);
	ReloadMark m;
	std::string rest;
	if (!(in >> m.pid >> m.started >> m.done) || m.pid <= 0 || m.done > m.started ||
	    (in >> rest))
		return std::nullopt;
	return m;
}

void Daemon::write_reload_mark() const
{
	if (!state_prefix_.empty())
		atomic_write_file(state_prefix_ + ".reloads", reload_mark_.str(), 0644);
}

int Daemon::run()
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	// SIGHUP: reload (systemctl reload); blocked before READY=1 is sent,
	// since its default action would end the daemon.
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
	Fd sfd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
	if (!sfd)
		throw_errno("create", "signalfd");

	NlMonitor mon = NlMonitor::links_and_addresses();
	NlMonitor routes = NlMonitor::routes(); // --uplink auto follows the default route
	// IPsec SAs come and go with IKE rekeys: each change is a look at
	// the host's peers (kvx_hosttun); the periodic refresh covers a
	// kernel without NETLINK_XFRM.
	std::optional<NlMonitor> xfrm;
	try {
		xfrm.emplace(NlMonitor::xfrm_sas());
	} catch (const Error &e) {
		log_verbose(std::string("no xfrm events: ") + e.what());
	}
	// XDP delivers replies by kvx_xfdb, which follows the bridge's entries
	// on ports that do not learn: a deleted one (an 802.1X logoff) must
	// stop deliveries there now, not at the next GC tick.  Syncs are
	// spaced (kFdbSyncMs): a burst of deletions (a port flush, aging)
	// makes one.
	std::optional<NlMonitor> fdb_mon;
	if (xdp_) {
		try {
			fdb_mon.emplace(NlMonitor::bridge_fdb_changes());
		} catch (const Error &e) {
			log_verbose(std::string("no bridge FDB events: ") + e.what());
		}
	}
	bool fdb_changed = false;
	NlSocket nl;
	using clock = std::chrono::steady_clock;
	auto next_fdb_sync = clock::now();
	auto next_gc = clock::now() + std::chrono::milliseconds(kGcIntervalMs);
	auto next_refresh = clock::now();
	auto next_heal = clock::now() + std::chrono::milliseconds(kMappingHealMs);
	// Type=notify: the datapath is attached (the caller did it) and the
	// signals are ours: the unit is started.  The watchdog is pinged from
	// this loop, so a daemon stuck in a step is restarted by systemd.
	const auto watchdog = sd_watchdog_interval();
	auto next_watchdog = clock::now();
	// An earlier daemon's count must not pass for this one's.
	reload_mark_.pid = ::getpid();
	write_reload_mark();
	sd_notify_state("READY=1\nSTATUS=" + status_text());

	for (;;) {
		auto now = clock::now();
		if (watchdog.count() && now >= next_watchdog) {
			sd_notify_state("WATCHDOG=1");
			next_watchdog = now + watchdog / 2;
		}
		if (now >= next_refresh) {
			// Safety net besides events (lost on overrun, or a
			// device that came back under the same name).
			bool heal = now >= next_heal;
			if (heal)
				next_heal = now + std::chrono::milliseconds(kMappingHealMs);
			refresh(nl, heal);
			next_refresh = now + std::chrono::milliseconds(kPollMs);
		}
		if (metrics_src_ && !metrics_ && now >= metrics_retry_at_)
			step("metrics", [&] { start_metrics(); });
		if (now >= next_gc) {
			step("gc", [&] { collect_garbage(); });
			next_gc = now + std::chrono::milliseconds(kGcIntervalMs);
		}
		if (fdb_changed && now >= next_fdb_sync) {
			fdb_changed = false;
			step("bridge forwarding database",
			     [&] { xdp_->sync_fdb(bridge_ifindex_, boottime_ns()); });
			next_fdb_sync = now + std::chrono::milliseconds(kFdbSyncMs);
		}
		auto deadline = std::min(next_refresh, next_gc);
		if (fdb_changed)
			deadline = std::min(deadline, next_fdb_sync);
		if (metrics_src_ && !metrics_)
			deadline = std::min(deadline, metrics_retry_at_);
		if (watchdog.count())
			deadline = std::min(deadline, next_watchdog);
		auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
										  clock::now());
		// Probes run beside everything else: their sockets are in the
		// same poll, their timers bound its wait.
		std::vector<pollfd> fds = {{sfd.get(), POLLIN, 0},
					   {mon.fd(), POLLIN, 0},
					   {routes.fd(), POLLIN, 0},
					   {xfrm ? xfrm->fd() : -1, POLLIN, 0},
					   {ra_ ? ra_->fd() : -1, POLLIN, 0},
					   {frag_ ? frag_->fd() : -1, POLLIN, 0},
					   {fdb_mon ? fdb_mon->fd() : -1, POLLIN, 0}};
		constexpr size_t kFixedFds = 7;
		int64_t wait_ms = wait.count();
		if (ra_)
			wait_ms = std::min<int64_t>(wait_ms, ra_->wait_ms(clock::now()));
		if (frag_)
			if (int64_t w = frag_->wait_ms(); w >= 0)
				wait_ms = std::min<int64_t>(wait_ms, w);
		for (const auto &[a, p] : probes_)
			if (p.probe) {
				fds.push_back({p.probe->fd(), POLLIN, 0});
				wait_ms = std::min<int64_t>(wait_ms, p.probe->wait_ms());
			}
		for (const auto &[a, p] : dads_)
			if (p.probe) {
				fds.push_back({p.probe->fd(), POLLIN, 0});
				wait_ms = std::min<int64_t>(wait_ms, p.probe->wait_ms());
			}
		int n = ::poll(fds.data(), fds.size(),
			       static_cast<int>(std::max<int64_t>(wait_ms, 0)));
		if (n < 0 && errno != EINTR)
			throw_errno("poll", "daemon");
		if (ra_)
			step("router advertisements", [&] {
				ra_->service(n > 0 && (fds[4].revents & POLLIN), clock::now());
				note_foreign_router();
			});
		if (frag_)
			step("fragments", [&] {
				FragMacSources macs;
				macs.next_hop = [&](int ifindex, uint32_t daddr) {
					return uplink_next_hop(nl, ifindex, daddr);
				};
				macs.neighbour = [&](int ifindex, uint32_t addr) {
					return neighbour_mac(nl, ifindex, ntohl(addr));
				};
				macs.next_hop6 = [&](int ifindex, const Ipv6Addr &daddr) {
					return uplink_next_hop6(nl, ifindex, daddr);
				};
				macs.neighbour6 = [&](int ifindex, const Ipv6Addr &addr) {
					return neighbour_mac6(nl, ifindex, addr);
				};
				frag_->service(n > 0 && (fds[5].revents & POLLIN), macs);
			});
		if (fds.size() > kFixedFds) {
			step_probes();
			step_dads();
			if (probes_changed_)
				step("mappings", [&] { sync_mappings(nl, false); });
		}
		if (n <= 0)
			continue;
		if (fds[0].revents & POLLIN) {
			signalfd_siginfo si{};
			(void)!::read(sfd.get(), &si, sizeof(si));
			if (si.ssi_signo == SIGHUP) {
				reload(nl);
				continue;
			}
			sd_notify_state("STOPPING=1\nSTATUS=stopping: the datapath stays attached");
			log_info("signal " + std::to_string(si.ssi_signo) +
				 ": control plane stops, datapath stays attached");
			return 0;
		}
		if (fds[6].revents & POLLIN) {
			// The bridge can be re-created under the daemon (a
			// libvirt network restarted): filter by today's.
			fdb_mon->only_bridge(bridge_ifindex_);
			if (fdb_mon->drain())
				fdb_changed = true;
		}
		bool route_event = (fds[2].revents & POLLIN) && routes.drain();
		if ((fds[3].revents & POLLIN) && xfrm->drain())
			step("host tunnels", [&] { sync_tunnels(nl); });
		if (((fds[1].revents & POLLIN) && mon.drain()) || route_event)
			refresh(nl, false);
	}
}

std::vector<LockHolder> instance_daemons(const std::string &pid_file, const DirFd *pin_dir)
{
	std::vector<LockHolder> out = LockHolder::of(pid_file);
	if (!pin_dir)
		return out;
	for (LockHolder &h : LockHolder::of(*pin_dir))
		if (std::none_of(out.begin(), out.end(),
				 [&](const LockHolder &o) { return o.pid() == h.pid(); }))
			out.push_back(std::move(h));
	return out;
}

} // namespace kvmxdp
