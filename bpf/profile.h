/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structures shared by profile.bpf.c and the TypeScript decoders in src/sampler/records.ts. */
#ifndef __EBPFPROF_PROFILE_H
#define __EBPFPROF_PROFILE_H

#define TASK_COMM_LEN 16
/* The kernel's default perf_event_max_stack; bpf_get_stack* never returns more. */
#define MAX_STACK_DEPTH 127

/* Default sizes; the loader may override max_entries before load. */
#define STACK_MAP_ENTRIES 16384
#define COUNTS_MAP_ENTRIES 32768
#define TARGETS_MAP_ENTRIES 4096
#define SAMPLE_RINGBUF_BYTES (1024 * 1024)
#define EVENT_RINGBUF_BYTES (256 * 1024)

/* Values of filter_mode. */
#define FILTER_ALL 0     /* every task on the host */
#define FILTER_TARGETS 1 /* only tgids present in the targets map */

/* Indices of the stats per-CPU array: every sample that is not aggregated is counted here. */
enum profile_stat {
	STAT_SAMPLES = 0,          /* perf events that reached the program */
	STAT_IDLE,                 /* samples of the idle task (pid 0), not recorded */
	STAT_FILTERED,             /* samples of tasks outside the targets */
	STAT_AGGREGATED,           /* samples counted in the counts map (fast path) */
	STAT_KSTACK_COLLISION,     /* kernel stack id bucket held another stack: sent by ring buffer */
	STAT_USTACK_COLLISION,     /* user stack id bucket held another stack: sent by ring buffer */
	STAT_KSTACK_ERROR,         /* kernel stack could not be read (other than "no stack") */
	STAT_USTACK_ERROR,         /* user stack could not be read (other than "no stack") */
	STAT_COUNTS_FULL,          /* counts map had no room: sent by ring buffer */
	STAT_RINGBUF_SENT,         /* samples sent whole through the ring buffer */
	STAT_RINGBUF_FULL,         /* samples lost: ring buffer had no room */
	STAT_FORKS_FOLLOWED,       /* children added to the targets map */
	STAT_TARGETS_FULL,         /* children not followed: targets map full */
	STAT_EVENTS_FULL,          /* process events lost: events ring buffer full */
	STAT__COUNT,
};

/* Key of the counts maps: one row per (task, kernel stack, user stack). Stack ids are -1 when the
 * sample has no stack of that kind (user-mode sample has no kernel stack; kernel thread no user stack). */
struct count_key {
	__u32 tgid;
	__u32 tid;
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 exec_id; /* task->self_exec_id: which image of the process ran (it grows at each execve) */
};

struct count_value {
	__u64 samples;
	__u64 cpu_ns;                    /* sum of the perf event's sample_period (cpu-clock: ns) */
	char comm[TASK_COMM_LEN];        /* thread name when the row was created */
	char process_comm[TASK_COMM_LEN];/* group leader's name when the row was created */
};

/* A whole sample sent through the ring buffer when the fast path has no room. */
struct sample_event {
	__u32 tgid;
	__u32 tid;
	__u64 cpu_ns;
	__u32 kstack_bytes;  /* bytes of kstack filled (multiple of 8), 0 when none */
	__u32 ustack_bytes;
	__u32 exec_id;
	__u32 pad;
	char comm[TASK_COMM_LEN];
	char process_comm[TASK_COMM_LEN];
	__u64 kstack[MAX_STACK_DEPTH];
	__u64 ustack[MAX_STACK_DEPTH];
};

/* Values of process_event.type. */
#define PROCESS_EXEC 1
#define PROCESS_FORK 2

/* PROCESS_EXEC: a sampled process replaced its image (execve); user space snapshots the new
 * mappings at once, before a short-lived program can exit and take them along.
 * PROCESS_FORK: a process was forked; until it execs it runs its parent's image, so its samples
 * symbolize with the parent's mappings. */
struct process_event {
	__u32 type;
	__u32 tgid;
	__u32 exec_id; /* exec: the new image's exec id; fork: the image it inherited */
	__u32 ppid;    /* fork: the parent's tgid; exec: 0 */
	char comm[TASK_COMM_LEN];
};

/* The control map's single value, written by user space while running. */
struct profile_control {
	__u32 active_set; /* 0 or 1: which counts/stacks maps the sampler writes */
	__u32 pad;
};

#endif /* __EBPFPROF_PROFILE_H */
