// SPDX-License-Identifier: GPL-2.0
// The one logger: every diagnostic of the loader, the daemon and the CLI is
// a line on stderr (stdout carries only the CLI's own output, which scripts
// parse).  Lines read "kvmxdp: warning: ..." on a terminal or in a log
// file; when stderr is the systemd journal (JOURNAL_STREAM names it, see
// systemd.exec(5)) each line also starts with its syslog priority ("<4>"),
// which journald strips and records (sd-daemon(3)), so `journalctl -p
// warning` finds the daemon's warnings.
#pragma once

#include <chrono>
#include <map>
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

// From now on every line also goes to syslog(3) under `ident` (journald
// reads /dev/log), unless stderr is the journal already: for a process
// whose stderr nobody keeps.  A libvirt hook's is libvirtd's, which logs a
// successful hook's output only at its debug level: the hook's warning
// that a mapping waits, and why, would reach no one.
void log_to_syslog(const char *ident);

// -v: Debug lines and libbpf's own log (silent otherwise: a failed load is
// reported by our own error message, with a hint to -v).
void set_verbose(bool on);
bool verbose();

// The failures of recurring steps (the daemon's once-a-second work): a
// step that fails every tick must not flood the journal, and one step's
// failure must not hide another's.  A failure is logged (as a warning,
// "STEP: MESSAGE") when its message differs from the step's previous one,
// the same message again at most once per `repeat` (with how often it
// recurred), and the first success after a failure once.
class StepLog {
public:
	using Clock = std::chrono::steady_clock;
	explicit StepLog(Clock::duration repeat = std::chrono::minutes(10))
		: repeat_(repeat)
	{
	}
	void failed(const std::string &step, const std::string &msg,
		    Clock::time_point now = Clock::now());
	void ok(const std::string &step);

private:
	struct Failing {
		std::string msg;
		Clock::time_point logged;
		unsigned long since_logged = 0; // failures not logged since
	};
	std::map<std::string, Failing> failing_;
	Clock::duration repeat_;
};

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
