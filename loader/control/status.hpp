// SPDX-License-Identifier: GPL-2.0
// `status`: the state of every instance as JSON (docs/status-json.md); the
// CLI renders the same JSON as a table, so both views always agree.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/doctor.hpp"
#include "model/options.hpp"

namespace kvmxdp {

struct DirFd;

// bridge empty = every instance.
nlohmann::json status_json(const GlobalOptions &g, const std::string &bridge);

// A table kTableWarnPercent full (model/doctor.hpp) gets a status warning.

// The tool is in /usr/sbin or /sbin (where run_firewall_tool looks).
bool firewall_tool_installed(const std::string &tool);
// The output of a firewall tool ("iptables-save", "nft") run with args
// (args[0] is replaced by the tool's path: only /usr/sbin and /sbin are
// tried, with a fixed environment); a tool that is missing or fails is
// named in `unread` instead.
std::optional<std::string> run_firewall_tool(const std::string &tool, std::vector<std::string> args,
					     std::vector<std::string> &unread);

// For `status`, on an instance's JSON that already holds "conntrack",
// "bindings" and "counters": adds "maps" ({name: {entries, max_entries,
// memory_bytes, memory_source: "kernel"|"estimate"}} for every map pinned in
// pins, none when null), "memory_bytes" (their sum) and "memory_bytes" to "conntrack"
// and "bindings"; appends warnings when conntrack or bindings is at least
// kTableWarnPercent full, and when DROP_TABLE_FULL grew since the value
// recorded in state_file by the previous status ("" = no record: any
// nonzero count warns).  state_file is written only if its directory exists.
void status_add_usage(nlohmann::json &inst, const DirFd *pins, const std::string &state_file,
		      std::vector<std::string> &warnings);

} // namespace kvmxdp
