// SPDX-License-Identifier: GPL-2.0
#include "base/log.hpp"

#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace kvmxdp {

namespace {

bool verbose_ = false;
LogCapture *capture_ = nullptr;

// systemd sets JOURNAL_STREAM=<dev>:<ino> for a service whose stderr is
// the journal; it is inherited by children whose stderr went elsewhere, so
// the pair must match stderr itself.
bool stderr_is_journal()
{
	static const bool yes = [] {
		const char *env = std::getenv("JOURNAL_STREAM");
		unsigned long long dev = 0, ino = 0;
		if (!env || std::sscanf(env, "%llu:%llu", &dev, &ino) != 2)
			return false;
		struct stat st {};
		return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
	}();
	return yes;
}

const char *prefix(LogLevel level)
{
	switch (level) {
	case LogLevel::Error:
		return "kvmxdp: error: ";
	case LogLevel::Warning:
		return "kvmxdp: warning: ";
	case LogLevel::Notice:
		return "kvmxdp: note: ";
	case LogLevel::Info:
	case LogLevel::Debug:
		break;
	}
	return "kvmxdp: ";
}

// syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG.
int priority(LogLevel level)
{
	switch (level) {
	case LogLevel::Error:
		return 3;
	case LogLevel::Warning:
		return 4;
	case LogLevel::Notice:
		return 5;
	case LogLevel::Info:
		return 6;
	case LogLevel::Debug:
		break;
	}
	return 7;
}

int libbpf_print(enum libbpf_print_level, const char *fmt, va_list args)
{
	if (!verbose_)
		return 0;
	return std::vfprintf(stderr, fmt, args);
}

} // namespace

void log(LogLevel level, const std::string &msg)
{
	if (level == LogLevel::Debug && !verbose_)
		return;
	if (capture_) {
		capture_->text_ += prefix(level) + msg + "\n";
		return;
	}
	if (stderr_is_journal())
		std::fprintf(stderr, "<%d>%s%s\n", priority(level), prefix(level), msg.c_str());
	else
		std::fprintf(stderr, "%s%s\n", prefix(level), msg.c_str());
}

void set_verbose(bool on)
{
	verbose_ = on;
	libbpf_set_print(libbpf_print);
}

bool verbose()
{
	return verbose_;
}

LogCapture::LogCapture()
	: outer_(capture_)
{
	capture_ = this;
}

LogCapture::~LogCapture()
{
	capture_ = outer_;
}

} // namespace kvmxdp
