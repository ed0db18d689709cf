// SPDX-License-Identifier: GPL-2.0
// `kvmxdp import [FILE|-] [--apply] [--json]`: an iptables recipe
// (model/iptables_import.hpp) printed as kvmxdp commands, and with --apply
// its mappings made through `map add`'s own code, all or none.
#pragma once

#include <ostream>
#include <string>

#include "model/options.hpp"

namespace kvmxdp {

struct ImportOptions {
	std::string file = "-"; // "-": standard input
	std::string bridge;	// the instance (--apply), the bridge the rules do not name
	bool apply = false;
	bool json = false;
};

void import_recipe(const GlobalOptions &g, const ImportOptions &o, std::ostream &out);

} // namespace kvmxdp
