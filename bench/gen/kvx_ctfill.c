// SPDX-License-Identifier: GPL-2.0
/*
 * kvx-ctfill: pre-fills a pinned kvx_ct map with N idle-but-live flows so the
 * benchmark can measure lookups in a big table.
 *
 *   kvx-ctfill PIN_PATH N
 *
 * The filler flows are established TCP flows of guests 192.168.123.x..
 * (outside the benchmark's own flows, so no key collides with real
 * traffic), last seen now (CLOCK_BOOTTIME, as the datapath stamps them) so
 * that no garbage collector expires them during the run.  Inserted with
 * BPF_MAP_UPDATE_BATCH in chunks (keys never collide with real flows: the
 * guests 192.168.123.x do not exist).  Prints the number inserted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <netinet/in.h>

#include "kvmxdp/abi.h"

_Static_assert(sizeof(struct kvx_ct_key) == 16, "kvx_ct_key layout");
_Static_assert(sizeof(struct kvx_ct_val) == 80, "kvx_ct_val layout");

#define CHUNK 16384

int main(int argc, char **argv)
{
	struct kvx_ct_key *keys;
	struct kvx_ct_val *vals;
	struct timespec ts;
	unsigned long n, done = 0;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: kvx-ctfill PIN_PATH N\n");
		return 2;
	}
	n = strtoul(argv[2], NULL, 0);
	fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "kvx-ctfill: error: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	keys = calloc(CHUNK, sizeof(*keys));
	vals = calloc(CHUNK, sizeof(*vals));
	if (!keys || !vals)
		return 1;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	while (done < n) {
		__u32 cnt = 0, i;
		int err;

		for (i = 0; i < CHUNK && done + i < n; i++) {
			unsigned long k = done + i;
			struct kvx_ct_key *key = &keys[i];
			struct kvx_ct_val *val = &vals[i];

			memset(key, 0, sizeof(*key)); /* padding is hashed */
			memset(val, 0, sizeof(*val));
			/* 192.168.123.0/24 guests x 198.18.0.0/15 remotes x ports */
			key->int_addr = htonl(0xc0a87b00u | (__u32)(k & 0xff));
			key->rem_addr = htonl(0xc6120000u | (__u32)((k >> 8) & 0x1ffff));
			key->int_port = htons((__u16)(20000 + ((k >> 25) & 0x3ff)));
			key->rem_port = htons(443);
			key->proto = IPPROTO_TCP;
			val->last_seen_ns = (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
			val->created_ns = val->last_seen_ns;
			val->ext_addr = htonl(0x0a4d0002u);
			val->ext_port = htons((__u16)(1024 + (k % 60000)));
			val->state = KVX_CT_ESTABLISHED;
			val->flags = KVX_CT_F_SEEN_REPLY;
			cnt++;
		}
		{
			LIBBPF_OPTS(bpf_map_batch_opts,
				    opts); /* elem_flags: only BPF_F_LOCK allowed */
			__u32 c = cnt;

			err = bpf_map_update_batch(fd, keys, vals, &c, &opts);
			done += c;
			if (err) {
				fprintf(stderr, "kvx-ctfill: error: update batch after %lu: %s\n",
					done, strerror(errno));
				printf("%lu\n", done);
				return 1;
			}
		}
	}
	printf("%lu\n", done);
	return 0;
}
