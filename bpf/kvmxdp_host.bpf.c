/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host itself reaching its guests through their mapped addresses.
 *
 * A LAN client's packet to a 1:1 address or a forwarded port is translated
 * by kvx_up_ingress.  The host's own connection to the same address never
 * crosses that hook: to a 1:1 address it would leave through the uplink's
 * egress (and ARP for an address nobody on the LAN answers, since only
 * kvx_up_ingress answers for it), to `uplink:PORT` it is delivered locally
 * through lo.  Rather than NAT every packet the host sends (a TC egress
 * program on the uplink, and a reverse SNAT on the bridge for the replies),
 * these cgroup sock_addr hooks translate once per socket: connect() and
 * sendmsg() to a mapped EXT:PORT go to GUEST:PORT directly over the bridge,
 * and recvmsg()/getpeername() show the application the address it asked
 * for.  The guest sees the host's bridge address as the client, as with any
 * host-to-guest connection.
 *
 * The hooks sit on the root of the cgroup v2 hierarchy, which spans every
 * network namespace: host_netns_cookie confines them to the namespace the
 * instance serves.  Program names stay within the kernel's 15 characters
 * (bpftool prog show).  Only static mappings (KVX_BIND_F_STATIC) are looked up:
 * a guest's dynamic masquerade binding is no service of the host's.
 */
#include <linux/in.h>
#include "maps.h"

/* Set by the loader before load: the network namespace of the instance. */
const volatile __u64 host_netns_cookie = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_HOSTREV_DEFAULT_SIZE);
	__type(key, struct kvx_hostrev_key);
	__type(value, struct kvx_hostrev_val);
} kvx_hostrev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_HOSTREV_DEFAULT_SIZE);
	__type(key, struct kvx_hostrev6_key);
	__type(value, struct kvx_hostrev6_val);
} kvx_hostrev6 SEC(".maps");

static __always_inline int host_ours(struct bpf_sock_addr *ctx)
{
	return bpf_get_netns_cookie(ctx) == host_netns_cookie &&
	       (ctx->protocol == IPPROTO_TCP || ctx->protocol == IPPROTO_UDP);
}

/* EXT:PORT -> the guest endpoint of a static mapping, as kvx_up_ingress
 * would deliver a LAN client's packet (port forward first, then 1:1). */
static __always_inline int host_dnat(struct bpf_sock_addr *ctx)
{
	struct kvx_hostrev_key rk = {};
	struct kvx_hostrev_val rv = {};
	struct kvx_extaddr_val *ea;
	struct kvx_bind_key k = {};
	struct kvx_bind_val *ib;
	__be32 ext = ctx->user_ip4;
	__be16 eport = (__be16)ctx->user_port;
	__be16 gport;

	if (!host_ours(ctx))
		return 1;
	ea = bpf_map_lookup_elem(&kvx_extaddr, &ext);
	if (ea && (ea->flags & KVX_EXT_F_SUSPENDED))
		return 1;

	k.dir = KVX_BIND_IN;
	k.proto = (__u8)ctx->protocol;
	k.port = eport;
	k.addr = ext;
	ib = bpf_map_lookup_elem(&kvx_bind, &k);
	if (ib && (ib->flags & KVX_BIND_F_STATIC)) {
		gport = ib->port;
	} else {
		k.proto = KVX_PROTO_ANY;
		k.port = 0;
		ib = bpf_map_lookup_elem(&kvx_bind, &k);
		if (!ib || !(ib->flags & KVX_BIND_F_ONE_TO_ONE))
			return 1;
		gport = eport;
	}

	rk.sock_cookie = bpf_get_socket_cookie(ctx);
	rk.guest_addr = ib->addr;
	rk.guest_port = gport;
	rk.proto = (__u8)ctx->protocol;
	rv.ext_addr = ext;
	rv.ext_port = eport;
	ctx->user_ip4 = ib->addr;
	ctx->user_port = gport;
	/* A full LRU evicts; failure only costs the reverse view. */
	bpf_map_update_elem(&kvx_hostrev, &rk, &rv, BPF_ANY);
	return 1;
}

/* GUEST:PORT -> the EXT:PORT this socket asked for, if it did. */
static __always_inline int host_unnat(struct bpf_sock_addr *ctx)
{
	struct kvx_hostrev_key rk = {};
	struct kvx_hostrev_val *rv;

	if (!host_ours(ctx))
		return 1;
	rk.sock_cookie = bpf_get_socket_cookie(ctx);
	rk.guest_addr = ctx->user_ip4;
	rk.guest_port = (__be16)ctx->user_port;
	rk.proto = (__u8)ctx->protocol;
	rv = bpf_map_lookup_elem(&kvx_hostrev, &rk);
	if (rv) {
		ctx->user_ip4 = rv->ext_addr;
		ctx->user_port = rv->ext_port;
	}
	return 1;
}

/*
 * IPv6, as host_dnat: EXT:PORT of a static mapping in kvx_bind6 (a forward
 * on the uplink's NAT66 address or a literal one, a 1:1 address) -> its
 * guest endpoint.  A literal address held by its duplicate address
 * detection has no pairs (it may be another node's): not translated.
 * user_ip6 is read and written a word at a time (the context allows no
 * other access).
 */
static __always_inline int host_dnat6(struct bpf_sock_addr *ctx)
{
	struct kvx_hostrev6_key rk = {};
	struct kvx_hostrev6_val rv = {};
	struct kvx_bind6_key k = {};
	struct kvx_bind6_val *ib;
	__be16 eport = (__be16)ctx->user_port;
	__be16 gport;

	if (!host_ours(ctx))
		return 1;
	k.addr[0] = ctx->user_ip6[0];
	k.addr[1] = ctx->user_ip6[1];
	k.addr[2] = ctx->user_ip6[2];
	k.addr[3] = ctx->user_ip6[3];
	k.dir = KVX_BIND_IN;
	k.proto = (__u8)ctx->protocol;
	k.port = eport;
	ib = bpf_map_lookup_elem(&kvx_bind6, &k);
	if (ib && (ib->bind.flags & KVX_BIND_F_STATIC)) {
		gport = ib->bind.port;
	} else {
		k.proto = KVX_PROTO_ANY;
		k.port = 0;
		ib = bpf_map_lookup_elem(&kvx_bind6, &k);
		if (!ib || !(ib->bind.flags & KVX_BIND_F_ONE_TO_ONE))
			return 1;
		gport = eport;
	}
	/* A relay mapping (the guest's own address): nothing to rewrite,
	 * the host reaches the guest there as it is. */
	if (ib->addr[0] == k.addr[0] && ib->addr[1] == k.addr[1] && ib->addr[2] == k.addr[2] &&
	    ib->addr[3] == k.addr[3])
		return 1;

	rk.sock_cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.guest_addr, ib->addr, 16);
	rk.guest_port = gport;
	rk.proto = (__u8)ctx->protocol;
	__builtin_memcpy(rv.ext_addr, k.addr, 16);
	rv.ext_port = eport;
	ctx->user_ip6[0] = ib->addr[0];
	ctx->user_ip6[1] = ib->addr[1];
	ctx->user_ip6[2] = ib->addr[2];
	ctx->user_ip6[3] = ib->addr[3];
	ctx->user_port = gport;
	bpf_map_update_elem(&kvx_hostrev6, &rk, &rv, BPF_ANY);
	return 1;
}

static __always_inline int host_unnat6(struct bpf_sock_addr *ctx)
{
	struct kvx_hostrev6_key rk = {};
	struct kvx_hostrev6_val *rv;

	if (!host_ours(ctx))
		return 1;
	rk.sock_cookie = bpf_get_socket_cookie(ctx);
	rk.guest_addr[0] = ctx->user_ip6[0];
	rk.guest_addr[1] = ctx->user_ip6[1];
	rk.guest_addr[2] = ctx->user_ip6[2];
	rk.guest_addr[3] = ctx->user_ip6[3];
	rk.guest_port = (__be16)ctx->user_port;
	rk.proto = (__u8)ctx->protocol;
	rv = bpf_map_lookup_elem(&kvx_hostrev6, &rk);
	if (rv) {
		ctx->user_ip6[0] = rv->ext_addr[0];
		ctx->user_ip6[1] = rv->ext_addr[1];
		ctx->user_ip6[2] = rv->ext_addr[2];
		ctx->user_ip6[3] = rv->ext_addr[3];
		ctx->user_port = rv->ext_port;
	}
	return 1;
}

SEC("cgroup/connect6")
int kvx_host_conn6(struct bpf_sock_addr *ctx)
{
	return host_dnat6(ctx);
}

SEC("cgroup/sendmsg6")
int kvx_host_send6(struct bpf_sock_addr *ctx)
{
	return host_dnat6(ctx);
}

SEC("cgroup/recvmsg6")
int kvx_host_recv6(struct bpf_sock_addr *ctx)
{
	return host_unnat6(ctx);
}

SEC("cgroup/getpeername6")
int kvx_host_peer6(struct bpf_sock_addr *ctx)
{
	return host_unnat6(ctx);
}

/* TCP connect() and UDP connect(). */
SEC("cgroup/connect4")
int kvx_host_conn4(struct bpf_sock_addr *ctx)
{
	return host_dnat(ctx);
}

/* Unconnected UDP sendto()/sendmsg(). */
SEC("cgroup/sendmsg4")
int kvx_host_send4(struct bpf_sock_addr *ctx)
{
	return host_dnat(ctx);
}

/* The source address recvfrom()/recvmsg() report for a UDP reply. */
SEC("cgroup/recvmsg4")
int kvx_host_recv4(struct bpf_sock_addr *ctx)
{
	return host_unnat(ctx);
}

/* getpeername() of a connected socket. */
SEC("cgroup/getpeername4")
int kvx_host_peer4(struct bpf_sock_addr *ctx)
{
	return host_unnat(ctx);
}

char LICENSE[] SEC("license") = "GPL";
