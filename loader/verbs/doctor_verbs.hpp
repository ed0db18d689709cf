// SPDX-License-Identifier: GPL-2.0
// `kvmxdp doctor [--bridge BR] [--json] [--arp-wait S]`: the checks of
// model/doctor.hpp on the facts control/doctor.hpp gathers, printed as
// lines or JSON; the exit code says how bad it is.
#pragma once

#include <ostream>
#include <string>

#include "model/options.hpp"

namespace kvmxdp {

struct DoctorOptions {
	std::string bridge; // "": every instance of the config
	bool json = false;
	unsigned arp_wait = 3; // seconds of listening for the guests' ARP requests
};

// Prints the reports and returns the exit code (model/doctor.hpp
// doctor_exit_code: the worst of the bridges').
int doctor(const GlobalOptions &g, const DoctorOptions &o, std::ostream &out);

} // namespace kvmxdp
