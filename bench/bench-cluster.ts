/**
 * A Sluice local cluster for benchmarks: the real dist/sluice agent and
 * dist/sluice-cni, names of its own (netns prefix, socket, bpffs dir, pod
 * CIDR), driven through `sluice local` exactly as a user drives it, and
 * removed at cleanup whatever happened.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { killPid, onCleanup, sh } from './cleanup.ts';

/** The repository root. */
export const ROOT = path.resolve(import.meta.dirname, '..');
/** The CLI (and agent) single executable. */
export const SLUICE = path.join(ROOT, 'dist/sluice');
/** The CNI plugin single executable. */
export const SLUICE_CNI = path.join(ROOT, 'dist/sluice-cni');

/** A Kubernetes object as the local cluster takes it. */
export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: unknown };

/** A pod as `sluice local get pods -o json` lists it. */
export interface ListedPod {
  metadata: { namespace: string; name: string; labels?: Record<string, string>; annotations: Record<string, string> };
  status: { podIP: string };
}

/** A local cluster with unique names. */
export class BenchCluster {
  readonly id = randomBytes(3).toString('hex');
  readonly name = `sb${this.id}`;
  readonly dir = `/tmp/sluice-bench-${this.id}`;
  readonly stateDir = `/tmp/sluice-bench-${this.id}-state`;
  readonly socket = `/run/sluice/bench-${this.id}.sock`;
  readonly bpfDir = `/sys/fs/bpf/sluice-bench-${this.id}`;
  readonly podCIDR: string;

  /** prefixLength: the pod CIDR size (a /22 holds 1,000 pods); its second octet is 90..99, away from the tests' ranges. */
  constructor(prefixLength = 24) {
    const a = 90 + (parseInt(this.id.slice(0, 2), 16) % 10);
    const blocks = 2 ** (24 - prefixLength);
    const b = (parseInt(this.id.slice(2, 4), 16) * blocks) % 256;
    this.podCIDR = `10.${a}.${b}.0/${prefixLength}`;
  }

  /** `sluice local up`; the cluster is torn down at cleanup. */
  up(): void {
    onCleanup(`local cluster ${this.name}`, () => this.down());
    execFileSync(SLUICE, ['local', 'up', '--dir', this.dir, '--name', this.name, '--socket', this.socket, '--state-dir', this.stateDir, '--bpf-dir', this.bpfDir, '--pod-cidr', this.podCIDR], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** The agent's PID (from cluster.json). */
  agentPid(): number {
    return (JSON.parse(fs.readFileSync(path.join(this.dir, 'cluster.json'), 'utf8')) as { agentPid: number }).agentPid;
  }

  /** `sluice local apply -f` of these objects (one file, many documents); returns its wall time in ms. */
  apply(objects: Manifest[]): number {
    const file = path.join(this.dir, `apply-${randomBytes(4).toString('hex')}.json`);
    fs.writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    try {
      const t0 = performance.now();
      sh(SLUICE, ['local', '--dir', this.dir, 'apply', '-f', file]);
      return performance.now() - t0;
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  /** `sluice local delete -f --ignore-not-found` of these objects; returns its wall time in ms. */
  delete(objects: Manifest[]): number {
    if (objects.length === 0) return 0;
    const file = path.join(this.dir, `delete-${randomBytes(4).toString('hex')}.json`);
    fs.writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    try {
      const t0 = performance.now();
      sh(SLUICE, ['local', '--dir', this.dir, 'delete', '-f', file, '--ignore-not-found']);
      return performance.now() - t0;
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  /**
   * The cluster's pods. Read through a file: `sluice local get -o json` ends
   * with process.exit(), which cuts its output short on a pipe once it is
   * larger than the pipe buffer (hundreds of pods); a file is written synchronously.
   */
  pods(): ListedPod[] {
    const file = path.join(this.dir, `pods-${randomBytes(4).toString('hex')}.json`);
    const fd = fs.openSync(file, 'w');
    try {
      const r = spawnSync(SLUICE, ['local', '--dir', this.dir, 'get', 'pods', '-o', 'json'], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`sluice local get pods exited ${r.status}: ${r.stderr}`);
      return (JSON.parse(fs.readFileSync(file, 'utf8')) as { items: ListedPod[] }).items;
    } finally {
      fs.closeSync(fd);
      fs.rmSync(file, { force: true });
    }
  }

  /** Removes everything: `local down`, then whatever it could not remove. */
  down(): void {
    if (!fs.existsSync(path.join(this.dir, 'cluster.json'))) return;
    const pid = this.agentPid();
    if (!agentCmdline(pid).includes(this.socket)) {
      const log = fs.readFileSync(path.join(this.dir, 'agent.log'), 'utf8').split('\n').slice(-25).join('\n');
      console.error(`the agent of ${this.name} (pid ${pid}) is no longer running; the end of its log:\n${log}`);
    }
    spawnSync(SLUICE, ['local', '--dir', this.dir, 'down'], { stdio: 'ignore' });
    // Only if that PID is still our agent (a PID can be reused once the process is gone).
    if (agentCmdline(pid).includes(this.socket)) killPid(pid);
    const left = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(`${this.name}-`)) : [];
    for (const ns of left) spawnSync('ip', ['netns', 'del', ns]);
    fs.rmSync(this.bpfDir, { recursive: true, force: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.rmSync(this.stateDir, { recursive: true, force: true });
    fs.rmSync(this.socket, { force: true });
  }
}

function agentCmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** A Namespace manifest. */
export function namespace(name: string): Manifest {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}

/** A Pod manifest with labels and no container ports (the benchmark starts its own servers). */
export function pod(ns: string, name: string, labels: Record<string, string>): Manifest {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: ns, name, labels }, spec: { containers: [{ name: 'main', image: 'none' }] } };
}
