/**
 * A damaged IPAM store is never taken for an empty one. Twenty pods run on a
 * local cluster; the agent is killed with SIGKILL and its ipam.db damaged as
 * a torn write or a bad disk would leave it: (a) truncated to half, (b) 4 KiB
 * in the middle overwritten with random bytes and its -wal and -shm removed.
 * The restarted agent moves the file aside (and says where in its log),
 * rebuilds the allocations from the node, every running pod keeps its
 * address and its connectivity, and a new pod gets an address no pod holds.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { agentRequest } from '../contract/client.ts';
import type { IpamResponse } from '../contract/api-types.ts';
import { TestCluster, sh } from './support/local-cluster.ts';

const PODS = 20;
const GC_GRACE_MS = 2_000;

/** A local cluster with PODS running pods, whose agent's store the test damages. */
class DamagedStoreCluster extends TestCluster {
  readonly store = path.join(this.stateDir, 'ipam.db');
  readonly agentLog = path.join(this.dir, 'agent.log');

  async start(): Promise<void> {
    // Reconciliation at full speed: a rebuilt allocation it would release goes within the test. (A grace of
    // 0 would race ADDs themselves: the allocation of an ADD in flight has no netns, and its pod may not be
    // in the agent's copy of the datastore yet.)
    await this.up(`--agent-arg=--ipam-gc-grace-ms=${GC_GRACE_MS}`, '--agent-arg=--ipam-gc-interval-ms=300');
    // A few ADDs at a time, as a kubelet starting pods runs them (one after another cost a minute).
    await inBatches(Array.from({ length: PODS }, (_, i) => i), async (i) => {
      const r = await this.local('pod', 'create', `s/p${i}`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });
  }

  ipam(): Promise<IpamResponse> {
    return agentRequest<IpamResponse>(this.socket, 'GET', '/v1/ipam');
  }

  /** Kills the agent with SIGKILL (after its WAL was written into the file, as its own checkpoints do) and waits until it is gone. */
  async killAgent(): Promise<void> {
    const db = new DatabaseSync(this.store);
    try {
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } finally {
      db.close();
    }
    const pid = this.config().agentPid;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`agent ${pid} survived SIGKILL`);
  }
}

const AT_ONCE = 5;

/** Runs `work` for every item, AT_ONCE at a time. */
async function inBatches<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += AT_ONCE) await Promise.all(items.slice(i, i + AT_ONCE).map(work));
}

async function ping(netns: string, ip: string): Promise<boolean> {
  return (await sh('ip', ['netns', 'exec', netns, 'ping', '-c', '1', '-W', '2', ip])).code === 0;
}

/** Damages the store of a killed agent, restarts it, and checks everything the rebuild promises; returns the moved-aside file. */
async function damageAndRestart(damage: (store: string) => void): Promise<string> {
  const cluster = new DamagedStoreCluster();
  try {
    await cluster.start();
    const before = await cluster.podAddresses();
    expect(Object.keys(before.ip)).toHaveLength(PODS);
    await cluster.killAgent();
    damage(cluster.store);
    await cluster.up();

    // A new pod gets an address no running pod holds, and reaches an old one.
    const names = Object.keys(before.ip);
    const first = names[0]!;
    const r = await cluster.local('pod', 'create', 's/new');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const after = await cluster.podAddresses();
    expect(Object.values(before.ip), 'the new pod\'s address').not.toContain(after.ip['s/new']);
    expect(await ping(after.netns['s/new']!, before.ip[first]!)).toBe(true);

    // Every running pod holds its own address, and still after reconciliation has run a few times.
    const check = async (): Promise<void> => {
      const held = new Map((await cluster.ipam()).allocations.map((a) => [a.ip, `${a.namespace}/${a.pod}`]));
      for (const [pod, ip] of Object.entries(before.ip)) expect(held.get(ip), `${pod}'s address ${ip}`).toBe(pod);
    };
    await check();
    await new Promise((r) => setTimeout(r, GC_GRACE_MS + 1_000));
    await check();
    expect((await cluster.status()).endpoints).toBe(PODS + 1);

    // Pods still reach each other: the first to every other, every other back to the first.
    const failed: string[] = [];
    await inBatches(names.slice(1), async (other) => {
      if (!(await ping(before.netns[first]!, before.ip[other]!))) failed.push(`${first} -> ${other}`);
      if (!(await ping(before.netns[other]!, before.ip[first]!))) failed.push(`${other} -> ${first}`);
    });
    expect(failed.sort()).toEqual([]);

    // The log names the file it moved aside, and that file is there.
    const log = fs.readFileSync(cluster.agentLog, 'utf8');
    const moved = /IPAM store (\S+) is damaged \(.*\): moved aside to (\S+);/.exec(log);
    expect(moved, `agent log:\n${log}`).not.toBeNull();
    expect(moved![1]).toBe(cluster.store);
    expect(fs.existsSync(moved![2]!)).toBe(true);
    expect(log).toMatch(new RegExp(`IPAM rebuilt \\(the damaged store moved aside to ${moved![2]!.replace(/[.]/g, '\\.')}\\): ${PODS} allocation`));
    return moved![2]!;
  } finally {
    await cluster.teardown();
  }
}

describe('a damaged IPAM store', () => {
  it('(a) truncated to half: moved aside, rebuilt, every pod keeps its address, a new pod gets a fresh one', async () => {
    await damageAndRestart((store) => fs.truncateSync(store, Math.floor(fs.statSync(store).size / 2)));
  }, 180_000);

  it('(b) 4 KiB of random bytes in the middle, -wal and -shm gone: the same', async () => {
    const aside = await damageAndRestart((store) => {
      const size = fs.statSync(store).size;
      const fd = fs.openSync(store, 'r+');
      try {
        fs.writeSync(fd, randomBytes(4096), 0, 4096, Math.max(0, Math.floor(size / 2) - 2048));
      } finally {
        fs.closeSync(fd);
      }
      fs.rmSync(`${store}-wal`, { force: true });
      fs.rmSync(`${store}-shm`, { force: true });
    });
    expect(path.basename(aside)).toMatch(/^ipam\.db\.damaged-\d{4}-\d\d-\d\dT/);
  }, 180_000);
});
