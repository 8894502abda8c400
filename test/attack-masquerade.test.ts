/**
 * The host's pass is for the host alone. Every address of a node has the
 * host identity, which a pod's ingress policy always lets in (kubelet's
 * probes). A NodePort with externalTrafficPolicy: Cluster, as kube-proxy's
 * iptables mode writes it (DNAT, then MASQUERADE to the node's address),
 * turned any client into the host: a pod v's policy denied m directly, but
 * through the masqueraded NodePort m got in 10 of 10. Now the node's own
 * conntrack tells to_pod who the client was.
 *
 * node-1: v (ingress only from pod=k on TCP 8080), and kube-proxy-style rules
 * in node-1's namespace: node-1:30080 -> v:8080, masqueraded. node-2: m and k.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must } from './support/local-cluster.ts';
import { TwoNodeCluster } from './support/two-node-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
const NODE_PORT = 30080;
const TRIES = 10;

describe('hostile pod: a masqueraded NodePort is no host pass', () => {
  const cluster = new TwoNodeCluster();
  let ip: Record<string, string> = {};
  let netns: Record<string, string> = {};
  /** How many of TRIES TCP connections from the pod's namespace (or a node's) get through. */
  const through = async (ns: string, addr: string, port: number) =>
    Number((await must('ip', ['netns', 'exec', ns, PYTHON, PACKETS, 'connects', addr, String(port), String(TRIES), 'tcp'])).trim());

  beforeAll(async () => {
    await cluster.up('--nodes', '2');
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x}
`);
    await cluster.pod('x/v', 'node-1', { pod: 'v' });
    await cluster.pod('x/m', 'node-2', { pod: 'm' });
    await cluster.pod('x/k', 'node-2', { pod: 'k' });
    await cluster.apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: v-from-k}
spec:
  podSelector: {matchLabels: {pod: v}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: k}}}], ports: [{protocol: TCP, port: 8080}]}]
`);
    ({ ip, netns } = await cluster.podAddresses());
    await cluster.serve(netns['x/v']!, 8080, 'tcp');
    const node1 = cluster.node('node-1');
    const nat = (...rule: string[]) => must('ip', ['netns', 'exec', node1.netns, 'iptables', '-t', 'nat', '-A', ...rule]);
    await nat('PREROUTING', '-d', node1.address, '-p', 'tcp', '--dport', String(NODE_PORT), '-j', 'DNAT', '--to-destination', `${ip['x/v']}:8080`);
    // Only what the NodePort translated is masqueraded, as kube-proxy marks it (KUBE-MARK-MASQ).
    await nat('POSTROUTING', '-d', ip['x/v']!, '-p', 'tcp', '--dport', '8080', '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'MASQUERADE');
  }, 180_000);
  afterAll(() => cluster.teardown());

  it('the controls: m is denied directly, k is let in directly', async () => {
    expect(await through(netns['x/m']!, ip['x/v']!, 8080)).toBe(0);
    expect(await through(netns['x/k']!, ip['x/v']!, 8080)).toBe(TRIES);
  }, 60_000);

  it('through the masqueraded NodePort, m is still denied and k still let in', async () => {
    const node1 = cluster.node('node-1');
    expect(await through(netns['x/m']!, node1.address, NODE_PORT), 'm, masqueraded').toBe(0);
    expect(await through(netns['x/k']!, node1.address, NODE_PORT), 'k, masqueraded').toBe(TRIES);
  }, 60_000);

  it("the node's own connections keep the host's pass", async () => {
    expect(await through(cluster.node('node-1').netns, ip['x/v']!, 8080)).toBe(TRIES);
  }, 60_000);
});
