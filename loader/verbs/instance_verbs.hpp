// SPDX-License-Identifier: GPL-2.0
// `kvmxdp attach` (then the daemon) and `kvmxdp detach`.
#pragma once

#include <ostream>
#include <string>

#include "model/options.hpp"

namespace kvmxdp {

// Validates, attaches (or resumes), prints the "attached" line on out and
// runs the daemon until SIGINT/SIGTERM.  Returns the exit code.
int attach_and_run(const GlobalOptions &g, const AttachOptions &a, std::ostream &out);
void detach(const GlobalOptions &g, const std::string &bridge, std::ostream &out);

} // namespace kvmxdp
