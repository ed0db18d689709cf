/* SPDX-License-Identifier: GPL-2.0 */
/* STUB: replaced by the real datapath shortly. Names are final. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "kvmxdp/abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kvx_cfg);
} kvx_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_BIND_DEFAULT_SIZE);
	__type(key, struct kvx_bind_key);
	__type(value, struct kvx_bind_val);
} kvx_bind SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_CT_DEFAULT_SIZE);
	__type(key, struct kvx_ct_key);
	__type(value, struct kvx_ct_val);
} kvx_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KVX_R_MAX);
	__type(key, __u32);
	__type(value, struct kvx_stat);
} kvx_stats SEC(".maps");

SEC("tc")
int kvx_br_ingress(struct __sk_buff *skb) { return TC_ACT_OK; }
SEC("tc")
int kvx_up_ingress(struct __sk_buff *skb) { return TC_ACT_OK; }

char LICENSE[] SEC("license") = "GPL";
