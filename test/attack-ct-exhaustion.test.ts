/**
 * A hostile pod against the conntrack table: it opens more flows than the
 * whole table holds (400,000 new UDP flows, as fast as plain sockets go), to push
 * other pods' flows out. With one shared LRU table that worked: the flood
 * evicted the entry of a request the victim had just sent, and the late answer was dropped by
 * its ingress policy. Now every endpoint has a budget: the flood stops at the
 * attacker's budget (its further new flows are dropped and counted), the
 * victim's flow keeps its entry, and the victim can still open new ones.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CT_MAX_PER_ENDPOINT } from '../datapath/abi.ts';
import { must, TestCluster } from './support/local-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
/** Half again the whole table (262,144 entries): an LRU would have turned over; the budget stops it at a quarter. */
const FLOOD_FLOWS = 400_000;

describe('hostile pod: conntrack exhaustion', () => {
  const cluster = new TestCluster();
  let podIp: Record<string, string> = {};
  let netns: Record<string, string> = {};
  const packets = async (from: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, ...args])).trim();
  /** from streams UDP to to:port from sport, ten a second for 2 s; returns how many of the 20 reached `to`. */
  const delivered = async (from: string, to: string, port: string, sport: string) => {
    const counted = packets(to, 'count', podIp[from]!, port, '4', 'udp');
    await new Promise((r) => setTimeout(r, 1500)); // the counter's sniffer is up by now
    await packets(from, 'stream', podIp[to]!, port, sport, '2', 'udp');
    return Number(await counted);
  };

  /** Conntrack entries charged to each endpoint, read from the pinned ct_counts map. */
  const chargedCounts = () => {
    const dump = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', path.join(cluster.bpfDir, 'maps/ct_counts')], { encoding: 'utf8' })) as { value: string[] }[];
    return dump.map((e) => Number(Buffer.from(e.value.map((b) => Number(b))).readBigInt64LE()));
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
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: v, labels: {pod: v}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: f1, labels: {pod: f1}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: f2, labels: {pod: f2}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: f3, labels: {pod: f3}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: v-deny-ingress}
spec: {podSelector: {matchLabels: {pod: v}}, policyTypes: [Ingress]}
`);
    ({ ip: podIp, netns } = await cluster.podAddresses());
  }, 120_000);
  afterAll(() => cluster.teardown());

  it("a flood of new flows from one pod neither evicts another pod's flow nor stops it opening new ones", async () => {
    // Control: a flow v opened lets b's answers through v's deny-all ingress, as replies and only as replies.
    await packets('x/v', 'stream', podIp['x/b']!, '7000', '41005', '0.1', 'udp');
    expect(await delivered('x/b', 'x/v', '41005', '7000')).toBeGreaterThan(10);
    expect(await delivered('x/b', 'x/v', '41001', '7000')).toBe(0);
    // m's neighbour entry for its gateway first: packets queued behind an ARP request can be dropped before from-pod.
    await packets('x/m', 'stream', podIp['x/b']!, '7003', '41004', '0.1', 'udp');

    const counters = async () => (await cluster.status()).counters;
    const start = await counters();
    const before = start.DROP_CT_FULL?.packets ?? 0;
    // From both CPUs, so every CPU's share of the table turns over.
    const half = String(FLOOD_FLOWS / 2);
    const flood = Promise.all(['0', '1'].map((cpu, i) => must('ip', ['netns', 'exec', netns['x/m']!, 'taskset', '-c', cpu, PYTHON, PACKETS, 'flood', podIp['x/b']!, half, String(20000 + i * 100)])));
    // b listens on 7000: no ICMP "port unreachable" goes back to v (that would refresh v's entry in an LRU).
    const sink = cluster.spawn('ip', ['netns', 'exec', netns['x/b']!, PYTHON, '-c', "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 7000)); time.sleep(60)"]);
    // While the flood runs, v sends one request, as a DNS client would, and its answer comes late.
    await new Promise((r) => setTimeout(r, 2500));
    await packets('x/v', 'stream', podIp['x/b']!, '7000', '41000', '0.1', 'udp');
    expect((await flood).reduce((sum, out) => sum + Number(out.trim()), 0)).toBe(FLOOD_FLOWS);
    // The attacker's flows stopped at its budget; everything past it was dropped, and counted.
    const end = await counters();
    const refused = (end.DROP_CT_FULL?.packets ?? 0) - before;
    // Refused before judging: the flood's dropped flows are not counted as allowed ones.
    expect(end.POLICY_ALLOWED!.packets - start.POLICY_ALLOWED!.packets).toBeLessThan(CT_MAX_PER_ENDPOINT + 100);
    // (A few hundred may never reach from-pod: the veth's backlog queue drops them first.)
    expect(refused).toBeGreaterThanOrEqual(0.99 * (FLOOD_FLOWS - CT_MAX_PER_ENDPOINT));
    // ct_reserve adds first and takes back when over, atomically: with the flood on both CPUs, not one
    // flow slips past the budget (a check before the add let one per CPU through).
    const attacker = Math.max(...chargedCounts());
    expect(attacker).toBe(CT_MAX_PER_ENDPOINT);

    // v's request kept its entry through the flood (an LRU had evicted it): b's answers reach v.
    expect(await delivered('x/b', 'x/v', '41000', '7000')).toBeGreaterThan(10);
    await cluster.stop(sink);
    // v can still open a new flow (its own budget is untouched) ...
    expect(await delivered('x/v', 'x/b', '7001', '41002')).toBeGreaterThan(10);
    // ... while the attacker, over its budget, cannot.
    expect(await delivered('x/m', 'x/b', '7002', '41003')).toBe(0);
  }, 120_000);

  it('pods flooding together to their budgets fill no more than the shared part: another pod still opens flows', async () => {
    // Four pods at the old budget (a quarter of the table each) filled the whole table, and then no
    // pod on the node could open a flow. Now each pod's first entries are its own.
    const flooders = ['x/m', 'x/f1', 'x/f2', 'x/f3'];
    for (const pod of flooders) await packets(pod, 'stream', podIp['x/b']!, '7003', '41004', '0.1', 'udp'); // neighbour entries first
    await Promise.all(flooders.map((pod, i) => must('ip', ['netns', 'exec', netns[pod]!, PYTHON, PACKETS, 'flood', podIp['x/b']!, String(CT_MAX_PER_ENDPOINT + 2000), String(21000 + i * 100)])));
    await cluster.serve(netns['x/b']!, 7010, 'udp');
    // 20 new flows, each a datagram and its echo.
    expect(Number(await packets('x/v', 'connects', podIp['x/b']!, '7010', '20', 'udp'))).toBe(20);
  }, 120_000);
});
