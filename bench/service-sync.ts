/**
 * Time from an Endpoints change to the datapath (issue 17), with 1, 1,000 and
 * 10,000 Services: an Endpoints object changed on a (fake) API server, its
 * watch event through the Kubernetes datastore, the service sync, and the
 * socket load balancer's maps written (real BPF maps, the object loaded
 * under pins of this benchmark's own, its hooks on a cgroup of its own that
 * no process is in). Peer: the same change taken by a full resync of every
 * Service (what the sync did before it was incremental), alternating with it.
 *
 * usage (root, after make): node bench/service-sync.ts [--services 1,1000,10000] [--changes 40]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../agent/datastore/kubernetes-client.ts';
import { KubernetesDatastore } from '../agent/datastore/kubernetes.ts';
import { startServices } from '../agent/services/start.ts';
import { loadServiceLb, removeServiceLb, serviceLbObjectBytes } from '../datapath/service-lb-loader.ts';
import { cgroup2Root } from '../datapath/trace-loader.ts';
import { FakeKubeApi } from '../test/datastore-kubernetes-fake-api.ts';
import { cleanupNow, onCleanup } from './cleanup.ts';
import { fmt, machine, percentile, table } from './stats.ts';

const { values } = parseArgs({ options: { services: { type: 'string', default: '1,1000,10000' }, changes: { type: 'string', default: '40' } } });
const SIZES = values.services.split(',').map(Number);
const CHANGES = Number(values.changes);
const ID = `bench-svc-${process.pid}`;
const PIN_ROOT = `/sys/fs/bpf/sluice-${ID}`;
const ENDPOINTS = '/api/v1/endpoints';

const root = cgroup2Root();
if (!root) throw new Error('no cgroup v2 hierarchy mounted');
const cgroup = path.join(root, `sluice-${ID}`);
fs.mkdirSync(cgroup, { recursive: true });
onCleanup('cgroup', () => fs.rmdirSync(cgroup));
onCleanup('pins', () => removeServiceLb(PIN_ROOT));

const endpointsOf = (i: number, extra: number) => ({
  metadata: { namespace: `ns${i % 100}`, name: `s${i}` },
  // The second backend differs on every change (a change to the same objects would be no event).
  subsets: [{ addresses: [{ ip: `10.244.${(i >> 8) & 255}.${i & 255}` }, { ip: extra === 0 ? `10.245.${(i >> 8) & 255}.${i & 255}` : `10.246.${(extra >> 8) & 255}.${extra & 255}` }], ports: [{ port: 8080 }] }],
});

interface Result {
  services: number;
  mode: string;
  latencyMs: number[];
  syncMs: number[];
}

async function measure(n: number): Promise<Result[]> {
  const api = new FakeKubeApi();
  for (let i = 0; i < n; i++) {
    api.put('/api/v1/services', { metadata: { namespace: `ns${i % 100}`, name: `s${i}` }, spec: { clusterIP: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, ports: [{ port: 80, targetPort: 8080 }] } });
    api.put(ENDPOINTS, endpointsOf(i, 0));
  }
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'fake', server: await api.listen(), skipTLSVerify: true }, { name: 'bench' });
  const store = new KubernetesDatastore(new KubeClient(kc), { log: (m) => console.error(`datastore: ${m}`) });
  store.start();
  try {
    while (!store.servicesReady()) await new Promise((r) => setTimeout(r, 20));
    const start = (mode: string, datastore: Parameters<typeof startServices>[0]['datastore']) => {
      const pinDir = path.join(PIN_ROOT, `${n}-${mode}`);
      return startServices({ enabled: true, pinDir, objectBytes: serviceLbObjectBytes, cgroupRoot: cgroup, datastore, log: () => undefined, load: (o) => loadServiceLb(o) });
    };
    const incremental = start('incremental', store);
    // The peer sees the same objects without the change index: each sync rebuilds every Service.
    const full = start('full', { refresh: () => false, objects: () => store.objects(), describe: () => 'full', serviceObjects: () => store.serviceObjects(), onServicesChange: () => undefined } as unknown as KubernetesDatastore);
    const results: Result[] = [
      { services: n, mode: 'incremental', latencyMs: [], syncMs: [] },
      { services: n, mode: 'full resync (peer)', latencyMs: [], syncMs: [] },
    ];
    let pending: { t0: number; turn: number; done: () => void } | null = null;
    const origSync = incremental.sync.bind(incremental);
    incremental.sync = () => {
      const stats = origSync();
      if (pending?.turn === 0 && stats) results[0]!.syncMs.push(stats.durationMs);
      return stats;
    };
    // Registered after the services part's own listener: runs right after its sync, in the same tick.
    store.onServicesChange(() => {
      if (!pending) return;
      if (pending.turn === 1) results[1]!.syncMs.push(full.sync()!.durationMs);
      results[pending.turn]!.latencyMs.push(performance.now() - pending.t0);
      pending.done();
    });
    for (let c = 0; c < CHANGES * 2; c++) {
      const i = (c * 7919) % n;
      await new Promise<void>((done) => {
        pending = { t0: performance.now(), turn: c % 2, done };
        api.put(ENDPOINTS, endpointsOf(i, c + 1));
      });
      pending = null;
    }
    incremental.close();
    full.close();
    return results;
  } finally {
    store.stop();
    await api.close();
  }
}

try {
  const all: Result[] = [];
  for (const n of SIZES) all.push(...(await measure(n)));
  const rows = all.map((r) => [
    String(r.services),
    r.mode,
    fmt(percentile(r.latencyMs, 50), 2),
    fmt(percentile(r.latencyMs, 99), 2),
    fmt(percentile(r.syncMs, 50), 2),
    fmt(percentile(r.syncMs, 99), 2),
  ]);
  console.log(table(['Services', 'sync', 'change→maps p50 ms', 'p99 ms', 'sync alone p50 ms', 'p99 ms'], rows));
  console.log(`${CHANGES} changes each, alternating; ${JSON.stringify(machine())}`);
  console.log(JSON.stringify({ results: all.map((r) => ({ services: r.services, mode: r.mode, p50: percentile(r.latencyMs, 50), p99: percentile(r.latencyMs, 99), syncP50: percentile(r.syncMs, 50), syncP99: percentile(r.syncMs, 99) })) }));
} finally {
  cleanupNow();
}
process.exit(0);
