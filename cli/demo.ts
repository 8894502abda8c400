/**
 * `sluice demo`: a guided tour on a throw-away local cluster: pods come up
 * through the real CNI plugin, talk over ICMP, TCP and UDP, and the datapath
 * counters show that the eBPF programs carried the traffic.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import type { Endpoint } from '../contract/api-types.ts';
import { applyManifests } from './local/apply.ts';
import { localDown } from './local/down.ts';
import { probe } from './local/probe.ts';
import { createPod } from './local/pods.ts';
import { run } from './local/run.ts';
import { localUp } from './local/up.ts';
import type { ClusterConfig } from './local/cluster.ts';
import { errorMessage } from '../lib/errors.ts';

const DEMO = {
  dir: '/var/lib/sluice/demo',
  name: 'demo',
  socket: '/run/sluice/demo.sock',
  stateDir: '/var/lib/sluice/demo-state',
  bpfDir: '/sys/fs/bpf/sluice-demo',
  podCIDR: '10.244.100.0/24',
};

type Counters = Record<string, { packets: number; bytes: number }>;

function say(text: string): void {
  console.log(`\n\x1b[1m== ${text}\x1b[0m`);
}

async function counters(c: ClusterConfig): Promise<Counters> {
  return agentRequest<Counters>(c.socket, 'GET', '/v1/counters');
}

type Check = [label: string, spec: Parameters<typeof probe>[1], expected: boolean];

/** Probes each check and prints what passed and what was dropped; returns how many did not go as expected. */
async function runChecks(c: ClusterConfig, checks: Check[]): Promise<number> {
  let wrong = 0;
  for (const [label, spec, expected] of checks) {
    const ok = await probe(c, spec);
    if (ok !== expected) wrong++;
    const verdict = ok ? 'passes' : 'dropped';
    console.log(`  ${label.padEnd(26)} ${verdict.padEnd(8)} ${ok === expected ? '(as the policy says)' : 'UNEXPECTED'}`);
  }
  return wrong;
}

const tcp = (from: string, to: string, port: number) => ({ from, to, protocol: 'tcp' as const, port, timeoutMs: 1500 });

function policy(name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'shop', name }, spec };
}

/** The NetworkPolicy chapter: default deny, then allow rules, and what passes and what is dropped. */
async function policyChapter(c: ClusterConfig): Promise<number> {
  let wrong = 0;
  say('NetworkPolicy: deny all ingress in namespace shop');
  console.log('  podSelector: {}  policyTypes: [Ingress]  (no rules: nothing may come in)');
  await applyManifests(c, [policy('default-deny', { podSelector: {}, policyTypes: ['Ingress'] })]);
  wrong += await runChecks(c, [
    ['client -> web  TCP/80', tcp('shop/client', 'shop/web', 80), false],
    ['web    -> db   TCP/5432', tcp('shop/web', 'shop/db', 5432), false],
  ]);
  const hostOk = await run('ping', ['-c', '1', '-W', '2', (await podIp(c, 'web'))]).then(() => true, () => false);
  console.log(`  ${'host   -> web  ICMP'.padEnd(26)} ${hostOk ? 'passes  (the node always reaches its pods: kubelet probes)' : 'dropped UNEXPECTED'}`);
  if (!hostOk) wrong++;

  say('NetworkPolicy: allow client -> web on 80, and web -> db on 5432');
  await applyManifests(c, [
    policy('web-from-client', {
      podSelector: { matchLabels: { app: 'web' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ protocol: 'TCP', port: 80 }] }],
    }),
    policy('db-from-web', {
      podSelector: { matchLabels: { app: 'db' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ protocol: 'TCP', port: 5432 }] }],
    }),
  ]);
  const before = (await counters(c)).DROP_POLICY_INGRESS?.packets ?? 0;
  wrong += await runChecks(c, [
    ['client -> web  TCP/80', tcp('shop/client', 'shop/web', 80), true],
    ['web    -> db   TCP/5432', tcp('shop/web', 'shop/db', 5432), true],
    ['client -> db   TCP/5432', tcp('shop/client', 'shop/db', 5432), false],
    ['client -> web  TCP/22', tcp('shop/client', 'shop/web', 22), false],
  ]);
  const dropped = ((await counters(c)).DROP_POLICY_INGRESS?.packets ?? 0) - before;
  console.log(`  drop_policy_ingress +${dropped} packets: the SYNs the datapath refused`);
  say('What the agent compiled for shop/db (sluice policy shop/db)');
  const [db] = await agentRequest<{ ingressIsolated: boolean; policies: string[]; allow: { direction: string; peer: string; port: string }[] }[]>(
    c.socket,
    'GET',
    '/v1/policy/shop/db',
  );
  console.log(`  policies: ${db!.policies.join(', ')}`);
  for (const a of db!.allow) console.log(`  ${a.direction} allow ${a.peer} ${a.port}`);
  return wrong;
}

async function podIp(c: ClusterConfig, name: string): Promise<string> {
  const eps = await agentRequest<Endpoint[]>(c.socket, 'GET', '/v1/endpoints');
  return eps.find((e) => e.pod === name)!.ips[0]!;
}

/** Runs the tour; returns non-zero when something that should work did not. */
export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { keep: { type: 'boolean' } } });
  let failures = 0;
  say('Bringing up a local cluster: the agent loads and pins the eBPF datapath');
  const c = await localUp({ dir: DEMO.dir, name: DEMO.name, socket: DEMO.socket, stateDir: DEMO.stateDir, bpfDir: DEMO.bpfDir, podCIDRs: [DEMO.podCIDR] });
  try {
    console.log(`agent pid ${c.agentPid}, socket ${c.socket}, pins under ${c.bpfDir}`);
    say('Creating three pods: each is a network namespace wired by sluice-cni, run as a container runtime runs it');
    const pods = [
      ['shop/web', { app: 'web' }],
      ['shop/db', { app: 'db' }],
      ['shop/client', { app: 'client' }],
    ] as const;
    const ips: Record<string, string> = {};
    for (const [ref, labels] of pods) {
      const pod = await createPod(c, ref, { ...labels });
      ips[ref] = String(pod.status?.podIP);
      console.log(`  ${ref.padEnd(12)} ${ips[ref]!.padEnd(15)} netns ${pod.metadata.annotations?.['sluice.dev/netns']}`);
    }
    const web = (await run('ip', ['netns', 'exec', 'demo-shop-web', 'ip', '-o', 'link', 'show', 'eth0'])).trim();
    console.log(`  inside shop/web: ${web.split(' ').slice(0, 2).join(' ')} ...`);
    say('Each host veth carries the two programs through pinned TCX links (they outlive any process)');
    const endpoints = await agentRequest<Endpoint[]>(c.socket, 'GET', '/v1/endpoints');
    for (const e of endpoints) {
      console.log(`  ${`${e.namespace}/${e.pod}`.padEnd(12)} ${e.hostIfname} (ifindex ${e.hostIfindex}): ${c.bpfDir}/links/${e.hostIfname}_{ingress,egress}`);
    }

    const before = await counters(c);
    say('Traffic between pods and from the host');
    const checks: [string, Parameters<typeof probe>[1]][] = [
      ['client -> web  ICMP', { from: 'shop/client', to: 'shop/web', protocol: 'icmp', port: 0, timeoutMs: 2000 }],
      ['client -> web  TCP/80', { from: 'shop/client', to: 'shop/web', protocol: 'tcp', port: 80, timeoutMs: 2000 }],
      ['web    -> db   TCP/5432', { from: 'shop/web', to: 'shop/db', protocol: 'tcp', port: 5432, timeoutMs: 2000 }],
      ['client -> db   UDP/53', { from: 'shop/client', to: 'shop/db', protocol: 'udp', port: 53, timeoutMs: 2000 }],
    ];
    for (const [label, spec] of checks) {
      const ok = await probe(c, spec);
      if (!ok) failures++;
      console.log(`  ${label.padEnd(24)} ${ok ? 'ok' : 'FAILED'}`);
    }
    const hostOk = await run('ping', ['-c', '1', '-W', '2', ips['shop/web']!]).then(() => true, () => false);
    if (!hostOk) failures++;
    console.log(`  ${'host   -> web  ICMP'.padEnd(24)} ${hostOk ? 'ok' : 'FAILED'}`);

    const after = await counters(c);
    say('Datapath counters: what the eBPF programs did with that traffic');
    for (const [name, v] of Object.entries(after)) {
      const delta = v.packets - (before[name]?.packets ?? 0);
      if (delta > 0) console.log(`  ${name.padEnd(20)} +${delta} packets`);
    }
    console.log('  redirect_local counts packets handed from one pod to another by the programs, never touching host routing or iptables');

    failures += await policyChapter(c);
    if (values.keep) {
      say(`The cluster stays up. Try: sluice local --dir ${DEMO.dir} get pods; remove it with: sluice local --dir ${DEMO.dir} down`);
      return failures ? 1 : 0;
    }
  } catch (err: unknown) {
    failures++;
    console.error(`demo failed: ${errorMessage(err)}`);
  }
  say('Tearing down: pods, veths, pins, agent and state are removed');
  for (const p of await localDown(DEMO.dir)) console.error(`warning: ${p}`);
  console.log(failures ? `\n${failures} check(s) failed` : '\nAll checks passed.');
  return failures ? 1 : 0;
}
