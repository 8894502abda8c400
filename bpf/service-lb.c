// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Sluice's socket load balancer: ClusterIP Services translated where a
 * socket names its peer, so a TCP client connects straight to a backend and
 * no packet ever carries the Service address. A third object beside the
 * datapath (datapath.c), loaded and pinned by the agent under
 * <bpf-dir>/service-lb (datapath/service-lb-loader.ts), its programs attached
 * with pinned links at the root of the cgroup v2 hierarchy, so every socket
 * of the node (pods and host processes alike) passes them. Map layouts:
 * service-lb.h.
 *
 *   lb_connect4/6      connect(): a frontend becomes a backend chosen at
 *                      random among its slots; no slots: ECONNREFUSED at once
 *   lb_sendmsg4/6      sendto() on an unconnected UDP socket: the same
 *   lb_recvmsg4/6      recvfrom(): a datagram from a backend this socket was
 *                      sent to shows the frontend it asked for
 *   lb_getpeername4/6  getpeername(): the same, for connected sockets
 *
 * Policy still holds: after the translation the packets are addressed to
 * the backend, so from_pod's egress policy judges the backend itself.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "service-lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_LB_MAX_SERVICE_SLOTS);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_LB_MAX_REVNAT);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_LB_MAX_AFFINITY);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_affinity SEC(".maps");

/* New connections (TCP connects, UDP connects and sends) per backend id, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backend_flows SEC(".maps");

/* Put the enums in the BTF, where test/service-lb-abi.test.ts reads them (an enum only used in constants leaves no trace). */
const volatile enum sluice_lb_limits sluice_lb_limits_btf_anchor = SLUICE_LB_MAX_BACKENDS;
const volatile enum sluice_lb_family sluice_lb_family_btf_anchor = SLUICE_LB_FAMILY_V4;
const volatile enum sluice_lb_service_flags sluice_lb_service_flags_btf_anchor = SLUICE_LB_F_AFFINITY;

#define NSEC_PER_SEC 1000000000ULL

/* An address as the maps hold it: the family and 16 bytes (IPv4 in the first 4). */
struct lb_addr {
	__u32 w[4];
	__u8 family;
	/* The socket saw it as an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
	__u8 mapped;
};

static __always_inline void read_addr(struct bpf_sock_addr *ctx, int v6, struct lb_addr *a)
{
	__builtin_memset(a, 0, sizeof(*a));
	if (!v6) {
		a->w[0] = ctx->user_ip4;
		a->family = SLUICE_LB_FAMILY_V4;
		return;
	}
	a->w[0] = ctx->user_ip6[0];
	a->w[1] = ctx->user_ip6[1];
	a->w[2] = ctx->user_ip6[2];
	a->w[3] = ctx->user_ip6[3];
	a->family = SLUICE_LB_FAMILY_V6;
	if (a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff)) {
		a->w[0] = a->w[3];
		a->w[2] = 0;
		a->w[3] = 0;
		a->family = SLUICE_LB_FAMILY_V4;
		a->mapped = 1;
	}
}

/* Writes addr (of family) + port to the socket's view, in the form the socket used (mapped or not). */
static __always_inline int write_addr(struct bpf_sock_addr *ctx, int v6, int mapped, const __u8 *addr, __u8 family, __u16 port)
{
	__u32 w[4];

	__builtin_memcpy(w, addr, sizeof(w));
	if (!v6) {
		if (family != SLUICE_LB_FAMILY_V4)
			return -1;
		ctx->user_ip4 = w[0];
	} else if (family == SLUICE_LB_FAMILY_V4) {
		/* Only a socket that spoke IPv4-mapped gets an IPv4 address back. */
		if (!mapped)
			return -1;
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = w[0];
	} else {
		if (mapped)
			return -1;
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx->user_port = port;
	return 0;
}

/*
 * connect and sendmsg: a frontend is translated to one of its backends, the
 * reverse translation remembered for this socket. Returns the hook's verdict:
 * 1 to go on, 0 with ECONNREFUSED for a frontend without backends.
 */
static __always_inline int translate(struct bpf_sock_addr *ctx, int v6)
{
	struct lb_service_key key = {};
	struct lb_service_value *svc, *slot;
	struct lb_revnat_key rkey = {};
	struct lb_revnat_value rval = {};
	struct lb_affinity_key akey = {};
	struct lb_affinity_value aval = {}, *aff = NULL;
	struct lb_backend *backend = NULL;
	struct lb_addr a;
	__u64 now = 0;
	__u32 id = 0;
	__u64 *flows;
	__u16 port = (__u16)ctx->user_port;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	read_addr(ctx, v6, &a);
	__builtin_memcpy(key.addr, a.w, sizeof(key.addr));
	key.port = port;
	key.protocol = ctx->protocol;
	key.family = a.family;
	svc = bpf_map_lookup_elem(&lb_services, &key);
	if (!svc)
		return 1;
	if (svc->count == 0) {
		/* No endpoints: refuse now, as kube-proxy's REJECT does, rather than let the client time out. */
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	if (svc->flags & SLUICE_LB_F_AFFINITY) {
		now = bpf_ktime_get_ns();
		akey.netns_cookie = bpf_get_netns_cookie(ctx);
		__builtin_memcpy(akey.addr, key.addr, sizeof(akey.addr));
		akey.port = key.port;
		akey.protocol = key.protocol;
		akey.family = key.family;
		aff = bpf_map_lookup_elem(&lb_affinity, &akey);
		/* A remembered backend that is gone (its id freed) is chosen again; see sync.ts for ids. */
		if (aff && now - aff->last_used_ns < (__u64)svc->affinity_timeout_sec * NSEC_PER_SEC) {
			id = aff->backend_id;
			backend = bpf_map_lookup_elem(&lb_backends, &id);
		}
	}
	if (!backend) {
		key.slot = (bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&lb_services, &key);
		if (!slot)
			return 1;
		id = slot->backend_id;
		backend = bpf_map_lookup_elem(&lb_backends, &id);
		if (!backend)
			return 1;
	}
	if (now) {
		aval.last_used_ns = now;
		aval.backend_id = id;
		bpf_map_update_elem(&lb_affinity, &akey, &aval, BPF_ANY);
	}
	if (write_addr(ctx, v6, a.mapped, backend->addr, backend->family, backend->port) < 0)
		return 1;
	rkey.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rkey.addr, backend->addr, sizeof(rkey.addr));
	rkey.port = backend->port;
	rkey.family = backend->family;
	__builtin_memcpy(rval.addr, a.w, sizeof(rval.addr));
	rval.port = port;
	rval.family = a.family;
	bpf_map_update_elem(&lb_revnat, &rkey, &rval, BPF_ANY);
	flows = bpf_map_lookup_elem(&lb_backend_flows, &id);
	if (flows)
		*flows += 1;
	return 1;
}

/* recvmsg and getpeername: a backend this socket was translated to shows as the frontend. */
static __always_inline int reverse(struct bpf_sock_addr *ctx, int v6)
{
	struct lb_revnat_key rkey = {};
	struct lb_revnat_value *rval;
	struct lb_addr a;

	read_addr(ctx, v6, &a);
	rkey.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rkey.addr, a.w, sizeof(rkey.addr));
	rkey.port = (__u16)ctx->user_port;
	rkey.family = a.family;
	rval = bpf_map_lookup_elem(&lb_revnat, &rkey);
	if (rval)
		write_addr(ctx, v6, a.mapped, rval->addr, rval->family, rval->port);
	return 1;
}

SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 0);
}

SEC("cgroup/connect6")
int lb_connect6(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 1);
}

SEC("cgroup/sendmsg4")
int lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 0);
}

SEC("cgroup/sendmsg6")
int lb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 1);
}

SEC("cgroup/recvmsg4")
int lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 0);
}

SEC("cgroup/recvmsg6")
int lb_recvmsg6(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 1);
}

SEC("cgroup/getpeername4")
int lb_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 0);
}

SEC("cgroup/getpeername6")
int lb_getpeername6(struct bpf_sock_addr *ctx)
{
	return reverse(ctx, 1);
}
