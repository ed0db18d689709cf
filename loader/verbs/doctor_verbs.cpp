// SPDX-License-Identifier: GPL-2.0
#include "verbs/doctor_verbs.hpp"

#include <linux/capability.h>

#include <algorithm>

#include "base/caps.hpp"
#include "control/doctor.hpp"
#include "model/doctor.hpp"

namespace kvmxdp {

int doctor(const GlobalOptions &g, const DoctorOptions &o, std::ostream &out)
{
	// Without them the pins, the firewall and the bridge's ARP are hidden
	// and every kernel probe fails alike: a report then would be wrong,
	// not partial (the kernel check would say the datapath cannot load).
	require_caps("doctor", {CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW});
	nlohmann::json reports = nlohmann::json::array();
	int code = 0;
	for (const std::string &br : doctor_bridges(g, o.bridge)) {
		const DoctorFacts f =
			gather_doctor_facts(g, br, static_cast<int>(o.arp_wait * 1000));
		const auto findings = run_doctor_checks(f);
		reports.push_back(doctor_json(br, findings));
		// 4 (an error) outranks 3 (warnings only).
		code = std::max(code, doctor_exit_code(findings));
	}
	if (o.json) {
		// Device names and firewall rules are the kernel's bytes: what is
		// not UTF-8 is shown as U+FFFD, as status does.
		nlohmann::json doc = {{"reports", reports}, {"exit_code", code}};
		out << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
		    << std::endl;
	} else {
		for (const auto &r : reports)
			out << format_doctor(r);
		out << std::flush;
	}
	return code;
}

} // namespace kvmxdp
