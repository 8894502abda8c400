/**
 * Identity and address-selector numbers, persisted so a restarted agent keeps
 * the numbers the pinned maps already use (and rewrites nothing).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { Identity } from '../../datapath/abi.ts';
import { closeQuietly, inTransaction, openStore } from '../../ipam/store.ts';
import type { Numbering } from '../../policy/identity.ts';
import type { StateDisk } from '../state-disk.ts';
import { markStoreSchema } from '../../lib/store-schema.ts';
import { RESERVE_BLOCK, readReservation, writeReservation, type Reservation } from './numbering-reservation.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS numbering (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  number INTEGER NOT NULL,
  PRIMARY KEY (kind, key)
);`;

/**
 * The key of a row that only holds a number down: no label set or port set
 * has it (theirs are JSON arrays), and an agent of any version loads it as a
 * number in use, so no number up to it is handed out again.
 */
export const FLOOR_KEY = '#numbers-in-use-up-to';

/** The numbering store's schema version (lib/store-schema.ts); an agent of version 1 can use it. */
export const NUMBERING_SCHEMA_VERSION = 1;

/** Numbering backed by SQLite; numbers are never reused. */
export class NumberingStore implements Numbering {
  private readonly dbFile: string;
  private db!: DatabaseSync;
  private insert!: StatementSync;
  private readonly known = { identity: new Map<string, number>(), selector: new Map<string, number>() };
  private readonly next = { identity: Identity.FIRST_POD as number, selector: Identity.FIRST_CIDR_SELECTOR + 1 };

  private readonly disk: StateDisk | undefined;
  /** Where numbers are reserved ahead (numbering-reservation.ts), and how far; none without the file. */
  private readonly reservationFile: string | undefined;
  private reserved: Reservation = { identity: 0, selector: 0 };

  constructor(dbFile: string, disk?: StateDisk, opts: { reservationFile?: string } = {}) {
    this.disk = disk;
    this.dbFile = dbFile;
    this.reservationFile = opts.reservationFile;
    if (this.reservationFile) this.reserved = readReservation(this.reservationFile) ?? this.reserved;
    this.open();
    for (const row of this.db.prepare('SELECT kind, key, number FROM numbering').all() as { kind: 'identity' | 'selector'; key: string; number: number }[]) {
      this.known[row.kind].set(row.key, row.number);
      this.next[row.kind] = Math.max(this.next[row.kind], row.number + 1);
    }
  }

  /**
   * Puts back the numbers of label sets (after the store was lost:
   * agent/numbering-recovery.ts), in one transaction, and holds every number
   * up to the floors, and below the reservation, as used: none is handed
   * out again. Returns the floors it applied.
   */
  restore(identities: ReadonlyMap<string, number>, inMaps: { identity: number; selector: number }): { identity: number; selector: number } {
    const floors = { identity: Math.max(inMaps.identity, this.reserved.identity - 1), selector: Math.max(inMaps.selector, this.reserved.selector - 1) };
    inTransaction(this.db, () => {
      for (const [key, n] of identities) {
        if (this.known.identity.has(key)) continue;
        this.insert.run('identity', key, n);
        this.known.identity.set(key, n);
        this.next.identity = Math.max(this.next.identity, n + 1);
      }
      const floor = this.db.prepare('INSERT INTO numbering (kind, key, number) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET number = max(number, excluded.number)');
      for (const kind of ['identity', 'selector'] as const) {
        floor.run(kind, FLOOR_KEY, floors[kind]);
        this.next[kind] = Math.max(this.next[kind], floors[kind] + 1);
      }
    });
    return floors;
  }

  /** Closes and opens the store again: after its disk was remounted, the old handle still points at the dead one. */
  reopen(): void {
    // An in-memory store (its damaged file could not be moved aside): the numbers are in this.known, a new one would start empty.
    if (this.dbFile === ':memory:') return;
    closeQuietly(this.db);
    this.open();
  }

  private open(): void {
    this.db = openStore(this.dbFile);
    this.db.exec(SCHEMA);
    markStoreSchema(this.db, { version: NUMBERING_SCHEMA_VERSION, oldestReader: 1 });
    this.insert = this.db.prepare('INSERT INTO numbering (kind, key, number) VALUES (?, ?, ?)');
  }

  identity(key: string): number {
    return this.numberFor('identity', key);
  }

  selector(key: string): number {
    return this.numberFor('selector', key);
  }

  /** Moves the reservation past n; a disk that refuses it leaves the old one (tried again with the next number). */
  private reserve(kind: 'identity' | 'selector', n: number): void {
    const next = { ...this.reserved, [kind]: n + RESERVE_BLOCK };
    try {
      writeReservation(this.reservationFile!, next);
      this.reserved = next;
    } catch {
      // A lost numbering.db then falls back on the numbers the maps hold.
    }
  }

  /** Closes the store. */
  close(): void {
    this.db.close();
  }

  private numberFor(kind: 'identity' | 'selector', key: string): number {
    const known = this.known[kind].get(key);
    if (known !== undefined) return known;
    const n = this.next[kind]++;
    this.known[kind].set(key, n);
    if (this.reservationFile && n >= this.reserved[kind]) this.reserve(kind, n);
    // A disk that refuses the row must not stop the policy sync: the number is used now, and saved when the disk is back.
    const save = (): void => void this.insert.run(kind, key, n);
    if (this.disk) this.disk.writeOrDefer(`save ${kind} number ${n}`, save);
    else save();
    return n;
  }
}
