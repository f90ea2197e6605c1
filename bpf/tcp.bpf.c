// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TCP connections: connect latency and failed connects (state changes), lifetime, bytes, RTT
 * (tcp_probe), retransmits and resets, reported per connection through a ring buffer.
 *
 * Each hook has one shared handler and one-line wrappers per attach method: tp_btf (typed, no
 * tracefs, cheapest), the classic tracepoint, raw_tp, and for kernels without the tracepoint fentry
 * or kprobe on the kernel function behind it. The loader enables one method per hook and disables
 * the rest (src/trace/attach.ts). Every handler reads what it needs from the socket with CO-RE, so
 * all methods report the same thing.
 *
 * The owning process is known in process context only: at connect() (SYN_SENT) for active
 * connections, at close()/shutdown() (FIN_WAIT1, LAST_ACK) for accepted ones.
 */
#include "vmlinux/x86/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.bpf.h"
#include "tcp.h"

#define AF_INET 2
#define AF_INET6 10
/* enum sock_flags: set by tcp_fin() when the peer's FIN arrived. */
#define SOCK_DONE 1

const volatile __u32 targ_tgid = 0; /* 0: every process */
/*
 * Waking the reader at every event costs a cross-CPU wakeup per connection (it doubled the cost of
 * the state-change program under wrk). With batch_wakeups, events wake the reader only once
 * WAKEUP_BYTES are waiting; flush_events, run at 10 Hz by a cpu-clock perf event, wakes it for
 * whatever is left, so an event waits at most ~100 ms.
 */
const volatile bool batch_wakeups = false;
#define WAKEUP_BYTES (64 * 1024)

/*
 * Reads through a kernel pointer. tp_btf and fentry programs get BTF-typed pointers the verifier
 * lets them load from directly (a plain load); the others go through bpf_probe_read_kernel, which
 * costs far more per field. `direct` is a compile-time constant of each wrapper, so each handler is
 * compiled once per kind and the other branch disappears.
 */
#define RD(direct, ptr, field) ((direct) ? (ptr)->field : BPF_CORE_READ(ptr, field))

STATS_MAP(stats, TCP_STAT__COUNT);
COUNT_STAT_FN(stats)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_SOCKS_ENTRIES);
	__type(key, __u64); /* struct sock * */
	__type(value, struct tcp_sock_info);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TCP_RINGBUF_BYTES);
} events SEC(".maps");

const struct tcp_event *unused_tcp_event __attribute__((unused));

static __always_inline __u64 submit_flags(void)
{
	if (!batch_wakeups)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* 10 Hz on one CPU: wakes the reader when events wait (a discarded 8-byte record carries the wakeup). */
SEC("perf_event")
int flush_events(struct bpf_perf_event_data *ctx)
{
	void *r;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) == 0)
		return 0;
	r = bpf_ringbuf_reserve(&events, 8, 0);
	if (r)
		bpf_ringbuf_discard(r, BPF_RB_FORCE_WAKEUP);
	return 0;
}

static __always_inline void set_owner(struct tcp_sock_info *i)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	i->tgid = bpf_get_current_pid_tgid() >> 32;
	i->proc_start_ns = process_start_ns(task);
	BPF_CORE_READ_STR_INTO(&i->comm, task, group_leader, comm);
}

static __always_inline void fill_addrs(struct tcp_event *e, const struct sock *sk, bool direct)
{
	e->family = RD(direct, sk, __sk_common.skc_family);
	e->sport = RD(direct, sk, __sk_common.skc_num);
	e->dport = __builtin_bswap16(RD(direct, sk, __sk_common.skc_dport));
	if (e->family == AF_INET6) {
		if (direct) {
			__builtin_memcpy(e->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
			__builtin_memcpy(e->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
		} else {
			BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
			BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		}
	} else {
		*(__u32 *)e->saddr = RD(direct, sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)e->daddr = RD(direct, sk, __sk_common.skc_daddr);
	}
}

/* The tcp_sock behind a sock: a checked cast for BTF pointers, a plain one for probed reads. */
static __always_inline const struct tcp_sock *tcp_sk_of(const struct sock *sk, bool direct)
{
	if (direct)
		return bpf_skc_to_tcp_sock((void *)sk);
	return (const struct tcp_sock *)sk;
}

static __always_inline void emit(__u32 type, const struct sock *sk, struct tcp_sock_info *i, int oldstate, __u64 now, bool direct)
{
	const struct tcp_sock *tp = tcp_sk_of(sk, direct);
	struct tcp_event *e;

	if (targ_tgid != 0 && i->tgid != targ_tgid) {
		count_stat(TCP_STAT_FILTERED);
		return;
	}
	if (!tp)
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_stat(TCP_STAT_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->tgid = i->tgid;
	e->proc_start_ns = i->proc_start_ns;
	e->time_ns = now;
	e->connect_ns = i->connect_ns;
	e->role = i->role;
	e->oldstate = oldstate;
	if (type == TCP_EV_CLOSE && i->birth_ns)
		e->lifetime_ns = now - i->birth_ns;
	if (type != TCP_EV_CONNECT) {
		/* bytes_acked and bytes_received count sequence numbers (RFC 4898), so the SYN of an
		 * active connect, our acknowledged FIN and the peer's FIN are taken out: data bytes. */
		__u64 acked = RD(direct, tp, bytes_acked), received = RD(direct, tp, bytes_received);

		if (i->role == TCP_ROLE_ACTIVE && i->connect_ns && acked)
			acked--;
		if (i->fin_sent && acked && RD(direct, tp, snd_una) == RD(direct, tp, write_seq))
			acked--;
		if ((RD(direct, sk, __sk_common.skc_flags) & (1UL << SOCK_DONE)) && received)
			received--;
		e->bytes_acked = acked;
		e->bytes_received = received;
		e->total_retrans = RD(direct, tp, total_retrans);
		e->error = RD(direct, sk, sk_err);
	}
	e->srtt_us = RD(direct, tp, srtt_us) >> 3;
	e->rtt_sum_us = i->rtt_sum_us;
	e->rtt_count = i->rtt_count;
	e->rtt_min_us = i->rtt_min_us;
	e->rtt_max_us = i->rtt_max_us;
	e->retransmits = i->retransmits;
	e->resets_received = i->resets_received;
	e->resets_sent = i->resets_sent;
	fill_addrs(e, sk, direct);
	if (e->sport == 0)
		e->sport = i->lport;
	__builtin_memcpy(e->comm, i->comm, TASK_COMM_LEN);
	bpf_ringbuf_submit(e, submit_flags());
}

/* protocol < 0: read it from the socket (hooks whose arguments do not carry it). */
static __always_inline int handle_set_state(const struct sock *sk, int oldstate, int newstate, int protocol, bool direct)
{
	__u64 key = (__u64)sk, now = bpf_ktime_get_ns();
	struct tcp_sock_info *i, init = {};

	if (protocol < 0)
		protocol = direct ? BPF_CORE_READ_BITFIELD(sk, sk_protocol) : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	if (protocol != IPPROTO_TCP)
		return 0;
	count_stat(TCP_STAT_STATE_CHANGES);
	i = bpf_map_lookup_elem(&socks, &key);

	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, the owner is current. */
		init.birth_ns = now;
		init.role = TCP_ROLE_ACTIVE;
		set_owner(&init);
		if (bpf_map_update_elem(&socks, &key, &init, BPF_ANY) != 0)
			count_stat(TCP_STAT_SOCKS_FULL);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_SENT) {
			if (!i)
				return 0;
			i->lport = RD(direct, sk, __sk_common.skc_num);
			i->connect_ns = now - i->birth_ns;
			count_stat(TCP_STAT_CONNECTS);
			emit(TCP_EV_CONNECT, sk, i, oldstate, now, direct);
			return 0;
		}
		if (oldstate == TCP_SYN_RECV && !i) {
			/* An accepted connection: its process is known once it closes the socket. */
			init.birth_ns = now;
			init.role = TCP_ROLE_PASSIVE;
			init.lport = RD(direct, sk, __sk_common.skc_num);
			if (bpf_map_update_elem(&socks, &key, &init, BPF_ANY) != 0)
				count_stat(TCP_STAT_SOCKS_FULL);
		}
		return 0;
	}
	if (!i) {
		if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN && oldstate != TCP_CLOSE)
			count_stat(TCP_STAT_UNTRACKED);
		return 0;
	}
	/* close()/shutdown() by the local process: process context. */
	if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
		i->fin_sent = 1;
		if (i->tgid == 0)
			set_owner(i);
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (oldstate == TCP_SYN_SENT) {
		count_stat(TCP_STAT_CONNECT_FAILURES);
		emit(TCP_EV_CONNECT_FAILED, sk, i, oldstate, now, direct);
	} else {
		count_stat(TCP_STAT_CLOSES);
		emit(TCP_EV_CLOSE, sk, i, oldstate, now, direct);
	}
	bpf_map_delete_elem(&socks, &key);
	return 0;
}

static __always_inline int handle_probe(const struct sock *sk, bool direct)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_info *i = bpf_map_lookup_elem(&socks, &key);
	const struct tcp_sock *tp;
	__u32 srtt;

	if (!i)
		return 0;
	tp = tcp_sk_of(sk, direct);
	if (!tp)
		return 0;
	srtt = RD(direct, tp, srtt_us) >> 3;
	if (srtt == 0)
		return 0;
	count_stat(TCP_STAT_RTT_SAMPLES);
	/* Updates of one socket are serialized by its lock; no atomics needed. */
	i->rtt_sum_us += srtt;
	i->rtt_count++;
	i->rtt_last_us = srtt;
	if (i->rtt_min_us == 0 || srtt < i->rtt_min_us)
		i->rtt_min_us = srtt;
	if (srtt > i->rtt_max_us)
		i->rtt_max_us = srtt;
	return 0;
}

static __always_inline int handle_retransmit(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_info *i = bpf_map_lookup_elem(&socks, &key);

	count_stat(TCP_STAT_RETRANSMITS);
	if (i)
		__sync_fetch_and_add(&i->retransmits, 1);
	return 0;
}

static __always_inline int handle_receive_reset(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_info *i = bpf_map_lookup_elem(&socks, &key);

	count_stat(TCP_STAT_RESETS_RECEIVED);
	if (i)
		i->resets_received++;
	return 0;
}

static __always_inline int handle_send_reset(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_sock_info *i;

	/* A reset answering a segment for no socket has no sk. */
	if (!sk)
		return 0;
	count_stat(TCP_STAT_RESETS_SENT);
	i = bpf_map_lookup_elem(&socks, &key);
	if (i)
		i->resets_sent++;
	return 0;
}

/* Extra where fentry or kprobes exist: the process that accepted a connection owns it from accept(),
 * not only from its close (which a reset may pre-empt). */
static __always_inline int handle_accept(struct sock *newsk)
{
	__u64 key = (__u64)newsk;
	struct tcp_sock_info *i;

	if (!newsk)
		return 0;
	i = bpf_map_lookup_elem(&socks, &key);
	if (i && i->tgid == 0)
		set_owner(i);
	return 0;
}

/* tp_btf: typed arguments of the tracepoints. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(btf_set_state, const struct sock *sk, int oldstate, int newstate) { return handle_set_state(sk, oldstate, newstate, -1, true); }
SEC("tp_btf/tcp_probe")
int BPF_PROG(btf_probe, struct sock *sk, struct sk_buff *skb) { return handle_probe(sk, true); }
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(btf_retransmit, const struct sock *sk, const struct sk_buff *skb) { return handle_retransmit(sk); }
SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(btf_receive_reset, struct sock *sk) { return handle_receive_reset(sk); }
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(btf_send_reset, const struct sock *sk, const struct sk_buff *skb) { return handle_send_reset(sk); }

/* Classic tracepoints: the record's pointer fields lead to the socket. */
SEC("tracepoint/sock/inet_sock_set_state")
int tp_set_state(struct trace_event_raw_inet_sock_set_state *ctx) { return handle_set_state(ctx->skaddr, ctx->oldstate, ctx->newstate, ctx->protocol, false); }
SEC("tracepoint/tcp/tcp_probe")
int tp_probe(struct trace_event_raw_tcp_probe *ctx) { return handle_probe(ctx->skaddr, false); }
SEC("tracepoint/tcp/tcp_retransmit_skb")
int tp_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx) { return handle_retransmit(ctx->skaddr); }
SEC("tracepoint/tcp/tcp_receive_reset")
int tp_receive_reset(struct trace_event_raw_tcp_event_sk *ctx) { return handle_receive_reset(ctx->skaddr); }
SEC("tracepoint/tcp/tcp_send_reset")
int tp_send_reset(struct trace_event_raw_tcp_send_reset *ctx) { return handle_send_reset(ctx->skaddr); }

/* raw_tp: the same arguments as tp_btf, read through probes. */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(raw_set_state, const struct sock *sk, int oldstate, int newstate) { return handle_set_state(sk, oldstate, newstate, -1, false); }
SEC("raw_tp/tcp_probe")
int BPF_PROG(raw_probe, struct sock *sk) { return handle_probe(sk, false); }
SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(raw_retransmit, const struct sock *sk) { return handle_retransmit(sk); }
SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(raw_receive_reset, struct sock *sk) { return handle_receive_reset(sk); }
SEC("raw_tp/tcp_send_reset")
int BPF_PROG(raw_send_reset, const struct sock *sk) { return handle_send_reset(sk); }

/* Kernel functions behind the tracepoints, for kernels that lack a tracepoint. */
SEC("fentry/tcp_set_state")
int BPF_PROG(fe_set_state, struct sock *sk, int state) { return handle_set_state(sk, sk->__sk_common.skc_state, state, IPPROTO_TCP, true); }
SEC("fentry/tcp_rcv_established")
int BPF_PROG(fe_probe, struct sock *sk) { return handle_probe(sk, true); }
SEC("fentry/tcp_retransmit_skb")
int BPF_PROG(fe_retransmit, struct sock *sk) { return handle_retransmit(sk); }
SEC("fentry/tcp_reset")
int BPF_PROG(fe_receive_reset, struct sock *sk) { return handle_receive_reset(sk); }

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(kp_set_state, struct sock *sk, int state) { return handle_set_state(sk, BPF_CORE_READ(sk, __sk_common.skc_state), state, IPPROTO_TCP, false); }
SEC("kprobe/tcp_rcv_established")
int BPF_KPROBE(kp_probe, struct sock *sk) { return handle_probe(sk, false); }
SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(kp_retransmit, struct sock *sk) { return handle_retransmit(sk); }
SEC("kprobe/tcp_reset")
int BPF_KPROBE(kp_receive_reset, struct sock *sk) { return handle_receive_reset(sk); }

/* inet_csk_accept(sk, arg) since Linux 6.10 (flags, err, kern before): fexit needs the exact
 * signature, kretprobe reads only the return value and serves either. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(fx_accept, struct sock *sk, struct proto_accept_arg *arg, struct sock *newsk) { return handle_accept(newsk); }
SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kr_accept, struct sock *newsk) { return handle_accept(newsk); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
