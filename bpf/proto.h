/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Wire formats and constants the kernel headers cannot give a BPF program (they drag in glibc). Included by datapath.c only. */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

/*
 * linux/if_arp.h drags in glibc headers that do not build for the BPF target,
 * so the few ARP names we need are spelled out here (same values as there).
 */
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

/* Likewise linux/icmp.h (it includes linux/if.h): the ICMP types we read. */
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_REDIRECT 5
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
/* An ICMP error's own header before the packet it quotes: type, code, checksum, 4 more bytes. */
#define ICMP_ERROR_HDR_BYTES 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define NDISC_NEIGHBOUR_SOLICITATION 135
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136
#define ND_OPT_SOURCE_LL_ADDR 1
#define ND_OPT_TARGET_LL_ADDR 2
/* Neighbour advertisement flags: Router, Solicited, Override. */
#define ND_NA_FLAGS_RSO 0xe0

/* A neighbour solicitation or advertisement with one link-layer address option (RFC 4861). */
struct nd_msg_ll {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__u8 flags;         /* advertisements: R, S, O; solicitations: reserved */
	__u8 reserved[3];
	__u8 target[16];
	__u8 opt_type;      /* ND_OPT_*_LL_ADDR */
	__u8 opt_len;       /* in units of 8 bytes: 1 */
	__u8 opt_mac[ETH_ALEN];
} __attribute__((packed));

/* What the ICMPv6 checksum covers: the pseudo-header and the message. */
struct nd_csum_buf {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
	struct nd_msg_ll msg;
} __attribute__((packed));

/* An Ethernet/IPv4 ARP packet: the fixed header and the addresses after it. */
struct arp_ipv4 {
	__be16 ar_hrd;      /* hardware type */
	__be16 ar_pro;      /* protocol type */
	__u8 ar_hln;        /* hardware address length */
	__u8 ar_pln;        /* protocol address length */
	__be16 ar_op;       /* request or reply */
	__u8 sha[ETH_ALEN]; /* sender hardware address */
	__be32 spa;         /* sender protocol address */
	__u8 tha[ETH_ALEN]; /* target hardware address */
	__be32 tpa;         /* target protocol address */
} __attribute__((packed));

#endif
