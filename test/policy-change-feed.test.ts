/**
 * The datastores' change feeds into the incremental policy compiler (issue
 * 16): a pod, namespace or policy event reaches the compiler as that one
 * object, not as a whole view diffed object by object. Checked three ways:
 * - random event sequences written to a local datastore directory, taken in
 *   batches of one to three events through the feed: the compiled state
 *   equals compile() of the datastore's whole view after every batch;
 * - the Kubernetes datastore (watch events from an in-process stand-in for
 *   the API server): one event is one change, a pod that no longer holds its
 *   address is gone, a repeated change of one object is taken once;
 * - the agent's policy state: after the first sync, a pod event's sync does
 *   not read the datastore's list of pods at all; pod events are synced at
 *   once after a quiet spell, in one batch when they come together, and
 *   under churn at most every 20 ms; anything else waits 50 ms for what
 *   comes right behind it (on fake timers: no figure of this machine).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { clusterChanges, clusterView } from '../agent/datastore/cluster-view.ts';
import { LocalDirDatastore } from '../agent/datastore/datastore.ts';
import { KubernetesDatastore } from '../agent/datastore/kubernetes.ts';
import type { KubeClient, WatchHandler } from '../agent/datastore/kubernetes-client.ts';
import { LocalDatastore, type KubeObject } from '../agent/datastore/local.ts';
import { PolicyState } from '../agent/policy-sync/state.ts';
import type { NumberingStore } from '../agent/policy-sync/numbering-store.ts';
import type { Endpoint } from '../contract/api-types.ts';
import type { DatapathMaps } from '../datapath/loader.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { compile, type CompiledState } from '../policy/compile.ts';
import { IncrementalCompiler } from '../policy/incremental.ts';
import { identityKey, MemoryNumbering } from '../policy/identity.ts';
import type { NetworkPolicy, PolicyPod } from '../policy/types.ts';
import { Cluster, Gen, randomEvent } from './support/policy-events.ts';

const SEQUENCES = 15;
const EVENTS_PER_SEQUENCE = 40;

function canonical(state: CompiledState) {
  const sorted = (xs: string[]) => [...xs].sort();
  return {
    identities: sorted([...state.identities].map(([id, labels]) => `${id}=${identityKey(labels)}`)),
    ipcache: sorted(state.ipcache.map((e) => `${e.address}/${e.prefixLength}=${e.identity}`)),
    endpoints: [...state.endpoints]
      .sort((a, b) => a.endpointId - b.endpointId)
      .map((e) => ({
        ...e,
        policies: sorted(e.policies),
        entries: sorted(e.entries.map((x) => `${x.direction} ${x.peer} ${x.protocol} ${x.port}/${x.portPrefixLength}`)),
        cidrEntries: sorted(e.cidrEntries.map((x) => `${x.direction} ${x.address}/${x.prefixLength} ${x.selector} ${x.ports.join(',')}`)),
      })),
  };
}

function podObject(pod: PolicyPod): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: pod.namespace, name: pod.name, labels: pod.labels },
    spec: { containers: [{ name: 'c', ports: pod.ports }] },
    status: { podIPs: pod.ips.map((ip) => ({ ip })) },
  };
}

function policyObject(policy: NetworkPolicy): KubeObject {
  const { namespace, name, ...spec } = policy;
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec: spec as Record<string, unknown> };
}

/** Writes what differs between the test's cluster and the directory, object by object. */
class DirectoryMirror {
  private readonly written = new Map<string, string>();
  private readonly store: LocalDatastore;
  constructor(store: LocalDatastore) {
    this.store = store;
  }

  sync(cluster: Cluster): void {
    const want = new Map<string, KubeObject>();
    for (const [name, labels] of cluster.namespaces) want.set(`Namespace/${name}`, { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
    for (const pod of cluster.pods.values()) want.set(`Pod/${pod.namespace}/${pod.name}`, podObject(pod));
    for (const policy of cluster.policies.values()) want.set(`NetworkPolicy/${policy.namespace}/${policy.name}`, policyObject(policy));
    for (const [key, obj] of want) {
      const text = JSON.stringify(obj);
      if (this.written.get(key) === text) continue;
      this.store.put(obj);
      this.written.set(key, text);
    }
    for (const key of [...this.written.keys()]) {
      if (want.has(key)) continue;
      const [kind, a, b] = key.split('/') as [string, string, string | undefined];
      if (b === undefined) this.store.delete(kind, a);
      else this.store.delete(kind, b, a);
      this.written.delete(key);
    }
  }
}

/** An API server in this process: lists what it is given, and hands the test each collection's watch handler. */
function inProcessApi(collections: Record<string, KubeObject[]>) {
  const watchers = new Map<string, WatchHandler>();
  const client = {
    getJson: async (p: string) => ({ metadata: { resourceVersion: '1' }, items: collections[p] ?? [] }),
    watch: async (p: string, _query: unknown, onEvent: WatchHandler) => {
      watchers.set(p, onEvent);
      return new AbortController();
    },
    server: () => 'in-process',
  } as unknown as KubeClient;
  let rv = 1;
  const event = (p: string, type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: KubeObject) =>
    watchers.get(p)!(type, { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++rv) } } as unknown as Record<string, unknown>);
  return { client, event };
}

const PODS = '/api/v1/pods';
const kubePod = (name: string, ip: string, extra: { phase?: string; hostNetwork?: boolean; labels?: Record<string, string> } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: 'ns', name, labels: extra.labels ?? { app: 'a' } },
  spec: { nodeName: 'n1', hostNetwork: extra.hostNetwork, containers: [{ name: 'c' }] },
  status: { phase: extra.phase ?? 'Running', podIP: ip, podIPs: [{ ip }] },
});

const dirs: string[] = [];
const stores: KubernetesDatastore[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  for (const s of stores.splice(0)) s.stop();
});

describe('datastore change feeds into the incremental compiler', () => {
  it(`equal a full compile of the datastore's view after every batch of ${SEQUENCES} random sequences (local directory)`, () => {
    let batches = 0;
    let entries = 0;
    for (let seed = 1; seed <= SEQUENCES; seed++) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-feed-'));
      dirs.push(dir);
      const mirror = new DirectoryMirror(new LocalDatastore(dir));
      const ds = new LocalDirDatastore(dir);
      const feed = ds.changes();
      const g = new Gen(seed);
      const cluster = new Cluster();
      const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);
      const inc = new IncrementalCompiler(numbering);
      const history: string[] = [];
      let taken = 0;
      for (let i = 0; i < EVENTS_PER_SEQUENCE; ) {
        const batch = 1 + g.int(3);
        for (let k = 0; k < batch && i < EVENTS_PER_SEQUENCE; k++, i++) history.push(randomEvent(g, cluster));
        mirror.sync(cluster);
        ds.refresh();
        const changes = feed.take();
        const local = cluster.localList();
        if (changes === null) inc.applyView(clusterView(ds.objects()), local);
        else {
          taken += changes.pods.size + changes.namespaces.size + changes.networkPolicies.size;
          inc.applyChanges(clusterChanges(changes), local);
        }
        const want = compile(clusterView(ds.objects()), local, numbering);
        expect(canonical(inc.state()), `seed ${seed}, event ${i}:\n  ${history.slice(-6).join('\n  ')}`).toEqual(canonical(want));
        batches++;
        entries += want.endpoints.reduce((n, e) => n + e.entries.length, 0);
      }
      // Only the first take asks for a whole view; the rest are object changes.
      expect(taken).toBeGreaterThan(0);
    }
    expect(batches).toBeGreaterThan(SEQUENCES * 10);
    expect(entries).toBeGreaterThan(500);
  });

  it('Kubernetes: one watch event is one change; a pod that no longer holds its address is gone; repeats are taken once', async () => {
    const api = inProcessApi({ [PODS]: [kubePod('a', '10.0.0.1'), kubePod('b', '10.0.0.2')], '/api/v1/namespaces': [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } }] });
    const store = new KubernetesDatastore(api.client);
    stores.push(store);
    const feed = store.changes();
    store.start();
    await store.whenReady();
    expect(feed.take()).toBeNull(); // the first read is the whole view
    api.event(PODS, 'ADDED', kubePod('c', '10.0.0.3'));
    let changes = feed.take()!;
    expect([...changes.pods.keys()]).toEqual(['ns/c']);
    expect(changes.namespaces.size + changes.networkPolicies.size).toBe(0);
    expect(clusterChanges(changes).pods).toEqual([{ namespace: 'ns', name: 'c', pod: { namespace: 'ns', name: 'c', labels: { app: 'a' }, ips: ['10.0.0.3'], ports: [] } }]);

    api.event(PODS, 'MODIFIED', kubePod('a', '10.0.0.1', { phase: 'Succeeded' }));
    api.event(PODS, 'MODIFIED', kubePod('b', '10.0.0.2', { labels: { app: 'x' } }));
    api.event(PODS, 'MODIFIED', kubePod('b', '10.0.0.2', { labels: { app: 'y' } }));
    api.event(PODS, 'DELETED', kubePod('c', '10.0.0.3'));
    changes = feed.take()!;
    expect([...changes.pods].map(([k, o]) => [k, o?.metadata.labels?.app ?? null])).toEqual([
      ['ns/a', null],
      ['ns/b', 'y'],
      ['ns/c', null],
    ]);
    // An update that changes nothing the agent reads is no change.
    api.event(PODS, 'MODIFIED', kubePod('b', '10.0.0.2', { labels: { app: 'y' } }));
    expect(feed.take()!.pods.size).toBe(0);
    // The lists stay what they were: sorted, without pods that do not hold their address.
    expect(store.objects().pods.map((p) => p.metadata.name)).toEqual(['b']);
  });

  it("the agent's sync of a pod event reads no list of pods", async () => {
    const pods = Array.from({ length: 50 }, (_, i) => kubePod(`p${i}`, `10.0.1.${i + 1}`, { labels: { app: `a${i % 5}` } }));
    const api = inProcessApi({
      [PODS]: pods,
      '/api/v1/namespaces': [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } }],
      '/apis/networking.k8s.io/v1/networkpolicies': [policyObject({ namespace: 'ns', name: 'p', podSelector: {}, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'a1' } } }] }] })],
    });
    const store = new KubernetesDatastore(api.client);
    stores.push(store);
    const policy = new PolicyState(store, memoryMaps(), new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1) as unknown as NumberingStore);
    store.start();
    await store.whenReady();
    const endpoints: Endpoint[] = [endpoint(1, 'p0', '10.0.1.1')];
    policy.apply(endpoints);
    const objects = store.objects();
    let podListReads = 0;
    const spy = new Proxy(objects, { get: (t, k) => (k === 'pods' && podListReads++, Reflect.get(t, k)) });
    (store as unknown as { objects: () => unknown }).objects = () => spy;

    api.event(PODS, 'ADDED', kubePod('new', '10.0.1.200', { labels: { app: 'a1' } }));
    const stats = policy.apply(endpoints, performance.now());
    expect(podListReads).toBe(0);
    // And the event did reach the maps: the new pod's address, and p0's rule naming a1 (unchanged identity: no rule write).
    expect(stats.written).toBeGreaterThanOrEqual(1);
    expect(policy.sync.state()!.ipcache.some((e) => e.address === '10.0.1.200')).toBe(true);
    policy.stop();
  });
});

describe('policy state scheduling', () => {
  afterEach(() => vi.useRealTimers());

  it('syncs pod events at once and together, at most every 20 ms under churn; a policy change after 50 ms', async () => {
    const api = inProcessApi({ '/api/v1/namespaces': [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } }] });
    const store = new KubernetesDatastore(api.client);
    stores.push(store);
    const policy = new PolicyState(store, memoryMaps(), new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1) as unknown as NumberingStore);
    store.start();
    await store.whenReady();
    await new Promise((resolve) => setImmediate(resolve)); // the lists' own notice, on real time
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'performance'] });
    policy.apply([]); // the first sync reads the whole view
    const batches: number[] = [];
    policy.onSync((stats) => batches.push(stats.written));
    policy.watch(() => {});
    const addresses = () => new Set(policy.sync.state()!.ipcache.map((e) => e.address));
    try {
      vi.advanceTimersByTime(100); // a quiet spell
      for (let i = 1; i <= 20; i++) api.event(PODS, 'ADDED', kubePod(`p${i}`, `10.0.2.${i}`));
      // The datastore's notice and the sync it schedules with no delay (fake timers give a timer made while they run 1 ms).
      vi.advanceTimersByTime(1);
      expect(batches).toEqual([20]); // one sync, every pod's ipcache entry
      expect(addresses().size).toBe(20);

      // Right behind a sync: the next pod event waits for the gap, not for the coalescing wait.
      api.event(PODS, 'ADDED', kubePod('q', '10.0.3.1'));
      vi.advanceTimersByTime(19);
      expect(batches).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(batches).toHaveLength(2);
      expect(addresses().has('10.0.3.1')).toBe(true);

      // A policy (deleted and made again, say) waits 50 ms for what follows it, pods with it.
      vi.advanceTimersByTime(100);
      api.event('/apis/networking.k8s.io/v1/networkpolicies', 'ADDED', policyObject({ namespace: 'ns', name: 'deny', podSelector: {}, policyTypes: ['Ingress'] }));
      api.event(PODS, 'ADDED', kubePod('r', '10.0.3.2'));
      vi.advanceTimersByTime(49);
      expect(batches).toHaveLength(2);
      vi.advanceTimersByTime(1);
      expect(batches).toHaveLength(3);
      expect(addresses().has('10.0.3.2')).toBe(true);
    } finally {
      policy.stop();
    }
  });
});

function endpoint(id: number, pod: string, ip: string): Endpoint {
  return { id, identity: 0, createdAt: 0, containerID: `c${id}`, ifname: 'eth0', namespace: 'ns', pod, netns: `/run/netns/${pod}`, hostIfname: `lxc${id}`, hostIfindex: 100 + id, mac: '02:00:00:00:00:01', hostMac: '02:00:00:00:01:01', ips: [ip] };
}

class MemoryMap {
  private readonly entries = new Map<string, Buffer>();
  update(key: Buffer, value: Buffer): void {
    this.entries.set(key.toString('hex'), value);
  }
  delete(key: Buffer): boolean {
    return this.entries.delete(key.toString('hex'));
  }
  lookup(key: Buffer): Buffer | null {
    return this.entries.get(key.toString('hex')) ?? null;
  }
  keys(): Buffer[] {
    return [...this.entries.keys()].map((k) => Buffer.from(k, 'hex'));
  }
}

function memoryMaps(): DatapathMaps {
  return Object.fromEntries(['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'].map((n) => [n, new MemoryMap()])) as unknown as DatapathMaps;
}
