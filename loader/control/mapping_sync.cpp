// SPDX-License-Identifier: GPL-2.0
#include "control/mapping_sync.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <tuple>
#include <type_traits>
#include <unordered_set>

#include "control/family.hpp"
#include "control/gc.hpp"

#include "base/error.hpp"
#include "base/fs.hpp"
#include "base/log.hpp"
#include "base/netaddr.hpp"
#include "base/sysctl.hpp"
#include "kernel/maps.hpp"
#include "kernel/arp.hpp"
#include "kernel/netlink.hpp"
#include "kernel/routes.hpp"
#include "model/ipv6.hpp"
#include "model/libvirt.hpp"

namespace kvmxdp {

using nlohmann::json;

namespace {

// The pair bookkeeping below is one code for kvx_bind and kvx_bind6
// (control/family.hpp): F::Entry is the mapping's entry type.
template <typename F>
struct Sync;
template <>
struct Sync<Family4> {
	using Entry = BindEntry;
	static constexpr const char *kBind = "kvx_bind";
};
template <>
struct Sync<Family6> {
	using Entry = BindEntry6;
	static constexpr const char *kBind = "kvx_bind6";
};

template <typename K>
bool key_less(const K &a, const K &b)
{
	return std::memcmp(&a, &b, sizeof(a)) < 0;
}
template <typename F>
using KeyLess = bool (*)(const typename F::BindKey &, const typename F::BindKey &);
template <typename F>
using Want = std::map<typename F::BindKey, typename F::BindVal, KeyLess<F>>;

template <typename F>
bool same_target(const typename F::BindVal &a, const typename F::BindVal &b)
{
	return F::val_addr(a) == F::val_addr(b) && F::bind(a).port == F::bind(b).port &&
	       F::bind(a).flags == F::bind(b).flags;
}

template <typename F>
std::string bind_str(const typename F::BindKey &k)
{
	std::string p = k.proto == IPPROTO_TCP ? "tcp" : k.proto == IPPROTO_UDP ? "udp" : "any";
	const std::string a = F::str(key_addr<F>(k));
	if (!k.proto)
		return a + "/" + p;
	const std::string port = std::to_string(ntohs(k.port));
	return (std::is_same_v<F, Family6> ? "[" + a + "]" : a) + ":" + port + "/" + p;
}

template <typename F>
std::string guest_str(const typename F::BindKey &k, const typename F::BindVal &v)
{
	const std::string a = F::str(F::val_addr(v));
	if (!k.proto)
		return a;
	const std::string port = std::to_string(ntohs(F::bind(v).port));
	return (std::is_same_v<F, Family6> ? "[" + a + "]" : a) + ":" + port;
}

// Static entries no mapping wants (any more, or not with this target):
// OUT halves first, then IN halves; then the flows made through a deleted
// IN half: their packets could only go to the host now (and a stale flow
// would pin the old binding).
template <typename F>
void remove_stale(int bind_fd, int ct_fd, const Want<F> &want, ApplyResult &r)
{
	using Ext = typename F::Ext;
	const auto entries = dump_hash<typename F::BindKey, typename F::BindVal>(bind_fd);
	std::unordered_set<Ext, typename F::ExtHash> gone_in, gone_1to1; // proto, addr, port
	for (int dir : {KVX_BIND_OUT, KVX_BIND_IN}) {
		for (const auto &[k, v] : entries) {
			if (k.dir != dir || !(F::bind(v).flags & KVX_BIND_F_STATIC))
				continue;
			auto it = want.find(k);
			if (it != want.end() && same_target<F>(it->second, v))
				continue;
			if (bpf_map_delete_elem(bind_fd, &k) == 0)
				r.bind_deleted++;
			if (dir == KVX_BIND_IN) {
				if (F::bind(v).flags & KVX_BIND_F_ONE_TO_ONE)
					gone_1to1.insert(F::ext(0, key_addr<F>(k), 0));
				else
					gone_in.insert(F::ext(k.proto, key_addr<F>(k), k.port));
			}
		}
	}
	if ((gone_in.empty() && gone_1to1.empty()) || ct_fd < 0)
		return;
	for (const auto &[k, v] : dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd)) {
		const kvx_ct_val &c = F::ct(v);
		if (!(c.flags & KVX_CT_F_STATIC))
			continue;
		bool hit = (c.flags & KVX_CT_F_ONE_TO_ONE) ?
				   gone_1to1.count(F::ext(0, F::ext_addr(v), 0)) != 0 :
				   gone_in.count(F::ext(k.proto, F::ext_addr(v), c.ext_port)) != 0;
		if (hit && bpf_map_delete_elem(ct_fd, &k) == 0)
			r.ct_deleted++;
	}
}

// Install, mapping by mapping: its IN halves, then its OUT halves.
template <typename F>
void install(int bind_fd, int ct_fd, const std::vector<StaticMapping> &mappings,
	     const std::vector<std::vector<typename Sync<F>::Entry>> &per_mapping, bool strict_last,
	     ApplyResult &r)
{
	using BindKey = typename F::BindKey;
	using BindVal = typename F::BindVal;
	std::unordered_set<typename F::Ext, typename F::ExtHash> evicted; // proto, addr, port
	for (size_t i = 0; i < mappings.size(); i++) {
		const auto &ents = per_mapping[i];
		if (ents.empty())
			continue;
		const bool strict = strict_last && i + 1 == mappings.size();
		std::vector<BindKey> added;
		std::string conflict;
		for (const auto &e : ents) {
			if (e.key.dir != KVX_BIND_IN)
				continue;
			// A datapath claim between the lookup and the insert
			// is evicted on the next round.
			bool ours = false, done = false;
			for (int round = 0; round < 3 && !done && conflict.empty(); round++) {
				BindVal have{};
				int flag = BPF_NOEXIST;
				if (bpf_map_lookup_elem(bind_fd, &e.key, &have) == 0) {
					const uint16_t hf = F::bind(have).flags;
					if ((hf & KVX_BIND_F_STATIC) &&
					    same_target<F>(have, e.val)) {
						ours = true; // MACs learnt by the datapath
						break;
					}
					if (hf & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) {
						conflict =
							"external " + bind_str<F>(e.key) +
							" is in use by another mapping, to guest " +
							guest_str<F>(e.key, have);
						break;
					}
					// A guest's dynamic binding holds the port
					// (the pool and the mappings share the
					// uplink's ports): the admin's mapping wins,
					// or any guest could keep a forward from
					// being made or restored by holding its
					// port.  The guest's OUT half goes first
					// (pair order, abi.h); the IN half is then
					// replaced in one update.  Its port count
					// (kvx_gports) is recounted by the daemon's
					// next sweep.
					release_out_half(bind_fd, e.key, have);
					evicted.insert(F::ext(e.key.proto, key_addr<F>(e.key),
							      e.key.port));
					log_note("mapping '" + mappings[i].m.str() +
						 "': external " + bind_str<F>(e.key) +
						 " taken from a NAT binding of guest " +
						 guest_str<F>(e.key, have) +
						 " (its flows through it flushed; its next "
						 "packet gets another port)");
					flag = BPF_ANY;
				}
				if (bpf_map_update_elem(bind_fd, &e.key, &e.val, flag) == 0)
					done = true;
				else if (errno != EEXIST)
					conflict = "external " + bind_str<F>(e.key) + ": " +
						   std::strerror(errno);
			}
			if (ours)
				continue;
			if (!done && conflict.empty())
				conflict = "external " + bind_str<F>(e.key) +
					   ": taken by new NAT bindings again and again";
			if (!conflict.empty())
				break;
			added.push_back(e.key);
			r.bind_added++;
		}
		if (!conflict.empty()) {
			for (const auto &k : added)
				bpf_map_delete_elem(bind_fd, &k);
			r.bind_added -= added.size();
			std::string msg = "mapping '" + mappings[i].m.str() + "': " + conflict;
			if (strict)
				throw Error(msg);
			r.errors.push_back(msg);
			continue;
		}
		for (const auto &e : ents) {
			if (e.key.dir != KVX_BIND_OUT)
				continue;
			BindVal have{};
			if (bpf_map_lookup_elem(bind_fd, &e.key, &have) == 0 &&
			    (F::bind(have).flags & KVX_BIND_F_STATIC) &&
			    same_target<F>(have, e.val))
				continue;
			// A dynamic OUT binding of this guest port may exist:
			// the mapping replaces it (its IN half expires in GC).
			if (bpf_map_update_elem(bind_fd, &e.key, &e.val, BPF_ANY) != 0) {
				r.errors.push_back("mapping '" + mappings[i].m.str() +
						   "': insert " + bind_str<F>(e.key) + ": " +
						   std::strerror(errno));
				continue;
			}
			r.bind_added++;
		}
	}

	// The evicted bindings' flows: a packet of one could only find the
	// mapping's guest (inbound) or a pair that is no longer its own
	// (outbound, which the datapath re-binds to a new port anyway).
	// Flushed rather than left to expire: they would hold the guest's flow
	// quota and keep looking bound to a port that is now the mapping's.
	if (evicted.empty() || ct_fd < 0)
		return;
	for (const auto &[k, v] : dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd)) {
		if (F::ct(v).flags & KVX_CT_F_STATIC)
			continue;
		if (evicted.count(F::ext(k.proto, F::ext_addr(v), F::ct(v).ext_port)) &&
		    bpf_map_delete_elem(ct_fd, &k) == 0)
			r.ct_deleted++;
	}
}

kvx_extaddr6_key ext6_key(const Ipv6Addr &a)
{
	kvx_extaddr6_key k{};
	std::memcpy(k.addr, a.data(), sizeof(k.addr));
	return k;
}

// The IPv6 mappings in kvx_bind6, on NAT66's current address (kvx_cfg6,
// which the daemon follows: `[uplink]` forwards move with it).  A mapping
// off its network (mapping_active against cur->v6) is suspended as an IPv4
// one: no pairs, and its address, unless an active mapping has it too, is
// out of kvx_extaddr6: not answered for, and on its return new to the map,
// so held (PROBING) until a new duplicate address detection (RFC 4862
// 5.4: another node may have taken it meanwhile).  A literal address is
// announced only after its duplicate address detection (kvx_extaddr6);
// until then its mappings have no pairs.
void apply_mappings6(const MapFds &fds, const std::vector<StaticMapping> &mappings,
		     const std::optional<NetId> &cur, bool strict_last, const DadVerdicts &dad,
		     ApplyResult &r)
{
	Ipv6Addr up{};
	// Literal addresses are announced (DAD, NAs, NS answers) only while
	// NAT66 runs: off or in relay mode the datapath serves none of them,
	// and claiming them on the LAN would pull their traffic to nowhere.
	bool nat66 = true, relay = false;
	std::optional<Ipv6Net> relay_prefix;
	if (fds.cfg6 >= 0) {
		const kvx_cfg6 c = read_cfg6(fds.cfg6);
		nat66 = c.mode == KVX_V6_NAT66;
		relay = c.mode == KVX_V6_RELAY;
		if (relay && c.relay_len) {
			Ipv6Addr a;
			std::memcpy(a.data(), c.relay_prefix, a.size());
			relay_prefix = network_of6(a, c.relay_len);
		}
		if (nat66)
			std::memcpy(up.data(), c.uplink_addr, up.size());
	}
	std::map<Ipv6Addr, Ext6State> ext;
	if (fds.extaddr6 >= 0) {
		std::map<Ipv6Addr, uint32_t> have;
		for (const auto &[k, v] :
		     dump_hash<kvx_extaddr6_key, kvx_extaddr_val>(fds.extaddr6)) {
			Ipv6Addr a;
			std::memcpy(a.data(), k.addr, a.size());
			have[a] = v.flags;
		}
		for (const StaticMapping &sm : mappings) {
			// The uplink's own address (a forward spelt literally) is
			// the host's: its stack answers for it.
			// Pending: no DAD, no announcement (as IPv4's own_addr).
			if (!nat66 || !sm.m.v6 || sm.m.opens() || !mapping_active(sm, cur) ||
			    sm.m.ext_uplink || sm.m.ext_addr6 == up || ext.count(sm.m.ext_addr6))
				continue;
			const Ipv6Addr &a = sm.m.ext_addr6;
			auto h = have.find(a);
			auto v = dad.find(a);
			ext[a] = decide_ext6(h == have.end() ? std::nullopt :
							       std::optional<uint32_t>(h->second),
					     v == dad.end() ? std::nullopt :
							      std::optional<DadVerdict>(v->second));
		}
		for (const auto &[a, st] : ext) {
			if (st.held)
				r.held6[a] = st.flags;
			else
				r.announced_all6.insert(a);
			if (st.announce_now)
				r.announced6.push_back(a);
		}
	}
	std::vector<std::vector<BindEntry6>> per_mapping(mappings.size());
	Want<Family6> want(&key_less<kvx_bind6_key>);
	for (size_t i = 0; i < mappings.size(); i++) {
		const Mapping &m = mappings[i].m;
		// Relay mappings in relay mode only (and in its prefix: map
		// list calls others suspended), NAT66's never there (the relay
		// datapath takes only pairs of an address to itself).
		if (!m.v6 || m.opens() != relay || !mapping_active(mappings[i], cur) ||
		    (m.opens() && relay_prefix && !relay_prefix->contains(m.ext_addr6)) ||
		    (up == Ipv6Addr{} && m.ext_uplink) ||
		    (!m.ext_uplink && r.held6.count(m.ext_addr6)))
			continue;
		per_mapping[i] = mapping_entries6(m, up);
		for (const auto &e : per_mapping[i])
			want[e.key] = e.val;
	}
	// As kvx_extaddr's flags: a held address stops being answered before
	// its pairs go; a free one is answered once its pairs exist; an
	// address no mapping has any more goes last.
	auto write_flags = [&](bool held) {
		for (const auto &[a, st] : ext) {
			if (st.held != held)
				continue;
			const kvx_extaddr6_key k = ext6_key(a);
			kvx_extaddr_val have{}, v{};
			v.flags = st.flags;
			if (bpf_map_lookup_elem(fds.extaddr6, &k, &have) == 0 &&
			    have.flags == v.flags)
				continue;
			if (bpf_map_update_elem(fds.extaddr6, &k, &v, BPF_ANY) != 0)
				r.errors.push_back("kvx_extaddr6 " + format_ipv6(a) + ": " +
						   std::strerror(errno));
		}
	};
	if (fds.extaddr6 >= 0)
		write_flags(true);
	remove_stale<Family6>(fds.bind6, fds.ct6, want, r);
	install<Family6>(fds.bind6, fds.ct6, mappings, per_mapping, strict_last, r);
	if (fds.extaddr6 < 0)
		return;
	write_flags(false);
	for (const auto &[k, v] : dump_hash<kvx_extaddr6_key, kvx_extaddr_val>(fds.extaddr6)) {
		Ipv6Addr a;
		std::memcpy(a.data(), k.addr, a.size());
		if (!ext.count(a))
			bpf_map_delete_elem(fds.extaddr6, &k);
	}
}

} // namespace

size_t reprobe_mapped6(int extaddr6_fd)
{
	if (extaddr6_fd < 0)
		return 0;
	size_t n = 0;
	for (const auto &[k, v] : dump_hash<kvx_extaddr6_key, kvx_extaddr_val>(extaddr6_fd)) {
		if (!(v.flags & KVX_EXT_F_ARP))
			continue;
		kvx_extaddr_val held{};
		held.flags = KVX_EXT_F_PROBING;
		if (bpf_map_update_elem(extaddr6_fd, &k, &held, BPF_EXIST) == 0)
			n++;
	}
	return n;
}

ApplyResult apply_mappings(const MapFds &fds, const std::vector<StaticMapping> &mappings,
			   uint32_t uplink_addr, const std::optional<NetId> &cur, bool strict_last,
			   const ProbeVerdicts &probed, const DadVerdicts &dad)
{
	ApplyResult r;
	// Desired state.
	std::vector<std::vector<BindEntry>> per_mapping(mappings.size());
	Want<Family4> want(&key_less<kvx_bind_key>);
	std::map<uint32_t, uint32_t> ext_flags; // be32 -> flags
	std::map<uint32_t, bool> ext_any_active;
	// A pending mapping (libvirt's hook could not make it yet) claims no
	// address: an entry in kvx_extaddr makes the datapath answer ARP for
	// it or, suspended, treat packets from it as martians.  Its address
	// may be anybody's (the LAN's router, a remote host), so that would
	// blackhole the host's own traffic from it.  It gets its entry when
	// the daemon makes it (promote_pending, probing a 1:1 address first).
	const auto own_addr = [&](const StaticMapping &sm) {
		return !sm.m.v6 && sm.pending.empty() && !sm.m.ext_uplink &&
		       sm.m.ext_addr != uplink_addr;
	};
	for (const StaticMapping &sm : mappings) {
		if (!own_addr(sm))
			continue;
		uint32_t be = htonl(sm.m.ext_addr);
		ext_flags[be] |= sm.add_address ? 0 : KVX_EXT_F_ARP;
		ext_any_active[be] = ext_any_active[be] || mapping_active(sm, cur);
	}
	// Addresses coming back from suspension wait for their probe.
	const auto have_flags = dump_hash<uint32_t, kvx_extaddr_val>(fds.extaddr);
	for (auto &[be, f] : ext_flags) {
		if (!ext_any_active[be]) {
			f |= KVX_EXT_F_SUSPENDED;
			continue;
		}
		auto prev = std::find_if(have_flags.begin(), have_flags.end(),
					 [be = be](const auto &kv) { return kv.first == be; });
		if (prev == have_flags.end() || !(prev->second.flags & KVX_EXT_F_SUSPENDED))
			continue;
		auto v = probed.find(ntohl(be));
		if (v != probed.end() && v->second == ProbeVerdict::Free) {
			r.resumed.push_back(ntohl(be));
			continue;
		}
		const uint32_t why =
			(v != probed.end() || (prev->second.flags & KVX_EXT_F_CONFLICT)) ?
				KVX_EXT_F_CONFLICT :
				KVX_EXT_F_PROBING;
		f |= KVX_EXT_F_SUSPENDED | why;
		r.held[ntohl(be)] = why;
	}
	for (size_t i = 0; i < mappings.size(); i++) {
		const StaticMapping &sm = mappings[i];
		if (!mapping_active(sm, cur) || (own_addr(sm) && r.held.count(sm.m.ext_addr)))
			continue;
		per_mapping[i] = mapping_entries(sm.m, uplink_addr);
		for (const auto &e : per_mapping[i])
			want[e.key] = e.val;
	}

	remove_stale<Family4>(fds.bind, fds.ct, want, r);

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

	install<Family4>(fds.bind, fds.ct, mappings, per_mapping, strict_last, r);
	write_flags(false);
	if (fds.bind6 >= 0)
		apply_mappings6(fds, mappings, cur, strict_last, dad, r);
	return r;
}

void hold_for_probe(int extaddr_fd, uint32_t addr)
{
	const uint32_t be = htonl(addr);
	kvx_extaddr_val v{};
	if (bpf_map_lookup_elem(extaddr_fd, &be, &v) == 0)
		return;
	v.flags = KVX_EXT_F_SUSPENDED | KVX_EXT_F_PROBING;
	if (bpf_map_update_elem(extaddr_fd, &be, &v, BPF_NOEXIST) != 0 && errno != EEXIST)
		throw_errno("hold for its probe in kvx_extaddr", format_ipv4(addr));
}

std::optional<NetId> network_of_link(NlSocket &nl, int ifindex, bool resolve)
{
	NetId id;
	auto a = primary_ipv4(ipv4_addrs(nl, ifindex));
	if (!a) { // an IPv6-only network (or no network): IPv6 alone
		id.v6 = uplink6_net(nl, ifindex, resolve);
		return id.v6 ? std::optional<NetId>(id) : std::nullopt;
	}
	id.net = network_of(a->addr, a->prefix);
	if (auto gw = default_gateway(ipv4_routes(nl), ifindex)) {
		id.gateway = *gw;
		if (auto mac = neighbour_mac(nl, ifindex, *gw)) {
			id.gateway_mac = format_mac(*mac);
		} else if (resolve) {
			try {
				auto link = find_link_by_index(nl, ifindex);
				auto mac = link ? arp_probe(ifindex, link->mac, *gw, 1, 300) :
						  std::nullopt;
				if (mac)
					id.gateway_mac = format_mac(*mac);
			} catch (const Error &) {
				// No raw socket here: the MAC stays unknown.
			}
		}
	}
	id.v6 = uplink6_net(nl, ifindex, resolve);
	return id;
}

namespace {

// Makes the kernel resolve an IPv6 neighbour (its own Neighbour
// Solicitation, asked for over netlink: nothing is sent to the router but
// the NS), then waits up to ms for the neighbour table to hold it.  After
// an attempt that found nothing, not again for 10 s: the daemon reads the
// network every second, and a router that does not answer (no carrier)
// must not cost it 300 ms each time.
std::optional<MacAddr> resolve_neighbour6(NlSocket &nl, int ifindex, const Ipv6Addr &addr, int ms)
{
	using clock = std::chrono::steady_clock;
	static std::map<std::pair<int, Ipv6Addr>, clock::time_point> failed;
	const auto now = clock::now();
	const std::pair<int, Ipv6Addr> key{ifindex, addr};
	if (auto it = failed.find(key);
	    it != failed.end() && now - it->second < std::chrono::seconds(10))
		return std::nullopt;
	try {
		neighbour_solicit6(nl, ifindex, addr);
		for (int waited = 0; waited < ms; waited += 50) {
			::usleep(50 * 1000);
			if (auto mac = neighbour_mac6(nl, ifindex, addr)) {
				failed.erase(key);
				return mac;
			}
		}
	} catch (const Error &) {
	}
	if (failed.size() >= 64)
		failed.clear();
	failed[key] = now;
	return std::nullopt;
}

} // namespace

std::optional<Uplink6Net> uplink6_net(NlSocket &nl, int ifindex, bool resolve)
{
	const std::vector<Ipv6Route> routes = ipv6_routes(nl, ifindex);
	Uplink6Net v6;
	for (const Ipv6Prefix &p : onlink_prefixes(ipv6_addrs(nl, ifindex), routes))
		v6.prefixes.push_back(p.net);
	if (v6.prefixes.empty())
		return std::nullopt;
	// Sorted: the kernel's order of routes and addresses is no identity.
	std::sort(v6.prefixes.begin(), v6.prefixes.end());
	// Every default router, preferred first (model/ipv6.hpp
	// default_routers6; their MACs from one neighbour dump).
	const std::vector<Ipv6Addr> routers = default_routers6(routes, kMaxRouters6);
	if (routers.empty())
		return v6;
	auto macs = neighbour_macs6(nl, ifindex, routers);
	for (size_t i = 0; i < routers.size(); i++) {
		// The routers' RAs carry their link-layer addresses (the
		// kernel's entries); without one, resolve asks as IPv4's ARP
		// probe does (each router at most every 10 s when it gets no
		// answer: resolve_neighbour6).
		if (!macs[i] && resolve)
			macs[i] = resolve_neighbour6(nl, ifindex, routers[i], 300);
		const std::string m = macs[i] ? format_mac(*macs[i]) : std::string();
		if (i == 0) {
			v6.router = routers[i];
			v6.router_mac = m;
		} else {
			v6.other_routers.push_back({routers[i], m});
		}
	}
	return v6;
}

// Is m's first IN pair in kvx_bind6 as apply_mappings writes it (its MACs
// aside)?  The daemon takes a suspended mapping's pairs out.
static bool installed6(int bind6_fd, const Mapping &m, const Ipv6Addr &ua6)
{
	if (bind6_fd < 0)
		return false;
	for (const BindEntry6 &e : mapping_entries6(m, ua6)) {
		if (e.key.dir != KVX_BIND_IN)
			continue;
		kvx_bind6_val have{};
		return bpf_map_lookup_elem(bind6_fd, &e.key, &have) == 0 &&
		       same_target<Family6>(have, e.val);
	}
	return false;
}

// The guest a relay mapping recorded as its owner (its IN half's MAC, set
// by the first packet that reached it; relay6.h relay6_mapping_owner), or
// null: none yet, not installed, not a relay mapping.
static json relay_owner(int bind6_fd, const Mapping &m)
{
	if (bind6_fd < 0 || !m.opens())
		return nullptr;
	for (const BindEntry6 &e : mapping_entries6(m, {})) {
		if (e.key.dir != KVX_BIND_IN)
			continue;
		kvx_bind6_val have{};
		MacAddr mac{};
		if (bpf_map_lookup_elem(bind6_fd, &e.key, &have) != 0)
			return nullptr;
		std::memcpy(mac.data(), have.bind.guest_mac, mac.size());
		return mac == MacAddr{} ? json(nullptr) : json(format_mac(mac));
	}
	return nullptr;
}

json mappings_json(const Instance &inst, NlSocket &nl, int extaddr_fd, int cfg6_fd, int extaddr6_fd,
		   int bind6_fd)
{
	// NAT66's address as the datapath has it (where `[uplink]` points).
	Ipv6Addr ua6{};
	// The mode running (unset: not running) and relay's prefix now.
	std::optional<bool> relay;
	std::optional<Ipv6Net> relay_prefix;
	if (cfg6_fd >= 0) {
		try {
			const kvx_cfg6 c = read_cfg6(cfg6_fd);
			relay = c.mode == KVX_V6_RELAY;
			if (*relay && c.relay_len) {
				Ipv6Addr a;
				std::memcpy(a.data(), c.relay_prefix, a.size());
				relay_prefix = network_of6(a, c.relay_len);
			}
			if (c.mode == KVX_V6_NAT66)
				std::memcpy(ua6.data(), c.uplink_addr, ua6.size());
		} catch (const Error &) {
		}
	}
	std::map<uint32_t, uint32_t> ext_flags; // host order -> KVX_EXT_F_*
	if (extaddr_fd >= 0) {
		try {
			for (const auto &[be, v] : dump_hash<uint32_t, kvx_extaddr_val>(extaddr_fd))
				ext_flags[ntohl(be)] = v.flags;
		} catch (const Error &) {
		}
	}
	// IPv6 mapped addresses held by their duplicate address detection.
	std::map<Ipv6Addr, uint32_t> ext6_flags;
	if (extaddr6_fd >= 0) {
		try {
			for (const auto &[k, v] :
			     dump_hash<kvx_extaddr6_key, kvx_extaddr_val>(extaddr6_fd)) {
				Ipv6Addr a;
				std::memcpy(a.data(), k.addr, a.size());
				ext6_flags[a] = v.flags;
			}
		} catch (const Error &) {
			extaddr6_fd = -1;
		}
	}
	std::optional<NetId> cur;
	uint32_t ua = 0;
	try {
		if (auto up = find_link(nl, inst.uplink)) {
			// As the daemon sees it (it resolves an unknown gateway).
			cur = network_of_link(nl, up->ifindex, true);
			if (auto a = primary_ipv4(ipv4_addrs(nl, up->ifindex)))
				ua = a->addr;
		}
	} catch (const Error &) {
	}
	json arr = json::array();
	for (const auto &sm : inst.mappings) {
		if (sm.m.v6) {
			// Active on its network (an untied one wherever the
			// address is known).  Not running: its address is not
			// known.
			const Ipv6Addr ext = sm.m.ext6(ua6);
			const bool known = ext != Ipv6Addr{};
			// While the uplink shows no whole IPv6 network (its
			// router's last RA withdrew it, a router restarting,
			// no global prefix for a moment) the daemon judges on
			// the one it last saw whole (judged_network), which
			// only its sync knows: what it did is in kvx_bind6.
			// Only on its own prefix (or none shown): a network
			// whose first RA carries another prefix and no router
			// yet is another network, whatever the daemon still
			// has in the datapath.
			const bool active = mapping_active(sm, cur);
			const bool whole = cur && cur->v6 && cur->v6->router != Ipv6Addr{};
			const bool own_prefix =
				sm.network6 &&
				(!cur || !cur->v6 ||
				 std::find(cur->v6->prefixes.begin(), cur->v6->prefixes.end(),
					   sm.network6->prefix) != cur->v6->prefixes.end());
			const bool kept = known && own_prefix && sm.pending.empty() && !whole &&
					  !active && installed6(bind6_fd, sm.m, ua6);
			const bool on_net = kept || active;
			// A literal address of a running instance: announced
			// once DAD found it free (no entry yet: the daemon's
			// DAD is about to run).
			std::string state = !known ? "no-uplink-address" :
					    kept   ? "active" :
					    (!cur || !cur->v6) && sm.network6 ?
						   "no-uplink-address" :
					    !on_net ? "suspended" :
						      "active";
			json reason =
				!known ? json("the uplink has no NAT66 address (or the "
					      "instance is not running)") :
				kept   ? json("kept on " + sm.network6->str() +
					      ": the uplink shows no default router (or no global "
						"prefix) for now, which is no other network") :
				state == "no-uplink-address" ?
				       json("the uplink has no global IPv6 prefix: its IPv6 "
					    "network is not known") :
				!on_net ? json("made on another network") :
					  json(nullptr);
			// Each kind in its mode only (apply_mappings6), a relay
			// mapping in relay's prefix only.
			if (relay && sm.m.opens() != *relay) {
				state = "suspended";
				reason =
					sm.m.opens() ?
						"a relay mapping: served while the instance's IPv6 "
						"runs in relay mode (attach --ipv6 relay)" :
						"IPv6 runs in relay mode: NAT66 mappings are served "
						"in NAT66 mode";
			} else if (sm.m.opens() && on_net && relay_prefix &&
				   !relay_prefix->contains(sm.m.ext_addr6)) {
				state = "suspended";
				reason = "not in the relay prefix " + relay_prefix->str() +
					 ", where the guests take their addresses now";
			} else if (on_net && !sm.m.opens() && !sm.m.ext_uplink &&
				   sm.m.ext_addr6 != ua6 && extaddr6_fd >= 0) {
				auto f = ext6_flags.find(sm.m.ext_addr6);
				const uint32_t fl = f == ext6_flags.end() ? KVX_EXT_F_PROBING :
									    f->second;
				if (fl & KVX_EXT_F_CONFLICT) {
					state = "conflict";
					reason = "another node on the uplink's network has " +
						 format_ipv6(ext) +
						 " (duplicate address detection, RFC 4862): not "
						 "announced nor translated, checked again later";
				} else if (fl & KVX_EXT_F_PROBING) {
					state = "probing";
					reason = "duplicate address detection of " +
						 format_ipv6(ext) +
						 " (RFC 4862) before it is announced";
				}
			}
			arr.push_back({
				{"family", "ipv6"},
				{"ext", sm.m.ext_str()},
				{"guest", sm.m.guest_str()},
				{"proto", sm.m.one_to_one() ? "any" : sm.m.proto_str()},
				{"type", sm.m.opens()	   ? "relay" :
					 sm.m.one_to_one() ? "1:1" :
							     "port-forward"},
				{"ext_addr", known ? json(format_ipv6(ext)) : json(nullptr)},
				{"add_address", false},
				{"network", sm.network6 ? json(sm.network6->str()) : json(nullptr)},
				{"owner", relay_owner(bind6_fd, sm.m)},
				{"state", !sm.pending.empty() ? "pending" : state},
				{"reason",
				 !sm.pending.empty() ? json(pending_reason(sm.pending)) : reason},
				{"vm", sm.vm.empty() ? json(nullptr) : json(sm.vm)},
				{"libvirt_network", sm.libvirt_network.empty() ?
							    json(nullptr) :
							    json(sm.libvirt_network)},
			});
			continue;
		}
		bool active = mapping_active(sm, cur);
		uint32_t ext = sm.m.ext(ua);
		// Held back on its own network by the daemon's probe (the
		// datapath sees it as suspended).  Still flagged suspended
		// without a finding: the daemon has not seen the network come
		// back yet, and will probe first (apply_mappings).
		uint32_t held = 0;
		if (active && !sm.m.ext_uplink) {
			auto f = ext_flags.find(sm.m.ext_addr);
			if (f != ext_flags.end() && (f->second & KVX_EXT_F_SUSPENDED))
				held = f->second & KVX_EXT_F_CONFLICT ? KVX_EXT_F_CONFLICT :
									KVX_EXT_F_PROBING;
		}
		std::string state = !sm.pending.empty()		      ? "pending" :
				    (!cur || !cur->net) && sm.network ? "no-uplink-address" :
				    !active			      ? "suspended" :
				    held & KVX_EXT_F_CONFLICT	      ? "conflict" :
				    held			      ? "probing" :
									"active";
		json reason = nullptr;
		// Bounded and printable whatever the config holds (it may quote
		// a libvirt XML's text).
		if (state == "pending")
			reason = pending_reason(sm.pending);
		else if (state == "no-uplink-address")
			reason = "the uplink has no IPv4 address: its IPv4 network is not known";
		else if (state == "suspended")
			reason = "made on another network";
		else if (state == "conflict")
			reason = "another host answers ARP for " + format_ipv4(sm.m.ext_addr) +
				 " on this network (RFC 5227 probe): kept suspended, probed "
				 "again later";
		else if (state == "probing")
			reason = "back on its network: probing " + format_ipv4(sm.m.ext_addr) +
				 " (RFC 5227) before resuming";
		arr.push_back({
			{"family", "ipv4"},
			{"ext", sm.m.ext_str()},
			{"guest", sm.m.guest_str()},
			{"proto", sm.m.one_to_one() ? "any" : sm.m.proto_str()},
			{"type", sm.m.one_to_one() ? "1:1" : "port-forward"},
			{"ext_addr", ext ? json(format_ipv4(ext)) : json(nullptr)},
			{"add_address", sm.add_address},
			{"network", sm.network ? json(sm.network->str()) : json(nullptr)},
			{"owner", nullptr},
			{"state", state},
			{"reason", reason},
			{"vm", sm.vm.empty() ? json(nullptr) : json(sm.vm)},
			{"libvirt_network",
			 sm.libvirt_network.empty() ? json(nullptr) : json(sm.libvirt_network)},
		});
	}
	return arr;
}

void remove_added_addresses(const Instance &inst)
{
	try {
		NlSocket nl;
		auto up = find_link(nl, inst.uplink);
		if (!up)
			return;
		std::set<uint32_t> done;
		for (const auto &sm : inst.mappings) {
			if (!sm.add_address || sm.m.v6 || done.count(sm.m.ext_addr))
				continue;
			done.insert(sm.m.ext_addr);
			remove_ipv4_address(nl, up->ifindex, sm.m.ext_addr);
		}
	} catch (const Error &e) {
		log_warn(std::string("removing mapped addresses: ") + e.what());
	}
}

void remove_uplink_address(const std::string &uplink, const AddedAddress &a)
{
	NlSocket nl;
	if (auto up = find_link(nl, uplink))
		remove_ipv4_address(nl, up->ifindex, a.addr);
}

std::vector<AddedAddress> sync_added_addresses(const std::vector<StaticMapping> &mappings,
					       const std::string &uplink,
					       const std::optional<NetId> &cur,
					       const std::map<uint32_t, uint32_t> &held)
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
		for (const auto &sm : mappings) {
			if (!sm.add_address || sm.m.v6)
				continue;
			all.emplace(sm.m.ext_addr, &sm);
			// A held address stays off: the kernel would answer
			// ARP for it as the host's own.
			if (mapping_active(sm, cur) && !held.count(sm.m.ext_addr))
				want.emplace(sm.m.ext_addr, &sm);
		}
		for (const auto &[addr, sm] : all) {
			bool on = has_ipv4_address(nl, up->ifindex, addr);
			if (want.count(addr) && !on) {
				const uint8_t prefix = added_address_prefix(*sm, cur);
				add_ipv4_address(nl, up->ifindex, addr, prefix,
						 added_address_label(up->ifindex));
				added.push_back({addr, prefix});
			} else if (!want.count(addr) && on) {
				remove_ipv4_address(nl, up->ifindex, addr);
			}
		}
	} catch (const Error &e) {
		log_warn(std::string("mapped addresses on the uplink: ") + e.what());
	}
	return added;
}

MetadataClaims::MetadataClaims(const std::optional<std::vector<std::string>> &allow,
			       uint32_t uplink_addr, const Ipv6Addr &uplink_addr6)
	: uplink_addr_(uplink_addr)
	, uplink_addr6_(uplink_addr6)
{
	if (allow)
		allow_ = parse_metadata_allow(*allow);
}

std::string MetadataClaims::refusal(const Mapping &m, bool force, bool *waits)
{
	if (waits)
		*waits = false;
	std::optional<uint16_t> listened;
	bool ephemeral = false;
	// An IPv4 forward against IPv4's listeners and [::]'s (which take
	// IPv4 too unless v6only), an IPv6 one against [::]'s and its
	// address's (none known for [uplink] yet: [::]'s).
	if (!m.one_to_one()) {
		const auto proto = static_cast<uint8_t>(m.proto);
		auto it = listening_.find(proto);
		if (it == listening_.end())
			it = listening_.emplace(proto, ListeningSockets::read(proto)).first;
		auto first = [&](const PortRange &ports) {
			return m.v6 ? it->second.first_listening6(m.ext6(uplink_addr6_), ports,
								  kFirstLoginUid) :
				      it->second.first_listening(m.ext(uplink_addr_), ports,
								 kFirstLoginUid);
		};
		// An unconnected UDP socket is listed as bound whether a
		// service bound it or a client's sendto() took an ephemeral
		// port: only ports outside the kernel's ephemeral range are
		// surely a service's.
		std::optional<PortRange> eph;
		if (proto == IPPROTO_UDP) {
			if (!ephemeral_) {
				ephemeral_.emplace();
				try {
					if (auto t = Sysctl().try_read(kLocalPortRangeKey))
						ephemeral_->emplace(parse_local_port_range(*t));
				} catch (const Error &) {
					// Unreadable: every UDP socket counts.
				}
			}
			eph = *ephemeral_;
		}
		const PortRange &p = m.ext_ports;
		if (!eph || !eph->overlaps(p)) {
			listened = first(p);
		} else {
			if (p.lo < eph->lo)
				listened = first({p.lo, static_cast<uint16_t>(eph->lo - 1)});
			if (!listened && p.hi > eph->hi)
				listened = first({static_cast<uint16_t>(eph->hi + 1), p.hi});
			if (!listened) {
				listened =
					first({std::max(p.lo, eph->lo), std::min(p.hi, eph->hi)});
				ephemeral = listened.has_value();
			}
		}
	}
	std::string why = metadata_claim_refusal(m, force, allow_, listened, ephemeral);
	if (waits && ephemeral && !why.empty())
		*waits = metadata_claim_refusal(m, force, allow_, std::nullopt).empty();
	return why;
}

bool declared_metadata_force(const std::string &libvirt_root, const StaticMapping &sm)
{
	if (!sm.from_metadata || sm.m.one_to_one())
		return sm.metadata_force;
	const bool network = sm.vm.empty();
	const std::string &name = network ? sm.libvirt_network : sm.vm;
	try {
		check_libvirt_name(name, network ? "network" : "domain");
		const std::string path = libvirt_root +
					 (network ? "/run/libvirt/network/" : "/run/libvirt/qemu/") +
					 name + ".xml";
		const auto text = read_file(path);
		if (!text)
			return sm.metadata_force;
		const LibvirtNat nat = network ? parse_libvirt_network(*text, path).nat :
						 parse_libvirt_domain(*text, path).nat;
		return libvirt_forward_force(nat, sm.m, network).value_or(sm.metadata_force);
	} catch (const Error &) {
		return sm.metadata_force;
	}
}

bool libvirt_domain_running(const std::string &libvirt_root, const std::string &vm)
{
	const std::string dir = libvirt_root + "/run/libvirt/qemu";
	struct stat st {};
	if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
		return true;
	try {
		check_libvirt_name(vm, "domain");
	} catch (const Error &) {
		return true; // no file name: not kvmxdp's to judge
	}
	// Only a file surely absent says it stopped.
	return ::access((dir + "/" + vm + ".xml").c_str(), F_OK) == 0 || errno != ENOENT;
}

} // namespace kvmxdp
