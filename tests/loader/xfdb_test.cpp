// SPDX-License-Identifier: GPL-2.0
// kvx_xfdb against the bridge's forwarding database (model/xfdb.hpp): the
// bridge is the reference wherever it does not learn.
#include <gtest/gtest.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "kernel/netlink.hpp"
#include "model/xfdb.hpp"

using namespace kvmxdp;

namespace {

constexpr int kP1 = 11, kP2 = 12, kP3 = 13; // kP3: learning off
constexpr uint64_t kSec = 1000000000ULL;
constexpr uint64_t kStale = 300 * kSec;
constexpr uint64_t kSynced = 1000 * kSec, kNow = kSynced + 5 * kSec;

const MacAddr kG1 = {0x52, 0x54, 0x00, 0, 0, 1};
const MacAddr kG2 = {0x52, 0x54, 0x00, 0, 0, 2};

// Two learning ports, kP3 not (learning off or locked: the same to sync).
BridgePorts ports(std::set<int> learning = {kP1, kP2})
{
	BridgePorts p;
	p.all = {kP1, kP2, kP3};
	p.learning = std::move(learning);
	return p;
}

XfdbRow row(const MacAddr &mac, int port, uint64_t seen_ns, bool fixed = false)
{
	XfdbRow r;
	r.mac = mac;
	r.ifindex = static_cast<uint32_t>(port);
	r.seen_ns = seen_ns;
	r.fixed = fixed;
	return r;
}

BridgeFdb learnt(int port)
{
	return BridgeFdb{port, true};
}

BridgeFdb fixed(int port)
{
	return BridgeFdb{port, false};
}

XfdbWrite write(const MacAddr &mac, int port, bool force, uint64_t read_seen_ns)
{
	return XfdbWrite{mac, static_cast<uint32_t>(port), force, read_seen_ns};
}

template <typename T>
bool has(const std::vector<T> &v, const T &x)
{
	return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace

// The attack: guest 2, on a port with learning off, sends one frame with
// guest 1's MAC (and address).  Whatever kvx_xfdb says of guest 1 then (an
// XDP sighting on guest 2's port, fresh), the bridge's static entry on
// guest 1's port wins: no refresh, the entry corrected to guest 1's port.
TEST(Xfdb, OnAPortThatDoesNotLearnTheBridgesEntryWins)
{
	for (const std::set<int> &learning : {std::set<int>{kP1, kP2}, std::set<int>{kP1}}) {
		const XfdbPlan p = plan_xfdb_sync({row(kG1, kP3, kNow - kSec)}, {{kG1, fixed(kP1)}},
						  ports(learning), kSynced, kNow, kStale);
		EXPECT_TRUE(p.refresh.empty()) << "NTF_USE on a port that does not learn";
		ASSERT_EQ(p.correct.size(), 1u);
		EXPECT_EQ(p.correct[0], write(kG1, kP1, true, kNow - kSec));
		EXPECT_TRUE(p.remove.empty());
		EXPECT_TRUE(p.add.empty());
	}
}

// What the bridge holds nowhere is not delivered to a port that does not
// learn, however fresh XDP's sighting: kept only on a learning port.
TEST(Xfdb, NothingButTheBridgesEntriesOnAPortThatDoesNotLearn)
{
	XfdbPlan p = plan_xfdb_sync({row(kG1, kP3, kNow - kSec), row(kG2, kP3, 0)}, {}, ports(),
				    kSynced, kNow, kStale);
	EXPECT_TRUE(has(p.remove, kG1));
	EXPECT_TRUE(has(p.remove, kG2));
	EXPECT_TRUE(p.refresh.empty());
	// Seen before the last sync, not stale: kept on a learning port ...
	p = plan_xfdb_sync({row(kG1, kP1, kSynced - kSec)}, {}, ports(), kSynced, kNow, kStale);
	EXPECT_TRUE(p.remove.empty());
	EXPECT_TRUE(p.refresh.empty());
	// ... but not once that port's learning went off.
	p = plan_xfdb_sync({row(kG1, kP1, kSynced - kSec)}, {}, ports({kP2}), kSynced, kNow,
			   kStale);
	EXPECT_TRUE(has(p.remove, kG1));
}

// The bridge's static entries (libvirt's, with learning off) reach
// kvx_xfdb: XDP delivers where the bridge would.
TEST(Xfdb, TheBridgesEntriesAreAdded)
{
	const XfdbPlan p = plan_xfdb_sync({}, {{kG1, fixed(kP3)}, {kG2, learnt(kP1)}}, ports(),
					  kSynced, kNow, kStale);
	ASSERT_EQ(p.add.size(), 2u);
	EXPECT_TRUE(has(p.add, write(kG1, kP3, true, 0))) << "a static entry: marked";
	EXPECT_TRUE(has(p.add, write(kG2, kP1, false, 0)));
	EXPECT_TRUE(p.remove.empty());
	EXPECT_TRUE(p.correct.empty());
}

// Learning ports keep what they did: a fresh sighting is refreshed in the
// bridge (even where the bridge still has the MAC elsewhere: it moves it
// as it would for a frame), an old one follows the bridge, a stale one
// that the bridge lost goes, a port that left the bridge loses its entries.
TEST(Xfdb, LearningPortsAsBefore)
{
	XfdbPlan p = plan_xfdb_sync({row(kG1, kP2, kNow - kSec)}, {{kG1, learnt(kP1)}}, ports(),
				    kSynced, kNow, kStale);
	ASSERT_EQ(p.refresh.size(), 1u);
	EXPECT_EQ(p.refresh[0], std::make_pair(kG1, kP2));
	EXPECT_TRUE(p.correct.empty());

	// Old: the bridge's port, unless XDP saw the guest since the dump
	// (read_seen_ns: the daemon compares before it writes).
	p = plan_xfdb_sync({row(kG1, kP2, kSynced - kSec)}, {{kG1, learnt(kP1)}}, ports(), kSynced,
			   kNow, kStale);
	EXPECT_TRUE(p.refresh.empty());
	ASSERT_EQ(p.correct.size(), 1u);
	EXPECT_EQ(p.correct[0], write(kG1, kP1, false, kSynced - kSec));

	p = plan_xfdb_sync({row(kG1, kP2, kNow - kStale - kSec), row(kG2, 99, kNow - kSec)}, {},
			   ports(), kSynced, kNow, kStale);
	EXPECT_TRUE(has(p.remove, kG1));
	EXPECT_TRUE(has(p.remove, kG2));
	EXPECT_TRUE(p.refresh.empty());
}

// A static entry (libvirt's, an administrator's) on one port, and a fresh
// XDP sighting of that MAC on a learning port (a guest there spoofing it):
// kvmxdp does not move it (NTF_USE would, as any frame the bridge learns
// from does to an entry that is not sticky); kvx_xfdb goes back to the
// bridge's port whatever XDP saw meanwhile.
TEST(Xfdb, AStaticEntryIsNotRefreshedAway)
{
	for (int home : {kP1, kP3}) {
		const XfdbPlan p = plan_xfdb_sync({row(kG1, kP2, kNow - kSec)},
						  {{kG1, fixed(home)}}, ports(), kSynced, kNow,
						  kStale);
		EXPECT_TRUE(p.refresh.empty()) << home;
		ASSERT_EQ(p.correct.size(), 1u) << home;
		EXPECT_EQ(p.correct[0], write(kG1, home, true, kNow - kSec));
		EXPECT_TRUE(p.remove.empty());
	}
	// Where the bridge holds it: marked static (XDP never moves it), once.
	XfdbPlan p = plan_xfdb_sync({row(kG1, kP1, kNow - kSec)}, {{kG1, fixed(kP1)}}, ports(),
				    kSynced, kNow, kStale);
	EXPECT_TRUE(p.refresh.empty());
	ASSERT_EQ(p.correct.size(), 1u);
	EXPECT_EQ(p.correct[0], write(kG1, kP1, true, kNow - kSec));
	p = plan_xfdb_sync({row(kG1, kP1, 0, true)}, {{kG1, fixed(kP1)}}, ports(), kSynced, kNow,
			   kStale);
	EXPECT_TRUE(p.refresh.empty());
	EXPECT_TRUE(p.correct.empty());
	// The bridge's entry became a learnt one: unmarked; gone: removed.
	p = plan_xfdb_sync({row(kG1, kP1, 0, true)}, {{kG1, learnt(kP1)}}, ports(), kSynced, kNow,
			   kStale);
	ASSERT_EQ(p.correct.size(), 1u);
	EXPECT_EQ(p.correct[0], write(kG1, kP1, false, 0));
	p = plan_xfdb_sync({row(kG1, kP1, 0, true)}, {}, ports(), kSynced, kNow, kStale);
	EXPECT_TRUE(has(p.remove, kG1));
}

// ---- Which FDB events make the daemon sync (kernel/netlink fdb_event_matters)

namespace {

constexpr int kBridge = 7, kOtherBridge = 9;

// An rtnetlink FDB notification as the kernel's br_fdb.c writes it: ndmsg,
// NDA_LLADDR, then NDA_MASTER for an entry on a port.
struct FdbMsg {
	alignas(nlmsghdr) unsigned char buf[256] = {};
	nlmsghdr *h = reinterpret_cast<nlmsghdr *>(buf);

	FdbMsg(uint16_t type, int ifindex, uint16_t state, uint8_t flags, int master)
	{
		h->nlmsg_type = type;
		h->nlmsg_len = NLMSG_LENGTH(sizeof(ndmsg));
		auto *nd = static_cast<ndmsg *>(NLMSG_DATA(h));
		nd->ndm_family = AF_BRIDGE;
		nd->ndm_ifindex = ifindex;
		nd->ndm_state = state;
		nd->ndm_flags = flags;
		const unsigned char mac[6] = {0x52, 0x54, 0, 0, 0, 1};
		put(NDA_LLADDR, mac, sizeof(mac));
		if (master) {
			uint32_t m = static_cast<uint32_t>(master);
			put(NDA_MASTER, &m, sizeof(m));
		}
	}
	void put(uint16_t type, const void *data, size_t len)
	{
		auto *a = reinterpret_cast<rtattr *>(buf + NLMSG_ALIGN(h->nlmsg_len));
		a->rta_type = type;
		a->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
		std::memcpy(RTA_DATA(a), data, len);
		h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
	}
};

} // namespace

TEST(FdbEvents, StaticEntriesOfThisBridgesPortsCount)
{
	EXPECT_TRUE(fdb_event_matters(FdbMsg(RTM_NEWNEIGH, kP3, NUD_NOARP, 0, kBridge).h, kBridge));
	EXPECT_TRUE(
		fdb_event_matters(FdbMsg(RTM_DELNEIGH, kP1, NUD_PERMANENT, 0, kBridge).h, kBridge));
	EXPECT_TRUE(fdb_event_matters(
		FdbMsg(RTM_NEWNEIGH, kP1, NUD_REACHABLE, NTF_EXT_LEARNED, kBridge).h, kBridge));
	// An entry on the bridge device itself carries no NDA_MASTER.
	EXPECT_TRUE(fdb_event_matters(FdbMsg(RTM_NEWNEIGH, kBridge, NUD_NOARP, 0, 0).h, kBridge));
}

TEST(FdbEvents, LearningAndAgeingDoNot)
{
	EXPECT_FALSE(
		fdb_event_matters(FdbMsg(RTM_NEWNEIGH, kP1, NUD_REACHABLE, 0, kBridge).h, kBridge));
	EXPECT_FALSE(
		fdb_event_matters(FdbMsg(RTM_DELNEIGH, kP1, NUD_STALE, 0, kBridge).h, kBridge));
}

TEST(FdbEvents, AnotherBridgesEntriesDoNot)
{
	EXPECT_FALSE(
		fdb_event_matters(FdbMsg(RTM_NEWNEIGH, 21, NUD_NOARP, 0, kOtherBridge).h, kBridge));
	EXPECT_FALSE(fdb_event_matters(FdbMsg(RTM_DELNEIGH, kOtherBridge, NUD_PERMANENT, 0, 0).h,
				       kBridge));
	// Not a bridge entry at all: an IPv4 neighbour, a truncated message.
	FdbMsg inet(RTM_NEWNEIGH, kP1, NUD_PERMANENT, 0, kBridge);
	static_cast<ndmsg *>(NLMSG_DATA(inet.h))->ndm_family = AF_INET;
	EXPECT_FALSE(fdb_event_matters(inet.h, kBridge));
	FdbMsg cut(RTM_NEWNEIGH, kP1, NUD_PERMANENT, 0, kBridge);
	cut.h->nlmsg_len = NLMSG_LENGTH(2);
	EXPECT_FALSE(fdb_event_matters(cut.h, kBridge));
}
