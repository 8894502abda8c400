/**
 * Address arithmetic for IPv4 and IPv6 prefixes, on bigints so both families
 * share one code path. Pure: no I/O.
 */
import net from 'node:net';
import { parseIp } from './ip-bytes.ts';

/** A parsed prefix such as 10.244.0.0/24 or fd00:10::/64. */
export interface Cidr {
  family: 4 | 6;
  /** The network address as a number. */
  base: bigint;
  prefixLength: number;
  /** Total addresses in the prefix, network and broadcast included. */
  size: bigint;
  text: string;
}

const BITS = { 4: 32, 6: 128 } as const;

/** Parses "addr/len"; throws on a malformed prefix or host bits set. */
export function parseCidr(text: string): Cidr {
  return parsePrefix(text, false);
}

/**
 * Parses "addr/len" with any host bits masked off: 10.0.0.1/24 is 10.0.0.0/24,
 * as Kubernetes reads an ipBlock (its API server accepts host bits there).
 * Throws on a malformed prefix.
 */
export function parseCidrMasked(text: string): Cidr {
  return parsePrefix(text, true);
}

function parsePrefix(text: string, maskHostBits: boolean): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? '' : text.slice(0, slash);
  const lenText = slash < 0 ? '' : text.slice(slash + 1);
  const family = net.isIPv4(addr) ? 4 : net.isIPv6(addr) ? 6 : 0;
  if (family === 0 || !/^\d{1,3}$/.test(lenText)) throw new Error(`invalid CIDR '${text}': expected address/prefix-length`);
  const bits = BITS[family];
  const prefixLength = Number(lenText);
  if (prefixLength > bits) throw new Error(`invalid CIDR '${text}': prefix length above ${bits}`);
  const value = ipToBigInt(addr);
  const hostBits = BigInt(bits - prefixLength);
  const base = (value >> hostBits) << hostBits;
  if (base !== value && !maskHostBits) throw new Error(`invalid CIDR '${text}': host bits are set (did you mean ${bigIntToIp(base, family)}/${prefixLength}?)`);
  return { family, base, prefixLength, size: 1n << hostBits, text: `${bigIntToIp(base, family)}/${prefixLength}` };
}

/** Converts an IPv4 or IPv6 address to a number; throws on anything else. */
export function ipToBigInt(ip: string): bigint {
  // ip-bytes is pure text/bytes conversion (no kernel), shared with the datapath's map encoders.
  return parseIp(ip).bytes.reduce((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
}

/** Converts a number back to the canonical text of an address of the family. */
export function bigIntToIp(value: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((value >> s) & 0xffffn).toString(16));
  // Let node produce the RFC 5952 short form.
  return new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** True when the address lies inside the prefix. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const family = net.isIPv4(ip) ? 4 : net.isIPv6(ip) ? 6 : 0;
  if (family !== cidr.family) return false;
  const v = ipToBigInt(ip);
  return v >= cidr.base && v < cidr.base + cidr.size;
}

/** An inclusive range of addresses of one family, e.g. from a reserved-range flag. */
export interface AddressRange {
  family: 4 | 6;
  first: bigint;
  last: bigint;
  text: string;
}

/** Parses "CIDR", "first-last" or a single address; throws naming the text when malformed. */
export function parseAddressRange(text: string): AddressRange {
  const trimmed = text.trim();
  if (trimmed.includes('/')) {
    const c = parseCidr(trimmed);
    return { family: c.family, first: c.base, last: c.base + c.size - 1n, text: c.text };
  }
  const [a = '', b, extra] = trimmed.split('-');
  const fa = addressFamily(a);
  const fb = b === undefined ? fa : addressFamily(b);
  if (extra !== undefined || fa === 0 || fb !== fa) {
    throw new Error(`invalid address range '${text}': expected a CIDR, an address, or first-last of one family`);
  }
  const first = ipToBigInt(a);
  const last = b === undefined ? first : ipToBigInt(b);
  if (last < first) throw new Error(`invalid address range '${text}': ${b} comes before ${a}`);
  return { family: fa, first, last, text: b === undefined ? a : `${a}-${b}` };
}

/** The address family of a textual address, or 0 when it is not one. */
export function addressFamily(ip: string): 0 | 4 | 6 {
  return net.isIPv4(ip) ? 4 : net.isIPv6(ip) ? 6 : 0;
}
