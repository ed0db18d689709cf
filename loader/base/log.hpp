// SPDX-License-Identifier: GPL-2.0
// The one logger: every diagnostic of the loader, the daemon and the CLI is
// a line on stderr (stdout carries only the CLI's own output, which scripts
// parse).  Lines read "kvmxdp: warning: ..." on a terminal or in a log
// file; when stderr is the systemd journal (JOURNAL_STREAM names it, see
// systemd.exec(5)) each line also starts with its syslog priority ("<4>"),
// which journald strips and records (sd-daemon(3)), so `journalctl -p
// warning` finds the daemon's warnings.
#pragma once

#include <string>

namespace kvmxdp {

enum class LogLevel {
	Error,	 // "kvmxdp: error: ..." (the CLI's last line before exiting)
	Warning, // "kvmxdp: warning: ..."
	Notice,	 // "kvmxdp: note: ...": a decision worth knowing, not a problem
	Info,	 // "kvmxdp: ...": what the daemon does
	Debug,	 // "kvmxdp: ...", only with -v
};

void log(LogLevel level, const std::string &msg);
inline void log_error(const std::string &msg)
{
	log(LogLevel::Error, msg);
}
inline void log_warn(const std::string &msg)
{
	log(LogLevel::Warning, msg);
}
inline void log_note(const std::string &msg)
{
	log(LogLevel::Notice, msg);
}
inline void log_info(const std::string &msg)
{
	log(LogLevel::Info, msg);
}
// Printed only with -v.
inline void log_verbose(const std::string &msg)
{
	log(LogLevel::Debug, msg);
}

// -v: Debug lines and libbpf's own log (silent otherwise: a failed load is
// reported by our own error message, with a hint to -v).
void set_verbose(bool on);
bool verbose();

// Collects the lines (without journal prefixes) instead of printing them,
// for as long as it lives; for tests.
class LogCapture {
public:
	LogCapture();
	~LogCapture();
	LogCapture(const LogCapture &) = delete;
	LogCapture &operator=(const LogCapture &) = delete;
	const std::string &text() const { return text_; }

private:
	friend void log(LogLevel, const std::string &);
	std::string text_;
	LogCapture *outer_;
};

} // namespace kvmxdp
