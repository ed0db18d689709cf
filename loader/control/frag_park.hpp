// SPDX-License-Identifier: GPL-2.0
// Later fragments (IPv4 and IPv6) that arrive before their first one (RFC
// 4787 REQ-14): the datapath copies them into the ring kvx_fragq (abi.h);
// the daemon parks the copies here, bounded (REQ-14a: a flood of fragments
// that are never completed costs a fixed amount of memory and is counted),
// and sends each one on once its datagram's first fragment has been
// translated (its kvx_frag or kvx_frag6 entry exists), with that
// translation.
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
#include "base/netaddr.hpp"
#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

class RingReader;

// Each direction has these limits of its own: a flood from the uplink
// (whose sources cost a spoofer nothing) never takes the room of the
// guests' outbound fragments, nor the other way round.
struct FragParkLimits {
	size_t max_frags = 256;	       // parked at once, per direction
	size_t max_bytes = 256 * 1024; // their IP bytes, per direction
	// Parked at once per share: outbound the sending guest's (its MAC,
	// which the datapath checked owns the source address: a guest cannot
	// spread over addresses; IPv6 ties no address to a MAC, so a guest
	// sending from several MACs has as many shares), inbound the source
	// address's (IPv6: its /64, which one LAN host may send from whole).
	// One flooding guest or source fills only its share.
	size_t per_share = 64;
	// As long as kvx_frag steers a datagram's fragments, as long as the
	// kernel keeps an incomplete datagram (net.ipv4.ipfrag_time).
	uint64_t lifetime_ns = uint64_t{KVX_FRAG_TIMEOUT_S} * 1000000000ULL;
	// A parked fragment joins only a datagram whose first fragment
	// passed this close to its parking, before or after: a first
	// fragment 20 s later with the same id is another datagram's.
	uint64_t reorder_ns = KVX_FRAG_REORDER_NS;
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
// The same for IPv6: the address and the hop limit (no header checksum).
bool frag_translate6(std::vector<uint8_t> &ip, uint8_t dir, const Ipv6Addr &addr);

// A parked fragment ready to go (the version in ip[0] tells the family).
struct FragSend {
	uint8_t dir = KVX_BIND_OUT;	  // OUT: out of the uplink; IN: into the bridge
	MacAddr dst_mac{};		  // from its entry (zero: unknown)
	std::vector<uint8_t> ip;
	bool v6() const { return !ip.empty() && (ip[0] >> 4) == 6; }
};

// A MAC from the neighbour tables: of the next hop towards an address
// (network order) on a device, or nullopt.
using FragMacOf = std::function<std::optional<MacAddr>(int ifindex, uint32_t addr_be)>;
using FragMacOf6 = std::function<std::optional<MacAddr>(int ifindex, const Ipv6Addr &addr)>;
// Where destination MACs come from, per family: next_hop the uplink's
// towards an address (its own neighbour entry, else the default router's),
// neighbour an entry of the bridge's table.
struct FragMacSources {
	FragMacOf next_hop, neighbour;
	FragMacOf6 next_hop6, neighbour6;
};

// Where a translated parked fragment goes on ifindex (the uplink for OUT,
// the bridge for IN): its entry's MAC when the first fragment's path had
// one; else OUT the uplink's next hop towards the destination
// (uplink_next_hop: the first fragment left it to bpf_redirect_neigh),
// IN the guest's own neighbour entry on the bridge (a mapping whose
// guest's MAC was not learnt when the first fragment passed), never a
// gateway.  Each lookup at most once per address in one `cache` (the
// sends of one step: the route dump behind next_hop is not per fragment),
// and at most kFragLookupsPerStep addresses looked up per cache (a guest
// sending reordered fragments to many unresolvable addresses must not
// make each step a series of netlink dumps): past that, no MAC.  The
// cache holds IPv4 addresses IPv4-mapped (::ffff:a.b.c.d).
constexpr size_t kFragLookupsPerStep = 16;
using FragMacCache = std::map<std::pair<uint8_t, Ipv6Addr>, std::optional<MacAddr>>;
std::optional<MacAddr> frag_dst_mac(const FragSend &s, int ifindex, const FragMacSources &macs,
				    FragMacCache &cache);

// A parked fragment's datagram: the key of its kvx_frag (IPv4) or
// kvx_frag6 (IPv6) entry.
struct FragKey {
	bool v6 = false;
	kvx_frag_key k4{};
	kvx_frag6_key k6{};
	uint8_t dir() const { return v6 ? k6.dir : k4.dir; }
};
bool operator<(const FragKey &a, const FragKey &b);

class FragPark {
public:
	using Lookup = std::function<std::optional<kvx_frag_val>(const kvx_frag_key &)>;
	using Lookup6 = std::function<std::optional<kvx_frag6_val>(const kvx_frag6_key &)>;

	explicit FragPark(FragParkLimits limits = {})
		: limits_(limits)
	{
	}

	// One kvx_fragq record (kvx_fragq_hdr and the packet): parked.  Room
	// is made in the record's direction by giving up the oldest parked
	// fragment of its share when the share is full, else the direction's
	// oldest when the direction is full (FRAG_PARK_FULL): a flood's own
	// fragments go first, and a datagram reordered now (whose first
	// fragment is a moment behind) finds room even beside a flood from
	// its own share.  A record that is no IPv4 or IPv6 later fragment
	// (IPv6: hop-by-hop, routing and destination options headers before
	// the Fragment header, none after it) is ignored
	// (FRAG_REINJECT_FAILED).
	void take(const void *rec, size_t size, uint64_t now_ns);
	// Parked fragments whose datagram's entry lookup finds (and that has
	// not expired), translated and removed; but a fragment whose entry is
	// the host's (its first fragment went there, and so did this one) is
	// removed unsent (FRAG_PARK_HOST), and so is one whose entry was made
	// further than reorder_ns from its parking (FRAG_PARK_STALE), and an
	// IPv6 guest's fragment whose first came from another MAC
	// (DROP_SPOOF_MAC, as the datapath's later fragments).  Fragments
	// parked for their lifetime are removed and counted
	// (FRAG_PARK_EXPIRED).  Each entry is looked up once per call, only
	// for fragments whose check is due.  lookup6 empty: IPv6 fragments
	// wait (and expire).
	std::vector<FragSend> step(const Lookup &lookup, const Lookup6 &lookup6, uint64_t now_ns);
	std::vector<FragSend> step(const Lookup &lookup, uint64_t now_ns)
	{
		return step(lookup, {}, now_ns);
	}
	// Milliseconds until step() has work without a new record; -1: none.
	int64_t wait_ms(uint64_t now_ns) const;

	size_t size() const { return q_.size(); }
	size_t bytes() const { return parts_[0].bytes + parts_[1].bytes; }
	// Parked in one direction (KVX_BIND_OUT / KVX_BIND_IN).
	size_t size(uint8_t dir) const { return parts_[dir & 1].frags; }
	// Counts by reason (KVX_R_FRAG_*) since the last call.
	std::map<uint32_t, kvx_stat> take_counts() { return std::exchange(counts_, {}); }
	// The caller's count (a send that failed).
	void count(uint32_t reason, size_t ip_len);

private:
	// Whose room a parked fragment takes: OUT the guest's MAC (kind 0),
	// IN the source's address (kind 4) or /64 (kind 6): an IPv4 address
	// and a /64 whose last 32 bits are zero are not one share.
	using Share = std::pair<uint8_t, uint64_t>;
	struct Parked {
		FragKey key{};
		Share share{};
		uint64_t parked_ns = 0;
		uint64_t next_check_ns = 0;
		std::vector<uint8_t> ip;
	};
	struct Part {
		size_t frags = 0;
		size_t bytes = 0;
		std::map<Share, size_t> shares; // share -> parked fragments
	};
	// Gives up a parked fragment (reason: 0 when it was sent, no count).
	void forget(const Parked &p, uint32_t reason);
	void drop(std::deque<Parked>::iterator it, uint32_t reason);

	FragParkLimits limits_;
	std::deque<Parked> q_; // arrival order: the oldest first
	Part parts_[2];	       // by direction
	std::map<uint32_t, kvx_stat> counts_;
};

// The daemon's side of kvx_fragq: reads the ring into the park, looks up
// kvx_frag, sends what is ready (AF_PACKET: the uplink's egress and the
// bridge carry no kvmxdp program, so nothing is translated twice, and the
// unit's IPAddressDeny= does not apply below IP) and adds the park's counts
// to kvx_stats.
class FragRelay {
public:
	// The datagrams' entries: the guests' (frag_fd, frag6_fd), the host's
	// marks (fraghost_fd, fraghost6_fd: abi.h kvx_fraghost); an IPv6 fd
	// -1: IPv6 records are not followed.
	struct Maps {
		int frag = -1, frag6 = -1, fraghost = -1, fraghost6 = -1;
	};
	FragRelay(int fragq_fd, Maps maps, int stats_fd, int cfg_fd, FragParkLimits limits = {});
	~FragRelay();
	FragRelay(const FragRelay &) = delete;
	FragRelay &operator=(const FragRelay &) = delete;

	int fd() const;
	// Also the ring's next read while records are coming in: the
	// datapath wakes fd() at most once per KVX_FRAGQ_WAKE_NS (abi.h), and
	// the records in between are read KVX_FRAGQ_POLL_MS after the last
	// read that found some.
	int64_t wait_ms() const;
	// readable: fd() was; then the park's step, the sends (to MACs from
	// macs: frag_dst_mac) and the counts.
	void service(bool readable, const FragMacSources &macs);
	const FragPark &park() const { return park_; }

private:
	std::unique_ptr<RingReader> ring_;
	Maps maps_;
	int stats_fd_, cfg_fd_;
	Fd sock_;
	FragPark park_;
	uint64_t ring_due_ns_ = 0; // 0: until fd() is readable
};

} // namespace kvmxdp
