// SPDX-License-Identifier: GPL-2.0
// The host's own sockets, as the kernel shows them to this network
// namespace.
#pragma once

#include <cstdint>
#include <optional>

namespace kvmxdp {

// Host sockets listening on (proto, port) on addr (host order) or the
// wildcard (/proc/net/{tcp,udp}{,6}).
bool host_listens(uint8_t proto, uint32_t addr, uint16_t port);

// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE,
// Linux 5.14), or nullopt on an older kernel.
std::optional<uint64_t> netns_cookie();

} // namespace kvmxdp
