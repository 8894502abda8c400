/**
 * The agent's state directory (its SQLite stores) on a disk that fills up:
 * a 1 MiB tmpfs, filled to the last byte while pods are created and deleted.
 * Every ADD either works or fails with CNI code 11 ("try again") and leaves
 * nothing behind; every DEL works; the agent never exits; `sluice status`
 * says it is not ready while the disk is full; once there is room again it
 * recovers by itself, and no address is leaked or held twice.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SLUICE, TestCluster, must, sh } from './support/local-cluster.ts';

const ADDS = 50;
const TRY_AGAIN_LATER = 11;

describe('a full state disk', () => {
  const cluster = new TestCluster();
  const filler = path.join(cluster.stateDir, 'filler');
  let mounted = false;

  beforeAll(async () => {
    fs.mkdirSync(cluster.stateDir, { recursive: true, mode: 0o700 });
    await must('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', cluster.stateDir]);
    mounted = true;
    await cluster.up('--agent-arg=--ipam-gc-grace-ms=0', '--agent-arg=--ipam-gc-interval-ms=500');
  }, 60_000);
  afterAll(async () => {
    await cluster.teardown().catch(() => undefined);
    if (mounted) await sh('umount', ['-l', cluster.stateDir]);
    fs.rmSync(cluster.stateDir, { recursive: true, force: true });
  });

  /** Fills the tmpfs: a file grown until the write fails with ENOSPC. */
  function fillDisk(): void {
    const fd = fs.openSync(filler, 'w');
    const chunk = Buffer.alloc(4096, 0xa5);
    try {
      for (;;) fs.writeSync(fd, chunk);
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      fs.closeSync(fd);
    }
  }

  async function ready(): Promise<{ code: number; text: string }> {
    const r = await sh(SLUICE, ['status', '--socket', cluster.socket]);
    return { code: r.code, text: r.stdout + r.stderr };
  }

  async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 15_000, explain?: () => Promise<string>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await ok())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${explain ? `: ${await explain()}` : ''}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('ADDs fail with "try again" and leave nothing, DELs work, status is not ready; all recovers once there is room', async () => {
    const agentPid = cluster.config().agentPid;
    for (let i = 0; i < 5; i++) expect((await cluster.local('pod', 'create', `d/before-${i}`)).code).toBe(0);

    fillDisk();
    const results: { name: string; code: number; cniCode: number | null; text: string }[] = [];
    for (let i = 0; i < ADDS; i++) {
      const name = `d/full-${i}`;
      const r = await cluster.local('pod', 'create', name);
      const m = /code"?:?\s*(\d+)/.exec(r.stdout + r.stderr);
      results.push({ name, code: r.code, cniCode: m ? Number(m[1]) : null, text: r.stdout + r.stderr });
      // Halfway, an older pod goes: DEL must work on a full disk.
      if (i === ADDS / 2) expect((await cluster.local('pod', 'delete', 'd/before-0')).code).toBe(0);
    }
    const failed = results.filter((r) => r.code !== 0);
    expect(failed.length, 'the full disk never refused a write: the test proves nothing').toBeGreaterThan(0);
    for (const f of failed) {
      expect(f.cniCode, `${f.name}: ${f.text}`).toBe(TRY_AGAIN_LATER);
      expect(f.text).toMatch(/state|disk|full/i);
    }
    process.kill(agentPid, 0); // still running
    const whileFull = await ready();
    expect(whileFull.code, whileFull.text).not.toBe(0);
    expect(whileFull.text).toMatch(/state (directory|disk)/i);
    // The DEL took the pod out of the datapath although its rows could not be deleted.
    const endpoints = JSON.parse(await must(SLUICE, ['local', '--dir', cluster.dir, 'get', 'pods', '-o', 'json'])) as { items: { metadata: { name: string } }[] };
    expect(endpoints.items.map((p) => p.metadata.name)).not.toContain('before-0');

    fs.rmSync(filler);
    await until('the agent to be ready again', async () => (await ready()).code === 0);
    process.kill(agentPid, 0);
    // Every ADD works again, also for the names that failed.
    for (const f of failed.slice(0, 10)) {
      const r = await cluster.local('pod', 'create', f.name);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }

    // No leak, no address held twice: IPAM holds exactly the running pods' addresses, each once.
    const pods = await cluster.podsByName();
    const podIps = Object.values(pods).flatMap((p) => p.ips).sort();
    expect(new Set(podIps).size).toBe(podIps.length);
    const allocations = async (): Promise<{ ip: string }[]> =>
      (JSON.parse(await must(SLUICE, ['ipam', '--socket', cluster.socket, '-o', 'json'])) as { allocations: { ip: string }[] }).allocations;
    const held = async (): Promise<string[]> => (await allocations()).map((a) => a.ip).sort();
    await until(
      'IPAM to hold exactly the running pods\' addresses',
      async () => JSON.stringify(await held()) === JSON.stringify(podIps),
      15_000,
      async () => {
        const now = await allocations();
        const ips = new Set(now.map((a) => a.ip));
        const extra = now.filter((a) => !podIps.includes(a.ip));
        const missing = podIps.filter((ip) => !ips.has(ip));
        return `held but not running: ${JSON.stringify(extra)}; running but not held: ${JSON.stringify(missing)}`;
      },
    );
    const status = await cluster.status();
    expect(status.endpoints).toBe(Object.keys(pods).length);
    // The pods that exist talk to each other.
    const names = Object.keys(pods);
    expect((await cluster.local('probe', names[0]!, names[names.length - 1]!, '--protocol', 'udp', '--timeout-ms', '1500')).code).toBe(0);
  }, 240_000);
});
