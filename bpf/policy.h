/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The policy decision of a new flow: identity, any peer, address selector. Included by datapath.c only. */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

/* Identity of an address from the ipcache; the world when nobody claims it. */
static __always_inline __u32 lookup_identity(__u8 family, const __u8 *addr)
{
	struct ipcache_key key = { .family = family };
	struct ipcache_value *value;

	key.prefixlen = SLUICE_IPCACHE_FIXED_BITS + (family == SLUICE_FAMILY_IPV4 ? 32 : 128);
	__builtin_memcpy(key.addr, addr, 16);
	value = bpf_map_lookup_elem(&ipcache, &key);
	return value ? value->identity : SLUICE_ID_WORLD;
}

/* Does one peer (identity or selector) have an entry for the flow's protocol and port? */
static __always_inline int peer_allowed(struct policy_key *key, __u32 peer, const struct flow *f)
{
	key->peer = peer;
	key->prefixlen = SLUICE_POLICY_FIXED_BITS + sizeof(key->port) * 8;
	key->protocol = f->protocol;
	key->port = f->dport;
	if (bpf_map_lookup_elem(&policy, key))
		return 1;
	/* Rules without ports allow every protocol. */
	key->protocol = SLUICE_PROTO_ANY;
	key->port = 0;
	return bpf_map_lookup_elem(&policy, key) != NULL;
}

/* The live policy slot of an endpoint (see SLUICE_POLICY_ID). */
static __always_inline __u32 policy_id_of(const struct endpoint_info *ep)
{
	return SLUICE_POLICY_ID(ep->endpoint_id, ep->policy_rev);
}

/*
 * May the endpoint whose live slot is policy_id open this flow in this
 * direction with a peer of this identity at peer_addr? Tries the peer's
 * identity, any peer, and the address-based selector of the peer address
 * (ipBlock, per-pod named ports).
 */
static __noinline int policy_allows(__u32 policy_id, __u8 direction, __u32 peer_identity, const struct flow *f,
				    const __u8 *peer_addr)
{
	struct policy_key key = { .policy_id = policy_id, .direction = direction };
	struct cidr_policy_key ckey = { .policy_id = policy_id, .direction = direction, .family = f->family };
	struct cidr_policy_value *sel;

	if (peer_allowed(&key, peer_identity, f) || peer_allowed(&key, SLUICE_ID_ANY, f))
		return 1;
	ckey.prefixlen = SLUICE_CIDR_POLICY_FIXED_BITS + (f->family == SLUICE_FAMILY_IPV4 ? 32 : 128);
	__builtin_memcpy(ckey.addr, peer_addr, 16);
	sel = bpf_map_lookup_elem(&cidr_policy, &ckey);
	return sel && peer_allowed(&key, sel->selector, f);
}

/*
 * The verdict on a new flow opened by f: 0 when allowed, otherwise the drop
 * counter of the policy that denies it. src and dst are the local endpoints
 * of f's addresses (NULL: not a pod of this node), with the identities of
 * both ends. The source's egress policy does not judge Service addresses:
 * they are names for backends, and from_pod marks the packets of such a flow
 * so that service_egress (or to_pod) judges them once translated. Nor does
 * the destination's ingress policy judge this node itself (kubelet probes).
 */
static __noinline int flow_verdict(const struct flow *f, const struct endpoint_info *src, const struct endpoint_info *dst,
				   __u32 src_identity, __u32 dst_identity)
{
	if (src && (src->flags & SLUICE_EP_EGRESS_ISOLATED) && dst_identity != SLUICE_ID_SERVICE &&
	    !policy_allows(policy_id_of(src), SLUICE_DIR_EGRESS, dst_identity, f, f->daddr))
		return SLUICE_CTR_DROP_POLICY_EGRESS;
	if (dst && (dst->flags & SLUICE_EP_INGRESS_ISOLATED) && src_identity != SLUICE_ID_HOST &&
	    !policy_allows(policy_id_of(dst), SLUICE_DIR_INGRESS, src_identity, f, f->saddr))
		return SLUICE_CTR_DROP_POLICY_INGRESS;
	return 0;
}

/* The direction of the policy that judged a flow between these endpoints: ingress when the destination's did. */
static __always_inline __u8 verdict_direction(const struct endpoint_info *src, const struct endpoint_info *dst, int reason)
{
	if (reason == SLUICE_CTR_DROP_POLICY_EGRESS)
		return SLUICE_DIR_EGRESS;
	if (reason == SLUICE_CTR_DROP_POLICY_INGRESS || (dst && (dst->flags & SLUICE_EP_INGRESS_ISOLATED)))
		return SLUICE_DIR_INGRESS;
	return src && (src->flags & SLUICE_EP_EGRESS_ISOLATED) ? SLUICE_DIR_EGRESS : 0;
}

#endif
