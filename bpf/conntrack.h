/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: replies and the rest of an allowed flow pass without a policy check. Included by datapath.c only. */
#ifndef SLUICE_CONNTRACK_H
#define SLUICE_CONNTRACK_H

enum ct_state { CT_NEW, CT_ESTABLISHED };

static __always_inline void ct_key_of(const struct flow *f, struct ct_key *key, int reverse)
{
	__builtin_memcpy(key->saddr, reverse ? f->daddr : f->saddr, 16);
	__builtin_memcpy(key->daddr, reverse ? f->saddr : f->daddr, 16);
	key->sport = reverse ? f->dport : f->sport;
	key->dport = reverse ? f->sport : f->dport;
	key->protocol = f->protocol;
	key->family = f->family;
}

/* The idle timeout of a flow: the agent's setting, or the compiled-in default. */
static __always_inline __u64 ct_timeout_sec(__u8 protocol, __u32 ct_flags)
{
	__u32 zero = 0;
	struct datapath_config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u32 tcp = cfg && cfg->ct_timeout_tcp_sec ? cfg->ct_timeout_tcp_sec : SLUICE_CT_TIMEOUT_TCP_SEC;
	__u32 closing = cfg && cfg->ct_timeout_closing_sec ? cfg->ct_timeout_closing_sec : SLUICE_CT_TIMEOUT_CLOSING_SEC;
	__u32 other = cfg && cfg->ct_timeout_other_sec ? cfg->ct_timeout_other_sec : SLUICE_CT_TIMEOUT_OTHER_SEC;

	if (protocol != IPPROTO_TCP)
		return other;
	return (ct_flags & SLUICE_CT_CLOSING) ? closing : tcp;
}

/*
 * Has the flow been idle for longer than its timeout? Signed: another CPU
 * may have stamped last_seen_ns after now_ns was read (a sweep's clock is
 * read once, before the walk), and such a flow is busy, not ancient.
 */
static __always_inline int ct_expired(const struct ct_value *entry, __u8 protocol, __u64 now_ns)
{
	return (__s64)(now_ns - entry->last_seen_ns) > (__s64)(ct_timeout_sec(protocol, entry->flags) * NSEC_PER_SEC);
}

/* The endpoint a flow is charged to: its local opener, else its local receiver. */
static __always_inline __u32 ct_charged_to(__u32 src_endpoint, __u32 dst_endpoint)
{
	return src_endpoint ? src_endpoint : dst_endpoint;
}

/* Removes an entry and takes it off its endpoint's count (entry: the entry's value, read before it goes). */
static __always_inline void ct_delete(const struct ct_key *key, const struct ct_value *entry)
{
	__u32 charged = ct_charged_to(entry->src_endpoint, entry->dst_endpoint);
	struct ct_count *count;

	/* Only the one delete that removed it uncharges: two CPUs may race to delete the same key. */
	if (bpf_map_delete_elem(&conntrack, key) != 0 || !charged)
		return;
	count = bpf_map_lookup_elem(&ct_counts, &charged);
	if (count)
		__sync_fetch_and_add(&count->entries, -1);
}

/*
 * Finds the entry of the flow in either orientation (*reversed: found under
 * the reversed key, so this packet goes against the flow's opener). Returns 1
 * when it is still bound to these endpoints (src_ep, dst_ep: the local
 * endpoints of this packet's source and destination, 0 for none) and not idle
 * for longer than its timeout, -1 when it exists but is not (key then holds
 * it, to delete), 0 when there is none.
 */
static __always_inline int ct_find(const struct flow *f, __u32 src_ep, __u32 dst_ep, struct ct_key *key,
				   struct ct_value **out, int *reversed)
{
	struct ct_value *entry;
	int bound;

	ct_key_of(f, key, 0);
	entry = bpf_map_lookup_elem(&conntrack, key);
	*reversed = 0;
	if (entry) {
		bound = entry->src_endpoint == src_ep && entry->dst_endpoint == dst_ep;
	} else {
		ct_key_of(f, key, 1);
		entry = bpf_map_lookup_elem(&conntrack, key);
		if (!entry)
			return 0;
		*reversed = 1;
		bound = entry->src_endpoint == dst_ep && entry->dst_endpoint == src_ep;
	}
	*out = entry;
	if (!bound || ct_expired(entry, f->protocol, bpf_ktime_get_ns()))
		return -1;
	return 1;
}

static __always_inline __u32 endpoint_id_of(const struct endpoint_info *ep)
{
	return ep ? ep->endpoint_id : 0;
}

static __always_inline __u32 policy_rev_of(const struct endpoint_info *ep)
{
	return ep ? ep->policy_rev : 0;
}

/*
 * A flow whose endpoints' policy changed since it was judged is judged again,
 * as the packet that opened it (opener and receiver: its local endpoints, or
 * NULL). Returns whether the policy now in force still allows it.
 */
static __noinline int ct_rejudge(const struct flow *f, int reversed, const struct endpoint_info *opener,
				 const struct endpoint_info *receiver)
{
	struct flow o = *f;

	if (reversed) {
		__builtin_memcpy(o.saddr, f->daddr, 16);
		__builtin_memcpy(o.daddr, f->saddr, 16);
		o.sport = f->dport;
		o.dport = f->sport;
	}
	return flow_verdict(&o, opener, receiver, opener ? opener->identity : lookup_identity(o.family, o.saddr),
			    receiver ? receiver->identity : lookup_identity(o.family, o.daddr)) == 0;
}

/*
 * A packet of a flow seen before, in either direction and not idle for longer
 * than its timeout, is established, unless it opens a new TCP connection, its
 * addresses now belong to other endpoints than the ones the flow was judged
 * for, or a policy changed since and no longer allows the flow (src, dst:
 * the local endpoints of this packet's source and destination, or NULL). A
 * RST ends the flow after this packet; a FIN shortens its timeout.
 */
static __always_inline enum ct_state ct_lookup(const struct flow *f, const struct endpoint_info *src,
					       const struct endpoint_info *dst, __u32 *flags_out)
{
	const struct endpoint_info *opener, *receiver;
	struct ct_value *entry = NULL;
	struct ct_key key = {};
	int found, reversed = 0;

	if (f->untracked)
		return CT_NEW;
	found = ct_find(f, endpoint_id_of(src), endpoint_id_of(dst), &key, &entry, &reversed);
	if (found == 0 || !entry)
		return CT_NEW;
	/*
	 * Idle too long, a new connection (SYN without ACK) reusing the ports of
	 * an old one, or an address that changed hands: the flow must pass policy
	 * again.
	 */
	if (found < 0 || (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		goto forget;
	opener = reversed ? dst : src;
	receiver = reversed ? src : dst;
	if (entry->src_policy_rev != policy_rev_of(opener) || entry->dst_policy_rev != policy_rev_of(receiver)) {
		if (!ct_rejudge(f, reversed, opener, receiver))
			goto forget;
		entry->src_policy_rev = policy_rev_of(opener);
		entry->dst_policy_rev = policy_rev_of(receiver);
	}
	entry->last_seen_ns = bpf_ktime_get_ns();
	entry->packets += 1;
	*flags_out = entry->flags;
	if (f->tcp_flags & TCP_FLAG_RST)
		ct_delete(&key, entry);
	else if (f->tcp_flags & TCP_FLAG_FIN)
		entry->flags |= SLUICE_CT_CLOSING;
	return CT_ESTABLISHED;
forget:
	ct_delete(&key, entry);
	return CT_NEW;
}

/* The conntrack budget of one endpoint: the agent's setting, or the compiled-in default. */
static __always_inline __s64 ct_budget(void)
{
	__u32 zero = 0;
	struct datapath_config *cfg = bpf_map_lookup_elem(&config, &zero);

	return cfg && cfg->ct_max_per_endpoint ? cfg->ct_max_per_endpoint : SLUICE_CT_MAX_PER_ENDPOINT;
}

/* The count of an endpoint's conntrack entries, created at zero; NULL only when ct_counts is full. */
static __always_inline struct ct_count *ct_count_of(__u32 endpoint_id)
{
	struct ct_count *count = bpf_map_lookup_elem(&ct_counts, &endpoint_id);
	struct ct_count zero = {};

	if (count)
		return count;
	bpf_map_update_elem(&ct_counts, &endpoint_id, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&ct_counts, &endpoint_id);
}

/*
 * Before a new flow is judged: may the endpoint it would be charged to hold
 * one more entry? Returns 0 with *count set to that endpoint's count (NULL
 * for an untracked flow), or SLUICE_CTR_DROP_CT_FULL when it is over its
 * budget: the flow is then dropped (fail closed) without a verdict, so an
 * endpoint flooding new flows is refused alone and is not counted as allowed.
 */
static __always_inline int ct_reserve(const struct flow *f, const struct endpoint_info *src,
				      const struct endpoint_info *dst, struct ct_count **count)
{
	*count = NULL;
	if (f->untracked)
		return 0;
	*count = ct_count_of(ct_charged_to(endpoint_id_of(src), endpoint_id_of(dst)));
	if (!*count || (*count)->entries >= ct_budget())
		return SLUICE_CTR_DROP_CT_FULL;
	return 0;
}

/*
 * Records a flow that passed policy, bound to the endpoints it was judged for
 * (NULL: not a local pod) and their policy, and charges it to the count
 * ct_reserve() gave (NULL: untracked, nothing to record). Returns 0, or
 * SLUICE_CTR_DROP_CT_FULL when the table itself is full.
 */
static __always_inline int ct_create(const struct flow *f, __u32 flags, const struct endpoint_info *src,
				     const struct endpoint_info *dst, struct ct_count *count)
{
	struct ct_key key = {};
	struct ct_value entry = {
		.src_endpoint = endpoint_id_of(src),
		.dst_endpoint = endpoint_id_of(dst),
		.src_policy_rev = policy_rev_of(src),
		.dst_policy_rev = policy_rev_of(dst),
	};
	long err;

	if (!count)
		return 0;
	ct_key_of(f, &key, 0);
	entry.created_ns = bpf_ktime_get_ns();
	entry.last_seen_ns = entry.created_ns;
	entry.packets = 1;
	entry.flags = flags;
	err = bpf_map_update_elem(&conntrack, &key, &entry, BPF_NOEXIST);
	if (err == 0)
		__sync_fetch_and_add(&count->entries, 1);
	else if (err != -EEXIST) /* another CPU created it just now: it is tracked, and charged once */
		return SLUICE_CTR_DROP_CT_FULL;
	return 0;
}

/* What ct_sweep carries from one entry to the next. */
struct ct_sweep_state {
	__u64 now_ns;
	__u32 scanned;
	__u32 expired;
	__u32 stale;
};

/* Does this address of a flow still belong to the endpoint it was judged for (0: none, nothing to check)? */
static __always_inline int ct_still_bound(__u8 family, const __u8 *addr, __u32 endpoint_id)
{
	struct endpoint_key ekey = { .family = family };
	struct endpoint_info *ep;

	if (!endpoint_id)
		return 1;
	__builtin_memcpy(ekey.addr, addr, 16);
	ep = bpf_map_lookup_elem(&endpoints, &ekey);
	return ep && ep->endpoint_id == endpoint_id;
}

static long ct_sweep_entry(void *map, struct ct_key *key, struct ct_value *entry, struct ct_sweep_state *st)
{
	struct ct_key k = *key;

	st->scanned++;
	if (ct_expired(entry, k.protocol, st->now_ns))
		st->expired++;
	else if (!ct_still_bound(k.family, k.saddr, entry->src_endpoint) || !ct_still_bound(k.family, k.daddr, entry->dst_endpoint))
		st->stale++;
	else
		return 0;
	ct_delete(&k, entry);
	return 0;
}

#endif
