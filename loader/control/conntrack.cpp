// SPDX-License-Identifier: GPL-2.0
#include "control/conntrack.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <tuple>
#include <type_traits>
#include <unordered_set>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "base/text.hpp"
#include "control/family.hpp"
#include "control/gc.hpp"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp {

using nlohmann::json;

namespace {

const char *const kStateNames[KVX_CT_STATE_MAX] = {
	"NONE",	     "SYN_SENT", "ESTABLISHED", "FIN_WAIT",
	"TIME_WAIT", "CLOSE",	 "STATELESS",	"SYN_RECV",
};

std::string upper(std::string s)
{
	for (auto &c : s)
		c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
	return s;
}

// Seconds between two CLOCK_BOOTTIME stamps, 0 if "later" is not later (a
// flow the datapath touched after we read the clock).
uint64_t secs_since(uint64_t earlier_ns, uint64_t later_ns)
{
	return later_ns > earlier_ns ? (later_ns - earlier_ns) / 1000000000ULL : 0;
}

} // namespace

namespace {

// The filter's fields that do not depend on the family.
bool matches_flow(const CtFilter &f, uint8_t proto, const kvx_ct_val &v)
{
	if (f.proto && proto != *f.proto)
		return false;
	if (f.ext_port && ntohs(v.ext_port) != *f.ext_port)
		return false;
	if (f.state && v.state != *f.state)
		return false;
	return true;
}

} // namespace

bool CtFilter::matches(const kvx_ct_key &k, const kvx_ct_val &v) const
{
	if (guest6 || remote6)
		return false;
	if (guest && ntohl(k.int_addr) != *guest)
		return false;
	if (remote && ntohl(k.rem_addr) != *remote)
		return false;
	return matches_flow(*this, k.proto, v);
}

bool CtFilter::matches(const kvx_ct6_key &k, const kvx_ct6_val &v) const
{
	if (guest || remote)
		return false;
	if (guest6 && Family6::int_addr(k) != *guest6)
		return false;
	if (remote6 && Family6::rem_addr(k) != *remote6)
		return false;
	return matches_flow(*this, k.proto, v.ct);
}

std::string ct_state_name(uint8_t state)
{
	if (state < KVX_CT_STATE_MAX)
		return kStateNames[state];
	return "STATE_" + std::to_string(state);
}

std::optional<uint8_t> parse_ct_state(const std::string &name)
{
	std::string u = upper(name);
	for (uint8_t s = 0; s < KVX_CT_STATE_MAX; s++)
		if (u == kStateNames[s])
			return s;
	return std::nullopt;
}

std::string ct_proto_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "icmpv6";
	default:
		return std::to_string(proto);
	}
}

std::vector<std::string> ct_flag_names(uint8_t flags)
{
	static const std::pair<uint8_t, const char *> names[] = {
		{KVX_CT_F_SEEN_REPLY, "seen_reply"}, {KVX_CT_F_FIN_OUT, "fin_out"},
		{KVX_CT_F_FIN_IN, "fin_in"},	     {KVX_CT_F_INBOUND, "inbound"},
		{KVX_CT_F_STATIC, "static"},	     {KVX_CT_F_ONE_TO_ONE, "one_to_one"},
		{KVX_CT_F_SYNACK, "synack"},	     {KVX_CT_F_HALFOPEN, "halfopen"},
	};
	std::vector<std::string> out;
	for (const auto &[bit, name] : names)
		if (flags & bit)
			out.emplace_back(name);
	return out;
}

CtFilter parse_ct_filter(const CtFilterArgs &a)
{
	CtFilter f;
	// An IPv4 or an IPv6 address (no brackets: no port here).
	auto addr = [](const std::string &text, const char *what, std::optional<uint32_t> &v4,
		       std::optional<Ipv6Addr> &v6) {
		if (text.empty())
			return;
		try {
			if (text.find(':') == std::string::npos)
				v4 = parse_ipv4(text);
			else
				v6 = parse_ipv6(text);
		} catch (const Error &) {
			throw Error(std::string("invalid ") + what + " '" + printable(text) +
				    "': not an IPv4 or IPv6 address");
		}
	};
	addr(a.guest, "--guest", f.guest, f.guest6);
	addr(a.remote, "--remote", f.remote, f.remote6);
	if (!a.proto.empty()) {
		std::string p = upper(a.proto);
		if (p == "TCP")
			f.proto = IPPROTO_TCP;
		else if (p == "UDP")
			f.proto = IPPROTO_UDP;
		else if (p == "ICMP")
			f.proto = IPPROTO_ICMP;
		else if (p == "ICMPV6")
			f.proto = IPPROTO_ICMPV6;
		else
			throw Error("invalid --proto '" + a.proto +
				    "': use tcp, udp, icmp or icmpv6");
	}
	if (!a.ext_port.empty()) {
		uint64_t p = 0;
		try {
			p = parse_uint(a.ext_port, 65535, "--ext-port");
		} catch (const Error &) {
			throw Error("invalid --ext-port '" + a.ext_port + "': not a port 1-65535");
		}
		if (p == 0)
			throw Error("invalid --ext-port '" + a.ext_port + "': not a port 1-65535");
		f.ext_port = static_cast<uint16_t>(p);
	}
	if (!a.state.empty()) {
		f.state = parse_ct_state(a.state);
		if (!f.state) {
			std::string all;
			for (uint8_t s = 1; s < KVX_CT_STATE_MAX; s++)
				all += (s > 1 ? ", " : "") + std::string(kStateNames[s]);
			throw Error("invalid --state '" + a.state + "': use one of " + all);
		}
	}
	return f;
}

namespace {

template <typename F>
json flow_json(const typename F::CtKey &k, const typename F::CtVal &fv, const kvx_timeouts &t,
	       uint64_t now_ns)
{
	const kvx_ct_val &v = F::ct(fv);
	const uint32_t timeout = ct_timeout_s(v, k.proto, t);
	const uint64_t idle = secs_since(v.last_seen_ns, now_ns);
	const bool expired = ct_expired(v, k.proto, t, now_ns);
	json j;
	j["family"] = F::kName;
	j["proto"] = ct_proto_name(k.proto);
	j["int_addr"] = F::str(F::int_addr(k));
	j["int_port"] = ntohs(k.int_port);
	j["rem_addr"] = F::str(F::rem_addr(k));
	j["rem_port"] = ntohs(k.rem_port);
	j["ext_addr"] = F::str(F::ext_addr(fv));
	j["ext_port"] = ntohs(v.ext_port);
	j["state"] = ct_state_name(v.state);
	j["flags"] = ct_flag_names(v.flags);
	j["age_s"] = secs_since(v.created_ns, now_ns);
	j["idle_s"] = idle;
	j["timeout_s"] = timeout;
	j["expires_in_s"] = expired || idle >= timeout ? 0 : timeout - idle;
	// Expired but not yet collected (no daemon, or between two sweeps).
	j["expired"] = expired;
	j["pkts_out"] = v.pkts_out;
	j["pkts_in"] = v.pkts_in;
	if (k.proto == IPPROTO_TCP) {
		// The sequence tracking behind the RST/FIN window checks,
		// per side (abi.h kvx_ct_tcp); absent for a side not seen.
		static const char *const sides[2] = {"guest", "remote"};
		json tcp = json::object();
		for (int i = 0; i < 2; i++) {
			const kvx_ct_tcp &s = v.tcp[i];
			if (!(s.flags & (KVX_CT_TCP_F_SYN | KVX_CT_TCP_F_ACK)) &&
			    !((s.flags & KVX_CT_TCP_F_LOOSE) && s.maxwin))
				continue;
			json side;
			side["end"] = s.end;
			side["maxwin"] = s.maxwin;
			// Picked up mid-stream: maxwin unscaled, no maxend.
			if (s.flags & KVX_CT_TCP_F_LOOSE)
				side["loose"] = true;
			else
				side["maxend"] = s.maxend;
			if (s.flags & KVX_CT_TCP_F_ACK)
				side["ack"] = s.ack;
			if (s.flags & KVX_CT_TCP_F_WSCALE)
				side["wscale"] = s.wscale;
			// The TSval of the guest's FIN, which decides whether its
			// tuple may go to another endpoint's SYN (ct_rules.h).
			if (i == KVX_CT_SIDE_GUEST && (s.flags & KVX_CT_TCP_F_TS))
				side["fin_tsval"] = kvx_ct_fin_ts(&v);
			tcp[sides[i]] = side;
		}
		j["tcp"] = tcp;
	}
	return j;
}

} // namespace

json ct_flow_json(const kvx_ct_key &k, const kvx_ct_val &v, const kvx_timeouts &t, uint64_t now_ns)
{
	return flow_json<Family4>(k, v, t, now_ns);
}

json ct_flow_json(const kvx_ct6_key &k, const kvx_ct6_val &v, const kvx_timeouts &t,
		  uint64_t now_ns)
{
	return flow_json<Family6>(k, v, t, now_ns);
}

std::string ct_flow_line(const json &f)
{
	const std::string proto = f.at("proto").get<std::string>();
	const bool ports = proto == "tcp" || proto == "udp";
	const bool icmp = proto == "icmp" || proto == "icmpv6";
	auto ep = [&](const char *addr, const char *port) {
		std::string s = f.at(addr).get<std::string>();
		// RFC 5952 section 6: [2001:db8::1]:80.
		if (ports && s.find(':') != std::string::npos)
			s = "[" + s + "]";
		if (ports)
			s += ":" + std::to_string(f.at(port).get<unsigned>());
		else if (icmp && std::string(port) != "rem_port")
			s += " id=" + std::to_string(f.at(port).get<unsigned>());
		return s;
	};
	std::ostringstream o;
	char head[64];
	std::snprintf(head, sizeof(head), "%-5s %-12s", proto.c_str(),
		      f.at("state").get<std::string>().c_str());
	o << head << " guest=" << ep("int_addr", "int_port")
	  << " remote=" << ep("rem_addr", "rem_port") << " ext=" << ep("ext_addr", "ext_port")
	  << " age=" << f.at("age_s").get<uint64_t>() << "s idle=" << f.at("idle_s").get<uint64_t>()
	  << "s";
	if (f.at("expired").get<bool>())
		o << " expired";
	else
		o << " expires_in=" << f.at("expires_in_s").get<uint64_t>() << "s";
	o << " pkts_out=" << f.at("pkts_out").get<uint64_t>()
	  << " pkts_in=" << f.at("pkts_in").get<uint64_t>();
	// The largest window each side offered (and its scale), as far as
	// the sequence tracking has seen that side: what the RST/FIN window
	// checks go by.
	if (f.contains("tcp") && !f.at("tcp").empty()) {
		o << " win=";
		bool first = true;
		for (const char *side : {"guest", "remote"}) {
			if (!f.at("tcp").contains(side))
				continue;
			const auto &t = f.at("tcp").at(side);
			o << (first ? "" : ",") << side << ":" << t.at("maxwin").get<uint64_t>();
			if (t.contains("wscale"))
				o << "/" << t.at("wscale").get<unsigned>();
			else if (t.contains("loose"))
				o << "/?"; // picked up mid-stream: its scale unknown
			first = false;
		}
	}
	const auto &flags = f.at("flags");
	if (!flags.empty()) {
		o << " [";
		bool first = true;
		for (const auto &fl : flags) {
			std::string n = fl.get<std::string>();
			o << (first ? "" : ",") << (n == "one_to_one" ? "1:1" : n);
			first = false;
		}
		o << "]";
	}
	return o.str();
}

namespace {

template <typename F>
void list_flows(json &out, int ct_fd, const kvx_timeouts &t, const CtFilter &f, uint64_t now_ns)
{
	auto flows = dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd);
	auto order = [](const typename F::CtKey &x) {
		return std::make_tuple(x.proto, F::order(F::int_addr(x)), ntohs(x.int_port),
				       F::order(F::rem_addr(x)), ntohs(x.rem_port));
	};
	std::sort(flows.begin(), flows.end(),
		  [&](const auto &a, const auto &b) { return order(a.first) < order(b.first); });
	for (const auto &[k, v] : flows)
		if (f.matches(k, v))
			out.push_back(flow_json<F>(k, v, t, now_ns));
}

} // namespace

json ct_list_fd(int ct_fd, const kvx_timeouts &t, const CtFilter &f, uint64_t now_ns, Ct6Fds v6)
{
	json out = json::array();
	list_flows<Family4>(out, ct_fd, t, f, now_ns);
	if (v6.ct >= 0)
		list_flows<Family6>(out, v6.ct, t, f, now_ns);
	return out;
}

// A binding half of the flow being flushed counts as used at now_ns.
// Called while the flow still exists: the GC keeps the half meanwhile (a
// sweep that copied the flow table before our delete sees the flow, one that
// copies it after sees our time), so it cannot be released and taken by
// another guest between our read and our write.  Written only if it still
// belongs to this flow (its addr/port are the flow's other end: a key
// released and re-used by another guest before the flush read the flow
// table is that guest's, with its MACs) and is older.  Static and 1:1 halves
// have no expiry: never written.  BPF_EXIST: the half may be gone meanwhile.
// set_flags: KVX_BIND_F_* to set as well.  True when written (a whole-value
// write: flush_flows marks a shared port again if it dropped the mark).
template <typename F>
static bool bind_touch(int bind_fd, uint8_t dir, uint8_t proto, const typename F::Addr &key_addr,
		       uint16_t key_port, const typename F::Addr &val_addr, uint16_t val_port,
		       uint64_t now_ns, uint16_t set_flags = 0)
{
	typename F::BindKey k{};
	k.dir = dir;
	k.proto = proto;
	F::set_addr(k, key_addr);
	k.port = key_port;
	typename F::BindVal fv{};
	if (bpf_map_lookup_elem(bind_fd, &k, &fv) != 0)
		return false;
	// The IPv4 value is the IPv6 one's head (abi.h): one rule for both.
	kvx_bind_val &v = F::bind(fv);
	if (bind_is_static(v))
		return false;
	if (F::val_addr(fv) != val_addr || v.port != val_port ||
	    (v.last_used_ns >= now_ns && (v.flags & set_flags) == set_flags))
		return false;
	if (v.last_used_ns < now_ns)
		v.last_used_ns = now_ns;
	v.flags |= set_flags;
	return bpf_map_update_elem(bind_fd, &k, &fv, BPF_EXIST) == 0;
}

// An IPv4 flow of a tenant of a shared port (abi.h kvx_ovl: its claim names
// the flow's guest endpoint, the port's IN half another endpoint of the
// guest): bind_touch leaves that IN half alone (it names the owner), so the
// claim's time is refreshed here (the GC and the datapath's reclaim keep
// it for the grace: the tenant's next packet picks its flow up through it)
// and the IN half gets KVX_BIND_F_FLUSHED (a TCP remote's segments wait
// for the pick-up; no new tenant joins the port), its owner's time
// refreshed.
// Before the delete, as bind_touch; true when the IN half was written.
static bool touch_claim(int bind_fd, int ovl_fd, const kvx_ct_key &k, const kvx_ct_val &v,
			uint64_t now_ns, kvx_bind_val *owner)
{
	if (ovl_fd < 0 || (v.flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE)))
		return false;
	kvx_ovl_key ok{};
	ok.proto = k.proto;
	ok.ext_addr = v.ext_addr;
	ok.ext_port = v.ext_port;
	ok.rem_addr = k.rem_addr;
	ok.rem_port = k.rem_port;
	kvx_ovl_val ov{};
	if (bpf_map_lookup_elem(ovl_fd, &ok, &ov) != 0 || ov.addr != k.int_addr ||
	    ov.port != k.int_port || ov.port == ov.owner_port)
		return false;
	kvx_bind_val iv{};
	if (!ovl_owner_holds(bind_fd, ok, ov, &iv))
		return false;
	if (ov.created_ns < now_ns) {
		ov.created_ns = now_ns;
		bpf_map_update_elem(ovl_fd, &ok, &ov, BPF_EXIST);
	}
	owner->addr = iv.addr;
	owner->port = iv.port;
	const uint16_t set = KVX_BIND_F_FLUSHED;
	if (iv.last_used_ns >= now_ns && (iv.flags & set) == set)
		return false;
	if (iv.last_used_ns < now_ns)
		iv.last_used_ns = now_ns;
	iv.flags |= set;
	kvx_bind_key ik{};
	ik.dir = KVX_BIND_IN;
	ik.proto = ok.proto;
	ik.addr = ok.ext_addr;
	ik.port = ok.ext_port;
	return bpf_map_update_elem(bind_fd, &ik, &iv, BPF_EXIST) == 0;
}

template <typename F>
static void flush_flows(int ct_fd, int bind_fd, const CtFilter &f, uint64_t now_ns,
			CtFlushResult &r, int ovl_fd = -1)
{
	// Keys first, deletes second (kernel/maps.hpp: deleting while walking may
	// restart the walk).  A flow the datapath re-creates in between is a
	// new flow and stays.
	std::vector<std::pair<kvx_bind_key, kvx_bind_val>> written;
	for (const auto &[k, fv] : dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd)) {
		if (!f.matches(k, fv))
			continue;
		const kvx_ct_val &v = F::ct(fv);
		const auto guest = F::int_addr(k), ext = F::ext_addr(fv);
		// The binding's own time is that of its last new flow: without
		// this, the GC would release a years-old binding of a stream
		// that is still sending at its next sweep.  Before the delete
		// (see bind_touch).
		bind_touch<F>(bind_fd, KVX_BIND_OUT, k.proto, guest, k.int_port, ext, v.ext_port,
			      now_ns);
		// A TCP flow's remote may send before the guest does: its
		// segment must wait for the guest's pick-up (dropped), not go
		// to the host, which would reset the connection (abi.h
		// KVX_BIND_F_FLUSHED).  Any IPv4 port: no tenant joins it (ct.h
		// ovl_enter), whose claim of the flushed flow's remote would take
		// the remote's next datagrams from the owner, and refuse the
		// owner's next packet to it.  A TCP IN half is MULTI too: the
		// whole-value write may lose a MULTI, TW or tw_remotes update
		// the datapath makes meanwhile, and a port whose flows are no
		// longer known one by one is never recycled (ct.h
		// bind_recycle), as a pick-up through it would mark it anyway.
		const uint16_t set =
			(k.proto == IPPROTO_TCP ? KVX_BIND_F_MULTI : 0) |
			(k.proto == IPPROTO_TCP || std::is_same_v<F, Family4> ? KVX_BIND_F_FLUSHED : 0);
		const bool in_written = bind_touch<F>(bind_fd, KVX_BIND_IN, k.proto, ext, v.ext_port,
						      guest, k.int_port, now_ns, set);
		if constexpr (std::is_same_v<F, Family4>) {
			kvx_bind_key ik{};
			ik.dir = KVX_BIND_IN;
			ik.proto = k.proto;
			ik.addr = v.ext_addr;
			ik.port = v.ext_port;
			kvx_bind_val owner{};
			if (in_written) {
				owner.addr = k.int_addr;
				owner.port = k.int_port;
				written.emplace_back(ik, owner);
			}
			if (touch_claim(bind_fd, ovl_fd, k, v, now_ns, &owner))
				written.emplace_back(ik, owner);
		}
		if (bpf_map_delete_elem(ct_fd, &k) != 0)
			continue;
		r.flows++;
	}
	// The IN halves written whole above may have lost a shared mark the
	// datapath set meanwhile (a tenant joining their port).
	if constexpr (std::is_same_v<F, Family4>)
		reshare_claimed(bind_fd, ovl_fd, written);
	// Report what the GC will reclaim: dynamic IN halves no flow uses.
	std::unordered_set<typename F::Ext, typename F::ExtHash> referenced;
	for (const auto &[k, v] : dump_hash<typename F::CtKey, typename F::CtVal>(ct_fd))
		referenced.insert(F::ext(k.proto, F::ext_addr(v), F::ct(v).ext_port));
	for (const auto &[k, v] : dump_hash<typename F::BindKey, typename F::BindVal>(bind_fd)) {
		if (k.dir != KVX_BIND_IN || bind_is_static(F::bind(v)))
			continue;
		if (!referenced.count(F::ext(k.proto, key_addr<F>(k), k.port)))
			r.unused_bindings++;
	}
}

CtFlushResult ct_flush_fd(int ct_fd, int bind_fd, const CtFilter &f, uint64_t now_ns,
			  const QuotaMaps &q, Ct6Fds v6, int ovl_fd)
{
	CtFlushResult r;
	flush_flows<Family4>(ct_fd, bind_fd, f, now_ns, r, ovl_fd);
	if (v6.ct >= 0 && v6.bind >= 0)
		flush_flows<Family6>(v6.ct, v6.bind, f, now_ns, r);
	// The datapath decrements a guest's counter only for the flows it
	// reclaims itself; every other deletion is made good by a recount.
	if (q.gflows_fd >= 0) {
		QuotaMaps both = q;
		both.ct6_fd = v6.ct;
		both.bind6_fd = v6.bind;
		r.gflows_fixed = gflows_recount(ct_fd, both);
	}
	return r;
}

} // namespace kvmxdp
