/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structures shared by runqlat.bpf.c and src/trace/runqlat-records.ts. */
#ifndef __EBPFPROF_RUNQLAT_H
#define __EBPFPROF_RUNQLAT_H

#define TASK_COMM_LEN 16
/* Slot k holds latencies in (2^(k-1), 2^k] ns, slot 0 [0, 1] ns; the last slot everything above
 * 2^(RUNQ_SLOTS-2) ns (about 275 s). */
#define RUNQ_SLOTS 40

#define RUNQ_START_ENTRIES 16384
#define RUNQ_PROC_ENTRIES 8192
#define RUNQ_MAX_CPUS 1024

enum runqlat_stat {
	RQ_STAT_ENQUEUED = 0,    /* wakeups and preemptions whose time was recorded */
	RQ_STAT_FILTERED,        /* wakeups of tasks outside the target process */
	RQ_STAT_LATENCIES,       /* latencies added to the histograms */
	RQ_STAT_START_FULL,      /* enqueue times lost: start map full */
	RQ_STAT_PROC_FULL,       /* latencies missing from the per-process histograms: map full */
	RQ_STAT_CPU_OUT_OF_RANGE,/* latencies missing from the per-CPU histograms: CPU >= max */
	RQ_STAT__COUNT,
};

struct runq_hist {
	__u64 slots[RUNQ_SLOTS];
	__u64 count;
	__u64 sum_ns;
	__u64 max_ns;
	char comm[TASK_COMM_LEN]; /* per process: the group leader's name when the row was created */
};

/* Key of the per-process histograms: (tgid, start) names one process even if the pid is reused. */
struct runq_proc_key {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
};

/* The control map's single value, written by user space: which histogram set programs update. */
struct runq_control {
	__u32 active_set;
	__u32 pad;
};

#endif /* __EBPFPROF_RUNQLAT_H */
