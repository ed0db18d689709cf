// SPDX-License-Identifier: GPL-2.0
// RFC 5227 ARP probing and announcing on an Ethernet device (AF_PACKET):
// `map add` claims an external address on the uplink's network this way.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace kvmxdp {

// RFC 5227 probe: `count` ARP requests with sender IP 0.0.0.0 over about
// `total_ms`; returns the MAC of a host that claims addr (host order).
std::optional<std::array<uint8_t, 6>> arp_probe(int ifindex, const std::array<uint8_t, 6> &mac,
						uint32_t addr, int count = 3, int total_ms = 1000);
// Gratuitous ARP (RFC 5227 announcement): sender IP = target IP = addr.
void arp_announce(int ifindex, const std::array<uint8_t, 6> &mac, uint32_t addr, int count = 2);

} // namespace kvmxdp
