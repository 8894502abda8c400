/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel ABI of Sluice: every map key and value, and the constants shared
 * between the eBPF programs and the agent. Mirrored in exactly one TypeScript
 * module, datapath/abi.ts; test/abi.test.ts compares the two through BTF.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <linux/types.h>

#define SLUICE_FAMILY_IPV4 4
#define SLUICE_FAMILY_IPV6 6

/*
 * Map sizes. Each may be set by a build flag, only for tests of a changed
 * layout and its migration (test/datapath-version.test.ts,
 * test/datapath-migration.test.ts).
 */
#ifndef SLUICE_MAX_ENDPOINTS
#define SLUICE_MAX_ENDPOINTS 65536
#endif
#define SLUICE_MAX_IPCACHE 262144
#ifndef SLUICE_MAX_POLICY
#define SLUICE_MAX_POLICY 1048576
#endif
#define SLUICE_MAX_CIDR_POLICY 262144
#ifndef SLUICE_MAX_CONNTRACK
#define SLUICE_MAX_CONNTRACK 262144
#endif
/*
 * Per-packet Service NAT entries (lb_nat, maps.h): two per translated flow,
 * which leave with the flow's conntrack entry, so at most two for each of
 * the 262,144 entries of the default conntrack table; the other 32,768 are
 * room for the LRU's per-CPU free lists (up to 128 nodes each), so that it
 * never has to evict. A number of its own, not SLUICE_MAX_CONNTRACK's
 * double: the migration tests' builds of a grown conntrack table change that
 * one map only.
 */
#ifndef SLUICE_MAX_LB_NAT
#define SLUICE_MAX_LB_NAT 557056
#endif
/* Fragment table: 128 endpoints at their budget fill it, more than kubelet's default of 110 pods a node. */
#ifndef SLUICE_MAX_FRAGMENTS
#define SLUICE_MAX_FRAGMENTS 131072
#endif

/*
 * Conntrack entries one endpoint may hold at a time (the flows it opened),
 * unless the agent sets another budget: a quarter of the table. A flow over
 * budget is dropped (SLUICE_CTR_DROP_CT_FULL). Flows opened from off the
 * node (or by the node itself) are charged to a bucket of their opener's
 * identity (SLUICE_CT_BUCKET_REMOTE), with the same budget, not to the pod
 * they go to: a remote pod cannot spend a local pod's budget.
 *
 * Budgets alone would let a few pods fill the table together. So the first
 * SLUICE_CT_RESERVE_PER_ENDPOINT entries of every local endpoint are its own,
 * set aside for up to SLUICE_CT_RESERVED_ENDPOINTS endpoints (kubelet's
 * default pod limit is 110), and everything beyond them, remote buckets
 * included, comes from the shared rest of the table, counted under
 * SLUICE_CT_SHARED_KEY. A pod can always open its reserve's worth of flows,
 * whatever the others do.
 */
#define SLUICE_CT_MAX_PER_ENDPOINT 65536
#define SLUICE_CT_RESERVE_PER_ENDPOINT 1024
#define SLUICE_CT_RESERVED_ENDPOINTS 128
#define SLUICE_CT_SHARED_CAPACITY (SLUICE_MAX_CONNTRACK - SLUICE_CT_RESERVE_PER_ENDPOINT * SLUICE_CT_RESERVED_ENDPOINTS)
/* ct_counts key of a remote opener's bucket: this bit | its identity. */
#define SLUICE_CT_BUCKET_REMOTE (1u << 31)
/* ct_counts key of the shared part of the table (its entries field). */
#define SLUICE_CT_SHARED_KEY 4294967295u /* 0xffffffff */

/*
 * Fragmented datagrams one endpoint may have in flight at a time (first
 * fragment seen, not yet all of its bytes), unless the agent sets another
 * budget. A datagram's entry leaves as soon as all its bytes have been seen,
 * so only incomplete ones count. A first fragment over budget is dropped
 * (SLUICE_CTR_DROP_FRAG_FULL).
 */
#define SLUICE_FRAG_MAX_PER_ENDPOINT 1024

/* An incomplete datagram's entry lives this long after its first fragment, as Linux's ipfrag_time. */
#define SLUICE_FRAG_TIMEOUT_SEC 30

/* Reserved security identities; pods get SLUICE_ID_FIRST_POD and up. */
#define SLUICE_ID_ANY 0             /* in policy keys: any peer */
#define SLUICE_ID_HOST 1            /* this node's own addresses */
#define SLUICE_ID_WORLD 2           /* every address the ipcache does not know */
#define SLUICE_ID_UNMANAGED 3       /* a pod Sluice does not manage */
#define SLUICE_ID_REMOTE_NODE 4     /* other nodes' addresses */
#define SLUICE_ID_SERVICE 5         /* Service (ClusterIP) addresses: the stack translates them after from-pod */
#define SLUICE_ID_FIRST_POD 256
/* Peers selected by address (ipBlock, named ports resolved per remote pod): see cidr_policy. */
#define SLUICE_ID_FIRST_CIDR_SELECTOR (1u << 24)

/* struct endpoint_info.flags */
#define SLUICE_EP_INGRESS_ISOLATED (1u << 0)
#define SLUICE_EP_EGRESS_ISOLATED (1u << 1)

/* Policy directions, as seen from the endpoint the policy belongs to. */
#define SLUICE_DIR_INGRESS 1
#define SLUICE_DIR_EGRESS 2

/* The UDP port of the VXLAN overlay (IANA's): no pod may send to it on a node. */
#define SLUICE_VXLAN_PORT 4789

/* In policy keys: any protocol (the port is then a 0-bit prefix). */
#define SLUICE_PROTO_ANY 0

/* endpoints map key: one address of a local pod. */
struct endpoint_key {
	__u8 family;   /* SLUICE_FAMILY_IPV4 or SLUICE_FAMILY_IPV6 */
	__u8 pad[3];
	__u8 addr[16]; /* network order; IPv4 uses the first 4 bytes, the rest is zero */
};

/* A local endpoint (pod interface): value of the endpoints and devices maps. */
struct endpoint_info {
	__u32 ifindex;     /* host-side veth */
	__u32 endpoint_id; /* agent-chosen, stable for the endpoint's life */
	__u32 identity;    /* security identity of the pod's label set */
	__u32 flags;       /* SLUICE_EP_* */
	__u32 policy_rev;  /* revision of the endpoint's policy; its low bit picks the slot (see policy_key) */
	__u8 mac[6];       /* the pod interface's MAC */
	__u8 host_mac[6];  /* the host veth's MAC: the gateway as the pod sees it */
	__u8 ipv4[4];      /* the pod's IPv4 address (network order), zero if none */
	__u8 ipv6[16];     /* the pod's IPv6 address (network order), zero if none */
};

/*
 * ipcache key: an address prefix (LPM trie). prefixlen counts the bits after
 * it: SLUICE_IPCACHE_FIXED_BITS for family + pad, then the address bits.
 */
struct ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

/* What is known of the addresses of a prefix. */
struct ipcache_value {
	__u32 identity;
	__u32 flags; /* unused: the agent writes zero (encodeIpcacheValue), no program reads it */
};

/*
 * An endpoint's policy lives in two slots, policy ids endpoint_id * 2 and
 * endpoint_id * 2 + 1; the low bit of endpoint_info.policy_rev says which one
 * is live. The agent writes a new rule set into the other slot, switches the
 * endpoint over in one update of its endpoint_info, and only then deletes the
 * old slot: a packet sees the old rules or the new ones, never a mix.
 */
#define SLUICE_POLICY_ID(endpoint_id, policy_rev) (((endpoint_id) << 1) | ((policy_rev) & 1))

/*
 * policy key (LPM trie): may the endpoint exchange new flows in this
 * direction with this peer, protocol and port? Every field up to the port is
 * always matched in full (SLUICE_POLICY_FIXED_BITS); port ranges are a prefix
 * over the port (network order) of 0..16 bits. A rule with no ports has protocol
 * SLUICE_PROTO_ANY and a 0-bit port prefix.
 */
struct policy_key {
	__u32 prefixlen;
	__u32 policy_id; /* SLUICE_POLICY_ID() of the endpoint's live slot */
	__u32 peer;      /* identity, CIDR selector, or SLUICE_ID_ANY */
	__u8 direction;  /* SLUICE_DIR_* */
	__u8 protocol;   /* IPPROTO_* or SLUICE_PROTO_ANY */
	__be16 port;     /* destination port, network order */
};

struct policy_value {
	__u32 flags; /* unused, zero (encodePolicyValue): an entry's presence allows */
};

/*
 * cidr_policy key (LPM trie): peers selected by address rather than identity.
 * The longest prefix containing the peer address gives a selector that is
 * then looked up as a peer in the policy map. SLUICE_CIDR_POLICY_FIXED_BITS,
 * then address bits.
 */
struct cidr_policy_key {
	__u32 prefixlen;
	__u32 policy_id; /* as in policy_key */
	__u8 direction;
	__u8 family;
	__u8 pad[2];
	__u8 addr[16];
};

struct cidr_policy_value {
	__u32 selector; /* >= SLUICE_ID_FIRST_CIDR_SELECTOR */
};

/*
 * The bits after prefixlen that an LPM key always matches in full, before its
 * prefix proper: a key's prefixlen is these plus the prefix's own bits.
 * Computed from the layouts (as Cilium computes its prefix lengths), from the
 * first field after prefixlen up to the prefixed one: ipcache family + pad
 * (32), policy policy_id + peer + direction + protocol (80), cidr_policy
 * policy_id + direction + family + pad (64). An enum rather than #defines so
 * the compiler's values reach the object's BTF (anchored in maps.h), where
 * test/abi.test.ts compares them with datapath/abi.ts.
 */
#define SLUICE_LPM_BITS(key, from, to) ((__builtin_offsetof(struct key, to) - __builtin_offsetof(struct key, from)) * 8)
enum sluice_lpm_fixed_bits {
	SLUICE_IPCACHE_FIXED_BITS = SLUICE_LPM_BITS(ipcache_key, family, addr),
	SLUICE_POLICY_FIXED_BITS = SLUICE_LPM_BITS(policy_key, policy_id, port),
	SLUICE_CIDR_POLICY_FIXED_BITS = SLUICE_LPM_BITS(cidr_policy_key, policy_id, addr),
};

/*
 * Connection tracking key: one direction of a flow, as the packet that opened
 * it carried it. ICMP echo uses (id, 0) for requests and (0, id) for replies,
 * so a reply's reversed key is its request's key. ICMP errors are never keys:
 * they pass as related to the flow they quote. Other ICMP messages are not
 * tracked at all (every one meets policy), so none opens the way for another.
 */
struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	__u8 pad[2];
};

/*
 * A flow is judged again when the policy of either local endpoint changes
 * (its policy_rev moves on): a new rule set revokes the flows it does not
 * allow, however busy they are.
 *
 * A flow is bound to the local endpoints it was judged for: the endpoint ids
 * (0: not a pod of this node) of the address that opened it and of the one it
 * went to. A packet matches the entry only while those addresses still belong
 * to the same endpoints (ids are never reused), so an entry seeded toward an
 * address before its pod existed, or left by a deleted pod, grants nothing to
 * the address's next owner: that flow passes the new owner's policy first.
 */
struct ct_value {
	__u64 created_ns;
#ifdef SLUICE_TEST_CT_VALUE_MIDDLE /* build flag only for the test of a value changed in the middle (test/datapath-migration.test.ts) */
	__u64 test_middle;
#endif
	__u64 last_seen_ns;
	__u64 packets;
	__u32 flags;        /* SLUICE_CT_* */
	__u32 src_endpoint; /* local endpoint of the opening packet's source, or 0 */
	__u32 dst_endpoint; /* local endpoint of its destination, or 0 */
	__u32 src_policy_rev; /* policy_rev of src_endpoint when the flow was last judged */
	__u32 dst_policy_rev; /* likewise of dst_endpoint */
	/*
	 * The identities the flow was last judged with, of its opener and its
	 * receiver: a relabelled pod (or an address that changed identity) gets
	 * its open flows judged again, as a policy change does.
	 */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 charged; /* the ct_counts key the entry is charged to (endpoint id, or a remote bucket) */
#ifdef SLUICE_TEST_CT_VALUE_EXTRA /* build flag only for the test of a value grown at its end (test/datapath-migration.test.ts) */
	__u64 test_extra;
#endif
};

/* struct ct_value.flags: a FIN was seen, the flow is winding down. */
#define SLUICE_CT_CLOSING (1u << 0)
/* The flow reached the pod through the host stack (e.g. a Service's DNAT): replies go back through it. */
#define SLUICE_CT_VIA_STACK (1u << 1)
/*
 * The flow was opened toward a Service address. While its opener is egress
 * isolated, every packet of it carries SLUICE_MARK_EGRESS_PENDING: its egress
 * policy is judged on the backend the stack translates it to.
 */
#define SLUICE_CT_SERVICE (1u << 2)
/*
 * A tombstone: a policy change revoked the flow. The entry stays (refreshed
 * by every packet that meets it, until it is idle for its timeout) so that
 * neither end can reopen the tuple the other way round: its packets are
 * judged in the direction the flow was opened only, and a TCP tuple reopens
 * only with a new SYN from its opener.
 */
#define SLUICE_CT_REVOKED (1u << 3)
/*
 * A packet went the other way: the flow was answered. Until then a TCP flow
 * (an unanswered SYN, a half-open connection) idles out after the short
 * timeout of other protocols, not the 6 h of an open connection, so
 * unanswered flows cannot hold a pod's budget for hours.
 */
#define SLUICE_CT_REPLIED (1u << 4)
/*
 * The opener was source-NATed to this node's address before it reached the
 * pod (a masqueraded NodePort): its identity is the client's, from the node's
 * conntrack (masquerade.h), not the host's its address would give. Re-judged
 * with the identity recorded, which its address cannot tell again.
 */
#define SLUICE_CT_MASQUERADED (1u << 5)

/*
 * skb->mark bit from_pod sets on a packet whose egress policy it cannot judge:
 * it goes to a Service address, and only the host stack's translation
 * (kube-proxy's DNAT) names the real destination. The netfilter programs
 * judge it after that translation (service_egress). A pod cannot set it: the
 * veth clears the mark of every packet leaving the pod's namespace. Bits 14
 * and 15 are kube-proxy's.
 */
#define SLUICE_MARK_EGRESS_PENDING (1u << 24)

/*
 * Idle time after which a flow must pass policy again, unless the agent sets
 * another (struct datapath_config): a peer that a new policy denies cannot
 * keep an old flow alive forever by reusing its ports. An enum rather than
 * #defines so the values reach the object's BTF (anchored in maps.h), where
 * test/abi.test.ts compares them with datapath/abi.ts.
 */
enum sluice_ct_timeout_sec {
	SLUICE_CT_TIMEOUT_TCP_SEC = 21600, /* 6 h, an open TCP connection */
	SLUICE_CT_TIMEOUT_CLOSING_SEC = 10, /* after a FIN */
	SLUICE_CT_TIMEOUT_OTHER_SEC = 60,  /* UDP, ICMP, everything else */
};

/* Settings the agent writes at start (array `config`, one entry); 0 means the default. */
struct datapath_config {
	__u32 ct_timeout_tcp_sec;
	__u32 ct_timeout_closing_sec;
	__u32 ct_timeout_other_sec;
	__u32 ct_max_per_endpoint;   /* conntrack budget of one endpoint */
	__u32 frag_max_per_endpoint; /* fragment budget of one endpoint */
	__u32 frag_timeout_sec;      /* lifetime of an incomplete datagram's entry */
	__u32 l7_off;                /* 1: no L7 events (the agent's --l7 off): not even the payload check runs */
};

/*
 * Conntrack and fragment entries charged to one endpoint (map ct_counts,
 * keyed by endpoint id): a flow is charged to the local endpoint that opened
 * it, or, opened from off the node, to its opener's remote bucket
 * (SLUICE_CT_BUCKET_REMOTE | identity); a fragmented datagram to the
 * endpoint whose program saw it (struct frag_key.endpoint). The shared part
 * of the table is counted under SLUICE_CT_SHARED_KEY.
 * Every create adds one and every delete (datapath or ct_sweep) takes one
 * off, so the counts are exact.
 */
struct ct_count {
	__s64 entries;
	__s64 fragments;
};

/*
 * The context of the ct_sweep program (BPF_PROG_TEST_RUN, written back): it
 * deletes every conntrack entry idle past its timeout or bound to an
 * endpoint that is gone, and says how many it saw and removed.
 */
struct ct_sweep_result {
	__u32 scanned;
	__u32 expired; /* idle past its timeout */
	__u32 stale;   /* an address of the flow no longer belongs to the endpoint it was judged for */
	__u32 frag_scanned;
	__u32 frag_expired; /* an incomplete datagram past SLUICE_FRAG_TIMEOUT_SEC */
	__u32 pad;
};

/*
 * A fragmented datagram as one endpoint's program saw it: from_pod keys it
 * under the sending pod (its source passed the spoofing check), to_pod under
 * the receiving one, and the entry is charged to that endpoint. Other
 * endpoints' packets never reach its entries, and a datagram that goes
 * through both programs (a pod's own Service) is tracked once in each.
 */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
#ifndef SLUICE_TEST_FRAG_KEY_SWAP /* a build flag only for the test of a key reordered at the same size (test/datapath-migration.test.ts) */
	__u32 id;
	__u32 endpoint;  /* the endpoint charged */
#else
	__u32 endpoint;
	__u32 id;
#endif
	__u8 protocol;
	__u8 family;
	__u8 direction;  /* SLUICE_DIR_EGRESS: seen by from_pod; SLUICE_DIR_INGRESS: by to_pod */
	__u8 pad;
#ifdef SLUICE_TEST_FRAG_KEY_EXTRA /* a build flag only for the test of a key layout no migration can carry (test/datapath-migration.test.ts) */
	__u32 test_extra;
#endif
};

/*
 * The ports of its first fragment, for the fragments after it, and how much
 * of the datagram has been seen: the entry is removed once every byte has.
 */
struct frag_value {
	__u64 created_ns;  /* when the first fragment was seen */
	__u64 seen_bytes;  /* fragment payload seen so far, first fragment included (64 bits: atomics) */
	__u64 total_bytes; /* the datagram's payload length, known from its last fragment; 0 until then */
	__be16 sport;
	__be16 dport;
	__u8 protocol;     /* the datagram's transport protocol, from its first fragment (IPv6: past any extension headers) */
	__u8 untracked;    /* the first fragment's flow.untracked: ICMP judged packet by packet, never a flow */
	__u8 pad[2];
};

/* Monitor events (ring buffer `events`). */
#define SLUICE_EVENT_VERDICT 1 /* a new flow met a policy decision */
#define SLUICE_EVENT_DROP 2    /* a packet was dropped; reason says why */
#define SLUICE_EVENT_L7 3      /* a packet may start a DNS or HTTP/1.x message: struct l7_event */

#define SLUICE_VERDICT_ALLOWED 1
#define SLUICE_VERDICT_DENIED 2

/*
 * Events each CPU may emit per second, per bucket; the rest are counted as
 * lost. Verdicts and drops take one bucket, L7 messages the other: a flood of
 * DNS queries cannot hide a drop, nor a flood of drops a request.
 */
#define SLUICE_EVENTS_PER_SEC 2000
#define SLUICE_EVENTS_BURST 500
#define SLUICE_EVENT_BUCKET_FLOWS 0
#define SLUICE_EVENT_BUCKET_L7 1
#define SLUICE_EVENT_BUCKETS 2
/* Payload bytes an L7 event carries: a DNS question, an HTTP request or status line and some headers. */
#define SLUICE_L7_PAYLOAD_BYTES 256
#define SLUICE_EVENTS_RINGBUF_BYTES (1 << 20)

/* One monitor event: a verdict on a new flow, or a drop. */
struct event {
	__u64 timestamp_ns;   /* bpf_ktime_get_ns() */
	__u32 type;           /* SLUICE_EVENT_* */
	__u32 reason;         /* enum sluice_counter of a drop; the verdict's counter otherwise */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 src_endpoint;   /* local endpoint id, or 0 */
	__u32 dst_endpoint;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	__u8 direction;       /* SLUICE_DIR_* of the policy that decided, 0 if none */
	__u8 verdict;         /* SLUICE_VERDICT_* */
	__u32 ifindex;
	__u32 len;            /* packet length */
	__u8 tcp_flags;       /* of a TCP packet */
	__u8 is_reply;        /* the packet goes from the flow's responder to its opener */
	__u16 payload_len;    /* of SLUICE_EVENT_L7: the payload bytes that follow (at most SLUICE_L7_PAYLOAD_BYTES) */
	__u32 reserved;
};

/* An L7 event: the event, then the first bytes of the transport payload. */
struct l7_event {
	struct event event;
	__u8 payload[SLUICE_L7_PAYLOAD_BYTES];
};

/* Per-CPU token bucket of the event rate limit. */
struct event_rate {
	__u64 last_ns;
	__u64 tokens;
};

/*
 * Per-packet Service NAT (service-nat.h), for what the socket load balancer
 * does not see: one lb_nat entry per direction of a translated flow. The
 * original direction, (client, frontend), gives the backend; the reply
 * direction, (backend, client) as the reply carries them, gives the frontend.
 */
enum sluice_nat_dir {
	SLUICE_NAT_ORIGINAL = 1,
	SLUICE_NAT_REPLY = 2,
};

struct lb_nat_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 family;   /* SLUICE_FAMILY_IPV4 or SLUICE_FAMILY_IPV6 */
	__u8 protocol;
	__u8 dir;      /* enum sluice_nat_dir */
	__u8 pad;
};

struct lb_nat_value {
	__u8 addr[16]; /* original: the backend; reply: the frontend */
	__be16 port;
	__u16 pad;
	__u32 backend_id; /* original: the backend's id in lb_backends, checked on every packet */
};

/*
 * sessionAffinity: ClientIP of the per-packet path (lb_nat_affinity, an LRU
 * whose value is service-lb.h's struct lb_affinity_value): a client address
 * keeps its backend per frontend while it opens flows within the timeout.
 */
struct lb_nat_affinity_key {
	__u8 client[16];
	__u8 frontend[16];
	__be16 port;
	__u8 protocol;
	__u8 family;
};

/* Per-endpoint counters: key of the per-CPU ep_counters hash. */
struct ep_counter_key {
	__u32 endpoint_id;
	__u32 counter; /* enum sluice_counter */
};

/* Global datapath counters: index into the per-CPU `counters` array. */
enum sluice_counter {
	SLUICE_CTR_FROM_POD = 0,       /* packets seen by from-pod */
	SLUICE_CTR_REDIRECT_LOCAL = 1, /* from-pod: delivered to a local pod by redirect */
	SLUICE_CTR_TO_STACK = 2,       /* from-pod: handed to the host stack */
	SLUICE_CTR_ARP_REPLY = 3,      /* from-pod: ARP requests answered for the gateway */
	SLUICE_CTR_TO_POD = 4,         /* packets seen by to-pod */
	SLUICE_CTR_DROP_SPOOF = 5,     /* dropped: source IP or MAC not the pod's own */
	SLUICE_CTR_DROP_UNKNOWN_EP = 6,/* dropped: a device with no endpoint (not yet, or no longer) */
	SLUICE_CTR_DROP_MALFORMED = 7, /* dropped: truncated or malformed headers */
	SLUICE_CTR_DROP_POLICY_INGRESS = 8, /* dropped: the destination's ingress policy denies it */
	SLUICE_CTR_DROP_POLICY_EGRESS = 9,  /* dropped: the source's egress policy denies it */
	SLUICE_CTR_DROP_FRAGMENT = 10,  /* dropped: a fragment whose first fragment was not seen */
	SLUICE_CTR_POLICY_ALLOWED = 11, /* new flows a policy check allowed */
	SLUICE_CTR_CT_ESTABLISHED = 12, /* packets of known flows (either direction) */
	SLUICE_CTR_EVENTS_LOST = 13,    /* monitor events not emitted: rate limit or full ring buffer */
	SLUICE_CTR_CT_RELATED = 14,     /* ICMP errors about a known flow, passed without a policy check */
	SLUICE_CTR_DROP_ICMP_UNRELATED = 15, /* dropped: an ICMP error about no flow this node let through */
	SLUICE_CTR_DROP_TUNNEL = 16,    /* dropped: a pod sent to a node's VXLAN port */
	SLUICE_CTR_DROP_CT_FULL = 17,   /* dropped: a new flow over its endpoint's conntrack budget, or the table is full */
	SLUICE_CTR_DROP_FRAG_FULL = 18, /* dropped: a first fragment over its endpoint's fragment budget, or the table is full */
	SLUICE_CTR_DROP_REVOKED = 19,   /* dropped: a packet of a flow a policy change revoked (either end) */
	SLUICE_CTR_SERVICE_DNAT = 20,   /* from-pod: packets to a Service frontend translated to a backend */
	SLUICE_CTR_SERVICE_REVNAT = 21, /* replies from a backend given back their frontend's address */
	SLUICE_CTR_SERVICE_REFUSED = 22,/* from-pod: to a frontend without backends, answered with a TCP RST or an ICMP port unreachable */
	SLUICE_CTR_MAX = 32,
};

struct counter_value {
	__u64 packets;
	__u64 bytes;
};

#endif
