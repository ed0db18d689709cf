// SPDX-License-Identifier: GPL-2.0
#include "model/doctor.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "base/text.hpp"
#include "model/iptables_import.hpp"

namespace kvmxdp {

using nlohmann::json;

const char *severity_name(Severity s)
{
	static const char *const kNames[] = {"note", "warning", "error"};
	return kNames[static_cast<int>(s)];
}

namespace {

// Device names and rules are the kernel's and the tools' bytes: they reach
// the terminal only as printable() shows them.
std::string p(const std::string &s)
{
	return printable(s);
}

// A name inside a fix: the fix is meant to be pasted into a shell, and the
// kernel allows `;`, `$`, quotes or control bytes in a device name.
std::string q(const std::string &s)
{
	return shell_word(s);
}

DoctorFinding finding(const char *check, Severity s, std::string what, std::string command = "",
		      std::string note = "")
{
	return {check, s, std::move(what), std::move(command), std::move(note)};
}

// The instance's unit.  Its instance is the bridge name escaped (a '-'
// means '/'): systemd-escape does it where the name needs it.
std::string unit_name(const std::string &bridge)
{
	return unit_instance_shell("kvmxdp", bridge);
}

// The instance's daemon (re)started: its unit where systemd runs the host
// and the unit is installed, else attach (which stays in the foreground as
// the daemon: said in restart_note).
std::string restart_command(const DoctorFacts &f)
{
	return f.systemd_unit ? "systemctl restart " + unit_name(f.bridge) :
				"kvmxdp attach --bridge " + q(f.bridge);
}

std::string restart_note(const DoctorFacts &f)
{
	return f.systemd_unit ? "" :
				"attach stays in the foreground as the bridge's daemon (under "
				"systemd: systemctl restart " +
					unit_name(f.bridge) + ")";
}

// Sets /proc/sys/KEY (slash form: a device name may hold dots) now and at
// every boot: a drop-in in /etc/sysctl.d, applied with `sysctl -p FILE`
// (that file only: --system would apply every other file again).
// systemd-sysctl applies a device's keys again when udev adds the device
// (99-systemd.rules), so a bridge libvirt creates after boot gets it too.
// `tag` names the file.  sysctl.d splits a line at its first '=', which a
// device name may hold: then only now (persist_note says so).
std::string sysctl_persist(const std::string &key, const std::string &value, const std::string &tag)
{
	if (key.find('=') != std::string::npos)
		return "echo " + value + " > " + q("/proc/sys/" + key);
	const std::string file = "/etc/sysctl.d/90-kvmxdp-" + tag + ".conf";
	return "echo " + q(key + " = " + value) + " > " + q(file) + " && sysctl -p " + q(file);
}

std::string persist_note(const std::string &key)
{
	return key.find('=') != std::string::npos ?
		       "not kept across a reboot: a sysctl.d file cannot name a device with '='" :
		       "";
}

// "A; B" of two notes, either of which may be "".
std::string notes(const std::string &a, const std::string &b)
{
	return a.empty() ? b : b.empty() ? a : a + "; " + b;
}

// A device name inside an nft rule: nft's own quotes (its scanner takes an
// unquoted word as a keyword or a number where it can); nullopt where nft
// cannot say it (a '"' in the name: nft strings have no escapes).
std::optional<std::string> nft_string(const std::string &s)
{
	if (s.find('"') != std::string::npos)
		return std::nullopt;
	return "\"" + s + "\"";
}

std::optional<uint32_t> bridge_address_in(const DoctorFacts &f, uint32_t addr)
{
	for (const auto &a : f.bridge_link.addrs)
		if (network_of(a.addr, a.prefix).contains(addr))
			return a.addr;
	return std::nullopt;
}

bool is_bridge_address(const DoctorFacts &f, uint32_t addr)
{
	for (const auto &a : f.bridge_link.addrs)
		if (a.addr == addr)
			return true;
	return false;
}

// The guest subnet: the instance's, else the bridge's first network.
std::optional<Ipv4Net> guest_subnet(const DoctorFacts &f)
{
	if (f.status.is_object() && f.status.contains("subnet") && f.status["subnet"].is_string())
		try {
			return parse_cidr(f.status["subnet"].get<std::string>());
		} catch (const std::exception &) {
		}
	if (!f.bridge_link.addrs.empty())
		return network_of(f.bridge_link.addrs[0].addr, f.bridge_link.addrs[0].prefix);
	return std::nullopt;
}

std::string join(const std::vector<std::string> &v, const std::string &sep)
{
	std::string out;
	for (const auto &s : v)
		out += (out.empty() ? "" : sep) + s;
	return out;
}

} // namespace

// ---------------------------------------------------------------- datapath

std::vector<DoctorFinding> check_datapath(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	const std::string br = p(f.bridge);
	if (f.bridge_forwarding && *f.bridge_forwarding == 0)
		out.push_back(finding(
			"datapath", Severity::Error,
			"net.ipv4.conf." + br +
				".forwarding is 0: the datapath's route lookups fail (FWD_DISABLED) "
				"and guests reach nothing outside",
			sysctl_persist("net/ipv4/conf/" + f.bridge + "/forwarding", "1",
				       "forwarding-" + f.bridge),
			notes("attach sets it too",
			      persist_note("net/ipv4/conf/" + f.bridge + "/forwarding"))));
	if (!f.status.is_object()) {
		out.push_back(finding(
			"datapath", Severity::Error,
			br + " is not attached: no kvmxdp instance for it in the config",
			f.uplink.empty() ? "" :
					   "kvmxdp attach --bridge " + q(f.bridge) + " --uplink " +
						   q(f.uplink),
			(f.uplink.empty() ?
				 "kvmxdp attach --bridge " + q(f.bridge) +
					 " --uplink DEVICE (no default route names one); " :
				 std::string()) +
				"attach stays in the foreground as the bridge's daemon: once it "
				"recorded the instance, systemctl enable --now " +
				unit_name(f.bridge) + " runs it at boot"));
		if (!f.bridge_link.exists)
			out.push_back(finding(
				"datapath", Severity::Error, "the bridge " + br + " does not exist",
				"",
				"create it: virsh net-start NETWORK (its libvirt network), or ip "
				"link add " +
					q(f.bridge) + " type bridge"));
		return out;
	}
	const json &s = f.status;
	for (const auto &d : s.value("devices", json::array())) {
		const std::string role = d.value("role", "");
		const char *expect = role == "bridge" ? "kvx_br_ingress" :
				     role == "uplink" ? "kvx_up_ingress" :
							nullptr;
		if (!expect)
			continue;
		const std::string dev = p(d.value("ifname", ""));
		if (d.value("ifindex", json()).is_null()) {
			out.push_back(finding(
				"datapath", Severity::Error,
				"the " + role + " " + dev + " does not exist", "",
				role == "bridge" ?
					"create it (virsh net-start NETWORK), then " +
						restart_command(f) :
					"kvmxdp attach --bridge " + q(f.bridge) +
						" --uplink DEVICE (or --uplink auto: the default "
						"route's)"));
			continue;
		}
		const json prog = d.value("prog", json());
		if (prog.is_null())
			out.push_back(finding("datapath", Severity::Error,
					      "no kvmxdp filter on " + dev +
						      " ingress: guest traffic is not translated",
					      restart_command(f), restart_note(f)));
		else if (prog != expect)
			out.push_back(finding("datapath", Severity::Error,
					      "the kvmxdp filter on " + dev + " runs '" +
						      p(prog.is_string() ? prog.get<std::string>() :
									   prog.dump()) +
						      "', expected '" + expect + "'",
					      restart_command(f), restart_note(f)));
	}
	for (const auto &w : s.value("warnings", json::array()))
		if (w.is_string() &&
		    w.get<std::string>().rfind("cannot read the pinned maps", 0) == 0)
			out.push_back(finding("datapath", Severity::Error, p(w.get<std::string>()),
					      restart_command(f), restart_note(f)));
	if (s.value("daemon_pid", json()).is_null())
		out.push_back(finding("datapath", Severity::Warning,
				      "no daemon running for " + br +
					      ": uplink address changes are not followed and "
					      "expired flows are not collected",
				      restart_command(f), restart_note(f)));
	return out;
}

// ---------------------------------------------------------------- uplink

std::vector<DoctorFinding> check_uplink(const DoctorFacts &f)
{
	const std::string up = p(f.uplink);
	if (f.uplink.empty())
		return {finding("uplink", Severity::Error,
				"no uplink: there is no IPv4 default route (and the instance names "
				"no uplink), so guest traffic to the outside is dropped",
				"",
				"connect the uplink (nmcli device connect DEVICE), or ip route add "
				"default via GATEWAY dev DEVICE")};
	const DoctorLink &l = f.uplink_link;
	if (!l.exists)
		return {finding("uplink", Severity::Error, "the uplink " + up + " does not exist",
				"",
				"kvmxdp attach --bridge " + q(f.bridge) +
					" --uplink auto (the default route's device), or --uplink "
					"DEVICE")};
	std::vector<DoctorFinding> out;
	if (!l.up)
		out.push_back(finding("uplink", Severity::Error,
				      "the uplink " + up + " is down: guests reach nothing outside",
				      "ip link set dev " + q(f.uplink) + " up"));
	else if (!l.carrier)
		out.push_back(
			finding("uplink", Severity::Error,
				"the uplink " + up +
					" has no carrier (cable unplugged, WiFi not associated)",
				"", "connect it: nmcli device connect " + q(f.uplink)));
	if (l.addrs.empty())
		out.push_back(
			finding("uplink", Severity::Error,
				"the uplink " + up +
					" has no IPv4 address: guest traffic to the outside is "
					"dropped (DROP_NO_UPLINK_ADDR)",
				"",
				"get one: nmcli device connect " + q(f.uplink) + ", dhclient " +
					q(f.uplink) + ", or ip addr add ADDRESS/PREFIX dev " +
					q(f.uplink)));
	else if (l.up && !f.uplink_default_route)
		out.push_back(finding("uplink", Severity::Error,
				      "no IPv4 default route through the uplink " + up +
					      ": guest traffic beyond its network is dropped "
					      "(DROP_FIB, DROP_OTHER_IFACE)",
				      "",
				      "DHCP sets it (nmcli device connect " + q(f.uplink) +
					      "), or ip route add default via GATEWAY dev " +
					      q(f.uplink)));
	return out;
}

// ---------------------------------------------------------------- gateway

std::vector<DoctorFinding> check_gateway(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	const std::string br = p(f.bridge);
	if (!f.bridge_link.exists)
		return out; // the datapath check names a missing bridge
	if (f.bridge_link.addrs.empty()) {
		auto sub = guest_subnet(f);
		out.push_back(finding(
			"gateway", Severity::Error,
			"the bridge " + br +
				" has no IPv4 address: guests have no gateway to send through",
			sub ? "ip addr add " + format_ipv4(sub->addr + 1) + "/" +
					std::to_string(sub->prefix) + " dev " + q(f.bridge) :
			      "",
			sub ? "the guest subnet's first address; restarting its libvirt network "
			      "sets the one its XML names" :
			      "ip addr add ADDRESS/PREFIX dev " + q(f.bridge)));
		return out;
	}
	// Skipped on request: a note.  Could not listen: the check is blind,
	// which is not "nothing wrong" (a warning, a non-zero exit).
	if (f.arp_listen_ms <= 0)
		return {finding("gateway", f.arp_error.empty() ? Severity::Note : Severity::Warning,
				"guests' gateways not checked (" +
					(f.arp_error.empty() ?
						 std::string("--arp-wait 0") :
						 "cannot listen for ARP: " + p(f.arp_error)) +
					")")};
	// A guest that forges ARP requests from many addresses must not
	// bury the report: the first few, then how many more.
	size_t more = 0;
	for (const ArpAsk &a : f.arp_asks) {
		// Probes (RFC 5227: sender 0.0.0.0), announcements and the
		// host's own requests say nothing of a guest's gateway.
		if (a.count < kArpUnansweredCount || a.sender == 0 || a.sender == a.target ||
		    is_bridge_address(f, a.sender) || is_bridge_address(f, a.target))
			continue;
		if (out.size() >= kArpMaxFindings) {
			more++;
			continue;
		}
		auto gw = bridge_address_in(f, a.sender);
		const std::string who =
			"guest " + format_ipv4(a.sender) + " (" + format_mac(a.mac) + ")";
		if (!gw) {
			out.push_back(
				finding("gateway", Severity::Warning,
					who + " is on no network of " + br + " (asked " +
						std::to_string(a.count) + " times for " +
						format_ipv4(a.target) + ")",
					"",
					"give the guest an address in " +
						format_ipv4(f.bridge_link.addrs[0].addr) + "/" +
						std::to_string(f.bridge_link.addrs[0].prefix) +
						"'s network (DHCP)"));
			continue;
		}
		// A warning, not an error: an unanswered address on the
		// guests' network is as often a stopped guest (normal) as a
		// wrong gateway, and ARP does not say which.
		out.push_back(finding(
			"gateway", Severity::Warning,
			who + " asked " + std::to_string(a.count) + " times in " +
				std::to_string(f.arp_listen_ms / 1000) + " s for " +
				format_ipv4(a.target) +
				" and got no answer: a stopped guest, or a wrong default gateway "
				"(it must be the bridge's address " +
				format_ipv4(*gw) + ")",
			"",
			"if it is the guest's gateway, in the guest: ip route replace default via " +
				format_ipv4(*gw) + "; or fix the DHCP server's router option"));
	}
	if (more)
		out.push_back(finding("gateway", Severity::Warning,
				      "and " + std::to_string(more) +
					      " more unanswered ARP requests on " + br +
					      " (an ARP flood, or a misconfigured network)",
				      "",
				      "look at the guests' configuration; ip neigh show dev " +
					      q(f.bridge) + " shows whom the host knows"));
	// What was not seen is not "ok": a flood that filled the listener
	// hides the requests that matter.
	if (f.arp_missed)
		out.push_back(finding(
			"gateway", Severity::Warning,
			"guests' gateways checked only in part: " + std::to_string(f.arp_missed) +
				" ARP requests on " + br +
				" were received but not looked at (an ARP flood: more different "
				"requests than doctor keeps, or faster than it reads)",
			"",
			"find the flooding host: tcpdump -eni " + q(f.bridge) +
				" arp; then kvmxdp doctor --bridge " + q(f.bridge) + " again"));
	return out;
}

// ---------------------------------------------------------------- firewall

namespace {

// The value after `opt` in a rule's words, unless negated ("! -s X").
std::optional<std::string> arg_of(const std::vector<std::string> &args, const std::string &opt)
{
	for (size_t i = 0; i + 1 < args.size(); i++)
		if (args[i] == opt && !(i > 0 && args[i - 1] == "!"))
			return args[i + 1];
	return std::nullopt;
}

// The rule as iptables -D's arguments, each a shell word (a lone "!" is
// none of bash's history expansions: it stays as iptables-save prints it).
std::string rule_words(const IptRule &r)
{
	std::string s = q(r.chain);
	for (const auto &a : r.args)
		s += " " + (a == "!" ? a : q(a));
	return s;
}

struct IptView {
	std::map<std::string, std::string> policy; // filter chain -> policy
	std::vector<IptRule> rules;		   // -A of every table
	bool docker = false;			   // a DOCKER-USER chain
};

IptView iptables_view(const std::string &text)
{
	IptView v;
	for (const IptRule &r : read_iptables(text).rules) {
		if (r.ipv6)
			continue;
		if (r.op == 'N') {
			// ":FORWARD DROP [0:0]"
			std::istringstream in(r.text.substr(1));
			std::string chain, policy;
			in >> chain >> policy;
			if (r.table == "filter" && policy != "-")
				v.policy[chain] = policy;
			if (r.table == "filter" && chain == "DOCKER-USER")
				v.docker = true;
		} else if (r.op == 'P' && !r.args.empty()) {
			v.policy[r.chain] = r.args[0];
		} else if (r.op == 'A' || r.op == 'I') {
			v.rules.push_back(r);
		}
	}
	return v;
}

// An nft ruleset (`nft -j list ruleset`) by its objects.
struct NftRule {
	std::string family, table, chain;
	int64_t handle = 0;
	json expr;
};
struct NftChain {
	std::string family, table, name, hook, policy, type;
};

bool json_has_key(const json &j, const std::string &key)
{
	if (j.is_object()) {
		if (j.contains(key))
			return true;
		for (const auto &[k, v] : j.items())
			if (json_has_key(v, key))
				return true;
	} else if (j.is_array()) {
		for (const auto &v : j)
			if (json_has_key(v, key))
				return true;
	}
	return false;
}

// A {"prefix": {"addr": A, "len": N}} (or a plain address) inside the
// subnet, anywhere in a rule's expressions.
bool json_names_subnet(const json &j, const Ipv4Net &subnet)
{
	if (j.is_object()) {
		if (j.contains("prefix") && j["prefix"].is_object()) {
			const json &pf = j["prefix"];
			try {
				uint32_t a = parse_ipv4(pf.value("addr", ""));
				int len = pf.value("len", -1);
				if (len >= subnet.prefix && subnet.contains(a))
					return true;
			} catch (const std::exception &) {
			}
		}
		for (const auto &[k, v] : j.items())
			if (json_names_subnet(v, subnet))
				return true;
	} else if (j.is_array()) {
		for (const auto &v : j)
			if (json_names_subnet(v, subnet))
				return true;
	}
	return false;
}

// A {"match": {"left": {"meta": {"key": KEY}}, "right": VALUE}} anywhere
// in a rule's expressions.
bool json_meta_is(const json &j, const std::string &key, const std::string &value)
{
	if (j.is_object()) {
		if (j.contains("match") && j["match"].is_object()) {
			const json &m = j["match"];
			const json left = m.value("left", json()), right = m.value("right", json());
			if (left.is_object() && left.contains("meta") && left["meta"].is_object() &&
			    left["meta"].value("key", "") == key && right == value &&
			    m.value("op", "==") == "==")
				return true;
		}
		for (const auto &[k, v] : j.items())
			if (json_meta_is(v, key, value))
				return true;
	} else if (j.is_array()) {
		for (const auto &v : j)
			if (json_meta_is(v, key, value))
				return true;
	}
	return false;
}

bool json_has_string(const json &j, const std::string &s)
{
	if (j.is_string())
		return j.get<std::string>() == s;
	if (j.is_object() || j.is_array())
		for (const auto &v : j)
			if (json_has_string(v, s))
				return true;
	return false;
}

bool iptables_table(const std::string &family, const std::string &table)
{
	static const char *const kTables[] = {"filter", "nat", "mangle", "raw", "security"};
	if (family != "ip" && family != "ip6")
		return false;
	return std::find(std::begin(kTables), std::end(kTables), table) != std::end(kTables);
}

} // namespace

std::vector<DoctorFinding> check_firewall(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	const std::string br = p(f.bridge);
	const auto subnet = guest_subnet(f);
	const bool bridged_nf = f.br_netfilter && f.bridge_nf_call_iptables.value_or(0) == 1;
	const std::string open_mode =
		"a libvirt network re-adds its rules on restart: switch it to <forward "
		"mode='open'/> with virsh net-edit NETWORK, then virsh net-destroy NETWORK; "
		"virsh net-start NETWORK";
	// A rule deleted now comes back where a service restores the ruleset
	// at boot.
	const std::string saved =
		"if a service restores the ruleset at boot (netfilter-persistent, a "
		"firewall manager), remove it there too";
	// The rules iptables-save prints, with `tool` the command that edits
	// them ("iptables": the nft backend on Debian; "iptables-legacy": the
	// old x_tables, which the kernel runs as well, in its own hooks).
	auto judge_iptables = [&](const std::string &text, const std::string &tool) {
		IptView v = iptables_view(text);
		for (const IptRule &r : v.rules) {
			const std::string target = arg_of(r.args, "-j").value_or("");
			// libvirt's NAT (LIBVIRT_PRT) or a hand-written one for the
			// guests: it translates what kvmxdp passes to the host stack,
			// so such traffic leaves as if kvmxdp had NATed it.
			if (r.table == "nat" && (target == "MASQUERADE" || target == "SNAT") &&
			    subnet) {
				auto src = arg_of(r.args, "-s");
				bool ours = false;
				if (src)
					try {
						Ipv4Net n = src->find('/') == std::string::npos ?
								    Ipv4Net{parse_ipv4(*src), 32} :
								    parse_cidr(*src);
						ours = n.overlaps(*subnet);
					} catch (const std::exception &) {
					}
				if (ours || arg_of(r.args, "-o") == f.bridge ||
				    arg_of(r.args, "-i") == f.bridge)
					out.push_back(finding(
						"firewall", Severity::Warning,
						tool + " NATs the guest subnet (" + p(r.text) +
							"): what kvmxdp hands to the host stack "
							"leaves translated by netfilter, and failures "
							"of kvmxdp are hidden",
						tool + " -t nat -D " + rule_words(r),
						r.chain.rfind("LIBVIRT", 0) == 0 ? open_mode :
										   saved));
			}
			// A rule of the filter table that drops the bridge's traffic
			// (DOCKER-ISOLATION, a hand-written DROP).
			if (r.table == "filter" && (target == "DROP" || target == "REJECT") &&
			    (arg_of(r.args, "-i") == f.bridge || arg_of(r.args, "-o") == f.bridge))
				out.push_back(finding(
					"firewall", Severity::Warning,
					tool + " drops " + br + "'s traffic (" + p(r.text) + ")",
					tool + " -D " + rule_words(r),
					r.chain.rfind("LIBVIRT", 0) == 0 ? open_mode : saved));
		}
		// FORWARD policy DROP (Docker sets it) without an accept of the
		// bridge before it (in FORWARD or Docker's DOCKER-USER).
		if (v.policy.count("FORWARD") && v.policy["FORWARD"] == "DROP") {
			bool in = false, outb = false;
			for (const IptRule &r : v.rules) {
				if (r.table != "filter" ||
				    (r.chain != "FORWARD" && r.chain != "DOCKER-USER") ||
				    arg_of(r.args, "-j") != std::string("ACCEPT") ||
				    r.args.size() != 4)
					continue;
				in = in || arg_of(r.args, "-i") == f.bridge;
				outb = outb || arg_of(r.args, "-o") == f.bridge;
			}
			if (!in || !outb) {
				const std::string chain = v.docker ? "DOCKER-USER" : "FORWARD";
				out.push_back(finding(
					"firewall",
					bridged_nf ? Severity::Error : Severity::Warning,
					tool + "' FORWARD policy is DROP" +
						(v.docker ? " (Docker)" : "") +
						(bridged_nf ?
							 ": with br_netfilter, traffic between "
							 "guests on " +
								 br + " is dropped" :
							 ": what kvmxdp hands to the host's "
							 "routing (a suspended mapping, an "
							 "uplink network overlapping the "
							 "guests') is dropped"),
					tool + " -I " + chain + " -i " + q(f.bridge) +
						" -j ACCEPT && " + tool + " -I " + chain + " -o " +
						q(f.bridge) + " -j ACCEPT",
					"rules made with " + tool +
						" are gone after a reboot unless saved "
						"(netfilter-persistent save) or made by the firewall "
						"manager"));
			}
		}
	};
	if (f.iptables_save)
		judge_iptables(*f.iptables_save, "iptables");
	// Where iptables is the legacy one itself, both print the same rules.
	if (f.iptables_legacy_save && f.iptables_legacy_save != f.iptables_save)
		judge_iptables(*f.iptables_legacy_save, "iptables-legacy");
	if (f.nft_json) {
		json doc;
		try {
			doc = json::parse(*f.nft_json);
		} catch (const std::exception &) {
			return out;
		}
		std::vector<NftChain> chains;
		std::vector<NftRule> rules;
		std::vector<std::pair<std::string, std::string>> tables;
		for (const auto &o : doc.value("nftables", json::array())) {
			if (o.contains("table")) {
				const json &t = o["table"];
				tables.emplace_back(t.value("family", ""), t.value("name", ""));
			} else if (o.contains("chain")) {
				const json &c = o["chain"];
				chains.push_back({c.value("family", ""), c.value("table", ""),
						  c.value("name", ""), c.value("hook", ""),
						  c.value("policy", ""), c.value("type", "")});
			} else if (o.contains("rule")) {
				const json &r = o["rule"];
				rules.push_back({r.value("family", ""), r.value("table", ""),
						 r.value("chain", ""),
						 r.value("handle", int64_t{0}),
						 r.value("expr", json::array())});
			}
		}
		// iptables-nft's tables were judged above, from iptables-save.
		auto skip = [&](const std::string &fam, const std::string &table) {
			return f.iptables_save && iptables_table(fam, table);
		};
		for (const NftRule &r : rules) {
			if (skip(r.family, r.table) || !subnet)
				continue;
			if ((json_has_key(r.expr, "masquerade") || json_has_key(r.expr, "snat")) &&
			    json_names_subnet(r.expr, *subnet))
				out.push_back(finding(
					"firewall", Severity::Warning,
					"nftables NATs the guest subnet (table " + p(r.family) +
						" " + p(r.table) + ", chain " + p(r.chain) +
						"): what kvmxdp hands to the host stack leaves "
						"translated by netfilter",
					"nft delete rule " + q(r.family) + " " + q(r.table) + " " +
						q(r.chain) + " handle " + std::to_string(r.handle),
					r.table.rfind("libvirt", 0) == 0 ? open_mode : saved));
		}
		for (const NftChain &c : chains) {
			if (skip(c.family, c.table) || c.hook != "forward" || c.policy != "drop")
				continue;
			// A bridge chain's rule accepts the bridge's frames only
			// through the bridge's name (iifname there is a port's).
			bool accepts = false;
			for (const NftRule &r : rules)
				if (r.family == c.family && r.table == c.table &&
				    r.chain == c.name && json_has_key(r.expr, "accept") &&
				    (c.family == "bridge" ?
					     json_meta_is(r.expr, "ibrname", f.bridge) ||
						     json_meta_is(r.expr, "obrname", f.bridge) :
					     json_has_string(r.expr, f.bridge)))
					accepts = true;
			if (accepts)
				continue;
			const bool bridge_family = c.family == "bridge";
			// In the bridge family iifname/oifname are the bridge's
			// ports (vnet0), never the bridge: its frames are matched
			// by the bridge they cross (meta ibrname, nft >= 0.9.1).
			// Routed traffic (ip, inet) enters or leaves through the
			// bridge device itself.
			const std::string head =
				"insert rule " + c.family + " " + c.table + " " + c.name;
			const auto name = nft_string(f.bridge);
			std::string fix, note = saved;
			if (!name)
				note = "rename " + q(f.bridge) +
				       ": nft cannot name a device with '\"' in a rule";
			else if (bridge_family)
				fix = "nft " + q(head + " meta ibrname " + *name + " accept");
			else
				fix = "nft " + q(head + " iifname " + *name + " accept") +
				      " && nft " + q(head + " oifname " + *name + " accept");
			out.push_back(finding(
				"firewall",
				bridge_family || bridged_nf ? Severity::Error : Severity::Warning,
				"nftables chain " + p(c.family) + " " + p(c.table) + " " +
					p(c.name) +
					" (forward hook) drops by policy and accepts nothing of " +
					br +
					(bridge_family ?
						 ": traffic between guests is dropped" :
						 ": what kvmxdp hands to the host's routing is "
						 "dropped"),
				fix, note));
		}
		// firewalld rejects forwarded traffic no zone allows; the bridge
		// in a zone shows up in its rules by name.
		for (const auto &[fam, name] : tables) {
			if (name != "firewalld")
				continue;
			bool named = false;
			for (const NftRule &r : rules)
				if (r.table == name && r.family == fam &&
				    json_has_string(r.expr, f.bridge))
					named = true;
			if (!named)
				out.push_back(finding(
					"firewall", Severity::Warning,
					"firewalld is active and " + br +
						" is in none of its zones: its forward chain rejects "
						"what kvmxdp hands to the host's routing",
					"firewall-cmd --permanent --zone=libvirt " +
						q("--add-interface=" + f.bridge) +
						" && firewall-cmd --reload"));
		}
	}
	// A tool that is not installed holds no rules (a note); one that
	// failed (run_firewall_tool: "TOOL: ... failed") leaves a ruleset
	// unread that may drop the guests' traffic: not checked is a
	// warning, not a clean bill.
	for (const auto &u : f.firewall_unread) {
		const bool absent = u.find(": not installed (") != std::string::npos;
		out.push_back(finding("firewall", absent ? Severity::Note : Severity::Warning,
				      (absent ? "not read: " : "not read (not checked): ") + p(u)));
	}
	return out;
}

// ---------------------------------------------------------------- br_netfilter

std::vector<DoctorFinding> check_br_netfilter(const DoctorFacts &f)
{
	if (!f.br_netfilter || f.bridge_nf_call_iptables.value_or(0) != 1)
		return {};
	size_t forward_rules = 0;
	// Who else needs bridged frames in iptables: Docker (its DOCKER
	// chains: containers on one bridge reach each other's published
	// ports through them), Kubernetes (KUBE- chains: kube-proxy requires
	// br_netfilter) and any rule matching bridge ports (-m physdev, which
	// sees nothing without it).  bridge-nf-call-iptables is one switch
	// for every bridge (a bridge's own nf_call_iptables can only add to
	// it), so with any of them the finding is a note without a command.
	std::set<std::string> users;
	for (const auto *text : {&f.iptables_save, &f.iptables_legacy_save})
		if (*text && (text == &f.iptables_save || *text != f.iptables_save)) {
			const IptView v = iptables_view(**text);
			if (v.docker)
				users.insert("Docker");
			for (const IptRule &r : v.rules) {
				if (r.table == "filter" && r.chain == "FORWARD")
					forward_rules++;
				if (r.chain.rfind("DOCKER", 0) == 0)
					users.insert("Docker");
				if (r.chain.rfind("KUBE-", 0) == 0)
					users.insert("Kubernetes");
				for (const auto &a : r.args)
					if (a == "physdev" || a.rfind("--physdev", 0) == 0)
						users.insert("iptables rules matching bridge ports "
							     "(-m physdev)");
			}
		}
	const std::string what =
		"br_netfilter sends bridged frames through iptables (bridge-nf-call-"
		"iptables=1): guest traffic passes netfilter and conntrack (" +
		std::to_string(forward_rules) +
		" rule(s) in FORWARD) before kvmxdp's hook on the bridge";
	if (!users.empty()) {
		std::vector<std::string> u(users.begin(), users.end());
		return {finding("br_netfilter", Severity::Note, what, "",
				join(u, ", ") +
					" need(s) it: leave it on (the firewall check says what "
					"its rules drop)")};
	}
	const std::string key = "net/bridge/bridge-nf-call-iptables";
	return {finding("br_netfilter", Severity::Warning, what,
			sysctl_persist(key, "0", "bridge-nf-call-iptables"),
			"nothing in the ruleset needs it (no Docker or Kubernetes chain, no -m "
			"physdev rule); modprobe -r br_netfilter unloads it while nothing uses "
			"it")};
}

// ---------------------------------------------------------------- rp_filter

std::vector<DoctorFinding> check_rp_filter(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	for (const DoctorLink *l : {&f.bridge_link, &f.uplink_link}) {
		if (!l->exists || !l->rp_filter)
			continue;
		// The kernel uses the larger of conf.all and conf.DEV.
		int eff = std::max(*l->rp_filter, f.rp_filter_all.value_or(0));
		if (eff != 1)
			continue;
		out.push_back(finding(
			"rp_filter", Severity::Warning,
			"strict reverse-path filtering on " + p(l->name) +
				" (rp_filter=1): the host drops what kvmxdp hands to it whose "
				"source is not routed back through " +
				p(l->name) +
				" (mapped addresses, asymmetric routes, a roaming uplink)",
			sysctl_persist("net/ipv4/conf/" + l->name + "/rp_filter", "2",
				       "rp_filter-" + l->name),
			persist_note("net/ipv4/conf/" + l->name + "/rp_filter")));
	}
	return out;
}

// ---------------------------------------------------------------- mtu

std::vector<DoctorFinding> check_mtu(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	if (!f.bridge_link.exists || f.ports.empty())
		return out;
	uint32_t hi = 0, lo = UINT32_MAX;
	for (const auto &port : f.ports) {
		hi = std::max(hi, port.mtu);
		lo = std::min(lo, port.mtu);
	}
	if (hi != lo) {
		std::vector<std::string> list, fixes;
		for (const auto &port : f.ports) {
			list.push_back(p(port.name) + " " + std::to_string(port.mtu));
			if (port.mtu < hi)
				fixes.push_back("ip link set dev " + q(port.name) + " mtu " +
						std::to_string(hi));
		}
		out.push_back(finding("mtu", Severity::Warning,
				      "the ports of " + p(f.bridge) + " differ in MTU (" +
					      join(list, ", ") + "): frames larger than " +
					      std::to_string(lo) + " are dropped between guests",
				      join(fixes, " && "),
				      "libvirt sets a guest's port MTU from its interface's <mtu "
				      "size=.../>: set it there to keep it"));
	}
	const DoctorLink &up = f.uplink_link;
	const uint32_t br = f.bridge_link.mtu;
	if (up.exists && up.mtu && br && up.mtu != br) {
		std::vector<std::string> fixes;
		for (const auto &port : f.ports)
			fixes.push_back("ip link set dev " + q(port.name) + " mtu " +
					std::to_string(up.mtu));
		out.push_back(finding(
			"mtu", Severity::Warning,
			"the bridge " + p(f.bridge) + " has MTU " + std::to_string(br) +
				", the uplink " + p(up.name) + " " + std::to_string(up.mtu) +
				(br > up.mtu ? ": guests' full-size packets need ICMP frag-needed "
					       "(PMTU discovery), those without DF are dropped "
					       "(DROP_TOO_BIG)" :
					       ": inbound packets larger than the bridge's MTU are "
					       "dropped (DROP_TOO_BIG_IN)"),
			join(fixes, " && "),
			"and the guests' MTU (libvirt: <mtu size=.../> on their interfaces)" +
				(br > up.mtu ?
					 "; or attach --clamp-mss " + std::to_string(up.mtu - 40) :
					 std::string())));
	}
	return out;
}

// ---------------------------------------------------------------- tables

std::vector<DoctorFinding> check_tables(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	if (!f.status.is_object())
		return out;
	// detach forgets the instance: attach is told its uplink again.
	const std::string up = f.status.value("uplink", "");
	const std::string uplink = up.empty() ? "" : " --uplink " + q(up);
	auto table = [&](const char *key, const char *what, const char *option) {
		if (!f.status.contains(key) || !f.status[key].is_object())
			return;
		const json &t = f.status[key];
		uint64_t n = t.value("entries", uint64_t{0}),
			 max = t.value("max_entries", uint64_t{0});
		if (!max || n * 100 < max * kTableWarnPercent)
			return;
		const bool full = n >= max;
		out.push_back(finding(
			"tables", full ? Severity::Error : Severity::Warning,
			std::string("the ") + what + " table holds " + std::to_string(n) + " of " +
				std::to_string(max) + " entries (" + std::to_string(n * 100 / max) +
				"%): " +
				(full ? "new flows are refused (DROP_TABLE_FULL)" :
					"new flows will be refused (DROP_TABLE_FULL) when it is full"),
			// A pinned table is not resized in place: attach refuses
			// another size until detach (which drops the flows).
			(f.systemd_unit ? "systemctl stop " + unit_name(f.bridge) + " && " :
					  std::string()) +
				"kvmxdp detach --bridge " + q(f.bridge) +
				" && kvmxdp attach --bridge " + q(f.bridge) + uplink + " " +
				option + " " + std::to_string(max * 2),
			"detach drops the tracked flows and forgets the instance: give its other "
			"attach options again (kvmxdp status shows them); attach stays in the "
			"foreground as the bridge's daemon" +
				(f.systemd_unit ?
					 ": Ctrl-C, then systemctl start " + unit_name(f.bridge) :
					 std::string())));
	};
	table("conntrack", "conntrack", "--ct-size");
	table("bindings", "binding", "--bind-size");
	return out;
}

// ---------------------------------------------------------------- mappings

std::vector<DoctorFinding> check_mappings(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	if (!f.status.is_object() || !f.status.contains("mappings") ||
	    !f.status["mappings"].is_array())
		return out;
	auto text = [](const json &m, const char *key) {
		return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() :
							       std::string();
	};
	for (const json &m : f.status["mappings"]) {
		if (!m.is_object() || text(m, "state") != "pending")
			continue;
		const std::string vm = text(m, "vm"), net = text(m, "libvirt_network");
		const std::string ext = text(m, "ext"), reason = text(m, "reason");
		const std::string proto = text(m, "proto");
		const std::string what = "mapping " + ext + " -> " + text(m, "guest") +
					 (proto.empty() || proto == "any" ? "" : " " + proto) +
					 (!vm.empty()  ? " (vm " + p(vm) + ")" :
					  !net.empty() ? " (network " + p(net) + ")" :
							 "") +
					 " is pending, not in the datapath: " + p(reason);
		// A `map add ... vm:` mapping waits for its domain's start
		// (model/mapping.hpp vm_stopped_reason): nothing wrong.
		if (!vm.empty() && reason.rfind("domain '", 0) == 0 &&
		    reason.find("' is not running") != std::string::npos) {
			out.push_back(finding("mappings", Severity::Note, what, "virsh start " + q(vm),
					      "made again when the domain starts"));
			continue;
		}
		// A 1:1 address the host holds: on the uplink beside its own
		// address it can go; the uplink's primary address (the host's
		// DHCP lease, say) is the host's to keep.
		std::string command;
		if (reason.find(" is an address of this host") != std::string::npos &&
		    ext.find(':') == std::string::npos) {
			try {
				const uint32_t a = parse_ipv4(ext);
				const auto &addrs = f.uplink_link.addrs;
				for (size_t k = 1; k < addrs.size(); k++)
					if (addrs[k].addr == a)
						command = "ip address del " + ext + "/" +
							  std::to_string(addrs[k].prefix) + " dev " +
							  q(f.uplink_link.name);
			} catch (const std::exception &) {
			}
		}
		out.push_back(finding(
			"mappings", Severity::Warning, what, command,
			command.empty() ? "the daemon makes it as soon as the reason is gone" :
					  "the daemon then makes it, probing the address first; or "
					  "forward ports of the address instead of mapping all of it"));
	}
	return out;
}

// ---------------------------------------------------------------- xdp

std::vector<DoctorFinding> check_xdp(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	std::vector<const DoctorLink *> links{&f.bridge_link, &f.uplink_link};
	for (const auto &port : f.ports)
		links.push_back(&port);
	for (const DoctorLink *l : links) {
		if (!l->exists || l->xdp_prog.empty() || l->xdp_attach != "generic")
			continue;
		const std::string dev = p(l->name);
		std::string why;
		if (l->xdp_native.value_or(false))
			why = "its driver runs XDP natively, generic XDP is the slow path";
		else if (l->wireless)
			why = "a WiFi device has no native XDP: every frame is copied into an skb "
			      "twice";
		else if (l == &f.bridge_link || l == &f.uplink_link)
			why = "generic XDP on the " +
			      std::string(l == &f.bridge_link ? "bridge" : "uplink") +
			      " runs before kvmxdp's TC hook and has dropped TCP where TC worked";
		else
			continue;
		out.push_back(finding(
			"xdp", Severity::Warning,
			"generic XDP program '" + p(l->xdp_prog) + "' on " + dev + ": " + why,
			"ip link set dev " + q(l->name) + " xdpgeneric off",
			std::string(l->xdp_native.value_or(false) ? "attach it native (xdpdrv); " :
								    "") +
				"the tool that attached it may put it back"));
	}
	if (f.status.is_object())
		for (const auto &d : f.status.value("devices", json::array())) {
			const std::string why = d.value("why", "");
			if (why.rfind("XDP wanted", 0) == 0)
				out.push_back(finding("xdp", Severity::Warning,
						      p(d.value("ifname", "")) + ": " + p(why),
						      restart_command(f), restart_note(f)));
			else if (why.rfind("another XDP program", 0) == 0)
				out.push_back(finding("xdp", Severity::Note,
						      p(d.value("ifname", "")) + ": " + p(why)));
		}
	return out;
}

// ---------------------------------------------------------------- kernel

std::vector<DoctorFinding> check_kernel(const DoctorFacts &f)
{
	std::vector<DoctorFinding> out;
	if (!f.kernel.is_object())
		return out;
	std::vector<std::string> missing;
	for (const auto &m : f.kernel.value("missing", json::array()))
		if (m.is_string())
			missing.push_back(m.get<std::string>());
	if (!missing.empty())
		out.push_back(
			finding("kernel", Severity::Error,
				"kernel " + p(f.kernel.value("release", "")) +
					" lacks what the datapath needs: " + join(missing, ", "),
				"", "boot a newer kernel (Debian 12's 6.1 or later)"));
	for (const auto &d : f.kernel.value("degraded", json::array()))
		if (d.is_string()) {
			const std::string s = d.get<std::string>();
			const bool old = s.find("older than") != std::string::npos;
			out.push_back(finding("kernel", old ? Severity::Warning : Severity::Note,
					      p(s), "", old ? "boot Linux 5.15 or later" : ""));
		}
	return out;
}

// ---------------------------------------------------------------- all

std::vector<DoctorFinding> run_doctor_checks(const DoctorFacts &f)
{
	using Check = std::vector<DoctorFinding> (*)(const DoctorFacts &);
	static const Check kChecks[] = {check_datapath,	    check_uplink,   check_gateway,
					check_br_netfilter, check_firewall, check_rp_filter,
					check_mtu,	    check_tables,   check_mappings,
					check_xdp,	    check_kernel};
	static_assert(std::size(kChecks) == std::size(kDoctorChecks), "one function per check");
	std::vector<DoctorFinding> out;
	for (Check c : kChecks)
		for (auto &x : c(f))
			out.push_back(std::move(x));
	return out;
}

int doctor_exit_code(const std::vector<DoctorFinding> &findings)
{
	int code = 0;
	for (const auto &x : findings)
		if (x.severity == Severity::Error)
			return kDoctorExitError;
		else if (x.severity == Severity::Warning)
			code = kDoctorExitWarning;
	return code;
}

json doctor_json(const std::string &bridge, const std::vector<DoctorFinding> &findings)
{
	json checks = json::object();
	for (const char *c : kDoctorChecks)
		checks[c] = "ok";
	json list = json::array();
	int errors = 0, warnings = 0;
	for (const auto &x : findings) {
		std::string &cur = checks[x.check].get_ref<std::string &>();
		const std::string sev = severity_name(x.severity);
		// The check's worst finding.
		if (cur == "ok" || (cur == "note" && sev != "note") || sev == "error")
			cur = sev;
		errors += x.severity == Severity::Error;
		warnings += x.severity == Severity::Warning;
		list.push_back({{"check", x.check},
				{"severity", sev},
				{"what", x.what},
				{"command", x.command.empty() ? json(nullptr) : json(x.command)},
				{"note", x.note.empty() ? json(nullptr) : json(x.note)}});
	}
	return {{"bridge", bridge},	{"checks", checks},
		{"findings", list},	{"errors", errors},
		{"warnings", warnings}, {"exit_code", doctor_exit_code(findings)}};
}

std::string format_doctor(const json &report)
{
	std::ostringstream out;
	out << "kvmxdp doctor: bridge " << p(report.value("bridge", "")) << "\n";
	for (const char *c : kDoctorChecks) {
		const std::string state = report["checks"].value(c, "ok");
		if (state == "ok")
			out << "ok       " << c << "\n";
		for (const auto &x : report["findings"]) {
			if (x["check"] != c)
				continue;
			std::string sev = x["severity"].get<std::string>();
			sev.resize(8, ' ');
			out << sev << " " << c << ": " << x["what"].get<std::string>() << "\n";
			if (x["command"].is_string())
				out << "         run: " << x["command"].get<std::string>() << "\n";
			if (x["note"].is_string())
				out << "         note: " << x["note"].get<std::string>() << "\n";
		}
	}
	const int e = report.value("errors", 0), w = report.value("warnings", 0);
	if (!e && !w)
		out << "nothing wrong found\n";
	else
		out << e << " error(s), " << w << " warning(s)\n";
	return out.str();
}

} // namespace kvmxdp
