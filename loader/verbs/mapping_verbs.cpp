// SPDX-License-Identifier: GPL-2.0
#include "verbs/mapping_verbs.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/caps.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/rollback.hpp"
#include "control/mapping_sync.hpp"
#include "control/uplink6.hpp"
#include "control/resume.hpp"
#include "kernel/arp.hpp"
#include "control/dad.hpp"
#include "control/guest_stats.hpp"
#include "kernel/maps.hpp"
#include "kernel/netlink.hpp"
#include "kernel/sockets.hpp"
#include "base/text.hpp"
#include "model/config.hpp"
#include "model/libvirt.hpp"
#include "model/metadata_allow.hpp"
#include "verbs/libvirt_verbs.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

struct Pins {
	Fd bind, extaddr, ct, cfg;
	Fd bind6, ct6, cfg6; // absent in pins of a kvmxdp before IPv6
	Fd extaddr6;	     // absent in pins of a kvmxdp before ABI 11
	MapFds fds() const
	{
		return {bind.get(), extaddr.get(), ct.get(),	  bind6.get(),
			ct6.get(),  cfg6.get(),	   extaddr6.get()};
	}
	// NAT66's address, as for `uplink`; all 0: none (or NAT66 off).
	Ipv6Addr uplink_addr6() const
	{
		Ipv6Addr a{};
		if (cfg6.get() < 0)
			return a;
		const kvx_cfg6 c = read_cfg6(cfg6.get());
		if (c.mode == KVX_V6_NAT66)
			std::memcpy(a.data(), c.uplink_addr, a.size());
		return a;
	}
	// Whatever the datapath uses is authoritative for `uplink` (host
	// order).
	uint32_t uplink_addr() const { return ntohl(read_cfg(cfg.get()).uplink_addr); }
};

// The running instance's maps, or nullopt when they are not pinned.
std::optional<Pins> open_pins(const Instance &inst)
{
	auto pins = open_pin_dir(inst.bpffs, inst.bridge, false);
	if (!pins)
		return std::nullopt;
	const DirFd &d = pins->dir;
	auto open = [&](const char *m) { return open_pinned(d, m, pinned_layout(m)); };
	auto bind = find_pinned(d, KVX_MAP_BIND, pinned_layout(KVX_MAP_BIND));
	if (!bind)
		return std::nullopt;
	Pins p;
	p.bind = std::move(*bind);
	p.extaddr = open(KVX_MAP_EXTADDR);
	p.ct = open(KVX_MAP_CT);
	p.cfg = open(KVX_MAP_CFG);
	auto opt = [&](const char *m) {
		auto fd = find_pinned(d, m, pinned_layout(m));
		return fd ? std::move(*fd) : Fd();
	};
	p.bind6 = opt(KVX_MAP_BIND6);
	p.ct6 = opt(KVX_MAP_CT6);
	p.cfg6 = opt(KVX_MAP_CFG6);
	p.extaddr6 = opt(KVX_MAP_EXTADDR6);
	return p;
}

// The instance a `map` verb changes.
Instance &instance_of(LockedConfig &cfg, const MappingOptions &o, const std::string &config_path)
{
	if (!o.bridge.empty())
		check_ifname(o.bridge);
	return select_instance(*cfg, o.bridge, config_path);
}

bool ext_used_by_other(const Instance &inst, const StaticMapping &sm)
{
	for (const auto &o : inst.mappings)
		if (!(o == sm) && !o.m.ext_uplink && o.m.v6 == sm.m.v6 &&
		    (sm.m.v6 ? o.m.ext_addr6 == sm.m.ext_addr6 : o.m.ext_addr == sm.m.ext_addr))
			return true;
	return false;
}

} // namespace

namespace {

// "vm:NAME[:PORT]" as the VM's address, the instance its bridge's.
void resolve_vm(const GlobalOptions &g, MappingOptions &o)
{
	if (auto t = parse_vm_target(o.guest)) {
		o.guest = libvirt_vm_guest(g, o.bridge, o.lease_mac, *t);
		o.vm = t->name;
	}
}

} // namespace

void mapping_add(const GlobalOptions &g, MappingOptions o, std::ostream &out)
{
	resolve_vm(g, o);
	Mapping m = parse_mapping(o.ext, o.guest, o.proto);
	if (o.add_address && m.ext_uplink)
		throw Error("--add-address with 'uplink': the uplink's address is there already");
	if (o.add_address && m.v6)
		throw Error("--add-address with IPv6 mapping '" + m.str() +
			    "': an IPv6 external address is never added to the host");
	// CAP_NET_RAW: the RFC 5227 probe and announcements (AF_PACKET).
	require_caps("map add", {CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW});
	// The host's listeners, read once and before the config lock that
	// every other kvmxdp command and the daemon wait for.
	std::optional<ListeningSockets> listening;
	if (!m.one_to_one() && !m.opens())
		listening = ListeningSockets::read(static_cast<uint8_t>(m.proto));
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	Instance &inst = instance_of(cfg, o, g.config);

	NlSocket nl;
	if (inst.uplink.empty())
		throw Error("bridge '" + inst.bridge +
			    "' has '--uplink auto' and no default route yet: a mapping is made on "
			    "the uplink's network, add it once the host is online");
	auto up = find_link(nl, inst.uplink);
	if (!up)
		throw Error("uplink '" + inst.uplink + "' of bridge '" + inst.bridge +
			    "' does not exist");
	auto up_addr = primary_ipv4(ipv4_addrs(nl, up->ifindex));
	std::optional<NetId> cur = network_of_link(nl, up->ifindex, true);

	MappingContext ctx;
	ctx.subnet = inst.subnet;
	ctx.nat_ports = inst.nat_guard();
	ctx.uplink_addr = up_addr ? up_addr->addr : 0;
	if (cur)
		ctx.uplink_net = cur->net;
	ctx.force = o.force;
	if (!m.v6)
		ctx.host_addrs = host_ipv4_addrs(nl);
	else if (m.one_to_one() || m.opens())
		ctx.host_addrs6 = host_ipv6_addrs(nl);
	// The running instance's maps before anything is claimed on the wire:
	// pins kvmxdp refuses to read stop the command here (after the
	// checks, but an IPv6 mapping is checked against kvx_cfg6's prefix).
	std::optional<Pins> pins;
	if (m.v6) {
		pins = open_pins(inst);
		// NAT66's prefix and address as the datapath has them; not
		// running: the recorded prefix (a bridge's own is taken at
		// attach) and the address attach would choose.
		const Uplink6View v6 = read_uplink6(nl, up->ifindex);
		// Relay mode: running, the datapath's; else the recorded --ipv6.
		bool relay = inst.ipv6 == Ipv6Choice::Relay;
		if (pins && pins->cfg6.get() >= 0) {
			const kvx_cfg6 c = read_cfg6(pins->cfg6.get());
			if (c.mode == KVX_V6_NAT66) {
				Ipv6Addr a;
				std::memcpy(a.data(), c.subnet, a.size());
				ctx.subnet6 = network_of6(a, c.subnet_len);
			}
			relay = c.mode == KVX_V6_RELAY;
			if (relay && c.relay_len) {
				Ipv6Addr a;
				std::memcpy(a.data(), c.relay_prefix, a.size());
				ctx.relay_prefix6 = network_of6(a, c.relay_len);
			}
			ctx.uplink_addr6 = pins->uplink_addr6();
		} else {
			ctx.subnet6 = inst.subnet6;
			if (v6.choice.addr)
				ctx.uplink_addr6 = v6.choice.addr->addr;
			if (!ctx.subnet6 && !m.opens())
				throw Error("mapping '" + m.str() + "': bridge '" + inst.bridge +
					    "' is not running and has no recorded --subnet6: its "
					    "guests' IPv6 prefix is known once it is attached");
		}
		// One endpoint where NAT66 runs is most likely a NAT66
		// mapping without its GUEST.
		if (m.opens() && !relay)
			throw Error("relay mapping '" + m.str() + "': bridge '" + inst.bridge +
				    "' runs no IPv6 relay mode (attach --ipv6 relay); a NAT66 "
				    "mapping is EXT GUEST");
		for (const auto &p : v6.prefixes)
			ctx.uplink_nets6.push_back(p.net);
	}
	// A pending mapping (a hook's) is checked when the daemon makes it;
	// the same one of the same owner twice is refused (a twin `map del`
	// could not tell apart).
	std::vector<Mapping> existing;
	const MappingOwner owner{o.vm, o.libvirt_network, o.from_metadata};
	for (const auto &sm : inst.mappings) {
		if (sm.pending.empty())
			existing.push_back(sm.m);
		else if (sm.m == m && owner.owns(sm))
			throw Error("mapping '" + m.str() + "' is recorded already on bridge '" +
				    inst.bridge + "', pending: " + pending_reason(sm.pending));
	}
	check_mapping(m, existing, ctx);

	StaticMapping sm;
	sm.m = m;
	sm.add_address = o.add_address;
	// Made on this network (IPv6: its prefix and default router): on
	// another it is suspended.
	tie_to_network(sm, cur, ctx.uplink_addr6);
	sm.vm = o.vm;
	sm.libvirt_network = o.libvirt_network;
	sm.lease_mac = o.lease_mac;
	sm.from_metadata = o.from_metadata;
	sm.metadata_force = o.from_metadata && o.metadata_force;
	const uint32_t ext = m.v6 ? 0 : m.ext(ctx.uplink_addr);
	// IPv6: a literal address is claimed by duplicate address detection
	// below (not ARP).
	const bool own = m.v6 || m.ext_uplink || (ctx.uplink_addr && m.ext_addr == ctx.uplink_addr);
	if (!m.v6)
		pins = open_pins(inst);
	// A new IPv6 literal address of a running instance: DAD now (RFC 4862
	// 5.4, one second), so that the mapping works when the command
	// returns, as IPv4's probe before it.  Taken: the mapping is made and
	// held (conflict, shown by `map list`); the daemon checks again later.
	DadVerdicts dad;
	std::optional<MacAddr> dad_other;
	// A relay mapping's address is its guest's, claimed by its own DAD.
	if (m.v6 && !m.opens() && !m.ext_uplink && m.ext_addr6 != ctx.uplink_addr6 && pins &&
	    pins->extaddr6.get() >= 0 && !ext_used_by_other(inst, sm) && up->mac != MacAddr{}) {
		// No carrier: no verdict, held (probing) until the daemon's DAD
		// once the link is back.
		MacAddr other{};
		if (auto v = dad_probe(up->ifindex, m.ext_addr6, &other)) {
			dad[m.ext_addr6] = *v;
			if (*v == DadVerdict::Duplicate)
				dad_other = other;
		}
	}

	if (listening && ext)
		if (auto p = listening->first_listening(ext, m.ext_ports))
			log_warn("a host socket listens on " + m.proto_str() + " port " +
				 std::to_string(*p) + " of " + format_ipv4(ext) +
				 ": the forward takes its inbound traffic");
	// IPv6: [::]'s listeners and the address's (a relay mapping's is a
	// guest's: no host socket has it).
	if (listening && m.v6 && !m.opens())
		if (auto p = listening->first_listening6(m.ext6(ctx.uplink_addr6), m.ext_ports))
			log_warn("a host socket listens on " + m.proto_str() + " port " +
				 std::to_string(*p) + " of " +
				 format_ipv6(m.ext6(ctx.uplink_addr6)) +
				 ": the forward takes its inbound traffic");

	// Claim the address unless it is ours already (the uplink's, or one
	// another mapping claimed).
	bool claimed = false;
	if (!own && !ext_used_by_other(inst, sm)) {
		if (o.add_address) {
			if (has_ipv4_address(nl, up->ifindex, m.ext_addr))
				throw Error("mapping '" + m.str() +
					    "': " + format_ipv4(m.ext_addr) +
					    " is already an address of " + inst.uplink);
		}
		const bool ethernet = up->mac != MacAddr{};
		std::optional<MacAddr> other;
		if (ethernet)
			other = arp_probe(up->ifindex, up->mac, m.ext_addr);
		else
			log_warn(
				inst.uplink +
				" has no Ethernet address: " + format_ipv4(m.ext_addr) +
				" is not probed for (no ARP on this link); it must be routed to this host");
		if (other) {
			char mac[32];
			std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x",
				      (*other)[0], (*other)[1], (*other)[2], (*other)[3],
				      (*other)[4], (*other)[5]);
			throw Error("mapping '" + m.str() + "': " + format_ipv4(m.ext_addr) +
				    " is in use on the uplink's network (ARP answered by " + mac +
				    "): pick a free address");
		}
		claimed = true;
	}

	std::vector<Ipv6Addr> announce6;
	Rollback rb;
	if (claimed && o.add_address) {
		add_ipv4_address(nl, up->ifindex, m.ext_addr, added_address_prefix(sm, cur),
				 added_address_label(up->ifindex));
		rb.add("address", [&, a = m.ext_addr] { remove_ipv4_address(nl, up->ifindex, a); });
	}
	inst.mappings.push_back(sm);
	if (pins) {
		const uint32_t ua = pins->uplink_addr();
		auto r = apply_mappings(pins->fds(), inst.mappings, ua, cur, true, {}, dad);
		for (const auto &e : r.errors)
			log_warn(e);
		for (const Ipv6Addr &a : r.announced6)
			announce6.push_back(a);
		rb.add("map entries", [&] {
			inst.mappings.pop_back();
			apply_mappings(pins->fds(), inst.mappings, ua, cur);
		});
	}
	cfg.save();
	rb.commit();
	if (claimed && !o.add_address && up->mac != MacAddr{})
		arp_announce(up->ifindex, up->mac, m.ext_addr);
	for (const Ipv6Addr &a : announce6)
		nd_announce(up->ifindex, a);
	if (dad_other)
		log_warn("mapping '" + m.str() + "': " + format_ipv6(m.ext_addr6) +
			 " is in use on the uplink's network (duplicate address detection: " +
			 format_mac(*dad_other) +
			 " has it): not announced nor translated until it is free (conflict)");
	out << "kvmxdp: mapped " << m.str() << " bridge=" << inst.bridge
	    << (sm.vm.empty() ? "" : " vm=" + printable(sm.vm))
	    << (sm.libvirt_network.empty() ? "" : " network=" + printable(sm.libvirt_network))
	    << (pins ? "" : " (not running: installed at the next attach)") << std::endl;
}

void mapping_del(const GlobalOptions &g, MappingOptions o, std::ostream &out)
{
	resolve_vm(g, o);
	Mapping m = parse_mapping(o.ext, o.guest, o.proto);
	require_caps("map del", {CAP_BPF, CAP_NET_ADMIN});
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	Instance &inst = instance_of(cfg, o, g.config);
	// What the caller named: a twin of another owner (a hook's pending
	// one beside an administrator's) is not it.
	const auto it = inst.mappings.begin() +
			static_cast<long>(mapping_to_delete(
				inst.mappings, m, {o.vm, o.libvirt_network, o.from_metadata},
				o.exact_owner, inst.bridge));
	StaticMapping gone = *it;
	bool drop_addr = gone.add_address && !ext_used_by_other(inst, gone);
	inst.mappings.erase(it);

	NlSocket nl;
	auto up = find_link(nl, inst.uplink);
	std::optional<NetId> cur;
	if (up)
		cur = network_of_link(nl, up->ifindex);
	ApplyResult r;
	if (auto pins = open_pins(inst)) {
		r = apply_mappings(pins->fds(), inst.mappings, pins->uplink_addr(), cur);
		for (const auto &e : r.errors)
			log_warn(e);
	}
	cfg.save();
	if (drop_addr && up) {
		try {
			remove_ipv4_address(nl, up->ifindex, gone.m.ext_addr);
		} catch (const Error &e) {
			log_warn(e.what());
		}
	}
	out << "kvmxdp: unmapped " << m.str() << " bridge=" << inst.bridge << " (" << r.ct_deleted
	    << " flow(s) dropped)" << std::endl;
}
size_t mapping_retarget_vm(const GlobalOptions &g, const std::string &vm, const std::string &bridge,
			   uint32_t addr, const std::string &lease_mac, std::ostream &out)
{
	require_caps("map add", {CAP_BPF, CAP_NET_ADMIN});
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	Instance *inst = cfg->find(bridge);
	if (!inst)
		throw not_attached(bridge, g.config,
				   "the bridge of domain '" + printable(vm) + "'");
	size_t n = 0;
	std::vector<std::string> lines;
	std::vector<size_t> moved; // moved or made again: checked below
	for (size_t k = 0; k < inst->mappings.size(); k++) {
		StaticMapping &sm = inst->mappings[k];
		if (sm.from_metadata || sm.vm != vm || sm.m.v6)
			continue;
		// The VM runs again: its mappings stopped waiting, and one
		// held on a clash (hold_clashing) is judged again at the
		// address it has now.
		bool changed = false;
		const uint32_t to = addr ? addr : sm.m.guest_addr;
		if (waits_for_vm_start(sm) || (!sm.pending.empty() && to)) {
			sm.pending.clear();
			changed = true;
		}
		if (to != sm.m.guest_addr || sm.lease_mac != lease_mac) {
			if (to != sm.m.guest_addr)
				lines.push_back(sm.m.str() + " -> guest " + format_ipv4(to));
			sm.m.guest_addr = to;
			sm.lease_mac = lease_mac;
			changed = true;
		}
		if (changed) {
			moved.push_back(k);
			n++;
		}
	}
	if (!n)
		return 0;
	// A clash at the new address: the lease file says who keeps it
	// (model hold_clashing), the other waits, pending; never left
	// forwarding to the guest it had.
	MappingContext ctx;
	ctx.subnet = inst->subnet;
	ctx.nat_ports = inst->nat_guard();
	ctx.force = true;
	ctx.subnet6 = inst->subnet6;
	ctx.subnet6_unknown_ok = true;
	for (const auto &h : hold_clashing(inst->mappings, moved, ctx, instance_leases(*inst),
					   static_cast<int64_t>(std::time(nullptr))))
		lines.push_back(h);
	check_recorded_mappings(inst->mappings, inst->subnet, inst->nat_guard(), inst->subnet6);
	if (auto pins = open_pins(*inst)) {
		NlSocket nl;
		std::optional<NetId> cur;
		if (auto up = find_link(nl, inst->uplink))
			cur = network_of_link(nl, up->ifindex);
		auto r = apply_mappings(pins->fds(), inst->mappings, pins->uplink_addr(), cur);
		for (const auto &e : r.errors)
			log_warn(e);
	}
	cfg.save();
	for (const auto &l : lines)
		out << "kvmxdp: vm " << printable(vm) << ": " << l << std::endl;
	return n;
}

size_t mapping_vm_stopped(const GlobalOptions &g, const std::string &vm, std::ostream &out)
{
	{
		// Nothing of the VM's: no lock, no write.
		const Config cfg = ConfigStore(g.config).load();
		bool any = false;
		for (const auto &inst : cfg.instances)
			for (const auto &sm : inst.mappings)
				any = any ||
				      (!sm.from_metadata && sm.vm == vm && !waits_for_vm_start(sm));
		if (!any)
			return 0;
	}
	require_caps("map add", {CAP_BPF, CAP_NET_ADMIN});
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	size_t n = 0;
	for (auto &inst : cfg->instances) {
		size_t here = 0;
		for (auto &sm : inst.mappings) {
			// A held one too (hold_clashing): promote_pending must not
			// make it while the VM is off.
			if (sm.from_metadata || sm.vm != vm || waits_for_vm_start(sm))
				continue;
			sm.pending = vm_stopped_reason(vm);
			out << "kvmxdp: vm " << printable(vm) << ": " << sm.m.str()
			    << " waits until it starts again" << std::endl;
			here++;
		}
		if (!here)
			continue;
		n += here;
		if (auto pins = open_pins(inst)) {
			NlSocket nl;
			std::optional<NetId> cur;
			if (auto up = find_link(nl, inst.uplink))
				cur = network_of_link(nl, up->ifindex);
			auto r = apply_mappings(pins->fds(), inst.mappings, pins->uplink_addr(),
						cur);
			for (const auto &e : r.errors)
				log_warn(e);
		}
	}
	if (n)
		cfg.save();
	return n;
}

json mapping_list_json(const GlobalOptions &g, const std::string &bridge)
{
	Config cfg = ConfigStore(g.config).load();
	NlSocket nl;
	json out = json::array();
	for (const auto &inst : cfg.instances) {
		if (!bridge.empty() && inst.bridge != bridge)
			continue;
		std::optional<Pins> pins;
		try {
			pins = open_pins(inst);
		} catch (const Error &) {
			// Not attached (or refused): states from the network only.
		}
		for (auto &e :
		     mappings_json(inst, nl, pins ? pins->extaddr.get() : -1,
				   pins ? pins->cfg6.get() : -1, pins ? pins->extaddr6.get() : -1,
				   pins ? pins->bind6.get() : -1)) {
			e["bridge"] = inst.bridge;
			out.push_back(e);
		}
	}
	if (!bridge.empty() && !cfg.find(bridge))
		throw not_attached(bridge, g.config);
	return {{"mappings", out}};
}

json mapping_allow(const GlobalOptions &g, const std::vector<std::string> &specs)
{
	auto as_json = [](const Config &c) {
		return json{{"metadata_allow",
			     c.metadata_allow ? json(*c.metadata_allow) : json(nullptr)}};
	};
	if (specs.empty())
		return as_json(ConfigStore(g.config).load());
	std::optional<std::vector<std::string>> allow = specs;
	const bool word = specs[0] == "default" || specs[0] == "none";
	if (word && specs.size() > 1)
		throw Error("map allow: '" + specs[0] + "' stands alone (got " +
			    std::to_string(specs.size()) + " arguments)");
	if (specs[0] == "default")
		allow.reset();
	else if (specs[0] == "none")
		allow->clear();
	else
		parse_metadata_allow(specs);
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	cfg->metadata_allow = allow;
	cfg.save();
	return as_json(*cfg);
}

void print_mapping_allow(const json &j, std::ostream &out)
{
	const json &a = j.at("metadata_allow");
	out << "libvirt metadata may claim: ";
	if (a.is_null()) {
		out << "any external address and port, except ports host services listen on "
		       "(default)\n";
	} else if (a.empty()) {
		out << "nothing\n";
	} else {
		for (size_t k = 0; k < a.size(); k++)
			out << (k ? " " : "") << printable(a[k].get<std::string>());
		out << " (ports host services listen on: with force='yes' only)\n";
	}
	out << std::flush;
}

} // namespace kvmxdp
