// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Feature probes for `ebpfprof doctor` (src/system/kernel-features.ts): one tiny program per
 * attach method. User space loads exactly one of them per open of this object (autoload off for
 * the rest), attaches it, provokes its event, waits until `hits` moves, then closes the object.
 * A probe therefore proves load + attach + delivery on this kernel, not just "the syscall exists",
 * and nothing stays attached afterwards.
 *
 * Every program counts into hits[0]: only one program is loaded per object instance, so one
 * counter is unambiguous and user space needs no shared index table.
 *
 * Caveat: libbpf creates every map of the object at load, whichever programs are loaded. A kernel
 * without BPF ring buffers (< 5.8) therefore fails every probe at map creation; ebpfprof cannot
 * run there anyway (profile.bpf.c needs a ring buffer), and doctor says so.
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* Small on purpose: a probe only needs to show that the map type exists and works. */
#define PROBE_STACK_ENTRIES 64
#define PROBE_STACK_DEPTH 32
#define PROBE_RINGBUF_BYTES (64 * 1024)
/* The ring-buffer probe sends this many records at most: its own polling thread is part of the
 * process, and every record it wakes up for would otherwise cause another one. */
#define PROBE_RINGBUF_RECORDS 4

/* Only the ring-buffer probe reads it: records are sent for this process only, so the probe
 * cannot flood user space with every context switch of the host. */
const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, PROBE_STACK_ENTRIES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PROBE_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROBE_RINGBUF_BYTES);
} events SEC(".maps");

static __always_inline int hit(void)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&hits, &zero);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

/* CPU sampling: what profile.bpf.c attaches to cpu-clock on every CPU. */
SEC("perf_event")
int probe_perf(struct bpf_perf_event_data *ctx)
{
	return hit();
}

/* Stack maps: counted only when a kernel stack id really came back. Every cpu-clock sample
 * interrupts kernel or user code; kernel-mode samples (idle included) have a kernel stack. */
SEC("perf_event")
int probe_stack(struct bpf_perf_event_data *ctx)
{
	if (bpf_get_stackid(ctx, &stacks, 0) >= 0)
		hit();
	return 0;
}

/* Classic tracepoint: its id is read from tracefs, so this also proves tracefs is usable. */
SEC("tracepoint/sched/sched_switch")
int probe_tp(void *ctx)
{
	return hit();
}

/* Raw tracepoint: needs neither tracefs nor BTF-typed attach (kernel >= 4.17). */
SEC("raw_tp/sched_switch")
int probe_raw_tp(void *ctx)
{
	return hit();
}

/* BTF-typed tracepoint: raw tracepoint with typed, directly readable arguments (kernel >= 5.5). */
SEC("tp_btf/sched_switch")
int probe_tp_btf(__u64 *ctx)
{
	return hit();
}

/* fentry needs a BPF trampoline (JIT + ftrace direct calls). vfs_read: present on every kernel,
 * traceable, and user space triggers it with a plain file read. */
SEC("fentry/vfs_read")
int probe_fentry(__u64 *ctx)
{
	return hit();
}

/* Same function through a kprobe: fails on kernels built without CONFIG_KPROBE_EVENTS. */
SEC("kprobe/vfs_read")
int probe_kprobe(struct pt_regs *ctx)
{
	return hit();
}

/* Attached by user space to a libc function of its own process only (pid filter), so no other
 * process gets a breakpoint. */
SEC("uprobe")
int probe_uprobe(struct pt_regs *ctx)
{
	return hit();
}

/* Ring buffer round trip: kernel -> ring -> addon polling thread -> JavaScript. Uses a raw
 * tracepoint because every kernel with ring buffers (>= 5.8) has raw tracepoints. */
SEC("raw_tp/sched_switch")
int probe_ringbuf(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	__u64 *sent;
	__u32 *e;

	if (tgid != target_tgid)
		return 0;
	/* Plain read, not an atomic fetch: BPF_FETCH needs 5.12, ring buffers only 5.8. A race
	 * costs one extra record at most. */
	sent = bpf_map_lookup_elem(&hits, &zero);
	if (!sent || *sent >= PROBE_RINGBUF_RECORDS)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	*e = tgid;
	bpf_ringbuf_submit(e, 0);
	__sync_fetch_and_add(sent, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
