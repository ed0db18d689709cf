// SPDX-License-Identifier: GPL-2.0
#include "control/doctor.hpp"

#include <bpf/libbpf.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include <map>
#include <tuple>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "base/sysctl.hpp"
#include "control/devices.hpp"
#include "control/status.hpp"
#include "kernel/arp.hpp"
#include "kernel/features.hpp"
#include "kernel/netlink.hpp"
#include "kernel/routes.hpp"
#include "kernel/skel.hpp"
#include "model/config.hpp"

namespace kvmxdp {

namespace {

std::optional<int> sysctl_int(const Sysctl &sys, const std::string &key)
{
	auto v = sys.try_read(key);
	if (!v)
		return std::nullopt;
	try {
		return static_cast<int>(
			parse_uint(v->substr(0, v->find_first_of(" \t\n")), 1000, key));
	} catch (const Error &) {
		return std::nullopt;
	}
}

DoctorLink link_facts(NlSocket &nl, const Sysctl &sys, const std::string &name)
{
	DoctorLink l;
	l.name = name;
	std::optional<LinkInfo> li;
	try {
		li = find_link(nl, name);
	} catch (const Error &) {
	}
	if (!li)
		return l;
	l.exists = true;
	l.up = li->flags & IFF_UP;
	l.carrier = li->flags & IFF_LOWER_UP;
	l.mtu = li->mtu;
	for (const IfAddr &a : ipv4_addrs(nl, li->ifindex))
		if (a.scope == RT_SCOPE_UNIVERSE)
			l.addrs.push_back({a.addr, a.prefix});
	l.rp_filter = sysctl_int(sys, "net/ipv4/conf/" + name + "/rp_filter");
	DeviceFacts df = probe_device(li->ifindex, name, li->kind);
	l.wireless = df.wireless;
	if (df.xdp_features)
		l.xdp_native = (*df.xdp_features & (kXdpActBasic | kXdpActRedirect)) ==
			       (kXdpActBasic | kXdpActRedirect);
	bpf_xdp_query_opts q{};
	q.sz = sizeof(q);
	if (bpf_xdp_query(li->ifindex, 0, &q) == 0 && q.attach_mode != XDP_ATTACHED_NONE) {
		// With programs in more than one mode (XDP_ATTACHED_MULTI) the
		// generic one is the one to talk about.
		uint32_t id = q.prog_id;
		if (q.attach_mode == XDP_ATTACHED_SKB ||
		    (q.attach_mode == XDP_ATTACHED_MULTI && q.skb_prog_id)) {
			l.xdp_attach = "generic";
			id = q.skb_prog_id ? q.skb_prog_id : q.prog_id;
		} else if (q.attach_mode == XDP_ATTACHED_HW) {
			l.xdp_attach = "offload";
		} else {
			l.xdp_attach = "native";
			if (q.drv_prog_id)
				id = q.drv_prog_id;
		}
		l.xdp_prog = id ? prog_name_by_id(id) : "?";
		if (l.xdp_prog.empty())
			l.xdp_prog = "id " + std::to_string(id);
	}
	return l;
}

} // namespace

std::vector<std::string> doctor_bridges(const GlobalOptions &g, const std::string &bridge)
{
	if (!bridge.empty()) {
		check_ifname(bridge);
		return {bridge};
	}
	Config cfg = ConfigStore(g.config).load();
	std::vector<std::string> out;
	for (const auto &inst : cfg.instances)
		out.push_back(inst.bridge);
	if (out.empty())
		throw Error("no instance in " + g.config +
			    ": name the bridge to check with --bridge");
	return out;
}

DoctorFacts gather_doctor_facts(const GlobalOptions &g, const std::string &bridge, int arp_wait_ms)
{
	DoctorFacts f;
	f.bridge = bridge;
	Sysctl sys(g.sysctl_root);
	NlSocket nl;

	// The datapath as status sees it (one code for both).
	bool attached = false;
	{
		Config cfg = ConfigStore(g.config).load();
		attached = cfg.find(bridge) != nullptr;
	}
	if (attached) {
		nlohmann::json st = status_json(g, bridge);
		if (!st["instances"].empty())
			f.status = st["instances"][0];
		f.kernel = st["kernel"];
		if (f.status.is_object() && f.status["uplink_device"].is_string())
			f.uplink = f.status["uplink_device"].get<std::string>();
	} else {
		f.kernel = kernel_features_json(probe_kernel_features());
	}

	f.bridge_link = link_facts(nl, sys, bridge);
	if (f.uplink.empty() && !attached) {
		// Not attached: the uplink an `--uplink auto` instance would take.
		std::optional<LinkInfo> br;
		try {
			br = find_link(nl, bridge);
		} catch (const Error &) {
		}
		f.uplink = auto_uplink_device(nl, br ? br->ifindex : 0, "");
	}
	if (!f.uplink.empty()) {
		f.uplink_link = link_facts(nl, sys, f.uplink);
		if (auto up = find_link(nl, f.uplink))
			f.uplink_default_route =
				default_gateway(ipv4_routes(nl), up->ifindex).has_value();
	}
	if (f.bridge_link.exists) {
		auto br = find_link(nl, bridge);
		for (const PortInfo &port : bridge_ports(nl, br->ifindex))
			f.ports.push_back(link_facts(nl, sys, port.name));
	}
	f.bridge_forwarding = sysctl_int(sys, forwarding_key(bridge));
	f.rp_filter_all = sysctl_int(sys, "net/ipv4/conf/all/rp_filter");
	// br_netfilter's sysctls exist (per network namespace) while it is
	// loaded.
	f.br_netfilter = sys.exists("net/bridge");
	f.bridge_nf_call_iptables = sysctl_int(sys, kBrNfCallIptablesKey);

	f.iptables_save = run_firewall_tool("iptables-save", {""}, f.firewall_unread);
	f.nft_json = run_firewall_tool("nft", {"", "-j", "list", "ruleset"}, f.firewall_unread);

	if (arp_wait_ms > 0 && f.bridge_link.exists) {
		try {
			auto br = find_link(nl, bridge);
			std::map<std::tuple<std::array<uint8_t, 6>, uint32_t, uint32_t>, int> seen;
			for (const ArpRequest &r : arp_listen(br->ifindex, arp_wait_ms))
				seen[{r.mac, r.sender, r.target}]++;
			for (const auto &[k, n] : seen)
				f.arp_asks.push_back(
					{std::get<0>(k), std::get<1>(k), std::get<2>(k), n});
			f.arp_listen_ms = arp_wait_ms;
		} catch (const Error &e) {
			f.arp_error = e.what();
		}
	}
	return f;
}

} // namespace kvmxdp
