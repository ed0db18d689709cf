// SPDX-License-Identifier: GPL-2.0
#include "model/metadata_allow.hpp"

#include "base/error.hpp"
#include "base/text.hpp"

namespace kvmxdp {

bool MetadataAllow::covers(const Mapping &m) const
{
	if (ep.v6 != m.v6 || ep.uplink != m.ext_uplink)
		return false;
	if (!ep.uplink && (m.v6 ? ep.addr6 != m.ext_addr6 : ep.addr != m.ext_addr))
		return false;
	if (!ep.ports)
		return true;
	return !m.one_to_one() && ep.ports->lo <= m.ext_ports.lo && m.ext_ports.hi <= ep.ports->hi;
}

std::vector<MetadataAllow> parse_metadata_allow(const std::vector<std::string> &specs)
{
	std::vector<MetadataAllow> out;
	for (const auto &s : specs) {
		MetadataAllow a;
		a.text = s;
		try {
			a.ep = parse_mapping_endpoint(s);
		} catch (const Error &e) {
			throw Error("allow-list entry '" + printable(s) + "': " + e.what());
		}
		out.push_back(a);
	}
	return out;
}

std::string metadata_claim_refusal(const Mapping &m, bool force,
				   const std::optional<std::vector<MetadataAllow>> &allow,
				   std::optional<uint16_t> listened, bool ephemeral)
{
	const std::string what = "mapping " + m.str() + ": ";
	bool covered = false;
	if (allow)
		for (const auto &a : *allow)
			covered = covered || a.covers(m);
	if (allow && !covered) {
		std::string list;
		for (const auto &a : *allow)
			list += (list.empty() ? "" : " ") + a.text;
		return what + "libvirt metadata may claim only what 'kvmxdp map allow' lists (" +
		       (list.empty() ? "nothing" : list) + ")";
	}
	if (!listened)
		return "";
	const std::string port = m.proto_str() + " port " + std::to_string(*listened);
	if (ephemeral && !(allow && force))
		return what + "a host socket is bound to " + port +
		       ", a port of net.ipv4.ip_local_port_range (a client's source port, as "
		       "libvirt's dnsmasq uses for guests' DNS queries): made once it is gone";
	if (!allow)
		return what + "a host service listens on " + port +
		       ": libvirt metadata may not take it (the administrator can allow it with "
		       "'kvmxdp map allow', and the metadata then needs force='yes')";
	if (!force)
		return what + "a host service listens on " + port +
		       ": allowed by 'kvmxdp map allow', but the metadata has no force='yes'";
	return "";
}

} // namespace kvmxdp
