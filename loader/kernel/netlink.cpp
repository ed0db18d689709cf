// SPDX-License-Identifier: GPL-2.0
#include "kernel/netlink.hpp"

#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/link.h>
#include <netlink/route/tc.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cctype>
#include <cstring>
#include <memory>

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
{
	sk_ = nl_socket_alloc();
	if (!sk_)
		throw Error("allocate netlink socket");
	int err = nl_connect(sk_, NETLINK_ROUTE);
	if (err < 0) {
		nl_socket_free(sk_);
		throw_nl("connect", "rtnetlink", err);
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
	rtnl_link_put(link);
	return info;
}

std::vector<IfAddr> ipv4_addrs(NlSocket &nl, int ifindex)
{
	nl_cache *raw = nullptr;
	int err = rtnl_addr_alloc_cache(nl.get(), &raw);
	if (err < 0)
		throw_nl("dump", "IPv4 addresses", err);
	CachePtr cache(raw);
	std::vector<IfAddr> out;
	for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
		auto *a = reinterpret_cast<rtnl_addr *>(o);
		if (rtnl_addr_get_family(a) != AF_INET || rtnl_addr_get_ifindex(a) != ifindex)
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
		out.push_back(ia);
	}
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

namespace {

int on_valid(nl_msg *, void *arg)
{
	*static_cast<bool *>(arg) = true;
	return NL_OK;
}

bool g_seen = false; // set by on_valid during drain(); one monitor per process

} // namespace

NlMonitor::NlMonitor()
{
	sk_ = nl_socket_alloc();
	if (!sk_)
		throw Error("allocate netlink socket");
	// Notifications are unsolicited: no sequence numbers to check.
	nl_socket_disable_seq_check(sk_);
	nl_socket_modify_cb(sk_, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &g_seen);
	int err = nl_connect(sk_, NETLINK_ROUTE);
	if (err >= 0)
		err = nl_socket_add_memberships(sk_, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, 0);
	if (err >= 0)
		err = nl_socket_set_nonblocking(sk_);
	if (err < 0) {
		nl_socket_free(sk_);
		throw_nl("subscribe to", "rtnetlink link/address events", err);
	}
}

NlMonitor::~NlMonitor()
{
	nl_socket_free(sk_);
}

int NlMonitor::fd() const
{
	return nl_socket_get_fd(sk_);
}

bool NlMonitor::drain()
{
	g_seen = false;
	bool any = false;
	for (;;) {
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
	return any || g_seen;
}

} // namespace kvmxdp
