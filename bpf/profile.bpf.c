// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CPU sampler: runs on every perf_event sample (cpu-clock, per CPU) and counts
 * (tgid, tid, kernel stack id, user stack) in a hash map. Two sets of maps are
 * kept; user space flips control.active_set and drains the idle set, so stack ids
 * are never deleted while a sample may still reference them. When a stack bucket
 * or the counts map has no room, the whole sample goes through the ring buffer
 * instead: nothing is dropped unless the ring buffer itself is full, and every
 * such case is counted in the stats map.
 *
 * Two variants of the sampling program share that code: on_sample walks user
 * stacks with frame pointers (bpf_get_stackid); on_sample_dwarf walks them with
 * unwind tables derived from .eh_frame for the processes user space registered,
 * stepping by frame pointer where no table covers a pc (JIT code, Go), and falls
 * back to on_sample's way for other processes. The loader picks one.
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "profile.h"
#include "common.bpf.h"

/* bpf_get_stackid() errors (include/uapi/asm-generic/errno-base.h). */
#define EFAULT 14
#define ENOMEM 12
#define EEXIST 17
#define E2BIG 7

const volatile __u32 filter_mode = FILTER_ALL;
const volatile bool collect_kernel_stacks = true;
const volatile bool collect_user_stacks = true;
const volatile bool follow_forks = false;
/* Send exec and fork events to user space (the recorder wants them; the agent tracks the lifecycle
 * on its own and loads on_fork/on_exec only for the unwinder's bookkeeping). */
const volatile bool report_process_events = true;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct profile_control);
} control SEC(".maps");

STATS_MAP(stats, STAT__COUNT);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARGETS_MAP_ENTRIES);
	__type(key, __u32);   /* tgid */
	__type(value, __u8);
} targets SEC(".maps");

#define COUNTS_MAP(name)                                                  \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_HASH);                          \
		__uint(max_entries, COUNTS_MAP_ENTRIES);                  \
		__type(key, struct count_key);                            \
		__type(value, struct count_value);                        \
	} name SEC(".maps")

STACK_TRACE_MAP(stacks0, STACK_MAP_ENTRIES);
STACK_TRACE_MAP(stacks1, STACK_MAP_ENTRIES);
COUNTS_MAP(counts0);
COUNTS_MAP(counts1);

/* User stacks unwound with tables, keyed by a 64-bit hash of their addresses (stack-trace maps
 * cannot be filled from a program). The value ends at the first zero, like a stack-trace entry. */
struct user_stack {
	__u64 frames[MAX_STACK_DEPTH];
};

#define USTACK_MAP(name)                                                  \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_HASH);                          \
		__uint(max_entries, USTACK_MAP_ENTRIES);                  \
		__type(key, __u64);                                       \
		__type(value, struct user_stack);                         \
	} name SEC(".maps")

USTACK_MAP(ustacks0);
USTACK_MAP(ustacks1);

/* Unwind tables: every binary's rows in one row space, 512 rows per array value. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_CHUNKS);
	__type(key, __u32);
	__type(value, struct unwind_chunk);
} unwind_chunks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_TABLES);
	__type(key, __u32);
	__type(value, struct unwind_table);
} unwind_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UNWIND_PROCS);
	__type(key, __u32); /* tgid */
	__type(value, struct unwind_proc);
} unwind_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_scratch);
} unwind_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SAMPLE_RINGBUF_BYTES);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENT_RINGBUF_BYTES);
} events SEC(".maps");

/* Keeps struct sample_event in the object's BTF (ring buffers carry no value type), so user space
 * can check its decoder against the real size. */
const struct sample_event *unused_sample_event __attribute__((unused));
const struct process_event *unused_process_event __attribute__((unused));
const struct unwind_row *unused_unwind_row __attribute__((unused));

/* Lowest address that is not user space on x86-64 (47-bit user address space). */
#define USER_TOP 0x0000800000000000ULL

static __always_inline void count_stat_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += n;
}

static __always_inline void count_stat(__u32 idx)
{
	count_stat_n(idx, 1);
}


static __always_inline void fill_comms(char *comm, char *process_comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	bpf_get_current_comm(comm, TASK_COMM_LEN);
	BPF_CORE_READ_STR_INTO((char(*)[TASK_COMM_LEN])process_comm, task, group_leader, comm);
}

/* Slow path: the whole sample, both stacks copied, through the ring buffer. udepth >= 0: the user
 * stack was unwound with tables and is in unwind_scratch (udepth frames); -1: walk frame pointers. */
static __always_inline void send_whole_sample(struct bpf_perf_event_data *ctx, __u32 tgid, __u32 tid, int udepth)
{
	struct unwind_scratch *scratch;
	struct sample_event *e;
	__u32 zero = 0;
	long n;

	e = bpf_ringbuf_reserve(&samples, sizeof(*e), 0);
	if (!e) {
		count_stat(STAT_RINGBUF_FULL);
		return;
	}
	e->tgid = tgid;
	e->tid = tid;
	e->cpu_ns = ctx->sample_period;
	e->kstack_bytes = 0;
	e->ustack_bytes = 0;
	e->exec_id = task_exec_id((struct task_struct *)bpf_get_current_task());
	e->pad = 0;
	if (collect_kernel_stacks) {
		n = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
		e->kstack_bytes = n > 0 ? n : 0;
	}
	if (collect_user_stacks && udepth >= 0) {
		scratch = bpf_map_lookup_elem(&unwind_scratch, &zero);
		if (scratch && bpf_probe_read_kernel(e->ustack, sizeof(e->ustack), scratch->frames) == 0)
			e->ustack_bytes = (udepth > MAX_STACK_DEPTH ? MAX_STACK_DEPTH : udepth) * sizeof(__u64);
	} else if (collect_user_stacks) {
		n = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		e->ustack_bytes = n > 0 ? n : 0;
	}
	fill_comms(e->comm, e->process_comm);
	bpf_ringbuf_submit(e, 0);
	count_stat(STAT_RINGBUF_SENT);
}


static __always_inline void send_process_event(__u32 type, struct task_struct *task, __u32 tgid, __u32 ppid);

/* ---------------------------------------------------------------- table-driven unwinding */

/* State of one walk, shared with the bpf_loop callbacks. */
struct walk {
	__u64 pc;
	__u64 sp;
	__u64 bp;
	__u64 hash;
	struct unwind_scratch *scratch;
	/* The process's mappings, looked up once per walk (an entry deleted meanwhile by exec or exit
	 * stays readable until the program ends). */
	struct unwind_proc *proc;
	__u32 tgid;
	__u32 depth;       /* frames written to scratch */
	__u32 end;         /* STAT_UNWIND_END_* once the walk stopped, 0 while walking */
	__u32 table_frames;
	__u32 fp_frames;
	__u32 pad;
};

static __always_inline int read_user_u64(__u64 addr, __u64 *out)
{
	return bpf_probe_read_user(out, sizeof(*out), (const void *)addr);
}

/* One step of the binary search for the mapping holding scratch->key among the process's sorted
 * mappings [lo, hi). Searches run as bpf_loop callbacks: a plain loop's branches would multiply the
 * verifier's states by two per step. */
static long mapping_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct unwind_scratch *s = w->scratch;
	struct unwind_proc *proc = w->proc;
	struct unwind_mapping *m;
	__u32 mid;

	if (!s || !proc || s->lo >= s->hi)
		return 1;
	mid = (s->lo + s->hi) / 2;
	m = &proc->maps[mid & (UNWIND_MAX_MAPPINGS - 1)];
	if (s->key < m->start) {
		s->hi = mid;
	} else if (s->key - m->start >= m->size) {
		s->lo = mid + 1;
	} else {
		s->found = mid + 1;
		return 1;
	}
	return 0;
}

/* The mapping holding pc, or NULL. */
static __always_inline struct unwind_mapping *find_mapping(struct walk *w, struct unwind_proc *proc, __u64 pc)
{
	struct unwind_scratch *s = w->scratch;
	__u32 n = proc->count;

	if (!s)
		return NULL;
	s->key = pc;
	s->lo = 0;
	s->hi = n > UNWIND_MAX_MAPPINGS ? UNWIND_MAX_MAPPINGS : n;
	s->found = 0;
	bpf_loop(UNWIND_MAPPING_SEARCH_STEPS, mapping_step, w, 0);
	if (s->found == 0)
		return NULL;
	return &proc->maps[(s->found - 1) & (UNWIND_MAX_MAPPINGS - 1)];
}

static __always_inline struct unwind_row *row_at(__u32 idx)
{
	__u32 chunk_idx = idx / UNWIND_ROWS_PER_CHUNK;
	struct unwind_chunk *chunk = bpf_map_lookup_elem(&unwind_chunks, &chunk_idx);

	if (!chunk)
		return NULL;
	return &chunk->rows[idx & (UNWIND_ROWS_PER_CHUNK - 1)];
}

/* One step of the search for the first row whose pc is > scratch->key in [lo, hi). */
static long row_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct unwind_scratch *s = w->scratch;
	struct unwind_row *r;
	__u32 mid;

	if (!s || s->lo >= s->hi)
		return 1;
	mid = s->lo + (s->hi - s->lo) / 2;
	r = row_at(mid);
	if (!r) {
		s->failed = 1;
		return 1;
	}
	if (r->pc <= s->key)
		s->lo = mid + 1;
	else
		s->hi = mid;
	return 0;
}

/* The last row of the table whose pc is <= rel, or NULL when the table does not cover rel. */
static __always_inline struct unwind_row *find_row(struct walk *w, __u32 table_id, __u64 rel)
{
	struct unwind_table *t = bpf_map_lookup_elem(&unwind_tables, &table_id);
	struct unwind_scratch *s = w->scratch;
	__u32 first;

	if (!s || !t || t->row_count == 0 || rel > 0xffffffffULL)
		return NULL;
	first = t->first_row;
	s->key = rel;
	s->lo = first;
	s->hi = first + t->row_count;
	s->failed = 0;
	bpf_loop(UNWIND_TABLE_SEARCH_STEPS, row_step, w, 0);
	if (s->failed || s->lo < s->hi || s->lo == first)
		return NULL;
	return row_at(s->lo - 1);
}

static __always_inline void request_refresh(struct unwind_proc *proc, __u32 tgid)
{
	__u64 now = bpf_ktime_get_ns();

	if (now - proc->last_refresh_ns < UNWIND_REFRESH_NS)
		return;
	proc->last_refresh_ns = now;
	send_process_event(PROCESS_MAPS_STALE, (struct task_struct *)bpf_get_current_task(), tgid, 0);
	count_stat(STAT_UNWIND_REFRESH_SENT);
}

/* One frame: record pc, then find the caller's pc, sp and bp. Returns 1 to stop the loop. */
static long unwind_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct unwind_scratch *scratch;
	struct unwind_proc *proc;
	struct unwind_mapping *m;
	struct unwind_row *row = NULL;
	__u64 pc = w->pc, sp = w->sp, bp = w->bp, lookup, cfa = 0, ra = 0;
	__u32 cfa_type = CFA_NONE, rbp_type = RBP_SAME, slot;
	long cfa_off = 0, rbp_off = 0;

	if (i >= MAX_STACK_DEPTH) {
		w->end = STAT_UNWIND_END_TRUNCATED;
		return 1;
	}
	scratch = w->scratch;
	if (!scratch) {
		w->end = STAT_UNWIND_END_READ_FAULT;
		return 1;
	}
	slot = i;
	/* Hide slot's known range from the compiler so that it keeps the mask the verifier needs. */
	asm volatile("" : "+r"(slot));
	scratch->frames[slot & (UNWIND_SCRATCH_FRAMES - 1)] = pc;
	w->depth = i + 1;
	w->hash = (w->hash ^ pc) * 0x100000001b3ULL;

	proc = w->proc;
	if (!proc) {
		w->end = STAT_UNWIND_END_UNKNOWN_PC;
		return 1;
	}
	/* A return address points after its call; the call itself belongs to the caller's row. */
	lookup = i == 0 ? pc : pc - 1;
	m = find_mapping(w, proc, lookup);
	if (!m) {
		if (proc->flags & UNWIND_PROC_COMPLETE) {
			request_refresh(proc, w->tgid);
			w->end = STAT_UNWIND_END_UNKNOWN_PC;
			return 1;
		}
	} else if (m->table_id != UNWIND_NO_TABLE) {
		row = find_row(w, m->table_id, lookup - m->bias);
	}
	if (row) {
		cfa_type = row->types & 0xf;
		rbp_type = row->types >> 4;
		cfa_off = (long)row->cfa_off * 8;
		rbp_off = (long)row->rbp_off * 8;
	}

	switch (cfa_type) {
	case CFA_NONE:
		goto frame_pointer;
	case CFA_END:
		w->end = STAT_UNWIND_END_OK;
		return 1;
	case CFA_RSP:
		cfa = sp + cfa_off;
		break;
	case CFA_RBP:
		cfa = bp + cfa_off;
		break;
	case CFA_PLT:
		cfa = sp + 8 + ((long)(pc & 15) >= row->cfa_off ? 8 : 0);
		break;
	case CFA_DEREF_RBP:
		if (read_user_u64(bp + cfa_off, &cfa)) {
			w->end = STAT_UNWIND_END_READ_FAULT;
			return 1;
		}
		break;
	case CFA_DEREF_RSP:
		if (read_user_u64(sp + cfa_off, &cfa)) {
			w->end = STAT_UNWIND_END_READ_FAULT;
			return 1;
		}
		cfa += 8;
		break;
	default:
		w->end = STAT_UNWIND_END_UNSUPPORTED;
		return 1;
	}
	/* x86-64: the call pushed the return address just below the caller's stack pointer. */
	if (read_user_u64(cfa - 8, &ra)) {
		w->end = STAT_UNWIND_END_READ_FAULT;
		return 1;
	}
	switch (rbp_type) {
	case RBP_AT_CFA:
		if (read_user_u64(cfa + rbp_off, &bp)) {
			w->end = STAT_UNWIND_END_READ_FAULT;
			return 1;
		}
		break;
	case RBP_AT_RBP:
		if (read_user_u64(bp + rbp_off, &bp)) {
			w->end = STAT_UNWIND_END_READ_FAULT;
			return 1;
		}
		break;
	case RBP_LOST:
		bp = 0;
		break;
	default:
		break;
	}
	if (cfa <= sp) {
		w->end = STAT_UNWIND_END_NO_PROGRESS;
		return 1;
	}
	w->table_frames++;
	w->sp = cfa;
	w->bp = bp;
	w->pc = ra;
	goto next;

frame_pointer:
	/* No table covers the pc: the frame is assumed to keep the standard rbp chain. */
	if (bp == 0) {
		w->end = STAT_UNWIND_END_FP_ZERO;
		return 1;
	}
	if (bp < sp) {
		w->end = STAT_UNWIND_END_NO_PROGRESS;
		return 1;
	}
	if (read_user_u64(bp + 8, &ra) || read_user_u64(bp, &w->bp)) {
		w->end = STAT_UNWIND_END_READ_FAULT;
		return 1;
	}
	w->fp_frames++;
	w->sp = bp + 16;
	w->pc = ra;

next:
	if (w->pc == 0) {
		w->end = STAT_UNWIND_END_OK;
		return 1;
	}
	if (w->pc >= USER_TOP) {
		w->end = STAT_UNWIND_END_NO_PROGRESS;
		return 1;
	}
	if (i >= MAX_STACK_DEPTH - 1) {
		w->end = STAT_UNWIND_END_TRUNCATED;
		return 1;
	}
	return 0;
}

/*
 * Unwinds the current task's user stack into unwind_scratch with the tables of unwind_procs[tgid].
 * Returns the number of frames (0: no user stack) and their hash in *hash. Every walk ends in
 * exactly one STAT_UNWIND_END_* counter.
 */
static __always_inline __u32 unwind_user(__u32 tgid, struct unwind_proc *proc, __u64 *hash)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct unwind_scratch *scratch;
	struct pt_regs *regs;
	struct walk w = {};
	__u32 zero = 0, slot;
	__u64 h;

	/* The registers the task entered the kernel with: the interrupted user state when the sample hit
	 * user mode, the syscall's user state when it hit the kernel on the task's behalf. */
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!BPF_CORE_READ(task, mm) || !regs) {
		count_stat(STAT_UNWIND_END_NO_USER_REGS);
		return 0;
	}
	w.pc = BPF_CORE_READ(regs, ip);
	w.sp = BPF_CORE_READ(regs, sp);
	w.bp = BPF_CORE_READ(regs, bp);
	if (w.pc == 0 || w.pc >= USER_TOP) {
		count_stat(STAT_UNWIND_END_NO_USER_REGS);
		return 0;
	}
	w.scratch = bpf_map_lookup_elem(&unwind_scratch, &zero);
	if (!w.scratch)
		return 0;
	w.tgid = tgid;
	w.proc = proc;
	w.hash = 0xcbf29ce484222325ULL;
	bpf_loop(MAX_STACK_DEPTH, unwind_step, &w, 0);
	count_stat(w.end ? w.end : STAT_UNWIND_END_TRUNCATED);
	count_stat_n(STAT_UNWIND_TABLE_FRAMES, w.table_frames);
	count_stat_n(STAT_UNWIND_FP_FRAMES, w.fp_frames);
	if (w.depth == 0)
		return 0;
	scratch = w.scratch;
	if (w.depth < MAX_STACK_DEPTH) {
		slot = w.depth;
		asm volatile("" : "+r"(slot));
		scratch->frames[slot & (UNWIND_SCRATCH_FRAMES - 1)] = 0; /* ends at the first zero, like stack-trace maps */
	}
	h = w.hash;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	*hash = h ? h : 1; /* 0 means "no unwound stack" in count_key */
	return w.depth;
}

/* ---------------------------------------------------------------- aggregation */

/* Returns the stack id, -1 for "this sample has no such stack", or -EEXIST/-ENOMEM for "no room". */
static __always_inline long stack_id(struct bpf_perf_event_data *ctx, void *stacks, __u64 flags,
				     __u32 error_stat)
{
	long id = bpf_get_stackid(ctx, stacks, flags);

	if (id >= 0 || id == -EEXIST || id == -ENOMEM)
		return id;
	/* -EFAULT: no stack of this kind (user-mode sample, kernel thread). */
	if (id != -EFAULT)
		count_stat(error_stat);
	return -1;
}

/* Unwinds with tables when the process has them: stores the stack in ustacks and returns its depth
 * (0: no user stack), or -1 when the frame-pointer path must be taken. -2: sent whole instead. */
static __always_inline int unwind_into(struct bpf_perf_event_data *ctx, __u32 tgid, __u32 tid,
				       void *ustacks, struct count_key *key)
{
	struct unwind_scratch *scratch;
	struct unwind_proc *proc;
	__u32 zero = 0, depth;
	__u64 hash = 0;

	proc = bpf_map_lookup_elem(&unwind_procs, &tgid);
	if (!proc) {
		count_stat(STAT_UNWIND_NO_PROCESS);
		return -1;
	}
	depth = unwind_user(tgid, proc, &hash);
	if (depth == 0)
		return 0;
	key->ustack_hash = hash;
	if (bpf_map_lookup_elem(ustacks, &hash))
		return depth;
	scratch = bpf_map_lookup_elem(&unwind_scratch, &zero);
	if (!scratch)
		return 0;
	/* EEXIST: another CPU stored the same stack in between; anything else: no room. */
	if (bpf_map_update_elem(ustacks, &hash, scratch->frames, BPF_NOEXIST) == 0 ||
	    bpf_map_lookup_elem(ustacks, &hash))
		return depth;
	count_stat(STAT_USTACKS_FULL);
	send_whole_sample(ctx, tgid, tid, depth);
	return -2;
}

static __always_inline int record_sample(struct bpf_perf_event_data *ctx, __u32 tgid, __u32 tid,
					 void *stacks, void *counts, void *ustacks, bool dwarf)
{
	struct count_key key = {
		.tgid = tgid,
		.tid = tid,
		.kstack_id = -1,
		.ustack_id = -1,
		.exec_id = task_exec_id((struct task_struct *)bpf_get_current_task()),
	};
	struct count_value *val, init = {};
	int udepth = -1;
	long id;

	/* The user stack first: a sample sent whole later on carries the unwound stack with it. */
	if (collect_user_stacks && dwarf) {
		udepth = unwind_into(ctx, tgid, tid, ustacks, &key);
		if (udepth == -2)
			return 0;
	}
	if (collect_kernel_stacks) {
		id = stack_id(ctx, stacks, 0, STAT_KSTACK_ERROR);
		if (id == -EEXIST || id == -ENOMEM) {
			count_stat(STAT_KSTACK_COLLISION);
			send_whole_sample(ctx, tgid, tid, udepth);
			return 0;
		}
		key.kstack_id = id;
	}
	if (collect_user_stacks && udepth < 0) {
		id = stack_id(ctx, stacks, BPF_F_USER_STACK, STAT_USTACK_ERROR);
		if (id == -EEXIST || id == -ENOMEM) {
			count_stat(STAT_USTACK_COLLISION);
			send_whole_sample(ctx, tgid, tid, -1);
			return 0;
		}
		key.ustack_id = id;
	}

	val = bpf_map_lookup_elem(counts, &key);
	if (!val) {
		init.samples = 1;
		init.cpu_ns = ctx->sample_period;
		fill_comms(init.comm, init.process_comm);
		if (bpf_map_update_elem(counts, &key, &init, BPF_NOEXIST) == 0) {
			count_stat(STAT_AGGREGATED);
			return 0;
		}
		/* Another CPU created the row in between (EEXIST) or the map is full (E2BIG). */
		val = bpf_map_lookup_elem(counts, &key);
		if (!val) {
			count_stat(STAT_COUNTS_FULL);
			send_whole_sample(ctx, tgid, tid, udepth);
			return 0;
		}
	}
	__sync_fetch_and_add(&val->samples, 1);
	__sync_fetch_and_add(&val->cpu_ns, ctx->sample_period);
	count_stat(STAT_AGGREGATED);
	return 0;
}

static __always_inline int sample(struct bpf_perf_event_data *ctx, bool dwarf)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id, zero = 0;
	struct profile_control *ctl;

	count_stat(STAT_SAMPLES);
	if (tid == 0) {
		count_stat(STAT_IDLE);
		return 0;
	}
	if (filter_mode == FILTER_TARGETS && !bpf_map_lookup_elem(&targets, &tgid)) {
		count_stat(STAT_FILTERED);
		return 0;
	}
	ctl = bpf_map_lookup_elem(&control, &zero);
	if (ctl && ctl->active_set == 1)
		return record_sample(ctx, tgid, tid, &stacks1, &counts1, &ustacks1, dwarf);
	return record_sample(ctx, tgid, tid, &stacks0, &counts0, &ustacks0, dwarf);
}

/* User stacks by frame pointers only (bpf_get_stackid): every kernel that has perf_event programs. */
SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	return sample(ctx, false);
}

/* User stacks by unwind tables where user space loaded them (needs bpf_loop, Linux 5.17). */
SEC("perf_event")
int on_sample_dwarf(struct bpf_perf_event_data *ctx)
{
	return sample(ctx, true);
}

static __always_inline void send_process_event(__u32 type, struct task_struct *task, __u32 tgid, __u32 ppid)
{
	struct process_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_stat(STAT_EVENTS_FULL);
		return;
	}
	e->type = type;
	e->tgid = tgid;
	e->exec_id = task_exec_id(task);
	e->ppid = ppid;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	bpf_ringbuf_submit(e, 0);
}

/* A new process (not a thread). With follow_forks, a child of a target becomes a target
 * (record -- CMD). Raw tracepoint: needs neither tracefs nor BTF-typed attach. */
SEC("raw_tp/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (parent_tgid == child_tgid)
		return 0;
	/* A reused pid must not be unwound with the mappings of the process that had it before. */
	bpf_map_delete_elem(&unwind_procs, &child_tgid);
	if (filter_mode == FILTER_TARGETS) {
		if (!follow_forks || !bpf_map_lookup_elem(&targets, &parent_tgid))
			return 0;
		if (bpf_map_update_elem(&targets, &child_tgid, &one, BPF_ANY) == 0) {
			count_stat(STAT_FORKS_FOLLOWED);
		} else {
			count_stat(STAT_TARGETS_FULL);
			return 0;
		}
	}
	if (report_process_events)
		send_process_event(PROCESS_FORK, child, child_tgid, parent_tgid);
	return 0;
}

/* Tells user space that a sampled process exec'd, so it reads the new image's mappings while the
 * process still exists. */
SEC("raw_tp/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);

	/* The old image's mappings are gone: frame pointers until user space loads the new ones. */
	bpf_map_delete_elem(&unwind_procs, &tgid);
	if (!report_process_events || (filter_mode == FILTER_TARGETS && !bpf_map_lookup_elem(&targets, &tgid)))
		return 0;
	send_process_event(PROCESS_EXEC, task, tgid, 0);
	return 0;
}

/* Drops a target once its last thread ended, so that a reused pid is not profiled by mistake.
 * do_exit() decrements signal->live before this tracepoint fires; zero means the group is dead
 * (only the leader exiting, with other threads still running, must not drop the target). */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);

	if (BPF_CORE_READ(task, signal, live.counter) == 0) {
		bpf_map_delete_elem(&targets, &tgid);
		bpf_map_delete_elem(&unwind_procs, &tgid);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
