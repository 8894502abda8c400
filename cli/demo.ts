/**
 * `sluice demo`: a guided tour on a throw-away local cluster: pods come up
 * through the real CNI plugin, talk over ICMP, TCP and UDP, and the datapath
 * counters show that the eBPF programs carried the traffic; NetworkPolicy
 * allows and denies; the flow records show DNS, HTTP and a cut connection.
 */
import { parseArgs } from 'node:util';
import { agentRequest } from '../contract/client.ts';
import type { Endpoint } from '../contract/api-types.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { applyManifests, deleteManifests } from './local/apply.ts';
import { selfCommand } from './local/cluster.ts';
import type { FlowRecord, FlowsResponse } from '../contract/flows.ts';
import type { TcpHealthResponse } from '../contract/tcp-health.ts';
import type { SecurityAlert } from '../contract/security.ts';
import type { ServiceFrontendReport, ServicesResponse } from '../contract/services.ts';
import type { SecurityEventsResponse } from '../agent/api/security-routes.ts';
import fs from 'node:fs';
import path from 'node:path';
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
  rulesDir: '/var/lib/sluice/demo-security-rules',
};

/** The demo's own security rule: curl may not run in shop/client (it dies at exec). */
const DEMO_RULES = `- rule: No curl in shop/client
  desc: the demo's kill rule
  condition: evt.type = execve and proc.name = curl and k8s.ns.name = shop and k8s.pod.name = client
  output: "%proc.exepath killed in %k8s.ns.name/%k8s.pod.name (pid %proc.pid)"
  priority: CRITICAL
  action: kill
`;

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

/** Starts `sluice local serve ARGS` in a pod's namespace; resolves once it listens, with the process to stop. */
async function serveIn(netns: string, args: string[]): Promise<ChildProcess> {
  const server = spawn('ip', ['netns', 'exec', netns, ...selfCommand(), 'local', 'serve', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server.stdout!.once('data', () => resolve());
    server.once('exit', (code) => reject(new Error(`server ${args.join(' ')} in ${netns} exited (${code})`)));
  });
  return server;
}

/** `sluice local ask ...` from a pod: its answer, or the error. */
function askFrom(netns: string, args: string[]): Promise<string> {
  return run('ip', ['netns', 'exec', netns, ...selfCommand(), 'local', 'ask', ...args]).then((out) => out.trim(), (err: unknown) => `failed: ${errorMessage(err)}`);
}

/** Flow records of namespace shop the agent holds, newest last. */
async function shopFlows(c: ClusterConfig, query: string): Promise<FlowRecord[]> {
  return (await agentRequest<FlowsResponse>(c.socket, 'GET', `/v1/flows?namespace=shop&last=200&${query}`)).flows;
}

/**
 * The observability chapter: a DNS lookup that works and one that does not,
 * an HTTP request that fails with 500, and a connection a policy change cuts
 * (its retransmissions), in the flow records and the TCP health.
 */
async function observeChapter(c: ClusterConfig): Promise<number> {
  let wrong = 0;
  const netns = (pod: string) => `demo-shop-${pod}`;
  const [webIp, dbIp] = [await podIp(c, 'web'), await podIp(c, 'db')];
  say('Observability: DNS and HTTP seen by the datapath, without a proxy (sluice observe)');
  await applyManifests(c, [
    policy('dns-to-db', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ ports: [{ protocol: 'UDP', port: 53 }] }] }),
    policy('web-echo-from-client', {
      podSelector: { matchLabels: { app: 'web' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ protocol: 'TCP', port: 81 }] }],
    }),
  ]);
  const servers = [
    await serveIn(netns('db'), ['--protocol', 'dns', '--port', '53', '--name', `web.shop=${webIp}`, '--name', `db.shop=${dbIp}`]),
    await serveIn(netns('web'), ['--protocol', 'http', '--port', '80']),
    await serveIn(netns('web'), ['--protocol', 'tcp', '--port', '81']),
  ];
  try {
    const asks: [string, string[], RegExp][] = [
      ['client: dns web.shop', ['dns', dbIp, 'web.shop'], /^NOERROR /],
      ['client: dns nope.shop', ['dns', dbIp, 'nope.shop'], /^NXDOMAIN$/],
      ['client: GET /', ['http', `http://${webIp}/`], /^200$/],
      ['client: GET /fail/checkout', ['http', `http://${webIp}/fail/checkout`], /^500$/],
    ];
    for (const [label, args, want] of asks) {
      const answer = await askFrom(netns('client'), args);
      if (!want.test(answer)) wrong++;
      console.log(`  ${label.padEnd(28)} ${answer}`);
    }
    await new Promise((r) => setTimeout(r, 500)); // the agent polls the events every 100 ms
    console.log('\n  sluice observe --namespace shop --type l7:');
    for (const r of await shopFlows(c, 'type=l7')) console.log(`    ${r.time.slice(11, 23)} ${r.summary}`);

    say('A connection cut by a policy change: its packets are dropped, its sender retransmits');
    const holder = spawn('ip', ['netns', 'exec', netns('client'), ...selfCommand(), 'local', 'connect', webIp, '81', '--hold-ms', '4000', '--interval-ms', '100', '--timeout-ms', '6000'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 800));
    await deleteManifests(c, [policy('web-echo-from-client', {})], false);
    console.log('  deleted policy web-echo-from-client while shop/client held a connection to web:81');
    await new Promise((r) => setTimeout(r, 2500));
    if (holder.exitCode === null) holder.kill('SIGKILL');
    const cut = (await shopFlows(c, 'type=drop')).filter((r) => r.dropReason === 'DROP_REVOKED');
    const health = await agentRequest<TcpHealthResponse>(c.socket, 'GET', '/v1/tcp-health');
    const retransmits = health.pods.find((p) => p.namespace === 'shop' && p.pod === 'client')?.retransmits ?? 0;
    for (const r of cut.slice(-3)) console.log(`    ${r.time.slice(11, 23)} ${r.summary}`);
    console.log(`  ${cut.length} packets dropped as revoked; shop/client retransmitted ${retransmits} segments (sluice tcp-health)`);
    if (cut.length === 0 || retransmits === 0) wrong++;
    console.log('  The same records feed /metrics (sluice_dns_queries_total, sluice_http_requests_total, ...) and the service map: sluice ui');
  } finally {
    for (const s of servers) if (s.exitCode === null) s.kill('SIGKILL');
  }
  return wrong;
}

/** Alerts of one rule the agent holds. */
async function alertsOf(c: ClusterConfig, rule: string): Promise<SecurityAlert[]> {
  const res = await agentRequest<SecurityEventsResponse>(c.socket, 'GET', `/v1/security/events?alerts=1&last=50&rule=${encodeURIComponent(rule)}`);
  return res.items.flatMap((i) => (i.kind === 'alert' ? [i.alert] : []));
}

/** The runtime security chapter: a shell in a pod raises the shipped alert, and a kill rule stops curl in one pod, not on the host. */
async function securityChapter(c: ClusterConfig): Promise<number> {
  let wrong = 0;
  say('Runtime security: what runs in each pod (sluice security events)');
  await run('ip', ['netns', 'exec', 'demo-shop-web', 'sh', '-c', 'id -u >/dev/null']);
  await run('sh', ['-c', 'true']);
  await new Promise((r) => setTimeout(r, 500));
  const shells = await alertsOf(c, 'Shell started in a pod');
  for (const a of shells.slice(-2)) console.log(`  ${a.priority} ${a.rule}: ${a.output}`);
  const hostShell = shells.some((a) => !a.event.pod);
  console.log(`  a shell in shop/web: ${shells.length ? 'alert raised' : 'NO ALERT'}; the host's own shell: ${hostShell ? 'ALERT (unexpected)' : 'no alert (host processes are not pods)'}`);
  if (!shells.length || hostShell) wrong++;

  say('A kill rule: curl dies at exec in shop/client, before its first instruction; the host runs it');
  const inPod = await run('ip', ['netns', 'exec', 'demo-shop-client', 'sh', '-c', 'curl --version >/dev/null; echo $?']).then((o) => o.trim(), () => 'failed');
  const onHost = await run('sh', ['-c', 'curl --version >/dev/null; echo $?']).then((o) => o.trim(), () => 'failed');
  console.log(`  shop/client: curl --version exits ${inPod}${inPod === '137' ? ' (SIGKILL from the exec hook)' : ''}; host: exits ${onHost}`);
  if (inPod !== '137' || onHost !== '0') wrong++;
  await new Promise((r) => setTimeout(r, 300));
  for (const a of (await alertsOf(c, 'No curl in shop/client')).slice(-1)) console.log(`  ${a.priority} ${a.rule} [${a.action}]: ${a.output}`);
  return wrong;
}

/** The Services chapter: a ClusterIP load-balanced between two pods at the socket, without kube-proxy. */
async function servicesChapter(c: ClusterConfig): Promise<number> {
  say('Services without kube-proxy: a ClusterIP served at the socket (sluice service list)');
  await createPod(c, 'shop/web-2', { app: 'web' });
  const servers = [await serveIn('demo-shop-web', ['--protocol', 'http', '--port', '80']), await serveIn('demo-shop-web-2', ['--protocol', 'http', '--port', '80'])];
  try {
    await applyManifests(c, [
      { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'shop', name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80, protocol: 'TCP' }] } },
    ]);
    let frontend: ServiceFrontendReport | undefined;
    for (let i = 0; i < 50 && !(frontend && frontend.backends.filter((b) => b.state === 'ready').length === 2); i++) {
      frontend = (await agentRequest<ServicesResponse>(c.socket, 'GET', '/v1/services')).frontends.find((f) => f.namespace === 'shop' && f.name === 'web');
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!frontend) {
      console.log('  the Service never reached the load balancer: FAILED');
      return 1;
    }
    console.log(`  shop/web ClusterIP ${frontend.address}:${frontend.port}, backends ${frontend.backends.map((b) => `${b.pod} ${b.address}`).join(', ')}`);
    const asks = await Promise.all(Array.from({ length: 20 }, () => askFrom('demo-shop-client', ['http', `http://${frontend!.address}/`])));
    const answered = asks.filter((a) => a === '200').length;
    const after = (await agentRequest<ServicesResponse>(c.socket, 'GET', '/v1/services')).frontends.find((f) => f.namespace === 'shop' && f.name === 'web')!;
    console.log(`  shop/client: ${answered} of 20 GETs to the ClusterIP answered 200; new connections per backend: ${after.backends.map((b) => `${b.pod} ${b.newFlows}`).join(', ')}`);
    console.log('  the connect() went straight to a backend (cgroup hooks at the socket): no DNAT, no iptables rule');
    return answered === 20 && after.backends.every((b) => b.newFlows > 0) ? 0 : 1;
  } finally {
    for (const s of servers) if (s.exitCode === null) s.kill('SIGKILL');
  }
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
  // Runtime security on, with one rule of the demo's own besides the shipped ones (the security chapter).
  fs.mkdirSync(DEMO.rulesDir, { recursive: true });
  fs.writeFileSync(path.join(DEMO.rulesDir, 'demo.yaml'), DEMO_RULES);
  const c = await localUp({
    dir: DEMO.dir, name: DEMO.name, socket: DEMO.socket, stateDir: DEMO.stateDir, bpfDir: DEMO.bpfDir, podCIDRs: [DEMO.podCIDR],
    agentArgs: [`--security-rules=${DEMO.rulesDir}`],
  });
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
    failures += await observeChapter(c);
    failures += await securityChapter(c);
    failures += await servicesChapter(c);
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
  fs.rmSync(DEMO.rulesDir, { recursive: true, force: true });
  console.log(failures ? `\n${failures} check(s) failed` : '\nAll checks passed.');
  return failures ? 1 : 0;
}
