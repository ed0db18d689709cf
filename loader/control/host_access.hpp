// SPDX-License-Identifier: GPL-2.0
// The host's own sockets reaching mapped addresses (bpf/kvmxdp_host.bpf.c):
// cgroup v2 sock_addr hooks, attached through bpf_links pinned next to the
// instance's maps so that they outlive the daemon like the TC filters do.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kvmxdp {

class SkelObject;
class Rollback;
struct DirFd;

// Loads kvmxdp_host on the datapath's maps (every map of `tc` by name; its
// own kvx_hostrev reused from pins when pinned) and attaches its four
// programs to the root of the cgroup v2 hierarchy.  Links already pinned in
// pins (a resume, an upgrade) get the new programs atomically
// (bpf_link_update).  Returns "" when attached, else why host access is
// off: what the kernel or system lacks.  Errors that would leave the
// instance half-made throw; rb undoes what was created.
std::string host_hooks_attach(const SkelObject &tc, const DirFd &pins, const std::string &run_dir,
			      Rollback &rb);

struct HostHook {
	std::string hook; // "cgroup/connect4", ...
	std::string prog; // program name, "" if the pinned link is gone
	uint32_t prog_id = 0;
};
// The hooks whose links are pinned in pins (for status).
std::vector<HostHook> host_hooks_query(const DirFd &pins);

} // namespace kvmxdp
