// SPDX-License-Identifier: GPL-2.0
// The per-guest counters (abi.h kvx_gstats) as rows, one per guest (an
// owning MAC of kvx_guest with its addresses), named from libvirt's DHCP
// leases: what `kvmxdp top` shows and the metrics endpoint exports.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <set>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "base/netaddr.hpp"
#include "kvmxdp/abi.h"
#include "model/leases.hpp"

namespace kvmxdp {

struct DirFd;
struct Instance;
struct StaticMapping;

// The maps a row is read from (borrowed fds).
struct GuestStatsFds {
	int cfg = -1;	 // kvx_cfg: the slot key (guest_seed)
	int guest = -1;	 // kvx_guest: the guests and their addresses
	int gstats = -1; // kvx_gstats
	int gflows = -1; // kvx_gflows: flows now
	// kvx_brport: which port's flows a guest's are (ct.h mac_slot; -1:
	// not read, every MAC in port 0's slot).
	int brport = -1;
	// The guests' IPv6 addresses (-1: not read): relay mode's owners
	// (kvx_nd), NAT66's bindings (kvx_bind6) and their flows' last
	// packets (kvx_ct6).  A guest seen only over IPv6 has no kvx_guest
	// entry; its counters are its MAC's slot all the same (stats.h).
	int nd = -1;
	int bind6 = -1;
	int ct6 = -1;
};

struct GuestRow {
	MacAddr mac{};
	std::vector<uint32_t> addrs; // host order, ascending
	// Per address (parallel to addrs): its owner's last translated frame
	// (kvx_guest seen_ns, CLOCK_BOOTTIME; 0: never), and whether a DHCP
	// lease holds it (KVX_GUEST_F_LEASE: the owner keeps it while idle).
	std::vector<uint64_t> seen_ns;
	std::vector<bool> leased;
	// Its IPv6 addresses, ascending, and per address (parallel) the last
	// time it was seen (kvx_nd last_seen_ns, a binding's or flow's last
	// use; CLOCK_BOOTTIME).
	std::vector<std::array<uint8_t, 16>> addrs6;
	std::vector<uint64_t> seen6_ns;
	// The libvirt domain it is (guest_vm_names; "" if unknown), and the
	// hostname its DHCP lease gives (the guest's own choice; "" if none).
	std::string vm;
	std::string dhcp_hostname;
	uint32_t slot = 0; // kvx_gstats index
	// Another guest's counters share the slot (abi.h): they are the sum of
	// both.
	bool shared = false;
	uint64_t pkts_out = 0, bytes_out = 0, pkts_in = 0, bytes_in = 0;
	std::array<uint64_t, KVX_GD_MAX> drops{};
	// Flows of its quota slot: those of every MAC on its bridge port (a
	// guest is its port, ct.h mac_slot), of all MACs not placed yet.
	uint32_t flows_out = 0, flows_in = 0;
	uint64_t drops_total() const;
};

// Which libvirt domain a guest is: by MAC (an interface of a running
// domain, libvirt's /run/libvirt/qemu/NAME.xml; a mapping's lease_mac) or
// by address (a mapping's guest, recorded with its VM).  Keys: MACs as
// mac_text() spells them, addresses in host order.
// A MAC that two domains claim (a running domain's interface, a mapping's
// lease_mac) names none: a domain defined with another's MAC must not put
// its name on that guest's counters, and which of them is the guest is not
// known: its series carry vm="" (unknown), as an unnamed guest's.
struct GuestVmNames {
	std::map<std::string, std::string> by_mac;
	std::map<uint32_t, std::string> by_addr;
	std::set<std::string> ambiguous_macs; // named by nothing, not even by address
};

// The running domains' interfaces from libvirt's status files, each
// parsed again only when its inode, size or modification time changed (a
// scrape every few seconds must not parse every domain's XML each time).
class DomainFiles {
public:
	// name, MACs of every readable status file in ROOT/run/libvirt/DRIVER
	// (qemu; lxc for libvirt's containers).
	std::vector<std::pair<std::string, std::vector<std::string>>>
	read(const std::string &libvirt_root, const std::string &driver = "qemu");
	size_t parses() const { return parses_; } // tests: files parsed so far

private:
	struct Entry {
		std::string sig;
		std::string name;
		std::vector<std::string> macs;
	};
	std::map<std::string, Entry> files_;
	size_t parses_ = 0;
};

// libvirt_root: GlobalOptions::libvirt_root ("" : /).  Unreadable files are
// skipped: names are optional.  `files`: a cache kept between calls (none:
// every file is read).
GuestVmNames guest_vm_names(const std::vector<StaticMapping> &mappings,
			    const std::string &libvirt_root, DomainFiles *files = nullptr);

// Every guest of kvx_guest and every MAC that owns an IPv6 address (fds.nd,
// fds.bind6), sorted by first address; counters summed over
// every CPU.  Named from `vms` (the VM) and the leases (the DHCP hostname).
std::vector<GuestRow> read_guest_rows(const GuestStatsFds &fds, const std::vector<Lease> &leases,
				      const GuestVmNames &vms = {});
// The guests of rows that are here now: those with an address (IPv4 or
// IPv6) that a DHCP lease holds or that was seen within idle_ns (abi.h KVX_GUEST_IDLE_NS:
// after it the address is anyone's again), each with only such addresses.
// A guest that is gone (a stopped VM, an address given up) is left out
// for as long as kvx_guest remembers it: the metrics endpoint removes its
// series, `top` its line; it comes back (same counters: they are never
// reset) when it sends again.  now_ns: CLOCK_BOOTTIME.
std::vector<GuestRow> active_guests(std::vector<GuestRow> rows, uint64_t now_ns, uint64_t idle_ns);
// The instance's lease file's leases; none when it has no file.  A file
// that cannot be read or parsed throws: the libvirt hook must say so;
// `top` catches it (names are optional there, the daemon reports it).
std::vector<Lease> instance_leases(const Instance &inst);

// "QUOTA" ... (abi.h KVX_GDROPS): labels and JSON keys.
const char *gdrop_name(int cls);
std::string mac_text(const MacAddr &mac);

// The maps of an instance's pin directory, checked (maps.hpp find_pinned).
class PinnedGuestStats {
public:
	explicit PinnedGuestStats(const DirFd &pins);
	~PinnedGuestStats();
	PinnedGuestStats(const PinnedGuestStats &) = delete;
	PinnedGuestStats &operator=(const PinnedGuestStats &) = delete;
	GuestStatsFds fds() const;

private:
	struct Fds;
	std::unique_ptr<Fds> fds_;
};

} // namespace kvmxdp
