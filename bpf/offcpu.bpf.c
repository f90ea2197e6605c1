// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Off-CPU time with stacks: when a thread blocks (sched_switch with the thread not runnable), its
 * kernel and user stacks are taken (it is still current) and the time is noted; when it runs
 * again, the blocked time is added to a row keyed by (tgid, tid, stack ids, exec id).
 *
 * Stack ids must stay valid until every row and blocked thread that names them has been read
 * (docs/tracing.md has the whole argument). Maps come in two sets chosen by control.epoch & 1:
 *  - a block whose ids were taken in the current epoch goes to that epoch's counts map;
 *  - a block whose ids are from an earlier epoch (the thread was blocked across a drain) goes to the
 *    ring buffer with its ids and their epoch;
 *  - user space deletes a stack only when no blocked thread (start map) names it, and a window
 *    after the rows that named it were read.
 * A stack that collides in the stack map is copied whole into whole_stacks and sent through the
 * ring buffer at switch-in. Every block ends in exactly one stats counter.
 *
 * Attach: tp_btf first, raw_tp as the alternative (one-line wrappers).
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.bpf.h"
#include "offcpu.h"

#define EEXIST 17
#define ENOMEM 12
#define EFAULT 14

const volatile __u32 filter_mode = FILTER_ALL;
const volatile __u64 min_block_ns = 0;
const volatile bool include_preempted = false;
const volatile bool include_kernel_threads = false;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_control);
} control SEC(".maps");

STATS_MAP(stats, OC_STAT__COUNT);
COUNT_STAT_FN(stats)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFCPU_START_ENTRIES);
	__type(key, __u32); /* tid */
	__type(value, struct offcpu_start);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFCPU_WHOLE_ENTRIES);
	__type(key, __u32); /* tid */
	__type(value, struct offcpu_whole);
} whole_stacks SEC(".maps");

/* Scratch for building a whole-stacks value (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_whole);
} scratch SEC(".maps");

#define COUNTS_MAP(name)                                                  \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_HASH);                          \
		__uint(max_entries, OFFCPU_COUNTS_ENTRIES);               \
		__type(key, struct offcpu_key);                           \
		__type(value, struct offcpu_value);                       \
	} name SEC(".maps")

STACK_TRACE_MAP(stacks0, OFFCPU_STACK_ENTRIES);
STACK_TRACE_MAP(stacks1, OFFCPU_STACK_ENTRIES);
COUNTS_MAP(counts0);
COUNTS_MAP(counts1);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, OFFCPU_RINGBUF_BYTES);
} events SEC(".maps");

const struct offcpu_event *unused_offcpu_event __attribute__((unused));

static __always_inline __u32 current_epoch(void)
{
	__u32 zero = 0;
	struct offcpu_control *ctl = bpf_map_lookup_elem(&control, &zero);

	return ctl ? ctl->epoch : 0;
}

/* -1 for "no stack of this kind", -2 for "no room in the stack map" (collision or full). */
static __always_inline __s32 take_stack(void *ctx, void *stacks, __u64 flags, __u32 error_stat)
{
	long id = bpf_get_stackid(ctx, stacks, flags);

	if (id >= 0)
		return id;
	if (id == -EEXIST || id == -ENOMEM)
		return -2;
	if (id != -EFAULT)
		count_stat(error_stat);
	return -1;
}

/* The blocking thread (prev) is current: its stacks are the stacks of the block. */
static __always_inline void switch_out(void *ctx, struct task_struct *prev)
{
	__u32 tid = BPF_CORE_READ(prev, pid), tgid = BPF_CORE_READ(prev, tgid), zero = 0;
	struct offcpu_start s = {};
	void *stacks;

	if (tid == 0 || (!include_kernel_threads && (BPF_CORE_READ(prev, flags) & PF_KTHREAD))) {
		count_stat(OC_STAT_FILTERED);
		return;
	}
	if (filter_mode == FILTER_TARGETS && !bpf_map_lookup_elem(&targets, &tgid)) {
		count_stat(OC_STAT_FILTERED);
		return;
	}
	if (task_state(prev) == TASK_RUNNING && !include_preempted) {
		count_stat(OC_STAT_PREEMPTED);
		return;
	}
	s.epoch = current_epoch();
	stacks = (s.epoch & 1) ? (void *)&stacks1 : (void *)&stacks0;
	s.kstack_id = take_stack(ctx, stacks, 0, OC_STAT_KSTACK_ERROR);
	s.ustack_id = take_stack(ctx, stacks, BPF_F_USER_STACK, OC_STAT_USTACK_ERROR);
	if (s.kstack_id == -2 || s.ustack_id == -2) {
		struct offcpu_whole *w = bpf_map_lookup_elem(&scratch, &zero);
		long n;

		count_stat(s.kstack_id == -2 ? OC_STAT_KSTACK_COLLISION : OC_STAT_USTACK_COLLISION);
		s.kstack_id = -1;
		s.ustack_id = -1;
		if (w) {
			n = bpf_get_stack(ctx, w->kstack, sizeof(w->kstack), 0);
			w->kstack_bytes = n > 0 ? n : 0;
			n = bpf_get_stack(ctx, w->ustack, sizeof(w->ustack), BPF_F_USER_STACK);
			w->ustack_bytes = n > 0 ? n : 0;
			if (bpf_map_update_elem(&whole_stacks, &tid, w, BPF_ANY) == 0)
				s.flags = OFFCPU_WHOLE_STACKS;
			else
				count_stat(OC_STAT_WHOLE_FULL);
		}
	}
	s.ts = bpf_ktime_get_ns();
	s.tgid = tgid;
	s.exec_id = task_exec_id(prev);
	bpf_get_current_comm(s.comm, sizeof(s.comm));
	BPF_CORE_READ_STR_INTO(&s.process_comm, prev, group_leader, comm);
	if (bpf_map_update_elem(&start, &tid, &s, BPF_ANY) == 0)
		count_stat(OC_STAT_BLOCKS);
	else
		count_stat(OC_STAT_START_FULL);
}

static __always_inline void send_event(struct offcpu_start *s, __u32 tid, __u64 delta)
{
	struct offcpu_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	struct offcpu_whole *w;

	if (!e) {
		count_stat(OC_STAT_RINGBUF_FULL);
		return;
	}
	e->type = OFFCPU_EV_IDS;
	e->tgid = s->tgid;
	e->tid = tid;
	e->epoch = s->epoch;
	e->kstack_id = s->kstack_id;
	e->ustack_id = s->ustack_id;
	e->exec_id = s->exec_id;
	e->pad = 0;
	e->blocked_ns = delta;
	__builtin_memcpy(e->comm, s->comm, TASK_COMM_LEN);
	__builtin_memcpy(e->process_comm, s->process_comm, TASK_COMM_LEN);
	e->stacks.kstack_bytes = 0;
	e->stacks.ustack_bytes = 0;
	if (s->flags & OFFCPU_WHOLE_STACKS) {
		w = bpf_map_lookup_elem(&whole_stacks, &tid);
		if (w) {
			bpf_probe_read_kernel(&e->stacks, sizeof(e->stacks), w);
			e->type = OFFCPU_EV_WHOLE;
		}
	}
	bpf_ringbuf_submit(e, 0);
	count_stat(OC_STAT_RINGBUF_SENT);
}

/* The thread that runs again (next): its block ends now. */
static __always_inline void switch_in(struct task_struct *next)
{
	__u32 tid = BPF_CORE_READ(next, pid);
	struct offcpu_value *v, init = {};
	struct offcpu_key key = {};
	struct offcpu_start *s;
	__u32 epoch;
	__u64 delta;

	s = bpf_map_lookup_elem(&start, &tid);
	if (!s)
		return;
	delta = bpf_ktime_get_ns() - s->ts;
	if ((__s64)delta < (__s64)min_block_ns) {
		count_stat(OC_STAT_SHORT);
		goto done;
	}
	epoch = current_epoch();
	if ((s->flags & OFFCPU_WHOLE_STACKS) || s->epoch != epoch) {
		if (s->epoch != epoch && !(s->flags & OFFCPU_WHOLE_STACKS))
			count_stat(OC_STAT_LATE);
		send_event(s, tid, delta);
		goto done;
	}
	key.tgid = s->tgid;
	key.tid = tid;
	key.kstack_id = s->kstack_id;
	key.ustack_id = s->ustack_id;
	key.exec_id = s->exec_id;
	v = bpf_map_lookup_elem((epoch & 1) ? (void *)&counts1 : (void *)&counts0, &key);
	if (!v) {
		init.blocks = 1;
		init.total_ns = delta;
		__builtin_memcpy(init.comm, s->comm, TASK_COMM_LEN);
		__builtin_memcpy(init.process_comm, s->process_comm, TASK_COMM_LEN);
		if (bpf_map_update_elem((epoch & 1) ? (void *)&counts1 : (void *)&counts0, &key, &init, BPF_NOEXIST) == 0) {
			count_stat(OC_STAT_AGGREGATED);
			goto done;
		}
		v = bpf_map_lookup_elem((epoch & 1) ? (void *)&counts1 : (void *)&counts0, &key);
		if (!v) {
			count_stat(OC_STAT_COUNTS_FULL);
			send_event(s, tid, delta);
			goto done;
		}
	}
	__sync_fetch_and_add(&v->blocks, 1);
	__sync_fetch_and_add(&v->total_ns, delta);
	count_stat(OC_STAT_AGGREGATED);
done:
	/* The row is written before the start entry goes: user space that no longer sees the entry
	 * finds the row (docs/tracing.md). */
	if (s->flags & OFFCPU_WHOLE_STACKS)
		bpf_map_delete_elem(&whole_stacks, &tid);
	bpf_map_delete_elem(&start, &tid);
}

static __always_inline int handle_switch(void *ctx, struct task_struct *prev, struct task_struct *next)
{
	count_stat(OC_STAT_SWITCHES);
	switch_out(ctx, prev);
	switch_in(next);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_switch, bool preempt, struct task_struct *prev, struct task_struct *next) { return handle_switch(ctx, prev, next); }

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_switch, bool preempt, struct task_struct *prev, struct task_struct *next) { return handle_switch(ctx, prev, next); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
