/**
 * A store a newer agent wrote, as a rollback meets it (lib/store-schema.ts):
 * used as it is when its writer says this agent can, left untouched and
 * refused with what to do otherwise; never migrated down, never exited on.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareStore } from '../agent/store-check.ts';
import { IPAM_SCHEMA_VERSION, openIpamStore } from '../ipam/store.ts';
import { Ipam } from '../ipam/allocator.ts';
import { EndpointManager } from '../agent/endpoints.ts';
import { markStoreSchema, readStoreSchema } from '../lib/store-schema.ts';

let dir: string;
const logs: string[] = [];
const log = (m: string): void => void logs.push(m);
const what = { rebuilding: 'rebuilding', refused: 'refused', schemaVersion: IPAM_SCHEMA_VERSION };

/** An IPAM store as a newer agent would leave it: its version, and the oldest reader it names (none: not written). */
function newerIpamStore(file: string, version: number, oldestReader: number | null): void {
  openIpamStore(file).close();
  const db = new DatabaseSync(file);
  try {
    db.exec('ALTER TABLE allocations ADD COLUMN added_later TEXT NOT NULL DEFAULT \'\'');
    if (oldestReader === null) db.exec('DROP TABLE sluice_schema_compat');
    else db.prepare('UPDATE sluice_schema_compat SET oldest_reader = ?').run(oldestReader);
    db.exec(`PRAGMA user_version = ${version}`);
  } finally {
    db.close();
  }
}

function schemaOf(file: string): ReturnType<typeof readStoreSchema> {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return readStoreSchema(db);
  } finally {
    db.close();
  }
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st32-schema-'));
  logs.length = 0;
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('a store of a newer schema', () => {
  it('is used as it is when its writer says this agent can: allocations work, its mark stays the newer one', () => {
    const file = path.join(dir, 'ipam.db');
    newerIpamStore(file, IPAM_SCHEMA_VERSION + 1, IPAM_SCHEMA_VERSION);
    const check = prepareStore(file, 'IPAM', what, log);
    expect(check).toMatchObject({ file, newer: false, refusal: null });
    const ipam = new Ipam(check.file, ['10.9.0.0/24']);
    try {
      expect(ipam.allocate({ containerID: 'c', ifname: 'eth0' })[0]!.ip).toBe('10.9.0.2');
    } finally {
      ipam.close();
    }
    expect(schemaOf(file)).toEqual({ version: IPAM_SCHEMA_VERSION + 1, oldestReader: IPAM_SCHEMA_VERSION });
  });

  it('is left untouched and refused, saying what to do, when its writer needs a newer reader or does not say', () => {
    for (const oldestReader of [IPAM_SCHEMA_VERSION + 1, null]) {
      const file = path.join(dir, `ipam-${oldestReader}.db`);
      newerIpamStore(file, IPAM_SCHEMA_VERSION + 1, oldestReader);
      const bytes = fs.readFileSync(file);
      const check = prepareStore(file, 'IPAM', what, log);
      expect(check).toMatchObject({ file: ':memory:', newer: true, movedTo: null, damage: null });
      expect(check.refusal).toMatch(/written by a newer Sluice agent \(schema 3; .*this agent's is 2\).*Roll the agent forward.*drain the node, move .* aside and restart the agent/);
      expect(logs.at(-1)).toBe(check.refusal);
      // Opened directly, it throws the same words rather than reading a layout it does not know.
      expect(() => openIpamStore(file)).toThrow(/written by a newer Sluice agent/);
      expect(fs.readFileSync(file).equals(bytes)).toBe(true);
      expect(fs.readdirSync(dir).filter((f) => f.includes('damaged'))).toEqual([]);
    }
  });

  it('an older store is migrated and marked as this agent\'s; the endpoint store carries its mark too', () => {
    const file = path.join(dir, 'old.db');
    const db = new DatabaseSync(file);
    db.exec('CREATE TABLE allocations (ip TEXT PRIMARY KEY, pool TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL, namespace TEXT NOT NULL DEFAULT \'\', pod TEXT NOT NULL DEFAULT \'\', created_at INTEGER NOT NULL, UNIQUE (container_id, ifname, pool))');
    db.close();
    openIpamStore(file).close();
    expect(schemaOf(file)).toEqual({ version: IPAM_SCHEMA_VERSION, oldestReader: 2 });
    const eps = path.join(dir, 'endpoints.db');
    new EndpointManager(eps, () => undefined).close();
    expect(schemaOf(eps)).toEqual({ version: 1, oldestReader: 1 });
    // A mark never goes down.
    const newer = new DatabaseSync(eps);
    newer.exec('PRAGMA user_version = 5');
    markStoreSchema(newer, { version: 1, oldestReader: 1 });
    expect(Number((newer.prepare('PRAGMA user_version').get() as { user_version: number }).user_version)).toBe(5);
    newer.close();
  });
});
