/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The flows' clock: CLOCK_BOOTTIME in ns (abi.h), read at most once per
 * jiffy on each CPU.
 *
 * bpf_ktime_get_boot_ns() reads the clocksource on every call; in a KVM
 * guest (kvm-clock, pvclock) that was ~25 ns per packet, a fifth of the
 * bridge program's cost (bench/tcprof).  The timestamps only feed timeouts
 * of seconds (GC, reclaim) and a 100 ms hold-off, so a reading up to one
 * jiffy old (1-10 ms) serves as well: each CPU keeps its last reading with
 * the jiffies count it was taken at, and reads the clock again once jiffies
 * moved on (bpf_jiffies64() is a load of jiffies_64; the tick, or the
 * interrupt that ends a NOHZ idle period, keeps it current).  A cached value
 * is never ahead of the clock, and never from an earlier jiffy than now.
 * One exception: jiffies do not count a suspend, so in the first tick after
 * a resume a CPU may still use its reading from before the suspend; the
 * flows it touches then look idle since the suspend until their next packet.
 *
 * Per CPU, in .bss (not a map: nothing to pin; static: not in the
 * skeleton), indexed by the CPU id: a program runs with migration
 * disabled, and the only writer of a slot is its CPU.  A program
 * interrupted on the same CPU (softirq over a process-context run) can
 * leave a slot with the jiffies of one reading and the ns of a later one;
 * such a slot either matches a later jiffy (it is never used: the jiffies
 * moved on) or holds a reading of that very jiffy.  ns is written before
 * jiffies so a slot never claims a jiffy its reading is older than.
 */
#ifndef KVX_CLOCK_H
#define KVX_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define KVX_CLOCK_CPUS 256 /* a power of 2; beyond: the clock is read every time */

/* Hides a value from the compiler's range analysis, so that a mask after a
 * bounds test survives for the verifier. */
#define kvx_index_barrier(v) asm volatile("" : "+r"(v))

struct kvx_clock_slot {
	__u64 jiffies;
	__u64 ns;
};

static struct kvx_clock_slot kvx_clock[KVX_CLOCK_CPUS];

static __always_inline __u64 clock_now_ns(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 j = bpf_jiffies64();
	struct kvx_clock_slot *s;
	__u64 now;

	if (cpu >= KVX_CLOCK_CPUS)
		return bpf_ktime_get_boot_ns();
	/* Masked again behind a barrier: 6.1's verifier does not carry the
	 * bound of the test above over the register copy clang makes. */
	kvx_index_barrier(cpu);
	s = &kvx_clock[cpu & (KVX_CLOCK_CPUS - 1)];
	if (*(volatile __u64 *)&s->jiffies == j)
		return *(volatile __u64 *)&s->ns;
	now = bpf_ktime_get_boot_ns();
	*(volatile __u64 *)&s->ns = now;
	*(volatile __u64 *)&s->jiffies = j;
	return now;
}

#endif /* KVX_CLOCK_H */
