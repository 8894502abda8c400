/**
 * Pairs the DNS and HTTP/1.x messages the datapath hands up: a response gets
 * its request's latency (and an HTTP response its method and path). Requests
 * wait in one insertion-ordered Map, so the oldest is always first: eviction
 * at maxPending and expiry are O(1) per request removed, and no packet walks
 * the rest.
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

interface PendingRequest {
  timeNs: bigint;
  summary: L7Summary;
  /** Of an HTTP request: its connection, whose queue holds its key. */
  connection?: string;
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
  /** Every pending request, oldest first (insertion order; a repeated DNS query moves to the end). */
  private readonly pending = new Map<string, PendingRequest>();
  /** HTTP: the keys of each connection's pending requests, oldest first; a connection with none has no entry. */
  private readonly connections = new Map<string, Fifo<string>>();
  private nextHttpSeq = 0;
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
  observe(p: L7Packet): L7Summary | null {
    if (p.protocol === 'UDP' && (p.sport === DNS_PORT || p.dport === DNS_PORT)) return this.observeDns(p);
    if (p.protocol === 'TCP') return this.observeHttp(p);
    return null;
  }

  /** Removes and returns the requests unanswered for timeoutMs or more at nowNs (the datapath's clock), oldest first. */
  expire(nowNs: bigint): L7Summary[] {
    const out: L7Summary[] = [];
    // Oldest first, so stop at the first young one. Events from different CPUs may arrive slightly out of
    // order: a request behind a younger one expires at most that much late.
    for (const [key, request] of this.pending) {
      if (nowNs - request.timeNs < this.timeoutNs) break;
      this.removeOldest(key, request);
      this.expired++;
      out.push(request.summary);
    }
    return out;
  }

  stats(): L7TrackerStats {
    return { pending: this.pending.size, evicted: this.evicted, expired: this.expired };
  }

  private observeDns(p: L7Packet): L7Summary | null {
    const message = parseDns(p.payload);
    if (message === null) return null;
    const { dns } = message;
    if (message.kind === 'request') {
      const summary: L7Summary = { type: 'dns', kind: 'request', dns };
      const key = dnsKey(p.src, p.sport, p.dst, p.dport, dns.id);
      this.pending.delete(key); // a retransmission replaces the query it repeats (and its time)
      this.remember(key, { timeNs: p.timeNs, summary });
      return summary;
    }
    const summary: L7Summary = { type: 'dns', kind: 'response', dns };
    const key = dnsKey(p.dst, p.dport, p.src, p.sport, dns.id);
    const request = this.pending.get(key);
    if (request !== undefined) {
      this.pending.delete(key);
      summary.latencyMs = latencyMs(request.timeNs, p.timeNs);
      const asked = request.summary.dns;
      if (dns.query === '' && asked !== undefined) {
        dns.query = asked.query;
        dns.qtype = asked.qtype;
      }
    }
    return summary;
  }

  private observeHttp(p: L7Packet): L7Summary | null {
    const message = parseHttp(p.payload);
    if (message === null) return null;
    const { http } = message;
    if (message.kind === 'request') {
      const summary: L7Summary = { type: 'http', kind: 'request', http };
      const connection = connectionKey(p.src, p.sport, p.dst, p.dport);
      const key = `${connection}|${this.nextHttpSeq++}`;
      let queue = this.connections.get(connection);
      if (queue === undefined) {
        queue = new Fifo<string>();
        this.connections.set(connection, queue);
      }
      queue.push(key);
      this.remember(key, { timeNs: p.timeNs, summary, connection });
      return summary;
    }
    const summary: L7Summary = { type: 'http', kind: 'response', http };
    const connection = connectionKey(p.dst, p.dport, p.src, p.sport);
    const queue = this.connections.get(connection);
    const key = queue?.peek();
    const request = key === undefined ? undefined : this.pending.get(key);
    if (key !== undefined && request !== undefined) {
      // An interim response (100 Continue, 103 Early Hints) precedes the final one to the same request;
      // 101 Switching Protocols is final: what follows on the connection is not HTTP/1.x.
      const interim = http.status !== undefined && http.status < 200 && http.status !== 101;
      if (!interim) this.removeOldest(key, request);
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

  /** Adds a request at the young end, then drops the oldest beyond maxPending. */
  private remember(key: string, request: PendingRequest): void {
    this.pending.set(key, request);
    while (this.pending.size > this.maxPending) {
      const oldest = this.pending.entries().next().value;
      if (oldest === undefined) break;
      this.removeOldest(oldest[0], oldest[1]);
      this.evicted++;
    }
  }

  /**
   * Removes a request that is the oldest pending one of its kind: the first of the Map (evict, expire),
   * or the first of its connection's queue (a response). For HTTP each is also the other: a connection's
   * requests enter both in the same order and leave both only from the front.
   */
  private removeOldest(key: string, request: PendingRequest): void {
    this.pending.delete(key);
    if (request.connection === undefined) return;
    const queue = this.connections.get(request.connection);
    if (queue === undefined) return;
    if (queue.peek() === key) queue.shift();
    if (queue.size === 0) this.connections.delete(request.connection);
  }
}

function dnsKey(client: string, clientPort: number, server: string, serverPort: number, id: number): string {
  return `d|${client}|${clientPort}|${server}|${serverPort}|${id}`;
}

/** An HTTP connection, client side first. */
function connectionKey(client: string, clientPort: number, server: string, serverPort: number): string {
  return `h|${client}|${clientPort}|${server}|${serverPort}`;
}

/** Milliseconds from request to response, to the microsecond; 0 if the clock seems to run back. */
function latencyMs(requestNs: bigint, responseNs: bigint): number {
  const ns = responseNs - requestNs;
  return ns <= 0n ? 0 : Math.round(Number(ns) / 1_000) / 1_000;
}
