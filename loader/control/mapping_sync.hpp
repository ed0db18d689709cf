// SPDX-License-Identifier: GPL-2.0
// Static mappings in a running instance: installing the configured mappings
// into the pinned maps (kvx_bind and kvx_bind6 pairs, kvx_extaddr), the uplink's network
// identity, the `--add-address` addresses on the uplink.  The same
// reconciliation (apply_mappings) runs in `map add/del`, in attach (restore
// from the config) and in the daemon (uplink address or network changes),
// so there is one definition of "installed".
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/netaddr6.hpp"
#include "model/config.hpp"
#include "model/dad.hpp"
#include "model/mapping.hpp"
#include "model/metadata_allow.hpp"
#include "kernel/sockets.hpp"

namespace kvmxdp {

class NlSocket;

// The BPF maps a mapping lives in.
struct MapFds {
	int bind = -1;
	int extaddr = -1;
	int ct = -1;
	// IPv6 mappings (kvx_bind6, kvx_ct6; the NAT66 address from kvx_cfg6):
	// -1 leaves them alone.
	int bind6 = -1;
	int ct6 = -1;
	int cfg6 = -1;
	// The IPv6 mapped addresses' announcement (kvx_extaddr6): -1 (pins of
	// a kvmxdp before it) treats every mapping as announced.
	int extaddr6 = -1;
};

struct ApplyResult {
	size_t bind_added = 0;
	size_t bind_deleted = 0;
	size_t ct_deleted = 0;
	std::vector<std::string> errors; // conflicts left unresolved
	// Addresses (host order) whose mappings are on their network but
	// kept suspended: KVX_EXT_F_PROBING (to be probed) or
	// KVX_EXT_F_CONFLICT (another host answered).
	std::map<uint32_t, uint32_t> held;
	// Addresses (host order) resumed now on a Free verdict.
	std::vector<uint32_t> resumed;
	// IPv6 mapped addresses held back (KVX_EXT_F_PROBING: DAD to run;
	// KVX_EXT_F_CONFLICT: another node has it), with their flags.
	std::map<Ipv6Addr, uint32_t> held6;
	// IPv6 mapped addresses announced now on a Free verdict (the caller
	// sends the unsolicited NA), and all the announced ones.
	std::vector<Ipv6Addr> announced6;
	std::set<Ipv6Addr> announced_all6;
};

// What the daemon's RFC 5227 probe found for an address being resumed.
enum class ProbeVerdict { Free, Conflict };
using ProbeVerdicts = std::map<uint32_t, ProbeVerdict>; // host order
// What the duplicate address detection of IPv6 mapped addresses found.
using DadVerdicts = std::map<Ipv6Addr, DadVerdict>;

// Makes kvx_bind's static entries and kvx_extaddr match `mappings`
// (host-order uplink_addr: where `uplink` mappings point; cur: the uplink's
// network now).  Active mappings get their pairs (IN halves first,
// BPF_NOEXIST; OUT halves second, BPF_ANY); stale static pairs go (OUT
// first) with the flows bound through them; suspended mappings have no
// pairs and their address is flagged KVX_EXT_F_SUSPENDED.  With
// strict_last, a conflict of the last mapping (the one `map add` adds)
// throws after undoing its IN halves; other conflicts are reported in
// errors.  IPv6 mappings (fds.bind6 set) go into kvx_bind6 the same way,
// `[uplink]` on kvx_cfg6's NAT66 address, suspended off their network
// (StaticMapping::network6 against cur->v6: no pairs, and an address no
// active mapping has leaves kvx_extaddr6, so that nothing answers for it
// and its return starts with a new DAD).  Their literal addresses are in
// kvx_extaddr6 (model/dad.hpp decide_ext6): a new one is held
// (KVX_EXT_F_PROBING, no pairs) until `dad` says Free for it (the daemon's
// duplicate address detection, or `map add`'s), then announced
// (KVX_EXT_F_ARP: the datapath answers Neighbour Solicitations for it);
// Duplicate holds it with KVX_EXT_F_CONFLICT.
//
// Resuming: an address kvx_extaddr holds as suspended whose network is back
// stays suspended, flagged KVX_EXT_F_PROBING, until `probed` says Free for
// it (the daemon probes it, RFC 5227: the address may have been given to
// another host meanwhile, and answering ARP for it would steal it); a
// Conflict verdict keeps it suspended with KVX_EXT_F_CONFLICT.  The flags
// live in the map, so a writer without probes (`map add|del`, attach)
// keeps an address held; leaving the network clears them (the next return
// probes afresh).  An address new to kvx_extaddr is active at once: `map
// add` probed it itself.
ApplyResult apply_mappings(const MapFds &fds, const std::vector<StaticMapping> &mappings,
			   uint32_t uplink_addr, const std::optional<NetId> &cur,
			   bool strict_last = false, const ProbeVerdicts &probed = {},
			   const DadVerdicts &dad = {});

// An address a mapping takes without `map add`'s probe (the daemon making a
// pending mapping a libvirt hook recorded): flagged suspended in kvx_extaddr
// unless it is there already, so that apply_mappings holds it until the
// daemon's RFC 5227 probe finds it free.  Host order.
void hold_for_probe(int extaddr_fd, uint32_t addr);

// The announced IPv6 mapped addresses (kvx_extaddr6 KVX_EXT_F_ARP) held
// again as new ones are (KVX_EXT_F_PROBING: not answered for, no pairs at
// the next apply_mappings) until a new duplicate address detection finds
// them free: the uplink came back or is on another link, where another
// node may have them.  How many.  A fd < 0: none.
size_t reprobe_mapped6(int extaddr6_fd);

// The uplink's network now: the network of its primary address, the
// default gateway through it (the main table's default route via the
// device, lowest metric) and the gateway's MAC from the neighbour table;
// without an IPv4 address, the IPv6 part alone (an IPv6-only network);
// unset with neither.  resolve: a gateway the neighbour table does not hold
// is asked with one ARP probe (300 ms at most).  Its IPv6 part (NetId::v6)
// is uplink6_net's.
std::optional<NetId> network_of_link(NlSocket &nl, int ifindex, bool resolve = false);
// The uplink's IPv6 network now: its global on-link prefixes (sorted), the
// routers of the main table's IPv6 default routes through it (at most
// kMaxRouters6, the preferred first) and their MACs from the neighbour
// table; unset without a global prefix.  resolve: a router the table does
// not hold is resolved by the kernel (its own Neighbour Solicitation,
// kernel/netlink neighbour_solicit6; 300 ms at most, not again for 10 s
// after one that got no answer).
constexpr size_t kMaxRouters6 = 8;
std::optional<Uplink6Net> uplink6_net(NlSocket &nl, int ifindex, bool resolve = false);

// The "mappings" member of one instance's status (and of `map list`).
// extaddr_fd: the pinned kvx_extaddr (-1: none), which says which mappings
// are held back by a probe ("probing") or by another host ("conflict").
// cfg6_fd: the pinned kvx_cfg6 (-1: none), NAT66's address for the IPv6
// mappings' `[uplink]`; extaddr6_fd: the pinned kvx_extaddr6 (-1: none),
// which IPv6 mapped addresses wait for their duplicate address detection
// ("probing") or are another node's ("conflict"); bind6_fd: the pinned
// kvx_bind6 (-1: none), whether the daemon kept an IPv6 mapping in the
// datapath while the uplink shows no whole IPv6 network (judged_network:
// no default router, or no global prefix, for a moment).
nlohmann::json mappings_json(const Instance &inst, NlSocket &nl, int extaddr_fd = -1,
			     int cfg6_fd = -1, int extaddr6_fd = -1, int bind6_fd = -1);

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
// held: ApplyResult::held (addresses kept off while probed or taken).
std::vector<AddedAddress> sync_added_addresses(const std::vector<StaticMapping> &mappings,
					       const std::string &uplink,
					       const std::optional<NetId> &cur,
					       const std::map<uint32_t, uint32_t> &held = {});
// Takes one address off the uplink (rollback of the above).
void remove_uplink_address(const std::string &uplink, const AddedAddress &a);

// What libvirt metadata may claim now (model/metadata_allow.hpp): the
// allow-list (`map allow`, nullopt: the default) and the host services'
// listeners (uids below kFirstLoginUid, as the datapath's host ports;
// read once per protocol, when a forward needs them).  The hooks check a
// metadata's mappings with it before anything is made, the daemon a
// pending one before it makes it (promote_pending): a listener may have
// come, the list may have changed.
class MetadataClaims {
public:
	// uplink_addr (host order) / uplink_addr6: the uplink's as it is now
	// (0 / all 0: none yet: the wildcard's listeners).
	MetadataClaims(const std::optional<std::vector<std::string>> &allow, uint32_t uplink_addr,
		       const Ipv6Addr &uplink_addr6);
	// Why m may not be made ("": it may); force: its forward's force='yes'.
	// *waits (if given): the only reason is a UDP socket on a port of
	// net.ipv4.ip_local_port_range (model metadata_claim_refusal's
	// ephemeral), which may be gone in a second: the hooks record such a
	// mapping pending (the daemon checks it again) rather than failing
	// libvirt's start.  A UDP socket outside that range, or a TCP
	// listener, is a service's.
	std::string refusal(const Mapping &m, bool force, bool *waits = nullptr);

private:
	std::optional<std::vector<MetadataAllow>> allow_;
	uint32_t uplink_addr_;
	Ipv6Addr uplink_addr6_;
	std::map<uint8_t, ListeningSockets> listening_;
	std::optional<std::optional<PortRange>> ephemeral_; // read once, when needed
};

// A metadata mapping's force='yes' (MetadataClaims::refusal) as its
// domain or network declares it: libvirt's status file of the running
// object under libvirt_root (GlobalOptions::libvirt_root), the XML its
// hook was given at start.  A config written before kvmxdp recorded
// StaticMapping::metadata_force lacks it, and a pending force='yes'
// forward would be refused until its domain restarts.  Not running, not
// readable, or the forward no longer in its metadata: the recorded flag.
bool declared_metadata_force(const std::string &libvirt_root, const StaticMapping &sm);

// Whether libvirt runs domain `vm`, as its files under libvirt_root
// (GlobalOptions::libvirt_root) say: its status file in /run/libvirt/qemu,
// written before the "started" hook and removed once it stopped.  Without
// that directory (libvirtd not started yet, or no libvirt) nothing is
// known: true, so a libvirtd that starts after kvmxdp does not take
// running VMs' mappings away.  For model demote_stopped_domains.
bool libvirt_domain_running(const std::string &libvirt_root, const std::string &vm);

} // namespace kvmxdp
