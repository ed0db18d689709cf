/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wire layouts that the kernel's uapi headers cannot give a BPF object
 * without libc.  <linux/icmp.h> includes <linux/if.h>, which includes
 * glibc's <sys/socket.h>; compiled for --target=bpf (no __x86_64__ or
 * __aarch64__), glibc then asks for its 32-bit stubs (gnu/stubs-32.h), which
 * only a machine with libc6-dev-i386 has.  The BPF objects are built with
 * -nostdinc against the uapi directories alone (cmake/BpfObject.cmake), so
 * anything that reaches libc is a build error on every machine, not only on
 * a fresh one.  The ICMP header is RFC 792's; the field names match the
 * uapi's struct icmphdr so the code reads the same.
 */
#ifndef KVX_PROTO_H
#define KVX_PROTO_H

#include <linux/types.h>

#define ICMP_ECHOREPLY 0      /* RFC 792 echo reply */
#define ICMP_DEST_UNREACH 3   /* destination unreachable */
#define ICMP_ECHO 8           /* echo request */
#define ICMP_TIME_EXCEEDED 11 /* time exceeded */
#define ICMP_PARAMETERPROB 12 /* parameter problem */
#define ICMP_SOURCE_QUENCH 4  /* (deprecated) errors too: never answered */
#define ICMP_REDIRECT 5
#define NR_ICMP_TYPES 18      /* types above are unknown: never answered */

/* Codes of the errors kvmxdp sends itself. */
#define ICMP_NET_UNREACH 0    /* destination unreachable: network */
#define ICMP_FRAG_NEEDED 4    /* destination unreachable: fragmentation needed */
#define ICMP_PKT_FILTERED 13  /* destination unreachable: administratively prohibited */
#define ICMP_EXC_TTL 0        /* time exceeded in transit */

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
		struct {
			__be16 __unused;
			__be16 mtu;
		} frag;
	} un;
};

/*
 * IPv6 (RFC 8200) and ICMPv6 (RFC 4443): <linux/ipv6.h> and <linux/icmpv6.h>
 * reach libc through <linux/in6.h> as <linux/icmp.h> does.
 */
#define KVX_IPPROTO_HOPOPTS 0   /* hop-by-hop options */
#define KVX_IPPROTO_ROUTING 43  /* routing header */
#define KVX_IPPROTO_FRAGMENT 44 /* fragment header */
#define KVX_IPPROTO_ESP 50
#define KVX_IPPROTO_AH 51
#define KVX_IPPROTO_ICMPV6 58
#define KVX_IPPROTO_NONE 59     /* no next header */
#define KVX_IPPROTO_DSTOPTS 60  /* destination options */
#define KVX_IPPROTO_MH 135      /* mobility header (RFC 6275) */
#define KVX_IPPROTO_HIP 139     /* RFC 7401 */
#define KVX_IPPROTO_SHIM6 140   /* RFC 5533 */
#define KVX_IPPROTO_EXP1 253    /* experiments (RFC 3692): headers too */
#define KVX_IPPROTO_EXP2 254

#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_MLD_QUERY 130    /* 130..132: MLD (RFC 2710) */
#define ICMPV6_MLD_DONE 132
#define ICMPV6_ROUTER_SOL 133   /* 133..137: ND (RFC 4861) */
#define ICMPV6_REDIRECT 137
#define ICMPV6_MLD2_REPORT 143  /* RFC 3810 */

struct kvx_ipv6hdr {
	__u8 ver_tc;      /* version (4 bits), traffic class high nibble */
	__u8 tc_flow;
	__be16 flow_lo;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};

struct kvx_icmp6hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;  /* echo: the identifier */
	__be16 seq;
};

#endif /* KVX_PROTO_H */
