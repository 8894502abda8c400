/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Comparing MACs and addresses without memcmp, and telling IPv6 address kinds apart. Included by datapath.c only. */
#ifndef SLUICE_ADDR_H
#define SLUICE_ADDR_H

/* clang 14 turns __builtin_memcmp into a call to an undefined memcmp: compare by hand. */
static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* The pod's own IPv4 address, as stored in struct endpoint_info (network order). */
static __always_inline __be32 endpoint_ipv4(const struct endpoint_info *ep)
{
	__be32 addr;

	__builtin_memcpy(&addr, ep->ipv4, sizeof(addr));
	return addr;
}

static __always_inline int addr_equal(const __u8 *a, const __u8 *b, int len)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		if (i < len)
			diff |= a[i] ^ b[i];
	return diff == 0;
}

/* ::, the source of duplicate address detection. */
static __always_inline int ipv6_unspecified(const __u8 *addr)
{
	__u8 any = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		any |= addr[i];
	return any == 0;
}

static __always_inline int ipv6_link_local(const __u8 *addr)
{
	return addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80;
}

/* fe80::/10 and the unspecified address: what neighbour discovery uses before an address is up. */
static __always_inline int ipv6_link_local_or_unspecified(const __u8 *addr)
{
	return ipv6_link_local(addr) || ipv6_unspecified(addr);
}

/*
 * Destinations no router forwards: link-local unicast (fe80::/10) and
 * link-scope multicast (ffx2::/16, e.g. solicited-node, all-routers, MLDv2).
 */
static __always_inline int ipv6_on_link_destination(const __u8 *addr)
{
	return ipv6_link_local(addr) || (addr[0] == 0xff && (addr[1] & 0x0f) == 0x02);
}

#endif
