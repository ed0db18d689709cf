// SPDX-License-Identifier: GPL-2.0
// The one error type of the loader and CLI.  Every failure that reaches the
// user names the operation, the object it was applied to and, for system
// errors, the errno text, so one line on stderr is enough to act on.
#pragma once

#include <stdexcept>
#include <string>

namespace kvmxdp {

class Error : public std::runtime_error {
public:
	explicit Error(const std::string &msg)
		: std::runtime_error(msg)
	{
	}
	// "<op> <object>: <strerror(err)>"; err is a positive errno value.
	Error(const std::string &op, const std::string &object, int err);

	int err() const { return err_; }

private:
	int err_ = 0;
};

// A failure no retry can fix until someone changes the setup: the config
// file is invalid or has no instance to attach, or the process lacks the
// capabilities.  The CLI exits with 78 (EX_CONFIG of sysexits.h) for it,
// which the systemd unit lists in RestartPreventExitStatus=, so that such
// an error stops the service instead of restarting it every few seconds.
class ConfigError : public Error {
public:
	using Error::Error;
};

// kvmxdp refuses to use a pin or a pin directory: another user's, a
// symbolic link, another build's layout.  Always the command's error, where
// a pin that is merely missing or unreadable may be a warning (status).
class PinRefused : public Error {
public:
	using Error::Error;
};

// The single boundary where libbpf's "-errno" convention becomes an
// exception: returns ret when it is >= 0.
int check_libbpf(int ret, const std::string &op, const std::string &object);

// For calls that report through errno (POSIX and libbpf's pointer returns).
[[noreturn]] void throw_errno(const std::string &op, const std::string &object);

} // namespace kvmxdp
