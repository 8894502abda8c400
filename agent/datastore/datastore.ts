/**
 * The agent's datastore: one interface over the local directory of objects
 * (the embedded default) and the Kubernetes API (datastore-kubernetes.ts).
 * Everything above it is backend-agnostic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ChangeFeeds, SortedList, lazyClusterObjects, type ChangeFeed, type FeedKind } from './change-feed.ts';
import { EMPTY_OBJECTS, type ClusterObjects } from './cluster-view.ts';
import YAML from 'yaml';
import { LocalDatastore, type KubeObject } from './local.ts';

/** A source of cluster objects. */
export interface Datastore {
  /** Re-reads the source; true when anything changed since the last read. */
  refresh(): boolean;
  /** The objects as of the last refresh. */
  objects(): ClusterObjects;
  /** Says where the objects come from, for status output. */
  describe(): string;
  /** False until the first complete read (a remote store's initial lists); absent: always ready. */
  ready?(): boolean;
  /** Registers a push hook called soon after the objects change; absent: only polling sees changes. */
  onChange?(listener: () => void): void;
  /** Makes sure the pod is known (fetches it when the store has not seen it yet); absent: nothing to fetch. */
  ensurePod?(namespace: string, name: string): Promise<void>;
  /**
   * A new feed of this store's pod, namespace and policy changes, object by
   * object, as refresh() or a watch applies them (change-feed.ts); absent:
   * a consumer reads the whole objects() on every change.
   */
  changes?(): ChangeFeed;
}

/** No datastore: no pods but the local endpoints, no policies. */
export class NoDatastore implements Datastore {
  refresh(): boolean {
    return false;
  }
  objects(): ClusterObjects {
    return EMPTY_OBJECTS;
  }
  describe(): string {
    return 'none';
  }
}

/** The kinds the agent reads from the local directory, by their directory (LocalDatastore's layout). */
const LOCAL_KINDS = { pods: 'pods', namespaces: 'namespaces', networkpolicies: 'networkPolicies', nodes: 'nodes', services: 'services' } as const;
type LocalKind = (typeof LOCAL_KINDS)[keyof typeof LOCAL_KINDS];
const FEED_KINDS: ReadonlySet<LocalKind> = new Set<FeedKind>(['pods', 'namespaces', 'networkPolicies']);

/** One object file as last read: its stamp (size, mtime, inode), its kind (by directory) and what it held. */
interface CachedFile {
  stamp: string;
  kind: LocalKind | undefined;
  object: KubeObject | null;
}

function objectKey(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

/**
 * The local datastore directory. A refresh stats every file (cheap) and
 * parses only the files added or rewritten since the last one: the cost of
 * a change is the files it touched, not the cluster (before, any change
 * re-read and re-parsed every file, about 210 ms at 500 pods).
 */
export class LocalDirDatastore implements Datastore {
  private readonly store: LocalDatastore;
  private readonly files = new Map<string, CachedFile>();
  private readonly feeds = new ChangeFeeds();
  /** Each kind's objects in file order, built when read after the kind changed. */
  private readonly lists: Record<LocalKind, SortedList>;
  private readonly current: ClusterObjects;
  /** Files parsed by the last refresh (for tests and the log). */
  lastParsed = 0;

  constructor(dir: string) {
    this.store = new LocalDatastore(dir);
    const files = this.files;
    function* ofKind(kind: LocalKind): Iterable<[string, KubeObject | null]> {
      for (const [file, cached] of files) if (cached.kind === kind) yield [file, cached.object];
    }
    this.lists = Object.fromEntries(Object.values(LOCAL_KINDS).map((kind) => [kind, new SortedList(() => ofKind(kind))])) as Record<LocalKind, SortedList>;
    this.current = lazyClusterObjects(this.lists);
  }

  /** A file's object came, changed or went: its kind's list is stale, and the feeds hear of it. */
  private fileChanged(before: CachedFile | undefined, after: CachedFile | undefined): void {
    for (const c of [before, after]) if (c?.kind) this.lists[c.kind].invalidate();
    const kind = (after ?? before)!.kind;
    if (!kind || !FEED_KINDS.has(kind)) return;
    const beforeKey = before?.object ? objectKey(before.object) : undefined;
    const afterKey = after?.object ? objectKey(after.object) : undefined;
    if (beforeKey !== undefined && beforeKey !== afterKey) this.feeds.record(kind as FeedKind, beforeKey, undefined);
    if (afterKey !== undefined) this.feeds.record(kind as FeedKind, afterKey, after!.object!);
  }

  refresh(): boolean {
    const seen = new Set<string>();
    let changed = false;
    this.lastParsed = 0;
    for (const { file, stamp } of objectFiles(this.store.dir)) {
      seen.add(file);
      const cached = this.files.get(file);
      if (cached?.stamp === stamp) continue;
      changed = true;
      this.lastParsed++;
      const kind = LOCAL_KINDS[path.relative(this.store.dir, file).split(path.sep)[0] as keyof typeof LOCAL_KINDS] as LocalKind | undefined;
      const next: CachedFile = { stamp, kind, object: readObject(file) };
      this.files.set(file, next);
      this.fileChanged(cached, next);
    }
    for (const [file, cached] of this.files) {
      if (!seen.has(file)) {
        this.files.delete(file);
        this.fileChanged(cached, undefined);
        changed = true;
      }
    }
    return changed;
  }

  objects(): ClusterObjects {
    return this.current;
  }

  changes(): ChangeFeed {
    return this.feeds.subscribe();
  }

  describe(): string {
    return `local:${this.store.dir}`;
  }
}

/** Reads one object file; null when it went away between the listing and the read. */
function readObject(file: string): KubeObject | null {
  try {
    return YAML.parse(fs.readFileSync(file, 'utf8')) as KubeObject;
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Every object file under dir with its stamp: size, modification time and inode change whenever the object does. */
function objectFiles(dir: string): { file: string; stamp: string }[] {
  const out: { file: string; stamp: string }[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.yaml')) {
        const st = fs.statSync(p, { throwIfNoEntry: false });
        if (st) out.push({ file: p, stamp: `${st.size}:${st.mtimeMs}:${st.ino}` });
      }
    }
  };
  walk(dir);
  return out;
}
