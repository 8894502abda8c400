/**
 * The agent's datastore: one interface over the local directory of objects
 * (the embedded default) and the Kubernetes API (datastore-kubernetes.ts).
 * Everything above it is backend-agnostic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EMPTY_OBJECTS, type ClusterObjects } from './cluster-view.ts';
import { LocalDatastore } from './local.ts';

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

/** The local datastore directory; re-parses only when a file was added, removed or rewritten. */
export class LocalDirDatastore implements Datastore {
  private readonly store: LocalDatastore;
  private fingerprint = '';
  private current: ClusterObjects = EMPTY_OBJECTS;

  constructor(dir: string) {
    this.store = new LocalDatastore(dir);
  }

  refresh(): boolean {
    const print = fingerprintOf(this.store.dir);
    if (print === this.fingerprint) return false;
    this.fingerprint = print;
    this.current = {
      pods: this.store.list('Pod'),
      namespaces: this.store.list('Namespace'),
      networkPolicies: this.store.list('NetworkPolicy'),
      nodes: this.store.list('Node'),
      services: this.store.list('Service'),
    };
    return true;
  }

  objects(): ClusterObjects {
    return this.current;
  }

  describe(): string {
    return `local:${this.store.dir}`;
  }
}

/** Names, sizes and modification times of every object file: changes whenever an object does. */
function fingerprintOf(dir: string): string {
  const parts: string[] = [];
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
        if (st) parts.push(`${p}:${st.size}:${st.mtimeMs}:${st.ino}`);
      }
    }
  };
  walk(dir);
  return parts.sort().join('\n');
}
