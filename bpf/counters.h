/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Global and per-endpoint packet counters. Included by datapath.c only. */
#ifndef SLUICE_COUNTERS_H
#define SLUICE_COUNTERS_H

/* Adds a packet of len bytes to a global counter (count() for a tc program's skb). */
static __always_inline void count_len(enum sluice_counter ctr, __u32 len)
{
	__u32 key = ctr;
	struct counter_value *value = bpf_map_lookup_elem(&counters, &key);

	if (!value)
		return;
	value->packets += 1;
	value->bytes += len;
}

static __always_inline void count(enum sluice_counter ctr, struct __sk_buff *skb)
{
	count_len(ctr, skb->len);
}

/* Adds a packet of len bytes to one of the endpoint's own counters. */
static __always_inline void ep_count_len(__u32 endpoint_id, enum sluice_counter ctr, __u32 len)
{
	struct ep_counter_key key = { .endpoint_id = endpoint_id, .counter = ctr };
	struct counter_value *value = bpf_map_lookup_elem(&ep_counters, &key);

	if (!value) {
		struct counter_value zero = {};

		bpf_map_update_elem(&ep_counters, &key, &zero, BPF_NOEXIST);
		value = bpf_map_lookup_elem(&ep_counters, &key);
		if (!value)
			return;
	}
	value->packets += 1;
	value->bytes += len;
}

static __always_inline void ep_count(__u32 endpoint_id, enum sluice_counter ctr, struct __sk_buff *skb)
{
	ep_count_len(endpoint_id, ctr, skb->len);
}

static __always_inline int drop(enum sluice_counter reason, struct __sk_buff *skb)
{
	count(reason, skb);
	return TC_ACT_SHOT;
}

/* Drops a packet of a known endpoint, counting it globally and for the endpoint. */
static __always_inline int ep_drop(__u32 endpoint_id, enum sluice_counter reason, struct __sk_buff *skb)
{
	ep_count(endpoint_id, reason, skb);
	return drop(reason, skb);
}

#endif
