// SPDX-License-Identifier: GPL-2.0
#include "control/guest_stats.hpp"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <tuple>

#include "base/fs.hpp"
#include "control/gc.hpp"
#include "control/resume.hpp"
#include "kernel/maps.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/config.hpp"
#include "model/libvirt.hpp"
#include "model/quota.hpp"

namespace kvmxdp {

uint64_t GuestRow::drops_total() const
{
	uint64_t n = 0;
	for (uint64_t d : drops)
		n += d;
	return n;
}

const char *gdrop_name(int cls)
{
	switch (cls) {
#define KVX_X_GD_NAME(name, desc) \
	case KVX_GD_##name:       \
		return #name;
		KVX_GDROPS(KVX_X_GD_NAME)
#undef KVX_X_GD_NAME
	default:
		return "?";
	}
}

std::string mac_text(const MacAddr &m)
{
	char buf[18];
	std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
		      m[4], m[5]);
	return buf;
}

std::vector<GuestRow> read_guest_rows(const GuestStatsFds &fds, const std::vector<Lease> &leases,
				      const GuestVmNames &vms)
{
	const int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		throw Error("count", "possible CPUs", -ncpu);
	const kvx_cfg cfg = read_cfg(fds.cfg);
	// One row per owner: a guest that claims several addresses counts
	// them in one slot (abi.h kvx_gflows).
	std::map<MacAddr, std::map<uint32_t, kvx_guest_val>> owned;
	for (const auto &[addr_be, owner] : dump_hash<__be32, kvx_guest_val>(fds.guest)) {
		MacAddr mac;
		std::copy(owner.mac, owner.mac + 6, mac.begin());
		owned[mac][ntohl(addr_be)] = owner;
	}
	std::map<MacAddr, GuestRow> by_mac;
	for (const auto &[mac, addrs] : owned) {
		GuestRow &r = by_mac[mac];
		r.mac = mac;
		for (const auto &[addr, v] : addrs) { // ascending
			r.addrs.push_back(addr);
			r.seen_ns.push_back(v.seen_ns);
			r.leased.push_back((v.flags & KVX_GUEST_F_LEASE) != 0);
		}
	}
	// IPv6: the address's owner by MAC, latest sighting per address.
	using Addr6 = std::array<uint8_t, 16>;
	std::map<MacAddr, std::map<Addr6, uint64_t>> owned6;
	auto own6 = [&](const uint8_t *m, const __be32 *a, uint64_t seen) {
		MacAddr mac;
		std::copy(m, m + 6, mac.begin());
		if (mac == MacAddr{})
			return; // a binding without a guest MAC yet (map add)
		Addr6 addr;
		std::memcpy(addr.data(), a, 16);
		uint64_t &s = owned6[mac][addr];
		s = std::max(s, seen);
	};
	if (fds.nd >= 0)
		for (const auto &[k, v] : dump_hash<kvx_nd_key, kvx_nd_val>(fds.nd))
			if (v.state == KVX_ND_OWNED)
				own6(v.mac, k.addr, v.last_seen_ns);
	if (fds.bind6 >= 0) {
		// A flow's last packet keeps its address alive (a binding's
		// last use is only its flows' creation).
		std::map<Addr6, uint64_t> flow_seen;
		if (fds.ct6 >= 0)
			for (const auto &[k, v] : dump_hash<kvx_ct6_key, kvx_ct6_val>(fds.ct6)) {
				Addr6 a;
				std::memcpy(a.data(), k.int_addr, 16);
				uint64_t &s = flow_seen[a];
				s = std::max<uint64_t>(s, v.ct.last_seen_ns);
			}
		for (const auto &[k, v] : dump_hash<kvx_bind6_key, kvx_bind6_val>(fds.bind6)) {
			if (k.dir != KVX_BIND_IN)
				continue;
			Addr6 a;
			std::memcpy(a.data(), v.addr, 16);
			const auto f = flow_seen.find(a);
			own6(v.bind.guest_mac, v.addr,
			     std::max<uint64_t>(v.bind.last_used_ns,
						f != flow_seen.end() ? f->second : 0));
		}
	}
	for (const auto &[mac, addrs] : owned6) {
		GuestRow &r = by_mac[mac];
		r.mac = mac;
		for (const auto &[addr, seen] : addrs) { // ascending
			r.addrs6.push_back(addr);
			r.seen6_ns.push_back(seen);
		}
	}
	std::map<uint32_t, int> owners_of_slot;
	const GuestPorts ports = brport_ports(fds.brport);
	std::vector<GuestRow> rows;
	std::vector<kvx_gstat> percpu(static_cast<size_t>(ncpu));
	for (auto &[mac, r] : by_mac) {
		// By the MAC alone (the address is read only without one): a
		// guest's IPv4 and IPv6 share the slot.
		const uint32_t gslot = kvx_guest_slot(mac.data(), 0, cfg.guest_seed);
		r.slot = gslot & (KVX_GSTATS_SLOTS - 1);
		owners_of_slot[r.slot]++;
		if (bpf_map_lookup_elem(fds.gstats, &r.slot, percpu.data()) == 0)
			for (const kvx_gstat &v : percpu) {
				r.pkts_out += v.pkts_out;
				r.bytes_out += v.bytes_out;
				r.pkts_in += v.pkts_in;
				r.bytes_in += v.bytes_in;
				for (int i = 0; i < KVX_GD_MAX; i++)
					r.drops[static_cast<size_t>(i)] += v.drops[i];
			}
		kvx_gflows_val f{};
		__u32 k = mac_slot(mac.data(), ports, cfg.guest_seed);
		if (bpf_map_lookup_elem(fds.gflows, &k, &f) == 0) {
			// Read as signed (abi.h): a racing decrement below 0 is none.
			r.flows_out = static_cast<int32_t>(f.out) > 0 ? f.out : 0;
			r.flows_in = static_cast<int32_t>(f.in) > 0 ? f.in : 0;
		}
		for (const Lease &l : leases)
			if (l.mac == mac && !l.hostname.empty())
				r.dhcp_hostname = l.hostname;
		if (auto v = vms.by_mac.find(mac_text(mac)); v != vms.by_mac.end())
			r.vm = v->second;
		for (uint32_t a : r.addrs)
			if (auto v = vms.by_addr.find(a); r.vm.empty() && v != vms.by_addr.end() &&
							  !vms.ambiguous_macs.count(mac_text(mac)))
				r.vm = v->second;
		rows.push_back(r);
	}
	for (GuestRow &r : rows)
		r.shared = owners_of_slot[r.slot] > 1;
	std::sort(rows.begin(), rows.end(), [](const GuestRow &a, const GuestRow &b) {
		return std::tie(a.addrs, a.addrs6) < std::tie(b.addrs, b.addrs6);
	});
	return rows;
}

std::vector<std::pair<std::string, std::vector<std::string>>>
DomainFiles::read(const std::string &libvirt_root, const std::string &driver)
{
	const std::string dir = libvirt_root + "/run/libvirt/" + driver;
	std::map<std::string, Entry> now;
	std::error_code ec;
	for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
		const std::string path = e.path().string();
		if (path.size() < 4 || path.compare(path.size() - 4, 4, ".xml") != 0)
			continue;
		struct stat st {};
		if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		const std::string sig = std::to_string(st.st_ino) + "/" +
					std::to_string(st.st_size) + "/" +
					std::to_string(st.st_mtim.tv_sec) + "." +
					std::to_string(st.st_mtim.tv_nsec);
		if (auto it = files_.find(path); it != files_.end() && it->second.sig == sig) {
			now[path] = it->second;
			continue;
		}
		Entry en;
		en.sig = sig;
		parses_++;
		try {
			if (auto text = read_file(path)) {
				const LibvirtDomain d = parse_libvirt_domain(*text, path);
				en.name = d.name;
				for (const auto &i : d.interfaces)
					if (!i.mac.empty())
						en.macs.push_back(i.mac);
			}
		} catch (const std::exception &) {
			// Not a domain status kvmxdp can read: no name from it.
		}
		now[path] = en;
	}
	files_ = std::move(now); // files gone are forgotten
	std::vector<std::pair<std::string, std::vector<std::string>>> out;
	for (const auto &[path, en] : files_)
		if (!en.name.empty())
			out.emplace_back(en.name, en.macs);
	return out;
}

GuestVmNames guest_vm_names(const std::vector<StaticMapping> &mappings,
			    const std::string &libvirt_root, DomainFiles *files)
{
	GuestVmNames n;
	auto name_mac = [&](const std::string &mac, const std::string &vm) {
		if (n.ambiguous_macs.count(mac))
			return;
		auto [it, fresh] = n.by_mac.emplace(mac, vm);
		if (!fresh && it->second != vm) {
			n.by_mac.erase(it);
			n.ambiguous_macs.insert(mac);
		}
	};
	for (const auto &sm : mappings) {
		if (sm.vm.empty() || sm.m.v6)
			continue;
		if (!sm.lease_mac.empty())
			name_mac(sm.lease_mac, sm.vm);
		else if (sm.m.guest_addr)
			n.by_addr[sm.m.guest_addr] = sm.vm;
	}
	// The running domains' interfaces: every VM, mapped or not.
	DomainFiles once;
	for (const auto &[name, macs] : (files ? files : &once)->read(libvirt_root))
		for (const auto &mac : macs)
			name_mac(mac, name);
	return n;
}

std::vector<Lease> instance_leases(const Instance &inst)
{
	const std::string path = leases_path(inst.dhcp_leases, inst.bridge);
	if (path.empty())
		return {};
	auto text = read_file(path);
	return text ? parse_libvirt_leases(*text, path) : std::vector<Lease>{};
}

struct PinnedGuestStats::Fds {
	Fd cfg, guest, gstats, gflows;
	std::optional<Fd> nd, bind6, ct6, brport;
};

PinnedGuestStats::PinnedGuestStats(const DirFd &pins)
{
	auto open = [&](const char *m) { return open_pinned(pins, m, pinned_layout(m)); };
	// The IPv6 tables of an instance pinned by an older kvmxdp may be
	// missing: its guests are then named by IPv4 only.
	auto find = [&](const char *m) { return find_pinned(pins, m, pinned_layout(m)); };
	fds_ = std::make_unique<Fds>(Fds{
		open(KVX_MAP_CFG), open(KVX_MAP_GUEST), open(KVX_MAP_GSTATS), open(KVX_MAP_GFLOWS),
		find(KVX_MAP_ND), find(KVX_MAP_BIND6), find(KVX_MAP_CT6), find(KVX_MAP_BRPORT)});
}

PinnedGuestStats::~PinnedGuestStats() = default;

GuestStatsFds PinnedGuestStats::fds() const
{
	auto fd = [](const std::optional<Fd> &f) { return f ? f->get() : -1; };
	return {fds_->cfg.get(),  fds_->guest.get(), fds_->gstats.get(), fds_->gflows.get(),
		fd(fds_->brport), fd(fds_->nd),	     fd(fds_->bind6),	 fd(fds_->ct6)};
}

std::vector<GuestRow> active_guests(std::vector<GuestRow> rows, uint64_t now_ns, uint64_t idle_ns)
{
	std::vector<GuestRow> out;
	for (GuestRow &r : rows) {
		GuestRow k = r;
		k.addrs.clear();
		k.seen_ns.clear();
		k.leased.clear();
		k.addrs6.clear();
		k.seen6_ns.clear();
		// A seen_ns ahead of now (another clock, a racing write) counts
		// as now.
		auto idle = [&](uint64_t seen) {
			return !seen || (now_ns > seen && now_ns - seen > idle_ns);
		};
		for (size_t i = 0; i < r.addrs6.size(); i++) {
			const uint64_t seen = i < r.seen6_ns.size() ? r.seen6_ns[i] : 0;
			if (idle(seen))
				continue;
			k.addrs6.push_back(r.addrs6[i]);
			k.seen6_ns.push_back(seen);
		}
		for (size_t i = 0; i < r.addrs.size(); i++) {
			const uint64_t seen = i < r.seen_ns.size() ? r.seen_ns[i] : 0;
			const bool lease = i < r.leased.size() && r.leased[i];
			if (!lease && idle(seen))
				continue;
			k.addrs.push_back(r.addrs[i]);
			k.seen_ns.push_back(seen);
			k.leased.push_back(lease);
		}
		if (!k.addrs.empty() || !k.addrs6.empty())
			out.push_back(std::move(k));
	}
	return out;
}

} // namespace kvmxdp
