/**
 * A pod address pool: a CIDR minus the addresses a pod must never get
 * (network, gateway, broadcast, and reserved ranges from config). Offsets are
 * counted from the network address. Pure: no I/O.
 */
import { bigIntToIp, parseCidr, type AddressRange, type Cidr } from '../lib/cidr.ts';

/** The smallest IPv4 pool that leaves room for a pod: /30 gives two usable addresses. */
const MAX_IPV4_PREFIX_LENGTH = 30;
const MAX_IPV6_PREFIX_LENGTH = 126;

/** An inclusive range of offsets inside a pool. */
export interface OffsetRange {
  first: bigint;
  last: bigint;
}

/** A pool of pod addresses carved from one CIDR. */
export interface Pool {
  cidr: Cidr;
  /** The gateway the pods route through: the first address after the network address. */
  gateway: string;
  /** Offsets from the network address that may be handed out: [first, last], minus `reserved`. */
  firstOffset: bigint;
  lastOffset: bigint;
  /** Reserved offsets inside [firstOffset, lastOffset]: sorted, merged, never empty ranges. */
  reserved: OffsetRange[];
  /** Reserved ranges from config that overlap this pool, as given. */
  reservedText: string[];
}

/** Why an address of a pool's CIDR may not be handed out, or null when it may. */
export type NotAllocatableReason = 'network' | 'gateway' | 'broadcast' | 'reserved';

/** Builds a pool from a CIDR text and the reserved ranges (those of other families or outside are ignored); throws when the prefix is too small to hold a pod. */
export function makePool(text: string, reserved: AddressRange[] = []): Pool {
  const cidr = parseCidr(text);
  const max = cidr.family === 4 ? MAX_IPV4_PREFIX_LENGTH : MAX_IPV6_PREFIX_LENGTH;
  if (cidr.prefixLength > max) throw new Error(`pod CIDR ${cidr.text} is too small: use a prefix length of at most /${max}`);
  const firstOffset = 2n;
  // IPv4 loses its broadcast address; IPv6 has none (its last address is an ordinary one).
  const lastOffset = cidr.family === 4 ? cidr.size - 2n : cidr.size - 1n;
  const clipped: OffsetRange[] = [];
  const reservedText: string[] = [];
  for (const r of reserved) {
    if (r.family !== cidr.family) continue;
    const first = max2(r.first - cidr.base, firstOffset);
    const last = min2(r.last - cidr.base, lastOffset);
    if (r.last < cidr.base || r.first >= cidr.base + cidr.size) continue;
    reservedText.push(r.text);
    if (first <= last) clipped.push({ first, last });
  }
  return { cidr, gateway: addressAt(cidr, 1n), firstOffset, lastOffset, reserved: mergeRanges(clipped), reservedText };
}

/** Number of addresses the pool can hand out: the usable span minus reserved offsets. */
export function poolCapacity(pool: Pool): bigint {
  const reserved = pool.reserved.reduce((n, r) => n + (r.last - r.first + 1n), 0n);
  return pool.lastOffset - pool.firstOffset + 1n - reserved;
}

/** The address at an offset from the network address. */
export function addressAt(cidr: Cidr, offset: bigint): string {
  return bigIntToIp(cidr.base + offset, cidr.family);
}

/** The offset of a numeric address in the pool's CIDR, or null when outside it. */
export function offsetOf(pool: Pool, value: bigint): bigint | null {
  const offset = value - pool.cidr.base;
  return offset >= 0n && offset < pool.cidr.size ? offset : null;
}

/** Why the offset may not be handed out, or null when it may. */
export function notAllocatable(pool: Pool, offset: bigint): NotAllocatableReason | null {
  if (offset === 0n) return 'network';
  if (offset === 1n) return 'gateway';
  if (offset > pool.lastOffset) return 'broadcast';
  return reservedRangeAt(pool, offset) ? 'reserved' : null;
}

/** The smallest allocatable offset at or after `offset`, or null when there is none up to the end of the pool. */
export function nextAllocatable(pool: Pool, offset: bigint): bigint | null {
  let o = offset < pool.firstOffset ? pool.firstOffset : offset;
  // Ranges are sorted and merged: one jump past the range holding o lands on a free offset or the end.
  const r = reservedRangeAt(pool, o);
  if (r) o = r.last + 1n;
  return o <= pool.lastOffset ? o : null;
}

function reservedRangeAt(pool: Pool, offset: bigint): OffsetRange | undefined {
  // Binary search: a pool may carry many reserved ranges.
  let lo = 0;
  let hi = pool.reserved.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = pool.reserved[mid]!;
    if (offset < r.first) hi = mid - 1;
    else if (offset > r.last) lo = mid + 1;
    else return r;
  }
  return undefined;
}

function mergeRanges(ranges: OffsetRange[]): OffsetRange[] {
  const sorted = [...ranges].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  const out: OffsetRange[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev && r.first <= prev.last + 1n) prev.last = max2(prev.last, r.last);
    else out.push({ ...r });
  }
  return out;
}

function max2(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function min2(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
