/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv4 masquerade: the two packet paths (guest -> outside, outside -> guest)
 * and the header rewrite they share.  Hook-specific details sit behind the
 * context layer (ctx_skb.h), so this compiles for TC today and for XDP with
 * a ctx_xdp.h.
 */
#ifndef KVX_NAT_H
#define KVX_NAT_H

#include "ctx.h"
#include "parse.h"
#include "csum.h"
#include "fib.h"
#include "ct.h"
#include "icmp.h"
#include "stats.h"
#include "clock.h"

enum nat_side {
	NAT_SRC, /* SNAT: rewrite source address/port */
	NAT_DST, /* DNAT: rewrite destination address/port */
};

static __always_inline int reason_is_drop(enum kvx_reason r)
{
	switch (r) {
#define KVX_X_DROP(name, drop, desc)                                                               \
	case KVX_R_##name:                                                                         \
		return drop;
		KVX_REASONS(KVX_X_DROP)
#undef KVX_X_DROP
	default:
		return 1;
	}
}

/* The one exit for every packet that is not translated. */
static __always_inline int verdict(enum kvx_reason r, __u32 len)
{
	stats_count(r, len);
	return reason_is_drop(r) ? CTX_DROP : CTX_PASS;
}

/*
 * RFC 5508 REQ-8: a guest's packet for which no mapping can be made (no
 * free port, a full table, its flow quota or port limit (RFC 6888 REQ-11),
 * a protocol the host tunnels to that remote) is answered with
 * "communication administratively prohibited",
 * so that its connect() fails at once instead of timing out; with no
 * uplink address yet, "network unreachable", as the host itself says
 * without a route.  -1: no answer.
 */
static __always_inline int refusal_code(enum kvx_reason r)
{
	switch (r) {
	case KVX_R_DROP_PORTS_EXHAUSTED:
	case KVX_R_DROP_TABLE_FULL:
	case KVX_R_DROP_GUEST_QUOTA:
	case KVX_R_DROP_GUEST_PORTS:
	case KVX_R_DROP_HOST_TUNNEL:
		return ICMP_PKT_FILTERED;
	case KVX_R_DROP_NO_UPLINK_ADDR:
		return ICMP_NET_UNREACH;
	default:
		return -1;
	}
}

/* The exit of a guest's packet that may be refused: counted under its
 * reason as any other, answered from the gateway when it is a refusal.
 * Not inlined: three call sites on the bridge program's main path, whose
 * frame is at the verifier's limit. */
static __noinline int verdict_guest(kvx_ctx_t *ctx, __be32 gw_addr, __u32 r, __u32 len)
{
	int code = refusal_code(r), rc;

	rc = verdict(r, len);
	if (code < 0)
		return rc;
	code = icmp_reply(ctx, KVX_ICMP_TCM(ICMP_DEST_UNREACH, code, 0), gw_addr);
	return code < 0 ? rc : code;
}

/*
 * Inbound packets a router would answer, from the uplink address: a TTL
 * that expires on the way to a guest (RFC 5508 REQ-10b: time exceeded,
 * which traceroute shows as the host's hop) and a DF packet larger than the
 * bridge takes (fragmentation needed with the bridge's MTU, for the
 * sender's path-MTU discovery).  tcm 0: no answer.
 */
static __always_inline int verdict_uplink(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					  enum kvx_reason r, __u32 len, __u32 tcm)
{
	struct ethhdr *eth = ctx_data(ctx);
	int rc = verdict(r, len), sent;

	/* Only a frame sent to the uplink's own MAC is answered (icmp_reply):
	 * not another host's unicast that a promiscuous uplink sees
	 * (PACKET_OTHERHOST, which the stack drops unanswered), which a LAN
	 * host could use to make us answer from that host's MAC. */
	if (!tcm || (void *)(eth + 1) > ctx_data_end(ctx) || !mac_eq(eth->h_dest, cfg->uplink_mac))
		return rc;
	sent = icmp_reply(ctx, tcm, cfg->uplink_addr);
	return sent < 0 ? rc : sent;
}

static __always_inline int subnet_has(const struct kvx_cfg *cfg, __be32 addr)
{
	return (addr & cfg->subnet_mask) == cfg->subnet_addr;
}

static __always_inline int is_mcast_or_bcast(const struct kvx_cfg *cfg, __be32 addr)
{
	return (bpf_ntohl(addr) >> 28) == 0xe || addr == 0xffffffff ||
	       addr == (cfg->subnet_addr | ~cfg->subnet_mask);
}

/*
 * The IPv4 length of the largest packet this one leaves as.  A GSO skb (a
 * guest's TSO super-packet, a GRO aggregate) is cut into segments of
 * gso_size payload bytes, each behind a copy of the IP and TCP/UDP headers:
 * that is what must fit the MTU (the kernel's skb_gso_validate_network_len).
 */
static __always_inline __u32 pkt_seg_len(const kvx_ctx_t *ctx, const struct kvx_pkt *p)
{
	__u32 ip_len = p->ip_end - ETH_HLEN;
	__u32 gso = ctx_gso_size(ctx), seg;

	if (!gso)
		return ip_len;
	seg = p->l4_off - ETH_HLEN + p->l4_hlen + gso;
	return seg < ip_len ? seg : ip_len;
}

/* The owner's frames rewrite its kvx_guest entry at most this often. */
#define KVX_GUEST_REFRESH_NS 1000000000ULL

/* An ARP packet for IPv4 over Ethernet (RFC 826). */
struct kvx_arp4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

/* Does g's owner keep its address from another MAC?  A lease's always; a
 * learnt owner's until it has been quiet for KVX_GUEST_IDLE_NS.  Not
 * `now - seen < idle`: the clock is cached per CPU (clock.h), so the
 * owner's refresh on another CPU can be a jiffy ahead of this CPU's now,
 * and the difference would wrap to "idle for ages" and hand the address
 * to the spoofer. */
static __always_inline int guest_owner_holds(const struct kvx_guest_val *g, __u64 now)
{
	return (g->flags & KVX_GUEST_F_LEASE) || g->seen_ns + KVX_GUEST_IDLE_NS > now;
}

/* The owner's own frame: a lease marked gone (its VM was off: abi.h
 * KVX_GUEST_F_GONE) is back, delivered to again at once, not only when the
 * daemon next finds its MAC on a port.  A spoofer of the MAC gains nothing
 * by it: the bridge already sends the MAC's frames to it. */
static __always_inline void guest_owner_back(struct kvx_guest_val *g)
{
	if (g->flags & KVX_GUEST_F_GONE)
		g->flags &= ~KVX_GUEST_F_GONE;
}

/*
 * The port guard (abi.h kvx_brport, KVX_BRPORT_F_HELD, kvx_guard): does a
 * frame that came in on bridge port ifindex carry a source MAC (mac8: 8
 * bytes, the MAC then two zero bytes) that another port holds?  Then
 * another guest sends with it: without this one frame would move the MAC
 * to the sender's port (the bridge learns from it), and with it the
 * traffic for that guest and every address its MAC owns.  The bridge
 * device's hook never sees the port; its ports' hooks do.  Only while the
 * daemon's lease runs (sum form: the per-CPU clock; read only for a MAC
 * held on another port).  A MAC placed on another port and not held there
 * passes, marked contested for the daemon (its settle starts over): a
 * guest sending with it as fast as it can would else have it on its own
 * port at nearly every look the daemon takes, and be held there.  Not
 * atomic: a lost mark is made again by the next such frame.  1: drop;
 * KVX_BRPORT_NONE: the MAC is placed on no port (passes); else 0.
 */
#define KVX_BRPORT_NONE 2 /* brport_elsewhere8: the MAC is placed nowhere */

static __always_inline int brport_elsewhere8(const __u8 *mac8, __u32 ifindex)
{
	struct kvx_xfdb_val *v = bpf_map_lookup_elem(&kvx_brport, mac8);
	__u32 zero = 0;
	__u64 *until;

	if (!v)
		return KVX_BRPORT_NONE;
	if (v->ifindex == ifindex)
		return 0;
	if (v->flags & KVX_BRPORT_F_HELD) {
		until = bpf_map_lookup_elem(&kvx_guard, &zero);
		if (until && *until > clock_now_ns())
			return 1;
	}
	if (!(v->flags & KVX_BRPORT_F_CONTESTED))
		v->flags |= KVX_BRPORT_F_CONTESTED;
	return 0;
}

/*
 * A source MAC placed on no port (brport_elsewhere8: KVX_BRPORT_NONE) is
 * placed on the port it came in on (ifindex), before its frame reaches the
 * NAT: a guest's flows and NAT ports count in its port's quota slot (ct.h
 * mac_slot) from a new MAC's first frame.  A MAC that reached the NAT
 * unplaced would count in the slot all unplaced MACs share - a whole share
 * - and what it opened there would move to its port's count at the GC's
 * recount once the daemon placed it: a share more per fresh MAC.  So a
 * frame whose MAC cannot be placed does not go on (1: the caller drops it,
 * DROP_MAC_NEW): past the port's budget of KVX_BRPLACE_PER_WINDOW new MACs
 * a window (abi.h kvx_brplace: a flood of made-up MACs must not fill
 * kvx_brport before the daemon looks, and leave another port's new guest
 * no room), or a full table.  Such a MAC gets in in a later window (an
 * ARP, a DHCP retry): the bridge does not learn from a dropped frame, so
 * the daemon does not place it either, unless the bridge had it already.
 * BPF_NOEXIST: a placed MAC never moves here (the daemon follows the
 * bridge's forwarding database: relay.hpp plan_brport).  Nothing is placed
 * nor refused (0: goes on) for a group or zero MAC, on a port the bridge
 * does not learn on (learning off, locked: kvx_xdev without
 * KVX_XDEV_F_LEARN), whose frames the bridge drops or switches by its own
 * entries, nor with the port guard off (kvx_guard 0: attach --port-guard
 * off leaves the ports alone); none refused once the daemon's lease lapsed.  A budget is taken before the placement
 * (two CPUs never both take the last one); a new window starts with a
 * compare-and-swap of its start, its count reset by the CPU that won (a
 * place another CPU took in between is forgotten: a window may place a
 * MAC or two more per CPU).  Its
 * own frame: called from the XDP port program, whose translation's call
 * chain takes all of the stack.
 */
/* Does brport_place place a MAC of no port on ifindex at all: a port the
 * bridge learns on, the port guard on (its lease running or lapsed)?  The
 * lease word, else NULL. */
static __always_inline __u64 *brport_places_on(__u32 ifindex)
{
	struct kvx_xdev_val *port = bpf_map_lookup_elem(&kvx_xdev, &ifindex);
	__u32 zero = 0;
	__u64 *guard;

	if (!port || !(port->flags & KVX_XDEV_F_LEARN))
		return NULL;
	guard = bpf_map_lookup_elem(&kvx_guard, &zero);
	return guard && *guard ? guard : NULL;
}

static __noinline int brport_place(const __u8 *mac8, __u32 ifindex)
{
	struct kvx_xfdb_val v = {};
	struct kvx_brplace_val nb = {}, *b;
	__u64 *guard, now, w;
	int err, lapsed;

	if ((mac8[0] & 1) || mac_is_zero(mac8))
		return 0;
	guard = brport_places_on(ifindex);
	if (!guard)
		return 0;
	now = clock_now_ns();
	/* The daemon's lease lapsed (it stopped): placed still, refused
	 * never - the guard fails open, and nothing recounts the shared
	 * slot without the daemon. */
	lapsed = *guard <= now;
	b = bpf_map_lookup_elem(&kvx_brplace, &ifindex);
	if (!b) {
		nb.window_ns = now;
		bpf_map_update_elem(&kvx_brplace, &ifindex, &nb, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&kvx_brplace, &ifindex);
		if (!b)
			return !lapsed;
	}
	w = b->window_ns;
	/* Signed: another CPU's reading of the clock may be a jiffy ahead. */
	if ((__s64)(now - w) >= (__s64)KVX_BRPLACE_WINDOW_NS &&
	    __sync_val_compare_and_swap(&b->window_ns, w, now) == w)
		b->placed = 0;
	if (__sync_fetch_and_add(&b->placed, 1) >= KVX_BRPLACE_PER_WINDOW)
		return !lapsed;
	v.ifindex = ifindex;
	err = bpf_map_update_elem(&kvx_brport, mac8, &v, BPF_NOEXIST);
	return err && err != -EEXIST && !lapsed;
}

/*
 * Anti-spoofing beyond the subnet (abi.h kvx_guest): a guest address
 * belongs to one MAC.  The first translated frame from an address binds it
 * (BPF_NOEXIST: of two racing claimers exactly one wins); another MAC gets
 * it only from a learnt owner idle for KVX_GUEST_IDLE_NS, never from a
 * leased one.  Without it one frame from guest A with guest B's address
 * would move B's bindings, 1:1 address and forwards (their IN halves
 * deliver to the MAC that used them last) to A.  libvirt's clean-traffic
 * nwfilter binds address and MAC the same way.  Not inlined: one copy for
 * both paths, its frame off the main path's stack.
 */
static __noinline int guest_owner_check(__be32 saddr, const __u8 *mac)
{
	struct kvx_guest_val *g, nv = {};
	__u64 now = clock_now_ns();
	int err;

	/* A group or zero source: no station sends it (the bridge drops such
	 * frames, br_handle_frame), and it must own nothing. */
	if ((mac[0] & 1) || mac_is_zero(mac))
		return KVX_R_DROP_SPOOF_MAC;
	g = bpf_map_lookup_elem(&kvx_guest, &saddr);
	if (g) {
		if (mac_eq(g->mac, mac)) {
			if (now - g->seen_ns >= KVX_GUEST_REFRESH_NS)
				g->seen_ns = now;
			guest_owner_back(g);
			return KVX_CONTINUE;
		}
		if (guest_owner_holds(g, now))
			return KVX_R_DROP_SPOOF_MAC;
	}
	__builtin_memcpy(nv.mac, mac, ETH_ALEN);
	nv.seen_ns = now;
	if (g) {
		/* The owner went quiet long ago (a VM re-created with another
		 * MAC): the address is this MAC's now. */
		bpf_map_update_elem(&kvx_guest, &saddr, &nv, BPF_ANY);
		return KVX_CONTINUE;
	}
	err = bpf_map_update_elem(&kvx_guest, &saddr, &nv, BPF_NOEXIST);
	if (!err)
		return KVX_CONTINUE;
	if (err != -EEXIST)
		return KVX_R_DROP_TABLE_FULL;
	/* Another CPU bound it first: to this MAC or not. */
	g = bpf_map_lookup_elem(&kvx_guest, &saddr);
	return g && mac_eq(g->mac, mac) ? KVX_CONTINUE : KVX_R_DROP_SPOOF_MAC;
}

/*
 * A guest's frame for the host itself (an ARP packet, a packet to the
 * bridge's address or a broadcast): sent in another guest's name?  The
 * host's neighbour cache takes the sender of every ARP packet it gets (a
 * request to it, a reply, an update of an entry it has: arp_process), so
 * one ARP packet from guest A that gives B's address with A's MAC - Linux
 * sends one when A pings from B's address, and arpspoof does nothing else
 * - sends the host's own traffic to B to A: its sockets, its DNS answers
 * and DHCP replies.  What IPv6's nat6_guest_local is to neighbour
 * discovery.  Refused as in guest_owner_check: an address a lease or an
 * active owner holds (kvx_guest) given with another MAC (the ARP sender's
 * hardware address, the one the host would learn; an IPv4 packet's source
 * MAC).  Claims nothing: an address is taken by the frames that use it
 * beyond the host; the owner's own host-bound frames keep it active.
 * Frames in a priority tag inside a priority tag never get here
 * (kvx_br_ingress drops them).
 * Global (verified once, not per call site).  1: drop it.
 */
__noinline int nat4_guest_local(kvx_ctx_t *ctx)
{
	/* mac_eq: word loads */
	__u8 mac[8] __attribute__((aligned(8))) = {}, src[8] __attribute__((aligned(8))) = {};
	void *data = ctx_data(ctx), *data_end = ctx_data_end(ctx);
	const struct kvx_cfg *cfg = cfg_get();
	struct ethhdr *eth = data;
	struct kvx_guest_val *g;
	__u64 now;
	__be32 addr;

	if ((void *)(eth + 1) > data_end || !cfg)
		return 0;
	__builtin_memcpy(src, eth->h_source, ETH_ALEN);
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		struct kvx_arp4 *arp = (void *)(eth + 1);

		/* What the kernel takes (arp_process, on an Ethernet device). */
		if ((void *)(arp + 1) > data_end || arp->ptype != bpf_htons(ETH_P_IP) ||
		    arp->hlen != ETH_ALEN || arp->plen != 4)
			return 0;
		__builtin_memcpy(mac, arp->sha, ETH_ALEN);
		__builtin_memcpy(&addr, arp->spa, 4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return 0;
		__builtin_memcpy(mac, src, ETH_ALEN);
		addr = ip->saddr;
	} else {
		return 0;
	}
	g = bpf_map_lookup_elem(&kvx_guest, &addr);
	if (!g)
		return 0;
	now = clock_now_ns();
	if (mac_eq(g->mac, mac)) {
		/* Only a frame the owner could have sent keeps it active:
		 * not an ARP packet another MAC sends in a departed owner's
		 * name (which would hold its address from its re-created
		 * VM). */
		if (mac_eq(mac, src)) {
			if (now - g->seen_ns >= KVX_GUEST_REFRESH_NS)
				g->seen_ns = now;
			guest_owner_back(g);
		}
		return 0;
	}
	if (!guest_owner_holds(g, now))
		return 0;
	/* Charged to the sender (its per-guest drops). */
	gstats_set(src, addr, cfg->guest_seed, 0);
	return 1;
}

/*
 * Inbound sources that no one on the uplink can have, for a packet to an
 * address kvmxdp translates: what the kernel's rp_filter and
 * ip_route_input_slow() would drop before an iptables DNAT (martian
 * sources): the guest subnet (a LAN host posing as a guest to another
 * guest), loopback, the host's own addresses (the uplink's and the mapped
 * ones), 0.0.0.0/8 and multicast or limited broadcast as a source.
 */
static __always_inline int inbound_martian(const struct kvx_cfg *cfg, __be32 saddr)
{
	__u32 h = bpf_ntohl(saddr);

	return subnet_has(cfg, saddr) || (h >> 24) == 127 || (h >> 24) == 0 ||
	       (h >> 28) == 0xe || saddr == 0xffffffff || saddr == cfg->uplink_addr ||
	       bpf_map_lookup_elem(&kvx_extaddr, &saddr);
}

struct nat_rewrite {
	__u8 src;          /* rewrite the source endpoint */
	__u8 dst;          /* rewrite the destination endpoint */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;      /* ICMP echo: the identifier, for either side */
	__be16 dport;
	const __u8 *smac;  /* NULL: leave the MACs (bpf_redirect_neigh fills them) */
	const __u8 *dmac;
};

/*
 * Rewrite addresses, ports (TCP/UDP) or the echo identifier (ICMP), TTL - 1
 * and the MACs; then fix the checksums incrementally: the IPv4 header's in
 * place, the L4 one through the context layer (it knows the skb's checksum
 * state).  All direct writes happen first: the checksum helpers invalidate
 * packet pointers.
 */
static __noinline int nat4_rewrite(kvx_ctx_t *ctx, const struct kvx_pkt *p,
					const struct nat_rewrite *rw)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct csum_l4 l4c = {};
	__be16 *sport = NULL, *dport = NULL;
	__be16 old_sport = 0, old_dport = 0;
	__be32 old_saddr, old_daddr;
	__u16 old_ttl;
	__u32 l4_off = p->l4_off;
	void *l4;

	if ((void *)(ip + 1) > data_end)
		return -1;
	/* ihl is 5..15: tell the verifier too. */
	if (l4_off < ETH_HLEN + 20 || l4_off > ETH_HLEN + 60)
		return -1;
	l4 = data + l4_off;

	/* Later fragments carry no L4 header: addresses only (the first
	 * fragment's L4 checksum covers the whole datagram). */
	switch (pkt_is_later_fragment(p) ? 0 : p->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		sport = &th->source;
		dport = &th->dest;
		l4c.off = l4_off + offsetof(struct tcphdr, check);
		l4c.pseudo = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		sport = &uh->source;
		dport = &uh->dest;
		l4c.off = l4_off + offsetof(struct udphdr, check);
		l4c.pseudo = 1;
		l4c.udp = 1;
		break;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ih = l4;

		if ((void *)(ih + 1) > data_end)
			return -1;
		/* One identifier: the side being rewritten owns it. */
		if (rw->dst)
			dport = &ih->un.echo.id;
		else
			sport = &ih->un.echo.id;
		l4c.off = l4_off + offsetof(struct icmphdr, checksum);
		break;
	}
	case IPPROTO_UDPLITE:
	case IPPROTO_DCCP: {
		/* Address-only NAT, but their checksums cover the pseudo-header
		 * (RFC 3828 section 3.2, RFC 4340 section 9.1), at offset 6 in
		 * both headers: update it for the addresses like UDP's.  The
		 * pseudo-header is always covered, whatever UDP-Lite's
		 * coverage or DCCP's CsCov say.  Unlike UDP, 0 is no "no
		 * checksum" for either (it stays a plain value). */
		__u8 *h = l4;

		if ((void *)(h + 8) > data_end || l4_off + 8 > p->ip_end)
			return -1;
		l4c.off = l4_off + 6;
		l4c.pseudo = 1;
		break;
	}
	default:
		break;
	}

	if (rw->smac)
		__builtin_memcpy(eth->h_source, rw->smac, ETH_ALEN);
	if (rw->dmac)
		__builtin_memcpy(eth->h_dest, rw->dmac, ETH_ALEN);

	old_ttl = *(__u16 *)&ip->ttl;
	ip->ttl--;
	old_saddr = ip->saddr;
	old_daddr = ip->daddr;
	if (rw->src) {
		ip->saddr = rw->saddr;
		if (sport) {
			old_sport = *sport;
			*sport = rw->sport;
		}
	}
	if (rw->dst) {
		ip->daddr = rw->daddr;
		if (dport) {
			old_dport = *dport;
			*dport = rw->dport;
		}
	}

	csum_ip_rewrite(ip, old_ttl, old_saddr, old_daddr);

	if (rw->src && (csum_l4_addr(ctx, &l4c, old_saddr, rw->saddr) ||
			(sport && csum_port(ctx, &l4c, old_sport, rw->sport))))
		return -1;
	if (rw->dst && (csum_l4_addr(ctx, &l4c, old_daddr, rw->daddr) ||
			(dport && csum_port(ctx, &l4c, old_dport, rw->dport))))
		return -1;
	return 0;
}

/* The Ethernet header of a frame rewritten in place for a guest (the ICMP
 * error paths: nat4_rewrite does it for the others): from the gateway MAC
 * the guest uses, to the guest; left to deliver_to_guest's neighbour
 * lookup while the guest's MAC is unknown.  -1: no Ethernet header. */
static __always_inline int eth_to_guest(kvx_ctx_t *ctx, const struct nat_endpoint *guest)
{
	struct ethhdr *eth = ctx_data(ctx);

	if (mac_is_zero(guest->guest_mac))
		return 0;
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return -1;
	__builtin_memcpy(eth->h_source, guest->gw_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, guest->guest_mac, ETH_ALEN);
	return 0;
}

/* Deliver a translated packet to a guest through the bridge.  A static
 * mapping has not learnt the guest's MAC before its first packet: then the
 * kernel resolves it on the bridge (ARP) and fills both MACs. */
static __always_inline long deliver_to_guest(const struct kvx_cfg *cfg,
					     const struct nat_endpoint *guest)
{
	if (mac_is_zero(guest->guest_mac)) {
		struct bpf_redir_neigh nh = {
			.nh_family = AF_INET,
			.ipv4_nh = guest->addr,
		};

		return bpf_redirect_neigh(cfg->bridge_ifindex, &nh, sizeof(nh), 0);
	}
	return ctx_redirect(cfg->bridge_ifindex);
}

/*
 * The TCP option `kind` of length `len` in p's header: its offset from the
 * end of the fixed header, or -1.  The options are walked as RFC 9293 lays
 * them out (kind, length), at most KVX_TCPOPT_WALK of them.  The offset is
 * masked to 6 bits at every step: a bounded, imprecise offset lets the
 * verifier prune the walk's states instead of following every kind/length
 * combination (an unmasked walk hit its 1M-instruction limit).
 */
#define KVX_TCPOPT_WALK 12
/* The furthest a TCP header parsed by either family may start: past
 * IPv4's 60-byte header, IPv6's fixed header and the extension headers
 * parse_ipv6 walks, with the fixed TCP header inside what is made linear
 * (KVX_PULL6_LEN; options past it are not found).  An IPv6 SYN behind
 * more than 20 bytes of extension headers is clamped and its window scale
 * read like any other. */
#define KVX_TCP_OFF_MAX (KVX_PULL6_LEN - 20)
#define KVX_TCP_OFF_MASK 0x1ff
_Static_assert(KVX_TCP_OFF_MAX <= KVX_TCP_OFF_MASK, "the mask keeps every TCP offset");
static __always_inline int tcp_opt_find(kvx_ctx_t *ctx, const struct kvx_pkt *p, __u8 kind,
					__u8 len)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	__u32 l4_off = p->l4_off, opt_len, i = 0, n;
	struct tcphdr *th;
	__u8 *o;

	if (l4_off < ETH_HLEN + 20 || l4_off > KVX_TCP_OFF_MAX)
		return -1;
	th = data + l4_off;
	if ((void *)(th + 1) > data_end || th->doff < 6)
		return -1;
	opt_len = th->doff * 4 - sizeof(*th);
	for (n = 0; n < KVX_TCPOPT_WALK; n++) {
		i &= 0x3f;
		if (i >= opt_len)
			return -1;
		o = (__u8 *)(th + 1) + i;
		if ((void *)(o + 2) > data_end || o[0] == 0)
			return -1;
		if (o[0] == 1) { /* NOP */
			i++;
			continue;
		}
		if (o[1] < 2)
			return -1;
		if (o[0] == kind && o[1] == len)
			break;
		i += o[1];
	}
	if (n == KVX_TCPOPT_WALK || i + len > opt_len)
		return -1;
	return i;
}

/*
 * TCP MSS clamping (attach --clamp-mss): lower the MSS option of SYNs in
 * both directions, for paths whose PMTU discovery is broken by someone
 * dropping ICMP.
 */
static __noinline int tcp_clamp_mss(kvx_ctx_t *ctx, const struct kvx_pkt *p, __u16 mss)
{
	void *data_end = ctx_data_end(ctx);
	__u32 l4_off = p->l4_off;
	__be16 from, to;
	__u16 old;
	__u8 *o;
	int i;

	i = tcp_opt_find(ctx, p, 2, 4);
	if (i < 0 || l4_off > KVX_TCP_OFF_MAX)
		return 0;
	o = ctx_data(ctx) + (l4_off & KVX_TCP_OFF_MASK) + sizeof(struct tcphdr) + (i & 0x3f);
	if ((void *)(o + 4) > data_end)
		return 0;
	old = (__u16)o[2] << 8 | o[3];
	if (old <= mss)
		return 0;
	o[2] = mss >> 8;
	o[3] = mss & 0xff;
	/* The checksum sums 16-bit words from the header's start: a value at
	 * an odd offset (NOP, MSS) straddles two words, its bytes swapped. */
	from = bpf_htons(old);
	to = bpf_htons(mss);
	if (i & 1) {
		from = __builtin_bswap16(from);
		to = __builtin_bswap16(to);
	}
	ctx_l4_csum_replace(ctx, l4_off + offsetof(struct tcphdr, check), from, to,
			    sizeof(__u16));
	return 0;
}

/* Option kind of length len in p's TCP header (tcp_opt_find), with its
 * first need bytes inside the packet: a pointer to it, or NULL.  Inlined: a
 * function of its own cannot return a packet pointer. */
static __always_inline __u8 *tcp_opt_ptr(kvx_ctx_t *ctx, const struct kvx_pkt *p, int kind, int len,
					 int need)
{
	__u32 l4_off = p->l4_off;
	__u8 *o;
	int i;

	i = tcp_opt_find(ctx, p, kind, len);
	if (i < 0 || l4_off > KVX_TCP_OFF_MAX)
		return NULL;
	o = ctx_data(ctx) + (l4_off & KVX_TCP_OFF_MASK) + sizeof(struct tcphdr) + (i & 0x3f);
	return (void *)(o + need) > ctx_data_end(ctx) ? NULL : o;
}

/*
 * The window scale option of a SYN (RFC 7323 section 2), for conntrack's
 * window checks; shifts above 14 are taken as 14, as the RFC says.
 */
static __noinline int tcp_syn_wscale(kvx_ctx_t *ctx, const struct kvx_pkt *p)
{
	const __u8 *o = tcp_opt_ptr(ctx, p, 3, 3, 3);

	if (!o)
		return KVX_TCP_NO_WSCALE;
	return o[2] > 14 ? 14 : o[2];
}

/*
 * Note the timestamp option (RFC 7323 section 3: kind 8, length 10) of a
 * SYN or FIN for conntrack (abi.h kvx_tcpts): a guest's FIN's is what a
 * remote holding the tuple in TIME_WAIT compares the next SYN's with, and
 * that SYN's decides whether the tuple may be given to it (ct_rules.h
 * kvx_tw_syn_ok).  Written for every SYN and FIN, so that a note is never
 * another segment's (the reader checks the sequence number too).
 */
static __noinline int tcp_ts_note(kvx_ctx_t *ctx, const struct kvx_pkt *p)
{
	struct kvx_tcpts *t;
	const __u8 *o;
	__u32 zero = 0;

	t = bpf_map_lookup_elem(&kvx_tcpts, &zero);
	if (!t)
		return 0;
	t->seq = p->tcp_seq;
	t->ok = 0;
	o = tcp_opt_ptr(ctx, p, 8, 10, 6);
	if (!o)
		return 0;
	t->tsval = (__u32)o[2] << 24 | (__u32)o[3] << 16 | (__u32)o[4] << 8 | o[5];
	t->ok = 1;
	return 0;
}

/* What conntrack takes from a segment's options, read once here: a SYN's
 * window scale, a SYN's or FIN's timestamp. */
static __always_inline void pkt_tcp_options(kvx_ctx_t *ctx, struct kvx_pkt *p)
{
	if (p->proto != IPPROTO_TCP || pkt_is_later_fragment(p))
		return;
	if (p->tcp_flags & KVX_TCP_SYN)
		p->tcp_wscale = tcp_syn_wscale(ctx, p);
	if (p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_FIN))
		tcp_ts_note(ctx, p);
}

static __always_inline void maybe_clamp_mss(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					    const struct kvx_pkt *p)
{
	if (cfg->clamp_mss && p->proto == IPPROTO_TCP && (p->tcp_flags & KVX_TCP_SYN) &&
	    !pkt_is_later_fragment(p))
		tcp_clamp_mss(ctx, p, cfg->clamp_mss);
}

/* A datagram's key (kvx_frag, kvx_fraghost): the addresses and IP id its
 * fragments carry, its protocol, the direction. */
static __always_inline void frag_key_of(struct kvx_frag_key *k, const struct kvx_pkt *p, __u8 dir)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->id = p->ip_id;
	k->proto = p->proto;
	k->dir = dir;
}

/* A fragment entry (kvx_frag, kvx_frag6, their host marks) made at created
 * is past KVX_FRAG_TIMEOUT_S: an earlier datagram's, whose id the sender
 * may have reused.  A sum, not `now - created`: an entry another CPU made
 * may be a jiffy ahead of this CPU's cached clock (clock.h). */
static __always_inline int frag_stale(__u64 created, __u64 now)
{
	return created + (__u64)KVX_FRAG_TIMEOUT_S * 1000000000ULL < now;
}

/* Remember the first fragment's translation for the later ones, which carry
 * the same untranslated addresses (a call: its key and value stay off the
 * main path's stack).  OUT entries also keep the MACs of the route lookup
 * (fib: NULL when it left the neighbour to the kernel), with which the
 * daemon sends a parked fragment of the datagram out of the uplink.
 * to NULL: an inbound first fragment no guest took (it went to the host,
 * or was refused): a mark in kvx_fraghost, so that its later fragments go
 * to the host as it did, without the park (abi.h).  Marks are looked up
 * after the guests' entries: a stray first fragment with a guest
 * datagram's key does not take that datagram's later fragments away. */
static __noinline void frag_remember(const struct kvx_pkt *p, __u8 dir,
				     const struct nat_endpoint *to,
				     const struct bpf_fib_lookup *fib, __u64 now)
{
	struct kvx_frag_key k = {};
	struct kvx_frag_val v = {};

	if (!(p->frag & KVX_IP_MF))
		return;
	frag_key_of(&k, p, dir);
	v.created_ns = now;
	if (!to) {
		bpf_map_update_elem(&kvx_fraghost, &k, &v.created_ns, BPF_ANY);
		return;
	}
	v.addr = to->addr;
	if (dir == KVX_BIND_IN) {
		__builtin_memcpy(v.guest_mac, to->guest_mac, ETH_ALEN);
		__builtin_memcpy(v.gw_mac, to->gw_mac, ETH_ALEN);
	} else if (fib) {
		__builtin_memcpy(v.guest_mac, fib->dmac, ETH_ALEN);
		__builtin_memcpy(v.gw_mac, fib->smac, ETH_ALEN);
	}
	bpf_map_update_elem(&kvx_frag, &k, &v, BPF_ANY);
}

/*
 * The translation of a later fragment's datagram, if its first fragment
 * passed less than KVX_FRAG_TIMEOUT_S ago.  An older entry belongs to an
 * earlier datagram whose id the sender has since reused: it is deleted,
 * never followed.  Later fragments that arrive before their first one go
 * to frag_park.
 */
static __always_inline struct kvx_frag_val *frag_lookup(const struct kvx_pkt *p, __u8 dir,
							 __u64 now)
{
	struct kvx_frag_key k = {};
	struct kvx_frag_val *v;

	frag_key_of(&k, p, dir);
	v = bpf_map_lookup_elem(&kvx_frag, &k);
	if (v && frag_stale(v->created_ns, now)) {
		bpf_map_delete_elem(&kvx_frag, &k);
		return NULL;
	}
	return v;
}

/* Did later fragment p's datagram (inbound) have its first fragment go to
 * the host in the last KVX_FRAG_TIMEOUT_S (kvx_fraghost)?  Called only
 * when no guest's entry steers it; the key on a frame of its own. */
static __noinline int frag_host_marked(const struct kvx_pkt *p, __u64 now)
{
	struct kvx_frag_key k = {};
	struct kvx_fraghost_val *v;

	if (!p)
		return 0;
	frag_key_of(&k, p, KVX_BIND_IN);
	v = bpf_map_lookup_elem(&kvx_fraghost, &k);
	if (!v)
		return 0;
	if (frag_stale(v->created_ns, now)) {
		bpf_map_delete_elem(&kvx_fraghost, &k);
		return 0;
	}
	return 1;
}

/*
 * Parking's budget per direction (abi.h KVX_FRAGQ_NS_PER_BYTE): one word
 * each, the generic cell rate algorithm's theoretical arrival time, as the
 * ICMP budgets (icmp.h icmp_rl_global): a record of n bytes is allowed
 * while that time is at most the burst ahead of now and moves it n bytes'
 * time on; a CPU that loses the cmpxchg parks nothing (errs on the side of
 * the limit).  In .bss: zero (a full bucket) at load.  The time of the
 * last wake-up the ring gave the daemon, also in .bss: written without
 * atomics, a lost update costs one extra wake-up.
 */
__u64 kvx_fragq_tat[2];
__u64 kvx_fragq_woke_ns;

static __always_inline int frag_budget_take(__u32 dir, __u32 bytes, __u64 now)
{
	__u64 *tat = &kvx_fragq_tat[dir & 1];
	__u64 old = *(volatile __u64 *)tat, next;

	next = (old > now ? old : now) + bytes * KVX_FRAGQ_NS_PER_BYTE;
	if (next - now > KVX_FRAGQ_BURST_BYTES * KVX_FRAGQ_NS_PER_BYTE)
		return 0;
	return __sync_val_compare_and_swap(tat, old, next) == old;
}

/* Wake the daemon for this record? (abi.h KVX_FRAGQ_WAKE_NS) */
static __always_inline __u64 frag_wake_flags(__u64 now)
{
	if (now - *(volatile __u64 *)&kvx_fragq_woke_ns < KVX_FRAGQ_WAKE_NS &&
	    bpf_ringbuf_query(&kvx_fragq, BPF_RB_AVAIL_DATA) < KVX_FRAGQ_BYTES / 4)
		return BPF_RB_NO_WAKEUP;
	*(volatile __u64 *)&kvx_fragq_woke_ns = now;
	return BPF_RB_FORCE_WAKEUP;
}

/* One record of data size `data` (a constant: the ring's reservations
 * are), n bytes of the packet at most that. */
static __always_inline int __frag_copy_n(kvx_ctx_t *ctx, __u32 n, __u32 dir, const __u8 *mac,
					 const __u32 data, __u64 now)
{
	struct kvx_fragq_rec *rec;

	/* Two tests of one register: bounds the verifier can follow. */
	asm volatile("" : "+r"(n));
	if (n > data || n < 20)
		return -1;
	if (!frag_budget_take(dir, sizeof(rec->hdr) + data, now))
		return -2;
	rec = bpf_ringbuf_reserve(&kvx_fragq, sizeof(rec->hdr) + data, 0);
	if (!rec)
		return -1;
	if (ctx_load_bytes(ctx, ETH_HLEN, rec->data, n)) {
		bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		return -1;
	}
	__builtin_memset(&rec->hdr, 0, sizeof(rec->hdr));
	rec->hdr.len = n;
	rec->hdr.dir = dir;
	if (mac)
		__builtin_memcpy(rec->hdr.mac, mac, ETH_ALEN);
	bpf_ringbuf_submit(rec, frag_wake_flags(now));
	return 0;
}

/*
 * A later fragment whose first fragment has not passed (yet; RFC 4787
 * REQ-14): the datapath cannot hold a packet back, so a copy goes to the
 * daemon's park (abi.h kvx_fragq), which sends it on translated once the
 * first fragment has made the datagram's kvx_frag entry.  From a guest the
 * fragment itself is dropped (untranslated it would leave with the guest's
 * private source); from the uplink it also goes to the host, whose own
 * datagram it may be (if not, the host's reassembly drops it: without the
 * first fragment, silently).  Not parked (the ring full, the direction's
 * budget spent, larger than a record, an inbound TTL that expires here):
 * DROP_FRAGMENT or PASS_HOST as before.  0: parked, -2: over the budget.
 */
static __always_inline int __frag_copy(kvx_ctx_t *ctx, const struct kvx_pkt *p, __u32 dir,
				       const __u8 *mac)
{
	__u32 n = p->ip_end - ETH_HLEN;
	/* Not the cached clock: the budget and the wake-ups are kept across
	 * CPUs, and only fragments that are parked pay for the read. */
	__u64 now = bpf_ktime_get_boot_ns();

	if (dir == KVX_BIND_IN && p->ttl <= 1)
		return -1;
	if (n <= KVX_FRAGQ_DATA_S)
		return __frag_copy_n(ctx, n, dir, mac, KVX_FRAGQ_DATA_S, now);
	if (n <= KVX_FRAGQ_DATA_M)
		return __frag_copy_n(ctx, n, dir, mac, KVX_FRAGQ_DATA_M, now);
	return __frag_copy_n(ctx, n, dir, mac, KVX_FRAGQ_DATA, now);
}

/* frag_park's dir beside KVX_BIND_OUT and KVX_BIND_IN: inbound to an address
 * the host never owns (an announced mapped IPv6 one): the fragment is the
 * park's alone, dropped as a guest's. */
#define FRAG_PARK_IN_GUEST 2

/* mac: OUT, the guest's (its share of the park).  A call: the
 * reservation stays off the main paths' frames. */
static __noinline int frag_park(kvx_ctx_t *ctx, const struct kvx_pkt *p, __u32 dir, __u32 len,
				const __u8 *mac)
{
	int r = __frag_copy(ctx, p, dir == KVX_BIND_OUT ? KVX_BIND_OUT : KVX_BIND_IN, mac);

	/* Beside the packet's own reason, without charging a guest. */
	if (r == -2)
		stats_count_global(KVX_R_FRAG_PARK_RATELIMITED, len);
	if (dir != KVX_BIND_IN)
		return verdict(r == 0 ? KVX_R_FRAG_PARKED : KVX_R_DROP_FRAGMENT, len);
	return verdict(r == 0 ? KVX_R_FRAG_PARKED_HOST : KVX_R_PASS_HOST, len);
}

/* Is addr one kvmxdp translates inbound: the uplink's or a mapped one? */
static __always_inline enum kvx_reason ext_addr_check(const struct kvx_cfg *cfg, __be32 addr)
{
	struct kvx_extaddr_val *ea;

	if (cfg->uplink_addr && addr == cfg->uplink_addr)
		return KVX_CONTINUE;
	ea = bpf_map_lookup_elem(&kvx_extaddr, &addr);
	if (!ea)
		return KVX_R_PASS_HOST;
	return ea->flags & KVX_EXT_F_SUSPENDED ? KVX_R_PASS_SUSPENDED : KVX_CONTINUE;
}

static __always_inline int icmp_translatable(const struct kvx_pkt *p)
{
	return p->proto != IPPROTO_ICMP || p->icmp_type == ICMP_ECHO ||
	       p->icmp_type == ICMP_ECHOREPLY;
}

/*
 * Hairpin (RFC 4787 REQ-9): a guest reaching a mapped address or a
 * forwarded port of the uplink gets there through the bridge, translated
 * as if it had gone out and come back: source -> the sender's external
 * endpoint (ct_egress, as for any packet), destination -> the target guest.
 */
static __always_inline int hairpin_has_target(const struct kvx_cfg *cfg, const struct kvx_pkt *p)
{
	__u8 flags;

	return ext_addr_check(cfg, p->daddr) == KVX_CONTINUE && !pkt_is_fragment(p) &&
	       p->l4_ok && icmp_translatable(p) && bind_in_find(p, &flags);
}

/* The second half, after ct_egress gave the sender's external endpoint. */
static __always_inline int nat4_hairpin(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					struct kvx_pkt *p, const __u8 *macs, __u32 len,
					const struct nat_endpoint *ext, struct nat_rewrite *rw,
					__u64 now)
{
	struct nat_endpoint guest = {};
	int r;

	/* Look at it as it would come back in, from the sender's external
	 * endpoint. */
	p->saddr = ext->addr;
	p->sport = ext->port;
	if (p->proto == IPPROTO_ICMP)
		p->dport = ext->port;
	r = ct_ingress(cfg, p, now, &guest);
	/* Not the target guest's (a dynamic binding none of whose flows wants
	 * it, or one just gone): the uplink address is the host's, as for a
	 * guest packet to any other port of it.  Nothing was rewritten.  A
	 * mapped address is not the host's (a `map del` between
	 * hairpin_has_target and here): passed up, the packet would be routed
	 * out with the guest's private source. */
	if (r == KVX_R_PASS_HOST)
		return verdict(p->daddr == cfg->uplink_addr ? KVX_R_PASS_LOCAL :
							      KVX_R_DROP_BROKEN_PAIR,
			       len);
	if (r != KVX_CONTINUE)
		return verdict(r, len);

	rw->src = 1;
	rw->saddr = ext->addr;
	rw->sport = ext->port;
	rw->dst = 1;
	rw->daddr = guest.addr;
	rw->dport = guest.port;
	if (!mac_is_zero(guest.guest_mac)) {
		rw->smac = macs + KVX_GW_MAC_OFF; /* the bridge's own MAC, as the guest used it */
		rw->dmac = guest.guest_mac;
	}
	if (nat4_rewrite(ctx, p, rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_HAIRPIN, len);
	gstats_set(guest.guest_mac, guest.addr, cfg->guest_seed, KVX_GCUR_F_IN);
	gstats_take(KVX_R_XLATE_HAIRPIN, len);
	return deliver_to_guest(cfg, &guest);
}

/* Uplink: an ICMP error about a guest's flow goes to that guest.  The two
 * ICMP error paths are BPF-to-BPF calls: their frames stay off the stack of
 * the main path (512 bytes for the whole call chain). */
static __noinline int nat4_icmp_error_in(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					      const struct kvx_pkt *p, __u32 len)
{
	struct nat_endpoint guest = {};
	struct icmp_quote q = {};
	int r;

	if (icmp_parse_quote(ctx, p, &q))
		return verdict(KVX_R_PASS_HOST, len);
	r = ct_related_in(p, &q, &guest);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	gstats_set(guest.guest_mac, guest.addr, cfg->guest_seed, KVX_GCUR_F_IN);
	/* From one of the host's own addresses or broadcasts (kvx_hostaddr;
	 * the uplink's own inbound_martian dropped): no router on the uplink
	 * has it, as the kernel's input route finds it.  A forged one would
	 * tear a guest's connection down (RFC 5927). */
	if (bpf_map_lookup_elem(&kvx_hostaddr, &p->saddr))
		return verdict(KVX_R_DROP_MARTIAN_IN, len);
	if (icmp_err_rewrite(ctx, p, &q, 0, &guest) || eth_to_guest(ctx, &guest))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_RELATED_IN, len);
	return deliver_to_guest(cfg, &guest);
}

/* Bridge: a guest's own ICMP error about an inbound flow (a port it does
 * not serve behind a port forward, say) leaves from the external endpoint. */
static __noinline int nat4_icmp_error_out(kvx_ctx_t *ctx, const struct kvx_pkt *p,
					       const struct bpf_fib_lookup *fib, int rc, __u32 len)
{
	struct nat_endpoint ext = {};
	struct icmp_quote q = {};
	int r;

	if (icmp_parse_quote(ctx, p, &q))
		return verdict(KVX_R_DROP_ICMP_TYPE, len);
	r = ct_related_out(p, &q, &ext);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	if (icmp_err_rewrite(ctx, p, &q, ICMP_RW_OUT, &ext))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_RELATED_OUT, len);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {
			.nh_family = AF_INET,
			.ipv4_nh = fib->ipv4_dst,
		};

		return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
	}
	{
		struct ethhdr *eth = ctx_data(ctx);

		if ((void *)(eth + 1) > ctx_data_end(ctx))
			return verdict(KVX_R_DROP_MALFORMED, len);
		__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	}
	return ctx_redirect(fib->ifindex);
}

/*
 * Hairpin of an ICMP error (RFC 5508 REQ-7): guest B's error about a packet
 * guest A sent it through a mapped address or forwarded port (quoted: A's
 * external endpoint -> B) is translated as if it had gone out and come
 * back: out as B's external endpoint's error (ct_related_out), in to A
 * (ct_related_in, about A's flow to that endpoint).  -1: not about a
 * hairpinned flow, nothing changed; the packet goes the usual way.
 */
static __noinline int nat4_icmp_error_hairpin(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					      const struct kvx_pkt *p, __u32 len)
{
	struct nat_endpoint ext = {}, guest = {};
	struct icmp_quote q = {};
	int r;

	if (icmp_parse_quote(ctx, p, &q) || ct_related_out(p, &q, &ext) != KVX_CONTINUE)
		return -1;
	/* Seen from A's side, the quoted packet went to B's external endpoint. */
	q.daddr = ext.addr;
	q.dport = ext.port;
	r = ct_related_in(p, &q, &guest);
	if (r == KVX_R_PASS_HOST)
		return -1;
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	/* One hop: the TTL goes down once. */
	if (icmp_err_rewrite(ctx, p, &q, ICMP_RW_OUT, &ext) ||
	    icmp_err_rewrite(ctx, p, &q, ICMP_RW_KEEP_TTL, &guest) || eth_to_guest(ctx, &guest))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_HAIRPIN, len);
	return deliver_to_guest(cfg, &guest);
}

/* Bridge ingress: a guest's packet on its way to the host or beyond. */
static __always_inline int nat4_from_guest(kvx_ctx_t *ctx)
{
	struct bpf_fib_lookup fib;
	struct nat_endpoint ext = {};
	struct nat_rewrite rw = {};
	struct kvx_pkt p = {};
	const struct kvx_cfg *cfg;
	__u8 macs[16] __attribute__((aligned(8))); /* see KVX_GW_MAC_OFF */
	__u32 len = ctx_len(ctx);
	int rc = 0, r, hairpin;
	__u64 now;

	ctx_pull_headers(ctx);
	cfg = cfg_get();
	if (!cfg)
		return CTX_PASS;

	switch (parse_ipv4(ctx, &p)) {
	case PARSE_NOT_IPV4:
		/* ARP among them: not in another guest's name. */
		return verdict(nat4_guest_local(ctx) ? KVX_R_DROP_SPOOF_MAC : KVX_R_PASS_NOT_IP,
			       len);
	case PARSE_BAD_IP:
		return verdict(KVX_R_DROP_MALFORMED, len);
	default:
		break;
	}

	if (cfg->flags & KVX_CFG_F_OVERLAP)
		return verdict(KVX_R_PASS_OVERLAP, len);
	/* Anti-spoofing; 0.0.0.0 is a DHCP client (the stack never forwards it). */
	if (!subnet_has(cfg, p.saddr))
		return verdict(p.saddr ? KVX_R_DROP_SPOOFED : KVX_R_PASS_LOCAL, len);
	/* The host's, on the bridge: not in another guest's name either. */
	if (is_mcast_or_bcast(cfg, p.daddr))
		return verdict(nat4_guest_local(ctx) ? KVX_R_DROP_SPOOF_MAC : KVX_R_PASS_MCAST,
			       len);
	if (subnet_has(cfg, p.daddr))
		return verdict(nat4_guest_local(ctx) ? KVX_R_DROP_SPOOF_MAC : KVX_R_PASS_LOCAL,
			       len);
	if (!ctx_frame_for_host(ctx))
		return verdict(KVX_R_PASS_OTHERHOST, len);
	/* What ip_route_input() calls martians, which it would never forward. */
	if ((bpf_ntohl(p.daddr) >> 24) == 0 || p.saddr == cfg->subnet_addr ||
	    p.saddr == (cfg->subnet_addr | ~cfg->subnet_mask))
		return verdict(KVX_R_DROP_MARTIAN, len);

	{
		struct ethhdr *eth = ctx_data(ctx);

		if ((void *)(eth + 1) > ctx_data_end(ctx))
			return verdict(KVX_R_DROP_MALFORMED, len);
		__builtin_memcpy(macs, eth->h_source, ETH_ALEN);
		__builtin_memcpy(macs + KVX_GW_MAC_OFF, eth->h_dest, ETH_ALEN);
	}
	/* The guest's from here on: the frame's MAC owns the source once the
	 * check passes, and is the one to charge when it does not. */
	gstats_set(macs, p.saddr, cfg->guest_seed, 0);
	/* Everything below may bind or use the source address's state. */
	r = guest_owner_check(p.saddr, macs);
	if (r != KVX_CONTINUE)
		return verdict_guest(ctx, cfg->gw_addr, r, len);

	if (p.proto == IPPROTO_ICMP && p.l4_ok && icmp_is_error(p.icmp_type) &&
	    !pkt_is_fragment(&p) && ext_addr_check(cfg, p.daddr) == KVX_CONTINUE) {
		r = nat4_icmp_error_hairpin(ctx, cfg, &p, len);
		if (r >= 0)
			return r;
	}
	/* Both paths share the one call site of ct_egress (verifier work). */
	hairpin = hairpin_has_target(cfg, &p);
	if (hairpin) {
		if (p.ttl <= 1)
			return verdict(KVX_R_PASS_TTL, len);
	} else {
		rc = fib_route(ctx, &p, &fib, ctx_ifindex(ctx), 0);
		switch (rc) {
		case BPF_FIB_LKUP_RET_SUCCESS:
		case BPF_FIB_LKUP_RET_NO_NEIGH:
		case BPF_FIB_LKUP_RET_FRAG_NEEDED:
			break;
		case BPF_FIB_LKUP_RET_NOT_FWDED:
			return verdict(KVX_R_PASS_LOCAL, len);
		case BPF_FIB_LKUP_RET_BLACKHOLE:
		case BPF_FIB_LKUP_RET_UNREACHABLE:
		case BPF_FIB_LKUP_RET_PROHIBIT:
			return verdict(KVX_R_PASS_NO_ROUTE, len);
		case KVX_FIB_NO_MARK_SUPPORT:
			return verdict(KVX_R_DROP_FWMARK, len);
		default:
			return verdict(KVX_R_DROP_FIB, len);
		}
		/*
		 * From here on the packet is bound for the outside.  With
		 * forwarding on, anything handed to the stack would leave
		 * with its private source: only packets the
		 * stack will answer with an ICMP error and not forward (TTL,
		 * too big with DF) go up.
		 */
		if (fib.ifindex != cfg->uplink_ifindex)
			return verdict(KVX_R_DROP_OTHER_IFACE, len);
		if (p.ttl <= 1)
			return verdict(KVX_R_PASS_TTL, len);
		/* NO_NEIGH skips the lookup's MTU test, and the lookup passes
		 * any GSO skb whole: both are checked here, per segment. */
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ||
		    ((rc == BPF_FIB_LKUP_RET_NO_NEIGH || ctx_gso_size(ctx)) &&
		     ctx_exceeds_mtu(ctx, fib.ifindex, pkt_seg_len(ctx, &p), NULL)))
			return verdict(p.frag & KVX_IP_DF ? KVX_R_PASS_MTU : KVX_R_DROP_TOO_BIG,
				       len);
		if (!cfg->uplink_addr)
			return verdict_guest(ctx, cfg->gw_addr, KVX_R_DROP_NO_UPLINK_ADDR, len);
		if (pkt_is_later_fragment(&p)) {
			struct kvx_frag_val *fv = frag_lookup(&p, KVX_BIND_OUT, clock_now_ns());

			if (!fv)
				return frag_park(ctx, &p, KVX_BIND_OUT, len, macs);
			rw.src = 1;
			rw.saddr = fv->addr;
			goto out;
		}
		if (!p.l4_ok)
			return verdict(KVX_R_DROP_MALFORMED, len);
		if (p.proto == IPPROTO_ICMP && icmp_is_error(p.icmp_type))
			return nat4_icmp_error_out(ctx, &p, &fib, rc, len);
		if (!icmp_translatable(&p))
			return verdict(KVX_R_DROP_ICMP_TYPE, len);
	}

	now = clock_now_ns();
	pkt_tcp_options(ctx, &p);
	r = ct_egress(cfg, &p, macs, now, &ext);
	if (r != KVX_CONTINUE)
		return verdict_guest(ctx, cfg->gw_addr, r, len);
	if (hairpin)
		return nat4_hairpin(ctx, cfg, &p, macs, len, &ext, &rw, now);
	frag_remember(&p, KVX_BIND_OUT, &ext, rc == BPF_FIB_LKUP_RET_SUCCESS ? &fib : NULL, now);
	maybe_clamp_mss(ctx, cfg, &p);

	rw.src = 1;
	rw.saddr = ext.addr;
	rw.sport = ext.port;
out:
	/* NO_NEIGH: the kernel resolves the next hop and fills the MACs. */
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		rw.smac = fib.smac;
		rw.dmac = fib.dmac;
	}
	if (nat4_rewrite(ctx, &p, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);

	stats_count(KVX_R_XLATE_OUT, len);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {
			.nh_family = AF_INET,
			.ipv4_nh = fib.ipv4_dst, /* the gateway after the lookup */
		};

		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	return ctx_redirect(fib.ifindex);
}

/*
 * ARP for mapped external addresses: the AP only accepts frames from the
 * station's own MAC, so kvmxdp answers with the uplink MAC (proxy ARP)
 * instead of making the addresses host-local.  -1: not ours, carry on.
 */

static __always_inline int arp_answer(kvx_ctx_t *ctx, const struct kvx_cfg *cfg, __u32 len)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_arp4 *arp = (void *)(eth + 1);
	struct kvx_extaddr_val *ea;
	__be32 target;
	__u8 spa[4];

	if ((void *)(arp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_ARP))
		return -1;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4 || arp->op != bpf_htons(1) ||
	    mac_is_zero(cfg->uplink_mac))
		return -1;
	__builtin_memcpy(&target, arp->tpa, 4);
	ea = bpf_map_lookup_elem(&kvx_extaddr, &target);
	if (!ea || !(ea->flags & KVX_EXT_F_ARP) || (ea->flags & KVX_EXT_F_SUSPENDED))
		return -1;

	/* Turn the request into the reply, in place, and send it back out. */
	__builtin_memcpy(spa, arp->spa, 4);
	arp->op = bpf_htons(2);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, spa, 4);
	__builtin_memcpy(arp->sha, cfg->uplink_mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, &target, 4);
	__builtin_memcpy(eth->h_dest, arp->tha, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->uplink_mac, ETH_ALEN);
	stats_count(KVX_R_ARP_REPLY, len);
	return ctx_redirect(ctx_ifindex(ctx));
}

/* Uplink ingress: replies to guests' flows and traffic to mapped
 * addresses; everything else is the host's. */
static __always_inline int nat4_from_uplink(kvx_ctx_t *ctx)
{
	struct nat_endpoint guest = {};
	struct nat_rewrite rw = {};
	struct kvx_pkt p = {};
	const struct kvx_cfg *cfg;
	__u32 len = ctx_len(ctx), mtu;
	__u64 now;
	int r;

	ctx_pull_headers(ctx);
	cfg = cfg_get();
	if (!cfg)
		return CTX_PASS;

	switch (parse_ipv4(ctx, &p)) {
	case PARSE_NOT_IPV4:
		r = arp_answer(ctx, cfg, len);
		return r >= 0 ? r : verdict(KVX_R_PASS_NOT_IP, len);
	case PARSE_BAD_IP:
		return verdict(KVX_R_PASS_HOST, len);
	default:
		break;
	}

	if (cfg->flags & KVX_CFG_F_OVERLAP)
		return verdict(KVX_R_PASS_OVERLAP, len);
	/* The recipe's FORWARD reject: nobody on the LAN routes into the guest
	 * subnet through us. */
	if (subnet_has(cfg, p.daddr))
		return verdict(KVX_R_DROP_TO_SUBNET, len);
	r = ext_addr_check(cfg, p.daddr);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	if (inbound_martian(cfg, p.saddr))
		return verdict(KVX_R_DROP_MARTIAN_IN, len);
	now = clock_now_ns();
	if (pkt_is_later_fragment(&p)) {
		struct kvx_frag_val *fv = frag_lookup(&p, KVX_BIND_IN, now);

		if (!fv) {
			/* Its first fragment went to the host. */
			if (frag_host_marked(&p, now))
				return verdict(KVX_R_PASS_HOST, len);
			/* It is yet to come: perhaps a guest's, parked, and
			 * the host's too. */
			return frag_park(ctx, &p, KVX_BIND_IN, len, NULL);
		}
		/* The host's, marked by a version before 25 (abi.h). */
		if (fv->addr == KVX_FRAG_HOST)
			return verdict(KVX_R_PASS_HOST, len);
		guest.addr = fv->addr;
		__builtin_memcpy(guest.guest_mac, fv->guest_mac, ETH_ALEN);
		__builtin_memcpy(guest.gw_mac, fv->gw_mac, ETH_ALEN);
		gstats_set(guest.guest_mac, guest.addr, cfg->guest_seed, KVX_GCUR_F_IN);
		if (p.ttl <= 1)
			return verdict(KVX_R_DROP_TTL_IN, len);
		goto out;
	}
	if (!p.l4_ok)
		goto host;
	/* The host's own tunnel, even under a guest's flow made before the
	 * tunnel was: the tunnel wins. */
	if (!proto_has_ports(p.proto) && p.daddr == cfg->uplink_addr &&
	    host_tunnel_peer(p.proto, p.saddr))
		goto host;
	if (p.proto == IPPROTO_ICMP && icmp_is_error(p.icmp_type))
		return nat4_icmp_error_in(ctx, cfg, &p, len);
	if (!icmp_translatable(&p))
		goto host;

	pkt_tcp_options(ctx, &p);
	r = ct_ingress(cfg, &p, now, &guest);
	if (r != KVX_CONTINUE) {
		/* No guest's: the later fragments go the way of the rest of
		 * the host's traffic, not to the park (the test here: no call
		 * for the unfragmented rest). */
		if (p.frag & KVX_IP_MF)
			frag_remember(&p, KVX_BIND_IN, NULL, NULL, now);
		return verdict_uplink(ctx, cfg, r, len,
				      r == KVX_R_DROP_TTL_IN ?
					      KVX_ICMP_TCM(ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0) :
					      0);
	}
	gstats_set(guest.guest_mac, guest.addr, cfg->guest_seed, KVX_GCUR_F_IN);
	frag_remember(&p, KVX_BIND_IN, &guest, NULL, now);
	maybe_clamp_mss(ctx, cfg, &p);

out:
	/* A redirect skips ip_forward's MTU test: a packet (or GSO segment)
	 * larger than the bridge takes would be dropped there unseen. */
	if (ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, pkt_seg_len(ctx, &p), &mtu))
		return verdict_uplink(ctx, cfg, KVX_R_DROP_TOO_BIG_IN, len,
				      p.frag & KVX_IP_DF ?
					      KVX_ICMP_TCM(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu) :
					      0);
	rw.dst = 1;
	rw.daddr = guest.addr;
	rw.dport = guest.port;
	if (!mac_is_zero(guest.guest_mac)) {
		rw.smac = guest.gw_mac;
		rw.dmac = guest.guest_mac;
	}
	if (nat4_rewrite(ctx, &p, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_IN, len);
	return deliver_to_guest(cfg, &guest);

host:
	/* The host's: so are its later fragments (frag_remember). */
	if (p.frag & KVX_IP_MF)
		frag_remember(&p, KVX_BIND_IN, NULL, NULL, now);
	return verdict(KVX_R_PASS_HOST, len);
}

#endif /* KVX_NAT_H */
