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
// `kvmxdp reload`: the bridge's daemon re-reads the config and the leases
// (SIGHUP); returns once it is done, as the unit's ExecReload= (so that
// `systemctl reload` returns with the config applied).  Throws Error when
// no daemon runs, or it exits or does not finish.
void reload(const GlobalOptions &g, const std::string &bridge, std::ostream &out);
// `kvmxdp detach`: the instance's record goes, but for its uplink and
// mappings, kept (as detached) for the next `attach --bridge BR` when it
// has mappings, or always with `keep` (the package's prerm: the enabled
// unit's `attach --bridge %I` of a reinstall takes its uplink from it).
void detach(const GlobalOptions &g, const std::string &bridge, std::ostream &out,
	    bool keep = false);

} // namespace kvmxdp
