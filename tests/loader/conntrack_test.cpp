// SPDX-License-Identifier: GPL-2.0
// `conntrack list|flush` (loader/control/conntrack.cpp): filter parsing, the flow
// JSON/line, flush on real BPF hash maps, and the status memory helpers.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "control/conntrack.hpp"
#include "control/status.hpp"
#include "model/timeouts.hpp"
#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "control/gc.hpp"
#include "kvmxdp/ct_rules.h"
#include "kernel_maps.hpp"
#include "kernel/maps.hpp"
#include "temp_dir.hpp"

using namespace kvmxdp;
using nlohmann::json;

namespace {

constexpr uint64_t kSec = 1000000000ULL;

std::string error_of(const CtFilterArgs &a)
{
	try {
		parse_ct_filter(a);
	} catch (const Error &e) {
		return e.what();
	}
	return "";
}

kvx_ct_key key(uint8_t proto, uint32_t guest, uint16_t gport, uint32_t remote, uint16_t rport)
{
	kvx_ct_key k{};
	k.proto = proto;
	k.int_addr = htonl(guest);
	k.int_port = htons(gport);
	k.rem_addr = htonl(remote);
	k.rem_port = htons(rport);
	return k;
}

kvx_ct_val val(uint8_t state, uint8_t flags, uint32_t ext, uint16_t eport, uint64_t created,
	       uint64_t seen)
{
	kvx_ct_val v{};
	v.state = state;
	v.flags = flags;
	v.ext_addr = htonl(ext);
	v.ext_port = htons(eport);
	v.created_ns = created;
	v.last_seen_ns = seen;
	return v;
}

} // namespace

TEST(Conntrack, FilterParsing)
{
	CtFilter f = parse_ct_filter({});
	EXPECT_TRUE(f.empty());

	CtFilterArgs a;
	a.guest = "192.168.122.11";
	a.remote = "10.78.0.2";
	a.proto = "TCP";
	a.ext_port = "61000";
	a.state = "established";
	f = parse_ct_filter(a);
	EXPECT_FALSE(f.empty());
	EXPECT_EQ(*f.guest, 0xc0a87a0bu);
	EXPECT_EQ(*f.remote, 0x0a4e0002u);
	EXPECT_EQ(*f.proto, IPPROTO_TCP);
	EXPECT_EQ(*f.ext_port, 61000u);
	EXPECT_EQ(*f.state, KVX_CT_ESTABLISHED);
	a = {};
	a.proto = "icmp";
	EXPECT_EQ(*parse_ct_filter(a).proto, IPPROTO_ICMP);
	a.proto = "udp";
	EXPECT_EQ(*parse_ct_filter(a).proto, IPPROTO_UDP);
	a = {};
	a.state = "Stateless";
	EXPECT_EQ(*parse_ct_filter(a).state, KVX_CT_UDP);

	// Every bad value is named in the one error line.
	struct Bad {
		CtFilterArgs a;
		std::string needle;
	};
	const Bad bad[] = {
		{{"10.1", "", "", "", ""}, "--guest '10.1'"},
		{{"192.168.122.11/24", "", "", "", ""}, "--guest '192.168.122.11/24'"},
		{{"", "nowhere", "", "", ""}, "--remote 'nowhere'"},
		{{"", "", "sctp", "", ""}, "--proto 'sctp'"},
		{{"", "", "6", "", ""}, "--proto '6'"},
		{{"", "", "", "0", ""}, "--ext-port '0'"},
		{{"", "", "", "65536", ""}, "--ext-port '65536'"},
		{{"", "", "", "-1", ""}, "--ext-port '-1'"},
		{{"", "", "", "80x", ""}, "--ext-port '80x'"},
		{{"", "", "", "", "OPEN"}, "--state 'OPEN'"},
	};
	for (const auto &b : bad) {
		std::string e = error_of(b.a);
		EXPECT_NE(e.find(b.needle), std::string::npos) << "error: '" << e << "'";
		EXPECT_EQ(e.find('\n'), std::string::npos) << e;
	}
}

TEST(Conntrack, FilterMatches)
{
	kvx_ct_key k = key(IPPROTO_TCP, 0xc0a87a0b, 40000, 0x0a4e0002, 8080);
	kvx_ct_val v = val(KVX_CT_ESTABLISHED, 0, 0x0a4d0002, 61000, 0, 0);
	CtFilter f;
	EXPECT_TRUE(f.matches(k, v));
	f.guest = 0xc0a87a0b;
	f.remote = 0x0a4e0002;
	f.proto = IPPROTO_TCP;
	f.ext_port = 61000;
	f.state = KVX_CT_ESTABLISHED;
	EXPECT_TRUE(f.matches(k, v));
	// Each field on its own can exclude the flow.
	CtFilter g = f;
	g.guest = 0xc0a87a0c;
	EXPECT_FALSE(g.matches(k, v));
	g = f;
	g.remote = 0x0a4e0003;
	EXPECT_FALSE(g.matches(k, v));
	g = f;
	g.proto = IPPROTO_UDP;
	EXPECT_FALSE(g.matches(k, v));
	g = f;
	g.ext_port = 40000; // the guest's port is not the external one
	EXPECT_FALSE(g.matches(k, v));
	g = f;
	g.state = KVX_CT_SYN_SENT;
	EXPECT_FALSE(g.matches(k, v));
}

TEST(Conntrack, Names)
{
	EXPECT_EQ(ct_state_name(KVX_CT_SYN_SENT), "SYN_SENT");
	EXPECT_EQ(ct_state_name(KVX_CT_ESTABLISHED), "ESTABLISHED");
	EXPECT_EQ(ct_state_name(KVX_CT_FIN_WAIT), "FIN_WAIT");
	EXPECT_EQ(ct_state_name(KVX_CT_TIME_WAIT), "TIME_WAIT");
	EXPECT_EQ(ct_state_name(KVX_CT_CLOSE), "CLOSE");
	EXPECT_EQ(ct_state_name(KVX_CT_UDP), "STATELESS");
	EXPECT_EQ(ct_state_name(200), "STATE_200");
	for (uint8_t s = 0; s < KVX_CT_STATE_MAX; s++)
		EXPECT_EQ(parse_ct_state(ct_state_name(s)), s);
	EXPECT_FALSE(parse_ct_state("STATE_200"));
	EXPECT_EQ(ct_proto_name(IPPROTO_TCP), "tcp");
	EXPECT_EQ(ct_proto_name(IPPROTO_UDP), "udp");
	EXPECT_EQ(ct_proto_name(IPPROTO_ICMP), "icmp");
	EXPECT_EQ(ct_proto_name(47), "47");
	EXPECT_EQ(ct_flag_names(0).size(), 0u);
	EXPECT_EQ(ct_flag_names(KVX_CT_F_SEEN_REPLY | KVX_CT_F_INBOUND | KVX_CT_F_STATIC |
				KVX_CT_F_ONE_TO_ONE),
		  (std::vector<std::string>{"seen_reply", "inbound", "static", "one_to_one"}));
	EXPECT_EQ(ct_flag_names(KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN),
		  (std::vector<std::string>{"fin_out", "fin_in"}));
	EXPECT_EQ(ct_flag_names(KVX_CT_F_SYNACK | KVX_CT_F_HALFOPEN),
		  (std::vector<std::string>{"synack", "halfopen"}));
}

TEST(Conntrack, FlowJsonAndLine)
{
	const kvx_timeouts t = default_timeouts();
	const uint64_t now = 100000 * kSec;
	// TCP established, created 100 s ago, last packet 40 s ago.
	kvx_ct_key k = key(IPPROTO_TCP, 0xc0a87a0b, 40000, 0x0a4e0002, 8080);
	kvx_ct_val v = val(KVX_CT_ESTABLISHED, KVX_CT_F_SEEN_REPLY, 0x0a4d0002, 61000,
			   now - 100 * kSec, now - 40 * kSec);
	v.pkts_out = 7;
	v.pkts_in = 9;
	json j = ct_flow_json(k, v, t, now);
	EXPECT_EQ(j["proto"], "tcp");
	EXPECT_EQ(j["int_addr"], "192.168.122.11");
	EXPECT_EQ(j["int_port"], 40000);
	EXPECT_EQ(j["rem_addr"], "10.78.0.2");
	EXPECT_EQ(j["rem_port"], 8080);
	EXPECT_EQ(j["ext_addr"], "10.77.0.2");
	EXPECT_EQ(j["ext_port"], 61000);
	EXPECT_EQ(j["state"], "ESTABLISHED");
	EXPECT_EQ(j["flags"], json::array({"seen_reply"}));
	EXPECT_EQ(j["age_s"], 100);
	EXPECT_EQ(j["idle_s"], 40);
	EXPECT_EQ(j["timeout_s"], 432000);
	EXPECT_EQ(j["expires_in_s"], 432000 - 40);
	EXPECT_EQ(j["expired"], false);
	EXPECT_EQ(j["pkts_out"], 7);
	EXPECT_EQ(j["pkts_in"], 9);
	EXPECT_EQ(ct_flow_line(j), "tcp   ESTABLISHED  guest=192.168.122.11:40000 "
				   "remote=10.78.0.2:8080 ext=10.77.0.2:61000 age=100s idle=40s "
				   "expires_in=431960s pkts_out=7 pkts_in=9 [seen_reply]");

	// UDP without a reply: the 30 s timeout, 40 s idle -> expired.
	k = key(IPPROTO_UDP, 0xc0a87a0c, 5353, 0x0a4e0002, 53);
	v = val(KVX_CT_UDP, 0, 0x0a4d0002, 5353, now - 50 * kSec, now - 40 * kSec);
	j = ct_flow_json(k, v, t, now);
	EXPECT_EQ(j["state"], "STATELESS");
	EXPECT_EQ(j["timeout_s"], 30);
	EXPECT_EQ(j["expires_in_s"], 0);
	EXPECT_EQ(j["expired"], true);
	EXPECT_NE(ct_flow_line(j).find(" expired "), std::string::npos) << ct_flow_line(j);

	// ICMP echo: the id is the guest's "port", the remote has none; 1:1 flag.
	k = key(IPPROTO_ICMP, 0xc0a87a0b, 777, 0x0a4e0002, 0);
	v = val(KVX_CT_UDP, KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE, 0x0a4d0064, 777, now, now);
	j = ct_flow_json(k, v, t, now);
	EXPECT_EQ(j["timeout_s"], 60); // RFC 5508 REQ-2
	EXPECT_EQ(ct_flow_line(j), "icmp  STATELESS    guest=192.168.122.11 id=777 "
				   "remote=10.78.0.2 ext=10.77.0.100 id=777 age=0s idle=0s "
				   "expires_in=60s pkts_out=0 pkts_in=0 [static,1:1]");

	// Last seen after "now" (touched by the datapath since we read the
	// clock): idle 0, never a huge unsigned number.
	v.last_seen_ns = now + 5 * kSec;
	v.created_ns = now + 5 * kSec;
	j = ct_flow_json(k, v, t, now);
	EXPECT_EQ(j["idle_s"], 0);
	EXPECT_EQ(j["age_s"], 0);
}

TEST(Conntrack, TcpStatesTimeoutsAndWindows)
{
	const kvx_timeouts t = default_timeouts();
	const uint64_t now = 100000 * kSec;
	// An inbound SYN to a forward, answered by the guest's SYN-ACK: the
	// remote's side from its SYN (window scale 7), the guest's with its
	// ACK of it.  3 s idle of SYN_RECV's 60.
	kvx_ct_key k = key(IPPROTO_TCP, 0xc0a87a0b, 2222, 0x0a4e0063, 40000);
	kvx_ct_val v = val(KVX_CT_SYN_RECV, KVX_CT_F_INBOUND | KVX_CT_F_STATIC | KVX_CT_F_SYNACK,
			   0x0a4d0002, 2222, now - 3 * kSec, now - 3 * kSec);
	auto side = [](uint32_t end, uint32_t ack, uint32_t maxwin, uint8_t flags) {
		kvx_ct_tcp s{};
		s.end = end;
		s.maxend = end;
		s.ack = ack;
		s.maxwin = maxwin;
		s.wscale = 7;
		s.flags = flags | KVX_CT_TCP_F_SYN | KVX_CT_TCP_F_WSCALE;
		return s;
	};
	v.tcp[KVX_CT_SIDE_REMOTE] = side(1000001, 0, 5000, 0);
	v.tcp[KVX_CT_SIDE_GUEST] = side(77, 1000001, 64240, KVX_CT_TCP_F_ACK);
	json j = ct_flow_json(k, v, t, now);
	EXPECT_EQ(j["state"], "SYN_RECV");
	EXPECT_EQ(j["timeout_s"], 60);
	EXPECT_EQ(j["expires_in_s"], 57);
	EXPECT_EQ(j["tcp"]["remote"]["end"], 1000001);
	EXPECT_EQ(j["tcp"]["remote"]["wscale"], 7);
	EXPECT_FALSE(j["tcp"]["remote"].contains("ack")) << "no ACK from it yet";
	EXPECT_EQ(j["tcp"]["guest"]["ack"], 1000001);
	EXPECT_FALSE(j["tcp"]["guest"].contains("fin_tsval")) << "no FIN timestamp taken";
	kvx_ct_val closed = v;
	kvx_ct_fin_ts_set(&closed, 0x12345678);
	EXPECT_EQ(ct_flow_json(k, closed, t, now)["tcp"]["guest"]["fin_tsval"], 0x12345678u);
	EXPECT_EQ(ct_flow_line(j),
		  "tcp   SYN_RECV     guest=192.168.122.11:2222 "
		  "remote=10.78.0.99:40000 ext=10.77.0.2:2222 age=3s idle=3s "
		  "expires_in=57s pkts_out=0 pkts_in=0 win=guest:64240/7,remote:5000/7 "
		  "[inbound,static,synack]");
	EXPECT_EQ(parse_ct_state("syn_recv"), KVX_CT_SYN_RECV);

	// The other TCP states and their default timeouts: 4 minutes, every
	// transitory one (RFC 5382 REQ-5, RFC 7857 2.2).
	struct {
		uint8_t state;
		const char *name;
		uint32_t timeout;
	} cases[] = {{KVX_CT_SYN_SENT, "SYN_SENT", 240},
		     {KVX_CT_FIN_WAIT, "FIN_WAIT", 240},
		     {KVX_CT_TIME_WAIT, "TIME_WAIT", 240},
		     {KVX_CT_CLOSE, "CLOSE", 240}};
	for (const auto &c : cases) {
		v = val(c.state, KVX_CT_F_SEEN_REPLY, 0x0a4d0002, 61000, now - 5 * kSec,
			now - 5 * kSec);
		j = ct_flow_json(k, v, t, now);
		EXPECT_EQ(j["state"], c.name);
		EXPECT_EQ(j["timeout_s"], c.timeout) << c.name;
		EXPECT_EQ(j["expires_in_s"], c.timeout - 5) << c.name;
		EXPECT_EQ(ct_flow_line(j).find(" win="), std::string::npos) << "no side tracked";
	}
}

// A flow picked up mid-stream: the guest's side, its window unscaled (scale
// unknown), no maxend; the remote's, of which nothing is recorded, absent.
TEST(Conntrack, PickedUpFlowShowsLooseSides)
{
	const kvx_timeouts t = default_timeouts();
	const uint64_t now = 100000 * kSec;
	kvx_ct_key k = key(IPPROTO_TCP, 0xc0a87a0b, 40436, 0x0a4e0002, 443);
	kvx_ct_val v = val(KVX_CT_ESTABLISHED, 0, 0x0a4d0002, 64888, now - kSec, now - kSec);
	v.tcp[KVX_CT_SIDE_GUEST].end = 5000;
	v.tcp[KVX_CT_SIDE_GUEST].ack = 90000;
	v.tcp[KVX_CT_SIDE_GUEST].maxwin = 502;
	v.tcp[KVX_CT_SIDE_GUEST].flags = KVX_CT_TCP_F_LOOSE | KVX_CT_TCP_F_ACK;
	v.tcp[KVX_CT_SIDE_REMOTE].flags = KVX_CT_TCP_F_LOOSE;
	json j = ct_flow_json(k, v, t, now);
	EXPECT_EQ(j["tcp"]["guest"]["maxwin"], 502);
	EXPECT_EQ(j["tcp"]["guest"]["ack"], 90000);
	EXPECT_EQ(j["tcp"]["guest"]["loose"], true);
	EXPECT_FALSE(j["tcp"]["guest"].contains("maxend"));
	EXPECT_FALSE(j["tcp"].contains("remote")) << "nothing recorded of the remote";
	EXPECT_NE(ct_flow_line(j).find(" win=guest:502/?"), std::string::npos) << ct_flow_line(j);
}

TEST(Conntrack, MemoryEstimate)
{
	MapInfo m;
	m.type = BPF_MAP_TYPE_HASH;
	m.key_size = sizeof(kvx_ct_key);
	m.value_size = sizeof(kvx_ct_val);
	m.max_entries = 65536;
	// buckets 65536 * 16 + (65536 + 2 CPUs) * (48 + 16 + 80) + header
	EXPECT_EQ(map_memory_estimate(m, 2), 512u + 65536u * 16 + 65538u * 144);
	m.max_entries = 1000; // buckets round up to a power of two
	EXPECT_EQ(map_memory_estimate(m, 1), 512u + 1024u * 16 + 1001u * 144);
	m.type = BPF_MAP_TYPE_PERCPU_ARRAY;
	m.key_size = 4;
	m.value_size = sizeof(kvx_stat);
	m.max_entries = 10;
	EXPECT_EQ(map_memory_estimate(m, 4), 512u + 10u * (8 + 16 * 4));
}

// Flush and list on real (unpinned) BPF hash maps: needs root/CAP_BPF.
class CtMaps : public test::KernelMapsTest {
protected:
	void add_flow(uint8_t proto, uint32_t guest, uint16_t gport, uint32_t remote,
		      uint16_t rport, uint16_t eport, uint8_t state, uint8_t flags = 0)
	{
		kvx_ct_key k = key(proto, guest, gport, remote, rport);
		kvx_ct_val v = val(state, flags, kExt, eport, now_ - 10 * kSec, now_ - kSec);
		ASSERT_EQ(bpf_map_update_elem(ct_.get(), &k, &v, BPF_NOEXIST), 0);
	}

	void add_pair(uint8_t proto, uint32_t guest, uint16_t gport, uint16_t eport,
		      uint16_t flags = 0)
	{
		put_pair(proto, guest, gport, kExt, eport, now_ - 100 * kSec, flags);
	}

	// Two guests: g1 with a TCP and a UDP flow sharing nothing, and an
	// ICMP flow; g2 with two TCP flows through ONE binding (endpoint-
	// independent mapping: one guest socket, two remotes) and a port
	// forward's flow.
	void populate()
	{
		add_flow(IPPROTO_TCP, kG1, 40000, kR1, 80, 61000, KVX_CT_ESTABLISHED);
		add_pair(IPPROTO_TCP, kG1, 40000, 61000);
		add_flow(IPPROTO_UDP, kG1, 5000, kR1, 53, 61001, KVX_CT_UDP);
		add_pair(IPPROTO_UDP, kG1, 5000, 61001);
		add_flow(IPPROTO_ICMP, kG1, 9, kR2, 0, 9, KVX_CT_UDP);
		add_pair(IPPROTO_ICMP, kG1, 9, 9);
		add_flow(IPPROTO_TCP, kG2, 41000, kR1, 80, 61002, KVX_CT_ESTABLISHED);
		add_flow(IPPROTO_TCP, kG2, 41000, kR2, 80, 61002, KVX_CT_SYN_SENT);
		add_pair(IPPROTO_TCP, kG2, 41000, 61002);
		add_flow(IPPROTO_TCP, kG2, 22, kR2, 50000, 2222, KVX_CT_ESTABLISHED,
			 KVX_CT_F_STATIC | KVX_CT_F_INBOUND);
		add_pair(IPPROTO_TCP, kG2, 22, 2222, KVX_BIND_F_STATIC);
	}

	size_t flows() { return count_entries<kvx_ct_key>(ct_.get()); }
	size_t binds() { return count_entries<kvx_bind_key>(bind_.get()); }

	// One binding half as the map holds it (host order in).
	kvx_bind_val bind_half(uint8_t dir, uint8_t proto, uint32_t addr, uint16_t port)
	{
		kvx_bind_val v{};
		EXPECT_TRUE(lookup_bind(dir, proto, addr, port, &v))
			<< "no binding half dir " << int(dir) << " port " << port;
		return v;
	}

	static constexpr uint32_t kG1 = 0xc0a87a0b, kG2 = 0xc0a87a0c;
	static constexpr uint32_t kR1 = 0x0a4e0002, kR2 = 0x0a4e0003;
	static constexpr uint32_t kExt = 0x0a4d0002;
	const uint64_t now_ = boottime_ns() + 1000 * kSec;
};

TEST_F(CtMaps, ListFiltersAndSorts)
{
	populate();
	const kvx_timeouts t = default_timeouts();
	json all = ct_list_fd(ct_.get(), t, {}, now_);
	ASSERT_EQ(all.size(), 6u);
	// Sorted by proto, guest, guest port, remote: icmp (1) first, then tcp (6).
	EXPECT_EQ(all[0]["proto"], "icmp");
	EXPECT_EQ(all[1]["int_addr"], "192.168.122.11");
	EXPECT_EQ(all[1]["proto"], "tcp");
	EXPECT_EQ(all[2]["int_port"], 22);
	EXPECT_EQ(all[3]["rem_addr"], "10.78.0.2");
	EXPECT_EQ(all[4]["rem_addr"], "10.78.0.3");
	EXPECT_EQ(all[5]["proto"], "udp");

	CtFilter f;
	f.guest = kG2;
	EXPECT_EQ(ct_list_fd(ct_.get(), t, f, now_).size(), 3u);
	f.state = KVX_CT_SYN_SENT;
	json one = ct_list_fd(ct_.get(), t, f, now_);
	ASSERT_EQ(one.size(), 1u);
	EXPECT_EQ(one[0]["rem_addr"], "10.78.0.3");
	f = {};
	f.ext_port = 61002;
	EXPECT_EQ(ct_list_fd(ct_.get(), t, f, now_).size(), 2u);
	f = {};
	f.proto = IPPROTO_ICMP;
	EXPECT_EQ(ct_list_fd(ct_.get(), t, f, now_).size(), 1u);
	f = {};
	f.remote = kR2;
	EXPECT_EQ(ct_list_fd(ct_.get(), t, f, now_).size(), 3u);
	// Listing changes nothing.
	EXPECT_EQ(flows(), 6u);
	EXPECT_EQ(binds(), 10u);
}

TEST_F(CtMaps, FlushByGuestKeepsTheOthersAndAllBindings)
{
	populate();
	CtFilter f;
	f.guest = kG1;
	CtFlushResult r = ct_flush_fd(ct_.get(), bind_.get(), f, now_);
	EXPECT_EQ(r.flows, 3u);
	// g1's three bindings are unused now; g2's dynamic one still is used.
	EXPECT_EQ(r.unused_bindings, 3u);
	EXPECT_EQ(flows(), 3u);
	CtFilter g2;
	g2.guest = kG2;
	EXPECT_EQ(ct_list_fd(ct_.get(), default_timeouts(), g2, now_).size(), 3u);
	// Bindings are the GC's: all five pairs are still there, consistent.
	EXPECT_EQ(binds(), 10u);
	// g1's bindings were made 100 s ago, but their flows were in use until
	// the flush: they are kept for the grace from then (a stream that goes
	// on sending picks its own port up again) ...
	auto sw = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now_ + 29 * kSec);
	EXPECT_EQ(sw.bind_deleted, 0u);
	// ... then the GC releases exactly g1's and keeps g2's dynamic binding
	// (its flows are live) and the static one.
	sw = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now_ + 31 * kSec);
	EXPECT_EQ(sw.ct_deleted, 0u);
	EXPECT_EQ(sw.bind_deleted, 6u);
	EXPECT_EQ(binds(), 4u);
}

// A flushed TCP flow's remote may send before the guest does: the flush
// marks the binding's IN half (KVX_BIND_F_FLUSHED), so that the datapath
// drops that segment instead of handing it to the host (which would reset
// the connection).  UDP and ICMP ports are marked too: no tenant of a
// shared port joins them (a tenant's claim of the flushed flow's remote
// would take the remote's next datagrams from the owner).  Static
// bindings are not marked.
TEST_F(CtMaps, FlushMarksDynamicTcpBindings)
{
	populate();
	ASSERT_EQ(ct_flush_fd(ct_.get(), bind_.get(), {}, now_).flows, 6u);
	// TCP: never recycled either (its flows are no longer known one by one).
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_TCP, kExt, 61000).flags,
		  KVX_BIND_F_FLUSHED | KVX_BIND_F_MULTI);
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_TCP, kExt, 61002).flags,
		  KVX_BIND_F_FLUSHED | KVX_BIND_F_MULTI);
	EXPECT_EQ(bind_half(KVX_BIND_OUT, IPPROTO_TCP, kG1, 40000).flags, 0u);
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_UDP, kExt, 61001).flags, KVX_BIND_F_FLUSHED);
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_ICMP, kExt, 9).flags, KVX_BIND_F_FLUSHED);
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_TCP, kExt, 2222).flags, KVX_BIND_F_STATIC);
}

TEST_F(CtMaps, FlushOneOfTwoFlowsOfABindingKeepsItReferenced)
{
	populate();
	CtFilter f;
	f.remote = kR2;
	f.proto = IPPROTO_TCP;
	f.state = KVX_CT_SYN_SENT;
	CtFlushResult r = ct_flush_fd(ct_.get(), bind_.get(), f, now_);
	EXPECT_EQ(r.flows, 1u);
	// The other flow of g2's socket still references the binding.
	EXPECT_EQ(r.unused_bindings, 0u);
	EXPECT_EQ(flows(), 5u);
	auto sw = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now_);
	EXPECT_EQ(sw.bind_deleted, 0u);
}

TEST_F(CtMaps, FlushAllNeverTouchesStaticBindings)
{
	populate();
	CtFlushResult r = ct_flush_fd(ct_.get(), bind_.get(), {}, now_);
	EXPECT_EQ(r.flows, 6u);
	EXPECT_EQ(flows(), 0u);
	// Four dynamic pairs unused; the static port forward is not counted.
	EXPECT_EQ(r.unused_bindings, 4u);
	// They count as used at the flush: kept for the grace, then released.
	auto sw = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now_ + 29 * kSec);
	EXPECT_EQ(sw.bind_deleted, 0u);
	sw = gc_sweep(ct_.get(), bind_.get(), default_timeouts(), now_ + 31 * kSec);
	EXPECT_EQ(sw.bind_deleted, 8u);
	EXPECT_EQ(binds(), 2u); // the static pair
	// Flushing an empty table is fine and flushes nothing.
	EXPECT_EQ(ct_flush_fd(ct_.get(), bind_.get(), {}, now_).flows, 0u);
}

TEST_F(CtMaps, FlushLeavesStaticBindingsTimesAlone)
{
	populate();
	CtFilter f;
	f.guest = kG2;
	ASSERT_EQ(ct_flush_fd(ct_.get(), bind_.get(), f, now_).flows, 3u);
	// The port forward's pair keeps its own time (static: no expiry, and
	// nothing of the flush is written into it) ...
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_TCP, kExt, 2222).last_used_ns, now_ - 100 * kSec);
	EXPECT_EQ(bind_half(KVX_BIND_OUT, IPPROTO_TCP, kG2, 22).last_used_ns, now_ - 100 * kSec);
	// ... while g2's dynamic pair counts as used at the flush.
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_TCP, kExt, 61002).last_used_ns, now_);
	EXPECT_EQ(bind_half(KVX_BIND_OUT, IPPROTO_TCP, kG2, 41000).last_used_ns, now_);
	// A binding touched more recently than the flush keeps its later time.
	add_flow(IPPROTO_UDP, kG2, 7000, kR1, 53, 61007, KVX_CT_UDP);
	put_pair(IPPROTO_UDP, kG2, 7000, kExt, 61007, now_ + kSec);
	ASSERT_EQ(ct_flush_fd(ct_.get(), bind_.get(), f, now_).flows, 1u);
	EXPECT_EQ(bind_half(KVX_BIND_IN, IPPROTO_UDP, kExt, 61007).last_used_ns, now_ + kSec);
	EXPECT_EQ(bind_half(KVX_BIND_OUT, IPPROTO_UDP, kG2, 7000).last_used_ns, now_ + kSec);
}

TEST_F(CtMaps, FlushLeavesBindingKeysReusedByOthersAlone)
{
	// g1's UDP flow still says ext port 61001, but both of its binding
	// keys have moved on since (released, then taken again): the IN half
	// of 61001 now belongs to g2's socket (with g2's MACs), and g1's
	// socket is bound to 61005.  The flush must write neither.
	add_flow(IPPROTO_UDP, kG1, 5000, kR1, 53, 61001, KVX_CT_UDP);
	put_pair(IPPROTO_UDP, kG2, 6000, kExt, 61001, now_ - 100 * kSec);
	put_pair(IPPROTO_UDP, kG1, 5000, kExt, 61005, now_ - 100 * kSec);
	const kvx_bind_key ik = bind_key(KVX_BIND_IN, IPPROTO_UDP, kExt, 61001);
	kvx_bind_val iv = bind_half(KVX_BIND_IN, IPPROTO_UDP, kExt, 61001);
	const uint8_t g2_mac[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x0c};
	std::memcpy(iv.guest_mac, g2_mac, 6);
	ASSERT_EQ(bpf_map_update_elem(bind_.get(), &ik, &iv, BPF_EXIST), 0);
	const kvx_bind_val in_before = bind_half(KVX_BIND_IN, IPPROTO_UDP, kExt, 61001);
	const kvx_bind_val out_before = bind_half(KVX_BIND_OUT, IPPROTO_UDP, kG1, 5000);

	ASSERT_EQ(ct_flush_fd(ct_.get(), bind_.get(), {}, now_).flows, 1u);
	const kvx_bind_val in_after = bind_half(KVX_BIND_IN, IPPROTO_UDP, kExt, 61001);
	const kvx_bind_val out_after = bind_half(KVX_BIND_OUT, IPPROTO_UDP, kG1, 5000);
	EXPECT_EQ(std::memcmp(&in_before, &in_after, sizeof(in_after)), 0)
		<< "g2's IN half was written: last_used_ns " << in_after.last_used_ns;
	EXPECT_EQ(std::memcmp(&out_before, &out_after, sizeof(out_after)), 0)
		<< "g1's OUT half (now 61005) was written: last_used_ns "
		<< out_after.last_used_ns;
	EXPECT_EQ(std::memcmp(in_after.guest_mac, g2_mac, 6), 0);
}

TEST_F(CtMaps, FlushRecountsTheGuestFlowQuota)
{
	// kvx_gflows; no owner map: each address counts in its owner-less slot.
	int g = bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_gflows", 4, sizeof(kvx_gflows_val),
			       KVX_GFLOWS_MAX, nullptr);
	ASSERT_GE(g, 0);
	Fd gflows(g);
	populate(); // g1 (.11): 3 flows, g2 (.12): 3 flows
	const QuotaMaps q{gflows.get(), -1, 7};
	uint32_t i11 = kvx_guest_slot(nullptr, htonl(kG1), 7);
	uint32_t i12 = kvx_guest_slot(nullptr, htonl(kG2), 7);
	ASSERT_NE(i11, i12);
	kvx_gflows_val v{};
	v.out = 3;
	ASSERT_EQ(bpf_map_update_elem(gflows.get(), &i11, &v, BPF_ANY), 0);
	v.out = 2; // g2's third flow came in through its port forward
	v.in = 1;
	ASSERT_EQ(bpf_map_update_elem(gflows.get(), &i12, &v, BPF_ANY), 0);
	CtFilter f;
	f.guest = kG1;
	f.proto = IPPROTO_TCP;
	CtFlushResult r = ct_flush_fd(ct_.get(), bind_.get(), f, now_, q);
	EXPECT_EQ(r.flows, 1u);
	EXPECT_EQ(r.gflows_fixed, 1u);
	ASSERT_EQ(bpf_map_lookup_elem(gflows.get(), &i11, &v), 0);
	EXPECT_EQ(v.out, 2u);
	ASSERT_EQ(bpf_map_lookup_elem(gflows.get(), &i12, &v), 0);
	EXPECT_EQ(v.out, 2u);
	EXPECT_EQ(v.in, 1u);
	r = ct_flush_fd(ct_.get(), bind_.get(), {}, now_, q);
	EXPECT_EQ(r.flows, 5u);
	ASSERT_EQ(bpf_map_lookup_elem(gflows.get(), &i11, &v), 0);
	EXPECT_EQ(v.out, 0u);
	ASSERT_EQ(bpf_map_lookup_elem(gflows.get(), &i12, &v), 0);
	EXPECT_EQ(v.out, 0u);
	EXPECT_EQ(v.in, 0u);
}

TEST_F(CtMaps, NoMatchFlushesNothing)
{
	populate();
	CtFilter f;
	f.guest = 0xc0a87a63;
	EXPECT_EQ(ct_flush_fd(ct_.get(), bind_.get(), f, now_).flows, 0u);
	EXPECT_EQ(flows(), 6u);
}

TEST(ConntrackRead, BatchReadEqualsTheWalk)
{
	// More entries than one batch, in a table whose buckets are crowded
	// (max_entries = entries): both reads return the same set.
	const uint32_t n = 3 * kMapReadBatch + 123;
	KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
	Fd ct(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ct", sizeof(kvx_ct_key), sizeof(kvx_ct_val), n,
			     nullptr));
	ASSERT_GE(ct.get(), 0) << "bpf_map_create(t_ct): " << std::strerror(errno);
	EXPECT_TRUE((dump_hash<kvx_ct_key, kvx_ct_val>(ct.get()).empty()));
	for (uint32_t i = 0; i < n; i++) {
		kvx_ct_key k = key(IPPROTO_UDP, 0xc0a87a00 + (i & 0xff), uint16_t(1000 + (i >> 8)),
				   0x0a4e0002, 53);
		kvx_ct_val v = val(KVX_CT_UDP, 0, 0x0a4d0002, uint16_t(i), i, i);
		ASSERT_EQ(bpf_map_update_elem(ct.get(), &k, &v, BPF_NOEXIST), 0);
	}
	auto batch = dump_hash<kvx_ct_key, kvx_ct_val>(ct.get());
	auto walk = dump_hash_walk<kvx_ct_key, kvx_ct_val>(ct.get());
	ASSERT_EQ(batch.size(), n);
	ASSERT_EQ(walk.size(), n);
	auto sorted_ports = [](const auto &v) {
		std::vector<uint32_t> p;
		for (const auto &kv : v) {
			// the value belongs to its key
			EXPECT_EQ(ntohs(kv.second.ext_port),
				  uint16_t((ntohl(kv.first.int_addr) & 0xff) |
					   ((ntohs(kv.first.int_port) - 1000) << 8)));
			p.push_back(ntohs(kv.second.ext_port) | uint32_t(kv.second.created_ns)
									<< 16);
		}
		std::sort(p.begin(), p.end());
		return p;
	};
	EXPECT_EQ(sorted_ports(batch), sorted_ports(walk));
}

TEST_F(CtMaps, KernelMemlockOfAMap)
{
	// The kernel's own figure (fdinfo "memlock:"), close to our estimate
	// for a preallocated hash map.
	auto mem = map_memlock_bytes(ct_.get());
	ASSERT_TRUE(mem) << "no memlock line in /proc/self/fdinfo";
	MapInfo mi = map_info(ct_.get(), "t_ct");
	uint64_t est = map_memory_estimate(mi, unsigned(libbpf_num_possible_cpus()));
	EXPECT_GT(*mem, 64u * sizeof(kvx_ct_val));
	EXPECT_LT(*mem, est * 2);
	EXPECT_GT(*mem * 2, est);
	EXPECT_FALSE(map_memlock_bytes(-1));
}

TEST_F(CtMaps, StatusUsageWarnsNearFullAndOnTableFullDrops)
{
	// A pin dir with our two maps under the names the instance uses.
	KVX_SKIP_WITHOUT_MOUNT_PRIVILEGE();
	test::TempBpffs fs;
	ASSERT_TRUE(fs.mounted()) << fs.error();
	const std::string &bpffs = fs.path();
	ASSERT_EQ(bpf_obj_pin(ct_.get(), (bpffs + "/" KVX_MAP_CT).c_str()), 0);
	ASSERT_EQ(bpf_obj_pin(bind_.get(), (bpffs + "/" KVX_MAP_BIND).c_str()), 0);
	auto pins = open_bpffs(bpffs);
	ASSERT_TRUE(pins);
	populate(); // 6 of 64 flows, 10 of 64 binding entries

	json inst = {{"conntrack", {{"entries", 6}, {"max_entries", 64}}},
		     {"bindings", {{"entries", 10}, {"max_entries", 64}}},
		     {"counters", {{"DROP_TABLE_FULL", {{"packets", 0}, {"bytes", 0}}}}}};
	std::vector<std::string> w;
	const std::string state = fs.dir() + "/br0.table_full";
	status_add_usage(inst, &*pins, state, w);
	EXPECT_TRUE(w.empty()) << w[0];
	ASSERT_TRUE(inst["maps"].contains(KVX_MAP_CT));
	EXPECT_EQ(inst["maps"][KVX_MAP_CT]["entries"], 6);
	EXPECT_EQ(inst["maps"][KVX_MAP_CT]["max_entries"], 64);
	EXPECT_EQ(inst["maps"][KVX_MAP_CT]["memory_source"], "kernel");
	EXPECT_EQ(inst["maps"][KVX_MAP_BIND]["entries"], 10);
	EXPECT_FALSE(inst["maps"].contains(KVX_MAP_FRAG)); // not pinned here
	uint64_t ct_mem = inst["maps"][KVX_MAP_CT]["memory_bytes"];
	uint64_t bind_mem = inst["maps"][KVX_MAP_BIND]["memory_bytes"];
	EXPECT_GT(ct_mem, 0u);
	EXPECT_EQ(inst["conntrack"]["memory_bytes"], ct_mem);
	EXPECT_EQ(inst["bindings"]["memory_bytes"], bind_mem);
	EXPECT_EQ(inst["memory_bytes"], ct_mem + bind_mem);

	// 52 of 64 = 81 %: conntrack warns; bindings at 51/64 = 79 % do not.
	inst["conntrack"]["entries"] = 52;
	inst["bindings"]["entries"] = 51;
	inst["counters"]["DROP_TABLE_FULL"]["packets"] = 3;
	w.clear();
	status_add_usage(inst, &*pins, state, w);
	ASSERT_EQ(w.size(), 2u);
	EXPECT_NE(w[0].find("conntrack table 52/64 entries (81% full)"), std::string::npos) << w[0];
	EXPECT_NE(w[1].find("DROP_TABLE_FULL increased by 3 since the last status (3 in all)"),
		  std::string::npos)
		<< w[1];
	// Recorded: the same count again does not warn; more does, by the
	// difference; a smaller count (a new attach) counts from zero.
	w.clear();
	status_add_usage(inst, &*pins, state, w);
	EXPECT_EQ(w.size(), 1u);
	inst["counters"]["DROP_TABLE_FULL"]["packets"] = 10;
	w.clear();
	status_add_usage(inst, &*pins, state, w);
	ASSERT_EQ(w.size(), 2u);
	EXPECT_NE(w[1].find("increased by 7 since the last status (10 in all)"), std::string::npos)
		<< w[1];
	inst["counters"]["DROP_TABLE_FULL"]["packets"] = 2;
	inst["conntrack"]["entries"] = 1;
	w.clear();
	status_add_usage(inst, &*pins, state, w);
	ASSERT_EQ(w.size(), 1u);
	EXPECT_NE(w[0].find("increased by 2 (2 in all)"), std::string::npos) << w[0];
	// The bindings table warns the same way (52/64 = 81 %).
	inst["bindings"]["entries"] = 52;
	w.clear();
	status_add_usage(inst, &*pins, state, w);
	ASSERT_EQ(w.size(), 1u);
	EXPECT_NE(w[0].find("binding table 52/64"), std::string::npos) << w[0];
	EXPECT_NE(w[0].find("--bind-size"), std::string::npos) << w[0];
}

// Port overlapping: a flushed TCP flow of a tenant of a shared port (its
// claim in kvx_ovl names it, the IN half names the port's owner) keeps its
// claim for the grace from the flush (the tenant's next packet picks the
// flow up through it), and the shared port is marked flushed (the remote's
// segments wait; no new tenant joins), its owner's time refreshed.  The
// owner's own flows are bind_touch's, as before.
TEST_F(CtMaps, FlushOfATenantsFlowKeepsItsClaim)
{
	Fd ovl(bpf_map_create(BPF_MAP_TYPE_HASH, "t_ovl", sizeof(kvx_ovl_key), sizeof(kvx_ovl_val),
			      64, nullptr));
	ASSERT_GE(ovl.get(), 0) << std::strerror(errno);
	// g1:40000 owns 61000 (shared); g1:40001 is a tenant with a flow to R2.
	add_flow(IPPROTO_TCP, kG1, 40000, kR1, 80, 61000, KVX_CT_ESTABLISHED);
	add_pair(IPPROTO_TCP, kG1, 40000, 61000, KVX_BIND_F_SHARED);
	add_flow(IPPROTO_TCP, kG1, 40001, kR2, 80, 61000, KVX_CT_ESTABLISHED);
	kvx_ovl_key k{};
	k.proto = IPPROTO_TCP;
	k.ext_addr = htonl(kExt);
	k.ext_port = htons(61000);
	k.rem_addr = htonl(kR2);
	k.rem_port = htons(80);
	kvx_ovl_val v{};
	v.addr = htonl(kG1);
	v.port = htons(40001);
	v.owner_port = htons(40000);
	v.created_ns = now_ - 100 * kSec;
	ASSERT_EQ(bpf_map_update_elem(ovl.get(), &k, &v, BPF_NOEXIST), 0);
	CtFilter f;
	f.remote = kR2;
	ASSERT_EQ(ct_flush_fd(ct_.get(), bind_.get(), f, now_, {}, {}, ovl.get()).flows, 1u);
	kvx_ovl_val after{};
	ASSERT_EQ(bpf_map_lookup_elem(ovl.get(), &k, &after), 0);
	EXPECT_EQ(after.created_ns, now_) << "kept for the grace from the flush";
	const kvx_bind_val in = bind_half(KVX_BIND_IN, IPPROTO_TCP, kExt, 61000);
	EXPECT_EQ(in.flags, KVX_BIND_F_SHARED | KVX_BIND_F_FLUSHED);
	EXPECT_EQ(in.last_used_ns, now_);
	EXPECT_EQ(in.port, htons(40000)) << "still the owner's";
}
