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

#define SLUICE_MAX_ENDPOINTS 65536

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
	__u32 flags;       /* reserved, zero */
	__u8 mac[6];       /* the pod interface's MAC */
	__u8 host_mac[6];  /* the host veth's MAC: the gateway as the pod sees it */
	__u8 ipv4[4];      /* the pod's IPv4 address (network order), zero if none */
};

/* Global datapath counters: index into the per-CPU `counters` array. */
enum sluice_counter {
	SLUICE_CTR_FROM_POD = 0,       /* packets seen by from-pod */
	SLUICE_CTR_REDIRECT_LOCAL = 1, /* from-pod: delivered to a local pod by redirect */
	SLUICE_CTR_TO_STACK = 2,       /* from-pod: handed to the host stack */
	SLUICE_CTR_ARP_REPLY = 3,      /* from-pod: ARP requests answered for the gateway */
	SLUICE_CTR_TO_POD = 4,         /* packets seen by to-pod */
	SLUICE_CTR_DROP_SPOOF = 5,     /* dropped: source IP or MAC not the pod's own */
	SLUICE_CTR_DROP_UNKNOWN_EP = 6,/* dropped: from-pod on a device with no endpoint */
	SLUICE_CTR_DROP_MALFORMED = 7, /* dropped: truncated or malformed headers */
	SLUICE_CTR_MAX = 16,
};

struct counter_value {
	__u64 packets;
	__u64 bytes;
};

#endif
