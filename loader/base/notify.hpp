// SPDX-License-Identifier: GPL-2.0
// systemd's service notification protocol (sd_notify(3)), by hand: one
// datagram of "KEY=VALUE\n..." lines to the AF_UNIX socket named by
// $NOTIFY_SOCKET (a path, or '@' for the abstract namespace).  No libsystemd:
// the protocol is that one sendto(), documented as stable, and the daemon
// would otherwise link a library for it.
#pragma once

#include <chrono>
#include <string>

namespace kvmxdp {

// Sends state ("READY=1", "WATCHDOG=1", "STATUS=...", several joined by
// '\n').  Returns false without $NOTIFY_SOCKET (not run by systemd, or
// not as Type=notify) and when the send fails; a failure is logged once,
// since a service manager that misses READY=1 kills the unit at its start
// timeout and the journal should say why.
bool sd_notify_state(const std::string &state);

// $WATCHDOG_USEC when the watchdog is meant for this process
// ($WATCHDOG_PID unset or ours: a child inherits the variables, not the
// duty), else zero.  The daemon pings at half of it.
std::chrono::microseconds sd_watchdog_interval();

} // namespace kvmxdp
