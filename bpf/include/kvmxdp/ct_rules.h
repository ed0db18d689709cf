/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * kvmxdp conntrack rules: the decisions over the ABI's tables that the
 * datapath (bpf/lib/ct.h) and the loader (loader/control/gc.cpp and
 * conntrack.cpp, loader/model/: timeouts, quota, config parsing) must take
 * identically, written once.  The flow the
 * datapath's reclaim deletes as expired is the flow the daemon's GC deletes
 * and `conntrack list` shows as expired; the kvx_gflows counter the datapath
 * bumps is the one the GC recounts.
 *
 * C, static inline, nothing but linux/types.h and abi.h (no libc, no BPF
 * helpers): the same text compiles for --target=bpf and in C++.  Always
 * inlined, as the datapath's own helpers are: a BPF-to-BPF call would change
 * the programs the verifier sees.
 */
#ifndef KVMXDP_CT_RULES_H
#define KVMXDP_CT_RULES_H

#include <linux/types.h>

#include "abi.h"

#define KVX_RULE static inline __attribute__((always_inline))

/*
 * IP protocol numbers (IANA).  <linux/in.h>'s IPPROTO_* cannot be used
 * here: C++ gets them from glibc's <netinet/in.h>, which clashes with it.
 * bpf/lib/ct.h and loader/kernel/abi_check.hpp check them against the system's.
 */
#define KVX_IPPROTO_ICMP 1
#define KVX_IPPROTO_TCP 6
#define KVX_IPPROTO_UDP 17
#define KVX_IPPROTO_ICMPV6 58 /* as bpf/lib/proto.h (an identical definition) */

/* ntohl without libc or bpf_endian.h; bpf_ntohl compiles to the same. */
KVX_RULE __u32 kvx_ntohl(__be32 x)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return __builtin_bswap32(x);
#else
	return x;
#endif
}

/*
 * Flow timeouts when attach has no --timeouts, in seconds: netfilter's
 * defaults (nf_conntrack_proto_tcp.c tcp_timeouts[], nf_conntrack_proto_udp.c
 * udp_timeouts[], nf_conntrack_proto_generic.c), except where the NAT RFCs
 * ask for more.  A TCP flow in a transitory state (opening or closing)
 * lives 4 minutes: RFC 5382 REQ-5, "The value of the 'transitory connection
 * idle-timeout' MUST NOT be less than 4 minutes", and RFC 7857 section 2.2,
 * after a RST "the NAT SHOULD wait for 4 minutes before deleting the
 * session" (netfilter: SYN_SENT and TIME_WAIT 120 s, CLOSE 10 s).  A port
 * held by a closed flow is not lost meanwhile: a new SYN reuses it once
 * quiet (ct.h bind_recycle).  The one exception, as RFC 7857 section 2.1
 * allows ("a NAT MAY allow the configured timeout to be less than 4
 * minutes"): a flow opened from outside keeps netfilter's 60 s until its
 * handshake completes, whatever state a RST or FIN moved it to
 * (kvx_ct_timeout_s), or spoofed SYNs would pin entries for 4 minutes.  An
 * ICMP query mapping 60 s (RFC 5508 REQ-2).
 */
KVX_RULE void kvx_timeouts_default(struct kvx_timeouts *t)
{
	t->tcp_syn_sent = 240;
	t->tcp_established = 432000; /* 5 days */
	t->tcp_fin_wait = 240;
	t->tcp_time_wait = 240;
	t->tcp_close = 240;
	t->udp = 30;         /* no reply seen */
	t->udp_stream = 120; /* reply seen */
	t->icmp = 60;
	t->other = 600;
	t->tcp_syn_recv = 60;
}

/* Seconds a flow may stay idle, from its state, flags and protocol. */
KVX_RULE __u32 kvx_ct_state_timeout_s(const struct kvx_ct_val *f, __u8 proto,
				      const struct kvx_timeouts *t)
{
	switch (f->state) {
	case KVX_CT_SYN_SENT:
		return t->tcp_syn_sent;
	case KVX_CT_ESTABLISHED:
		return t->tcp_established;
	case KVX_CT_FIN_WAIT:
		return t->tcp_fin_wait;
	case KVX_CT_TIME_WAIT:
		return t->tcp_time_wait;
	case KVX_CT_CLOSE:
		return t->tcp_close;
	case KVX_CT_SYN_RECV:
		return t->tcp_syn_recv;
	case KVX_CT_UDP:
		if (proto == KVX_IPPROTO_UDP)
			return (f->flags & KVX_CT_F_SEEN_REPLY) ? t->udp_stream : t->udp;
		return proto == KVX_IPPROTO_ICMP || proto == KVX_IPPROTO_ICMPV6 ? t->icmp : t->other;
	default:
		/* NONE or an unknown state (a newer datapath?): the shortest
		 * TCP timeout would kill live flows, "other" is the cautious
		 * choice for non-TCP; a TCP flow without a state is a
		 * half-created one. */
		return proto == KVX_IPPROTO_TCP ? t->tcp_syn_sent : t->other;
	}
}

/* The state's timeout, at most tcp_syn_recv for a TCP flow opened from
 * outside whose handshake never completed (abi.h KVX_CT_F_HALFOPEN): a
 * LAN host's SYN and RST (or FIN) must not buy a flow the 4 minutes of a
 * closed connection.  And at most tcp_syn_sent for an ESTABLISHED TCP flow
 * nothing has come back on: one a guest's bare ACK picked up mid-stream
 * (ct.h tcp_may_open) that the remote never answered (netfilter caps such
 * a pick-up at its 300 s "unacknowledged" timeout), or one ACK per remote
 * would hold an entry of the guest's quota for 5 days. */
KVX_RULE __u32 kvx_ct_timeout_s(const struct kvx_ct_val *f, __u8 proto,
				const struct kvx_timeouts *t)
{
	__u32 s = kvx_ct_state_timeout_s(f, proto, t);

	if ((f->flags & KVX_CT_F_HALFOPEN) && proto == KVX_IPPROTO_TCP && s > t->tcp_syn_recv)
		return t->tcp_syn_recv;
	if (proto == KVX_IPPROTO_TCP && f->state == KVX_CT_ESTABLISHED &&
	    !(f->flags & KVX_CT_F_SEEN_REPLY) && s > t->tcp_syn_sent)
		return t->tcp_syn_sent;
	return s;
}

/*
 * Expired once last_seen_ns + timeout lies strictly in the past (both
 * CLOCK_BOOTTIME): a flow is live for its whole timeout, and one touched
 * after `now_ns` was read is live.
 */
KVX_RULE int kvx_ct_expired(const struct kvx_ct_val *f, __u8 proto,
			    const struct kvx_timeouts *t, __u64 now_ns)
{
	return f->last_seen_ns + (__u64)kvx_ct_timeout_s(f, proto, t) * 1000000000ULL < now_ns;
}

/*
 * A live flow that may give way before its timeout (the datapath's reclaim
 * at a quota or a full table, bpf/lib/ct.h ct_closed_evictable; the daemon's
 * relief, control/gc.cpp): TCP quiet for KVX_TW_RECYCLE_NS (the last ACK
 * and a retransmitted FIN are through) and closed, TIME_WAIT or CLOSE (1),
 * or opened from outside with its handshake not completed in that time
 * (2: a SYN flood's; it goes only to its guest's inbound count or a full
 * table).  0: it stays.
 */
#define KVX_QUIET_CLOSED 1
#define KVX_QUIET_HALFOPEN 2
KVX_RULE int kvx_ct_quiet(const struct kvx_ct_val *f, __u8 proto, __u64 now_ns)
{
	if (proto != KVX_IPPROTO_TCP || f->last_seen_ns + KVX_TW_RECYCLE_NS > now_ns)
		return 0;
	if (f->state == KVX_CT_TIME_WAIT || f->state == KVX_CT_CLOSE)
		return KVX_QUIET_CLOSED;
	if ((f->flags & KVX_CT_F_INBOUND) &&
	    (f->state == KVX_CT_SYN_RECV || (f->flags & KVX_CT_F_HALFOPEN)))
		return KVX_QUIET_HALFOPEN;
	return 0;
}

/*
 * A guest's quota slot in kvx_gflows (abi.h): a keyed hash of the MAC that
 * owns the flow's guest address (owner_mac: kvx_guest's entry), or of the
 * address itself when it has no owner (owner_mac NULL).  The two inputs
 * never coincide: a MAC's second word has at most 16 bits, an address's
 * has bit 16 set.  The one place that says where a guest's flows count:
 * the datapath, the daemon's recount and every per-guest counter use it.
 * The mixing is jhash's final round (the kernel's jhash_3words).
 */
#define KVX_ROL32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

/* The keyed mix of a slot's two input words (a MAC's first four bytes and
 * last two, or an address and 1 << 16). */
KVX_RULE __u32 kvx_slot_mix(__u32 a, __u32 b, __u32 seed)
{
	__u32 c;

	a += 0xdeadbeef + 8;
	b += 0xdeadbeef + 8;
	c = 0xdeadbeef + 8 + seed;
	c ^= b; c -= KVX_ROL32(b, 14);
	a ^= c; a -= KVX_ROL32(c, 11);
	b ^= a; b -= KVX_ROL32(a, 25);
	c ^= b; c -= KVX_ROL32(b, 16);
	a ^= c; a -= KVX_ROL32(c, 4);
	b ^= a; b -= KVX_ROL32(a, 14);
	c ^= b; c -= KVX_ROL32(b, 24);
	return c & (KVX_GFLOWS_MAX - 1);
}

KVX_RULE __u32 kvx_guest_slot(const __u8 *owner_mac, __be32 addr, __u32 seed)
{
	__u32 a, b;

	if (owner_mac) {
		a = (__u32)owner_mac[0] << 24 | (__u32)owner_mac[1] << 16 |
		    (__u32)owner_mac[2] << 8 | owner_mac[3];
		b = (__u32)owner_mac[4] << 8 | owner_mac[5];
	} else {
		a = kvx_ntohl(addr);
		b = 1U << 16;
	}
	return kvx_slot_mix(a, b, seed);
}

#undef KVX_ROL32

/*
 * The slot of an IPv6 guest: its owner's MAC gives the same slot as its
 * IPv4 flows (one quota per guest, both families); an address without an
 * owner chains the keyed hash over its four words, each keyed by the seed
 * and the words before it (a plain fold would let a guest pick addresses
 * that land in another's slot).
 */
KVX_RULE __u32 kvx_guest_slot6(const __u8 *owner_mac, const __be32 *addr, __u32 seed)
{
	__u32 s = 0;
	int i;

	if (owner_mac)
		return kvx_guest_slot(owner_mac, 0, seed);
	for (i = 0; i < 4; i++)
		s = kvx_guest_slot((const __u8 *)0, addr[i], seed ^ s);
	return s;
}

/*
 * A flow's record of the slot it was counted in (abi.h kvx_ct_val.slot):
 * the slot in the low 16 bits, the tag of the guest_seed it was computed
 * under in the high 16 (never 0: a zero record is none).  An attach that
 * resumes the pinned tables keeps the running seed; one that draws a new
 * seed (a first attach, a replaced kvx_cfg) has new slots: a record of
 * another seed reads as none, and the flow is found from its guest, as
 * the attach's recount found it.
 */
#define KVX_CT_NO_SLOT 0xffffffffU

KVX_RULE __u32 kvx_ct_slot_tag(__u32 seed)
{
	/* Multiplied: seeds that differ in any bit rarely share a tag (a
	 * fold of the two halves gives every seed with equal halves one). */
	__u32 t = (seed * 0x9e3779b1U) >> 16;

	return t ? t : 1;
}

KVX_RULE __u32 kvx_ct_slot_rec(__u32 slot, __u32 seed)
{
	return kvx_ct_slot_tag(seed) << 16 | (slot & 0xffff);
}

/* The slot record rec names under seed, else KVX_CT_NO_SLOT. */
KVX_RULE __u32 kvx_ct_slot_read(__u32 rec, __u32 seed)
{
	return rec >> 16 == kvx_ct_slot_tag(seed) ? (rec & 0xffff) : KVX_CT_NO_SLOT;
}

/*
 * A guest's quota slot (abi.h kvx_gflows, kvx_brport; ct.h mac_slot): that
 * of the bridge port the guest's MAC is on, the keyed hash of a pseudo-MAC no guest owns (group
 * bit set: the datapath never binds an address to a group MAC) made of
 * the port's ifindex; port 0, MACs whose port is not known yet, share one.
 */
KVX_RULE __u32 kvx_port_slot(__u32 port_ifindex, __u32 seed)
{
	/* The words kvx_guest_slot reads from 03:00:p3:p2:p1:p0, without
	 * the bytes on the stack (the IPv6 programs' frames are full). */
	return kvx_slot_mix(0x03000000U | (port_ifindex >> 16), port_ifindex & 0xffff, seed);
}

/*
 * A port range lo..hi (host order, inclusive) holds a port: 1 <= lo <= hi
 * (port 0 is no port).  The loader accepts no other NAT range; the
 * datapath finds none in a kvx_cfg not written yet (0..0) and allocates
 * nothing from it.  A macro: as an inline function it gave the datapath's
 * bind_create other registers and stack slots for the same instructions.
 */
#define KVX_PORT_RANGE_OK(lo, hi) ((lo) != 0 && (lo) <= (hi))

/*
 * The NAT pool: the ports lo..hi (host order) minus the hole
 * skip_lo..skip_hi (kvx_cfg.nat_skip_*; no hole unless
 * KVX_PORT_RANGE_OK(skip_lo, skip_hi) and lo < skip_lo <= skip_hi < hi).
 * The datapath draws an index 0..size-1 and maps it to a port, so the
 * hole costs no probe.  The loader only writes holes strictly inside the
 * range; anything else is treated as no hole.
 */
KVX_RULE __u32 kvx_nat_hole(__u32 lo, __u32 hi, __u32 skip_lo, __u32 skip_hi)
{
	if (!KVX_PORT_RANGE_OK(skip_lo, skip_hi) || skip_lo <= lo || skip_hi >= hi)
		return 0;
	return skip_hi - skip_lo + 1;
}

/* Ports in the pool (0 when lo..hi is no range). */
KVX_RULE __u32 kvx_nat_pool_size(__u32 lo, __u32 hi, __u32 skip_lo, __u32 skip_hi)
{
	if (!KVX_PORT_RANGE_OK(lo, hi))
		return 0;
	return hi - lo + 1 - kvx_nat_hole(lo, hi, skip_lo, skip_hi);
}

/* The port at index i (i < the pool's size). */
KVX_RULE __u32 kvx_nat_pool_port(__u32 lo, __u32 hi, __u32 skip_lo, __u32 skip_hi, __u32 i)
{
	__u32 hole = kvx_nat_hole(lo, hi, skip_lo, skip_hi);

	return hole && lo + i >= skip_lo ? lo + i + hole : lo + i;
}

/* Is port (host order) in the pool? */
KVX_RULE int kvx_nat_pool_has(__u32 lo, __u32 hi, __u32 skip_lo, __u32 skip_hi, __u32 port)
{
	if (!KVX_PORT_RANGE_OK(lo, hi) || port < lo || port > hi)
		return 0;
	return !(kvx_nat_hole(lo, hi, skip_lo, skip_hi) && port >= skip_lo && port <= skip_hi);
}

/*
 * A remote endpoint's two bits (of KVX_TW_GEN_BITS) in a generation of
 * kvx_bind_val.tw_remotes, the Bloom filter of the remotes that may still
 * hold a connection with the binding's external port in TIME_WAIT: those
 * whose FIN came before the guest's (RFC 9293: the side that closes first
 * waits 2 MSL).  Recycling never gives the port to a new connection
 * towards one of them (it could meet the old connection's TIME_WAIT and be
 * refused or taken for it, RFC 6191); a remote that closed second is in
 * CLOSED once the guest's last ACK is through, and may get the port again
 * at once.  The filter goes with the port from recycle to recycle, starts
 * empty when the port was free, and forgets a remote after one to two
 * epochs (abi.h KVX_TW_EPOCH_NS); a false positive only forgoes a recycle.
 * Arguments in network order.
 */
KVX_RULE __u32 kvx_tw_bits(__be32 rem_addr, __be16 rem_port)
{
	__u32 h = (rem_addr ^ ((__u32)rem_port * 0x9e3779b1U)) * 0x85ebca6bU;

	/* MurmurHash3's finalizer: without it the low bits keep the parity
	 * of the address's first octet, and an even modulus shows it. */
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return (1U << (h >> 16) % KVX_TW_GEN_BITS) | (1U << (h & 0xffff) % KVX_TW_GEN_BITS);
}

/* kvx_tw_bits of an IPv6 remote: its address folded to 32 bits (a
 * collision only forgoes a recycle, as a false positive does). */
KVX_RULE __u32 kvx_tw_bits6(const __be32 *rem_addr, __be16 rem_port)
{
	return kvx_tw_bits(rem_addr[0] ^ rem_addr[1] ^ rem_addr[2] ^ rem_addr[3], rem_port);
}

/* The epoch number (mod 8) tw_remotes keeps in bits 1..3. */
KVX_RULE __u32 kvx_tw_epoch(__u64 now_ns)
{
	return (__u32)(now_ns / KVX_TW_EPOCH_NS) & 7;
}

#define KVX_TW_GEN_MASK ((1U << KVX_TW_GEN_BITS) - 1)

/* How many epochs filter w is older than now_ns, 0..6.  7 reads as 0: the
 * datapath's clock is cached per CPU, and a CPU a tick behind the one that
 * wrote w at an epoch's start sees w one epoch in the future; taken as 7
 * epochs old, its remotes would be forgotten at once.  (Epochs 8 apart look
 * alike: an old filter then counts again, which only forgoes a recycle.) */
KVX_RULE __u32 kvx_tw_age(__u32 w, __u64 now_ns)
{
	__u32 d = (kvx_tw_epoch(now_ns) - ((w >> 1) & 7)) & 7;

	return d == 7 ? 0 : d;
}

/* The remotes of filter w that still count at now_ns: both generations in
 * w's own epoch, the newer one in the next, none after that. */
KVX_RULE __u32 kvx_tw_live(__u32 w, __u64 now_ns)
{
	__u32 d = kvx_tw_age(w, now_ns);

	if (d == 0)
		return (w >> 18) | ((w >> 4) & KVX_TW_GEN_MASK);
	return d == 1 ? w >> 18 : 0;
}

/* Is the remote with these kvx_tw_bits in filter w at now_ns? */
KVX_RULE int kvx_tw_has(__u32 w, __u32 bits, __u64 now_ns)
{
	return (kvx_tw_live(w, now_ns) & bits) == bits;
}

/* The TSval of the guest's FIN in flow f (abi.h kvx_ct_tcp.fin_ts, its two
 * halves); valid with KVX_CT_TCP_F_TS on the guest's side. */
KVX_RULE __u32 kvx_ct_fin_ts(const struct kvx_ct_val *f)
{
	return (__u32)f->tcp[KVX_CT_SIDE_REMOTE].fin_ts << 16 | f->tcp[KVX_CT_SIDE_GUEST].fin_ts;
}

KVX_RULE void kvx_ct_fin_ts_set(struct kvx_ct_val *f, __u32 ts)
{
	f->tcp[KVX_CT_SIDE_GUEST].fin_ts = (__u16)ts;
	f->tcp[KVX_CT_SIDE_REMOTE].fin_ts = (__u16)(ts >> 16);
	f->tcp[KVX_CT_SIDE_GUEST].flags |= KVX_CT_TCP_F_TS;
}

/*
 * May a SYN from another guest endpoint open a connection on the 4-tuple
 * of flow f, whose remote may hold it in TIME_WAIT?  Only if every common
 * stack's TIME_WAIT takes it as a new connection: its sequence number past
 * the old connection's end (RFC 1122 4.2.2.13: the BSD stacks decide by
 * that alone, dropping any other SYN until their TIME_WAIT ends), and, when
 * the guest's FIN carried a timestamp and the SYN carries one, a timestamp
 * not older than the FIN's (RFC 6191; Linux refuses an older one whatever
 * the sequence number, PAWS, RFC 7323 section 5).  The guests behind one
 * address run their timestamp clocks from unrelated offsets: by the
 * sequence number alone, about half of the ports recycled from one guest's
 * connection to another's were refused by a Linux remote (the new
 * connection's SYN retransmitted a second later).  A FIN timestamp of 0
 * counts as none, as Linux's ts_recent of 0 does; FINs with different
 * timestamps leave it unknown, and a SYN with one is refused.  syn_ts_ok:
 * the SYN carries the option, with TSval syn_ts.
 */
KVX_RULE int kvx_tw_syn_ok(const struct kvx_ct_val *f, __u32 syn_seq, int syn_ts_ok, __u32 syn_ts)
{
	const struct kvx_ct_tcp *g = &f->tcp[KVX_CT_SIDE_GUEST];
	__u32 ts = kvx_ct_fin_ts(f);

	if ((__s32)(syn_seq - g->end) <= 0)
		return 0;
	/* The guest's FINs carried different timestamps (one retransmitted
	 * later, newer): the remote took one that is not kept, and may refuse
	 * a SYN's by PAWS. */
	if (syn_ts_ok && ts &&
	    (g->flags & (KVX_CT_TCP_F_FIN_TAKEN | KVX_CT_TCP_F_TS)) == KVX_CT_TCP_F_FIN_TAKEN)
		return 0;
	return !(syn_ts_ok && (g->flags & KVX_CT_TCP_F_TS) && ts && (__s32)(syn_ts - ts) < 0);
}

/* Filter w with the remote of these bits added at now_ns: an older epoch's
 * generation moves down, or goes.  An empty filter takes now's epoch: its
 * epoch bits (0) are no epoch of its own, and read in epoch 7 as "a tick
 * ahead" (kvx_tw_age) they would date the remote one epoch late. */
KVX_RULE __u32 kvx_tw_add(__u32 w, __u32 bits, __u64 now_ns)
{
	__u32 d = kvx_tw_age(w, now_ns),
	      e = d || !(w >> 4) ? kvx_tw_epoch(now_ns) : (w >> 1) & 7;
	__u32 cur = w >> 18, prev = (w >> 4) & KVX_TW_GEN_MASK;

	if (d == 1) {
		prev = cur;
		cur = 0;
	} else if (d) {
		prev = 0;
		cur = 0;
	}
	cur |= bits & KVX_TW_GEN_MASK;
	return cur << 18 | prev << 4 | e << 1;
}

#undef KVX_RULE

#endif /* KVMXDP_CT_RULES_H */
