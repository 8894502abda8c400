/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * L7 visibility without a proxy: the datapath spots packets that may start a
 * DNS or HTTP/1.x message and hands their first bytes up to the agent, which
 * parses and pairs them (agent/flows/). Cleartext only: TLS and HTTP/2 look
 * like nothing here. Included by datapath.c only, after policy.h.
 */
#ifndef SLUICE_L7_H
#define SLUICE_L7_H

/* The first four bytes of a payload, as a little-endian load of them reads (x86, the only target). */
#define L7_TAG(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/*
 * Where a DNS or HTTP/1.x message may start in this packet, or 0: the payload
 * of UDP to or from port 53, or of a TCP segment that begins with an HTTP
 * method or "HTTP" (a status line). The agent parses what it gets and
 * ignores what is not a message. Costs a TCP segment two small loads, and
 * only a segment with a payload the second: the per-packet price of L7
 * visibility without a proxy.
 */
static __always_inline __u32 l7_payload_offset(struct __sk_buff *skb, const struct flow *f)
{
	struct datapath_config *cfg;
	__u32 off, tag, zero = 0;
	__u8 doff;

	if (f->fragment != FRAG_NONE || (f->protocol != IPPROTO_UDP && f->protocol != IPPROTO_TCP))
		return 0;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && cfg->l7_off)
		return 0;
	if (f->protocol == IPPROTO_UDP) {
		if (f->sport != bpf_htons(53) && f->dport != bpf_htons(53))
			return 0;
		off = f->l4_off + UDP_HDR_BYTES;
		return off < skb->len ? off : 0;
	}
	if (f->protocol != IPPROTO_TCP)
		return 0;
	if (bpf_skb_load_bytes(skb, f->l4_off + TCP_DOFF_OFFSET, &doff, 1) < 0)
		return 0;
	off = f->l4_off + (doff >> 4) * 4;
	if (off >= skb->len || bpf_skb_load_bytes(skb, off, &tag, 4) < 0)
		return 0;
	switch (tag) {
	case L7_TAG('G', 'E', 'T', ' '):
	case L7_TAG('P', 'O', 'S', 'T'):
	case L7_TAG('P', 'U', 'T', ' '):
	case L7_TAG('H', 'E', 'A', 'D'):
	case L7_TAG('D', 'E', 'L', 'E'):
	case L7_TAG('P', 'A', 'T', 'C'):
	case L7_TAG('O', 'P', 'T', 'I'):
	case L7_TAG('C', 'O', 'N', 'N'):
	case L7_TAG('T', 'R', 'A', 'C'):
	case L7_TAG('H', 'T', 'T', 'P'):
		return off;
	default:
		return 0;
	}
}

/* Is addr a pod of this node? */
static __always_inline int local_endpoint(__u8 family, const __u8 *addr)
{
	struct endpoint_key key = { .family = family };

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&endpoints, &key) != NULL;
}

/*
 * Hands the first bytes of an L7 message at off up to the agent (struct
 * l7_event), within the L7 bucket's rate limit. The identities are the
 * ipcache's: only a message pays for the lookups.
 */
static __noinline void emit_l7_event(struct __sk_buff *skb, const struct flow *f, __u32 off, __u32 src_endpoint, __u32 dst_endpoint)
{
	struct l7_event *e;
	__u32 len;

	if (!event_allowed(SLUICE_EVENT_BUCKET_L7)) {
		count_len(SLUICE_CTR_EVENTS_LOST, skb->len);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_len(SLUICE_CTR_EVENTS_LOST, skb->len);
		return;
	}
	/* 1 to SLUICE_L7_PAYLOAD_BYTES (a power of two) in a form the verifier can bound; off < skb->len. */
	len = skb->len - off;
	if (len > SLUICE_L7_PAYLOAD_BYTES)
		len = SLUICE_L7_PAYLOAD_BYTES;
	len = ((len - 1) & (SLUICE_L7_PAYLOAD_BYTES - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, e->payload, len) < 0) {
		bpf_ringbuf_discard(e, 0);
		return;
	}
	e->event.timestamp_ns = bpf_ktime_get_ns();
	e->event.type = SLUICE_EVENT_L7;
	e->event.reason = 0;
	e->event.src_identity = lookup_identity(f->family, f->saddr);
	e->event.dst_identity = lookup_identity(f->family, f->daddr);
	e->event.src_endpoint = src_endpoint;
	e->event.dst_endpoint = dst_endpoint;
	__builtin_memcpy(e->event.saddr, f->saddr, 16);
	__builtin_memcpy(e->event.daddr, f->daddr, 16);
	e->event.sport = f->sport;
	e->event.dport = f->dport;
	e->event.protocol = f->protocol;
	e->event.family = f->family;
	e->event.direction = 0;
	e->event.verdict = SLUICE_VERDICT_ALLOWED;
	e->event.ifindex = skb->ifindex;
	e->event.len = skb->len;
	e->event.tcp_flags = f->tcp_flags;
	e->event.is_reply = 0;
	e->event.payload_len = len;
	e->event.reserved = 0;
	/* No wakeup: the agent consumes on a timer (datapath/ringbuf.ts), and a wakeup per event is most of its cost. */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

#endif
