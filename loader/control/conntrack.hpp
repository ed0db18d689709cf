// SPDX-License-Identifier: GPL-2.0
// `kvmxdp conntrack list|flush`: the flows of kvx_ct as the user sees them
// (like conntrack -L / -F), and the memory the pinned maps take (status).
//
// Flush deletes flow entries only.  Flows reference bindings (proto, external
// addr, external port), never the other way round, so deleting a flow can
// not leave a dangling reference; a dynamic binding no flow uses any more is
// exactly the state the daemon's GC (control/gc.cpp) reclaims once it has been idle
// for kBindGraceNs.  Until then the guest endpoint keeps its external port
// (a new flow from it reuses the binding: RFC 4787 endpoint-independent
// mapping holds across a flush).  Static mappings' bindings are
// configuration and never touched; flows through them are state like any
// other and are re-created by the next packet (inbound too).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"
#include "kernel/maps.hpp"
#include "control/gc.hpp"

namespace kvmxdp {

// The CLI's filter arguments as typed ("" = not given).
struct CtFilterArgs {
	std::string guest;
	std::string remote;
	std::string proto;
	std::string ext_port;
	std::string state;
};

struct CtFilter {
	std::optional<uint32_t> guest;	  // host order
	std::optional<uint32_t> remote;	  // host order
	std::optional<Ipv6Addr> guest6;	  // --guest given as an IPv6 address
	std::optional<Ipv6Addr> remote6;  // --remote likewise
	std::optional<uint8_t> proto;	  // IPPROTO_*
	std::optional<uint16_t> ext_port; // host order; ICMP: the external echo id
	std::optional<uint8_t> state;	  // enum kvx_ct_state

	bool empty() const
	{
		return !guest && !remote && !guest6 && !remote6 && !proto && !ext_port && !state;
	}
	// An address of the other family matches no flow.
	bool matches(const kvx_ct_key &k, const kvx_ct_val &v) const;
	bool matches(const kvx_ct6_key &k, const kvx_ct6_val &v) const;
};

// Validates every given value; throws Error naming the bad one.
CtFilter parse_ct_filter(const CtFilterArgs &a);

// "SYN_SENT", "ESTABLISHED", ... ; KVX_CT_UDP (UDP, ICMP, other: no TCP
// state) is "STATELESS"; an unknown value "STATE_<n>".
std::string ct_state_name(uint8_t state);
// Case-insensitive inverse of ct_state_name (nullopt if unknown).
std::optional<uint8_t> parse_ct_state(const std::string &name);
// "tcp", "udp", "icmp", "icmpv6", else the number.
std::string ct_proto_name(uint8_t proto);
// "seen_reply", "fin_out", "fin_in", "inbound", "static", "one_to_one".
std::vector<std::string> ct_flag_names(uint8_t flags);

// One flow as JSON: family ("ipv4", "ipv6"), proto, int_addr/int_port,
// rem_addr/rem_port, ext_addr/ext_port, state, flags, age_s, idle_s,
// timeout_s, expires_in_s, expired, pkts_out, pkts_in.  Times from
// CLOCK_BOOTTIME now_ns.
nlohmann::json ct_flow_json(const kvx_ct_key &k, const kvx_ct_val &v, const kvx_timeouts &t,
			    uint64_t now_ns);
nlohmann::json ct_flow_json(const kvx_ct6_key &k, const kvx_ct6_val &v, const kvx_timeouts &t,
			    uint64_t now_ns);
// One line per flow, conntrack -L style; an IPv6 address next to a port
// in brackets ([fd42::14]:51234).
std::string ct_flow_line(const nlohmann::json &flow);

// The IPv6 tables of an instance (kvx_ct6, kvx_bind6); -1: not pinned (an
// instance attached by a kvmxdp without them).
struct Ct6Fds {
	int ct = -1;
	int bind = -1;
};

// The matching flows of a kvx_ct map fd, sorted (proto, guest, remote),
// then those of kvx_ct6 likewise.
nlohmann::json ct_list_fd(int ct_fd, const kvx_timeouts &t, const CtFilter &f, uint64_t now_ns,
			  Ct6Fds v6 = {});

struct CtFlushResult {
	size_t flows = 0;	    // flow entries deleted
	size_t unused_bindings = 0; // dynamic bindings (pairs) no flow references now
	size_t gflows_fixed = 0;    // per-guest flow counters rewritten
};
// Deletes the matching flows (all when f is empty); bindings stay for the
// GC (see the top of this file), and the bindings of the deleted flows count
// as used at now_ns (CLOCK_BOOTTIME): they are released only after the
// binding grace from the flush, so a stream that goes on sending picks up
// its own external port again even when its binding was made long ago.
// With q.gflows_fd >= 0 the per-guest flow counters of the quota (kvx_gflows)
// are then recounted from the flows that remain (gflows_recount, as the GC
// does), so a flushed guest may open new flows at once even with no daemon
// running.
// The IPv6 tables (v6) likewise, without counters (kvx_gflows is IPv4's).
// ovl_fd (kvx_ovl, -1: none pinned): a flushed flow of a tenant of a shared
// port keeps its claim for the grace, and the port is marked flushed.
CtFlushResult ct_flush_fd(int ct_fd, int bind_fd, const CtFilter &f, uint64_t now_ns,
			  const QuotaMaps &q = {}, Ct6Fds v6 = {}, int ovl_fd = -1);

} // namespace kvmxdp
