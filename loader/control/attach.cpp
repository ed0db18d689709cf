// SPDX-License-Identifier: GPL-2.0
#include "control/attach.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "base/caps.hpp"
#include "base/clock.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "base/rollback.hpp"
#include "base/sysctl.hpp"
#include "base/text.hpp"
#include "control/dad.hpp"
#include "control/devices.hpp"
#include "control/gc.hpp"
#include "control/host_access.hpp"
#include "control/host_tunnels.hpp"
#include "control/mapping_sync.hpp"
#include "control/relay.hpp"
#include "control/resume.hpp"
#include "control/uplink6.hpp"
#include "control/xdp_path.hpp"
#include "kernel/abi_check.hpp"
#include "kernel/features.hpp"
#include "kernel/maps.hpp"
#include "kernel/routes.hpp"
#include "kernel/skel.hpp"
#include "kernel/sockets.hpp"
#include "kernel/tc.hpp"
#include "kvmxdp/ct_rules.h"
#include "kvmxdp_tc.skel.h"
#include "model/leases.hpp"
#include "model/quota.hpp"
#include "model/timeouts.hpp"

namespace kvmxdp {

void check_attach_syntax(const AttachOptions &a)
{
	check_ifname(a.bridge);
	// Empty: taken from the config (resolve_attach).
	if (!a.uplink.empty())
		check_ifname(a.uplink);
	if (a.subnet)
		parse_cidr(*a.subnet);
	if (a.subnet6 && *a.subnet6 != "none")
		parse_subnet6(*a.subnet6, "--subnet6");
	if (a.ipv6)
		parse_ipv6_choice(*a.ipv6, "--ipv6");
	if (a.ipv6_inbound)
		parse_ipv6_inbound(*a.ipv6_inbound, "--ipv6-inbound");
	if (a.port_guard)
		parse_port_guard(*a.port_guard, "--port-guard");
	if (a.nat_ports)
		parse_port_range(*a.nat_ports);
	if (a.timeouts)
		parse_timeouts(*a.timeouts);
	if (a.mode)
		parse_hook_mode(*a.mode);
	if (a.dhcp_leases)
		check_leases_option(*a.dhcp_leases, "--dhcp-leases");
	if (a.metrics && *a.metrics != "off")
		parse_metrics_listen(*a.metrics, "--metrics");
}

AttachPlan resolve_attach(const AttachOptions &a, const Config &cfg, const std::string &config_path)
{
	AttachPlan p;
	p.bridge = a.bridge;
	p.uplink = a.uplink;
	p.eif = a.eif;
	if (a.subnet)
		p.subnet = parse_cidr(*a.subnet);
	if (a.nat_ports)
		p.nat_ports = parse_port_range(*a.nat_ports);
	if (const Instance *i = cfg.find(a.bridge))
		p.prev = *i;
	const Instance *prev = p.prev ? &*p.prev : nullptr;
	if (a.uplink.empty()) {
		auto det = cfg.detached.find(a.bridge);
		if (prev) {
			p.uplink = prev->uplink_auto ? kUplinkAuto : prev->uplink;
			if (!p.subnet)
				p.subnet = prev->subnet;
			// The default pool stays the default (recomputed).
			if (!p.nat_ports && !prev->nat_ports_auto)
				p.nat_ports = prev->nat_ports;
			p.eif = p.eif || prev->eif;
		} else if (det != cfg.detached.end() && !det->second.uplink.empty()) {
			// ("": pending mappings a libvirt hook recorded for a bridge
			// never attached; they tell no uplink.)
			p.uplink = det->second.uplink;
		} else {
			throw ConfigError("attach --bridge " + a.bridge +
					  " without --uplink: no instance of '" + a.bridge +
					  "' in " + config_path + " to take it from");
		}
		check_ifname(p.uplink);
	}
	p.mode = a.mode ? parse_hook_mode(*a.mode) : prev ? prev->mode : HookMode::Auto;
	p.port_guard = a.port_guard ? parse_port_guard(*a.port_guard, "--port-guard") :
		       prev	    ? prev->port_guard :
				      true;
	p.ct_size = a.ct_size;
	p.bind_size = a.bind_size;
	p.clamp_mss = a.clamp_mss ? *a.clamp_mss : prev ? prev->clamp_mss : 0;
	p.flow_quota = a.flow_quota ? a.flow_quota : prev ? prev->flow_quota : std::nullopt;
	p.guest_ports = a.guest_ports ? a.guest_ports : prev ? prev->guest_ports : std::nullopt;
	p.timeouts = a.timeouts ? *a.timeouts : prev ? prev->timeouts : "";
	p.dhcp_leases = a.dhcp_leases ? *a.dhcp_leases : prev ? prev->dhcp_leases : "";
	if (a.subnet6)
		p.subnet6 = *a.subnet6 == "none" ?
				    std::nullopt :
				    std::optional(parse_subnet6(*a.subnet6, "--subnet6"));
	else if (prev)
		p.subnet6 = prev->subnet6;
	p.ipv6 = a.ipv6 ? parse_ipv6_choice(*a.ipv6, "--ipv6") :
		 prev	? prev->ipv6 :
			  Ipv6Choice::Auto;
	// Relay's alone: NAT66 lets in only what a binding wants.
	if (a.ipv6_inbound && p.ipv6 != Ipv6Choice::Relay)
		throw Error("--ipv6-inbound " + *a.ipv6_inbound +
			    ": only relay mode has an inbound policy (add --ipv6 relay)");
	p.ipv6_inbound_open = a.ipv6_inbound ?
				      parse_ipv6_inbound(*a.ipv6_inbound, "--ipv6-inbound") :
			      prev ? prev->ipv6_inbound_open :
				     false;
	p.metrics = a.metrics ? (*a.metrics == "off" ? "" : *a.metrics) : prev ? prev->metrics : "";
	// Mappings a detach kept come back (the uplink is the new one's).
	if (prev)
		p.mappings = prev->mappings;
	else if (auto det = cfg.detached.find(a.bridge); det != cfg.detached.end())
		p.mappings = det->second.mappings;
	return p;
}

Ipv4Net choose_subnet(const std::vector<IfAddr> &bridge_addrs,
		      const std::optional<Ipv4Net> &requested, const std::string &bridge)
{
	if (!requested) {
		auto p = primary_ipv4(bridge_addrs);
		if (!p)
			throw Error("bridge '" + bridge +
				    "' has no IPv4 address: give it the guests' gateway address "
				    "first (or pass --subnet for one of its networks)");
		return network_of(p->addr, p->prefix);
	}
	for (const auto &ad : bridge_addrs)
		if (network_of(ad.addr, ad.prefix) == *requested)
			return *requested;
	std::string list;
	for (const auto &ad : bridge_addrs)
		list += (list.empty() ? "" : ", ") + format_ipv4(ad.addr) + "/" +
			std::to_string(ad.prefix);
	throw Error("subnet " + requested->str() + " is not a network of bridge '" + bridge +
		    "' (its IPv4 addresses: " + (list.empty() ? "none" : list) + ")");
}

void check_uplink_free(const Config &cfg, const std::string &bridge, const std::string &uplink,
		       bool uplink_auto)
{
	for (const Instance &o : cfg.instances) {
		if (uplink_auto && o.uplink_auto && o.bridge != bridge)
			throw Error("the kvmxdp instance of bridge '" + o.bridge +
				    "' already follows the default route (--uplink auto): one "
				    "bridge per uplink (detach '" +
				    o.bridge + "' first)");
		if (o.bridge != bridge && !uplink.empty() && o.uplink == uplink)
			throw Error("uplink '" + uplink +
				    "' is already used by the kvmxdp instance of bridge '" +
				    o.bridge + "': one bridge per uplink (detach '" + o.bridge +
				    "' first)");
	}
}

void check_same_bpffs(const std::optional<Instance> &prev, const std::string &bridge,
		      const std::string &bpffs)
{
	if (prev && prev->bpffs != bpffs)
		throw Error("bridge '" + bridge + "' is attached with --bpffs " + prev->bpffs +
			    " (this is " + bpffs + "): use that, or detach first");
}

AttachedInstance::AttachedInstance() = default;
AttachedInstance::AttachedInstance(AttachedInstance &&) noexcept = default;
AttachedInstance::~AttachedInstance() = default;

namespace {

// Test hook: KVMXDP_FAILPOINT=<name> makes attach fail at that step, so
// tests can prove the rollback leaves nothing behind.
void failpoint(const char *name)
{
	const char *fp = std::getenv("KVMXDP_FAILPOINT");
	if (fp && std::string(fp) == name)
		throw Error(std::string("injected failure at ") + name + " (KVMXDP_FAILPOINT)");
}

// Absolute: the path keys the daemon's pid file and goes into the config.
std::string absolute_dir(const std::string &dir)
{
	std::string d = normalize_dir(dir);
	if (!d.empty() && d[0] == '/')
		return d;
	char cwd[4096];
	if (!::getcwd(cwd, sizeof(cwd)))
		throw_errno("getcwd", "");
	return normalize_dir(std::string(cwd) + "/" + d);
}

// kvx_cfg as a pinned map holds it: an older kvmxdp's may be shorter.
// Only for an array of one __u32 key (checked by the caller): the kernel
// writes value_size bytes per CPU into the buffer of a per-CPU map.
kvx_cfg read_pinned_cfg(int fd, const MapInfo &have, const std::string &path)
{
	std::vector<unsigned char> raw(std::max<size_t>(have.value_size, sizeof(kvx_cfg)));
	__u32 zero = 0;
	check_libbpf(bpf_map_lookup_elem(fd, &zero, raw.data()), "read", path);
	kvx_cfg old{};
	std::memcpy(&old, raw.data(), std::min<size_t>(have.value_size, sizeof(old)));
	return old;
}

class Attach {
public:
	Attach(const GlobalOptions &g, const AttachOptions &a)
		: g_(g)
		, a_(a)
		, sys_(g.sysctl_root)
	{
	}

	AttachedInstance run()
	{
		resolve();
		validate();
		resume_maps();
		write_cfg();
		pin();
		hooks();
		sysctls();
		record();
		AttachedInstance out;
		out.inst = inst_;
		out.uplink_ifindex = uplink_.ifindex;
		out.tc = std::move(skel_);
		out.xdp = std::move(xdp_);
		out.pid_lock = std::move(pid_lock_);
		out.pin_lock = std::move(pin_lock_);
		return out;
	}

private:
	// The config's record of the bridge, if any.
	const Instance *prev_instance() const { return plan_.prev ? &*plan_.prev : nullptr; }

	void resolve()
	{
		check_attach_syntax(a_);
		// CAP_PERFMON: the verifier lets the datapath subtract packet
		// pointers (data_end - data) only with it ("pointer -= pointer
		// prohibited").
		require_caps("attach", {CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON});
		// Before anything is created: a kernel without a helper the
		// datapath needs gets one line naming it, not a verifier log.
		require_kernel_features(probe_kernel_features());
		// A signal during attach must not leave half an attachment: it
		// stays pending and the daemon loop sees it right after attach.
		sigset_t sigs;
		sigemptyset(&sigs);
		sigaddset(&sigs, SIGINT);
		sigaddset(&sigs, SIGTERM);
		pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
		cfg_.emplace(g_.config, std::chrono::seconds(g_.lock_wait));
		plan_ = resolve_attach(a_, **cfg_, g_.config);
		// As the daemon's sync does: after a crash or power loss no
		// "stopped" hook came, and a domain libvirt does not run must not
		// have its metadata mappings restored (its "started" makes them).
		for (size_t k : demote_stopped_domains(plan_.mappings, [&](const std::string &vm) {
			     return libvirt_domain_running(g_.libvirt_root, vm);
		     }))
			log_warn("mapping " + plan_.mappings[k].m.str() +
				 " vm=" + printable(plan_.mappings[k].vm) +
				 " not restored: " + plan_.mappings[k].pending);
		const Instance *prev = prev_instance();
		inst_.bridge = plan_.bridge;
		inst_.eif = plan_.eif;
		inst_.mappings = plan_.mappings;
		inst_.clamp_mss = plan_.clamp_mss;
		inst_.mode = plan_.mode;
		inst_.port_guard = plan_.port_guard;
		inst_.flow_quota = plan_.flow_quota;
		inst_.guest_ports = plan_.guest_ports;
		inst_.timeouts = plan_.timeouts;
		inst_.dhcp_leases = plan_.dhcp_leases;
		inst_.subnet6 = plan_.subnet6;
		inst_.ipv6 = plan_.ipv6;
		inst_.ipv6_inbound_open = plan_.ipv6_inbound_open;
		inst_.metrics = plan_.metrics;
		// A clsact an earlier attach created stays ours to delete.
		inst_.clsact_created_bridge = prev && prev->clsact_created_bridge;
	}

	void validate()
	{
		// --uplink auto: the default route's device now, else the device
		// the instance followed last, else none yet (the daemon waits
		// for a default route; guests' outside traffic is dropped
		// meanwhile).
		inst_.uplink_auto = plan_.uplink == kUplinkAuto;
		if (inst_.uplink_auto) {
			auto br = find_link(nl_, plan_.bridge);
			plan_.uplink = auto_uplink_device(nl_, br ? br->ifindex : 0,
							  plan_.prev ? plan_.prev->uplink : "");
		}
		inst_.uplink = plan_.uplink;
		validate_devices();
		if (plan_.mode == HookMode::Xdp && !plan_.uplink.empty() &&
		    device_facts(plan_.uplink).wireless)
			// Asked for XDP where there can be none: one line, nothing made.
			throw Error("--mode xdp: uplink '" + plan_.uplink +
				    "' is wireless (802.11): no native XDP and not an XDP "
				    "redirect target; use --mode auto (TC on WiFi)");

		inst_.bpffs = absolute_dir(g_.bpffs);
		pid_file_ = pid_file_for(g_.run_dir, inst_.bpffs, plan_.bridge);
		pid_lock_ = PidLock::try_acquire(pid_file_);
		if (!pid_lock_)
			refuse_served(LockHolder::of(pid_file_));
		// A failed attach leaves no pid file behind (we hold its lock).
		pid_rb_.add("pid file", [pid_file = pid_file_] { ::unlink(pid_file.c_str()); });

		if (ensure_bpffs(inst_.bpffs) && in_private_mount_ns())
			log_warn("mounted a bpffs at " + inst_.bpffs +
				 " inside a private mount namespace (ip netns exec?): the pins "
				 "vanish when this process exits; mount it outside or use nsenter "
				 "--net");
		inst_.pin_dir = pin_dir_for(inst_.bpffs, plan_.bridge);
		check_uplink_free(**cfg_, plan_.bridge, plan_.uplink, inst_.uplink_auto);
		check_same_bpffs(plan_.prev, plan_.bridge, inst_.bpffs);
		// Every level checked and held (base/fs.hpp): a directory another
		// user could change is refused before anything is read from it.
		pins_ = open_pin_dir(inst_.bpffs, plan_.bridge, true);
		// Only if empty: a resume's pins stay.
		rb_.add("pin directory", [this] { remove_pin_dir(*pins_, false); });
		// The pid file may be gone under a running daemon (/run
		// cleaned, the file deleted): its pin directory's lock is not.
		lock_pin_dir();
	}

	// The daemon slot's second lock, taken once the pin directory exists
	// (lock order: loader/README.md).
	void lock_pin_dir()
	{
		pin_lock_ = FileLock::try_acquire_dir(pins_->dir);
		if (!pin_lock_)
			refuse_served(LockHolder::of(pins_->dir));
	}

	[[noreturn]] void refuse_served(const std::vector<LockHolder> &holders) const
	{
		throw Error("bridge '" + plan_.bridge +
			    "' is already served by a kvmxdp daemon (pid " +
			    (holders.empty() ? std::string("?") :
					       std::to_string(holders.front().pid())) +
			    "): stop it or run 'kvmxdp detach' first");
	}

	void validate_devices()
	{
		auto br = find_link(nl_, plan_.bridge);
		if (!br)
			throw Error("bridge '" + plan_.bridge + "' does not exist");
		if (br->kind != "bridge")
			throw Error("'" + plan_.bridge + "' is not a bridge (kind '" +
				    (br->kind.empty() ? "none" : br->kind) + "')");
		bridge_ = *br;
		// Empty: --uplink auto without a default route yet (ifindex 0).
		if (!plan_.uplink.empty()) {
			auto up = find_link(nl_, plan_.uplink);
			if (!up)
				throw Error("uplink '" + plan_.uplink + "' does not exist");
			if (up->ifindex == br->ifindex)
				throw Error("uplink '" + plan_.uplink + "' is the bridge itself");
			uplink_ = *up;
		}
		inst_.subnet =
			choose_subnet(ipv4_addrs(nl_, br->ifindex), plan_.subnet, plan_.bridge);
		if (!plan_.uplink.empty())
			if (auto n = uplink_overlap(ipv4_addrs(nl_, uplink_.ifindex),
						    uplink_.ifindex, inst_.subnet))
				throw Error("guest subnet " + inst_.subnet.str() + " of bridge '" +
					    plan_.bridge + "' overlaps network " + n->str() +
					    " of uplink '" + plan_.uplink +
					    "': the host's own traffic to that network would be "
					    "taken (choose another guest subnet)");
		decide_ipv6_mode();
		PortRange eph = parse_local_port_range(sys_.read(kLocalPortRangeKey));
		inst_.nat_ports_auto = !plan_.nat_ports;
		if (plan_.nat_ports) {
			check_nat_range(*plan_.nat_ports, eph);
			inst_.nat_ports = *plan_.nat_ports;
			inst_.nat_skip = {};
		} else {
			// Recomputed each time: the host's ephemeral range may
			// have changed since the last attach.
			NatPool pool = default_nat_pool(eph);
			inst_.nat_ports = pool.range;
			inst_.nat_skip = pool.skip;
		}
		// A new --subnet or --nat-ports must still hold the recorded
		// mappings: the config this attach writes is loaded by the
		// same check.
		try {
			check_recorded_mappings(plan_.mappings, inst_.subnet, inst_.nat_guard(),
						inst_.subnet6);
		} catch (const Error &e) {
			throw Error("bridge '" + plan_.bridge + "': the recorded " + e.what() +
				    " (subnet " + inst_.subnet.str() + ", NAT ports " +
				    inst_.nat_ports.str() + "; 'kvmxdp map del' it first)");
		}
	}

	// NAT66 or not, on which prefix (model/ipv6.hpp decide_ipv6).
	void decide_ipv6_mode()
	{
		const std::vector<Ipv6IfAddr> br = ipv6_addrs(nl_, bridge_.ifindex);
		// A guest prefix inside the uplink's would take the host's own
		// traffic to its LAN.  Asked for (--subnet6, --ipv6 nat66):
		// refused (a given one before anything else is said about it);
		// found on the bridge: IPv6 stays the host's.
		auto uplink_overlap = [&](const Ipv6Net &subnet) -> std::optional<std::string> {
			if (plan_.uplink.empty())
				return std::nullopt;
			for (const Ipv6IfAddr &a : ipv6_addrs(nl_, uplink_.ifindex)) {
				const Ipv6Net n = network_of6(a.addr, a.prefix);
				if (a.scope == RT_SCOPE_UNIVERSE && n.overlaps(subnet))
					return "guest IPv6 subnet " + subnet.str() +
					       " of bridge '" + plan_.bridge +
					       "' overlaps network " + n.str() + " of uplink '" +
					       plan_.uplink + "'";
			}
			return std::nullopt;
		};
		const char *fix = " (choose another --subnet6, e.g. a ULA fd00::/8 prefix)";
		if (inst_.subnet6 && plan_.ipv6 != Ipv6Choice::Off)
			if (auto what = uplink_overlap(*inst_.subnet6))
				throw Error(*what + fix);
		// Relay shares the uplink's /64: whether its network allows it
		// (model/ipv6.hpp relay_check), as the daemon will follow it.
		std::optional<RelayCheck> relay;
		if (plan_.ipv6 == Ipv6Choice::Relay && uplink_.ifindex)
			relay = read_uplink6(nl_, uplink_.ifindex).relay;
		ipv6_ = decide_ipv6(plan_.ipv6, inst_.subnet6, br, plan_.bridge, relay);
		gw6_ = link_local_of(br);
		if (ipv6_.subnet)
			if (auto what = uplink_overlap(*ipv6_.subnet)) {
				if (plan_.ipv6 == Ipv6Choice::Nat66)
					throw Error(*what + fix);
				ipv6_ = {KVX_V6_OFF, std::nullopt, std::nullopt, *what};
			}
		if (ipv6_.mode != KVX_V6_OFF && !gw6_)
			log_warn("bridge '" + plan_.bridge +
				 "' has no link-local IPv6 address: the guests get no ICMPv6 "
				 "errors from kvmxdp until it has one");
		log_verbose(std::string("ipv6: ") +
			    (ipv6_.mode == KVX_V6_NAT66 ? "nat66, " :
			     ipv6_.mode == KVX_V6_RELAY ? "relay, " :
							  "off, ") +
			    ipv6_.why);
	}

	// Conntrack and bindings survive a restart or an upgrade: the pinned
	// maps are reused where kResumeTable allows it.
	void resume_maps()
	{
		skel_ = std::make_unique<Skel<kvmxdp_tc>>("kvmxdp_tc");
		std::vector<std::string> pinned;
		std::map<std::string, Fd> pinned_fds;
		for (const auto &name : skel_->map_names()) {
			auto fd = get_pinned(pins_->dir, name);
			(fd ? pinned : to_pin_).push_back(name);
			if (fd)
				pinned_fds[name] = std::move(*fd);
		}
		resume_ = !pinned.empty();
		// A map of a newer kvmxdp that is not pinned yet is created and
		// pinned like on a first attach; the core tables must be there.
		if (resume_)
			for (const MapResumeRule &r : kResumeTable)
				if (r.required &&
				    std::find(pinned.begin(), pinned.end(), r.map) == pinned.end())
					throw Error("pin directory " + inst_.pin_dir + " lacks " +
						    r.map + ": run 'kvmxdp detach --bridge " +
						    plan_.bridge + "' first");

		const Instance *prev = prev_instance();
		MapSizes sizes;
		sizes.ct = plan_.ct_size;
		sizes.bind = plan_.bind_size;
		sizes.ct_default = prev ? prev->ct_size : KVX_CT_DEFAULT_SIZE;
		sizes.bind_default = prev ? prev->bind_size : KVX_BIND_DEFAULT_SIZE;
		sizes.guests = guest_map_size(htonl(inst_.subnet.mask()));
		sizes.ipv6 = ipv6_.mode != KVX_V6_OFF;
		// The IPv6 tables follow the IPv4 ones' sizes, pinned ones too.
		for (auto [name, size] : {std::pair{KVX_MAP_CT, &sizes.ct_pinned},
					  std::pair{KVX_MAP_BIND, &sizes.bind_pinned}})
			if (auto it = pinned_fds.find(name); it != pinned_fds.end())
				*size = map_info(it->second.get(), name).max_entries;
		for (const auto &name : skel_->map_names()) {
			const bool is_pinned = std::find(pinned.begin(), pinned.end(), name) !=
					       pinned.end();
			std::optional<PinnedMap> pm;
			Fd fd;
			const MapInfo spec = skel_->map_spec(name.c_str());
			if (is_pinned) {
				pm = PinnedMap{};
				pm->path = pins_->dir.show(name);
				fd = std::move(pinned_fds[name]);
				pm->info = map_info(fd.get(), pm->path);
				// Its version sizes nothing before its type and
				// key are ours; otherwise decide_resume refuses.
				if (name == KVX_MAP_CFG && pm->info.type == spec.type &&
				    pm->info.key_size == spec.key_size) {
					kvx_cfg old = read_pinned_cfg(fd.get(), pm->info, pm->path);
					pm->abi_version = old.abi_version;
					resumed_uplink_addr_ = old.uplink_addr;
					// Kept by this attach (the records of the tables
					// resumed name its slots), replaced map or not;
					// appended to kvx_cfg in version 4.
					if (old.abi_version >= 4)
						resumed_seed_ = old.guest_seed;
				}
				if (name == KVX_MAP_CFG6 &&
				    layout_mismatch(pm->info, pinned_layout(KVX_MAP_CFG6)).empty())
					resumed_cfg6_ = read_cfg6(fd.get());
			}
			const MapResumeRule rule = resume_rule(name);
			ResumeDecision d = decide_resume(rule, spec, pm, sizes);
			if (!d.note.empty())
				log_note(d.note);
			if (name == KVX_MAP_CT)
				inst_.ct_size = d.max_entries;
			else if (name == KVX_MAP_BIND)
				inst_.bind_size = d.max_entries;
			switch (d.action) {
			case ResumeAction::Reuse:
				// libbpf dups the fd: ours may close.
				skel_->reuse_map(name.c_str(), fd.get());
				continue;
			case ResumeAction::Replace:
				to_pin_.push_back(name);
				replaced_[name] = std::make_shared<Fd>(std::move(fd));
				break;
			case ResumeAction::Create:
				break;
			}
			if (rule.size != SizeFrom::Object)
				skel_->set_max_entries(name.c_str(), d.max_entries);
		}
		if (resume_)
			log_verbose("resuming with the maps pinned in " + inst_.pin_dir);
		load_skeleton();
	}

	void load_skeleton()
	{
		int err = skel_->try_load();
		if (err == -EACCES || err == -EINVAL || err == -E2BIG)
			throw Error(
				"load BPF programs: the kernel's verifier rejected them (-v shows "
				"its log)",
				"", -err);
		if (err < 0)
			throw Error(
				"load BPF programs (is BPF available? kernel >= 5.15 with "
				"CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF, run as root; -v shows "
				"the libbpf/verifier log)",
				"", -err);
	}

	// Runtime configuration, read by every packet.  The uplink address
	// may be missing (WiFi not associated yet): 0 until the daemon sees
	// one.
	void write_cfg()
	{
		kc_.abi_version = KVX_ABI_VERSION;
		kc_.flags = plan_.eif ? KVX_CFG_F_EIF : 0;
		auto up_addr = primary_ipv4(ipv4_addrs(nl_, uplink_.ifindex));
		kc_.uplink_addr = up_addr ? htonl(up_addr->addr) : 0;
		kc_.uplink_ifindex = static_cast<__u32>(uplink_.ifindex);
		kc_.bridge_ifindex = static_cast<__u32>(bridge_.ifindex);
		kc_.subnet_addr = htonl(inst_.subnet.addr);
		kc_.subnet_mask = htonl(inst_.subnet.mask());
		// The guests' gateway, source of the ICMP errors the datapath
		// sends them (no mapping possible): the bridge's address in the
		// subnet (the daemon follows it: Daemon::refresh_bridge).
		kc_.gw_addr = htonl(subnet_gateway(ipv4_addrs(nl_, bridge_.ifindex), inst_.subnet));
		kc_.nat_port_lo = inst_.nat_ports.lo;
		kc_.nat_port_hi = inst_.nat_ports.hi;
		kc_.nat_skip_lo = inst_.nat_skip.lo;
		kc_.nat_skip_hi = inst_.nat_skip.hi;
		kc_.guest_ports = plan_.guest_ports ? *plan_.guest_ports :
						      default_guest_ports(inst_.nat_pool().size());
		kc_.tenant_cap = default_tenant_cap(inst_.bind_size);
		kc_.clamp_mss = plan_.clamp_mss;
		// Flow quota: explicit, else the instance's, else a share of the
		// table (which follows --ct-size).  Timeouts likewise.
		kc_.flow_quota = plan_.flow_quota ? *plan_.flow_quota :
						    default_flow_quota(inst_.ct_size);
		kc_.timeouts = plan_.timeouts.empty() ? default_timeouts() :
							parse_timeouts(plan_.timeouts);
		std::memcpy(kc_.uplink_mac, uplink_.mac.data(), sizeof(kc_.uplink_mac));
		// The key of the quota slots: random, so that a guest cannot pick
		// a MAC or an address whose slot is another guest's (abi.h
		// kvx_gflows).  Resumed, the running datapath's: the slot records
		// of its flows and bindings (abi.h kvx_ct_val.slot) stay valid,
		// and a MAC placed since it opened them in the shared slot does
		// not take them to its port's count at this attach's recount.
		const int cfg_fd = skel_->map_fd(KVX_MAP_CFG);
		if (resume_ && resumed_seed_) {
			kc_.guest_seed = resumed_seed_;
		} else {
			// A fresh one (a first attach, a pinned cfg map unreadable) whose
			// tag is none of those of the flows and dynamic bindings
			// found (both families): their records read as none under it
			// (the guest's slot now, as the recount finds it), never as a
			// slot of this seed.
			std::vector<uint32_t> recs;
			for (const auto &[k, v] :
			     dump_hash<kvx_ct_key, kvx_ct_val>(skel_->map_fd(KVX_MAP_CT)))
				recs.push_back(v.slot);
			for (const auto &[k, v] :
			     dump_hash<kvx_ct6_key, kvx_ct6_val>(skel_->map_fd(KVX_MAP_CT6)))
				recs.push_back(v.ct.slot);
			// An OUT half's record (an IN half's word is tw_remotes).
			for (const auto &[k, v] :
			     dump_hash<kvx_bind_key, kvx_bind_val>(skel_->map_fd(KVX_MAP_BIND)))
				if (k.dir == KVX_BIND_OUT)
					recs.push_back(v.slot);
			for (const auto &[k, v] :
			     dump_hash<kvx_bind6_key, kvx_bind6_val>(skel_->map_fd(KVX_MAP_BIND6)))
				if (k.dir == KVX_BIND_OUT)
					recs.push_back(v.bind.slot);
			kc_.guest_seed = new_guest_seed(ct_slot_tags(recs));
		}
		// A reused cfg map is the one the pinned datapath reads: a later
		// failure puts its old value back.  The skeleton (and its fd) is
		// gone by the time the undo steps run, hence a duplicate.
		if (resume_ &&
		    std::find(to_pin_.begin(), to_pin_.end(), KVX_MAP_CFG) == to_pin_.end()) {
			auto keep = std::make_shared<Fd>(::fcntl(cfg_fd, F_DUPFD_CLOEXEC, 3));
			if (keep->get() < 0)
				throw_errno("dup the cfg map fd", inst_.pin_dir);
			rb_.add("runtime configuration", [keep, before = read_cfg(cfg_fd)] {
				kvmxdp::write_cfg(keep->get(), before);
			});
		}
		kvmxdp::write_cfg(cfg_fd, kc_);
		// Ports the host listens on stay out of the pool; the daemon
		// follows listeners that come and go.
		write_portx(skel_->map_fd(KVX_MAP_PORTX), host_port_bitmap());
		// Resumed flows (or another subnet): the quota counts them from now on.
		const QuotaMaps quota{skel_->map_fd(KVX_MAP_GFLOWS),
				      skel_->map_fd(KVX_MAP_GUEST),
				      kc_.guest_seed,
				      skel_->map_fd(KVX_MAP_CT6),
				      skel_->map_fd(KVX_MAP_BIND6),
				      skel_->map_fd(KVX_MAP_ND),
				      skel_->map_fd(KVX_MAP_BRPORT)};
		// A kvx_nd replaced (another size, or ABI 10..16's entries):
		// the guests keep their addresses, which they claimed by a
		// duplicate address detection they do not run again.
		// IPv6 off: the one-entry table keeps none.
		if (auto it = replaced_.find(KVX_MAP_ND);
		    ipv6_.mode != KVX_V6_OFF && it != replaced_.end() && it->second)
			if (size_t n = carry_nd(it->second->get(), skel_->map_fd(KVX_MAP_ND)))
				log_info("ipv6: " + std::to_string(n) +
					 " guest address(es) carried into the new kvx_nd");
		gflows_recount(skel_->map_fd(KVX_MAP_CT), quota);
		gports_recount(skel_->map_fd(KVX_MAP_BIND), skel_->map_fd(KVX_MAP_GPORTS), quota);
		tenants_recount(skel_->map_fd(KVX_MAP_BIND), skel_->map_fd(KVX_MAP_GTENANT), quota);
		// The address changed while no daemon was watching: what the
		// daemon would have flushed then goes now.
		if (resumed_uplink_addr_ && resumed_uplink_addr_ != kc_.uplink_addr)
			flush_ext_addr(skel_->map_fd(KVX_MAP_CT), skel_->map_fd(KVX_MAP_BIND),
				       resumed_uplink_addr_);
		// kvx_cfg6 first: IPv6 `[uplink]` forwards point to its address.
		write_cfg6();
		// The guests' addresses (carried, seeded or dropped by write_cfg6)
		// in their counts.
		gaddrs_recount(skel_->map_fd(KVX_MAP_ND), skel_->map_fd(KVX_MAP_GADDRS), quota);
		restore_mappings();
		// Before the hooks: no guest packet may bind a host tunnel's
		// peer in the window before the daemon's first refresh.
		sync_host_tunnels(skel_->map_fd(KVX_MAP_HOSTTUN), host_tunnels(nl_));
		// The host's own addresses and broadcasts: no flow from
		// outside opens from one.
		const HostAddrSync ha = sync_host_addrs(skel_->map_fd(KVX_MAP_HOSTADDR),
							host_martian_sources(host_ipv4_ifaddrs(nl_),
									     uplink_.ifindex));
		if (ha.left_out)
			log_warn("the host has more than " + std::to_string(KVX_HOSTADDR_MAX) +
				 " IPv4 addresses and subnet broadcasts: " +
				 std::to_string(ha.left_out) +
				 " of them are not checked as martian sources");
	}

	// kvx_cfg6: the mode, the guests' prefix, their gateway and the
	// uplink's address (control/uplink6.hpp, as the daemon follows it).
	void write_cfg6()
	{
		kvx_cfg6 c{};
		c.mode = ipv6_.mode;
		if (ipv6_.mode == KVX_V6_RELAY && plan_.ipv6_inbound_open)
			c.flags |= KVX_CFG6_F_INBOUND_OPEN;
		if (ipv6_.subnet) {
			std::memcpy(c.subnet, ipv6_.subnet->addr.data(), sizeof(c.subnet));
			c.subnet_len = ipv6_.subnet->prefix;
		}
		if (gw6_)
			std::memcpy(c.gw_addr, gw6_->data(), sizeof(c.gw_addr));
		if (ipv6_.relay_prefix) {
			std::memcpy(c.relay_prefix, ipv6_.relay_prefix->addr.data(),
				    sizeof(c.relay_prefix));
			c.relay_len = ipv6_.relay_prefix->prefix;
		}
		// Both modes answer guests' DAD probes from it (owner6.h).
		if (ipv6_.mode != KVX_V6_OFF)
			std::memcpy(c.bridge_mac, bridge_.mac.data(), sizeof(c.bridge_mac));
		if (ipv6_.mode != KVX_V6_OFF && uplink_.ifindex) {
			const Uplink6View v = read_uplink6(nl_, uplink_.ifindex);
			if (v.choice.addr)
				std::memcpy(c.uplink_addr, v.choice.addr->addr.data(),
					    sizeof(c.uplink_addr));
			log_verbose("ipv6 uplink address: " + v.summary());
		}
		// The owners of another prefix go (a resumed table of another
		// network or mode), the host's own addresses are no guest's:
		// relay's prefix is the uplink's, NAT66's the bridge's subnet.
		if (ipv6_.mode != KVX_V6_OFF) {
			const bool relay = ipv6_.mode == KVX_V6_RELAY;
			const std::optional<Ipv6Net> &prefix = relay ? ipv6_.relay_prefix :
								       ipv6_.subnet;
			const NdSyncResult r =
				sync_nd(skel_->map_fd(KVX_MAP_ND), prefix,
					host_addrs6(ipv6_addrs(nl_, relay ? uplink_.ifindex :
									    bridge_.ifindex)));
			if (r.deleted)
				log_info("ipv6: forgot " + std::to_string(r.deleted) +
					 " guest address(es) outside " +
					 (prefix ? prefix->str() : std::string("any prefix")));
			// NAT66's live guests keep their addresses (their
			// bindings name their MACs) instead of losing them
			// to whoever sends from them first.
			if (!relay && prefix)
				if (size_t n = seed_nd(skel_->map_fd(KVX_MAP_ND),
						       skel_->map_fd(KVX_MAP_BIND6), *prefix,
						       boottime_ns()))
					log_info("nat66: " + std::to_string(n) +
						 " guest address(es) owned by the MACs their "
						 "bindings name");
		}
		const int fd = skel_->map_fd(KVX_MAP_CFG6);
		// As kvx_cfg: a reused map is the live datapath's.
		if (resumed_cfg6_ &&
		    std::find(to_pin_.begin(), to_pin_.end(), KVX_MAP_CFG6) == to_pin_.end()) {
			auto keep = std::make_shared<Fd>(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
			if (keep->get() < 0)
				throw_errno("dup the cfg6 map fd", inst_.pin_dir);
			rb_.add("IPv6 configuration", [keep, before = *resumed_cfg6_] {
				kvmxdp::write_cfg6(keep->get(), before);
			});
		}
		kvmxdp::write_cfg6(fd, c);
		// The address changed (or IPv6 went off) while no daemon was
		// watching: its flows go now, as the daemon would have flushed
		// them.
		if (resumed_cfg6_) {
			Ipv6Addr old{};
			std::memcpy(old.data(), resumed_cfg6_->uplink_addr, old.size());
			if (old != Ipv6Addr{} &&
			    std::memcmp(resumed_cfg6_->uplink_addr, c.uplink_addr,
					sizeof(c.uplink_addr)) != 0)
				flush_ext_addr6(skel_->map_fd(KVX_MAP_CT6),
						skel_->map_fd(KVX_MAP_BIND6), old);
		}
	}

	// Static mappings of the config, as `map add` made them (a first
	// attach after a reboot, a resume, a re-created bridge).
	void restore_mappings()
	{
		const auto &mappings = plan_.mappings;
		if (mappings.empty())
			return;
		std::optional<NetId> cur = network_of_link(nl_, uplink_.ifindex);
		MapFds fds{skel_->map_fd(KVX_MAP_BIND),	   skel_->map_fd(KVX_MAP_EXTADDR),
			   skel_->map_fd(KVX_MAP_CT),	   skel_->map_fd(KVX_MAP_BIND6),
			   skel_->map_fd(KVX_MAP_CT6),	   skel_->map_fd(KVX_MAP_CFG6),
			   skel_->map_fd(KVX_MAP_EXTADDR6)};
		auto r = apply_mappings(fds, mappings, ntohl(kc_.uplink_addr), cur);
		for (const auto &e : r.errors)
			log_warn(e);
		// After the maps: an address a resumed kvx_extaddr holds back
		// (a probe pending or lost) stays off the uplink.
		if (!plan_.uplink.empty())
			for (const AddedAddress &ad :
			     sync_added_addresses(mappings, plan_.uplink, cur, r.held))
				rb_.add("address " + format_ipv4(ad.addr) + " on " + plan_.uplink,
					[ad, uplink = plan_.uplink] {
						remove_uplink_address(uplink, ad);
					});
		size_t suspended = 0;
		for (const auto &sm : mappings)
			suspended += !mapping_active(sm, cur);
		log_verbose("restored " + std::to_string(mappings.size()) + " mapping(s), " +
			    std::to_string(suspended) + " suspended (another network)");
	}

	// bpf_obj_pin into the held pin directory (not libbpf's
	// pin_root_path, which rewrites every '.' of the whole path).
	void pin()
	{
		const DirFd &dir = pins_->dir;
		for (const auto &name : to_pin_) {
			// A replaced map stays open until attach commits: a failure
			// pins it back, or the pinned state would be lost.
			auto it = replaced_.find(name);
			const std::shared_ptr<Fd> old = it == replaced_.end() ? nullptr :
										it->second;
			if (old)
				dir.unlink(name);
			const std::string path = dir.show(name);
			int err =
				bpf_obj_pin(skel_->map_fd(name.c_str()), dir.via_fd(name).c_str());
			if (err < 0 && old)
				bpf_obj_pin(old->get(), dir.via_fd(name).c_str());
			check_libbpf(err, "pin map", path);
			rb_.add("pin " + path, [this, name, path, old] {
				// Once a program was swapped in place (hooks), the
				// live datapath uses the new map: its pin stays, or
				// the pins and the datapath would disagree.
				if (old && programs_swapped_)
					return;
				pins_->dir.unlink(name);
				if (old)
					check_libbpf(bpf_obj_pin(old->get(),
								 pins_->dir.via_fd(name).c_str()),
						     "pin the replaced map back", path);
			});
		}
		failpoint("pinned");
	}

	void hooks()
	{
		const Instance *prev = prev_instance();
		// From here on filters, XDP links and cgroup links of a resume
		// are replaced in place and not undone: a failure leaves the new
		// programs serving with the pinned maps they use.
		programs_swapped_ = resume_;
		if (tc_hook(bridge_, "kvx_br_ingress"))
			inst_.clsact_created_bridge = true;
		// Recorded for the uplink it was created on only.
		inst_.clsact_created_uplink =
			tc_hook(uplink_, "kvx_up_ingress") ||
			(prev && prev->uplink == plan_.uplink && prev->clsact_created_uplink);

		// The XDP fast path in front of the TC programs, where the mode
		// and the devices allow it (control/xdp_path.hpp); a device it
		// cannot take stays TC with the reason, which status shows.
		// The port guard on every bridge port's TC ingress, with it.
		xdp_ = std::make_unique<XdpPath>(plan_.mode, plan_.port_guard, *skel_,
						 pins_->dir.dup());
		if (!resume_) {
			rb_.add("XDP links", [this] { XdpPath::remove_all(pins_->dir); });
			// Its own fd of kvx_xdev: the skeleton goes before the
			// rollback runs.
			rb_.add("port guards",
				[this,
				 xdev = std::make_shared<Fd>(
					 ::fcntl(skel_->map_fd(KVX_MAP_XDEV), F_DUPFD_CLOEXEC, 3)),
				 br = bridge_.ifindex] {
					XdpPath::remove_guards(nl_, xdev->get(), br);
				});
		}
		// The guard on before the guards (abi.h kvx_guard): 0 says "off"
		// to the datapath, which then places no new MAC, and a guest's
		// flows until the daemon's first refresh would count in the slot
		// of unplaced MACs (to move to its port's at the first recount).
		// 1, a lease that has lapsed: placing, but neither holding (a
		// resumed instance's pinned holds may be stale until the
		// daemon's first sync) nor refusing; nothing for a rollback to
		// undo.  The daemon starts the real lease at its first refresh.
		{
			const __u32 zero = 0;
			const __u64 until = plan_.port_guard ? 1 : 0;
			check_libbpf(bpf_map_update_elem(skel_->map_fd(KVX_MAP_GUARD), &zero,
							 &until, BPF_ANY),
				     "update", KVX_MAP_GUARD);
		}
		for (const XdpDevice &d : xdp_->sync(nl_, bridge_.ifindex, uplink_.ifindex))
			log_verbose(d.describe());
		failpoint("xdp");

		// The host's own sockets reaching mapped addresses; without them
		// the datapath still serves the guests and the LAN.
		std::string host_off = host_hooks_attach(*skel_, pins_->dir, g_.run_dir, rb_);
		if (!host_off.empty())
			log_warn("the host itself cannot reach mapped addresses: " + host_off);
		failpoint("host_hooks");
	}

	// Our ingress filter on one device; returns whether attach created
	// its clsact.
	bool tc_hook(const LinkInfo &link, const char *prog)
	{
		const int ifindex = link.ifindex;
		const std::string ifname = link.name;
		if (ifindex == 0)
			return false; // --uplink auto, no default route yet
		const bool had_filter = tc_query(ifindex).has_value();
		const bool created = tc_attach_ingress(ifindex, ifname, skel_->prog_fd(prog));
		if (created)
			rb_.add("clsact on " + ifname,
				[ifindex, ifname] { tc_hook_destroy(ifindex, ifname); });
		// A filter that was there before (resume) is replaced in place;
		// removing it on rollback would cut a working datapath.
		else if (!had_filter)
			rb_.add("filter on " + ifname,
				[ifindex, ifname] { tc_detach(ifindex, ifname); });
		failpoint(prog);
		return created;
	}

	// On resume the values saved by the first attach are kept: the
	// current ones are our own.
	void sysctls()
	{
		const Instance *prev = prev_instance();
		std::string fwd = forwarding_key(plan_.bridge);
		if (auto cur = sys_.try_read(fwd)) {
			inst_.saved_forwarding = prev ? prev->saved_forwarding : cur;
			if (*cur != "1") {
				sys_.write(fwd, "1");
				rb_.add(fwd,
					[sys = sys_, fwd, old = *cur] { sys.write(fwd, old); });
			}
		} else {
			log_warn("cannot read " + sys_.root() + "/" + fwd +
				 ": forwarding on the bridge is needed for the route lookup");
		}
		ipv6_forwarding();
		if (auto cur = sys_.try_read(kReservedPortsKey)) {
			inst_.saved_reserved_ports = prev ? prev->saved_reserved_ports : cur;
			std::string base = *cur;
			// The pool's parts: the hole in the default pool is the
			// host's ephemeral range, which must stay usable.
			if (prev && prev->saved_reserved_ports &&
			    !(prev->nat_pool() == inst_.nat_pool()))
				for (const PortRange &r : prev->nat_pool().parts())
					base = reserved_ports_remove(
						base, *prev->saved_reserved_ports, r);
			std::string next = base;
			for (const PortRange &r : inst_.nat_pool().parts())
				next = reserved_ports_add(next, r);
			if (next != *cur) {
				sys_.write(kReservedPortsKey, next);
				rb_.add(kReservedPortsKey, [sys = sys_, old = *cur] {
					sys.write(kReservedPortsKey, old);
				});
			}
		}
		failpoint("sysctls");
	}

	// NAT66: the bridge's own IPv6 forwarding flag (bpf_fib_lookup), set
	// and recorded as IPv4's; IPv6 turned off puts back what it was.
	void ipv6_forwarding()
	{
		const Instance *prev = prev_instance();
		const std::optional<std::string> saved = prev ? prev->saved_forwarding6 :
								std::nullopt;
		const std::string fwd = forwarding6_key(plan_.bridge);
		auto cur = sys_.try_read(fwd);
		if (!cur) {
			if (ipv6_.mode != KVX_V6_OFF)
				log_warn("cannot read " + sys_.root() + "/" + fwd +
					 ": IPv6 forwarding on the bridge is needed for the route "
					 "lookup");
			return;
		}
		const std::string want = ipv6_.mode != KVX_V6_OFF ? "1" : saved.value_or(*cur);
		inst_.saved_forwarding6 = ipv6_.mode != KVX_V6_OFF ? saved.value_or(*cur) :
								     std::optional<std::string>();
		// First: the uplink's RA default route must survive the write.
		uplink_accept_ra();
		if (*cur != want) {
			if (want == "1")
				warn_ra_routes_purged();
			sys_.write(fwd, want);
			rb_.add(fwd, [sys = sys_, fwd, old = *cur] { sys.write(fwd, old); });
			// The kernel just dropped the uplink's RA default route
			// (solicit_routers says why): ask for it back now.
			if (want == "1" && uplink_.ifindex > 0) {
				try {
					solicit_routers(uplink_.ifindex);
				} catch (const Error &e) {
					log_warn(std::string("IPv6 default route: ") + e.what() +
						 " (back at the router's next advertisement)");
				}
			}
		}
	}

	// The other devices whose router-advertised default route the
	// forwarding write is about to purge (accept_ra 1, see below): kvmxdp
	// changes only the uplink's accept_ra, so the host may lose IPv6
	// through them (a wired NIC beside the WiFi, a VPN that takes RAs).
	void warn_ra_routes_purged()
	{
		std::set<std::string> devs;
		try {
			for (const Ipv6Route &r : ipv6_routes(nl_, kEveryLink)) {
				char name[IF_NAMESIZE] = {};
				if (r.protocol != RTPROT_RA || r.dst.prefix != 0 ||
				    r.oif == uplink_.ifindex || !if_indextoname(r.oif, name))
					continue;
				if (auto v = sys_.try_read(accept_ra_key(name)); v && *v == "1")
					devs.insert(name);
			}
		} catch (const Error &) {
			return; // a warning only
		}
		for (const std::string &d : devs)
			log_warn("IPv6 forwarding on: the kernel drops " + d +
				 "'s router-advertised default route (its accept_ra is 1); set "
				 "net.ipv6.conf." +
				 d + ".accept_ra=2 if the host routes IPv6 through it");
	}

	// Forwarding on for any device makes the kernel purge the
	// router-advertised default routes of every device whose accept_ra
	// is not 2 (addrconf_fixup_forwarding -> rt6_purge_dflt_routers):
	// the uplink, which takes RAs (accept_ra 1) and keeps its own
	// forwarding 0, would lose the host's IPv6 default route until the
	// router's next RA.  Its accept_ra goes to 2 (the same while its own
	// forwarding is 0) with IPv6 on, recorded and put back by detach or
	// an attach with IPv6 off, as the forwarding; 0 (the host wants no
	// RAs there) and 2 stay.  Only the uplink: the one device kvmxdp
	// knows the host routes through.
	void uplink_accept_ra()
	{
		const Instance *prev = prev_instance();
		std::optional<std::string> saved = prev ? prev->saved_accept_ra : std::nullopt;
		std::string dev = prev ? prev->accept_ra_dev : std::string();
		hand_over_accept_ra(
			sys_, **cfg_, plan_.bridge, saved, dev,
			ipv6_.mode != KVX_V6_OFF ? uplink_.name : std::string(),
			[&](const std::string &key, const std::string &old, const std::string &) {
				rb_.add(key, [sys = sys_, key, old] { sys.write(key, old); });
			});
		inst_.saved_accept_ra = saved;
		inst_.accept_ra_dev = dev;
	}

	void record()
	{
		// An uplink changed on resume: our filter on the old one goes,
		// last, so that a failure before here leaves it serving.
		(*cfg_)->upsert(inst_);
		(*cfg_)->detached.erase(plan_.bridge);
		cfg_->save();
		rb_.commit();
		// After the save: a failure there rolls back with the old filter
		// still serving.  Failing here only costs a stale filter.
		const Instance *prev = prev_instance();
		if (prev && prev->uplink != plan_.uplink)
			try {
				tc_remove_ingress(nl_, prev->uplink, prev->clsact_created_uplink);
			} catch (const Error &e) {
				log_warn(std::string("the old uplink keeps kvmxdp's filter: ") +
					 e.what());
			}
		pid_rb_.commit();
		// The daemon runs for days: other kvmxdp commands must get the lock.
		cfg_->unlock();
	}

	// Members go in reverse order: on a failure the kernel objects first,
	// then the undo steps (rb_), the pid file, the daemon slot (pin
	// directory, pid file) and last the config lock.
	const GlobalOptions &g_;
	const AttachOptions &a_;
	Sysctl sys_;
	NlSocket nl_;
	std::optional<LockedConfig> cfg_; // read once, under its lock
	AttachPlan plan_;
	std::optional<PidLock> pid_lock_;
	std::optional<FileLock> pin_lock_;
	Rollback pid_rb_;
	// <bpffs>/kvmxdp/<bridge>, held from validate on; rb_'s undo steps
	// use it.
	std::optional<PinDir> pins_;
	Rollback rb_;

	// What attach makes, filled in phase by phase.
	Instance inst_;

	// validate
	LinkInfo bridge_, uplink_;
	std::string pid_file_;
	// resume maps
	std::unique_ptr<Skel<kvmxdp_tc>> skel_;
	bool resume_ = false;
	bool programs_swapped_ = false;
	std::vector<std::string> to_pin_;
	// Pinned maps replaced by new ones, held until attach commits.
	std::map<std::string, std::shared_ptr<Fd>> replaced_;
	uint32_t resumed_uplink_addr_ = 0; // network order
	uint32_t resumed_seed_ = 0;	   // the pinned kvx_cfg's guest_seed; 0: none
	std::optional<kvx_cfg6> resumed_cfg6_;
	// validate
	Ipv6Decision ipv6_;
	std::optional<Ipv6Addr> gw6_; // the bridge's link-local
	// write cfg
	kvx_cfg kc_{};
	// hooks
	std::unique_ptr<XdpPath> xdp_;
};

} // namespace

AttachedInstance attach_instance(const GlobalOptions &g, const AttachOptions &a)
{
	return Attach(g, a).run();
}

} // namespace kvmxdp
