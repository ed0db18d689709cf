// SPDX-License-Identifier: GPL-2.0
#include "kernel/netlink.hpp"

#include <linux/genetlink.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/xfrm.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/link/ipgre.h>
#include <netlink/route/link/ipip.h>
#include <netlink/route/link/ipvti.h>
#include <netlink/route/link/sit.h>
#include <netlink/route/tc.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "base/error.hpp"
#include "base/netaddr.hpp"

namespace kvmxdp {

namespace {

[[noreturn]] void throw_nl(const std::string &op, const std::string &obj, int err)
{
	throw Error(op + (obj.empty() ? "" : " " + obj) + ": " + nl_geterror(err));
}

struct CacheDeleter {
	void operator()(nl_cache *c) const { nl_cache_free(c); }
};
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

} // namespace

NlSocket::NlSocket()
	: NlSocket(NETLINK_ROUTE)
{
}

NlSocket::NlSocket(int protocol, int timeout_s)
{
	sk_ = nl_socket_alloc();
	if (!sk_)
		throw Error("allocate netlink socket");
	int err = nl_connect(sk_, protocol);
	if (err < 0) {
		nl_socket_free(sk_);
		throw_nl("connect", protocol == NETLINK_ROUTE ? "rtnetlink" : "netlink", err);
	}
	if (timeout_s > 0) {
		timeval tv{timeout_s, 0};
		::setsockopt(nl_socket_get_fd(sk_), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
}

NlSocket::~NlSocket()
{
	nl_socket_free(sk_);
}

std::optional<LinkInfo> find_link(NlSocket &nl, const std::string &name)
{
	// No name: an `--uplink auto` instance waiting for a default route.
	if (name.empty())
		return std::nullopt;
	check_ifname(name);
	rtnl_link *link = nullptr;
	int err = rtnl_link_get_kernel(nl.get(), 0, name.c_str(), &link);
	if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
		return std::nullopt;
	if (err < 0)
		throw_nl("look up interface", name, err);
	LinkInfo info;
	info.ifindex = rtnl_link_get_ifindex(link);
	info.name = rtnl_link_get_name(link) ? rtnl_link_get_name(link) : name;
	const char *kind = rtnl_link_get_type(link);
	info.kind = kind ? kind : "";
	nl_addr *ll = rtnl_link_get_addr(link);
	if (ll && nl_addr_get_len(ll) == info.mac.size())
		std::memcpy(info.mac.data(), nl_addr_get_binary_addr(ll), info.mac.size());
	info.mtu = rtnl_link_get_mtu(link);
	info.flags = rtnl_link_get_flags(link);
	rtnl_link_put(link);
	return info;
}

std::vector<IfAddr> ipv4_addrs(NlSocket &nl, int ifindex)
{
	if (ifindex == 0)
		return {};
	nl_cache *raw = nullptr;
	int err = rtnl_addr_alloc_cache(nl.get(), &raw);
	if (err < 0)
		throw_nl("dump", "IPv4 addresses", err);
	CachePtr cache(raw);
	std::vector<IfAddr> out;
	for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
		auto *a = reinterpret_cast<rtnl_addr *>(o);
		if (rtnl_addr_get_family(a) != AF_INET ||
		    (ifindex != kEveryLink && rtnl_addr_get_ifindex(a) != ifindex))
			continue;
		nl_addr *local = rtnl_addr_get_local(a);
		if (!local || nl_addr_get_len(local) != 4)
			continue;
		uint32_t be;
		std::memcpy(&be, nl_addr_get_binary_addr(local), 4);
		IfAddr ia;
		ia.addr = ntohl(be);
		ia.prefix = static_cast<uint8_t>(rtnl_addr_get_prefixlen(a));
		ia.secondary = (rtnl_addr_get_flags(a) & IFA_F_SECONDARY) != 0;
		ia.scope = rtnl_addr_get_scope(a);
		if (const char *l = rtnl_addr_get_label(a))
			ia.label = l;
		ia.ifindex = rtnl_addr_get_ifindex(a);
		if (nl_addr *b = rtnl_addr_get_broadcast(a); b && nl_addr_get_len(b) == 4) {
			std::memcpy(&be, nl_addr_get_binary_addr(b), 4);
			ia.broadcast = ntohl(be);
		}
		out.push_back(ia);
	}
	return out;
}

std::vector<IfAddr> host_ipv4_ifaddrs(NlSocket &nl)
{
	std::vector<IfAddr> out;
	for (const IfAddr &a : ipv4_addrs(nl, kEveryLink)) {
		bool added = false;
		try {
			added = a.label == added_address_label(a.ifindex);
		} catch (const Error &) {
			// The link went since the dump: its addresses too.
		}
		if (!added)
			out.push_back(a);
	}
	return out;
}

std::vector<uint32_t> host_ipv4_addrs(NlSocket &nl)
{
	std::vector<uint32_t> out;
	for (const IfAddr &a : host_ipv4_ifaddrs(nl))
		out.push_back(a.addr);
	return out;
}

std::vector<HostTunnel> host_tunnels(NlSocket &nl)
{
	nl_cache *raw = nullptr;
	int err = rtnl_link_alloc_cache(nl.get(), AF_UNSPEC, &raw);
	if (err < 0)
		throw_nl("dump", "links", err);
	CachePtr cache(raw);
	std::vector<HostTunnel> out;
	for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
		auto *l = reinterpret_cast<rtnl_link *>(o);
		const char *kind = rtnl_link_get_type(l);
		// Down: not speaking.  The fallback devices a tunnel module
		// creates (gre0, tunl0, sit0: no peer, every remote) are down
		// unless someone uses them.
		if (!kind || !(rtnl_link_get_flags(l) & IFF_UP))
			continue;
		HostTunnel t;
		t.kind = kind;
		// libnl's accessors assert the link's type: each only on its own.
		uint32_t remote_be;
		if (t.kind == "gre" || t.kind == "gretap") {
			t.proto = IPPROTO_GRE;
			remote_be = rtnl_link_ipgre_get_remote(l);
		} else if (t.kind == "ipip") {
			t.proto = IPPROTO_IPIP;
			remote_be = rtnl_link_ipip_get_remote(l);
		} else if (t.kind == "sit") {
			t.proto = IPPROTO_IPV6;
			remote_be = rtnl_link_sit_get_remote(l);
		} else if (t.kind == "vti") {
			t.proto = IPPROTO_ESP;
			remote_be = rtnl_link_ipvti_get_remote(l);
		} else {
			continue;
		}
		t.remote = ntohl(remote_be);
		t.ifindex = rtnl_link_get_ifindex(l);
		if (const char *n = rtnl_link_get_name(l))
			t.name = n;
		out.push_back(t);
	}
	// IPsec without a device: the host's addresses tell its own end of
	// an SA from the peer's.
	std::vector<uint32_t> local;
	nl_cache *addrs = nullptr;
	err = rtnl_addr_alloc_cache(nl.get(), &addrs);
	if (err < 0)
		throw_nl("dump", "IPv4 addresses", err);
	CachePtr addr_cache(addrs);
	for (nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
		nl_addr *a = rtnl_addr_get_local(reinterpret_cast<rtnl_addr *>(o));
		if (a && nl_addr_get_family(a) == AF_INET && nl_addr_get_len(a) == 4) {
			uint32_t be;
			std::memcpy(&be, nl_addr_get_binary_addr(a), 4);
			local.push_back(ntohl(be));
		}
	}
	for (HostTunnel &t : host_ipsec_peers(local))
		out.push_back(std::move(t));
	return out;
}

std::string added_address_label(int ifindex)
{
	static const std::string suffix = ":kvx";
	char name[IF_NAMESIZE] = "";
	if (!if_indextoname(static_cast<unsigned>(ifindex), name))
		throw_errno("name of interface", std::to_string(ifindex));
	return std::string(name).substr(0, IFNAMSIZ - 1 - suffix.size()) + suffix;
}

std::optional<IfAddr> primary_ipv4(const std::vector<IfAddr> &addrs)
{
	auto ours = [](const std::string &l) {
		return l.size() > 4 && l.compare(l.size() - 4, 4, ":kvx") == 0;
	};
	for (const auto &a : addrs)
		if (!a.secondary && a.scope == RT_SCOPE_UNIVERSE && !ours(a.label))
			return a;
	return std::nullopt;
}

std::optional<Ipv4Net> uplink_overlap(const std::vector<IfAddr> &uplink_addrs, int uplink_ifindex,
				      const Ipv4Net &subnet)
{
	const std::string added = added_address_label(uplink_ifindex);
	for (const IfAddr &a : uplink_addrs) {
		if (a.scope != RT_SCOPE_UNIVERSE || a.label == added)
			continue;
		const Ipv4Net n = network_of(a.addr, a.prefix);
		if (n.overlaps(subnet))
			return n;
	}
	return std::nullopt;
}

uint32_t subnet_gateway(const std::vector<IfAddr> &bridge_addrs, const Ipv4Net &subnet)
{
	for (const IfAddr &a : bridge_addrs)
		if (network_of(a.addr, a.prefix) == subnet)
			return a.addr;
	return 0;
}

namespace {

// Every usable entry (a MAC, not incomplete or failed) of ifindex's
// neighbour table of one family, from one dump: fn(address bytes, MAC).
void for_each_neighbour(NlSocket &nl, int ifindex, int family, int len,
			const std::function<void(const void *, const MacAddr &)> &fn)
{
	nl_cache *raw = nullptr;
	int err = rtnl_neigh_alloc_cache(nl.get(), &raw);
	if (err < 0)
		throw_nl("dump", "neighbours", err);
	CachePtr cache(raw);
	for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
		auto *n = reinterpret_cast<rtnl_neigh *>(o);
		nl_addr *dst = rtnl_neigh_get_dst(n);
		nl_addr *ll = rtnl_neigh_get_lladdr(n);
		if (rtnl_neigh_get_family(n) != family || rtnl_neigh_get_ifindex(n) != ifindex ||
		    !dst || nl_addr_get_len(dst) != static_cast<unsigned>(len) || !ll ||
		    nl_addr_get_len(ll) != 6 ||
		    (rtnl_neigh_get_state(n) & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP)))
			continue;
		MacAddr mac{};
		std::memcpy(mac.data(), nl_addr_get_binary_addr(ll), 6);
		fn(nl_addr_get_binary_addr(dst), mac);
	}
}

std::optional<MacAddr> neighbour_mac_of(NlSocket &nl, int ifindex, int family, const void *addr,
					int len)
{
	std::optional<MacAddr> found;
	for_each_neighbour(nl, ifindex, family, len, [&](const void *dst, const MacAddr &mac) {
		if (!found && std::memcmp(dst, addr, len) == 0)
			found = mac;
	});
	return found;
}

} // namespace

std::optional<MacAddr> neighbour_mac(NlSocket &nl, int ifindex, uint32_t addr)
{
	const uint32_t be = htonl(addr);
	return neighbour_mac_of(nl, ifindex, AF_INET, &be, 4);
}

std::optional<MacAddr> neighbour_mac6(NlSocket &nl, int ifindex, const Ipv6Addr &addr)
{
	return neighbour_mac_of(nl, ifindex, AF_INET6, addr.data(), 16);
}

std::vector<std::optional<MacAddr>> neighbour_macs6(NlSocket &nl, int ifindex,
						    const std::vector<Ipv6Addr> &addrs)
{
	std::vector<std::optional<MacAddr>> out(addrs.size());
	for_each_neighbour(nl, ifindex, AF_INET6, 16, [&](const void *dst, const MacAddr &mac) {
		for (size_t i = 0; i < addrs.size(); i++)
			if (!out[i] && std::memcmp(dst, addrs[i].data(), 16) == 0)
				out[i] = mac;
	});
	return out;
}

bool has_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr)
{
	for (const auto &a : ipv4_addrs(nl, ifindex))
		if (a.addr == addr)
			return true;
	return false;
}

namespace {

void change_ipv4_address(NlSocket &nl, bool add, int ifindex, uint32_t addr, uint8_t prefix,
			 const std::string &label)
{
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

} // namespace

void add_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr, uint8_t prefix,
		      const std::string &label)
{
	change_ipv4_address(nl, true, ifindex, addr, prefix, label);
}

bool remove_ipv4_address(NlSocket &nl, int ifindex, uint32_t addr)
{
	std::optional<IfAddr> have;
	for (const auto &ia : ipv4_addrs(nl, ifindex))
		if (ia.addr == addr)
			have = ia;
	if (!have)
		return false;
	change_ipv4_address(nl, false, ifindex, addr, have->prefix, have->label);
	return true;
}

int count_clsact_filters(NlSocket &nl, int ifindex)
{
	int total = 0;
	for (uint32_t minor : {TC_H_MIN_INGRESS, TC_H_MIN_EGRESS}) {
		nl_cache *raw = nullptr;
		int err = rtnl_cls_alloc_cache(nl.get(), ifindex, TC_H_MAKE(TC_H_CLSACT, minor),
					       &raw);
		if (err < 0)
			return -1;
		CachePtr cache(raw);
		// The kernel dumps a filter chain's head (handle 0) besides
		// each filter: count filters only.
		for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o))
			if (rtnl_tc_get_handle(TC_CAST(o)) != 0)
				total++;
	}
	return total;
}

// ---- Requests built as messages: bridge ports' FDB, generic netlink.

namespace {

// One request and its replies: every message of a dump (until
// NLMSG_DONE), or the answer and the ACK of a plain request (sent with
// NLM_F_ACK, which also keeps libnl's sequence numbers in step).
struct Exchange {
	const std::function<void(nlmsghdr *)> *on_reply = nullptr;
	bool done = false;
	int error = 0; // the kernel's, negative errno
};

int on_reply_msg(nl_msg *msg, void *arg)
{
	auto *ex = static_cast<Exchange *>(arg);
	(*ex->on_reply)(nlmsg_hdr(msg));
	return NL_OK;
}

int on_done(nl_msg *, void *arg)
{
	static_cast<Exchange *>(arg)->done = true;
	return NL_STOP;
}

int on_error(sockaddr_nl *, nlmsgerr *e, void *arg)
{
	auto *ex = static_cast<Exchange *>(arg);
	ex->error = e->error;
	ex->done = true;
	return NL_STOP;
}

struct CbDeleter {
	void operator()(nl_cb *cb) const { nl_cb_put(cb); }
};
struct MsgDeleter {
	void operator()(nl_msg *m) const { nlmsg_free(m); }
};
using MsgPtr = std::unique_ptr<nl_msg, MsgDeleter>;

// A request with a fixed header (ifinfomsg, ndmsg, genlmsghdr) of hdr_len
// bytes; attributes are added with nla_put.
MsgPtr request(int type, int flags, const void *hdr, size_t hdr_len)
{
	const bool dump = (flags & NLM_F_DUMP) == NLM_F_DUMP;
	MsgPtr m(nlmsg_alloc_simple(type, flags | NLM_F_REQUEST | (dump ? 0 : NLM_F_ACK)));
	if (!m || nlmsg_append(m.get(), const_cast<void *>(hdr), hdr_len, NLMSG_ALIGNTO) < 0)
		throw Error("build netlink request", "", ENOMEM);
	return m;
}

// Sends msg and calls on_reply for every data message of the answer.
// Returns 0 or the negative errno of the kernel's NLMSG_ERROR.
int exchange(NlSocket &nl, nl_msg *msg, const std::function<void(nlmsghdr *)> &on_reply)
{
	// nl_socket_get_cb takes a reference of its own (nl_cb_get): dropped
	// with this owner, or every exchange would keep the socket's
	// callbacks alive after the socket (LeakSanitizer: `status` under the
	// ASan build).
	std::unique_ptr<nl_cb, CbDeleter> base(nl_socket_get_cb(nl.get()));
	std::unique_ptr<nl_cb, CbDeleter> cb(base ? nl_cb_clone(base.get()) : nullptr);
	if (!cb)
		throw Error("build netlink request", "", ENOMEM);
	Exchange ex;
	ex.on_reply = &on_reply;
	nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_reply_msg, &ex);
	nl_cb_set(cb.get(), NL_CB_FINISH, NL_CB_CUSTOM, on_done, &ex);
	nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_done, &ex);
	nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &ex);
	int err = nl_send_auto(nl.get(), msg);
	if (err < 0)
		throw_nl("send netlink request", "", err);
	while (!ex.done) {
		err = nl_recvmsgs(nl.get(), cb.get());
		if (err < 0 && !ex.done)
			throw_nl("receive netlink reply", "", err);
	}
	return ex.error;
}

// The attributes of a reply after its fixed header of hdr_len bytes.
std::vector<nlattr *> attrs_of(nlmsghdr *h, int hdr_len)
{
	std::vector<nlattr *> tb(64, nullptr);
	if (nlmsg_parse(h, hdr_len, tb.data(), static_cast<int>(tb.size()) - 1, nullptr) < 0)
		std::fill(tb.begin(), tb.end(), nullptr);
	return tb;
}

// netdev generic netlink (uapi linux/netdev.h, Linux 6.3).
constexpr uint8_t kNetdevCmdDevGet = 1;
constexpr int kNetdevAttrIfindex = 1;
constexpr int kNetdevAttrXdpFeatures = 3;

// One generic netlink request with one attribute, one attribute of the
// answer; nullopt on an error (ENOENT: a kernel without the family).
template <typename T>
std::optional<T> genl_query(NlSocket &nl, int family, uint8_t cmd, int in_attr, const void *in,
			    size_t in_len, int out_attr)
{
	genlmsghdr g{};
	g.cmd = cmd;
	g.version = 1;
	MsgPtr m = request(family, 0, &g, sizeof(g));
	nla_put(m.get(), in_attr, static_cast<int>(in_len), in);
	std::optional<T> out;
	int err = exchange(nl, m.get(), [&](nlmsghdr *r) {
		auto tb = attrs_of(r, GENL_HDRLEN);
		if (nlattr *a = tb[static_cast<size_t>(out_attr)]) {
			T v{};
			std::memcpy(&v, nla_data(a),
				    std::min(sizeof(T), static_cast<size_t>(nla_len(a))));
			out = v;
		}
	});
	return err ? std::nullopt : out;
}

// The ports' bridge flags: an AF_BRIDGE link dump carries IFLA_PROTINFO
// (nested IFLA_BRPORT_*) for every bridge port.  A port missing from the
// dump keeps the defaults (learning on, unlocked); a kernel without
// IFLA_BRPORT_LOCKED sends none (unlocked).
void bridge_port_flags(NlSocket &nl, int bridge_ifindex, std::vector<PortInfo> &ports)
{
	ifinfomsg ifi{};
	ifi.ifi_family = AF_BRIDGE;
	MsgPtr m = request(RTM_GETLINK, NLM_F_DUMP, &ifi, sizeof(ifi));
	int err = exchange(nl, m.get(), [&](nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWLINK)
			return;
		auto *i = static_cast<const ifinfomsg *>(nlmsg_data(r));
		auto tb = attrs_of(r, sizeof(ifinfomsg));
		nlattr *master = tb[IFLA_MASTER], *info = tb[IFLA_PROTINFO];
		if (!master || !info ||
		    nla_get_u32(master) != static_cast<uint32_t>(bridge_ifindex))
			return;
		std::vector<nlattr *> br(IFLA_BRPORT_MAX + 1, nullptr);
		if (nla_parse_nested(br.data(), IFLA_BRPORT_MAX, info, nullptr) < 0)
			return;
		for (PortInfo &p : ports) {
			if (p.ifindex != i->ifi_index)
				continue;
			if (br[IFLA_BRPORT_LEARNING])
				p.learning = nla_get_u8(br[IFLA_BRPORT_LEARNING]) != 0;
			if (br[IFLA_BRPORT_LOCKED])
				p.locked = nla_get_u8(br[IFLA_BRPORT_LOCKED]) != 0;
		}
	});
	if (err)
		throw Error("read the port flags of bridge ifindex", std::to_string(bridge_ifindex),
			    -err);
}

} // namespace

std::vector<Ipv6IfAddr> ipv6_addrs(NlSocket &nl, int ifindex)
{
	if (ifindex == 0)
		return {};
	// A raw dump rather than libnl's address cache: the cache does not
	// keep IFA_CACHEINFO's lifetimes apart from the flags on every
	// version Debian ships, and the preferred lifetime is what says
	// "deprecated" before the kernel's timer sets the flag.
	ifaddrmsg ifa{};
	ifa.ifa_family = AF_INET6;
	MsgPtr m = request(RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof(ifa));
	std::vector<Ipv6IfAddr> out;
	int err = exchange(nl, m.get(), [&](nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWADDR)
			return;
		auto *i = static_cast<const ifaddrmsg *>(nlmsg_data(r));
		if (i->ifa_family != AF_INET6 ||
		    (ifindex != kEveryLink && static_cast<int>(i->ifa_index) != ifindex))
			return;
		auto tb = attrs_of(r, sizeof(ifaddrmsg));
		// IFA_ADDRESS is the local address unless the address has a
		// peer (IFA_LOCAL then): the local one is ours.
		nlattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
		if (!a || nla_len(a) != 16)
			return;
		Ipv6IfAddr x;
		std::memcpy(x.addr.data(), nla_data(a), 16);
		x.prefix = i->ifa_prefixlen;
		x.scope = i->ifa_scope;
		x.flags = tb[IFA_FLAGS] ? nla_get_u32(tb[IFA_FLAGS]) : i->ifa_flags;
		if (nlattr *ci = tb[IFA_CACHEINFO];
		    ci && nla_len(ci) >= int(sizeof(ifa_cacheinfo))) {
			ifa_cacheinfo c;
			std::memcpy(&c, nla_data(ci), sizeof(c));
			x.preferred = c.ifa_prefered;
			x.valid = c.ifa_valid;
		}
		out.push_back(x);
	});
	if (err)
		throw Error("dump", "IPv6 addresses", -err);
	return out;
}

std::vector<Ipv6Addr> host_ipv6_addrs(NlSocket &nl)
{
	std::vector<Ipv6Addr> out;
	for (const Ipv6IfAddr &a : ipv6_addrs(nl, kEveryLink))
		out.push_back(a.addr);
	return out;
}

std::vector<Ipv6Route> ipv6_routes(NlSocket &nl, int ifindex)
{
	rtmsg rtm{};
	rtm.rtm_family = AF_INET6;
	MsgPtr m = request(RTM_GETROUTE, NLM_F_DUMP, &rtm, sizeof(rtm));
	std::vector<Ipv6Route> out;
	int err = exchange(nl, m.get(), [&](nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWROUTE)
			return;
		auto *rt = static_cast<const rtmsg *>(nlmsg_data(r));
		auto tb = attrs_of(r, sizeof(rtmsg));
		const uint32_t table = tb[RTA_TABLE] ? nla_get_u32(tb[RTA_TABLE]) : rt->rtm_table;
		if (rt->rtm_family != AF_INET6 || rt->rtm_type != RTN_UNICAST ||
		    table != RT_TABLE_MAIN || (!tb[RTA_OIF] && !tb[RTA_MULTIPATH]))
			return;
		Ipv6Route x;
		Ipv6Addr dst{};
		if (tb[RTA_DST] && nla_len(tb[RTA_DST]) == 16)
			std::memcpy(dst.data(), nla_data(tb[RTA_DST]), 16);
		x.dst = network_of6(dst, rt->rtm_dst_len);
		x.protocol = rt->rtm_protocol;
		if (tb[RTA_PREF] && nla_len(tb[RTA_PREF]) >= 1)
			x.pref = nla_get_u8(tb[RTA_PREF]);
		if (tb[RTA_PRIORITY] && nla_len(tb[RTA_PRIORITY]) >= 4)
			x.metric = nla_get_u32(tb[RTA_PRIORITY]);
		if (nlattr *ci = tb[RTA_CACHEINFO];
		    ci && nla_len(ci) >= int(sizeof(rta_cacheinfo))) {
			rta_cacheinfo c;
			std::memcpy(&c, nla_data(ci), sizeof(c));
			x.expires = c.rta_expires != 0;
		}
		auto add = [&](int oif, const nlattr *gw, unsigned nh_flags) {
			if (ifindex != kEveryLink && oif != ifindex)
				return;
			Ipv6Route y = x;
			y.oif = oif;
			y.dead = (nh_flags & RTNH_F_DEAD) != 0;
			if (gw && nla_len(gw) == 16) {
				y.gateway = true;
				std::memcpy(y.via.data(), nla_data(gw), 16);
			}
			out.push_back(y);
		};
		if (tb[RTA_OIF]) {
			add(static_cast<int>(nla_get_u32(tb[RTA_OIF])), tb[RTA_GATEWAY],
			    rt->rtm_flags);
			return;
		}
		// An ECMP route (NetworkManager merges the default routes of
		// several routers' RAs into one): its next hops, each a route
		// of its own here, as the kernel's separate RA routes are.
		const auto *nh = static_cast<const rtnexthop *>(nla_data(tb[RTA_MULTIPATH]));
		int left = nla_len(tb[RTA_MULTIPATH]);
		while (left >= static_cast<int>(sizeof(rtnexthop)) && nh->rtnh_len >= sizeof(*nh) &&
		       nh->rtnh_len <= left) {
			const nlattr *gw = nullptr;
			const int alen = nh->rtnh_len - static_cast<int>(RTNH_LENGTH(0));
			const auto *a = reinterpret_cast<const nlattr *>(RTNH_DATA(nh));
			for (int rem = alen; nla_ok(a, rem); a = nla_next(a, &rem))
				if (nla_type(a) == RTA_GATEWAY)
					gw = a;
			add(nh->rtnh_ifindex, gw, nh->rtnh_flags);
			left -= RTNH_ALIGN(nh->rtnh_len);
			nh = RTNH_NEXT(nh);
		}
	});
	if (err)
		throw Error("dump", "IPv6 routes", -err);
	return out;
}

namespace {

int change_ipv6_route(NlSocket &nl, bool add, int ifindex, const Ipv6Net &dst, uint8_t protocol)
{
	rtmsg rtm{};
	rtm.rtm_family = AF_INET6;
	rtm.rtm_dst_len = dst.prefix;
	rtm.rtm_table = RT_TABLE_MAIN;
	rtm.rtm_protocol = protocol;
	rtm.rtm_scope = RT_SCOPE_UNIVERSE;
	rtm.rtm_type = RTN_UNICAST;
	MsgPtr m = request(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? NLM_F_CREATE | NLM_F_EXCL : 0,
			   &rtm, sizeof(rtm));
	if (nla_put(m.get(), RTA_DST, 16, dst.addr.data()) < 0 ||
	    nla_put_u32(m.get(), RTA_OIF, static_cast<uint32_t>(ifindex)) < 0)
		throw Error("build netlink request", "", ENOMEM);
	return exchange(nl, m.get(), [](nlmsghdr *) {});
}

} // namespace

void add_ipv6_route(NlSocket &nl, int ifindex, const Ipv6Net &dst, uint8_t protocol)
{
	if (int err = change_ipv6_route(nl, true, ifindex, dst, protocol))
		throw Error("add route", dst.str(), -err);
}

bool remove_ipv6_route(NlSocket &nl, int ifindex, const Ipv6Net &dst, uint8_t protocol)
{
	const int err = change_ipv6_route(nl, false, ifindex, dst, protocol);
	if (err == -ESRCH || err == -ENOENT)
		return false;
	if (err)
		throw Error("remove route", dst.str(), -err);
	return true;
}

bool ipv6_ra_managed(NlSocket &nl, int ifindex)
{
	// include/net/if_inet6.h, not in the uapi headers; the value is ABI
	// (iproute2 prints it as "managed").
	constexpr uint32_t kIfRaManaged = 0x40;
	ifinfomsg ifi{};
	ifi.ifi_family = AF_INET6;
	MsgPtr m = request(RTM_GETLINK, NLM_F_DUMP, &ifi, sizeof(ifi));
	bool managed = false;
	int err = exchange(nl, m.get(), [&](nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWLINK)
			return;
		auto *i = static_cast<const ifinfomsg *>(nlmsg_data(r));
		auto tb = attrs_of(r, sizeof(ifinfomsg));
		if (i->ifi_index != ifindex || !tb[IFLA_PROTINFO])
			return;
		std::vector<nlattr *> in6(IFLA_INET6_MAX + 1, nullptr);
		if (nla_parse_nested(in6.data(), IFLA_INET6_MAX, tb[IFLA_PROTINFO], nullptr) < 0 ||
		    !in6[IFLA_INET6_FLAGS])
			return;
		managed = (nla_get_u32(in6[IFLA_INET6_FLAGS]) & kIfRaManaged) != 0;
	});
	if (err)
		throw Error("read the IPv6 flags of ifindex", std::to_string(ifindex), -err);
	return managed;
}

std::vector<PortInfo> bridge_ports(NlSocket &nl, int bridge_ifindex)
{
	nl_cache *raw = nullptr;
	int err = rtnl_link_alloc_cache(nl.get(), AF_UNSPEC, &raw);
	if (err < 0)
		throw_nl("list the ports of bridge ifindex", std::to_string(bridge_ifindex), err);
	CachePtr cache(raw);
	std::vector<PortInfo> out;
	for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
		auto *link = reinterpret_cast<rtnl_link *>(o);
		if (rtnl_link_get_master(link) != bridge_ifindex)
			continue;
		PortInfo p;
		p.ifindex = rtnl_link_get_ifindex(link);
		if (const char *name = rtnl_link_get_name(link))
			p.name = name;
		if (const char *kind = rtnl_link_get_type(link))
			p.kind = kind;
		out.push_back(p);
	}
	bridge_port_flags(nl, bridge_ifindex, out);
	return out;
}

std::vector<FdbEntry> bridge_fdb(NlSocket &nl, int bridge_ifindex)
{
	// NDA_FLAGS_EXT's NTF_EXT_LOCKED (uapi linux/neighbour.h, Linux 6.2;
	// not in Debian 12's headers).
	constexpr uint32_t kNtfExtLocked = 1U << 1;
	ndmsg ndm{};
	ndm.ndm_family = AF_BRIDGE;
	MsgPtr m = request(RTM_GETNEIGH, NLM_F_DUMP, &ndm, sizeof(ndm));
	std::vector<FdbEntry> out;
	int err = exchange(nl, m.get(), [&](nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWNEIGH)
			return;
		auto *n = static_cast<const ndmsg *>(nlmsg_data(r));
		auto tb = attrs_of(r, sizeof(ndmsg));
		nlattr *ll = tb[NDA_LLADDR], *master = tb[NDA_MASTER], *ext = tb[NDA_FLAGS_EXT];
		// Without NDA_MASTER: a device's own address lists (NTF_SELF),
		// not the bridge's table.
		if (!ll || nla_len(ll) != 6 || !master ||
		    nla_get_u32(master) != static_cast<uint32_t>(bridge_ifindex) ||
		    (ext && (nla_get_u32(ext) & kNtfExtLocked)))
			return;
		FdbEntry e;
		std::memcpy(e.mac.data(), nla_data(ll), 6);
		if (e.mac[0] & 1)
			return; // a group address: the bridge's mdb decides, not this
		e.ifindex = n->ndm_ifindex;
		e.dynamic = !(n->ndm_state & (NUD_PERMANENT | NUD_NOARP));
		out.push_back(e);
	});
	// A partial table would read as entries gone: no answer rather than
	// a wrong one.
	if (err)
		throw Error("read the forwarding database of bridge ifindex",
			    std::to_string(bridge_ifindex), -err);
	return out;
}

namespace {

bool neighbour_delete(NlSocket &nl, int ifindex, uint8_t family, const void *addr, int len)
{
	ndmsg u{};
	u.ndm_family = family;
	u.ndm_ifindex = ifindex;
	MsgPtr m = request(RTM_DELNEIGH, 0, &u, sizeof(u));
	nla_put(m.get(), NDA_DST, len, addr);
	return exchange(nl, m.get(), [](nlmsghdr *) {}) == 0;
}

} // namespace

bool neighbour_forget(NlSocket &nl, int ifindex, uint32_t addr)
{
	const uint32_t be = htonl(addr);
	return neighbour_delete(nl, ifindex, AF_INET, &be, 4);
}

bool neighbour_forget6(NlSocket &nl, int ifindex, const Ipv6Addr &addr)
{
	return neighbour_delete(nl, ifindex, AF_INET6, addr.data(), 16);
}

void neighbour_solicit6(NlSocket &nl, int ifindex, const Ipv6Addr &addr)
{
	ndmsg u{};
	u.ndm_family = AF_INET6;
	u.ndm_ifindex = ifindex;
	u.ndm_state = NUD_NONE;
	u.ndm_flags = NTF_USE;
	MsgPtr m = request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &u, sizeof(u));
	nla_put(m.get(), NDA_DST, 16, addr.data());
	exchange(nl, m.get(), [](nlmsghdr *) {});
}

void bridge_fdb_use(NlSocket &nl, int port_ifindex, const MacAddr &mac)
{
	ndmsg u{};
	u.ndm_family = AF_BRIDGE;
	u.ndm_ifindex = port_ifindex;
	u.ndm_state = NUD_REACHABLE;
	u.ndm_flags = NTF_MASTER | NTF_USE;
	MsgPtr m = request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &u, sizeof(u));
	nla_put(m.get(), NDA_LLADDR, 6, mac.data());
	exchange(nl, m.get(), [](nlmsghdr *) {});
}

std::vector<HostTunnel> xfrm_sa_peers(const void *nlmsg, size_t len,
				      const std::vector<uint32_t> &local)
{
	std::vector<HostTunnel> out;
	nlmsghdr h;
	if (len < sizeof(h))
		return out;
	std::memcpy(&h, nlmsg, sizeof(h));
	if (h.nlmsg_type != XFRM_MSG_NEWSA || h.nlmsg_len > len ||
	    h.nlmsg_len < NLMSG_LENGTH(sizeof(xfrm_usersa_info)))
		return out;
	xfrm_usersa_info sa;
	std::memcpy(&sa, static_cast<const char *>(nlmsg) + NLMSG_HDRLEN, sizeof(sa));
	const uint8_t proto = sa.id.proto;
	if (sa.family != AF_INET ||
	    (proto != IPPROTO_ESP && proto != IPPROTO_AH && proto != IPPROTO_COMP))
		return out;
	char spi[16];
	std::snprintf(spi, sizeof(spi), "spi 0x%08x", ntohl(sa.id.spi));
	for (uint32_t be : {sa.id.daddr.a4, sa.saddr.a4}) {
		const uint32_t a = ntohl(be);
		// 0.0.0.0 is no peer (a half-filled larval SA).
		if (!a || std::find(local.begin(), local.end(), a) != local.end())
			continue;
		HostTunnel t;
		t.proto = proto;
		t.remote = a;
		t.name = spi;
		t.kind = "xfrm";
		out.push_back(t);
	}
	return out;
}

std::vector<HostTunnel> host_ipsec_peers(const std::vector<uint32_t> &local)
{
	std::optional<NlSocket> nl;
	try {
		nl.emplace(NETLINK_XFRM, 2);
	} catch (const Error &) {
		// EPROTONOSUPPORT: a kernel without XFRM_USER has no SAs a
		// user could have made either.
		return {};
	}
	// A dump without a filter: every SA of this network namespace.
	MsgPtr m(nlmsg_alloc_simple(XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP));
	if (!m)
		throw Error("build netlink request", "", ENOMEM);
	std::vector<HostTunnel> out;
	int err = exchange(*nl, m.get(), [&](nlmsghdr *h) {
		for (HostTunnel &t : xfrm_sa_peers(h, h->nlmsg_len, local))
			out.push_back(std::move(t));
	});
	if (err < 0)
		throw Error("dump", "xfrm states", -err);
	return out;
}

std::optional<uint64_t> xdp_features(int ifindex)
{
	NlSocket nl(NETLINK_GENERIC, 2);
	static const char kFamily[] = "netdev";
	// The id is fixed while the kernel runs, so a found one is kept; a
	// failed query (ENOBUFS, an interrupted dump) is not, or one bad
	// moment would disable the XDP feature check for the daemon's life.
	static std::optional<uint16_t> family;
	if (!family)
		family = genl_query<uint16_t>(nl, GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
					      CTRL_ATTR_FAMILY_NAME, kFamily, sizeof(kFamily),
					      CTRL_ATTR_FAMILY_ID);
	if (!family)
		return std::nullopt;
	uint32_t idx = static_cast<uint32_t>(ifindex);
	return genl_query<uint64_t>(nl, *family, kNetdevCmdDevGet, kNetdevAttrIfindex, &idx,
				    sizeof(idx), kNetdevAttrXdpFeatures);
}

// An AF_BRIDGE entry added or deleted by someone, not by the bridge's own
// learning and ageing: a static or permanent entry (an administrator's,
// libvirt's, an 802.1X authenticator's), or one a driver or daemon
// learnt for the bridge (NTF_EXT_LEARNED).  A learnt entry ageing out is
// not one: a guest sending from random MACs would make every ageing
// deletion a sync of the whole table.  And only this bridge's: the kernel
// names a port entry's bridge in NDA_MASTER (br_fdb.c fdb_fill_info), an
// entry on the bridge device itself has the bridge as ifindex; another
// bridge's churn (Docker's, a second libvirt network) is not ours to sync.
bool fdb_event_matters(const nlmsghdr *h, int bridge_ifindex)
{
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg)))
		return false;
	if (h->nlmsg_type != RTM_DELNEIGH && h->nlmsg_type != RTM_NEWNEIGH)
		return false;
	const auto *nd = static_cast<const ndmsg *>(NLMSG_DATA(h));
	if (nd->ndm_family != AF_BRIDGE)
		return false;
	if (!(nd->ndm_state & (NUD_PERMANENT | NUD_NOARP)) && !(nd->ndm_flags & NTF_EXT_LEARNED))
		return false;
	if (bridge_ifindex <= 0 || nd->ndm_ifindex == bridge_ifindex)
		return true;
	int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(ndmsg)));
	for (const rtattr *a = reinterpret_cast<const rtattr *>(reinterpret_cast<const char *>(nd) +
								NLMSG_ALIGN(sizeof(ndmsg)));
	     RTA_OK(a, len); a = RTA_NEXT(a, len))
		if (a->rta_type == NDA_MASTER && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
			uint32_t master;
			std::memcpy(&master, RTA_DATA(a), sizeof(master));
			return master == static_cast<uint32_t>(bridge_ifindex);
		}
	return false;
}

// ---- Monitors

namespace {

int on_event(nl_msg *, void *arg)
{
	static_cast<NlMonitor::State *>(arg)->seen = true;
	return NL_OK;
}

int on_fdb_event(nl_msg *msg, void *arg)
{
	auto *st = static_cast<NlMonitor::State *>(arg);
	if (fdb_event_matters(nlmsg_hdr(msg), st->bridge))
		st->seen = true;
	return NL_OK;
}

} // namespace

NlMonitor NlMonitor::bridge_fdb_changes()
{
	return NlMonitor(NETLINK_ROUTE, {RTNLGRP_NEIGH}, "rtnetlink bridge FDB events",
			 on_fdb_event);
}

NlMonitor NlMonitor::links_and_addresses()
{
	return NlMonitor(NETLINK_ROUTE,
			 {RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR,
			  RTNLGRP_IPV6_IFINFO},
			 "rtnetlink link/address events");
}

NlMonitor NlMonitor::routes()
{
	return NlMonitor(NETLINK_ROUTE, {RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE},
			 "rtnetlink route events");
}

NlMonitor NlMonitor::xfrm_sas()
{
	return NlMonitor(NETLINK_XFRM, {XFRMNLGRP_SA}, "xfrm SA events");
}

NlMonitor::NlMonitor(int protocol, std::initializer_list<unsigned> groups, const char *what,
		     int (*valid)(nl_msg *, void *))
{
	sk_ = nl_socket_alloc();
	if (!sk_)
		throw Error("allocate netlink socket");
	// Notifications are unsolicited: no sequence numbers to check.
	nl_socket_disable_seq_check(sk_);
	nl_socket_modify_cb(sk_, NL_CB_VALID, NL_CB_CUSTOM, valid ? valid : on_event, state_.get());
	int err = nl_connect(sk_, protocol);
	for (unsigned g : groups)
		if (err >= 0)
			err = nl_socket_add_membership(sk_, static_cast<int>(g));
	if (err >= 0)
		err = nl_socket_set_nonblocking(sk_);
	if (err < 0) {
		nl_socket_free(sk_);
		throw_nl("subscribe to", what, err);
	}
}

NlMonitor::NlMonitor(NlMonitor &&o) noexcept
	: sk_(std::exchange(o.sk_, nullptr))
	, state_(std::move(o.state_))
{
}

NlMonitor::~NlMonitor()
{
	nl_socket_free(sk_);
}

void NlMonitor::only_bridge(int ifindex)
{
	state_->bridge = ifindex;
}

int NlMonitor::fd() const
{
	return nl_socket_get_fd(sk_);
}

bool NlMonitor::drain()
{
	state_->seen = false;
	bool any = false;
	// Bounded: a flood of events (a guest's random MACs, each learnt and
	// aged by the bridge) must not keep the daemon's loop here; what is
	// left wakes the next poll.
	for (int n = 0; n < kDrainMax; n++) {
		int err = nl_recvmsgs_default(sk_);
		if (err == -NLE_AGAIN)
			break;
		if (err < 0) {
			// ENOBUFS (overrun) and friends: events were lost, so
			// the caller must re-read the state anyway.
			any = true;
			break;
		}
	}
	return any || state_->seen;
}

} // namespace kvmxdp
