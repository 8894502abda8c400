/**
 * Drives dist/sluice-cni directly, as a container runtime does, against a
 * TestCluster's agent, and inspects what an attachment left in the kernel
 * and the agent. Every netns it makes carries the cluster's name and is
 * removed by cleanup().
 */
import { parseCidr } from '../../lib/cidr.ts';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostVethName } from '../../cni/names.ts';
import { must, sh, SLUICE, SLUICE_CNI, TestCluster, type Ran } from './local-cluster.ts';

/** A CNI verb. */
export type Verb = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';

/** A parsed invocation: exit code, stdout as JSON (or undefined), raw output. */
export interface CniRun extends Ran {
  json: Record<string, unknown> | undefined;
}

/** A TestCluster plus helpers to invoke the plugin and look at what it left. */
export class CniHarness {
  readonly cluster = new TestCluster();
  readonly podCIDR6: string;
  private readonly netnsMade: string[] = [];
  private seq = 0;

  readonly dualStack: boolean;

  constructor(dualStack = true) {
    this.dualStack = dualStack;
    this.podCIDR6 = parseCidr(`fd5e:${this.cluster.id.slice(0, 4)}::/112`).text;
  }

  /** `sluice local up` with this cluster's names: its pod CIDR, plus an IPv6 one when dual stack, unless `cidrs` are given. */
  async up(cidrs: string[] = [this.cluster.podCIDR, ...(this.dualStack ? [this.podCIDR6] : [])]): Promise<void> {
    const c = this.cluster;
    await must(SLUICE, ['local', 'up', '--dir', c.dir, '--name', c.name, '--socket', c.socket, '--state-dir', c.stateDir, '--bpf-dir', c.bpfDir, ...cidrs.flatMap((x) => ['--pod-cidr', x])]);
  }

  /** The plugin entry of the cluster's conflist, with cniVersion and name: what a runtime puts on stdin. */
  conf(extra: Record<string, unknown> = {}, cniVersion = '1.1.0'): Record<string, unknown> {
    const list = JSON.parse(fs.readFileSync(this.cluster.config().cniConfFile, 'utf8')) as { plugins: Record<string, unknown>[] };
    return { cniVersion, name: 'sluice', ...list.plugins[0], ...extra };
  }

  /** The cluster's CNI log lines, parsed. */
  log(): { verb: string; containerID: string; ms: number; outcome: string }[] {
    const file = this.conf()['logFile'] as string;
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
  }

  /** Makes a fresh netns named after the cluster; returns its name. */
  async netns(): Promise<string> {
    const name = `${this.cluster.name}-n${this.seq++}`;
    await must('ip', ['netns', 'add', name]);
    this.netnsMade.push(name);
    return name;
  }

  /** A fresh container ID (64 hex characters, as containerd makes them). */
  containerID(): string {
    return randomBytes(32).toString('hex');
  }

  /** Runs the plugin with `verb`; stdin is `conf` (an object, or a raw string). */
  async run(
    verb: Verb,
    opts: { containerID?: string; netns?: string; ifname?: string; conf?: Record<string, unknown> | string; env?: Record<string, string> } = {},
  ): Promise<CniRun> {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: verb, CNI_PATH: '/usr/lib/cni' };
    if (opts.containerID !== undefined) env.CNI_CONTAINERID = opts.containerID;
    if (opts.netns !== undefined) env.CNI_NETNS = opts.netns.startsWith('/') || opts.netns === '' ? opts.netns : `/var/run/netns/${opts.netns}`;
    if (verb === 'ADD' || verb === 'DEL' || verb === 'CHECK') env.CNI_IFNAME = opts.ifname ?? 'eth0';
    const stdin = typeof opts.conf === 'string' ? opts.conf : JSON.stringify(opts.conf ?? this.conf());
    const r = await sh(SLUICE_CNI, [], { input: stdin, env: { ...env, ...opts.env } });
    let json: Record<string, unknown> | undefined;
    try {
      json = r.stdout.trim() === '' ? undefined : (JSON.parse(r.stdout) as Record<string, unknown>);
    } catch {
      json = undefined;
    }
    return { ...r, json };
  }

  /** ADD that must succeed; returns the result. */
  async add(containerID: string, netns: string, ifname = 'eth0', conf?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const r = await this.run('ADD', { containerID, netns, ifname, ...(conf ? { conf } : {}) });
    if (r.code !== 0 || r.json === undefined) throw new Error(`ADD ${containerID} exited ${r.code}: ${r.stdout}${r.stderr}`);
    return r.json;
  }

  /** GET on the agent. */
  async agent<T>(path: string): Promise<T> {
    const { agentRequest } = await import('../../contract/client.ts');
    return agentRequest<T>(this.cluster.socket, 'GET', path);
  }

  /**
   * Everything of one attachment that exists now, as readable strings; []
   * when nothing is left: host veth, TCX pins, endpoint, allocation, host routes.
   */
  async leftovers(containerID: string, ifname = 'eth0'): Promise<string[]> {
    const host = hostVethName(containerID, ifname);
    const out: string[] = [];
    if ((await sh('ip', ['link', 'show', host])).code === 0) out.push(`host veth ${host}`);
    const linksDir = `${this.cluster.bpfDir}/links`;
    if (fs.existsSync(linksDir)) for (const p of fs.readdirSync(linksDir)) if (p.startsWith(host)) out.push(`pin ${p}`);
    const endpoints = await this.agent<{ containerID: string; ifname: string }[]>('/v1/endpoints');
    if (endpoints.some((e) => e.containerID === containerID && e.ifname === ifname)) out.push('endpoint');
    const ipam = await this.agent<{ allocations: { containerID: string; ifname: string; ip: string }[] }>('/v1/ipam');
    for (const a of ipam.allocations) if (a.containerID === containerID && a.ifname === ifname) out.push(`allocation ${a.ip}`);
    const routes = (await sh('ip', ['-o', 'route', 'show', 'dev', host])).stdout + (await sh('ip', ['-6', '-o', 'route', 'show', 'dev', host])).stdout;
    if (routes.trim() !== '') out.push(`routes ${routes.trim()}`);
    return out;
  }

  /** Interfaces in a netns other than lo. */
  async podLinks(netns: string): Promise<string[]> {
    const text = await must('ip', ['-n', netns, '-o', 'link', 'show']);
    return text
      .split('\n')
      .map((l) => l.split(': ')[1]?.split('@')[0])
      .filter((n): n is string => n !== undefined && n !== 'lo');
  }

  /** Stops the agent (SIGTERM) and waits until its process is gone. */
  async stopAgent(): Promise<void> {
    const pid = this.cluster.config().agentPid;
    process.kill(pid, 'SIGTERM');
    for (;;) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Starts the agent again (`local up` on the existing cluster). */
  async startAgent(): Promise<void> {
    await this.cluster.up();
  }

  /** Removes every netns made here, then the cluster. */
  async cleanup(): Promise<void> {
    for (const ns of this.netnsMade) await sh('ip', ['netns', 'del', ns]);
    await this.cluster.teardown();
  }
}
