/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Conntrack: NAT bindings (endpoint-independent mappings, RFC 4787 REQ-1)
 * and per-flow entries (filtering, TCP state, timeouts).  See abi.h for the
 * pair-ordering invariant ("OUT half exists => IN half exists").
 */
#ifndef KVX_CT_H
#define KVX_CT_H

#include <linux/errno.h>
#include "kvmxdp/ct_rules.h"
#include "maps.h"
#include "parse.h"

/* The shared rules name the protocols without <linux/in.h> (ct_rules.h). */
_Static_assert(KVX_IPPROTO_ICMP == IPPROTO_ICMP && KVX_IPPROTO_TCP == IPPROTO_TCP &&
		       KVX_IPPROTO_UDP == IPPROTO_UDP,
	       "IANA protocol numbers");

/* How many external ports one new binding may probe before giving up. */
#define KVX_PORT_TRIES 64

/* Layout of the MAC pair the paths pass around: the guest's (source) MAC at
 * 0, the gateway MAC it used at 8.  8-byte slots keep word loads of them
 * aligned, which the verifier insists on for the stack. */
#define KVX_GW_MAC_OFF 8

/* Returned by the lookups below when the packet may be translated. */
#define KVX_CONTINUE KVX_R_MAX

enum ct_dir {
	CT_DIR_OUT, /* guest -> remote */
	CT_DIR_IN,  /* remote -> guest */
};

struct nat_endpoint {
	/* 8-byte slots for the 6-byte MACs: word loads of stack memory must
	 * be aligned for the verifier. */
	__u8 guest_mac[8]; /* inbound only: where to deliver */
	__u8 gw_mac[8];
	__be32 addr;
	__be16 port;
	__u8 flags;        /* KVX_CT_F_STATIC / KVX_CT_F_ONE_TO_ONE for the flow */
};

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline int mac_is_zero(const __u8 *a)
{
	return !*(const __u32 *)a && !*(const __u16 *)(a + 4);
}

static __always_inline int proto_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP;
}

/* Does the host itself speak proto (one without ports) with remote: one of
 * its tunnels (abi.h kvx_hosttun)?  Address-only NAT must leave those
 * pairs to the host. */
static __always_inline int host_tunnel_peer(__u8 proto, __be32 remote)
{
	struct kvx_hosttun_key k;

	__builtin_memset(&k, 0, sizeof(k));
	k.proto = proto;
	k.remote = remote;
	if (bpf_map_lookup_elem(&kvx_hosttun, &k))
		return 1;
	k.remote = 0;
	return bpf_map_lookup_elem(&kvx_hosttun, &k) != NULL;
}

/* The flow key, from the guest's point of view in internal addresses.
 * ICMP echo: the identifier is rewritten, so only the guest side keeps it. */
static __always_inline void ct_key_init(struct kvx_ct_key *k, __u8 proto, __be32 int_addr,
					__be16 int_port, __be32 rem_addr, __be16 rem_port)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->proto = proto;
	k->int_addr = int_addr;
	k->int_port = int_port;
	k->rem_addr = rem_addr;
	k->rem_port = proto == IPPROTO_ICMP ? 0 : rem_port;
}

static __always_inline void bind_key_init(struct kvx_bind_key *k, __u8 dir, __u8 proto,
					  __be32 addr, __be16 port)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->dir = dir;
	k->proto = proto;
	k->addr = addr;
	k->port = port;
}

static __always_inline __u8 ct_initial_tcp_state(__u8 tcp_flags)
{
	if (tcp_flags & KVX_TCP_RST)
		return KVX_CT_CLOSE;
	if ((tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK)) == KVX_TCP_SYN)
		return KVX_CT_SYN_SENT;
	/* Mid-stream pick-up (e.g. after a flush), like netfilter's
	 * nf_conntrack_tcp_loose=1. */
	return KVX_CT_ESTABLISHED;
}

/* Account one packet of an existing flow: last-seen time, counters, TCP
 * state (a netfilter-like subset: SYN_SENT -> ESTABLISHED on the first
 * reply, FIN_WAIT/TIME_WAIT from FINs, CLOSE on RST). */
static __always_inline void ct_update(struct kvx_ct_val *f, const struct kvx_pkt *p,
				      enum ct_dir dir, __u64 now)
{
	__u8 flags = f->flags, state = f->state;
	int reply = (dir == CT_DIR_IN) != !!(flags & KVX_CT_F_INBOUND);

	f->last_seen_ns = now;
	if (dir == CT_DIR_OUT)
		f->pkts_out++;
	else
		f->pkts_in++;
	if (reply)
		flags |= KVX_CT_F_SEEN_REPLY;

	if (p->proto == IPPROTO_TCP) {
		__u8 tf = p->tcp_flags;

		if (tf & KVX_TCP_RST) {
			state = KVX_CT_CLOSE;
		} else if ((tf & (KVX_TCP_SYN | KVX_TCP_ACK)) == KVX_TCP_SYN) {
			/* A new connection reusing the tuple of a closed one. */
			if (!reply && (state == KVX_CT_CLOSE || state == KVX_CT_TIME_WAIT)) {
				state = KVX_CT_SYN_SENT;
				flags &= ~(KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN | KVX_CT_F_SEEN_REPLY);
			}
		} else {
			if (tf & KVX_TCP_FIN)
				flags |= dir == CT_DIR_OUT ? KVX_CT_F_FIN_OUT : KVX_CT_F_FIN_IN;
			if ((flags & (KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN)) ==
			    (KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN))
				state = KVX_CT_TIME_WAIT;
			else if (flags & (KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN))
				state = KVX_CT_FIN_WAIT;
			else if (state == KVX_CT_SYN_SENT && reply)
				state = KVX_CT_ESTABLISHED;
			/* The guest's TCP goes on after a RST: it found the RST's
			 * sequence number out of its window (RFC 5961; an
			 * off-path RST from the LAN), which we do not track.
			 * Closing the flow would let it expire in 10 s under a
			 * live connection.  After a RST it accepted, the guest
			 * sends nothing more on the tuple (a RST at most). */
			else if (state == KVX_CT_CLOSE && dir == CT_DIR_OUT &&
				 (flags & KVX_CT_F_SEEN_REPLY))
				state = KVX_CT_ESTABLISHED;
		}
	}
	/* Write only what changed: the value's cache line is shared by CPUs. */
	if (flags != f->flags)
		f->flags = flags;
	if (state != f->state)
		f->state = state;
}

/* The guest's flow counter (abi.h kvx_gflows). */
static __always_inline __u32 *gflows_of(const struct kvx_cfg *cfg, __be32 guest)
{
	__u32 idx = kvx_gflows_index(guest, cfg->subnet_mask);

	return bpf_map_lookup_elem(&kvx_gflows, &idx);
}

/*
 * Opportunistic reclaim: with the daemon stopped nothing else expires flows,
 * and a table full of dead entries would refuse every new flow.  When an
 * insert finds kvx_ct full (or a guest at its quota), one pass walks up to
 * KVX_RECLAIM_BUDGET flows with bpf_for_each_map_elem (5.13+; no bpf_loop,
 * which 5.15 lacks) and deletes the expired ones, by the GC's own rule (kvmxdp/ct_rules.h): a
 * live flow is never touched, and bindings are left to the GC's expiry
 * (which knows every flow that references them).
 *
 * A hash map is always walked from its first bucket, so each pass first
 * skips the entries the previous passes examined (kvx_reclaim_cursor): a
 * live prefix does not hide the expired entries behind it.  Skipping costs
 * one callback per entry; a pass that freed nothing holds further passes
 * off for KVX_RECLAIM_HOLDOFF_NS, so a table full of live flows under a
 * flood costs at most one pass per hold-off, machine-wide.  Both globals
 * live in .bss (not pinned) and are shared by all CPUs without atomics: a
 * lost update only moves the window.
 */
#define KVX_RECLAIM_BUDGET 1024
#define KVX_RECLAIM_HOLDOFF_NS (100ULL * 1000 * 1000)

__u32 kvx_reclaim_cursor;
__u64 kvx_reclaim_holdoff;

struct ct_reclaim_ctx {
	__u64 now;
	__u32 skip;  /* entries the earlier passes examined */
	__u32 seen;  /* entries visited in this pass */
	__u32 freed;
	__u32 more;  /* stopped at the budget: the table goes on */
};

static long ct_reclaim_cb(void *map, struct kvx_ct_key *k, struct kvx_ct_val *f,
			  struct ct_reclaim_ctx *c)
{
	const struct kvx_cfg *cfg;
	__u32 *n;

	if (c->seen++ < c->skip)
		return 0;
	if (c->seen - c->skip > KVX_RECLAIM_BUDGET) {
		c->more = 1;
		return 1;
	}
	cfg = cfg_get();
	if (!cfg)
		return 1;
	if (!kvx_ct_expired(f, k->proto, &cfg->timeouts, c->now))
		return 0;
	if (bpf_map_delete_elem(&kvx_ct, k))
		return 0; /* someone else deleted it */
	c->freed++;
	n = gflows_of(cfg, k->int_addr);
	if (n)
		__sync_fetch_and_add(n, -1);
	return 0;
}

/* One reclaim pass; returns the number of flows freed.  A global function:
 * the verifier checks it (and its callback) once, not once per call site
 * and caller state, and its frame stays off the main path's stack. */
__noinline int ct_reclaim(__u64 now)
{
	struct ct_reclaim_ctx c = {};

	if (now < kvx_reclaim_holdoff)
		return 0;
	c.now = now;
	c.skip = kvx_reclaim_cursor;
	bpf_for_each_map_elem(&kvx_ct, ct_reclaim_cb, &c, 0);
	if (c.skip && c.seen <= c.skip) {
		/* The table shrank below the cursor: wrap around now rather
		 * than fail this insert. */
		c.skip = 0;
		c.seen = 0;
		bpf_for_each_map_elem(&kvx_ct, ct_reclaim_cb, &c, 0);
	}
	/* Entries freed in the window moved the rest of the walk forward. */
	kvx_reclaim_cursor = c.more ? c.skip + KVX_RECLAIM_BUDGET - c.freed : 0;
	if (!c.freed && c.seen > c.skip)
		kvx_reclaim_holdoff = now + KVX_RECLAIM_HOLDOFF_NS;
	return c.freed;
}

/*
 * Per-guest flow quota (kvx_cfg.flow_quota): one guest's flood of new flows
 * cannot take the whole table from the others.  Checked before anything is
 * created for a new flow (no binding either); flows that exist are never
 * affected.  Approximate under races between CPUs (by a few flows).
 */
static __always_inline int ct_quota_check(const struct kvx_cfg *cfg, __be32 guest, __u64 now)
{
	__u32 q = cfg->flow_quota;
	__u32 *n;

	if (!q)
		return KVX_CONTINUE;
	n = gflows_of(cfg, guest);
	if (!n || (__s32)*n < (__s32)q)
		return KVX_CONTINUE;
	/* The guest's own flows may be dead with no daemon to expire them. */
	if (ct_reclaim(now) && (__s32)*n < (__s32)q)
		return KVX_CONTINUE;
	return KVX_R_DROP_GUEST_QUOTA;
}

/* Not inlined: its retry and counting paths would multiply with every path
 * into its two callers (verifier work). */
static __noinline int ct_create(const struct kvx_ct_key *k, const struct kvx_pkt *p,
				enum ct_dir dir, const struct nat_endpoint *ext, __u64 now)
{
	const struct kvx_cfg *cfg;
	__u32 *n;
	struct kvx_ct_val v = {};
	struct kvx_ct_val *f;
	int err;

	v.created_ns = now;
	v.last_seen_ns = now;
	v.ext_addr = ext->addr;
	v.ext_port = ext->port;
	v.flags = ext->flags;
	v.state = p->proto == IPPROTO_TCP ? ct_initial_tcp_state(p->tcp_flags) : KVX_CT_UDP;
	if (dir == CT_DIR_OUT) {
		v.pkts_out = 1;
	} else {
		v.flags |= KVX_CT_F_INBOUND;
		v.pkts_in = 1;
	}
	err = bpf_map_update_elem(&kvx_ct, k, &v, BPF_NOEXIST);
	/* Full (-E2BIG): make room from expired flows, then try once more. */
	if (err == -E2BIG && ct_reclaim(now) > 0)
		err = bpf_map_update_elem(&kvx_ct, k, &v, BPF_NOEXIST);
	if (!err) {
		cfg = cfg_get();
		n = cfg ? gflows_of(cfg, k->int_addr) : NULL;
		if (n)
			__sync_fetch_and_add(n, 1);
		return KVX_CONTINUE;
	}
	if (err != -EEXIST)
		return KVX_R_DROP_TABLE_FULL;
	/* Another CPU created it first. */
	f = bpf_map_lookup_elem(&kvx_ct, k);
	if (!f)
		return KVX_R_DROP_TABLE_FULL;
	ct_update(f, p, dir, now);
	return KVX_CONTINUE;
}

/*
 * Claim a new external endpoint for the guest endpoint (proto, saddr,
 * sport): the IN half first with BPF_NOEXIST (the atomic claim), then the
 * OUT half.  The guest's own port is kept when it lies in the NAT range and
 * is free (RFC 4787 REQ-3 "port preservation" where possible).
 */
static __noinline int bind_create(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				  const __u8 *macs, __u64 now, struct nat_endpoint *ext)
{
	/* Not inlined: its probe loop is verified once per caller context
	 * instead of once per path into it. */
	struct kvx_bind_key ik, ok;
	struct kvx_bind_val iv = {};
	struct kvx_bind_val *won;
	__u32 lo = cfg->nat_port_lo, hi = cfg->nat_port_hi;
	__u32 range, start, want, i;
	int err;

	ext->flags = 0;
	iv.addr = p->saddr;
	iv.port = p->sport;
	iv.last_used_ns = now;
	__builtin_memcpy(iv.guest_mac, macs, 6);
	__builtin_memcpy(iv.gw_mac, macs + KVX_GW_MAC_OFF, 6);
	bind_key_init(&ik, KVX_BIND_IN, p->proto, cfg->uplink_addr, 0);

	if (!proto_has_ports(p->proto)) {
		/* Address-only: one guest per protocol at a time. */
		err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
		if (err)
			return err == -EEXIST ? KVX_R_DROP_PORTS_EXHAUSTED : KVX_R_DROP_TABLE_FULL;
		goto claimed;
	}

	if (!KVX_PORT_RANGE_OK(lo, hi))
		return KVX_R_DROP_PORTS_EXHAUSTED;
	range = hi - lo + 1;
	want = bpf_ntohs(p->sport);
	start = (want >= lo && want <= hi) ? want - lo : bpf_get_prandom_u32() % range;
	/*
	 * First the guest's own port, then: a small range is scanned whole
	 * (a free port is always found); a large one is probed at random
	 * points.  Linear probing from a random start would land inside the
	 * runs of used ports that sequential allocation leaves, and give up
	 * with most of the range free.
	 */
	err = -EEXIST;
	for (i = 0; i < KVX_PORT_TRIES && i < range; i++) {
		__u32 off = (i == 0 || range <= KVX_PORT_TRIES) ? (start + i) % range :
								   bpf_get_prandom_u32() % range;

		ik.port = bpf_htons(lo + off);
		err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
		if (err != -EEXIST)
			break;
	}
	if (err)
		return err == -EEXIST ? KVX_R_DROP_PORTS_EXHAUSTED : KVX_R_DROP_TABLE_FULL;

claimed:
	/* The OUT half's value reuses iv's stack slot: this frame is on the
	 * deepest call chain of the bridge program (512 bytes in all). */
	bind_key_init(&ok, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	__builtin_memset(&iv, 0, sizeof(iv));
	iv.addr = ik.addr;
	iv.port = ik.port;
	iv.last_used_ns = now;
	err = bpf_map_update_elem(&kvx_bind, &ok, &iv, BPF_NOEXIST);
	if (err) {
		bpf_map_delete_elem(&kvx_bind, &ik);
		if (err != -EEXIST)
			return KVX_R_DROP_TABLE_FULL;
		/* Another CPU bound this guest endpoint first: use its binding. */
		won = bpf_map_lookup_elem(&kvx_bind, &ok);
		if (!won)
			return KVX_R_DROP_BROKEN_PAIR;
		ext->addr = won->addr;
		ext->port = won->port;
		return KVX_CONTINUE;
	}
	ext->addr = ik.addr;
	ext->port = ik.port;
	return KVX_CONTINUE;
}

/* The IN half at (proto, ext) if it delivers to the guest endpoint of p. */
static __always_inline struct kvx_bind_val *bind_in_lookup_own(const struct kvx_pkt *p,
							       __be32 ext_addr, __be16 ext_port)
{
	struct kvx_bind_key ik;
	struct kvx_bind_val *ib;

	bind_key_init(&ik, KVX_BIND_IN, p->proto, ext_addr, ext_port);
	ib = bpf_map_lookup_elem(&kvx_bind, &ik);
	if (ib && ib->addr == p->saddr && ib->port == p->sport)
		return ib;
	return NULL;
}

/* The IN half of the 1:1 mapping of ext_addr if it belongs to p's source. */
static __always_inline struct kvx_bind_val *bind_1to1_lookup_own(const struct kvx_pkt *p,
								 __be32 ext_addr)
{
	struct kvx_bind_key ik;
	struct kvx_bind_val *ib;

	bind_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, ext_addr, 0);
	ib = bpf_map_lookup_elem(&kvx_bind, &ik);
	if (ib && ib->addr == p->saddr && (ib->flags & KVX_BIND_F_ONE_TO_ONE))
		return ib;
	return NULL;
}

static __always_inline void bind_in_refresh(struct kvx_bind_val *ib, const __u8 *guest_mac,
					    const __u8 *gw_mac)
{
	/* Static mappings learn the guest's MAC from its first packet; a
	 * re-created VM may come back with the same address, another MAC. */
	if (!mac_eq(ib->guest_mac, guest_mac))
		__builtin_memcpy(ib->guest_mac, guest_mac, 6);
	if (!mac_eq(ib->gw_mac, gw_mac))
		__builtin_memcpy(ib->gw_mac, gw_mac, 6);
}

static __always_inline int extaddr_suspended(__be32 addr)
{
	struct kvx_extaddr_val *ea = bpf_map_lookup_elem(&kvx_extaddr, &addr);

	return ea && (ea->flags & KVX_EXT_F_SUSPENDED);
}

/*
 * A guest with a 1:1 mapping sends everything from its external address,
 * ports unchanged ("bridge by iptables": SNAT --to EXT).  Returns
 * KVX_CONTINUE with ext filled, KVX_R_MAX + 1 when there is no usable 1:1
 * mapping, or a drop reason.
 */
#define KVX_NO_MAPPING (KVX_R_MAX + 1)
static __always_inline int bind_get_1to1(const struct kvx_pkt *p, const __u8 *guest_mac,
					 const __u8 *gw_mac, struct nat_endpoint *ext)
{
	struct kvx_bind_key ok;
	struct kvx_bind_val *ob, *ib;

	bind_key_init(&ok, KVX_BIND_OUT, KVX_PROTO_ANY, p->saddr, 0);
	ob = bpf_map_lookup_elem(&kvx_bind, &ok);
	/* Suspended: the address is not ours on this network; masquerade.
	 * Only `map add` makes 1:1 pairs (flagged): anything else under the
	 * wildcard protocol is no mapping. */
	if (!ob || !(ob->flags & KVX_BIND_F_ONE_TO_ONE) || extaddr_suspended(ob->addr))
		return KVX_NO_MAPPING;
	ib = bind_1to1_lookup_own(p, ob->addr);
	if (!ib)
		return KVX_R_DROP_BROKEN_PAIR; /* being deleted right now */
	bind_in_refresh(ib, guest_mac, gw_mac);
	ext->addr = ob->addr;
	ext->port = p->sport;
	ext->flags = KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE;
	return KVX_CONTINUE;
}

/*
 * The guest endpoint's binding: a 1:1 mapping first, then a static or
 * dynamic binding, reused when it is on the current uplink address (or
 * static) and its IN half still points back to this guest; a missing IN
 * half is repaired; a stale or stolen dynamic pair is released and bound
 * anew.  Never translates through a pair whose halves disagree
 * (docs/pitfalls.md, lru-half-pairs).
 */
static __always_inline int bind_get(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				    const __u8 *macs, __u64 now, struct nat_endpoint *ext)
{
	const __u8 *guest_mac = macs, *gw_mac = macs + KVX_GW_MAC_OFF;
	struct kvx_bind_key ok, ik;
	struct kvx_bind_val *ob, *ib, iv = {};
	__be32 old_addr;
	__be16 old_port;
	int r;

	r = bind_get_1to1(p, guest_mac, gw_mac, ext);
	if (r != KVX_NO_MAPPING)
		return r;
	/* An echo reply only leaves through the flow of the request it answers. */
	if (p->proto == IPPROTO_ICMP && p->icmp_type != ICMP_ECHO)
		return KVX_R_DROP_ICMP_TYPE;

	bind_key_init(&ok, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	ob = bpf_map_lookup_elem(&kvx_bind, &ok);
	if (!ob)
		goto create;

	old_addr = ob->addr;
	old_port = ob->port;
	if (ob->flags & KVX_BIND_F_STATIC) {
		/* A port forward's guest endpoint leaves from its external one;
		 * static pairs are only ever changed by `map add/del`. */
		ib = bind_in_lookup_own(p, old_addr, old_port);
		if (!ib)
			return KVX_R_DROP_BROKEN_PAIR;
		bind_in_refresh(ib, guest_mac, gw_mac);
		ext->addr = old_addr;
		ext->port = old_port;
		ext->flags = KVX_CT_F_STATIC;
		return KVX_CONTINUE;
	}
	ext->flags = 0;
	if (old_addr == cfg->uplink_addr) {
		ib = bind_in_lookup_own(p, old_addr, old_port);
		if (ib) {
			bind_in_refresh(ib, guest_mac, gw_mac);
			ib->last_used_ns = now;
			ob->last_used_ns = now;
			ext->addr = old_addr;
			ext->port = old_port;
			return KVX_CONTINUE;
		}
		/* IN half missing: re-claim the same port if still free. */
		bind_key_init(&ik, KVX_BIND_IN, p->proto, old_addr, old_port);
		iv.addr = p->saddr;
		iv.port = p->sport;
		iv.last_used_ns = now;
		__builtin_memcpy(iv.guest_mac, guest_mac, 6);
		__builtin_memcpy(iv.gw_mac, gw_mac, 6);
		if (!bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST)) {
			ob->last_used_ns = now;
			ext->addr = old_addr;
			ext->port = old_port;
			return KVX_CONTINUE;
		}
	}

	/* Stale (old uplink address) or stolen: release OUT first, then our IN. */
	bpf_map_delete_elem(&kvx_bind, &ok);
	if (bind_in_lookup_own(p, old_addr, old_port)) {
		bind_key_init(&ik, KVX_BIND_IN, p->proto, old_addr, old_port);
		bpf_map_delete_elem(&kvx_bind, &ik);
	}
create:
	/* One call site: the verifier walks bind_create's probe loop once per
	 * call site. */
	return bind_create(cfg, p, macs, now, ext);
}

/* Is the flow's external endpoint still bound to this guest endpoint? */
static __always_inline int flow_binding_ok(const struct kvx_cfg *cfg, const struct kvx_ct_val *f,
					   const struct kvx_pkt *p, const __u8 *guest_mac,
					   const __u8 *gw_mac)
{
	struct kvx_bind_val *ib;

	if (f->flags & KVX_CT_F_ONE_TO_ONE)
		ib = bind_1to1_lookup_own(p, f->ext_addr);
	else if ((f->flags & KVX_CT_F_STATIC) || f->ext_addr == cfg->uplink_addr)
		ib = bind_in_lookup_own(p, f->ext_addr, f->ext_port);
	else
		return 0; /* bound to an old uplink address */
	if (!ib)
		return 0;
	bind_in_refresh(ib, guest_mac, gw_mac);
	return 1;
}

/* guest -> outside: the external endpoint for this packet, creating the
 * binding and the flow as needed.  Not inlined: the normal and the hairpin
 * path share one copy (half the program, a fraction of the verifier's work). */
static __noinline int ct_egress(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				const __u8 *macs, __u64 now, struct nat_endpoint *ext)
{
	const __u8 *guest_mac = macs, *gw_mac = macs + KVX_GW_MAC_OFF;
	struct kvx_ct_key k;
	struct kvx_ct_val *f;
	int r;

	/* An address-only binding of protocol 0 would sit on the key of a 1:1
	 * mapping of the uplink address (KVX_PROTO_ANY): never make one. */
	if (p->proto == KVX_PROTO_ANY)
		return KVX_R_DROP_PROTO_ZERO;
	/* A flow to the host's tunnel peer would take the tunnel's inbound
	 * packets (address-only NAT has nothing else to tell them apart). */
	if (!proto_has_ports(p->proto) && host_tunnel_peer(p->proto, p->daddr))
		return KVX_R_DROP_HOST_TUNNEL;
	ct_key_init(&k, p->proto, p->saddr, p->sport, p->daddr, p->dport);
	f = bpf_map_lookup_elem(&kvx_ct, &k);
	/* Fast path: the flow knows its external endpoint; one more lookup
	 * proves the pair is still intact. */
	if (f && flow_binding_ok(cfg, f, p, guest_mac, gw_mac)) {
		ext->addr = f->ext_addr;
		ext->port = f->ext_port;
		ext->flags = f->flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);
		ct_update(f, p, CT_DIR_OUT, now);
		return KVX_CONTINUE;
	}

	/* A new flow: within the guest's quota before anything is created. */
	if (!f) {
		/* Only a SYN, or a bare ACK (mid-stream pick-up after a flush or
		 * a restart, netfilter's nf_conntrack_tcp_loose), opens a TCP
		 * flow; FIN, RST and invalid combinations (SYN+FIN, SYN+RST, no
		 * flags) never do (nf_conntrack_proto_tcp.c: tcp_valid_flags,
		 * tcp_new): else the remote's answering RST would find a way in. */
		if (p->proto == IPPROTO_TCP) {
			__u8 tf = p->tcp_flags &
				  (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN | KVX_TCP_RST);

			if (tf != KVX_TCP_SYN && tf != KVX_TCP_ACK)
				return KVX_R_DROP_TCP_NO_FLOW;
		}
		r = ct_quota_check(cfg, p->saddr, now);
		if (r != KVX_CONTINUE)
			return r;
	}
	r = bind_get(cfg, p, macs, now, ext);
	if (r != KVX_CONTINUE)
		return r;
	if (f) {
		f->ext_addr = ext->addr;
		f->ext_port = ext->port;
		f->flags = (f->flags & ~(KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE)) | ext->flags;
		ct_update(f, p, CT_DIR_OUT, now);
		return KVX_CONTINUE;
	}
	return ct_create(&k, p, CT_DIR_OUT, ext, now);
}

/*
 * The binding that owns (proto, daddr, dport) for an inbound packet, or
 * NULL.  Port forwards and dynamic bindings match exactly, 1:1 mappings by
 * address.  An echo request only ever matches a 1:1 mapping: an echo
 * binding exists for the guest's own requests, not for requests to it.
 */
static __always_inline struct kvx_bind_val *bind_in_find(const struct kvx_pkt *p, __u8 *ct_flags)
{
	struct kvx_bind_key ik;
	struct kvx_bind_val *ib = NULL;

	if (!(p->proto == IPPROTO_ICMP && p->icmp_type == ICMP_ECHO)) {
		bind_key_init(&ik, KVX_BIND_IN, p->proto, p->daddr,
			      proto_has_ports(p->proto) ? p->dport : 0);
		ib = bpf_map_lookup_elem(&kvx_bind, &ik);
		if (ib) {
			*ct_flags = ib->flags & KVX_BIND_F_STATIC ? KVX_CT_F_STATIC : 0;
			return ib;
		}
	}
	bind_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, p->daddr, 0);
	ib = bpf_map_lookup_elem(&kvx_bind, &ik);
	/* Only a 1:1 mapping is a wildcard: any other entry under proto 0 (a
	 * guest's address-only binding of protocol 0, made before guests'
	 * protocol-0 packets were refused) would take every protocol sent
	 * to the address, the host's own SSH on the uplink included. */
	if (!ib || !(ib->flags & KVX_BIND_F_ONE_TO_ONE))
		return NULL;
	*ct_flags = KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE;
	return ib;
}

/* The guest endpoint an IN half (found by bind_in_find, with its flow
 * flags) delivers ext_port to: 1:1 keeps ports; bindings and port forwards
 * name the guest port. */
static __always_inline void guest_of_binding(const struct kvx_bind_val *ib, __u8 flags,
					     __be16 ext_port, struct nat_endpoint *guest)
{
	guest->addr = ib->addr;
	guest->port = flags & KVX_CT_F_ONE_TO_ONE ? ext_port : ib->port;
	guest->flags = flags;
	__builtin_memcpy(guest->guest_mac, ib->guest_mac, 6);
	__builtin_memcpy(guest->gw_mac, ib->gw_mac, 6);
}

/*
 * A binding that has not learnt its guest's MAC (a port forward of a guest
 * that only ever sent through its 1:1 mapping, say) delivers to the owner
 * of the guest address (abi.h kvx_guest) from the bridge's MAC (kvx_xdev),
 * not through the host's neighbour table: any guest can poison that with an
 * ARP that claims another guest's address.  Without an owner or a known
 * bridge MAC, the neighbour table it is.  Not inlined: its frame stays off
 * ct_ingress's, which is on the bridge program's deepest chain (hairpin).
 */
static __noinline void guest_mac_from_owner(const struct kvx_cfg *cfg, struct nat_endpoint *guest)
{
	struct kvx_guest_val *g;
	struct kvx_xdev_val *br;
	__u32 bridge = cfg->bridge_ifindex;
	__be32 addr = guest->addr;

	g = bpf_map_lookup_elem(&kvx_guest, &addr);
	if (!g)
		return;
	br = bpf_map_lookup_elem(&kvx_xdev, &bridge);
	if (!br || mac_is_zero(br->mac))
		return;
	__builtin_memcpy(guest->guest_mac, g->mac, 6);
	__builtin_memcpy(guest->gw_mac, br->mac, 6);
}

/* outside -> guest: the guest endpoint for a packet to (daddr, dport), or
 * KVX_R_PASS_HOST when no binding owns it (the host's own traffic). */
static __noinline int ct_ingress(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				      __u64 now, struct nat_endpoint *guest)
{
	struct nat_endpoint ext = {};
	struct kvx_bind_val *ib;
	struct kvx_ct_key k;
	struct kvx_ct_val *f;
	__u8 flags = 0;
	int r;

	ib = bind_in_find(p, &flags);
	if (!ib)
		return KVX_R_PASS_HOST;
	/* Ours, but it would expire on the way: drop before it touches the
	 * flow (no state change, no EIF flow for it). */
	if (p->ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	ext.addr = p->daddr;
	ext.port = proto_has_ports(p->proto) ? p->dport : 0;
	ext.flags = flags;
	guest_of_binding(ib, flags, ext.port, guest);
	if (mac_is_zero(guest->guest_mac))
		guest_mac_from_owner(cfg, guest);

	ct_key_init(&k, p->proto, guest->addr, guest->port, p->saddr, p->sport);
	f = bpf_map_lookup_elem(&kvx_ct, &k);
	if (!f) {
		/* RFC 4787: address-and-port-dependent filtering unless the
		 * user asked for endpoint-independent ("full cone"); static
		 * mappings accept new inbound connections. */
		if (!(flags & KVX_CT_F_STATIC) && !(cfg->flags & KVX_CFG_F_EIF))
			/* An address-only binding holds a whole protocol of the
			 * uplink address: what no guest flow asked for may be
			 * the host's own (a tunnel the loader does not know),
			 * as it was before the guest sent anything. */
			return proto_has_ports(p->proto) ? KVX_R_DROP_FILTERED : KVX_R_PASS_HOST;
		r = ct_quota_check(cfg, guest->addr, now);
		if (r != KVX_CONTINUE)
			return r;
		if (!(flags & KVX_CT_F_STATIC))
			ib->last_used_ns = now;
		return ct_create(&k, p, CT_DIR_IN, &ext, now);
	}
	if (f->ext_addr != ext.addr || f->ext_port != ext.port)
		return KVX_R_DROP_BROKEN_PAIR;
	ct_update(f, p, CT_DIR_IN, now);
	return KVX_CONTINUE;
}

#endif /* KVX_CT_H */
