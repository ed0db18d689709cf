// SPDX-License-Identifier: GPL-2.0
#include "conntrack_print.hpp"

#include <iostream>

#include "base/log.hpp"

namespace kvmxdp {

void add_conntrack_commands(CLI::App &app, ConntrackCli &c)
{
	c.cmd = app.add_subcommand("conntrack", "list or flush the flows (conntrack -L / -F)");
	c.cmd->require_subcommand(1);
	auto add_filters = [&c](CLI::App *s) {
		s->add_option("--guest", c.filter.guest,
			      "only flows of this guest address (IPv4 or IPv6)");
		s->add_option("--remote", c.filter.remote,
			      "only flows with this remote address (IPv4 or IPv6)");
		s->add_option("--proto", c.filter.proto, "only tcp, udp, icmp or icmpv6 flows");
		s->add_option("--ext-port", c.filter.ext_port,
			      "only flows on this external port (ICMP: echo id)");
		s->add_option("--state", c.filter.state,
			      "only flows in this state (SYN_SENT, SYN_RECV, ESTABLISHED, "
			      "FIN_WAIT, TIME_WAIT, CLOSE, STATELESS)");
		s->add_option("--bridge", c.bridge, "the instance (when more than one)");
	};
	c.list = c.cmd->add_subcommand("list", "one line per flow");
	c.list->add_flag("--json", c.json, "machine-readable output");
	add_filters(c.list);
	c.flush = c.cmd->add_subcommand(
		"flush", "delete the matching flows (no filter: all); bindings are left to the GC");
	add_filters(c.flush);
}

bool run_conntrack_commands(const GlobalOptions &g, const ConntrackCli &c, std::ostream &out)
{
	if (c.list && c.list->parsed()) {
		// Validate before touching anything.
		CtFilter f = parse_ct_filter(c.filter);
		auto flows = conntrack_list(g, c.bridge, f);
		if (c.json)
			out << flows.dump(2) << std::endl;
		else
			print_conntrack(flows, out);
		return true;
	}
	if (c.flush && c.flush->parsed()) {
		CtFilter f = parse_ct_filter(c.filter);
		std::string br;
		CtFlushResult r = conntrack_flush(g, c.bridge, f, &br);
		out << "kvmxdp: flushed " << r.flows << " flow" << (r.flows == 1 ? "" : "s")
		    << " on " << br << "; " << r.unused_bindings
		    << " dynamic binding(s) now unused (kept until idle for 30 s, then released by the "
		       "daemon's GC)"
		    << std::endl;
		return true;
	}
	return false;
}

void print_conntrack(const nlohmann::json &flows, std::ostream &out)
{
	for (const auto &f : flows)
		out << ct_flow_line(f) << "\n";
	out << std::flush;
	// Like conntrack -L: the count on stderr, stdout stays one line per flow.
	log_info(std::to_string(flows.size()) + " flow" + (flows.size() == 1 ? "" : "s") +
		 " shown");
}

} // namespace kvmxdp
