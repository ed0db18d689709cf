// SPDX-License-Identifier: GPL-2.0
#include "print.hpp"

#include <cstdio>
#include <string>

#include "base/text.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

namespace {

struct Reason {
	const char *name;
	bool drop;
	const char *desc;
};

// From the ABI's X-macro: a reason added there is printed here for free.
const Reason kReasons[] = {
#define KVX_X_REASON(name, drop, desc) {#name, drop != 0, desc},
	KVX_REASONS(KVX_X_REASON)
#undef KVX_X_REASON
};

std::string str(const nlohmann::json &j, const char *none = "-")
{
	if (j.is_null())
		return none;
	if (j.is_string())
		return j.get<std::string>();
	return j.dump();
}

// Bytes as "12.3 MiB" (or "512 KiB" below one MiB).
std::string mib(uint64_t bytes)
{
	char buf[32];
	if (bytes >= (1u << 20))
		std::snprintf(buf, sizeof(buf), "%.1f MiB", double(bytes) / (1u << 20));
	else
		std::snprintf(buf, sizeof(buf), "%llu KiB",
			      static_cast<unsigned long long>((bytes + 1023) / 1024));
	return buf;
}

std::string pad(const std::string &s, size_t w)
{
	return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' ');
}

} // namespace

void print_status(const nlohmann::json &status, std::ostream &out)
{
	const auto &insts = status.at("instances");
	if (insts.empty()) {
		out << "no kvmxdp instances attached\n";
		return;
	}
	bool first = true;
	for (const auto &i : insts) {
		if (!first)
			out << "\n";
		first = false;
		out << "bridge " << str(i["bridge"]) << " -> uplink " << str(i["uplink"])
		    << "  daemon: "
		    << (i["daemon_pid"].is_null() ? "not running" : "pid " + str(i["daemon_pid"]))
		    << "\n";
		out << "  subnet " << str(i["subnet"]) << "  uplink address "
		    << str(i["uplink_addr"], "none") << "  NAT ports " << str(i["nat_port_lo"])
		    << "-" << str(i["nat_port_hi"]) << "  filtering "
		    << (i["eif"].get<bool>() ? "endpoint-independent (eif)" :
					       "address-and-port-dependent")
		    << "\n";
		// IPv6: the uplink's as rtnetlink shows it (control/uplink6.hpp).
		if (i.contains("ipv6") && i["ipv6"].is_object()) {
			const auto &v6 = i["ipv6"];
			out << "  ipv6 uplink address ";
			if (v6["uplink_addr"].is_null())
				out << "none (" << str(v6["uplink_addr_why"]) << ")";
			else
				out << str(v6["uplink_addr"]) << " (" << str(v6["uplink_addr_why"])
				    << ")";
			out << "  on-link";
			if (v6["prefixes"].empty())
				out << " none";
			for (const auto &p : v6["prefixes"])
				out << " " << str(p["prefix"]) << (p["from_ra"].get<bool>() ? " (ra)" : "");
			if (v6.value("prefixes_omitted", 0) > 0)
				out << " and " << str(v6["prefixes_omitted"]) << " more";
			out << "\n  ipv6 relay "
			    << (v6["relay"]["possible"].get<bool>() ? "possible: " : "refused: ")
			    << str(v6["relay"]["why"]) << "\n";
		}
		// What the datapath does with the guests' IPv6, and why.
		if (i.contains("ipv6_mode")) {
			out << "  ipv6 " << str(i["ipv6_mode"]);
			if (!i["ipv6_subnet"].is_null())
				out << " " << str(i["ipv6_subnet"]) << " -> "
				    << str(i["ipv6_uplink_addr"], "none") << ", "
				    << str(i["guest_addresses6"]["entries"])
				    << " address(es) known";
			else if (i.contains("ipv6_relay_prefix") && str(i["ipv6_mode"]) == "relay")
				out << " " << str(i["ipv6_relay_prefix"], "none") << ", "
				    << str(i["guest_addresses6"]["entries"])
				    << " address(es) known";
			out << " (" << str(i["ipv6_mode_why"]) << ")\n";
		}
		// The pool the datapath allocates from: the range minus the
		// host's ephemeral range and the ports it listens on.
		if (i.contains("nat_pool")) {
			const auto &p = i["nat_pool"];
			out << "  NAT pool " << str(p["available"]) << " ports";
			if (p["nat_skip_lo"].get<uint32_t>() || p["nat_skip_hi"].get<uint32_t>())
				out << "  (" << str(p["nat_port_lo"]) << "-"
				    << str(p["nat_port_hi"]) << " without the host's ephemeral "
				    << str(p["nat_skip_lo"]) << "-" << str(p["nat_skip_hi"]) << ")";
			if (!p["host_listening"].is_null())
				out << "  " << str(p["host_listening"])
				    << " skipped: host listens on them";
			if (p.contains("guest_ports"))
				out << "  per guest "
				    << (p["guest_ports"].get<uint32_t>() ?
						str(p["guest_ports"]) :
						std::string("unlimited"));
			out << "\n";
		}
		out << "  devices:"
		    << (i.value("port_guard", true) ? "" : " (port guard off: --port-guard off)")
		    << "\n";
		// One line per device: its TC filter, its XDP program, whether
		// XDP redirects into it, and why the mode is what it is.
		for (const auto &d : i["devices"]) {
			const std::string role = d.value("role", std::string());
			const bool port = role == "port";
			out << "    " << pad(str(d["ifname"]), 16) << pad(role, 7)
			    << pad("ifindex " + str(d["ifindex"]), 14) << pad(str(d["mode"]), 4)
			    << "tc " << pad(str(d["prog"], port ? "-" : "(not attached)"), 15)
			    << "xdp "
			    << pad(d.contains("xdp_prog") ? str(d["xdp_prog"], "-") : "-", 13)
			    << (d.value("redirect_target", false) ? "redirect-target " : "")
			    << (d.contains("why") ? "(" + str(d["why"]) + ")" : std::string())
			    << "\n";
		}
		// The XDP fast path's share: what it translated, what it handed
		// to TC and why (bpf/lib/xdp.h).
		if (i.contains("counters")) {
			auto pk = [&](const char *r) {
				return i["counters"].contains(r) ?
					       i["counters"][r]["packets"].get<uint64_t>() :
					       uint64_t{0};
			};
			uint64_t xdp = pk("XDP_XLATE_OUT") + pk("XDP_XLATE_IN");
			uint64_t csum = pk("XDP_TO_TC_CSUM"), dev = pk("XDP_TO_TC_DEV"),
				 cls = pk("XDP_TO_TC");
			if (xdp + csum + dev + cls) {
				uint64_t all = xdp + csum + dev + cls;
				out << "  xdp fast path: " << xdp << " packets translated, "
				    << csum + dev + cls << " handed to TC ("
				    << (100 * (csum + dev + cls) + all / 2) / all
				    << "%: checksum offloaded " << csum << ", device " << dev
				    << ", class " << cls << ")\n";
			}
		}
		// The IPv6 programs, tail-called by the TC programs above (and
		// by the XDP ones, from their own array).
		for (const char *key : {"ipv6_programs", "xdp_ipv6_programs"}) {
			const std::string hook = key[0] == 'x' ? "xdp" : "tc";
			for (const auto &p : i.value(key, nlohmann::json::array()))
				out << "    " << pad("(tail call)", 16) << pad("ipv6", 7)
				    << pad("slot " + str(p["slot"]), 14) << pad(hook, 4) << hook
				    << " " << pad(str(p["prog"], "(empty)"), 15) << "from "
				    << str(p["tail_called_from"]) << "\n";
		}
		// The host's own sockets to mapped addresses: cgroup hooks.
		for (const auto &h : i.value("host_access", nlohmann::json::array()))
			out << "    " << pad("cgroup v2 root", 30) << pad(str(h["hook"]), 21)
			    << str(h["prog"]) << "\n";
		out << "  conntrack " << str(i["conntrack"]["entries"]) << "/"
		    << str(i["conntrack"]["max_entries"]) << "  bindings "
		    << str(i["bindings"]["entries"]) << "/" << str(i["bindings"]["max_entries"]);
		if (i.contains("conntrack6") && i.contains("bindings6"))
			out << "  ipv6 conntrack " << str(i["conntrack6"]["entries"]) << "/"
			    << str(i["conntrack6"]["max_entries"]) << "  ipv6 bindings "
			    << str(i["bindings6"]["entries"]) << "/"
			    << str(i["bindings6"]["max_entries"]);
		out << "\n";
		if (i.contains("maps") && !i["maps"].empty()) {
			// Map memory as the kernel charges it (status_add_usage).
			out << "  memory " << mib(i.value("memory_bytes", uint64_t{0})) << ":";
			for (const auto &[name, m] : i["maps"].items())
				out << " " << name << " " << str(m["entries"]) << "/"
				    << str(m["max_entries"]) << " "
				    << mib(m.value("memory_bytes", uint64_t{0}));
			out << "\n";
		}
		out << "  counters (nonzero):\n";
		bool any = false;
		for (const auto &r : kReasons) {
			const auto &c = i["counters"][r.name];
			if (c.is_null() || c["packets"].get<uint64_t>() == 0)
				continue;
			any = true;
			char line[256];
			std::snprintf(line, sizeof(line),
				      "    %-22s %12llu pkts %14llu bytes  %s%s", r.name,
				      static_cast<unsigned long long>(c["packets"].get<uint64_t>()),
				      static_cast<unsigned long long>(c["bytes"].get<uint64_t>()),
				      r.drop ? "DROP: " : "", r.desc);
			out << line << "\n";
		}
		if (!any)
			out << "    (none)\n";
		const auto &co = i["coexistence"];
		out << "  br_netfilter: " << (co["br_netfilter"].get<bool>() ? "ACTIVE" : "no")
		    << "  foreign firewall rules: " << co["foreign_rules"].size() << "\n";
		for (const auto &r : co["foreign_rules"])
			out << "    " << str(r) << "\n";
		for (const auto &r : co.value("rules_unread", nlohmann::json::array()))
			out << "  firewall rules not read: " << str(r) << "\n";
		if (i.contains("mappings") && !i["mappings"].empty()) {
			out << "  mappings:\n";
			for (const auto &m : i["mappings"])
				out << "    " << pad(str(m["ext"]), 22) << "-> "
				    << pad(str(m["guest"]), 22) << pad(str(m["proto"]), 5)
				    << str(m["state"])
				    << (m["state"] == "suspended" ?
						" (made on " + str(m["network"]) + ")" :
					m["state"] == "conflict" || m["state"] == "probing" ||
							m["state"] == "pending" ?
						" (" + str(m["reason"]) + ")" :
						std::string())
				    << "\n";
		}
		for (const auto &w : i["warnings"])
			out << "  warning: " << str(w) << "\n";
	}
}

void print_mappings(const nlohmann::json &list, std::ostream &out)
{
	const auto &mappings = list.at("mappings");
	if (mappings.empty()) {
		out << "no mappings\n";
		return;
	}
	out << pad("BRIDGE", 12) << pad("EXTERNAL", 22) << pad("GUEST", 22) << pad("PROTO", 6)
	    << pad("ADDRESS", 16) << pad("VM", 16) << "STATE\n";
	for (const auto &m : mappings) {
		// The libvirt domain the guest is, or "net:NAME" for a
		// network's mapping; "-" for one made by hand.
		std::string vm = "-";
		if (m.contains("vm") && m["vm"].is_string())
			vm = m["vm"].get<std::string>();
		else if (m.contains("libvirt_network") && m["libvirt_network"].is_string())
			vm = "net:" + m["libvirt_network"].get<std::string>();
		out << pad(str(m["bridge"]), 12) << pad(str(m["ext"]), 22)
		    << pad(str(m["guest"]), 22) << pad(str(m["proto"]), 6)
		    << pad(str(m["ext_addr"]), 16) << pad(printable(vm), 16) << str(m["state"])
		    << (m["add_address"].get<bool>() ? " (address added to the uplink)" : "")
		    << (m["state"] == "pending" ? " (" + str(m["reason"]) + ")" : std::string())
		    << "\n";
	}
}

} // namespace kvmxdp
