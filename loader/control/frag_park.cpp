// SPDX-License-Identifier: GPL-2.0
#include "control/frag_park.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "kernel/maps.hpp"
#include "kernel/packet.hpp"
#include "kernel/ringbuf.hpp"

namespace kvmxdp {

namespace {

constexpr size_t kIpHdr = 20;
constexpr size_t kIp6Hdr = 40;
constexpr uint16_t kIpOffset = 0x1fff; // frag_off's offset bits
// IPv6 next headers the datapath walks before a Fragment header
// (bpf/lib/parse.h parse_ipv6), and the Fragment header itself.
constexpr uint8_t kHopOpts = 0, kRouting = 43, kFragment = 44, kDstOpts = 60;
constexpr int kExtMax = 8; // KVX_EXTHDR_MAX
// The datapath counts a frame's bytes, Ethernet header included.
constexpr size_t kEthHdr = 14;

uint16_t rd16(const std::vector<uint8_t> &b, size_t off)
{
	return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

// The IPv4-mapped form of an IPv4 address (network order): one cache key
// type for both families.
Ipv6Addr mapped(uint32_t addr_be)
{
	Ipv6Addr a{};
	a[10] = a[11] = 0xff;
	std::memcpy(&a[12], &addr_be, 4);
	return a;
}

// The datagram key of a whole IPv4 later fragment as the datapath parks
// it, nullopt if it is none.
std::optional<FragKey> key4_of(const std::vector<uint8_t> &ip, uint8_t dir)
{
	if (ip.size() < kIpHdr || (ip[0] & 0xf) < 5 || (ip[0] & 0xf) * 4u > ip.size() ||
	    rd16(ip, 2) != ip.size() || !(rd16(ip, 6) & kIpOffset))
		return std::nullopt;
	FragKey k;
	std::memcpy(&k.k4.saddr, &ip[12], 4);
	std::memcpy(&k.k4.daddr, &ip[16], 4);
	std::memcpy(&k.k4.id, &ip[4], 2);
	k.k4.proto = ip[9];
	k.k4.dir = dir;
	return k;
}

// The same for IPv6: the options and routing headers the datapath walks,
// then a Fragment header with an offset; its next header is the key's
// protocol (the datapath's p.proto), and must not be one the datapath
// would walk on into the fragment's data.
std::optional<FragKey> key6_of(const std::vector<uint8_t> &ip, uint8_t dir)
{
	if (ip.size() < kIp6Hdr + 8 || rd16(ip, 4) + kIp6Hdr != ip.size())
		return std::nullopt;
	uint8_t nh = ip[6];
	size_t off = kIp6Hdr;
	for (int i = 0; nh != kFragment; i++) {
		if (i == kExtMax || (nh != kHopOpts && nh != kRouting && nh != kDstOpts) ||
		    (nh == kHopOpts && i) || off + 8 > ip.size())
			return std::nullopt;
		nh = ip[off];
		off += (size_t{ip[off + 1]} + 1) * 8;
	}
	if (off + 8 > ip.size() || !(rd16(ip, off + 2) >> 3))
		return std::nullopt;
	const uint8_t proto = ip[off];
	if (proto == kHopOpts || proto == kRouting || proto == kFragment || proto == kDstOpts)
		return std::nullopt;
	FragKey k;
	k.v6 = true;
	std::memcpy(k.k6.saddr, &ip[8], 16);
	std::memcpy(k.k6.daddr, &ip[24], 16);
	std::memcpy(&k.k6.id, &ip[off + 4], 4);
	k.k6.proto = proto;
	k.k6.dir = dir;
	return k;
}

// What step() follows of a datagram's kvx_frag or kvx_frag6 entry.
struct Entry {
	bool host = false;	       // IN: its first fragment went to the host
	Ipv6Addr addr{};	       // the new address (IPv4: its first 4 bytes)
	MacAddr dst{};		       // the MAC to send to (zero: look it up)
	MacAddr from{};		       // IPv6 OUT: the MAC its first came from
	uint64_t created_ns = 0;
};

Entry entry_of(const kvx_frag_val &v, uint8_t dir)
{
	Entry e;
	e.host = dir == KVX_BIND_IN && v.addr == KVX_FRAG_HOST;
	std::memcpy(e.addr.data(), &v.addr, 4);
	std::memcpy(e.dst.data(), v.guest_mac, 6);
	e.created_ns = v.created_ns;
	return e;
}

Entry entry_of(const kvx_frag6_val &v, uint8_t dir)
{
	Entry e;
	std::memcpy(e.addr.data(), v.addr, 16);
	e.host = e.addr == Ipv6Addr{};
	std::memcpy(e.dst.data(), dir == KVX_BIND_OUT ? v.gw_mac : v.guest_mac, 6);
	if (dir == KVX_BIND_OUT)
		std::memcpy(e.from.data(), v.guest_mac, 6);
	e.created_ns = v.created_ns;
	return e;
}

// A datagram's entry as the datapath follows it: the guests' map first,
// else (inbound) the host's mark, read as an entry of the host's (address
// 0, the form entry_of reads); nullopt: none.
template <typename V, typename K>
std::optional<V> frag_entry(int guests_fd, int host_fd, const K &k)
{
	V v{};
	if (guests_fd < 0)
		return std::nullopt;
	if (bpf_map_lookup_elem(guests_fd, &k, &v) == 0)
		return v;
	kvx_fraghost_val h{};
	if (k.dir != KVX_BIND_IN || host_fd < 0 || bpf_map_lookup_elem(host_fd, &k, &h) != 0)
		return std::nullopt;
	v.created_ns = h.created_ns;
	return v;
}

MacAddr mac_of_share(uint64_t share)
{
	MacAddr m{};
	for (int i = 5; i >= 0; i--, share >>= 8)
		m[static_cast<size_t>(i)] = static_cast<uint8_t>(share);
	return m;
}

} // namespace

bool operator<(const FragKey &a, const FragKey &b)
{
	if (a.v6 != b.v6)
		return b.v6;
	return a.v6 ? std::memcmp(&a.k6, &b.k6, sizeof(a.k6)) < 0 :
		      std::memcmp(&a.k4, &b.k4, sizeof(a.k4)) < 0;
}

bool frag_translate(std::vector<uint8_t> &ip, uint8_t dir, uint32_t addr_be)
{
	if (ip.size() < kIpHdr || (ip[0] >> 4) != 4)
		return false;
	const size_t ihl = size_t{ip[0] & 0xfu} * 4;
	if (ihl < kIpHdr || ihl > ip.size() || ip[8] <= 1)
		return false;
	std::memcpy(&ip[dir == KVX_BIND_OUT ? 12 : 16], &addr_be, 4);
	ip[8]--;
	ip[10] = ip[11] = 0;
	uint32_t sum = 0;
	for (size_t i = 0; i < ihl; i += 2)
		sum += rd16(ip, i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	const uint16_t check = static_cast<uint16_t>(~sum);
	ip[10] = static_cast<uint8_t>(check >> 8);
	ip[11] = static_cast<uint8_t>(check);
	return true;
}

bool frag_translate6(std::vector<uint8_t> &ip, uint8_t dir, const Ipv6Addr &addr)
{
	if (ip.size() < kIp6Hdr || (ip[0] >> 4) != 6 || ip[7] <= 1)
		return false;
	std::memcpy(&ip[dir == KVX_BIND_OUT ? 8 : 24], addr.data(), addr.size());
	ip[7]--;
	return true;
}

std::optional<MacAddr> frag_dst_mac(const FragSend &s, int ifindex, const FragMacSources &macs,
				    FragMacCache &cache)
{
	if (s.dst_mac != MacAddr{})
		return s.dst_mac;
	const bool out = s.dir == KVX_BIND_OUT;
	const FragMacOf6 &of6 = out ? macs.next_hop6 : macs.neighbour6;
	const FragMacOf &of4 = out ? macs.next_hop : macs.neighbour;
	Ipv6Addr daddr{};
	uint32_t daddr4 = 0;
	if (s.v6()) {
		if (s.ip.size() < kIp6Hdr || !of6)
			return std::nullopt;
		std::memcpy(daddr.data(), &s.ip[24], 16);
	} else {
		if (s.ip.size() < kIpHdr || !of4)
			return std::nullopt;
		std::memcpy(&daddr4, &s.ip[16], 4);
		daddr = mapped(daddr4);
	}
	auto it = cache.find({s.dir, daddr});
	if (it == cache.end()) {
		if (cache.size() >= kFragLookupsPerStep)
			return std::nullopt;
		it = cache.emplace(std::make_pair(s.dir, daddr),
				   s.v6() ? of6(ifindex, daddr) : of4(ifindex, daddr4))
			     .first;
	}
	return it->second;
}

void FragPark::count(uint32_t reason, size_t ip_len)
{
	kvx_stat &s = counts_[reason];
	s.packets++;
	s.bytes += ip_len + kEthHdr;
}

void FragPark::forget(const Parked &p, uint32_t reason)
{
	if (reason)
		count(reason, p.ip.size());
	Part &part = parts_[p.key.dir() & 1];
	part.frags--;
	part.bytes -= p.ip.size();
	auto sh = part.shares.find(p.share);
	if (--sh->second == 0)
		part.shares.erase(sh);
}

void FragPark::drop(std::deque<Parked>::iterator it, uint32_t reason)
{
	forget(*it, reason);
	q_.erase(it);
}

void FragPark::take(const void *rec, size_t size, uint64_t now_ns)
{
	kvx_fragq_hdr h{};
	if (size < sizeof(h)) {
		count(KVX_R_FRAG_REINJECT_FAILED, 0);
		return;
	}
	std::memcpy(&h, rec, sizeof(h));
	const auto *data = static_cast<const uint8_t *>(rec) + sizeof(h);
	std::vector<uint8_t> ip;
	if (h.len <= size - sizeof(h))
		ip.assign(data, data + h.len);
	// Only what the datapath parks: a later fragment, whole.
	std::optional<FragKey> key;
	if (!ip.empty() && (h.dir == KVX_BIND_OUT || h.dir == KVX_BIND_IN))
		key = (ip[0] >> 4) == 4 ? key4_of(ip, h.dir) :
		      (ip[0] >> 4) == 6 ? key6_of(ip, h.dir) :
					  std::nullopt;
	if (!key) {
		count(KVX_R_FRAG_REINJECT_FAILED, ip.size());
		return;
	}
	Parked p;
	p.key = *key;
	if (h.dir == KVX_BIND_OUT) {
		for (uint8_t b : h.mac)
			p.share.second = p.share.second << 8 | b;
	} else if (key->v6) {
		p.share.first = 6;
		std::memcpy(&p.share.second, key->k6.saddr, 8); // its /64
	} else {
		p.share = {4, key->k4.saddr};
	}
	p.parked_ns = now_ns;
	p.next_check_ns = now_ns; // at once: its first fragment may be in already
	if (ip.size() > limits_.max_bytes || limits_.max_frags == 0 || limits_.per_share == 0) {
		count(KVX_R_FRAG_PARK_FULL, ip.size());
		return;
	}
	Part &part = parts_[h.dir & 1];
	auto same_dir = [&](const Parked &o) { return o.key.dir() == h.dir; };
	auto sh = part.shares.find(p.share);
	if (sh != part.shares.end() && sh->second >= limits_.per_share)
		drop(std::find_if(q_.begin(), q_.end(),
				  [&](const Parked &o) {
					  return same_dir(o) && o.share == p.share;
				  }),
		     KVX_R_FRAG_PARK_FULL);
	while (part.frags > 0 &&
	       (part.frags >= limits_.max_frags || part.bytes + ip.size() > limits_.max_bytes))
		drop(std::find_if(q_.begin(), q_.end(), same_dir), KVX_R_FRAG_PARK_FULL);
	p.ip = std::move(ip);
	part.frags++;
	part.bytes += p.ip.size();
	part.shares[p.share]++;
	q_.push_back(std::move(p));
}

std::vector<FragSend> FragPark::step(const Lookup &lookup, const Lookup6 &lookup6, uint64_t now_ns)
{
	std::vector<FragSend> out;
	// Expired: the oldest, at the front (one lifetime for all).
	while (!q_.empty() && q_.front().parked_ns + limits_.lifetime_ns <= now_ns)
		drop(q_.begin(), KVX_R_FRAG_PARK_EXPIRED);

	std::map<FragKey, std::optional<Entry>> seen;
	std::deque<Parked> keep;
	for (Parked &p : q_) {
		if (p.next_check_ns > now_ns) {
			keep.push_back(std::move(p));
			continue;
		}
		auto it = seen.find(p.key);
		if (it == seen.end()) {
			const uint8_t dir = p.key.dir();
			std::optional<Entry> v;
			if (!p.key.v6) {
				if (auto e = lookup(p.key.k4))
					v = entry_of(*e, dir);
			} else if (lookup6) {
				if (auto e = lookup6(p.key.k6))
					v = entry_of(*e, dir);
				// An OUT entry with no address is none the
				// datapath would follow either.
				if (v && dir == KVX_BIND_OUT && v->host)
					v.reset();
			}
			// As the datapath's frag_lookup: an entry past its
			// lifetime names an earlier datagram with the same id.
			if (v && v->created_ns + limits_.lifetime_ns < now_ns)
				v.reset();
			it = seen.emplace(p.key, v).first;
		}
		if (!it->second) {
			p.next_check_ns = now_ns + (now_ns - p.parked_ns < limits_.fast_for_ns ?
							    limits_.check_fast_ns :
							    limits_.check_slow_ns);
			keep.push_back(std::move(p));
			continue;
		}
		const Entry &v = *it->second;
		// The host had its first fragment, and this one (the
		// datapath hands it every inbound fragment it parks).
		if (v.host) {
			forget(p, KVX_R_FRAG_PARK_HOST);
			continue;
		}
		// parked_ns is when the daemon read the record, a moment
		// after the datapath parked it: well inside the window.
		if (v.created_ns + limits_.reorder_ns < p.parked_ns ||
		    v.created_ns > p.parked_ns + limits_.reorder_ns) {
			forget(p, KVX_R_FRAG_PARK_STALE);
			continue;
		}
		// IPv6 keeps the sending guest's MAC with its datagram, as
		// the datapath's frag6_find checks the later fragments.
		if (p.key.v6 && p.key.dir() == KVX_BIND_OUT &&
		    v.from != mac_of_share(p.share.second)) {
			forget(p, KVX_R_DROP_SPOOF_MAC);
			continue;
		}
		forget(p, 0);
		FragSend s;
		s.dir = p.key.dir();
		s.dst_mac = v.dst;
		s.ip = std::move(p.ip);
		uint32_t addr4;
		std::memcpy(&addr4, v.addr.data(), 4);
		if (!(p.key.v6 ? frag_translate6(s.ip, s.dir, v.addr) :
				 frag_translate(s.ip, s.dir, addr4))) {
			count(KVX_R_FRAG_REINJECT_FAILED, s.ip.size());
			continue;
		}
		out.push_back(std::move(s));
	}
	q_ = std::move(keep);
	return out;
}

int64_t FragPark::wait_ms(uint64_t now_ns) const
{
	if (q_.empty())
		return -1;
	uint64_t next = q_.front().parked_ns + limits_.lifetime_ns;
	for (const Parked &p : q_)
		next = std::min(next, p.next_check_ns);
	if (next <= now_ns)
		return 0;
	// Rounded up: a wait that ends just before the check is due would
	// spin.
	return static_cast<int64_t>((next - now_ns + 999999) / 1000000);
}

FragRelay::FragRelay(int fragq_fd, Maps maps, int stats_fd, int cfg_fd, FragParkLimits limits)
	: maps_(maps)
	, stats_fd_(stats_fd)
	, cfg_fd_(cfg_fd)
	, sock_(packet_socket(0, 0))
	, park_(limits)
{
	ring_ = std::make_unique<RingReader>(fragq_fd, KVX_MAP_FRAGQ,
					     [this](const void *data, size_t size) {
						     park_.take(data, size, boottime_ns());
					     });
}

FragRelay::~FragRelay() = default;

int FragRelay::fd() const
{
	return ring_->fd();
}

int64_t FragRelay::wait_ms() const
{
	const uint64_t now = boottime_ns();
	int64_t w = park_.wait_ms(now);
	if (ring_due_ns_) {
		const int64_t r =
			ring_due_ns_ <= now ?
				0 :
				static_cast<int64_t>((ring_due_ns_ - now + 999999) / 1000000);
		w = w < 0 ? r : std::min(w, r);
	}
	return w;
}

void FragRelay::service(bool readable, const FragMacSources &macs)
{
	const uint64_t now = boottime_ns();
	size_t got = 0;
	if (readable || (ring_due_ns_ && ring_due_ns_ <= now)) {
		got = ring_->consume();
		// Records that did not wake fd() (abi.h KVX_FRAGQ_WAKE_NS)
		// come within a moment of those that did: read again soon,
		// until a read finds none.
		ring_due_ns_ = got ? now + uint64_t{KVX_FRAGQ_POLL_MS} * 1000000ULL : 0;
	}
	if (park_.size() == 0 && got == 0 && !readable)
		return;
	auto sends = park_.step(
		[this](const kvx_frag_key &k) {
			return frag_entry<kvx_frag_val>(maps_.frag, maps_.fraghost, k);
		},
		[this](const kvx_frag6_key &k) {
			return frag_entry<kvx_frag6_val>(maps_.frag6, maps_.fraghost6, k);
		},
		boottime_ns());
	if (!sends.empty()) {
		const kvx_cfg cfg = read_cfg(cfg_fd_);
		FragMacCache cache;
		for (const FragSend &s : sends) {
			const int ifindex = static_cast<int>(
				s.dir == KVX_BIND_OUT ? cfg.uplink_ifindex : cfg.bridge_ifindex);
			const auto mac = frag_dst_mac(s, ifindex, macs, cache);
			int err = ENXIO; // no MAC to send to
			if (mac)
				err = packet_send(sock_.get(), ifindex,
						  s.v6() ? ETH_P_IPV6 : ETH_P_IP, *mac, s.ip.data(),
						  s.ip.size());
			park_.count(err ? KVX_R_FRAG_REINJECT_FAILED : KVX_R_FRAG_REINJECTED,
				    s.ip.size());
			if (err)
				log_verbose(std::string("parked fragment not sent on ifindex ") +
					    std::to_string(ifindex) + ": " + std::strerror(err));
		}
	}
	for (const auto &[reason, add] : park_.take_counts())
		add_stat(stats_fd_, reason, add);
}

} // namespace kvmxdp
