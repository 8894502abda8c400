/**
 * IPAM survives kill -9 of a real agent (dist/sluice agent) at any moment:
 * no address is held by two keys, every allocation that got its 200 keeps its
 * address, nothing released comes back, and a restart on a changed pod CIDR
 * reports what no longer fits instead of keeping or reusing it silently.
 * Every agent has its own state dir, socket and bpffs dir, removed afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { agentRequest } from '../contract/client.ts';
import type { AllocateResponse, IpamResponse, ReconcileResponse } from '../contract/api-types.ts';
import { SLUICE, sh } from './support/local-cluster.ts';
import { errorMessage } from '../lib/errors.ts';

const AGENT_READY_TIMEOUT_MS = 20_000;
const CONCURRENT_ALLOCATIONS = 200;
/** Long enough that the agent's own reconciliation never touches these API-only allocations. */
const NO_GC_ARGS = ['--ipam-gc-grace-ms', String(3_600_000)];

/** One agent process with paths of its own, restartable on the same state. */
class AgentUnderTest {
  readonly id = randomBytes(3).toString('hex');
  readonly stateDir = `/tmp/sluice-ipamtest-${this.id}`;
  readonly socket = `/run/sluice/ipamtest-${this.id}.sock`;
  readonly bpfDir = `/sys/fs/bpf/sluice-ipamtest-${this.id}`;
  log = '';
  private child: ChildProcess | undefined;

  /** Starts the agent with these pod CIDRs and flags; resolves once it answers. */
  async start(podCIDRs: string[], extra: string[] = NO_GC_ARGS): Promise<void> {
    const args = ['agent', '--state-dir', this.stateDir, '--socket', this.socket, '--bpf-dir', this.bpfDir, ...podCIDRs.flatMap((c) => ['--pod-cidr', c]), ...extra];
    const child = spawn(SLUICE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (c: Buffer) => (this.log += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (this.log += c.toString()));
    const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`agent exited during start-up:\n${this.log}`);
      try {
        await agentRequest(this.socket, 'GET', '/v1/status');
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`agent did not answer within ${AGENT_READY_TIMEOUT_MS} ms:\n${this.log}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  /** SIGKILL, and waits until the kernel has reaped it; resolves with the signal that ended it. */
  async kill9(): Promise<string | null> {
    const child = this.child!;
    if (child.exitCode !== null || child.signalCode !== null) return child.signalCode;
    const exited = new Promise<string | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    return exited;
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return agentRequest<T>(this.socket, method, path, body);
  }

  ipam(): Promise<IpamResponse> {
    return this.request<IpamResponse>('GET', '/v1/ipam');
  }

  /** The store file as the agent left it, checked by SQLite itself; the caller closes it. */
  openStore(): DatabaseSync {
    const db = new DatabaseSync(`${this.stateDir}/ipam.db`);
    expect(db.prepare('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' });
    return db;
  }

  async cleanup(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) await this.kill9();
    fs.rmSync(this.stateDir, { recursive: true, force: true });
    fs.rmSync(this.bpfDir, { recursive: true, force: true });
    fs.rmSync(this.socket, { force: true });
  }
}

/** Outcome of one request fired at a crashing agent. */
interface Outcome<T> {
  key: string;
  ok: T | null;
  error: string | null;
}

/**
 * Fires `keys.length` requests at once and SIGKILLs the agent when `killAfterOk`
 * of them have had their 200. Resolves when every request has settled.
 */
async function fireAndKill<T>(agent: AgentUnderTest, keys: string[], send: (key: string) => Promise<T>, killAfterOk: number): Promise<Outcome<T>[]> {
  let oks = 0;
  let killed: Promise<string | null> | undefined;
  const outcomes = await Promise.all(
    keys.map((key) =>
      send(key).then(
        (ok): Outcome<T> => {
          if (++oks === killAfterOk) killed = agent.kill9();
          return { key, ok, error: null };
        },
        (err: unknown): Outcome<T> => ({ key, ok: null, error: errorMessage(err) }),
      ),
    ),
  );
  expect(await killed, 'the agent was killed by SIGKILL').toBe('SIGKILL');
  return outcomes;
}

const allocate = (agent: AgentUnderTest) => (key: string) =>
  agent.request<AllocateResponse>('POST', '/v1/ipam/allocate', { containerID: key, ifname: 'eth0', namespace: 'crash', pod: key });
const release = (agent: AgentUnderTest) => (key: string) => agent.request<{ released: string[] }>('POST', '/v1/ipam/release', { containerID: key, ifname: 'eth0' });
const plain = (r: AllocateResponse) => r.ips.map((ip) => ip.address.split('/')[0]!).sort();

/** Addresses per key in the store file, read straight from SQLite; fails on a duplicate address or a key with two of one family. */
function storeByKey(agent: AgentUnderTest): Map<string, string[]> {
  const db = agent.openStore();
  try {
    const rows = db.prepare('SELECT ip, container_id FROM allocations').all() as { ip: string; container_id: string }[];
    expect(new Set(rows.map((r) => r.ip)).size, 'no address held twice').toBe(rows.length);
    const byKey = new Map<string, string[]>();
    for (const r of rows) byKey.set(r.container_id, [...(byKey.get(r.container_id) ?? []), r.ip].sort());
    for (const [key, ips] of byKey) {
      expect(ips.filter((ip) => !ip.includes(':')).length, `${key} holds at most one IPv4 address`).toBeLessThanOrEqual(1);
      expect(ips.filter((ip) => ip.includes(':')).length, `${key} holds at most one IPv6 address`).toBeLessThanOrEqual(1);
    }
    return byKey;
  } finally {
    db.close();
  }
}

describe('IPAM across kill -9 of the agent', () => {
  let agent: AgentUnderTest;
  afterEach(async () => {
    await agent?.cleanup();
  });

  it('200 concurrent dual-stack allocations, then releases, then allocations, each cut by SIGKILL: completed ones stay, none twice, nothing released returns', async () => {
    agent = new AgentUnderTest();
    const cidrs = [`10.${200 + (parseInt(agent.id.slice(0, 2), 16) % 50)}.0.0/23`, `fd00:${agent.id.slice(0, 4)}::/112`];
    await agent.start(cidrs);

    // Round A: allocations cut after 50 completions.
    const keysA = Array.from({ length: CONCURRENT_ALLOCATIONS }, (_, i) => `a${i}`);
    const outA = await fireAndKill(agent, keysA, allocate(agent), 50);
    const okA = outA.filter((o) => o.ok);
    expect(okA.length).toBeGreaterThanOrEqual(50);
    expect(outA.some((o) => o.error), 'the kill landed while allocations were in flight').toBe(true);
    let store = storeByKey(agent);
    for (const o of okA) expect(store.get(o.key), `completed allocation ${o.key} is in the store`).toEqual(plain(o.ok!));

    await agent.start(cidrs);
    // Retrying every key (what a runtime does) gives completed ones the same addresses, and the rest unique ones.
    const retried = await Promise.all(keysA.map((k) => allocate(agent)(k)));
    retried.forEach((r, i) => {
      expect(r.ips.map((ip) => ip.family)).toEqual([4, 6]);
      if (outA[i]!.ok) expect(plain(r)).toEqual(plain(outA[i]!.ok!));
    });
    store = storeByKey(agent);
    expect(store.size).toBe(CONCURRENT_ALLOCATIONS);

    // Round B: releases of half the keys cut after 30 completions.
    const keysB = keysA.slice(0, 100);
    const heldBefore = new Map(store);
    const outB = await fireAndKill(agent, keysB, release(agent), 30);
    store = storeByKey(agent);
    for (const o of outB.filter((x) => x.ok)) {
      expect(o.ok!.released.sort(), `release of ${o.key} returned what it held`).toEqual(heldBefore.get(o.key));
      expect(store.has(o.key), `released ${o.key} does not come back`).toBe(false);
    }
    await agent.start(cidrs);
    for (const k of keysB) await release(agent)(k);
    const releasedIps = new Set(keysB.flatMap((k) => heldBefore.get(k)!));
    expect((await agent.ipam()).allocations.filter((a) => releasedIps.has(a.ip))).toEqual([]);

    // Round C: new allocations cut after 100 completions: the pool still has fresh addresses, so none of the just-released is reused.
    const keysC = Array.from({ length: CONCURRENT_ALLOCATIONS }, (_, i) => `c${i}`);
    const outC = await fireAndKill(agent, keysC, allocate(agent), 100);
    expect(outC.some((o) => o.error), 'the kill landed while allocations were in flight').toBe(true);
    store = storeByKey(agent);
    for (const o of outC.filter((x) => x.ok)) expect(store.get(o.key)).toEqual(plain(o.ok!));
    await agent.start(cidrs);
    const finalC = await Promise.all(keysC.map((k) => allocate(agent)(k)));
    const reused = finalC.flatMap(plain).filter((ip) => releasedIps.has(ip));
    expect(reused, 'just-released addresses wait until the pool has no fresh one').toEqual([]);
    store = storeByKey(agent);
    expect(store.size).toBe(100 + CONCURRENT_ALLOCATIONS);
    const report = await agent.ipam();
    expect(report.pools.map((p) => p.used)).toEqual([300, 300]);
    expect(report.stale).toEqual([]);
  });

  it('after a restart on another pod CIDR, reports the allocations outside it (API, log, sluice ipam) and never hands them out', async () => {
    agent = new AgentUnderTest();
    const oldCidr = `10.${200 + (parseInt(agent.id.slice(0, 2), 16) % 50)}.1.0/29`;
    const newCidr = `10.${200 + (parseInt(agent.id.slice(0, 2), 16) % 50)}.2.0/29`;
    await agent.start([oldCidr]);
    const held = await Promise.all(['k1', 'k2', 'k3'].map((k) => allocate(agent)(k)));
    expect(await agent.kill9()).toBe('SIGKILL');

    await agent.start([newCidr]);
    const report = await agent.ipam();
    expect(report.stale.map((s) => [s.containerID, s.ip, s.stale])).toEqual(held.map((h, i) => [`k${i + 1}`, plain(h)[0], 'outside-pod-cidrs']));
    expect(report.pools).toMatchObject([{ cidr: newCidr, size: 5, used: 0 }]);
    expect(agent.log).toMatch(new RegExp(`allocation ${plain(held[0]!)[0]!.replace(/\./g, '\\.')} of crash/k1 .* outside the pod CIDRs ${newCidr}`));
    const cli = await sh(SLUICE, ['ipam', '--socket', agent.socket]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/outside-pod-cidrs/);
    expect(cli.stderr).toMatch(/3 stale allocation/);

    // The new pool's five addresses are all usable: the stale addresses neither block it nor come out of it.
    const fresh = await Promise.all(['k1', 'n2', 'n3', 'n4', 'n5'].map((k) => allocate(agent)(k)));
    expect(fresh.flatMap(plain).every((ip) => ip.startsWith(newCidr.split('.').slice(0, 3).join('.')))).toBe(true);
    await expect(allocate(agent)('n6')).rejects.toMatchObject({ status: 503, kind: 'PoolExhausted', message: expect.stringContaining(newCidr) });
  });

  it('reclaims at start-up, after a crash, the addresses of containers whose netns is gone, and keeps the others', async () => {
    agent = new AgentUnderTest();
    const cidr = `10.${200 + (parseInt(agent.id.slice(0, 2), 16) % 50)}.3.0/28`;
    const liveNetns = `${agent.stateDir}-live-netns`;
    fs.mkdirSync(agent.stateDir, { recursive: true });
    fs.writeFileSync(liveNetns, '');
    try {
      await agent.start([cidr]);
      await agent.request('POST', '/v1/ipam/allocate', { containerID: 'live', ifname: 'eth0', netns: liveNetns });
      await agent.request('POST', '/v1/ipam/allocate', { containerID: 'gone', ifname: 'eth0', netns: `${agent.stateDir}-no-such-netns` });
      expect(await agent.kill9()).toBe('SIGKILL');
      await agent.start([cidr], ['--ipam-gc-grace-ms', '0']);
      expect((await agent.ipam()).allocations.map((a) => a.containerID)).toEqual(['live']);
      expect(agent.log).toMatch(/IPAM reconcile: released 10\.\S+ of \?\/\? \(container gone, eth0\): netns-gone/);
    } finally {
      fs.rmSync(liveNetns, { force: true });
    }
  });

  it('POST /v1/ipam/reconcile with valid attachments releases exactly the others past the grace period', async () => {
    agent = new AgentUnderTest();
    await agent.start([`10.${200 + (parseInt(agent.id.slice(0, 2), 16) % 50)}.4.0/28`]);
    for (const k of ['keep', 'drop', 'young']) {
      await agent.request('POST', '/v1/ipam/allocate', { containerID: k, ifname: 'eth0' });
      if (k === 'drop') await new Promise((r) => setTimeout(r, 300));
    }
    const dry = await agent.request<ReconcileResponse>('POST', '/v1/ipam/reconcile', { validAttachments: [{ containerID: 'keep', ifname: 'eth0' }], graceMs: 200, dryRun: true });
    expect(dry.released.map((r) => r.containerID)).toEqual(['drop']);
    expect((await agent.ipam()).allocations).toHaveLength(3);
    const done = await agent.request<ReconcileResponse>('POST', '/v1/ipam/reconcile', { validAttachments: [{ containerID: 'keep', ifname: 'eth0' }], graceMs: 200 });
    expect(done.released).toMatchObject([{ containerID: 'drop', reason: 'not-in-valid-attachments' }]);
    expect(done.kept).toBe(2);
    expect((await agent.ipam()).allocations.map((a) => a.containerID).sort()).toEqual(['keep', 'young']);
    await expect(agent.request('POST', '/v1/ipam/reconcile', { validAttachments: [{ containerID: 1 }] })).rejects.toMatchObject({ status: 400 });
  });
});
