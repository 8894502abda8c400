// The TS mirror of the tracing object (datapath/trace-abi.ts) must match bpf/trace.h as the
// compiler laid it out: read back through the BTF of the object the Makefile builds, so a
// change on either side alone fails here. No root: clang and bpftool only.
import { beforeAll, describe, expect, it } from 'vitest';
import { TRACE_OBJECT } from './support/bpf-build.ts';
import { btfOfMakefileBuild, expectSameLayout, type ObjectBtf } from './support/btf-layout.ts';
import {
  NETNS_KEY_SIZE,
  RTT_BUCKETS,
  TCP_COUNTERS,
  TCP_RTT_HIST,
  TRACE_MAX_NETNS,
  TRACE_STAT_MAX,
  TRACE_STAT_VALUE_SIZE,
  TraceStat,
  decodeNetnsKey,
  encodeNetnsKey,
  encodeRttHistogram,
  encodeTcpCounters,
  rttBucketUpperUs,
  sumRttHistogram,
  sumTcpCounters,
} from '../datapath/trace-abi.ts';

let btf: ObjectBtf;

beforeAll(() => {
  btf = btfOfMakefileBuild(TRACE_OBJECT);
});

describe('trace-abi.ts mirrors bpf/trace.h', () => {
  for (const mirror of [TCP_COUNTERS, TCP_RTT_HIST]) {
    it(`struct ${mirror.name} has the same size, members and offsets`, () => {
      expectSameLayout(btf.structLayout(mirror.name), mirror);
    });
  }

  it('enum sluice_trace_limits has the limits of trace-abi.ts', () => {
    expect(btf.enumValues('sluice_trace_limits')).toEqual({ SLUICE_TRACE_MAX_NETNS: TRACE_MAX_NETNS, SLUICE_RTT_BUCKETS: RTT_BUCKETS });
  });

  it('enum sluice_trace_stat has the indexes of TraceStat', () => {
    expect(btf.enumValues('sluice_trace_stat')).toEqual({
      SLUICE_TRACE_STAT_COUNTERS_FULL: TraceStat.COUNTERS_FULL,
      SLUICE_TRACE_STAT_RTT_FULL: TraceStat.RTT_FULL,
      SLUICE_TRACE_STAT_MAX: TRACE_STAT_MAX,
    });
  });

  it('the maps have the key and value sizes and capacities the agent opens them with', () => {
    const counters = btf.mapDefinition('tcp_counters');
    expect(btf.sizeOfType(counters, 'key')).toBe(NETNS_KEY_SIZE);
    expect(btf.sizeOfType(counters, 'value')).toBe(TCP_COUNTERS.size);
    expect(btf.uintOf(counters, 'max_entries')).toBe(TRACE_MAX_NETNS);
    const rtt = btf.mapDefinition('tcp_rtt');
    expect(btf.sizeOfType(rtt, 'key')).toBe(NETNS_KEY_SIZE);
    expect(btf.sizeOfType(rtt, 'value')).toBe(TCP_RTT_HIST.size);
    expect(btf.uintOf(rtt, 'max_entries')).toBe(TRACE_MAX_NETNS);
    const stats = btf.mapDefinition('trace_stats');
    expect(btf.sizeOfType(stats, 'value')).toBe(TRACE_STAT_VALUE_SIZE);
    expect(btf.uintOf(stats, 'max_entries')).toBe(TRACE_STAT_MAX);
  });

  it('a layout that differs from the compiled one fails the comparison', () => {
    const actual = btf.structLayout('tcp_counters');
    expect(actual.members).not.toEqual({ ...TCP_COUNTERS.members, reset: 40, failed: 32 });
  });
});

describe('decoding', () => {
  it('sums tcp_counters over CPUs, each field from its own offset', () => {
    const a = { retransmits: 1, openedActive: 2, openedPassive: 3, closed: 4, reset: 5, failed: 6 };
    const b = { retransmits: 10, openedActive: 20, openedPassive: 30, closed: 40, reset: 50, failed: 60 };
    expect(sumTcpCounters([encodeTcpCounters(a), encodeTcpCounters(b)])).toEqual({ retransmits: 11, openedActive: 22, openedPassive: 33, closed: 44, reset: 55, failed: 66 });
  });

  it('sums RTT histograms over CPUs', () => {
    const log2Us = new Array<number>(RTT_BUCKETS).fill(0);
    log2Us[4] = 3;
    log2Us[31] = 1;
    const h = { count: 4, sumUs: 100, log2Us };
    const sum = sumRttHistogram([encodeRttHistogram(h), encodeRttHistogram(h)]);
    expect(sum.count).toBe(8);
    expect(sum.sumUs).toBe(200);
    expect(sum.log2Us[4]).toBe(6);
    expect(sum.log2Us[31]).toBe(2);
    expect(() => sumRttHistogram([Buffer.alloc(8)])).toThrow(/tcp_rtt_hist/);
  });

  it('netns keys round-trip the full u32 inode range; bucket i ends at 2^(i+1) µs', () => {
    expect(decodeNetnsKey(encodeNetnsKey(4026531840))).toBe(4026531840);
    expect(rttBucketUpperUs(0)).toBe(2);
    expect(rttBucketUpperUs(9)).toBe(1024);
  });
});
