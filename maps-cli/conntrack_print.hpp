// SPDX-License-Identifier: GPL-2.0
// `conntrack list|flush`: the CLI's side (arguments and printing); the work
// is in loader/verbs/conntrack_verbs.cpp and loader/control/conntrack.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <ostream>
#include <string>

#include "model/options.hpp"
#include "verbs/conntrack_verbs.hpp"

namespace kvmxdp {

struct ConntrackCli {
	CLI::App *cmd = nullptr;
	CLI::App *list = nullptr;
	CLI::App *flush = nullptr;
	CtFilterArgs filter;
	std::string bridge;
	bool json = false;
};

// Adds `conntrack list [--json]` and `conntrack flush` with the filter
// options (--guest, --remote, --proto, --ext-port, --state) and --bridge.
void add_conntrack_commands(CLI::App &app, ConntrackCli &c);
// Runs the parsed one; false if neither was parsed.
bool run_conntrack_commands(const GlobalOptions &g, const ConntrackCli &c, std::ostream &out);

// One line per flow (conntrack -L style).
void print_conntrack(const nlohmann::json &flows, std::ostream &out);

} // namespace kvmxdp
