// SPDX-License-Identifier: GPL-2.0
// Static mappings beyond parsing: the config round trip, the network tie,
// --clamp-mss, and apply_mappings() on real kernel hash maps (root; skipped
// without CAP_BPF, failed as root if the kernel refuses a map) - the same code `map add/del`, attach and the daemon run.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "model/config.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "verbs/instance_verbs.hpp"
#include "control/mapping_sync.hpp"
#include "model/mapping.hpp"
#include "kernel/maps.hpp"
#include "kernel/netlink.hpp"
#include "netns_child.hpp"
#include "privileges.hpp"

using namespace kvmxdp;
using kvmxdp::test::child_fail;
using kvmxdp::test::netns_child_setup;
using nlohmann::json;

namespace {

StaticMapping sm(const std::string &ext, const std::string &guest, const std::string &proto = "",
		 bool tied = true)
{
	StaticMapping s;
	s.m = parse_mapping(ext, guest, proto);
	if (tied)
		s.network = NetId{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	return s;
}

Instance inst_with_mappings()
{
	Instance i;
	i.bridge = "virbr0";
	i.uplink = "wlan0";
	i.subnet = parse_cidr("192.168.122.0/24");
	i.nat_ports = {61000, 65535};
	i.ct_size = 4096;
	i.bind_size = 2048;
	i.bpffs = "/sys/fs/bpf";
	i.pin_dir = "/sys/fs/bpf/kvmxdp/virbr0";
	i.clamp_mss = 1400;
	i.mappings = {sm("192.168.1.101", "192.168.122.101"),
		      sm("uplink:8080-8081", "192.168.122.102:80-81", "tcp", false),
		      sm("192.168.1.103:53", "192.168.122.103:53", "udp")};
	i.mappings[2].add_address = true;
	i.mappings[2].network->gateway = 0;
	return i;
}

std::string error_of(const json &j)
{
	try {
		config_from_json(j);
	} catch (const Error &e) {
		return e.what();
	}
	return "(no error)";
}

} // namespace

TEST(MappingConfig, RoundTripWithMappingsAndDetached)
{
	Config c;
	c.instances.push_back(inst_with_mappings());
	c.detached["br1"] = Detached{"eth0", {sm("10.0.0.9", "192.168.100.9")}};
	json j = to_json(c);
	EXPECT_EQ(j["instances"][0]["mappings"][0]["ext"], "192.168.1.101");
	EXPECT_EQ(j["instances"][0]["mappings"][0]["proto"], "any");
	EXPECT_EQ(j["instances"][0]["mappings"][1]["ext"], "uplink:8080-8081");
	EXPECT_TRUE(j["instances"][0]["mappings"][1]["network"].is_null());
	EXPECT_EQ(j["instances"][0]["mappings"][0]["gateway"], "192.168.1.1");
	EXPECT_TRUE(j["instances"][0]["mappings"][2]["gateway"].is_null());
	EXPECT_EQ(j["instances"][0]["clamp_mss"], 1400);
	Config back = config_from_json(json::parse(j.dump()));
	ASSERT_EQ(back.instances.size(), 1u);
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	ASSERT_EQ(back.detached.count("br1"), 1u);
	EXPECT_TRUE(back.detached["br1"] == c.detached["br1"]);
}

TEST(MappingConfig, OlderConfigWithoutMappingsLoads)
{
	Config c;
	c.instances.push_back(inst_with_mappings());
	json j = to_json(c);
	j["instances"][0].erase("mappings");
	j["instances"][0].erase("clamp_mss");
	Config back = config_from_json(j);
	EXPECT_TRUE(back.instances[0].mappings.empty());
	EXPECT_EQ(back.instances[0].clamp_mss, 0);
}

TEST(MappingConfig, ValidationNamesTheField)
{
	Config c;
	c.instances.push_back(inst_with_mappings());
	json good = to_json(c);
	struct Case {
		std::function<void(json &)> edit;
		std::string field;
	} cases[] = {
		{[](json &j) { j["instances"][0]["mappings"] = 5; }, "instances[0].mappings"},
		{[](json &j) { j["instances"][0]["mappings"][1].erase("guest"); },
		 "instances[0].mappings[1].guest"},
		{[](json &j) { j["instances"][0]["mappings"][1]["guest"] = "300.1.1.1:80-81"; },
		 "instances[0].mappings[1]"},
		{[](json &j) { j["instances"][0]["mappings"][1]["proto"] = "sctp"; },
		 "instances[0].mappings[1]"},
		{[](json &j) { j["instances"][0]["mappings"][0]["add_address"] = "yes"; },
		 "instances[0].mappings[0].add_address"},
		{[](json &j) { j["instances"][0]["mappings"][0]["network"] = "192.168.1.7/24"; },
		 "instances[0].mappings[0].network"},
		{[](json &j) { j["instances"][0]["mappings"][0]["gateway"] = "x"; },
		 "instances[0].mappings[0].gateway"},
		{[](json &j) { j["instances"][0]["clamp_mss"] = -1; }, "instances[0].clamp_mss"},
		{[](json &j) { j["detached"] = json::array(); }, "detached"},
		{[](json &j) {
			 j["detached"] = {{"br1", {{"uplink", "x"}}}};
		 },
		 "detached.br1.mappings"},
	};
	for (auto &tc : cases) {
		json j = good;
		tc.edit(j);
		std::string err = error_of(j);
		// The key first, then what is wrong with its value.
		EXPECT_EQ(err.rfind(tc.field + ": ", 0), 0u) << tc.field << " -> " << err;
	}
}

TEST(MappingNetwork, ActiveOnlyOnItsNetwork)
{
	StaticMapping tied = sm("192.168.1.101", "192.168.122.101");
	StaticMapping untied = sm("192.168.1.101", "192.168.122.101", "", false);
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	NetId cafe{parse_cidr("10.0.0.0/16"), parse_ipv4("10.0.0.1"), ""};
	NetId other_gw{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.254"), ""};
	EXPECT_TRUE(mapping_active(tied, home));
	EXPECT_FALSE(mapping_active(tied, cafe));
	EXPECT_FALSE(mapping_active(tied, other_gw)); // same subnet, another router
	EXPECT_FALSE(mapping_active(tied, std::nullopt));
	EXPECT_TRUE(mapping_active(untied, cafe));
	EXPECT_TRUE(mapping_active(untied, std::nullopt));
}

TEST(MappingNetwork, GatewayMacTellsCafeNetworksApart)
{
	// A café network on the same subnet with the same gateway address:
	// only the gateway's MAC differs.
	StaticMapping tied = sm("192.168.1.101", "192.168.122.101");
	tied.network->gateway_mac = "52:54:00:00:00:01";
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), "52:54:00:00:00:01"};
	NetId cafe{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), "52:54:00:00:00:99"};
	NetId unresolved{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	EXPECT_TRUE(mapping_active(tied, home));
	EXPECT_FALSE(mapping_active(tied, cafe));
	EXPECT_FALSE(mapping_active(tied, unresolved)) << "no proof it is the same network";
	// Recorded without a MAC (an older config): subnet and gateway decide
	// until the daemon records one.
	StaticMapping old = sm("192.168.1.101", "192.168.122.101");
	EXPECT_TRUE(mapping_active(old, cafe));
	EXPECT_TRUE(mapping_active(old, unresolved));
	EXPECT_EQ(home.str(), "192.168.1.0/24 via 192.168.1.1 at 52:54:00:00:00:01");
}

TEST(ClampMss, ParseAndValidate)
{
	EXPECT_EQ(parse_clamp_mss("0"), 0);
	EXPECT_EQ(parse_clamp_mss("536"), 536);
	EXPECT_EQ(parse_clamp_mss("1452"), 1452);
	EXPECT_EQ(parse_clamp_mss("65495"), 65495);
	for (const char *bad : {"535", "1", "65496", "65535", "70000", "-1", "14x", ""}) {
		try {
			parse_clamp_mss(bad);
			ADD_FAILURE() << bad << " accepted";
		} catch (const Error &e) {
			EXPECT_NE(std::string(e.what()).find("--clamp-mss"), std::string::npos);
		}
	}
}

namespace {

class MapsFixture : public ::testing::Test {
protected:
	void SetUp() override
	{
		KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
		bind_ = Fd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind", sizeof(kvx_bind_key),
					  sizeof(kvx_bind_val), 1024, nullptr));
		ASSERT_GE(bind_.get(), 0) << "bpf_map_create(t_bind): " << std::strerror(errno);
		ext_ = Fd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_extaddr", sizeof(__be32),
					 sizeof(kvx_extaddr_val), 64, nullptr));
		ASSERT_GE(ext_.get(), 0) << "bpf_map_create(t_extaddr): " << std::strerror(errno);
		ct_ = Fd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct", sizeof(kvx_ct_key),
					sizeof(kvx_ct_val), 1024, nullptr));
		ASSERT_GE(ct_.get(), 0) << "bpf_map_create(t_ct): " << std::strerror(errno);
	}
	MapFds fds() const { return {bind_.get(), ext_.get(), ct_.get()}; }
	size_t nbind() { return dump_hash<kvx_bind_key, kvx_bind_val>(bind_.get()).size(); }
	std::optional<kvx_bind_val> get(uint8_t dir, uint8_t proto, const char *addr, uint16_t port)
	{
		kvx_bind_key k{};
		k.dir = dir;
		k.proto = proto;
		k.addr = htonl(parse_ipv4(addr));
		k.port = htons(port);
		kvx_bind_val v{};
		if (bpf_map_lookup_elem(bind_.get(), &k, &v) != 0)
			return std::nullopt;
		return v;
	}
	std::optional<uint32_t> ext_flags(const char *addr)
	{
		uint32_t be = htonl(parse_ipv4(addr));
		kvx_extaddr_val v{};
		if (bpf_map_lookup_elem(ext_.get(), &be, &v) != 0)
			return std::nullopt;
		return v.flags;
	}
	Fd bind_, ext_, ct_;
	const uint32_t up_ = parse_ipv4("192.168.1.50");
	const NetId home_{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
};

} // namespace

TEST_F(MapsFixture, InstallsPairsAndExtAddrs)
{
	std::vector<StaticMapping> mappings = {sm("192.168.1.101", "192.168.122.101"),
					       sm("uplink:8080-8081", "192.168.122.102:80-81",
						  "tcp")};
	auto r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_EQ(r.bind_added, 6u);
	EXPECT_EQ(nbind(), 6u);
	auto in = get(KVX_BIND_IN, 0, "192.168.1.101", 0);
	ASSERT_TRUE(in);
	EXPECT_EQ(in->addr, htonl(parse_ipv4("192.168.122.101")));
	EXPECT_EQ(in->flags, KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE);
	auto out = get(KVX_BIND_OUT, IPPROTO_TCP, "192.168.122.102", 81);
	ASSERT_TRUE(out);
	EXPECT_EQ(out->addr, htonl(up_));
	EXPECT_EQ(ntohs(out->port), 8081);
	EXPECT_EQ(ext_flags("192.168.1.101"), KVX_EXT_F_ARP);
	EXPECT_FALSE(ext_flags("192.168.1.50")); // the uplink's own: no entry

	// Idempotent: nothing changes on a second run.
	r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(r.bind_added + r.bind_deleted, 0u);
}

// A pending mapping (its VM's hook could not make it yet) claims nothing:
// an entry for its address would have the datapath answer ARP for it or,
// suspended, drop every packet from it as a martian, and its address may
// be the LAN's router's.
TEST_F(MapsFixture, PendingMappingClaimsNoAddress)
{
	std::vector<StaticMapping> mappings = {sm("192.168.1.1", "192.168.122.101"),
					       sm("192.168.1.102", "192.168.122.102")};
	mappings[0].pending = "another host answers ARP for 192.168.1.1";
	auto r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_FALSE(ext_flags("192.168.1.1"));
	EXPECT_FALSE(get(KVX_BIND_IN, 0, "192.168.1.1", 0));
	EXPECT_EQ(ext_flags("192.168.1.102"), KVX_EXT_F_ARP);
	// Made later: its address is claimed then.
	mappings[0].pending.clear();
	apply_mappings(fds(), mappings, up_, home_);
	EXPECT_TRUE(ext_flags("192.168.1.1"));
}

TEST_F(MapsFixture, DelRemovesPairsFlowsAndAddress)
{
	std::vector<StaticMapping> mappings = {sm("192.168.1.101", "192.168.122.101"),
					       sm("uplink:8080", "192.168.122.102:80", "tcp")};
	apply_mappings(fds(), mappings, up_, home_);
	// A flow through each mapping and one dynamic flow.
	auto add_flow = [&](const char *guest, uint16_t gport, const char *ext, uint16_t eport,
			    uint8_t flags) {
		kvx_ct_key k{};
		k.int_addr = htonl(parse_ipv4(guest));
		k.rem_addr = htonl(parse_ipv4("192.168.1.7"));
		k.int_port = htons(gport);
		k.rem_port = htons(40000);
		k.proto = IPPROTO_TCP;
		kvx_ct_val v{};
		v.ext_addr = htonl(parse_ipv4(ext));
		v.ext_port = htons(eport);
		v.flags = flags;
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_ANY), 0);
	};
	add_flow("192.168.122.101", 22, "192.168.1.101", 22, KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);
	add_flow("192.168.122.102", 80, "192.168.1.50", 8080, KVX_CT_F_STATIC);
	add_flow("192.168.122.102", 5555, "192.168.1.50", 62000, 0);

	mappings.erase(mappings.begin()); // map del of the 1:1 mapping
	auto r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_FALSE(get(KVX_BIND_IN, 0, "192.168.1.101", 0));
	EXPECT_FALSE(get(KVX_BIND_OUT, 0, "192.168.122.101", 0));
	EXPECT_FALSE(ext_flags("192.168.1.101"));
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 2u);

	mappings.clear(); // and of the forward
	r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_EQ(nbind(), 0u);
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 1u); // the dynamic flow stays
}

TEST_F(MapsFixture, UplinkMappingsFollowTheAddressLiteralOnesStay)
{
	std::vector<StaticMapping> mappings = {sm("uplink:8080", "192.168.122.102:80", "tcp"),
					       sm("192.168.1.50:2222", "192.168.122.103:22", "tcp"),
					       sm("192.168.1.101", "192.168.122.101")};
	apply_mappings(fds(), mappings, up_, home_);
	const uint32_t up2 = parse_ipv4("192.168.1.60");
	auto r = apply_mappings(fds(), mappings, up2, home_);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_FALSE(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.50", 8080));
	EXPECT_TRUE(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.60", 8080));
	EXPECT_EQ(get(KVX_BIND_OUT, IPPROTO_TCP, "192.168.122.102", 80)->addr, htonl(up2));
	// A literal address stays where it was (now a secondary one: proxy ARP).
	EXPECT_TRUE(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.50", 2222));
	EXPECT_EQ(ext_flags("192.168.1.50"), KVX_EXT_F_ARP);
	EXPECT_TRUE(get(KVX_BIND_IN, 0, "192.168.1.101", 0));
}

TEST_F(MapsFixture, SuspendedOnAnotherNetworkResumedOnReturn)
{
	std::vector<StaticMapping> mappings = {sm("192.168.1.101", "192.168.122.101"),
					       sm("uplink:8080", "192.168.122.102:80", "tcp")};
	apply_mappings(fds(), mappings, up_, home_);
	NetId cafe{parse_cidr("10.0.0.0/16"), parse_ipv4("10.0.0.1"), ""};
	apply_mappings(fds(), mappings, parse_ipv4("10.0.3.4"), cafe);
	EXPECT_EQ(nbind(), 0u);
	EXPECT_EQ(ext_flags("192.168.1.101"), KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED);
	// Home again: the forward on the uplink's own address resumes; the 1:1
	// address waits for its probe (someone may have been given it).
	auto r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(nbind(), 2u);
	EXPECT_FALSE(get(KVX_BIND_IN, 0, "192.168.1.101", 0));
	EXPECT_EQ(ext_flags("192.168.1.101"),
		  KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED | KVX_EXT_F_PROBING);
	EXPECT_EQ(r.held,
		  (std::map<uint32_t, uint32_t>{{parse_ipv4("192.168.1.101"), KVX_EXT_F_PROBING}}));
	// Nobody answered.
	r = apply_mappings(fds(), mappings, up_, home_, false,
			   {{parse_ipv4("192.168.1.101"), ProbeVerdict::Free}});
	EXPECT_EQ(nbind(), 4u);
	EXPECT_EQ(ext_flags("192.168.1.101"), KVX_EXT_F_ARP);
	EXPECT_TRUE(r.held.empty());
	EXPECT_EQ(r.resumed, std::vector<uint32_t>{parse_ipv4("192.168.1.101")});
	// Active now: a later sync without verdicts keeps it.
	r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(nbind(), 4u);
	EXPECT_TRUE(r.resumed.empty());
}

TEST_F(MapsFixture, ResumeProbeConflictKeepsTheAddressSuspended)
{
	const uint32_t a = parse_ipv4("192.168.1.101");
	std::vector<StaticMapping> mappings = {sm("192.168.1.101", "192.168.122.101"),
					       sm("192.168.1.101:8443", "192.168.122.102:443",
						  "tcp")};
	apply_mappings(fds(), mappings, up_, home_);
	NetId cafe{parse_cidr("10.0.0.0/16"), parse_ipv4("10.0.0.1"), ""};
	apply_mappings(fds(), mappings, parse_ipv4("10.0.3.4"), cafe);
	apply_mappings(fds(), mappings, up_, home_);
	// Another host answered the probe: every mapping of the address stays
	// out, the datapath sees it suspended (neither ARP nor translation).
	auto r = apply_mappings(fds(), mappings, up_, home_, false, {{a, ProbeVerdict::Conflict}});
	EXPECT_EQ(nbind(), 0u);
	EXPECT_EQ(ext_flags("192.168.1.101"),
		  KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED | KVX_EXT_F_CONFLICT);
	EXPECT_EQ(r.held.at(a), KVX_EXT_F_CONFLICT);
	// `map add|del` of another mapping (no probes of its own) keeps it so.
	r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(nbind(), 0u);
	EXPECT_EQ(r.held.at(a), KVX_EXT_F_CONFLICT);
	// Leaving the network forgets the conflict: the next return probes.
	apply_mappings(fds(), mappings, parse_ipv4("10.0.3.4"), cafe);
	EXPECT_EQ(ext_flags("192.168.1.101"), KVX_EXT_F_ARP | KVX_EXT_F_SUSPENDED);
	r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(r.held.at(a), KVX_EXT_F_PROBING);
	// The retry finds it free.
	r = apply_mappings(fds(), mappings, up_, home_, false, {{a, ProbeVerdict::Free}});
	EXPECT_EQ(nbind(), 4u);
	EXPECT_TRUE(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.101", 8443));
	EXPECT_EQ(ext_flags("192.168.1.101"), KVX_EXT_F_ARP);
}

// A guest's dynamic binding on the port a mapping wants (the default pool
// and the forwards share the uplink's ports): the mapping wins.  The pair
// goes (OUT half first), the flows through it are flushed, the guest's
// other bindings and flows stay.
TEST_F(MapsFixture, DynamicBindingOnTheExternalPortIsEvicted)
{
	const uint32_t squatter = htonl(parse_ipv4("192.168.122.9"));
	auto put_pair = [&](uint16_t gport, uint16_t eport) {
		kvx_bind_key k{};
		k.dir = KVX_BIND_IN;
		k.proto = IPPROTO_TCP;
		k.addr = htonl(up_);
		k.port = htons(eport);
		kvx_bind_val v{};
		v.addr = squatter;
		v.port = htons(gport);
		v.flags = KVX_BIND_F_MULTI;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_NOEXIST), 0);
		k.dir = KVX_BIND_OUT;
		k.addr = squatter;
		k.port = htons(gport);
		v.addr = htonl(up_);
		v.port = htons(eport);
		v.flags = 0;
		ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_NOEXIST), 0);
	};
	auto put_flow = [&](uint16_t gport, uint16_t eport, uint16_t rport) {
		kvx_ct_key k{};
		k.proto = IPPROTO_TCP;
		k.int_addr = squatter;
		k.int_port = htons(gport);
		k.rem_addr = htonl(parse_ipv4("192.168.1.7"));
		k.rem_port = htons(rport);
		kvx_ct_val v{};
		v.ext_addr = htonl(up_);
		v.ext_port = htons(eport);
		v.state = KVX_CT_ESTABLISHED;
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_NOEXIST), 0);
	};
	put_pair(4444, 8080);
	put_flow(4444, 8080, 443);
	put_flow(4444, 8080, 80);
	put_pair(5555, 9090); // another of its bindings, not in the way
	put_flow(5555, 9090, 443);
	std::vector<StaticMapping> mappings = {sm("192.168.1.101", "192.168.122.101"),
					       sm("uplink:8079-8081", "192.168.122.102:79-81",
						  "tcp")};
	auto r = apply_mappings(fds(), mappings, up_, home_, true);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_EQ(r.ct_deleted, 2u);
	auto in = get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.50", 8080);
	ASSERT_TRUE(in);
	EXPECT_EQ(in->addr, htonl(parse_ipv4("192.168.122.102")));
	EXPECT_EQ(ntohs(in->port), 80);
	EXPECT_EQ(in->flags, KVX_BIND_F_STATIC);
	EXPECT_FALSE(get(KVX_BIND_OUT, IPPROTO_TCP, "192.168.122.9", 4444))
		<< "the squatter's OUT half released";
	EXPECT_TRUE(get(KVX_BIND_OUT, IPPROTO_TCP, "192.168.122.9", 5555));
	EXPECT_TRUE(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.50", 9090));
	EXPECT_EQ(count_entries<kvx_ct_key>(ct_.get()), 1u);
	EXPECT_EQ(nbind(), 2u + 6u + 2u);
	// Installed: a second run changes nothing.
	r = apply_mappings(fds(), mappings, up_, home_, true);
	EXPECT_EQ(r.bind_added + r.bind_deleted + r.ct_deleted, 0u);
}

// Another mapping's entry is a conflict, never evicted.
TEST_F(MapsFixture, AnotherMappingOnTheExternalPortIsAConflict)
{
	std::vector<StaticMapping> mappings = {sm("uplink:8080", "192.168.122.102:80", "tcp")};
	apply_mappings(fds(), mappings, up_, home_, true);
	mappings.push_back(sm("uplink:8079-8080", "192.168.122.103:79-80", "tcp"));
	try {
		apply_mappings(fds(), mappings, up_, home_, true);
		ADD_FAILURE() << "conflict not reported";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find(
				  "in use by another mapping, to guest 192.168.122.102:80"),
			  std::string::npos)
			<< e.what();
	}
	// The conflicting mapping left nothing; the first one is intact.
	EXPECT_FALSE(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.50", 8079));
	EXPECT_FALSE(get(KVX_BIND_OUT, IPPROTO_TCP, "192.168.122.103", 79));
	EXPECT_EQ(get(KVX_BIND_IN, IPPROTO_TCP, "192.168.1.50", 8080)->port, htons(80));
	// Non-strict (daemon): reported.
	auto r = apply_mappings(fds(), mappings, up_, home_);
	EXPECT_EQ(r.errors.size(), 1u);
}

TEST_F(MapsFixture, ReplacesADynamicOutHalfOfTheGuestPort)
{
	kvx_bind_key k{};
	k.dir = KVX_BIND_OUT;
	k.proto = IPPROTO_TCP;
	k.addr = htonl(parse_ipv4("192.168.122.102"));
	k.port = htons(80);
	kvx_bind_val v{};
	v.addr = htonl(up_);
	v.port = htons(61234);
	ASSERT_EQ(bpf_map_update_elem(bind_.get(), &k, &v, BPF_NOEXIST), 0);
	auto r =
		apply_mappings(fds(), {sm("uplink:8080", "192.168.122.102:80", "tcp")}, up_, home_);
	EXPECT_TRUE(r.errors.empty());
	auto out = get(KVX_BIND_OUT, IPPROTO_TCP, "192.168.122.102", 80);
	ASSERT_TRUE(out);
	EXPECT_EQ(ntohs(out->port), 8080);
	EXPECT_EQ(out->flags, KVX_BIND_F_STATIC);
}

TEST(UplinkAddress, PrimaryNeverTakesAnAddedMappingAddress)
{
	// A --add-address address promoted to primary (promote_secondaries,
	// after the DHCP address went) or listed first (another subnet, added
	// before a DHCP renewal) must not become the masquerade address.
	IfAddr added{0x0a4d0078, 24, false, RT_SCOPE_UNIVERSE, "wlp0s20f3:kvx"};
	IfAddr dhcp{0x0a4d0002, 24, false, RT_SCOPE_UNIVERSE, "wlp0s20f3"};
	IfAddr second{0x0a4d0003, 24, true, RT_SCOPE_UNIVERSE, "wlp0s20f3"};
	ASSERT_TRUE(primary_ipv4({added, dhcp}));
	EXPECT_EQ(primary_ipv4({added, dhcp})->addr, dhcp.addr);
	EXPECT_FALSE(primary_ipv4({added, second}));
	EXPECT_FALSE(primary_ipv4({added}));
}

namespace {

// apply_mappings' IPv6 half on real kvx_bind6/kvx_ct6/kvx_cfg6 maps.
class Maps6Fixture : public MapsFixture {
protected:
	void SetUp() override
	{
		MapsFixture::SetUp();
		if (IsSkipped() || HasFatalFailure())
			return;
		bind6_ = Fd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind6", sizeof(kvx_bind6_key),
					   sizeof(kvx_bind6_val), 1024, nullptr));
		ASSERT_GE(bind6_.get(), 0) << std::strerror(errno);
		ct6_ = Fd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct6", sizeof(kvx_ct6_key),
					 sizeof(kvx_ct6_val), 1024, nullptr));
		ASSERT_GE(ct6_.get(), 0) << std::strerror(errno);
		cfg6_ = Fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_cfg6", sizeof(uint32_t),
					  sizeof(kvx_cfg6), 1, nullptr));
		ASSERT_GE(cfg6_.get(), 0) << std::strerror(errno);
		set_uplink6("2001:db8:1::2");
	}
	MapFds fds6() const
	{
		return {bind_.get(), ext_.get(), ct_.get(), bind6_.get(), ct6_.get(), cfg6_.get()};
	}
	void set_uplink6(const char *a)
	{
		kvx_cfg6 c{};
		c.mode = KVX_V6_NAT66;
		std::memcpy(c.uplink_addr, parse_ipv6(a).data(), 16);
		write_cfg6(cfg6_.get(), c);
	}
	static kvx_bind6_key key6(uint8_t dir, uint8_t proto, const char *addr, uint16_t port)
	{
		kvx_bind6_key k{};
		k.dir = dir;
		k.proto = proto;
		std::memcpy(k.addr, parse_ipv6(addr).data(), 16);
		k.port = htons(port);
		return k;
	}
	std::optional<kvx_bind6_val> get6(uint8_t dir, uint8_t proto, const char *addr,
					  uint16_t port)
	{
		const kvx_bind6_key k = key6(dir, proto, addr, port);
		kvx_bind6_val v{};
		if (bpf_map_lookup_elem(bind6_.get(), &k, &v) != 0)
			return std::nullopt;
		return v;
	}
	size_t nbind6() { return dump_hash<kvx_bind6_key, kvx_bind6_val>(bind6_.get()).size(); }
	void add_flow6(const char *guest, uint16_t gport, const char *ext, uint16_t eport,
		       uint8_t flags)
	{
		kvx_ct6_key k{};
		std::memcpy(k.int_addr, parse_ipv6(guest).data(), 16);
		std::memcpy(k.rem_addr, parse_ipv6("2001:db8:1::7").data(), 16);
		k.int_port = htons(gport);
		k.rem_port = htons(40000);
		k.proto = IPPROTO_TCP;
		kvx_ct6_val v{};
		std::memcpy(v.ext_addr, parse_ipv6(ext).data(), 16);
		v.ct.ext_port = htons(eport);
		v.ct.flags = flags;
		ASSERT_EQ(bpf_map_update_elem(ct6_.get(), &k, &v, BPF_ANY), 0);
	}
	Fd bind6_, ct6_, cfg6_;
};

} // namespace

// [uplink] forwards on kvx_cfg6's address, 1:1 pairs, IPv4 mappings in
// kvx_bind only; a new NAT66 address moves the forward (its flows go), a
// map del removes the pairs.
TEST_F(Maps6Fixture, InstallsRepointsAndRemovesInKvxBind6)
{
	std::vector<StaticMapping> mappings = {
		sm("uplink:8080", "192.168.122.102:80", "tcp"),
		sm("[uplink]:2222", "[fd42::14]:22", "tcp", false),
		sm("2001:db8:1::101", "fd42::101", "", false),
	};
	auto r = apply_mappings(fds6(), mappings, up_, home_);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_EQ(r.bind_added, 6u);
	EXPECT_EQ(nbind(), 2u);
	EXPECT_EQ(nbind6(), 4u);
	auto in = get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::2", 2222);
	ASSERT_TRUE(in);
	EXPECT_EQ(0, std::memcmp(in->addr, parse_ipv6("fd42::14").data(), 16));
	EXPECT_EQ(ntohs(in->bind.port), 22);
	EXPECT_EQ(in->bind.flags, KVX_BIND_F_STATIC);
	auto one = get6(KVX_BIND_OUT, 0, "fd42::101", 0);
	ASSERT_TRUE(one);
	EXPECT_EQ(one->bind.flags, KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE);
	EXPECT_FALSE(ext_flags("0.0.0.0")); // no kvx_extaddr entry for IPv6
	// Idempotent.
	r = apply_mappings(fds6(), mappings, up_, home_);
	EXPECT_EQ(r.bind_added + r.bind_deleted, 0u);

	// A flow through the forward, one through the 1:1 mapping, a dynamic one.
	add_flow6("fd42::14", 22, "2001:db8:1::2", 2222, KVX_CT_F_STATIC);
	add_flow6("fd42::101", 443, "2001:db8:1::101", 443, KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);
	add_flow6("fd42::9", 5555, "2001:db8:1::2", 62000, 0);
	set_uplink6("2001:db8:1::3"); // renumbered (the daemon's refresh_uplink6)
	r = apply_mappings(fds6(), mappings, up_, home_);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_EQ(r.bind_added, 2u);
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_FALSE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::2", 2222));
	ASSERT_TRUE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::3", 2222));
	auto out = get6(KVX_BIND_OUT, IPPROTO_TCP, "fd42::14", 22);
	ASSERT_TRUE(out);
	EXPECT_EQ(0, std::memcmp(out->addr, parse_ipv6("2001:db8:1::3").data(), 16));
	EXPECT_EQ((dump_hash<kvx_ct6_key, kvx_ct6_val>(ct6_.get()).size()), 2u);

	mappings.pop_back(); // map del of the 1:1 mapping: its flow goes too
	r = apply_mappings(fds6(), mappings, up_, home_);
	EXPECT_EQ(r.bind_deleted, 2u);
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_EQ(nbind6(), 2u);
	mappings.pop_back();
	apply_mappings(fds6(), mappings, up_, home_);
	EXPECT_EQ(nbind6(), 0u);
	EXPECT_EQ(nbind(), 2u); // the IPv4 forward untouched
}

// A guest's dynamic binding on the port a forward wants: the forward takes
// it (the guest's OUT half released, its flows flushed), as for IPv4.
// A literal IPv6 address is announced only after duplicate address
// detection: new, it is held (PROBING, no pairs: not translated); a
// Duplicate verdict keeps it held (CONFLICT), also for a writer without a
// verdict (`map add` of another mapping, attach); Free installs its pairs
// and flags it ARP (the datapath answers NSs) once; `[uplink]` forwards
// have no entry; a deleted mapping's entry goes.
TEST_F(Maps6Fixture, LiteralAddressAnnouncedAfterDad)
{
	Fd ext6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ext6", sizeof(kvx_extaddr6_key),
			       sizeof(kvx_extaddr_val), 64, nullptr));
	ASSERT_GE(ext6.get(), 0) << std::strerror(errno);
	MapFds fds = fds6();
	fds.extaddr6 = ext6.get();
	const Ipv6Addr one = parse_ipv6("2001:db8:1::101");
	auto flags = [&]() -> std::optional<uint32_t> {
		kvx_extaddr6_key k{};
		std::memcpy(k.addr, one.data(), 16);
		kvx_extaddr_val v{};
		if (bpf_map_lookup_elem(ext6.get(), &k, &v) != 0)
			return std::nullopt;
		return v.flags;
	};
	std::vector<StaticMapping> mappings = {
		sm("[uplink]:2222", "[fd42::14]:22", "tcp", false),
		sm("2001:db8:1::101", "fd42::101", "", false),
	};
	auto r = apply_mappings(fds, mappings, up_, home_);
	EXPECT_EQ(flags(), KVX_EXT_F_PROBING);
	EXPECT_EQ(r.held6.size(), 1u);
	EXPECT_TRUE(r.announced6.empty());
	EXPECT_EQ(nbind6(), 2u); // the [uplink] forward only
	EXPECT_FALSE(get6(KVX_BIND_IN, 0, "2001:db8:1::101", 0));

	r = apply_mappings(fds, mappings, up_, home_, false, {}, {{one, DadVerdict::Duplicate}});
	EXPECT_EQ(flags(), KVX_EXT_F_CONFLICT);
	EXPECT_EQ(nbind6(), 2u);
	r = apply_mappings(fds, mappings, up_, home_);
	EXPECT_EQ(flags(), KVX_EXT_F_CONFLICT);
	EXPECT_EQ(r.held6.at(one), KVX_EXT_F_CONFLICT);

	r = apply_mappings(fds, mappings, up_, home_, false, {}, {{one, DadVerdict::Free}});
	EXPECT_EQ(flags(), KVX_EXT_F_ARP);
	EXPECT_EQ(r.announced6, std::vector<Ipv6Addr>{one});
	EXPECT_EQ(r.announced_all6, std::set<Ipv6Addr>{one});
	EXPECT_TRUE(r.held6.empty());
	EXPECT_EQ(nbind6(), 4u);
	EXPECT_TRUE(get6(KVX_BIND_IN, 0, "2001:db8:1::101", 0));
	r = apply_mappings(fds, mappings, up_, home_, false, {}, {{one, DadVerdict::Free}});
	EXPECT_TRUE(r.announced6.empty()); // announced once
	EXPECT_EQ(flags(), KVX_EXT_F_ARP);

	mappings.pop_back();
	apply_mappings(fds, mappings, up_, home_);
	EXPECT_FALSE(flags());
	EXPECT_EQ(nbind6(), 2u);
}

// An IPv6 mapping off its network (another router MAC) is suspended as an
// IPv4 one: no pairs, its flows flushed, and its address out of
// kvx_extaddr6 (nothing answers NSs for it).  Back on its network it is
// new to kvx_extaddr6: held (PROBING, no pairs) until a new DAD says Free.
// An address an active mapping shares stays announced.
TEST_F(Maps6Fixture, SuspendedOffItsNetworkAndProbedOnReturn)
{
	Fd ext6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ext6", sizeof(kvx_extaddr6_key),
			       sizeof(kvx_extaddr_val), 64, nullptr));
	ASSERT_GE(ext6.get(), 0) << std::strerror(errno);
	MapFds fds = fds6();
	fds.extaddr6 = ext6.get();
	const Ipv6Addr one = parse_ipv6("2001:db8:1::101");
	auto flags = [&](const Ipv6Addr &a) -> std::optional<uint32_t> {
		kvx_extaddr6_key k{};
		std::memcpy(k.addr, a.data(), 16);
		kvx_extaddr_val v{};
		if (bpf_map_lookup_elem(ext6.get(), &k, &v) != 0)
			return std::nullopt;
		return v.flags;
	};
	NetId home = home_;
	home.v6 = Uplink6Net{{network_of6(parse_ipv6("2001:db8:1::"), 64)},
			     parse_ipv6("fe80::1"),
			     "52:54:00:00:00:01"};
	NetId cafe = home;
	cafe.v6->router_mac = "52:54:00:00:00:99";
	std::vector<StaticMapping> mappings = {
		sm("[uplink]:2222", "[fd42::14]:22", "tcp", false),
		sm("2001:db8:1::101", "fd42::101", "", false),
		sm("[2001:db8:1::102]:80", "[fd42::102]:80", "tcp", false),
		sm("[2001:db8:1::102]:81", "[fd42::102]:81", "tcp", false),
	};
	for (StaticMapping &m : mappings)
		tie_to_network(m, home, parse_ipv6("2001:db8:1::2"));
	mappings[3].network6.reset(); // untied (an older config): active anywhere
	const Ipv6Addr two = parse_ipv6("2001:db8:1::102");
	auto r = apply_mappings(fds, mappings, up_, home, false, {},
				{{one, DadVerdict::Free}, {two, DadVerdict::Free}});
	EXPECT_EQ(flags(one), KVX_EXT_F_ARP);
	EXPECT_EQ(flags(two), KVX_EXT_F_ARP);
	EXPECT_EQ(nbind6(), 8u);
	add_flow6("fd42::101", 443, "2001:db8:1::101", 443, KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);

	// The café: same prefix, same router address, another router MAC.
	r = apply_mappings(fds, mappings, up_, cafe);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_FALSE(flags(one)) << "a suspended address is not answered for";
	EXPECT_EQ(flags(two), KVX_EXT_F_ARP); // the untied forward keeps it
	EXPECT_FALSE(get6(KVX_BIND_IN, 0, "2001:db8:1::101", 0));
	EXPECT_FALSE(get6(KVX_BIND_OUT, 0, "fd42::101", 0));
	EXPECT_FALSE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::2", 2222));
	EXPECT_FALSE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::102", 80));
	EXPECT_TRUE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::102", 81));
	EXPECT_EQ(nbind6(), 2u);
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_EQ(r.announced_all6, std::set<Ipv6Addr>{two});
	EXPECT_TRUE(r.held6.empty());

	// Home again: the 1:1 address waits for its DAD; the [uplink] forward
	// (the host's address) and the announced address's forward are back.
	r = apply_mappings(fds, mappings, up_, home);
	EXPECT_EQ(flags(one), KVX_EXT_F_PROBING);
	EXPECT_EQ(r.held6.at(one), KVX_EXT_F_PROBING);
	EXPECT_FALSE(get6(KVX_BIND_IN, 0, "2001:db8:1::101", 0));
	EXPECT_TRUE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::2", 2222));
	EXPECT_TRUE(get6(KVX_BIND_IN, IPPROTO_TCP, "2001:db8:1::102", 80));
	r = apply_mappings(fds, mappings, up_, home, false, {}, {{one, DadVerdict::Free}});
	EXPECT_EQ(flags(one), KVX_EXT_F_ARP);
	EXPECT_EQ(r.announced6, std::vector<Ipv6Addr>{one});
	EXPECT_TRUE(get6(KVX_BIND_IN, 0, "2001:db8:1::101", 0));
	EXPECT_EQ(nbind6(), 8u);
}

// The uplink back or on another link (the daemon's dad_link_update):
// reprobe_mapped6 holds the announced addresses again (PROBING: no NS
// answered, no pairs) until a new DAD; a conflict stays a conflict.
TEST_F(Maps6Fixture, AnnouncedAddressProbedAgainAfterReprobe)
{
	Fd ext6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ext6", sizeof(kvx_extaddr6_key),
			       sizeof(kvx_extaddr_val), 64, nullptr));
	ASSERT_GE(ext6.get(), 0) << std::strerror(errno);
	MapFds fds = fds6();
	fds.extaddr6 = ext6.get();
	const Ipv6Addr one = parse_ipv6("2001:db8:1::101");
	const Ipv6Addr two = parse_ipv6("2001:db8:1::102");
	auto flags = [&](const Ipv6Addr &a) -> std::optional<uint32_t> {
		kvx_extaddr6_key k{};
		std::memcpy(k.addr, a.data(), 16);
		kvx_extaddr_val v{};
		if (bpf_map_lookup_elem(ext6.get(), &k, &v) != 0)
			return std::nullopt;
		return v.flags;
	};
	const std::vector<StaticMapping> mappings = {
		sm("2001:db8:1::101", "fd42::101", "", false),
		sm("2001:db8:1::102", "fd42::102", "", false),
	};
	apply_mappings(fds, mappings, up_, home_, false, {},
		       {{one, DadVerdict::Free}, {two, DadVerdict::Duplicate}});
	ASSERT_EQ(flags(one), KVX_EXT_F_ARP);
	ASSERT_EQ(flags(two), KVX_EXT_F_CONFLICT);
	EXPECT_EQ(nbind6(), 2u);

	EXPECT_EQ(reprobe_mapped6(ext6.get()), 1u);
	EXPECT_EQ(flags(one), KVX_EXT_F_PROBING);
	EXPECT_EQ(flags(two), KVX_EXT_F_CONFLICT);
	auto r = apply_mappings(fds, mappings, up_, home_);
	EXPECT_EQ(r.held6.size(), 2u);
	EXPECT_TRUE(r.announced_all6.empty());
	EXPECT_EQ(nbind6(), 0u);
	r = apply_mappings(fds, mappings, up_, home_, false, {}, {{one, DadVerdict::Free}});
	EXPECT_EQ(flags(one), KVX_EXT_F_ARP);
	EXPECT_EQ(r.announced6, std::vector<Ipv6Addr>{one});
	EXPECT_EQ(nbind6(), 2u);
	EXPECT_EQ(reprobe_mapped6(-1), 0u);
}

// Off or in relay mode the datapath serves no literal address: none is
// probed or announced (a claim on the LAN would pull its traffic to
// nowhere), and an announced one is withdrawn.
TEST_F(Maps6Fixture, LiteralAddressesAnnouncedOnlyUnderNat66)
{
	Fd ext6(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ext6", sizeof(kvx_extaddr6_key),
			       sizeof(kvx_extaddr_val), 64, nullptr));
	ASSERT_GE(ext6.get(), 0) << std::strerror(errno);
	MapFds fds = fds6();
	fds.extaddr6 = ext6.get();
	const Ipv6Addr one = parse_ipv6("2001:db8:1::101");
	std::vector<StaticMapping> mappings = {sm("2001:db8:1::101", "fd42::101", "", false)};
	auto r = apply_mappings(fds, mappings, up_, home_, false, {}, {{one, DadVerdict::Free}});
	EXPECT_EQ(r.announced6, std::vector<Ipv6Addr>{one});
	EXPECT_EQ((dump_hash<kvx_extaddr6_key, kvx_extaddr_val>(ext6.get()).size()), 1u);
	for (uint32_t mode : {uint32_t{KVX_V6_RELAY}, uint32_t{KVX_V6_OFF}}) {
		kvx_cfg6 c = read_cfg6(cfg6_.get());
		c.mode = mode;
		write_cfg6(cfg6_.get(), c);
		r = apply_mappings(fds, mappings, up_, home_, false, {}, {{one, DadVerdict::Free}});
		EXPECT_TRUE(r.announced6.empty()) << mode;
		EXPECT_TRUE(r.held6.empty()) << mode;
		const auto left = dump_hash<kvx_extaddr6_key, kvx_extaddr_val>(ext6.get());
		EXPECT_TRUE(left.empty()) << mode;
	}
}

TEST_F(Maps6Fixture, ForwardTakesAGuestsDynamicPort)
{
	kvx_bind6_key ik = key6(KVX_BIND_IN, IPPROTO_UDP, "2001:db8:1::2", 5300);
	kvx_bind6_key ok = key6(KVX_BIND_OUT, IPPROTO_UDP, "fd42::9", 4000);
	kvx_bind6_val iv{}, ov{};
	std::memcpy(iv.addr, parse_ipv6("fd42::9").data(), 16);
	iv.bind.port = htons(4000);
	std::memcpy(ov.addr, parse_ipv6("2001:db8:1::2").data(), 16);
	ov.bind.port = htons(5300);
	ASSERT_EQ(bpf_map_update_elem(bind6_.get(), &ik, &iv, BPF_ANY), 0);
	ASSERT_EQ(bpf_map_update_elem(bind6_.get(), &ok, &ov, BPF_ANY), 0);
	kvx_ct6_key k{};
	std::memcpy(k.int_addr, parse_ipv6("fd42::9").data(), 16);
	k.int_port = htons(4000);
	k.proto = IPPROTO_UDP;
	kvx_ct6_val v{};
	std::memcpy(v.ext_addr, parse_ipv6("2001:db8:1::2").data(), 16);
	v.ct.ext_port = htons(5300);
	ASSERT_EQ(bpf_map_update_elem(ct6_.get(), &k, &v, BPF_ANY), 0);

	auto r = apply_mappings(fds6(), {sm("[uplink]:5300", "[fd42::12]:5301", "udp", false)}, up_,
				home_, true);
	EXPECT_TRUE(r.errors.empty());
	EXPECT_EQ(r.ct_deleted, 1u);
	EXPECT_FALSE(get6(KVX_BIND_OUT, IPPROTO_UDP, "fd42::9", 4000));
	auto in = get6(KVX_BIND_IN, IPPROTO_UDP, "2001:db8:1::2", 5300);
	ASSERT_TRUE(in);
	EXPECT_EQ(0, std::memcmp(in->addr, parse_ipv6("fd42::12").data(), 16));
	EXPECT_EQ(in->bind.flags, KVX_BIND_F_STATIC);
}

// The uplink's IPv6 default routers as the kernel keeps them, read in a
// network namespace of the test's own (a forked child's): an ECMP route
// (NetworkManager's merge of several routers' RAs: its next hops, no
// RTA_OIF) and a separate route of a low-preference router with a lower
// metric.  Every router is found, each with its MAC from the neighbour
// table; the preferred one is the kernel's: the lowest metric whatever the
// RFC 4191 preference, then (equal metrics) the lower address, not the
// dump's order.
TEST(Uplink6Routers, EveryDefaultRouterPreferredFirst)
{
	if (!kvmxdp::test::missing_capabilities({CAP_SYS_ADMIN, CAP_NET_ADMIN}).empty())
		GTEST_SKIP() << "needs root";
	auto child = [] {
		netns_child_setup({
			"ip link add kvxr6a type veth peer name kvxr6b",
			"sysctl -qw net.ipv6.conf.kvxr6a.accept_dad=0 net.ipv6.conf.kvxr6a.accept_ra=0",
			"ip link set kvxr6a up",
			"ip link set kvxr6b up",
			"ip -6 addr add 2001:db8:1::2/64 dev kvxr6a nodad",
			"ip -6 neigh replace fe80::2 lladdr 52:54:00:00:00:02 dev kvxr6a nud permanent",
			"ip -6 neigh replace fe80::1 lladdr 52:54:00:00:00:01 dev kvxr6a nud permanent",
			"ip -6 neigh replace fe80::3 lladdr 52:54:00:00:00:03 dev kvxr6a nud permanent",
			"ip -6 route add default dev kvxr6a metric 1024 nexthop via fe80::2 dev kvxr6a "
			"nexthop via fe80::1 dev kvxr6a",
			"ip -6 route add default via fe80::3 dev kvxr6a metric 10 pref low",
		});
		NlSocket nl;
		const auto link = find_link(nl, "kvxr6a");
		if (!link)
			child_fail("no kvxr6a");
		size_t defaults = 0;
		for (const Ipv6Route &r : ipv6_routes(nl, link->ifindex))
			if (r.dst.prefix == 0 && r.gateway && r.oif == link->ifindex)
				defaults++;
		if (defaults != 3)
			child_fail("default routes via kvxr6a: " + std::to_string(defaults) +
				   ", want 3");
		const std::optional<Uplink6Net> v6 = uplink6_net(nl, link->ifindex, false);
		if (!v6)
			child_fail("no IPv6 network");
		if (format_ipv6(v6->router) != "fe80::3" || v6->router_mac != "52:54:00:00:00:03")
			child_fail("preferred " + format_ipv6(v6->router) + " at " +
				   v6->router_mac);
		const std::vector<Router6> want = {{parse_ipv6("fe80::1"), "52:54:00:00:00:01"},
						   {parse_ipv6("fe80::2"), "52:54:00:00:00:02"}};
		if (!(v6->other_routers == want)) {
			std::string got;
			for (const Router6 &r : v6->other_routers)
				got += format_ipv6(r.addr) + " at '" + r.mac + "' ";
			child_fail("other routers: " + got);
		}
		std::_Exit(0);
	};
	EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

// A mapping made while one router was preferred stays on its network while
// that router is still one of the uplink's (another router's RA came first
// after a reconnect), and only with that router's MAC.
TEST(Uplink6Routers, MappingFollowsItsRouterAmongSeveral)
{
	const Ipv6Addr up6 = parse_ipv6("2001:db8:1::2");
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	home.v6 = Uplink6Net{{network_of6(parse_ipv6("2001:db8:1::"), 64)},
			     parse_ipv6("fe80::1"),
			     "52:54:00:00:00:01",
			     {{parse_ipv6("fe80::2"), "52:54:00:00:00:02"}}};
	StaticMapping one;
	one.m = parse_mapping("2001:db8:1::101", "fd42::101", "");
	tie_to_network(one, home, up6);
	ASSERT_TRUE(one.network6);
	EXPECT_EQ(one.network6->str(), "2001:db8:1::/64 via fe80::1 at 52:54:00:00:00:01");

	NetId swapped = home; // the other router preferred now
	swapped.v6->router = parse_ipv6("fe80::2");
	swapped.v6->router_mac = "52:54:00:00:00:02";
	swapped.v6->other_routers = {{parse_ipv6("fe80::1"), "52:54:00:00:00:01"}};
	EXPECT_TRUE(mapping_active(one, swapped));
	NetId spoofed = swapped; // its address, another MAC
	spoofed.v6->other_routers[0].mac = "52:54:00:00:00:99";
	EXPECT_FALSE(mapping_active(one, spoofed));
	NetId gone = swapped; // only the other router left
	gone.v6->other_routers.clear();
	EXPECT_FALSE(mapping_active(one, gone));
	// Recorded without a MAC: learnt from its own router, not the
	// preferred one.
	ASSERT_EQ(swapped.v6->router_mac_of(parse_ipv6("fe80::1")), "52:54:00:00:00:01");
	EXPECT_FALSE(swapped.v6->router_mac_of(parse_ipv6("fe80::9")));
	// A network with no default router matches a mapping made without one.
	NetId none = home;
	none.v6->router = Ipv6Addr{};
	none.v6->router_mac.clear();
	none.v6->other_routers.clear();
	StaticMapping bare;
	bare.m = one.m;
	tie_to_network(bare, none, up6);
	ASSERT_TRUE(bare.network6);
	EXPECT_TRUE(mapping_active(bare, none));
	// ...and its prefix once a router has come (recorded then:
	// learn_router6; MappingNetwork6.MadeWithoutARouterLearnsTheOneThatComes).
	EXPECT_TRUE(mapping_active(bare, home));
}

// An IPv6-only uplink (no IPv4 address at all): its network is the IPv6
// part alone, so an IPv6 mapping is tied to it and active on it, from the
// daemon's first sync on; an IPv4 mapping has no network there.
TEST(Ipv6OnlyUplink, NetworkIsItsIpv6PartAlone)
{
	if (!kvmxdp::test::missing_capabilities({CAP_SYS_ADMIN, CAP_NET_ADMIN}).empty())
		GTEST_SKIP() << "needs root";
	auto child = [] {
		netns_child_setup({
			"ip link add kvxo6a type veth peer name kvxo6b",
			"sysctl -qw net.ipv6.conf.kvxo6a.accept_dad=0 net.ipv6.conf.kvxo6a.accept_ra=0",
			"ip link set kvxo6a up",
			"ip link set kvxo6b up",
			"ip -6 addr add 2001:db8:6::2/64 dev kvxo6a nodad",
			"ip -6 neigh replace fe80::1 lladdr 52:54:00:00:00:01 dev kvxo6a nud permanent",
			"ip -6 route add default via fe80::1 dev kvxo6a",
		});
		NlSocket nl;
		const auto link = find_link(nl, "kvxo6a");
		if (!link)
			child_fail("no kvxo6a");
		const std::optional<NetId> now = network_of_link(nl, link->ifindex, false);
		if (!now)
			child_fail("no network on an IPv6-only uplink");
		if (now->net || now->gateway || !now->v6)
			child_fail("network " + now->str() + (now->v6 ? "" : ", no IPv6 part"));
		const std::optional<NetId> cur = judged_network(now, std::nullopt);
		StaticMapping six;
		six.m = parse_mapping("2001:db8:6::101", "fd42::101", "");
		tie_to_network(six, cur, parse_ipv6("2001:db8:6::2"));
		if (!six.network6 || six.network6->str() != "2001:db8:6::/64 via fe80::1 at "
							    "52:54:00:00:00:01")
			child_fail("IPv6 mapping tied to " +
				   (six.network6 ? six.network6->str() : std::string("nothing")));
		if (!mapping_active(six, cur))
			child_fail("IPv6 mapping suspended on its own IPv6-only network");
		StaticMapping four;
		four.m = parse_mapping("192.168.1.101", "192.168.122.101", "");
		tie_to_network(four, cur, Ipv6Addr{});
		if (four.network)
			child_fail("IPv4 mapping tied to " + four.network->str());
		std::_Exit(0);
	};
	EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

// judged_network: each family on its own.
TEST(JudgedNetwork, EachFamilyOnItsOwn)
{
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), "52:54:00:00:00:01"};
	home.v6 = Uplink6Net{{network_of6(parse_ipv6("2001:db8:1::"), 64)},
			     parse_ipv6("fe80::1"),
			     "52:54:00:00:00:01"};
	StaticMapping four;
	four.m = parse_mapping("192.168.1.101", "192.168.122.101", "");
	tie_to_network(four, home, Ipv6Addr{});
	StaticMapping six;
	six.m = parse_mapping("2001:db8:1::101", "fd42::101", "");
	tie_to_network(six, home, parse_ipv6("2001:db8:1::2"));
	ASSERT_TRUE(four.network && six.network6);

	// No sync before, IPv6 only: IPv6 judged, IPv4 absent.
	NetId only6;
	only6.v6 = home.v6;
	auto j = judged_network(only6, std::nullopt);
	ASSERT_TRUE(j);
	EXPECT_FALSE(j->net);
	EXPECT_TRUE(mapping_active(six, j));
	EXPECT_FALSE(mapping_active(four, j));

	// IPv4 dropped (DHCP renewing) with IPv6 still whole: both stay.
	j = judged_network(only6, home);
	ASSERT_TRUE(j);
	EXPECT_TRUE(mapping_active(four, j));
	EXPECT_TRUE(mapping_active(six, j));

	// Nothing at all now: the last network stands.
	j = judged_network(std::nullopt, home);
	ASSERT_TRUE(j);
	EXPECT_TRUE(*j == home);
	EXPECT_FALSE(judged_network(std::nullopt, std::nullopt));

	// IPv6 not whole (no router yet): the last IPv6 network while IPv4
	// shows the same network or nothing, else the IPv6 seen now.
	NetId norouter = home;
	norouter.v6->router = Ipv6Addr{};
	norouter.v6->router_mac.clear();
	j = judged_network(norouter, home);
	EXPECT_TRUE(j && j->v6 == home.v6);
	NetId norouter_only6;
	norouter_only6.v6 = norouter.v6;
	j = judged_network(norouter_only6, home);
	EXPECT_TRUE(j && j->v6 == home.v6 && j->net == home.net);
	NetId cafe = norouter;
	cafe.net = parse_cidr("10.0.0.0/16");
	cafe.gateway = parse_ipv4("10.0.0.1");
	j = judged_network(cafe, home);
	ASSERT_TRUE(j);
	EXPECT_TRUE(j->v6 == norouter.v6);
	EXPECT_FALSE(mapping_active(six, j));
	EXPECT_FALSE(mapping_active(four, j));

	// An IPv6-only café after home: IPv6 as it is now (another router).
	NetId cafe6;
	cafe6.v6 = Uplink6Net{{network_of6(parse_ipv6("2001:db8:99::"), 64)},
			      parse_ipv6("fe80::99"),
			      "52:54:00:00:00:99"};
	j = judged_network(cafe6, home);
	ASSERT_TRUE(j);
	EXPECT_FALSE(mapping_active(six, j));
}
