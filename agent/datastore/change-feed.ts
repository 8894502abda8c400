/**
 * A datastore's changes, object by object, for a consumer that keeps its own
 * state (the incremental policy compiler): the datastore records each pod,
 * namespace and policy that came, changed or went as it applies it (a watch
 * event, a rewritten file), and the consumer takes what accumulated since its
 * last take. One event then costs the consumer that object, not a walk and a
 * diff of the whole cluster. An object changed many times between two takes
 * is handed over once, as it is now: under churn, a take is a batch.
 */
import type { KubeObject } from './local.ts';
import type { ClusterObjects } from './cluster-view.ts';

/** The kinds the policy compiler reads object by object. */
export type FeedKind = 'pods' | 'namespaces' | 'networkPolicies';

/** Objects changed since the last take, by kind and key (namespace/name, or name): the object now, or undefined when gone. */
export type ObjectChanges = Record<FeedKind, Map<string, KubeObject | undefined>>;

function emptyChanges(): ObjectChanges {
  return { pods: new Map(), namespaces: new Map(), networkPolicies: new Map() };
}

/** One consumer's pending changes. */
export class ChangeFeed {
  private pending = emptyChanges();
  /** True until the consumer has read a whole view, and after anything was lost: take() then says so. */
  private resyncNeeded = true;

  /** Records that an object came or changed (object) or went (undefined). */
  record(kind: FeedKind, key: string, object: KubeObject | undefined): void {
    if (this.resyncNeeded) return; // a whole view is read next anyway
    this.pending[kind].set(key, object);
  }

  /**
   * The changes since the last take, then forgotten; null when the consumer
   * must read the whole view instead (its first read, or after resync()).
   * Changes made from then on are recorded.
   */
  take(): ObjectChanges | null {
    if (this.resyncNeeded) {
      this.resyncNeeded = false;
      this.pending = emptyChanges();
      return null;
    }
    const out = this.pending;
    this.pending = emptyChanges();
    return out;
  }

  /** Makes the next take() ask for a whole view (the consumer lost what it took, e.g. its apply failed). */
  resync(): void {
    this.resyncNeeded = true;
    this.pending = emptyChanges();
  }

  /** True when what waits to be taken is pods and nothing else (a sync need not wait for a policy's delete and create to pair up). */
  onlyPods(): boolean {
    return !this.resyncNeeded && this.pending.pods.size > 0 && this.pending.namespaces.size === 0 && this.pending.networkPolicies.size === 0;
  }

  /** Objects waiting to be taken. */
  size(): number {
    return this.pending.pods.size + this.pending.namespaces.size + this.pending.networkPolicies.size;
  }
}

/** The feeds of one datastore: every subscriber sees every change. */
export class ChangeFeeds {
  private readonly feeds: ChangeFeed[] = [];

  /** A new feed; its first take() asks for a whole view. */
  subscribe(): ChangeFeed {
    const feed = new ChangeFeed();
    this.feeds.push(feed);
    return feed;
  }

  record(kind: FeedKind, key: string, object: KubeObject | undefined): void {
    for (const feed of this.feeds) feed.record(kind, key, object);
  }
}

/** A list of a kind's objects in the order of their sort keys, built only when asked and kept until the kind changes. */
export class SortedList {
  private cached: KubeObject[] | null = null;
  private readonly source: () => Iterable<[string, KubeObject | null]>;

  /** source: each object with its sort key (null objects are left out). */
  constructor(source: () => Iterable<[string, KubeObject | null]>) {
    this.source = source;
  }

  /** The list (the same array until invalidate()). */
  get(): KubeObject[] {
    if (this.cached) return this.cached;
    const keyed: [string, KubeObject][] = [];
    for (const [key, obj] of this.source()) if (obj) keyed.push([key, obj]);
    keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return (this.cached = keyed.map((k) => k[1]));
  }

  invalidate(): void {
    this.cached = null;
  }
}

/**
 * The cluster's objects read through sorted lists: each kind's getter builds
 * (or reuses) its list only when read, so a view handed out costs nothing
 * until used. `extra` adds fixed fields (e.g. isolateUnknownPods).
 */
export function lazyClusterObjects<K extends 'pods' | 'namespaces' | 'networkPolicies' | 'nodes' | 'services'>(
  lists: Record<K, SortedList>,
  extra: { isolateUnknownPods?: boolean } = {},
): ClusterObjects {
  const view = { ...extra } as ClusterObjects;
  for (const kind of Object.keys(lists) as K[]) {
    Object.defineProperty(view, kind, { enumerable: true, get: () => lists[kind].get() });
  }
  return view;
}

