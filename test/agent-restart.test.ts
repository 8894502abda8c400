/**
 * The datapath outlives the agent: programs, maps and links are pinned, so a
 * stop and start of the agent breaks no connection, and the new agent adopts
 * the pinned objects instead of recreating them; an agent carrying another
 * datapath (same layouts) switches every link to its programs, under traffic.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datapathVersion } from '../datapath/pin-version.ts';
import { withMakefileBuild } from './support/bpf-build.ts';
import { must, SLUICE, TestCluster } from './support/local-cluster.ts';

const HOLD_MS = 6_000;
const PING_INTERVAL_S = 0.05;
const PING_COUNT = 100;

function exitOf(child: import('node:child_process').ChildProcess): Promise<{ code: number | null; out: string }> {
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

describe('restarting the agent', () => {
  const cluster = new TestCluster();
  beforeAll(async () => {
    await cluster.up();
    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', 'x/a']);
    await must(SLUICE, ['local', '--dir', cluster.dir, 'pod', 'create', 'x/b']);
  });
  afterAll(() => cluster.teardown());

  it('breaks no TCP connection, loses at most a few pings, and adopts the pinned datapath', async () => {
    const [a, b] = await cluster.pods();
    const nsA = a!.metadata.annotations['sluice.dev/netns']!;
    const nsB = b!.metadata.annotations['sluice.dev/netns']!;
    const server = cluster.spawn('ip', ['netns', 'exec', nsB, SLUICE, 'local', 'serve', '--protocol', 'tcp', '--port', '7000']);
    await new Promise((resolve) => server.stdout!.once('data', resolve));

    const client = exitOf(
      cluster.spawn('ip', ['netns', 'exec', nsA, SLUICE, 'local', 'connect', b!.status.podIP, '7000', '--hold-ms', String(HOLD_MS), '--timeout-ms', '1000']),
    );
    const ping = exitOf(cluster.spawn('ip', ['netns', 'exec', nsA, 'ping', '-i', String(PING_INTERVAL_S), '-c', String(PING_COUNT), '-W', '1', b!.status.podIP]));

    await new Promise((r) => setTimeout(r, 1_000));
    const oldPid = cluster.config().agentPid;
    process.kill(oldPid, 'SIGTERM');
    while ((() => { try { process.kill(oldPid, 0); return true; } catch { return false; } })()) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500));
    await cluster.up(); // finds the cluster and starts its agent again
    expect(cluster.config().agentPid).not.toBe(oldPid);

    const held = await client;
    expect(held.code, held.out).toBe(0);
    const pinged = await ping;
    const received = Number(pinged.out.match(/(\d+) received/)?.[1] ?? 0);
    expect(PING_COUNT - received).toBeLessThanOrEqual(3);

    const status = await cluster.status();
    expect(status.datapath.adopted).toBe(true);
    expect(status.endpoints).toBe(2);
    // The adopted datapath still carries new traffic both ways.
    expect((await cluster.local('probe', 'x/b', 'x/a', '--protocol', 'tcp', '--port', '7001')).code).toBe(0);
  });

  it('an upgrade to another datapath with the same layouts switches every veth to the new programs under traffic, breaking no TCP connection', async () => {
    const [a, b] = await cluster.pods();
    const nsA = a!.metadata.annotations['sluice.dev/netns']!;
    const nsB = b!.metadata.annotations['sluice.dev/netns']!;
    const server = cluster.spawn('ip', ['netns', 'exec', nsB, SLUICE, 'local', 'serve', '--protocol', 'tcp', '--port', '7002']);
    await new Promise((resolve) => server.stdout!.once('data', resolve));
    const client = exitOf(
      cluster.spawn('ip', ['netns', 'exec', nsA, SLUICE, 'local', 'connect', b!.status.podIP, '7002', '--hold-ms', String(HOLD_MS), '--timeout-ms', '1000']),
    );
    const ping = exitOf(cluster.spawn('ip', ['netns', 'exec', nsA, 'ping', '-i', String(PING_INTERVAL_S), '-c', String(PING_COUNT), '-W', '1', b!.status.podIP]));
    await new Promise((r) => setTimeout(r, 1_000));
    const before = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])).datapath as { runningVersion: string };

    // The new version: the same source and layouts, other bytes.
    const variant = withMakefileBuild((p) => readFileSync(p), undefined, '-DSLUICE_TEST_VARIANT=1 -gdwarf-4');
    const file = path.join(cluster.dir, 'variant.bpf.o');
    writeFileSync(file, variant);
    const oldPid = cluster.config().agentPid;
    process.kill(oldPid, 'SIGTERM');
    while ((() => { try { process.kill(oldPid, 0); return true; } catch { return false; } })()) await new Promise((r) => setTimeout(r, 20));
    process.env.SLUICE_BPF_OBJECT = file;
    try {
      await cluster.up();
    } finally {
      delete process.env.SLUICE_BPF_OBJECT;
    }

    const held = await client;
    expect(held.code, held.out).toBe(0);
    const received = Number((await ping).out.match(/(\d+) received/)?.[1] ?? 0);
    expect(PING_COUNT - received).toBeLessThanOrEqual(3);
    const after = JSON.parse(await must(SLUICE, ['status', '--socket', cluster.socket, '-o', 'json'])).datapath as { version: string; runningVersion: string };
    expect(after.runningVersion).toBe(datapathVersion(variant));
    expect(after.runningVersion).not.toBe(before.runningVersion);
    expect(readFileSync(path.join(cluster.dir, 'agent.log'), 'utf8')).toMatch(/programs of version \w+ replaced by \w+; 4 TCX links switched\n/);
    expect((await cluster.local('probe', 'x/b', 'x/a', '--protocol', 'tcp', '--port', '7003')).code).toBe(0);
  });
});
