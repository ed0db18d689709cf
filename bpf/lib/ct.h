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

/*
 * How many external ports one new binding may probe before giving up.  With
 * every port bound and each reused within about a second (four guests
 * churning 30000 connections a second to one server port that keeps
 * TIME_WAIT), about one probe in six finds a port that is quiet and whose
 * remote takes the SYN (sequence number and timestamp, bind_recycle): 64
 * probes refused about one connect in 90000 there, 128 none in 1.8 million
 * (bench/RESULTS.md; (5/6)^128 is one in 10^10).  Only a SYN gets them all
 * (bind_plan); only the probes a new binding needs are made.
 */
#define KVX_PORT_TRIES 128

/* Probes of a new binding in a large pool that look for a free port only,
 * before a closed connection's may be taken over (bind_plan). */
#define KVX_RECYCLE_AFTER 1
/* Random probes of a guest at its port limit after its ring (bind_plan):
 * as many as before the probe count grew for the pool's sake; the guest
 * at its limit is the one a SYN spray would come from. */
#define KVX_LIMIT_RANDOM 48
/* bind_recycle's "how" with the guest not at its limit (bit 0): not yet. */
#define KVX_RECYCLE_NOT_YET 2

/* A dynamic binding's last use (and a shared port's claim) is refreshed at
 * most once a second by its packets: a cache line shared by CPUs. */
#define KVX_BIND_REFRESH_NS (1000ULL * 1000 * 1000)

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

/*
 * OR bits into a binding's flags atomically: flags is the upper half of
 * the 32-bit word that starts at port (little-endian; the lower half on a
 * big-endian machine), and BPF has no 16-bit atomics.  A plain
 * read-modify-write racing another CPU's (bind_tw_mark) would lose one of
 * the two.  Returns the flags before (a full barrier, as every BPF_FETCH
 * atomic).
 */
_Static_assert(__builtin_offsetof(struct kvx_bind_val, port) == 4 &&
		       __builtin_offsetof(struct kvx_bind_val, flags) == 6,
	       "flags is the upper half of the word at port");
static __always_inline __u16 bind_flags_or(struct kvx_bind_val *b, __u16 bits)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return __sync_fetch_and_or((__u32 *)&b->port, (__u32)bits << 16) >> 16;
#else
	return __sync_fetch_and_or((__u32 *)&b->port, (__u32)bits) & 0xffff;
#endif
}

/* A dynamic binding whose one flow is over and that no other endpoint or
 * flow holds (abi.h KVX_BIND_F_TW): what TIME_WAIT reuse may take. */
static __always_inline int bind_tw_only(__u16 flags)
{
	return (flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE | KVX_BIND_F_MULTI |
			 KVX_BIND_F_TW | KVX_BIND_F_SHARED)) == KVX_BIND_F_TW;
}

/* Clear bits of a binding's flags atomically (bind_flags_or). */
static __always_inline void bind_flags_clear(struct kvx_bind_val *b, __u16 bits)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__sync_fetch_and_and((__u32 *)&b->port, ~((__u32)bits << 16));
#else
	__sync_fetch_and_and((__u32 *)&b->port, ~(__u32)bits);
#endif
}

/*
 * TCP sequence tracking, after netfilter's tcp_in_window (nf_conntrack_proto_tcp.c,
 * "Real Stateful TCP Packet Filtering in IP Filter"): per side the highest
 * sequence it sent (end), the highest the other side lets it send (maxend:
 * the other's ACK + window) and its largest window.  Flows whose two SYNs
 * were seen are checked so; a flow picked up mid-stream has no window scale
 * to go by and is checked more loosely (tcp_loose_span).
 */
static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int seq_after(__u32 a, __u32 b)
{
	return (__s32)(b - a) < 0;
}

/* The sequence number after the packet: payload, SYN and FIN each count. */
static __always_inline __u32 tcp_seq_end(const struct kvx_pkt *p)
{
	return p->tcp_seq + pkt_tcp_len(p) + !!(p->tcp_flags & KVX_TCP_SYN) +
	       !!(p->tcp_flags & KVX_TCP_FIN);
}

static __always_inline void tcp_track_syn(struct kvx_ct_tcp *s, const struct kvx_pkt *p)
{
	s->end = tcp_seq_end(p);
	/* SYN windows are never scaled (RFC 7323 section 2.2). */
	s->maxwin = p->tcp_win ? p->tcp_win : 1;
	s->maxend = s->end;
	/* Until its side acknowledges something (KVX_CT_TCP_F_ACK): its ISS +
	 * 1, the least an answer to the SYN acknowledges (tcp_acks_syn). */
	s->ack = p->tcp_seq + 1;
	s->flags = KVX_CT_TCP_F_SYN;
	s->wscale = 0;
	if (p->tcp_wscale != KVX_TCP_NO_WSCALE) {
		s->flags |= KVX_CT_TCP_F_WSCALE;
		s->wscale = p->tcp_wscale;
	}
}

/* Both SYNs seen: the windows are known. */
static __always_inline int tcp_tracked(const struct kvx_ct_val *f)
{
	return f->tcp[0].flags & f->tcp[1].flags & KVX_CT_TCP_F_SYN;
}

/* Does p acknowledge the SYN side s sent (and has not acknowledged past)?
 * From its ISS + 1 (data on the SYN the other side did not take: TCP Fast
 * Open) to its end. */
static __always_inline int tcp_acks_syn(const struct kvx_ct_tcp *s, const struct kvx_pkt *p)
{
	return (p->tcp_flags & KVX_TCP_ACK) && p->tcp_ack - s->ack <= s->end - s->ack;
}

/* Window scaling is on when both SYNs asked for it (RFC 7323 section 2.2). */
static __always_inline __u32 tcp_win_scaled(const struct kvx_ct_val *f, const struct kvx_ct_tcp *s,
					    const struct kvx_pkt *p)
{
	if (p->tcp_flags & KVX_TCP_SYN)
		return p->tcp_win;
	if (f->tcp[0].flags & f->tcp[1].flags & KVX_CT_TCP_F_WSCALE)
		return (__u32)p->tcp_win << (s->wscale & 15);
	return p->tcp_win;
}

/* netfilter's MAXACKWINDOW: how far an ACK may trail the other side's end
 * (a retransmitted segment's length, GSO's included), at least. */
#define KVX_TCP_MAXACKWIN 66000

/* netfilter's tcp_in_window conditions III-IV: the ACK (if any) of s's
 * segment is one s could send, behind r's end by a retransmission at most. */
static __always_inline int tcp_ack_in_window(const struct kvx_ct_tcp *s, const struct kvx_ct_tcp *r,
					     const struct kvx_pkt *p)
{
	__u32 maxack = s->maxwin > KVX_TCP_MAXACKWIN ? s->maxwin : KVX_TCP_MAXACKWIN;

	if (!(p->tcp_flags & KVX_TCP_ACK))
		return 1;
	return !seq_after(p->tcp_ack, r->end) && !seq_before(p->tcp_ack, r->end - maxack);
}

/* netfilter's tcp_in_window conditions I-II: s's segment starts within
 * what r lets it send and ends past what r may still be waiting for. */
static __always_inline int tcp_seq_in_window(const struct kvx_ct_tcp *s, const struct kvx_ct_tcp *r,
					     const struct kvx_pkt *p)
{
	return !seq_after(p->tcp_seq, s->maxend) && !seq_before(tcp_seq_end(p), s->end - r->maxwin);
}

/* netfilter's tcp_in_window conditions I-IV. */
static __always_inline int tcp_in_window(const struct kvx_ct_tcp *s, const struct kvx_ct_tcp *r,
					 const struct kvx_pkt *p)
{
	return tcp_seq_in_window(s, r, p) && tcp_ack_in_window(s, r, p);
}

/* What a sender's packet teaches about its side s, its window win (scaled
 * or not, as the flow counts them): the highest sequence and ACK it sent,
 * its largest window.  Only forward: a retransmission teaches nothing old
 * (maxwin 0: nothing seen of it yet). */
static __always_inline void tcp_side_learn(struct kvx_ct_tcp *s, const struct kvx_pkt *p, __u32 win)
{
	__u32 end = tcp_seq_end(p);

	if (!s->maxwin || seq_after(end, s->end))
		s->end = end;
	if (win > s->maxwin)
		s->maxwin = win;
	if (p->tcp_flags & KVX_TCP_ACK) {
		if (!(s->flags & KVX_CT_TCP_F_ACK) || seq_after(p->tcp_ack, s->ack))
			s->ack = p->tcp_ack;
		s->flags |= KVX_CT_TCP_F_ACK;
	}
}

/* What the sender's in-window packet teaches (netfilter's updates). */
static __always_inline void tcp_track(const struct kvx_ct_val *f, struct kvx_ct_tcp *s,
				      struct kvx_ct_tcp *r, const struct kvx_pkt *p)
{
	__u32 win = tcp_win_scaled(f, s, p);

	tcp_side_learn(s, p, win);
	if ((p->tcp_flags & KVX_TCP_ACK) && seq_after(p->tcp_ack + win + !win, r->maxend))
		r->maxend = p->tcp_ack + win + !win;
}

/*
 * A flow picked up mid-stream (KVX_CT_TCP_F_LOOSE: no SYN seen, so no
 * window scale) is checked loosely, and only what comes from outside: the
 * guest's own segments are its own business (its RST and FIN end the flow
 * as they would without kvmxdp), a remote's are judged against the one
 * thing the guest's segments tell for sure, its RCV.NXT (the highest ACK
 * it sent).  How far ahead of it a remote may be is the guest's largest
 * window at the largest scale (RFC 7323: 14), at least 16 KiB, at most
 * 1 GiB; behind it, a retransmitted segment's length (KVX_TCP_MAXACKWIN).
 * netfilter takes anything on a picked-up connection
 * (IP_CT_TCP_FLAG_BE_LIBERAL); here a guessing attacker still misses most
 * of the sequence space, and a real remote, whatever its ACK, never.
 */
static __always_inline __u32 tcp_loose_span(const struct kvx_ct_tcp *r)
{
	__u32 w = r->maxwin;

	if (!w || w > 0xffff)
		w = 0xffff;
	return w << 14;
}

/* Picked up mid-stream (read where needed, not kept: ct_update's frame is
 * on the deepest call chains, at 6.1's 512 bytes). */
static __always_inline int tcp_loose(const struct kvx_ct_val *f)
{
	return (f->tcp[0].flags | f->tcp[1].flags) & KVX_CT_TCP_F_LOOSE;
}

/* Is a remote's segment plausible on a picked-up flow whose guest side is
 * g?  Anything is until the guest has acknowledged something. */
static __always_inline int tcp_loose_plausible(const struct kvx_ct_tcp *g, const struct kvx_pkt *p)
{
	__u32 d = p->tcp_seq - g->ack;

	if (!(g->flags & KVX_CT_TCP_F_ACK))
		return 1;
	return d < tcp_loose_span(g) || -d <= KVX_TCP_MAXACKWIN;
}

/* What the guest's segment on a picked-up flow teaches (its raw window, at
 * least 1: its side has been seen).  The remote's side records no ACK: a
 * RST from the guest then finds nothing to be checked against
 * (tcp_rst_check), as the guest's own segments are not judged. */
static __always_inline void tcp_track_loose(struct kvx_ct_tcp *s, const struct kvx_pkt *p)
{
	/* An ACK behind the last by more than the span is no reordering:
	 * the guest's TCP is another connection now (the guest is trusted
	 * with its own flows), taken as it is. */
	if ((p->tcp_flags & KVX_TCP_ACK) && (s->flags & KVX_CT_TCP_F_ACK) &&
	    s->ack - p->tcp_ack > tcp_loose_span(s))
		s->ack = p->tcp_ack;
	tcp_side_learn(s, p, p->tcp_win ? p->tcp_win : 1);
}

enum tcp_rst_fate {
	TCP_RST_CLOSE, /* acceptable: the flow is over */
	TCP_RST_KEEP,  /* in the window but not exact: the endpoint answers it
			* with a challenge ACK (RFC 5961 section 3.2) */
	TCP_RST_DROP,  /* out of the window: off-path */
};

/*
 * A RST from s to r.  r's RCV.NXT is the highest ACK r sent: a RST exactly
 * there is acceptable, one inside r's window is forwarded without closing
 * the flow (RFC 5961 3.2: the endpoint challenges it; if the RST was real,
 * the exact one follows), anything else is dropped (RFC 5961 3.2 step 1;
 * netfilter drops RSTs below td_maxack likewise).  Before r has sent an
 * ACK (it only sent its SYN), a RST must acknowledge that SYN (RFC 9293
 * 3.10.7.3, SYN-SENT).  Nothing known (no SYN seen from r): accepted.
 */
static __always_inline enum tcp_rst_fate tcp_rst_check(const struct kvx_ct_tcp *r,
						       const struct kvx_pkt *p)
{
	if (r->flags & KVX_CT_TCP_F_ACK) {
		__u32 win = r->flags & KVX_CT_TCP_F_LOOSE ? tcp_loose_span(r) : r->maxwin;

		if (p->tcp_seq == r->ack)
			return TCP_RST_CLOSE;
		/* One below: after r acknowledged a FIN, Linux's peer resets
		 * from its FIN's sequence number (tcp_reset_check takes it). */
		if (p->tcp_seq - r->ack < (win ? win : 1) || p->tcp_seq == r->ack - 1)
			return TCP_RST_KEEP;
		return TCP_RST_DROP;
	}
	if (r->flags & KVX_CT_TCP_F_SYN)
		return (p->tcp_flags & KVX_TCP_ACK) && p->tcp_ack == r->end ? TCP_RST_CLOSE :
									      TCP_RST_DROP;
	return TCP_RST_CLOSE;
}

/* ct_tcp_update: a segment outside the window that changes nothing. */
#define KVX_CT_STRAY (KVX_R_MAX + 2)

/* The parser's note of p's timestamp (nat.h tcp_ts_note), NULL when p has
 * none: the note is the last SYN's or FIN's, p's only if its sequence
 * number is p's. */
static __always_inline const struct kvx_tcpts *tcp_ts_of(const struct kvx_pkt *p)
{
	const struct kvx_tcpts *t;
	__u32 zero = 0;

	t = bpf_map_lookup_elem(&kvx_tcpts, &zero);
	return t && t->ok && t->seq == p->tcp_seq ? t : NULL;
}

/*
 * The guest's FIN: its timestamp (the parser's note, nat.h tcp_ts_note) is
 * kept for the tuple's next SYN from another endpoint (ct_rules.h
 * kvx_tw_syn_ok).  The first FIN's only: a later one (a retransmission, or
 * a guest rewriting its timestamps to walk the kept one round the 32-bit
 * circle, where a SYN the remote refuses would pass) with another timestamp,
 * or without one, leaves it unknown, and the sequence number decides alone.
 */
static __always_inline void tcp_fin_ts_take(struct kvx_ct_val *f, const struct kvx_pkt *p)
{
	struct kvx_ct_tcp *g = &f->tcp[KVX_CT_SIDE_GUEST];
	const struct kvx_tcpts *t = tcp_ts_of(p);

	if (!(g->flags & KVX_CT_TCP_F_FIN_TAKEN)) {
		/* The first: its timestamp, or 0 (none; not an earlier
		 * connection's on the tuple, which kvx_tw_syn_ok would take for
		 * one this connection's FINs disagreed on). */
		kvx_ct_fin_ts_set(f, t ? t->tsval : 0);
		if (!t)
			g->flags &= ~KVX_CT_TCP_F_TS;
	} else if (!t || t->tsval != kvx_ct_fin_ts(f)) {
		g->flags &= ~KVX_CT_TCP_F_TS;
	}
	g->flags |= KVX_CT_TCP_F_FIN_TAKEN;
}

/* May SYN p, of another guest endpoint, be given flow f's tuple, which its
 * remote may hold in TIME_WAIT (kvx_tw_syn_ok, with the parser's note of
 * p's timestamp)?  Only against a flow in TIME_WAIT with both sides
 * tracked: what its remote took last is known only then. */
static __always_inline int tcp_syn_reopens(const struct kvx_ct_val *f, const struct kvx_pkt *p)
{
	const struct kvx_tcpts *t;

	if (f->state != KVX_CT_TIME_WAIT || !tcp_tracked(f))
		return 0;
	t = tcp_ts_of(p);
	return t ? kvx_tw_syn_ok(f, p->tcp_seq, 1, t->tsval) : kvx_tw_syn_ok(f, p->tcp_seq, 0, 0);
}

/*
 * The TCP state machine, netfilter's in fewer steps:
 *   guest SYN -> SYN_SENT -> (its SYN-ACK; any reply when the SYN was not
 *     seen) ESTABLISHED;
 *   remote SYN (static mapping, EIF) -> SYN_RECV -> the guest's SYN-ACK,
 *     then the remote's ACK of it -> ESTABLISHED: a spoofed SYN or a scan
 *     never gets past SYN_RECV's short timeout (KVX_CT_F_HALFOPEN keeps it
 *     when a RST or FIN ends the flow before the handshake does);
 *   FIN from one side -> FIN_WAIT, from both -> TIME_WAIT;
 *   an acceptable RST -> CLOSE.
 * Returns KVX_CONTINUE, KVX_CT_STRAY or a drop reason (a RST or FIN outside
 * the window, which changes nothing).  State and flags are written to the
 * flow directly, only when they change (the value's cache line is shared
 * by CPUs); few live values keep its caller's frame small (the bridge
 * program's deepest chain is at the verifier's stack limit).
 */
static __always_inline int ct_tcp_update(struct kvx_ct_val *f, const struct kvx_pkt *p, int out,
					 int reply)
{
	__u8 tf = p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN | KVX_TCP_RST);
	struct kvx_ct_tcp *s = &f->tcp[out ? KVX_CT_SIDE_GUEST : KVX_CT_SIDE_REMOTE];
	struct kvx_ct_tcp *r = &f->tcp[out ? KVX_CT_SIDE_REMOTE : KVX_CT_SIDE_GUEST];
	__u8 state = f->state, flags;

	if (tf & KVX_TCP_RST) {
		enum tcp_rst_fate fate = tcp_rst_check(r, p);

		/* The guest aborts its attempt from its SYN's end; a RST from
		 * elsewhere refuses a segment (RFC 9293 3.10.7.3: <SEQ=SEG.ACK>),
		 * the challenge ACK of the remote's old connection on the tuple
		 * (RFC 5961 4.2) or junk, and its SYN is retransmitted: the
		 * attempt, and the port, stay its own. */
		if (fate == TCP_RST_CLOSE && state == KVX_CT_SYN_SENT && out &&
		    (s->flags & KVX_CT_TCP_F_SYN) && p->tcp_seq != s->end)
			fate = TCP_RST_KEEP;
		switch (fate) {
		case TCP_RST_DROP:
			return KVX_R_DROP_TCP_WINDOW;
		case TCP_RST_CLOSE:
			if (state != KVX_CT_CLOSE)
				f->state = KVX_CT_CLOSE;
			break;
		default:
			break;
		}
		return KVX_CONTINUE;
	}
	if (tf == KVX_TCP_SYN) {
		/* The opener's SYN: a retransmission, or a new connection
		 * reusing the tuple of a closed one, or of one picked up
		 * (whose end was never seen: a guest restored from a snapshot,
		 * a client reconnecting from its fixed port). */
		if (!reply &&
		    (state == KVX_CT_CLOSE || state == KVX_CT_TIME_WAIT ||
		     state == KVX_CT_SYN_SENT || state == KVX_CT_SYN_RECV || tcp_loose(f))) {
			flags = f->flags & ~(KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN |
					     KVX_CT_F_SEEN_REPLY | KVX_CT_F_SYNACK);
			/* From outside: half-open again until its handshake. */
			if (flags & KVX_CT_F_INBOUND) {
				f->state = KVX_CT_SYN_RECV;
				flags |= KVX_CT_F_HALFOPEN;
			} else {
				f->state = KVX_CT_SYN_SENT;
			}
			f->flags = flags;
			tcp_track_syn(s, p);
			r->flags = 0;
		} else if (reply && tcp_loose(f)) {
			/* The remote opens a new connection on a picked-up
			 * flow's tuple (a client reconnecting from its port to
			 * a guest's forward): nothing known of it, so nothing
			 * checked on it from here (as before the checks: a SYN
			 * spoofed with the tuple turns them off, no more). */
			f->tcp[0].flags = 0;
			f->tcp[1].flags = 0;
		}
		return KVX_CONTINUE;
	}
	if (tf == (KVX_TCP_SYN | KVX_TCP_ACK)) {
		/* The answer to the opener's SYN; it must acknowledge it. */
		if (reply && (state == KVX_CT_SYN_SENT || state == KVX_CT_SYN_RECV) &&
		    (!(r->flags & KVX_CT_TCP_F_SYN) || tcp_acks_syn(r, p))) {
			tcp_track_syn(s, p);
			s->maxend = s->end + s->maxwin;
			tcp_track(f, s, r, p);
			if (state == KVX_CT_SYN_SENT)
				f->state = KVX_CT_ESTABLISHED;
			else
				f->flags |= KVX_CT_F_SYNACK;
		}
		return KVX_CONTINUE;
	}
	/* SYN with FIN or RST: never valid (tcp_valid_flags). */
	if (tf & KVX_TCP_SYN)
		return KVX_R_DROP_TCP_NO_FLOW;

	/* The guest waits for the SYN-ACK to its SYN: any other reply (the
	 * challenge ACK of the remote's old connection on the tuple, RFC 5961
	 * 4.2, a late segment of it, or junk) establishes nothing, as
	 * netfilter ignores it, and its FIN is dropped. */
	if (state == KVX_CT_SYN_SENT && reply && (r->flags & KVX_CT_TCP_F_SYN))
		return tf & KVX_TCP_FIN ? KVX_R_DROP_TCP_WINDOW : KVX_CT_STRAY;

	if (tcp_tracked(f)) {
		/* An off-path FIN would start the flow's end: dropped.  A
		 * remote's segment outside the window whose ACK the guest's
		 * side never asked for either is another connection's (an old
		 * one on the tuple, its port since given to this guest):
		 * dropped.  Other stray segments (behind the window, a
		 * retransmission; an old ACK, which netfilter lets pass since
		 * 6.0) go to the endpoint, which answers them with an ACK, and
		 * change nothing here. */
		if (!out && !tcp_seq_in_window(s, r, p) && !tcp_ack_in_window(s, r, p))
			return KVX_R_DROP_TCP_WINDOW;
		if (!tcp_in_window(s, r, p))
			return tf & KVX_TCP_FIN ? KVX_R_DROP_TCP_WINDOW : KVX_CT_STRAY;
		tcp_track(f, s, r, p);
	} else if (tcp_loose(f)) {
		/* The guest's segment teaches its side; a remote's is judged
		 * against that.  A remote's FIN counts once the guest
		 * acknowledges exactly its end (the guest acknowledges what it
		 * received: a guess inside the span would have to hit one of
		 * the guest's ACK values exactly). */
		if (out) {
			tcp_track_loose(s, p);
			if ((r->flags & KVX_CT_TCP_F_FIN) && (tf & KVX_TCP_ACK) &&
			    (p->tcp_ack == r->end || p->tcp_ack == r->maxend) &&
			    !(f->flags & KVX_CT_F_FIN_IN))
				f->flags |= KVX_CT_F_FIN_IN;
		} else if (!tcp_loose_plausible(r, p)) {
			return tf & KVX_TCP_FIN ? KVX_R_DROP_TCP_WINDOW : KVX_CT_STRAY;
		} else if (tf & KVX_TCP_FIN) {
			/* Two ends kept (a later FIN, real or guessed, does
			 * not wipe the one the guest may be about to ACK). */
			if (!(s->flags & KVX_CT_TCP_F_FIN))
				s->end = tcp_seq_end(p);
			else
				s->maxend = tcp_seq_end(p);
			s->flags |= KVX_CT_TCP_F_FIN;
			tf &= ~KVX_TCP_FIN;
		} else if ((s->flags & KVX_CT_TCP_F_FIN) && seq_after(tcp_seq_end(p), s->end) &&
			   seq_after(tcp_seq_end(p), s->maxend)) {
			/* Data past every FIN seen: none of them was real. */
			s->flags &= ~KVX_CT_TCP_F_FIN;
		}
	}
	flags = f->flags;
	if (tf & KVX_TCP_FIN)
		flags |= out ? KVX_CT_F_FIN_OUT : KVX_CT_F_FIN_IN;
	if ((flags & (KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN)) == (KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN))
		state = KVX_CT_TIME_WAIT;
	else if (flags & (KVX_CT_F_FIN_OUT | KVX_CT_F_FIN_IN))
		state = KVX_CT_FIN_WAIT;
	else if (state == KVX_CT_SYN_SENT && reply)
		state = KVX_CT_ESTABLISHED;
	/* The handshake of an inbound-opened flow completes with the opener's
	 * ACK of the guest's SYN-ACK. */
	else if (state == KVX_CT_SYN_RECV && !reply && (flags & KVX_CT_F_SYNACK) &&
		 (tf & KVX_TCP_ACK) &&
		 (!tcp_tracked(f) || p->tcp_ack == f->tcp[KVX_CT_SIDE_GUEST].end)) {
		state = KVX_CT_ESTABLISHED;
		flags &= ~KVX_CT_F_HALFOPEN;
	}
	/* The guest's TCP goes on after a RST it did not accept (in the
	 * window, not exact: RFC 5961); after one it accepted it sends nothing
	 * more on the tuple (a RST at most).  Closing the flow would let it
	 * expire in 10 s under a live connection.  A flow opened from outside
	 * only if its handshake had got as far as the guest's SYN-ACK. */
	else if (state == KVX_CT_CLOSE && out && (flags & KVX_CT_F_SEEN_REPLY) &&
		 (!(flags & KVX_CT_F_INBOUND) || (flags & KVX_CT_F_SYNACK)))
		state = KVX_CT_ESTABLISHED;
	if (flags != f->flags)
		f->flags = flags;
	if (state != f->state)
		f->state = state;
	return KVX_CONTINUE;
}

/*
 * Account one packet of an existing flow: last-seen time, counters, TCP
 * state (ct_tcp_update).  Returns KVX_CONTINUE or a drop reason.  Not
 * inlined: a leaf with a small frame, where inlined into its callers it
 * grew the bridge program's deepest call chain past the verifier's stack
 * limit.
 */
static __noinline int ct_update(struct kvx_ct_val *f, const struct kvx_pkt *p, enum ct_dir dir,
				__u64 now)
{
	int reply = (dir == CT_DIR_IN) != !!(f->flags & KVX_CT_F_INBOUND);

	if (p->proto == IPPROTO_TCP) {
		int r = ct_tcp_update(f, p, dir == CT_DIR_OUT, reply);

		if (r == KVX_CT_STRAY)
			return KVX_CONTINUE;
		if (r != KVX_CONTINUE)
			return r;
	}
	f->last_seen_ns = now;
	if (dir == CT_DIR_OUT)
		f->pkts_out++;
	else if (f->pkts_in != 0xffffffffU) /* 32 bits: the other half is slot */
		f->pkts_in++;
	if (reply && !(f->flags & KVX_CT_F_SEEN_REPLY))
		f->flags |= KVX_CT_F_SEEN_REPLY;
	return KVX_CONTINUE;
}

/*
 * The quota slot of the guest whose MAC is mac (abi.h kvx_gflows): that of
 * the bridge port the MAC is placed on (kvx_brport: the port guard at its
 * first frame, the daemon from the bridge's forwarding database).  A guest
 * is its port, not its MAC: one that sends from fresh MACs, each with a
 * free address of the subnet, would otherwise have a flow quota and a port
 * limit per MAC, and two MACs' port limits are the whole NAT pool.  MACs
 * placed nowhere (a port without the guard, a full table) share the slot
 * of port 0.
 */
static __always_inline __u32 mac_slot(const struct kvx_cfg *cfg, const __u8 *mac)
{
	/* The key in kvx_scratch (abi.h KVX_SCRATCH_SLOT_KEY), not on the
	 * stack: this is inlined into frames on the programs' deepest call
	 * chains (the reclaim callback's), at 6.1's 512 bytes. */
	__u32 idx = KVX_SCRATCH_SLOT_KEY;
	struct kvx_xfdb_key *k = bpf_map_lookup_elem(&kvx_scratch, &idx);
	struct kvx_xfdb_val *v;

	if (!k)
		return kvx_port_slot(0, cfg->guest_seed);
	__builtin_memcpy(k->mac, mac, ETH_ALEN);
	k->_pad = 0;
	v = bpf_map_lookup_elem(&kvx_brport, k);
	return kvx_port_slot(v ? v->ifindex : 0, cfg->guest_seed);
}

/*
 * The quota slot of the guest that owns a guest address (abi.h kvx_gflows):
 * its owner's (kvx_guest) mac_slot, so that every address a guest claims
 * counts against one quota; an address without an owner yet, from the
 * address.  Inlined: as a call of its own it is one frame more on the
 * bridge program's deepest chain (ct_quota_check -> ct_early_drop), which
 * 6.1's verifier refuses ("combined stack size of 6 calls is 544"): a
 * frame costs at least 32 bytes there.
 */
static __always_inline __u32 guest_slot(const struct kvx_cfg *cfg, __be32 guest)
{
	/* Both keys in kvx_scratch, as mac_slot's: the stack holds only the
	 * index, where the address alone used to be. */
	__u32 idx = KVX_SCRATCH_SLOT_KEY;
	struct kvx_xfdb_key *k = bpf_map_lookup_elem(&kvx_scratch, &idx);
	struct kvx_guest_val *g;
	struct kvx_xfdb_val *v;

	if (!k)
		return kvx_guest_slot(NULL, guest, cfg->guest_seed);
	*(__be32 *)k = guest;
	g = bpf_map_lookup_elem(&kvx_guest, k);
	if (!g)
		return kvx_guest_slot(NULL, guest, cfg->guest_seed);
	__builtin_memcpy(k->mac, g->mac, ETH_ALEN);
	k->_pad = 0;
	v = bpf_map_lookup_elem(&kvx_brport, k);
	return kvx_port_slot(v ? v->ifindex : 0, cfg->guest_seed);
}

/* The slot flow f (key k) counts in: the one it was counted in when made
 * (abi.h kvx_ct_val.slot), else, in an older entry or one of another seed,
 * its guest's now.  Not the guest's now in every case: a MAC placed on its
 * port after it opened flows in the shared slot would move them to the
 * port when they go, and leave the shared slot free for the next made-up
 * MAC. */
static __always_inline __u32 ct_flow_slot(const struct kvx_cfg *cfg, const struct kvx_ct_key *k,
					  const struct kvx_ct_val *f)
{
	__u32 s = kvx_ct_slot_read(f->slot, cfg->guest_seed);

	return s != KVX_CT_NO_SLOT ? s : guest_slot(cfg, k->int_addr);
}

/* The counter a flow counts against: flows opened from outside have their own. */
static __always_inline __u32 *gflows_counter(struct kvx_gflows_val *g, __u8 ct_flags)
{
	return ct_flags & KVX_CT_F_INBOUND ? &g->in : &g->out;
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
/*
 * A pass that freed something (closed flows give way at a quota, KVX_EVICT)
 * is not free either: skipping to the cursor costs ~45 ns an entry, so a
 * pass deep in a large table takes milliseconds, and a guest that closes
 * its own flows (its SYN, its RST) could have every new flow pay one.  Each
 * pass therefore holds further passes off in proportion to the entries it
 * visited: machine-wide KVX_RECLAIM_NS_PER_ENTRY each (passes take at most
 * ~45 % of a CPU, whoever asks), and for the guest whose quota asked
 * KVX_RECLAIM_GUEST_NS_PER_ENTRY (one guest at most ~11 %, leaving the rest
 * to the others).  A pass at the start of the table holds off microseconds.
 */
#define KVX_RECLAIM_NS_PER_ENTRY 100ULL
#define KVX_RECLAIM_GUEST_NS_PER_ENTRY 400ULL

__u32 kvx_reclaim_cursor;
__u64 kvx_reclaim_holdoff;
/* Entries the last pass visited (either table), for the guest's hold-off. */
__u32 kvx_reclaim_visited;

/* ct_reclaim's evict argument: KVX_EVICT_NONE (expired flows only),
 * ct_evict_of's guest slot whose closed flow (ct_closed_evictable) may go
 * (a guest at its quota), or KVX_EVICT_ANY: any guest's (a full table). */
#define KVX_EVICT_NONE 0xffffffffU
#define KVX_EVICT_ANY 0xfffffffeU
#define KVX_EVICT_IN 0x80000000U

struct ct_reclaim_ctx {
	__u64 now;
	__u32 skip;  /* entries the earlier passes examined */
	__u32 seen;  /* entries visited in this pass (up to the one it stopped at) */
	__u32 freed;
	__u32 more;  /* stopped early: the table goes on */
	__u32 evict; /* KVX_EVICT_NONE once a closed flow went */
};

/* A reclaim callback's window: 0 to examine this entry, 1 to skip it (an
 * earlier pass examined it), 2 to stop the walk (the budget is spent; the
 * entry is not examined, nor counted in seen). */
static __always_inline int reclaim_window(struct ct_reclaim_ctx *c)
{
	if (c->seen++ < c->skip)
		return 1;
	if (c->seen - c->skip > KVX_RECLAIM_BUDGET) {
		c->seen--;
		c->more = 1;
		return 2;
	}
	return 0;
}

/* ct_reclaim's evict for a new flow of the guest slot gslot: its closed
 * flows that count against the same quota as the new one (abi.h
 * kvx_gflows_val: opened by the guest, or from outside, KVX_EVICT_IN). */
static __always_inline __u32 ct_evict_of(__u32 gslot, __u8 ct_flags)
{
	return gslot | (ct_flags & KVX_CT_F_INBOUND ? KVX_EVICT_IN : 0);
}

/*
 * A closed TCP flow (TIME_WAIT, or CLOSE after a RST; also a half-open one
 * from outside, for its own guest's inbound quota or a full table) that
 * may give way to a new one before its
 * timeout (RFC 5382/7857's 4 minutes): netfilter too
 * lets a new SYN take over a TIME_WAIT entry, and its early_drop evicts
 * entries no longer needed, so a guest churning through short connections
 * does not run into its quota (or the table) at quota / 240 s connections
 * a second.  Quiet for KVX_TW_RECYCLE_NS first (the guest's last ACK and
 * a retransmitted FIN are through, as bind_recycle asks).  The 4-tuple's
 * TIME_WAIT protection stays with the binding (tw_remotes, which the GC
 * keeps while it remembers a remote), not with the flow.  Never a live
 * flow: a half-closed one (FIN_WAIT) still carries data.  Whose may go is
 * ct_evict_owner's.
 */
static __always_inline int ct_closed_evictable(__u8 proto, const struct kvx_ct_val *f,
					       __u32 evict, __u64 now)
{
	int q;

	if (evict == KVX_EVICT_NONE)
		return 0;
	q = kvx_ct_quiet(f, proto, now);
	/* A half-open flow from outside: a full table takes any guest's
	 * (netfilter's early_drop takes any unassured flow: a SYN flood at a
	 * few guests' forwards, each within its inbound quota, must not fill
	 * the table every guest shares), the guest's inbound quota its own
	 * (KVX_EVICT_IN: the flood's entries that have left the early-drop
	 * ring would else hold it for SYN_RECV's timeout). */
	return q == KVX_QUIET_CLOSED || (q == KVX_QUIET_HALFOPEN && (evict & KVX_EVICT_IN));
}

/* May a closed flow counting in owner (ct_evict_of of its guest slot and
 * flags) give way for evict?  At a quota only that guest's own (ct_evict_of):
 * a guest over its share takes nothing from another.  A full table takes
 * any guest's (KVX_EVICT_ANY): a closed flow holds nothing its guest still
 * uses, and one guest's closed flows must not refuse every guest's new
 * connections for 4 minutes (netfilter's early_drop does not ask whose). */
static __always_inline int ct_evict_owner(__u32 owner, __u32 evict)
{
	return evict == KVX_EVICT_ANY || owner == evict;
}

/* A reclaim callback's end after it deleted a flow (counted by the
 * caller): one closed flow per pass: the caller needs one entry (and a
 * pass per new flow must stay short); the others still answer a late FIN
 * until they expire or give way in turn. */
static __always_inline long reclaim_freed(struct ct_reclaim_ctx *c, int closed)
{
	c->freed++;
	if (!closed)
		return 0;
	c->evict = KVX_EVICT_NONE;
	c->more = 1;
	return 1;
}

static long ct_reclaim_cb(void *map, struct kvx_ct_key *k, struct kvx_ct_val *f,
			  struct ct_reclaim_ctx *c)
{
	const struct kvx_cfg *cfg;
	struct kvx_gflows_val *g;
	__u32 slot;
	__u8 flags;
	int closed, w = reclaim_window(c);

	if (w)
		return w - 1;
	cfg = cfg_get();
	if (!cfg)
		return 1;
	closed = !kvx_ct_expired(f, k->proto, &cfg->timeouts, c->now);
	/* The state first: guest_slot takes lookups. */
	if (closed && !ct_closed_evictable(k->proto, f, c->evict, c->now))
		return 0;
	/* One ct_flow_slot for the owner test and the uncount: each inlined
	 * copy costs this frame spill slots, and it is the last of the
	 * bridge program's deepest chain (6.1: 512 bytes). */
	slot = ct_flow_slot(cfg, k, f);
	if (closed &&
	    !ct_evict_owner(c->evict == KVX_EVICT_ANY ? KVX_EVICT_ANY : ct_evict_of(slot, f->flags),
			    c->evict))
		return 0;
	flags = f->flags;
	if (bpf_map_delete_elem(&kvx_ct, k))
		return 0; /* someone else deleted it */
	g = bpf_map_lookup_elem(&kvx_gflows, &slot);
	if (g)
		__sync_fetch_and_add(gflows_counter(g, flags), -1);
	return reclaim_freed(c, closed);
}

/* One reclaim pass over map with cb, resuming at *cursor; returns the
 * number of flows freed.  Inlined into one global function per table (the
 * map and callback are constants there, as bpf_for_each_map_elem needs). */
static __always_inline int reclaim_pass(void *map, void *cb, __u32 *cursor, __u64 *holdoff,
					__u64 now, __u32 evict)
{
	struct ct_reclaim_ctx c = {};
	__u32 freed; /* by the first walk, when there is a second */

	if (now < *holdoff)
		return 0;
	c.now = now;
	c.skip = *cursor;
	c.evict = evict;
	bpf_for_each_map_elem(map, cb, &c, 0);
	freed = 0;
	/* In .bss, not on this frame (6.1's stack limit over the chain). */
	kvx_reclaim_visited = c.seen;
	if (c.skip && !c.more && (c.seen <= c.skip || c.evict != KVX_EVICT_NONE)) {
		/* The table shrank below the cursor, or ended before a closed
		 * flow to evict was found: wrap around now rather than fail
		 * this insert (the window restarts: the first walk's frees
		 * are behind it). */
		freed = c.freed;
		c.skip = 0;
		c.seen = 0;
		bpf_for_each_map_elem(map, cb, &c, 0);
		kvx_reclaim_visited += c.seen;
	}
	/* Entries freed in the window moved the rest of the walk forward. */
	*cursor = c.more ? c.seen - (c.freed - freed) : 0;
	if (!c.freed && c.seen > c.skip)
		*holdoff = now + KVX_RECLAIM_HOLDOFF_NS;
	else
		*holdoff = now + kvx_reclaim_visited * KVX_RECLAIM_NS_PER_ENTRY;
	return c.freed;
}

/* The guest's own hold-off after a pass its quota asked for that freed
 * room (KVX_RECLAIM_GUEST_NS_PER_ENTRY). */
static __always_inline void reclaim_guest_holdoff(struct kvx_gflows_val *g, __u64 now)
{
	g->reclaim_ns = now + kvx_reclaim_visited * KVX_RECLAIM_GUEST_NS_PER_ENTRY;
}

/* kvx_ct's reclaim pass, which also evicts one closed flow of evict
 * (ct_evict_of, KVX_EVICT_ANY or KVX_EVICT_NONE) if it finds one.  A
 * global function: the verifier checks it (and its callback) once, not
 * once per call site and caller state, and its frame stays off the main
 * path's stack. */
__noinline int ct_reclaim(__u64 now, __u32 evict)
{
	return reclaim_pass(&kvx_ct, ct_reclaim_cb, &kvx_reclaim_cursor, &kvx_reclaim_holdoff, now,
			    evict);
}

/*
 * Early drop (netfilter's early_drop, which evicts unassured flows first):
 * the guest's newest half-open inbound flows sit in a ring (abi.h
 * kvx_halfopen, one per guest slot); when its inbound quota or the table is
 * full, a new SYN evicts one of them that is still half-open (SYN_RECV, or
 * closed before its handshake: KVX_CT_F_HALFOPEN) and takes its slot.  A
 * SYN flood then recycles its own entries instead of locking the guest's
 * forwards (or the table) until SYN_RECV's timeout.
 *
 * Which one (halfopen_victim), from one pass over the ring:
 * - the asking SYN's remote's newest, when it holds two or more: a flood
 *   from one source recycles its own entries and never reaches another
 *   remote's (the new flow refills the evicted slot: the ring's other
 *   entries stay), and one SYN spoofed from a real client's address does
 *   not make that client's handshake the one to go.  IPv6 remotes compare
 *   whole: by /64 every host of the flooder's LAN would be its "own";
 * - a flow the guest has not answered KVX_HALFOPEN_ANSWER_NS after its
 *   (last) SYN: a SYN the guest dropped (a listener's full backlog) holds
 *   nothing a real opener waits on.  A SYN not yet answered is not taken
 *   on that ground alone: a flood faster than the guest answers would
 *   evict every real SYN before its SYN-ACK;
 * - else the oldest: an answered flow whose opener never sent the
 *   handshake's last ACK is ever more likely a spoofed source's as it
 *   ages.  A flood from ever new sources that the guest answers gives a
 *   real opener's handshake KVX_HALFOPEN_RING flood SYNs' time; below the
 *   quota nothing is evicted, and half-open flows quiet for
 *   KVX_TW_RECYCLE_NS give way to the guest's inbound quota (the reclaim
 *   pass here, the daemon's relief once a guest nears its quota:
 *   control/gc.cpp), so a flood reaches the quota (and this) only above
 *   about quota / (KVX_TW_RECYCLE_NS + the GC's interval) SYNs a second.
 * Age is the slot's push number (kvx_halfopen_val.seq): the flows'
 * created_ns is read once a jiffy (clock.h), and a push refills the slot
 * an eviction emptied, so the ring's place is not age either.  One lookup
 * per entry (64 at most, only for a SYN at a quota or a full table); the
 * guest's slot is checked, and the flow looked up again, for the chosen
 * one only.
 */
static __always_inline int ct_halfopen_evictable(const struct kvx_ct_val *f)
{
	return f && (f->flags & KVX_CT_F_INBOUND) &&
	       (f->state == KVX_CT_SYN_RECV || (f->flags & KVX_CT_F_HALFOPEN));
}

/* One early-drop pass's candidates (slots KVX_HALFOPEN_RING: none) and
 * their ages (pushes since theirs), kept in kvx_scratch[1] (abi.h: on the
 * stack, the verifier followed every combination of the slots). */
struct halfopen_pick {
	__u32 old, unans, same;
	__u32 old_age, unans_age, same_age;
	__u32 same_n; /* the asking remote's evictable flows */
	__u32 _pad;
};

_Static_assert(sizeof(struct halfopen_pick) <= sizeof(struct kvx_ct_val), "fits kvx_scratch");

static __always_inline struct halfopen_pick *halfopen_pick_get(void)
{
	__u32 one = 1;
	struct halfopen_pick *c = bpf_map_lookup_elem(&kvx_scratch, &one);

	if (c) {
		__builtin_memset(c, 0, sizeof(*c));
		c->old = c->unans = c->same = KVX_HALFOPEN_RING;
	}
	return c;
}

/* Flow f, pushed age pushes ago, at slot: a candidate of pick c for a SYN
 * from the same remote or not, now. */
static __always_inline void halfopen_consider(struct halfopen_pick *c, const struct kvx_ct_val *f,
					      __u32 slot, __u32 age, int same, __u64 now)
{
	if (c->old >= KVX_HALFOPEN_RING || age > c->old_age) {
		c->old = slot;
		c->old_age = age;
	}
	/* Unanswered since its last SYN (a retransmission clears SYNACK and
	 * refreshes last_seen_ns; the guest's SYN-ACK sets SYNACK). */
	if (!(f->flags & KVX_CT_F_SYNACK) && f->last_seen_ns + KVX_HALFOPEN_ANSWER_NS < now &&
	    (c->unans >= KVX_HALFOPEN_RING || age > c->unans_age)) {
		c->unans = slot;
		c->unans_age = age;
	}
	if (same) {
		c->same_n++;
		if (c->same >= KVX_HALFOPEN_RING || age < c->same_age) {
			c->same = slot;
			c->same_age = age;
		}
	}
}

static __always_inline __u32 halfopen_victim(const struct halfopen_pick *c)
{
	if (c->same_n >= 2)
		return c->same;
	if (c->unans < KVX_HALFOPEN_RING)
		return c->unans;
	return c->old;
}

/* The ring of guest slot *idx in map (kvx_halfopen, kvx_halfopen6), made
 * on the guest's first half-open flow. */
static __always_inline void *halfopen_ring(void *map, __u32 *idx)
{
	void *h = bpf_map_lookup_elem(map, idx);

	if (h)
		return h;
	/* -EEXIST: another CPU made it first; that one is used. */
	bpf_map_update_elem(map, idx, &kvx_halfopen_zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, idx);
}

/* Is the key of words 32-bit words at k in the ring (keys)?  A remote
 * cycling SYN, RST, SYN on one tuple (or two, in turn) would else fill the
 * ring with copies of its flows, and early drop would find little else. */
static __always_inline int halfopen_has(const __u32 *keys, const __u32 *k, __u32 words)
{
	__u32 i, j;

	for (i = 0; i < KVX_HALFOPEN_RING; i++) {
		for (j = 0; j < words; j++)
			if (keys[i * words + j] != k[j])
				break;
		if (j == words)
			return 1;
	}
	return 0;
}

/* The slot a push writes (the one early drop just emptied, else the
 * oldest push's place), its push number recorded. */
static __always_inline __u32 halfopen_push_slot(__u32 *next, __u32 *hole, __u32 *seq)
{
	__u32 n = *next, slot = n & (KVX_HALFOPEN_RING - 1);

	if (*hole) {
		slot = (*hole - 1) & (KVX_HALFOPEN_RING - 1);
		*hole = 0;
	}
	seq[slot] = n;
	*next = n + 1;
	return slot;
}

/* Make room for a new SYN from rem to guest.  Returns 1 if a flow was
 * evicted.  A global function (scalar arguments only): its loop is verified
 * once, not once per call site and caller state. */
__noinline int ct_early_drop(__be32 guest, __be32 rem, __u64 now)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_halfopen_val *h;
	struct halfopen_pick *c;
	struct kvx_gflows_val *g;
	struct kvx_ct_key *k;
	struct kvx_ct_val *f;
	__u32 i, gslot, best;

	if (!cfg)
		return 0;
	gslot = guest_slot(cfg, guest);
	h = bpf_map_lookup_elem(&kvx_halfopen, &gslot);
	c = halfopen_pick_get();
	if (!h || !c)
		return 0;
	for (i = 0; i < KVX_HALFOPEN_RING; i++) {
		k = &h->keys[i];
		if (k->proto != IPPROTO_TCP)
			continue;
		f = bpf_map_lookup_elem(&kvx_ct, k);
		if (!ct_halfopen_evictable(f))
			continue;
		halfopen_consider(c, f, i, h->next - h->seq[i], k->rem_addr == rem, now);
	}
	best = halfopen_victim(c);
	if (best >= KVX_HALFOPEN_RING)
		return 0;
	k = &h->keys[best];
	/* One ring serves all of the guest's addresses; a guest evicts only
	 * flows that count against its own quota (an address may have
	 * changed owners since).  Looked up again: another CPU's ACK may
	 * have completed its handshake since the pass (the window left is
	 * the lookup's to the delete's). */
	f = bpf_map_lookup_elem(&kvx_ct, k);
	if (!ct_halfopen_evictable(f) || ct_flow_slot(cfg, k, f) != gslot ||
	    bpf_map_delete_elem(&kvx_ct, k))
		return 0;
	g = bpf_map_lookup_elem(&kvx_gflows, &gslot);
	if (g)
		__sync_fetch_and_add(&g->in, -1);
	h->hole = best + 1; /* the new flow takes its slot */
	return 1;
}

/* Remember a half-open inbound flow (new, or reopened by a SYN) for
 * ct_early_drop: into the slot it just emptied, else over the oldest
 * push's place; not again if it is there. */
static __noinline void ct_halfopen_push(const struct kvx_cfg *cfg, const struct kvx_ct_key *k)
{
	__u32 idx = guest_slot(cfg, k->int_addr);
	struct kvx_halfopen_val *h = halfopen_ring(&kvx_halfopen, &idx);
	__u32 slot;

	if (!h)
		return;
	if (halfopen_has((const __u32 *)h->keys, (const __u32 *)k, sizeof(*k) / 4))
		return;
	slot = halfopen_push_slot(&h->next, &h->hole, h->seq);
	__builtin_memcpy(&h->keys[slot], k, sizeof(*k));
}

/*
 * Per-guest flow quota (kvx_cfg.flow_quota), for the flows the guest opens
 * and, separately, for those opened from outside (abi.h kvx_gflows_val):
 * one guest's flood of new flows cannot take the whole table from the
 * others, and a LAN host's flood at a guest's forwards cannot take the
 * guest's own outbound capacity.  Checked before anything is created for a
 * new flow (no binding either); flows that exist are never affected.
 * Approximate under races between CPUs (by a few flows).
 *
 * A guest at its quota whose flows may be dead (no daemon to expire them)
 * gets a reclaim pass, but at most one per KVX_RECLAIM_HOLDOFF_NS: a guest
 * that stays over its quota must not make each of its packets pay a walk
 * of the table (the machine-wide hold-off only counts passes that freed
 * nothing, and other guests' dead flows keep a pass "useful"); the pass
 * also evicts one of the guest's closed flows (ct_closed_evictable) that
 * counts against the same quota.  A new inbound SYN over the quota first
 * evicts a half-open one (ct_early_drop).
 */
static __noinline int ct_quota_check(const struct kvx_cfg *cfg, __be32 guest, __u8 ct_flags,
					  const struct kvx_pkt *p, __u64 now)
{
	struct kvx_gflows_val *g;
	__u32 q = cfg->flow_quota, slot;
	__u32 *n;

	if (!q)
		return KVX_CONTINUE;
	slot = guest_slot(cfg, guest);
	g = bpf_map_lookup_elem(&kvx_gflows, &slot);
	if (!g)
		return KVX_CONTINUE;
	n = gflows_counter(g, ct_flags);
	if ((__s32)*n < (__s32)q)
		return KVX_CONTINUE;
	if ((ct_flags & KVX_CT_F_INBOUND) && p->proto == IPPROTO_TCP &&
	    ct_early_drop(guest, p->saddr, now))
		return KVX_CONTINUE;
	if (now < g->reclaim_ns)
		return KVX_R_DROP_GUEST_QUOTA;
	if (ct_reclaim(now, ct_evict_of(slot, ct_flags)) && (__s32)*n < (__s32)q) {
		reclaim_guest_holdoff(g, now);
		return KVX_CONTINUE;
	}
	g->reclaim_ns = now + KVX_RECLAIM_HOLDOFF_NS;
	return KVX_R_DROP_GUEST_QUOTA;
}

/* May p open a flow (both families)?  Outbound, TCP only with a SYN or a
 * bare ACK (a mid-stream pick-up after a flush or a restart, netfilter's
 * nf_conntrack_tcp_loose), never FIN, RST or invalid combinations (SYN+FIN,
 * SYN+RST, no flags: nf_conntrack_proto_tcp.c tcp_valid_flags, tcp_new),
 * else the remote's answering RST would find a way in; inbound only with a
 * SYN.  Other protocols: any packet. */
static __always_inline int tcp_may_open(const struct kvx_pkt *p, enum ct_dir dir)
{
	__u8 tf = p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN | KVX_TCP_RST);

	if (p->proto != IPPROTO_TCP)
		return 1;
	return tf == KVX_TCP_SYN || (dir == CT_DIR_OUT && tf == KVX_TCP_ACK);
}

/*
 * A new flow's value (both families: kvx_ct6_val embeds it), zeroed and
 * filled for packet p (its first) except the external address.
 */
static __always_inline void ct_val_init(struct kvx_ct_val *vp, const struct kvx_pkt *p,
					enum ct_dir dir, __be16 ext_port, __u8 flags, __u64 now)
{
	__builtin_memset(vp, 0, sizeof(*vp));
	vp->created_ns = now;
	vp->last_seen_ns = now;
	vp->ext_port = ext_port;
	vp->flags = flags;
	vp->state = KVX_CT_UDP;
	if (dir == CT_DIR_OUT) {
		vp->pkts_out = 1;
	} else {
		vp->flags |= KVX_CT_F_INBOUND;
		vp->pkts_in = 1;
	}
	if (p->proto == IPPROTO_TCP) {
		/* Callers let only a SYN open an inbound flow; outbound also a
		 * bare ACK: a mid-stream pick-up (after a flush or a restart,
		 * netfilter's nf_conntrack_tcp_loose), established and checked
		 * loosely (its window scale is unknown: tcp_loose_span), from
		 * what the guest's ACK says on. */
		struct kvx_ct_tcp *s =
			&vp->tcp[dir == CT_DIR_OUT ? KVX_CT_SIDE_GUEST : KVX_CT_SIDE_REMOTE];

		if (p->tcp_flags & KVX_TCP_SYN) {
			vp->state = dir == CT_DIR_OUT ? KVX_CT_SYN_SENT : KVX_CT_SYN_RECV;
			if (dir != CT_DIR_OUT)
				vp->flags |= KVX_CT_F_HALFOPEN;
			tcp_track_syn(s, p);
		} else {
			vp->state = KVX_CT_ESTABLISHED;
			vp->tcp[0].flags = KVX_CT_TCP_F_LOOSE;
			vp->tcp[1].flags = KVX_CT_TCP_F_LOOSE;
			tcp_track_loose(s, p);
		}
	}
}

#define KVX_CT_RACE (KVX_R_MAX + 3)

/* A new flow (key k, just made) counted for its guest, in the slot it then
 * records (abi.h kvx_ct_val.slot): uncounted there when it goes, whatever
 * becomes of its guest's MAC or address meanwhile.  Recorded after the
 * insert, not in the value inserted: a call between the value's build and
 * the insert spills ct_create's frame past 64 bytes, and ct_create is on
 * the bridge program's deepest chain (down to the reclaim callback, at
 * 6.1's 512 bytes with 32-byte frames); until then the flow reads as its
 * guest's now (no record), the same slot but for a change in between.
 * Not inlined for the same frame: guest_slot's lookups. */
static __noinline void ct_count_new(const struct kvx_ct_key *k, __u8 ct_flags)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_gflows_val *g;
	struct kvx_ct_val *f;
	__u32 slot;

	if (!cfg)
		return;
	slot = guest_slot(cfg, k->int_addr);
	f = bpf_map_lookup_elem(&kvx_ct, k);
	if (f)
		f->slot = kvx_ct_slot_rec(slot, cfg->guest_seed);
	g = bpf_map_lookup_elem(&kvx_gflows, &slot);
	if (g)
		__sync_fetch_and_add(gflows_counter(g, ct_flags), 1);
}

/* Not inlined: its retry and counting paths would multiply with every path
 * into its two callers (verifier work). */
static __noinline int ct_create(const struct kvx_ct_key *k, const struct kvx_pkt *p,
				enum ct_dir dir, const struct nat_endpoint *ext, __u64 now)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_ct_val *vp;
	__u32 zero = 0;
	__u8 state;
	int err;

	/* The value is built in the per-CPU scratch (abi.h kvx_scratch). */
	vp = bpf_map_lookup_elem(&kvx_scratch, &zero);
	if (!cfg || !vp)
		return KVX_R_DROP_TABLE_FULL;
	ct_val_init(vp, p, dir, ext->port, ext->flags, now);
	vp->ext_addr = ext->addr;
	state = vp->state;
	err = bpf_map_update_elem(&kvx_ct, k, vp, BPF_NOEXIST);
	/* Full (-E2BIG): make room from expired flows or a closed one (or,
	 * for an inbound SYN, from the guest's half-open ones), then try once
	 * more.  Neither runs a program on this CPU: the scratch value is
	 * intact. */
	if (err == -E2BIG && (ct_reclaim(now, KVX_EVICT_ANY) > 0 ||
	     (state == KVX_CT_SYN_RECV && ct_early_drop(k->int_addr, k->rem_addr, now))))
		err = bpf_map_update_elem(&kvx_ct, k, vp, BPF_NOEXIST);
	if (!err) {
		ct_count_new(k, dir == CT_DIR_OUT ? 0 : KVX_CT_F_INBOUND);
		if (state == KVX_CT_SYN_RECV)
			ct_halfopen_push(cfg, k);
		return KVX_CONTINUE;
	}
	/* -EEXIST: another CPU created it first; the caller accounts the
	 * packet to that flow (ct_create_or_update). */
	return err == -EEXIST ? KVX_CT_RACE : KVX_R_DROP_TABLE_FULL;
}

/* A new flow, or, if another CPU just made it, this packet on it (ct_update
 * called from here, one frame less deep than from ct_create). */
static __always_inline int ct_create_or_update(const struct kvx_ct_key *k, const struct kvx_pkt *p,
					       enum ct_dir dir, const struct nat_endpoint *ext,
					       __u64 now)
{
	struct kvx_ct_val *f;
	int r = ct_create(k, p, dir, ext, now);

	if (r != KVX_CT_RACE)
		return r;
	f = bpf_map_lookup_elem(&kvx_ct, k);
	if (!f)
		return KVX_R_DROP_TABLE_FULL;
	return ct_update(f, p, dir, now);
}

/*
 * A dynamic IN half that already delivers to p's guest endpoint: its OUT
 * half was lost (or is being re-made after a stale one).  It is this
 * endpoint's mapping, not a taken port: keeping it keeps the mapping
 * endpoint-independent (RFC 4787 REQ-1) instead of leaving it orphaned
 * and binding the endpoint anew.  Refreshed, as a claim would have set it.
 */
static __noinline int bind_in_is_own(const struct kvx_bind_key *ik, const struct kvx_pkt *p,
				     __u64 now)
{
	struct kvx_bind_val *ib = bpf_map_lookup_elem(&kvx_bind, ik);

	if (!ib || ib->addr != p->saddr || ib->port != p->sport ||
	    (ib->flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)))
		return 0;
	ib->last_used_ns = now;
	return 1;
}

/* The guest's dynamic binding counter (abi.h kvx_gports), at the guest's
 * index in kvx_gflows (guest_slot). */
static __always_inline __u32 *gports_of(const struct kvx_cfg *cfg, __be32 guest)
{
	__u32 idx = guest_slot(cfg, guest);

	return bpf_map_lookup_elem(&kvx_gports, &idx);
}

/* The guest's tenant counter (abi.h kvx_gtenant), slotted as kvx_gports. */
static __always_inline __u32 *gtenant_of(const struct kvx_cfg *cfg, __be32 guest)
{
	__u32 idx = guest_slot(cfg, guest);

	return bpf_map_lookup_elem(&kvx_gtenant, &idx);
}

/* A dynamic OUT half (key ok, just made) counted for its guest, in
 * kvx_gports or, a tenant's, kvx_gtenant, in the slot it then records
 * (abi.h kvx_bind_val.slot): released there, whatever becomes of its
 * guest's MAC meanwhile (as ct_count_new, and recorded after the insert
 * for the same reason).  Inlined into ovl_try, the last frame of the
 * bridge program's deepest chain (a call from there is 32 bytes past
 * 6.1's 512); bind_create calls it (bind_count_new). */
static __always_inline void bind_count(const struct kvx_cfg *cfg, const struct kvx_bind_key *ok,
				       int tenant)
{
	struct kvx_bind_val *v;
	__u32 slot, *n;

	if (!cfg || !ok)
		return;
	slot = guest_slot(cfg, ok->addr);
	v = bpf_map_lookup_elem(&kvx_bind, ok);
	if (v)
		v->slot = kvx_ct_slot_rec(slot, cfg->guest_seed);
	n = tenant ? bpf_map_lookup_elem(&kvx_gtenant, &slot) :
		     bpf_map_lookup_elem(&kvx_gports, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* bind_count of a port (kvx_gports), not inlined: guest_slot's lookups off
 * bind_create's frame. */
static __noinline void bind_count_new(const struct kvx_cfg *cfg, const struct kvx_bind_key *ok)
{
	bind_count(cfg, ok, 0);
}

/* Deletes a dynamic OUT half (key ok, value ob: a port of the guest's, or a
 * tenant's place) and takes it off the counter of the slot it was counted
 * in (its record, else its guest's now) at once, not only at the GC's next
 * recount: a guest whose stale bindings the datapath released would else
 * be refused new ones (its port limit, tenants_full) until then.  Returns
 * 1 if it was deleted here (another CPU may have been first).  Inlined
 * into bind_recycle, the last frame of the bridge program's deepest chain
 * (a call from there is 32 bytes past 6.1's 512); bind_get calls it
 * (bind_out_release). */
static __always_inline int bind_release(const struct kvx_cfg *cfg, const struct kvx_bind_key *ok,
					const struct kvx_bind_val *ob, int tenant)
{
	__u32 slot, *n;

	if (!ok || !ob)
		return 0;
	slot = ob->slot; /* read before the delete: the entry may be reused */
	if (bpf_map_delete_elem(&kvx_bind, ok))
		return 0;
	if (!cfg)
		return 1;
	slot = kvx_ct_slot_read(slot, cfg->guest_seed);
	if (slot == KVX_CT_NO_SLOT)
		slot = guest_slot(cfg, ok->addr);
	n = tenant ? bpf_map_lookup_elem(&kvx_gtenant, &slot) :
		     bpf_map_lookup_elem(&kvx_gports, &slot);
	if (n)
		__sync_fetch_and_add(n, -1);
	return 1;
}

/* bind_release, not inlined: its key and value stay off ct_egress's frame
 * (bind_get, inlined there, is on the bridge program's deepest chain). */
static __noinline int bind_out_release(const struct kvx_cfg *cfg, const struct kvx_bind_key *ok,
				       const struct kvx_bind_val *ob, int tenant)
{
	return bind_release(cfg, ok, ob, tenant);
}

/* Does the host listen on this port (kvx_portx)? */
static __always_inline int port_host_listens(__u32 port)
{
	__u32 w = (port & 0xffff) / 64;
	__u64 *bits = bpf_map_lookup_elem(&kvx_portx, &w);

	return bits && (*bits & (1ULL << (port % 64)));
}

/*
 * RFC 7857 section 3 (and netfilter, which reuses the tuple of a closed
 * connection for a new SYN): a port whose one TCP flow is over (TIME_WAIT,
 * or CLOSE after a RST) and has been quiet for KVX_TW_PORT_QUIET_NS (the
 * guest's last ACK and a retransmitted FIN are through) is given to a new
 * SYN, so that short connections do not hold a port for TIME_WAIT plus the
 * GC's grace (150 s).  Never to a connection towards a remote that may hold
 * the port in TIME_WAIT itself (tw_remotes, ct_rules.h kvx_tw_bits) unless
 * the SYN reopens that remote's TIME_WAIT (tw_reopens); never
 * a binding with more than one flow (MULTI) or a static one.  The old pair
 * is released as bind_get releases one (OUT half first); its flow is left
 * to expire: a late packet of it finds the port no longer its own and is
 * never translated through it.  With at_limit bit 0 (a guest at its port
 * limit) only a binding of that guest, counted in its slot now, is
 * taken: its count stays, and a guest that churns through short
 * connections goes on at its limit; with
 * KVX_RECYCLE_NOT_YET (bind_plan: free ports come first) nothing is.
 * Returns 0 when the port stays taken, else the filter the new binding
 * carries on, with bit 0 set (the caller claims the port with BPF_NOEXIST
 * like any free port).  A global function, called by bind_create's probe
 * loop after bind_claim_port (not from it: nested, the two frames took
 * the bridge program's call chain past 512 bytes of stack).
 */
/*
 * A remote that holds the port's last connection in TIME_WAIT still takes a
 * new SYN for that very tuple when its sequence number is past what the old
 * connection sent and, with timestamps, its timestamp is not older than the
 * guest's FIN's (RFC 1122 4.2.2.13, RFC 6191; BSD's and Linux's TIME_WAIT;
 * ct_rules.h kvx_tw_syn_ok).  netfilter's NAT evicts such a TIME_WAIT entry
 * for a new SYN by the sequence number alone (nf_nat_used_tuple_harder);
 * without reuse every connection to one server held its port for
 * TIME_WAIT (several guests churning through one server ran the pool
 * dry).  Checkable only against the old
 * flow itself, still in kvx_ct in TIME_WAIT with both sides tracked: a
 * remote the filter remembers from an older flow of the port keeps it.  The
 * key is built in the per-CPU scratch (free until ct_create builds a flow
 * there, after the binding is made): this frame is on the bridge
 * program's deepest call chain, at 512 bytes as 6.1 counts it.
 */
static __always_inline int tw_reopens(const struct kvx_bind_val *ib, const struct kvx_pkt *p)
{
	struct kvx_ct_key *k;
	struct kvx_ct_val *f;
	__u32 zero = 0;

	k = bpf_map_lookup_elem(&kvx_scratch, &zero);
	if (!k)
		return 0;
	ct_key_init(k, IPPROTO_TCP, ib->addr, ib->port, p->daddr, p->dport);
	f = bpf_map_lookup_elem(&kvx_ct, k);
	return f && tcp_syn_reopens(f, p);
}

/* A SYN that opens a connection: no ACK, FIN or RST with it. */
static __always_inline int tcp_pure_syn(const struct kvx_pkt *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN |
							   KVX_TCP_RST)) == KVX_TCP_SYN;
}

__noinline __u32 bind_recycle(const struct kvx_bind_key *ik, const struct kvx_pkt *p, __u64 now,
			      int at_limit)
{
	const struct kvx_cfg *cfg;
	struct kvx_bind_key ok;
	struct kvx_bind_val *ib, *ob;
	__u32 bits, seen;

	if (!ik || !p)
		return 0;
	if (!tcp_pure_syn(p) || (at_limit & KVX_RECYCLE_NOT_YET))
		return 0;
	at_limit &= 1;
	/* The key on this frame's stack (ok, reused for the OUT half below):
	 * 6.1's map helpers refuse a global function's pointer argument. */
	ok = *ik;
	ib = bpf_map_lookup_elem(&kvx_bind, &ok);
	if (!ib)
		return at_limit ? 0 : 1; /* released meanwhile: free (not for a guest at its limit) */
	if (at_limit && ib->addr != p->saddr)
		return 0;
	/* A shared port (port overlapping) carries other endpoints' flows. */
	if (!bind_tw_only(ib->flags))
		return 0;
	if (ib->last_used_ns + KVX_TW_PORT_QUIET_NS > now)
		return 0;
	bits = kvx_tw_bits(p->daddr, p->dport);
	seen = ib->tw_remotes;
	if (kvx_tw_has(seen, bits, now) && !tw_reopens(ib, p))
		return 0;
	bind_key_init(&ok, KVX_BIND_OUT, ik->proto, ib->addr, ib->port);
	ob = bpf_map_lookup_elem(&kvx_bind, &ok);
	/* The pair's OUT half, deleted here, is the one token two CPUs
	 * recycling the port race for: without it (gone, or the endpoint's
	 * other binding) the IN half may already be another CPU's new one. */
	if (!ob || ob->addr != ik->addr || ob->port != ik->port)
		return 0;
	/* Looked up here, not kept from the start: one value less across the
	 * calls, a frame that keeps the bridge program's deepest chain within
	 * 512 bytes. */
	cfg = cfg_get();
	if (!cfg)
		return 0;
	/* At its limit, only a port counted where the new one will be: one
	 * the guest's MAC bound in the shared slot before it was placed
	 * would otherwise move from there to its port's count (as ct6.h
	 * bind6_recycle). */
	if (at_limit) {
		/* ok.addr is p's address (ib->addr, checked above). */
		__u32 cur = guest_slot(cfg, ok.addr);
		__u32 rec = kvx_ct_slot_read(ob->slot, cfg->guest_seed);

		if (rec != KVX_CT_NO_SLOT && rec != cur)
			return 0;
	}
	if (!bind_release(cfg, &ok, ob, 0))
		return 0;
	ok = *ik;
	if (bpf_map_delete_elem(&kvx_bind, &ok))
		return 0; /* another CPU recycled it first */
	return seen | 1;
}

/*
 * One probe of bind_create: the pool's port at index off, to be claimed
 * by the caller (the IN half *ik, value *iv) unless the host listens on it
 * or the guest is at its port limit (at_limit: only bind_recycle may give
 * it a port).  at_limit 2: off is the port itself, one of the guest's
 * ring of closed ports (gtw_port), if still in the pool.  Returns 0 when the caller may claim it (ik->port says
 * which), -EEXIST when taken
 * (ik->port says which), -EADDRINUSE when the host listens on it (or the
 * pool shrank under the loop), another error when the table is full.  A global function: called from
 * the probe loop, it is verified once instead of once per iteration and
 * state (inlined, the loop took the bridge program past the verifier's
 * budget).  Its frame is on the bridge program's deepest call chain: the
 * key and value are used where the caller keeps them.
 */
__noinline int bind_claim_port(struct kvx_bind_key *ik, const struct kvx_bind_val *iv,
			       const struct kvx_pkt *p, __u32 off, int at_limit)
{
	const struct kvx_cfg *cfg = cfg_get();
	__u32 lo, hi, slo, shi, port;

	if (!ik || !iv || !p || !cfg)
		return -EINVAL;
	lo = cfg->nat_port_lo;
	hi = cfg->nat_port_hi;
	slo = cfg->nat_skip_lo;
	shi = cfg->nat_skip_hi;
	/* The cfg changed under the probe loop: nothing to claim here.  Not
	 * -EEXIST: ik->port is not set, and the caller would try to recycle
	 * whatever port it holds (0 on the first try). */
	if (at_limit == 2) {
		/* off is a port of the guest's ring (gtw_port). */
		port = off;
		if (!kvx_nat_pool_has(lo, hi, slo, shi, port))
			return -EADDRINUSE;
	} else {
		if (off >= kvx_nat_pool_size(lo, hi, slo, shi))
			return -EADDRINUSE;
		port = kvx_nat_pool_port(lo, hi, slo, shi, off);
	}
	if (port_host_listens(port))
		return -EADDRINUSE;
	ik->port = bpf_htons(port);
	return at_limit ? -EEXIST : 0;
}

/*
 * Entry off of the ring of the guest at p's source (abi.h kvx_gtw), oldest
 * first: a port, host order, 0 if none.  A global function of its own, called
 * by bind_create: in bind_claim_port its key and spills made that frame 64
 * bytes, and the bridge program's deepest chain (entry, ct_egress,
 * bind_create, bind_claim_port) 544 bytes as 6.1 counts frames (each rounded
 * up to 32), over the 512 it allows.
 */
__noinline __u32 gtw_port(const struct kvx_pkt *p, __u32 off)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_gtw_val *r;
	__u32 idx;

	if (!p || !cfg)
		return 0;
	idx = guest_slot(cfg, p->saddr) & (KVX_GTW_GUESTS - 1);
	r = bpf_map_lookup_elem(&kvx_gtw, &idx);
	return r ? bpf_ntohs(r->ports[(r->next + off) & (KVX_GTW_RING - 1)]) : 0;
}

/*
 * kvx_bind is full: delete the tenant OUT half (KVX_BIND_F_SHARED, ct.h
 * ovl_try) idle longest, if beyond the binding grace (KVX_BIND_GRACE_NS,
 * the GC's), before a new binding is refused.  A tenant holds no port, one
 * entry of the table every guest shares; its flows go on through their
 * claims (kvx_ovl), only a new flow of the endpoint binds anew (the GC
 * deletes such a half once no claim names it).  The walk is ct_reclaim's
 * (a cursor, KVX_RECLAIM_BUDGET entries, a hold-off after a pass that
 * found nothing); the oldest of the window goes.  Returns 1 if one went.
 * Called by bind_get and ovl_share, never from deeper (its callback's
 * frame counts on the bridge program's deepest chain).
 */
struct bind_reclaim_ctx {
	__u64 now;
	__u64 oldest;		 /* the oldest idle tenant's last use + 1; 0: none */
	struct kvx_bind_key key; /* its key */
	__u32 skip;		 /* entries the earlier passes examined */
	__u32 seen;		 /* entries visited in this pass */
};

/* bind_create's "kvx_bind is full" (-E2BIG): bind_get makes room
 * (bind_reclaim) and calls it once more. */
#define KVX_BIND_FULL (KVX_R_MAX + 8)

__u32 kvx_bind_cursor;
__u64 kvx_bind_holdoff;

static long bind_reclaim_cb(void *map, struct kvx_bind_key *k, struct kvx_bind_val *v,
			    struct bind_reclaim_ctx *x)
{
	/* ct_reclaim's window (reclaim_window), in a smaller context: this
	 * frame is on the bridge program's deepest chain. */
	if (x->seen++ < x->skip)
		return 0;
	if (x->seen - x->skip > KVX_RECLAIM_BUDGET)
		return 1;
	if (k->dir != KVX_BIND_OUT ||
	    (v->flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE | KVX_BIND_F_SHARED)) !=
		    KVX_BIND_F_SHARED ||
	    v->last_used_ns + KVX_BIND_GRACE_NS >= x->now)
		return 0;
	if (x->oldest && v->last_used_ns + 1 >= x->oldest)
		return 0;
	x->oldest = v->last_used_ns + 1;
	x->key = *k;
	return 0;
}

__noinline int bind_reclaim(__u64 now)
{
	struct bind_reclaim_ctx x = {};
	const struct kvx_cfg *cfg;
	struct kvx_bind_val *v;

	if (now < kvx_bind_holdoff)
		return 0;
	x.now = now;
	x.skip = kvx_bind_cursor;
	bpf_for_each_map_elem(&kvx_bind, bind_reclaim_cb, &x, 0);
	if (!x.oldest && x.skip && x.seen <= x.skip) {
		/* The table shrank below the cursor: from its start. */
		x.skip = 0;
		x.seen = 0;
		bpf_for_each_map_elem(&kvx_bind, bind_reclaim_cb, &x, 0);
	}
	/* Stopped at the budget: the next pass goes on from there. */
	kvx_bind_cursor = x.seen > x.skip + KVX_RECLAIM_BUDGET ? x.skip + KVX_RECLAIM_BUDGET : 0;
	if (!x.oldest) {
		kvx_bind_holdoff = now + KVX_RECLAIM_HOLDOFF_NS;
		return 0;
	}
	/* Still that tenant, still idle (a new flow of it may have refreshed
	 * it meanwhile): a plain delete cannot check, a look first narrows it. */
	v = bpf_map_lookup_elem(&kvx_bind, &x.key);
	if (!v || !(v->flags & KVX_BIND_F_SHARED) || v->last_used_ns + KVX_BIND_GRACE_NS >= now)
		return 0;
	cfg = cfg_get();
	return bind_out_release(cfg, &x.key, v, 1);
}

/* The MAC pair the paths pass around (KVX_GW_MAC_OFF), as one object for
 * bind_create's prototype. */
struct nat_macs {
	__u8 b[16];
};

/* The key of p's guest's ring of p's protocol in kvx_gown: the full slot. */
static __always_inline __u32 gown_key(const struct kvx_cfg *cfg, const struct kvx_pkt *p)
{
	return guest_slot(cfg, p->saddr) * 3 + (p->proto == IPPROTO_TCP ? 0 :
						p->proto == IPPROTO_UDP ? 1 :
									  2);
}

/*
 * The ring of the guest's recently bound ports of p's protocol (abi.h
 * kvx_gown): the ports it may share when it runs out (ovl_share).
 */
static __always_inline struct kvx_gtw_val *gown_ring(const struct kvx_cfg *cfg,
						     const struct kvx_pkt *p)
{
	__u32 idx = gown_key(cfg, p);

	return bpf_map_lookup_elem(&kvx_gown, &idx);
}

/* A new dynamic binding of p's endpoint at port (network order) goes into
 * its guest's ring, made on its first binding (from a zeroed value in the
 * per-CPU scratch, free until ct_create builds the new flow there).  A
 * global function: its frame stays off bind_create's (and returns a
 * scalar, as the verifier wants of one). */
__noinline int gown_push(const struct kvx_pkt *p, __u32 port)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_gtw_val *r;
	__u32 slot, idx, zero = 0;

	if (!p || !cfg || !proto_has_ports(p->proto))
		return 0;
	idx = gown_key(cfg, p);
	r = bpf_map_lookup_elem(&kvx_gown, &idx);
	if (!r) {
		r = bpf_map_lookup_elem(&kvx_scratch, &zero);
		if (!r)
			return 0;
		__builtin_memset(r, 0, sizeof(*r));
		/* -EEXIST: another CPU made it first; that one is used. */
		bpf_map_update_elem(&kvx_gown, &idx, r, BPF_NOEXIST);
		r = bpf_map_lookup_elem(&kvx_gown, &idx);
		if (!r)
			return 0;
	}
	slot = r->next & (KVX_GTW_RING - 1);
	r->ports[slot] = port;
	r->next = (slot + 1) & (KVX_GTW_RING - 1);
	return 0;
}

/* The pool's port at index off (host order; 0 if the pool shrank under the
 * caller's loop).  Global: bind6_create's probe loop keeps the pool's
 * bounds off its frame (the kvx_br6 chain's 512 bytes on 6.1). */
__noinline __u32 nat_pool_port_at(__u32 off)
{
	const struct kvx_cfg *cfg = cfg_get();
	__u32 lo, hi, slo, shi;

	if (!cfg)
		return 0;
	lo = cfg->nat_port_lo;
	hi = cfg->nat_port_hi;
	slo = cfg->nat_skip_lo;
	shi = cfg->nat_skip_hi;
	if (off >= kvx_nat_pool_size(lo, hi, slo, shi))
		return 0;
	return kvx_nat_pool_port(lo, hi, slo, shi, off);
}

/* The fields of bind_plan's value (the layout is bind_plan's comment's). */
static __always_inline __u32 plan_start(__u64 pk)
{
	return pk & 0xffff;
}

static __always_inline __u32 plan_range(__u64 pk)
{
	return ((pk >> 16) & 0xffff) + 1;
}

static __always_inline int plan_at_limit(__u64 pk)
{
	return (pk >> 32) & 1;
}

static __always_inline __u32 plan_probes(__u64 pk)
{
	return (pk >> 33) & 0xff;
}

static __always_inline __u32 plan_recycle_from(__u64 pk)
{
	return (pk >> 41) & 0xff;
}

/* bind_recycle's and bind6_recycle's last argument for probe i of plan
 * pk: the guest at its limit (1), KVX_RECYCLE_NOT_YET before the plan's
 * first probe that may recycle.  Arithmetic, no branch: a branch on it in
 * the probe loop made the verifier walk the loop from twice the states. */
static __always_inline int bind_recycle_how(__u64 pk, __u32 i)
{
	return plan_at_limit(pk) |
	       (int)((((i - plan_recycle_from(pk)) >> 31) & 1) * KVX_RECYCLE_NOT_YET);
}

/*
 * The probe plan of a new binding (bind_create, bind6_create) in one value:
 * the first probe's pool index (bits 0-15), the pool's size - 1 (16-31),
 * the guest at its port limit (32), the number of probes (33-40) and the
 * first probe that may take over a closed connection's port (41-48).
 *
 * A closed connection's port is taken over when free ones are scarce, as
 * netfilter evicts a TIME_WAIT tuple as a last resort: the first probe
 * (the guest's own port, or the random start) only looks for a free one;
 * later ones land at random, on a closed connection's port about as often
 * as the pool is made of them.  A small pool (scanned in order) is passed
 * over whole for a free port first, then again, where each port may be
 * taken over; at the port limit, free ports not being the guest's, every
 * probe may, and a large pool gets the guest's ring of closed ports and
 * KVX_LIMIT_RANDOM random probes.  Only a
 * SYN may recycle (bind_recycle): anything else gets one pass, or half the
 * probes of a large pool.
 *
 * A global function: its result is one unknown value to the verifier, so
 * the caller's probe loop is walked from one state; computed inline, each
 * combination of these branches was a state of its own, and the loop took
 * the bridge programs past a million instructions.
 */
_Static_assert(KVX_PORT_TRIES < 256 && KVX_GTW_RING + KVX_LIMIT_RANDOM < KVX_PORT_TRIES,
	       "bind_plan's 8-bit fields");
__noinline __u64 bind_plan(__u32 range, __u32 start, int at_limit, int syn)
{
	__u32 lim, from;

	if (range <= KVX_PORT_TRIES) {
		lim = range;
		from = at_limit ? 0 : range;
		if (syn && !at_limit) {
			lim = 2 * range < KVX_PORT_TRIES ? 2 * range : KVX_PORT_TRIES;
			from = lim - range;
		}
	} else if (at_limit) {
		lim = KVX_GTW_RING + KVX_LIMIT_RANDOM;
		from = 0;
	} else {
		lim = syn ? KVX_PORT_TRIES : KVX_PORT_TRIES / 2;
		from = KVX_RECYCLE_AFTER;
	}
	return (__u64)(start & 0xffff) | (__u64)((range - 1) & 0xffff) << 16 |
	       (__u64) !!at_limit << 32 | (__u64)(lim & 0xff) << 33 | (__u64)(from & 0xff) << 41;
}

/*
 * Claim a new external endpoint for the guest endpoint (proto, saddr,
 * sport): the IN half first with BPF_NOEXIST (the atomic claim), then the
 * OUT half.  The guest's own port is kept when it lies in the pool and is
 * free (RFC 4787 REQ-3 "port preservation" where possible).
 *
 * The pool is the range minus the host's ephemeral range (abi.h
 * nat_skip_*): indexes 0..range-1 name its ports, so the hole costs no
 * probe.  First the guest's own port, then: a small pool is scanned whole
 * (a free port is always found); a large one is probed at random points.
 * Linear probing from a random start would land inside the runs of used
 * ports that sequential allocation leaves, and give up with most of the
 * pool free.  A port the host listens on (kvx_portx) counts as taken; a
 * taken one may be recycled for a SYN (bind_recycle, RFC 7857); an IN half
 * that is already the endpoint's own is kept (bind_in_is_own).
 *
 * A global function: the verifier checks its probe loop once, not once per
 * state its callers reach it in (static, the pool's hole and the listener
 * test took the bridge program past a million instructions); the probes
 * are global functions too, and the frames stay within the 512 bytes of
 * the bridge program's deepest chain.
 */
__noinline int bind_create(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
			   const struct nat_macs *macs, __u64 now, struct nat_endpoint *ext)
{
	struct kvx_bind_key ik;
	struct kvx_bind_val iv = {};
	struct kvx_bind_val *won;
	__u32 lo, hi, slo, shi, hole, range, start, want, i, tw, *n;
	int err, at_limit;
	__u64 pk;

	if (!cfg || !p || !macs || !ext)
		return KVX_R_DROP_TABLE_FULL;
	ext->flags = 0;
	/* RFC 6888 REQ-4: one guest cannot take the whole pool.  Bindings it
	 * holds keep working; a new one only takes the place of one of its
	 * own in TIME_WAIT (bind_recycle).  Approximate under races between
	 * CPUs (by a few ports); the GC recounts. */
	n = gports_of(cfg, p->saddr);
	at_limit = n && cfg->guest_ports && (__s32)*n >= (__s32)cfg->guest_ports;
	/* Only a SYN can be given a recycled port: anything else at the
	 * limit is refused before probes that could not succeed. */
	if (at_limit && !tcp_pure_syn(p))
		return KVX_R_DROP_GUEST_PORTS;
	iv.addr = p->saddr;
	iv.port = p->sport;
	iv.last_used_ns = now;
	__builtin_memcpy(iv.guest_mac, macs->b, 6);
	__builtin_memcpy(iv.gw_mac, macs->b + KVX_GW_MAC_OFF, 6);
	bind_key_init(&ik, KVX_BIND_IN, p->proto, cfg->uplink_addr, 0);

	if (!proto_has_ports(p->proto)) {
		/* Address-only: one guest per protocol at a time. */
		err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
		if (err == -EEXIST && bind_in_is_own(&ik, p, now))
			err = 0;
		if (err)
			return err == -EEXIST ? KVX_R_DROP_PORTS_EXHAUSTED : KVX_R_DROP_TABLE_FULL;
		goto claimed;
	}

	lo = cfg->nat_port_lo;
	hi = cfg->nat_port_hi;
	slo = cfg->nat_skip_lo;
	shi = cfg->nat_skip_hi;
	range = kvx_nat_pool_size(lo, hi, slo, shi);
	if (!range)
		return KVX_R_DROP_PORTS_EXHAUSTED;
	want = bpf_ntohs(p->sport);
	hole = kvx_nat_hole(lo, hi, slo, shi);
	if (want >= lo && want <= hi && !(hole && want >= slo && want <= shi))
		start = want >= slo && hole ? want - lo - hole : want - lo;
	else
		start = bpf_get_prandom_u32() % range;
	/* The plan in one register, now in iv: fewer values live across the
	 * calls, a frame that keeps the bridge program's deepest chain within
	 * 512 bytes. */
	pk = bind_plan(range, start, at_limit, tcp_pure_syn(p));
	err = -EEXIST;
	for (i = 0; i < KVX_PORT_TRIES; i++) {
		range = plan_range(pk);
		if (i >= plan_probes(pk))
			break;
		/* At its limit in a large pool, the guest's own closed
		 * ports first (abi.h kvx_gtw): random probes miss the few it
		 * holds.  A small pool is scanned whole anyway. */
		if (plan_at_limit(pk) && range > KVX_PORT_TRIES && i < KVX_GTW_RING)
			err = bind_claim_port(&ik, &iv, p, gtw_port(p, i), 2);
		else
			err = bind_claim_port(&ik, &iv, p,
					      (i == 0 || range <= KVX_PORT_TRIES) ?
						      (plan_start(pk) + i) % range :
						      bpf_get_prandom_u32() % range,
					      plan_at_limit(pk));
		/* Claimed here, not in bind_claim_port: a global function's
		 * pointer arguments are "mem" to the verifier, which 6.1's map
		 * helpers refuse as keys and values; these are the stack's. */
		if (!err)
			err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
		if (err == -EEXIST) {
			tw = bind_recycle(&ik, p, iv.last_used_ns, bind_recycle_how(pk, i));
			if (tw) {
				/* The port's TIME_WAIT remotes go with it (bit 0
				 * is only bind_recycle's "freed" mark). */
				iv.tw_remotes = tw & ~1U;
				err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
				iv.tw_remotes = 0;
			}
		}
		if (err != -EEXIST && err != -EADDRINUSE)
			break;
		if (bind_in_is_own(&ik, p, iv.last_used_ns)) {
			err = 0;
			break;
		}
	}
	if (err == -EEXIST || err == -EADDRINUSE)
		return plan_at_limit(pk) ? KVX_R_DROP_GUEST_PORTS : KVX_R_DROP_PORTS_EXHAUSTED;
	if (err)
		return err == -E2BIG ? KVX_BIND_FULL : KVX_R_DROP_TABLE_FULL;

claimed:
	/* The OUT half's key reuses ik's slot (the IN half's key is kept in
	 * iv, its value): one key less on this frame. */
	iv.flags = 0;
	iv.tw_remotes = 0;
	iv.addr = ik.addr;
	iv.port = ik.port;
	__builtin_memset(iv.guest_mac, 0, 12);
	bind_key_init(&ik, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	err = bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
	if (err) {
		bind_key_init(&ik, KVX_BIND_IN, p->proto, iv.addr, iv.port);
		bpf_map_delete_elem(&kvx_bind, &ik);
		if (err != -EEXIST)
			return err == -E2BIG ? KVX_BIND_FULL : KVX_R_DROP_TABLE_FULL;
		/* Another CPU bound this guest endpoint first: use its binding.
		 * Its flow and this one are two (one socket's SYNs to two
		 * remotes at once, as connect() on a shared port sends): the
		 * port is no longer one flow's to recycle (bind_recycle), as
		 * bind_get marks it for a second flow through a binding. */
		bind_key_init(&ik, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
		won = bpf_map_lookup_elem(&kvx_bind, &ik);
		if (!won)
			return KVX_R_DROP_BROKEN_PAIR;
		ext->addr = won->addr;
		ext->port = won->port;
		bind_key_init(&ik, KVX_BIND_IN, p->proto, ext->addr, ext->port);
		won = bpf_map_lookup_elem(&kvx_bind, &ik);
		if (won && won->addr == p->saddr && won->port == p->sport &&
		    !(won->flags & KVX_BIND_F_MULTI))
			bind_flags_or(won, KVX_BIND_F_MULTI);
		return KVX_CONTINUE;
	}
	bind_count_new(cfg, &ik); /* ik: the OUT half's key */
	ext->addr = iv.addr;
	ext->port = iv.port;
	gown_push(p, iv.port);
	return KVX_CONTINUE;
}

/*
 * Port overlapping (RFC 7857 section 3: a NAT "MAY reuse" an external port
 * for other destinations when filtering is address-and-port-dependent),
 * only among one guest address's own endpoints (abi.h KVX_BIND_F_SHARED,
 * kvx_ovl, kvx_gown).  With endpoint-independent mapping every guest
 * endpoint holds a port of its own for all remotes, so a guest that opens
 * many short-lived endpoints (a resolver, a crawler, a CI job) reaches its
 * port limit (RFC 6888 REQ-4) or the pool's end long before netfilter's
 * MASQUERADE would, whose tuples need only be unique per remote.  Then a
 * new endpoint of the guest may use the port of one of the guest's own
 * dynamic bindings as a tenant: it keeps that one port for all its
 * remotes (REQ-1 holds), and each of its flows claims its (port, remote)
 * in kvx_ovl with BPF_NOEXIST, as do the owner's new flows once the port
 * is shared: no two flows of the port go to one remote endpoint, and an
 * inbound packet finds the one endpoint it answers.  Another guest never
 * shares, claims or is refused on these ports: what one guest's endpoints
 * do to each other is the worst that can happen.  Never with
 * endpoint-independent filtering (any remote may open flows on the
 * owner's port there), never on a static binding.
 *
 * Keys and values are built in the per-CPU scratch (abi.h kvx_scratch),
 * free until ct_create builds the new flow there after the binding is
 * made: these frames sit on ct_egress's, on the bridge program's deepest
 * chain.
 */
struct ovl_scratch {
	struct kvx_ovl_key ok;
	union {
		struct kvx_ovl_val ov;
		struct kvx_bind_val bv; /* a tenant's OUT half */
	};
	struct kvx_bind_key bk;
	struct kvx_ct_key ck;
};

_Static_assert(sizeof(struct ovl_scratch) <= sizeof(struct kvx_ct_val), "fits kvx_scratch");

static __always_inline struct ovl_scratch *ovl_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kvx_scratch, &zero);
}

/* The (external endpoint, remote endpoint) of a flow through a shared port;
 * ICMP echo has no remote port (as kvx_ct_key). */
static __always_inline void ovl_key_init(struct kvx_ovl_key *k, __u8 proto, __be32 ext_addr,
					 __be16 ext_port, __be32 rem_addr, __be16 rem_port)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->proto = proto;
	k->ext_addr = ext_addr;
	k->ext_port = ext_port;
	k->rem_addr = rem_addr;
	k->rem_port = proto == IPPROTO_ICMP ? 0 : rem_port;
}

/* A claim counts while the IN half still names the endpoint that owned the
 * port when it was made (the same guest address): one left from an owner
 * whose binding went (and a new one of any guest took the port) is dead. */
static __always_inline int ovl_owner_ok(const struct kvx_bind_val *ib, const struct kvx_ovl_val *v)
{
	return ib->addr == v->addr && ib->port == v->owner_port &&
	       !(ib->flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE));
}

/*
 * kvx_ovl is full: delete the claims whose flow is gone (or no longer
 * leaves through the claimed port), older than KVX_OVL_RECLAIM_NS (a claim
 * is made just before its flow), by the GC's rule (gc.cpp ovl_sweep).  The
 * walk is ct_reclaim's (a cursor, a hold-off after a pass that freed
 * nothing).
 */
#define KVX_OVL_RECLAIM_NS (1000ULL * 1000 * 1000)

__u32 kvx_ovl_cursor;
__u64 kvx_ovl_holdoff;

static long ovl_reclaim_cb(void *map, struct kvx_ovl_key *k, struct kvx_ovl_val *v,
			   struct ct_reclaim_ctx *c)
{
	struct kvx_ct_key ck;
	struct kvx_ct_val *f;
	int w = reclaim_window(c);

	if (w)
		return w - 1;
	if (v->created_ns + KVX_OVL_RECLAIM_NS > c->now)
		return 0;
	ct_key_init(&ck, k->proto, v->addr, v->port, k->rem_addr, k->rem_port);
	f = bpf_map_lookup_elem(&kvx_ct, &ck);
	if (f && f->ext_addr == k->ext_addr && f->ext_port == k->ext_port)
		return 0;
	if (!bpf_map_delete_elem(&kvx_ovl, k))
		c->freed++;
	return 0;
}

__noinline int ovl_reclaim(__u64 now)
{
	return reclaim_pass(&kvx_ovl, ovl_reclaim_cb, &kvx_ovl_cursor, &kvx_ovl_holdoff, now,
			    KVX_EVICT_NONE);
}

/*
 * Claim (port ext_port, p's remote) for p's guest endpoint, on the port
 * whose IN half ib is a dynamic binding of p's guest address.  1: claimed
 * now; 0: already this endpoint's (its time refreshed); -EEXIST: another
 * endpoint's flow has that remote on the port (or a dead claim does, until
 * the GC deletes it); -E2BIG: kvx_ovl is full (the caller reclaims: here
 * ovl_reclaim's frames would take the bridge program's deepest chain past
 * 512 bytes of stack).  A tenant (p's endpoint is
 * not the owner) also needs the owner's flows to leave the remote alone:
 * those made before the port was shared have no claim, so the claim is
 * made first and the owner's flow looked up second (the owner's new flows
 * read the port's shared mark, set before, and claim too), and it is
 * deleted again only if made here.  Still open: the owner's flow to the
 * very same remote endpoint, made on another CPU after it read the port
 * unshared and before this lookup (the same guest's two endpoints, one
 * remote, one microsecond, out of ports): the owner's flow then gets both
 * flows' replies.
 */
static __always_inline int ovl_claim(struct ovl_scratch *s, const struct kvx_cfg *cfg,
				     const struct kvx_pkt *p, const struct kvx_bind_val *ib,
				     __be16 ext_port, __u64 now)
{
	__be16 owner_port = ib->port;
	struct kvx_ovl_val *v;
	int err;

	/* A remote that may hold the port's closed connection in TIME_WAIT
	 * (abi.h tw_remotes, as bind_recycle) takes no new connection from it
	 * through another endpoint (RFC 6191). */
	if (p->proto == IPPROTO_TCP && owner_port != p->sport &&
	    kvx_tw_has(ib->tw_remotes, kvx_tw_bits(p->daddr, p->dport), now))
		return -EEXIST;
	ovl_key_init(&s->ok, p->proto, cfg->uplink_addr, ext_port, p->daddr, p->dport);
	__builtin_memset(&s->ov, 0, sizeof(s->ov));
	s->ov.addr = p->saddr;
	s->ov.port = p->sport;
	s->ov.owner_port = owner_port;
	s->ov.created_ns = now;
	err = bpf_map_update_elem(&kvx_ovl, &s->ok, &s->ov, BPF_NOEXIST);
	if (err == -EEXIST) {
		v = bpf_map_lookup_elem(&kvx_ovl, &s->ok);
		if (!v || v->addr != p->saddr || v->port != p->sport || !ovl_owner_ok(ib, v))
			return -EEXIST;
		if (now - v->created_ns > KVX_OVL_RECLAIM_NS)
			v->created_ns = now;
		return 0;
	}
	if (err)
		return -E2BIG;
	if (owner_port == p->sport)
		return 1;
	ct_key_init(&s->ck, p->proto, p->saddr, owner_port, p->daddr, p->dport);
	if (bpf_map_lookup_elem(&kvx_ct, &s->ck)) {
		bpf_map_delete_elem(&kvx_ovl, &s->ok);
		return -EEXIST;
	}
	return 1;
}

/*
 * Use the port ext_port (network order) for p's endpoint as a tenant: a
 * port of the pool the host does not listen on, whose IN half is a
 * dynamic binding of p's guest address and MAC, not one whose flows
 * `conntrack flush` deleted (a flushed flow's remote would find a tenant's
 * claim before the owner picks the flow up).  A closed one waiting for
 * TIME_WAIT reuse may be shared: bind_create tried to reuse it first (not
 * quiet yet, or its remote may hold it in TIME_WAIT), a guest whose every
 * port's first flow is over would else be refused until they are quiet,
 * and the GC clears the shared mark (so the port may be reused again)
 * once its claims are gone.  A recycle racing this one leaves a dead
 * claim (its owner changed), never a claim under another guest.  The port is
 * marked shared first (atomic: the owner's new flows claim from then on),
 * and its IN half looked up again: a binding released and re-made for
 * another endpoint meanwhile is not shared by this claim.  The owner's
 * last use is refreshed (at most once a second): the GC never releases a
 * port its tenants use.  Returns ovl_claim's codes, -ENOENT when the port
 * cannot be shared.
 */
static __always_inline int ovl_enter(struct ovl_scratch *s, const struct kvx_cfg *cfg,
				     const struct kvx_pkt *p, const __u8 *guest_mac,
				     __be16 ext_port, __u64 now)
{
	struct kvx_bind_val *ib;
	__be16 owner_port;
	__u32 port;
	__u16 fl;
	int err;

	/* Not a port the pool no longer has (the range changed) or the host
	 * listens on now: its owner keeps it, nobody joins. */
	port = bpf_ntohs(ext_port);
	if (!kvx_nat_pool_has(cfg->nat_port_lo, cfg->nat_port_hi, cfg->nat_skip_lo,
			      cfg->nat_skip_hi, port) ||
	    port_host_listens(port))
		return -ENOENT;
	bind_key_init(&s->bk, KVX_BIND_IN, p->proto, cfg->uplink_addr, ext_port);
	ib = bpf_map_lookup_elem(&kvx_bind, &s->bk);
	if (!ib || ib->addr != p->saddr || ib->port == p->sport ||
	    !mac_eq(ib->guest_mac, guest_mac))
		return -ENOENT;
	fl = ib->flags;
	if (fl & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE | KVX_BIND_F_FLUSHED))
		return -ENOENT;
	owner_port = ib->port;
	/* The owner's flow with this remote rules the port out before it is
	 * marked: a mark left by a refused probe would keep a closed port from
	 * TIME_WAIT reuse until the GC clears it (ovl_claim looks again after
	 * the mark, for a flow made meanwhile). */
	ct_key_init(&s->ck, p->proto, p->saddr, owner_port, p->daddr, p->dport);
	if (bpf_map_lookup_elem(&kvx_ct, &s->ck))
		return -EEXIST;
	if (!(fl & KVX_BIND_F_SHARED))
		bind_flags_or(ib, KVX_BIND_F_SHARED);
	ib = bpf_map_lookup_elem(&kvx_bind, &s->bk);
	if (!ib || ib->addr != p->saddr || ib->port != owner_port)
		return -ENOENT;
	if (now - ib->last_used_ns > KVX_BIND_REFRESH_NS)
		ib->last_used_ns = now;
	err = ovl_claim(s, cfg, p, ib, ext_port, now);
	/* The GC (and conntrack flush) write the IN half whole: the mark may
	 * be cleared under this claim.  They look for claims again after
	 * writing and mark the port anew if one names it (gc.cpp
	 * reshare_claimed); a claim made after that look finds the mark
	 * cleared here and sets it: either way a port with a live claim ends
	 * up marked, and bind_recycle leaves it alone. */
	if (err >= 0) {
		ib = bpf_map_lookup_elem(&kvx_bind, &s->bk);
		if (ib && ib->addr == p->saddr && !(ib->flags & KVX_BIND_F_SHARED))
			bind_flags_or(ib, KVX_BIND_F_SHARED);
	}
	return err;
}

/*
 * A new flow of p's endpoint through its binding on a shared port
 * ext_port: as the owner (the IN half is p's: claim the remote) or as a
 * tenant (its OUT half is KVX_BIND_F_SHARED: ovl_enter).  >= 0: the flow
 * may use the port; -EEXIST: another endpoint of the guest has a flow with
 * this remote on it (the endpoint keeps its one port: the flow is
 * refused); -ENOENT: the port is not this endpoint's to use any more (a
 * tenant binds anew); -E2BIG: kvx_ovl is full.  A global function:
 * verified once, its frame small.
 */
__noinline int ovl_join_once(const struct kvx_pkt *p, const struct nat_macs *macs,
			     __u32 ext_port, __u64 now)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct ovl_scratch *s = ovl_scratch_get();
	struct kvx_bind_val *ib;

	if (!p || !macs || !cfg || !s || (cfg->flags & KVX_CFG_F_EIF))
		return -ENOENT;
	bind_key_init(&s->bk, KVX_BIND_IN, p->proto, cfg->uplink_addr, (__be16)ext_port);
	ib = bpf_map_lookup_elem(&kvx_bind, &s->bk);
	if (!ib || ib->addr != p->saddr || (ib->flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)))
		return -ENOENT;
	if (ib->port == p->sport)
		return ovl_claim(s, cfg, p, ib, (__be16)ext_port, now);
	return ovl_enter(s, cfg, p, macs->b, (__be16)ext_port, now);
}

/* ovl_join_once, and once more after making room in a full kvx_ovl: two
 * calls, not a loop around the inlined probe (its frame would take the
 * bridge program's deepest chain, with ovl_reclaim's, past 512 bytes). */
__noinline int ovl_join(const struct kvx_pkt *p, const struct nat_macs *macs, __u32 ext_port,
			__u64 now)
{
	int err = ovl_join_once(p, macs, ext_port, now);

	if (err == -E2BIG && ovl_reclaim(now) > 0)
		err = ovl_join_once(p, macs, ext_port, now);
	return err;
}

/*
 * One probe of ovl_share: p's endpoint becomes a tenant of the guest's
 * port (network order) and gets its OUT half (KVX_BIND_F_SHARED).  0: done;
 * -E2BIG: kvx_ovl is full; another error: not this port.  A global
 * function: its frame off the probe loop's.
 */
__noinline int ovl_try(const struct kvx_pkt *p, const struct nat_macs *macs, __u32 port, __u64 now)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct ovl_scratch *s = ovl_scratch_get();
	int err, made;

	if (!p || !macs || !cfg || !s)
		return -EINVAL;
	made = ovl_enter(s, cfg, p, macs->b, (__be16)port, now);
	if (made < 0)
		return made;
	bind_key_init(&s->bk, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	__builtin_memset(&s->bv, 0, sizeof(s->bv));
	s->bv.addr = cfg->uplink_addr;
	s->bv.port = (__be16)port;
	s->bv.flags = KVX_BIND_F_SHARED;
	s->bv.last_used_ns = now;
	err = bpf_map_update_elem(&kvx_bind, &s->bk, &s->bv, BPF_NOEXIST);
	if (!err) {
		bind_count(cfg, &s->bk, 1);
		return 0;
	}
	/* Table full: this packet is dropped, and the claim made for it goes
	 * (else a guest refused again and again would fill kvx_ovl with
	 * claims no flow follows).  Another CPU bound the endpoint first
	 * (-EEXIST): the retransmission finds that binding, and the claim is
	 * left to the GC (the winner may have found it its own: ovl_claim's
	 * 0). */
	if (made > 0 && err != -EEXIST)
		bpf_map_delete_elem(&kvx_ovl, &s->ok);
	return -EBUSY;
}

/* Has guest reached its bound of tenants (abi.h kvx_gtenant)?  A number
 * per port of the limit, or with none the pool's size.  A global
 * function: its frame off ovl_share's. */
__noinline int tenants_full(const struct kvx_cfg *cfg, __be32 guest)
{
	__u32 *n, cap;

	if (!cfg)
		return 1;
	cap = cfg->guest_ports * KVX_TENANTS_PER_PORT;
	if (!cap)
		cap = kvx_nat_pool_size(cfg->nat_port_lo, cfg->nat_port_hi, cfg->nat_skip_lo,
					cfg->nat_skip_hi);
	if (cfg->tenant_cap && cap > cfg->tenant_cap)
		cap = cfg->tenant_cap;
	n = gtenant_of(cfg, guest);
	return n && (__s32)*n >= (__s32)cap;
}

/*
 * No port for a new flow of p's endpoint (bind_create gave up: the guest
 * is at its port limit, or the pool is exhausted): share one of the
 * guest's own ports (abi.h kvx_gown, newest first) as a tenant (ovl_try),
 * an endpoint that holds no port of its own and so does not count against
 * the guest's limit.  Only a packet that opens a flow (a TCP SYN, UDP, an
 * echo request), only under address-and-port-dependent filtering, never
 * towards a mapped address of this host (hairpin: its flows are made on
 * both sides of the NAT at once).  Returns KVX_CONTINUE with ext set, or
 * why not: reason (bind_create's), KVX_R_DROP_TABLE_FULL.  A global
 * function: its probe loop is verified once.
 */
__noinline int ovl_share(const struct kvx_pkt *p, const struct nat_macs *macs, __u64 now,
			 int reason, struct nat_endpoint *ext)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_gtw_val *r;
	struct kvx_bind_key k;
	__u32 i, port;
	__be32 daddr;
	int err;

	if (!p || !macs || !ext || !cfg)
		return KVX_R_DROP_TABLE_FULL;
	if ((cfg->flags & KVX_CFG_F_EIF) || !proto_has_ports(p->proto) ||
	    (p->proto == IPPROTO_TCP && (p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN |
							 KVX_TCP_RST)) != KVX_TCP_SYN))
		return reason;
	daddr = p->daddr;
	if (daddr == cfg->uplink_addr || bpf_map_lookup_elem(&kvx_extaddr, &daddr))
		return reason;
	/* An endpoint bound already (a tenant refused a remote on its port,
	 * bind_get) keeps its one port. */
	bind_key_init(&k, KVX_BIND_OUT, p->proto, p->saddr, p->sport);
	if (bpf_map_lookup_elem(&kvx_bind, &k))
		return reason;
	/* A tenant holds no port but a kvx_bind entry: a few per port of the
	 * limit (abi.h kvx_gtenant), not one per source port the guest ever
	 * sends from (approximate under races, as kvx_gports). */
	if (tenants_full(cfg, p->saddr))
		return reason;
	r = gown_ring(cfg, p);
	if (!r)
		return reason;
	for (i = 0; i < KVX_GTW_RING; i++) {
		port = r->ports[(r->next - 1 - i) & (KVX_GTW_RING - 1)];
		if (!port)
			continue;
		err = ovl_try(p, macs, port, now);
		/* kvx_ovl full: make room from dead claims, once; kvx_bind
		 * full (or a race, which a retry finds settled): from an
		 * idle tenant, once. */
		if (err == -E2BIG && ovl_reclaim(now) > 0)
			err = ovl_try(p, macs, port, now);
		if (err == -EBUSY && bind_reclaim(now) > 0)
			err = ovl_try(p, macs, port, now);
		if (err == -E2BIG || err == -EBUSY)
			return KVX_R_DROP_TABLE_FULL;
		if (err)
			continue;
		cfg = cfg_get();
		if (!cfg)
			return KVX_R_DROP_TABLE_FULL;
		ext->addr = cfg->uplink_addr;
		ext->port = port;
		ext->flags = 0;
		return KVX_CONTINUE;
	}
	return reason;
}

/*
 * A packet of an existing flow f of a tenant of a shared port (the flow's
 * IN half is another endpoint's of the same guest): the flow's (port,
 * remote) must still be this endpoint's in kvx_ovl, under the owner it was
 * claimed under.  Refreshes the claim and the owner's last use (the GC
 * keeps both) and the port's shared mark, if a full-value rewrite of the
 * IN half (the GC's, conntrack flush's) lost it.  1: translate through it.
 */
__noinline int ovl_flow_ok(const struct kvx_pkt *p, __be32 ext_addr, __be16 ext_port, __u64 now)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct ovl_scratch *s = ovl_scratch_get();
	struct kvx_bind_val *ib;
	struct kvx_ovl_val *v;

	if (!p || !cfg || !s || ext_addr != cfg->uplink_addr)
		return 0;
	ovl_key_init(&s->ok, p->proto, ext_addr, ext_port, p->daddr, p->dport);
	v = bpf_map_lookup_elem(&kvx_ovl, &s->ok);
	if (!v || v->addr != p->saddr || v->port != p->sport)
		return 0;
	bind_key_init(&s->bk, KVX_BIND_IN, p->proto, ext_addr, ext_port);
	ib = bpf_map_lookup_elem(&kvx_bind, &s->bk);
	if (!ib || !ovl_owner_ok(ib, v))
		return 0;
	if (!(ib->flags & KVX_BIND_F_SHARED))
		bind_flags_or(ib, KVX_BIND_F_SHARED);
	if (now - ib->last_used_ns > KVX_BIND_REFRESH_NS)
		ib->last_used_ns = now;
	if (now - v->created_ns > KVX_OVL_RECLAIM_NS)
		v->created_ns = now;
	return 1;
}

/*
 * An inbound packet p (or the answer an ICMP error quotes) to the dynamic
 * binding ib that none of the owner's flows matches: the guest port of the
 * endpoint whose flow with p's source claimed the port (kvx_ovl) goes to
 * guest->port, while the claim's owner still holds the port.  1: found.
 */
__noinline int ovl_guest_port(const struct kvx_pkt *p, const struct kvx_bind_val *ib,
			      struct nat_endpoint *guest)
{
	struct ovl_scratch *s = ovl_scratch_get();
	struct kvx_ovl_val *v;

	if (!p || !ib || !guest || !s)
		return 0;
	ovl_key_init(&s->ok, p->proto, p->daddr, p->dport, p->saddr, p->sport);
	v = bpf_map_lookup_elem(&kvx_ovl, &s->ok);
	if (!v || !ovl_owner_ok(ib, v) || v->port == ib->port)
		return 0;
	guest->port = v->port;
	return 1;
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
 * bind_get's repair of a dynamic pair whose IN half is missing: the same
 * external port again, if still free (0: claimed).  Its flows are unknown:
 * never recycled (KVX_BIND_F_MULTI).  Not inlined, and neither is
 * bind_out_release: their keys and value stay off ct_egress's frame, which
 * is on the bridge program's deepest call chain (-> bind_create ->
 * bind_recycle: 512 bytes in all, 6.1 counting each frame in 32-byte
 * steps).
 */
static __noinline int bind_in_reclaim(const struct kvx_pkt *p, const __u8 *macs, __be32 old_addr,
				      __be16 old_port, __u64 now)
{
	struct kvx_bind_key ik;
	struct kvx_bind_val iv = {};

	if (!p || !macs)
		return -EINVAL;
	bind_key_init(&ik, KVX_BIND_IN, p->proto, old_addr, old_port);
	iv.flags = KVX_BIND_F_MULTI;
	iv.addr = p->saddr;
	iv.port = p->sport;
	iv.last_used_ns = now;
	__builtin_memcpy(iv.guest_mac, macs, 6);
	__builtin_memcpy(iv.gw_mac, macs + KVX_GW_MAC_OFF, 6);
	return bpf_map_update_elem(&kvx_bind, &ik, &iv, BPF_NOEXIST);
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
	struct kvx_bind_val *ob, *ib;
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
	if (ob->flags & KVX_BIND_F_SHARED) {
		/* A tenant of a shared port (ovl_share): its one port for
		 * every remote, unless another endpoint of its guest has a
		 * flow with this remote on it. */
		if (old_addr == cfg->uplink_addr) {
			r = ovl_join(p, (const struct nat_macs *)macs, old_port, now);
			if (r >= 0) {
				if (now - ob->last_used_ns > KVX_BIND_REFRESH_NS)
					ob->last_used_ns = now;
				ext->addr = old_addr;
				ext->port = old_port;
				return KVX_CONTINUE;
			}
			if (r != -ENOENT)
				return r == -EEXIST ? KVX_R_DROP_PORTS_EXHAUSTED :
						      KVX_R_DROP_TABLE_FULL;
		}
		/* Stale, or the port is not its guest's to share any more:
		 * the OUT half only (the IN half is its owner's; no port was
		 * counted for it, a tenant was). */
		bind_out_release(cfg, &ok, ob, 1);
		goto create;
	}
	if (old_addr == cfg->uplink_addr) {
		ib = bind_in_lookup_own(p, old_addr, old_port);
		if (ib) {
			/* The owner of a shared port: its new flow claims its
			 * remote like a tenant's. */
			if (ib->flags & KVX_BIND_F_SHARED) {
				r = ovl_join(p, (const struct nat_macs *)macs, old_port, now);
				if (r == -EEXIST)
					return KVX_R_DROP_PORTS_EXHAUSTED;
				if (r == -E2BIG)
					return KVX_R_DROP_TABLE_FULL;
			}
			bind_in_refresh(ib, guest_mac, gw_mac);
			/* Another flow through it: its flows are no longer one
			 * (never recycled, bind_recycle). */
			if (!(ib->flags & KVX_BIND_F_MULTI))
				bind_flags_or(ib, KVX_BIND_F_MULTI);
			ib->last_used_ns = now;
			ob->last_used_ns = now;
			ext->addr = old_addr;
			ext->port = old_port;
			return KVX_CONTINUE;
		}
		/* IN half missing: re-claim the same port if still free. */
		if (!bind_in_reclaim(p, macs, old_addr, old_port, now)) {
			ob->last_used_ns = now;
			ext->addr = old_addr;
			ext->port = old_port;
			return KVX_CONTINUE;
		}
	}

	/* Stale (old uplink address) or stolen: release OUT first, then our IN. */
	bind_out_release(cfg, &ok, ob, 0);
	if (bind_in_lookup_own(p, old_addr, old_port)) {
		bind_key_init(&ik, KVX_BIND_IN, p->proto, old_addr, old_port);
		bpf_map_delete_elem(&kvx_bind, &ik);
	}
create:
	/* kvx_bind full (bind_create made nothing): room from the tenant idle
	 * longest, and one more try.  From here, not from bind_create: its
	 * frame, bind_reclaim's and its callback's would take the bridge
	 * program's deepest chain past 512 bytes (6.1 counts each frame in
	 * 32-byte steps); nor from ct_egress, whose frame the retry grew by a
	 * step. */
	r = bind_create(cfg, p, (const struct nat_macs *)macs, now, ext);
	if (r == KVX_BIND_FULL && bind_reclaim(now) > 0)
		r = bind_create(cfg, p, (const struct nat_macs *)macs, now, ext);
	return r == KVX_BIND_FULL ? KVX_R_DROP_TABLE_FULL : r;
}

/*
 * The flow's IN half if its external endpoint is still bound to this guest
 * endpoint, else NULL.  A dynamic binding's last use is refreshed by the
 * guest's packets (RFC 4787 REQ-5/6: outbound refresh), at most once a
 * second (a shared cache line).
 */
static __always_inline struct kvx_bind_val *flow_binding(const struct kvx_cfg *cfg,
							 const struct kvx_ct_val *f,
							 const struct kvx_pkt *p,
							 const __u8 *guest_mac, const __u8 *gw_mac,
							 __u64 now)
{
	struct kvx_bind_val *ib;

	if (f->flags & KVX_CT_F_ONE_TO_ONE)
		ib = bind_1to1_lookup_own(p, f->ext_addr);
	else if ((f->flags & KVX_CT_F_STATIC) || f->ext_addr == cfg->uplink_addr)
		ib = bind_in_lookup_own(p, f->ext_addr, f->ext_port);
	else
		return NULL; /* bound to an old uplink address */
	if (!ib)
		return NULL;
	bind_in_refresh(ib, guest_mac, gw_mac);
	if (!(ib->flags & KVX_BIND_F_STATIC) && now - ib->last_used_ns > KVX_BIND_REFRESH_NS)
		ib->last_used_ns = now;
	return ib;
}

/*
 * Keep a dynamic TCP binding's recycling state (abi.h KVX_BIND_F_TW,
 * KVX_BIND_F_RFIN, tw_remotes) in step with its flow after packet p (out:
 * from the guest).  A FIN from the remote that does not acknowledge the
 * guest's FIN means the remote closed first (or both at once): if the flow
 * then ends in TIME_WAIT, the remote holds the connection in TIME_WAIT too
 * and joins tw_remotes.  A flow ended by a RST (CLOSE) leaves no TIME_WAIT
 * on either side (a RST ends FIN_WAIT and, on Linux, TIME_WAIT).  TW is set
 * while the flow is over, its time moved on by each packet, and cleared
 * when the tuple is used again (a new SYN on it).  Not inlined: its frame
 * stays off ct_ingress's.
 */
/*
 * The guest's port ext (network order) just closed: into its ring (abi.h
 * kvx_gtw) unless the oldest entry, the one it would replace, is still a
 * port of this guest address that may be reused (then that one is kept: it
 * is the first to be quiet).  Only of this address: rings are shared, and
 * another guest keeping its closed flows alive must not pin the ring.
 */
static __always_inline void gtw_push(const struct kvx_bind_val *ib, __be16 ext)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_bind_val *old;
	struct kvx_gtw_val *r;
	struct kvx_bind_key k;
	__u32 idx, slot;

	if (!cfg)
		return;
	idx = guest_slot(cfg, ib->addr) & (KVX_GTW_GUESTS - 1);
	r = bpf_map_lookup_elem(&kvx_gtw, &idx);
	if (!r)
		return;
	slot = r->next & (KVX_GTW_RING - 1);
	if (r->ports[slot] && r->ports[slot] != ext) {
		bind_key_init(&k, KVX_BIND_IN, IPPROTO_TCP, cfg->uplink_addr, r->ports[slot]);
		old = bpf_map_lookup_elem(&kvx_bind, &k);
		if (old && old->addr == ib->addr && bind_tw_only(old->flags))
			return;
	}
	r->ports[slot] = ext;
	r->next = (slot + 1) & (KVX_GTW_RING - 1);
}

/*
 * The rule of bind_tw_mark and ct6.h's bind6_tw_mark, one for both families:
 * binding b's flags (and tw_remotes) after packet p of its flow f; rem: the
 * kvx_tw_bits of p's remote, read only when f is in TIME_WAIT.  Returns 1
 * when the port has just closed: its guest's ring of closed ports takes it.
 */
static __always_inline int bind_tw_update(struct kvx_bind_val *b, const struct kvx_ct_val *f,
					  const struct kvx_pkt *p, int out, __u32 rem, __u64 now)
{
	__u16 fl = b->flags, nfl = fl;
	__u8 st = f->state;
	int closed = 0;
	__u32 bits;

	if ((fl & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) || p->proto != IPPROTO_TCP)
		return 0;
	if (!out && (p->tcp_flags & KVX_TCP_FIN) &&
	    !((f->flags & KVX_CT_F_FIN_OUT) && tcp_tracked(f) && (p->tcp_flags & KVX_TCP_ACK) &&
	      p->tcp_ack == f->tcp[KVX_CT_SIDE_GUEST].end))
		nfl |= KVX_BIND_F_RFIN;
	if (st == KVX_CT_TIME_WAIT || st == KVX_CT_CLOSE) {
		nfl |= KVX_BIND_F_TW;
		if (st == KVX_CT_TIME_WAIT && (nfl & KVX_BIND_F_RFIN)) {
			bits = kvx_tw_add(b->tw_remotes, rem, now);
			if (b->tw_remotes != bits)
				b->tw_remotes = bits;
		}
		closed = !(fl & (KVX_BIND_F_TW | KVX_BIND_F_MULTI));
		b->last_used_ns = now;
	} else if (fl & KVX_BIND_F_TW) {
		nfl &= ~(KVX_BIND_F_TW | KVX_BIND_F_RFIN);
	}
	/* Atomic: a port's shared mark (ovl_enter) may be set meanwhile. */
	if (nfl & ~fl)
		bind_flags_or(b, nfl & ~fl);
	if (fl & ~nfl)
		bind_flags_clear(b, fl & ~nfl);
	return closed;
}

/* After packet p of a dynamic binding's flow f: the binding's closing
 * marks (bind_tw_update) and the guest's FIN's timestamp (tcp_fin_ts_take:
 * here, not in ct_update, whose frame is on the programs' deepest chains). */
static __noinline void bind_tw_mark(struct kvx_bind_val *ib, struct kvx_ct_val *f,
				    const struct kvx_pkt *p, int out, __u64 now)
{
	__u32 rem = f->state == KVX_CT_TIME_WAIT ?
			    kvx_tw_bits(out ? p->daddr : p->saddr, out ? p->dport : p->sport) :
			    0;

	if (out && (p->tcp_flags & KVX_TCP_FIN) && p->proto == IPPROTO_TCP)
		tcp_fin_ts_take(f, p);
	if (bind_tw_update(ib, f, p, out, rem, now))
		gtw_push(ib, f->ext_port);
}

/* guest -> outside: the external endpoint for this packet, creating the
 * binding and the flow as needed.  Not inlined: the normal and the hairpin
 * path share one copy (half the program, a fraction of the verifier's work). */
static __noinline int ct_egress(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				const __u8 *macs, __u64 now, struct nat_endpoint *ext)
{
	const __u8 *guest_mac = macs, *gw_mac = macs + KVX_GW_MAC_OFF;
	struct kvx_bind_val *ib;
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
	ib = f ? flow_binding(cfg, f, p, guest_mac, gw_mac, now) : NULL;
	if (f && ib) {
		ext->addr = f->ext_addr;
		ext->port = f->ext_port;
		ext->flags = f->flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE);
		r = ct_update(f, p, CT_DIR_OUT, now);
		if (r == KVX_CONTINUE)
			bind_tw_mark(ib, f, p, 1, now);
		return r;
	}
	/* A tenant's flow on a shared port: the IN half is the owner's, the
	 * (port, remote) this endpoint's (its closed flows recycle nothing:
	 * a shared port is never recycled). */
	if (f && !(f->flags & (KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE)) &&
	    ovl_flow_ok(p, f->ext_addr, f->ext_port, now)) {
		ext->addr = f->ext_addr;
		ext->port = f->ext_port;
		ext->flags = 0;
		return ct_update(f, p, CT_DIR_OUT, now);
	}

	/* A new flow: within the guest's quota before anything is created. */
	if (!f) {
		if (!tcp_may_open(p, CT_DIR_OUT))
			return KVX_R_DROP_TCP_NO_FLOW;
		r = ct_quota_check(cfg, p->saddr, 0, p, now);
		if (r != KVX_CONTINUE)
			return r;
	}
	r = bind_get(cfg, p, macs, now, ext);
	/* Out of ports: share one of the guest's own (RFC 7857 section 3),
	 * for a new flow only (a flow whose binding went keeps its old port
	 * or none).  Here, not in bind_get: f is kept across the call anyway,
	 * a flag would take a slot of this frame, on the bridge program's
	 * deepest chain. */
	if ((r == KVX_R_DROP_PORTS_EXHAUSTED || r == KVX_R_DROP_GUEST_PORTS) && !f)
		r = ovl_share(p, (const struct nat_macs *)macs, now, r, ext);
	if (r != KVX_CONTINUE)
		return r;
	if (f) {
		f->ext_addr = ext->addr;
		f->ext_port = ext->port;
		f->flags = (f->flags & ~(KVX_CT_F_STATIC | KVX_CT_F_ONE_TO_ONE)) | ext->flags;
		return ct_update(f, p, CT_DIR_OUT, now);
	}
	return ct_create_or_update(&k, p, CT_DIR_OUT, ext, now);
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
 * ARP that claims another guest's address.  Without an owner (a learnt
 * one quiet for KVX_GUEST_IDLE_NS: none) or a known bridge MAC, the
 * neighbour table it is.  Not inlined: its frame stays off
 * ct_ingress's, which is on the bridge program's deepest chain (hairpin).
 */
static __noinline void guest_mac_from_owner(const struct kvx_cfg *cfg, struct nat_endpoint *guest,
					    __u64 now)
{
	struct kvx_guest_val *g;
	struct kvx_xdev_val *br;
	__u32 bridge = cfg->bridge_ifindex;
	__be32 addr = guest->addr;

	g = bpf_map_lookup_elem(&kvx_guest, &addr);
	/* Quiet for longer than the bridge remembers its port (a learnt
	 * owner may be another MAC by now), or a lease whose MAC has no port
	 * (KVX_GUEST_F_GONE: its VM is off): the neighbour table asks again
	 * instead of flooding a MAC that may be gone to every port. */
	if (!g || (g->flags & KVX_GUEST_F_GONE) ||
	    (!(g->flags & KVX_GUEST_F_LEASE) && g->seen_ns + KVX_GUEST_IDLE_NS <= now))
		return;
	br = bpf_map_lookup_elem(&kvx_xdev, &bridge);
	if (!br || mac_is_zero(br->mac))
		return;
	__builtin_memcpy(guest->guest_mac, g->mac, 6);
	__builtin_memcpy(guest->gw_mac, br->mac, 6);
}

/*
 * A packet to a dynamic binding (IN half ib) that matches none of its
 * flows: is it the host's?  A dynamic binding is the guest's only for what
 * its flows asked for (address-and-port-dependent filtering, RFC 4787
 * REQ-8): anything else to the uplink address is what it would be without
 * kvmxdp, the host's (as a packet no conntrack entry matches goes to INPUT
 * under iptables MASQUERADE).  The port may be a host service's that
 * started after the binding was made (kvx_portx follows listeners once per
 * GC sweep), or one the host publishes without a socket (a DNAT rule):
 * dropping it, or handing it to the guest, would take it from the host.
 * With --eif (endpoint-independent filtering) the binding takes new flows
 * too, but never on a port the host listens on, and a TCP segment other
 * than a SYN opens nothing (it belongs to a connection of the host's, if
 * any).  One exception: a TCP segment other than a SYN to a binding whose
 * flows `conntrack flush` deleted (KVX_BIND_F_FLUSHED) is most likely one
 * of those flows, which the guest's next packet picks up: dropped, as the
 * host's stack would reset the connection (a stray segment, if it was one,
 * is dropped as a stateful firewall would).  Returns KVX_R_PASS_HOST,
 * KVX_R_DROP_FILTERED or KVX_CONTINUE (a new inbound flow, EIF).
 */
static __always_inline int ct_unsolicited(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
					  const struct kvx_bind_val *ib)
{
	int syn = p->proto == IPPROTO_TCP &&
		  (p->tcp_flags & (KVX_TCP_SYN | KVX_TCP_ACK | KVX_TCP_FIN | KVX_TCP_RST)) ==
			  KVX_TCP_SYN;

	/* Not for a port a host service now listens on: the remote's
	 * handshake ACKs for that service would be dropped for as long as
	 * the binding lives (the flag is only cleared with it).  A SYN-ACK
	 * can be a flushed flow's (the guest retransmits its SYN). */
	if (p->proto == IPPROTO_TCP && !syn && (ib->flags & KVX_BIND_F_FLUSHED) &&
	    !port_host_listens(bpf_ntohs(p->dport)))
		return KVX_R_DROP_FILTERED;
	if (!(cfg->flags & KVX_CFG_F_EIF))
		return KVX_R_PASS_HOST;
	if (p->proto == IPPROTO_TCP)
		return !syn || port_host_listens(bpf_ntohs(p->dport)) ? KVX_R_PASS_HOST :
									KVX_CONTINUE;
	if (p->proto == IPPROTO_UDP && port_host_listens(bpf_ntohs(p->dport)))
		return KVX_R_PASS_HOST;
	return KVX_CONTINUE;
}

/* outside -> guest: the guest endpoint for a packet to (daddr, dport), or
 * KVX_R_PASS_HOST when no binding owns it (the host's own traffic), or a
 * dynamic binding has no flow that wants it (ct_unsolicited). */
static __noinline int ct_ingress(const struct kvx_cfg *cfg, const struct kvx_pkt *p,
				      __u64 now, struct nat_endpoint *guest)
{
	struct nat_endpoint ext = {};
	struct kvx_bind_val *ib;
	struct kvx_ct_key k;
	struct kvx_ct_val *f;
	__u8 flags = 0, state;
	int r;

	ib = bind_in_find(p, &flags);
	if (!ib)
		return KVX_R_PASS_HOST;
	ext.addr = p->daddr;
	ext.port = proto_has_ports(p->proto) ? p->dport : 0;
	ext.flags = flags;
	guest_of_binding(ib, flags, ext.port, guest);

	ct_key_init(&k, p->proto, guest->addr, guest->port, p->saddr, p->sport);
	f = bpf_map_lookup_elem(&kvx_ct, &k);
	/* None of the owner's flows: one of its guest's other endpoints may
	 * share the port with a flow to p's source (port overlapping: abi.h
	 * kvx_ovl).  Looked up whatever the port's shared mark says (a
	 * full-value rewrite of the IN half may have lost it): only packets
	 * that match no flow pay the lookup. */
	if (!f && !(flags & KVX_CT_F_STATIC) && proto_has_ports(p->proto) &&
	    ovl_guest_port(p, ib, guest)) {
		ct_key_init(&k, p->proto, guest->addr, guest->port, p->saddr, p->sport);
		f = bpf_map_lookup_elem(&kvx_ct, &k);
		/* Its flow gone (or through another port): never a new flow
		 * for it from outside, EIF or not. */
		if (!f || f->ext_addr != ext.addr || f->ext_port != ext.port) {
			r = ct_unsolicited(cfg, p, ib);
			return r == KVX_CONTINUE ? KVX_R_PASS_HOST : r;
		}
	}
	/* RFC 4787: address-and-port-dependent filtering unless the user
	 * asked for endpoint-independent ("full cone"); static mappings
	 * accept new inbound connections. */
	if (!f && !(flags & KVX_CT_F_STATIC)) {
		r = ct_unsolicited(cfg, p, ib);
		if (r != KVX_CONTINUE)
			return r;
	}
	/* Ours, but it would expire on the way: drop before it touches the
	 * flow (no state change, no EIF flow for it). */
	if (p->ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	if (mac_is_zero(guest->guest_mac))
		guest_mac_from_owner(cfg, guest, now);
	if (!f) {
		/* Only a SYN opens a TCP flow from outside: an ACK, FIN or
		 * NULL scan, or a stray segment, never holds an entry (nor the
		 * guest's quota), and the SYN only a half-open one
		 * (SYN_RECV) until the handshake completes. */
		if (!tcp_may_open(p, CT_DIR_IN))
			return KVX_R_DROP_TCP_NO_FLOW;
		/* From one of the host's own addresses (inbound_martian has
		 * the uplink's and the mapped ones): a martian, as the
		 * kernel's input route finds it.  Here, not per packet: only
		 * a new flow could come from one (a guest's packet to a host
		 * address is the host's, never translated).  But a hairpin's
		 * (nat4_hairpin: the sender's external endpoint, the uplink's
		 * address; a real inbound one from it inbound_martian
		 * dropped). */
		if (p->saddr != cfg->uplink_addr && bpf_map_lookup_elem(&kvx_hostaddr, &p->saddr))
			return KVX_R_DROP_MARTIAN_IN;
		r = ct_quota_check(cfg, guest->addr, KVX_CT_F_INBOUND, p, now);
		if (r != KVX_CONTINUE)
			return r;
		if (!(flags & KVX_CT_F_STATIC)) {
			/* A second flow through a dynamic binding (EIF). */
			bind_flags_or(ib, KVX_BIND_F_MULTI);
			ib->last_used_ns = now;
		}
		return ct_create_or_update(&k, p, CT_DIR_IN, &ext, now);
	}
	if (f->ext_addr != ext.addr || f->ext_port != ext.port)
		return KVX_R_DROP_BROKEN_PAIR;
	state = f->state;
	r = ct_update(f, p, CT_DIR_IN, now);
	/* A SYN that reopened a closed flow from outside made it half-open
	 * again: early drop's to evict, as a new one is. */
	if (r == KVX_CONTINUE && state != KVX_CT_SYN_RECV && f->state == KVX_CT_SYN_RECV)
		ct_halfopen_push(cfg, &k);
	/* A tenant's flow (another guest port than the binding's) is not the
	 * owner's binding's to mark. */
	if (r == KVX_CONTINUE && ((flags & KVX_CT_F_STATIC) || guest->port == ib->port))
		bind_tw_mark(ib, f, p, 0, now);
	return r;
}

#endif /* KVX_CT_H */
