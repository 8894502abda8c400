/**
 * A revoked flow stays revoked, even when its receiver keeps talking. Pod a
 * streams UDP to pod v, and v pushes UDP back on the same tuple (a server
 * push, or answers). A policy change then removes the allow that admitted
 * a's flow. The flow is judged again and found denied; had it been simply
 * forgotten, v's next packet would be judged as a new flow from v to a,
 * which v's egress and a's ingress allow, and a's packets would ride it back
 * in as its replies. Both directions of isolation: v's ingress, and a's
 * egress. Real packets from scapy inside the pods' namespaces.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, TestCluster } from './support/local-cluster.ts';
import { TwoNodeCluster } from './support/two-node-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
// `local apply` and `local delete` return once every agent's maps hold the change (POST /v1/datastore/sync):
// a test sends right after them. The TCP test still leaves SETTLE_MS around its cut, as its margin.
const SETTLE_MS = 1_500;
/** How long a UDP stream may run: it is ended once counted, so this only needs to outlast a slow machine. */
const STREAM_MAX_S = 30;
const PORT = '7000';

const denyAll = (pod: string, type: 'Ingress' | 'Egress') => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: r, name: ${pod}-deny-${type.toLowerCase()}}
spec: {podSelector: {matchLabels: {pod: ${pod}}}, policyTypes: [${type}]}
`;
const allow = (pod: string, type: 'Ingress' | 'Egress', peer: string) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: r, name: ${pod}-allow-${type.toLowerCase()}}
spec:
  podSelector: {matchLabels: {pod: ${pod}}}
  policyTypes: [${type}]
  ${type === 'Ingress' ? 'ingress: [{from' : 'egress: [{to'}: [{podSelector: {matchLabels: {pod: ${peer}}}}]}]
`;

describe('hostile pod: a revoked flow whose receiver keeps sending', () => {
  const cluster = new TestCluster();
  let ip: Record<string, string> = {};
  let netns: Record<string, string> = {};
  let sport = 43000;

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /**
   * a -> v, then v -> a on the same tuple, for `seconds`, ten datagrams a second each way. a starts
   * first, so the flow is a's (opened under the allow); v's datagrams are its answers. (Were v first,
   * v would have opened the flow itself, which its egress and a's ingress allow: a's datagrams would
   * then be its replies, rightly.)
   */
  const bothWays = async (seconds: number, aPort: number) => {
    const fromA = cluster.spawn('ip', ['netns', 'exec', netns['r/a']!, PYTHON, PACKETS, 'stream', ip['r/v']!, PORT, String(aPort), String(seconds), 'udp']);
    await sleep(1_000);
    const fromV = cluster.spawn('ip', ['netns', 'exec', netns['r/v']!, PYTHON, PACKETS, 'stream', ip['r/a']!, String(aPort), PORT, String(seconds - 1), 'udp']);
    return [fromA, fromV];
  };
  /** a's datagrams that reach v within `seconds`. */
  const fromAatV = async (seconds: number) =>
    Number((await must('ip', ['netns', 'exec', netns['r/v']!, PYTHON, PACKETS, 'count', ip['r/a']!, PORT, String(seconds), 'udp'])).trim());

  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: r}
---
apiVersion: v1
kind: Pod
metadata: {namespace: r, name: v, labels: {pod: v}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: r, name: a, labels: {pod: a}}
`);
    ({ ip, netns } = await cluster.podAddresses());
  }, 120_000);
  afterAll(() => cluster.teardown());

  for (const [isolated, type, peer] of [
    ['v', 'Ingress', 'a'],
    ['a', 'Egress', 'v'],
  ] as const) {
    it(`${type.toLowerCase()}: once the allow is gone, nothing of a reaches v, however much v sends`, async () => {
      await cluster.apply(denyAll(isolated, type) + '---' + allow(isolated, type, peer));
      const streams = await bothWays(STREAM_MAX_S, ++sport);
      expect(await fromAatV(2), 'the control: admitted, both ways').toBeGreaterThan(8);
      await cluster.delete(allow(isolated, type, peer));
      expect(await fromAatV(3)).toBe(0);
      await Promise.all(streams.map((c) => cluster.stop(c)));
      await cluster.delete(denyAll(isolated, type));
    }, 60_000);
  }

  it('TCP: once the allow is gone, nothing of a reaches v, however much v pushes', async () => {
    await cluster.apply(denyAll('v', 'Ingress') + '---' + allow('v', 'Ingress', 'a'));
    // v's server pushes a byte every 50 ms whatever a sends, and logs when a's bytes arrive.
    const server = cluster.spawn('ip', ['netns', 'exec', netns['r/v']!, PYTHON, PACKETS, 'tcp-push-server', '7100', '9']);
    let out = '';
    server.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
    while (!out.startsWith('ready')) await sleep(100);
    const client = cluster.background('ip', ['netns', 'exec', netns['r/a']!, PYTHON, PACKETS, 'tcp-push-client', ip['r/v']!, '7100', '8']);
    await sleep(2_000);
    await cluster.delete(allow('v', 'Ingress', 'a'));
    await sleep(SETTLE_MS);
    const cut = Date.now() / 1000;
    await client;
    await exited;
    const got = JSON.parse(out.trim().split('\n').pop()!) as [number, number][];
    expect(got.filter(([t]) => t < cut - SETTLE_MS / 1000).length, 'the control: a\'s bytes arrived before').toBeGreaterThan(10);
    expect(got.filter(([t]) => t > cut).reduce((sum, [, n]) => sum + n, 0)).toBe(0);
    await cluster.delete(denyAll('v', 'Ingress'));
  }, 60_000);

  it('a relabelled pod loses its open flows, though a pod of its old identity stays', async () => {
    // a and g have the same labels, so one identity: v's rules do not change when a is relabelled (g
    // still holds the identity they name), and the flow must be judged again because a's own changed.
    const pod = (name: string, labels: string) => `
apiVersion: v1
kind: Pod
metadata: {namespace: r, name: ${name}, labels: {${labels}}}
`;
    await cluster.apply(pod('a', 'app: good') + '---' + pod('g', 'app: good') + `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: r, name: v-good}
spec:
  podSelector: {matchLabels: {pod: v}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: good}}}], ports: [{protocol: UDP, port: ${PORT}}]}]
`);
    const stream = cluster.spawn('ip', ['netns', 'exec', netns['r/a']!, PYTHON, PACKETS, 'stream', ip['r/v']!, PORT, String(++sport), String(STREAM_MAX_S), 'udp']);
    expect(await fromAatV(2), 'the control: admitted').toBeGreaterThan(10);
    await cluster.apply(pod('a', 'app: evil'));
    expect(await fromAatV(3)).toBe(0);
    await cluster.stop(stream);
  }, 60_000);

  it('the datapath counted the revoked packets', async () => {
    const { counters } = await cluster.status();
    expect(counters.DROP_REVOKED?.packets).toBeGreaterThan(20);
  });
});

describe('hostile pod: a revoked flow across two nodes', () => {
  const cluster = new TwoNodeCluster();
  let ip: Record<string, string> = {};
  let netns: Record<string, string> = {};
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeAll(async () => {
    await cluster.up('--nodes', '2');
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: r}
`);
    await cluster.pod('r/v', 'node-1', { pod: 'v' });
    await cluster.pod('r/a', 'node-2', { pod: 'a' });
    ({ ip, netns } = await cluster.podAddresses());
  }, 180_000);
  afterAll(() => cluster.teardown());

  it('once the allow is gone, nothing of a (on node-2) reaches v (on node-1), however much v sends', async () => {
    await cluster.apply(denyAll('v', 'Ingress') + '---' + allow('v', 'Ingress', 'a'));
    const fromA = cluster.spawn('ip', ['netns', 'exec', netns['r/a']!, PYTHON, PACKETS, 'stream', ip['r/v']!, PORT, '43900', String(STREAM_MAX_S), 'udp']);
    await sleep(1_000);
    const fromV = cluster.spawn('ip', ['netns', 'exec', netns['r/v']!, PYTHON, PACKETS, 'stream', ip['r/a']!, '43900', PORT, String(STREAM_MAX_S - 1), 'udp']);
    const count = async (seconds: number) =>
      Number((await must('ip', ['netns', 'exec', netns['r/v']!, PYTHON, PACKETS, 'count', ip['r/a']!, PORT, String(seconds), 'udp'])).trim());
    expect(await count(2), 'the control: admitted, both ways').toBeGreaterThan(8);
    await cluster.delete(allow('v', 'Ingress', 'a'));
    expect(await count(3)).toBe(0);
    await Promise.all([fromA, fromV].map((c) => cluster.stop(c)));
  }, 90_000);
});
