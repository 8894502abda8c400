/**
 * Identity and address-selector numbers, persisted so a restarted agent keeps
 * the numbers the pinned maps already use (and rewrites nothing).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { Identity } from '../datapath/abi.ts';
import { openStore } from '../ipam/store.ts';
import type { Numbering } from '../policy/identity.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS numbering (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  number INTEGER NOT NULL,
  PRIMARY KEY (kind, key)
);`;

/** Numbering backed by SQLite; numbers are never reused. */
export class NumberingStore implements Numbering {
  private readonly db: DatabaseSync;
  private readonly insert: StatementSync;
  private readonly known = { identity: new Map<string, number>(), selector: new Map<string, number>() };
  private readonly next = { identity: Identity.FIRST_POD as number, selector: Identity.FIRST_CIDR_SELECTOR + 1 };

  constructor(dbFile: string) {
    this.db = openStore(dbFile);
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare('INSERT INTO numbering (kind, key, number) VALUES (?, ?, ?)');
    for (const row of this.db.prepare('SELECT kind, key, number FROM numbering').all() as { kind: 'identity' | 'selector'; key: string; number: number }[]) {
      this.known[row.kind].set(row.key, row.number);
      this.next[row.kind] = Math.max(this.next[row.kind], row.number + 1);
    }
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
    this.insert.run(kind, key, n);
    this.known[kind].set(key, n);
    return n;
  }
}
