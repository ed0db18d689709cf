// SPDX-License-Identifier: GPL-2.0
// Static mappings in a running instance: installing the configured mappings
// into the pinned maps (kvx_bind pairs, kvx_extaddr), the uplink's network
// identity, the `--add-address` addresses on the uplink.  The same
// reconciliation (apply_mappings) runs in `map add/del`, in attach (restore
// from the config) and in the daemon (uplink address or network changes),
// so there is one definition of "installed".
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/mapping.hpp"

namespace kvmxdp {

class NlSocket;

// The BPF maps a mapping lives in.
struct MapFds {
	int bind = -1;
	int extaddr = -1;
	int ct = -1;
};

struct ApplyResult {
	size_t bind_added = 0;
	size_t bind_deleted = 0;
	size_t ct_deleted = 0;
	std::vector<std::string> errors; // conflicts left unresolved
};

// Makes kvx_bind's static entries and kvx_extaddr match `mappings`
// (host-order uplink_addr: where `uplink` mappings point; cur: the uplink's
// network now).  Active mappings get their pairs (IN halves first,
// BPF_NOEXIST; OUT halves second, BPF_ANY); stale static pairs go (OUT
// first) with the flows bound through them; suspended mappings have no
// pairs and their address is flagged KVX_EXT_F_SUSPENDED.  With
// strict_last, a conflict of the last mapping (the one `map add` adds)
// throws after undoing its IN halves; other conflicts are reported in
// errors.
ApplyResult apply_mappings(const MapFds &fds, const std::vector<StaticMapping> &mappings,
			   uint32_t uplink_addr, const std::optional<NetId> &cur,
			   bool strict_last = false);

// The uplink's network now: the network of its primary address, the
// default gateway through it (the main table's default route via the
// device, lowest metric) and the gateway's MAC from the neighbour table;
// unset without an address.  resolve: a gateway the neighbour table does
// not hold is asked with one ARP probe (300 ms at most).
std::optional<NetId> network_of_link(NlSocket &nl, int ifindex, bool resolve = false);

// The "mappings" member of one instance's status (and of `map list`).
nlohmann::json mappings_json(const Instance &inst, NlSocket &nl);

// Removes the addresses `--add-address` mappings added to the uplink
// (detach).  Errors are warnings: the device may be gone.
void remove_added_addresses(const Instance &inst);
// Puts the addresses of active `--add-address` mappings on the uplink and
// takes those of suspended ones off (attach after a detach or a reboot; the
// daemon when the uplink's network changes): an address of the mapping's
// network must not stay on the uplink on another network.  Returns the
// addresses it added, for a rollback.  Errors are warnings.
struct AddedAddress {
	uint32_t addr; // host order
	uint8_t prefix;
};
// `cur` is the uplink's network as the caller decided it (the daemon keeps
// the last one through a brief loss of the address).
std::vector<AddedAddress> sync_added_addresses(const std::vector<StaticMapping> &mappings,
					       const std::string &uplink,
					       const std::optional<NetId> &cur);
// Takes one address off the uplink (rollback of the above).
void remove_uplink_address(const std::string &uplink, const AddedAddress &a);

} // namespace kvmxdp
