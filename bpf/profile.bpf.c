// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CPU sampler: runs on every perf_event sample (cpu-clock, per CPU) and counts
 * (tgid, tid, kernel stack id, user stack id) in a hash map. Two sets of maps are
 * kept; user space flips control.active_set and drains the idle set, so stack ids
 * are never deleted while a sample may still reference them. When a stack bucket
 * or the counts map has no room, the whole sample goes through the ring buffer
 * instead: nothing is dropped unless the ring buffer itself is full, and every
 * such case is counted in the stats map.
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "profile.h"

/* bpf_get_stackid() errors (include/uapi/asm-generic/errno-base.h). */
#define EFAULT 14
#define ENOMEM 12
#define EEXIST 17
#define E2BIG 7

const volatile __u32 filter_mode = FILTER_ALL;
const volatile bool collect_kernel_stacks = true;
const volatile bool collect_user_stacks = true;
const volatile bool follow_forks = false;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct profile_control);
} control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TARGETS_MAP_ENTRIES);
	__type(key, __u32);   /* tgid */
	__type(value, __u8);
} targets SEC(".maps");

#define STACK_MAP(name)                                                   \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                   \
		__uint(max_entries, STACK_MAP_ENTRIES);                   \
		__uint(key_size, sizeof(__u32));                          \
		__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));      \
	} name SEC(".maps")

#define COUNTS_MAP(name)                                                  \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_HASH);                          \
		__uint(max_entries, COUNTS_MAP_ENTRIES);                  \
		__type(key, struct count_key);                            \
		__type(value, struct count_value);                        \
	} name SEC(".maps")

STACK_MAP(stacks0);
STACK_MAP(stacks1);
COUNTS_MAP(counts0);
COUNTS_MAP(counts1);

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

static __always_inline void count_stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		(*v)++;
}

/* self_exec_id is u64 since Linux 5.7 (u32 before); on either, its low 32 bits are enough to tell
 * the images of one process apart (x86-64 is little-endian, so they are the first 4 bytes). */
static __always_inline __u32 exec_id_of(struct task_struct *task)
{
	return (__u32)BPF_CORE_READ(task, self_exec_id);
}

static __always_inline void fill_comms(char *comm, char *process_comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	bpf_get_current_comm(comm, TASK_COMM_LEN);
	BPF_CORE_READ_STR_INTO((char(*)[TASK_COMM_LEN])process_comm, task, group_leader, comm);
}

/* Slow path: the whole sample, both stacks copied, through the ring buffer. */
static __always_inline void send_whole_sample(struct bpf_perf_event_data *ctx, __u32 tgid, __u32 tid)
{
	struct sample_event *e;
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
	e->exec_id = exec_id_of((struct task_struct *)bpf_get_current_task());
	e->pad = 0;
	if (collect_kernel_stacks) {
		n = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
		e->kstack_bytes = n > 0 ? n : 0;
	}
	if (collect_user_stacks) {
		n = bpf_get_stack(ctx, e->ustack, sizeof(e->ustack), BPF_F_USER_STACK);
		e->ustack_bytes = n > 0 ? n : 0;
	}
	fill_comms(e->comm, e->process_comm);
	bpf_ringbuf_submit(e, 0);
	count_stat(STAT_RINGBUF_SENT);
}

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

static __always_inline int record_sample(struct bpf_perf_event_data *ctx, __u32 tgid, __u32 tid,
					 void *stacks, void *counts)
{
	struct count_key key = {
		.tgid = tgid,
		.tid = tid,
		.kstack_id = -1,
		.ustack_id = -1,
		.exec_id = exec_id_of((struct task_struct *)bpf_get_current_task()),
	};
	struct count_value *val, init = {};
	long id;

	if (collect_kernel_stacks) {
		id = stack_id(ctx, stacks, 0, STAT_KSTACK_ERROR);
		if (id == -EEXIST || id == -ENOMEM) {
			count_stat(STAT_KSTACK_COLLISION);
			send_whole_sample(ctx, tgid, tid);
			return 0;
		}
		key.kstack_id = id;
	}
	if (collect_user_stacks) {
		id = stack_id(ctx, stacks, BPF_F_USER_STACK, STAT_USTACK_ERROR);
		if (id == -EEXIST || id == -ENOMEM) {
			count_stat(STAT_USTACK_COLLISION);
			send_whole_sample(ctx, tgid, tid);
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
			send_whole_sample(ctx, tgid, tid);
			return 0;
		}
	}
	__sync_fetch_and_add(&val->samples, 1);
	__sync_fetch_and_add(&val->cpu_ns, ctx->sample_period);
	count_stat(STAT_AGGREGATED);
	return 0;
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
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
		return record_sample(ctx, tgid, tid, &stacks1, &counts1);
	return record_sample(ctx, tgid, tid, &stacks0, &counts0);
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
	e->exec_id = exec_id_of(task);
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
	send_process_event(PROCESS_FORK, child, child_tgid, parent_tgid);
	return 0;
}

/* Tells user space that a sampled process exec'd, so it reads the new image's mappings while the
 * process still exists. */
SEC("raw_tp/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);

	if (filter_mode == FILTER_TARGETS && !bpf_map_lookup_elem(&targets, &tgid))
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

	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		bpf_map_delete_elem(&targets, &tgid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
