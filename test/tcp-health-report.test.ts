// TCP health per pod without a kernel: the netns index follows endpoint syncs (stat once, at
// registration; forget a namespace's entries when its last endpoint leaves), the report sums the
// per-CPU map values and attributes them to pods, and the metrics expose them, the RTT histogram
// with cumulative power-of-two buckets. The kernel side: test/tcp-health.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import type { Endpoint } from '../contract/api-types.ts';
import { RTT_BUCKETS, decodeNetnsKey, encodeNetnsKey, encodeRttHistogram, encodeTcpCounters, type TcpCounters } from '../datapath/trace-abi.ts';
import { cgroup2Root, cgroup2RootUnder, type TraceMaps } from '../datapath/trace-loader.ts';
import { TcpHealth } from '../agent/tcp-health.ts';
import { registerTcpHealthMetrics } from '../agent/metrics/tcp-health.ts';
import { rttQuantileUs } from '../cli/tcp-health.ts';
import { parseExposition, valueOf } from './support/prometheus-text.ts';

const CPUS = 2;
const OWN_NETNS = 4026531840;

/** A per-CPU hash map in memory, with the BpfMap methods TcpHealth uses. */
class FakePerCpuMap {
  readonly entries = new Map<number, Buffer[]>();
  keys(): Buffer[] {
    return [...this.entries.keys()].map(encodeNetnsKey);
  }
  lookupPerCpu(key: Buffer): Buffer[] {
    return this.entries.get(decodeNetnsKey(key)) ?? [];
  }
  delete(key: Buffer): boolean {
    return this.entries.delete(decodeNetnsKey(key));
  }
}

function counters(c: Partial<TcpCounters>): TcpCounters {
  return { retransmits: 0, openedActive: 0, openedPassive: 0, closed: 0, reset: 0, failed: 0, ...c };
}

function histogram(samplesUs: number[]): Buffer {
  const log2Us = new Array<number>(RTT_BUCKETS).fill(0);
  for (const us of samplesUs) log2Us[us < 2 ? 0 : Math.floor(Math.log2(us))]! += 1;
  return encodeRttHistogram({ count: samplesUs.length, sumUs: samplesUs.reduce((a, b) => a + b, 0), log2Us });
}

function endpoint(id: number, pod: string, netns: string): Endpoint {
  return { id, identity: 0, createdAt: 0, containerID: `c${id}`, ifname: 'eth0', namespace: 'x', pod, netns, hostIfname: `h${id}`, hostIfindex: id, mac: '', hostMac: '', ips: [] };
}

function setup() {
  const maps = { tcp_counters: new FakePerCpuMap(), tcp_rtt: new FakePerCpuMap(), trace_stats: new FakePerCpuMap() };
  const stats = [0, 0];
  (maps.trace_stats as unknown as { lookupPerCpu: (key: Buffer) => Buffer[] }).lookupPerCpu = (key) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(stats[key.readUInt32LE(0)] ?? 0));
    return Array.from({ length: CPUS }, (_, cpu) => (cpu === 0 ? b : Buffer.alloc(8)));
  };
  const inodes: Record<string, number> = { '/proc/self/ns/net': OWN_NETNS, '/run/netns/a': 1001, '/run/netns/b': 1002, '/run/netns/a2': 1001 };
  const statted: string[] = [];
  const logged: string[] = [];
  const health = new TcpHealth(
    { maps: maps as unknown as TraceMaps, links: () => ['tcp-retransmit', 'tcp-rtt', 'tcp-state'] },
    {
      log: (m) => logged.push(m),
      inodeOf: (path) => {
        statted.push(path);
        const inode = inodes[path];
        if (inode === undefined) throw new Error(`ENOENT: ${path}`);
        return inode;
      },
    },
  );
  return { maps, stats, health, statted, logged };
}

describe('TcpHealth', () => {
  it("stats a pod's netns once, when it registers, whatever the number of later syncs", () => {
    const { health, statted } = setup();
    const a = endpoint(1, 'a', '/run/netns/a');
    const b = endpoint(2, 'b', '/run/netns/b');
    health.track([a]);
    health.track([a, b]);
    health.track([a, b]);
    expect(statted.filter((p) => p.startsWith('/run/'))).toEqual(['/run/netns/a', '/run/netns/b']);
  });

  it('sums per-CPU values and attributes them by netns inode; the rest is unattributed', () => {
    const { maps, stats, health } = setup();
    health.track([endpoint(1, 'a', '/run/netns/a'), endpoint(2, 'b', '/run/netns/b')]);
    maps.tcp_counters.entries.set(1001, [encodeTcpCounters(counters({ retransmits: 2, openedActive: 3 })), encodeTcpCounters(counters({ retransmits: 1, closed: 3 }))]);
    maps.tcp_counters.entries.set(OWN_NETNS, [encodeTcpCounters(counters({ openedPassive: 7, reset: 1 }))]);
    maps.tcp_rtt.entries.set(1001, [histogram([30, 40]), histogram([50, 1])]);
    stats[1] = 4;
    const report = health.report();
    expect(report.enabled).toBe(true);
    expect(report.pods.map((p) => p.pod)).toEqual(['a', 'b']);
    const [a, b] = report.pods;
    expect(a).toMatchObject({ netnsInode: 1001, retransmits: 3, connections: { openedActive: 3, openedPassive: 0, closed: 3, reset: 0, failed: 0 } });
    expect(a!.rtt).toEqual({
      samples: 4,
      sumUs: 121,
      meanUs: 30.3,
      buckets: [
        { fromUs: 0, toUs: 2, count: 1 },
        { fromUs: 16, toUs: 32, count: 1 },
        { fromUs: 32, toUs: 64, count: 2 },
      ],
    });
    expect(b).toMatchObject({ netnsInode: 1002, retransmits: 0, rtt: { samples: 0, meanUs: null, buckets: [] } });
    expect(report.unattributed).toMatchObject({ netns: 1, retransmits: 0, connections: { openedPassive: 7, reset: 1 } });
    expect(report.lost).toEqual({ counters: 0, rtt: 4 });
  });

  it("forgets a namespace's entries when its last endpoint leaves, not while another interface of the pod stays", () => {
    const { maps, health } = setup();
    const a = endpoint(1, 'a', '/run/netns/a');
    const a2 = { ...endpoint(3, 'a', '/run/netns/a2'), ifname: 'net1' };
    health.track([a, a2]);
    maps.tcp_counters.entries.set(1001, [encodeTcpCounters(counters({ retransmits: 1 }))]);
    maps.tcp_rtt.entries.set(1001, [histogram([10])]);
    health.track([a2]);
    expect(maps.tcp_counters.entries.has(1001)).toBe(true);
    expect(health.report().pods).toHaveLength(1);
    health.track([]);
    expect(maps.tcp_counters.entries.has(1001)).toBe(false);
    expect(maps.tcp_rtt.entries.has(1001)).toBe(false);
  });

  it("after a restart, the first sync keeps the pods' counts and the node's, and drops those of pods gone meanwhile", () => {
    const { maps, health } = setup();
    maps.tcp_counters.entries.set(1001, [encodeTcpCounters(counters({ retransmits: 5 }))]);
    maps.tcp_counters.entries.set(OWN_NETNS, [encodeTcpCounters(counters({ retransmits: 6 }))]);
    maps.tcp_counters.entries.set(999, [encodeTcpCounters(counters({ retransmits: 7 }))]);
    health.track([endpoint(1, 'a', '/run/netns/a')]);
    expect([...maps.tcp_counters.entries.keys()].sort()).toEqual([1001, OWN_NETNS]);
    expect(health.report().pods[0]!.retransmits).toBe(5);
  });

  it('a netns that cannot be stat-ed is logged, its pod listed with zeros, and nothing fails', () => {
    const { health, logged } = setup();
    health.track([endpoint(1, 'gone', '/run/netns/missing')]);
    expect(logged.join('\n')).toMatch(/gone.*unreadable/);
    expect(health.report().pods).toMatchObject([{ pod: 'gone', netnsInode: 0, retransmits: 0 }]);
  });

  it('without tracing programs the report says why', () => {
    const health = new TcpHealth(null, { reason: 'tracing programs not loaded: EPERM', log: () => {} });
    health.track([endpoint(1, 'a', '/nonexistent')]);
    expect(health.report()).toMatchObject({ enabled: false, reason: 'tracing programs not loaded: EPERM', pods: [] });
  });
});

describe('TCP health metrics', () => {
  it('expose per-pod counters by event and the RTT histogram with cumulative power-of-two buckets in seconds', async () => {
    const { maps, health } = setup();
    health.track([endpoint(1, 'a', '/run/netns/a')]);
    maps.tcp_counters.entries.set(1001, [encodeTcpCounters(counters({ retransmits: 4, openedActive: 2, failed: 1 }))]);
    maps.tcp_rtt.entries.set(1001, [histogram([3, 3, 100, 5000])]);
    const registry = new Registry();
    registerTcpHealthMetrics(registry, () => health.report());
    const e = parseExposition(await registry.metrics());
    const pod = { namespace: 'x', pod: 'a' };
    expect(valueOf(e, 'sluice_pod_tcp_retransmits_total', pod)).toBe(4);
    expect(valueOf(e, 'sluice_pod_tcp_connections_total', { ...pod, event: 'opened_active' })).toBe(2);
    expect(valueOf(e, 'sluice_pod_tcp_connections_total', { ...pod, event: 'failed' })).toBe(1);
    expect(valueOf(e, 'sluice_pod_tcp_connections_total', { ...pod, event: 'reset' })).toBe(0);
    expect(e.types.get('sluice_pod_tcp_rtt_seconds')).toBe('histogram');
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_bucket', { ...pod, le: '0.000002' })).toBe(0);
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_bucket', { ...pod, le: '0.000004' })).toBe(2);
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_bucket', { ...pod, le: '0.000128' })).toBe(3);
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_bucket', { ...pod, le: '0.008192' })).toBe(4);
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_bucket', { ...pod, le: '+Inf' })).toBe(4);
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_sum', pod)).toBeCloseTo(0.005106, 9);
    expect(valueOf(e, 'sluice_pod_tcp_rtt_seconds_count', pod)).toBe(4);
    expect(valueOf(e, 'sluice_tcp_health_events_lost_total', { map: 'tcp_rtt' })).toBe(0);
  });

  it('the CLI reads quantiles as the upper bound of the bucket that holds them', () => {
    const rtt = { samples: 4, sumUs: 0, meanUs: 0, buckets: [{ fromUs: 2, toUs: 4, count: 2 }, { fromUs: 64, toUs: 128, count: 1 }, { fromUs: 4096, toUs: 8192, count: 1 }] };
    expect(rttQuantileUs(rtt, 0.5)).toBe(4);
    expect(rttQuantileUs(rtt, 0.75)).toBe(128);
    expect(rttQuantileUs(rtt, 0.99)).toBe(8192);
    expect(rttQuantileUs({ samples: 0, sumUs: 0, meanUs: null, buckets: [] }, 0.5)).toBeNull();
  });
});

describe('the cgroup v2 root the RTT program attaches to', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-mountinfo-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  const mountinfo = (lines: string[]) => {
    const file = path.join(dir, `mountinfo-${++files}`);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    return file;
  };
  const PROC = '22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw';
  const V1 = '30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory';

  it('is the mount point of the hierarchy root: /sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on a pure v2 one', () => {
    expect(cgroup2Root(mountinfo([PROC, V1, '29 25 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate']))).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2Root(mountinfo([PROC, '29 25 0:25 / /sys/fs/cgroup rw,nosuid shared:5 - cgroup2 cgroup2 rw']))).toBe('/sys/fs/cgroup');
  });

  it('skips a bind mount of a sub-tree, reads escaped paths, and is null without cgroup2', () => {
    expect(cgroup2Root(mountinfo([PROC, '40 30 0:25 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw', '41 30 0:25 / /host/cgroup\\040v2 rw - cgroup2 cgroup2 rw']))).toBe('/host/cgroup v2');
    expect(cgroup2Root(mountinfo([PROC, V1]))).toBeNull();
  });

  it('--cgroup-root takes the directory when it is cgroup v2, else its unified/ (a hybrid host mounted whole)', () => {
    const pure = path.join(dir, 'pure');
    const hybrid = path.join(dir, 'hybrid');
    fs.mkdirSync(pure);
    fs.writeFileSync(path.join(pure, 'cgroup.controllers'), 'cpu io memory\n');
    fs.mkdirSync(path.join(hybrid, 'unified'), { recursive: true });
    fs.writeFileSync(path.join(hybrid, 'unified', 'cgroup.controllers'), '\n');
    expect(cgroup2RootUnder(pure)).toBe(pure);
    expect(cgroup2RootUnder(hybrid)).toBe(path.join(hybrid, 'unified'));
    expect(cgroup2RootUnder(path.join(dir, 'none'))).toBe(path.join(dir, 'none'));
  });
});
