/**
 * Through the real API server, into the datapath: pods created, relabelled
 * and deleted, and a NetworkPolicy created, changed and deleted with kubectl,
 * each checked by real TCP connections between the pods (from inside their
 * network namespaces) and by the agent's API, with the time each change took
 * to reach the datapath. Runs inside the e2e cluster's namespaces (e2e/run.sh).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET, type Endpoint } from '../contract/api-types.ts';

const KUBECTL = process.env.KUBECTL ?? '/var/cache/sluice-k8s/bin/kubectl';
const NS = 'sluice-api-test';
const DEADLINE_MS = 5_000;
/** A change must be in the datapath within this long (the upstream specs probe right after a policy). */
const WITHIN_MS = 1_000;

type Verdict = 'connected' | 'refused' | 'timeout';
let failures = 0;

function kubectl(args: string[], input?: string): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

function apply(doc: object): void {
  kubectl(['apply', '-f', '-'], JSON.stringify(doc));
}

function podDoc(name: string, labels: Record<string, string>): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: NS, name, labels },
    spec: {
      terminationGracePeriodSeconds: 0,
      containers: [{ name: 'c', image: 'k8s.gcr.io/e2e-test-images/agnhost:2.21', args: ['porter'], env: [{ name: 'SERVE_PORT_80', value: 'foo' }], ports: [{ containerPort: 80 }] }],
    },
  };
}

function policyDoc(port: number): object {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: NS, name: 'server-from-allowed' },
    spec: { podSelector: { matchLabels: { app: 'server' } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: 'allowed' } } }], ports: [{ protocol: 'TCP', port }] }] },
  };
}

async function endpointOf(pod: string): Promise<Endpoint | undefined> {
  const eps = await agentRequest<Endpoint[]>(DEFAULT_SOCKET, 'GET', '/v1/endpoints');
  return eps.find((e) => e.namespace === NS && e.pod === pod);
}

/** One TCP connect from the client pod's network namespace (a host tool entered into it). */
function probe(netns: string, ip: string, port: number): Verdict {
  const r = spawnSync('nsenter', [`--net=${netns}`, 'timeout', '1', 'bash', '-c', `exec 3<>/dev/tcp/${ip}/${port}`], { encoding: 'utf8' });
  if (r.status === 0) return 'connected';
  return r.status === 124 ? 'timeout' : 'refused';
}

/** Polls the probe until it gives the expected verdict; returns how long that took (ms) or fails the check. */
async function expectVerdict(what: string, from: Endpoint, to: Endpoint, port: number, want: Verdict, sinceMs: number): Promise<void> {
  for (;;) {
    const got = probe(from.netns, to.ips[0]!, port);
    const ms = performance.now() - sinceMs;
    if (got === want) {
      const ok = ms <= WITHIN_MS + 1_000; // the probe itself takes up to 1 s when it times out
      if (!ok) failures++;
      console.log(`${ok ? 'ok  ' : 'SLOW'} ${what}: ${from.pod} → ${to.pod}:${port} ${got} after ${ms.toFixed(0)} ms`);
      return;
    }
    if (ms > DEADLINE_MS) {
      failures++;
      console.log(`FAIL ${what}: ${from.pod} → ${to.pod}:${port} ${got}, want ${want} (${ms.toFixed(0)} ms)`);
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitFor<T>(what: string, get: () => Promise<T | undefined>): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (performance.now() - t0 > 120_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function identitiesOf(namespace: string): Promise<{ identity: number; labels: Record<string, string> }[]> {
  const ids = await agentRequest<{ identity: number; namespace?: string; labels?: Record<string, string> }[]>(DEFAULT_SOCKET, 'GET', '/v1/identities');
  return ids.filter((i) => i.namespace === namespace).map((i) => ({ identity: i.identity, labels: i.labels ?? {} }));
}

async function main(): Promise<void> {
  kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=true']);
  kubectl(['create', 'namespace', NS]);
  apply(podDoc('server', { app: 'server' }));
  apply(podDoc('client', { app: 'client' }));
  kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/server', 'pod/client', '--timeout=120s']);
  const server = await waitFor('server endpoint', () => endpointOf('server'));
  const client = await waitFor('client endpoint', () => endpointOf('client'));
  console.log(`pods created: server ${server.ips.join()} (endpoint ${server.id}), client ${client.ips.join()} (endpoint ${client.id})`);
  const ids = await identitiesOf(NS);
  const serverId = ids.find((i) => i.labels.app === 'server');
  console.log(`${serverId ? 'ok  ' : 'FAIL'} identity of the server's labels from the API: ${JSON.stringify(serverId)}`);
  if (!serverId) failures++;

  await expectVerdict('no policy', client, server, 80, 'connected', performance.now());
  let t = performance.now();
  apply(policyDoc(80));
  await expectVerdict('policy created (from role=allowed, TCP 80)', client, server, 80, 'timeout', t);
  t = performance.now();
  kubectl(['-n', NS, 'label', 'pod', 'client', 'role=allowed']);
  await expectVerdict('client relabelled role=allowed', client, server, 80, 'connected', t);
  t = performance.now();
  apply(policyDoc(81));
  await expectVerdict('policy changed to TCP 81', client, server, 80, 'timeout', t);
  t = performance.now();
  kubectl(['-n', NS, 'label', 'pod', 'client', 'role-']);
  apply(policyDoc(80));
  await expectVerdict('policy back to TCP 80, label removed', client, server, 80, 'timeout', t);
  t = performance.now();
  kubectl(['-n', NS, 'delete', 'networkpolicy', 'server-from-allowed']);
  await expectVerdict('policy deleted', client, server, 80, 'connected', t);

  // A pod created while a policy selects its peer: its labels come from the API (fetched if the watch lags).
  apply(policyDoc(80));
  apply(podDoc('late', { app: 'late', role: 'allowed' }));
  kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/late', '--timeout=120s']);
  const late = await waitFor('late endpoint', () => endpointOf('late'));
  await expectVerdict('new pod with role=allowed, first connection', late, server, 80, 'connected', performance.now());

  t = performance.now();
  kubectl(['-n', NS, 'delete', 'pod', 'client', '--wait=true']);
  let gone = false;
  // The API object goes first; the sandbox's CNI DEL (endpoint) and the watch event (identity) follow.
  while (!gone && performance.now() - t < DEADLINE_MS) {
    gone = (await endpointOf('client')) === undefined && !(await identitiesOf(NS)).some((i) => i.labels.app === 'client');
    if (!gone) await new Promise((r) => setTimeout(r, 50));
  }
  console.log(`${gone ? 'ok  ' : 'FAIL'} pod deleted: endpoint and identity gone after ${(performance.now() - t).toFixed(0)} ms`);
  if (!gone) failures++;
  kubectl(['delete', 'namespace', NS, '--wait=false']);
  console.log(`datapath via API: ${failures === 0 ? 'all checks passed' : `${failures} check(s) failed`}`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
