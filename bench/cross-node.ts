/**
 * Pod-to-pod across nodes: iperf3 TCP throughput between two pods on two
 * nodes of a local cluster, Sluice beside plain-kernel paths of the same
 * shape, in one run, alternating:
 * - underlay: node to node over the bridge that joins them (the floor of
 *   every path below: each crosses it once);
 * - routed veths: pod netns ─veth─ node netns ─underlay─ node netns ─veth─
 *   pod netns, with plain routes (no eBPF): what native routing costs without
 *   Sluice;
 * - routed veths + VXLAN: the same through a kernel VXLAN device per node;
 * - Sluice, native routing and Sluice, VXLAN: `sluice local up --nodes 2`.
 * Each round visits every path once, in an order that rotates from round to
 * round; the table gives medians over rounds (1 and 4 streams) and each
 * Sluice mode's ratio to the plain path of the same shape. Prints a table and
 * a JSON line.
 *
 * usage (root, after make): node bench/cross-node.ts [--rounds 5] [--seconds 3]
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { addNetns, cleanupNow, killPid, onCleanup, sh, shQuiet } from './cleanup.ts';
import { IPERF_PORT, startInNetns, throughputGbps } from './net-tool.ts';
import { fmt, machine, median, round, table } from './stats.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SLUICE = path.join(ROOT, 'dist/sluice');
const STREAMS = [1, 4] as const;
/** Underlay and pod addresses of the plain paths (their namespaces are private, so fixed ranges cannot collide). */
const PLAIN = { underlay: '172.31.250', podA: '10.99.0', podB: '10.99.1' } as const;
const VXLAN_PORT = 4789;

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, seconds: { type: 'string', default: '3' } } });
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);

/** A client pod netns and the server pod's address (its netns runs iperf3 -s). */
interface Path {
  name: string;
  /** The plain path of the same shape a Sluice row is compared with. */
  peer?: string;
  clientNs: string;
  serverNs: string;
  serverIp: string;
}

const id = randomBytes(2).toString('hex');

/** Two node namespaces on a bridge in an underlay namespace; optionally a VXLAN device on each. */
function plainNodes(prefix: string, vxlan: boolean): { n1: string; n2: string } {
  const ul = `${prefix}-ul`;
  addNetns(ul);
  sh('ip', ['-n', ul, 'link', 'add', 'br0', 'type', 'bridge']);
  sh('ip', ['-n', ul, 'link', 'set', 'br0', 'up']);
  const nodes = { n1: `${prefix}-n1`, n2: `${prefix}-n2` };
  for (const [i, ns] of [nodes.n1, nodes.n2].entries()) {
    addNetns(ns);
    sh('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter']);
    sh('ip', ['-n', ul, 'link', 'add', `p${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['-n', ul, 'link', 'set', `p${i + 1}`, 'master', 'br0', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `${PLAIN.underlay}.${i + 1}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    if (vxlan) {
      const mac = `02:99:00:00:00:0${i + 1}`;
      sh('ip', ['-n', ns, 'link', 'add', 'vx0', 'address', mac, 'type', 'vxlan', 'id', '1', 'dstport', String(VXLAN_PORT), 'local', `${PLAIN.underlay}.${i + 1}`, 'dev', 'eth0', 'nolearning']);
      sh('ip', ['-n', ns, 'link', 'set', 'vx0', 'up']);
    }
  }
  return nodes;
}

/** A pod netns behind a node netns (veth, /24, default route via the node), as a CNI's routed mode builds it. */
function plainPod(ns: string, node: string, subnet: string, mtu: number): void {
  addNetns(ns);
  sh('ip', ['-n', node, 'link', 'add', 'vpod', 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(mtu), 'netns', ns]);
  sh('ip', ['-n', node, 'addr', 'add', `${subnet}.1/24`, 'dev', 'vpod']);
  sh('ip', ['-n', node, 'link', 'set', 'vpod', 'up']);
  sh('ip', ['-n', ns, 'addr', 'add', `${subnet}.2/24`, 'dev', 'eth0']);
  sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', `${subnet}.1`]);
}

/** The routed-veth path (optionally through VXLAN): pod A on node 1, pod B on node 2. */
function plainPath(name: string, prefix: string, vxlan: boolean): Path {
  const { n1, n2 } = plainNodes(prefix, vxlan);
  const mtu = vxlan ? 1450 : 1500;
  plainPod(`${prefix}-pa`, n1, PLAIN.podA, mtu);
  plainPod(`${prefix}-pb`, n2, PLAIN.podB, mtu);
  const remote = (node: string, other: number, subnet: string) => {
    if (!vxlan) {
      sh('ip', ['-n', node, 'route', 'add', `${subnet}.0/24`, 'via', `${PLAIN.underlay}.${other}`]);
      return;
    }
    const mac = `02:99:00:00:00:0${other}`;
    sh('bridge', ['-n', node, 'fdb', 'append', mac, 'dev', 'vx0', 'dst', `${PLAIN.underlay}.${other}`, 'self', 'permanent']);
    sh('ip', ['-n', node, 'neigh', 'replace', `${subnet}.0`, 'lladdr', mac, 'dev', 'vx0', 'nud', 'permanent']);
    sh('ip', ['-n', node, 'route', 'add', `${subnet}.0/24`, 'via', `${subnet}.0`, 'dev', 'vx0', 'onlink']);
  };
  remote(n1, 2, PLAIN.podB);
  remote(n2, 1, PLAIN.podA);
  return { name, clientNs: `${prefix}-pa`, serverNs: `${prefix}-pb`, serverIp: `${PLAIN.podB}.2` };
}

/** A 2-node Sluice local cluster in this routing mode with pod a on node-1 and pod b on node-2; removed at cleanup. */
function sluicePath(name: string, peer: string, routing: 'native' | 'vxlan'): Path {
  const cid = `xn${id}${routing[0]}`;
  const dir = `/tmp/sluice-bench-${cid}`;
  const socket = `/run/sluice/bench-${cid}.sock`;
  const stateDir = `${dir}-state`;
  const bpfDir = `/sys/fs/bpf/sluice-bench-${cid}`;
  onCleanup(`cluster ${cid}`, () => {
    const config = fs.existsSync(`${dir}/cluster.json`) ? (JSON.parse(fs.readFileSync(`${dir}/cluster.json`, 'utf8')) as { nodes?: { agentPid: number; socket: string }[] }) : {};
    shQuiet(SLUICE, ['local', '--dir', dir, 'down']);
    for (const n of config.nodes ?? []) {
      killPid(n.agentPid);
      fs.rmSync(n.socket, { force: true });
    }
    for (const ns of fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(`${cid}-`))) shQuiet('ip', ['netns', 'del', ns]);
    for (const p of [dir, stateDir, bpfDir]) fs.rmSync(p, { recursive: true, force: true });
  });
  const podCIDR = `10.${routing === 'native' ? 98 : 97}.0.0/16`;
  sh(SLUICE, ['local', 'up', '--dir', dir, '--name', cid, '--socket', socket, '--state-dir', stateDir, '--bpf-dir', bpfDir, '--pod-cidr', podCIDR, '--nodes', '2', '--routing', routing]);
  sh(SLUICE, ['local', '--dir', dir, 'pod', 'create', 'bench/a', '--node', 'node-1']);
  sh(SLUICE, ['local', '--dir', dir, 'pod', 'create', 'bench/b', '--node', 'node-2']);
  const pods = (JSON.parse(sh(SLUICE, ['local', '--dir', dir, 'get', 'pods', '-o', 'json'])) as { items: { metadata: { name: string; annotations: Record<string, string> }; status: { podIP: string } }[] }).items;
  const [a, b] = ['a', 'b'].map((n) => pods.find((p) => p.metadata.name === n)!);
  return { name, peer, clientNs: a!.metadata.annotations['sluice.dev/netns']!, serverNs: b!.metadata.annotations['sluice.dev/netns']!, serverIp: b!.status.podIP };
}

// --- Run ---------------------------------------------------------------------

const samples = new Map<string, Map<number, number[]>>();
try {
  console.error('setting up: plain routed and VXLAN paths, two 2-node Sluice clusters (native, VXLAN)');
  const routed = plainPath('routed veths', `xr${id}`, false);
  const paths: Path[] = [
    { name: 'underlay (node to node)', clientNs: `xr${id}-n1`, serverNs: `xr${id}-n2`, serverIp: `${PLAIN.underlay}.2` },
    routed,
    plainPath('routed veths + VXLAN', `xv${id}`, true),
    sluicePath('Sluice, native routing', 'routed veths', 'native'),
    sluicePath('Sluice, VXLAN', 'routed veths + VXLAN', 'vxlan'),
  ];
  // One iperf3 server per server namespace (the underlay row uses node 2 of the routed path).
  for (const p of paths) await startInNetns(p.serverNs, ['iperf3', '-s', '-p', String(IPERF_PORT), '--forceflush'], 'Server listening');
  for (let r = 0; r < ROUNDS; r++) {
    console.error(`round ${r + 1}/${ROUNDS}`);
    const order = paths.map((_, i) => paths[(i + r) % paths.length]!);
    for (const p of order) {
      for (const streams of STREAMS) {
        const gbps = throughputGbps(p.clientNs, p.serverIp, SECONDS, streams);
        const byStreams = samples.get(p.name) ?? samples.set(p.name, new Map()).get(p.name)!;
        (byStreams.get(streams) ?? byStreams.set(streams, []).get(streams)!).push(gbps);
      }
    }
  }
  const med = (name: string, streams: number) => median(samples.get(name)?.get(streams) ?? []);
  const rows = paths.map((p) => [
    p.name,
    ...STREAMS.map((s) => fmt(med(p.name, s), 2)),
    ...STREAMS.map((s) => (p.peer ? fmt(med(p.name, s) / med(p.peer, s), 2) : '')),
  ]);
  console.log(`\ncross-node TCP throughput, Gbit/s (iperf3, medians of ${ROUNDS} rounds of ${SECONDS} s; ratio: Sluice / plain path of the same shape)`);
  console.log(table(['path', ...STREAMS.map((s) => `${s} stream${s > 1 ? 's' : ''}`), ...STREAMS.map((s) => `ratio ${s}`)], rows));
  const results = Object.fromEntries(
    paths.map((p) => [
      p.name,
      {
        ...Object.fromEntries(STREAMS.map((s) => [`gbps${s}`, round(med(p.name, s))])),
        ...(p.peer ? { peer: p.peer, ...Object.fromEntries(STREAMS.map((s) => [`ratio${s}`, round(med(p.name, s) / med(p.peer!, s))])) } : {}),
        samples: Object.fromEntries(STREAMS.map((s) => [`gbps${s}`, (samples.get(p.name)?.get(s) ?? []).map((x) => round(x))])),
      },
    ]),
  );
  console.log(JSON.stringify({ bench: 'cross-node', at: new Date().toISOString(), machine: machine(), rounds: ROUNDS, seconds: SECONDS, results }));
} finally {
  cleanupNow();
}
