/**
 * What the endpoint rebuild puts back (agent/endpoints-recovery.ts) and which
 * numbers it finds still in use in the maps (agent/kernel-numbers.ts): every
 * map that names an endpoint id or an identity counts, conntrack included,
 * so none is handed out again.
 */
import { describe, expect, it } from 'vitest';
import { planEndpoints } from '../agent/endpoints-recovery.ts';
import { readKernelNumbers, type NumberedMaps } from '../agent/kernel-numbers.ts';
import {
  CT_VALUE,
  FAMILY_IPV4,
  FRAG_KEY,
  Identity,
  encodeCidrPolicyKey,
  encodeCidrPolicyValue,
  encodeEndpointInfo,
  encodeEndpointKey,
  encodeEpCounterKey,
  encodeIpcacheKey,
  encodeIpcacheValue,
  encodePolicyKey,
  encodePolicyValue,
  encodeU32,
  policyId,
} from '../datapath/abi.ts';

/** A map in memory with the two calls the walk makes. */
function fakeMap(entries: [Buffer, Buffer][]): NumberedMaps['endpoints'] {
  const byKey = new Map(entries.map(([k, v]) => [k.toString('hex'), v]));
  return { keys: () => entries.map(([k]) => k), lookup: (k: Buffer) => byKey.get(k.toString('hex')) ?? null };
}

const info = (endpointId: number, identity: number, ifindex = 10 + endpointId) =>
  encodeEndpointInfo({ ifindex, endpointId, identity, flags: 0, policyRev: 0, mac: '02:00:00:00:00:01', hostMac: '02:00:00:00:00:02', ipv4: null, ipv6: null });

function maps(extra: Partial<Record<keyof NumberedMaps, [Buffer, Buffer][]>> = {}): NumberedMaps {
  const base: Record<keyof NumberedMaps, [Buffer, Buffer][]> = {
    endpoints: [
      [encodeEndpointKey({ family: FAMILY_IPV4, address: '10.1.0.2' }), info(3, 300)],
      [encodeEndpointKey({ family: FAMILY_IPV4, address: '10.1.0.3' }), info(4, 301)],
    ],
    devices: [],
    ipcache: [
      [encodeIpcacheKey({ family: 4, address: '10.1.0.2', prefixLength: 32 }), encodeIpcacheValue(300)],
      [encodeIpcacheKey({ family: 4, address: '10.2.0.9', prefixLength: 32 }), encodeIpcacheValue(302)],
      [encodeIpcacheKey({ family: 4, address: '10.3.0.0', prefixLength: 16 }), encodeIpcacheValue(Identity.REMOTE_NODE)],
    ],
    policy: [], cidr_policy: [], conntrack: [], ct_counts: [], ep_counters: [], fragments: [],
  };
  return Object.fromEntries(Object.entries(base).map(([name, e]) => [name, fakeMap([...e, ...(extra[name as keyof NumberedMaps] ?? [])])])) as NumberedMaps;
}

describe('readKernelNumbers', () => {
  it('finds the endpoints, each pod address\'s identity, and nothing in use above them', () => {
    const k = readKernelNumbers(maps());
    expect([...k.endpoints.values()].map((e) => [e.endpointId, e.ips, e.identity])).toEqual([[3, ['10.1.0.2'], 300], [4, ['10.1.0.3'], 301]]);
    expect([...k.identityOfAddress]).toEqual([['10.1.0.2', 300], ['10.1.0.3', 301], ['10.2.0.9', 302]]);
    expect(k).toMatchObject({ maxEndpointId: 4, maxIdentity: 302, maxSelector: Identity.FIRST_CIDR_SELECTOR });
  });

  it('counts ids and numbers that only policy, conntrack, budgets, counters or fragments still name', () => {
    const ct = Buffer.alloc(CT_VALUE.size);
    ct.writeUInt32LE(40, CT_VALUE.members.src_endpoint!);
    ct.writeUInt32LE(900, CT_VALUE.members.dst_identity!);
    ct.writeUInt32LE((0x8000_0000 | 950) >>> 0, CT_VALUE.members.charged!);
    const frag = Buffer.alloc(FRAG_KEY.size);
    frag.writeUInt32LE(41, FRAG_KEY.members.endpoint!);
    const selector = Identity.FIRST_CIDR_SELECTOR + 7;
    const rule = { policyId: policyId(30, 1), direction: 1, protocol: 6, port: 80, portPrefixLength: 16 };
    const k = readKernelNumbers(
      maps({
        policy: [[encodePolicyKey({ ...rule, peer: 700 }), encodePolicyValue()], [encodePolicyKey({ ...rule, peer: selector }), encodePolicyValue()]],
        cidr_policy: [[encodeCidrPolicyKey({ policyId: policyId(31, 0), direction: 1, family: 4, address: '192.0.2.0', prefixLength: 24 }), encodeCidrPolicyValue(selector + 1)]],
        conntrack: [[Buffer.alloc(40), ct]],
        ct_counts: [[encodeU32(42), Buffer.alloc(8)], [encodeU32(0xffffffff), Buffer.alloc(8)]],
        ep_counters: [[encodeEpCounterKey(43, 0), Buffer.alloc(16)]],
        fragments: [[frag, Buffer.alloc(8)]],
      }),
    );
    expect(k).toMatchObject({ maxEndpointId: 43, maxIdentity: 950, maxSelector: selector + 1 });
  });
});

describe('planEndpoints', () => {
  const mapped = [
    { endpointId: 3, ifindex: 13, identity: 300, mac: 'm3', hostMac: 'h3', ips: ['fd00::2', '10.1.0.2'] },
    { endpointId: 4, ifindex: 14, identity: 301, mac: 'm4', hostMac: 'h4', ips: ['10.1.0.3'] },
    { endpointId: 5, ifindex: 15, identity: 301, mac: 'm5', hostMac: 'h5', ips: ['10.1.0.4'] },
    { endpointId: 6, ifindex: 16, identity: 301, mac: 'm6', hostMac: 'h6', ips: ['10.1.0.5'] },
  ];
  const veths = [
    { index: 13, name: 'lxc13', attachment: { containerID: 'c3', ifname: 'eth0' } },
    { index: 14, name: 'lxc14', attachment: null }, // no alias of this agent: the IPAM store names it
    { index: 16, name: 'lxc16', attachment: null }, // neither: not put back
  ];
  const allocations = [
    { ip: '10.1.0.2', containerID: 'c3', ifname: 'eth0', namespace: 'ns', pod: 'a', netns: '/run/netns/a', createdAt: 111 },
    { ip: '10.1.0.3', containerID: 'c4', ifname: 'eth0', namespace: 'ns', pod: 'b', netns: '/run/netns/b', createdAt: 222 },
  ];

  it('puts back each served endpoint under its id, from its veth and its allocation; says why for the rest', () => {
    const plan = planEndpoints({ mapped, veths, allocations, pods: [] }, 999);
    expect(plan.records).toEqual([
      {
        id: 3, createdAt: 111,
        spec: { containerID: 'c3', ifname: 'eth0', namespace: 'ns', pod: 'a', netns: '/run/netns/a', hostIfname: 'lxc13', hostIfindex: 13, mac: 'm3', hostMac: 'h3', ips: ['10.1.0.2', 'fd00::2'] },
      },
      {
        id: 4, createdAt: 222,
        spec: { containerID: 'c4', ifname: 'eth0', namespace: 'ns', pod: 'b', netns: '/run/netns/b', hostIfname: 'lxc14', hostIfindex: 14, mac: 'm4', hostMac: 'h4', ips: ['10.1.0.3'] },
      },
    ]);
    expect(plan.unplaced).toEqual([
      expect.stringMatching(/^endpoint 5 \(10\.1\.0\.4\): its host veth \(ifindex 15\) is gone/),
      expect.stringMatching(/^endpoint 6 \(10\.1\.0\.5\): neither its veth lxc16 nor the IPAM store names its container/),
    ]);
  });

  it('names the pod from the datastore when the IPAM store does not know the address (both stores lost)', () => {
    const plan = planEndpoints({ mapped: mapped.slice(0, 1), veths, allocations: [], pods: [{ namespace: 'ns', name: 'a', ips: ['10.1.0.2'] }] }, 999);
    expect(plan.records[0]).toMatchObject({ id: 3, createdAt: 999, spec: { namespace: 'ns', pod: 'a', netns: '/sys/class/net/lxc13' } });
  });
});
