// SPDX-License-Identifier: GPL-2.0
#include "control/mapping_sync.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netlink/route/addr.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "model/config.hpp"
#include "base/error.hpp"
#include "base/fs.hpp"
#include "kernel/maps.hpp"
#include "kernel/netlink.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

void warn(const std::string &msg)
{
	std::fprintf(stderr, "kvmxdp: warning: %s\n", msg.c_str());
}

bool key_less(const kvx_bind_key &a, const kvx_bind_key &b)
{
	return std::memcmp(&a, &b, sizeof(a)) < 0;
}
using KeySet = std::set<kvx_bind_key, decltype(&key_less)>;

bool same_target(const kvx_bind_val &a, const kvx_bind_val &b)
{
	return a.addr == b.addr && a.port == b.port && a.flags == b.flags;
}

std::string bind_str(const kvx_bind_key &k)
{
	std::string p = k.proto == IPPROTO_TCP ? "tcp" : k.proto == IPPROTO_UDP ? "udp" : "any";
	return format_ipv4(ntohl(k.addr)) + (k.proto ? ":" + std::to_string(ntohs(k.port)) : "") +
	       "/" + p;
}

} // namespace

ApplyResult apply_mappings(const MapFds &fds, const std::vector<StaticMapping> &maps,
			   uint32_t uplink_addr, const std::optional<NetId> &cur, bool strict_last)
{
	ApplyResult r;
	// Desired state.
	std::vector<std::vector<BindEntry>> per_mapping(maps.size());
	std::map<kvx_bind_key, kvx_bind_val, decltype(&key_less)> want(&key_less);
	std::map<uint32_t, uint32_t> ext_flags; // be32 -> flags
	std::map<uint32_t, bool> ext_any_active;
	for (size_t i = 0; i < maps.size(); i++) {
		const StaticMapping &sm = maps[i];
		bool active = mapping_active(sm, cur);
		if (!sm.m.ext_uplink && sm.m.ext_addr != uplink_addr) {
			uint32_t be = htonl(sm.m.ext_addr);
			ext_flags[be] |= sm.add_address ? 0 : KVX_EXT_F_ARP;
			ext_any_active[be] = ext_any_active[be] || active;
		}
		if (!active)
			continue;
		per_mapping[i] = mapping_entries(sm.m, uplink_addr);
		for (const auto &e : per_mapping[i])
			want[e.key] = e.val;
	}
	for (auto &[be, f] : ext_flags)
		if (!ext_any_active[be])
			f |= KVX_EXT_F_SUSPENDED;

	// Stale static entries: OUT halves first, then IN halves.
	auto entries = dump_hash<kvx_bind_key, kvx_bind_val>(fds.bind);
	std::set<std::tuple<uint8_t, uint32_t, uint16_t>> gone_in; // proto, addr, port
	std::set<uint32_t> gone_1to1;
	for (int dir : {KVX_BIND_OUT, KVX_BIND_IN}) {
		for (const auto &[k, v] : entries) {
			if (k.dir != dir || !(v.flags & KVX_BIND_F_STATIC))
				continue;
			auto it = want.find(k);
			if (it != want.end() && same_target(it->second, v))
				continue;
			if (bpf_map_delete_elem(fds.bind, &k) == 0)
				r.bind_deleted++;
			if (dir == KVX_BIND_IN) {
				if (v.flags & KVX_BIND_F_ONE_TO_ONE)
					gone_1to1.insert(k.addr);
				else
					gone_in.insert({k.proto, k.addr, k.port});
			}
		}
	}
	// Flows bound through a deleted IN half: their packets could only
	// go to the host now (and a stale flow would pin the old binding).
	if ((!gone_in.empty() || !gone_1to1.empty()) && fds.ct >= 0) {
		for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(fds.ct)) {
			if (!(v.flags & KVX_CT_F_STATIC))
				continue;
			bool hit = (v.flags & KVX_CT_F_ONE_TO_ONE) ?
					   gone_1to1.count(v.ext_addr) != 0 :
					   gone_in.count({k.proto, v.ext_addr, v.ext_port}) != 0;
			if (hit && bpf_map_delete_elem(fds.ct, &k) == 0)
				r.ct_deleted++;
		}
	}

	// Address flags before the pairs: an address being suspended stops
	// answering ARP first; a new one is answered once its pairs exist.
	auto write_flags = [&](bool suspended) {
		for (const auto &[be, f] : ext_flags) {
			if (!(f & KVX_EXT_F_SUSPENDED) != !suspended)
				continue;
			kvx_extaddr_val have{}, v{};
			v.flags = f;
			if (bpf_map_lookup_elem(fds.extaddr, &be, &have) == 0 && have.flags == f)
				continue;
			if (bpf_map_update_elem(fds.extaddr, &be, &v, BPF_ANY) != 0)
				r.errors.push_back("kvx_extaddr " + format_ipv4(ntohl(be)) + ": " +
						   std::strerror(errno));
		}
	};
	for (const auto &[k, v] : dump_hash<uint32_t, kvx_extaddr_val>(fds.extaddr))
		if (!ext_flags.count(k))
			bpf_map_delete_elem(fds.extaddr, &k);
	write_flags(true);

	// Install, mapping by mapping: its IN halves, then its OUT halves.
	for (size_t i = 0; i < maps.size(); i++) {
		const auto &ents = per_mapping[i];
		const bool strict = strict_last && i + 1 == maps.size();
		std::vector<kvx_bind_key> added;
		std::string conflict;
		for (const auto &e : ents) {
			if (e.key.dir != KVX_BIND_IN)
				continue;
			kvx_bind_val have{};
			if (bpf_map_lookup_elem(fds.bind, &e.key, &have) == 0) {
				if ((have.flags & KVX_BIND_F_STATIC) && same_target(have, e.val))
					continue; // ours already (MACs learnt by the datapath)
				conflict =
					"external " + bind_str(e.key) +
					" is in use by a NAT binding of guest " +
					format_ipv4(ntohl(have.addr)) +
					(e.key.proto ? ":" + std::to_string(ntohs(have.port)) : "");
				break;
			}
			if (bpf_map_update_elem(fds.bind, &e.key, &e.val, BPF_NOEXIST) != 0) {
				conflict = "external " + bind_str(e.key) + ": " +
					   (errno == EEXIST ?
						    "taken by a new NAT binding right now" :
						    std::string(std::strerror(errno)));
				break;
			}
			added.push_back(e.key);
			r.bind_added++;
		}
		if (!conflict.empty()) {
			for (const auto &k : added)
				bpf_map_delete_elem(fds.bind, &k);
			r.bind_added -= added.size();
			std::string msg = "mapping '" + maps[i].m.str() + "': " + conflict;
			if (strict)
				throw Error(msg);
			r.errors.push_back(msg);
			continue;
		}
		for (const auto &e : ents) {
			if (e.key.dir != KVX_BIND_OUT)
				continue;
			kvx_bind_val have{};
			if (bpf_map_lookup_elem(fds.bind, &e.key, &have) == 0 &&
			    (have.flags & KVX_BIND_F_STATIC) && same_target(have, e.val))
				continue;
			// A dynamic OUT binding of this guest port may exist:
			// the mapping replaces it (its IN half expires in GC).
			if (bpf_map_update_elem(fds.bind, &e.key, &e.val, BPF_ANY) != 0) {
				r.errors.push_back("mapping '" + maps[i].m.str() + "': insert " +
						   bind_str(e.key) + ": " + std::strerror(errno));
				continue;
			}
			r.bind_added++;
		}
	}

	write_flags(false);
	return r;
}

std::optional<NetId> network_of_link(NlSocket &nl, int ifindex, const std::string &uplink)
{
	auto a = primary_ipv4(ipv4_addrs(nl, ifindex));
	if (!a)
		return std::nullopt;
	NetId id;
	id.net = network_of(a->addr, a->prefix);
	// /proc/net is the reader's network namespace: the right one.
	std::ifstream f("/proc/net/route");
	std::string line;
	std::getline(f, line); // header
	uint32_t best_metric = UINT32_MAX;
	while (std::getline(f, line)) {
		std::istringstream is(line);
		std::string ifname, dest, gw, flags, refcnt, use, metric, mask;
		if (!(is >> ifname >> dest >> gw >> flags >> refcnt >> use >> metric >> mask))
			continue;
		if (ifname != uplink || dest != "00000000" || mask != "00000000")
			continue;
		uint32_t m = static_cast<uint32_t>(std::stoul(metric));
		if (m >= best_metric)
			continue;
		best_metric = m;
		// Network byte order printed as a native-endian hex number.
		uint32_t be = static_cast<uint32_t>(std::stoul(gw, nullptr, 16));
		id.gateway = ntohl(be);
	}
	return id;
}

std::optional<NetId> current_network(NlSocket &nl, const std::string &uplink)
{
	auto link = find_link(nl, uplink);
	if (!link)
		return std::nullopt;
	return network_of_link(nl, link->ifindex, uplink);
}

namespace {

struct ArpPkt {
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t oper;
	uint8_t sha[6];
	uint8_t spa[4];
	uint8_t tha[6];
	uint8_t tpa[4];
} __attribute__((packed));
static_assert(sizeof(ArpPkt) == 28, "ARP over Ethernet/IPv4 is 28 bytes");

Fd arp_socket(int ifindex)
{
	Fd s(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
	if (!s)
		throw_errno("open", "AF_PACKET socket");
	sockaddr_ll sll{};
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ARP);
	sll.sll_ifindex = ifindex;
	if (::bind(s.get(), reinterpret_cast<sockaddr *>(&sll), sizeof(sll)) < 0)
		throw_errno("bind", "AF_PACKET socket");
	return s;
}

void arp_send(int fd, int ifindex, const std::array<uint8_t, 6> &mac, uint32_t sip, uint32_t tip)
{
	ArpPkt p{};
	p.htype = htons(ARPHRD_ETHER);
	p.ptype = htons(ETH_P_IP);
	p.hlen = 6;
	p.plen = 4;
	p.oper = htons(ARPOP_REQUEST);
	std::memcpy(p.sha, mac.data(), 6);
	uint32_t s = htonl(sip), t = htonl(tip);
	std::memcpy(p.spa, &s, 4);
	std::memcpy(p.tpa, &t, 4);
	sockaddr_ll to{};
	to.sll_family = AF_PACKET;
	to.sll_protocol = htons(ETH_P_ARP);
	to.sll_ifindex = ifindex;
	to.sll_halen = 6;
	std::memset(to.sll_addr, 0xff, 6);
	if (::sendto(fd, &p, sizeof(p), 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
		throw_errno("send ARP on", "ifindex " + std::to_string(ifindex));
}

} // namespace

std::optional<std::array<uint8_t, 6>> arp_probe(int ifindex, const std::array<uint8_t, 6> &mac,
						uint32_t addr, int count, int total_ms)
{
	Fd s = arp_socket(ifindex);
	using clock = std::chrono::steady_clock;
	auto start = clock::now();
	auto end = start + std::chrono::milliseconds(total_ms);
	int sent = 0;
	const uint32_t want = htonl(addr);
	for (;;) {
		auto now = clock::now();
		if (now >= end)
			return std::nullopt;
		auto next_send = start + std::chrono::milliseconds(total_ms * sent / (count + 1));
		if (sent < count && now >= next_send) {
			arp_send(s.get(), ifindex, mac, 0, addr);
			sent++;
			continue;
		}
		auto until = sent < count ? std::min(next_send, end) : end;
		int ms = static_cast<int>(
			std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
		pollfd pfd{s.get(), POLLIN, 0};
		if (::poll(&pfd, 1, std::max(ms, 1)) <= 0)
			continue;
		ArpPkt p{};
		sockaddr_ll from{};
		socklen_t fl = sizeof(from);
		ssize_t n = ::recvfrom(s.get(), &p, sizeof(p), 0,
				       reinterpret_cast<sockaddr *>(&from), &fl);
		if (n < static_cast<ssize_t>(sizeof(p)) || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (std::memcmp(p.sha, mac.data(), 6) == 0)
			continue;
		uint32_t spa, tpa;
		std::memcpy(&spa, p.spa, 4);
		std::memcpy(&tpa, p.tpa, 4);
		// RFC 5227 2.1.1: any ARP with the address as sender, or another
		// host's probe for it.
		bool conflict = spa == want ||
				(spa == 0 && tpa == want && ntohs(p.oper) == ARPOP_REQUEST);
		if (conflict) {
			std::array<uint8_t, 6> other;
			std::memcpy(other.data(), p.sha, 6);
			return other;
		}
	}
}

void arp_announce(int ifindex, const std::array<uint8_t, 6> &mac, uint32_t addr, int count)
{
	Fd s = arp_socket(ifindex);
	for (int i = 0; i < count; i++) {
		if (i)
			::usleep(100 * 1000);
		arp_send(s.get(), ifindex, mac, addr, addr);
	}
}

bool host_listens(uint8_t proto, uint32_t addr, uint16_t port)
{
	const bool tcp = proto == IPPROTO_TCP;
	for (const char *file :
	     {tcp ? "/proc/net/tcp" : "/proc/net/udp", tcp ? "/proc/net/tcp6" : "/proc/net/udp6"}) {
		const bool v6 = std::strchr(file, '6') != nullptr;
		std::ifstream f(file);
		std::string line;
		std::getline(f, line);
		while (std::getline(f, line)) {
			std::istringstream is(line);
			std::string sl, local, remote, st;
			if (!(is >> sl >> local >> remote >> st))
				continue;
			if (st != (tcp ? "0A" : "07"))
				continue;
			auto colon = local.find(':');
			if (colon == std::string::npos)
				continue;
			if (std::stoul(local.substr(colon + 1), nullptr, 16) != port)
				continue;
			std::string a = local.substr(0, colon);
			if (a.find_first_not_of('0') == std::string::npos)
				return true; // wildcard
			if (!v6 && ntohl(static_cast<uint32_t>(std::stoul(a, nullptr, 16))) == addr)
				return true;
		}
	}
	return false;
}

namespace {

// Adds addr/prefix to the uplink, or removes addr as it is there
// (`--add-address`).  Added addresses carry our label, so that
// primary_ipv4() never takes one for the uplink's own address.
void uplink_address(NlSocket &nl, int ifindex, uint32_t addr, uint8_t prefix, bool add)
{
	std::string label = add ? added_address_label(ifindex) : "";
	if (!add) {
		// The kernel matches a deletion's prefix length and label: take
		// both from the address itself (the network may have changed
		// since it was added, and older versions added no label).
		bool found = false;
		for (const auto &ia : ipv4_addrs(nl, ifindex))
			if (ia.addr == addr) {
				prefix = ia.prefix;
				label = ia.label;
				found = true;
			}
		if (!found)
			return;
	}
	rtnl_addr *a = rtnl_addr_alloc();
	if (!a)
		throw Error("out of memory");
	uint32_t be = htonl(addr);
	nl_addr *local = nl_addr_build(AF_INET, &be, 4);
	nl_addr_set_prefixlen(local, prefix);
	rtnl_addr_set_ifindex(a, ifindex);
	rtnl_addr_set_family(a, AF_INET);
	rtnl_addr_set_local(a, local);
	rtnl_addr_set_prefixlen(a, prefix);
	if (!label.empty())
		rtnl_addr_set_label(a, label.c_str());
	int err = add ? rtnl_addr_add(nl.get(), a, NLM_F_EXCL) : rtnl_addr_delete(nl.get(), a, 0);
	nl_addr_put(local);
	rtnl_addr_put(a);
	if (err < 0)
		throw Error(std::string(add ? "add" : "remove") + " address " + format_ipv4(addr) +
			    "/" + std::to_string(prefix) + ": " + nl_geterror(err));
}

bool link_has_addr(NlSocket &nl, int ifindex, uint32_t addr)
{
	for (const auto &a : ipv4_addrs(nl, ifindex))
		if (a.addr == addr)
			return true;
	return false;
}

Instance &pick_instance(Config &cfg, const std::string &bridge, const std::string &path)
{
	if (!bridge.empty()) {
		check_ifname(bridge);
		if (Instance *i = cfg.find(bridge))
			return *i;
		throw Error("bridge '" + bridge + "' is not attached (no instance in " + path +
			    ")");
	}
	if (cfg.instances.size() == 1)
		return cfg.instances[0];
	if (cfg.instances.empty())
		throw Error("no kvmxdp instance in " + path + ": attach a bridge first");
	throw Error("more than one instance in " + path + ": pick one with --bridge");
}

struct Pins {
	Fd bind, extaddr, ct, cfg;
	MapFds fds() const { return {bind.get(), extaddr.get(), ct.get()}; }
};

// The running instance's maps, or nullopt when they are not pinned.
std::optional<Pins> open_pins(const Instance &inst)
{
	if (::access(pin_path(inst.pin_dir, KVX_MAP_BIND).c_str(), F_OK) != 0)
		return std::nullopt;
	Pins p;
	p.bind = open_pinned(pin_path(inst.pin_dir, KVX_MAP_BIND));
	p.extaddr = open_pinned(pin_path(inst.pin_dir, KVX_MAP_EXTADDR));
	p.ct = open_pinned(pin_path(inst.pin_dir, KVX_MAP_CT));
	p.cfg = open_pinned(pin_path(inst.pin_dir, KVX_MAP_CFG));
	return p;
}

uint8_t prefix_for(const StaticMapping &sm, const std::optional<NetId> &cur)
{
	if (cur && cur->net.contains(sm.m.ext_addr))
		return cur->net.prefix;
	return 32;
}

bool ext_used_by_other(const Instance &inst, const StaticMapping &sm)
{
	for (const auto &o : inst.mappings)
		if (!(o == sm) && !o.m.ext_uplink && o.m.ext_addr == sm.m.ext_addr)
			return true;
	return false;
}

} // namespace

void map_add(const GlobalOptions &g, const MapOptions &o, std::ostream &out)
{
	Mapping m = parse_mapping(o.ext, o.guest, o.proto);
	if (o.add_address && m.ext_uplink)
		throw Error("--add-address with 'uplink': the uplink's address is there already");
	if (::geteuid() != 0)
		throw Error("map add needs root (CAP_BPF, CAP_NET_ADMIN and bpffs access)");
	ConfigStore store(g.config);
	FileLock lock = store.lock();
	Config cfg = store.load();
	Instance &inst = pick_instance(cfg, o.bridge, g.config);

	NlSocket nl;
	if (inst.uplink.empty())
		throw Error("bridge '" + inst.bridge +
			    "' has '--uplink auto' and no default route yet: a mapping is made on "
			    "the uplink's network, add it once the host is online");
	auto up = find_link(nl, inst.uplink);
	if (!up)
		throw Error("uplink '" + inst.uplink + "' of bridge '" + inst.bridge +
			    "' does not exist");
	auto up_addr = primary_ipv4(ipv4_addrs(nl, up->ifindex));
	std::optional<NetId> cur = network_of_link(nl, up->ifindex, inst.uplink);

	MappingContext ctx;
	ctx.subnet = inst.subnet;
	ctx.nat_ports = inst.nat_ports;
	ctx.uplink_addr = up_addr ? up_addr->addr : 0;
	if (cur)
		ctx.uplink_net = cur->net;
	ctx.force = o.force;
	std::vector<Mapping> existing;
	for (const auto &sm : inst.mappings)
		existing.push_back(sm.m);
	check_mapping(m, existing, ctx);

	StaticMapping sm;
	sm.m = m;
	sm.add_address = o.add_address;
	sm.network = cur;
	const uint32_t ext = m.ext(ctx.uplink_addr);
	const bool own = m.ext_uplink || (ctx.uplink_addr && m.ext_addr == ctx.uplink_addr);

	if (!m.one_to_one() && ext) {
		for (uint32_t p = m.ext_ports.lo; p <= m.ext_ports.hi; p++)
			if (host_listens(static_cast<uint8_t>(m.proto), ext,
					 static_cast<uint16_t>(p))) {
				warn("a host socket listens on " + m.proto_str() + " port " +
				     std::to_string(p) + " of " + format_ipv4(ext) +
				     ": the forward takes its inbound traffic");
				break;
			}
	}

	// Claim the address unless it is ours already (the uplink's, or one
	// another mapping claimed).
	bool claimed = false;
	if (!own && !ext_used_by_other(inst, sm)) {
		if (o.add_address) {
			if (link_has_addr(nl, up->ifindex, m.ext_addr))
				throw Error("mapping '" + m.str() +
					    "': " + format_ipv4(m.ext_addr) +
					    " is already an address of " + inst.uplink);
		}
		const bool ethernet = up->mac != std::array<uint8_t, 6>{};
		std::optional<std::array<uint8_t, 6>> other;
		if (ethernet)
			other = arp_probe(up->ifindex, up->mac, m.ext_addr);
		else
			warn(inst.uplink + " has no Ethernet address: " + format_ipv4(m.ext_addr) +
			     " is not probed for (no ARP on this link); it must be routed to this host");
		if (other) {
			char mac[32];
			std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x",
				      (*other)[0], (*other)[1], (*other)[2], (*other)[3],
				      (*other)[4], (*other)[5]);
			throw Error("mapping '" + m.str() + "': " + format_ipv4(m.ext_addr) +
				    " is in use on the uplink's network (ARP answered by " + mac +
				    "): pick a free address");
		}
		claimed = true;
	}

	auto pins = open_pins(inst);
	Rollback rb;
	if (claimed && o.add_address) {
		uplink_address(nl, up->ifindex, m.ext_addr, prefix_for(sm, cur), true);
		rb.add("address", [&, a = m.ext_addr, pfx = prefix_for(sm, cur)] {
			uplink_address(nl, up->ifindex, a, pfx, false);
		});
	}
	inst.mappings.push_back(sm);
	if (pins) {
		uint32_t ua = ctx.uplink_addr;
		// Whatever the datapath uses is authoritative for `uplink`.
		kvx_cfg kc = read_cfg(pins->cfg.get());
		ua = ntohl(kc.uplink_addr);
		auto r = apply_mappings(pins->fds(), inst.mappings, ua, cur, true);
		for (const auto &e : r.errors)
			warn(e);
		rb.add("map entries", [&] {
			inst.mappings.pop_back();
			apply_mappings(pins->fds(), inst.mappings, ua, cur);
		});
	}
	store.save(cfg);
	rb.commit();
	if (claimed && !o.add_address && up->mac != std::array<uint8_t, 6>{})
		arp_announce(up->ifindex, up->mac, m.ext_addr);
	out << "kvmxdp: mapped " << m.str() << " bridge=" << inst.bridge
	    << (pins ? "" : " (not running: installed at the next attach)") << std::endl;
}

void map_del(const GlobalOptions &g, const MapOptions &o, std::ostream &out)
{
	Mapping m = parse_mapping(o.ext, o.guest, o.proto);
	if (::geteuid() != 0)
		throw Error("map del needs root (CAP_BPF, CAP_NET_ADMIN and bpffs access)");
	ConfigStore store(g.config);
	FileLock lock = store.lock();
	Config cfg = store.load();
	Instance &inst = pick_instance(cfg, o.bridge, g.config);
	auto it = std::find_if(inst.mappings.begin(), inst.mappings.end(),
			       [&](const StaticMapping &sm) { return sm.m == m; });
	if (it == inst.mappings.end())
		throw Error("no mapping '" + m.str() + "' on bridge '" + inst.bridge +
			    "' (see 'kvmxdp map list')");
	StaticMapping gone = *it;
	bool drop_addr = gone.add_address && !ext_used_by_other(inst, gone);
	inst.mappings.erase(it);

	NlSocket nl;
	auto up = find_link(nl, inst.uplink);
	std::optional<NetId> cur;
	if (up)
		cur = network_of_link(nl, up->ifindex, inst.uplink);
	ApplyResult r;
	if (auto pins = open_pins(inst)) {
		kvx_cfg kc = read_cfg(pins->cfg.get());
		r = apply_mappings(pins->fds(), inst.mappings, ntohl(kc.uplink_addr), cur);
		for (const auto &e : r.errors)
			warn(e);
	}
	store.save(cfg);
	if (drop_addr && up && link_has_addr(nl, up->ifindex, gone.m.ext_addr)) {
		try {
			uplink_address(nl, up->ifindex, gone.m.ext_addr, prefix_for(gone, cur),
				       false);
		} catch (const Error &e) {
			warn(e.what());
		}
	}
	out << "kvmxdp: unmapped " << m.str() << " bridge=" << inst.bridge << " (" << r.ct_deleted
	    << " flow(s) dropped)" << std::endl;
}

json mappings_json(const Instance &inst, NlSocket &nl)
{
	std::optional<NetId> cur;
	uint32_t ua = 0;
	try {
		if (auto up = find_link(nl, inst.uplink)) {
			cur = network_of_link(nl, up->ifindex, inst.uplink);
			if (auto a = primary_ipv4(ipv4_addrs(nl, up->ifindex)))
				ua = a->addr;
		}
	} catch (const Error &) {
	}
	json arr = json::array();
	for (const auto &sm : inst.mappings) {
		bool active = mapping_active(sm, cur);
		uint32_t ext = sm.m.ext(ua);
		arr.push_back({
			{"ext", sm.m.ext_str()},
			{"guest", sm.m.guest_str()},
			{"proto", sm.m.one_to_one() ? "any" : sm.m.proto_str()},
			{"type", sm.m.one_to_one() ? "1:1" : "port-forward"},
			{"ext_addr", ext ? json(format_ipv4(ext)) : json(nullptr)},
			{"add_address", sm.add_address},
			{"network", sm.network ? json(sm.network->str()) : json(nullptr)},
			{"state", !cur && sm.network ? "no-uplink-address" :
				  active	     ? "active" :
						       "suspended"},
		});
	}
	return arr;
}

json map_list_json(const GlobalOptions &g, const std::string &bridge)
{
	ConfigStore store(g.config);
	Config cfg = store.load();
	NlSocket nl;
	json out = json::array();
	for (const auto &inst : cfg.instances) {
		if (!bridge.empty() && inst.bridge != bridge)
			continue;
		for (auto &e : mappings_json(inst, nl)) {
			e["bridge"] = inst.bridge;
			out.push_back(e);
		}
	}
	if (!bridge.empty() && !cfg.find(bridge))
		throw Error("bridge '" + bridge + "' is not attached (no instance in " + g.config +
			    ")");
	return {{"mappings", out}};
}

void remove_added_addresses(const Instance &inst)
{
	try {
		NlSocket nl;
		auto up = find_link(nl, inst.uplink);
		if (!up)
			return;
		auto cur = network_of_link(nl, up->ifindex, inst.uplink);
		std::set<uint32_t> done;
		for (const auto &sm : inst.mappings) {
			if (!sm.add_address || done.count(sm.m.ext_addr))
				continue;
			done.insert(sm.m.ext_addr);
			if (link_has_addr(nl, up->ifindex, sm.m.ext_addr))
				uplink_address(nl, up->ifindex, sm.m.ext_addr, prefix_for(sm, cur),
					       false);
		}
	} catch (const Error &e) {
		warn(std::string("removing mapped addresses: ") + e.what());
	}
}

void remove_uplink_address(const std::string &uplink, const AddedAddress &a)
{
	NlSocket nl;
	if (auto up = find_link(nl, uplink))
		uplink_address(nl, up->ifindex, a.addr, a.prefix, false);
}

std::vector<AddedAddress> sync_added_addresses(const std::vector<StaticMapping> &maps,
					       const std::string &uplink,
					       const std::optional<NetId> &cur)
{
	std::vector<AddedAddress> added;
	try {
		NlSocket nl;
		auto up = find_link(nl, uplink);
		if (!up)
			return added;
		// One address may serve several mappings (1:1 plus forwards):
		// it stays while any of them is active.
		std::map<uint32_t, const StaticMapping *> want, all;
		for (const auto &sm : maps) {
			if (!sm.add_address)
				continue;
			all.emplace(sm.m.ext_addr, &sm);
			if (mapping_active(sm, cur))
				want.emplace(sm.m.ext_addr, &sm);
		}
		for (const auto &[addr, sm] : all) {
			bool on = link_has_addr(nl, up->ifindex, addr);
			if (want.count(addr) && !on) {
				uplink_address(nl, up->ifindex, addr, prefix_for(*sm, cur), true);
				added.push_back({addr, prefix_for(*sm, cur)});
			} else if (!want.count(addr) && on) {
				uplink_address(nl, up->ifindex, addr, prefix_for(*sm, cur), false);
			}
		}
	} catch (const Error &e) {
		warn(std::string("mapped addresses on the uplink: ") + e.what());
	}
	return added;
}

} // namespace kvmxdp
