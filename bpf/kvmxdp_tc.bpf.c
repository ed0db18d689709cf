/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmxdp TC entry points.  The logic lives in the lib headers; these only say where
 * each program is attached.  Names are what `bpftool prog show` prints.
 */
#include "nat.h"
#include "nat6.h"
#include "relay6.h"

SEC("tc")
int kvx_br6(struct __sk_buff *skb);
SEC("tc")
int kvx_up6(struct __sk_buff *skb);
SEC("tc")
int kvx_br6_relay(struct __sk_buff *skb);
SEC("tc")
int kvx_up6_relay(struct __sk_buff *skb);
SEC("tc")
int kvx_br6_hairpin(struct __sk_buff *skb);

/*
 * The IPv6 programs (abi.h kvx_v6progs), filled by libbpf when the object
 * loads, also into a pinned array the loader reuses: every attach points
 * the slots at the programs it loaded.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, KVX_V6_MAX);
	__type(key, __u32);
	__array(values, int(struct __sk_buff *));
} kvx_v6progs SEC(".maps") = {
	.values =
		{
			[KVX_V6_BR] = (void *)&kvx_br6,
			[KVX_V6_UP] = (void *)&kvx_up6,
			[KVX_V6_BR_RELAY] = (void *)&kvx_br6_relay,
			[KVX_V6_UP_RELAY] = (void *)&kvx_up6_relay,
			[KVX_V6_BR_HAIRPIN] = (void *)&kvx_br6_hairpin,
		},
};

/*
 * An IPv6 frame continues in its own program (its own verifier budget);
 * skb->protocol needs no packet access, and an empty slot returns here,
 * where the IPv4 program counts the frame PASS_NOT_IP as before.  In the
 * entry function itself: the verifier refuses a tail call from a
 * subprogram whose callers' frames exceed 256 bytes of stack.
 */
static __always_inline void v6_tail_call(struct __sk_buff *skb, __u32 slot)
{
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		bpf_tail_call(skb, &kvx_v6progs, slot);
}

/*
 * A frame whose priority tag (VLAN 0, which the kernel took off before this
 * hook: skb->vlan_present) carries another priority tag.  After this hook
 * the kernel takes that one off too and hands on what is inside as an
 * untagged frame: an ARP or IP packet that none of the checks here saw
 * (skb->protocol is the inner tag's), in any guest's name.  No guest on an
 * untagged bridge sends one.  An inner tag with a VLAN id is left alone:
 * the kernel gives it to that VLAN's device on the bridge, if there is one
 * (kvmxdp does not serve it), else drops it (PACKET_OTHERHOST).
 */
static __always_inline int stacked_priority_tag(struct __sk_buff *skb)
{
	__be16 tci;

	if (!skb->vlan_present || (skb->vlan_tci & 0x0fff) ||
	    (skb->protocol != bpf_htons(ETH_P_8021Q) && skb->protocol != bpf_htons(ETH_P_8021AD)))
		return 0;
	/* The inner tag's TCI follows the Ethernet header. */
	return bpf_skb_load_bytes(skb, ETH_HLEN, &tci, sizeof(tci)) || !(bpf_ntohs(tci) & 0x0fff);
}

/* clsact ingress of the bridge device: guest packets routed via the host. */
SEC("tc")
int kvx_br_ingress(struct __sk_buff *skb)
{
	gstats_clear();
	if (stacked_priority_tag(skb))
		return verdict(KVX_R_DROP_MALFORMED, skb->len);
	v6_tail_call(skb, KVX_V6_BR);
	return nat4_from_guest(skb);
}

/* clsact ingress of the uplink (WiFi) device: replies for guests' flows. */
SEC("tc")
int kvx_up_ingress(struct __sk_buff *skb)
{
	gstats_clear();
	v6_tail_call(skb, KVX_V6_UP);
	return nat4_from_uplink(skb);
}

/* Relay mode (kvx_cfg6.mode) continues in its own program; an empty slot
 * returns here, where NAT66's checks hand the frame to the host
 * (PASS_NOT_IP) as with IPv6 off. */
static __always_inline void v6_relay_tail_call(struct __sk_buff *skb, __u32 slot)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();

	if (cfg6 && cfg6->mode == KVX_V6_RELAY)
		bpf_tail_call(skb, &kvx_v6progs, slot);
}

/* Tail-called from kvx_br_ingress: an IPv6 frame from a guest. */
SEC("tc")
int kvx_br6(struct __sk_buff *skb)
{
	int r;

	v6_relay_tail_call(skb, KVX_V6_BR_RELAY);
	r = nat6_from_guest(skb);
	if (r != KVX_TC_HAIRPIN6)
		return r;
	/* Back to a guest: its own program.  A missing slot cannot leave the
	 * frame to the host, which would route it out untranslated. */
	bpf_tail_call(skb, &kvx_v6progs, KVX_V6_BR_HAIRPIN);
	return verdict(KVX_R_DROP_BROKEN_PAIR, skb->len);
}

/* Tail-called from kvx_br6: an IPv6 frame from a guest to a mapped
 * address or port, turned around on the bridge (NAT66 hairpin). */
SEC("tc")
int kvx_br6_hairpin(struct __sk_buff *skb)
{
	return nat6_hairpin(skb);
}

/* Tail-called from kvx_up_ingress: an IPv6 frame from the uplink. */
SEC("tc")
int kvx_up6(struct __sk_buff *skb)
{
	v6_relay_tail_call(skb, KVX_V6_UP_RELAY);
	return nat6_from_uplink(skb);
}

/* Tail-called from kvx_br6 in relay mode: an IPv6 frame from a guest. */
SEC("tc")
int kvx_br6_relay(struct __sk_buff *skb)
{
	return relay6_from_guest(skb);
}

/* Tail-called from kvx_up6 in relay mode: an IPv6 frame from the uplink. */
SEC("tc")
int kvx_up6_relay(struct __sk_buff *skb)
{
	return relay6_from_uplink(skb);
}

/*
 * clsact ingress of each bridge port (a VM's tap, a container's veth), in
 * front of the bridge: the port guard (nat.h brport_elsewhere8).  Every
 * other frame goes on uncounted (the bridge program counts what reaches
 * the host) with TC_ACT_UNSPEC, not TC_ACT_OK: the port's next filters
 * still run (libvirt's <bandwidth> policer on a tap, a user's own).
 *
 * A source MAC placed on no port is placed here, on the port it came in
 * on (nat.h brport_place), before its frame reaches the NAT; one that
 * cannot be placed (the port's budget of new MACs spent, a full table) is
 * dropped (DROP_MAC_NEW).
 */
SEC("tc")
int kvx_port_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	__u8 mac[8] __attribute__((aligned(8))) = {};
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;
	int r;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	r = brport_elsewhere8(mac, ifindex);
	if (r == KVX_BRPORT_NONE && brport_place(mac, ifindex)) {
		gstats_clear();
		return verdict(KVX_R_DROP_MAC_NEW, skb->len);
	}
	if (r != 1)
		return TC_ACT_UNSPEC;
	gstats_clear();
	return verdict(KVX_R_DROP_MAC_ELSEWHERE, skb->len);
}

char LICENSE[] SEC("license") = "GPL";
