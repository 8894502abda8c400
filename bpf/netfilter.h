/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the netfilter programs (BPF_PROG_TYPE_NETFILTER, datapath.c) need: the
 * kernel types of their context, and a parser of the whole (defragmented)
 * packet they see. Included by datapath.c only.
 *
 * They run inside the host stack, where tc cannot see: after kube-proxy's
 * DNAT has named a Service's real backend, and before this node's own sockets
 * (the VXLAN device's among them) receive a packet. The agent attaches them
 * with BPF_F_NETFILTER_IP_DEFRAG, so fragments arrive reassembled.
 */
#ifndef SLUICE_NETFILTER_H
#define SLUICE_NETFILTER_H

/*
 * The few kernel fields read, relocated against the running kernel's BTF
 * (CO-RE), so no vmlinux.h with every kernel type clashes with the UAPI
 * headers the tc programs use.
 */
struct sk_buff {
	unsigned int len;
	__u32 mark;
} __attribute__((preserve_access_index));

struct nf_hook_state {
	__u8 hook;
	__u8 pf;
} __attribute__((preserve_access_index));

struct bpf_nf_ctx {
	const struct nf_hook_state *state;
	struct sk_buff *skb;
} __attribute__((preserve_access_index));

extern int bpf_dynptr_from_skb(struct sk_buff *skb, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;

#define NF_DROP 0
#define NF_ACCEPT 1
#define NFPROTO_IPV4 2
#define NFPROTO_IPV6 10

/* The transport header of an IPv6 packet: walks the extension headers a host would. */
static __always_inline int nf_ipv6_l4(const struct bpf_dynptr *pkt, __u8 *nexthdr, __u32 *off)
{
	__u8 ext[2];
	int i;

	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		switch (*nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (bpf_dynptr_read(ext, sizeof(ext), pkt, *off, 0))
				return -1;
			*nexthdr = ext[0];
			*off += (ext[1] + 1) * 8;
			break;
		case IPPROTO_AH:
			if (bpf_dynptr_read(ext, sizeof(ext), pkt, *off, 0))
				return -1;
			*nexthdr = ext[0];
			*off += (ext[1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			/* Reassembly removes it: still there means a fragment we cannot judge. */
			return -1;
		default:
			return 0;
		}
	}
	return -1;
}

/*
 * The flow of a packet at a netfilter hook (pf: NFPROTO_*; the network
 * header is at offset 0): addresses, protocol, and for TCP, UDP and SCTP the
 * ports (and TCP flags). Other protocols keep ports 0, which only rules
 * without ports match. Returns 0, or -1 for a packet that cannot be read.
 */
static __always_inline int nf_parse(const struct bpf_dynptr *pkt, __u8 pf, struct flow *f)
{
	__u8 ports[4];
	__u32 off;

	if (pf == NFPROTO_IPV4) {
		struct iphdr ip;

		if (bpf_dynptr_read(&ip, sizeof(ip), pkt, 0, 0) || ip.ihl < 5)
			return -1;
		if (bpf_ntohs(ip.frag_off) & (IPV4_FRAG_OFFSET_MASK | IPV4_FRAG_MORE))
			return -1;
		f->family = SLUICE_FAMILY_IPV4;
		__builtin_memcpy(f->saddr, &ip.saddr, 4);
		__builtin_memcpy(f->daddr, &ip.daddr, 4);
		f->protocol = ip.protocol;
		off = ip.ihl * 4;
	} else if (pf == NFPROTO_IPV6) {
		struct ipv6hdr ip6;
		__u8 nexthdr;

		if (bpf_dynptr_read(&ip6, sizeof(ip6), pkt, 0, 0))
			return -1;
		f->family = SLUICE_FAMILY_IPV6;
		__builtin_memcpy(f->saddr, &ip6.saddr, 16);
		__builtin_memcpy(f->daddr, &ip6.daddr, 16);
		nexthdr = ip6.nexthdr;
		off = sizeof(ip6);
		if (nf_ipv6_l4(pkt, &nexthdr, &off))
			return -1;
		f->protocol = nexthdr;
	} else {
		return -1;
	}
	if (f->protocol != IPPROTO_TCP && f->protocol != IPPROTO_UDP && f->protocol != IPPROTO_SCTP)
		return 0;
	if (bpf_dynptr_read(ports, sizeof(ports), pkt, off, 0))
		return -1;
	__builtin_memcpy(&f->sport, ports, 2);
	__builtin_memcpy(&f->dport, ports + 2, 2);
	if (f->protocol == IPPROTO_TCP && bpf_dynptr_read(&f->tcp_flags, 1, pkt, off + TCP_FLAGS_OFFSET, 0))
		return -1;
	return 0;
}

#endif
