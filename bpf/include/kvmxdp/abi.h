/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * kvmxdp ABI: the layout of every pinned map, shared verbatim by the BPF
 * programs (bpf/) and the C++ loader/CLI (loader/, maps-cli/).  There is no
 * second copy anywhere: C++ includes this file and checks sizes and offsets
 * with static_assert (loader/kernel/abi_check.hpp).  The rules both sides apply to
 * these tables (flow expiry, the quota's counter index) are in ct_rules.h.
 *
 * Rules:
 *  - fixed-width kernel types only; byte order is stated per field
 *    (__be* = network order, everything else host order);
 *  - explicit _pad fields, no implicit padding (keys are hashed bytewise:
 *    both sides zero every key before use);
 *  - any layout change bumps KVX_ABI_VERSION: a loader refuses to reuse
 *    pinned maps of another version instead of misreading them.
 */
#ifndef KVMXDP_ABI_H
#define KVMXDP_ABI_H

#include <linux/types.h>

#define KVX_ABI_VERSION 32
/*
 * The oldest ABI version whose state tables (kvx_ct, kvx_bind, kvx_extaddr,
 * kvx_frag) have exactly this version's layout: pinned maps of versions
 * KVX_ABI_TABLES_SINCE..KVX_ABI_VERSION are reused on attach (conntrack
 * survives the upgrade); kvx_cfg is rewritten by every attach, so a cfg of
 * another size is replaced.  Version history:
 *   1: first release.
 *   2: kvx_cfg.flow_quota appended (84 bytes), map kvx_gflows.
 *   3: NAT hardening: kvx_frag.created_ns (fragment entries expire), maps
 *      kvx_guest (a guest address's owning MAC) and kvx_hosttun (the host's
 *      tunnel peers), new reasons and cfg flags (state tables change:
 *      pinned tables of 1..2 are recreated); conntrack TCP states and
 *      per-direction quotas: kvx_ct_val.tcp (sequence tracking),
 *      KVX_CT_SYN_RECV, kvx_timeouts.tcp_syn_recv, kvx_gflows_val {out, in},
 *      maps kvx_halfopen and kvx_scratch.
 *   4: kvx_cfg.gw_addr (source of the ICMP errors kvmxdp sends guests) and
 *      kvx_cfg.guest_seed (the quota slot's key) appended (92 bytes); map
 *      kvx_icmprl; quotas per guest (owning MAC), not per address:
 *      kvx_gflows always KVX_GFLOWS_MAX slots (a pinned one of another size
 *      is replaced and recounted at attach); kvx_extaddr flags PROBING and
 *      CONFLICT; reasons ICMP_SENT, ICMP_RATELIMITED.  State tables
 *      unchanged: pinned tables of 3 are reused.
 *   5: NAT capacity: kvx_cfg.nat_skip_lo/hi (the host's ephemeral range
 *      inside the NAT range) appended, map kvx_portx (ports the host
 *      listens on), kvx_cfg.guest_ports and map kvx_gports (per-guest
 *      port limit), kvx_bind_val._pad became tw_remote and new IN-half
 *      flags (TIME_WAIT port reuse; 0 in version 3's entries, which read
 *      as "not reusable").  The state tables keep version 3's layout:
 *      pins of 3..5 are reused, 1..2 recreated.  Per-guest counters:
 *      maps kvx_gstats and kvx_gcur.
 *   6: TIME_WAIT reuse: map kvx_gtw (each guest's recently closed ports,
 *      consulted first at its port limit); kvx_bind_val.tw_remotes ages
 *      (two generations of KVX_TW_EPOCH_NS and their epoch: version 5's
 *      filters read as other bits, which at worst forgoes or allows one
 *      reuse until their epoch is over).  Layouts of the state tables
 *      unchanged: pins of 3..6 are reused.  kvx_gflows and kvx_gports are
 *      BPF_F_MMAPABLE (the GC corrects them with atomic adds); pinned ones
 *      without the flag are replaced and recounted at attach.
 *   7: IPv6: maps kvx_cfg6, kvx_ct6, kvx_bind6 and the program array
 *      kvx_v6progs (the entry points tail-call the IPv6 programs);
 *      reasons PASS_ND, DROP_EXTHDR, DROP_UDP_NO_CSUM.  IPv4 tables
 *      unchanged: pins of 3..7 are reused.
 *   8: NAT66 datapath: reasons DROP_HOP_LIMIT, DROP_PROTO_UNTRANSLATED.
 *      Tables unchanged: pins of 3..8 are reused.
 *   9: NAT66 fragments: map kvx_frag6 (ICMPv6 errors are translated with
 *      no new state).  Tables unchanged: pins of 3..9 are reused.
 *  10: IPv6 relay: map kvx_nd (guest address -> owning MAC), kvx_cfg6's
 *      padding became bridge_mac (same size), reasons RELAY_OUT, RELAY_IN,
 *      ND_PROXY_NA, kvx_v6progs slots 2..3 (a pinned 2-slot array is
 *      replaced), KVX_CFG6_F_INBOUND_OPEN; relay's flows in kvx_ct6 have
 *      ext_addr = int_addr; a dynamic OUT half of kvx_bind6 names in
 *      guest_mac the MAC its port counts for (0 in older entries: the
 *      address's slot).  Tables unchanged: pins of 3..10 are reused.
 *  11: IPv6 mapped addresses announced: map kvx_extaddr6 (a mapped
 *      address other than the uplink's -> KVX_EXT_F_* flags: answered
 *      for on the uplink once duplicate address detection found it
 *      free); kvx_v6progs slot 4 (kvx_br6_hairpin: NAT66 hairpin; a
 *      pinned 4-slot array is replaced); map kvx_hostrev6 (the host's
 *      own IPv6 sockets to mapped addresses).  Tables unchanged: pins of
 *      3..11 are reused.
 *  12: IPv6 relay's DAD relay: kvx_nd state KVX_ND_DUP (a LAN host
 *      defended the address during the guest's DAD), reasons ND_RELAY and
 *      DROP_ND_DUPLICATE; per-guest address limit: map kvx_gaddrs,
 *      reason DROP_GUEST_ADDRS; relay's flows count in kvx_gflows (the
 *      slot of their address's kvx_nd owner).  Tables unchanged: pins of
 *      3..12 are reused.
 *  13: IPv4 port overlapping within one guest (RFC 7857 section 3): maps
 *      kvx_ovl ((shared port, remote) -> the guest endpoint whose flow
 *      claimed it) and kvx_gown (each guest's recently bound ports),
 *      KVX_BIND_F_SHARED on a shared port's IN half and on its other
 *      endpoints' OUT halves (0 in older entries: nothing shared).
 *      Layouts unchanged: pins of 3..13 are reused.
 *  14: map kvx_gtenant (each guest's tenants of shared ports, bounded by
 *      its port limit).  Layouts unchanged: pins of 3..14 are reused.
 *  15: kvx_gown is an LRU hash keyed by the full guest slot (an array
 *      indexed by the slot's low bits before: guests whose slots collided
 *      evicted each other's rings; a pinned array is replaced, its hints
 *      are expendable); KVX_CT_F_HALFOPEN (0 in older entries: the flow's
 *      state's own timeout).  Tables unchanged: pins of 3..15 are reused.
 *  16: kvx_cfg.tenant_cap appended (104 bytes): a guest's tenants are
 *      bounded by the binding table too.  Tables unchanged.
 *  17: IPv4 later fragments that arrive before their first (RFC 4787
 *      REQ-14): ring buffer kvx_fragq (kvx_fragq_rec: a copy for the
 *      daemon's park), reasons FRAG_PARKED, FRAG_PARKED_HOST,
 *      FRAG_REINJECTED, FRAG_PARK_FULL, FRAG_PARK_EXPIRED,
 *      FRAG_REINJECT_FAILED; kvx_frag_val's MACs are also set for OUT
 *      entries (the next hop's, the uplink's: 0 in older entries, whose
 *      parked fragments are then not sent).  Tables unchanged: pins of
 *      3..17 are reused.
 *  18: IPv6 relay hardening: kvx_nd_val is 32 bytes (dad_ns, dad_probes:
 *      an address is a guest's only through a duplicate address detection
 *      no LAN host answered; a pinned kvx_nd of 24-byte values is
 *      replaced, its owned entries carried over), map kvx_brport (guest
 *      MAC -> bridge port: relay's per-guest limits count per port),
 *      reasons DROP_ND_UNCLAIMED and DROP_ND_RELAY_LIMIT.  Other tables
 *      unchanged: pins of 3..18 are reused.
 *  19: KVX_XDEV_F_LEARN: the XDP port program learns guest MACs into
 *      kvx_xfdb only on ports with it (the bridge learns there: learning
 *      on, not locked); an older daemon's kvx_xdev has it nowhere, so
 *      nothing is learnt until the daemon rewrites kvx_xdev (its first
 *      sync, before the first packet it matters for).  Layouts unchanged:
 *      pins of 3..19 are reused.
 *  20: the fragment park hardened: a kvx_frag IN entry with addr 0 marks
 *      a datagram whose first fragment went to the host (its later
 *      fragments go there too, never parked; an older datapath makes no
 *      such entries); kvx_fragq records sized to the fragment (three
 *      classes) with a 16-byte kvx_fragq_hdr that names the sending
 *      guest's MAC (the share an OUT fragment counts against); reasons
 *      FRAG_PARK_HOST, FRAG_PARK_STALE, FRAG_PARK_RATELIMITED.  Table
 *      layouts unchanged: pins of 3..20 are reused.
 *  21: kvx_xfdb_val.flags (was padding, 0 in older entries):
 *      KVX_XFDB_F_STATIC marks the daemon's copy of a static bridge entry,
 *      which XDP never moves.  Layouts unchanged: pins of 3..21 are reused.
 *  22: early drop: kvx_halfopen is an LRU hash keyed by the full guest
 *      slot (an array indexed by the slot's low bits before: a flooded
 *      guest overwrote the ring of the guest whose slot collided with its
 *      own; a pinned array is replaced, its hints are expendable); map
 *      kvx_halfopen6 (IPv6's half-open inbound flows, kvx_ct6 keys).
 *      Tables unchanged: pins of 3..22 are reused.
 *  23: early drop: rings of KVX_HALFOPEN_RING 64 (16 before) with each
 *      slot's push number (seq) and the slot to refill (hole, was
 *      padding); older rings are replaced, hints only; kvx_scratch has
 *      KVX_SCRATCH_SLOTS entries (replaced: no state).  Tables unchanged:
 *      pins of 3..23 are reused.
 *  24: NAT66 TIME_WAIT reuse: IPv6 bindings keep KVX_BIND_F_TW/RFIN and
 *      tw_remotes as IPv4's (0 in older entries: nothing to recycle), their
 *      rings in the other half of kvx_gtw; an IPv6 flow's ct.ext_addr
 *      records the slot it was counted in (0 in older entries: the slot
 *      found from the binding; moved to kvx_ct_val.slot in 31).
 *      Tables unchanged: pins of 3..24 are reused.
 *  25: the host's fragment marks in maps of their own (kvx_fraghost,
 *      kvx_fraghost6; created when absent); kvx_frag/kvx_frag6 IN entries
 *      of addr 0 that older versions made still read as the host's.
 *      Tables unchanged: pins of 3..25 are reused.
 *  26: TIME_WAIT reuse with a timestamp veto (RFC 6191): kvx_ct_tcp.fin_ts
 *      (was padding) holds the TSval of the guest's first FIN, with
 *      KVX_CT_TCP_F_TS and KVX_CT_TCP_F_FIN_TAKEN (0 in older entries: the
 *      sequence number rule alone, as before); map kvx_tcpts (the parser's
 *      note of a SYN's or FIN's timestamp); a closed port is reusable after
 *      KVX_TW_PORT_QUIET_NS (0.5 s; 2 s before).  Table layouts unchanged:
 *      pins of 3..26 are reused.
 *  27: map kvx_hostaddr (the host's own IPv4 addresses, any link's: a
 *      flow from outside never opens from one; created when absent).
 *      Table layouts unchanged: pins of 3..27 are reused.
 *  28: the port guard: program kvx_port_in on each bridge port's ingress,
 *      KVX_BRPORT_F_HELD in kvx_brport values (0 in an older daemon's: the
 *      guard drops nothing), map kvx_guard (created when absent; 0: the
 *      guard is off), KVX_XDEV_F_GUARD and KVX_XDEV_F_GUARD_CLSACT, reason
 *      DROP_MAC_ELSEWHERE.  Layouts unchanged: pins of 3..28 are reused.
 *  29: quotas per bridge port: the kvx_gflows/kvx_gports/kvx_gtenant slot
 *      of a guest is its MAC's kvx_brport port's (ct.h mac_slot; attach's
 *      recount moves an older instance's counts), kvx_port_in places a
 *      MAC of no port at its first frame, kvx_scratch has
 *      KVX_SCRATCH_SLOTS 3 entries (replaced: no state).  Tables
 *      unchanged: pins of 3..29 are reused.
 *  30: the datapath's placements are budgeted per port (map kvx_brplace,
 *      created when absent; a frame of a MAC that cannot be placed is
 *      dropped: reason DROP_MAC_NEW) and the XDP port program places a MAC
 *      of no port too; kvx_brport has KVX_BRPORT_SIZE 16384 entries (a
 *      pinned one of 4096 is replaced: the daemon fills it again from the
 *      bridge).  Tables unchanged: pins of 3..30 are reused.
 *  31: kvx_ct_val.pkts_in is 32 bits and the other half is the slot the
 *      flow was counted in (kvx_ct_val.slot, both families: IPv6's record
 *      moved there from ct.ext_addr; 0 in older entries, read as none); a
 *      dynamic binding's OUT half records its slot likewise (kvx_bind_val
 *      .slot, the IN half's tw_remotes).  Tables unchanged: pins of 3..31
 *      are reused.
 *  32: an XDP fast path for NAT66: the XDP programs tail-call an IPv6
 *      frame into kvx_xdp6progs[KVX_XDP6_*] (the XDP object's own program
 *      array, pinned by the daemon next to its XDP links).  Tables
 *      unchanged: pins of 3..32 are reused.
 */
#define KVX_ABI_TABLES_SINCE 3

/* Pinned map names; the kernel keeps 15 characters of a map name. */
#define KVX_MAP_CFG "kvx_cfg"
#define KVX_MAP_BIND "kvx_bind"
#define KVX_MAP_CT "kvx_ct"
#define KVX_MAP_STATS "kvx_stats"
#define KVX_MAP_EXTADDR "kvx_extaddr"
#define KVX_MAP_FRAG "kvx_frag"
#define KVX_MAP_FRAG6 "kvx_frag6"
#define KVX_MAP_GFLOWS "kvx_gflows"
#define KVX_MAP_XDEV "kvx_xdev"
#define KVX_MAP_XFDB "kvx_xfdb"
#define KVX_MAP_GUEST "kvx_guest"
#define KVX_MAP_PORTX "kvx_portx"
#define KVX_MAP_GPORTS "kvx_gports"

/*
 * Default table sizes (entries); attach --ct-size/--bind-size override.
 * A dynamic binding takes two kvx_bind entries, so the binding table holds
 * the default NAT pool (about 36000 ports on a stock Linux host) twice over
 * with room for the static mappings; conntrack holds several flows per
 * binding.  Both are preallocated: about 14 MB for kvx_ct and 11 MB for
 * kvx_bind at these sizes (README "NAT behaviour").
 */
#define KVX_CT_DEFAULT_SIZE 131072
#define KVX_BIND_DEFAULT_SIZE 131072

/*
 * NAT bindings (RFC 4787 "mappings").  Endpoint-independent mapping: one
 * guest (proto, addr, port) owns one external (addr, port) towards every
 * destination.  Each binding is a pair of entries in kvx_bind:
 *   OUT half: key = guest endpoint     -> value = external endpoint
 *   IN  half: key = external endpoint  -> value = guest endpoint + MACs
 * The IN half is inserted first with BPF_NOEXIST: that insert is the atomic
 * claim on the external port.  The OUT half is inserted second and deleted
 * first, so "OUT exists => IN exists" holds at every instant; a datapath that
 * finds the pair broken repairs it or drops the packet, never mistranslates.
 * For ICMP echo the "port" is the echo identifier; for other IP protocols it
 * is 0 (address-only NAT).
 */
enum kvx_bind_dir {
	KVX_BIND_OUT = 0,
	KVX_BIND_IN = 1,
};

struct kvx_bind_key {
	__u8 dir;     /* enum kvx_bind_dir */
	__u8 proto;   /* IPPROTO_* */
	__be16 port;  /* OUT: guest port; IN: external port */
	__be32 addr;  /* OUT: guest address; IN: external address */
};

struct kvx_bind_val {
	__be32 addr;          /* OUT: external address; IN: guest address */
	__be16 port;          /* OUT: external port; IN: guest port */
	__u16 flags;          /* KVX_BIND_F_* */
	__u8 guest_mac[6];    /* IN: the guest's MAC (deliver to) */
	__u8 gw_mac[6];       /* IN: the MAC the guest used as gateway */
	union {
		__u32 tw_remotes; /* IN: remotes that may hold its port in TIME_WAIT (ct_rules.h
				   * kvx_tw_*: an aging Bloom filter; 0 in version 3's entries) */
		__u32 slot;       /* OUT of a dynamic binding: the slot it was counted in
				   * (kvx_gports, a tenant's kvx_gtenant) as kvx_ct_val.slot
				   * records a flow's (ct_rules.h kvx_ct_slot_rec; 0, none,
				   * in entries of version 30 and before) */
	};
	__u64 last_used_ns;   /* CLOCK_BOOTTIME; set on create, on each new flow, and
			       * (IN, KVX_BIND_F_TW) by each packet of its closed flow */
};

#define KVX_BIND_F_STATIC (1U << 0)     /* installed by `map add`: no expiry, inbound opens flows */
#define KVX_BIND_F_ONE_TO_ONE (1U << 1) /* whole-address mapping: proto KVX_PROTO_ANY, port 0 */
/*
 * RFC 7857 section 3 (TIME_WAIT reuse), IN halves of dynamic TCP bindings:
 * KVX_BIND_F_MULTI: more than one flow was made through the binding (its
 * flows are not known one by one: never recycled); KVX_BIND_F_TW: its one
 * flow is over (TIME_WAIT, or CLOSE after a RST).  A binding with TW and
 * not MULTI, over for at least KVX_TW_PORT_QUIET_NS, may be taken over for
 * a new SYN towards a remote that is not in tw_remotes (ct.h bind_recycle).
 */
#define KVX_BIND_F_MULTI (1U << 2)
#define KVX_BIND_F_TW (1U << 3)
/* The remote's FIN came first (or crossed the guest's): in TIME_WAIT, the
 * remote joins tw_remotes. */
#define KVX_BIND_F_RFIN (1U << 4)
/* IN halves of dynamic bindings: `conntrack flush` deleted a flow made
 * through it.  TCP: a remote's segment without a flow (not a SYN) is then
 * taken for one of that flow and dropped (DROP_FILTERED) until the guest's
 * next packet picks the flow up again, instead of going to the host, whose
 * stack would reset the connection (ct.h ct_unsolicited).  Any IPv4
 * protocol: no tenant joins the port (ct.h ovl_enter). */
#define KVX_BIND_F_FLUSHED (1U << 5)
/*
 * Port overlapping (RFC 7857 section 3; ct.h ovl_share), only among one
 * guest address's own endpoints: a guest at its port limit (or with the
 * pool exhausted) lets a new endpoint use the external port of one of its
 * own dynamic bindings, for remotes that port has no flow with.  IN half:
 * other endpoints of its guest have flows through the port (kvx_ovl names
 * them); the owner's own new flows claim their remote there too, and the
 * port is never recycled for TIME_WAIT reuse.  Set with an atomic OR of
 * the 32-bit word it sits in (ct.h bind_flags_or), cleared by the GC when
 * no claim is left.  OUT half: this endpoint is a tenant of the port it
 * names (whose IN half is its owner's): it holds no port of its own (it
 * does not count against the guest's port limit), and each of its flows
 * claims its remote in kvx_ovl.  Never on a static binding, never with
 * endpoint-independent filtering.
 */
#define KVX_BIND_F_SHARED (1U << 6)
#define KVX_TW_RECYCLE_NS (2ULL * 1000 * 1000 * 1000)
/*
 * How long a closed connection's port stays quiet before another endpoint's
 * SYN may take it (ct.h bind_recycle): 0.5 s, past the first retransmission
 * of a lost last FIN or ACK on a LAN (Linux's RTO is 200 ms at least).  A
 * late segment of the old connection after that never passes for the new
 * one's: the guest's finds its binding gone; a remote's FIN or RST meets
 * the new flow's window, its data (outside the window, with an ACK the new
 * connection never sent) too: dropped (vm-tests/port_reuse.sh); its
 * challenge ACK to the new SYN (RFC 5961 4.2) establishes nothing (ct.h
 * ct_tcp_update).  A remote far away, whose retransmission comes later,
 * costs the new connection a SYN retry at worst.  The old flow itself
 * stays, for KVX_TW_RECYCLE_NS at least.  Ports are recycled mostly when
 * free ones are scarce (ct.h bind_plan).  With 2 s, and still with 1 s, four guests
 * churning to one server port ran the pool dry: the busiest one's
 * bindings, each reused within 1.5 s, were seldom quiet for long enough to
 * share, and held most of it (bench/RESULTS.md).
 */
#define KVX_TW_PORT_QUIET_NS (500ULL * 1000 * 1000)
/* A binding no flow references survives this long after its last use (the
 * daemon's GC, gc.hpp kBindGraceNs), so that a flow being created right now
 * (binding first, flow second) keeps it; the datapath's reclaim of idle
 * tenants (ct.h bind_reclaim) waits as long. */
#define KVX_BIND_GRACE_NS (30ULL * 1000 * 1000 * 1000)
/*
 * tw_remotes ages (ct_rules.h kvx_tw_add): bits 18..31 are the remotes added
 * in the epoch (CLOCK_BOOTTIME / KVX_TW_EPOCH_NS) whose number, mod 8, is in
 * bits 1..3, bits 4..17 those of the epoch before it; bit 0 is 0.  A remote
 * counts for one to two epochs after it closed: at least 2 MSL (RFC 9293;
 * netfilter's TIME_WAIT timeout, 120 s), at most twice that.  Without the
 * age, a port reused often enough collects every bit and is never reused
 * again (or refuses remotes that left TIME_WAIT long ago).
 */
#define KVX_TW_EPOCH_NS (120ULL * 1000 * 1000 * 1000)
#define KVX_TW_GEN_BITS 14

/* Protocol wildcard of 1:1 mappings.  IPv4 may carry protocol 0 (IPv6's
 * hop-by-hop number, reserved in IPv4): the datapath drops guests' protocol-0
 * packets, so none ever makes a binding under the wildcard, and takes an
 * entry under it as a 1:1 mapping only with KVX_BIND_F_ONE_TO_ONE. */
#define KVX_PROTO_ANY 0

/*
 * Port overlapping's claims (KVX_BIND_F_SHARED): kvx_ovl[proto, external
 * endpoint, remote endpoint] = the guest endpoint whose flow uses that
 * (port, remote), one entry per flow of a shared port other than the
 * owner's flows made before it was shared.  The insert (BPF_NOEXIST) is
 * the atomic claim that keeps (port, remote) unique as the IN half keeps
 * a whole port; an inbound packet that matches none of the owner's flows
 * is delivered to the claim's endpoint, only while the IN half still
 * names the claim's owner (owner_port, the same guest address) and that
 * endpoint's flow names the port.  One claim per flow, made just before
 * it: sized as kvx_ct (--ct-size), so claims of live flows cannot fill it;
 * claims whose flow is gone are deleted by the GC and, when it is full, by
 * the datapath (ct.h ovl_reclaim).  Not preallocated: it is empty unless
 * a guest runs out of ports.
 */
#define KVX_MAP_OVL "kvx_ovl"

struct kvx_ovl_key {
	__be32 ext_addr; /* external (uplink) address */
	__be32 rem_addr; /* remote address */
	__be16 ext_port; /* the shared external port / echo id */
	__be16 rem_port; /* remote port; 0 for ICMP echo (as kvx_ct_key) */
	__u8 proto;	 /* IPPROTO_* */
	__u8 _pad[3];
};

struct kvx_ovl_val {
	__be32 addr;	   /* guest address (the port owner's too) */
	__be16 port;	   /* the guest port / echo id of the flow's endpoint */
	__be16 owner_port; /* the guest port the IN half named when claimed */
	__u64 created_ns;  /* CLOCK_BOOTTIME; refreshed by the flow's packets (1 s):
			    * the GC leaves a claim alone for the binding grace */
};

/*
 * Each guest's recently bound ports, per protocol: kvx_gown[guest slot *
 * 3 + (0 TCP, 1 UDP, 2 ICMP)] (a kvx_gtw_val ring, newest at next - 1):
 * the ports a guest out of ports may share (ct.h ovl_share).  Random probes
 * of a large pool would miss the few it holds.  Keyed by the full slot (an
 * LRU hash of KVX_GOWN_GUESTS guests' rings): two guests never share a ring,
 * where one churning through ports would push the other's out (an array
 * indexed by the slot's low bits did that); the least recently used
 * guests' rings go when more guests bind.  Only hints: checked against
 * kvx_bind (same guest address and MAC, a dynamic binding) before use.
 */
#define KVX_MAP_GOWN "kvx_gown"
#define KVX_GOWN_GUESTS 1024

/*
 * Each guest's tenants (their OUT halves, KVX_BIND_F_SHARED): a __u32 per
 * guest slot, indexed and sized like kvx_gports, incremented by the
 * datapath when it makes one (ct.h ovl_try) and recounted from kvx_bind by
 * the daemon's GC (gc.cpp tenants_recount).  A tenant holds no port but
 * one kvx_bind entry: a guest may have at most KVX_TENANTS_PER_PORT times
 * kvx_cfg.guest_ports of them (the pool's size with no limit), and never
 * more than kvx_cfg.tenant_cap (an eighth of kvx_bind: the default port
 * limit is most of the pool, and eight tenants per port of it would be
 * more entries than the table holds), so that a guest at its limit sending
 * from ever new source ports cannot fill the binding table every guest
 * shares (ct.h ovl_share refuses with the reason bind_create gave).
 */
#define KVX_MAP_GTENANT "kvx_gtenant"
#define KVX_TENANTS_PER_PORT 8

/*
 * External addresses other than the uplink's own (1:1 mappings, port
 * forwards on secondary addresses): kvx_extaddr[addr (network order)].
 * Inbound packets to other addresses are the host's and skip all lookups.
 */
struct kvx_extaddr_val {
	__u32 flags; /* KVX_EXT_F_* */
	__u32 _pad;
};

#define KVX_EXT_F_ARP (1U << 0)       /* answer ARP for it on the uplink with the uplink MAC */
#define KVX_EXT_F_SUSPENDED (1U << 1) /* made on another network: neither answered nor translated */
/*
 * Control-plane states of a suspended address (always with KVX_EXT_F_SUSPENDED;
 * the datapath reads only that): back on its network, it is probed (RFC 5227)
 * before it resumes, and kept suspended while another host answers for it.
 * In the map so that every writer (the daemon, `map add|del`, attach) keeps
 * them and `status` can say why.
 */
#define KVX_EXT_F_PROBING (1U << 2)  /* back on its network: being probed */
#define KVX_EXT_F_CONFLICT (1U << 3) /* another host answered the probe: retried later */

/*
 * IPv6 external addresses other than the uplink's own (1:1 mappings,
 * forwards on a literal address): kvx_extaddr6[addr] = kvx_extaddr_val.
 * KVX_EXT_F_ARP here means "announced": the uplink program answers
 * Neighbour Solicitations for it with the uplink MAC (and defends it
 * against a LAN host's duplicate address detection).  The daemon sets it
 * only after its own duplicate address detection (RFC 4862 5.4) found the
 * address free; until then the address is KVX_EXT_F_PROBING, and
 * KVX_EXT_F_CONFLICT when another node answered (retried later).  A held
 * address has no pairs in kvx_bind6: its traffic is not translated, and
 * never taken from the node that owns it.  Never added to the host.
 */
#define KVX_MAP_EXTADDR6 "kvx_extaddr6"
#define KVX_EXTADDR6_MAX 256

struct kvx_extaddr6_key {
	__be32 addr[4];
};

/*
 * The host's own tunnels (GRE, IPIP, 6in4, ESP of its IPsec): the
 * (protocol, remote) pairs the host itself speaks on the uplink, read by the
 * loader from netlink and kept current by the daemon.  Protocols without
 * ports get address-only NAT: a guest's packet of one to the host's tunnel
 * peer would make a binding that takes the tunnel's inbound traffic, so the
 * datapath never binds these pairs (the guest's packet is dropped, counted)
 * and passes their inbound packets to the host.  remote 0: the host speaks
 * the protocol with any remote (a tunnel without a fixed peer).
 */
#define KVX_MAP_HOSTTUN "kvx_hosttun"
#define KVX_HOSTTUN_MAX 256

struct kvx_hosttun_key {
	__be32 remote; /* 0: any */
	__u8 proto;    /* IPPROTO_* */
	__u8 _pad[3];
};

struct kvx_hosttun_val {
	__u32 ifindex; /* the tunnel device (0: not a device, e.g. an xfrm state) */
	__u32 _pad;
};

/*
 * The host's own IPv4 addresses, any link's (a VPN's, a container
 * bridge's, the uplink's secondary ones), and the directed broadcast of
 * each one's subnet or the one set on it (`brd`), key the address, value
 * 1: written by attach and kept
 * current by the daemon from netlink.  A packet from the uplink with one
 * of them as its source is a martian (the kernel's input route drops a
 * local or broadcast source before an iptables DNAT could take it): it
 * opens no flow to a guest, nor is an ICMP error from one translated for
 * a guest's flow (DROP_MARTIAN_IN).  Beyond KVX_HOSTADDR_MAX entries the
 * rest are not checked (the loader warns; the uplink's are written first).
 */
#define KVX_MAP_HOSTADDR "kvx_hostaddr"
#define KVX_HOSTADDR_MAX 256

/*
 * The host's own sockets reaching mapped addresses (kvmxdp_host.bpf.c): a
 * connect/sendmsg to EXT:PORT is rewritten to GUEST:PORT in the socket
 * layer, and this map remembers, per socket (cookie) and guest endpoint,
 * which external endpoint the application asked for, so that recvmsg and
 * getpeername show it that one.  LRU is right here (unlike kvx_ct/kvx_bind,
 * where it would evict one half of a live NAT pair): an entry is never half
 * of a pair, and socket cookies are never reused, so an evicted or stale
 * entry can only make a long-idle socket see the guest's address instead of
 * the mapped one.
 */
#define KVX_MAP_HOSTREV "kvx_hostrev"
#define KVX_HOSTREV_DEFAULT_SIZE 16384

struct kvx_hostrev_key {
	__u64 sock_cookie;
	__be32 guest_addr;
	__be16 guest_port;
	__u8 proto;
	__u8 _pad;
};

struct kvx_hostrev_val {
	__be32 ext_addr;
	__be16 ext_port;
	__u16 _pad;
};

/* The same for IPv6 (connect6, sendmsg6, recvmsg6, getpeername6; ABI 11). */
#define KVX_MAP_HOSTREV6 "kvx_hostrev6"

struct kvx_hostrev6_key {
	__u64 sock_cookie;
	__be32 guest_addr[4];
	__be16 guest_port;
	__u8 proto;
	__u8 _pad[5];
};

struct kvx_hostrev6_val {
	__be32 ext_addr[4];
	__be16 ext_port;
	__u16 _pad;
};

/*
 * Conntrack flow entries: one per (proto, guest ip:port, remote ip:port),
 * always keyed from the guest's point of view in *internal* addresses, so
 * both directions find the same entry.  Used for filtering (RFC 4787
 * address-and-port-dependent by default), TCP state and timeouts.
 */
struct kvx_ct_key {
	__be32 int_addr; /* guest address */
	__be32 rem_addr; /* remote address */
	__be16 int_port; /* guest port / ICMP echo id / 0 */
	__be16 rem_port; /* remote port; 0 for ICMP echo (the id is the guest's) and other protocols */
	__u8 proto;      /* IPPROTO_* */
	__u8 _pad[3];
};

enum kvx_ct_state {
	KVX_CT_NONE = 0,
	KVX_CT_SYN_SENT,
	KVX_CT_ESTABLISHED,
	KVX_CT_FIN_WAIT,
	KVX_CT_TIME_WAIT,
	KVX_CT_CLOSE,
	KVX_CT_UDP,       /* UDP, ICMP and other protocols: no states */
	KVX_CT_SYN_RECV,  /* opened by an inbound SYN: established only by the handshake */
	KVX_CT_STATE_MAX,
};

#define KVX_CT_F_SEEN_REPLY (1U << 0) /* a packet came back from the remote */
#define KVX_CT_F_FIN_OUT (1U << 1)    /* the guest sent FIN */
#define KVX_CT_F_FIN_IN (1U << 2)     /* the remote sent FIN */
#define KVX_CT_F_INBOUND (1U << 3)    /* created by an inbound packet (EIF, static mapping) */
#define KVX_CT_F_STATIC (1U << 4)     /* bound through a static mapping (port forward or 1:1) */
#define KVX_CT_F_ONE_TO_ONE (1U << 5) /* bound through a 1:1 mapping: ports are kept */
#define KVX_CT_F_SYNACK (1U << 6)     /* SYN_RECV: the guest answered the SYN */
/* Opened from outside and its handshake not completed (yet): capped at
 * tcp_syn_recv in every state, evicted first (ct_early_drop).  A SYN then
 * a RST or FIN of a spoofing LAN host would else hold the flow as long as a
 * real connection's close (kvmxdp/ct_rules.h kvx_ct_timeout_s). */
#define KVX_CT_F_HALFOPEN (1U << 7)

/*
 * TCP sequence tracking, one per direction (kvx_ct_val.tcp[KVX_CT_SIDE_*]),
 * as netfilter's struct ip_ct_tcp_state: what that side sent and what the
 * other side allows it to send, for the receive-window checks of RST and
 * FIN (RFC 5961).  Sequence numbers host order, compared modulo 2^32.
 */
enum kvx_ct_side {
	KVX_CT_SIDE_GUEST = 0,
	KVX_CT_SIDE_REMOTE = 1,
};

struct kvx_ct_tcp {
	__u32 end;    /* highest seq + len this side sent */
	__u32 maxend; /* highest seq the other side's ACK + window lets it send */
	__u32 ack;    /* highest ACK this side sent (its RCV.NXT) */
	__u32 maxwin; /* largest window this side advertised, scaled */
	__u8 wscale;  /* window scale from its SYN (RFC 7323); valid with _F_WSCALE */
	__u8 flags;   /* KVX_CT_TCP_F_* */
	/* The TSval (RFC 7323) of the guest's FIN, valid with the guest side's
	 * _F_TS, in two halves: the guest side's holds bits 0..15, the remote
	 * side's bits 16..31 (ct_rules.h kvx_ct_fin_ts).  Split over what was
	 * padding so that the table's layout, and the flows of a kvmxdp
	 * before it, survive the upgrade. */
	__u16 fin_ts;
};

#define KVX_CT_TCP_F_SYN (1U << 0)    /* its SYN was seen: end/maxwin are from the start */
#define KVX_CT_TCP_F_ACK (1U << 1)    /* it sent an ACK: ack and the other's maxend are set */
#define KVX_CT_TCP_F_WSCALE (1U << 2) /* its SYN carried the window scale option */
/* The flow was picked up mid-stream (no SYN seen, its window scale unknown).
 * The guest's side: end and ack from its segments, maxwin its largest window
 * unscaled, which the checks of a remote's RST and FIN take at the largest
 * scale (ct.h tcp_loose_span); the remote's side: only a FIN's end
 * (KVX_CT_TCP_F_FIN). */
#define KVX_CT_TCP_F_LOOSE (1U << 3)
/* A picked-up flow's remote side: a FIN was seen, end (and maxend, for a
 * later one) just past it; the flow counts it once the guest acknowledges
 * exactly that. */
#define KVX_CT_TCP_F_FIN (1U << 4)
/* The guest's side: its first FIN carried a timestamp, kept in fin_ts,
 * which a remote holding the tuple in TIME_WAIT took last: a SYN of another
 * guest endpoint that is given the tuple must not carry an older one
 * (ct_rules.h kvx_tw_syn_ok).  Cleared by a later FIN with another
 * timestamp or none (unknown again) and by the tuple's next SYN. */
#define KVX_CT_TCP_F_TS (1U << 5)
/* The guest's side: its first FIN has been seen (its timestamp taken or
 * found missing); later ones only clear KVX_CT_TCP_F_TS. */
#define KVX_CT_TCP_F_FIN_TAKEN (1U << 6)

struct kvx_ct_val {
	__u64 last_seen_ns; /* CLOCK_BOOTTIME (bpf_ktime_get_boot_ns): counts suspend */
	__u64 created_ns;   /* CLOCK_BOOTTIME */
	__be32 ext_addr;    /* external address this flow is bound to */
	__be16 ext_port;    /* external port / echo id */
	__u8 state;         /* enum kvx_ct_state */
	__u8 flags;         /* KVX_CT_F_* */
	__u64 pkts_out;     /* guest -> remote (approximate: not atomic) */
	__u32 pkts_in;      /* remote -> guest (approximate: not atomic; stops at 2^32 - 1) */
	__u32 slot;         /* the quota slot it was counted in: ct_rules.h kvx_ct_slot_rec */
	struct kvx_ct_tcp tcp[2]; /* TCP only: enum kvx_ct_side */
};
/*
 * kvx_ct_val.slot (both families): the guest slot (kvx_gflows) a flow was
 * counted in when made, with the tag of the seed it was computed under, so
 * that it is uncounted there, whatever became of its guest since: an
 * address another MAC took over, a MAC the port guard or the daemon placed
 * on its port after it opened flows in the shared slot of MACs of no port
 * (which would else move those flows to the port at the next recount and
 * leave the shared slot free for the next made-up MAC), a port recycled to
 * another endpoint.  0 in entries made before (an IPv4 flow's was the high
 * half of a 64-bit pkts_in) and a record of another seed (an attach that
 * drew a new one: resumed, it keeps the running one) read as none: the
 * slot is found from the flow's guest as before (ct.h ct_flow_slot, ct6.h
 * ct6_flow_slot).
 */

/*
 * Per-CPU scratch for the datapath (kvx_scratch[0]): a new flow's value is
 * built here (and, before it, the key of bind_recycle's lookup), not on the stack, which the bridge program's deepest call
 * chain fills to the verifier's 512 bytes.  kvx_scratch[1]: early drop's
 * pick over a ring (ct.h struct halfopen_pick), which runs while [0] holds
 * the flow waiting for room; in a map value the verifier does not follow
 * the ring indexes it keeps (on the stack, each combination of them was a
 * state of its own: past a million instructions).  kvx_scratch[2]: the
 * kvx_brport key of a quota slot's lookup (ct.h mac_slot), which runs
 * while [0] and [1] are in use.  Never read by the loader.
 */
#define KVX_MAP_SCRATCH "kvx_scratch"
#define KVX_SCRATCH_SLOT_KEY 2 /* ct.h mac_slot's kvx_brport key */
#define KVX_SCRATCH_SLOTS 3

/*
 * Flow timeouts in seconds, per state (kvx_ct_val.state) and protocol.  The
 * rule that picks one and decides expiry, and the defaults (netfilter's),
 * are in ct_rules.h, shared by the datapath and the daemon's GC.
 */
struct kvx_timeouts {
	__u32 tcp_syn_sent;
	__u32 tcp_established;
	__u32 tcp_fin_wait;
	__u32 tcp_time_wait;
	__u32 tcp_close;
	__u32 udp;             /* no reply seen */
	__u32 udp_stream;      /* reply seen */
	__u32 icmp;
	__u32 other;
	__u32 tcp_syn_recv;    /* inbound-opened, handshake not complete */
};

/*
 * IPv4 fragments: only the first carries the ports, so its translation is
 * remembered per datagram for the later ones, keyed by the addresses the
 * later fragments will carry and the IP id (RFC 791's reassembly key).
 * An LRU map: entries are short-lived and losing one only loses a datagram.
 * An entry steers fragments for KVX_FRAG_TIMEOUT_S after its first
 * fragment, as long as the kernel keeps an incomplete datagram
 * (net.ipv4.ipfrag_time): the 16-bit id wraps, and a later datagram of the
 * same pair with the same id must not follow a stale entry to a guest.
 */
struct kvx_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 dir;      /* enum kvx_bind_dir: OUT = from a guest, IN = to a guest */
};

struct kvx_frag_val {
	__be32 addr;          /* OUT: external source address; IN: guest address
			       * (0: the host's, KVX_FRAG_HOST, in entries of
			       * versions before 25) */
	__u8 guest_mac[6];    /* IN: deliver to; OUT: the next hop's MAC on the uplink
			       * (0: the route lookup left the neighbour to the kernel) */
	__u8 gw_mac[6];       /* IN: the bridge's MAC the guest uses; OUT: the uplink's */
	__u64 created_ns;     /* CLOCK_BOOTTIME: when the first fragment passed */
};

#define KVX_FRAG_DEFAULT_SIZE 4096
#define KVX_FRAG_TIMEOUT_S 30
/* An IN entry of versions before 25 whose first fragment went to the host:
 * its later fragments go there too (now kvx_fraghost's). */
#define KVX_FRAG_HOST 0

/*
 * Inbound datagrams whose first fragment went to the host (no guest took
 * it), by kvx_frag_key (IPv4) and kvx_frag6_key (IPv6): their later
 * fragments go to the host too, never to the park (the host's own
 * fragmented datagrams would otherwise be copied fragment by fragment).
 * LRU maps of their own: anyone on the LAN can make these marks (a first
 * fragment to the uplink address is enough), and in the guests' kvx_frag
 * and kvx_frag6 a flood of them evicted the guests' datagrams, whose later
 * fragments then went to the park or were lost.  Here a flood evicts only
 * other marks: a host's datagram that loses its mark has its later
 * fragments passed to the host and copied to the park (FRAG_PARKED_HOST),
 * as when its first fragment comes last.  The guests' entries are looked
 * up first: a mark never takes a guest's datagram away.
 */
#define KVX_MAP_FRAGHOST "kvx_fraghost"
#define KVX_MAP_FRAGHOST6 "kvx_fraghost6"

struct kvx_fraghost_val {
	__u64 created_ns; /* CLOCK_BOOTTIME: when the first fragment passed */
};
/* A parked fragment joins only a datagram whose first fragment passed
 * within this much of the parking, either way (RFC 4963: a fragment of
 * one datagram must not complete another that reuses its id). */
#define KVX_FRAG_REORDER_NS (2ULL * 1000 * 1000 * 1000)

/*
 * Later fragments (IPv4 and IPv6) that arrive before their first one (RFC
 * 4787 REQ-14; reordering on the path, or a sender that emits its
 * fragments last first, as Linux did for years).  The datapath cannot hold a packet
 * back, so it copies such a fragment into the ring buffer kvx_fragq and
 * drops it (from a guest: it must never leave with its private source) or
 * also hands it to the host (from the uplink: it may be the host's own).
 * The daemon parks the copies, bounded per direction (count, bytes, a
 * share per guest MAC outbound and per source address inbound,
 * KVX_FRAG_TIMEOUT_S like kvx_frag), and once the datagram's kvx_frag (or
 * kvx_frag6) entry appears (its first fragment was translated) sends each
 * parked copy on with that translation: a later fragment has no L4
 * header, so the addresses, the TTL and the IP checksum (IPv6: the
 * address and the hop limit) are all that change.  A full
 * ring, or a direction over its parking rate, drops the copy
 * (DROP_FRAGMENT / PASS_HOST, as before the park).
 *
 * A record is a kvx_fragq_hdr and the IP packet from its header on (the
 * version in its first byte tells the family; IPv6's source share inbound
 * is its /64), in
 * the smallest of three sizes that holds it (KVX_FRAGQ_DATA_S, _M, or
 * KVX_FRAGQ_DATA, the Ethernet MTU; a larger fragment is not parked): a
 * flood of tiny orphans takes a tenth of the ring a full-size record would.
 */
#define KVX_MAP_FRAGQ "kvx_fragq"
#define KVX_FRAGQ_BYTES (256 * 1024) /* the ring's size: a power of 2 pages */
#define KVX_FRAGQ_DATA 1500
#define KVX_FRAGQ_DATA_S (128 - 16) /* records of 128 and 512 bytes */
#define KVX_FRAGQ_DATA_M (512 - 16)
/*
 * Parking is rate-limited per direction (the datapath's generic cell rate
 * algorithm, in record bytes): a spoofed flood from the uplink spends only
 * the inbound budget, never the guests'.  2 MB/s a direction with a burst
 * of a quarter ring: between two reads by the daemon (KVX_FRAGQ_POLL_MS at
 * the latest) both directions together fit the ring.  Over it: counted
 * FRAG_PARK_RATELIMITED beside the packet's DROP_FRAGMENT / PASS_HOST.
 */
#define KVX_FRAGQ_NS_PER_BYTE 500ULL
#define KVX_FRAGQ_BURST_BYTES (KVX_FRAGQ_BYTES / 4)
/*
 * Wake-ups: a record wakes the daemon only if none did for
 * KVX_FRAGQ_WAKE_NS or the ring is a quarter full; the daemon reads the
 * ring again KVX_FRAGQ_POLL_MS after each read that found records, until
 * one finds none (it then sleeps until the next wake-up).  A record that
 * did not wake it was written within KVX_FRAGQ_WAKE_NS of one that did,
 * so that next read finds it.  A flood costs the daemon at most one read
 * per KVX_FRAGQ_WAKE_NS, not one per record.
 */
#define KVX_FRAGQ_WAKE_NS (10ULL * 1000 * 1000)
#define KVX_FRAGQ_POLL_MS 25

struct kvx_fragq_hdr {
	__u16 len;     /* bytes of data: the IP packet (IPv4's tot_len, IPv6's 40 + payload) */
	__u8 dir;      /* enum kvx_bind_dir: OUT = from a guest, IN = from the uplink */
	__u8 _pad;
	__u8 mac[6];   /* OUT: the guest's (the frame's source, its owner); IN: 0 */
	__u8 _pad2[6];
};

struct kvx_fragq_rec {
	struct kvx_fragq_hdr hdr;
	__u8 data[KVX_FRAGQ_DATA]; /* the IP packet, network order (the largest class) */
};

/*
 * IPv6 fragments (RFC 8200 4.5), as kvx_frag: the first fragment's
 * translation per datagram, keyed by the addresses the later fragments
 * carry and the Fragment header's 32-bit identification, for
 * KVX_FRAG_TIMEOUT_S (an LRU map of KVX_FRAG_DEFAULT_SIZE entries).
 * Later fragments carry no checksum to fix: only the address (and the
 * MACs) change.  An IN entry whose addr is all zero (versions before 25;
 * now kvx_fraghost6) is a datagram whose first fragment went to the host:
 * its later fragments go there too, never to the park (kvx_fragq).
 */
struct kvx_frag6_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 id;     /* the Fragment header's identification */
	__u8 proto;    /* the datagram's upper-layer protocol */
	__u8 dir;      /* enum kvx_bind_dir: OUT = from a guest, IN = to a guest */
	__u8 _pad[2];
};

struct kvx_frag6_val {
	__be32 addr[4];       /* OUT: external source address; IN: guest address */
	__u8 guest_mac[6];    /* OUT: the sending guest's (its later fragments come
			       * from it); IN: deliver to */
	__u8 gw_mac[6];	      /* IN: the bridge's MAC the guest uses; OUT: the next
			       * hop's, when the route lookup had it (0: the kernel
			       * resolved it), to send a parked later fragment to */
	__u8 _pad[4];
	__u64 created_ns;     /* CLOCK_BOOTTIME: when the first fragment passed */
};

/*
 * Per-guest flow counts for the flow quota (kvx_cfg.flow_quota):
 * kvx_gflows[slot], an ARRAY of KVX_GFLOWS_MAX kvx_gflows_val.  The slot
 * belongs to the guest, not to the address or MAC it claims: it is a keyed
 * hash of the bridge port (kvx_brport) of the MAC that owns the flow's
 * guest address (kvx_guest), computed by kvx_port_slot (ct_rules.h; ct.h
 * mac_slot) with kvx_cfg.guest_seed, by the datapath whenever it counts a
 * flow and by the daemon's GC when it recounts.  A guest that binds four
 * addresses of the subnet to its MAC (spoofing them, or an `ip addr add`
 * in the VM), or to four fresh MACs, has one quota for all four.  MACs the
 * daemon has not placed on a port (a guest's first second; a port's MACs
 * beyond its share of kvx_brport) share port 0's slot.  Its IPv6 flows
 * count in the same slot (that of the MAC their binding delivers to,
 * ct6.h): one quota for both families.
 *
 * Collisions: two ports can hash to one slot, and then share one quota
 * (and one half-open ring).  With KVX_GFLOWS_MAX slots the chance that a
 * given guest shares is (guests - 1) / 65536; the key is random, drawn by
 * a first attach and kept by those that resume its tables (the slot
 * records name slots of it), and readable only by root.  An address with no owner yet (an inbound
 * flow to a guest that never sent a frame, no DHCP lease) is counted in a
 * slot hashed from the address itself (never a port's input); once the
 * address gets its owner, its flows move to the owner's slot at the GC's
 * next recount (until then the two counters are off by those flows), as
 * do a MAC's when the daemon places it.
 *
 * Flows the guest opened and flows opened from outside (KVX_CT_F_INBOUND)
 * count separately, each against flow_quota: a LAN flood at a port forward
 * cannot take the guest's own outbound capacity.  Incremented by the
 * datapath on each flow it creates, decremented when it reclaims or evicts
 * one; the daemon's GC recounts them at every sweep (deletions by the GC
 * never drift, nor do flows whose address changed owner) and corrects them
 * with atomic adds through a mapping (BPF_F_MMAPABLE): never a write that
 * would lose the datapath's concurrent updates.  Read as
 * signed: a racing decrement below 0 means "no flows".
 */
#define KVX_GFLOWS_MAX 65536

struct kvx_gflows_val {
	__u32 out;          /* flows the guest opened */
	__u32 in;           /* flows opened from outside */
	__u64 reclaim_ns;   /* CLOCK_BOOTTIME: no quota reclaim pass for it before */
};

/*
 * Per-guest counters (`kvmxdp top`, the metrics endpoint):
 * kvx_gstats[slot & (KVX_GSTATS_SLOTS - 1)], a per-CPU array, where slot
 * is kvx_guest_slot of the owning MAC (per MAC: the quota's kvx_gflows
 * slot is its port's, ct.h mac_slot).  The
 * datapath never looks the owner up for it: a guest's packet is counted
 * once guest_owner_check has seen its frame's MAC own its source (or is
 * counted to that MAC when the check drops it), a packet to a guest under
 * the MAC its binding delivers to (an address without an owner: under the
 * address).  Fewer slots than kvx_gflows (memory is per CPU): two guests
 * share one with chance (guests - 1) / KVX_GSTATS_SLOTS, which readers
 * detect (two owners of one slot) and report instead of splitting.
 *
 * Counted: what kvmxdp translated for the guest, each way (the IP packet
 * as the programs saw it: bytes are frame bytes, a TSO/GRO super-packet
 * is one packet), and the guest's packets it dropped, by class of reason
 * (KVX_GDROPS; the exact reason is in kvx_stats).  Packets kvmxdp hands
 * to the host stack are not the guest's translated traffic and are not
 * counted here.  Approximate under races like kvx_stats: never reset by
 * the datapath, a reader computes rates from two samples.
 */
#define KVX_MAP_GSTATS "kvx_gstats"
#define KVX_GSTATS_SLOTS 4096

/* Not X: tools read the verdict reasons as the lines "X(NAME, ...)". */
#define KVX_GDROPS(G)                                                              \
	G(QUOTA, "new flow over the guest's flow quota or port limit")                          \
	G(NO_MAPPING, "no mapping possible: no free port, table full, no uplink address, host tunnel") \
	G(SPOOF, "address owned by another MAC")                                   \
	G(TOO_BIG, "too big for the next link")                                    \
	G(TCP, "TCP segment refused (flags or window)")                            \
	G(OTHER, "any other drop reason")

enum kvx_gdrop {
#define KVX_X_GD_ENUM(name, desc) KVX_GD_##name,
	KVX_GDROPS(KVX_X_GD_ENUM)
#undef KVX_X_GD_ENUM
	KVX_GD_MAX,
};

struct kvx_gstat {
	__u64 pkts_out;  /* guest -> outside (and to a hairpinned guest) */
	__u64 bytes_out;
	__u64 pkts_in;   /* outside -> guest */
	__u64 bytes_in;
	__u64 drops[KVX_GD_MAX]; /* packets, enum kvx_gdrop */
};

/*
 * Per-CPU: the guest the packet being processed belongs to, set by the
 * program once it knows (kvx_gcur[0]) and taken by the packet's one
 * counter bump (stats.h), so that the bump charges the guest too without
 * every verdict site naming it.  Datapath-only, never read by the loader.
 */
#define KVX_MAP_GCUR "kvx_gcur"
#define KVX_GCUR_F_SET (1U << 0)
#define KVX_GCUR_F_IN (1U << 1) /* outside -> guest */

struct kvx_gcur {
	__u32 slot;  /* already masked to KVX_GSTATS_SLOTS */
	__u32 flags; /* KVX_GCUR_F_* */
};

/*
 * Per-CPU: the timestamp option (RFC 7323) of the TCP SYN or FIN being
 * processed, noted by the parser (nat.h pkt_tcp_options) where the options
 * are at hand, for conntrack, which takes it only for the segment it names
 * (seq).  Datapath-only, never read by the loader.
 */
#define KVX_MAP_TCPTS "kvx_tcpts"

struct kvx_tcpts {
	__u32 seq;   /* the segment's sequence number */
	__u32 tsval; /* its TSval; valid with ok */
	__u32 ok;    /* 1: the segment carries the option */
	__u32 _pad;
};

/*
 * Early drop (netfilter's early_drop): the guest's newest half-open
 * inbound flows (SYN_RECV), so that when its inbound quota or kvx_ct is
 * full a new SYN evicts one of them instead of being refused.  Which one
 * (ct.h ct_early_drop): the asking remote's own newest when it holds two or
 * more, else one the guest has not answered KVX_HALFOPEN_ANSWER_NS after
 * its SYN, else the oldest (by the slots' push numbers).
 * kvx_halfopen[guest slot] (the kvx_gflows slot: one ring for all of a
 * guest's addresses), an LRU hash of KVX_HALFOPEN_GUESTS guests' rings
 * keyed by the full slot: two guests never share a ring (an array indexed
 * by the slot's low bits let a flooded guest overwrite the ring of the
 * guest whose slot collided with its own, whose early drop then found
 * nothing); the least recently used guests' rings go when more guests
 * are flooded.  A ring entry is a hint, checked against kvx_ct before
 * anything is evicted; pushes from several CPUs are not atomic (a lost
 * push leaves a flow to its timeout or the GC's relief, a torn key
 * matches no flow).  kvx_halfopen6: the same for kvx_ct6's flows
 * (ct6.h), in the slot the flow counts in (ct6_slot).
 */
#define KVX_MAP_HALFOPEN "kvx_halfopen"
#define KVX_MAP_HALFOPEN6 "kvx_halfopen6"
#define KVX_HALFOPEN_GUESTS 1024
/* 64 flows: under a flood from ever new sources that the guest answers,
 * a real opener's handshake has 64 flood SYNs' time to complete (16 gave
 * a LAN client 16 ms at 1000 SYN/s). */
#define KVX_HALFOPEN_RING 64
/* A SYN the guest has not answered this long after it came (the flows'
 * clock advances a jiffy at a time: 1-10 ms more) is one it dropped:
 * evicted before any answered flow. */
#define KVX_HALFOPEN_ANSWER_NS (20ULL * 1000 * 1000)

struct kvx_halfopen_val {
	__u32 next; /* pushes so far: the slot of a push is next % RING ... */
	__u32 hole; /* ... unless this is set: 1 + the slot early drop emptied */
	__u32 seq[KVX_HALFOPEN_RING]; /* each slot's push (next then): its age */
	struct kvx_ct_key keys[KVX_HALFOPEN_RING];
};

/*
 * TIME_WAIT reuse at the port limit: a guest at its limit only gets a port
 * by reusing one of its own whose flow is over (ct.h bind_recycle).  Found
 * by random probes in a large pool, the few ports such a guest holds are
 * missed (64 probes into 36000 ports hit one of 64 ports 11% of the time):
 * the datapath puts each of its ports whose flow enters TIME_WAIT or CLOSE
 * (network order) in kvx_gtw[guest slot & (KVX_GTW_GUESTS - 1)], and a SYN
 * at the limit tries those first, oldest first.  An entry is only a hint,
 * checked by bind_recycle (same guest address, over, quiet); the oldest is
 * overwritten only once it is no longer a reusable port, so a guest that
 * closes faster than its ports get quiet keeps the ones that will be.
 * Rings are shared by slots KVX_GTW_GUESTS apart.  NAT66's rings (ct6.h
 * gtw6_push, checked against kvx_bind6) are at slot + KVX_GTW_GUESTS / 2:
 * a dual-stack guest's two families have one slot.
 */
#define KVX_MAP_GTW "kvx_gtw"
#define KVX_GTW_GUESTS 1024
#define KVX_GTW_RING 16

struct kvx_gtw_val {
	__u32 next; /* the slot written next (and tried first): oldest */
	__u32 _pad;
	__be16 ports[KVX_GTW_RING];
};

/*
 * Rate limit of the ICMP errors kvmxdp itself sends (destination
 * unreachable when no mapping can be made, time exceeded and fragmentation
 * needed on the way to a guest): a token bucket per destination, as the
 * kernel's icmp_ratelimit (1 per second, bursts of 6: XRLIM_BURST_FACTOR;
 * fragmentation needed is exempt, as in the kernel), and budgets for all
 * destinations together, as icmp_msgs_per_sec / icmp_msgs_burst: spoofed
 * sources cannot turn the datapath into an ICMP generator.  Tokens are
 * nanoseconds of credit.  An LRU map: an evicted bucket only starts full
 * again, so the global budgets are not in it (icmp.h kvx_icmprl_tat, the
 * program's own .bss; key 0.0.0.0 is no longer used).
 */
#define KVX_MAP_ICMPRL "kvx_icmprl"
#define KVX_ICMPRL_SIZE 4096
#define KVX_ICMPRL_INTERVAL_NS 1000000000ULL /* per destination */
#define KVX_ICMPRL_BURST 6
#define KVX_ICMPRL_GLOBAL_INTERVAL_NS 1000000ULL /* 1000 per second */
#define KVX_ICMPRL_GLOBAL_BURST 50

struct kvx_icmprl_val {
	__u64 last_ns;   /* CLOCK_BOOTTIME of the last refill */
	__u64 tokens_ns; /* credit; one message costs one interval */
};

/*
 * Per-guest port limit (RFC 6888 REQ-4; kvx_cfg.guest_ports): kvx_gports
 * counts each guest's dynamic bindings (external ports it holds), indexed
 * and sized like kvx_gflows.  Incremented by the datapath when it makes a
 * binding, decremented when it releases one; the daemon's GC recounts them
 * from kvx_bind at every sweep and corrects them as kvx_gflows.
 */

#define KVX_CFG_F_EIF (1U << 0) /* endpoint-independent filtering ("full cone") */
/* The uplink's network overlaps the guest subnet (a DHCP lease after
 * attach): nothing is translated, every packet goes to the kernel, which
 * routes by its own tables; dropping inbound packets "to the guest subnet"
 * would drop the host's own traffic on its LAN.  Set by the daemon. */
#define KVX_CFG_F_OVERLAP (1U << 1)

/*
 * Guest address ownership (anti-spoofing): kvx_guest[guest address (network
 * order)] = the MAC that owns it.  A guest address is bound to the MAC of
 * the first frame kvmxdp translates from it, or to the MAC of its DHCP lease
 * (the daemon reads libvirt's lease status file: KVX_GUEST_F_LEASE).  A
 * frame with the address and another MAC is dropped (DROP_SPOOF_MAC): one
 * guest cannot move another's bindings, 1:1 address or port forwards to
 * itself, nor (an ARP packet or a packet to the host with the address and
 * another MAC) teach the host's neighbour cache its MAC for the address.
 * Frames that leave the bridge's subnet claim an address; ARP and frames
 * to the host within it (its bridge address, broadcasts) only keep their
 * owner active.  A learnt owner idle for KVX_GUEST_IDLE_NS gives the address up
 * (a VM re-created with a new MAC, an address handed out again); a leased
 * one only when its lease ends.  A leased owner whose placed bridge port
 * (kvx_brport) was deleted (its VM shut down or destroyed: the lease lasts)
 * is marked KVX_GUEST_F_GONE by the daemon, which also clears the MAC of
 * the bindings that delivered to it: what comes in for the address then
 * goes through the neighbour table, not to a MAC the bridge would flood to
 * every guest.  The owner's next frame, or the daemon finding its MAC on a
 * port again, clears the mark.  A hash map sized to the subnet (one entry
 * per guest address, at most KVX_GFLOWS_MAX), written by the datapath and
 * the daemon.  The owner's MAC's bridge port also names the guest's quota slot
 * (kvx_gflows).
 */
#define KVX_GUEST_IDLE_NS (300ULL * 1000 * 1000 * 1000)
#define KVX_GUEST_F_LEASE (1U << 0) /* from a DHCP lease: never re-learnt by traffic */
#define KVX_GUEST_F_GONE (1U << 1)  /* a lease's placed port was deleted: not delivered to */

struct kvx_guest_val {
	__u8 mac[6];
	__u16 flags;   /* KVX_GUEST_F_* */
	__u64 seen_ns; /* CLOCK_BOOTTIME: the owner's last frame out or to the host (1 s grain) */
};

/*
 * XDP fast path.  kvx_xdev: the devices the XDP programs deal
 * with, keyed by ifindex, written by the daemon: the bridge (its MAC: only
 * frames a guest addressed to it are routed), the uplink and the bridge
 * ports.  KVX_XDEV_F_TX says an XDP redirect into the device lands: the
 * kernel reports NETDEV_XDP_ACT_NDO_XMIT for it (a veth: only while its
 * peer has NAPI) and kvmxdp allows it (never a tap: vhost-net guests keep
 * the TC path).  A device without the flag gets its frames through TC.
 * KVX_XDEV_F_LEARN says the bridge learns source MACs on the port
 * (IFLA_BRPORT_LEARNING on, IFLA_BRPORT_LOCKED off), so XDP may learn for
 * it: on a port without it the bridge's own entries (static ones, libvirt's
 * per guest, an 802.1X authenticator's) say where a MAC is, never a frame.
 */
#define KVX_XDEV_MAX 1024
#define KVX_XDEV_F_TX (1U << 0)     /* an XDP redirect into it lands */
#define KVX_XDEV_F_BRIDGE (1U << 1) /* the bridge: mac is its address */
#define KVX_XDEV_F_PORT (1U << 2)   /* a port of the bridge */
#define KVX_XDEV_F_LEARN (1U << 3)  /* a port the bridge learns MACs on */
/* A port with kvmxdp's port guard (kvx_port_in, see kvx_brport), and one
 * whose clsact qdisc kvmxdp created for it (detach removes it again when
 * no other filter is left): what detach and a restarted daemon read. */
#define KVX_XDEV_F_GUARD (1U << 4)
#define KVX_XDEV_F_GUARD_CLSACT (1U << 5)

struct kvx_xdev_val {
	__u8 mac[6];
	__u16 flags; /* KVX_XDEV_F_* */
};

/*
 * kvx_xfdb: guest MAC -> the bridge port it was last seen on, learnt by the
 * XDP port program from the frames it translates and redirects, after their
 * source passed the anti-spoofing checks (at most once a second per MAC),
 * on ports with KVX_XDEV_F_LEARN only.  Frames that XDP redirects bypass the
 * bridge, which stops learning them: the daemon refreshes the bridge's
 * forwarding database from this map (as if the frames had passed), and the
 * uplink's XDP program delivers translated replies straight to the guest's
 * port with it.  The daemon also copies the bridge's entries into it
 * (seen_ns 0) and makes it agree with them on every port without
 * KVX_XDEV_F_LEARN, where the bridge's entries are the only truth.
 */
#define KVX_XFDB_SIZE 4096

struct kvx_xfdb_key {
	__u8 mac[6];
	__u16 _pad;
};

/* The bridge holds the MAC in a static entry (libvirt's, an
 * administrator's, sticky or not) on ifindex: only the daemon writes such
 * an entry, and no frame elsewhere moves it (a guest sending with that MAC
 * from another port spoofs it). */
#define KVX_XFDB_F_STATIC (1U << 0)

struct kvx_xfdb_val {
	__u32 ifindex;
	__u32 flags; /* KVX_XFDB_F_* */
	__u64 seen_ns; /* CLOCK_BOOTTIME */
};

/*
 * Runtime configuration, kvx_cfg[0].  Written by the loader at attach and by
 * the daemon when the uplink address changes; read by every packet.
 */
struct kvx_cfg {
	__u32 abi_version;    /* KVX_ABI_VERSION */
	__u32 flags;          /* KVX_CFG_F_* */
	__be32 uplink_addr;   /* 0: no address yet -> guest traffic dropped, counted */
	__u32 uplink_ifindex;
	__u32 bridge_ifindex;
	__be32 subnet_addr;   /* guest subnet, network order */
	__be32 subnet_mask;   /* network order */
	__u16 nat_port_lo;    /* host order, inclusive */
	__u16 nat_port_hi;    /* host order, inclusive */
	struct kvx_timeouts timeouts;
	__u8 uplink_mac[6];   /* source MAC of ARP replies for mapped addresses */
	__u16 clamp_mss;      /* host order; 0: off. TCP SYNs through the NAT get at most this MSS */
	__u32 flow_quota;     /* max flows per guest (kvx_gflows), each direction; 0: no quota */
	__be32 gw_addr;       /* the bridge's address in the subnet: source of the ICMP
			       * errors kvmxdp sends to guests; 0: none sent */
	__u32 guest_seed;     /* key of kvx_guest_slot (ct_rules.h): random, kept on resume */
	/*
	 * The host's ephemeral range (net.ipv4.ip_local_port_range) when it
	 * lies inside nat_port_lo..hi: never allocated, so that the default
	 * range can be 1024-65535 without a translated flow and a host socket
	 * sharing a 5-tuple.  Host order, inclusive; 0..0: no hole.  The
	 * pool is the range minus the hole (ct_rules.h kvx_nat_pool_*).
	 */
	__u16 nat_skip_lo;
	__u16 nat_skip_hi;
	__u32 guest_ports;    /* max dynamic bindings per guest (kvx_gports); 0: no limit */
	__u32 tenant_cap;     /* max tenants per guest (kvx_gtenant) whatever its port
			       * limit: an eighth of kvx_bind by default; 0: none */
};

/*
 * kvx_portx: ports of the NAT range the datapath never allocates because
 * the host listens on them (a TCP listener or a bound UDP socket, any
 * address): a dynamic binding there would catch the inbound packets meant
 * for the host's service.  A bitmap: word port / 64, bit port % 64, an
 * ARRAY of KVX_PORTX_WORDS __u64 written by attach and refreshed by the
 * daemon; 8 KB for every port.
 */
#define KVX_PORTX_WORDS (65536 / 64)

/*
 * IPv6 (docs/ipv6.md).  The entry points (kvx_br_ingress, kvx_up_ingress)
 * tail-call an IPv6 frame into kvx_v6progs[KVX_V6_*]: each IPv6 program is
 * verified on its own budget, and IPv4 pays one compare.  An empty slot
 * (IPv6 off, a program array that lost its programs) falls through to the
 * IPv4 program, which hands the frame to the host as PASS_NOT_IP.  The
 * array is pinned with the other maps (a program array is emptied when the
 * last user reference goes: the datapath must survive the daemon) and
 * filled anew by every attach.
 */
#define KVX_MAP_V6PROGS "kvx_v6progs"
enum kvx_v6prog {
	KVX_V6_BR = 0, /* kvx_br6: an IPv6 frame from a guest */
	KVX_V6_UP = 1, /* kvx_up6: an IPv6 frame from the uplink */
	/* Relay mode, tail-called by kvx_br6/kvx_up6 (their own stack and
	 * verifier budget: NAT66's frames leave no room for a second path). */
	KVX_V6_BR_RELAY = 2, /* kvx_br6_relay */
	KVX_V6_UP_RELAY = 3, /* kvx_up6_relay */
	/* NAT66 hairpin, tail-called by kvx_br6 (ABI 11). */
	KVX_V6_BR_HAIRPIN = 4, /* kvx_br6_hairpin */
	KVX_V6_MAX,
};

/*
 * The XDP programs (kvx_xdp_port, kvx_xdp_up) tail-call an IPv6 frame into
 * kvx_xdp6progs[KVX_XDP6_*] (ABI 32), as the TC entry points do: the IPv6
 * fast path has its own stack and verifier budget, and an empty slot falls
 * through to the IPv4 program, which hands the frame to TC (XDP_PASS).  A
 * program array takes programs of one type, so it is the XDP object's own;
 * the daemon pins it next to its XDP links (emptied without a user
 * reference: the fast path must survive the daemon) and detach removes it.
 */
#define KVX_MAP_XDP6PROGS "kvx_xdp6progs"
enum kvx_xdp6prog {
	KVX_XDP6_PORT = 0, /* kvx_xdp_port6: a guest's IPv6 frame on a bridge port */
	KVX_XDP6_UP = 1,   /* kvx_xdp_up6: an IPv6 frame on the uplink */
	KVX_XDP6_MAX,
};

/* kvx_cfg6.mode; the tables are sized to one entry when off (a hash map
 * cannot have none). */
enum kvx_v6_mode {
	KVX_V6_OFF = 0,   /* IPv6 is the host's, untouched (PASS_NOT_IP) */
	KVX_V6_NAT66 = 1, /* guests on subnet6 leave from uplink_addr */
	KVX_V6_RELAY = 2, /* guests on the uplink's own prefix, no translation */
};

/*
 * IPv6 configuration, kvx_cfg6[0], written as kvx_cfg (by attach, and by
 * the daemon when the uplink's IPv6 address changes).  The family-neutral
 * settings (NAT port range, timeouts, quotas, flags, MACs, ifindexes) are
 * kvx_cfg's, read by both families.  Addresses are network order, 4 words.
 */
struct kvx_cfg6 {
	__u32 mode;            /* enum kvx_v6_mode */
	__u32 flags;           /* KVX_CFG6_F_* */
	__be32 uplink_addr[4]; /* the uplink's chosen address; all 0: none yet ->
				* guest traffic dropped (DROP_NO_UPLINK_ADDR) */
	__be32 subnet[4];      /* NAT66: the guests' prefix (--subnet6) */
	__be32 gw_addr[4];     /* the bridge's link-local address: source of the
				* ICMPv6 errors kvmxdp sends guests; 0: none sent */
	__be32 relay_prefix[4]; /* relay: the uplink's prefix the guests use */
	__u8 subnet_len;       /* prefix length of subnet, 0..128 */
	__u8 relay_len;        /* prefix length of relay_prefix */
	__u8 bridge_mac[6];    /* source MAC of the bridge side's Neighbour
				* Advertisements (both modes: answers to guests' DAD
				* probes) and of relay's frames to guests */
};

/* kvx_cfg6.flags.  Relay: every packet to a guest's address comes in (as
 * through a real bridge), not only the replies of its flows in kvx_ct6
 * (attach --ipv6-inbound open). */
#define KVX_CFG6_F_INBOUND_OPEN (1U << 0)

/*
 * Relay mode (docs/ipv6.md "Relay mode in the datapath"): the guests take
 * addresses in the uplink's own prefix (kvx_cfg6.relay_prefix) and the
 * datapath forwards between them and the LAN without translation, as an
 * RFC 4389 ND proxy.  kvx_nd[guest address] says who owns an address: the
 * MAC of the first frame (or duplicate address detection) from it, the
 * one frames to it are delivered to and the one the uplink answers
 * Neighbour Solicitations for; another MAC takes it over only after the
 * owner was idle for KVX_GUEST_IDLE_NS (one guest cannot take another's
 * address with one spoofed frame).  KVX_ND_HOST entries are the host's own
 * addresses in the prefix, written by the loader: never a guest's.
 * NAT66 keeps its guests' owners in it too (bpf/lib/owner6.h), sized
 * KVX_ND_DEFAULT_SIZE whenever IPv6 is on.
 */
#define KVX_MAP_ND "kvx_nd"
#define KVX_ND_DEFAULT_SIZE 4096

/*
 * Where a guest is: kvx_brport[guest MAC] = the bridge port its frames came
 * in on (ifindex), written by the daemon from the bridge's forwarding
 * database (the bridge device's TC hook sees the bridge, never the port),
 * and by the port guard (kvx_port_in) for a MAC of no entry at its first
 * frame on a port the bridge learns on (BPF_NOEXIST, flags 0).
 * The per-guest address limit (kvx_gaddrs, both modes), relay's DAD rate,
 * the flow quota and the port limit (kvx_gflows, kvx_gports, ct.h
 * mac_slot) count per port, not per MAC: a guest that sends from ever new
 * MACs has one port and one share.  A MAC not (yet) in it
 * counts in one slot shared by all such MACs (kvx_port_slot of port 0),
 * so that new MACs are bounded together
 * until the daemon names their port.  Keyed and valued as kvx_xfdb;
 * seen_ns is when the daemon last moved the MAC here from another port
 * (CLOCK_BOOTTIME; 0: placed, never moved).  A guest that sent with
 * another's MAC moved that MAC to its own port (the bridge learns before
 * kvmxdp sees the frame), so for KVX_BRPORT_MOVE_HOLD_NS after a move the
 * MAC is not released with its new port (the daemon) and its port does not
 * make another MAC there "the same guest" (owner6.h nd_owner_nat66).  The
 * pin keeps the time across a daemon restart.
 *
 * The port guard: KVX_BRPORT_F_HELD, set by the daemon, says the MAC is
 * that port's: the bridge has it there now (a dynamic entry the MAC
 * refreshed within the bridge's ageing time, or a static one), and has had
 * it there without a move for KVX_GUARD_SETTLE_NS (a static entry at
 * once: an administrator's or libvirt's word, not a frame's), so that no
 * guest keeps another's MAC by sending with it first: a MAC two ports
 * send with moves back and forth, as on a bridge without kvmxdp, and is
 * held by neither (KVX_BRPORT_F_CONTESTED: the guard marks a MAC it sees
 * on a port other than its placed one while not held, however briefly
 * the bridge had it there, and the daemon starts its settle over), nor is
 * one the daemon saw move from a port that still exists within
 * KVX_BRPORT_MOVE_HOLD_NS, nor one the bridge has on two ports at once (a
 * VLAN-filtering bridge: one MAC in two VLANs).  A frame with a held MAC as source that comes in on
 * another port is dropped on that port's ingress (kvx_port_in; the XDP
 * port program the same), before the bridge learns from it: a guest
 * cannot take another's MAC, and with it the addresses that MAC owns,
 * while that guest is there.  A MAC quiet for the bridge's ageing time
 * may move (a VM re-plugged on a port that stayed, a bond's failover), as
 * the bridge lets it.  kvx_guard[0] is the time (CLOCK_BOOTTIME) until
 * which the flags hold: the daemon pushes it KVX_GUARD_LEASE_NS ahead at
 * each refresh, so a stopped daemon's guard lapses (fails open) instead
 * of holding MACs on facts that go stale; 0 (attach --port-guard off, an
 * older daemon): the guard drops nothing.
 */
#define KVX_MAP_BRPORT "kvx_brport"
#define KVX_BRPORT_F_HELD (1U << 1) /* in kvx_xfdb_val.flags; bit 0 is kvx_xfdb's STATIC */
#define KVX_BRPORT_F_CONTESTED (1U << 2) /* set by the guard, cleared by the daemon */
#define KVX_MAP_GUARD "kvx_guard"
#define KVX_GUARD_SETTLE_NS (30ULL * 1000 * 1000 * 1000)
#define KVX_GUARD_LEASE_NS (10ULL * 1000 * 1000 * 1000)
#define KVX_BRPORT_MOVE_HOLD_NS (300ULL * 1000 * 1000 * 1000) /* the bridge's ageing time */
/* Room for every MAC a host's bridge plausibly has, and for a flooding
 * guest's: at 16 new MACs a second per port (kvx_brplace) and the bridge's
 * 300 s ageing, one port keeps at most 4800 in the bridge, below 3/4 of
 * this (the daemon's cut, relay.hpp plan_brport); ~1.3 MB preallocated. */
#define KVX_BRPORT_SIZE 16384

/*
 * The datapath's placements per port: kvx_brplace[port ifindex] counts the
 * MACs the port guard and the XDP port program placed on that port in
 * kvx_brport (nat.h brport_place) since window_ns (placed counts the
 * tries); a port places at most KVX_BRPLACE_PER_WINDOW in
 * KVX_BRPLACE_WINDOW_NS, and drops the frames of later new MACs
 * (DROP_MAC_NEW, before the bridge learns from them: the daemon, which
 * places the MACs of the bridge's forwarding database, relay.hpp
 * plan_brport, does not see them either) until a later window places
 * them.  Without a budget, a guest sending from ever new MACs would fill
 * kvx_brport between two of the daemon's looks: no room for another
 * port's new MAC, nor for the daemon's own placements; and a MAC let on
 * unplaced would count in the slot all such MACs share.  An LRU hash: a
 * port that went is forgotten.  Hints only: another layout is replaced,
 * nothing carried over.
 */
#define KVX_MAP_BRPLACE "kvx_brplace"
#define KVX_BRPLACE_SIZE KVX_XDEV_MAX
#define KVX_BRPLACE_PER_WINDOW 16
#define KVX_BRPLACE_WINDOW_NS (1000ULL * 1000 * 1000)

struct kvx_brplace_val {
	__u64 window_ns; /* start of the current window, CLOCK_BOOTTIME */
	__u32 placed;	 /* placements since */
	__u32 _pad;
};

/*
 * Per-guest address limit: kvx_gaddrs[slot] counts the kvx_nd entries
 * (owned, pending, defended) whose MAC's port slot (kvx_port_slot of its
 * kvx_brport port; ports unknown share one) is slot; a guest at KVX_ND_PER_GUEST claims no
 * other (DROP_GUEST_ADDRS): without it one guest could take all of kvx_nd
 * and leave the others no address.  SLAAC wants a stable address and a
 * few temporary ones (RFC 8981: a new one a day, the old ones kept while
 * in use); the daemon forgets addresses idle for an hour.  Incremented by
 * the datapath when an entry is made for the MAC, moved when another MAC
 * takes an idle one; the daemon's GC recounts them from kvx_nd (its
 * deletions: expiry, prefix changes) and corrects them as kvx_gflows.
 * Sized and indexed like kvx_gflows.
 */
#define KVX_MAP_GADDRS "kvx_gaddrs"
#define KVX_ND_PER_GUEST 16

enum kvx_nd_state {
	KVX_ND_NONE = 0,
	KVX_ND_PENDING = 1, /* duplicate address detection running: not forwarded */
	KVX_ND_OWNED = 2,   /* the guest's: forwarded, answered for on the uplink */
	KVX_ND_HOST = 3,    /* the host's own address: no guest may use it */
	KVX_ND_DUP = 4,     /* a LAN host defended it during the guest's DAD: not
			     * forwarded, never owned; the guest's next DAD starts over */
};

/*
 * How long a duplicate address detection runs (RFC 4861 10: RetransTimer
 * 1 s x DupAddrDetectTransmits 1; kvmxdp's RAs leave both at the hosts'
 * defaults), from its first probe (dad_ns): a pending entry this old
 * without a defence from the LAN is owned, even if the guest sent nothing
 * from it since (a server).  Before that the guest's frames from the
 * address are dropped (DROP_ND_UNCLAIMED): a guest's address is one no
 * LAN host answered for, never one it merely sent from (a frame from a
 * LAN host's address would take that host's traffic: the uplink would
 * answer for it, the host route it to the bridge).  A guest's frame from
 * an address it never probed for (DAD off, kvmxdp attached or its entry
 * forgotten since) starts kvmxdp's own probe for it instead.
 *
 * At most KVX_ND_DAD_PROBES probes of one run are relayed (a guest with
 * dad_transmits 3; the rest DROP_ND_RELAY_LIMIT), and every relayed probe
 * of a guest spends its share of KVX_ND_RELAY_BURST then one per
 * KVX_ND_RELAY_INTERVAL_NS (DROP_ND_RELAY_LIMIT): a guest cannot make the
 * uplink flood the LAN.  A defended address (KVX_ND_DUP) is held for
 * KVX_ND_DUP_HOLD_NS after the LAN host's last defence: the guest's probes
 * for it are answered by the bridge meanwhile (its DAD fails at once, as
 * for the host's own addresses), not relayed; the daemon forgets a
 * defended entry after model/relay.hpp kNdDupExpireNs.
 */
#define KVX_ND_DAD_NS 1000000000ULL
#define KVX_ND_DAD_PROBES 3
#define KVX_ND_RELAY_BURST 16
#define KVX_ND_RELAY_INTERVAL_NS 250000000ULL
#define KVX_ND_DUP_HOLD_NS (60ULL * 1000 * 1000 * 1000)

struct kvx_nd_key {
	__be32 addr[4];
};

struct kvx_nd_val {
	__u8 mac[6];	     /* the owning guest's MAC */
	__u8 state;	     /* enum kvx_nd_state */
	__u8 dad_probes;     /* probes relayed in the DAD run that began at dad_ns */
	__u32 ifindex;	     /* the device its frames came in on (TC: the bridge) */
	__u32 _pad;
	__u64 last_seen_ns;  /* CLOCK_BOOTTIME: its last frame, or its claim (1 s precision) */
	__u64 dad_ns;	     /* CLOCK_BOOTTIME: PENDING: its DAD's first probe; DUP: the
			      * LAN host's last defence */
};

/*
 * IPv6 conntrack and NAT bindings: keys as kvx_ct_key/kvx_bind_key with
 * 128-bit addresses; values embed the IPv4 ones, so that every rule that
 * reads or updates a flow or a binding (TCP tracking, timeouts, expiry,
 * TIME_WAIT reuse; ct.h, ct_rules.h, the daemon's GC) is one code for both
 * families.  The embedded 32-bit address fields are 0; the 128-bit ones
 * follow.  Sized by the loader (one entry when IPv6 is off).
 */
#define KVX_MAP_CFG6 "kvx_cfg6"
#define KVX_MAP_CT6 "kvx_ct6"
#define KVX_MAP_BIND6 "kvx_bind6"
/* When IPv6 is on: the IPv4 tables' sizes (--ct-size and --bind-size size
 * both families; a dual-stack guest opens most flows over IPv6). */
#define KVX_CT6_DEFAULT_SIZE KVX_CT_DEFAULT_SIZE
#define KVX_BIND6_DEFAULT_SIZE KVX_BIND_DEFAULT_SIZE

struct kvx_ct6_key {
	__be32 int_addr[4]; /* guest address */
	__be32 rem_addr[4]; /* remote address */
	__be16 int_port;    /* guest port / ICMPv6 echo id / 0 */
	__be16 rem_port;    /* remote port; 0 for echo and other protocols */
	__u8 proto;         /* IPPROTO_* (ICMPv6: IPPROTO_ICMPV6) */
	__u8 _pad[3];
};

struct kvx_ct6_val {
	struct kvx_ct_val ct; /* ct.ext_addr unused (versions 24..30: the slot record) */
	__be32 ext_addr[4];   /* external address this flow is bound to */
};

struct kvx_bind6_key {
	__u8 dir;       /* enum kvx_bind_dir */
	__u8 proto;     /* IPPROTO_* */
	__be16 port;    /* OUT: guest port; IN: external port */
	__be32 addr[4]; /* OUT: guest address; IN: external address */
};

struct kvx_bind6_val {
	struct kvx_bind_val bind; /* bind.addr 0 */
	__be32 addr[4];           /* OUT: external address; IN: guest address */
};

/* IPv6's half-open inbound flows per guest slot (kvx_halfopen6, keyed and
 * used as kvx_halfopen). */
struct kvx_halfopen6_val {
	__u32 next; /* as kvx_halfopen_val */
	__u32 hole;
	__u32 seq[KVX_HALFOPEN_RING];
	struct kvx_ct6_key keys[KVX_HALFOPEN_RING];
};

/*
 * Verdict reasons.  Every packet the programs see bumps exactly one of these
 * per-CPU counters (kvx_stats, indexed by enum kvx_reason), so "status" can
 * account for every packet by name.  X(name, is_drop, description).
 */
#define KVX_REASONS(X)                                                              \
	X(XLATE_OUT, 0, "guest->outside translated and forwarded")                \
	X(XLATE_IN, 0, "outside->guest translated and forwarded")                 \
	X(PASS_NOT_IP, 0, "not IPv4: to host stack")                               \
	X(PASS_MCAST, 0, "multicast/broadcast: to host stack")                     \
	X(PASS_LOCAL, 0, "to a host address or in-subnet: to host stack")          \
	X(PASS_TTL, 0, "TTL expires: to host stack for ICMP time exceeded")       \
	X(PASS_MTU, 0, "too big with DF: to host stack for ICMP frag needed")     \
	X(PASS_NO_ROUTE, 0, "no route: to host stack for ICMP unreachable")       \
	X(PASS_HOST, 0, "uplink traffic of the host itself (no flow or mapping wants it)") \
	X(DROP_MALFORMED, 1, "malformed or truncated packet")                      \
	X(DROP_SPOOFED, 1, "guest source outside the subnet")                      \
	X(DROP_FRAGMENT, 1, "IPv4 fragment whose first fragment was not seen (not parked: ring full, too large, IPv6)")   \
	X(DROP_NO_UPLINK_ADDR, 1, "uplink has no IPv4 address yet")                \
	X(DROP_OTHER_IFACE, 1, "routed to a device other than the uplink")        \
	X(DROP_FIB, 1, "route lookup failed")                                      \
	X(DROP_TOO_BIG, 1, "too big without DF")                                   \
	X(DROP_ICMP_TYPE, 1, "ICMP type not translated")                           \
	X(DROP_TABLE_FULL, 1, "conntrack or binding table full")                   \
	X(DROP_PORTS_EXHAUSTED, 1, "no free NAT port")                             \
	X(DROP_TO_SUBNET, 1, "inbound to the guest subnet from the uplink")        \
	X(DROP_FILTERED, 1, "inbound not on a flow: TCP of a flushed flow (waits for the guest's), relay's stateful policy") \
	X(DROP_TTL_IN, 1, "inbound TTL expires")                                   \
	X(DROP_BROKEN_PAIR, 1, "inconsistent NAT binding, not translated")          \
	X(XLATE_HAIRPIN, 0, "guest->mapped address translated back to a guest")      \
	X(ARP_REPLY, 0, "ARP request for a mapped address answered")                \
	X(PASS_SUSPENDED, 0, "to a mapped address suspended on this network")       \
	X(PASS_OTHERHOST, 0, "frame not addressed to the host's MAC: to host stack") \
	X(DROP_MARTIAN, 1, "martian address (0.0.0.0/8, subnet network/broadcast)") \
	X(XLATE_RELATED_IN, 0, "ICMP error for a guest's flow translated (RFC 5508)") \
	X(XLATE_RELATED_OUT, 0, "guest's ICMP error for a flow translated (RFC 5508)") \
	X(DROP_GUEST_QUOTA, 1, "new flow over the guest's flow quota")              \
	X(DROP_TCP_NO_FLOW, 1, "TCP flags that cannot open a flow (inbound: only a SYN)") \
	X(XDP_XLATE_OUT, 0, "XDP: guest->outside translated and redirected")            \
	X(XDP_XLATE_IN, 0, "XDP: outside->guest translated and redirected")             \
	X(XDP_TO_TC, 0, "XDP: handed to the TC path (not a fast-path class)")          \
	X(XDP_TO_TC_CSUM, 0, "XDP: L4 checksum left to offload: handed to the TC path") \
	X(XDP_TO_TC_DEV, 0, "XDP: next hop or device not an XDP target: handed to TC") \
	X(DROP_TOO_BIG_IN, 1, "inbound larger than the bridge's MTU")                   \
	X(DROP_FWMARK, 1, "marked packet: this kernel's route lookup ignores marks (< 6.10)") \
	X(DROP_SPOOF_MAC, 1, "guest address owned by another MAC (anti-spoofing)") \
	X(DROP_PROTO_ZERO, 1, "guest packet of IP protocol 0 (the 1:1 mappings' wildcard)")    \
	X(DROP_HOST_TUNNEL, 1, "guest packet of a protocol the host tunnels to that remote") \
	X(DROP_MARTIAN_IN, 1, "inbound from a martian source (guest subnet, loopback, host's own, 0/8, multicast)") \
	X(PASS_OVERLAP, 0, "uplink network overlaps the guest subnet: not translated, to host stack") \
	X(DROP_TCP_WINDOW, 1, "TCP RST/FIN outside the window, or an old connection's segment (RFC 5961)") \
	X(ICMP_SENT, 0, "ICMP error sent for a dropped packet (also counted under its reason)") \
	X(ICMP_RATELIMITED, 0, "ICMP error not sent: rate limit (packet counted under its reason)") \
	X(DROP_GUEST_PORTS, 1, "new binding over the guest's port limit") \
	X(PASS_ND, 0, "IPv6 neighbour/router discovery, link-local or multicast: to host stack") \
	X(DROP_EXTHDR, 1, "IPv6 extension header chain not parsed (too long, truncated, unknown)") \
	X(DROP_UDP_NO_CSUM, 1, "IPv6 UDP datagram with a zero checksum (invalid, RFC 8200)") \
	X(DROP_HOP_LIMIT, 1, "IPv6 guest packet whose hop limit expires (never to the host: it would route it)") \
	X(DROP_PROTO_UNTRANSLATED, 1, "IPv6 guest packet of a protocol NAT66 does not translate") \
	X(RELAY_OUT, 0, "IPv6 relay: guest->LAN/outside forwarded (no translation)") \
	X(RELAY_IN, 0, "IPv6 relay: LAN/outside->guest forwarded (no translation)") \
	X(ND_PROXY_NA, 0, "IPv6 Neighbour Solicitation answered (relay: for a guest or a LAN host; NAT66: a mapped address)") \
	X(ND_RELAY, 0, "IPv6 relay: duplicate address detection relayed between a guest and the LAN") \
	X(DROP_ND_DUPLICATE, 1, "IPv6 relay: guest packet from an address a LAN host defended (DAD failed)") \
	X(DROP_GUEST_ADDRS, 1, "IPv6 relay: new address over the guest's address limit") \
	X(FRAG_PARKED, 1, "fragment ahead of its first (a guest's, to a mapped IPv6 address): dropped, copy parked") \
	X(FRAG_PARKED_HOST, 0, "inbound fragment ahead of its first: to host stack, a copy parked for the daemon") \
	X(FRAG_REINJECTED, 0, "parked fragment translated and sent once its first fragment passed (also counted as parked)") \
	X(FRAG_PARK_FULL, 0, "parked fragment given up: park full or its source's share taken (also counted as parked)") \
	X(FRAG_PARK_EXPIRED, 0, "parked fragment given up: its first fragment did not pass in time (also counted as parked)") \
	X(FRAG_REINJECT_FAILED, 0, "parked fragment not sent: no next-hop MAC, or the send failed (also counted as parked)") \
	X(DROP_ND_UNCLAIMED, 1, "IPv6 relay: guest packet from an address its duplicate address detection has not claimed (a first one: kvmxdp probes the LAN for it)") \
	X(DROP_ND_RELAY_LIMIT, 1, "IPv6 relay: duplicate address detection probe over the guest's relay rate") \
	X(FRAG_PARK_HOST, 0, "parked fragment given up: its first fragment went to the host, which got this one too (also counted as parked)") \
	X(FRAG_PARK_STALE, 0, "parked fragment given up: its datagram's first fragment passed more than 2 s away from it (another datagram with its id; also counted as parked)") \
	X(FRAG_PARK_RATELIMITED, 0, "IPv4 fragment ahead of its first not parked: its direction's parking rate spent (packet counted under its reason)") \
	X(DROP_MAC_ELSEWHERE, 1, "frame on a bridge port from a MAC the bridge has on another port (port guard)") \
	X(DROP_MAC_NEW, 1, "frame on a bridge port from a MAC of no port that cannot be placed: the port's budget of new MACs a second spent, or no room (port guard)")

enum kvx_reason {
#define KVX_X_ENUM(name, drop, desc) KVX_R_##name,
	KVX_REASONS(KVX_X_ENUM)
#undef KVX_X_ENUM
	KVX_R_MAX,
};

struct kvx_stat {
	__u64 packets;
	__u64 bytes;
};

#endif /* KVMXDP_ABI_H */
