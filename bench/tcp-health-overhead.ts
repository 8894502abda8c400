/**
 * The cost of TCP health per pod (bpf/trace.c: tp_btf on tcp_retransmit_skb
 * and inet_sock_set_state, sockops RTT on the cgroup v2 root) on pod-to-pod
 * traffic: the same two pods of a Sluice local cluster, measured with the
 * tracing programs attached and detached, alternating (on, off, off, on, ...)
 * so that drift hits both alike. Figures: connection rate (a new connection
 * per request, 1 and 8 in flight: every connection is 2 state changes on each
 * side, the heaviest load for tcp_state) and iperf3 throughput (1 stream: an
 * RTT sample per ACK, the heaviest load for the sockops program). The ratio
 * on/off is taken pair by pair (each round's on against its off), and its
 * median printed; the issue asks for at least 0.95.
 *
 * Attaching and detaching is what the agent does with --tcp-health on|off
 * (datapath/trace-loader.ts on the agent's pins), done here between runs
 * without restarting the agent.
 *
 * On a shared 2-core machine the throughput figures drift more than the
 * programs cost, so the programs' own cost is measured too, with the
 * kernel's BPF statistics (kernel.bpf_stats_enabled, set for the run and put
 * back): nanoseconds per run of each program, and per connection and per
 * MB streamed, over one extra connection-rate and throughput run.
 *
 * usage (root, after make): node bench/tcp-health-overhead.ts [--rounds 4] [--seconds 2]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { traceObjectBytes } from '../datapath/bpf-object.ts';
import { cgroup2Root, loadTrace } from '../datapath/trace-loader.ts';
import { BenchCluster, namespace, pod } from './bench-cluster.ts';
import { cleanupNow } from './cleanup.ts';
import { diffStats, progStats, withBpfStats, type ProgStats as BpfProgStats } from './bpf-stats.ts';
import { buildNetTool, connectionRate, startServers, throughputGbps } from './net-tool.ts';
import { fmt, machine, median, round, table } from './stats.ts';

const NAMESPACE = 'bench';
const INFLIGHT = [1, 8] as const;
const FIGURES = ['conn/s x1', 'conn/s x8', 'Gbit/s 1 stream'] as const;
type Figure = (typeof FIGURES)[number];

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '4' }, seconds: { type: 'string', default: '2' } } });
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);

const tool = buildNetTool();
const cluster = new BenchCluster();
const samples: Record<'on' | 'off', Record<Figure, number[]>> = {
  on: { 'conn/s x1': [], 'conn/s x8': [], 'Gbit/s 1 stream': [] },
  off: { 'conn/s x1': [], 'conn/s x8': [], 'Gbit/s 1 stream': [] },
};
const startedAt = new Date();
const PROGRAMS = ['tcp_state', 'tcp_retransmit', 'tcp_rtt_sockops'] as const;
type ProgStats = BpfProgStats<(typeof PROGRAMS)[number]>;
let cost: { perConnection: ProgStats; connections: number; perStream: ProgStats; megabytes: number } | null = null;

try {
  console.error(`setting up a Sluice local cluster (${cluster.podCIDR}) with two pods`);
  cluster.up();
  cluster.apply([namespace(NAMESPACE), pod(NAMESPACE, 'client', { role: 'client' }), pod(NAMESPACE, 'server', { app: 'server' })]);
  const pods = new Map(cluster.pods().map((p) => [p.metadata.name, p]));
  const clientNs = pods.get('client')!.metadata.annotations['sluice.dev/netns']!;
  const serverNs = pods.get('server')!.metadata.annotations['sluice.dev/netns']!;
  const serverIp = pods.get('server')!.status.podIP;
  await startServers(tool, serverNs);
  const traceDir = path.join(cluster.bpfDir, 'trace');
  if (!fs.existsSync(path.join(traceDir, 'links'))) throw new Error(`no tracing pins under ${traceDir}: is the agent running with --tcp-health on?`);
  const setTracing = (on: boolean) => {
    const trace = loadTrace({ pinDir: traceDir, objectBytes: traceObjectBytes(), cgroupRoot: cgroup2Root(), attach: on });
    trace.close();
    if (on !== (trace.links.length === 3)) throw new Error(`tracing ${on ? 'on' : 'off'}: links pinned are ${trace.links.join(', ') || 'none'}`);
  };
  const measure = (mode: 'on' | 'off') => {
    setTracing(mode === 'on');
    const s = samples[mode];
    for (const k of INFLIGHT) s[`conn/s x${k}`].push(connectionRate(tool, clientNs, serverIp, SECONDS, k).perSecond);
    s['Gbit/s 1 stream'].push(throughputGbps(clientNs, serverIp, SECONDS, 1));
    console.error(`  tracing ${mode.padEnd(3)} ${FIGURES.map((f) => `${fmt(s[f].at(-1)!, f.startsWith('Gbit') ? 2 : 0)} ${f}`).join(', ')}`);
  };
  for (let r = 0; r < ROUNDS; r++) {
    console.error(`round ${r + 1}/${ROUNDS}`);
    for (const mode of r % 2 ? (['off', 'on'] as const) : (['on', 'off'] as const)) measure(mode);
  }
  setTracing(true); // as the agent left it

  // The programs' own cost, from the kernel's BPF statistics over one more run of each kind.
  const progsDir = path.join(traceDir, 'progs');
  const [s0, s1, s2, crr, gbps] = withBpfStats(() => {
    const a = progStats(progsDir, PROGRAMS);
    const c = connectionRate(tool, clientNs, serverIp, SECONDS, 8);
    const b = progStats(progsDir, PROGRAMS);
    const g = throughputGbps(clientNs, serverIp, SECONDS, 1);
    return [a, b, progStats(progsDir, PROGRAMS), c, g] as const;
  });
  cost = { perConnection: diffStats(s0, s1), connections: crr.connections, perStream: diffStats(s1, s2), megabytes: (gbps * 1e3 * (SECONDS + 1)) / 8 };
} finally {
  cleanupNow();
}

const ratio = (f: Figure) => median(samples.on[f].map((on, i) => on / samples.off[f][i]!));
console.log(`TCP health tracing, attached vs detached: ${ROUNDS} rounds, ${SECONDS} s each figure, medians`);
console.log(
  table(
    ['figure', 'attached', 'detached', 'ratio (pairwise median)'],
    FIGURES.map((f) => [f, fmt(median(samples.on[f]), f.startsWith('Gbit') ? 2 : 0), fmt(median(samples.off[f]), f.startsWith('Gbit') ? 2 : 0), fmt(ratio(f), 3)]),
  ),
);
if (cost) {
  const c = cost;
  console.log(`\nthe programs' own cost (kernel BPF statistics): ${c.connections} connections, then ${fmt(c.megabytes, 0)} MB streamed`);
  console.log(
    table(
      ['program', 'ns per run', 'runs per connection', 'ns per connection', 'runs per MB', 'ns per MB'],
      PROGRAMS.map((n) => {
        const p = c.perConnection[n];
        const q = c.perStream[n];
        const all = { runs: p.runs + q.runs, ns: p.ns + q.ns };
        return [n, fmt(all.ns / all.runs, 0), fmt(p.runs / c.connections, 2), fmt(p.ns / c.connections, 0), fmt(q.runs / c.megabytes, 1), fmt(q.ns / c.megabytes, 0)];
      }),
    ),
  );
}
console.log(
  JSON.stringify({
    bench: 'tcp-health-overhead',
    startedAt: startedAt.toISOString(),
    machine: machine(),
    rounds: ROUNDS,
    seconds: SECONDS,
    programCost: cost,
    medians: Object.fromEntries(FIGURES.map((f) => [f, { attached: round(median(samples.on[f])), detached: round(median(samples.off[f])), ratio: round(ratio(f), 3) }])),
  }),
);
