/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel ABI of the tracing object (trace.c): its map keys and values and
 * their limits. Mirrored in exactly one TypeScript module,
 * datapath/trace-abi.ts; test/trace-abi.test.ts compares the two through BTF.
 *
 * Every map is keyed by the inode number of a socket's network namespace
 * (sk->__sk_common.skc_net.net->ns.inum, a __u32), which is what stat(2)
 * gives for the netns path the CNI plugin registered: the agent finds the pod
 * by it. Entries are per CPU (no atomics on the per-ACK RTT path) and summed
 * by the agent.
 */
#ifndef SLUICE_TRACE_H
#define SLUICE_TRACE_H

#include <linux/types.h>

/* Enums, not #defines: BTF carries their values, so the mirror is checked. */
enum sluice_trace_limits {
	/* Network namespaces per map. A pod's entries leave with its endpoint;
	 * past this, events of new namespaces are not counted (see trace_stats). */
	SLUICE_TRACE_MAX_NETNS = 4096,
	/* RTT histogram buckets: bucket i counts samples in [2^i, 2^(i+1)) µs (bucket 0 also 0 µs). */
	SLUICE_RTT_BUCKETS = 32,
};

/*
 * TCP events of one network namespace (map tcp_counters), from
 * tp_btf/tcp_retransmit_skb and tp_btf/inet_sock_set_state, TCP sockets only
 * (IPv4 and IPv6). A socket's transitions, and what each counts:
 *
 *   retransmits     retransmissions: each time the kernel's tcp_retransmit_skb
 *                   sends a queued skb again (timeouts, fast retransmit,
 *                   tail-loss probes, a connect's SYN). One skb is one segment,
 *                   except in a fast retransmit of a coalesced skb, so this is at
 *                   most the namespace's Tcp RetransSegs. Kernels whose
 *                   tracepoint carries `err` (6.1x on) also trace an attempt the
 *                   device refused (rare: the previous copy still queued).
 *                   SYN-ACKs of a listener are not counted (their own tracepoint).
 *   opened_active   SYN_SENT -> ESTABLISHED: a connect() that succeeded.
 *   opened_passive  SYN_RECV -> ESTABLISHED: a connection accepted by a listener.
 *   closed          a synchronized state (ESTABLISHED, FIN_WAIT1/2, CLOSING,
 *                   TIME_WAIT, CLOSE_WAIT, LAST_ACK) -> CLOSE, not by a reset
 *                   received: orderly shutdowns, local aborts (an RST this side
 *                   sends, e.g. close() with unread data), retransmission timeouts.
 *   reset           the same transitions, caused by an RST received: tcp_reset()
 *                   sets sk_err to ECONNRESET (EPIPE in CLOSE_WAIT) just before
 *                   the socket goes to CLOSE, and the program reads it there.
 *   failed          SYN_SENT or SYN_RECV -> CLOSE: a connection that never
 *                   became established (refused, timed out, unreachable, or
 *                   closed by its owner before it completed).
 *
 * A connection counts once in opened_* and once in closed, reset or failed
 * on each side that has a socket; LISTEN sockets count nothing.
 */
struct tcp_counters {
	__u64 retransmits;
	__u64 opened_active;
	__u64 opened_passive;
	__u64 closed;
	__u64 reset;
	__u64 failed;
};

/* Round-trip time samples of one network namespace (map tcp_rtt), from sockops BPF_SOCK_OPS_RTT_CB: each measured RTT (not the smoothed one). */
struct tcp_rtt_hist {
	__u64 count;
	__u64 sum_us;
	__u64 log2_us[SLUICE_RTT_BUCKETS];
};

/* Indexes of the per-CPU array trace_stats: events the programs could not count. */
enum sluice_trace_stat {
	/* An event of a network namespace with no entry in a full tcp_counters. */
	SLUICE_TRACE_STAT_COUNTERS_FULL,
	/* An RTT sample of a network namespace with no entry in a full tcp_rtt. */
	SLUICE_TRACE_STAT_RTT_FULL,
	SLUICE_TRACE_STAT_MAX,
};

#endif /* SLUICE_TRACE_H */
