/**
 * The map sync on the incremental compiler writes only what a change touched,
 * and its maps still end up byte for byte what the full compile's sync
 * writes: random event sequences, both syncs after every event (host and
 * node addresses changing now and then), every map compared.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../contract/api-types.ts';
import { DatapathSync, type SyncedMaps } from '../agent/policy-sync/maps.ts';
import { CIDR_POLICY_KEY, Direction, Identity, POLICY_KEY, decodeEndpointInfo, encodeIpcacheKey, encodeIpcacheValue, encodePolicyKey, policyId } from '../datapath/abi.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import { Cluster, Gen, NAMESPACES, randomEvent } from './support/policy-events.ts';

const SEQUENCES = 25;
const EVENTS_PER_SEQUENCE = 40;
const MAP_NAMES = ['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'] as const;

/** An in-memory BPF map that counts writes. */
class FakeMap {
  readonly entries = new Map<string, string>();
  writes = 0;
  update(key: Buffer, value: Buffer): void {
    this.entries.set(key.toString('hex'), value.toString('hex'));
    this.writes++;
  }
  delete(key: Buffer): boolean {
    this.writes++;
    return this.entries.delete(key.toString('hex'));
  }
  lookup(key: Buffer): Buffer | null {
    const v = this.entries.get(key.toString('hex'));
    return v === undefined ? null : Buffer.from(v, 'hex');
  }
  keys(): Buffer[] {
    return [...this.entries.keys()].map((k) => Buffer.from(k, 'hex'));
  }
}

function fakeMaps(): Record<(typeof MAP_NAMES)[number], FakeMap> {
  return Object.fromEntries(MAP_NAMES.map((n) => [n, new FakeMap()])) as Record<(typeof MAP_NAMES)[number], FakeMap>;
}

function contents(maps: Record<string, FakeMap>): Record<string, string[]> {
  return Object.fromEntries(MAP_NAMES.map((n) => [n, [...maps[n]!.entries].map(([k, v]) => `${k}=${v}`).sort()]));
}

describe('DatapathSync on the incremental compiler', () => {
  it(`writes the same maps as the full compile after every event of ${SEQUENCES} random sequences`, () => {
    let incrementalWrites = 0;
    let fullWrites = 0;
    for (let seed = 1; seed <= SEQUENCES; seed++) {
      const g = new Gen(1000 + seed);
      const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);
      const incMaps = fakeMaps();
      const fullMaps = fakeMaps();
      const services = ['10.96.0.0/16'];
      const inc = new DatapathSync(incMaps as unknown as SyncedMaps, numbering, services, 'incremental');
      const full = new DatapathSync(fullMaps as unknown as SyncedMaps, numbering, services, 'full');
      const cluster = new Cluster();
      for (const ns of NAMESPACES) cluster.namespaces.set(ns, g.namespaceLabels());
      let hosts = ['192.168.1.1'];
      let nodes = ['192.168.1.1', '192.168.1.2'];
      const history: string[] = [];
      for (let i = 0; i < EVENTS_PER_SEQUENCE; i++) {
        if (g.chance(0.1)) {
          hosts = g.chance(0.5) ? ['192.168.1.1'] : ['192.168.1.1', '10.1.1.1'];
          nodes = g.chance(0.5) ? ['192.168.1.1', '192.168.1.2'] : ['192.168.1.1', '192.168.1.3', '10.1.2.2'];
          history.push(`hosts ${hosts.join(',')} nodes ${nodes.join(',')}`);
        } else {
          history.push(randomEvent(g, cluster));
        }
        const endpoints: Endpoint[] = cluster.localList().map((ep) => ({
          id: ep.endpointId,
          identity: 0,
          createdAt: 0,
          containerID: `c${ep.endpointId}`,
          ifname: 'eth0',
          namespace: ep.namespace,
          pod: ep.pod,
          netns: `/var/run/netns/${ep.pod}`,
          hostIfname: `lxc${ep.endpointId}`,
          hostIfindex: 100 + ep.endpointId,
          mac: `02:00:00:00:00:0${ep.endpointId}`,
          hostMac: `02:00:00:00:01:0${ep.endpointId}`,
          ips: ep.ips,
        }));
        const view = cluster.view();
        const before = { inc: sum(incMaps), full: sum(fullMaps) };
        inc.apply(view, endpoints, hosts, nodes);
        full.apply(view, endpoints, hosts, nodes);
        incrementalWrites += sum(incMaps) - before.inc;
        fullWrites += sum(fullMaps) - before.full;
        const where = `seed ${seed}, event ${i + 1}:\n  ${history.slice(-6).join('\n  ')}`;
        expect(contents(incMaps), where).toEqual(contents(fullMaps));
        // And both are right, not merely alike: the ipcache holds exactly what the state names, the rule maps only live slots.
        expect(ipcacheOf(incMaps), where).toEqual(expectedIpcache(full, services, hosts, nodes));
        expect(deadSlotKeys(incMaps), where).toEqual([]);
        expect(liveSlotMismatches(incMaps, full), where).toEqual([]);
      }
    }
    // Both write only differences: the same number of writes, not more.
    expect(incrementalWrites).toBe(fullWrites);
  });
});

function sum(maps: Record<string, FakeMap>): number {
  return Object.values(maps).reduce((n, m) => n + m.writes, 0);
}

/** The ipcache as the state calls for it, worked out here: host over node over pod over Service. */
function expectedIpcache(sync: DatapathSync, services: string[], hosts: string[], nodes: string[]): string[] {
  const out = new Map<string, number>();
  const host = (ip: string) => ({ family: (ip.includes(':') ? 6 : 4) as 4 | 6, address: ip, prefixLength: ip.includes(':') ? 128 : 32 });
  for (const cidr of services) out.set(encodeIpcacheKey({ family: 4, address: cidr.split('/')[0]!, prefixLength: Number(cidr.split('/')[1]) }).toString('hex'), Identity.SERVICE);
  for (const e of sync.state()!.ipcache) out.set(encodeIpcacheKey(e).toString('hex'), e.identity);
  for (const ip of nodes) out.set(encodeIpcacheKey(host(ip)).toString('hex'), Identity.REMOTE_NODE);
  for (const ip of hosts) out.set(encodeIpcacheKey(host(ip)).toString('hex'), Identity.HOST);
  return [...out].map(([k, id]) => `${k}=${encodeIpcacheValue(id).toString('hex')}`).sort();
}

function ipcacheOf(maps: Record<string, FakeMap>): string[] {
  return [...maps.ipcache!.entries].map(([k, v]) => `${k}=${v}`).sort();
}

/** Rule map keys of a slot no endpoint points at. */
function deadSlotKeys(maps: Record<string, FakeMap>): string[] {
  const live = new Set([...maps.devices!.entries.values()].map((v) => decodeEndpointInfo(Buffer.from(v, 'hex'))).map((i) => policyId(i.endpointId, i.policyRev)));
  const dead: string[] = [];
  for (const [name, layout] of [['policy', POLICY_KEY], ['cidr_policy', CIDR_POLICY_KEY]] as const) {
    for (const key of maps[name]!.entries.keys()) if (!live.has(Buffer.from(key, 'hex').readUInt32LE(layout.members.policy_id!))) dead.push(`${name} ${key}`);
  }
  return dead;
}

/** Endpoints whose live slot does not hold exactly the allow entries the full compile gives them. */
function liveSlotMismatches(maps: Record<string, FakeMap>, sync: DatapathSync): string[] {
  const out: string[] = [];
  const compiled = new Map(sync.state()!.endpoints.map((c) => [c.endpointId, c]));
  for (const value of maps.devices!.entries.values()) {
    const info = decodeEndpointInfo(Buffer.from(value, 'hex'));
    const slot = policyId(info.endpointId, info.policyRev);
    const want = [...(compiled.get(info.endpointId)?.entries ?? [])]
      .map((e) => encodePolicyKey({ ...e, direction: e.direction === 'ingress' ? Direction.INGRESS : Direction.EGRESS, policyId: slot }).toString('hex'))
      .sort();
    const have = [...maps.policy!.entries.keys()].filter((k) => Buffer.from(k, 'hex').readUInt32LE(POLICY_KEY.members.policy_id!) === slot).sort();
    if (want.join() !== have.join()) out.push(`endpoint ${info.endpointId}: want ${want.length} entries, have ${have.length}`);
  }
  return out;
}
