/**
 * A NetworkPolicy Sluice cannot compile, on a local cluster with real packets
 * (issue 31): the pod it selects fails closed, every other policy keeps
 * working and pods still start; `sluice status` has a line for it and
 * sluice_policy_errors a series, both gone once it is fixed. (The Event on
 * the object: policy-errors-kubernetes.test.ts, against a fake API server.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: {name: e}
---
apiVersion: v1
kind: Pod
metadata: {namespace: e, name: v, labels: {pod: v}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: e, name: m, labels: {pod: m}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: e, name: w, labels: {pod: w}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: e, name: w-from-m}
spec:
  podSelector: {matchLabels: {pod: w}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: m}}}]}]
`;

/** Ingress to v on a port no packet can carry: an API server refuses it, `sluice local apply` and any datastore file may not. */
const broken = (port: number) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: e, name: v-web}
spec:
  podSelector: {matchLabels: {pod: v}}
  ingress: [{ports: [{protocol: TCP, port: ${port}}]}]
`;

interface Status {
  ready: boolean;
  policyErrors?: { namespace: string; name: string; problems: string[] }[];
  metrics: { address: string | null };
}

describe('a NetworkPolicy that cannot be compiled, on a local cluster', () => {
  const cluster = new TestCluster();
  const reaches = async (from: string, to: string, port = 80) =>
    (await cluster.local('probe', from, to, '--protocol', 'tcp', '--port', String(port), '--timeout-ms', '1500')).code === 0;
  /** `sluice local apply -f` of a manifest; what it tells the author (its stderr). */
  const apply = async (yaml: string): Promise<string> => {
    const file = path.join(cluster.dir, 'v-web.yaml');
    fs.writeFileSync(file, yaml);
    const r = await cluster.local('apply', '-f', file);
    expect(r.code, r.stderr).toBe(0);
    return r.stderr;
  };
  const status = async (): Promise<Status> => JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json']));
  const policyErrorSeries = async (): Promise<string[]> => {
    const text = await (await fetch(`http://${(await status()).metrics.address}/metrics`)).text();
    return text.split('\n').filter((l) => l.startsWith('sluice_policy_errors'));
  };

  beforeAll(async () => {
    await cluster.up('--metrics-address', '127.0.0.1:0');
    await cluster.apply(MANIFESTS);
  }, 120_000);
  afterAll(() => cluster.teardown(), 60_000);

  it('its pod fails closed, the other policy keeps working, pods still start, and status and metrics name it until it is fixed', async () => {
    expect(await reaches('e/m', 'e/v')).toBe(true);
    expect(await apply(broken(70000))).toMatch(
      /^networkpolicy e\/v-web created; NOT COMPILED: ingress\[0\]\.ports\[0\]\.port: 70000 is not a port \(1-65535\) \(this rule allows nothing\) \(the pods it selects fail closed\)$/m,
    );

    // Fail closed where it selects; everything else as before.
    expect(await reaches('e/m', 'e/v')).toBe(false);
    expect(await reaches('e/w', 'e/v', 4464)).toBe(false); // 70000 mod 65536
    expect(await reaches('e/m', 'e/w')).toBe(true);
    expect(await reaches('e/v', 'e/w')).toBe(false);
    expect(await reaches('e/v', 'e/m')).toBe(true);
    expect((await cluster.local('pod', 'create', 'e/n', '--label', 'pod=n')).code).toBe(0);
    expect(await reaches('e/n', 'e/m')).toBe(true);
    expect(await reaches('e/n', 'e/w')).toBe(false);

    const s = await status();
    expect(s.ready).toBe(true);
    expect(s.policyErrors).toEqual([{ namespace: 'e', name: 'v-web', problems: ['ingress[0].ports[0].port: 70000 is not a port (1-65535) (this rule allows nothing)'] }]);
    const screen = await must(SLUICE, ['status', '--socket', cluster.socket]);
    expect(screen).toMatch(/^ {12}NOT COMPILED: NetworkPolicy e\/v-web: ingress\[0\]\.ports\[0\]\.port: 70000 is not a port \(1-65535\) \(this rule allows nothing\) \(its pods fail closed\)$/m);
    expect(await policyErrorSeries()).toEqual(['sluice_policy_errors{namespace="e",name="v-web"} 1']);

    // Fixed: the policy as written, and nothing left to say.
    expect(await apply(broken(80))).toMatch(/^networkpolicy e\/v-web configured$/m);
    expect(await reaches('e/m', 'e/v')).toBe(true);
    expect(await reaches('e/m', 'e/v', 81)).toBe(false);
    expect((await status()).policyErrors).toEqual([]);
    expect(await must(SLUICE, ['status', '--socket', cluster.socket])).not.toMatch(/NOT COMPILED/);
    expect(await policyErrorSeries()).toEqual([]);
  }, 120_000);
});
