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
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
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


/* Address prefix -> identity of every pod of the cluster and of this node's addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SLUICE_MAX_IPCACHE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache SEC(".maps");

/* (endpoint, direction, peer, protocol, port prefix) -> allowed. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SLUICE_MAX_POLICY);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy SEC(".maps");

/* (endpoint, direction, peer address prefix) -> selector looked up as a peer in `policy`. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SLUICE_MAX_CIDR_POLICY);
	__type(key, struct cidr_policy_key);
	__type(value, struct cidr_policy_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidr_policy SEC(".maps");

/* Flows a policy check allowed; replies match their reversed key. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_CONNTRACK);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* Ports of fragmented datagrams, from their first fragment. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_FRAGMENTS);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fragments SEC(".maps");

/* Per-endpoint counters (allowed, dropped by reason). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SLUICE_MAX_ENDPOINTS * 4);
	__type(key, struct ep_counter_key);
	__type(value, struct counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ep_counters SEC(".maps");

/* Runtime settings (struct datapath_config), written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datapath_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

/* Monitor events for the agent: verdicts on new flows and drops. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_EVENTS_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

/* Token bucket per CPU: a flood of drops must not turn into a flood of events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_rate);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} event_rate SEC(".maps");

/* Keeps struct event in the BTF for test/abi.test.ts (ring buffers carry no value type). */
const volatile struct event sluice_event_btf_anchor = {};

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

/* Likewise linux/icmp.h (it includes linux/if.h): the ICMP types we read. */
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define NDISC_NEIGHBOUR_SOLICITATION 135
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136
#define ND_OPT_SOURCE_LL_ADDR 1
#define ND_OPT_TARGET_LL_ADDR 2
/* Neighbour advertisement flags: Router, Solicited, Override. */
#define ND_NA_FLAGS_RSO 0xe0

/* A neighbour solicitation or advertisement with one link-layer address option (RFC 4861). */
struct nd_msg_ll {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__u8 flags;         /* advertisements: R, S, O; solicitations: reserved */
	__u8 reserved[3];
	__u8 target[16];
	__u8 opt_type;      /* ND_OPT_*_LL_ADDR */
	__u8 opt_len;       /* in units of 8 bytes: 1 */
	__u8 opt_mac[ETH_ALEN];
} __attribute__((packed));

/* What the ICMPv6 checksum covers: the pseudo-header and the message. */
struct nd_csum_buf {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
	struct nd_msg_ll msg;
} __attribute__((packed));

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

/* Adds the packet to one of the endpoint's own counters. */
static __always_inline void ep_count(__u32 endpoint_id, enum sluice_counter ctr, struct __sk_buff *skb)
{
	struct ep_counter_key key = { .endpoint_id = endpoint_id, .counter = ctr };
	struct counter_value *value = bpf_map_lookup_elem(&ep_counters, &key);

	if (!value) {
		struct counter_value zero = {};

		bpf_map_update_elem(&ep_counters, &key, &zero, BPF_NOEXIST);
		value = bpf_map_lookup_elem(&ep_counters, &key);
		if (!value)
			return;
	}
	value->packets += 1;
	value->bytes += skb->len;
}

static __always_inline int drop(enum sluice_counter reason, struct __sk_buff *skb)
{
	count(reason, skb);
	return TC_ACT_SHOT;
}

/* Drops a packet of a known endpoint, counting it globally and for the endpoint. */
static __always_inline int ep_drop(__u32 endpoint_id, enum sluice_counter reason, struct __sk_buff *skb)
{
	ep_count(endpoint_id, reason, skb);
	return drop(reason, skb);
}

/* Takes one token from this CPU's bucket; false when the event must be dropped as lost. */
static __always_inline int event_allowed(void)
{
	__u32 key = 0;
	struct event_rate *rate = bpf_map_lookup_elem(&event_rate, &key);
	__u64 now = bpf_ktime_get_ns();
	__u64 refill;

	if (!rate)
		return 0;
	refill = (now - rate->last_ns) * SLUICE_EVENTS_PER_SEC / 1000000000ull;
	if (refill > 0) {
		rate->tokens += refill;
		if (rate->tokens > SLUICE_EVENTS_BURST)
			rate->tokens = SLUICE_EVENTS_BURST;
		rate->last_ns = now;
	}
	if (rate->tokens == 0)
		return 0;
	rate->tokens -= 1;
	return 1;
}

/* What an event says beyond the flow. */
struct event_meta {
	__u32 type;
	__u32 reason;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 src_endpoint;
	__u32 dst_endpoint;
	__u8 direction;
	__u8 verdict;
};

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

static __always_inline int addr_equal(const __u8 *a, const __u8 *b, int len)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		if (i < len)
			diff |= a[i] ^ b[i];
	return diff == 0;
}

/* ::, the source of duplicate address detection. */
static __always_inline int ipv6_unspecified(const __u8 *addr)
{
	__u8 any = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		any |= addr[i];
	return any == 0;
}

/* fe80::/10 and the unspecified address: what neighbour discovery uses before an address is up. */
static __always_inline int ipv6_link_local_or_unspecified(const __u8 *addr)
{
	return (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80) || ipv6_unspecified(addr);
}

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
static __always_inline int handle_ndp(struct __sk_buff *skb, const struct endpoint_info *ep)
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

/* A packet's flow: addresses, protocol and ports, as policy and conntrack see it. */
struct flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	__u8 is_ndp; /* ICMPv6 neighbour discovery or MLD: link plumbing, not a flow */
	__u8 tcp_flags;
};

/* Sends one monitor event, within the rate limit; counts what it cannot send. */
static __noinline void emit_event(struct __sk_buff *skb, const struct event_meta *m, const struct flow *f)
{
	struct event *e;

	if (!event_allowed()) {
		count(SLUICE_CTR_EVENTS_LOST, skb);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(SLUICE_CTR_EVENTS_LOST, skb);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->type = m->type;
	e->reason = m->reason;
	e->src_identity = m->src_identity;
	e->dst_identity = m->dst_identity;
	e->src_endpoint = m->src_endpoint;
	e->dst_endpoint = m->dst_endpoint;
	__builtin_memcpy(e->saddr, f->saddr, 16);
	__builtin_memcpy(e->daddr, f->daddr, 16);
	e->sport = f->sport;
	e->dport = f->dport;
	e->protocol = f->protocol;
	e->family = f->family;
	e->direction = m->direction;
	e->verdict = m->verdict;
	e->ifindex = skb->ifindex;
	e->len = skb->len;
	bpf_ringbuf_submit(e, 0);
}

/* Drops a packet of a known endpoint with an event saying why. */
static __always_inline int ep_drop_event(struct __sk_buff *skb, __u32 endpoint_id, enum sluice_counter reason,
					 const struct flow *f, __u32 src_identity, __u32 dst_identity, int from_endpoint)
{
	struct event_meta m = {
		.type = SLUICE_EVENT_DROP,
		.reason = reason,
		.src_identity = src_identity,
		.dst_identity = dst_identity,
		.src_endpoint = from_endpoint ? endpoint_id : 0,
		.dst_endpoint = from_endpoint ? 0 : endpoint_id,
	};

	emit_event(skb, &m, f);
	return ep_drop(endpoint_id, reason, skb);
}

/* Extension headers walked before giving up on an IPv6 packet. */
#define IPV6_MAX_EXT_HEADERS 8
#define IPV6_FRAG_HDR_BYTES 8
#define TCP_HDR_MIN_BYTES 20
#define UDP_HDR_BYTES 8
#define SCTP_COMMON_HDR_BYTES 12
#define ICMP_ECHO_HDR_BYTES 8
#define TCP_FLAGS_OFFSET 13
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define NSEC_PER_SEC 1000000000ull
#define IPV4_FRAG_OFFSET_MASK 0x1fff
#define IPV4_FRAG_MORE 0x2000
#define IPV6_FRAG_OFFSET_SHIFT 3
#define IPV6_FRAG_MORE 0x0001
#define PARSE_OK 0

/*
 * Reads the ports (or the ICMP echo id) at l4_off. A first fragment must hold
 * the whole transport header: a tiny first fragment could otherwise hide the
 * real ports in a later one (RFC 1858).
 */
static __always_inline int parse_l4(struct __sk_buff *skb, __u32 l4_off, struct flow *f)
{
	__u8 buf[ICMP_ECHO_HDR_BYTES];

	switch (f->protocol) {
	case IPPROTO_TCP:
		/* Bounds-check the full minimum header; the flags say when a flow ends. */
		if (bpf_skb_load_bytes(skb, l4_off + TCP_HDR_MIN_BYTES - 1, buf, 1) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		if (bpf_skb_load_bytes(skb, l4_off + TCP_FLAGS_OFFSET, &f->tcp_flags, 1) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		/* fall through */
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, l4_off, buf, 4) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		__builtin_memcpy(&f->sport, buf, 2);
		__builtin_memcpy(&f->dport, buf + 2, 2);
		if (f->protocol == IPPROTO_UDP && bpf_skb_load_bytes(skb, l4_off + UDP_HDR_BYTES - 1, buf, 1) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		if (f->protocol == IPPROTO_SCTP && bpf_skb_load_bytes(skb, l4_off + SCTP_COMMON_HDR_BYTES - 1, buf, 1) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		return PARSE_OK;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 type;
		__be16 id;

		if (bpf_skb_load_bytes(skb, l4_off, buf, ICMP_ECHO_HDR_BYTES) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		type = buf[0];
		__builtin_memcpy(&id, buf + 4, 2);
		/* Echo request (id, 0), reply (0, id): a reply's reversed key is its request's. */
		if ((f->protocol == IPPROTO_ICMP && type == ICMP_ECHO) ||
		    (f->protocol == IPPROTO_ICMPV6 && type == ICMPV6_ECHO_REQUEST))
			f->sport = id;
		else if ((f->protocol == IPPROTO_ICMP && type == ICMP_ECHOREPLY) ||
			 (f->protocol == IPPROTO_ICMPV6 && type == ICMPV6_ECHO_REPLY))
			f->dport = id;
		/* Router/neighbour solicitation and advertisement, redirect; MLD. */
		if (f->protocol == IPPROTO_ICMPV6 && ((type >= 130 && type <= 137) || type == 143))
			f->is_ndp = 1;
		return PARSE_OK;
	}
	default:
		/* Other protocols carry no ports: only rules without ports can allow them. */
		return PARSE_OK;
	}
}

/*
 * A fragmented datagram's ports are in its first fragment only: remember them
 * from there, and give later fragments the same verdict through the same
 * ports. A later fragment whose first fragment was not seen is dropped, so no
 * fragment passes a port rule the datagram would not pass.
 */
static __always_inline int parse_fragment(struct __sk_buff *skb, struct flow *f, __u32 id, __u32 offset_bytes,
					  int more, __u32 l4_off)
{
	struct frag_key key = { .id = id, .protocol = f->protocol, .family = f->family };
	struct frag_value *known;
	int err;

	__builtin_memcpy(key.saddr, f->saddr, 16);
	__builtin_memcpy(key.daddr, f->daddr, 16);
	if (offset_bytes != 0) {
		/* A later fragment may not overlap the transport header of the first one. */
		if (f->protocol == IPPROTO_TCP && offset_bytes < TCP_HDR_MIN_BYTES)
			return SLUICE_CTR_DROP_FRAGMENT;
		known = bpf_map_lookup_elem(&fragments, &key);
		if (!known)
			return SLUICE_CTR_DROP_FRAGMENT;
		f->sport = known->sport;
		f->dport = known->dport;
		return PARSE_OK;
	}
	err = parse_l4(skb, l4_off, f);
	if (err == PARSE_OK && more) {
		struct frag_value ports = { .sport = f->sport, .dport = f->dport };

		bpf_map_update_elem(&fragments, &key, &ports, BPF_ANY);
	}
	return err;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__u32 l4_off, frag;

	if ((void *)(ip + 1) > data_end)
		return SLUICE_CTR_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return SLUICE_CTR_DROP_MALFORMED;
	f->family = SLUICE_FAMILY_IPV4;
	f->protocol = ip->protocol;
	__builtin_memcpy(f->saddr, &ip->saddr, 4);
	__builtin_memcpy(f->daddr, &ip->daddr, 4);
	/* IP options are skipped by honouring the header length. */
	l4_off = sizeof(struct ethhdr) + ip->ihl * 4;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & (IPV4_FRAG_OFFSET_MASK | IPV4_FRAG_MORE))
		return parse_fragment(skb, f, bpf_ntohs(ip->id), (frag & IPV4_FRAG_OFFSET_MASK) * 8,
				      frag & IPV4_FRAG_MORE, l4_off);
	return parse_l4(skb, l4_off, f);
}

/* Walks IPv6 extension headers to the transport header; fragments as for IPv4. */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	__u32 off = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	__u8 nexthdr;

	if ((void *)(ip6 + 1) > data_end)
		return SLUICE_CTR_DROP_MALFORMED;
	if (ip6->version != 6)
		return SLUICE_CTR_DROP_MALFORMED;
	f->family = SLUICE_FAMILY_IPV6;
	__builtin_memcpy(f->saddr, &ip6->saddr, 16);
	__builtin_memcpy(f->daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		__u8 hdr[IPV6_FRAG_HDR_BYTES];

		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_AH:
			if (bpf_skb_load_bytes(skb, off, hdr, 2) < 0)
				return SLUICE_CTR_DROP_MALFORMED;
			off += nexthdr == IPPROTO_AH ? (hdr[1] + 2) * 4 : (hdr[1] + 1) * 8;
			nexthdr = hdr[0];
			break;
		case IPPROTO_FRAGMENT: {
			__be16 frag_be;
			__be32 id_be;
			__u16 frag;

			if (bpf_skb_load_bytes(skb, off, hdr, IPV6_FRAG_HDR_BYTES) < 0)
				return SLUICE_CTR_DROP_MALFORMED;
			__builtin_memcpy(&frag_be, hdr + 2, 2);
			__builtin_memcpy(&id_be, hdr + 4, 4);
			frag = bpf_ntohs(frag_be);
			f->protocol = hdr[0];
			off += IPV6_FRAG_HDR_BYTES;
			/* An atomic fragment (offset 0, no more) is a whole datagram. */
			if ((frag >> IPV6_FRAG_OFFSET_SHIFT) == 0 && !(frag & IPV6_FRAG_MORE))
				return parse_l4(skb, off, f);
			return parse_fragment(skb, f, bpf_ntohl(id_be), (frag >> IPV6_FRAG_OFFSET_SHIFT) * 8,
					      frag & IPV6_FRAG_MORE, off);
		}
		default:
			f->protocol = nexthdr;
			return parse_l4(skb, off, f);
		}
	}
	/* More extension headers than any sane packet carries. */
	return SLUICE_CTR_DROP_MALFORMED;
}

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
 * A packet of a flow seen before, in either direction and not idle for longer
 * than its timeout, is established, unless it opens a new TCP connection. A
 * RST ends the flow after this packet; a FIN shortens its timeout.
 */
static __always_inline enum ct_state ct_lookup(const struct flow *f)
{
	struct ct_key key = {};
	struct ct_value *entry;
	__u64 now, timeout_sec;

	ct_key_of(f, &key, 0);
	entry = bpf_map_lookup_elem(&conntrack, &key);
	if (!entry) {
		ct_key_of(f, &key, 1);
		entry = bpf_map_lookup_elem(&conntrack, &key);
	}
	if (!entry)
		return CT_NEW;
	now = bpf_ktime_get_ns();
	timeout_sec = ct_timeout_sec(f->protocol, entry->flags);
	/*
	 * Idle too long, or a new connection (SYN without ACK) reusing the ports
	 * of an old one: either way the flow must pass policy again.
	 */
	if (now - entry->last_seen_ns > timeout_sec * NSEC_PER_SEC ||
	    (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		bpf_map_delete_elem(&conntrack, &key);
		return CT_NEW;
	}
	entry->last_seen_ns = now;
	entry->packets += 1;
	if (f->tcp_flags & TCP_FLAG_RST)
		bpf_map_delete_elem(&conntrack, &key);
	else if (f->tcp_flags & TCP_FLAG_FIN)
		entry->flags |= SLUICE_CT_CLOSING;
	return CT_ESTABLISHED;
}

static __always_inline void ct_create(const struct flow *f)
{
	struct ct_key key = {};
	struct ct_value entry = {};

	ct_key_of(f, &key, 0);
	entry.created_ns = bpf_ktime_get_ns();
	entry.last_seen_ns = entry.created_ns;
	entry.packets = 1;
	bpf_map_update_elem(&conntrack, &key, &entry, BPF_ANY);
}

/* A pod may only send as itself: its own MAC and its own address. */
static __always_inline int spoofed(const struct ethhdr *eth, const struct endpoint_info *ep, const struct flow *f)
{
	if (!mac_equal(eth->h_source, ep->mac))
		return 1;
	if (f->family == SLUICE_FAMILY_IPV4)
		return !addr_equal(f->saddr, ep->ipv4, 4);
	if (addr_equal(f->saddr, ep->ipv6, 16))
		return 0;
	/* Link-local and unspecified sources only for neighbour discovery. */
	return !(f->is_ndp && ipv6_link_local_or_unspecified(f->saddr));
}

/*
 * Everything from_pod does for an IP packet: anti-spoofing, then conntrack,
 * then (for a new flow) the source's egress policy and, when the destination
 * is a pod on this node, its ingress policy; then delivery.
 */
static __always_inline int forward_from_pod(struct __sk_buff *skb, const struct endpoint_info *ep, __be16 proto)
{
	struct endpoint_key dkey = {};
	struct endpoint_info *dst;
	struct flow f = {};
	struct ethhdr *eth;
	int err;

	err = proto == bpf_htons(ETH_P_IP) ? parse_ipv4(skb, &f) : parse_ipv6(skb, &f);
	if (err != PARSE_OK)
		return ep_drop_event(skb, ep->endpoint_id, err, &f, ep->identity, 0, 1);

	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);
	if (spoofed(eth, ep, &f))
		return ep_drop_event(skb, ep->endpoint_id, SLUICE_CTR_DROP_SPOOF, &f, ep->identity, 0, 1);
	/* Neighbour discovery is the link's business: the host answers it. */
	if (f.is_ndp)
		return TC_ACT_OK;

	dkey.family = f.family;
	__builtin_memcpy(dkey.addr, f.daddr, 16);
	dst = bpf_map_lookup_elem(&endpoints, &dkey);

	if (ct_lookup(&f) == CT_ESTABLISHED) {
		count(SLUICE_CTR_CT_ESTABLISHED, skb);
	} else {
		struct event_meta m = {
			.type = SLUICE_EVENT_VERDICT,
			.reason = SLUICE_CTR_POLICY_ALLOWED,
			.src_identity = ep->identity,
			.dst_identity = dst ? dst->identity : lookup_identity(f.family, f.daddr),
			.src_endpoint = ep->endpoint_id,
			.dst_endpoint = dst ? dst->endpoint_id : 0,
			.verdict = SLUICE_VERDICT_ALLOWED,
		};

		if (ep->flags & SLUICE_EP_EGRESS_ISOLATED) {
			m.direction = SLUICE_DIR_EGRESS;
			if (!policy_allows(ep->endpoint_id, SLUICE_DIR_EGRESS, m.dst_identity, &f, f.daddr)) {
				m.reason = SLUICE_CTR_DROP_POLICY_EGRESS;
				m.verdict = SLUICE_VERDICT_DENIED;
				emit_event(skb, &m, &f);
				return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_POLICY_EGRESS, skb);
			}
		}
		if (dst && (dst->flags & SLUICE_EP_INGRESS_ISOLATED)) {
			m.direction = SLUICE_DIR_INGRESS;
			if (!policy_allows(dst->endpoint_id, SLUICE_DIR_INGRESS, ep->identity, &f, f.saddr)) {
				m.reason = SLUICE_CTR_DROP_POLICY_INGRESS;
				m.verdict = SLUICE_VERDICT_DENIED;
				emit_event(skb, &m, &f);
				ep_count(dst->endpoint_id, SLUICE_CTR_DROP_POLICY_INGRESS, skb);
				return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_POLICY_INGRESS, skb);
			}
		}
		emit_event(skb, &m, &f);
		count(SLUICE_CTR_POLICY_ALLOWED, skb);
		ep_count(ep->endpoint_id, SLUICE_CTR_POLICY_ALLOWED, skb);
		if (dst)
			ep_count(dst->endpoint_id, SLUICE_CTR_POLICY_ALLOWED, skb);
		ct_create(&f);
	}

	if (dst) {
		/* Re-derive the header pointer: the verifier forgets it across helper calls. */
		eth = (void *)(long)skb->data;
		if ((void *)(eth + 1) > (void *)(long)skb->data_end)
			return drop(SLUICE_CTR_DROP_MALFORMED, skb);
		return deliver_local(skb, eth, dst);
	}
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
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_ARP):
		return handle_arp(skb, ep);
	case bpf_htons(ETH_P_IPV6): {
		int ret = handle_ndp(skb, ep);

		if (ret >= 0)
			return ret;
		return forward_from_pod(skb, ep, bpf_htons(ETH_P_IPV6));
	}
	case bpf_htons(ETH_P_IP):
		return forward_from_pod(skb, ep, eth->h_proto);
	default:
		/* VLAN tags, raw frames and the like have no business leaving a pod. */
		return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_MALFORMED, skb);
	}
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
	__u32 peer;
	int err;

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

	err = eth->h_proto == bpf_htons(ETH_P_IP) ? parse_ipv4(skb, &f) : parse_ipv6(skb, &f);
	if (err != PARSE_OK)
		return ep_drop_event(skb, ep->endpoint_id, err, &f, 0, ep->identity, 0);
	if (f.is_ndp)
		return TC_ACT_OK;
	if (ct_lookup(&f) == CT_ESTABLISHED) {
		count(SLUICE_CTR_CT_ESTABLISHED, skb);
		return TC_ACT_OK;
	}
	peer = lookup_identity(f.family, f.saddr);
	{
		struct event_meta m = {
			.type = SLUICE_EVENT_VERDICT,
			.reason = SLUICE_CTR_POLICY_ALLOWED,
			.src_identity = peer,
			.dst_identity = ep->identity,
			.dst_endpoint = ep->endpoint_id,
			.verdict = SLUICE_VERDICT_ALLOWED,
		};

		if (peer != SLUICE_ID_HOST && (ep->flags & SLUICE_EP_INGRESS_ISOLATED)) {
			m.direction = SLUICE_DIR_INGRESS;
			if (!policy_allows(ep->endpoint_id, SLUICE_DIR_INGRESS, peer, &f, f.saddr)) {
				m.reason = SLUICE_CTR_DROP_POLICY_INGRESS;
				m.verdict = SLUICE_VERDICT_DENIED;
				emit_event(skb, &m, &f);
				return ep_drop(ep->endpoint_id, SLUICE_CTR_DROP_POLICY_INGRESS, skb);
			}
		}
		emit_event(skb, &m, &f);
	}
	count(SLUICE_CTR_POLICY_ALLOWED, skb);
	ep_count(ep->endpoint_id, SLUICE_CTR_POLICY_ALLOWED, skb);
	ct_create(&f);
	return TC_ACT_OK;
}
