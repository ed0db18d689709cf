// SPDX-License-Identifier: GPL-2.0
// The datapath's clock, read from user space.
#pragma once

#include <time.h>

#include <cstdint>

namespace kvmxdp {

// CLOCK_BOOTTIME in nanoseconds: what bpf_ktime_get_boot_ns() returns, so
// the times the datapath writes into the maps (last seen, created, ...)
// compare with it.  It counts a suspend, as flow timeouts must.
inline uint64_t boottime_ns()
{
	timespec ts{};
	::clock_gettime(CLOCK_BOOTTIME, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

} // namespace kvmxdp
