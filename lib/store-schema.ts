/**
 * Schema versions of the agent's SQLite stores, and who may use a store a
 * newer agent wrote: what a rollback meets (issue 33: downgrade in place).
 *
 * Each store carries its schema version in `PRAGMA user_version` and, in a
 * one-row table, the oldest schema version that can still read *and write*
 * it correctly (`oldest_reader`). A newer agent whose change only adds what
 * older code ignores (a table, a column with a default) keeps oldest_reader
 * where it was, and an older agent uses the store as it is, without
 * migrating it down or marking it as its own. A store whose oldest_reader is
 * above this agent's version (or a newer one that does not say) is refused:
 * never read as if it were the old layout, never changed. As Cilium does with
 * state it cannot restore, the agent then serves on from what the kernel
 * holds and tells what to do, rather than exiting into a crash loop.
 */
import type { DatabaseSync } from 'node:sqlite';

/** The table that holds oldest_reader. */
const COMPAT_TABLE = 'sluice_schema_compat';

/** A store's schema as written in it. */
export interface StoreSchema {
  version: number;
  /** The oldest schema version that may use the store; null when it does not say (stores written before this mark). */
  oldestReader: number | null;
}

/** Reads the schema mark of an open store. */
export function readStoreSchema(db: DatabaseSync): StoreSchema {
  const version = Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  const table = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?").get(COMPAT_TABLE);
  const row = table ? (db.prepare(`SELECT oldest_reader FROM ${COMPAT_TABLE} LIMIT 1`).get() as { oldest_reader: number } | undefined) : undefined;
  return { version, oldestReader: row ? Number(row.oldest_reader) : null };
}

/** May an agent of schema `mine` use a store of this schema (older, equal, or newer and compatible)? */
export function usableBy(schema: StoreSchema, mine: number): boolean {
  return schema.version <= mine || (schema.oldestReader !== null && schema.oldestReader <= mine);
}

/**
 * Why an agent of schema `mine` must not use the store at `file`, with what
 * to do; null when it may.
 */
export function newerSchemaRefusal(file: string, label: string, schema: StoreSchema, mine: number): string | null {
  if (usableBy(schema, mine)) return null;
  const needs = schema.oldestReader !== null ? `it needs an agent of schema ${schema.oldestReader} or later` : 'it does not say which older agents can use it';
  return (
    `the ${label} store ${file} was written by a newer Sluice agent (schema ${schema.version}; ${needs}; this agent's is ${mine}), so this agent leaves it untouched and serves ` +
    'the running pods from what the kernel holds, but hands out no address. Roll the agent forward to the version that wrote it; ' +
    `or, to stay on this version, drain the node, move ${file}* aside and restart the agent`
  );
}

/**
 * Marks a store this agent migrated as its own: version and oldest reader.
 * A store written by a newer agent (usable by this one) keeps its mark.
 * Call inside the migration's transaction where there is one.
 */
export function markStoreSchema(db: DatabaseSync, mark: { version: number; oldestReader: number }): void {
  const found = readStoreSchema(db);
  // Written only when it changes: an open must not need a writable disk (agent/state-disk.ts).
  if (found.version > mark.version || (found.version === mark.version && found.oldestReader === mark.oldestReader)) return;
  db.exec(`CREATE TABLE IF NOT EXISTS ${COMPAT_TABLE} (oldest_reader INTEGER NOT NULL)`);
  db.exec(`DELETE FROM ${COMPAT_TABLE}`);
  db.prepare(`INSERT INTO ${COMPAT_TABLE} (oldest_reader) VALUES (?)`).run(mark.oldestReader);
  db.exec(`PRAGMA user_version = ${mark.version}`);
}
