// SPDX-License-Identifier: GPL-2.0
// `kvmxdp doctor`: what is wrong with a host that runs (or should run) an
// instance, and the command that fixes each finding.  The checks are pure
// functions over DoctorFacts, which control/doctor.hpp gathers from the
// kernel, the firewall tools and `status` (so that the datapath is judged by
// the code status already has); the unit tests feed them fixtures.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr.hpp"

namespace kvmxdp {

// Ok: nothing to say.  Note: worth knowing, nothing wrong (the exit code
// stays 0).  Warning: likely wrong, or wrong for some traffic.  Error:
// guests' traffic is broken by it.
enum class Severity { Note, Warning, Error };
const char *severity_name(Severity s); // "note", "warning", "error"

struct DoctorFinding {
	std::string check; // one of kDoctorChecks
	Severity severity = Severity::Warning;
	std::string what; // what is wrong, and what it breaks
	// One shell line that fixes it on this host, run as printed by root
	// (names in it are shell words), persistent where the setting is (a
	// sysctl.d drop-in, not a bare sysctl -w); "" when no command here
	// fixes it (a guest's setting, an address only its network knows).
	std::string command;
	// Prose: what else to know or do (an alternative, why); "" if none.
	std::string note;
};

// Every check, in the order doctor runs and prints them.
inline const char *const kDoctorChecks[] = {"datapath", "uplink",    "gateway", "br_netfilter",
					    "firewall", "rp_filter", "mtu",	"tables",
					    "mappings", "xdp",	     "kernel"};

struct LinkAddr {
	uint32_t addr = 0; // host order
	uint8_t prefix = 0;
};

// One device as the kernel shows it in the doctor's network namespace.
struct DoctorLink {
	std::string name;
	bool exists = false;
	bool up = false;      // IFF_UP (administratively up)
	bool carrier = false; // IFF_LOWER_UP (a cable, an associated WiFi station)
	uint32_t mtu = 0;
	std::vector<LinkAddr> addrs; // global-scope IPv4
	// net.ipv4.conf.NAME.rp_filter (nullopt: unreadable)
	std::optional<int> rp_filter;
	// The XDP program attached, if any: its name, and how ("native",
	// "generic", "offload").
	std::string xdp_prog;
	std::string xdp_attach;
	// The driver can run XDP natively (NETDEV_XDP_ACT_BASIC|REDIRECT);
	// nullopt: the kernel does not say (< 6.3).
	std::optional<bool> xdp_native;
	bool wireless = false;
};

// ARP requests a guest sent on the bridge while doctor listened: one row
// per (sender MAC, sender address, target).
struct ArpAsk {
	MacAddr mac{};
	uint32_t sender = 0; // host order
	uint32_t target = 0;
	int count = 0;
};

struct DoctorFacts {
	std::string bridge;
	// The instance's object of `status --json` (docs/status-json.md);
	// null: the bridge is not attached (no instance in the config).
	nlohmann::json status;
	// `status --json`'s "kernel" object.
	nlohmann::json kernel;
	std::string uplink; // the instance's, else the default route's; "" none
	DoctorLink bridge_link;
	DoctorLink uplink_link;
	// The main table has an IPv4 default route through the uplink.
	bool uplink_default_route = false;
	std::vector<DoctorLink> ports;
	// net.ipv4.conf.BRIDGE.forwarding (bpf_fib_lookup: FWD_DISABLED without it)
	std::optional<int> bridge_forwarding;
	std::optional<int> rp_filter_all; // net.ipv4.conf.all.rp_filter
	// br_netfilter: loaded when /proc/sys/net/bridge exists; its
	// bridge-nf-call-iptables.
	bool br_netfilter = false;
	std::optional<int> bridge_nf_call_iptables;
	// The firewall as its tools print it; nullopt where the tool is missing
	// or failed (named in firewall_unread).
	std::optional<std::string> iptables_save;
	// iptables-legacy-save (Debian's iptables package ships it): rules made
	// with iptables-legacy live in x_tables, which neither iptables-save
	// (nft backend) nor nft shows.  nullopt where it is not installed.
	std::optional<std::string> iptables_legacy_save;
	std::optional<std::string> nft_json; // `nft -j list ruleset`
	std::vector<std::string> firewall_unread;
	// Guests' ARP requests seen on the bridge in arp_listen_ms (0: not
	// listened).
	int arp_listen_ms = 0;
	std::vector<ArpAsk> arp_asks;
	// Requests received but not in arp_asks (a flood filled the socket's
	// buffer or the listener's table): the gateway check is then partial.
	uint64_t arp_missed = 0;
	std::string arp_error; // why doctor could not listen ("" if it did or was not asked to)
	// systemd runs the host (/run/systemd/system) and kvmxdp@.service is
	// installed: the daemon's fixes restart the unit rather than run
	// `kvmxdp attach` in the foreground.
	bool systemd_unit = false;
};

// A table this full (entries * 100 / max_entries) is worth a warning
// (doctor and status).
constexpr uint32_t kTableWarnPercent = 80;
// A guest that asks this often for one address within the listening window
// gets no answer (Linux sends mcast_solicit = 3 requests a second apart
// before it gives up, and starts again with the next packet).
constexpr int kArpUnansweredCount = 2;
// Gateway findings listed one by one; the rest are counted in one more.
constexpr size_t kArpMaxFindings = 8;

// The checks, one function each (every one has a passing and a failing
// unit test).
std::vector<DoctorFinding> check_datapath(const DoctorFacts &f);
std::vector<DoctorFinding> check_uplink(const DoctorFacts &f);
std::vector<DoctorFinding> check_gateway(const DoctorFacts &f);
std::vector<DoctorFinding> check_br_netfilter(const DoctorFacts &f);
std::vector<DoctorFinding> check_firewall(const DoctorFacts &f);
std::vector<DoctorFinding> check_rp_filter(const DoctorFacts &f);
std::vector<DoctorFinding> check_mtu(const DoctorFacts &f);
std::vector<DoctorFinding> check_tables(const DoctorFacts &f);
// One finding per pending mapping (status's "mappings", state "pending"),
// with its reason: a warning (declared, not in the datapath), a note for a
// `map add ... vm:NAME` one whose domain is not running (it waits for its
// start by design).  The command where one on the host fixes it: the
// domain's start; an address of the host's that is not the uplink's
// primary one, deleted.
std::vector<DoctorFinding> check_mappings(const DoctorFacts &f);
std::vector<DoctorFinding> check_xdp(const DoctorFacts &f);
std::vector<DoctorFinding> check_kernel(const DoctorFacts &f);

// All of them, in kDoctorChecks order.
std::vector<DoctorFinding> run_doctor_checks(const DoctorFacts &f);

// The exit code of `doctor`: 0 nothing wrong (notes only), 3 warnings but
// no error, 4 at least one error.
constexpr int kDoctorExitWarning = 3;
constexpr int kDoctorExitError = 4;
int doctor_exit_code(const std::vector<DoctorFinding> &findings);

// {"bridge", "checks": {name: "ok"|"note"|"warning"|"error"}, "findings":
// [{check, severity, what, command, note}] (command, note: null when
// none), "errors", "warnings", "exit_code"}
nlohmann::json doctor_json(const std::string &bridge, const std::vector<DoctorFinding> &findings);
// The same as lines: "ok CHECK" for a check without findings, then per
// finding "SEVERITY CHECK: what", "  run: COMMAND" (exactly the command,
// nothing after it) and "  note: ...".
std::string format_doctor(const nlohmann::json &report);

} // namespace kvmxdp
