// SPDX-License-Identifier: GPL-2.0
// What libvirt metadata may claim (model/metadata_allow.hpp): the
// allow-list's entries, which mappings they cover, and the hooks' refusal
// of a port a host service listens on (force='yes' and the list, both),
// and the daemon's, at promotion, with the force its domain declares.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "base/error.hpp"
#include "control/mapping_sync.hpp"
#include "error_of.hpp"
#include "model/config.hpp"
#include "model/libvirt.hpp"
#include "model/metadata_allow.hpp"
#include "temp_dir.hpp"

using namespace kvmxdp;
using test::error_of;

namespace {

Mapping fwd(const std::string &ext)
{
	return parse_mapping(ext, "192.168.122.10:22", "tcp");
}
Mapping fwd_range(const std::string &ext)
{
	return parse_mapping(ext, "192.168.122.10:2000-2009", "tcp");
}
Mapping one(const std::string &ext)
{
	return parse_mapping(ext, "192.168.122.10", "");
}

} // namespace

TEST(MetadataAllow, EntriesCoverTheirAddressAndPorts)
{
	auto a = parse_metadata_allow(
		{"uplink:2000-2999", "192.168.1.101", "192.168.1.50:80", "[uplink]:443"});
	ASSERT_EQ(a.size(), 4u);
	EXPECT_TRUE(a[0].covers(fwd("uplink:2222")));
	EXPECT_TRUE(a[0].covers(fwd_range("uplink:2990-2999")));
	EXPECT_FALSE(a[0].covers(fwd_range("uplink:2995-3004"))) << "half outside";
	EXPECT_FALSE(a[0].covers(fwd("uplink:22")));
	EXPECT_FALSE(a[0].covers(fwd("192.168.1.101:2222"))) << "a literal address is not uplink";
	EXPECT_TRUE(a[1].covers(one("192.168.1.101"))) << "an address alone: 1:1";
	EXPECT_TRUE(a[1].covers(fwd("192.168.1.101:22"))) << "... and every port";
	EXPECT_FALSE(a[1].covers(one("192.168.1.102")));
	EXPECT_TRUE(a[2].covers(fwd("192.168.1.50:80")));
	EXPECT_FALSE(a[2].covers(one("192.168.1.50"))) << "ports only: no 1:1";
	EXPECT_FALSE(a[2].covers(fwd("uplink:80")));
	EXPECT_TRUE(a[3].covers(parse_mapping("[uplink]:443", "[fd42::14]:443", "tcp")));
	EXPECT_FALSE(a[3].covers(fwd("uplink:443"))) << "IPv4 is not IPv6";
}

TEST(MetadataAllow, BadEntriesNameTheEntry)
{
	EXPECT_EQ(error_of([] {
			  parse_metadata_allow({"uplink:2000", "uplink:0"});
		  }).rfind("allow-list entry 'uplink:0': ", 0),
		  0u);
	EXPECT_NE(error_of([] { parse_metadata_allow({"upstream:22"}); }).find("'upstream:22'"),
		  std::string::npos);
	EXPECT_THROW(parse_metadata_allow({"1.2.3.4:5-4"}), Error);
	EXPECT_THROW(parse_metadata_allow({""}), Error);
}

TEST(MetadataAllow, AListenedPortNeedsTheListAndForce)
{
	const std::optional<uint16_t> sshd = 22, none;
	const std::optional<std::vector<MetadataAllow>> dflt;
	const auto listed = parse_metadata_allow({"uplink:22", "uplink:2000-2999"});
	const auto nothing = parse_metadata_allow({});
	// The default: anything no host service listens on.
	EXPECT_EQ(metadata_claim_refusal(fwd("uplink:2222"), false, dflt, none), "");
	EXPECT_EQ(metadata_claim_refusal(one("192.168.1.101"), false, dflt, none), "");
	const std::string r = metadata_claim_refusal(fwd("uplink:22"), false, dflt, sshd);
	EXPECT_NE(r.find("a host service listens on tcp port 22"), std::string::npos) << r;
	EXPECT_NE(r.find("kvmxdp map allow"), std::string::npos) << r;
	EXPECT_NE(metadata_claim_refusal(fwd("uplink:22"), true, dflt, sshd), "")
		<< "force='yes' alone is the metadata's word, not the administrator's";
	// Listed: a listened port needs force='yes' too.
	EXPECT_NE(metadata_claim_refusal(fwd("uplink:22"), false, listed, sshd).find("force='yes'"),
		  std::string::npos);
	EXPECT_EQ(metadata_claim_refusal(fwd("uplink:22"), true, listed, sshd), "");
	EXPECT_EQ(metadata_claim_refusal(fwd("uplink:2222"), false, listed, none), "");
	// Not listed: refused, listened or not, naming the list.
	EXPECT_EQ(metadata_claim_refusal(fwd("uplink:3000"), true, listed, none),
		  "mapping uplink:3000 192.168.122.10:22 tcp: libvirt metadata may claim only what "
		  "'kvmxdp map allow' lists (uplink:22 uplink:2000-2999)");
	EXPECT_NE(metadata_claim_refusal(one("192.168.1.101"), false, listed, none), "");
	EXPECT_NE(
		metadata_claim_refusal(fwd("uplink:2222"), false, nothing, none).find("(nothing)"),
		std::string::npos);
}

// A UDP socket on an ephemeral port may be a client's (libvirt's dnsmasq
// forwarding a guest's DNS query): named as such, for a mapping that waits.
TEST(MetadataAllow, AnEphemeralUdpSocketIsSaidToPass)
{
	const Mapping m = parse_mapping("uplink:40000-40999", "192.168.122.10:40000-40999", "udp");
	const std::optional<std::vector<MetadataAllow>> dflt;
	const std::string r = metadata_claim_refusal(m, false, dflt, uint16_t{40500}, true);
	EXPECT_NE(r.find("a host socket is bound to udp port 40500"), std::string::npos) << r;
	EXPECT_NE(r.find("made once it is gone"), std::string::npos) << r;
	// The list still comes first; allowed with force='yes', nothing to wait for.
	const auto listed = parse_metadata_allow({"uplink:2000-2999"});
	EXPECT_NE(metadata_claim_refusal(m, false, listed, uint16_t{40500}, true)
			  .find("may claim only what"),
		  std::string::npos);
	const auto wide = parse_metadata_allow({"uplink"});
	EXPECT_EQ(metadata_claim_refusal(m, true, wide, uint16_t{40500}, true), "");
	EXPECT_NE(metadata_claim_refusal(m, false, wide, uint16_t{40500}, true), "");
}

TEST(MetadataAllow, ForceIsYesOrNoOnAForward)
{
	auto nat = [](const std::string &inner) {
		return "<domain><name>v</name><metadata><n:nat "
		       "xmlns:n='http://kvmxdp.org/xmlns/libvirt/1'>" +
		       inner + "</n:nat></metadata></domain>";
	};
	LibvirtDomain d = parse_libvirt_domain(
		nat("<n:forward proto='tcp' port='22' force='yes'/><n:forward proto='tcp' "
		    "port='80' force='no'/><n:forward proto='tcp' port='81'/>"),
		"s");
	ASSERT_EQ(d.nat.forwards.size(), 3u);
	EXPECT_TRUE(d.nat.forwards[0].force);
	EXPECT_FALSE(d.nat.forwards[1].force);
	EXPECT_FALSE(d.nat.forwards[2].force);
	EXPECT_EQ(error_of([&] {
			  parse_libvirt_domain(nat("<n:forward proto='tcp' port='22' force='1'/>"),
					       "s");
		  }),
		  "s: <kvmxdp:nat> forward 1: force '1' is not 'yes' or 'no'");
	EXPECT_EQ(error_of([&] {
			  parse_libvirt_domain(nat("<n:address external='1.2.3.4' force='yes'/>"),
					       "s");
		  }),
		  "s: <kvmxdp:nat> address 1: unknown attribute 'force'");
}

// A pending metadata forward in a config written before kvmxdp recorded
// its force='yes' ("force" absent): the daemon takes force from the
// running domain's XML (libvirt's status file), and makes the forward on a
// port a host service listens on once the allow-list names it, as the
// hook did at the domain's start.  Not running: the recorded flag (none).
TEST(MetadataAllow, PromotionTakesForceFromTheRunningDomain)
{
	test::TempDir dir;
	const std::string cfg_path = dir.path() + "/kvmxdp.json";
	{
		std::ofstream f(cfg_path);
		f << R"({"version": 2, "instances": [], "detached": {"virbr0": {"uplink": "wlan0",
		    "mappings": [{"ext": "uplink:2299", "guest": "192.168.122.11:80", "proto": "tcp",
		    "add_address": false, "network": null, "gateway": null, "vm": "web1",
		    "origin": "metadata",
		    "pending": "a host service listens on tcp port 2299 of 192.168.1.50"}]}}})";
	}
	::chmod(cfg_path.c_str(), 0600);
	const Config cfg = ConfigStore(cfg_path).load();
	ASSERT_EQ(cfg.detached.count("virbr0"), 1u);
	const std::vector<StaticMapping> recorded = cfg.detached.at("virbr0").mappings;
	ASSERT_EQ(recorded.size(), 1u);
	EXPECT_FALSE(recorded[0].metadata_force) << "the old format has no force";

	const std::string root = dir.path() + "/root";
	const std::string status = root + "/run/libvirt/qemu/web1.xml";
	auto write_status = [&](const std::string &forward) {
		std::filesystem::create_directories(root + "/run/libvirt/qemu");
		std::ofstream f(status);
		f << "<domstatus state='running' pid='4242'><domain type='kvm' id='3'>"
		     "<name>web1</name><metadata><kvmxdp:nat "
		     "xmlns:kvmxdp='http://kvmxdp.org/xmlns/libvirt/1'>"
		  << forward
		  << "<kvmxdp:address external='192.168.1.101'/></kvmxdp:nat></metadata>"
		     "<devices><interface type='network'><mac address='52:54:00:00:00:0b'/>"
		     "<source network='default' bridge='virbr0'/></interface></devices>"
		     "</domain></domstatus>";
	};
	MappingContext ctx;
	ctx.subnet = parse_cidr("192.168.122.0/24");
	ctx.nat_ports = {61000, 65535};
	ctx.uplink_addr = parse_ipv4("192.168.1.50");
	ctx.uplink_net = parse_cidr("192.168.1.0/24");
	const NetId net{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	const auto allow = parse_metadata_allow({"uplink:2299"});
	// A host service listens on 2299 (sshd's, say).
	auto promote = [&](std::vector<StaticMapping> ms) {
		promote_pending(ms, ctx, net, nullptr, [&](const StaticMapping &sm) {
			return metadata_claim_refusal(sm.m, declared_metadata_force(root, sm),
						      allow, uint16_t{2299});
		});
		return ms[0].pending;
	};

	EXPECT_NE(promote(recorded).find("force='yes'"), std::string::npos)
		<< "not running: the recorded flag, none";
	write_status("<kvmxdp:forward proto='tcp' port='2299' to='80' force='yes'/>");
	EXPECT_TRUE(declared_metadata_force(root, recorded[0]));
	EXPECT_EQ(promote(recorded), "") << "made: the running domain says force='yes'";
	write_status("<kvmxdp:forward proto='tcp' port='2299' to='80'/>");
	EXPECT_NE(promote(recorded).find("force='yes'"), std::string::npos)
		<< "the running domain's forward has no force";
	// The domain's other forward is not this one: the recorded flag.
	write_status("<kvmxdp:forward proto='tcp' port='2300' to='80' force='yes'/>");
	EXPECT_FALSE(declared_metadata_force(root, recorded[0]));
	// A network's forward, from its status file.
	StaticMapping n = recorded[0];
	n.vm.clear();
	n.libvirt_network = "default";
	std::filesystem::create_directories(root + "/run/libvirt/network");
	std::ofstream(root + "/run/libvirt/network/default.xml")
		<< "<networkstatus><network><name>default</name><metadata><kvmxdp:nat "
		   "xmlns:kvmxdp='http://kvmxdp.org/xmlns/libvirt/1'><kvmxdp:forward proto='tcp' "
		   "port='2299' to='192.168.122.11:80' force='yes'/></kvmxdp:nat></metadata>"
		   "<bridge name='virbr0'/></network></networkstatus>";
	EXPECT_TRUE(declared_metadata_force(root, n));
	EXPECT_EQ(promote({n}), "");
}
