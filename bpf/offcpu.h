/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structures shared by offcpu.bpf.c and src/trace/offcpu-records.ts. */
#ifndef __EBPFPROF_OFFCPU_H
#define __EBPFPROF_OFFCPU_H

#define TASK_COMM_LEN 16
#define MAX_STACK_DEPTH 127

#define OFFCPU_STACK_ENTRIES 16384
#define OFFCPU_COUNTS_ENTRIES 16384
#define OFFCPU_START_ENTRIES 32768
#define OFFCPU_WHOLE_ENTRIES 1024
#define OFFCPU_RINGBUF_BYTES (1024 * 1024)

#define FILTER_ALL 0
#define FILTER_TARGETS 1

enum offcpu_stat {
	OC_STAT_SWITCHES = 0,    /* sched_switch events seen */
	OC_STAT_FILTERED,        /* switch-outs of tasks outside the targets (or kernel threads, idle) */
	OC_STAT_PREEMPTED,       /* switch-outs while runnable, not blocked: left out unless asked */
	OC_STAT_BLOCKS,          /* switch-outs recorded (blocked task, stacks taken) */
	OC_STAT_START_FULL,      /* blocks lost: start map full */
	OC_STAT_SHORT,           /* blocks shorter than min_block_ns, left out */
	OC_STAT_AGGREGATED,      /* blocks added to the counts map */
	OC_STAT_LATE,            /* blocks whose stack ids belong to an earlier drain window: ring buffer */
	OC_STAT_KSTACK_COLLISION,/* kernel stack bucket held another stack: whole stacks kept aside */
	OC_STAT_USTACK_COLLISION,
	OC_STAT_KSTACK_ERROR,    /* kernel stack could not be read */
	OC_STAT_USTACK_ERROR,
	OC_STAT_WHOLE_FULL,      /* a collision's whole stacks found no room: the block keeps no stack */
	OC_STAT_COUNTS_FULL,     /* counts map full: sent by ring buffer */
	OC_STAT_RINGBUF_SENT,    /* blocks sent through the ring buffer (late, collision, counts full) */
	OC_STAT_RINGBUF_FULL,    /* blocks lost: ring buffer full */
	OC_STAT__COUNT,
};

/* Flags of offcpu_start.flags. */
#define OFFCPU_WHOLE_STACKS 1 /* stacks are in the whole_stacks map, not in the stack maps */

/* One thread that is blocked now: recorded when it switches out, consumed when it switches in. */
struct offcpu_start {
	__u64 ts;
	__u32 tgid;
	__u32 epoch;      /* control.epoch when the stack ids were taken; set = epoch & 1 */
	__s32 kstack_id;  /* -1: none */
	__s32 ustack_id;
	__u32 exec_id;
	__u32 flags;
	char comm[TASK_COMM_LEN];
	char process_comm[TASK_COMM_LEN];
};

struct offcpu_key {
	__u32 tgid;
	__u32 tid;
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 exec_id;
};

struct offcpu_value {
	__u64 blocks;     /* how many times the thread blocked here */
	__u64 total_ns;   /* blocked time */
	char comm[TASK_COMM_LEN];
	char process_comm[TASK_COMM_LEN];
};

struct offcpu_whole {
	__u32 kstack_bytes;
	__u32 ustack_bytes;
	__u64 kstack[MAX_STACK_DEPTH];
	__u64 ustack[MAX_STACK_DEPTH];
};

/* Values of offcpu_event.type. */
#define OFFCPU_EV_IDS 1   /* stack ids in set (epoch & 1) */
#define OFFCPU_EV_WHOLE 2 /* stacks copied into the record */

/* A block that did not go to the counts map. */
struct offcpu_event {
	__u32 type;
	__u32 tgid;
	__u32 tid;
	__u32 epoch;
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 exec_id;
	__u32 pad;
	__u64 blocked_ns;
	char comm[TASK_COMM_LEN];
	char process_comm[TASK_COMM_LEN];
	struct offcpu_whole stacks; /* OFFCPU_EV_WHOLE only */
};

/* The control map's single value, written by user space at each drain. */
struct offcpu_control {
	__u32 epoch;
	__u32 pad;
};

#endif /* __EBPFPROF_OFFCPU_H */
