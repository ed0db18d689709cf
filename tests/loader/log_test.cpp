// SPDX-License-Identifier: GPL-2.0
// StepLog: how the daemon reports a step that fails at every tick.
#include <gtest/gtest.h>

#include "base/log.hpp"

using namespace kvmxdp;
using namespace std::chrono_literals;

TEST(StepLog, OneLinePerDistinctFailureNotOnePerTick)
{
	LogCapture cap;
	StepLog steps(10min);
	StepLog::Clock::time_point t0{};
	// An hour of once-a-second failures with one message: one line.
	for (int s = 0; s < 599; s++)
		steps.failed("mappings", "config /c.json: invalid JSON",
			     t0 + std::chrono::seconds(s));
	EXPECT_EQ(cap.text(), "kvmxdp: warning: mappings: config /c.json: invalid JSON\n");
	// Another step failing meanwhile has its own line.
	steps.failed("xdp", "dump links: No buffer space available", t0 + 1s);
	// A different message of the same step is logged at once.
	steps.failed("mappings", "config /c.json: instances[0].ct_size: ...", t0 + 600s);
	// The same one again after the repeat interval, with its count.
	for (int s = 601; s <= 1200; s++)
		steps.failed("mappings", "config /c.json: instances[0].ct_size: ...",
			     t0 + std::chrono::seconds(s));
	// Recovery: one line; a success without a failure before: none.
	steps.ok("mappings");
	steps.ok("mappings");
	steps.ok("gc");
	EXPECT_EQ(cap.text(),
		  "kvmxdp: warning: mappings: config /c.json: invalid JSON\n"
		  "kvmxdp: warning: xdp: dump links: No buffer space available\n"
		  "kvmxdp: warning: mappings: config /c.json: instances[0].ct_size: ...\n"
		  "kvmxdp: warning: mappings: config /c.json: instances[0].ct_size: ... (still "
		  "failing: 600 more time(s) since it was last logged)\n"
		  "kvmxdp: mappings: recovered\n");
	// After a recovery the same failure is news again.
	steps.failed("mappings", "config /c.json: invalid JSON", t0 + 1300s);
	EXPECT_NE(cap.text().find("recovered\nkvmxdp: warning: mappings: config /c.json: invalid "
				  "JSON\n"),
		  std::string::npos);
}
