// SPDX-License-Identifier: GPL-2.0
// kvmxdp's TC filters: the clsact qdisc and our ingress filter of a device,
// through libbpf's netlink TC calls.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kvmxdp {

class NlSocket;

// Our filters carry a fixed handle and priority ("kv") so that they can be
// found, replaced atomically (BPF_TC_F_REPLACE) on restart or upgrade and
// removed without touching other tools' filters on the same hook.
constexpr uint32_t kTcHandle = 0x6b76;
constexpr uint32_t kTcPriority = 0x6b76;

// Creates the clsact qdisc.  Returns false if one existed already
// (-EEXIST: another tool's, or ours from an earlier attach).
bool tc_hook_create(int ifindex, const std::string &ifname);
// Deletes the whole clsact qdisc.
void tc_hook_destroy(int ifindex, const std::string &ifname);
void tc_attach(int ifindex, const std::string &ifname, int prog_fd);
// Removes our filter from the ingress hook; false if it was not there.
bool tc_detach(int ifindex, const std::string &ifname);
// The program id of our ingress filter, if present.
std::optional<uint32_t> tc_query(int ifindex);

// prog_fd as our ingress filter of a device, with its clsact qdisc created
// when missing: attach, a re-created bridge or uplink, a moved default
// route.  Returns whether it created the clsact (only those may be
// deleted later); on failure a clsact it created is gone again.  The usual
// EINVAL of another tool's filter at our priority says so.
bool tc_attach_ingress(int ifindex, const std::string &ifname, int prog_fd);
// Removes our filter from a device and, if we created its clsact and no
// other filter is left on it, the clsact too.  A vanished device is fine.
void tc_remove_ingress(NlSocket &nl, const std::string &ifname, bool created_clsact);

} // namespace kvmxdp
