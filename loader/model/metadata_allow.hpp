// SPDX-License-Identifier: GPL-2.0
// What a libvirt domain's or network's metadata may claim on the host's
// side (`kvmxdp map allow`).  Metadata is written by whoever may edit a
// domain (virsh edit, virt-manager, a management tool); the external
// addresses and ports are the host's.  A forward on a port a host service
// listens on takes that service's inbound traffic from the LAN (port='22'
// takes the host's sshd), so the hooks refuse it unless the metadata says
// force='yes' and the administrator's allow-list names that port.
//
// The allow-list: unset (the default), metadata may claim any external
// address and any port no host service listens on; set, only what an
// entry covers, and a port a host service listens on only with force='yes'
// too.  An entry is spelt as map add's EXT: "uplink:2000-2999",
// "192.168.1.50:80", "[uplink]:443"; an address without ports
// ("192.168.1.101", "uplink") covers all its ports and a 1:1 mapping of it.
// An empty list: metadata may claim nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/mapping.hpp"

namespace kvmxdp {

struct MetadataAllow {
	std::string text; // as given (the config stores it)
	MappingEndpoint ep;
	// m's external side is within this entry: same family, the same
	// address (or both the uplink's), and (with ports) a forward whose
	// external ports all lie in them.
	bool covers(const Mapping &m) const;
};

// Each entry parsed; throws Error naming the bad one.
std::vector<MetadataAllow> parse_metadata_allow(const std::vector<std::string> &specs);

// Why the hooks may not make metadata mapping `m`; "" when they may.
// allow: the administrator's list (nullopt: the default); listened: the
// lowest external port of m a host service listens on (nullopt: none);
// force: the metadata's force='yes'.  ephemeral: `listened` is only a UDP
// socket on a port of net.ipv4.ip_local_port_range, which may be a
// client's source port (libvirt's dnsmasq forwards guests' DNS queries
// from such sockets, as a system user): said so, for a mapping that waits
// for it to go rather than a refused start.
std::string metadata_claim_refusal(const Mapping &m, bool force,
				   const std::optional<std::vector<MetadataAllow>> &allow,
				   std::optional<uint16_t> listened, bool ephemeral = false);

} // namespace kvmxdp
