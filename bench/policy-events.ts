/**
 * What one watch event costs the agent at cluster scale (issue 16), through
 * the agent's own path: a Kubernetes watch event enters the datastore's
 * reflector, the policy state (agent/policy-sync/state.ts) takes it to the
 * compiler and the maps. bench/policy-scale.ts times the compiler and sync
 * alone from a whole view; this one adds the datastore and the hand-over,
 * where a change could still cost a walk of the cluster.
 *
 * The API server is an in-process stand-in (lists and watch streams fed by
 * this script, no HTTP), the maps are in memory, and each event is timed from
 * its arrival at the watch handler to the end of the sync (the agent's
 * coalescing delay is not in the figure). The cluster is bench/policy-scale.ts's:
 * --namespaces namespaces, pods with one of about pods/10 label sets,
 * --policies NetworkPolicies, --local of the pods on this node. Events in
 * turn: a pod added with a label set that exists, a pod relabelled to a new
 * one, a pod deleted, a policy changed, a namespace relabelled.
 *
 * Memory: --memory prints the heap the agent keeps per cluster pod, after
 * the datastore has listed the cluster (the reflectors' copies) and after the
 * first sync (the compiler's and the sync's state as well), measured after a
 * forced GC (run node with --expose-gc) with map stand-ins that keep nothing
 * (the kernel's maps are not the agent's heap). --pods-per-identity sets how
 * many pods share a label set (10 by default): two runs with different
 * values give the cost of an identity. --heap-snapshot FILE writes a V8 heap
 * snapshot after the first sync of the last size (to see what a pod costs).
 *
 * usage: node [--expose-gc] bench/policy-events.ts [--sizes 2500,10000,20000] [--policies 200] [--local 100] [--events 50] [--kinds add,relabel,delete,policy,namespace] [--memory] [--pods-per-identity 10]
 */
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { KubernetesDatastore } from '../agent/datastore/kubernetes.ts';
import type { KubeClient, WatchHandler } from '../agent/datastore/kubernetes-client.ts';
import type { KubeObject } from '../agent/datastore/local.ts';
import { PolicyState } from '../agent/policy-sync/state.ts';
import type { NumberingStore } from '../agent/policy-sync/numbering-store.ts';
import type { DatapathMaps } from '../datapath/loader.ts';
import type { Endpoint } from '../contract/api-types.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import { percentile } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '2500,10000,20000' },
    policies: { type: 'string', default: '200' },
    namespaces: { type: 'string', default: '50' },
    local: { type: 'string', default: '100' },
    events: { type: 'string', default: '50' },
    memory: { type: 'boolean', default: false },
    'pods-per-identity': { type: 'string', default: '10' },
    'heap-snapshot': { type: 'string' },
    kinds: { type: 'string', default: 'add,relabel,delete,policy,namespace' },
  },
});
const SIZES = args.sizes.split(',').map(Number);
const POLICIES = Number(args.policies);
const NAMESPACES = Number(args.namespaces);
const LOCAL = Number(args.local);
const EVENTS = Number(args.events);
const PODS_PER_IDENTITY = Number(args['pods-per-identity']);

const PODS = '/api/v1/pods';
const NAMESPACE_PATH = '/api/v1/namespaces';
const POLICY_PATH = '/apis/networking.k8s.io/v1/networkpolicies';

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

/** An API server in this process: lists what it is given, and hands the script each collection's watch handler. */
/** A map that keeps nothing: memory figures leave out the kernel's maps. */
class DiscardingMap {
  update(): void {}
  delete(): boolean {
    return true;
  }
  lookup(): Buffer | null {
    return null;
  }
  keys(): Buffer[] {
    return [];
  }
}

class InProcessApi {
  readonly collections = new Map<string, KubeObject[]>();
  readonly watchers = new Map<string, WatchHandler>();
  private rv = 1;
  client(): KubeClient {
    return {
      getJson: async (path: string) => ({ metadata: { resourceVersion: String(this.rv) }, items: this.collections.get(path) ?? [] }),
      watch: async (path: string, _query: unknown, onEvent: WatchHandler) => {
        this.watchers.set(path, onEvent);
        return new AbortController();
      },
      server: () => 'in-process',
    } as unknown as KubeClient;
  }
  /** Delivers one watch event, as the stream would. */
  event(path: string, type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: KubeObject): void {
    this.rv++;
    const withRv = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } };
    this.watchers.get(path)!(type, withRv as unknown as Record<string, unknown>);
  }
}

function address(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function podObject(i: number, labels: Record<string, string>): KubeObject {
  const ip = address(i + 1);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: `ns-${i % NAMESPACES}`, name: `pod-${i}`, uid: `uid-${i}`, labels },
    spec: { nodeName: `node-${i % 100}`, containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] as unknown as Record<string, unknown>[] } as Record<string, unknown>,
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], hostIP: '192.168.0.1' },
  };
}

function policyObject(p: number, apps: number, port = 8080): KubeObject {
  const app = `app-${p % apps}`;
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: `ns-${p % NAMESPACES}`, name: `pol-${p}` },
    spec: {
      podSelector: { matchLabels: { app } },
      ingress: [
        { from: [{ podSelector: { matchLabels: { app: `app-${(p + 1) % apps}` } } }], ports: [{ port }, { port: 'http' }] },
        { from: [{ namespaceSelector: { matchLabels: { team: `t${p % 5}` } }, podSelector: { matchLabels: { tier: 'fe' } } }], ports: [{ port: 443 }] },
      ],
      ...(p % 4 === 0
        ? { egress: [{ to: [{ namespaceSelector: {} }], ports: [{ protocol: 'UDP', port: 53 }] }, { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }] }], policyTypes: ['Ingress', 'Egress'] }
        : {}),
    },
  };
}

function namespaceObject(i: number, extra: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${i}`, labels: { team: `t${i % 5}`, env: i % 2 ? 'prod' : 'dev', ...extra } } };
}

interface Result {
  pods: number;
  firstSyncMs: number;
  p50Ms: number;
  p95Ms: number;
  byKind: Record<string, number>;
  listedHeapBytesPerPod?: number;
  heapBytesPerPod?: number;
  identities?: number;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function run(n: number): Promise<Result> {
  gc();
  const baseHeap = process.memoryUsage().heapUsed;
  const api = new InProcessApi();
  const apps = Math.max(1, Math.floor(n / PODS_PER_IDENTITY / NAMESPACES));
  const pods: KubeObject[] = [];
  for (let i = 0; i < n; i++) pods.push(podObject(i, { app: `app-${Math.floor(i / NAMESPACES) % apps}`, tier: i % 3 ? 'be' : 'fe' }));
  api.collections.set(PODS, pods);
  api.collections.set(NAMESPACE_PATH, Array.from({ length: NAMESPACES }, (_, i) => namespaceObject(i)));
  api.collections.set(POLICY_PATH, Array.from({ length: POLICIES }, (_, p) => policyObject(p, apps)));
  const datastore = new KubernetesDatastore(api.client());
  datastore.start();
  await datastore.whenReady();
  api.collections.clear(); // the API server's copy is not the agent's memory
  pods.length = 0;
  gc();
  const listedHeap = process.memoryUsage().heapUsed;

  const maps = Object.fromEntries(['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'].map((name) => [name, args.memory ? new DiscardingMap() : new MemoryMap()]));
  const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1);
  const policy = new PolicyState(datastore, maps as unknown as DatapathMaps, numbering as unknown as NumberingStore, ['10.96.0.0/16']);
  const endpoints: Endpoint[] = [];
  for (let k = 0; k < LOCAL && k < n; k++) {
    const i = Math.floor((k * n) / LOCAL);
    endpoints.push({
      id: k + 1,
      identity: 0,
      createdAt: 0,
      containerID: `c${k}`,
      ifname: 'eth0',
      namespace: `ns-${i % NAMESPACES}`,
      pod: `pod-${i}`,
      netns: `/var/run/netns/pod-${i}`,
      hostIfname: `lxc${k}`,
      hostIfindex: 1000 + k,
      mac: '02:00:00:00:00:01',
      hostMac: '02:00:00:00:01:01',
      ips: [address(i + 1)],
    });
  }
  let started = performance.now();
  policy.apply(endpoints);
  const firstSyncMs = performance.now() - started;

  let memory: Pick<Result, 'listedHeapBytesPerPod' | 'heapBytesPerPod' | 'identities'> = {};
  if (args.memory) {
    gc();
    const m = process.memoryUsage();
    if (args['heap-snapshot'] && n === SIZES.at(-1)) v8.writeHeapSnapshot(args['heap-snapshot']);
    memory = { listedHeapBytesPerPod: (listedHeap - baseHeap) / n, heapBytesPerPod: (m.heapUsed - baseHeap) / n, identities: policy.sync.state()!.identities.size };
  }

  const kinds = args.kinds.split(',') as ('add' | 'relabel' | 'delete' | 'policy' | 'namespace')[];
  const times: number[] = [];
  const byKind: Record<string, number[]> = Object.fromEntries(kinds.map((k) => [k, []]));
  let next = n;
  for (let e = 0; e < EVENTS; e++) {
    const kind = kinds[e % kinds.length]!;
    const at = 1 + ((e * 7919) % (n - 2));
    started = performance.now();
    if (kind === 'add') {
      next++;
      api.event(PODS, 'ADDED', podObject(next, { app: 'app-0', tier: 'be' }));
    } else if (kind === 'relabel') {
      api.event(PODS, 'MODIFIED', podObject(at, { app: `app-${Math.floor(at / NAMESPACES) % apps}`, tier: at % 3 ? 'be' : 'fe', version: `v${e}` }));
    } else if (kind === 'delete') {
      api.event(PODS, 'DELETED', podObject((at + 1) % n, {}));
    } else if (kind === 'policy') {
      api.event(POLICY_PATH, 'MODIFIED', policyObject(e % POLICIES, apps, 8000 + e));
    } else {
      api.event(NAMESPACE_PATH, 'MODIFIED', namespaceObject(e % NAMESPACES, { rev: `r${e}` }));
    }
    policy.apply(endpoints, started);
    const ms = performance.now() - started;
    times.push(ms);
    byKind[kind]!.push(ms);
  }
  datastore.stop();
  policy.stop();
  return {
    pods: n,
    firstSyncMs,
    p50Ms: percentile(times, 50),
    p95Ms: percentile(times, 95),
    byKind: Object.fromEntries(Object.entries(byKind).map(([k, xs]) => [k, percentile(xs, 50)])),
    ...memory,
  };
}

const results: Result[] = [];
console.log(`watch event → maps, through the datastore and the policy state: ${POLICIES} policies, ${NAMESPACES} namespaces, ${LOCAL} local endpoints, ${EVENTS} events per size (maps in memory)`);
console.log(`pods     first sync   event p50   event p95   add / relabel / delete / policy / namespace (p50)${args.memory ? '   identities  heap/pod listed  heap/pod synced' : ''}`);
for (const n of SIZES) {
  const r = await run(n);
  results.push(r);
  const f = (x: number) => `${x.toFixed(2)} ms`;
  const k = r.byKind;
  const mem = args.memory ? `   ${r.identities}  ${Math.round(r.listedHeapBytesPerPod!)} B  ${Math.round(r.heapBytesPerPod!)} B` : '';
  console.log(
    `${String(n).padEnd(8)} ${f(r.firstSyncMs).padStart(10)}   ${f(r.p50Ms).padStart(9)}   ${f(r.p95Ms).padStart(9)}   ${[k.add, k.relabel, k.delete, k.policy, k.namespace].map((x) => (x === undefined ? "-" : f(x))).join(" / ")}${mem}`,
  );
}
console.log(JSON.stringify({ bench: 'policy-events', policies: POLICIES, local: LOCAL, results }));
