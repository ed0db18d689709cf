// SPDX-License-Identifier: GPL-2.0
#include "base/error.hpp"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace kvmxdp {

namespace {

bool verbose_ = false;

int libbpf_print(enum libbpf_print_level, const char *fmt, va_list args)
{
	// Even libbpf's warnings are noise for a CLI user unless asked for: a
	// failed load is reported by our own error message, with a hint to -v.
	if (!verbose_)
		return 0;
	return vfprintf(stderr, fmt, args);
}

} // namespace

Error::Error(const std::string &op, const std::string &object, int err)
	: std::runtime_error(op + (object.empty() ? "" : " " + object) + ": " + std::strerror(err))
	, err_(err)
{
}

int check_libbpf(int ret, const std::string &op, const std::string &object)
{
	if (ret < 0)
		throw Error(op, object, -ret);
	return ret;
}

void throw_errno(const std::string &op, const std::string &object)
{
	throw Error(op, object, errno);
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

void log_verbose(const std::string &line)
{
	if (verbose_)
		std::fprintf(stderr, "kvmxdp: %s\n", line.c_str());
}

} // namespace kvmxdp
