/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structures shared by lifecycle.bpf.c and src/process/lifecycle-records.ts. */
#ifndef __EBPFPROF_LIFECYCLE_H
#define __EBPFPROF_LIFECYCLE_H

#define TASK_COMM_LEN 16
#define LIFECYCLE_RINGBUF_BYTES (256 * 1024)

/* Values of lifecycle_event.type. */
#define LIFECYCLE_FORK 1 /* a new process (not a thread) */
#define LIFECYCLE_EXEC 2 /* a process replaced its image */
#define LIFECYCLE_EXIT 3 /* the last thread of a process ended */

enum lifecycle_stat {
	LC_STAT_FORKS = 0,
	LC_STAT_EXECS,
	LC_STAT_EXITS,
	LC_STAT_RINGBUF_FULL, /* events lost: ring buffer had no room */
	LC_STAT__COUNT,
};

struct lifecycle_event {
	__u32 type;
	__u32 pid;        /* tgid */
	__u32 ppid;       /* fork: the parent's tgid; exec/exit: the real parent's tgid */
	__u32 exec_id;    /* the image's exec id (fork: the inherited one) */
	__u64 start_ns;   /* process start, ns since boot: (pid, start_ns) names one process */
	__u64 time_ns;    /* bpf_ktime_get_ns() of the event */
	__s32 exit_code;  /* exit: the wait status (code << 8 | signal) */
	__u32 pad;
	char comm[TASK_COMM_LEN];
};

#endif /* __EBPFPROF_LIFECYCLE_H */
