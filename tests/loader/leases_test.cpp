// SPDX-License-Identifier: GPL-2.0
// libvirt's DHCP leases as owners of guest addresses: the status file's
// parser (model/leases.hpp) and their sync into kvx_guest
// (control/guests.hpp), on a real map.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "control/guests.hpp"
#include "kvmxdp/abi.h"
#include "model/leases.hpp"
#include "privileges.hpp"

using namespace kvmxdp;

namespace {

// As libvirt's leaseshelper writes it (an IPv6 lease has no MAC, a DUID).
const char *kStatus = R"([
  {
    "ip-address": "192.168.122.10",
    "mac-address": "52:54:00:aa:bb:0a",
    "hostname": "a",
    "expiry-time": 1900000000
  },
  {
    "ip-address": "192.168.122.11",
    "mac-address": "52:54:00:AA:BB:0B",
    "expiry-time": 0
  },
  {
    "ip-address": "fd00::10",
    "iaid": "1234",
    "client-id": "00:01:00:01",
    "expiry-time": 1900000000
  }
])";

TEST(Leases, ParsesLibvirtStatusFile)
{
	auto l = parse_libvirt_leases(kStatus, "t.status");
	ASSERT_EQ(l.size(), 2u);
	EXPECT_EQ(l[0].addr, 0xc0a87a0au);
	EXPECT_EQ(l[0].mac, (MacAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0x0a}));
	EXPECT_EQ(l[0].expiry, 1900000000);
	EXPECT_EQ(l[1].addr, 0xc0a87a0bu);
	EXPECT_EQ(l[1].mac, (MacAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0x0b}));
	EXPECT_EQ(l[1].expiry, 0);
	// The name `top` and the metrics show; none is "".
	EXPECT_EQ(l[0].hostname, "a");
	EXPECT_EQ(l[1].hostname, "");
	// Guest-chosen: only printable ASCII, at most 64 characters.
	auto h = parse_libvirt_leases(
		"[{\"ip-address\":\"192.168.122.12\",\"mac-address\":\"52:54:00:00:00:0c\","
		"\"hostname\":\"vm\\u001b[2Jone\\n\"}]",
		"t");
	ASSERT_EQ(h.size(), 1u);
	EXPECT_EQ(h[0].hostname, "vm[2Jone");
	EXPECT_TRUE(parse_libvirt_leases("", "t").empty()) << "libvirt's file before any lease";
	EXPECT_TRUE(parse_libvirt_leases("[]\n", "t").empty());
	for (const char *bad : {"{", "{}", "[1]", "not json"}) {
		try {
			parse_libvirt_leases(bad, "/x/t.status");
			ADD_FAILURE() << "accepted " << bad;
		} catch (const Error &e) {
			EXPECT_NE(std::string(e.what()).find("/x/t.status"), std::string::npos)
				<< e.what();
		}
	}
	// Broken entries are skipped, not guessed.
	auto s = parse_libvirt_leases(
		R"([{"ip-address":"192.168.122.300","mac-address":"52:54:00:00:00:01"},
		    {"ip-address":"192.168.122.12","mac-address":"52:54:00:00:00"},
		    {"ip-address":"192.168.122.13","mac-address":"52:54:00:00:00:0d:"}])",
		"t");
	EXPECT_TRUE(s.empty());
}

TEST(Leases, OptionIsAnAbsolutePathOrNone)
{
	EXPECT_EQ(leases_path("", "virbr0"), "/var/lib/libvirt/dnsmasq/virbr0.status");
	EXPECT_EQ(leases_path("none", "virbr0"), "");
	EXPECT_EQ(leases_path("/tmp/x.status", "virbr0"), "/tmp/x.status");
	check_leases_option("none", "--dhcp-leases");
	check_leases_option("/tmp/x", "--dhcp-leases");
	for (const char *bad : {"", "x.status", "./x"}) {
		try {
			check_leases_option(bad, "--dhcp-leases");
			ADD_FAILURE() << "accepted '" << bad << "'";
		} catch (const ConfigError &e) {
			EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"),
				  std::string::npos)
				<< e.what();
		}
	}
}

class LeaseSyncTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
		fd_.reset(bpf_map_create(BPF_MAP_TYPE_HASH, "t_guest", sizeof(__be32),
					 sizeof(kvx_guest_val), 64, nullptr));
		ASSERT_GE(fd_.get(), 0) << std::strerror(errno);
	}
	std::optional<kvx_guest_val> get(uint32_t addr)
	{
		const __be32 k = htonl(addr);
		kvx_guest_val v{};
		if (bpf_map_lookup_elem(fd_.get(), &k, &v))
			return std::nullopt;
		return v;
	}
	void put(uint32_t addr, uint8_t last, uint16_t flags, uint64_t seen)
	{
		const __be32 k = htonl(addr);
		kvx_guest_val v{};
		const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, last};
		std::memcpy(v.mac, mac, 6);
		v.flags = flags;
		v.seen_ns = seen;
		ASSERT_EQ(bpf_map_update_elem(fd_.get(), &k, &v, BPF_ANY), 0);
	}
	Fd fd_;
};

TEST_F(LeaseSyncTest, LeasesOwnTheirAddressesUntilTheyEnd)
{
	const uint32_t subnet = htonl(0xc0a87a00), mask = htonl(0xffffff00);
	// .10 learnt by a spoofer's MAC (:ee) before the lease was read; .12
	// leased before, no longer in the file; .13 learnt, never leased.
	put(0xc0a87a0a, 0xee, 0, 5);
	put(0xc0a87a0c, 0x0c, KVX_GUEST_F_LEASE, 5);
	put(0xc0a87a0d, 0x0d, 0, 5);
	std::vector<Lease> l = parse_libvirt_leases(kStatus, "t");
	Lease ended;
	ended.addr = 0xc0a87a0e;
	ended.expiry = 1000; // before "now"
	l.push_back(ended);
	Lease outside;
	outside.addr = 0x0a000001;
	l.push_back(outside);
	LeaseSync r = sync_leases(fd_.get(), l, subnet, mask, 2000, 777);
	EXPECT_EQ(r.leased, 2u);
	EXPECT_EQ(r.released, 1u);
	ASSERT_EQ(r.taken.size(), 1u) << "the spoofer's .10, active: said";
	EXPECT_EQ(r.taken[0].addr, 0xc0a87a0au);
	EXPECT_EQ(r.taken[0].owner_mac, (MacAddr{0x52, 0x54, 0, 0, 0, 0xee}));
	EXPECT_EQ(r.taken[0].lease_mac, (MacAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0x0a}));
	EXPECT_EQ(r.taken[0].idle_ns, 772u);

	auto a = get(0xc0a87a0a);
	ASSERT_TRUE(a);
	EXPECT_EQ(a->mac[5], 0x0a) << "the lease's MAC owns it, not the first sender's";
	EXPECT_EQ(a->flags, KVX_GUEST_F_LEASE);
	auto b = get(0xc0a87a0b);
	ASSERT_TRUE(b);
	EXPECT_EQ(b->flags, KVX_GUEST_F_LEASE) << "expiry 0: an infinite lease";
	auto c = get(0xc0a87a0c);
	ASSERT_TRUE(c);
	EXPECT_EQ(c->flags, 0) << "its lease is gone: a learnt owner";
	EXPECT_EQ(c->seen_ns, 777u) << "idle from now on, not since its last frame";
	EXPECT_EQ(c->mac[5], 0x0c);
	auto d = get(0xc0a87a0d);
	ASSERT_TRUE(d);
	EXPECT_EQ(d->seen_ns, 5u) << "a learnt owner is left alone";
	EXPECT_FALSE(get(0xc0a87a0e)) << "an ended lease owns nothing";
	EXPECT_FALSE(get(0x0a000001)) << "outside the subnet";

	// Unchanged leases: nothing rewritten (the datapath's refreshes stay).
	kvx_guest_val refreshed = *a;
	refreshed.seen_ns = 999;
	const __be32 ka = htonl(0xc0a87a0a);
	ASSERT_EQ(bpf_map_update_elem(fd_.get(), &ka, &refreshed, BPF_EXIST), 0);
	r = sync_leases(fd_.get(), l, subnet, mask, 2000, 1000);
	EXPECT_EQ(get(0xc0a87a0a)->seen_ns, 999u);
	EXPECT_TRUE(r.taken.empty()) << "said once: the lease's now";
}

// A lease takes its address from an active learnt owner with another MAC
// too (the DHCP server decides; else a guest that sends from every free
// address of the range would keep new VMs from their leases), and says
// so; an idle owner's address is taken silently.
TEST_F(LeaseSyncTest, ALeaseTakesAnActiveGuestsAddressAndSaysSo)
{
	const uint32_t subnet = htonl(0xc0a87a00), mask = htonl(0xffffff00);
	const uint64_t t0 = 1000ULL * 1000000000;
	put(0xc0a87a0a, 0x77, 0, t0);			  // a static guest at .10
	put(0xc0a87a0b, 0x78, 0, t0 - KVX_GUEST_IDLE_NS); // an idle one at .11
	const std::vector<Lease> l = parse_libvirt_leases(kStatus, "t");
	const LeaseSync r = sync_leases(fd_.get(), l, subnet, mask, 2000, t0 + 10ULL * 1000000000);
	ASSERT_EQ(r.taken.size(), 1u);
	EXPECT_EQ(r.taken[0].addr, 0xc0a87a0au);
	EXPECT_EQ(r.taken[0].owner_mac, (MacAddr{0x52, 0x54, 0, 0, 0, 0x77}));
	EXPECT_EQ(r.taken[0].idle_ns, 10ULL * 1000000000);
	EXPECT_EQ(get(0xc0a87a0a)->mac[5], 0x0a);
	EXPECT_EQ(get(0xc0a87a0a)->flags, KVX_GUEST_F_LEASE);
	EXPECT_EQ(get(0xc0a87a0b)->mac[5], 0x0b);
}

} // namespace
