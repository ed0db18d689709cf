// SPDX-License-Identifier: GPL-2.0
#include "verbs/libvirt_verbs.hpp"

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>
#include <sstream>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/rollback.hpp"
#include "base/netaddr.hpp"
#include "base/text.hpp"
#include "control/guest_stats.hpp"
#include "model/config.hpp"
#include "model/leases.hpp"
#include "verbs/mapping_verbs.hpp"

namespace kvmxdp {

namespace {

// The first of these files that exists, with its path.
std::optional<std::pair<std::string, std::string>>
read_first(std::initializer_list<std::string> paths)
{
	for (const auto &p : paths)
		if (auto t = read_file(p))
			return std::make_pair(p, *t);
	return std::nullopt;
}

// A network's live status (what libvirt runs, with its bridge), else its
// definition.
std::optional<LibvirtNetwork> load_network(const std::string &r, const std::string &name)
{
	check_libvirt_name(name, "network");
	auto f = read_first({r + "/run/libvirt/network/" + name + ".xml",
			     r + "/etc/libvirt/qemu/networks/" + name + ".xml"});
	if (!f)
		return std::nullopt;
	return parse_libvirt_network(f->second, f->first);
}

struct Guest {
	std::string bridge;
	uint32_t addr = 0;
	// The MAC, when its lease gave the address (no static host entry):
	// the daemon follows that lease.
	std::string lease_mac;
};

// The bridge and guest address of a domain's kvmxdp interface; `cfg` names
// the instances.
Guest guest_of(const GlobalOptions &g, const LibvirtDomain &d, const std::string &vm,
	       const Config &cfg)
{
	const std::string &root = g.libvirt_root;
	const std::string &config_path = g.config;
	// The bridge of an interface: its own (a running domain's), else its
	// network's.  Networks read once each.
	std::map<std::string, std::optional<LibvirtNetwork>> nets;
	auto network = [&](const std::string &name) -> const std::optional<LibvirtNetwork> & {
		auto it = nets.find(name);
		if (it == nets.end())
			it = nets.emplace(name, load_network(root, name)).first;
		return it->second;
	};
	const LibvirtInterface &i = libvirt_nat_interface(d, [&](const LibvirtInterface &x) {
		std::string br = x.bridge;
		if (br.empty() && !x.network.empty())
			if (const auto &n = network(x.network))
				br = n->bridge;
		return !br.empty() && cfg.find(br) != nullptr;
	});
	std::optional<LibvirtNetwork> net;
	if (!i.network.empty())
		net = network(i.network);
	Guest gu;
	gu.bridge = !i.bridge.empty() ? i.bridge : net ? net->bridge : "";
	if (gu.bridge.empty())
		throw Error("domain '" + printable(vm) + "': the bridge of network '" +
			    printable(i.network) + "' is not known (no " + printable(root) +
			    "/run/libvirt/network/" + printable(i.network) + ".xml or " +
			    printable(root) + "/etc/libvirt/qemu/networks/" + printable(i.network) +
			    ".xml)");
	check_ifname(gu.bridge);
	const Instance *inst = cfg.find(gu.bridge);
	if (!inst)
		throw not_attached(gu.bridge, config_path,
				   "the bridge of domain '" + printable(vm) + "'");
	const std::vector<LibvirtDhcpHost> hosts = net ? net->hosts :
							 std::vector<LibvirtDhcpHost>{};
	auto a = libvirt_guest_addr(i.mac, hosts, instance_leases(*inst),
				    static_cast<int64_t>(std::time(nullptr)));
	if (!a)
		throw Error("domain '" + printable(vm) + "': no address for MAC " + i.mac +
			    " (no static DHCP host entry in network '" + printable(i.network) +
			    "' and no lease in " + leases_path(inst->dhcp_leases, inst->bridge) +
			    "): add <host mac='" + i.mac + "' ip='...'/> to the network's <dhcp>");
	gu.addr = *a;
	if (!libvirt_guest_addr(i.mac, hosts, {}, 0))
		gu.lease_mac = i.mac;
	return gu;
}

std::string read_all(std::istream &in, const std::string &what)
{
	std::string text;
	char buf[8192];
	while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
		text.append(buf, static_cast<size_t>(in.gcount()));
		if (text.size() > kLibvirtXmlMax)
			throw Error(what + ": more than " + std::to_string(kLibvirtXmlMax) +
				    " bytes of XML");
	}
	return text;
}

using Owned = std::function<bool(const StaticMapping &)>;

// The mappings of `bridge`'s instance that `owned` selects.
std::vector<StaticMapping> owned_mappings(const Config &cfg, const std::string &bridge,
					  const Owned &owned)
{
	std::vector<StaticMapping> out;
	for (const auto &inst : cfg.instances)
		if (bridge.empty() || inst.bridge == bridge)
			for (const auto &sm : inst.mappings)
				if (owned(sm))
					out.push_back(sm);
	return out;
}

MappingOptions options_of(const std::string &bridge, const Mapping &m)
{
	MappingOptions o;
	o.bridge = bridge;
	o.ext = m.ext_str();
	o.guest = m.guest_str();
	o.proto = m.proto_str();
	return o;
}

// Deletes the owned mappings of every instance (a domain may have moved
// to another bridge since its start); returns how many.  The daemon may
// move a leased guest's mapping between the read and the delete (which
// matches the whole mapping): a failed delete is tried again on the
// config as it is then, so a stopped VM's forward cannot stay behind on
// an address the next lease gives to another guest.
size_t remove_owned(const GlobalOptions &g, const Owned &owned, std::ostream &out)
{
	constexpr int kPasses = 3;
	size_t n = 0;
	for (int pass = 1;; pass++) {
		const Config cfg = ConfigStore(g.config).load();
		bool left = false;
		for (const auto &inst : cfg.instances)
			for (const auto &sm : owned_mappings(cfg, inst.bridge, owned)) {
				try {
					mapping_del(g, options_of(inst.bridge, sm.m), out);
					n++;
				} catch (const Error &) {
					if (pass == kPasses)
						throw;
					left = true;
				}
			}
		if (!left)
			return n;
	}
}

// Makes `ms` on `bridge` for their owner, replacing what it had: all of
// them or, after an error, none (the ones made are deleted again).
void apply_owned(const GlobalOptions &g, const std::string &bridge, const std::vector<Mapping> &ms,
		 const std::string &vm, const std::string &network, const std::string &lease_mac,
		 const Owned &owned, std::ostream &out)
{
	const Config cfg = ConfigStore(g.config).load();
	std::vector<Mapping> have;
	for (const auto &sm : owned_mappings(cfg, "", owned))
		have.push_back(sm.m);
	auto same = [&] {
		if (have.size() != ms.size() ||
		    owned_mappings(cfg, bridge, owned).size() != ms.size())
			return false;
		for (const auto &m : ms)
			if (std::find(have.begin(), have.end(), m) == have.end())
				return false;
		return true;
	};
	if (same()) {
		out << "kvmxdp: " << (vm.empty() ? "network '" + network : "domain '" + vm)
		    << "': " << ms.size() << " mapping(s) in place already" << std::endl;
		return;
	}
	remove_owned(g, owned, out);
	Rollback undo;
	for (const auto &m : ms) {
		MappingOptions o = options_of(bridge, m);
		o.vm = vm;
		o.libvirt_network = network;
		o.lease_mac = lease_mac;
		mapping_add(g, o, out);
		undo.add("map add " + m.str(), [&g, &bridge, m] {
			std::ostringstream quiet;
			mapping_del(g, options_of(bridge, m), quiet);
		});
	}
	undo.commit();
}

// The mappings an owner has no more (its metadata is gone, it stopped).
// Without any, nothing is locked or written.
void drop_owned(const GlobalOptions &g, const Owned &owned, std::ostream &out)
{
	const Config cfg = ConfigStore(g.config).load();
	if (!owned_mappings(cfg, "", owned).empty())
		remove_owned(g, owned, out);
}

// An object without kvmxdp metadata: whatever it had goes, and a broken
// kvmxdp config must not stop libvirt from starting it (a warning).
void no_metadata(const GlobalOptions &g, const Owned &owned, std::ostream &out)
{
	try {
		drop_owned(g, owned, out);
	} catch (const Error &e) {
		log_warn(e.what());
	}
}

void qemu_hook(const GlobalOptions &g, const LibvirtHookOptions &o, const std::string &xml,
	       std::ostream &out)
{
	const std::string &vm = o.object;
	check_libvirt_name(vm, "domain");
	const Owned owned = [&](const StaticMapping &sm) { return sm.vm == vm; };
	const HookAction act = libvirt_qemu_action(o.op, o.subop);
	if (act == HookAction::None)
		return;
	if (act == HookAction::Remove)
		return drop_owned(g, owned, out);
	LibvirtDomain d = parse_libvirt_domain(xml, "domain '" + printable(vm) + "' XML");
	if (!d.name.empty() && d.name != vm)
		throw Error("domain XML of '" + printable(d.name) + "' given for domain '" +
			    printable(vm) + "'");
	if (!d.nat.present)
		return no_metadata(g, owned, out);
	const Config cfg = ConfigStore(g.config).load();
	Guest gu = guest_of(g, d, vm, cfg);
	std::vector<Mapping> ms = libvirt_domain_mappings(d.nat, gu.addr);
	apply_owned(g, gu.bridge, ms, vm, "", gu.lease_mac, owned, out);
}

void network_hook(const GlobalOptions &g, const LibvirtHookOptions &o, const std::string &xml,
		  std::ostream &out)
{
	const std::string &name = o.object;
	check_libvirt_name(name, "network");
	const Owned owned = [&](const StaticMapping &sm) { return sm.libvirt_network == name; };
	const HookAction act = libvirt_network_action(o.op, o.subop);
	if (act == HookAction::None)
		return;
	if (act == HookAction::Remove)
		return drop_owned(g, owned, out);
	LibvirtNetwork n = parse_libvirt_network(xml, "network '" + printable(name) + "' XML");
	if (!n.nat.present)
		return no_metadata(g, owned, out);
	if (n.bridge.empty())
		throw Error("network '" + printable(name) + "' has kvmxdp mappings but no bridge");
	check_ifname(n.bridge);
	const Config cfg = ConfigStore(g.config).load();
	if (!cfg.find(n.bridge))
		throw not_attached(n.bridge, g.config,
				   "the bridge of network '" + printable(name) + "'");
	std::vector<Mapping> ms = libvirt_network_mappings(n.nat);
	apply_owned(g, n.bridge, ms, "", name, "", owned, out);
}

} // namespace

void libvirt_hook(const GlobalOptions &g, const LibvirtHookOptions &o, std::istream &in,
		  std::ostream &out)
{
	// Read whole whatever the operation: libvirt writes the XML into a
	// pipe and must not see it closed early.
	const std::string xml = read_all(in, "libvirt-hook: standard input");
	if (o.driver == "qemu")
		qemu_hook(g, o, xml, out);
	else if (o.driver == "network")
		network_hook(g, o, xml, out);
	else
		throw Error("libvirt-hook: '" + printable(o.driver) +
			    "' is not a hook kvmxdp handles (qemu, network)");
}

std::string libvirt_vm_guest(const GlobalOptions &g, std::string &bridge, std::string &lease_mac,
			     const VmTarget &t)
{
	const std::string &r = g.libvirt_root;
	// The running domain's status (its live XML, with the bridge of its
	// interface), else its definition.
	auto f = read_first({r + "/run/libvirt/qemu/" + t.name + ".xml",
			     r + "/etc/libvirt/qemu/" + t.name + ".xml"});
	if (!f)
		throw Error("vm:" + printable(t.name) + ": no such libvirt domain (no " + r +
			    "/run/libvirt/qemu/" + printable(t.name) + ".xml or " + r +
			    "/etc/libvirt/qemu/" + printable(t.name) + ".xml)");
	LibvirtDomain d = parse_libvirt_domain(f->second, f->first);
	const Config cfg = ConfigStore(g.config).load();
	Guest gu = guest_of(g, d, t.name, cfg);
	if (!bridge.empty() && bridge != gu.bridge)
		throw Error("vm:" + printable(t.name) + " is on bridge '" + gu.bridge +
			    "', not on '" + bridge + "'");
	bridge = gu.bridge;
	lease_mac = gu.lease_mac;
	return format_ipv4(gu.addr) + (t.ports.empty() ? "" : ":" + t.ports);
}

} // namespace kvmxdp
