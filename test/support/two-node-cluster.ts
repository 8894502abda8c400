/**
 * A 2-node local cluster for tests (`sluice local up --nodes 2`): TestCluster's
 * names, plus what `up` wrote about its nodes, pods placed on a node, probes,
 * and a node's ipcache and routes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { must, TestCluster } from './local-cluster.ts';

export interface LocalNode {
  name: string;
  netns: string;
  address: string;
  podCIDRs: string[];
  socket: string;
  bpfDir: string;
  agentPid: number;
}

/** A 2-node test cluster: TestCluster's names, plus what `up --nodes 2` wrote about its nodes. */
export class TwoNodeCluster extends TestCluster {
  nodes(): LocalNode[] {
    return (JSON.parse(fs.readFileSync(path.join(this.dir, 'cluster.json'), 'utf8')) as { nodes: LocalNode[] }).nodes;
  }

  node(name: string): LocalNode {
    return this.nodes().find((n) => n.name === name)!;
  }

  /** Creates a pod on a node; resolves with its address. */
  async pod(ref: string, node: string, labels: Record<string, string> = {}): Promise<string> {
    const args = ['pod', 'create', ref, '--node', node, ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])];
    const r = await this.local(...args);
    if (r.code !== 0) throw new Error(`pod create ${ref}: ${r.stderr}`);
    const [ns, name] = ref.split('/');
    return (await this.pods()).find((p) => p.metadata.namespace === ns && p.metadata.name === name)!.status.podIP;
  }

  async connects(from: string, to: string, protocol: 'tcp' | 'udp' | 'icmp'): Promise<boolean> {
    // Between namespaces an allowed probe answers in milliseconds; a denied one waits out the timeout.
    return (await this.local('probe', from, to, '--protocol', protocol, '--timeout-ms', '800')).code === 0;
  }

  /** The node's ipcache (address → identity), read from its pinned map. */
  async ipcache(node: string): Promise<Map<string, number>> {
    const dump = JSON.parse(await must('bpftool', ['-j', 'map', 'dump', 'pinned', `${this.node(node).bpfDir}/maps/ipcache`])) as {
      formatted: { key: { family: number; addr: number[] }; value: { identity: number } };
    }[];
    return new Map(dump.filter((e) => e.formatted.key.family === 4).map((e) => [e.formatted.key.addr.slice(0, 4).join('.'), e.formatted.value.identity]));
  }

  /** Routes Sluice owns (protocol 83) in the node's namespace. */
  async nodeRoutes(node: string): Promise<string> {
    return must('ip', ['-n', this.node(node).netns, 'route', 'show', 'proto', '83']);
  }

  async teardown(): Promise<void> {
    const nodes = fs.existsSync(path.join(this.dir, 'cluster.json')) ? this.nodes() ?? [] : [];
    await super.teardown();
    // `local down` stops the agents and removes their sockets; after a failed test, make sure.
    for (const n of nodes) {
      try {
        process.kill(n.agentPid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
      fs.rmSync(n.socket, { force: true });
    }
  }
}
