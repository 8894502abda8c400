/**
 * A hostile pod against the VXLAN overlay, on a 2-node local cluster: it
 * hand-builds VXLAN packets to the other node, with the inner source of the
 * one pod the victim's policy admits. Decapsulated there, they would reach
 * the victim as if they came from that pod, past the spoofing check of the
 * node they really came from. from-pod keeps pods away from every node's
 * VXLAN port, and a node's VXLAN port takes packets from other nodes only
 * (vxlan_in), so none arrives, from a pod or from an intruder on the underlay.
 *
 * node-1: a (admitted by nothing), g (admitted); node-2: v (ingress only from g).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vtepMac } from '../agent/routing/vxlan.ts';
import { must, SLUICE } from './support/local-cluster.ts';
import { TwoNodeCluster } from './support/two-node-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';

describe('hostile pod: VXLAN injection', () => {
  const cluster = new TwoNodeCluster();
  let pods: Record<string, { ips: string[]; netns: string }> = {};
  const run = async (pod: string, ...args: string[]) => (await must('ip', ['netns', 'exec', pods[pod]!.netns, PYTHON, PACKETS, ...args])).trim();

  beforeAll(async () => {
    await cluster.up('--nodes', '2', '--routing', 'vxlan');
    await cluster.pod('x/a', 'node-1', { role: 'attacker' });
    await cluster.pod('x/g', 'node-1', { role: 'good' });
    await cluster.pod('x/v', 'node-2', { role: 'victim' });
    await cluster.apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: victim-from-good}
spec:
  podSelector: {matchLabels: {role: victim}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {role: good}}}]}]
`);
    pods = await cluster.podsByName(); // `local apply` returned once both agents' maps hold the policy
  }, 180_000);
  afterAll(() => cluster.teardown());

  it("hand-built VXLAN packets to the other node reach the victim 0 times, and are counted", async () => {
    const node2 = cluster.node('node-2').address;
    const v = pods['x/v']!.ips[0]!;
    const g = pods['x/g']!.ips[0]!;
    const counting = run('x/v', 'count', g, '7000', '4', 'udp');
    await new Promise((r) => setTimeout(r, 600));
    expect(await run('x/a', 'vxlan', node2, g, v, vtepMac(node2), '30')).toBe('sent 30');
    expect(Number(await counting)).toBe(0);
    const status = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.node('node-1').socket, '-o', 'json'])) as {
      counters: Record<string, { packets: number }>;
    };
    expect(status.counters.DROP_TUNNEL?.packets).toBe(30);
  }, 60_000);

  it('VXLAN packets from an underlay address that is no node reach the victim 0 times, and are counted', async () => {
    // An intruder on the nodes' own network: the underlay bridge, given an address no node has.
    const { underlay } = JSON.parse(fs.readFileSync(path.join(cluster.dir, 'cluster.json'), 'utf8')) as { underlay: { netns: string; bridge: string; cidr: string } };
    const [net, len] = underlay.cidr.split('/');
    const intruder = `${net!.split('.').slice(0, 3).join('.')}.250`;
    await must('ip', ['-n', underlay.netns, 'addr', 'add', `${intruder}/${len}`, 'dev', underlay.bridge]);
    const node2 = cluster.node('node-2');
    const v = pods['x/v']!.ips[0]!;
    const g = pods['x/g']!.ips[0]!;
    const tunnelDrops = () => cluster.counter('DROP_TUNNEL', node2.socket);
    const before = await tunnelDrops();
    const counting = run('x/v', 'count', g, '7000', '4', 'udp');
    await new Promise((r) => setTimeout(r, 600));
    const sent = await must('ip', ['netns', 'exec', underlay.netns, PYTHON, PACKETS, 'vxlan', node2.address, g, v, vtepMac(node2.address), '30']);
    expect(sent.trim()).toBe('sent 30');
    expect(Number(await counting)).toBe(0);
    expect((await tunnelDrops()) - before).toBe(30);
  }, 60_000);

  it('the pod the victim admits still reaches it across the overlay (the control)', async () => {
    expect(await cluster.connects('x/g', 'x/v', 'udp')).toBe(true);
    expect(await cluster.connects('x/a', 'x/v', 'udp')).toBe(false);
  }, 60_000);
});
