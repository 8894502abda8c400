/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Answering ARP and neighbour solicitations for the gateway nobody holds. Included by datapath.c only. */
#ifndef SLUICE_NEIGH_H
#define SLUICE_NEIGH_H

/*
 * The pod routes everything via a gateway address that no interface holds
 * (the pool's first address) and ARPs for it on eth0. No host address backs it: we answer every ARP request for
 * an address other than the pod's own with the host veth's MAC, so all the
 * pod's traffic arrives here. The reply is built in place and sent back out
 * of the same veth, towards the pod.
 */
static __always_inline int handle_arp(struct __sk_buff *skb, const struct endpoint_info *ep)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct arp_ipv4 *arp = (void *)(eth + 1);
	__u8 pod_mac[ETH_ALEN];
	__be32 pod_ip, target_ip;

	if ((void *)(arp + 1) > data_end)
		return TC_ACT_OK;
	if (arp->ar_hrd != bpf_htons(ARPHRD_ETHER) || arp->ar_pro != bpf_htons(ETH_P_IP) ||
	    arp->ar_hln != ETH_ALEN || arp->ar_pln != 4 || arp->ar_op != bpf_htons(ARPOP_REQUEST))
		return TC_ACT_OK;

	target_ip = arp->tpa;
	/* The pod probing its own address (duplicate address detection) gets no answer. */
	if (target_ip == endpoint_ipv4(ep))
		return TC_ACT_OK;

	__builtin_memcpy(pod_mac, arp->sha, ETH_ALEN);
	pod_ip = arp->spa;

	arp->ar_op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(arp->tha, pod_mac, ETH_ALEN);
	arp->tpa = pod_ip;
	__builtin_memcpy(arp->sha, ep->host_mac, ETH_ALEN);
	arp->spa = target_ip;
	__builtin_memcpy(eth->h_dest, pod_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->host_mac, ETH_ALEN);

	count(SLUICE_CTR_ARP_REPLY, skb);
	/* Egress of the host veth is the way back into the pod. */
	return bpf_redirect(skb->ifindex, 0);
}

/*
 * IPv6 counterpart of handle_arp: the pod's gateway is an address nobody
 * holds, so a neighbour solicitation from the pod for any address but its
 * own is answered with the host veth's MAC, built in place and sent back to
 * the pod. Returns -1 when the packet is not such a solicitation.
 */
static __noinline int handle_ndp(struct __sk_buff *skb, const struct endpoint_info *ep)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct nd_msg_ll *nd = (void *)(ip6 + 1);
	struct nd_csum_buf buf = {};
	__u8 pod_mac[ETH_ALEN];
	__s64 sum;
	__u32 csum;

	if ((void *)(nd + 1) > data_end)
		return -1;
	if (ip6->nexthdr != IPPROTO_ICMPV6 || nd->type != NDISC_NEIGHBOUR_SOLICITATION || nd->code != 0 ||
	    nd->opt_type != ND_OPT_SOURCE_LL_ADDR || nd->opt_len != 1 ||
	    bpf_ntohs(ip6->payload_len) != sizeof(struct nd_msg_ll))
		return -1;
	/* Duplicate address detection (from ::) and the pod asking for itself get no answer. */
	if (ipv6_unspecified(ip6->saddr.in6_u.u6_addr8))
		return -1;
	if (addr_equal(nd->target, ep->ipv6, 16))
		return -1;

	__builtin_memcpy(pod_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, pod_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->host_mac, ETH_ALEN);
	__builtin_memcpy(&ip6->daddr, &ip6->saddr, 16);
	__builtin_memcpy(&ip6->saddr, nd->target, 16);
	ip6->hop_limit = 255;
	nd->type = NDISC_NEIGHBOUR_ADVERTISEMENT;
	nd->checksum = 0;
	nd->flags = ND_NA_FLAGS_RSO;
	nd->opt_type = ND_OPT_TARGET_LL_ADDR;
	__builtin_memcpy(nd->opt_mac, ep->host_mac, ETH_ALEN);

	__builtin_memcpy(buf.saddr, &ip6->saddr, 16);
	__builtin_memcpy(buf.daddr, &ip6->daddr, 16);
	buf.len = bpf_htonl(sizeof(struct nd_msg_ll));
	buf.nexthdr = IPPROTO_ICMPV6;
	__builtin_memcpy(&buf.msg, nd, sizeof(buf.msg));
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&buf, sizeof(buf), 0);
	if (sum < 0)
		return -1;
	csum = (__u32)sum;
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	nd->checksum = ~csum & 0xffff;

	count(SLUICE_CTR_ARP_REPLY, skb);
	return bpf_redirect(skb->ifindex, 0);
}

#endif
