/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal static SNAT at TC, the benchmark's yardstick for kvmxdp's own
 * overhead: no conntrack, no port translation, one guest, everything fixed
 * at compile time (bench/run.sh passes -D values for its topology).  It does
 * the unavoidable per-packet work of a TC NAT and nothing more: parse,
 * rewrite one address, TTL-1, incremental checksums (RFC 1624; L4 as a
 * pseudo-header change so CHECKSUM_PARTIAL skbs stay right), MACs, redirect.
 *
 *   snat_br: bridge device ingress, guest -> outside
 *   snat_up: uplink ingress, outside -> guest
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef GUEST_ADDR /* host-order constants, e.g. 0xc0a87a0b */
#error "build with -DGUEST_ADDR -DSUBNET -DSUBNET_MASK -DUPLINK_ADDR -DUP_IFINDEX -DBR_IFINDEX -DUP_MAC -DLAN_MAC -DBR_MAC -DGUEST_MAC"
#endif

static const __u8 up_mac[6] = {UP_MAC}, lan_mac[6] = {LAN_MAC};
static const __u8 br_mac[6] = {BR_MAC}, guest_mac[6] = {GUEST_MAC};

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_TTL_OFF (IP_OFF + offsetof(struct iphdr, ttl))
#define L4_OFF (IP_OFF + sizeof(struct iphdr))

static __always_inline int snat_rewrite(struct __sk_buff *skb, int saddr_side, __be32 new_addr,
					const __u8 *smac, const __u8 *dmac, __u32 ifindex)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;
	__u32 addr_off = IP_OFF + (saddr_side ? offsetof(struct iphdr, saddr) :
						offsetof(struct iphdr, daddr));
	__u32 l4_csum_off, l4_flags = BPF_F_PSEUDO_HDR | sizeof(__be32);
	__be32 old_addr;
	__be16 old_ttl, new_ttl;
	__u8 proto;

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	old_addr = saddr_side ? ip->saddr : ip->daddr;
	proto = ip->protocol;
	if (ip->ttl <= 1)
		return TC_ACT_OK;
	old_ttl = *(__be16 *)&ip->ttl;
	ip->ttl--;
	new_ttl = *(__be16 *)&ip->ttl;
	(void)eth;

	if (proto == IPPROTO_TCP) {
		l4_csum_off = L4_OFF + offsetof(struct tcphdr, check);
	} else {
		l4_csum_off = L4_OFF + offsetof(struct udphdr, check);
		l4_flags |= BPF_F_MARK_MANGLED_0; /* UDP checksum 0 stays 0 */
	}
	if (bpf_l4_csum_replace(skb, l4_csum_off, old_addr, new_addr, l4_flags))
		return TC_ACT_SHOT;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, sizeof(__be32)) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ttl, new_ttl, sizeof(__be16)))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), dmac, 6, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), smac, 6, 0))
		return TC_ACT_SHOT;
	return bpf_redirect(ifindex, 0);
}

static __always_inline int parse_l4(struct __sk_buff *skb, struct iphdr **ipp)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
		return -1;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return -1;
	if (ip->frag_off & bpf_htons(0x3fff))
		return -1;
	if (data + L4_OFF + sizeof(struct tcphdr) > data_end &&
	    (ip->protocol == IPPROTO_TCP || data + L4_OFF + sizeof(struct udphdr) > data_end))
		return -1;
	*ipp = ip;
	return 0;
}

SEC("tc")
int snat_br(struct __sk_buff *skb)
{
	struct iphdr *ip;

	if (parse_l4(skb, &ip))
		return TC_ACT_OK;
	if ((ip->saddr & bpf_htonl(SUBNET_MASK)) != bpf_htonl(SUBNET) ||
	    (ip->daddr & bpf_htonl(SUBNET_MASK)) == bpf_htonl(SUBNET))
		return TC_ACT_OK;
	return snat_rewrite(skb, 1, bpf_htonl(UPLINK_ADDR), up_mac, lan_mac, UP_IFINDEX);
}

SEC("tc")
int snat_up(struct __sk_buff *skb)
{
	struct iphdr *ip;

	if (parse_l4(skb, &ip))
		return TC_ACT_OK;
	if (ip->daddr != bpf_htonl(UPLINK_ADDR))
		return TC_ACT_OK;
	return snat_rewrite(skb, 0, bpf_htonl(GUEST_ADDR), br_mac, guest_mac, BR_IFINDEX);
}

char LICENSE[] SEC("license") = "GPL";
