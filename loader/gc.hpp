// SPDX-License-Identifier: GPL-2.0
// Conntrack/binding expiry: pure decision functions (unit-tested) and the
// sweeps over the pinned maps that the daemon runs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvmxdp/abi.h"

namespace kvmxdp {

// netfilter's defaults (nf_conntrack_proto_{tcp,udp,icmp,generic}.c).
kvx_timeouts default_timeouts();

// Seconds a flow may stay idle, from its state, flags and protocol.
uint32_t ct_timeout_s(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t);
// True once last_seen_ns + timeout lies in the past (CLOCK_BOOTTIME).
bool ct_expired(const kvx_ct_val &val, uint8_t proto, const kvx_timeouts &t, uint64_t now_ns);

// A binding no flow references survives this long after its last use, so
// that a flow the datapath is creating right now (binding first, flow
// second) does not lose its binding to a sweep running in between.
constexpr uint64_t kBindGraceNs = 30ULL * 1000 * 1000 * 1000;
bool bind_idle(uint64_t last_used_ns, uint64_t now_ns);

uint64_t boottime_ns();

struct SweepResult {
	size_t ct_deleted = 0;
	size_t bind_deleted = 0; // entries (each pair counts 2)
};

// Deletes expired flows, then the bindings no remaining flow references
// (matched by proto + external addr + port) and idle for kBindGraceNs.
// Pairs are deleted OUT half first, then IN half (abi.h: "OUT exists =>
// IN exists" must hold at every instant).
SweepResult gc_sweep(int ct_fd, int bind_fd, const kvx_timeouts &t, uint64_t now_ns);

// After the uplink address changed: flows and bindings on the old external
// address can never carry traffic again.  addr_be in network order.
SweepResult flush_ext_addr(int ct_fd, int bind_fd, uint32_t addr_be);

} // namespace kvmxdp
