/**
 * The cost of observability on pod-to-pod traffic, all of it against none:
 * "on" is what the agent runs by default (the TCP health tracing programs
 * attached, and the datapath's L7 check handing DNS/HTTP messages up to the
 * flow records), "off" is --tcp-health off with --l7 off (programs detached,
 * datapath_config.l7_off set: not even the payload check runs). The same two
 * pods of a Sluice local cluster, alternating on, off, off, on, ... so that
 * drift hits both alike; ratios pair by pair, medians printed (the issue asks
 * for at least 0.95). Figures: connection rate with a plain request and with
 * an HTTP/1.1 request line (each connection then hands up two L7 messages,
 * the heaviest load for the L7 path: most of them past the L7 rate limit,
 * counted as lost), 1 and 8 in flight; and iperf3 throughput, 1 stream.
 *
 * Then, with observability on: the per-packet cost of from_pod and to_pod
 * with the L7 check against without (kernel BPF statistics), and the flow
 * records per second the agent takes before the datapath starts counting
 * losses (HTTP connections at rising rates).
 *
 * usage (root, after make): node bench/observability-overhead.ts [--rounds 4] [--seconds 2]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DATAPATH_CONFIG, decodeCounterValue, COUNTER_NAMES } from '../datapath/abi.ts';
import { BpfMap } from '../datapath/bpf-map.ts';
import { traceObjectBytes } from '../datapath/bpf-object.ts';
import { cgroup2Root, loadTrace } from '../datapath/trace-loader.ts';
import { BenchCluster, namespace, pod } from './bench-cluster.ts';
import { cleanupNow, onCleanup } from './cleanup.ts';
import { diffStats, progStats, withBpfStats, type ProgStats as BpfProgStats } from './bpf-stats.ts';
import { buildNetTool, connectionRate, startServers, throughputGbps } from './net-tool.ts';
import { fmt, machine, median, round, table } from './stats.ts';

const NAMESPACE = 'bench';
const FIGURES = ['conn/s x1', 'conn/s x8', 'HTTP conn/s x1', 'HTTP conn/s x8', 'Gbit/s 1 stream'] as const;
type Figure = (typeof FIGURES)[number];

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '4' }, seconds: { type: 'string', default: '2' } } });
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);

const tool = buildNetTool();
const cluster = new BenchCluster();
const empty = () => Object.fromEntries(FIGURES.map((f) => [f, [] as number[]])) as Record<Figure, number[]>;
const samples = { on: empty(), off: empty() };
const startedAt = new Date();
const PROGRAMS = ['from_pod', 'to_pod'] as const;
type ProgStats = BpfProgStats<(typeof PROGRAMS)[number]>;
let perPacket: Record<'l7On' | 'l7Off', ProgStats> | null = null;
const sustained: { offeredConnPerS: number; records: number; recordsPerS: number; lost: number }[] = [];
/** The agent's CPU time (user + system) per connection of the connection-rate runs, µs, per mode. */
const agentCpu = { on: [] as number[], off: [] as number[] };
const CLOCK_TICKS_PER_S = 100;

/** user + system CPU seconds of a process so far (/proc/PID/stat). */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/** Total of a datapath counter (per CPU values summed), from the pinned counters map. */
function counterPackets(counters: BpfMap, name: string): number {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(COUNTER_NAMES.indexOf(name as (typeof COUNTER_NAMES)[number]));
  return counters.lookupPerCpu(key).reduce((n, v) => n + Number(decodeCounterValue(v).packets), 0);
}

try {
  console.error(`setting up a Sluice local cluster (${cluster.podCIDR}) with two pods`);
  cluster.up();
  cluster.apply([namespace(NAMESPACE), pod(NAMESPACE, 'client', { role: 'client' }), pod(NAMESPACE, 'server', { app: 'server' })]);
  const pods = new Map(cluster.pods().map((p) => [p.metadata.name, p]));
  const clientNs = pods.get('client')!.metadata.annotations['sluice.dev/netns']!;
  const serverNs = pods.get('server')!.metadata.annotations['sluice.dev/netns']!;
  const serverIp = pods.get('server')!.status.podIP;
  await startServers(tool, serverNs);
  const agentPid = cluster.agentPid();
  const traceDir = path.join(cluster.bpfDir, 'trace');
  const config = BpfMap.openPinned(path.join(cluster.bpfDir, 'maps', 'config'), 'config', 4, DATAPATH_CONFIG.size);
  const counters = BpfMap.openPinned(path.join(cluster.bpfDir, 'maps', 'counters'), 'counters', 4, 16, true);
  const zero = Buffer.alloc(4);
  const setL7 = (on: boolean) => {
    const v = Buffer.from(config.lookup(zero)!);
    v.writeUInt32LE(on ? 0 : 1, DATAPATH_CONFIG.members.l7_off!);
    config.update(zero, v);
  };
  onCleanup('L7 capture back on', () => setL7(true));
  const setTracing = (on: boolean) => {
    const trace = loadTrace({ pinDir: traceDir, objectBytes: traceObjectBytes(), cgroupRoot: cgroup2Root(), attach: on });
    trace.close();
    if (on !== (trace.links.length === 3)) throw new Error(`tracing ${on ? 'on' : 'off'}: links pinned are ${trace.links.join(', ') || 'none'}`);
  };
  const measure = (mode: 'on' | 'off') => {
    setTracing(mode === 'on');
    setL7(mode === 'on');
    const s = samples[mode];
    const cpuBefore = cpuSeconds(agentPid);
    let connections = 0;
    for (const k of [1, 8]) {
      const plain = connectionRate(tool, clientNs, serverIp, SECONDS, k);
      const http = connectionRate(tool, clientNs, serverIp, SECONDS, k, { http: true });
      s[`conn/s x${k}` as Figure].push(plain.perSecond);
      s[`HTTP conn/s x${k}` as Figure].push(http.perSecond);
      connections += plain.connections + http.connections;
    }
    agentCpu[mode].push(((cpuSeconds(agentPid) - cpuBefore) * 1e6) / connections);
    s['Gbit/s 1 stream'].push(throughputGbps(clientNs, serverIp, SECONDS, 1));
    console.error(`  observability ${mode.padEnd(3)} ${FIGURES.map((f) => `${fmt(s[f].at(-1)!, f.startsWith('Gbit') ? 2 : 0)} ${f}`).join(', ')}`);
  };
  for (let r = 0; r < ROUNDS; r++) {
    console.error(`round ${r + 1}/${ROUNDS}`);
    for (const mode of r % 2 ? (['off', 'on'] as const) : (['on', 'off'] as const)) measure(mode);
  }
  setTracing(true);

  // The L7 check's own cost per packet: from_pod and to_pod over the same HTTP connection run, L7 on and off.
  const progsDir = path.join(cluster.bpfDir, 'progs');
  const runWith = (on: boolean) => {
    setL7(on);
    const a = progStats(progsDir, PROGRAMS);
    connectionRate(tool, clientNs, serverIp, SECONDS, 8, { http: true });
    throughputGbps(clientNs, serverIp, SECONDS, 1);
    return diffStats(a, progStats(progsDir, PROGRAMS));
  };
  perPacket = withBpfStats(() => ({ l7On: runWith(true), l7Off: runWith(false) }));
  setL7(true);

  // Records per second before losses: paced HTTP connections (2 L7 records and 1 verdict record each).
  for (const inflight of [1, 2, 4, 8]) {
    const lostBefore = counterPackets(counters, 'EVENTS_LOST');
    const r = connectionRate(tool, clientNs, serverIp, SECONDS, inflight, { http: true });
    await new Promise((res) => setTimeout(res, 300));
    const lost = counterPackets(counters, 'EVENTS_LOST') - lostBefore;
    const records = r.connections * 3 - lost;
    sustained.push({ offeredConnPerS: round(r.perSecond), records, recordsPerS: round(records / SECONDS), lost });
    console.error(`  ${inflight} in flight: ${fmt(r.perSecond, 0)} HTTP conn/s, ${fmt(r.perSecond * 3, 0)} events/s offered, ${lost} lost`);
  }
} finally {
  cleanupNow();
}

const ratio = (f: Figure) => median(samples.on[f].map((on, i) => on / samples.off[f][i]!));
console.log(`Observability (TCP health tracing + L7 check) on vs off: ${ROUNDS} rounds, ${SECONDS} s each figure, medians`);
console.log(
  table(
    ['figure', 'on', 'off', 'ratio (pairwise median)'],
    FIGURES.map((f) => [f, fmt(median(samples.on[f]), f.startsWith('Gbit') ? 2 : 0), fmt(median(samples.off[f]), f.startsWith('Gbit') ? 2 : 0), fmt(ratio(f), 3)]),
  ),
);
console.log(`the agent's CPU per connection (the connection-rate runs): ${fmt(median(agentCpu.on), 1)} µs on, ${fmt(median(agentCpu.off), 1)} µs off`);
if (perPacket) {
  const p = perPacket;
  console.log('\nthe datapath programs per packet, HTTP connections then a stream (kernel BPF statistics)');
  console.log(
    table(
      ['program', 'ns/run, L7 check on', 'ns/run, L7 check off', 'difference'],
      PROGRAMS.map((n) => {
        const on = p.l7On[n].ns / p.l7On[n].runs;
        const off = p.l7Off[n].ns / p.l7Off[n].runs;
        return [n, fmt(on, 0), fmt(off, 0), fmt(on - off, 0)];
      }),
    ),
  );
}
console.log('\nflow records the agent takes, by offered load (3 events per HTTP connection: a verdict, a request, a response)');
console.log(table(['offered conn/s', 'records/s kept', 'events lost'], sustained.map((s) => [fmt(s.offeredConnPerS, 0), fmt(s.recordsPerS, 0), String(s.lost)])));
console.log(
  JSON.stringify({
    bench: 'observability-overhead',
    startedAt: startedAt.toISOString(),
    machine: machine(),
    rounds: ROUNDS,
    seconds: SECONDS,
    perPacket,
    sustained,
    agentCpuUsPerConnection: { on: round(median(agentCpu.on), 1), off: round(median(agentCpu.off), 1) },
    medians: Object.fromEntries(FIGURES.map((f) => [f, { on: round(median(samples.on[f])), off: round(median(samples.off[f])), ratio: round(ratio(f), 3) }])),
  }),
);
