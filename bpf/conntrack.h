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
	if (!bound || bpf_ktime_get_ns() - entry->last_seen_ns > ct_timeout_sec(f->protocol, entry->flags) * NSEC_PER_SEC)
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
		bpf_map_delete_elem(&conntrack, &key);
	else if (f->tcp_flags & TCP_FLAG_FIN)
		entry->flags |= SLUICE_CT_CLOSING;
	return CT_ESTABLISHED;
forget:
	bpf_map_delete_elem(&conntrack, &key);
	return CT_NEW;
}

/* Records a flow that passed policy, bound to the endpoints it was judged for (NULL: not a local pod) and their policy. */
static __always_inline void ct_create(const struct flow *f, __u32 flags, const struct endpoint_info *src,
				      const struct endpoint_info *dst)
{
	struct ct_key key = {};
	struct ct_value entry = {
		.src_endpoint = endpoint_id_of(src),
		.dst_endpoint = endpoint_id_of(dst),
		.src_policy_rev = policy_rev_of(src),
		.dst_policy_rev = policy_rev_of(dst),
	};

	if (f->untracked)
		return;
	ct_key_of(f, &key, 0);
	entry.created_ns = bpf_ktime_get_ns();
	entry.last_seen_ns = entry.created_ns;
	entry.packets = 1;
	entry.flags = flags;
	bpf_map_update_elem(&conntrack, &key, &entry, BPF_ANY);
}

#endif
