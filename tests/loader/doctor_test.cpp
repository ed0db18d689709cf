// SPDX-License-Identifier: GPL-2.0
// `doctor`'s checks on fixtures: a healthy host (no finding from any check),
// then each fault alone, which must produce its check's finding with a fix.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "base/text.hpp"

#include "base/netaddr.hpp"
#include "model/doctor.hpp"

using namespace kvmxdp;
using nlohmann::json;

namespace {

DoctorLink link(const std::string &name, uint32_t mtu, const char *addr = nullptr,
		uint8_t prefix = 24)
{
	DoctorLink l;
	l.name = name;
	l.exists = l.up = l.carrier = true;
	l.mtu = mtu;
	if (addr)
		l.addrs.push_back({parse_ipv4(addr), prefix});
	l.rp_filter = 0;
	return l;
}

// virbr0 with two taps, attached, uplink wlan0, as status --json shows it.
DoctorFacts healthy()
{
	DoctorFacts f;
	f.bridge = "virbr0";
	f.uplink = "wlan0";
	f.status = json::parse(R"J({
	  "bridge": "virbr0", "uplink": "wlan0", "uplink_device": "wlan0",
	  "subnet": "192.168.122.0/24", "uplink_addr": "10.0.0.5", "daemon_pid": 4242,
	  "devices": [
	    {"ifname": "virbr0", "ifindex": 5, "prog": "kvx_br_ingress", "role": "bridge",
	     "mode": "tc", "xdp_prog": null, "why": "bridge device: generic XDP only"},
	    {"ifname": "wlan0", "ifindex": 3, "prog": "kvx_up_ingress", "role": "uplink",
	     "mode": "tc", "xdp_prog": null, "why": "wireless (802.11): no native XDP"},
	    {"ifname": "vnet0", "ifindex": 7, "prog": null, "role": "port", "mode": "tc",
	     "xdp_prog": null, "why": "tap (a VM's NIC)"}],
	  "conntrack": {"entries": 10, "max_entries": 65536},
	  "bindings": {"entries": 4, "max_entries": 65536},
	  "warnings": []})J");
	f.kernel = json::parse(R"J({"release": "6.1.0-26-amd64", "missing": [], "degraded": []})J");
	f.bridge_link = link("virbr0", 1500, "192.168.122.1");
	f.uplink_link = link("wlan0", 1500, "10.0.0.5");
	f.uplink_link.wireless = true;
	f.uplink_default_route = true;
	f.ports = {link("vnet0", 1500), link("vnet1", 1500)};
	f.bridge_forwarding = 1;
	f.rp_filter_all = 0;
	f.br_netfilter = false;
	f.iptables_save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
			  ":OUTPUT ACCEPT [0:0]\nCOMMIT\n";
	f.nft_json = R"J({"nftables": [{"metainfo": {"version": "1.0.6"}},
	  {"table": {"family": "ip", "name": "filter", "handle": 1}},
	  {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2,
	             "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}]})J";
	f.arp_listen_ms = 3000;
	// guest .10 resolving its gateway (the bridge) and a neighbour once
	f.arp_asks = {{{0x52, 0x54, 0, 1, 2, 3},
		       parse_ipv4("192.168.122.10"),
		       parse_ipv4("192.168.122.1"),
		       3},
		      {{0x52, 0x54, 0, 1, 2, 3},
		       parse_ipv4("192.168.122.10"),
		       parse_ipv4("192.168.122.11"),
		       1}};
	return f;
}

std::vector<DoctorFinding> only(const std::vector<DoctorFinding> &all, const std::string &check)
{
	std::vector<DoctorFinding> out;
	for (const auto &x : all)
		if (x.check == check)
			out.push_back(x);
	return out;
}

// Exactly one finding of `check`, of that severity, whose text holds
// `what` and whose command or note holds `fix`.
void expect_one(const DoctorFacts &f, const std::string &check, Severity sev,
		const std::string &what, const std::string &fix)
{
	auto all = run_doctor_checks(f);
	auto mine = only(all, check);
	ASSERT_EQ(mine.size(), 1u) << check << ": " << format_doctor(doctor_json(f.bridge, all));
	EXPECT_EQ(mine[0].severity, sev) << mine[0].what;
	EXPECT_NE(mine[0].what.find(what), std::string::npos) << mine[0].what;
	const std::string both = mine[0].command + " | " + mine[0].note;
	EXPECT_NE(both.find(fix), std::string::npos) << both;
	EXPECT_EQ(doctor_exit_code(all),
		  sev == Severity::Error ? kDoctorExitError : kDoctorExitWarning);
}

} // namespace

TEST(Doctor, HealthyHostHasNoFindingAndExitsZero)
{
	auto all = run_doctor_checks(healthy());
	EXPECT_TRUE(all.empty()) << format_doctor(doctor_json("virbr0", all));
	EXPECT_EQ(doctor_exit_code(all), 0);
	json j = doctor_json("virbr0", all);
	for (const char *c : kDoctorChecks)
		EXPECT_EQ(j["checks"][c], "ok") << c;
	EXPECT_EQ(j["exit_code"], 0);
	EXPECT_NE(format_doctor(j).find("nothing wrong found"), std::string::npos);
}

TEST(Doctor, DatapathNotAttached)
{
	DoctorFacts f = healthy();
	f.status = nullptr;
	expect_one(f, "datapath", Severity::Error, "virbr0 is not attached",
		   "kvmxdp attach --bridge virbr0 --uplink wlan0");
}

TEST(Doctor, DatapathFilterMissingOrForeign)
{
	DoctorFacts f = healthy();
	f.status["devices"][1]["prog"] = nullptr;
	expect_one(f, "datapath", Severity::Error, "no kvmxdp filter on wlan0",
		   "systemctl restart kvmxdp@virbr0");
	// A '-' in the bridge's name is '/' in a unit's instance: escaped.
	f.bridge = "br-lan";
	expect_one(f, "datapath", Severity::Error, "no kvmxdp filter on wlan0",
		   "systemctl restart \"kvmxdp@$(systemd-escape -- br-lan)\"");
	f = healthy();
	f.status["devices"][0]["prog"] = "other_prog";
	expect_one(f, "datapath", Severity::Error, "runs 'other_prog'", "kvmxdp@virbr0");
}

TEST(Doctor, DatapathWithoutDaemonOrForwarding)
{
	DoctorFacts f = healthy();
	f.status["daemon_pid"] = nullptr;
	expect_one(f, "datapath", Severity::Warning, "no daemon running", "kvmxdp@virbr0");
	f = healthy();
	f.bridge_forwarding = 0;
	expect_one(f, "datapath", Severity::Error, "forwarding is 0",
		   "echo 'net/ipv4/conf/virbr0/forwarding = 1' > "
		   "/etc/sysctl.d/90-kvmxdp-forwarding-virbr0.conf && sysctl -p "
		   "/etc/sysctl.d/90-kvmxdp-forwarding-virbr0.conf | attach sets it too");
}

TEST(Doctor, UplinkDownWithoutCarrierOrAddress)
{
	DoctorFacts f = healthy();
	f.uplink_link.up = false;
	expect_one(f, "uplink", Severity::Error, "wlan0 is down", "ip link set dev wlan0 up");
	f = healthy();
	f.uplink_link.carrier = false;
	expect_one(f, "uplink", Severity::Error, "no carrier", "nmcli device connect wlan0");
	f = healthy();
	f.uplink_link.addrs.clear();
	expect_one(f, "uplink", Severity::Error, "no IPv4 address", "dhclient wlan0");
	f = healthy();
	f.uplink_default_route = false;
	expect_one(f, "uplink", Severity::Error, "no IPv4 default route through the uplink wlan0",
		   "ip route add default via GATEWAY dev wlan0");
	f = healthy();
	f.uplink.clear();
	expect_one(f, "uplink", Severity::Error, "no IPv4 default route", "ip route add default");
	f = healthy();
	f.uplink_link.exists = false;
	expect_one(f, "uplink", Severity::Error, "does not exist", "--uplink auto");
}

TEST(Doctor, GatewayOtherThanTheBridge)
{
	DoctorFacts f = healthy();
	f.arp_asks.push_back({{0x52, 0x54, 0, 9, 9, 9},
			      parse_ipv4("192.168.122.20"),
			      parse_ipv4("192.168.122.254"),
			      3});
	// A warning: a stopped guest at .254 is as likely as a wrong gateway.
	expect_one(f, "gateway", Severity::Warning, "guest 192.168.122.20 (52:54:00:09:09:09)",
		   "ip route replace default via 192.168.122.1");
	EXPECT_NE(only(run_doctor_checks(f), "gateway")[0].what.find("a stopped guest"),
		  std::string::npos);
	// Asked once: answered, as a neighbour would be.
	f.arp_asks.back().count = 1;
	EXPECT_TRUE(only(run_doctor_checks(f), "gateway").empty());
	// An RFC 5227 probe (sender 0.0.0.0) or an announcement is no gateway.
	f.arp_asks.back() = {{1, 2, 3, 4, 5, 6}, 0, parse_ipv4("192.168.122.254"), 3};
	EXPECT_TRUE(only(run_doctor_checks(f), "gateway").empty());
}

TEST(Doctor, BridgeWithoutAddressOrGuestOutsideIt)
{
	DoctorFacts f = healthy();
	f.bridge_link.addrs.clear();
	expect_one(f, "gateway", Severity::Error, "no IPv4 address",
		   "ip addr add 192.168.122.1/24 dev virbr0");
	f = healthy();
	f.arp_asks.push_back(
		{{2, 0, 0, 0, 0, 1}, parse_ipv4("10.9.9.9"), parse_ipv4("10.9.9.1"), 4});
	expect_one(f, "gateway", Severity::Warning, "on no network of virbr0", "DHCP");
}

TEST(Doctor, ArpFloodIsSummarized)
{
	DoctorFacts f = healthy();
	for (uint32_t i = 0; i < 1000; i++)
		f.arp_asks.push_back({{2, 0, 0, 0, 0, 9},
				      parse_ipv4("192.168.122.20") + i % 200,
				      parse_ipv4("192.168.123.0") + i,
				      2});
	auto g = only(run_doctor_checks(f), "gateway");
	ASSERT_EQ(g.size(), kArpMaxFindings + 1);
	EXPECT_NE(g.back().what.find("and 992 more"), std::string::npos) << g.back().what;
}

// A guest asking for a peer that is stopped is normal: no error, and the
// exit code says "look", not "broken".
TEST(Doctor, DeadPeerOnTheGuestNetworkIsNoError)
{
	DoctorFacts f = healthy();
	f.arp_asks.push_back({{0x52, 0x54, 0, 1, 2, 3},
			      parse_ipv4("192.168.122.10"),
			      parse_ipv4("192.168.122.11"),
			      6});
	auto all = run_doctor_checks(f);
	auto g = only(all, "gateway");
	ASSERT_EQ(g.size(), 1u);
	EXPECT_NE(g[0].severity, Severity::Error) << g[0].what;
	EXPECT_NE(doctor_exit_code(all), kDoctorExitError);
}

// A flood that filled the listener: what was not looked at is not "ok".
TEST(Doctor, ArpRequestsMissedAreNoOk)
{
	DoctorFacts f = healthy();
	f.arp_missed = 5000;
	expect_one(f, "gateway", Severity::Warning, "checked only in part: 5000 ARP requests",
		   "tcpdump -eni virbr0 arp");
	EXPECT_EQ(doctor_json("virbr0", run_doctor_checks(f))["checks"]["gateway"], "warning");
}

TEST(Doctor, BridgeMissing)
{
	DoctorFacts f = healthy();
	f.status = nullptr;
	f.bridge_link = DoctorLink{};
	f.bridge_link.name = "virbr0";
	f.ports.clear();
	auto d = only(run_doctor_checks(f), "datapath");
	ASSERT_EQ(d.size(), 2u);
	EXPECT_NE(d[1].what.find("the bridge virbr0 does not exist"), std::string::npos);
	EXPECT_NE(d[1].note.find("ip link add virbr0 type bridge"), std::string::npos);
	EXPECT_EQ(d[1].command, "") << "which libvirt network: not known here";
}

TEST(Doctor, GatewayNotListenedIsAWarningSkippedANote)
{
	DoctorFacts f = healthy();
	f.arp_listen_ms = 0;
	f.arp_error = "open: AF_PACKET socket: Operation not permitted";
	auto g = only(run_doctor_checks(f), "gateway");
	ASSERT_EQ(g.size(), 1u);
	// Blind is not "nothing wrong": exit 3.
	EXPECT_EQ(g[0].severity, Severity::Warning);
	EXPECT_NE(g[0].what.find("Operation not permitted"), std::string::npos);
	EXPECT_EQ(doctor_exit_code(run_doctor_checks(f)), 3);
	EXPECT_EQ(doctor_json("virbr0", run_doctor_checks(f))["checks"]["gateway"], "warning");
	// --arp-wait 0: skipped on request.
	f.arp_error.clear();
	g = only(run_doctor_checks(f), "gateway");
	ASSERT_EQ(g.size(), 1u);
	EXPECT_EQ(g[0].severity, Severity::Note);
	EXPECT_EQ(doctor_exit_code(run_doctor_checks(f)), 0);
}

TEST(Doctor, BrNetfilterCallingIptables)
{
	DoctorFacts f = healthy();
	f.br_netfilter = true;
	f.bridge_nf_call_iptables = 0;
	EXPECT_TRUE(run_doctor_checks(f).empty());
	f.bridge_nf_call_iptables = 1;
	expect_one(f, "br_netfilter", Severity::Warning, "bridge-nf-call-iptables=1",
		   "echo 'net/bridge/bridge-nf-call-iptables = 0' > "
		   "/etc/sysctl.d/90-kvmxdp-bridge-nf-call-iptables.conf && sysctl -p "
		   "/etc/sysctl.d/90-kvmxdp-bridge-nf-call-iptables.conf");
	// Something else needs it: no command, a note naming who (and the
	// exit code stays 0).
	const std::pair<std::string, std::string> users[] = {
		{"*filter\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n", "Docker"},
		{"*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n",
		 "Kubernetes"},
		{"*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m physdev --physdev-is-bridged -j "
		 "ACCEPT\nCOMMIT\n",
		 "-m physdev"}};
	for (const auto &[rules, who] : users) {
		f.iptables_save = rules;
		auto all = run_doctor_checks(f);
		auto mine = only(all, "br_netfilter");
		ASSERT_EQ(mine.size(), 1u) << who;
		EXPECT_EQ(mine[0].severity, Severity::Note) << who;
		EXPECT_EQ(mine[0].command, "") << who;
		EXPECT_NE(mine[0].note.find(who), std::string::npos) << mine[0].note;
		EXPECT_EQ(doctor_exit_code(all), 0) << who;
	}
}

TEST(Doctor, LibvirtMasqueradeOfTheSubnet)
{
	DoctorFacts f = healthy();
	f.iptables_save = "*nat\n:POSTROUTING ACCEPT [0:0]\n:LIBVIRT_PRT - [0:0]\n"
			  "-A POSTROUTING -j LIBVIRT_PRT\n"
			  "-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE\n"
			  "COMMIT\n";
	expect_one(f, "firewall", Severity::Warning, "NATs the guest subnet",
		   "iptables -t nat -D LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j "
		   "MASQUERADE | a libvirt network re-adds");
	// Another network's masquerade is not ours.
	f.iptables_save = "*nat\n:POSTROUTING ACCEPT [0:0]\n"
			  "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n";
	EXPECT_TRUE(run_doctor_checks(f).empty());
}

TEST(Doctor, ForwardPolicyDropWithAndWithoutBrNetfilter)
{
	DoctorFacts f = healthy();
	f.iptables_save =
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
		":DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n"
		"-A DOCKER-USER -j RETURN\nCOMMIT\n";
	expect_one(f, "firewall", Severity::Warning, "FORWARD policy is DROP (Docker)",
		   "iptables -I DOCKER-USER -i virbr0 -j ACCEPT && iptables -I DOCKER-USER -o "
		   "virbr0 -j ACCEPT |");
	f.br_netfilter = true;
	f.bridge_nf_call_iptables = 1;
	auto fw = only(run_doctor_checks(f), "firewall");
	ASSERT_EQ(fw.size(), 1u);
	EXPECT_EQ(fw[0].severity, Severity::Error);
	EXPECT_NE(fw[0].what.find("traffic between guests"), std::string::npos);
	// The fix applied: the bridge accepted both ways before the policy.
	f.br_netfilter = false;
	f.iptables_save = "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n"
			  "-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -o virbr0 -j ACCEPT\n"
			  "-A DOCKER-USER -i virbr0 -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
	EXPECT_TRUE(run_doctor_checks(f).empty());
}

TEST(Doctor, IptablesDropOfTheBridge)
{
	DoctorFacts f = healthy();
	f.iptables_save = "*filter\n:FORWARD ACCEPT [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n"
			  "-A DOCKER-ISOLATION-STAGE-2 -o virbr0 -j DROP\nCOMMIT\n";
	expect_one(f, "firewall", Severity::Warning, "iptables drops virbr0's traffic",
		   "iptables -D DOCKER-ISOLATION-STAGE-2 -o virbr0 -j DROP");
	// libvirt's own reject of what it did not NAT: its rules, its advice.
	f.iptables_save = "*filter\n:FORWARD ACCEPT [0:0]\n:LIBVIRT_FWI - [0:0]\n"
			  "-A FORWARD -j LIBVIRT_FWI\n"
			  "-A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable\n"
			  "COMMIT\n";
	expect_one(f, "firewall", Severity::Warning, "iptables drops virbr0's traffic",
		   "iptables -D LIBVIRT_FWI -o virbr0 -j REJECT --reject-with "
		   "icmp-port-unreachable | a libvirt network re-adds its rules");
}

TEST(Doctor, NftablesLibvirtNatForwardDropAndFirewalld)
{
	DoctorFacts f = healthy();
	f.nft_json = R"J({"nftables": [
	  {"table": {"family": "ip", "name": "libvirt_network", "handle": 9}},
	  {"chain": {"family": "ip", "table": "libvirt_network", "name": "guest_nat", "handle": 3,
	             "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
	  {"rule": {"family": "ip", "table": "libvirt_network", "chain": "guest_nat", "handle": 12,
	            "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
	                                "right": {"prefix": {"addr": "192.168.122.0", "len": 24}}}},
	                     {"masquerade": null}]}}]})J";
	expect_one(f, "firewall", Severity::Warning, "nftables NATs the guest subnet",
		   "nft delete rule ip libvirt_network guest_nat handle 12 | a libvirt network");

	f = healthy();
	f.nft_json = R"J({"nftables": [
	  {"table": {"family": "bridge", "name": "filter", "handle": 1}},
	  {"chain": {"family": "bridge", "table": "filter", "name": "forward", "handle": 1,
	             "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]})J";
	// A bridge chain sees the bridge's ports as iifname: the bridge's frames
	// are accepted by its name as the bridge they cross.
	expect_one(f, "firewall", Severity::Error, "traffic between guests is dropped",
		   "nft 'insert rule bridge filter forward meta ibrname \"virbr0\" accept'");
	// An iifname rule in a bridge chain accepts none of the bridge's
	// frames; an ibrname one does.
	const char *bridge_drop = R"J({"nftables": [
	  {"table": {"family": "bridge", "name": "filter", "handle": 1}},
	  {"chain": {"family": "bridge", "table": "filter", "name": "forward", "handle": 1,
	             "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
	  {"rule": {"family": "bridge", "table": "filter", "chain": "forward", "handle": 2,
	            "expr": [{"match": {"op": "==", "left": {"meta": {"key": "KEY"}}, "right": "virbr0"}},
	                     {"accept": null}]}}]})J";
	auto with_key = [&](const std::string &key) {
		std::string j = bridge_drop;
		j.replace(j.find("KEY"), 3, key);
		return j;
	};
	f.nft_json = with_key("iifname");
	expect_one(f, "firewall", Severity::Error, "traffic between guests is dropped",
		   "meta ibrname");
	f.nft_json = with_key("ibrname");
	EXPECT_TRUE(run_doctor_checks(f).empty());
	// Routed traffic (an ip/inet forward chain) goes through the bridge
	// device itself.
	f.nft_json = R"J({"nftables": [
	  {"table": {"family": "inet", "name": "fw", "handle": 1}},
	  {"chain": {"family": "inet", "table": "fw", "name": "forward", "handle": 1,
	             "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]})J";
	expect_one(
		f, "firewall", Severity::Warning, "what kvmxdp hands to the host's routing",
		"nft 'insert rule inet fw forward iifname \"virbr0\" accept' && nft 'insert rule "
		"inet fw forward oifname \"virbr0\" accept' |");

	f = healthy();
	f.nft_json = R"J({"nftables": [
	  {"table": {"family": "inet", "name": "firewalld", "handle": 4}},
	  {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_FORWARD", "handle": 1,
	            "expr": [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]}}]})J";
	expect_one(f, "firewall", Severity::Warning, "firewalld is active",
		   "firewall-cmd --permanent --zone=libvirt --add-interface=virbr0");
	// The bridge in a zone: named in firewalld's rules.
	f.nft_json = R"J({"nftables": [
	  {"table": {"family": "inet", "name": "firewalld", "handle": 4}},
	  {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_FORWARD_ZONES", "handle": 7,
	            "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "virbr0"}},
	                     {"goto": {"target": "filter_FWD_trusted"}}]}}]})J";
	EXPECT_TRUE(run_doctor_checks(f).empty());
}

// Rules made with iptables-legacy live in x_tables: neither iptables-save
// (the nft backend) nor nft shows them, iptables-legacy-save does.
TEST(Doctor, IptablesLegacyRulesAreRead)
{
	DoctorFacts f = healthy();
	f.iptables_legacy_save = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
				 "-A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j "
				 "MASQUERADE\nCOMMIT\n";
	expect_one(f, "firewall", Severity::Warning, "iptables-legacy NATs the guest subnet",
		   "iptables-legacy -t nat -D POSTROUTING -s 192.168.122.0/24 ! -d "
		   "192.168.122.0/24 -j MASQUERADE");
	// iptables is the legacy one itself: the same rules, found once.
	f.iptables_save = f.iptables_legacy_save;
	expect_one(f, "firewall", Severity::Warning, "iptables NATs the guest subnet",
		   "iptables -t nat -D POSTROUTING");
	f = healthy();
	f.iptables_legacy_save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n";
	expect_one(f, "firewall", Severity::Warning, "iptables-legacy' FORWARD policy is DROP",
		   "iptables-legacy -I FORWARD -i virbr0 -j ACCEPT");
}

TEST(Doctor, FirewallToolsMissingAreANote)
{
	DoctorFacts f = healthy();
	f.iptables_save.reset();
	f.firewall_unread = {"iptables-save: not installed (no /usr/sbin/iptables-save or "
			     "/sbin/iptables-save)"};
	auto all = run_doctor_checks(f);
	ASSERT_EQ(all.size(), 1u);
	EXPECT_EQ(all[0].severity, Severity::Note);
	EXPECT_EQ(doctor_exit_code(all), 0);
	// Installed and failed: the rules are there, unread.
	f.firewall_unread = {"nft: /usr/sbin/nft failed"};
	all = run_doctor_checks(f);
	ASSERT_EQ(all.size(), 1u);
	EXPECT_EQ(all[0].severity, Severity::Warning);
	EXPECT_EQ(doctor_exit_code(all), 3);
}

TEST(Doctor, StrictRpFilter)
{
	DoctorFacts f = healthy();
	f.uplink_link.rp_filter = 1;
	expect_one(f, "rp_filter", Severity::Warning, "strict reverse-path filtering on wlan0",
		   "echo 'net/ipv4/conf/wlan0/rp_filter = 2' > "
		   "/etc/sysctl.d/90-kvmxdp-rp_filter-wlan0.conf && sysctl -p "
		   "/etc/sysctl.d/90-kvmxdp-rp_filter-wlan0.conf |");
	// conf.all=1 makes every device strict unless it says loose.
	f = healthy();
	f.rp_filter_all = 1;
	auto rp = only(run_doctor_checks(f), "rp_filter");
	EXPECT_EQ(rp.size(), 2u);
	f.bridge_link.rp_filter = f.uplink_link.rp_filter = 2;
	EXPECT_TRUE(run_doctor_checks(f).empty());
}

TEST(Doctor, MtuMismatch)
{
	DoctorFacts f = healthy();
	f.uplink_link.mtu = 1400;
	expect_one(f, "mtu", Severity::Warning, "has MTU 1500, the uplink wlan0 1400",
		   "ip link set dev vnet0 mtu 1400 && ip link set dev vnet1 mtu 1400 |");
	f = healthy();
	f.ports[1].mtu = 1400;
	f.bridge_link.mtu = 1400;
	f.uplink_link.mtu = 1400;
	expect_one(f, "mtu", Severity::Warning, "differ in MTU (vnet0 1500, vnet1 1400)",
		   "ip link set dev vnet1 mtu 1500");
}

TEST(Doctor, TablesNearFullAndFull)
{
	DoctorFacts f = healthy();
	f.status["conntrack"] = {{"entries", 52}, {"max_entries", 64}};
	expect_one(
		f, "tables", Severity::Warning, "conntrack table holds 52 of 64",
		"kvmxdp detach --bridge virbr0 && kvmxdp attach --bridge virbr0 --uplink wlan0 --ct-size 128 |");
	// Where systemd runs it: the unit stopped first.
	f.systemd_unit = true;
	expect_one(f, "tables", Severity::Warning, "conntrack table holds 52 of 64",
		   "systemctl stop kvmxdp@virbr0 && kvmxdp detach --bridge virbr0 && kvmxdp attach "
		   "--bridge virbr0 --uplink wlan0 --ct-size 128 |");
	f.systemd_unit = false;
	f.status["conntrack"]["entries"] = 64;
	expect_one(f, "tables", Severity::Error, "new flows are refused", "--ct-size 128");
	f = healthy();
	f.status["bindings"] = {{"entries", 900}, {"max_entries", 1024}};
	expect_one(f, "tables", Severity::Warning, "binding table", "--bind-size 2048");
}

// Pending mappings, one finding each with the reason status gives, and
// the command where the host has one.
TEST(Doctor, PendingMappings)
{
	DoctorFacts f = healthy();
	auto mapping = [](const std::string &ext, const std::string &guest, const char *vm,
			  const std::string &state, const std::string &reason) {
		return json{{"family", "ipv4"},	 {"ext", ext},
			    {"guest", guest},	 {"proto", "any"},
			    {"state", state},	 {"reason", reason.empty() ? json(nullptr) : json(reason)},
			    {"vm", json(vm)},	 {"libvirt_network", nullptr}};
	};
	f.status["mappings"] = json::array(
		{mapping("10.0.0.101", "192.168.122.10", "web1", "active", ""),
		 mapping("10.0.0.70", "192.168.122.11", "web2", "pending",
			 "mapping '10.0.0.70 192.168.122.11': 10.0.0.70 is an address of this host, "
			 "whose traffic is the host's")});
	// A secondary address of the uplink: it can go.
	f.uplink_link.addrs.push_back({parse_ipv4("10.0.0.70"), 24});
	expect_one(f, "mappings", Severity::Warning,
		   "mapping 10.0.0.70 -> 192.168.122.11 (vm web2) is pending, not in the datapath: "
		   "mapping '10.0.0.70 192.168.122.11': 10.0.0.70 is an address of this host",
		   "ip address del 10.0.0.70/24 dev wlan0 |");
	// The uplink's own (primary) address, the host's lease: no command.
	f.uplink_link.addrs = {{parse_ipv4("10.0.0.70"), 24}};
	expect_one(f, "mappings", Severity::Warning, "10.0.0.70 is an address of this host",
		   " | the daemon makes it as soon as the reason is gone");
	f.status["mappings"][1]["reason"] = "no address for MAC 52:54:00:00:00:0b yet (no DHCP lease)";
	expect_one(f, "mappings", Severity::Warning, "no address for MAC 52:54:00:00:00:0b",
		   " | the daemon makes it");
	// A `map add ... vm:` one waiting for its domain's start: a note.
	f.status["mappings"][1]["reason"] = "domain 'web2' is not running (made again when it starts)";
	auto all = run_doctor_checks(f);
	auto mine = only(all, "mappings");
	ASSERT_EQ(mine.size(), 1u);
	EXPECT_EQ(mine[0].severity, Severity::Note);
	EXPECT_EQ(mine[0].command, "virsh start web2");
	EXPECT_EQ(doctor_exit_code(all), 0);
	// Active ones only: ok.
	f.status["mappings"].erase(1);
	EXPECT_TRUE(only(run_doctor_checks(f), "mappings").empty());
}

TEST(Doctor, GenericXdpWhereNativeOrOnTheUplink)
{
	DoctorFacts f = healthy();
	f.ports[0].xdp_prog = "xdp_filter";
	f.ports[0].xdp_attach = "generic";
	f.ports[0].xdp_native = true;
	expect_one(f, "xdp", Severity::Warning, "runs XDP natively",
		   "ip link set dev vnet0 xdpgeneric off");
	f = healthy();
	f.uplink_link.xdp_prog = "xdp_pass";
	f.uplink_link.xdp_attach = "generic";
	expect_one(f, "xdp", Severity::Warning, "WiFi device has no native XDP",
		   "ip link set dev wlan0 xdpgeneric off");
	// Native XDP (kvmxdp's own fast path) is fine.
	f.uplink_link.xdp_attach = "native";
	EXPECT_TRUE(run_doctor_checks(f).empty());
	// XDP wanted by --mode but not attached.
	f = healthy();
	f.status["devices"][2]["why"] =
		"XDP wanted (--mode xdp: native XDP (veth)) but not attached: no daemon yet";
	expect_one(f, "xdp", Severity::Warning, "XDP wanted", "kvmxdp@virbr0");
}

TEST(Doctor, KernelMissingFeatures)
{
	DoctorFacts f = healthy();
	f.kernel["missing"] = {"bpf_check_mtu (Linux >= 5.12)"};
	expect_one(f, "kernel", Severity::Error, "lacks what the datapath needs: bpf_check_mtu",
		   "boot a newer kernel");
	f = healthy();
	f.kernel["degraded"] = {"kernel 5.10.0 is older than 5.15, the oldest kvmxdp supports"};
	expect_one(f, "kernel", Severity::Warning, "older than 5.15", "5.15");
}

TEST(Doctor, JsonAndTextCarryEveryFinding)
{
	DoctorFacts f = healthy();
	f.uplink_link.up = false;
	f.uplink_link.rp_filter = 1;
	auto all = run_doctor_checks(f);
	json j = doctor_json("virbr0", all);
	EXPECT_EQ(j["checks"]["uplink"], "error");
	EXPECT_EQ(j["checks"]["rp_filter"], "warning");
	EXPECT_EQ(j["checks"]["mtu"], "ok");
	EXPECT_EQ(j["errors"], 1);
	EXPECT_EQ(j["warnings"], 1);
	EXPECT_EQ(j["exit_code"], kDoctorExitError);
	const std::string text = format_doctor(j);
	EXPECT_NE(text.find("error    uplink: the uplink wlan0 is down"), std::string::npos)
		<< text;
	EXPECT_NE(text.find("\n         run: ip link set dev wlan0 up\n"), std::string::npos)
		<< text;
	EXPECT_NE(text.find("ok       mtu"), std::string::npos) << text;
	EXPECT_NE(text.find("1 error(s), 1 warning(s)"), std::string::npos) << text;
}

TEST(Doctor, ControlCharactersInNamesArePrinted)
{
	DoctorFacts f = healthy();
	f.uplink = "wl\x1b[2J";
	f.uplink_link.name = f.uplink;
	f.uplink_link.up = false;
	auto all = run_doctor_checks(f);
	for (const auto &x : all) {
		EXPECT_EQ(x.what.find('\x1b'), std::string::npos) << x.what;
		EXPECT_EQ(x.command.find('\x1b'), std::string::npos) << x.command;
		EXPECT_EQ(x.note.find('\x1b'), std::string::npos) << x.note;
	}
}

namespace {

// What bash makes of a fix's words: each word printed on its own line by
// printf, so that a name that breaks out of its quotes shows up as more
// (or other) words, and one that runs a command leaves its mark.
std::string bash_words(const std::string &cmd, const std::string &mark)
{
	const std::string script = "f() { printf '%s\\n' \"$@\"; }; f " + cmd;
	std::string argv = "bash -c " + shell_word(script) + " 2>&1";
	std::string out;
	if (FILE *p = ::popen(argv.c_str(), "r")) {
		char buf[256];
		size_t n;
		while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
			out.append(buf, n);
		::pclose(p);
	}
	EXPECT_EQ(::access(mark.c_str(), F_OK), -1) << "a name ran a command: " << cmd;
	return out;
}

} // namespace

// Names are the kernel's: any byte but '/', ':' and blanks.  Every fix that
// names one must be pasteable: bash sees the name as one word, as it is.
TEST(Doctor, FixesQuoteOddNames)
{
	const std::string mark = ::testing::TempDir() + "kvx_doctor_pwned";
	::unlink(mark.c_str());
	const std::string odd[] = {"br;touch${IFS}" + mark, "br$(touch${IFS}" + mark + ")",
				   "b'r\"`x`", "br\x01\x1b[2J", "-br*"};
	for (const std::string &name : odd) {
		DoctorFacts f = healthy();
		f.bridge = f.bridge_link.name = name;
		f.uplink = f.uplink_link.name = name + "u";
		f.bridge_forwarding = 0;
		f.status["devices"][1]["prog"] = nullptr;
		f.uplink_link.up = false;
		f.uplink_link.rp_filter = 1;
		f.ports[0].name = name + "p";
		f.ports[0].mtu = 1400;
		f.status["conntrack"] = {{"entries", 64}, {"max_entries", 64}};
		f.iptables_save = "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n";
		auto all = run_doctor_checks(f);
		ASSERT_GE(all.size(), 6u);
		for (const auto &x : all) {
			EXPECT_EQ(x.command.find('\x1b'), std::string::npos) << x.command;
			EXPECT_EQ(x.note.find('\x1b'), std::string::npos) << x.note;
			// The words of each command hold the name as one word.
			if (x.command.find("ip link set dev ") == 0) {
				const std::string words = bash_words(
					x.command.substr(16, x.command.find(' ', 16) - 16), mark);
				EXPECT_TRUE(words == name + "u\n" || words == name + "p\n")
					<< x.command << " -> " << words;
			}
		}
		auto fix_of = [&](const std::string &check, const std::string &needle = "") {
			for (const auto &x : all)
				if (x.check == check && x.command.find(needle) != std::string::npos)
					return x.command;
			for (const auto &x : all)
				if (x.check == check && x.note.find(needle) != std::string::npos)
					return x.note;
			return std::string();
		};
		// sysctl.d's line and file, iptables' -i, kvmxdp's --bridge: one
		// word each.
		const std::string rp = fix_of("rp_filter");
		ASSERT_EQ(rp.rfind("echo ", 0), 0u) << rp;
		EXPECT_EQ(bash_words(rp.substr(5, rp.find(" > ") - 5), mark),
			  "net/ipv4/conf/" + name + "u/rp_filter = 2\n");
		const auto file = rp.find(" > ") + 3;
		EXPECT_EQ(bash_words(rp.substr(file, rp.find(" && ") - file), mark),
			  "/etc/sysctl.d/90-kvmxdp-rp_filter-" + name + "u.conf\n");
		const std::string fw = fix_of("firewall");
		ASSERT_EQ(fw.rfind("iptables -I FORWARD ", 0), 0u) << fw;
		EXPECT_EQ(bash_words(fw.substr(20, fw.find(" && iptables") - 20), mark),
			  "-i\n" + name + "\n-j\nACCEPT\n");
		const std::string tb = fix_of("tables");
		ASSERT_EQ(tb.rfind("kvmxdp detach --bridge ", 0), 0u) << tb;
		EXPECT_EQ(bash_words(tb.substr(23, tb.find(" && kvmxdp") - 23), mark), name + "\n");
		// The unit: systemd-escape gets the name as one word.
		const std::string dp = fix_of("datapath", "systemd-escape");
		const auto u = dp.find("$(systemd-escape -- ");
		ASSERT_NE(u, std::string::npos) << dp;
		const std::string arg = dp.substr(u + 20, dp.find(")\"", u) - u - 20);
		EXPECT_EQ(bash_words(arg, mark), name + "\n") << dp;
	}
}

// A command is one shell line that a root shell runs as printed: no prose
// in it (the remark goes to the note), no placeholder to fill in.  A
// finding whose fix is not a command on this host has none.
TEST(Doctor, CommandsAreExactShellLines)
{
	DoctorFacts f = healthy();
	f.bridge_forwarding = 0;
	f.status["devices"][1]["prog"] = nullptr;
	f.status["daemon_pid"] = nullptr;
	f.uplink_link.rp_filter = 1;
	f.bridge_link.rp_filter = 1;
	f.ports[0].mtu = 1400;
	f.status["conntrack"] = {{"entries", 64}, {"max_entries", 64}};
	f.iptables_save = "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n*nat\n:LIBVIRT_PRT - [0:0]\n"
			  "-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE\n"
			  "COMMIT\n";
	f.br_netfilter = true;
	f.bridge_nf_call_iptables = 1;
	f.uplink_link.xdp_prog = "xdp_pass";
	f.uplink_link.xdp_attach = "generic";
	auto all = run_doctor_checks(f);
	f = healthy();
	f.status = nullptr;
	for (auto &x : run_doctor_checks(f))
		all.push_back(x);
	f = healthy();
	f.uplink_link.addrs.clear();
	for (auto &x : run_doctor_checks(f))
		all.push_back(x);
	ASSERT_GE(all.size(), 10u);
	size_t commands = 0;
	for (const auto &x : all) {
		if (x.command.empty()) {
			EXPECT_NE(x.note, "")
				<< x.check << ": neither command nor note: " << x.what;
			continue;
		}
		commands++;
		for (const char *prose :
		     {" (", " or ", "NETWORK", "DEVICE", "GATEWAY", "ADDRESS", "\n"})
			EXPECT_EQ(x.command.find(prose), std::string::npos)
				<< x.check << ": '" << prose << "' in " << x.command;
	}
	EXPECT_GE(commands, 9u);
	// Without a daemon and not under systemd: attach, which the note says
	// stays in the foreground; under systemd: the unit.
	f = healthy();
	f.status["daemon_pid"] = nullptr;
	auto d = only(run_doctor_checks(f), "datapath");
	ASSERT_EQ(d.size(), 1u);
	EXPECT_EQ(d[0].command, "kvmxdp attach --bridge virbr0");
	EXPECT_NE(d[0].note.find("foreground"), std::string::npos) << d[0].note;
	f.systemd_unit = true;
	d = only(run_doctor_checks(f), "datapath");
	EXPECT_EQ(d[0].command, "systemctl restart kvmxdp@virbr0");
	json j = doctor_json("virbr0", run_doctor_checks(f));
	EXPECT_EQ(j["findings"][0]["command"], "systemctl restart kvmxdp@virbr0");
	EXPECT_TRUE(j["findings"][0]["note"].is_null());
	EXPECT_FALSE(j["findings"][0].contains("fix"));
}
