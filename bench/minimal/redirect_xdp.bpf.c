/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Bare XDP redirect, the benchmark's ceiling: on the guest-facing port, UDP
 * frames for the server get new MACs and are redirected to the uplink veth.
 * No NAT, no route lookup, no checksum work: the cheapest possible forward.
 * run.sh passes -DUP_IFINDEX -DUP_MAC -DLAN_MAC -DSERVER_ADDR (host order).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int redirect_up(struct xdp_md *ctx)
{
	static const __u8 up_mac[6] = {UP_MAC}, lan_mac[6] = {LAN_MAC};
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->daddr != bpf_htonl(SERVER_ADDR))
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, lan_mac, 6);
	__builtin_memcpy(eth->h_source, up_mac, 6);
	return bpf_redirect(UP_IFINDEX, 0);
}

char LICENSE[] SEC("license") = "GPL";
