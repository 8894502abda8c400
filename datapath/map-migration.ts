/**
 * Migrating one pinned map to the layout another datapath object defines
 * (issue 33, step 3): which changes can be migrated, what each of the
 * datapath's maps does with its entries, and the copy itself.
 *
 * Safe, and migrated:
 *   - max_entries changed: the entries are copied. A smaller map must hold
 *     them: a hash with more entries than the new size, or an array with a
 *     non-zero entry past the new end, is refused.
 *   - the value grew or shrank at its end: BTF shows the fields of the
 *     shorter value as the first fields of the longer one (same names,
 *     offsets and sizes). The shared fields are copied, fields added at the
 *     end start at zero, and fields dropped at the end (a downgrade) go.
 *     Bytes past the last shared field (padding) are zeroed, not copied.
 * Refused, with the map named: a changed type, flags, or key (its size, or
 * its fields in BTF); a value whose fields changed in the middle, or whose
 * size changed with no BTF (or not a struct) to show where.
 *
 * Pure decisions (planMigration) are kept apart from the kernel copy
 * (copyEntries), so the rules are unit-tested without a kernel.
 */
import { constants as osConstants } from 'node:os';
import koffi from 'koffi';
import { BPF_ANY, BPF_NOEXIST } from './bpf-map.ts';
import { isBpfError, mapGetNextKey, mapLookupElem, mapUpdateElem, numPossibleCpus } from './libbpf.ts';
import type { ValueLayout } from './map-btf.ts';
import { fieldsDiffer, fieldsEnd } from './map-btf.ts';
import { EntrySet, type Chunk } from './entry-set.ts';

/** enum bpf_map_type values met here. */
const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_ARRAY = 2;
const BPF_MAP_TYPE_PERCPU_HASH = 5;
const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
const BPF_MAP_TYPE_LRU_HASH = 9;
const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
const BPF_MAP_TYPE_LPM_TRIE = 11;
const COPYABLE_TYPES = new Set([BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_LPM_TRIE]);
const ARRAY_TYPES = new Set([BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY]);
/** Map types whose entries the kernel reads and writes in batches (Linux 5.6). */
const BATCH_TYPES = new Set([BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH]);
const BATCH_ENTRIES = 4096;
/** The hash map's batch token is a bucket index (u32); room for a key is also given, as other types take one. */
const BATCH_TOKEN_BYTES = 8;
/** Errnos of a kernel (or map) without batch operations: EINVAL, EOPNOTSUPP, ENOTSUPP. */
const BATCH_UNSUPPORTED = new Set([osConstants.errno.EINVAL, osConstants.errno.EOPNOTSUPP, 524]);
const PERCPU_TYPES = new Set([BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH]);
/** Per-CPU values sit in slots rounded up to 8 bytes. */
const PERCPU_SLOT_ALIGN_BYTES = 8;
const ARRAY_KEY_BYTES = 4;
/** Bound on a key walk of a map that changes under it: steps per entry it can hold. */
const WALK_STEPS_PER_ENTRY = 4;

/**
 * After every link switched, what the old programs did to a copied map
 * since its copy is carried into the new one (pin-migration.ts, catch-up):
 *   - 'none': the agent's maps. Only the agent writes them and it is not
 *     running during a migration; its first sync writes them again.
 *   - 'entries': the datapath's own state (a flow, a datagram in reassembly,
 *     a translation). Per key, against the entry as first copied: created in
 *     the old map since, copied; deleted there since (a RST, a reused tuple),
 *     deleted in the new one too; changed there since, the change copied. An
 *     entry the new programs changed or deleted since the switch is theirs and
 *     is left as they made it.
 *   - 'counts': values that are 64-bit counters: the new map's value gets
 *     what the old programs added or took away since the copy (old - first
 *     copy), on top of what the new programs counted meanwhile.
 */
export type CatchUp = 'none' | 'entries' | 'counts';

/**
 * What a migration does with each map of the datapath (bpf/maps.h) whose
 * layout changed. A map whose layout did not change is kept as it is,
 * shared by the old and the new programs. A map not named here is copied,
 * and caught up by entries.
 */
export const MAP_TREATMENT: Readonly<Record<string, { treatment: 'copy' | 'reset'; catchUp?: CatchUp; why: string }>> = {
  endpoints: { treatment: 'copy', catchUp: 'none', why: "the agent's (registrations), copied so the new programs know every pod from their first packet; the agent's next sync writes it again" },
  devices: { treatment: 'copy', catchUp: 'none', why: "the agent's, as endpoints" },
  ipcache: { treatment: 'copy', catchUp: 'none', why: "the agent's (identities of addresses), copied for the first packets; rewritten by the next sync" },
  policy: { treatment: 'copy', catchUp: 'none', why: "the agent's; copied so a flow allowed stays allowed and an isolated pod stays isolated before the agent's first sync" },
  cidr_policy: { treatment: 'copy', catchUp: 'none', why: "the agent's, as policy" },
  conntrack: { treatment: 'copy', catchUp: 'entries', why: 'runtime state nothing can rebuild: without it established flows would be checked again as new (and replies dropped)' },
  ct_counts: { treatment: 'copy', catchUp: 'counts', why: 'must agree with conntrack and fragments, whose entries it counts against each endpoint budget' },
  fragments: { treatment: 'copy', catchUp: 'entries', why: 'datagrams in reassembly: their later fragments need the ports of the first' },
  lb_nat: { treatment: 'copy', catchUp: 'entries', why: "the Service NAT's translation of each flow: a flow keeps its backend, and its replies are translated back" },
  lb_nat_affinity: { treatment: 'copy', catchUp: 'entries', why: 'the backend of each client of a Service with ClientIP affinity, kept as lb_nat' },
  counters: { treatment: 'copy', catchUp: 'counts', why: 'totals scraped by Prometheus, which reads a drop as a counter reset' },
  ep_counters: { treatment: 'copy', catchUp: 'counts', why: 'as counters' },
  config: { treatment: 'copy', catchUp: 'none', why: "the agent's settings; written again by the agent at start" },
  events: { treatment: 'reset', why: 'a ring buffer: it has no entries to copy; events not yet read are lost' },
  event_rate: { treatment: 'reset', why: 'token buckets of event rate limiting; they refill within a second' },
};

/** How a copied map is caught up (MAP_TREATMENT; 'entries' for a map not named there). */
export function catchUpOf(map: string): CatchUp {
  return MAP_TREATMENT[map]?.catchUp ?? 'entries';
}

/** A map's layout: what the kernel reports of a pinned map, or what an object defines, plus its value's fields. */
export interface MapLayout {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags: number;
  /** The fields of key and value from BTF (null or absent without). */
  key?: ValueLayout | null;
  value: ValueLayout | null;
}

/** How one changed map is migrated. */
export type MigrationStep =
  | { map: string; action: 'copy'; /** bytes of each value copied; the rest of the new value is zero */ copyBytes: number }
  | { map: string; action: 'reset' };

/** A changed map that cannot be migrated, and why. */
export interface MigrationRefusal {
  map: string;
  reason: string;
}

/** How `map` goes from its pinned layout to the wanted one, or why it cannot. */
export function planMigration(map: string, pinned: MapLayout, wanted: MapLayout): MigrationStep | MigrationRefusal {
  if (pinned.type !== wanted.type) return { map, reason: `map type changed (${pinned.type} pinned, ${wanted.type} wanted)` };
  if (MAP_TREATMENT[map]?.treatment === 'reset') return { map, action: 'reset' };
  if (pinned.keySize !== wanted.keySize) return { map, reason: `key layout changed (${pinned.keySize} bytes pinned, ${wanted.keySize} wanted): entries cannot be carried over` };
  if (fieldsDiffer(pinned.key ?? null, wanted.key ?? null)) return { map, reason: `key layout changed (its fields differ: ${fieldNames(pinned.key ?? null)} pinned, ${fieldNames(wanted.key ?? null)} wanted): entries cannot be carried over` };
  if (pinned.mapFlags !== wanted.mapFlags) return { map, reason: `flags changed (${pinned.mapFlags} pinned, ${wanted.mapFlags} wanted)` };
  if (!COPYABLE_TYPES.has(pinned.type)) return { map, reason: `entries of a map of type ${pinned.type} cannot be copied` };
  if (pinned.valueSize === wanted.valueSize && !fieldsDiffer(pinned.value, wanted.value)) return { map, action: 'copy', copyBytes: pinned.valueSize };
  const shared = sharedPrefix(pinned.value, wanted.value);
  if (typeof shared === 'string') return { map, reason: `value layout changed (${pinned.valueSize} bytes pinned, ${wanted.valueSize} wanted): ${shared}` };
  return { map, action: 'copy', copyBytes: Math.min(shared, pinned.valueSize, wanted.valueSize) };
}

function fieldNames(l: ValueLayout | null): string {
  return l?.fields ? l.fields.map((f) => f.name).join(', ') : (l?.typeName ?? 'unknown');
}

/** True when the plan is a refusal. */
export function isRefusal(p: MigrationStep | MigrationRefusal): p is MigrationRefusal {
  return 'reason' in p;
}

/** The bytes the two values share at their start (to the end of the last shared field), or why they share none safely. */
function sharedPrefix(a: ValueLayout | null, b: ValueLayout | null): number | string {
  if (!a || !b) return 'no BTF shows where the fields are';
  if (!a.fields || !b.fields) return `the value (${a.typeName || b.typeName || 'unnamed'}) is not a struct`;
  const [shorter, longer] = a.fields.length <= b.fields.length ? [a.fields, b.fields] : [b.fields, a.fields];
  for (let i = 0; i < shorter.length; i++) {
    const s = shorter[i];
    const l = longer[i];
    if (s.name !== l.name || s.bitOffset !== l.bitOffset || s.bytes !== l.bytes) {
      return `field ${s.name} (bit ${s.bitOffset}, ${s.bytes} bytes) became ${l.name} (bit ${l.bitOffset}, ${l.bytes} bytes): only fields added or removed at the end can be migrated`;
    }
  }
  return fieldsEnd(shorter);
}

/** A migration that could not complete (entries that do not fit, a failed copy); nothing was committed. */
export class MapMigrationError extends Error {
  readonly map: string;
  constructor(map: string, message: string) {
    super(`map ${map}: ${message}`);
    this.name = 'MapMigrationError';
    this.map = map;
  }
}

/**
 * Copies the entries of the map behind oldFd (layout `from`) into the map
 * behind newFd (layout `to`), each value converted by `step`. 'missing'
 * copies only keys the new map lacks (a catch-up after programs switched
 * when the first copy is not known: map-catch-up.ts); 'all' also checks
 * first that the entries fit, and puts in `keep` (when given) every entry
 * it copied, as read from the old map. Returns the entries written.
 */
export function copyEntries(map: string, oldFd: number, newFd: number, from: MapLayout, to: MapLayout, copyBytes: number, mode: 'all' | 'missing', keep?: EntrySet): number {
  const isArray = ARRAY_TYPES.has(from.type);
  const slots = PERCPU_TYPES.has(from.type) ? numPossibleCpus() : 1;
  const oldStride = slots > 1 ? roundUp(from.valueSize) : from.valueSize;
  const newStride = slots > 1 ? roundUp(to.valueSize) : to.valueSize;
  const oldValue = Buffer.alloc(oldStride * slots);
  const convert = (): Buffer => {
    const value = Buffer.alloc(newStride * slots);
    for (let cpu = 0; cpu < slots; cpu++) oldValue.copy(value, cpu * newStride, cpu * oldStride, cpu * oldStride + copyBytes);
    return value;
  };
  if (isArray) {
    if (mode === 'missing') return 0; // every index of an array exists; the first copy wrote them
    for (let index = to.maxEntries; index < from.maxEntries; index++) {
      if (mapLookupElem(oldFd, u32(index), oldValue, `map ${map}`) && oldValue.some((byte) => byte !== 0)) {
        throw new MapMigrationError(map, `entry ${index} is in use and the new map ends at ${to.maxEntries}`);
      }
    }
    const n = Math.min(from.maxEntries, to.maxEntries);
    const kept: Chunk = { keys: Buffer.alloc(keep ? n * ARRAY_KEY_BYTES : 0), values: Buffer.alloc(keep ? n * oldValue.length : 0), count: 0 };
    for (let index = 0; index < n; index++) {
      if (!mapLookupElem(oldFd, u32(index), oldValue, `map ${map}`)) continue;
      mapUpdateElem(newFd, u32(index), convert(), BPF_ANY, `map ${map} (new)`);
      if (!keep) continue;
      kept.keys.writeUInt32LE(index, kept.count * ARRAY_KEY_BYTES);
      oldValue.copy(kept.values, kept.count * oldValue.length);
      kept.count++;
    }
    keep?.add(kept);
    return n;
  }
  const chunks = readChunks(map, oldFd, from, oldValue.length);
  const total = chunks.reduce((n, c) => n + c.count, 0);
  if (mode === 'all' && total > to.maxEntries) {
    throw new MapMigrationError(map, `${total} entries do not fit in the new map of ${to.maxEntries}`);
  }
  const keySize = from.keySize;
  const newValueBytes = newStride * slots;
  if (keep) for (const c of chunks) keep.add(c);
  /** A chunk's values in the new layout; the same buffer when only max_entries changed. */
  const convertChunk = (c: Chunk): Buffer => {
    if (oldStride === newStride && copyBytes === from.valueSize) return c.values;
    const out = Buffer.alloc(c.count * newValueBytes);
    for (let i = 0; i < c.count; i++) {
      for (let cpu = 0; cpu < slots; cpu++) {
        const at = i * oldValue.length + cpu * oldStride;
        c.values.copy(out, i * newValueBytes + cpu * newStride, at, at + copyBytes);
      }
    }
    return out;
  };
  if (mode === 'all' && BATCH_TYPES.has(to.type)) {
    for (const c of chunks) writeBatch(map, newFd, c.keys, convertChunk(c), c.count, total);
    return total;
  }
  // Entry by entry: a trie (no batches), or a catch-up that writes only what the new map lacks.
  const present = mode === 'missing' ? new Set(readChunks(map, newFd, to, newValueBytes).flatMap((c) => chunkKeys(c, keySize).map((k) => k.toString('hex')))) : new Set<string>();
  let written = 0;
  for (const c of chunks) {
    const values = convertChunk(c);
    chunkKeys(c, keySize).forEach((key, i) => {
      if (present.has(key.toString('hex'))) return;
      try {
        mapUpdateElem(newFd, key, values.subarray(i * newValueBytes, (i + 1) * newValueBytes), mode === 'all' ? BPF_ANY : BPF_NOEXIST, `map ${map} (new)`);
        written++;
      } catch (err: unknown) {
        if (mode === 'missing' && isBpfError(err, 'EEXIST')) return; // the new programs made it since
        throw new MapMigrationError(map, `copying entry ${written + 1} of ${total}: ${(err as Error).message}`);
      }
    });
  }
  return written;
}

/** Bytes of one value as the syscalls read and write it: every CPU's slot, each rounded up to 8, for a per-CPU map. */
export function valueBytesOf(layout: Pick<MapLayout, 'type' | 'valueSize'>): { slots: number; stride: number; bytes: number } {
  const slots = PERCPU_TYPES.has(layout.type) ? numPossibleCpus() : 1;
  const stride = slots > 1 ? roundUp(layout.valueSize) : layout.valueSize;
  return { slots, stride, bytes: stride * slots };
}

/** Every entry of the map now, in blocks (an array: every index, in one). */
export function readEntryChunks(map: string, fd: number, layout: MapLayout): Chunk[] {
  const { bytes } = valueBytesOf(layout);
  if (!ARRAY_TYPES.has(layout.type)) return readChunks(map, fd, layout, bytes);
  const c: Chunk = { keys: Buffer.alloc(layout.maxEntries * ARRAY_KEY_BYTES), values: Buffer.alloc(layout.maxEntries * bytes), count: 0 };
  const value = Buffer.alloc(bytes);
  for (let index = 0; index < layout.maxEntries; index++) {
    if (!mapLookupElem(fd, u32(index), value, `map ${map}`)) continue;
    c.keys.writeUInt32LE(index, c.count * ARRAY_KEY_BYTES);
    value.copy(c.values, c.count * bytes);
    c.count++;
  }
  return [c];
}

/** True for the types whose every index exists (arrays). */
export function isArrayType(type: number): boolean {
  return ARRAY_TYPES.has(type);
}

function chunkKeys(c: Chunk, keySize: number): Buffer[] {
  return Array.from({ length: c.count }, (_, i) => c.keys.subarray(i * keySize, (i + 1) * keySize));
}

/** Every entry of a hash map or trie, values of valueBytes (all CPUs' slots): in batches where the kernel can. */
function readChunks(map: string, fd: number, layout: MapLayout, valueBytes: number): Chunk[] {
  const batched = BATCH_TYPES.has(layout.type) ? readBatched(map, fd, layout.keySize, valueBytes) : null;
  if (batched) return batched;
  const keys = allKeys(map, fd, layout.keySize, layout.maxEntries);
  const chunk: Chunk = { keys: Buffer.alloc(keys.length * layout.keySize), values: Buffer.alloc(keys.length * valueBytes), count: 0 };
  const value = Buffer.alloc(valueBytes);
  for (const key of keys) {
    if (!mapLookupElem(fd, key, value, `map ${map}`)) continue; // gone since it was listed
    key.copy(chunk.keys, chunk.count * layout.keySize);
    value.copy(chunk.values, chunk.count * valueBytes);
    chunk.count++;
  }
  return [chunk];
}

/**
 * BPF_MAP_LOOKUP_BATCH over the whole map, BATCH_ENTRIES at a time (a
 * syscall or three per entry cost an agent start about 25 µs per conntrack
 * entry); null when the kernel refuses batches, for the caller to walk keys.
 */
function readBatched(map: string, fd: number, keySize: number, valueBytes: number): Chunk[] | null {
  const b = batchLib();
  const count = Buffer.alloc(4);
  const out: Chunk[] = [];
  let inBatch: Buffer | null = null;
  for (;;) {
    const chunk: Chunk = { keys: Buffer.alloc(keySize * BATCH_ENTRIES), values: Buffer.alloc(valueBytes * BATCH_ENTRIES), count: 0 };
    const outBatch = Buffer.alloc(Math.max(keySize, BATCH_TOKEN_BYTES));
    count.writeUInt32LE(BATCH_ENTRIES);
    const ret = Number(b.lookupBatch(fd, inBatch, outBatch, chunk.keys, chunk.values, count, null));
    chunk.count = count.readUInt32LE();
    if (chunk.count > 0) out.push(chunk);
    if (ret === -osConstants.errno.ENOENT) return out; // the end
    if (ret < 0) {
      if (out.length === 0 && BATCH_UNSUPPORTED.has(-ret)) return null;
      throw new MapMigrationError(map, `read in batches: errno ${-ret}`);
    }
    inBatch = outBatch;
  }
}

/** BPF_MAP_UPDATE_BATCH of count entries. */
function writeBatch(map: string, fd: number, keys: Buffer, values: Buffer, count: number, total: number): void {
  const n = Buffer.alloc(4);
  n.writeUInt32LE(count);
  const ret = Number(batchLib().updateBatch(fd, keys, values, n, null));
  if (ret < 0) throw new MapMigrationError(map, `copying ${total} entries: errno ${-ret} after ${n.readUInt32LE()} of a batch of ${count}`);
}

type Fn = (...args: unknown[]) => unknown;
let batchBindings: { lookupBatch: Fn; updateBatch: Fn } | undefined;

/** libbpf's batch calls (bound here: only a migration uses them). */
function batchLib(): { lookupBatch: Fn; updateBatch: Fn } {
  if (batchBindings) return batchBindings;
  const bpf = koffi.load('libbpf.so.1');
  batchBindings = {
    lookupBatch: bpf.func('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)'),
    updateBatch: bpf.func('int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)'),
  };
  return batchBindings;
}

/** Every key of the map (a snapshot taken before copying: a live map changes while it is walked). */
function allKeys(map: string, fd: number, keySize: number, maxEntries: number): Buffer[] {
  // A key deleted under the walk sends it back to the first key: seen keys are skipped, and the walk is bounded.
  const keys = new Map<string, Buffer>();
  let prev: Buffer | null = null;
  for (let step = 0; step < WALK_STEPS_PER_ENTRY * maxEntries + 1; step++) {
    const next = Buffer.alloc(keySize);
    if (!mapGetNextKey(fd, prev, next, `map ${map}`)) break;
    keys.set(next.toString('hex'), next);
    prev = next;
  }
  return [...keys.values()];
}

function roundUp(bytes: number): number {
  return Math.ceil(bytes / PERCPU_SLOT_ALIGN_BYTES) * PERCPU_SLOT_ALIGN_BYTES;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(ARRAY_KEY_BYTES);
  b.writeUInt32LE(n);
  return b;
}
