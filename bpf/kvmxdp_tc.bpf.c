/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmxdp TC entry points.  The logic lives in the lib headers; these only say where
 * each program is attached.  Names are what `bpftool prog show` prints.
 */
#include "nat.h"

/* clsact ingress of the bridge device: guest packets routed via the host. */
SEC("tc")
int kvx_br_ingress(struct __sk_buff *skb)
{
	gstats_clear();
	return nat4_from_guest(skb);
}

/* clsact ingress of the uplink (WiFi) device: replies for guests' flows. */
SEC("tc")
int kvx_up_ingress(struct __sk_buff *skb)
{
	gstats_clear();
	return nat4_from_uplink(skb);
}

char LICENSE[] SEC("license") = "GPL";
