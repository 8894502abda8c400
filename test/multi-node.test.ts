/**
 * Many nodes: a 2-node local cluster (each node a network namespace with its
 * own agent, joined by an underlay bridge), in both routing modes. Pods on
 * different nodes reach each other through Sluice, NetworkPolicy holds across
 * nodes as it does on one, and what one node does (delete a pod, lose its
 * Node object, restart its agent) reaches the other only as it should.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LocalDatastore } from '../agent/datastore/local.ts';
import { Identity } from '../datapath/abi.ts';
import { must, sh } from './support/local-cluster.ts';
import { TwoNodeCluster } from './support/two-node-cluster.ts';

const TWO_NODES = ['--nodes', '2'];
const WAIT_MS = 10_000;

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const POLICY = (name: string, spec: object) =>
  JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'x' }, spec });

describe.each(['native', 'vxlan'] as const)('two nodes, %s routing', (routing) => {
  // One cluster for the tests of a routing mode: none changes its nodes or agents, and each ends by
  // deleting the namespace its pods and policies live in (two nodes up cost more than all five tests).
  const cluster = new TwoNodeCluster();
  beforeAll(async () => {
    await cluster.up(...TWO_NODES, '--routing', routing);
  }, 120_000);
  afterEach(async () => {
    const file = path.join(cluster.dir, 'namespace-x.yaml');
    fs.writeFileSync(file, 'apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n');
    await must(path.join(import.meta.dirname, '../dist/sluice'), ['local', '--dir', cluster.dir, 'delete', '-f', file, '--ignore-not-found']);
    expect(await cluster.pods()).toEqual([]);
  });
  afterAll(async () => {
    await cluster.teardown();
    expect(cluster.netnsLeft()).toEqual([]);
  });

  it('lists both nodes with their own slice of the pod CIDR and an underlay address', async () => {
    const list = JSON.parse((await cluster.local('get', 'nodes', '-o', 'json')).stdout) as {
      kind: string;
      items: { metadata: { name: string }; spec: { podCIDRs: string[] }; status: { addresses: { type: string; address: string }[] } }[];
    };
    expect(list.kind).toBe('List');
    expect(list.items.map((n) => n.metadata.name)).toEqual(['node-1', 'node-2']);
    const base = cluster.podCIDR.split('.').slice(0, 3).join('.');
    expect(list.items.map((n) => n.spec.podCIDRs)).toEqual([[`${base}.0/25`], [`${base}.128/25`]]);
    for (const n of list.items) expect(n.status.addresses.find((a) => a.type === 'InternalIP')?.address).toMatch(/^172\.(1[6-9]|2\d|3[01])\.\d+\.\d+$/);
  });

  it('carries ICMP, TCP and UDP between pods on different nodes, both ways', async () => {
    const a = await cluster.pod('x/a', 'node-1');
    const b = await cluster.pod('x/b', 'node-2');
    expect(a).not.toBe(b);
    const pods = await cluster.pods();
    expect(pods.map((p) => (p as unknown as { spec: { nodeName: string } }).spec.nodeName)).toEqual(['node-1', 'node-2']);
    for (const protocol of ['icmp', 'tcp', 'udp'] as const) {
      expect(await cluster.connects('x/a', 'x/b', protocol), `a -> b ${protocol}`).toBe(true);
      expect(await cluster.connects('x/b', 'x/a', protocol), `b -> a ${protocol}`).toBe(true);
    }
    // Only the node's own pod is its endpoint; the ipcache knows every pod, and the other node as remote-node.
    const eps = JSON.parse(await must(path.join(import.meta.dirname, '../dist/sluice'), ['endpoints', '--socket', cluster.node('node-1').socket, '-o', 'json'])) as unknown[];
    expect(eps).toHaveLength(1);
    const ipcache = await cluster.ipcache('node-1');
    expect(ipcache.has(a) && ipcache.has(b)).toBe(true);
    expect(ipcache.get(cluster.node('node-2').address)).toBe(Identity.REMOTE_NODE);
    expect(ipcache.get(cluster.node('node-1').address)).toBe(Identity.HOST);
  });

  it(`gives pods the ${routing === 'vxlan' ? 'overlay' : 'full'} MTU and routes the other node's pod CIDR ${routing === 'vxlan' ? 'through the VXLAN device' : "via that node's address"}`, async () => {
    await cluster.pod('x/a', 'node-1');
    const mtu = (await must('ip', ['-n', `${cluster.name}-x-a`, 'link', 'show', 'eth0'])).match(/mtu (\d+)/)![1];
    expect(Number(mtu)).toBe(routing === 'vxlan' ? 1450 : 1500);
    const remote = cluster.node('node-2');
    const routes = await cluster.nodeRoutes('node-1');
    expect(routes).toContain(remote.podCIDRs[0]);
    expect(routes).toContain(routing === 'vxlan' ? 'dev sluice_vxlan' : `via ${remote.address}`);
    // CHECK agrees with what ADD built (the MTU came from the agent).
    const pod = (await cluster.pods())[0]!;
    const conf = JSON.parse(fs.readFileSync(path.join(cluster.dir, 'cni/net.d/node-1/10-sluice.conflist'), 'utf8')) as { plugins: object[] };
    const check = await sh('nsenter', [`--net=/var/run/netns/${cluster.node('node-1').netns}`, path.join(cluster.dir, 'cni/bin/sluice')], {
      input: JSON.stringify({ cniVersion: '1.1.0', name: 'sluice', ...conf.plugins[0] }),
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: 'CHECK',
        CNI_CONTAINERID: pod.metadata.annotations['sluice.dev/container-id']!,
        CNI_NETNS: `/var/run/netns/${pod.metadata.annotations['sluice.dev/netns']}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: path.join(cluster.dir, 'cni/bin'),
      },
    });
    expect(check.stdout + check.stderr).toBe('');
    expect(check.code).toBe(0);
  });

  it('enforces an ingress policy at the destination node and an egress policy at the source node', async () => {
    await cluster.pod('x/a', 'node-1', { app: 'a' });
    await cluster.pod('x/c', 'node-1', { app: 'c' });
    await cluster.pod('x/b', 'node-2', { app: 'b' });
    await cluster.pod('x/d', 'node-2', { app: 'd' });
    const file = path.join(cluster.dir, 'policies.json');
    fs.writeFileSync(
      file,
      `${POLICY('b-from-a', { podSelector: { matchLabels: { app: 'b' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'a' } } }] }] })}\n---\n` +
        POLICY('c-to-d', { podSelector: { matchLabels: { app: 'c' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { app: 'd' } } }] }] }),
    );
    await must(path.join(import.meta.dirname, '../dist/sluice'), ['local', '--dir', cluster.dir, 'apply', '-f', file]);
    // TCP and UDP probes run side by side (their one-shot servers never share a port).
    await Promise.all(
      (['tcp', 'udp'] as const).map(async (protocol) => {
        expect(await cluster.connects('x/a', 'x/b', protocol), `a -> b ${protocol}: allowed ingress`).toBe(true);
        expect(await cluster.connects('x/c', 'x/b', protocol), `c -> b ${protocol}: not in b's ingress`).toBe(false);
        expect(await cluster.connects('x/d', 'x/b', protocol), `d -> b ${protocol}: same node, not in b's ingress`).toBe(false);
        expect(await cluster.connects('x/c', 'x/d', protocol), `c -> d ${protocol}: allowed egress`).toBe(true);
        expect(await cluster.connects('x/c', 'x/a', protocol), `c -> a ${protocol}: not in c's egress`).toBe(false);
        expect(await cluster.connects('x/a', 'x/d', protocol), `a -> d ${protocol}: no policy`).toBe(true);
      }),
    );
  });

  it("stops reaching a deleted pod, whose address leaves the other node's ipcache", async () => {
    await cluster.pod('x/a', 'node-1');
    const b = await cluster.pod('x/b', 'node-2');
    expect(await cluster.connects('x/a', 'x/b', 'tcp')).toBe(true);
    expect((await cluster.ipcache('node-1')).has(b)).toBe(true);
    expect((await cluster.local('pod', 'delete', 'x/b')).code).toBe(0);
    await until("b's address leaves node-1's ipcache", async () => !(await cluster.ipcache('node-1')).has(b));
    expect(await cluster.connects('x/a', b, 'icmp')).toBe(false);
  });
});

describe('two nodes, native routing, node lifecycle', () => {
  let cluster: TwoNodeCluster;
  beforeEach(async () => {
    cluster = new TwoNodeCluster();
    await cluster.up(...TWO_NODES);
  });
  afterEach(async () => {
    await cluster.teardown();
  });

  it("removes a node's route and remote-node entry when its Node object goes away", async () => {
    const gone = cluster.node('node-2');
    expect(await cluster.nodeRoutes('node-1')).toContain(gone.podCIDRs[0]);
    new LocalDatastore(path.join(cluster.dir, 'datastore')).delete('Node', 'node-2');
    await until('the route to node-2 is gone', async () => !(await cluster.nodeRoutes('node-1')).includes(gone.podCIDRs[0]!));
    await until('node-2 leaves the ipcache', async () => !(await cluster.ipcache('node-1')).has(gone.address));
  });

  it('deletes a node with its pods only: the pods of the other node keep talking', async () => {
    await cluster.pod('x/a', 'node-1');
    await cluster.pod('x/c', 'node-1');
    const b = await cluster.pod('x/b', 'node-2');
    const gone = cluster.node('node-2');
    const r = await cluster.local('node', 'delete', 'node-2');
    expect(r.stderr).toContain('node node-2 deleted with its pods x/b');
    expect((await cluster.pods()).map((p) => p.metadata.name)).toEqual(['a', 'c']);
    expect(cluster.nodes().map((n) => n.name)).toEqual(['node-1']);
    expect(cluster.netnsLeft()).not.toContain(gone.netns);
    expect(fs.existsSync(`/proc/${gone.agentPid}`)).toBe(false);
    expect(fs.existsSync(gone.bpfDir)).toBe(false);
    expect(await cluster.connects('x/a', 'x/c', 'tcp')).toBe(true);
    await until("node-2 and its pod leave node-1's ipcache", async () => {
      const ipcache = await cluster.ipcache('node-1');
      return !ipcache.has(gone.address) && !ipcache.has(b);
    });
    await until('the route to node-2 is gone', async () => (await cluster.nodeRoutes('node-1')).trim() === '');
  });

  it("keeps traffic between nodes flowing while one node's agent is down, and `up` restarts only that agent", async () => {
    await cluster.pod('x/a', 'node-1');
    await cluster.pod('x/b', 'node-2');
    const [one, two] = [cluster.node('node-1'), cluster.node('node-2')];
    process.kill(two.agentPid, 'SIGTERM');
    await until('the agent of node-2 has exited', async () => !fs.existsSync(`/proc/${two.agentPid}`));
    for (const protocol of ['icmp', 'tcp', 'udp'] as const) expect(await cluster.connects('x/a', 'x/b', protocol), protocol).toBe(true);
    await cluster.up(...TWO_NODES);
    expect(cluster.node('node-1').agentPid).toBe(one.agentPid);
    expect(cluster.node('node-2').agentPid).not.toBe(two.agentPid);
    expect(await cluster.connects('x/b', 'x/a', 'tcp')).toBe(true);
  });
});
