// SPDX-License-Identifier: GPL-2.0
#include "model/iptables_import.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "base/error.hpp"
#include "base/text.hpp"
#include "model/options.hpp"

namespace kvmxdp {

using nlohmann::json;

// ---------------------------------------------------------------- reading

namespace {

bool is_name_char(char c, bool first)
{
	return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
	       (!first && std::isdigit(static_cast<unsigned char>(c)));
}

// $NAME, ${NAME} or $1 at line[i] ('$'); appends the value (or the text as
// written when vars lacks it) and returns the index of its last character.
size_t expand_var(const std::string &line, size_t i, const std::map<std::string, std::string> &vars,
		  std::string &cur, std::string *unset)
{
	std::string name;
	size_t end = i;
	if (i + 1 < line.size() && line[i + 1] == '{') {
		auto close = line.find('}', i + 2);
		if (close == std::string::npos) {
			cur += '$';
			return i;
		}
		name = line.substr(i + 2, close - i - 2);
		end = close;
	} else if (i + 1 < line.size() && std::isdigit(static_cast<unsigned char>(line[i + 1]))) {
		name = line.substr(i + 1, 1);
		end = i + 1;
	} else {
		size_t j = i + 1;
		while (j < line.size() && is_name_char(line[j], j == i + 1))
			j++;
		if (j == i + 1) {
			cur += '$';
			return i;
		}
		name = line.substr(i + 1, j - i - 1);
		end = j - 1;
	}
	auto it = vars.find(name);
	if (it != vars.end()) {
		if (cur.size() + it->second.size() > kShellWordMax)
			throw Error("$" + printable(name) + " makes a word longer than " +
				    std::to_string(kShellWordMax) + " bytes");
		cur += it->second;
	} else {
		cur += line.substr(i, end - i + 1);
		if (unset && unset->empty())
			*unset = "$" + name;
	}
	return end;
}

std::string trim(const std::string &s)
{
	auto b = s.find_first_not_of(" \t\r\n");
	if (b == std::string::npos)
		return "";
	auto e = s.find_last_not_of(" \t\r\n");
	return s.substr(b, e - b + 1);
}

std::string basename_of(const std::string &p)
{
	auto s = p.rfind('/');
	return s == std::string::npos ? p : p.substr(s + 1);
}

bool is_assignment(const std::string &w)
{
	auto eq = w.find('=');
	if (eq == std::string::npos || eq == 0)
		return false;
	for (size_t i = 0; i < eq; i++)
		if (!is_name_char(w[i], i == 0))
			return false;
	return true;
}

bool all_digits(const std::string &s)
{
	return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
		return std::isdigit(static_cast<unsigned char>(c));
	});
}

const std::set<std::string> kBuiltinChains = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT",
					      "POSTROUTING"};

// iptables' own command line (after the program name): the rule, or
// nothing for a command that is not one (-L, -F, -X, -Z, -C, -S).
std::optional<IptRule> parse_command(const std::vector<std::string> &w, size_t from,
				     std::string table)
{
	IptRule r;
	bool have_op = false;
	for (size_t i = from; i < w.size(); i++) {
		const std::string &a = w[i];
		auto next = [&]() -> std::string { return i + 1 < w.size() ? w[++i] : ""; };
		if (have_op) {
			r.args.push_back(a);
			continue;
		}
		if (a == "-t" || a == "--table") {
			table = next();
		} else if (a.size() > 2 && a.rfind("-t", 0) == 0 && a[2] != '-') {
			table = a.substr(2);
		} else if (a == "-w" || a == "--wait" || a == "-W" || a == "--wait-interval") {
			if (i + 1 < w.size() && all_digits(w[i + 1]))
				i++;
		} else if (a == "-A" || a == "--append" || a == "-I" || a == "--insert" ||
			   a == "-D" || a == "--delete" || a == "-N" || a == "--new-chain" ||
			   a == "-P" || a == "--policy") {
			r.op = a == "--append"	  ? 'A' :
			       a == "--insert"	  ? 'I' :
			       a == "--delete"	  ? 'D' :
			       a == "--new-chain" ? 'N' :
			       a == "--policy"	  ? 'P' :
						    a[1];
			r.chain = next();
			// -I CHAIN NUM, -D CHAIN NUM: a position, not a match.
			if ((r.op == 'I' || r.op == 'D') && i + 1 < w.size() &&
			    all_digits(w[i + 1]))
				i++;
			have_op = true;
		} else if (a == "-F" || a == "--flush" || a == "-X" || a == "--delete-chain" ||
			   a == "-Z" || a == "--zero" || a == "-L" || a == "--list" || a == "-S" ||
			   a == "--list-rules" || a == "-C" || a == "--check" || a == "-E" ||
			   a == "--rename-chain" || a == "-h" || a == "--help" || a == "-V" ||
			   a == "--version") {
			return std::nullopt;
		} else if (a == "-v" || a == "--verbose" || a == "-n" || a == "--numeric" ||
			   a == "-x" || a == "--exact" || a == "--line-numbers") {
			// Display options.
		} else {
			// Options before the command (-p tcp -A ...) are
			// legal; keep them with the rule.
			r.args.push_back(a);
		}
	}
	if (!have_op || r.chain.empty())
		return std::nullopt;
	r.table = table;
	return r;
}

// Which table an `iptables -S` listing came from: -S prints no table, but
// every listing starts with the policies of the table's built-in chains.
std::string table_of_policies(const std::set<std::string> &p)
{
	if (p.count("FORWARD") && p.count("PREROUTING"))
		return "mangle";
	if (p.count("FORWARD"))
		return "filter";
	if (p.count("POSTROUTING"))
		return "nat";
	if (p.count("PREROUTING"))
		return "raw";
	if (p.count("INPUT") || p.count("OUTPUT"))
		return "filter";
	return "";
}

// A rule listed without its table and without policies before it: NAT
// targets and chains say nat, everything else is iptables' default table.
std::string table_of_rule(const IptRule &r)
{
	if (r.chain == "PREROUTING" || r.chain == "POSTROUTING")
		return "nat";
	for (size_t i = 0; i + 1 < r.args.size(); i++)
		if (r.args[i] == "-j" || r.args[i] == "--jump") {
			const std::string &t = r.args[i + 1];
			if (t == "DNAT" || t == "SNAT" || t == "MASQUERADE" || t == "REDIRECT" ||
			    t == "NETMAP")
				return "nat";
		}
	return "filter";
}

// The libvirt qemu hook's `if [ "${1}" = "NAME" ]` (or `"$1" == NAME`): the
// guest the block is about.
std::string hook_guest(const std::vector<std::string> &w)
{
	for (size_t i = 0; i + 2 < w.size(); i++)
		if ((w[i] == "${1}" || w[i] == "$1") && (w[i + 1] == "=" || w[i + 1] == "=="))
			return w[i + 2];
	return "";
}

} // namespace

std::vector<std::string> shell_words(const std::string &line,
				     const std::map<std::string, std::string> &vars,
				     std::string *unset)
{
	std::vector<std::string> words;
	std::string cur;
	bool have = false, single = false, dbl = false;
	size_t total = 0;
	auto flush = [&] {
		if (have) {
			total += cur.size();
			if (total > kShellExpansionMax)
				throw Error("the line expands to more than " +
					    std::to_string(kShellExpansionMax) + " bytes");
			words.push_back(cur);
		}
		cur.clear();
		have = false;
	};
	for (size_t i = 0; i < line.size(); i++) {
		const char c = line[i];
		if (single) {
			if (c == '\'')
				single = false;
			else
				cur += c;
			continue;
		}
		if (dbl) {
			if (c == '"')
				dbl = false;
			else if (c == '\\' && i + 1 < line.size() &&
				 std::string("$`\"\\").find(line[i + 1]) != std::string::npos)
				cur += line[++i];
			else if (c == '$')
				i = expand_var(line, i, vars, cur, unset);
			else
				cur += c;
			continue;
		}
		if (std::isspace(static_cast<unsigned char>(c))) {
			flush();
		} else if (c == '#' && !have) {
			break;
		} else if (c == '\'') {
			single = have = true;
		} else if (c == '"') {
			dbl = have = true;
		} else if (c == '\\') {
			if (i + 1 < line.size())
				cur += line[++i];
			have = true;
		} else if (c == ';') {
			flush();
			words.push_back(";");
		} else if (c == '&' || c == '|') {
			flush();
			if (i + 1 < line.size() && line[i + 1] == c) {
				words.push_back(std::string(2, c));
				i++;
			} else {
				words.push_back(std::string(1, c));
			}
		} else if (c == '$') {
			i = expand_var(line, i, vars, cur, unset);
			have = true;
		} else {
			cur += c;
			have = true;
		}
	}
	flush();
	return words;
}

IptInput read_iptables(const std::string &text)
{
	IptInput in;
	// Logical lines: a backslash at the end joins the next line.
	std::vector<std::pair<int, std::string>> lines;
	{
		std::istringstream is(text);
		std::string l, acc;
		int n = 0, start = 0;
		while (std::getline(is, l)) {
			n++;
			if (acc.empty())
				start = n;
			if (!l.empty() && l.back() == '\r')
				l.pop_back();
			// A continued line's indentation is layout, not text.
			if (!acc.empty())
				l = trim(l);
			if (!l.empty() && l.back() == '\\') {
				acc += trim(l.substr(0, l.size() - 1)) + " ";
				continue;
			}
			acc += l;
			lines.emplace_back(start, acc);
			acc.clear();
		}
		if (!acc.empty())
			lines.emplace_back(start, acc);
	}

	std::map<std::string, std::string> vars;
	size_t var_bytes = 0;				 // their values' sizes
	std::vector<std::pair<int, std::string>> guests; // (if depth, name)
	int if_depth = 0;
	std::string table; // iptables-save's current `*table`
	// `iptables -S` listings: the rules of the current one and its
	// policies, to settle its table at its end.
	std::vector<size_t> listing;
	std::set<std::string> policies;
	bool listing_rules = false;
	auto end_listing = [&] {
		std::string t = table_of_policies(policies);
		for (size_t k : listing)
			in.rules[k].table = t.empty() ? table_of_rule(in.rules[k]) : t;
		listing.clear();
		policies.clear();
		listing_rules = false;
	};

	for (const auto &[lineno, raw] : lines) {
		std::string t = trim(raw);
		if (t.empty() || t[0] == '#')
			continue;
		if (t[0] == '*') {
			end_listing();
			table = trim(t.substr(1));
			in.recognized = true;
			continue;
		}
		if (t[0] == ':') {
			IptRule r;
			r.line = lineno;
			r.text = t;
			r.table = table;
			r.op = 'N';
			r.chain = t.substr(1, t.find_first_of(" \t") - 1);
			in.rules.push_back(r);
			in.recognized = true;
			continue;
		}
		if (t == "COMMIT") {
			table.clear();
			continue;
		}
		// iptables-save -c: "[packets:bytes] -A ...".
		if (t[0] == '[') {
			auto close = t.find(']');
			if (close != std::string::npos)
				t = trim(t.substr(close + 1));
		}
		std::string unset;
		std::vector<std::string> words;
		try {
			words = shell_words(t, vars, &unset);
		} catch (const Error &e) {
			throw Error("line " + std::to_string(lineno) + ": " + e.what());
		}
		// One command per `;`, `&&`, `||`, `|`.
		std::vector<std::vector<std::string>> cmds(1);
		for (auto &w : words) {
			if (w == ";" || w == "&&" || w == "||" || w == "|" || w == "&")
				cmds.emplace_back();
			else
				cmds.back().push_back(w);
		}
		for (auto &cmd : cmds) {
			size_t k = 0;
			while (k < cmd.size() && (cmd[k] == "then" || cmd[k] == "else" ||
						  cmd[k] == "do" || cmd[k] == "{" || cmd[k] == "}"))
				k++;
			if (k >= cmd.size())
				continue;
			const std::string &w0 = cmd[k];
			if (w0 == "if" || w0 == "elif") {
				if (w0 == "if")
					if_depth++;
				while (!guests.empty() && guests.back().first >= if_depth)
					guests.pop_back();
				std::string g = hook_guest(cmd);
				if (!g.empty())
					guests.emplace_back(if_depth, g);
				continue;
			}
			if (w0 == "fi") {
				while (!guests.empty() && guests.back().first >= if_depth)
					guests.pop_back();
				if_depth = std::max(0, if_depth - 1);
				continue;
			}
			if (w0 == "export" || w0 == "readonly" || w0 == "local" || w0 == "declare")
				k++;
			if (k < cmd.size() && is_assignment(cmd[k]) && k + 1 == cmd.size()) {
				auto eq = cmd[k].find('=');
				std::string &v = vars[cmd[k].substr(0, eq)];
				var_bytes -= v.size();
				v = cmd[k].substr(eq + 1);
				var_bytes += v.size();
				// Each word is capped, not their number: A=$B, B=$A...
				if (var_bytes > kShellExpansionMax)
					throw Error("line " + std::to_string(lineno) +
						    ": the variables hold more than " +
						    std::to_string(kShellExpansionMax) + " bytes");
				continue;
			}
			while (k < cmd.size() && (cmd[k] == "sudo" || cmd[k] == "command" ||
						  cmd[k] == "exec" || is_assignment(cmd[k])))
				k++;
			if (k >= cmd.size())
				continue;
			const std::string prog = basename_of(cmd[k]);
			std::optional<IptRule> r;
			bool listed = false;
			if (prog.rfind("ip6tables", 0) == 0 &&
			    prog.find("-save") == std::string::npos &&
			    prog.find("-restore") == std::string::npos) {
				r = parse_command(cmd, k + 1, "filter");
				if (r)
					r->ipv6 = true;
				in.recognized = true;
			} else if (prog.rfind("iptables", 0) == 0 &&
				   prog.find("-save") == std::string::npos &&
				   prog.find("-restore") == std::string::npos) {
				r = parse_command(cmd, k + 1, "filter");
				in.recognized = true;
			} else if (k == 0 && (w0 == "-A" || w0 == "-I" || w0 == "-D" ||
					      w0 == "-N" || w0 == "-P")) {
				// iptables-save (under *table) or `iptables -S`.
				r = parse_command(cmd, 0, table);
				listed = table.empty();
				in.recognized = true;
			} else {
				bool fwd = false;
				for (const auto &x : cmd)
					if (x.find("ip_forward") != std::string::npos)
						fwd = true;
				if (fwd && (prog == "sysctl" || prog == "echo"))
					in.other.push_back(
						{lineno, t,
						 "ip_forward: attach turns forwarding on for the bridge "
						 "alone (the uplink and the host's other interfaces keep "
						 "theirs)"});
				else if (prog == "ip" && cmd.size() > k + 3 &&
					 (cmd[k + 1] == "addr" || cmd[k + 1] == "address" ||
					  cmd[k + 1] == "a") &&
					 cmd[k + 2] == "add")
					in.other.push_back(
						{lineno, t,
						 "an address on the host for a 1:1 mapping: kvmxdp answers "
						 "ARP for a mapped address itself (`map add --add-address` "
						 "adds it to the uplink instead)"});
				continue;
			}
			if (!r)
				continue;
			r->line = lineno;
			r->text = t;
			r->unset = unset;
			if (!guests.empty())
				r->guest = guests.back().second;
			if (listed) {
				// A `-P` after rules starts the next listing.
				if (r->op == 'P' && listing_rules)
					end_listing();
				if (r->op == 'P')
					policies.insert(r->chain);
				else
					listing_rules = true;
				listing.push_back(in.rules.size());
			}
			in.rules.push_back(*r);
		}
	}
	end_listing();
	return in;
}

// ---------------------------------------------------------------- translating

namespace {

struct Val {
	bool set = false;
	bool neg = false;
	std::string v;
};

// A rule's matches and target, as iptables reads its options.
struct Spec {
	Val src, dst, in, out, proto, dport, sport, ctstate;
	std::vector<std::string> mods;	// -m modules kvmxdp has no equivalent of
	std::vector<std::string> other; // options it does not know, as written
	std::string target;
	std::map<std::string, std::vector<std::string>> topt; // target options
};

Spec parse_spec(const std::vector<std::string> &a)
{
	static const std::map<std::string, std::string> names = {
		{"-s", "src"},
		{"--source", "src"},
		{"--src", "src"},
		{"-d", "dst"},
		{"--destination", "dst"},
		{"--dst", "dst"},
		{"-i", "in"},
		{"--in-interface", "in"},
		{"-o", "out"},
		{"--out-interface", "out"},
		{"-p", "proto"},
		{"--protocol", "proto"},
		{"--dport", "dport"},
		{"--destination-port", "dport"},
		{"--sport", "sport"},
		{"--source-port", "sport"},
		{"--ctstate", "ctstate"},
		{"--state", "ctstate"},
	};
	// Target options, with a value or (second set) without.
	static const std::set<std::string> topts_val = {
		"--to-destination", "--to-source",   "--to",	       "--to-ports", "--to-port",
		"--reject-with",    "--log-prefix",  "--log-level",    "--set-mss",  "--set-mark",
		"--set-xmark",	    "--nflog-group", "--nflog-prefix", "--queue-num"};
	static const std::set<std::string> topts_flag = {
		"--random",	     "--random-fully",	    "--persistent",
		"--checksum-fill",   "--clamp-mss-to-pmtu", "--log-uid",
		"--log-tcp-options", "--log-ip-options"};
	Spec s;
	bool neg = false;
	for (size_t i = 0; i < a.size(); i++) {
		const std::string &o = a[i];
		auto value = [&]() -> std::string {
			if (i + 1 < a.size() && a[i + 1] == "!") { // old `-d ! X`
				neg = true;
				i++;
			}
			return i + 1 < a.size() ? a[++i] : "";
		};
		if (o == "!") {
			neg = true;
			continue;
		}
		auto n = names.find(o);
		if (n != names.end()) {
			Val v;
			v.neg = neg;
			v.v = value();
			v.neg = v.neg || neg;
			v.set = true;
			Val *dst = n->second == "src"	? &s.src :
				   n->second == "dst"	? &s.dst :
				   n->second == "in"	? &s.in :
				   n->second == "out"	? &s.out :
				   n->second == "proto" ? &s.proto :
				   n->second == "dport" ? &s.dport :
				   n->second == "sport" ? &s.sport :
							  &s.ctstate;
			*dst = v;
		} else if (o == "-m" || o == "--match") {
			std::string m = value();
			if (m != "tcp" && m != "udp" && m != "icmp" && m != "conntrack" &&
			    m != "state" && m != "comment")
				s.mods.push_back(m);
		} else if (o == "--comment") {
			value();
		} else if (o == "-j" || o == "--jump" || o == "-g" || o == "--goto") {
			s.target = value();
		} else if (topts_val.count(o)) {
			s.topt[o].push_back(value());
		} else if (topts_flag.count(o)) {
			s.topt[o].push_back("");
		} else if (o == "-c" || o == "--set-counters") {
			value();
			value();
		} else {
			std::string w = neg ? "! " + o : o;
			if (i + 1 < a.size() && a[i + 1].rfind("-", 0) != 0)
				w += " " + a[++i];
			s.other.push_back(w);
		}
		neg = false;
	}
	return s;
}

// Every --to-destination (or --to-source) of a rule, with iptables'
// abbreviation --to.
std::vector<std::string> target_addrs(const Spec &s, const std::string &opt)
{
	std::vector<std::string> v;
	for (const auto &o : {opt, std::string("--to")})
		if (auto it = s.topt.find(o); it != s.topt.end())
			v.insert(v.end(), it->second.begin(), it->second.end());
	return v;
}

// "A.B.C.D" or "A.B.C.D/32": one address; anything else is not a host.
std::optional<uint32_t> host_of(const std::string &v)
{
	auto slash = v.find('/');
	if (slash != std::string::npos && v.substr(slash) != "/32")
		return std::nullopt;
	try {
		return parse_ipv4(v.substr(0, slash));
	} catch (const Error &) {
		return std::nullopt;
	}
}

std::optional<Ipv4Net> net_of(const std::string &v)
{
	try {
		return parse_cidr(v);
	} catch (const Error &) {
		return std::nullopt;
	}
}

std::string option_list(const Spec &s)
{
	std::string out;
	for (const auto &m : s.mods)
		out += (out.empty() ? "" : ", ") + std::string("-m ") + m;
	for (const auto &o : s.other)
		out += (out.empty() ? "" : ", ") + o;
	return out;
}

// "N" or "A:B" (iptables' spelling of a port range) as `map add` spells it.
std::string ports_arg(const std::string &v)
{
	std::string p = v;
	std::replace(p.begin(), p.end(), ':', '-');
	return p;
}

bool is_nat_target(const std::string &t)
{
	return t == "DNAT" || t == "SNAT" || t == "MASQUERADE";
}

struct Candidate {
	Mapping m;
	RuleRef ref;
	std::string guest;
	std::vector<RuleRef> extra; // the SNAT half of a 1:1 pair, duplicates
	bool conflicted = false;
	bool output = false; // nat OUTPUT: the host's own connections
};

struct Snat {
	uint32_t guest, ext;
	RuleRef ref;
	bool used = false;
};

struct Masq {
	Ipv4Net subnet;
	std::string uplink;
	bool uplink_set = false;
	std::optional<PortRange> nat_ports;
	std::vector<RuleRef> from;
	bool conflicted = false;
};

} // namespace

std::string ImportedAttach::command() const
{
	std::string c = "kvmxdp attach --bridge " +
			(bridge.empty() ? "BRIDGE" : shell_word(bridge)) + " --uplink " +
			(uplink.empty() ? "auto" : shell_word(uplink)) + " --subnet " +
			subnet.str();
	if (nat_ports)
		c += " --nat-ports " + nat_ports->str();
	if (clamp_mss)
		c += " --clamp-mss " + std::to_string(*clamp_mss);
	return c;
}

std::string ImportedMapping::command() const
{
	std::string c = "kvmxdp map add " + m.ext_str() + " " + m.guest_str();
	if (!m.one_to_one())
		c += " --proto " + m.proto_str();
	if (!bridge.empty())
		c += " --bridge " + shell_word(bridge);
	return c;
}

ImportResult translate_iptables(const IptInput &in, const ImportContext &ctx)
{
	ImportResult res;
	auto ref = [](const IptRule &r) { return RuleRef{r.line, r.text}; };
	auto builtin = [&](const IptRule &r, const std::string &why) {
		res.builtin.push_back({{ref(r)}, why});
	};
	auto unsupported = [&](const IptRule &r, const std::string &why) {
		res.unsupported.push_back({{ref(r)}, why});
	};

	// User chains per table, and the built-in chain each hangs off
	// (libvirt's LIBVIRT_PRT from POSTROUTING, LIBVIRT_FWO from FORWARD):
	// their rules act as if they stood in that chain.
	std::map<std::pair<std::string, std::string>, std::string> base;
	std::set<std::pair<std::string, std::string>> chains;
	for (const auto &r : in.rules)
		if (r.op == 'N' || r.op == 'A' || r.op == 'I')
			chains.insert({r.table, r.chain});
	std::vector<Spec> specs;
	for (const auto &r : in.rules)
		specs.push_back(parse_spec(r.args));
	auto is_chain = [&](const std::string &table, const std::string &t) {
		return !t.empty() && !kBuiltinChains.count(t) && chains.count({table, t});
	};
	for (bool changed = true; changed;) {
		changed = false;
		for (size_t k = 0; k < in.rules.size(); k++) {
			const auto &r = in.rules[k];
			const std::string &t = specs[k].target;
			if (!is_chain(r.table, t) || base.count({r.table, t}))
				continue;
			std::string b = kBuiltinChains.count(r.chain)  ? r.chain :
					base.count({r.table, r.chain}) ? base[{r.table, r.chain}] :
									 "";
			if (!b.empty()) {
				base[{r.table, t}] = b;
				changed = true;
			}
		}
	}

	// The bridge of each subnet, from the forward rules that name both
	// (`-s 192.168.122.0/24 -i virbr0`, libvirt's LIBVIRT_FWO/FWI).
	std::map<uint32_t, std::string> bridge_of; // subnet address -> bridge
	for (size_t k = 0; k < in.rules.size(); k++) {
		const Spec &s = specs[k];
		if (in.rules[k].table != "filter")
			continue;
		auto valid = [](const std::string &n) {
			try {
				check_ifname(n);
				return true;
			} catch (const Error &) {
				return false;
			}
		};
		if (s.in.set && !s.in.neg && s.src.set && !s.src.neg && valid(s.in.v))
			if (auto n = net_of(s.src.v))
				bridge_of.emplace(n->addr, s.in.v);
		if (s.out.set && !s.out.neg && s.dst.set && !s.dst.neg && valid(s.out.v))
			if (auto n = net_of(s.dst.v))
				bridge_of.emplace(n->addr, s.out.v);
	}

	std::vector<Masq> masqs;
	std::vector<Candidate> cands;
	std::vector<Snat> snats;
	std::vector<std::pair<IptRule, uint16_t>> mss;

	for (size_t k = 0; k < in.rules.size(); k++) {
		const IptRule &r = in.rules[k];
		const Spec &s = specs[k];
		if (r.op == 'N' || r.op == 'P')
			continue;
		res.rules++;
		if (r.ipv6) {
			unsupported(r, "IPv6 (ip6tables): kvmxdp translates IPv4 only");
			continue;
		}
		if (!r.unset.empty()) {
			unsupported(
				r, "uses " + r.unset +
					   ", which the script does not set before this line (a "
					   "hook argument or a loop variable): write the value in");
			continue;
		}
		if (r.op == 'D') {
			builtin(r,
				"deletes a rule (the hook's teardown): a kvmxdp mapping stays in "
				"its config until `kvmxdp map del`");
			continue;
		}
		if (is_chain(r.table, s.target))
			continue; // a jump into a user chain: its rules are read in place
		const std::string chain = kBuiltinChains.count(r.chain) ? r.chain :
					  base.count({r.table, r.chain}) ?
									  base[{r.table, r.chain}] :
									  "";
		if (chain.empty()) {
			unsupported(r,
				    "chain " + r.chain +
					    " is not reached from a built-in chain: the rule never "
					    "runs");
			continue;
		}
		if (s.target == "LOG" || s.target == "NFLOG" || s.target == "ULOG") {
			unsupported(r,
				    "-j " + s.target +
					    ": kvmxdp does not log packets (its verdict counters: "
					    "`kvmxdp status`)");
			continue;
		}
		if (s.target.empty()) {
			unsupported(r, "no target (-j): a counting rule, kvmxdp counts per verdict "
				       "(`kvmxdp status`)");
			continue;
		}
		const std::string extra = option_list(s);

		if (r.table == "filter") {
			if (chain == "INPUT" || chain == "OUTPUT") {
				builtin(r, "the host's own traffic (filter " + chain +
						   "): kvmxdp leaves it to the host's firewall");
				continue;
			}
			// FORWARD: under kvmxdp guest traffic never reaches it.
			if (std::find(s.mods.begin(), s.mods.end(), "mac") != s.mods.end()) {
				unsupported(
					r,
					"-m mac: kvmxdp does not filter forwarded traffic by MAC "
					"(it binds each guest address to the MAC that uses it)");
				continue;
			}
			if (!extra.empty()) {
				unsupported(
					r,
					"matches on " + extra +
						": kvmxdp forwards guest traffic past netfilter, "
						"so this filter would no longer apply");
				continue;
			}
			const bool same_if = s.in.set && s.out.set && s.in.v == s.out.v &&
					     !s.in.neg && !s.out.neg;
			std::string st = s.ctstate.v;
			const bool replies = s.ctstate.set && !s.ctstate.neg &&
					     st.find("NEW") == std::string::npos &&
					     (st.find("ESTABLISHED") != std::string::npos ||
					      st.find("RELATED") != std::string::npos);
			if (s.target == "ACCEPT") {
				if (same_if)
					builtin(r,
						"guest to guest: bridged, kvmxdp never routes it");
				else if (replies)
					builtin(r, "replies to the guests' connections: kvmxdp's "
						   "conntrack lets them in");
				else if (s.dst.set && !s.dst.neg && host_of(s.dst.v))
					builtin(r,
						"inbound to one guest: kvmxdp lets it in through a "
						"mapping only (the DNAT's `map add`)");
				else if ((s.src.set && !s.src.neg && !s.dst.set) ||
					 (s.in.set && !s.in.neg && !s.out.set && !s.dst.set))
					builtin(r,
						"guests open connections out: kvmxdp's own stateful "
						"policy");
				else
					unsupported(
						r,
						"accepts forwarded traffic kvmxdp drops: inbound "
						"to the guest subnet is let in through mappings "
						"only");
			} else if (s.target == "REJECT" || s.target == "DROP") {
				const bool from_guests = s.in.set && !s.in.neg && !s.out.set;
				const bool to_guests = s.out.set && !s.out.neg && !s.in.set;
				if (s.src.set || s.dst.set || s.proto.set || s.ctstate.set)
					unsupported(
						r,
						"-j " + s.target +
							" of some guest traffic: kvmxdp does not "
							"filter guest traffic by address or port (keep "
							"a firewall inside the guest)");
				else if (from_guests)
					builtin(r,
						"the rest from the guests is dropped: kvmxdp drops "
						"guest sources outside the subnet (DROP_SPOOFED)");
				else if (to_guests)
					builtin(r,
						"the rest towards the guests is dropped: kvmxdp lets "
						"in replies and mapped destinations only (the rest "
						"to the uplink address is the host's, PASS_HOST; "
						"DROP_TO_SUBNET)");
				else
					builtin(r,
						"everything else is dropped: kvmxdp lets in replies "
						"and mapped destinations only (the rest to the "
						"uplink address is the host's, PASS_HOST; "
						"DROP_TO_SUBNET) and drops guest sources outside "
						"the subnet (DROP_SPOOFED)");
			} else {
				unsupported(r, "-j " + s.target + " in filter " + chain +
						       ": kvmxdp has no equivalent");
			}
			continue;
		}

		if (r.table == "mangle" && s.target == "CHECKSUM") {
			builtin(r,
				"-j CHECKSUM: fills the checksums of the host's own DHCP replies "
				"to guests (libvirt's rule); kvmxdp leaves them alone and writes "
				"correct checksums in what it translates");
			continue;
		}
		if (r.table == "mangle" && s.target == "TCPMSS") {
			if (s.topt.count("--set-mss")) {
				try {
					uint16_t v = check_clamp_mss(
						parse_uint(s.topt.at("--set-mss").front(), 65535,
							   "MSS"),
						"--set-mss");
					mss.emplace_back(r, v);
				} catch (const Error &e) {
					unsupported(r, e.what());
				}
			} else {
				unsupported(r,
					    "--clamp-mss-to-pmtu: kvmxdp clamps to a fixed value, "
					    "`attach --clamp-mss N` (the path MTU - 40)");
			}
			continue;
		}
		if (r.table != "nat") {
			unsupported(r, "-t " + r.table + " -j " + s.target +
					       ": kvmxdp has no equivalent");
			continue;
		}

		// ---- nat
		if (s.target == "RETURN" || s.target == "ACCEPT") {
			auto d = s.dst.set && !s.dst.neg ? host_of(s.dst.v) : std::nullopt;
			auto dn = s.dst.set && !s.dst.neg ? net_of(s.dst.v) : std::nullopt;
			const bool mcast = dn && dn->addr == 0xe0000000 && dn->prefix >= 4;
			if (chain == "POSTROUTING" && ((d && *d == 0xffffffff) || mcast))
				builtin(r, "no NAT for multicast and broadcast: kvmxdp never "
					   "translates them");
			else
				unsupported(r,
					    "-j " + s.target + " in nat " + chain +
						    " exempts some traffic from NAT: kvmxdp has no "
						    "per-destination exemption");
			continue;
		}
		if (!is_nat_target(s.target)) {
			unsupported(
				r,
				"-j " + s.target +
					(s.target == "REDIRECT" ?
						 ": to one of the host's own ports, not a guest's" :
						 ": kvmxdp has no equivalent"));
			continue;
		}
		if (!extra.empty()) {
			unsupported(r, "-j " + s.target + " only for " + extra +
					       ": kvmxdp's NAT has no such condition");
			continue;
		}
		if (s.target == "MASQUERADE") {
			if (chain != "POSTROUTING") {
				unsupported(r, "MASQUERADE outside POSTROUTING");
				continue;
			}
			auto subnet = s.src.set && !s.src.neg ? net_of(s.src.v) : std::nullopt;
			if (!subnet) {
				unsupported(
					r,
					s.src.set ?
						"MASQUERADE of " +
							std::string(s.src.neg ? "! " : "") +
							s.src.v + ", not a guest subnet" :
						"MASQUERADE without a bridge subnet (-s): kvmxdp "
						"masquerades one bridge's guest subnet");
				continue;
			}
			if (s.dst.set && !(s.dst.neg && net_of(s.dst.v) == subnet)) {
				unsupported(
					r,
					"MASQUERADE only towards " +
						std::string(s.dst.neg ? "! " : "") + s.dst.v +
						": kvmxdp masquerades everything that leaves the "
						"guest subnet");
				continue;
			}
			const std::string p = s.proto.v;
			if (s.proto.neg || (s.proto.set && p != "tcp" && p != "udp" &&
					    p != "icmp" && p != "all")) {
				unsupported(r, "MASQUERADE of -p " + p +
						       " only: kvmxdp masquerades every protocol");
				continue;
			}
			if (s.sport.set || s.dport.set) {
				unsupported(r, "MASQUERADE of some ports only");
				continue;
			}
			if (s.out.neg || (s.out.set && s.out.v.back() == '+')) {
				unsupported(
					r,
					"-o " + std::string(s.out.neg ? "! " : "") + s.out.v +
						": kvmxdp masquerades out of one uplink (a name, or "
						"`--uplink auto`: the default route's)");
				continue;
			}
			if (s.out.set) {
				try {
					check_ifname(s.out.v);
				} catch (const Error &e) {
					unsupported(r, e.what());
					continue;
				}
			}
			auto it = std::find_if(masqs.begin(), masqs.end(),
					       [&](const Masq &m) { return m.subnet == *subnet; });
			if (it == masqs.end()) {
				masqs.push_back({});
				it = masqs.end() - 1;
				it->subnet = *subnet;
			}
			Masq &mq = *it;
			if (s.out.set) {
				if (mq.uplink_set && mq.uplink != s.out.v) {
					res.conflicts.push_back(
						{{mq.from.front(), ref(r)},
						 "masquerade " + subnet->str() + " out of " +
							 mq.uplink + " and out of " + s.out.v +
							 ": kvmxdp has one uplink per bridge"});
					mq.conflicted = true;
				}
				mq.uplink = s.out.v;
				mq.uplink_set = true;
			}
			if (s.topt.count("--to-ports")) {
				const std::string v = ports_arg(s.topt.at("--to-ports").front());
				try {
					PortRange pr = v.find('-') == std::string::npos ?
							       parse_port_range(v + "-" + v) :
							       parse_port_range(v);
					try {
						check_nat_range(pr, ctx.ephemeral);
						if (mq.nat_ports && !(*mq.nat_ports == pr))
							res.conflicts.push_back(
								{{mq.from.front(), ref(r)},
								 "two --to-ports ranges for " +
									 subnet->str() + ": " +
									 mq.nat_ports->str() +
									 " and " + pr.str() +
									 " (kvmxdp has one)"});
						else
							mq.nat_ports = pr;
					} catch (const Error &e) {
						bool said = false;
						for (const auto &n : res.notes)
							said = said || n.why.find(pr.str()) !=
									       std::string::npos;
						if (!said)
							res.notes.push_back(
								{{ref(r)},
								 "--to-ports " + pr.str() +
									 " not carried over: " +
									 e.what() +
									 "; kvmxdp's default is the ports above "
									 "it"});
					}
				} catch (const Error &e) {
					unsupported(r, e.what());
					continue;
				}
			}
			if (s.topt.count("--random") || s.topt.count("--random-fully"))
				res.notes.push_back(
					{{ref(r)},
					 "--random: kvmxdp chooses NAT ports its own way "
					 "(one port per guest endpoint, RFC 4787)"});
			mq.from.push_back(ref(r));
			continue;
		}

		if (s.target == "SNAT") {
			const auto to = target_addrs(s, "--to-source");
			if (to.size() != 1) {
				unsupported(r,
					    to.empty() ?
						    "SNAT without --to-source" :
						    "several --to-source: kvmxdp maps one address");
				continue;
			}
			if (to[0].find_first_of("-:") != std::string::npos) {
				unsupported(
					r,
					"--to-source range " + to[0] +
						": kvmxdp's 1:1 mapping is one address, ports kept");
				continue;
			}
			auto guest = s.src.set && !s.src.neg ? host_of(s.src.v) : std::nullopt;
			if (!guest) {
				unsupported(r,
					    s.src.set && net_of(s.src.v) ?
						    "SNAT of a whole subnet to one address: kvmxdp "
						    "masquerades a subnet to the uplink's address "
						    "(attach), or maps one guest 1:1" :
						    "SNAT without one guest address (-s)");
				continue;
			}
			if (s.proto.set || s.sport.set || s.dport.set ||
			    (s.dst.set && !(s.dst.neg && net_of(s.dst.v)))) {
				unsupported(r,
					    "SNAT of part of a guest's traffic (-p, ports or -d): "
					    "kvmxdp's 1:1 mapping takes all of it");
				continue;
			}
			uint32_t ext;
			try {
				ext = parse_ipv4(to[0]);
			} catch (const Error &e) {
				unsupported(r, e.what());
				continue;
			}
			snats.push_back({*guest, ext, ref(r)});
			continue;
		}

		// DNAT
		if (chain != "PREROUTING" && chain != "OUTPUT") {
			unsupported(r, "DNAT in nat " + chain);
			continue;
		}
		const auto to = target_addrs(s, "--to-destination");
		if (to.size() != 1) {
			unsupported(r, to.empty() ?
					       "DNAT without --to-destination" :
					       "DNAT to several destinations (load balancing)");
			continue;
		}
		const std::string &td = to[0];
		const auto colon = td.find(':');
		const std::string to_ip = td.substr(0, colon);
		const std::string to_port = colon == std::string::npos ? "" : td.substr(colon + 1);
		if (to_ip.find('-') != std::string::npos) {
			unsupported(r,
				    "DNAT to an address range (load balancing): kvmxdp maps to one "
				    "guest");
			continue;
		}
		if (s.src.set) {
			unsupported(r, "DNAT only for clients " +
					       std::string(s.src.neg ? "! " : "") + s.src.v +
					       ": kvmxdp's mapping serves every client");
			continue;
		}
		if (s.in.neg || s.dst.neg || s.dport.neg || s.proto.neg || s.sport.set) {
			unsupported(r,
				    "DNAT with a negated match or --sport: kvmxdp's mapping has no "
				    "such condition");
			continue;
		}
		std::optional<uint32_t> ext;
		if (s.dst.set) {
			ext = host_of(s.dst.v);
			if (!ext) {
				unsupported(r, "DNAT of a network -d " + s.dst.v +
						       ": kvmxdp maps one address at a time");
				continue;
			}
		}
		std::string ext_s = !ext || (ctx.uplink_addr && *ext == ctx.uplink_addr) ?
					    "uplink" :
					    format_ipv4(*ext);
		const std::string proto = s.proto.v;
		Candidate c;
		c.ref = ref(r);
		c.guest = r.guest;
		c.output = chain == "OUTPUT";
		try {
			if (s.dport.set) {
				if (proto != "tcp" && proto != "udp") {
					unsupported(r, "--dport without -p tcp or -p udp");
					continue;
				}
				const std::string ep = ports_arg(s.dport.v);
				std::string gp = to_port.empty() ? ep : to_port;
				// netfilter keeps the original port when it lies
				// in the --to range, so equal ranges map port by
				// port; any other range picks a free port of it.
				if (gp.find('-') != std::string::npos && gp != ep) {
					unsupported(r, "DNAT to a port range of other ports than "
						       "--dport's (netfilter picks any free one of "
						       "them: load balancing); kvmxdp maps port by "
						       "port");
					continue;
				}
				if (ep.find('-') != std::string::npos && gp != ep) {
					unsupported(r,
						    "DNAT of the ports " + ep + " to one port " +
							    gp +
							    ": kvmxdp maps port by port, ranges of "
							    "the same length");
					continue;
				}
				c.m = parse_mapping(ext_s + ":" + ep, to_ip + ":" + gp, proto);
			} else {
				if (!to_port.empty()) {
					unsupported(r, "DNAT of every port to port " + to_port +
							       ": a forward names its --dport");
					continue;
				}
				if (!ext) {
					unsupported(
						r, "DNAT of everything that arrives (no -d): a 1:1 "
						   "mapping needs an address of its own (the "
						   "uplink's belongs to the host)");
					continue;
				}
				if (s.proto.set && proto != "all") {
					unsupported(
						r,
						"DNAT of -p " + proto +
							" only: kvmxdp's 1:1 "
							"mapping takes every protocol (`kvmxdp map add " +
							format_ipv4(*ext) + " " + to_ip +
							"` if that is meant)");
					continue;
				}
				c.m = parse_mapping(ext_s, to_ip, "");
			}
		} catch (const Error &e) {
			unsupported(r, e.what());
			continue;
		}
		cands.push_back(c);
	}

	// nat OUTPUT DNATs are the host's own connections: kvmxdp's cgroup
	// hooks translate those for every mapping, so one that repeats a
	// PREROUTING mapping needs nothing.
	{
		std::vector<Candidate> keep;
		for (const auto &c : cands)
			if (!c.output)
				keep.push_back(c);
		for (const auto &c : cands) {
			if (!c.output)
				continue;
			bool mirrored = std::any_of(keep.begin(), keep.end(),
						    [&](const Candidate &k) { return k.m == c.m; });
			if (mirrored)
				res.builtin.push_back(
					{{c.ref},
					 "DNAT of the host's own connections: kvmxdp translates them "
					 "for every mapping (cgroup hooks)"});
			else
				res.unsupported.push_back(
					{{c.ref},
					 "DNAT of the host's own connections only (nat "
					 "OUTPUT): kvmxdp's mappings serve the LAN too"});
		}
		cands = keep;
	}

	// Duplicates merge; rules that contradict each other are reported,
	// and none of them is imported.
	std::vector<Candidate> uniq;
	for (auto &c : cands) {
		auto same = std::find_if(uniq.begin(), uniq.end(),
					 [&](const Candidate &u) { return u.m == c.m; });
		if (same != uniq.end()) {
			same->extra.push_back(c.ref);
			res.notes.push_back(
				{{same->ref, c.ref}, "the same mapping twice: one command"});
			continue;
		}
		for (auto &u : uniq) {
			try {
				check_mapping_overlap(c.m, {u.m}, ctx.uplink_addr);
			} catch (const Error &e) {
				res.conflicts.push_back({{u.ref, c.ref}, e.what()});
				u.conflicted = c.conflicted = true;
			}
		}
		uniq.push_back(c);
	}
	// SNAT halves: the 1:1 mapping's outbound direction.
	for (auto &sn : snats) {
		bool paired = false;
		for (auto &u : uniq) {
			if (!u.m.one_to_one() || u.m.guest_addr != sn.guest)
				continue;
			if (u.m.ext_uplink || u.m.ext_addr != sn.ext) {
				res.conflicts.push_back(
					{{u.ref, sn.ref},
					 "guest " + format_ipv4(sn.guest) + " is reached at " +
						 u.m.ext_str() + " but leaves from " +
						 format_ipv4(sn.ext) +
						 ": a 1:1 mapping is one address both ways"});
				u.conflicted = true;
			} else {
				u.extra.push_back(sn.ref);
			}
			paired = true;
		}
		for (auto &o : snats)
			if (&o != &sn && o.guest == sn.guest && o.ext != sn.ext && !o.used) {
				res.conflicts.push_back({{sn.ref, o.ref},
							 "guest " + format_ipv4(sn.guest) +
								 " leaves from two addresses"});
				sn.used = true;
				paired = true;
			}
		if (!paired)
			res.unsupported.push_back(
				{{sn.ref},
				 "SNAT of guest " + format_ipv4(sn.guest) + " to " +
					 format_ipv4(sn.ext) +
					 " without a DNAT back: kvmxdp has no outbound-only "
					 "address (`kvmxdp map add " +
					 format_ipv4(sn.ext) + " " + format_ipv4(sn.guest) +
					 "` also lets inbound connections in)"});
	}

	// The instances: one attach per masqueraded subnet.
	for (auto &mq : masqs) {
		ImportedAttach a;
		a.subnet = mq.subnet;
		a.uplink = mq.uplink;
		a.nat_ports = mq.nat_ports;
		a.from = mq.from;
		auto b = bridge_of.find(mq.subnet.addr);
		a.bridge = b != bridge_of.end() ? b->second : masqs.size() == 1 ? ctx.bridge : "";
		if (mq.conflicted)
			continue;
		if (!mq.uplink_set)
			res.notes.push_back(
				{mq.from,
				 "MASQUERADE without -o masquerades out of every interface; "
				 "kvmxdp masquerades out of the uplink, `--uplink auto` is the "
				 "default route's device"});
		if (a.bridge.empty())
			res.notes.push_back(
				{mq.from, "no rule names the bridge of " + mq.subnet.str() +
						  ": put yours for BRIDGE (or `import --bridge`)"});
		res.attach.push_back(a);
	}
	for (const auto &[r, v] : mss) {
		if (res.attach.size() == 1) {
			res.attach[0].clamp_mss = v;
			res.attach[0].from.push_back(ref(r));
		} else {
			res.unsupported.push_back(
				{{ref(r)},
				 "TCPMSS --set-mss " + std::to_string(v) +
					 " without one masqueraded subnet to attach it to"});
		}
	}

	// Each mapping against the instance it lands on, by `map add`'s own
	// check where the rules say enough (the guest in the subnet, the ports
	// outside the NAT range).
	const ImportedAttach *only = res.attach.size() == 1 ? &res.attach[0] : nullptr;
	for (auto &u : uniq) {
		if (u.conflicted)
			continue;
		ImportedMapping im;
		im.m = u.m;
		im.guest = u.guest;
		im.from.push_back(u.ref);
		im.from.insert(im.from.end(), u.extra.begin(), u.extra.end());
		const ImportedAttach *a = only;
		for (const auto &x : res.attach)
			if (x.subnet.contains(u.m.guest_addr))
				a = &x;
		if (a) {
			MappingContext mc;
			mc.subnet = a->subnet;
			mc.uplink_addr = ctx.uplink_addr;
			mc.force = true; // the uplink's network is the host's business
			// The default pool makes room for forwards (their static
			// binding holds the port): only an explicit range guards
			// (Instance::nat_guard).
			mc.nat_ports = a->nat_ports ? *a->nat_ports : PortRange{};
			std::vector<Mapping> others;
			try {
				check_mapping(u.m, others, mc);
			} catch (const Error &e) {
				res.unsupported.push_back({im.from, e.what()});
				continue;
			}
			im.bridge = a->bridge;
		} else if (!ctx.bridge.empty()) {
			im.bridge = ctx.bridge;
		}
		if (u.m.ext_uplink && u.ref.text.find(" -d ") != std::string::npos)
			res.notes.push_back({{u.ref},
					     "-d is the uplink's address: `uplink` follows "
					     "it when DHCP changes it"});
		res.mappings.push_back(im);
	}
	for (const auto &o : in.other)
		res.builtin.push_back({{{o.line, o.text}}, o.why});
	std::stable_sort(res.builtin.begin(), res.builtin.end(),
			 [](const Finding &a, const Finding &b) {
				 return a.rules.front().line < b.rules.front().line;
			 });
	std::stable_sort(res.unsupported.begin(), res.unsupported.end(),
			 [](const Finding &a, const Finding &b) {
				 return a.rules.front().line < b.rules.front().line;
			 });
	return res;
}

namespace {

void print_findings(std::ostream &o, const std::vector<Finding> &fs, const std::string &title)
{
	if (fs.empty())
		return;
	o << "#\n# " << title << ":\n";
	for (const auto &f : fs) {
		for (const auto &r : f.rules)
			o << "#   line " << r.line << ": " << printable(r.text) << "\n";
		o << "#     " << printable(f.why) << "\n";
	}
}

// "line 3" or "lines 3, 7": where a command comes from.
std::string lines_of(const std::vector<RuleRef> &rs)
{
	std::vector<int> ls;
	for (const auto &r : rs)
		ls.push_back(r.line);
	std::sort(ls.begin(), ls.end());
	std::string s = ls.size() == 1 ? "line " : "lines ";
	for (size_t i = 0; i < ls.size(); i++)
		s += (i ? ", " : "") + std::to_string(ls[i]);
	return s;
}

json refs_json(const std::vector<RuleRef> &rs)
{
	json a = json::array();
	for (const auto &r : rs)
		a.push_back({{"line", r.line}, {"rule", r.text}});
	return a;
}

json findings_json(const std::vector<Finding> &fs)
{
	json a = json::array();
	for (const auto &f : fs)
		a.push_back({{"rules", refs_json(f.rules)}, {"why", f.why}});
	return a;
}

} // namespace

std::string format_import(const ImportResult &r, const std::string &source)
{
	std::ostringstream o;
	o << "# kvmxdp import: " << r.rules << " rule" << (r.rules == 1 ? "" : "s") << " read from "
	  << source << "\n";
	for (const auto &a : r.attach) {
		// The instance as the unit's %I unescapes it (`br-lan`: a '-'
		// reads as '/' unless escaped), and the name printable.
		o << "# the daemon: stays in the foreground (at boot: `kvmxdp install`, then "
		     "`systemctl enable --now "
		  << (a.bridge.empty() ? "kvmxdp@BRIDGE" : unit_instance_shell("kvmxdp", a.bridge))
		  << "`)\n";
		o << a.command() << "   # " << lines_of(a.from) << "\n";
	}
	if (r.attach.empty())
		o << "# no MASQUERADE of a guest subnet: attach the bridge yourself "
		     "(`kvmxdp attach --bridge BRIDGE`)\n";
	for (const auto &m : r.mappings)
		o << m.command() << "   # " << lines_of(m.from)
		  << (m.guest.empty() ? "" : ", guest " + printable(m.guest)) << "\n";
	print_findings(o, r.notes, "imported, with a difference");
	print_findings(o, r.builtin,
		       "needs no command (kvmxdp does it itself, or it is not its business)");
	print_findings(o, r.unsupported, "cannot be expressed in kvmxdp");
	print_findings(o, r.conflicts,
		       "conflicts (rules that contradict each other: none of them imported)");
	return o.str();
}

json import_json(const ImportResult &r)
{
	json j;
	j["rules"] = r.rules;
	json at = json::array();
	for (const auto &a : r.attach) {
		json x = {{"bridge", a.bridge},
			  {"uplink", a.uplink.empty() ? "auto" : a.uplink},
			  {"subnet", a.subnet.str()},
			  {"command", a.command()},
			  {"rules", refs_json(a.from)}};
		if (a.nat_ports)
			x["nat_ports"] = a.nat_ports->str();
		if (a.clamp_mss)
			x["clamp_mss"] = *a.clamp_mss;
		at.push_back(x);
	}
	j["attach"] = at;
	json ms = json::array();
	for (const auto &m : r.mappings)
		ms.push_back({{"ext", m.m.ext_str()},
			      {"guest", m.m.guest_str()},
			      {"proto", m.m.proto_str()},
			      {"bridge", m.bridge},
			      {"libvirt_guest", m.guest},
			      {"command", m.command()},
			      {"rules", refs_json(m.from)}});
	j["mappings"] = ms;
	j["notes"] = findings_json(r.notes);
	j["no_command"] = findings_json(r.builtin);
	j["unsupported"] = findings_json(r.unsupported);
	j["conflicts"] = findings_json(r.conflicts);
	return j;
}

} // namespace kvmxdp
