/**
 * The monitor: reads the datapath's event ring buffer, names the pods behind
 * addresses, endpoints and identities, keeps the latest drops for `status`,
 * and fans events out to subscribers (`sluice monitor`).
 */
import { COUNTER_NAMES, Counter, Direction, EventType, Verdict, decodeEvent, type DatapathEvent } from '../datapath/abi.ts';
import { closeFd, objGet } from '../datapath/libbpf.ts';
import { RingBufferReader } from '../datapath/ringbuf.ts';
import { errorMessage } from '../lib/errors.ts';
import { reservedIdentityName } from '../lib/identity-numbers.ts';
import { hasPorts, protocolName } from '../lib/protocols.ts';

const POLL_INTERVAL_MS = 100;
const RECENT_DROPS = 50;
const REASONS: Partial<Record<number, string>> = {
  [Counter.DROP_POLICY_INGRESS]: 'policy',
  [Counter.DROP_POLICY_EGRESS]: 'policy',
  [Counter.DROP_SPOOF]: 'spoofing',
  [Counter.DROP_MALFORMED]: 'malformed',
  [Counter.DROP_FRAGMENT]: 'fragment without its first',
  [Counter.DROP_UNKNOWN_EP]: 'no endpoint',
  [Counter.DROP_ICMP_UNRELATED]: 'ICMP error about no known flow',
  [Counter.DROP_TUNNEL]: "to a node's VXLAN port",
  [Counter.DROP_CT_FULL]: 'conntrack budget or table full',
  [Counter.DROP_FRAG_FULL]: 'fragment budget or table full',
  [Counter.DROP_REVOKED]: 'flow revoked by a policy change',
  [Counter.POLICY_ALLOWED]: 'policy',
};

/** One side of a monitored flow. */
export interface MonitorPeer {
  ip: string;
  port: number;
  identity: number;
  /** ns/name when the address is a pod's, 'host', 'world', ... otherwise. */
  name: string;
  namespace?: string;
  pod?: string;
}

/** An event as `sluice monitor -o json` prints it. */
export interface MonitorEvent {
  time: string;
  type: 'verdict' | 'drop';
  verdict: 'ALLOWED' | 'DENIED' | 'DROPPED';
  reason: string;
  /** The counter the datapath counted it in (e.g. DROP_POLICY_INGRESS). */
  counter: string;
  direction: 'ingress' | 'egress' | '';
  protocol: string;
  src: MonitorPeer;
  dst: MonitorPeer;
  bytes: number;
  summary: string;
}

/** Filters of a subscription; each given one must match. */
export interface MonitorFilter {
  namespace?: string;
  /** ns/name or name. */
  pod?: string;
  verdict?: string;
  type?: string;
}

/** Names addresses and identities; supplied by the agent from its endpoints and datastore. */
export interface Resolver {
  /** The pod with this address; `name`, when given, is its "namespace/pod". */
  podOfIp(ip: string): { namespace: string; pod: string; name?: string } | undefined;
  podOfEndpoint(endpointId: number): { namespace: string; pod: string; name?: string } | undefined;
  hostAddresses(): string[];
}

function peerOf(r: Resolver, ip: string, port: number, identity: number, endpoint: number): MonitorPeer {
  const pod = (endpoint && r.podOfEndpoint(endpoint)) || (ip ? r.podOfIp(ip) : undefined);
  if (pod) return { ip, port, identity, name: pod.name ?? `${pod.namespace}/${pod.pod}`, namespace: pod.namespace, pod: pod.pod };
  if (ip && r.hostAddresses().includes(ip)) return { ip, port, identity, name: 'host' };
  return { ip, port, identity, name: reservedIdentityName(identity) ?? (ip || 'unknown') };
}

/** What an event says, named: everything of a MonitorEvent but its summary line (the flow records build their own). */
export type EventBasics = Omit<MonitorEvent, 'summary'>;

/** The last event time formatted: events come in bursts within one millisecond, and toISOString is costly. */
let lastTime = { ms: NaN, text: '' };

/** An event's time (bpf_ktime_get_ns) as an ISO 8601 wall-clock time. */
function eventTime(e: DatapathEvent, bootOffsetMs: number): string {
  const ms = bootOffsetMs + Number(e.timestampNs / 1_000_000n);
  if (ms !== lastTime.ms) lastTime = { ms, text: new Date(ms).toISOString() };
  return lastTime.text;
}

/** An event's verdict as people read it. */
function verdictOf(e: DatapathEvent): MonitorEvent['verdict'] {
  return e.type === EventType.DROP ? 'DROPPED' : e.verdict === Verdict.DENIED ? 'DENIED' : 'ALLOWED';
}

/** Names an event's ends and says its verdict, reason and direction. */
export function eventBasics(e: DatapathEvent, r: Resolver, bootOffsetMs: number): EventBasics {
  const verdict = verdictOf(e);
  return {
    time: eventTime(e, bootOffsetMs),
    type: e.type === EventType.DROP ? 'drop' : 'verdict',
    verdict,
    reason: REASONS[e.reason] ?? COUNTER_NAMES[e.reason]?.toLowerCase() ?? String(e.reason),
    counter: COUNTER_NAMES[e.reason] ?? String(e.reason),
    direction: e.direction === Direction.INGRESS ? 'ingress' : e.direction === Direction.EGRESS ? 'egress' : '',
    protocol: protocolName(e.protocol),
    src: peerOf(r, e.src, e.sport, e.srcIdentity, e.srcEndpoint),
    dst: peerOf(r, e.dst, e.dport, e.dstIdentity, e.dstEndpoint),
    bytes: e.len,
  };
}

/** Turns a datapath event into what people read. */
export function describeEvent(e: DatapathEvent, r: Resolver, bootOffsetMs: number): MonitorEvent {
  const b = eventBasics(e, r, bootOffsetMs);
  const end = (p: MonitorPeer) => (hasPorts(e.protocol) ? `${p.name}:${p.port}` : p.name);
  const why = b.verdict === 'ALLOWED' && !b.direction ? '(no policy)' : `(${b.reason})`;
  return { ...b, summary: `${end(b.src)} -> ${end(b.dst)} ${b.protocol} ${b.verdict}${b.direction ? ` ${b.direction}` : ''} ${why}` };
}

/** True when the event passes every filter given. */
export function matchesFilter(e: MonitorEvent, f: MonitorFilter): boolean {
  const onPod = (p: MonitorPeer, ref: string) => (ref.includes('/') ? p.name === ref : p.pod === ref);
  if (f.namespace && e.src.namespace !== f.namespace && e.dst.namespace !== f.namespace) return false;
  if (f.pod && !onPod(e.src, f.pod) && !onPod(e.dst, f.pod)) return false;
  if (f.verdict && e.verdict !== f.verdict.toUpperCase()) return false;
  if (f.type && e.type !== f.type.toLowerCase()) return false;
  return true;
}

/** Reads events while the agent runs. */
export class Monitor {
  private reader: RingBufferReader | null = null;
  private fd = -1;
  private timer: NodeJS.Timeout | null = null;
  private readonly subscribers = new Set<{ filter: MonitorFilter; send: (e: MonitorEvent) => void }>();
  private readonly drops: MonitorEvent[] = [];
  private readonly listeners: ((e: DatapathEvent) => void)[] = [];
  private readonly resolver: Resolver;
  /** Wall-clock ms at boot: event timestamps are bpf_ktime_get_ns(), i.e. CLOCK_MONOTONIC. */
  private readonly bootOffsetMs: number;
  received = 0;

  constructor(resolver: Resolver) {
    this.resolver = resolver;
    this.bootOffsetMs = Date.now() - Number(process.hrtime.bigint() / 1_000_000n);
  }

  /** Opens the ring buffer pinned at eventsPath and polls it. */
  start(eventsPath: string, log: (msg: string) => void): void {
    this.fd = objGet(eventsPath, 'events ring buffer');
    this.reader = new RingBufferReader(this.fd, (record) => this.deliver(record));
    this.timer = setInterval(() => {
      try {
        this.reader?.poll();
      } catch (err: unknown) {
        log(`monitor: ${errorMessage(err)}`);
      }
    }, POLL_INTERVAL_MS);
    this.timer.unref();
  }

  /** Sends matching events to send until the returned function is called. */
  subscribe(filter: MonitorFilter, send: (e: MonitorEvent) => void): () => void {
    const sub = { filter, send };
    this.subscribers.add(sub);
    return () => this.subscribers.delete(sub);
  }

  /** The latest drops and denials, newest last. */
  recentDrops(): MonitorEvent[] {
    return [...this.drops];
  }

  /** Stops polling and releases the ring buffer. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.reader?.close();
    if (this.fd >= 0) closeFd(this.fd);
  }

  /** Hands every decoded datapath event, L7 ones too, to listener (the flow records). */
  onEvent(listener: (e: DatapathEvent) => void): void {
    this.listeners.push(listener);
  }

  /** Wall-clock ms at boot, to turn event timestamps into times. */
  get bootOffset(): number {
    return this.bootOffsetMs;
  }

  private deliver(record: Buffer): void {
    this.received++;
    const event = decodeEvent(record);
    for (const listener of this.listeners) listener(event);
    // The monitor shows verdicts and drops; L7 messages are the flow records'.
    if (event.type === EventType.L7) return;
    // Named only when someone looks: the recent drops, or a follower.
    if (verdictOf(event) === 'ALLOWED' && this.subscribers.size === 0) return;
    const e = describeEvent(event, this.resolver, this.bootOffsetMs);
    if (e.verdict !== 'ALLOWED') {
      this.drops.push(e);
      if (this.drops.length > RECENT_DROPS) this.drops.shift();
    }
    for (const sub of this.subscribers) if (matchesFilter(e, sub.filter)) sub.send(e);
  }
}
