// SPDX-License-Identifier: GPL-2.0
// `kvmxdp conntrack list|flush` on an attached instance's pinned maps
// (found through the config, else through --bpffs; no daemon needed).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "control/conntrack.hpp"
#include "model/options.hpp"

namespace kvmxdp {

// bridge "" = the only instance.  The list is an array of ct_flow_json
// objects, each with "bridge" added.
nlohmann::json conntrack_list(const GlobalOptions &g, const std::string &bridge, const CtFilter &f);
CtFlushResult conntrack_flush(const GlobalOptions &g, const std::string &bridge, const CtFilter &f,
			      std::string *bridge_out = nullptr);

} // namespace kvmxdp
