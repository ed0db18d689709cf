// SPDX-License-Identifier: GPL-2.0
// Human-readable rendering of the status JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>

namespace kvmxdp {

void print_status(const nlohmann::json &status, std::ostream &out);
// `map list`: one line per mapping.
void print_mappings(const nlohmann::json &list, std::ostream &out);

} // namespace kvmxdp
