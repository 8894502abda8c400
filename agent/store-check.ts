/**
 * A state store at start (ipam.db, endpoints.db, numbering.db): one SQLite
 * cannot read fully is never opened as if it were empty. It is moved aside
 * (with its -wal and -shm) under a timestamped name, kept for the operator,
 * and the caller rebuilds what it held from what the node still holds.
 * A disk fault (full, read-only, I/O) is no verdict on the file and is thrown
 * as it comes (ipam/store.ts storeDamage).
 */
import fs from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { closeQuietly, storeDamage } from '../ipam/store.ts';
import { errorMessage } from '../lib/errors.ts';
import { newerSchemaRefusal, readStoreSchema } from '../lib/store-schema.ts';

/**
 * SQLite's extended codes of a read that failed: a bad sector, or no file
 * at all where the store should be (a directory). The file is at fault, not
 * the moment (a full disk never fails a read), so it is moved aside and
 * rebuilt like a damaged one rather than failing every start.
 */
const UNREADABLE_CODES = new Set([266, 522]); // SQLITE_IOERR_READ, SQLITE_IOERR_SHORT_READ

/** An in-memory store: what is opened when a damaged file cannot be moved aside. */
export const NO_FILE = ':memory:';
const STORE_FILE_SUFFIXES = ['', '-wal', '-shm'];

/** A store file as found at start. */
export interface StoreCheck {
  /** The file to open: the configured one, or an in-memory store when a damaged one could not be moved aside. */
  file: string;
  /** The configured file did not exist. */
  missing: boolean;
  /** Why SQLite could not read it fully, or null. */
  damage: string | null;
  /** Where the damaged file was moved, or null. */
  movedTo: string | null;
  /** Set when a damaged file could not be moved aside, or a newer agent's store cannot be used: why, and what to do. */
  refusal: string | null;
  /** The file was written by a newer agent this one cannot use (lib/store-schema.ts): left untouched, refusal says what to do. */
  newer: boolean;
}

/** A store found damaged at start, as `sluice status` and the metrics report it. */
export interface StoreRecovery {
  /** 'ipam', 'endpoints' or 'numbering'. */
  store: string;
  file: string;
  damage: string;
  /** Where the damaged file is kept, or null when it could not be moved. */
  movedTo: string | null;
  /** What was rebuilt, in words (filled in by the rebuild). */
  rebuilt: string;
  /** ISO time it was found. */
  at: string;
}

/** storeDamage, with a store that cannot be read at all counted as damaged. */
function unreadableOrDamage(file: string): string | null {
  try {
    return storeDamage(file);
  } catch (err: unknown) {
    if (UNREADABLE_CODES.has((err as { errcode?: unknown }).errcode as number)) return `unreadable: ${errorMessage(err)}`;
    throw err;
  }
}

/** The schema mark of a readable store, read without changing it. */
function schemaOf(file: string): ReturnType<typeof readStoreSchema> {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return readStoreSchema(db);
  } finally {
    closeQuietly(db);
  }
}

/** The damaged-file name for `file` found at `now`: `<file>.damaged-<ISO time>`. */
export function damagedName(file: string, now: Date): string {
  return `${file}.damaged-${now.toISOString().replace(/[:.]/g, '-')}`;
}

/**
 * Checks the store at `file` before it is opened; a damaged one is moved
 * aside and logged as "<label> store <file> is damaged (<why>): moved aside
 * to <where>; <what.rebuilding>". When it cannot be moved, the check says to
 * open an in-memory store, and its refusal says what is refused meanwhile
 * (what.refused) and what to do. A store of a newer schema than
 * what.schemaVersion that this agent may not use is left untouched, and the
 * check says so the same way (newer).
 */
export function prepareStore(file: string, label: string, what: { rebuilding: string; refused: string; schemaVersion: number }, log: (msg: string) => void, now = new Date()): StoreCheck {
  const check: StoreCheck = { file, missing: !fs.existsSync(file), damage: null, movedTo: null, refusal: null, newer: false };
  if (check.missing) return check;
  // SQLite opens an empty file as an empty store; the agent's never is one (WAL mode writes the header at once).
  check.damage = fs.statSync(file).size === 0 ? 'zero-length file' : unreadableOrDamage(file);
  if (check.damage === null) {
    const refusal = newerSchemaRefusal(file, label, schemaOf(file), what.schemaVersion);
    if (refusal !== null) {
      Object.assign(check, { file: NO_FILE, refusal, newer: true });
      log(refusal);
    }
    return check;
  }
  const aside = damagedName(file, now);
  try {
    for (const suffix of STORE_FILE_SUFFIXES) if (fs.existsSync(file + suffix)) fs.renameSync(file + suffix, aside + suffix);
    check.movedTo = aside;
    log(`${label} store ${file} is damaged (${check.damage}): moved aside to ${aside}; ${what.rebuilding}`);
  } catch (err: unknown) {
    check.file = NO_FILE;
    check.refusal =
      `the ${label} store ${file} is damaged (${check.damage}) and could not be moved aside (${errorMessage(err)})` +
      `: ${what.refused}. Make ${fs.existsSync(file) ? 'its directory' : 'the state directory'} writable, or move ${file}* away by hand, then restart the agent`;
    log(check.refusal);
  }
  return check;
}
