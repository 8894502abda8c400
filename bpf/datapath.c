// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Sluice datapath: two tc programs on every pod's host-side veth.
 *
 *   from_pod  host veth ingress: what the pod sends. Answers ARP for the
 *             gateway, drops spoofed packets, enforces the pod's egress
 *             policy (and a local destination's ingress policy), delivers
 *             pod-to-pod traffic on this node straight into the destination
 *             pod, hands the rest to the host stack.
 *   to_pod    host veth egress: what the host stack sends to the pod (the
 *             host itself, other nodes, the world): ingress policy.
 *
 * Policy is checked once per flow: connection tracking lets the rest of a
 * flow, and its replies, through. A peer's identity comes from the ipcache
 * (or, for a local source pod, from its endpoint); ipBlock peers and named
 * ports resolved per remote pod go through cidr_policy, which turns an
 * address into a selector that is looked up like an identity.
 *
 * Both are attached as TCX links; TC_ACT_* verdicts equal the TCX verdicts.
 * Map layouts live in sluice.h, mirrored by datapath/abi.ts.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sluice.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Order matters: each file uses what the ones before it define. */
#include "maps.h"
#include "proto.h"
#include "counters.h"
#include "addr.h"
#include "parse.h"
#include "events.h"
#include "neigh.h"
#include "policy.h"
#include "l7.h"
#include "conntrack.h"
#include "fragments.h"
#include "icmp.h"
#include "masquerade.h"
#include "netfilter.h"
#include "service-nat.h"

/*
 * Delivers to a pod on this node without a trip through the host stack.
 *
 * bpf_redirect_peer() moves the packet straight to the ingress of the
 * destination host veth's peer (the pod's eth0), skipping the host veth's
 * egress and the per-CPU backlog queue that bpf_redirect() goes through. It
 * is only valid from tc ingress, which from_pod is, and works with TCX links
 * on this kernel (6.18; tested by test/datapath.test.ts with ICMP and TCP).
 * Consequence for policy: to_pod does NOT see pod-to-pod traffic on this
 * node (it would with bpf_redirect), so the destination's ingress policy has
 * to be checked here in from_pod. Kernels before 5.10 lack the helper and
 * would need bpf_redirect(dst->ifindex, 0).
 */
static __always_inline int deliver_local(struct __sk_buff *skb, struct ethhdr *eth,
					 const struct endpoint_info *dst)
{
	__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, dst->host_mac, ETH_ALEN);
	count(SLUICE_CTR_REDIRECT_LOCAL, skb);
	return bpf_redirect_peer(dst->ifindex, 0);
}

/* Does the pod have an address of this family (its field in endpoint_info is zero if not)? */
static __always_inline int ep_has_address(const struct endpoint_info *ep, __u8 family)
{
	const __u8 *addr = family == SLUICE_FAMILY_IPV4 ? ep->ipv4 : ep->ipv6;
	__u8 any = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		if (family != SLUICE_FAMILY_IPV4 || i < 4)
			any |= addr[i];
	return any != 0;
}

/*
 * A pod may only send as itself: its own MAC and its own address. A pod
 * without an address of the packet's family owns none: the zero its field
 * holds is the unspecified address, not its own.
 */
static __always_inline int spoofed(const struct ethhdr *eth, const struct endpoint_info *ep, const struct flow *f)
{
	if (!mac_equal(eth->h_source, ep->mac))
		return 1;
	if (f->family == SLUICE_FAMILY_IPV4)
		return !ep_has_address(ep, f->family) || !addr_equal(f->saddr, ep->ipv4, 4);
	if (ep_has_address(ep, f->family) && addr_equal(f->saddr, ep->ipv6, 16))
		return 0;
	/* Link-local and unspecified sources only for neighbour discovery. */
	return !(f->is_ndp && ipv6_link_local_or_unspecified(f->saddr));
}

/*
 * The policy decision on a new flow from src to dst (local endpoints, or NULL),
 * with its monitor event and counters; here is the endpoint whose device the
 * packet is on (or, after the stack, whose packet it is). Returns 0 when allowed; when denied, the packet is counted as
 * dropped (for here, and for the endpoint whose policy denied it) and the
 * caller drops it.
 */
static __always_inline int judge_new_flow(const struct pkt_meta *p, const struct flow *f, const struct endpoint_info *src,
					  const struct endpoint_info *dst, __u32 src_identity, __u32 dst_identity,
					  const struct endpoint_info *here)
{
	struct event_meta m = {
		.type = SLUICE_EVENT_VERDICT,
		.reason = SLUICE_CTR_POLICY_ALLOWED,
		.src_identity = src_identity,
		.dst_identity = dst_identity,
		.src_endpoint = src ? src->endpoint_id : 0,
		.dst_endpoint = dst ? dst->endpoint_id : 0,
		.verdict = SLUICE_VERDICT_ALLOWED,
	};
	int denied = flow_verdict(f, src, dst, src_identity, dst_identity);
	const struct endpoint_info *denier;

	m.direction = verdict_direction(src, dst, denied);
	if (denied) {
		m.reason = denied;
		m.verdict = SLUICE_VERDICT_DENIED;
		emit_event(p, &m, f);
		denier = denied == SLUICE_CTR_DROP_POLICY_INGRESS ? dst : src;
		if (denier && denier != here)
			ep_count_len(denier->endpoint_id, denied, p->len);
		ep_count_len(here->endpoint_id, denied, p->len);
		count_len(denied, p->len);
		return denied;
	}
	emit_event(p, &m, f);
	count_len(SLUICE_CTR_POLICY_ALLOWED, p->len);
	if (src)
		ep_count_len(src->endpoint_id, SLUICE_CTR_POLICY_ALLOWED, p->len);
	if (dst)
		ep_count_len(dst->endpoint_id, SLUICE_CTR_POLICY_ALLOWED, p->len);
	return 0;
}

/*
 * The one verdict block of a new flow, shared by every program: the
 * conntrack budget of the endpoint the flow is charged to, the policy verdict
 * (judge_new_flow: its event and counters), and the conntrack entry that lets
 * the rest of the flow and its replies through. With judge 0 the flow is
 * recorded without a verdict (a Service flow whose egress is judged once the
 * stack has translated it). Returns 0, or a negative drop reason.
 */
static __always_inline int enforce_new_flow(const struct pkt_meta *p, const struct flow *f, const struct endpoint_info *src,
					    const struct endpoint_info *dst, __u32 src_identity, __u32 dst_identity,
					    const struct endpoint_info *here, __u32 ct_flags, int judge)
{
	__u32 charged;
	int err;

	err = ct_reserve(f, src, src_identity, &charged);
	if (err)
		return -err;
	if (judge) {
		err = judge_new_flow(p, f, src, dst, src_identity, dst_identity, here);
		if (err) {
			ct_uncharge(charged);
			return -err;
		}
	}
	err = ct_create(f, ct_flags, src, dst, src_identity, dst_identity, charged);
	return err ? -err : 0;
}

/* A policy denial: judge_new_flow has counted and reported it already. */
static __always_inline int reported(int reason)
{
	return reason == SLUICE_CTR_DROP_POLICY_EGRESS || reason == SLUICE_CTR_DROP_POLICY_INGRESS;
}

/*
 * The one drop exit of the tc programs: counts the drop (globally and for
 * the endpoint whose device the packet is on) and sends its monitor event,
 * with the peer's identity on the far side.
 */
static __always_inline int drop_exit(struct __sk_buff *skb, const struct endpoint_info *ep, int reason,
				     const struct flow *f, __u32 peer, int from_endpoint)
{
	if (reported(reason))
		return TC_ACT_SHOT;
	if (from_endpoint)
		return ep_drop_event(skb, ep->endpoint_id, reason, f, ep->identity, peer, 1);
	return ep_drop_event(skb, ep->endpoint_id, reason, f, peer, ep->identity, 0);
}

/*
 * Everything from_pod does for an IP packet: anti-spoofing, then conntrack,
 * then (for a new flow) the source's egress policy and, when the destination
 * is a pod on this node, its ingress policy; then delivery. Returns the tc
 * verdict, or a negative drop reason for from_pod's drop exit (*peer: the
 * identity of the far end, when it matters).
 */
static __always_inline int forward_from_pod(struct __sk_buff *skb, const struct endpoint_info *ep, __be16 proto,
					    struct flow *f, __u32 *peer)
{
	struct endpoint_key dkey = {};
	struct endpoint_info *dst;
	enum ct_state state;
	struct ethhdr *eth;
	__u32 ct_flags = 0;
	int err;

	err = proto == bpf_htons(ETH_P_IP) ? parse_ipv4(skb, f) : parse_ipv6(skb, f);
	if (err != PARSE_OK)
		return -err;

	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return -SLUICE_CTR_DROP_MALFORMED;
	if (spoofed(eth, ep, f))
		return -SLUICE_CTR_DROP_SPOOF;
	/* Only now, with the source proven: a pod's fragments reach only its own entries. */
	err = frag_track(f, ep->endpoint_id, SLUICE_DIR_EGRESS);
	if (err)
		return -err;
	/*
	 * Neighbour discovery and MLD are the link's business: the host answers
	 * them. Only toward on-link destinations, though: sent to a routable
	 * address they would be forwarded to other pods past every policy.
	 */
	if (f->is_ndp)
		return ipv6_on_link_destination(f->daddr) ? TC_ACT_OK : -SLUICE_CTR_DROP_MALFORMED;

	/*
	 * A node's overlay port: what a pod encapsulated there would come out of
	 * that node's VXLAN device with any inner source it liked, past the
	 * spoofing check of the node it really came from. Pods never speak VXLAN.
	 */
	if (f->protocol == IPPROTO_UDP && f->dport == bpf_htons(SLUICE_VXLAN_PORT)) {
		*peer = lookup_identity(f->family, f->daddr);
		if (*peer == SLUICE_ID_HOST || *peer == SLUICE_ID_REMOTE_NODE)
			return -SLUICE_CTR_DROP_TUNNEL;
		*peer = 0;
	}

	/* A Service frontend becomes a backend here, so conntrack and policy see the backend. */
	err = service_dnat(skb, f);
	if (err)
		return err;

	dkey.family = f->family;
	__builtin_memcpy(dkey.addr, f->daddr, 16);
	dst = bpf_map_lookup_elem(&endpoints, &dkey);

	if (f->icmp_error) {
		if (!icmp_error_related(skb, f, &ct_flags))
			return -SLUICE_CTR_DROP_ICMP_UNRELATED;
		count(SLUICE_CTR_CT_RELATED, skb);
		if (ct_flags & SLUICE_CT_VIA_STACK) {
			count(SLUICE_CTR_TO_STACK, skb);
			return TC_ACT_OK;
		}
	} else if ((state = ct_lookup(f, ep, dst, &ct_flags)) == CT_REVOKED) {
		return -SLUICE_CTR_DROP_REVOKED;
	} else if (state == CT_ESTABLISHED) {
		count(SLUICE_CTR_CT_ESTABLISHED, skb);
		/*
		 * A reply of a flow that reached this pod through the stack (a Service's
		 * DNAT): the stack must see it to undo the translation, so no shortcut.
		 */
		if (ct_flags & SLUICE_CT_VIA_STACK) {
			count(SLUICE_CTR_TO_STACK, skb);
			return TC_ACT_OK;
		}
	} else {
		__u32 dst_identity = dst ? dst->identity : lookup_identity(f->family, f->daddr);
		struct pkt_meta p = pkt_of(skb);

		if (dst_identity == SLUICE_ID_SERVICE)
			ct_flags = SLUICE_CT_SERVICE;
		/*
		 * The source's egress policy and, for a pod on this node, the
		 * destination's ingress policy (to_pod never sees this packet). A Service
		 * address is only a name for its backends: an egress-isolated pod's flow
		 * to one is judged once the stack has translated it (service_egress; or
		 * to_pod, for a backend on this node).
		 */
		err = enforce_new_flow(&p, f, ep, dst, ep->identity, dst_identity, ep, ct_flags,
				       !(ct_flags & SLUICE_CT_SERVICE && ep->flags & SLUICE_EP_EGRESS_ISOLATED));
		if (err) {
			service_nat_forget(f);
			return err;
		}
	}

	/* A reply from a backend on this node to a client whose packets were translated. */
	err = service_revnat(skb, f);
	if (err)
		return -err;
	if (dst) {
		/* Re-derive the header pointer: the verifier forgets it across helper calls. */
		eth = (void *)(long)skb->data;
		if ((void *)(eth + 1) > (void *)(long)skb->data_end)
			return -SLUICE_CTR_DROP_MALFORMED;
		return deliver_local(skb, eth, dst);
	}
	/* Other nodes, the host, Services (kube-proxy), the world: the stack routes them. */
	if (ct_flags & SLUICE_CT_SERVICE && ep->flags & SLUICE_EP_EGRESS_ISOLATED)
		skb->mark |= SLUICE_MARK_EGRESS_PENDING;
	count(SLUICE_CTR_TO_STACK, skb);
	return TC_ACT_OK;
}

/* from_pod's IP path and its one drop exit. */
static __always_inline int from_pod_ip(struct __sk_buff *skb, const struct endpoint_info *ep, __be16 proto)
{
	struct flow f = {};
	__u32 peer = 0, l7_off;
	int ret = forward_from_pod(skb, ep, proto, &f, &peer);

	if (ret < 0)
		return drop_exit(skb, ep, -ret, &f, peer, 1);
	/* What a pod sends, it sends here: each L7 message of a local pod is handed up once, by its sender. */
	l7_off = l7_payload_offset(skb, &f);
	if (l7_off)
		emit_l7_event(skb, &f, l7_off, ep->endpoint_id, 0);
	return ret;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;
	struct endpoint_info *ep;

	count(SLUICE_CTR_FROM_POD, skb);

	ep = bpf_map_lookup_elem(&devices, &ifindex);
	if (!ep)
		return drop(SLUICE_CTR_DROP_UNKNOWN_EP, skb);

	if ((void *)(eth + 1) > data_end)
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_ARP):
		return handle_arp(skb, ep);
	case bpf_htons(ETH_P_IPV6): {
		int ret = handle_ndp(skb, ep);

		if (ret >= 0)
			return ret;
		return from_pod_ip(skb, ep, bpf_htons(ETH_P_IPV6));
	}
	case bpf_htons(ETH_P_IP):
		return from_pod_ip(skb, ep, eth->h_proto);
	default:
		/* VLAN tags, raw frames and the like have no business leaving a pod. */
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);
	}
}

/*
 * What to_pod does for an IP packet: the pod's ingress policy (this node
 * itself is always let in), conntrack, and, for a local pod's packet that came
 * through the stack (to a Service address, now translated to this backend),
 * the egress policy from_pod left for here. Returns the tc verdict, or a
 * negative drop reason for to_pod's drop exit (*peer: the source's identity).
 */
static __always_inline int forward_to_pod(struct __sk_buff *skb, const struct endpoint_info *ep, __be16 proto,
					  struct flow *f, __u32 *peer)
{
	struct endpoint_key skey = {};
	struct endpoint_info *src;
	struct pkt_meta p;
	__u32 ct_flags = 0;
	int err;

	err = proto == bpf_htons(ETH_P_IP) ? parse_ipv4(skb, f) : parse_ipv6(skb, f);
	if (err != PARSE_OK)
		return -err;
	/* Fragments from the stack are charged to the pod they are for: a flood of them fills its budget only. */
	err = frag_track(f, ep->endpoint_id, SLUICE_DIR_INGRESS);
	if (err)
		return -err;
	/*
	 * Neighbour discovery from the link itself: a hop limit of 255 proves it
	 * was not forwarded (RFC 4861); otherwise only on-link destinations, which
	 * no router forwards. A pod elsewhere cannot use it as a channel.
	 */
	if (f->is_ndp)
		return f->hop_limit == 255 || ipv6_on_link_destination(f->daddr) ? TC_ACT_OK : -SLUICE_CTR_DROP_MALFORMED;
	skey.family = f->family;
	__builtin_memcpy(skey.addr, f->saddr, 16);
	src = bpf_map_lookup_elem(&endpoints, &skey);
	if (f->icmp_error) {
		if (!icmp_error_related(skb, f, &ct_flags))
			return -SLUICE_CTR_DROP_ICMP_UNRELATED;
		count(SLUICE_CTR_CT_RELATED, skb);
		return TC_ACT_OK;
	}
	switch (ct_lookup(f, src, ep, &ct_flags)) {
	case CT_REVOKED:
		*peer = src ? src->identity : lookup_identity(f->family, f->saddr);
		return -SLUICE_CTR_DROP_REVOKED;
	case CT_ESTABLISHED:
		count(SLUICE_CTR_CT_ESTABLISHED, skb);
		/* A reply from a backend reached through the stack, to a client whose packets from_pod translated. */
		err = service_revnat(skb, f);
		return err ? -err : TC_ACT_OK;
	default:
		break;
	}
	*peer = src ? src->identity : lookup_identity(f->family, f->saddr);
	/* The host's pass is for the host: a client this node masqueraded is judged as itself. */
	ct_flags = SLUICE_CT_VIA_STACK;
	if (*peer == SLUICE_ID_HOST) {
		*peer = masqueraded_identity(skb, f);
		if (*peer != SLUICE_ID_HOST)
			ct_flags |= SLUICE_CT_MASQUERADED;
	}
	p = pkt_of(skb);
	err = enforce_new_flow(&p, f, src, ep, *peer, ep->identity, ep, ct_flags, 1);
	return err ? err : TC_ACT_OK;
}

/*
 * Traffic the host stack hands to a pod: from this node (always allowed, as
 * kubelet probes need), from other nodes' pods and from the world (the pod's
 * ingress policy, with the source identity from the ipcache), and replies to
 * the pod's own flows (conntrack).
 */
SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;
	struct endpoint_info *ep;
	struct flow f = {};
	__u32 peer = 0, l7_off;
	int ret;

	count(SLUICE_CTR_TO_POD, skb);
	ep = bpf_map_lookup_elem(&devices, &ifindex);
	/* Not registered yet (ADD in progress) or already gone: nothing may reach the pod. */
	if (!ep)
		return drop(SLUICE_CTR_DROP_UNKNOWN_EP, skb);
	if ((void *)(eth + 1) > data_end)
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) && eth->h_proto != bpf_htons(ETH_P_IPV6))
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);
	ret = forward_to_pod(skb, ep, eth->h_proto, &f, &peer);
	if (ret < 0)
		return drop_exit(skb, ep, -ret, &f, peer, 0);
	/* An L7 message from off the node or from the host; a local pod's was handed up by from_pod. */
	l7_off = l7_payload_offset(skb, &f);
	if (l7_off && !local_endpoint(f.family, f.saddr))
		emit_l7_event(skb, &f, l7_off, 0, ep->endpoint_id);
	return ret;
}

/*
 * Run by the agent (BPF_PROG_TEST_RUN) every few seconds: removes the
 * conntrack entries no packet will ever match again (idle past their
 * timeout, or bound to an endpoint that is gone) and the fragment entries of
 * datagrams past their reassembly time, and uncharges their endpoints, all
 * in the kernel. Neither table is an LRU, so this is what frees them; a
 * packet that meets such an entry first removes it itself.
 */
SEC("syscall")
int ct_sweep(struct ct_sweep_result *result)
{
	struct ct_sweep_state st = { .now_ns = bpf_ktime_get_ns() };
	struct frag_sweep_state fst = { .now_ns = st.now_ns };

	bpf_for_each_map_elem(&conntrack, ct_sweep_entry, &st, 0);
	bpf_for_each_map_elem(&fragments, frag_sweep_entry, &fst, 0);
	result->scanned = st.scanned;
	result->expired = st.expired;
	result->stale = st.stale;
	result->frag_scanned = fst.scanned;
	result->frag_expired = fst.expired;
	return 0;
}

/*
 * After the host stack has translated a Service address (kube-proxy's DNAT),
 * at netfilter's POST_ROUTING (leaving for another node, or the world) and
 * LOCAL_IN (a backend on this node's own network): the egress policy from_pod
 * left pending (SLUICE_MARK_EGRESS_PENDING) is judged on the real backend,
 * once per flow (conntrack). A backend pod on this node is to_pod's to judge.
 * Attached for IPv4 and IPv6, before source NAT could hide the pod.
 */
SEC("netfilter")
int service_egress(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct pkt_meta p = { .len = skb->len };
	struct endpoint_key key = {};
	struct endpoint_info *src;
	struct bpf_dynptr pkt;
	struct flow f = {};
	__u32 ct_flags = 0;
	__u32 dst_identity;
	int err;

	if (!(skb->mark & SLUICE_MARK_EGRESS_PENDING))
		return NF_ACCEPT;
	if (bpf_dynptr_from_skb(skb, 0, &pkt) || nf_parse(&pkt, ctx->state->pf, &f)) {
		count_len(SLUICE_CTR_DROP_MALFORMED, p.len);
		return NF_DROP;
	}
	key.family = f.family;
	__builtin_memcpy(key.addr, f.saddr, 16);
	src = bpf_map_lookup_elem(&endpoints, &key);
	/*
	 * Not a pod's packet (any more): the mark came along onto what the
	 * pod's packet became, the VXLAN device's outer packet, whose inner one
	 * was judged here already.
	 */
	if (!src || !(src->flags & SLUICE_EP_EGRESS_ISOLATED))
		return NF_ACCEPT;
	__builtin_memcpy(key.addr, f.daddr, 16);
	if (bpf_map_lookup_elem(&endpoints, &key))
		return NF_ACCEPT;
	switch (ct_lookup(&f, src, NULL, &ct_flags)) {
	case CT_REVOKED:
		ep_count_len(src->endpoint_id, SLUICE_CTR_DROP_REVOKED, p.len);
		count_len(SLUICE_CTR_DROP_REVOKED, p.len);
		return NF_DROP;
	case CT_ESTABLISHED:
		count_len(SLUICE_CTR_CT_ESTABLISHED, p.len);
		return NF_ACCEPT;
	default:
		break;
	}
	dst_identity = lookup_identity(f.family, f.daddr);
	/* Nothing translated it: the address is all there is to judge. */
	if (dst_identity == SLUICE_ID_SERVICE)
		dst_identity = SLUICE_ID_WORLD;
	err = enforce_new_flow(&p, &f, src, NULL, src->identity, dst_identity, src, 0, 1);
	if (!err)
		return NF_ACCEPT;
	if (!reported(-err)) {
		ep_count_len(src->endpoint_id, -err, p.len);
		count_len(-err, p.len);
	}
	return NF_DROP;
}

/*
 * At netfilter's LOCAL_IN, in VXLAN mode: a packet for this node's VXLAN port
 * must come from another node. Decapsulated, anything else would put packets
 * with any inner source it liked past every node's spoofing check.
 */
SEC("netfilter")
int vxlan_in(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct pkt_meta p = { .len = skb->len };
	struct event_meta m = { .type = SLUICE_EVENT_DROP, .reason = SLUICE_CTR_DROP_TUNNEL };
	struct bpf_dynptr pkt;
	struct flow f = {};
	__u32 peer;

	if (bpf_dynptr_from_skb(skb, 0, &pkt) || nf_parse(&pkt, ctx->state->pf, &f)) {
		count_len(SLUICE_CTR_DROP_MALFORMED, p.len);
		return NF_DROP;
	}
	if (f.protocol != IPPROTO_UDP || f.dport != bpf_htons(SLUICE_VXLAN_PORT))
		return NF_ACCEPT;
	peer = lookup_identity(f.family, f.saddr);
	if (peer == SLUICE_ID_REMOTE_NODE || peer == SLUICE_ID_HOST)
		return NF_ACCEPT;
	m.src_identity = peer;
	m.dst_identity = SLUICE_ID_HOST;
	emit_event(&p, &m, &f);
	count_len(SLUICE_CTR_DROP_TUNNEL, p.len);
	return NF_DROP;
}
