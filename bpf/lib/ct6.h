/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv6 conntrack and NAT66 bindings (kvx_ct6, kvx_bind6): the IPv4 rules of
 * ct.h with 128-bit keys.  The values embed the IPv4 ones (abi.h), so the
 * flow's TCP tracking and timeouts (ct_update, ct_val_init), the inbound
 * opening rule (tcp_may_open) and the filtering of unsolicited packets
 * (ct_unsolicited) are ct.h's own code.  The pair invariant is the same:
 * the IN half is inserted first with BPF_NOEXIST (the claim on the external
 * port), the OUT half second and deleted first.  One rule differs, for want
 * of IPv4's kvx_guest: a binding belongs to the MAC that made it
 * (bind6_mac_owns).
 *
 * Static mappings (`map add`, pairs flagged KVX_BIND_F_STATIC, and
 * KVX_BIND_F_ONE_TO_ONE for a whole address under KVX_PROTO_ANY) follow
 * IPv4's rules: inbound to them opens flows (TCP with a SYN only, SYN_RECV
 * until the handshake completes), the guest endpoint leaves from its
 * mapped one, and a static IN half is owned by the MAC that uses it as
 * a dynamic one is (bind6_mac_owns).
 *
 * Quotas: a guest's IPv6 flows and bindings count in the same kvx_gflows
 * and kvx_gports slot as its IPv4 ones (ct.h mac_slot, its MAC's bridge
 * port: one quota per guest, both families).  A flow or binding counts for the MAC its
 * binding's IN half delivers to (ct6_slot): the rule the daemon's recount
 * applies too.  A flow records that slot when made (abi.h kvx_ct_val.slot)
 * and is uncounted there whatever becomes of its binding.
 *
 * Early drop of half-open inbound flows is IPv4's (ct.h ct_early_drop)
 * with its own rings (abi.h kvx_halfopen6).
 *
 * TIME_WAIT reuse (RFC 7857 section 3) is IPv4's (ct.h bind_recycle,
 * bind_tw_mark, gtw_push): the same flags, tw_remotes filter and per-guest
 * rings of closed ports, the rings of IPv6 at the other half of kvx_gtw.
 *
 * Not here yet (IPv4 has it): address ownership (kvx_guest).
 */
#ifndef KVX_CT6_H
#define KVX_CT6_H

#include "ct.h"
#include "clock.h"

static __always_inline int addr6_eq(const __be32 *a, const __be32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline void addr6_copy(__be32 *d, const __be32 *s)
{
	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
	d[3] = s[3];
}

static __always_inline int addr6_is_zero(const __be32 *a)
{
	return !(a[0] | a[1] | a[2] | a[3]);
}

static __always_inline int addr6_is_linklocal(const __be32 *a)
{
	return (bpf_ntohl(a[0]) & 0xffc00000) == 0xfe800000;
}

static __always_inline int addr6_is_mcast(const __be32 *a)
{
	return (bpf_ntohl(a[0]) >> 24) == 0xff;
}

/*
 * A packet's translation: the address and port the rewritten side gets
 * (outbound: the external endpoint; inbound: the guest's), how it leaves,
 * and the flow's static flags (a static mapping's binding).
 */
struct nat6_rewrite {
	__be32 addr[4]; /* the new address of the side rewritten */
	__be32 nh[4];	/* fib6_route: the next hop, for bpf_redirect_neigh */
	__u32 ifindex;	/* fib6_route: the egress device */
	__u32 mtu;	/* fib6_route: the route's MTU (for a Packet Too Big) */
	__u8 smac[8];	/* 8-byte slots: aligned word loads for the verifier */
	__u8 dmac[8];
	__be16 port;   /* the new port (ICMPv6 echo: the identifier) */
	__u8 src;      /* rewrite the source side, else the destination */
	__u8 macs;     /* set smac/dmac, else leave them (bpf_redirect_neigh fills them) */
	__u8 ct_flags; /* the flow's KVX_CT_F_STATIC / KVX_CT_F_ONE_TO_ONE */
	__u8 keep_hl;  /* nat6_rewrite: leave the hop limit (a hairpin's second side) */
};

/* The flow key, as ct_key_init: the echo identifier only on the guest side. */
static __always_inline void ct6_key_init(struct kvx_ct6_key *k, __u8 proto, const __be32 *int_addr,
					 __be16 int_port, const __be32 *rem_addr, __be16 rem_port)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->proto = proto;
	addr6_copy(k->int_addr, int_addr);
	k->int_port = int_port;
	addr6_copy(k->rem_addr, rem_addr);
	k->rem_port = proto == KVX_IPPROTO_ICMPV6 ? 0 : rem_port;
}

static __always_inline void bind6_key_init(struct kvx_bind6_key *k, __u8 dir, __u8 proto,
					   const __be32 *addr, __be16 port)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->dir = dir;
	k->proto = proto;
	addr6_copy(k->addr, addr);
	k->port = port;
}

/* The dynamic IN half at (proto, ext_addr, ext_port) if it delivers to p's
 * guest endpoint (bind_in_lookup_own). */
static __always_inline struct kvx_bind6_val *bind6_in_own(const struct kvx_pkt6 *p6,
							  const __be32 *ext_addr, __be16 ext_port)
{
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;

	bind6_key_init(&ik, KVX_BIND_IN, p6->p.proto, ext_addr, ext_port);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (ib && addr6_eq(ib->addr, p6->saddr) && ib->bind.port == p6->p.sport &&
	    !(ib->bind.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)))
		return ib;
	return NULL;
}

/* The IN half at (proto, addr, port), else addr's 1:1 one (KVX_PROTO_ANY,
 * port 0, KVX_BIND_F_ONE_TO_ONE: the only wildcard, as IPv4's
 * bind_in_find), else NULL.  A 1:1 half keeps the port. */
static __always_inline struct kvx_bind6_val *bind6_in_find(__u8 proto, const __be32 *addr,
							   __be16 port)
{
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;

	bind6_key_init(&ik, KVX_BIND_IN, proto, addr, port);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (ib)
		return ib;
	bind6_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, addr, 0);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	return ib && (ib->bind.flags & KVX_BIND_F_ONE_TO_ONE) ? ib : NULL;
}

/* The static IN half a flow with ct_flags (KVX_CT_F_STATIC, maybe
 * KVX_CT_F_ONE_TO_ONE) is bound through at (ext_addr, ext_port), if it
 * still delivers to p's guest endpoint: a port forward's by port, a 1:1
 * mapping's by address (KVX_PROTO_ANY, port 0). */
static __always_inline struct kvx_bind6_val *
bind6_in_static(const struct kvx_pkt6 *p6, const __be32 *ext_addr, __be16 ext_port, __u8 ct_flags)
{
	int one = ct_flags & KVX_CT_F_ONE_TO_ONE;
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;

	bind6_key_init(&ik, KVX_BIND_IN, one ? KVX_PROTO_ANY : p6->p.proto, ext_addr,
		       one ? 0 : ext_port);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (!ib || !addr6_eq(ib->addr, p6->saddr) || !(ib->bind.flags & KVX_BIND_F_STATIC))
		return NULL;
	if (one ? !(ib->bind.flags & KVX_BIND_F_ONE_TO_ONE) : ib->bind.port != p6->p.sport)
		return NULL;
	return ib;
}

/*
 * A binding's guest_mac is its owner (IPv6 has no kvx_guest yet): a frame
 * from another MAC with the binding's guest endpoint is refused
 * (DROP_SPOOF_MAC), else one UDP packet or bare ACK from guest B with guest
 * A's address and port would move A's inbound traffic to B.  Only a binding
 * idle for KVX_GUEST_IDLE_NS goes to the new MAC (a VM re-created with
 * another MAC).  Sum form, not `now - last < idle`: the clock is cached per
 * CPU (clock.h), the owner's refresh on another CPU can be a jiffy ahead of
 * this CPU's now, and the difference would wrap to "idle for ages".
 * A static mapping's pair before its guest's first frame has no MAC and
 * time 0 (the daemon writes them so): it is the first sender's, whose
 * address nd_owner checked.  Not by the idle rule: within
 * KVX_GUEST_IDLE_NS of boot, 0 is not that long ago, and a guest that
 * autostarts with the host could not send through its mapping for minutes.
 */
static __always_inline int bind6_mac_owns(const struct kvx_bind6_val *ib, const __u8 *macs,
					  __u64 now)
{
	return mac_eq(ib->bind.guest_mac, macs) || mac_is_zero(ib->bind.guest_mac) ||
	       ib->bind.last_used_ns + KVX_GUEST_IDLE_NS <= now;
}

/* The owner's frame (bind6_mac_owns first): its MACs and time. */
static __always_inline void bind6_in_refresh(struct kvx_bind6_val *ib, const __u8 *macs, __u64 now)
{
	if (!mac_eq(ib->bind.guest_mac, macs)) {
		__builtin_memcpy(ib->bind.guest_mac, macs, 6);
		ib->bind.last_used_ns = now;
	}
	if (!mac_eq(ib->bind.gw_mac, macs + KVX_GW_MAC_OFF))
		__builtin_memcpy(ib->bind.gw_mac, macs + KVX_GW_MAC_OFF, 6);
	if (ib->bind.last_used_ns + KVX_BIND_REFRESH_NS < now)
		ib->bind.last_used_ns = now;
}

/* The IN half of p's guest endpoint at (proto, ext_addr, ext_port). */
static __always_inline void bind6_in_init(struct kvx_bind6_key *ik, struct kvx_bind6_val *iv,
					  const struct kvx_pkt6 *p6, const __u8 *macs,
					  const __be32 *ext_addr, __be16 ext_port, __u64 now)
{
	bind6_key_init(ik, KVX_BIND_IN, p6->p.proto, ext_addr, ext_port);
	__builtin_memset(iv, 0, sizeof(*iv));
	addr6_copy(iv->addr, p6->saddr);
	iv->bind.port = p6->p.sport;
	iv->bind.last_used_ns = now;
	__builtin_memcpy(iv->bind.guest_mac, macs, 6);
	__builtin_memcpy(iv->bind.gw_mac, macs + KVX_GW_MAC_OFF, 6);
}

/* The quota slot of the guest whose MAC is mac (ct.h mac_slot; zero: none
 * known, the address's own slot). */
static __always_inline __u32 guest6_slot(const struct kvx_cfg *cfg, const __u8 *mac,
					 const __be32 *addr)
{
	return mac_is_zero(mac) ? kvx_guest_slot6(NULL, addr, cfg->guest_seed) : mac_slot(cfg, mac);
}

/* The bridge port a guest's MAC is on (abi.h kvx_brport); 0: not known.
 * mac8: 8 bytes, the MAC then two zero bytes (kvx_xfdb_key's layout: the
 * callers' aligned MAC buffers), the key as it is: no copy on a stack the
 * 6.1 verifier finds full. */
static __always_inline __u32 brport_of8(const __u8 *mac8)
{
	struct kvx_xfdb_val *v = bpf_map_lookup_elem(&kvx_brport, mac8);

	return v ? v->ifindex : 0;
}

/* As brport_of8, but 0 also while the MAC's placement moved to its port
 * within KVX_BRPORT_MOVE_HOLD_NS (abi.h kvx_brport: a guest that sent with
 * the MAC moved it to its own port).  Sum form: the per-CPU clock. */
static __always_inline __u32 brport_settled8(const __u8 *mac8, __u64 now)
{
	struct kvx_xfdb_val *v = bpf_map_lookup_elem(&kvx_brport, mac8);

	if (!v || (v->seen_ns && v->seen_ns + KVX_BRPORT_MOVE_HOLD_NS > now))
		return 0;
	return v->ifindex;
}

/* The slot of the guest that owns addr in relay's kvx_nd (owned, pending
 * or defended): its MAC's (ct.h mac_slot, by its bridge port: one quota
 * whatever MACs the guest sends from); else the address's.  mac_slot's
 * rule, with its key in the nd key's stack slot. */
static __always_inline __u32 ct6_nd_slot(const struct kvx_cfg *cfg, const __be32 *addr)
{
	/* One stack slot for both keys (the reclaim callback's frame is at
	 * the 6.1 verifier's limit). */
	union {
		struct kvx_nd_key nd;
		struct kvx_xfdb_key br;
	} k;
	struct kvx_nd_val *v;
	__u32 port;

	addr6_copy(k.nd.addr, addr);
	v = bpf_map_lookup_elem(&kvx_nd, &k.nd);
	if (v && v->state != KVX_ND_NONE && v->state != KVX_ND_HOST && !mac_is_zero(v->mac)) {
		__builtin_memcpy(k.br.mac, v->mac, ETH_ALEN);
		k.br._pad = 0;
		port = brport_of8(k.br.mac);
		return kvx_port_slot(port, cfg->guest_seed);
	}
	return kvx_guest_slot6(NULL, addr, cfg->guest_seed);
}

/*
 * The slot a flow or binding of the guest endpoint (guest_addr, guest_port)
 * counts in: that of the MAC its IN half at (proto, ext_addr, ext_port)
 * delivers to; relay's (its own address outside, as its relay mappings'
 * IN halves say, whose MAC is the owner the mapping recorded, not the
 * quota's): that of its address's kvx_nd owner; else of the address (the
 * daemon's recount: control/gc.cpp).
 */
static __always_inline __u32 ct6_slot_in(const struct kvx_cfg *cfg, struct kvx_bind6_key *ik,
					 __u8 proto, const __be32 *guest_addr, __be16 guest_port,
					 const __be32 *ext_addr, __be16 ext_port)
{
	struct kvx_bind6_val *ib;

	if (!addr6_eq(guest_addr, ext_addr)) {
		bind6_key_init(ik, KVX_BIND_IN, proto, ext_addr, ext_port);
		ib = bpf_map_lookup_elem(&kvx_bind6, ik);
		if (ib && addr6_eq(ib->addr, guest_addr) && ib->bind.port == guest_port)
			return guest6_slot(cfg, ib->bind.guest_mac, guest_addr);
		/* A 1:1 address: its one IN half, any port. */
		bind6_key_init(ik, KVX_BIND_IN, KVX_PROTO_ANY, ext_addr, 0);
		ib = bpf_map_lookup_elem(&kvx_bind6, ik);
		if (ib && (ib->bind.flags & KVX_BIND_F_ONE_TO_ONE) &&
		    addr6_eq(ib->addr, guest_addr))
			return guest6_slot(cfg, ib->bind.guest_mac, guest_addr);
	}
	/* Relay, or no binding: the address's owner (kvx_nd). */
	return ct6_nd_slot(cfg, guest_addr);
}

/* ct6_slot_in with its key on this frame. */
static __always_inline __u32 ct6_slot(const struct kvx_cfg *cfg, __u8 proto,
				      const __be32 *guest_addr, __be16 guest_port,
				      const __be32 *ext_addr, __be16 ext_port)
{
	struct kvx_bind6_key ik;

	return ct6_slot_in(cfg, &ik, proto, guest_addr, guest_port, ext_addr, ext_port);
}

_Static_assert(KVX_GFLOWS_MAX <= 0x10000, "a slot fits kvx_ct_val.slot's 16 bits");

/* ct6_slot of flow f (key k) from its binding, the lookup's key on a frame
 * of its own: not on ct6_create's, whose chain down to the reclaim
 * callback is at 6.1's 512 bytes. */
static __noinline __u32 ct6_slot_of(const struct kvx_cfg *cfg, const struct kvx_ct6_key *k,
				    const struct kvx_ct6_val *f)
{
	if (!cfg || !k || !f)
		return 0;
	return ct6_slot(cfg, k->proto, k->int_addr, k->int_port, f->ext_addr, f->ct.ext_port);
}

/* The slot flow f (key k) counts in: the one it recorded when made
 * (kvx_ct_val.slot), else its binding's (ct6_slot, older entries). */
static __always_inline __u32 ct6_flow_slot(const struct kvx_cfg *cfg, const struct kvx_ct6_key *k,
					   const struct kvx_ct6_val *f)
{
	__u32 s = kvx_ct_slot_read(f->ct.slot, cfg->guest_seed);

	if (s != KVX_CT_NO_SLOT)
		return s;
	return ct6_slot(cfg, k->proto, k->int_addr, k->int_port, f->ext_addr, f->ct.ext_port);
}

static __always_inline void gflows6_add(__u32 slot, __u8 ct_flags, int d)
{
	struct kvx_gflows_val *g = bpf_map_lookup_elem(&kvx_gflows, &slot);

	if (g)
		__sync_fetch_and_add(gflows_counter(g, ct_flags), d);
}

/* kvx_ct6's reclaim pass (ct.h's reclaim_pass): its own cursor and
 * hold-off, the table walked being another. */
__u32 kvx_reclaim6_cursor;
__u64 kvx_reclaim6_holdoff;

static long ct6_reclaim_cb(void *map, struct kvx_ct6_key *k, struct kvx_ct6_val *f,
			   struct ct_reclaim_ctx *c)
{
	const struct kvx_cfg *cfg;
	struct kvx_bind6_key *ik;
	__u32 slot, flags, zero = 0; /* flags: the flow's, and 0x100 if closed */
	int w = reclaim_window(c);

	if (w)
		return w - 1;
	cfg = cfg_get();
	if (!cfg)
		return 1;
	flags = f->ct.flags;
	if (!kvx_ct_expired(&f->ct, k->proto, &cfg->timeouts, c->now)) {
		/* The cheap test first: the slot may take three lookups. */
		if (!ct_closed_evictable(k->proto, &f->ct, c->evict, c->now))
			return 0;
		flags |= 0x100;
	}
	/* As ct6_flow_slot, the binding lookup's key in the per-CPU scratch
	 * (free on the IPv6 paths that reclaim): this frame is on a chain at
	 * 6.1's 512 bytes (kvx_br6, ct6_create, ct6_reclaim, here). */
	slot = kvx_ct_slot_read(f->ct.slot, cfg->guest_seed);
	if (slot == KVX_CT_NO_SLOT) {
		ik = bpf_map_lookup_elem(&kvx_scratch, &zero);
		if (!ik)
			return 0;
		slot = ct6_slot_in(cfg, ik, k->proto, k->int_addr, k->int_port, f->ext_addr,
				   f->ct.ext_port);
	}
	if ((flags & 0x100) && !ct_evict_owner(ct_evict_of(slot, (__u8)flags), c->evict))
		return 0;
	if (bpf_map_delete_elem(&kvx_ct6, k))
		return 0; /* someone else deleted it */
	gflows6_add(slot, (__u8)flags, -1);
	return reclaim_freed(c, flags >> 8);
}

/* ct_reclaim for kvx_ct6: expired flows, and one closed flow of evict. */
__noinline int ct6_reclaim(__u64 now, __u32 evict)
{
	return reclaim_pass(&kvx_ct6, ct6_reclaim_cb, &kvx_reclaim6_cursor, &kvx_reclaim6_holdoff,
			    now, evict);
}

/*
 * ct_early_drop for kvx_ct6: evict one of slot's half-open inbound flows
 * (the one halfopen_victim picks for a new SYN from rem) from its ring in
 * kvx_halfopen6.  Entries are pushed into the
 * ring of the slot their flow counts in (ct6_slot); a flow whose binding
 * changed owners since counts in another slot and is not this guest's to
 * evict (checked for the chosen one only: ct6_slot takes up to three
 * lookups).  Returns 1 if a flow was evicted.  Global, as ct_early_drop
 * (rem is only read: 6.1's helpers would refuse it as a key); a struct,
 * which the verifier sizes from its type.
 */
struct ct6_addr {
	__be32 w[4];
};

_Static_assert(sizeof(struct halfopen_pick) + sizeof(struct kvx_bind6_key) <=
		       sizeof(struct kvx_ct_val),
	       "fits kvx_scratch");

__noinline int ct6_early_drop(__u32 gslot, const struct ct6_addr *rem, __u64 now)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_halfopen6_val *h = bpf_map_lookup_elem(&kvx_halfopen6, &gslot);
	struct halfopen_pick *c = halfopen_pick_get();
	struct kvx_ct6_key *k;
	struct kvx_ct6_val *f;
	__u32 i, best, slot;

	if (!cfg || !h || !c || !rem)
		return 0;
	for (i = 0; i < KVX_HALFOPEN_RING; i++) {
		k = &h->keys[i];
		if (k->proto != IPPROTO_TCP)
			continue;
		f = bpf_map_lookup_elem(&kvx_ct6, k);
		if (!f || !ct_halfopen_evictable(&f->ct))
			continue;
		halfopen_consider(c, &f->ct, i, h->next - h->seq[i], addr6_eq(k->rem_addr, rem->w),
				  now);
	}
	best = halfopen_victim(c);
	if (best >= KVX_HALFOPEN_RING)
		return 0;
	k = &h->keys[best];
	f = bpf_map_lookup_elem(&kvx_ct6, k);
	/* Looked up again, as ct_early_drop's.  The slot lookup's key beside
	 * the pick in the scratch: on this frame it took the chain kvx_br6,
	 * ct6_create, here past 512 bytes. */
	if (!f || !ct_halfopen_evictable(&f->ct))
		return 0;
	slot = kvx_ct_slot_read(f->ct.slot, cfg->guest_seed);
	if (slot == KVX_CT_NO_SLOT)
		slot = ct6_slot_in(cfg, (struct kvx_bind6_key *)(c + 1), k->proto, k->int_addr,
				   k->int_port, f->ext_addr, f->ct.ext_port);
	if (slot != gslot)
		return 0;
	if (bpf_map_delete_elem(&kvx_ct6, k))
		return 0;
	gflows6_add(gslot, KVX_CT_F_INBOUND, -1);
	h->hole = best + 1; /* the new flow takes its slot */
	return 1;
}

/* ct_halfopen_push for kvx_ct6: the half-open inbound flow k (value f)
 * into the ring of the slot it counts in. */
static __noinline void ct6_halfopen_push(const struct kvx_cfg *cfg, const struct kvx_ct6_key *k,
					 const struct kvx_ct6_val *f)
{
	struct kvx_halfopen6_val *h;
	__u32 idx, slot;

	if (!cfg || !k || !f)
		return;
	idx = ct6_flow_slot(cfg, k, f);
	h = halfopen_ring(&kvx_halfopen6, &idx);
	if (!h)
		return;
	if (halfopen_has((const __u32 *)h->keys, (const __u32 *)k, sizeof(*k) / 4))
		return;
	slot = halfopen_push_slot(&h->next, &h->hole, h->seq);
	__builtin_memcpy(&h->keys[slot], k, sizeof(*k));
}

/* The per-guest flow quota (ct_quota_check's rule, closed flows giving
 * way included, a new inbound SYN first evicting a half-open flow:
 * ct6_early_drop; only this family's: the IPv4 table's closed flows do not
 * give way to an IPv6 flow, nor the other way round, a call more on this
 * chain being past 6.1's stack limit) for p6's new flow counting in slot. */
static __noinline int ct6_quota_check(const struct kvx_cfg *cfg, __u32 slot, __u8 ct_flags,
				      const struct kvx_pkt6 *p6, __u64 now)
{
	struct kvx_gflows_val *g;
	__u32 *n;

	if (!cfg || !cfg->flow_quota || !p6)
		return KVX_CONTINUE;
	g = bpf_map_lookup_elem(&kvx_gflows, &slot);
	if (!g)
		return KVX_CONTINUE;
	n = gflows_counter(g, ct_flags);
	if ((__s32)*n < (__s32)cfg->flow_quota)
		return KVX_CONTINUE;
	if ((ct_flags & KVX_CT_F_INBOUND) && p6->p.proto == IPPROTO_TCP &&
	    ct6_early_drop(slot, (const struct ct6_addr *)p6->saddr, now))
		return KVX_CONTINUE;
	if (now < g->reclaim_ns)
		return KVX_R_DROP_GUEST_QUOTA;
	if (ct6_reclaim(now, ct_evict_of(slot, ct_flags)) && (__s32)*n < (__s32)cfg->flow_quota) {
		reclaim_guest_holdoff(g, now);
		return KVX_CONTINUE;
	}
	g->reclaim_ns = now + KVX_RECLAIM_HOLDOFF_NS;
	return KVX_R_DROP_GUEST_QUOTA;
}

/*
 * One probe of bind6_create: claim port (host order) on the uplink address
 * for p's guest endpoint (the IN half, BPF_NOEXIST, carrying the TIME_WAIT
 * remotes tw of a recycled port) unless the host listens on it.  Returns 0
 * when claimed (or already the endpoint's own pair, whose OUT half was
 * lost: kept, RFC 4787 REQ-1), -EEXIST when taken, another
 * error when the table is full.  A global function, as IPv4's
 * bind_claim_port: the probe loop's body is verified once, not once per
 * iteration and state (inlined, the loop took kvx_br6 past a million
 * instructions).  Key and value are built on this frame: 6.1's map helpers
 * refuse a global function's pointer arguments, and the caller's frame
 * stays small (the chain of frames is limited to 512 bytes).
 */
__noinline int bind6_claim(const struct kvx_pkt6 *p6, const struct nat_macs *macs, __u64 now,
			   __u32 port, __u32 tw)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_key k;
	struct kvx_bind6_val v;
	struct kvx_bind6_val *own;
	int err;

	if (!p6 || !macs || !cfg6)
		return -EINVAL;
	/* 0: no port (the pool shrank, or an empty ring entry). */
	if (!port || port_host_listens(port))
		return -EEXIST;
	bind6_in_init(&k, &v, p6, macs->b, cfg6->uplink_addr, bpf_htons(port), now);
	v.bind.tw_remotes = tw;
	err = bpf_map_update_elem(&kvx_bind6, &k, &v, BPF_NOEXIST);
	if (err != -EEXIST)
		return err;
	own = bpf_map_lookup_elem(&kvx_bind6, &k);
	if (own && addr6_eq(own->addr, p6->saddr) && own->bind.port == p6->p.sport &&
	    !(own->bind.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE))) {
		if (!bind6_mac_owns(own, macs->b, now))
			return -EPERM;
		bind6_in_refresh(own, macs->b, now);
		own->bind.last_used_ns = now;
		return 0;
	}
	return -EEXIST;
}

/* The ring of closed ports (abi.h kvx_gtw) of the guest slot of mac and
 * addr: IPv6's rings are the other half of the table from IPv4's, so that
 * a dual-stack guest's two families (one slot) do not overwrite each
 * other's (rings are shared by slots KVX_GTW_GUESTS apart anyway). */
static __always_inline __u32 gtw6_idx(const struct kvx_cfg *cfg, const __u8 *mac,
				      const __be32 *addr)
{
	return (guest6_slot(cfg, mac, addr) + KVX_GTW_GUESTS / 2) & (KVX_GTW_GUESTS - 1);
}

/* Entry off of p's guest's ring, oldest first (ct.h gtw_port): a port, host
 * order, 0 if none.  Global, as IPv4's: its frame stays off bind6_create's. */
__noinline __u32 gtw6_port(const struct kvx_pkt6 *p6, const struct nat_macs *macs, __u32 off)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_gtw_val *r;
	__u32 idx;

	if (!p6 || !macs || !cfg)
		return 0;
	idx = gtw6_idx(cfg, macs->b, p6->saddr);
	r = bpf_map_lookup_elem(&kvx_gtw, &idx);
	return r ? bpf_ntohs(r->ports[(r->next + off) & (KVX_GTW_RING - 1)]) : 0;
}

_Static_assert(sizeof(struct kvx_ct6_key) <= sizeof(struct kvx_ct_val) &&
		       sizeof(struct kvx_bind6_key) <= sizeof(struct kvx_ct_val),
	       "fits kvx_scratch");

/* tw_reopens for IPv6: the old flow of the port's binding ib towards p's
 * remote is in TIME_WAIT with both sides tracked, and that remote takes
 * p's SYN on its tuple (ct.h tcp_syn_reopens: the sequence numbers, and
 * the timestamps' veto).  The key in the per-CPU scratch (free until
 * ct6_create, after the binding is made). */
static __always_inline int tw6_reopens(const struct kvx_bind6_val *ib, const struct kvx_pkt6 *p6)
{
	struct kvx_ct6_key *k;
	struct kvx_ct6_val *f;
	__u32 zero = 0;

	k = bpf_map_lookup_elem(&kvx_scratch, &zero);
	if (!k)
		return 0;
	ct6_key_init(k, IPPROTO_TCP, ib->addr, ib->bind.port, p6->daddr, p6->p.dport);
	f = bpf_map_lookup_elem(&kvx_ct6, k);
	return f && tcp_syn_reopens(&f->ct, &p6->p);
}

/*
 * IPv4's bind_recycle (RFC 7857 section 3) for the port (host order) on the
 * uplink address: its binding's one TCP flow is over and quiet, p is a SYN
 * towards a remote its tw_remotes does not hold (or one whose TIME_WAIT
 * p's sequence number reopens), never a static, MULTI or port the host
 * listens on (or that left the pool).  at_limit bit 0 (p's guest at its
 * port limit): only a port counted in p's guest's own slot, so that its
 * count stays; KVX_RECYCLE_NOT_YET (ct.h bind_plan): none.  The old pair
 * is released, OUT half first; its flow is left to
 * expire, a late packet of it finds the port no longer its own.  Returns 0
 * when the port stays taken, else the tw_remotes the new binding carries
 * on, with bit 0 set (the caller claims the port, bind6_claim).  Global:
 * verified once, its keys on its own frame (6.1's map helpers refuse a
 * global function's pointer arguments as keys).
 */
__noinline __u32 bind6_recycle(const struct kvx_pkt6 *p6, const struct nat_macs *macs, __u64 now,
			       __u32 port, int at_limit)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_key k;
	struct kvx_bind6_val *ib, *ob;
	__u32 seen, old, *n;

	if (!p6 || !macs || !cfg || !cfg6)
		return 0;
	if (!tcp_pure_syn(&p6->p) || (at_limit & KVX_RECYCLE_NOT_YET))
		return 0;
	at_limit &= 1;
	if (!kvx_nat_pool_has(cfg->nat_port_lo, cfg->nat_port_hi, cfg->nat_skip_lo,
			      cfg->nat_skip_hi, port) ||
	    port_host_listens(port))
		return 0;
	bind6_key_init(&k, KVX_BIND_IN, IPPROTO_TCP, cfg6->uplink_addr, bpf_htons(port));
	ib = bpf_map_lookup_elem(&kvx_bind6, &k);
	/* Released meanwhile: free (not for a guest at its limit). */
	if (!ib)
		return at_limit ? 0 : 1;
	if (!bind_tw_only(ib->bind.flags))
		return 0;
	if (ib->bind.last_used_ns + KVX_TW_PORT_QUIET_NS > now)
		return 0;
	seen = ib->bind.tw_remotes;
	if (kvx_tw_has(seen, kvx_tw_bits6(p6->daddr, p6->p.dport), now) && !tw6_reopens(ib, p6))
		return 0;
	bind6_key_init(&k, KVX_BIND_OUT, IPPROTO_TCP, ib->addr, ib->bind.port);
	ob = bpf_map_lookup_elem(&kvx_bind6, &k);
	/* The pair's OUT half, deleted here, is the one token two CPUs
	 * recycling the port race for: without it (gone, or the endpoint's
	 * other binding) the IN half may already be another CPU's new one. */
	if (!ob || !addr6_eq(ob->addr, cfg6->uplink_addr) || ob->bind.port != bpf_htons(port))
		return 0;
	/* The slot the port counts in: the one its OUT half records, else
	 * (older entries) the MAC it names (bind6_out_insert). */
	old = kvx_ct_slot_read(ob->bind.slot, cfg->guest_seed);
	if (old == KVX_CT_NO_SLOT)
		old = guest6_slot(cfg, ob->bind.guest_mac, k.addr);
	if (at_limit && old != guest6_slot(cfg, macs->b, p6->saddr))
		return 0;
	if (bpf_map_delete_elem(&kvx_bind6, &k))
		return 0;
	n = bpf_map_lookup_elem(&kvx_gports, &old);
	if (n)
		__sync_fetch_and_add(n, -1);
	bind6_key_init(&k, KVX_BIND_IN, IPPROTO_TCP, cfg6->uplink_addr, bpf_htons(port));
	if (bpf_map_delete_elem(&kvx_bind6, &k))
		return 0; /* another CPU recycled it first */
	return seen | 1;
}

/*
 * The OUT half of a pair whose IN half (at ext_addr, *ext_port) was just
 * claimed; its value names the external endpoint.  If another CPU bound
 * the guest endpoint first, the claim is released and its binding used
 * (*ext_port).  Not inlined: its key and value stay off the frames of the
 * chain down to bind6_claim.
 */
static __noinline int bind6_out_insert(const struct kvx_pkt6 *p6, const __be32 *ext_addr,
				       __be16 *ext_port, const __u8 *mac, __u32 slot)
{
	const struct kvx_cfg *cfg = cfg_get();
	__u64 now = clock_now_ns();
	struct kvx_bind6_key k;
	struct kvx_bind6_val v;
	struct kvx_bind6_val *won;
	int err;

	if (!cfg || !p6 || !ext_addr || !ext_port || !mac)
		return KVX_R_DROP_TABLE_FULL;
	__builtin_memset(&v, 0, sizeof(v));
	addr6_copy(v.addr, ext_addr);
	v.bind.port = *ext_port;
	v.bind.last_used_ns = now;
	/* The MAC it counts for (slot, kvx_gports): its release and the
	 * daemon's recount take the slot from here, not from the IN half,
	 * whose MAC may change or which may be gone by then; and the slot
	 * itself, which is the MAC's port's now but moves with the MAC
	 * (abi.h kvx_bind_val.slot). */
	__builtin_memcpy(v.bind.guest_mac, mac, 6);
	v.bind.slot = kvx_ct_slot_rec(slot, cfg->guest_seed);
	bind6_key_init(&k, KVX_BIND_OUT, p6->p.proto, p6->saddr, p6->p.sport);
	err = bpf_map_update_elem(&kvx_bind6, &k, &v, BPF_NOEXIST);
	if (!err) {
		__u32 *n = bpf_map_lookup_elem(&kvx_gports, &slot);

		if (n)
			__sync_fetch_and_add(n, 1);
		return KVX_CONTINUE;
	}
	bind6_key_init(&k, KVX_BIND_IN, p6->p.proto, ext_addr, *ext_port);
	bpf_map_delete_elem(&kvx_bind6, &k);
	if (err != -EEXIST)
		return KVX_R_DROP_TABLE_FULL;
	bind6_key_init(&k, KVX_BIND_OUT, p6->p.proto, p6->saddr, p6->p.sport);
	won = bpf_map_lookup_elem(&kvx_bind6, &k);
	if (!won || !addr6_eq(won->addr, ext_addr))
		return KVX_R_DROP_BROKEN_PAIR;
	*ext_port = won->bind.port;
	/* Its flow and the winner's are two (one socket's SYNs to two
	 * remotes at once): the port is no longer one flow's to recycle
	 * (bind6_recycle), as bind_create marks it. */
	bind6_key_init(&k, KVX_BIND_IN, p6->p.proto, ext_addr, *ext_port);
	won = bpf_map_lookup_elem(&kvx_bind6, &k);
	if (won && addr6_eq(won->addr, p6->saddr) && won->bind.port == p6->p.sport &&
	    !(won->bind.flags & KVX_BIND_F_MULTI))
		bind_flags_or(&won->bind, KVX_BIND_F_MULTI);
	return KVX_CONTINUE;
}

/*
 * A new binding for p's guest endpoint on the uplink address, as
 * bind_create: the guest's own port when it lies in the pool, else random
 * probes (a small pool scanned whole); ports the host listens on
 * (kvx_portx) are never taken; a taken port may be recycled for a SYN
 * (bind6_recycle).  A guest at its port limit only gets one of its own
 * closed ports, its ring's first (gtw6_port).  ext_port receives the port.
 */
__noinline int bind6_create(const struct kvx_cfg *cfg, const struct kvx_pkt6 *p6,
			    const struct nat_macs *m, __u64 now, __be16 *ext_port)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	const __u8 *macs = m ? m->b : NULL;
	__u32 lo, hi, slo, shi, hole, range, start, want, port = 0, i, slot, tw, *n;
	int err = -EEXIST, at_limit, syn;
	__u64 pk;

	if (!cfg || !cfg6 || !p6 || !macs || !ext_port)
		return KVX_R_DROP_TABLE_FULL;
	/* RFC 6888 REQ-4, as bind_create: a guest at its port limit gets a
	 * new binding only in the place of one of its own closed ones
	 * (bind6_recycle, TCP). */
	slot = guest6_slot(cfg, macs, p6->saddr);
	n = bpf_map_lookup_elem(&kvx_gports, &slot);
	at_limit = n && cfg->guest_ports && (__s32)*n >= (__s32)cfg->guest_ports;
	/* Only a SYN can be given a recycled port (bind_create). */
	syn = tcp_pure_syn(&p6->p);
	if (at_limit && !syn)
		return KVX_R_DROP_GUEST_PORTS;
	lo = cfg->nat_port_lo;
	hi = cfg->nat_port_hi;
	slo = cfg->nat_skip_lo;
	shi = cfg->nat_skip_hi;
	range = kvx_nat_pool_size(lo, hi, slo, shi);
	if (!range)
		return KVX_R_DROP_PORTS_EXHAUSTED;
	want = bpf_ntohs(p6->p.sport);
	hole = kvx_nat_hole(lo, hi, slo, shi);
	if (want >= lo && want <= hi && !(hole && want >= slo && want <= shi))
		start = want >= slo && hole ? want - lo - hole : want - lo;
	else
		start = bpf_get_prandom_u32() % range;
	/* bind_create's plan (ct.h bind_plan), read from one register. */
	pk = bind_plan(range, start, at_limit, syn);
	for (i = 0; i < KVX_PORT_TRIES; i++) {
		range = plan_range(pk);
		if (i >= plan_probes(pk))
			break;
		/* At its limit in a large pool, the guest's own closed ports
		 * first (abi.h kvx_gtw): random probes miss the few it holds. */
		if (plan_at_limit(pk) && range > KVX_PORT_TRIES && i < KVX_GTW_RING)
			port = gtw6_port(p6, m, i);
		else
			port = nat_pool_port_at((i == 0 || range <= KVX_PORT_TRIES) ?
							(plan_start(pk) + i) % range :
							bpf_get_prandom_u32() % range);
		/* At the limit a free port is not for it: only a recycled one. */
		err = plan_at_limit(pk) ? -EEXIST : bind6_claim(p6, m, now, port, 0);
		if (err == -EEXIST) {
			tw = bind6_recycle(p6, m, now, port, bind_recycle_how(pk, i));
			if (tw)
				err = bind6_claim(p6, m, now, port, tw & ~1U);
		}
		if (err != -EEXIST)
			break;
	}
	if (err == -EEXIST)
		return plan_at_limit(pk) ? KVX_R_DROP_GUEST_PORTS : KVX_R_DROP_PORTS_EXHAUSTED;
	if (err == -EPERM)
		return KVX_R_DROP_SPOOF_MAC;
	if (err)
		return KVX_R_DROP_TABLE_FULL;

	*ext_port = bpf_htons(port);
	return bind6_out_insert(p6, cfg6->uplink_addr, ext_port, macs, slot);
}

/* bind6_get's repair of a pair whose IN half is missing: the same port
 * again if still free (0: claimed), flagged MULTI as IPv4's
 * bind_in_reclaim.  Not inlined: its key and value stay off the frames of
 * the chain down to bind6_claim. */
static __noinline int bind6_in_reclaim(const struct kvx_pkt6 *p6, const __u8 *macs,
				       const __be32 *ext_addr, __be16 ext_port, __u64 now)
{
	struct kvx_bind6_key k;
	struct kvx_bind6_val v;

	if (!p6 || !macs || !ext_addr)
		return -EINVAL;
	bind6_in_init(&k, &v, p6, macs, ext_addr, ext_port, now);
	v.bind.flags = KVX_BIND_F_MULTI;
	return bpf_map_update_elem(&kvx_bind6, &k, &v, BPF_NOEXIST);
}

/* bind6_reuse releases a dynamic OUT half (key ok, value ob) of p's guest
 * endpoint: deleted, one port less for the slot it counted in (its record,
 * else the MAC it names: bind6_out_insert).  Not inlined: off the frames of
 * the chain down to bind6_claim. */
static __noinline void bind6_out_release(const struct kvx_pkt6 *p6, const struct kvx_bind6_key *ok,
					 const struct kvx_bind6_val *ob)
{
	const struct kvx_cfg *cfg = cfg_get();
	__u8 mac[8] __attribute__((aligned(8)));
	__u32 slot, *n;

	if (!p6 || !ok || !ob)
		return;
	/* Read before the delete: the entry may be reused. */
	slot = ob->bind.slot;
	__builtin_memcpy(mac, ob->bind.guest_mac, 6);
	if (bpf_map_delete_elem(&kvx_bind6, ok) || !cfg)
		return;
	slot = kvx_ct_slot_read(slot, cfg->guest_seed);
	if (slot == KVX_CT_NO_SLOT)
		slot = guest6_slot(cfg, mac, p6->saddr);
	n = bpf_map_lookup_elem(&kvx_gports, &slot);
	if (n)
		__sync_fetch_and_add(n, -1);
}

/*
 * A static mapping of the guest endpoint (bind_get_1to1 and bind_get's
 * static case): a 1:1 mapping of its address first (everything leaves from
 * the external address, ports kept), then a port forward of the endpoint
 * (it leaves from its external endpoint).  KVX_CONTINUE with rw's address,
 * port and flags set; KVX_NO_MAPPING when there is none; a pair whose IN
 * half is gone is being deleted by `map del`: DROP_BROKEN_PAIR.  Not
 * inlined: its keys stay off bind6_reuse's frame.
 */
static __noinline int bind6_static(const struct kvx_pkt6 *p6, const __u8 *macs, __u64 now,
				   struct nat6_rewrite *rw)
{
	struct kvx_bind6_key ok;
	struct kvx_bind6_val *ob, *ib;
	__u8 flags = KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE;
	__be16 port;

	if (!p6 || !macs || !rw)
		return KVX_R_DROP_TABLE_FULL;
	bind6_key_init(&ok, KVX_BIND_OUT, KVX_PROTO_ANY, p6->saddr, 0);
	ob = bpf_map_lookup_elem(&kvx_bind6, &ok);
	if (!ob || !(ob->bind.flags & KVX_BIND_F_ONE_TO_ONE)) {
		flags = KVX_CT_F_STATIC;
		bind6_key_init(&ok, KVX_BIND_OUT, p6->p.proto, p6->saddr, p6->p.sport);
		ob = bpf_map_lookup_elem(&kvx_bind6, &ok);
		if (!ob || !(ob->bind.flags & KVX_BIND_F_STATIC))
			return KVX_NO_MAPPING;
	}
	port = flags & KVX_CT_F_ONE_TO_ONE ? p6->p.sport : ob->bind.port;
	ib = bind6_in_static(p6, ob->addr, ob->bind.port, flags);
	if (!ib)
		return KVX_R_DROP_BROKEN_PAIR;
	if (!bind6_mac_owns(ib, macs, now))
		return KVX_R_DROP_SPOOF_MAC;
	bind6_in_refresh(ib, macs, now);
	addr6_copy(rw->addr, ob->addr);
	rw->port = port;
	rw->ct_flags = flags;
	return KVX_CONTINUE;
}

/*
 * The guest endpoint's dynamic binding (bind_get): reused while it is on
 * the current uplink address and its IN half points back to the guest; a
 * missing IN half is re-claimed (the same port, flagged MULTI as IPv4's
 * bind_in_reclaim); a stale or stolen pair is released (OUT first), and
 * KVX_NO_MAPPING tells the caller to bind anew (bind6_create: called from
 * there, one frame less deep).  A static pair is bind6_static's (the
 * caller's first step): never released here.
 */
static __noinline int bind6_reuse(const struct kvx_pkt6 *p6, const __u8 *macs, __u64 now,
				  __be16 *ext_port)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_key ok;
	struct kvx_bind6_val *ob, *ib;
	__be32 old_addr[4];
	__be16 old_port;

	if (!cfg6 || !p6 || !macs || !ext_port)
		return KVX_R_DROP_TABLE_FULL;
	bind6_key_init(&ok, KVX_BIND_OUT, p6->p.proto, p6->saddr, p6->p.sport);
	ob = bpf_map_lookup_elem(&kvx_bind6, &ok);
	if (!ob)
		return KVX_NO_MAPPING;
	if (ob->bind.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE))
		return KVX_R_DROP_BROKEN_PAIR; /* bind6_static found its IN half gone */
	addr6_copy(old_addr, ob->addr);
	old_port = ob->bind.port;
	if (addr6_eq(old_addr, cfg6->uplink_addr)) {
		ib = bind6_in_own(p6, old_addr, old_port);
		if (ib) {
			if (!bind6_mac_owns(ib, macs, now))
				return KVX_R_DROP_SPOOF_MAC;
			bind6_in_refresh(ib, macs, now);
			if (!(ib->bind.flags & KVX_BIND_F_MULTI))
				bind_flags_or(&ib->bind, KVX_BIND_F_MULTI);
			ob->bind.last_used_ns = now;
			*ext_port = old_port;
			return KVX_CONTINUE;
		}
		/* IN half missing: re-claim the same port if still free. */
		if (!bind6_in_reclaim(p6, macs, old_addr, old_port, now)) {
			ob->bind.last_used_ns = now;
			*ext_port = old_port;
			return KVX_CONTINUE;
		}
	}
	/* Stale (old uplink address) or stolen: OUT first, then our IN; not
	 * for another MAC while the owner's IN half is in use. */
	ib = bind6_in_own(p6, old_addr, old_port);
	if (ib && !bind6_mac_owns(ib, macs, now))
		return KVX_R_DROP_SPOOF_MAC;
	bind6_out_release(p6, &ok, ob);
	if (ib) {
		bind6_key_init(&ok, KVX_BIND_IN, p6->p.proto, old_addr, old_port);
		bpf_map_delete_elem(&kvx_bind6, &ok);
	}
	return KVX_NO_MAPPING;
}

/*
 * A new flow of p (ct_create: a full table first gets a reclaim pass),
 * with rw's static flags: outbound from p's source bound to rw's external
 * endpoint, inbound to p's destination delivered to rw's guest endpoint;
 * counted in its guest's slot (ct6_slot); KVX_CT_RACE when another CPU
 * just made it (ct6_race).  The guest's quota was checked before
 * (ct6_egress, ct6_ingress), before any binding was made.  Called by the
 * programs themselves: its key and value (136 bytes) are on no deeper
 * chain of frames.
 */
static __always_inline void ct6_key_of(struct kvx_ct6_key *k, const struct kvx_pkt6 *p6,
				       enum ct_dir dir, const struct nat6_rewrite *rw)
{
	if (dir == CT_DIR_OUT)
		ct6_key_init(k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	else
		ct6_key_init(k, p6->p.proto, rw->addr, rw->port, p6->saddr, p6->p.sport);
}

static __noinline int ct6_create(const struct kvx_pkt6 *p6, enum ct_dir dir,
				 const struct nat6_rewrite *rw)
{
	const struct kvx_cfg *cfg = cfg_get();
	__u64 now = clock_now_ns();
	struct kvx_ct6_key k;
	struct kvx_ct6_val v;
	int err;

	if (!cfg || !p6 || !rw)
		return KVX_R_DROP_TABLE_FULL;
	ct6_key_of(&k, p6, dir, rw);
	if (dir == CT_DIR_OUT) {
		ct_val_init(&v.ct, &p6->p, dir, rw->port, rw->ct_flags, now);
		addr6_copy(v.ext_addr, rw->addr);
	} else {
		ct_val_init(&v.ct, &p6->p, dir, p6->p.dport, rw->ct_flags, now);
		addr6_copy(v.ext_addr, p6->daddr);
	}
	/* Counted in its binding's slot now, uncounted there whatever
	 * becomes of the binding (kvx_ct_val.slot). */
	v.ct.slot = kvx_ct_slot_rec(ct6_slot_of(cfg, &k, &v), cfg->guest_seed);
	err = bpf_map_update_elem(&kvx_ct6, &k, &v, BPF_NOEXIST);
	/* Full: expired or closed flows, then (an inbound SYN) one of the
	 * guest's half-open ones, as ct_create. */
	if (err == -E2BIG &&
	    (ct6_reclaim(now, KVX_EVICT_ANY) > 0 ||
	     (v.ct.state == KVX_CT_SYN_RECV &&
	      ct6_early_drop(v.ct.slot & 0xffff, (const struct ct6_addr *)p6->saddr, now))))
		err = bpf_map_update_elem(&kvx_ct6, &k, &v, BPF_NOEXIST);
	if (!err) {
		gflows6_add(v.ct.slot & 0xffff, v.ct.flags, 1);
		if (v.ct.state == KVX_CT_SYN_RECV)
			ct6_halfopen_push(cfg, &k, &v);
		return KVX_CONTINUE;
	}
	return err == -EEXIST ? KVX_CT_RACE : KVX_R_DROP_TABLE_FULL;
}

/* ct6_create's KVX_CT_RACE: another CPU made the flow first; this packet
 * is accounted to it.  Apart from ct6_create: its frame and ct_update's
 * on one chain took kvx_br6 past 512 bytes as 6.1 counts them. */
static __noinline int ct6_race(const struct kvx_pkt6 *p6, enum ct_dir dir,
			       const struct nat6_rewrite *rw)
{
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!p6 || !rw)
		return KVX_R_DROP_TABLE_FULL;
	ct6_key_of(&k, p6, dir, rw);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f)
		return KVX_R_DROP_TABLE_FULL;
	return ct_update(&f->ct, &p6->p, dir, clock_now_ns());
}

/*
 * IPv4's gtw_push for IPv6: the guest's port ext (network order), whose
 * flow just closed, into its ring unless the oldest entry is still a
 * reusable port of this guest (then that one is kept).  The guest is its
 * slot, as for bind6_recycle at the limit: a guest's ports from several
 * addresses (temporary ones) are all its own.
 */
static __always_inline void gtw6_push(const struct kvx_bind6_val *ib, __be16 ext)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_val *old;
	struct kvx_gtw_val *r;
	struct kvx_bind6_key k;
	__u32 idx, slot;

	if (!cfg || !cfg6)
		return;
	idx = gtw6_idx(cfg, ib->bind.guest_mac, ib->addr);
	r = bpf_map_lookup_elem(&kvx_gtw, &idx);
	if (!r)
		return;
	slot = r->next & (KVX_GTW_RING - 1);
	if (r->ports[slot] && r->ports[slot] != ext) {
		bind6_key_init(&k, KVX_BIND_IN, IPPROTO_TCP, cfg6->uplink_addr, r->ports[slot]);
		old = bpf_map_lookup_elem(&kvx_bind6, &k);
		if (old && bind_tw_only(old->bind.flags) &&
		    guest6_slot(cfg, old->bind.guest_mac, old->addr) ==
			    guest6_slot(cfg, ib->bind.guest_mac, ib->addr))
			return;
	}
	r->ports[slot] = ext;
	r->next = (slot + 1) & (KVX_GTW_RING - 1);
}

/*
 * IPv4's bind_tw_mark for IPv6 (ct.h bind_tw_update, one rule): a dynamic
 * TCP binding's recycling state (KVX_BIND_F_TW, KVX_BIND_F_RFIN,
 * tw_remotes) in step with its flow f after packet p6 (out: from the
 * guest), and the guest's FIN's timestamp (ct.h tcp_fin_ts_take).  Not
 * inlined: its frame stays off ct6_ingress's.
 */
static __noinline void bind6_tw_mark(struct kvx_bind6_val *ib, struct kvx_ct6_val *f,
				     const struct kvx_pkt6 *p6, int out, __u64 now)
{
	__u32 rem;

	if (!ib || !f || !p6)
		return;
	rem = f->ct.state == KVX_CT_TIME_WAIT ?
		      kvx_tw_bits6(out ? p6->daddr : p6->saddr, out ? p6->p.dport : p6->p.sport) :
		      0;
	if (out && (p6->p.tcp_flags & KVX_TCP_FIN) && p6->p.proto == IPPROTO_TCP)
		tcp_fin_ts_take(&f->ct, &p6->p);
	if (bind_tw_update(&ib->bind, &f->ct, &p6->p, out, rem, now))
		gtw6_push(ib, f->ct.ext_port);
}

/*
 * guest -> outside (ct_egress), first half: the flow's external endpoint
 * into rw (address, port, static flags) when the flow exists, on the
 * current uplink address or through a static mapping, and its binding is
 * intact (KVX_CONTINUE); KVX_NO_MAPPING when the packet needs a binding
 * (then bind6_static / bind6_reuse / bind6_create and ct6_commit_out,
 * called by the program itself: one chain of frames less deep), or a drop
 * reason.
 */
static __noinline int ct6_egress(const struct kvx_pkt6 *p6, const __u8 *macs, __u64 now,
				 struct nat6_rewrite *rw)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_val *ib;
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;
	__u8 flags;
	int r;

	if (!cfg6 || !p6 || !macs || !rw)
		return KVX_R_DROP_TABLE_FULL;
	ct6_key_init(&k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f) {
		const struct kvx_cfg *cfg = cfg_get();

		/* A SYN, or a bare ACK: a connection whose flow the datapath
		 * lost (`conntrack flush`, a reclaim) is picked up mid-stream
		 * on its binding, as IPv4's; the guest's flow quota and the
		 * short life of an unanswered pick-up (ct_rules.h
		 * kvx_ct_timeout_s) bound what its ACKs to random remotes
		 * hold. */
		if (!tcp_may_open(&p6->p, CT_DIR_OUT))
			return KVX_R_DROP_TCP_NO_FLOW;
		if (!cfg)
			return KVX_R_DROP_TABLE_FULL;
		/* A new flow: within the guest's quota before anything is
		 * made for it (the slot of the frame's MAC: the binding it
		 * gets belongs to that MAC, bind6_mac_owns). */
		r = ct6_quota_check(cfg, guest6_slot(cfg, macs, p6->saddr), 0, p6, now);
		return r == KVX_CONTINUE ? KVX_NO_MAPPING : r;
	}
	flags = f->ct.flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);
	if (flags) {
		ib = bind6_in_static(p6, f->ext_addr, f->ct.ext_port, flags);
	} else {
		if (!addr6_eq(f->ext_addr, cfg6->uplink_addr))
			return KVX_NO_MAPPING; /* bound to an old uplink address */
		ib = bind6_in_own(p6, f->ext_addr, f->ct.ext_port);
	}
	if (!ib)
		return KVX_NO_MAPPING;
	/* A flow is its binding owner's: no other MAC's packet on it, idle or
	 * not (a bare ACK passes any window check, and taking the binding
	 * over would send the owner's inbound traffic to the sender).  An
	 * idle binding goes to another MAC by a new flow only (bind6_reuse). */
	if (!mac_eq(ib->bind.guest_mac, macs) && !mac_is_zero(ib->bind.guest_mac))
		return KVX_R_DROP_SPOOF_MAC;
	addr6_copy(rw->addr, f->ext_addr);
	rw->port = f->ct.ext_port;
	rw->ct_flags = flags;
	r = ct_update(&f->ct, &p6->p, CT_DIR_OUT, now);
	if (r == KVX_CONTINUE) {
		bind6_in_refresh(ib, macs, now);
		bind6_tw_mark(ib, f, p6, 1, now);
	}
	return r;
}

/* guest -> outside, second half: the flow moved to the binding (rw's
 * external endpoint and static flags) that bind6_static / bind6_reuse /
 * bind6_create gave; KVX_NO_MAPPING: no flow yet (ct6_create). */
static __noinline int ct6_commit_out(const struct kvx_pkt6 *p6, const struct nat6_rewrite *rw,
				     __u64 now)
{
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!p6 || !rw)
		return KVX_R_DROP_TABLE_FULL;
	ct6_key_init(&k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f)
		return KVX_NO_MAPPING; /* the caller makes it (ct6_create) */
	addr6_copy(f->ext_addr, rw->addr);
	f->ct.ext_port = rw->port;
	f->ct.flags = (f->ct.flags & ~(KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE)) | rw->ct_flags;
	return ct_update(&f->ct, &p6->p, CT_DIR_OUT, now);
}

/*
 * A binding that has not learnt its guest's MAC (a 1:1 address or a port
 * forward the guest never sent through) delivers to the owner of the
 * guest address (kvx_nd, owned: bpf/lib/owner6.h) from the bridge's MAC,
 * as IPv4's guest_mac_from_owner does, not through the host's neighbour
 * cache, which a guest may have taught before its owner was known.  No
 * owner, one quiet for KVX_GUEST_IDLE_NS or no bridge MAC: the neighbour
 * cache it is.  Not inlined: its key stays off ct6_ingress's frame.
 */
static __noinline void guest6_mac_from_owner(const __be32 *addr, struct nat_endpoint *guest,
					     __u64 now)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_nd_key k;
	struct kvx_nd_val *v;

	if (!addr || !guest || !cfg6 || mac_is_zero(cfg6->bridge_mac))
		return;
	addr6_copy(k.addr, addr);
	v = bpf_map_lookup_elem(&kvx_nd, &k);
	/* An owner quiet for longer than the bridge remembers its port may
	 * have changed its MAC since (on its own port: nd_owner_nat66 gives
	 * the address to the new MAC with its first frame): the neighbour
	 * cache asks again, where the owner's old MAC would be flooded to
	 * every port. */
	if (!v || v->state != KVX_ND_OWNED || v->last_seen_ns + KVX_GUEST_IDLE_NS <= now)
		return;
	__builtin_memcpy(guest->guest_mac, v->mac, 6);
	__builtin_memcpy(guest->gw_mac, cfg6->bridge_mac, 6);
}

/*
 * outside -> guest (ct_ingress), for a packet to the uplink address or a
 * mapped one: the guest endpoint (address into guest_addr, port, MACs and
 * the flow's static flags into guest), or KVX_R_PASS_HOST when no binding
 * owns it or a dynamic binding has no flow that wants it (ct_unsolicited:
 * APDF unless --eif).  KVX_NO_MAPPING: a new inbound flow for the caller
 * to make (ct6_create): to a static mapping (a port forward, a 1:1
 * address: any protocol, an echo request too), or EIF.
 */
static __noinline int ct6_ingress(const struct kvx_cfg *cfg, const struct kvx_pkt6 *p6, __u64 now,
				  struct nat_endpoint *guest, __be32 *guest_addr)
{
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib = NULL;
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;
	__u8 flags = 0, state;
	int echo_req, r;

	if (!cfg || !p6 || !guest || !guest_addr)
		return KVX_R_PASS_HOST;
	/* Echo requests are the host's to answer, but at a 1:1 address. */
	echo_req = p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.icmp_type == ICMPV6_ECHO_REQUEST;
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.icmp_type != ICMPV6_ECHO_REPLY && !echo_req)
		return KVX_R_PASS_HOST;
	if (!echo_req) {
		bind6_key_init(&ik, KVX_BIND_IN, p6->p.proto, p6->daddr, p6->p.dport);
		ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
		if (ib && (ib->bind.flags & KVX_BIND_F_STATIC))
			flags = KVX_CT_F_STATIC;
	}
	if (!ib) {
		/* Only a 1:1 mapping is a wildcard (bind_in_find). */
		bind6_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, p6->daddr, 0);
		ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
		if (!ib || !(ib->bind.flags & KVX_BIND_F_ONE_TO_ONE))
			return KVX_R_PASS_HOST;
		flags = KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE;
	}
	addr6_copy(guest_addr, ib->addr);
	guest->port = flags & KVX_CT_F_ONE_TO_ONE ? p6->p.dport : ib->bind.port;
	guest->flags = flags;
	__builtin_memcpy(guest->guest_mac, ib->bind.guest_mac, 6);
	__builtin_memcpy(guest->gw_mac, ib->bind.gw_mac, 6);

	ct6_key_init(&k, p6->p.proto, guest_addr, guest->port, p6->saddr, p6->p.sport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	/* RFC 4787: static mappings accept new inbound connections. */
	if (!f && !flags) {
		r = ct_unsolicited(cfg, &p6->p, &ib->bind);
		if (r != KVX_CONTINUE)
			return r;
	}
	/* Ours, but it would expire on the way: before it touches the flow. */
	if (p6->p.ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	if (mac_is_zero(guest->guest_mac))
		guest6_mac_from_owner(guest_addr, guest, now);
	/* RFC 8200 8.1: a zero UDP checksum is invalid.  Only a guest's
	 * packet is refused for it: the host may accept some (RFC 6936,
	 * udp6zerocsumrx tunnels). */
	if (p6->flags & KVX_PKT6_F_UDP_NO_CSUM)
		return KVX_R_DROP_UDP_NO_CSUM;
	if (!f) {
		/* Only a SYN opens a TCP flow from outside, and only a
		 * half-open one (SYN_RECV, a short timeout) until the
		 * guest's SYN-ACK and the remote's ACK complete it. */
		if (!tcp_may_open(&p6->p, CT_DIR_IN))
			return KVX_R_DROP_TCP_NO_FLOW;
		/* Within the guest's quota for flows opened from outside
		 * (its own counter: a LAN flood cannot take the guest's
		 * outbound share), in the slot ct6_create counts it in. */
		r = ct6_quota_check(cfg,
				    ct6_slot(cfg, p6->p.proto, guest_addr, guest->port, p6->daddr,
					     p6->p.dport),
				    KVX_CT_F_INBOUND, p6, now);
		if (r != KVX_CONTINUE)
			return r;
		if (!flags) {
			/* A second flow through a dynamic binding (EIF).
			 * Atomic: bind6_tw_mark's flags share the word. */
			bind_flags_or(&ib->bind, KVX_BIND_F_MULTI);
			ib->bind.last_used_ns = now;
		}
		return KVX_NO_MAPPING; /* the caller makes it (ct6_create) */
	}
	if (!addr6_eq(f->ext_addr, p6->daddr) || f->ct.ext_port != p6->p.dport)
		return KVX_R_DROP_BROKEN_PAIR;
	state = f->ct.state;
	r = ct_update(&f->ct, &p6->p, CT_DIR_IN, now);
	/* A SYN that reopened a closed flow from outside: half-open again
	 * (ct_ingress). */
	if (r == KVX_CONTINUE && state != KVX_CT_SYN_RECV && f->ct.state == KVX_CT_SYN_RECV)
		ct6_halfopen_push(cfg, &k, f);
	/* Inbound traffic keeps the binding its owner's too: idle
	 * (bind6_mac_owns) means no traffic either way. */
	if (r == KVX_CONTINUE && ib->bind.last_used_ns + KVX_BIND_REFRESH_NS < now)
		ib->bind.last_used_ns = now;
	if (r == KVX_CONTINUE)
		bind6_tw_mark(ib, f, p6, 0, now);
	return r;
}

/* Is p's destination (not the uplink address) a static mapping's: a 1:1
 * address, or a port forward's endpoint?  Not inlined: its key stays off
 * the caller's frame. */
static __noinline int bind6_is_mapped(const struct kvx_pkt6 *p6)
{
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;

	if (!p6)
		return 0;
	bind6_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, p6->daddr, 0);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (ib && (ib->bind.flags & KVX_BIND_F_ONE_TO_ONE))
		return 1;
	if (p6->p.proto != IPPROTO_TCP && p6->p.proto != IPPROTO_UDP)
		return 0;
	bind6_key_init(&ik, KVX_BIND_IN, p6->p.proto, p6->daddr, p6->p.dport);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	return ib && (ib->bind.flags & KVX_BIND_F_STATIC);
}

#endif /* KVX_CT6_H */
