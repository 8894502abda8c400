/**
 * `sluice monitor` shows policy decisions as they happen, with pod names,
 * ports and reasons; its filters narrow the stream; and a flood of denied
 * packets is rate-limited in the datapath (counted as lost) without
 * disturbing allowed traffic. Real pods, real traffic, a local cluster.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MonitorEvent } from '../agent/monitor.ts';
import { parseExposition, valueOf } from './support/prometheus-text.ts';
import { must, sh, SLUICE, TestCluster } from './support/local-cluster.ts';

const PYTHON = '/usr/bin/python3';
const EVENT_WAIT_MS = 15_000;
/** Denied UDP packets per second from x/b to x/a, for FLOOD_SECONDS. */
const FLOOD_PPS = 30_000;
const FLOOD_SECONDS = 8;
/** The datapath's event budget per CPU (bpf/sluice.h). */
const EVENTS_PER_SEC = 2000;
const EVENTS_BURST = 500;
/** How long the allowed connection echoes during the flood: well inside it, with room for a slow start on a loaded machine. */
const HOLD_MS = 2000;
/** Paced UDP sender: prints "flooding" once started, then the number of packets the kernel accepted. */
const FLOOD_PY = `
import socket, sys, time
dst, port, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = attempted = 0
print("flooding", flush=True)
start = time.monotonic()
while True:
    elapsed = time.monotonic() - start
    if elapsed >= seconds:
        break
    while attempted < int(rate * elapsed) + 100:
        attempted += 1
        try:
            s.sendto(b"flood", (dst, port))
            sent += 1
        except OSError:
            pass
    time.sleep(0.001)
print(sent, flush=True)
`;

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {app: a}}
spec: {containers: [{name: web, ports: [{name: http, containerPort: 80, protocol: TCP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {app: b}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: c, labels: {app: c}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: a-from-c}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: c}}}], ports: [{protocol: TCP, port: 80}]}]
`;

/** The JSON lines of one `sluice monitor -o json` process. */
class EventStream {
  readonly events: MonitorEvent[] = [];
  private pending = '';

  constructor(child: ChildProcess) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.pending += chunk;
      let nl: number;
      while ((nl = this.pending.indexOf('\n')) >= 0) {
        const line = this.pending.slice(0, nl);
        this.pending = this.pending.slice(nl + 1);
        if (line) this.events.push(JSON.parse(line) as MonitorEvent);
      }
    });
  }

  /** Events that match. */
  matching(pred: (e: MonitorEvent) => boolean): MonitorEvent[] {
    return this.events.filter(pred);
  }
}

const isFlow = (e: MonitorEvent, src: string, dst: string, protocol: string, port: number) =>
  e.src.name === src && e.dst.name === dst && e.protocol === protocol && e.dst.port === port;

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = EVENT_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('sluice monitor', () => {
  const cluster = new TestCluster();
  const manifests = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-monitor-'));
  const pods: Record<string, { ip: string; netns: string }> = {};
  let metricsUrl = '';

  const monitor = (...filters: string[]) => new EventStream(cluster.spawn(SLUICE, ['monitor', '-o', 'json', '--socket', cluster.socket, ...filters]));
  const probe = (from: string, to: string, port: number, timeoutMs = 500) =>
    cluster.local('probe', from, to, '--protocol', 'tcp', '--port', String(port), '--timeout-ms', String(timeoutMs));
  const counter = async (name: string) => (await cluster.status()).counters[name]!.packets;
  const metrics = async () => parseExposition(await (await fetch(metricsUrl)).text());

  beforeAll(async () => {
    await cluster.up('--metrics-address', '127.0.0.1:0');
    const file = path.join(manifests, 'cluster.yaml');
    fs.writeFileSync(file, MANIFESTS);
    await must(SLUICE, ['local', '--dir', cluster.dir, 'apply', '-f', file]);
    for (const p of await cluster.pods()) {
      pods[`${p.metadata.namespace}/${p.metadata.name}`] = { ip: p.status.podIP, netns: p.metadata.annotations['sluice.dev/netns']! };
    }
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as { metrics: { address: string } };
    metricsUrl = `http://${status.metrics.address}/metrics`;
  });
  afterAll(async () => {
    await cluster.teardown();
    fs.rmSync(manifests, { recursive: true, force: true });
  });

  it('shows a denied connection with its pods, port and reason, and an allowed one as ALLOWED; filters by pod and verdict', async () => {
    const all = monitor();
    const ofC = monitor('--pod', 'x/c');
    const denied = monitor('--verdict', 'denied');
    const deniedBA = (e: MonitorEvent) => e.verdict === 'DENIED' && isFlow(e, 'x/b', 'x/a', 'TCP', 80);
    const allowedCA = (e: MonitorEvent) => e.verdict === 'ALLOWED' && isFlow(e, 'x/c', 'x/a', 'TCP', 80);
    const dropsBefore = await counter('DROP_POLICY_INGRESS');

    // The streams subscribe asynchronously: connect until each has seen what it should.
    await until('the monitors to show b->a denied and c->a allowed', async () => {
      expect((await probe('x/b', 'x/a', 80)).code).toBe(1);
      expect((await probe('x/c', 'x/a', 80, 2000)).code).toBe(0);
      return all.matching(deniedBA).length > 0 && all.matching(allowedCA).length > 0 && ofC.matching(allowedCA).length > 0 && denied.matching(deniedBA).length > 0;
    });
    // One more denied connection, now that every stream is surely subscribed.
    const seenByAll = all.matching(deniedBA).length;
    expect((await probe('x/b', 'x/a', 80)).code).toBe(1);
    await until('the last denial to reach the unfiltered stream', () => all.matching(deniedBA).length > seenByAll);

    const d = all.matching(deniedBA).at(-1)!;
    expect(d).toMatchObject({
      type: 'verdict',
      verdict: 'DENIED',
      reason: 'policy',
      counter: 'DROP_POLICY_INGRESS',
      direction: 'ingress',
      protocol: 'TCP',
      src: { namespace: 'x', pod: 'b', ip: pods['x/b']!.ip },
      dst: { namespace: 'x', pod: 'a', ip: pods['x/a']!.ip, port: 80 },
    });
    expect(d.summary).toMatch(new RegExp(`^x/b:\\d+ -> x/a:80 TCP DENIED ingress \\(policy\\)$`));
    expect(all.matching(allowedCA).at(-1)).toMatchObject({ type: 'verdict', verdict: 'ALLOWED', reason: 'policy', direction: 'ingress', src: { pod: 'c' }, dst: { pod: 'a', port: 80 } });

    // --pod x/c: only events with c at one end, though b->a denials kept happening.
    expect(ofC.events.every((e) => e.src.name === 'x/c' || e.dst.name === 'x/c')).toBe(true);
    // --verdict denied: no ALLOWED, though c->a connections were allowed all along.
    expect(denied.events.length).toBeGreaterThan(0);
    expect(denied.events.every((e) => e.verdict === 'DENIED')).toBe(true);

    // The same denials in the drop counter, the status's recent drops and /metrics.
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])) as {
      counters: Record<string, { packets: number }>;
      recentDrops: MonitorEvent[];
    };
    const denials = all.matching(deniedBA).length;
    expect(status.counters.DROP_POLICY_INGRESS!.packets - dropsBefore).toBeGreaterThanOrEqual(denials);
    expect(status.recentDrops.some(deniedBA)).toBe(true);
    const m = await metrics();
    expect(valueOf(m, 'sluice_drop_packets_total', { reason: 'policy', direction: 'ingress' })).toBeGreaterThanOrEqual(status.counters.DROP_POLICY_INGRESS!.packets);
    expect(valueOf(m, 'sluice_endpoint_drop_packets_total', { namespace: 'x', pod: 'a', reason: 'policy', direction: 'ingress' })).toBeGreaterThanOrEqual(denials);

    // The human-readable screen lists the denial among the recent drops.
    const screen = await must(SLUICE, ['status', '--socket', cluster.socket]);
    expect(screen).toMatch(/x\/b:\d+ -> x\/a:80 TCP DENIED ingress \(policy\)/);
  });

  it('rate-limits events in a flood of denied packets, counts the rest as lost, and keeps forwarding allowed traffic', async () => {
    const all = monitor();
    await until('the stream to be subscribed', async () => {
      await probe('x/b', 'x/a', 80, 200);
      return all.events.length > 0;
    });
    const udpDenied = (e: MonitorEvent) => e.verdict === 'DENIED' && isFlow(e, 'x/b', 'x/a', 'UDP', 9);
    const dropsBefore = await counter('DROP_POLICY_INGRESS');
    const lostBefore = await counter('EVENTS_LOST');
    const received = async () => valueOf(await metrics(), 'sluice_monitor_events_received_total');
    const receivedBefore = await received();

    const flood = cluster.spawn('ip', ['netns', 'exec', pods['x/b']!.netns, PYTHON, '-c', FLOOD_PY, pods['x/a']!.ip, '9', String(FLOOD_PPS), String(FLOOD_SECONDS)]);
    let floodOut = '';
    flood.stdout!.setEncoding('utf8');
    flood.stdout!.on('data', (chunk: string) => (floodOut += chunk));
    const floodStart = performance.now();
    let floodSeconds = 0;
    const floodDone = new Promise<number>((resolve) =>
      flood.on('exit', (code) => {
        floodSeconds = (performance.now() - floodStart) / 1000;
        resolve(code ?? 1);
      }),
    );
    await until('the flood to start', () => floodOut.startsWith('flooding'), 5_000);

    // While it runs: an established connection keeps echoing, and a new one is allowed and answered.
    const hold = sh('ip', ['netns', 'exec', pods['x/c']!.netns, SLUICE, 'local', 'connect', pods['x/a']!.ip, '80', '--hold-ms', String(HOLD_MS), '--interval-ms', '20', '--timeout-ms', '1000']);
    const fresh = await probe('x/c', 'x/a', 80, 1000);
    const held = await hold;
    expect(flood.exitCode, 'the allowed traffic finished before the flood did').toBeNull();
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(held.code, held.stderr).toBe(0);
    expect(Number(/(\d+) echoes/.exec(held.stdout)?.[1])).toBeGreaterThan(10);

    expect(await floodDone).toBe(0);
    const sent = Number(floodOut.split('\n')[1]);
    expect(sent).toBeGreaterThan(FLOOD_PPS * FLOOD_SECONDS * 0.5);
    // Wait until the agent has read everything the ring buffer holds.
    let read = -1;
    await until('the agent to read everything', async () => {
      const now = await received();
      const settled = now === read;
      read = now;
      await new Promise((r) => setTimeout(r, 400));
      return settled;
    });
    read -= receivedBefore;
    const delivered = all.matching(udpDenied).length;
    const dropped = (await counter('DROP_POLICY_INGRESS')) - dropsBefore;
    const lost = (await counter('EVENTS_LOST')) - lostBefore;

    expect(dropped).toBeGreaterThanOrEqual(sent * 0.95);
    // The follower saw some (a follower that lags loses lines by design, so not all that the agent read).
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThanOrEqual(read);
    // The datapath's budget: SLUICE_EVENTS_PER_SEC a second after a burst of SLUICE_EVENTS_BURST, per CPU
    // (bpf/sluice.h), for as long as the flood ran on this loaded or idle machine.
    const budget = os.availableParallelism() * (EVENTS_PER_SEC * floodSeconds + EVENTS_BURST);
    expect(read).toBeLessThanOrEqual(budget);
    expect(read).toBeLessThan(dropped / 2);
    expect(lost).toBeGreaterThan(0);
    // Every denied packet was either read by the agent or counted as lost.
    expect(read + lost).toBeGreaterThanOrEqual(dropped * 0.99);
    const m = await metrics();
    expect(valueOf(m, 'sluice_monitor_events_lost_total')).toBeGreaterThanOrEqual(lostBefore + lost);
  });
});
