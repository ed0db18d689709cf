// SPDX-License-Identifier: GPL-2.0
#include "verbs/conntrack_verbs.hpp"

#include <unistd.h>

#include "base/error.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "control/gc.hpp"
#include "control/resume.hpp"
#include "kernel/maps.hpp"
#include "model/config.hpp"
#include "model/timeouts.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

struct CtPins {
	std::string bridge;
	Fd cfg, ct, bind;
	Fd gflows;     // -1 when not pinned (maps of an older version)
	Fd guest;      // kvx_guest, the owners that name a guest's quota slot
	Fd ct6, bind6; // -1 when not pinned (maps of an older version)
	Fd ovl;	       // kvx_ovl; -1 when not pinned (maps of an older version)
	// Relay's owners (kvx_nd) and their bridge ports (kvx_brport): the
	// slots relay flows count in; -1 when not pinned.
	Fd nd, brport;
	Ct6Fds v6() const { return {ct6.get(), bind6.get()}; }
};

CtPins open_ct_pins(const GlobalOptions &g, const std::string &bridge)
{
	// The name becomes a pin directory below --bpffs: only a name attach
	// would take ("a/b" names a directory no instance has).
	if (!bridge.empty())
		check_ifname(bridge);
	Config cfg = ConfigStore(g.config).load();
	std::optional<PinDir> pins;
	CtPins p;
	if (!bridge.empty() && !cfg.find(bridge)) {
		// Not in this config (another --config, a lost file): the pins
		// of --bpffs still tell the whole story.
		pins = open_pin_dir(g.bpffs, bridge, false);
		if (!pins || !open_pin_entry(pins->dir, KVX_MAP_CT))
			throw not_attached(bridge, g.config,
					   "no maps pinned in " + pin_dir_for(g.bpffs, bridge));
		p.bridge = bridge;
	} else {
		const Instance &inst = select_instance(cfg, bridge, g.config);
		pins = open_pin_dir(inst.bpffs, inst.bridge, false);
		if (!pins)
			throw Error("open pin directory", pin_dir_for(inst.bpffs, inst.bridge),
				    ENOENT);
		p.bridge = inst.bridge;
	}
	const DirFd &d = pins->dir;
	auto open = [&](const char *m) { return open_pinned(d, m, pinned_layout(m)); };
	p.cfg = open(KVX_MAP_CFG);
	p.ct = open(KVX_MAP_CT);
	p.bind = open(KVX_MAP_BIND);
	if (auto gflows = find_pinned(d, KVX_MAP_GFLOWS, pinned_layout(KVX_MAP_GFLOWS)))
		p.gflows = std::move(*gflows);
	if (auto guest = find_pinned(d, KVX_MAP_GUEST, pinned_layout(KVX_MAP_GUEST)))
		p.guest = std::move(*guest);
	if (auto ct6 = find_pinned(d, KVX_MAP_CT6, pinned_layout(KVX_MAP_CT6)))
		p.ct6 = std::move(*ct6);
	if (auto bind6 = find_pinned(d, KVX_MAP_BIND6, pinned_layout(KVX_MAP_BIND6)))
		p.bind6 = std::move(*bind6);
	if (auto ovl = find_pinned(d, KVX_MAP_OVL, pinned_layout(KVX_MAP_OVL)))
		p.ovl = std::move(*ovl);
	if (auto nd = find_pinned(d, KVX_MAP_ND, pinned_layout(KVX_MAP_ND)))
		p.nd = std::move(*nd);
	if (auto brport = find_pinned(d, KVX_MAP_BRPORT, pinned_layout(KVX_MAP_BRPORT)))
		p.brport = std::move(*brport);
	return p;
}

kvx_timeouts configured_timeouts(int cfg_fd)
{
	kvx_timeouts t = read_cfg(cfg_fd).timeouts;
	// All zero: not written yet (an attach in progress); show the
	// defaults the loader is about to write rather than "expired".
	if (t.tcp_established == 0 && t.udp == 0 && t.icmp == 0)
		t = default_timeouts();
	return t;
}

} // namespace

json conntrack_list(const GlobalOptions &g, const std::string &bridge, const CtFilter &f)
{
	CtPins p = open_ct_pins(g, bridge);
	json flows =
		ct_list_fd(p.ct.get(), configured_timeouts(p.cfg.get()), f, boottime_ns(), p.v6());
	for (auto &fl : flows)
		fl["bridge"] = p.bridge;
	return flows;
}

CtFlushResult conntrack_flush(const GlobalOptions &g, const std::string &bridge, const CtFilter &f,
			      std::string *bridge_out)
{
	CtPins p = open_ct_pins(g, bridge);
	if (bridge_out)
		*bridge_out = p.bridge;
	// The recount finds every flow's slot as the datapath and the daemon
	// do, relay's included (without kvx_nd they counted in their
	// address's slot until the daemon's next sweep).
	QuotaMaps q;
	q.gflows_fd = p.gflows.get();
	q.guest_fd = p.guest.get();
	q.seed = read_cfg(p.cfg.get()).guest_seed;
	q.nd_fd = p.nd.get();
	q.brport_fd = p.brport.get();
	return ct_flush_fd(p.ct.get(), p.bind.get(), f, boottime_ns(), q, p.v6(), p.ovl.get());
}

} // namespace kvmxdp
