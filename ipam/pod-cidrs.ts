/**
 * Where the node's pod CIDRs come from and what a valid set is: at most one
 * IPv4 and one IPv6 prefix (dual stack, so they cannot overlap), as
 * Kubernetes assigns them in Node.spec.podCIDRs. Pure: no I/O.
 */
import { parseCidr } from '../lib/cidr.ts';

/** The part of a Kubernetes Node that IPAM reads. */
export interface NodePodCidrSpec {
  spec?: { podCIDR?: unknown; podCIDRs?: unknown };
}

/**
 * The pod CIDRs of a Node object: spec.podCIDRs, else spec.podCIDR, else [].
 * This is the seam for the Kubernetes datastore: the agent calls it with the
 * Node named by --node-name, and falls back to its flags when it returns [].
 */
export function podCIDRsOfNode(node: NodePodCidrSpec | null | undefined): string[] {
  const list = node?.spec?.podCIDRs;
  if (Array.isArray(list) && list.length > 0) return list.filter((c): c is string => typeof c === 'string');
  const single = node?.spec?.podCIDR;
  return typeof single === 'string' && single !== '' ? [single] : [];
}

/** Returns the canonical CIDR texts; throws when a prefix is malformed or a family repeats. */
export function validatePodCIDRs(cidrs: string[]): string[] {
  if (cidrs.length === 0) throw new Error('IPAM needs at least one pod CIDR');
  const parsed = cidrs.map(parseCidr);
  const seen = new Map<number, string>();
  for (const c of parsed) {
    const other = seen.get(c.family);
    if (other !== undefined) {
      throw new Error(`pod CIDRs ${other} and ${c.text} are both IPv${c.family}: give at most one IPv4 and one IPv6 prefix (dual stack)`);
    }
    seen.set(c.family, c.text);
  }
  return parsed.map((c) => c.text);
}
