// SPDX-License-Identifier: GPL-2.0
#include "model/config.hpp"

#include <algorithm>
#include <functional>

#include "base/error.hpp"
#include "base/sysctl.hpp"
#include "base/text.hpp"
#include "base/version.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/leases.hpp"
#include "model/libvirt.hpp"
#include "model/metadata_allow.hpp"
#include "model/options.hpp"
#include "model/timeouts.hpp"

namespace kvmxdp {

using nlohmann::json;

bool Instance::operator==(const Instance &o) const
{
	return bridge == o.bridge && uplink == o.uplink && uplink_auto == o.uplink_auto &&
	       subnet == o.subnet && subnet6 == o.subnet6 && ipv6 == o.ipv6 &&
	       ipv6_inbound_open == o.ipv6_inbound_open && nat_ports == o.nat_ports &&
	       nat_ports_auto == o.nat_ports_auto && nat_skip == o.nat_skip && eif == o.eif &&
	       ct_size == o.ct_size && bind_size == o.bind_size && bpffs == o.bpffs &&
	       pin_dir == o.pin_dir && clsact_created_bridge == o.clsact_created_bridge &&
	       clsact_created_uplink == o.clsact_created_uplink &&
	       saved_forwarding == o.saved_forwarding && saved_forwarding6 == o.saved_forwarding6 &&
	       saved_accept_ra == o.saved_accept_ra && accept_ra_dev == o.accept_ra_dev &&
	       saved_reserved_ports == o.saved_reserved_ports && mappings == o.mappings &&
	       clamp_mss == o.clamp_mss && flow_quota == o.flow_quota &&
	       guest_ports == o.guest_ports && timeouts == o.timeouts && mode == o.mode &&
	       port_guard == o.port_guard && dhcp_leases == o.dhcp_leases && metrics == o.metrics;
}

Instance *Config::find(const std::string &bridge)
{
	for (auto &i : instances)
		if (i.bridge == bridge)
			return &i;
	return nullptr;
}

const Instance *Config::find(const std::string &bridge) const
{
	return const_cast<Config *>(this)->find(bridge);
}

std::optional<std::string> accept_ra_release(Config &cfg, const std::string &bridge,
					     const std::string &dev, const std::string &saved,
					     const std::optional<std::string> &cur)
{
	if (dev.empty())
		return std::nullopt;
	for (Instance &o : cfg.instances)
		if (o.bridge != bridge && o.ipv6 != Ipv6Choice::Off && o.uplink == dev) {
			if (!o.saved_accept_ra) {
				o.saved_accept_ra = saved;
				o.accept_ra_dev = dev;
			}
			return std::nullopt;
		}
	if (!cur || *cur != "2" || saved == "2")
		return std::nullopt;
	return saved;
}

void Config::upsert(const Instance &inst)
{
	if (auto *i = find(inst.bridge))
		*i = inst;
	else
		instances.push_back(inst);
}

bool Config::remove(const std::string &bridge)
{
	auto it = std::remove_if(instances.begin(), instances.end(),
				 [&](const Instance &i) { return i.bridge == bridge; });
	bool found = it != instances.end();
	instances.erase(it, instances.end());
	return found;
}

Instance &select_instance(Config &cfg, const std::string &bridge, const std::string &config_path)
{
	if (!bridge.empty()) {
		if (Instance *i = cfg.find(bridge))
			return *i;
		throw not_attached(bridge, config_path);
	}
	if (cfg.instances.size() == 1)
		return cfg.instances[0];
	if (cfg.instances.empty())
		throw Error("no kvmxdp instance in " + config_path + ": attach a bridge first");
	throw Error("more than one instance in " + config_path + ": pick one with --bridge");
}

Error not_attached(const std::string &bridge, const std::string &config_path,
		   const std::string &also)
{
	return Error("bridge '" + bridge + "' is not attached (no instance in " + config_path +
		     (also.empty() ? "" : ", " + also) + ")");
}

namespace {

json mapping_json(const StaticMapping &sm)
{
	json j = {{"ext", sm.m.ext_str()},
		  {"guest", sm.m.guest_str()},
		  {"proto", sm.m.one_to_one() ? "any" : sm.m.proto_str()},
		  {"add_address", sm.add_address},
		  {"network", nullptr},
		  {"gateway", nullptr}};
	if (sm.network && sm.network->net) {
		j["network"] = sm.network->net->str();
		if (sm.network->gateway)
			j["gateway"] = format_ipv4(sm.network->gateway);
		if (!sm.network->gateway_mac.empty())
			j["gateway_mac"] = sm.network->gateway_mac;
	}
	// An IPv6 mapping's network; absent when untied (and in older
	// configs, whose IPv6 mappings were never tied).
	if (sm.network6) {
		j["network6"] = sm.network6->prefix.str();
		if (sm.network6->router != Ipv6Addr{})
			j["router6"] = format_ipv6(sm.network6->router);
		if (!sm.network6->router_mac.empty())
			j["router6_mac"] = sm.network6->router_mac;
	}
	// Absent for plain mappings (and in older configs).
	if (!sm.vm.empty())
		j["vm"] = sm.vm;
	if (!sm.libvirt_network.empty())
		j["libvirt_network"] = sm.libvirt_network;
	if (!sm.lease_mac.empty())
		j["lease_mac"] = sm.lease_mac;
	if (!sm.vm.empty() || !sm.libvirt_network.empty())
		j["origin"] = sm.from_metadata ? "metadata" : "cli";
	if (sm.metadata_force)
		j["force"] = true;
	if (!sm.pending.empty())
		j["pending"] = sm.pending;
	return j;
}

} // namespace

json to_json(const Config &cfg)
{
	json insts = json::array();
	for (const auto &i : cfg.instances) {
		json saved = json::object();
		if (i.saved_forwarding)
			saved["forwarding"] = *i.saved_forwarding;
		if (i.saved_forwarding6)
			saved["forwarding6"] = *i.saved_forwarding6;
		if (i.saved_accept_ra) {
			saved["accept_ra"] = *i.saved_accept_ra;
			saved["accept_ra_dev"] = i.accept_ra_dev;
		}
		if (i.saved_reserved_ports)
			saved["ip_local_reserved_ports"] = *i.saved_reserved_ports;
		insts.push_back({
			{"bridge", i.bridge},
			{"uplink", i.uplink},
			{"subnet", i.subnet.str()},
			{"nat_port_lo", i.nat_ports.lo},
			{"nat_port_hi", i.nat_ports.hi},
			{"eif", i.eif},
			{"ct_size", i.ct_size},
			{"bind_size", i.bind_size},
			{"bpffs", i.bpffs},
			{"pin_dir", i.pin_dir},
			{"clsact_created",
			 {{"bridge", i.clsact_created_bridge}, {"uplink", i.clsact_created_uplink}}},
			{"saved_sysctls", saved},
			{"clamp_mss", i.clamp_mss},
		});
		if (i.flow_quota)
			insts.back()["flow_quota"] = *i.flow_quota;
		if (i.guest_ports)
			insts.back()["guest_ports"] = *i.guest_ports;
		if (i.nat_ports_auto) {
			insts.back()["nat_ports_auto"] = true;
			insts.back()["nat_skip_lo"] = i.nat_skip.lo;
			insts.back()["nat_skip_hi"] = i.nat_skip.hi;
		}
		if (i.mode != HookMode::Auto)
			insts.back()["mode"] = hook_mode_name(i.mode);
		if (!i.port_guard)
			insts.back()["port_guard"] = "off";
		if (!i.timeouts.empty())
			insts.back()["timeouts"] = i.timeouts;
		if (!i.dhcp_leases.empty())
			insts.back()["dhcp_leases"] = i.dhcp_leases;
		if (i.subnet6)
			insts.back()["subnet6"] = i.subnet6->str();
		if (i.ipv6 != Ipv6Choice::Auto)
			insts.back()["ipv6"] = ipv6_choice_name(i.ipv6);
		if (i.ipv6_inbound_open)
			insts.back()["ipv6_inbound"] = "open";
		if (!i.metrics.empty())
			insts.back()["metrics"] = i.metrics;
		if (i.uplink_auto) {
			insts.back()["uplink"] = "auto";
			insts.back()["uplink_device"] = i.uplink.empty() ? json(nullptr) :
									   json(i.uplink);
		}
		json mappings = json::array();
		for (const auto &sm : i.mappings)
			mappings.push_back(mapping_json(sm));
		insts.back()["mappings"] = mappings;
	}
	json j = {{"version", Config::kVersion}, {"instances", insts}};
	if (!cfg.detached.empty()) {
		json d = json::object();
		for (const auto &[br, det] : cfg.detached) {
			json mappings = json::array();
			for (const auto &sm : det.mappings)
				mappings.push_back(mapping_json(sm));
			d[br] = {{"uplink", det.uplink}, {"mappings", mappings}};
		}
		j["detached"] = d;
	}
	if (cfg.metadata_allow)
		j["metadata_allow"] = *cfg.metadata_allow;
	return j;
}

namespace {

// Errors name the key and the value: "instances[0].uplink: invalid
// interface name 'a/b'"; ConfigStore::load puts the file in front.
[[noreturn]] void bad(const std::string &field, const std::string &why)
{
	throw Error(field + ": " + why);
}

// A JSON value in an error message (it came from a parse, so it dumps).
std::string shown(const json &v)
{
	std::string s = v.dump();
	return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Runs a check of the CLI on a value read from the config; its error
// (naming the value) gets the key in front.
void checked(const std::string &field, const std::function<void()> &check)
{
	try {
		check();
	} catch (const Error &e) {
		bad(field, e.what());
	}
}

const json &member(const json &obj, const std::string &name, const std::string &field)
{
	auto it = obj.find(name);
	if (it == obj.end())
		bad(field, "missing");
	return *it;
}

std::string get_string(const json &obj, const std::string &name, const std::string &prefix)
{
	std::string field = prefix + name;
	const json &v = member(obj, name, field);
	if (!v.is_string())
		bad(field, "expected a string, got " + shown(v));
	std::string s = v.get<std::string>();
	if (s.empty())
		bad(field, "empty");
	return s;
}

// A non-negative integer, for one of the CLI's checks (model/options.hpp),
// which knows its range.
uint64_t get_count(const json &obj, const std::string &name, const std::string &prefix)
{
	std::string field = prefix + name;
	const json &v = member(obj, name, field);
	if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
		bad(field, "expected an integer >= 0, got " + shown(v));
	return v.get<uint64_t>();
}

uint64_t get_uint(const json &obj, const std::string &name, const std::string &prefix, uint64_t lo,
		  uint64_t hi)
{
	auto n = get_count(obj, name, prefix);
	if (n < lo || n > hi)
		bad(prefix + name, "expected an integer " + std::to_string(lo) + ".." +
					   std::to_string(hi) + ", got " + std::to_string(n));
	return n;
}

bool get_bool(const json &obj, const std::string &name, const std::string &field_prefix)
{
	std::string field = field_prefix + name;
	const json &v = member(obj, name, field);
	if (!v.is_boolean())
		bad(field, "expected true or false, got " + shown(v));
	return v.get<bool>();
}

std::optional<std::string> get_opt_string(const json &obj, const std::string &name,
					  const std::string &prefix)
{
	auto it = obj.find(name);
	if (it == obj.end() || it->is_null())
		return std::nullopt;
	if (!it->is_string())
		bad(prefix + name, "expected a string, got " + shown(*it));
	return it->get<std::string>();
}

// An interface name, as attach checks it: it goes into sysctl paths, pin
// and pid file names and netlink requests.
std::string get_ifname(const json &obj, const std::string &name, const std::string &prefix)
{
	std::string s = get_string(obj, name, prefix);
	checked(prefix + name, [&] { check_ifname(s); });
	return s;
}

StaticMapping mapping_from_json(const json &o, const std::string &field)
{
	if (!o.is_object())
		bad(field, "expected an object");
	const std::string p = field + ".";
	std::string ext = get_string(o, "ext", p);
	std::string guest = get_string(o, "guest", p);
	std::string proto = get_string(o, "proto", p);
	StaticMapping sm;
	try {
		sm.m = parse_mapping(ext, guest, proto == "any" ? "" : proto);
	} catch (const Error &e) {
		bad(field, e.what());
	}
	sm.add_address = get_bool(o, "add_address", p);
	auto net = get_opt_string(o, "network", p);
	auto gw = get_opt_string(o, "gateway", p);
	auto gw_mac = get_opt_string(o, "gateway_mac", p);
	if (net) {
		NetId id;
		// Any prefix length (an uplink may be a /31 or /32).
		auto slash = net->find('/');
		try {
			if (slash == std::string::npos)
				throw Error("expected a.b.c.d/n");
			uint32_t a = parse_ipv4(net->substr(0, slash));
			auto len = parse_uint(net->substr(slash + 1), 32, "prefix length");
			id.net = network_of(a, static_cast<uint8_t>(len));
			if (id.net->addr != a)
				throw Error("host bits set");
		} catch (const Error &e) {
			bad(p + "network", "invalid '" + *net + "': " + e.what());
		}
		if (gw) {
			try {
				id.gateway = parse_ipv4(*gw);
			} catch (const Error &e) {
				bad(p + "gateway", e.what());
			}
		}
		if (gw_mac) {
			if (!is_mac_str(*gw_mac))
				bad(p + "gateway_mac", "invalid '" + printable(*gw_mac) +
							       "': expected aa:bb:cc:dd:ee:ff");
			id.gateway_mac = *gw_mac;
		}
		sm.network = id;
	} else if (gw || gw_mac) {
		bad(p + (gw ? "gateway" : "gateway_mac"), "given without network");
	}
	auto net6 = get_opt_string(o, "network6", p);
	auto router6 = get_opt_string(o, "router6", p);
	auto router6_mac = get_opt_string(o, "router6_mac", p);
	if (net6) {
		if (!sm.m.v6)
			bad(p + "network6", "given for an IPv4 mapping");
		NetId6 id;
		checked(p + "network6", [&] { id.prefix = parse_subnet6(*net6, "network6"); });
		if (router6)
			checked(p + "router6", [&] { id.router = parse_ipv6(*router6); });
		if (router6_mac) {
			if (!is_mac_str(*router6_mac))
				bad(p + "router6_mac", "invalid '" + printable(*router6_mac) +
							       "': expected aa:bb:cc:dd:ee:ff");
			id.router_mac = *router6_mac;
		}
		sm.network6 = id;
	} else if (router6 || router6_mac) {
		bad(p + (router6 ? "router6" : "router6_mac"), "given without network6");
	}
	for (auto [key, dst] :
	     {std::pair{"vm", &sm.vm}, {"libvirt_network", &sm.libvirt_network}}) {
		if (auto v = get_opt_string(o, key, p)) {
			checked(p + key, [&] { check_libvirt_name(*v, key); });
			*dst = *v;
		}
	}
	if (auto mac = get_opt_string(o, "lease_mac", p)) {
		if (!is_mac_str(*mac))
			bad(p + "lease_mac",
			    "invalid '" + printable(*mac) + "': expected aa:bb:cc:dd:ee:ff");
		sm.lease_mac = *mac;
	}
	// Absent in older configs, whose hooks owned every mapping named
	// for their VM or network.
	const auto origin = get_opt_string(o, "origin", p);
	if (origin && *origin != "metadata" && *origin != "cli")
		bad(p + "origin", "'" + printable(*origin) + "' is not metadata or cli");
	if (origin && sm.vm.empty() && sm.libvirt_network.empty())
		bad(p + "origin", "given without vm or libvirt_network");
	sm.from_metadata = origin ? *origin == "metadata" :
				    !sm.vm.empty() || !sm.libvirt_network.empty();
	if (auto f = o.find("force"); f != o.end()) {
		if (!f->is_boolean())
			bad(p + "force", "expected true or false");
		if (!sm.from_metadata)
			bad(p + "force", "given for a mapping not made by libvirt metadata");
		sm.metadata_force = f->get<bool>();
	}
	if (auto why = get_opt_string(o, "pending", p)) {
		if (why->empty() || !is_printable_text(*why))
			bad(p + "pending", "expected the reason a mapping waits for");
		sm.pending = *why;
	}
	// Only a pending mapping waits for its guest's lease.
	if (sm.pending.empty() && !sm.m.v6 && !sm.m.guest_addr)
		bad(p + "guest", "'" + guest + "' is no guest address");
	return sm;
}

} // namespace

Config config_from_json(const json &j)
{
	if (!j.is_object())
		bad("(top level)", "expected an object");
	// Older versions are read (their absent fields have defaults); a
	// newer one may hold what this kvmxdp would misread or drop on its
	// next save (a downgrade): refused.
	auto version = get_uint(j, "version", "", 1, 1000000);
	if (version > static_cast<uint64_t>(Config::kVersion))
		bad("version", std::to_string(version) + " is newer than this kvmxdp " +
				       project_version() + " reads (up to " +
				       std::to_string(Config::kVersion) +
				       "): a newer kvmxdp wrote it; run that one (a downgrade does "
				       "not convert the config)");
	const json &insts = member(j, "instances", "instances");
	if (!insts.is_array())
		bad("instances", "expected an array");
	Config cfg;
	for (size_t n = 0; n < insts.size(); n++) {
		std::string p = "instances[" + std::to_string(n) + "].";
		const json &o = insts[n];
		if (!o.is_object())
			bad("instances[" + std::to_string(n) + "]", "expected an object");
		Instance i;
		i.bridge = get_ifname(o, "bridge", p);
		i.uplink = get_string(o, "uplink", p);
		if (i.uplink == "auto") {
			// `--uplink auto`: the device it follows now (none yet: "").
			i.uplink_auto = true;
			i.uplink = get_opt_string(o, "uplink_device", p).value_or("");
			if (!i.uplink.empty())
				checked(p + "uplink_device", [&] { check_ifname(i.uplink); });
		} else {
			checked(p + "uplink", [&] { check_ifname(i.uplink); });
		}
		std::string subnet = get_string(o, "subnet", p);
		try {
			i.subnet = parse_cidr(subnet);
		} catch (const Error &e) {
			bad(p + "subnet", e.what());
		}
		i.nat_ports.lo = static_cast<uint16_t>(get_uint(o, "nat_port_lo", p, 1, 65535));
		i.nat_ports.hi = static_cast<uint16_t>(get_uint(o, "nat_port_hi", p, 1, 65535));
		if (!KVX_PORT_RANGE_OK(i.nat_ports.lo, i.nat_ports.hi))
			bad(p + "nat_port_hi", std::to_string(i.nat_ports.hi) +
						       " is smaller than nat_port_lo " +
						       std::to_string(i.nat_ports.lo));
		// Absent in configurations of older versions: an explicit range.
		if (o.contains("nat_ports_auto"))
			i.nat_ports_auto = get_bool(o, "nat_ports_auto", p);
		if (i.nat_ports_auto) {
			i.nat_skip.lo =
				static_cast<uint16_t>(get_uint(o, "nat_skip_lo", p, 0, 65535));
			i.nat_skip.hi =
				static_cast<uint16_t>(get_uint(o, "nat_skip_hi", p, 0, 65535));
			if ((i.nat_skip.lo || i.nat_skip.hi) &&
			    !kvx_nat_hole(i.nat_ports.lo, i.nat_ports.hi, i.nat_skip.lo,
					  i.nat_skip.hi))
				bad(p + "nat_skip_lo",
				    i.nat_skip.str() + " is no hole inside " + i.nat_ports.str());
		}
		i.eif = get_bool(o, "eif", p);
		i.ct_size = check_table_size(get_count(o, "ct_size", p), p + "ct_size");
		i.bind_size = check_table_size(get_count(o, "bind_size", p), p + "bind_size");
		// attach records the absolute bpffs; detach empties pin_dir, so it
		// must be the instance's own directory and nothing else.
		i.bpffs = get_string(o, "bpffs", p);
		if (i.bpffs[0] != '/' || normalize_dir(i.bpffs) != i.bpffs)
			bad(p + "bpffs",
			    "'" + printable(i.bpffs) + "' is not an absolute directory");
		i.pin_dir = get_string(o, "pin_dir", p);
		if (i.pin_dir != pin_dir_for(i.bpffs, i.bridge))
			bad(p + "pin_dir", "'" + printable(i.pin_dir) + "' is not " +
						   pin_dir_for(i.bpffs, i.bridge) +
						   ", the pin directory of bridge '" + i.bridge +
						   "' on bpffs " + i.bpffs);
		const json &cc = member(o, "clsact_created", p + "clsact_created");
		if (!cc.is_object())
			bad(p + "clsact_created", "expected an object");
		i.clsact_created_bridge = get_bool(cc, "bridge", p + "clsact_created.");
		i.clsact_created_uplink = get_bool(cc, "uplink", p + "clsact_created.");
		const json &saved = member(o, "saved_sysctls", p + "saved_sysctls");
		if (!saved.is_object())
			bad(p + "saved_sysctls", "expected an object");
		// detach writes these back into /proc/sys.
		i.saved_forwarding = get_opt_string(saved, "forwarding", p + "saved_sysctls.");
		if (i.saved_forwarding && *i.saved_forwarding != "0" && *i.saved_forwarding != "1")
			bad(p + "saved_sysctls.forwarding",
			    "'" + printable(*i.saved_forwarding) + "' is not 0 or 1");
		// Absent in older versions' configs and while IPv6 is off.
		i.saved_forwarding6 = get_opt_string(saved, "forwarding6", p + "saved_sysctls.");
		if (i.saved_forwarding6 && *i.saved_forwarding6 != "0" &&
		    *i.saved_forwarding6 != "1")
			bad(p + "saved_sysctls.forwarding6",
			    "'" + printable(*i.saved_forwarding6) + "' is not 0 or 1");
		// Absent in older versions' configs and while IPv6 is off.
		i.saved_accept_ra = get_opt_string(saved, "accept_ra", p + "saved_sysctls.");
		if (i.saved_accept_ra && *i.saved_accept_ra != "0" && *i.saved_accept_ra != "1" &&
		    *i.saved_accept_ra != "2")
			bad(p + "saved_sysctls.accept_ra",
			    "'" + printable(*i.saved_accept_ra) + "' is not 0, 1 or 2");
		// A path component of the sysctl detach writes.
		if (i.saved_accept_ra)
			i.accept_ra_dev = get_ifname(saved, "accept_ra_dev", p + "saved_sysctls.");
		i.saved_reserved_ports =
			get_opt_string(saved, "ip_local_reserved_ports", p + "saved_sysctls.");
		if (i.saved_reserved_ports)
			checked(p + "saved_sysctls.ip_local_reserved_ports",
				[&] { parse_port_list(*i.saved_reserved_ports); });
		if (o.contains("clamp_mss"))
			i.clamp_mss =
				check_clamp_mss(get_count(o, "clamp_mss", p), p + "clamp_mss");
		if (o.contains("mode")) {
			const std::string mode = get_string(o, "mode", p);
			auto m = find_hook_mode(mode);
			if (!m)
				bad(p + "mode", "'" + mode + "' is not auto, tc or xdp");
			i.mode = *m;
		}
		if (o.contains("flow_quota"))
			i.flow_quota =
				check_flow_quota(get_count(o, "flow_quota", p), p + "flow_quota");
		if (o.contains("guest_ports"))
			i.guest_ports = check_guest_ports(get_count(o, "guest_ports", p),
							  p + "guest_ports");
		if (o.contains("timeouts")) {
			i.timeouts = get_string(o, "timeouts", p);
			checked(p + "timeouts", [&] { parse_timeouts(i.timeouts); });
		}
		if (o.contains("dhcp_leases")) {
			i.dhcp_leases = get_string(o, "dhcp_leases", p);
			check_leases_option(i.dhcp_leases, p + "dhcp_leases");
		}
		// Absent: no IPv6 guest prefix (and in older versions' configs).
		if (o.contains("subnet6"))
			i.subnet6 = parse_subnet6(get_string(o, "subnet6", p), p + "subnet6");
		// Absent: auto (and in older versions' configs).
		if (o.contains("ipv6"))
			i.ipv6 = parse_ipv6_choice(get_string(o, "ipv6", p), p + "ipv6");
		// Absent: on (and in older versions' configs).
		if (o.contains("port_guard"))
			i.port_guard =
				parse_port_guard(get_string(o, "port_guard", p), p + "port_guard");
		// Absent: stateful (and in older versions' configs).
		if (o.contains("ipv6_inbound"))
			i.ipv6_inbound_open = parse_ipv6_inbound(get_string(o, "ipv6_inbound", p),
								 p + "ipv6_inbound");
		if (o.contains("metrics")) {
			i.metrics = get_string(o, "metrics", p);
			if (!i.metrics.empty())
				parse_metrics_listen(i.metrics, p + "metrics");
		}
		// Absent in configurations of older versions: no mappings.
		if (auto it = o.find("mappings"); it != o.end()) {
			if (!it->is_array())
				bad(p + "mappings", "expected an array");
			for (size_t k = 0; k < it->size(); k++)
				i.mappings.push_back(mapping_from_json(
					(*it)[k], p + "mappings[" + std::to_string(k) + "]"));
			// What `map add` checked when it made them.
			try {
				check_recorded_mappings(i.mappings, i.subnet, i.nat_guard(),
							i.subnet6);
			} catch (const Error &e) {
				throw Error(p + e.what()); // "instances[0].mappings[1]: ..."
			}
		}
		if (cfg.find(i.bridge))
			bad(p + "bridge", "duplicate bridge " + i.bridge);
		cfg.instances.push_back(std::move(i));
	}
	if (auto it = j.find("detached"); it != j.end()) {
		if (!it->is_object())
			bad("detached", "expected an object");
		for (const auto &[br, o] : it->items()) {
			std::string p = "detached." + br;
			checked("detached", [&] { check_ifname(br); });
			if (!o.is_object())
				bad(p, "expected an object");
			Detached d;
			// "": never attached; a libvirt hook recorded pending
			// mappings for the bridge (attach takes them).
			d.uplink = get_opt_string(o, "uplink", p + ".").value_or("");
			if (!d.uplink.empty() && d.uplink != "auto")
				checked(p + ".uplink", [&] { check_ifname(d.uplink); });
			const json &mappings = member(o, "mappings", p + ".mappings");
			if (!mappings.is_array())
				bad(p + ".mappings", "expected an array");
			for (size_t k = 0; k < mappings.size(); k++)
				d.mappings.push_back(mapping_from_json(
					mappings[k], p + ".mappings[" + std::to_string(k) + "]"));
			cfg.detached[br] = std::move(d);
		}
	}
	if (auto it = j.find("metadata_allow"); it != j.end()) {
		if (!it->is_array())
			bad("metadata_allow", "expected an array of strings");
		std::vector<std::string> specs;
		for (const auto &e : *it) {
			if (!e.is_string())
				bad("metadata_allow", "expected an array of strings");
			specs.push_back(e.get<std::string>());
		}
		checked("metadata_allow", [&] { parse_metadata_allow(specs); });
		cfg.metadata_allow = std::move(specs);
	}
	return cfg;
}

LockedConfig::LockedConfig(const std::string &path, std::chrono::milliseconds wait)
	: LockedConfig(ConfigStore(path), ConfigStore(path).lock(wait))
{
}

LockedConfig::LockedConfig(ConfigStore store, FileLock lock)
	: store_(std::move(store))
	, lock_(std::move(lock))
	, cfg_(store_.load())
{
}

std::optional<LockedConfig> LockedConfig::try_lock(const std::string &path)
{
	ConfigStore store(path);
	auto lock = store.try_lock();
	if (!lock)
		return std::nullopt;
	return LockedConfig(std::move(store), std::move(*lock));
}

Config ConfigStore::load() const
{
	// Its mappings become NAT rules and its names sysctl paths: only a
	// file no other user could have written (a config in /tmp, one left
	// 0666) is read.
	auto text = read_file(path_, true);
	if (!text)
		return {};
	json j;
	try {
		j = json::parse(*text);
	} catch (const json::parse_error &e) {
		throw ConfigError("config " + path_ + ": invalid JSON: " + e.what());
	}
	// One line naming the file, the key and the value.
	try {
		return config_from_json(j);
	} catch (const Error &e) {
		throw ConfigError("config " + path_ + ": " + e.what());
	}
}

void ConfigStore::save(const Config &cfg) const
{
	// Root's alone, as the unit makes it (UMask=0077).
	atomic_write_file(path_, to_json(cfg).dump(2) + "\n", 0600);
}

} // namespace kvmxdp
