/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Conntrack: NAT bindings (endpoint-independent mappings, RFC 4787 REQ-1)
 * and per-flow entries (filtering, TCP state, timeouts).  See abi.h for the
 * pair-ordering invariant ("OUT half exists => IN half exists").
 */
#ifndef KVX_CT_H
#define KVX_CT_H

#include <linux/errno.h>
#include "maps.h"
#include "parse.h"

/* How many external ports one new binding may probe before giving up. */
#define KVX_PORT_TRIES 64

/* Returned by the lookups below when the packet may be translated. */
#define KVX_CONTINUE KVX_R_MAX

enum ct_dir {
	CT_DIR_OUT, /* guest -> remote */
	CT_DIR_IN,  /* remote -> guest */
};

struct nat_endpoint {
	__be32 addr;
	__be16 port;
	__u8 guest_mac[6]; /* inbound only: where to deliver */
	__u8 gw_mac[6];
};

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline int proto_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP;
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
		}
	}
	/* Write only what changed: the value's cache line is shared by CPUs. */
	if (flags != f->flags)
		f->flags = flags;
	if (state != f->state)
		f->state = state;
}

static __always_inline int ct_create(const struct kvx_ct_key *k, const struct kvx_pkt *p,
				     enum ct_dir dir, __be32 ext_addr, __be16 ext_port, __u64 now)
{
	struct kvx_ct_val v = {};
	struct kvx_ct_val *f;
	int err;

	v.created_ns = now;
	v.last_seen_ns = now;
	v.ext_addr = ext_addr;
	v.ext_port = ext_port;
	v.state = p->proto == IPPROTO_TCP ? ct_initial_tcp_state(p->tcp_flags) : KVX_CT_UDP;
	if (dir == CT_DIR_OUT) {
		v.pkts_out = 1;
	} else {
		v.flags = KVX_CT_F_INBOUND;
		v.pkts_in = 1;
	}
	err = bpf_map_update_elem(&kvx_ct, k, &v, BPF_NOEXIST);
	if (!err)
		return KVX_CONTINUE;
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
 * is free (RFC 4787 REQ-3 "port preservation" where possible); otherwise a
 * linear probe from a random start.
 */
static __always_inline int bind_create(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				       const __u8 *guest_mac, const __u8 *gw_mac, __u64 now,
				       struct nat_endpoint *ext)
{
	struct kvx_bind_key ik, ok;
	struct kvx_bind_val iv = {}, ov = {};
	struct kvx_bind_val *won;
	__u32 lo = cfg->nat_port_lo, hi = cfg->nat_port_hi;
	__u32 range, start, want, i;
	int err;

	iv.addr = p->saddr;
	iv.port = p->sport;
	iv.last_used_ns = now;
	__builtin_memcpy(iv.guest_mac, guest_mac, 6);
	__builtin_memcpy(iv.gw_mac, gw_mac, 6);
	bind_key_init(&ik, KVX_BIND_IN, p->proto, cfg->uplink_addr, 0);

	if (!proto_has_ports(p->proto)) {
		/* Address-only: one guest per protocol at a time. */
		err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
		if (err)
			return err == -EEXIST ? KVX_R_DROP_PORTS_EXHAUSTED : KVX_R_DROP_TABLE_FULL;
		goto claimed;
	}

	if (lo == 0 || hi < lo)
		return KVX_R_DROP_PORTS_EXHAUSTED;
	range = hi - lo + 1;
	want = bpf_ntohs(p->sport);
	start = (want >= lo && want <= hi) ? want - lo : bpf_get_prandom_u32() % range;
	for (i = 0; i < KVX_PORT_TRIES; i++) {
		if (i >= range)
			return KVX_R_DROP_PORTS_EXHAUSTED;
		ik.port = bpf_htons(lo + (start + i) % range);
		err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
		if (!err)
			goto claimed;
		if (err != -EEXIST)
			return KVX_R_DROP_TABLE_FULL;
	}
	return KVX_R_DROP_PORTS_EXHAUSTED;

claimed:
	bind_key_init(&ok, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	ov.addr = ik.addr;
	ov.port = ik.port;
	ov.last_used_ns = now;
	err = bpf_map_update_elem(&kvx_bind, &ok, &ov, BPF_NOEXIST);
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

/* Does the IN half at (proto, ext) deliver to the guest endpoint of p? */
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

static __always_inline void bind_in_refresh(struct kvx_bind_val *ib, const __u8 *guest_mac,
					    const __u8 *gw_mac)
{
	/* A re-created VM may come back with the same address, another MAC. */
	if (!mac_eq(ib->guest_mac, guest_mac))
		__builtin_memcpy(ib->guest_mac, guest_mac, 6);
	if (!mac_eq(ib->gw_mac, gw_mac))
		__builtin_memcpy(ib->gw_mac, gw_mac, 6);
}

/*
 * The guest endpoint's binding: reuse it when it is on the current uplink
 * address and its IN half still points back to this guest; repair a missing
 * IN half; release a stale or stolen pair and bind anew.  Never translates
 * through a pair whose halves disagree (PITFALLS 4).
 */
static __always_inline int bind_get(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				    const __u8 *guest_mac, const __u8 *gw_mac, __u64 now,
				    struct nat_endpoint *ext)
{
	struct kvx_bind_key ok, ik;
	struct kvx_bind_val *ob, *ib, iv = {};
	__be32 old_addr;
	__be16 old_port;

	bind_key_init(&ok, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	ob = bpf_map_lookup_elem(&kvx_bind, &ok);
	if (!ob)
		return bind_create(cfg, p, guest_mac, gw_mac, now, ext);

	old_addr = ob->addr;
	old_port = ob->port;
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
	return bind_create(cfg, p, guest_mac, gw_mac, now, ext);
}

/* guest -> outside: the external endpoint for this packet, creating the
 * binding and the flow as needed. */
static __always_inline int ct_egress(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				     const __u8 *guest_mac, const __u8 *gw_mac, __u64 now,
				     struct nat_endpoint *ext)
{
	struct kvx_ct_key k;
	struct kvx_ct_val *f;
	struct kvx_bind_val *ib;
	int r;

	ct_key_init(&k, p->proto, p->saddr, p->sport, p->daddr, p->dport);
	f = bpf_map_lookup_elem(&kvx_ct, &k);
	if (f && f->ext_addr == cfg->uplink_addr) {
		/* Fast path: the flow knows its external endpoint; one more
		 * lookup proves the pair is still intact. */
		ib = bind_in_lookup_own(p, f->ext_addr, f->ext_port);
		if (ib) {
			bind_in_refresh(ib, guest_mac, gw_mac);
			ext->addr = f->ext_addr;
			ext->port = f->ext_port;
			ct_update(f, p, CT_DIR_OUT, now);
			return KVX_CONTINUE;
		}
	}

	r = bind_get(cfg, p, guest_mac, gw_mac, now, ext);
	if (r != KVX_CONTINUE)
		return r;
	if (f) {
		f->ext_addr = ext->addr;
		f->ext_port = ext->port;
		ct_update(f, p, CT_DIR_OUT, now);
		return KVX_CONTINUE;
	}
	return ct_create(&k, p, CT_DIR_OUT, ext->addr, ext->port, now);
}

/* outside -> guest: the guest endpoint for a packet to (daddr, dport), or
 * KVX_R_PASS_HOST when no binding owns it (the host's own traffic). */
static __always_inline int ct_ingress(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				      __u64 now, struct nat_endpoint *guest)
{
	struct kvx_bind_key ik;
	struct kvx_bind_val *ib;
	struct kvx_ct_key k;
	struct kvx_ct_val *f;

	bind_key_init(&ik, KVX_BIND_IN, p->proto, p->daddr, proto_has_ports(p->proto) ? p->dport : 0);
	ib = bpf_map_lookup_elem(&kvx_bind, &ik);
	if (!ib)
		return KVX_R_PASS_HOST;
	guest->addr = ib->addr;
	guest->port = ib->port;
	__builtin_memcpy(guest->guest_mac, ib->guest_mac, 6);
	__builtin_memcpy(guest->gw_mac, ib->gw_mac, 6);

	ct_key_init(&k, p->proto, ib->addr, ib->port, p->saddr, p->sport);
	f = bpf_map_lookup_elem(&kvx_ct, &k);
	if (!f) {
		/* RFC 4787: address-and-port-dependent filtering unless the
		 * user asked for endpoint-independent ("full cone"). */
		if (!(cfg->flags & KVX_CFG_F_EIF))
			return KVX_R_DROP_FILTERED;
		ib->last_used_ns = now;
		return ct_create(&k, p, CT_DIR_IN, p->daddr, ik.port, now);
	}
	if (f->ext_addr != p->daddr || f->ext_port != ik.port)
		return KVX_R_DROP_BROKEN_PAIR;
	ct_update(f, p, CT_DIR_IN, now);
	return KVX_CONTINUE;
}

#endif /* KVX_CT_H */
