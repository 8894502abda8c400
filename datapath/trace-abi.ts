/**
 * The TypeScript mirror of bpf/trace.h, the tracing object's kernel ABI: map
 * keys and values, their limits, and the decoders the agent reads them with.
 * test/trace-abi.test.ts compares the layouts here with the BTF of the object
 * as the Makefile builds it. Integers are in host order.
 */
import type { StructLayout } from './abi.ts';

/** SLUICE_TRACE_MAX_NETNS: network namespaces per map (tcp_counters, tcp_rtt). */
export const TRACE_MAX_NETNS = 4096;
/** SLUICE_RTT_BUCKETS: bucket i of the RTT histogram counts samples in [2^i, 2^(i+1)) µs (bucket 0 also 0 µs). */
export const RTT_BUCKETS = 32;

/** The key of tcp_counters and tcp_rtt: a network namespace's inode number (__u32). */
export const NETNS_KEY_SIZE = 4;
/** The key (__u32) and value (__u64) sizes of the per-CPU array trace_stats. */
export const TRACE_STAT_KEY_SIZE = 4;
export const TRACE_STAT_VALUE_SIZE = 8;

const U64_BYTES = 8;

/** struct tcp_counters: what each field counts is defined in bpf/trace.h. */
export const TCP_COUNTERS: StructLayout = {
  name: 'tcp_counters',
  size: 48,
  members: { retransmits: 0, opened_active: 8, opened_passive: 16, closed: 24, reset: 32, failed: 40 },
};

/** struct tcp_rtt_hist. */
export const TCP_RTT_HIST: StructLayout = {
  name: 'tcp_rtt_hist',
  size: 16 + RTT_BUCKETS * U64_BYTES,
  members: { count: 0, sum_us: 8, log2_us: 16 },
};

/** enum sluice_trace_stat: indexes of trace_stats, events the programs could not count. */
export const TraceStat = {
  COUNTERS_FULL: 0,
  RTT_FULL: 1,
} as const;
/** SLUICE_TRACE_STAT_MAX. */
export const TRACE_STAT_MAX = 2;

/** The TCP events of one network namespace, summed over CPUs (names as in struct tcp_counters). */
export interface TcpCounters {
  retransmits: number;
  openedActive: number;
  openedPassive: number;
  closed: number;
  reset: number;
  failed: number;
}

/** The RTT samples of one network namespace, summed over CPUs. */
export interface RttHistogram {
  count: number;
  sumUs: number;
  /** log2Us[i]: samples in [2^i, 2^(i+1)) µs; RTT_BUCKETS long. */
  log2Us: number[];
}

/** The tcp_counters / tcp_rtt key of a network namespace inode. */
export function encodeNetnsKey(inode: number): Buffer {
  const key = Buffer.alloc(NETNS_KEY_SIZE);
  key.writeUInt32LE(inode);
  return key;
}

/** The inode a tcp_counters / tcp_rtt key holds. */
export function decodeNetnsKey(key: Buffer): number {
  return key.readUInt32LE(0);
}

/** The exclusive upper bound, in µs, of RTT bucket i (its `le` in a Prometheus histogram). */
export function rttBucketUpperUs(bucket: number): number {
  return 2 ** (bucket + 1);
}

function u64(buf: Buffer, offset: number): number {
  return Number(buf.readBigUInt64LE(offset));
}

function checkLayout(buf: Buffer, layout: StructLayout): void {
  if (buf.length !== layout.size) throw new Error(`struct ${layout.name}: ${buf.length} bytes, need ${layout.size}`);
}

/** The sum of the per-CPU values of one tcp_counters entry. */
export function sumTcpCounters(slots: Buffer[]): TcpCounters {
  const m = TCP_COUNTERS.members;
  const total: TcpCounters = { retransmits: 0, openedActive: 0, openedPassive: 0, closed: 0, reset: 0, failed: 0 };
  for (const slot of slots) {
    checkLayout(slot, TCP_COUNTERS);
    total.retransmits += u64(slot, m.retransmits!);
    total.openedActive += u64(slot, m.opened_active!);
    total.openedPassive += u64(slot, m.opened_passive!);
    total.closed += u64(slot, m.closed!);
    total.reset += u64(slot, m.reset!);
    total.failed += u64(slot, m.failed!);
  }
  return total;
}

/** The sum of the per-CPU values of one tcp_rtt entry. */
export function sumRttHistogram(slots: Buffer[]): RttHistogram {
  const m = TCP_RTT_HIST.members;
  const total: RttHistogram = { count: 0, sumUs: 0, log2Us: new Array<number>(RTT_BUCKETS).fill(0) };
  for (const slot of slots) {
    checkLayout(slot, TCP_RTT_HIST);
    total.count += u64(slot, m.count!);
    total.sumUs += u64(slot, m.sum_us!);
    for (let i = 0; i < RTT_BUCKETS; i++) total.log2Us[i]! += u64(slot, m.log2_us! + i * U64_BYTES);
  }
  return total;
}

/** The sum of the per-CPU values of one trace_stats slot. */
export function sumTraceStat(slots: Buffer[]): number {
  return slots.reduce((sum, slot) => sum + u64(slot, 0), 0);
}

/**
 * An encoded per-CPU tcp_counters slot (tests and the mirror's own checks;
 * the programs write these).
 */
export function encodeTcpCounters(c: TcpCounters): Buffer {
  const m = TCP_COUNTERS.members;
  const buf = Buffer.alloc(TCP_COUNTERS.size);
  buf.writeBigUInt64LE(BigInt(c.retransmits), m.retransmits!);
  buf.writeBigUInt64LE(BigInt(c.openedActive), m.opened_active!);
  buf.writeBigUInt64LE(BigInt(c.openedPassive), m.opened_passive!);
  buf.writeBigUInt64LE(BigInt(c.closed), m.closed!);
  buf.writeBigUInt64LE(BigInt(c.reset), m.reset!);
  buf.writeBigUInt64LE(BigInt(c.failed), m.failed!);
  return buf;
}

/** An encoded per-CPU tcp_rtt_hist slot (tests). */
export function encodeRttHistogram(h: RttHistogram): Buffer {
  const m = TCP_RTT_HIST.members;
  const buf = Buffer.alloc(TCP_RTT_HIST.size);
  buf.writeBigUInt64LE(BigInt(h.count), m.count!);
  buf.writeBigUInt64LE(BigInt(h.sumUs), m.sum_us!);
  h.log2Us.forEach((n, i) => buf.writeBigUInt64LE(BigInt(n), m.log2_us! + i * U64_BYTES));
  return buf;
}
