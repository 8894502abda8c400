/**
 * `sluice demo`: a guided tour on a throw-away local cluster: pods come up
 * through the real CNI plugin, talk over ICMP, TCP and UDP, and the datapath
 * counters show that the eBPF programs carried the traffic.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../agent/client.ts';
import type { Endpoint } from '../agent/api-types.ts';
import { localDown } from './local/down.ts';
import { probe } from './local/probe.ts';
import { createPod } from './local/pods.ts';
import { run } from './local/run.ts';
import { localUp } from './local/up.ts';
import type { ClusterConfig } from './local/cluster.ts';

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
    if (values.keep) {
      say(`The cluster stays up. Try: sluice local --dir ${DEMO.dir} get pods; remove it with: sluice local --dir ${DEMO.dir} down`);
      return failures ? 1 : 0;
    }
  } catch (err: unknown) {
    failures++;
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  say('Tearing down: pods, veths, pins, agent and state are removed');
  for (const p of await localDown(DEMO.dir)) console.error(`warning: ${p}`);
  console.log(failures ? `\n${failures} check(s) failed` : '\nAll checks passed.');
  return failures ? 1 : 0;
}
