/**
 * Flow records against the real kernel, with a scripted workload between the
 * pods of a local cluster: N TCP connections, M DNS queries of which K get
 * NXDOMAIN, H HTTP requests of which E answer 500. The records
 * (`sluice observe`) and /metrics must count each exactly; verdict records
 * name the policy and rule that allowed them, or the policies that denied
 * them; filters, --follow and the loss counts work as documented.
 * Namespace fl: a is the client, s serves (TCP, DNS on 53, HTTP), d is denied.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlowRecord, FlowsResponse } from '../contract/flows.ts';
import { must, sh, SLUICE, TestCluster } from './support/local-cluster.ts';
import { parseExposition, type Exposition } from './support/prometheus-text.ts';

const WORKLOAD = path.join(import.meta.dirname, 'support/l7-workload.py');
const PYTHON = '/usr/bin/python3';
const PORT_TCP = 7000;
const PORT_DNS = 53;
const PORT_HTTP = 8080;
/** The workload: well under the datapath's event burst (500 per CPU), so no record may be lost. */
const N = 40;
const M = 30;
const K = 10;
const H = 30;
const E = 6;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('flow records', () => {
  const cluster = new TestCluster();
  let ip: Record<string, string> = {};
  let netns: Record<string, string> = {};

  const inPod = (pod: string, ...args: string[]) => ['netns', 'exec', netns[`fl/${pod}`]!, PYTHON, WORKLOAD, ...args];
  const observe = async (...args: string[]): Promise<{ records: FlowRecord[] }> => {
    const out = await must(SLUICE, ['observe', '--socket', cluster.socket, '-o', 'json', '--last', '8192', ...args]);
    return { records: out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as FlowRecord) };
  };
  const flows = async (query: string): Promise<FlowsResponse> => {
    const out = await must('curl', ['-s', '--unix-socket', cluster.socket, `http://agent/v1/flows?${query}`]);
    return JSON.parse(out) as FlowsResponse;
  };
  const metrics = async () => {
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { metrics: { address: string } };
    return parseExposition(await (await fetch(`http://${status.metrics.address}/metrics`)).text());
  };
  const sum = ({ samples }: Exposition, name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
  const serve = (pod: string, ...args: string[]) => {
    const child = cluster.spawn('ip', inPod(pod, ...args));
    return new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code})`)));
    });
  };
  /** Polls until check holds (or time runs out), then returns the last answer. */
  const eventually = async <T>(read: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 10_000): Promise<T> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await read();
      if (check(v) || Date.now() > end) return v;
      await sleep(200);
    }
  };
  const toServer = (r: FlowRecord, port: number) => r.source.pod === 'a' && r.destination.pod === 's' && r.destination.port === port;

  beforeAll(async () => {
    await cluster.up('--metrics-address', '127.0.0.1:0');
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: fl}
${['a', 's', 'd'].map((p) => `---
apiVersion: v1
kind: Pod
metadata: {namespace: fl, name: ${p}, labels: {app: ${p}, tier: ${p === 's' ? 'server' : 'client'}}}
`).join('')}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: fl, name: server-in}
spec:
  podSelector: {matchLabels: {app: s}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: d}}}]
    ports: [{port: 9999}]
  - from: [{podSelector: {matchLabels: {app: a}}}]
`);
    ({ ip, netns } = await cluster.podAddresses());
    await Promise.all([serve('s', 'tcp-serve', String(PORT_TCP)), serve('s', 'dns-serve', String(PORT_DNS)), serve('s', 'http-serve', String(PORT_HTTP))]);
  }, 120_000);
  afterAll(() => cluster.teardown());

  it('records the scripted workload exactly: connections, DNS by rcode, HTTP by status, with latency', async () => {
    const server = ip['fl/s']!;
    expect(await must('ip', inPod('a', 'tcp-connect', server, String(PORT_TCP), String(N)))).toContain('done');
    const rcodes = (await must('ip', inPod('a', 'dns-query', server, String(PORT_DNS), String(M), String(K)))).trim().split(' ').map(Number);
    expect(rcodes.filter((r) => r === 3)).toHaveLength(K);
    const statuses = (await must('ip', inPod('a', 'http-get', server, String(PORT_HTTP), String(H), String(E)))).trim().split(' ').map(Number);
    expect(statuses.filter((s) => s === 500)).toHaveLength(E);

    const want = (rs: FlowRecord[]) =>
      rs.filter((r) => r.type === 'l7' && r.l7?.type === 'http' && r.l7.kind === 'response').length >= H &&
      rs.filter((r) => r.type === 'l7' && r.l7?.type === 'dns' && r.l7.kind === 'response').length >= M;
    const { records } = await eventually(() => observe('--namespace', 'fl'), ({ records: rs }) => want(rs));

    // Connections: one verdict record per new flow, each allowed by the policy's second rule.
    const tcp = records.filter((r) => r.type === 'flow' && r.protocol === 'TCP' && toServer(r, PORT_TCP));
    expect(tcp).toHaveLength(N);
    for (const r of tcp) {
      expect(r.verdict).toBe('ALLOWED');
      expect(r.direction).toBe('ingress');
      expect(r.tcpFlags).toEqual(['SYN']);
      expect(r.isReply).toBe(false);
      expect(r.source.labels).toEqual({ app: 'a', tier: 'client' });
      expect(r.policies).toEqual([{ namespace: 'fl', name: 'server-in', direction: 'ingress', rule: 1 }]);
      expect(r.interface.name).toMatch(/\S/);
    }

    // DNS: M queries and M responses, K of them NXDOMAIN, every response paired (latency) and named.
    const dns = records.filter((r) => r.type === 'l7' && r.l7?.type === 'dns');
    const queries = dns.filter((r) => r.l7!.kind === 'request');
    const answers = dns.filter((r) => r.l7!.kind === 'response');
    expect(queries).toHaveLength(M);
    expect(answers).toHaveLength(M);
    expect(answers.filter((r) => r.l7!.dns!.rcode === 'NXDOMAIN')).toHaveLength(K);
    expect(answers.filter((r) => r.l7!.dns!.rcode === 'NOERROR')).toHaveLength(M - K);
    for (const r of answers) {
      expect(r.l7!.latencyMs).toBeGreaterThanOrEqual(0);
      expect(r.l7!.latencyMs).toBeLessThan(2000);
      expect(r.source.pod).toBe('s');
      expect(r.isReply).toBe(true);
    }
    expect(answers.find((r) => r.l7!.dns!.rcode === 'NOERROR')!.l7!.dns!.answers).toEqual(['10.0.0.1']);
    expect(queries[0]!.l7!.dns!.query).toMatch(/^q\d+\.(missing|ok)$/);

    // HTTP: H requests and H responses, E of them 500, paired with method and path.
    const http = records.filter((r) => r.type === 'l7' && r.l7?.type === 'http');
    const responses = http.filter((r) => r.l7!.kind === 'response');
    expect(http.filter((r) => r.l7!.kind === 'request')).toHaveLength(H);
    expect(responses).toHaveLength(H);
    expect(responses.filter((r) => r.l7!.http!.status === 500)).toHaveLength(E);
    for (const r of responses) {
      expect(r.l7!.http!.method).toBe('GET');
      expect(r.l7!.http!.path).toMatch(r.l7!.http!.status === 500 ? /^\/fail\// : /^\/ok\//);
      expect(r.l7!.latencyMs).toBeGreaterThanOrEqual(0);
    }
    // Each HTTP request came on a connection of its own: H more TCP verdicts, to the HTTP port.
    expect(records.filter((r) => r.type === 'flow' && toServer(r, PORT_HTTP))).toHaveLength(H);

    // /metrics counts the same (one series per namespace pair by default).
    const m = await metrics();
    expect(sum(m, 'sluice_dns_queries_total', { rcode: 'NXDOMAIN', source_namespace: 'fl' })).toBe(K);
    expect(sum(m, 'sluice_dns_queries_total', { rcode: 'NOERROR', source_namespace: 'fl' })).toBe(M - K);
    expect(sum(m, 'sluice_http_requests_total', { status_class: '5xx', source_namespace: 'fl' })).toBe(E);
    expect(sum(m, 'sluice_http_requests_total', { status_class: '2xx', source_namespace: 'fl' })).toBe(H - E);
    expect(sum(m, 'sluice_http_request_duration_seconds_count', { source_namespace: 'fl' })).toBe(H);
    expect(sum(m, 'sluice_flows_total', { protocol: 'TCP', verdict: 'allowed', destination_namespace: 'fl' })).toBe(N + H);

    // Nothing was lost on the way.
    const res = await flows('last=0');
    expect(res.lost).toEqual({ datapath: 0, followers: 0 });
  });

  it('names the isolating policy of a denial, and filters by verdict, label selector, port and L7 kind', async () => {
    const denied = await sh('ip', inPod('d', 'tcp-connect', ip['fl/s']!, String(PORT_TCP), '1'));
    expect(denied.code).not.toBe(0);
    const { records } = await eventually(() => observe('--verdict', 'denied'), ({ records: rs }) => rs.some((r) => r.source.pod === 'd'));
    const r = records.find((x) => x.source.pod === 'd')!;
    expect(r.dropReason).toBe('DROP_POLICY_INGRESS');
    expect(r.policies).toEqual([{ namespace: 'fl', name: 'server-in', direction: 'ingress' }]);
    expect(records.every((x) => x.verdict === 'DENIED')).toBe(true);

    const bySelector = (await observe('--selector', 'app=d')).records;
    expect(bySelector.length).toBeGreaterThan(0);
    expect(bySelector.every((x) => x.source.pod === 'd' || x.destination.pod === 'd')).toBe(true);
    const byPort = (await observe('--port', String(PORT_HTTP), '--type', 'flow')).records;
    expect(byPort).toHaveLength(H);
    const dnsOnly = (await observe('--l7', 'dns')).records;
    expect(dnsOnly).toHaveLength(2 * M);
    expect((await observe('--since', '1h', '--protocol', 'udp', '--type', 'flow')).records.length).toBe(M);
    expect((await observe('--since', new Date(Date.now() + 60_000).toISOString())).records).toHaveLength(0);

    const bad = await sh(SLUICE, ['observe', '--socket', cluster.socket, '--verdict', 'maybe']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/verdict "MAYBE" is not one of ALLOWED, DENIED, DROPPED/);
  });

  it('follows new records live (--follow), after the last N', async () => {
    const child = cluster.spawn(SLUICE, ['observe', '--socket', cluster.socket, '--follow', '--last', '1', '--l7', 'http', '-o', 'json']);
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => (out += chunk));
    const lines = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as FlowRecord);
    await eventually(async () => lines(), (ls) => ls.length >= 1);
    expect(lines()).toHaveLength(1); // the last one held
    await must('ip', inPod('a', 'http-get', ip['fl/s']!, String(PORT_HTTP), '1', '1'));
    const got = await eventually(async () => lines(), (ls) => ls.length >= 3);
    expect(got.slice(1).map((r) => r.l7!.kind)).toEqual(['request', 'response']);
    expect(got[2]!.l7!.http!.status).toBe(500);
    child.kill('SIGINT');
  });
});
