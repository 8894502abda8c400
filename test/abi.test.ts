// The TS mirror (datapath/abi.ts) must match bpf/sluice.h as the compiler laid it out: read
// back through the BTF of the compiled object, so a change on either side alone fails here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { btfOfMakefileBuild, expectSameLayout, type ObjectBtf } from './support/btf-layout.ts';
import {
  CIDR_POLICY_FIXED_BITS,
  CIDR_POLICY_KEY,
  CIDR_POLICY_VALUE,
  COUNTER_NAMES,
  COUNTER_VALUE,
  CT_COUNT,
  CT_KEY,
  CT_MAX_PER_ENDPOINT,
  CT_SWEEP_RESULT,
  CT_TIMEOUT_CLOSING_SEC,
  CT_TIMEOUT_OTHER_SEC,
  CT_TIMEOUT_TCP_SEC,
  CT_VALUE,
  CT_BUCKET_REMOTE,
  CT_RESERVE_PER_ENDPOINT,
  CT_RESERVED_ENDPOINTS,
  CT_SHARED_KEY,
  Counter,
  Direction,
  ENDPOINT_INFO,
  ENDPOINT_KEY,
  EP_COUNTER_KEY,
  EVENT,
  EventBucket,
  L7_EVENT,
  L7_PAYLOAD_BYTES,
  DATAPATH_CONFIG,
  EndpointFlag,
  EventType,
  Verdict,
  FRAG_KEY,
  FRAG_MAX_PER_ENDPOINT,
  FRAG_TIMEOUT_SEC,
  FRAG_VALUE,
  IPCACHE_FIXED_BITS,
  LB_NAT_AFFINITY_KEY,
  LB_NAT_KEY,
  LB_NAT_VALUE,
  NatDir,
  IPCACHE_KEY,
  IPCACHE_VALUE,
  Identity,
  POLICY_FIXED_BITS,
  POLICY_KEY,
  POLICY_VALUE,
  PROTO_ANY,
  VXLAN_PORT,
  decodeIpcacheKey,
  decodePolicyKey,
  encodeIpcacheKey,
  encodePolicyKey,
  decodeEndpointInfo,
  decodeEndpointKey,
  encodeEndpointInfo,
  encodeEndpointKey,
  type EndpointInfo,
} from '../datapath/abi.ts';
import { RESERVED_IDENTITIES } from '../lib/identity-numbers.ts';

let btf: ObjectBtf;

beforeAll(() => {
  btf = btfOfMakefileBuild();
});

describe('abi.ts mirrors bpf/sluice.h', () => {
  const layouts = [
    ENDPOINT_KEY, ENDPOINT_INFO, COUNTER_VALUE, IPCACHE_KEY, IPCACHE_VALUE, POLICY_KEY, POLICY_VALUE,
    CIDR_POLICY_KEY, CIDR_POLICY_VALUE, CT_KEY, CT_VALUE, FRAG_KEY, FRAG_VALUE, EP_COUNTER_KEY, EVENT, L7_EVENT, DATAPATH_CONFIG,
    CT_COUNT, CT_SWEEP_RESULT, LB_NAT_KEY, LB_NAT_VALUE, LB_NAT_AFFINITY_KEY,
  ];
  for (const mirror of layouts) {
    it(`struct ${mirror.name} has the same size, members and offsets`, () => {
      expectSameLayout(btf.structLayout(mirror.name), mirror);
    });
  }

  it('enum sluice_counter has the same names and values as Counter', () => {
    const fromBtf = Object.fromEntries(
      Object.entries(btf.enumValues('sluice_counter')).map(([name, value]) => [name.replace(/^SLUICE_CTR_/, ''), value]),
    );
    expect(Counter).toEqual(fromBtf);
  });

  it('enum sluice_lpm_fixed_bits has the fixed bits abi.ts computes from the key layouts', () => {
    expect(btf.enumValues('sluice_lpm_fixed_bits')).toEqual({
      SLUICE_IPCACHE_FIXED_BITS: IPCACHE_FIXED_BITS,
      SLUICE_POLICY_FIXED_BITS: POLICY_FIXED_BITS,
      SLUICE_CIDR_POLICY_FIXED_BITS: CIDR_POLICY_FIXED_BITS,
    });
  });

  it('enum sluice_ct_timeout_sec has the conntrack timeout defaults of abi.ts', () => {
    expect(btf.enumValues('sluice_ct_timeout_sec')).toEqual({
      SLUICE_CT_TIMEOUT_TCP_SEC: CT_TIMEOUT_TCP_SEC,
      SLUICE_CT_TIMEOUT_CLOSING_SEC: CT_TIMEOUT_CLOSING_SEC,
      SLUICE_CT_TIMEOUT_OTHER_SEC: CT_TIMEOUT_OTHER_SEC,
    });
  });

  it('enum sluice_nat_dir has the directions of abi.ts', () => {
    expect(btf.enumValues('sluice_nat_dir')).toEqual({ SLUICE_NAT_ORIGINAL: NatDir.ORIGINAL, SLUICE_NAT_REPLY: NatDir.REPLY });
  });

  // #defines leave no trace in BTF: read them from the header itself.
  it('the identity, flag, direction and protocol constants match the header', () => {
    const header = readFileSync(join(import.meta.dirname, '../bpf/sluice.h'), 'utf8');
    const defines = new Map<string, number>();
    for (const m of header.matchAll(/^#define (SLUICE_\w+) (\(1u << (\d+)\)|\d+)/gm)) {
      defines.set(m[1]!, m[3] !== undefined ? 2 ** Number(m[3]) : Number(m[2]));
    }
    const want: Record<string, number> = {
      SLUICE_ID_ANY: Identity.ANY,
      SLUICE_ID_HOST: Identity.HOST,
      SLUICE_ID_WORLD: Identity.WORLD,
      SLUICE_ID_UNMANAGED: Identity.UNMANAGED,
      SLUICE_ID_REMOTE_NODE: Identity.REMOTE_NODE,
      SLUICE_ID_SERVICE: Identity.SERVICE,
      SLUICE_ID_FIRST_POD: Identity.FIRST_POD,
      SLUICE_ID_FIRST_CIDR_SELECTOR: Identity.FIRST_CIDR_SELECTOR,
      SLUICE_EP_INGRESS_ISOLATED: EndpointFlag.INGRESS_ISOLATED,
      SLUICE_EP_EGRESS_ISOLATED: EndpointFlag.EGRESS_ISOLATED,
      SLUICE_DIR_INGRESS: Direction.INGRESS,
      SLUICE_DIR_EGRESS: Direction.EGRESS,
      SLUICE_PROTO_ANY: PROTO_ANY,
      SLUICE_VXLAN_PORT: VXLAN_PORT,
      SLUICE_CT_MAX_PER_ENDPOINT: CT_MAX_PER_ENDPOINT,
      SLUICE_CT_RESERVE_PER_ENDPOINT: CT_RESERVE_PER_ENDPOINT,
      SLUICE_CT_RESERVED_ENDPOINTS: CT_RESERVED_ENDPOINTS,
      SLUICE_CT_BUCKET_REMOTE: CT_BUCKET_REMOTE,
      SLUICE_CT_SHARED_KEY: CT_SHARED_KEY,
      SLUICE_FRAG_MAX_PER_ENDPOINT: FRAG_MAX_PER_ENDPOINT,
      SLUICE_FRAG_TIMEOUT_SEC: FRAG_TIMEOUT_SEC,
      SLUICE_EVENT_VERDICT: EventType.VERDICT,
      SLUICE_EVENT_DROP: EventType.DROP,
      SLUICE_EVENT_L7: EventType.L7,
      SLUICE_EVENT_BUCKET_FLOWS: EventBucket.FLOWS,
      SLUICE_EVENT_BUCKET_L7: EventBucket.L7,
      SLUICE_L7_PAYLOAD_BYTES: L7_PAYLOAD_BYTES,
      SLUICE_VERDICT_ALLOWED: Verdict.ALLOWED,
      SLUICE_VERDICT_DENIED: Verdict.DENIED,
    };
    for (const [name, value] of Object.entries(want)) expect(defines.get(name), name).toBe(value);
  });

  it('every reserved identity of lib/identity-numbers.ts is a SLUICE_ID_* of the header', () => {
    const header = readFileSync(join(import.meta.dirname, '../bpf/sluice.h'), 'utf8');
    for (const r of RESERVED_IDENTITIES) {
      const name = `SLUICE_ID_${r.name.toUpperCase().replaceAll('-', '_')}`;
      expect(header.match(new RegExp(`^#define ${name} (\\d+)`, 'm'))?.[1], name).toBe(String(r.identity));
    }
  });

  it('a layout that differs from the compiled one fails the comparison', () => {
    const actual = btf.structLayout('endpoint_info');
    const shifted = { ...ENDPOINT_INFO, members: { ...ENDPOINT_INFO.members, ipv4: 27 } };
    const renamed = { ...COUNTER_VALUE, members: { pkts: 0, bytes: 8 } };
    expect(() => expectSameLayout(actual, shifted)).toThrow();
    expect(() => expectSameLayout(actual, { ...ENDPOINT_INFO, size: 36 })).toThrow();
    expect(() => expectSameLayout(btf.structLayout('counter_value'), renamed)).toThrow();
  });

  it('COUNTER_NAMES lists every counter but MAX in index order', () => {
    expect(COUNTER_NAMES.map((name) => Counter[name])).toEqual(Array.from({ length: COUNTER_NAMES.length }, (_, i) => i));
    expect(COUNTER_NAMES).not.toContain('MAX');
  });
});

describe('encoding', () => {
  const info: EndpointInfo = {
    ifindex: 0x01020304,
    endpointId: 42,
    identity: 70000,
    flags: 0,
    policyRev: 3,
    mac: '02:aa:bb:cc:dd:0e',
    hostMac: 'ee:ee:ee:ee:ee:01',
    ipv4: '10.250.1.2',
    ipv6: null,
  };

  it('endpoint_info round-trips and puts each field at its C offset', () => {
    const buf = encodeEndpointInfo(info);
    expect(buf.length).toBe(ENDPOINT_INFO.size);
    expect(decodeEndpointInfo(buf)).toEqual(info);
    expect(buf.readUInt32LE(ENDPOINT_INFO.members.endpoint_id!)).toBe(42);
    expect(buf.readUInt32LE(16)).toBe(3); // policy_rev
    expect(buf.subarray(32, 36)).toEqual(Buffer.from([10, 250, 1, 2]));
    expect(buf.subarray(20, 26).toString('hex')).toBe('02aabbccdd0e');
  });

  it('an endpoint without IPv4 decodes to ipv4 null', () => {
    expect(decodeEndpointInfo(encodeEndpointInfo({ ...info, ipv4: null })).ipv4).toBeNull();
  });

  it('endpoint keys hold the family and the address in network order, zero-padded', () => {
    const v4 = encodeEndpointKey({ family: 4, address: '10.250.1.2' });
    expect(v4.toString('hex')).toBe('04000000' + '0afa0102' + '00'.repeat(12));
    expect(decodeEndpointKey(v4)).toEqual({ family: 4, address: '10.250.1.2' });
  });

  it.each([
    ['fd00::1', 'fd000000000000000000000000000001', 'fd00::1'],
    ['::', '00'.repeat(16), '::'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['::ffff:10.0.0.1', '00000000000000000000ffff0a000001', '::ffff:a00:1'],
    ['fe80::', 'fe800000000000000000000000000000', 'fe80::'],
  ])('IPv6 key %s', (address, hex, canonical) => {
    const key = encodeEndpointKey({ family: 6, address });
    expect(key.subarray(4).toString('hex')).toBe(hex);
    expect(decodeEndpointKey(key)).toEqual({ family: 6, address: canonical });
  });

  it('rejects malformed MACs and addresses of the wrong family', () => {
    expect(() => encodeEndpointInfo({ ...info, mac: '02:aa:bb' })).toThrow(/MAC/);
    expect(() => encodeEndpointKey({ family: 4, address: 'fd00::1' })).toThrow(/IPv4/);
    expect(() => encodeEndpointKey({ family: 6, address: '10.0.0.1' })).toThrow(/IPv6/);
  });
});

describe('LPM keys', () => {
  it('an ipcache key counts the family word in its prefix length and round-trips', () => {
    const key = encodeIpcacheKey({ family: 4, address: '10.1.0.0', prefixLength: 16 });
    expect(key.readUInt32LE(0)).toBe(48);
    expect(decodeIpcacheKey(key)).toEqual({ family: 4, address: '10.1.0.0', prefixLength: 16 });
    expect(decodeIpcacheKey(encodeIpcacheKey({ family: 6, address: 'fd00::5', prefixLength: 128 }))).toMatchObject({ address: 'fd00::5', prefixLength: 128 });
  });
  it('a policy key puts the port in network order so port prefixes run from its high bit', () => {
    const entry = { policyId: 7, direction: Direction.INGRESS, peer: 300, protocol: 6, port: 0x1f90, portPrefixLength: 12 };
    const key = encodePolicyKey(entry);
    expect(key.readUInt32LE(0)).toBe(92);
    expect([key[14], key[15]]).toEqual([0x1f, 0x90]);
    expect(decodePolicyKey(key)).toEqual(entry);
  });
});
