// The TS mirror of the socket load balancer (datapath/service-lb-abi.ts) must match
// bpf/service-lb.h as the compiler laid it out: read back through the BTF of the object the
// Makefile builds, so a change on either side alone fails here. No root: clang and bpftool only.
import { beforeAll, describe, expect, it } from 'vitest';
import { SERVICE_LB_OBJECT } from './support/bpf-build.ts';
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
import { btfOfMakefileBuild, expectSameLayout, type ObjectBtf } from './support/btf-layout.ts';

let btf: ObjectBtf;

beforeAll(() => {
  btf = btfOfMakefileBuild(SERVICE_LB_OBJECT);
});

describe('service-lb-abi.ts mirrors bpf/service-lb.h', () => {
  for (const mirror of [LB_SERVICE_KEY, LB_SERVICE_VALUE, LB_BACKEND, LB_REVNAT_KEY, LB_REVNAT_VALUE, LB_AFFINITY_KEY, LB_AFFINITY_VALUE]) {
    it(`struct ${mirror.name} has the same size, members and offsets`, () => {
      expectSameLayout(btf.structLayout(mirror.name), mirror);
    });
  }

  it('its enums have the values of service-lb-abi.ts', () => {
    expect(btf.enumValues('sluice_lb_limits')).toEqual({
      SLUICE_LB_MAX_SERVICE_SLOTS: LB_MAX_SERVICE_SLOTS,
      SLUICE_LB_MAX_BACKENDS: LB_MAX_BACKENDS,
      SLUICE_LB_MAX_REVNAT: LB_MAX_REVNAT,
      SLUICE_LB_MAX_SLOTS_PER_SERVICE: LB_MAX_SLOTS_PER_SERVICE,
      SLUICE_LB_MAX_AFFINITY: LB_MAX_AFFINITY,
    });
    expect(btf.enumValues('sluice_lb_service_flags')).toEqual({ SLUICE_LB_F_AFFINITY: LbServiceFlags.AFFINITY });
    expect(btf.enumValues('sluice_lb_family')).toEqual({ SLUICE_LB_FAMILY_V4: LbFamily.V4, SLUICE_LB_FAMILY_V6: LbFamily.V6 });
  });

  it('the maps have the key and value sizes and capacities the agent opens them with', () => {
    const expectMap = (name: string, key: number, value: number, max: number) => {
      const def = btf.mapDefinition(name);
      expect(btf.sizeOfType(def, 'key'), `${name} key`).toBe(key);
      expect(btf.sizeOfType(def, 'value'), `${name} value`).toBe(value);
      expect(btf.uintOf(def, 'max_entries'), `${name} max_entries`).toBe(max);
    };
    expectMap('lb_services', LB_SERVICE_KEY.size, LB_SERVICE_VALUE.size, LB_MAX_SERVICE_SLOTS);
    expectMap('lb_backends', LB_BACKEND_ID_SIZE, LB_BACKEND.size, LB_MAX_BACKENDS);
    expectMap('lb_revnat', LB_REVNAT_KEY.size, LB_REVNAT_VALUE.size, LB_MAX_REVNAT);
    expectMap('lb_backend_flows', LB_BACKEND_ID_SIZE, LB_FLOWS_VALUE_SIZE, LB_MAX_BACKENDS);
    expectMap('lb_affinity', LB_AFFINITY_KEY.size, LB_AFFINITY_VALUE.size, LB_MAX_AFFINITY);
  });

  it('a layout that differs from the compiled one fails the comparison', () => {
    expect(btf.structLayout('lb_service_key').members).not.toEqual({ ...LB_SERVICE_KEY.members, slot: 18, protocol: 20 });
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
