// SPDX-License-Identifier: GPL-2.0
// Which guests the metrics endpoint exports and `top` shows
// (control/guest_stats.hpp active_guests): a guest that is gone or moved
// must not leave series or lines behind for as long as kvx_guest remembers
// its old addresses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "control/guest_stats.hpp"
#include "control/metrics.hpp"
#include "model/mapping.hpp"
#include "temp_dir.hpp"

using namespace kvmxdp;

namespace {

constexpr uint64_t kSec = 1000000000ULL;
constexpr uint64_t kNow = 10000 * kSec;

GuestRow row(uint8_t id, std::vector<std::tuple<const char *, uint64_t, bool>> addrs)
{
	GuestRow r;
	r.mac = {0x52, 0x54, 0, 0, 0, id};
	for (const auto &[a, seen, lease] : addrs) {
		r.addrs.push_back(parse_ipv4(a));
		r.seen_ns.push_back(seen);
		r.leased.push_back(lease);
	}
	return r;
}

} // namespace

TEST(MetricsGuests, GoneGuestsAndOldAddressesAreNotExported)
{
	const std::vector<GuestRow> rows = {
		// Sending now.
		row(1, {{"192.168.122.10", kNow - 2 * kSec, false}}),
		// Stopped 10 minutes ago, its address learnt from traffic.
		row(2, {{"192.168.122.11", kNow - 600 * kSec, false}}),
		// Moved from .12 to .13 (DHCP): the old address is still its in
		// kvx_guest, idle.
		row(3, {{"192.168.122.12", kNow - 900 * kSec, false},
			{"192.168.122.13", kNow - 1 * kSec, false}}),
		// Idle, but its lease holds the address: still the guest's.
		row(4, {{"192.168.122.14", kNow - 3600 * kSec, true}}),
		// Never sent (seen_ns 0) and no lease.
		row(5, {{"192.168.122.15", 0, false}}),
	};
	const auto out = active_guests(rows, kNow, KVX_GUEST_IDLE_NS);
	ASSERT_EQ(out.size(), 3u);
	EXPECT_EQ(out[0].mac[5], 1);
	EXPECT_EQ(out[1].mac[5], 3);
	ASSERT_EQ(out[1].addrs.size(), 1u);
	EXPECT_EQ(format_ipv4(out[1].addrs[0]), "192.168.122.13");
	EXPECT_EQ(out[1].seen_ns.size(), 1u);
	EXPECT_EQ(out[2].mac[5], 4);
	// Just inside the window is exported, just past it is not.
	const auto edge = active_guests({row(6, {{"192.168.122.16", kNow - 300 * kSec, false}})},
					  kNow, KVX_GUEST_IDLE_NS);
	EXPECT_EQ(edge.size(), 1u);
	EXPECT_TRUE(active_guests({row(6, {{"192.168.122.16", kNow - 301 * kSec, false}})}, kNow,
				    KVX_GUEST_IDLE_NS)
			    .empty());
	// A seen_ns ahead of the reader's clock is "now".
	EXPECT_EQ(active_guests({row(7, {{"192.168.122.17", kNow + kSec, false}})}, kNow,
				  KVX_GUEST_IDLE_NS)
			  .size(),
		  1u);
}

namespace {

void write_domain(const std::string &path, const std::string &name, const std::string &mac)
{
	std::ofstream(path) << "<domstatus state='running'><domain type='kvm'><name>" << name
			    << "</name><devices><interface type='network'><mac address='" << mac
			    << "'/><source network='default'/></interface></devices></domain>"
			       "</domstatus>\n";
}

} // namespace

// Two running domains with one MAC (the second defined with the first's,
// by mistake or to borrow its name): that guest's `vm` label names none
// of them, not whichever file the directory lists last; nor does a
// mapping's address then.
TEST(MetricsGuests, DuplicateMacNamesNoVm)
{
	kvmxdp::test::TempDir root;
	const std::string dir = root.path() + "/run/libvirt/qemu";
	std::filesystem::create_directories(dir);
	write_domain(dir + "/web1.xml", "web1", "52:54:00:00:00:01");
	write_domain(dir + "/db1.xml", "db1", "52:54:00:00:00:02");
	GuestVmNames n = guest_vm_names({}, root.path());
	EXPECT_EQ(n.by_mac["52:54:00:00:00:01"], "web1");
	write_domain(dir + "/evil.xml", "evil", "52:54:00:00:00:01");
	StaticMapping sm;
	sm.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	sm.vm = "web1";
	n = guest_vm_names({sm}, root.path());
	EXPECT_EQ(n.by_mac.count("52:54:00:00:00:01"), 0u);
	EXPECT_EQ(n.ambiguous_macs.count("52:54:00:00:00:01"), 1u);
	EXPECT_EQ(n.by_mac["52:54:00:00:00:02"], "db1");
	// A mapping's lease_mac that another domain claims: none either.
	StaticMapping leased = sm;
	leased.vm = "web2";
	leased.lease_mac = "52:54:00:00:00:02";
	n = guest_vm_names({leased}, root.path());
	EXPECT_EQ(n.by_mac.count("52:54:00:00:00:02"), 0u);

	// The mapping's address names web1, but read_guest_rows asks the
	// ambiguous MAC first (it names none).
	n = guest_vm_names({sm}, root.path());
	EXPECT_EQ(n.by_addr[parse_ipv4("192.168.122.10")], "web1");
	EXPECT_EQ(n.ambiguous_macs.count("52:54:00:00:00:01"), 1u);
}

// A scrape reads a domain's status file again only when it changed.
TEST(MetricsGuests, DomainFilesParsedOnlyWhenChanged)
{
	kvmxdp::test::TempDir root;
	const std::string dir = root.path() + "/run/libvirt/qemu";
	std::filesystem::create_directories(dir);
	write_domain(dir + "/web1.xml", "web1", "52:54:00:00:00:01");
	write_domain(dir + "/db1.xml", "db1", "52:54:00:00:00:02");
	DomainFiles files;
	EXPECT_EQ(guest_vm_names({}, root.path(), &files).by_mac.size(), 2u);
	EXPECT_EQ(files.parses(), 2u);
	for (int k = 0; k < 5; k++)
		EXPECT_EQ(guest_vm_names({}, root.path(), &files).by_mac["52:54:00:00:00:02"],
			  "db1");
	EXPECT_EQ(files.parses(), 2u);
	// db1 renamed in place (a new file: libvirt writes a temporary one
	// and renames it): read again, web1's not.
	write_domain(dir + "/db1.xml.new", "db2", "52:54:00:00:00:02");
	std::filesystem::rename(dir + "/db1.xml.new", dir + "/db1.xml");
	EXPECT_EQ(guest_vm_names({}, root.path(), &files).by_mac["52:54:00:00:00:02"], "db2");
	EXPECT_EQ(files.parses(), 3u);
	// A domain that stopped (its status file gone) names nothing.
	std::filesystem::remove(dir + "/web1.xml");
	EXPECT_EQ(guest_vm_names({}, root.path(), &files).by_mac.count("52:54:00:00:00:01"), 0u);
	EXPECT_EQ(files.parses(), 3u);
}

// A guest seen only over IPv6 (relay mode, NAT66: no kvx_guest entry) is
// here while one of its IPv6 addresses is, with only those; a dual-stack
// guest keeps both families.
TEST(MetricsGuests, Ipv6OnlyGuestsAreExportedByTheirIpv6Addresses)
{
	GuestRow v6 = row(8, {});
	v6.addrs6 = {parse_ipv6("2001:db8:77::a0"), parse_ipv6("2001:db8:77::a1")};
	v6.seen6_ns = {kNow - 900 * kSec, kNow - 2 * kSec};
	GuestRow gone = row(9, {});
	gone.addrs6 = {parse_ipv6("2001:db8:77::b0")};
	gone.seen6_ns = {kNow - 900 * kSec};
	GuestRow dual = row(10, {{"192.168.122.20", kNow - kSec, false}});
	dual.addrs6 = {parse_ipv6("fd42::14")};
	dual.seen6_ns = {kNow - kSec};
	const auto out = active_guests({v6, gone, dual}, kNow, KVX_GUEST_IDLE_NS);
	ASSERT_EQ(out.size(), 2u);
	EXPECT_EQ(out[0].mac[5], 8);
	EXPECT_TRUE(out[0].addrs.empty());
	ASSERT_EQ(out[0].addrs6.size(), 1u);
	EXPECT_EQ(format_ipv6(out[0].addrs6[0]), "2001:db8:77::a1");
	EXPECT_EQ(out[1].mac[5], 10);
	EXPECT_EQ(out[1].addrs.size(), 1u);
	EXPECT_EQ(out[1].addrs6.size(), 1u);
}
