/**
 * `sluice ui` in headless Chromium (Debian's package, driven by
 * playwright-core): the page loads, draws pods and their flows coloured by
 * verdict with rates, turns an edge red when its flows are denied, and its
 * flow table follows the filters it passes to the agent. Against a fake
 * agent that speaks contract/flows.ts on a unix socket (fast, exact), and
 * against a real local cluster with a scripted workload and a deny policy.
 *
 * SLUICE_UI_SCREENSHOT=<file.png> saves the page of the local-cluster test
 * (docs/ui-service-map.png is made so).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlowEndpoint, FlowRecord, FlowsResponse } from '../contract/flows.ts';
import { SLUICE, TestCluster } from './support/local-cluster.ts';

const CHROMIUM = '/usr/bin/chromium';
// No internet here: without these Chromium waits on connections it tries by itself.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 20_000;
const PYTHON = '/usr/bin/python3';
/** An HTTP client in a loop: a new connection per request, every fifth a PUT (http.server answers 501). */
const HTTP_CLIENT_PY = `
import http.client, sys, time
i = 0
while True:
    i += 1
    try:
        c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=2)
        c.request('PUT' if i % 5 == 0 else 'GET', '/')
        c.getresponse().read()
        c.close()
    except OSError:
        pass
    time.sleep(0.2)
`;
/** The scripted workload: a web pod, its client, and two others that reach it until a policy says no. */
const WORKLOAD = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: web, labels: {app: web}}
spec: {containers: [{name: web, ports: [{name: echo, containerPort: 80, protocol: TCP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: client, labels: {app: client}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: intruder, labels: {app: intruder}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: ops, name: prober, labels: {app: prober}}
`;
const WEB_FROM_CLIENT_ONLY = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: web-from-client}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
`;

/** Headless Chromium with a profile of its own; close() removes both. */
async function openBrowser(): Promise<{ page: Page; close: () => Promise<void> }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ui-chromium-'));
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 900 }, timeout: 60_000 });
    const page = context.pages()[0] ?? (await context.newPage());
    return {
      page,
      close: async () => {
        await context!.close();
        fs.rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await context?.close();
    fs.rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}

/** `sluice ui` against an agent socket; resolves with its URL once it printed it. */
function startUi(socket: string, ...extra: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(SLUICE, ['ui', '--socket', socket, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^sluice ui: (http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(out);
      if (m) resolve({ child, url: m[1]!, stderr: () => err });
    });
    child.once('exit', (code) => reject(new Error(`sluice ui exited (${code}) before printing its URL: ${err}`)));
  });
}

/** Stops a process we started (by its PID); resolves with its exit code. */
function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

const edge = (from: string, to: string, verdict?: string) => `g.edge[data-source="${from}"][data-destination="${to}"]${verdict ? `[data-verdict="${verdict}"]` : ''}`;
const node = (id: string) => `g.node[data-id="${id}"]`;

describe('sluice ui against a fake agent', () => {
  const id = randomBytes(3).toString('hex');
  const socket = path.join(os.tmpdir(), `sluice-ui-fake-${id}.sock`);
  const requests: string[] = [];
  const followers: http.ServerResponse[] = [];
  const held: FlowRecord[] = [];
  let agent: http.Server;
  let ui: Awaited<ReturnType<typeof startUi>> | undefined;
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;

  const pod = (name: string, port: number): FlowEndpoint => ({ ip: `10.1.0.${name.charCodeAt(0)}`, port, identity: 300 + name.charCodeAt(0), name: `shop/${name}`, namespace: 'shop', pod: name, labels: { app: name } });
  const record = (from: string, to: string, over: Partial<FlowRecord> = {}, agoMs = 0): FlowRecord => ({
    time: new Date(Date.now() - agoMs).toISOString(),
    type: 'flow',
    verdict: 'ALLOWED',
    reason: 'no policy',
    source: pod(from, 40000),
    destination: pod(to, 80),
    protocol: 'TCP',
    direction: '',
    isReply: false,
    interface: { index: 7 },
    bytes: 60,
    summary: `shop/${from}:40000 -> shop/${to}:80 TCP ALLOWED`,
    ...over,
  });
  /** What the fake agent's filter keeps: namespace, pod and verdict, as the agent would. */
  const matches = (r: FlowRecord, q: URLSearchParams) => {
    const ends = [r.source, r.destination];
    const ns = q.get('namespace');
    const p = q.get('pod');
    if (ns && !ends.some((e) => e.namespace === ns)) return false;
    if (p && !ends.some((e) => e.name === p || e.pod === p)) return false;
    return !q.get('verdict') || q.get('verdict') === r.verdict;
  };
  const push = (r: FlowRecord) => {
    held.push(r);
    for (const f of followers) if (matches(r, new URL(f.req.url!, 'http://agent').searchParams)) f.write(`${JSON.stringify(r)}\n`);
  };

  beforeAll(async () => {
    // Old traffic, outside the window: web -> db allowed (drawn idle), and a DNS lookup to the world.
    held.push(record('web', 'db', {}, 60_000));
    agent = http.createServer((req, res) => {
      requests.push(req.url!);
      const url = new URL(req.url!, 'http://agent');
      if (url.pathname === '/v1/endpoints') {
        res.end(JSON.stringify([{ namespace: 'shop', pod: 'idle', ips: ['10.1.0.9'] }]));
      } else if (url.pathname === '/v1/flows' && url.searchParams.get('follow') === '1') {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.flushHeaders();
        followers.push(res);
        req.on('close', () => followers.splice(followers.indexOf(res), 1));
      } else if (url.pathname === '/v1/flows') {
        const flows = held.filter((r) => matches(r, url.searchParams)).slice(-Number(url.searchParams.get('last') ?? 100));
        const body: FlowsResponse = { flows, held: held.length, capacity: 4096, lost: { datapath: 0, followers: 0 } };
        res.end(JSON.stringify(body));
      } else {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: 'no such route', kind: 'not-found' }));
      }
    });
    await new Promise<void>((resolve) => agent.listen(socket, resolve));
    ui = await startUi(socket, '--window', '5');
    browser = await openBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    if (ui) await stop(ui.child, 'SIGKILL');
    for (const f of followers) f.destroy();
    await new Promise((resolve) => agent?.close(resolve));
    fs.rmSync(socket, { force: true });
  });

  it('draws pods in their namespace, edges coloured by verdict with their rates, and turns an edge red when its flows are denied', async () => {
    const page = browser!.page;
    await page.goto(ui!.url);
    await page.waitForSelector(edge('shop/web', 'shop/db', 'allowed'), { timeout: WAIT_MS });
    // The agent's endpoints: a pod without traffic is drawn too.
    await page.waitForSelector(node('shop/idle'), { timeout: WAIT_MS });
    expect(await page.locator('g.ns[data-namespace="shop"] text').textContent()).toBe('namespace shop');
    expect(await page.getAttribute(edge('shop/web', 'shop/db'), 'class')).toContain('idle');

    // New flows and an HTTP exchange, live: the edge is solid and says its rates and latency.
    for (let i = 0; i < 5; i++) push(record('web', 'api'));
    push(record('web', 'api', { type: 'l7', l7: { type: 'http', kind: 'request', http: { version: 'HTTP/1.1', method: 'GET', path: '/cart' } } }));
    push(
      record('web', 'api', {
        type: 'l7',
        isReply: true,
        source: pod('api', 80),
        destination: pod('web', 40000),
        l7: { type: 'http', kind: 'response', latencyMs: 12.5, http: { version: 'HTTP/1.1', method: 'GET', path: '/cart', status: 503 } },
      }),
    );
    await page.waitForSelector(edge('shop/web', 'shop/api', 'allowed'), { timeout: WAIT_MS });
    const labels = page.locator('text.edge-label.allowed');
    await expect.poll(async () => (await labels.allTextContents()).join(' | '), { timeout: WAIT_MS }).toMatch(/1\.0 flows\/s · 0\.20 req\/s \| 17% err · p50 12\.5 ms/);

    // A denied flow on the idle edge: red, once the agent's stream brings it.
    push(record('web', 'db', { verdict: 'DENIED', reason: 'policy', dropReason: 'DROP_POLICY_INGRESS', direction: 'ingress', summary: 'shop/web:40000 -> shop/db:80 TCP DENIED ingress (policy)' }));
    await page.waitForSelector(edge('shop/web', 'shop/db', 'denied'), { timeout: WAIT_MS });
    expect(await page.getAttribute(edge('shop/web', 'shop/db'), 'class')).toBe('edge denied');
    const row = page.locator('#flows tbody tr.denied').first();
    await expect.poll(() => row.textContent(), { timeout: WAIT_MS }).toContain('shop/db:80');
    expect(await page.locator('#status').textContent()).toMatch(/^live · .*the agent holds \d+ of 4096 records/);
  });

  it('the table and the map follow the filters, which go to the agent as they are', async () => {
    const page = browser!.page;
    await page.selectOption('select[name="verdict"]', 'DENIED');
    await expect.poll(async () => (await page.locator('#flows tbody tr').count()) > 0 && (await page.locator('#flows tbody tr:not(.denied)').count()) === 0, { timeout: WAIT_MS }).toBe(true);
    await page.waitForSelector(edge('shop/web', 'shop/api'), { state: 'detached', timeout: WAIT_MS });
    await page.waitForSelector(edge('shop/web', 'shop/db', 'denied'), { timeout: WAIT_MS });
    expect(new URL(page.url()).search).toBe('?verdict=DENIED');
    expect(requests.some((u) => /^\/v1\/flows\?verdict=DENIED&follow=1$/.test(u))).toBe(true);

    await page.selectOption('select[name="verdict"]', '');
    await page.fill('input[name="pod"]', 'shop/api');
    await page.waitForSelector(edge('shop/web', 'shop/db'), { state: 'detached', timeout: WAIT_MS });
    await page.waitForSelector(edge('shop/web', 'shop/api'), { timeout: WAIT_MS });
    const rows = await page.locator('#flows tbody tr').allTextContents();
    expect(rows.length).toBe(7);
    expect(rows.every((r) => r.includes('shop/api'))).toBe(true);
    expect(requests).toContain('/v1/flows?pod=shop%2Fapi&last=1000');
  });

  it('answers only requests that name it by address or as localhost (no DNS rebinding)', async () => {
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const u = new URL(ui!.url);
        http.get({ hostname: u.hostname, port: u.port, path: '/api/view', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
    expect(await get('attacker.example:80')).toBe(403);
    expect(await get(`localhost:${new URL(ui!.url).port}`)).toBe(200);
    expect(await get(new URL(ui!.url).host)).toBe(200);
  });

  it('stops cleanly on SIGTERM', async () => {
    expect(await stop(ui!.child)).toBe(0);
  });
});

describe('sluice ui on a local cluster', () => {
  const cluster = new TestCluster();
  let ui: Awaited<ReturnType<typeof startUi>> | undefined;
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;
  let netns: Record<string, string> = {};
  let ip: Record<string, string> = {};

  const probe = (from: string, to: string, port: number) => cluster.local('probe', from, to, '--protocol', 'tcp', '--port', String(port), '--timeout-ms', '300');

  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(WORKLOAD);
    ({ ip, netns } = await cluster.podAddresses());
    const server = cluster.spawn('ip', ['netns', 'exec', netns['shop/web']!, PYTHON, '-u', '-m', 'http.server', '8080']);
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`the HTTP server in shop/web exited (${code})`)));
    });
    cluster.spawn('ip', ['netns', 'exec', netns['shop/client']!, PYTHON, '-c', HTTP_CLIENT_PY, ip['shop/web']!]);
    ui = await startUi(cluster.socket, '--window', '5');
    browser = await openBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    if (ui) await stop(ui.child, 'SIGKILL');
    await cluster.teardown();
  });

  it('draws the pods of a scripted workload, and a denied edge once a policy denies their flows', async () => {
    const page = browser!.page;
    await page.goto(ui!.url);
    for (const from of ['shop/intruder', 'ops/prober']) expect((await probe(from, 'shop/web', 80)).code).toBe(0);
    for (const id of ['shop/web', 'shop/client', 'shop/intruder', 'ops/prober']) await page.waitForSelector(node(id), { timeout: WAIT_MS });
    await page.waitForSelector(edge('shop/intruder', 'shop/web', 'allowed'), { timeout: WAIT_MS });
    await page.waitForSelector(edge('ops/prober', 'shop/web', 'allowed'), { timeout: WAIT_MS });
    await page.waitForSelector(edge('shop/client', 'shop/web', 'allowed'), { timeout: WAIT_MS });
    expect(await page.locator('g.ns[data-namespace="ops"] text').textContent()).toBe('namespace ops');

    await cluster.apply(WEB_FROM_CLIENT_ONLY);
    // Denied connections until the window holds only denials: the edges turn red.
    const deadline = Date.now() + 30_000;
    while ((await page.locator(edge('shop/intruder', 'shop/web', 'denied')).count()) === 0 || (await page.locator(edge('ops/prober', 'shop/web', 'denied')).count()) === 0) {
      if (Date.now() > deadline) throw new Error('no denied edge from shop/intruder and ops/prober to shop/web within 30 s');
      expect((await probe('shop/intruder', 'shop/web', 80)).code).toBe(1);
      expect((await probe('ops/prober', 'shop/web', 80)).code).toBe(1);
      await new Promise((r) => setTimeout(r, 300));
    }
    // The client is still allowed, with its HTTP requests, errors (501 for PUT) and latency on its edge.
    await page.waitForSelector(edge('shop/client', 'shop/web', 'allowed'), { timeout: WAIT_MS });
    await expect.poll(() => page.locator('text.edge-label.allowed').allTextContents(), { timeout: WAIT_MS }).toEqual(expect.arrayContaining([expect.stringMatching(/flows\/s · [\d.]+ req\/s/), expect.stringMatching(/^\d+% err · p50 /)]));
    await page.waitForSelector('#flows tbody tr.denied', { timeout: WAIT_MS });
    if (process.env.SLUICE_UI_SCREENSHOT) await page.screenshot({ path: process.env.SLUICE_UI_SCREENSHOT });
  });
});
