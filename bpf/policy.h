/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The policy decision of a new flow: identity, any peer, address selector. Included by datapath.c only. */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

/* Identity of an address from the ipcache; the world when nobody claims it. */
static __always_inline __u32 lookup_identity(__u8 family, const __u8 *addr)
{
	struct ipcache_key key = { .family = family };
	struct ipcache_value *value;

	key.prefixlen = 32 + (family == SLUICE_FAMILY_IPV4 ? 32 : 128);
	__builtin_memcpy(key.addr, addr, 16);
	value = bpf_map_lookup_elem(&ipcache, &key);
	return value ? value->identity : SLUICE_ID_WORLD;
}

/* Does one peer (identity or selector) have an entry for the flow's protocol and port? */
static __always_inline int peer_allowed(struct policy_key *key, __u32 peer, const struct flow *f)
{
	key->peer = peer;
	key->prefixlen = 96;
	key->protocol = f->protocol;
	key->port = f->dport;
	if (bpf_map_lookup_elem(&policy, key))
		return 1;
	/* Rules without ports allow every protocol. */
	key->protocol = SLUICE_PROTO_ANY;
	key->port = 0;
	return bpf_map_lookup_elem(&policy, key) != NULL;
}

/*
 * May endpoint_id open this flow in this direction with a peer of this
 * identity at peer_addr? Tries the peer's identity, any peer, and the
 * address-based selector of the peer address (ipBlock, per-pod named ports).
 */
static __noinline int policy_allows(__u32 endpoint_id, __u8 direction, __u32 peer_identity, const struct flow *f,
				    const __u8 *peer_addr)
{
	struct policy_key key = { .endpoint_id = endpoint_id, .direction = direction };
	struct cidr_policy_key ckey = { .endpoint_id = endpoint_id, .direction = direction, .family = f->family };
	struct cidr_policy_value *sel;

	if (peer_allowed(&key, peer_identity, f) || peer_allowed(&key, SLUICE_ID_ANY, f))
		return 1;
	ckey.prefixlen = 64 + (f->family == SLUICE_FAMILY_IPV4 ? 32 : 128);
	__builtin_memcpy(ckey.addr, peer_addr, 16);
	sel = bpf_map_lookup_elem(&cidr_policy, &ckey);
	return sel && peer_allowed(&key, sel->selector, f);
}

#endif
