// SPDX-License-Identifier: GPL-2.0
#include "verbs/libvirt_verbs.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/text.hpp"
#include "control/guest_stats.hpp"
#include "control/mapping_sync.hpp"
#include "control/uplink6.hpp"
#include "kernel/netlink.hpp"
#include "kernel/sockets.hpp"
#include "model/config.hpp"
#include "model/leases.hpp"
#include "model/metadata_allow.hpp"
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

// The names of the *.xml files in dir (none when it cannot be read).
std::vector<std::string> xml_stems(const std::string &dir)
{
	std::vector<std::string> out;
	std::error_code ec;
	for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
		const auto &p = e.path();
		if (p.extension() == ".xml" && e.is_regular_file(ec))
			out.push_back(p.stem().string());
	}
	std::sort(out.begin(), out.end());
	return out;
}

// The libvirt network whose bridge is `bridge`: a domain's
// <interface type='bridge'> on a network's bridge gets its address from
// that network's dnsmasq (host entries and leases) all the same.
// Unreadable networks are skipped: they name no bridge.
std::optional<LibvirtNetwork> network_of_bridge(const std::string &root, const std::string &bridge)
{
	std::vector<std::string> names = xml_stems(root + "/run/libvirt/network");
	for (const auto &n : xml_stems(root + "/etc/libvirt/qemu/networks"))
		if (std::find(names.begin(), names.end(), n) == names.end())
			names.push_back(n);
	for (const auto &n : names) {
		try {
			if (auto net = load_network(root, n); net && net->bridge == bridge)
				return net;
		} catch (const Error &) {
			// Not a network kvmxdp can read.
		}
	}
	return std::nullopt;
}

// Refuses a domain's kvmxdp interface whose MAC is another domain's: the
// guest address comes from the MAC's DHCP host entry or lease, and a
// domain's XML must not point its mappings at another VM's address.
// Another's: an interface of a domain that libvirt runs (its status file,
// read as the metrics read them: DomainFiles), a host entry whose name=
// is a domain libvirt knows other than this one (a name= that is no
// domain's is a DHCP hostname, nobody's claim), or an interface of another
// defined domain (its /etc/libvirt/qemu XML: a stopped domain's lease
// stays in dnsmasq's file).  Two defined domains sharing a MAC (a standby
// copy) are refused too while the other exists: which one is the guest
// is not known.  libvirt's containers (the lxc driver: /run/libvirt/lxc,
// /etc/libvirt/lxc) take leases on the same networks: theirs count too,
// whatever their name (a container is never this qemu domain).
void check_mac_owner(const std::string &root, const std::string &vm, const std::string &mac,
		     const std::vector<LibvirtDhcpHost> &hosts)
{
	auto theirs = [&](const std::string &driver, const std::string &name) {
		return driver == "lxc" || name != vm;
	};
	auto whose = [](const std::string &driver, const std::string &name) {
		return (driver == "lxc" ? "container '" : "domain '") + printable(name) + "'";
	};
	for (const char *driver : {"qemu", "lxc"}) {
		DomainFiles files;
		for (const auto &[name, macs] : files.read(root, driver))
			if (theirs(driver, name) &&
			    std::find(macs.begin(), macs.end(), mac) != macs.end())
				throw Error("domain '" + printable(vm) + "': MAC " + mac +
					    " belongs to running " + whose(driver, name) +
					    ": a domain's mappings reach only its own interface");
	}
	for (const auto &h : hosts) {
		if (h.mac != mac || h.name.empty())
			continue;
		try {
			check_libvirt_name(h.name, "host");
		} catch (const Error &) {
			continue; // a hostname, not a domain's name
		}
		for (const char *driver : {"qemu", "lxc"}) {
			if (!theirs(driver, h.name))
				continue;
			const std::string run =
				root + "/run/libvirt/" + driver + "/" + h.name + ".xml";
			const std::string def =
				root + "/etc/libvirt/" + driver + "/" + h.name + ".xml";
			if (::access(run.c_str(), F_OK) == 0 || ::access(def.c_str(), F_OK) == 0)
				throw Error("domain '" + printable(vm) + "': MAC " + mac +
					    " belongs to " + whose(driver, h.name) +
					    " (its DHCP host entry names it): a domain's mappings "
					    "reach only its own interface");
		}
	}
	for (const char *driver : {"qemu", "lxc"}) {
		const std::string defs = root + "/etc/libvirt/" + driver;
		for (const auto &name : xml_stems(defs)) {
			if (!theirs(driver, name))
				continue;
			LibvirtDomain d;
			try {
				const std::string path = defs + "/" + name + ".xml";
				auto text = read_file(path);
				if (!text)
					continue;
				d = parse_libvirt_domain(*text, path);
			} catch (const std::exception &) {
				continue; // not a domain definition kvmxdp can read
			}
			if (!theirs(driver, d.name))
				continue;
			for (const auto &x : d.interfaces)
				if (x.mac == mac)
					throw Error("domain '" + printable(vm) + "': MAC " + mac +
						    " belongs to defined " + whose(driver, d.name) +
						    ": a domain's mappings reach only its own "
						    "interface (give each domain its own MAC)");
		}
	}
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
	// A bridge interface on a network's bridge: that network's host
	// entries (its dnsmasq) give the address and name the MAC's owner.
	std::optional<LibvirtNetwork> net = !i.network.empty() ? network(i.network) :
					    !i.bridge.empty()  ? network_of_bridge(root, i.bridge) :
								 std::nullopt;
	check_mac_owner(root, vm, i.mac, net ? net->hosts : std::vector<LibvirtDhcpHost>{});
	// A guest whose link is down sends nothing: the MAC's lease is then
	// whoever else has that MAC (a copied MAC, its owner's lease).  A
	// static host entry is the network's word, link or not.
	if (i.link_down &&
	    !libvirt_guest_addr(i.mac, net ? net->hosts : std::vector<LibvirtDhcpHost>{}, {}, 0))
		throw Error("domain '" + printable(vm) + "': interface " + i.mac +
			    " has <link state='down'/> and no static DHCP host entry: its lease "
			    "would be another machine's with that MAC (bring the link up, or add "
			    "<host mac='" +
			    i.mac + "' ip='...'/> to the network's <dhcp>)");
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
			 " (no static DHCP host entry in network '" +
			 printable(net ? net->name : i.network) + "' and no lease in " +
			 leases_path(inst->dhcp_leases, inst->bridge) + "): add <host mac='" +
			 i.mac + "' ip='...'/> to the network's <dhcp>";
	return gu;
}

// A hook's standard input, read to its end whatever it holds: libvirt
// writes the XML into a pipe and must not see it closed early.  More than
// kLibvirtXmlMax bytes are drained, not kept (`oversized`): a domain
// without kvmxdp metadata may be that large.
struct HookInput {
	std::string xml;
	bool oversized = false;
	// kvmxdp's namespace is declared on an element (not merely quoted,
	// in a description): the only XML a hook parses.
	bool ours() const { return declares_kvmxdp_namespace(xml); }
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
	sm.pending = pending_reason(why);
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	if (Instance *inst = cfg->find(bridge))
		inst->mappings.push_back(sm);
	else
		cfg->detached[bridge].mappings.push_back(sm);
	cfg.save();
	log_warn((sm.vm.empty() ? "network '" + printable(sm.libvirt_network) :
				  "domain '" + printable(sm.vm)) +
		 "': mapping " + sm.m.str() + " waits (made when it can be): " + sm.pending);
	out << "kvmxdp: pending " << sm.m.str() << " bridge=" << bridge
	    << (sm.vm.empty() ? "" : " vm=" + printable(sm.vm))
	    << (sm.libvirt_network.empty() ? "" : " network=" + printable(sm.libvirt_network))
	    << std::endl;
}

// Removes the mappings `owned` selects that are in no datapath: the
// pending ones (the daemon's next sync drops a held address) and all of a
// detached record's (a detach keeps active ones too: a start replaces
// them, never appends); a detached record left empty and never attached
// goes too.
size_t remove_pending(const GlobalOptions &g, const Owned &owned)
{
	LockedConfig cfg(g.config, std::chrono::seconds(g.lock_wait));
	size_t n = 0;
	auto drop = [&](std::vector<StaticMapping> &ms, bool all) {
		const auto it = std::remove_if(ms.begin(), ms.end(), [&](const StaticMapping &sm) {
			return (all || !sm.pending.empty()) && owned(sm);
		});
		n += static_cast<size_t>(ms.end() - it);
		ms.erase(it, ms.end());
	};
	for (auto &inst : cfg->instances)
		drop(inst.mappings, false);
	for (auto it = cfg->detached.begin(); it != cfg->detached.end();) {
		drop(it->second.mappings, true);
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
					MappingOptions o = options_of(inst.bridge, sm.m);
					o.vm = sm.vm;
					o.libvirt_network = sm.libvirt_network;
					o.from_metadata = sm.from_metadata;
					o.exact_owner = true;
					mapping_del(g, o, out);
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

// A hook's mappings against what no waiting fixes (model
// check_permanent): the bridge's instance, or for a bridge not attached
// yet its detached record's mappings.  Throws Error naming `who`.
void check_metadata(const Config &cfg, const std::string &bridge, const std::vector<Mapping> &ms,
		    const std::string &who)
{
	try {
		if (const Instance *inst = cfg.find(bridge)) {
			check_permanent(ms, inst->mappings, inst->subnet, inst->nat_guard(),
					inst->subnet6);
		} else {
			const auto det = cfg.detached.find(bridge);
			check_permanent(ms,
					det == cfg.detached.end() ? std::vector<StaticMapping>{} :
								    det->second.mappings,
					std::nullopt, {}, std::nullopt);
		}
	} catch (const Error &e) {
		throw Error(who + ": " + e.what());
	}
}

// Makes `ms` on `bridge` for their owner, replacing what it had.  What
// cannot be made now (`why`: for all of them; waits[k]: for the k-th, if
// not empty; else map add's refusal of one) is recorded pending, for the
// daemon to make: libvirt must not refuse to start a VM or a network for
// what may pass.
void apply_owned(const GlobalOptions &g, const std::string &bridge, const std::vector<Mapping> &ms,
		 const LibvirtNat &nat, const StaticMapping &owner, const std::string &why,
		 const std::vector<std::string> &waits, const Owned &owned, std::ostream &out)
{
	const std::string who = owner.vm.empty() ? "network '" + printable(owner.libvirt_network) :
						   "domain '" + printable(owner.vm);
	const Config cfg = ConfigStore(g.config).load();
	std::vector<Mapping> have;
	size_t waiting = 0;
	bool stopped = false; // waiting for this start (model demote_stopped_domains)
	for (const auto &sm : owned_mappings(cfg, "", owned)) {
		have.push_back(sm.m);
		waiting += !sm.pending.empty();
		stopped = stopped || waits_for_vm_start(sm);
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
	if (!stopped && same() && (why.empty() || waiting == ms.size())) {
		out << "kvmxdp: " << who << "': " << ms.size() << " mapping(s) in place already"
		    << (waiting ? " (" + std::to_string(waiting) + " pending)" : "") << std::endl;
		return;
	}
	remove_owned(g, owned, out);
	for (size_t k = 0; k < ms.size(); k++) {
		const Mapping &m = ms[k];
		StaticMapping sm = owner;
		sm.m = m;
		// The k-th mapping is forward k (libvirt_domain_mappings).
		sm.metadata_force = k < nat.forwards.size() && nat.forwards[k].force;
		if (!why.empty() || (k < waits.size() && !waits[k].empty())) {
			record_pending(g, bridge, sm, !why.empty() ? why : waits[k], out);
			continue;
		}
		MappingOptions o = options_of(bridge, m);
		o.vm = owner.vm;
		o.libvirt_network = owner.libvirt_network;
		o.lease_mac = owner.lease_mac;
		o.from_metadata = true;
		o.metadata_force = sm.metadata_force;
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

// What metadata claims on the host's side, against the administrator's
// allow-list (`map allow`) and the host services' listeners
// (model/metadata_allow.hpp).  A refusal fails libvirt's start, before
// anything is made: unlike what may pass later (a lease, the uplink), it
// is the metadata's to change.  Listeners are the host services' (uids
// below kFirstLoginUid, as the datapath's host ports): a login user's
// socket on a VM's port must not be a way to keep that VM from starting.
// The uplink's address as it is now; none yet: the wildcard's listeners.
// Returns, per mapping, why it waits ("" : it need not): a UDP socket on
// an ephemeral port (MetadataClaims::refusal's waits), maybe a client's
// for a second, must not fail a start at random.
std::vector<std::string> check_metadata_claims(const Config &cfg, const std::string &bridge,
					       const LibvirtNat &nat,
					       const std::vector<Mapping> &ms)
{
	uint32_t uplink_addr = 0;
	Ipv6Addr uplink_addr6{};
	const Instance *inst = cfg.find(bridge);
	if (inst && !inst->uplink.empty()) {
		NlSocket nl;
		if (auto up = find_link(nl, inst->uplink)) {
			if (auto a = primary_ipv4(ipv4_addrs(nl, up->ifindex)))
				uplink_addr = a->addr;
			// The address NAT66 would take (as map add reads it).
			if (std::any_of(ms.begin(), ms.end(),
					[](const Mapping &m) { return m.v6 && m.ext_uplink; }))
				if (auto a = read_uplink6(nl, up->ifindex).choice.addr)
					uplink_addr6 = a->addr;
		}
	}
	MetadataClaims claims(cfg.metadata_allow, uplink_addr, uplink_addr6);
	std::vector<std::string> waits(ms.size());
	for (size_t k = 0; k < ms.size(); k++) {
		const bool force = k < nat.forwards.size() && nat.forwards[k].force;
		bool transient = false;
		std::string why = claims.refusal(ms[k], force, &transient);
		if (!why.empty() && !transient)
			throw Error(why);
		waits[k] = std::move(why);
	}
	return waits;
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
	if (meta == Metadata::Unread || (meta == Metadata::None && act == HookAction::Check))
		return;
	if (meta == Metadata::None) {
		// Foreign XML: parsed only when kvmxdp has mappings for this
		// domain (its metadata's of an earlier start go, `map add ...
		// vm:` ones follow its address); their trouble, the XML's too,
		// is a warning.
		try {
			const Config cfg = ConfigStore(g.config).load();
			if (!owned_mappings(cfg, "", owned).empty())
				drop_owned(g, owned, out);
			if (owned_mappings(cfg, "", [&](const StaticMapping &sm) {
				    return !sm.from_metadata && sm.vm == vm;
			    }).empty())
				return;
			retarget_cli(g, parse_libvirt_domain(in.xml, what), vm, out);
		} catch (const Error &e) {
			log_warn(e.what());
		}
		return;
	}
	LibvirtDomain d = parse_libvirt_domain(in.xml, what);
	if (!d.name.empty() && d.name != vm)
		throw Error("domain XML of '" + printable(d.name) + "' given for domain '" +
			    printable(vm) + "'");
	if (act == HookAction::Check) {
		// Before libvirt makes anything: another domain's MAC fails
		// the start here (guest_of throws), as it would at "started".
		if (d.nat.present)
			guest_of(g, d, vm, ConfigStore(g.config).load());
		return;
	}
	if (!d.nat.present) {
		no_metadata(g, owned, out);
		return retarget_cli(g, d, vm, out);
	}
	const Config cfg = ConfigStore(g.config).load();
	Guest gu = guest_of(g, d, vm, cfg);
	// Checked whether or not the address is known: malformed metadata
	// is refused now, not when the lease comes.
	std::vector<Mapping> ms = libvirt_domain_mappings(d.nat, gu.addr);
	const std::vector<std::string> waits = check_metadata_claims(cfg, gu.bridge, d.nat, ms);
	if (gu.bridge.empty()) {
		// Nowhere to record them: said, libvirt goes on.
		log_warn(gu.why + ": its kvmxdp mappings are not made");
		return;
	}
	// What no waiting fixes fails the start, as malformed metadata does.
	check_metadata(cfg, gu.bridge, ms, "domain '" + printable(vm) + "'");
	StaticMapping owner;
	owner.vm = vm;
	owner.lease_mac = gu.lease_mac;
	owner.from_metadata = true;
	apply_owned(g, gu.bridge, ms, d.nat, owner, gu.addr && gu.attached ? "" : gu.why, waits,
		    owned, out);
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
	const std::vector<std::string> waits = check_metadata_claims(cfg, n.bridge, n.nat, ms);
	check_metadata(cfg, n.bridge, ms, "network '" + printable(name) + "'");
	StaticMapping owner;
	owner.libvirt_network = name;
	owner.from_metadata = true;
	apply_owned(g, n.bridge, ms, n.nat, owner,
		    cfg.find(n.bridge) ?
			    "" :
			    not_attached(n.bridge, g.config,
					 "the bridge of network '" + printable(name) + "'")
				    .what(),
		    waits, owned, out);
}

// `systemctl ARGS...` (found on PATH: libvirtd gives its hooks a plain
// one), its output on the hook's standard error; its exit status, -1 when
// it could not run.
int systemctl(const std::vector<std::string> &args)
{
	std::vector<char *> argv;
	std::string name = "systemctl";
	argv.push_back(name.data());
	std::vector<std::string> a = args;
	for (auto &x : a)
		argv.push_back(x.data());
	argv.push_back(nullptr);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
	pid_t pid = 0;
	const int err = posix_spawnp(&pid, "systemctl", &fa, nullptr, argv.data(), environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		return -1;
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A network that started on a bridge with a kvmxdp instance: its unit
// kvmxdp@BRIDGE (re)started, its daemon following the bridge libvirt made
// anew.  Not waited for (--no-block): libvirt waits for its hook, and a
// hook must never wait for what may wait for libvirt.  The start-limit
// counter is reset first: at boot the unit may have given up on a bridge
// that libvirt creates only now.  Whatever fails is a warning: the network
// runs either way.  (kvmxdp itself reads the XML and the config here: the
// hook needs no script language of its own.)
void start_instance_unit(const GlobalOptions &g, const LibvirtHookOptions &o, const HookInput &in)
{
	if (libvirt_network_action(o.op, o.subop) != HookAction::Apply || in.oversized)
		return;
	try {
		const LibvirtNetwork n =
			parse_libvirt_network(in.xml, "network '" + printable(o.object) + "' XML");
		if (n.bridge.empty() || !ConfigStore(g.config).load().find(n.bridge))
			return;
		const std::string unit = "kvmxdp@" + systemd_escape(n.bridge) + ".service";
		systemctl({"reset-failed", unit});
		if (systemctl({"--no-block", "start", unit}) != 0)
			log_warn("network '" + printable(o.object) + "': systemctl start " + unit +
				 " failed");
	} catch (const Error &e) {
		log_warn(std::string(e.what()) + ": kvmxdp@ unit not started");
	}
}

} // namespace

void libvirt_hook(const GlobalOptions &g, const LibvirtHookOptions &o, std::istream &in,
		  std::ostream &out)
{
	// libvirtd keeps a successful hook's output only in its debug log:
	// a mapping that waits, and why, is said in the journal too.
	log_to_syslog("kvmxdp-hook");
	const HookInput xml = drain(in);
	if (o.driver == "qemu") {
		qemu_hook(g, o, xml, out);
	} else if (o.driver == "network") {
		network_hook(g, o, xml, out);
		start_instance_unit(g, o, xml);
	} else {
		throw Error("libvirt-hook: '" + printable(o.driver) +
			    "' is not a hook kvmxdp handles (qemu, network)");
	}
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
