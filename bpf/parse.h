/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Parsing a packet into its flow: IPv4 (options, fragments), IPv6 (extension headers), ports. Included by datapath.c only. */
#ifndef SLUICE_PARSE_H
#define SLUICE_PARSE_H

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
	__u8 fragment;       /* FRAG_NONE, FRAG_FIRST or FRAG_LATER: frag_track() gives a later one its ports */
	__u8 hop_limit;      /* IPv6 hop limit: 255 on neighbour discovery proves it was not forwarded */
	__u8 icmp_error;     /* an ICMP error: passes only as related to the flow it quotes (icmp.h) */
	__u8 untracked;      /* ICMP other than echo and errors: every packet meets policy, none is a flow */
	__u8 frag_proto;     /* of a fragment: the protocol its fragment header names (the fragment table's key) */
	__u32 frag_id;       /* of a fragment: its datagram's identification */
	__u32 frag_bytes;    /* of a fragment: the datagram payload bytes it carries */
	__u32 frag_end;      /* of the last fragment: the datagram's payload length; 0 for the others */
	__u32 l4_off;        /* where the transport header starts */
};

/* struct flow.fragment */
#define FRAG_NONE 0
#define FRAG_FIRST 1 /* offset 0, more to come: its ports are the datagram's */
#define FRAG_LATER 2 /* any other fragment: no ports of its own */

/* Extension headers walked before giving up on an IPv6 packet. */
#define IPV6_MAX_EXT_HEADERS 8
#define IPV6_FRAG_HDR_BYTES 8
#define TCP_HDR_MIN_BYTES 20
#define UDP_HDR_BYTES 8
#define SCTP_COMMON_HDR_BYTES 12
#define ICMP_ECHO_HDR_BYTES 8
#define TCP_FLAGS_OFFSET 13
#define TCP_DOFF_OFFSET 12 /* data offset, in the high nibble */
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

/* ICMP messages that report a problem with a packet and quote its start (RFC 792, RFC 4443). */
static __always_inline int icmp_is_error(__u8 protocol, __u8 type)
{
	if (protocol == IPPROTO_ICMP)
		return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT ||
		       type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
	return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
}

/*
 * Reads the ports (or the ICMP echo id) at l4_off. A first fragment must hold
 * the whole transport header: a tiny first fragment could otherwise hide the
 * real ports in a later one (RFC 1858).
 */
static __always_inline int parse_l4(struct __sk_buff *skb, __u32 l4_off, struct flow *f)
{
	__u8 buf[ICMP_ECHO_HDR_BYTES];

	f->l4_off = l4_off;
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
		    (f->protocol == IPPROTO_ICMPV6 && type == ICMPV6_ECHO_REQUEST)) {
			f->sport = id;
			return PARSE_OK;
		}
		if ((f->protocol == IPPROTO_ICMP && type == ICMP_ECHOREPLY) ||
		    (f->protocol == IPPROTO_ICMPV6 && type == ICMPV6_ECHO_REPLY)) {
			f->dport = id;
			return PARSE_OK;
		}
		if (icmp_is_error(f->protocol, type)) {
			f->icmp_error = 1;
			return PARSE_OK;
		}
		/* Router/neighbour solicitation and advertisement, redirect; MLD. */
		if (f->protocol == IPPROTO_ICMPV6 && ((type >= 130 && type <= 137) || type == 143))
			f->is_ndp = 1;
		/*
		 * Any other type and code, as both "ports": never 0, so no key of an
		 * echo matches it, and untracked, so it opens nothing for another.
		 */
		f->sport = f->dport = bpf_htons((__u16)type << 8 | buf[1]);
		f->untracked = 1;
		return PARSE_OK;
	}
	default:
		/* Other protocols carry no ports: only rules without ports can allow them. */
		return PARSE_OK;
	}
}

/*
 * A fragmented datagram's ports are in its first fragment only: frag_track()
 * remembers them from there, once the packet's source is known to be
 * genuine, and gives later fragments the same ports, so the same verdict. A
 * later fragment whose first fragment was not seen is dropped, so no
 * fragment passes a port rule the datagram would not pass. Here a fragment
 * only says what it is (payload_bytes: the datagram bytes it carries).
 */
static __always_inline int parse_fragment(struct __sk_buff *skb, struct flow *f, __u32 id, __u32 offset_bytes,
					  int more, __u32 payload_bytes, __u32 l4_off)
{
	int err;

	f->frag_id = id;
	f->frag_bytes = payload_bytes;
	f->frag_end = more ? 0 : offset_bytes + payload_bytes;
	if (offset_bytes != 0) {
		/* A later fragment may not overlap the transport header of the first one. */
		if (f->protocol == IPPROTO_TCP && offset_bytes < TCP_HDR_MIN_BYTES)
			return SLUICE_CTR_DROP_FRAGMENT;
		f->fragment = FRAG_LATER;
		return PARSE_OK;
	}
	err = parse_l4(skb, l4_off, f);
	if (err == PARSE_OK)
		f->fragment = FRAG_FIRST;
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
	if (frag & (IPV4_FRAG_OFFSET_MASK | IPV4_FRAG_MORE)) {
		__u32 tot_len = bpf_ntohs(ip->tot_len);

		if (tot_len < ip->ihl * 4u)
			return SLUICE_CTR_DROP_MALFORMED;
		f->frag_proto = ip->protocol;
		return parse_fragment(skb, f, bpf_ntohs(ip->id), (frag & IPV4_FRAG_OFFSET_MASK) * 8,
				      frag & IPV4_FRAG_MORE, tot_len - ip->ihl * 4u, l4_off);
	}
	return parse_l4(skb, l4_off, f);
}

/* Walks IPv6 extension headers to the transport header; fragments as for IPv4. */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	__u32 off = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	__u32 payload_end, frag_off = 0, frag_id = 0;
	__u16 frag_word = 0;
	__u8 nexthdr;

	if ((void *)(ip6 + 1) > data_end)
		return SLUICE_CTR_DROP_MALFORMED;
	if (ip6->version != 6)
		return SLUICE_CTR_DROP_MALFORMED;
	f->family = SLUICE_FAMILY_IPV6;
	__builtin_memcpy(f->saddr, &ip6->saddr, 16);
	__builtin_memcpy(f->daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	f->hop_limit = ip6->hop_limit;
	payload_end = sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + bpf_ntohs(ip6->payload_len);

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		__u8 hdr[IPV6_FRAG_HDR_BYTES];

		switch (nexthdr) {
		case IPPROTO_ROUTING:
			/*
			 * The packet's real destination is the last segment, not daddr:
			 * judging it by daddr would let a pod bounce traffic past policy.
			 * No pod needs source routing, so none passes.
			 */
			return SLUICE_CTR_DROP_MALFORMED;
		case IPPROTO_HOPOPTS:
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

			if (frag_off)
				return SLUICE_CTR_DROP_MALFORMED; /* one fragment header per packet */
			if (bpf_skb_load_bytes(skb, off, hdr, IPV6_FRAG_HDR_BYTES) < 0)
				return SLUICE_CTR_DROP_MALFORMED;
			__builtin_memcpy(&frag_be, hdr + 2, 2);
			__builtin_memcpy(&id_be, hdr + 4, 4);
			nexthdr = hdr[0];
			off += IPV6_FRAG_HDR_BYTES;
			/* An atomic fragment (offset 0, no more) is a whole datagram: walk on. */
			frag_word = bpf_ntohs(frag_be);
			if ((frag_word >> IPV6_FRAG_OFFSET_SHIFT) == 0 && !(frag_word & IPV6_FRAG_MORE))
				break;
			/* The payload length counts every extension header: the fragment's own bytes follow this one. */
			if (payload_end < off)
				return SLUICE_CTR_DROP_MALFORMED;
			frag_off = off;
			frag_id = bpf_ntohl(id_be);
			f->frag_proto = nexthdr;
			/* A later fragment has no headers of its own: frag_track() gives it the first's protocol and ports. */
			if (frag_word >> IPV6_FRAG_OFFSET_SHIFT)
				goto transport;
			/* A first fragment: the extension headers after this one (e.g. Destination Options) lead to the transport header. */
			break;
		}
		default:
			goto transport;
		}
	}
	/* More extension headers than any sane packet carries. */
	return SLUICE_CTR_DROP_MALFORMED;
transport:
	f->protocol = nexthdr;
	if (!frag_off)
		return parse_l4(skb, off, f);
	return parse_fragment(skb, f, frag_id, (frag_word >> IPV6_FRAG_OFFSET_SHIFT) * 8, frag_word & IPV6_FRAG_MORE,
			      payload_end - frag_off, off);
}

#endif
