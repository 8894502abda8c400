/**
 * The agent pod deleted while traffic flows: a TCP connection between two
 * pods (an echo server and a client writing every 50 ms, both run inside the
 * pods' network namespaces), across an ingress policy, must carry on through
 * the restart with nothing lost; the DaemonSet brings the agent back and it
 * adopts the pinned maps. Runs inside the e2e cluster's namespaces.
 *
 * With --roll IMAGE (issue 33), the same connection through a rolling update
 * of the DaemonSet to another image (a datapath built with other flags): the
 * new agent must replace the programs and switch every TCX link, and the
 * node must run the new datapath only (status: runningVersion = version).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { agentRequest } from '../contract/client.ts';
import { DEFAULT_SOCKET, type Endpoint } from '../contract/api-types.ts';

const KUBECTL = process.env.KUBECTL ?? '/var/cache/sluice-k8s/bin/kubectl';
const NS = 'sluice-restart-test';
const PORT = 9000;
const rollArg = process.argv.indexOf('--roll');
const ROLL_IMAGE = rollArg >= 0 ? process.argv[rollArg + 1] : undefined;

const SERVER_JS = `require('net').createServer((s) => s.pipe(s)).listen(${PORT}, () => console.log('listening'));`;
const CLIENT_JS = (ip: string) => `
const s = require('net').connect(${PORT}, '${ip}');
let sent = 0, got = 0, buf = '', last = Date.now(), maxGap = 0;
s.on('connect', () => { console.log(JSON.stringify({ connected: true })); setInterval(() => s.write((sent++) + '\\n'), 50); });
s.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { const n = Number(buf.slice(0, i)); buf = buf.slice(i + 1);
  if (n !== got) { console.log(JSON.stringify({ error: 'out of order', n, got })); process.exit(2); }
  got++; const now = Date.now(); maxGap = Math.max(maxGap, now - last); last = now; } });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(3); });
s.on('close', () => { console.log(JSON.stringify({ error: 'closed' })); process.exit(4); });
setInterval(() => console.log(JSON.stringify({ sent, got, maxGap })), 500);
process.on('SIGTERM', () => { console.log(JSON.stringify({ final: true, sent, got, maxGap })); process.exit(0); });`;

function kubectl(args: string[], input?: string): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function endpointOf(pod: string): Promise<Endpoint> {
  for (let i = 0; i < 600; i++) {
    const eps = await agentRequest<Endpoint[]>(DEFAULT_SOCKET, 'GET', '/v1/endpoints').catch(() => [] as Endpoint[]);
    const ep = eps.find((e) => e.namespace === NS && e.pod === pod);
    if (ep) return ep;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no endpoint for ${pod}`);
}

function inNetns(netns: string, js: string): ChildProcess {
  return spawn('nsenter', [`--net=${netns}`, process.execPath, '-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function main(): Promise<void> {
  kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=true']);
  kubectl(['create', 'namespace', NS]);
  for (const [name, app] of [['server', 'server'], ['client', 'client']]) {
    kubectl(['-n', NS, 'run', name!, `--labels=app=${app}`, '--image=k8s.gcr.io/e2e-test-images/agnhost:2.21', '--restart=Never', '--', 'pause']);
  }
  kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { namespace: NS, name: 'server-from-client' },
    spec: { podSelector: { matchLabels: { app: 'server' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ protocol: 'TCP', port: PORT }] }] },
  }));
  kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/server', 'pod/client', '--timeout=120s']);
  const server = await endpointOf('server');
  const client = await endpointOf('client');

  const srv = inNetns(server.netns, SERVER_JS);
  await new Promise<void>((resolve) => readline.createInterface({ input: srv.stdout! }).once('line', () => resolve()));
  const cli = inNetns(client.netns, CLIENT_JS(server.ips[0]!));
  let lastStats = { sent: 0, got: 0, maxGap: 0 };
  let broken: string | null = null;
  readline.createInterface({ input: cli.stdout! }).on('line', (line) => {
    const m = JSON.parse(line) as { error?: string; sent?: number; got?: number; maxGap?: number };
    if (m.error) broken = m.error;
    else if (m.sent !== undefined) lastStats = { sent: m.sent, got: m.got!, maxGap: m.maxGap! };
  });
  cli.on('exit', (code) => { if (code !== 0 && !broken) broken = `client exited ${code}`; });
  await new Promise((r) => setTimeout(r, 2_000));

  const oldPod = kubectl(['-n', 'sluice-system', 'get', 'pods', '-l', 'app.kubernetes.io/name=sluice', '-o', 'jsonpath={.items[0].metadata.name}']);
  const t0 = Date.now();
  const before = await agentRequest<{ datapath: { version?: string } }>(DEFAULT_SOCKET, 'GET', '/v1/status');
  if (ROLL_IMAGE) {
    const containers = ['mount-bpffs', 'install-cni', 'agent'].map((c) => `${c}=${ROLL_IMAGE}`);
    kubectl(['-n', 'sluice-system', 'set', 'image', 'ds/sluice', ...containers]);
    console.log(`rolling ds/sluice to ${ROLL_IMAGE} (datapath ${before.datapath.version?.slice(0, 12)}) while ${lastStats.got} echoes had come back`);
  } else {
    kubectl(['-n', 'sluice-system', 'delete', 'pod', oldPod, '--wait=false']);
    console.log(`deleted agent pod ${oldPod} while ${lastStats.got} echoes had come back`);
  }
  let newPod = '';
  for (let i = 0; i < 600 && !newPod; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const out = kubectl(['-n', 'sluice-system', 'get', 'pods', '-l', 'app.kubernetes.io/name=sluice', '-o',
      'jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    newPod = out.split('\n').map((l) => l.split(' ')).find(([n, ready]) => n && n !== oldPod && ready === 'True')?.[0] ?? '';
  }
  const backMs = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 3_000));
  cli.kill('SIGTERM');
  srv.kill('SIGTERM');
  const newLog = kubectl(['-n', 'sluice-system', 'logs', newPod]).split('\n');
  let adopted = newLog.find((l) => l.includes('datapath adopted')) ?? '';
  if (ROLL_IMAGE) {
    // The new programs replaced the old on every link, none failed, and nothing runs the old version.
    const replaced = newLog.find((l) => l.includes('datapath: programs of version')) ?? '';
    const after = await agentRequest<{ datapath: { version?: string; runningVersion?: string } }>(DEFAULT_SOCKET, 'GET', '/v1/status');
    const switched = replaced !== '' && !replaced.includes(' NOT: ') && after.datapath.version !== before.datapath.version && after.datapath.runningVersion === after.datapath.version;
    console.log(`new agent: ${replaced || 'NO "programs of version ... replaced" in its log'}; running ${after.datapath.runningVersion?.slice(0, 12)}, carried ${after.datapath.version?.slice(0, 12)}`);
    adopted = switched ? replaced : '';
  }
  // A fresh connection after the restart works too (policy maps in place, new agent serving).
  const fresh = spawnSync('nsenter', [`--net=${client.netns}`, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${server.ips[0]}/${PORT}`]);
  const denied = spawnSync('nsenter', [`--net=${client.netns}`, 'timeout', '1', 'bash', '-c', `exec 3<>/dev/tcp/${server.ips[0]}/22`]);
  // A new connection to the allowed port works (the echo server is gone by now: refused is fine, a timeout is not);
  // the port the policy does not allow times out.
  const freshOk = fresh.status !== 124;
  const ok = broken === null && newPod !== '' && adopted !== '' && lastStats.got > 100 && lastStats.got >= lastStats.sent - 2 && freshOk && denied.status === 124;
  console.log(`agent back and ready after ${backMs} ms (${newPod}); ${adopted ? (ROLL_IMAGE ? 'every link switched to the new datapath' : 'it adopted the pinned datapath') : ROLL_IMAGE ? 'links NOT all switched to the new datapath' : 'NO "datapath adopted" in its log'}`);
  console.log(`connection: ${broken ? `BROKEN (${broken})` : 'survived'}; ${lastStats.sent} sent, ${lastStats.got} echoed, longest gap ${lastStats.maxGap} ms`);
  console.log(`after the restart: a new connection to the allowed port ${freshOk ? 'is not blocked' : 'TIMED OUT'}; the port the policy denies ${denied.status === 124 ? 'times out (denied)' : 'was NOT denied'}`);
  kubectl(['delete', 'namespace', NS, '--wait=false']);
  console.log(`${ROLL_IMAGE ? 'rolling update' : 'agent restart'}: ${ok ? 'passed' : 'FAILED'}`);
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
