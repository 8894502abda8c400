/**
 * The agent's Prometheus metrics (prom-client). Datapath numbers (counters,
 * per-endpoint counters, map fill) are read when scraped, in collect()
 * callbacks, once per scrape; latencies are histograms the API server and
 * the policy sync feed as they happen.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { COUNTER_NAMES, decodeCounterValue, decodeEpCounterKey, type CounterName, type CounterTotal } from '../../datapath/abi.ts';
import type { BpfMap } from '../../datapath/bpf-map.ts';
import type { Ipam } from '../../ipam/allocator.ts';
import type { Endpoint } from '../../contract/api-types.ts';
import type { SyncStats } from '../policy-sync/maps.ts';
import { COUNTER_MEANINGS, type CounterFamily } from './counters.ts';
import { MAP_COUNT_LIMIT, type MapFill } from './map-fill.ts';

/** Every metric name starts with this. */
export const METRIC_PREFIX = 'sluice_';

/** API routes the CNI plugin calls (ADD, DEL, CHECK, GC): their handling time is sluice_cni_request_duration_seconds. */
export const CNI_ROUTES: ReadonlySet<string> = new Set([
  'POST /v1/ipam/allocate',
  'POST /v1/ipam/release',
  'PUT /v1/endpoints',
  'GET /v1/endpoints/:containerID/:ifname',
  'DELETE /v1/endpoints/:containerID/:ifname',
  'POST /v1/ipam/reconcile',
]);

/** CNI requests take a few ms (allocate: one SQLite transaction; PUT: a map sync). */
const CNI_LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Policy propagation: datastore change noticed → maps written. */
const PROPAGATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the metrics read; the agent's components fit these shapes. */
export interface MetricsSources {
  node: string;
  version: string;
  /** Wall-clock ms when the agent started. */
  startedAtMs: number;
  readCounters(): Record<CounterName, CounterTotal>;
  epCounters: BpfMap;
  mapFill(): Promise<MapFill[]>;
  endpoints(): Endpoint[];
  identities(): number;
  policies(): number;
  policyRevision(): number;
  /** The NetworkPolicies that cannot be compiled as written; absent: none are reported. */
  policyErrors?(): { namespace: string; name: string }[];
  /** Local endpoints isolated until their labels are known; absent: none are reported. */
  endpointsAwaitingLabels?(): number;
  /** Subscribes to policy syncs (PolicyState.onSync): the metrics observe each one. */
  onPolicySync(listener: (stats: SyncStats, propagationMs: number | null) => void): void;
  ipam: Pick<Ipam, 'usage'>;
  monitorReceived(): number;
}

type Labels = Partial<Record<string, string | number>>;
type Emit = (labels: Labels, value: number) => void;

/** The agent's metric registry and the hooks that feed its histograms. */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly sources: MetricsSources;
  private readonly scrapeMemo = new Map<string, unknown>();
  private readonly cniLatency: Histogram<'route' | 'code'>;
  private readonly propagation: Histogram;
  private readonly syncWrites: Counter<'op'>;

  /** processMetrics: also export Node's process metrics (CPU, memory, event loop lag) as sluice_agent_*; they cost a timer. */
  constructor(sources: MetricsSources, processMetrics = true) {
    this.sources = sources;
    const r = this.registry;
    if (processMetrics) collectDefaultMetrics({ register: r, prefix: `${METRIC_PREFIX}agent_` });

    this.gauge('agent_info', 'The agent: 1, with its node and version.', ['node', 'version'], (emit) => emit({ node: sources.node, version: sources.version }, 1));
    this.gauge('agent_start_time_seconds', 'When the agent started (Unix time).', [], (emit) => emit({}, sources.startedAtMs / 1000));

    // Datapath counters (bpf counters map, summed over CPUs).
    const global = (family: CounterFamily, field: 'packets' | 'bytes', labelNames: string[]) => (emit: Emit) => {
      const counters = this.scraped('counters', () => sources.readCounters());
      for (const name of COUNTER_NAMES) {
        const meaning = COUNTER_MEANINGS[name];
        if (meaning.family === family) emit(pick(meaning.labels, labelNames), counters[name][field]);
      }
    };
    this.counter('datapath_packets_total', 'Packets the eBPF programs saw: from-pod (egress, leaving pods), to-pod (ingress, from the stack).', ['program', 'direction'], global('seen', 'packets', ['program', 'direction']));
    this.counter('datapath_bytes_total', 'Bytes the eBPF programs saw (see sluice_datapath_packets_total).', ['program', 'direction'], global('seen', 'bytes', ['program', 'direction']));
    this.counter('forward_packets_total', 'Packets from-pod forwarded: to a local pod (redirect) or to the host stack.', ['direction', 'path'], global('forward', 'packets', ['direction', 'path']));
    this.counter('forward_bytes_total', 'Bytes from-pod forwarded (see sluice_forward_packets_total).', ['direction', 'path'], global('forward', 'bytes', ['direction', 'path']));
    this.counter('drop_packets_total', 'Packets dropped, by reason and (when the counter tells) direction.', ['reason', 'direction'], global('drop', 'packets', ['reason', 'direction']));
    this.counter('drop_bytes_total', 'Bytes dropped, by reason and (when the counter tells) direction.', ['reason', 'direction'], global('drop', 'bytes', ['reason', 'direction']));
    this.counter('conntrack_established_packets_total', 'Packets of known flows (conntrack hits, either direction).', [], global('established', 'packets', []));
    this.counter('conntrack_related_packets_total', 'ICMP errors about known flows (e.g. fragmentation needed), passed without a policy check.', [], global('related', 'packets', []));
    this.counter('arp_replies_total', 'ARP requests for the gateway answered by from-pod.', [], global('arp', 'packets', []));
    this.counter('monitor_events_lost_total', 'Monitor events the datapath did not emit: rate limit or full ring buffer.', [], global('events-lost', 'packets', []));
    this.counter('service_nat_packets_total', 'Packets from-pod translated to a Service backend (path=backend), given back their frontend (path=frontend), or refused for want of backends (path=refused).', ['path'], global('service-nat', 'packets', ['path']));
    this.counter('monitor_events_received_total', 'Monitor events the agent read from the ring buffer.', [], (emit) => emit({}, sources.monitorReceived()));
    this.counter(
      'policy_verdicts_total',
      'Policy decisions: allowed counts new flows (their later packets are conntrack hits); denied counts packets (a denied flow never becomes established).',
      ['verdict', 'direction'],
      (emit) => {
        const counters = this.scraped('counters', () => sources.readCounters());
        emit({ verdict: 'allowed' }, counters.POLICY_ALLOWED.packets);
        emit({ verdict: 'denied', direction: 'ingress' }, counters.DROP_POLICY_INGRESS.packets);
        emit({ verdict: 'denied', direction: 'egress' }, counters.DROP_POLICY_EGRESS.packets);
      },
    );

    // Per-endpoint counters (bpf ep_counters): an endpoint's count includes flows it is either end of.
    const perEndpoint = (family: CounterFamily, field: 'packets' | 'bytes', labelNames: string[]) => (emit: Emit) => {
      for (const c of this.scraped('epCounters', () => this.readEndpointCounters())) {
        const meaning = COUNTER_MEANINGS[c.counter];
        if (meaning.family === family) emit({ namespace: c.namespace, pod: c.pod, ...pick(meaning.labels, labelNames) }, c[field]);
      }
    };
    this.counter('endpoint_drop_packets_total', "Packets dropped at a local endpoint's veth or on its account, by reason and direction.", ['namespace', 'pod', 'reason', 'direction'], perEndpoint('drop', 'packets', ['reason', 'direction']));
    this.counter('endpoint_drop_bytes_total', 'Bytes dropped per local endpoint (see sluice_endpoint_drop_packets_total).', ['namespace', 'pod', 'reason', 'direction'], perEndpoint('drop', 'bytes', ['reason', 'direction']));
    this.counter('endpoint_allowed_flows_total', 'New flows a policy check allowed, per local endpoint (as source or destination).', ['namespace', 'pod'], perEndpoint('allowed', 'packets', []));

    // State.
    this.gauge('endpoints', 'Local endpoints (pod interfaces) in the maps.', [], (emit) => emit({}, sources.endpoints().length));
    this.gauge('endpoints_awaiting_labels', "Local endpoints isolated both ways because the datastore has not delivered their pod or namespace yet (a pod the API server is slow to deliver, a watch behind); sluice status names them.", [], (emit) =>
      emit({}, sources.endpointsAwaitingLabels?.() ?? 0),
    );
    this.gauge('identities', 'Security identities of pods (reserved ones not counted).', [], (emit) => emit({}, sources.identities()));
    this.gauge('policies', 'NetworkPolicies in the datastore.', [], (emit) => emit({}, sources.policies()));
    this.gauge('policy_revision', 'Policy syncs since the agent started.', [], (emit) => emit({}, sources.policyRevision()));
    this.gauge('policy_errors', 'A NetworkPolicy Sluice cannot compile as written: 1 while it fails (its pods fail closed, sluice status says why), gone once fixed or deleted.', ['namespace', 'name'], (emit) => {
      for (const e of sources.policyErrors?.() ?? []) emit({ namespace: e.namespace, name: e.name }, 1);
    });
    const fill = async (emit: (m: MapFill) => void) => {
      for (const m of await this.scraped('mapFill', () => sources.mapFill())) emit(m);
    };
    this.gauge('bpf_map_entries', `Entries in a datapath map, counted on scrape; at most ${MAP_COUNT_LIMIT} are counted (see sluice_bpf_map_count_truncated).`, ['map'], (emit) => fill((m) => emit({ map: m.name }, m.entries)));
    this.gauge('bpf_map_max_entries', 'Capacity (max_entries) of a datapath map.', ['map'], (emit) => fill((m) => emit({ map: m.name }, m.maxEntries)));
    this.gauge('bpf_map_fill_ratio', 'Entries / max_entries of a datapath map (a lower bound when the count was truncated).', ['map'], (emit) => fill((m) => emit({ map: m.name }, m.entries / m.maxEntries)));
    this.gauge('bpf_map_count_truncated', `1 when counting a map's entries stopped at ${MAP_COUNT_LIMIT} (conntrack can hold more).`, ['map'], (emit) => fill((m) => emit({ map: m.name }, m.truncated ? 1 : 0)));
    this.gauge('ipam_pool_addresses', 'Addresses a pod CIDR can hand out.', ['pool'], (emit) => {
      for (const p of sources.ipam.usage()) emit({ pool: p.cidr }, p.size);
    });
    this.gauge('ipam_pool_used_addresses', 'Addresses of a pod CIDR allocated to pods.', ['pool'], (emit) => {
      for (const p of sources.ipam.usage()) emit({ pool: p.cidr }, p.used);
    });

    // Latencies, observed as they happen.
    this.cniLatency = new Histogram({
      name: `${METRIC_PREFIX}cni_request_duration_seconds`,
      help: 'Time the agent took to handle a CNI-facing API request (allocate, release, endpoint register/check/remove, reconcile).',
      labelNames: ['route', 'code'],
      buckets: CNI_LATENCY_BUCKETS_S,
      registers: [r],
    });
    this.propagation = new Histogram({
      name: `${METRIC_PREFIX}policy_propagation_seconds`,
      help: 'From a datastore change being noticed to its map writes completing.',
      buckets: PROPAGATION_BUCKETS_S,
      registers: [r],
    });
    this.syncWrites = new Counter({
      name: `${METRIC_PREFIX}policy_map_updates_total`,
      help: 'Map entries the policy sync wrote (op=write) or deleted (op=delete).',
      labelNames: ['op'],
      registers: [r],
    });
    this.syncWrites.inc({ op: 'write' }, 0);
    this.syncWrites.inc({ op: 'delete' }, 0);
    sources.onPolicySync((stats, propagationMs) => this.observePolicySync(stats, propagationMs));
  }

  /** Records one API request; only CNI-facing routes are kept. */
  observeApiRequest(method: string, pattern: string | null, status: number, durationMs: number): void {
    const route = `${method} ${pattern ?? ''}`;
    if (pattern === null || !CNI_ROUTES.has(route)) return;
    this.cniLatency.observe({ route, code: String(status) }, durationMs / 1000);
  }

  /** Records one policy sync; propagationMs is set when it carried a datastore change. */
  observePolicySync(stats: SyncStats, propagationMs: number | null): void {
    this.syncWrites.inc({ op: 'write' }, stats.written);
    this.syncWrites.inc({ op: 'delete' }, stats.deleted);
    if (propagationMs !== null) this.propagation.observe(propagationMs / 1000);
  }

  /** The Prometheus text of every metric, the datapath read once for this scrape. */
  async render(): Promise<string> {
    this.scrapeMemo.clear();
    try {
      return await this.registry.metrics();
    } finally {
      this.scrapeMemo.clear();
    }
  }

  /** The content type of render()'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  private scraped<T>(key: string, read: () => T): T {
    if (!this.scrapeMemo.has(key)) this.scrapeMemo.set(key, read());
    return this.scrapeMemo.get(key) as T;
  }

  private counter(name: string, help: string, labelNames: string[], fill: (emit: Emit) => void | Promise<void>): void {
    new Counter({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames,
      registers: [this.registry],
      async collect(this: Counter) {
        // Values are read whole, then swapped in: a concurrent scrape never sees a half-filled metric.
        const values: [Labels, number][] = [];
        await fill((labels, value) => values.push([labels, value]));
        this.reset();
        for (const [labels, value] of values) this.inc(labels as LabelValues<string>, value);
      },
    });
  }

  private gauge(name: string, help: string, labelNames: string[], fill: (emit: Emit) => void | Promise<void>): void {
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames,
      registers: [this.registry],
      async collect(this: Gauge) {
        const values: [Labels, number][] = [];
        await fill((labels, value) => values.push([labels, value]));
        this.reset();
        for (const [labels, value] of values) this.set(labels as LabelValues<string>, value);
      },
    });
  }

  /** Every ep_counters entry of a current endpoint, summed over CPUs. */
  private readEndpointCounters(): { namespace: string; pod: string; counter: CounterName; packets: number; bytes: number }[] {
    const byId = new Map(this.sources.endpoints().map((e) => [e.id, e]));
    const out: { namespace: string; pod: string; counter: CounterName; packets: number; bytes: number }[] = [];
    const map = this.sources.epCounters;
    for (const key of map.keys()) {
      const { endpointId, counter } = decodeEpCounterKey(key);
      const ep = byId.get(endpointId);
      const name = COUNTER_NAMES[counter];
      if (!ep || !name) continue;
      let packets = 0n;
      let bytes = 0n;
      for (const v of map.lookupPerCpu(key)) {
        const c = decodeCounterValue(v);
        packets += c.packets;
        bytes += c.bytes;
      }
      out.push({ namespace: ep.namespace, pod: ep.pod, counter: name, packets: Number(packets), bytes: Number(bytes) });
    }
    return out;
  }
}

function pick(labels: Record<string, string | undefined>, names: string[]): Labels {
  const out: Labels = {};
  for (const n of names) if (labels[n] !== undefined) out[n] = labels[n];
  return out;
}
