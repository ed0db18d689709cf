// SPDX-License-Identifier: GPL-2.0
#include "base/log.hpp"

#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvmxdp {

namespace {

bool verbose_ = false;
LogCapture *capture_ = nullptr;
bool syslog_ = false;

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

struct LevelText {
	const char *prefix;
	int priority; // syslog(3): LOG_ERR 3 .. LOG_DEBUG 7
};

// In LogLevel's order.
constexpr LevelText kLevels[] = {
	{"kvmxdp: error: ", 3}, {"kvmxdp: warning: ", 4}, {"kvmxdp: note: ", 5},
	{"kvmxdp: ", 6},	{"kvmxdp: ", 7},
};

const LevelText &text_of(LogLevel level)
{
	return kLevels[static_cast<int>(level)];
}

// libbpf's messages (the verifier log among them) go through log() like
// ours, so that under systemd each line carries its priority and tests can
// capture them.  libbpf may end a message without a newline and finish the
// line in the next call: the tail waits for it.
int libbpf_print(enum libbpf_print_level, const char *fmt, va_list args)
{
	if (!verbose_)
		return 0;
	static std::string pending;
	va_list copy;
	va_copy(copy, args);
	int n = std::vsnprintf(nullptr, 0, fmt, copy);
	va_end(copy);
	if (n <= 0)
		return n;
	std::string text(static_cast<size_t>(n) + 1, '\0');
	std::vsnprintf(text.data(), text.size(), fmt, args);
	text.resize(static_cast<size_t>(n));
	pending += text;
	size_t start = 0;
	for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
		log(LogLevel::Debug, pending.substr(start, nl - start));
	pending.erase(0, start);
	return n;
}

} // namespace

void log(LogLevel level, const std::string &msg)
{
	if (level == LogLevel::Debug && !verbose_)
		return;
	const LevelText &t = text_of(level);
	if (capture_) {
		capture_->text_ += t.prefix + msg + "\n";
		return;
	}
	if (stderr_is_journal()) {
		std::fprintf(stderr, "<%d>%s%s\n", t.priority, t.prefix, msg.c_str());
		return;
	}
	std::fprintf(stderr, "%s%s\n", t.prefix, msg.c_str());
	if (syslog_)
		::syslog(t.priority, "%s%s", t.prefix, msg.c_str());
}

void log_to_syslog(const char *ident)
{
	::openlog(ident, LOG_PID, LOG_DAEMON);
	syslog_ = true;
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

void StepLog::failed(const std::string &step, const std::string &msg, Clock::time_point now)
{
	auto it = failing_.find(step);
	if (it == failing_.end() || it->second.msg != msg) {
		failing_[step] = {msg, now, 0};
		log_warn(step + ": " + msg);
		return;
	}
	Failing &f = it->second;
	f.since_logged++;
	if (now - f.logged < repeat_)
		return;
	log_warn(step + ": " + msg + " (still failing: " + std::to_string(f.since_logged) +
		 " more time(s) since it was last logged)");
	f.logged = now;
	f.since_logged = 0;
}

void StepLog::ok(const std::string &step)
{
	if (failing_.erase(step))
		log_info(step + ": recovered");
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
