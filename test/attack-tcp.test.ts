/**
 * TCP and fragment games against policy and conntrack, with scapy inside the
 * pods' namespaces, over IPv4 and IPv6: segments that are not a SYN, resets,
 * replies forged for someone else's flow, and fragments that overlap the TCP
 * header. None may reach a pod its policy does not admit it to, and none may
 * break a connection the policy allows.
 *
 * Pods of namespace t: v (ingress only from role=good on TCP 8080, with an
 * echo server there), g (role=good), m (admitted by nothing).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
const FAMILIES = [4, 6] as const;

describe('hostile pod: TCP and fragment games', () => {
  const cluster = new TestCluster();
  const v6CIDR = `fd00:${cluster.id.slice(0, 4)}::/120`;
  const ip: Record<4 | 6, Record<string, string>> = { 4: {}, 6: {} };
  const netns: Record<string, string> = {};

  const run = async (pod: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[pod]!, PYTHON, PACKETS, ...args])).trim();
  /** Sends from `from` (packets.py args) while v counts the TCP segments from `from` to port 8080 (fragments: every piece). */
  const reachingV = async (from: string, family: 4 | 6, ...send: string[]) => {
    const counting = run('v', 'tcp-count', ip[family][from]!, '8080', '3');
    await new Promise((r) => setTimeout(r, 1500)); // the sniffer is up
    await run(from, ...send);
    return Number(await counting);
  };
  const counter = (name: string) => cluster.counter(name);

  beforeAll(async () => {
    await cluster.up('--pod-cidr', v6CIDR);
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: t}
---
apiVersion: v1
kind: Pod
metadata: {namespace: t, name: v, labels: {role: victim}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: t, name: g, labels: {role: good}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: t, name: m, labels: {role: mallory}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: t, name: victim-from-good}
spec:
  podSelector: {matchLabels: {role: victim}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {role: good}}}], ports: [{protocol: TCP, port: 8080}]}]
`);
    for (const [key, p] of Object.entries(await cluster.podsByName())) {
      const name = key.split('/')[1]!;
      ip[4][name] = p.ips.find((a) => !a.includes(':'))!;
      ip[6][name] = p.ips.find((a) => a.includes(':'))!;
      netns[name] = p.netns;
    }
    await cluster.serve(netns.v!, 8080, 'tcp');
  }, 120_000);
  afterAll(() => cluster.teardown());

  /** Runs a scenario over IPv4 and IPv6 at once: every wait in it is a timeout, so both fit in one. */
  const bothFamilies = (scenario: (family: 4 | 6) => Promise<void>) => Promise.all(FAMILIES.map((family) => scenario(family)));

  it('segments without a SYN (ACK, RST, RST+ACK, FIN, PSH+ACK) from a pod not admitted reach the victim 0 times', () =>
    bothFamilies(async (family) => {
      expect(await reachingV('m', family, 'tcp-flags', ip[family].v!, '8080', 'A,R,RA,F,PA', '3'), `IPv${family}`).toBe(0);
      // The control: the same segments from the admitted pod arrive (each a new flow its policy allows).
      expect(await reachingV('g', family, 'tcp-flags', ip[family].v!, '8080', 'A,R,RA,F,PA', '3'), `IPv${family}`).toBe(15);
    }), 30_000);

  it('a connection the policy allows survives resets forged by another pod, and none arrives', async () => {
    const spoofBefore = await counter('DROP_SPOOF');
    await bothFamilies(async (family) => {
      // g holds a connection for 4 s, one echo every 0.2 s; m forges resets under g's address meanwhile.
      const holding = run('g', 'tcp-hold', ip[family].v!, '8080', '4');
      await new Promise((r) => setTimeout(r, 1500));
      expect(await run('m', 'tcp-forge-rst', ip[family].v!, '8080', ip[family].g!, '40')).toBe('sent 40');
      const held = JSON.parse(await holding) as { echoes: number; reset: boolean };
      expect(held.reset, `IPv${family}`).toBe(false);
      expect(held.echoes, `IPv${family}`).toBeGreaterThanOrEqual(15);
    });
    // All dropped as spoofs; under m's own address, resets to the port reach v 0 times (above).
    expect((await counter('DROP_SPOOF')) - spoofBefore).toBeGreaterThanOrEqual(80);
  }, 30_000);

  it("replies forged for the victim's own flow reach it 0 times", () =>
    bothFamilies(async (family) => {
      // v opens a UDP flow to g (its egress is open); m answers it, as g and as itself.
      const sport = family === 4 ? '41200' : '41206';
      await run('v', 'stream', ip[family].g!, '7000', sport, '1', 'udp');
      const counting = run('v', 'udp-count', sport, '3');
      await new Promise((r) => setTimeout(r, 1500));
      await run('m', 'udp-forge', ip[family].v!, sport, ip[family].g!, '7000'); // as g: a spoof
      await run('m', 'udp-forge', ip[family].v!, sport, ip[family].m!, '7000'); // as itself: not v's flow
      expect(Number(await counting), `IPv${family}`).toBe(0);
    }), 30_000);

  it('a fragment that overlaps the TCP header of an allowed segment is dropped', async () => {
    const before = await counter('DROP_FRAGMENT');
    await bothFamilies(async (family) => {
      // g: a first fragment to the allowed port, then one at offset 8 rewriting the header's second half.
      expect(await reachingV('g', family, 'frag-overlap', ip[family].v!, '8080'), `IPv${family}`).toBe(1);
    });
    expect((await counter('DROP_FRAGMENT')) - before).toBeGreaterThanOrEqual(2);
  }, 30_000);
});
