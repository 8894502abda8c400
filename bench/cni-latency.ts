/**
 * CNI ADD and DEL wall time of dist/sluice-cni, run as a runtime runs it,
 * next to `ip link add` / `ip link del` of a bare veth pair (the floor for
 * any veth-based plugin), alternating in one run. Prints a table and a JSON line.
 *
 * usage (root, after make): node bench/cni-latency.ts [--runs 20]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(import.meta.dirname, '..');
const SLUICE = path.join(ROOT, 'dist/sluice');
const SLUICE_CNI = path.join(ROOT, 'dist/sluice-cni');

const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' } } });
const RUNS = Number(values.runs);
const id = randomBytes(3).toString('hex');
const dir = `/tmp/sluice-bench-${id}`;
const socket = `/run/sluice/bench-${id}.sock`;
const bpfDir = `/sys/fs/bpf/sluice-bench-${id}`;
const stateDir = `${dir}-state`;
const netnsPrefix = `b${id}`;

function timeMs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function cni(command: 'ADD' | 'DEL', containerID: string, netns: string): void {
  const r = spawnSync(SLUICE_CNI, [], {
    input: JSON.stringify({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', socket }),
    env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: containerID, CNI_NETNS: `/var/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' },
  });
  if (r.status !== 0) throw new Error(`CNI ${command} failed: ${r.stdout.toString()}`);
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const samples = { sluiceAdd: [] as number[], sluiceDel: [] as number[], vethAdd: [] as number[], vethDel: [] as number[] };
execFileSync(SLUICE, ['local', 'up', '--dir', dir, '--name', netnsPrefix, '--socket', socket, '--state-dir', stateDir, '--bpf-dir', bpfDir, '--pod-cidr', '10.199.0.0/16']);
const made: string[] = [];
try {
  // One warm-up of each, so the native-addon cache and page cache are as on a busy node.
  for (let i = -1; i < RUNS; i++) {
    const ns = `${netnsPrefix}-p${i + 1}`;
    execFileSync('ip', ['netns', 'add', ns]);
    made.push(ns);
    const cid = randomBytes(32).toString('hex');
    const add = timeMs(() => cni('ADD', cid, ns));
    const del = timeMs(() => cni('DEL', cid, ns));
    const veth = `bv${id}${(i + 1) % 100}`;
    const vadd = timeMs(() => execFileSync('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`]));
    const vdel = timeMs(() => execFileSync('ip', ['link', 'del', veth]));
    if (i >= 0) {
      samples.sluiceAdd.push(add);
      samples.sluiceDel.push(del);
      samples.vethAdd.push(vadd);
      samples.vethDel.push(vdel);
    }
  }
} finally {
  for (const ns of made) spawnSync('ip', ['netns', 'del', ns]);
  spawnSync(SLUICE, ['local', '--dir', dir, 'down']);
  fs.rmSync(dir, { recursive: true, force: true });
}

const row = (name: string, xs: number[]) => `${name.padEnd(28)} ${percentile(xs, 50).toFixed(1).padStart(7)} ${percentile(xs, 90).toFixed(1).padStart(7)} ${percentile(xs, 99).toFixed(1).padStart(7)}`;
console.log(`CNI latency, ${RUNS} runs each, alternating (ms)      p50     p90     p99`);
console.log(row('sluice-cni ADD', samples.sluiceAdd));
console.log(row('ip link add (bare veth)', samples.vethAdd));
console.log(row('sluice-cni DEL', samples.sluiceDel));
console.log(row('ip link del (bare veth)', samples.vethDel));
const ratio = (a: number[], b: number[]) => percentile(a, 50) / percentile(b, 50);
console.log(`ADD p50 ratio to bare veth: ${ratio(samples.sluiceAdd, samples.vethAdd).toFixed(1)}x; DEL: ${ratio(samples.sluiceDel, samples.vethDel).toFixed(1)}x`);
console.log(
  JSON.stringify({
    bench: 'cni-latency',
    runs: RUNS,
    addP50Ms: percentile(samples.sluiceAdd, 50),
    delP50Ms: percentile(samples.sluiceDel, 50),
    vethAddP50Ms: percentile(samples.vethAdd, 50),
    vethDelP50Ms: percentile(samples.vethDel, 50),
  }),
);
