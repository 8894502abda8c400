/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The source a node's source NAT hid. Every address of this node has the
 * host identity, which a pod's ingress policy always lets in (kubelet's
 * probes need that). A NodePort with externalTrafficPolicy: Cluster, as
 * kube-proxy writes it, masquerades the client to this node's address: any
 * pod, of this node or another, would get that pass too. So when a new flow
 * to a pod comes from the host, to_pod asks the node's own conntrack
 * (bpf_skb_ct_lookup, the nf_conntrack kfunc) whether it was source-NATed,
 * and if so, judges it as the client it was before. Included by datapath.c
 * only.
 */
#ifndef SLUICE_MASQUERADE_H
#define SLUICE_MASQUERADE_H

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>

/* enum ip_conntrack_dir, which no UAPI header carries. */
#define SLUICE_CT_DIR_ORIGINAL 0
#define SLUICE_CT_DIR_MAX 2

/* The nf_conntrack fields read, relocated against the running kernel's BTF (CO-RE). */
struct nf_conntrack_man {
	union nf_inet_addr u3;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
} __attribute__((preserve_access_index));

struct nf_conn {
	unsigned long status;
	struct nf_conntrack_tuple_hash tuplehash[SLUICE_CT_DIR_MAX];
} __attribute__((preserve_access_index));

/* The kfunc's options (the 12-byte form every kernel since 5.18 takes). */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
};

#define SLUICE_CT_OPTS_BYTES 12
#define SLUICE_CURRENT_NETNS (-1)

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple__sz,
					 struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

/*
 * The identity of a flow's client before this node's source NAT, for a packet
 * that arrived as from the host (f: the packet as to_pod sees it, after the
 * NAT). The node's conntrack knows the flow by its reply, from the pod back
 * to the translated source. Host when nothing translated the source (the node
 * itself, kubelet): that keeps its pass.
 */
static __noinline __u32 masqueraded_identity(struct __sk_buff *skb, const struct flow *f)
{
	struct bpf_ct_opts opts = { .netns_id = SLUICE_CURRENT_NETNS, .l4proto = f->protocol };
	struct bpf_sock_tuple tuple = {};
	union nf_inet_addr orig = {};
	struct nf_conn *ct;
	__u32 size;

	if (f->protocol != IPPROTO_TCP && f->protocol != IPPROTO_UDP)
		return SLUICE_ID_HOST;
	if (f->family == SLUICE_FAMILY_IPV4) {
		__builtin_memcpy(&tuple.ipv4.saddr, f->daddr, 4);
		__builtin_memcpy(&tuple.ipv4.daddr, f->saddr, 4);
		tuple.ipv4.sport = f->dport;
		tuple.ipv4.dport = f->sport;
		size = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, f->daddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, f->saddr, 16);
		tuple.ipv6.sport = f->dport;
		tuple.ipv6.dport = f->sport;
		size = sizeof(tuple.ipv6);
	}
	ct = bpf_skb_ct_lookup(skb, &tuple, size, &opts, SLUICE_CT_OPTS_BYTES);
	if (!ct)
		return SLUICE_ID_HOST;
	if (!(ct->status & IPS_SRC_NAT)) {
		bpf_ct_release(ct);
		return SLUICE_ID_HOST;
	}
	orig = ct->tuplehash[SLUICE_CT_DIR_ORIGINAL].tuple.src.u3;
	bpf_ct_release(ct);
	/* A client the ipcache does not know is the world's; the host again (a host process's flow) is the host. */
	return lookup_identity(f->family, (const __u8 *)&orig);
}

#endif
