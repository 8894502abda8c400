// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice's tracing object: TCP health per network namespace, that is per pod.
 * A second object beside the datapath (datapath.c), loaded and pinned by the
 * agent under <bpf-dir>/trace (datapath/trace-loader.ts), its links pinned so
 * they outlive an agent restart. Map layouts: trace.h.
 *
 *   tcp_retransmit   tp_btf/tcp_retransmit_skb     retransmitted segments
 *   tcp_state        tp_btf/inet_sock_set_state    opened, closed, reset, failed
 *   tcp_rtt          sockops, at the root of the cgroup v2 hierarchy:
 *                    asks for BPF_SOCK_OPS_RTT_CB on every connection it sees
 *                    established, then logs each RTT sample
 *
 * Kernel structures are read with CO-RE through the minimal definitions
 * below (preserve_access_index): libbpf relocates each field against the
 * running kernel's BTF, so no vmlinux.h is needed to build.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The kernel's structures, only the fields read here. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct sk_buff;
struct tcp_sock;

/* include/net/tcp_states.h */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT,
	TCP_SYN_RECV,
	TCP_FIN_WAIT1,
	TCP_FIN_WAIT2,
	TCP_TIME_WAIT,
	TCP_CLOSE,
	TCP_CLOSE_WAIT,
	TCP_LAST_ACK,
	TCP_LISTEN,
	TCP_CLOSING,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SLUICE_TRACE_MAX_NETNS);
	__type(key, __u32);
	__type(value, struct tcp_counters);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tcp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SLUICE_TRACE_MAX_NETNS);
	__type(key, __u32);
	__type(value, struct tcp_rtt_hist);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tcp_rtt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_TRACE_STAT_MAX);
	__type(key, enum sluice_trace_stat);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} trace_stats SEC(".maps");

/* Puts enum sluice_trace_limits in the BTF, where test/trace-abi.test.ts reads it (an enum only used in constants leaves no trace). */
const volatile enum sluice_trace_limits sluice_trace_limits_btf_anchor = SLUICE_TRACE_MAX_NETNS;

static __always_inline void count_stat(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&trace_stats, &stat);

	if (n)
		*n += 1;
}

/* The network namespace inode of a socket; 0 when unreadable. */
static __always_inline __u32 netns_of(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * This CPU's slot of the entry for `netns` in a per-CPU hash, created zeroed
 * when absent; NULL (counted as `full_stat`) when the map has no room.
 */
static __always_inline void *netns_entry(void *map, __u32 netns, const void *zero, __u32 full_stat)
{
	void *entry = bpf_map_lookup_elem(map, &netns);

	if (entry)
		return entry;
	/* EEXIST: another CPU created it meanwhile; the lookup below finds it. */
	if (bpf_map_update_elem(map, &netns, zero, BPF_NOEXIST) == -E2BIG) {
		count_stat(full_stat);
		return NULL;
	}
	return bpf_map_lookup_elem(map, &netns);
}

static __always_inline struct tcp_counters *counters_of(const struct sock *sk)
{
	struct tcp_counters zero = {};
	__u32 netns = netns_of(sk);

	if (netns == 0)
		return NULL;
	return netns_entry(&tcp_counters, netns, &zero, SLUICE_TRACE_STAT_COUNTERS_FULL);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_counters *c = counters_of(sk);

	if (c)
		c->retransmits++;
	return 0;
}

static __always_inline int synchronized(int state)
{
	switch (state) {
	case TCP_ESTABLISHED:
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_TIME_WAIT:
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
		return 1;
	}
	return 0;
}

/* The transitions counted, as trace.h defines them. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct tcp_counters *c;
	int err;

	if (oldstate == newstate || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
			return 0;
		c = counters_of(sk);
		if (!c)
			return 0;
		if (oldstate == TCP_SYN_SENT)
			c->opened_active++;
		else
			c->opened_passive++;
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
		c = counters_of(sk);
		if (c)
			c->failed++;
		return 0;
	}
	if (!synchronized(oldstate))
		return 0;
	c = counters_of(sk);
	if (!c)
		return 0;
	err = BPF_CORE_READ(sk, sk_err);
	if (err == ECONNRESET || err == EPIPE)
		c->reset++;
	else
		c->closed++;
	return 0;
}

/* floor(log2(v)) for v > 0, 0 for 0. */
static __always_inline __u32 log2_u32(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline void record_rtt(struct bpf_sock_ops *skops)
{
	struct tcp_rtt_hist zero = {};
	struct tcp_rtt_hist *h;
	struct bpf_sock *bsk = skops->sk;
	struct tcp_sock *tp;
	__u32 rtt_us = skops->args[0]; /* the measured RTT (mrtt_us); args[1] is the smoothed one */
	__u32 bucket, netns;

	if (!bsk)
		return;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return;
	netns = netns_of((const struct sock *)tp);
	if (netns == 0)
		return;
	h = netns_entry(&tcp_rtt, netns, &zero, SLUICE_TRACE_STAT_RTT_FULL);
	if (!h)
		return;
	bucket = log2_u32(rtt_us);
	if (bucket >= SLUICE_RTT_BUCKETS)
		bucket = SLUICE_RTT_BUCKETS - 1;
	h->count++;
	h->sum_us += rtt_us;
	h->log2_us[bucket]++;
}

SEC("sockops")
int tcp_rtt_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		record_rtt(skops);
		break;
	}
	/* 1: leave the socket as it is (a cgroup program returning 0 would refuse the operation). */
	return 1;
}
