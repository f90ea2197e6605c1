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
	/* Table-driven unwinding (on_sample_dwarf only; see docs/unwinding.md). Per sample, exactly
	 * one of the UNWIND_END_* outcomes, or NO_PROCESS when the process had no tables yet. */
	STAT_UNWIND_NO_PROCESS,    /* no unwind info for the process yet: frame-pointer path instead */
	STAT_UNWIND_END_OK,        /* reached the outermost frame (undefined return address, pc 0) */
	STAT_UNWIND_END_FP_ZERO,   /* a frame-pointer step found rbp = 0: the end of a frame chain */
	STAT_UNWIND_END_TRUNCATED, /* MAX_STACK_DEPTH frames and more to go */
	STAT_UNWIND_END_READ_FAULT,/* a stack word could not be read (not mapped, paged out) */
	STAT_UNWIND_END_NO_PROGRESS,/* the next frame was not above this one: state is corrupt */
	STAT_UNWIND_END_UNSUPPORTED,/* a CFI rule the walker does not evaluate */
	STAT_UNWIND_END_UNKNOWN_PC,/* pc in no mapping we know of: maps refresh requested */
	STAT_UNWIND_END_NO_USER_REGS,/* the task has no user registers (kernel thread, exiting) */
	STAT_UNWIND_TABLE_FRAMES,  /* frames stepped with an unwind table row */
	STAT_UNWIND_FP_FRAMES,     /* frames stepped with the frame pointer (no table covers the pc) */
	STAT_USTACKS_FULL,         /* unwound-stack map had no room: sent by ring buffer */
	STAT_UNWIND_REFRESH_SENT,  /* maps-refresh requests sent to user space */
	STAT__COUNT,
};

/* Key of the counts maps: one row per (task, kernel stack, user stack). Stack ids are -1 when the
 * sample has no stack of that kind (user-mode sample has no kernel stack; kernel thread no user stack).
 * A user stack unwound with tables lives in ustacks{0,1} under ustack_hash (ustack_id is then -1);
 * ustack_hash is 0 for every other sample. */
struct count_key {
	__u32 tgid;
	__u32 tid;
	__s32 kstack_id;
	__s32 ustack_id;
	__u32 exec_id; /* task->self_exec_id: which image of the process ran (it grows at each execve) */
	__u32 pad;
	__u64 ustack_hash;
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
#define PROCESS_MAPS_STALE 3

/* PROCESS_EXEC: a sampled process replaced its image (execve); user space snapshots the new
 * mappings at once, before a short-lived program can exit and take them along.
 * PROCESS_FORK: a process was forked; until it execs it runs its parent's image, so its samples
 * symbolize with the parent's mappings.
 * PROCESS_MAPS_STALE: the unwinder met a pc outside every mapping it knows of the process (dlopen,
 * new JIT region): user space reads the mappings again. At most one per UNWIND_REFRESH_NS. */
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

/*
 * Table-driven unwinding of user stacks (on_sample_dwarf). User space turns each binary's .eh_frame
 * into rows "from this pc on, CFA = register + offset, rbp is saved at ...", sorted by pc, and
 * uploads them; the program walks the stack with them, one binary search per frame. Layouts are
 * mirrored in src/unwind/kernel-layout.ts.
 */
#define UNWIND_ROWS_PER_CHUNK 512   /* rows per unwind_chunks value (4 KiB) */
#define UNWIND_CHUNKS 4096          /* default: 2M rows, 16 MiB; user space sets the budget */
#define UNWIND_TABLES 4096
#define UNWIND_PROCS 1024
#define UNWIND_MAX_MAPPINGS 128     /* power of two: mapping search index is masked with it */
#define UNWIND_TABLE_SEARCH_STEPS 23/* a table holds at most 2^23 - 1 rows */
#define UNWIND_MAPPING_SEARCH_STEPS 8
#define UNWIND_NO_TABLE 0xffffffff
#define UNWIND_REFRESH_NS 200000000ULL
#define USTACK_MAP_ENTRIES 8192

/* How the CFA (the caller's stack pointer) is found; low nibble of unwind_row.types. */
enum unwind_cfa_type {
	CFA_NONE = 0,        /* no FDE covers the pc: step with the frame pointer */
	CFA_RSP = 1,         /* CFA = rsp + cfa_off * 8 */
	CFA_RBP = 2,         /* CFA = rbp + cfa_off * 8 */
	CFA_PLT = 3,         /* PLT entry: CFA = rsp + 8, + 8 more when (pc & 15) >= cfa_off */
	CFA_DEREF_RBP = 4,   /* CFA = *(rbp + cfa_off * 8) (stack realignment) */
	CFA_DEREF_RSP = 5,   /* CFA = *(rsp + cfa_off * 8) + 8 (hand-written assembly) */
	CFA_END = 6,         /* return address undefined: the outermost frame */
	CFA_UNSUPPORTED = 7, /* a rule the walker does not evaluate: stop, counted */
};

/* Where the caller's rbp is; high nibble of unwind_row.types. */
enum unwind_rbp_type {
	RBP_SAME = 0,        /* unchanged (not saved, or not yet) */
	RBP_AT_CFA = 1,      /* saved at CFA + rbp_off * 8 */
	RBP_AT_RBP = 2,      /* saved at rbp + rbp_off * 8 (stack realignment) */
	RBP_LOST = 3,        /* kept where the walker cannot see it: unknown from here on */
};

struct unwind_row {
	__u32 pc;       /* table-relative address where the row starts to apply */
	__s16 cfa_off;  /* in 8-byte units (CFA_PLT: the pc & 15 threshold) */
	__u8 types;     /* cfa type | rbp type << 4 */
	__s8 rbp_off;   /* in 8-byte units */
};

struct unwind_chunk {
	struct unwind_row rows[UNWIND_ROWS_PER_CHUNK];
};

/* unwind_tables[table id]: where a binary's rows are in the global row space. */
struct unwind_table {
	__u32 first_row;
	__u32 row_count; /* 0: table not (or no longer) loaded */
};

/* An executable mapping: pc - bias is the table-relative address. */
struct unwind_mapping {
	__u64 start;
	__u64 bias;
	__u32 size;
	__u32 table_id; /* UNWIND_NO_TABLE: no unwind info, frame-pointer steps */
};

#define UNWIND_PROC_COMPLETE 1 /* every executable mapping is listed: a pc outside them is stale */

/* unwind_procs[tgid]: the executable mappings, sorted by start. */
struct unwind_proc {
	__u32 count;
	__u32 flags;
	__u64 last_refresh_ns; /* written by the program: rate limit of PROCESS_MAPS_STALE */
	struct unwind_mapping maps[UNWIND_MAX_MAPPINGS];
};

/* Per-CPU scratch: the stack being unwound (too large for the BPF stack). One slot more than
 * MAX_STACK_DEPTH, so that an index masked with 127 is always in bounds for the verifier. */
#define UNWIND_SCRATCH_FRAMES 128
struct unwind_scratch {
	__u64 frames[UNWIND_SCRATCH_FRAMES];
	/* Binary search state. Kept in map memory on purpose: the verifier does not track values there,
	 * so the search's iterations do not multiply its states (on the BPF stack they would). */
	__u64 key;
	__u32 lo;
	__u32 hi;
	__u32 found; /* index + 1, 0 while not found */
	__u32 failed;
};

#endif /* __EBPFPROF_PROFILE_H */
