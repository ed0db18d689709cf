// SPDX-License-Identifier: GPL-2.0
// `kvmxdp top`: a live per-guest view (control/guest_stats.hpp) of an
// attached instance's pinned maps, rates over each interval, refreshed like
// top(1) with plain ANSI (usable over ssh); --json prints one sample.
#pragma once

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>

#include "model/options.hpp"

namespace kvmxdp {

struct TopOptions {
	std::string bridge; // "": the only instance
	bool json = false;
	double interval = 1.0; // seconds, kTopMinInterval..kTopMaxInterval
};

constexpr double kTopMinInterval = 0.1;
constexpr double kTopMaxInterval = 3600;

// One sample: the counters now and the rates over interval seconds.
nlohmann::json top_sample(const GlobalOptions &g, const TopOptions &o);
// The screen of one sample for a terminal of `rows` lines (0: no limit).
std::string top_screen(const nlohmann::json &sample, unsigned rows);
// Until q (or SIGINT/SIGTERM); returns the exit code.
int run_top(const GlobalOptions &g, const TopOptions &o, std::ostream &out);

} // namespace kvmxdp
