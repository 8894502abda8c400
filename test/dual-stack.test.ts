/**
 * Dual stack through the eBPF datapath: a pod gets one address of each
 * family, reaches another pod over IPv4 and over IPv6 (the datapath answers
 * neighbour discovery for the IPv6 gateway, as it answers ARP for IPv4), and
 * NetworkPolicy holds for IPv6 as for IPv4.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, sh, SLUICE, TestCluster } from './support/local-cluster.ts';

describe('dual stack', () => {
  const cluster = new TestCluster();
  const v6CIDR = `fd00:${cluster.id.slice(0, 4)}::/120`;
  const manifests = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ds-'));
  const apply = (yaml: string) => {
    const file = path.join(manifests, `m${Date.now()}.yaml`);
    fs.writeFileSync(file, yaml);
    return must(SLUICE, ['local', '--dir', cluster.dir, 'apply', '-f', file]);
  };
  const probe = (from: string, to: string, family: '4' | '6', protocol = 'tcp') =>
    sh(SLUICE, ['local', '--dir', cluster.dir, 'probe', from, to, '--protocol', protocol, '--port', '80', '--family', family, '--timeout-ms', '1500']);

  beforeAll(async () => {
    await must(SLUICE, ['local', 'up', '--dir', cluster.dir, '--name', cluster.name, '--socket', cluster.socket, '--state-dir', cluster.stateDir, '--bpf-dir', cluster.bpfDir, '--pod-cidr', cluster.podCIDR, '--pod-cidr', v6CIDR]);
    await apply(`
apiVersion: v1
kind: Namespace
metadata: {name: ds}
---
apiVersion: v1
kind: Pod
metadata: {namespace: ds, name: a, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80, protocol: TCP}, {containerPort: 80, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: ds, name: b, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80, protocol: TCP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: ds, name: c, labels: {app: c}}
`);
  });
  afterAll(async () => {
    await cluster.teardown();
    fs.rmSync(manifests, { recursive: true, force: true });
  });

  it('gives each pod one address of each family', async () => {
    for (const p of await cluster.pods()) {
      const ips = (p as unknown as { status: { podIPs: { ip: string }[] } }).status.podIPs.map((x) => x.ip);
      expect(ips.filter((ip) => !ip.includes(':'))).toHaveLength(1);
      expect(ips.filter((ip) => ip.includes(':'))).toHaveLength(1);
    }
  });

  it('carries TCP, UDP and ICMP between pods over IPv4 and IPv6', async () => {
    for (const family of ['4', '6'] as const) {
      expect((await probe('ds/b', 'ds/a', family)).code, `TCP over IPv${family}`).toBe(0);
      expect((await probe('ds/b', 'ds/a', family, 'udp')).code, `UDP over IPv${family}`).toBe(0);
      expect((await probe('ds/a', 'ds/b', family, 'icmp')).code, `ICMP over IPv${family}`).toBe(0);
    }
    const counters = (await cluster.status()).counters;
    expect(counters.REDIRECT_LOCAL!.packets).toBeGreaterThan(0);
  });

  it('enforces NetworkPolicy over IPv6 as over IPv4', async () => {
    await apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: ds, name: a-from-b}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]
`);
    for (const family of ['4', '6'] as const) {
      expect((await probe('ds/b', 'ds/a', family)).code, `b -> a over IPv${family}`).toBe(0);
      expect((await probe('ds/c', 'ds/a', family)).code, `c -> a over IPv${family}`).not.toBe(0);
    }
  });
});
