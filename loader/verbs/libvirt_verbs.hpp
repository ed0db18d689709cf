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
// runs its hooks (the XML on `in`).  qemu: on "started" the domain's
// mappings are made for its guest address (replacing what an earlier start
// made), on "stopped" and "release" every mapping made for OBJECT goes;
// network: the same with a network's mappings on "started" and "stopped".
// A domain or network without kvmxdp metadata and nothing mapped for it is
// left alone without taking a lock.  Throws Error (one line; nothing made).
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
