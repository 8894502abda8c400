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
import { serviceInputsOf, startServices } from '../agent/services/start.ts';
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
