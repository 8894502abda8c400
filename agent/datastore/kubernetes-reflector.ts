/**
 * One Kubernetes collection kept in memory: list (paged), then watch from the
 * list's resourceVersion with bookmarks; a watch that ends is resumed from the
 * last resourceVersion seen (an event's or a bookmark's), a 410 Gone lists
 * again, and any other failure retries with capped exponential backoff.
 *
 * Why not @kubernetes/client-node's ListWatch (cache.ts, 2.0.1), which the
 * agent already uses for its config and its Watch streams: at the cluster
 * sizes the agent must serve (tens of thousands of pods, every node watching
 * all of them) it falls short in four ways this file needs:
 * - its list is one unpaged LIST of the whole collection (no limit/continue),
 *   which the API server has to build and send in one piece;
 * - it never asks for bookmarks (allowWatchBookmarks), so after a quiet spell
 *   its resourceVersion is stale and a reconnect ends in 410 and a full relist;
 * - on any error other than 410 or a client timeout it calls its error
 *   handlers and stops for good: the caller must notice and restart it, which
 *   is this file's backoff loop again;
 * - it keeps every object whole; a reflector keeps the projection the agent
 *   reads (labels, IPs, node, phase), and an update that changes nothing in it
 *   causes no policy sync.
 * The watch stream itself is the library's (KubeClient.watch uses its Watch).
 */
import type { KubeObject } from './local.ts';
import { isGone, type KubeClient } from './kubernetes-client.ts';
import { errorMessage } from '../../lib/errors.ts';

const PAGE_SIZE = 500;
const INITIAL_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** The server ends each watch after a random time in [min, 2·min): clients reconnect spread out. */
const WATCH_TIMEOUT_MIN_SEC = 300;
/** A watch silent for this long past its server timeout is a dead connection. */
const WATCH_IDLE_MARGIN_MS = 30_000;
/** A watch that ended sooner than this without any event counts as a failure (backoff, no hot loop). */
const MIN_HEALTHY_WATCH_MS = 1_000;

/** What a reflector needs besides the client. */
export interface ReflectorOptions {
  /** Collection path, e.g. /api/v1/pods. */
  path: string;
  /** Kind of the items (list items carry none). */
  kind: string;
  apiVersion: string;
  /** Keeps the fields the agent reads; objects whose projection is unchanged cause no change. */
  project: (obj: KubeObject) => KubeObject;
  /** Called after every change of the contents. */
  onChange: () => void;
  /** Called for each object added, changed or deleted, as it is applied (before: the object it replaced, if any). */
  onItemChange?: (key: string, before: KubeObject | undefined, after: KubeObject | undefined) => void;
  log: (msg: string) => void;
  watchTimeoutMinSec?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Counters, for status output and tests. */
export interface ReflectorStats {
  lists: number;
  relistsAfterGone: number;
  watches: number;
  bookmarks: number;
  failures: number;
}

function keyOf(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

/** Comparable form of an object: everything but its resourceVersion. */
function fingerprint(obj: KubeObject): string {
  const { resourceVersion: _rv, ...meta } = obj.metadata as KubeObject['metadata'] & { resourceVersion?: string };
  return JSON.stringify({ ...obj, metadata: meta });
}


/** A list+watch loop over one collection. */
export class Reflector {
  readonly items = new Map<string, KubeObject>();
  readonly stats: ReflectorStats = { lists: 0, relistsAfterGone: 0, watches: 0, bookmarks: 0, failures: 0 };
  resourceVersion = '';
  synced = false;
  private readonly client: KubeClient;
  private readonly opts: ReflectorOptions;
  private stopped = false;
  private abort: AbortController | null = null;
  private wake: (() => void) | null = null;
  private syncedWaiters: (() => void)[] = [];

  constructor(client: KubeClient, opts: ReflectorOptions) {
    this.client = client;
    this.opts = opts;
  }

  /** Starts the loop; it runs until stop(). */
  start(): void {
    void this.run();
  }

  /** Ends the loop and its watch. */
  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  /** Resolves once the first list is in. */
  whenSynced(): Promise<void> {
    return this.synced ? Promise.resolve() : new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  /** Puts an object fetched directly (not through the watch) unless one is already known. */
  addIfAbsent(obj: KubeObject): boolean {
    const key = keyOf(obj);
    if (this.items.has(key)) return false;
    this.put(obj);
    this.opts.onChange();
    return true;
  }

  private put(raw: KubeObject): boolean {
    // The collection's own kind and apiVersion strings, not each watch event's copy: one pair for every object kept.
    const obj = this.opts.project({ ...raw, kind: this.opts.kind, apiVersion: this.opts.apiVersion });
    const key = keyOf(obj);
    const before = this.items.get(key);
    // Compared on arrival rather than kept per object: a kept fingerprint cost about 400 bytes per pod.
    const changed = before === undefined || fingerprint(before) !== fingerprint(obj);
    this.items.set(key, obj);
    if (changed) this.opts.onItemChange?.(key, before, obj);
    return changed;
  }

  private remove(raw: KubeObject): boolean {
    const key = keyOf(raw);
    const before = this.items.get(key);
    if (!this.items.delete(key)) return false;
    this.opts.onItemChange?.(key, before, undefined);
    return true;
  }

  private async run(): Promise<void> {
    let needList = true;
    let backoffMs = this.opts.initialBackoffMs ?? INITIAL_BACKOFF_MS;
    const maxBackoffMs = this.opts.maxBackoffMs ?? MAX_BACKOFF_MS;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.list();
          needList = false;
          backoffMs = this.opts.initialBackoffMs ?? INITIAL_BACKOFF_MS;
        }
        const started = Date.now();
        const outcome = await this.watchOnce();
        if (outcome.gone) {
          this.stats.relistsAfterGone++;
          this.opts.log(`watch ${this.opts.path}: resourceVersion ${this.resourceVersion} is gone (410): listing again`);
          needList = true;
          continue;
        }
        if (outcome.error === null && (outcome.events > 0 || Date.now() - started >= MIN_HEALTHY_WATCH_MS)) {
          backoffMs = this.opts.initialBackoffMs ?? INITIAL_BACKOFF_MS;
          continue;
        }
        if (this.stopped) break;
        this.stats.failures++;
        this.opts.log(`watch ${this.opts.path}: ${outcome.error === null ? 'closed at once' : errorMessage(outcome.error)}; again in ${backoffMs} ms`);
      } catch (err: unknown) {
        if (this.stopped) break;
        if (isGone(err)) {
          // A continue token or resourceVersion that expired while listing: list from scratch.
          this.stats.relistsAfterGone++;
          needList = true;
          continue;
        }
        this.stats.failures++;
        this.opts.log(`list ${this.opts.path}: ${errorMessage(err)}; again in ${backoffMs} ms`);
      }
      await this.sleep(backoffMs * (0.8 + Math.random() * 0.4));
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Lists every page, then replaces the contents in one step. */
  private async list(): Promise<void> {
    const fresh = new Map<string, KubeObject>();
    let cont = '';
    let rv = '';
    do {
      const page = await this.client.getJson<{ metadata?: { resourceVersion?: string; continue?: string }; items?: KubeObject[] }>(this.opts.path, {
        limit: PAGE_SIZE,
        continue: cont,
      });
      for (const item of page.items ?? []) fresh.set(keyOf(item), item);
      cont = page.metadata?.continue ?? '';
      rv = page.metadata?.resourceVersion ?? '';
    } while (cont !== '' && !this.stopped);
    this.stats.lists++;
    let changed = !this.synced;
    for (const key of [...this.items.keys()]) if (!fresh.has(key)) changed = this.remove(this.items.get(key)!) || changed;
    for (const item of fresh.values()) changed = this.put(item) || changed;
    this.resourceVersion = rv;
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncedWaiters.splice(0)) resolve();
    }
    if (changed) this.opts.onChange();
  }

  /** One watch stream from the current resourceVersion, until it ends. */
  private async watchOnce(): Promise<{ gone: boolean; error: unknown; events: number }> {
    const minSec = this.opts.watchTimeoutMinSec ?? WATCH_TIMEOUT_MIN_SEC;
    const timeoutSec = Math.floor(minSec * (1 + Math.random()));
    let gone = false;
    let events = 0;
    this.stats.watches++;
    return new Promise((resolve) => {
      let controller: AbortController | null = null;
      let finished = false;
      const finish = (error: unknown) => {
        if (finished) return;
        finished = true;
        controller?.abort();
        this.abort = null;
        resolve({ gone: gone || isGone(error), error: gone ? null : error, events });
      };
      const onEvent = (type: string, obj: Record<string, unknown>) => {
        if (finished) return;
        const meta = (obj.metadata ?? {}) as { resourceVersion?: string };
        switch (type) {
          case 'ADDED':
          case 'MODIFIED':
            events++;
            if (meta.resourceVersion) this.resourceVersion = meta.resourceVersion;
            if (this.put(obj as unknown as KubeObject)) this.opts.onChange();
            break;
          case 'DELETED':
            events++;
            if (meta.resourceVersion) this.resourceVersion = meta.resourceVersion;
            if (this.remove(obj as unknown as KubeObject)) this.opts.onChange();
            break;
          case 'BOOKMARK':
            events++;
            this.stats.bookmarks++;
            if (meta.resourceVersion) this.resourceVersion = meta.resourceVersion;
            break;
          case 'ERROR': {
            const status = obj as { code?: number; reason?: string; message?: string };
            if (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone') {
              gone = true;
              finish(null);
            } else finish(new Error(`watch error ${status.code ?? '?'} ${status.reason ?? ''}: ${status.message ?? ''}`));
            break;
          }
          default:
            break;
        }
      };
      this.client
        .watch(
          this.opts.path,
          { allowWatchBookmarks: true, resourceVersion: this.resourceVersion, timeoutSeconds: timeoutSec },
          onEvent,
          (err: unknown) => finish(err ?? null),
          timeoutSec * 1000 + WATCH_IDLE_MARGIN_MS,
        )
        .then(
          (c) => {
            controller = c;
            if (finished || this.stopped) c.abort();
            else this.abort = c;
          },
          (err: unknown) => finish(err),
        );
    });
  }
}
