/**
 * Security identities: every distinct (namespace, namespace labels, pod
 * labels) gets a number, the same on every recompute for as long as the agent
 * keeps its numbering. Pure: numbering is handed in.
 */

/** What an identity stands for. */
export interface IdentityLabels {
  namespace: string;
  podLabels: Record<string, string>;
  namespaceLabels: Record<string, string>;
}

/** Hands out stable numbers for keys (identities, address selectors). */
export interface Numbering {
  /** The identity for a canonical label-set key (>= Identity.FIRST_POD of lib/identity-numbers.ts). */
  identity(key: string): number;
  /** The selector for a canonical port-set key (> Identity.FIRST_CIDR_SELECTOR). */
  selector(key: string): number;
}

function sortedEntries(labels: Record<string, string>): [string, string][] {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The canonical key of a label set: equal sets give equal keys, whatever the order. */
export function identityKey(labels: IdentityLabels): string {
  return JSON.stringify([labels.namespace, sortedEntries(labels.podLabels), sortedEntries(labels.namespaceLabels)]);
}

/** Numbering held in memory: counts up from the first free number. */
export class MemoryNumbering implements Numbering {
  private readonly identities = new Map<string, number>();
  private readonly selectors = new Map<string, number>();
  private nextIdentity: number;
  private nextSelector: number;

  constructor(firstIdentity: number, firstSelector: number) {
    this.nextIdentity = firstIdentity;
    this.nextSelector = firstSelector;
  }

  identity(key: string): number {
    let n = this.identities.get(key);
    if (n === undefined) this.identities.set(key, (n = this.nextIdentity++));
    return n;
  }

  selector(key: string): number {
    let n = this.selectors.get(key);
    if (n === undefined) this.selectors.set(key, (n = this.nextSelector++));
    return n;
  }
}
