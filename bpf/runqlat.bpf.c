// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Run-queue latency: the time from a task becoming runnable (sched_wakeup, sched_wakeup_new, or
 * being preempted while runnable) to it running (sched_switch), as log2 histograms per CPU and per
 * process. The histograms come in two sets; user space flips control.active_set and reads and
 * clears the idle set, so no update is lost to a concurrent read.
 *
 * Attach: tp_btf first (typed task pointers give the woken task's thread group, which the classic
 * tracepoints' records do not carry), raw_tp as the alternative. Each hook is a one-line wrapper
 * around one shared function.
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.bpf.h"
#include "runqlat.h"

const volatile __u32 targ_tgid = 0; /* 0: every process */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runq_control);
} control SEC(".maps");

STATS_MAP(stats, RQ_STAT__COUNT);
COUNT_STAT_FN(stats)

/* tid -> when it became runnable (ns). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNQ_START_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} start SEC(".maps");

#define CPU_HISTS(name)                                                   \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_ARRAY);                         \
		__uint(max_entries, RUNQ_MAX_CPUS);                       \
		__type(key, __u32);                                       \
		__type(value, struct runq_hist);                          \
	} name SEC(".maps")

#define PROC_HISTS(name)                                                  \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_HASH);                          \
		__uint(max_entries, RUNQ_PROC_ENTRIES);                   \
		__type(key, struct runq_proc_key);                        \
		__type(value, struct runq_hist);                          \
	} name SEC(".maps")

CPU_HISTS(cpu_hists0);
CPU_HISTS(cpu_hists1);
PROC_HISTS(proc_hists0);
PROC_HISTS(proc_hists1);

/* An all-zero histogram to create rows from (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runq_hist);
} zero_hist SEC(".maps");

static __always_inline void add_to(struct runq_hist *h, __u64 delta, __u32 slot)
{
	if (slot >= RUNQ_SLOTS)
		return;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, delta);
	/* Racy but monotonic enough: a concurrent larger max may be overwritten by a smaller one only
	 * when both land in the same instant on two CPUs. */
	if (delta > h->max_ns)
		h->max_ns = delta;
}

static __always_inline bool wanted(struct task_struct *t)
{
	return targ_tgid == 0 || BPF_CORE_READ(t, tgid) == targ_tgid;
}

static __always_inline void enqueue(struct task_struct *t)
{
	__u32 tid = BPF_CORE_READ(t, pid);
	__u64 ts;

	if (tid == 0)
		return;
	if (!wanted(t)) {
		count_stat(RQ_STAT_FILTERED);
		return;
	}
	ts = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&start, &tid, &ts, BPF_ANY) == 0)
		count_stat(RQ_STAT_ENQUEUED);
	else
		count_stat(RQ_STAT_START_FULL);
}

static __always_inline int handle_wakeup(struct task_struct *t)
{
	enqueue(t);
	return 0;
}

static __always_inline int handle_switch(struct task_struct *prev, struct task_struct *next)
{
	__u32 tid = BPF_CORE_READ(next, pid), zero = 0, cpu;
	struct runq_proc_key pkey = {};
	struct runq_control *ctl;
	struct runq_hist *h;
	__u64 *tsp, delta;
	void *cpus, *procs;
	__u32 slot;

	/* A task switched out while still runnable (preempted) waits in the run queue from now on. */
	if (task_state(prev) == TASK_RUNNING)
		enqueue(prev);
	if (tid == 0)
		return 0;
	tsp = bpf_map_lookup_elem(&start, &tid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &tid);
	if ((__s64)delta < 0)
		return 0;
	slot = log2_slot(delta, RUNQ_SLOTS);
	count_stat(RQ_STAT_LATENCIES);

	ctl = bpf_map_lookup_elem(&control, &zero);
	if (ctl && ctl->active_set == 1) {
		cpus = &cpu_hists1;
		procs = &proc_hists1;
	} else {
		cpus = &cpu_hists0;
		procs = &proc_hists0;
	}
	cpu = bpf_get_smp_processor_id();
	h = bpf_map_lookup_elem(cpus, &cpu);
	if (h)
		add_to(h, delta, slot);
	else
		count_stat(RQ_STAT_CPU_OUT_OF_RANGE);

	pkey.tgid = BPF_CORE_READ(next, tgid);
	pkey.start_ns = process_start_ns(next);
	h = bpf_map_lookup_elem(procs, &pkey);
	if (!h) {
		struct runq_hist *init = bpf_map_lookup_elem(&zero_hist, &zero);

		if (!init)
			return 0;
		BPF_CORE_READ_STR_INTO(&init->comm, next, group_leader, comm);
		/* BPF_NOEXIST: another CPU may have created the row in between; then use its row. */
		bpf_map_update_elem(procs, &pkey, init, BPF_NOEXIST);
		h = bpf_map_lookup_elem(procs, &pkey);
		if (!h) {
			count_stat(RQ_STAT_PROC_FULL);
			return 0;
		}
	}
	add_to(h, delta, slot);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(btf_wakeup, struct task_struct *p) { return handle_wakeup(p); }
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(btf_wakeup_new, struct task_struct *p) { return handle_wakeup(p); }
SEC("tp_btf/sched_switch")
int BPF_PROG(btf_switch, bool preempt, struct task_struct *prev, struct task_struct *next) { return handle_switch(prev, next); }

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_wakeup, struct task_struct *p) { return handle_wakeup(p); }
SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(raw_wakeup_new, struct task_struct *p) { return handle_wakeup(p); }
SEC("raw_tp/sched_switch")
int BPF_PROG(raw_switch, bool preempt, struct task_struct *prev, struct task_struct *next) { return handle_switch(prev, next); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
