// Test harness around the kvmxdp_tc skeleton: owns one loaded instance,
// gives typed access to its maps and runs its programs with
// BPF_PROG_TEST_RUN on crafted frames.  The XDP programs (kvmxdp_xdp) are
// loaded on first use, with every map of the TC object reused (as the
// loader does), so both paths see one state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvmxdp/abi.h"
#include "netns.hpp"
#include "pkt.hpp"

struct kvmxdp_tc;
struct kvmxdp_xdp;

namespace kvmxdp {
template <typename T>
class Skel; // kernel/skel.hpp
}

namespace kvmxdp::test {

// The TC programs and the XDP fast path in front of them: XdpPort runs on
// a bridge port (guest -> outside), XdpUp on the uplink (outside -> guest).
// PortIngress: kvx_port_in, the port guard on a bridge port's TC ingress.
enum class Prog { BrIngress, UpIngress, XdpPort, XdpUp, PortIngress };

inline bool is_xdp(Prog prog)
{
	return prog == Prog::XdpPort || prog == Prog::XdpUp;
}

// The datapath's clock (CLOCK_BOOTTIME, bpf_ktime_get_boot_ns), in ns.
std::uint64_t boot_ns();

const char *reason_name(int reason);
const char *verdict_name(int verdict);
// The verdict a reason implies: XLATE_*, ARP_*, RELAY_*, ND_PROXY_NA and
// ND_RELAY redirect, the ABI's drop reasons drop (X-macro flag),
// everything else passes to the stack.
int reason_verdict(int reason);

struct RunResult {
	int verdict = -1;
	testpkt::Bytes out;
};

// Per-reason packet/byte totals summed over every CPU.
struct Stats {
	std::vector<kvx_stat> by_reason;
};

// skb fields a TC test run starts with (test_run takes them from the
// __sk_buff context): a mark set by tc/nftables, a GSO skb's segment size.
struct SkbMeta {
	std::uint32_t mark = 0;
	std::uint16_t gso_size = 0; // 0: not GSO
};

struct TableSizes {
	std::uint32_t ct = 0;	// 0: keep the object's default
	std::uint32_t bind = 0; // 0: keep the object's default
	// The IPv6 tables (one entry in the object: the loader sizes them).
	std::uint32_t ct6 = 4096;
	std::uint32_t bind6 = 4096;
	std::uint32_t nd = 256;
	std::uint32_t ovl = 0; // kvx_ovl; 0: keep the object's default
};

class Datapath {
public:
	// Opens and loads the skeleton; throws std::runtime_error with the
	// libbpf log (verifier output) on failure.
	explicit Datapath(TableSizes sizes = {});
	~Datapath();
	Datapath(const Datapath &) = delete;
	Datapath &operator=(const Datapath &) = delete;

	// The configuration every test starts from, for the given topology.
	static kvx_cfg default_cfg(const Topology &topo);
	void set_cfg(const kvx_cfg &cfg);
	kvx_cfg cfg() const;

	// kvx_ct, kvx_bind, kvx_extaddr, kvx_frag, kvx_xdev, kvx_xfdb and
	// kvx_guest, kvx_halfopen(6) and kvx_icmprl (and the global ICMP budgets);
	// kvx_portx emptied.
	void clear_tables();
	Stats stats() const;

	// TC programs: ifindex is skb->ifindex; XDP programs: the xdp_md's
	// ingress_ifindex (the device the program would be attached to).
	RunResult run(Prog prog, const testpkt::Bytes &frame, int ifindex);
	// The skb fields of the TC runs that follow (reset by clear_tables()).
	void set_skb_meta(const SkbMeta &meta) { skb_meta_ = meta; }
	int prog_fd(Prog prog);
	// Loads kvmxdp_xdp (maps reused); run() does it on first use.  Throws
	// with the verifier's log on failure.
	void load_xdp();
	// kvx_xdp6progs[slot] (abi.h KVX_XDP6_*): the XDP object's IPv6
	// program, or empty (a pin that lost its programs).
	void set_xdp6prog(std::uint32_t slot, bool filled);

	std::optional<kvx_bind_val> bind_lookup(const kvx_bind_key &key) const;
	void bind_update(const kvx_bind_key &key, const kvx_bind_val &val);
	void bind_delete(const kvx_bind_key &key);
	std::vector<std::pair<kvx_bind_key, kvx_bind_val>> bind_entries() const;
	// kvx_ovl: port overlapping's (shared port, remote) -> guest endpoint
	// claims (emptied by clear_tables(), as kvx_gown).
	std::vector<std::pair<kvx_ovl_key, kvx_ovl_val>> ovl_entries() const;
	void ovl_update(const kvx_ovl_key &key, const kvx_ovl_val &val);
	std::uint32_t ovl_max_entries() const;

	// kvx_extaddr[addr]: mapped external addresses (host-order address).
	void extaddr_update(std::uint32_t addr, std::uint32_t flags);

	// kvx_gports: the dynamic bindings a guest holds (host-order address).
	std::uint32_t gports(std::uint32_t guest) const;
	// kvx_gtenant: the tenants of shared ports a guest has.
	std::uint32_t gtenant(std::uint32_t guest) const;
	// kvx_portx: the ports the host listens on (replaces the set).
	void set_host_ports(const std::vector<std::uint16_t> &ports);

	// kvx_hosttun: a (protocol, remote) pair the host tunnels to (host
	// order; remote 0: any).
	void hosttun_update(std::uint8_t proto, std::uint32_t remote, std::uint32_t ifindex);
	// kvx_hostaddr: one of the host's own IPv4 addresses (host order).
	void hostaddr_update(std::uint32_t addr);

	// kvx_gflows: the flow count of a guest (host-order address), both
	// directions, in the slot of the address's owner now (kvx_guest; an
	// owner-less address: its own); set_gflows sets the outbound one
	// (inbound 0).
	std::uint32_t gflows_slot(std::uint32_t guest) const;
	std::uint32_t gflows(std::uint32_t guest) const;
	void set_gflows(std::uint32_t guest, std::uint32_t count);
	kvx_gflows_val gflows_val(std::uint32_t guest) const;
	void set_gflows_val(std::uint32_t guest, const kvx_gflows_val &v);
	// kvx_gstats: the per-guest counters of the slot of guest's owner now
	// (host-order address), summed over every CPU.  Counters are per MAC
	// (stats.h), quotas per bridge port (gflows_slot).
	kvx_gstat gstats(std::uint32_t guest) const;
	std::uint32_t gstats_slot(std::uint32_t guest) const;
	// kvx_gstats at a slot (gstats_mac_slot: a MAC's, IPv6 guests by their MAC)
	kvx_gstat gstats_at(std::uint32_t slot) const;
	std::uint32_t gstats_mac_slot(const testpkt::Mac &mac) const;
	// kvx_gcur[0] on every CPU: the mark the next packet's counter bump takes.
	void set_gcur(const kvx_gcur &cur);
	// The reclaim pass's shared state (.bss): window start and hold-off.
	void set_reclaim_state(std::uint32_t cursor, std::uint64_t holdoff_ns);
	std::uint32_t reclaim_cursor() const;
	// The machine-wide hold-off and the entries the last pass visited.
	std::uint64_t reclaim_holdoff() const;
	std::uint32_t reclaim_visited() const;
	// kvx_ct6's reclaim pass state (ct6.h), likewise.
	void set_reclaim6_state(std::uint32_t cursor, std::uint64_t holdoff_ns);
	// kvx_ovl's reclaim pass state (ct.h ovl_reclaim), likewise.
	void set_ovl_reclaim_state(std::uint32_t cursor, std::uint64_t holdoff_ns);

	// kvx_xdev[ifindex] (the daemon's device table of the XDP path).
	void xdev_update(int ifindex, const testpkt::Mac &mac, std::uint16_t flags);
	void xdev_delete(int ifindex);
	// kvx_xfdb: guest MAC -> bridge port, learnt by kvx_xdp_port.
	std::optional<kvx_xfdb_val> xfdb_lookup(const testpkt::Mac &mac) const;
	void xfdb_update(const testpkt::Mac &mac, const kvx_xfdb_val &val);
	void xfdb_delete(const testpkt::Mac &mac);
	std::size_t xfdb_size() const;

	// kvx_guest[addr] (host-order address): the MAC that owns it.
	std::optional<kvx_guest_val> guest_lookup(std::uint32_t addr) const;
	void guest_update(std::uint32_t addr, const kvx_guest_val &val);

	// kvx_icmprl[addr]: a destination's bucket (host order).
	std::optional<kvx_icmprl_val> icmprl_lookup(std::uint32_t addr) const;
	void icmprl_update(std::uint32_t addr, const kvx_icmprl_val &val);
	// The budgets of all destinations together (.bss kvx_icmprl_tat,
	// icmp.h): the theoretical arrival time (CLOCK_BOOTTIME ns) of the
	// next message; 0: full (reset by clear_tables()).
	enum class IcmpBudget { Answers = 0, Pmtu = 1 };
	void set_icmprl_global(IcmpBudget which, std::uint64_t tat_ns);
	// Empties kvx_icmprl only (an LRU map evicting every bucket).
	void clear_icmprl_buckets();

	// kvx_halfopen / kvx_halfopen6: the early drop ring of a quota slot
	// (none: the slot has had no half-open flow since the ring was made);
	// halfopen_forget deletes it, as a replaced map would.
	std::optional<kvx_halfopen_val> halfopen_at(std::uint32_t slot) const;
	std::optional<kvx_halfopen6_val> halfopen6_at(std::uint32_t slot) const;
	void halfopen_forget(std::uint32_t slot);
	void halfopen6_forget(std::uint32_t slot);

	std::optional<kvx_ct_val> ct_lookup(const kvx_ct_key &key) const;
	void ct_update(const kvx_ct_key &key, const kvx_ct_val &val);
	void ct_delete(const kvx_ct_key &key);
	std::vector<std::pair<kvx_ct_key, kvx_ct_val>> ct_entries() const;

	std::vector<std::pair<kvx_frag_key, kvx_frag_val>> frag_entries() const;
	// The host's marks (kvx_fraghost, kvx_fraghost6).
	std::vector<kvx_frag_key> fraghost_keys() const;
	std::vector<kvx_frag6_key> fraghost6_keys() const;
	// kvx_fragq: the records (kvx_fragq_hdr and the packet, each whole,
	// in its size class) the programs submitted since the last drain
	// (clear_tables() drains too).
	std::vector<testpkt::Bytes> fragq_drain();
	// Parking's budget of a direction (.bss kvx_fragq_tat, nat.h): the
	// theoretical arrival time (CLOCK_BOOTTIME ns); 0: full (reset by
	// clear_tables()).
	void set_fragq_budget(std::uint8_t dir, std::uint64_t tat_ns);

	// IPv6: kvx_cfg6 (zeroed, mode off, by clear_tables()), kvx_ct6, kvx_bind6.
	void set_cfg6(const kvx_cfg6 &cfg);
	kvx_cfg6 cfg6() const;
	std::vector<std::pair<kvx_ct6_key, kvx_ct6_val>> ct6_entries() const;
	std::optional<kvx_ct6_val> ct6_lookup(const kvx_ct6_key &key) const;
	std::vector<std::pair<kvx_bind6_key, kvx_bind6_val>> bind6_entries() const;
	void ct6_update(const kvx_ct6_key &key, const kvx_ct6_val &val);
	void ct6_delete(const kvx_ct6_key &key);
	// A guest's quota slot (both families) is its MAC's bridge port's
	// (kvx_brport; port 0's when not placed: ct.h mac_slot); kvx_gflows
	// and kvx_gports at a slot.
	std::uint32_t mac_slot(const testpkt::Mac &mac) const;
	kvx_gflows_val gflows_at(std::uint32_t slot) const;
	void set_gflows_at(std::uint32_t slot, const kvx_gflows_val &v);
	std::uint32_t gports_at(std::uint32_t slot) const;
	std::optional<kvx_bind6_val> bind6_lookup(const kvx_bind6_key &key) const;
	void bind6_update(const kvx_bind6_key &key, const kvx_bind6_val &val);
	void bind6_delete(const kvx_bind6_key &key);
	void frag_update(const kvx_frag_key &key, const kvx_frag_val &val);
	std::vector<std::pair<kvx_frag6_key, kvx_frag6_val>> frag6_entries() const;
	void frag6_update(const kvx_frag6_key &key, const kvx_frag6_val &val);

	// NAT66's mapped addresses (kvx_extaddr6): flags KVX_EXT_F_*, none
	// deletes the entry; emptied by clear_tables().
	void extaddr6_set(const testpkt::Ip6 &addr, std::optional<std::uint32_t> flags);

	// Relay: kvx_nd (guest address -> owner), emptied by clear_tables().
	std::optional<kvx_nd_val> nd_lookup(const testpkt::Ip6 &addr) const;
	void nd_update(const testpkt::Ip6 &addr, const kvx_nd_val &val);
	std::size_t nd_size() const;
	// kvx_brport (guest MAC -> bridge port), emptied by clear_tables();
	// kvx_gaddrs' counter of a slot; relay's slot of a bridge port
	// (ct_rules.h kvx_port_slot, 0: MACs of no known port).
	// moved_ns: when the daemon moved the MAC to the port (0: never);
	// flags: KVX_BRPORT_F_HELD (its port holds it: the port guard's).
	void brport_set(const testpkt::Mac &mac, std::uint32_t port_ifindex,
			std::uint64_t moved_ns = 0, std::uint32_t flags = 0);
	void brport_delete(const testpkt::Mac &mac); // none there: nothing
	std::optional<kvx_xfdb_val> brport_lookup(const testpkt::Mac &mac) const;
	// kvx_brplace (the datapath's placements per port), emptied by
	// clear_tables().
	void brplace_set(std::uint32_t port_ifindex, std::uint64_t window_ns, std::uint32_t placed);
	std::optional<kvx_brplace_val> brplace_lookup(std::uint32_t port_ifindex) const;
	// kvx_guard[0]: the port guard's lease (0: off; clear_tables()).
	void guard_until_set(std::uint64_t until_ns);
	std::uint32_t gaddrs_at(std::uint32_t slot) const;
	std::uint32_t port_slot(std::uint32_t port_ifindex) const;

private:
	int fd_cfg() const;
	int fd_bind() const;
	int fd_ct() const;
	int fd_stats() const;
	int fd_extaddr() const;

	kvmxdp_tc *tc() const;
	kvmxdp_xdp *xdp() const;

	std::unique_ptr<Skel<kvmxdp_tc>> skel_;
	std::unique_ptr<Skel<kvmxdp_xdp>> xdp_;
	SkbMeta skb_meta_;
	// The per-guest arrays and kvx_portx, mapped: clear_tables() zeroes
	// them with one memset (a syscall per slot of 65536 took seconds per
	// hundred tests).
	struct Mapped {
		void *addr;
		std::size_t len;
	};
	std::vector<Mapped> mapped_;
};

// Keys built the way the ABI says (zeroed, network order), from host-order
// addresses and ports.
kvx_bind_key bind_key(kvx_bind_dir dir, std::uint8_t proto, std::uint32_t addr, std::uint16_t port);
kvx_xfdb_key xfdb_key(const testpkt::Mac &mac);
kvx_ct_key ct_key(std::uint8_t proto, std::uint32_t int_addr, std::uint16_t int_port,
		  std::uint32_t rem_addr, std::uint16_t rem_port);

std::uint32_t be32(std::uint32_t host);
std::uint16_t be16(std::uint16_t host);

} // namespace kvmxdp::test
