// SPDX-License-Identifier: GPL-2.0
// `kvmxdp import`: the reader (quotes, variables, the three input formats),
// the translation of each kind of rule, and whole recipes (fixtures in
// tests/loader/import/) against their exact expected output.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "base/error.hpp"
#include "model/iptables_import.hpp"

namespace kvmxdp {
namespace {

std::string slurp(const std::string &name)
{
	std::ifstream f(std::string(KVX_IMPORT_FIXTURES) + "/" + name);
	EXPECT_TRUE(f.good()) << name;
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

ImportResult run(const std::string &text, uint32_t uplink_addr = 0)
{
	ImportContext ctx;
	ctx.uplink_addr = uplink_addr;
	return translate_iptables(read_iptables(text), ctx);
}

std::vector<std::string> commands(const ImportResult &r)
{
	std::vector<std::string> c;
	for (const auto &a : r.attach)
		c.push_back(a.command());
	for (const auto &m : r.mappings)
		c.push_back(m.command());
	return c;
}

using Words = std::vector<std::string>;

TEST(ImportShellWords, QuotesEscapesAndComments)
{
	std::map<std::string, std::string> v;
	EXPECT_EQ(shell_words("iptables -j LOG --log-prefix \"nat out: \"  # why", v),
		  (Words{"iptables", "-j", "LOG", "--log-prefix", "nat out: "}));
	EXPECT_EQ(shell_words("a 'b c' \"d\\\"e\" f\\ g", v), (Words{"a", "b c", "d\"e", "f g"}));
	EXPECT_EQ(shell_words("x=\"\" y", v), (Words{"x=", "y"}));
	EXPECT_EQ(shell_words("a#b c", v), (Words{"a#b", "c"}));
	EXPECT_EQ(shell_words("a;b && c || d | e", v),
		  (Words{"a", ";", "b", "&&", "c", "||", "d", "|", "e"}));
}

TEST(ImportShellWords, Variables)
{
	std::map<std::string, std::string> v = {{"IP", "192.168.122.5"}, {"P", "22"}};
	std::string unset;
	EXPECT_EQ(shell_words("--to $IP:${P} '$IP' \"$IP\"", v, &unset),
		  (Words{"--to", "192.168.122.5:22", "$IP", "192.168.122.5"}));
	EXPECT_EQ(unset, "");
	EXPECT_EQ(shell_words("--dport $PORT ${1}", v, &unset),
		  (Words{"--dport", "$PORT", "${1}"}));
	EXPECT_EQ(unset, "$PORT");
}

TEST(ImportShellWords, ExpansionIsCapped)
{
	// Every line doubles A: 2^30 bytes by line 31 unless capped.
	std::string script = "A=xxxxxxxxxxxxxxxx\n";
	for (int i = 0; i < 30; i++)
		script += "A=$A$A\n";
	try {
		read_iptables(script);
		ADD_FAILURE() << "an exponential expansion was read";
	} catch (const Error &e) {
		// Line 13's word is "A=" and twice 32 KiB: past the 64 KiB cap.
		EXPECT_EQ(std::string(e.what()),
			  "line 13: $A makes a word longer than 65536 bytes");
	}
	// Many words each under the cap, together over the line's.
	std::string wide = "B=" + std::string(60000, 'y') + "\niptables";
	for (int i = 0; i < 20; i++)
		wide += " $B";
	try {
		read_iptables(wide + "\n");
		ADD_FAILURE() << "a 1.2 MB line was read";
	} catch (const Error &e) {
		EXPECT_EQ(std::string(e.what()),
			  "line 2: the line expands to more than 1048576 bytes");
	}
	// Copies under every word cap, together over the variables' cap.
	std::string copies = "B=" + std::string(60000, 'y') + "\n";
	for (int i = 0; i < 20; i++)
		copies += "C" + std::to_string(i) + "=$B\n";
	try {
		read_iptables(copies);
		ADD_FAILURE() << "1.2 MB of variables were read";
	} catch (const Error &e) {
		EXPECT_EQ(std::string(e.what()),
			  "line 18: the variables hold more than 1048576 bytes");
	}
	// What real scripts hold is read as before.
	EXPECT_EQ(shell_words("iptables -d \"$IP\"", {{"IP", "10.0.0.1"}}),
		  (std::vector<std::string>{"iptables", "-d", "10.0.0.1"}));
}

TEST(ImportRead, SaveFormatTablesAndChains)
{
	IptInput in = read_iptables("*nat\n:PREROUTING ACCEPT [0:0]\n:X - [0:0]\n"
				    "[3:180] -A PREROUTING -d 10.0.0.1/32 -j X\nCOMMIT\n"
				    "*filter\n-A FORWARD -j REJECT\nCOMMIT\n");
	ASSERT_TRUE(in.recognized);
	ASSERT_EQ(in.rules.size(), 4u);
	EXPECT_EQ(in.rules[1].op, 'N');
	EXPECT_EQ(in.rules[1].chain, "X");
	EXPECT_EQ(in.rules[2].table, "nat");
	EXPECT_EQ(in.rules[2].line, 4);
	EXPECT_EQ(in.rules[2].args, (Words{"-d", "10.0.0.1/32", "-j", "X"}));
	EXPECT_EQ(in.rules[3].table, "filter");
}

TEST(ImportRead, ListingTablesFromTheirPolicies)
{
	// `iptables -S` then `iptables -t nat -S`, pasted together.
	IptInput in = read_iptables("-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"
				    "-A FORWARD -j REJECT\n-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n"
				    "-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n-N LIBVIRT_PRT\n"
				    "-A LIBVIRT_PRT -s 10.1.0.0/24 -j MASQUERADE\n");
	ASSERT_EQ(in.rules.size(), 10u);
	EXPECT_EQ(in.rules[3].table, "filter");
	EXPECT_EQ(in.rules[9].table, "nat");
	// Without policies: NAT targets say nat.
	IptInput bare = read_iptables("-A POSTROUTING -s 10.1.0.0/24 -j MASQUERADE\n"
				      "-A FORWARD -j ACCEPT\n");
	EXPECT_EQ(bare.rules[0].table, "nat");
	EXPECT_EQ(bare.rules[1].table, "filter");
}

TEST(ImportRead, ScriptCommands)
{
	IptInput in =
		read_iptables("#!/bin/sh\nset -e\nG=192.168.122.9\n"
			      "sudo /usr/sbin/iptables -w 5 -t nat -I PREROUTING 1 -p tcp \\\n"
			      "    --dport 80 -j DNAT --to $G:80 || true\n"
			      "iptables -F\niptables -t nat -L -n\necho done\n");
	ASSERT_TRUE(in.recognized);
	ASSERT_EQ(in.rules.size(), 1u);
	EXPECT_EQ(in.rules[0].table, "nat");
	EXPECT_EQ(in.rules[0].op, 'I');
	EXPECT_EQ(in.rules[0].line, 4);
	EXPECT_EQ(in.rules[0].args,
		  (Words{"-p", "tcp", "--dport", "80", "-j", "DNAT", "--to", "192.168.122.9:80"}));
	EXPECT_EQ(in.rules[0].text, "sudo /usr/sbin/iptables -w 5 -t nat -I PREROUTING 1 -p tcp "
				    "--dport 80 -j DNAT --to $G:80 || true");
}

TEST(ImportRead, NotIptablesAtAll)
{
	EXPECT_FALSE(read_iptables("").recognized);
	EXPECT_FALSE(read_iptables("hello world\n{\"json\": true}\n").recognized);
	EXPECT_FALSE(read_iptables(std::string("\x7f"
					       "ELF\x02\x01\x01\0\0",
					       9))
			     .recognized);
}

TEST(ImportTranslate, OneToOnePairAndForwards)
{
	auto r = run("*nat\n"
		     "-A PREROUTING -d 192.168.1.101/32 -j DNAT --to-destination 192.168.122.101\n"
		     "-A POSTROUTING -s 192.168.122.101/32 -j SNAT --to-source 192.168.1.101\n"
		     "-A PREROUTING -d 192.168.1.50/32 -p tcp -m tcp --dport 2222 -j DNAT "
		     "--to-destination 192.168.122.102:22\n"
		     "-A PREROUTING -p udp --dport 8000:8010 -j DNAT --to-destination "
		     "192.168.122.102:8000-8010\n"
		     "COMMIT\n",
		     parse_ipv4("192.168.1.50"));
	EXPECT_EQ(commands(r),
		  (Words{"kvmxdp map add 192.168.1.101 192.168.122.101",
			 "kvmxdp map add uplink:2222 192.168.122.102:22 --proto tcp",
			 "kvmxdp map add uplink:8000-8010 192.168.122.102:8000-8010 --proto udp"}));
	ASSERT_EQ(r.mappings[0].from.size(), 2u); // the DNAT and its SNAT
	EXPECT_EQ(r.mappings[0].from[1].line, 3);
	EXPECT_TRUE(r.unsupported.empty());
	EXPECT_TRUE(r.conflicts.empty());
}

TEST(ImportTranslate, Unsupported)
{
	struct Case {
		const char *rule, *why;
	} cases[] = {
		{"-t nat -A PREROUTING -d 10.0.0.5 -j DNAT --to-destination "
		 "192.168.122.5-192.168.122.6",
		 "DNAT to an address range (load balancing)"},
		{"-t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination "
		 "192.168.122.5:8080-8081",
		 "netfilter picks any free one of them: load balancing"},
		{"-t nat -A PREROUTING -p tcp --dport 80:81 -j DNAT --to-destination 192.168.122.5:80",
		 "DNAT of the ports 80-81 to one port 80"},
		{"-t nat -A POSTROUTING -s 192.168.122.5 -j SNAT --to-source 10.0.0.5-10.0.0.6",
		 "--to-source range 10.0.0.5-10.0.0.6"},
		{"-t nat -A POSTROUTING -s 192.168.122.5 -j SNAT --to-source 10.0.0.5",
		 "without a DNAT back"},
		{"-t nat -A POSTROUTING -o wlan0 -j MASQUERADE",
		 "MASQUERADE without a bridge subnet"},
		{"-t nat -A POSTROUTING -s 10.1.0.0/24 -o wl+ -j MASQUERADE", "-o wl+"},
		{"-A FORWARD -o wlan0 -j LOG", "-j LOG: kvmxdp does not log packets"},
		{"-A FORWARD -m mac --mac-source 52:54:00:00:00:01 -j ACCEPT",
		 "-m mac: kvmxdp does not filter forwarded traffic by MAC"},
		{"-A FORWARD -s 192.168.122.0/24 -p tcp --dport 25 -j REJECT",
		 "does not filter guest traffic by address or port"},
		{"-t nat -A PREROUTING -s 10.0.0.0/8 -p tcp --dport 22 -j DNAT --to 192.168.122.5",
		 "DNAT only for clients 10.0.0.0/8"},
		{"-t nat -A PREROUTING -p tcp --dport 22 -j DNAT --to-destination 192.168.122.5:22 "
		 "--to-destination 192.168.122.6:22",
		 "DNAT to several destinations (load balancing)"},
		{"-t nat -A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 3128",
		 "-j REDIRECT: to one of the host's own ports"},
		{"-t nat -A PREROUTING -p tcp --dport 0 -j DNAT --to 192.168.122.5",
		 "invalid port"},
		{"-t mangle -A FORWARD -j TTL --ttl-inc 1", "-t mangle -j TTL"},
		{"-t nat -A PREROUTING -d 10.0.0.5 -m addrtype --dst-type LOCAL -j DNAT --to "
		 "192.168.122.5",
		 "only for -m addrtype"},
	};
	for (const auto &c : cases) {
		auto r = run(std::string("iptables ") + c.rule + "\n");
		ASSERT_EQ(r.unsupported.size(), 1u) << c.rule;
		EXPECT_NE(r.unsupported[0].why.find(c.why), std::string::npos)
			<< c.rule << "\n  why: " << r.unsupported[0].why;
		EXPECT_TRUE(r.mappings.empty()) << c.rule;
	}
}

TEST(ImportTranslate, ConflictsAreNotPicked)
{
	auto r = run("iptables -t nat -A PREROUTING -d 10.0.0.5 -j DNAT --to 192.168.122.5\n"
		     "iptables -t nat -A PREROUTING -d 10.0.0.5 -j DNAT --to 192.168.122.6\n"
		     "iptables -t nat -A PREROUTING -d 10.0.0.6 -j DNAT --to 192.168.122.7\n"
		     "iptables -t nat -A POSTROUTING -s 192.168.122.7 -j SNAT --to 10.0.0.9\n");
	EXPECT_TRUE(r.mappings.empty());
	ASSERT_EQ(r.conflicts.size(), 2u);
	EXPECT_EQ(r.conflicts[0].rules.size(), 2u);
	EXPECT_NE(r.conflicts[0].why.find("one external address, two mappings"), std::string::npos);
	EXPECT_NE(r.conflicts[1].why.find("a 1:1 mapping is one address both ways"),
		  std::string::npos);
}

TEST(ImportTranslate, NatPortsKeptOutsideTheEphemeralRange)
{
	auto r = run("iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -o eth0 -j MASQUERADE "
		     "--to-ports 61000-65535\n"
		     "iptables -A FORWARD -i br7 -s 10.1.0.0/24 -j ACCEPT\n");
	EXPECT_EQ(commands(r),
		  (Words{"kvmxdp attach --bridge br7 --uplink eth0 --subnet 10.1.0.0/24 "
			 "--nat-ports 61000-65535"}));
	// A forward on the uplink inside an explicit --nat-ports range: map
	// add's own check refuses it.
	auto f = run("iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -o eth0 -j MASQUERADE "
		     "--to-ports 61000-65535\n"
		     "iptables -t nat -A PREROUTING -p tcp --dport 62000 -j DNAT --to 10.1.0.5\n"
		     "iptables -t nat -A PREROUTING -p tcp --dport 22 -j DNAT --to 10.2.0.5\n");
	ASSERT_EQ(f.unsupported.size(), 2u);
	EXPECT_NE(f.unsupported[0].why.find("overlap the NAT port range 61000-65535"),
		  std::string::npos);
	EXPECT_NE(f.unsupported[1].why.find("is not a host address in 10.1.0.0/24"),
		  std::string::npos);
	// The default pool makes room for a forward (its static binding holds
	// the port): only the guest outside the subnet is refused.
	auto d = run("iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -o eth0 -j MASQUERADE\n"
		     "iptables -t nat -A PREROUTING -p tcp --dport 62000 -j DNAT --to 10.1.0.5\n"
		     "iptables -t nat -A PREROUTING -p tcp --dport 22 -j DNAT --to 10.2.0.5\n");
	ASSERT_EQ(d.unsupported.size(), 1u);
	EXPECT_NE(d.unsupported[0].why.find("is not a host address in 10.1.0.0/24"),
		  std::string::npos);
}

TEST(ImportTranslate, NamesArePasteSafe)
{
	// The kernel takes `;` and quotes in a device name: the command a user
	// pastes must keep it one word, never run the rest.
	auto r = run("iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -o \"up'\\$x\" -j MASQUERADE\n"
		     "iptables -A FORWARD -i 'br;reboot' -s 10.1.0.0/24 -j ACCEPT\n"
		     "iptables -t nat -A PREROUTING -d 10.0.0.5 -j DNAT --to 10.1.0.5\n");
	EXPECT_EQ(
		commands(r),
		(Words{"kvmxdp attach --bridge 'br;reboot' --uplink 'up'\\''$x' --subnet 10.1.0.0/24",
		       "kvmxdp map add 10.0.0.5 10.1.0.5 --bridge 'br;reboot'"}));
	// A name the kernel refuses is no bridge.
	auto bad = run("iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -j MASQUERADE\n"
		       "iptables -A FORWARD -i 'br 0' -s 10.1.0.0/24 -j ACCEPT\n");
	EXPECT_EQ(commands(bad),
		  (Words{"kvmxdp attach --bridge BRIDGE --uplink auto --subnet 10.1.0.0/24"}));
	// The unit's instance as systemd-escape makes it ('-' reads as '/').
	auto dash = run("iptables -t nat -A POSTROUTING -s 10.1.0.0/24 -j MASQUERADE\n"
			"iptables -A FORWARD -i br-lan -s 10.1.0.0/24 -j ACCEPT\n");
	EXPECT_NE(format_import(dash, "x").find(
			  "systemctl enable --now \"kvmxdp@$(systemd-escape -- br-lan)\"`"),
		  std::string::npos)
		<< format_import(dash, "x");
	// Control characters in a rule are shown escaped, never sent to the terminal.
	auto log = run("iptables -A FORWARD -j LOG --log-prefix \"\x1b[2J\"\n");
	EXPECT_EQ(format_import(log, "x").find('\x1b'), std::string::npos);
	// ... nor through the explanation, which names the chain and target
	// from the file: a carriage return there would start a pasted line.
	auto names = run("*filter\n:CH\x1b]0;x\x07\rreboot - [0:0]\n"
			 "-A FORWARD -j CH\x1b]0;x\x07\rreboot\n"
			 "-A FORWARD -j T\rrm\nCOMMIT\n");
	std::string out = format_import(names, "x");
	EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
	EXPECT_EQ(out.find('\r'), std::string::npos) << out;
	EXPECT_EQ(out.find('\x07'), std::string::npos) << out;
}

// Whole recipes: exact output (the text a user pastes).
class ImportFixture : public testing::TestWithParam<const char *> {};

TEST_P(ImportFixture, ExactOutput)
{
	const std::string name = GetParam();
	ImportContext ctx;
	ctx.ephemeral = {32768, 60999};
	// The libvirt host's uplink has 192.168.1.50: its DNAT becomes `uplink`.
	if (name == "libvirt-save.txt")
		ctx.uplink_addr = parse_ipv4("192.168.1.50");
	auto r = translate_iptables(read_iptables(slurp(name)), ctx);
	EXPECT_EQ(format_import(r, name), slurp(name + ".expected"));
}

INSTANTIATE_TEST_SUITE_P(Recipes, ImportFixture,
			 testing::Values("recipe.sh", "libvirt-save.txt", "qemu-hook.sh",
					 "nat-S.txt"),
			 [](const testing::TestParamInfo<const char *> &i) {
				 std::string n = i.param;
				 for (auto &c : n)
					 if (!std::isalnum(static_cast<unsigned char>(c)))
						 c = '_';
				 return n;
			 });

} // namespace
} // namespace kvmxdp
