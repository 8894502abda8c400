/**
 * NetworkPolicy apply-to-enforcement at scale: a local cluster of --pods pods
 * (one `sluice local apply -f` of many Pod documents) in 10 namespaces with
 * --policies NetworkPolicies of mixed shapes (pod, namespace and combined
 * selectors, ipBlock with except, port ranges, egress), plus a prober pod and
 * a target pod whose one policy is flipped between "allows the prober" and
 * "allows only another port".
 *
 * Each flip is `sluice local apply -f` of the changed policy; a compiled
 * prober (net-tool watch) opens a new connection (a never-seen 5-tuple)
 * every millisecond and timestamps the first attempt with the new outcome.
 * Enforcement time = that attempt's start - the moment apply was spawned;
 * also recorded: when the apply command returned (it returns once the maps
 * hold the change), and the agent's own share: POST /v1/datastore/sync with
 * nothing changed, and after one file's mtime moved (the agent then re-reads
 * the whole datastore directory and recompiles).
 *
 * Peer, in the same run, alternating flips: the same prober through a node
 * namespace whose iptables filter table holds as many rules as Sluice's
 * policy map holds entries for the whole cluster, reprogrammed the way
 * iptables-based CNIs do it (iptables-restore of the table, the flipped rule
 * first in its chain so rule traversal does not count).
 * Prints a table and a JSON line.
 *
 * usage (root, after make): node bench/netpol-enforce.ts [--pods 500] [--policies 200] [--flips 40]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import { BenchCluster, namespace, pod, SLUICE, type Manifest } from './bench-cluster.ts';
import { cleanupNow, onCleanup, sh } from './cleanup.ts';
import { buildNetTool, ECHO_BASE_PORT, ECHO_PORTS, Prober, startServers } from './net-tool.ts';
import { iptablesPods } from './peers.ts';
import { fmt, machine, median, percentile, round, table } from './stats.ts';

const NAMESPACES = 10;
const APPS = 20;
const TEAMS = 3;
const FLIP_TIMEOUT_MS = 60_000;
/** Pause between flips, plus up to as much again at random so flips land anywhere in the agent's 500 ms watch period. */
const FLIP_GAP_MS = 300;
/** Port the "denied" version of the flipped policy allows instead of the prober's. */
const OTHER_PORT = 9;

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '500' },
    policies: { type: 'string', default: '200' },
    flips: { type: 'string', default: '40' },
  },
});
const PODS = Number(values.pods);
const POLICIES = Number(values.policies);
const FLIPS = Number(values.flips);

/** The background cluster: namespaces, pods (all but the two probe pods), policies of mixed shapes. */
function clusterManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (let i = 0; i < NAMESPACES; i++) {
    out.push({ ...namespace(`ns-${i}`), metadata: { name: `ns-${i}`, labels: { team: `t${i % TEAMS}` } } });
  }
  out.push(namespace('probe'));
  for (let k = 0; k < POLICIES; k++) {
    const ns = `ns-${k % NAMESPACES}`;
    const app = (n: number) => ({ matchLabels: { app: `app-${n % APPS}` } });
    const shapes = [
      { ingress: [{ from: [{ podSelector: app(k + 1) }], ports: [{ port: 80 }] }] },
      { ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${k % TEAMS}` } } }], ports: [{ port: 443 }, { port: 8080 }] }] },
      {
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${(k + 1) % TEAMS}` } }, podSelector: app(k + 2) }] }],
        egress: [{ to: [{ podSelector: app(k + 3) }], ports: [{ port: 53, protocol: 'UDP' }, { port: 5432 }] }],
      },
      { ingress: [{ from: [{ ipBlock: { cidr: `172.16.${k % 256}.0/24`, except: [`172.16.${k % 256}.0/28`] } }], ports: [{ port: 8000, endPort: 8100 }] }] },
    ];
    out.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: ns, name: `policy-${k}` }, spec: { podSelector: app(k), ...shapes[k % shapes.length] } });
  }
  for (let j = 0; j < PODS - 2; j++) {
    out.push(pod(`ns-${j % NAMESPACES}`, `pod-${j}`, { app: `app-${Math.floor(j / NAMESPACES) % APPS}`, tier: `tier-${j % 3}` }));
  }
  out.push(pod('probe', 'client', { role: 'prober' }), pod('probe', 'target', { app: 'target' }));
  return out;
}

/** The flipped policy: allows the prober's ports, or only another port (the target stays isolated either way). */
function flipPolicy(allow: boolean): Manifest {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: 'probe', name: 'flip' },
    spec: {
      podSelector: { matchLabels: { app: 'target' } },
      policyTypes: ['Ingress'],
      ingress: [{ from: [{ podSelector: { matchLabels: { role: 'prober' } } }], ports: allow ? [{ port: ECHO_BASE_PORT, endPort: ECHO_BASE_PORT + ECHO_PORTS - 1 }] : [{ port: OTHER_PORT }] }],
    },
  };
}

/** Runs a command without blocking the event loop (the prober's output keeps flowing); resolves with its exit time. */
function runAsync(cmd: string, args: string[], input?: string): Promise<bigint> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.on('close', (code) => (code === 0 ? resolve(process.hrtime.bigint()) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))));
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** The iptables peer's filter table: the flipped rule first, then `filler` rules of the same shape for other pods. */
function iptablesTable(clientIp: string, serverIp: string, allow: boolean, filler: number): string {
  const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':BENCH-POLICY - [0:0]'];
  lines.push('-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT', '-A FORWARD -j BENCH-POLICY');
  const ports = allow ? `${ECHO_BASE_PORT}:${ECHO_BASE_PORT + ECHO_PORTS - 1}` : String(OTHER_PORT);
  lines.push(`-A BENCH-POLICY -s ${clientIp}/32 -d ${serverIp}/32 -p tcp -m tcp --dport ${ports} -j ACCEPT`);
  for (let i = 0; i < filler; i++) {
    lines.push(`-A BENCH-POLICY -s 10.${80 + ((i >> 16) & 7)}.${(i >> 8) & 255}.${i & 255}/32 -d ${serverIp}/32 -p tcp -m tcp --dport ${1 + (i % 60000)} -j ACCEPT`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

const startedAt = new Date();
const load0 = machine().loadAverage;
const cluster = new BenchCluster(22);
const tool = buildNetTool();
const prefix = `en${randomBytes(2).toString('hex')}`;
const result = {
  createWallMs: 0,
  policyEntries: 0,
  sluice: { enforceMs: [] as number[], applyReturnMs: [] as number[] },
  iptables: { enforceMs: [] as number[], applyReturnMs: [] as number[] },
  idleSyncMs: [] as number[],
  touchedSyncMs: [] as number[],
};

try {
  cluster.up();
  console.error(`creating ${PODS} pods and ${POLICIES} policies in one apply (cluster ${cluster.name}, ${cluster.podCIDR})...`);
  result.createWallMs = cluster.apply([...clusterManifests(), flipPolicy(true)]);
  const pods = cluster.pods();
  console.error(`  ${pods.length} pods in ${fmt(result.createWallMs / 1000)} s (${fmt((pods.length / result.createWallMs) * 1000)} pods/s)`);
  const byName = new Map(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
  const client = byName.get('probe/client')!;
  const target = byName.get('probe/target')!;
  await startServers(tool, target.metadata.annotations['sluice.dev/netns']!);

  // Everything the policy map holds for the cluster: the iptables peer gets as many rules.
  for (const p of pods) {
    const eps = await agentRequest<{ allow: unknown[]; allowAddresses: unknown[] }[]>(cluster.socket, 'GET', `/v1/policy/${p.metadata.namespace}/${p.metadata.name}`);
    for (const e of eps) result.policyEntries += e.allow.length + e.allowAddresses.length;
  }
  console.error(`  Sluice policy entries for the cluster: ${result.policyEntries}`);

  const ipt = iptablesPods(prefix);
  await startServers(tool, ipt.serverNs);
  sh('ip', ['netns', 'exec', ipt.router, 'iptables-restore'], iptablesTable(ipt.clientIp, ipt.serverIp, true, result.policyEntries));

  const flipFiles = [false, true].map((allow) => {
    const file = path.join(cluster.dir, `flip-${allow}.json`);
    fs.writeFileSync(file, JSON.stringify(flipPolicy(allow)));
    return file;
  });
  const flipFileInDatastore = path.join(cluster.dir, 'datastore', 'networkpolicies', 'probe', 'flip.yaml');
  const iptTables = [false, true].map((allow) => iptablesTable(ipt.clientIp, ipt.serverIp, allow, result.policyEntries));
  const sluiceProber = await Prober.start(tool, client.metadata.annotations['sluice.dev/netns']!, target.status.podIP, 0);
  const iptProber = await Prober.start(tool, ipt.clientNs, ipt.serverIp, 1);
  onCleanup('flip files', () => flipFiles.forEach((f) => fs.rmSync(f, { force: true })));
  if (!sluiceProber.allowed() || !iptProber.allowed()) throw new Error('the probers do not connect before the first flip');

  for (let i = 0; i < FLIPS; i++) {
    const allow = i % 2 === 1; // deny first: the cluster starts allowed
    const sides = [
      ['sluice', () => runAsync(SLUICE, ['local', '--dir', cluster.dir, 'apply', '-f', flipFiles[Number(allow)]!]), sluiceProber] as const,
      ['iptables', () => runAsync('ip', ['netns', 'exec', ipt.router, 'iptables-restore'], iptTables[Number(allow)]!), iptProber] as const,
    ];
    for (const [name, run, prober] of i % 4 < 2 ? sides : [...sides].reverse()) {
      await new Promise((r) => setTimeout(r, FLIP_GAP_MS + Math.random() * FLIP_GAP_MS));
      const t0 = process.hrtime.bigint();
      const [returned, event] = await Promise.all([run(), prober.changeTo(allow, t0, FLIP_TIMEOUT_MS)]);
      result[name].enforceMs.push(Number(event.ns - t0) / 1e6);
      result[name].applyReturnMs.push(Number(returned - t0) / 1e6);
    }
    // The agent's own share: a sync with nothing changed, and one after a single file's mtime moved (the whole datastore is re-read).
    let s0 = performance.now();
    await agentRequest(cluster.socket, 'POST', '/v1/datastore/sync');
    result.idleSyncMs.push(performance.now() - s0);
    const now = new Date();
    fs.utimesSync(flipFileInDatastore, now, now);
    s0 = performance.now();
    await agentRequest(cluster.socket, 'POST', '/v1/datastore/sync');
    result.touchedSyncMs.push(performance.now() - s0);
    process.stderr.write(`  flip ${i + 1}/${FLIPS}: sluice ${fmt(result.sluice.enforceMs.at(-1)!)} ms, iptables ${fmt(result.iptables.enforceMs.at(-1)!)} ms\r`);
  }
  process.stderr.write('\n');
} finally {
  console.error('tearing down (CNI DEL of every pod)...');
  cleanupNow();
}

const row = (name: string, xs: number[]) => [name, fmt(percentile(xs, 50)), fmt(percentile(xs, 90)), fmt(percentile(xs, 99)), fmt(Math.max(...xs))];
console.log(`NetworkPolicy apply-to-enforcement: ${PODS} pods, ${POLICIES} policies (+1 flipped), ${FLIPS} flips each side, alternating (${startedAt.toISOString()}, load ${load0.join(' ')})`);
console.log(
  table(['ms from apply', 'p50', 'p90', 'p99', 'max'], [
    row('sluice: enforced (prober)', result.sluice.enforceMs),
    row('sluice: apply -f returned', result.sluice.applyReturnMs),
    row(`iptables-restore, ${result.policyEntries} rules: enforced`, result.iptables.enforceMs),
    row(`iptables-restore, ${result.policyEntries} rules: returned`, result.iptables.applyReturnMs),
    row('sluice: agent sync, nothing changed', result.idleSyncMs),
    row('sluice: agent sync, one file touched', result.touchedSyncMs),
  ]),
);
console.log(`enforcement p50 ratio sluice/iptables: ${fmt(median(result.sluice.enforceMs) / median(result.iptables.enforceMs), 2)}x; ${PODS} pods created in ${fmt(result.createWallMs / 1000)} s; ${result.policyEntries} policy entries`);
console.log(
  JSON.stringify({
    bench: 'netpol-enforce',
    date: startedAt.toISOString(),
    machine: machine(),
    pods: PODS,
    policies: POLICIES,
    flips: FLIPS,
    createWallMs: round(result.createWallMs, 0),
    policyEntries: result.policyEntries,
    sluice: { enforceP50Ms: round(percentile(result.sluice.enforceMs, 50)), enforceP99Ms: round(percentile(result.sluice.enforceMs, 99)), returnP50Ms: round(percentile(result.sluice.applyReturnMs, 50)), returnP99Ms: round(percentile(result.sluice.applyReturnMs, 99)) },
    iptables: { enforceP50Ms: round(percentile(result.iptables.enforceMs, 50)), enforceP99Ms: round(percentile(result.iptables.enforceMs, 99)), returnP50Ms: round(percentile(result.iptables.applyReturnMs, 50)), returnP99Ms: round(percentile(result.iptables.applyReturnMs, 99)) },
    idleSyncP50Ms: round(percentile(result.idleSyncMs, 50)),
    touchedSyncP50Ms: round(percentile(result.touchedSyncMs, 50)),
  }),
);
