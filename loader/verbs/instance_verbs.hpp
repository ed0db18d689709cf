// SPDX-License-Identifier: GPL-2.0
// The verbs: attach (then run the daemon), detach, status.  The CLI front
// end (maps-cli/) only parses arguments and prints.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace kvmxdp {

struct GlobalOptions {
	std::string bpffs = "/sys/fs/bpf";
	std::string config = "/etc/kvmxdp/kvmxdp.json";
	std::string run_dir = "/run/kvmxdp";
	std::string sysctl_root = "/proc/sys";
	bool verbose = false;
};

struct AttachOptions {
	std::string bridge;
	std::string uplink;
	std::optional<std::string> subnet;
	std::optional<std::string> nat_ports;
	bool eif = false;
	std::optional<uint32_t> ct_size;
	std::optional<uint32_t> bind_size;
	// TCP MSS clamp (kvx_cfg.clamp_mss); unset: the config's, else off.
	std::optional<uint16_t> clamp_mss;
	// Per-guest flow quota (kvx_cfg.flow_quota; 0: off); unset: the
	// config's, else kDefaultQuotaShare of the conntrack table.
	std::optional<uint32_t> flow_quota;
	// Flow timeouts "NAME=SECONDS,..." (gc.hpp parse_timeouts); unset:
	// the config's, else netfilter's defaults.  For tests and experts.
	std::optional<std::string> timeouts;
	// Hooks per device: "auto" (each device's best, mode.hpp), "tc" or
	// "xdp"; unset: the config's, else auto.
	std::optional<std::string> mode;
};

// attach --clamp-mss: 0 (off) or kMinClampMss..kMaxClampMss.
constexpr uint32_t kMinClampMss = 536;	 // RFC 879's default MSS
constexpr uint32_t kMaxClampMss = 65495; // 65535 - 40
uint16_t parse_clamp_mss(const std::string &text);

// Undo actions registered while attaching; run in reverse order unless
// commit() was called, so a failure at any step leaves nothing half-done.
class Rollback {
public:
	Rollback() = default;
	Rollback(const Rollback &) = delete;
	Rollback &operator=(const Rollback &) = delete;
	~Rollback();
	void add(std::string what, std::function<void()> undo);
	void commit() { steps_.clear(); }

private:
	std::vector<std::pair<std::string, std::function<void()>>> steps_;
};

// Validates, attaches (or resumes), prints the "attached" line on out and
// runs the daemon until SIGINT/SIGTERM.  Returns the exit code.
int attach_and_run(const GlobalOptions &g, const AttachOptions &a, std::ostream &out);
void detach(const GlobalOptions &g, const std::string &bridge, std::ostream &out);
// The CONTRACT.md status shape; bridge empty = every instance.
nlohmann::json status_json(const GlobalOptions &g, const std::string &bridge);

// Trims trailing slashes so that "/x/" and "/x" name one instance.
std::string normalize_dir(const std::string &dir);

} // namespace kvmxdp
