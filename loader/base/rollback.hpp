// SPDX-License-Identifier: GPL-2.0
// Undo actions registered while making something of several steps (attach,
// `map add`): run in reverse order unless commit() was called, so a failure
// at any step leaves nothing half-done.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace kvmxdp {

class Rollback {
public:
	Rollback() = default;
	Rollback(const Rollback &) = delete;
	Rollback &operator=(const Rollback &) = delete;
	// A failing undo is a warning; the others still run.
	~Rollback();
	void add(std::string what, std::function<void()> undo);
	void commit() { steps_.clear(); }

private:
	std::vector<std::pair<std::string, std::function<void()>>> steps_;
};

} // namespace kvmxdp
