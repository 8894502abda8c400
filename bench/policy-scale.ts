/**
 * What one pod event costs the agent's policy sync as the cluster grows
 * (issue 16): the incremental compiler (policy/incremental.ts) against the
 * full compile of the cluster it replaces (SLUICE_POLICY_COMPILER=full), each
 * through DatapathSync.apply, so compile, ipcache and rule diffs and map
 * writes are all in the figure. The maps are in memory (a BPF map update is
 * a few µs, and both write the same entries: only the differences).
 *
 * The cluster: --namespaces namespaces, pods with one of about pods/10 label
 * sets, --policies NetworkPolicies (podSelector and namespaceSelector peers,
 * ports), --local of the pods on this node. Per size and compiler: one
 * untimed first sync, then --events pod events in turn (a pod added with a
 * label set that exists, a pod relabelled to a new one, a pod deleted),
 * timed one by one. Prints a table of medians and p95, and one JSON line.
 *
 * Pure CPU, no root, no kernel. The machine may be shared: run it alone.
 *
 * usage: node bench/policy-scale.ts [--sizes 2500,10000,20000] [--policies 200] [--local 100] [--events 30]
 */
import { parseArgs } from 'node:util';
import { DatapathSync, type PolicyCompilerKind, type SyncedMaps } from '../agent/policy-sync/maps.ts';
import type { Endpoint } from '../contract/api-types.ts';
import { Identity } from '../lib/identity-numbers.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import type { ClusterView, NetworkPolicy, PolicyPod } from '../policy/types.ts';
import { percentile } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '2500,10000,20000' },
    policies: { type: 'string', default: '200' },
    namespaces: { type: 'string', default: '50' },
    local: { type: 'string', default: '100' },
    events: { type: 'string', default: '30' },
  },
});
const SIZES = args.sizes.split(',').map(Number);
const POLICIES = Number(args.policies);
const NAMESPACES = Number(args.namespaces);
const LOCAL = Number(args.local);
const EVENTS = Number(args.events);

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

function address(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

/** A cluster of n pods: pod i is in namespace i % NAMESPACES, with one of about n/10 label sets. */
function makeCluster(n: number): { view: ClusterView; endpoints: Endpoint[] } {
  const namespaces = new Map<string, Record<string, string>>();
  for (let i = 0; i < NAMESPACES; i++) namespaces.set(`ns-${i}`, { team: `t${i % 5}`, env: i % 2 ? 'prod' : 'dev' });
  const apps = Math.max(1, Math.floor(n / 10 / NAMESPACES));
  const pods: PolicyPod[] = [];
  for (let i = 0; i < n; i++) {
    pods.push({
      namespace: `ns-${i % NAMESPACES}`,
      name: `pod-${i}`,
      labels: { app: `app-${Math.floor(i / NAMESPACES) % apps}`, tier: i % 3 ? 'be' : 'fe' },
      ips: [address(i + 1)],
      ports: [{ name: 'http', containerPort: 8080 }],
    });
  }
  const policies: NetworkPolicy[] = [];
  for (let p = 0; p < POLICIES; p++) {
    const namespace = `ns-${p % NAMESPACES}`;
    const app = `app-${p % apps}`;
    policies.push({
      namespace,
      name: `pol-${p}`,
      podSelector: { matchLabels: { app } },
      ingress: [
        { from: [{ podSelector: { matchLabels: { app: `app-${(p + 1) % apps}` } } }], ports: [{ port: 8080 }, { port: 'http' }] },
        { from: [{ namespaceSelector: { matchLabels: { team: `t${p % 5}` } }, podSelector: { matchLabels: { tier: 'fe' } } }], ports: [{ port: 443 }] },
      ],
      egress: p % 4 === 0 ? [{ to: [{ namespaceSelector: {} }], ports: [{ protocol: 'UDP', port: 53 }] }, { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }] }] : undefined,
      policyTypes: p % 4 === 0 ? ['Ingress', 'Egress'] : undefined,
    });
  }
  // The local pods: spread over the namespaces, like a node's share of the cluster.
  const endpoints: Endpoint[] = [];
  for (let k = 0; k < LOCAL && k < n; k++) {
    const pod = pods[Math.floor((k * n) / LOCAL)]!;
    endpoints.push({
      id: k + 1,
      identity: 0,
      createdAt: 0,
      containerID: `c${k}`,
      ifname: 'eth0',
      namespace: pod.namespace,
      pod: pod.name,
      netns: `/var/run/netns/${pod.name}`,
      hostIfname: `lxc${k}`,
      hostIfindex: 1000 + k,
      mac: '02:00:00:00:00:01',
      hostMac: '02:00:00:00:01:01',
      ips: pod.ips,
    });
  }
  return { view: { namespaces, pods, policies }, endpoints };
}

interface Result {
  pods: number;
  compiler: PolicyCompilerKind;
  firstSyncMs: number;
  p50Ms: number;
  p95Ms: number;
  byKind: Record<string, number>;
}

function run(n: number, compiler: PolicyCompilerKind): Result {
  const { view, endpoints } = makeCluster(n);
  const maps = Object.fromEntries(['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'].map((name) => [name, new MemoryMap()]));
  const sync = new DatapathSync(maps as unknown as SyncedMaps, new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1), ['10.96.0.0/16'], compiler);
  const hosts = ['192.168.0.1'];
  const nodes = Array.from({ length: 50 }, (_, i) => `192.168.0.${i + 1}`);
  let started = performance.now();
  sync.apply(view, endpoints, hosts, nodes);
  const firstSyncMs = performance.now() - started;

  const times: number[] = [];
  const byKind: Record<string, number[]> = { add: [], relabel: [], delete: [] };
  let next = n;
  for (let e = 0; e < EVENTS; e++) {
    const kind = (['add', 'relabel', 'delete'] as const)[e % 3]!;
    // Pods far from the local ones: what the agent sees most, remote churn.
    const at = 1 + ((e * 7919) % (n - 2));
    let pods = view.pods;
    if (kind === 'add') {
      next++;
      pods = [...pods, { namespace: `ns-${next % NAMESPACES}`, name: `pod-${next}`, labels: { app: 'app-0', tier: 'be' }, ips: [address(next + 1)], ports: [] }];
    } else if (kind === 'relabel') {
      const old = pods[at]!;
      pods = pods.slice();
      pods[at] = { ...old, labels: { ...old.labels, version: `v${e}` } };
    } else {
      pods = pods.filter((_, i) => i !== at);
    }
    view.pods = pods;
    started = performance.now();
    sync.apply(view, endpoints, hosts, nodes);
    const ms = performance.now() - started;
    times.push(ms);
    byKind[kind]!.push(ms);
  }
  const median = (xs: number[]) => percentile(xs, 50);
  return {
    pods: n,
    compiler,
    firstSyncMs,
    p50Ms: median(times),
    p95Ms: percentile(times, 95),
    byKind: Object.fromEntries(Object.entries(byKind).map(([k, xs]) => [k, median(xs)])),
  };
}

const results: Result[] = [];
console.log(`policy sync per pod event: ${POLICIES} policies, ${NAMESPACES} namespaces, ${LOCAL} local endpoints, ${EVENTS} events per run (maps in memory)`);
console.log('pods     compiler     first sync   event p50   event p95   add / relabel / delete (p50)');
for (const n of SIZES) {
  for (const compiler of ['full', 'incremental'] as const) {
    const r = run(n, compiler);
    results.push(r);
    const f = (x: number) => `${x.toFixed(2)} ms`;
    console.log(
      `${String(n).padEnd(8)} ${compiler.padEnd(12)} ${f(r.firstSyncMs).padStart(10)}   ${f(r.p50Ms).padStart(9)}   ${f(r.p95Ms).padStart(9)}   ${f(r.byKind.add!)} / ${f(r.byKind.relabel!)} / ${f(r.byKind.delete!)}`,
    );
  }
}
console.log(JSON.stringify({ bench: 'policy-scale', policies: POLICIES, local: LOCAL, results }));
