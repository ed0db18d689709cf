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

#endif /* KVX_PROTO_H */
