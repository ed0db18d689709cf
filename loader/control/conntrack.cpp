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

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "control/gc.hpp"

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

bool CtFilter::matches(const kvx_ct_key &k, const kvx_ct_val &v) const
{
	if (guest && ntohl(k.int_addr) != *guest)
		return false;
	if (remote && ntohl(k.rem_addr) != *remote)
		return false;
	if (proto && k.proto != *proto)
		return false;
	if (ext_port && ntohs(v.ext_port) != *ext_port)
		return false;
	if (state && v.state != *state)
		return false;
	return true;
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
		{KVX_CT_F_SYNACK, "synack"},
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
	if (!a.guest.empty()) {
		try {
			f.guest = parse_ipv4(a.guest);
		} catch (const Error &) {
			throw Error("invalid --guest '" + a.guest + "': not an IPv4 address");
		}
	}
	if (!a.remote.empty()) {
		try {
			f.remote = parse_ipv4(a.remote);
		} catch (const Error &) {
			throw Error("invalid --remote '" + a.remote + "': not an IPv4 address");
		}
	}
	if (!a.proto.empty()) {
		std::string p = upper(a.proto);
		if (p == "TCP")
			f.proto = IPPROTO_TCP;
		else if (p == "UDP")
			f.proto = IPPROTO_UDP;
		else if (p == "ICMP")
			f.proto = IPPROTO_ICMP;
		else
			throw Error("invalid --proto '" + a.proto + "': use tcp, udp or icmp");
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

json ct_flow_json(const kvx_ct_key &k, const kvx_ct_val &v, const kvx_timeouts &t, uint64_t now_ns)
{
	const uint32_t timeout = ct_timeout_s(v, k.proto, t);
	const uint64_t idle = secs_since(v.last_seen_ns, now_ns);
	const bool expired = ct_expired(v, k.proto, t, now_ns);
	json j;
	j["proto"] = ct_proto_name(k.proto);
	j["int_addr"] = format_ipv4(ntohl(k.int_addr));
	j["int_port"] = ntohs(k.int_port);
	j["rem_addr"] = format_ipv4(ntohl(k.rem_addr));
	j["rem_port"] = ntohs(k.rem_port);
	j["ext_addr"] = format_ipv4(ntohl(v.ext_addr));
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
			if (!(s.flags & (KVX_CT_TCP_F_SYN | KVX_CT_TCP_F_ACK)))
				continue;
			json side;
			side["end"] = s.end;
			side["maxend"] = s.maxend;
			side["maxwin"] = s.maxwin;
			if (s.flags & KVX_CT_TCP_F_ACK)
				side["ack"] = s.ack;
			if (s.flags & KVX_CT_TCP_F_WSCALE)
				side["wscale"] = s.wscale;
			tcp[sides[i]] = side;
		}
		j["tcp"] = tcp;
	}
	return j;
}

std::string ct_flow_line(const json &f)
{
	const std::string proto = f.at("proto").get<std::string>();
	const bool ports = proto == "tcp" || proto == "udp";
	const bool icmp = proto == "icmp";
	auto ep = [&](const char *addr, const char *port) {
		std::string s = f.at(addr).get<std::string>();
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

json ct_list_fd(int ct_fd, const kvx_timeouts &t, const CtFilter &f, uint64_t now_ns)
{
	auto flows = dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd);
	std::sort(flows.begin(), flows.end(), [](const auto &a, const auto &b) {
		const kvx_ct_key &x = a.first, &y = b.first;
		return std::make_tuple(x.proto, ntohl(x.int_addr), ntohs(x.int_port),
				       ntohl(x.rem_addr), ntohs(x.rem_port)) <
		       std::make_tuple(y.proto, ntohl(y.int_addr), ntohs(y.int_port),
				       ntohl(y.rem_addr), ntohs(y.rem_port));
	});
	json out = json::array();
	for (const auto &[k, v] : flows)
		if (f.matches(k, v))
			out.push_back(ct_flow_json(k, v, t, now_ns));
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
// set_flags: KVX_BIND_F_* to set as well.
static void bind_touch(int bind_fd, uint8_t dir, uint8_t proto, uint32_t key_addr,
		       uint16_t key_port, uint32_t val_addr, uint16_t val_port, uint64_t now_ns,
		       uint16_t set_flags = 0)
{
	kvx_bind_key k{};
	k.dir = dir;
	k.proto = proto;
	k.addr = key_addr;
	k.port = key_port;
	kvx_bind_val v{};
	if (bpf_map_lookup_elem(bind_fd, &k, &v) != 0)
		return;
	if (bind_is_static(v))
		return;
	if (v.addr != val_addr || v.port != val_port ||
	    (v.last_used_ns >= now_ns && (v.flags & set_flags) == set_flags))
		return;
	if (v.last_used_ns < now_ns)
		v.last_used_ns = now_ns;
	v.flags |= set_flags;
	bpf_map_update_elem(bind_fd, &k, &v, BPF_EXIST);
}

CtFlushResult ct_flush_fd(int ct_fd, int bind_fd, const CtFilter &f, uint64_t now_ns,
			  const QuotaMaps &q)
{
	CtFlushResult r;
	// Keys first, deletes second (kernel/maps.hpp: deleting while walking may
	// restart the walk).  A flow the datapath re-creates in between is a
	// new flow and stays.
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd)) {
		if (!f.matches(k, v))
			continue;
		// The binding's own time is that of its last new flow: without
		// this, the GC would release a years-old binding of a stream
		// that is still sending at its next sweep.  Before the delete
		// (see bind_touch).
		bind_touch(bind_fd, KVX_BIND_OUT, k.proto, k.int_addr, k.int_port, v.ext_addr,
			   v.ext_port, now_ns);
		// A TCP flow's remote may send before the guest does: its
		// segment must wait for the guest's pick-up (dropped), not go
		// to the host, which would reset the connection (abi.h
		// KVX_BIND_F_FLUSHED).
		bind_touch(bind_fd, KVX_BIND_IN, k.proto, v.ext_addr, v.ext_port, k.int_addr,
			   k.int_port, now_ns, k.proto == IPPROTO_TCP ? KVX_BIND_F_FLUSHED : 0);
		if (bpf_map_delete_elem(ct_fd, &k) != 0)
			continue;
		r.flows++;
	}
	// Report what the GC will reclaim: dynamic IN halves no flow uses.
	std::set<std::tuple<uint8_t, uint32_t, uint16_t>> referenced;
	for (const auto &[k, v] : dump_hash<kvx_ct_key, kvx_ct_val>(ct_fd))
		referenced.insert({k.proto, v.ext_addr, v.ext_port});
	for (const auto &[k, v] : dump_hash<kvx_bind_key, kvx_bind_val>(bind_fd)) {
		if (k.dir != KVX_BIND_IN || bind_is_static(v))
			continue;
		if (!referenced.count({k.proto, k.addr, k.port}))
			r.unused_bindings++;
	}
	// The datapath decrements a guest's counter only for the flows it
	// reclaims itself; every other deletion is made good by a recount.
	if (q.gflows_fd >= 0)
		r.gflows_fixed = gflows_recount(ct_fd, q);
	return r;
}

} // namespace kvmxdp
