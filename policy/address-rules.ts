/**
 * Peers selected by address (ipBlock, and named ports resolved per remote pod)
 * for the cidr_policy LPM map. The longest inserted prefix containing an
 * address must carry exactly the rules that apply to that address, so every
 * block and every except is inserted, each with the union of the ports of the
 * rules whose block contains it and none of whose excepts do. Pure.
 */
import { parseCidr, parseCidrMasked, type Cidr } from '../lib/cidr.ts';

/** One rule over addresses: a block minus excepts, allowing these ports. */
export interface AddressRule {
  cidr: string;
  except: string[];
  /** Canonical port specs (see compile.ts), or ['*'] for every port and protocol. */
  ports: string[];
}

/** A prefix to insert with the ports allowed to addresses whose longest match it is. */
export interface AddressPrefix {
  family: 4 | 6;
  address: string;
  prefixLength: number;
  /** Sorted, de-duplicated; empty means "nothing allowed" (an except carving out a hole). */
  ports: string[];
}

/**
 * An ipBlock as Kubernetes reads it: host bits masked off the block and its
 * excepts. Throws, naming the prefix, when one is no CIDR at all.
 */
export function parseIpBlock(block: { cidr: string; except?: string[] }): { cidr: string; except: string[] } {
  return { cidr: parseCidrMasked(String(block.cidr)).text, except: (block.except ?? []).map((x) => parseCidrMasked(String(x)).text) };
}

/**
 * parseIpBlock, or null for a block that is no CIDR: such a peer allows
 * nothing (the API server rejects it; a datastore that did not must not make
 * the whole policy, or every other one, fail).
 */
export function normalizeIpBlock(block: { cidr: string; except?: string[] }): { cidr: string; except: string[] } | null {
  try {
    return parseIpBlock(block);
  } catch {
    return null;
  }
}

function contains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefixLength > inner.prefixLength) return false;
  const shift = BigInt((outer.family === 4 ? 32 : 128) - outer.prefixLength);
  return inner.base >> shift === outer.base >> shift;
}

/** Resolves overlapping blocks and excepts into the prefixes to insert. */
export function addressPrefixes(rules: AddressRule[]): AddressPrefix[] {
  const parsed = rules.map((r) => ({ cidr: parseCidr(r.cidr), except: r.except.map(parseCidr), ports: r.ports }));
  const boundaries = new Map<string, Cidr>();
  for (const r of parsed) {
    boundaries.set(r.cidr.text, r.cidr);
    // An except outside its block means nothing (the API server rejects it anyway).
    for (const x of r.except) if (contains(r.cidr, x)) boundaries.set(x.text, x);
  }
  const out: AddressPrefix[] = [];
  for (const prefix of boundaries.values()) {
    const ports = new Set<string>();
    for (const r of parsed) {
      if (contains(r.cidr, prefix) && !r.except.some((x) => contains(x, prefix))) for (const p of r.ports) ports.add(p);
    }
    const [address] = prefix.text.split('/') as [string];
    out.push({ family: prefix.family, address, prefixLength: prefix.prefixLength, ports: ports.has('*') ? ['*'] : [...ports].sort() });
  }
  return out.sort((a, b) => (a.address === b.address ? a.prefixLength - b.prefixLength : a.address < b.address ? -1 : 1));
}
