// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Process lifecycle: fork, exec and exit of every process, through one ring buffer, so that user
 * space tracks processes once for every tracer (src/process/lifecycle.ts): symbol caches are dropped
 * on exec, per-process state is freed on exit, and a reused pid is told apart by its start time.
 * raw_tp first (no tracefs, no BTF-typed attach needed), tp_btf as the alternative; the loader
 * disables the set it does not use.
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.bpf.h"
#include "lifecycle.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LIFECYCLE_RINGBUF_BYTES);
} events SEC(".maps");

STATS_MAP(stats, LC_STAT__COUNT);
COUNT_STAT_FN(stats)

const struct lifecycle_event *unused_lifecycle_event __attribute__((unused));

static __always_inline void send_event(__u32 type, struct task_struct *task, __u32 ppid, __s32 exit_code)
{
	struct lifecycle_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_stat(LC_STAT_RINGBUF_FULL);
		return;
	}
	e->type = type;
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = ppid;
	e->exec_id = task_exec_id(task);
	e->start_ns = process_start_ns(task);
	e->time_ns = bpf_ktime_get_ns();
	e->exit_code = exit_code;
	e->pad = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int handle_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);

	if (ptgid == BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a process */
	count_stat(LC_STAT_FORKS);
	send_event(LIFECYCLE_FORK, child, ptgid, 0);
	return 0;
}

static __always_inline int handle_exec(struct task_struct *task)
{
	count_stat(LC_STAT_EXECS);
	send_event(LIFECYCLE_EXEC, task, BPF_CORE_READ(task, real_parent, tgid), 0);
	return 0;
}

/* sched_process_exit fires per thread; do_exit() decrements signal->live first, so zero means the
 * last thread of the group is leaving. */
static __always_inline int handle_exit(struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	count_stat(LC_STAT_EXITS);
	send_event(LIFECYCLE_EXIT, task, BPF_CORE_READ(task, real_parent, tgid), BPF_CORE_READ(task, exit_code));
	return 0;
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(raw_fork, struct task_struct *parent, struct task_struct *child) { return handle_fork(parent, child); }
SEC("raw_tp/sched_process_exec")
int BPF_PROG(raw_exec, struct task_struct *task) { return handle_exec(task); }
SEC("raw_tp/sched_process_exit")
int BPF_PROG(raw_exit, struct task_struct *task) { return handle_exit(task); }

SEC("tp_btf/sched_process_fork")
int BPF_PROG(btf_fork, struct task_struct *parent, struct task_struct *child) { return handle_fork(parent, child); }
SEC("tp_btf/sched_process_exec")
int BPF_PROG(btf_exec, struct task_struct *task) { return handle_exec(task); }
SEC("tp_btf/sched_process_exit")
int BPF_PROG(btf_exit, struct task_struct *task) { return handle_exit(task); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
