// SPDX-License-Identifier: GPL-2.0
// kvx-gccost: what one garbage-collection sweep of the daemon costs at a
// large table: a user-space sweep costs CPU in proportion to the table
// (docs/pitfalls.md, gc-cost).
//
//   kvx-gccost [--flows N] [--flows-per-binding F] [--sweeps S] [--prefix P] [--json]
//
// Creates standalone BPF hash maps of the ABI's kvx_ct / kvx_bind types
// (preallocated, like the pinned ones), fills them with N flows whose
// bindings are each shared by F flows (one guest socket talking to F
// remotes: endpoint-independent mapping), half of the bindings with all
// their flows expired, and runs the daemon's own sweep, gc_sweep() from
// loader/control/gc.cpp, unchanged and called as the daemon calls it (with the
// per-guest flow counters, kvx_gflows, recounted at the end):
//   sweep 1: deletes the expired half (N/2 flows, half the bindings);
//   sweeps 2..S: the steady state (N/2 live flows, nothing to delete),
//   which is what the daemon pays every Daemon::kGcIntervalMs.
// Reports wall and CPU time (user + system: most of a sweep is syscalls)
// and entries examined per CPU second.  The address plan follows
// bench/gen/kvx_ctfill.c (guests in 192.168.0.0/P, default /24 like
// libvirt's default network, remotes in 198.18/15, external addresses in
// 10.77/16), so no key is a real flow's.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "control/daemon.hpp"
#include "base/fd.hpp"
#include "control/gc.hpp"
#include "model/quota.hpp"
#include "model/timeouts.hpp"
#include "kvmxdp/abi.h"
#include "kernel/maps.hpp"

using namespace kvmxdp;

namespace {

constexpr uint64_t kSec = 1000000000ULL;

[[noreturn]] void die(const std::string &msg)
{
	std::fprintf(stderr, "kvx-gccost: error: %s\n", msg.c_str());
	std::exit(1);
}

struct Times {
	double wall_s, user_s, sys_s;
	double cpu_s() const { return user_s + sys_s; }
};

double tv(const timeval &t)
{
	return double(t.tv_sec) + double(t.tv_usec) / 1e6;
}

template <typename F>
Times measure(F f)
{
	rusage r0{}, r1{};
	timespec w0{}, w1{};
	getrusage(RUSAGE_SELF, &r0);
	clock_gettime(CLOCK_MONOTONIC, &w0);
	f();
	clock_gettime(CLOCK_MONOTONIC, &w1);
	getrusage(RUSAGE_SELF, &r1);
	return {double(w1.tv_sec - w0.tv_sec) + double(w1.tv_nsec - w0.tv_nsec) / 1e9,
		tv(r1.ru_utime) - tv(r0.ru_utime), tv(r1.ru_stime) - tv(r0.ru_stime)};
}

Fd create_map(const char *name, uint32_t key, uint32_t val, uint32_t max)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, name, key, val, max, nullptr);
	if (fd < 0)
		die(std::string("create map ") + name + " (" + std::to_string(max) +
		    " entries): " + std::strerror(errno) + " (needs root/CAP_BPF)");
	return Fd(fd);
}

template <typename K, typename V>
void insert_batch(int fd, std::vector<K> &keys, std::vector<V> &vals, const char *what)
{
	size_t done = 0;
	while (done < keys.size()) {
		__u32 cnt = static_cast<__u32>(std::min<size_t>(16384, keys.size() - done));
		if (bpf_map_update_batch(fd, &keys[done], &vals[done], &cnt, nullptr) != 0) {
			// Older kernels: one by one.
			for (__u32 i = 0; i < cnt; i++)
				if (bpf_map_update_elem(fd, &keys[done + i], &vals[done + i],
							BPF_NOEXIST))
					die(std::string("fill ") + what + ": " +
					    std::strerror(errno));
		}
		done += cnt;
	}
	keys.clear();
	keys.shrink_to_fit();
	vals.clear();
	vals.shrink_to_fit();
}

uint64_t arg_num(int &i, int argc, char **argv)
{
	if (i + 1 >= argc)
		die(std::string(argv[i]) + " needs a value");
	char *end = nullptr;
	errno = 0;
	unsigned long long v = std::strtoull(argv[++i], &end, 10);
	if (errno || !end || *end || v == 0)
		die(std::string("invalid value '") + argv[i] + "' for " + argv[i - 1]);
	return v;
}

} // namespace

int main(int argc, char **argv)
{
	uint64_t flows = 1000000, per_bind = 4, sweeps = 5, prefix = 24;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		if (a == "--flows")
			flows = arg_num(i, argc, argv);
		else if (a == "--flows-per-binding")
			per_bind = arg_num(i, argc, argv);
		else if (a == "--sweeps")
			sweeps = arg_num(i, argc, argv);
		else if (a == "--prefix")
			prefix = arg_num(i, argc, argv);
		else if (a == "--json")
			json = true;
		else
			die("usage: kvx-gccost [--flows N] [--flows-per-binding F] [--sweeps S] "
			    "[--prefix 16..24] [--json]");
	}
	if (flows > (1u << 24) || per_bind > 256 || sweeps < 2 || prefix < 16 || prefix > 24)
		die("--flows <= 16777216, --flows-per-binding <= 256, --sweeps >= 2, "
		    "--prefix 16..24");
	const uint64_t binds = (flows + per_bind - 1) / per_bind;
	// The guests: every host address of 192.168.0.0/prefix, each owned by
	// its own MAC (kvx_guest: the sweep recounts kvx_gflows per owner).
	const uint64_t nguests = (1ull << (32 - prefix)) - 2;
	if (binds > 200ull * 60000 || 20000 + binds / nguests > 65535)
		die("too many bindings for the address plan (use a shorter --prefix)");

	const kvx_timeouts t = default_timeouts();
	// A "now" far enough from boot that every expired stamp is positive.
	const uint64_t now = boottime_ns() + 10ULL * 86400 * kSec;

	Fd ct = create_map("kvx_ct", sizeof(kvx_ct_key), sizeof(kvx_ct_val),
			   static_cast<uint32_t>(flows));
	Fd bind = create_map("kvx_bind", sizeof(kvx_bind_key), sizeof(kvx_bind_val),
			     static_cast<uint32_t>(2 * binds));
	// The per-guest flow counters the daemon's sweep recounts.
	const uint32_t mask = htonl(0xffffffffu << (32 - prefix));
	int gfd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "kvx_gflows", 4, sizeof(kvx_gflows_val),
				 KVX_GFLOWS_MAX, nullptr);
	if (gfd < 0)
		die(std::string("create map kvx_gflows: ") + std::strerror(errno));
	Fd gflows(gfd);
	Fd owners = create_map("kvx_guest", sizeof(__be32), sizeof(kvx_guest_val),
			       guest_map_size(mask));
	for (uint64_t g = 0; g < nguests; g++) {
		const __be32 a = htonl(0xc0a80000u + 1 + uint32_t(g));
		kvx_guest_val v{};
		v.mac[0] = 0x52;
		v.mac[1] = 0x54;
		v.mac[4] = uint8_t(g >> 8);
		v.mac[5] = uint8_t(g);
		if (bpf_map_update_elem(owners.get(), &a, &v, BPF_NOEXIST) != 0)
			die(std::string("fill kvx_guest: ") + std::strerror(errno));
	}
	const QuotaMaps quota{gflows.get(), owners.get(), 0x5eed};

	// Binding b: guest 192.168.0.0 + 1 + b % nguests, port 20000 + b / nguests, external
	// 10.77.(b / 60000).2 port 1024 + b % 60000; every 4th one UDP.  Even b:
	// expired (flows idle past their timeout, binding idle past the grace),
	// odd b: live.
	auto guest_of = [&](uint64_t b) { return htonl(0xc0a80000u + 1 + uint32_t(b % nguests)); };
	auto gport_of = [&](uint64_t b) { return htons(uint16_t(20000 + b / nguests)); };
	auto ext_of = [](uint64_t b) { return htonl(0x0a4d0002u | uint32_t((b / 60000) << 8)); };
	auto eport_of = [](uint64_t b) { return htons(uint16_t(1024 + b % 60000)); };
	auto proto_of = [](uint64_t b) { return uint8_t(b % 4 == 3 ? IPPROTO_UDP : IPPROTO_TCP); };

	Times fill = measure([&] {
		std::vector<kvx_ct_key> keys(flows);
		std::vector<kvx_ct_val> vals(flows);
		for (uint64_t i = 0; i < flows; i++) {
			uint64_t b = i / per_bind, j = i % per_bind;
			kvx_ct_key &k = keys[i];
			kvx_ct_val &v = vals[i];
			std::memset(&k, 0, sizeof(k)); // padding is hashed
			std::memset(&v, 0, sizeof(v));
			k.proto = proto_of(b);
			k.int_addr = guest_of(b);
			k.int_port = gport_of(b);
			k.rem_addr = htonl(0xc6120000u | uint32_t(j + 1));
			k.rem_port = htons(443);
			v.ext_addr = ext_of(b);
			v.ext_port = eport_of(b);
			if (k.proto == IPPROTO_TCP) {
				v.state = KVX_CT_ESTABLISHED;
				v.flags = KVX_CT_F_SEEN_REPLY;
			} else {
				v.state = KVX_CT_UDP;
			}
			uint64_t timeout = uint64_t{ct_timeout_s(v, k.proto, t)} * kSec;
			v.created_ns = now - timeout - 60 * kSec;
			v.last_seen_ns = b % 2 == 0 ? now - timeout - 10 * kSec : now - 5 * kSec;
			v.pkts_out = v.pkts_in = 10;
		}
		insert_batch(ct.get(), keys, vals, "kvx_ct");

		std::vector<kvx_bind_key> bk(2 * binds);
		std::vector<kvx_bind_val> bv(2 * binds);
		for (uint64_t b = 0; b < binds; b++) {
			kvx_bind_key &in = bk[2 * b], &out = bk[2 * b + 1];
			kvx_bind_val &iv = bv[2 * b], &ov = bv[2 * b + 1];
			std::memset(&in, 0, sizeof(in));
			std::memset(&out, 0, sizeof(out));
			std::memset(&iv, 0, sizeof(iv));
			std::memset(&ov, 0, sizeof(ov));
			in.dir = KVX_BIND_IN;
			in.proto = proto_of(b);
			in.addr = ext_of(b);
			in.port = eport_of(b);
			iv.addr = guest_of(b);
			iv.port = gport_of(b);
			out.dir = KVX_BIND_OUT;
			out.proto = in.proto;
			out.addr = iv.addr;
			out.port = iv.port;
			ov.addr = in.addr;
			ov.port = in.port;
			iv.last_used_ns = ov.last_used_ns = now - kBindGraceNs - 60 * kSec;
		}
		insert_batch(bind.get(), bk, bv, "kvx_bind");
	});

	const uint64_t ct_n = count_entries<kvx_ct_key>(ct.get());
	const uint64_t bind_n = count_entries<kvx_bind_key>(bind.get());
	if (ct_n != flows || bind_n != 2 * binds)
		die("fill: " + std::to_string(ct_n) + " flows, " + std::to_string(bind_n) +
		    " binding entries (wanted " + std::to_string(flows) + ", " +
		    std::to_string(2 * binds) + ")");

	// Sweep 1: half of everything expired.
	SweepResult r1;
	Times s1 =
		measure([&] { r1 = gc_sweep(ct.get(), bind.get(), t, now, quota); });
	const uint64_t exp_binds = (binds + 1) / 2;
	uint64_t exp_flows = 0;
	for (uint64_t b = 0; b < binds; b += 2)
		exp_flows += std::min<uint64_t>(per_bind, flows - b * per_bind);
	if (r1.ct_deleted != exp_flows || r1.bind_deleted != 2 * exp_binds)
		die("sweep 1 deleted " + std::to_string(r1.ct_deleted) + " flows and " +
		    std::to_string(r1.bind_deleted) + " binding entries, expected " +
		    std::to_string(exp_flows) + " and " + std::to_string(2 * exp_binds));

	// Steady state: nothing expires any more.
	std::vector<Times> steady;
	for (uint64_t s = 1; s < sweeps; s++) {
		SweepResult r;
		steady.push_back(measure(
			[&] { r = gc_sweep(ct.get(), bind.get(), t, now, quota); }));
		if (r.ct_deleted || r.bind_deleted)
			die("a steady-state sweep deleted live entries");
	}
	std::sort(steady.begin(), steady.end(),
		  [](const Times &a, const Times &b) { return a.cpu_s() < b.cpu_s(); });
	const Times med = steady[steady.size() / 2];

	// Where the time goes: reading kvx_ct the way the sweep does (two
	// syscalls per entry: get_next_key + lookup) against one
	// BPF_MAP_LOOKUP_BATCH call per 4096 entries.
	size_t n_walk = 0, n_batch = 0;
	Times walk = measure([&] { n_walk = dump_hash_walk<kvx_ct_key, kvx_ct_val>(ct.get()).size(); });
	Times batch = measure([&] {
		std::vector<kvx_ct_key> keys(4096);
		std::vector<kvx_ct_val> vals(4096);
		uint64_t in_batch = 0, out_batch = 0;
		bool first = true;
		for (;;) {
			__u32 cnt = 4096;
			int err = bpf_map_lookup_batch(ct.get(), first ? nullptr : &in_batch,
						       &out_batch, keys.data(), vals.data(), &cnt,
						       nullptr);
			first = false;
			n_batch += cnt;
			if (err) {
				if (errno != ENOENT)
					die(std::string("lookup batch: ") + std::strerror(errno));
				break;
			}
			in_batch = out_batch;
		}
	});
	if (n_walk != n_batch)
		die("the two reads of kvx_ct disagree: " + std::to_string(n_walk) + " vs " +
		    std::to_string(n_batch));

	const uint64_t seen1 = ct_n + bind_n;
	const uint64_t seen2 = (ct_n - r1.ct_deleted) + (bind_n - r1.bind_deleted);
	const double interval_s = Daemon::kGcIntervalMs / 1000.0;
	if (json) {
		std::printf(
			"{\"flows\":%llu,\"flows_per_binding\":%llu,\"prefix\":%llu,"
			"\"binding_entries\":%llu,"
			"\"fill_s\":%.3f,"
			"\"sweep1\":{\"examined\":%llu,\"ct_deleted\":%zu,\"bind_deleted\":%zu,"
			"\"wall_s\":%.3f,\"user_s\":%.3f,\"sys_s\":%.3f,"
			"\"examined_per_cpu_s\":%.0f},"
			"\"steady\":{\"examined\":%llu,\"sweeps\":%zu,\"wall_s\":%.3f,"
			"\"user_s\":%.3f,\"sys_s\":%.3f,\"examined_per_cpu_s\":%.0f,"
			"\"core_share_at_interval\":%.4f,\"interval_s\":%.1f},"
			"\"read_ct\":{\"entries\":%zu,\"walk_cpu_s\":%.3f,\"batch_cpu_s\":%.3f}}\n",
			(unsigned long long)flows, (unsigned long long)per_bind,
			(unsigned long long)prefix, (unsigned long long)bind_n, fill.wall_s,
			(unsigned long long)seen1, r1.ct_deleted, r1.bind_deleted, s1.wall_s,
			s1.user_s, s1.sys_s, double(seen1) / s1.cpu_s(), (unsigned long long)seen2,
			steady.size(), med.wall_s, med.user_s, med.sys_s,
			double(seen2) / med.cpu_s(), med.cpu_s() / interval_s, interval_s, n_walk,
			walk.cpu_s(), batch.cpu_s());
		return 0;
	}
	std::printf("tables: %llu flows (%llu per binding) of %llu guests (/%llu), %llu binding "
		    "entries; filled in %.2f s\n",
		    (unsigned long long)flows, (unsigned long long)per_bind,
		    (unsigned long long)nguests, (unsigned long long)prefix,
		    (unsigned long long)bind_n, fill.wall_s);
	std::printf("sweep 1 (half expired): examined %llu entries, deleted %zu flows + %zu "
		    "binding entries\n"
		    "  wall %.3f s, CPU %.3f s (user %.3f, sys %.3f): %.2f M entries/CPU-s\n",
		    (unsigned long long)seen1, r1.ct_deleted, r1.bind_deleted, s1.wall_s,
		    s1.cpu_s(), s1.user_s, s1.sys_s, double(seen1) / s1.cpu_s() / 1e6);
	std::printf("steady sweep (median of %zu, nothing expired): examined %llu entries\n"
		    "  wall %.3f s, CPU %.3f s (user %.3f, sys %.3f): %.2f M entries/CPU-s\n"
		    "  every %.1f s (the daemon's GC interval): %.1f%% of one core\n",
		    steady.size(), (unsigned long long)seen2, med.wall_s, med.cpu_s(), med.user_s,
		    med.sys_s, double(seen2) / med.cpu_s() / 1e6, interval_s,
		    100.0 * med.cpu_s() / interval_s);
	std::printf("reading the %zu flows of kvx_ct: get_next_key + lookup %.3f CPU-s, "
		    "lookup_batch(4096) %.3f CPU-s (%.0fx)\n",
		    n_walk, walk.cpu_s(), batch.cpu_s(),
		    batch.cpu_s() > 0 ? walk.cpu_s() / batch.cpu_s() : 0.0);
	return 0;
}
