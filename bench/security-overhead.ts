/**
 * The cost of runtime security on what a pod runs: fork+exec per second in a
 * pod's network namespace (a shell loop running /bin/true, each iteration a
 * fork, an exec, a handful of opens and an exit) with the security object's
 * hooks attached, its events read and judged by the shipped rules as the
 * agent does, against detached; alternating on, off, off, on, ... and taken
 * pair by pair (the issue asks for at least 0.95). Then the programs' own
 * cost per event from the kernel's BPF statistics.
 *
 * The object is loaded into a pin directory of the bench's own, in a pod of
 * a Sluice local cluster (whose agent runs with security off).
 *
 * usage (root, after make): node bench/security-overhead.ts [--rounds 4] [--execs 2000]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadSecurity, securityObjectBytes } from '../datapath/security-loader.ts';
import { cgroup2Root } from '../datapath/trace-loader.ts';
import { SecuritySensor } from '../agent/security/sensor.ts';
import { defaultRulesSource, loadRuleSources, RuleEngine } from '../security/rules/index.ts';
import { BenchCluster, namespace, pod } from './bench-cluster.ts';
import { cleanupNow, onCleanup } from './cleanup.ts';
import { diffStats, progStats, withBpfStats } from './bpf-stats.ts';
import { fmt, machine, median, round, table } from './stats.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '4' }, execs: { type: 'string', default: '2000' } } });
const ROUNDS = Number(values.rounds);
const EXECS = Number(values.execs);
const PROGRAMS = ['sec_exec', 'sec_exit', 'sec_openat'] as const;

const cluster = new BenchCluster();
const samples = { on: [] as number[], off: [] as number[] };
const startedAt = new Date();
let perEvent: Record<string, { runs: number; ns: number }> | null = null;
let delivered = { events: 0, alerts: 0, lost: 0 };

/** Execs per second of a shell loop in netns. */
function execRate(netns: string): number {
  const script = `i=0; while [ $i -lt ${EXECS} ]; do /bin/true; i=$((i+1)); done`;
  const t0 = process.hrtime.bigint();
  const r = spawnSync('ip', ['netns', 'exec', netns, '/bin/sh', '-c', script], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`exec loop in ${netns} exited ${r.status}`);
  return EXECS / (Number(process.hrtime.bigint() - t0) / 1e9);
}

try {
  console.error(`setting up a Sluice local cluster (${cluster.podCIDR}) with one pod`);
  cluster.up();
  cluster.apply([namespace('bench'), pod('bench', 'runner', { app: 'runner' })]);
  const runner = cluster.pods().find((p) => p.metadata.name === 'runner')!;
  const netns = runner.metadata.annotations['sluice.dev/netns']!;
  const pinDir = path.join(cluster.bpfDir, 'bench-security');
  onCleanup(`remove ${pinDir}`, () => fs.rmSync(pinDir, { recursive: true, force: true }));
  const load = (attach: boolean) => loadSecurity({ pinDir, objectBytes: securityObjectBytes(), cgroupRoot: cgroup2Root(), attach });
  const security = load(true);
  onCleanup('detach the bench security programs', () => load(false).close());
  const engine = new RuleEngine(loadRuleSources([defaultRulesSource()]).rules, { hostname: 'bench' });
  const sensor = new SecuritySensor({ security, labels: () => ({ app: 'runner' }), log: (m) => console.error(m) });
  sensor.track([{ id: 1, identity: 0, createdAt: 0, containerID: 'bench', ifname: 'eth0', namespace: 'bench', pod: 'runner', netns: `/var/run/netns/${netns}`, hostIfname: '', hostIfindex: 1, mac: '', hostMac: '', ips: [] }]);
  sensor.subscribe((e) => {
    delivered.events++;
    delivered.alerts += engine.evaluate(e).length;
  });
  sensor.start();
  onCleanup('stop the sensor', () => sensor.stop());

  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
      load(mode === 'on').close();
      samples[mode].push(execRate(netns));
      sensor.poll();
      console.error(`  round ${r + 1} hooks ${mode.padEnd(3)} ${fmt(samples[mode].at(-1)!, 0)} fork+exec/s`);
    }
  }
  load(true).close();
  const progsDir = path.join(pinDir, 'progs');
  perEvent = withBpfStats(() => {
    const before = progStats(progsDir, PROGRAMS);
    execRate(netns);
    return diffStats(before, progStats(progsDir, PROGRAMS));
  });
  sensor.poll();
  delivered = { ...delivered, lost: sensor.stats().lost.total };
} finally {
  cleanupNow();
}

const ratio = median(samples.on.map((on, i) => on / samples.off[i]!));
console.log(`Runtime security hooks attached (events read and judged by the default rules) vs detached: ${ROUNDS} rounds of ${EXECS} fork+exec in a pod`);
console.log(table(['figure', 'hooks on', 'hooks off', 'ratio (pairwise median)'], [['fork+exec/s', fmt(median(samples.on), 0), fmt(median(samples.off), 0), fmt(ratio, 3)]]));
if (perEvent) {
  const p = perEvent;
  console.log(`\nthe programs' own cost over ${EXECS} more fork+exec (kernel BPF statistics)`);
  console.log(table(['program', 'runs', 'ns per run', 'runs per exec'], PROGRAMS.map((n) => [n, String(p[n]!.runs), fmt(p[n]!.ns / Math.max(1, p[n]!.runs), 0), fmt(p[n]!.runs / EXECS, 2)])));
}
console.log(`\nevents delivered to the sensor: ${delivered.events}, alerts: ${delivered.alerts}, lost in the kernel: ${delivered.lost}`);
console.log(JSON.stringify({ bench: 'security-overhead', startedAt: startedAt.toISOString(), machine: machine(), rounds: ROUNDS, execs: EXECS, perEvent, delivered, medians: { 'fork+exec/s': { on: round(median(samples.on)), off: round(median(samples.off)), ratio: round(ratio, 3) } } }));
