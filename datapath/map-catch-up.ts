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
import { keyString, type EntrySet } from './entry-set.ts';
import { isBpfError, mapDeleteElem, mapLookupElem, mapUpdateElem } from './libbpf.ts';
import { copyEntries, isArrayType, readEntryChunks, valueBytesOf, type CatchUp, type MapLayout } from './map-migration.ts';
import { errorMessage } from '../lib/errors.ts';

const COUNT_BYTES = 8;

/** What the catch-up does to one key of the new map. */
export type CatchUpOp = { op: 'create' | 'overwrite'; value: Buffer } | { op: 'delete' } | null;

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
 * The 'entries' catch-up of one key, from its value as first copied (base),
 * in the old map now and in the new map now (undefined: absent).
 */
export function entryOp(base: Buffer | undefined, old: Buffer | undefined, now: Buffer | undefined, convert: Convert): CatchUpOp {
  if (!base) {
    // Made by the old programs since the copy; one the new programs made too is theirs.
    return old && !now ? { op: 'create', value: convert(old) } : null;
  }
  // Left alone by the new programs since the switch (else what they did stands).
  if (!now || !now.equals(convert(base))) return null;
  if (!old) return { op: 'delete' }; // ended by the old programs since the copy
  return old.equals(base) ? null : { op: 'overwrite', value: convert(old) };
}

/**
 * The 'counts' catch-up of one key: old - base of each 64-bit field of the
 * first `fields` of every slot (no base: from zero); null when none moved.
 */
export function countDelta(base: Buffer | undefined, old: Buffer, slots: number, stride: number, fields: number): bigint[] | null {
  const d: bigint[] = [];
  for (let slot = 0; slot < slots; slot++) {
    for (let f = 0; f < fields; f++) {
      const at = slot * stride + f * COUNT_BYTES;
      d.push(old.readBigUInt64LE(at) - (base ? base.readBigUInt64LE(at) : 0n));
    }
  }
  return d.some((x) => x !== 0n) ? d : null;
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

/** A key whose entry the old programs made, ended or changed since the first copy. */
interface Moved {
  key: Buffer;
  base: Buffer | undefined;
  old: Buffer | undefined;
}

/** The keys of the old map (oldFd) that differ from the first copy (base), read in the kernel's blocks. */
function movedSinceCopy(map: string, oldFd: number, from: MapLayout, base: EntrySet): Moved[] {
  const moved: Moved[] = [];
  const seen = new Set<number>();
  const bytes = base.valueBytes;
  for (const c of readEntryChunks(map, oldFd, from)) {
    for (let i = 0; i < c.count; i++) {
      const at = base.find(keyString(c, i, base.keySize));
      if (at !== undefined) {
        seen.add(at);
        if (base.sameValue(at, c.values, i * bytes)) continue;
      }
      moved.push({ key: c.keys.subarray(i * base.keySize, (i + 1) * base.keySize), base: at === undefined ? undefined : base.value(at), old: c.values.subarray(i * bytes, (i + 1) * bytes) });
    }
  }
  for (const [key, at] of base.entries()) {
    if (!seen.has(at)) moved.push({ key: Buffer.from(key, 'latin1'), base: base.value(at), old: undefined });
  }
  return moved;
}

/**
 * Catches the new map (newFd, layout `to`) up with the old (oldFd, `from`)
 * by `kind`, against `base`, the entries as first copied (old layout);
 * without a base (a migration finished after a crash), 'entries' copies only
 * what the new map lacks and 'counts' does nothing. Reads the old map whole
 * and the new one only at the keys that moved.
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
  const moved = movedSinceCopy(map, oldFd, from, base);
  const lookupNew = (key: Buffer): Buffer | undefined => {
    const value = Buffer.alloc(toBytes.bytes);
    return mapLookupElem(newFd, key, value, `map ${map} (new)`) ? value : undefined;
  };
  if (kind === 'counts' && copyBytes % COUNT_BYTES === 0) {
    const fields = copyBytes / COUNT_BYTES;
    for (const m of moved) {
      const d = m.old && countDelta(m.base, m.old, fromBytes.slots, fromBytes.stride, fields);
      if (!d) continue;
      const now = lookupNew(m.key);
      const flags = array ? BPF_ANY : now ? BPF_EXIST : BPF_NOEXIST;
      write(result, () => mapUpdateElem(newFd, m.key, addDeltas(now ?? Buffer.alloc(toBytes.bytes), d, toBytes.slots, toBytes.stride, fields), flags, `map ${map} (new)`), m.key);
    }
    return result;
  }
  const convert: Convert = (o) => {
    const value = Buffer.alloc(toBytes.bytes);
    for (let slot = 0; slot < fromBytes.slots; slot++) o.copy(value, slot * toBytes.stride, slot * fromBytes.stride, slot * fromBytes.stride + copyBytes);
    return value;
  };
  for (const m of moved) {
    const action = entryOp(m.base, m.old, lookupNew(m.key), convert);
    if (!action) continue;
    if (action.op === 'delete') {
      if (mapDeleteElem(newFd, m.key, `map ${map} (new)`)) result.deleted++;
      continue;
    }
    const flags = array ? BPF_ANY : action.op === 'create' ? BPF_NOEXIST : BPF_EXIST;
    write(result, () => mapUpdateElem(newFd, m.key, action.value, flags, `map ${map} (new)`), m.key);
  }
  return result;
}

/** One write of the catch-up: a key the new programs made (EEXIST) or ended (ENOENT) meanwhile is theirs. */
function write(result: CatchUpResult, update: () => void, key: Buffer): void {
  try {
    update();
    result.written++;
  } catch (err: unknown) {
    if (isBpfError(err, 'EEXIST') || isBpfError(err, 'ENOENT')) return;
    result.failed.push(`key ${key.toString('hex')}: ${errorMessage(err)}`);
  }
}
