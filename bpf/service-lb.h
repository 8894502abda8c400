/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel ABI of the socket load balancer (service-lb.c): its map keys and
 * values and their limits. Mirrored in exactly one TypeScript module,
 * datapath/service-lb-abi.ts; test/service-lb-abi.test.ts compares the two
 * through BTF.
 *
 * Addresses are 16 bytes with a family: an IPv4 address in the first 4
 * bytes, the rest zero (an IPv4-mapped IPv6 address a dual-stack socket uses
 * is looked up as the IPv4 address it maps). Ports are in network order, as
 * struct bpf_sock_addr's user_port holds them.
 *
 * The services map holds, per frontend, slot 0 (the frontend itself: how many
 * backend slots it has) and slots 1..count (a backend id each), so that adding
 * or removing one backend rewrites the slots of that frontend only, never a
 * whole table. Only ready backends get slots.
 */
#ifndef SLUICE_SERVICE_LB_H
#define SLUICE_SERVICE_LB_H

#include <linux/types.h>

/* Enums, not #defines: BTF carries their values, so the mirror is checked. */
enum sluice_lb_limits {
	/* Entries of services: frontends plus their backend slots. */
	SLUICE_LB_MAX_SERVICE_SLOTS = 65536,
	/* Backends; ids run from 1 (0 is no backend). Also the size of lb_backend_flows. */
	SLUICE_LB_MAX_BACKENDS = 65536,
	/* Sockets × backends remembered for reverse translation (LRU: a socket that
	 * is gone leaves its entries to be evicted). */
	SLUICE_LB_MAX_REVNAT = 262144,
	/* Backend slots one frontend may have. */
	SLUICE_LB_MAX_SLOTS_PER_SERVICE = 4096,
	/* (client, frontend) pairs remembered for sessionAffinity: ClientIP (LRU). */
	SLUICE_LB_MAX_AFFINITY = 65536,
};

/* lb_service_value.flags of slot 0. */
enum sluice_lb_service_flags {
	/* sessionAffinity: ClientIP: a client keeps its backend for affinity_timeout_sec after its last new flow.
	 * The client is its network namespace (a pod; the host's processes are one client), as the socket
	 * hooks cannot know the source address a connect will get. */
	SLUICE_LB_F_AFFINITY = 1,
};

enum sluice_lb_family {
	SLUICE_LB_FAMILY_V4 = 4,
	SLUICE_LB_FAMILY_V6 = 6,
};

/* A frontend's slot 0 refuses at once (connect and sendmsg fail with ECONNREFUSED) when count is 0. */
struct lb_service_key {
	__u8 addr[16];
	__u16 port;	/* network order */
	__u8 protocol;	/* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;	/* enum sluice_lb_family */
	__u16 slot;	/* 0: the frontend; 1..count: its backends */
	__u16 pad;
};

struct lb_service_value {
	/* Slot 0: 0. Slots 1..count: the backend's id in lb_backends. */
	__u32 backend_id;
	/* Slot 0: the number of backend slots. */
	__u16 count;
	/* Slot 0: enum sluice_lb_service_flags. */
	__u16 flags;
	/* Slot 0 with SLUICE_LB_F_AFFINITY: how long a client keeps its backend. */
	__u32 affinity_timeout_sec;
};

/* sessionAffinity: ClientIP, per client network namespace and frontend. */
struct lb_affinity_key {
	__u64 netns_cookie;	/* bpf_get_netns_cookie() */
	__u8 addr[16];		/* the frontend */
	__u16 port;
	__u8 protocol;
	__u8 family;
	__u32 pad;
};

struct lb_affinity_value {
	__u64 last_used_ns;	/* bpf_ktime_get_ns() of the client's last new flow to it */
	__u32 backend_id;
	__u32 pad;
};

/* A backend is an address, a port and a protocol: TCP and UDP on one port are two backends, counted apart. */
struct lb_backend {
	__u8 addr[16];
	__u16 port;	/* network order */
	__u8 family;
	__u8 protocol;
};

/* Reverse translation of a socket's traffic from a backend: (socket, backend) → the frontend it asked for. */
struct lb_revnat_key {
	__u64 cookie;	/* bpf_get_socket_cookie() */
	__u8 addr[16];	/* the backend */
	__u16 port;	/* network order */
	__u8 family;
	__u8 pad[5];
};

struct lb_revnat_value {
	__u8 addr[16];	/* the frontend */
	__u16 port;	/* network order */
	__u8 family;
	__u8 pad;
};

#endif /* SLUICE_SERVICE_LB_H */
