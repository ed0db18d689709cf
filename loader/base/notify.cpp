// SPDX-License-Identifier: GPL-2.0
#include "base/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "base/fd.hpp"
#include "base/log.hpp"

namespace kvmxdp {

namespace {

bool parse_u64(const char *s, unsigned long long &out)
{
	if (!s || !*s)
		return false;
	char *end = nullptr;
	errno = 0;
	out = std::strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && s[0] != '-';
}

} // namespace

bool sd_notify_state(const std::string &state)
{
	static bool failure_logged = false;
	const char *path = std::getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return false;
	auto failed = [&](const std::string &why) {
		if (!failure_logged)
			log_warn("systemd notification to " + std::string(path) + ": " + why +
				 " (a Type=notify unit waits for READY=1 until its start timeout)");
		failure_logged = true;
		return false;
	};
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	const size_t len = std::strlen(path);
	// Absolute path, or '@' for an abstract name (sd_notify(3)); the
	// terminating NUL of a path is not part of the address.
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return failed("NOTIFY_SOCKET is neither an absolute path nor '@NAME'");
	std::memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return failed(std::string("socket: ") + std::strerror(errno));
	const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
	if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
		     reinterpret_cast<const sockaddr *>(&sa), addr_len) < 0)
		return failed(std::string("sendto: ") + std::strerror(errno));
	return true;
}

std::chrono::microseconds sd_watchdog_interval()
{
	unsigned long long usec = 0, pid = 0;
	if (!parse_u64(std::getenv("WATCHDOG_USEC"), usec) || usec == 0)
		return std::chrono::microseconds(0);
	const char *p = std::getenv("WATCHDOG_PID");
	if (p && (!parse_u64(p, pid) || pid != static_cast<unsigned long long>(::getpid())))
		return std::chrono::microseconds(0);
	return std::chrono::microseconds(usec);
}

} // namespace kvmxdp
