/**
 * The flow record pipeline: every datapath event the monitor reads becomes
 * a record (L7 events once parsed and paired), named, with its policies,
 * kept in the store and counted in the metrics. Requests left unanswered are
 * expired on a timer and counted as such.
 */
import type { FlowEndpoint, FlowLosses, FlowRecord } from '../../contract/flows.ts';
import { EventType, type DatapathEvent } from '../../datapath/abi.ts';
import { errorMessage } from '../../lib/errors.ts';
import { protocolName } from '../../lib/protocols.ts';
import type { FlowMetrics } from '../metrics/flows.ts';
import { L7Tracker, type L7TrackerStats } from './l7-tracker.ts';
import type { PolicyNamer } from './policy-names.ts';
import { flowRecordOf, type FlowNaming } from './record.ts';
import { FlowStore } from './store.ts';

const EXPIRE_INTERVAL_MS = 1000;

/** What the recorder needs from the agent. */
export interface FlowRecorderOptions {
  naming: FlowNaming;
  policies: PolicyNamer;
  store: FlowStore;
  /** Wall-clock ms at boot (Monitor.bootOffset). */
  bootOffsetMs: number;
  /** The datapath's EVENTS_LOST counter: events it could not send. */
  datapathLosses(): number;
  metrics?: FlowMetrics;
  tracker?: L7Tracker;
  log?: (msg: string) => void;
}

/** Ends of an L7 request, kept while it waits for its response, for the metrics of one that never gets one. */
interface RequestEnds {
  source: FlowEndpoint;
  destination: FlowEndpoint;
}

/** Turns datapath events into flow records. */
export class FlowRecorder {
  private readonly o: FlowRecorderOptions;
  readonly tracker: L7Tracker;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;

  constructor(options: FlowRecorderOptions) {
    this.o = options;
    this.tracker = options.tracker ?? new L7Tracker();
  }

  /** Expires unanswered requests every second until stop(). */
  start(): void {
    this.timer = setInterval(() => this.expire(process.hrtime.bigint()), EXPIRE_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One datapath event; never throws (one bad event must not stop the others). */
  record(e: DatapathEvent): void {
    try {
      const r = this.recordOf(e);
      if (!r) return;
      this.o.store.add(r);
      this.o.metrics?.observe(r);
    } catch (err: unknown) {
      if (this.failures++ < 10) this.o.log?.(`flow records: event skipped: ${errorMessage(err)}`);
    }
  }

  /** Counts the requests that waited past their time without a response. */
  expire(nowNs: bigint): void {
    for (const { summary, context } of this.tracker.expireRequests(nowNs)) {
      const ends = context as RequestEnds | undefined;
      if (ends) this.o.metrics?.unanswered({ source: ends.source, destination: ends.destination, l7: summary });
    }
  }

  losses(): FlowLosses {
    return { datapath: this.o.datapathLosses(), followers: this.o.store.followerLosses };
  }

  l7Stats(): L7TrackerStats {
    return this.tracker.stats();
  }

  private recordOf(e: DatapathEvent): FlowRecord | null {
    const { naming, bootOffsetMs } = this.o;
    if (e.type !== EventType.L7) return flowRecordOf(e, naming, bootOffsetMs, undefined, (r) => this.o.policies.policiesOf(r));
    const protocol = protocolName(e.protocol);
    if (protocol !== 'TCP' && protocol !== 'UDP') return null;
    // A request keeps its ends for the metrics of one never answered: filled in once the record names them.
    const ends = {} as RequestEnds;
    const l7 = this.tracker.observe({ timeNs: e.timestampNs, protocol, src: e.src, sport: e.sport, dst: e.dst, dport: e.dport, payload: e.payload }, ends);
    if (!l7) return null;
    const r = flowRecordOf(e, naming, bootOffsetMs, l7);
    ends.source = r.source;
    ends.destination = r.destination;
    return r;
  }
}
