// SPDX-License-Identifier: GPL-2.0
// libvirt: the hooks that make and remove the mappings declared in a
// domain's or a network's XML (model/libvirt.hpp), and the guest address
// of `map add ... vm:NAME`.  Both read libvirt's files and stdin only: a
// hook must never call back into libvirt (libvirt.org/hooks.html: libvirtd
// waits for the hook, a virsh call from it deadlocks).
#pragma once

#include <istream>
#include <ostream>
#include <string>

#include "model/libvirt.hpp"
#include "model/options.hpp"

namespace kvmxdp {

// `kvmxdp libvirt-hook qemu|network OBJECT OP SUBOP [EXTRA]`, run as libvirt
// runs its hooks (the XML on `in`, always read to its end).  qemu: on
// "started" the domain's metadata mappings are made for its guest address
// (replacing what an earlier start made) and its `map add ... vm:NAME`
// mappings moved to that address; on "stopped" and "release" the mappings
// its metadata made go (a `map add ... vm:NAME` stays); network: the same
// with a network's metadata on "started" and "stopped".  XML that does not
// name kvmxdp's namespace is never parsed.  What may pass (no lease yet, no
// uplink address, a 1:1 address of another network, the bridge not
// attached yet) leaves a mapping pending (StaticMapping::pending) and the
// hook succeeds; only malformed metadata throws Error (one line; nothing
// made), which makes libvirt refuse the start.
struct LibvirtHookOptions {
	std::string driver; // qemu | network
	std::string object, op, subop, extra;
};
void libvirt_hook(const GlobalOptions &g, const LibvirtHookOptions &o, std::istream &in,
		  std::ostream &out);

// `map add|del EXT vm:NAME[:PORT]`: "IP[:PORT]" of the VM's guest address,
// from the domain's XML file (live status first), its network's static DHCP
// host entry, else its lease; `bridge` ("": not given) is set to the VM's
// and must be its if given; `lease_mac` to the MAC when a lease gave the
// address.  Throws Error naming what is missing.
std::string libvirt_vm_guest(const GlobalOptions &g, std::string &bridge, std::string &lease_mac,
			     const VmTarget &t);

} // namespace kvmxdp
