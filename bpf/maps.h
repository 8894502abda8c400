/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The datapath's maps (layouts in sluice.h), pinned by name so a restarted agent re-uses them. Included by datapath.c only. */
#ifndef SLUICE_MAPS_H
#define SLUICE_MAPS_H

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

/*
 * Flows a policy check allowed; replies match their reversed key. Not an LRU:
 * there one pod's flood would evict every other pod's flows. Entries leave
 * when their flow ends (RST), when a packet finds them expired or stale, and
 * through the agent's periodic ct_sweep; each endpoint has a budget
 * (ct_counts).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_CONNTRACK);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* Endpoint id -> conntrack and fragment entries charged to it (struct ct_count). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct ct_count);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct_counts SEC(".maps");

/*
 * Fragmented datagrams in flight: the ports of their first fragment. Not an
 * LRU, for the reason conntrack is not: each endpoint has a budget
 * (ct_counts), an entry leaves when all its datagram's bytes are seen, when
 * a packet finds it expired, or through ct_sweep.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_FRAGMENTS);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fragments SEC(".maps");

/*
 * Per-packet Service NAT (service-nat.h): both directions of each translated
 * flow (struct lb_nat_key), an entry only a translation, never a permission.
 * They leave with the flow's conntrack entry (ct_nat_forget: a RST, the
 * sweep, a packet that finds the flow expired) or with the new flow that
 * conntrack or policy refused, so they are bounded by the conntrack budgets
 * and the map (SLUICE_MAX_LB_NAT) never fills. An LRU all the same, so that
 * an entry a race left behind does not stay forever; it evicts nothing
 * while entries leave with their flows, so no pod's churn can push out
 * another pod's live translation.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_LB_NAT);
	__type(key, struct lb_nat_key);
	__type(value, struct lb_nat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nat SEC(".maps");

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

/* Monitor events for the agent: verdicts on new flows, drops, and the first bytes of L7 messages. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SLUICE_EVENTS_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

/* Token bucket per CPU: a flood of drops must not turn into a flood of events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_EVENT_BUCKETS);
	__type(key, __u32);
	__type(value, struct event_rate);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} event_rate SEC(".maps");

/* Keeps struct event in the BTF for test/abi.test.ts (ring buffers carry no value type). */
const volatile struct event sluice_event_btf_anchor = {};
const volatile struct l7_event sluice_l7_event_btf_anchor = {};

/*
 * Keeps `enum sluice_counter` in the object's BTF (types only reachable from
 * inlined code are not emitted), so test/abi.test.ts can compare it with
 * datapath/abi.ts. Lives in .rodata; no program reads it.
 */
const volatile enum sluice_counter sluice_counter_btf_anchor = SLUICE_CTR_MAX;
/* Likewise the LPM fixed bits and the conntrack timeout defaults (enums for that reason). */
const volatile enum sluice_lpm_fixed_bits sluice_lpm_fixed_bits_btf_anchor = SLUICE_IPCACHE_FIXED_BITS;
const volatile enum sluice_ct_timeout_sec sluice_ct_timeout_sec_btf_anchor = SLUICE_CT_TIMEOUT_TCP_SEC;

#endif
