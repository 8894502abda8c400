/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: replies and the rest of an allowed flow pass without a policy check. Included by datapath.c only. */
#ifndef SLUICE_CONNTRACK_H
#define SLUICE_CONNTRACK_H

enum ct_state { CT_NEW, CT_ESTABLISHED, CT_REVOKED };

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

	if (protocol != IPPROTO_TCP || !(ct_flags & SLUICE_CT_REPLIED))
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

/*
 * The ct_counts key a new flow is charged to: its local opener, or the bucket
 * of its remote opener's identity (never the local pod it goes to).
 */
static __always_inline __u32 ct_charge_key(__u32 src_endpoint, __u32 src_identity)
{
	return src_endpoint ? src_endpoint : SLUICE_CT_BUCKET_REMOTE | src_identity;
}

/* Takes one entry off the count of key (and off the shared part of the table, when it came from there): a deleted entry, or a reservation (ct_reserve) that made none. */
static __always_inline void ct_uncharge(__u32 key)
{
	struct ct_count *count, *shared;
	__u32 shared_key = SLUICE_CT_SHARED_KEY;
	__s64 before;

	if (!key)
		return;
	count = bpf_map_lookup_elem(&ct_counts, &key);
	if (!count)
		return;
	before = __sync_fetch_and_add(&count->entries, -1);
	/* An endpoint's first entries are its reserve; the rest, and all of a remote bucket, were shared. */
	if ((key & SLUICE_CT_BUCKET_REMOTE) || before > SLUICE_CT_RESERVE_PER_ENDPOINT) {
		shared = bpf_map_lookup_elem(&ct_counts, &shared_key);
		if (shared)
			__sync_fetch_and_add(&shared->entries, -1);
	}
}

/* Removes an entry and takes it off its count (entry: the entry's value, read before it goes). */
static __always_inline void ct_delete(const struct ct_key *key, const struct ct_value *entry)
{
	__u32 charged = entry->charged;

	/* Only the one delete that removed it uncharges: two CPUs may race to delete the same key. */
	if (bpf_map_delete_elem(&conntrack, key) != 0)
		return;
	ct_uncharge(charged);
}

/*
 * Removes a Service translation (service-nat.h), given the key of its reply
 * entry (backend -> client), which names the frontend; k is scratch
 * afterwards. The original entry (client -> frontend) goes only while it
 * still points at this backend: the client may have a newer flow through the
 * same frontend to another backend.
 */
static __noinline int lb_nat_forget(struct lb_nat_key *k)
{
	struct lb_nat_value *nat = bpf_map_lookup_elem(&lb_nat, k);
	struct lb_nat_value *orig;
	__u64 backend[2], seen[2];
	__be16 bport;

	if (!nat)
		return 0;
	/* k becomes the original entry's key (client -> frontend), then the reply entry's again: the stack is tight. */
	__builtin_memcpy(backend, k->saddr, 16);
	bport = k->sport;
	__builtin_memcpy(k->saddr, k->daddr, 16);
	k->sport = k->dport;
	__builtin_memcpy(k->daddr, nat->addr, 16);
	k->dport = nat->port;
	k->dir = SLUICE_NAT_ORIGINAL;
	orig = bpf_map_lookup_elem(&lb_nat, k);
	if (orig) {
		__builtin_memcpy(seen, orig->addr, 16);
		if (orig->port == bport && seen[0] == backend[0] && seen[1] == backend[1])
			bpf_map_delete_elem(&lb_nat, k);
	}
	__builtin_memcpy(k->daddr, k->saddr, 16);
	k->dport = k->sport;
	__builtin_memcpy(k->saddr, backend, 16);
	k->sport = bport;
	k->dir = SLUICE_NAT_REPLY;
	bpf_map_delete_elem(&lb_nat, k);
	return 0;
}

/*
 * Removes the Service translation of the flow that key names (reverse 0) or
 * its reverse names (reverse 1), taken as the client sent it once
 * translated: client -> backend. Called where a conntrack entry goes, or a
 * new flow is refused, so that translations live no longer than flows and
 * are bounded by the conntrack budgets. Only a flow's own ends can cause
 * this: the client's address is the source of the original entry, the
 * backend's the source of the reply entry.
 */
static __noinline int ct_nat_forget(const struct ct_key *key, int reverse)
{
	struct lb_nat_key k = {};

	if (key->protocol != IPPROTO_TCP && key->protocol != IPPROTO_UDP)
		return 0;
	__builtin_memcpy(k.saddr, reverse ? key->saddr : key->daddr, 16);
	__builtin_memcpy(k.daddr, reverse ? key->daddr : key->saddr, 16);
	k.sport = reverse ? key->sport : key->dport;
	k.dport = reverse ? key->dport : key->sport;
	k.family = key->family;
	k.protocol = key->protocol;
	k.dir = SLUICE_NAT_REPLY;
	return lb_nat_forget(&k);
}

/* ct_end(): which Service translations go with the entry: the flow its key names, the reverse flow, or both. */
#define CT_NAT_KEY 1
#define CT_NAT_REVERSE 2

/*
 * Removes a flow's entry (ct_delete) and the Service translations that went
 * with it (ct_nat_forget). A call of its own: inlined, it would take stack
 * the programs that call ct_lookup do not have.
 */
static __noinline int ct_end(const struct ct_key *key, const struct ct_value *entry, int nat)
{
	ct_delete(key, entry);
	if (nat & CT_NAT_KEY)
		ct_nat_forget(key, 0);
	if (nat & CT_NAT_REVERSE)
		ct_nat_forget(key, 1);
	return 0;
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

/* The ends of a flow as they are now: their endpoints (or NULL) and identities. */
struct ct_ends {
	const struct endpoint_info *opener;
	const struct endpoint_info *receiver;
	__u32 opener_identity;
	__u32 receiver_identity;
};

/*
 * A flow whose ends' policy or identity changed since it was judged is judged
 * again, as the packet that opened it. Returns whether the policy now in
 * force still allows it.
 */
static __noinline int ct_rejudge(const struct flow *f, int reversed, const struct ct_ends *e)
{
	struct flow o = *f;

	if (reversed) {
		__builtin_memcpy(o.saddr, f->daddr, 16);
		__builtin_memcpy(o.daddr, f->saddr, 16);
		o.sport = f->dport;
		o.dport = f->sport;
	}
	return flow_verdict(&o, e->opener, e->receiver, e->opener_identity, e->receiver_identity) == 0;
}

/* The identity of one end of a packet: its endpoint's, or the ipcache's for its address. */
static __always_inline __u32 ct_identity_of(const struct endpoint_info *ep, __u8 family, const __u8 *addr)
{
	return ep ? ep->identity : lookup_identity(family, addr);
}

/* Has either end's policy or identity changed since the entry was last judged? */
static __always_inline int ct_judged_otherwise(const struct ct_value *entry, const struct ct_ends *e)
{
	return entry->src_policy_rev != policy_rev_of(e->opener) || entry->dst_policy_rev != policy_rev_of(e->receiver) ||
	       entry->src_identity != e->opener_identity || entry->dst_identity != e->receiver_identity;
}

/* Judges the flow again as the ends are now, and records them; returns whether it is still allowed. */
static __always_inline int ct_judge_again(const struct flow *f, struct ct_value *entry, int reversed, const struct ct_ends *e)
{
	entry->src_policy_rev = policy_rev_of(e->opener);
	entry->dst_policy_rev = policy_rev_of(e->receiver);
	entry->src_identity = e->opener_identity;
	entry->dst_identity = e->receiver_identity;
	return ct_rejudge(f, reversed, e);
}

/*
 * A packet that meets a revoked flow's tombstone. It keeps the tombstone
 * alive and is dropped, unless the policy changed again and now allows the
 * flow as it was opened: then a non-TCP flow is let through again. A TCP
 * tuple reopens only with a new SYN from its opener (ct_lookup), so no
 * segment without one ever turns a revoked connection back on, from either
 * end.
 */
static __always_inline enum ct_state ct_tombstone_hit(const struct flow *f, struct ct_value *entry, int reversed,
						      const struct ct_ends *e)
{
	entry->last_seen_ns = bpf_ktime_get_ns();
	if (f->protocol == IPPROTO_TCP || !ct_judged_otherwise(entry, e))
		return CT_REVOKED;
	if (!ct_judge_again(f, entry, reversed, e))
		return CT_REVOKED;
	entry->flags &= ~SLUICE_CT_REVOKED;
	return CT_ESTABLISHED;
}

/*
 * A packet of a flow seen before, in either direction and not idle for longer
 * than its timeout, is established, unless it opens a new TCP connection, its
 * addresses now belong to other endpoints than the ones the flow was judged
 * for, or a policy changed since and no longer allows the flow (src, dst:
 * the local endpoints of this packet's source and destination, or NULL). A
 * flow a policy change revoked stays known as revoked (CT_REVOKED: drop the
 * packet): had it been forgotten, the next packet of its receiver would be
 * judged as a new flow the other way round, which the receiver's egress and
 * the opener's ingress may well allow, and the opener's packets would ride it
 * back in as replies. A RST ends the flow after this packet; a FIN shortens
 * its timeout.
 */
static __always_inline enum ct_state ct_lookup(const struct flow *f, const struct endpoint_info *src,
					       const struct endpoint_info *dst, __u32 *flags_out)
{
	struct ct_value *entry = NULL;
	struct ct_key key = {};
	struct ct_ends e;
	int found, reversed = 0, syn_only;

	if (f->untracked)
		return CT_NEW;
	found = ct_find(f, endpoint_id_of(src), endpoint_id_of(dst), &key, &entry, &reversed);
	if (found == 0 || !entry)
		return CT_NEW;
	/* Idle too long, or an address that changed hands: the flow must pass policy again. */
	if (found < 0)
		goto forget;
	/* A new connection (SYN without ACK) reusing the ports of an old one: judged as new. */
	syn_only = (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	e.opener = reversed ? dst : src;
	e.receiver = reversed ? src : dst;
	e.opener_identity = entry->flags & SLUICE_CT_MASQUERADED ? entry->src_identity
								 : ct_identity_of(e.opener, f->family, reversed ? f->daddr : f->saddr);
	e.receiver_identity = ct_identity_of(e.receiver, f->family, reversed ? f->saddr : f->daddr);
	if (entry->flags & SLUICE_CT_REVOKED) {
		if (syn_only && !reversed)
			goto forget;
		*flags_out = entry->flags;
		return ct_tombstone_hit(f, entry, reversed, &e);
	}
	if (syn_only)
		goto forget;
	if (ct_judged_otherwise(entry, &e) && !ct_judge_again(f, entry, reversed, &e)) {
		entry->flags |= SLUICE_CT_REVOKED;
		entry->last_seen_ns = bpf_ktime_get_ns();
		*flags_out = entry->flags;
		return CT_REVOKED;
	}
	entry->last_seen_ns = bpf_ktime_get_ns();
	entry->packets += 1;
	if (reversed && !(entry->flags & SLUICE_CT_REPLIED))
		entry->flags |= SLUICE_CT_REPLIED;
	*flags_out = entry->flags;
	/* With a RST, the translation this packet's sender opened, if any; the one it answers is service_revnat's, once the packet is translated. */
	if (f->tcp_flags & TCP_FLAG_RST)
		ct_end(&key, entry, reversed ? CT_NAT_REVERSE : CT_NAT_KEY);
	else if (f->tcp_flags & TCP_FLAG_FIN)
		entry->flags |= SLUICE_CT_CLOSING;
	return CT_ESTABLISHED;
forget:
	/*
	 * With the translation this packet answers, if any: the flow is gone. Not
	 * the one it opened: from_pod has just translated it, and the new flow it
	 * starts keeps it (or service_nat_forget removes it, if refused).
	 */
	ct_end(&key, entry, reversed ? CT_NAT_KEY : CT_NAT_REVERSE);
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
 * Before a new flow is judged: one more entry for the key it is charged to
 * (ct_charge_key), reserved atomically (added first, taken back when over),
 * so two CPUs cannot both take the last free slot. Within a local endpoint's
 * reserve that is all; beyond it, and for a remote bucket, the entry must
 * also fit in the shared part of the table. Returns 0 with *charged set
 * (0 for an untracked flow: nothing reserved), or SLUICE_CTR_DROP_CT_FULL
 * when over: the flow is then dropped (fail closed) without a verdict, so an
 * opener flooding new flows is refused alone and is not counted as allowed.
 * A reservation that does not become an entry is given back (ct_uncharge).
 */
static __always_inline int ct_reserve(const struct flow *f, const struct endpoint_info *src, __u32 src_identity,
				      __u32 *charged)
{
	struct ct_count *count, *shared;
	__s64 before;
	__u32 key;

	*charged = 0;
	if (f->untracked)
		return 0;
	key = ct_charge_key(endpoint_id_of(src), src_identity);
	count = ct_count_of(key);
	if (!count)
		return SLUICE_CTR_DROP_CT_FULL;
	before = __sync_fetch_and_add(&count->entries, 1);
	if (before >= ct_budget()) {
		__sync_fetch_and_add(&count->entries, -1);
		return SLUICE_CTR_DROP_CT_FULL;
	}
	if (!(key & SLUICE_CT_BUCKET_REMOTE) && before < SLUICE_CT_RESERVE_PER_ENDPOINT) {
		*charged = key;
		return 0;
	}
	shared = ct_count_of(SLUICE_CT_SHARED_KEY);
	if (!shared || __sync_fetch_and_add(&shared->entries, 1) >= SLUICE_CT_SHARED_CAPACITY) {
		if (shared)
			__sync_fetch_and_add(&shared->entries, -1);
		__sync_fetch_and_add(&count->entries, -1);
		return SLUICE_CTR_DROP_CT_FULL;
	}
	*charged = key;
	return 0;
}

/*
 * Records a flow that passed policy, bound to the endpoints it was judged for
 * (NULL: not a local pod) and their policy, on the reservation ct_reserve()
 * made (NULL: untracked, nothing to record). Returns 0, or
 * SLUICE_CTR_DROP_CT_FULL when the table itself is full. Unless the entry was
 * made here, the reservation is given back.
 */
static __always_inline int ct_create(const struct flow *f, __u32 flags, const struct endpoint_info *src,
				     const struct endpoint_info *dst, __u32 src_identity, __u32 dst_identity,
				     __u32 charged)
{
	struct ct_key key = {};
	struct ct_value entry = {
		.src_endpoint = endpoint_id_of(src),
		.dst_endpoint = endpoint_id_of(dst),
		.src_policy_rev = policy_rev_of(src),
		.dst_policy_rev = policy_rev_of(dst),
		.src_identity = src_identity,
		.dst_identity = dst_identity,
		.charged = charged,
	};
	long err;

	if (!charged)
		return 0;
	ct_key_of(f, &key, 0);
	entry.created_ns = bpf_ktime_get_ns();
	entry.last_seen_ns = entry.created_ns;
	entry.packets = 1;
	entry.flags = flags;
	err = bpf_map_update_elem(&conntrack, &key, &entry, BPF_NOEXIST);
	if (err == 0)
		return 0;
	ct_uncharge(charged);
	if (err != -EEXIST) /* another CPU created it just now: it is tracked, and charged once */
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
	/* A flow translated one way or the other (a backend's packet may have opened the entry). */
	ct_end(&k, entry, CT_NAT_KEY | CT_NAT_REVERSE);
	return 0;
}

#endif
