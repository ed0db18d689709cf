// SPDX-License-Identifier: GPL-2.0
// kvmxdp: the command line.  A CLI11 subcommand table with iproute2-like
// verbs; errors are one line `kvmxdp: error: ...` on stderr.  Exit codes:
// 0 ok, 1 runtime error, 2 usage error, 78 configuration error (see
// kExitConfig).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "base/error.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/version.hpp"
#include "conntrack_print.hpp"
#include "control/status.hpp"
#include "model/doctor.hpp"
#include "model/options.hpp"
#include "print.hpp"
#include "verbs/doctor_verbs.hpp"
#include "verbs/import_verbs.hpp"
#include "verbs/install.hpp"
#include "verbs/instance_verbs.hpp"
#include "verbs/libvirt_verbs.hpp"
#include "verbs/mapping_verbs.hpp"
#include "verbs/top_verbs.hpp"

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
// EX_CONFIG (sysexits.h): kvmxdp::ConfigError, an error that a retry cannot
// fix (invalid config, no instance to attach, missing capabilities).  The
// systemd unit does not restart on it (RestartPreventExitStatus=), while
// exit 1 (e.g. a bridge that does not exist yet) is retried.
constexpr int kExitConfig = 78;
// doctor found warnings but no error / at least one error
// (model/doctor.hpp).
constexpr int kExitDoctorWarning = 3;
constexpr int kExitDoctorError = 4;
static_assert(kExitDoctorWarning == kvmxdp::kDoctorExitWarning &&
		      kExitDoctorError == kvmxdp::kDoctorExitError,
	      "doctor's exit codes are model/doctor.hpp's");

void fail(const std::string &msg)
{
	kvmxdp::log_error(msg);
}

} // namespace

int main(int argc, char **argv)
{
	using namespace kvmxdp;

	CLI::App app{"kvmxdp: eBPF NAT for KVM guests on a Linux bridge", "kvmxdp"};
	// Not require_subcommand(): CLI11 would then report a misspelt command
	// as "a subcommand is required" instead of naming it.
	app.require_subcommand(0, 1);
	app.set_version_flag("--version", "kvmxdp " + version_string());

	GlobalOptions g;
	// The one place the environment's libvirt prefix is read.
	if (const char *r = std::getenv("KVMXDP_LIBVIRT_ROOT"))
		g.libvirt_root = r;
	app.add_option("--bpffs", g.bpffs, "bpffs directory (mounted there if it is not a bpffs)")
		->capture_default_str();
	app.add_option("--config", g.config, "configuration file")->capture_default_str();
	app.add_option("--run-dir", g.run_dir, "directory of the daemons' lock/pid files")
		->capture_default_str();
	app.add_option("--lock-wait", g.lock_wait,
		       "seconds to wait for a lock another kvmxdp holds before giving up")
		->capture_default_str()
		->check(CLI::Range(0u, 3600u));
	app.add_flag("-v,--verbose", g.verbose, "libbpf and diagnostic output on stderr");

	AttachOptions a;
	std::string subnet, nat_ports;
	std::string ct_size, bind_size;
	auto *attach = app.add_subcommand(
		"attach", "attach the datapath to a bridge and its uplink, then run the daemon");
	attach->add_option("--bridge", a.bridge, "the guests' bridge")->required();
	attach->add_option("--uplink", a.uplink,
			   "the uplink interface, or 'auto': the device of the IPv4 default "
			   "route, followed when it moves (default: the instance's in the config)");
	std::string mode;
	auto *o_mode = attach->add_option(
		"--mode", mode,
		"hooks per device: auto (each device's best; status says why), tc, xdp "
		"(default: the instance's in the config, else auto)");
	std::string port_guard;
	auto *o_guard = attach->add_option(
		"--port-guard", port_guard,
		"on: a frame on a bridge port with a MAC another port holds is dropped (a guest "
		"posing as another); off: bridges MAC moves as they come (a bond or VRRP across "
		"ports) (default: the instance's in the config, else on)");
	std::string clamp_mss;
	auto *o_mss = attach->add_option("--clamp-mss", clamp_mss,
					 "clamp the MSS of TCP SYNs through the NAT (0: off; "
					 "IPv6 SYNs get N - 20, at least 1220)");
	auto *o_subnet = attach->add_option(
		"--subnet", subnet, "guest subnet CIDR (default: the bridge's primary network)");
	std::string subnet6;
	auto *o_subnet6 = attach->add_option(
		"--subnet6", subnet6,
		"the guests' IPv6 prefix for NAT66 (PREFIX/n, n <= 64; 'none': forget it) (default: "
		"the instance's in the config, else the bridge's global or ULA prefix)");
	std::string ipv6;
	auto *o_ipv6 = attach->add_option(
		"--ipv6", ipv6,
		"the guests' IPv6: auto (NAT66 when they have a prefix, --subnet6 or the bridge's, "
		"else off; status says which and why), nat66, relay (guests on the uplink's own "
		"/64, no NAT, where the network allows it), off (default: the instance's in the "
		"config, else auto)");
	std::string ipv6_inbound;
	auto *o_ipv6_inbound = attach->add_option(
		"--ipv6-inbound", ipv6_inbound,
		"relay: what comes in to the guests' addresses: stateful (the replies of their "
		"flows) or open (everything, as through a real bridge) (default: the instance's in "
		"the config, else stateful)");
	auto *o_nat =
		attach->add_option("--nat-ports", nat_ports,
				   "NAT port range LO-HI (default: 1024-65535 without "
				   "net.ipv4.ip_local_port_range and the host's listening ports)");
	attach->add_flag("--eif", a.eif,
			 "endpoint-independent filtering (full cone, RFC 4787 EIF)");
	// Sizes are checked after parsing, by the checks the config loader
	// uses too (model/options.hpp).
	auto *o_ct = attach->add_option("--ct-size", ct_size, "conntrack table entries");
	auto *o_bind = attach->add_option("--bind-size", bind_size, "binding table entries");
	std::string flow_quota;
	auto *o_quota = attach->add_option("--flow-quota", flow_quota,
					   "max conntrack flows per guest address; 0: no quota "
					   "(default: a quarter of --ct-size)");
	std::string guest_ports;
	auto *o_gports =
		attach->add_option("--guest-ports", guest_ports,
				   "max NAT ports (dynamic bindings) per guest; 0: no limit "
				   "(default: 7/8 of the NAT pool)");
	std::string timeouts;
	auto *o_timeouts = attach->add_option(
		"--timeouts", timeouts,
		"flow timeouts NAME=SECONDS,... over the defaults (tcp_syn_sent, tcp_syn_recv, "
		"tcp_established, tcp_fin_wait, tcp_time_wait, tcp_close, udp, udp_stream, icmp, "
		"other); for tests");

	std::string dhcp_leases;
	auto *o_leases = attach->add_option(
		"--dhcp-leases", dhcp_leases,
		"libvirt's DHCP lease status file, whose addresses stay with their MACs, or "
		"'none' (default: /var/lib/libvirt/dnsmasq/BRIDGE.status)");
	std::string metrics;
	auto *o_metrics = attach->add_option(
		"--metrics", metrics,
		"serve Prometheus metrics at http://ADDR:PORT/metrics from the daemon, or 'off' "
		"(default: the instance's in the config, else off)");

	std::string reload_bridge;
	auto *reload_cmd = app.add_subcommand(
		"reload", "have the bridge's daemon re-read the config and the leases, and wait "
			  "until it has (systemctl reload runs it)");
	reload_cmd->add_option("--bridge", reload_bridge, "the instance (when more than one)");

	std::string detach_bridge;
	auto *detach = app.add_subcommand(
		"detach", "stop the daemon, remove filters, pins, sysctls and the instance");
	detach->add_option("--bridge", detach_bridge, "the bridge")->required();
	bool detach_keep = false;
	detach->add_flag("--keep", detach_keep,
			 "keep the instance's uplink in the config for the next attach --bridge BR "
			 "even without mappings (the package's removal: a reinstall starts it again)");

	// map add|del|list: static mappings (1:1 NAT, port forwards).
	auto *mapping_cmd = app.add_subcommand("map", "static mappings: 1:1 NAT and port forwards");
	mapping_cmd->require_subcommand(1);
	MappingOptions mo;
	auto add_mapping_args = [&](CLI::App *c) {
		c->add_option(
			 "EXT", mo.ext,
			 "EXT_IP (1:1) or EXT_IP|uplink:PORT[-PORT]; IPv6: [EXT_IP6]|[uplink]:PORT[-PORT]")
			->required();
		c->add_option("GUEST", mo.guest,
			      "GUEST_IP (1:1) or GUEST_IP:PORT[-PORT]; vm:NAME[:PORT[-PORT]]: "
			      "the libvirt domain's address (vm:[NAME]... for a name with ':'); "
			      "none: EXT is an IPv6 relay guest's own address (and ports), let in "
			      "as it is");
		c->add_option("--proto", mo.proto, "tcp or udp (port forwards)");
		c->add_option("--bridge", mo.bridge, "the instance (when more than one)");
	};
	auto *mapping_add_cmd = mapping_cmd->add_subcommand(
		"add", "add a mapping (takes effect at once, saved in the config)");
	add_mapping_args(mapping_add_cmd);
	mapping_add_cmd->add_flag(
		"--force", mo.force,
		"allow an EXT_IP outside the uplink's network (routed to this host; not for relay "
		"mappings, which relay's own prefix holds)");
	mapping_add_cmd->add_flag("--add-address", mo.add_address,
				  "add EXT_IP to the uplink instead of answering ARP for it");
	auto *mapping_del_cmd =
		mapping_cmd->add_subcommand("del", "delete a mapping (same arguments as add)");
	add_mapping_args(mapping_del_cmd);
	std::string mapping_list_bridge;
	bool mapping_json = false;
	auto *mapping_list_cmd = mapping_cmd->add_subcommand("list", "list the mappings");
	mapping_list_cmd->add_flag("--json", mapping_json, "machine-readable output");
	mapping_list_cmd->add_option("--bridge", mapping_list_bridge, "only this bridge");
	std::vector<std::string> allow_specs;
	bool allow_json = false;
	auto *mapping_allow_cmd = mapping_cmd->add_subcommand(
		"allow", "show or set what libvirt metadata may claim (external addresses, ports)");
	mapping_allow_cmd->add_option(
		"SPEC", allow_specs,
		"EXT_IP|uplink[:PORT[-PORT]] (IPv6: [EXT_IP6]|[uplink][:PORT[-PORT]]) each; "
		"'default': any port no host service listens on; 'none': nothing");
	mapping_allow_cmd->add_flag("--json", allow_json, "machine-readable output");

	// import: an iptables recipe as kvmxdp commands (verbs/import_verbs.hpp).
	ImportOptions imp;
	auto *import_cmd = app.add_subcommand(
		"import", "print an iptables recipe (iptables-save, iptables -S, a hook script) as "
			  "kvmxdp commands");
	import_cmd->add_option("FILE", imp.file, "the rules; - or none: standard input");
	import_cmd->add_flag("--apply", imp.apply,
			     "also make the mappings (all or none), as map add does");
	import_cmd->add_flag("--json", imp.json, "machine-readable output");
	import_cmd->add_option("--bridge", imp.bridge,
			       "the instance (--apply), the bridge the rules do not name");

	// libvirt-hook: what the installed libvirt hooks run
	// (verbs/libvirt_verbs.hpp); libvirt's own arguments, the XML on stdin.
	LibvirtHookOptions lh;
	auto *hook_cmd = app.add_subcommand(
		"libvirt-hook",
		"libvirt hook: make or remove the mappings in a domain's or network's kvmxdp "
		"metadata (the XML on standard input)");
	hook_cmd->add_option("DRIVER", lh.driver, "qemu or network")
		->required()
		->check(CLI::IsMember({"qemu", "network"}));
	hook_cmd->add_option("OBJECT", lh.object, "the domain or network name")->required();
	hook_cmd->add_option("OPERATION", lh.op, "libvirt's operation (started, stopped, ...)")
		->required();
	hook_cmd->add_option("SUBOPERATION", lh.subop, "libvirt's sub-operation")->required();
	hook_cmd->add_option("EXTRA", lh.extra, "libvirt's extra argument (ignored)");

	InstallOptions io;
	auto *install = app.add_subcommand(
		"install", "install the systemd unit kvmxdp@.service and the libvirt network hook");
	install->add_option("--root", io.root, "prepend this directory to every path");
	install->add_option("--prefix", io.prefix,
			    "the unit runs PREFIX/sbin/kvmxdp (default: this binary's path)");
	install->add_option("--unit-dir", io.unit_dir, "default /etc/systemd/system");
	install->add_option("--hook-dir", io.hook_dir,
			    "the network hook's directory, default /etc/libvirt/hooks/network.d");
	install->add_option("--qemu-hook-dir", io.qemu_hook_dir,
			    "the qemu hook's directory, default /etc/libvirt/hooks/qemu.d");

	std::string status_bridge;
	bool json = false;
	auto *status = app.add_subcommand("status", "show instances, devices, tables, counters");
	status->add_flag("--json", json, "machine-readable output");
	status->add_option("--bridge", status_bridge, "only this bridge");

	TopOptions top_opts;
	auto *top = app.add_subcommand(
		"top", "live per-guest traffic: rates each way, flows, drops (q quits)");
	top->add_option("--bridge", top_opts.bridge, "the instance (when more than one)");
	top->add_flag("--json", top_opts.json, "print one sample (rates over one interval) and exit");
	top->add_option("--interval", top_opts.interval, "seconds between refreshes (default 1)")
		->check(CLI::Range(kTopMinInterval, kTopMaxInterval));
	// doctor: what is wrong with the host, and the fixes (verbs/doctor_verbs.hpp).
	DoctorOptions doc;
	auto *doctor_cmd = app.add_subcommand(
		"doctor", "check the host for what breaks the guests' NAT and print the fixes");
	doctor_cmd->add_option("--bridge", doc.bridge,
			       "only this bridge (default: every instance)");
	doctor_cmd->add_flag("--json", doc.json, "machine-readable output");
	doctor_cmd
		->add_option("--arp-wait", doc.arp_wait,
			     "seconds to listen for the guests' ARP requests (their gateways); 0: "
			     "skip")
		->capture_default_str()
		->check(CLI::Range(0u, 60u));

	// conntrack list|flush (maps-cli/conntrack_print.cpp).
	ConntrackCli ct_cli;
	add_conntrack_commands(app, ct_cli);

	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		if (e.get_exit_code() == 0)
			return app.exit(e); // --help
		fail(e.what());
		return kExitUsage;
	}

	if (app.get_subcommands().empty()) {
		fail("a command is required: attach, detach or status (see --help)");
		return kExitUsage;
	}
	set_verbose(g.verbose);
	// A value no bridge can have is a usage error, as the man page says.
	if (doctor_cmd->parsed() && !doc.bridge.empty()) {
		try {
			check_ifname(doc.bridge);
		} catch (const std::exception &e) {
			fail(std::string("--bridge: ") + e.what());
			return kExitUsage;
		}
	}
	if (attach->parsed()) {
		try {
			if (o_ct->count())
				a.ct_size = parse_table_size(ct_size, "--ct-size");
			if (o_bind->count())
				a.bind_size = parse_table_size(bind_size, "--bind-size");
			if (o_quota->count())
				a.flow_quota = parse_flow_quota(flow_quota, "--flow-quota");
			if (o_gports->count())
				a.guest_ports = parse_guest_ports(guest_ports, "--guest-ports");
		} catch (const std::exception &e) {
			fail(e.what());
			return kExitUsage;
		}
	}
	try {
		if (attach->parsed()) {
			if (o_subnet->count())
				a.subnet = subnet;
			if (o_subnet6->count())
				a.subnet6 = subnet6;
			if (o_ipv6->count())
				a.ipv6 = ipv6;
			if (o_ipv6_inbound->count())
				a.ipv6_inbound = ipv6_inbound;
			if (o_nat->count())
				a.nat_ports = nat_ports;
			if (o_mss->count())
				a.clamp_mss = parse_clamp_mss(clamp_mss);
			if (o_timeouts->count())
				a.timeouts = timeouts;
			if (o_mode->count())
				a.mode = mode;
			if (o_guard->count())
				a.port_guard = port_guard;
			if (o_leases->count())
				a.dhcp_leases = dhcp_leases;
			if (o_metrics->count())
				a.metrics = metrics;
			return attach_and_run(g, a, std::cout);
		}
		if (reload_cmd->parsed()) {
			kvmxdp::reload(g, reload_bridge, std::cout);
			return 0;
		}
		if (detach->parsed()) {
			kvmxdp::detach(g, detach_bridge, std::cout, detach_keep);
			return 0;
		}
		if (mapping_add_cmd->parsed()) {
			mapping_add(g, mo, std::cout);
			return 0;
		}
		if (mapping_del_cmd->parsed()) {
			mapping_del(g, mo, std::cout);
			return 0;
		}
		if (mapping_list_cmd->parsed()) {
			auto j = mapping_list_json(g, mapping_list_bridge);
			if (mapping_json)
				std::cout << j.dump(2) << std::endl;
			else
				print_mappings(j, std::cout);
			return 0;
		}
		if (mapping_allow_cmd->parsed()) {
			auto j = mapping_allow(g, allow_specs);
			if (allow_json)
				std::cout << j.dump(2) << std::endl;
			else
				print_mapping_allow(j, std::cout);
			return 0;
		}
		if (hook_cmd->parsed()) {
			libvirt_hook(g, lh, std::cin, std::cout);
			return 0;
		}
		if (doctor_cmd->parsed())
			return doctor(g, doc, std::cout);
		if (import_cmd->parsed()) {
			import_recipe(g, imp, std::cout);
			return 0;
		}
		if (install->parsed()) {
			// The unit's daemon must find the instance where this one does.
			const GlobalOptions defaults;
			if (g.bpffs != defaults.bpffs)
				io.bpffs = g.bpffs;
			if (g.run_dir != defaults.run_dir)
				io.run_dir = g.run_dir;
			for (const auto &p : install_files(io, g.config))
				std::cout << "kvmxdp: installed " << p << "\n";
			if (io.root.empty())
				std::cout << "kvmxdp: run 'systemctl daemon-reload', then "
					     "'systemctl enable --now kvmxdp@BRIDGE'\n";
			std::cout << std::flush;
			return 0;
		}
		if (run_conntrack_commands(g, ct_cli, std::cout))
			return 0;
		if (top->parsed()) {
			if (top_opts.json) {
				std::cout << top_sample(g, top_opts)
						     .dump(2, ' ', false,
							   nlohmann::json::error_handler_t::replace)
					  << std::endl;
				return 0;
			}
			return run_top(g, top_opts, std::cout);
		}
		if (status->parsed()) {
			auto j = status_json(g, status_bridge);
			// Device names and firewall rules are the kernel's bytes:
			// what is not UTF-8 is shown as U+FFFD, not refused.
			if (json)
				std::cout << j.dump(2, ' ', false,
						    nlohmann::json::error_handler_t::replace)
					  << std::endl;
			else
				print_status(j, std::cout);
			return 0;
		}
	} catch (const ConfigError &e) {
		fail(e.what());
		return kExitConfig;
	} catch (const std::exception &e) {
		fail(e.what());
		return kExitError;
	}
	return kExitUsage;
}
