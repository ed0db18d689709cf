/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KVX_FIB_H
#define KVX_FIB_H

#include <linux/in.h>
#include "parse.h"
#include "clock.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Linux 6.10 (uapi headers of older distributions lack it): the lookup
 * takes the mark, an input in the first 4 bytes of the output smac, for
 * fwmark rules. */
#ifndef BPF_FIB_LOOKUP_MARK
#define BPF_FIB_LOOKUP_MARK (1U << 5)
#endif
#define KVX_FIB_NO_MARK_SUPPORT (-1000) /* fib_route: marked, and the kernel cannot say */

/*
 * Route cache.  The route lookup is the largest single cost of a forwarded
 * packet: 30-55 ns under BPF_PROG_TEST_RUN, ~80 ns in the benchmark, where
 * the FIB, device and neighbour lines it walks are cold (bench/tcprof).
 * Each CPU keeps its last successful lookups, direct-mapped by the lookup's
 * inputs, and answers the same lookup again from them within the same
 * jiffy: a route, neighbour, MTU or forwarding change reaches a flow at most
 * one tick (1-10 ms) late, and the cache is gone a tick after the traffic.
 *
 * A cached answer is the kernel's own only for packets its MTU test would
 * pass whatever the packet: TC: is_skb_forwardable() allows dev->mtu +
 * hard_header_len + VLAN_HLEN bytes (and any GSO skb), a hit needs
 * len - ETH_HLEN <= mtu; XDP: a hit needs an IP length no longer than the
 * one that passed.  Anything longer asks the kernel.  Only SUCCESS is
 * cached (NO_NEIGH, FRAG_NEEDED and the failures always ask again).
 *
 * Per CPU, in .bss (static: not in the skeleton, nothing to pin), indexed
 * by the CPU id (programs run with migration disabled).  A program can be
 * interrupted by another on the same CPU (softirq over a process-context
 * run, e.g. BPF_PROG_TEST_RUN): seq is odd while a writer is at work and
 * moves with every write, so a reader that saw it change, or odd, asks the
 * kernel, and a writer that finds it odd leaves the cache alone.
 */
#define KVX_FIBC_CPUS 64   /* a power of 2; beyond: no cache */
#define KVX_FIBC_SLOTS 16  /* per CPU; a power of 2 */

struct kvx_fibc_slot {
	__u64 jiffies; /* valid while bpf_jiffies64() returns this; 0: empty */
	__be32 saddr;  /* the lookup's inputs ... */
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 in_ifindex;
	__u32 mark;
	__u8 tos;
	__u8 proto;
	__u16 mtu;     /* ... and its answer: a length that passes */
	__u32 oif;
	__be32 gw;     /* ipv4_dst after the lookup: the next hop */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 by_len;   /* tot_len given (XDP): mtu is a passing length */
};

struct kvx_fibc_cpu {
	__u32 seq;
	__u32 _pad;
	struct kvx_fibc_slot slot[KVX_FIBC_SLOTS];
};

static struct kvx_fibc_cpu kvx_fibc[KVX_FIBC_CPUS];

#define kvx_barrier() asm volatile("" ::: "memory")

/*
 * Route the (untranslated) packet as the kernel would, from the device the
 * stack sees it arrive on: the bridge (TC runs there; XDP runs on a port,
 * which has no forwarding of its own, so it names the bridge too).  Needs
 * forwarding enabled on that device (else FWD_DISABLED).
 * TC passes tot_len 0 so the kernel checks the skb itself against the
 * egress MTU, which is GSO-aware (is_skb_forwardable), instead of a plain
 * length that a TSO super-packet would always exceed; XDP frames are never
 * GSO, so XDP passes the IP length and gets FRAG_NEEDED from the lookup.
 * The skb's mark goes into the lookup, so fwmark rules (ip rule fwmark,
 * a VPN's policy routing) route guest traffic as the stack would route it:
 * a lookup without it would take the main table past the policy.  A kernel
 * before 6.10 refuses the flag (-EINVAL): then a marked packet is
 * KVX_FIB_NO_MARK_SUPPORT, for the caller to drop (counted), never routed
 * past the rules; unmarked packets need no flag (the kernel looks up mark 0
 * either way).
 * A call: the cache's locals stay off the caller's frame.
 */
static __noinline int fib_route(kvx_ctx_t *ctx, const struct kvx_pkt *p,
				struct bpf_fib_lookup *fib, __u32 ifindex, __u16 tot_len)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 j = bpf_jiffies64();
	__u32 in_ifindex = ifindex, h, seq = 0, mark = ctx_mark(ctx);
	__u32 flags = mark ? BPF_FIB_LOOKUP_MARK : 0;
	/* TC (tot_len 0): the kernel tests the skb against the device MTU
	 * (mtu_result); XDP: the IP length against the route MTU, and a
	 * SUCCESS leaves mtu_result = tot_len, a length known to pass. */
	__u32 len = tot_len ? tot_len : ctx_len(ctx) - ETH_HLEN;
	__u8 by_len = tot_len != 0;
	__be16 sport = 0, dport = 0;
	struct kvx_fibc_cpu *c = NULL;
	struct kvx_fibc_slot *s = NULL;
	int rc;

	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		sport = p->sport;
		dport = p->dport;
	}
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->tos = p->tos;
	fib->l4_protocol = p->proto;
	fib->sport = sport;
	fib->dport = dport;
	fib->ipv4_src = p->saddr;
	fib->ipv4_dst = p->daddr;
	fib->tot_len = tot_len;
	fib->ifindex = in_ifindex;
	*(__u32 *)fib->smac = mark; /* the 6.10 uapi's input "mark" */

	if (cpu < KVX_FIBC_CPUS) {
		kvx_index_barrier(cpu); /* see clock.h */
		c = &kvx_fibc[cpu & (KVX_FIBC_CPUS - 1)];
		h = p->daddr ^ p->saddr ^ ((__u32)sport << 16 | dport) ^ p->proto ^ mark;
		h ^= h >> 16;
		h ^= h >> 8;
		s = &c->slot[h & (KVX_FIBC_SLOTS - 1)];
		seq = *(volatile __u32 *)&c->seq;
		kvx_barrier();
		if (!(seq & 1) && s->jiffies == j && s->daddr == p->daddr &&
		    s->saddr == p->saddr && s->sport == sport && s->dport == dport &&
		    s->proto == p->proto && s->tos == p->tos && s->in_ifindex == in_ifindex &&
		    s->mark == mark &&
		    s->by_len == by_len && len <= s->mtu) {
			fib->ifindex = s->oif;
			fib->ipv4_dst = s->gw;
			fib->mtu_result = s->mtu;
			__builtin_memcpy(fib->smac, s->smac, ETH_ALEN);
			__builtin_memcpy(fib->dmac, s->dmac, ETH_ALEN);
			kvx_barrier();
			if (*(volatile __u32 *)&c->seq == seq)
				return BPF_FIB_LKUP_RET_SUCCESS;
			/* Rewritten under us: ask the kernel. */
			fib->ifindex = in_ifindex;
			fib->ipv4_dst = p->daddr;
			fib->tot_len = tot_len;
			*(__u32 *)fib->smac = mark;
		}
	}

	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), flags);
	if (rc == -22 /* -EINVAL */ && flags)
		return KVX_FIB_NO_MARK_SUPPORT;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || !c || !s)
		return rc;
	seq = *(volatile __u32 *)&c->seq;
	if (seq & 1)
		return rc; /* a write we interrupted: leave it be */
	*(volatile __u32 *)&c->seq = seq + 1;
	kvx_barrier();
	s->jiffies = j;
	s->saddr = p->saddr;
	s->daddr = p->daddr;
	s->sport = sport;
	s->dport = dport;
	s->in_ifindex = in_ifindex;
	s->mark = mark;
	s->tos = p->tos;
	s->proto = p->proto;
	s->by_len = by_len;
	s->mtu = fib->mtu_result;
	s->oif = fib->ifindex;
	s->gw = fib->ipv4_dst;
	__builtin_memcpy(s->smac, fib->smac, ETH_ALEN);
	__builtin_memcpy(s->dmac, fib->dmac, ETH_ALEN);
	kvx_barrier();
	*(volatile __u32 *)&c->seq = seq + 2;
	return rc;
}

#endif /* KVX_FIB_H */
