#include "fixture.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/pkt_cls.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <thread>

namespace kvmxdp::test {
namespace {

Topology g_topo;
std::string g_skip;
std::string g_setup_error;
std::unique_ptr<Datapath> g_dp;
std::string g_load_error;

bool has_ports(std::uint8_t proto)
{
	return proto == testpkt::kProtoTcp || proto == testpkt::kProtoUdp;
}

} // namespace

void make_owner_idle(Datapath &dp, std::uint32_t guest)
{
	kvx_guest_val g{};
	const Mac m = guest_mac(guest);
	std::memcpy(g.mac, m.data(), sizeof(g.mac));
	g.seen_ns = boot_ns() - KVX_GUEST_IDLE_NS - 1000000000ull;
	dp.guest_update(guest, g);
}

void own_address(Datapath &dp, std::uint32_t guest)
{
	kvx_guest_val g{};
	const Mac m = guest_mac(guest);
	std::memcpy(g.mac, m.data(), sizeof(g.mac));
	g.seen_ns = boot_ns();
	dp.guest_update(guest, g);
}

std::optional<Mac> owner_of(const Datapath &dp, std::uint32_t guest)
{
	auto g = dp.guest_lookup(guest);
	if (!g)
		return std::nullopt;
	Mac m;
	std::memcpy(m.data(), g->mac, m.size());
	return m;
}

std::optional<Mac> owner_of(const Datapath &dp, const testpkt::Ip6 &addr)
{
	auto v = dp.nd_lookup(addr);
	if (!v)
		return std::nullopt;
	Mac m;
	std::memcpy(m.data(), v->mac, m.size());
	return m;
}

const Topology &topo()
{
	return g_topo;
}

int ingress_ifindex(Prog prog)
{
	switch (prog) {
	case Prog::BrIngress:
		return g_topo.bridge_ifindex;
	case Prog::XdpPort:
	case Prog::PortIngress:
		return g_topo.bridge_port_ifindex;
	case Prog::UpIngress:
	case Prog::XdpUp:
		break;
	}
	return g_topo.uplink_ifindex;
}

const std::string &skip_reason()
{
	return g_skip;
}

void init_environment()
{
	g_skip = enter_private_netns(g_topo, g_setup_error);
}

Mac guest_mac(std::uint32_t guest)
{
	switch (guest) {
	case kGuestA:
		return kGuestAMac;
	case kGuestB:
		return kGuestBMac;
	case kGuestC:
		return kGuestCMac;
	default:
		return Mac{0x52, 0x54, 0x00, 0x00, 0x01, static_cast<std::uint8_t>(guest & 0xff)};
	}
}

Packet from_guest(Packet p)
{
	p.src_mac = guest_mac(p.src);
	p.dst_mac = Topology::kBridgeMac;
	return p;
}

Packet make_arp(std::uint16_t op, const Mac &sha, std::uint32_t spa, const Mac &tha,
		std::uint32_t tpa)
{
	Packet p = testpkt::make_ethertype(testpkt::kEthArp, 0);
	p.src_mac = sha;
	p.dst_mac = op == 1 ? Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} : tha;
	p.payload = {0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, static_cast<std::uint8_t>(op)};
	const auto push_addr = [&p](std::uint32_t a) {
		for (int s : {24, 16, 8, 0})
			p.payload.push_back(static_cast<std::uint8_t>(a >> s));
	};
	p.payload.insert(p.payload.end(), sha.begin(), sha.end());
	push_addr(spa);
	p.payload.insert(p.payload.end(), tha.begin(), tha.end());
	push_addr(tpa);
	p.pad_to = 60;
	return p;
}

Packet from_uplink(Packet p)
{
	p.src_mac = Topology::kGatewayMac;
	p.dst_mac = Topology::kUplinkMac;
	return p;
}

std::uint16_t src_port_of(const Packet &p)
{
	if (p.proto == testpkt::kProtoIcmp)
		return p.icmp_id;
	return has_ports(p.proto) ? p.sport : 0;
}

std::uint16_t dst_port_of(const Packet &p)
{
	if (p.proto == testpkt::kProtoIcmp)
		return p.icmp_id;
	return has_ports(p.proto) ? p.dport : 0;
}

Packet snat(Packet p, std::uint16_t ext_port, std::uint32_t ext_addr)
{
	p.src = ext_addr;
	if (p.proto == testpkt::kProtoIcmp)
		p.icmp_id = ext_port;
	else if (has_ports(p.proto))
		p.sport = ext_port;
	p.ttl = static_cast<std::uint8_t>(p.ttl - 1);
	p.src_mac = Topology::kUplinkMac;
	p.dst_mac = Topology::kGatewayMac;
	return p;
}

Packet dnat(Packet p, std::uint32_t guest, std::uint16_t guest_port)
{
	p.dst = guest;
	if (p.proto == testpkt::kProtoIcmp)
		p.icmp_id = guest_port;
	else if (has_ports(p.proto))
		p.dport = guest_port;
	p.ttl = static_cast<std::uint8_t>(p.ttl - 1);
	p.src_mac = Topology::kBridgeMac;
	p.dst_mac = guest_mac(guest);
	return p;
}

Packet dnat_unknown_mac(const Packet &in, std::uint32_t guest, std::uint16_t port)
{
	Packet p = dnat(in, guest, port);
	p.src_mac = in.src_mac;
	p.dst_mac = in.dst_mac;
	return p;
}

// fib.h's per-CPU route cache answers with the MTU it saw for the rest of
// the jiffy it was filled in: a change is the kernel's only after that.
// 25 ms outlasts a jiffy at any HZ (>= 100).
static void wait_route_cache_jiffy()
{
	usleep(25000);
}

std::uint64_t boot_ns_ago(std::uint64_t ago_ns)
{
	constexpr std::uint64_t kMargin = 1000000000ULL;
	for (std::uint64_t now = boot_ns(); now < ago_ns + kMargin; now = boot_ns())
		std::this_thread::sleep_for(std::chrono::nanoseconds(ago_ns + kMargin - now));
	return boot_ns() - ago_ns;
}

int kernel_version()
{
	utsname u{};
	int major = 0, minor = 0;
	if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2)
		throw std::runtime_error("cannot read the kernel version");
	return major * 100 + minor;
}

DeviceMtu::DeviceMtu(const char *dev, int mtu)
	: dev_(dev)
{
	must_run({"ip", "link", "set", dev_, "mtu", std::to_string(mtu)});
	wait_route_cache_jiffy();
}

DeviceMtu::~DeviceMtu()
{
	try {
		must_run({"ip", "link", "set", dev_, "mtu", "1500"});
		wait_route_cache_jiffy();
	} catch (const std::exception &e) {
		ADD_FAILURE() << "restoring the MTU of " << dev_ << ": " << e.what();
	}
}

Packet reply_to(const Packet &out)
{
	Packet r = out;
	std::swap(r.src, r.dst);
	std::swap(r.sport, r.dport);
	r.ttl = 57;
	r.ip_id = 0x7a11;
	if (r.proto == testpkt::kProtoTcp) {
		r.tcp_flags = (out.tcp_flags & testpkt::kTcpSyn) ?
				      (testpkt::kTcpSyn | testpkt::kTcpAck) :
				      testpkt::kTcpAck;
		r.ack_seq = out.seq + 1;
		r.seq = 0x55667788;
	}
	if (r.proto == testpkt::kProtoIcmp)
		r.icmp_type = testpkt::kIcmpEchoReply;
	r.payload = testpkt::pattern(out.payload.size(), 0x99);
	return from_uplink(r);
}

std::string stats_delta(const Stats &before, const Stats &after)
{
	std::ostringstream o;
	for (std::size_t r = 0; r < after.by_reason.size(); r++) {
		const auto dp = after.by_reason[r].packets - before.by_reason[r].packets;
		const auto db = after.by_reason[r].bytes - before.by_reason[r].bytes;
		if (dp || db)
			o << (o.tellp() > 0 ? " " : "") << reason_name(static_cast<int>(r)) << " +"
			  << dp << "/+" << db << "B";
	}
	return o.str();
}

namespace {

std::uint16_t get16(const Bytes &b, std::size_t off)
{
	return static_cast<std::uint16_t>(b.at(off) << 8 | b.at(off + 1));
}

void put16(Bytes &b, std::size_t off, std::uint16_t v)
{
	b.at(off) = static_cast<std::uint8_t>(v >> 8);
	b.at(off + 1) = static_cast<std::uint8_t>(v);
}

bool is_answered_drop(Prog prog, kvx_reason reason)
{
	if (prog == Prog::BrIngress)
		return reason == KVX_R_DROP_PORTS_EXHAUSTED || reason == KVX_R_DROP_TABLE_FULL ||
		       reason == KVX_R_DROP_GUEST_QUOTA || reason == KVX_R_DROP_HOST_TUNNEL ||
		       reason == KVX_R_DROP_NO_UPLINK_ADDR;
	if (prog == Prog::UpIngress)
		return reason == KVX_R_DROP_TTL_IN || reason == KVX_R_DROP_TOO_BIG_IN;
	return false;
}

} // namespace

Bytes icmp_answer(const Bytes &in, std::uint8_t type, std::uint8_t code, std::uint32_t src,
		  std::uint16_t mtu)
{
	const std::size_t l3 = 14, hl = (in.at(l3) & 0xf) * 4u;
	const std::size_t tot = get16(in, l3 + 2);
	const std::uint8_t proto = in.at(l3 + 9);
	const bool tcp = proto == testpkt::kProtoTcp && tot >= hl + 20;
	const std::size_t quote = hl + (tcp ? 20 : 8);
	Bytes q(in.begin() + l3, in.begin() + static_cast<long>(l3 + quote));
	if (tcp || proto == testpkt::kProtoUdp) {
		// P with P + S == ~P (mod 0xffff), S the quoted L4 bytes'
		// sum without the field: 2P == -S, P = -S * 2^-1 mod 0xffff.
		const std::size_t f = hl + (tcp ? 16 : 6);
		put16(q, f, 0);
		const std::uint32_t s =
			0xffffu ^
			testpkt::csum_fold(testpkt::csum_partial(q.data() + hl, quote - hl));
		const std::uint32_t n = (0xffffu - s) % 0xffffu;
		put16(q, f, static_cast<std::uint16_t>(n % 2 ? (n + 0xffffu) / 2 : n / 2));
	}
	Bytes out(in.begin() + 6, in.begin() + 12); // dst: the sender
	out.insert(out.end(), in.begin(), in.begin() + 6);
	const Bytes ip = {0x08, 0x00, 0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0};
	out.insert(out.end(), ip.begin(), ip.end());
	put16(out, 16, static_cast<std::uint16_t>(20 + 8 + quote));
	for (int i = 3; i >= 0; i--)
		out.push_back(static_cast<std::uint8_t>(src >> (8 * i)));
	out.insert(out.end(), in.begin() + static_cast<long>(l3 + 12),
		   in.begin() + static_cast<long>(l3 + 16)); // in's source
	put16(out, 24, testpkt::inet_checksum(out.data() + 14, 20));
	const Bytes icmp = {type,
			    code,
			    0,
			    0,
			    0,
			    0,
			    static_cast<std::uint8_t>(mtu >> 8),
			    static_cast<std::uint8_t>(mtu)};
	out.insert(out.end(), icmp.begin(), icmp.end());
	out.insert(out.end(), q.begin(), q.end());
	put16(out, 36, testpkt::inet_checksum(out.data() + 34, out.size() - 34));
	return out;
}

int device_mtu(const char *dev)
{
	ifreq ifr{};
	std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	const int rc = fd < 0 ? -1 : ::ioctl(fd, SIOCGIFMTU, &ifr);
	if (fd >= 0)
		::close(fd);
	if (rc != 0)
		throw std::runtime_error(std::string("SIOCGIFMTU ") + dev);
	return ifr.ifr_mtu;
}

std::optional<Bytes> expected_answer(const Datapath &dp, Prog prog, const Bytes &in,
				     kvx_reason reason)
{
	if (!is_answered_drop(prog, reason))
		return std::nullopt;
	const testpkt::Parsed p = testpkt::parse(in);
	if (!p.ipv4 || (in.at(0) & 1) || p.later_fragment || p.tot_len < p.ihl_bytes + 8 ||
	    (p.src >> 24) == 0 || (p.src >> 24) == 127 || (p.src >> 28) >= 0xe ||
	    (p.dst >> 28) >= 0xe)
		return std::nullopt;
	if (p.proto == testpkt::kProtoIcmp) {
		const std::uint8_t t = in.at(p.l4_off);
		if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12 || t > 18)
			return std::nullopt;
	}
	const kvx_cfg c = dp.cfg();
	if (prog == Prog::BrIngress && !c.gw_addr)
		return std::nullopt;
	switch (reason) {
	case KVX_R_DROP_NO_UPLINK_ADDR:
		return icmp_answer(in, testpkt::kIcmpDestUnreach, 0, ntohl(c.gw_addr));
	case KVX_R_DROP_TTL_IN:
		return icmp_answer(in, testpkt::kIcmpTimeExceeded, 0, ntohl(c.uplink_addr));
	case KVX_R_DROP_TOO_BIG_IN:
		if (!(get16(in, 14 + 6) & 0x4000))
			return std::nullopt;
		return icmp_answer(in, testpkt::kIcmpDestUnreach, 4, ntohl(c.uplink_addr),
				   static_cast<std::uint16_t>(device_mtu(Topology::kBridge)));
	default:
		return icmp_answer(in, testpkt::kIcmpDestUnreach, 13, ntohl(c.gw_addr));
	}
}

void expect_park_refused(Datapath &dp, Prog prog, const Bytes &frame, int verdict,
			 kvx_reason reason)
{
	const Stats before = dp.stats();
	const RunResult r = dp.run(prog, frame, ingress_ifindex(prog));
	EXPECT_EQ(r.verdict, verdict);
	const Stats after = dp.stats();
	for (kvx_reason x : {reason, KVX_R_FRAG_PARK_RATELIMITED})
		EXPECT_EQ(after.by_reason[x].packets - before.by_reason[x].packets, 1u)
			<< "reason " << x;
	EXPECT_TRUE(dp.fragq_drain().empty()) << "not parked";
}

RunResult run_case_bytes(Datapath &dp, Prog prog, const Bytes &in, int verdict, kvx_reason reason,
			 const std::optional<Bytes> &want)
{
	const std::optional<Bytes> answer =
		verdict == TC_ACT_SHOT ? expected_answer(dp, prog, in, reason) : std::nullopt;
	const Stats before = dp.stats();
	RunResult r = dp.run(prog, in, ingress_ifindex(prog));
	const Stats after = dp.stats();

	if (answer) {
		const bool sent = after.by_reason[KVX_R_ICMP_SENT].packets !=
				  before.by_reason[KVX_R_ICMP_SENT].packets;
		std::ostringstream want_delta;
		want_delta << reason_name(reason) << " +1/+" << in.size() << "B "
			   << (sent ? "ICMP_SENT +1/+" + std::to_string(answer->size()) + "B" :
				      std::string("ICMP_RATELIMITED +1/+0B"));
		EXPECT_EQ(stats_delta(before, after), want_delta.str())
			<< "the drop's reason, and the answer sent or rate-limited";
		EXPECT_EQ(verdict_name(r.verdict),
			  std::string(verdict_name(sent ? TC_ACT_REDIRECT : TC_ACT_SHOT)));
		if (sent) {
			EXPECT_EQ(testpkt::diff(r.out, *answer), "") << "the ICMP answer";
			EXPECT_EQ(testpkt::check_checksums(r.out), "");
		} else {
			EXPECT_EQ(testpkt::diff(r.out, in), "") << "frame must come out unchanged";
		}
		return r;
	}

	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(verdict)))
		<< "retval " << r.verdict;
	std::ostringstream want_delta;
	want_delta << reason_name(reason) << " +1/+" << in.size() << "B";
	EXPECT_EQ(stats_delta(before, after), want_delta.str())
		<< "exactly one counter must move, by one packet of skb->len bytes";

	if (want) {
		EXPECT_EQ(testpkt::diff(r.out, *want), "");
		EXPECT_EQ(testpkt::check_checksums(r.out), "");
	} else {
		EXPECT_EQ(testpkt::diff(r.out, in), "") << "frame must come out unchanged";
	}
	return r;
}

void expect_short_frames_on_device(Datapath &dp, Prog prog, const Bytes &full, kvx_reason reason)
{
	TcIngress attached(ingress_ifindex(prog), dp.prog_fd(prog));
	const int peer = prog == Prog::BrIngress ? topo().bridge_port_peer_ifindex :
						   topo().uplink_peer_ifindex;
	for (std::size_t len = 14; len < kMinTestRunFrame && len < full.size(); len++) {
		SCOPED_TRACE("real device, frame truncated to " + std::to_string(len) + " bytes");
		const Stats before = dp.stats();
		send_frame(peer, Bytes(full.begin(), full.begin() + static_cast<long>(len)));
		// veth delivers in softirq context, normally before sendto()
		// returns; allow a little time anyway.
		std::string d;
		for (int i = 0; i < 100 && (d = stats_delta(before, dp.stats())).empty(); i++)
			usleep(10000);
		EXPECT_EQ(d,
			  std::string(reason_name(reason)) + " +1/+" + std::to_string(len) + "B");
		if (::testing::Test::HasFailure())
			return;
	}
}

void expect_invariants(Datapath &dp, Prog prog, const Bytes &in)
{
	const Stats before = dp.stats();
	const RunResult r = dp.run(prog, in, ingress_ifindex(prog));
	const Stats after = dp.stats();
	int moved = -1, count = 0;
	// An answered drop also counts the answer (or its rate limit).
	const bool answered = after.by_reason[KVX_R_ICMP_SENT].packets !=
			      before.by_reason[KVX_R_ICMP_SENT].packets;
	for (std::size_t i = 0; i < after.by_reason.size(); i++) {
		if (after.by_reason[i].packets == before.by_reason[i].packets &&
		    after.by_reason[i].bytes == before.by_reason[i].bytes)
			continue;
		if (i == KVX_R_ICMP_SENT || i == KVX_R_ICMP_RATELIMITED)
			continue;
		count++;
		moved = static_cast<int>(i);
		EXPECT_EQ(after.by_reason[i].packets - before.by_reason[i].packets, 1u);
		EXPECT_EQ(after.by_reason[i].bytes - before.by_reason[i].bytes, in.size());
	}
	ASSERT_EQ(count, 1) << "counters moved: " << stats_delta(before, after);
	if (answered) {
		EXPECT_TRUE(is_answered_drop(prog, static_cast<kvx_reason>(moved)))
			<< "reason " << reason_name(moved);
		EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
		EXPECT_EQ(testpkt::check_checksums(r.out), "") << "reason " << reason_name(moved);
		const testpkt::Parsed pi = testpkt::parse(in), po = testpkt::parse(r.out);
		ASSERT_TRUE(po.ipv4);
		EXPECT_EQ(po.proto, testpkt::kProtoIcmp);
		EXPECT_EQ(po.dst, pi.src);
		return;
	}
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(reason_verdict(moved))))
		<< "reason " << reason_name(moved);
	if (r.verdict != TC_ACT_REDIRECT) {
		EXPECT_EQ(testpkt::diff(r.out, in), "") << "reason " << reason_name(moved);
		return;
	}
	ASSERT_EQ(r.out.size(), in.size());
	if (testpkt::check_checksums(in).empty()) {
		EXPECT_EQ(testpkt::check_checksums(r.out), "") << "reason " << reason_name(moved);
	}
	const testpkt::Parsed pi = testpkt::parse(in), po = testpkt::parse(r.out);
	ASSERT_TRUE(pi.ipv4 && po.ipv4);
	EXPECT_EQ(po.ttl, pi.ttl - 1);
	EXPECT_EQ(po.proto, pi.proto);
	if (moved == KVX_R_XLATE_OUT) {
		EXPECT_EQ(be32(po.src), dp.cfg().uplink_addr);
		EXPECT_EQ(po.dst, pi.dst);
	} else if (moved == KVX_R_XLATE_IN) {
		EXPECT_EQ(po.src, pi.src);
		EXPECT_EQ(be32(po.dst) & dp.cfg().subnet_mask, dp.cfg().subnet_addr);
	}
}

std::uint32_t Mutator::next(std::uint32_t bound)
{
	state_ ^= state_ << 13;
	state_ ^= state_ >> 17;
	state_ ^= state_ << 5;
	return bound ? state_ % bound : 0;
}

Bytes Mutator::mutate(const Bytes &valid)
{
	Bytes b = valid;
	const std::size_t l3 = 14;
	const int n = 1 + static_cast<int>(next(3));
	for (int i = 0; i < n; i++) {
		switch (next(6)) {
		case 0:
		case 1: { // flip bits in the IPv4 header or the first L4 bytes
			const std::size_t span = std::min<std::size_t>(b.size() - l3, 20 + 40 + 24);
			b[l3 + next(static_cast<std::uint32_t>(span))] ^=
				static_cast<std::uint8_t>(1 + next(255));
			break;
		}
		case 2: // truncate
			if (b.size() > kMinTestRunFrame)
				b.resize(kMinTestRunFrame + next(static_cast<std::uint32_t>(
								    b.size() - kMinTestRunFrame)));
			break;
		case 3: // tot_len
			b[l3 + 2] = static_cast<std::uint8_t>(next(256) & (next(2) ? 0xff : 0x00));
			b[l3 + 3] = static_cast<std::uint8_t>(next(256));
			break;
		case 4: // version/ihl
			b[l3] = static_cast<std::uint8_t>(0x40 | next(16));
			break;
		default: // Ethernet padding
			b.resize(b.size() + next(32), 0);
			break;
		}
	}
	return b;
}

RunResult run_case(Datapath &dp, Prog prog, const Packet &in, int verdict, kvx_reason reason,
		   const std::optional<Packet> &want)
{
	std::optional<Bytes> want_bytes;
	if (want)
		want_bytes = want->build();
	return run_case_bytes(dp, prog, in.build(), verdict, reason, want_bytes);
}

void expect_flow_state(const Datapath &dp, const Packet &g, std::uint16_t ext_port,
		       std::uint32_t ext_addr)
{
	SCOPED_TRACE("flow state of " + testpkt::ip4_str(g.src) + ":" +
		     std::to_string(src_port_of(g)) + " -> " + testpkt::ip4_str(g.dst));
	const std::uint16_t gport = src_port_of(g);
	const std::uint64_t now = boot_ns();

	auto out = dp.bind_lookup(bind_key(KVX_BIND_OUT, g.proto, g.src, gport));
	ASSERT_TRUE(out.has_value()) << "no OUT half of the binding";
	EXPECT_EQ(out->addr, be32(ext_addr)) << "OUT half: external address";
	EXPECT_EQ(out->port, be16(ext_port)) << "OUT half: external port";
	EXPECT_NE(out->last_used_ns, 0u);
	EXPECT_LE(out->last_used_ns, now);

	auto in = dp.bind_lookup(bind_key(KVX_BIND_IN, g.proto, ext_addr, ext_port));
	ASSERT_TRUE(in.has_value()) << "no IN half of the binding";
	EXPECT_EQ(in->addr, be32(g.src)) << "IN half: guest address";
	EXPECT_EQ(in->port, be16(gport)) << "IN half: guest port";
	EXPECT_EQ(testpkt::mac_str(Mac{in->guest_mac[0], in->guest_mac[1], in->guest_mac[2],
				       in->guest_mac[3], in->guest_mac[4], in->guest_mac[5]}),
		  testpkt::mac_str(g.src_mac))
		<< "IN half: guest MAC";
	EXPECT_EQ(testpkt::mac_str(Mac{in->gw_mac[0], in->gw_mac[1], in->gw_mac[2], in->gw_mac[3],
				       in->gw_mac[4], in->gw_mac[5]}),
		  testpkt::mac_str(g.dst_mac))
		<< "IN half: gateway MAC (the guest frame's destination)";

	// The flow entry, keyed from the guest's side in internal addresses;
	// for ICMP echo the remote "port" is 0 (the echo id is the guest's).
	const std::uint16_t rport = g.proto == testpkt::kProtoIcmp ? 0 : dst_port_of(g);
	auto ct = dp.ct_lookup(ct_key(g.proto, g.src, gport, g.dst, rport));
	if (!ct) {
		std::ostringstream o;
		for (const auto &[k, v] : dp.ct_entries())
			o << "\n  proto " << int(k.proto) << " "
			  << testpkt::ip4_str(ntohl(k.int_addr)) << ":" << ntohs(k.int_port)
			  << " -> " << testpkt::ip4_str(ntohl(k.rem_addr)) << ":"
			  << ntohs(k.rem_port);
		ADD_FAILURE() << "no kvx_ct entry for proto " << int(g.proto) << " rem_port "
			      << rport << "; entries present:" << o.str();
		return;
	}
	EXPECT_EQ(ct->ext_addr, be32(ext_addr)) << "flow: external address";
	EXPECT_EQ(ct->ext_port, be16(ext_port)) << "flow: external port";
	const int want_state = g.proto == testpkt::kProtoTcp ? KVX_CT_SYN_SENT : KVX_CT_UDP;
	if (g.proto != testpkt::kProtoTcp || (g.tcp_flags & testpkt::kTcpSyn)) {
		EXPECT_EQ(int(ct->state), want_state) << "flow: state";
	}
	EXPECT_NE(ct->created_ns, 0u);
	EXPECT_GE(ct->last_seen_ns, ct->created_ns);
	EXPECT_LE(ct->last_seen_ns, now);
	EXPECT_GE(ct->pkts_out, 1u);
}

void add_port_forward(Datapath &dp, std::uint8_t proto, std::uint32_t ext_addr,
		      std::uint16_t ext_port, std::uint32_t guest, std::uint16_t guest_port)
{
	kvx_bind_val in{}, out{};
	in.addr = be32(guest);
	in.port = be16(guest_port);
	in.flags = KVX_BIND_F_STATIC;
	out.addr = be32(ext_addr);
	out.port = be16(ext_port);
	out.flags = KVX_BIND_F_STATIC;
	// IN first: "OUT exists => IN exists".
	dp.bind_update(bind_key(KVX_BIND_IN, proto, ext_addr, ext_port), in);
	dp.bind_update(bind_key(KVX_BIND_OUT, proto, guest, guest_port), out);
}

void add_one_to_one(Datapath &dp, std::uint32_t ext_addr, std::uint32_t guest,
		    std::uint32_t extaddr_flags)
{
	kvx_bind_val in{}, out{};
	in.addr = be32(guest);
	in.flags = KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE;
	out.addr = be32(ext_addr);
	out.flags = KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE;
	dp.extaddr_update(ext_addr, extaddr_flags);
	dp.bind_update(bind_key(KVX_BIND_IN, KVX_PROTO_ANY, ext_addr, 0), in);
	dp.bind_update(bind_key(KVX_BIND_OUT, KVX_PROTO_ANY, guest, 0), out);
}

void DatapathTest::SetUp()
{
	if (!skip_reason().empty())
		GTEST_SKIP() << skip_reason();
	ASSERT_EQ(g_setup_error, "");
	if (!g_dp && g_load_error.empty()) {
		try {
			g_dp = std::make_unique<Datapath>();
		} catch (const std::exception &e) {
			g_load_error = e.what();
		}
	}
	ASSERT_TRUE(g_dp) << "loading kvmxdp_tc failed: " << g_load_error;
	g_dp->clear_tables();
	g_dp->set_cfg(Datapath::default_cfg(topo()));
	// The host's own addresses as attach writes them (kvx_hostaddr):
	// every hairpin comes from one of them.
	g_dp->hostaddr_update(Topology::kUplinkAddr);
	g_dp->hostaddr_update(Topology::kBridgeAddr);
	place_guests(*g_dp);
}

void place_guests(Datapath &d)
{
	// The guests' own bridge ports, as the daemon's kvx_brport places
	// them: each guest has its quota (ct.h mac_slot).  Numbers no device
	// has: the slot is all that reads them.
	d.brport_set(kGuestAMac, kGuestPortA);
	d.brport_set(kGuestBMac, kGuestPortA + 1);
	d.brport_set(kGuestCMac, kGuestPortA + 2);
}

Datapath &DatapathTest::dp()
{
	return *g_dp;
}

void DatapathTest::set_cfg(const std::function<void(kvx_cfg &)> &edit)
{
	kvx_cfg c = dp().cfg();
	edit(c);
	dp().set_cfg(c);
}

std::uint16_t BrIngressTest::translate_out(const Packet &p, std::uint16_t ext_port,
					   std::uint32_t ext_addr)
{
	const Bytes in = p.build();
	const Stats before = dp().stats();
	RunResult r = dp().run(Prog::BrIngress, in, topo().bridge_ifindex);
	const Stats after = dp().stats();
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)));
	EXPECT_EQ(stats_delta(before, after),
		  std::string("XLATE_OUT +1/+") + std::to_string(in.size()) + "B");
	testpkt::Parsed out = testpkt::parse(r.out);
	std::uint16_t got = p.proto == testpkt::kProtoIcmp ? out.icmp_id : out.sport;
	if (p.proto != testpkt::kProtoIcmp && !has_ports(p.proto))
		got = 0;
	if (ext_port) {
		EXPECT_EQ(got, ext_port) << "external port";
	} else if (has_ports(p.proto) || p.proto == testpkt::kProtoIcmp) {
		EXPECT_TRUE(got >= dp().cfg().nat_port_lo && got <= dp().cfg().nat_port_hi)
			<< "external port " << got << " outside the NAT range";
	}
	EXPECT_EQ(testpkt::diff(r.out, snat(p, got, ext_addr).build()), "");
	EXPECT_EQ(testpkt::check_checksums(r.out), "");
	return got;
}

Packet UpIngressTest::establish(const Packet &p)
{
	const Bytes in = p.build();
	RunResult r = dp().run(Prog::BrIngress, in, topo().bridge_ifindex);
	EXPECT_EQ(verdict_name(r.verdict), std::string(verdict_name(TC_ACT_REDIRECT)))
		<< "establishing the flow";
	testpkt::Parsed out = testpkt::parse(r.out);
	std::uint16_t ext = p.proto == testpkt::kProtoIcmp ? out.icmp_id : out.sport;
	if (!has_ports(p.proto) && p.proto != testpkt::kProtoIcmp)
		ext = 0;
	Packet sent = snat(p, ext);
	EXPECT_EQ(testpkt::diff(r.out, sent.build()), "") << "establishing the flow";
	return sent;
}

namespace {

void copy_addr6(__be32 *to, const testpkt::Ip6 &a)
{
	std::memcpy(to, a.data(), 16);
}

} // namespace

void add_static6(Datapath &dp, std::uint8_t proto, const testpkt::Ip6 &ext, std::uint16_t ext_port,
		 const testpkt::Ip6 &guest, std::uint16_t guest_port)
{
	const std::uint16_t flags = proto ? KVX_BIND_F_STATIC :
					    KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE;
	kvx_bind6_key ik{}, ok{};
	kvx_bind6_val iv{}, ov{};
	ik.dir = KVX_BIND_IN;
	ik.proto = proto;
	copy_addr6(ik.addr, ext);
	ik.port = htons(ext_port);
	copy_addr6(iv.addr, guest);
	iv.bind.port = htons(guest_port);
	iv.bind.flags = flags;
	ok.dir = KVX_BIND_OUT;
	ok.proto = proto;
	copy_addr6(ok.addr, guest);
	ok.port = htons(guest_port);
	copy_addr6(ov.addr, ext);
	ov.bind.port = htons(ext_port);
	ov.bind.flags = flags;
	dp.bind6_update(ik, iv);
	dp.bind6_update(ok, ov);
}

void del_static6(Datapath &dp, std::uint8_t proto, const testpkt::Ip6 &ext, std::uint16_t ext_port,
		 const testpkt::Ip6 &guest, std::uint16_t guest_port)
{
	kvx_bind6_key ik{}, ok{};
	ok.dir = KVX_BIND_OUT;
	ok.proto = proto;
	copy_addr6(ok.addr, guest);
	ok.port = htons(guest_port);
	ik.dir = KVX_BIND_IN;
	ik.proto = proto;
	copy_addr6(ik.addr, ext);
	ik.port = htons(ext_port);
	dp.bind6_delete(ok);
	dp.bind6_delete(ik);
}

} // namespace kvmxdp::test
