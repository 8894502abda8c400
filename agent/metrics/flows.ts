/**
 * Prometheus metrics of flow records (contract/flows.ts), counted as the
 * agent makes each record:
 *
 *   sluice_flows_total{verdict,direction,protocol,+peer}         a new flow's verdict (type flow)
 *   sluice_flow_drops_total{reason,+peer}                        drops and denied flows, reason = dropReason
 *   sluice_dns_queries_total{rcode,qtype,+peer}                  once per query: at its response, or rcode="none" when it expired unanswered
 *   sluice_dns_latency_seconds{+peer}                            histogram, query → response
 *   sluice_http_requests_total{method,status_class,+peer}        once per request: at its response, or status_class="none" at expiry
 *   sluice_http_request_duration_seconds{method,+peer}           histogram, request → response
 *   sluice_flow_metrics_peer_overflow_total                      records counted under peer labels "overflow" (see below)
 *
 * "+peer" are the labels `--metrics-labels` chooses from FLOW_METRIC_LABELS.
 * For L7 metrics the source is always the client: a response's ends are
 * swapped back. A pod end is named by its namespace, pod and workload; any
 * other end by its reserved name ("host", "world", "remote-node",
 * "service", "unmanaged") in each of those labels, or "unknown" (never an
 * address: addresses are unbounded).
 *
 * What each choice costs, in series per family (times the family's own
 * label values: a handful of verdicts and directions, of drop reasons, of
 * rcodes and qtypes, of methods and status classes):
 * - none: 1.
 * - source_namespace, destination_namespace (the default): at most
 *   (namespaces + 5)², in practice the namespace pairs that talk.
 * - source_workload, destination_workload: the workload pairs that talk;
 *   stable across rollouts (the name has no pod hash).
 * - source_pod, destination_pod: the pod pairs that talk; every rollout
 *   adds new pod names, whose series last until forgetIdle() ends them (an
 *   hour idle in the agent). Use it on small clusters or for debugging. A pod
 *   name is not unique across namespaces: choose the namespace label with it.
 * - A histogram (latency) costs 20 series per label set: mind it with pods.
 * Every label value comes from the datastore (namespaces, pods, their
 * labels), never from packets, and the family labels read from packets
 * (qtype, rcode, method) are mapped onto fixed sets, with "other" for the
 * rest: a pod cannot mint series by sending odd DNS or HTTP. On top of that
 * a FlowMetrics holds at most maxPeerLabelSets distinct peer label sets
 * (default MAX_PEER_LABEL_SETS); past it, new ones are counted with every
 * peer label "overflow", and sluice_flow_metrics_peer_overflow_total says
 * how often. forgetIdle() drops the series of peer label sets no record has
 * used for a while (deleted pods, namespaces that stopped talking) and frees
 * their places; Prometheus sees those series end, and a later one starts
 * again from 0, which rate() and increase() take as a counter reset.
 *
 * Workload: the pod's `app.kubernetes.io/name` label, else its `app` label,
 * else the pod name without the suffix its controller generated: a
 * Deployment's "-<pod-template-hash>-<5 chars>" (web-7d4b9c8f6d-x2bq9 → web),
 * or the "-<5 chars>" of a ReplicaSet, DaemonSet or Job pod
 * (node-exporter-k2v7x → node-exporter). Kubernetes draws both from an
 * alphabet without vowels (bcdfghjklmnpqrstvwxz2456789), which is what is
 * matched; a StatefulSet's ordinal (db-0) is kept.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { FlowEndpoint, FlowRecord, L7Summary } from '../../contract/flows.ts';
import { RESERVED_IDENTITIES, reservedIdentityName } from '../../lib/identity-numbers.ts';
import { METRIC_PREFIX } from './metrics.ts';

/** The labels `--metrics-labels` may choose, in the order series carry them. */
export const FLOW_METRIC_LABELS = [
  'source_namespace',
  'source_pod',
  'source_workload',
  'destination_namespace',
  'destination_pod',
  'destination_workload',
] as const;

/** One of the peer labels. */
export type FlowMetricLabel = (typeof FLOW_METRIC_LABELS)[number];

/** --metrics-labels when not given. */
export const DEFAULT_FLOW_METRIC_LABELS: readonly FlowMetricLabel[] = ['source_namespace', 'destination_namespace'];

/** Distinct peer label sets one FlowMetrics keeps apart at most; see the file comment and forgetIdle(). */
export const MAX_PEER_LABEL_SETS = 10_000;

/** forgetIdle() in the agent: series of peer label sets unused this long end (an hour: a scrape interval many times over)... */
export const PEER_LABEL_SET_IDLE_MS = 60 * 60 * 1000;
/** ...checked this often. */
export const FORGET_IDLE_INTERVAL_MS = 5 * 60 * 1000;

/** The metric names this module registers (the dashboard test checks its queries against them). */
export const FLOW_METRIC_NAMES = {
  flows: `${METRIC_PREFIX}flows_total`,
  drops: `${METRIC_PREFIX}flow_drops_total`,
  dnsQueries: `${METRIC_PREFIX}dns_queries_total`,
  dnsLatency: `${METRIC_PREFIX}dns_latency_seconds`,
  httpRequests: `${METRIC_PREFIX}http_requests_total`,
  httpDuration: `${METRIC_PREFIX}http_request_duration_seconds`,
  peerOverflow: `${METRIC_PREFIX}flow_metrics_peer_overflow_total`,
} as const;

/** Pod-to-pod request latency: 50 µs (same node) to 10 s (a timeout in all but name). */
export const FLOW_LATENCY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Label values read from packets are kept to these sets; anything else is "other". */
const DNS_RCODES = new Set(['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE', 'DSOTYPENI', 'BADVERS', 'BADCOOKIE']);
const DNS_QTYPES = new Set(['A', 'AAAA', 'CNAME', 'MX', 'NS', 'PTR', 'SOA', 'SRV', 'TXT', 'ANY', 'CAA', 'DS', 'DNSKEY', 'HTTPS', 'SVCB', 'NAPTR']);
const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
/** Protocols by name; others are their number (0..255, as the contract gives them), anything else "other". */
const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6']);
const PROTOCOL_NUMBER_RE = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
/** The datapath's counter names (DROP_POLICY_INGRESS, ...): upper case, bounded by the enum. */
const DROP_REASON_RE = /^[A-Z][A-Z0-9_]{0,63}$/;
const RESERVED_NAMES: ReadonlySet<string> = new Set(RESERVED_IDENTITIES.map((r) => r.name));

/** What a label gets when the record does not say. */
const NONE = 'none';
const OTHER = 'other';
const UNKNOWN = 'unknown';
const OVERFLOW = 'overflow';

const WORKLOAD_LABELS = ['app.kubernetes.io/name', 'app'];
/** Kubernetes' rand alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no 0, 1, 3. */
const K8S_RAND = '[bcdfghjklmnpqrstvwxz2456789]';
const DEPLOYMENT_SUFFIX_RE = new RegExp(`^(.+)-${K8S_RAND}{6,10}-${K8S_RAND}{5}$`);
const GENERATED_SUFFIX_RE = new RegExp(`^(.+)-${K8S_RAND}{5}$`);

/**
 * Reads a --metrics-labels value: a comma list of FLOW_METRIC_LABELS, or
 * "none". Returns them in FLOW_METRIC_LABELS order without repeats; throws an
 * Error naming the flag on an unknown or empty name.
 */
export function parseFlowMetricLabels(value: string): FlowMetricLabel[] {
  const names = value.split(',').map((n) => n.trim());
  const choices = `${FLOW_METRIC_LABELS.join(', ')}, or none`;
  if (names.length === 1 && names[0] === NONE) return [];
  for (const n of names) {
    if (n === NONE) throw new Error(`--metrics-labels '${value}': none cannot be combined with other labels`);
    if (!(FLOW_METRIC_LABELS as readonly string[]).includes(n)) throw new Error(`--metrics-labels '${value}': unknown label '${n}'; choose from ${choices}`);
  }
  return FLOW_METRIC_LABELS.filter((l) => names.includes(l));
}

/** The workload a pod belongs to (see the file comment for the rule). */
export function workloadOf(pod: string, labels: Record<string, string> | undefined): string {
  for (const key of WORKLOAD_LABELS) {
    const v = labels?.[key];
    if (v) return v;
  }
  return DEPLOYMENT_SUFFIX_RE.exec(pod)?.[1] ?? GENERATED_SUFFIX_RE.exec(pod)?.[1] ?? pod;
}

/** "2xx" for 200..299 and so on; "other" outside 100..599. */
export function statusClassOf(status: number | undefined): string {
  if (status === undefined) return UNKNOWN;
  return Number.isInteger(status) && status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : OTHER;
}

/** What unanswered() needs of an expired request: its ends and its L7 summary. */
export type UnansweredRequest = Pick<FlowRecord, 'source' | 'destination'> & { l7: L7Summary };

type Labels = Record<string, string>;

/** One distinct peer label set: when a record last used it, and every series it is part of (to remove them). */
interface PeerSet {
  lastUsedMs: number;
  /** Per family, its series' labels by their own (non-peer) label values. */
  series: Map<Counter | Histogram, Map<string, Labels>>;
}

/** A record's peer labels, and the set they belong to (none when there are no peer labels or they overflowed). */
interface Peer {
  labels: Labels;
  set: PeerSet | undefined;
}

/** Options of FlowMetrics; the defaults suit the agent, tests shrink them. */
export interface FlowMetricsOptions {
  /** Distinct peer label sets kept apart (default MAX_PEER_LABEL_SETS). */
  maxPeerLabelSets?: number;
  /** The clock forgetIdle() judges by, in ms (default performance.now(): monotonic, so a step of the wall clock forgets nothing early). */
  nowMs?: () => number;
}

/** Counts flow records into the metrics above, on one registry. */
export class FlowMetrics {
  /** The peer labels every family carries. */
  readonly labels: readonly FlowMetricLabel[];
  private readonly maxPeerLabelSets: number;
  private readonly nowMs: () => number;
  private readonly peerSets = new Map<string, PeerSet>();
  private readonly flows: Counter;
  private readonly drops: Counter;
  private readonly dnsQueries: Counter;
  private readonly dnsLatency: Histogram;
  private readonly httpRequests: Counter;
  private readonly httpDuration: Histogram;
  private readonly peerOverflow: Counter;

  /** Registers the families on `registry`; throws when one is already there (prom-client's error). */
  constructor(registry: Registry, labels: readonly FlowMetricLabel[], options: FlowMetricsOptions = {}) {
    this.labels = FLOW_METRIC_LABELS.filter((l) => labels.includes(l));
    this.maxPeerLabelSets = options.maxPeerLabelSets ?? MAX_PEER_LABEL_SETS;
    this.nowMs = options.nowMs ?? (() => performance.now());
    const peer = this.labels;
    const registers = [registry];
    const counter = (name: string, help: string, own: string[]) => new Counter({ name, help, labelNames: [...own, ...peer], registers });
    const histogram = (name: string, help: string, own: string[]) =>
      new Histogram({ name, help, labelNames: [...own, ...peer], buckets: FLOW_LATENCY_BUCKETS_S, registers });
    const n = FLOW_METRIC_NAMES;
    this.flows = counter(
      n.flows,
      'New flows by policy verdict (allowed, denied) and the direction that decided (ingress, egress, none: no policy applies). A denied flow never opens: each of its packets counts.',
      ['verdict', 'direction', 'protocol'],
    );
    this.drops = counter(n.drops, 'Dropped packets and denied flows by datapath reason (DROP_POLICY_INGRESS, DROP_SPOOF, ...).', ['reason']);
    this.dnsQueries = counter(n.dnsQueries, 'DNS queries, once each: at the response (its rcode) or when none came in time (rcode="none").', ['rcode', 'qtype']);
    this.dnsLatency = histogram(n.dnsLatency, 'Time from a DNS query to its response.', []);
    this.httpRequests = counter(
      n.httpRequests,
      'HTTP/1.x requests, once each: at the response (status_class 1xx..5xx) or when none came in time (status_class="none").',
      ['method', 'status_class'],
    );
    this.httpDuration = histogram(n.httpDuration, 'Time from an HTTP/1.x request to its response.', ['method']);
    this.peerOverflow = new Counter({
      name: n.peerOverflow,
      help: `Records counted with peer labels "overflow": their label set came after ${this.maxPeerLabelSets} distinct ones.`,
      registers,
    });
    this.peerOverflow.inc(0);
  }

  /** Counts one record. L7 requests are counted later: at their response, or by unanswered(). */
  observe(r: FlowRecord): void {
    switch (r.type) {
      case 'flow':
        this.count(this.flows, { verdict: r.verdict.toLowerCase(), direction: r.direction || NONE, protocol: protocolLabel(r.protocol) }, this.peer(r.source, r.destination));
        if (r.verdict !== 'ALLOWED') this.countDrop(r);
        return;
      case 'drop':
        this.countDrop(r);
        return;
      case 'l7':
        if (r.l7?.kind === 'response') this.countResponse(r.l7, r.source, r.destination);
        return;
    }
  }

  /** Counts a request that expired without a response (the L7 tracker hands these over). */
  unanswered(request: UnansweredRequest): void {
    const peer = this.peer(request.source, request.destination);
    const l7 = request.l7;
    if (l7.type === 'dns') this.count(this.dnsQueries, { rcode: NONE, qtype: bounded(l7.dns?.qtype, DNS_QTYPES) }, peer);
    else this.count(this.httpRequests, { method: bounded(l7.http?.method, HTTP_METHODS), status_class: NONE }, peer);
  }

  /**
   * Removes the series of every peer label set no record has used for more
   * than maxIdleMs, and frees their places under maxPeerLabelSets. Returns
   * how many sets it forgot. The agent calls it now and then (minutes).
   */
  forgetIdle(maxIdleMs: number): number {
    const now = this.nowMs();
    let forgotten = 0;
    for (const [key, set] of this.peerSets) {
      if (now - set.lastUsedMs <= maxIdleMs) continue;
      for (const [metric, series] of set.series) for (const labels of series.values()) metric.remove(labels);
      this.peerSets.delete(key);
      forgotten++;
    }
    return forgotten;
  }

  private countDrop(r: FlowRecord): void {
    const reason = r.dropReason && DROP_REASON_RE.test(r.dropReason) ? r.dropReason : UNKNOWN;
    this.count(this.drops, { reason }, this.peer(r.source, r.destination));
  }

  /** A response goes server → client: the client is the source of the request it answers. */
  private countResponse(l7: L7Summary, server: FlowEndpoint, client: FlowEndpoint): void {
    const peer = this.peer(client, server);
    const seconds = l7.latencyMs === undefined ? undefined : l7.latencyMs / 1000;
    if (l7.type === 'dns') {
      this.count(this.dnsQueries, { rcode: bounded(l7.dns?.rcode, DNS_RCODES), qtype: bounded(l7.dns?.qtype, DNS_QTYPES) }, peer);
      if (seconds !== undefined) this.count(this.dnsLatency, {}, peer, seconds);
    } else {
      const method = bounded(l7.http?.method, HTTP_METHODS);
      this.count(this.httpRequests, { method, status_class: statusClassOf(l7.http?.status) }, peer);
      if (seconds !== undefined) this.count(this.httpDuration, { method }, peer, seconds);
    }
  }

  /** Adds 1 to a counter, or a sample to a histogram, and remembers the series under its peer set. */
  private count(metric: Counter | Histogram, own: Labels, peer: Peer, sample?: number): void {
    const labels = { ...own, ...peer.labels };
    if (metric instanceof Histogram) metric.observe(labels, sample ?? 0);
    else metric.inc(labels);
    if (peer.set === undefined) return;
    let series = peer.set.series.get(metric);
    if (series === undefined) peer.set.series.set(metric, (series = new Map()));
    const key = Object.values(own).join('\0');
    if (!series.has(key)) series.set(key, labels);
  }

  /** The peer labels of a source and destination, "overflow" once too many distinct sets are held. */
  private peer(source: FlowEndpoint, destination: FlowEndpoint): Peer {
    const labels: Labels = {};
    for (const label of this.labels) labels[label] = endLabel(label.startsWith('source_') ? source : destination, label);
    if (this.labels.length === 0) return { labels, set: undefined };
    const key = this.labels.map((l) => labels[l]).join('\0');
    let set = this.peerSets.get(key);
    if (set === undefined && this.peerSets.size < this.maxPeerLabelSets) {
      set = { lastUsedMs: 0, series: new Map() };
      this.peerSets.set(key, set);
    }
    if (set !== undefined) {
      set.lastUsedMs = this.nowMs();
      return { labels, set };
    }
    this.peerOverflow.inc();
    for (const label of this.labels) labels[label] = OVERFLOW;
    return { labels, set: undefined };
  }
}

/** One end's value for a peer label: its namespace, pod or workload, or for a non-pod its reserved name. */
function endLabel(end: FlowEndpoint, label: FlowMetricLabel): string {
  if (end.namespace === undefined || end.pod === undefined) return RESERVED_NAMES.has(end.name) ? end.name : (reservedIdentityName(end.identity) ?? UNKNOWN);
  if (label.endsWith('_namespace')) return end.namespace;
  if (label.endsWith('_pod')) return end.pod;
  return workloadOf(end.pod, end.labels);
}

function bounded(value: string | undefined, known: ReadonlySet<string>): string {
  if (value === undefined || value === '') return UNKNOWN;
  return known.has(value) ? value : OTHER;
}

function protocolLabel(protocol: string): string {
  return PROTOCOLS.has(protocol) || PROTOCOL_NUMBER_RE.test(protocol) ? protocol : OTHER;
}
