/**
 * A NetworkPolicy Sluice cannot compile, from a (fake) Kubernetes API server
 * through the agent's own parts: the Kubernetes datastore, the policy sync
 * (over in-memory maps), the Event reporter, the status route and the
 * metrics (issue 31). Its author gets a Warning Event on the object, once
 * per revision; `sluice status` has a line for it and sluice_policy_errors a
 * series, both gone once it is fixed; the pods it selects fail closed and
 * every other policy keeps working; sluice explain and sluice policy say which
 * rule and policy were not compiled, and why. The kernel side: policy-errors-local.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { KubeConfig } from '@kubernetes/client-node';
import type { Endpoint } from '../contract/api-types.ts';
import type { DatapathMaps } from '../datapath/loader.ts';
import { Identity } from '../datapath/abi.ts';
import { agentStatus, type StatusContext } from '../agent/api/status-route.ts';
import { explain } from '../agent/api/explain-route.ts';
import { KubeClient } from '../agent/datastore/kubernetes-client.ts';
import { KubernetesDatastore } from '../agent/datastore/kubernetes.ts';
import { PolicyEvents, POLICY_NOT_COMPILED } from '../agent/datastore/kubernetes-policy-events.ts';
import { AgentMetrics, type MetricsSources } from '../agent/metrics/metrics.ts';
import type { NumberingStore } from '../agent/policy-sync/numbering-store.ts';
import { PolicyState } from '../agent/policy-sync/state.ts';
import { renderStatus } from '../cli/status.ts';
import { renderExplanation } from '../cli/explain.ts';
import { peerText } from '../policy/explain.ts';
import { NOT_COMPILED_LABEL } from '../policy/policy-check.ts';
import { renderPolicy, type ReadablePolicy } from '../cli/policy.ts';
import { policyRoutes, type PolicyRoutesContext } from '../agent/api/policy-routes.ts';
import { MemoryNumbering } from '../policy/identity.ts';
import { Protocol } from '../lib/protocols.ts';
import { FakeKubeApi } from './datastore-kubernetes-fake-api.ts';
import { flowAllowed } from './support/policy-lookup.ts';

const PODS = '/api/v1/pods';
const NAMESPACES = '/api/v1/namespaces';
const POLICIES = '/apis/networking.k8s.io/v1/networkpolicies';
const TCP = Protocol.TCP;

/** An in-memory BPF map: the sync writes its entries here. */
class MemoryMap {
  readonly entries = new Map<string, Buffer>();
  update(key: Buffer, value: Buffer): void {
    this.entries.set(key.toString('hex'), Buffer.from(value));
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

const NAMES = ['a', 'b', 'c'];
const IPS: Record<string, string> = { a: '10.244.0.1', b: '10.244.0.2', c: '10.244.0.3' };
const ENDPOINTS: Endpoint[] = NAMES.map((name, i) => ({
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
  ips: [IPS[name]!],
}));

function pod(name: string) {
  return { metadata: { namespace: 'x', name, labels: { pod: name } }, spec: { nodeName: 'n1', containers: [{ name: 'c' }] }, status: { phase: 'Running', podIP: IPS[name], podIPs: [{ ip: IPS[name] }] } };
}

/** Ingress to a on a port no packet can carry: an API server refuses it, a datastore may still hold it. */
const BROKEN = { metadata: { namespace: 'x', name: 'a-web', uid: 'uid-a-web' }, spec: { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 70000 }] }] } };
/** c takes b only. */
const FINE = { metadata: { namespace: 'x', name: 'c-from-b', uid: 'uid-c' }, spec: { podSelector: { matchLabels: { pod: 'c' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] } };

let api: FakeKubeApi | null = null;
let store: KubernetesDatastore | null = null;
const reporters: PolicyEvents[] = [];

afterEach(async () => {
  for (const r of reporters.splice(0)) r.stop();
  store?.stop();
  store = null;
  await api?.close();
  api = null;
});

async function start() {
  api = new FakeKubeApi();
  api.put(NAMESPACES, { metadata: { name: 'x' } });
  for (const n of NAMES) api.put(PODS, pod(n));
  api.put(POLICIES, BROKEN);
  api.put(POLICIES, FINE);
  const server = await api.listen();
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'fake', server, skipTLSVerify: true }, { name: 'test' });
  const client = new KubeClient(kc);
  store = new KubernetesDatastore(client, { initialBackoffMs: 20, maxBackoffMs: 200 });
  store.start();
  await store.whenReady();
  const maps = Object.fromEntries(['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'].map((n) => [n, new MemoryMap()])) as unknown as DatapathMaps;
  const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1) as unknown as NumberingStore;
  const policy = new PolicyState(store, maps, numbering);
  const logs: string[] = [];
  const events = reporter(client, 'n1', logs);
  const ds = store;
  policy.onSync(() => void events.report(policy.policyErrors, ds.objects().networkPolicies));
  return { api, store, client, policy, events, logs };
}

function reporter(client: KubeClient, node: string, logs: string[]): PolicyEvents {
  const r = new PolicyEvents({ client, node, log: (m) => logs.push(m), retryMs: 50 });
  reporters.push(r);
  return r;
}

/** Syncs once the datastore shows what cond waits for. */
async function syncWhen(policy: PolicyState, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    policy.datastore.refresh();
    if (cond()) break;
    if (Date.now() > deadline) throw new Error('the datastore did not catch up');
    await new Promise((r) => setTimeout(r, 10));
  }
  policy.apply(ENDPOINTS, performance.now());
}

async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function can(policy: PolicyState, from: string, to: string, port = 80): boolean {
  const byIp = new Map(ENDPOINTS.map((e) => [e.ips[0]!, e.id]));
  return flowAllowed(policy.sync.state()!, byIp, IPS[from]!, IPS[to]!, TCP, port);
}

function statusContext(policy: PolicyState): StatusContext {
  return { node: 'n1', pinDir: '/sys/fs/bpf/none', ipam: { pools: [], usage: () => [] }, endpoints: { list: () => ENDPOINTS }, datapath: { adopted: true, version: 'v', runningVersion: 'v' }, policy, datastore: policy.datastore } as unknown as StatusContext;
}

async function metric(policy: PolicyState): Promise<string> {
  const metrics = new AgentMetrics({ onPolicySync: () => undefined, policyErrors: () => policy.policyErrors } as unknown as MetricsSources, false);
  return (await metrics.registry.getSingleMetricAsString('sluice_policy_errors')).split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

const postsOf = (a: FakeKubeApi) => a.requests.filter((r) => r.path === '/api/v1/namespaces/x/events').length;

describe('a NetworkPolicy that cannot be compiled, from the Kubernetes API', () => {
  it('gets a Warning Event on the object, a status line and a metric; its pod fails closed, the other policy works', async () => {
    const { api: a, policy, events, logs } = await start();
    expect(() => policy.apply(ENDPOINTS)).not.toThrow();
    expect(policy.syncError).toBeNull();

    // Fail closed: a is isolated and the broken rule lets nothing in; c-from-b works; b is open.
    expect(can(policy, 'b', 'a')).toBe(false);
    expect(can(policy, 'c', 'a', 4464)).toBe(false); // 70000 mod 65536
    expect(can(policy, 'b', 'c')).toBe(true);
    expect(can(policy, 'a', 'c')).toBe(false);
    expect(can(policy, 'c', 'b')).toBe(true);

    await until(() => events.stats.created === 1);
    expect(a.kubeEvents.size).toBe(1);
    const [event] = [...a.kubeEvents.values()] as Record<string, unknown>[];
    expect(event).toMatchObject({
      kind: 'Event',
      metadata: { namespace: 'x', name: expect.stringMatching(/^a-web\.[0-9a-f]{16}$/) },
      involvedObject: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', namespace: 'x', name: 'a-web', uid: 'uid-a-web' },
      reason: POLICY_NOT_COMPILED,
      type: 'Warning',
      source: { component: 'sluice-agent', host: 'n1' },
      count: 1,
    });
    expect(event!.message).toMatch(/^Sluice cannot compile this NetworkPolicy: ingress\[0\]\.ports\[0\]\.port: 70000 is not a port \(1-65535\) \(this rule allows nothing\)\. The pods it selects stay isolated/);
    expect(logs.join('\n')).toMatch(/NetworkPolicy x\/a-web cannot be compiled/);

    const status = await agentStatus(statusContext(policy), false);
    expect(status.ready).toBe(true); // the author's mistake, not the node's
    expect(status.policyErrors).toEqual([{ namespace: 'x', name: 'a-web', problems: [expect.stringMatching(/^ingress\[0\]\.ports\[0\]\.port: 70000/)] }]);
    const lines = renderStatus({ ...status, counters: {}, recentDrops: [] }, Date.now());
    expect(lines).toContainEqual(expect.stringMatching(/^ {12}NOT COMPILED: NetworkPolicy x\/a-web: ingress\[0\]\.ports\[0\]\.port: 70000 is not a port .*\(its pods fail closed\)$/));
    expect(await metric(policy)).toBe('sluice_policy_errors{namespace="x",name="a-web"} 1');
    // sluice explain: denied by the policy it names, and why that policy allows nothing.
    const why = explain({ node: 'n1', endpoints: { list: () => ENDPOINTS }, policy, serviceCidrs: [] }, { from: 'x/b', to: 'x/a', port: 80, protocol: 'TCP' });
    expect(why.allowed).toBe(false);
    expect(why.ingress.policies).toEqual(['x/a-web']);
    expect(why.warnings).toContain('ingress of x/a: NetworkPolicy x/a-web cannot be compiled as written (ingress[0].ports[0].port: 70000 is not a port (1-65535) (this rule allows nothing)); what cannot be read allows nothing');

    // Fixed: no more line or series, and the policy as written applies.
    a.put(POLICIES, { ...BROKEN, spec: { ...BROKEN.spec, ingress: [{ ports: [{ port: 80 }] }] } });
    await syncWhen(policy, () => policy.datastore.objects().networkPolicies.some((p) => JSON.stringify(p.spec).includes('"port":80')));
    expect(policy.policyErrors).toEqual([]);
    expect((await agentStatus(statusContext(policy), false)).policyErrors).toEqual([]);
    expect(renderStatus({ ...(await agentStatus(statusContext(policy), false)), counters: {}, recentDrops: [] }, Date.now()).join('\n')).not.toMatch(/NOT COMPILED/);
    expect(await metric(policy)).toBe('');
    expect(can(policy, 'b', 'a', 80)).toBe(true);
    expect(can(policy, 'b', 'a', 81)).toBe(false);
  });

  it('reports once per revision of the object, not per sync; a new broken revision gets its own Event', async () => {
    const { api: a, policy } = await start();
    policy.apply(ENDPOINTS);
    await until(() => a.kubeEvents.size === 1);
    for (let i = 0; i < 5; i++) policy.apply(ENDPOINTS);
    a.put(POLICIES, { ...FINE, spec: { ...FINE.spec, policyTypes: ['Ingress'] } }); // another object changes
    await syncWhen(policy, () => policy.datastore.objects().networkPolicies.some((p) => JSON.stringify(p.spec).includes('policyTypes')));
    await new Promise((r) => setTimeout(r, 100));
    expect(postsOf(a)).toBe(1);
    expect(a.kubeEvents.size).toBe(1);

    a.put(POLICIES, { ...BROKEN, spec: { ...BROKEN.spec, ingress: [{ ports: [{ protocol: 'tcp', port: 80 }] }] } });
    await syncWhen(policy, () => policy.datastore.objects().networkPolicies.some((p) => JSON.stringify(p.spec).includes('"tcp"')));
    await until(() => a.kubeEvents.size === 2);
    expect([...a.kubeEvents.values()].map((e) => e.message as string).at(-1)).toMatch(/protocol: 'tcp' is not TCP, UDP or SCTP/);
    expect(can(policy, 'b', 'a')).toBe(false);
  });

  it('a second node names the Event alike: it finds it there and moves its lastTimestamp on, no second Event', async () => {
    const { api: a, client, policy } = await start();
    policy.apply(ENDPOINTS);
    await until(() => a.kubeEvents.size === 1);
    const first = [...a.kubeEvents.values()][0]!;
    const clock = Date.parse(String(first.lastTimestamp)) + 60_000;
    const other = new PolicyEvents({ client, node: 'n2', log: () => undefined, now: () => new Date(clock) });
    reporters.push(other);
    await other.report(policy.policyErrors, policy.datastore.objects().networkPolicies);
    expect(other.stats).toEqual({ created: 0, existing: 1, failed: 0 });
    expect(a.kubeEvents.size).toBe(1);
    const after = [...a.kubeEvents.values()][0]!;
    expect(after.lastTimestamp).toBe(new Date(clock).toISOString().replace(/\.\d+Z$/, 'Z'));
    expect(after.firstTimestamp).toBe(first.firstTimestamp);
  });

  it('an Event the API server did not take is tried again', async () => {
    const { api: a, policy, events, logs } = await start();
    a.failEventWrites = 1;
    policy.apply(ENDPOINTS);
    await until(() => events.stats.created === 1);
    expect(a.kubeEvents.size).toBe(1);
    expect(events.stats).toMatchObject({ created: 1, failed: 1 });
    expect(logs.join('\n')).toMatch(/Event for NetworkPolicy x\/a-web not recorded \(tried again in 0\.05 s\)/);
  });

  it('sluice explain names the rule that was not compiled and why; sluice policy marks the policy', async () => {
    const { policy } = await start();
    policy.apply(ENDPOINTS);
    const why = explain({ node: 'n1', endpoints: { list: () => ENDPOINTS }, policy, serviceCidrs: [] }, { from: 'x/b', to: 'x/a', port: 80, protocol: 'TCP' });
    expect(why.ingress.notMatched).toEqual([expect.objectContaining({ policy: 'x/a-web', rule: 0, notCompiled: 'ingress[0].ports[0].port: 70000 is not a port (1-65535)' })]);
    const lines = renderExplanation(why);
    expect(lines).toContainEqual(expect.stringMatching(/ x\/a-web ingress rule 0: rule not compiled \(ingress\[0\]\.ports\[0\]\.port: 70000 is not a port \(1-65535\)\), allows nothing$/));
    expect(lines.join('\n')).not.toMatch(/rule-not-compiled|peer does not match/);
    expect(peerText({ podSelector: { matchExpressions: [{ key: NOT_COMPILED_LABEL, operator: 'In', values: [] }] } }, 'x')).toBe('rule not compiled');
    // A rule that compiled is still judged by its peer and port.
    const fine = explain({ node: 'n1', endpoints: { list: () => ENDPOINTS }, policy, serviceCidrs: [] }, { from: 'x/a', to: 'x/c', port: 80, protocol: 'TCP' });
    expect(fine.ingress.notMatched).toEqual([expect.not.objectContaining({ notCompiled: expect.anything() })]);

    const route = policyRoutes({ endpoints: { list: () => ENDPOINTS }, policy, datapath: { maps: { ep_counters: { lookupPerCpu: () => [] } } } } as unknown as PolicyRoutesContext).find((r) => r.pattern === '/v1/policy/:namespace/:pod')!;
    const answer = (await route.handler({ params: ['x', 'a'], query: new URLSearchParams(), body: undefined })) as ReadablePolicy[];
    expect(answer[0]!.notCompiled).toEqual([{ policy: 'x/a-web', problems: ['ingress[0].ports[0].port: 70000 is not a port (1-65535) (this rule allows nothing)'] }]);
    const screen = renderPolicy('x/a', answer);
    expect(screen).toContain('  policies: x/a-web (NOT COMPILED)');
    expect(screen).toContain('    x/a-web NOT COMPILED as written: ingress[0].ports[0].port: 70000 is not a port (1-65535) (this rule allows nothing)');
    const other = (await route.handler({ params: ['x', 'c'], query: new URLSearchParams(), body: undefined })) as ReadablePolicy[];
    expect(other[0]!.notCompiled).toEqual([]);
    expect(renderPolicy('x/c', other)).toContain('  policies: x/c-from-b');
  });

  it('a deleted object drops out of the status and the metric', async () => {
    const { api: a, policy } = await start();
    policy.apply(ENDPOINTS);
    expect(policy.policyErrors).toHaveLength(1);
    a.delete(POLICIES, 'x', 'a-web');
    await syncWhen(policy, () => policy.datastore.objects().networkPolicies.length === 1);
    expect(policy.policyErrors).toEqual([]);
    expect(await metric(policy)).toBe('');
    expect(can(policy, 'b', 'a')).toBe(true);
  });
});
