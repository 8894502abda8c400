/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fragment table: the ports of each fragmented datagram in flight, from
 * its first fragment, for the fragments after it. Each endpoint has a budget
 * of entries (ct_counts), so no pod can fill the table for the others, and
 * an entry leaves as soon as its datagram is complete, so only incomplete
 * datagrams count against it. Included by datapath.c only.
 */
#ifndef SLUICE_FRAGMENTS_H
#define SLUICE_FRAGMENTS_H

/* The fragment budget of one endpoint: the agent's setting, or the compiled-in default. */
static __always_inline __s64 frag_budget(void)
{
	__u32 zero = 0;
	struct datapath_config *cfg = bpf_map_lookup_elem(&config, &zero);

	return cfg && cfg->frag_max_per_endpoint ? cfg->frag_max_per_endpoint : SLUICE_FRAG_MAX_PER_ENDPOINT;
}

/* Is the datagram past its reassembly time? Measured from the first fragment, so no trickle keeps it. */
static __always_inline int frag_expired(const struct frag_value *entry, __u64 now_ns)
{
	__u32 zero = 0;
	struct datapath_config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u64 timeout = cfg && cfg->frag_timeout_sec ? cfg->frag_timeout_sec : SLUICE_FRAG_TIMEOUT_SEC;

	/* Signed: an entry another CPU created after now_ns was read is not billions of years old. */
	return (__s64)(now_ns - entry->created_ns) > (__s64)(timeout * NSEC_PER_SEC);
}

static __always_inline void frag_key_of(const struct flow *f, __u32 endpoint_id, __u8 direction, struct frag_key *key)
{
	__builtin_memcpy(key->saddr, f->saddr, 16);
	__builtin_memcpy(key->daddr, f->daddr, 16);
	key->id = f->frag_id;
	key->endpoint = endpoint_id;
	key->protocol = f->frag_proto;
	key->family = f->family;
	key->direction = direction;
}

/* Removes an entry and takes it off its endpoint's count; only the delete that removed it uncharges. */
static __always_inline void frag_delete(const struct frag_key *key)
{
	__u32 charged = key->endpoint;
	struct ct_count *count;

	if (bpf_map_delete_elem(&fragments, key) != 0)
		return;
	count = bpf_map_lookup_elem(&ct_counts, &charged);
	if (count)
		__sync_fetch_and_add(&count->fragments, -1);
}

/*
 * A first fragment: its entry is created and charged, within the endpoint's
 * budget, or, seen again (a duplicate, or a new datagram reusing the id of
 * one never completed), started over with these ports.
 */
static __always_inline int frag_first(const struct flow *f, const struct frag_key *key)
{
	struct frag_value entry = {
		.seen_bytes = f->frag_bytes, .sport = f->sport, .dport = f->dport, .protocol = f->protocol, .untracked = f->untracked,
	};
	struct ct_count *count;
	long err;

	entry.created_ns = bpf_ktime_get_ns();
	/*
	 * Replaced by an update, not through the lookup's pointer: were the entry
	 * deleted meanwhile, its memory might already hold another's entry.
	 */
	if (bpf_map_lookup_elem(&fragments, key) && bpf_map_update_elem(&fragments, key, &entry, BPF_EXIST) == 0)
		return 0;
	count = ct_count_of(key->endpoint);
	if (!count || count->fragments >= frag_budget())
		return SLUICE_CTR_DROP_FRAG_FULL;
	err = bpf_map_update_elem(&fragments, key, &entry, BPF_NOEXIST);
	if (err == 0)
		__sync_fetch_and_add(&count->fragments, 1);
	else if (err != -EEXIST) /* another CPU created it just now: it is tracked, and charged once */
		return SLUICE_CTR_DROP_FRAG_FULL;
	return 0;
}

/*
 * A later fragment takes its first fragment's ports and adds its bytes; the
 * one that completes the datagram removes the entry. Both atomics are full
 * barriers, so of a middle fragment and the last one racing on two CPUs, at
 * least one sees the other's bytes and the total (if neither did, the entry
 * would only wait for its timeout). Overlapping fragments can
 * at worst remove the entry early: only the sender's own datagram suffers.
 */
static __always_inline int frag_later(struct flow *f, const struct frag_key *key)
{
	struct frag_value *known = bpf_map_lookup_elem(&fragments, key);
	__u64 seen, total;

	if (!known)
		return SLUICE_CTR_DROP_FRAGMENT;
	if (frag_expired(known, bpf_ktime_get_ns())) {
		frag_delete(key);
		return SLUICE_CTR_DROP_FRAGMENT;
	}
	f->sport = known->sport;
	f->dport = known->dport;
	f->protocol = known->protocol;
	/* ICMP judged packet by packet stays so in every fragment: a later one is no flow either. */
	f->untracked = known->untracked;
	/* With their results used, both compile to the ordered (BPF_FETCH) atomics. */
	seen = __sync_fetch_and_add(&known->seen_bytes, (__u64)f->frag_bytes) + f->frag_bytes;
	if (f->frag_end) {
		total = __sync_val_compare_and_swap(&known->total_bytes, 0, (__u64)f->frag_end);
		if (!total)
			total = f->frag_end;
		/* A middle fragment may have added its bytes since, before any total was there to see. */
		seen = *(volatile __u64 *)&known->seen_bytes;
	} else {
		total = *(volatile __u64 *)&known->total_bytes;
	}
	if (total && seen >= total)
		frag_delete(key);
	return 0;
}

/*
 * Tracks a fragment as seen by the program of this endpoint (direction:
 * SLUICE_DIR_EGRESS in from_pod, after the spoofing check, so a pod cannot
 * touch entries under another's addresses; SLUICE_DIR_INGRESS in to_pod).
 * Returns 0, SLUICE_CTR_DROP_FRAGMENT for a later fragment with no (live)
 * first one, or SLUICE_CTR_DROP_FRAG_FULL for a first fragment over the
 * endpoint's budget or into a full table: the packet is then dropped.
 */
static __always_inline int frag_track(struct flow *f, __u32 endpoint_id, __u8 direction)
{
	struct frag_key key = {};

	if (f->fragment == FRAG_NONE)
		return 0;
	frag_key_of(f, endpoint_id, direction, &key);
	if (f->fragment == FRAG_FIRST)
		return frag_first(f, &key);
	return frag_later(f, &key);
}

/* What ct_sweep carries from one fragment entry to the next. */
struct frag_sweep_state {
	__u64 now_ns;
	__u32 scanned;
	__u32 expired;
};

/* Removes an incomplete datagram past its reassembly time (its last fragments were lost). */
static long frag_sweep_entry(void *map, struct frag_key *key, struct frag_value *entry, struct frag_sweep_state *st)
{
	struct frag_key k = *key;

	st->scanned++;
	if (!frag_expired(entry, st->now_ns))
		return 0;
	st->expired++;
	frag_delete(&k);
	return 0;
}

#endif
