/**
 * Services: Sluice's socket load balancer against kube-proxy's iptables mode
 * (issue 17), at N ClusterIP Services of one backend each, side by side in
 * one run, alternating:
 * - Sluice: a 2-node `sluice local` cluster, socket LB on (the default);
 * - kube-proxy: another 2-node cluster with the agent at `--socket-lb off`,
 *   and the rules kube-proxy's iptables mode writes for N Services
 *   (KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-* with DNAT, one KUBE-SERVICES
 *   match per Service port, masquerade marks, the filter chains) loaded with
 *   iptables-restore into node-1's network namespace, so ClusterIP packets
 *   take that node's netfilter NAT. Only that namespace's tables are written.
 * In both, the client and the server pod (net-tool's echo server) are on
 * node-1, and every Service selects the server pod. The peer's agents hold
 * as many Service objects, at other ClusterIPs (see DECOY_OFFSET), so that
 * they never translate the ClusterIPs kube-proxy serves.
 *
 * Figures at each N: new connections per second to the last-created Service
 * (net-tool crr, 1 and 8 in flight; its KUBE-SERVICES match is the last of N,
 * kube-proxy's order being Go map order, i.e. random, so the walk is N/2 on
 * average), µs per connection at 1 in flight, the time to program the N
 * Services from none (Sluice: the Service objects written to the datastore
 * as `local apply` stores them, the agents told to sync, until the last
 * Service answers; kube-proxy: the wall time of its full iptables-restore),
 * and one more Service at N (Sluice: write + sync until it answers;
 * kube-proxy: the partial restore of kube-proxy ≥ 1.27 — KUBE-SERVICES in full
 * plus the new chains — and the full restore of kube-proxy before it).
 *
 * Before measuring it checks that each path works as claimed: the Sluice
 * cluster's node has no NAT rules and its ClusterIP answers; the peer's
 * ClusterIP does not answer before its rules are loaded, does after, and the
 * last Service's DNAT rule counts the packets.
 *
 * usage (root, after make): node bench/services-vs-kube-proxy.ts [--services 100,5000] [--rounds 3] [--seconds 1] [--extra 3] [--full]
 *   --full: --services 100,5000,10000 --rounds 5 --seconds 3
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { LocalDatastore, type KubeObject } from '../agent/datastore/local.ts';
import { allocateService } from '../cli/local/services.ts';
import { cleanupNow, killPid, onCleanup, sh, shQuiet } from './cleanup.ts';
import { buildNetTool, startInNetns } from './net-tool.ts';
import { fmt, machine, median, round, table } from './stats.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SLUICE = path.join(ROOT, 'dist/sluice');
const PORT = 7168;
const NAMESPACE = 'bench';
const SERVER_LABELS = { app: 'server' };

const { values } = parseArgs({
  options: {
    services: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    extra: { type: 'string', default: '3' },
    full: { type: 'boolean', default: false },
  },
});
const SIZES = (values.services ?? (values.full ? '100,5000,10000' : '100,5000')).split(',').map(Number);
const ROUNDS = Number(values.rounds ?? (values.full ? 5 : 3));
const SECONDS = Number(values.seconds ?? (values.full ? 3 : 1));
/** How many one-more-Service syncs at each N (medians). */
const EXTRA = Number(values.extra);
if (Math.max(...SIZES) + EXTRA >= 32_768) throw new Error('at most 32,767 Services (ClusterIPs: see DECOY_OFFSET)');
const INFLIGHT = [1, 8] as const;
const PIN = os.cpus().length >= 2;
const pinned = (cpu: string, cmd: string[]) => (PIN ? ['taskset', '-c', cpu, ...cmd] : cmd);

const id = randomBytes(2).toString('hex');
/** Four second octets of 10.x/16 of our own (pod and Service CIDRs of both clusters), away from 10.96.0.0/12 (the default Service CIDR), 10.244/16 and the other benches' 10.9x. */
const octet = 112 + (parseInt(id.slice(0, 2), 16) % 32) * 4;

// --- Clusters ------------------------------------------------------------------

interface Side {
  label: string;
  dir: string;
  /** node-1's network namespace (where the peer's rules live). */
  nodeNetns: string;
  sockets: string[];
  serviceCidr: string;
  clientNs: string;
  serverIp: string;
  podCidr: string;
  store: LocalDatastore;
}

/** A 2-node cluster (pods on node-1), removed at cleanup; its Service CIDR is its own so that no other socket LB on the host translates its ClusterIPs. */
function cluster(label: string, cid: string, podOctet: number, serviceOctet: number, agentArgs: string[]): Side {
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
  const serviceCidr = `10.${serviceOctet}.0.0/16`;
  const podCidr = `10.${podOctet}.0.0/16`;
  sh(SLUICE, ['local', 'up', '--dir', dir, '--name', cid, '--socket', socket, '--state-dir', stateDir, '--bpf-dir', bpfDir, '--pod-cidr', podCidr, '--nodes', '2', `--agent-arg=--service-cidr=${serviceCidr}`, ...agentArgs.map((a) => `--agent-arg=${a}`)]);
  sh(SLUICE, ['local', '--dir', dir, 'pod', 'create', `${NAMESPACE}/client`, '--node', 'node-1']);
  sh(SLUICE, ['local', '--dir', dir, 'pod', 'create', `${NAMESPACE}/server`, '--node', 'node-1', ...Object.entries(SERVER_LABELS).flatMap(([k, v]) => ['--label', `${k}=${v}`])]);
  const pods = (JSON.parse(sh(SLUICE, ['local', '--dir', dir, 'get', 'pods', '-o', 'json'])) as { items: { metadata: { name: string; annotations: Record<string, string> }; status: { podIP: string } }[] }).items;
  const [client, server] = ['client', 'server'].map((n) => pods.find((p) => p.metadata.name === n)!);
  const config = JSON.parse(fs.readFileSync(`${dir}/cluster.json`, 'utf8')) as { nodes: { name: string; netns: string; socket: string }[] };
  return {
    label,
    dir,
    nodeNetns: config.nodes.find((n) => n.name === 'node-1')!.netns,
    sockets: config.nodes.map((n) => n.socket),
    serviceCidr,
    clientNs: client!.metadata.annotations['sluice.dev/netns']!,
    serverIp: server!.status.podIP,
    podCidr,
    store: new LocalDatastore(path.join(dir, 'datastore')),
  };
}

/** ClusterIP of Service i (from 1) of a side. */
function clusterIp(side: Side, i: number): string {
  const [a, b] = side.serviceCidr.split('.');
  return `${a}.${b}.${(i >> 8) & 255}.${i & 255}`;
}

const serviceName = (i: number) => `s${i}`;

/**
 * The peer's agents hold as many Services as Sluice's (the same datastore
 * load: files, parsing, syncs), at ClusterIPs this far above the ones
 * kube-proxy's rules serve: an agent that knows a Service translates its
 * packets itself (per packet in from-pod, also at --socket-lb off), and the
 * peer's packets must reach the node's netfilter untranslated.
 */
const DECOY_OFFSET = 32_768;

/** Stores Services from..to (inclusive) as `sluice local apply` stores them (allocateService, the ClusterIP given: that of Service i + ipOffset). */
function writeServices(side: Side, from: number, to: number, ipOffset = 0): void {
  for (let i = from; i <= to; i++) {
    const obj: KubeObject = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { namespace: NAMESPACE, name: serviceName(i) },
      spec: { selector: SERVER_LABELS, clusterIP: clusterIp(side, i + ipOffset), ports: [{ port: PORT, targetPort: PORT, protocol: 'TCP' }] },
    };
    side.store.put(allocateService(obj, null, [], [side.serviceCidr]));
  }
}

/** Removes every Service of the side from its datastore. */
function removeServices(side: Side): void {
  for (const s of side.store.list('Service')) side.store.delete('Service', s.metadata.name, s.metadata.namespace);
}

/** Every node agent of the side applies its datastore now (what `local apply` ends with). */
async function syncAgents(side: Side): Promise<void> {
  await Promise.all(side.sockets.map((s) => agentRequest(s, 'POST', '/v1/datastore/sync')));
}

// --- kube-proxy's rules ----------------------------------------------------------

const MASQ_MARK = '0x4000';

function chainHash(prefix: string, key: string): string {
  // kube-proxy: base32 of sha256 of "<ns>/<name>:<port>" + protocol (+ endpoint), 16 characters; hex here.
  return `${prefix}${createHash('sha256').update(key).digest('hex').slice(0, 16).toUpperCase()}`;
}

interface ServiceRules {
  svcChain: string;
  sepChain: string;
  servicesRule: string;
  chainRules: string[];
}

function serviceRules(side: Side, i: number): ServiceRules {
  const spn = `${NAMESPACE}/${serviceName(i)}`;
  const ip = clusterIp(side, i);
  const ep = `${side.serverIp}:${PORT}`;
  const svcChain = chainHash('KUBE-SVC-', `${spn}tcp`);
  const sepChain = chainHash('KUBE-SEP-', `${spn}tcp${ep}`);
  return {
    svcChain,
    sepChain,
    servicesRule: `-A KUBE-SERVICES -d ${ip}/32 -p tcp -m comment --comment "${spn} cluster IP" -m tcp --dport ${PORT} -j ${svcChain}`,
    chainRules: [
      `-A ${svcChain} ! -s ${side.podCidr} -d ${ip}/32 -p tcp -m comment --comment "${spn} cluster IP" -m tcp --dport ${PORT} -j KUBE-MARK-MASQ`,
      `-A ${svcChain} -m comment --comment "${spn} -> ${ep}" -j ${sepChain}`,
      `-A ${sepChain} -s ${side.serverIp}/32 -m comment --comment "${spn}" -j KUBE-MARK-MASQ`,
      `-A ${sepChain} -p tcp -m comment --comment "${spn}" -m tcp -j DNAT --to-destination ${ep}`,
    ],
  };
}

/** The chains kube-proxy owns and rewrites on every sync (their rules; Service chains come separately). */
const FILTER_CHAINS = ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-PROXY-FIREWALL', 'KUBE-NODEPORTS'];
const NAT_CHAINS = ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS'];

/**
 * An iptables-restore --noflush input as kube-proxy's syncProxyRules writes
 * it: every top-level chain in full, and the Service chains of `changed`
 * (all of them for a full sync); `gone` chains are deleted.
 */
function restoreInput(services: ServiceRules[], changed: ServiceRules[], gone: string[] = []): string {
  const out: string[] = ['*filter', ...FILTER_CHAINS.map((c) => `:${c} - [0:0]`)];
  out.push(
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${MASQ_MARK}/${MASQ_MARK} -j ACCEPT`,
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    'COMMIT',
    '*nat',
    ...NAT_CHAINS.map((c) => `:${c} - [0:0]`),
    ...changed.flatMap((s) => [`:${s.svcChain} - [0:0]`, `:${s.sepChain} - [0:0]`]),
    ...gone.map((c) => `:${c} - [0:0]`),
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${MASQ_MARK}`,
    `-A KUBE-POSTROUTING -m mark ! --mark ${MASQ_MARK}/${MASQ_MARK} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${MASQ_MARK}`,
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ...services.map((s) => s.servicesRule),
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ...changed.flatMap((s) => s.chainRules),
    ...gone.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  );
  return out.join('\n');
}

/** The jumps from the built-in chains that kube-proxy ensures once (iptables -C / -I), then its own chains empty. */
function installKubeProxyJumps(netns: string): void {
  const jumps = [
    ['filter', 'INPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'],
    ['filter', 'INPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'],
    ['filter', 'FORWARD', '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'],
    ['filter', 'FORWARD', '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'],
    ['filter', 'FORWARD', '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    ['filter', 'OUTPUT', '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    ['nat', 'PREROUTING', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    ['nat', 'OUTPUT', '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'],
    ['nat', 'POSTROUTING', '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'],
  ];
  const input: string[] = [];
  for (const table of ['filter', 'nat']) {
    input.push(`*${table}`, ...(table === 'filter' ? FILTER_CHAINS : NAT_CHAINS).map((c) => `:${c} - [0:0]`));
    for (const [t, chain, rule] of jumps) if (t === table) input.push(`-I ${chain} 1 ${rule}`);
    input.push('COMMIT');
  }
  iptablesRestore(netns, input.join('\n') + '\n');
}

/** iptables-restore --noflush in the namespace; returns its wall time in ms. */
function iptablesRestore(netns: string, input: string): number {
  const t0 = performance.now();
  sh('ip', ['netns', 'exec', netns, 'iptables-restore', '--noflush'], input);
  return performance.now() - t0;
}

/** Packets counted by the DNAT rule of a KUBE-SEP chain. */
function dnatPackets(netns: string, sepChain: string): number {
  const out = sh('ip', ['netns', 'exec', netns, 'iptables', '-t', 'nat', '-L', sepChain, '-v', '-n', '-x']);
  const line = out.split('\n').find((l) => l.includes('DNAT'));
  return line ? Number(line.trim().split(/\s+/)[0]) : 0;
}

// --- Traffic -------------------------------------------------------------------

/** Does a TCP connection to ip:PORT from the netns complete within timeoutMs? */
function answers(netns: string, ip: string, timeoutMs = 1000): boolean {
  return spawnSync('ip', ['netns', 'exec', netns, 'timeout', String(timeoutMs / 1000), 'bash', '-c', `exec 3<>/dev/tcp/${ip}/${PORT}`], { stdio: 'ignore' }).status === 0;
}

/** Prober attempts: one every PACE_US, each given TIMEOUT_US to complete (net-tool watch). */
const PROBE_PACE_US = 2000;
const PROBE_TIMEOUT_US = 3000;
let proberSlot = 0;

/**
 * A net-tool watch prober from the netns to ip:PORT, running until the
 * returned promise settles, which it does with the CLOCK_MONOTONIC ns
 * (process.hrtime.bigint()'s clock) of the first attempt that completed at or
 * after the time `since()` returns once the prober runs: timed in the prober,
 * not by when this process reads it. `ready` resolves once it has reported
 * its first outcome (not answering).
 */
function startProber(tool: string, netns: string, ip: string): { ready: Promise<void>; answered: (since: bigint, timeoutMs?: number) => Promise<bigint> } {
  const first = String(2_000_000 + 100_000 * proberSlot++);
  const child = spawn('ip', ['netns', 'exec', netns, ...pinned('0', [tool, 'watch', ip, String(PORT), '1', first, String(PROBE_TIMEOUT_US), String(PROBE_PACE_US)])], { stdio: ['ignore', 'pipe', 'ignore'] });
  const stop = onCleanup(`prober ${child.pid}`, () => killPid(child.pid));
  const events: { ns: bigint; allowed: boolean }[] = [];
  let wake = () => {};
  let buf = '';
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const m = /"ns":(\d+),"allowed":(true|false)/.exec(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (m) events.push({ ns: BigInt(m[1]!), allowed: m[2] === 'true' });
    }
    wake();
  });
  const waitFor = async <T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (let found = find(); ; found = find()) {
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`prober ${ip}:${PORT} from ${netns}: ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        wake = () => (clearTimeout(t), resolve());
      });
    }
  };
  const ready = waitFor(() => (events.length > 0 ? true : undefined), 10_000, 'no outcome').then((): void => {
    if (events[0]!.allowed) throw new Error(`prober: ${ip}:${PORT} answers before it is programmed`);
  });
  return {
    ready,
    answered: (since, timeoutMs = 120_000) => waitFor(() => events.find((e) => e.allowed && e.ns >= since)?.ns, timeoutMs, 'no answer').finally(stop),
  };
}

/** ms from `since` to `at` (both process.hrtime.bigint()). */
const msBetween = (since: bigint, at: bigint) => Number(at - since) / 1e6;

/**
 * Connection-index cursor (one destination port: source port 1024 + i, new
 * 5-tuples for 64,512 connections). A repeat after that still walks
 * kube-proxy's chains (nf_conntrack replaces a reset entry on a new SYN), and
 * the socket LB looks up every connect().
 */
let nextConnection = 0;

/** net-tool crr to ip:PORT (one port); conn/s. */
function crr(tool: string, netns: string, ip: string, inflight: number): { perSecond: number; failed: number } {
  const args = [tool, 'crr', ip, String(PORT), '1', String(nextConnection), String(SECONDS), String(inflight)];
  const r = spawnSync('ip', ['netns', 'exec', netns, ...pinned('0', args)], { encoding: 'utf8', timeout: (SECONDS + 30) * 1000 });
  if (r.status !== 0) throw new Error(`crr ${ip} in ${netns} exited ${r.status ?? r.signal}: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { perSecond: number; failed: number; nextIndex: number };
  nextConnection = out.nextIndex % 64_512;
  return out;
}

// --- Run -----------------------------------------------------------------------

type Who = 'sluice' | 'kubeProxy';
interface SizeResult {
  services: number;
  connPerSecond: Record<Who, Record<number, number[]>>;
  failed: Record<Who, number>;
  programMs: Record<Who, number>;
  /** Where Sluice's programming time went: objects written, every node agent's sync returned (both from the start). */
  sluiceProgramSplitMs: { written: number; synced: number };
  /** Sluice: write + sync → answers; kube-proxy: partial restore. */
  oneMoreMs: Record<Who, number[]>;
  kubeProxyFullSyncMs: number[];
  kubeProxyRules: number;
}

const results: SizeResult[] = [];
const startedAt = new Date();
const load0 = os.loadavg();
try {
  const tool = buildNetTool();
  console.error('setting up: two 2-node local clusters (socket LB on; socket LB off + kube-proxy rules in node-1)');
  const sluice = cluster('Sluice (socket LB)', `sk${id}s`, octet, octet + 1, []);
  const peer = cluster('kube-proxy iptables', `sk${id}k`, octet + 2, octet + 3, ['--socket-lb=off']);
  for (const side of [sluice, peer]) {
    const serverNs = (JSON.parse(sh(SLUICE, ['local', '--dir', side.dir, 'get', 'pods', '-o', 'json'])) as { items: { metadata: { name: string; annotations: Record<string, string> } }[] }).items.find((p) => p.metadata.name === 'server')!.metadata.annotations['sluice.dev/netns']!;
    await startInNetns(serverNs, pinned('1', [tool, 'serve', String(PORT), '1']), 'ready');
    if (!answers(side.clientNs, side.serverIp)) throw new Error(`${side.label}: the server pod ${side.serverIp}:${PORT} does not answer the client pod directly`);
  }
  installKubeProxyJumps(peer.nodeNetns);
  const natRules = (netns: string) => sh('ip', ['netns', 'exec', netns, 'iptables-save', '-t', 'nat']).split('\n').filter((l) => l.startsWith('-A'));

  let peerRules: ServiceRules[] = [];
  for (const n of SIZES) {
    console.error(`${n} Services`);
    // From none: the previous size's Services go first, on both sides.
    removeServices(sluice);
    removeServices(peer);
    await syncAgents(sluice);
    await syncAgents(peer);
    iptablesRestore(peer.nodeNetns, restoreInput([], [], [...peerRules.flatMap((r) => [r.svcChain, r.sepChain])]));
    peerRules = [];
    const last = clusterIp(sluice, n);
    const lastPeer = clusterIp(peer, n);
    if (answers(sluice.clientNs, last, 300)) throw new Error(`Sluice: ${last} answers before its Service exists`);

    // Sluice: the Service objects written, the agents synced, until the last one answers.
    const prober = startProber(tool, sluice.clientNs, last);
    await prober.ready;
    const t0 = process.hrtime.bigint();
    writeServices(sluice, 1, n);
    const written = msBetween(t0, process.hrtime.bigint());
    await syncAgents(sluice);
    const synced = msBetween(t0, process.hrtime.bigint());
    const sluiceProgramMs = msBetween(t0, await prober.answered(t0));

    // The peer's agents get as many objects (same datastore load, other ClusterIPs: see DECOY_OFFSET), untimed; then kube-proxy's full sync.
    writeServices(peer, 1, n, DECOY_OFFSET);
    await syncAgents(peer);
    if (answers(peer.clientNs, lastPeer, 300)) throw new Error(`kube-proxy: ${lastPeer} answers before its rules exist (something else translates it)`);
    peerRules = Array.from({ length: n }, (_, i) => serviceRules(peer, i + 1));
    const peerProgramMs = iptablesRestore(peer.nodeNetns, restoreInput(peerRules, peerRules));

    // The checks: each path carries the ClusterIP the way it claims to.
    const lastSep = peerRules.at(-1)!.sepChain;
    const before = dnatPackets(peer.nodeNetns, lastSep);
    if (!answers(peer.clientNs, lastPeer)) throw new Error(`kube-proxy: ${lastPeer} does not answer with the rules loaded`);
    if (dnatPackets(peer.nodeNetns, lastSep) <= before) throw new Error(`kube-proxy: ${lastPeer} answered but the DNAT rule of ${lastSep} counted no packet`);
    const sluiceNat = natRules(sluice.nodeNetns).filter((l) => l.includes('DNAT') || l.includes('KUBE-'));
    if (sluiceNat.length > 0) throw new Error(`Sluice's node has NAT rules: ${sluiceNat.slice(0, 3).join('; ')}`);
    if (!answers(sluice.clientNs, last)) throw new Error(`Sluice: ${last} does not answer`);
    await new Promise((r) => setTimeout(r, 1000));

    const result: SizeResult = {
      services: n,
      connPerSecond: { sluice: { 1: [], 8: [] }, kubeProxy: { 1: [], 8: [] } },
      failed: { sluice: 0, kubeProxy: 0 },
      programMs: { sluice: sluiceProgramMs, kubeProxy: peerProgramMs },
      sluiceProgramSplitMs: { written, synced },
      oneMoreMs: { sluice: [], kubeProxy: [] },
      kubeProxyFullSyncMs: [],
      kubeProxyRules: 0,
    };
    for (let r = 0; r < ROUNDS; r++) {
      const order: [Who, Side, string][] = [['sluice', sluice, last], ['kubeProxy', peer, lastPeer]];
      if (r % 2) order.reverse();
      for (const [who, side, ip] of order) {
        for (const k of INFLIGHT) {
          const c = crr(tool, side.clientNs, ip, k);
          result.connPerSecond[who][k]!.push(c.perSecond);
          result.failed[who] += c.failed;
        }
      }
      console.error(`  round ${r + 1}/${ROUNDS}: conn/s x1 ${fmt(result.connPerSecond.sluice[1]!.at(-1)!, 0)} / ${fmt(result.connPerSecond.kubeProxy[1]!.at(-1)!, 0)}, x8 ${fmt(result.connPerSecond.sluice[8]!.at(-1)!, 0)} / ${fmt(result.connPerSecond.kubeProxy[8]!.at(-1)!, 0)} (Sluice / kube-proxy)`);
    }

    // One more Service at N, EXTRA times.
    for (let j = 1; j <= EXTRA; j++) {
      const i = n + j;
      const ip = clusterIp(sluice, i);
      const p = startProber(tool, sluice.clientNs, ip);
      await p.ready;
      const t1 = process.hrtime.bigint();
      writeServices(sluice, i, i);
      await syncAgents(sluice);
      result.oneMoreMs.sluice.push(msBetween(t1, await p.answered(t1)));

      writeServices(peer, i, i, DECOY_OFFSET);
      await syncAgents(peer);
      const added = serviceRules(peer, i);
      peerRules.push(added);
      result.oneMoreMs.kubeProxy.push(iptablesRestore(peer.nodeNetns, restoreInput(peerRules, [added])));
      if (!answers(peer.clientNs, clusterIp(peer, i), 3000)) throw new Error(`kube-proxy: ${clusterIp(peer, i)} does not answer after the partial sync`);
      // kube-proxy before 1.27 (and every full resync since): the whole ruleset again; once per N (minutes at 10,000 on a busy machine).
      if (j === 1) result.kubeProxyFullSyncMs.push(iptablesRestore(peer.nodeNetns, restoreInput(peerRules, peerRules)));
    }
    result.kubeProxyRules = natRules(peer.nodeNetns).length;
    console.error(`  program ${n}: Sluice ${fmt(sluiceProgramMs, 0)} ms (objects written at ${fmt(written, 0)}, agents synced at ${fmt(synced, 0)}), iptables-restore ${fmt(peerProgramMs, 0)} ms (${result.kubeProxyRules} nat rules); one more: Sluice ${fmt(median(result.oneMoreMs.sluice), 0)} ms, partial restore ${fmt(median(result.oneMoreMs.kubeProxy), 0)} ms, full ${fmt(median(result.kubeProxyFullSyncMs), 0)} ms`);
    results.push(result);
  }
} finally {
  cleanupNow();
}

// --- Report --------------------------------------------------------------------

/** Median of the per-round ratios Sluice / kube-proxy. */
const pairwise = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]!));
const rows: string[][] = [];
const json: Record<string, unknown> = {};
for (const r of results) {
  const c = (who: Who, k: number) => median(r.connPerSecond[who][k]!);
  const us = (who: Who) => median(r.connPerSecond[who][1]!.map((x) => 1e6 / x));
  const figures: [string, number, number, number][] = [
    ['conn/s, 1 in flight', c('sluice', 1), c('kubeProxy', 1), pairwise(r.connPerSecond.sluice[1]!, r.connPerSecond.kubeProxy[1]!)],
    ['conn/s, 8 in flight', c('sluice', 8), c('kubeProxy', 8), pairwise(r.connPerSecond.sluice[8]!, r.connPerSecond.kubeProxy[8]!)],
    ['µs per connection, 1 in flight', us('sluice'), us('kubeProxy'), us('sluice') / us('kubeProxy')],
    [`program ${r.services} Services, ms`, r.programMs.sluice, r.programMs.kubeProxy, r.programMs.sluice / r.programMs.kubeProxy],
    ['one more Service, ms (kube-proxy: partial sync)', median(r.oneMoreMs.sluice), median(r.oneMoreMs.kubeProxy), median(r.oneMoreMs.sluice) / median(r.oneMoreMs.kubeProxy)],
    ['one more Service, ms (kube-proxy: full sync)', median(r.oneMoreMs.sluice), median(r.kubeProxyFullSyncMs), median(r.oneMoreMs.sluice) / median(r.kubeProxyFullSyncMs)],
  ];
  for (const [name, s, k, ratio] of figures) rows.push([`${r.services}`, name, fmt(s, 0), fmt(k, 0), fmt(ratio, 2)]);
  json[String(r.services)] = {
    connPerSecond1: { sluice: round(c('sluice', 1)), kubeProxy: round(c('kubeProxy', 1)), ratio: round(figures[0]![3], 3) },
    connPerSecond8: { sluice: round(c('sluice', 8)), kubeProxy: round(c('kubeProxy', 8)), ratio: round(figures[1]![3], 3) },
    usPerConnection1: { sluice: round(us('sluice')), kubeProxy: round(us('kubeProxy')) },
    programMs: { sluice: round(r.programMs.sluice), kubeProxy: round(r.programMs.kubeProxy), sluiceWritten: round(r.sluiceProgramSplitMs.written), sluiceSynced: round(r.sluiceProgramSplitMs.synced) },
    oneMoreMs: { sluice: round(median(r.oneMoreMs.sluice)), kubeProxyPartial: round(median(r.oneMoreMs.kubeProxy)), kubeProxyFull: round(median(r.kubeProxyFullSyncMs)) },
    failedConnections: r.failed,
    kubeProxyNatRules: r.kubeProxyRules,
    samples: { sluice: r.connPerSecond.sluice, kubeProxy: r.connPerSecond.kubeProxy },
  };
}
console.log(`\nServices: Sluice socket LB vs kube-proxy iptables mode; ClusterIPs with one backend, client and server pod on one node; connection rate to the last-created Service, ${ROUNDS} rounds of ${SECONDS} s, medians (ratio: Sluice / kube-proxy, pairwise for conn/s; for times lower is better)`);
console.log(table(['Services', 'figure', 'Sluice', 'kube-proxy', 'ratio'], rows));
console.log(
  JSON.stringify({
    bench: 'services-vs-kube-proxy',
    date: startedAt.toISOString(),
    machine: { ...machine(), loadAverageBefore: load0.map((l) => round(l)) },
    rounds: ROUNDS,
    seconds: SECONDS,
    extra: EXTRA,
    results: json,
  }),
);
