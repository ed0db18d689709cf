// SPDX-License-Identifier: GPL-2.0
// The one owner of a BPF ring buffer's consumer side (libbpf's
// ring_buffer): created over a BPF_MAP_TYPE_RINGBUF fd, polled through
// fd(), drained without waiting.
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <string>

struct ring_buffer;

namespace kvmxdp {

class RingReader {
public:
	// One call per record, with the record's bytes (valid during the call).
	using Handler = std::function<void(const void *data, size_t size)>;

	RingReader(int map_fd, const std::string &what, Handler handler);
	~RingReader();
	RingReader(const RingReader &) = delete;
	RingReader &operator=(const RingReader &) = delete;

	// Readable (POLLIN) when records are waiting.
	int fd() const;
	// Hands every waiting record to the handler, without waiting; returns
	// how many.  A handler that throws leaves the rest for the next call.
	size_t consume();

private:
	static int on_record(void *self, void *data, size_t size);
	ring_buffer *rb_ = nullptr;
	std::string what_;
	Handler handler_;
	std::exception_ptr failed_;
};

} // namespace kvmxdp
