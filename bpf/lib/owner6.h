/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Who owns a guest's IPv6 address (kvx_nd; abi.h, docs/ipv6.md): one MAC,
 * for both modes, so that one guest cannot send from, or take the traffic
 * of, another guest's address.  What IPv4's kvx_guest is to a subnet of a
 * few hundred addresses, for a /64: an address is a guest's by its
 * duplicate address detection or (NAT66) its first frame, at most
 * KVX_ND_PER_GUEST of them per guest (its bridge port, kvx_gaddrs) in a
 * plain hash the daemon cleans (an idle guest's entries go after an hour),
 * never an LRU a flood could evict a quiet guest's claim from.
 *
 * Relay (relay6.h): the address is the LAN's too, so it is the guest's
 * only through a DAD no LAN host answered.  NAT66 (nat6.h): the prefix is
 * the guests' alone and every guest sees every other's DAD probe on the
 * bridge, so the first frame from an unclaimed address claims it at once,
 * as IPv4's first translated frame does.
 */
#ifndef KVX_OWNER6_H
#define KVX_OWNER6_H

#include "ct6.h"

/* nd_owner's how: */
#define KVX_OWN_PROBE 1 /* a DAD probe for addr (NS from ::), else a frame from it */
#define KVX_OWN_NAT66 2 /* NAT66's rule: a frame claims; a pending entry is its MAC's */

static __always_inline struct kvx_nd_val *nd_lookup(const __be32 *addr)
{
	struct kvx_nd_key k;

	addr6_copy(k.addr, addr);
	return bpf_map_lookup_elem(&kvx_nd, &k);
}

/* Owned by a guest: forwarded to, answered for.  Pending for a whole DAD
 * run (KVX_ND_DAD_NS from its first probe) with no defence from the LAN
 * is as good: a guest that sends nothing from its new address (a server)
 * is still reached.  Pending without a probe yet (dad_probes 0: claimed
 * by a frame, the daemon's probe to come) is nobody's. */
static __always_inline int nd_val_owned(const struct kvx_nd_val *v, __u64 now)
{
	return v && (v->state == KVX_ND_OWNED || (v->state == KVX_ND_PENDING && v->dad_probes &&
						  v->dad_ns + KVX_ND_DAD_NS <= now));
}

/* A guest's or being made one (not the host's, nor one a LAN host
 * defended: that one is the LAN host's). */
static __always_inline int nd_val_guest(const struct kvx_nd_val *v)
{
	return v && (v->state == KVX_ND_PENDING || v->state == KVX_ND_OWNED);
}

static __always_inline int nd_is_guest(const __be32 *addr)
{
	return nd_val_owned(nd_lookup(addr), clock_now_ns());
}

/* The kvx_gaddrs counter of the guest whose MAC is mac8 (brport_of8's
 * 8-byte buffer): its bridge port's (abi.h kvx_brport; a MAC of no known
 * port: the slot all of them share), so that a guest rotating its MAC has
 * one limit. */
static __always_inline __u32 *nd_guest_count(const __u8 *mac8)
{
	const struct kvx_cfg *cfg = cfg_get();
	__u32 slot;

	if (!cfg)
		return NULL;
	slot = kvx_port_slot(brport_of8(mac8), cfg->guest_seed);
	return bpf_map_lookup_elem(&kvx_gaddrs, &slot);
}

/* A guest's frame from an address pending since dad_ns is its own once
 * this much of the run passed: the guest's DAD timer (RetransTimer after
 * its probe) ends a hair before ours, which started when its probe came
 * here; a LAN host defends within milliseconds of the probe. */
#define KVX_ND_DAD_FRAME_NS (KVX_ND_DAD_NS / 2)

/*
 * NAT66: may mac (8 bytes, as nd_owner's) take an address v's MAC owns?
 * KVX_CONTINUE: yes (nd_owner takes it over); else nd_owner's answer.
 * A guest is its bridge port (kvx_brport, placed by the daemon): a new MAC
 * on the owner's own port is the same guest (it changed its MAC: its DAD
 * with the new one must not fail for good), and takes the address at
 * once - unless the owner's MAC was moved to that port lately: a guest
 * that sends one frame with another's MAC moves it to its own port, and
 * would then take that guest's addresses with its own MAC.  A guest on
 * another port never takes an address whose owner's port is still there,
 * idle or not: a quiet guest keeps its addresses
 * until the daemon forgets them (an hour idle) or releases them with its
 * port (its VM went).  Only an owner of no known port (never placed: it
 * sent before the daemon was there, or an owner seeded at attach) gives
 * an address up after KVX_GUEST_IDLE_NS, as IPv4's learnt owners do.  A
 * probe from a MAC of no known port yet (a guest that just changed it) is
 * passed on unanswered and claims nothing: who it is is not known for a
 * second, and an owner that is there defends itself.
 */
static __always_inline int nd_owner_nat66(const struct kvx_nd_val *v, const __u8 *mac, int probe,
					  __u64 now)
{
	__u8 old[8] __attribute__((aligned(8))) = {};
	__u32 was_port, port = brport_of8(mac);

	__builtin_memcpy(old, v->mac, ETH_ALEN);
	was_port = brport_of8(old);
	if (port && port == was_port && brport_settled8(old, now))
		return KVX_CONTINUE;
	if (probe && !port)
		return KVX_R_PASS_ND;
	/* Not `now - seen < idle`: the per-CPU clock (see
	 * guest_owner_check). */
	if (v->last_seen_ns + KVX_GUEST_IDLE_NS > now)
		return probe && nd_val_guest(v) ? KVX_R_DROP_ND_DUPLICATE : KVX_R_DROP_SPOOF_MAC;
	if (was_port)
		return probe ? KVX_R_PASS_ND : KVX_R_DROP_SPOOF_MAC;
	return KVX_CONTINUE;
}

/*
 * Relay: the address belongs to mac only through a duplicate address
 * detection that no LAN host answered: a frame from an address takes
 * nothing (a guest sending from a LAN host's address would take that
 * host's traffic: answered for on the uplink, routed to the bridge).
 *
 * A frame (how without KVX_OWN_PROBE) from addr: KVX_CONTINUE when the
 * address is its own (owned, or pending and its DAD over: owned from now);
 * DROP_ND_UNCLAIMED while its DAD runs, or when nobody claimed it (then
 * it is made pending with dad_probes 0, BPF_NOEXIST: of two racing
 * claimers one wins, and the daemon probes the LAN for it);
 * DROP_ND_DUPLICATE when a LAN host defended it; DROP_SPOOF_MAC when
 * another MAC has it; DROP_SPOOFED for the host's (KVX_ND_HOST).
 *
 * A DAD probe (KVX_OWN_PROBE) for addr: KVX_CONTINUE when it is to be
 * relayed: a new run (pending from now, dad_probes 1), or one more probe
 * of the running one (at most KVX_ND_DAD_PROBES: DROP_ND_RELAY_LIMIT);
 * another MAC's address only from an owner idle for KVX_GUEST_IDLE_NS (a
 * VM re-created with a new MAC); DROP_ND_DUPLICATE (the caller answers the
 * probe) for an address a LAN host defended within KVX_ND_DUP_HOLD_NS, or
 * that another MAC owns or claimed and was not idle.
 *
 * NAT66 (KVX_OWN_NAT66): no LAN to ask.  A frame from an address nobody
 * has, or whose owner is idle for KVX_GUEST_IDLE_NS, makes it the frame's
 * MAC's (owned, KVX_CONTINUE), as guest_owner_check does for IPv4; one
 * the MAC's own DAD made pending is owned by its first frame.  A probe
 * claims as relay's does (nothing is relayed: the caller passes it on),
 * and one for another MAC's address is answered the same way.
 *
 * A guest at its address limit (KVX_ND_PER_GUEST, kvx_gaddrs) claims no
 * other: DROP_GUEST_ADDRS.  mac: 8 bytes, the MAC then two zero bytes
 * (brport_of8).
 */
static __noinline int nd_owner(const __be32 *addr, const __u8 *mac, __u32 ifindex, int how)
{
	int probe = how & KVX_OWN_PROBE, nat66 = how & KVX_OWN_NAT66;
	__u8 old[8] __attribute__((aligned(8))) = {};
	struct kvx_nd_val *v, nv = {};
	struct kvx_nd_key k;
	__u64 now = clock_now_ns();
	__u32 *count, *was;
	int err;

	if (!addr || !mac)
		return KVX_R_DROP_SPOOF_MAC;
	if ((mac[0] & 1) || mac_is_zero(mac))
		return KVX_R_DROP_SPOOF_MAC;
	addr6_copy(k.addr, addr);
	v = bpf_map_lookup_elem(&kvx_nd, &k);
	if (v) {
		if (v->state == KVX_ND_HOST)
			return KVX_R_DROP_SPOOFED;
		if (mac_eq(v->mac, mac) && !probe) {
			if (v->state == KVX_ND_DUP)
				return KVX_R_DROP_ND_DUPLICATE;
			if (v->state == KVX_ND_PENDING) {
				/* Not `now - dad_ns`: the per-CPU clock (see
				 * guest_owner_check).  NAT66: its own DAD's
				 * address, which no LAN must have cleared. */
				if (!nat66 &&
				    (!v->dad_probes || v->dad_ns + KVX_ND_DAD_FRAME_NS > now))
					return KVX_R_DROP_ND_UNCLAIMED;
				v->state = KVX_ND_OWNED;
				v->last_seen_ns = now;
			} else if (v->state != KVX_ND_OWNED) {
				return KVX_R_DROP_ND_UNCLAIMED;
			} else if (now - v->last_seen_ns >= KVX_GUEST_REFRESH_NS) {
				v->last_seen_ns = now;
			}
			return KVX_CONTINUE;
		}
		if (mac_eq(v->mac, mac)) {
			if (v->state == KVX_ND_DUP && v->dad_ns + KVX_ND_DUP_HOLD_NS > now)
				return KVX_R_DROP_ND_DUPLICATE;
			if (v->state == KVX_ND_PENDING && v->dad_probes &&
			    v->dad_ns + KVX_ND_DAD_NS > now) {
				if (v->dad_probes >= KVX_ND_DAD_PROBES)
					return KVX_R_DROP_ND_RELAY_LIMIT;
				v->dad_probes++;
				return KVX_CONTINUE;
			}
			/* A new run: a DAD started over (after a defence, a
			 * link that came back), or the first probe for an
			 * address its frame claimed. */
			v->state = KVX_ND_PENDING;
			v->dad_ns = now;
			v->dad_probes = 1;
			v->last_seen_ns = now;
			v->ifindex = ifindex;
			return KVX_CONTINUE;
		}
		if (nat66) {
			int r = nd_owner_nat66(v, mac, probe, now);

			if (r != KVX_CONTINUE)
				return r;
			goto take;
		}
		/* Not `now - seen < idle`: the per-CPU clock (see
		 * guest_owner_check). */
		if (!probe)
			return KVX_R_DROP_SPOOF_MAC;
		/* Another guest's (owned, or pending: its DAD, or a frame's
		 * claim the daemon probes for): the probe is answered.
		 * Passed to the bridge, only the holder could answer, and
		 * one that took a sibling's predictable address before the
		 * sibling booted stays silent: the sibling's DAD would
		 * succeed on an address all of whose frames are dropped and
		 * whose traffic goes to the taker. */
		if (v->last_seen_ns + KVX_GUEST_IDLE_NS > now)
			return nd_val_guest(v) ? KVX_R_DROP_ND_DUPLICATE : KVX_R_DROP_SPOOF_MAC;
	}
take:
	/* A new address for this guest. */
	count = nd_guest_count(mac);
	/* NAT66's takeovers move an entry (mostly within one port's
	 * count: a guest that changed its MAC) and are not refused. */
	if (count && *count >= KVX_ND_PER_GUEST && !(nat66 && v))
		return KVX_R_DROP_GUEST_ADDRS;
	__builtin_memcpy(nv.mac, mac, ETH_ALEN);
	nv.state = nat66 && !probe ? KVX_ND_OWNED : KVX_ND_PENDING;
	nv.dad_probes = probe ? 1 : 0;
	nv.ifindex = ifindex;
	nv.last_seen_ns = now;
	nv.dad_ns = now;
	if (v) {
		/* Taken over from an idle owner by its DAD (NAT66: or its
		 * frame): the address leaves that owner's count. */
		__builtin_memcpy(old, v->mac, ETH_ALEN);
		bpf_map_update_elem(&kvx_nd, &k, &nv, BPF_ANY);
		if (count)
			__sync_fetch_and_add(count, 1);
		/* Never below 0 (two CPUs taking the same entry over): the
		 * datapath reads it unsigned, a wrapped count would refuse
		 * the old owner's port every address until the recount; a
		 * lost exchange leaves it one high until then instead. */
		was = nd_guest_count(old);
		if (was) {
			__u32 n = *was;

			if (n)
				__sync_val_compare_and_swap(was, n, n - 1);
		}
		return KVX_CONTINUE;
	}
	err = bpf_map_update_elem(&kvx_nd, &k, &nv, BPF_NOEXIST);
	if (!err) {
		if (count)
			__sync_fetch_and_add(count, 1);
		return probe || nat66 ? KVX_CONTINUE : KVX_R_DROP_ND_UNCLAIMED;
	}
	if (err != -EEXIST)
		return KVX_R_DROP_TABLE_FULL;
	v = bpf_map_lookup_elem(&kvx_nd, &k);
	if (!v || !mac_eq(v->mac, mac))
		return KVX_R_DROP_SPOOF_MAC;
	return nat66 || (probe && v->dad_probes == 1) ? KVX_CONTINUE : KVX_R_DROP_ND_UNCLAIMED;
}

/*
 * A guest's frame from addr that claims nothing (to the host, neighbour
 * discovery; NAT66): its owner's keeps the address alive, as a translated
 * frame does, so that a guest that talks only to the host or only answers
 * its neighbours is not idle.  Returns -1 when another MAC owns addr and
 * the sender could not take it (nd_owner_nat66: the caller drops the
 * frame), else 0.  mac: 8 bytes,
 * aligned (mac_eq).
 */
static __noinline int nd_seen(const __be32 *addr, const __u8 *mac)
{
	struct kvx_nd_val *v;
	struct kvx_nd_key k;
	__u64 now = clock_now_ns();

	if (!addr || !mac)
		return 0;
	addr6_copy(k.addr, addr);
	v = bpf_map_lookup_elem(&kvx_nd, &k);
	if (!v || !nd_val_guest(v))
		return 0;
	if (mac_eq(v->mac, mac)) {
		if (now - v->last_seen_ns >= KVX_GUEST_REFRESH_NS)
			v->last_seen_ns = now;
		return 0;
	}
	/* Another MAC's: the sender may use it only if it could take it
	 * (its own port's, or an idle owner of no known port's). */
	return nd_owner_nat66(v, mac, 0, now) == KVX_CONTINUE ? 0 : -1;
}

#endif /* KVX_OWNER6_H */
