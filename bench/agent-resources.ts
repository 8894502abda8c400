/**
 * The agent's resident memory and CPU on a local cluster with --policies
 * NetworkPolicies and, in turn, each pod count of --pods (pods are added, not
 * recreated): RSS and peak RSS, CPU while idle (a window with nothing
 * happening), CPU per pod created (the agent's share of a CNI ADD: IPAM,
 * endpoint, full policy sync), CPU and wall time of one policy change, and
 * the kernel memory of its pinned BPF maps (bpftool's bytes_memlock).
 * Beside it in the same run, the floors it is built on: an idle Node 26
 * process, and the same single executable (dist/sluice) idling in a server
 * loop, so what is the agent's own is visible.
 * Prints a table and a JSON line.
 *
 * usage (root, after make): node bench/agent-resources.ts [--pods 100,500] [--policies 200] [--idle-seconds 20]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { BenchCluster, namespace, pod, SLUICE, type Manifest } from './bench-cluster.ts';
import { addNetns, cleanupNow, killPid, onCleanup, sh } from './cleanup.ts';
import { fmt, machine, round, table } from './stats.ts';

const NAMESPACES = 10;
const APPS = 20;
const TEAMS = 3;
const CLOCK_TICKS_PER_S = 100;
const SETTLE_MS = 3000;
const FLOOR_WARMUP_MS = 3000;

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '100,500' },
    policies: { type: 'string', default: '200' },
    'idle-seconds': { type: 'string', default: '20' },
  },
});
const POD_STEPS = values.pods.split(',').map(Number);
const POLICIES = Number(values.policies);
const IDLE_S = Number(values['idle-seconds']);

/** Resident and peak memory of a process, MiB. */
function memory(pid: number): { rssMiB: number; hwmMiB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

/** CPU seconds (user + system) a process has used, threads included. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/** Kernel memory of the cluster's pinned maps (bytes_memlock as bpftool reports it), MiB. */
function mapMemoryMiB(bpfDir: string): number {
  let bytes = 0;
  for (const name of fs.readdirSync(`${bpfDir}/maps`)) {
    const info = JSON.parse(sh('bpftool', ['map', 'show', 'pinned', `${bpfDir}/maps/${name}`, '-j'])) as { bytes_memlock?: number };
    bytes += info.bytes_memlock ?? 0;
  }
  return bytes / 2 ** 20;
}

function policies(): Manifest[] {
  const out: Manifest[] = [];
  for (let i = 0; i < NAMESPACES; i++) out.push({ ...namespace(`ns-${i}`), metadata: { name: `ns-${i}`, labels: { team: `t${i % TEAMS}` } } });
  for (let k = 0; k < POLICIES; k++) {
    const app = (n: number) => ({ matchLabels: { app: `app-${n % APPS}` } });
    const shapes = [
      { ingress: [{ from: [{ podSelector: app(k + 1) }], ports: [{ port: 80 }] }] },
      { ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${k % TEAMS}` } } }], ports: [{ port: 443 }, { port: 8080 }] }] },
      { policyTypes: ['Ingress', 'Egress'], ingress: [{ from: [{ podSelector: app(k + 2) }] }], egress: [{ to: [{ podSelector: app(k + 3) }], ports: [{ port: 53, protocol: 'UDP' }] }] },
      { ingress: [{ from: [{ ipBlock: { cidr: `172.16.${k % 256}.0/24`, except: [`172.16.${k % 256}.0/28`] } }], ports: [{ port: 8000, endPort: 8100 }] }] },
    ];
    out.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: `ns-${k % NAMESPACES}`, name: `policy-${k}` }, spec: { podSelector: app(k), ...shapes[k % shapes.length] } });
  }
  return out;
}

/** The same background pods as netpol-enforce: pod j in ns-(j mod 10). */
function pods(from: number, to: number): Manifest[] {
  const out: Manifest[] = [];
  for (let j = from; j < to; j++) out.push(pod(`ns-${j % NAMESPACES}`, `pod-${j}`, { app: `app-${Math.floor(j / NAMESPACES) % APPS}`, tier: `tier-${j % 3}` }));
  return out;
}

/** Starts a process, lets it settle, returns its RSS and idle CPU (% of one core) over the same idle window. */
async function floor(cmd: string[], idleS: number): Promise<{ rssMiB: number; idleCpuPct: number }> {
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
  const pid = child.pid!;
  const undo = onCleanup(`floor process ${pid}`, () => killPid(pid));
  await new Promise((r) => setTimeout(r, FLOOR_WARMUP_MS));
  // `ip netns exec` execs in place, so the PID is the program's.
  const c0 = cpuSeconds(pid);
  await new Promise((r) => setTimeout(r, idleS * 1000));
  const out = { rssMiB: memory(pid).rssMiB, idleCpuPct: ((cpuSeconds(pid) - c0) / idleS) * 100 };
  undo();
  return out;
}

interface Step {
  pods: number;
  created: number;
  rssMiB: number;
  hwmMiB: number;
  idleCpuPct: number;
  cpuMsPerPod: number;
  createWallS: number;
  policyChangeCpuMs: number;
  policyChangeWallMs: number;
  mapMiB: number;
}

const startedAt = new Date();
const cluster = new BenchCluster(22);
const steps: Step[] = [];
let nodeFloor = { rssMiB: NaN, idleCpuPct: NaN };
let seaFloor = { rssMiB: NaN, idleCpuPct: NaN };

try {
  const ns = `ar${randomBytes(2).toString('hex')}`;
  addNetns(ns);
  nodeFloor = await floor(['./node_modules/.bin/node', '-e', 'setInterval(() => {}, 1000)'], IDLE_S);
  seaFloor = await floor(['ip', 'netns', 'exec', ns, SLUICE, 'local', 'serve', '--protocol', 'tcp', '--port', '7000'], IDLE_S);

  cluster.up();
  const agent = cluster.agentPid();
  cluster.apply(policies());
  let have = 0;
  for (const target of POD_STEPS) {
    console.error(`growing to ${target} pods...`);
    const c0 = cpuSeconds(agent);
    const t0 = performance.now();
    cluster.apply(pods(have, target));
    const createWallS = (performance.now() - t0) / 1000;
    const created = target - have;
    const cpuMsPerPod = ((cpuSeconds(agent) - c0) * 1000) / created;
    have = target;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const i0 = cpuSeconds(agent);
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const idleCpuPct = ((cpuSeconds(agent) - i0) / IDLE_S) * 100;
    // One policy change: a new rule on policy-0 (selects pods in ns-0).
    const p0 = policies().find((p) => p.metadata.name === 'policy-0')!;
    const changed = { ...p0, spec: { ...(p0.spec as object), ingress: [{ from: [{ podSelector: { matchLabels: { app: `app-${target % APPS}` } } }], ports: [{ port: 81 }] }] } };
    const pc0 = cpuSeconds(agent);
    const policyChangeWallMs = cluster.apply([changed]);
    const policyChangeCpuMs = (cpuSeconds(agent) - pc0) * 1000;
    cluster.apply([p0]);
    const mem = memory(agent);
    steps.push({ pods: target, created, ...mem, idleCpuPct, cpuMsPerPod, createWallS, policyChangeCpuMs, policyChangeWallMs, mapMiB: mapMemoryMiB(cluster.bpfDir) });
    console.error(`  ${target} pods: RSS ${fmt(mem.rssMiB)} MiB, idle CPU ${fmt(idleCpuPct, 2)} %`);
  }
} finally {
  console.error('tearing down...');
  cleanupNow();
}

console.log(`Agent resources: ${POLICIES} policies, pods added in steps, idle windows of ${IDLE_S} s (${startedAt.toISOString()})`);
console.log(
  table(
    ['process', 'RSS MiB', 'peak RSS MiB', 'idle CPU %', 'CPU ms/pod created', 'pods/s created', 'policy change: agent CPU ms', 'policy change: apply ms', 'BPF maps MiB'],
    [
      ...steps.map((s) => [`sluice agent, ${s.pods} pods`, fmt(s.rssMiB), fmt(s.hwmMiB), fmt(s.idleCpuPct, 2), fmt(s.cpuMsPerPod), fmt(s.created / s.createWallS), fmt(s.policyChangeCpuMs, 0), fmt(s.policyChangeWallMs, 0), fmt(s.mapMiB)]),
      ['floor: idle Node 26 process', fmt(nodeFloor.rssMiB), '', fmt(nodeFloor.idleCpuPct, 2), '', '', '', '', ''],
      ['floor: dist/sluice idle server', fmt(seaFloor.rssMiB), '', fmt(seaFloor.idleCpuPct, 2), '', '', '', '', ''],
    ],
  ),
);
console.log(
  JSON.stringify({
    bench: 'agent-resources',
    date: startedAt.toISOString(),
    machine: machine(),
    policies: POLICIES,
    idleSeconds: IDLE_S,
    steps: steps.map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, round(v)]))),
    floors: { node: { rssMiB: round(nodeFloor.rssMiB), idleCpuPct: round(nodeFloor.idleCpuPct) }, sea: { rssMiB: round(seaFloor.rssMiB), idleCpuPct: round(seaFloor.idleCpuPct) } },
  }),
);
