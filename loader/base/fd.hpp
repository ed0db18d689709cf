// SPDX-License-Identifier: GPL-2.0
// An owning file descriptor: map and program fds, lock files.  Move-only;
// closing on destruction is what makes early returns and exceptions safe.
#pragma once

#include <unistd.h>

#include <utility>

namespace kvmxdp {

class Fd {
public:
	Fd() = default;
	explicit Fd(int fd)
		: fd_(fd)
	{
	}
	Fd(Fd &&o) noexcept
		: fd_(std::exchange(o.fd_, -1))
	{
	}
	Fd &operator=(Fd &&o) noexcept
	{
		if (this != &o)
			reset(std::exchange(o.fd_, -1));
		return *this;
	}
	Fd(const Fd &) = delete;
	Fd &operator=(const Fd &) = delete;
	~Fd() { reset(); }

	int get() const { return fd_; }
	explicit operator bool() const { return fd_ >= 0; }
	int release() { return std::exchange(fd_, -1); }
	void reset(int fd = -1)
	{
		if (fd_ >= 0)
			::close(fd_);
		fd_ = fd;
	}

private:
	int fd_ = -1;
};

} // namespace kvmxdp
