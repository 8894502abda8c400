/**
 * The fuzzer's cluster: the NetworkPolicy model (namespaces x, y, z; pods a,
 * b, c) on a dual-stack local cluster with names of its own (prefix "fz"),
 * one worker (worker.py) per pod, and a teardown that removes everything,
 * workers included, whatever state a run left it in. For the VXLAN phase,
 * the same on two nodes joined by a VXLAN overlay (prefix "fzvx"), each pod
 * on the node vxlan-grammar.ts places it on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { NAMESPACES, PODS, baseState, namespaceManifest, podManifest, type ClusterState } from '../netpol/model.ts';
import { ROOT, removeLocalCluster, run, type ListedPod } from '../netpol/local-cluster.ts';
import { recordApply, recordDelete } from '../netpol/state-changes.ts';
import type { Manifest, ObjectRef } from '../netpol/types.ts';
import YAML from 'yaml';
import { bigIntToIp, parseCidr } from '../../lib/cidr.ts';
import type { Addressing, NodeAddressing, VxlanAddressing, Wire } from './wire.ts';
import { nodeOfPod, VXLAN_NODES, type VxlanNode } from './vxlan-grammar.ts';

const SLUICE = path.join(ROOT, 'dist/sluice');
const PYTHON = '/usr/bin/python3';
const WORKER = path.join(import.meta.dirname, 'worker.py');

/** What a worker sent for one packet: the key of each frame, and of a VXLAN packet's inner IP packet. */
export interface SentPacket {
  frames: string[];
  inner: string | null;
}

/** A process's command line, or '' when there is no such process. */
function processCmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** One pod's worker: JSON lines in and out. */
class Worker {
  private readonly lines: AsyncIterator<string>;
  private queue: Promise<unknown> = Promise.resolve();
  readonly stderr: string[] = [];

  readonly pod: string;
  readonly child: ChildProcess;

  constructor(pod: string, child: ChildProcess) {
    this.pod = pod;
    this.child = child;
    this.lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr.push(d.toString());
      if (this.stderr.length > 50) this.stderr.shift();
    });
  }

  async next(): Promise<Record<string, unknown>> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`worker of ${this.pod} exited: ${this.stderr.join('').slice(-2000)}`);
    return JSON.parse(r.value) as Record<string, unknown>;
  }

  /** Sends one command and waits for its answer (commands are serialised). */
  call(cmd: object): Promise<Record<string, unknown>> {
    const p = this.queue.then(() => {
      this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
      return this.next();
    });
    this.queue = p.catch(() => undefined);
    return p;
  }
}

/** A node of the VXLAN cluster, as `local up` wrote it in cluster.json. */
interface ClusterNode {
  name: string;
  netns: string;
  address: string;
  podCIDRs: string[];
  socket: string;
  agentPid: number;
}

/** The first address after a CIDR's network: the gateway IPAM gives its pods. */
function gatewayOf(cidr: string): string {
  const c = parseCidr(cidr);
  return bigIntToIp(c.base + 1n, c.family);
}

/** A dual-stack model cluster with unique names: on this host, or (`vxlan`) on two nodes joined by a VXLAN overlay. */
export class FuzzCluster {
  readonly id = randomBytes(3).toString('hex');
  readonly vxlanMode: boolean;
  readonly name: string;
  readonly dir: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly bpfDir: string;
  readonly podCIDR: string;
  readonly podCIDR6: string;
  private readonly workers = new Map<string, Worker>();
  private manifestSeq = 0;
  private state: ClusterState | null = null;
  readonly addressing: Addressing;
  /** The nodes' addresses and VNI (VXLAN mode, once up). */
  vxlan: VxlanAddressing | null = null;

  constructor(opts: { vxlan?: boolean } = {}) {
    this.vxlanMode = opts.vxlan === true;
    const prefix = this.vxlanMode ? 'fzvx' : 'fuzz';
    this.name = `${this.vxlanMode ? 'fzvx' : 'fz'}${this.id}`;
    this.dir = `/tmp/sluice-${prefix}-${this.id}`;
    this.stateDir = `/tmp/sluice-${prefix}-${this.id}-state`;
    this.socket = `/run/sluice/${prefix}-${this.id}.sock`;
    this.bpfDir = `/sys/fs/bpf/sluice-${prefix}-${this.id}`;
    // 10.100-149.x.0/24: away from the ranges of the test clusters (200-249) and the conformance suite (150-199).
    this.podCIDR = `10.${100 + (parseInt(this.id.slice(0, 2), 16) % 50)}.${parseInt(this.id.slice(2, 4), 16)}.0/24`;
    this.podCIDR6 = `fd00:${this.vxlanMode ? 'f3' : 'f2'}:${this.id.slice(0, 4)}::/120`;
    this.addressing = { ipv4: new Map(), ipv6: new Map(), mac: new Map(), gatewayMac: new Map(), cidr4: this.podCIDR, cidr6: this.podCIDR6 };
  }

  local(...args: string[]): Promise<string> {
    return run(SLUICE, ['local', '--dir', this.dir, ...args]);
  }

  /** The nodes `local up --nodes 2` made (VXLAN mode), from cluster.json; none before it wrote them. */
  private nodes(): ClusterNode[] {
    const file = path.join(this.dir, 'cluster.json');
    if (!fs.existsSync(file)) return [];
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes?: ClusterNode[] }).nodes ?? [];
  }

  /** The nodes' underlay addresses, gateways, VXLAN device MACs and VNI, read from cluster.json and the nodes' kernels. */
  private async readVxlan(): Promise<VxlanAddressing> {
    const nodes = new Map<VxlanNode, NodeAddressing>();
    let vni = -1;
    for (const node of this.nodes()) {
      const links = JSON.parse(await run('ip', ['-n', node.netns, '-d', '-j', 'link', 'show', 'type', 'vxlan'])) as { address: string; linkinfo: { info_data: { id: number } } }[];
      if (links.length !== 1) throw new Error(`node ${node.name} has ${links.length} VXLAN devices, not one`);
      vni = links[0]!.linkinfo.info_data.id;
      const cidr4 = node.podCIDRs.find((c) => !c.includes(':'));
      const cidr6 = node.podCIDRs.find((c) => c.includes(':'));
      if (!cidr4 || !cidr6) throw new Error(`node ${node.name} lacks a pod CIDR of each family: ${node.podCIDRs.join(', ')}`);
      nodes.set(node.name as VxlanNode, { address: node.address, gateway4: gatewayOf(cidr4), gateway6: gatewayOf(cidr6), vtepMac: links[0]!.address });
    }
    for (const n of VXLAN_NODES) if (!nodes.has(n)) throw new Error(`the cluster has no node ${n}`);
    return { nodes, vni };
  }

  /** Cluster, model pods (in VXLAN mode each on its node), workers. */
  async up(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const layout = this.vxlanMode ? ['--nodes', String(VXLAN_NODES.length), '--routing', 'vxlan'] : [];
    await run(SLUICE, ['local', 'up', '--dir', this.dir, '--name', this.name, '--socket', this.socket, '--state-dir', this.stateDir, '--bpf-dir', this.bpfDir, '--pod-cidr', this.podCIDR, '--pod-cidr', this.podCIDR6, ...layout]);
    if (this.vxlanMode) this.vxlan = await this.readVxlan();
    await this.applyRaw(NAMESPACES.map((ns) => namespaceManifest(ns)));
    const placed = (p: string) => {
      const m = podManifest(p);
      return this.vxlanMode ? { ...m, spec: { ...m.spec, nodeName: nodeOfPod(p) } } : m;
    };
    await this.applyRaw(PODS.map(placed));
    const netns = new Map<string, string>();
    const pods = (JSON.parse(await this.local('get', 'pods', '-o', 'json')) as { items: (ListedPod & { status?: { podIPs?: { ip: string }[] } })[] }).items;
    for (const pod of pods) {
      const ref = `${pod.metadata.namespace}/${pod.metadata.name}`;
      const ips = pod.status?.podIPs?.map((x) => x.ip) ?? [];
      const v4 = ips.find((ip) => !ip.includes(':'));
      const v6 = ips.find((ip) => ip.includes(':'));
      const ns = pod.metadata.annotations?.['sluice.dev/netns'];
      if (!v4 || !v6 || !ns) throw new Error(`pod ${ref} lacks an address of each family or a netns: ${JSON.stringify(pod)}`);
      this.addressing.ipv4.set(ref, v4);
      this.addressing.ipv6.set(ref, v6);
      netns.set(ref, ns);
    }
    this.state = baseState(this.addressing.ipv4);
    await Promise.all(
      PODS.map(async (ref, i) => {
        const peer = this.addressing.ipv4.get(PODS[(i + 1) % PODS.length]!)!;
        const child = spawn('ip', ['netns', 'exec', netns.get(ref)!, PYTHON, WORKER, peer], { stdio: ['pipe', 'pipe', 'pipe'] });
        const w = new Worker(ref, child);
        this.workers.set(ref, w);
        const ready = (await w.next()) as { mac: string; gateway_mac: string };
        this.addressing.mac.set(ref, ready.mac);
        this.addressing.gatewayMac.set(ref, ready.gateway_mac);
      }),
    );
  }

  /** The evaluator's picture of the cluster now. */
  current(): ClusterState {
    if (!this.state) throw new Error('the cluster is not up');
    return this.state;
  }

  private async applyRaw(objects: object[]): Promise<void> {
    if (objects.length === 0) return;
    const file = path.join(this.dir, 'manifests', `${String(++this.manifestSeq).padStart(5, '0')}.yaml`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, objects.map((o) => YAML.stringify(o)).join('---\n'));
    await this.local('apply', '-f', file);
  }

  /** `apply -f` (returns once the change is in the datapath), recorded for the evaluator. */
  async apply(objects: Manifest[]): Promise<void> {
    await this.applyRaw(objects);
    recordApply(this.current(), objects);
  }

  /** `delete -f`, recorded. */
  async delete(refs: ObjectRef[]): Promise<void> {
    if (refs.length === 0) return;
    const docs = refs.map((r) => ({ apiVersion: r.kind === 'NetworkPolicy' ? 'networking.k8s.io/v1' : 'v1', kind: r.kind, metadata: { name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) } }));
    const file = path.join(this.dir, 'manifests', `${String(++this.manifestSeq).padStart(5, '0')}.yaml`);
    fs.writeFileSync(file, docs.map((o) => YAML.stringify(o)).join('---\n'));
    await this.local('delete', '-f', file, '--ignore-not-found');
    recordDelete(this.current(), refs);
  }

  /** Sends each pod's packets from its worker (all pods at once); the frame keys of each packet (and of a VXLAN packet's inner packet), by pod. */
  async send(byPod: Map<string, Wire[]>): Promise<Map<string, SentPacket[]>> {
    const out = new Map<string, SentPacket[]>();
    await Promise.all(
      [...byPod].map(async ([pod, packets]) => {
        const r = (await this.worker(pod).call({ op: 'send', packets })) as { hashes: string[][]; inner: (string | null)[] };
        out.set(pod, r.hashes.map((frames, i) => ({ frames, inner: r.inner[i] ?? null })));
      }),
    );
    return out;
  }

  /** The frames a worker would send for these packets, as hex (nothing is sent). */
  async build(pod: string, packets: Wire[]): Promise<string[][]> {
    return ((await this.worker(pod).call({ op: 'build', packets })) as { frames: string[][] }).frames;
  }

  /** Every frame key each pod's worker saw arrive since the last call, with counts. */
  async seen(): Promise<Map<string, Record<string, number>>> {
    const out = new Map<string, Record<string, number>>();
    await Promise.all(PODS.map(async (pod) => out.set(pod, ((await this.worker(pod).call({ op: 'seen' })) as { seen: Record<string, number> }).seen)));
    return out;
  }

  private worker(pod: string): Worker {
    const w = this.workers.get(pod);
    if (!w) throw new Error(`no worker for ${pod}`);
    return w;
  }

  /** Removes everything of this cluster, whatever state it is in; returns what could not be removed. */
  async teardown(): Promise<string[]> {
    for (const w of this.workers.values()) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    }
    this.workers.clear();
    const nodes = this.nodes();
    const problems = await removeLocalCluster(this);
    // `local down` stops the node agents and removes their sockets; should one still run, end it, but only while that PID is still its agent.
    for (const n of nodes) {
      if (n.agentPid > 0 && processCmdline(n.agentPid).includes(n.socket)) {
        try {
          process.kill(n.agentPid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      fs.rmSync(n.socket, { force: true });
    }
    return problems;
  }
}
