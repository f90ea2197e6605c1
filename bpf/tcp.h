/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Structures shared by tcp.bpf.c and src/trace/tcp-records.ts. */
#ifndef __EBPFPROF_TCP_H
#define __EBPFPROF_TCP_H

#define TASK_COMM_LEN 16
#define TCP_SOCKS_ENTRIES 65536
#define TCP_RINGBUF_BYTES (4 * 1024 * 1024)

enum tcp_stat {
	TCP_STAT_STATE_CHANGES = 0, /* TCP state changes seen */
	TCP_STAT_CONNECTS,          /* active connects that completed */
	TCP_STAT_CONNECT_FAILURES,  /* active connects that ended before ESTABLISHED */
	TCP_STAT_CLOSES,            /* connections reported at close */
	TCP_STAT_FILTERED,          /* events of other processes than the target, left out */
	TCP_STAT_SOCKS_FULL,        /* connections not tracked: socks map full */
	TCP_STAT_RTT_SAMPLES,       /* tcp_probe RTT samples */
	TCP_STAT_RETRANSMITS,       /* retransmitted segments */
	TCP_STAT_RESETS_RECEIVED,
	TCP_STAT_RESETS_SENT,
	TCP_STAT_UNTRACKED,         /* events on sockets opened before tracing started (counted, no row) */
	TCP_STAT_RINGBUF_FULL,      /* events lost: ring buffer full */
	TCP_STAT__COUNT,
};

/* Values of tcp_event.type. */
#define TCP_EV_CONNECT 1        /* SYN_SENT -> ESTABLISHED: connect latency */
#define TCP_EV_CONNECT_FAILED 2 /* SYN_SENT -> CLOSE */
#define TCP_EV_CLOSE 3          /* an established connection closed: lifetime, bytes, RTT, ... */

/* Values of role. */
#define TCP_ROLE_UNKNOWN 0 /* opened before tracing started */
#define TCP_ROLE_ACTIVE 1  /* we connected */
#define TCP_ROLE_PASSIVE 2 /* we accepted */

/* What is kept per socket between its state changes (key: the struct sock address). */
struct tcp_sock_info {
	__u64 birth_ns;        /* SYN_SENT (active) or ESTABLISHED (passive), 0 if unknown */
	__u64 connect_ns;      /* handshake time of an active connect */
	__u64 proc_start_ns;   /* start of the owning process: (tgid, start) names one process */
	__u64 rtt_sum_us;
	__u32 tgid;            /* 0 while unknown (passive sockets until the process closes them) */
	__u32 rtt_count;
	__u32 rtt_min_us;
	__u32 rtt_max_us;
	__u32 rtt_last_us;
	__u32 retransmits;
	__u16 resets_received;
	__u16 resets_sent;
	__u8 role;
	__u8 fin_sent;         /* we sent a FIN (FIN_WAIT1 or LAST_ACK seen) */
	__u16 lport;           /* local port once established (the socket loses it at close) */
	char comm[TASK_COMM_LEN];
};

struct tcp_event {
	__u32 type;
	__u32 tgid;            /* 0: not known (a passive socket reset before its process touched it) */
	__u64 proc_start_ns;
	__u64 time_ns;         /* bpf_ktime_get_ns() of the event */
	__u64 connect_ns;      /* CONNECT/CLOSE of active connections: SYN sent to established */
	__u64 lifetime_ns;     /* CLOSE: birth to close, 0 if the birth was not seen */
	__u64 bytes_acked;     /* CLOSE: data bytes we sent that the peer acknowledged (SYN and FIN not counted) */
	__u64 bytes_received;  /* CLOSE: data bytes received (the peer's FIN not counted) */
	__u64 rtt_sum_us;      /* tcp_probe samples: sum, count, min, max, last (smoothed RTT, us) */
	__u32 rtt_count;
	__u32 rtt_min_us;
	__u32 rtt_max_us;
	__u32 srtt_us;         /* the socket's smoothed RTT at the event */
	__u32 retransmits;     /* tcp_retransmit_skb events of this connection */
	__u32 total_retrans;   /* the kernel's own count (tcp_sock.total_retrans) */
	__u16 resets_received;
	__u16 resets_sent;
	__u16 family;          /* AF_INET (2) or AF_INET6 (10) */
	__u16 sport;           /* host byte order */
	__u16 dport;
	__u8 role;
	__u8 oldstate;
	__s32 error;           /* CONNECT_FAILED/CLOSE: sk_err (ECONNREFUSED, ETIMEDOUT, ...) */
	__u8 saddr[16];        /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[TASK_COMM_LEN];
};

#endif /* __EBPFPROF_TCP_H */
