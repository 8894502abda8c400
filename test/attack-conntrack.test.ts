/**
 * Hostile pods against connection tracking and the fragment table, with real
 * packets from scapy inside the pods' namespaces.
 *
 * Pre-seeding: a pod sends a steady stream to the address IPAM will hand out
 * next, so that a conntrack entry exists for it before its owner does. When
 * the victim comes up there, isolated for ingress by a policy that existed
 * before it, not one of those packets may reach it; once a policy admits the
 * sender, the same stream does.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
/** How long a stream may run: it is ended once counted, so this only needs to outlast a slow machine. */
const STREAM_MAX_S = 30;

/** The address after the highest one in use: what this cluster's IPAM hands out next. */
function nextAddress(ips: string[]): string {
  const last = Math.max(...ips.map((ip) => Number(ip.split('.')[3])));
  return ips[0]!.replace(/\.\d+$/, `.${last + 1}`);
}

describe('hostile pod: conntrack and fragments', () => {
  const cluster = new TestCluster();
  let podIp: Record<string, string> = {};
  let netns: Record<string, string> = {};

  const packets = async (from: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, ...args])).trim();
  const refresh = async () => {
    ({ ip: podIp, netns } = await cluster.podAddresses());
  };
  /** Streams from x/m toward the next address, creates the victim there, and counts what reaches it. */
  const preseed = async (victim: string, proto: 'udp' | 'icmp', sport: string) => {
    const target = nextAddress(Object.values(podIp));
    const stream = cluster.spawn('ip', ['netns', 'exec', netns['x/m']!, PYTHON, PACKETS, 'stream', target, '7000', sport, String(STREAM_MAX_S), proto]);
    await new Promise((r) => setTimeout(r, 1500)); // the stream has written its entry by now
    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', `x/${victim}`, '--label', 'role=victim']);
    await refresh();
    expect(podIp[`x/${victim}`]).toBe(target); // the attack aimed right, so a 0 below means something
    const received = Number(await packets(`x/${victim}`, 'count', podIp['x/m']!, '7000', '3', proto));
    await cluster.stop(stream);
    return received;
  };

  beforeAll(async () => {
    await cluster.up();
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: m, labels: {pod: m}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: b, labels: {pod: b}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: victims-deny-all}
spec: {podSelector: {matchLabels: {role: victim}}, policyTypes: [Ingress]}
`);
    await refresh();
  }, 120_000);
  afterAll(() => cluster.teardown());

  it('an ICMP echo stream seeded before the victim existed reaches it 0 times', async () => {
    expect(await preseed('v1', 'icmp', '4242')).toBe(0);
  }, 60_000);

  it('a UDP stream seeded before the victim existed reaches it 0 times, and passes once a policy admits it', async () => {
    expect(await preseed('v2', 'udp', '41000')).toBe(0);
    await cluster.apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: victims-from-m}
spec:
  podSelector: {matchLabels: {role: victim}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {pod: m}}}]}]
`);
    const stream = cluster.spawn('ip', ['netns', 'exec', netns['x/m']!, PYTHON, PACKETS, 'stream', podIp['x/v2']!, '7000', '41000', String(STREAM_MAX_S), 'udp']);
    const received = Number(await packets('x/v2', 'count', podIp['x/m']!, '7000', '3', 'udp'));
    await cluster.stop(stream);
    expect(received).toBeGreaterThan(10);
  }, 60_000);

  it('a spoofed first fragment writes nothing to the fragment table', async () => {
    const fragmentsFrom = (ip: string) => {
      const dump = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', path.join(cluster.bpfDir, 'maps/fragments')], { encoding: 'utf8' })) as { key: string[] }[];
      const bytes = ip.split('.').map((o) => `0x${Number(o).toString(16).padStart(2, '0')}`);
      return dump.filter((e) => bytes.every((b, i) => e.key[i] === b)).length;
    };
    // Control: a genuine first fragment from b (its own address) leaves an entry until the rest comes.
    await packets('x/b', 'spoof-frag', podIp['x/m']!, '80', podIp['x/b']!);
    expect(fragmentsFrom(podIp['x/b']!)).toBeGreaterThan(0);
    // b forges m's address on a first fragment: dropped as spoofed, and no entry under m's address.
    await packets('x/b', 'spoof-frag', podIp['x/v1']!, '80', podIp['x/m']!);
    expect(fragmentsFrom(podIp['x/m']!)).toBe(0);
  }, 60_000);
});
