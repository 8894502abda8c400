/**
 * A pod address pool: a CIDR minus the addresses a pod must never get
 * (network, gateway, broadcast). Pure: no I/O.
 */
import { bigIntToIp, parseCidr, type Cidr } from './cidr.ts';

/** The smallest IPv4 pool that leaves room for a pod: /30 gives two usable addresses. */
const MAX_IPV4_PREFIX_LENGTH = 30;
const MAX_IPV6_PREFIX_LENGTH = 126;

/** A pool of pod addresses carved from one CIDR. */
export interface Pool {
  cidr: Cidr;
  /** The gateway the pods route through: the first address after the network address. */
  gateway: string;
  /** Offsets from the network address that may be handed out: [first, last]. */
  firstOffset: bigint;
  lastOffset: bigint;
}

/** Builds a pool from a CIDR text; throws when the prefix is too small to hold a pod. */
export function makePool(text: string): Pool {
  const cidr = parseCidr(text);
  const max = cidr.family === 4 ? MAX_IPV4_PREFIX_LENGTH : MAX_IPV6_PREFIX_LENGTH;
  if (cidr.prefixLength > max) throw new Error(`pod CIDR ${cidr.text} is too small: use a prefix length of at most /${max}`);
  // IPv4 loses its broadcast address; IPv6 has none.
  const lastOffset = cidr.family === 4 ? cidr.size - 2n : cidr.size - 1n;
  return { cidr, gateway: addressAt(cidr, 1n), firstOffset: 2n, lastOffset };
}

/** Number of addresses the pool can hand out. */
export function poolCapacity(pool: Pool): bigint {
  return pool.lastOffset - pool.firstOffset + 1n;
}

/** The address at an offset from the network address. */
export function addressAt(cidr: Cidr, offset: bigint): string {
  return bigIntToIp(cidr.base + offset, cidr.family);
}
