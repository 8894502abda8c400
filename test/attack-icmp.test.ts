/**
 * ICMP against policy, with real packets from scapy inside the pods'
 * namespaces. An ICMP error is about a packet, not a flow: it reaches a pod
 * when it quotes a flow the pod has open (so path-MTU discovery works behind
 * a deny-all ingress policy) and never otherwise. Other ICMP messages are not
 * flows either: one of them let out must not let any ICMP back in.
 *
 * Who may send an error matters too: the receiver of the quoted packet as
 * its flow's responder, or a router (this node, another node, the world)
 * about packets either way; never a third pod, nor a flow's opener about its
 * replies, which on
 * a pod-to-pod path is no router and could otherwise carry payloads of its
 * own past every policy inside errors about other pods' flows.
 *
 * Pods of namespace i: v is isolated for ingress with nothing allowed, r is
 * the peer v talks to, e is a third pod.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
const FRAG_NEEDED = '3';
const PACKET_TOO_BIG = '2';
const TIMESTAMP = '13';

describe('hostile pod: ICMP', () => {
  const cluster = new TestCluster();
  const v6CIDR = `fd00:${cluster.id.slice(0, 4)}::/120`;
  const ip4: Record<string, string> = {};
  const ip6: Record<string, string> = {};
  const netns: Record<string, string> = {};

  const run = async (pod: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[pod]!, PYTHON, PACKETS, ...args])).trim();
  /** Sends from `from` (packets.py args) while `to` counts ICMP of a type from `from`; returns the count. */
  const delivered = async (from: string, to: string, type: string, ip: Record<string, string>, ...send: string[]) => {
    const counting = run(to, 'icmp-count', ip[from]!, type, '3');
    await new Promise((r) => setTimeout(r, 600)); // the sniffer is up
    await run(from, ...send);
    return Number(await counting);
  };
  /**
   * Like delivered, for messages the datapath must drop: the count stops once `counter` shows every
   * message sent dropped (none of them can arrive then), not after its whole window. Were one let
   * through, the counter would not get there and the count would run its 3 s and see it.
   */
  const dropped = async (counter: string, from: string, to: string, type: string, ip: Record<string, string>, ...send: string[]) => {
    const sent = Number(send.at(-1));
    const before = await cluster.counter(counter);
    const counting = cluster.spawn('ip', ['netns', 'exec', netns[to]!, PYTHON, PACKETS, 'icmp-count', ip[from]!, type, '3']);
    let out = '';
    counting.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((resolve) => counting.once('exit', () => resolve()));
    await Promise.race([new Promise<void>((resolve) => counting.stderr!.on('data', (d: Buffer) => (d.toString().includes('listening') ? resolve() : undefined))), exited]);
    await run(from, ...send);
    let done = false;
    void exited.then(() => (done = true));
    while (!done && (await cluster.counter(counter)) - before < sent) await new Promise((r) => setTimeout(r, 50));
    if (!done) counting.kill('SIGUSR1');
    await exited;
    return Number(out.trim());
  };
  /** Like delivered, but sent by this node itself (the host's own network namespace), a router on every pod's path. */
  const deliveredFromNode = async (to: string, type: string, ...send: string[]) => {
    const counting = run(to, 'icmp-count', 'any', type, '3');
    await new Promise((r) => setTimeout(r, 600));
    await must(PYTHON, [PACKETS, ...send]);
    return Number(await counting);
  };

  beforeAll(async () => {
    await cluster.up('--pod-cidr', v6CIDR);
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: i}
---
apiVersion: v1
kind: Pod
metadata: {namespace: i, name: v, labels: {role: isolated}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: i, name: r, labels: {role: peer}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: i, name: e, labels: {role: router}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: i, name: isolated-deny-all}
spec: {podSelector: {matchLabels: {role: isolated}}, policyTypes: [Ingress]}
`);
    for (const [key, p] of Object.entries(await cluster.podsByName())) {
      const name = key.split('/')[1]!;
      ip4[name] = p.ips.find((ip) => !ip.includes(':'))!;
      ip6[name] = p.ips.find((ip) => ip.includes(':'))!;
      netns[name] = p.netns;
    }
    // v opens a UDP flow to r, over both families: what the errors below quote.
    await run('v', 'stream', ip4.r!, '7000', '41100', '1', 'udp');
    await run('v', 'v6-stream', ip6.r!, 'udp', '1');
  }, 120_000);
  afterAll(() => cluster.teardown());

  it('"fragmentation needed" from the receiver of its open flow reaches an isolated pod', async () => {
    const got = await delivered('r', 'v', FRAG_NEEDED, ip4, 'icmp-error', ip4.v!, ip4.v!, ip4.r!, '41100', '7000', '5');
    expect(got).toBe(5);
  }, 60_000);

  it('IPv6 "packet too big" from the receiver of its open flow reaches an isolated pod', async () => {
    const got = await delivered('r', 'v', PACKET_TOO_BIG, ip6, 'icmp-error', ip6.v!, ip6.v!, ip6.r!, '40601', '80', '5');
    expect(got).toBe(5);
  }, 60_000);

  it('the node, a router on the path, may report on the flow', async () => {
    expect(await deliveredFromNode('v', FRAG_NEEDED, 'icmp-error', ip4.v!, ip4.v!, ip4.r!, '41100', '7000', '5')).toBe(5);
  }, 60_000);

  it('a third pod may not: its errors about another pod\'s open flow reach nobody', async () => {
    // Before, these arrived: the quoted flow exists, and nobody checked who reported on it.
    expect(await dropped('DROP_ICMP_UNRELATED', 'e', 'v', FRAG_NEEDED, ip4, 'icmp-error', ip4.v!, ip4.v!, ip4.r!, '41100', '7000', '5')).toBe(0);
    expect(await dropped('DROP_ICMP_UNRELATED', 'e', 'v', PACKET_TOO_BIG, ip6, 'icmp-error', ip6.v!, ip6.v!, ip6.r!, '40601', '80', '5')).toBe(0);
  }, 60_000);

  it('an error about a flow that never was reaches nobody, isolated or not', async () => {
    // r has no policy at all: before errors were related to flows, these all arrived.
    expect(await dropped('DROP_ICMP_UNRELATED', 'e', 'r', FRAG_NEEDED, ip4, 'icmp-error', ip4.r!, ip4.r!, ip4.e!, '41999', '9999', '5')).toBe(0);
    expect(await dropped('DROP_ICMP_UNRELATED', 'e', 'r', PACKET_TOO_BIG, ip6, 'icmp-error', ip6.r!, ip6.r!, ip6.e!, '41999', '9999', '5')).toBe(0);
  }, 60_000);

  it("an error quoting v's flow but sent to its other end is dropped", async () => {
    // The quoted packet went from v to r, so only v may hear about it.
    expect(await dropped('DROP_ICMP_UNRELATED', 'e', 'r', FRAG_NEEDED, ip4, 'icmp-error', ip4.r!, ip4.v!, ip4.r!, '41100', '7000', '5')).toBe(0);
  }, 60_000);

  it("the flow's opener may not report on the replies it got: a pod reports only as its flow's responder", async () => {
    // v opened the flow to r: r's replies went to v, but v is no router and answered nothing. Before, these arrived at r.
    expect(await dropped('DROP_ICMP_UNRELATED', 'v', 'r', FRAG_NEEDED, ip4, 'icmp-error', ip4.r!, ip4.r!, ip4.v!, '7000', '41100', '5')).toBe(0);
    // The same error from r, the flow's responder, about v's packet it received, still arrives (the first test).
  }, 60_000);

  it('an ICMP timestamp request let out opens no way back in for any ICMP', async () => {
    await run('v', 'icmp-other', ip4.r!, TIMESTAMP, '3');
    // Before, that request left a (0, 0) conntrack entry, and r's ICMP of every kind rode it into v.
    expect(await dropped('DROP_POLICY_INGRESS', 'r', 'v', TIMESTAMP, ip4, 'icmp-other', ip4.v!, TIMESTAMP, '5')).toBe(0);
    expect(await dropped('DROP_POLICY_INGRESS', 'r', 'v', '42', ip4, 'icmp-other', ip4.v!, '42', '5')).toBe(0);
  }, 60_000);

  it('the datapath counted the related errors and the unrelated drops', async () => {
    const { counters } = await cluster.status();
    expect(counters.CT_RELATED?.packets).toBeGreaterThanOrEqual(10);
    expect(counters.DROP_ICMP_UNRELATED?.packets).toBeGreaterThanOrEqual(15);
  });
});
