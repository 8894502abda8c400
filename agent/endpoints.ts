/**
 * The endpoint manager: the agent's record of every local pod interface,
 * persisted in SQLite. Every change calls back into the datapath sync, which
 * writes the endpoint (with its identity and isolation) and its policy to the
 * maps before the change returns.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { closeQuietly, inTransaction, openStore } from '../ipam/store.ts';
import type { Endpoint, EndpointSpec } from '../contract/api-types.ts';
import type { StateDisk } from './state-disk.ts';
import { markStoreSchema } from '../lib/store-schema.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS endpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  container_id TEXT NOT NULL,
  ifname TEXT NOT NULL,
  spec TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (container_id, ifname)
);`;

/** The endpoint store's schema version (lib/store-schema.ts); an agent of version 1 can use it. */
export const ENDPOINTS_SCHEMA_VERSION = 1;

/** Brings the datapath in line with the endpoints (see agent/policy-sync/maps.ts); says which it could not serve. */
export type SyncEndpoints = (endpoints: Endpoint[]) => { unserved: number[] } | void;

/** A registration the datapath could not take (its endpoint map entries were refused: a full map). A retry may succeed. */
export class EndpointNotServedError extends Error {
  constructor(containerID: string, ifname: string) {
    super(`the datapath refused the endpoint of ${containerID}/${ifname} (a full endpoints or devices map?); try again later`);
    this.name = 'EndpointNotServedError';
  }
}

/** An endpoint record put back after its store was lost (agent/endpoints-recovery.ts), under the id the maps know it by. */
export interface RestoredEndpoint {
  id: number;
  spec: EndpointSpec;
  createdAt: number;
}

/** What an EndpointManager needs besides its store and its sync. */
export interface EndpointManagerOptions {
  /** The state directory's health: a DEL's row deletion waits for a disk that refuses it. */
  disk?: StateDisk;
  /** An endpoint's identity as the policy sync gave it (the policy state knows it, the store does not). */
  identityOf?: (endpointId: number) => number;
}

/** Local endpoints: the store, and the datapath kept in step with it. */
export class EndpointManager {
  private readonly dbFile: string;
  private db!: DatabaseSync;
  private readonly sync: SyncEndpoints;
  private stmts!: Record<string, StatementSync>;
  private readonly disk: StateDisk | undefined;
  /** Endpoints unregistered while the disk refused to delete their rows ("containerID/ifname"): gone for everyone but the store. */
  private readonly forgotten = new Set<string>();

  /** An endpoint's identity as the last policy sync gave it (0 before any). */
  private readonly identityOf: (endpointId: number) => number;

  constructor(dbFile: string, sync: SyncEndpoints, opts: EndpointManagerOptions = {}) {
    this.dbFile = dbFile;
    this.sync = sync;
    this.disk = opts.disk;
    this.identityOf = opts.identityOf ?? (() => 0);
    this.open();
  }

  /** Closes and opens the store again: after its disk was remounted, the old handle still points at the dead one. */
  reopen(): void {
    // An in-memory store (its damaged file could not be moved aside) is all there is: reopened, it would be empty.
    if (this.dbFile === ':memory:') return;
    closeQuietly(this.db);
    this.open();
  }

  private open(): void {
    this.db = openStore(this.dbFile);
    this.db.exec(SCHEMA);
    dropIdentityColumn(this.db);
    markStoreSchema(this.db, { version: ENDPOINTS_SCHEMA_VERSION, oldestReader: 1 });
    this.stmts = {
      upsert: this.db.prepare(
        `INSERT INTO endpoints (container_id, ifname, spec, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (container_id, ifname) DO UPDATE SET spec = excluded.spec RETURNING id`,
      ),
      get: this.db.prepare('SELECT * FROM endpoints WHERE container_id = ? AND ifname = ?'),
      delete: this.db.prepare('DELETE FROM endpoints WHERE container_id = ? AND ifname = ?'),
      list: this.db.prepare('SELECT * FROM endpoints ORDER BY id'),
    };
  }

  /** Records the endpoint and syncs the datapath; returns it with its id and identity. */
  register(spec: EndpointSpec): Endpoint {
    const before = this.stmts.get!.get(spec.containerID, spec.ifname) as { spec: string; created_at: number } | undefined;
    const row = this.stmts.upsert!.get(spec.containerID, spec.ifname, JSON.stringify(spec), Date.now()) as { id: number };
    try {
      // The pod would be dropped (fail closed) with its ADD reported a success: fail the ADD instead.
      if (this.sync(this.list())?.unserved.includes(row.id)) throw new EndpointNotServedError(spec.containerID, spec.ifname);
    } catch (err) {
      // A registration the datapath cannot take leaves nothing behind: the row goes back to what it was.
      if (before) this.stmts.upsert!.get(spec.containerID, spec.ifname, before.spec, before.created_at);
      else this.stmts.delete!.run(spec.containerID, spec.ifname);
      try {
        this.sync(this.list());
      } catch {
        // the periodic sync retries; the caller hears the first error
      }
      throw err;
    }
    return this.list().find((e) => e.id === row.id)!;
  }

  /**
   * Removes the endpoint and syncs the datapath; returns it, or null when
   * unknown. A disk that refuses the row's deletion does not keep the
   * endpoint in the datapath: the deletion waits for the disk (StateDisk).
   */
  unregister(containerID: string, ifname: string): Endpoint | null {
    const key = `${containerID}/${ifname}`;
    const row = this.stmts.get!.get(containerID, ifname) as Record<string, unknown> | undefined;
    if (!row || this.forgotten.has(key)) return null;
    const remove = (): void => {
      this.stmts.delete!.run(containerID, ifname);
      this.forgotten.delete(key);
    };
    if (this.disk) {
      this.forgotten.add(key);
      this.disk.writeOrDefer(`delete the endpoint row of ${key}`, remove);
    } else {
      remove();
    }
    this.sync(this.list());
    return toEndpoint(row, this.identityOf);
  }

  /** Every local endpoint, with the identity the last sync gave it. */
  list(): Endpoint[] {
    const rows = this.stmts.list!.all() as Record<string, unknown>[];
    const live = this.forgotten.size === 0 ? rows : rows.filter((row) => !this.forgotten.has(`${String(row.container_id)}/${String(row.ifname)}`));
    return live.map((row) => toEndpoint(row, this.identityOf));
  }

  /**
   * Puts back records under their ids, in one transaction, without a sync
   * (call before the first). Ids handed out from now on are above idFloor
   * too: the maps may still name ids the records lack.
   */
  restore(records: RestoredEndpoint[], idFloor: number): void {
    inTransaction(this.db, () => {
      const insert = this.db.prepare('INSERT OR IGNORE INTO endpoints (id, container_id, ifname, spec, created_at) VALUES (?, ?, ?, ?, ?)');
      for (const r of records) insert.run(r.id, r.spec.containerID, r.spec.ifname, JSON.stringify(r.spec), r.createdAt);
      // AUTOINCREMENT hands out max(sqlite_sequence.seq, largest id) + 1.
      const seq = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'endpoints'").get() as { seq: number } | undefined;
      if (seq === undefined) this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('endpoints', ?)").run(idFloor);
      else if (seq.seq < idFloor) this.db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'endpoints'").run(idFloor);
    });
  }

  /** Syncs the datapath with the store after a (re)start; returns how many endpoints there are. */
  resync(): number {
    const endpoints = this.list();
    this.sync(endpoints);
    return endpoints.length;
  }


  /** Closes the store. */
  close(): void {
    this.db.close();
  }
}

function toEndpoint(row: Record<string, unknown>, identityOf: (id: number) => number): Endpoint {
  const spec = JSON.parse(String(row.spec)) as EndpointSpec;
  const id = Number(row.id);
  return { ...spec, id, identity: identityOf(id), createdAt: Number(row.created_at) };
}

/**
 * Stores written before the identity left the table had an `identity`
 * column, always 0 and never read (an endpoint's identity is the policy
 * sync's, not the store's): drop it, so that the INSERT above fits them too.
 */
function dropIdentityColumn(db: DatabaseSync): void {
  const columns = db.prepare('SELECT name FROM pragma_table_info(?)').all('endpoints') as { name: string }[];
  if (columns.some((c) => c.name === 'identity')) db.exec('ALTER TABLE endpoints DROP COLUMN identity');
}
