/**
 * Wires the datastore, the endpoint store and the datapath sync together: a
 * sync re-reads the datastore (cheaply, only when files changed), compiles
 * and writes the diff. With the incremental compiler the sync takes the
 * datastore's changes object by object (its change feed) instead of a whole
 * view, so one watch event costs what it changes. Runs on every endpoint change, on demand
 * (POST /v1/datastore/sync), when the datastore or the host's addresses
 * change, and periodically as a safety net.
 */
import type { DatapathMaps } from '../../datapath/loader.ts';
import type { AwaitingLabels, Endpoint } from '../../contract/api-types.ts';
import type { ChangeFeed } from '../datastore/change-feed.ts';
import { clusterChanges, clusterView, nodeAddresses, policyErrors, type ClusterObjects, type PolicyError } from '../datastore/cluster-view.ts';
import type { Datastore } from '../datastore/datastore.ts';
import { DatapathSync, type SyncStats } from './maps.ts';
import { hostAddresses } from '../routing/host-addresses.ts';
import type { NumberingStore } from './numbering-store.ts';
import { errorMessage } from '../../lib/errors.ts';

const WATCH_INTERVAL_MS = 500;
/**
 * A pushed change waits this long for the ones right behind it: a policy
 * deleted and created again (kubectl replace --force, a GitOps sync) then
 * lands in one sync, and the pod is never unisolated in between.
 */
const COALESCE_MS = 50;
/**
 * Pod events need no such wait (nothing about them is deleted and created
 * again): the first after a quiet spell is synced at once, and under churn
 * the events that arrive during one sync (and this gap after it) are the
 * next sync's batch. A pod event then waits at most this gap plus one sync,
 * and the agent syncs at most every this many ms whatever the churn.
 */
const MIN_SYNC_GAP_MS = 20;
/** Under churn, one log line per this many ms sums up the syncs since the last. */
const SYNC_LOG_INTERVAL_MS = 1_000;
const HOST_ADDRESS_INTERVAL_MS = 5_000;

/** Told of every sync; propagationMs is set when the sync carried a datastore change (change noticed → maps written). */
export type SyncListener = (stats: SyncStats, propagationMs: number | null) => void;

/** The policy side of the agent. */
export class PolicyState {
  readonly datastore: Datastore;
  readonly sync: DatapathSync;
  private hostAddrs: string[] = [];
  private endpoints: () => Endpoint[] = () => [];
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private pending: NodeJS.Timeout | null = null;
  /** The pending sync waits for pod events only (no COALESCE_MS). */
  private pendingPodsOnly = false;
  /** performance.now() when the last sync ended. */
  private lastSyncEndedMs = -Infinity;
  lastSync: SyncStats | null = null;
  /** The error of the last sync when it failed (the maps may lag the datastore); null after one succeeds. */
  syncError: string | null = null;
  /** The NetworkPolicies of the last sync that cannot be compiled as written (they fail closed: policy/policy-check.ts). */
  policyErrors: PolicyError[] = [];
  /** The endpoints of the last sync isolated both ways until the datastore delivers their pod and namespace (policy/unknown-labels.ts). */
  awaitingLabels: AwaitingLabels[] = [];
  /** Wall-clock ms when the last sync finished (0 before the first). */
  lastSyncAtMs = 0;
  revision = 0;
  private readonly syncListeners = new Set<SyncListener>();
  /** The datastore's changes for the incremental compiler; null: every sync reads the whole view. */
  private readonly feed: ChangeFeed | null;
  /** Read again only when the datastore hands over a new list (it keeps a list until its kind changes). */
  private readonly derived = { policies: null as ClusterObjects['networkPolicies'] | null, errors: [] as PolicyError[], nodes: null as ClusterObjects['nodes'] | null, nodeAddresses: [] as string[] };

  constructor(datastore: Datastore, maps: DatapathMaps, numbering: NumberingStore, serviceCidrs: string[] = []) {
    this.datastore = datastore;
    this.sync = new DatapathSync(maps, numbering, serviceCidrs);
    this.feed = this.sync.takesChanges() ? (datastore.changes?.() ?? null) : null;
  }

  /** Reads the host's addresses once; call before the first sync. */
  async init(listEndpoints: () => Endpoint[]): Promise<void> {
    this.endpoints = listEndpoints;
    this.hostAddrs = await hostAddresses();
  }

  /**
   * Re-reads the datastore and writes what changed for these endpoints.
   * noticedAtMs (performance.now()) is when a caller saw the datastore change.
   */
  apply(endpoints: Endpoint[], noticedAtMs?: number): SyncStats {
    const startedMs = noticedAtMs ?? performance.now();
    let changed: boolean;
    try {
      changed = this.datastore.refresh() || noticedAtMs !== undefined;
      const objects = this.datastore.objects();
      const d = this.derived;
      if (d.policies !== objects.networkPolicies) Object.assign(d, { policies: objects.networkPolicies, errors: policyErrors(objects) });
      if (d.nodes !== objects.nodes) Object.assign(d, { nodes: objects.nodes, nodeAddresses: nodeAddresses(objects) });
      this.policyErrors = d.errors;
      const changes = this.feed?.take() ?? null;
      try {
        this.lastSync = changes
          ? this.sync.applyChanges(clusterChanges(changes), objects.isolateUnknownPods === true, endpoints, this.hostAddrs, d.nodeAddresses)
          : this.sync.apply(clusterView(objects), endpoints, this.hostAddrs, d.nodeAddresses);
      } catch (err) {
        // The compiler may hold part of what it took: the next sync reads the whole view.
        this.feed?.resync();
        throw err;
      }
      const waiting = new Set(this.sync.endpointsAwaitingLabels());
      this.awaitingLabels = waiting.size === 0 ? [] : endpoints.filter((e) => waiting.has(e.id)).map((e) => ({ endpointId: e.id, namespace: e.namespace, pod: e.pod }));
    } catch (err) {
      this.syncError = errorMessage(err);
      throw err;
    }
    // Entries the kernel refused leave the node fail-closed but not in line with the datastore: not ready.
    this.syncError = this.lastSync.failed.length > 0 ? `map writes failed: ${this.lastSync.failed.join('; ')}` : null;
    this.lastSyncAtMs = Date.now();
    this.revision++;
    this.lastSyncEndedMs = performance.now();
    const propagationMs = changed ? this.lastSyncEndedMs - startedMs : null;
    for (const listener of this.syncListeners) listener(this.lastSync, propagationMs);
    return this.lastSync;
  }

  /** Calls listener after every sync (e.g. the metrics); returns its unsubscribe. */
  onSync(listener: SyncListener): () => void {
    this.syncListeners.add(listener);
    return () => this.syncListeners.delete(listener);
  }

  /** This node's addresses as last read. */
  hostAddresses(): string[] {
    return this.hostAddrs;
  }

  /** The identity the last sync gave an endpoint (0 before). */
  identityOf(endpointId: number): number {
    return this.sync.state()?.endpoints.find((e) => e.endpointId === endpointId)?.identity ?? 0;
  }

  /** Starts watching the datastore and the host's addresses; log gets a line per change applied. */
  watch(log: (msg: string) => void): void {
    const summary = { syncs: 0, written: 0, deleted: 0, ms: 0, loggedAtMs: -Infinity };
    const syncIfChanged = () => {
      if (this.stopped) return;
      try {
        const noticedAtMs = performance.now();
        // A sync the kernel refused part of is tried again on every tick until it goes through.
        if (!this.datastore.refresh() && this.syncError === null) return;
        const stats = this.apply(this.endpoints(), noticedAtMs);
        Object.assign(summary, { syncs: summary.syncs + 1, written: summary.written + stats.written, deleted: summary.deleted + stats.deleted, ms: summary.ms + stats.durationMs });
        if (this.lastSyncEndedMs - summary.loggedAtMs >= SYNC_LOG_INTERVAL_MS) {
          const syncs = summary.syncs > 1 ? ` (${summary.syncs} syncs)` : '';
          log(`datastore changed: ${summary.written} map entries written, ${summary.deleted} deleted in ${summary.ms.toFixed(1)} ms${syncs}`);
          Object.assign(summary, { syncs: 0, written: 0, deleted: 0, ms: 0, loggedAtMs: this.lastSyncEndedMs });
        }
        if (stats.failed.length > 0) log(`datastore sync incomplete (retrying): ${stats.failed.join('; ')}`);
      } catch (err: unknown) {
        // A timer must never take the agent down; the next tick retries, and status says not ready meanwhile.
        this.syncError = errorMessage(err);
        log(`datastore sync failed (retrying): ${errorMessage(err)}`);
      }
    };
    // A datastore that pushes (Kubernetes watches) is applied shortly after the event; the poll stays as a safety net.
    const schedule = (delayMs: number, podsOnly: boolean) => {
      if (this.pending) clearTimeout(this.pending);
      this.pendingPodsOnly = podsOnly;
      this.pending = setTimeout(() => {
        this.pending = null;
        syncIfChanged();
      }, delayMs);
      this.pending.unref();
    };
    this.datastore.onChange?.(() => {
      if (this.stopped) return;
      if (this.feed?.onlyPods() !== true) {
        // Anything but pods waits COALESCE_MS from the first such change (later ones do not push it further).
        if (!this.pending || this.pendingPodsOnly) schedule(COALESCE_MS, false);
        return;
      }
      if (!this.pending) schedule(Math.max(0, this.lastSyncEndedMs + MIN_SYNC_GAP_MS - performance.now()), true);
    });
    this.timers.push(
      setInterval(syncIfChanged, WATCH_INTERVAL_MS),
      setInterval(() => {
        hostAddresses().then(
          (addrs) => {
            if (addrs.join() === this.hostAddrs.join()) return;
            this.hostAddrs = addrs;
            this.apply(this.endpoints());
            log(`host addresses changed: ${addrs.join(', ')}`);
          },
          (err: unknown) => log(`list host addresses: ${errorMessage(err)}`),
        );
      }, HOST_ADDRESS_INTERVAL_MS),
    );
    for (const t of this.timers) t.unref();
  }

  /** Stops the watchers. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.pending) clearTimeout(this.pending);
  }
}
