/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Monitor events: a per-CPU token bucket in front of the ring buffer. Included by datapath.c only. */
#ifndef SLUICE_EVENTS_H
#define SLUICE_EVENTS_H

/* Takes one token from this CPU's bucket (SLUICE_EVENT_BUCKET_*); false when the event must be dropped as lost. */
static __always_inline int event_allowed(__u32 bucket)
{
	struct event_rate *rate = bpf_map_lookup_elem(&event_rate, &bucket);
	__u64 now = bpf_ktime_get_ns();
	__u64 refill;

	if (!rate)
		return 0;
	refill = (now - rate->last_ns) * SLUICE_EVENTS_PER_SEC / 1000000000ull;
	if (refill > 0) {
		rate->tokens += refill;
		if (rate->tokens > SLUICE_EVENTS_BURST)
			rate->tokens = SLUICE_EVENTS_BURST;
		rate->last_ns = now;
	}
	if (rate->tokens == 0)
		return 0;
	rate->tokens -= 1;
	return 1;
}

/* What an event says beyond the flow. */
struct event_meta {
	__u32 type;
	__u32 reason;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 src_endpoint;
	__u32 dst_endpoint;
	__u8 direction;
	__u8 verdict;
	__u8 is_reply;
};

/* Sends one monitor event, within the rate limit; counts what it cannot send. */
/* What counters and events need of a packet, from a tc skb or a netfilter hook's. */
struct pkt_meta {
	__u32 len;
	__u32 ifindex;
};

static __always_inline struct pkt_meta pkt_of(const struct __sk_buff *skb)
{
	struct pkt_meta p = { .len = skb->len, .ifindex = skb->ifindex };

	return p;
}

static __noinline void emit_event(const struct pkt_meta *p, const struct event_meta *m, const struct flow *f)
{
	struct event *e;

	if (!event_allowed(SLUICE_EVENT_BUCKET_FLOWS)) {
		count_len(SLUICE_CTR_EVENTS_LOST, p->len);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_len(SLUICE_CTR_EVENTS_LOST, p->len);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->type = m->type;
	e->reason = m->reason;
	e->src_identity = m->src_identity;
	e->dst_identity = m->dst_identity;
	e->src_endpoint = m->src_endpoint;
	e->dst_endpoint = m->dst_endpoint;
	__builtin_memcpy(e->saddr, f->saddr, 16);
	__builtin_memcpy(e->daddr, f->daddr, 16);
	e->sport = f->sport;
	e->dport = f->dport;
	e->protocol = f->protocol;
	e->family = f->family;
	e->direction = m->direction;
	e->verdict = m->verdict;
	e->ifindex = p->ifindex;
	e->len = p->len;
	e->tcp_flags = f->tcp_flags;
	e->is_reply = m->is_reply;
	e->payload_len = 0;
	e->reserved = 0;
	/* No wakeup: the agent consumes on a timer (datapath/ringbuf.ts), and a wakeup per event is most of its cost. */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Drops a packet of a known endpoint with an event saying why. */
static __always_inline int ep_drop_event(struct __sk_buff *skb, __u32 endpoint_id, enum sluice_counter reason,
					 const struct flow *f, __u32 src_identity, __u32 dst_identity, int from_endpoint)
{
	struct event_meta m = {
		.type = SLUICE_EVENT_DROP,
		.reason = reason,
		.src_identity = src_identity,
		.dst_identity = dst_identity,
		.src_endpoint = from_endpoint ? endpoint_id : 0,
		.dst_endpoint = from_endpoint ? 0 : endpoint_id,
	};
	struct pkt_meta p = pkt_of(skb);

	emit_event(&p, &m, f);
	return ep_drop(endpoint_id, reason, skb);
}

#endif
