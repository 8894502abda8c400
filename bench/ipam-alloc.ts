/**
 * IPAM allocations per second, as a caller sees them, against the reference
 * host-local IPAM plugin (/usr/lib/cni/host-local, Debian
 * containernetworking-plugins) in the same run, alternating blocks:
 * - Sluice: one API request per allocation over the agent's unix socket
 *   (a real `dist/sluice agent` with its own paths), serial and with 16
 *   concurrent clients;
 * - host-local: one exec per allocation (CNI_COMMAND=ADD, ipam config on
 *   stdin, its own data dir), serial and 16 concurrent;
 * - sluice-cni STATUS: one exec of the CNI plugin plus one agent request,
 *   the fixed cost an allocation through the plugin would add to the API figure;
 * - the store alone, in process: synchronous = FULL against NORMAL (see
 *   STORE_SYNCHRONOUS in ipam/store.ts).
 * After each block its allocations are released, untimed, on both sides, so
 * both stores hold 0 to --per-block allocations (a node's worth of pods):
 * host-local's ADD looks for the container ID in every file of its data dir,
 * so its cost grows with the allocations it holds.
 * Prints a table (medians over blocks) and one JSON line.
 *
 * usage (root, after make): node bench/ipam-alloc.ts [--blocks 7] [--per-block 200]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { Ipam } from '../ipam/allocator.ts';
import type { SynchronousMode } from '../ipam/store.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SLUICE = path.join(ROOT, 'dist/sluice');
const SLUICE_CNI = path.join(ROOT, 'dist/sluice-cni');
const HOST_LOCAL = '/usr/lib/cni/host-local';
const CONCURRENT_CLIENTS = 16;
const AGENT_READY_TIMEOUT_MS = 20_000;

const { values } = parseArgs({ options: { blocks: { type: 'string', default: '7' }, 'per-block': { type: 'string', default: '200' } } });
const BLOCKS = Number(values.blocks);
const PER_BLOCK = Number(values['per-block']);

const id = randomBytes(3).toString('hex');
const work = `/tmp/sluice-bench-ipam-${id}`;
const socket = `/run/sluice/bench-ipam-${id}.sock`;
const bpfDir = `/sys/fs/bpf/sluice-bench-ipam-${id}`;
// /16 pools: room for every allocation of the run on both sides, no releases needed.
const SLUICE_CIDR = '10.197.0.0/16';
const HOST_LOCAL_CIDR = '10.198.0.0/16';
const hostLocalConf = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'bench',
  ipam: { type: 'host-local', ranges: [[{ subnet: HOST_LOCAL_CIDR }]], dataDir: `${work}/host-local` },
});

let seq = 0;
/** Keys allocated since the last cleanup, per side. */
const held = { sluice: [] as string[], hostLocal: [] as string[] };
const nextKey = (): string => `${id}${(seq++).toString(16).padStart(8, '0')}`;
const hostLocalEnv = (command: string, containerID: string): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerID,
  CNI_NETNS: '/var/run/netns/none',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/usr/lib/cni',
});

function execWithInput(cmd: string, env: NodeJS.ProcessEnv, input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${env.CNI_COMMAND} exited ${code}: ${out}`))));
    child.stdin.end(input);
  });
}

const allocators = {
  sluiceApi: async (): Promise<void> => {
    const key = nextKey();
    held.sluice.push(key);
    await agentRequest(socket, 'POST', '/v1/ipam/allocate', { containerID: key, ifname: 'eth0', namespace: 'bench', pod: 'p' });
  },
  hostLocal: async (): Promise<void> => {
    const key = nextKey();
    held.hostLocal.push(key);
    await execWithInput(HOST_LOCAL, hostLocalEnv('ADD', key), hostLocalConf);
  },
  sluiceCniStatus: async (): Promise<void> => {
    const env = { PATH: process.env.PATH, CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' };
    await execWithInput(SLUICE_CNI, env, JSON.stringify({ cniVersion: '1.1.0', name: 'sluice', type: 'sluice', socket }));
  },
};

/** Runs `count` calls with `clients` concurrent callers; returns allocations per second and per-call latencies (ms). */
async function block(fn: () => Promise<void>, count: number, clients: number): Promise<{ perSecond: number; latencies: number[] }> {
  const latencies: number[] = [];
  let left = count;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left-- > 0) {
        const s = performance.now();
        await fn();
        latencies.push(performance.now() - s);
      }
    }),
  );
  return { perSecond: (count / (performance.now() - t0)) * 1000, latencies };
}

/** Releases everything both sides hold, untimed, 16 at a time. */
async function releaseAll(): Promise<void> {
  const run = async (keys: string[], fn: (key: string) => Promise<unknown>): Promise<void> => {
    await Promise.all(Array.from({ length: CONCURRENT_CLIENTS }, async () => {
      for (let k = keys.pop(); k !== undefined; k = keys.pop()) await fn(k);
    }));
  };
  await run(held.sluice, (k) => agentRequest(socket, 'POST', '/v1/ipam/release', { containerID: k, ifname: 'eth0' }));
  await run(held.hostLocal, (k) => execWithInput(HOST_LOCAL, hostLocalEnv('DEL', k), hostLocalConf));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function startAgent(): Promise<ChildProcess> {
  const child = spawn(SLUICE, ['agent', '--state-dir', `${work}/state`, '--socket', socket, '--bpf-dir', bpfDir, '--pod-cidr', SLUICE_CIDR, '--ipam-gc-grace-ms', '86400000'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  for (;;) {
    try {
      await agentRequest(socket, 'GET', '/v1/status');
      return child;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('the agent did not start');
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** Serial allocations straight on the store, no API: isolates what a COMMIT costs in each synchronous mode. */
function storeOnly(mode: SynchronousMode, count: number): number {
  const dir = `${work}/store-${mode}`;
  const ipam = new Ipam(`${dir}/ipam.db`, ['10.196.0.0/16'], { synchronous: mode });
  const t0 = performance.now();
  for (let i = 0; i < count; i++) ipam.allocate({ containerID: nextKey(), ifname: 'eth0' });
  const perSecond = (count / (performance.now() - t0)) * 1000;
  ipam.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return perSecond;
}

const rates: Record<string, number[]> = {};
const lat: Record<string, number[]> = {};
const record = (name: string, r: { perSecond: number; latencies: number[] }): void => {
  (rates[name] ??= []).push(r.perSecond);
  (lat[name] ??= []).push(...r.latencies);
};

fs.mkdirSync(work, { recursive: true, mode: 0o700 });
const agent = await startAgent();
try {
  // Warm-up: page cache, the native-addon cache of the SEA, connection paths.
  await block(allocators.sluiceApi, 20, 1);
  await block(allocators.hostLocal, 20, 1);
  await block(allocators.sluiceCniStatus, 5, 1);
  storeOnly('FULL', 20);
  await releaseAll();
  for (let b = 0; b < BLOCKS; b++) {
    record('sluice API, serial', await block(allocators.sluiceApi, PER_BLOCK, 1));
    record('host-local exec, serial', await block(allocators.hostLocal, PER_BLOCK, 1));
    await releaseAll();
    record(`sluice API, ${CONCURRENT_CLIENTS} clients`, await block(allocators.sluiceApi, PER_BLOCK, CONCURRENT_CLIENTS));
    record(`host-local exec, ${CONCURRENT_CLIENTS} clients`, await block(allocators.hostLocal, PER_BLOCK, CONCURRENT_CLIENTS));
    await releaseAll();
    record('sluice-cni STATUS exec, serial', await block(allocators.sluiceCniStatus, Math.max(10, PER_BLOCK / 10), 1));
    (rates['store only, synchronous=FULL'] ??= []).push(storeOnly('FULL', PER_BLOCK));
    (rates['store only, synchronous=NORMAL'] ??= []).push(storeOnly('NORMAL', PER_BLOCK));
  }
} finally {
  agent.kill('SIGTERM');
  await new Promise((r) => agent.once('exit', r));
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(bpfDir, { recursive: true, force: true });
  fs.rmSync(socket, { force: true });
}

const m = (name: string): number => median(rates[name]!);
console.log(`IPAM allocations, ${BLOCKS} alternating blocks of ${PER_BLOCK} (medians)   alloc/s   p50 ms`);
for (const name of Object.keys(rates)) {
  const p50 = lat[name] ? median(lat[name]).toFixed(2) : '-';
  console.log(`${name.padEnd(58)} ${m(name).toFixed(0).padStart(8)} ${p50.padStart(8)}`);
}
const ratios = {
  serial: m('sluice API, serial') / m('host-local exec, serial'),
  concurrent: m(`sluice API, ${CONCURRENT_CLIENTS} clients`) / m(`host-local exec, ${CONCURRENT_CLIENTS} clients`),
  normalOverFull: m('store only, synchronous=NORMAL') / m('store only, synchronous=FULL'),
};
console.log(`sluice/host-local: serial ${ratios.serial.toFixed(1)}x, ${CONCURRENT_CLIENTS} clients ${ratios.concurrent.toFixed(1)}x; store NORMAL/FULL ${ratios.normalOverFull.toFixed(1)}x`);
console.log(
  JSON.stringify({
    bench: 'ipam-alloc',
    blocks: BLOCKS,
    perBlock: PER_BLOCK,
    allocPerSecond: Object.fromEntries(Object.keys(rates).map((k) => [k, Math.round(m(k))])),
    p50Ms: Object.fromEntries(Object.keys(lat).map((k) => [k, Number(median(lat[k]!).toFixed(3))])),
    ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, Number(v.toFixed(2))])),
  }),
);
