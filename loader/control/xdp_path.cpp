// SPDX-License-Identifier: GPL-2.0
#include "control/xdp_path.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "kernel/bpf_objects.hpp"
#include "base/error.hpp"
#include "base/log.hpp"
#include "base/fd.hpp"
#include "base/fs.hpp"
#include "kvmxdp/abi.h"
#include "kvmxdp_xdp.skel.h"
#include "kernel/netlink.hpp"

namespace kvmxdp {
namespace {

// netdev generic netlink (uapi linux/netdev.h, Linux 6.3).
constexpr uint8_t kNetdevCmdDevGet = 1;
constexpr uint16_t kNetdevAttrIfindex = 1;
constexpr uint16_t kNetdevAttrXdpFeatures = 3;

constexpr const char *kLinkPinPrefix = "link_xdp_";

// A raw netlink request/response exchange: the few messages here (genl,
// bridge FDB) are simpler to spell out than to find in libnl-route.
class RawNl {
public:
	explicit RawNl(int protocol)
		: fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol))
	{
		if (!fd_)
			throw_errno("open netlink socket", "");
		sockaddr_nl sa{};
		sa.nl_family = AF_NETLINK;
		if (::bind(fd_.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0)
			throw_errno("bind netlink socket", "");
		// The daemon must never hang on a reply that does not come.
		timeval tv{2, 0};
		::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}

	// Sends msg (its nlmsg_len set) and calls on_msg for every reply
	// until NLMSG_DONE or the ACK.  Returns 0 or the negative errno of an
	// NLMSG_ERROR.
	int exchange(std::vector<char> &msg, const std::function<void(const nlmsghdr *)> &on_msg)
	{
		auto *h = reinterpret_cast<nlmsghdr *>(msg.data());
		h->nlmsg_len = static_cast<uint32_t>(msg.size());
		h->nlmsg_seq = ++seq_;
		if (::send(fd_.get(), msg.data(), msg.size(), 0) < 0)
			throw_errno("send netlink request", "");
		// NLM_F_DUMP's bits mean other things on NEW requests
		// (NLM_F_ROOT == NLM_F_REPLACE): only GET requests dump.
		const bool dump = (h->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP &&
				  (h->nlmsg_type == RTM_GETLINK || h->nlmsg_type == RTM_GETNEIGH);
		std::vector<char> buf(65536);
		for (;;) {
			ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				throw_errno("receive netlink reply", "");
			}
			int len = static_cast<int>(n);
			for (auto *r = reinterpret_cast<nlmsghdr *>(buf.data()); NLMSG_OK(r, len);
			     r = NLMSG_NEXT(r, len)) {
				if (r->nlmsg_seq != seq_)
					continue;
				if (r->nlmsg_type == NLMSG_DONE)
					return 0;
				if (r->nlmsg_type == NLMSG_ERROR) {
					auto *e = static_cast<nlmsgerr *>(NLMSG_DATA(r));
					if (e->error || !dump)
						return e->error;
					continue;
				}
				on_msg(r);
				if (!dump)
					return 0;
			}
		}
	}

private:
	Fd fd_;
	uint32_t seq_ = 0;
};

std::vector<char> nl_msg(uint16_t type, uint16_t flags, const void *hdr, size_t hdr_len)
{
	std::vector<char> m(NLMSG_SPACE(hdr_len));
	auto *h = reinterpret_cast<nlmsghdr *>(m.data());
	h->nlmsg_type = type;
	h->nlmsg_flags = flags;
	std::memcpy(NLMSG_DATA(h), hdr, hdr_len);
	return m;
}

void nl_put(std::vector<char> &m, uint16_t type, const void *data, size_t len)
{
	size_t off = NLMSG_ALIGN(m.size());
	m.resize(off + RTA_SPACE(len));
	auto *a = reinterpret_cast<rtattr *>(m.data() + off);
	a->rta_type = type;
	a->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
	std::memcpy(RTA_DATA(a), data, len);
}

// Attributes after a fixed header of hdr_len bytes.
std::map<uint16_t, std::pair<const void *, size_t>> nl_attrs(const nlmsghdr *h, size_t hdr_len)
{
	std::map<uint16_t, std::pair<const void *, size_t>> out;
	int len = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_SPACE(hdr_len));
	auto *a = reinterpret_cast<const rtattr *>(static_cast<const char *>(NLMSG_DATA(h)) +
						   NLMSG_ALIGN(hdr_len));
	for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
		out[a->rta_type & NLA_TYPE_MASK] = {RTA_DATA(a), RTA_PAYLOAD(a)};
	return out;
}

template <typename T> T attr_as(const std::pair<const void *, size_t> &a)
{
	T v{};
	std::memcpy(&v, a.first, std::min(sizeof(T), a.second));
	return v;
}

// One generic netlink request with one attribute, one attribute of the
// answer; nullopt on an error (ENOENT: a kernel without the family).
template <typename T>
std::optional<T> genl_query(RawNl &nl, uint16_t family, uint8_t cmd, uint16_t in_attr,
			    const void *in, size_t in_len, uint16_t out_attr)
{
	genlmsghdr g{};
	g.cmd = cmd;
	g.version = 1;
	auto m = nl_msg(family, NLM_F_REQUEST, &g, sizeof(g));
	nl_put(m, in_attr, in, in_len);
	std::optional<T> out;
	int err = nl.exchange(m, [&](const nlmsghdr *r) {
		auto attrs = nl_attrs(r, GENL_HDRLEN);
		if (attrs.count(out_attr))
			out = attr_as<T>(attrs[out_attr]);
	});
	return err ? std::nullopt : out;
}

bool has(const std::vector<std::string> &v, const std::string &s)
{
	return std::find(v.begin(), v.end(), s) != v.end();
}

std::string link_pin(const std::string &pin_dir, int ifindex)
{
	return pin_dir + "/" + kLinkPinPrefix + std::to_string(ifindex);
}

std::string ifname_of(int ifindex)
{
	char buf[IF_NAMESIZE] = {};
	return ::if_indextoname(static_cast<unsigned>(ifindex), buf) ? buf : "";
}

} // namespace

std::optional<uint64_t> xdp_features(int ifindex)
{
	RawNl nl(NETLINK_GENERIC);
	static const char kFamily[] = "netdev";
	static std::optional<uint16_t> family =
		genl_query<uint16_t>(nl, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME,
				     kFamily, sizeof(kFamily), CTRL_ATTR_FAMILY_ID);
	if (!family)
		return std::nullopt;
	uint32_t idx = static_cast<uint32_t>(ifindex);
	return genl_query<uint64_t>(nl, *family, kNetdevCmdDevGet, kNetdevAttrIfindex, &idx,
				    sizeof(idx), kNetdevAttrXdpFeatures);
}

std::vector<PortInfo> bridge_ports(int bridge_ifindex)
{
	RawNl nl(NETLINK_ROUTE);
	ifinfomsg ifi{};
	ifi.ifi_family = AF_UNSPEC;
	auto m = nl_msg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, &ifi, sizeof(ifi));
	std::vector<PortInfo> out;
	int err = nl.exchange(m, [&](const nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWLINK)
			return;
		auto *ri = static_cast<const ifinfomsg *>(NLMSG_DATA(r));
		auto attrs = nl_attrs(r, sizeof(ifinfomsg));
		if (!attrs.count(IFLA_MASTER) ||
		    attr_as<uint32_t>(attrs[IFLA_MASTER]) != static_cast<uint32_t>(bridge_ifindex))
			return;
		PortInfo p;
		p.ifindex = ri->ifi_index;
		if (attrs.count(IFLA_IFNAME))
			p.name = static_cast<const char *>(attrs[IFLA_IFNAME].first);
		if (attrs.count(IFLA_LINKINFO)) {
			auto &li = attrs[IFLA_LINKINFO];
			int len = static_cast<int>(li.second);
			for (auto *a = static_cast<const rtattr *>(li.first); RTA_OK(a, len);
			     a = RTA_NEXT(a, len))
				if (a->rta_type == IFLA_INFO_KIND)
					p.kind = static_cast<const char *>(RTA_DATA(a));
		}
		if (attrs.count(IFLA_XDP)) {
			auto &x = attrs[IFLA_XDP];
			int len = static_cast<int>(x.second);
			for (auto *a = static_cast<const rtattr *>(x.first); RTA_OK(a, len);
			     a = RTA_NEXT(a, len))
				if (a->rta_type == IFLA_XDP_PROG_ID)
					p.xdp_prog_id = *static_cast<const uint32_t *>(RTA_DATA(a));
		}
		out.push_back(p);
	});
	if (err)
		throw Error("list the ports of bridge ifindex " + std::to_string(bridge_ifindex), "",
			    -err);
	return out;
}

XdpPath::XdpPath(HookMode mode, Skeleton &tc, std::string pin_dir)
	: mode_(mode)
	, tc_(tc)
	, pin_dir_(std::move(pin_dir))
{
}

XdpPath::~XdpPath()
{
	kvmxdp_xdp__destroy(skel_);
}

int XdpPath::prog_fd(const char *name)
{
	if (!skel_) {
		kvmxdp_xdp *s = kvmxdp_xdp__open();
		if (!s)
			throw_errno("open", "BPF skeleton kvmxdp_xdp");
		bpf_map *m;
		int err = 0;
		bpf_object__for_each_map(m, s->obj) {
			std::string n = bpf_map__name(m);
			if (n.find('.') != std::string::npos)
				continue; // .bss and friends are the object's own
			err = bpf_map__reuse_fd(m, tc_.map_fd(n.c_str()));
			if (err)
				break;
		}
		if (!err)
			err = kvmxdp_xdp__load(s);
		if (err) {
			kvmxdp_xdp__destroy(s);
			throw Error("load the XDP programs", "", -err);
		}
		skel_ = s;
	}
	bpf_program *p = bpf_object__find_program_by_name(skel_->obj, name);
	if (!p)
		throw Error("find program", name, ENOENT);
	return check_libbpf(bpf_program__fd(p), "get fd of program", name);
}

bool XdpPath::attach(int ifindex, const std::string &ifname, const char *prog, std::string &why)
{
	const std::string pin = link_pin(pin_dir_, ifindex);
	int pfd = prog_fd(prog);
	Fd link(bpf_obj_get(pin.c_str()));
	if (link) {
		bpf_link_info li{};
		bpf_prog_info pi{};
		uint32_t ll = sizeof(li), pl = sizeof(pi);
		// A link whose device went away is defunct (ifindex 0): an
		// update would succeed and attach nothing, so it is replaced.
		if (bpf_obj_get_info_by_fd(link.get(), &li, &ll) == 0 &&
		    li.xdp.ifindex == static_cast<uint32_t>(ifindex)) {
			// Already this program (every sync after the first).
			if (bpf_obj_get_info_by_fd(pfd, &pi, &pl) == 0 && li.prog_id == pi.id)
				return true;
			// Ours from before (a restart, an upgrade): swapped in
			// place, no moment without a program.
			if (bpf_link_update(link.get(), pfd, nullptr) == 0)
				return true;
		}
		::unlink(pin.c_str());
	}
	bpf_link_create_opts opts{};
	opts.sz = sizeof(opts);
	opts.flags = XDP_FLAGS_DRV_MODE;
	int fd = bpf_link_create(pfd, ifindex, BPF_XDP, &opts);
	if (fd < 0) {
		int err = errno;
		why = "XDP attach failed (" + std::string(std::strerror(err)) + ")" +
		      (err == EBUSY || err == EEXIST
			       ? ": another XDP program is attached ('ip link show dev " + ifname +
					 "'); TC path"
			       : "; TC path");
		return false;
	}
	Fd owned(fd);
	if (bpf_obj_pin(fd, pin.c_str()) < 0) {
		why = "pin " + pin + ": " + std::strerror(errno) + "; TC path";
		bpf_link_detach(fd);
		return false;
	}
	return true;
}

std::vector<XdpDevice> XdpPath::sync(NlSocket &nl, int bridge_ifindex, int uplink_ifindex)
{
	std::vector<XdpDevice> devs;
	if (uplink_ifindex > 0) {
		XdpDevice d;
		d.ifindex = uplink_ifindex;
		d.ifname = ifname_of(uplink_ifindex);
		d.role = "uplink";
		devs.push_back(d);
	}
	std::map<int, std::string> kinds;
	if (bridge_ifindex > 0)
		for (const PortInfo &p : bridge_ports(bridge_ifindex)) {
			XdpDevice d;
			d.ifindex = p.ifindex;
			d.ifname = p.name;
			d.role = "port";
			kinds[p.ifindex] = p.kind;
			devs.push_back(d);
		}
	if (uplink_ifindex > 0)
		if (auto l = find_link(nl, devs[0].ifname))
			kinds[uplink_ifindex] = l->kind; // a veth in tests and the bench

	// Facts and redirect targets first: whether the uplink's XDP pays
	// depends on the ports (choose_hook).
	std::map<int, DeviceFacts> facts;
	bool ports_tx = false;
	for (XdpDevice &d : devs) {
		DeviceFacts f = device_facts(d.ifname);
		f.kind = kinds[d.ifindex];
		f.xdp_features = xdp_features(d.ifindex);
		d.tx = xdp_tx_allowed(f, d.tx_why);
		ports_tx = ports_tx || (d.tx && d.role == "port");
		facts[d.ifindex] = f;
	}
	std::set<int> want;
	const int xdev_fd = tc_.map_fd(KVX_MAP_XDEV);
	std::map<uint32_t, kvx_xdev_val> xdev;
	for (XdpDevice &d : devs) {
		d.hook = choose_hook(mode_, d.role, facts[d.ifindex], ports_tx);
		if (d.hook.mode == "xdp") {
			std::string why;
			if (attach(d.ifindex, d.ifname,
				   d.role == "uplink" ? "kvx_xdp_up" : "kvx_xdp_port", why)) {
				want.insert(d.ifindex);
			} else {
				d.hook = {"tc", why};
				if (!has(warned_, d.ifname + why)) {
					warned_.push_back(d.ifname + why);
					log_warn(d.ifname + ": " + why);
				}
			}
		}
		kvx_xdev_val v{};
		v.flags = static_cast<__u16>((d.tx ? KVX_XDEV_F_TX : 0) |
					     (d.role == "port" ? KVX_XDEV_F_PORT : 0));
		xdev[static_cast<uint32_t>(d.ifindex)] = v;
	}
	if (bridge_ifindex > 0) {
		kvx_xdev_val v{};
		v.flags = KVX_XDEV_F_BRIDGE;
		if (auto l = find_link(nl, ifname_of(bridge_ifindex)))
			std::memcpy(v.mac, l->mac.data(), sizeof(v.mac));
		xdev[static_cast<uint32_t>(bridge_ifindex)] = v;
	}

	// Links of devices that no longer want XDP (mode change, a port that
	// left the bridge, an uplink that moved) go.
	for (const auto &[ifindex, prog_id] : pinned_links(pin_dir_)) {
		(void)prog_id;
		if (!want.count(ifindex))
			::unlink(link_pin(pin_dir_, ifindex).c_str());
	}
	// kvx_xdev: what is, then what was not.
	for (const auto &[k, v] : xdev)
		check_libbpf(bpf_map_update_elem(xdev_fd, &k, &v, BPF_ANY), "update", KVX_MAP_XDEV);
	uint32_t key, next;
	std::vector<uint32_t> gone;
	for (int r = bpf_map_get_next_key(xdev_fd, nullptr, &next); r == 0;
	     r = bpf_map_get_next_key(xdev_fd, &key, &next)) {
		key = next;
		if (!xdev.count(key))
			gone.push_back(key);
	}
	for (uint32_t k : gone)
		bpf_map_delete_elem(xdev_fd, &k);
	return devs;
}

void XdpPath::sync_fdb(int bridge_ifindex, uint64_t now_ns)
{
	if (bridge_ifindex <= 0)
		return;
	const int xfdb_fd = tc_.map_fd(KVX_MAP_XFDB);
	std::set<int> ports;
	for (const PortInfo &p : bridge_ports(bridge_ifindex))
		ports.insert(p.ifindex);

	// The bridge's dynamic entries of its ports.
	RawNl nl(NETLINK_ROUTE);
	ndmsg ndm{};
	ndm.ndm_family = AF_BRIDGE;
	auto dump = nl_msg(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, &ndm, sizeof(ndm));
	std::map<std::array<uint8_t, 6>, int> fdb;
	nl.exchange(dump, [&](const nlmsghdr *r) {
		if (r->nlmsg_type != RTM_NEWNEIGH)
			return;
		auto *n = static_cast<const ndmsg *>(NLMSG_DATA(r));
		auto attrs = nl_attrs(r, sizeof(ndmsg));
		if (!ports.count(n->ndm_ifindex) || (n->ndm_state & (NUD_PERMANENT | NUD_NOARP)) ||
		    !attrs.count(NDA_LLADDR) || attrs[NDA_LLADDR].second != 6 ||
		    (attrs.count(NDA_MASTER) &&
		     attr_as<uint32_t>(attrs[NDA_MASTER]) != static_cast<uint32_t>(bridge_ifindex)))
			return;
		std::array<uint8_t, 6> mac;
		std::memcpy(mac.data(), attrs[NDA_LLADDR].first, 6);
		fdb[mac] = n->ndm_ifindex;
	});

	std::vector<std::pair<kvx_xfdb_key, kvx_xfdb_val>> entries;
	kvx_xfdb_key key{}, next{};
	for (int r = bpf_map_get_next_key(xfdb_fd, nullptr, &next); r == 0;
	     r = bpf_map_get_next_key(xfdb_fd, &key, &next)) {
		key = next;
		kvx_xfdb_val v{};
		if (bpf_map_lookup_elem(xfdb_fd, &key, &v) == 0)
			entries.emplace_back(key, v);
	}
	std::set<std::array<uint8_t, 6>> known;
	for (const auto &[k, v] : entries) {
		std::array<uint8_t, 6> mac;
		std::memcpy(mac.data(), k.mac, 6);
		known.insert(mac);
		const bool seen = v.seen_ns > fdb_synced_ns_; // by XDP since the last call
		if (seen && ports.count(static_cast<int>(v.ifindex))) {
			// As if the frame had passed the bridge: learnt or
			// refreshed on that port (NTF_USE is br_fdb_update()).
			ndmsg u{};
			u.ndm_family = AF_BRIDGE;
			u.ndm_ifindex = static_cast<int>(v.ifindex);
			u.ndm_state = NUD_REACHABLE;
			u.ndm_flags = NTF_MASTER | NTF_USE;
			auto m = nl_msg(RTM_NEWNEIGH,
					NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &u,
					sizeof(u));
			nl_put(m, NDA_LLADDR, k.mac, 6);
			nl.exchange(m, [](const nlmsghdr *) {});
			continue;
		}
		auto it = fdb.find(mac);
		const bool stale = !v.seen_ns || now_ns - v.seen_ns > kStaleNs;
		if (it == fdb.end() ? stale || !ports.count(static_cast<int>(v.ifindex))
				    : static_cast<uint32_t>(it->second) != v.ifindex) {
			if (it == fdb.end()) {
				bpf_map_delete_elem(xfdb_fd, &k);
			} else {
				kvx_xfdb_val nv{};
				nv.ifindex = static_cast<uint32_t>(it->second);
				bpf_map_update_elem(xfdb_fd, &k, &nv, BPF_ANY);
			}
		}
	}
	// Guests the bridge knows and XDP has not seen (ports without XDP):
	// seen_ns 0, so they are never refreshed on the bridge's behalf.
	for (const auto &[mac, ifindex] : fdb) {
		if (known.count(mac))
			continue;
		kvx_xfdb_key k{};
		std::memcpy(k.mac, mac.data(), 6);
		kvx_xfdb_val v{};
		v.ifindex = static_cast<uint32_t>(ifindex);
		bpf_map_update_elem(xfdb_fd, &k, &v, BPF_NOEXIST);
	}
	fdb_synced_ns_ = now_ns;
}

std::vector<std::pair<int, uint32_t>> XdpPath::pinned_links(const std::string &pin_dir)
{
	std::vector<std::pair<int, uint32_t>> out;
	DIR *dir = ::opendir(pin_dir.c_str());
	if (!dir)
		return out;
	const std::string prefix = kLinkPinPrefix;
	while (dirent *de = ::readdir(dir)) {
		std::string n = de->d_name;
		if (n.compare(0, prefix.size(), prefix) != 0)
			continue;
		int ifindex = std::atoi(n.c_str() + prefix.size());
		uint32_t prog_id = 0;
		Fd fd(bpf_obj_get((pin_dir + "/" + n).c_str()));
		if (fd) {
			bpf_link_info info{};
			uint32_t len = sizeof(info);
			if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 &&
			    info.xdp.ifindex != 0)
				prog_id = info.prog_id;
		}
		out.emplace_back(ifindex, prog_id);
	}
	::closedir(dir);
	return out;
}

void XdpPath::remove_all(const std::string &pin_dir)
{
	for (const auto &[ifindex, prog_id] : pinned_links(pin_dir)) {
		(void)prog_id;
		::unlink(link_pin(pin_dir, ifindex).c_str());
	}
}

} // namespace kvmxdp
