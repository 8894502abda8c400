/**
 * The agent's flow records: a bounded ring of the latest (GET /v1/flows
 * ?last=N) and the followers that get each new one (?follow=1). Records
 * get their summary line here, as they leave (ensureSummary). A follower
 * that cannot keep up loses records, counted, rather than growing the
 * agent's memory; so does the datapath (its counter is read by the caller).
 */
import type { FlowRecord } from '../../contract/flows.ts';
import { flowMatches, type CompiledFlowFilter } from './filter.ts';
import { ensureSummary } from './record.ts';

/** Records the ring holds by default: 16 MiB of slots. */
export const DEFAULT_FLOW_CAPACITY = 8192;
/** The most records a ring may hold: 512 MiB of slots. */
export const MAX_FLOW_CAPACITY = 262_144;
/** Bytes of one slot: a record's JSON. Rare larger records (many labels) stay objects. */
const SLOT_BYTES = 2048;

/** Sends one record to a follower; false when the follower's queue is full and the record was not sent. */
export type FlowSend = (r: FlowRecord) => boolean;

/** A bounded ring of records with followers. */
export class FlowStore {
  readonly capacity: number;
  /**
   * The records as JSON, one slot each, in memory outside the JavaScript heap.
   * Kept as objects, every record outlived two scavenges and was promoted, so
   * the agent's old generation grew with the flow rate and each major
   * collection marked the whole heap: that cost more than the records did.
   */
  private readonly slots: Buffer;
  /** Bytes of each slot's JSON; 0 when the record is in `large`. */
  private readonly lengths: Uint32Array;
  private readonly large = new Map<number, FlowRecord>();
  /** Where the next record goes. */
  private next = 0;
  private size = 0;
  private readonly followers = new Set<{ filter: CompiledFlowFilter; send: FlowSend }>();
  /** Records followers missed (queue full). */
  followerLosses = 0;
  /** Records added since the agent started. */
  added = 0;

  constructor(capacity = DEFAULT_FLOW_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`flow capacity ${capacity} is not a positive integer`);
    this.capacity = capacity;
    this.slots = Buffer.allocUnsafeSlow(capacity * SLOT_BYTES);
    this.lengths = new Uint32Array(capacity);
  }

  /** Keeps a record (the oldest goes when full) and sends it to every follower it matches. */
  add(r: FlowRecord): void {
    this.keep(this.next, r);
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
    this.added++;
    for (const f of this.followers) if (flowMatches(r, f.filter) && !f.send(ensureSummary(r))) this.followerLosses++;
  }

  /** Records held now. */
  held(): number {
    return this.size;
  }

  /** The newest `last` records that match, oldest first. Walks the ring from the newest: stops at `last`. */
  latest(filter: CompiledFlowFilter, last: number): FlowRecord[] {
    const out: FlowRecord[] = [];
    for (let i = 1; i <= this.size && out.length < last; i++) {
      const r = this.read((this.next - i + this.capacity) % this.capacity);
      if (flowMatches(r, filter)) out.push(ensureSummary(r));
    }
    return out.reverse();
  }

  private keep(slot: number, r: FlowRecord): void {
    this.large.delete(slot);
    const text = JSON.stringify(r);
    const fits = text.length * 3 <= SLOT_BYTES || Buffer.byteLength(text, 'utf8') <= SLOT_BYTES;
    if (fits) {
      this.lengths[slot] = this.slots.write(text, slot * SLOT_BYTES, SLOT_BYTES, 'utf8');
    } else {
      this.lengths[slot] = 0;
      this.large.set(slot, r);
    }
  }

  private read(slot: number): FlowRecord {
    const len = this.lengths[slot]!;
    if (len === 0) return this.large.get(slot)!;
    const at = slot * SLOT_BYTES;
    return JSON.parse(this.slots.toString('utf8', at, at + len)) as FlowRecord;
  }

  /** Sends matching new records to send until the returned function is called. */
  follow(filter: CompiledFlowFilter, send: FlowSend): () => void {
    const f = { filter, send };
    this.followers.add(f);
    return () => this.followers.delete(f);
  }
}
