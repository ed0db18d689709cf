// SPDX-License-Identifier: GPL-2.0
// Conntrack/binding expiry: pure decision functions (unit-tested) and the
// sweeps over the pinned maps that the daemon runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "base/clock.hpp"
#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"
#include "model/quota.hpp"

namespace kvmxdp {

// Guest MAC -> bridge port, read from kvx_brport (abi.h; -1: none, empty):
// what the quota slots are computed from (model/quota.hpp mac_slot).
GuestPorts brport_ports(int brport_fd);

// Where the per-guest flow counters live and how a flow finds its guest's
// (abi.h kvx_gflows): the slot of the bridge port of the MAC that owns the
// flow's guest address now (kvx_guest, kvx_brport), keyed with
// kvx_cfg.guest_seed, as the datapath computes
// it.  gflows_fd -1: no counters to rewrite; guest_fd -1: no owners known
// (every address counts in its own owner-less slot).
struct QuotaMaps {
	int gflows_fd = -1;
	int guest_fd = -1;
	uint32_t seed = 0;
	// kvx_ct6 / kvx_bind6: a guest's IPv6 flows and bindings count in the
	// same slot as its IPv4 ones (ct6.h ct6_slot), so every recount counts
	// both families (-1: IPv4 only).
	int ct6_fd = -1;
	int bind6_fd = -1;
	// kvx_nd: relay's flows have no binding; they count in the slot of
	// their address's owner there (ct6.h ct6_nd_slot; -1: none).
	int nd_fd = -1;
	// kvx_brport: a guest is its bridge port (ct.h mac_slot): a MAC's
	// flows, bindings and addresses count in its port's slot (ct_rules.h
	// kvx_port_slot), all MACs not placed in port 0's.  -1: no port
	// known (every MAC in port 0's).
	int brport_fd = -1;
};

// The correction of a counter the datapath keeps, counted from a dump
// between two readings of the counter (before and after it): the datapath
// goes on counting during the dump, so any count between the two readings
// is consistent with it; only a count outside them is drift, corrected up
// to the nearer reading (counters compared as the datapath's (__s32)).
int64_t counter_correction(uint32_t counted, uint32_t before, uint32_t after);

// Corrects every kvx_gflows counter towards the number of flows in ct_fd
// per guest (all of them: the datapath counts every flow it creates), by
// counter_correction, with atomic adds when the map is BPF_F_MMAPABLE
// (never a write that would lose the datapath's concurrent +1/-1).
// Returns the number of slots corrected.
size_t gflows_recount(int ct_fd, const QuotaMaps &q);

// Closed flows give way ahead of need, in both families.  The datapath
// evicts a guest's closed TCP flows (TIME_WAIT, CLOSE; quiet for
// KVX_TW_RECYCLE_NS) when the guest is at its quota, or any guest's when
// the table is full, one per new flow and only from the table of the
// family it is inserting into (one walk per insert: 6.1's verifier allows
// no second).  A dual-stack guest whose quota is full of one family's
// closed flows would get no flow of the other until they expire
// (4 minutes), and a guest churning at its quota pays a walk for every
// new connection.  At each GC tick, a guest slot's counter (per direction)
// over quota - quota / kReliefShare loses all its quiet closed flows of
// both tables (and, inbound, its quiet half-open ones: a SYN flood's), and a table fuller than that share of its size all of its
// own, the longest closed first, at most kReliefMax, each with the
// datapath's -1 on its counter.  Run after the sweeps.
constexpr uint32_t kReliefShare = 8;
constexpr size_t kReliefMax = 32768;
struct ReliefResult {
	size_t deleted = 0; // flows
	size_t guests = 0;  // guest slots relieved
};
ReliefResult quota_relief(int ct_fd, const QuotaMaps &q, uint32_t quota, uint64_t now_ns);

// Corrects every kvx_gports counter towards the number of dynamic bindings
// (OUT halves that are not static) per guest in bind_fd, slotted as
// kvx_gflows (q.gflows_fd unused), as gflows_recount.  Returns the number
// of slots corrected.  after_reading runs between the counters' last
// reading and the correction: where the datapath's concurrent +1/-1 would
// be lost to a write-back (tests play the datapath there).
size_t gports_recount(int bind_fd, int gports_fd, const QuotaMaps &q,
		      const std::function<void()> &after_reading = {});

// Corrects every kvx_gtenant counter towards the number of tenants (OUT
// halves marked KVX_BIND_F_SHARED, ct.h ovl_try) per guest in bind_fd, as
// gports_recount.  Returns the number of slots corrected.
size_t tenants_recount(int bind_fd, int gtenant_fd, const QuotaMaps &q,
		       const std::function<void()> &after_reading = {});

// Corrects every kvx_gaddrs counter towards the number of relay addresses
// (kvx_nd entries of a guest: owned, pending, defended) per bridge port of
// their owner MAC (q.brport_fd, q.seed: kvx_port_slot), as
// gflows_recount.  Returns the
// number of slots corrected.
size_t gaddrs_recount(int nd_fd, int gaddrs_fd, const QuotaMaps &q,
		      const std::function<void()> &after_reading = {});

// The datapath's expiry rule (kvmxdp/ct_rules.h), for C++ callers.
// Seconds a flow may stay idle, from its state, flags and protocol.
uint32_t ct_timeout_s(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t);
// True once last_seen_ns + timeout lies in the past (CLOCK_BOOTTIME).
bool ct_expired(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t, uint64_t now_ns);

// A binding no flow references survives this long after its last use, so
// that a flow the datapath is creating right now (binding first, flow
// second) does not lose its binding to a sweep running in between.
constexpr uint64_t kBindGraceNs = KVX_BIND_GRACE_NS;
bool bind_idle(uint64_t last_used_ns, uint64_t now_ns);
// A binding of a static mapping (port forward, 1:1): never expired, never
// touched by the GC or by a flush.
bool bind_is_static(const kvx_bind_val &v);
// A port-overlapping claim k -> v is alive on its port while the port's IN
// half is dynamic and still names the owner the claim was made under
// (v.addr, v.owner_port); *in gets the IN half when found.
bool ovl_owner_holds(int bind_fd, const kvx_ovl_key &k, const kvx_ovl_val &v,
		     kvx_bind_val *in = nullptr);
// Deletes the OUT half of the dynamic pair whose IN half is `in` (value
// `in_val`), if that OUT half still points back to it, as the datapath
// releases a pair (abi.h: "OUT half exists => IN half exists"); the IN half
// is the caller's.  True if it deleted one.
bool release_out_half(int bind_fd, const kvx_bind_key &in, const kvx_bind_val &in_val);
bool release_out_half(int bind6_fd, const kvx_bind6_key &in, const kvx_bind6_val &in_val);

struct SweepResult {
	size_t ct_deleted = 0;
	size_t bind_deleted = 0; // entries (each pair counts 2)
	size_t gflows_fixed = 0; // per-guest counters rewritten
};

// Deletes expired flows, then the bindings no remaining flow references
// (matched by proto + external addr + port) and idle for kBindGraceNs.
// Pairs are deleted OUT half first, then IN half (abi.h: "OUT exists =>
// IN exists" must hold at every instant).  With q.gflows_fd >= 0, the
// per-guest flow counters are then corrected from the flows that remain
// (gflows_recount's rule: the GC's deletions do not accumulate drift, and
// no datapath update made meanwhile is overwritten).
enum class FlowFate { Deleted, Kept, Gone };
// The sweep picks expired flows from a dump that may be many milliseconds
// old by the time it gets to one: a packet may have refreshed the flow
// since.  The flow is read again and deleted only if still expired; the
// window left is the one between that read and the delete (the kernel has
// no compare-and-delete), microseconds instead of a whole dump.  *now gets
// the value read (unless Gone).
FlowFate delete_if_expired(int ct_fd, const kvx_ct_key &k, const kvx_timeouts &t, uint64_t now_ns,
			   kvx_ct_val *now = nullptr);

SweepResult gc_sweep(int ct_fd, int bind_fd, const kvx_timeouts &t, uint64_t now_ns,
		     const QuotaMaps &q = {});
// The same sweep over kvx_ct6/kvx_bind6 (the same code: their values embed
// the IPv4 ones, abi.h).  It corrects no counters: the IPv4 sweep's
// recount (q.ct6_fd) counts the IPv6 flows too, so run this one first.
SweepResult gc_sweep6(int ct6_fd, int bind6_fd, const kvx_timeouts &t, uint64_t now_ns);

// Port overlapping (abi.h kvx_ovl, KVX_BIND_F_SHARED), after gc_sweep (the
// flows it expired free their claims in the same pass): deletes the claims
// older than kBindGraceNs whose flow is gone (or leaves through another
// port) or whose port's IN half no longer names the owner they were made
// under; clears KVX_BIND_F_SHARED from the IN halves no claim is left for
// (once their last use is older than the claims' copy, so that a tenant
// joining meanwhile keeps it); deletes the tenants' OUT halves that no
// claim names, idle for kBindGraceNs.  The bindings are only read when
// there are claims or scan_bindings says that the last sweep left shared
// state (a daemon's first sweep: true).
struct OvlSweepResult {
	size_t claims_deleted = 0;
	size_t tenants_deleted = 0; // tenants' OUT halves
	size_t unshared = 0;	    // IN halves whose shared mark was cleared
	bool shared_left = false;   // claims, marks or tenants remain
};
// IN halves written whole from userspace (written: key, the value's owner
// address and port) that a claim made under that owner names now, but
// whose KVX_BIND_F_SHARED is clear: the write may have dropped the mark
// the datapath set meanwhile (ct.h ovl_enter), and bind_recycle would give
// the port away under the tenant's flow.  Sets the mark again (only ever
// sets it, as the datapath; a claim made after the look finds the mark
// clear and sets it itself).  Returns the number of IN halves marked.
size_t reshare_claimed(int bind_fd, int ovl_fd,
		       const std::vector<std::pair<kvx_bind_key, kvx_bind_val>> &written);

// A mark cleared from a port a claim names by then (a tenant joined
// between the reading and the write) is set again: after_unshare runs
// between the clearing writes and that second look (tests play the
// datapath there).
OvlSweepResult ovl_sweep(int ct_fd, int bind_fd, int ovl_fd, uint64_t now_ns, bool scan_bindings,
			 const std::function<void()> &after_unshare = {});

// address can never carry traffic again.  addr_be in network order.
SweepResult flush_ext_addr(int ct_fd, int bind_fd, uint32_t addr_be);
// The same for the uplink's IPv6 address (kvx_cfg6.uplink_addr).
SweepResult flush_ext_addr6(int ct6_fd, int bind6_fd, const Ipv6Addr &addr);

// A host service that started listening on a port a guest's dynamic binding
// holds (portx: the words of kvx_portx, as host_port_bitmap makes them).
// The datapath already keeps such a port from new bindings and from
// unsolicited inbound (ct.h bind_claim_port, ct_unsolicited_is_host); this
// releases the binding itself, so that the guest's next new flow (endpoint-
// independent mapping reuses a binding) leaves from another port: a binding
// no flow uses goes whole (OUT half first); one with flows loses only its
// OUT half: the live connections keep their port (their flows find the IN
// half) and the GC takes the IN half when they end.  TCP and UDP bindings
// only (the listeners' protocols); static mappings are never touched.
// A pair used within a second of now_ns (CLOCK_BOOTTIME, read before the
// call) is left for the next sweep: its new flow may be after the
// conntrack dump.  Returns the number of binding entries deleted.
size_t release_host_ports(int ct_fd, int bind_fd, const std::vector<uint64_t> &portx,
			  uint64_t now_ns);
// The same for the IPv6 bindings (the host's listeners are either family's).
size_t release_host_ports6(int ct6_fd, int bind6_fd, const std::vector<uint64_t> &portx,
			   uint64_t now_ns);

} // namespace kvmxdp
