/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors (destination unreachable, fragmentation needed, packet too big,
 * time exceeded, parameter problem) are about a packet, not a flow of their
 * own: they pass when the packet they quote belongs to a flow this node let
 * through, in either direction, and are dropped otherwise. Path-MTU discovery
 * works for an isolated pod, and no error opens the way for anything else.
 * Included by datapath.c only.
 */
#ifndef SLUICE_ICMP_H
#define SLUICE_ICMP_H

/*
 * The flow of the packet an ICMP error quotes: its IP header and at least 8
 * bytes after it, which hold the ports (or an echo's id). Returns 0 when
 * there is such a flow to look for.
 */
static __always_inline int icmp_quoted_flow(struct __sk_buff *skb, const struct flow *f, struct flow *q)
{
	__u32 off = f->l4_off + ICMP_ERROR_HDR_BYTES;
	__u8 l4[ICMP_ECHO_HDR_BYTES];
	__be16 id;

	q->family = f->family;
	/* Field by field, straight into q: the stack of this call chain is tight. */
	if (f->family == SLUICE_FAMILY_IPV4) {
		__be16 frag_off;

		if (bpf_skb_load_bytes(skb, off, l4, 1) < 0 || (l4[0] >> 4) != 4 || (l4[0] & 0xf) < 5)
			return -1;
		if (bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, frag_off), &frag_off, 2) < 0 ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, protocol), &q->protocol, 1) < 0 ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, saddr), q->saddr, 4) < 0 ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, daddr), q->daddr, 4) < 0)
			return -1;
		/* A later fragment carries no ports: nothing to relate to. */
		if (bpf_ntohs(frag_off) & IPV4_FRAG_OFFSET_MASK)
			return -1;
		off += (l4[0] & 0xf) * 4;
	} else {
		if (bpf_skb_load_bytes(skb, off, l4, 1) < 0 || (l4[0] >> 4) != 6)
			return -1;
		if (bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, nexthdr), &q->protocol, 1) < 0 ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, saddr), q->saddr, 16) < 0 ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, daddr), q->daddr, 16) < 0)
			return -1;
		off += sizeof(struct ipv6hdr);
	}
	switch (q->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, l4, 4) < 0)
			return -1;
		__builtin_memcpy(&q->sport, l4, 2);
		__builtin_memcpy(&q->dport, l4 + 2, 2);
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, off, l4, sizeof(l4)) < 0)
			return -1;
		__builtin_memcpy(&id, l4 + 4, 2);
		if (l4[0] == (q->protocol == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST)) {
			q->sport = id;
			return 0;
		}
		if (l4[0] == (q->protocol == IPPROTO_ICMP ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY)) {
			q->dport = id;
			return 0;
		}
		/* An error about an error, or about untracked ICMP: no flow. */
		return -1;
	default:
		/* Protocols without ports are tracked with ports 0 (IPv6 extension headers land here too, and match nothing). */
		return 0;
	}
}

/*
 * May the error's sender report on the quoted packet? A pod may report only
 * on a packet it received as its flow's responder: the quoted packet's
 * destination is the error's source, and the packet went the way the flow
 * was opened (reversed: it was a reply). Anyone else is a third party, and
 * only routers are: this node, another node, or an address outside the
 * cluster, about packets either way; never a pod, which is no router on a
 * pod-to-pod path. Else an isolated pod could send errors quoting any open
 * flow, each with a payload of its own, past every policy.
 */
static __always_inline int icmp_sender_may_report(const struct flow *f, const struct flow *q, int reversed)
{
	__u32 identity;

	if (!reversed && addr_equal(q->daddr, f->saddr, f->family == SLUICE_FAMILY_IPV4 ? 4 : 16))
		return 1;
	identity = lookup_identity(f->family, f->saddr);
	return identity == SLUICE_ID_HOST || identity == SLUICE_ID_REMOTE_NODE || identity == SLUICE_ID_WORLD;
}

/*
 * Is this ICMP error about a flow this node let through? The quoted packet
 * must be one the error's destination sent (errors go back to the sender),
 * reported by its receiver as the flow's responder or by a router
 * (icmp_sender_may_report), and its
 * flow must be established, not revoked, and still bound to the same
 * endpoints: the error then crosses policy only as that allowed flow's
 * reply. Looking does not refresh the flow: errors cannot keep it alive.
 * flags_out gets the flow's SLUICE_CT_* flags.
 */
static __noinline int icmp_error_related(struct __sk_buff *skb, const struct flow *f, __u32 *flags_out)
{
	struct endpoint_key ekey = { .family = f->family };
	struct endpoint_info *qsrc, *qdst;
	struct ct_value *entry = NULL;
	struct ct_key key = {};
	struct flow q = {};
	int reversed;

	if (icmp_quoted_flow(skb, f, &q) < 0)
		return 0;
	if (!addr_equal(q.saddr, f->daddr, f->family == SLUICE_FAMILY_IPV4 ? 4 : 16))
		return 0;
	__builtin_memcpy(ekey.addr, q.saddr, 16);
	qsrc = bpf_map_lookup_elem(&endpoints, &ekey);
	__builtin_memcpy(ekey.addr, q.daddr, 16);
	qdst = bpf_map_lookup_elem(&endpoints, &ekey);
	if (ct_find(&q, qsrc ? qsrc->endpoint_id : 0, qdst ? qdst->endpoint_id : 0, &key, &entry, &reversed) != 1 || !entry)
		return 0;
	if (!icmp_sender_may_report(f, &q, reversed))
		return 0;
	if (entry->flags & SLUICE_CT_REVOKED)
		return 0;
	*flags_out = entry->flags;
	return 1;
}

#endif
