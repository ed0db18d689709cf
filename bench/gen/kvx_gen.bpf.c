/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Benchmark packet generator and sink (XDP).
 *
 * kvx_gen runs under BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the
 * guest's veth: every frame it returns XDP_TX for is transmitted out of that
 * veth towards the bridge.  The test-run page pool recycles its pages
 * without re-initialising them, and the host rewrites forwarded frames in
 * place (NAT), so the whole header is written again for every frame.
 *
 * kvx_sink sits on the server's veth: counts UDP frames addressed to the
 * server and drops them (an exact, cheap sink); everything else passes.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GEN_HDR_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))

/* Set by user space before load (.data, so not constant-folded). */
__u8 gen_hdr[GEN_HDR_LEN] = {};
__u32 gen_csum_base = 0;  /* unfolded UDP checksum sum without the ports */
__u32 gen_sport_span = 1; /* flows = sport_span * dport_span */
__u32 gen_nflows = 1;
__u16 gen_sport_base = 0; /* host order */
__u16 gen_dport_base = 0; /* host order */

__u64 gen_frames = 0; /* frames handed to XDP_TX (one CPU runs this) */

static __always_inline __u16 csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

SEC("xdp")
int kvx_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct udphdr *udp;
	__u32 idx, sport, dport, sum;
	__u16 csum;

	if (data + GEN_HDR_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, gen_hdr, GEN_HDR_LEN);

	idx = gen_frames++;
	if (gen_nflows > 1) {
		idx %= gen_nflows;
		sport = gen_sport_base + idx % gen_sport_span;
		dport = gen_dport_base + idx / gen_sport_span;
	} else {
		sport = gen_sport_base;
		dport = gen_dport_base;
	}
	udp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	udp->source = bpf_htons((__u16)sport);
	udp->dest = bpf_htons((__u16)dport);
	/* RFC 768: a computed checksum of 0 is sent as all ones. */
	sum = gen_csum_base + udp->source + udp->dest;
	csum = csum_fold(sum);
	udp->check = csum ? csum : 0xffff;
	return XDP_TX;
}

__u32 sink_daddr = 0;	 /* network order */
__u32 sink_saddr = 0;	 /* network order; 0: any source */
__u16 sink_dport_lo = 0; /* host order, inclusive */
__u16 sink_dport_hi = 65535;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_cnt SEC(".maps");

SEC("xdp")
int kvx_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;
	__u32 zero = 0;
	__u64 *cnt;

	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP ||
	    ip->daddr != sink_daddr || ip->ihl != 5 || (sink_saddr && ip->saddr != sink_saddr))
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || bpf_ntohs(udp->dest) < sink_dport_lo ||
	    bpf_ntohs(udp->dest) > sink_dport_hi)
		return XDP_PASS;
	cnt = bpf_map_lookup_elem(&sink_cnt, &zero);
	if (cnt)
		*cnt += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
