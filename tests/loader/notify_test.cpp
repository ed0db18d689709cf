// SPDX-License-Identifier: GPL-2.0
// sd_notify by hand (base/notify.hpp): the datagrams arrive on a real
// AF_UNIX socket, named by a path and in the abstract namespace, as
// systemd's manager reads them; the watchdog interval is ours only when
// WATCHDOG_PID names us.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "base/fd.hpp"
#include "base/log.hpp"
#include "base/notify.hpp"

namespace kvmxdp {
namespace {

// A datagram socket bound where NOTIFY_SOCKET points for the test's time.
class NotifySocket {
public:
	explicit NotifySocket(const std::string &name)
		: fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0))
	{
		sockaddr_un sa{};
		sa.sun_family = AF_UNIX;
		std::memcpy(sa.sun_path, name.data(), name.size());
		if (name[0] == '@')
			sa.sun_path[0] = '\0';
		else
			path_ = name;
		const auto len =
			static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
		EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr *>(&sa), len), 0)
			<< name << ": " << std::strerror(errno);
		::setenv("NOTIFY_SOCKET", name.c_str(), 1);
	}
	~NotifySocket()
	{
		::unsetenv("NOTIFY_SOCKET");
		if (!path_.empty())
			::unlink(path_.c_str());
	}
	// The next datagram, or "" when none is waiting.
	std::string next()
	{
		char buf[4096];
		ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
		return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
	}

private:
	Fd fd_;
	std::string path_;
};

std::string temp_path()
{
	char dir[] = "/tmp/kvx-notify-XXXXXX";
	EXPECT_NE(::mkdtemp(dir), nullptr);
	return std::string(dir) + "/notify";
}

TEST(SdNotify, SendsTheStateToThePathInNotifySocket)
{
	const std::string path = temp_path();
	{
		NotifySocket s(path);
		EXPECT_TRUE(sd_notify_state("READY=1\nSTATUS=bridge br0, uplink eth0: attached"));
		EXPECT_EQ(s.next(), "READY=1\nSTATUS=bridge br0, uplink eth0: attached");
		EXPECT_TRUE(sd_notify_state("WATCHDOG=1"));
		EXPECT_EQ(s.next(), "WATCHDOG=1");
		EXPECT_EQ(s.next(), "");
	}
	::rmdir(path.substr(0, path.rfind('/')).c_str());
}

TEST(SdNotify, AnAtSignIsTheAbstractNamespace)
{
	const std::string name = "@kvx-notify-test-" + std::to_string(::getpid());
	NotifySocket s(name);
	EXPECT_TRUE(sd_notify_state("READY=1"));
	EXPECT_EQ(s.next(), "READY=1");
}

TEST(SdNotify, WithoutNotifySocketNothingIsSent)
{
	::unsetenv("NOTIFY_SOCKET");
	LogCapture log;
	EXPECT_FALSE(sd_notify_state("READY=1"));
	EXPECT_EQ(log.text(), "");
}

TEST(SdNotify, ASocketThatIsNotThereIsAWarning)
{
	const std::string path = temp_path(); // its directory exists, the socket not
	::setenv("NOTIFY_SOCKET", path.c_str(), 1);
	LogCapture log;
	EXPECT_FALSE(sd_notify_state("READY=1"));
	EXPECT_NE(log.text().find("systemd notification to " + path + ": sendto: "),
		  std::string::npos)
		<< log.text();
	::unsetenv("NOTIFY_SOCKET");
	::rmdir(path.substr(0, path.rfind('/')).c_str());
}

TEST(SdWatchdog, TheIntervalIsOursOnlyWhenWatchdogPidIsUs)
{
	::setenv("WATCHDOG_USEC", "2000000", 1);
	::unsetenv("WATCHDOG_PID");
	EXPECT_EQ(sd_watchdog_interval().count(), 2000000);
	::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
	EXPECT_EQ(sd_watchdog_interval().count(), 2000000);
	// Inherited from a parent the watchdog was meant for.
	::setenv("WATCHDOG_PID", std::to_string(::getppid()).c_str(), 1);
	EXPECT_EQ(sd_watchdog_interval().count(), 0);
	::unsetenv("WATCHDOG_PID");
	for (const char *bad : {"", "0", "-5", "12x", "abc"}) {
		::setenv("WATCHDOG_USEC", bad, 1);
		EXPECT_EQ(sd_watchdog_interval().count(), 0) << "'" << bad << "'";
	}
	::unsetenv("WATCHDOG_USEC");
	EXPECT_EQ(sd_watchdog_interval().count(), 0);
}

} // namespace
} // namespace kvmxdp
