// The TS mirror of the socket load balancer (datapath/service-lb-abi.ts) must match
// bpf/service-lb.h as the compiler laid it out: read back through the BTF of the object the
// Makefile builds, so a change on either side alone fails here. No root: clang and bpftool only.
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { SERVICE_LB_OBJECT, withMakefileBuild } from './support/bpf-build.ts';
import {
  LB_AFFINITY_KEY,
  LB_AFFINITY_VALUE,
  LB_BACKEND,
  LB_BACKEND_ID_SIZE,
  LB_FLOWS_VALUE_SIZE,
  LB_MAX_AFFINITY,
  LB_MAX_BACKENDS,
  LB_MAX_REVNAT,
  LB_MAX_SERVICE_SLOTS,
  LB_MAX_SLOTS_PER_SERVICE,
  LB_REVNAT_KEY,
  LB_REVNAT_VALUE,
  LB_SERVICE_KEY,
  LB_SERVICE_VALUE,
  LbFamily,
  LbServiceFlags,
  decodeBackend,
  decodeServiceKey,
  decodeServiceValue,
  encodeBackend,
  encodeServiceHead,
  encodeServiceKey,
  encodeServiceSlot,
} from '../datapath/service-lb-abi.ts';
import type { StructLayout } from '../datapath/abi.ts';
const BITS_PER_BYTE = 8;

interface BtfType {
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

let types: BtfType[] = [];

beforeAll(() => {
  types = withMakefileBuild((object) => {
    const json = execFileSync('bpftool', ['btf', 'dump', 'file', object, 'format', 'raw', '-j'], { encoding: 'utf8' });
    return (JSON.parse(json) as { types: BtfType[] }).types;
  }, SERVICE_LB_OBJECT);
});

function btfType(kind: string, name: string): BtfType {
  const found = types.find((t) => t.kind === kind && t.name === name);
  if (!found) throw new Error(`${kind} ${name} not in the BTF of the service-lb object`);
  return found;
}

function byId(id: number): BtfType {
  const found = types.find((t) => t.id === id);
  if (!found) throw new Error(`BTF type ${id} missing`);
  return found;
}

function layoutFromBtf(name: string): StructLayout {
  const struct = btfType('STRUCT', name);
  const members: Record<string, number> = {};
  for (const m of struct.members ?? []) {
    expect(m.bits_offset % BITS_PER_BYTE, `${name}.${m.name} is a bit field`).toBe(0);
    members[m.name] = m.bits_offset / BITS_PER_BYTE;
  }
  return { name, size: struct.size ?? -1, members };
}

function enumFromBtf(name: string): Record<string, number> {
  return Object.fromEntries((btfType('ENUM', name).values ?? []).map((v) => [v.name, v.val]));
}

/** The BTF struct a map definition in .maps declares: its members are __uint/__type pointers. */
function mapDefinition(name: string): Record<string, BtfType> {
  const maps = btfType('DATASEC', '.maps');
  const v = (maps.vars ?? []).map((x) => byId(x.type_id)).find((t) => t.name === name);
  if (!v || v.type_id === undefined) throw new Error(`map ${name} not in .maps`);
  const struct = byId(v.type_id);
  return Object.fromEntries((struct.members ?? []).map((m) => [m.name, byId(byId(m.type_id).type_id!)]));
}

/** A `__uint(field, N)` of a map definition: an array of N elements behind the pointer. */
function uintOf(def: Record<string, BtfType>, field: string): number {
  const t = def[field];
  if (!t || t.kind !== 'ARRAY') throw new Error(`map field ${field} is not __uint()`);
  return t.nr_elems!;
}

/** sizeof the `__type(field, T)` of a map definition. */
function sizeOfType(def: Record<string, BtfType>, field: string): number {
  let t = def[field]!;
  while (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE') t = byId(t.type_id!);
  if (t.size === undefined) throw new Error(`no size for ${field}`);
  return t.size;
}

describe('service-lb-abi.ts mirrors bpf/service-lb.h', () => {
  for (const mirror of [LB_SERVICE_KEY, LB_SERVICE_VALUE, LB_BACKEND, LB_REVNAT_KEY, LB_REVNAT_VALUE, LB_AFFINITY_KEY, LB_AFFINITY_VALUE]) {
    it(`struct ${mirror.name} has the same size, members and offsets`, () => {
      const actual = layoutFromBtf(mirror.name);
      expect(mirror.size, `sizeof(struct ${mirror.name})`).toBe(actual.size);
      expect(Object.keys(mirror.members)).toEqual(Object.keys(actual.members));
      expect(mirror.members).toEqual(actual.members);
    });
  }

  it('its enums have the values of service-lb-abi.ts', () => {
    expect(enumFromBtf('sluice_lb_limits')).toEqual({
      SLUICE_LB_MAX_SERVICE_SLOTS: LB_MAX_SERVICE_SLOTS,
      SLUICE_LB_MAX_BACKENDS: LB_MAX_BACKENDS,
      SLUICE_LB_MAX_REVNAT: LB_MAX_REVNAT,
      SLUICE_LB_MAX_SLOTS_PER_SERVICE: LB_MAX_SLOTS_PER_SERVICE,
      SLUICE_LB_MAX_AFFINITY: LB_MAX_AFFINITY,
    });
    expect(enumFromBtf('sluice_lb_service_flags')).toEqual({ SLUICE_LB_F_AFFINITY: LbServiceFlags.AFFINITY });
    expect(enumFromBtf('sluice_lb_family')).toEqual({ SLUICE_LB_FAMILY_V4: LbFamily.V4, SLUICE_LB_FAMILY_V6: LbFamily.V6 });
  });

  it('the maps have the key and value sizes and capacities the agent opens them with', () => {
    const expectMap = (name: string, key: number, value: number, max: number) => {
      const def = mapDefinition(name);
      expect(sizeOfType(def, 'key'), `${name} key`).toBe(key);
      expect(sizeOfType(def, 'value'), `${name} value`).toBe(value);
      expect(uintOf(def, 'max_entries'), `${name} max_entries`).toBe(max);
    };
    expectMap('lb_services', LB_SERVICE_KEY.size, LB_SERVICE_VALUE.size, LB_MAX_SERVICE_SLOTS);
    expectMap('lb_backends', LB_BACKEND_ID_SIZE, LB_BACKEND.size, LB_MAX_BACKENDS);
    expectMap('lb_revnat', LB_REVNAT_KEY.size, LB_REVNAT_VALUE.size, LB_MAX_REVNAT);
    expectMap('lb_backend_flows', LB_BACKEND_ID_SIZE, LB_FLOWS_VALUE_SIZE, LB_MAX_BACKENDS);
    expectMap('lb_affinity', LB_AFFINITY_KEY.size, LB_AFFINITY_VALUE.size, LB_MAX_AFFINITY);
  });

  it('a layout that differs from the compiled one fails the comparison', () => {
    expect(layoutFromBtf('lb_service_key').members).not.toEqual({ ...LB_SERVICE_KEY.members, slot: 18, protocol: 20 });
  });
});

describe('encoding', () => {
  it('frontend keys carry the port in network order, IPv4 in the first 4 bytes, and round-trip', () => {
    const key = encodeServiceKey({ address: '10.96.0.10', port: 80, protocol: 'TCP' }, 3);
    expect([...key.subarray(0, 4)]).toEqual([10, 96, 0, 10]);
    expect(key.subarray(4, 16).every((b) => b === 0)).toBe(true);
    expect([...key.subarray(16, 18)]).toEqual([0, 80]);
    expect(decodeServiceKey(key)).toEqual({ address: '10.96.0.10', port: 80, protocol: 'TCP', slot: 3 });
    expect(decodeServiceKey(encodeServiceKey({ address: 'fd00:96::a', port: 53, protocol: 'UDP' }, 0))).toEqual({ address: 'fd00:96::a', port: 53, protocol: 'UDP', slot: 0 });
  });

  it('slot values and backends round-trip', () => {
    expect(decodeServiceValue(encodeServiceHead(7))).toEqual({ backendId: 0, count: 7, affinityTimeoutSec: 0 });
    expect(decodeServiceValue(encodeServiceHead(2, 10_800))).toEqual({ backendId: 0, count: 2, affinityTimeoutSec: 10_800 });
    expect(decodeServiceValue(encodeServiceSlot(65535))).toEqual({ backendId: 65535, count: 0, affinityTimeoutSec: 0 });
    expect(decodeBackend(encodeBackend({ address: '10.244.0.2', port: 8080, protocol: 'TCP' }))).toEqual({ address: '10.244.0.2', port: 8080, protocol: 'TCP' });
    expect(decodeBackend(encodeBackend({ address: 'fd00:244::2', port: 65535, protocol: 'UDP' }))).toEqual({ address: 'fd00:244::2', port: 65535, protocol: 'UDP' });
  });
});
