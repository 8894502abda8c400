/**
 * The allocation store: SQLite (node:sqlite) in WAL mode, one IMMEDIATE
 * transaction per allocation or release, so a kill -9 at any moment leaves
 * either the whole allocation (addresses, cursor, free list) or none of it.
 */
import { DatabaseSync } from 'node:sqlite';
import fs from 'node:fs';
import path from 'node:path';
import { ipToBigInt } from '../lib/cidr.ts';
import { errorMessage } from '../lib/errors.ts';
import { systemBootClock, type BootClock, type BootTime } from '../lib/boot-clock.ts';
import { markStoreSchema, newerSchemaRefusal, readStoreSchema } from '../lib/store-schema.ts';

/** Who holds an address: the CNI attachment key plus the pod it belongs to. */
export interface AllocationKey {
  containerID: string;
  ifname: string;
  namespace?: string;
  pod?: string;
  /** The pod's netns path when the caller knows it; lets reconciliation see a vanished container. */
  netns?: string;
}

/** One address held by one attachment. */
export interface AllocationRecord {
  ip: string;
  /** The pod CIDR the address was allocated from. */
  pool: string;
  containerID: string;
  ifname: string;
  namespace: string;
  pod: string;
  netns: string;
  /** Milliseconds since the epoch: for people; grace periods read createdBoot. */
  createdAt: number;
  /** When it was made on the boot-time clock (lib/boot-clock.ts): what grace periods are measured from. */
  createdBoot: BootTime;
}

/** How hard a COMMIT waits for the disk; see STORE_SYNCHRONOUS. */
export type SynchronousMode = 'FULL' | 'NORMAL';

/**
 * The IPAM store's synchronous mode: NORMAL, measured against FULL in bench/ipam-alloc.ts. In WAL mode a
 * COMMIT with NORMAL has written the transaction to the WAL file (the kernel's
 * page cache) before it returns; only the fsync is deferred to checkpoints.
 * A kill -9 of the agent therefore loses nothing that was committed: the
 * kernel still writes the page cache out. Only a power loss or kernel crash
 * can drop the last transactions (never corrupt the file), and then the node
 * has rebooted: every pod netns is gone, the runtime runs ADD again for every
 * pod sandbox, and reconciliation releases what the old boot held. An
 * allocation lost that way was held by a container that no longer exists, so
 * no address ends up with two live holders. FULL would add an fsync to every
 * ADD and DEL for a guarantee nothing here needs: measured on the dev VM
 * (bench/ipam-alloc.ts), the store alone does 3.4k allocations/s with FULL
 * and 14.5k/s with NORMAL, i.e. FULL adds ~0.23 ms per allocation to an API
 * round trip of 0.34 ms (p50), and far more on disks with slow flushes.
 * The crash tests (test/ipam-crash.test.ts) run against this setting.
 */
export const STORE_SYNCHRONOUS: SynchronousMode = 'NORMAL';

/** How long a writer waits for another connection's lock before failing. */
const BUSY_TIMEOUT_MS = 5_000;

/** Schema version written to PRAGMA user_version after migrations (lib/store-schema.ts). */
export const IPAM_SCHEMA_VERSION = 2;
/** The oldest schema that can use a store of this version: version 2 added columns version 1 code does not fill. */
const OLDEST_READER = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS allocations (
  ip TEXT PRIMARY KEY,
  pool TEXT NOT NULL,
  container_id TEXT NOT NULL,
  ifname TEXT NOT NULL,
  namespace TEXT NOT NULL DEFAULT '',
  pod TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  UNIQUE (container_id, ifname, pool)
);
-- The pool's fresh-address frontier: the highest offset handed out since the
-- pool was first used. Addresses above it have never been handed out.
CREATE TABLE IF NOT EXISTS pool_cursor (
  pool TEXT PRIMARY KEY,
  last_offset TEXT NOT NULL
);
`;

/** Columns and tables added by schema version 1 (sortable address key, netns, released FIFO). */
const SCHEMA_V1 = `
CREATE UNIQUE INDEX IF NOT EXISTS allocations_by_ip_key ON allocations (ip_key);
CREATE INDEX IF NOT EXISTS allocations_by_attachment ON allocations (container_id, ifname);
-- Released addresses in release order: once a pool's frontier reaches its end,
-- the address released longest ago is reused first.
CREATE TABLE IF NOT EXISTS released (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ip_key TEXT NOT NULL UNIQUE,
  ip TEXT NOT NULL,
  released_at INTEGER NOT NULL
);
`;

/**
 * Columns added by schema version 2: the allocation's time on the boot-time
 * clock. Rows of older stores get the time of the migration, so their grace
 * period starts again then: at most one grace period late, never early.
 */
function addBootTimeColumns(db: DatabaseSync, columns: Set<string>, clock: BootClock): void {
  if (!columns.has('created_boot_id')) db.exec("ALTER TABLE allocations ADD COLUMN created_boot_id TEXT NOT NULL DEFAULT ''");
  if (!columns.has('created_boot_ms')) db.exec('ALTER TABLE allocations ADD COLUMN created_boot_ms INTEGER NOT NULL DEFAULT 0');
  const now = clock.now();
  db.prepare("UPDATE allocations SET created_boot_id = ?, created_boot_ms = ? WHERE created_boot_id = ''").run(now.bootId, now.ms);
}

/** Opens (creating if needed) an SQLite file in WAL mode (FULL unless told otherwise); the directory is made root-only. */
export function openStore(file: string, synchronous: SynchronousMode = 'FULL'): DatabaseSync {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(file);
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS};`);
  return db;
}

/** Opens the IPAM store at `file`, creating or migrating its schema; throws naming the file when it is newer than this code. */
export function openIpamStore(file: string, synchronous: SynchronousMode = STORE_SYNCHRONOUS, clock: BootClock = systemBootClock): DatabaseSync {
  const db = openStore(file, synchronous);
  try {
    inTransaction(db, () => {
      const version = Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
      const refusal = newerSchemaRefusal(file, 'IPAM', readStoreSchema(db), IPAM_SCHEMA_VERSION);
      if (refusal !== null) throw new Error(refusal);
      // A newer store this agent may use is used as it is: nothing below removes or changes what a newer agent added.
      db.exec(SCHEMA);
      const columns = new Set(db.prepare('PRAGMA table_info(allocations)').all().map((c) => String(c.name)));
      if (!columns.has('ip_key')) db.exec('ALTER TABLE allocations ADD COLUMN ip_key TEXT');
      if (!columns.has('netns')) db.exec("ALTER TABLE allocations ADD COLUMN netns TEXT NOT NULL DEFAULT ''");
      addBootTimeColumns(db, columns, clock);
      const update = db.prepare('UPDATE allocations SET ip_key = ? WHERE ip = ?');
      for (const row of db.prepare('SELECT ip FROM allocations WHERE ip_key IS NULL').all()) {
        update.run(ipKeyOfText(String(row.ip)), String(row.ip));
      }
      db.exec(SCHEMA_V1);
      if (version <= IPAM_SCHEMA_VERSION) markStoreSchema(db, { version: IPAM_SCHEMA_VERSION, oldestReader: OLDEST_READER });
    });
  } catch (err: unknown) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * SQLite result codes that say the disk or the moment failed, not the file:
 * a store that cannot be opened for one of these is not damaged (the state
 * disk's fault handling owns them) and must never be moved aside.
 */
const NOT_DAMAGE_CODES = new Set([3, 5, 6, 7, 8, 10, 13, 14]); // PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN

/**
 * Why SQLite cannot read the store at `file` fully (the open failing, a
 * schema it cannot parse, `PRAGMA integrity_check` not 'ok'), or null when it
 * can, or when there is no file. Throws a disk fault (full, read-only, I/O)
 * as it comes: that is no verdict on the file.
 */
export function storeDamage(file: string): string | null {
  if (!fs.existsSync(file)) return null;
  let db: DatabaseSync | undefined;
  try {
    // Read-only: the check must not checkpoint a WAL into a damaged file, nor delete it; both are evidence.
    db = new DatabaseSync(file, { readOnly: true });
    const rows = db.prepare('PRAGMA integrity_check').all().map((r) => String(r.integrity_check));
    if (rows.length === 1 && rows[0] === 'ok') return null;
    return `integrity_check: ${rows.slice(0, 3).join('; ').replace(/\s+/g, ' ')}${rows.length > 3 ? ` (and ${rows.length - 3} more)` : ''}`;
  } catch (err: unknown) {
    const code = (err as { errcode?: unknown }).errcode;
    if (typeof code === 'number' && NOT_DAMAGE_CODES.has(code & 0xff)) throw err;
    return errorMessage(err);
  } finally {
    if (db) closeQuietly(db);
  }
}

/** Closes db, ignoring the error of a handle on a failed disk: the caller opens a new one, which is what counts. */
export function closeQuietly(db: DatabaseSync): void {
  try {
    db.close();
  } catch {
    // nothing to do: the file is reopened by path
  }
}

/** Runs fn inside BEGIN IMMEDIATE ... COMMIT, rolling back when it throws. */
export function inTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err: unknown) {
    // SQLite has already rolled back after some errors (SQLITE_FULL); a second ROLLBACK would hide the first error.
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

/**
 * A text key that sorts like the address: family digit and 32 hex digits.
 * SQLite integers stop at 63 bits, IPv6 offsets do not.
 */
export function ipKey(family: 4 | 6, value: bigint): string {
  return `${family}:${value.toString(16).padStart(32, '0')}`;
}

/** ipKey of an address written as text. */
export function ipKeyOfText(ip: string): string {
  return ipKey(ip.includes(':') ? 6 : 4, ipToBigInt(ip));
}

/** Maps a row of the allocations table to a record. */
export function toRecord(row: Record<string, unknown>): AllocationRecord {
  return {
    ip: String(row.ip),
    pool: String(row.pool),
    containerID: String(row.container_id),
    ifname: String(row.ifname),
    namespace: String(row.namespace),
    pod: String(row.pod),
    netns: String(row.netns ?? ''),
    createdAt: Number(row.created_at),
    createdBoot: { bootId: String(row.created_boot_id ?? ''), ms: Number(row.created_boot_ms ?? 0) },
  };
}
