// SPDX-License-Identifier: GPL-2.0
// Flow timeouts (kvx_cfg.timeouts): the defaults (netfilter's, transitory TCP
// states at RFC 5382's 4 minutes) and `attach --timeouts`.  Pure; how a flow's
// state selects one of them is the expiry rule (control/gc.hpp).
#pragma once

#include <string>

#include "kvmxdp/abi.h"

namespace kvmxdp {

// The defaults (kvmxdp/ct_rules.h kvx_timeouts_default).
kvx_timeouts default_timeouts();
// attach --timeouts: "NAME=SECONDS[,NAME=SECONDS...]" over the defaults,
// NAME a kvx_timeouts field (tcp_syn_sent, tcp_established, tcp_fin_wait,
// tcp_time_wait, tcp_close, udp, udp_stream, icmp, other), SECONDS
// 1..2^31/1e9-safe (at most 10 years).  Throws Error naming the bad item.
kvx_timeouts parse_timeouts(const std::string &spec);

} // namespace kvmxdp
