/**
 * CNI ADD and DEL latency of dist/sluice-cni over many pods, run as a runtime
 * runs it: first one pod at a time, then with a fixed number of invocations in
 * flight (kubelet starts pods in parallel). Reports p50 and p99 per verb and
 * mode, and the wall time of each phase. Prints a table and a JSON line.
 *
 * usage (root, after make): node bench/cni-parallel.ts [--pods 50] [--parallel 8] [--dual-stack] [--cni PATH]
 * (--cni measures another build of the plugin, e.g. the last commit's, against the same agent).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(import.meta.dirname, '..');
const SLUICE = path.join(ROOT, 'dist/sluice');

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '50' },
    parallel: { type: 'string', default: '8' },
    'dual-stack': { type: 'boolean', default: false },
    cni: { type: 'string', default: path.join(ROOT, 'dist/sluice-cni') },
  },
});
const SLUICE_CNI = path.resolve(values.cni);
const PODS = Number(values.pods);
const PARALLEL = Number(values.parallel);
const id = randomBytes(3).toString('hex');
const dir = `/tmp/sluice-bench-${id}`;
const socket = `/run/sluice/bench-${id}.sock`;
const bpfDir = `/sys/fs/bpf/sluice-bench-${id}`;
const stateDir = `${dir}-state`;
const netnsPrefix = `bp${id}`;
const podCIDR = `10.${150 + (parseInt(id.slice(0, 2), 16) % 40)}.${parseInt(id.slice(2, 4), 16)}.0/24`;
const cidrs = values['dual-stack'] ? [podCIDR, `fd5f:${id.slice(0, 4)}::/112`] : [podCIDR];

/** Runs one CNI invocation; resolves with its wall time in ms, rejects with the plugin's output. */
function cni(command: 'ADD' | 'DEL', containerID: string, netns: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(SLUICE_CNI, [], {
      env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: containerID, CNI_NETNS: `/var/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`CNI ${command} ${containerID} failed: ${out}`));
    });
    child.stdin.end(JSON.stringify({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', socket, delQueueDir: `${stateDir}/del-queue` }));
  });
}

/** Runs every task with at most `limit` in flight; resolves with their results in order. */
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

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

interface Phase {
  add: number[];
  del: number[];
  addWallMs: number;
  delWallMs: number;
}

async function phase(pods: { ns: string; cid: string }[], limit: number): Promise<Phase> {
  let t0 = performance.now();
  const add = await pool(pods.map((p) => () => cni('ADD', p.cid, p.ns)), limit);
  const addWallMs = performance.now() - t0;
  t0 = performance.now();
  const del = await pool(pods.map((p) => () => cni('DEL', p.cid, p.ns)), limit);
  return { add, del, addWallMs, delWallMs: performance.now() - t0 };
}

const made: string[] = [];
const newPods = () =>
  Array.from({ length: PODS }, () => {
    const ns = `${netnsPrefix}-${made.length}`;
    execFileSync('ip', ['netns', 'add', ns]);
    made.push(ns);
    return { ns, cid: randomBytes(32).toString('hex') };
  });

execFileSync(SLUICE, ['local', 'up', '--dir', dir, '--name', netnsPrefix, '--socket', socket, '--state-dir', stateDir, '--bpf-dir', bpfDir, ...cidrs.flatMap((c) => ['--pod-cidr', c])]);
let serial: Phase;
let parallel: Phase;
try {
  // Warm-up: the native-addon cache and page cache as on a busy node.
  await phase(newPods().slice(0, 2), 1);
  serial = await phase(newPods(), 1);
  parallel = await phase(newPods(), PARALLEL);
} finally {
  for (const ns of made) spawnSync('ip', ['netns', 'del', ns]);
  spawnSync(SLUICE, ['local', '--dir', dir, 'down']);
  fs.rmSync(dir, { recursive: true, force: true });
}

const row = (name: string, xs: number[], wallMs: number) =>
  `${name.padEnd(24)} ${percentile(xs, 50).toFixed(1).padStart(7)} ${percentile(xs, 99).toFixed(1).padStart(7)} ${wallMs.toFixed(0).padStart(9)} ${((xs.length / wallMs) * 1000).toFixed(1).padStart(9)}`;
console.log(`CNI latency over ${PODS} pods${values['dual-stack'] ? ' (dual stack)' : ''} (ms)   p50     p99   wall ms   pods/s`);
console.log(row('ADD serial', serial.add, serial.addWallMs));
console.log(row('DEL serial', serial.del, serial.delWallMs));
console.log(row(`ADD ${PARALLEL} in parallel`, parallel.add, parallel.addWallMs));
console.log(row(`DEL ${PARALLEL} in parallel`, parallel.del, parallel.delWallMs));
console.log(
  JSON.stringify({
    bench: 'cni-parallel',
    pods: PODS,
    parallel: PARALLEL,
    dualStack: values['dual-stack'],
    cni: SLUICE_CNI,
    serial: { addP50Ms: percentile(serial.add, 50), addP99Ms: percentile(serial.add, 99), delP50Ms: percentile(serial.del, 50), delP99Ms: percentile(serial.del, 99) },
    parallelRun: { addP50Ms: percentile(parallel.add, 50), addP99Ms: percentile(parallel.add, 99), delP50Ms: percentile(parallel.del, 50), delP99Ms: percentile(parallel.del, 99) },
  }),
);
