// SPDX-License-Identifier: GPL-2.0
// RFC 5227 ARP probing and announcing on an Ethernet device (AF_PACKET):
// `map add` claims an external address on the uplink's network this way,
// and the daemon probes a suspended mapping's address again before it
// resumes it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/fd.hpp"
#include "base/netaddr.hpp"

namespace kvmxdp {

// One RFC 5227 probe in progress, driven by the caller's poll loop: the
// daemon probes while it goes on collecting and following netlink.
// arp_probe() below is the blocking loop over it.
class ArpProber {
public:
	// Opens the socket; the first probe goes out at the first step().
	ArpProber(int ifindex, const MacAddr &mac, uint32_t addr, int count = 3,
		  int total_ms = 1000);
	// Readable when a frame to look at arrived.
	int fd() const { return sock_.get(); }
	// Sends the probes that are due and reads what arrived, without
	// waiting; true once finished (a conflict, or the time is up).
	bool step();
	bool done() const { return done_; }
	// The MAC of a host that claims the address (once done).
	const std::optional<MacAddr> &conflict() const { return conflict_; }
	// Milliseconds until step() has something to do without a frame.
	int wait_ms() const;
	uint32_t addr() const { return addr_; }

private:
	using Clock = std::chrono::steady_clock;
	Clock::time_point next_send() const;
	Fd sock_;
	int ifindex_;
	MacAddr mac_;
	uint32_t addr_;
	int count_;
	int total_ms_;
	Clock::time_point start_;
	int sent_ = 0;
	bool done_ = false;
	std::optional<MacAddr> conflict_;
};

// RFC 5227 probe: `count` ARP requests with sender IP 0.0.0.0 over about
// `total_ms`; returns the MAC of a host that claims addr (host order).
std::optional<MacAddr> arp_probe(int ifindex, const MacAddr &mac, uint32_t addr, int count = 3,
				 int total_ms = 1000);
// Gratuitous ARP (RFC 5227 announcement): sender IP = target IP = addr.
void arp_announce(int ifindex, const MacAddr &mac, uint32_t addr, int count = 2);

// An ARP request other hosts sent on the device (addresses host order),
// and how often it came.
struct ArpRequest {
	MacAddr mac{}; // the sender's hardware address
	uint32_t sender = 0;
	uint32_t target = 0;
	int count = 0;
};
// At most this many different requests are kept: a flood of forged ones
// must not take the memory.
constexpr size_t kArpListenMaxRows = 4096;
struct ArpCapture {
	std::vector<ArpRequest> requests;
	// Requests received and not counted: new ones beyond kArpListenMaxRows,
	// and those the kernel dropped because the socket's buffer was full
	// (PACKET_STATISTICS).  Not 0: what was not seen may be what mattered.
	uint64_t missed = 0;
};
// The ARP requests received on ifindex during `ms` milliseconds (`doctor`
// learns the guests' gateways from them: a guest asks for its gateway).
ArpCapture arp_listen(int ifindex, int ms);

} // namespace kvmxdp
