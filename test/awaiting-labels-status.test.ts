/**
 * Endpoints waiting for their labels are counted (issue 31): the policy sync
 * isolates an endpoint both ways while the datastore lacks its pod or
 * namespace (policy/unknown-labels.ts); `sluice status` names it and
 * sluice_endpoints_awaiting_labels counts it, both back to none once the pod
 * arrives. Through the agent's own parts: the policy sync over in-memory maps,
 * the status route, the status screen and the metrics.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../contract/api-types.ts';
import type { DatapathMaps } from '../datapath/loader.ts';
import { Identity } from '../datapath/abi.ts';
import { agentStatus, type StatusContext } from '../agent/api/status-route.ts';
import type { ClusterObjects } from '../agent/datastore/cluster-view.ts';
import type { Datastore } from '../agent/datastore/datastore.ts';
import { AgentMetrics, type MetricsSources } from '../agent/metrics/metrics.ts';
import type { NumberingStore } from '../agent/policy-sync/numbering-store.ts';
import { PolicyState } from '../agent/policy-sync/state.ts';
import { renderStatus } from '../cli/status.ts';
import { MemoryNumbering } from '../policy/identity.ts';

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

const IPS: Record<string, string> = { a: '10.244.0.1', b: '10.244.0.2' };
const ENDPOINTS: Endpoint[] = ['a', 'b'].map((name, i) => ({
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

const pod = (name: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name, labels: { pod: name } }, spec: { nodeName: 'n1', containers: [{ name: 'c' }] }, status: { podIP: IPS[name], podIPs: [{ ip: IPS[name] }] } });

/** A datastore like the Kubernetes one (pods may lag the endpoints) that has delivered the pods given. */
class LaggingDatastore implements Datastore {
  private current: ClusterObjects;
  private changed = true;
  constructor(pods: string[]) {
    this.current = this.with(pods);
  }
  deliver(pods: string[]): void {
    this.current = this.with(pods);
    this.changed = true;
  }
  private with(pods: string[]): ClusterObjects {
    return { pods: pods.map(pod), namespaces: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } }], networkPolicies: [], nodes: [], isolateUnknownPods: true };
  }
  refresh(): boolean {
    const c = this.changed;
    this.changed = false;
    return c;
  }
  objects(): ClusterObjects {
    return this.current;
  }
  describe(): string {
    return 'lagging stand-in';
  }
}

function start(pods: string[]) {
  const datastore = new LaggingDatastore(pods);
  const maps = Object.fromEntries(['endpoints', 'devices', 'ipcache', 'policy', 'cidr_policy', 'ep_counters'].map((n) => [n, new MemoryMap()])) as unknown as DatapathMaps;
  const numbering = new MemoryNumbering(Identity.FIRST_POD, Identity.FIRST_CIDR_SELECTOR + 1) as unknown as NumberingStore;
  return { datastore, policy: new PolicyState(datastore, maps, numbering) };
}

function statusContext(policy: PolicyState): StatusContext {
  return { node: 'n1', pinDir: '/sys/fs/bpf/none', ipam: { pools: [], usage: () => [] }, endpoints: { list: () => ENDPOINTS }, datapath: { adopted: true, version: 'v', runningVersion: 'v' }, policy, datastore: policy.datastore } as unknown as StatusContext;
}

/** The series as main.ts wires it. */
async function metric(policy: PolicyState): Promise<string> {
  const metrics = new AgentMetrics({ onPolicySync: () => undefined, endpointsAwaitingLabels: () => policy.awaitingLabels.length } as unknown as MetricsSources, false);
  return (await metrics.registry.getSingleMetricAsString('sluice_endpoints_awaiting_labels')).split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

async function screen(policy: PolicyState): Promise<string[]> {
  return renderStatus({ ...(await agentStatus(statusContext(policy), false)), counters: {}, recentDrops: [] }, Date.now());
}

describe('endpoints awaiting their labels', () => {
  it('are named by sluice status and counted by sluice_endpoints_awaiting_labels until their pod arrives', async () => {
    const { datastore, policy } = start(['a']);
    policy.apply(ENDPOINTS);
    expect(policy.awaitingLabels).toEqual([{ endpointId: 2, namespace: 'x', pod: 'b' }]);
    const status = await agentStatus(statusContext(policy), false);
    expect(status.awaitingLabels).toEqual([{ endpointId: 2, namespace: 'x', pod: 'b' }]);
    expect(status.ready).toBe(true); // the datastore is behind, the node is fine
    const lines = await screen(policy);
    expect(lines).toContain('endpoints:  2, 1 awaiting labels');
    expect(lines).toContainEqual(expect.stringMatching(/^ {12}AWAITING LABELS: x\/b \(endpoint 2\) is isolated both ways until the datastore delivers its pod and namespace$/));
    expect(await metric(policy)).toBe('sluice_endpoints_awaiting_labels 1');

    datastore.deliver(['a', 'b']);
    policy.apply(ENDPOINTS);
    expect(policy.awaitingLabels).toEqual([]);
    expect((await agentStatus(statusContext(policy), false)).awaitingLabels).toEqual([]);
    const after = await screen(policy);
    expect(after).toContain('endpoints:  2');
    expect(after.join('\n')).not.toMatch(/AWAITING/);
    expect(await metric(policy)).toBe('sluice_endpoints_awaiting_labels 0');
  });

  it('with a datastore whose pods never lag (the local cluster), none are awaiting', async () => {
    const { datastore, policy } = start([]);
    datastore.objects().isolateUnknownPods = false;
    policy.apply(ENDPOINTS);
    expect(policy.awaitingLabels).toEqual([]);
    expect(await metric(policy)).toBe('sluice_endpoints_awaiting_labels 0');
  });
});
