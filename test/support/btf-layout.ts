/**
 * The BTF of an eBPF object as the Makefile builds it, read with `bpftool btf dump`, and
 * what the ABI mirror tests compare against it: struct layouts in the shape of abi.ts's
 * StructLayout, enum values, and the key/value sizes and capacities of the map definitions.
 * No root: clang and bpftool only.
 */
import { execFileSync } from 'node:child_process';
import { expect } from 'vitest';
import type { StructLayout } from '../../datapath/abi.ts';
import { DATAPATH_OBJECT, withMakefileBuild, type MakefileObject } from './bpf-build.ts';

const BITS_PER_BYTE = 8;

/** One type of `bpftool btf dump ... format raw -j`, the fields these tests read. */
export interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  values?: { name: string; val: number }[];
  vars?: { name: string; type_id: number }[];
}

/** A map definition of .maps: its fields (type, key, value, max_entries...) by name. */
export type MapDefinition = Record<string, BtfType>;

/** The types of one compiled object, looked up by kind and name or by id. */
export class ObjectBtf {
  readonly types: readonly BtfType[];
  /** Names the object in errors. */
  readonly objectName: string;

  constructor(types: readonly BtfType[], objectName: string) {
    this.types = types;
    this.objectName = objectName;
  }

  /** The type of that kind and name; throws when the object has none. */
  type(kind: string, name: string): BtfType {
    const found = this.types.find((t) => t.kind === kind && t.name === name);
    if (!found) throw new Error(`${kind} ${name} not in the BTF of ${this.objectName}`);
    return found;
  }

  /** The type with that id; throws when there is none. */
  byId(id: number): BtfType {
    const found = this.types.find((t) => t.id === id);
    if (!found) throw new Error(`BTF type ${id} missing from ${this.objectName}`);
    return found;
  }

  /** The layout of a struct as the compiler produced it; a bit field fails the test. */
  structLayout(name: string): StructLayout {
    const struct = this.type('STRUCT', name);
    const members: Record<string, number> = {};
    for (const m of struct.members ?? []) {
      expect(m.bits_offset % BITS_PER_BYTE, `${name}.${m.name} is a bit field`).toBe(0);
      members[m.name] = m.bits_offset / BITS_PER_BYTE;
    }
    return { name, size: struct.size ?? -1, members };
  }

  /**
   * The values of an enum by their C names. Enums, not #defines, on the C side: BTF carries the
   * values the compiler computed (sizes, offsetof), which a regex over the header could not evaluate.
   */
  enumValues(name: string): Record<string, number> {
    return Object.fromEntries((this.type('ENUM', name).values ?? []).map((v) => [v.name, v.val]));
  }

  /** The BTF struct a map definition in .maps declares: its members are __uint/__type pointers. */
  mapDefinition(name: string): MapDefinition {
    const maps = this.type('DATASEC', '.maps');
    const v = (maps.vars ?? []).map((x) => this.byId(x.type_id)).find((t) => t.name === name);
    if (!v || v.type_id === undefined) throw new Error(`map ${name} not in .maps of ${this.objectName}`);
    const struct = this.byId(v.type_id);
    return Object.fromEntries((struct.members ?? []).map((m) => [m.name, this.byId(this.byId(m.type_id).type_id!)]));
  }

  /** A `__uint(field, N)` of a map definition: an array of N elements behind the pointer. */
  uintOf(def: MapDefinition, field: string): number {
    const t = def[field];
    if (!t || t.kind !== 'ARRAY') throw new Error(`map field ${field} is not __uint()`);
    return t.nr_elems!;
  }

  /** sizeof the `__type(field, T)` of a map definition, through typedefs and qualifiers. */
  sizeOfType(def: MapDefinition, field: string): number {
    let t = def[field]!;
    while (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE') t = this.byId(t.type_id!);
    if (t.size === undefined) throw new Error(`no size for ${field}`);
    return t.size;
  }
}

/** Builds the object with the Makefile's own rule and flags and reads its BTF. */
export function btfOfMakefileBuild(which: MakefileObject = DATAPATH_OBJECT): ObjectBtf {
  return withMakefileBuild((object) => {
    const json = execFileSync('bpftool', ['btf', 'dump', 'file', object, 'format', 'raw', '-j'], { encoding: 'utf8' });
    return new ObjectBtf((JSON.parse(json) as { types: BtfType[] }).types, which.file);
  }, which);
}

/** Fails unless the two layouts agree on name, size, member names, order and offsets. */
export function expectSameLayout(actual: StructLayout, mirror: StructLayout): void {
  expect(mirror.name).toBe(actual.name);
  expect(mirror.size, `sizeof(struct ${actual.name})`).toBe(actual.size);
  expect(Object.keys(mirror.members), `members of struct ${actual.name}`).toEqual(Object.keys(actual.members));
  expect(mirror.members, `offsets in struct ${actual.name}`).toEqual(actual.members);
}
