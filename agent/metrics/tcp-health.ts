/**
 * Prometheus metrics of TCP health per pod (agent/tcp-health.ts), read from
 * the tracing maps when scraped, once per scrape:
 *
 *   sluice_pod_tcp_retransmits_total{namespace,pod}
 *   sluice_pod_tcp_connections_total{namespace,pod,event}
 *       event: opened_active, opened_passive, closed, reset, failed (bpf/trace.h)
 *   sluice_pod_tcp_rtt_seconds{namespace,pod}   histogram, le = 2^(i+1) µs
 *   sluice_tcp_health_events_lost_total{map}     events a full map could not take
 *
 * The kernel keeps the RTT histogram in log2 buckets; they are exported as
 * they are, which prom-client's Histogram cannot be told, so the RTT family
 * is a Histogram whose exposition is computed from the maps.
 */
import { Counter, Histogram, type LabelValues, type MetricObjectWithValues, type MetricType, type MetricValueWithName, type Registry } from 'prom-client';
import type { TcpConnectionCounts, TcpHealthResponse } from '../../contract/tcp-health.ts';
import { METRIC_PREFIX } from './metrics.ts';

/** Buckets exported: le = 2 µs ... 2^24 µs (16.8 s); slower samples only reach +Inf. */
const RTT_EXPORTED_BUCKETS = 24;
const US_PER_SECOND = 1e6;
/** Scrapes read every family of one exposition within this: the maps are read once for them all. */
const REPORT_REUSE_MS = 250;

const EVENTS: [keyof TcpConnectionCounts, string][] = [
  ['openedActive', 'opened_active'],
  ['openedPassive', 'opened_passive'],
  ['closed', 'closed'],
  ['reset', 'reset'],
  ['failed', 'failed'],
];

type PodLabels = 'namespace' | 'pod';

/** A histogram whose buckets, sum and count are read from elsewhere at each scrape. */
class ReadHistogram extends Histogram<PodLabels> {
  private readonly read: () => TcpHealthResponse;
  private readonly familyName: string;
  private readonly familyHelp: string;

  constructor(name: string, help: string, read: () => TcpHealthResponse) {
    super({ name, help, labelNames: ['namespace', 'pod'], buckets: [1], registers: [] });
    this.read = read;
    this.familyName = name;
    this.familyHelp = help;
  }

  /** What the registry formats (prom-client calls this rather than get() when present). */
  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<PodLabels>>> {
    const values: MetricValueWithName<PodLabels>[] = [];
    const sample = (suffix: string, labels: Record<string, string>, value: number) =>
      values.push({ metricName: `${this.familyName}${suffix}`, labels: labels as LabelValues<PodLabels>, value });
    for (const p of this.read().pods) {
      const pod = { namespace: p.namespace, pod: p.pod };
      let cumulative = 0;
      for (let i = 0; i < RTT_EXPORTED_BUCKETS; i++) {
        const upperUs = 2 ** (i + 1);
        cumulative += p.rtt.buckets.find((b) => b.toUs === upperUs)?.count ?? 0;
        sample('_bucket', { ...pod, le: String(upperUs / US_PER_SECOND) }, cumulative);
      }
      sample('_bucket', { ...pod, le: '+Inf' }, p.rtt.samples);
      sample('_sum', pod, p.rtt.sumUs / US_PER_SECOND);
      sample('_count', pod, p.rtt.samples);
    }
    // prom-client's typings declare `type` a numeric enum; the registry formats the string it really holds.
    const type = 'histogram' as unknown as MetricType;
    return { name: this.familyName, help: this.familyHelp, type, values, aggregator: 'sum', collect: () => undefined };
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<PodLabels>>> {
    return this.getForPromString();
  }
}

/** Registers the TCP health families in `registry`; `read` gives the current report (TcpHealth.report). */
export function registerTcpHealthMetrics(registry: Registry, read: () => TcpHealthResponse): void {
  let last: { atMs: number; report: TcpHealthResponse } | null = null;
  const report = (): TcpHealthResponse => {
    const now = Date.now();
    if (!last || now - last.atMs > REPORT_REUSE_MS) last = { atMs: now, report: read() };
    return last.report;
  };
  const counter = (name: string, help: string, labelNames: string[], fill: (emit: (labels: Record<string, string>, value: number) => void) => void) =>
    new Counter({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect(this: Counter) {
        const values: [Record<string, string>, number][] = [];
        fill((labels, value) => values.push([labels, value]));
        this.reset();
        for (const [labels, value] of values) this.inc(labels, value);
      },
    });
  counter('pod_tcp_retransmits_total', "Retransmissions by a local pod's TCP sockets (tracepoint tcp_retransmit_skb: one per skb sent again, usually one segment).", ['namespace', 'pod'], (emit) => {
    for (const p of report().pods) emit({ namespace: p.namespace, pod: p.pod }, p.retransmits);
  });
  counter(
    'pod_tcp_connections_total',
    "TCP connections of a local pod's sockets by event: opened_active (connect), opened_passive (accept), closed, reset (an RST received), failed (never established).",
    ['namespace', 'pod', 'event'],
    (emit) => {
      for (const p of report().pods) for (const [field, event] of EVENTS) emit({ namespace: p.namespace, pod: p.pod, event }, p.connections[field]);
    },
  );
  counter('tcp_health_events_lost_total', 'TCP events the tracing programs could not count: their map (tcp_counters or tcp_rtt) was full.', ['map'], (emit) => {
    const lost = report().lost;
    emit({ map: 'tcp_counters' }, lost.counters);
    emit({ map: 'tcp_rtt' }, lost.rtt);
  });
  registry.registerMetric(
    new ReadHistogram(`${METRIC_PREFIX}pod_tcp_rtt_seconds`, "Round-trip times a local pod's TCP connections measured, each sample (sockops RTT callback); buckets are powers of two of µs.", report),
  );
}
