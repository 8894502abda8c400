// Flow metrics without a kernel: synthetic flow records go into FlowMetrics and the exposition
// says exactly what was counted, under exactly the peer labels --metrics-labels chose; label
// values read from packets stay in fixed sets; the Grafana dashboard queries only metrics and
// labels the agent exports.
import fs from 'node:fs';
import path from 'node:path';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { FlowEndpoint, FlowRecord, L7Summary } from '../contract/flows.ts';
import type { TcpHealthResponse } from '../contract/tcp-health.ts';
import { parseAgentFlags } from '../agent/flags.ts';
import { FLOW_LATENCY_BUCKETS_S, FLOW_METRIC_LABELS, FlowMetrics, parseFlowMetricLabels, statusClassOf, workloadOf, type FlowMetricLabel } from '../agent/metrics/flows.ts';
import { AgentMetrics, type MetricsSources } from '../agent/metrics/metrics.ts';
import { registerTcpHealthMetrics } from '../agent/metrics/tcp-health.ts';
import { parseExposition, samplesOf, valueOf, type Exposition } from './support/prometheus-text.ts';

const DASHBOARD = path.join(import.meta.dirname, '../install/grafana/sluice-dashboard.json');

function pod(namespace: string, name: string, labels?: Record<string, string>): FlowEndpoint {
  return { ip: '10.244.0.9', port: 0, identity: 300, name: `${namespace}/${name}`, namespace, pod: name, ...(labels ? { labels } : {}) };
}
const WORLD: FlowEndpoint = { ip: '203.0.113.7', port: 443, identity: 2, name: 'world' };
const A = pod('shop', 'web-7d4b9c8f6d-x2bq9', { 'app.kubernetes.io/name': 'web' });
const B = pod('shop', 'db-0');
const DNS = pod('kube-system', 'coredns-5d78c9869d-zl8vq', { 'k8s-app': 'kube-dns' });

function record(r: Partial<FlowRecord> & Pick<FlowRecord, 'type' | 'source' | 'destination'>): FlowRecord {
  return {
    time: '2026-12-07T20:00:00.000Z',
    verdict: 'ALLOWED',
    reason: 'policy',
    protocol: 'TCP',
    direction: 'ingress',
    isReply: false,
    interface: { index: 7 },
    bytes: 60,
    summary: '',
    ...r,
  };
}
const flow = (source: FlowEndpoint, destination: FlowEndpoint, r: Partial<FlowRecord> = {}) => record({ type: 'flow', source, destination, ...r });
const l7 = (source: FlowEndpoint, destination: FlowEndpoint, summary: L7Summary) => record({ type: 'l7', source, destination, protocol: summary.type === 'dns' ? 'UDP' : 'TCP', isReply: summary.kind === 'response', l7: summary });
const dnsQuery = (id: number, qtype = 'A'): L7Summary => ({ type: 'dns', kind: 'request', dns: { id, query: 'db.shop.svc.cluster.local', qtype } });
const dnsAnswer = (id: number, rcode: string, latencyMs?: number, qtype = 'A'): L7Summary => ({
  type: 'dns',
  kind: 'response',
  ...(latencyMs === undefined ? {} : { latencyMs }),
  dns: { id, query: 'db.shop.svc.cluster.local', qtype, rcode },
});
const httpRequest = (method: string): L7Summary => ({ type: 'http', kind: 'request', http: { version: 'HTTP/1.1', method, path: '/' } });
const httpResponse = (method: string, status: number, latencyMs?: number): L7Summary => ({
  type: 'http',
  kind: 'response',
  ...(latencyMs === undefined ? {} : { latencyMs }),
  http: { version: 'HTTP/1.1', method, path: '/', status },
});

async function scrape(labels: readonly FlowMetricLabel[], feed: (m: FlowMetrics) => void, options: { maxPeerLabelSets?: number } = {}): Promise<Exposition> {
  const registry = new Registry();
  feed(new FlowMetrics(registry, labels, options));
  return parseExposition(await registry.metrics());
}

const SHOP_TO_SHOP = { source_namespace: 'shop', destination_namespace: 'shop' };

describe('--metrics-labels', () => {
  it('defaults to the namespaces of both ends', () => {
    expect(parseAgentFlags([])?.metricsLabels).toEqual(['source_namespace', 'destination_namespace']);
  });

  it('takes a comma list in any order, without repeats, and none for no peer labels', () => {
    expect(parseAgentFlags(['--metrics-labels', 'destination_workload, source_pod,source_pod'])?.metricsLabels).toEqual(['source_pod', 'destination_workload']);
    expect(parseAgentFlags(['--metrics-labels', 'none'])?.metricsLabels).toEqual([]);
    expect(parseFlowMetricLabels(FLOW_METRIC_LABELS.join(','))).toEqual([...FLOW_METRIC_LABELS]);
  });

  it('rejects an unknown label, an empty one and none beside others, naming the flag and the choices', () => {
    expect(() => parseAgentFlags(['--metrics-labels', 'source_namespace,source_ip'])).toThrow(/--metrics-labels 'source_namespace,source_ip': unknown label 'source_ip'; choose from source_namespace, .*, or none/);
    expect(() => parseFlowMetricLabels('source_pod,')).toThrow(/unknown label ''/);
    expect(() => parseFlowMetricLabels('none,source_pod')).toThrow(/none cannot be combined/);
  });
});

describe('flows and drops', () => {
  it('counts each flow record by verdict, deciding direction and protocol, and denied flows as drops too', async () => {
    const e = await scrape(['source_namespace', 'destination_namespace'], (m) => {
      m.observe(flow(A, B));
      m.observe(flow(A, B));
      m.observe(flow(A, WORLD, { direction: '', protocol: 'UDP' }));
      m.observe(flow(B, A, { verdict: 'DENIED', dropReason: 'DROP_POLICY_INGRESS' }));
      m.observe(record({ type: 'drop', verdict: 'DROPPED', dropReason: 'DROP_SPOOF', reason: 'spoofing', source: A, destination: WORLD }));
      m.observe(record({ type: 'drop', verdict: 'DROPPED', reason: 'odd', source: A, destination: B }));
    });
    expect(valueOf(e, 'sluice_flows_total', { verdict: 'allowed', direction: 'ingress', protocol: 'TCP', ...SHOP_TO_SHOP })).toBe(2);
    expect(valueOf(e, 'sluice_flows_total', { verdict: 'allowed', direction: 'none', protocol: 'UDP', source_namespace: 'shop', destination_namespace: 'world' })).toBe(1);
    expect(valueOf(e, 'sluice_flows_total', { verdict: 'denied', direction: 'ingress', protocol: 'TCP', ...SHOP_TO_SHOP })).toBe(1);
    expect(samplesOf(e, 'sluice_flows_total')).toHaveLength(3);
    expect(valueOf(e, 'sluice_flow_drops_total', { reason: 'DROP_POLICY_INGRESS', ...SHOP_TO_SHOP })).toBe(1);
    expect(valueOf(e, 'sluice_flow_drops_total', { reason: 'DROP_SPOOF', source_namespace: 'shop', destination_namespace: 'world' })).toBe(1);
    expect(valueOf(e, 'sluice_flow_drops_total', { reason: 'unknown', ...SHOP_TO_SHOP })).toBe(1);
    expect(samplesOf(e, 'sluice_flow_drops_total')).toHaveLength(3);
  });

  it('carries exactly the peer labels chosen', async () => {
    const feed = (m: FlowMetrics) => m.observe(flow(A, B));
    const own = ['verdict', 'direction', 'protocol'];
    const labelsOf = (e: Exposition) => Object.keys(samplesOf(e, 'sluice_flows_total')[0]!.labels).sort();
    expect(labelsOf(await scrape([], feed))).toEqual(own.sort());
    expect(labelsOf(await scrape(['destination_pod', 'source_workload'], feed))).toEqual([...own, 'destination_pod', 'source_workload'].sort());
    const all = await scrape(FLOW_METRIC_LABELS, feed);
    expect(samplesOf(all, 'sluice_flows_total')[0]!.labels).toEqual({
      verdict: 'allowed',
      direction: 'ingress',
      protocol: 'TCP',
      source_namespace: 'shop',
      source_pod: 'web-7d4b9c8f6d-x2bq9',
      source_workload: 'web',
      destination_namespace: 'shop',
      destination_pod: 'db-0',
      destination_workload: 'db-0',
    });
  });

  it('names a non-pod end by its reserved name in every peer label, and never by its address', async () => {
    const unknownAddress: FlowEndpoint = { ip: '10.9.9.9', port: 80, identity: 4242, name: '10.9.9.9' };
    const host: FlowEndpoint = { ip: '192.168.1.2', port: 0, identity: 1, name: 'host' };
    const e = await scrape(['source_pod', 'destination_workload'], (m) => {
      m.observe(flow(host, unknownAddress));
      m.observe(flow(WORLD, A, { protocol: '47' }));
      m.observe(flow(WORLD, A, { protocol: 'bogus' }));
    });
    expect(valueOf(e, 'sluice_flows_total', { verdict: 'allowed', direction: 'ingress', protocol: 'TCP', source_pod: 'host', destination_workload: 'unknown' })).toBe(1);
    expect(valueOf(e, 'sluice_flows_total', { verdict: 'allowed', direction: 'ingress', protocol: '47', source_pod: 'world', destination_workload: 'web' })).toBe(1);
    expect(valueOf(e, 'sluice_flows_total', { verdict: 'allowed', direction: 'ingress', protocol: 'other', source_pod: 'world', destination_workload: 'web' })).toBe(1);
  });

  it('keeps at most maxPeerLabelSets peer label sets apart and counts the rest as overflow', async () => {
    const e = await scrape(
      ['source_pod'],
      (m) => {
        for (const name of ['a', 'b', 'c', 'd', 'a']) m.observe(flow(pod('x', name), B));
      },
      { maxPeerLabelSets: 2 },
    );
    const allowed = { verdict: 'allowed', direction: 'ingress', protocol: 'TCP' };
    expect(valueOf(e, 'sluice_flows_total', { ...allowed, source_pod: 'a' })).toBe(2);
    expect(valueOf(e, 'sluice_flows_total', { ...allowed, source_pod: 'b' })).toBe(1);
    expect(valueOf(e, 'sluice_flows_total', { ...allowed, source_pod: 'overflow' })).toBe(2);
    expect(valueOf(e, 'sluice_flow_metrics_peer_overflow_total')).toBe(2);
  });
  it('forgets the series of peer label sets idle for longer than asked, and frees their places', async () => {
    let now = 10;
    const registry = new Registry();
    const m = new FlowMetrics(registry, ['source_pod'], { maxPeerLabelSets: 2, nowMs: () => now });
    const gone = pod('x', 'gone');
    m.observe(flow(gone, B));
    m.observe(l7(B, gone, dnsAnswer(1, 'NOERROR', 1)));
    m.observe(flow(A, B));
    now = 50;
    m.observe(flow(A, B));
    now = 60;
    expect(m.forgetIdle(30)).toBe(1);
    expect(m.forgetIdle(30)).toBe(0);
    m.observe(flow(pod('x', 'new'), B));
    const e = parseExposition(await registry.metrics());
    expect(e.samples.filter((s) => s.labels.source_pod === 'gone')).toEqual([]);
    expect(samplesOf(e, 'sluice_dns_latency_seconds_count')).toHaveLength(0);
    const allowed = { verdict: 'allowed', direction: 'ingress', protocol: 'TCP' };
    expect(valueOf(e, 'sluice_flows_total', { ...allowed, source_pod: 'web-7d4b9c8f6d-x2bq9' })).toBe(2);
    expect(valueOf(e, 'sluice_flows_total', { ...allowed, source_pod: 'new' })).toBe(1);
    expect(valueOf(e, 'sluice_flow_metrics_peer_overflow_total')).toBe(0);
  });
});

describe('workloads', () => {
  it.each([
    ['web-7d4b9c8f6d-x2bq9', undefined, 'web'],
    ['my-api-server-6c9f5b7d4-q8wzk', undefined, 'my-api-server'],
    ['node-exporter-k2v7x', undefined, 'node-exporter'],
    ['db-0', undefined, 'db-0'],
    ['frontend', undefined, 'frontend'],
    ['frontend-abcde', undefined, 'frontend-abcde'], // vowels: not a generated suffix
    ['web-7d4b9c8f6d-x2bq9', { app: 'shop-web' }, 'shop-web'],
    ['web-7d4b9c8f6d-x2bq9', { app: 'shop-web', 'app.kubernetes.io/name': 'web-ui' }, 'web-ui'],
  ])('%s with labels %o is workload %s', (name, labels, workload) => {
    expect(workloadOf(name, labels)).toBe(workload);
  });

  it('classes HTTP statuses, and says other for what is no status', () => {
    expect([100, 204, 302, 404, 503, 599, 600, 42].map(statusClassOf)).toEqual(['1xx', '2xx', '3xx', '4xx', '5xx', '5xx', 'other', 'other']);
  });
});

describe('DNS and HTTP', () => {
  it('counts each DNS query once, at its response or when it expires, with the client as source', async () => {
    const client = A;
    const e = await scrape(['source_namespace', 'destination_namespace'], (m) => {
      m.observe(l7(client, DNS, dnsQuery(1)));
      m.observe(l7(DNS, client, dnsAnswer(1, 'NOERROR', 0.4)));
      m.observe(l7(client, DNS, dnsQuery(2, 'AAAA')));
      m.observe(l7(DNS, client, dnsAnswer(2, 'NXDOMAIN', 2, 'AAAA')));
      m.observe(l7(DNS, client, dnsAnswer(3, 'NOERROR'))); // its query came before the agent: counted, no latency
      m.observe(l7(client, DNS, dnsQuery(4, 'TYPE65534')));
      m.unanswered({ source: client, destination: DNS, l7: dnsQuery(4, 'TYPE65534') });
      m.observe(l7(DNS, client, dnsAnswer(5, 'BOGUS', 1)));
    });
    const ends = { source_namespace: 'shop', destination_namespace: 'kube-system' };
    expect(valueOf(e, 'sluice_dns_queries_total', { rcode: 'NOERROR', qtype: 'A', ...ends })).toBe(2);
    expect(valueOf(e, 'sluice_dns_queries_total', { rcode: 'NXDOMAIN', qtype: 'AAAA', ...ends })).toBe(1);
    expect(valueOf(e, 'sluice_dns_queries_total', { rcode: 'none', qtype: 'other', ...ends })).toBe(1);
    expect(valueOf(e, 'sluice_dns_queries_total', { rcode: 'other', qtype: 'A', ...ends })).toBe(1);
    expect(samplesOf(e, 'sluice_dns_queries_total')).toHaveLength(4);
    expect(valueOf(e, 'sluice_dns_latency_seconds_count', ends)).toBe(3);
    expect(valueOf(e, 'sluice_dns_latency_seconds_sum', ends)).toBeCloseTo(0.0034, 9);
    expect(valueOf(e, 'sluice_dns_latency_seconds_bucket', { le: '0.0005', ...ends })).toBe(1);
    expect(valueOf(e, 'sluice_dns_latency_seconds_bucket', { le: '0.001', ...ends })).toBe(2);
    expect(valueOf(e, 'sluice_dns_latency_seconds_bucket', { le: '0.0025', ...ends })).toBe(3);
    expect(samplesOf(e, 'sluice_dns_latency_seconds_bucket')).toHaveLength(FLOW_LATENCY_BUCKETS_S.length + 1);
  });

  it('counts each HTTP request once by method and status class, and times it by method', async () => {
    const e = await scrape([], (m) => {
      m.observe(l7(A, B, httpRequest('GET')));
      m.observe(l7(B, A, httpResponse('GET', 200, 3)));
      m.observe(l7(B, A, httpResponse('GET', 503, 7)));
      m.observe(l7(A, B, httpRequest('POST')));
      m.unanswered({ source: A, destination: B, l7: httpRequest('POST') });
      m.observe(l7(B, A, httpResponse('BREW', 418, 1)));
    });
    expect(valueOf(e, 'sluice_http_requests_total', { method: 'GET', status_class: '2xx' })).toBe(1);
    expect(valueOf(e, 'sluice_http_requests_total', { method: 'GET', status_class: '5xx' })).toBe(1);
    expect(valueOf(e, 'sluice_http_requests_total', { method: 'POST', status_class: 'none' })).toBe(1);
    expect(valueOf(e, 'sluice_http_requests_total', { method: 'other', status_class: '4xx' })).toBe(1);
    expect(samplesOf(e, 'sluice_http_requests_total')).toHaveLength(4);
    expect(valueOf(e, 'sluice_http_request_duration_seconds_count', { method: 'GET' })).toBe(2);
    expect(valueOf(e, 'sluice_http_request_duration_seconds_sum', { method: 'GET' })).toBeCloseTo(0.01, 9);
    expect(valueOf(e, 'sluice_http_request_duration_seconds_count', { method: 'other' })).toBe(1);
    expect(samplesOf(e, 'sluice_http_request_duration_seconds_count', { method: 'POST' })).toHaveLength(0);
  });
});

/** Every family the agent exports, with its label names: the flow metrics, TCP health and AgentMetrics (map fill). */
function exportedFamilies(): Map<string, { labels: Set<string>; histogram: boolean }> {
  const registry = new Registry();
  new FlowMetrics(registry, FLOW_METRIC_LABELS);
  const report: TcpHealthResponse = {
    enabled: true,
    links: [],
    pods: [],
    unattributed: { netns: 0, retransmits: 0, connections: { openedActive: 0, openedPassive: 0, closed: 0, reset: 0, failed: 0 }, rttSamples: 0 },
    lost: { counters: 0, rtt: 0 },
  };
  registerTcpHealthMetrics(registry, () => report);
  // Registering reads nothing: AgentMetrics only subscribes to policy syncs until scraped.
  const agent = new AgentMetrics({ onPolicySync: () => undefined } as unknown as MetricsSources, false);
  const out = new Map<string, { labels: Set<string>; histogram: boolean }>();
  for (const m of [...registry.getMetricsAsArray(), ...agent.registry.getMetricsAsArray()]) {
    // prom-client keeps labelNames on every metric; its typings do not show it.
    const { name, labelNames } = m as unknown as { name: string; labelNames?: string[] };
    out.set(name, { labels: new Set(labelNames ?? []), histogram: m instanceof Histogram });
  }
  return out;
}

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

describe('the Grafana dashboard', () => {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as {
    schemaVersion: number;
    templating: { list: { name: string; type: string; query: unknown }[] };
    panels: Panel[];
  };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

  it('has a Prometheus data source variable, a namespace variable and the panels asked for', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(vars.get('namespace')?.type).toBe('query');
    const titles = dashboard.panels.map((p) => p.title);
    for (const t of [
      'Flows/s by verdict',
      'Drops/s by reason',
      'DNS queries/s by rcode',
      'DNS latency p50 / p99',
      'HTTP requests/s by status class',
      'HTTP error rate',
      'HTTP latency p50 / p99',
      'TCP retransmits/s per pod',
      'TCP RTT p50 / p99 per pod',
      'Map fill per node',
    ]) {
      expect(titles).toContain(t);
    }
    expect(exprs.length).toBeGreaterThan(10);
  });

  it('queries only metrics the agent exports, by labels they have', () => {
    const families = exportedFamilies();
    const problems: string[] = [];
    for (const { panel, expr } of exprs) {
      // Both ends the namespace filter can pick.
      for (const end of ['source', 'destination']) {
        const text = expr.replaceAll('${end}', end);
        const used = [...text.matchAll(/\b(sluice_[a-z0-9_]+)(?:\{([^}]*)\})?/g)];
        if (used.length === 0) problems.push(`${panel}: no sluice metric in '${expr}'`);
        const labelsOfExpr = new Set<string>();
        for (const [, sample, selector] of used) {
          const base = sample!.replace(/_(bucket|sum|count)$/, '');
          const family = families.get(sample!) ?? (families.get(base)?.histogram ? families.get(base) : undefined);
          if (!family) {
            problems.push(`${panel}: ${sample} is not exported`);
            continue;
          }
          for (const l of family.labels) labelsOfExpr.add(l);
          if (sample!.endsWith('_bucket')) labelsOfExpr.add('le');
          for (const [, label] of (selector ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
            if (!family.labels.has(label!)) problems.push(`${panel}: ${sample} has no label ${label}`);
          }
        }
        for (const [, list] of text.matchAll(/\b(?:by|on|without|ignoring)\s*\(([^)]*)\)/g)) {
          for (const label of list!.split(',').map((l) => l.trim()).filter((l) => l && l !== 'instance' && l !== 'job')) {
            if (!labelsOfExpr.has(label)) problems.push(`${panel}: no metric of '${expr}' has label ${label}`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("lists namespaces from a flow metric's namespace label", () => {
    const query = JSON.stringify(dashboard.templating.list.find((v) => v.name === 'namespace')?.query);
    const families = exportedFamilies();
    for (const end of ['source', 'destination']) {
      const m = /label_values\((sluice_[a-z_]+), ([a-z_]+)\)/.exec(query.replaceAll('${end}', end));
      expect(m && families.get(m[1]!)?.labels.has(m[2]!)).toBe(true);
    }
  });
});
