/**
 * The Kubernetes datastore against a fake list/watch server: initial lists
 * (paged), watch events, bookmarks, 410 Gone, dropped connections, an API
 * server that restarts, failing lists, and a pod fetched directly when the
 * watch lags. The real API server is exercised by `make e2e`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../agent/datastore/kubernetes-client.ts';
import { KubernetesDatastore } from '../agent/datastore/kubernetes.ts';
import { FakeKubeApi } from './datastore-kubernetes-fake-api.ts';
import { serviceTable } from '../agent/services/table.ts';

const PODS = '/api/v1/pods';
const NAMESPACES = '/api/v1/namespaces';
const NODES = '/api/v1/nodes';
const POLICIES = '/apis/networking.k8s.io/v1/networkpolicies';
const SERVICES = '/api/v1/services';
const ENDPOINTS = '/api/v1/endpoints';
const SLICES = '/apis/discovery.k8s.io/v1beta1/endpointslices';
/** Every collection the datastore watches. */
const WATCHES = 7;

let api: FakeKubeApi | null = null;
let store: KubernetesDatastore | null = null;

afterEach(async () => {
  store?.stop();
  store = null;
  await api?.close();
  api = null;
});

function pod(ns: string, name: string, labels: Record<string, string>, ip: string, extra: { hostNetwork?: boolean; phase?: string } = {}) {
  return {
    metadata: { namespace: ns, name, labels, managedFields: [{ manager: 'kubelet' }] },
    spec: { nodeName: 'n1', hostNetwork: extra.hostNetwork, containers: [{ name: 'c', image: 'agnhost', ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }] }] },
    status: { phase: extra.phase ?? 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

async function startWith(setup: (a: FakeKubeApi) => void, opts: { watchTimeoutMinSec?: number } = {}): Promise<{ api: FakeKubeApi; store: KubernetesDatastore; logs: string[] }> {
  api = new FakeKubeApi();
  setup(api);
  const server = await api.listen();
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'fake', server, skipTLSVerify: true }, { name: 'test' });
  const logs: string[] = [];
  store = new KubernetesDatastore(new KubeClient(kc), { log: (m) => logs.push(m), initialBackoffMs: 20, maxBackoffMs: 200, ...opts });
  store.start();
  return { api, store, logs };
}

/** Polls until the condition holds (refreshing the store), or fails after timeoutMs. */
async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    store?.refresh();
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not met in time');
}

function podNames(s: KubernetesDatastore): string[] {
  return s.objects().pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
}

function labelsOf(s: KubernetesDatastore, ns: string, name: string): Record<string, string> | undefined {
  return s.objects().pods.find((p) => p.metadata.namespace === ns && p.metadata.name === name)?.metadata.labels;
}

describe('Kubernetes datastore', () => {
  it('is not ready until every collection is listed, then serves plain objects (paged lists, kinds filled in)', async () => {
    const { store: s } = await startWith((a) => {
      a.failLists = 2; // the first lists fail: readiness must wait for a complete one
      a.put(NAMESPACES, { metadata: { name: 'x', labels: { team: 'a' } } });
      a.put(NODES, { metadata: { name: 'n1' }, spec: { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.1' }] } });
      for (let i = 0; i < 1100; i++) a.put(PODS, pod('x', `p${String(i).padStart(4, '0')}`, { app: 'a' }, `10.244.${Math.floor(i / 250)}.${(i % 250) + 1}`));
      a.put(PODS, pod('kube-system', 'proxy', { k: 'proxy' }, '192.0.2.1', { hostNetwork: true }));
      a.put(PODS, pod('x', 'done', { app: 'a' }, '10.244.9.9', { phase: 'Succeeded' }));
      a.put(POLICIES, { metadata: { namespace: 'x', name: 'deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } });
    });
    expect(s.ready()).toBe(false);
    await s.whenReady();
    expect(s.ready()).toBe(true);
    expect(s.refresh()).toBe(true);
    const objs = s.objects();
    // Host-networked and finished pods hold no address of their own.
    expect(objs.pods).toHaveLength(1100);
    expect(podNames(s)).not.toContain('kube-system/proxy');
    expect(s.podExists('kube-system', 'proxy')).toBe(true);
    const p0 = objs.pods[0]!;
    expect(p0).toMatchObject({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name: 'p0000', labels: { app: 'a' } }, status: { podIPs: [{ ip: '10.244.0.1' }] } });
    expect(p0.metadata).not.toHaveProperty('managedFields');
    expect((p0.spec as { containers: unknown[] }).containers).toEqual([{ name: 'c', ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }] }]);
    expect(objs.networkPolicies[0]).toMatchObject({ kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1', spec: { podSelector: {} } });
    expect(s.node('n1')?.spec).toEqual({ podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] });
    expect(s.stats().pods!.lists).toBe(1);
  });

  it('applies watch events at once through the push hook, and ignores changes of fields it does not read', async () => {
    const { api: a, store: s } = await startWith((f) => f.put(NAMESPACES, { metadata: { name: 'x' } }));
    await s.whenReady();
    s.refresh();
    let pushes = 0;
    s.onChange(() => pushes++);
    await until(() => a.openWatches() === WATCHES);

    const t0 = performance.now();
    a.put(POLICIES, { metadata: { namespace: 'x', name: 'p' }, spec: { podSelector: {} } });
    await until(() => pushes > 0 && s.objects().networkPolicies.length === 1);
    expect(performance.now() - t0).toBeLessThan(1_000);

    a.put(PODS, pod('x', 'a', { app: 'a' }, '10.244.0.2'));
    await until(() => labelsOf(s, 'x', 'a')?.app === 'a');
    a.put(PODS, pod('x', 'a', { app: 'b' }, '10.244.0.2'));
    await until(() => labelsOf(s, 'x', 'a')?.app === 'b');

    // A status-only change (conditions, which the agent does not read) is no change.
    const changed = pod('x', 'a', { app: 'b' }, '10.244.0.2');
    changed.status.conditions = [{ type: 'Ready', status: 'False' }];
    const before = pushes;
    a.put(PODS, changed);
    await new Promise((r) => setTimeout(r, 100));
    expect(pushes).toBe(before);
    expect(s.refresh()).toBe(false);

    a.delete(PODS, 'x', 'a');
    a.delete(POLICIES, 'x', 'p');
    await until(() => s.objects().pods.length === 0 && s.objects().networkPolicies.length === 0);
  });

  it('resumes a dropped watch from the last bookmark, without listing again', async () => {
    const { api: a, store: s } = await startWith((f) => f.put(NAMESPACES, { metadata: { name: 'x' } }));
    await s.whenReady();
    await until(() => a.openWatches() === WATCHES);
    // Changes elsewhere move the resourceVersion on; the pod watch hears of it only by a bookmark.
    a.put(NAMESPACES, { metadata: { name: 'y' } });
    const rv = a.bookmark();
    await until(() => s.stats().pods!.bookmarks === 1);
    a.dropWatches();
    a.put(PODS, pod('x', 'after', {}, '10.244.0.3'));
    await until(() => podNames(s).includes('x/after'));
    const podWatches = a.requests.filter((r) => r.path === PODS && r.query.get('watch') === 'true');
    expect(podWatches.at(-1)!.query.get('resourceVersion')).toBe(rv);
    expect(podWatches.at(-1)!.query.get('allowWatchBookmarks')).toBe('true');
    expect(s.stats().pods!.lists).toBe(1);
  });

  for (const goneAsHttpStatus of [false, true]) {
    it(`lists again on 410 Gone (${goneAsHttpStatus ? 'HTTP status' : 'ERROR event'}) and converges, deletions included`, async () => {
      const { api: a, store: s } = await startWith((f) => {
        f.goneAsHttpStatus = goneAsHttpStatus;
        f.put(NAMESPACES, { metadata: { name: 'x' } });
        f.put(PODS, pod('x', 'old', { v: '1' }, '10.244.0.4'));
        f.put(PODS, pod('x', 'kept', { v: '1' }, '10.244.0.5'));
      });
      await s.whenReady();
      await until(() => a.openWatches() === WATCHES && podNames(s).length === 2);
      // While the agent is cut off, history moves on and is compacted away.
      a.dropWatches();
      a.delete(PODS, 'x', 'old');
      a.put(PODS, pod('x', 'kept', { v: '2' }, '10.244.0.5'));
      a.put(PODS, pod('x', 'new', { v: '1' }, '10.244.0.6'));
      a.compact();
      await until(() => podNames(s).join() === 'x/kept,x/new' && labelsOf(s, 'x', 'kept')?.v === '2');
      expect(s.stats().pods!.relistsAfterGone).toBeGreaterThanOrEqual(1);
      expect(s.stats().pods!.lists).toBeGreaterThanOrEqual(2);
      // And it watches on from the new list.
      a.put(PODS, pod('x', 'later', {}, '10.244.0.7'));
      await until(() => podNames(s).includes('x/later'));
    });
  }

  it('reconnects with backoff when the API server goes away, and catches up when it is back', async () => {
    const { api: a, store: s, logs } = await startWith((f) => f.put(NAMESPACES, { metadata: { name: 'x' } }));
    await s.whenReady();
    await until(() => a.openWatches() === WATCHES);
    await a.close();
    await new Promise((r) => setTimeout(r, 300));
    const failures = s.stats().pods!.failures;
    expect(failures).toBeGreaterThanOrEqual(1);
    // Backoff: a few attempts in 300 ms, not hundreds.
    expect(failures).toBeLessThan(15);
    a.put(PODS, pod('x', 'while-down', {}, '10.244.0.8'));
    await a.listen();
    await until(() => podNames(s).includes('x/while-down'));
    expect(logs.some((l) => l.includes('again in'))).toBe(true);
    // Still ready throughout: the cache it had stays valid.
    expect(s.ready()).toBe(true);
  });

  it('re-watches when the server ends a watch at its timeout', async () => {
    const { api: a, store: s } = await startWith((f) => f.put(NAMESPACES, { metadata: { name: 'x' } }), { watchTimeoutMinSec: 1 });
    await s.whenReady();
    await new Promise((r) => setTimeout(r, 2_500));
    expect(s.stats().pods!.watches).toBeGreaterThanOrEqual(2);
    expect(s.stats().pods!.lists).toBe(1);
    a.put(PODS, pod('x', 'z', {}, '10.244.0.9'));
    await until(() => podNames(s).includes('x/z'));
  });

  it('fetches a pod directly when a CNI ADD comes before the watch delivers it', async () => {
    const { api: a, store: s, logs } = await startWith((f) => f.put(NAMESPACES, { metadata: { name: 'x' } }));
    await s.whenReady();
    a.hiddenFromWatch.add('x/early');
    a.put(PODS, pod('x', 'early', { role: 'db' }, ''));
    await new Promise((r) => setTimeout(r, 50));
    expect(s.podExists('x', 'early')).toBe(false);
    await s.ensurePod('x', 'early');
    expect(s.podExists('x', 'early')).toBe(true);
    s.refresh();
    expect(labelsOf(s, 'x', 'early')).toEqual({ role: 'db' });
    expect(logs.some((l) => l.includes('fetched directly'))).toBe(true);
    // A pod that does not exist leaves the store alone; one already known is not fetched again.
    // Only GETs of one pod count: a watch that reconnects meanwhile (a loaded machine) lists and watches again.
    const podGets = () => a.requests.filter((r) => /^\/api\/v1\/namespaces\/x\/pods\/[^/]+$/.test(r.path)).length;
    const gets = podGets();
    await s.ensurePod('x', 'missing');
    await s.ensurePod('x', 'early');
    expect(podGets()).toBe(gets + 1);
    expect(s.podExists('x', 'missing')).toBe(false);
  });

  it('watches Services, Endpoints and EndpointSlices apart from policy: their changes push only service listeners', async () => {
    const { api: a, store: s } = await startWith((f) => {
      f.put(NAMESPACES, { metadata: { name: 'x' } });
      f.put(SERVICES, { metadata: { namespace: 'x', name: 'web' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] }, status: {} });
    });
    await s.whenReady();
    await until(() => s.servicesReady() && a.openWatches() === WATCHES);
    let policyPushes = 0;
    let servicePushes = 0;
    s.onChange(() => policyPushes++);
    s.onServicesChange(() => servicePushes++);
    s.refresh();

    a.put(ENDPOINTS, { metadata: { namespace: 'x', name: 'web' }, subsets: [{ addresses: [{ ip: '10.244.0.2' }], notReadyAddresses: [{ ip: '10.244.0.3' }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }] });
    await until(() => servicePushes > 0 && s.serviceObjects().endpoints.length === 1);
    expect(serviceTable(s.serviceObjects())[0]!.backends).toEqual([
      { address: '10.244.0.2', port: 8080, ready: true, terminating: false },
      { address: '10.244.0.3', port: 8080, ready: false, terminating: false },
    ]);
    // EndpointSlices win over Endpoints, and a terminating endpoint is never ready.
    a.put(SLICES, {
      metadata: { namespace: 'x', name: 'web-abc', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.0.4'], conditions: { ready: true } }, { addresses: ['10.244.0.5'], conditions: { ready: false, terminating: true } }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
    await until(() => s.serviceObjects().endpointSlices.length === 1);
    expect(serviceTable(s.serviceObjects())[0]!.backends.map((b) => [b.address, b.ready, b.terminating])).toEqual([['10.244.0.4', true, false], ['10.244.0.5', false, true]]);
    expect(s.serviceObjects().services[0]!.spec).not.toHaveProperty('status');
    await new Promise((r) => setTimeout(r, 50));
    expect(policyPushes).toBe(0);
    expect(s.refresh()).toBe(false);
  });

  it('stays ready for policy when the API server has no discovery.k8s.io/v1beta1 (servicesReady waits)', async () => {
    const { store: s } = await startWith((f) => {
      f.missingCollections.add(SLICES);
      f.put(NAMESPACES, { metadata: { name: 'x' } });
    });
    await s.whenReady();
    expect(s.ready()).toBe(true);
    expect(s.servicesReady()).toBe(false);
  });

  it('says which Services each change touched: a Service, its Endpoints, and both owners of a relabelled slice', async () => {
    const { api: a, store: s } = await startWith((f) => {
      f.put(SERVICES, { metadata: { namespace: 'x', name: 'web' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } });
    });
    await until(() => s.servicesReady() && a.openWatches() === WATCHES);
    expect(s.serviceChanges.take()).toEqual(['x/web']);
    a.put(ENDPOINTS, { metadata: { namespace: 'x', name: 'web' }, subsets: [] });
    a.put(SLICES, { metadata: { namespace: 'x', name: 'sl', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: [], ports: [] });
    await until(() => s.serviceObjects().endpointSlices.length === 1);
    expect(s.serviceChanges.take()).toEqual(['x/web']);
    expect(s.serviceChanges.inputsFor('x/web').inputs.endpointSlices!.map((o) => o.metadata.name)).toEqual(['sl']);
    a.put(SLICES, { metadata: { namespace: 'x', name: 'sl', labels: { 'kubernetes.io/service-name': 'db' } }, addressType: 'IPv4', endpoints: [], ports: [] });
    await until(() => s.serviceObjects().endpointSlices[0]!.metadata.labels!['kubernetes.io/service-name'] === 'db');
    expect(s.serviceChanges.take().sort()).toEqual(['x/db', 'x/web']);
    expect(s.serviceChanges.inputsFor('x/web').inputs.endpointSlices).toEqual([]);
    a.delete(SLICES, 'x', 'sl');
    await until(() => s.serviceObjects().endpointSlices.length === 0);
    expect(s.serviceChanges.take()).toEqual(['x/db']);
  });
});
