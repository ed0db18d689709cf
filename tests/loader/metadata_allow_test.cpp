// SPDX-License-Identifier: GPL-2.0
// What libvirt metadata may claim (model/metadata_allow.hpp): the
// allow-list's entries, which mappings they cover, and the hooks' refusal
// of a port a host service listens on (force='yes' and the list, both).
#include <gtest/gtest.h>

#include "base/error.hpp"
#include "error_of.hpp"
#include "model/libvirt.hpp"
#include "model/metadata_allow.hpp"

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
