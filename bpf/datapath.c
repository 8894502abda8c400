// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Sluice datapath: two tc programs on every pod's host-side veth.
 *
 *   from_pod  host veth ingress: what the pod sends. Answers ARP for the
 *             gateway, drops spoofed packets, delivers pod-to-pod traffic on
 *             this node straight into the destination pod, hands the rest to
 *             the host stack.
 *   to_pod    host veth egress: what the host stack sends to the pod.
 *
 * Both are attached as TCX links; TC_ACT_* verdicts equal the TCX verdicts.
 * Map layouts live in sluice.h, mirrored by datapath/abi.ts.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sluice.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Pod address -> endpoint: is this destination a pod on this node? */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_ENDPOINTS);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

/* Host veth ifindex -> endpoint: which pod is behind the device a packet came in on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} devices SEC(".maps");

/* Global counters, per CPU so the hot path needs no atomics; the agent sums them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_CTR_MAX);
	__type(key, __u32);
	__type(value, struct counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

/*
 * Keeps `enum sluice_counter` in the object's BTF (types only reachable from
 * inlined code are not emitted), so test/abi.test.ts can compare it with
 * datapath/abi.ts. Lives in .rodata; no program reads it.
 */
const volatile enum sluice_counter sluice_counter_btf_anchor = SLUICE_CTR_MAX;

/*
 * linux/if_arp.h drags in glibc headers that do not build for the BPF target,
 * so the few ARP names we need are spelled out here (same values as there).
 */
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

/* An Ethernet/IPv4 ARP packet: the fixed header and the addresses after it. */
struct arp_ipv4 {
	__be16 ar_hrd;      /* hardware type */
	__be16 ar_pro;      /* protocol type */
	__u8 ar_hln;        /* hardware address length */
	__u8 ar_pln;        /* protocol address length */
	__be16 ar_op;       /* request or reply */
	__u8 sha[ETH_ALEN]; /* sender hardware address */
	__be32 spa;         /* sender protocol address */
	__u8 tha[ETH_ALEN]; /* target hardware address */
	__be32 tpa;         /* target protocol address */
} __attribute__((packed));

static __always_inline void count(enum sluice_counter ctr, struct __sk_buff *skb)
{
	__u32 key = ctr;
	struct counter_value *value = bpf_map_lookup_elem(&counters, &key);

	if (!value)
		return;
	value->packets += 1;
	value->bytes += skb->len;
}

static __always_inline int drop(enum sluice_counter reason, struct __sk_buff *skb)
{
	count(reason, skb);
	return TC_ACT_SHOT;
}

/* clang 14 turns __builtin_memcmp into a call to an undefined memcmp: compare by hand. */
static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* The pod's own IPv4 address, as stored in struct endpoint_info (network order). */
static __always_inline __be32 endpoint_ipv4(const struct endpoint_info *ep)
{
	__be32 addr;

	__builtin_memcpy(&addr, ep->ipv4, sizeof(addr));
	return addr;
}

/*
 * The pod routes everything via a link-local gateway (169.254.1.1) and ARPs
 * for it on eth0. No host address backs it: we answer every ARP request for
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

static __always_inline int handle_ipv4(struct __sk_buff *skb, const struct endpoint_info *ep)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct endpoint_key key = { .family = SLUICE_FAMILY_IPV4 };
	struct endpoint_info *dst;

	if ((void *)(ip + 1) > data_end)
		return drop(SLUICE_CTR_DROP_MALFORMED, skb);
	if (ip->version != 4 || ip->ihl < 5 || (void *)ip + ip->ihl * 4 > data_end)
		return drop(SLUICE_CTR_DROP_MALFORMED, skb);

	/* A pod may only send as itself: its own MAC and its own IPv4 address. */
	if (!mac_equal(eth->h_source, ep->mac) ||
	    ip->saddr != endpoint_ipv4(ep))
		return drop(SLUICE_CTR_DROP_SPOOF, skb);

	__builtin_memcpy(key.addr, &ip->daddr, sizeof(ip->daddr));
	dst = bpf_map_lookup_elem(&endpoints, &key);
	if (dst)
		return deliver_local(skb, eth, dst);

	/* Other nodes, the host, Services (kube-proxy), the world: the stack routes them. */
	count(SLUICE_CTR_TO_STACK, skb);
	return TC_ACT_OK;
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
		return drop(SLUICE_CTR_DROP_MALFORMED, skb);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_ARP):
		return handle_arp(skb, ep);
	case bpf_htons(ETH_P_IP):
		return handle_ipv4(skb, ep);
	default:
		/* IPv6 (and its anti-spoofing and policy) comes with a later change. */
		return TC_ACT_OK;
	}
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	/* Ingress policy for traffic from the stack comes with a later change. */
	count(SLUICE_CTR_TO_POD, skb);
	return TC_ACT_OK;
}
