/**
 * Pairs the DNS and HTTP/1.x messages the datapath hands up: a response gets
 * its request's latency (and an HTTP response its method and path). Pending
 * requests are found by key (DNS) or by connection (HTTP), and are chained
 * oldest to youngest, so eviction at maxPending and expiry take from the old
 * end at O(1) each and no packet walks the rest. (Not a Map's insertion order:
 * V8 leaves a hole per deleted entry that finding the first must step over, up
 * to the table's size, which made an eviction cost 8 us instead of 1.)
 *
 * DNS pairs on (client, client port, server, server port, id); HTTP/1.x on the
 * connection, first in first out (pipelined responses come in request order).
 * An HTTP response segment holding several pipelined responses yields only the
 * first, so a connection that coalesces them pairs later responses with
 * earlier requests; pipelining is rare enough to accept that.
 */
import type { L7Summary } from '../../contract/flows.ts';
import { parseDns } from './dns.ts';
import { parseHttp } from './http.ts';

export const DEFAULT_MAX_PENDING = 16_384;
export const DEFAULT_TIMEOUT_MS = 30_000;
const DNS_PORT = 53;
const NS_PER_MS = 1_000_000n;

/** One message the datapath handed up: addresses as strings, ports in host order, the payload's first bytes. */
export interface L7Packet {
  /** When the datapath saw it (its clock: only differences are used). */
  timeNs: bigint;
  protocol: 'TCP' | 'UDP';
  src: string;
  sport: number;
  dst: string;
  dport: number;
  payload: Buffer;
}

export interface L7TrackerOptions {
  /** Requests waiting for a response, DNS and HTTP together; beyond it the oldest is dropped (counted as evicted). */
  maxPending?: number;
  /** A request this old without a response is removed by expire(). */
  timeoutMs?: number;
}

export interface L7TrackerStats {
  /** Requests waiting for a response now. */
  pending: number;
  /** Requests dropped unanswered to stay within maxPending, since the start. */
  evicted: number;
  /** Requests expire() returned unanswered, since the start. */
  expired: number;
}

/** A request that got no response in time, and the context it was observed with. */
export interface ExpiredRequest {
  summary: L7Summary;
  context: unknown;
}

interface PendingRequest {
  /** Of a DNS query: its key in the DNS map. */
  key: string;
  timeNs: bigint;
  summary: L7Summary;
  /** Of an HTTP request: its connection, whose queue holds it. */
  connection?: string;
  /** What the caller observed it with (observe's context), handed back when it expires. */
  context?: unknown;
  /** The age chain. */
  older?: PendingRequest;
  younger?: PendingRequest;
}

/** A FIFO with O(1) push and shift (Array.shift is O(n), and a hostile connection can queue thousands). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    const item = this.items[this.head++];
    if (this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** Pairs requests and responses of DNS and HTTP/1.x, within a bound on what it remembers. */
export class L7Tracker {
  private readonly maxPending: number;
  private readonly timeoutNs: bigint;
  /** DNS queries waiting, by (client, client port, server, server port, id). */
  private readonly queries = new Map<string, PendingRequest>();
  /** HTTP requests waiting, per connection, oldest first; a connection with none has no entry. */
  private readonly connections = new Map<string, Fifo<PendingRequest>>();
  /** Every pending request, DNS and HTTP, chained from oldest to youngest. */
  private oldest: PendingRequest | undefined;
  private youngest: PendingRequest | undefined;
  private pending = 0;
  private evicted = 0;
  private expired = 0;

  constructor(options: L7TrackerOptions = {}) {
    this.maxPending = Math.max(1, options.maxPending ?? DEFAULT_MAX_PENDING);
    this.timeoutNs = BigInt(Math.round(options.timeoutMs ?? DEFAULT_TIMEOUT_MS)) * NS_PER_MS;
  }

  /**
   * The summary of one message: a request (remembered until its response), a
   * response (with latencyMs, and what its request said, when paired), or
   * null when the payload is not DNS (UDP port 53) or an HTTP/1.x start line (TCP).
   */
  observe(p: L7Packet, context?: unknown): L7Summary | null {
    if (p.protocol === 'UDP' && (p.sport === DNS_PORT || p.dport === DNS_PORT)) return this.observeDns(p, context);
    if (p.protocol === 'TCP') return this.observeHttp(p, context);
    return null;
  }

  /** Removes and returns the requests unanswered for timeoutMs or more at nowNs (the datapath's clock), oldest first. */
  expire(nowNs: bigint): L7Summary[] {
    return this.expireRequests(nowNs).map((r) => r.summary);
  }

  /** Like expire(), with the context each request was observed with (its ends, for the metrics of an unanswered one). */
  expireRequests(nowNs: bigint): ExpiredRequest[] {
    const out: ExpiredRequest[] = [];
    // Oldest first, so stop at the first young one. Events from different CPUs may arrive slightly out of
    // order: a request behind a younger one expires at most that much late.
    while (this.oldest !== undefined && nowNs - this.oldest.timeNs >= this.timeoutNs) {
      const request = this.oldest;
      this.remove(request);
      this.expired++;
      out.push({ summary: request.summary, context: request.context });
    }
    return out;
  }

  stats(): L7TrackerStats {
    return { pending: this.pending, evicted: this.evicted, expired: this.expired };
  }

  private observeDns(p: L7Packet, context: unknown): L7Summary | null {
    const message = parseDns(p.payload);
    if (message === null) return null;
    const { dns } = message;
    if (message.kind === 'request') {
      const summary: L7Summary = { type: 'dns', kind: 'request', dns };
      const key = dnsKey(p.src, p.sport, p.dst, p.dport, dns.id);
      const repeated = this.queries.get(key);
      if (repeated !== undefined) this.remove(repeated); // a retransmission replaces the query it repeats (and its time)
      const request: PendingRequest = { key, timeNs: p.timeNs, summary, context };
      this.queries.set(key, request);
      this.add(request);
      return summary;
    }
    const summary: L7Summary = { type: 'dns', kind: 'response', dns };
    const request = this.queries.get(dnsKey(p.dst, p.dport, p.src, p.sport, dns.id));
    if (request !== undefined) {
      this.remove(request);
      summary.latencyMs = latencyMs(request.timeNs, p.timeNs);
      const asked = request.summary.dns;
      if (dns.query === '' && asked !== undefined) {
        dns.query = asked.query;
        dns.qtype = asked.qtype;
      }
    }
    return summary;
  }

  private observeHttp(p: L7Packet, context: unknown): L7Summary | null {
    const message = parseHttp(p.payload);
    if (message === null) return null;
    const { http } = message;
    if (message.kind === 'request') {
      const summary: L7Summary = { type: 'http', kind: 'request', http };
      const connection = connectionKey(p.src, p.sport, p.dst, p.dport);
      let queue = this.connections.get(connection);
      if (queue === undefined) {
        queue = new Fifo<PendingRequest>();
        this.connections.set(connection, queue);
      }
      const request: PendingRequest = { key: '', timeNs: p.timeNs, summary, connection, context };
      queue.push(request);
      this.add(request);
      return summary;
    }
    const summary: L7Summary = { type: 'http', kind: 'response', http };
    const request = this.connections.get(connectionKey(p.dst, p.dport, p.src, p.sport))?.peek();
    if (request !== undefined) {
      // An interim response (100 Continue, 103 Early Hints) precedes the final one to the same request;
      // 101 Switching Protocols is final: what follows on the connection is not HTTP/1.x.
      const interim = http.status !== undefined && http.status < 200 && http.status !== 101;
      if (!interim) this.remove(request);
      summary.latencyMs = latencyMs(request.timeNs, p.timeNs);
      const asked = request.summary.http;
      if (asked !== undefined) {
        http.method = asked.method;
        http.path = asked.path;
        if (asked.truncated) http.truncated = true;
      }
    }
    return summary;
  }

  /** Chains a request at the young end, then drops the oldest beyond maxPending. */
  private add(request: PendingRequest): void {
    request.older = this.youngest;
    if (this.youngest !== undefined) this.youngest.younger = request;
    else this.oldest = request;
    this.youngest = request;
    this.pending++;
    while (this.pending > this.maxPending && this.oldest !== undefined) {
      this.remove(this.oldest);
      this.evicted++;
    }
  }

  /**
   * Forgets a pending request: unchains it, and takes it out of the DNS map or its connection's queue.
   * An HTTP request leaves only as the first of its queue: a response takes the first, and evict and
   * expire take the oldest of all, which is the oldest of its connection too (both orders are arrival).
   */
  private remove(request: PendingRequest): void {
    const { older, younger } = request;
    if (older !== undefined) older.younger = younger;
    else this.oldest = younger;
    if (younger !== undefined) younger.older = older;
    else this.youngest = older;
    request.older = request.younger = undefined;
    this.pending--;

    if (request.connection === undefined) {
      this.queries.delete(request.key);
      return;
    }
    const queue = this.connections.get(request.connection);
    if (queue?.peek() === request) queue.shift();
    if (queue?.size === 0) this.connections.delete(request.connection);
  }
}

function dnsKey(client: string, clientPort: number, server: string, serverPort: number, id: number): string {
  return `${client}|${clientPort}|${server}|${serverPort}|${id}`;
}

/** An HTTP connection, client side first. */
function connectionKey(client: string, clientPort: number, server: string, serverPort: number): string {
  return `${client}|${clientPort}|${server}|${serverPort}`;
}

/** Milliseconds from request to response, to the microsecond; 0 if the clock seems to run back. */
function latencyMs(requestNs: bigint, responseNs: bigint): number {
  const ns = responseNs - requestNs;
  return ns <= 0n ? 0 : Math.round(Number(ns) / 1_000) / 1_000;
}
