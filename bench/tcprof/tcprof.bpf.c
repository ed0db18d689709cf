/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Harness for measuring one TC program's cost per packet with
 * BPF_PROG_TEST_RUN and repeat = N (bench/tcprof/tcprof.cpp).
 *
 * test_run runs the program N times on the same skb, and a NAT program
 * rewrites it in place (the second run would see a translated packet), so
 * prof_run first writes the original frame back from prof_frame, then
 * tail-calls the program under test (prof_jmp[0]).  Pointing prof_jmp[0]
 * at prof_nop measures the harness alone, which the runner subtracts.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define PROF_FRAME_LEN 64 /* the headers any case rewrites, and then some */

struct prof_frame {
	__u8 bytes[PROF_FRAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct prof_frame);
} prof_frame SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} prof_jmp SEC(".maps");

SEC("tc")
int prof_run(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct prof_frame *f = bpf_map_lookup_elem(&prof_frame, &zero);

	if (!f || bpf_skb_store_bytes(skb, 0, f->bytes, PROF_FRAME_LEN, 0))
		return -1;
	bpf_tail_call(skb, &prof_jmp, 0);
	return -2;
}

SEC("tc")
int prof_nop(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";

/* Reference costs of single operations, each on its own (the runner
 * subtracts prof_nop).  They return TC_ACT_OK whatever the helper says. */
#include <linux/if_ether.h>
#include <linux/ip.h>

#define REF_HASH(name, keytype)                                                                    \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 1024);                                                         \
		__type(key, keytype);                                                              \
		__type(value, __u64);                                                              \
	} name SEC(".maps")

struct key16 {
	__u64 a, b;
};
REF_HASH(ref_h4, __u32);
REF_HASH(ref_h8, __u64);
REF_HASH(ref_h16, struct key16);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} ref_pc SEC(".maps");

volatile __u64 ref_sink;

SEC("tc")
int ref_ktime_boot(struct __sk_buff *skb)
{
	ref_sink = bpf_ktime_get_boot_ns();
	return TC_ACT_OK;
}

SEC("tc")
int ref_ktime_coarse(struct __sk_buff *skb)
{
	ref_sink = bpf_ktime_get_coarse_ns();
	return TC_ACT_OK;
}

SEC("tc")
int ref_jiffies(struct __sk_buff *skb)
{
	ref_sink = bpf_jiffies64();
	return TC_ACT_OK;
}

/* Lookups of a present key: the runner's first run inserts it. */
#define REF_LOOKUP(fn, map, keytype)                                                               \
	SEC("tc") int fn(struct __sk_buff *skb)                                                    \
	{                                                                                          \
		keytype k;                                                                         \
		__u64 one = 1, *v;                                                                 \
		__builtin_memset(&k, 0x5a, sizeof(k));                                             \
		v = bpf_map_lookup_elem(&map, &k);                                                 \
		if (v)                                                                             \
			ref_sink = *v;                                                             \
		else                                                                               \
			bpf_map_update_elem(&map, &k, &one, BPF_ANY);                              \
		return TC_ACT_OK;                                                                  \
	}
REF_LOOKUP(ref_hash4, ref_h4, __u32)
REF_LOOKUP(ref_hash8, ref_h8, __u64)
REF_LOOKUP(ref_hash16, ref_h16, struct key16)

SEC("tc")
int ref_fib(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = {};

	fib.family = 2; /* AF_INET */
	fib.l4_protocol = 17;
	fib.ipv4_src = bpf_htonl(0xc0a87a0a); /* 192.168.122.10 */
	fib.ipv4_dst = bpf_htonl(0xc612000a); /* 198.18.0.10 */
	fib.ifindex = skb->ifindex;
	ref_sink = bpf_fib_lookup(skb, &fib, sizeof(fib), 0) + fib.ifindex;
	return TC_ACT_OK;
}

SEC("tc")
int ref_l3csum(struct __sk_buff *skb)
{
	/* one replace of the IPv4 checksum: a no-op change (from == to) */
	ref_sink = bpf_l3_csum_replace(skb, ETH_HLEN + 10, 0x1234, 0x1234, 4);
	return TC_ACT_OK;
}

SEC("tc")
int ref_csum_diff(struct __sk_buff *skb)
{
	__be32 from[2] = {1, 2}, to[2] = {3, 4};

	ref_sink = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);
	return TC_ACT_OK;
}

SEC("tc")
int ref_pcpu(struct __sk_buff *skb)
{
	__u32 k = 7;
	__u64 *v = bpf_map_lookup_elem(&ref_pc, &k);

	if (v)
		*v += 1;
	return TC_ACT_OK;
}

SEC("tc")
int ref_redirect(struct __sk_buff *skb)
{
	ref_sink = bpf_redirect(skb->ifindex, 0);
	return TC_ACT_OK;
}
