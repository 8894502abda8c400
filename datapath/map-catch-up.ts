/**
 * The catch-up of a map migration (issue 33): between a map's copy and the
 * switch of the last link, the old programs keep running against the old
 * map, opening and ending flows. Once every link runs the new programs,
 * what they did there is carried into the new map, by the map's kind
 * (map-migration.ts, CatchUp), against the entries as first copied:
 *   - 'entries': created in the old map since the copy, created in the new
 *     one; deleted in the old map since (a RST ended the flow, a reused
 *     tuple), deleted in the new one, so an ended flow does not come back;
 *     changed in the old map since, the change copied. Whatever the new
 *     programs did to a key since the switch (changed, deleted or made it)
 *     wins: theirs is the later packet.
 *   - 'counts': each 64-bit field of the new value gets what the old
 *     programs added or took away since the copy (old - first copy). So
 *     ct_counts charges the flows the old programs opened in the window and
 *     gives back those they ended, as conntrack and fragments carry them.
 *
 * What it cannot do: read-modify-write of a count, and the check before a
 * delete or overwrite, are not atomic with the new programs' updates of the
 * same entry (a packet of that flow within those microseconds); a tuple
 * opened on both sides of the switch (its opener's veth switched, its
 * receiver's not yet) is charged twice in ct_counts. After a crash the first
 * copy is not known (it is kept in memory only): the next agent then copies
 * only the entries the new map lacks (copyEntries 'missing'), and an entry
 * deleted in the window stays until it expires or the sweep takes it.
 */
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST } from './bpf-map.ts';
import { isBpfError, mapDeleteElem, mapLookupElem, mapUpdateElem } from './libbpf.ts';
import { copyEntries, isArrayType, readEntrySet, valueBytesOf, type CatchUp, type EntrySet, type MapLayout } from './map-migration.ts';
import { errorMessage } from '../lib/errors.ts';

const COUNT_BYTES = 8;

/** One change to the new map (key in hex). */
export type CatchUpAction = { key: string; op: 'create' | 'overwrite'; value: Buffer } | { key: string; op: 'delete' };

/** A value of the old layout in the new one (every CPU's slot). */
export type Convert = (old: Buffer) => Buffer;

/** What a catch-up did to one map. */
export interface CatchUpResult {
  map: string;
  written: number;
  deleted: number;
  /** Entries that could not be written (e.g. the new map full), with why. */
  failed: string[];
}

/**
 * The 'entries' catch-up, decided per key from the first copy (base), the
 * old map now and the new map now.
 */
export function entryActions(base: EntrySet, old: EntrySet, now: EntrySet, convert: Convert): CatchUpAction[] {
  const actions: CatchUpAction[] = [];
  for (const [key, o] of old) {
    const b = base.get(key);
    const n = now.get(key);
    if (!b) {
      // Made by the old programs since the copy; one the new programs made too is theirs.
      if (!n) actions.push({ key, op: 'create', value: convert(o) });
      continue;
    }
    // Gone from the new map: the new programs ended it. Unchanged in the old: nothing to carry.
    if (!n || o.equals(b)) continue;
    if (n.equals(convert(b))) actions.push({ key, op: 'overwrite', value: convert(o) });
  }
  for (const [key, b] of base) {
    if (old.has(key)) continue;
    const n = now.get(key);
    // Ended by the old programs since the copy, and untouched by the new ones.
    if (n?.equals(convert(b))) actions.push({ key, op: 'delete' });
  }
  return actions;
}

/**
 * The 'counts' catch-up: per key of the old map, old - base of every 64-bit
 * field of the first `fields` of each slot (a key absent from base counts
 * from zero). Keys whose counts did not move are left out.
 */
export function countDeltas(base: EntrySet, old: EntrySet, slots: number, stride: number, fields: number): Map<string, bigint[]> {
  const deltas = new Map<string, bigint[]>();
  for (const [key, o] of old) {
    const b = base.get(key);
    const d: bigint[] = [];
    for (let slot = 0; slot < slots; slot++) {
      for (let f = 0; f < fields; f++) {
        const at = slot * stride + f * COUNT_BYTES;
        d.push(o.readBigUInt64LE(at) - (b ? b.readBigUInt64LE(at) : 0n));
      }
    }
    if (d.some((x) => x !== 0n)) deltas.set(key, d);
  }
  return deltas;
}

/** `value` (new layout) with the deltas added to its fields, modulo 2^64 (signed counts come out right). */
export function addDeltas(value: Buffer, deltas: bigint[], slots: number, stride: number, fields: number): Buffer {
  const out = Buffer.from(value);
  for (let slot = 0; slot < slots; slot++) {
    for (let f = 0; f < fields; f++) {
      const at = slot * stride + f * COUNT_BYTES;
      out.writeBigUInt64LE(BigInt.asUintN(64, out.readBigUInt64LE(at) + deltas[slot * fields + f]!), at);
    }
  }
  return out;
}

/**
 * Catches the new map (newFd, layout `to`) up with the old (oldFd, `from`)
 * by `kind`, against `base`, the entries as first copied (old layout);
 * without a base (a migration finished after a crash), 'entries' copies only
 * what the new map lacks and 'counts' does nothing.
 */
export function catchUpMap(map: string, oldFd: number, newFd: number, from: MapLayout, to: MapLayout, copyBytes: number, kind: CatchUp, base: EntrySet | undefined): CatchUpResult {
  const result: CatchUpResult = { map, written: 0, deleted: 0, failed: [] };
  if (kind === 'none') return result;
  if (!base) {
    if (kind === 'entries') result.written = copyEntries(map, oldFd, newFd, from, to, copyBytes, 'missing');
    return result;
  }
  const fromBytes = valueBytesOf(from);
  const toBytes = valueBytesOf(to);
  const array = isArrayType(to.type);
  const old = readEntrySet(map, oldFd, from);
  if (kind === 'counts' && copyBytes % COUNT_BYTES === 0) {
    const fields = copyBytes / COUNT_BYTES;
    for (const [hex, d] of countDeltas(base, old, fromBytes.slots, fromBytes.stride, fields)) {
      const key = Buffer.from(hex, 'hex');
      const current = Buffer.alloc(toBytes.bytes);
      const present = mapLookupElem(newFd, key, current, `map ${map} (new)`);
      const flags = array ? BPF_ANY : present ? BPF_EXIST : BPF_NOEXIST;
      write(result, () => mapUpdateElem(newFd, key, addDeltas(current, d, toBytes.slots, toBytes.stride, fields), flags, `map ${map} (new)`), hex);
    }
    return result;
  }
  const convert: Convert = (o) => {
    const value = Buffer.alloc(toBytes.bytes);
    for (let slot = 0; slot < fromBytes.slots; slot++) o.copy(value, slot * toBytes.stride, slot * fromBytes.stride, slot * fromBytes.stride + copyBytes);
    return value;
  };
  for (const action of entryActions(base, old, readEntrySet(map, newFd, to), convert)) {
    const key = Buffer.from(action.key, 'hex');
    if (action.op === 'delete') {
      if (mapDeleteElem(newFd, key, `map ${map} (new)`)) result.deleted++;
      continue;
    }
    const flags = array ? BPF_ANY : action.op === 'create' ? BPF_NOEXIST : BPF_EXIST;
    write(result, () => mapUpdateElem(newFd, key, action.value, flags, `map ${map} (new)`), action.key);
  }
  return result;
}

/** One write of the catch-up: a key the new programs made (EEXIST) or ended (ENOENT) meanwhile is theirs. */
function write(result: CatchUpResult, update: () => void, key: string): void {
  try {
    update();
    result.written++;
  } catch (err: unknown) {
    if (isBpfError(err, 'EEXIST') || isBpfError(err, 'ENOENT')) return;
    result.failed.push(`key ${key}: ${errorMessage(err)}`);
  }
}
