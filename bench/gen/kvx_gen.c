// SPDX-License-Identifier: GPL-2.0
/*
 * kvx-gen: packet generator and counting sink for bench/run.sh.
 *
 *   kvx-gen gen  --dev IF --src-mac M --dst-mac M --src IP --dst IP
 *                [--sport P] [--dport P] [--flows N] [--len BYTES]
 *                [--seconds S] [--cpu N]
 *       Transmits one prebuilt UDP frame over and over out of IF with
 *       BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES (XDP_TX on IF), one huge
 *       run stopped by SIGALRM after S seconds.  --flows N spreads the frames
 *       over N (sport, dport) pairs.  Prints one JSON line.
 *   kvx-gen sink --dev IF --dst IP [--src IP] [--dport-lo P --dport-hi P]
 *       Attaches a counting XDP_DROP program to IF (UDP to --dst from --src,
 *       so untranslated leaks are not counted); prints "ready", then for
 *       every line read on stdin prints "<monotonic ns> <count>"; detaches on
 *       EOF, SIGINT or SIGTERM.
 *   kvx-gen proginfo ID
 *       Prints a loaded program's verified instruction count and sizes
 *       (bpftool 7.1 does not show verified_insns).
 *
 * UDP sockets (sendmmsg, ~0.3 Mpps) and AF_PACKET (~0.75 Mpps) are too slow
 * to saturate an XDP path; the live-frames test run does 6-8 Mpps per core.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/ether.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "kvx_gen_bpf.skel.h"

#define HDR_LEN (14 + 20 + 8)
#define MAX_LEN 1514

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "kvx-gen: error: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t csum_add(uint32_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)((p[i] << 8) | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Sums are kept in network byte order words read big-endian above; the BPF
 * side adds the raw (network order) port fields, so convert at the end. */
static uint32_t be_sum_to_raw(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)sum);
}

static struct option gen_opts[] = {
	{"dev", required_argument, 0, 'd'},	 {"src-mac", required_argument, 0, 'm'},
	{"dst-mac", required_argument, 0, 'M'},	 {"src", required_argument, 0, 's'},
	{"dst", required_argument, 0, 'D'},	 {"sport", required_argument, 0, 'p'},
	{"dport", required_argument, 0, 'P'},	 {"flows", required_argument, 0, 'f'},
	{"len", required_argument, 0, 'l'},	 {"seconds", required_argument, 0, 't'},
	{"cpu", required_argument, 0, 'c'},	 {"dport-lo", required_argument, 0, 'L'},
	{"dport-hi", required_argument, 0, 'H'}, {0, 0, 0, 0},
};

struct args {
	const char *dev;
	struct ether_addr smac, dmac;
	struct in_addr src, dst;
	unsigned sport, dport, flows, len, dport_lo, dport_hi;
	double seconds;
	int cpu;
};

static void parse(int argc, char **argv, struct args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	a->sport = 10000;
	a->dport = 9000;
	a->flows = 1;
	a->len = 60;
	a->seconds = 5;
	a->cpu = -1;
	a->dport_lo = 0;
	a->dport_hi = 65535;
	while ((c = getopt_long(argc, argv, "", gen_opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			a->dev = optarg;
			break;
		case 'm':
			if (!ether_aton_r(optarg, &a->smac))
				die("bad --src-mac", EINVAL);
			break;
		case 'M':
			if (!ether_aton_r(optarg, &a->dmac))
				die("bad --dst-mac", EINVAL);
			break;
		case 's':
			if (inet_pton(AF_INET, optarg, &a->src) != 1)
				die("bad --src", EINVAL);
			break;
		case 'D':
			if (inet_pton(AF_INET, optarg, &a->dst) != 1)
				die("bad --dst", EINVAL);
			break;
		case 'p':
			a->sport = (unsigned)atoi(optarg);
			break;
		case 'P':
			a->dport = (unsigned)atoi(optarg);
			break;
		case 'f':
			a->flows = (unsigned)atoi(optarg);
			break;
		case 'l':
			a->len = (unsigned)atoi(optarg);
			break;
		case 't':
			a->seconds = atof(optarg);
			break;
		case 'c':
			a->cpu = atoi(optarg);
			break;
		case 'L':
			a->dport_lo = (unsigned)atoi(optarg);
			break;
		case 'H':
			a->dport_hi = (unsigned)atoi(optarg);
			break;
		default:
			exit(2);
		}
	}
	if (!a->dev)
		die("--dev is required", EINVAL);
	if (a->len < HDR_LEN || a->len > MAX_LEN)
		die("--len out of range 42..1514", EINVAL);
	if (a->flows < 1)
		a->flows = 1;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static int cmd_gen(struct args *a)
{
	uint8_t frame[MAX_LEN] = {0};
	struct ethhdr *eth = (void *)frame;
	struct iphdr *ip = (void *)(frame + 14);
	struct udphdr *udp = (void *)(frame + 34);
	struct kvx_gen_bpf *skel;
	struct xdp_md ctx = {0};
	unsigned ifindex, sport_span;
	uint32_t sum;
	uint64_t t0, t1, frames;
	struct sigaction sa;
	int err, runs = 0;

	ifindex = if_nametoindex(a->dev);
	if (!ifindex)
		die(a->dev, errno);
	if (a->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(a->cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("sched_setaffinity", errno);
	}

	memcpy(eth->h_dest, &a->dmac, 6);
	memcpy(eth->h_source, &a->smac, 6);
	eth->h_proto = htons(0x0800);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons((uint16_t)(a->len - 14));
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = a->src.s_addr;
	ip->daddr = a->dst.s_addr;
	ip->check = htons(csum_fold(csum_add(0, ip, 20)));
	udp->len = htons((uint16_t)(a->len - 34));
	memset(frame + HDR_LEN, 0x5a, a->len - HDR_LEN);

	/* UDP checksum without the ports: pseudo header + header + payload. */
	sum = csum_add(0, &ip->saddr, 8);
	sum += IPPROTO_UDP + (uint32_t)(a->len - 34);
	sum = csum_add(sum, udp, 8);
	sum = csum_add(sum, frame + HDR_LEN, a->len - HDR_LEN);

	sport_span = a->flows < 16 ? a->flows : 16;
	if (a->flows % sport_span)
		die("--flows must be < 16 or a multiple of 16", EINVAL);
	if (a->sport + sport_span > 65536 || a->dport + a->flows / sport_span > 65536)
		die("--flows too large for the port bases", EINVAL);

	libbpf_set_print(libbpf_quiet);
	skel = kvx_gen_bpf__open();
	if (!skel)
		die("open BPF object", errno);
	memcpy(skel->bss->gen_hdr, frame, HDR_LEN);
	skel->bss->gen_csum_base = be_sum_to_raw(sum);
	skel->data->gen_sport_span = sport_span;
	skel->data->gen_nflows = a->flows;
	skel->bss->gen_sport_base = (uint16_t)a->sport;
	skel->bss->gen_dport_base = (uint16_t)a->dport;
	bpf_program__set_autoload(skel->progs.kvx_sink, false);
	err = kvx_gen_bpf__load(skel);
	if (err)
		die("load BPF object", err);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: the test run returns -EINTR */
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	ctx.ingress_ifindex = ifindex;
	ctx.data_end = a->len; /* the kernel wants data_end == data_size_in */
	t0 = now_ns();
	{
		struct itimerspec it = {0};
		timer_t tm;
		struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM};

		it.it_value.tv_sec = (time_t)a->seconds;
		it.it_value.tv_nsec = (long)((a->seconds - (double)(time_t)a->seconds) * 1e9);
		if (timer_create(CLOCK_MONOTONIC, &sev, &tm) || timer_settime(tm, 0, &it, NULL))
			die("timer", errno);
	}
	while (!stop) {
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = a->len,
			    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1u << 31,
			    .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = 64);

		err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.kvx_gen), &opts);
		runs++;
		if (err && errno != EINTR && err != -EINTR)
			die("BPF_PROG_RUN live frames", errno);
	}
	t1 = now_ns();
	frames = skel->bss->gen_frames;
	printf("{\"frames\": %llu, \"seconds\": %.6f, \"pps\": %.1f, \"len\": %u, \"flows\": %u, \"runs\": %d}\n",
	       (unsigned long long)frames, (double)(t1 - t0) / 1e9,
	       (double)frames / ((double)(t1 - t0) / 1e9), a->len, a->flows, runs);
	fflush(stdout);
	kvx_gen_bpf__destroy(skel);
	return 0;
}

static int cmd_sink(struct args *a)
{
	struct kvx_gen_bpf *skel;
	unsigned ifindex;
	int err, ncpu, fd;
	char line[64];
	struct sigaction sa;
	uint64_t *vals;

	ifindex = if_nametoindex(a->dev);
	if (!ifindex)
		die(a->dev, errno);
	libbpf_set_print(libbpf_quiet);
	skel = kvx_gen_bpf__open();
	if (!skel)
		die("open BPF object", errno);
	skel->bss->sink_daddr = a->dst.s_addr;
	skel->bss->sink_saddr = a->src.s_addr; /* --src: count only this source */
	skel->bss->sink_dport_lo = (uint16_t)a->dport_lo;
	skel->data->sink_dport_hi = (uint16_t)a->dport_hi;
	bpf_program__set_autoload(skel->progs.kvx_gen, false);
	err = kvx_gen_bpf__load(skel);
	if (err)
		die("load BPF object", err);
	err = bpf_xdp_attach((int)ifindex, bpf_program__fd(skel->progs.kvx_sink),
			     XDP_FLAGS_DRV_MODE, NULL);
	if (err)
		die("attach XDP sink", err);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);

	ncpu = libbpf_num_possible_cpus();
	vals = calloc((size_t)ncpu, sizeof(*vals));
	fd = bpf_map__fd(skel->maps.sink_cnt);
	printf("ready\n");
	fflush(stdout);
	while (!stop && fgets(line, sizeof(line), stdin)) {
		uint32_t zero = 0;
		uint64_t total = 0;
		int i;

		if (bpf_map_lookup_elem(fd, &zero, vals) == 0)
			for (i = 0; i < ncpu; i++)
				total += vals[i];
		printf("%llu %llu\n", (unsigned long long)now_ns(), (unsigned long long)total);
		fflush(stdout);
	}
	bpf_xdp_detach((int)ifindex, XDP_FLAGS_DRV_MODE, NULL);
	kvx_gen_bpf__destroy(skel);
	free(vals);
	return 0;
}

/* bpftool 7.1 does not print verified_insns: read bpf_prog_info directly. */
static int cmd_proginfo(const char *id_str)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int fd;

	memset(&info, 0, sizeof(info));
	fd = bpf_prog_get_fd_by_id((__u32)strtoul(id_str, NULL, 0));
	if (fd < 0)
		die("bpf_prog_get_fd_by_id", errno);
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		die("bpf_obj_get_info_by_fd", errno);
	printf("{\"id\": %u, \"name\": \"%s\", \"verified_insns\": %u, \"bytes_xlated\": %u, "
	       "\"bytes_jited\": %u}\n",
	       info.id, info.name, info.verified_insns, info.xlated_prog_len, info.jited_prog_len);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct args a;

	if (argc == 3 && !strcmp(argv[1], "proginfo"))
		return cmd_proginfo(argv[2]);

	if (argc < 2) {
		fprintf(stderr, "usage: kvx-gen gen|sink [options] (see the source header)\n");
		return 2;
	}
	parse(argc - 1, argv + 1, &a);
	if (!strcmp(argv[1], "gen"))
		return cmd_gen(&a);
	if (!strcmp(argv[1], "sink"))
		return cmd_sink(&a);
	fprintf(stderr, "kvx-gen: error: unknown command '%s'\n", argv[1]);
	return 2;
}
