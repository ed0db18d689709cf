// SPDX-License-Identifier: GPL-2.0
#include "base/rollback.hpp"

#include <exception>

#include "base/log.hpp"

namespace kvmxdp {

Rollback::~Rollback()
{
	for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
		try {
			it->second();
		} catch (const std::exception &e) {
			log_warn("rollback of " + it->first + " failed: " + e.what());
		}
	}
}

void Rollback::add(std::string what, std::function<void()> undo)
{
	steps_.emplace_back(std::move(what), std::move(undo));
}

} // namespace kvmxdp
