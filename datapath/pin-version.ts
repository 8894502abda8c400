/**
 * What the pins under a datapath's directory are (issue 33, step 1): the
 * version of the object that pinned them (a hash of its bytes), recorded in
 * a small pinned array map of its own beside the object's maps (bpffs holds
 * no plain files), and each pinned map's layout, which the kernel keeps and
 * reports (type, key and value size, max entries, flags, and the fields of
 * key and value in its BTF: a reordered key of the same size is a change).
 *
 * An agent compares both with the object it carries before it touches the
 * pins: the same layouts may be adopted; a changed layout is migrated where
 * map-migration.ts says it can be (pin-migration.ts), and otherwise refused
 * with the maps named, nothing pinned removed, so the node keeps forwarding
 * with the datapath it has.
 */
import { createHash } from 'node:crypto';
import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readMapInfo, type MapInfo } from './bpf-info.ts';
import { definedMapTypes, fieldsDiffer, pinnedMapTypes, type MapTypes } from './map-btf.ts';
import { closeFd, closeObject, mapCreate, mapDefinitions, mapLookupElem, mapUpdateElem, objGet, objPin, openObjectFromMemory, type MapDefinition } from './libbpf.ts';

/** The pinned map that records the version (not part of the object: the agent makes it). */
export const VERSION_MAP = 'sluice_version';
const BPF_MAP_TYPE_ARRAY = 2;
const VERSION_BYTES = 64;

/** The version of a datapath object: the start of the SHA-256 of its bytes. */
export function datapathVersion(objectBytes: Buffer): string {
  return createHash('sha256').update(objectBytes).digest('hex').slice(0, 16);
}

/** The version recorded beside the maps, or null when none is (pins of an agent older than the record). */
export function readPinnedVersion(mapsDir: string): string | null {
  const path = join(mapsDir, VERSION_MAP);
  if (!existsSync(path)) return null;
  const fd = objGet(path, 'datapath version map');
  try {
    const value = Buffer.alloc(VERSION_BYTES);
    if (!mapLookupElem(fd, Buffer.alloc(4), value, 'datapath version')) return null;
    const text = value.subarray(0, value.indexOf(0) < 0 ? VERSION_BYTES : value.indexOf(0)).toString('ascii');
    return text || null;
  } finally {
    closeFd(fd);
  }
}

/** Records the version beside the maps (replacing an earlier record). */
export function pinVersion(mapsDir: string, version: string): void {
  const path = join(mapsDir, VERSION_MAP);
  const fd = mapCreate(BPF_MAP_TYPE_ARRAY, VERSION_MAP, 4, VERSION_BYTES, 1);
  try {
    const value = Buffer.alloc(VERSION_BYTES);
    value.write(version, 'ascii');
    mapUpdateElem(fd, Buffer.alloc(4), value, 0, 'datapath version');
    if (existsSync(path)) unlinkSync(path);
    objPin(fd, path, 'datapath version map');
  } finally {
    closeFd(fd);
  }
}

/** A pinned map whose layout differs from the object's definition of it. */
export interface LayoutChange {
  map: string;
  pinned: Pick<MapInfo, 'type' | 'keySize' | 'valueSize' | 'maxEntries' | 'mapFlags'>;
  wanted: Pick<MapDefinition, 'type' | 'keySize' | 'valueSize' | 'maxEntries' | 'mapFlags'>;
  /** Where the fields differ (BTF of the pinned map and of the object) though the sizes may not. */
  fields: ('key' | 'value')[];
}

const FIELDS = [
  ['type', 'type'],
  ['keySize', 'key size'],
  ['valueSize', 'value size'],
  ['maxEntries', 'max entries'],
  ['mapFlags', 'flags'],
] as const;

/** What differs, in words: "value size 24 pinned, 28 in this agent's datapath". */
export function describeChange(c: LayoutChange): string {
  const diffs = FIELDS.filter(([k]) => c.pinned[k] !== c.wanted[k]).map(([k, label]) => `${label} ${c.pinned[k]} pinned, ${c.wanted[k]} in this agent's datapath`);
  for (const part of c.fields) diffs.push(`${part} fields differ`);
  return `map ${c.map}: ${diffs.join('; ')}`;
}

/** The pinned maps (under mapsDir) whose layout the object defines differently; maps not pinned are not compared. */
export function layoutChanges(objectBytes: Buffer, mapsDir: string, objectName: string): LayoutChange[] {
  // Opened, never loaded: libbpf reads the definitions; nothing pinned is touched.
  const obj = openObjectFromMemory(objectBytes, { objectName, pinRootPath: mapsDir });
  let defs: (MapDefinition & { types: MapTypes })[];
  try {
    defs = mapDefinitions(obj).map((def) => ({ ...def, types: definedMapTypes(obj, def.name) }));
  } finally {
    closeObject(obj);
  }
  const changes: LayoutChange[] = [];
  for (const def of defs) {
    const path = join(mapsDir, def.name);
    if (!existsSync(path)) continue;
    const fd = objGet(path, `map ${def.name}`);
    try {
      const info = readMapInfo(fd, `map ${def.name}`);
      const types = pinnedMapTypes(fd, `map ${def.name}`);
      const fields = (['key', 'value'] as const).filter((part) => fieldsDiffer(types[part], def.types[part]));
      if (FIELDS.some(([k]) => info[k] !== def[k]) || fields.length > 0) {
        changes.push({
          map: def.name,
          pinned: { type: info.type, keySize: info.keySize, valueSize: info.valueSize, maxEntries: info.maxEntries, mapFlags: info.mapFlags },
          wanted: { type: def.type, keySize: def.keySize, valueSize: def.valueSize, maxEntries: def.maxEntries, mapFlags: def.mapFlags },
          fields,
        });
      }
    } finally {
      closeFd(fd);
    }
  }
  return changes;
}

/** The agent's datapath cannot take over these pins: layouts changed in ways no migration covers (map-migration.ts). */
export class DatapathLayoutError extends Error {
  readonly changes: LayoutChange[];
  /** The maps that cannot be migrated, and why. */
  readonly refused: { map: string; reason: string }[];
  constructor(pinDir: string, changes: LayoutChange[], refused: { map: string; reason: string }[] = []) {
    const all = changes.map(describeChange).join('; ');
    const why = refused.length > 0 ? `${refused.map((r) => `map ${r.map}: ${r.reason}`).join('; ')} (all changes: ${all})` : all;
    super(
      `the datapath pinned under ${pinDir} has other map layouts than this agent's, and they cannot be migrated: ` +
        `${why}. Nothing was changed: the node keeps forwarding with the pinned datapath. ` +
        `Run the agent version that pinned it, or remove ${pinDir} to start afresh (every pod's conntrack and policy state is lost and its traffic cut until it is rewired).`,
    );
    this.name = 'DatapathLayoutError';
    this.changes = changes;
    this.refused = refused;
  }
}
