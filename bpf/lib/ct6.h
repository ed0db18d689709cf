/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv6 conntrack and NAT66 bindings (kvx_ct6, kvx_bind6): the IPv4 rules of
 * ct.h with 128-bit keys.  The values embed the IPv4 ones (abi.h), so the
 * flow's TCP tracking and timeouts (ct_update, ct_val_init), the inbound
 * opening rule (tcp_may_open) and the filtering of unsolicited packets
 * (ct_unsolicited) are ct.h's own code.  The pair invariant is the same:
 * the IN half is inserted first with BPF_NOEXIST (the claim on the external
 * port), the OUT half second and deleted first.  Two rules differ, for want
 * of IPv4's kvx_guest and quotas: a binding belongs to the MAC that made it
 * (bind6_mac_owns), and a guest opens a TCP flow with a SYN only
 * (tcp6_may_open_out).
 *
 * Not here yet (IPv4 has them): static mappings, TIME_WAIT port reuse,
 * address ownership (kvx_guest), per-guest quotas and port limits, reclaim
 * of expired flows when the table is full (the daemon's GC expires them).
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

struct nat6_rewrite {
	__be32 addr[4]; /* the new address of the side rewritten */
	__be32 nh[4];	/* fib6_route: the next hop, for bpf_redirect_neigh */
	__u32 ifindex;	/* fib6_route: the egress device */
	__u32 mtu;	/* fib6_route: the route's MTU (for a Packet Too Big) */
	__u8 smac[8];	/* 8-byte slots: aligned word loads for the verifier */
	__u8 dmac[8];
	__be16 port; /* the new port (ICMPv6 echo: the identifier) */
	__u8 src;    /* rewrite the source side, else the destination */
	__u8 macs;   /* set smac/dmac, else leave them (bpf_redirect_neigh fills them) */
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

/*
 * A binding's guest_mac is its owner (IPv6 has no kvx_guest yet): a frame
 * from another MAC with the binding's guest endpoint is refused
 * (DROP_SPOOF_MAC), else one UDP packet or bare ACK from guest B with guest
 * A's address and port would move A's inbound traffic to B.  Only a binding
 * idle for KVX_GUEST_IDLE_NS goes to the new MAC (a VM re-created with
 * another MAC).  Sum form, not `now - last < idle`: the clock is cached per
 * CPU (clock.h), the owner's refresh on another CPU can be a jiffy ahead of
 * this CPU's now, and the difference would wrap to "idle for ages".
 */
static __always_inline int bind6_mac_owns(const struct kvx_bind6_val *ib, const __u8 *macs,
					  __u64 now)
{
	return mac_eq(ib->bind.guest_mac, macs) || ib->bind.last_used_ns + KVX_GUEST_IDLE_NS <= now;
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

/*
 * One probe of bind6_create: claim port (host order) on the uplink address
 * for p's guest endpoint (the IN half, BPF_NOEXIST) unless the host listens
 * on it.  Returns 0 when claimed (or already the endpoint's own pair, whose
 * OUT half was lost: kept, RFC 4787 REQ-1), -EEXIST when taken, another
 * error when the table is full.  A global function, as IPv4's
 * bind_claim_port: the probe loop's body is verified once, not once per
 * iteration and state (inlined, the loop took kvx_br6 past a million
 * instructions).  Key and value are built on this frame: 6.1's map helpers
 * refuse a global function's pointer arguments, and the caller's frame
 * stays small (the chain of frames is limited to 512 bytes).
 */
__noinline int bind6_claim(const struct kvx_pkt6 *p6, const struct nat_macs *macs, __u64 now,
			   __u32 port)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_key k;
	struct kvx_bind6_val v;
	struct kvx_bind6_val *own;
	int err;

	if (!p6 || !macs || !cfg6)
		return -EINVAL;
	if (port_host_listens(port))
		return -EEXIST;
	bind6_in_init(&k, &v, p6, macs->b, cfg6->uplink_addr, bpf_htons(port), now);
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

/*
 * The OUT half of a pair whose IN half (at ext_addr, *ext_port) was just
 * claimed; its value names the external endpoint.  If another CPU bound
 * the guest endpoint first, the claim is released and its binding used
 * (*ext_port).  Not inlined: its key and value stay off the frames of the
 * chain down to bind6_claim.
 */
static __noinline int bind6_out_insert(const struct kvx_pkt6 *p6, const __be32 *ext_addr,
				       __be16 *ext_port, __u64 now)
{
	struct kvx_bind6_key k;
	struct kvx_bind6_val v;
	struct kvx_bind6_val *won;
	int err;

	if (!p6 || !ext_addr || !ext_port)
		return KVX_R_DROP_TABLE_FULL;
	__builtin_memset(&v, 0, sizeof(v));
	addr6_copy(v.addr, ext_addr);
	v.bind.port = *ext_port;
	v.bind.last_used_ns = now;
	bind6_key_init(&k, KVX_BIND_OUT, p6->p.proto, p6->saddr, p6->p.sport);
	err = bpf_map_update_elem(&kvx_bind6, &k, &v, BPF_NOEXIST);
	if (!err)
		return KVX_CONTINUE;
	bind6_key_init(&k, KVX_BIND_IN, p6->p.proto, ext_addr, *ext_port);
	bpf_map_delete_elem(&kvx_bind6, &k);
	if (err != -EEXIST)
		return KVX_R_DROP_TABLE_FULL;
	bind6_key_init(&k, KVX_BIND_OUT, p6->p.proto, p6->saddr, p6->p.sport);
	won = bpf_map_lookup_elem(&kvx_bind6, &k);
	if (!won || !addr6_eq(won->addr, ext_addr))
		return KVX_R_DROP_BROKEN_PAIR;
	*ext_port = won->bind.port;
	return KVX_CONTINUE;
}

/*
 * A new binding for p's guest endpoint on the uplink address, as
 * bind_create: the guest's own port when it lies in the pool, else random
 * probes (a small pool scanned whole); ports the host listens on
 * (kvx_portx) are never taken.  ext_port receives the port.
 */
static __noinline int bind6_create(const struct kvx_cfg *cfg, const struct kvx_pkt6 *p6,
				   const __u8 *macs, __u64 now, __be16 *ext_port)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	__u32 lo, hi, slo, shi, hole, range, start, want, port = 0, i;
	int err = -EEXIST;

	if (!cfg || !cfg6 || !p6 || !macs || !ext_port)
		return KVX_R_DROP_TABLE_FULL;
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
	for (i = 0; i < KVX_PORT_TRIES; i++) {
		if (i >= range)
			break;
		port = kvx_nat_pool_port(lo, hi, slo, shi,
					 (i == 0 || range <= KVX_PORT_TRIES) ?
						 (start + i) % range :
						 bpf_get_prandom_u32() % range);
		err = bind6_claim(p6, (const struct nat_macs *)macs, now, port);
		if (err != -EEXIST)
			break;
	}
	if (err == -EEXIST)
		return KVX_R_DROP_PORTS_EXHAUSTED;
	if (err == -EPERM)
		return KVX_R_DROP_SPOOF_MAC;
	if (err)
		return KVX_R_DROP_TABLE_FULL;

	*ext_port = bpf_htons(port);
	return bind6_out_insert(p6, cfg6->uplink_addr, ext_port, now);
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

/*
 * The guest endpoint's binding (bind_get): reused while it is on the
 * current uplink address and its IN half points back to the guest; a
 * missing IN half is re-claimed (the same port, flagged MULTI as IPv4's
 * bind_in_reclaim); a stale or stolen pair is released (OUT first), and
 * KVX_NO_MAPPING tells the caller to bind anew (bind6_create: called from
 * there, one frame less deep).
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
	addr6_copy(old_addr, ob->addr);
	old_port = ob->bind.port;
	if (addr6_eq(old_addr, cfg6->uplink_addr)) {
		ib = bind6_in_own(p6, old_addr, old_port);
		if (ib) {
			if (!bind6_mac_owns(ib, macs, now))
				return KVX_R_DROP_SPOOF_MAC;
			bind6_in_refresh(ib, macs, now);
			if (!(ib->bind.flags & KVX_BIND_F_MULTI))
				ib->bind.flags |= KVX_BIND_F_MULTI;
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
	bpf_map_delete_elem(&kvx_bind6, &ok);
	if (ib) {
		bind6_key_init(&ok, KVX_BIND_IN, p6->p.proto, old_addr, old_port);
		bpf_map_delete_elem(&kvx_bind6, &ok);
	}
	return KVX_NO_MAPPING;
}

/*
 * A new flow of the guest endpoint (guest_addr, guest_port) with p's
 * remote, bound to (uplink address, ext_port) (ct_create, without its
 * reclaim: the daemon's GC expires kvx_ct6); KVX_CT_RACE when another CPU
 * just made it (ct6_race).  Called by the programs themselves: its key and
 * value (136 bytes) are on no deeper chain of frames.
 */
static __noinline int ct6_create(const struct kvx_pkt6 *p6, enum ct_dir dir,
				 const __be32 *guest_addr, __be16 guest_port, __be16 ext_port)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	__u64 now = clock_now_ns();
	struct kvx_ct6_key k;
	struct kvx_ct6_val v;
	int err;

	if (!cfg6 || !p6 || !guest_addr)
		return KVX_R_DROP_TABLE_FULL;
	if (dir == CT_DIR_OUT)
		ct6_key_init(&k, p6->p.proto, guest_addr, guest_port, p6->daddr, p6->p.dport);
	else
		ct6_key_init(&k, p6->p.proto, guest_addr, guest_port, p6->saddr, p6->p.sport);
	ct_val_init(&v.ct, &p6->p, dir, ext_port, 0, now);
	addr6_copy(v.ext_addr, cfg6->uplink_addr);
	err = bpf_map_update_elem(&kvx_ct6, &k, &v, BPF_NOEXIST);
	if (!err)
		return KVX_CONTINUE;
	return err == -EEXIST ? KVX_CT_RACE : KVX_R_DROP_TABLE_FULL;
}

/* ct6_create's KVX_CT_RACE: another CPU made the flow first; this packet
 * is accounted to it.  Apart from ct6_create: its frame and ct_update's
 * on one chain took kvx_br6 past 512 bytes as 6.1 counts them. */
static __noinline int ct6_race(const struct kvx_pkt6 *p6, enum ct_dir dir,
			       const __be32 *guest_addr, __be16 guest_port)
{
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!p6 || !guest_addr)
		return KVX_R_DROP_TABLE_FULL;
	if (dir == CT_DIR_OUT)
		ct6_key_init(&k, p6->p.proto, guest_addr, guest_port, p6->daddr, p6->p.dport);
	else
		ct6_key_init(&k, p6->p.proto, guest_addr, guest_port, p6->saddr, p6->p.sport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f)
		return KVX_R_DROP_TABLE_FULL;
	return ct_update(&f->ct, &p6->p, dir, clock_now_ns());
}

/*
 * A guest opens an IPv6 TCP flow with a SYN only, never mid-stream with a
 * bare ACK as IPv4's tcp_may_open allows (a flow the datapath lost): such
 * a flow would start ESTABLISHED (days), and with no per-guest quota for
 * IPv6 yet one guest's ACKs to random remotes could fill kvx_ct6 for days.
 * From a SYN, a flow stays SYN_SENT (a short timeout) until the remote
 * answers.
 */
static __always_inline int tcp6_may_open_out(const struct kvx_pkt *p)
{
	__u8 tf = p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN | KVX_TCP_RST);

	return p->proto != IPPROTO_TCP || tf == KVX_TCP_SYN;
}

/*
 * guest -> outside (ct_egress), first half: the flow's external port when
 * the flow exists on the current uplink address and its binding is intact
 * (KVX_CONTINUE); KVX_NO_MAPPING when the packet needs a binding (then
 * bind6_reuse / bind6_create and ct6_commit_out, called by the program
 * itself: one chain of frames less deep), or a drop reason.
 */
static __noinline int ct6_egress(const struct kvx_pkt6 *p6, const __u8 *macs, __u64 now,
				 __be16 *ext_port)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_val *ib;
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!cfg6 || !p6 || !macs || !ext_port)
		return KVX_R_DROP_TABLE_FULL;
	ct6_key_init(&k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f)
		return tcp6_may_open_out(&p6->p) ? KVX_NO_MAPPING : KVX_R_DROP_TCP_NO_FLOW;
	if (!addr6_eq(f->ext_addr, cfg6->uplink_addr))
		return KVX_NO_MAPPING; /* bound to an old uplink address */
	ib = bind6_in_own(p6, f->ext_addr, f->ct.ext_port);
	if (!ib)
		return KVX_NO_MAPPING;
	if (!bind6_mac_owns(ib, macs, now))
		return KVX_R_DROP_SPOOF_MAC;
	bind6_in_refresh(ib, macs, now);
	*ext_port = f->ct.ext_port;
	return ct_update(&f->ct, &p6->p, CT_DIR_OUT, now);
}

/* guest -> outside, second half: the flow moved to the binding (on the
 * uplink address, ext_port) that bind6_reuse / bind6_create gave;
 * KVX_NO_MAPPING: no flow yet (ct6_create). */
static __noinline int ct6_commit_out(const struct kvx_pkt6 *p6, __be16 ext_port, __u64 now)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!cfg6 || !p6)
		return KVX_R_DROP_TABLE_FULL;
	ct6_key_init(&k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f)
		return KVX_NO_MAPPING; /* the caller makes it (ct6_create) */
	addr6_copy(f->ext_addr, cfg6->uplink_addr);
	f->ct.ext_port = ext_port;
	return ct_update(&f->ct, &p6->p, CT_DIR_OUT, now);
}

/*
 * outside -> guest (ct_ingress), for a packet to the uplink address: the
 * guest endpoint (address into guest_addr, port and MACs into guest), or
 * KVX_R_PASS_HOST when no binding owns it or its binding has no flow that
 * wants it (ct_unsolicited: APDF unless --eif).  KVX_NO_MAPPING: a new
 * inbound flow (EIF) for the caller to make (ct6_create).
 */
static __noinline int ct6_ingress(const struct kvx_cfg *cfg, const struct kvx_pkt6 *p6, __u64 now,
				  struct nat_endpoint *guest, __be32 *guest_addr)
{
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;
	int r;

	if (!cfg || !p6 || !guest || !guest_addr)
		return KVX_R_PASS_HOST;
	/* Echo requests to the uplink address are the host's to answer. */
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.icmp_type != ICMPV6_ECHO_REPLY)
		return KVX_R_PASS_HOST;
	bind6_key_init(&ik, KVX_BIND_IN, p6->p.proto, p6->daddr, p6->p.dport);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (!ib)
		return KVX_R_PASS_HOST;
	addr6_copy(guest_addr, ib->addr);
	guest->port = ib->bind.port;
	__builtin_memcpy(guest->guest_mac, ib->bind.guest_mac, 6);
	__builtin_memcpy(guest->gw_mac, ib->bind.gw_mac, 6);

	ct6_key_init(&k, p6->p.proto, guest_addr, guest->port, p6->saddr, p6->p.sport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f) {
		r = ct_unsolicited(cfg, &p6->p, &ib->bind);
		if (r != KVX_CONTINUE)
			return r;
	}
	/* Ours, but it would expire on the way: before it touches the flow. */
	if (p6->p.ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	/* RFC 8200 8.1: a zero UDP checksum is invalid.  Only a guest's
	 * packet is refused for it: the host may accept some (RFC 6936,
	 * udp6zerocsumrx tunnels). */
	if (p6->flags & KVX_PKT6_F_UDP_NO_CSUM)
		return KVX_R_DROP_UDP_NO_CSUM;
	if (!f) {
		if (!tcp_may_open(&p6->p, CT_DIR_IN))
			return KVX_R_DROP_TCP_NO_FLOW;
		/* A second flow through a dynamic binding (EIF); the caller
		 * makes it (ct6_create). */
		ib->bind.flags |= KVX_BIND_F_MULTI;
		ib->bind.last_used_ns = now;
		return KVX_NO_MAPPING;
	}
	if (!addr6_eq(f->ext_addr, p6->daddr) || f->ct.ext_port != p6->p.dport)
		return KVX_R_DROP_BROKEN_PAIR;
	return ct_update(&f->ct, &p6->p, CT_DIR_IN, now);
}

#endif /* KVX_CT6_H */
