/**
 * A hostile pod against the fragment table: it sends first fragments with
 * ever new identifications, far more than its budget and than the whole old
 * table (an LRU of 8192), and never the rest. With the shared LRU that
 * evicted the entry of a datagram another pod had half sent: its later
 * fragments were then dropped. Now each endpoint has a budget: the flood
 * stops there (its further first fragments are dropped and counted), and the
 * other pod's datagram arrives whole, through the victim's port policy. A
 * complete datagram frees its entry, so a pod may send (or, through the
 * host stack, receive) many times its budget of fragmented datagrams in a row.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAG_MAX_PER_ENDPOINT } from '../datapath/abi.ts';
import { must, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
/** First fragments the attacker sends per family: together ten times the old table, 40 times its budget. */
const FLOOD = 20_000;
const PORT = '7000';
/** Short enough for the attacker's dead entries to expire within the test, long enough for b's half-sent datagram. */
const FRAG_TIMEOUT_SEC = 8;

describe('hostile pod: fragment table exhaustion', () => {
  const cluster = new TestCluster();
  const v6CIDR = `fd00:${cluster.id.slice(0, 4)}::/120`;
  const ip4: Record<string, string> = {};
  const ip6: Record<string, string> = {};
  const netns: Record<string, string> = {};
  const endpointIds: Record<string, number> = {};

  const packets = async (from: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, ...args])).trim();
  const counters = async () => (await cluster.status()).counters;
  const delta = (before: Record<string, { packets: number }>, after: Record<string, { packets: number }>, name: string) => (after[name]?.packets ?? 0) - (before[name]?.packets ?? 0);

  /** Starts a UDP receiver in the pod; resolves once it listens, with the promise of its per-family counts. */
  const receiver = (pod: string, want: number, seconds: number) =>
    // The counts' promise travels in an object: resolving with a promise itself would wait for it.
    new Promise<{ counts: Promise<{ '4': number; '6': number }> }>((ready, fail) => {
      const child = cluster.spawn('ip', ['netns', 'exec', netns[pod]!, PYTHON, PACKETS, 'frag-recv', PORT, String(want), String(seconds)]);
      let out = '';
      let err = '';
      child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const done = new Promise<{ '4': number; '6': number }>((resolve, reject) =>
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.split('\n')[1]!)) : reject(new Error(`frag-recv exited ${code}: ${err}`)))),
      );
      done.catch(fail); // a receiver that never got ready fails the start
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.startsWith('ready\n')) ready({ counts: done });
      });
    });

  /** Fragment entries charged to each pod, from the pinned ct_counts map. */
  const fragmentsCharged = (pod: string) => {
    const dump = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', path.join(cluster.bpfDir, 'maps/ct_counts')], { encoding: 'utf8' })) as { key: string[]; value: string[] }[];
    const entry = dump.find((e) => Buffer.from(e.key.map(Number)).readUInt32LE() === endpointIds[pod]);
    return entry ? Number(Buffer.from(entry.value.map(Number)).readBigInt64LE(8)) : 0;
  };

  beforeAll(async () => {
    await cluster.up('--pod-cidr', v6CIDR, `--agent-arg=--frag-timeout-sec=${FRAG_TIMEOUT_SEC}`, '--agent-arg=--ct-sweep-interval-ms=500');
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: m, labels: {pod: m}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {pod: b}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: v, labels: {pod: v}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: s, labels: {pod: s}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: v-udp-7000-only}
spec:
  podSelector: {matchLabels: {pod: v}}
  policyTypes: [Ingress]
  ingress: [{ports: [{protocol: UDP, port: ${PORT}}]}]
`);
    for (const [key, p] of Object.entries(await cluster.podsByName())) {
      ip4[key] = p.ips.find((ip) => !ip.includes(':'))!;
      ip6[key] = p.ips.find((ip) => ip.includes(':'))!;
      netns[key] = p.netns;
    }
    const eps = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', path.join(cluster.bpfDir, 'maps/endpoints')], { encoding: 'utf8' })) as { key: string[]; value: string[] }[];
    for (const e of eps) {
      const addr = Buffer.from(e.key.map(Number)).subarray(4, 8).join('.');
      const pod = Object.keys(ip4).find((k) => ip4[k] === addr);
      if (pod) endpointIds[pod] = Buffer.from(e.value.map(Number)).readUInt32LE(4);
    }
  }, 120_000);
  afterAll(() => cluster.teardown());

  it("a flood of first fragments from one pod neither evicts another pod's datagram in flight nor passes the budget", async () => {
    const start = await counters();
    const got = (await receiver('x/v', 2, 10)).counts;
    // b has sent the first fragment of a datagram to v, over each family; the rest is still on its way ...
    // (Twice, as a network may duplicate it: the entry starts over, charged once.)
    const first = (ip: Record<string, string>) => packets('x/b', 'frag-part', ip['x/v']!, PORT, '40800', '4711', 'first');
    await Promise.all([ip4, ip6].map((ip) => first(ip).then(() => first(ip))));
    // ... when m floods first fragments, to a sink: not to v, whose own reassembly memory a flood could fill.
    const sent = await Promise.all([ip4, ip6].map((ip, i) => packets('x/m', 'frag-flood', ip['x/s']!, PORT, String(FLOOD), String(1000 + i))));
    expect(sent.map(Number)).toEqual([FLOOD, FLOOD]);
    await Promise.all([ip4, ip6].map((ip) => packets('x/b', 'frag-part', ip['x/v']!, PORT, '40800', '4711', 'rest')));

    // b's datagrams kept their entries through the flood (the LRU had evicted them, and dropped the rest): both arrive whole.
    expect.soft(await got).toEqual({ '4': 1, '6': 1 });
    const end = await counters();
    expect.soft(delta(start, end, 'DROP_FRAGMENT')).toBe(0);
    // m's first fragments stopped at its budget; every one past it was dropped, and counted.
    const refused = delta(start, end, 'DROP_FRAG_FULL');
    expect(refused).toBeLessThanOrEqual(2 * FLOOD - FRAG_MAX_PER_ENDPOINT);
    expect(refused).toBeGreaterThanOrEqual(0.99 * (2 * FLOOD - FRAG_MAX_PER_ENDPOINT));
    expect(fragmentsCharged('x/m')).toBe(FRAG_MAX_PER_ENDPOINT);
    // b's complete datagrams left nothing charged; the monitor names the offender.
    expect(fragmentsCharged('x/b')).toBe(0);
    const { recentDrops } = (await cluster.status()) as unknown as { recentDrops: { counter: string; src: { name: string } }[] };
    expect(recentDrops.some((e) => e.counter === 'DROP_FRAG_FULL' && e.src.name === 'x/m')).toBe(true);
  }, 60_000);

  it('a pod sends, and a pod receives from the host, three times the budget of fragmented datagrams in a row, and every one arrives', async () => {
    const datagrams = 3 * FRAG_MAX_PER_ENDPOINT;
    const start = await counters();
    const got = (await receiver('x/v', 4 * datagrams, 20)).counts;
    // b's are charged to b in from-pod; the host's, through the stack, to v in to-pod.
    const host = (...args: string[]) => must(PYTHON, [PACKETS, ...args]).then((out) => out.trim());
    const sends = [ip4, ip6].flatMap((ip) => [packets('x/b', 'frag-send', ip['x/v']!, PORT, String(datagrams)), host('frag-send', ip['x/v']!, PORT, String(datagrams))]);
    expect(await Promise.all(sends)).toEqual(Array(4).fill(String(datagrams)));
    expect(await got).toEqual({ '4': 2 * datagrams, '6': 2 * datagrams });
    const end = await counters();
    expect(delta(start, end, 'DROP_FRAG_FULL')).toBe(0);
    expect(delta(start, end, 'DROP_FRAGMENT')).toBe(0);
    // The host's came to v as fragments (3 a datagram, both families), through to-pod.
    expect(delta(start, end, 'TO_POD')).toBeGreaterThanOrEqual(2 * datagrams * 3);
    // Each complete datagram freed its entry at once.
    expect(fragmentsCharged('x/b')).toBe(0);
    expect(fragmentsCharged('x/v')).toBe(0);
  }, 60_000);

  it("the agent's sweep frees the flood's incomplete datagrams once expired, and the attacker may send again", async () => {
    // m's entries never complete: ct_sweep removes them FRAG_TIMEOUT_SEC after their first fragment.
    const deadline = Date.now() + (FRAG_TIMEOUT_SEC + 5) * 1000;
    while (fragmentsCharged('x/m') > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(fragmentsCharged('x/m')).toBe(0);
    const got = (await receiver('x/v', 2, 10)).counts;
    await Promise.all([ip4, ip6].map((ip) => packets('x/m', 'frag-send', ip['x/v']!, PORT, '1')));
    expect(await got).toEqual({ '4': 1, '6': 1 });
  }, 30_000);
});
