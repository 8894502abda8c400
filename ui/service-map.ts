/**
 * The service map: flow records (contract/flows.ts) folded into a graph for
 * `sluice ui`. Nodes are pods (grouped by namespace) and the non-pod ends
 * (host, world, remote-node, ...); an edge joins a flow's opener to its
 * responder, so a reply or an HTTP response counts on its request's edge.
 * Each edge keeps its counts per verdict since the map began, and over a
 * sliding window: new flows per second, L7 requests per second, the share of
 * outcomes that were errors, and the median L7 latency. Pure: no I/O, time is
 * given by the caller. Memory is bounded: at most MAX_EDGES edges (the least
 * recently seen go first), a fixed ring of buckets and latency samples each.
 */
import type { FlowEndpoint, FlowRecord } from '../contract/flows.ts';

const DEFAULT_WINDOW_MS = 10_000;
const BUCKET_MS = 1_000;
const DEFAULT_MAX_EDGES = 2_000;
/** Latency samples an edge keeps (the newest); its median is taken over those inside the window. */
const LATENCY_SAMPLES = 128;
/** Service ports an edge lists (the first seen). */
const MAX_PORTS_PER_EDGE = 8;
/** The pseudo-namespace that holds every end that is not a pod. */
export const OUTSIDE = '';

/** A node of the map: a pod, or a named non-pod end ("host", "world", ...). */
export interface MapNode {
  /** "namespace/pod" for a pod; the end's name otherwise. */
  id: string;
  /** The pod's name, or the end's. */
  label: string;
  /** The pod's namespace; OUTSIDE ('') for a non-pod end. */
  namespace: string;
  kind: 'pod' | 'external';
  /** The pod's labels, as the newest record gave them. */
  labels?: Record<string, string>;
}

/** How an edge's recent traffic was judged: all allowed, all denied or dropped, or both. */
export type EdgeVerdict = 'allowed' | 'denied' | 'mixed';

/** An edge as the page draws it. */
export interface MapEdge {
  id: string;
  /** The flow's opener. */
  source: string;
  /** The flow's responder. */
  destination: string;
  /** Over the window; when it saw nothing, the verdict class of the last record. */
  verdict: EdgeVerdict;
  /** The edge saw a record inside the window. */
  active: boolean;
  /** Records per verdict since the map began. */
  counts: { allowed: number; denied: number; dropped: number };
  /** New flows per second over the window (allowed or not). */
  flowsPerSec: number;
  /** L7 requests (DNS queries, HTTP requests) per second over the window. */
  requestsPerSec: number;
  /** Errors per second: DNS rcodes other than NOERROR, HTTP statuses >= 500, denied flows and drops. */
  errorsPerSec: number;
  /** Errors over outcomes (L7 responses, new flows, drops) in the window; null without outcomes. */
  errorRatio: number | null;
  /** Median of the window's L7 response latencies in ms; null without any. */
  latencyP50Ms: number | null;
  /** "TCP/80", "UDP/53", ...: the responder's ports seen, at most MAX_PORTS_PER_EDGE. */
  ports: string[];
  /** ISO time of the newest record. */
  lastSeen: string;
}

/** The map at one moment. */
export interface ServiceMapSnapshot {
  nodes: MapNode[];
  edges: MapEdge[];
  windowSec: number;
  /** Records folded in since the map began. */
  records: number;
  /** Edges dropped to stay within the bound. */
  evictedEdges: number;
}

/** Options of a ServiceMap. */
export interface ServiceMapOptions {
  windowMs?: number;
  maxEdges?: number;
}

interface Bucket {
  /** Start of the bucket's interval (ms since the epoch); -1 when unused. */
  start: number;
  flows: number;
  requests: number;
  outcomes: number;
  errors: number;
  allowed: number;
  denied: number;
}

interface EdgeState {
  source: string;
  destination: string;
  counts: { allowed: number; denied: number; dropped: number };
  buckets: Bucket[];
  /** Ring of [time ms, latency ms]. */
  latencies: [number, number][];
  latencyNext: number;
  ports: string[];
  lastSeenMs: number;
  lastSeen: string;
  lastDenied: boolean;
}

const emptyBucket = (): Bucket => ({ start: -1, flows: 0, requests: 0, outcomes: 0, errors: 0, allowed: 0, denied: 0 });

/** Whether an L7 response reports a failure: a DNS rcode other than NOERROR, an HTTP status of 500 or more. */
export function isL7Error(r: FlowRecord): boolean {
  if (r.l7?.kind !== 'response') return false;
  if (r.l7.type === 'dns') return r.l7.dns?.rcode !== undefined && r.l7.dns.rcode !== 'NOERROR';
  return (r.l7.http?.status ?? 0) >= 500;
}

/** The node an end of a flow is drawn as. */
export function nodeOf(end: FlowEndpoint): MapNode {
  if (end.namespace && end.pod) {
    const node: MapNode = { id: `${end.namespace}/${end.pod}`, label: end.pod, namespace: end.namespace, kind: 'pod' };
    if (end.labels) node.labels = end.labels;
    return node;
  }
  const name = end.name || end.ip || 'unknown';
  return { id: name, label: name, namespace: OUTSIDE, kind: 'external' };
}

/** The median of a list of numbers; null when empty. */
function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A service map that flow records are added to; snapshot() gives the graph at a moment. */
export class ServiceMap {
  private readonly windowMs: number;
  private readonly bucketCount: number;
  private readonly maxEdges: number;
  /** Insertion order is recency order: an edge seen again moves to the end, eviction takes the first. */
  private readonly edges = new Map<string, EdgeState>();
  private readonly nodes = new Map<string, MapNode>();
  /** Pods known to exist (the agent's endpoints), drawn even without traffic. */
  private knownPods: MapNode[] = [];
  private records = 0;
  private evictedEdges = 0;

  constructor(options: ServiceMapOptions = {}) {
    this.windowMs = Math.max(BUCKET_MS, options.windowMs ?? DEFAULT_WINDOW_MS);
    this.bucketCount = Math.ceil(this.windowMs / BUCKET_MS);
    this.maxEdges = Math.max(1, options.maxEdges ?? DEFAULT_MAX_EDGES);
  }

  /** Sets the pods drawn even when no record names them (replaces the previous list). */
  setKnownPods(pods: { namespace: string; pod: string }[]): void {
    this.knownPods = pods.map((p) => ({ id: `${p.namespace}/${p.pod}`, label: p.pod, namespace: p.namespace, kind: 'pod' }));
  }

  /** Folds one record in. A record without a parseable time counts as seen at `nowMs`. */
  add(r: FlowRecord, nowMs: number): void {
    // An alert is about a process, not a flow between two ends: the table shows it, the map does not.
    if (r.type === 'alert') return;
    this.records++;
    const parsed = Date.parse(r.time);
    const t = Number.isFinite(parsed) ? parsed : nowMs;
    // An edge goes from the flow's opener to its responder: a reply's ends are the other way round.
    const [opener, responder] = r.isReply ? [r.destination, r.source] : [r.source, r.destination];
    const from = nodeOf(opener);
    const to = nodeOf(responder);
    this.nodes.set(from.id, from);
    this.nodes.set(to.id, to);
    const id = `${from.id} -> ${to.id}`;
    let edge = this.edges.get(id);
    if (edge) {
      this.edges.delete(id);
    } else {
      edge = {
        source: from.id,
        destination: to.id,
        counts: { allowed: 0, denied: 0, dropped: 0 },
        buckets: Array.from({ length: this.bucketCount }, emptyBucket),
        latencies: [],
        latencyNext: 0,
        ports: [],
        lastSeenMs: t,
        lastSeen: r.time,
        lastDenied: false,
      };
    }
    this.edges.set(id, edge);
    this.record(edge, r, t);
    this.evict();
  }

  private record(edge: EdgeState, r: FlowRecord, t: number): void {
    const denied = r.verdict !== 'ALLOWED';
    if (r.verdict === 'ALLOWED') edge.counts.allowed++;
    else if (r.verdict === 'DENIED') edge.counts.denied++;
    else edge.counts.dropped++;
    if (t >= edge.lastSeenMs) {
      edge.lastSeenMs = t;
      edge.lastSeen = r.time;
      edge.lastDenied = denied;
    }
    const port = r.isReply ? r.source.port : r.destination.port;
    const portName = port ? `${r.protocol}/${port}` : r.protocol;
    if (!edge.ports.includes(portName) && edge.ports.length < MAX_PORTS_PER_EDGE) edge.ports.push(portName);

    const start = Math.floor(t / BUCKET_MS) * BUCKET_MS;
    const slot = Math.floor(t / BUCKET_MS) % this.bucketCount;
    let b = edge.buckets[slot]!;
    if (b.start !== start) {
      // A record older than what the slot holds is outside any window the slot can still serve.
      if (b.start > start) return;
      b = edge.buckets[slot] = { ...emptyBucket(), start };
    }
    if (denied) b.denied++;
    else b.allowed++;
    if (r.type === 'flow') b.flows++;
    if (r.type === 'l7' && r.l7?.kind === 'request') b.requests++;
    const outcome = r.type === 'flow' || r.type === 'drop' || r.l7?.kind === 'response';
    if (outcome) b.outcomes++;
    if (denied || isL7Error(r)) b.errors++;
    if (r.l7?.kind === 'response' && r.l7.latencyMs !== undefined) {
      edge.latencies[edge.latencyNext] = [t, r.l7.latencyMs];
      edge.latencyNext = (edge.latencyNext + 1) % LATENCY_SAMPLES;
    }
  }

  private evict(): void {
    while (this.edges.size > this.maxEdges) {
      const oldest = this.edges.keys().next().value!;
      this.edges.delete(oldest);
      this.evictedEdges++;
    }
  }

  /** The graph at nowMs: every edge, its rates over the window that ends then, and the nodes they join. */
  snapshot(nowMs: number): ServiceMapSnapshot {
    const since = nowMs - this.windowMs;
    const windowSec = this.windowMs / 1000;
    const edges: MapEdge[] = [];
    const used = new Set<string>();
    for (const [id, e] of this.edges) {
      // The buckets that start inside the window (the newest one is still filling).
      const live = e.buckets.filter((b) => b.start >= 0 && b.start >= since && b.start <= nowMs);
      const sum = (k: keyof Omit<Bucket, 'start'>) => live.reduce((n, b) => n + b[k], 0);
      const allowed = sum('allowed');
      const denied = sum('denied');
      const outcomes = sum('outcomes');
      const errors = sum('errors');
      const active = allowed + denied > 0;
      const verdict: EdgeVerdict = active ? (denied === 0 ? 'allowed' : allowed === 0 ? 'denied' : 'mixed') : e.lastDenied ? 'denied' : 'allowed';
      const latencies = e.latencies.filter(([t]) => t > since && t <= nowMs).map(([, ms]) => ms);
      edges.push({
        id,
        source: e.source,
        destination: e.destination,
        verdict,
        active,
        counts: { ...e.counts },
        flowsPerSec: sum('flows') / windowSec,
        requestsPerSec: sum('requests') / windowSec,
        errorsPerSec: errors / windowSec,
        errorRatio: outcomes > 0 ? Math.min(1, errors / outcomes) : null,
        latencyP50Ms: median(latencies),
        ports: [...e.ports],
        lastSeen: e.lastSeen,
      });
      used.add(e.source);
      used.add(e.destination);
    }
    const nodes = [...used].map((id) => this.nodes.get(id)!);
    for (const pod of this.knownPods) if (!used.has(pod.id)) nodes.push(pod);
    nodes.sort((a, b) => (a.namespace === b.namespace ? a.id.localeCompare(b.id) : a.namespace.localeCompare(b.namespace)));
    edges.sort((a, b) => a.id.localeCompare(b.id));
    // Nodes no edge joins any more (their edges were evicted) go too, so nodes stay bounded by edges.
    for (const id of this.nodes.keys()) if (!used.has(id)) this.nodes.delete(id);
    return { nodes, edges, windowSec, records: this.records, evictedEdges: this.evictedEdges };
  }
}
