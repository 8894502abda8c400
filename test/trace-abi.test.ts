// The TS mirror of the tracing object (datapath/trace-abi.ts) must match bpf/trace.h as the
// compiler laid it out: read back through the BTF of the object the Makefile builds, so a
// change on either side alone fails here. No root: clang and bpftool only.
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { TRACE_OBJECT, withMakefileBuild } from './support/bpf-build.ts';
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
import type { StructLayout } from '../datapath/abi.ts';

const BITS_PER_BYTE = 8;

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  values?: { name: string; val: number }[];
  vars?: { name: string; type_id: number }[];
}

let types: BtfType[] = [];

beforeAll(() => {
  types = withMakefileBuild((object) => {
    const json = execFileSync('bpftool', ['btf', 'dump', 'file', object, 'format', 'raw', '-j'], { encoding: 'utf8' });
    return (JSON.parse(json) as { types: BtfType[] }).types;
  }, TRACE_OBJECT);
});

function btfType(kind: string, name: string): BtfType {
  const found = types.find((t) => t.kind === kind && t.name === name);
  if (!found) throw new Error(`${kind} ${name} not in the BTF of the tracing object`);
  return found;
}

function byId(id: number): BtfType {
  const found = types.find((t) => t.id === id);
  if (!found) throw new Error(`BTF type ${id} missing`);
  return found;
}

function layoutFromBtf(name: string): StructLayout {
  const struct = btfType('STRUCT', name);
  const members: Record<string, number> = {};
  for (const m of struct.members ?? []) {
    expect(m.bits_offset % BITS_PER_BYTE, `${name}.${m.name} is a bit field`).toBe(0);
    members[m.name] = m.bits_offset / BITS_PER_BYTE;
  }
  return { name, size: struct.size ?? -1, members };
}

function enumFromBtf(name: string): Record<string, number> {
  return Object.fromEntries((btfType('ENUM', name).values ?? []).map((v) => [v.name, v.val]));
}

/** The BTF struct a map definition in .maps declares: its members are __uint/__type pointers. */
function mapDefinition(name: string): Record<string, BtfType> {
  const maps = btfType('DATASEC', '.maps');
  const v = (maps.vars ?? []).map((x) => byId(x.type_id)).find((t) => t.name === name);
  if (!v || v.type_id === undefined) throw new Error(`map ${name} not in .maps`);
  const struct = byId(v.type_id);
  return Object.fromEntries((struct.members ?? []).map((m) => [m.name, byId(byId(m.type_id).type_id!)]));
}

/** A `__uint(field, N)` of a map definition: an array of N elements behind the pointer. */
function uintOf(def: Record<string, BtfType>, field: string): number {
  const t = def[field];
  if (!t || t.kind !== 'ARRAY') throw new Error(`map field ${field} is not __uint()`);
  return t.nr_elems!;
}

/** sizeof the `__type(field, T)` of a map definition. */
function sizeOfType(def: Record<string, BtfType>, field: string): number {
  let t = def[field]!;
  while (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE') t = byId(t.type_id!);
  if (t.size === undefined) throw new Error(`no size for ${field}`);
  return t.size;
}

describe('trace-abi.ts mirrors bpf/trace.h', () => {
  for (const mirror of [TCP_COUNTERS, TCP_RTT_HIST]) {
    it(`struct ${mirror.name} has the same size, members and offsets`, () => {
      const actual = layoutFromBtf(mirror.name);
      expect(mirror.size, `sizeof(struct ${mirror.name})`).toBe(actual.size);
      expect(Object.keys(mirror.members)).toEqual(Object.keys(actual.members));
      expect(mirror.members).toEqual(actual.members);
    });
  }

  it('enum sluice_trace_limits has the limits of trace-abi.ts', () => {
    expect(enumFromBtf('sluice_trace_limits')).toEqual({ SLUICE_TRACE_MAX_NETNS: TRACE_MAX_NETNS, SLUICE_RTT_BUCKETS: RTT_BUCKETS });
  });

  it('enum sluice_trace_stat has the indexes of TraceStat', () => {
    expect(enumFromBtf('sluice_trace_stat')).toEqual({
      SLUICE_TRACE_STAT_COUNTERS_FULL: TraceStat.COUNTERS_FULL,
      SLUICE_TRACE_STAT_RTT_FULL: TraceStat.RTT_FULL,
      SLUICE_TRACE_STAT_MAX: TRACE_STAT_MAX,
    });
  });

  it('the maps have the key and value sizes and capacities the agent opens them with', () => {
    const counters = mapDefinition('tcp_counters');
    expect(sizeOfType(counters, 'key')).toBe(NETNS_KEY_SIZE);
    expect(sizeOfType(counters, 'value')).toBe(TCP_COUNTERS.size);
    expect(uintOf(counters, 'max_entries')).toBe(TRACE_MAX_NETNS);
    const rtt = mapDefinition('tcp_rtt');
    expect(sizeOfType(rtt, 'key')).toBe(NETNS_KEY_SIZE);
    expect(sizeOfType(rtt, 'value')).toBe(TCP_RTT_HIST.size);
    expect(uintOf(rtt, 'max_entries')).toBe(TRACE_MAX_NETNS);
    const stats = mapDefinition('trace_stats');
    expect(sizeOfType(stats, 'value')).toBe(TRACE_STAT_VALUE_SIZE);
    expect(uintOf(stats, 'max_entries')).toBe(TRACE_STAT_MAX);
  });

  it('a layout that differs from the compiled one fails the comparison', () => {
    const actual = layoutFromBtf('tcp_counters');
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
