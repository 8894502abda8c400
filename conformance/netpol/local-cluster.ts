/**
 * The suite's local cluster, driven only through the dist/sluice executable
 * and its documented contracts (`local up/down/apply/delete/get`), with names
 * of its own so it never collides with other clusters on the machine, and a
 * teardown that removes everything even after a failure.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { Manifest, ObjectRef } from './types.ts';

/** The repository root. */
export const ROOT = path.resolve(import.meta.dirname, '../..');
const SLUICE = path.join(ROOT, 'dist/sluice');
const COMMAND_TIMEOUT_MS = 60_000;
const NETNS_DIR = '/var/run/netns';

/** A pod as `get pods -o json` lists it (the fields the suite reads). */
export interface ListedPod {
  metadata: { namespace: string; name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  status?: { podIP?: string };
}

/** Runs a command; resolves with its output, rejects with it on a non-zero exit. */
export function run(cmd: string, args: string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A process's command line, or '' when there is no such process. */
function processCmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** How the model cluster is laid out: one node (the host) or several node namespaces. */
export interface Layout {
  nodes: number;
  routing?: 'native' | 'vxlan';
}

/** A local cluster with unique names. */
export class NetpolCluster {
  readonly id = randomBytes(3).toString('hex');
  readonly name = `np${this.id}`;
  readonly dir = `/tmp/sluice-netpol-${this.id}`;
  readonly stateDir = `/tmp/sluice-netpol-${this.id}-state`;
  readonly socket = `/run/sluice/netpol-${this.id}.sock`;
  readonly bpfDir = `/sys/fs/bpf/sluice-netpol-${this.id}`;
  // 10.150-199.x.0/24: away from the ranges the other integration tests draw from.
  readonly podCIDR = `10.${150 + (parseInt(this.id.slice(0, 2), 16) % 50)}.${parseInt(this.id.slice(2, 4), 16)}.0/24`;
  private manifestSeq = 0;
  readonly layout: Layout;

  constructor(layout: Layout = { nodes: 1 }) {
    this.layout = layout;
  }

  /** `sluice local up` with this cluster's names (and nodes; pods without a node spread over them). */
  async up(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const nodes = this.layout.nodes > 1 ? ['--nodes', String(this.layout.nodes), ...(this.layout.routing ? ['--routing', this.layout.routing] : [])] : [];
    await run(SLUICE, ['local', 'up', '--dir', this.dir, '--name', this.name, '--socket', this.socket, '--state-dir', this.stateDir, '--bpf-dir', this.bpfDir, '--pod-cidr', this.podCIDR, ...nodes]);
  }

  /** The agent sockets: one, or one per node. */
  private sockets(): string[] {
    if (this.layout.nodes <= 1) return [this.socket];
    const config = JSON.parse(fs.readFileSync(path.join(this.dir, 'cluster.json'), 'utf8')) as { nodes?: { socket: string }[] };
    return (config.nodes ?? []).map((n) => n.socket);
  }

  /** `sluice local <args>` against this cluster. */
  local(...args: string[]): Promise<string> {
    return run(SLUICE, ['local', '--dir', this.dir, ...args]);
  }

  /** Writes the manifests as one multi-document YAML file and returns its path (kept for the record). */
  writeManifests(objects: object[]): string {
    const file = path.join(this.dir, 'manifests', `${String(++this.manifestSeq).padStart(5, '0')}.yaml`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, objects.map((o) => YAML.stringify(o)).join('---\n'));
    return file;
  }

  /** `apply -f`: returns once the change is in the datapath. */
  async apply(objects: Manifest[]): Promise<void> {
    if (objects.length > 0) await this.local('apply', '-f', this.writeManifests(objects));
  }

  /** `delete -f --ignore-not-found`. */
  async delete(refs: ObjectRef[]): Promise<void> {
    const docs = refs.map((r) => ({ apiVersion: r.kind === 'NetworkPolicy' ? 'networking.k8s.io/v1' : 'v1', kind: r.kind, metadata: { name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) } }));
    if (docs.length > 0) await this.local('delete', '-f', this.writeManifests(docs), '--ignore-not-found');
  }

  /** The cluster's pods. */
  async pods(): Promise<ListedPod[]> {
    return (JSON.parse(await this.local('get', 'pods', '-o', 'json')) as { items: ListedPod[] }).items;
  }

  /** `sluice policy ns/pod`: the view of the agent on the pod's node, for diagnosis. */
  async policyDump(pod: string): Promise<string> {
    let last = '';
    for (const socket of this.sockets()) {
      try {
        return await run(SLUICE, ['policy', pod, '--socket', socket]);
      } catch (err: unknown) {
        last = String(err);
      }
    }
    return last;
  }

  /** Removes everything of this cluster, whatever state it is in. */
  teardown(): Promise<string[]> {
    return removeLocalCluster(this);
  }
}

/** What removeLocalCluster needs of a local cluster: its names, and `sluice local` in its directory. */
export interface LocalClusterNames {
  name: string;
  dir: string;
  stateDir: string;
  socket: string;
  bpfDir: string;
  local(...args: string[]): Promise<string>;
}

/**
 * Removes every part of a local cluster, whatever state it is in: `local
 * down`, its agent (by PID, only while that PID is still this cluster's
 * agent), its namespaces, pins and files. Returns what could not be removed.
 */
export async function removeLocalCluster(c: LocalClusterNames): Promise<string[]> {
  const problems: string[] = [];
  const clusterFile = path.join(c.dir, 'cluster.json');
  if (fs.existsSync(clusterFile)) {
    const agentPid = (JSON.parse(fs.readFileSync(clusterFile, 'utf8')) as { agentPid?: number }).agentPid ?? 0;
    await c.local('down').catch((err: unknown) => problems.push(String(err)));
    // `down` stops the agent; should it still run, end it, but only while that PID is still our agent.
    if (agentPid > 0 && processCmdline(agentPid).includes(c.socket)) {
      try {
        process.kill(agentPid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
  const leftNetns = fs.existsSync(NETNS_DIR) ? fs.readdirSync(NETNS_DIR).filter((n) => n.startsWith(`${c.name}-`)) : [];
  for (const ns of leftNetns) await run('ip', ['netns', 'del', ns]).catch((err: unknown) => problems.push(String(err)));
  fs.rmSync(c.bpfDir, { recursive: true, force: true });
  fs.rmSync(c.stateDir, { recursive: true, force: true });
  fs.rmSync(c.dir, { recursive: true, force: true });
  fs.rmSync(c.socket, { force: true });
  return problems;
}
