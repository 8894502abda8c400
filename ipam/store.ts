/**
 * The allocation store: SQLite (node:sqlite) in WAL mode, one IMMEDIATE
 * transaction per allocation or release, so a kill -9 at any moment leaves
 * either the whole allocation or none of it.
 */
import { DatabaseSync } from 'node:sqlite';
import fs from 'node:fs';
import path from 'node:path';

/** Who holds an address: the CNI attachment key plus the pod it belongs to. */
export interface AllocationKey {
  containerID: string;
  ifname: string;
  namespace?: string;
  pod?: string;
}

/** One address held by one attachment. */
export interface AllocationRecord {
  ip: string;
  pool: string;
  containerID: string;
  ifname: string;
  namespace: string;
  pod: string;
  createdAt: number;
}

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
-- The offset handed out last in each pool: allocation continues after it, so a
-- just-released address is the last to be reused.
CREATE TABLE IF NOT EXISTS pool_cursor (
  pool TEXT PRIMARY KEY,
  last_offset TEXT NOT NULL
);
`;

/** Opens (creating if needed) the store at `file`; the directory is made root-only. */
export function openStore(file: string): DatabaseSync {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(file);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
  db.exec(SCHEMA);
  return db;
}

/** Runs fn inside BEGIN IMMEDIATE ... COMMIT, rolling back when it throws. */
export function inTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err: unknown) {
    db.exec('ROLLBACK');
    throw err;
  }
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
    createdAt: Number(row.created_at),
  };
}
