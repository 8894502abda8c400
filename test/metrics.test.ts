/**
 * The agent's Prometheus metrics: /metrics is valid exposition text, reports
 * the cluster's state as it is (endpoints, identities, policies, pools, map
 * fill), counts real traffic (drops by reason and direction, verdicts), and
 * times CNI requests and policy propagation. `sluice local up` leaves
 * metrics off unless asked, and a taken address does not stop the agent.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMetricsAddress } from '../agent/metrics/server.ts';
import { counterValue, familyOf, parseExposition, samplesOf, valueOf, type Exposition } from './support/prometheus-text.ts';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {app: a}}
spec: {containers: [{name: web, ports: [{name: http, containerPort: 80, protocol: TCP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {app: b}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: c, labels: {app: c}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: a-from-c}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: c}}}], ports: [{protocol: TCP, port: 80}]}]
`;

/** Families the agent must always export (those with labels export at least one series once the cluster has pods). */
const EXPECTED_FAMILIES: Record<string, string> = {
  sluice_agent_info: 'gauge',
  sluice_agent_start_time_seconds: 'gauge',
  sluice_datapath_packets_total: 'counter',
  sluice_datapath_bytes_total: 'counter',
  sluice_forward_packets_total: 'counter',
  sluice_forward_bytes_total: 'counter',
  sluice_drop_packets_total: 'counter',
  sluice_drop_bytes_total: 'counter',
  sluice_policy_verdicts_total: 'counter',
  sluice_conntrack_established_packets_total: 'counter',
  sluice_arp_replies_total: 'counter',
  sluice_monitor_events_lost_total: 'counter',
  sluice_monitor_events_received_total: 'counter',
  sluice_endpoint_drop_packets_total: 'counter',
  sluice_endpoint_drop_bytes_total: 'counter',
  sluice_endpoint_allowed_flows_total: 'counter',
  sluice_endpoints: 'gauge',
  sluice_identities: 'gauge',
  sluice_policies: 'gauge',
  sluice_policy_revision: 'gauge',
  sluice_bpf_map_entries: 'gauge',
  sluice_bpf_map_max_entries: 'gauge',
  sluice_bpf_map_fill_ratio: 'gauge',
  sluice_bpf_map_count_truncated: 'gauge',
  sluice_ipam_pool_addresses: 'gauge',
  sluice_ipam_pool_used_addresses: 'gauge',
  sluice_cni_request_duration_seconds: 'histogram',
  sluice_policy_propagation_seconds: 'histogram',
  sluice_policy_map_updates_total: 'counter',
};

type Status = {
  counters: Record<string, { packets: number }>;
  metrics: { address: string | null; listening: boolean };
  pools: { cidr: string; size: number; used: number }[];
  agent: { version: string };
};

describe('agent metrics', () => {
  const cluster = new TestCluster();
  const manifests = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-metrics-'));
  let url = '';

  const status = async () => JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as Status;
  const scrape = async (): Promise<Exposition> => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return parseExposition(await res.text());
  };
  const apply = (name: string, yaml: string) => {
    const file = path.join(manifests, name);
    fs.writeFileSync(file, yaml);
    return must(SLUICE, ['local', '--dir', cluster.dir, 'apply', '-f', file]);
  };
  const probe = (from: string, to: string, timeoutMs: number) => cluster.local('probe', from, to, '--protocol', 'tcp', '--port', '80', '--timeout-ms', String(timeoutMs));

  beforeAll(async () => {
    // Port 0: the kernel picks a free port; status tells which.
    await cluster.up('--metrics-address', '127.0.0.1:0');
    await apply('cluster.yaml', MANIFESTS);
    const s = await status();
    expect(s.metrics.listening).toBe(true);
    url = `http://${s.metrics.address}/metrics`;
  });
  afterAll(async () => {
    await cluster.teardown();
    fs.rmSync(manifests, { recursive: true, force: true });
  });

  it('serves valid Prometheus text in which every sample belongs to a declared family and counters and histograms are consistent', async () => {
    const m = await scrape();
    for (const s of m.samples) {
      const family = familyOf(m, s.name);
      expect(family, `sample ${s.name} has no TYPE`).toBeDefined();
      if (m.types.get(family!) === 'counter') expect(s.value, s.name).toBeGreaterThanOrEqual(0);
    }
    for (const [name, type] of Object.entries(EXPECTED_FAMILIES)) expect(m.types.get(name), name).toBe(type);
    for (const name of [...m.types.keys()]) expect(name.startsWith('sluice_'), name).toBe(true);
    // Histograms: buckets cumulative, +Inf equal to the count.
    for (const [name, type] of m.types) {
      if (type !== 'histogram') continue;
      for (const count of samplesOf(m, `${name}_count`)) {
        const series = samplesOf(m, `${name}_bucket`, count.labels);
        const finite = series.filter((b) => b.labels.le !== '+Inf').sort((p, q) => Number(p.labels.le) - Number(q.labels.le));
        for (let i = 1; i < finite.length; i++) expect(finite[i]!.value).toBeGreaterThanOrEqual(finite[i - 1]!.value);
        expect(series.find((b) => b.labels.le === '+Inf')?.value).toBe(count.value);
      }
    }
  });

  it('reports endpoints, identities, policies, IPAM pools and map fill as the cluster has them', async () => {
    const m = await scrape();
    const s = await status();
    expect(valueOf(m, 'sluice_endpoints')).toBe(3);
    expect(valueOf(m, 'sluice_identities')).toBe(3); // three pods, three label sets
    expect(valueOf(m, 'sluice_policies')).toBe(1);
    expect(valueOf(m, 'sluice_ipam_pool_used_addresses', { pool: cluster.podCIDR })).toBe(3);
    expect(valueOf(m, 'sluice_ipam_pool_addresses', { pool: cluster.podCIDR })).toBe(s.pools[0]!.size);
    expect(valueOf(m, 'sluice_agent_info', { node: os.hostname(), version: s.agent.version })).toBe(1);
    // One endpoints entry per pod address; the policy map holds a's allow entry.
    expect(valueOf(m, 'sluice_bpf_map_entries', { map: 'endpoints' })).toBe(3);
    expect(valueOf(m, 'sluice_bpf_map_entries', { map: 'policy' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(m, 'sluice_bpf_map_max_entries', { map: 'endpoints' })).toBe(65536);
    for (const map of ['endpoints', 'ipcache', 'policy', 'cidr_policy', 'conntrack', 'fragments']) {
      const entries = valueOf(m, 'sluice_bpf_map_entries', { map });
      const max = valueOf(m, 'sluice_bpf_map_max_entries', { map });
      expect(max).toBeGreaterThan(0);
      expect(valueOf(m, 'sluice_bpf_map_fill_ratio', { map })).toBeCloseTo(entries / max, 12);
      expect(valueOf(m, 'sluice_bpf_map_count_truncated', { map })).toBe(0);
    }
  });

  it('counts a denied connection as a policy drop at ingress, in /metrics and in sluice status alike', async () => {
    const before = await scrape();
    const statusBefore = await status();
    expect((await probe('x/b', 'x/a', 500)).code).toBe(1);
    const after = await scrape();
    const statusAfter = await status();
    const drops = (m: Exposition) => valueOf(m, 'sluice_drop_packets_total', { reason: 'policy', direction: 'ingress' });
    const delta = drops(after) - drops(before);
    expect(delta).toBeGreaterThanOrEqual(1);
    expect(statusAfter.counters.DROP_POLICY_INGRESS!.packets - statusBefore.counters.DROP_POLICY_INGRESS!.packets).toBe(delta);
    expect(valueOf(after, 'sluice_policy_verdicts_total', { verdict: 'denied', direction: 'ingress' }) - valueOf(before, 'sluice_policy_verdicts_total', { verdict: 'denied', direction: 'ingress' })).toBe(delta);
    const atA = (m: Exposition) => valueOf(m, 'sluice_endpoint_drop_packets_total', { namespace: 'x', pod: 'a', reason: 'policy', direction: 'ingress' });
    expect(atA(after)).toBeGreaterThanOrEqual(delta);
    expect(valueOf(after, 'sluice_drop_bytes_total', { reason: 'policy', direction: 'ingress' })).toBeGreaterThan(drops(after) * 40); // IPv4 + TCP headers at least
    expect(valueOf(after, 'sluice_policy_verdicts_total', { verdict: 'denied', direction: 'egress' })).toBe(0);
  });

  it('counts an allowed connection as an allowed verdict, for the endpoint too, and forwards it locally', async () => {
    const before = await scrape();
    expect((await probe('x/c', 'x/a', 2000)).code).toBe(0);
    const after = await scrape();
    const diff = (name: string, labels: Record<string, string> = {}) => counterValue(after, name, labels) - counterValue(before, name, labels);
    expect(diff('sluice_policy_verdicts_total', { verdict: 'allowed' })).toBeGreaterThanOrEqual(1);
    expect(diff('sluice_endpoint_allowed_flows_total', { namespace: 'x', pod: 'a' })).toBeGreaterThanOrEqual(1);
    expect(diff('sluice_endpoint_allowed_flows_total', { namespace: 'x', pod: 'c' })).toBeGreaterThanOrEqual(1);
    expect(diff('sluice_forward_packets_total', { direction: 'egress', path: 'local-pod' })).toBeGreaterThanOrEqual(3); // SYN, ACK, data at least
    expect(diff('sluice_conntrack_established_packets_total')).toBeGreaterThanOrEqual(2);
    expect(diff('sluice_datapath_packets_total', { program: 'from-pod', direction: 'egress' })).toBeGreaterThanOrEqual(3);
  });

  it('times CNI requests by route and policy propagation from datastore change to map write', async () => {
    const before = await scrape();
    const count = (m: Exposition, route: string) => samplesOf(m, 'sluice_cni_request_duration_seconds_count', { route }).reduce((n, s) => n + s.value, 0);
    expect(count(before, 'POST /v1/ipam/allocate')).toBeGreaterThanOrEqual(3);
    expect(count(before, 'PUT /v1/endpoints')).toBeGreaterThanOrEqual(3);

    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', 'x/d']);
    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'delete', 'x/d']);
    await apply('policy-2.yaml', `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: b-isolated}
spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
`);
    const after = await scrape();
    expect(count(after, 'POST /v1/ipam/allocate') - count(before, 'POST /v1/ipam/allocate')).toBe(1);
    expect(count(after, 'PUT /v1/endpoints') - count(before, 'PUT /v1/endpoints')).toBe(1);
    expect(count(after, 'DELETE /v1/endpoints/:containerID/:ifname') - count(before, 'DELETE /v1/endpoints/:containerID/:ifname')).toBeGreaterThanOrEqual(1);
    // Non-CNI routes (status, metrics of this test) are not timed as CNI requests.
    expect(samplesOf(after, 'sluice_cni_request_duration_seconds_count', { route: 'GET /v1/status' })).toEqual([]);
    const sum = valueOf(after, 'sluice_cni_request_duration_seconds_sum', { route: 'POST /v1/ipam/allocate', code: '200' });
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10 * count(after, 'POST /v1/ipam/allocate'));

    const propagations = (m: Exposition) => valueOf(m, 'sluice_policy_propagation_seconds_count');
    expect(propagations(after)).toBeGreaterThan(propagations(before));
    expect(valueOf(after, 'sluice_policy_propagation_seconds_sum')).toBeGreaterThan(0);
    expect(valueOf(after, 'sluice_policies')).toBe(2);
    expect(valueOf(after, 'sluice_policy_map_updates_total', { op: 'write' })).toBeGreaterThan(valueOf(before, 'sluice_policy_map_updates_total', { op: 'write' }));
  });

  it('answers 404 off /metrics', async () => {
    expect((await fetch(url.replace(/\/metrics$/, '/other'))).status).toBe(404);
  });

  describe('local clusters', () => {
    const others: TestCluster[] = [];
    afterAll(async () => {
      for (const c of others) await c.teardown();
    });

    it('sluice local up starts the agent with metrics off unless --metrics-address is given', async () => {
      const plain = new TestCluster();
      others.push(plain);
      await plain.up();
      const s = JSON.parse(await must(SLUICE, ['status', '--socket', plain.socket, '-o', 'json'])) as Status;
      expect(s.metrics).toEqual({ address: null, listening: false });
      expect(await must(SLUICE, ['status', '--socket', plain.socket])).toMatch(/^metrics:\s+off$/m);
    });

    it('an agent whose metrics address is taken keeps running, with metrics off and the reason in status', async () => {
      const taken = new TestCluster();
      others.push(taken);
      const address = (await status()).metrics.address!;
      await taken.up('--metrics-address', address);
      const s = JSON.parse(await must(SLUICE, ['status', '--socket', taken.socket, '-o', 'json'])) as Status & { ready: boolean };
      expect(s.ready).toBe(true);
      expect(s.metrics).toEqual({ address, listening: false });
      expect(fs.readFileSync(path.join(taken.dir, 'agent.log'), 'utf8')).toContain(`cannot listen on ${address}: EADDRINUSE`);
    });
  });
});

describe('--metrics-address', () => {
  it('takes HOST:PORT or [IPv6]:PORT; 0 or empty disables; anything else is an error', () => {
    expect(parseMetricsAddress('127.0.0.1:9962')).toEqual({ host: '127.0.0.1', port: 9962 });
    expect(parseMetricsAddress('[::1]:9962')).toEqual({ host: '::1', port: 9962 });
    expect(parseMetricsAddress(':9962')).toEqual({ host: '0.0.0.0', port: 9962 });
    expect(parseMetricsAddress('0')).toBeNull();
    expect(parseMetricsAddress('')).toBeNull();
    for (const bad of ['9962', '127.0.0.1', '127.0.0.1:99999', '::1:9962', 'host:port']) expect(() => parseMetricsAddress(bad), bad).toThrow(/must be HOST:PORT/);
  });
});
