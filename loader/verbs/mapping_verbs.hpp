// SPDX-License-Identifier: GPL-2.0
// `kvmxdp map add|del|list`: static mappings in the config and, when the
// instance runs, in its pinned maps (control/mapping_sync.hpp), with the
// external address claimed on the uplink's network (RFC 5227 probe and
// announcement, or `--add-address`).
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "model/options.hpp"

namespace kvmxdp {

struct MappingOptions {
	std::string bridge; // empty: the only instance
	std::string ext, guest, proto;
	bool force = false;
	bool add_address = false;
	// Recorded with the mapping (StaticMapping::vm, libvirt_network);
	// a GUEST of "vm:NAME[:PORT]" sets vm.
	std::string vm;
	std::string libvirt_network;
	std::string lease_mac;	     // StaticMapping::lease_mac
	bool from_metadata = false;  // StaticMapping::from_metadata (the hooks)
	bool metadata_force = false; // StaticMapping::metadata_force (the hooks)
	// map del: only the active record of exactly this owner (the hooks
	// deleting what they made; model mapping_to_delete).
	bool exact_owner = false;
};

// GUEST "vm:NAME[:PORT]": the libvirt domain's address
// (verbs/libvirt_verbs.hpp).
void mapping_add(const GlobalOptions &g, MappingOptions o, std::ostream &out);
void mapping_del(const GlobalOptions &g, MappingOptions o, std::ostream &out);
// The `map add ... vm:NAME` mappings (not from_metadata) of `vm` on
// `bridge` moved to the guest address the VM has now (its hook's
// "started"; 0: not known yet, only lease_mac is recorded, which the
// daemon follows), checked and applied as `map add` does.  Returns how
// many moved; throws Error (nothing changed).
// The `map add ... vm:NAME` mappings of a domain that stopped: pending
// (model vm_stopped_reason) and out of the datapath until it starts again,
// in every instance.  Returns how many.
size_t mapping_vm_stopped(const GlobalOptions &g, const std::string &vm, std::ostream &out);
size_t mapping_retarget_vm(const GlobalOptions &g, const std::string &vm, const std::string &bridge,
			   uint32_t addr, const std::string &lease_mac, std::ostream &out);
// {"mappings":[{"bridge","ext","guest","proto","ext_addr","state",...}]}
nlohmann::json mapping_list_json(const GlobalOptions &g, const std::string &bridge);
// `map allow [SPEC...]`: what libvirt metadata may claim
// (model/metadata_allow.hpp), saved in the config.  No SPEC: nothing
// changes; "default" alone: back to the default; "none" alone: nothing.
// Returns {"metadata_allow": null (the default) or [SPEC...]}.  A bad SPEC
// throws Error naming it (nothing changed).
nlohmann::json mapping_allow(const GlobalOptions &g, const std::vector<std::string> &specs);
void print_mapping_allow(const nlohmann::json &j, std::ostream &out);

} // namespace kvmxdp
