/**
 * Hostile pods over IPv6, with scapy inside the pods' namespaces: neighbour
 * discovery toward a routable address is not a way around policy, and a
 * Routing header (whose last segment, not the destination address, is where
 * the packet really goes) never passes. Plain UDP between the same pods is the
 * control: it arrives.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
const FRAG_PORT = 7700;

describe('hostile pod: IPv6', () => {
  const cluster = new TestCluster();
  const v6CIDR = `fd00:${cluster.id.slice(0, 4)}::/120`;
  let ip6: Record<string, string> = {};
  let netns: Record<string, string> = {};

  /** Streams KIND from `from` to `to` for 4 s and returns how many reached `to`. */
  const delivered = async (from: string, to: string, kind: 'ndp' | 'rh' | 'udp') => {
    const done = cluster.background('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, 'v6-stream', ip6[to]!, kind, '4']);
    const count = await must('ip', ['netns', 'exec', netns[to]!, PYTHON, PACKETS, 'v6-count', ip6[from]!, kind, '3.5']);
    await done;
    return Number(count.trim());
  };

  beforeAll(async () => {
    await cluster.up('--pod-cidr', v6CIDR);
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: victim, labels: {role: victim}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: open, labels: {role: open}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: m, labels: {role: m}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: w, labels: {role: w}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: victim-deny-all}
spec: {podSelector: {matchLabels: {role: victim}}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: w-udp-from-m}
spec:
  podSelector: {matchLabels: {role: w}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {role: m}}}], ports: [{protocol: UDP, port: ${FRAG_PORT}}]}]
`);
    for (const [key, p] of Object.entries(await cluster.podsByName())) {
      ip6[key] = p.ips.find((ip) => ip.includes(':'))!;
      netns[key] = p.netns;
    }
  }, 120_000);
  afterAll(() => cluster.teardown());

  it('plain UDP between pods without policy arrives (the control)', async () => {
    expect(await delivered('x/m', 'x/open', 'udp')).toBeGreaterThan(10);
  }, 30_000);

  it('neighbour discovery sent to an isolated pod\'s routable address reaches it 0 times, dropped by the datapath itself', async () => {
    // This kernel's forwarding happens not to pass these; the datapath must not rely on that.
    const dropped = async () => (await cluster.status()).counters['DROP_MALFORMED']!.packets;
    const before = await dropped();
    expect(await delivered('x/m', 'x/victim', 'ndp')).toBe(0);
    expect((await dropped()) - before).toBeGreaterThanOrEqual(30);
  }, 30_000);

  it('a packet behind a Routing header reaches even an unisolated pod 0 times', async () => {
    expect(await delivered('x/m', 'x/open', 'rh')).toBe(0);
  }, 30_000);

  it('fragmented UDP with Destination Options after the Fragment header is judged as UDP, and arrives through a UDP rule', async () => {
    // Before, the first fragment was judged as protocol 60 (Destination Options) with no ports, and denied.
    const receiving = must('ip', ['netns', 'exec', netns['x/w']!, PYTHON, PACKETS, 'frag-recv', String(FRAG_PORT), '5', '6']);
    await new Promise((r) => setTimeout(r, 800)); // the receiver is up
    await must('ip', ['netns', 'exec', netns['x/m']!, PYTHON, PACKETS, 'v6-frag-dstopts', ip6['x/w']!, String(FRAG_PORT), '5']);
    const got = JSON.parse((await receiving).trim().split('\n').pop()!) as { '6': number };
    expect(got['6']).toBe(5);
  }, 30_000);

  it('the same datagrams to a port the rule does not allow are dropped', async () => {
    const receiving = must('ip', ['netns', 'exec', netns['x/w']!, PYTHON, PACKETS, 'frag-recv', String(FRAG_PORT + 1), '5', '4']);
    await new Promise((r) => setTimeout(r, 800));
    await must('ip', ['netns', 'exec', netns['x/m']!, PYTHON, PACKETS, 'v6-frag-dstopts', ip6['x/w']!, String(FRAG_PORT + 1), '5']);
    const got = JSON.parse((await receiving).trim().split('\n').pop()!) as { '6': number };
    expect(got['6']).toBe(0);
  }, 30_000);
});
