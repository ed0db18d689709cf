#include "datapath.hpp"

#include <arpa/inet.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

#include "kernel/maps.hpp"
#include "kernel/skel.hpp"
#include "kvmxdp/ct_rules.h"
#include "kvmxdp_tc.skel.h"
#include "kvmxdp_xdp.skel.h"

namespace kvmxdp::test {

std::uint64_t boot_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return std::uint64_t(ts.tv_sec) * 1000000000ULL + std::uint64_t(ts.tv_nsec);
}

namespace {

// libbpf's messages of the current load, shown only when it fails.
std::string g_libbpf_log;

int capture_libbpf(enum libbpf_print_level, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
	g_libbpf_log += buf;
	// Keep the tail: a verifier log ends with the reason it gave up.
	constexpr std::size_t kKeep = 64 * 1024;
	if (g_libbpf_log.size() > 2 * kKeep)
		g_libbpf_log.erase(0, g_libbpf_log.size() - kKeep);
	return n;
}

std::string errno_text(int err)
{
	return std::strerror(err < 0 ? -err : err);
}

template <typename K>
void clear_hash(int fd, const char *name)
{
	for (const K &k : map_keys<K>(fd))
		if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT)
			throw std::runtime_error(std::string("clear ") + name + ": " +
						 errno_text(errno));
}

// Every element of a per-CPU ARRAY map to zero, in one batch update (a
// per-CPU array cannot be mapped; see Datapath::mapped_ for the others).
void zero_percpu_array(const bpf_map *map)
{
	const __u32 entries = bpf_map__max_entries(map);
	const int ncpu = libbpf_num_possible_cpus();
	// A per-CPU value is one 8-byte-aligned slot per possible CPU.
	const std::size_t per_key = ((bpf_map__value_size(map) + 7) & ~std::size_t{7}) *
				    static_cast<std::size_t>(ncpu > 0 ? ncpu : 1);
	std::vector<__u32> keys(entries);
	std::vector<unsigned char> zero(per_key * entries, 0);
	for (__u32 i = 0; i < entries; i++)
		keys[i] = i;
	__u32 n = entries;
	if (bpf_map_update_batch(bpf_map__fd(map), keys.data(), zero.data(), &n, nullptr) != 0)
		throw std::runtime_error(std::string("clear ") + bpf_map__name(map) + ": " +
					 errno_text(errno));
}

// The plain arrays clear_tables() zeroes through a mapping: the harness
// sets BPF_F_MMAPABLE on those maps.h does not already create mappable
// (the programs do not see the flag).
// kvx_portx last (set_host_ports writes it through its mapping: a word a
// syscall was 1024 syscalls a test, most of a test's cost in the 6.1 VM).
constexpr const char *kMappedArrays[] = {KVX_MAP_GFLOWS,  KVX_MAP_GPORTS, KVX_MAP_GTW,
					 KVX_MAP_GADDRS,  KVX_MAP_GTENANT, KVX_MAP_PORTX};

} // namespace

const char *reason_name(int reason)
{
	switch (reason) {
#define KVX_X_NAME(name, drop, desc) \
	case KVX_R_##name:           \
		return #name;
		KVX_REASONS(KVX_X_NAME)
#undef KVX_X_NAME
	default:
		return "?";
	}
}

int reason_verdict(int reason)
{
	const std::string name = reason_name(reason);
	if (name.rfind("XLATE", 0) == 0 || name.rfind("ARP_", 0) == 0)
		return TC_ACT_REDIRECT;
	// IPv6 relay's forwarding and ND proxy: out of a device too.
	if (reason == KVX_R_RELAY_OUT || reason == KVX_R_RELAY_IN || reason == KVX_R_ND_PROXY_NA ||
	    reason == KVX_R_ND_RELAY)
		return TC_ACT_REDIRECT;
	switch (reason) {
#define KVX_X_VERDICT(name, drop, desc) \
	case KVX_R_##name:              \
		return (drop) ? TC_ACT_SHOT : TC_ACT_OK;
		KVX_REASONS(KVX_X_VERDICT)
#undef KVX_X_VERDICT
	default:
		return -1;
	}
}

const char *verdict_name(int verdict)
{
	switch (verdict) {
	case TC_ACT_OK:
		return "TC_ACT_OK";
	case TC_ACT_SHOT:
		return "TC_ACT_SHOT";
	case TC_ACT_REDIRECT:
		return "TC_ACT_REDIRECT";
	default:
		return "TC_ACT_?";
	}
}

std::uint32_t be32(std::uint32_t host)
{
	return htonl(host);
}
std::uint16_t be16(std::uint16_t host)
{
	return htons(host);
}

kvx_bind_key bind_key(kvx_bind_dir dir, std::uint8_t proto, std::uint32_t addr, std::uint16_t port)
{
	kvx_bind_key k;
	std::memset(&k, 0, sizeof(k));
	k.dir = static_cast<__u8>(dir);
	k.proto = proto;
	k.port = be16(port);
	k.addr = be32(addr);
	return k;
}

kvx_ct_key ct_key(std::uint8_t proto, std::uint32_t int_addr, std::uint16_t int_port,
		  std::uint32_t rem_addr, std::uint16_t rem_port)
{
	kvx_ct_key k;
	std::memset(&k, 0, sizeof(k));
	k.int_addr = be32(int_addr);
	k.rem_addr = be32(rem_addr);
	k.int_port = be16(int_port);
	k.rem_port = be16(rem_port);
	k.proto = proto;
	return k;
}

// The loader's skeleton owner (kernel/skel.hpp), its errors with libbpf's
// log of the failed step (the verifier's output).
template <typename T>
std::unique_ptr<Skel<T>> load_skel(const char *name, const std::function<void(Skel<T> &)> &setup)
{
	g_libbpf_log.clear();
	libbpf_set_print(capture_libbpf);
	try {
		auto s = std::make_unique<Skel<T>>(name);
		setup(*s);
		s->load();
		return s;
	} catch (const std::exception &e) {
		throw std::runtime_error(std::string(e.what()) + "\n" + g_libbpf_log);
	}
}

Datapath::Datapath(TableSizes sizes)
{
	skel_ = load_skel<kvmxdp_tc>("kvmxdp_tc", [&](Skel<kvmxdp_tc> &s) {
		if (sizes.ct)
			s.set_max_entries(KVX_MAP_CT, sizes.ct);
		if (sizes.bind)
			s.set_max_entries(KVX_MAP_BIND, sizes.bind);
		s.set_max_entries(KVX_MAP_CT6, sizes.ct6);
		s.set_max_entries(KVX_MAP_BIND6, sizes.bind6);
		s.set_max_entries(KVX_MAP_ND, sizes.nd);
		if (sizes.ovl)
			s.set_max_entries(KVX_MAP_OVL, sizes.ovl);
		for (const char *name : kMappedArrays)
			if (bpf_map__set_map_flags(s.map(name), bpf_map__map_flags(s.map(name)) |
									BPF_F_MMAPABLE) != 0)
				throw std::runtime_error(std::string("mmapable ") + name);
	});
	for (const char *name : kMappedArrays) {
		const bpf_map *m = skel_->map(name);
		const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
		// The kernel lays an array's values out 8-byte aligned.
		const std::size_t elem = (std::size_t{bpf_map__value_size(m)} + 7) &
					 ~std::size_t{7};
		const std::size_t len = (elem * bpf_map__max_entries(m) + page - 1) & ~(page - 1);
		void *addr =
			mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0);
		if (addr == MAP_FAILED)
			throw std::runtime_error(std::string("mmap ") + name + ": " +
						 errno_text(errno));
		mapped_.push_back({addr, len});
	}
}

Datapath::~Datapath()
{
	for (const Mapped &m : mapped_)
		munmap(m.addr, m.len);
}

kvmxdp_tc *Datapath::tc() const
{
	return skel_->get();
}

kvmxdp_xdp *Datapath::xdp() const
{
	return xdp_->get();
}

void Datapath::load_xdp()
{
	if (xdp_)
		return;
	// Every map but the object's own .bss/.rodata and its IPv6 program
	// array is the TC object's (by name), as the loader hands them over:
	// one state for both paths.
	xdp_ = load_skel<kvmxdp_xdp>("kvmxdp_xdp", [&](Skel<kvmxdp_xdp> &s) {
		s.reuse_maps_from(*skel_, {KVX_MAP_XDP6PROGS});
	});
}

void Datapath::set_xdp6prog(std::uint32_t slot, bool filled)
{
	load_xdp();
	const int fd = bpf_map__fd(xdp()->maps.kvx_xdp6progs);
	if (!filled) {
		bpf_map_delete_elem(fd, &slot);
		return;
	}
	const int prog = bpf_program__fd(slot == KVX_XDP6_PORT ? xdp()->progs.kvx_xdp_port6 :
								 xdp()->progs.kvx_xdp_up6);
	if (bpf_map_update_elem(fd, &slot, &prog, BPF_ANY))
		throw std::runtime_error("kvx_xdp6progs: update slot " + std::to_string(slot));
}

int Datapath::fd_cfg() const
{
	return bpf_map__fd(tc()->maps.kvx_cfg);
}

int Datapath::fd_bind() const
{
	return bpf_map__fd(tc()->maps.kvx_bind);
}

int Datapath::fd_ct() const
{
	return bpf_map__fd(tc()->maps.kvx_ct);
}

int Datapath::fd_stats() const
{
	return bpf_map__fd(tc()->maps.kvx_stats);
}

int Datapath::fd_extaddr() const
{
	return bpf_map__fd(tc()->maps.kvx_extaddr);
}

kvx_cfg Datapath::default_cfg(const Topology &topo)
{
	kvx_cfg c;
	std::memset(&c, 0, sizeof(c));
	c.abi_version = KVX_ABI_VERSION;
	c.flags = 0;
	c.uplink_addr = be32(Topology::kUplinkAddr);
	c.uplink_ifindex = static_cast<__u32>(topo.uplink_ifindex);
	c.bridge_ifindex = static_cast<__u32>(topo.bridge_ifindex);
	c.subnet_addr = be32(Topology::kSubnet);
	c.subnet_mask = be32(Topology::kSubnetMask);
	c.nat_port_lo = 61000;
	c.nat_port_hi = 65535;
	kvx_timeouts_default(&c.timeouts);
	std::memcpy(c.uplink_mac, Topology::kUplinkMac.data(), sizeof(c.uplink_mac));
	c.gw_addr = be32(Topology::kBridgeAddr);
	c.guest_seed = 0x9e3779b9; // any key: the datapath and the helpers use the same
	return c;
}

std::optional<kvx_icmprl_val> Datapath::icmprl_lookup(std::uint32_t addr) const
{
	const __be32 k = be32(addr);
	kvx_icmprl_val v{};
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_icmprl), &k, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::icmprl_update(std::uint32_t addr, const kvx_icmprl_val &v)
{
	const __be32 k = be32(addr);
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_icmprl), &k, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_icmprl: " + errno_text(errno));
}

void Datapath::set_icmprl_global(IcmpBudget which, std::uint64_t tat_ns)
{
	tc()->bss->kvx_icmprl_tat[static_cast<int>(which)] = tat_ns;
}

void Datapath::set_fragq_budget(std::uint8_t dir, std::uint64_t tat_ns)
{
	tc()->bss->kvx_fragq_tat[dir & 1] = tat_ns;
}

void Datapath::clear_icmprl_buckets()
{
	clear_hash<__be32>(bpf_map__fd(tc()->maps.kvx_icmprl), "kvx_icmprl");
}

void Datapath::set_cfg(const kvx_cfg &cfg)
{
	__u32 key = 0;
	if (bpf_map_update_elem(fd_cfg(), &key, &cfg, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_cfg: " + errno_text(errno));
}

kvx_cfg Datapath::cfg() const
{
	__u32 key = 0;
	kvx_cfg c;
	if (bpf_map_lookup_elem(fd_cfg(), &key, &c) != 0)
		throw std::runtime_error("lookup kvx_cfg: " + errno_text(errno));
	return c;
}

void Datapath::clear_tables()
{
	clear_hash<kvx_ct_key>(fd_ct(), "kvx_ct");
	clear_hash<kvx_bind_key>(fd_bind(), "kvx_bind");
	clear_hash<kvx_ovl_key>(bpf_map__fd(tc()->maps.kvx_ovl), "kvx_ovl");
	// The port rings name ports of the bindings emptied above.
	clear_hash<__u32>(bpf_map__fd(tc()->maps.kvx_gown), "kvx_gown");
	// The half-open rings name flows of the table emptied above.
	clear_hash<__u32>(bpf_map__fd(tc()->maps.kvx_halfopen), "kvx_halfopen");
	clear_hash<__u32>(bpf_map__fd(tc()->maps.kvx_halfopen6), "kvx_halfopen6");
	clear_hash<__be32>(fd_extaddr(), "kvx_extaddr");
	clear_hash<kvx_frag_key>(bpf_map__fd(tc()->maps.kvx_frag), "kvx_frag");
	clear_hash<kvx_frag6_key>(bpf_map__fd(tc()->maps.kvx_frag6), "kvx_frag6");
	clear_hash<kvx_frag_key>(bpf_map__fd(tc()->maps.kvx_fraghost), "kvx_fraghost");
	clear_hash<kvx_frag6_key>(bpf_map__fd(tc()->maps.kvx_fraghost6), "kvx_fraghost6");
	fragq_drain();
	clear_hash<__u32>(bpf_map__fd(tc()->maps.kvx_xdev), "kvx_xdev");
	clear_hash<kvx_xfdb_key>(bpf_map__fd(tc()->maps.kvx_xfdb), "kvx_xfdb");
	skb_meta_ = {};
	clear_hash<__be32>(bpf_map__fd(tc()->maps.kvx_guest), "kvx_guest");
	clear_hash<kvx_hosttun_key>(bpf_map__fd(tc()->maps.kvx_hosttun), "kvx_hosttun");
	clear_hash<__be32>(bpf_map__fd(tc()->maps.kvx_hostaddr), "kvx_hostaddr");
	clear_hash<kvx_ct6_key>(bpf_map__fd(tc()->maps.kvx_ct6), "kvx_ct6");
	clear_hash<kvx_bind6_key>(bpf_map__fd(tc()->maps.kvx_bind6), "kvx_bind6");
	clear_hash<kvx_nd_key>(bpf_map__fd(tc()->maps.kvx_nd), "kvx_nd");
	clear_hash<kvx_xfdb_key>(bpf_map__fd(tc()->maps.kvx_brport), "kvx_brport");
	clear_hash<__u32>(bpf_map__fd(tc()->maps.kvx_brplace), "kvx_brplace");
	guard_until_set(0);
	clear_hash<kvx_extaddr6_key>(bpf_map__fd(tc()->maps.kvx_extaddr6), "kvx_extaddr6");
	set_cfg6(kvx_cfg6{});
	clear_icmprl_buckets();
	set_icmprl_global(IcmpBudget::Answers, 0);
	set_icmprl_global(IcmpBudget::Pmtu, 0);
	set_fragq_budget(KVX_BIND_OUT, 0);
	set_fragq_budget(KVX_BIND_IN, 0);
	// Every per-guest counter, quota slot and port counter: a test's guests may own other slots than the last test's
	// (the port counters describe kvx_bind, emptied above).
	zero_percpu_array(tc()->maps.kvx_gstats);
	for (const Mapped &m : mapped_)
		std::memset(m.addr, 0, m.len);
	set_host_ports({});
}

void Datapath::set_host_ports(const std::vector<std::uint16_t> &ports)
{
	std::vector<__u64> bits(KVX_PORTX_WORDS, 0);
	for (std::uint16_t p : ports)
		bits[p / 64] |= __u64{1} << (p % 64);
	// Through the mapping (kMappedArrays' last): the words as the programs
	// read them, one 8-byte store each (an array's values are 8-byte
	// aligned).
	auto *words = static_cast<volatile __u64 *>(mapped_.back().addr);
	for (__u32 w = 0; w < KVX_PORTX_WORDS; w++)
		words[w] = bits[w];
}

std::uint32_t Datapath::gflows_slot(std::uint32_t guest) const
{
	const std::optional<kvx_guest_val> owner = guest_lookup(guest);
	if (!owner)
		return kvx_guest_slot(nullptr, htonl(guest), cfg().guest_seed);
	testpkt::Mac mac;
	std::copy(owner->mac, owner->mac + 6, mac.begin());
	return mac_slot(mac);
}

kvx_gflows_val Datapath::gflows_val(std::uint32_t guest) const
{
	__u32 key = gflows_slot(guest);
	kvx_gflows_val v{};
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gflows), &key, &v) != 0)
		throw std::runtime_error("lookup kvx_gflows: " + errno_text(errno));
	return v;
}

std::uint32_t Datapath::gports(std::uint32_t guest) const
{
	__u32 key = gflows_slot(guest), v = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gports), &key, &v) != 0)
		throw std::runtime_error("lookup kvx_gports: " + errno_text(errno));
	return v;
}

std::uint32_t Datapath::gtenant(std::uint32_t guest) const
{
	__u32 key = gflows_slot(guest), v = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gtenant), &key, &v) != 0)
		throw std::runtime_error("lookup kvx_gtenant: " + errno_text(errno));
	return v;
}

std::uint32_t Datapath::gflows(std::uint32_t guest) const
{
	const kvx_gflows_val v = gflows_val(guest);
	return v.out + v.in;
}

void Datapath::set_gflows_val(std::uint32_t guest, const kvx_gflows_val &v)
{
	set_gflows_at(gflows_slot(guest), v);
}

void Datapath::set_gflows_at(std::uint32_t slot, const kvx_gflows_val &v)
{
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_gflows), &slot, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_gflows: " + errno_text(errno));
}

void Datapath::set_gflows(std::uint32_t guest, std::uint32_t count)
{
	kvx_gflows_val v{};
	v.out = count;
	set_gflows_val(guest, v);
}

void Datapath::set_reclaim_state(std::uint32_t cursor, std::uint64_t holdoff_ns)
{
	tc()->bss->kvx_reclaim_cursor = cursor;
	tc()->bss->kvx_reclaim_holdoff = holdoff_ns;
}

void Datapath::set_reclaim6_state(std::uint32_t cursor, std::uint64_t holdoff_ns)
{
	tc()->bss->kvx_reclaim6_cursor = cursor;
	tc()->bss->kvx_reclaim6_holdoff = holdoff_ns;
}

void Datapath::set_ovl_reclaim_state(std::uint32_t cursor, std::uint64_t holdoff_ns)
{
	tc()->bss->kvx_ovl_cursor = cursor;
	tc()->bss->kvx_ovl_holdoff = holdoff_ns;
}

std::uint32_t Datapath::reclaim_cursor() const
{
	return tc()->bss->kvx_reclaim_cursor;
}

std::uint64_t Datapath::reclaim_holdoff() const
{
	return tc()->bss->kvx_reclaim_holdoff;
}

std::uint32_t Datapath::reclaim_visited() const
{
	return tc()->bss->kvx_reclaim_visited;
}

void Datapath::set_gcur(const kvx_gcur &cur)
{
	const int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		throw std::runtime_error("libbpf_num_possible_cpus: " + errno_text(ncpu));
	const std::vector<kvx_gcur> all(static_cast<std::size_t>(ncpu), cur);
	const __u32 zero = 0;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_gcur), &zero, all.data(), BPF_ANY) != 0)
		throw std::runtime_error("update kvx_gcur: " + errno_text(errno));
}

kvx_gstat Datapath::gstats(std::uint32_t guest) const
{
	return gstats_at(gstats_slot(guest));
}

std::uint32_t Datapath::gstats_slot(std::uint32_t guest) const
{
	const std::optional<kvx_guest_val> owner = guest_lookup(guest);
	return kvx_guest_slot(owner ? owner->mac : nullptr, htonl(guest), cfg().guest_seed);
}

std::uint32_t Datapath::gstats_mac_slot(const testpkt::Mac &mac) const
{
	return kvx_guest_slot6(mac.data(), nullptr, cfg().guest_seed);
}

kvx_gstat Datapath::gstats_at(std::uint32_t slot) const
{
	const int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		throw std::runtime_error("libbpf_num_possible_cpus: " + errno_text(ncpu));
	__u32 key = slot & (KVX_GSTATS_SLOTS - 1);
	std::vector<kvx_gstat> percpu(static_cast<std::size_t>(ncpu));
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gstats), &key, percpu.data()) != 0)
		throw std::runtime_error("lookup kvx_gstats: " + errno_text(errno));
	kvx_gstat sum{};
	for (const kvx_gstat &v : percpu) {
		sum.pkts_out += v.pkts_out;
		sum.bytes_out += v.bytes_out;
		sum.pkts_in += v.pkts_in;
		sum.bytes_in += v.bytes_in;
		for (int i = 0; i < KVX_GD_MAX; i++)
			sum.drops[i] += v.drops[i];
	}
	return sum;
}

Stats Datapath::stats() const
{
	const int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		throw std::runtime_error("libbpf_num_possible_cpus: " + errno_text(ncpu));
	Stats s;
	s.by_reason.assign(KVX_R_MAX, kvx_stat{0, 0});
	const std::size_t n = static_cast<std::size_t>(ncpu);
	// Every reason in one BPF_MAP_LOOKUP_BATCH (tests read the counters
	// around each run: a lookup per reason was 2 x KVX_R_MAX syscalls a
	// packet, most of the suite's time in the 6.1 VM); the array's last
	// key ends the batch with ENOENT.  A slot per possible CPU, 8-byte
	// aligned (kvx_stat is 16 bytes).
	std::vector<__u32> keys(KVX_R_MAX);
	std::vector<kvx_stat> vals(KVX_R_MAX * n);
	__u32 count = KVX_R_MAX, next = 0;
	const int err = bpf_map_lookup_batch(fd_stats(), nullptr, &next, keys.data(), vals.data(),
					     &count, nullptr);
	if ((err != 0 && errno != ENOENT) || count != KVX_R_MAX)
		throw std::runtime_error(
			"lookup batch kvx_stats: " +
			(err ? errno_text(errno) : std::to_string(count) + " entries"));
	for (__u32 i = 0; i < count; i++) {
		if (keys[i] >= KVX_R_MAX)
			throw std::runtime_error("lookup batch kvx_stats: key " +
						 std::to_string(keys[i]));
		for (std::size_t c = 0; c < n; c++) {
			s.by_reason[keys[i]].packets += vals[i * n + c].packets;
			s.by_reason[keys[i]].bytes += vals[i * n + c].bytes;
		}
	}
	return s;
}

int Datapath::prog_fd(Prog prog)
{
	switch (prog) {
	case Prog::BrIngress:
		return bpf_program__fd(tc()->progs.kvx_br_ingress);
	case Prog::UpIngress:
		return bpf_program__fd(tc()->progs.kvx_up_ingress);
	case Prog::XdpPort:
		load_xdp();
		return bpf_program__fd(xdp()->progs.kvx_xdp_port);
	case Prog::XdpUp:
		load_xdp();
		return bpf_program__fd(xdp()->progs.kvx_xdp_up);
	case Prog::PortIngress:
		return bpf_program__fd(tc()->progs.kvx_port_in);
	}
	return -1;
}

RunResult Datapath::run(Prog prog, const testpkt::Bytes &frame, int ifindex)
{
	if (is_xdp(prog))
		load_xdp();
	const bpf_program *p = prog == Prog::BrIngress	 ? tc()->progs.kvx_br_ingress :
			       prog == Prog::UpIngress	 ? tc()->progs.kvx_up_ingress :
			       prog == Prog::PortIngress ? tc()->progs.kvx_port_in :
			       prog == Prog::XdpPort	 ? xdp()->progs.kvx_xdp_port :
							   xdp()->progs.kvx_xdp_up;
	RunResult r;
	// Room for a frame that grows (none should) and for the kernel's check
	// that the output fits (-ENOSPC otherwise).
	r.out.assign(frame.size() + 256, 0);
	__sk_buff ctx;
	std::memset(&ctx, 0, sizeof(ctx));
	// test_run picks skb->dev from ctx->ifindex (in the caller's netns);
	// bpf_fib_lookup needs it.
	ctx.ifindex = static_cast<__u32>(ifindex);
	ctx.mark = skb_meta_.mark;
	ctx.gso_size = skb_meta_.gso_size;
	// A GSO skb: test_run makes skb_is_gso() true from gso_size.
	ctx.gso_segs = skb_meta_.gso_size ? 2 : 0;
	// XDP: the frame's rx queue is queue 0 of ingress_ifindex (the netns
	// bpf_fib_lookup uses); data/data_meta 0 and data_end = the frame, as
	// the kernel requires of a test_run xdp_md.
	xdp_md xctx;
	std::memset(&xctx, 0, sizeof(xctx));
	xctx.data_end = static_cast<__u32>(frame.size());
	xctx.ingress_ifindex = static_cast<__u32>(ifindex);

	bpf_test_run_opts opts;
	std::memset(&opts, 0, sizeof(opts));
	opts.sz = sizeof(opts);
	opts.data_in = frame.data();
	opts.data_size_in = static_cast<__u32>(frame.size());
	opts.data_out = r.out.data();
	opts.data_size_out = static_cast<__u32>(r.out.size());
	if (is_xdp(prog)) {
		opts.ctx_in = &xctx;
		opts.ctx_size_in = sizeof(xctx);
	} else {
		opts.ctx_in = &ctx;
		opts.ctx_size_in = sizeof(ctx);
	}
	opts.repeat = 1;
	if (bpf_prog_test_run_opts(bpf_program__fd(p), &opts) != 0)
		throw std::runtime_error(
			std::string("bpf_prog_test_run_opts(") + bpf_program__name(p) + ", " +
			std::to_string(frame.size()) + "-byte frame): " + errno_text(errno));
	r.verdict = static_cast<int>(opts.retval);
	r.out.resize(opts.data_size_out);
	return r;
}

std::optional<kvx_bind_val> Datapath::bind_lookup(const kvx_bind_key &key) const
{
	kvx_bind_val v;
	if (bpf_map_lookup_elem(fd_bind(), &key, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::bind_update(const kvx_bind_key &key, const kvx_bind_val &val)
{
	if (bpf_map_update_elem(fd_bind(), &key, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_bind: " + errno_text(errno));
}

void Datapath::bind_delete(const kvx_bind_key &key)
{
	if (bpf_map_delete_elem(fd_bind(), &key) != 0)
		throw std::runtime_error("delete kvx_bind: " + errno_text(errno));
}

std::vector<std::pair<kvx_bind_key, kvx_bind_val>> Datapath::bind_entries() const
{
	std::vector<std::pair<kvx_bind_key, kvx_bind_val>> out;
	for (const auto &k : map_keys<kvx_bind_key>(fd_bind()))
		if (auto v = bind_lookup(k))
			out.emplace_back(k, *v);
	return out;
}

std::vector<std::pair<kvx_ovl_key, kvx_ovl_val>> Datapath::ovl_entries() const
{
	std::vector<std::pair<kvx_ovl_key, kvx_ovl_val>> out;
	const int fd = bpf_map__fd(tc()->maps.kvx_ovl);
	for (const auto &k : map_keys<kvx_ovl_key>(fd)) {
		kvx_ovl_val v{};
		if (bpf_map_lookup_elem(fd, &k, &v) == 0)
			out.emplace_back(k, v);
	}
	return out;
}

void Datapath::ovl_update(const kvx_ovl_key &key, const kvx_ovl_val &val)
{
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_ovl), &key, &val, BPF_ANY))
		throw std::runtime_error("update kvx_ovl: " + errno_text(errno));
}

std::uint32_t Datapath::ovl_max_entries() const
{
	return bpf_map__max_entries(tc()->maps.kvx_ovl);
}

void Datapath::extaddr_update(std::uint32_t addr, std::uint32_t flags)
{
	const __be32 key = be32(addr);
	kvx_extaddr_val v;
	std::memset(&v, 0, sizeof(v));
	v.flags = flags;
	if (bpf_map_update_elem(fd_extaddr(), &key, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_extaddr: " + errno_text(errno));
}

void Datapath::hosttun_update(std::uint8_t proto, std::uint32_t remote, std::uint32_t ifindex)
{
	kvx_hosttun_key k;
	std::memset(&k, 0, sizeof(k));
	k.proto = proto;
	k.remote = be32(remote);
	kvx_hosttun_val v;
	std::memset(&v, 0, sizeof(v));
	v.ifindex = ifindex;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_hosttun), &k, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_hosttun: " + errno_text(errno));
}

void Datapath::hostaddr_update(std::uint32_t addr)
{
	const __be32 k = be32(addr);
	const __u32 v = 1;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_hostaddr), &k, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_hostaddr: " + errno_text(errno));
}

kvx_xfdb_key xfdb_key(const testpkt::Mac &mac)
{
	kvx_xfdb_key k;
	std::memset(&k, 0, sizeof(k));
	std::memcpy(k.mac, mac.data(), sizeof(k.mac));
	return k;
}

void Datapath::xdev_update(int ifindex, const testpkt::Mac &mac, std::uint16_t flags)
{
	const __u32 key = static_cast<__u32>(ifindex);
	kvx_xdev_val v;
	std::memset(&v, 0, sizeof(v));
	std::memcpy(v.mac, mac.data(), sizeof(v.mac));
	v.flags = flags;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_xdev), &key, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_xdev: " + errno_text(errno));
}

void Datapath::xdev_delete(int ifindex)
{
	const __u32 key = static_cast<__u32>(ifindex);
	if (bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_xdev), &key) != 0 && errno != ENOENT)
		throw std::runtime_error("delete kvx_xdev: " + errno_text(errno));
}

std::optional<kvx_xfdb_val> Datapath::xfdb_lookup(const testpkt::Mac &mac) const
{
	const kvx_xfdb_key k = xfdb_key(mac);
	kvx_xfdb_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_xfdb), &k, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::xfdb_update(const testpkt::Mac &mac, const kvx_xfdb_val &val)
{
	const kvx_xfdb_key k = xfdb_key(mac);
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_xfdb), &k, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_xfdb: " + errno_text(errno));
}

void Datapath::xfdb_delete(const testpkt::Mac &mac)
{
	const kvx_xfdb_key k = xfdb_key(mac);
	if (bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_xfdb), &k) != 0 && errno != ENOENT)
		throw std::runtime_error("delete kvx_xfdb: " + errno_text(errno));
}

std::size_t Datapath::xfdb_size() const
{
	return map_keys<kvx_xfdb_key>(bpf_map__fd(tc()->maps.kvx_xfdb)).size();
}

std::optional<kvx_guest_val> Datapath::guest_lookup(std::uint32_t addr) const
{
	const __be32 k = htonl(addr);
	kvx_guest_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_guest), &k, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::guest_update(std::uint32_t addr, const kvx_guest_val &val)
{
	const __be32 k = htonl(addr);
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_guest), &k, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_guest: " + errno_text(errno));
}

std::optional<kvx_halfopen_val> Datapath::halfopen_at(std::uint32_t slot) const
{
	kvx_halfopen_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_halfopen), &slot, &v) != 0)
		return std::nullopt;
	return v;
}

std::optional<kvx_halfopen6_val> Datapath::halfopen6_at(std::uint32_t slot) const
{
	kvx_halfopen6_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_halfopen6), &slot, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::halfopen_forget(std::uint32_t slot)
{
	if (bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_halfopen), &slot) != 0 &&
	    errno != ENOENT)
		throw std::runtime_error("delete kvx_halfopen: " + errno_text(errno));
}

void Datapath::halfopen6_forget(std::uint32_t slot)
{
	if (bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_halfopen6), &slot) != 0 &&
	    errno != ENOENT)
		throw std::runtime_error("delete kvx_halfopen6: " + errno_text(errno));
}

std::optional<kvx_ct_val> Datapath::ct_lookup(const kvx_ct_key &key) const
{
	kvx_ct_val v;
	if (bpf_map_lookup_elem(fd_ct(), &key, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::ct_update(const kvx_ct_key &key, const kvx_ct_val &val)
{
	if (bpf_map_update_elem(fd_ct(), &key, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_ct: " + errno_text(errno));
}

void Datapath::ct_delete(const kvx_ct_key &key)
{
	if (bpf_map_delete_elem(fd_ct(), &key) != 0)
		throw std::runtime_error("delete from kvx_ct: " + errno_text(errno));
}

std::vector<std::pair<kvx_ct_key, kvx_ct_val>> Datapath::ct_entries() const
{
	std::vector<std::pair<kvx_ct_key, kvx_ct_val>> out;
	for (const auto &k : map_keys<kvx_ct_key>(fd_ct()))
		if (auto v = ct_lookup(k))
			out.emplace_back(k, *v);
	return out;
}

void Datapath::set_cfg6(const kvx_cfg6 &cfg)
{
	__u32 key = 0;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_cfg6), &key, &cfg, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_cfg6: " + errno_text(errno));
}

void Datapath::extaddr6_set(const testpkt::Ip6 &addr, std::optional<std::uint32_t> flags)
{
	kvx_extaddr6_key k{};
	std::memcpy(k.addr, addr.data(), sizeof(k.addr));
	const int fd = bpf_map__fd(tc()->maps.kvx_extaddr6);
	if (!flags) {
		bpf_map_delete_elem(fd, &k);
		return;
	}
	kvx_extaddr_val v{};
	v.flags = *flags;
	if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_extaddr6: " + errno_text(errno));
}

std::optional<kvx_nd_val> Datapath::nd_lookup(const testpkt::Ip6 &addr) const
{
	kvx_nd_key k{};
	std::memcpy(k.addr, addr.data(), 16);
	kvx_nd_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_nd), &k, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::nd_update(const testpkt::Ip6 &addr, const kvx_nd_val &val)
{
	kvx_nd_key k{};
	std::memcpy(k.addr, addr.data(), 16);
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_nd), &k, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_nd: " + errno_text(errno));
}

std::size_t Datapath::nd_size() const
{
	return map_keys<kvx_nd_key>(bpf_map__fd(tc()->maps.kvx_nd)).size();
}

void Datapath::brport_set(const testpkt::Mac &mac, std::uint32_t port_ifindex,
			  std::uint64_t moved_ns, std::uint32_t flags)
{
	const kvx_xfdb_key k = xfdb_key(mac);
	kvx_xfdb_val v{};
	v.ifindex = port_ifindex;
	v.seen_ns = moved_ns;
	v.flags = flags;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_brport), &k, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_brport: " + errno_text(errno));
}

void Datapath::brplace_set(std::uint32_t port_ifindex, std::uint64_t window_ns,
			   std::uint32_t placed)
{
	kvx_brplace_val v{};
	v.window_ns = window_ns;
	v.placed = placed;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_brplace), &port_ifindex, &v, BPF_ANY) !=
	    0)
		throw std::runtime_error("update kvx_brplace: " + errno_text(errno));
}

std::optional<kvx_brplace_val> Datapath::brplace_lookup(std::uint32_t port_ifindex) const
{
	kvx_brplace_val v{};
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_brplace), &port_ifindex, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::brport_delete(const testpkt::Mac &mac)
{
	const kvx_xfdb_key k = xfdb_key(mac);
	bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_brport), &k);
}

std::optional<kvx_xfdb_val> Datapath::brport_lookup(const testpkt::Mac &mac) const
{
	const kvx_xfdb_key k = xfdb_key(mac);
	kvx_xfdb_val v{};
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_brport), &k, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::guard_until_set(std::uint64_t until_ns)
{
	const __u32 zero = 0;
	const __u64 v = until_ns;
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_guard), &zero, &v, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_guard: " + errno_text(errno));
}

std::uint32_t Datapath::gaddrs_at(std::uint32_t slot) const
{
	__u32 v = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gaddrs), &slot, &v) != 0)
		throw std::runtime_error("lookup kvx_gaddrs: " + errno_text(errno));
	return v;
}

std::uint32_t Datapath::port_slot(std::uint32_t port_ifindex) const
{
	return kvx_port_slot(port_ifindex, cfg().guest_seed);
}

kvx_cfg6 Datapath::cfg6() const
{
	__u32 key = 0;
	kvx_cfg6 c;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_cfg6), &key, &c) != 0)
		throw std::runtime_error("lookup kvx_cfg6: " + errno_text(errno));
	return c;
}

std::optional<kvx_ct6_val> Datapath::ct6_lookup(const kvx_ct6_key &key) const
{
	kvx_ct6_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_ct6), &key, &v) != 0)
		return std::nullopt;
	return v;
}

std::vector<std::pair<kvx_ct6_key, kvx_ct6_val>> Datapath::ct6_entries() const
{
	const int fd = bpf_map__fd(tc()->maps.kvx_ct6);
	std::vector<std::pair<kvx_ct6_key, kvx_ct6_val>> out;
	for (const auto &k : map_keys<kvx_ct6_key>(fd)) {
		kvx_ct6_val v;
		if (bpf_map_lookup_elem(fd, &k, &v) == 0)
			out.emplace_back(k, v);
	}
	return out;
}

std::vector<std::pair<kvx_bind6_key, kvx_bind6_val>> Datapath::bind6_entries() const
{
	std::vector<std::pair<kvx_bind6_key, kvx_bind6_val>> out;
	for (const auto &k : map_keys<kvx_bind6_key>(bpf_map__fd(tc()->maps.kvx_bind6)))
		if (auto v = bind6_lookup(k))
			out.emplace_back(k, *v);
	return out;
}

std::optional<kvx_bind6_val> Datapath::bind6_lookup(const kvx_bind6_key &key) const
{
	kvx_bind6_val v;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_bind6), &key, &v) != 0)
		return std::nullopt;
	return v;
}

void Datapath::ct6_update(const kvx_ct6_key &key, const kvx_ct6_val &val)
{
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_ct6), &key, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_ct6: " + errno_text(errno));
}

std::uint32_t Datapath::mac_slot(const testpkt::Mac &mac) const
{
	const std::optional<kvx_xfdb_val> port = brport_lookup(mac);
	return kvx_port_slot(port ? port->ifindex : 0, cfg().guest_seed);
}

kvx_gflows_val Datapath::gflows_at(std::uint32_t slot) const
{
	kvx_gflows_val v{};
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gflows), &slot, &v) != 0)
		throw std::runtime_error("lookup kvx_gflows: " + errno_text(errno));
	return v;
}

std::uint32_t Datapath::gports_at(std::uint32_t slot) const
{
	__u32 v = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(tc()->maps.kvx_gports), &slot, &v) != 0)
		throw std::runtime_error("lookup kvx_gports: " + errno_text(errno));
	return v;
}

void Datapath::bind6_update(const kvx_bind6_key &key, const kvx_bind6_val &val)
{
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_bind6), &key, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_bind6: " + errno_text(errno));
}

void Datapath::ct6_delete(const kvx_ct6_key &key)
{
	if (bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_ct6), &key) != 0)
		throw std::runtime_error("delete kvx_ct6: " + errno_text(errno));
}

void Datapath::bind6_delete(const kvx_bind6_key &key)
{
	if (bpf_map_delete_elem(bpf_map__fd(tc()->maps.kvx_bind6), &key) != 0)
		throw std::runtime_error("delete kvx_bind6: " + errno_text(errno));
}

std::vector<std::pair<kvx_frag_key, kvx_frag_val>> Datapath::frag_entries() const
{
	const int fd = bpf_map__fd(tc()->maps.kvx_frag);
	std::vector<std::pair<kvx_frag_key, kvx_frag_val>> out;
	for (const auto &k : map_keys<kvx_frag_key>(fd)) {
		kvx_frag_val v;
		if (bpf_map_lookup_elem(fd, &k, &v) == 0)
			out.emplace_back(k, v);
	}
	return out;
}

std::vector<kvx_frag_key> Datapath::fraghost_keys() const
{
	return map_keys<kvx_frag_key>(bpf_map__fd(tc()->maps.kvx_fraghost));
}

std::vector<kvx_frag6_key> Datapath::fraghost6_keys() const
{
	return map_keys<kvx_frag6_key>(bpf_map__fd(tc()->maps.kvx_fraghost6));
}

std::vector<testpkt::Bytes> Datapath::fragq_drain()
{
	// The consumer position lives in the ring's shared page: a new reader
	// goes on where the last one stopped.
	std::vector<testpkt::Bytes> out;
	auto on_record = [](void *ctx, void *data, std::size_t size) -> int {
		const auto *b = static_cast<const std::uint8_t *>(data);
		static_cast<std::vector<testpkt::Bytes> *>(ctx)->emplace_back(b, b + size);
		return 0;
	};
	ring_buffer *rb =
		ring_buffer__new(bpf_map__fd(tc()->maps.kvx_fragq), on_record, &out, nullptr);
	if (!rb)
		throw std::runtime_error("open ring kvx_fragq: " + errno_text(errno));
	int n = ring_buffer__consume(rb);
	ring_buffer__free(rb);
	if (n < 0)
		throw std::runtime_error("read ring kvx_fragq: " + errno_text(-n));
	return out;
}

void Datapath::frag_update(const kvx_frag_key &key, const kvx_frag_val &val)
{
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_frag), &key, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_frag: " + errno_text(errno));
}

std::vector<std::pair<kvx_frag6_key, kvx_frag6_val>> Datapath::frag6_entries() const
{
	const int fd = bpf_map__fd(tc()->maps.kvx_frag6);
	std::vector<std::pair<kvx_frag6_key, kvx_frag6_val>> out;
	for (const auto &k : map_keys<kvx_frag6_key>(fd)) {
		kvx_frag6_val v;
		if (bpf_map_lookup_elem(fd, &k, &v) == 0)
			out.emplace_back(k, v);
	}
	return out;
}

void Datapath::frag6_update(const kvx_frag6_key &key, const kvx_frag6_val &val)
{
	if (bpf_map_update_elem(bpf_map__fd(tc()->maps.kvx_frag6), &key, &val, BPF_ANY) != 0)
		throw std::runtime_error("update kvx_frag6: " + errno_text(errno));
}

} // namespace kvmxdp::test
