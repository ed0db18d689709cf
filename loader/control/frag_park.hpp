// SPDX-License-Identifier: GPL-2.0
// IPv4 later fragments that arrive before their first one (RFC 4787
// REQ-14): the datapath copies them into the ring kvx_fragq (abi.h); the
// daemon parks the copies here, bounded (REQ-14a: a flood of fragments
// that are never completed costs a fixed amount of memory and is counted),
// and sends each one on once its datagram's first fragment has been
// translated (its kvx_frag entry exists), with that translation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "base/fd.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

class RingReader;

struct FragParkLimits {
	size_t max_frags = 256;	       // parked at once
	size_t max_bytes = 256 * 1024; // their IP bytes
	// Parked at once per source address (a guest's, or a remote's): one
	// flooding source fills only its share.
	size_t per_source = 64;
	// As long as kvx_frag steers a datagram's fragments, as long as the
	// kernel keeps an incomplete datagram (net.ipv4.ipfrag_time).
	uint64_t lifetime_ns = uint64_t{KVX_FRAG_TIMEOUT_S} * 1000000000ULL;
	// How often a parked fragment's kvx_frag entry is looked for: at
	// first often (a reordered first fragment is usually a moment
	// behind), later seldom (bounded work for a park full of orphans).
	uint64_t check_fast_ns = 10 * 1000000ULL;
	uint64_t check_slow_ns = 250 * 1000000ULL;
	uint64_t fast_for_ns = 1000000000ULL;
};

// The translation of a parked fragment with its datagram's kvx_frag entry:
// OUT (from a guest): source = addr; IN (to a guest): destination = addr;
// the TTL one less (it is forwarded) and the IP header checksum computed
// anew.  A later fragment carries no L4 header: nothing else changes.
// false: not an IPv4 packet whose header fits, or a TTL of 1 or less.
bool frag_translate(std::vector<uint8_t> &ip, uint8_t dir, uint32_t addr_be);

// A parked fragment ready to go.
struct FragSend {
	uint8_t dir = KVX_BIND_OUT;	  // OUT: out of the uplink; IN: into the bridge
	std::array<uint8_t, 6> dst_mac{}; // kvx_frag_val.guest_mac (zero: unknown)
	std::vector<uint8_t> ip;
};

class FragPark {
public:
	using Lookup = std::function<std::optional<kvx_frag_val>(const kvx_frag_key &)>;

	explicit FragPark(FragParkLimits limits = {})
		: limits_(limits)
	{
	}

	// One kvx_fragq record (kvx_fragq_rec): parked.  Room is made by
	// giving up the oldest parked fragment of its source when the source
	// holds its share, else the oldest of all when the park is full
	// (FRAG_PARK_FULL): a flood's own fragments go first, and a datagram
	// reordered now (whose first fragment is a moment behind) finds room
	// even beside a flood from its own source.
	// A record that is no IPv4 later fragment is ignored
	// (FRAG_REINJECT_FAILED).
	void take(const void *rec, size_t size, uint64_t now_ns);
	// Parked fragments whose datagram's entry lookup finds (and that has
	// not expired), translated and removed; fragments parked for their
	// lifetime are removed and counted (FRAG_PARK_EXPIRED).  Each entry is
	// looked up once per call, only for fragments whose check is due.
	std::vector<FragSend> step(const Lookup &lookup, uint64_t now_ns);
	// Milliseconds until step() has work without a new record; -1: none.
	int64_t wait_ms(uint64_t now_ns) const;

	size_t size() const { return q_.size(); }
	size_t bytes() const { return bytes_; }
	// Counts by reason (KVX_R_FRAG_*) since the last call.
	std::map<uint32_t, kvx_stat> take_counts() { return std::exchange(counts_, {}); }
	// The caller's count (a send that failed).
	void count(uint32_t reason, size_t ip_len);

private:
	struct Parked {
		kvx_frag_key key{};
		uint64_t parked_ns = 0;
		uint64_t next_check_ns = 0;
		std::vector<uint8_t> ip;
	};
	void drop_front(uint32_t reason);

	FragParkLimits limits_;
	std::deque<Parked> q_; // arrival order: the oldest first
	size_t bytes_ = 0;
	std::map<uint32_t, size_t> per_source_; // saddr -> parked fragments
	std::map<uint32_t, kvx_stat> counts_;
};

// The daemon's side of kvx_fragq: reads the ring into the park, looks up
// kvx_frag, sends what is ready (AF_PACKET: the uplink's egress and the
// bridge carry no kvmxdp program, so nothing is translated twice, and the
// unit's IPAddressDeny= does not apply below IP) and adds the park's counts
// to kvx_stats.
class FragRelay {
public:
	FragRelay(int fragq_fd, int frag_fd, int stats_fd, int cfg_fd, FragParkLimits limits = {});
	~FragRelay();
	FragRelay(const FragRelay &) = delete;
	FragRelay &operator=(const FragRelay &) = delete;

	// The uplink's next hop for a destination (network order) when the
	// datagram's entry has no MAC (its first fragment left the neighbour
	// to the kernel: bpf_redirect_neigh).
	using NextHop =
		std::function<std::optional<std::array<uint8_t, 6>>(int ifindex, uint32_t daddr_be)>;

	int fd() const;
	int64_t wait_ms() const;
	// readable: fd() was; then the park's step, the sends and the counts.
	void service(bool readable, const NextHop &next_hop);
	const FragPark &park() const { return park_; }

private:
	std::unique_ptr<RingReader> ring_;
	int frag_fd_, stats_fd_, cfg_fd_;
	Fd sock_;
	FragPark park_;
};

} // namespace kvmxdp
