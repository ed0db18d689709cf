// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "error_of.hpp"
#include "temp_dir.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "model/config.hpp"
#include "base/error.hpp"

using namespace kvmxdp;
using nlohmann::json;
using test::error_of;

namespace {

Instance sample(const std::string &bridge = "br0.10")
{
	Instance i;
	i.bridge = bridge;
	i.uplink = "wlan0";
	i.subnet = parse_cidr("192.168.122.0/24");
	i.nat_ports = {61000, 65535};
	i.eif = true;
	i.ct_size = 4096;
	i.bind_size = 2048;
	i.bpffs = "/sys/fs/bpf";
	i.pin_dir = pin_dir_for(i.bpffs, bridge);
	i.clsact_created_bridge = true;
	i.clsact_created_uplink = false;
	i.saved_forwarding = "0";
	i.saved_reserved_ports = "";
	return i;
}

std::string field_error(const json &j)
{
	try {
		config_from_json(j);
	} catch (const Error &e) {
		return e.what();
	}
	return "(no error)";
}

using test::TempDir;

} // namespace

TEST(Config, JsonRoundTrip)
{
	Config c;
	c.instances.push_back(sample());
	Instance other = sample("kb2");
	other.saved_forwarding.reset();
	other.eif = false;
	c.instances.push_back(other);
	json j = to_json(c);
	EXPECT_EQ(j["version"], Config::kVersion);
	EXPECT_EQ(j["instances"][0]["subnet"], "192.168.122.0/24");
	EXPECT_EQ(j["instances"][0]["nat_port_lo"], 61000);
	EXPECT_FALSE(j["instances"][1]["saved_sysctls"].contains("forwarding"));
	Config back = config_from_json(json::parse(j.dump()));
	ASSERT_EQ(back.instances.size(), 2u);
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_TRUE(back.instances[1] == c.instances[1]);
	EXPECT_FALSE(back.instances[1].saved_forwarding.has_value());
}

TEST(Config, Subnet6RoundTripAndValidation)
{
	Config c;
	Instance i = sample();
	i.subnet6 = parse_subnet6("fd42::/64", "--subnet6");
	c.instances.push_back(i);
	c.instances.push_back(sample("kb2")); // none: no key at all
	json j = to_json(c);
	EXPECT_EQ(j["instances"][0]["subnet6"], "fd42::/64");
	EXPECT_FALSE(j["instances"][1].contains("subnet6"));
	Config back = config_from_json(json::parse(j.dump()));
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_FALSE(back.instances[1].subnet6.has_value());
	EXPECT_FALSE(back.instances[0] == back.instances[1]);
	// A hand-edited value the CLI would refuse: the same check, the field named.
	j["instances"][0]["subnet6"] = "fe80::/64";
	EXPECT_EQ(field_error(j), "invalid instances[0].subnet6 'fe80::/64': overlaps fe80::/10, "
				  "link-local");
	j["instances"][0]["subnet6"] = 64;
	EXPECT_NE(field_error(j).find("instances[0].subnet6"), std::string::npos) << field_error(j);
}

// The uplink's accept_ra before attach made it 2 (IPv6 on), and the device
// it belongs to: recorded for detach, validated on read.
TEST(Config, SavedAcceptRaRoundTripAndValidation)
{
	Config c;
	Instance with = sample();
	with.saved_accept_ra = "1";
	with.accept_ra_dev = "wlan0";
	c.instances = {with, sample("kb2")};
	json j = to_json(c);
	EXPECT_EQ(j["instances"][0]["saved_sysctls"]["accept_ra"], "1");
	EXPECT_EQ(j["instances"][0]["saved_sysctls"]["accept_ra_dev"], "wlan0");
	EXPECT_FALSE(j["instances"][1]["saved_sysctls"].contains("accept_ra"));
	Config back = config_from_json(json::parse(j.dump()));
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_FALSE(back.instances[1].saved_accept_ra.has_value());
	j["instances"][0]["saved_sysctls"]["accept_ra"] = "3";
	EXPECT_EQ(field_error(j), "instances[0].saved_sysctls.accept_ra: '3' is not 0, 1 or 2");
	j["instances"][0]["saved_sysctls"]["accept_ra"] = "1";
	j["instances"][0]["saved_sysctls"]["accept_ra_dev"] = "../all";
	EXPECT_NE(field_error(j).find("instances[0].saved_sysctls.accept_ra_dev"), std::string::npos)
		<< field_error(j);
	j["instances"][0]["saved_sysctls"].erase("accept_ra_dev");
	EXPECT_NE(field_error(j).find("instances[0].saved_sysctls.accept_ra_dev"), std::string::npos)
		<< field_error(j);
}

// Two instances with IPv6 on one uplink: the first made its accept_ra 2
// (saved 1), the second found 2.  The first's detach leaves 2 (the second's
// forwarding would purge the uplink's RA default route) and hands the
// saved 1 to the second, whose detach writes it back.  A value the admin
// set while attached (0) stays.
TEST(Config, AcceptRaReleasedByTheLastInstanceAndOnlyFrom2)
{
	Config c;
	Instance i1 = sample("kb1"), i2 = sample("kb2"), other = sample("kb3");
	i1.uplink = i2.uplink = "wlan0";
	other.uplink = "eth0";
	i1.saved_accept_ra = "1";
	i1.accept_ra_dev = "wlan0";
	c.instances = {i1, i2, other};
	EXPECT_EQ(accept_ra_release(c, "kb1", "wlan0", "1", std::string("2")), std::nullopt);
	ASSERT_TRUE(c.find("kb2")->saved_accept_ra.has_value());
	EXPECT_EQ(*c.find("kb2")->saved_accept_ra, "1");
	EXPECT_EQ(c.find("kb2")->accept_ra_dev, "wlan0");
	EXPECT_FALSE(c.find("kb3")->saved_accept_ra.has_value());
	c.remove("kb1");
	EXPECT_EQ(accept_ra_release(c, "kb2", "wlan0", "1", std::string("2")),
		  std::optional<std::string>("1"));
	// The admin set 0 while attached: left alone.
	EXPECT_EQ(accept_ra_release(c, "kb2", "wlan0", "1", std::string("0")), std::nullopt);
	EXPECT_EQ(accept_ra_release(c, "kb2", "wlan0", "1", std::nullopt), std::nullopt);
	// An instance with IPv6 off on that uplink needs nothing of it.
	c.find("kb3")->uplink = "wlan0";
	c.find("kb3")->ipv6 = Ipv6Choice::Off;
	EXPECT_EQ(accept_ra_release(c, "kb2", "wlan0", "1", std::string("2")),
		  std::optional<std::string>("1"));
}

// attach --ipv6: recorded unless auto, so that configs of older versions
// (no key) read as auto, and auto writes what they would.
TEST(Config, Ipv6ChoiceRoundTripAndValidation)
{
	Config c;
	Instance off = sample();
	off.ipv6 = Ipv6Choice::Off;
	Instance nat = sample("kb2");
	nat.ipv6 = Ipv6Choice::Nat66;
	nat.saved_forwarding6 = "0"; // the bridge's IPv6 forwarding before attach
	c.instances = {off, nat, sample("kb3")};
	json j = to_json(c);
	EXPECT_EQ(j["instances"][1]["saved_sysctls"]["forwarding6"], "0");
	EXPECT_FALSE(j["instances"][0]["saved_sysctls"].contains("forwarding6"));
	EXPECT_EQ(j["instances"][0]["ipv6"], "off");
	EXPECT_EQ(j["instances"][1]["ipv6"], "nat66");
	EXPECT_FALSE(j["instances"][2].contains("ipv6"));
	Config back = config_from_json(json::parse(j.dump()));
	EXPECT_EQ(back.instances[0].ipv6, Ipv6Choice::Off);
	EXPECT_EQ(back.instances[1].ipv6, Ipv6Choice::Nat66);
	EXPECT_EQ(back.instances[2].ipv6, Ipv6Choice::Auto);
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_TRUE(back.instances[1] == c.instances[1]);
	EXPECT_FALSE(back.instances[0] == back.instances[1]);
	j["instances"][1]["saved_sysctls"]["forwarding6"] = "2";
	EXPECT_EQ(field_error(j), "instances[1].saved_sysctls.forwarding6: '2' is not 0 or 1");
	j["instances"][1]["saved_sysctls"].erase("forwarding6");
	j["instances"][0]["ipv6"] = "relay";
	EXPECT_EQ(field_error(j), "(no error)");
	EXPECT_EQ(config_from_json(j).instances[0].ipv6, Ipv6Choice::Relay);
	j["instances"][0]["ipv6"] = "on";
	EXPECT_EQ(field_error(j), "invalid instances[0].ipv6 'on': use auto, nat66, relay or off");
	j["instances"][0]["ipv6"] = "relay";
	j["instances"][0]["ipv6_inbound"] = "open";
	Config relay = config_from_json(j);
	EXPECT_TRUE(relay.instances[0].ipv6_inbound_open);
	EXPECT_EQ(to_json(relay)["instances"][0]["ipv6_inbound"], "open");
	EXPECT_FALSE(to_json(relay)["instances"][1].contains("ipv6_inbound"));
	EXPECT_FALSE(relay.instances[0] == back.instances[0]);
	j["instances"][0]["ipv6_inbound"] = "all";
	EXPECT_EQ(field_error(j), "invalid instances[0].ipv6_inbound 'all': use stateful or open");
}

TEST(Config, GatewayMacRoundTripAndValidation)
{
	Config c;
	Instance i = sample();
	StaticMapping sm;
	sm.m = parse_mapping("10.77.0.50", "192.168.122.10", "");
	sm.network =
		NetId{parse_cidr("10.77.0.0/24"), parse_ipv4("10.77.0.1"), "02:00:00:00:00:01"};
	i.mappings.push_back(sm);
	c.instances.push_back(i);
	json j = to_json(c);
	EXPECT_EQ(j["instances"][0]["mappings"][0]["gateway_mac"], "02:00:00:00:00:01");
	Config back = config_from_json(json::parse(j.dump()));
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	j["instances"][0]["mappings"][0]["gateway_mac"] = "02:00:00:00:00:0G";
	try {
		config_from_json(j);
		ADD_FAILURE() << "an invalid gateway_mac was accepted";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("gateway_mac: invalid '02:00:00:00:00:0G'"),
			  std::string::npos)
			<< e.what();
	}
}

// An IPv6 mapping's network (network6, router6, router6_mac): written and
// read back; an older config without them loads untied; bad values name
// the key.
TEST(Config, Network6RoundTripAndValidation)
{
	Config c;
	Instance i = sample();
	StaticMapping sm;
	sm.m = parse_mapping("2001:db8:1::101", "fd42::101", "");
	sm.network6 = NetId6{network_of6(parse_ipv6("2001:db8:1::"), 64), parse_ipv6("fe80::1"),
			     "02:00:00:00:00:01"};
	i.mappings.push_back(sm);
	c.instances.push_back(i);
	json j = to_json(c);
	const json &m = j["instances"][0]["mappings"][0];
	EXPECT_EQ(m["network6"], "2001:db8:1::/64");
	EXPECT_EQ(m["router6"], "fe80::1");
	EXPECT_EQ(m["router6_mac"], "02:00:00:00:00:01");
	EXPECT_TRUE(m["network"].is_null());
	Config back = config_from_json(json::parse(j.dump()));
	ASSERT_TRUE(back.instances[0].mappings[0].network6);
	EXPECT_TRUE(back.instances[0] == c.instances[0]);

	// Older configs: no network6, untied.
	json old = j;
	for (const char *k : {"network6", "router6", "router6_mac"})
		old["instances"][0]["mappings"][0].erase(k);
	EXPECT_FALSE(config_from_json(old).instances[0].mappings[0].network6.has_value());

	const struct {
		const char *key;
		json value;
		const char *error;
	} bad[] = {
		{"router6_mac", "02:00:00:00:00:0G",
		 "instances[0].mappings[0].router6_mac: invalid '02:00:00:00:00:0G'"},
		{"router6", "fe80::zz", "instances[0].mappings[0].router6: "},
		{"network6", "2001:db8:1::1/64", "instances[0].mappings[0].network6: "},
	};
	for (const auto &b : bad) {
		json e = j;
		e["instances"][0]["mappings"][0][b.key] = b.value;
		EXPECT_NE(field_error(e).find(b.error), std::string::npos)
			<< b.key << ": " << field_error(e);
	}
	json lone = old;
	lone["instances"][0]["mappings"][0]["router6"] = "fe80::1";
	EXPECT_EQ(field_error(lone), "instances[0].mappings[0].router6: given without network6");
	json v4 = j;
	v4["instances"][0]["mappings"][0]["ext"] = "10.77.0.50";
	v4["instances"][0]["mappings"][0]["guest"] = "192.168.122.10";
	EXPECT_EQ(field_error(v4), "instances[0].mappings[0].network6: given for an IPv4 mapping");
}

TEST(Config, LibvirtOwnerRoundTripAndValidation)
{
	Config c;
	Instance i = sample();
	StaticMapping vm;
	vm.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	vm.vm = "web1";
	vm.lease_mac = "52:54:00:ab:cd:01";
	StaticMapping net;
	net.m = parse_mapping("10.77.0.50", "192.168.122.11", "");
	net.libvirt_network = "default";
	StaticMapping plain;
	plain.m = parse_mapping("10.77.0.51", "192.168.122.12", "");
	// IPv6 mappings: recorded in the CLI's spelling, read back the same.
	StaticMapping fwd6, one6;
	fwd6.m = parse_mapping("[uplink]:2222", "[fd42::14]:22", "tcp");
	one6.m = parse_mapping("2001:db8:1::101", "fd42::101", "");
	i.mappings = {vm, net, plain, fwd6, one6};
	c.instances.push_back(i);
	json j = to_json(c);
	const json &ms = j["instances"][0]["mappings"];
	EXPECT_EQ(ms[0]["vm"], "web1");
	EXPECT_EQ(ms[0]["lease_mac"], "52:54:00:ab:cd:01");
	EXPECT_EQ(ms[1]["libvirt_network"], "default");
	EXPECT_FALSE(ms[2].contains("vm")); // a plain mapping's JSON as before
	EXPECT_FALSE(ms[2].contains("lease_mac"));
	EXPECT_EQ(ms[3]["ext"], "[uplink]:2222");
	EXPECT_EQ(ms[3]["guest"], "[fd42::14]:22");
	EXPECT_EQ(ms[4]["ext"], "2001:db8:1::101");
	Config back = config_from_json(json::parse(j.dump()));
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	j["instances"][0]["mappings"][0]["vm"] = "../x";
	EXPECT_EQ(field_error(j), "instances[0].mappings[0].vm: vm '../x' is not a libvirt name");
	j["instances"][0]["mappings"][0]["vm"] = "web1";
	j["instances"][0]["mappings"][0]["lease_mac"] = "52:54:00:AB:CD:01";
	EXPECT_NE(field_error(j).find("lease_mac: invalid '52:54:00:AB:CD:01'"), std::string::npos)
		<< field_error(j);
}

TEST(Config, MappingOriginAndPending)
{
	Config c;
	Instance i = sample();
	StaticMapping meta, cli, waiting;
	meta.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	meta.vm = "web1";
	meta.from_metadata = true;
	meta.metadata_force = true; // its forward's force='yes'
	cli.m = parse_mapping("uplink:2223", "192.168.122.10:80", "tcp");
	cli.vm = "web1";
	// A hook's mapping waiting for its guest's lease: no guest address yet.
	waiting.m = parse_mapping("uplink:2224", "0.0.0.0:22", "tcp");
	waiting.vm = "db1";
	waiting.lease_mac = "52:54:00:ab:cd:02";
	waiting.from_metadata = true;
	waiting.pending = "no address for MAC 52:54:00:ab:cd:02 yet (no DHCP lease)";
	i.mappings = {meta, cli, waiting};
	c.instances.push_back(i);
	// A bridge never attached: the pending mappings a hook recorded.
	c.detached["virbr9"].mappings = {waiting};
	json j = to_json(c);
	const json &ms = j["instances"][0]["mappings"];
	EXPECT_EQ(ms[0]["origin"], "metadata");
	EXPECT_EQ(ms[1]["origin"], "cli");
	EXPECT_EQ(ms[2]["pending"], waiting.pending);
	EXPECT_EQ(j["detached"]["virbr9"]["uplink"], "");
	Config back = config_from_json(json::parse(j.dump()));
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_TRUE(back.detached == c.detached);
	EXPECT_EQ(ms[0]["force"], true);
	EXPECT_FALSE(ms[1].contains("force"));
	EXPECT_TRUE(back.instances[0].mappings[0].metadata_force);
	EXPECT_FALSE(back.instances[0].mappings[2].metadata_force);
	json forced_cli = j;
	forced_cli["instances"][0]["mappings"][1]["force"] = true;
	EXPECT_EQ(field_error(forced_cli), "instances[0].mappings[1].force: given for a mapping "
					   "not made by libvirt metadata");
	// Older configs: their hooks owned whatever carried the VM's name.
	json old = j;
	old["instances"][0]["mappings"][1].erase("origin");
	EXPECT_TRUE(config_from_json(old).instances[0].mappings[1].from_metadata);
	j["instances"][0]["mappings"][1]["origin"] = "user";
	EXPECT_EQ(field_error(j), "instances[0].mappings[1].origin: 'user' is not metadata or cli");
	j["instances"][0]["mappings"][1]["origin"] = "cli";
	// Only a pending mapping may lack its guest's address.
	j["instances"][0]["mappings"][2].erase("pending");
	EXPECT_EQ(field_error(j),
		  "instances[0].mappings[2].guest: '0.0.0.0:22' is no guest address");
}

// `map allow`: absent is the default, an empty list allows nothing; entries
// are checked as the command line checks them.
TEST(Config, MetadataAllowRoundTripAndValidation)
{
	Config c;
	EXPECT_FALSE(to_json(c).contains("metadata_allow"));
	EXPECT_FALSE(config_from_json(to_json(c)).metadata_allow);
	c.metadata_allow = std::vector<std::string>{};
	EXPECT_EQ(config_from_json(to_json(c)).metadata_allow, std::vector<std::string>{});
	c.metadata_allow = std::vector<std::string>{"uplink:2000-2999", "192.168.1.101"};
	json j = to_json(c);
	EXPECT_EQ(config_from_json(j).metadata_allow, c.metadata_allow);
	j["metadata_allow"][1] = "uplink:70000";
	EXPECT_EQ(field_error(j).rfind("metadata_allow: allow-list entry 'uplink:70000': ", 0), 0u)
		<< field_error(j);
	j["metadata_allow"] = "uplink:22";
	EXPECT_EQ(field_error(j), "metadata_allow: expected an array of strings");
}

TEST(Config, ValidationNamesTheField)
{
	Config c;
	c.instances.push_back(sample());
	json good = to_json(c);

	auto with = [&](const std::function<void(json &)> &edit) {
		json j = good;
		edit(j);
		return field_error(j);
	};
	auto has = [](const std::string &msg, const std::string &field) {
		return msg.find(field) != std::string::npos;
	};
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["nat_port_lo"] = 0; }),
			"instances[0].nat_port_lo"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["nat_port_hi"] = 70000; }),
			"instances[0].nat_port_hi"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["nat_port_lo"] = "x"; }),
			"instances[0].nat_port_lo"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["nat_port_lo"] = -3; }),
			"instances[0].nat_port_lo"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["nat_port_hi"] = 60000; }),
			"instances[0].nat_port_hi"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["subnet"] = "10.0.0.1/24"; }),
			"instances[0].subnet"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0].erase("uplink"); }),
			"instances[0].uplink"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["eif"] = 1; }), "instances[0].eif"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["clsact_created"]["uplink"] = "no"; }),
			"instances[0].clsact_created.uplink"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["saved_sysctls"]["forwarding"] = 0; }),
			"instances[0].saved_sysctls.forwarding"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"][0]["ct_size"] = 0; }),
			"instances[0].ct_size"));
	EXPECT_TRUE(has(with([](json &j) { j["version"] = 0; }), "version"));
	EXPECT_TRUE(has(with([](json &j) { j["version"] = Config::kVersion + 1; }), "version"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"] = 5; }), "instances"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"].push_back(j["instances"][0]); }),
			"instances[1].bridge"));
}

// Both directions of a version change: a config of version 1 (an older
// kvmxdp's) is read and saved as the current version; one of a newer
// version than this kvmxdp reads (a downgrade) is refused with one line
// saying so, not misread.
TEST(Config, VersionsOlderReadNewerRefused)
{
	EXPECT_EQ(Config::kVersion, 2);
	json j = to_json([] {
		Config c;
		c.instances.push_back(sample());
		return c;
	}());
	j["version"] = 1;
	const Config old = config_from_json(j);
	ASSERT_EQ(old.instances.size(), 1u);
	EXPECT_EQ(to_json(old)["version"], 2);
	j["version"] = 3;
	const std::string e = field_error(j);
	EXPECT_NE(e.find("version: 3 is newer than this kvmxdp"), std::string::npos) << e;
	EXPECT_NE(e.find("reads (up to 2)"), std::string::npos) << e;
	EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(Config, UpsertFindRemove)
{
	Config c;
	c.upsert(sample("a"));
	c.upsert(sample("b"));
	Instance a2 = sample("a");
	a2.uplink = "eth9";
	c.upsert(a2);
	ASSERT_EQ(c.instances.size(), 2u);
	EXPECT_EQ(c.find("a")->uplink, "eth9");
	EXPECT_TRUE(c.remove("a"));
	EXPECT_FALSE(c.remove("a"));
	EXPECT_EQ(c.find("a"), nullptr);
	EXPECT_NE(c.find("b"), nullptr);
}

TEST(ConfigStore, AtomicSaveAndLoad)
{
	TempDir t;
	// The parent directory does not exist yet: save creates it.
	ConfigStore store(t.path() + "/etc/kvmxdp.json");
	EXPECT_TRUE(store.load().instances.empty()); // missing file = empty
	Config c;
	c.instances.push_back(sample());
	{
		FileLock l = store.lock(std::chrono::seconds(1));
		store.save(c);
	}
	Config back = store.load();
	ASSERT_EQ(back.instances.size(), 1u);
	EXPECT_TRUE(back.instances[0] == c.instances[0]);

	// No temporary file is left behind, only the config and its lock.
	int files = 0;
	DIR *d = ::opendir((t.path() + "/etc").c_str());
	ASSERT_NE(d, nullptr);
	while (dirent *de = ::readdir(d)) {
		std::string n = de->d_name;
		if (n == "." || n == "..")
			continue;
		files++;
		EXPECT_TRUE(n == "kvmxdp.json" || n == "kvmxdp.json.lock") << n;
	}
	::closedir(d);
	EXPECT_EQ(files, 2);

	// Overwrite keeps the inode semantics of rename: an open reader keeps
	// the old content.
	std::ifstream old_reader(store.path());
	c.instances.clear();
	store.save(c);
	std::string old_text((std::istreambuf_iterator<char>(old_reader)),
			     std::istreambuf_iterator<char>());
	EXPECT_NE(old_text.find("br0.10"), std::string::npos);
	EXPECT_TRUE(store.load().instances.empty());
}

// The config is root's alone (the unit's ConfigurationDirectoryMode=0700
// and UMask=0077): saved 0600 in a directory made 0700; and one another
// user could have written (a config in /tmp, one left 0666) steers no
// root process: refused with one line naming it.
TEST(ConfigStore, RootsAloneAndReadOnlyWhenNobodyElseCouldWriteIt)
{
	TempDir t;
	const mode_t old = ::umask(0);
	ConfigStore store(t.path() + "/etc/kvmxdp.json");
	Config c;
	c.instances.push_back(sample());
	{
		FileLock l = store.lock(std::chrono::seconds(1));
		store.save(c);
	}
	::umask(old);
	struct stat st = {};
	ASSERT_EQ(::stat((t.path() + "/etc").c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 07777, 0700u);
	ASSERT_EQ(::stat(store.path().c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 07777, 0600u);
	EXPECT_EQ(store.load().instances.size(), 1u);

	ASSERT_EQ(::chmod(store.path().c_str(), 0666), 0);
	EXPECT_EQ(error_of([&] { store.load(); }),
		  store.path() +
			  ": writable by group or others (mode 0666): kvmxdp reads only files "
			  "that root alone can change");
	ASSERT_EQ(::chmod(store.path().c_str(), 0644), 0);
	EXPECT_EQ(store.load().instances.size(), 1u) << "readable by others is fine";
	if (::geteuid() != 0)
		return;
	ASSERT_EQ(::chown(store.path().c_str(), 65534, 65534), 0);
	EXPECT_NE(error_of([&] { store.load(); }).find(": owned by uid 65534, not root"),
		  std::string::npos);
}

TEST(ConfigStore, BrokenFileIsAClearError)
{
	TempDir t;
	std::string path = t.path() + "/c.json";
	std::ofstream(path) << "{ not json";
	try {
		ConfigStore(path).load();
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
	}
	std::ofstream(path) << R"({"version":1,"instances":[{"bridge":"x"}]})";
	try {
		ConfigStore(path).load();
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("instances[0].uplink"), std::string::npos)
			<< e.what();
	}
}

// A hand-edited config is held to what the command line accepts, one check
// per value shared with it: every refusal is one line naming the file, the
// key and the value.
TEST(ConfigStore, HandEditedValuesAreCheckedLikeTheCommandLine)
{
	TempDir t;
	const std::string path = t.path() + "/kvmxdp.json";
	Config c;
	Instance i = sample();
	i.mappings = {
		{parse_mapping("192.168.1.101", "192.168.122.11", ""), false, std::nullopt},
		{parse_mapping("uplink:2222", "192.168.122.12:22", "tcp"), false, std::nullopt},
	};
	c.instances.push_back(i);
	c.detached["br1"] = Detached{"eth0", {}};
	const json good = to_json(c);
	std::ofstream(path) << good.dump(2);
	ASSERT_NO_THROW(ConfigStore(path).load());

	struct Case {
		std::function<void(json &)> edit;
		std::string error; // after "config PATH: "
	};
	auto inst = [](json &j) -> json & { return j["instances"][0]; };
	auto mapping = [](const char *ext, const char *guest, const char *proto) {
		return json{{"ext", ext},	    {"guest", guest},	  {"proto", proto},
			    {"add_address", false}, {"network", nullptr}, {"gateway", nullptr}};
	};
	const std::vector<Case> cases = {
		{[&](json &j) { inst(j)["bridge"] = "a/b"; },
		 "instances[0].bridge: invalid interface name 'a/b'"},
		{[&](json &j) { inst(j)["uplink"] = "wlan0\n"; },
		 "instances[0].uplink: invalid interface name 'wlan0\\x0a'"},
		{[&](json &j) { inst(j)["uplink"] = "0123456789abcdef"; },
		 "instances[0].uplink: invalid interface name '0123456789abcdef'"},
		{[&](json &j) {
			 inst(j)["uplink"] = "auto";
			 inst(j)["uplink_device"] = "..";
		 },
		 "instances[0].uplink_device: invalid interface name '..'"},
		{[&](json &j) { inst(j)["ct_size"] = 16777217; },
		 "invalid instances[0].ct_size '16777217': need 1..16777216"},
		{[&](json &j) { inst(j)["ct_size"] = 4294967296; },
		 "invalid instances[0].ct_size '4294967296': need 1..16777216"},
		{[&](json &j) { inst(j)["bind_size"] = 0; },
		 "invalid instances[0].bind_size '0': need 1..16777216"},
		{[&](json &j) { inst(j)["flow_quota"] = 16777217; },
		 "invalid instances[0].flow_quota '16777217': need 0 (no quota)..16777216"},
		{[&](json &j) { inst(j)["clamp_mss"] = 100; },
		 "invalid instances[0].clamp_mss '100': need 0 (off) or 536..65495"},
		{[&](json &j) { inst(j)["nat_port_lo"] = 0; },
		 "instances[0].nat_port_lo: expected an integer 1..65535, got 0"},
		{[&](json &j) { inst(j)["nat_port_hi"] = 60000; },
		 "instances[0].nat_port_hi: 60000 is smaller than nat_port_lo 61000"},
		{[&](json &j) { inst(j)["subnet"] = "192.168.122.0/31"; },
		 "instances[0].subnet: invalid subnet '192.168.122.0/31': prefix length must be "
		 "1..30"},
		{[&](json &j) { inst(j)["timeouts"] = "udp=0"; },
		 "instances[0].timeouts: invalid timeout 'udp=0': SECONDS must be a number "
		 "1-315360000"},
		{[&](json &j) { inst(j)["eif"] = 1; },
		 "instances[0].eif: expected true or false, got 1"},
		{[&](json &j) { inst(j)["mode"] = "fast"; },
		 "instances[0].mode: 'fast' is not auto, tc or xdp"},
		{[&](json &j) { inst(j)["bpffs"] = "sys/fs/bpf"; },
		 "instances[0].bpffs: 'sys/fs/bpf' is not an absolute directory"},
		{[&](json &j) { inst(j)["pin_dir"] = "/etc"; },
		 "instances[0].pin_dir: '/etc' is not /sys/fs/bpf/kvmxdp/br0:10, the pin directory "
		 "of bridge 'br0.10' on bpffs /sys/fs/bpf"},
		{[&](json &j) { inst(j)["saved_sysctls"]["forwarding"] = "1\n0"; },
		 "instances[0].saved_sysctls.forwarding: '1\\x0a0' is not 0 or 1"},
		{[&](json &j) { inst(j)["saved_sysctls"]["ip_local_reserved_ports"] = "1-x"; },
		 "instances[0].saved_sysctls.ip_local_reserved_ports: cannot parse port list "
		 "'1-x' at '1-x'"},
		{[&](json &j) { inst(j)["mappings"][1]["guest"] = "192.168.123.12:22"; },
		 "instances[0].mappings[1]: mapping 'uplink:2222 192.168.123.12:22 tcp': guest "
		 "192.168.123.12 is not a host address in 192.168.122.0/24"},
		{[&](json &j) {
			 inst(j)["mappings"].push_back(
				 mapping("192.168.1.101", "192.168.122.13", "any"));
		 },
		 "instances[0].mappings[2]: mapping '192.168.1.101 192.168.122.13' conflicts with "
		 "'192.168.1.101 192.168.122.11': one external address, two mappings"},
		{[&](json &j) {
			 inst(j)["mappings"].push_back(
				 mapping("uplink:62000", "192.168.122.14:80", "tcp"));
		 },
		 "instances[0].mappings[2]: mapping 'uplink:62000 192.168.122.14:80 tcp': external "
		 "ports 62000 overlap the NAT port range 61000-65535"},
		{[&](json &j) { j["detached"]["b r"] = j["detached"]["br1"]; },
		 "detached: invalid interface name 'b r'"},
		{[&](json &j) { j["detached"]["br1"]["uplink"] = "x:y"; },
		 "detached.br1.uplink: invalid interface name 'x:y'"},
	};
	for (const Case &k : cases) {
		json j = good;
		k.edit(j);
		std::ofstream(path, std::ios::trunc) << j.dump(2);
		std::string err = "(loaded)";
		try {
			ConfigStore(path).load();
		} catch (const Error &e) {
			err = e.what();
		}
		EXPECT_EQ(err, "config " + path + ": " + k.error);
		EXPECT_EQ(err.find('\n'), std::string::npos) << "one line: " << err;
	}
	// "auto" is what the config says for `--uplink auto`, not a name.
	json j = good;
	j["detached"]["br1"]["uplink"] = "auto";
	EXPECT_NO_THROW(config_from_json(j));
}
