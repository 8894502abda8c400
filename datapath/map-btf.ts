/**
 * The fields of a map's value, from BTF: of a pinned map as the kernel keeps
 * it (the map's btf_id and value type id), or of a map an opened object
 * defines (the object's BTF). A migration (map-migration.ts) needs them to
 * tell fields added at the end of a value, whose old bytes can be copied,
 * from a value whose layout changed in the middle, which cannot.
 *
 * libbpf parses the BTF; the few libbpf calls are bound here (koffi) rather
 * than in libbpf.ts because only a migration needs them.
 */
import koffi from 'koffi';
import { objGetInfo, type BpfObjectHandle } from './libbpf.ts';

const LIBBPF_SONAME = 'libbpf.so.1';
/** Room for struct bpf_map_info; btf_id and btf_value_type_id are at 64 and 72 on Linux 5.x/6.x. */
const MAP_INFO_BYTES = 96;
const MAP_INFO_BTF_ID = 64;
const MAP_INFO_BTF_KEY_TYPE_ID = 68;
const MAP_INFO_BTF_VALUE_TYPE_ID = 72;

/** BTF_KIND_* of linux/btf.h that matter here. */
const BTF_KIND_STRUCT = 4;
const BTF_KIND_UNION = 5;
const BTF_KIND_TYPEDEF = 8;
const BTF_KIND_VOLATILE = 9;
const BTF_KIND_CONST = 10;
const BTF_KIND_RESTRICT = 11;
const BTF_KIND_TYPE_TAG = 18;
const MODIFIER_KINDS = new Set([BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG]);
/** struct btf_type is 3 u32 (name_off, info, size/type); each struct btf_member after it 3 u32 (name_off, type, offset). */
const BTF_TYPE_WORDS = 3;
const BTF_MEMBER_WORDS = 3;
const BITS_PER_BYTE = 8;

/** One field of a value: its name, where it starts (bits) and how many bytes its type takes. */
export interface ValueField {
  name: string;
  bitOffset: number;
  bytes: number;
}

/** A value's type as BTF describes it: its name, and its fields when it is a struct (null for a scalar or array). */
export interface ValueLayout {
  typeName: string;
  fields: ValueField[] | null;
}

type Fn = (...args: unknown[]) => unknown;
let bound: { loadById: Fn; free: Fn; typeById: Fn; nameByOffset: Fn; resolveSize: Fn; objectBtf: Fn; findMap: Fn; keyTypeId: Fn; valueTypeId: Fn } | undefined;

function lib(): NonNullable<typeof bound> {
  if (bound) return bound;
  const bpf = koffi.load(LIBBPF_SONAME);
  const btfPtr = koffi.pointer(koffi.opaque());
  const objectPtr = koffi.pointer(koffi.opaque());
  const mapPtr = koffi.pointer(koffi.opaque());
  bound = {
    loadById: bpf.func('btf__load_from_kernel_by_id', btfPtr, ['uint32_t']),
    free: bpf.func('btf__free', 'void', [btfPtr]),
    typeById: bpf.func('btf__type_by_id', 'void *', [btfPtr, 'uint32_t']),
    nameByOffset: bpf.func('btf__name_by_offset', 'const char *', [btfPtr, 'uint32_t']),
    resolveSize: bpf.func('btf__resolve_size', 'int64_t', [btfPtr, 'uint32_t']),
    objectBtf: bpf.func('bpf_object__btf', btfPtr, [objectPtr]),
    findMap: bpf.func('bpf_object__find_map_by_name', mapPtr, [objectPtr, 'const char *']),
    keyTypeId: bpf.func('bpf_map__btf_key_type_id', 'uint32_t', [mapPtr]),
    valueTypeId: bpf.func('bpf_map__btf_value_type_id', 'uint32_t', [mapPtr]),
  };
  return bound;
}

/** The key and value layouts of a map, each null where there is no BTF for it. */
export interface MapTypes {
  key: ValueLayout | null;
  value: ValueLayout | null;
}

/** The key and value layouts of the pinned map behind `fd` (null without BTF). */
export function pinnedMapTypes(fd: number, what: string): MapTypes {
  const info = Buffer.alloc(MAP_INFO_BYTES);
  objGetInfo(fd, info, what);
  const btfId = info.readUInt32LE(MAP_INFO_BTF_ID);
  if (btfId === 0) return { key: null, value: null };
  const b = lib();
  const btf = b.loadById(btfId);
  if (!btf) return { key: null, value: null };
  try {
    const at = (typeId: number): ValueLayout | null => (typeId === 0 ? null : valueLayout(btf, typeId));
    return { key: at(info.readUInt32LE(MAP_INFO_BTF_KEY_TYPE_ID)), value: at(info.readUInt32LE(MAP_INFO_BTF_VALUE_TYPE_ID)) };
  } finally {
    b.free(btf);
  }
}

/** The value layout of the pinned map behind `fd`, or null when it was created without BTF. */
export function pinnedValueLayout(fd: number, what: string): ValueLayout | null {
  return pinnedMapTypes(fd, what).value;
}

/** The key and value layouts the opened (not necessarily loaded) object gives its map `name` (null without BTF). */
export function definedMapTypes(obj: BpfObjectHandle, name: string): MapTypes {
  const b = lib();
  const btf = b.objectBtf(obj);
  const map = b.findMap(obj, name);
  if (!btf || !map) return { key: null, value: null };
  const at = (typeId: number): ValueLayout | null => (typeId === 0 ? null : valueLayout(btf, typeId));
  return { key: at(Number(b.keyTypeId(map))), value: at(Number(b.valueTypeId(map))) };
}

/** The value layout the opened (not necessarily loaded) object gives its map `name`, or null without BTF. */
export function definedValueLayout(obj: BpfObjectHandle, name: string): ValueLayout | null {
  return definedMapTypes(obj, name).value;
}

/** True when both layouts are known and their fields differ (a name, an offset or a size). */
export function fieldsDiffer(a: ValueLayout | null, b: ValueLayout | null): boolean {
  if (!a || !b) return false;
  if (!a.fields || !b.fields) return (a.fields === null) !== (b.fields === null);
  return a.fields.length !== b.fields.length || a.fields.some((f, i) => f.name !== b.fields![i]!.name || f.bitOffset !== b.fields![i]!.bitOffset || f.bytes !== b.fields![i]!.bytes);
}

function valueLayout(btf: unknown, typeId: number): ValueLayout | null {
  const b = lib();
  let id = typeId;
  for (;;) {
    const ptr = b.typeById(btf, id);
    if (!ptr) return null;
    const [nameOff, info, sizeOrType] = koffi.decode(ptr, koffi.array('uint32_t', BTF_TYPE_WORDS)) as number[];
    const kind = (info >>> 24) & 0x1f;
    if (MODIFIER_KINDS.has(kind)) {
      id = sizeOrType;
      continue;
    }
    const typeName = String(b.nameByOffset(btf, nameOff) ?? '');
    if (kind !== BTF_KIND_STRUCT && kind !== BTF_KIND_UNION) return { typeName, fields: null };
    const vlen = info & 0xffff;
    const bitfields = info >>> 31 === 1;
    const words = koffi.decode(ptr, koffi.array('uint32_t', BTF_TYPE_WORDS + vlen * BTF_MEMBER_WORDS)) as number[];
    const fields: ValueField[] = [];
    for (let i = 0; i < vlen; i++) {
      const at = BTF_TYPE_WORDS + i * BTF_MEMBER_WORDS;
      const memberType = words[at + 1];
      // With kind_flag set the offset word carries a bitfield size in its top 8 bits.
      const bitOffset = bitfields ? words[at + 2] & 0xffffff : words[at + 2];
      fields.push({ name: String(b.nameByOffset(btf, words[at]) ?? ''), bitOffset, bytes: Number(b.resolveSize(btf, memberType)) });
    }
    return { typeName, fields };
  }
}

/** Where the last field ends, in bytes (the bytes a copy of the value must keep). */
export function fieldsEnd(fields: readonly ValueField[]): number {
  return fields.reduce((end, f) => Math.max(end, Math.ceil(f.bitOffset / BITS_PER_BYTE) + f.bytes), 0);
}
