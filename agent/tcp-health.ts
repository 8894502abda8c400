/**
 * TCP health per pod: the tracing programs count by network namespace inode
 * (bpf/trace.h); this maps inodes to the local pods and reads the counts.
 *
 * The index follows the endpoint manager's syncs: a new endpoint's netns
 * path is stat'ed once, when it registers (its netns exists then, and may be
 * gone by the time anyone asks); an endpoint that leaves takes its
 * namespace's map entries with it, so an inode the kernel reuses for a new
 * namespace starts from zero. The cost of a sync grows with what changed,
 * not with the number of pods (one set comparison in memory).
 */
import { statSync } from 'node:fs';
import type { Endpoint } from '../contract/api-types.ts';
import type { RttSummary, TcpConnectionCounts, TcpHealthResponse } from '../contract/tcp-health.ts';
import { RTT_BUCKETS, TraceStat, decodeNetnsKey, encodeNetnsKey, rttBucketUpperUs, sumRttHistogram, sumTcpCounters, sumTraceStat, type RttHistogram, type TcpCounters } from '../datapath/trace-abi.ts';
import type { TraceMaps } from '../datapath/trace-loader.ts';
import { errorMessage } from '../lib/errors.ts';

/** The parts of a loaded tracing object TcpHealth reads. */
export interface TraceSource {
  maps: TraceMaps;
  /** The links attached now (for the report). */
  links(): string[];
}

interface Tracked {
  namespace: string;
  pod: string;
  /** null: the netns could not be stat'ed when the endpoint registered. */
  inode: number | null;
}

/** The inode of a network namespace path (nsfs: the inode number is the namespace's ns.inum). */
export function netnsInode(path: string): number {
  return statSync(path).ino;
}

/** The TCP health index and reader; `trace` null when the tracing programs are not running (reason says why). */
export class TcpHealth {
  private readonly trace: TraceSource | null;
  private readonly reason: string | undefined;
  private readonly log: (message: string) => void;
  private readonly inodeOf: (netnsPath: string) => number;
  private readonly byEndpoint = new Map<number, Tracked>();
  private synced = false;

  constructor(trace: TraceSource | null, opts: { reason?: string; log: (message: string) => void; inodeOf?: (netnsPath: string) => number }) {
    this.trace = trace;
    this.reason = opts.reason;
    this.log = opts.log;
    this.inodeOf = opts.inodeOf ?? netnsInode;
  }

  /** Follows one endpoint sync (every list the endpoint manager syncs the datapath with). Never throws. */
  track(endpoints: readonly Endpoint[]): void {
    const current = new Set<number>();
    for (const ep of endpoints) {
      current.add(ep.id);
      if (this.byEndpoint.has(ep.id)) continue;
      let inode: number | null = null;
      try {
        inode = this.inodeOf(ep.netns);
      } catch (err: unknown) {
        this.log(`tcp health: netns of ${ep.namespace}/${ep.pod} (${ep.netns}) unreadable, its TCP events stay unattributed: ${errorMessage(err)}`);
      }
      this.byEndpoint.set(ep.id, { namespace: ep.namespace, pod: ep.pod, inode });
    }
    const gone: number[] = [];
    for (const [id, t] of this.byEndpoint) {
      if (current.has(id)) continue;
      this.byEndpoint.delete(id);
      if (t.inode !== null) gone.push(t.inode);
    }
    const live = this.liveInodes();
    // The first sync after a (re)start: entries of pods that left while no agent ran go too.
    if (!this.synced && this.trace) for (const key of this.trace.maps.tcp_counters.keys()) gone.push(decodeNetnsKey(key));
    this.synced = true;
    for (const inode of new Set(gone)) if (!live.has(inode) && inode !== this.ownInode()) this.forget(inode);
  }

  /** The current counts of every tracked pod, and what could not be attributed. */
  report(): TcpHealthResponse {
    const zero = (): TcpConnectionCounts => ({ openedActive: 0, openedPassive: 0, closed: 0, reset: 0, failed: 0 });
    const links = this.trace?.links() ?? [];
    const response: TcpHealthResponse = {
      enabled: links.length > 0,
      links,
      pods: [],
      unattributed: { netns: 0, retransmits: 0, connections: zero(), rttSamples: 0 },
      lost: { counters: 0, rtt: 0 },
    };
    if (!this.trace) {
      response.reason = this.reason ?? 'the tracing programs are not loaded';
      return response;
    }
    if (links.length === 0) response.reason = this.reason ?? 'the tracing programs are loaded but not attached';
    const { tcp_counters: countersMap, tcp_rtt: rttMap, trace_stats: stats } = this.trace.maps;
    const counters = new Map<number, TcpCounters>();
    for (const key of countersMap.keys()) {
      const slots = countersMap.lookupPerCpu(key);
      if (slots.length > 0) counters.set(decodeNetnsKey(key), sumTcpCounters(slots));
    }
    const rtts = new Map<number, RttHistogram>();
    for (const key of rttMap.keys()) {
      const slots = rttMap.lookupPerCpu(key);
      if (slots.length > 0) rtts.set(decodeNetnsKey(key), sumRttHistogram(slots));
    }
    const seen = new Set<number>();
    for (const t of [...this.byEndpoint.values()].sort((a, b) => `${a.namespace}/${a.pod}`.localeCompare(`${b.namespace}/${b.pod}`))) {
      // A pod with several interfaces shares one namespace: reported once.
      if (t.inode !== null && seen.has(t.inode)) continue;
      if (t.inode !== null) seen.add(t.inode);
      const c = (t.inode !== null && counters.get(t.inode)) || undefined;
      const h = t.inode !== null ? rtts.get(t.inode) : undefined;
      response.pods.push({
        namespace: t.namespace,
        pod: t.pod,
        netnsInode: t.inode ?? 0,
        retransmits: c?.retransmits ?? 0,
        connections: c ? connectionsOf(c) : zero(),
        rtt: rttSummary(h),
      });
    }
    const others = new Set([...counters.keys(), ...rtts.keys()].filter((inode) => !seen.has(inode)));
    const u = response.unattributed;
    u.netns = others.size;
    for (const inode of others) {
      const c = counters.get(inode);
      if (c) {
        u.retransmits += c.retransmits;
        const conn = connectionsOf(c);
        for (const k of Object.keys(conn) as (keyof TcpConnectionCounts)[]) u.connections[k] += conn[k];
      }
      u.rttSamples += rtts.get(inode)?.count ?? 0;
    }
    const stat = (index: number) => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(index);
      return sumTraceStat(stats.lookupPerCpu(key));
    };
    response.lost = { counters: stat(TraceStat.COUNTERS_FULL), rtt: stat(TraceStat.RTT_FULL) };
    return response;
  }

  private liveInodes(): Set<number> {
    const live = new Set<number>();
    for (const t of this.byEndpoint.values()) if (t.inode !== null) live.add(t.inode);
    return live;
  }

  private ownInodeCache: number | null | undefined;

  /** The agent's own network namespace (the node's, in production): never forgotten. */
  private ownInode(): number | null {
    if (this.ownInodeCache === undefined) {
      try {
        this.ownInodeCache = this.inodeOf('/proc/self/ns/net');
      } catch {
        this.ownInodeCache = null;
      }
    }
    return this.ownInodeCache;
  }

  private forget(inode: number): void {
    if (!this.trace) return;
    const key = encodeNetnsKey(inode);
    try {
      this.trace.maps.tcp_counters.delete(key);
      this.trace.maps.tcp_rtt.delete(key);
    } catch (err: unknown) {
      this.log(`tcp health: forget netns ${inode}: ${errorMessage(err)}`);
    }
  }
}

function connectionsOf(c: TcpCounters): TcpConnectionCounts {
  return { openedActive: c.openedActive, openedPassive: c.openedPassive, closed: c.closed, reset: c.reset, failed: c.failed };
}

/** The API's view of a histogram: non-empty buckets with their bounds. */
export function rttSummary(h: RttHistogram | undefined): RttSummary {
  if (!h || h.count === 0) return { samples: 0, sumUs: 0, meanUs: null, buckets: [] };
  const buckets = [];
  for (let i = 0; i < RTT_BUCKETS; i++) {
    const count = h.log2Us[i] ?? 0;
    if (count > 0) buckets.push({ fromUs: i === 0 ? 0 : 2 ** i, toUs: rttBucketUpperUs(i), count });
  }
  return { samples: h.count, sumUs: h.sumUs, meanUs: Math.round((h.sumUs / h.count) * 10) / 10, buckets };
}
