// SPDX-License-Identifier: GPL-2.0
#include "kernel/ringbuf.hpp"

#include <bpf/libbpf.h>

#include <cerrno>
#include <utility>

#include "base/error.hpp"

namespace kvmxdp {

RingReader::RingReader(int map_fd, const std::string &what, Handler handler)
	: what_(what)
	, handler_(std::move(handler))
{
	rb_ = ring_buffer__new(map_fd, &RingReader::on_record, this, nullptr);
	if (!rb_)
		throw_errno("open ring buffer", what_);
}

RingReader::~RingReader()
{
	ring_buffer__free(rb_);
}

int RingReader::fd() const
{
	return ring_buffer__epoll_fd(rb_);
}

// An exception must not unwind through libbpf's C frames: it stops the
// drain here and is thrown again once libbpf has returned.
int RingReader::on_record(void *self, void *data, size_t size)
{
	auto *r = static_cast<RingReader *>(self);
	try {
		r->handler_(data, size);
	} catch (...) {
		r->failed_ = std::current_exception();
		return -ECANCELED;
	}
	return 0;
}

size_t RingReader::consume()
{
	int n = ring_buffer__consume(rb_);
	if (failed_)
		std::rethrow_exception(std::exchange(failed_, nullptr));
	return static_cast<size_t>(check_libbpf(n, "read ring buffer", what_));
}

} // namespace kvmxdp
