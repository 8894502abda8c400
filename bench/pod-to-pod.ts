/**
 * Pod-to-pod on one node, Sluice beside its peers in one run, alternating:
 * - datapaths: a bare veth pair (the limit for any veth-based design), the
 *   reference bridge plugin, Sluice without policy, Sluice with a policy that
 *   allows the traffic, Sluice with N policy rules that do not match the
 *   traffic (plus the allowing one), and the same pods routed through an
 *   iptables FORWARD chain with the same rules (how iptables-based CNIs
 *   enforce: established first, then the rules in order);
 * - figures: iperf3 throughput with 1 and 4 streams; request/response
 *   latency (one connection, 1-byte round trips); connection rate (a new
 *   connection per request, 1 and 8 in flight; every connection a 5-tuple
 *   never seen before in the run, so every one is a new flow to Sluice's
 *   conntrack and to nf_conntrack). Clients and servers are compiled C
 *   (bench/net-tool.c, built with gcc at start) and iperf3.
 * Each round visits every datapath once (rule sets change in the order none,
 * allow, N...; the Sluice/iptables pair alternates which goes first); the
 * table gives medians over rounds and ratios to the peers. Prints a table and
 * a JSON line.
 *
 * usage (root, after make): node bench/pod-to-pod.ts [--rounds 3] [--seconds 3]
 *   [--crr-seconds 2] [--rr-count 20000] [--rules 1000,10000]
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { BenchCluster, namespace, pod, type Manifest } from './bench-cluster.ts';
import { cleanupNow } from './cleanup.ts';
import { buildNetTool, connectionRate, ECHO_BASE_PORT, ECHO_PORTS, IPERF_PORT, requestResponse, startServers, throughputGbps } from './net-tool.ts';
import { bareVeth, bridgePods, iptablesPods, NON_MATCHING_BASE_PORT, type PodPair } from './peers.ts';
import { fmt, machine, median, round, table } from './stats.ts';

const RULES_PER_POLICY = 100;
const CLOCK_TICKS_PER_S = 100;
const NAMESPACE = 'bench';
/** How long a probe to a port no rule allows waits before calling it dropped. */
const DENIED_PROBE_TIMEOUT_S = 1;
const INFLIGHT = [1, 8] as const;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    'crr-seconds': { type: 'string', default: '2' },
    'rr-count': { type: 'string', default: '20000' },
    rules: { type: 'string', default: '1000,10000' },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CRR_SECONDS = Number(values['crr-seconds']);
const RR_COUNT = Number(values['rr-count']);
const RULE_COUNTS = values.rules.split(',').filter(Boolean).map(Number);

/** A rule configuration: no policy, the allowing policy alone, or N non-matching rules plus it. */
type RuleConfig = 'none' | 'allow' | number;
const CONFIGS: RuleConfig[] = ['none', 'allow', ...RULE_COUNTS];

interface Sample {
  gbps1: number;
  gbps4: number;
  rrP50Us: number;
  rrP99Us: number;
  rrPerSecond: number;
  crr: Record<number, number>;
  crrFailed: number;
  /** Sluice rows: the agent's CPU while the row was measured (% of one core): should be ~0, the datapath needs no agent. */
  agentCpuPct: number;
}

const samples = new Map<string, Sample[]>();
const notes = new Map<string, string>();

function configName(c: RuleConfig): string {
  return c === 'none' ? 'no policy' : c === 'allow' ? 'allow policy' : `${c.toLocaleString('en')} rules + allow`;
}

/** CPU seconds (user + system) the agent has used so far. */
function agentCpuSeconds(): number {
  const stat = fs.readFileSync(`/proc/${cluster.agentPid()}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

function measure(name: string, pair: PodPair): void {
  const cpu0 = agentCpuSeconds();
  const t0 = performance.now();
  const gbps1 = throughputGbps(pair.clientNs, pair.serverIp, SECONDS, 1);
  const gbps4 = throughputGbps(pair.clientNs, pair.serverIp, SECONDS, 4);
  const rr = requestResponse(tool, pair.clientNs, pair.serverIp, RR_COUNT);
  const crr: Record<number, number> = {};
  let crrFailed = 0;
  for (const k of INFLIGHT) {
    const r = connectionRate(tool, pair.clientNs, pair.serverIp, CRR_SECONDS, k);
    crr[k] = r.perSecond;
    crrFailed += r.failed;
  }
  const agentCpuPct = ((agentCpuSeconds() - cpu0) / ((performance.now() - t0) / 1000)) * 100;
  const s: Sample = { gbps1, gbps4, rrP50Us: rr.p50Us, rrP99Us: rr.p99Us, rrPerSecond: rr.perSecond, crr, crrFailed, agentCpuPct };
  (samples.get(name) ?? samples.set(name, []).get(name)!).push(s);
  console.error(`  ${name.padEnd(34)} ${fmt(gbps1, 2)} / ${fmt(gbps4, 2)} Gbit/s, rr p50 ${fmt(rr.p50Us)} us, ${INFLIGHT.map((k) => `${fmt(crr[k]!, 0)} conn/s x${k}`).join(', ')}`);
}

/** True when a connection attempt to the port times out (dropped) rather than being refused by the server's stack (no one listens there). */
function dropped(pair: PodPair, port: number): boolean {
  const r = spawnSync('ip', ['netns', 'exec', pair.clientNs, 'timeout', String(DENIED_PROBE_TIMEOUT_S), 'bash', '-c', `exec 3<>/dev/tcp/${pair.serverIp}/${port}`], { stdio: 'ignore' });
  return r.status === 124;
}

/** The rule set is in force: a port no rule allows is dropped, and (with rules) the first non-matching rule's port is let through. */
function enforcedAsConfigured(pair: PodPair, config: RuleConfig): boolean {
  const deny = dropped(pair, NON_MATCHING_BASE_PORT - 1);
  return typeof config === 'number' ? deny && !dropped(pair, NON_MATCHING_BASE_PORT) : deny;
}

// --- Sluice policies --------------------------------------------------------

const serverSelector = { matchLabels: { app: 'server' } };
/**
 * Policies are switched off by pointing them at no pod rather than deleted:
 * deleting many policy files while the agent's datastore watcher reads the
 * directory can crash the agent (ENOENT between readdir and read; see
 * bench/README.md), and a rewrite is atomic (temp file + rename).
 */
const nobodySelector = { matchLabels: { app: 'no-such-pod' } };
const fromClient = [{ podSelector: { matchLabels: { role: 'client' } } }];

function allowPolicy(active: boolean): Manifest {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: NAMESPACE, name: 'allow-client' },
    spec: {
      podSelector: active ? serverSelector : nobodySelector,
      policyTypes: ['Ingress'],
      ingress: [{ from: fromClient, ports: [{ port: IPERF_PORT }, { port: ECHO_BASE_PORT, endPort: ECHO_BASE_PORT + ECHO_PORTS - 1 }] }],
    },
  };
}

/** Policy k of the non-matching rules: RULES_PER_POLICY ingress rules from the client on ports the traffic never uses. */
function noisePolicy(k: number, active: boolean): Manifest {
  const ingress = [];
  for (let i = k * RULES_PER_POLICY; i < (k + 1) * RULES_PER_POLICY; i++) ingress.push({ from: fromClient, ports: [{ port: NON_MATCHING_BASE_PORT + i }] });
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: NAMESPACE, name: `noise-${k}` },
    spec: { podSelector: active ? serverSelector : nobodySelector, policyTypes: ['Ingress'], ingress },
  };
}

/** Which policies select the server in a config: name → manifest. */
function policiesFor(c: RuleConfig): Map<string, Manifest> {
  const maxRules = Math.max(0, ...RULE_COUNTS);
  const out = new Map<string, Manifest>();
  out.set('allow-client', allowPolicy(c !== 'none'));
  const active = typeof c === 'number' ? c / RULES_PER_POLICY : 0;
  for (let k = 0; k < Math.ceil(maxRules / RULES_PER_POLICY); k++) out.set(`noise-${k}`, noisePolicy(k, k < active));
  return out;
}

let applied = new Map<string, string>();
const applyTimes = new Map<string, number[]>();
const mapEntries = new Map<string, number>();

/** Brings the cluster's policies to the config (one apply of the policies that change); records the wall time. */
async function setSluicePolicies(c: RuleConfig): Promise<void> {
  const want = policiesFor(c);
  const changed = [...want.values()].filter((m) => applied.get(m.metadata.name) !== JSON.stringify(m));
  const ms = changed.length > 0 ? cluster.apply(changed) : 0;
  applied = new Map([...want.entries()].map(([k, m]) => [k, JSON.stringify(m)]));
  (applyTimes.get(configName(c)) ?? applyTimes.set(configName(c), []).get(configName(c))!).push(ms);
  const eps = await agentRequest<{ allow: unknown[]; ingressIsolated: boolean }[]>(cluster.socket, 'GET', `/v1/policy/${NAMESPACE}/server`);
  mapEntries.set(configName(c), eps[0]!.allow.length);
}

// --- Run ---------------------------------------------------------------------

const id = randomBytes(2).toString('hex');
const prefix = `p2p${id}`;
const tool = buildNetTool();
const cluster = new BenchCluster();
const startedAt = new Date();
let veth: PodPair;
let bridge: PodPair;
let ipt: ReturnType<typeof iptablesPods>;
let sluice: PodPair;
const enforced = new Map<string, boolean>();

try {
  console.error(`setting up: bare veth, bridge plugin, iptables node namespace, Sluice local cluster (${cluster.podCIDR})`);
  veth = bareVeth(prefix);
  bridge = bridgePods(prefix, tool);
  ipt = iptablesPods(prefix);
  cluster.up();
  cluster.apply([namespace(NAMESPACE), pod(NAMESPACE, 'client', { role: 'client' }), pod(NAMESPACE, 'server', { app: 'server' })]);
  const pods = new Map(cluster.pods().map((p) => [p.metadata.name, p]));
  const c = pods.get('client')!;
  const s = pods.get('server')!;
  sluice = { clientNs: c.metadata.annotations['sluice.dev/netns']!, serverNs: s.metadata.annotations['sluice.dev/netns']!, clientIp: c.status.podIP, serverIp: s.status.podIP };
  for (const pair of [veth, bridge, ipt, sluice]) await startServers(tool, pair.serverNs);
  // Every policy exists from the start (selecting no pod); configs only retarget them.
  cluster.apply([...policiesFor('none').values()]);
  applied = new Map([...policiesFor('none').entries()].map(([k, m]) => [k, JSON.stringify(m)]));

  for (let r = 0; r < ROUNDS; r++) {
    console.error(`round ${r + 1}/${ROUNDS}`);
    for (const config of CONFIGS) {
      await setSluicePolicies(config);
      ipt.setRules(config === 'none' ? null : config === 'allow' ? 0 : config);
      if (r === 0 && config !== 'none') {
        enforced.set(`sluice, ${configName(config)}`, enforcedAsConfigured(sluice, config));
        enforced.set(`iptables, ${configName(config)}`, enforcedAsConfigured(ipt, config));
      }
      if (config === 'none') {
        const peers: [string, PodPair][] = [['bare veth pair', veth], ['bridge plugin', bridge]];
        for (const [name, pair] of r % 2 ? peers.reverse() : peers) measure(name, pair);
      }
      const pairs: [string, PodPair][] = [[`sluice, ${configName(config)}`, sluice], [`iptables, ${configName(config)}`, ipt]];
      for (const [name, pair] of r % 2 ? pairs.reverse() : pairs) measure(name, pair);
    }
  }
} finally {
  cleanupNow();
}

// --- Report --------------------------------------------------------------------

const m = (name: string, f: (s: Sample) => number): number => median((samples.get(name) ?? []).map(f));
const names = [...samples.keys()];
const vethTput = m('bare veth pair', (s) => s.gbps1);
const bridgeCrr = (k: number) => m('bridge plugin', (s) => s.crr[k]!);
const rows = names.map((n) => [
  n,
  fmt(m(n, (s) => s.gbps1), 2),
  fmt(m(n, (s) => s.gbps1) / vethTput, 2),
  fmt(m(n, (s) => s.gbps4), 2),
  fmt(m(n, (s) => s.rrP50Us)),
  fmt(m(n, (s) => s.rrP99Us)),
  ...INFLIGHT.flatMap((k) => [fmt(m(n, (s) => s.crr[k]!), 0), fmt(m(n, (s) => s.crr[k]!) / bridgeCrr(k), 2)]),
  n.startsWith('sluice, ') ? String(mapEntries.get(n.slice('sluice, '.length)) ?? '') : '',
  n.startsWith('sluice, ') ? fmt(m(n, (s) => s.agentCpuPct)) : '',
  enforced.has(n) ? (enforced.get(n) ? 'yes' : 'NO') : '',
]);
console.log(`Pod-to-pod on one node: ${ROUNDS} rounds, medians; iperf3 ${SECONDS} s, ${RR_COUNT} round trips, connection rate ${CRR_SECONDS} s (${machine().cores} cores, ${startedAt.toISOString()})`);
console.log(
  table(
    ['datapath', '1 stream Gbit/s', 'x veth', '4 streams Gbit/s', 'RR p50 us', 'RR p99 us', ...INFLIGHT.flatMap((k) => [`conn/s (${k} in flight)`, 'x bridge']), 'policy entries', 'agent CPU %', 'rules enforced'],
    rows,
  ),
);
const rank = (f: (s: Sample) => number, decimals: number) =>
  [...names].sort((a, b) => m(b, f) - m(a, f)).map((n, i) => `${i + 1}. ${n} (${fmt(m(n, f), decimals)})`).join('\n  ');
console.log(`\nranked by single-stream throughput (Gbit/s):\n  ${rank((s) => s.gbps1, 2)}`);
console.log(`ranked by connection rate, 8 in flight (conn/s):\n  ${rank((s) => s.crr[8]!, 0)}`);
console.log(`\nSluice policy switch (one sluice local apply -f of the policies that change; returns when the maps hold it), median ms: ${[...applyTimes.entries()].map(([k, v]) => `${k} ${fmt(median(v), 0)}`).join(', ')}`);
const failedOf = (n: string) => (samples.get(n) ?? []).reduce((a, s) => a + s.crrFailed, 0);
const failed = names.filter((n) => failedOf(n) > 0).map((n) => `${n} ${failedOf(n)}`);
if (failed.length > 0) console.log(`connections that failed (reset or refused) during the connection-rate runs, all rounds: ${failed.join(', ')}`);
for (const [k, v] of notes) console.log(`${k}: ${v}`);
console.log(
  JSON.stringify({
    bench: 'pod-to-pod',
    date: startedAt.toISOString(),
    machine: machine(),
    rounds: ROUNDS,
    seconds: SECONDS,
    crrSeconds: CRR_SECONDS,
    rrCount: RR_COUNT,
    datapaths: Object.fromEntries(
      names.map((n) => [
        n,
        {
          gbps1: round(m(n, (s) => s.gbps1)),
          gbps4: round(m(n, (s) => s.gbps4)),
          rrP50Us: round(m(n, (s) => s.rrP50Us)),
          rrP99Us: round(m(n, (s) => s.rrP99Us)),
          rrPerSecond: round(m(n, (s) => s.rrPerSecond), 0),
          ...Object.fromEntries(INFLIGHT.map((k) => [`connPerSecond${k}`, round(m(n, (s) => s.crr[k]!), 0)])),
          connectionsFailed: failedOf(n),
          ...(n.startsWith('sluice, ') ? { agentCpuPct: round(m(n, (s) => s.agentCpuPct)) } : {}),
          ...(enforced.has(n) ? { deniesOtherPorts: enforced.get(n) } : {}),
        },
      ]),
    ),
    sluicePolicyEntries: Object.fromEntries(mapEntries),
    sluiceApplyMs: Object.fromEntries([...applyTimes.entries()].map(([k, v]) => [k, round(median(v), 0)])),
    ratios: {
      sluiceNoPolicyOverVeth: round(m('sluice, no policy', (s) => s.gbps1) / vethTput),
      ...Object.fromEntries(RULE_COUNTS.map((n) => [`sluice${n}RulesOverVeth`, round(m(`sluice, ${configName(n)}`, (s) => s.gbps1) / vethTput)])),
      sluiceNoPolicyOverBridge: round(m('sluice, no policy', (s) => s.gbps1) / m('bridge plugin', (s) => s.gbps1)),
      ...Object.fromEntries(INFLIGHT.map((k) => [`sluiceConnRate${k}OverBridge`, round(m('sluice, no policy', (s) => s.crr[k]!) / bridgeCrr(k))])),
    },
  }),
);
