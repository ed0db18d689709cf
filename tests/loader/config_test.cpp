// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "temp_dir.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "model/config.hpp"
#include "base/error.hpp"

using namespace kvmxdp;
using nlohmann::json;

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
	i.pin_dir = "/sys/fs/bpf/kvmxdp/br0:10";
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
	EXPECT_EQ(j["version"], 1);
	EXPECT_EQ(j["instances"][0]["subnet"], "192.168.122.0/24");
	EXPECT_EQ(j["instances"][0]["nat_port_lo"], 61000);
	EXPECT_FALSE(j["instances"][1]["saved_sysctls"].contains("forwarding"));
	Config back = config_from_json(json::parse(j.dump()));
	ASSERT_EQ(back.instances.size(), 2u);
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_TRUE(back.instances[1] == c.instances[1]);
	EXPECT_FALSE(back.instances[1].saved_forwarding.has_value());
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
	EXPECT_TRUE(has(with([](json &j) { j["version"] = 2; }), "version"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"] = 5; }), "instances"));
	EXPECT_TRUE(has(with([](json &j) { j["instances"].push_back(j["instances"][0]); }),
			"instances[1].bridge"));
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
