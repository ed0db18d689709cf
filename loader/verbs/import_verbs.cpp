// SPDX-License-Identifier: GPL-2.0
#include "verbs/import_verbs.hpp"

#include <iostream>
#include <sstream>

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/sysctl.hpp"
#include "base/text.hpp"
#include "kernel/netlink.hpp"
#include "model/config.hpp"
#include "model/iptables_import.hpp"
#include "verbs/mapping_verbs.hpp"

namespace kvmxdp {

namespace {

std::string read_input(const std::string &file)
{
	const std::string path = file == "-" ? "/dev/stdin" : file;
	std::optional<std::string> text;
	try {
		text = read_file(path);
	} catch (const Error &e) {
		throw Error("cannot read '" + printable(file) + "': " + e.what());
	}
	if (!text)
		throw Error("cannot read '" + printable(file) + "': no such file");
	return *text;
}

// The uplink's address now: a DNAT of it becomes a forward on `uplink`.
uint32_t address_of(const std::string &ifname)
{
	if (ifname.empty())
		return 0;
	try {
		check_ifname(ifname);
		NlSocket nl;
		auto link = find_link(nl, ifname);
		if (!link)
			return 0;
		auto a = primary_ipv4(ipv4_addrs(nl, link->ifindex));
		return a ? a->addr : 0;
	} catch (const Error &) {
		return 0; // a dry run needs no network: literal addresses then
	}
}

// The instance the mappings go to, when the config has it.
std::optional<Instance> find_instance(const GlobalOptions &g, const std::string &bridge)
{
	try {
		Config cfg = ConfigStore(g.config).load();
		return select_instance(cfg, bridge, g.config);
	} catch (const Error &) {
		return std::nullopt;
	}
}

} // namespace

void import_recipe(const GlobalOptions &g, const ImportOptions &o, std::ostream &out)
{
	if (!o.bridge.empty())
		check_ifname(o.bridge);
	const std::string text = read_input(o.file);
	const IptInput in = read_iptables(text);
	const std::string source = o.file == "-" ? "standard input" : printable(o.file);
	if (!in.recognized)
		throw Error("'" + source +
			    "' holds no iptables rules (expected iptables-save or `iptables -S` "
			    "output, or a script of iptables commands)");

	ImportContext ctx;
	ctx.bridge = o.bridge;
	if (auto r = Sysctl(g.sysctl_root).try_read(kLocalPortRangeKey)) {
		try {
			ctx.ephemeral = parse_local_port_range(*r);
		} catch (const Error &) {
		}
	}
	auto inst = find_instance(g, o.bridge);
	if (o.apply && !inst) {
		ImportResult r = translate_iptables(in, ctx);
		std::string attach = r.attach.empty() ? "kvmxdp attach --bridge BRIDGE" :
							r.attach.front().command();
		// find_instance said no: the reason, as select_instance words it.
		std::string why = "no instance to make the mappings on";
		try {
			Config cfg = ConfigStore(g.config).load();
			select_instance(cfg, o.bridge, g.config);
		} catch (const Error &e) {
			why = e.what();
		}
		throw Error("import --apply: " + why + ": run `" + attach +
			    "` first (it stays in the foreground), then import --apply again");
	}
	if (inst && ctx.bridge.empty())
		ctx.bridge = inst->bridge;
	// The uplink's address turns `-d <it>` into `uplink`: the instance's
	// uplink, else the one the MASQUERADE names.
	std::string uplink = inst ? inst->uplink : "";
	if (uplink.empty()) {
		ImportResult first = translate_iptables(in, ctx);
		if (first.attach.size() == 1)
			uplink = first.attach.front().uplink;
	}
	ctx.uplink_addr = address_of(uplink);
	const ImportResult r = translate_iptables(in, ctx);

	if (o.json)
		// Rules are the file's bytes: what is not UTF-8 is shown as
		// U+FFFD, not refused.
		out << import_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
		    << "\n";
	else
		out << format_import(r, source);
	if (!o.apply) {
		out << std::flush;
		return;
	}

	// All or none: a mapping that fails takes the ones made before it
	// back out, through `map del`'s own code.
	MappingOptions base;
	base.bridge = inst->bridge;
	std::ostringstream made_out;
	std::vector<MappingOptions> made;
	for (const auto &m : r.mappings) {
		MappingOptions mo = base;
		mo.ext = m.m.ext_str();
		mo.guest = m.m.guest_str();
		mo.proto = m.m.proto_str();
		try {
			mapping_add(g, mo, made_out);
		} catch (const std::exception &e) {
			std::ostringstream sink;
			for (auto it = made.rbegin(); it != made.rend(); ++it) {
				try {
					mapping_del(g, *it, sink);
				} catch (const std::exception &de) {
					// Go on undoing the others whatever failed.
					log_warn(std::string("import --apply: undoing: ") +
						 de.what());
				}
			}
			throw Error("import --apply: line " + std::to_string(m.from.front().line) +
				    ": " + e.what() + " (" + std::to_string(made.size()) +
				    " mapping(s) made before it were removed again: none stays)");
		}
		made.push_back(mo);
	}
	// With --json stdout is the JSON document alone.
	std::ostream &said = o.json ? std::cerr : out;
	said << made_out.str();
	if (r.mappings.empty())
		said << "kvmxdp: import --apply: no mapping to make\n";
	// attach is the daemon and stays in the foreground: say it, never
	// start it from here.
	bool running = false;
	try {
		running = open_pin_dir(inst->bpffs, inst->bridge, false).has_value();
	} catch (const Error &) {
	}
	if (!running)
		said << "kvmxdp: bridge " << inst->bridge
		     << " is not attached: the mappings take effect with `kvmxdp attach --bridge "
		     << inst->bridge << "`\n";
	out << std::flush;
}

} // namespace kvmxdp
