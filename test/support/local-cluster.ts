/**
 * A throw-away local cluster for integration tests, driven through the real
 * dist/sluice and dist/sluice-cni executables, with names of its own so tests
 * never collide, and a teardown that removes everything even after a failure.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const SLUICE = path.join(ROOT, 'dist/sluice');
export const SLUICE_CNI = path.join(ROOT, 'dist/sluice-cni');

/** Result of a finished command. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; never rejects on a non-zero exit. */
export function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Runs a command and fails the test with its output when it exits non-zero. */
export async function must(cmd: string, args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** A local cluster with unique names. */
export class TestCluster {
  readonly id = randomBytes(3).toString('hex');
  readonly name = `t${this.id}`;
  readonly dir = `/tmp/sluice-test-${this.id}`;
  readonly stateDir = `/tmp/sluice-test-${this.id}-state`;
  readonly socket = `/run/sluice/test-${this.id}.sock`;
  readonly bpfDir = `/sys/fs/bpf/sluice-test-${this.id}`;
  readonly podCIDR = `10.${200 + (parseInt(this.id.slice(0, 2), 16) % 50)}.${parseInt(this.id.slice(2, 4), 16)}.0/24`;
  private readonly children: ChildProcess[] = [];
  private manifests = 0;

  /** `sluice local up` with this cluster's names; extra arguments go to `local up` (e.g. --agent-arg=...). */
  async up(...extra: string[]): Promise<void> {
    await must(SLUICE, ['local', 'up', '--dir', this.dir, '--name', this.name, '--socket', this.socket, '--state-dir', this.stateDir, '--bpf-dir', this.bpfDir, '--pod-cidr', this.podCIDR, ...extra]);
  }

  /** Runs `sluice local <args> --dir <dir>`. */
  local(...args: string[]): Promise<Ran> {
    return sh(SLUICE, ['local', '--dir', this.dir, ...args]);
  }

  /** The cluster.json that `up` wrote. */
  config(): { agentPid: number; cniConfFile: string; cniBinDir: string } {
    return JSON.parse(fs.readFileSync(path.join(this.dir, 'cluster.json'), 'utf8'));
  }

  /** GET on the agent's API through the CLI-free path (curl-less: node http via sluice status -o json). */
  /** `sluice status -o json` of the cluster's agent (or of the agent at another socket: a node's). */
  async status(socket = this.socket): Promise<{ endpoints: number; datapath: { adopted: boolean }; counters: Record<string, { packets: number }> }> {
    return JSON.parse(await must(SLUICE, ['status', '--socket', socket, '-o', 'json']));
  }

  /** Packets a datapath counter holds now (0 when it never counted). */
  async counter(name: string, socket = this.socket): Promise<number> {
    return (await this.status(socket)).counters[name]?.packets ?? 0;
  }

  /** Pods as `get pods -o json` lists them. */
  async pods(): Promise<{ metadata: { namespace: string; name: string; annotations: Record<string, string> }; status: { podIP: string } }[]> {
    return JSON.parse((await this.local('get', 'pods', '-o', 'json')).stdout).items;
  }

  /** `sluice local apply -f` of a YAML text, written into the cluster's directory (removed by teardown). */
  async apply(yaml: string): Promise<string> {
    const file = path.join(this.dir, `manifest-${++this.manifests}.yaml`);
    fs.writeFileSync(file, yaml);
    return must(SLUICE, ['local', '--dir', this.dir, 'apply', '-f', file]);
  }

  /** `sluice local delete -f` of a YAML text (kind, namespace and name are enough), written like apply's. */
  async delete(yaml: string): Promise<string> {
    const file = path.join(this.dir, `manifest-${++this.manifests}.yaml`);
    fs.writeFileSync(file, yaml);
    return must(SLUICE, ['local', '--dir', this.dir, 'delete', '-f', file]);
  }

  /** Each pod's addresses and netns name, by "namespace/name". */
  async podsByName(): Promise<Record<string, { ips: string[]; netns: string }>> {
    const pods = (await this.pods()) as { metadata: { namespace: string; name: string; annotations: Record<string, string> }; status: { podIP: string; podIPs?: { ip: string }[] } }[];
    return Object.fromEntries(
      pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, { ips: p.status.podIPs?.map((x) => x.ip) ?? [p.status.podIP], netns: p.metadata.annotations['sluice.dev/netns']! }]),
    );
  }

  /** Each pod's first address and its netns, keyed by ns/name. */
  async podAddresses(): Promise<{ ip: Record<string, string>; netns: Record<string, string> }> {
    const pods = Object.entries(await this.podsByName());
    return { ip: Object.fromEntries(pods.map(([key, p]) => [key, p.ips[0]!])), netns: Object.fromEntries(pods.map(([key, p]) => [key, p.netns])) };
  }

  /** Starts a background process that teardown kills (by this PID) if it is still running. */
  spawn(cmd: string, args: string[]): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    return child;
  }

  /** Ends a process `spawn` started (by its PID) once what it was for is done, and resolves when it is gone. */
  async stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await gone;
  }

  /** An echo server (`sluice local serve`) in a namespace, killed by teardown; resolves once it listens. */
  serve(netns: string, port: number, protocol: 'tcp' | 'udp'): Promise<void> {
    const child = this.spawn('ip', ['netns', 'exec', netns, SLUICE, 'local', 'serve', '--protocol', protocol, '--port', String(port)]);
    return new Promise((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`echo server on ${protocol}/${port} in ${netns} exited (${code})`)));
    });
  }

  /** Runs a command in the background (teardown kills it if need be); resolves when it exits. */
  background(cmd: string, args: string[]): Promise<void> {
    const child = this.spawn(cmd, args);
    return new Promise((resolve) => child.on('exit', () => resolve()));
  }

  /** Netns names of this cluster that exist now. */
  netnsLeft(): string[] {
    return fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(`${this.name}-`)) : [];
  }

  /** Removes everything, whatever state the test left. */
  async teardown(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null && c.pid) c.kill('SIGKILL');
    if (fs.existsSync(path.join(this.dir, 'cluster.json'))) {
      const pid = this.config().agentPid;
      await this.local('down');
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const ns of this.netnsLeft()) await sh('ip', ['netns', 'del', ns]);
    fs.rmSync(this.bpfDir, { recursive: true, force: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.rmSync(this.stateDir, { recursive: true, force: true });
    fs.rmSync(this.socket, { force: true });
  }
}
