/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Helpers shared by the BPF programs (profile, lifecycle, offcpu, runqlat, tcp). Kernel side only. */
#ifndef __EBPFPROF_COMMON_BPF_H
#define __EBPFPROF_COMMON_BPF_H

#include <bpf/bpf_core_read.h>

/* include/linux/sched.h; not in vmlinux.h because it is a #define. */
#define PF_KTHREAD 0x00200000
#define TASK_RUNNING 0

/* task_struct::state was renamed __state in Linux 5.14 (commit 2f064a59a11f). */
struct task_struct___pre_5_14 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return (unsigned int)BPF_CORE_READ((struct task_struct___pre_5_14 *)t, state);
}

/* When the process (thread group) started, ns since boot: with the pid, it names one process even
 * when the pid is reused. /proc/PID/stat's start time is the same clock in ticks (ns / 1e7). */
static __always_inline __u64 process_start_ns(struct task_struct *t)
{
	return BPF_CORE_READ(t, group_leader, start_boottime);
}

/* self_exec_id grows at each execve (u64 since 5.7); its low 32 bits tell a process's images apart. */
static __always_inline __u32 task_exec_id(struct task_struct *t)
{
	return (__u32)BPF_CORE_READ(t, self_exec_id);
}

/* Histogram slot of v, upper-inclusive so slot k holds (2^(k-1), 2^k] and slot 0 holds [0, 1]: the
 * slots are then exactly OTLP explicit-bucket histograms with bounds 1, 2, 4, ... Values above the
 * last bound land in the last slot (the +Inf bucket). */
static __always_inline __u32 log2_slot(__u64 v, __u32 slots)
{
	__u32 r = 0;

	if (v <= 1)
		return 0;
	v--;
	/* floor(log2(v)) + 1 without loops the verifier would have to unroll. */
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	r += 1;
	return r < slots ? r : slots - 1;
}

#define STATS_MAP(name, count)                                            \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                  \
		__uint(max_entries, count);                               \
		__type(key, __u32);                                       \
		__type(value, __u64);                                     \
	} name SEC(".maps")

#define COUNT_STAT_FN(map)                                                \
	static __always_inline void count_stat(__u32 idx)                 \
	{                                                                 \
		__u64 *v = bpf_map_lookup_elem(&map, &idx);               \
		if (v)                                                    \
			(*v)++;                                           \
	}

/* A stack-trace map of `entries` stacks of MAX_STACK_DEPTH addresses (bpf_get_stackid). */
#define STACK_TRACE_MAP(name, entries)                                    \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                   \
		__uint(max_entries, entries);                             \
		__uint(key_size, sizeof(__u32));                          \
		__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));      \
	} name SEC(".maps")

#endif /* __EBPFPROF_COMMON_BPF_H */
