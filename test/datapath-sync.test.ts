/**
 * The agent writes only the map entries a change affects, in an order that
 * never opens a window: allow entries before isolation, removal after.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../contract/api-types.ts';
import { DatapathSync, type SyncedMaps } from '../agent/policy-sync/maps.ts';
import { Counter, Identity, decodeEndpointInfo, decodePolicyKey, encodeEpCounterKey, policyId } from '../datapath/abi.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import type { ClusterView, NetworkPolicy, PolicyPod } from '../policy/types.ts';

/** An in-memory stand-in for a BPF map that logs every write. */
class FakeMap {
  readonly entries = new Map<string, Buffer>();
  readonly name: string;
  readonly log: string[];
  /** Entries the map takes, as max_entries does in the kernel. */
  capacity = Infinity;
  constructor(name: string, log: string[]) {
    this.name = name;
    this.log = log;
  }
  update(key: Buffer, value: Buffer): void {
    if (!this.entries.has(key.toString('hex')) && this.entries.size >= this.capacity) throw new Error(`update ${this.name}: E2BIG`);
    this.entries.set(key.toString('hex'), Buffer.from(value));
    this.log.push(`update ${this.name}`);
  }
  delete(key: Buffer): boolean {
    this.log.push(`delete ${this.name}`);
    return this.entries.delete(key.toString('hex'));
  }
  lookup(key: Buffer): Buffer | null {
    return this.entries.get(key.toString('hex')) ?? null;
  }
  keys(): Buffer[] {
    return [...this.entries.keys()].map((k) => Buffer.from(k, 'hex'));
  }
}

function setup() {
  const log: string[] = [];
  const names = ['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'] as const;
  const maps = Object.fromEntries(names.map((n) => [n, new FakeMap(n, log)])) as unknown as Record<(typeof names)[number], FakeMap>;
  const sync = new DatapathSync(maps as unknown as SyncedMaps, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1));
  const endpoints: Endpoint[] = ['a', 'b', 'c'].map((name, i) => ({
    id: i + 1,
    identity: 0,
    createdAt: 0,
    containerID: `c${i}`,
    ifname: 'eth0',
    namespace: 'x',
    pod: name,
    netns: `/var/run/netns/${name}`,
    hostIfname: `lxc${i}`,
    hostIfindex: 100 + i,
    mac: `02:00:00:00:00:0${i}`,
    hostMac: `02:00:00:00:01:0${i}`,
    ips: [`10.0.0.${i + 1}`],
  }));
  const pods = (labels: Record<string, Record<string, string>>): PolicyPod[] =>
    endpoints.map((e) => ({ namespace: 'x', name: e.pod, labels: labels[e.pod] ?? { app: e.pod }, ips: e.ips, ports: [] }));
  const view = (podLabels: Record<string, Record<string, string>>, policies: NetworkPolicy[]): ClusterView => ({
    namespaces: new Map([['x', {}]]),
    pods: pods(podLabels),
    policies,
  });
  return { log, maps, sync, endpoints, view };
}

const aFromB: NetworkPolicy = {
  namespace: 'x',
  name: 'a-from-b',
  podSelector: { matchLabels: { app: 'a' } },
  ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 80 }] }],
};

describe('DatapathSync', () => {
  it('names the endpoints whose endpoint_info a full map refused, and only those', () => {
    const { sync, endpoints, view, maps } = setup();
    expect(sync.apply(view({}, []), endpoints.slice(0, 2), []).unserved).toEqual([]);
    maps.devices.capacity = maps.devices.entries.size; // no room for c's device
    const stats = sync.apply(view({}, []), endpoints, []);
    expect(stats.unserved).toEqual([3]);
    expect(stats.failed.some((f) => f.includes('devices'))).toBe(true);
  });

  it("removes a gone endpoint's counters, and only its own", () => {
    const { sync, endpoints, view, maps } = setup();
    sync.apply(view({}, []), endpoints, []);
    for (const id of [1, 2]) for (const counter of [Counter.POLICY_ALLOWED, Counter.DROP_POLICY_INGRESS]) maps.ep_counters.update(encodeEpCounterKey(id, counter), Buffer.alloc(16));
    const stats = sync.apply(view({}, []), endpoints.slice(1), []); // endpoint 1 is gone
    expect(stats.failed).toEqual([]);
    expect(maps.ep_counters.keys().map((k) => k.readUInt32LE(0))).toEqual([2, 2]);
  });

  it('writes nothing when nothing changed', () => {
    const { sync, endpoints, view } = setup();
    sync.apply(view({}, [aFromB]), endpoints, ['192.0.2.1']);
    expect(sync.apply(view({}, [aFromB]), endpoints, ['192.0.2.1'])).toMatchObject({ written: 0, deleted: 0 });
  });

  it('relabelling a pod no policy refers to rewrites only its address and endpoint entries', () => {
    const { sync, endpoints, view } = setup();
    sync.apply(view({}, [aFromB]), endpoints, []);
    expect(sync.apply(view({ c: { app: 'c2' } }, [aFromB]), endpoints, [])).toMatchObject({ written: 3, deleted: 0 });
  });

  it("relabelling a pod into a policy peer as a new identity adds its entry to only that policy's endpoint, in place", () => {
    const { sync, endpoints, view, maps } = setup();
    sync.apply(view({}, [aFromB]), endpoints, []);
    const revOfA = () => decodeEndpointInfo(maps.devices.lookup(Buffer.from([100, 0, 0, 0]))!).policyRev;
    const rev = revOfA();
    // c becomes {app: b, v: 2}: a new identity that a-from-b selects. No packet carried it before, so
    // a's live slot takes its one entry (1), c's address and endpoint_info change (3); nothing is deleted
    // and a keeps its slot and revision.
    expect(sync.apply(view({ c: { app: 'b', v: '2' } }, [aFromB]), endpoints, [])).toMatchObject({ written: 4, deleted: 0 });
    expect(revOfA()).toBe(rev);
    // A rule set that changes for identities that stay goes into the other slot, as always.
    const aFromAAndB: NetworkPolicy = { ...aFromB, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['a', 'b'] }] } }], ports: [{ port: 80 }] }] };
    sync.apply(view({ c: { app: 'b', v: '2' } }, [aFromAAndB]), endpoints, []);
    expect(revOfA()).toBe(rev + 1);
  });

  it('a replaced rule set is never seen mixed with the old one, at any step of the sync', () => {
    const { sync, endpoints, view, maps } = setup();
    const fromC: NetworkPolicy = { ...aFromB, name: 'a-from-c', ingress: [{ from: [{ podSelector: { matchLabels: { app: 'c' } } }], ports: [{ port: 8080 }] }] };
    /** What the datapath enforces for a: its flags and the rules of its live slot, as a datapath lookup sees them. */
    const enforced = () => {
      const info = maps.devices.lookup(Buffer.from([100, 0, 0, 0]));
      if (!info) return 'none';
      const { endpointId, policyRev, flags } = decodeEndpointInfo(info);
      const rules = [...maps.policy.entries.keys()]
        .map((k) => decodePolicyKey(Buffer.from(k, 'hex')))
        .filter((e) => e.policyId === policyId(endpointId, policyRev))
        .map((e) => `${e.peer}:${e.port}`)
        .sort();
      return `${flags} ${rules.join(',')}`;
    };
    const seen = new Set<string>();
    for (const m of Object.values(maps)) {
      for (const op of ['update', 'delete'] as const) {
        const original = m[op].bind(m) as (...args: Buffer[]) => unknown;
        (m as unknown as Record<string, unknown>)[op] = (...args: Buffer[]) => {
          const out = original(...args);
          seen.add(enforced());
          return out;
        };
      }
    }
    sync.apply(view({}, [aFromB]), endpoints, []);
    const before = enforced();
    seen.clear();
    sync.apply(view({}, [fromC]), endpoints, []);
    const after = enforced();
    expect(before).not.toBe(after);
    expect([...seen].filter((s) => s !== before && s !== after)).toEqual([]);
    // Deleting the only policy and creating another in its place: the same.
    seen.clear();
    sync.apply(view({}, [aFromB]), endpoints, []);
    expect([...seen].filter((s) => s !== after && s !== before)).toEqual([]);
  });

  it("every change of an endpoint's rules or isolation moves its policy revision on; others keep theirs", () => {
    const { sync, endpoints, view, maps } = setup();
    const rev = (ifindex: number) => decodeEndpointInfo(maps.devices.lookup(Buffer.from([ifindex, 0, 0, 0]))!).policyRev;
    sync.apply(view({}, []), endpoints, []);
    const denyAll: NetworkPolicy = { namespace: 'x', name: 'deny', podSelector: { matchLabels: { app: 'a' } }, policyTypes: ['Ingress'] };
    sync.apply(view({}, [denyAll]), endpoints, []); // isolation alone, no rules: still a change
    expect([rev(100), rev(101), rev(102)]).toEqual([1, 0, 0]);
    sync.apply(view({}, [denyAll, aFromB]), endpoints, []);
    expect([rev(100), rev(101), rev(102)]).toEqual([2, 0, 0]);
    sync.apply(view({}, [denyAll, aFromB]), endpoints, []);
    expect(rev(100)).toBe(2);
  });

  it('writes allow entries before isolating, and removes them after un-isolating', () => {
    const { sync, endpoints, view, log, maps } = setup();
    sync.apply(view({}, []), endpoints, []);
    log.length = 0;
    sync.apply(view({}, [aFromB]), endpoints, []);
    expect(log.indexOf('update policy')).toBeGreaterThanOrEqual(0);
    expect(log.indexOf('update policy')).toBeLessThan(log.indexOf('update devices'));
    const aInfo = decodeEndpointInfo(maps.devices.lookup(Buffer.from([100, 0, 0, 0]))!);
    expect(aInfo.flags).toBe(1);

    log.length = 0;
    sync.apply(view({}, []), endpoints, []);
    expect(log.lastIndexOf('update devices')).toBeLessThan(log.indexOf('delete policy'));
    expect(maps.policy.entries.size).toBe(0);
  });

  it('puts this node\'s addresses in the ipcache as the host identity', () => {
    const { sync, endpoints, view, maps } = setup();
    sync.apply(view({}, []), endpoints, ['192.0.2.1']);
    const identities = [...maps.ipcache.entries.values()].map((v) => v.readUInt32LE(0));
    expect(identities).toContain(Identity.HOST);
    expect(maps.ipcache.entries.size).toBe(4);
  });

  it('a full policy map stops nothing else: every other endpoint and map is synced, the one cut short fails closed', () => {
    const { sync, endpoints, view, maps } = setup();
    const ports = (n: number) => Array.from({ length: n }, (_, i) => ({ port: 1000 + i * 7 })); // no two merge into one prefix
    const bBig: NetworkPolicy = { namespace: 'x', name: 'b-big', podSelector: { matchLabels: { app: 'b' } }, ingress: [{ ports: ports(40) }] };
    const cDeny: NetworkPolicy = { namespace: 'x', name: 'c-deny', podSelector: { matchLabels: { app: 'c' } }, policyTypes: ['Ingress'] };
    expect(sync.apply(view({}, [aFromB]), endpoints, []).failed).toEqual([]);
    maps.policy.capacity = maps.policy.entries.size + 10; // room for 10 of b's 40 entries
    const stats = sync.apply(view({}, [aFromB, bBig, cDeny]), endpoints, []);
    expect(stats.failed.length).toBeGreaterThan(0);
    expect(stats.failed[0]).toMatch(/update policy: E2BIG/);
    const info = (ifindex: number) => decodeEndpointInfo(maps.devices.lookup(Buffer.from([ifindex, 0, 0, 0]))!);
    // c, after b in the sync, is isolated all the same: the deny reached the kernel.
    expect(info(102).flags).toBe(1);
    // b is isolated with the entries that fit: a subset of its rules, none beyond them.
    const b = info(101);
    expect(b.flags).toBe(1);
    const bRules = [...maps.policy.entries.keys()].map((k) => decodePolicyKey(Buffer.from(k, 'hex'))).filter((e) => e.policyId === policyId(b.endpointId, b.policyRev));
    expect(bRules.length).toBe(10);
    for (const r of bRules) expect((r.port - 1000) % 7).toBe(0);
    // a keeps its rules.
    expect(info(100).flags).toBe(1);
    // Room again: the next sync completes b.
    maps.policy.capacity = Infinity;
    expect(sync.apply(view({}, [aFromB, bBig, cDeny]), endpoints, []).failed).toEqual([]);
    const b2 = info(101);
    expect([...maps.policy.entries.keys()].map((k) => decodePolicyKey(Buffer.from(k, 'hex'))).filter((e) => e.policyId === policyId(b2.endpointId, b2.policyRev))).toHaveLength(40);
  });
});
