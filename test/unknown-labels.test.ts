/**
 * Unknown labels fail closed (issue 31), against the real kernel: an agent on
 * the Kubernetes datastore (the fake API server) gets the CNI ADD of a pod the
 * API withholds (absent from lists and watches, a direct GET times out). A
 * policy selects that pod by label: only role=friend may reach it, and it may
 * send nothing. Before its labels arrive, not one IPv4 packet reaches the pod
 * and none it sends reaches another pod (the pods' own IP counters), whoever
 * the peer (pings, TCP); once the API shows the pod, the policy holds: the friend gets
 * through, the other pod does not, and the pod still sends nothing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, sh, TestCluster } from './support/local-cluster.ts';
import { FakeKubeApi } from './datastore-kubernetes-fake-api.ts';

const NS = 'ul';
const PODS = '/api/v1/pods';

describe('a pod whose labels the datastore does not have yet', () => {
  const cluster = new TestCluster();
  const api = new FakeKubeApi();

  const apiPod = (name: string, labels: Record<string, string>) => ({
    metadata: { namespace: NS, name, labels },
    spec: { nodeName: os.hostname(), containers: [{ name: 'main', image: 'none' }] },
    status: { phase: 'Running' },
  });
  let pods: Awaited<ReturnType<TestCluster['podAddresses']>> | null = null;
  const addresses = async () => (pods ??= await cluster.podAddresses());
  /** IPv4 packets the pod's own stack has taken in (ARP is not counted): what reached it. */
  const received = async (pod: string): Promise<number> => {
    const netns = (await addresses()).netns[`${NS}/${pod}`]!;
    const snmp = await must('ip', ['netns', 'exec', netns, 'cat', '/proc/net/snmp']);
    const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Ip:'));
    return Number(values!.split(/\s+/)[names!.split(/\s+/).indexOf('InReceives')]);
  };
  const probe = async (from: string, to: string, protocol: 'tcp' | 'udp' | 'icmp' = 'tcp') =>
    (await cluster.local('probe', `${NS}/${from}`, `${NS}/${to}`, '--protocol', protocol, '--port', '80', '--timeout-ms', '1000')).code === 0;

  /** Pings from one pod to another (five, 200 ms apart); resolves with how many were answered. */
  const ping = async (from: string, to: string): Promise<number> => {
    const { ip, netns } = await addresses();
    const r = await sh('ip', ['netns', 'exec', netns[`${NS}/${from}`]!, 'ping', '-n', '-q', '-c', '5', '-i', '0.2', '-W', '1', ip[`${NS}/${to}`]!]);
    return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? -1);
  };

  beforeAll(async () => {
    api.put('/api/v1/namespaces', { metadata: { name: NS, labels: { 'kubernetes.io/metadata.name': NS } } });
    api.put(PODS, apiPod('friend', { role: 'friend' }));
    api.put(PODS, apiPod('other', { role: 'other' }));
    api.withheldPods.add(`${NS}/locked`);
    api.put(PODS, apiPod('locked', { app: 'locked' }));
    api.put('/apis/networking.k8s.io/v1/networkpolicies', {
      metadata: { namespace: NS, name: 'lock' },
      spec: { podSelector: { matchLabels: { app: 'locked' } }, policyTypes: ['Ingress', 'Egress'], ingress: [{ from: [{ podSelector: { matchLabels: { role: 'friend' } } }] }] },
    });
    const server = await api.listen();
    fs.mkdirSync(cluster.dir, { recursive: true });
    const kubeconfig = path.join(cluster.dir, 'kubeconfig.yaml');
    fs.writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "${server}", insecure-skip-tls-verify: true}}]
users: [{name: test, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: test}}]
current-context: fake
`,
    );
    await cluster.up('--agent-arg=--datastore=kubernetes', `--agent-arg=--kubeconfig=${kubeconfig}`);
    for (const [name, label] of [['friend', 'role=friend'], ['other', 'role=other']]) {
      const r = await cluster.local('pod', 'create', `${NS}/${name}`, '--label', label!);
      if (r.code !== 0) throw new Error(`pod create ${name}: ${r.stderr}`);
    }
  }, 120_000);
  afterAll(async () => {
    await cluster.teardown();
    await api.close();
  });

  it('starts isolated both ways, and takes its policy when its labels arrive', async () => {
    // The ADD succeeds: the pod gets its network, closed, not a retry loop.
    const created = await cluster.local('pod', 'create', `${NS}/locked`, '--label', 'app=locked');
    expect(created.code, created.stderr).toBe(0);
    expect(api.requests.some((r) => r.path === `/api/v1/namespaces/${NS}/pods/locked`)).toBe(true);
    expect(fs.readFileSync(path.join(cluster.dir, 'agent.log'), 'utf8')).toMatch(new RegExp(`of ${NS}/locked: its labels are not known yet`));

    const before = { locked: await received('locked'), friend: await received('friend'), other: await received('other') };
    // Five pings each way with both peers, and a TCP connection in (from the friend, whom the policy will allow) and out.
    const pings = [['friend', 'locked'], ['other', 'locked'], ['locked', 'friend'], ['locked', 'other']].map(([from, to]) => ping(from!, to!));
    const [tcpIn, tcpOut] = await Promise.all([probe('friend', 'locked'), probe('locked', 'other')]);
    expect(await Promise.all(pings), 'pings answered').toEqual([0, 0, 0, 0]);
    expect(tcpIn, 'friend -> locked tcp').toBe(false);
    expect(tcpOut, 'locked -> other tcp').toBe(false);
    expect(await received('locked'), 'packets that reached the pod').toBe(before.locked);
    expect((await received('friend')) + (await received('other')), 'packets of the pod that reached another').toBe(before.friend + before.other);

    api.releasePod(NS, 'locked');
    const deadline = Date.now() + 15_000;
    while ((await ping('friend', 'locked')) < 5 && Date.now() < deadline);
    expect(await ping('friend', 'locked'), 'pings friend -> locked answered once the labels are known').toBe(5);
    expect(await probe('friend', 'locked'), 'friend -> locked tcp').toBe(true);
    expect(await probe('other', 'locked'), 'other -> locked').toBe(false);
    expect(await probe('locked', 'other'), 'locked -> other').toBe(false);
    expect(await probe('friend', 'other'), 'friend -> other (not selected by the policy)').toBe(true);
  }, 120_000);
});
