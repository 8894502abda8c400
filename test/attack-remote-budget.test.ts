/**
 * A pod on another node against a local pod's conntrack budget. Flows opened
 * from off the node used to be charged to the local pod they went to: pod m
 * on node-2 opening allowed UDP flows to v on node-1, as many as the budget
 * (scaled down to 3,000 here), left v unable to open a flow or to accept one
 * from anybody else. Now they are charged to a bucket of m's identity on
 * node-1: m runs out, v does not.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must } from './support/local-cluster.ts';
import { TwoNodeCluster } from './support/two-node-cluster.ts';

const PACKETS = path.join(import.meta.dirname, 'support/packets.py');
const PYTHON = '/usr/bin/python3';
const BUDGET = 3000;

describe('hostile pod: a remote pod against a local pod\'s conntrack budget', () => {
  const cluster = new TwoNodeCluster();
  let ip: Record<string, string> = {};
  let netns: Record<string, string> = {};
  const packets = async (from: string, ...args: string[]) => (await must('ip', ['netns', 'exec', netns[from]!, PYTHON, PACKETS, ...args])).trim();

  beforeAll(async () => {
    await cluster.up('--nodes', '2', `--agent-arg=--ct-max-per-endpoint=${BUDGET}`);
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: x}
`);
    await cluster.pod('x/v', 'node-1', { pod: 'v' });
    await cluster.pod('x/m', 'node-2', { pod: 'm' });
    await cluster.pod('x/k', 'node-2', { pod: 'k' });
    ({ ip, netns } = await cluster.podAddresses());
    await cluster.serve(netns['x/v']!, 7010, 'udp');
    await cluster.serve(netns['x/k']!, 7010, 'udp');
  }, 180_000);
  afterAll(() => cluster.teardown());

  it('after a remote pod opened more flows to v than the budget, v still opens flows and accepts them from another pod', async () => {
    // Control: both ways work before.
    expect(Number(await packets('x/v', 'connects', ip['x/k']!, '7010', '5', 'udp'))).toBe(5);
    await packets('x/m', 'flood', ip['x/v']!, String(BUDGET + 500));
    // 20 new flows each way, each a datagram and its echo.
    expect(Number(await packets('x/v', 'connects', ip['x/k']!, '7010', '20', 'udp')), 'v opens').toBe(20);
    expect(Number(await packets('x/k', 'connects', ip['x/v']!, '7010', '20', 'udp')), 'v accepts').toBe(20);
  }, 120_000);
});
