/**
 * Which changed map layouts a migration takes, and how (datapath/map-migration.ts):
 * pure decisions, no kernel.
 */
import { describe, expect, it } from 'vitest';
import { MAP_TREATMENT, catchUpOf, planMigration, type MapLayout } from '../datapath/map-migration.ts';
import { addDeltas, countDelta, entryOp } from '../datapath/map-catch-up.ts';
import { EntrySet } from '../datapath/entry-set.ts';
import { fieldsEnd, type ValueField } from '../datapath/map-btf.ts';

const HASH = 1;
const LPM_TRIE = 11;
const RINGBUF = 27;

/** struct ct_count-like values: fields of 8 bytes, one after the other. */
function fields(...names: string[]): ValueField[] {
  return names.map((name, i) => ({ name, bitOffset: i * 64, bytes: 8 }));
}

function layout(over: Partial<MapLayout> = {}): MapLayout {
  const f = fields('entries', 'fragments');
  return { type: HASH, keySize: 4, valueSize: 16, maxEntries: 1024, mapFlags: 0, key: { typeName: '__u32', fields: null }, value: { typeName: 'ct_count', fields: f }, ...over };
}

describe('planning the migration of a changed map', () => {
  it('copies every byte when only max_entries changed, growing or shrinking (the fit is checked at copy time)', () => {
    expect(planMigration('conntrack', layout(), layout({ maxEntries: 2048 }))).toEqual({ map: 'conntrack', action: 'copy', copyBytes: 16 });
    expect(planMigration('conntrack', layout(), layout({ maxEntries: 10 }))).toEqual({ map: 'conntrack', action: 'copy', copyBytes: 16 });
  });

  it('copies the old fields of a value that grew at its end; the new field starts at zero', () => {
    const grown = layout({ valueSize: 24, value: { typeName: 'ct_count', fields: fields('entries', 'fragments', 'bytes') } });
    expect(planMigration('ct_counts', layout(), grown)).toEqual({ map: 'ct_counts', action: 'copy', copyBytes: 16 });
  });

  it('applies the same rule on a downgrade: the fields the older value has are kept, the one at the end dropped', () => {
    const grown = layout({ valueSize: 24, value: { typeName: 'ct_count', fields: fields('entries', 'fragments', 'bytes') } });
    expect(planMigration('ct_counts', grown, layout())).toEqual({ map: 'ct_counts', action: 'copy', copyBytes: 16 });
  });

  it('copies up to the end of the last shared field, not the padding after it', () => {
    const padded = layout({ valueSize: 16, value: { typeName: 'v', fields: [{ name: 'a', bitOffset: 0, bytes: 8 }, { name: 'b', bitOffset: 64, bytes: 4 }] } });
    const grown = layout({ valueSize: 24, value: { typeName: 'v', fields: [{ name: 'a', bitOffset: 0, bytes: 8 }, { name: 'b', bitOffset: 64, bytes: 4 }, { name: 'c', bitOffset: 96, bytes: 4 }, { name: 'd', bitOffset: 128, bytes: 8 }] } });
    expect(planMigration('fragments', padded, grown)).toEqual({ map: 'fragments', action: 'copy', copyBytes: 12 });
  });

  it('refuses a value whose fields changed in the middle, naming the field', () => {
    const reordered = layout({ valueSize: 24, value: { typeName: 'ct_count', fields: fields('entries', 'bytes', 'fragments') } });
    const plan = planMigration('ct_counts', layout(), reordered);
    expect(plan).toMatchObject({ map: 'ct_counts' });
    expect('reason' in plan && plan.reason).toMatch(/field fragments .* became bytes .*only fields added or removed at the end/);
  });

  it('refuses a value size change it cannot see into (no BTF, or not a struct)', () => {
    expect(planMigration('policy', layout({ value: null }), layout({ valueSize: 24, value: null }))).toMatchObject({ reason: /no BTF shows where the fields are/ });
    const scalar = { typeName: '__u64', fields: null };
    expect(planMigration('policy', layout({ valueSize: 8, value: scalar }), layout({ valueSize: 4, value: { typeName: '__u32', fields: null } }))).toMatchObject({ reason: /not a struct/ });
  });

  it('refuses a key of the same size whose fields changed', () => {
    const key = (...names: string[]) => ({ typeName: 'frag_key', fields: names.map((name, i) => ({ name, bitOffset: i * 32, bytes: 4 })) });
    expect(planMigration('fragments', layout({ key: key('id', 'endpoint') }), layout({ key: key('endpoint', 'id') }))).toMatchObject({ reason: /key layout changed \(its fields differ: id, endpoint pinned, endpoint, id wanted\)/ });
    expect(planMigration('fragments', layout({ key: key('id', 'endpoint') }), layout({ key: key('id', 'endpoint'), maxEntries: 9 }))).toMatchObject({ action: 'copy' });
  });

  it('treats a value of the same size whose fields changed like any other value change', () => {
    const v = (...names: string[]) => ({ typeName: 'ct_count', fields: fields(...names) });
    expect(planMigration('ct_counts', layout({ value: v('entries', 'fragments') }), layout({ value: v('fragments', 'entries') }))).toMatchObject({ reason: /field entries .* became fragments/ });
  });

  it('refuses a changed key, type or flags', () => {
    expect(planMigration('fragments', layout(), layout({ keySize: 8 }))).toMatchObject({ reason: /key layout changed \(4 bytes pinned, 8 wanted\)/ });
    expect(planMigration('policy', layout(), layout({ type: LPM_TRIE }))).toMatchObject({ reason: /map type changed/ });
    expect(planMigration('policy', layout(), layout({ mapFlags: 1 }))).toMatchObject({ reason: /flags changed/ });
  });

  it('starts the maps it resets empty whatever changed in them, except their type', () => {
    const ring = layout({ type: RINGBUF, keySize: 0, valueSize: 0, value: null });
    expect(planMigration('events', ring, { ...ring, maxEntries: 1 << 22 })).toEqual({ map: 'events', action: 'reset' });
    expect(planMigration('event_rate', layout(), layout({ valueSize: 40, value: null, keySize: 8 }))).toEqual({ map: 'event_rate', action: 'reset' });
    expect(planMigration('events', ring, layout())).toMatchObject({ reason: /map type changed/ });
  });

  it('names a treatment, and why, for every map of the datapath', () => {
    const maps = ['endpoints', 'devices', 'counters', 'ipcache', 'policy', 'cidr_policy', 'conntrack', 'ct_counts', 'fragments', 'lb_nat', 'lb_nat_affinity', 'ep_counters', 'config', 'events', 'event_rate'];
    for (const m of maps) expect(MAP_TREATMENT[m]?.why, m).toBeTruthy();
    expect(Object.keys(MAP_TREATMENT).sort()).toEqual([...maps].sort());
  });

  it("catches up the datapath's own state by entry and its counters by count; the agent's maps not at all", () => {
    const by = (kind: string) => Object.keys(MAP_TREATMENT).filter((m) => MAP_TREATMENT[m]!.treatment === 'copy' && catchUpOf(m) === kind).sort();
    expect(by('entries')).toEqual(['conntrack', 'fragments', 'lb_nat', 'lb_nat_affinity']);
    expect(by('counts')).toEqual(['counters', 'ct_counts', 'ep_counters']);
    expect(by('none')).toEqual(['cidr_policy', 'config', 'devices', 'endpoints', 'ipcache', 'policy']);
    expect(catchUpOf('a_map_added_later')).toBe('entries');
  });

  it('measures where the last field ends', () => {
    expect(fieldsEnd([{ name: 'a', bitOffset: 0, bytes: 8 }, { name: 'b', bitOffset: 64, bytes: 2 }])).toBe(10);
    expect(fieldsEnd([])).toBe(0);
  });
});

describe('the catch-up after the switch: what the old programs did since the copy', () => {
  const v = (...bytes: number[]) => Buffer.from(bytes);
  /** A value grown by one zero byte at its end. */
  const grow = (b: Buffer) => Buffer.concat([b, Buffer.alloc(1)]);

  it('creates what the old programs opened, deletes what they ended, carries what they changed, in the new layout', () => {
    expect(entryOp(undefined, v(2), undefined, grow)).toEqual({ op: 'create', value: grow(v(2)) });
    expect(entryOp(v(1), undefined, grow(v(1)), grow)).toEqual({ op: 'delete' });
    expect(entryOp(v(1), v(2), grow(v(1)), grow)).toEqual({ op: 'overwrite', value: grow(v(2)) });
    expect(entryOp(v(1), v(1), grow(v(1)), grow)).toBeNull();
  });

  it('leaves what the new programs did since the switch: their change, their delete, their own entry for the same key', () => {
    expect(entryOp(v(1), v(2), grow(v(3)), grow)).toBeNull(); // both changed it
    expect(entryOp(v(1), v(2), undefined, grow)).toBeNull(); // the new programs ended it
    expect(entryOp(v(1), undefined, undefined, grow)).toBeNull(); // both ended it
    expect(entryOp(v(1), undefined, grow(v(3)), grow)).toBeNull(); // the old ended it, the new changed (or made it again)
    expect(entryOp(undefined, v(2), grow(v(3)), grow)).toBeNull(); // both made it
  });

  it('adds to the new counts what the old programs counted since the copy, modulo 2^64, per CPU slot (signed counts taken away too)', () => {
    const u64s = (...n: bigint[]) => {
      const b = Buffer.alloc(8 * n.length);
      n.forEach((x, i) => b.writeBigUInt64LE(BigInt.asUintN(64, x), i * 8));
      return b;
    };
    // Two CPU slots of two fields each.
    const d = countDelta(u64s(10n, 2n, 0n, 0n), u64s(13n, 1n, 5n, 0n), 2, 16, 2);
    expect(d).toEqual([3n, -1n, 5n, 0n]);
    expect(countDelta(u64s(1n, 1n, 1n, 1n), u64s(1n, 1n, 1n, 1n), 2, 16, 2)).toBeNull();
    expect(countDelta(undefined, u64s(1n, 0n, 0n, 0n), 2, 16, 2)).toEqual([1n, 0n, 0n, 0n]);
    expect(addDeltas(u64s(11n, 2n, 7n, 9n), d!, 2, 16, 2)).toEqual(u64s(14n, 1n, 12n, 9n));
    expect(addDeltas(u64s(0n, 0n, 0n, 0n), [0n, -1n, 0n, 0n], 2, 16, 2)).toEqual(u64s(0n, -1n, 0n, 0n));
  });

  it('keeps the first copy in the blocks the kernel returned, found by key, a later block winning', () => {
    const set = new EntrySet(2, 3);
    set.add({ keys: Buffer.from([1, 0, 2, 0, 0, 0]), values: Buffer.from([1, 1, 1, 2, 2, 2, 9, 9, 9]), count: 2 });
    set.add({ keys: Buffer.from([2, 0, 3, 0]), values: Buffer.from([4, 4, 4, 3, 3, 3]), count: 2 });
    expect(set.size).toBe(3);
    const at = (k: number[]) => set.find(Buffer.from(k).toString('latin1'))!;
    expect(set.value(at([1, 0]))).toEqual(Buffer.from([1, 1, 1]));
    expect(set.value(at([2, 0]))).toEqual(Buffer.from([4, 4, 4]));
    expect(set.find(Buffer.from([0, 0]).toString('latin1'))).toBeUndefined();
    expect(set.sameValue(at([3, 0]), Buffer.from([0, 3, 3, 3]), 1)).toBe(true);
    expect(set.sameValue(at([3, 0]), Buffer.from([3, 3, 3, 4]), 1)).toBe(false);
  });
});
