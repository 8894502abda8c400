/**
 * The agent's Services part (agent/services/start.ts) with a fake loader and
 * in-memory maps: where the table comes from per datastore, what GET
 * /v1/services reports, and that a load balancer that cannot load leaves the
 * agent running with the reason. Pure.
 */
import { describe, expect, it } from 'vitest';
import type { Datastore } from '../agent/datastore/datastore.ts';
import type { ClusterObjects } from '../agent/datastore/cluster-view.ts';
import type { KubeObject } from '../agent/datastore/local.ts';
import { desiredFrontendsOf, serviceInputsOf, startServices } from '../agent/services/start.ts';
import { ServiceChangeIndex } from '../agent/services/service-changes.ts';
import { ServiceMapSync } from '../agent/services/sync.ts';
import { renderStatus } from '../cli/status.ts';
import { decodeBackend, decodeServiceKey, decodeServiceValue } from '../datapath/service-lb-abi.ts';
import type { ServiceLb } from '../datapath/service-lb-loader.ts';

class MemMap {
  readonly entries = new Map<string, Buffer>();
  update(key: Buffer, value: Buffer): void {
    this.entries.set(key.toString('hex'), Buffer.from(value));
  }
  lookup(key: Buffer): Buffer | null {
    return this.entries.get(key.toString('hex')) ?? null;
  }
  lookupPerCpu(key: Buffer): Buffer[] {
    const v = this.lookup(key);
    return v ? [v, v] : [];
  }
  delete(key: Buffer): boolean {
    return this.entries.delete(key.toString('hex'));
  }
  keys(): Buffer[] {
    return [...this.entries.keys()].map((k) => Buffer.from(k, 'hex'));
  }
  close(): void {}
}

function fakeLb() {
  const maps = { lb_services: new MemMap(), lb_backends: new MemMap(), lb_revnat: new MemMap(), lb_backend_flows: new MemMap() };
  const lb = { adopted: false, maps, attached: ['connect4'], links: ['connect4'], close: () => undefined } as unknown as ServiceLb;
  return { lb, maps };
}

const svc: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'x', name: 'web' }, spec: { clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } };
const pod = (name: string, ip: string): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name, labels: { app: 'web' } }, status: { phase: 'Running', podIP: ip } });

function localStore(objects: Partial<ClusterObjects>): Datastore & { set(o: Partial<ClusterObjects>): void } {
  let current: ClusterObjects = { pods: [], namespaces: [], networkPolicies: [], nodes: [], ...objects };
  return { refresh: () => true, objects: () => current, describe: () => 'test', set: (o) => (current = { ...current, ...o }) };
}

describe('services part', () => {
  it('builds the local table from Services and pods, and reports backends with state and new flows', () => {
    const store = localStore({ services: [svc], pods: [pod('a', '10.244.0.2')] });
    const { lb, maps } = fakeLb();
    const services = startServices({ enabled: true, pinDir: '/x', objectBytes: () => Buffer.alloc(0), cgroupRoot: '/cg', datastore: store, log: () => undefined, load: () => lb });
    expect(maps.lb_services.entries.size).toBe(2); // the frontend and its one slot
    const id = Buffer.alloc(4);
    id.writeUInt32LE(1);
    const count = Buffer.alloc(8);
    count.writeBigUInt64LE(3n);
    maps.lb_backend_flows.update(id, count);
    expect(services.report()).toEqual({
      enabled: true,
      syncError: null,
      frontends: [
        {
          namespace: 'x', name: 'web', portName: '', type: 'ClusterIP', address: '10.96.0.10', port: 80, protocol: 'TCP', sessionAffinity: 'None', served: true,
          backends: [{ address: '10.244.0.2', port: 8080, state: 'ready', pod: 'x/a', newFlows: 6 }],
        },
      ],
    });
    store.set({ pods: [] });
    services.sync();
    expect(services.report().frontends[0]!.backends).toEqual([]);
    expect(maps.lb_services.entries.size).toBe(1); // the frontend stays, with no slot: refused
  });

  it('reads a Kubernetes datastore through its service objects and syncs on its service events', () => {
    let listener: (() => void) | null = null;
    let endpoints: KubeObject[] = [];
    const store = {
      ...localStore({ pods: [pod('a', '10.244.0.2')] }),
      serviceObjects: () => ({ services: [svc], endpoints, endpointSlices: [] }),
      onServicesChange: (l: () => void) => (listener = l),
    };
    // Kubernetes has an endpoints controller: pods are not read.
    expect(serviceInputsOf(store).pods).toBeUndefined();
    const { lb } = fakeLb();
    const services = startServices({ enabled: true, pinDir: '/x', objectBytes: () => Buffer.alloc(0), cgroupRoot: '/cg', datastore: store, log: () => undefined, load: () => lb });
    expect(services.report().frontends[0]!.backends).toEqual([]);
    endpoints = [{ apiVersion: 'v1', kind: 'Endpoints', metadata: { namespace: 'x', name: 'web' }, ...{ subsets: [{ addresses: [{ ip: '10.244.0.9' }], ports: [{ port: 8080 }] }] } } as KubeObject];
    listener!();
    expect(services.report().frontends[0]!.backends.map((b) => b.address)).toEqual(['10.244.0.9']);
  });

  it('reports off with the reason, and never throws, when off, without cgroup v2, or when the load fails', () => {
    const store = localStore({ services: [svc] });
    const base = { pinDir: '/x', objectBytes: () => Buffer.alloc(0), datastore: store, log: () => undefined };
    expect(startServices({ ...base, enabled: false, cgroupRoot: '/cg' }).report()).toMatchObject({ enabled: false, reason: '--socket-lb off', frontends: [] });
    expect(startServices({ ...base, enabled: true, cgroupRoot: null }).report()).toMatchObject({ enabled: false, reason: 'no cgroup v2 hierarchy is mounted' });
    const failed = startServices({ ...base, enabled: true, cgroupRoot: '/cg', load: () => { throw new Error('EPERM'); } });
    expect(failed.report()).toMatchObject({ enabled: false, reason: 'load the socket load balancer: EPERM' });
    expect(failed.sync()).toBeNull();
  });
});

/** A Kubernetes-like datastore over plain maps, feeding a change index as the reflectors do. */
function indexedStore() {
  const collections = { services: new Map<string, KubeObject>(), endpoints: new Map<string, KubeObject>(), endpointSlices: new Map<string, KubeObject>() };
  const index = new ServiceChangeIndex(collections);
  const sortedValues = (m: Map<string, KubeObject>) => [...m.keys()].sort().map((k) => m.get(k)!);
  const store = {
    ...localStore({}),
    serviceChanges: index,
    serviceObjects: () => ({ services: sortedValues(collections.services), endpoints: sortedValues(collections.endpoints), endpointSlices: sortedValues(collections.endpointSlices) }),
    onServicesChange: () => undefined,
  };
  const keyOf = (o: KubeObject) => `${o.metadata.namespace}/${o.metadata.name}`;
  return {
    store,
    putService(o: KubeObject) {
      collections.services.set(keyOf(o), o);
      index.serviceChanged(keyOf(o));
    },
    deleteService(key: string) {
      if (collections.services.delete(key)) index.serviceChanged(key);
    },
    putEndpoints(o: KubeObject) {
      collections.endpoints.set(keyOf(o), o);
      index.serviceChanged(keyOf(o));
    },
    deleteEndpoints(key: string) {
      if (collections.endpoints.delete(key)) index.serviceChanged(key);
    },
    putSlice(o: KubeObject) {
      const before = collections.endpointSlices.get(keyOf(o));
      collections.endpointSlices.set(keyOf(o), o);
      index.sliceChanged(keyOf(o), before, o);
    },
    deleteSlice(key: string) {
      const before = collections.endpointSlices.get(key);
      if (before && collections.endpointSlices.delete(key)) index.sliceChanged(key, before, undefined);
    },
  };
}

const svcAt = (ns: string, name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name }, spec });
const endpointsOf = (ns: string, name: string, ready: string[], notReady: string[] = [], port = 8080, protocol = 'TCP', portName?: string): KubeObject =>
  ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { namespace: ns, name }, subsets: [{ addresses: ready.map((ip) => ({ ip })), notReadyAddresses: notReady.map((ip) => ({ ip })), ports: [{ port, protocol, ...(portName ? { name: portName } : {}) }] }] }) as unknown as KubeObject;

/** What the maps serve, by address: frontend → head (count, affinity) and the backends its slots name. */
function served(maps: ReturnType<typeof fakeLb>['maps']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of maps.lb_services.keys()) {
    const k = decodeServiceKey(key);
    if (k.slot !== 0) continue;
    const head = decodeServiceValue(maps.lb_services.lookup(key)!);
    const list: string[] = [];
    for (let slot = 1; slot <= head.count; slot++) {
      const slotKey = Buffer.from(key);
      slotKey.writeUInt16LE(slot, 20);
      const id = Buffer.alloc(4);
      id.writeUInt32LE(decodeServiceValue(maps.lb_services.lookup(slotKey)!).backendId);
      const b = decodeBackend(maps.lb_backends.lookup(id)!);
      list.push(`${b.address}:${b.port}/${b.protocol}`);
    }
    out[`${k.address}:${k.port}/${k.protocol}`] = `${head.affinityTimeoutSec} ${list.sort().join(',')}`;
  }
  return out;
}

describe('incremental service sync', () => {
  it('one Endpoints change among 10,000 Services rebuilds that Service and compares its one frontend', () => {
    const s = indexedStore();
    for (let i = 0; i < 10_000; i++) {
      s.putService(svcAt(`ns${i % 100}`, `s${i}`, { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] }));
      s.putEndpoints(endpointsOf(`ns${i % 100}`, `s${i}`, [`10.244.${i >> 8}.${i & 255}`, `10.245.${i >> 8}.${i & 255}`]));
    }
    const { lb, maps } = fakeLb();
    const services = startServices({ enabled: true, pinDir: '/x', objectBytes: () => Buffer.alloc(0), cgroupRoot: '/cg', datastore: s.store, log: () => undefined, load: () => lb });
    expect(maps.lb_services.entries.size).toBe(30_000);
    // One backend of s500 replaced by another.
    s.putEndpoints(endpointsOf('ns0', 's500', ['10.244.1.244', '10.246.0.1']));
    const stats = services.sync()!;
    expect(stats).toMatchObject({ servicesBuilt: 1, visited: 1, written: 2, deleted: 1, failed: [] });
    expect(served(maps)['10.96.1.244:80/TCP']).toBe('0 10.244.1.244:8080/TCP,10.246.0.1:8080/TCP');
    // Nothing changed: nothing built, nothing compared.
    expect(services.sync()).toMatchObject({ servicesBuilt: 0, visited: 0, written: 0, deleted: 0 });
    // The Service goes: its frontend and slots, and its backends no other frontend wants.
    s.deleteService('ns0/s500');
    expect(services.sync()).toMatchObject({ servicesBuilt: 1, visited: 1, written: 0, deleted: 5 });
  });

  it('ends in the same maps as a full resync over random changes (Services, Endpoints, slices that change owner, NodePorts, affinity)', () => {
    // mulberry32: small, seeded, good low bits.
    let seed = 17;
    const rand = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
    };
    const s = indexedStore();
    const nodeAddresses = ['192.168.1.10', 'fd00::10'];
    const { lb, maps } = fakeLb();
    const services = startServices({ enabled: true, pinDir: '/x', objectBytes: () => Buffer.alloc(0), cgroupRoot: '/cg', datastore: s.store, log: () => undefined, load: () => lb, nodeAddresses: () => nodeAddresses });
    const names = Array.from({ length: 20 }, (_, i) => [`ns${i % 2}`, `s${i}`] as const);
    const ip = () => `10.244.0.${1 + rand(8)}`;
    let frontendsSeen = 0;
    let syncs = 0;
    for (let step = 0; step < 400; step++) {
      const [ns, name] = names[rand(names.length)]!;
      switch (rand(7)) {
        case 0: {
          const nodePort = rand(2) === 0;
          // Some Services share a ClusterIP (hand-written duplicates): the same winner either way.
          s.putService(svcAt(ns, name, {
            type: nodePort ? 'NodePort' : 'ClusterIP',
            clusterIP: `10.96.0.${rand(16)}`,
            ports: [
              { ...(rand(2) ? { name: 'web' } : {}), port: 80 + rand(2), targetPort: 8080, ...(nodePort ? { nodePort: 30000 + rand(3) } : {}) },
              ...(rand(2) ? [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 }] : []),
            ],
            ...(rand(3) === 0 ? { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 1 + rand(100) } } } : {}),
          }));
          break;
        }
        case 1:
          s.deleteService(`${ns}/${name}`);
          break;
        case 2:
        case 3:
          s.putEndpoints(endpointsOf(ns, name, Array.from({ length: rand(4) }, ip), Array.from({ length: rand(2) }, ip), 8080, 'TCP', rand(2) ? 'web' : undefined));
          break;
        case 4:
          s.deleteEndpoints(`${ns}/${name}`);
          break;
        case 5: {
          const [, owner] = names.filter(([n]) => n === ns)[rand(10)]!;
          s.putSlice({
            apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { namespace: ns, name: `slice${rand(4)}`, labels: { 'kubernetes.io/service-name': owner } },
            ...{ addressType: 'IPv4', endpoints: Array.from({ length: rand(3) }, () => ({ addresses: [ip()], conditions: { ready: rand(4) > 0, terminating: rand(5) === 0 } })), ports: [{ name: rand(2) ? 'web' : '', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] },
          } as unknown as KubeObject);
          break;
        }
        default:
          s.deleteSlice(`${ns}/slice${rand(4)}`);
      }
      if (rand(3) > 0) continue; // changes batch up between syncs, as between watch events
      services.sync();
      const fresh = fakeLb();
      const withoutIndex = { ...s.store, serviceChanges: undefined };
      const full = startServices({ enabled: true, pinDir: '/x', objectBytes: () => Buffer.alloc(0), cgroupRoot: '/cg', datastore: withoutIndex, log: () => undefined, load: () => fresh.lb, nodeAddresses: () => nodeAddresses });
      expect(served(maps), `step ${step}`).toEqual(served(fresh.maps));
      expect(services.report()).toEqual(full.report());
      frontendsSeen = Math.max(frontendsSeen, Object.keys(served(fresh.maps)).length);
      syncs++;
      // And the incremental maps hold nothing a full sync would change (no backend left behind).
      expect(new ServiceMapSync(lb.maps).apply(desiredFrontendsOf(serviceInputsOf(s.store), nodeAddresses).table())).toMatchObject({ written: 0, deleted: 0 });
    }
    expect(syncs).toBeGreaterThan(100);
    expect(frontendsSeen).toBeGreaterThan(12);
  });
});

describe('load balancer maps in sluice status', () => {
  it('shows each map as entries/max, and a full one with the entries it refused', () => {
    const doc = {
      node: 'n', ready: true, podCIDRs: [], endpoints: 0, datapath: { pinDir: '/x', adopted: false }, pools: [], counters: {}, recentDrops: [],
      maps: [{ name: 'lb_services', entries: 4, maxEntries: 4, truncated: false, refused: 2 }, { name: 'lb_revnat', entries: 3, maxEntries: 64, truncated: false }],
    };
    const lines = renderStatus(doc, Date.now()).filter((l) => l.includes('lb_'));
    expect(lines).toEqual([
      'maps:       lb_services               4/4 (100.0%), FULL: 2 entries refused (see the agent log)',
      '            lb_revnat                3/64 (4.7%)',
    ]);
  });
});
