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
	std::string bridge;    // "": not known (why says so)
	bool attached = false; // bridge is an instance's
	uint32_t addr = 0;     // 0: not known yet (why says so)
	// The MAC, when its lease gives the address (no static host entry):
	// the daemon follows that lease (and waits for it while addr is 0).
	std::string lease_mac;
	std::string why;
};

// The bridge and guest address of a domain's kvmxdp interface; `cfg` names
// the instances.  What may still come (the bridge's instance, the guest's
// lease) is said in `why`; throws only for what the domain's XML must say
// (which of two served interfaces).
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
	if (gu.bridge.empty()) {
		gu.why = "domain '" + printable(vm) + "': the bridge of network '" +
			 printable(i.network) + "' is not known (no " + printable(root) +
			 "/run/libvirt/network/" + printable(i.network) + ".xml or " +
			 printable(root) + "/etc/libvirt/qemu/networks/" + printable(i.network) +
			 ".xml)";
		return gu;
	}
	check_ifname(gu.bridge);
	const Instance *inst = cfg.find(gu.bridge);
	gu.attached = inst != nullptr;
	if (!inst)
		gu.why = not_attached(gu.bridge, config_path,
				      "the bridge of domain '" + printable(vm) + "'")
				 .what();
	const std::vector<LibvirtDhcpHost> hosts = net ? net->hosts :
							 std::vector<LibvirtDhcpHost>{};
	// Not attached: which lease file attach will read is not known yet;
	// a static host entry gives the address all the same.
	std::optional<uint32_t> a;
	try {
		a = libvirt_guest_addr(i.mac, hosts,
				       inst ? instance_leases(*inst) : std::vector<Lease>{},
				       static_cast<int64_t>(std::time(nullptr)));
	} catch (const Error &e) {
		// Two current leases: the daemon waits until one is left.
		if (gu.why.empty())
			gu.why = "domain '" + printable(vm) + "': " + e.what();
	}
	if (!libvirt_guest_addr(i.mac, hosts, {}, 0))
		gu.lease_mac = i.mac;
	if (a)
		gu.addr = *a;
	else if (gu.why.empty())
		gu.why = "domain '" + printable(vm) + "': no address for MAC " + i.mac +
			 " (no static DHCP host entry in network '" + printable(i.network) +
			 "' and no lease in " + leases_path(inst->dhcp_leases, inst->bridge) +
			 "): add <host mac='" + i.mac + "' ip='...'/> to the network's <dhcp>";
	return gu;
}

// A hook's standard input, read to its end whatever it holds: libvirt
// writes the XML into a pipe and must not see it closed early.  More than
// kLibvirtXmlMax bytes are drained, not kept (`oversized`): a domain
// without kvmxdp metadata may be that large.
struct HookInput {
	std::string xml;
	bool oversized = false;
	// kvmxdp's namespace is named: the only XML a hook parses.
	bool ours() const { return xml.find(kLibvirtXmlns) != std::string::npos; }
};

HookInput drain(std::istream &in)
{
	HookInput h;
	char buf[8192];
	while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
		const auto n = static_cast<size_t>(in.gcount());
		if (h.xml.size() + n > kLibvirtXmlMax)
			h.oversized = true;
		else
			h.xml.append(buf, n);
	}
	return h;
}

// Whether the hook's XML is to be parsed for kvmxdp's metadata: only when
// it names kvmxdp's namespace (foreign XML is never parsed, so it never
// fails a start).  Oversized XML naming it is an error; oversized XML that
// does not (in its first kLibvirtXmlMax bytes) is left alone.
enum class Metadata { None, Present, Unread };
Metadata metadata_of(const HookInput &in, const std::string &what)
{
	if (in.oversized && in.ours())
		throw Error(what + ": more than " + std::to_string(kLibvirtXmlMax) +
			    " bytes of XML");
	if (in.oversized) {
		log_warn(what + ": more than " + std::to_string(kLibvirtXmlMax) +
			 " bytes of XML, not read for kvmxdp metadata: nothing changed");
		return Metadata::Unread;
	}
	return in.ours() ? Metadata::Present : Metadata::None;
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
	// Pending ones recorded for a bridge not attached (record_pending).
	for (const auto &[br, det] : cfg.detached)
		if (bridge.empty() || br == bridge)
			for (const auto &sm : det.mappings)
				if (owned(sm))
					out.push_back(sm);
	return out;
}

// A mapping a hook could not make now: recorded with why, for the daemon
// to make (StaticMapping::pending); a bridge not attached yet keeps it
// with what a detach keeps, which its attach takes.
void record_pending(const GlobalOptions &g, const std::string &bridge, StaticMapping sm,
		    const std::string &why, std::ostream &out)
{
	sm.pending = why;
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	if (Instance *inst = cfg->find(bridge))
		inst->mappings.push_back(sm);
	else
		cfg->detached[bridge].mappings.push_back(sm);
	cfg.save();
	log_warn((sm.vm.empty() ? "network '" + printable(sm.libvirt_network) :
				  "domain '" + printable(sm.vm)) +
		 "': mapping " + sm.m.str() + " waits (made when it can be): " + why);
	out << "kvmxdp: pending " << sm.m.str() << " bridge=" << bridge
	    << (sm.vm.empty() ? "" : " vm=" + printable(sm.vm))
	    << (sm.libvirt_network.empty() ? "" : " network=" + printable(sm.libvirt_network))
	    << std::endl;
}

// Removes the pending mappings `owned` selects (nothing of them is in the
// datapath: the daemon's next sync drops a held address); a detached
// record left empty and never attached goes too.
size_t remove_pending(const GlobalOptions &g, const Owned &owned)
{
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	size_t n = 0;
	auto drop = [&](std::vector<StaticMapping> &ms) {
		const auto it = std::remove_if(ms.begin(), ms.end(), [&](const StaticMapping &sm) {
			return !sm.pending.empty() && owned(sm);
		});
		n += static_cast<size_t>(ms.end() - it);
		ms.erase(it, ms.end());
	};
	for (auto &inst : cfg->instances)
		drop(inst.mappings);
	for (auto it = cfg->detached.begin(); it != cfg->detached.end();) {
		drop(it->second.mappings);
		if (it->second.uplink.empty() && it->second.mappings.empty())
			it = cfg->detached.erase(it);
		else
			++it;
	}
	if (n)
		cfg.save();
	return n;
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
	size_t n = remove_pending(g, owned);
	for (int pass = 1;; pass++) {
		const Config cfg = ConfigStore(g.config).load();
		bool left = false;
		for (const auto &inst : cfg.instances)
			for (const auto &sm : inst.mappings) {
				if (!owned(sm) || !sm.pending.empty())
					continue;
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

// Makes `ms` on `bridge` for their owner, replacing what it had.  What
// cannot be made now (`why`: for all of them; else map add's refusal of
// one) is recorded pending, for the daemon to make: libvirt must not
// refuse to start a VM or a network for what may pass.
void apply_owned(const GlobalOptions &g, const std::string &bridge, const std::vector<Mapping> &ms,
		 const StaticMapping &owner, const std::string &why, const Owned &owned,
		 std::ostream &out)
{
	const std::string who = owner.vm.empty() ? "network '" + printable(owner.libvirt_network) :
						   "domain '" + printable(owner.vm);
	const Config cfg = ConfigStore(g.config).load();
	std::vector<Mapping> have;
	size_t waiting = 0;
	for (const auto &sm : owned_mappings(cfg, "", owned)) {
		have.push_back(sm.m);
		waiting += !sm.pending.empty();
	}
	auto same = [&] {
		if (have.size() != ms.size() ||
		    owned_mappings(cfg, bridge, owned).size() != ms.size())
			return false;
		for (const auto &m : ms)
			if (std::find(have.begin(), have.end(), m) == have.end())
				return false;
		return true;
	};
	// A pending one for want of its address is retried here (the
	// lease may be there now); others wait for the daemon.
	if (same() && (why.empty() || waiting == ms.size())) {
		out << "kvmxdp: " << who << "': " << ms.size() << " mapping(s) in place already"
		    << (waiting ? " (" + std::to_string(waiting) + " pending)" : "") << std::endl;
		return;
	}
	remove_owned(g, owned, out);
	for (const auto &m : ms) {
		StaticMapping sm = owner;
		sm.m = m;
		if (!why.empty()) {
			record_pending(g, bridge, sm, why, out);
			continue;
		}
		MappingOptions o = options_of(bridge, m);
		o.vm = owner.vm;
		o.libvirt_network = owner.libvirt_network;
		o.lease_mac = owner.lease_mac;
		o.from_metadata = true;
		try {
			mapping_add(g, o, out);
		} catch (const Error &e) {
			record_pending(g, bridge, sm, e.what(), out);
		}
	}
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

// The `map add ... vm:NAME` mappings of a domain that started: moved to
// its address now (a new lease, a changed host entry).  Their trouble is
// a warning: libvirt starts the VM regardless.
void retarget_cli(const GlobalOptions &g, const LibvirtDomain &d, const std::string &vm,
		  std::ostream &out)
{
	try {
		const Config cfg = ConfigStore(g.config).load();
		const Owned cli = [&](const StaticMapping &sm) {
			return !sm.from_metadata && sm.vm == vm;
		};
		if (owned_mappings(cfg, "", cli).empty())
			return;
		const Guest gu = guest_of(g, d, vm, cfg);
		if (!gu.attached)
			throw Error(gu.why);
		mapping_retarget_vm(g, vm, gu.bridge, gu.addr, gu.lease_mac, out);
		if (!gu.addr)
			log_warn(gu.why + ": its mappings stay on their address until its lease "
					  "comes");
	} catch (const Error &e) {
		log_warn("domain '" + printable(vm) +
			 "': map add vm: mappings not updated: " + e.what());
	}
}

void qemu_hook(const GlobalOptions &g, const LibvirtHookOptions &o, const HookInput &in,
	       std::ostream &out)
{
	const std::string &vm = o.object;
	check_libvirt_name(vm, "domain");
	// Only what its metadata made: a `map add ... vm:NAME` is the
	// administrator's, and outlives the VM's stops.
	const Owned owned = [&](const StaticMapping &sm) {
		return sm.from_metadata && sm.vm == vm;
	};
	const HookAction act = libvirt_qemu_action(o.op, o.subop);
	if (act == HookAction::None)
		return;
	if (act == HookAction::Remove) {
		drop_owned(g, owned, out);
		// Its `map add ... vm:` mappings wait for its next start: its
		// address may go to another guest meanwhile.  A warning: libvirt
		// goes on either way.
		try {
			mapping_vm_stopped(g, vm, out);
		} catch (const Error &e) {
			log_warn("domain '" + printable(vm) +
				 "': map add vm: mappings left active: " + e.what());
		}
		return;
	}
	const std::string what = "domain '" + printable(vm) + "' XML";
	const Metadata meta = metadata_of(in, what);
	if (meta == Metadata::Unread)
		return;
	if (meta == Metadata::None) {
		no_metadata(g, owned, out);
		// Its `map add ... vm:` mappings, if any: their trouble (the
		// XML too) is a warning.
		try {
			const LibvirtDomain d = parse_libvirt_domain(in.xml, what);
			retarget_cli(g, d, vm, out);
		} catch (const Error &e) {
			if (!owned_mappings(ConfigStore(g.config).load(), "",
					    [&](const StaticMapping &sm) { return sm.vm == vm; })
				     .empty())
				log_warn(e.what());
		}
		return;
	}
	LibvirtDomain d = parse_libvirt_domain(in.xml, what);
	if (!d.name.empty() && d.name != vm)
		throw Error("domain XML of '" + printable(d.name) + "' given for domain '" +
			    printable(vm) + "'");
	if (!d.nat.present) {
		no_metadata(g, owned, out);
		return retarget_cli(g, d, vm, out);
	}
	const Config cfg = ConfigStore(g.config).load();
	Guest gu = guest_of(g, d, vm, cfg);
	// Checked whether or not the address is known: malformed metadata
	// is refused now, not when the lease comes.
	std::vector<Mapping> ms = libvirt_domain_mappings(d.nat, gu.addr);
	if (gu.bridge.empty()) {
		// Nowhere to record them: said, libvirt goes on.
		log_warn(gu.why + ": its kvmxdp mappings are not made");
		return;
	}
	StaticMapping owner;
	owner.vm = vm;
	owner.lease_mac = gu.lease_mac;
	owner.from_metadata = true;
	apply_owned(g, gu.bridge, ms, owner, gu.addr && gu.attached ? "" : gu.why, owned, out);
	retarget_cli(g, d, vm, out);
}

void network_hook(const GlobalOptions &g, const LibvirtHookOptions &o, const HookInput &in,
		  std::ostream &out)
{
	const std::string &name = o.object;
	check_libvirt_name(name, "network");
	const Owned owned = [&](const StaticMapping &sm) {
		return sm.from_metadata && sm.libvirt_network == name;
	};
	const HookAction act = libvirt_network_action(o.op, o.subop);
	if (act == HookAction::None)
		return;
	if (act == HookAction::Remove)
		return drop_owned(g, owned, out);
	const std::string what = "network '" + printable(name) + "' XML";
	const Metadata meta = metadata_of(in, what);
	if (meta == Metadata::Unread)
		return;
	if (meta == Metadata::None)
		return no_metadata(g, owned, out);
	LibvirtNetwork n = parse_libvirt_network(in.xml, what);
	if (!n.nat.present)
		return no_metadata(g, owned, out);
	if (n.bridge.empty())
		throw Error("network '" + printable(name) + "' has kvmxdp mappings but no bridge");
	check_ifname(n.bridge);
	std::vector<Mapping> ms = libvirt_network_mappings(n.nat);
	const Config cfg = ConfigStore(g.config).load();
	StaticMapping owner;
	owner.libvirt_network = name;
	owner.from_metadata = true;
	apply_owned(g, n.bridge, ms, owner,
		    cfg.find(n.bridge) ?
			    "" :
			    not_attached(n.bridge, g.config,
					 "the bridge of network '" + printable(name) + "'")
				    .what(),
		    owned, out);
}

} // namespace

void libvirt_hook(const GlobalOptions &g, const LibvirtHookOptions &o, std::istream &in,
		  std::ostream &out)
{
	const HookInput xml = drain(in);
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
	if (gu.bridge.empty() || !gu.attached || !gu.addr)
		throw Error(gu.why);
	if (!bridge.empty() && bridge != gu.bridge)
		throw Error("vm:" + printable(t.name) + " is on bridge '" + gu.bridge +
			    "', not on '" + bridge + "'");
	bridge = gu.bridge;
	lease_mac = gu.lease_mac;
	return format_ipv4(gu.addr) + (t.ports.empty() ? "" : ":" + t.ports);
}

} // namespace kvmxdp
