// SPDX-License-Identifier: GPL-2.0
// Frames sent on an Ethernet device through AF_PACKET (CAP_NET_RAW): the
// ARP probes, and the parked fragments the daemon sends on.  Below the IP
// layer: no routing, no netfilter, no cgroup egress filter (the unit's
// IPAddressDeny=), the kernel adds the Ethernet header with the device's
// own MAC as source (SOCK_DGRAM).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/fd.hpp"
#include "base/netaddr.hpp"

namespace kvmxdp {

// A packet socket for ethertype proto (host order) on ifindex: bind()
// sets the protocol and the device together (a socket created with a
// protocol receives it from every device until bound).  proto 0 and
// ifindex 0: a socket that only sends (it receives nothing).
Fd packet_socket(int ifindex, uint16_t proto);
// Sends payload as one frame of ethertype proto (host order) to dst on
// ifindex; 0 or the errno of the failure (EMSGSIZE above the MTU, ENETDOWN).
int packet_send(int fd, int ifindex, uint16_t proto, const MacAddr &dst, const void *payload,
		size_t len);

} // namespace kvmxdp
