// SPDX-License-Identifier: GPL-2.0
#include "control/status.hpp"

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>

#include "kernel/skel.hpp"
#include "kernel/tc.hpp"
#include "model/config.hpp"
#include "base/error.hpp"
#include "kernel/features.hpp"
#include "base/fs.hpp"
#include "control/daemon.hpp"
#include "control/host_access.hpp"
#include "control/mapping_sync.hpp"
#include "control/resume.hpp"
#include "kernel/maps.hpp"
#include "model/mode.hpp"
#include "control/devices.hpp"
#include "base/netaddr.hpp"
#include "kernel/netlink.hpp"
#include "base/sysctl.hpp"
#include "base/version.hpp"
#include "control/uplink6.hpp"
#include "control/xdp_path.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

// Runs argv (no shell; argv[0] an absolute path, never searched in PATH)
// with a fixed, minimal environment and returns its stdout, or nullopt if
// it failed.  status runs as root: neither the caller's PATH nor variables
// such as LD_PRELOAD or XTABLES_LIBDIR may choose what it runs.
std::optional<std::string> run_capture(const std::vector<std::string> &argv)
{
	int pipefd[2];
	if (::pipe2(pipefd, O_CLOEXEC) < 0)
		return std::nullopt;
	pid_t pid = ::fork();
	if (pid < 0) {
		::close(pipefd[0]);
		::close(pipefd[1]);
		return std::nullopt;
	}
	if (pid == 0) {
		::dup2(pipefd[1], STDOUT_FILENO);
		int devnull = ::open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			::dup2(devnull, STDERR_FILENO);
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		char path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
		char lang[] = "LC_ALL=C";
		char *env[] = {path, lang, nullptr};
		::execve(args[0], args.data(), env);
		::_exit(127);
	}
	::close(pipefd[1]);
	std::string out;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0)
		out.append(buf, static_cast<size_t>(n));
	::close(pipefd[0]);
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return std::nullopt;
	return out;
}

// The directories a distribution installs iptables and nft in (Debian:
// /usr/sbin; /sbin on systems without a merged /usr).
constexpr const char *kToolDirs[] = {"/usr/sbin/", "/sbin/"};

} // namespace

bool firewall_tool_installed(const std::string &tool)
{
	for (const char *dir : kToolDirs)
		if (::access((dir + tool).c_str(), X_OK) == 0)
			return true;
	return false;
}

std::optional<std::string> run_firewall_tool(const std::string &tool, std::vector<std::string> args,
					     std::vector<std::string> &unread)
{
	for (const char *dir : kToolDirs) {
		args[0] = dir + tool;
		if (::access(args[0].c_str(), X_OK) != 0)
			continue;
		if (auto out = run_capture(args))
			return out;
		unread.push_back(tool + ": " + args[0] + " failed");
		return std::nullopt;
	}
	unread.push_back(tool + ": not installed (no " + kToolDirs[0] + tool + " or " +
			 kToolDirs[1] + tool + ")");
	return std::nullopt;
}

namespace {

// Lines of the firewall rule sets that mention the bridge or libvirt's
// chains: such rules see (or drop) what kvmxdp hands to the host stack.
// The rule sets that could not be read are named in `unread`.
std::vector<std::string> foreign_rules(const std::string &bridge, std::vector<std::string> &unread)
{
	std::vector<std::string> out;
	auto scan = [&](const std::string &prefix, const std::optional<std::string> &text) {
		if (!text)
			return;
		std::istringstream in(*text);
		std::string line;
		while (std::getline(in, line)) {
			if (line.find(bridge) == std::string::npos &&
			    line.find("LIBVIRT") == std::string::npos)
				continue;
			if (out.size() >= 50)
				return;
			auto b = line.find_first_not_of(" \t");
			out.push_back(prefix + line.substr(b == std::string::npos ? 0 : b));
		}
	};
	scan("iptables: ", run_firewall_tool("iptables-save", {""}, unread));
	scan("nft: ", run_firewall_tool("nft", {"", "list", "ruleset"}, unread));
	return out;
}

json device_json(NlSocket &nl, const std::string &ifname, const char *expect,
		 std::vector<std::string> &warnings)
{
	std::optional<LinkInfo> link;
	try {
		link = find_link(nl, ifname);
	} catch (const Error &) {
	}
	if (!link) {
		warnings.push_back("device " + ifname + " does not exist");
		return {{"ifname", ifname},
			{"ifindex", nullptr},
			{"hook", "tc-ingress"},
			{"mode", "tc"},
			{"prog", nullptr}};
	}
	json prog = nullptr;
	if (auto id = tc_query(link->ifindex)) {
		std::string name = prog_name_by_id(*id);
		prog = name;
		if (name != expect)
			warnings.push_back("the kvmxdp filter on " + ifname + " runs '" + name +
					   "', expected '" + expect + "'");
	} else {
		warnings.push_back("no kvmxdp filter on " + ifname +
				   " ingress: run attach again to restore the datapath");
	}
	return {{"ifname", ifname},
		{"ifindex", link->ifindex},
		{"hook", "tc-ingress"},
		{"mode", "tc"},
		{"prog", prog}};
}

// What the XDP fast path makes of a device (attach --mode, control/xdp_path.hpp):
// the hook it should have and why, the XDP program it has, and whether
// XDP redirects into it.
void add_xdp_facts(json &d, int ifindex, const std::string &ifname, DeviceRole role,
		   const std::string &kind, HookMode mode,
		   const std::vector<std::pair<int, uint32_t>> &links, bool ports_tx,
		   bool locked = false)
{
	DeviceFacts f = probe_device(ifindex, ifname, kind);
	f.locked = locked;
	HookChoice c = choose_hook(mode, role, f, ports_tx);
	json xdp_prog = nullptr;
	for (const auto &[idx, prog_id] : links)
		if (idx == ifindex && prog_id)
			xdp_prog = prog_name_by_id(prog_id);
	if (c.hook == Hook::Xdp && xdp_prog.is_null()) {
		// Whose XDP program is there, if any (another tool's keeps the
		// device on TC: the daemon does not replace it).
		bpf_xdp_query_opts q{};
		q.sz = sizeof(q);
		if (bpf_xdp_query(ifindex, 0, &q) == 0 && q.prog_id)
			c = {Hook::Tc, "another XDP program is attached (id " +
					       std::to_string(q.prog_id) + ", " +
					       prog_name_by_id(q.prog_id) + "): TC path"};
		else
			c = {Hook::Tc,
			     "XDP wanted (" + c.why +
				     ") but not attached: no daemon yet, or the attach failed (its "
				     "log says why)"};
	}
	d["role"] = role_name(role);
	d["mode"] = xdp_prog.is_null() ? "tc" : "xdp";
	d["xdp_prog"] = xdp_prog;
	d["why"] = c.why;
	std::string tx_why;
	d["redirect_target"] = xdp_tx_allowed(f, tx_why);
	d["redirect_why"] = tx_why;
}

json device_json(NlSocket &nl, const std::string &ifname, const char *expect, DeviceRole role,
		 HookMode mode, const std::vector<std::pair<int, uint32_t>> &links, bool ports_tx,
		 std::vector<std::string> &warnings)
{
	json d = device_json(nl, ifname, expect, warnings);
	if (d["ifindex"].is_null())
		return d;
	std::string kind;
	if (auto l = find_link(nl, ifname))
		kind = l->kind;
	add_xdp_facts(d, d["ifindex"].get<int>(), ifname, role, kind, mode, links, ports_tx);
	return d;
}

// The NAT pool as the datapath sees it (kvx_cfg, kvx_portx): its range,
// the hole (the host's ephemeral range), the ports the host listens on,
// and what is left to allocate.
json nat_pool_json(const kvx_cfg &kc, const DirFd &pins)
{
	NatPool pool{{kc.nat_port_lo, kc.nat_port_hi}, {kc.nat_skip_lo, kc.nat_skip_hi}};
	json p = {{"nat_port_lo", kc.nat_port_lo}, {"nat_port_hi", kc.nat_port_hi},
		  {"nat_skip_lo", kc.nat_skip_lo}, {"nat_skip_hi", kc.nat_skip_hi},
		  {"ports", pool.size()},	   {"host_listening", nullptr},
		  {"available", pool.size()},	   {"guest_ports", kc.guest_ports}};
	if (auto fd = find_pinned(pins, KVX_MAP_PORTX, pinned_layout(KVX_MAP_PORTX))) {
		const std::vector<uint64_t> bits = read_portx(fd->get());
		uint32_t listening = 0;
		for (const PortRange &r : pool.parts())
			for (uint32_t port = r.lo; port <= r.hi; port++)
				listening += (bits[port / 64] >> (port % 64)) & 1;
		p["host_listening"] = listening;
		p["available"] = pool.size() - listening;
	}
	return p;
}

const char *v6_mode_name(uint32_t mode)
{
	switch (mode) {
	case KVX_V6_OFF:
		return "off";
	case KVX_V6_NAT66:
		return "nat66";
	case KVX_V6_RELAY:
		return "relay";
	}
	return "unknown";
}

Ipv6Addr addr6_of(const __be32 (&w)[4])
{
	Ipv6Addr a;
	std::memcpy(a.data(), w, a.size());
	return a;
}

// What the datapath does with IPv6 (kvx_cfg6, as attach and the daemon wrote
// it) and why (decide_ipv6 on the recorded choice and the bridge's addresses
// now: a bridge that gained or lost its prefix since says so), its tables and
// programs (kvx_v6progs: tail-called by the entry points, so `bpftool prog
// show` lists them but no device does).
void add_ipv6_mode(json &j, const Instance &inst, NlSocket &nl, const DirFd &d,
		   std::vector<std::string> &warnings)
{
	Fd cfg6 = open_pinned(d, KVX_MAP_CFG6, pinned_layout(KVX_MAP_CFG6));
	const kvx_cfg6 c = read_cfg6(cfg6.get());
	j["ipv6_mode"] = v6_mode_name(c.mode);
	j["ipv6_subnet"] = nullptr;
	if (c.mode == KVX_V6_NAT66)
		j["ipv6_subnet"] = Ipv6Net{addr6_of(c.subnet), c.subnet_len}.str();
	// Relay: the uplink's prefix the guests share (null: the network
	// allows no relay now; the daemon writes the next one).
	const std::optional<Ipv6Net> relay_prefix =
		c.mode == KVX_V6_RELAY && c.relay_len ?
			std::optional<Ipv6Net>(Ipv6Net{addr6_of(c.relay_prefix), c.relay_len}) :
			std::nullopt;
	j["ipv6_relay_prefix"] = relay_prefix ? json(relay_prefix->str()) : json(nullptr);
	const Ipv6Addr up = addr6_of(c.uplink_addr), gw = addr6_of(c.gw_addr);
	j["ipv6_uplink_addr"] = up == Ipv6Addr{} ? json(nullptr) : json(format_ipv6(up));
	j["ipv6_gw_addr"] = gw == Ipv6Addr{} ? json(nullptr) : json(format_ipv6(gw));
	std::string why;
	try {
		std::vector<Ipv6IfAddr> br;
		if (auto l = find_link(nl, inst.bridge))
			br = ipv6_addrs(nl, l->ifindex);
		std::optional<RelayCheck> relay;
		if (inst.ipv6 == Ipv6Choice::Relay && !inst.uplink.empty())
			if (auto up = find_link(nl, inst.uplink))
				relay = read_uplink6(nl, up->ifindex).relay;
		const Ipv6Decision now =
			decide_ipv6(inst.ipv6, inst.subnet6, br, inst.bridge, relay);
		why = now.why;
		const bool same =
			now.mode == c.mode &&
			(c.mode == KVX_V6_OFF ||
			 (c.mode == KVX_V6_RELAY && now.relay_prefix == relay_prefix) ||
			 (now.subnet && *now.subnet == Ipv6Net{addr6_of(c.subnet), c.subnet_len}));
		if (!same)
			warnings.push_back("IPv6 is " + std::string(v6_mode_name(c.mode)) +
					   " since attach, but bridge '" + inst.bridge +
					   "' now gives " + now.why + ": run attach again");
	} catch (const Error &e) {
		why = e.what();
		warnings.push_back(std::string("IPv6: ") + e.what());
	}
	j["ipv6_mode_why"] = why;
	if (c.mode == KVX_V6_RELAY && !relay_prefix)
		warnings.push_back("relay: the uplink's network allows no relay now (" + why +
				   "): the guests' IPv6 to the outside is dropped "
				   "(DROP_NO_UPLINK_ADDR) until it does");
	if (c.mode == KVX_V6_NAT66 && up == Ipv6Addr{})
		warnings.push_back(
			"uplink " + (inst.uplink.empty() ? std::string("none") : inst.uplink) +
			" has no usable IPv6 address: the guests' IPv6 to the outside is "
			"dropped (DROP_NO_UPLINK_ADDR)");
	for (auto [key, map] :
	     {std::pair{"conntrack6", KVX_MAP_CT6}, std::pair{"bindings6", KVX_MAP_BIND6},
	      std::pair{"guest_addresses6", KVX_MAP_ND}}) {
		Fd fd = open_pinned(d, map, pinned_layout(map));
		const MapInfo mi = map_info(fd.get(), map);
		j[key] = {{"entries", count_keys(fd.get(), mi.key_size)},
			  {"max_entries", mi.max_entries}};
	}
	j["relay_addresses"] = j["guest_addresses6"]; // its name before NAT66 kept owners
	json progs = json::array();
	if (auto pa = find_pinned(d, KVX_MAP_V6PROGS, pinned_layout(KVX_MAP_V6PROGS))) {
		static const char *const kFrom[KVX_V6_MAX] = {"kvx_br_ingress", "kvx_up_ingress",
							      "kvx_br6", "kvx_up6", "kvx_br6"};
		for (__u32 slot = 0; slot < KVX_V6_MAX; slot++) {
			// A program array's lookup from user space gives the id.
			__u32 id = 0;
			if (bpf_map_lookup_elem(pa->get(), &slot, &id) != 0)
				id = 0;
			progs.push_back({{"slot", slot},
					 {"prog", id ? json(prog_name_by_id(id)) : json(nullptr)},
					 {"prog_id", id ? json(id) : json(nullptr)},
					 {"tail_called_from", kFrom[slot]}});
			if (!id && c.mode != KVX_V6_OFF)
				warnings.push_back(std::string("no IPv6 program in ") +
						   KVX_MAP_V6PROGS + " slot " +
						   std::to_string(slot) +
						   ": IPv6 frames go to the host untranslated (run "
						   "attach again)");
		}
	}
	j["ipv6_programs"] = progs;
	// The XDP fast path's (kvx_xdp6progs), pinned while a device runs the
	// XDP programs: empty slots only cost speed (IPv6 takes TC).
	json xprogs = json::array();
	if (auto pa = find_pinned(d, KVX_MAP_XDP6PROGS,
				  {BPF_MAP_TYPE_PROG_ARRAY, sizeof(__u32), sizeof(__u32)})) {
		static const char *const kFrom[KVX_XDP6_MAX] = {"kvx_xdp_port", "kvx_xdp_up"};
		for (__u32 slot = 0; slot < KVX_XDP6_MAX; slot++) {
			__u32 id = 0;
			if (bpf_map_lookup_elem(pa->get(), &slot, &id) != 0)
				id = 0;
			xprogs.push_back({{"slot", slot},
					  {"prog", id ? json(prog_name_by_id(id)) : json(nullptr)},
					  {"prog_id", id ? json(id) : json(nullptr)},
					  {"tail_called_from", kFrom[slot]}});
		}
	}
	j["xdp_ipv6_programs"] = xprogs;
}

json instance_json(const GlobalOptions &g, const Instance &inst, NlSocket &nl, const Sysctl &sys)
{
	std::vector<std::string> warnings;
	json j;
	j["bridge"] = inst.bridge;
	// --uplink auto: "auto", and the device it follows now in uplink_device.
	j["uplink"] = inst.uplink_auto ? std::string("auto") : inst.uplink;
	j["uplink_device"] = inst.uplink.empty() ? json(nullptr) : json(inst.uplink);
	j["subnet"] = inst.subnet.str();
	j["subnet6"] = inst.subnet6 ? json(inst.subnet6->str()) : json(nullptr);
	j["ipv6_choice"] = ipv6_choice_name(inst.ipv6);
	j["uplink_addr"] = nullptr;
	j["nat_port_lo"] = inst.nat_ports.lo;
	j["nat_port_hi"] = inst.nat_ports.hi;
	j["eif"] = inst.eif;
	// The pin directory: one another user could change, or maps of
	// another build, end status with that one line (PinRefused); pins
	// that are missing or unreadable are a warning.
	std::optional<PinDir> pins;
	std::vector<std::pair<int, uint32_t>> links;
	json host = json::array();
	try {
		pins = open_pin_dir(inst.bpffs, inst.bridge, false);
		if (!pins)
			throw Error("open pin directory", pin_dir_for(inst.bpffs, inst.bridge),
				    ENOENT);
		links = XdpPath::pinned_links(pins->dir);
		for (const HostHook &h : host_hooks_query(pins->dir))
			host.push_back(
				{{"hook", h.hook}, {"prog", h.prog}, {"prog_id", h.prog_id}});
	} catch (const PinRefused &) {
		throw;
	} catch (const Error &e) {
		warnings.push_back(std::string("cannot read the pinned maps: ") + e.what());
	}
	// The daemon by its locks, the pin directory's through the checked fd.
	auto daemons = instance_daemons(pid_file_for(g.run_dir, inst.bpffs, inst.bridge),
					pins ? &pins->dir : nullptr);
	j["daemon_pid"] = daemons.empty() ? json(nullptr) : json(daemons.front().pid());
	if (daemons.empty())
		warnings.insert(warnings.begin(),
				"no daemon running: the datapath works, but uplink address "
				"changes are not followed, expired flows are not "
				"collected and the port guard has lapsed (run attach again "
				"to resume)");
	// The bridge's ports first: whether any takes XDP redirects decides
	// the uplink's XDP under --mode auto (choose_hook).
	json ports = json::array();
	bool ports_tx = false;
	try {
		if (auto br = find_link(nl, inst.bridge))
			for (const PortInfo &p : bridge_ports(nl, br->ifindex)) {
				json d = {{"ifname", p.name},
					  {"ifindex", p.ifindex},
					  {"hook", nullptr},
					  {"prog", nullptr}};
				add_xdp_facts(d, p.ifindex, p.name, DeviceRole::Port, p.kind,
					      inst.mode, links, true, p.locked);
				// Where XDP learns guest MACs for the bridge (and
				// where only the bridge's own entries count).
				d["learning"] = p.learning;
				d["locked"] = p.locked;
				// The port guard (kvx_port_in), the daemon's on
				// every port it has seen.
				if (auto id = tc_query(p.ifindex)) {
					d["prog"] = prog_name_by_id(*id);
					if (d["prog"] != "kvx_port_in" && inst.port_guard)
						warnings.push_back(
							"another program is at kvmxdp's priority on " +
							p.name + " ingress: no port guard there");
				} else if (!daemons.empty() && inst.port_guard)
					warnings.push_back(
						"no port guard on " + p.name +
						" (yet): a guest there may send with the MAC of a guest "
						"on another port (see the daemon's log)");
				if (!d["xdp_prog"].is_null())
					d["hook"] = "xdp";
				ports_tx = ports_tx || d["redirect_target"].get<bool>();
				ports.push_back(d);
			}
	} catch (const Error &e) {
		warnings.push_back(std::string("bridge ports: ") + e.what());
	}
	j["port_guard"] = inst.port_guard;
	j["devices"] =
		json::array({device_json(nl, inst.bridge, "kvx_br_ingress", DeviceRole::Bridge,
					 inst.mode, links, true, warnings)});
	if (!inst.uplink.empty())
		j["devices"].push_back(device_json(nl, inst.uplink, "kvx_up_ingress",
						   DeviceRole::Uplink, inst.mode, links, ports_tx,
						   warnings));
	for (auto &p : ports)
		j["devices"].push_back(p);
	if (inst.uplink.empty())
		warnings.push_back("uplink: none (waiting for a default route): guest traffic "
				   "to the outside is dropped until one appears");

	// The uplink's IPv6, read now (the daemon follows it into kvx_cfg6).
	j["ipv6"] = nullptr;
	if (!inst.uplink.empty())
		try {
			if (auto up = find_link(nl, inst.uplink))
				j["ipv6"] = uplink6_json(read_uplink6(nl, up->ifindex));
		} catch (const Error &e) {
			warnings.push_back(std::string("uplink IPv6: ") + e.what());
		}

	j["host_access"] = host;
	if (host.empty())
		warnings.push_back("the host's own sockets do not reach mapped addresses "
				   "(no cgroup hooks; see the attach warning)");

	json ct = {{"entries", 0}, {"max_entries", inst.ct_size}};
	json bind = {{"entries", 0}, {"max_entries", inst.bind_size}};
	json counters = json::object();
#define KVX_X_ZERO(name, drop, desc) counters[#name] = {{"packets", 0}, {"bytes", 0}};
	KVX_REASONS(KVX_X_ZERO)
#undef KVX_X_ZERO
	if (pins) {
		try {
			const DirFd &d = pins->dir;
			auto open = [&](const char *m) {
				return open_pinned(d, m, pinned_layout(m));
			};
			Fd cfg_fd = open(KVX_MAP_CFG);
			Fd ct_fd = open(KVX_MAP_CT);
			Fd bind_fd = open(KVX_MAP_BIND);
			Fd stats_fd = open(KVX_MAP_STATS);
			kvx_cfg kc = read_cfg(cfg_fd.get());
			j["overlap"] = (kc.flags & KVX_CFG_F_OVERLAP) != 0;
			if (kc.flags & KVX_CFG_F_OVERLAP)
				warnings.push_back("uplink " + inst.uplink +
						   "'s network overlaps the guest subnet " +
						   inst.subnet.str() +
						   ": not translating (PASS_OVERLAP) until the "
						   "uplink leaves that network");
			j["nat_pool"] = nat_pool_json(kc, d);
			if (kc.uplink_addr)
				j["uplink_addr"] = format_ipv4(ntohl(kc.uplink_addr));
			else if (!inst.uplink.empty())
				warnings.push_back("uplink " + inst.uplink +
						   " has no IPv4 address yet: guest traffic to the "
						   "outside is dropped (DROP_NO_UPLINK_ADDR)");
			ct = {{"entries", count_entries<kvx_ct_key>(ct_fd.get())},
			      {"max_entries", map_info(ct_fd.get(), KVX_MAP_CT).max_entries}};
			bind = {{"entries", count_entries<kvx_bind_key>(bind_fd.get())},
				{"max_entries", map_info(bind_fd.get(), KVX_MAP_BIND).max_entries}};
			auto stats = read_stats(stats_fd.get());
#define KVX_X_STAT(name, drop, desc)                                 \
	counters[#name] = {{"packets", stats[KVX_R_##name].packets}, \
			   {"bytes", stats[KVX_R_##name].bytes}};
			KVX_REASONS(KVX_X_STAT)
#undef KVX_X_STAT
			// Maps of an older kvmxdp have no IPv6 part.
			try {
				add_ipv6_mode(j, inst, nl, d, warnings);
			} catch (const PinRefused &) {
				throw;
			} catch (const Error &e) {
				warnings.push_back(std::string("IPv6 maps: ") + e.what());
			}
		} catch (const PinRefused &) {
			throw;
		} catch (const Error &e) {
			warnings.push_back(std::string("cannot read the pinned maps: ") + e.what());
		}
	}
	j["conntrack"] = ct;
	j["bindings"] = bind;
	j["counters"] = counters;
	// Per-map entries and memory; near-full and DROP_TABLE_FULL warnings
	// (status_add_usage below).
	{
		std::string pid_file = pid_file_for(g.run_dir, inst.bpffs, inst.bridge);
		status_add_usage(j, pins ? &pins->dir : nullptr,
				 pid_file.substr(0, pid_file.size() - 4) + ".table_full", warnings);
		// Relay's RAs silent for another router (control/ra_sender.hpp).
		if (auto text = read_file(pid_file.substr(0, pid_file.size() - 4) + ".ra_foreign"))
			if (j.value("ipv6_mode", "") == "relay")
				warnings.push_back(
					"another router advertises on " + inst.bridge + " (" +
					text->substr(0, text->find('\n')) +
					"): kvmxdp sends no router advertisements there while it does, "
					"so the guests may get no address in the relay prefix (libvirt: "
					"remove the network's <ip family='ipv6'>)");
	}

	bool br_nf = sys.try_read(kBrNfCallIptablesKey).value_or("0") == "1";
	std::vector<std::string> unread;
	auto rules = foreign_rules(inst.bridge, unread);
	j["coexistence"] = {
		{"br_netfilter", br_nf}, {"foreign_rules", rules}, {"rules_unread", unread}};
	if (br_nf)
		warnings.push_back("br_netfilter is active (bridge-nf-call-iptables=1): bridged "
				   "frames pass netfilter/conntrack before the bridge's TC hook; "
				   "set sysctl net.bridge.bridge-nf-call-iptables=0 or unload "
				   "br_netfilter");
	if (!rules.empty())
		warnings.push_back(std::to_string(rules.size()) + " firewall rule(s) mention " +
				   inst.bridge +
				   " or libvirt: they may NAT or drop what kvmxdp passes to the "
				   "host; for a libvirt network use <forward mode='open'/>");
	{
		std::optional<Fd> extaddr, cfg6, extaddr6, bind6;
		if (pins)
			try {
				extaddr = find_pinned(pins->dir, KVX_MAP_EXTADDR,
						      pinned_layout(KVX_MAP_EXTADDR));
				cfg6 = find_pinned(pins->dir, KVX_MAP_CFG6,
						   pinned_layout(KVX_MAP_CFG6));
				extaddr6 = find_pinned(pins->dir, KVX_MAP_EXTADDR6,
						       pinned_layout(KVX_MAP_EXTADDR6));
				bind6 = find_pinned(pins->dir, KVX_MAP_BIND6,
						    pinned_layout(KVX_MAP_BIND6));
			} catch (const Error &) {
			}
		j["mappings"] = mappings_json(inst, nl, extaddr ? extaddr->get() : -1,
					      cfg6 ? cfg6->get() : -1,
					      extaddr6 ? extaddr6->get() : -1,
					      bind6 ? bind6->get() : -1);
	}
	for (const auto &m : j["mappings"]) {
		const std::string what = "mapping " + m["ext"].get<std::string>() + " -> " +
					 m["guest"].get<std::string>();
		if (m["state"] == "suspended")
			warnings.push_back(what + " is suspended: made on another network (" +
					   m["network"].get<std::string>() + ")");
		else if (m["state"] == "conflict" || m["state"] == "probing")
			warnings.push_back(what + " is suspended (" +
					   m["state"].get<std::string>() +
					   "): " + m["reason"].get<std::string>());
	}
	j["warnings"] = warnings;
	return j;
}

uint32_t count_any(int fd, const MapInfo &m)
{
	if (m.type == BPF_MAP_TYPE_ARRAY || m.type == BPF_MAP_TYPE_PERCPU_ARRAY)
		return m.max_entries; // arrays are always full
	return count_keys(fd, m.key_size);
}

std::string dirname_of(const std::string &path)
{
	auto slash = path.rfind('/');
	return slash == std::string::npos ? "." : path.substr(0, slash);
}

} // namespace

void status_add_usage(json &inst, const DirFd *pins, const std::string &state_file,
		      std::vector<std::string> &warnings)
{
	static const char *const kMaps[] = {KVX_MAP_CFG,      KVX_MAP_BIND,	KVX_MAP_CT,
					    KVX_MAP_STATS,    KVX_MAP_EXTADDR,	KVX_MAP_FRAG,
					    KVX_MAP_GFLOWS,   KVX_MAP_GUEST,	KVX_MAP_CFG6,
					    KVX_MAP_CT6,      KVX_MAP_BIND6,	KVX_MAP_FRAG6,
					    KVX_MAP_ND,	      KVX_MAP_EXTADDR6, KVX_MAP_OVL,
					    KVX_MAP_FRAGHOST, KVX_MAP_FRAGHOST6};
	int ncpu = libbpf_num_possible_cpus();
	json maps = json::object();
	uint64_t total = 0;
	for (const char *name : kMaps) {
		try {
			auto pinned = pins ? find_pinned(*pins, name, pinned_layout(name)) :
					     std::optional<Fd>();
			if (!pinned)
				continue;
			const Fd &fd = *pinned;
			MapInfo mi = map_info(fd.get(), name);
			auto kernel = map_memlock_bytes(fd.get());
			uint64_t mem =
				kernel ? *kernel :
					 map_memory_estimate(mi, ncpu > 0 ? unsigned(ncpu) : 1);
			uint32_t entries;
			if (std::string(name) == KVX_MAP_CT &&
			    inst["conntrack"].contains("entries"))
				entries = inst["conntrack"]["entries"].get<uint32_t>();
			else if (std::string(name) == KVX_MAP_BIND &&
				 inst["bindings"].contains("entries"))
				entries = inst["bindings"]["entries"].get<uint32_t>();
			else if (std::string(name) == KVX_MAP_CT6 && inst.contains("conntrack6"))
				entries = inst["conntrack6"]["entries"].get<uint32_t>();
			else if (std::string(name) == KVX_MAP_BIND6 && inst.contains("bindings6"))
				entries = inst["bindings6"]["entries"].get<uint32_t>();
			else
				entries = count_any(fd.get(), mi);
			maps[name] = {{"entries", entries},
				      {"max_entries", mi.max_entries},
				      {"memory_bytes", mem},
				      {"memory_source", kernel ? "kernel" : "estimate"}};
			total += mem;
		} catch (const PinRefused &) {
			throw;
		} catch (const Error &e) {
			warnings.push_back(std::string("cannot read map ") + name + ": " +
					   e.what());
		}
	}
	inst["maps"] = maps;
	inst["memory_bytes"] = total;
	auto table = [&](const char *key, const char *map, const char *what) {
		if (!inst.contains(key))
			return; // the IPv6 tables of an instance without them
		json &t = inst[key];
		t["memory_bytes"] = maps.contains(map) ? maps[map]["memory_bytes"] : json(nullptr);
		uint64_t n = t.value("entries", uint64_t{0}),
			 max = t.value("max_entries", uint64_t{0});
		if (max && n * 100 >= max * kTableWarnPercent)
			warnings.push_back(
				std::string(what) + " table " + std::to_string(n) + "/" +
				std::to_string(max) + " entries (" + std::to_string(n * 100 / max) +
				"% full): new flows will be " +
				"refused (DROP_TABLE_FULL) when it is full; attach with a " +
				"larger " + (key[0] == 'c' ? "--ct-size" : "--bind-size"));
	};
	table("conntrack", KVX_MAP_CT, "conntrack");
	table("bindings", KVX_MAP_BIND, "binding");
	table("conntrack6", KVX_MAP_CT6, "IPv6 conntrack");
	table("bindings6", KVX_MAP_BIND6, "IPv6 binding");

	uint64_t drops = 0;
	if (inst.contains("counters") && inst["counters"].contains("DROP_TABLE_FULL"))
		drops = inst["counters"]["DROP_TABLE_FULL"].value("packets", uint64_t{0});
	std::optional<uint64_t> prev;
	if (!state_file.empty())
		if (auto text = read_file(state_file)) {
			try {
				prev = parse_uint(text->substr(0, text->find('\n')), UINT64_MAX,
						  "count");
			} catch (const Error &) {
			}
		}
	// A smaller count than recorded: the counters started again (a new
	// attach); everything counted now is new.
	const bool have_base = prev && *prev <= drops;
	const uint64_t base = have_base ? *prev : 0;
	if (drops > base)
		warnings.push_back("DROP_TABLE_FULL increased by " + std::to_string(drops - base) +
				   (have_base ? " since the last status" : "") + " (" +
				   std::to_string(drops) +
				   " in all): new flows were refused because the conntrack or "
				   "binding table was full");
	if (!state_file.empty() && (!prev || *prev != drops) &&
	    ::access(dirname_of(state_file).c_str(), W_OK) == 0) {
		try {
			atomic_write_file(state_file, std::to_string(drops) + "\n", 0644);
		} catch (const Error &) {
			// Only a record for the next status: not worth failing for.
		}
	}
}

json status_json(const GlobalOptions &g, const std::string &bridge)
{
	ConfigStore store(g.config);
	Config cfg = store.load();
	if (!bridge.empty() && !cfg.find(bridge))
		throw Error("bridge '" + bridge + "' is not attached (no instance in " + g.config +
			    ")");
	NlSocket nl;
	Sysctl sys(g.sysctl_root);
	json insts = json::array();
	for (const auto &inst : cfg.instances) {
		if (!bridge.empty() && inst.bridge != bridge)
			continue;
		insts.push_back(instance_json(g, inst, nl, sys));
	}
	const std::string describe = git_describe();
	return {{"version", project_version()},
		{"git_describe", describe.empty() ? json(nullptr) : json(describe)},
		{"instances", insts},
		{"kernel", kernel_features_json(probe_kernel_features())}};
}

} // namespace kvmxdp
