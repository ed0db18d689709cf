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
constexpr uint16_t kIpOffset = 0x1fff; // frag_off's offset bits
// The datapath counts a frame's bytes, Ethernet header included.
constexpr size_t kEthHdr = 14;

uint16_t rd16(const std::vector<uint8_t> &b, size_t off)
{
	return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

bool key_less(const kvx_frag_key &a, const kvx_frag_key &b)
{
	return std::memcmp(&a, &b, sizeof(a)) < 0;
}

} // namespace

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

std::optional<std::array<uint8_t, 6>> frag_dst_mac(const FragSend &s, int ifindex,
						   const FragMacOf &next_hop,
						   const FragMacOf &neighbour, FragMacCache &cache)
{
	if (s.dst_mac != std::array<uint8_t, 6>{})
		return s.dst_mac;
	const FragMacOf &of = s.dir == KVX_BIND_OUT ? next_hop : neighbour;
	if (!of || s.ip.size() < kIpHdr)
		return std::nullopt;
	uint32_t daddr;
	std::memcpy(&daddr, &s.ip[16], 4);
	auto it = cache.find({s.dir, daddr});
	if (it == cache.end()) {
		if (cache.size() >= kFragLookupsPerStep)
			return std::nullopt;
		it = cache.emplace(std::make_pair(s.dir, daddr), of(ifindex, daddr)).first;
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
	Part &part = parts_[p.key.dir & 1];
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
	// Only what the datapath parks: an IPv4 later fragment, whole.
	if (ip.size() < kIpHdr || (ip[0] >> 4) != 4 || (ip[0] & 0xf) < 5 ||
	    (ip[0] & 0xf) * 4u > ip.size() || rd16(ip, 2) != ip.size() ||
	    !(rd16(ip, 6) & kIpOffset) || (h.dir != KVX_BIND_OUT && h.dir != KVX_BIND_IN)) {
		count(KVX_R_FRAG_REINJECT_FAILED, ip.size());
		return;
	}
	Parked p;
	std::memcpy(&p.key.saddr, &ip[12], 4);
	std::memcpy(&p.key.daddr, &ip[16], 4);
	std::memcpy(&p.key.id, &ip[4], 2);
	p.key.proto = ip[9];
	p.key.dir = h.dir;
	if (h.dir == KVX_BIND_OUT)
		for (uint8_t b : h.mac)
			p.share = p.share << 8 | b;
	else
		p.share = p.key.saddr;
	p.parked_ns = now_ns;
	p.next_check_ns = now_ns; // at once: its first fragment may be in already
	if (ip.size() > limits_.max_bytes || limits_.max_frags == 0 || limits_.per_share == 0) {
		count(KVX_R_FRAG_PARK_FULL, ip.size());
		return;
	}
	Part &part = parts_[h.dir & 1];
	auto same_dir = [&](const Parked &o) { return o.key.dir == h.dir; };
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

std::vector<FragSend> FragPark::step(const Lookup &lookup, uint64_t now_ns)
{
	std::vector<FragSend> out;
	// Expired: the oldest, at the front (one lifetime for all).
	while (!q_.empty() && q_.front().parked_ns + limits_.lifetime_ns <= now_ns)
		drop(q_.begin(), KVX_R_FRAG_PARK_EXPIRED);

	std::map<kvx_frag_key, std::optional<kvx_frag_val>, decltype(&key_less)> seen(&key_less);
	std::deque<Parked> keep;
	for (Parked &p : q_) {
		if (p.next_check_ns > now_ns) {
			keep.push_back(std::move(p));
			continue;
		}
		auto it = seen.find(p.key);
		if (it == seen.end()) {
			std::optional<kvx_frag_val> v = lookup(p.key);
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
		const kvx_frag_val &v = *it->second;
		// The host had its first fragment, and this one (the
		// datapath hands it every inbound fragment it parks).
		if (p.key.dir == KVX_BIND_IN && v.addr == KVX_FRAG_HOST) {
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
		forget(p, 0);
		FragSend s;
		s.dir = p.key.dir;
		std::memcpy(s.dst_mac.data(), v.guest_mac, 6);
		s.ip = std::move(p.ip);
		if (!frag_translate(s.ip, s.dir, v.addr)) {
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

FragRelay::FragRelay(int fragq_fd, int frag_fd, int stats_fd, int cfg_fd, FragParkLimits limits)
	: frag_fd_(frag_fd)
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

void FragRelay::service(bool readable, const NextHop &next_hop, const NextHop &neighbour)
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
		[this](const kvx_frag_key &k) -> std::optional<kvx_frag_val> {
			kvx_frag_val v{};
			if (bpf_map_lookup_elem(frag_fd_, &k, &v) != 0)
				return std::nullopt;
			return v;
		},
		boottime_ns());
	if (!sends.empty()) {
		const kvx_cfg cfg = read_cfg(cfg_fd_);
		FragMacCache cache;
		for (const FragSend &s : sends) {
			const int ifindex = static_cast<int>(
				s.dir == KVX_BIND_OUT ? cfg.uplink_ifindex : cfg.bridge_ifindex);
			const auto mac = frag_dst_mac(s, ifindex, next_hop, neighbour, cache);
			int err = ENXIO; // no MAC to send to
			if (mac)
				err = packet_send(sock_.get(), ifindex, ETH_P_IP, *mac, s.ip.data(),
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
