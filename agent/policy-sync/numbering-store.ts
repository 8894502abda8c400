/**
 * Identity and address-selector numbers, persisted so a restarted agent keeps
 * the numbers the pinned maps already use (and rewrites nothing).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { Identity } from '../../datapath/abi.ts';
import { closeQuietly, openStore } from '../../ipam/store.ts';
import type { Numbering } from '../../policy/identity.ts';
import type { StateDisk } from '../state-disk.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS numbering (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  number INTEGER NOT NULL,
  PRIMARY KEY (kind, key)
);`;

/** Numbering backed by SQLite; numbers are never reused. */
export class NumberingStore implements Numbering {
  private readonly dbFile: string;
  private db!: DatabaseSync;
  private insert!: StatementSync;
  private readonly known = { identity: new Map<string, number>(), selector: new Map<string, number>() };
  private readonly next = { identity: Identity.FIRST_POD as number, selector: Identity.FIRST_CIDR_SELECTOR + 1 };

  private readonly disk: StateDisk | undefined;

  constructor(dbFile: string, disk?: StateDisk) {
    this.disk = disk;
    this.dbFile = dbFile;
    this.open();
    for (const row of this.db.prepare('SELECT kind, key, number FROM numbering').all() as { kind: 'identity' | 'selector'; key: string; number: number }[]) {
      this.known[row.kind].set(row.key, row.number);
      this.next[row.kind] = Math.max(this.next[row.kind], row.number + 1);
    }
  }

  /** Closes and opens the store again: after its disk was remounted, the old handle still points at the dead one. */
  reopen(): void {
    closeQuietly(this.db);
    this.open();
  }

  private open(): void {
    this.db = openStore(this.dbFile);
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare('INSERT INTO numbering (kind, key, number) VALUES (?, ?, ?)');
  }

  identity(key: string): number {
    return this.numberFor('identity', key);
  }

  selector(key: string): number {
    return this.numberFor('selector', key);
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
    // A disk that refuses the row must not stop the policy sync: the number is used now, and saved when the disk is back.
    const save = (): void => void this.insert.run(kind, key, n);
    if (this.disk) this.disk.writeOrDefer(`save ${kind} number ${n}`, save);
    else save();
    return n;
  }
}
