/**
 * Odd but API-valid objects, and invalid ones, on a local cluster: neither may
 * stop the node. kube-apiserver accepts an ipBlock with host bits set
 * (10.0.0.1/24) and Kubernetes reads it as 10.0.0.0/24; Sluice must do the
 * same, not refuse it and then fail every CNI ADD. An ipBlock that is no CIDR
 * at all is refused by `apply` with a clear error, and nothing of that file is
 * stored.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRequest } from '../contract/client.ts';
import { LocalDatastore } from '../agent/datastore/local.ts';
import { TestCluster } from './support/local-cluster.ts';

describe('bad objects: one odd policy does not stop the node', () => {
  const cluster = new TestCluster();
  let ips: Record<string, string> = {};

  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Pod
metadata: {namespace: b, name: v, labels: {pod: v}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: b, name: m, labels: {pod: m}}
`);
    ips = Object.fromEntries(Object.entries(await cluster.podsByName()).map(([k, p]) => [k, p.ips[0]!]));
  }, 120_000);
  afterAll(() => cluster.teardown());

  it('an ipBlock with host bits set is applied as its network, pods are still created, and it admits its block', async () => {
    const m = ips['b/m']!;
    const hostBitsBlock = `${m}/24`; // m's own address: every host bit of the /24 that can be set, is
    await cluster.apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: b, name: v-from-block}
spec:
  podSelector: {matchLabels: {pod: v}}
  policyTypes: [Ingress]
  ingress: [{from: [{ipBlock: {cidr: ${hostBitsBlock}, except: [${m}/32]}}]}]
`);
    const created = await cluster.local('pod', 'create', 'b/n', '--label', 'pod=n');
    expect(created.code).toBe(0);
    expect((await cluster.local('probe', 'b/n', 'b/v', '--protocol', 'udp', '--timeout-ms', '1500')).code).toBe(0); // inside the block
    expect((await cluster.local('probe', 'b/m', 'b/v', '--protocol', 'udp', '--timeout-ms', '1500')).code).toBe(1); // the except
  }, 60_000);

  it('an ipBlock that is no CIDR is refused with a clear error, and nothing of its file is stored', async () => {
    const file = path.join(cluster.dir, 'bad-block.yaml');
    fs.writeFileSync(
      file,
      `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: b, name: fine}
spec: {podSelector: {matchLabels: {pod: m}}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: b, name: broken}
spec:
  podSelector: {matchLabels: {pod: m}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]
`,
    );
    const r = await cluster.local('apply', '-f', file);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NetworkPolicy broken: ipBlock: invalid CIDR '10\.0\.0\.0\/33'/);
    const store = new LocalDatastore(path.join(cluster.dir, 'datastore'));
    expect(store.get('NetworkPolicy', 'fine', 'b')).toBeNull();
    expect(store.get('NetworkPolicy', 'broken', 'b')).toBeNull();
    expect((await cluster.local('pod', 'create', 'b/o')).code).toBe(0);
  }, 60_000);

  it('an endpoint with a bad MAC is refused with 400 before anything is stored, and the next pod comes up', async () => {
    const before = await agentRequest<unknown[]>(cluster.socket, 'GET', '/v1/endpoints');
    const spec = {
      containerID: 'bad-mac-container',
      ifname: 'eth0',
      namespace: 'b',
      pod: 'v',
      netns: '/var/run/netns/none',
      hostIfname: 'lxcbadmac',
      hostIfindex: 999_999,
      mac: 'not-a-mac',
      hostMac: '02:00:00:00:00:01',
      ips: ['10.99.0.9'],
    };
    await expect(agentRequest(cluster.socket, 'PUT', '/v1/endpoints', spec)).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/field 'mac'/) });
    await expect(agentRequest(cluster.socket, 'PUT', '/v1/endpoints', { ...spec, mac: '02:00:00:00:00:02', ips: ['10.99.0.300'] })).rejects.toMatchObject({ status: 400 });
    expect(await agentRequest<unknown[]>(cluster.socket, 'GET', '/v1/endpoints')).toHaveLength(before.length);
    expect((await cluster.local('pod', 'create', 'b/p')).code).toBe(0);
  }, 60_000);
});
