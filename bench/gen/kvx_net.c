// SPDX-License-Identifier: GPL-2.0
/*
 * kvx-net: socket workloads for bench/run.sh (netperf is not in Debian main).
 *
 *   kvx-net rr-server  --port P              UDP echo server
 *   kvx-net rr-client  --dst IP --port P --seconds S
 *       one request in flight; prints RTT percentiles (microseconds) as JSON
 *   kvx-net crr-server --port P [--dst IP]   TCP: accept and close at once
 *       (on IP, IPv4 or IPv6; all IPv4 addresses without it)
 *   kvx-net crr-client --dst IP --port P --seconds S [--parallel K] [--close rst|fin]
 *       K connections in flight (non-blocking connect, epoll); each is
 *       closed as soon as it is established: rst (the default), with
 *       SO_LINGER 0, so the client leaves no TIME_WAIT; fin, once the
 *       server's FIN (crr-server closes at once) is in, so both sides close
 *       with FIN, the server first (it holds the TIME_WAIT, the client's
 *       port is free again at once, as a browser's after an HTTP/1.0
 *       response); prints connections/s as JSON
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *opt_dst = "127.0.0.1";
static int opt_port = 7777;
static double opt_seconds = 3;
static int opt_parallel = 16;
static int opt_size = 32;
static int opt_close_fin;
/* crr-client --close fin: the connections waiting for the server's FIN. */
static unsigned char crr_closing[1 << 20];

static void die(const char *what)
{
	fprintf(stderr, "kvx-net: error: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --dst for the TCP workloads, either family: its length. */
static socklen_t dst_sockaddr(struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET6, opt_dst, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)opt_port);
		return sizeof(*s6);
	}
	if (inet_pton(AF_INET, opt_dst, &s4->sin_addr) != 1) {
		errno = EINVAL;
		die("--dst");
	}
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)opt_port);
	return sizeof(*s4);
}

static struct sockaddr_in dst_addr(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};

	if (inet_pton(AF_INET, opt_dst, &sa.sin_addr) != 1) {
		errno = EINVAL;
		die("--dst");
	}
	return sa;
}

static __attribute__((noreturn)) void rr_server(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
	char buf[2048];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("rr-server bind");
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);

		if (n > 0)
			sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int rr_client(void)
{
	struct sockaddr_in sa = dst_addr();
	size_t cap = 1 << 20, n = 0;
	uint64_t *rtt = malloc(cap * sizeof(*rtt)), end, seq = 0, lost = 0;
	char buf[2048] = {0};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (!rtt || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("rr-client connect");
	end = now_ns() + (uint64_t)(opt_seconds * 1e9);
	while (now_ns() < end && n < cap) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t t0 = now_ns(), got;

		seq++;
		memcpy(buf, &seq, sizeof(seq));
		if (send(fd, buf, (size_t)opt_size, 0) < 0) {
			lost++;
			continue;
		}
		for (;;) {
			if (poll(&p, 1, 200) <= 0) {
				lost++;
				break;
			}
			if (recv(fd, buf, sizeof(buf), 0) < (ssize_t)sizeof(seq))
				continue;
			memcpy(&got, buf, sizeof(got));
			if (got == seq) {
				rtt[n++] = now_ns() - t0;
				break;
			}
		}
	}
	qsort(rtt, n, sizeof(*rtt), cmp_u64);
#define PCT(q) (n ? (double)rtt[(size_t)((double)(n - 1) * (q))] / 1000.0 : -1.0)
	printf("{\"samples\": %zu, \"lost\": %llu, \"min_us\": %.2f, \"p50_us\": %.2f, "
	       "\"p90_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f}\n",
	       n, (unsigned long long)lost, PCT(0.0), PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0));
	return 0;
}

static __attribute__((noreturn)) void crr_server(int any)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int one = 1, fd;

	if (any) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;

		memset(&sa, 0, sizeof(sa));
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)opt_port);
		len = sizeof(*s4);
	} else {
		len = dst_sockaddr(&sa);
	}
	fd = socket(sa.ss_family, SOCK_STREAM, 0);
	signal(SIGPIPE, SIG_IGN);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, len) || listen(fd, 4096))
		die("crr-server listen");
	for (;;) {
		int c = accept(fd, NULL, NULL);

		if (c >= 0)
			close(c);
	}
}

static int crr_start(int ep, const struct sockaddr_storage *sa, socklen_t len)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct epoll_event ev = {.events = EPOLLOUT};
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		die("socket");
	if ((unsigned)fd >= sizeof(crr_closing))
		die("fd out of range");
	crr_closing[fd] = 0;
	/* RST on close: no TIME_WAIT, the guest's ports stay available. */
	if (!opt_close_fin)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(fd, (const struct sockaddr *)sa, len) && errno != EINPROGRESS)
		die("connect");
	ev.data.u64 = ((uint64_t)now_ns() << 20) | (uint64_t)fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		die("epoll_ctl");
	return fd;
}

static int crr_client(void)
{
	struct sockaddr_storage sa;
	socklen_t len = dst_sockaddr(&sa);
	uint64_t ok = 0, failed = 0, slow = 0, t_start, end;
	struct epoll_event evs[256];
	int ep = epoll_create1(0), i;

	signal(SIGPIPE, SIG_IGN);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < opt_parallel; i++)
		crr_start(ep, &sa, len);
	t_start = now_ns();
	end = t_start + (uint64_t)(opt_seconds * 1e9);
	while (now_ns() < end) {
		int n = epoll_wait(ep, evs, 256, 100);

		for (i = 0; i < n; i++) {
			int fd = (int)(evs[i].data.u64 & 0xfffff), soerr = 0;
			socklen_t l = sizeof(soerr);
			uint64_t started = evs[i].data.u64 >> 20;

			if (crr_closing[fd]) {
				/* The server's FIN (or an error): close, a FIN
				 * (a RST if it sent data: it sends none). */
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				crr_start(ep, &sa, len);
				continue;
			}
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
			if (soerr)
				failed++;
			else
				ok++;
			/* Took longer than a SYN retransmission: a SYN was lost. */
			if (((now_ns() & ((1ull << 44) - 1)) - started) > 900000000ull)
				slow++;
			if (opt_close_fin && !soerr) {
				struct epoll_event w = {.events = EPOLLIN | EPOLLRDHUP,
							.data.u64 = evs[i].data.u64};

				crr_closing[fd] = 1;
				if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &w))
					die("epoll_ctl");
				continue;
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
			crr_start(ep, &sa, len);
		}
	}
	printf("{\"connections\": %llu, \"failed\": %llu, \"slow\": %llu, \"seconds\": %.3f, "
	       "\"cps\": %.1f}\n",
	       (unsigned long long)ok, (unsigned long long)failed, (unsigned long long)slow,
	       (double)(now_ns() - t_start) / 1e9,
	       (double)ok / ((double)(now_ns() - t_start) / 1e9));
	return 0;
}

int main(int argc, char **argv)
{
	int i, dst_given = 0;

	if (argc < 2) {
		fprintf(stderr,
			"usage: kvx-net rr-server|rr-client|crr-server|crr-client [opts]\n");
		return 2;
	}
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--dst")) {
			opt_dst = argv[i + 1];
			dst_given = 1;
		} else if (!strcmp(argv[i], "--port"))
			opt_port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			opt_seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--parallel"))
			opt_parallel = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--size"))
			opt_size = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--close")) {
			if (strcmp(argv[i + 1], "rst") && strcmp(argv[i + 1], "fin")) {
				fprintf(stderr,
					"kvx-net: error: --close must be rst or fin, not '%s'\n",
					argv[i + 1]);
				return 2;
			}
			opt_close_fin = !strcmp(argv[i + 1], "fin");
		} else {
			fprintf(stderr, "kvx-net: error: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (opt_size < 8 || opt_size > 1400) {
		fprintf(stderr, "kvx-net: error: --size must be 8..1400\n");
		return 2;
	}
	if (!strcmp(argv[1], "rr-server"))
		rr_server();
	if (!strcmp(argv[1], "rr-client"))
		return rr_client();
	if (!strcmp(argv[1], "crr-server"))
		crr_server(!dst_given);
	if (!strcmp(argv[1], "crr-client"))
		return crr_client();
	fprintf(stderr, "kvx-net: error: unknown command '%s'\n", argv[1]);
	return 2;
}
