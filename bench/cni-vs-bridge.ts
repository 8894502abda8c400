/**
 * CNI ADD and DEL latency of dist/sluice-cni against the reference `bridge` +
 * `host-local` plugins (/usr/lib/cni, Debian containernetworking-plugins),
 * both driven the same way: exec'd through the same tiny launcher
 * (net-tool nsexec: enter the node's network namespace, exec the plugin),
 * config on stdin, CNI_* in the environment, one fresh netns per pod.
 * Sluice's node namespace is the host's (its agent lives there); the bridge
 * plugin's is a namespace of its own (isGateway: it enables forwarding and
 * addresses its bridge there, never on the host).
 * Per round: --pods pods one at a time (the two plugins alternating pod by
 * pod), then --pods pods with --parallel in flight (one block per plugin,
 * the first plugin alternating between rounds); DEL likewise.
 * Also VERSION, serial: the cost of starting each plugin through the same
 * launcher, the floor under its ADD and DEL.
 * Prints p50/p90/p99 per verb, mode and plugin, ratios, and a JSON line.
 *
 * usage (root, after make): node bench/cni-vs-bridge.ts [--pods 50] [--parallel 8] [--rounds 2]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BenchCluster, SLUICE_CNI } from './bench-cluster.ts';
import { addNetns, cleanupNow, onCleanup, shQuiet } from './cleanup.ts';
import { buildNetTool } from './net-tool.ts';
import { bridgeConf, cniEnv, REFERENCE_CNI_DIR } from './peers.ts';
import { fmt, machine, percentile, round, table } from './stats.ts';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '50' },
    parallel: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '2' },
  },
});
const PODS = Number(values.pods);
const PARALLEL = Number(values.parallel);
const ROUNDS = Number(values.rounds);
const WARMUP_PODS = 2;

type Plugin = 'sluice' | 'bridge';
type Verb = 'ADD' | 'DEL' | 'VERSION';
interface Pod {
  ns: string;
  cid: string;
}

const startedAt = new Date();
const id = randomBytes(2).toString('hex');
const prefix = `cb${id}`;
const tool = buildNetTool();
const cluster = new BenchCluster(22);
const bridgeNode = `${prefix}-node`;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-hostlocal-'));
onCleanup(`host-local dir ${dataDir}`, () => fs.rmSync(dataDir, { recursive: true, force: true }));

const launch: Record<Plugin, { netns: string; bin: string; conf: string; cniPath: string }> = {
  sluice: {
    netns: '/proc/self/ns/net',
    bin: SLUICE_CNI,
    conf: JSON.stringify({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', socket: cluster.socket, delQueueDir: `${cluster.stateDir}/del-queue` }),
    cniPath: path.dirname(SLUICE_CNI),
  },
  bridge: {
    netns: `/var/run/netns/${bridgeNode}`,
    bin: `${REFERENCE_CNI_DIR}/bridge`,
    conf: bridgeConf('benchbr0', '10.76.0.0/16', dataDir),
    cniPath: REFERENCE_CNI_DIR,
  },
};

/** One invocation through the launcher; resolves with its wall time in ms. */
function cni(plugin: Plugin, verb: Verb, p: Pod): Promise<number> {
  const l = launch[plugin];
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(tool, ['nsexec', l.netns, l.bin], { env: cniEnv(verb, p.cid, p.ns, l.cniPath), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${plugin} ${verb} ${p.ns} failed: ${out}`));
    });
    // A plugin may exit without reading its stdin (VERSION): that is not an error here.
    child.stdin.on('error', () => undefined);
    child.stdin.end(l.conf);
  });
}

/** Runs every task with at most `limit` in flight; resolves with the results in order. */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return out;
}

let made = 0;
function newPods(n: number): Pod[] {
  return Array.from({ length: n }, () => {
    const ns = `${prefix}-${made++}`;
    addNetns(ns);
    return { ns, cid: randomBytes(32).toString('hex') };
  });
}
/** Pods whose netns is deleted right after their DEL, so thousands of namespaces never pile up. */
function dropPods(pods: Pod[]): void {
  for (const p of pods) shQuiet('ip', ['netns', 'del', p.ns]);
}

const samples = new Map<string, number[]>();
const record = (key: string, xs: number[]) => (samples.get(key) ?? samples.set(key, []).get(key)!).push(...xs);
const wall = new Map<string, number[]>();
const recordWall = (key: string, ms: number) => (wall.get(key) ?? wall.set(key, []).get(key)!).push(ms);

try {
  cluster.up();
  addNetns(bridgeNode);
  const plugins: Plugin[] = ['sluice', 'bridge'];
  for (const plugin of plugins) {
    const warm = newPods(WARMUP_PODS);
    for (const p of warm) await cni(plugin, 'ADD', p);
    for (const p of warm) await cni(plugin, 'DEL', p);
    dropPods(warm);
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...plugins].reverse() : plugins;
    console.error(`round ${r + 1}/${ROUNDS}: serial`);
    const serialPods = { sluice: newPods(PODS), bridge: newPods(PODS) };
    for (const verb of ['ADD', 'DEL'] as const) {
      for (let i = 0; i < PODS; i++) for (const plugin of order) record(`${plugin} ${verb} serial`, [await cni(plugin, verb, serialPods[plugin][i]!)]);
    }
    dropPods([...serialPods.sluice, ...serialPods.bridge]);
    for (let i = 0; i < PODS; i++) for (const plugin of order) record(`${plugin} VERSION serial`, [await cni(plugin, 'VERSION', { ns: 'none', cid: 'none' })]);
    console.error(`round ${r + 1}/${ROUNDS}: ${PARALLEL} in parallel`);
    const parPods = { sluice: newPods(PODS), bridge: newPods(PODS) };
    for (const verb of ['ADD', 'DEL'] as const) {
      for (const plugin of order) {
        const t0 = performance.now();
        record(`${plugin} ${verb} parallel`, await pool(parPods[plugin].map((p) => () => cni(plugin, verb, p)), PARALLEL));
        recordWall(`${plugin} ${verb} parallel`, performance.now() - t0);
      }
    }
    dropPods([...parPods.sluice, ...parPods.bridge]);
  }
} finally {
  cleanupNow();
}

const p = (key: string, q: number) => percentile(samples.get(key) ?? [], q);
const rows: string[][] = [];
for (const mode of ['serial', 'parallel'] as const) {
  for (const verb of ['ADD', 'DEL'] as const) {
    for (const plugin of ['sluice', 'bridge'] as const) {
      const key = `${plugin} ${verb} ${mode}`;
      const w = wall.get(key);
      rows.push([
        `${plugin === 'sluice' ? 'sluice-cni' : 'bridge + host-local'} ${verb}, ${mode === 'serial' ? 'serial' : `${PARALLEL} in parallel`}`,
        fmt(p(key, 50)),
        fmt(p(key, 90)),
        fmt(p(key, 99)),
        plugin === 'sluice' ? fmt(p(key, 50) / p(`bridge ${verb} ${mode}`, 50), 2) : '1.00',
        w ? fmt((PODS / (w.reduce((a, b) => a + b, 0) / w.length)) * 1000) : '',
      ]);
    }
  }
}
for (const plugin of ['sluice', 'bridge'] as const) {
  const key = `${plugin} VERSION serial`;
  rows.push([`${plugin === 'sluice' ? 'sluice-cni' : 'bridge'} VERSION (process start), serial`, fmt(p(key, 50)), fmt(p(key, 90)), fmt(p(key, 99)), plugin === 'sluice' ? fmt(p(key, 50) / p('bridge VERSION serial', 50), 2) : '1.00', '']);
}
console.log(`CNI latency, ${ROUNDS} rounds x ${PODS} pods per plugin and mode, same launcher for both (ms) (${startedAt.toISOString()})`);
console.log(table(['invocation', 'p50', 'p90', 'p99', 'p50 x bridge', 'pods/s'], rows));
const summary = (key: string) => ({ p50Ms: round(p(key, 50)), p90Ms: round(p(key, 90)), p99Ms: round(p(key, 99)) });
console.log(
  JSON.stringify({
    bench: 'cni-vs-bridge',
    date: startedAt.toISOString(),
    machine: machine(),
    pods: PODS,
    parallel: PARALLEL,
    rounds: ROUNDS,
    results: Object.fromEntries([...samples.keys()].map((k) => [k, summary(k)])),
    addP50RatioSerial: round(p('sluice ADD serial', 50) / p('bridge ADD serial', 50)),
    addP50RatioParallel: round(p('sluice ADD parallel', 50) / p('bridge ADD parallel', 50)),
  }),
);
