/**
 * One filtered view of the agent's flows for `sluice ui`: the records held
 * (GET /v1/flows?last=N) and then those that follow (&follow=1), with the
 * filters of `sluice observe` passed to the agent as they are, so the map
 * and the table show what `observe` with the same filters would. Feeds a
 * ServiceMap and keeps the newest records for the table. A lost stream is
 * reopened, its gap filled from the agent's ring.
 */
import { agentRequest, agentStream } from '../contract/client.ts';
import type { FlowLosses, FlowRecord, FlowsResponse } from '../contract/flows.ts';
import { errorMessage } from '../lib/errors.ts';
import { ServiceMap } from './service-map.ts';

/** The query parameters of GET /v1/flows that filter (FlowFilter's fields). */
export const FILTER_KEYS = ['namespace', 'pod', 'selector', 'verdict', 'type', 'protocol', 'port', 'since', 'l7'] as const;
/** Records held for the table, and fetched from the agent's ring when a view opens. */
const TABLE_RECORDS = 200;
const BACKFILL_RECORDS = 1000;
const RETRY_MS = 2_000;
const STATS_INTERVAL_MS = 5_000;

/** Where flow records come from: the agent (agentFlowSource), or a fake in tests. */
export interface FlowSource {
  /** GET /v1/flows?<query>. */
  fetch(query: URLSearchParams): Promise<FlowsResponse>;
  /** GET /v1/flows?<query>&follow=1: onRecord per record until stopped or onEnd. */
  follow(query: URLSearchParams, onRecord: (r: FlowRecord) => void, onEnd: (err?: Error) => void): () => void;
}

/** The agent's flows over its unix socket. */
export function agentFlowSource(socket: string): FlowSource {
  return {
    fetch: (query) => agentRequest<FlowsResponse>(socket, 'GET', `/v1/flows?${query}`),
    follow: (query, onRecord, onEnd) => {
      const q = new URLSearchParams(query);
      q.set('follow', '1');
      return agentStream(socket, `/v1/flows?${q}`, (v) => onRecord(v as FlowRecord), onEnd);
    },
  };
}

/** The filter parameters of a query, in a fixed order, empty ones left out: the key views are shared by. */
export function filterQuery(params: URLSearchParams): URLSearchParams {
  const q = new URLSearchParams();
  for (const key of FILTER_KEYS) {
    const value = params.get(key)?.trim();
    if (value) q.set(key, value);
  }
  return q;
}

/** How the view's feed is doing, for the page. */
export interface FeedState {
  connected: boolean;
  /** The agent's last answer was an error (a bad filter, the agent away). */
  error?: string;
  held?: number;
  capacity?: number;
  lost?: FlowLosses;
}

/** A live, filtered view: start() it, read map and recent(), stop() it. */
export class FlowView {
  readonly map: ServiceMap;
  /** When the page last asked for this view (ms). */
  lastUsedMs = Date.now();
  private readonly recentRecords: FlowRecord[] = [];
  /** The time of the newest record taken, and the records taken at that very time (JSON, counted). */
  private lastTime = '';
  private takenAtLastTime = new Map<string, number>();
  private state: FeedState = { connected: false };
  private stopStream: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  private readonly source: FlowSource;
  readonly filter: URLSearchParams;

  constructor(source: FlowSource, filter: URLSearchParams, windowMs: number) {
    this.source = source;
    this.filter = filter;
    this.map = new ServiceMap({ windowMs });
  }

  /** Opens the feed; never rejects (errors land in feedState()). */
  start(): void {
    void this.open();
    this.timer = setInterval(() => void this.refreshStats(), STATS_INTERVAL_MS);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.stopStream?.();
    this.stopStream = undefined;
  }

  feedState(): FeedState {
    return { ...this.state };
  }

  /** The newest records, newest first. */
  recent(limit = TABLE_RECORDS): FlowRecord[] {
    return this.recentRecords.slice(-limit).reverse();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    // Follow first and hold what arrives, then read the ring: nothing falls between the two.
    let backlog: FlowRecord[] | undefined = [];
    this.stopStream = this.source.follow(
      this.filter,
      (r) => (backlog ? backlog.push(r) : this.take(r)),
      (err) => {
        this.stopStream = undefined;
        this.state = { ...this.state, connected: false, error: err ? err.message : 'the agent closed the flow stream' };
        if (!this.stopped) setTimeout(() => void this.open(), RETRY_MS).unref();
      },
    );
    try {
      const q = new URLSearchParams(this.filter);
      q.set('last', String(BACKFILL_RECORDS));
      const held = await this.source.fetch(q);
      this.takeNew(held.flows);
      this.state = { connected: this.stopStream !== undefined, held: held.held, capacity: held.capacity, lost: held.lost };
    } catch (err: unknown) {
      this.state = { ...this.state, connected: false, error: errorMessage(err) };
    }
    this.takeNew(backlog);
    backlog = undefined;
  }

  private async refreshStats(): Promise<void> {
    try {
      const q = new URLSearchParams(this.filter);
      q.set('last', '1');
      const now = await this.source.fetch(q);
      this.state = { ...this.state, held: now.held, capacity: now.capacity, lost: now.lost };
      if (this.stopStream) {
        this.state.connected = true;
        delete this.state.error;
      }
    } catch (err: unknown) {
      this.state = { ...this.state, error: errorMessage(err) };
    }
  }

  /**
   * Takes what was not taken yet, of records read from the agent's ring (which may repeat
   * followed ones): those newer than the newest taken and, at its very time, those not
   * taken as many times. Two identical records are no duplicate (a flood drops many alike).
   */
  private takeNew(records: FlowRecord[]): void {
    const taken = new Map(this.takenAtLastTime);
    for (const r of records) {
      if (r.time < this.lastTime) continue;
      if (r.time === this.lastTime) {
        const key = JSON.stringify(r);
        const n = taken.get(key) ?? 0;
        if (n > 0) {
          taken.set(key, n - 1);
          continue;
        }
      }
      this.take(r);
    }
  }

  private take(r: FlowRecord): void {
    if (r.time > this.lastTime) {
      this.lastTime = r.time;
      this.takenAtLastTime = new Map();
    }
    if (r.time === this.lastTime) {
      const key = JSON.stringify(r);
      this.takenAtLastTime.set(key, (this.takenAtLastTime.get(key) ?? 0) + 1);
    }
    this.map.add(r, Date.now());
    this.recentRecords.push(r);
    if (this.recentRecords.length > TABLE_RECORDS) this.recentRecords.shift();
  }
}
