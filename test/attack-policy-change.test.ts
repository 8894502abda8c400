/**
 * Policy changes against flows that are already open, with real packets from
 * scapy inside the pods' namespaces. A flow is judged again as soon as the
 * policy of either end changes: one the new rules do not allow stops at once,
 * however busy it keeps itself. That covers the flow a pod opened while its
 * policy was briefly gone (deleted, then created again), which would
 * otherwise stay established for up to 6 h of idle time, refreshed by every
 * packet.
 *
 * Pods of namespace p: v has the policies, m streams UDP to it from one source
 * port, k is the pod the replacement rules admit instead of m.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
// `local apply` and `local delete` return once the agent's maps hold the change (POST /v1/datastore/sync):
// a test counts right after them.
/** How long a stream may run: it is ended once counted, so this only needs to outlast a slow machine. */
const STREAM_MAX_S = 30;

const policy = (from: string) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: p, name: v-ingress}
spec:
  podSelector: {matchLabels: {pod: v}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: ${from}}}}]}]
`;

describe('hostile pod: policy changes and open flows', () => {
  const cluster = new TestCluster();
  let podIp: Record<string, string> = {};
  let netns: Record<string, string> = {};
  let sport = 42000;

  /** m streams to v for `seconds` from a fresh source port; returns a function that ends it (by its PID) once counted. */
  const stream = (seconds: number) => {
    const child = cluster.spawn('ip', ['netns', 'exec', netns['p/m']!, PYTHON, PACKETS, 'stream', podIp['p/v']!, '7000', String(++sport), String(seconds), 'udp']);
    return () => cluster.stop(child);
  };
  const countAtV = async (seconds: number) => Number((await must('ip', ['netns', 'exec', netns['p/v']!, PYTHON, PACKETS, 'count', podIp['p/m']!, '7000', String(seconds), 'udp'])).trim());

  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: p}
---
apiVersion: v1
kind: Pod
metadata: {namespace: p, name: v, labels: {pod: v}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: p, name: m, labels: {pod: m}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: p, name: k, labels: {pod: k}}
`);
    ({ ip: podIp, netns } = await cluster.podAddresses());
  }, 120_000);
  afterAll(() => cluster.teardown());

  it('replacing the rules that admitted a busy flow stops it', async () => {
    await cluster.apply(policy('m'));
    const stop = stream(STREAM_MAX_S);
    expect(await countAtV(2)).toBeGreaterThan(10); // admitted, and established
    await cluster.apply(policy('k'));
    expect(await countAtV(3)).toBe(0);
    await stop();
  }, 60_000);

  it('a flow opened while the only policy was deleted stops when it is created again', async () => {
    await cluster.local('delete', '-f', await writePolicyFile('k'));
    const stop = stream(STREAM_MAX_S);
    expect(await countAtV(2)).toBeGreaterThan(10); // no policy: anything goes, and the flow is established
    await cluster.apply(policy('k'));
    expect(await countAtV(3)).toBe(0);
    await stop();
  }, 60_000);

  it('a flow the new rules still allow keeps flowing', async () => {
    await cluster.apply(policy('m'));
    const stop = stream(STREAM_MAX_S);
    expect(await countAtV(2)).toBeGreaterThan(10);
    // A different rule set (a second peer) that still admits m: the flow is judged again and stays.
    await cluster.apply(policy('m').replace('{podSelector: {matchLabels: {pod: m}}}', '{podSelector: {matchLabels: {pod: m}}}, {podSelector: {matchLabels: {pod: k}}}'));
    expect(await countAtV(3)).toBeGreaterThan(15);
    await stop();
  }, 60_000);

  /** The policy as a file in the cluster's directory, for `sluice local delete -f`. */
  async function writePolicyFile(from: string): Promise<string> {
    const file = path.join(cluster.dir, `delete-${from}.yaml`);
    fs.writeFileSync(file, policy(from));
    return file;
  }
});
