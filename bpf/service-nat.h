/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-packet Service translation in from_pod: the fallback for what the
 * socket load balancer (service-lb.c) does not see (--socket-lb off, a pod
 * outside the cgroup hierarchy). A TCP or UDP packet to a ClusterIP frontend
 * gets a backend's address and port before conntrack and policy look at it,
 * so both work on the backend; replies from the backend get the frontend's
 * address back (from_pod for a backend on this node, to_pod for one reached
 * through the stack). A frontend without backends is answered with a TCP
 * RST (a SYN) or an ICMP port unreachable, so the client is refused at once.
 *
 * The frontends and backends are the load balancer's own maps (lb_services,
 * lb_backends), reached through one-slot map-in-map arrays the agent fills
 * with their fds: they are pinned by another object, and may be replaced
 * (resized) while this one stays loaded. Empty slots: nothing is translated.
 *
 * Not handled (yet): fragmented datagrams (their later fragments carry no
 * ports), per-backend flow counts, hairpin (a pod reaching
 * itself through its Service needs a source NAT), ICMP errors about a
 * translated flow. Included by datapath.c only.
 */
#ifndef SLUICE_SERVICE_NAT_H
#define SLUICE_SERVICE_NAT_H

#include <linux/icmpv6.h>
#include "service-lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1);
		__type(key, struct lb_service_key);
		__type(value, struct lb_service_value);
	});
} lb_services_ref SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 1);
		__type(key, __u32);
		__type(value, struct lb_backend);
	});
} lb_backends_ref SEC(".maps");

/* sessionAffinity: ClientIP, per client address and frontend (struct lb_nat_affinity_key). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_LB_MAX_AFFINITY);
	__type(key, struct lb_nat_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nat_affinity SEC(".maps");

const volatile enum sluice_nat_dir sluice_nat_dir_btf_anchor = SLUICE_NAT_ORIGINAL;
/* libbpf sizes the inner maps' keys and values from the BTF, which has only a forward declaration of a struct used through pointers alone. */
const volatile struct lb_service_key sluice_lb_service_key_btf_anchor = {};
const volatile struct lb_service_value sluice_lb_service_value_btf_anchor = {};
const volatile struct lb_backend sluice_lb_backend_btf_anchor = {};

#define ICMP_PORT_UNREACH 3
#define ICMPV6_PORT_UNREACH 4
#define TCP_CSUM_OFFSET 16
#define UDP_CSUM_OFFSET 6

/* The 8 bytes of an ICMP or ICMPv6 error header (the last 4 unused here). */
struct icmp_err_hdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 unused;
};

#define NAT_IPV4_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define NAT_IPV4_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define NAT_IPV4_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define NAT_IPV6_DADDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, daddr))
#define NAT_IPV6_SADDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, saddr))

static __always_inline int nat_translatable(const struct flow *f)
{
	return (f->protocol == IPPROTO_TCP || f->protocol == IPPROTO_UDP) && f->fragment == FRAG_NONE;
}

/*
 * Rewrites the source (src 1) or destination address and port of f's packet
 * to addr:port, with the IPv4 header checksum and the L4 checksum (whose
 * pseudo-header holds the address) fixed; f follows. Returns 0, or a drop reason.
 */
static __always_inline int nat_rewrite(struct __sk_buff *skb, struct flow *f, int src, const __u8 *addr, __be16 port)
{
	__u32 csum_off = f->l4_off + (f->protocol == IPPROTO_TCP ? TCP_CSUM_OFFSET : UDP_CSUM_OFFSET);
	__u64 l4_flags = f->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u8 *old_addr = src ? f->saddr : f->daddr;
	__be16 *old_port = src ? &f->sport : &f->dport;
	__u32 port_off = f->l4_off + (src ? 0 : 2);

	if (f->family == SLUICE_FAMILY_IPV4) {
		__be32 from, to;
		__u32 off = src ? NAT_IPV4_SADDR_OFF : NAT_IPV4_DADDR_OFF;

		__builtin_memcpy(&from, old_addr, 4);
		__builtin_memcpy(&to, addr, 4);
		if (bpf_l4_csum_replace(skb, csum_off, from, to, BPF_F_PSEUDO_HDR | l4_flags | sizeof(to)) ||
		    bpf_l3_csum_replace(skb, NAT_IPV4_CSUM_OFF, from, to, sizeof(to)) ||
		    bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0))
			return SLUICE_CTR_DROP_MALFORMED;
	} else {
		__u32 off = src ? NAT_IPV6_SADDR_OFF : NAT_IPV6_DADDR_OFF;
		__s64 diff = bpf_csum_diff((__be32 *)old_addr, 16, (__be32 *)addr, 16, 0);

		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, BPF_F_PSEUDO_HDR | l4_flags) ||
		    bpf_skb_store_bytes(skb, off, addr, 16, 0))
			return SLUICE_CTR_DROP_MALFORMED;
	}
	if (bpf_l4_csum_replace(skb, csum_off, *old_port, port, l4_flags | sizeof(port)) ||
	    bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0))
		return SLUICE_CTR_DROP_MALFORMED;
	__builtin_memcpy(old_addr, addr, 16);
	*old_port = port;
	return 0;
}

static __always_inline __u16 csum_fold32(__s64 sum)
{
	__u32 csum = (__u32)sum;

	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return ~csum & 0xffff;
}

/* A TCP header without options, as a refusal's RST carries it. */
struct nat_rst_hdr {
	__be16 sport, dport;
	__be32 seq, ack_seq;
	__u8 doff, flags;
	__be16 window, check, urg;
};

/*
 * The RST (with the ACK a SYN asks for) that answers the SYN at l4_off, its
 * ports swapped: everything but the checksum. Returns 0 or a drop reason.
 */
static __always_inline int nat_rst_fill(struct __sk_buff *skb, __u32 l4_off, struct nat_rst_hdr *t)
{
	__be32 seq;

	if (bpf_skb_load_bytes(skb, l4_off, &t->dport, 2) < 0 || bpf_skb_load_bytes(skb, l4_off + 2, &t->sport, 2) < 0 ||
	    bpf_skb_load_bytes(skb, l4_off + 4, &seq, 4) < 0)
		return SLUICE_CTR_DROP_MALFORMED;
	t->ack_seq = bpf_htonl(bpf_ntohl(seq) + 1);
	t->doff = 5 << 4;
	t->flags = TCP_FLAG_RST | TCP_FLAG_ACK;
	return 0;
}

/*
 * A refusal's last steps: its L4 checksum (over l4_len bytes at l4, seeded
 * with sum, stored at *check), then the packet cut to the refusal's size and
 * overwritten with it (hdr_len bytes at h). Returns 0 or a drop reason.
 */
static __always_inline int nat_refusal_finish(struct __sk_buff *skb, void *h, __u32 hdr_len, void *l4, __u32 l4_len, __s64 sum,
					      __be16 *check)
{
	if (sum < 0)
		return SLUICE_CTR_DROP_MALFORMED;
	*check = csum_fold32(bpf_csum_diff(NULL, 0, l4, l4_len, (__u32)sum));
	if (bpf_skb_change_tail(skb, ETH_HLEN + hdr_len, 0) || bpf_skb_store_bytes(skb, ETH_HLEN, h, hdr_len, 0))
		return SLUICE_CTR_DROP_MALFORMED;
	return 0;
}

/*
 * Turns the packet into its refusal, from the frontend back to the client:
 * a TCP SYN into a RST (reset set), anything else into an ICMP port
 * unreachable (ICMPv6: destination unreachable, port unreachable) quoting the
 * IP header and the first 8 bytes after it. Either way the client's connect()
 * fails with ECONNREFUSED at once. A SYN gets a RST because it is sent, and
 * so may reach here, while connect() holds its socket's lock, and
 * tcp_v4_err / tcp_v6_err drop an ICMP error that meets a locked socket
 * (LockDroppedIcmps), so only the SYN's retransmit a second later would be
 * refused (seen with IPv6); a RST waits in the socket's backlog for the lock.
 * Only for packets without IPv4 options or IPv6 extension headers (the reply
 * has a fixed size); others are dropped. The caller swaps the MAC addresses
 * and sends it back. One call per family: their buffers would not fit on
 * from_pod's stack together. Returns 0 or a drop reason.
 */
static __noinline int nat_refusal4(struct __sk_buff *skb, __u32 l4_off, int reset)
{
	struct {
		struct iphdr ip;
		union {
			struct nat_rst_hdr rst;
			struct {
				struct icmp_err_hdr hdr;
				__u8 quote[sizeof(struct iphdr) + 8];
			} icmp;
		};
	} h = {};
	__u32 l4_len = reset ? sizeof(h.rst) : sizeof(h.icmp);
	__be32 pseudo[3];
	__s64 sum = 0;

	if (l4_off != ETH_HLEN + sizeof(struct iphdr) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, saddr), &h.ip.daddr, 4) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, daddr), &h.ip.saddr, 4) < 0)
		return SLUICE_CTR_DROP_MALFORMED;
	if (reset) {
		if (nat_rst_fill(skb, l4_off, &h.rst))
			return SLUICE_CTR_DROP_MALFORMED;
		/* The TCP checksum covers a pseudo-header; ICMP's does not. */
		pseudo[0] = h.ip.saddr;
		pseudo[1] = h.ip.daddr;
		pseudo[2] = bpf_htonl(IPPROTO_TCP << 16 | sizeof(h.rst));
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), 0);
	} else {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, h.icmp.quote, sizeof(h.icmp.quote)) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		h.icmp.hdr.type = ICMP_DEST_UNREACH;
		h.icmp.hdr.code = ICMP_PORT_UNREACH;
	}
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(h.ip) + l4_len);
	h.ip.ttl = 64;
	h.ip.protocol = reset ? IPPROTO_TCP : IPPROTO_ICMP;
	h.ip.check = csum_fold32(bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));
	return nat_refusal_finish(skb, &h, sizeof(h.ip) + l4_len, &h.rst, l4_len, sum, reset ? &h.rst.check : &h.icmp.hdr.checksum);
}

/* The same over IPv6, where ICMPv6's checksum covers the pseudo-header too. */
static __noinline int nat_refusal6(struct __sk_buff *skb, __u32 l4_off, int reset)
{
	struct {
		struct ipv6hdr ip;
		union {
			struct nat_rst_hdr rst;
			struct {
				struct icmp_err_hdr hdr;
				__u8 quote[sizeof(struct ipv6hdr) + 8];
			} icmp;
		};
	} h = {};
	__u32 l4_len = reset ? sizeof(h.rst) : sizeof(h.icmp);
	/* The pseudo-header's upper-layer length and next header; its addresses are h.ip's. */
	__be32 pseudo[2] = { bpf_htonl(l4_len), bpf_htonl(reset ? IPPROTO_TCP : IPPROTO_ICMPV6) };
	__s64 sum;

	if (l4_off != ETH_HLEN + sizeof(struct ipv6hdr) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct ipv6hdr, saddr), &h.ip.daddr, 16) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct ipv6hdr, daddr), &h.ip.saddr, 16) < 0)
		return SLUICE_CTR_DROP_MALFORMED;
	if (reset) {
		if (nat_rst_fill(skb, l4_off, &h.rst))
			return SLUICE_CTR_DROP_MALFORMED;
	} else {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, h.icmp.quote, sizeof(h.icmp.quote)) < 0)
			return SLUICE_CTR_DROP_MALFORMED;
		h.icmp.hdr.type = ICMPV6_DEST_UNREACH;
		h.icmp.hdr.code = ICMPV6_PORT_UNREACH;
	}
	h.ip.version = 6;
	h.ip.payload_len = bpf_htons(l4_len);
	h.ip.nexthdr = reset ? IPPROTO_TCP : IPPROTO_ICMPV6;
	h.ip.hop_limit = 64;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.ip.saddr, 32, 0);
	if (sum >= 0)
		sum = bpf_csum_diff(NULL, 0, pseudo, sizeof(pseudo), (__u32)sum);
	return nat_refusal_finish(skb, &h, sizeof(h.ip) + l4_len, &h.rst, l4_len, sum, reset ? &h.rst.check : &h.icmp.hdr.checksum);
}

/* The refusal (nat_refusal4/6) sent back into the pod it came from. Returns the tc verdict, or a negative drop reason. */
static __always_inline int nat_refuse(struct __sk_buff *skb, const struct flow *f)
{
	int reset = f->protocol == IPPROTO_TCP && (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	struct ethhdr *eth;
	__u8 mac[ETH_ALEN];
	int err;

	err = f->family == SLUICE_FAMILY_IPV4 ? nat_refusal4(skb, f->l4_off, reset) : nat_refusal6(skb, f->l4_off, reset);
	if (err)
		return -err;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return -SLUICE_CTR_DROP_MALFORMED;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	count(SLUICE_CTR_SERVICE_REFUSED, skb);
	/* Into the pod's side of the veth it came from. */
	return bpf_redirect_peer(skb->ifindex, 0);
}

/* The affinity key of f's client and frontend (f not yet translated). */
static __always_inline void nat_affinity_key(struct lb_nat_affinity_key *k, const struct flow *f)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->client, f->saddr, 16);
	__builtin_memcpy(k->frontend, f->daddr, 16);
	k->port = f->dport;
	k->protocol = f->protocol;
	k->family = f->family;
}

/* service_dnat_call(): the frontend has no backends. */
#define NAT_REFUSE 1

/*
 * from_pod, before conntrack: a packet to a Service frontend is translated
 * to a backend (the flow's own, once chosen, while that backend stays).
 * Returns 0 (translated, or nothing to translate), NAT_REFUSE, or a negative
 * drop reason. A call of its own, as are the refusal and the reverse
 * translation: inlined, their buffers would not fit on from_pod's stack.
 */
static __noinline int service_dnat_call(struct __sk_buff *skb, struct flow *f)
{
	/* One key at a time: the stack is tight. */
	union {
		struct lb_service_key svc;
		struct lb_nat_key nat;
		struct lb_nat_affinity_key aff;
	} k;
	struct lb_nat_value v = {};
	struct lb_affinity_value *aff;
	__u64 now = 0, timeout_ns = 0;
	struct lb_service_value *svc, *slot;
	struct lb_nat_value *nat;
	struct lb_backend *be;
	void *services, *backends;
	__u32 zero = 0, id;
	__u16 slots;
	int err;

	if (!nat_translatable(f))
		return 0;
	services = bpf_map_lookup_elem(&lb_services_ref, &zero);
	backends = bpf_map_lookup_elem(&lb_backends_ref, &zero);
	if (!services || !backends)
		return 0;
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.svc.addr, f->daddr, 16);
	k.svc.port = f->dport;
	k.svc.protocol = f->protocol;
	k.svc.family = f->family;
	svc = bpf_map_lookup_elem(services, &k.svc);
	if (!svc)
		return 0;
	slots = svc->count;
	if (svc->flags & SLUICE_LB_F_AFFINITY)
		timeout_ns = (__u64)svc->affinity_timeout_sec * NSEC_PER_SEC;

	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.nat.saddr, f->saddr, 16);
	__builtin_memcpy(k.nat.daddr, f->daddr, 16);
	k.nat.sport = f->sport;
	k.nat.dport = f->dport;
	k.nat.family = f->family;
	k.nat.protocol = f->protocol;
	k.nat.dir = SLUICE_NAT_ORIGINAL;
	nat = bpf_map_lookup_elem(&lb_nat, &k.nat);
	if (nat) {
		/* The flow's backend, as long as it is still that backend. */
		id = nat->backend_id;
		be = bpf_map_lookup_elem(backends, &id);
		if (be && be->port == nat->port && addr_equal(be->addr, nat->addr, 16))
			goto translate;
	}
	if (slots == 0)
		return NAT_REFUSE;
	be = NULL;
	if (timeout_ns) {
		/* The client's backend, if it opened a flow to this frontend within the timeout and the backend is still there. */
		now = bpf_ktime_get_ns();
		nat_affinity_key(&k.aff, f);
		aff = bpf_map_lookup_elem(&lb_nat_affinity, &k.aff);
		if (aff && now - aff->last_used_ns < timeout_ns) {
			id = aff->backend_id;
			be = bpf_map_lookup_elem(backends, &id);
		}
	}
	if (!be) {
		__builtin_memset(&k, 0, sizeof(k));
		__builtin_memcpy(k.svc.addr, f->daddr, 16);
		k.svc.port = f->dport;
		k.svc.protocol = f->protocol;
		k.svc.family = f->family;
		k.svc.slot = (bpf_get_prandom_u32() % (slots > SLUICE_LB_MAX_SLOTS_PER_SERVICE ? SLUICE_LB_MAX_SLOTS_PER_SERVICE : slots)) + 1;
		slot = bpf_map_lookup_elem(services, &k.svc);
		if (!slot)
			return 0;
		id = slot->backend_id;
		be = bpf_map_lookup_elem(backends, &id);
	}
	if (!be || be->family != f->family)
		return 0;
	if (now) {
		struct lb_affinity_value aval = { .last_used_ns = now, .backend_id = id };

		nat_affinity_key(&k.aff, f);
		bpf_map_update_elem(&lb_nat_affinity, &k.aff, &aval, BPF_ANY);
	}

translate:
	/* The reply's entry first: from the backend to the client, back to the frontend. */
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(v.addr, f->daddr, 16);
	v.port = f->dport;
	__builtin_memcpy(k.nat.saddr, be->addr, 16);
	__builtin_memcpy(k.nat.daddr, f->saddr, 16);
	k.nat.sport = be->port;
	k.nat.dport = f->sport;
	k.nat.family = f->family;
	k.nat.protocol = f->protocol;
	k.nat.dir = SLUICE_NAT_REPLY;
	nat = bpf_map_lookup_elem(&lb_nat, &k.nat);
	if (nat && (nat->port != v.port || !addr_equal(nat->addr, v.addr, 16))) {
		/*
		 * The client's port has a flow to this backend through another
		 * frontend already, whose original entry only this reply entry names:
		 * left behind, it would never leave with its flow (ct_nat_forget).
		 * The newer flow takes the port over (written here in place: no stack
		 * for lb_nat_forget's frame below this one).
		 */
		__builtin_memcpy(k.nat.saddr, f->saddr, 16);
		__builtin_memcpy(k.nat.daddr, nat->addr, 16);
		k.nat.sport = f->sport;
		k.nat.dport = nat->port;
		k.nat.dir = SLUICE_NAT_ORIGINAL;
		nat = bpf_map_lookup_elem(&lb_nat, &k.nat);
		if (nat && nat->port == be->port && addr_equal(nat->addr, be->addr, 16))
			bpf_map_delete_elem(&lb_nat, &k.nat);
		__builtin_memcpy(k.nat.saddr, be->addr, 16);
		__builtin_memcpy(k.nat.daddr, f->saddr, 16);
		k.nat.sport = be->port;
		k.nat.dport = f->sport;
		k.nat.dir = SLUICE_NAT_REPLY;
	}
	if (bpf_map_update_elem(&lb_nat, &k.nat, &v, BPF_ANY))
		return -SLUICE_CTR_DROP_CT_FULL;
	/* The original direction's: from the client to the frontend, to this backend. */
	__builtin_memcpy(k.nat.saddr, f->saddr, 16);
	__builtin_memcpy(k.nat.daddr, f->daddr, 16);
	k.nat.sport = f->sport;
	k.nat.dport = f->dport;
	k.nat.dir = SLUICE_NAT_ORIGINAL;
	__builtin_memcpy(v.addr, be->addr, 16);
	v.port = be->port;
	v.backend_id = id;
	if (bpf_map_update_elem(&lb_nat, &k.nat, &v, BPF_ANY))
		return -SLUICE_CTR_DROP_CT_FULL;
	err = nat_rewrite(skb, f, 0, v.addr, v.port);
	if (err)
		return -err;
	count(SLUICE_CTR_SERVICE_DNAT, skb);
	return 0;
}

/* service_dnat_call(), and the refusal of a frontend without backends: 0, a tc verdict, or a negative drop reason. */
static __always_inline int service_dnat(struct __sk_buff *skb, struct flow *f)
{
	int ret = service_dnat_call(skb, f);

	return ret == NAT_REFUSE ? nat_refuse(skb, f) : ret;
}

/*
 * After conntrack, before delivery: a reply from a backend of a translated
 * flow gets its frontend's address and port back. Returns 0 or a drop reason.
 */
static __noinline int service_revnat(struct __sk_buff *skb, struct flow *f)
{
	struct lb_nat_key nkey = {};
	struct lb_nat_value *nat;
	__u8 addr[16];
	__be16 port;
	int err;

	if (!nat_translatable(f))
		return 0;
	__builtin_memcpy(nkey.saddr, f->saddr, 16);
	__builtin_memcpy(nkey.daddr, f->daddr, 16);
	nkey.sport = f->sport;
	nkey.dport = f->dport;
	nkey.family = f->family;
	nkey.protocol = f->protocol;
	nkey.dir = SLUICE_NAT_REPLY;
	nat = bpf_map_lookup_elem(&lb_nat, &nkey);
	if (!nat)
		return 0;
	__builtin_memcpy(addr, nat->addr, 16);
	port = nat->port;
	/* A RST from the backend ends the flow (ct_lookup removed its entry): its translation goes too, this packet the last it translates. */
	if (f->tcp_flags & TCP_FLAG_RST)
		lb_nat_forget(&nkey);
	err = nat_rewrite(skb, f, 1, addr, port);
	if (err)
		return err;
	count(SLUICE_CTR_SERVICE_REVNAT, skb);
	return 0;
}

/*
 * A new flow that conntrack or policy refused after its translation leaves
 * no translation behind: the NAT entries live only as long as flows that
 * were let in (ct_nat_forget), and a pod flooding a ClusterIP past its
 * budget holds no more of lb_nat than its budget's flows.
 */
static __noinline int service_nat_forget(const struct flow *f)
{
	struct lb_nat_key k = {};

	if (!nat_translatable(f))
		return 0;
	/* Its reply entry: from the backend to the client. */
	__builtin_memcpy(k.saddr, f->daddr, 16);
	__builtin_memcpy(k.daddr, f->saddr, 16);
	k.sport = f->dport;
	k.dport = f->sport;
	k.family = f->family;
	k.protocol = f->protocol;
	k.dir = SLUICE_NAT_REPLY;
	return lb_nat_forget(&k);
}

#endif
